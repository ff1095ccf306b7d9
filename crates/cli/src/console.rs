//! The host console of a PC guest: the host's stdin typed into COM1.
//!
//! When stdin is a terminal it is put in raw mode the way QEMU's `-nographic` (`mon:stdio`)
//! does: no echo (the guest echoes), no line editing, no signals from the keyboard (Ctrl-C
//! is byte 0x03 for the guest, Ctrl-Z and Ctrl-\ likewise), no XON/XOFF and no CR-to-NL
//! translation on input, 8-bit characters; output post-processing stays on, so the guest's
//! and crane86's `\n` still return the carriage. Ctrl-A is the escape key, as in QEMU:
//! `Ctrl-A x` stops the machine, `Ctrl-A p` presses the ACPI power button (QEMU's monitor
//! command `system_powerdown`; it also wakes a guest sleeping in S3), `Ctrl-A Ctrl-A` types
//! one Ctrl-A, `Ctrl-A h` (or `?`) prints a help line; other keys after Ctrl-A are ignored. The terminal's settings are restored on
//! every way out: [`Console`]'s `Drop`, a panic hook, and handlers for SIGTERM, SIGHUP and
//! SIGINT that restore and exit with status 128 + the signal number.
//!
//! When stdin is not a terminal (a pipe, a file, `/dev/null`), its bytes are forwarded as
//! they are, without raw mode and without escapes (binary-safe), until end of file.
//!
//! Bytes go to the guest through a [`SerialInput`] from a reader thread. That thread is left
//! blocked in `read` when the run ends: the process exits right after.
//!
//! The `unsafe` here is libc's terminal and signal interface (`tcgetattr`, `tcsetattr`,
//! `isatty`, `sigaction`, `_exit`). Invariants: every `termios` passed to the kernel is one it
//! filled in for stdin (possibly modified), and the signal handlers call only
//! async-signal-safe functions (an atomic swap, a lock-free `OnceLock::get`, `tcsetattr`,
//! `_exit`).

use std::io::{ErrorKind, Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Once, OnceLock};

use anyhow::{Context, Result};
use crane86_machine::SerialInput;

/// Exit status after `Ctrl-A x`.
pub const EXIT_CONSOLE_QUIT: i32 = 125;

/// The escape key: Ctrl-A.
const ESCAPE: u8 = 0x01;

/// What `Ctrl-A h` prints.
const HELP: &str = "\
crane86 console escapes:
  Ctrl-A x       stop the machine and exit
  Ctrl-A p       press the power button (ACPI; wakes a guest from suspend)
  Ctrl-A Ctrl-A  type Ctrl-A
  Ctrl-A h, ?    this help
";

/// What a key typed at the console does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Key {
    /// Send this byte to the guest.
    Send(u8),
    /// Stop the machine (`Ctrl-A x`).
    Quit,
    /// Press the ACPI power button (`Ctrl-A p`).
    PowerButton,
    /// Print the escape keys (`Ctrl-A h`).
    Help,
    /// Nothing (Ctrl-A itself, or an unknown key after it).
    Nothing,
}

/// The Ctrl-A escape state machine, fed one byte at a time.
#[derive(Debug, Default)]
struct Escape {
    /// The previous byte was an unconsumed Ctrl-A.
    armed: bool,
}

impl Escape {
    fn feed(&mut self, b: u8) -> Key {
        if !std::mem::take(&mut self.armed) {
            if b == ESCAPE {
                self.armed = true;
                return Key::Nothing;
            }
            return Key::Send(b);
        }
        match b {
            ESCAPE => Key::Send(ESCAPE),
            b'x' | b'X' => Key::Quit,
            b'p' | b'P' => Key::PowerButton,
            b'h' | b'H' | b'?' => Key::Help,
            _ => Key::Nothing,
        }
    }
}

/// The terminal settings stdin had before raw mode, for the restorers.
static SAVED: OnceLock<libc::termios> = OnceLock::new();
/// Raw mode is on and must be undone; whoever clears it restores the terminal.
static RAW: AtomicBool = AtomicBool::new(false);

/// Puts the saved settings back on stdin, once, if raw mode is on. Async-signal-safe (an
/// atomic swap, a lock-free `OnceLock::get` and `tcsetattr`), so signal handlers call it.
fn restore_terminal() {
    if !RAW.swap(false, Ordering::AcqRel) {
        return;
    }
    if let Some(saved) = SAVED.get() {
        // SAFETY: `saved` is a valid termios obtained from tcgetattr on this same fd;
        // tcsetattr only reads it. A failure leaves nothing better to do.
        unsafe { libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, saved) };
    }
}

/// Restores the terminal and exits with 128 + the signal number, as a shell reports a
/// process killed by that signal.
extern "C" fn on_fatal_signal(sig: libc::c_int) {
    restore_terminal();
    // SAFETY: _exit is async-signal-safe and ends the process without running anything
    // that could deadlock in a signal handler (no atexit handlers, no stdio flushing).
    unsafe { libc::_exit(128 + sig) };
}

/// Installs, once per process, the panic hook and the signal handlers that restore the
/// terminal.
fn install_restorers() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            // First the terminal, so that the panic message is readable.
            restore_terminal();
            previous(info);
        }));
        for sig in [libc::SIGTERM, libc::SIGHUP, libc::SIGINT] {
            // SAFETY: a zeroed sigaction is a valid "no flags, empty mask" value; the
            // handler is an `extern "C" fn(c_int)` that only calls async-signal-safe
            // functions; sigaction reads the struct and writes no old action (null).
            unsafe {
                let mut action: libc::sigaction = std::mem::zeroed();
                action.sa_sigaction = on_fatal_signal as extern "C" fn(libc::c_int) as usize;
                libc::sigemptyset(&mut action.sa_mask);
                libc::sigaction(sig, &action, std::ptr::null_mut());
            }
        }
    });
}

/// Raw mode on stdin while it lives; restores the previous settings when dropped.
struct RawMode;

impl RawMode {
    /// Switches stdin (a terminal) to raw mode as QEMU's `-nographic` does.
    fn enter() -> Result<RawMode> {
        // SAFETY: termios is plain data, and tcgetattr fills it completely on success (its
        // result is checked before the value is used).
        let mut tty: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: `tty` is a valid, writable termios.
        if unsafe { libc::tcgetattr(libc::STDIN_FILENO, &mut tty) } != 0 {
            return Err(std::io::Error::last_os_error())
                .context("cannot read the terminal's settings");
        }
        // The first saved settings are the user's: a second console in the same process
        // (never, in the binary) must not save raw mode as the "original".
        let _ = SAVED.set(tty);
        install_restorers();
        // QEMU's qemu_chr_set_echo_stdio with echo off and signal=off.
        tty.c_iflag &= !(libc::IGNBRK
            | libc::BRKINT
            | libc::PARMRK
            | libc::ISTRIP
            | libc::INLCR
            | libc::IGNCR
            | libc::ICRNL
            | libc::IXON);
        tty.c_oflag |= libc::OPOST;
        tty.c_lflag &= !(libc::ECHO | libc::ECHONL | libc::ICANON | libc::IEXTEN | libc::ISIG);
        tty.c_cflag &= !(libc::CSIZE | libc::PARENB);
        tty.c_cflag |= libc::CS8;
        tty.c_cc[libc::VMIN] = 1;
        tty.c_cc[libc::VTIME] = 0;
        RAW.store(true, Ordering::Release);
        // SAFETY: `tty` is a valid termios derived from the terminal's own.
        if unsafe { libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &tty) } != 0 {
            let e = std::io::Error::last_os_error();
            restore_terminal();
            return Err(e).context("cannot put the terminal in raw mode");
        }
        Ok(RawMode)
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        restore_terminal();
    }
}

/// True when stdin is a terminal.
pub fn stdin_is_tty() -> bool {
    // SAFETY: isatty only inspects the descriptor; any value is safe to pass.
    unsafe { libc::isatty(libc::STDIN_FILENO) == 1 }
}

/// The console of one run: stdin forwarded to the guest's COM1 and, on a terminal, raw mode
/// until it is dropped.
pub struct Console {
    /// Restores the terminal when the console goes.
    _raw: Option<RawMode>,
    /// `Ctrl-A x` was typed.
    quit: Arc<AtomicBool>,
}

impl Console {
    /// Starts forwarding stdin to `input` from a reader thread (raw mode first if stdin is a
    /// terminal).
    pub fn start(input: SerialInput) -> Result<Console> {
        let raw = if stdin_is_tty() {
            Some(RawMode::enter()?)
        } else {
            None
        };
        let quit = Arc::new(AtomicBool::new(false));
        let interactive = raw.is_some();
        let flag = quit.clone();
        std::thread::Builder::new()
            .name("console".into())
            .spawn(move || forward(input, interactive, &flag))
            .context("cannot start the console thread")?;
        Ok(Console { _raw: raw, quit })
    }

    /// True when the run was stopped by `Ctrl-A x`.
    pub fn quit_requested(&self) -> bool {
        self.quit.load(Ordering::Acquire)
    }
}

/// The reader thread: stdin to the guest until end of file, an error or `Ctrl-A x`.
/// Dropping `input` at the end tells the machine that no more input will come.
fn forward(input: SerialInput, interactive: bool, quit: &AtomicBool) {
    let mut stdin = std::io::stdin().lock();
    let mut buf = [0u8; 4096];
    let mut escape = Escape::default();
    let mut out = Vec::with_capacity(buf.len());
    loop {
        let n = match stdin.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => {
                tracing::warn!(%e, "console: stdin unreadable, input stops");
                return;
            }
        };
        if !interactive {
            input.send(&buf[..n]);
            continue;
        }
        out.clear();
        for &b in &buf[..n] {
            match escape.feed(b) {
                Key::Send(b) => out.push(b),
                Key::Nothing => {}
                Key::Help => {
                    input.send(&out);
                    out.clear();
                    let _ = std::io::stderr().write_all(HELP.as_bytes());
                }
                Key::PowerButton => {
                    input.send(&out);
                    out.clear();
                    input.press_power_button();
                }
                Key::Quit => {
                    // What was typed before the escape still goes in, then the stop.
                    input.send(&out);
                    quit.store(true, Ordering::Release);
                    input.request_stop();
                    return;
                }
            }
        }
        input.send(&out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(bytes: &[u8]) -> Vec<Key> {
        let mut e = Escape::default();
        bytes.iter().map(|&b| e.feed(b)).collect()
    }

    #[test]
    fn ordinary_bytes_and_ctrl_c_pass_through() {
        assert_eq!(
            keys(b"ls\x03\r"),
            [b'l', b's', 3, b'\r'].map(Key::Send).to_vec()
        );
    }

    #[test]
    fn ctrl_a_escapes() {
        use Key::*;
        assert_eq!(keys(b"\x01x"), [Nothing, Quit]);
        assert_eq!(keys(b"\x01\x01a"), [Nothing, Send(1), Send(b'a')]);
        assert_eq!(keys(b"\x01h\x01?"), [Nothing, Help, Nothing, Help]);
        assert_eq!(
            keys(b"\x01p\x01P"),
            [Nothing, PowerButton, Nothing, PowerButton]
        );
        // An unknown key after Ctrl-A is swallowed, as QEMU does; the next one is plain.
        assert_eq!(keys(b"\x01zx"), [Nothing, Nothing, Send(b'x')]);
        // Ctrl-A Ctrl-A then x: a literal Ctrl-A and a plain x, no quit.
        assert_eq!(keys(b"\x01\x01x"), [Nothing, Send(1), Send(b'x')]);
    }
}
