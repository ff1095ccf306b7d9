//! The tier-agreement oracle: two machines that ran the same guest, one interpreting and
//! one compiling, must end the same way in the same state.

use std::fmt;

use crane86_machine::{Machine, RunEnd};
use crane86_translator::interp::rflags;

/// What a harness found: a description of the disagreement or the error, for the fuzzer's
/// crash report and the regression test's failure message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding(pub String);

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Finding {}

/// Compares two machines after runs that ended with `a_end` and `b_end`. A run that hit its
/// instruction budget is not compared: a compiled block runs whole, so the JIT may stop a
/// few instructions later than the interpreter.
pub(crate) fn tiers_agree(
    a: &Machine,
    a_end: &RunEnd,
    b: &Machine,
    b_end: &RunEnd,
) -> Result<(), Finding> {
    if matches!(a_end, RunEnd::Limit) || matches!(b_end, RunEnd::Limit) {
        return Ok(());
    }
    let mut diffs = Vec::new();
    if a_end != b_end {
        diffs.push(format!("end: interp {a_end:?}, jit {b_end:?}"));
    }
    let (ca, cb) = (&a.cpu, &b.cpu);
    for i in 0..16 {
        if ca.gpr[i] != cb.gpr[i] {
            diffs.push(format!("gpr{i}: {:#x} vs {:#x}", ca.gpr[i], cb.gpr[i]));
        }
    }
    let pairs = [
        ("rip", ca.rip, cb.rip),
        ("rflags", rflags(ca), rflags(cb)),
        ("cr0", ca.cr0, cb.cr0),
        ("cr2", ca.cr2, cb.cr2),
        ("cr3", ca.cr3, cb.cr3),
        ("cr4", ca.cr4, cb.cr4),
        ("efer", ca.efer, cb.efer),
        ("gdtr", ca.gdtr.base, cb.gdtr.base),
        ("idtr", ca.idtr.base, cb.idtr.base),
    ];
    for (name, x, y) in pairs {
        if x != y {
            diffs.push(format!("{name}: {x:#x} vs {y:#x}"));
        }
    }
    for (i, (sa, sb)) in ca.seg.iter().zip(cb.seg.iter()).enumerate() {
        if (sa.selector, sa.base, sa.limit, sa.attrs) != (sb.selector, sb.base, sb.limit, sb.attrs)
        {
            diffs.push(format!("seg{i}: {sa:x?} vs {sb:x?}"));
        }
    }
    if ca.fpu != cb.fpu {
        diffs.push("x87/SSE state differs".into());
    }
    let (ra, rb) = (a.mem.ram(), b.mem.ram());
    if let Some(at) = ra.iter().zip(rb.iter()).position(|(x, y)| x != y) {
        diffs.push(format!(
            "memory from {at:#x}: {:02x?} vs {:02x?}",
            &ra[at..(at + 16).min(ra.len())],
            &rb[at..(at + 16).min(rb.len())]
        ));
    }
    if a.serial_output() != b.serial_output() {
        diffs.push("serial output differs".into());
    }
    if diffs.is_empty() {
        Ok(())
    } else {
        Err(Finding(format!(
            "the tiers disagree:\n  {}",
            diffs.join("\n  ")
        )))
    }
}
