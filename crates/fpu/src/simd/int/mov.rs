//! Data movement whose destination is not simply a function of itself and a same-sized
//! source: moves between registers, memory and general registers of different widths
//! (MOVD, MOVQ, MOVDQA, MOVSS, MOVHPS...), and the extractions into a general register
//! (PEXTRW, PMOVMSKB, MOVMSKPS/PD).

use super::lanes::{count, get};
use super::{source, width_mask, Out};
use crate::operands::{Loc, Operands};
use crate::simd::SimdFault;
use crate::state::Fpu;

/// The kinds of data movement, each named by what happens to the destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Move {
    /// The low `bytes` bytes of the source become the whole destination, zero-extended: an
    /// XMM or MMX destination is cleared above them, a memory or general-register one
    /// receives exactly them. MOVD, MOVQ (all forms, with MOVQ2DQ/MOVDQ2Q), MOVDQA/U,
    /// MOVAPS/UPS/APD/UPD, MOVNTDQ/PS/PD/Q and LDDQU (non-temporal hints and LDDQU's
    /// cache-line behaviour have no architectural effect here).
    Copy {
        /// The operand size.
        bytes: usize,
    },
    /// MOVSS/MOVSD: register to register replaces only the low element; a load clears the
    /// rest of the register; a store writes the low element.
    Scalar {
        /// The element size.
        bytes: usize,
    },
    /// MOVLPS/LPD/HPS/HPD, MOVHLPS, MOVLHPS: one quadword moves. A register destination
    /// keeps its other quadword; a memory destination receives the quadword.
    Half {
        /// The destination register's quadword written (false: low).
        dst_hi: bool,
        /// The source register's quadword read (a memory source is one quadword).
        src_hi: bool,
    },
    /// MOVMSKPS (32), MOVMSKPD (64), PMOVMSKB (8): the sign bits of the source's `bits`-wide
    /// elements, zero-extended into a general register.
    SignMask {
        /// The element width.
        bits: u32,
    },
    /// PEXTRW: the source word imm8 selects (modulo the number of words), zero-extended
    /// into a general register.
    Pextrw,
}

/// The width in bytes of a source that must be an MMX (8) or XMM (16) register.
fn reg_width(loc: Loc) -> Result<usize, SimdFault> {
    match loc {
        Loc::Mm(_) => Ok(8),
        Loc::Xmm(_) => Ok(16),
        _ => Err(SimdFault::Ud),
    }
}

/// Computes where a data movement's result goes, without changing any state.
pub(super) fn compute(fpu: &Fpu, m: Move, ops: Operands) -> Result<Out, SimdFault> {
    let (dst, src) = (ops.loc(0), ops.loc(1));
    Ok(match m {
        Move::Copy { bytes } => {
            let v = source(fpu, src, bytes)?;
            match dst {
                Loc::Mm(i) => Out::Mm(i, v as u64),
                Loc::Xmm(i) => Out::Xmm(i, v),
                Loc::Mem | Loc::Gpr if bytes <= 8 => Out::Io64(v as u64),
                Loc::Mem => Out::Io128(v),
                _ => return Err(SimdFault::Ud),
            }
        }
        Move::Scalar { bytes } => {
            let v = source(fpu, src, bytes)?;
            match (dst, src) {
                (Loc::Xmm(i), Loc::Xmm(_)) => {
                    let keep = fpu.xmm128(usize::from(i)) & !width_mask(bytes);
                    Out::Xmm(i, keep | v)
                }
                (Loc::Xmm(i), Loc::Mem) => Out::Xmm(i, v),
                (Loc::Mem, Loc::Xmm(_)) => Out::Io64(v as u64),
                _ => return Err(SimdFault::Ud),
            }
        }
        Move::Half { dst_hi, src_hi } => {
            let q = match src {
                Loc::Xmm(i) => fpu.xmm[usize::from(i)][usize::from(src_hi)],
                Loc::Mem => fpu.io[crate::IO_DATA0],
                _ => return Err(SimdFault::Ud),
            };
            match dst {
                Loc::Xmm(i) => {
                    let mut v = fpu.xmm[usize::from(i)];
                    v[usize::from(dst_hi)] = q;
                    Out::Xmm(i, u128::from(v[0]) | u128::from(v[1]) << 64)
                }
                Loc::Mem => Out::Io64(q),
                _ => return Err(SimdFault::Ud),
            }
        }
        Move::SignMask { bits } => {
            let n = reg_width(src)?;
            let v = source(fpu, src, n)?;
            let m = (0..count(n, bits))
                .map(|i| (get(v, bits, i) >> (bits - 1)) << i)
                .fold(0, |acc, b| acc | b);
            gpr(dst, m)?
        }
        Move::Pextrw => {
            let n = reg_width(src)?;
            let v = source(fpu, src, n)?;
            gpr(dst, get(v, 16, usize::from(ops.imm()) % count(n, 16)))?
        }
    })
}

/// A result for a general-register destination.
fn gpr(dst: Loc, v: u64) -> Result<Out, SimdFault> {
    match dst {
        Loc::Gpr => Ok(Out::Io64(v)),
        _ => Err(SimdFault::Ud),
    }
}
