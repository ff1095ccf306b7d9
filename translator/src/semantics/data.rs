//! Data transfer and conversion (SDM Vol. 1, 7.3.1): MOV and its extending forms, MOVBE,
//! LEA, XCHG, CMOVcc, SETcc, BSWAP, CBW..CQO, LAHF/SAHF, XLAT, and the flag-bit instructions
//! CLC STC CMC CLD STD.

use crane86_runtime::flags as fl;
use iced_x86::{Instruction, Mnemonic, OpKind, Register};

use super::flags::{cond, eflags, flag, update_flags, Flag};
use super::operands::{
    addr_size, effective_address, loc, mask, op_size, read_gpr_sized, read_loc, read_op, read_reg,
    sext_size, trunc, write_gpr_sized, write_loc, write_reg,
};
use super::seg_check::{checked_linear, Access};
use crate::emit::{Bin, Emit, Un, R};

/// MOV r/m, r/m/imm (and the moffs forms, whose memory operand iced reports as ModRM-like).
pub fn mov<E: Emit>(e: &mut E, insn: &Instruction) -> R<()> {
    let size = op_size(insn, 0);
    let v = read_op(e, insn, 1, size)?;
    let dst = loc(e, insn, 0)?;
    write_loc(e, dst, size, v)
}

/// MOVZX, MOVSX and MOVSXD: widen the source to the destination size.
pub fn mov_extend<E: Emit>(e: &mut E, insn: &Instruction, signed: bool) -> R<()> {
    let dsize = op_size(insn, 0);
    let ssize = op_size(insn, 1);
    let v = read_op(e, insn, 1, ssize)?;
    let v = if signed { sext_size(e, v, ssize) } else { v };
    let v = trunc(e, v, dsize);
    write_reg(e, insn.op_register(0), v);
    Ok(())
}

fn byte_swap<E: Emit>(e: &mut E, v: E::V, size: u32) -> E::V {
    let s = e.un(Un::Bswap, v);
    let sh = e.imm(u64::from(64 - size * 8));
    e.bin(Bin::Shr, s, sh)
}

/// MOVBE: a move that reverses the byte order.
pub fn movbe<E: Emit>(e: &mut E, insn: &Instruction) -> R<()> {
    let size = op_size(insn, 0);
    let v = read_op(e, insn, 1, size)?;
    let v = byte_swap(e, v, size);
    let dst = loc(e, insn, 0)?;
    write_loc(e, dst, size, v)
}

/// BSWAP: 32- and 64-bit byte reversal; the 16-bit form (undefined in the SDM) clears the
/// register as hardware does.
pub fn bswap<E: Emit>(e: &mut E, insn: &Instruction) -> R<()> {
    let r = insn.op_register(0);
    let size = r.size() as u32;
    let v = if size == 2 {
        e.imm(0)
    } else {
        let v = read_reg(e, r);
        byte_swap(e, v, size)
    };
    write_reg(e, r, v);
    Ok(())
}

/// LEA: the effective address, truncated to the operand size; no memory access.
pub fn lea<E: Emit>(e: &mut E, insn: &Instruction) -> R<()> {
    let size = op_size(insn, 0);
    let ea = effective_address(e, insn);
    let ea = trunc(e, ea, size);
    write_reg(e, insn.op_register(0), ea);
    Ok(())
}

/// XCHG (a memory operand implies LOCK; one CPU sees no difference yet).
pub fn xchg<E: Emit>(e: &mut E, insn: &Instruction) -> R<()> {
    let size = op_size(insn, 0);
    let a_loc = loc(e, insn, 0)?;
    let b_loc = loc(e, insn, 1)?;
    let a = read_loc(e, a_loc, size)?;
    let b = read_loc(e, b_loc, size)?;
    // The memory side (if any) is written first, so a fault leaves the registers intact.
    if matches!(a_loc, super::operands::Loc::Mem(_)) {
        write_loc(e, a_loc, size, b)?;
        write_loc(e, b_loc, size, a)
    } else {
        write_loc(e, b_loc, size, a)?;
        write_loc(e, a_loc, size, b)
    }
}

/// CMOVcc: the source is always read; a 32-bit destination is written (zero-extended) even
/// when the condition is false.
pub fn cmov<E: Emit>(e: &mut E, insn: &Instruction) -> R<()> {
    let size = op_size(insn, 0);
    let src = read_op(e, insn, 1, size)?;
    let c = cond(e, insn.condition_code());
    let old = read_reg(e, insn.op_register(0));
    let v = e.select(c, src, old);
    write_reg(e, insn.op_register(0), v);
    Ok(())
}

/// SETcc: 1 or 0 into a byte.
pub fn setcc<E: Emit>(e: &mut E, insn: &Instruction) -> R<()> {
    let c = cond(e, insn.condition_code());
    let dst = loc(e, insn, 0)?;
    write_loc(e, dst, 1, c)
}

/// CBW/CWDE/CDQE (sign-extend the accumulator's lower half into itself) and CWD/CDQ/CQO
/// (sign-extend the accumulator into DX/EDX/RDX).
pub fn convert<E: Emit>(e: &mut E, insn: &Instruction) -> R<()> {
    let (from, to, into_dx) = match insn.mnemonic() {
        Mnemonic::Cbw => (1, 2, false),
        Mnemonic::Cwde => (2, 4, false),
        Mnemonic::Cdqe => (4, 8, false),
        Mnemonic::Cwd => (2, 2, true),
        Mnemonic::Cdq => (4, 4, true),
        _ => (8, 8, true),
    };
    let a = read_gpr_sized(e, 0, from);
    let wide = sext_size(e, a, from);
    if into_dx {
        let sh = e.imm(63);
        let hi = e.bin(Bin::Sar, wide, sh);
        let hi = trunc(e, hi, to);
        write_gpr_sized(e, 2, to, hi);
    } else {
        let v = trunc(e, wide, to);
        write_gpr_sized(e, 0, to, v);
    }
    Ok(())
}

/// LAHF: AH = SF:ZF:0:AF:0:PF:1:CF.
pub fn lahf<E: Emit>(e: &mut E) -> R<()> {
    let f = eflags(e);
    let m = e.imm(fl::SF | fl::ZF | fl::AF | fl::PF | fl::CF);
    let f = e.bin(Bin::And, f, m);
    let two = e.imm(fl::FIXED1);
    let f = e.bin(Bin::Or, f, two);
    write_reg(e, Register::AH, f);
    Ok(())
}

/// SALC (undocumented D6, valid outside 64-bit mode): AL = CF ? 0xFF : 0; flags unchanged.
pub fn salc<E: Emit>(e: &mut E) -> R<()> {
    let cf = flag(e, Flag::Cf);
    let ff = e.imm(0xff);
    let zero = e.imm(0);
    let al = e.select(cf, ff, zero);
    write_reg(e, Register::AL, al);
    Ok(())
}

/// SAHF: SF ZF AF PF CF from AH; OF is kept.
pub fn sahf<E: Emit>(e: &mut E) -> R<()> {
    let ah = read_reg(e, Register::AH);
    update_flags(e, fl::SF | fl::ZF | fl::AF | fl::PF | fl::CF, ah);
    Ok(())
}

/// XLAT: AL = [seg:rBX + AL] at the instruction's address size.
pub fn xlat<E: Emit>(e: &mut E, insn: &Instruction) -> R<()> {
    let asz = match insn.op_kind(0) {
        OpKind::Memory => addr_size(insn),
        _ => 8,
    };
    let bx = read_gpr_sized(e, 3, asz);
    let al = read_gpr_sized(e, 0, 1);
    let off = e.bin(Bin::Add, bx, al);
    let m = e.imm(mask(asz));
    let off = e.bin(Bin::And, off, m);
    let lin = checked_linear(e, insn.memory_segment(), off, 1, Access::Read)?;
    let v = e.load(lin, 1)?;
    write_gpr_sized(e, 0, 1, v);
    Ok(())
}

/// CLC, STC, CMC.
pub fn carry_op<E: Emit>(e: &mut E, m: Mnemonic) -> R<()> {
    let v = match m {
        Mnemonic::Clc => e.imm(0),
        Mnemonic::Stc => e.imm(fl::CF),
        _ => {
            let c = flag(e, Flag::Cf);
            let one = e.imm(1);
            e.bin(Bin::Xor, c, one)
        }
    };
    update_flags(e, fl::CF, v);
    Ok(())
}

/// CLD and STD.
pub fn direction<E: Emit>(e: &mut E, set: bool) -> R<()> {
    let r = e.rflags_rest();
    let v = if set {
        let df = e.imm(fl::DF);
        e.bin(Bin::Or, r, df)
    } else {
        let ndf = e.imm(!fl::DF);
        e.bin(Bin::And, r, ndf)
    };
    e.set_rflags_rest(v);
    Ok(())
}

/// A read of the memory operand that a multi-byte NOP names is not performed; NOP does
/// nothing at all, whatever its operands.
pub fn nop<E: Emit>(_e: &mut E) -> R<()> {
    Ok(())
}
