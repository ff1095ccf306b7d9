//! Waking a vCPU parked in HLT when GDB sends something or connects.
//!
//! On the PC board a HLT with interrupts enabled and no timer armed parks the vCPU thread
//! until host input arrives ([`SerialInput`]), so the stub's look at the socket (or the
//! listener) between run slices would never come: GDB's Ctrl-C, or its connection, would
//! hang. A watcher thread polls the descriptor and, when it is readable, stops the run
//! through a `SerialInput` handle after raising [`Waker::fired`]; a run that ends
//! `Stopped` while the flag is up was stopped for the stub (see `Debugger::interrupted`),
//! which then reads the socket as usual. A stop that lands while nothing runs ends the
//! next run at once: it is retried.
//!
//! The module's one `unsafe` is that `poll(2)`: one `pollfd` on the stack and a descriptor
//! the watcher's own handle keeps open for the whole call.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crane86_machine::SerialInput;

/// How long one poll waits before the watcher looks at its stop flag.
const POLL_MS: i32 = 100;

/// The watcher thread of one GDB session.
pub struct Waker {
    /// Raised (before the stop request) when the watcher stopped the run.
    pub fired: Arc<AtomicBool>,
    quit: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Waker {
    /// Starts watching `fd` (a GDB connection or the listener; through a duplicate, the
    /// caller keeps the original).
    pub fn start(fd: &impl AsFd, input: SerialInput) -> std::io::Result<Waker> {
        let conn = fd.as_fd().try_clone_to_owned()?;
        let fired = Arc::new(AtomicBool::new(false));
        let quit = Arc::new(AtomicBool::new(false));
        let (f, q) = (fired.clone(), quit.clone());
        let thread = std::thread::Builder::new()
            .name("crane86-gdb-waker".into())
            .spawn(move || watch(&conn, &input, &f, &q))?;
        Ok(Waker {
            fired,
            quit,
            thread: Some(thread),
        })
    }
}

impl Drop for Waker {
    fn drop(&mut self) {
        self.quit.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn watch(conn: &OwnedFd, input: &SerialInput, fired: &AtomicBool, quit: &AtomicBool) {
    while !quit.load(Ordering::Acquire) {
        if !readable(conn) {
            continue;
        }
        if !fired.swap(true, Ordering::AcqRel) {
            input.request_stop();
        }
        // The bytes stay until the stub reads them: give it time to.
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits up to [`POLL_MS`] for `conn` to have bytes or a connection (or to be closed).
fn readable(conn: &OwnedFd) -> bool {
    let mut fd = libc::pollfd {
        fd: conn.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd for the duration of the call; the descriptor is `conn`'s,
    // which outlives it.
    let n = unsafe { libc::poll(&mut fd, 1, POLL_MS) };
    n > 0 && fd.revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0
}
