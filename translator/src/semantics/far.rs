//! Far transfers and fast system calls (SDM Vol. 2 "CALL", "JMP", "RET", "SYSCALL",
//! "SYSRET", "SYSENTER", "SYSEXIT", "SWAPGS"): the runtime-class glue between decoded
//! instructions and `runtime::far` / `runtime::fastcall`, which hold the architecture.
//!
//! Each handler gathers its operands (the far pointer, from the instruction or memory, is
//! read before anything changes), calls the runtime with the full RFLAGS, and on success
//! applies the returned RFLAGS and continues at the new CS:RIP.

use crane86_runtime::far::{self, FarKind};
use crane86_runtime::interrupt::Delivery;
use crane86_runtime::{fastcall, Fault};
use iced_x86::{Code, Instruction, Mnemonic};

use super::operands::mem_access;
use super::seg_check::Access;
use super::system::Outcome;
use crate::emit::{Arith, Bin, Emit, R};
use crate::interp::{rflags, Interp};

/// True for the mnemonics this module executes.
pub fn handles(m: Mnemonic) -> bool {
    matches!(
        m,
        Mnemonic::Jmp
            | Mnemonic::Call
            | Mnemonic::Retf
            | Mnemonic::Syscall
            | Mnemonic::Sysret
            | Mnemonic::Sysretq
            | Mnemonic::Sysenter
            | Mnemonic::Sysexit
            | Mnemonic::Sysexitq
            | Mnemonic::Swapgs
    )
}

/// Executes a far JMP/CALL/RETF, SYSCALL/SYSRET, SYSENTER/SYSEXIT or SWAPGS.
pub fn execute(it: &mut Interp<'_>, insn: &Instruction) -> R<Outcome> {
    let flags = rflags(it.cpu);
    let next_ip = insn.next_ip();
    let result = match insn.mnemonic() {
        Mnemonic::Jmp | Mnemonic::Call => {
            let kind = if insn.mnemonic() == Mnemonic::Jmp {
                FarKind::Jmp
            } else {
                FarKind::Call
            };
            let (selector, offset, size) = far_pointer(it, insn)?;
            far::jmp_call(it.cpu, it.mem, kind, selector, offset, size, next_ip, flags)
        }
        Mnemonic::Retf => {
            let release = if insn.op_count() > 0 {
                insn.immediate16()
            } else {
                0
            };
            far::retf(it.cpu, it.mem, retf_size(insn.code()), release, flags)
        }
        Mnemonic::Syscall => fastcall::syscall(it.cpu, next_ip, flags).map_err(Delivery::Fault),
        Mnemonic::Sysret | Mnemonic::Sysretq => {
            let size = if insn.code() == Code::Sysretq { 8 } else { 4 };
            fastcall::sysret(it.cpu, size).map_err(Delivery::Fault)
        }
        Mnemonic::Sysenter => fastcall::sysenter(it.cpu, flags).map_err(Delivery::Fault),
        Mnemonic::Sysexit | Mnemonic::Sysexitq => {
            let size = if insn.code() == Code::Sysexitq { 8 } else { 4 };
            fastcall::sysexit(it.cpu, size, flags).map_err(Delivery::Fault)
        }
        Mnemonic::Swapgs => {
            if let Err(f) = fastcall::swapgs(it.cpu) {
                return Err(it.raise(f));
            }
            return Ok(Outcome::Continue);
        }
        _ => return Err(it.raise(Fault::new(crane86_runtime::Exception::InvalidOpcode))),
    };
    super::system::finish_transfer(it, result)
}

/// RETF's operand size in bytes, from iced's code.
fn retf_size(code: Code) -> u32 {
    match code {
        Code::Retfw | Code::Retfw_imm16 => 2,
        Code::Retfq | Code::Retfq_imm16 => 8,
        _ => 4,
    }
}

/// The selector, offset and operand size of a far JMP/CALL: from the instruction
/// (ptr16:16, ptr16:32) or from memory (m16:16, m16:32, m16:64: the offset, then the
/// selector).
fn far_pointer(it: &mut Interp<'_>, insn: &Instruction) -> R<(u16, u64, u32)> {
    use Code::*;
    let size = match insn.code() {
        Jmp_ptr1616 => return Ok((insn.far_branch_selector(), insn.far_branch16().into(), 2)),
        Call_ptr1616 => return Ok((insn.far_branch_selector(), insn.far_branch16().into(), 2)),
        Jmp_ptr1632 | Call_ptr1632 => {
            return Ok((insn.far_branch_selector(), insn.far_branch32().into(), 4));
        }
        Jmp_m1616 | Call_m1616 => 2,
        Jmp_m1664 | Call_m1664 => 8,
        _ => 4,
    };
    let addr = mem_access(it, insn, size + 2, Access::Read)?;
    let offset = it.load(addr, size)?;
    let n = it.imm(u64::from(size));
    let sel_at = it.bin(Bin::Add, addr, n);
    let sel_at = if it.ctx().mode == crane86_runtime::CpuMode::Long64 {
        sel_at
    } else {
        sel_at & 0xffff_ffff
    };
    let selector = it.load(sel_at, 2)? as u16;
    Ok((selector, offset, size))
}
