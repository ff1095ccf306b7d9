//! The results: samples per workload and side, the output check, the table and the JSON.

use std::fmt::Write as _;

use serde_json::{json, Value};

use super::host::Machine;
use super::sides::{Sample, Side};
use super::stats::{fmt_secs, fmt_summary, ratio, Summary};
use super::workloads::{Kind, Workload};

/// Every sample of one workload.
#[derive(Debug)]
pub struct Record {
    /// The workload.
    pub workload: &'static Workload,
    /// crane86's samples, one per repetition.
    pub crane86: Vec<Sample>,
    /// QEMU's (none with `--no-qemu` or for flat guests).
    pub qemu: Vec<Sample>,
    /// The host's (C benchmarks only).
    pub native: Vec<Sample>,
}

/// Whether the sides printed the same results.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Check {
    /// Every run that finished printed the same lines as the other sides (or, for flat
    /// guests, the checksum Rust computes natively).
    Ok,
    /// Something differs; what, in a line.
    Mismatch(String),
    /// Nothing to compare (boots, or a single side).
    None,
}

impl Record {
    /// A record without samples yet.
    pub fn new(workload: &'static Workload) -> Record {
        Record {
            workload,
            crane86: Vec::new(),
            qemu: Vec::new(),
            native: Vec::new(),
        }
    }

    /// The samples of `side`.
    pub fn samples(&self, side: Side) -> &[Sample] {
        match side {
            Side::Crane86 => &self.crane86,
            Side::Qemu => &self.qemu,
            Side::Native => &self.native,
        }
    }

    /// The samples of `side`, to add to.
    pub fn samples_mut(&mut self, side: Side) -> &mut Vec<Sample> {
        match side {
            Side::Crane86 => &mut self.crane86,
            Side::Qemu => &mut self.qemu,
            Side::Native => &mut self.native,
        }
    }

    /// Median, min and max of `side`'s successful samples.
    pub fn summary(&self, side: Side) -> Option<Summary> {
        let secs: Vec<f64> = self
            .samples(side)
            .iter()
            .filter_map(|s| s.secs.as_ref().ok().copied())
            .collect();
        Summary::of(&secs)
    }

    /// Runs that gave no timing.
    pub fn failures(&self) -> usize {
        [Side::Crane86, Side::Qemu, Side::Native]
            .iter()
            .map(|&s| self.samples(s).iter().filter(|x| x.secs.is_err()).count())
            .sum()
    }

    /// Compares the result lines of every finished run.
    pub fn check(&self) -> Check {
        let finished = |side: Side| {
            self.samples(side)
                .iter()
                .filter(|s| s.secs.is_ok())
                .map(move |s| (side, &s.output))
        };
        let reference = match self.workload.kind {
            Kind::Boot(_) => return Check::None,
            Kind::Flat { guest } => match crane86_guests::by_name(guest, 64) {
                Some(g) => Some(g.expected_output.lines().map(str::to_string).collect()),
                None => return Check::Mismatch(format!("no bundled guest `{guest}`")),
            },
            Kind::InGuest { .. } => None,
        };
        let runs: Vec<(Side, &Vec<String>)> = [Side::Crane86, Side::Qemu, Side::Native]
            .into_iter()
            .flat_map(finished)
            .collect();
        let sides = runs
            .iter()
            .map(|r| r.0)
            .collect::<std::collections::HashSet<_>>();
        let (first_side, first): (&str, &Vec<String>) = match (&reference, runs.first()) {
            (Some(r), _) => ("expected", r),
            (None, Some((side, out))) if sides.len() >= 2 => (side.name(), out),
            _ => return Check::None,
        };
        match runs.iter().find(|(_, out)| *out != first) {
            Some((side, out)) => Check::Mismatch(format!(
                "{}: {:?} vs {first_side}: {:?}",
                side.name(),
                out.join(" | "),
                first.join(" | ")
            )),
            None if runs.is_empty() => Check::None,
            None => Check::Ok,
        }
    }
}

/// The report's header: what ran, where.
pub fn header(machine: &Machine, reps: u32, quick: bool) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "crane86 bench: {reps} repetition{}{}, {}; times are wall-clock on the host",
        if reps == 1 { "" } else { "s" },
        if quick { " (quick subset)" } else { "" },
        if machine.qemu.is_some() {
            "crane86 and QEMU interleaved"
        } else {
            "crane86 only"
        }
    );
    let _ = writeln!(
        s,
        "machine: {}, {} logical CPUs, Linux {}",
        machine.cpu, machine.cores, machine.kernel
    );
    let _ = writeln!(
        s,
        "crane86: {}",
        machine.commit.as_deref().unwrap_or("(no git commit)")
    );
    let _ = writeln!(s, "qemu: {}", machine.qemu.as_deref().unwrap_or("not run"));
    s
}

/// A side's cell: `median (min–max)`, failures counted, `failed`, `n/a` (cannot run
/// there) or `-` (not run).
fn cell(r: &Record, side: Side, applies: bool) -> String {
    let n = r.samples(side).len();
    let failed = r.samples(side).iter().filter(|s| s.secs.is_err()).count();
    match r.summary(side) {
        Some(s) if failed > 0 => format!("{}, {failed} failed", fmt_summary(&s)),
        Some(s) => fmt_summary(&s),
        None if n > 0 => "failed".into(),
        None if applies => "-".into(),
        None => "n/a".into(),
    }
}

fn fmt_ratio(r: Option<f64>) -> String {
    r.map_or("-".into(), |r| format!("{r:.2}"))
}

/// The results table: one row per workload.
pub fn table(records: &[Record]) -> String {
    let mut rows = vec![[
        "workload",
        "crane86",
        "QEMU",
        "crane86/QEMU",
        "native",
        "crane86/native",
        "QEMU/native",
        "check",
    ]
    .map(String::from)];
    for r in records {
        let (c, q, n) = (
            r.summary(Side::Crane86),
            r.summary(Side::Qemu),
            r.summary(Side::Native),
        );
        let native = matches!(r.workload.kind, Kind::InGuest { .. });
        rows.push([
            r.workload.name.to_string(),
            cell(r, Side::Crane86, true),
            cell(r, Side::Qemu, r.workload.qemu_arch().is_some()),
            fmt_ratio(ratio(c, q)),
            cell(r, Side::Native, native),
            fmt_ratio(ratio(c, n)),
            fmt_ratio(ratio(q, n)),
            match r.check() {
                Check::Ok => "ok".into(),
                Check::Mismatch(_) => "MISMATCH".into(),
                Check::None => "-".into(),
            },
        ]);
    }
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut s = String::new();
    for (k, row) in rows.iter().enumerate() {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(c, &w)| format!("{c}{}", " ".repeat(w - c.chars().count())))
            .collect();
        let _ = writeln!(s, "{}", cells.join("  ").trim_end());
        if k == 0 {
            let rule: Vec<String> = widths.iter().map(|&w| "-".repeat(w)).collect();
            let _ = writeln!(s, "{}", rule.join("  "));
        }
    }
    s
}

/// One line per failed run and per mismatch, for after the table.
pub fn problems(records: &[Record]) -> String {
    let mut s = String::new();
    for r in records {
        for side in [Side::Crane86, Side::Qemu, Side::Native] {
            for (i, sample) in r.samples(side).iter().enumerate() {
                if let Err(why) = &sample.secs {
                    let _ = writeln!(
                        s,
                        "{} on {}, repetition {}: {why}",
                        r.workload.name,
                        side.name(),
                        i + 1
                    );
                }
            }
        }
        if let Check::Mismatch(what) = r.check() {
            let _ = writeln!(s, "{}: results differ: {what}", r.workload.name);
        }
    }
    s
}

fn side_json(r: &Record, side: Side) -> Value {
    let samples = r.samples(side);
    if samples.is_empty() {
        return Value::Null;
    }
    let s = r.summary(side);
    json!({
        "samples_s": samples.iter().map(|x| x.secs.as_ref().ok()).collect::<Vec<_>>(),
        "errors": samples.iter().map(|x| x.secs.as_ref().err()).collect::<Vec<_>>(),
        "outputs": samples.iter().map(|x| &x.output).collect::<Vec<_>>(),
        "median_s": s.map(|s| s.median),
        "min_s": s.map(|s| s.min),
        "max_s": s.map(|s| s.max),
    })
}

/// Everything as one JSON document: the machine, the options, and per workload every raw
/// sample (`null` where a run failed, with its error beside it) and every output.
pub fn json(machine: &Machine, reps: u32, quick: bool, records: &[Record]) -> Value {
    let workloads: Vec<Value> = records
        .iter()
        .map(|r| {
            let (c, q, n) = (
                r.summary(Side::Crane86),
                r.summary(Side::Qemu),
                r.summary(Side::Native),
            );
            let (check, detail) = match r.check() {
                Check::Ok => ("ok", None),
                Check::Mismatch(m) => ("mismatch", Some(m)),
                Check::None => ("none", None),
            };
            json!({
                "name": r.workload.name,
                "kind": match r.workload.kind {
                    Kind::Boot(_) => "boot",
                    Kind::InGuest { .. } => "in-guest",
                    Kind::Flat { .. } => "flat",
                },
                "about": r.workload.about,
                "crane86": side_json(r, Side::Crane86),
                "qemu": side_json(r, Side::Qemu),
                "native": side_json(r, Side::Native),
                "ratio_crane86_qemu": ratio(c, q),
                "ratio_crane86_native": ratio(c, n),
                "ratio_qemu_native": ratio(q, n),
                "check": check,
                "check_detail": detail,
            })
        })
        .collect();
    json!({
        "machine": {
            "cpu": machine.cpu,
            "cores": machine.cores,
            "kernel": machine.kernel,
            "crane86_commit": machine.commit,
            "qemu": machine.qemu,
        },
        "reps": reps,
        "quick": quick,
        "workloads": workloads,
    })
}

/// A progress line for one finished run.
pub fn progress(name: &str, side: Side, rep: u32, reps: u32, sample: &Sample) -> String {
    let result = match &sample.secs {
        Ok(s) => fmt_secs(*s),
        Err(e) => format!("FAILED: {e}"),
    };
    format!("bench: [{rep}/{reps}] {name} on {}: {result}", side.name())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::workloads::SUITE;

    fn workload(name: &str) -> &'static Workload {
        SUITE.iter().find(|w| w.name == name).unwrap()
    }

    fn ok(secs: f64, out: &str) -> Sample {
        Sample {
            secs: Ok(secs),
            output: vec![out.to_string()],
        }
    }

    #[test]
    fn same_output_on_every_side_checks_ok_and_a_difference_is_flagged() {
        let mut r = Record::new(workload("crc32"));
        r.crane86 = vec![ok(2.0, "crc=1"), ok(3.0, "crc=1")];
        r.qemu = vec![ok(1.0, "crc=1")];
        assert_eq!(r.check(), Check::Ok);
        assert_eq!(
            ratio(r.summary(Side::Crane86), r.summary(Side::Qemu)),
            Some(2.5)
        );
        r.native = vec![ok(0.1, "crc=2")];
        assert!(matches!(r.check(), Check::Mismatch(m) if m.contains("native")));
    }

    #[test]
    fn failed_runs_are_counted_not_compared() {
        let mut r = Record::new(workload("pipe"));
        r.crane86 = vec![
            ok(2.0, "x"),
            Sample {
                secs: Err("timed out".into()),
                output: vec![],
            },
        ];
        r.qemu = vec![ok(1.0, "x")];
        assert_eq!(r.check(), Check::Ok);
        assert_eq!(r.failures(), 1);
        assert!(table(&[r]).contains("2.00 s (2.00–2.00), 1 failed"));
    }

    #[test]
    fn a_single_side_has_nothing_to_compare_but_flat_guests_have_a_reference() {
        let mut r = Record::new(workload("shell-loop"));
        r.crane86 = vec![ok(2.0, "shell-loop: i=100000")];
        assert_eq!(r.check(), Check::None);
        let mut f = Record::new(workload("flat-crc32"));
        f.crane86 = vec![ok(0.05, "not the checksum")];
        assert!(matches!(f.check(), Check::Mismatch(_)));
        assert!(table(&[f]).lines().nth(2).unwrap().contains("n/a"));
    }
}
