//! The `crane86` binary: parses the command line, runs the command, and turns the result into
//! an exit status and, on error, one line on stderr.

use anyhow::Result;
use clap::Parser;

use crane86::args::{Cli, Command, ConformanceCmd};
use crane86::internal;
use crane86::run::{boot_target, default_linux_boot, run_boot};

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_env("CRANE86_LOG"))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    // A panic is a crane86 bug: one line saying so and where to report it, not a backtrace.
    // Inside a guest's run `run_boot` catches it first and adds the guest's state.
    match internal::catch(|| dispatch(cli)) {
        Ok(Ok(status)) => std::process::exit(status),
        Ok(Err(e)) => {
            eprintln!("crane86: {e:#}");
            std::process::exit(1);
        }
        Err(panic) => {
            eprintln!("{}", internal::headline(&panic));
            eprintln!("{}", internal::hint());
            std::process::exit(internal::EXIT_INTERNAL);
        }
    }
}

fn dispatch(cli: Cli) -> Result<i32> {
    match cli.command {
        None => {
            let (args, boot) = default_linux_boot()?;
            eprintln!(
                "crane86: booting Debian's x86-64 kernel to a busybox shell (Ctrl-A x quits, `poweroff` ends it); `crane86 --help` for more"
            );
            Ok(run_boot(&args, &boot)?.status)
        }
        Some(Command::Run(args)) => {
            let boot = boot_target(&args)?;
            Ok(run_boot(&args, &boot)?.status)
        }
        Some(Command::Bench(b)) => crane86::bench::run(&b),
        Some(Command::Difftest { against }) => match against {
            crane86::difftest::DifftestCmd::Qemu(a) => crane86::difftest::run_qemu(&a),
            crane86::difftest::DifftestCmd::Random(a) => crane86::difftest::run_random(&a),
        },
        Some(Command::KvmUnitTests(k)) => {
            let cap = k.max_timeout.map(std::time::Duration::from_secs);
            let (_, fail, _) = crane86::kut::run_tree(&k.dir, &k.tests, cap, &k.crane86_arg)?;
            Ok(if fail == 0 { 0 } else { 1 })
        }
        Some(Command::Conformance {
            against: ConformanceCmd::Host(h),
        }) => {
            let report = crane86_conformance::run(&crane86_conformance::Options {
                inputs: h.inputs,
                filter: h.filter,
                seed: h.seed,
            })?;
            print!("{}", report.table());
            println!("{}", report.summary_line());
            Ok(if report.mismatches() == 0 { 0 } else { 1 })
        }
    }
}
