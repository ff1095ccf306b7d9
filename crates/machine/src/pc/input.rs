//! COM1's receive side as the host sees it: a queue other threads fill through
//! [`SerialInput`] handles while the run loop owns the machine, and the board drains into the
//! UART between blocks. The same handles press the ACPI power button, which the board hands
//! to the PM block when it drains the queue.
//!
//! Waking the vCPU: compiled code only looks at `CpuState::exit_request`, which lives inside
//! the machine. While [`crate::Machine::run`] runs it publishes that word's address here
//! ([`InputQueue::attach`]), so that a sender can set `EXIT_DEVICE` (input arrived) or
//! `EXIT_STOP` (stop the run) and the vCPU comes back to the loop at its next block exit. A
//! guest halted with no timer deadline parks the run loop's thread on a condition variable
//! ([`InputQueue::wait`]) that every send, stop request and handle drop signals: no spinning.
//!
//! # Safety invariant
//! The published address (an `ExitWord`, the module's `unsafe`) is only set while that run
//! holds the machine, cleared under the queue's lock before the run returns (the `Attached`
//! guard), and only ever read as a shared `&AtomicU32`.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;

use crane86_runtime::state::{EXIT_DEVICE, EXIT_STOP};
use parking_lot::{Condvar, Mutex};

/// The address of the running vCPU's `exit_request` word.
struct ExitWord(*const AtomicU32);

// SAFETY: the pointer is only dereferenced as a shared `&AtomicU32` (atomic operations are
// the point of the word), and only while the run loop keeps it attached (see `attach`).
unsafe impl Send for ExitWord {}

#[derive(Default)]
struct State {
    /// Bytes sent and not yet handed to the UART, in order.
    bytes: VecDeque<u8>,
    /// A stop was requested and has not reached a run yet.
    stop: bool,
    /// The ACPI power button was pressed and the board has not seen it yet.
    power_button: bool,
    /// Live [`SerialInput`] handles: while there are none, nothing can ever arrive.
    senders: usize,
    /// The running vCPU's `exit_request`, while [`crate::Machine::run`] runs.
    exit: Option<ExitWord>,
}

impl State {
    /// The running vCPU's `exit_request` word, while a run is attached.
    fn exit_word(&self) -> Option<&AtomicU32> {
        // SAFETY: `attach` stored the address of the `exit_request` of a machine that
        // `Machine::run` borrows mutably, so it neither moves nor drops before the
        // `Attached` guard (which clears `exit` under the lock that guards `self`) is dropped
        // at the end of that run; the reference does not outlive `&self`, a borrow of that
        // lock's contents. The word is an atomic: the vCPU thread and generated code access
        // it only through atomic operations. (The run loop holds `&mut Machine` meanwhile;
        // setting the word from outside is the contract `CpuState::exit_request` documents
        // and generated code already relies on, through its own raw pointer.)
        self.exit.as_ref().map(|w| unsafe { &*w.0 })
    }

    /// Sets `bits` in the running vCPU's `exit_request`; false when no run is attached.
    fn poke(&self, bits: u32) -> bool {
        self.exit_word()
            .map(|w| w.fetch_or(bits, Ordering::Release))
            .is_some()
    }

    /// The requests pending in the attached run's `exit_request` (0 without a run).
    fn pending_exit(&self) -> u32 {
        self.exit_word().map_or(0, |w| w.load(Ordering::Acquire))
    }
}

/// The state shared between the board and its [`SerialInput`] handles.
#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    /// Signalled when bytes arrive, a stop is requested or the last handle goes away.
    cond: Condvar,
    /// Bytes are waiting: lets the run loop skip the lock when there is nothing to do.
    ready: AtomicBool,
}

/// A handle that sends bytes to COM1's receive side (the host's keyboard, a pipe), can press
/// the ACPI power button (the console's other host-side control) and can stop the run;
/// cloneable and usable from any thread while the machine runs on another.
///
/// Bytes reach the guest in the order sent and none is dropped: the board keeps them until
/// the UART's FIFO has room.
pub struct SerialInput {
    shared: Arc<Shared>,
}

impl SerialInput {
    /// Queues `bytes` for the guest and wakes the vCPU (from generated code, or from a HLT
    /// with nothing else to wake it).
    pub fn send(&self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        let mut s = self.shared.state.lock();
        s.bytes.extend(bytes);
        self.shared.ready.store(true, Ordering::Release);
        s.poke(EXIT_DEVICE);
        self.shared.cond.notify_all();
    }

    /// Presses the machine's ACPI power button (QEMU's `system_powerdown`, and a way to
    /// wake a guest sleeping in S3): the board sets PM1_STS.PWRBTN_STS at its next look at
    /// the devices, which raises an SCI if the guest enabled it.
    pub fn press_power_button(&self) {
        let mut s = self.shared.state.lock();
        s.power_button = true;
        self.shared.ready.store(true, Ordering::Release);
        s.poke(EXIT_DEVICE);
        self.shared.cond.notify_all();
    }

    /// Asks the machine to stop: the current run (or, if none is running, the next one)
    /// ends with [`crate::RunEnd::Stopped`].
    pub fn request_stop(&self) {
        let mut s = self.shared.state.lock();
        s.stop = !s.poke(EXIT_STOP);
        self.shared.cond.notify_all();
    }
}

impl Clone for SerialInput {
    fn clone(&self) -> Self {
        self.shared.state.lock().senders += 1;
        SerialInput {
            shared: self.shared.clone(),
        }
    }
}

impl Drop for SerialInput {
    fn drop(&mut self) {
        let mut s = self.shared.state.lock();
        s.senders -= 1;
        // A run parked in `wait` may now have nothing left to wait for.
        self.shared.cond.notify_all();
    }
}

/// The board's side of the input queue.
#[derive(Default)]
pub(crate) struct InputQueue {
    shared: Arc<Shared>,
}

/// Keeps a run's `exit_request` attached to an [`InputQueue`]; detaches it when dropped.
pub(crate) struct Attached {
    shared: Arc<Shared>,
}

impl Drop for Attached {
    fn drop(&mut self) {
        self.shared.state.lock().exit = None;
    }
}

impl InputQueue {
    /// A new sending handle.
    pub(crate) fn handle(&self) -> SerialInput {
        self.shared.state.lock().senders += 1;
        SerialInput {
            shared: self.shared.clone(),
        }
    }

    /// Publishes the running vCPU's `exit_request` to senders until the guard is dropped;
    /// what was sent or requested while no run was attached is signalled on it at once.
    ///
    /// The caller must keep `exit` in place (not moved, not dropped) while the guard lives:
    /// [`crate::Machine::run`] holds the machine mutably borrowed for that long.
    pub(crate) fn attach(&self, exit: &AtomicU32) -> Attached {
        let mut s = self.shared.state.lock();
        s.exit = Some(ExitWord(exit));
        if std::mem::take(&mut s.stop) {
            s.poke(EXIT_STOP);
        }
        if !s.bytes.is_empty() || s.power_button {
            s.poke(EXIT_DEVICE);
        }
        Attached {
            shared: self.shared.clone(),
        }
    }

    /// True when bytes or a button press are waiting (a cheap check, without the lock).
    pub(crate) fn is_ready(&self) -> bool {
        self.shared.ready.load(Ordering::Acquire)
    }

    /// Takes every byte waiting, in order, and whether the power button was pressed since
    /// the last call.
    pub(crate) fn take(&self) -> (Vec<u8>, bool) {
        let mut s = self.shared.state.lock();
        self.shared.ready.store(false, Ordering::Release);
        let button = std::mem::take(&mut s.power_button);
        (s.bytes.drain(..).collect(), button)
    }

    /// Blocks the calling thread for at most `limit`, or until bytes arrive, the power
    /// button is pressed or a stop is requested (true when that woke it).
    pub(crate) fn wait_timeout(&self, limit: std::time::Duration) -> bool {
        let deadline = std::time::Instant::now() + limit;
        let mut s = self.shared.state.lock();
        loop {
            if !s.bytes.is_empty() || s.power_button || s.stop || s.pending_exit() & EXIT_STOP != 0
            {
                return true;
            }
            if self.shared.cond.wait_until(&mut s, deadline).timed_out() {
                return false;
            }
        }
    }

    /// Blocks the calling thread until bytes arrive, the power button is pressed or a stop
    /// is requested (true), or until no handle is left to send anything (false, at once if
    /// there never was one).
    pub(crate) fn wait(&self) -> bool {
        let mut s = self.shared.state.lock();
        loop {
            if !s.bytes.is_empty() || s.power_button {
                return true;
            }
            if s.stop || s.pending_exit() & EXIT_STOP != 0 {
                return true;
            }
            if s.senders == 0 {
                return false;
            }
            self.shared.cond.wait(&mut s);
        }
    }
}
