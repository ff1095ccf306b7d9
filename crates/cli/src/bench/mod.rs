//! `crane86 bench`: the same workloads on crane86 and on QEMU TCG, on the same machine in the
//! same run, interleaved (crane86, QEMU, crane86, QEMU, ...) for several repetitions, then a
//! table of medians with their ranges and the ratio crane86/QEMU (below 1.0: crane86 is
//! faster), and optionally every raw sample as JSON.
//!
//! The workloads ([`workloads::SUITE`]) are Linux boots (spawn to `/init`'s marker line),
//! workloads inside the amd64 guest timed on the host between marker lines the guest prints
//! ([`markers`]; guest clocks are not trusted), C micro-benchmarks that also run natively,
//! and the bundled flat guests, which only crane86 can load. Every run has a timeout and
//! every child is killed and reaped ([`child`]); a run that fails is reported, never waited
//! for forever.

pub mod child;
pub mod host;
pub mod markers;
pub mod report;
pub mod sides;
pub mod stats;
pub mod workloads;

use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::args::BenchArgs;
use host::{BenchImage, LinuxImage, Machine};
use report::{Check, Record};
use sides::{Runner, Sample, Side};
use workloads::{Arch, Kind, Workload};

/// Runs the benchmark `args` asks for and prints the report; returns the exit status: 0
/// when every run finished and every check passed, 1 otherwise.
pub fn run(args: &BenchArgs) -> Result<i32> {
    if args.list {
        for w in workloads::SUITE {
            let quick = if w.quick { " (quick)" } else { "" };
            println!("{:<14} {}{quick}", w.name, w.about);
        }
        return Ok(0);
    }
    let plan = workloads::select(args.quick, &args.filter);
    if plan.is_empty() {
        let names: Vec<_> = workloads::SUITE.iter().map(|w| w.name).collect();
        bail!(
            "no workload matches the filter{} (workloads: {})",
            if args.quick {
                " in the quick subset"
            } else {
                ""
            },
            names.join(", ")
        );
    }
    let reps = args.reps.unwrap_or(if args.quick { 1 } else { 3 });
    let qemu = !args.no_qemu && plan.iter().any(|w| w.qemu_arch().is_some());
    if qemu {
        for arch in [Arch::Amd64, Arch::I386] {
            if plan.iter().any(|w| w.qemu_arch() == Some(arch)) {
                host::qemu_version(arch)?;
            }
        }
    }
    let machine = Machine::probe(qemu)?;
    let images = Images::prepare(&plan)?;
    let runner = Runner {
        crane86: std::env::current_exe().context("cannot find the crane86 executable")?,
        timeout: Duration::from_secs(args.timeout.max(1)),
        extra: args.crane86_arg.clone(),
        qemu_extra: args.qemu_arg.clone(),
    };
    print!("{}", report::header(&machine, reps, args.quick));
    if !args.crane86_arg.is_empty() {
        println!("crane86 run arguments: {}", args.crane86_arg.join(" "));
    }
    if qemu && !args.qemu_arg.is_empty() {
        println!("QEMU arguments: {}", args.qemu_arg.join(" "));
    }

    let mut records: Vec<Record> = plan.iter().map(|w| Record::new(w)).collect();
    let sides: &[Side] = if qemu {
        &[Side::Crane86, Side::Qemu]
    } else {
        &[Side::Crane86]
    };
    for rep in 1..=reps {
        let mut bench = Bench {
            runner: &runner,
            records: &mut records,
            rep,
            reps,
        };
        bench.boots(sides, &images);
        bench.in_guest(sides, &images);
        bench.flat();
    }

    println!();
    print!("{}", report::table(&records));
    let problems = report::problems(&records);
    if !problems.is_empty() {
        println!();
        print!("{problems}");
    }
    if let Some(path) = &args.json {
        let doc = report::json(&machine, reps, args.quick, &records);
        let text = serde_json::to_string_pretty(&doc).context("cannot format the JSON")?;
        std::fs::write(path, text + "\n")
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    let bad = records
        .iter()
        .any(|r| r.failures() > 0 || matches!(r.check(), Check::Mismatch(_)));
    Ok(if bad { 1 } else { 0 })
}

/// The guest images the selected workloads need.
struct Images {
    amd64: Option<LinuxImage>,
    i386: Option<LinuxImage>,
    bench: Option<BenchImage>,
}

impl Images {
    /// Builds what is missing (the base images only when absent; the bench overlay always,
    /// which takes seconds).
    fn prepare(plan: &[&Workload]) -> Result<Images> {
        let boots = |arch| plan.iter().any(|w| w.kind == Kind::Boot(arch));
        let in_guest = plan.iter().any(|w| matches!(w.kind, Kind::InGuest { .. }));
        Ok(Images {
            amd64: boots(Arch::Amd64)
                .then(|| host::base_image(Arch::Amd64))
                .transpose()?,
            i386: boots(Arch::I386)
                .then(|| host::base_image(Arch::I386))
                .transpose()?,
            bench: in_guest.then(host::bench_image).transpose()?,
        })
    }
}

/// One repetition's runs, recorded as they finish.
struct Bench<'a> {
    runner: &'a Runner,
    records: &'a mut [Record],
    rep: u32,
    reps: u32,
}

impl Bench<'_> {
    fn record(&mut self, i: usize, side: Side, sample: Sample) {
        let name = self.records[i].workload.name;
        eprintln!(
            "{}",
            report::progress(name, side, self.rep, self.reps, &sample)
        );
        self.records[i].samples_mut(side).push(sample);
    }

    /// The selected workloads of kind `want`, by index.
    fn indices(&self, want: impl Fn(&Kind) -> bool) -> Vec<usize> {
        (0..self.records.len())
            .filter(|&i| want(&self.records[i].workload.kind))
            .collect()
    }

    /// Each boot workload on each side in turn.
    fn boots(&mut self, sides: &[Side], images: &Images) {
        for i in self.indices(|k| matches!(k, Kind::Boot(_))) {
            let Kind::Boot(arch) = self.records[i].workload.kind else {
                continue;
            };
            let image = match arch {
                Arch::Amd64 => images.amd64.as_ref(),
                Arch::I386 => images.i386.as_ref(),
            }
            .expect("prepared for every selected boot");
            for &side in sides {
                let sample = self.runner.boot(side, arch, image);
                self.record(i, side, sample);
            }
        }
    }

    /// One boot per side running every selected in-guest workload, then the same natively:
    /// the bench script's own workloads with the guest's busybox, the C benchmarks as
    /// `cbench NAME`.
    fn in_guest(&mut self, sides: &[Side], images: &Images) {
        let idx = self.indices(|k| matches!(k, Kind::InGuest { .. }));
        let Some(bench) = images.bench.as_ref().filter(|_| !idx.is_empty()) else {
            return;
        };
        let names: Vec<&str> = idx.iter().map(|&i| self.records[i].workload.name).collect();
        for &side in sides {
            let samples = self.runner.in_guest(side, &bench.image, &names);
            for (&i, sample) in idx.iter().zip(samples) {
                self.record(i, side, sample);
            }
        }
        // The script's own workloads natively in one run of it, as in one boot.
        let scripted: Vec<usize> = idx
            .iter()
            .copied()
            .filter(|&i| self.records[i].workload.kind == (Kind::InGuest { native: false }))
            .collect();
        if !scripted.is_empty() {
            let names: Vec<&str> = scripted
                .iter()
                .map(|&i| self.records[i].workload.name)
                .collect();
            let samples = self.runner.native_script(bench, &names);
            for (&i, sample) in scripted.iter().zip(samples) {
                self.record(i, Side::Native, sample);
            }
        }
        for &i in &idx {
            let w = self.records[i].workload;
            if w.kind == (Kind::InGuest { native: true }) {
                let sample = self.runner.native(&bench.cbench, w.name);
                self.record(i, Side::Native, sample);
            }
        }
    }

    /// The flat guests, on crane86 only.
    fn flat(&mut self) {
        for i in self.indices(|k| matches!(k, Kind::Flat { .. })) {
            let Kind::Flat { guest } = self.records[i].workload.kind else {
                continue;
            };
            let sample = self.runner.flat(guest);
            self.record(i, Side::Crane86, sample);
        }
    }
}
