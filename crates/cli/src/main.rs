//! The `crane86` binary: parses the command line, runs the command, and turns the result into
//! an exit status and, on error, one line on stderr.

use anyhow::Result;
use clap::Parser;

use crane86::args::{Cli, Command, ConformanceCmd};
use crane86::run::{flat_image, run_image};

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_env("CRANE86_LOG"))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match dispatch(cli) {
        Ok(status) => std::process::exit(status),
        Err(e) => {
            eprintln!("crane86: {e:#}");
            std::process::exit(1);
        }
    }
}

fn dispatch(cli: Cli) -> Result<i32> {
    match cli.command {
        None => {
            anyhow::bail!("the default guest is not bundled yet; use `crane86 run --flat FILE`")
        }
        Some(Command::Run(args)) => {
            let image = flat_image(&args)?;
            Ok(run_image(&args, &image)?.status)
        }
        Some(Command::Conformance {
            against: ConformanceCmd::Host(_h),
        }) => anyhow::bail!("conformance host is not built yet"),
    }
}
