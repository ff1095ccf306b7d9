//! Internal errors: a panic, or a host-side failure of the machine (the translation cache,
//! the code arena), while a guest runs is a bug in crane86, never the guest's doing. Instead
//! of Rust's panic message and backtrace, the user gets one line that says so, the guest's
//! state (mode, CS:RIP, registers, the code at RIP), a request to report it with the
//! command line, and the status [`EXIT_INTERNAL`].
//!
//! Panics are caught with [`catch`], which runs a closure under `catch_unwind` while a panic
//! hook ([`install_hook`]) stores the message and location of a panic on that thread instead
//! of printing them. Panics on other threads (the background compiler, which the cache
//! survives by compiling on the vCPU thread) still print as usual. With `RUST_BACKTRACE` set
//! (to anything but `0`) the standard message and backtrace are printed as well, for whoever
//! debugs the report.

use std::cell::Cell;
use std::io::Write;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Mutex, Once};

use crane86_difftest::state::{ArchState, Scope};
use crane86_machine::Machine;
use crane86_runtime::{flags as fl, memory, CpuMode, SegReg};
use iced_x86::{Decoder, DecoderOptions, FlowControl, Formatter, IntelFormatter};

/// Exit status after an internal error (a crane86 bug).
pub const EXIT_INTERNAL: i32 = 122;

/// Test-only: `CRANE86_TEST_PANIC_AT_INSNS=N` makes `crane86 run` panic after N guest
/// instructions, so that the test suite can check the internal-error report
/// (`tests/cli.rs`). Read once per run; nothing else looks at it.
pub const TEST_PANIC_ENV: &str = "CRANE86_TEST_PANIC_AT_INSNS";

/// The number of instructions after which [`TEST_PANIC_ENV`] asks for a panic, if set.
pub fn test_panic_at() -> Option<u64> {
    std::env::var(TEST_PANIC_ENV).ok()?.trim().parse().ok()
}

/// Test-only: `CRANE86_TEST_HELPER_PANIC_AT_INSNS=N` makes the first helper that generated
/// code calls once N guest instructions have retired panic
/// (`crane86_runtime::helper_panic::TEST_PANIC_AT`), so that the test suite can check that
/// a panic on a slow path gets the same report as one in the run loop.
pub const TEST_HELPER_PANIC_ENV: &str = "CRANE86_TEST_HELPER_PANIC_AT_INSNS";

/// Arms [`TEST_HELPER_PANIC_ENV`] if it is set.
pub fn arm_test_helper_panic() {
    if let Some(n) = std::env::var(TEST_HELPER_PANIC_ENV)
        .ok()
        .and_then(|v| v.trim().parse().ok())
    {
        crane86_runtime::helper_panic::TEST_PANIC_AT.store(n, std::sync::atomic::Ordering::Relaxed);
    }
}

/// A panic caught by [`catch`].
#[derive(Clone, Debug)]
pub struct Panic {
    /// The panic's message.
    pub message: String,
    /// Where in crane86's source it panicked (`file:line:column`), when known.
    pub location: Option<String>,
}

impl std::fmt::Display for Panic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "panic: {}", self.message)?;
        if let Some(l) = &self.location {
            write!(f, " ({l})")?;
        }
        Ok(())
    }
}

thread_local! {
    /// This thread is inside [`catch`]: its panics are reported by the caller.
    static CATCHING: Cell<bool> = const { Cell::new(false) };
}

/// The last panic the hook stored for [`catch`].
static CAUGHT: Mutex<Option<Panic>> = Mutex::new(None);

/// `RUST_BACKTRACE` is set to ask for backtraces.
fn backtrace_requested() -> bool {
    std::env::var_os("RUST_BACKTRACE").is_some_and(|v| v != "0")
}

/// Installs, once, the panic hook that stores the panics of threads inside [`catch`] and
/// hands every other panic to the hook that was there before (the standard one, or the
/// console's, which restores the terminal and then calls its own predecessor).
pub fn install_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !CATCHING.with(Cell::get) {
                previous(info);
                return;
            }
            let payload = info.payload();
            let message = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "(a panic without a message)".into());
            let location = info
                .location()
                .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()));
            // A poisoned lock only means another panic happened while it was held; the
            // value inside is still a plain Option.
            *CAUGHT.lock().unwrap_or_else(|e| e.into_inner()) = Some(Panic { message, location });
            if backtrace_requested() {
                previous(info);
            }
        }));
    });
}

/// Runs `f`, turning a panic on this thread into an `Err` with its message instead of a
/// printed panic. The caller must not use what `f` borrowed mutably as if it were sound
/// after an `Err` (the unwind may have left it half-updated): only look at it to report.
pub fn catch<T>(f: impl FnOnce() -> T) -> Result<T, Panic> {
    install_hook();
    let outer = CATCHING.with(|c| c.replace(true));
    // Unwind safety is asserted, not proven: after a panic the callers only read what `f`
    // touched for the report (or nothing at all) and then end the process, so a broken
    // invariant inside it cannot lead to further wrong behaviour.
    let r = catch_unwind(AssertUnwindSafe(f));
    CATCHING.with(|c| c.set(outer));
    r.map_err(|payload| {
        let stored = CAUGHT.lock().unwrap_or_else(|e| e.into_inner()).take();
        stored.unwrap_or_else(|| Panic {
            message: payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "(a panic without a message)".into()),
            location: None,
        })
    })
}

/// The command line of this process, quoted for a POSIX shell where needed.
pub fn command_line() -> String {
    std::env::args()
        .map(|a| {
            let plain = !a.is_empty()
                && a.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%".contains(&b));
            if plain {
                a
            } else {
                format!("'{}'", a.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The first line of an internal-error report.
pub fn headline(what: &dyn std::fmt::Display) -> String {
    format!(
        "crane86: internal error in crane86 (a bug in crane86, not a fault of the guest): {what}"
    )
}

/// The closing line of an internal-error report.
pub fn hint() -> String {
    format!(
        "crane86: please report this crane86 bug with the lines above and the command line: {}",
        command_line()
    )
}

/// Prints the report of an internal error that ended a run of `m`: [`headline`], the guest
/// state, the code at CS:RIP and [`hint`]. `m` is read as it was left, possibly in the middle
/// of an instruction; it must not run again.
pub fn report(out: &mut dyn Write, what: &dyn std::fmt::Display, m: &mut Machine) {
    let _ = writeln!(out, "{}", headline(what));
    let _ = write_state(out, m);
    let _ = writeln!(out, "{}", hint());
}

/// The guest's mode, CS:RIP, registers and the code at RIP.
fn write_state(out: &mut dyn Write, m: &mut Machine) -> std::io::Result<()> {
    let cpu = &m.cpu;
    let rflags = crane86_translator::interp::rflags(cpu);
    let cs = cpu.seg(SegReg::Cs);
    let linear = code_linear(m);
    let mode = match cpu.mode {
        _ if rflags & fl::VM != 0 => "virtual-8086 mode",
        CpuMode::Real16 => "real mode",
        CpuMode::Prot16 => "16-bit protected mode",
        CpuMode::Prot32 if cpu.efer & (1 << 10) != 0 => "32-bit compatibility mode",
        CpuMode::Prot32 => "32-bit protected mode",
        CpuMode::Long64 => "64-bit mode",
    };
    let paging = if cpu.cr0 & (1 << 31) != 0 {
        "paging on"
    } else {
        "paging off"
    };
    writeln!(
        out,
        "crane86: guest state: {mode}, {paging}, CS:RIP {:04x}:{:#x} (linear {linear:#x}), CPL {}, {} instructions retired",
        cs.selector,
        cpu.rip,
        cs.selector & 3,
        cpu.retired
    )?;
    // The fields `crane86 difftest` compares, at full width whatever the mode: an internal
    // error may have left stray upper halves, and they are part of the evidence.
    let state = ArchState::of_crane86(
        cpu,
        Scope {
            fpu: false,
            long: true,
        },
    );
    let mut line = String::from(" ");
    for f in &state.fields {
        // difftest compares the low 32 bits of RFLAGS (GDB's `eflags`); show it whole.
        let (name, value, digits) = match f.name {
            "eflags" => ("rflags", u128::from(rflags), 8),
            _ => (f.name, f.value, f.digits),
        };
        let item = format!(" {name}={value:0digits$x}");
        if line.len() + item.len() > 100 {
            writeln!(out, "{line}")?;
            line = String::from(" ");
        }
        line.push_str(&item);
    }
    writeln!(out, "{line}")?;
    write_code(out, m, linear)
}

/// The linear address of CS:RIP.
fn code_linear(m: &Machine) -> u64 {
    let linear = m.cpu.seg(SegReg::Cs).base.wrapping_add(m.cpu.rip);
    if m.cpu.mode == CpuMode::Long64 {
        linear
    } else {
        linear & 0xffff_ffff
    }
}

/// Instructions of the block at CS:RIP shown at most.
const CODE_INSNS: usize = 16;

/// The block at CS:RIP (the one the vCPU was running or about to run), disassembled up to its
/// first control transfer or [`CODE_INSNS`] instructions. The machine keeps no record of the
/// blocks it ran, and RIP is where its state says the guest is.
fn write_code(out: &mut dyn Write, m: &mut Machine, linear: u64) -> std::io::Result<()> {
    // Reading guest memory goes through the page tables, which the failure may have left
    // inconsistent: a second panic here must not hide the first report.
    let bytes = catch(|| {
        let mut bytes = Vec::with_capacity(CODE_INSNS * 15);
        for i in 0..(CODE_INSNS * 15) as u64 {
            let at = linear.wrapping_add(i);
            let Ok(phys) = memory::fetch_phys(&mut m.cpu, &mut m.mem, at) else {
                break;
            };
            bytes.push(m.mem.peek_phys(phys, 1) as u8);
        }
        bytes
    })
    .unwrap_or_default();
    if bytes.is_empty() {
        return writeln!(out, "crane86: the code at CS:RIP cannot be read");
    }
    writeln!(out, "crane86: the block at CS:RIP:")?;
    let mut d = Decoder::with_ip(
        m.cpu.mode.bitness(),
        &bytes,
        m.cpu.rip,
        DecoderOptions::NONE,
    );
    let mut text = String::new();
    for _ in 0..CODE_INSNS {
        if !d.can_decode() {
            break;
        }
        let at = d.position();
        let insn = d.decode();
        let hex: Vec<String> = bytes
            .get(at..at + insn.len())
            .unwrap_or_default()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        text.clear();
        if insn.is_invalid() {
            text.push_str("(invalid)");
        } else {
            IntelFormatter::new().format(&insn, &mut text);
        }
        writeln!(
            out,
            "  {:#018x}  {:<30} {text}",
            linear.wrapping_add(at as u64),
            hex.join(" ")
        )?;
        if insn.is_invalid() || insn.flow_control() != FlowControl::Next {
            break;
        }
    }
    Ok(())
}
