//! Binary arithmetic and logic (SDM Vol. 1, 7.3.2 and 7.3.3): ADD ADC SUB SBB AND OR XOR CMP
//! TEST, and the one-operand INC DEC NEG NOT.

use crane86_runtime::{CcKind, CcOp};
use iced_x86::Instruction;

use super::flags::{flag, Flag};
use super::operands::{loc, op_size, read_loc, read_op, trunc, write_loc};
use crate::emit::{Bin, Emit, Un, R};

/// The two-operand ALU operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AluOp {
    /// ADD.
    Add,
    /// OR.
    Or,
    /// ADC.
    Adc,
    /// SBB.
    Sbb,
    /// AND.
    And,
    /// SUB.
    Sub,
    /// XOR.
    Xor,
    /// CMP: SUB that writes only the flags.
    Cmp,
    /// TEST: AND that writes only the flags.
    Test,
}

/// `op dst, src` for the ALU operations.
pub fn binary<E: Emit>(e: &mut E, insn: &Instruction, op: AluOp) -> R<()> {
    let size = op_size(insn, 0);
    let dst = loc(e, insn, 0)?;
    let a = read_loc(e, dst, size)?;
    let b = read_op(e, insn, 1, size)?;
    // ADC/SBB read CF before anything is written.
    let carry = match op {
        AluOp::Adc | AluOp::Sbb => Some(flag(e, Flag::Cf)),
        _ => None,
    };
    let (res, kind) = match op {
        AluOp::Add => (e.bin(Bin::Add, a, b), CcKind::Add),
        AluOp::Adc => {
            let s = e.bin(Bin::Add, a, b);
            (e.bin(Bin::Add, s, carry.unwrap()), CcKind::Adc)
        }
        AluOp::Sub | AluOp::Cmp => (e.bin(Bin::Sub, a, b), CcKind::Sub),
        AluOp::Sbb => {
            let s = e.bin(Bin::Sub, a, b);
            (e.bin(Bin::Sub, s, carry.unwrap()), CcKind::Sbb)
        }
        AluOp::And | AluOp::Test => (e.bin(Bin::And, a, b), CcKind::Logic),
        AluOp::Or => (e.bin(Bin::Or, a, b), CcKind::Logic),
        AluOp::Xor => (e.bin(Bin::Xor, a, b), CcKind::Logic),
    };
    let res = trunc(e, res, size);
    if !matches!(op, AluOp::Cmp | AluOp::Test) {
        write_loc(e, dst, size, res)?;
    }
    e.set_cc(CcOp::new(kind, size as u8), a, b, res);
    Ok(())
}

/// INC and DEC: like ADD/SUB 1, but CF is preserved.
pub fn inc_dec<E: Emit>(e: &mut E, insn: &Instruction, inc: bool) -> R<()> {
    let size = op_size(insn, 0);
    let dst = loc(e, insn, 0)?;
    let a = read_loc(e, dst, size)?;
    let one = e.imm(1);
    let res = e.bin(if inc { Bin::Add } else { Bin::Sub }, a, one);
    let res = trunc(e, res, size);
    write_loc(e, dst, size, res)?;
    let cf = flag(e, Flag::Cf);
    let kind = if inc { CcKind::Inc } else { CcKind::Dec };
    e.set_cc(CcOp::new(kind, size as u8), a, cf, res);
    Ok(())
}

/// NEG: `0 - dst`, flags as SUB.
pub fn neg<E: Emit>(e: &mut E, insn: &Instruction) -> R<()> {
    let size = op_size(insn, 0);
    let dst = loc(e, insn, 0)?;
    let a = read_loc(e, dst, size)?;
    let z = e.imm(0);
    let res = e.bin(Bin::Sub, z, a);
    let res = trunc(e, res, size);
    write_loc(e, dst, size, res)?;
    e.set_cc(CcOp::new(CcKind::Sub, size as u8), z, a, res);
    Ok(())
}

/// NOT: no flags.
pub fn not<E: Emit>(e: &mut E, insn: &Instruction) -> R<()> {
    let size = op_size(insn, 0);
    let dst = loc(e, insn, 0)?;
    let a = read_loc(e, dst, size)?;
    let res = e.un(Un::Not, a);
    let res = trunc(e, res, size);
    write_loc(e, dst, size, res)
}
