//! A GDB remote-protocol stub for a crane86 [`Machine`] (`crane86 run --gdb tcp:PORT`).
//!
//! [`serve`] runs the machine with a listening socket beside it: with `wait` it waits for
//! GDB before the first instruction, otherwise the guest runs and GDB may attach at any
//! time (the listener is polled between run slices), stopping the guest where it is. GDB
//! then reads and writes registers ([`regs`]: general, segment, x87, SSE, FS/GS bases,
//! control registers), memory ([`mem`]: linear through the guest's page tables, or
//! physical after `monitor phys on`), sets breakpoints (software and hardware alike: the
//! machine's [`crane86_machine::Breakpoints`], no guest memory is patched) and
//! watchpoints ([`watch`]), steps one instruction ([`Machine::step`], interpreted even
//! where the code is compiled), continues and interrupts with Ctrl-C. Detaching lets the
//! guest run on and another GDB attach later; `kill` ends the run.
//!
//! ```no_run
//! use crane86_gdb::{listen, serve, Options};
//! # fn demo(m: &mut crane86_machine::Machine) -> Result<(), crane86_gdb::GdbError> {
//! let listener = listen("tcp:1234")?;
//! let outcome = serve(m, listener, &Options { wait: true, max_insns: None })?;
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

pub mod mem;
mod monitor;
pub mod regs;
pub mod target;
pub mod wake;
pub mod watch;

use std::net::{TcpListener, TcpStream};

use gdbstub::stub::{DisconnectReason, GdbStub};

use crane86_machine::{Machine, MachineError, RunEnd};

use target::{Debugger, EventLoop};

/// Errors of the stub: the socket, or the machine failing underneath it (never something
/// the guest or GDB did).
#[derive(Debug, thiserror::Error)]
pub enum GdbError {
    /// `--gdb` was not `tcp:PORT` or `tcp:HOST:PORT`.
    #[error("`{0}` is not a GDB address: use tcp:PORT or tcp:HOST:PORT")]
    BadAddress(String),
    /// The port could not be bound (in use, no permission). (The reason is the error's
    /// source, which `anyhow`'s `{:#}` prints after the colon; naming it here too printed it
    /// twice.)
    #[error("cannot listen for GDB on {addr}")]
    Listen {
        /// The address asked for.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
    /// Accepting or setting up a connection failed.
    #[error("GDB connection: {0}")]
    Io(#[from] std::io::Error),
    /// The machine failed (a host-side error, see [`MachineError`]).
    #[error(transparent)]
    Machine(#[from] MachineError),
}

/// How [`serve`] runs the guest.
#[derive(Clone, Copy, Debug, Default)]
pub struct Options {
    /// Wait for GDB before the first instruction.
    pub wait: bool,
    /// End the run after this many guest instructions.
    pub max_insns: Option<u64>,
}

/// How a run under [`serve`] ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The guest's run ended (GDB attached or not).
    Guest(RunEnd),
    /// GDB killed the guest.
    Killed,
}

/// Instructions per run slice while no GDB is attached: between slices the listener is
/// polled for a connection.
const IDLE_SLICE: u64 = 1 << 22;

/// Binds the listening socket of `--gdb SPEC` (`tcp:PORT`, or `tcp:HOST:PORT`; the host
/// defaults to 127.0.0.1, since the stub gives full control of the machine).
pub fn listen(spec: &str) -> Result<TcpListener, GdbError> {
    let rest = spec
        .strip_prefix("tcp:")
        .ok_or_else(|| GdbError::BadAddress(spec.into()))?;
    let addr = if rest.contains(':') {
        rest.to_string()
    } else {
        let port: u16 = rest
            .parse()
            .map_err(|_| GdbError::BadAddress(spec.into()))?;
        format!("127.0.0.1:{port}")
    };
    TcpListener::bind(&addr).map_err(|source| GdbError::Listen { addr, source })
}

/// Runs `m` with a GDB stub on `listener` until the guest's run ends or GDB kills it.
pub fn serve(m: &mut Machine, listener: TcpListener, opts: &Options) -> Result<Outcome, GdbError> {
    let mut remaining = opts.max_insns;
    let mut stray_stop = false;
    if opts.wait {
        tracing::info!(addr = ?listener.local_addr().ok(), "waiting for GDB");
        let (conn, peer) = listener.accept()?;
        tracing::info!(%peer, "GDB attached");
        if let Some(end) = session(m, conn, &mut remaining, &mut stray_stop)? {
            return Ok(end);
        }
    }
    listener.set_nonblocking(true)?;
    loop {
        match run_until_attached(m, &listener, &mut remaining, &mut stray_stop)? {
            Ok(conn) => {
                if let Some(end) = session(m, conn, &mut remaining, &mut stray_stop)? {
                    return Ok(end);
                }
            }
            Err(end) => return Ok(Outcome::Guest(end)),
        }
    }
}

/// Runs the guest with no debugger until GDB connects (`Ok`) or the run ends (`Err`).
fn run_until_attached(
    m: &mut Machine,
    listener: &TcpListener,
    remaining: &mut Option<u64>,
    stray_stop: &mut bool,
) -> Result<Result<TcpStream, RunEnd>, GdbError> {
    // A guest parked in HLT must still notice a connection.
    let waker = match m.serial_input() {
        Some(input) => Some(wake::Waker::start(listener, input)?),
        None => None,
    };
    let fired = |w: &Option<wake::Waker>| {
        w.as_ref()
            .is_some_and(|w| w.fired.swap(false, std::sync::atomic::Ordering::AcqRel))
    };
    loop {
        let slice = remaining.map_or(IDLE_SLICE, |r| r.min(IDLE_SLICE));
        if slice == 0 {
            return Ok(Err(RunEnd::Limit));
        }
        let before = m.cpu.retired;
        let end = m.run(Some(slice))?;
        if let Some(r) = remaining.as_mut() {
            *r = r.saturating_sub(m.cpu.retired.wrapping_sub(before));
        }
        let ours = end == RunEnd::Stopped && (std::mem::take(stray_stop) || fired(&waker));
        if end != RunEnd::Limit && !ours {
            return Ok(Err(end));
        }
        match listener.accept() {
            Ok((conn, peer)) => {
                tracing::info!(%peer, "GDB attached");
                // A stop the waker asked for that no run has seen yet.
                *stray_stop |= fired(&waker);
                return Ok(Ok(conn));
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// One GDB connection, the guest stopped at its start. `None` when GDB detached (or the
/// connection broke) and the guest should run on.
fn session(
    m: &mut Machine,
    conn: TcpStream,
    remaining: &mut Option<u64>,
    stray_stop: &mut bool,
) -> Result<Option<Outcome>, GdbError> {
    conn.set_nonblocking(false)?;
    let waker = match m.serial_input() {
        Some(input) => Some(wake::Waker::start(&conn, input)?),
        None => None,
    };
    let mut dbg = Debugger::new(m, *remaining);
    if let Some(w) = &waker {
        dbg.set_waker_flag(w.fired.clone());
    }
    let result = GdbStub::new(conn).run_blocking::<EventLoop<'_>>(&mut dbg);
    *remaining = dbg.remaining();
    dbg.clear();
    let ended = dbg.ended;
    drop(dbg);
    m.debug.hold_interrupts = false;
    // A stop the waker requested and no run saw yet would end the guest's next run.
    *stray_stop = waker.is_some_and(|w| w.fired.load(std::sync::atomic::Ordering::Acquire));
    match result {
        Ok(DisconnectReason::Disconnect) => {
            tracing::info!("GDB detached; the guest runs on");
            Ok(None)
        }
        Ok(DisconnectReason::TargetExited(_) | DisconnectReason::TargetTerminated(_)) => {
            Ok(Some(Outcome::Guest(ended.unwrap_or(RunEnd::Stopped))))
        }
        Ok(DisconnectReason::Kill) => Ok(Some(Outcome::Killed)),
        Err(e) if e.is_target_error() => match e.into_target_error() {
            Some(e) => Err(e.into()),
            None => Ok(None),
        },
        Err(e) => {
            // The connection broke or GDB spoke nonsense: not the guest's fault, and not
            // a reason to end its run.
            tracing::warn!(error = %e, "GDB session ended abnormally; the guest runs on");
            Ok(None)
        }
    }
}
