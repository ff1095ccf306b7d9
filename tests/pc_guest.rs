//! The PC-board test guests (`guest-images/pc/*.asm`, issue 4) under QEMU TCG and under
//! crane86 in every tier.
//!
//! - `pc` checks the board's interrupt sources (8254 PIT through the 8259 pair, local APIC
//!   timer, RTC, 16550 UART) and the ACPI tables, then powers the machine off through ACPI
//!   (PM1a_CNT, SLP_TYP from the DSDT's `\_S5`): the run ends with status 0 after `DONE`.
//! - `reset` resets it through port 0xCF9 or the i8042 (`reset=cf9` / `reset=kbd` on the
//!   multiboot command line); with QEMU's `-no-reboot` and crane86's `--no-reboot` the run
//!   ends with status 0 after the line naming the reset.
//!
//! Each run under QEMU must be right on its own (no `FAIL` line, the expected end), and each
//! run under crane86 must print exactly what QEMU printed and end with the same status.
//! The QEMU machine is `-M pc` (i440FX/PIIX3, the board crane86 models) with `-nodefaults`,
//! which keeps the chipset's devices (PIC, PIT, RTC, i8042, PIIX4 ACPI, the local APIC)
//! and drops only the VGA, network, floppy and CD-ROM and the default serial and monitor;
//! `-serial stdio` puts COM1 back on stdout and `isa-debug-exit` at 0xF4 is added as
//! crane86 has it. SeaBIOS runs before the multiboot kernel under QEMU; crane86 starts the
//! board as SeaBIOS leaves it and places its own ACPI tables.
//!
//! nasm and QEMU come from the Debian packages `nasm` and `qemu-system-x86`, which
//! `scripts/test.sh` installs.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use common::guest_run::{assemble, diff, need_tool, run_with_limit, Run};

/// A guest that runs longer than this under either machine is stuck (`pc` waits about two
/// seconds of guest time for the RTC's update cycle).
const TIMEOUT: Duration = Duration::from_secs(60);
/// Guest RAM in MiB, the same on both machines.
const MEM_MIB: &str = "64";

/// Assembles `guest-images/pc/<name>.asm` (which includes `system/lib.inc` and `pc.inc`).
fn build(name: &str) -> PathBuf {
    assemble("pc", name, &["system", "pc"], "pc-guests")
}

fn run_qemu(image: &Path, append: &str) -> Run {
    need_tool("qemu-system-x86_64", "qemu-system-x86");
    let mut cmd = Command::new("qemu-system-x86_64");
    cmd.args(["-M", "pc", "-accel", "tcg", "-nodefaults", "-no-reboot"])
        .args(["-display", "none", "-monitor", "none", "-serial", "stdio"])
        .args(["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"])
        .args(["-m", MEM_MIB, "-append", append, "-kernel"])
        .arg(image);
    run_with_limit(cmd, "qemu-system-x86_64", TIMEOUT)
}

fn run_crane86(image: &Path, append: &str, tier: &str) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_crane86"));
    cmd.args(["run", "--tier", tier, "-m", MEM_MIB, "--no-reboot"])
        .args(["--timeout", "50", "--append", append, "--multiboot"])
        .arg(image);
    run_with_limit(cmd, "crane86", TIMEOUT)
}

/// The guest's image, assembled once however many tests ask for it (in parallel).
fn image(name: &'static str) -> &'static PathBuf {
    static PC: OnceLock<PathBuf> = OnceLock::new();
    static RESET: OnceLock<PathBuf> = OnceLock::new();
    let cell = if name == "reset" { &RESET } else { &PC };
    cell.get_or_init(|| build(name))
}

/// The guest's image and its QEMU run, built and run once per (guest, command line).
fn qemu_reference(name: &'static str, append: &'static str) -> &'static (PathBuf, Run) {
    static PC: OnceLock<(PathBuf, Run)> = OnceLock::new();
    static CF9: OnceLock<(PathBuf, Run)> = OnceLock::new();
    static KBD: OnceLock<(PathBuf, Run)> = OnceLock::new();
    let cell = match append {
        "reset=cf9" => &CF9,
        "reset=kbd" => &KBD,
        _ => &PC,
    };
    cell.get_or_init(|| {
        let image = image(name).clone();
        let run = run_qemu(&image, append);
        (image, run)
    })
}

/// Under QEMU the guest is right: it ends with `last_line`, status 0, no `FAIL` line.
fn qemu_self_check(name: &'static str, append: &'static str, last_line: &str) {
    let (_, q) = qemu_reference(name, append);
    let fails: Vec<&str> = q.output.lines().filter(|l| l.starts_with("FAIL")).collect();
    assert!(
        q.output.ends_with(&format!("{last_line}\n")) && fails.is_empty() && q.status == Some(0),
        "{name} ({append}) under QEMU: status {:?}, FAIL lines:\n{}\n--- output ---\n{}\
         --- stderr ---\n{}",
        q.status,
        fails.join("\n"),
        q.output,
        q.stderr
    );
}

/// crane86 in `tier` prints exactly what QEMU printed and ends the same way.
fn compare(name: &'static str, append: &'static str, tier: &str) {
    let (image, q) = qemu_reference(name, append);
    let c = run_crane86(image, append, tier);
    assert!(
        c.output == q.output && c.status == q.status,
        "{name} ({append}) under crane86 --tier {tier} differs from QEMU (exit status {:?}, \
         QEMU {:?})\n--- diff (- QEMU, + crane86) ---\n{}--- crane86 stderr ---\n{}",
        c.status,
        q.status,
        diff(&q.output, &c.output),
        c.stderr
    );
}

/// One module per guest and command line: the QEMU self-check, then crane86 in each tier,
/// with the `#[ignore = ...]` given (what crane86 still gets wrong) until it passes.
macro_rules! pc_guest {
    ($module:ident, $name:literal, $append:literal, $last:literal $(, #[$attr:meta])*) => {
        mod $module {
            #[test]
            fn qemu() {
                super::qemu_self_check($name, $append, $last);
            }
            #[test]
            $(#[$attr])*
            fn interp() {
                super::compare($name, $append, "interp");
            }
            #[test]
            $(#[$attr])*
            fn jit() {
                super::compare($name, $append, "jit");
            }
            #[test]
            $(#[$attr])*
            fn auto() {
                super::compare($name, $append, "auto");
            }
        }
    };
}

pc_guest!(devices_and_poweroff, "pc", "", "DONE");
pc_guest!(reset_cf9, "reset", "reset=cf9", "reset: port 0xcf9");
pc_guest!(
    reset_i8042,
    "reset",
    "reset=kbd",
    "reset: i8042 command 0xfe"
);
