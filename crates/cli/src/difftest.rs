//! `crane86 difftest`: the command line of the differential tests against QEMU
//! ([`crane86_difftest`]).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use crane86_difftest::lockstep::{self, LockstepConfig};
use crane86_difftest::qemu::QemuConfig;
use crane86_machine::{Machine, MachineConfig};

/// What to compare against.
#[derive(Subcommand, Debug)]
pub enum DifftestCmd {
    /// Step a guest in crane86 and in QEMU TCG in lockstep from its entry point, comparing
    /// the CPU state after every instruction, and report the first divergences. Ends with
    /// `difftest: steps=N divergences=D`; the exit status is 1 when D > 0.
    Qemu(QemuArgs),
    /// Run random instruction sequences in crane86 (the interpreter, baseline code and the
    /// JIT) and in QEMU TCG from the same state and compare registers, flags and memory;
    /// divergent cases are minimised and saved as regression files. Ends with
    /// `difftest: random mode=B cases=N divergences=D`; the exit status is 1 when D > 0.
    Random(RandomArgs),
}

/// `difftest random` options.
#[derive(Args, Debug)]
pub struct RandomArgs {
    /// Seed of the first case (case k uses seed + k).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Cases to run.
    #[arg(long, default_value_t = 100)]
    pub count: u64,
    /// CPU mode of the programs: 16 (real mode), 32 (protected mode) or 64 (long mode).
    #[arg(long, default_value_t = 64, value_parser = parse_mode)]
    pub mode: u32,
    /// Longest program, in instructions.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..=64))]
    pub max_len: u64,
    /// The QEMU binary.
    #[arg(long, default_value = "qemu-system-x86_64")]
    pub qemu: String,
    /// Directory for the regression files of divergent cases.
    #[arg(long, value_name = "DIR", default_value = "difftest-regressions")]
    pub save_dir: PathBuf,
}

fn parse_mode(s: &str) -> std::result::Result<u32, String> {
    match s {
        "16" => Ok(16),
        "32" => Ok(32),
        "64" => Ok(64),
        _ => Err(format!("`{s}`: the mode is 16, 32 or 64")),
    }
}

/// Runs `difftest random`; returns the exit status.
pub fn run_random(a: &RandomArgs) -> Result<i32> {
    if !crane86_difftest::qemu::available(&a.qemu) {
        bail!(
            "{} does not run (install the Debian package qemu-system-x86)",
            a.qemu
        );
    }
    let cfg = crane86_difftest::random::RandomConfig {
        seed: a.seed,
        count: a.count,
        bits: a.mode,
        max_len: a.max_len as usize,
        qemu: a.qemu.clone(),
        save_dir: Some(a.save_dir.clone()),
    };
    let stdout = std::io::stdout();
    let outcome = crane86_difftest::random::run(&cfg, &mut stdout.lock())?;
    Ok(if outcome.divergences == 0 { 0 } else { 1 })
}

/// `difftest qemu` options.
#[derive(Args, Debug)]
pub struct QemuArgs {
    /// A multiboot v1 kernel (both load it; the comparison starts at its entry point).
    #[arg(long, value_name = "FILE", conflicts_with = "kernel")]
    pub multiboot: Option<PathBuf>,
    /// A Linux bzImage (QEMU boots it through its firmware; the comparison starts at the
    /// kernel's 32-bit entry point, code32_start).
    #[arg(long, value_name = "FILE")]
    pub kernel: Option<PathBuf>,
    /// Linux: the initial RAM disk.
    #[arg(long, value_name = "FILE", requires = "kernel")]
    pub initrd: Option<PathBuf>,
    /// The kernel command line.
    #[arg(long, value_name = "TEXT", default_value = "")]
    pub append: String,
    /// Guest RAM in MiB.
    #[arg(long = "mem", short = 'm', default_value_t = 64, value_parser = clap::value_parser!(u64).range(2..=4096))]
    pub mem_mib: u64,
    /// Start comparing at this linear address instead of the entry point (QEMU runs to it
    /// first).
    #[arg(long, value_parser = crate::args::parse_u64)]
    pub start: Option<u64>,
    /// Compare at most this many steps.
    #[arg(long, default_value_t = 1_000_000)]
    pub steps: u64,
    /// Stop at the first asynchronous event (an interrupt) instead of replaying QEMU's
    /// interrupts in crane86.
    #[arg(long)]
    pub until_interrupt: bool,
    /// Compare x87 and SSE registers too.
    #[arg(long)]
    pub fpu: bool,
    /// Compare the memory every instruction writes too (slower: one more QEMU request per
    /// write).
    #[arg(long)]
    pub memory: bool,
    /// Instructions shown before a divergence.
    #[arg(long, default_value_t = 20)]
    pub history: usize,
    /// Go on after a divergence (crane86 adopts QEMU's registers) until this many.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_divergences: u64,
    /// The QEMU binary: qemu-system-x86_64 or qemu-system-i386.
    #[arg(long, default_value = "qemu-system-x86_64")]
    pub qemu: String,
    /// QEMU's `-cpu` model (default: QEMU's own default).
    #[arg(long, value_name = "MODEL")]
    pub cpu: Option<String>,
    /// Write QEMU's COM1 output to this file.
    #[arg(long, value_name = "FILE")]
    pub serial: Option<PathBuf>,
}

/// The Linux setup header's `code32_start`: where the 32-bit kernel is entered.
fn linux_entry(image: &[u8], path: &std::path::Path) -> Result<u64> {
    let magic = image.get(0x202..0x206);
    if magic != Some(b"HdrS".as_slice()) {
        bail!("{}: not a bzImage (no HdrS setup header)", path.display());
    }
    let b = &image[0x214..0x218];
    Ok(u64::from(u32::from_le_bytes([b[0], b[1], b[2], b[3]])))
}

/// `path` as QEMU must get it: absolute (QEMU runs in the temporary directory).
fn absolute(path: &std::path::Path) -> Result<String> {
    let p = std::fs::canonicalize(path).with_context(|| format!("{}", path.display()))?;
    Ok(p.display().to_string())
}

/// Runs `difftest qemu`; returns the exit status.
pub fn run_qemu(a: &QemuArgs) -> Result<i32> {
    let mut guest_args = Vec::new();
    let start = match (&a.multiboot, &a.kernel) {
        (Some(mb), None) => {
            let image =
                std::fs::read(mb).with_context(|| format!("cannot read {}", mb.display()))?;
            // crane86's loader knows where the entry point is.
            let mut m = Machine::new(&MachineConfig {
                ram_bytes: a.mem_mib << 20,
                ..MachineConfig::default()
            })?;
            // QEMU's `-kernel` path below is absolute; so is the name in this command line,
            // or the two guests' memory would differ from the first instruction.
            let cmdline =
                crane86_machine::loader::multiboot::qemu_cmdline(&absolute(mb)?, &a.append);
            m.load_multiboot(&image, &cmdline, &[])
                .with_context(|| mb.display().to_string())?;
            guest_args.push("-kernel".into());
            guest_args.push(absolute(mb)?);
            m.cpu.rip
        }
        (None, Some(k)) => {
            let image = std::fs::read(k).with_context(|| format!("cannot read {}", k.display()))?;
            guest_args.push("-kernel".into());
            guest_args.push(absolute(k)?);
            if let Some(i) = &a.initrd {
                if !i.is_file() {
                    bail!("{}: no such initrd", i.display());
                }
                guest_args.push("-initrd".into());
                guest_args.push(absolute(i)?);
            }
            linux_entry(&image, k)?
        }
        _ => bail!("difftest qemu needs a guest: --multiboot FILE or --kernel FILE"),
    };
    if !a.append.is_empty() {
        guest_args.push("-append".into());
        guest_args.push(a.append.clone());
    }
    if !crane86_difftest::qemu::available(&a.qemu) {
        bail!(
            "{} does not run (install the Debian package qemu-system-x86)",
            a.qemu
        );
    }
    let cfg = LockstepConfig {
        qemu: QemuConfig {
            binary: a.qemu.clone(),
            mem_mib: a.mem_mib,
            cpu: a.cpu.clone(),
            serial: a.serial.clone(),
            guest_args,
        },
        start: a.start.unwrap_or(start),
        max_steps: a.steps,
        until_interrupt: a.until_interrupt,
        fpu: a.fpu,
        memory: a.memory,
        history: a.history,
        max_divergences: a.max_divergences,
        start_timeout: Duration::from_secs(120),
    };
    let stdout = std::io::stdout();
    let outcome = lockstep::run(&cfg, &mut stdout.lock())?;
    Ok(if outcome.divergences == 0 { 0 } else { 1 })
}
