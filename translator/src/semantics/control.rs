//! Near control transfer (SDM Vol. 1, 6.3 and 7.3.8): JMP, Jcc, JCXZ/JECXZ/JRCXZ,
//! LOOP/LOOPE/LOOPNE, CALL, RET; and BOUND, which transfers control only by faulting. Far
//! transfers are runtime class (`far.rs`).

use crane86_runtime::{Exception, Fault};
use iced_x86::{Code, Instruction, Mnemonic, OpKind};

use super::flags::{cond, flag, Flag};
use super::operands::{read_gpr_sized, read_op, sext_size, trunc, write_gpr_sized};
use super::seg_check::Access;
use super::stack::{pop_value, push_value, set_sp, sp, sp_offset};
use crate::emit::{Bin, Cmp, Emit, R};

/// #GP(0) at the branch when a 64-bit code's computed target is not canonical: the fault
/// belongs to the transfer (RIP still at the branch), not to the fetch at the target.
fn check_target<E: Emit>(e: &mut E, t: E::V) -> R<()> {
    if e.ctx().mode != crane86_runtime::CpuMode::Long64 {
        return Ok(());
    }
    let sh = e.imm(16);
    let up = e.bin(Bin::Shl, t, sh);
    let canon = e.bin(Bin::Sar, up, sh);
    let bad = e.cmp(Cmp::Ne, canon, t);
    e.raise_if(bad, Fault::with_code(Exception::GeneralProtection, 0))
}

/// JMP rel / JMP r/m.
pub fn jmp<E: Emit>(e: &mut E, insn: &Instruction) -> R<()> {
    if matches!(
        insn.op_kind(0),
        OpKind::NearBranch16 | OpKind::NearBranch32 | OpKind::NearBranch64
    ) {
        let t = e.imm(insn.near_branch_target());
        e.jump(t);
        return Ok(());
    }
    let size = super::operands::op_size(insn, 0);
    let t = read_op(e, insn, 0, size)?;
    check_target(e, t)?;
    e.jump(t);
    Ok(())
}

/// Jcc rel.
pub fn jcc<E: Emit>(e: &mut E, insn: &Instruction) -> R<()> {
    let c = cond(e, insn.condition_code());
    e.branch(c, insn.near_branch_target(), insn.next_ip());
    Ok(())
}

/// The counter register width of LOOP/JCXZ: the address size, which iced names in the code.
fn counter_size(code: Code) -> u32 {
    use Code::*;
    match code {
        Jcxz_rel8_16 | Jcxz_rel8_32 | Loop_rel8_16_CX | Loop_rel8_32_CX | Loope_rel8_16_CX
        | Loope_rel8_32_CX | Loopne_rel8_16_CX | Loopne_rel8_32_CX => 2,
        Jecxz_rel8_16 | Jecxz_rel8_32 | Jecxz_rel8_64 | Loop_rel8_16_ECX | Loop_rel8_32_ECX
        | Loop_rel8_64_ECX | Loope_rel8_16_ECX | Loope_rel8_32_ECX | Loope_rel8_64_ECX
        | Loopne_rel8_16_ECX | Loopne_rel8_32_ECX | Loopne_rel8_64_ECX => 4,
        _ => 8,
    }
}

/// JCXZ, JECXZ, JRCXZ.
pub fn jcxz<E: Emit>(e: &mut E, insn: &Instruction) -> R<()> {
    let c = read_gpr_sized(e, 1, counter_size(insn.code()));
    let z = e.imm(0);
    let is_zero = e.cmp(Cmp::Eq, c, z);
    e.branch(is_zero, insn.near_branch_target(), insn.next_ip());
    Ok(())
}

/// LOOP, LOOPE, LOOPNE: decrement the counter (no flags), branch while non-zero (and ZF).
pub fn loop_<E: Emit>(e: &mut E, insn: &Instruction) -> R<()> {
    let size = counter_size(insn.code());
    let c = read_gpr_sized(e, 1, size);
    let one = e.imm(1);
    let c = e.bin(Bin::Sub, c, one);
    let c = trunc(e, c, size);
    let zf = match insn.mnemonic() {
        Mnemonic::Loope => Some(flag(e, Flag::Zf)),
        Mnemonic::Loopne => {
            let z = flag(e, Flag::Zf);
            Some(e.bin(Bin::Xor, z, one))
        }
        _ => None,
    };
    write_gpr_sized(e, 1, size, c);
    let z = e.imm(0);
    let nz = e.cmp(Cmp::Ne, c, z);
    let take = match zf {
        Some(f) => e.bin(Bin::And, nz, f),
        None => nz,
    };
    e.branch(take, insn.near_branch_target(), insn.next_ip());
    Ok(())
}

/// CALL rel / CALL r/m: the target is read before the return address is pushed.
pub fn call<E: Emit>(e: &mut E, insn: &Instruction) -> R<()> {
    let size = insn.stack_pointer_increment().unsigned_abs();
    let target = if matches!(
        insn.op_kind(0),
        OpKind::NearBranch16 | OpKind::NearBranch32 | OpKind::NearBranch64
    ) {
        e.imm(insn.near_branch_target())
    } else {
        let t = read_op(e, insn, 0, size)?;
        check_target(e, t)?;
        t
    };
    let ret = e.imm(insn.next_ip());
    let s = sp(e);
    let new = push_value(e, s, ret, size)?;
    set_sp(e, new);
    e.predict_return(insn.next_ip());
    e.jump(target);
    Ok(())
}

/// RET / RET imm16.
pub fn ret<E: Emit>(e: &mut E, insn: &Instruction) -> R<()> {
    let extra = if insn.op_count() > 0 {
        insn.immediate(0) & 0xffff
    } else {
        0
    };
    let size = (insn.stack_pointer_increment() as u64 - extra) as u32;
    let s = sp(e);
    let (t, new) = pop_value(e, s, size)?;
    check_target(e, t)?;
    let new = if extra != 0 {
        sp_offset(e, new, extra as i64)
    } else {
        new
    };
    set_sp(e, new);
    e.return_to(t);
    Ok(())
}

/// BOUND r, m: #BR (a fault: nothing changes) unless `lower <= index <= upper`, comparing
/// as signed values, with the two bounds read from consecutive memory operands.
pub fn bound<E: Emit>(e: &mut E, insn: &Instruction) -> R<()> {
    let size = insn.op_register(0).size() as u32;
    let at = super::operands::mem_access(e, insn, 2 * size, Access::Read)?;
    let lower = e.load(at, size)?;
    let step = e.imm(u64::from(size));
    let at_upper = e.bin(Bin::Add, at, step);
    let at_upper = trunc(e, at_upper, 4);
    let upper = e.load(at_upper, size)?;
    let index = read_gpr_sized(e, insn.op_register(0).number() & 15, size);
    let [index, lower, upper] = [index, lower, upper].map(|v| sext_size(e, v, size));
    let below = e.cmp(Cmp::Slt, index, lower);
    let above = e.cmp(Cmp::Slt, upper, index);
    let out = e.bin(Bin::Or, below, above);
    e.raise_if(out, Fault::new(Exception::BoundRange))
}
