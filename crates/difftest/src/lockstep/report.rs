//! What the comparison prints: the instruction history, a divergence with both states side
//! by side, and the summary.

use std::collections::VecDeque;
use std::io::Write;

use crane86_runtime::{memory, CpuMode, CpuState, PhysMem, SegReg};
use iced_x86::{Decoder, DecoderOptions, Formatter, Instruction, IntelFormatter};

use super::{End, Outcome};
use crate::state::{ArchState, Field};

/// One executed instruction, for the history shown at a divergence.
#[derive(Clone, Debug)]
pub(super) struct Executed {
    pub(super) step: u64,
    pub(super) linear: u64,
    pub(super) bytes: Vec<u8>,
    pub(super) text: String,
}

/// The instruction crane86 is about to execute, decoded from its memory.
pub(super) fn next_instruction(
    cpu: &mut CpuState,
    mem: &mut PhysMem,
) -> Option<(Instruction, Vec<u8>, u64)> {
    let mut linear = cpu.seg(SegReg::Cs).base.wrapping_add(cpu.rip);
    if cpu.mode != CpuMode::Long64 {
        linear &= 0xffff_ffff;
    }
    let mut bytes = Vec::with_capacity(15);
    for i in 0..15u64 {
        let at = linear.wrapping_add(i);
        let Ok(phys) = memory::fetch_phys(cpu, mem, at) else {
            break;
        };
        bytes.push(mem.peek_phys(phys, 1) as u8);
    }
    let mut d = Decoder::with_ip(cpu.mode.bitness(), &bytes, cpu.rip, DecoderOptions::NONE);
    let insn = d.decode();
    if insn.is_invalid() {
        return None;
    }
    bytes.truncate(insn.len());
    Some((insn, bytes, linear))
}

pub(super) fn disassemble(insn: &Instruction) -> String {
    let mut out = String::new();
    IntelFormatter::new().format(insn, &mut out);
    out
}

fn hex_bytes(b: &[u8]) -> String {
    b.iter()
        .map(|x| format!("{x:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Prints both states side by side, marking the fields that differ.
fn side_by_side(
    out: &mut dyn Write,
    q: &ArchState,
    c: &ArchState,
    differ: &[(Field, Field)],
) -> std::io::Result<()> {
    writeln!(out, "  {:<8} {:<34} {:<34}", "", "qemu", "crane86")?;
    for f in &q.fields {
        let Some(cv) = c.get(f.name) else { continue };
        let mark = if differ.iter().any(|(d, _)| d.name == f.name) {
            "  <<"
        } else {
            ""
        };
        writeln!(
            out,
            "  {:<8} {:<34} {:<34}{mark}",
            f.name,
            format!("{:0w$x}", f.value, w = f.digits),
            format!("{:0w$x}", cv, w = f.digits)
        )?;
    }
    Ok(())
}

/// Prints one divergence: the instruction, the differing fields, both states, the history.
pub(super) fn report(
    out: &mut dyn Write,
    o: &Outcome,
    next: Option<&(Instruction, Vec<u8>, u64)>,
    q: &ArchState,
    c: &ArchState,
    differ: &[(Field, Field)],
    history: &VecDeque<Executed>,
) -> std::io::Result<()> {
    let what = match next {
        Some((i, bytes, linear)) => {
            format!("{linear:#x}  {}  {}", hex_bytes(bytes), disassemble(i))
        }
        None => "an instruction crane86 cannot decode".into(),
    };
    writeln!(
        out,
        "divergence {} at step {}: {what}",
        o.divergences + 1,
        o.steps
    )?;
    let names: Vec<&str> = differ.iter().map(|(f, _)| f.name).collect();
    if names.is_empty() {
        writeln!(out, "  differing: memory (below the states)")?;
    } else {
        writeln!(out, "  differing: {}", names.join(" "))?;
    }
    side_by_side(out, q, c, differ)?;
    writeln!(out, "  the last {} instructions:", history.len())?;
    for e in history {
        writeln!(
            out,
            "    step {:>9}  {:#014x}  {:<24} {}",
            e.step,
            e.linear,
            hex_bytes(&e.bytes),
            e.text
        )?;
    }
    Ok(())
}

/// The closing lines: explained differences, the COM1 comparison, how it ended, and
/// `difftest: steps=N divergences=D`.
pub(super) fn summary(
    out: &mut dyn Write,
    o: &Outcome,
    qemu: &crate::qemu::Qemu,
    m: &crane86_machine::Machine,
) -> std::io::Result<()> {
    let explained: Vec<String> = o
        .explained
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    if !explained.is_empty() {
        writeln!(
            out,
            "difftest: explained differences (crane86 took QEMU's values): {}",
            explained.join(" ")
        )?;
    }
    let qemu_serial = std::fs::read(&qemu.serial).unwrap_or_default();
    let crane_serial = m.serial_output();
    if qemu_serial == crane_serial {
        writeln!(
            out,
            "difftest: COM1 output identical ({} bytes)",
            crane_serial.len()
        )?;
    } else {
        let same = qemu_serial
            .iter()
            .zip(&crane_serial)
            .take_while(|(a, b)| a == b)
            .count();
        writeln!(
            out,
            "difftest: COM1 output differs from byte {same} (QEMU {} bytes, crane86 {})",
            qemu_serial.len(),
            crane_serial.len()
        )?;
    }
    let end = match &o.end {
        End::Limit => format!("{} steps compared (the limit)", o.steps),
        End::Exited(v) => format!("both guests exited through isa-debug-exit with value {v:#x}"),
        End::Halted => "the guest halted (HLT) with interrupts held; nothing happens without an asynchronous event".into(),
        End::Asynchronous(what) => format!("first asynchronous event: {what}"),
        End::Stopped(why) => why.clone(),
        End::Diverged => "divergence limit reached".into(),
    };
    writeln!(out, "difftest: end: {end}")?;
    writeln!(
        out,
        "difftest: steps={} divergences={}",
        o.steps, o.divergences
    )
}
