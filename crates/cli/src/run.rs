//! The `run` command: build a machine, load the guest, run it, report.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use crane86_machine::{Board, Machine, MachineConfig, MachineError, RunEnd};
use crane86_runtime::CpuMode;
use crane86_translator::jit::JitOptions;
use crane86_translator::Tier;

use crate::args::{JitCompileArg, JitOptArg, ModeArg, RunArgs, StatsFormat, TierArg};
use crate::console::{Console, EXIT_CONSOLE_QUIT};
use crate::stats::Report;

/// Exit status when an exception nothing handles stops the guest.
pub const EXIT_GUEST_FAULT: i32 = 120;
/// Exit status when `--max-insns` ran out.
pub const EXIT_LIMIT: i32 = 124;
/// Exit status when the run was stopped from outside.
pub const EXIT_STOPPED: i32 = 130;
/// Exit status when `--timeout` ended the run.
pub const EXIT_TIMEOUT: i32 = 121;

/// `--timeout`: a thread that stops the run once the time is up (through the PC board's
/// input handle, which reaches a vCPU running compiled code or parked in HLT), or, on the
/// flat board, a deadline [`run_in_slices`] checks.
struct Timeout {
    deadline: Instant,
    fired: std::sync::Arc<std::sync::atomic::AtomicBool>,
    done: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Timeout {
    fn start(m: &crane86_machine::Machine, after: Duration) -> Timeout {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::Arc;
        let t = Timeout {
            deadline: Instant::now() + after,
            fired: Arc::new(AtomicBool::new(false)),
            done: Arc::new(AtomicBool::new(false)),
        };
        if let Some(input) = m.serial_input() {
            let (deadline, fired, done) = (t.deadline, t.fired.clone(), t.done.clone());
            std::thread::spawn(move || {
                while !done.load(Ordering::Acquire) {
                    let now = Instant::now();
                    if now >= deadline {
                        fired.store(true, Ordering::Release);
                        input.request_stop();
                        return;
                    }
                    std::thread::sleep((deadline - now).min(Duration::from_millis(50)));
                }
            });
        }
        t
    }

    /// The time is up (and, on the PC board, the stop was requested).
    fn expired(&self) -> bool {
        self.fired.load(std::sync::atomic::Ordering::Acquire)
    }
}

impl Drop for Timeout {
    fn drop(&mut self) {
        self.done.store(true, std::sync::atomic::Ordering::Release);
    }
}

/// The flat board has no input handle to stop a run from another thread: run in slices of
/// guest instructions and look at the clock between them.
fn run_in_slices(
    m: &mut crane86_machine::Machine,
    limit: Option<u64>,
    timer: Option<&Timeout>,
) -> Result<RunEnd, crane86_machine::MachineError> {
    // Small enough that even a guest at 1 MIPS (a self-modifying loop) is looked at
    // several times a second.
    const SLICE: u64 = 1 << 18;
    let mut left = limit.unwrap_or(u64::MAX);
    loop {
        let n = left.min(SLICE);
        let end = m.run(Some(n))?;
        if end != RunEnd::Limit {
            return Ok(end);
        }
        left -= n;
        if left == 0 {
            return Ok(RunEnd::Limit);
        }
        if let Some(t) = timer {
            if Instant::now() >= t.deadline {
                t.fired.store(true, std::sync::atomic::Ordering::Release);
                return Ok(RunEnd::Stopped);
            }
        }
    }
}

/// What to boot and how.
pub enum Boot {
    /// A flat image at an address, started in a given mode.
    Flat(Image),
    /// A multiboot kernel, its command line and its modules.
    Multiboot {
        /// The kernel file's bytes.
        kernel: Vec<u8>,
        /// The command line.
        cmdline: String,
        /// Module files' bytes with their names.
        modules: Vec<(Vec<u8>, String)>,
    },
    /// A Linux bzImage, its initrd and command line.
    Linux {
        /// The bzImage's bytes.
        kernel: Vec<u8>,
        /// The initrd's bytes.
        initrd: Option<Vec<u8>>,
        /// The command line.
        cmdline: String,
    },
}

/// A guest image and where it goes.
pub struct Image {
    /// The bytes.
    pub bytes: Vec<u8>,
    /// Load address in guest RAM.
    pub load_addr: u64,
    /// Entry point.
    pub entry: u64,
    /// Starting CPU mode.
    pub mode: CpuMode,
}

/// Maps the CLI mode to the CPU mode.
pub fn cpu_mode(m: ModeArg) -> CpuMode {
    match m {
        ModeArg::M16 => CpuMode::Real16,
        ModeArg::M32 => CpuMode::Prot32,
        ModeArg::M64 => CpuMode::Long64,
    }
}

/// Maps the CLI tier to the cache's tier policy.
pub fn tier(t: TierArg, threshold: u32) -> Tier {
    match t {
        TierArg::Interp => Tier::Interp,
        TierArg::Jit => Tier::Jit,
        TierArg::Auto => Tier::Auto {
            threshold: threshold.max(1),
        },
        TierArg::Baseline => Tier::Baseline,
    }
}

/// The bundled flat guest of `crane86 run --guest` without a name (and of the tests).
pub const DEFAULT_GUEST: (&str, u32) = ("crc32", 64);

/// Guest RAM of the default Linux guest, in MiB.
pub const LINUX_MEM_MIB: u64 = 512;

/// The directory of the Linux guest image for `arch` (`amd64` or `i386`),
/// `target/guest/linux-<arch>` in the source tree, with `vmlinuz` and `initrd.img` built by
/// `guest-images/linux/build.sh` first when either is missing (it downloads Debian's kernel
/// and busybox packages with apt).
pub fn linux_image_dir(arch: &str) -> Result<std::path::PathBuf> {
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = repo.join(format!("target/guest/linux-{arch}"));
    if !dir.join("vmlinuz").exists() || !dir.join("initrd.img").exists() {
        eprintln!(
            "crane86: building the {arch} Linux guest in {} (first run: downloads Debian's kernel and busybox packages)",
            dir.display()
        );
        let script = repo.join("guest-images/linux/build.sh");
        let status = std::process::Command::new("bash")
            .arg(&script)
            .args(["--arch", arch, "--out"])
            .arg(&dir)
            .status()
            .with_context(|| format!("cannot run {}", script.display()))?;
        if !status.success() {
            bail!(
                "building the Linux guest failed ({}); see the lines above",
                script.display()
            );
        }
    }
    Ok(dir)
}

/// The default guest: Debian's x86-64 kernel and busybox initramfs from
/// `guest-images/linux/build.sh`, built first when missing ([`linux_image_dir`]), booted to
/// an interactive shell on the terminal.
pub fn default_linux_boot() -> Result<(RunArgs, Boot)> {
    let dir = linux_image_dir("amd64")?;
    let (kernel, initrd) = (dir.join("vmlinuz"), dir.join("initrd.img"));
    let mut args = RunArgs::parse_default(DEFAULT_GUEST.0);
    args.guest = None;
    args.kernel = Some(kernel);
    args.initrd = Some(initrd);
    args.append = "console=ttyS0".into();
    args.mem_mib = LINUX_MEM_MIB;
    let boot = boot_target(&args)?;
    Ok((args, boot))
}

/// A bundled test guest by name, in the mode `--mode` asks for.
pub fn bundled_image(name: &str, mode: ModeArg) -> Result<Image> {
    let bits = match mode {
        ModeArg::M16 => 16,
        ModeArg::M32 => 32,
        ModeArg::M64 => 64,
    };
    let Some(g) = crane86_guests::by_name(name, bits) else {
        let names: Vec<_> = crane86_guests::names().collect();
        bail!(
            "no bundled guest `{name}` in {bits}-bit mode (guests: {})",
            names.join(", ")
        );
    };
    Ok(Image {
        bytes: g.image,
        load_addr: g.load_addr,
        entry: g.entry,
        mode: cpu_mode(mode),
    })
}

/// What the command line asks to boot: `--kernel FILE`, `--multiboot FILE`, `--guest NAME`
/// or `--flat FILE`.
pub fn boot_target(args: &RunArgs) -> Result<Boot> {
    if let Some(path) = &args.kernel {
        let kernel = std::fs::read(path)
            .with_context(|| format!("cannot read kernel {}", path.display()))?;
        let initrd = match &args.initrd {
            Some(p) => Some(
                std::fs::read(p).with_context(|| format!("cannot read initrd {}", p.display()))?,
            ),
            None => None,
        };
        return Ok(Boot::Linux {
            kernel,
            initrd,
            cmdline: args.append.clone(),
        });
    }
    if let Some(path) = &args.multiboot {
        let kernel = std::fs::read(path)
            .with_context(|| format!("cannot read multiboot kernel {}", path.display()))?;
        let mut modules = Vec::new();
        if let Some(m) = &args.initrd {
            let data =
                std::fs::read(m).with_context(|| format!("cannot read module {}", m.display()))?;
            modules.push((data, m.display().to_string()));
        }
        return Ok(Boot::Multiboot {
            kernel,
            cmdline: crane86_machine::loader::multiboot::qemu_cmdline(
                &path.display().to_string(),
                &args.append,
            ),
            modules,
        });
    }
    Ok(Boot::Flat(match &args.guest {
        Some(name) => bundled_image(name, args.mode)?,
        None => flat_image(args)?,
    }))
}

/// Reads the flat image named on the command line.
pub fn flat_image(args: &RunArgs) -> Result<Image> {
    let Some(path) = &args.flat else {
        bail!("no guest given: use --flat FILE or --guest NAME");
    };
    let bytes = std::fs::read(path)
        .with_context(|| format!("cannot read flat image {}", path.display()))?;
    if bytes.is_empty() {
        bail!("flat image {} is empty", path.display());
    }
    let load_addr = args.load_addr.or(args.entry).unwrap_or(0x1000);
    Ok(Image {
        bytes,
        load_addr,
        entry: args.entry.unwrap_or(load_addr),
        mode: cpu_mode(args.mode),
    })
}

/// The outcome of a run: how it ended, and the process exit status that reflects it.
pub struct Outcome {
    /// How the guest stopped; `None` when an internal error ended the run (reported on
    /// stderr, see [`crate::internal`]).
    pub end: Option<RunEnd>,
    /// What the process should exit with.
    pub status: i32,
}

/// Runs a flat `image` with the options in `args`; serial output goes to stdout.
pub fn run_image(args: &RunArgs, image: Image) -> Result<Outcome> {
    run_boot(args, &Boot::Flat(image))
}

/// Boots `boot` with the options in `args`; serial output goes to stdout as it arrives and,
/// on the PC board, stdin goes to COM1 ([`Console`]).
pub fn run_boot(args: &RunArgs, boot: &Boot) -> Result<Outcome> {
    let ram_bytes = args.mem_mib << 20;
    if let Boot::Flat(image) = boot {
        let end_of_image = image.load_addr.checked_add(image.bytes.len() as u64);
        if end_of_image.is_none_or(|e| e > ram_bytes) {
            bail!(
                "the image ({} bytes at {:#x}) does not fit in {} MiB of guest RAM",
                image.bytes.len(),
                image.load_addr,
                args.mem_mib
            );
        }
    }
    let cfg = MachineConfig {
        ram_bytes,
        tier: tier(args.tier, args.jit_threshold),
        code_arena_bytes: args.code_cache_mib << 20,
        jit: JitOptions {
            optimize: args.jit_opt != JitOptArg::None,
            tiered: args.jit_opt == JitOptArg::Tiered,
            tier_up_runs: args.tier_up_runs,
            // A background compile changes when a block switches tier, and a compiled
            // block runs whole where the interpreter stops at the next timer deadline.
            background: args.jit_compile == JitCompileArg::Background && !args.deterministic,
            count_chains: args.stats.is_some(),
            ..JitOptions::default()
        },
        // Multiboot kernels expect a PC around them; flat test guests keep the flat board.
        board: match boot {
            Boot::Flat(_) => Board::Flat,
            Boot::Multiboot { .. } | Boot::Linux { .. } => Board::Pc,
        },
        ..MachineConfig::default()
    };
    // Before anything else, so that a port in use is one clear error line.
    let gdb = match &args.gdb {
        Some(spec) => {
            let listener = crane86_gdb::listen(spec)?;
            if let Ok(addr) = listener.local_addr() {
                let wait = if args.wait_gdb {
                    "; waiting for it to attach"
                } else {
                    ""
                };
                eprintln!("crane86: gdb stub listening on {addr}{wait}");
            }
            Some(listener)
        }
        None => None,
    };
    let mut m = Machine::new(&cfg).context("cannot create the machine")?;
    if let Some(runs) = args.baseline_runs {
        m.cache.set_baseline_runs(runs);
    }
    m.set_echo(true);
    if args.perf_map {
        let path = m
            .enable_perf_map()
            .context("cannot create the perf map in /tmp")?;
        tracing::info!(path = %path.display(), "writing the perf map");
    }
    load(&mut m, boot, args)?;
    // PC guests get the host's stdin on COM1; flat guests have no serial input. With a
    // person at a terminal, idle guest time passes in real time.
    m.set_realtime_idle(crate::console::stdin_is_tty() && !args.deterministic);
    let console = match m.serial_input() {
        Some(input) => Some(Console::start(input)?),
        None => None,
    };
    // Time per phase: a thread samples what the vCPU thread is doing (see
    // `crane86_runtime::phase`), only when statistics are asked for.
    let sampler = match args.stats {
        Some(_) => Some(crane86_runtime::phase::PhaseSampler::start(
            m.phase.clone(),
            crate::stats::PHASE_SAMPLE,
        )?),
        None => None,
    };
    let t0 = Instant::now();
    let mut killed = false;
    let timer = args
        .timeout
        .map(|secs| Timeout::start(&m, Duration::from_secs(secs)));
    let panic_at = crate::internal::test_panic_at();
    crate::internal::arm_test_helper_panic();
    // A panic in the run is crane86's bug: caught, it becomes the internal-error report below
    // instead of a backtrace. The machine is only read for that report afterwards.
    let caught = crate::internal::catch(|| -> Result<Result<RunEnd, MachineError>> {
        Ok(match gdb {
            None if panic_at.is_some() => test_panic_run(&mut m, panic_at.unwrap_or(0)),
            None if m.serial_input().is_none() && timer.is_some() => {
                run_in_slices(&mut m, args.max_insns, timer.as_ref())
            }
            None => run_rebooting(&mut m, boot, args)?,
            Some(listener) => {
                let opts = crane86_gdb::Options {
                    wait: args.wait_gdb,
                    max_insns: args.max_insns,
                };
                match crane86_gdb::serve(&mut m, listener, &opts) {
                    Ok(crane86_gdb::Outcome::Guest(end)) => Ok(end),
                    Ok(crane86_gdb::Outcome::Killed) => {
                        killed = true;
                        Ok(RunEnd::Stopped)
                    }
                    Err(crane86_gdb::GdbError::Machine(e)) => Err(e),
                    // The connection, not crane86's machine: an ordinary error.
                    Err(e) => return Err(e.into()),
                }
            }
        })
    });
    let run: Result<RunEnd, String> = match caught {
        Ok(Ok(Ok(end))) => Ok(end),
        Ok(Ok(Err(e))) => Err(format!("{:#}", anyhow::Error::from(e))),
        Ok(Err(e)) => return Err(e),
        Err(panic) => Err(panic.to_string()),
    };
    let wall = t0.elapsed();
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let quit = console.as_ref().is_some_and(Console::quit_requested);
    // The terminal is restored before anything more is printed.
    drop(console);
    let end = match run {
        Ok(end) => end,
        Err(what) => {
            // On a line of its own: the guest's output may have left one unfinished.
            eprintln!();
            crate::internal::report(&mut std::io::stderr().lock(), &what, &mut m);
            return Ok(Outcome {
                end: None,
                status: crate::internal::EXIT_INTERNAL,
            });
        }
    };
    let timed_out = timer.is_some_and(|t| t.expired());
    let status = match end {
        RunEnd::Stopped if timed_out => {
            eprintln!(
                "\ncrane86: timeout: the run was stopped after {} s (--timeout) at rip={:#x}",
                args.timeout.unwrap_or(0),
                m.cpu.rip
            );
            EXIT_TIMEOUT
        }
        RunEnd::Stopped if quit => {
            // On a line of its own: the guest's prompt is usually left unfinished.
            eprintln!("\ncrane86: terminated by Ctrl-A x");
            EXIT_CONSOLE_QUIT
        }
        RunEnd::Stopped if killed => {
            eprintln!("\ncrane86: killed by gdb");
            0
        }
        RunEnd::DebugExit(v) => ((v << 1) | 1) as i32,
        RunEnd::Halted => 0,
        RunEnd::Fault { fault, rip } => {
            eprintln!("crane86: guest stopped by an unhandled {fault} at rip={rip:#x}");
            EXIT_GUEST_FAULT
        }
        RunEnd::TripleFault { first, rip } => {
            eprintln!(
                "crane86: triple fault (CPU shutdown), starting with {first} at rip={rip:#x}"
            );
            EXIT_GUEST_FAULT
        }
        RunEnd::Limit => {
            eprintln!("crane86: instruction limit reached at rip={:#x}", m.cpu.rip);
            EXIT_LIMIT
        }
        RunEnd::Stopped => EXIT_STOPPED,
        RunEnd::Breakpoint(addr) => {
            eprintln!("crane86: stopped at a debugger breakpoint at {addr:#x}");
            EXIT_STOPPED
        }
        RunEnd::PowerOff => 0,
        RunEnd::Reset => {
            eprintln!(
                "\ncrane86: the guest reset the machine at rip={:#x}; not rebooting (--no-reboot)",
                m.cpu.rip
            );
            0
        }
        RunEnd::Unsupported { what, rip } => {
            eprintln!("crane86: the guest needs {what} at rip={rip:#x}, which crane86 does not implement yet");
            EXIT_GUEST_FAULT
        }
    };
    let phases = sampler.map(|s| s.finish());
    match args.stats {
        Some(StatsFormat::Text) => eprint!("{}", Report::new(&m, wall, phases).table()),
        Some(StatsFormat::Json) => eprintln!("{}", Report::new(&m, wall, phases).json()),
        None => {}
    }
    Ok(Outcome {
        end: Some(end),
        status,
    })
}

/// Puts the guest `boot` describes into `m` (at start, and again after a reboot).
fn load(m: &mut Machine, boot: &Boot, args: &RunArgs) -> Result<()> {
    match boot {
        Boot::Flat(image) => m
            .load_flat(&image.bytes, image.load_addr, image.entry, image.mode)
            .context("cannot load the guest")?,
        Boot::Multiboot {
            kernel,
            cmdline,
            modules,
        } => {
            let mods: Vec<_> = modules
                .iter()
                .map(|(data, name)| crane86_machine::loader::multiboot::Module {
                    data,
                    cmdline: name,
                })
                .collect();
            m.load_multiboot(kernel, cmdline, &mods)
                .map_err(|e| name_file(e, args.multiboot.as_deref()))?
        }
        Boot::Linux {
            kernel,
            initrd,
            cmdline,
        } => m
            .load_linux(kernel, initrd.as_deref(), cmdline)
            .map_err(|e| name_file(e, args.kernel.as_deref()))?,
    }
    Ok(())
}

/// Runs a PC guest, rebooting it whenever it resets the machine or triple-faults, as a PC
/// does, unless `--no-reboot`: RAM and devices start over and `boot` is loaded again (there
/// is no firmware to do it). Ends with anything else the run ends with.
fn run_rebooting(
    m: &mut Machine,
    boot: &Boot,
    args: &RunArgs,
) -> Result<Result<RunEnd, MachineError>> {
    let mut reboots = 0u64;
    loop {
        let end = match m.run(args.max_insns) {
            Ok(end) => end,
            Err(e) => return Ok(Err(e)),
        };
        let why = match end {
            RunEnd::Reset => format!("the guest reset the machine at rip={:#x}", m.cpu.rip),
            RunEnd::TripleFault { first, rip } => {
                format!("triple fault (CPU shutdown), starting with {first} at rip={rip:#x}")
            }
            _ => return Ok(Ok(end)),
        };
        if args.no_reboot || m.pc.is_none() {
            return Ok(Ok(end));
        }
        reboots += 1;
        // A guest that resets in a loop would otherwise flood the terminal: the first few
        // reboots are told, then every thousandth.
        if reboots <= 3 || reboots.is_multiple_of(1000) {
            eprintln!("\ncrane86: {why}: rebooting (reboot {reboots})");
        }
        m.reboot().context("cannot reset the machine")?;
        load(m, boot, args)?;
    }
}

/// A loader's error, naming the file it was loading (the loader only sees its bytes): "cannot
/// load the Linux kernel FILE: the reason".
fn name_file(e: MachineError, path: Option<&std::path::Path>) -> anyhow::Error {
    let (what, reason): (&str, anyhow::Error) = match e {
        MachineError::Multiboot(r) => ("the multiboot image", r.into()),
        MachineError::Linux(r) => ("the Linux kernel", r.into()),
        e => return e.into(),
    };
    match path {
        Some(p) => reason.context(format!("cannot load {what} {}", p.display())),
        None => reason.context(format!("cannot load {what}")),
    }
}

/// Test-only ([`crate::internal::TEST_PANIC_ENV`]): runs `n` guest instructions, then
/// panics as a bug inside the run would, unless the guest ended first.
fn test_panic_run(m: &mut Machine, n: u64) -> Result<RunEnd, MachineError> {
    match m.run(Some(n))? {
        RunEnd::Limit => panic!(
            "test-only panic after {n} guest instructions ({})",
            crate::internal::TEST_PANIC_ENV
        ),
        end => Ok(end),
    }
}
