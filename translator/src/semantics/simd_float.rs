//! SSE floating-point arithmetic compiled inline: ADD/SUB/MUL/DIV/SQRT and MIN/MAX in their
//! scalar and packed, single and double forms, and COMISS/COMISD/UCOMISS/UCOMISD.
//!
//! Each instruction is computed with [`Arith::float`] (the host's IEEE arithmetic) under a
//! guard, evaluated on the operands' and the result's bits, that holds exactly when the
//! unit's host-FPU fast path (`crane86_fpu`'s `simd/float/hard.rs`, QEMU's "hardfloat")
//! would accept every element: then the result is SoftFloat's and MXCSR does not change.
//! When the guard fails, the instruction is run by the unit's helper as before, on a cold
//! path ([`Emit::fpu_call_if`]), so every special case (NaN, infinity, denormal, a tiny or
//! overflowing result, another rounding mode, FTZ/DAZ, a clear PE flag, an unmasked
//! exception) keeps the unit's exact semantics, and faults are raised by the unit alone.
//!
//! The guard, for ADD/SUB/MUL/DIV/SQRT (`hard.rs` gives the reasons):
//! - MXCSR has RC = nearest, FTZ = 0, DAZ = 0, PM = 1 and PE = 1 (the only flag an
//!   accepted element could raise, PE, is already set and masked);
//! - every operand element is ±0 or normal; a divisor is nonzero; a square root's operand
//!   is +0 or positive;
//! - every result element is finite and above the smallest normal in magnitude, or a zero
//!   the operands make exact (`x + -x`, `x - x`, a zero factor, a zero dividend).
//!
//! Packed forms are accepted only when all their elements are, as the unit's `fast` does
//! (the helper then combines per-element fast and slow paths itself).
//!
//! COMIS/UCOMIS and MIN/MAX need no MXCSR condition: two operands that are neither NaN nor
//! denormal compare without raising any flag whatever MXCSR holds (DAZ only changes
//! denormals), so the guard is on the operands alone and the EFLAGS result or the selected
//! operand is computed with integers (the unit's `arith::minmax` rule: the destination's
//! element when strictly smaller, or larger, else the source's).
//!
//! The guard is written once, over [`Arith`], for both back ends: the interpreter evaluates
//! it on integers, the JIT emits it as integer IR around one Cranelift float instruction.

use crane86_fpu::{Operands, IO_DATA0, IO_DATA1, IO_FLAGS};
use iced_x86::{Code, Instruction, OpKind};

use super::flags::set_eflags;
use super::operands::mem_access;
use super::seg_check::Access;
use super::simd::source128;
use crate::emit::{Arith, Bin, Cmp, Emit, FloatOp, FloatWidth, FpuHelper, R};

/// MXCSR.RC, the rounding control.
const RC: u64 = 3 << 13;
/// MXCSR.FTZ.
const FTZ: u64 = 1 << 15;
/// MXCSR.DAZ.
const DAZ: u64 = 1 << 6;
/// MXCSR.PM, the precision exception mask.
const PM: u64 = 1 << 12;
/// MXCSR.PE, the sticky precision (inexact) flag.
const PE: u64 = 1 << 5;

/// How an instruction maps its operands to elements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shape {
    /// Element 0 only; the rest of the destination is kept.
    Scalar,
    /// Every element.
    Packed,
}

/// The per-element operation of an inline form.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// ADD/SUB/MUL/DIV/SQRT: guarded by MXCSR and the operand and result classes.
    Arith(FloatOp),
    /// MIN: guarded by the operand classes alone.
    Min,
    /// MAX: likewise.
    Max,
}

/// The element-wise forms compiled inline.
fn form(code: Code) -> Option<(Shape, FloatWidth, Kind)> {
    use FloatWidth::*;
    use Shape::*;
    let minmax = match code {
        Code::Minss_xmm_xmmm32 => Some((Scalar, Single, Kind::Min)),
        Code::Minsd_xmm_xmmm64 => Some((Scalar, Double, Kind::Min)),
        Code::Minps_xmm_xmmm128 => Some((Packed, Single, Kind::Min)),
        Code::Minpd_xmm_xmmm128 => Some((Packed, Double, Kind::Min)),
        Code::Maxss_xmm_xmmm32 => Some((Scalar, Single, Kind::Max)),
        Code::Maxsd_xmm_xmmm64 => Some((Scalar, Double, Kind::Max)),
        Code::Maxps_xmm_xmmm128 => Some((Packed, Single, Kind::Max)),
        Code::Maxpd_xmm_xmmm128 => Some((Packed, Double, Kind::Max)),
        _ => None,
    };
    minmax.or_else(|| arith_form(code).map(|(sh, w, op)| (sh, w, Kind::Arith(op))))
}

/// The arithmetic forms compiled inline.
fn arith_form(code: Code) -> Option<(Shape, FloatWidth, FloatOp)> {
    use FloatOp::*;
    use FloatWidth::*;
    use Shape::*;
    Some(match code {
        Code::Addss_xmm_xmmm32 => (Scalar, Single, Add),
        Code::Addsd_xmm_xmmm64 => (Scalar, Double, Add),
        Code::Addps_xmm_xmmm128 => (Packed, Single, Add),
        Code::Addpd_xmm_xmmm128 => (Packed, Double, Add),
        Code::Subss_xmm_xmmm32 => (Scalar, Single, Sub),
        Code::Subsd_xmm_xmmm64 => (Scalar, Double, Sub),
        Code::Subps_xmm_xmmm128 => (Packed, Single, Sub),
        Code::Subpd_xmm_xmmm128 => (Packed, Double, Sub),
        Code::Mulss_xmm_xmmm32 => (Scalar, Single, Mul),
        Code::Mulsd_xmm_xmmm64 => (Scalar, Double, Mul),
        Code::Mulps_xmm_xmmm128 => (Packed, Single, Mul),
        Code::Mulpd_xmm_xmmm128 => (Packed, Double, Mul),
        Code::Divss_xmm_xmmm32 => (Scalar, Single, Div),
        Code::Divsd_xmm_xmmm64 => (Scalar, Double, Div),
        Code::Divps_xmm_xmmm128 => (Packed, Single, Div),
        Code::Divpd_xmm_xmmm128 => (Packed, Double, Div),
        Code::Sqrtss_xmm_xmmm32 => (Scalar, Single, Sqrt),
        Code::Sqrtsd_xmm_xmmm64 => (Scalar, Double, Sqrt),
        Code::Sqrtps_xmm_xmmm128 => (Packed, Single, Sqrt),
        Code::Sqrtpd_xmm_xmmm128 => (Packed, Double, Sqrt),
        _ => return None,
    })
}

/// The sign bit, the smallest normal's and infinity's magnitudes of a format.
fn limits(w: FloatWidth) -> (u64, u64, u64) {
    match w {
        FloatWidth::Single => (1 << 31, 0x0080_0000, 0x7f80_0000),
        FloatWidth::Double => (1 << 63, 0x0010_0000_0000_0000, 0x7ff0_0000_0000_0000),
    }
}

/// 1 when MXCSR allows the fast path: RC = nearest, no FTZ/DAZ, PE set and masked.
pub(crate) fn mxcsr_fast<A: Arith>(e: &mut A, mxcsr: A::V) -> A::V {
    let m = e.imm(RC | FTZ | DAZ | PM | PE);
    let v = e.bin(Bin::And, mxcsr, m);
    let want = e.imm(PM | PE);
    e.cmp(Cmp::Eq, v, want)
}

/// The magnitude of an element (its bits without the sign; also drops anything above a
/// single's 32 bits).
fn magnitude<A: Arith>(e: &mut A, w: FloatWidth, x: A::V) -> A::V {
    let (sign, _, _) = limits(w);
    let m = e.imm(sign - 1);
    e.bin(Bin::And, x, m)
}

/// 1 when the magnitude `m` lies in `lo..hi` (one unsigned compare of `m - lo`).
fn within<A: Arith>(e: &mut A, m: A::V, lo: u64, hi: u64) -> A::V {
    let l = e.imm(lo);
    let d = e.bin(Bin::Sub, m, l);
    let n = e.imm(hi - lo);
    e.cmp(Cmp::Ult, d, n)
}

/// 1 for ±0 (magnitude `m`).
fn zero<A: Arith>(e: &mut A, m: A::V) -> A::V {
    let z = e.imm(0);
    e.cmp(Cmp::Eq, m, z)
}

/// 1 for ±0 and the normal numbers, given the magnitude (`hard::plain`).
fn plain<A: Arith>(e: &mut A, w: FloatWidth, m: A::V) -> A::V {
    let (_, min, inf) = limits(w);
    let z = zero(e, m);
    let n = within(e, m, min, inf);
    e.bin(Bin::Or, z, n)
}

/// One element of an inline ADD/SUB/MUL/DIV/SQRT: the host's result and 1 when the fast
/// path's conditions on the operands and the result hold (`hard::binop`, `hard::sqrt`),
/// else 0. `a` is the destination's element, `b` the source's (SQRT reads `b` only);
/// single-precision elements are in the low 32 bits, zero-extended. MXCSR is checked
/// separately ([`mxcsr_fast`]).
pub(crate) fn element<A: Arith>(
    e: &mut A,
    op: FloatOp,
    w: FloatWidth,
    a: A::V,
    b: A::V,
) -> (A::V, A::V) {
    let (sign, min, inf) = limits(w);
    let mb = magnitude(e, w, b);
    let pb = plain(e, w, mb);
    if op == FloatOp::Sqrt {
        // +0 or a positive normal, whose root is normal or +0.
        let r = e.float(op, w, b, b);
        let s = e.imm(sign);
        let neg = e.bin(Bin::And, b, s);
        let pos = zero(e, neg);
        return (r, e.bin(Bin::And, pb, pos));
    }
    let r = e.float(op, w, a, b);
    let ma = magnitude(e, w, a);
    let pa = plain(e, w, ma);
    let mut ok = e.bin(Bin::And, pa, pb);
    let za = zero(e, ma);
    let zb = zero(e, mb);
    if op == FloatOp::Div {
        // No ZE, no 0/0.
        let one = e.imm(1);
        let nz = e.bin(Bin::Xor, zb, one);
        ok = e.bin(Bin::And, ok, nz);
    }
    // Finite and above the smallest normal: neither OE nor UE.
    let mr = magnitude(e, w, r);
    let safe = within(e, mr, min + 1, inf);
    // A zero result is accepted only when the operands make it exact.
    let both_zero = e.bin(Bin::And, za, zb);
    let exact = match op {
        FloatOp::Add => {
            let x = e.bin(Bin::Xor, a, b);
            let s = e.imm(sign);
            let opposite = e.cmp(Cmp::Eq, x, s);
            e.bin(Bin::Or, opposite, both_zero)
        }
        FloatOp::Sub => {
            let same = e.cmp(Cmp::Eq, a, b);
            e.bin(Bin::Or, same, both_zero)
        }
        FloatOp::Mul => e.bin(Bin::Or, za, zb),
        _ => za,
    };
    let zr = zero(e, mr);
    let exact_zero = e.bin(Bin::And, zr, exact);
    let result_ok = e.bin(Bin::Or, safe, exact_zero);
    (r, e.bin(Bin::And, ok, result_ok))
}

/// For COMIS/UCOMIS and MIN/MAX: 1 when `x` is neither a NaN nor a denormal (then it raises
/// no flag whatever MXCSR holds: DAZ only changes denormals), and an order key: the
/// magnitude, negated for negative values, so that ±0 compare equal.
fn ordered_key<A: Arith>(e: &mut A, w: FloatWidth, x: A::V) -> (A::V, A::V) {
    let (sign, min, inf) = limits(w);
    let m = magnitude(e, w, x);
    let z = zero(e, m);
    let n = within(e, m, min, inf + 1);
    let ok = e.bin(Bin::Or, z, n);
    let s = e.imm(sign);
    let neg = e.bin(Bin::And, x, s);
    let zero_v = e.imm(0);
    let minus = e.bin(Bin::Sub, zero_v, m);
    (ok, e.select(neg, minus, m))
}

/// One element of an inline MIN (`max` false) or MAX: the destination's element `a` when it
/// is strictly below (above) the source's `b`, else `b` (which also covers two zeros), and
/// 1 when neither is a NaN or a denormal (`arith::minmax` then raises no flag).
pub(crate) fn minmax_element<A: Arith>(
    e: &mut A,
    w: FloatWidth,
    a: A::V,
    b: A::V,
    max: bool,
) -> (A::V, A::V) {
    let (oka, ka) = ordered_key(e, w, a);
    let (okb, kb) = ordered_key(e, w, b);
    let first = if max {
        e.cmp(Cmp::Slt, kb, ka)
    } else {
        e.cmp(Cmp::Slt, ka, kb)
    };
    let r = e.select(first, a, b);
    (r, e.bin(Bin::And, oka, okb))
}

/// One element of any inline element-wise form.
fn lane<A: Arith>(e: &mut A, kind: Kind, w: FloatWidth, a: A::V, b: A::V) -> (A::V, A::V) {
    match kind {
        Kind::Arith(op) => element(e, op, w, a, b),
        Kind::Min => minmax_element(e, w, a, b, false),
        Kind::Max => minmax_element(e, w, a, b, true),
    }
}

/// `ok` and, for arithmetic, MXCSR's fast-path condition.
fn with_mxcsr<E: Emit>(e: &mut E, kind: Kind, ok: E::V) -> E::V {
    if !matches!(kind, Kind::Arith(_)) {
        return ok;
    }
    let mx = e.mxcsr();
    let mx_ok = mxcsr_fast(e, mx);
    e.bin(Bin::And, ok, mx_ok)
}

/// The low 32 bits of `v` (element 0 of a half).
fn low32<E: Emit>(e: &mut E, v: E::V) -> E::V {
    e.zext(v, 32)
}

/// The high 32 bits of `v` (element 1 of a half).
fn high32<E: Emit>(e: &mut E, v: E::V) -> E::V {
    let s = e.imm(32);
    e.bin(Bin::Shr, v, s)
}

/// One 64-bit half of a packed operation: its result and guard.
fn packed_half<E: Emit>(e: &mut E, kind: Kind, w: FloatWidth, a: E::V, b: E::V) -> (E::V, E::V) {
    match w {
        FloatWidth::Double => lane(e, kind, w, a, b),
        FloatWidth::Single => {
            let (a0, b0) = (low32(e, a), low32(e, b));
            let (a1, b1) = (high32(e, a), high32(e, b));
            let (r0, ok0) = lane(e, kind, w, a0, b0);
            let (r1, ok1) = lane(e, kind, w, a1, b1);
            let s = e.imm(32);
            let r1 = e.bin(Bin::Shl, r1, s);
            let r = e.bin(Bin::Or, r0, r1);
            (r, e.bin(Bin::And, ok0, ok1))
        }
    }
}

/// A scalar source operand: the low element of an XMM register, or 4/8 bytes of memory
/// (which the fallback passes to the helper in `IO_DATA0`, as the generic path would).
fn scalar_source<E: Emit>(e: &mut E, insn: &Instruction, w: FloatWidth) -> R<(E::V, Option<E::V>)> {
    if insn.op1_kind() == OpKind::Memory {
        let size = if w == FloatWidth::Single { 4 } else { 8 };
        let a = mem_access(e, insn, size, Access::Read)?;
        let v = e.load(a, size)?;
        Ok((v, Some(v)))
    } else {
        let v = e.xmm(insn.op_register(1).number(), 0);
        let v = if w == FloatWidth::Single {
            low32(e, v)
        } else {
            v
        };
        Ok((v, None))
    }
}

/// Calls the unit's helper for `insn` when `ok` is 0, with a memory source's bytes.
fn fallback<E: Emit>(e: &mut E, insn: &Instruction, ok: E::V, io: &[(usize, E::V)]) -> R<()> {
    let one = e.imm(1);
    let slow = e.bin(Bin::Xor, ok, one);
    let c = e.imm(insn.code() as u64);
    let o = e.imm(Operands::of(insn).0);
    let z = e.imm(0);
    e.fpu_call_if(slow, FpuHelper::Simd, [c, o, z, z], io)
}

/// Executes or translates `insn` inline if it is one of this module's forms; false when
/// it is not. The caller has checked that SSE is available.
pub(super) fn execute<E: Emit>(e: &mut E, insn: &Instruction) -> R<bool> {
    if let Some((shape, w, kind)) = form(insn.code()) {
        match shape {
            Shape::Scalar => scalar(e, insn, w, kind)?,
            Shape::Packed => packed(e, insn, w, kind)?,
        }
        return Ok(true);
    }
    let w = match insn.code() {
        Code::Comiss_xmm_xmmm32 | Code::Ucomiss_xmm_xmmm32 => FloatWidth::Single,
        Code::Comisd_xmm_xmmm64 | Code::Ucomisd_xmm_xmmm64 => FloatWidth::Double,
        _ => return Ok(false),
    };
    compare(e, insn, w)?;
    Ok(true)
}

/// ADDSS/ADDSD... SQRTSD: element 0 of the destination.
fn scalar<E: Emit>(e: &mut E, insn: &Instruction, w: FloatWidth, kind: Kind) -> R<()> {
    let (b, mem) = scalar_source(e, insn, w)?;
    let d = insn.op_register(0).number();
    let half = e.xmm(d, 0);
    let a = if w == FloatWidth::Single {
        low32(e, half)
    } else {
        half
    };
    let (r, ok) = lane(e, kind, w, a, b);
    let ok = with_mxcsr(e, kind, ok);
    let new = if w == FloatWidth::Single {
        let keep = e.imm(0xffff_ffff_0000_0000);
        let upper = e.bin(Bin::And, half, keep);
        e.bin(Bin::Or, upper, r)
    } else {
        r
    };
    // On the slow path the helper must see the destination unchanged.
    let v = e.select(ok, new, half);
    e.set_xmm(d, 0, v);
    match mem {
        Some(m) => fallback(e, insn, ok, &[(IO_DATA0, m)]),
        None => fallback(e, insn, ok, &[]),
    }
}

/// ADDPS/ADDPD... SQRTPD: every element.
fn packed<E: Emit>(e: &mut E, insn: &Instruction, w: FloatWidth, kind: Kind) -> R<()> {
    let (slo, shi) = source128(e, insn)?;
    let d = insn.op_register(0).number();
    let alo = e.xmm(d, 0);
    let ahi = e.xmm(d, 1);
    let (rlo, ok_lo) = packed_half(e, kind, w, alo, slo);
    let (rhi, ok_hi) = packed_half(e, kind, w, ahi, shi);
    let ok = e.bin(Bin::And, ok_lo, ok_hi);
    let ok = with_mxcsr(e, kind, ok);
    let lo = e.select(ok, rlo, alo);
    let hi = e.select(ok, rhi, ahi);
    e.set_xmm(d, 0, lo);
    e.set_xmm(d, 1, hi);
    if insn.op1_kind() == OpKind::Memory {
        fallback(e, insn, ok, &[(IO_DATA0, slo), (IO_DATA1, shi)])
    } else {
        fallback(e, insn, ok, &[])
    }
}

/// COMISS/COMISD/UCOMISS/UCOMISD: ZF, PF, CF as for an unsigned compare (all three when
/// unordered), OF, SF, AF cleared. Inline when neither operand is a NaN or a denormal.
fn compare<E: Emit>(e: &mut E, insn: &Instruction, w: FloatWidth) -> R<()> {
    const CF: u64 = 1;
    const ZF: u64 = 1 << 6;
    let (b, mem) = scalar_source(e, insn, w)?;
    let a = e.xmm(insn.op_register(0).number(), 0);
    let a = if w == FloatWidth::Single {
        low32(e, a)
    } else {
        a
    };
    let (oka, ka) = ordered_key(e, w, a);
    let (okb, kb) = ordered_key(e, w, b);
    let ok = e.bin(Bin::And, oka, okb);
    let keys = [ka, kb];
    let less = e.cmp(Cmp::Slt, keys[0], keys[1]);
    let equal = e.cmp(Cmp::Eq, keys[0], keys[1]);
    let zf = e.imm(ZF);
    let zero_v = e.imm(0);
    let zf = e.select(equal, zf, zero_v);
    let cf = e.imm(CF);
    let cf = e.select(less, cf, zero_v);
    let flags = e.bin(Bin::Or, zf, cf);
    match mem {
        Some(m) => fallback(e, insn, ok, &[(IO_DATA0, m)])?,
        None => fallback(e, insn, ok, &[])?,
    }
    let slow = e.fpu_io(IO_FLAGS);
    let f = e.select(ok, flags, slow);
    set_eflags(e, f);
    Ok(())
}

#[cfg(test)]
mod tests;
