//! Differences that are not divergences: what an instruction may legitimately read
//! differently (time, devices, the CPU model), QEMU's known deviations, and interrupts QEMU
//! took that crane86 replays.

use crane86_runtime::{memory, CpuState, PhysMem};
use iced_x86::{Instruction, Mnemonic};

use crate::qemu::{Qemu, QemuError};
use crate::state::{ArchState, Field};

/// What kind of allowed difference an instruction can explain, if any.
pub(super) fn explanation(insn: &Instruction, touched_device: bool) -> Option<&'static str> {
    use Mnemonic as M;
    match insn.mnemonic() {
        M::Rdtsc | M::Rdtscp | M::Rdpmc | M::Rdrand | M::Rdseed | M::Rdpid => {
            Some("time-and-randomness")
        }
        M::In | M::Insb | M::Insw | M::Insd => Some("device-input"),
        M::Cpuid | M::Rdmsr | M::Xgetbv => Some("cpu-model"),
        _ if touched_device => Some("device-input"),
        _ => None,
    }
}

/// Differences that are QEMU's, documented with their evidence in docs/design.md; crane86
/// follows the SDM there.
pub(super) fn known_qemu_deviation(
    insn: &Instruction,
    differ: &[(Field, Field)],
) -> Option<&'static str> {
    // QEMU 7.2's SYSCALL rebuilds EFLAGS from its EFLAGS word alone, in which the lazily
    // kept arithmetic flags are zero: OF SF ZF AF PF CF all read 0 afterwards, whatever
    // SFMASK says (SDM: RFLAGS AND NOT SFMASK).
    let arith = u128::from(crane86_runtime::flags::ARITH);
    let only_arith_cleared = |(q, c): &(Field, Field)| {
        q.name == "eflags" && (q.value ^ c.value) & !arith == 0 && q.value & arith == 0
    };
    (insn.mnemonic() == Mnemonic::Syscall && differ.iter().all(only_arith_cleared))
        .then_some("qemu-syscall-arith-flags")
}

/// The handler QEMU entered, if its new state is the entry of an external interrupt
/// (vector 32 and up, or NMI) taken in place of `insn`: the handler is that vector's in
/// the IDT (IVT) and the return address on the new stack is the interrupted instruction
/// (after HLT, the next one).
pub(super) fn interrupt_taken(
    qemu: &mut Qemu,
    cpu: &mut CpuState,
    mem: &mut PhysMem,
    q: &ArchState,
    insn: Option<&Instruction>,
) -> Result<Option<u8>, QemuError> {
    let (Some(rip), Some(rsp), Some(cs)) = (q.get("rip"), q.get("rsp"), q.get("cs")) else {
        return Ok(None);
    };
    let (rip, rsp, cs) = (rip as u64, rsp as u64, cs as u16);
    let pre = cpu.rip;
    let resumes = match insn {
        Some(i) if i.mnemonic() == Mnemonic::Hlt => [pre, i.next_ip()],
        _ => [pre, pre],
    };
    let real = cpu.cr0 & 1 == 0;
    let long = cpu.efer & (1 << 10) != 0;
    let entry = if real {
        4
    } else if long {
        16
    } else {
        8
    };
    let mut vectors = Vec::new();
    for v in (32..=255u16).chain([2]) {
        let at = cpu.idtr.base + u64::from(v) * entry;
        if u64::from(v) * entry + entry - 1 > u64::from(cpu.idtr.limit) {
            continue;
        }
        let read = |cpu: &mut CpuState, mem: &mut PhysMem, a: u64, n: u32| {
            memory::read_linear(cpu, mem, a, n).ok()
        };
        let handler = if real {
            read(cpu, mem, at, 4).map(|w| ((w >> 16) as u16, w & 0xffff))
        } else {
            let (Some(lo), Some(hi)) = (read(cpu, mem, at, 4), read(cpu, mem, at + 4, 4)) else {
                continue;
            };
            let mut off = (lo & 0xffff) | (hi & 0xffff_0000);
            if long {
                off |= read(cpu, mem, at + 8, 4).unwrap_or(0) << 32;
            }
            Some(((lo >> 16) as u16, off))
        };
        if let Some((sel, off)) = handler {
            let same_cs = if real { sel == cs } else { sel & !3 == cs & !3 };
            if same_cs && off == rip {
                vectors.push(v as u8);
            }
        }
    }
    if vectors.is_empty() {
        return Ok(None);
    }
    // The return address at the top of QEMU's new stack (QEMU reads through its MMU).
    let ss_base = q.get("ss_base").unwrap_or(0) as u64;
    let width = if long {
        8
    } else if real {
        2
    } else {
        4
    };
    let top = qemu.rsp.read_memory(ss_base.wrapping_add(rsp), width)?;
    let mut v = [0u8; 8];
    v[..width].copy_from_slice(&top);
    let ret = u64::from_le_bytes(v);
    Ok(resumes.contains(&ret).then(|| vectors[0]))
}

/// Adopts only the EFLAGS bits in `bits` (an instruction's undefined flags).
pub(super) fn adopt_registers_flags(cpu: &mut CpuState, q: &ArchState, bits: u64) {
    let Some(v) = q.get("eflags") else { return };
    let now = crane86_translator::interp::rflags(cpu);
    let new = (now & !bits) | (v as u64 & bits);
    cpu.cc = crane86_runtime::LazyFlags::from_eflags(new);
    cpu.rflags = (new & !crane86_runtime::flags::ARITH) | crane86_runtime::flags::FIXED1;
}
