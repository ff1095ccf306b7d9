//! Command-line arguments (clap).

use clap::{Args, Parser, Subcommand, ValueEnum};

/// crane86: a full-system x86 virtualizer by dynamic binary translation.
#[derive(Parser, Debug)]
#[command(name = "crane86", version, about)]
pub struct Cli {
    /// What to do; without a command, the default guest boots.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run a guest.
    Run(RunArgs),
    /// Run every test of a built kvm-unit-tests tree (reads DIR/x86/unittests.cfg) and print
    /// PASS/FAIL/SKIP per test and a summary line.
    KvmUnitTests(KutArgs),
    /// Benchmark crane86 against QEMU TCG: the same workloads on both, interleaved, several
    /// repetitions, and a table of medians and ratios.
    Bench(BenchArgs),
    /// Differential testing against QEMU TCG.
    Difftest {
        /// Which test.
        #[command(subcommand)]
        against: crate::difftest::DifftestCmd,
    },
    /// Check instruction semantics against a reference.
    Conformance {
        /// Which reference.
        #[command(subcommand)]
        against: ConformanceCmd,
    },
}

/// `kvm-unit-tests` options.
#[derive(Args, Debug)]
pub struct KutArgs {
    /// The top directory of a built kvm-unit-tests tree.
    pub dir: std::path::PathBuf,
    /// Only these tests (unittests.cfg section names); all when none are given.
    pub tests: Vec<String>,
    /// Cap every test's timeout at this many seconds (unittests.cfg's, 90 s by default).
    #[arg(long)]
    pub max_timeout: Option<u64>,
    /// An extra argument for every test's `crane86 run`, to run the suite with other
    /// settings (`--crane86-arg=--tier=baseline`); repeatable.
    #[arg(long, value_name = "ARG", allow_hyphen_values = true)]
    pub crane86_arg: Vec<String>,
}

/// `bench` options.
#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Only the quick subset (one boot and a few short workloads; one repetition unless
    /// --reps is given): under two minutes.
    #[arg(long)]
    pub quick: bool,
    /// Repetitions of every workload on every side (default 3; 1 with --quick).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub reps: Option<u32>,
    /// Only workloads whose name contains this text (case-insensitive); repeatable, a
    /// workload is kept when any filter matches.
    #[arg(long, value_name = "TEXT")]
    pub filter: Vec<String>,
    /// Also write every raw sample, the outputs and the machine description as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    pub json: Option<std::path::PathBuf>,
    /// Run crane86 (and the native runs) only, without QEMU.
    #[arg(long)]
    pub no_qemu: bool,
    /// A workload (or a boot) that takes longer than this many seconds is stopped and
    /// reported as failed.
    #[arg(long, default_value_t = 300, value_name = "SECS")]
    pub timeout: u64,
    /// List the workloads and exit.
    #[arg(long)]
    pub list: bool,
    /// An extra argument for every `crane86 run` of the suite, for comparing settings
    /// (`--crane86-arg=--jit-threshold=200`); repeatable.
    #[arg(long, value_name = "ARG", allow_hyphen_values = true)]
    pub crane86_arg: Vec<String>,
    /// An extra argument for every QEMU run of the suite, after the bench's own
    /// (`--qemu-arg=-cpu --qemu-arg=max` gives the guest QEMU's widest CPU model);
    /// repeatable.
    #[arg(long, value_name = "ARG", allow_hyphen_values = true)]
    pub qemu_arg: Vec<String>,
}

/// Conformance references.
#[derive(Subcommand, Debug)]
pub enum ConformanceCmd {
    /// Run every claimed instruction form natively on the host CPU and in both back ends, and
    /// compare results and defined flags.
    Host(HostArgs),
}

/// `conformance host` options.
#[derive(Args, Debug)]
pub struct HostArgs {
    /// Random inputs per instruction form.
    #[arg(long, default_value_t = 100)]
    pub inputs: u32,
    /// Only forms whose name contains this text (case-insensitive).
    #[arg(long)]
    pub filter: Option<String>,
    /// Seed of the input generator.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

/// The guest's CPU mode for flat images.
#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum ModeArg {
    /// 16-bit real mode.
    #[value(name = "16")]
    M16,
    /// 32-bit flat protected mode.
    #[value(name = "32")]
    M32,
    /// 64-bit long mode.
    #[value(name = "64")]
    M64,
}

/// Which translation tier runs guest code.
#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum TierArg {
    /// Interpret every block.
    Interp,
    /// Compile every block before it first runs.
    Jit,
    /// Interpret cold blocks, compile hot ones.
    Auto,
    /// Baseline code (templates, no Cranelift) for every block it covers, the interpreter
    /// for the rest: the first tier alone, for measuring it.
    Baseline,
}

/// Cranelift optimisation level.
#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum JitOptArg {
    /// No optimisation: fastest compiles.
    None,
    /// Cranelift's e-graph optimiser: better code, slower compiles.
    Speed,
    /// No optimisation first, the optimiser for blocks that then run `--tier-up-runs` times
    /// more (loops spanning several blocks are optimised at once).
    Tiered,
}

/// Format of the statistics report.
#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum StatsFormat {
    /// A table on stderr.
    Text,
    /// One JSON object on stderr.
    Json,
}

/// `--jit-compile`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum JitCompileArg {
    /// On a thread of its own.
    Background,
    /// On the vCPU thread.
    Sync,
}

/// `run` options.
#[derive(Args, Debug)]
pub struct RunArgs {
    /// A flat binary image to load (see --load-addr, --entry, --mode).
    #[arg(long, value_name = "FILE", conflicts_with = "guest")]
    pub flat: Option<std::path::PathBuf>,
    /// A multiboot v1 kernel (ELF32 or a.out kludge), started in 32-bit protected mode.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["flat", "guest"])]
    pub multiboot: Option<std::path::PathBuf>,
    /// A Linux kernel (bzImage), booted through the Linux boot protocol on the PC board.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["flat", "guest", "multiboot"])]
    pub kernel: Option<std::path::PathBuf>,
    /// The kernel command line (Linux, multiboot).
    #[arg(long, value_name = "TEXT", default_value = "")]
    pub append: String,
    /// Linux: the initial RAM disk. Multiboot: a file handed to the kernel as its first
    /// module (kvm-unit-tests read their environment from it).
    #[arg(long, value_name = "FILE")]
    pub initrd: Option<std::path::PathBuf>,
    /// A bundled test guest by name (sieve, sort, crc32, strings).
    #[arg(long, value_name = "NAME")]
    pub guest: Option<String>,
    /// Entry point of a flat image (default: the load address).
    #[arg(long, value_parser = parse_u64)]
    pub entry: Option<u64>,
    /// Where a flat image is loaded in guest RAM (default: the entry point, else 0x1000).
    #[arg(long, value_parser = parse_u64)]
    pub load_addr: Option<u64>,
    /// CPU mode the guest starts in.
    #[arg(long, value_enum, default_value = "64")]
    pub mode: ModeArg,
    /// Guest RAM in MiB.
    #[arg(long = "mem", short = 'm', default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..=65536))]
    pub mem_mib: u64,
    /// Translation tier.
    #[arg(long, value_enum, default_value = "auto")]
    pub tier: TierArg,
    /// Size of the translation cache in MiB (1 to 4096): the compiled-code arena, and as much
    /// again for the decoded blocks; a cache that fills is flushed whole and refilled, so a
    /// small one only costs speed. QEMU's equivalent is `-accel tcg,tb-size=MIB`.
    #[arg(long = "code-cache", value_name = "MIB", default_value_t = 64, value_parser = parse_code_cache)]
    pub code_cache_mib: usize,
    /// Runs of a block before `--tier auto` compiles it.
    #[arg(long, default_value_t = crane86_machine::DEFAULT_JIT_THRESHOLD)]
    pub jit_threshold: u32,
    /// Cranelift optimisation level for compiled blocks.
    #[arg(long, value_enum, default_value = "tiered")]
    pub jit_opt: JitOptArg,
    /// With `--jit-opt tiered`: runs of a block's quick code before it is compiled again
    /// optimised.
    #[arg(long, value_name = "RUNS", default_value_t = crane86_translator::jit::TIER_UP_RUNS, value_parser = clap::value_parser!(u64).range(1..))]
    pub tier_up_runs: u64,
    /// With `--tier auto`: runs of a block before it gets baseline code, translated in
    /// microseconds, to run in the interpreter's place until Cranelift's code is ready (0:
    /// none) [default: 8].
    #[arg(long, value_name = "RUNS")]
    pub baseline_runs: Option<u32>,
    /// Where `--tier auto` compiles hot blocks: on a background thread while the vCPU keeps
    /// interpreting them, or on the vCPU thread (repeatable tier split, slower).
    #[arg(long, value_enum, default_value = "background")]
    pub jit_compile: JitCompileArg,
    /// Make the run a function of the guest alone, so that two runs are identical: time
    /// comes from retired instructions only (idle time is skipped, never waited for, even
    /// at a terminal) and hot blocks compile on the vCPU thread (`--jit-compile sync`), so
    /// interrupts land at the same instructions. Input typed or piped to COM1 still arrives
    /// when the host delivers it.
    #[arg(long)]
    pub deterministic: bool,
    /// On the PC board, end the run when the guest resets the machine or triple-faults,
    /// instead of rebooting it (QEMU's `-no-reboot`). Without it, a reset or triple fault
    /// reboots: RAM and devices start over and the kernel is loaded again.
    #[arg(long)]
    pub no_reboot: bool,
    /// Stop after this many guest instructions (counted per boot).
    #[arg(long)]
    pub max_insns: Option<u64>,
    /// Stop the run after this many seconds of wall time, with exit status 121 (a guest
    /// halted for good waits for it rather than ending the run).
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout: Option<u64>,
    /// Print translation-cache statistics when the run ends.
    #[arg(long, value_enum, num_args = 0..=1, default_missing_value = "text", require_equals = true)]
    pub stats: Option<StatsFormat>,
    /// Write /tmp/perf-PID.map naming each compiled block, so `perf report` attributes host
    /// time to guest blocks.
    #[arg(long)]
    pub perf_map: bool,
    /// Serve GDB's remote protocol on tcp:PORT (or tcp:HOST:PORT; host 127.0.0.1 by
    /// default): `target remote :PORT` in gdb attaches, stopping the guest.
    #[arg(long, value_name = "tcp:PORT")]
    pub gdb: Option<String>,
    /// With --gdb: wait for GDB to attach before the first guest instruction.
    #[arg(long, requires = "gdb")]
    pub wait_gdb: bool,
}

impl RunArgs {
    /// The options of `crane86 run --guest NAME` with every default.
    pub fn parse_default(guest: &str) -> RunArgs {
        #[derive(Parser)]
        struct Wrapper {
            #[command(flatten)]
            run: RunArgs,
        }
        Wrapper::parse_from(["crane86", "--guest", guest]).run
    }
}

/// Parses `--code-cache`: MiB from 1 to 4096.
fn parse_code_cache(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n @ 1..=4096) => Ok(n),
        _ => Err("the code cache takes a whole number of MiB from 1 to 4096".into()),
    }
}

/// Parses decimal or 0x-prefixed hexadecimal.
pub fn parse_u64(s: &str) -> Result<u64, String> {
    let t = s.replace('_', "");
    let r = match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(h, 16),
        None => t.parse(),
    };
    r.map_err(|_| format!("`{s}` is not a number (decimal or 0x-hex)"))
}
