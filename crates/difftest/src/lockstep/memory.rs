//! `--memory`: the bytes each instruction writes, compared between the machines.

use crane86_runtime::{memory, CpuMode, CpuState, PhysMem, SegReg};
use iced_x86::{Instruction, InstructionInfoFactory, OpAccess, Register};

/// The linear addresses and sizes `insn` writes, from crane86's registers before it runs
/// (iced-x86 lists explicit operands and implicit stack accesses; a string instruction's
/// first element stands for all).
pub(super) fn written(insn: &Instruction, cpu: &CpuState) -> Vec<(u64, usize)> {
    let mut info = InstructionInfoFactory::new();
    let long = cpu.mode == CpuMode::Long64;
    let get = |reg: Register, _: usize, _: usize| -> Option<u64> {
        let seg = match reg {
            Register::ES => Some(SegReg::Es),
            Register::CS => Some(SegReg::Cs),
            Register::SS => Some(SegReg::Ss),
            Register::DS => Some(SegReg::Ds),
            Register::FS => Some(SegReg::Fs),
            Register::GS => Some(SegReg::Gs),
            _ => None,
        };
        if let Some(s) = seg {
            return Some(cpu.seg(s).base);
        }
        if !reg.is_gpr() {
            return None;
        }
        let full = reg.full_register();
        let n = full.number();
        let v = *cpu.gpr.get(n)?;
        Some(match reg.size() {
            1 => v & 0xff,
            2 => v & 0xffff,
            4 => v & 0xffff_ffff,
            _ => v,
        })
    };
    info.info(insn)
        .used_memory()
        .iter()
        .filter(|m| {
            matches!(
                m.access(),
                OpAccess::Write
                    | OpAccess::ReadWrite
                    | OpAccess::CondWrite
                    | OpAccess::ReadCondWrite
            )
        })
        .filter_map(|m| {
            let mut at = m.virtual_address(0, get)?;
            if !long {
                at &= 0xffff_ffff;
            }
            Some((at, m.memory_size().size().clamp(1, 64)))
        })
        .collect()
}

/// crane86's bytes at `at` (linear), if mapped.
pub(super) fn read(cpu: &mut CpuState, mem: &mut PhysMem, at: u64, len: usize) -> Option<Vec<u8>> {
    (0..len as u64)
        .map(|i| {
            memory::read_linear(cpu, mem, at.wrapping_add(i), 1)
                .ok()
                .map(|b| b as u8)
        })
        .collect()
}

/// Writes `bytes` at `at` (linear) in crane86: adopting QEMU's memory.
pub(super) fn write(cpu: &mut CpuState, mem: &mut PhysMem, at: u64, bytes: &[u8]) {
    for (i, b) in bytes.iter().enumerate() {
        let _ = memory::write_linear(cpu, mem, at.wrapping_add(i as u64), 1, u64::from(*b));
    }
}
