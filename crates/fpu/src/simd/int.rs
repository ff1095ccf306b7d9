//! The MMX, SSE, SSE2, SSE3 and SSSE3 instructions that do no floating-point arithmetic:
//! data movement, bitwise logic, packed integer arithmetic, comparisons, shifts, shuffles,
//! packs and unpacks (legacy encodings only).
//!
//! Most of them are *lane* operations: the destination register (MMX or XMM) becomes a pure
//! function of itself, the source operand and the immediate. Those share one operand path
//! and are each one function of the operand width in bytes (8 for an MMX form, 16 for an
//! XMM form), so the MMX and XMM forms of an instruction cannot drift apart, including
//! those where the MMX result is not the low half of the XMM one (packs, high unpacks,
//! PSHUFB, PALIGNR, the horizontal operations). Instructions that move data between
//! differently sized places (MOVD, MOVSS, MOVHPS, PEXTRW...) are in the `mov` submodule;
//! `table` maps each iced `Code` to one or the other.
//!
//! A memory or general-register source is read from `io` cut to the operand's size, so
//! the translator's zero-extension of narrower operands is not relied upon.
//!
//! None of these instructions reads or writes MXCSR. Every form with an MMX register
//! operand first raises #MF if the x87 has an unmasked exception pending (SDM Vol. 3,
//! "Effect of MMX Instructions on Pending x87 Floating-Point Exceptions"), and otherwise
//! switches the x87 to MMX mode: TOP = 0, all tags valid ("The MMX State and MMX Register
//! Aliasing"). That includes the forms whose MMX register is only read (MOVD r/m32, mm;
//! MOVQ2DQ; PEXTRW; PMOVMSKB).

use iced_x86::Code;

use super::SimdFault;
use crate::operands::{Loc, Operands};
use crate::state::{Fpu, IO_DATA0};

mod arith;
mod lanes;
mod mov;
mod shuffle;
mod ssse3;
mod table;

#[cfg(test)]
mod tests;

/// A lane operation: `(destination, source, imm8, width in bytes) -> new destination`.
///
/// Only the low `width` bytes of the operands are meaningful; the result's bits above them
/// are discarded.
type LaneFn = fn(u128, u128, u8, usize) -> u128;

/// What one claimed instruction is.
#[derive(Clone, Copy)]
enum Op {
    /// The destination (MMX or XMM register) becomes a [`LaneFn`] of itself and the source.
    Lane(LaneFn),
    /// A data movement or a register-to-GPR extraction, see [`mov::Move`].
    Move(mov::Move),
}

/// Where a computed result goes once the instruction is known not to fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Out {
    /// MMX register n.
    Mm(u8, u64),
    /// XMM register n, all 128 bits.
    Xmm(u8, u128),
    /// A memory or general-register destination of up to 64 bits: `io[IO_DATA0]`.
    Io64(u64),
    /// A 128-bit memory destination: `io[IO_DATA0..=IO_DATA1]`.
    Io128(u128),
}

/// True when this module implements `code`.
pub fn claims(code: Code) -> bool {
    table::op(code).is_some()
}

/// Executes `code` if this module implements it.
pub fn execute(fpu: &mut Fpu, code: Code, ops: Operands) -> Option<Result<(), SimdFault>> {
    let op = table::op(code)?;
    Some(run(fpu, op, ops))
}

fn run(fpu: &mut Fpu, op: Op, ops: Operands) -> Result<(), SimdFault> {
    let mmx = (0..3).any(|i| matches!(ops.loc(i), Loc::Mm(_)));
    // #MF is delivered before the MMX instruction does anything, so the handler sees the
    // x87 state as the faulting x87 instruction left it. FSW.ES summarises "an unmasked
    // exception is pending".
    if mmx && fpu.x87.fsw & 0x80 != 0 {
        return Err(SimdFault::Mf);
    }
    // The result is computed from the unchanged state first, so an operand combination
    // that cannot be decoded (#UD) leaves everything as it was.
    let out = match op {
        Op::Lane(f) => lane(fpu, f, ops)?,
        Op::Move(m) => mov::compute(fpu, m, ops)?,
    };
    if mmx {
        fpu.mmx_enter();
    }
    match out {
        Out::Mm(i, v) => fpu.set_mm(usize::from(i), v),
        Out::Xmm(i, v) => fpu.set_xmm128(usize::from(i), v),
        Out::Io64(v) => fpu.io[IO_DATA0] = v,
        Out::Io128(v) => fpu.set_io128(v),
    }
    Ok(())
}

/// A mask of the low `bytes` bytes of a 128-bit value.
fn width_mask(bytes: usize) -> u128 {
    if bytes >= 16 {
        u128::MAX
    } else {
        (1u128 << (8 * bytes)) - 1
    }
}

/// The value of a source operand, cut to the `bytes` bytes the instruction reads (the
/// translator only promises the operand's own bytes in `io`).
fn source(fpu: &Fpu, loc: Loc, bytes: usize) -> Result<u128, SimdFault> {
    let v = match loc {
        Loc::Xmm(i) => fpu.xmm128(usize::from(i)),
        Loc::Mm(i) => u128::from(fpu.mm(usize::from(i))),
        Loc::Mem | Loc::Gpr => fpu.io128(),
        Loc::St(_) | Loc::None => return Err(SimdFault::Ud),
    };
    Ok(v & width_mask(bytes))
}

/// Runs a lane operation: the width comes from the destination register's kind.
fn lane(fpu: &Fpu, f: LaneFn, ops: Operands) -> Result<Out, SimdFault> {
    let (n, a) = match ops.loc(0) {
        Loc::Mm(i) => (8, u128::from(fpu.mm(usize::from(i)))),
        Loc::Xmm(i) => (16, fpu.xmm128(usize::from(i))),
        _ => return Err(SimdFault::Ud),
    };
    // Shifts by an immediate have no source operand.
    let b = match ops.loc(1) {
        Loc::None => 0,
        loc => source(fpu, loc, n)?,
    };
    let r = f(a, b, ops.imm(), n) & width_mask(n);
    match ops.loc(0) {
        Loc::Mm(i) => Ok(Out::Mm(i, r as u64)),
        Loc::Xmm(i) => Ok(Out::Xmm(i, r)),
        _ => Err(SimdFault::Ud),
    }
}
