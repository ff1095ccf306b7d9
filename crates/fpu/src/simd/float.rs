//! SSE..SSE4.1 floating-point arithmetic, comparisons and conversions (legacy encodings),
//! on Berkeley SoftFloat with exact MXCSR semantics.
//!
//! Every element goes through `lane`: DAZ and the denormal-operand flag on the way in,
//! x86 NaN selection, SoftFloat's correctly rounded result in MXCSR.RC, then FTZ and the
//! unmasked-underflow rule on the way out. The flags of all elements are combined and made
//! architectural by `lane::commit`, which also decides whether the destination may be
//! written (an unmasked exception leaves it unchanged and returns [`SimdFault::Xm`]).
//!
//! When MXCSR is round-to-nearest without FTZ/DAZ and the inexact flag is already set and
//! masked, `hard` computes ordinary elements (zero or normal operands, a normal result) of
//! ADD/SUB/MUL/DIV/SQRT and double-to-single narrowing with the host's own arithmetic,
//! which gives the same result and leaves MXCSR as SoftFloat would; `lane` tries it first.
//!
//! Layout: `lane` holds the per-element rules and the flag commit; `arith` MIN/MAX,
//! RCP/RSQRT, ROUND and the horizontal SSE3/SSE4.1 forms; `cmp` CMPxx and COMIS/UCOMIS;
//! `cvt` the conversions. The tests compare every instruction with the host processor.
//!
//! RCPxx/RSQRTxx are approximations: the results here stay within the SDM's relative error
//! of 1.5 * 2^-12 but are not bit-identical to any particular Intel or AMD processor.

use iced_x86::Code;

use super::SimdFault;
use crate::operands::{Loc, Operands};
use crate::soft::Flags;
use crate::state::Fpu;

mod arith;
mod cmp;
mod cvt;
mod hard;
mod lane;
#[cfg(test)]
mod tests;

use lane::{Mx, Op, W};

/// How an element-wise instruction maps its operands to elements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shape {
    /// Every element of the destination from the same element of the operands.
    Packed,
    /// Element 0 only; the rest of the destination is kept.
    Scalar,
}

/// The per-element operation of an element-wise instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// ADD/SUB/MUL/DIV.
    Bin(Op),
    /// MIN.
    Min,
    /// MAX.
    Max,
    /// SQRT (of the source).
    Sqrt,
    /// RCP approximation (of the source).
    Rcp,
    /// RSQRT approximation (of the source).
    Rsqrt,
    /// CMP with the predicate in imm8.
    Cmp,
    /// ROUND with the rounding control in imm8 (of the source).
    Round,
}

impl Kind {
    /// True for the operations of the source operand alone.
    fn unary(self) -> bool {
        matches!(self, Kind::Sqrt | Kind::Rcp | Kind::Rsqrt | Kind::Round)
    }
}

/// The element-wise instructions.
fn table(code: Code) -> Option<(Shape, W, Kind)> {
    use Kind::*;
    use Shape::*;
    use W::*;
    Some(match code {
        Code::Addps_xmm_xmmm128 => (Packed, S, Bin(Op::Add)),
        Code::Addpd_xmm_xmmm128 => (Packed, D, Bin(Op::Add)),
        Code::Addss_xmm_xmmm32 => (Scalar, S, Bin(Op::Add)),
        Code::Addsd_xmm_xmmm64 => (Scalar, D, Bin(Op::Add)),
        Code::Subps_xmm_xmmm128 => (Packed, S, Bin(Op::Sub)),
        Code::Subpd_xmm_xmmm128 => (Packed, D, Bin(Op::Sub)),
        Code::Subss_xmm_xmmm32 => (Scalar, S, Bin(Op::Sub)),
        Code::Subsd_xmm_xmmm64 => (Scalar, D, Bin(Op::Sub)),
        Code::Mulps_xmm_xmmm128 => (Packed, S, Bin(Op::Mul)),
        Code::Mulpd_xmm_xmmm128 => (Packed, D, Bin(Op::Mul)),
        Code::Mulss_xmm_xmmm32 => (Scalar, S, Bin(Op::Mul)),
        Code::Mulsd_xmm_xmmm64 => (Scalar, D, Bin(Op::Mul)),
        Code::Divps_xmm_xmmm128 => (Packed, S, Bin(Op::Div)),
        Code::Divpd_xmm_xmmm128 => (Packed, D, Bin(Op::Div)),
        Code::Divss_xmm_xmmm32 => (Scalar, S, Bin(Op::Div)),
        Code::Divsd_xmm_xmmm64 => (Scalar, D, Bin(Op::Div)),
        Code::Minps_xmm_xmmm128 => (Packed, S, Min),
        Code::Minpd_xmm_xmmm128 => (Packed, D, Min),
        Code::Minss_xmm_xmmm32 => (Scalar, S, Min),
        Code::Minsd_xmm_xmmm64 => (Scalar, D, Min),
        Code::Maxps_xmm_xmmm128 => (Packed, S, Max),
        Code::Maxpd_xmm_xmmm128 => (Packed, D, Max),
        Code::Maxss_xmm_xmmm32 => (Scalar, S, Max),
        Code::Maxsd_xmm_xmmm64 => (Scalar, D, Max),
        Code::Sqrtps_xmm_xmmm128 => (Packed, S, Sqrt),
        Code::Sqrtpd_xmm_xmmm128 => (Packed, D, Sqrt),
        Code::Sqrtss_xmm_xmmm32 => (Scalar, S, Sqrt),
        Code::Sqrtsd_xmm_xmmm64 => (Scalar, D, Sqrt),
        Code::Rcpps_xmm_xmmm128 => (Packed, S, Rcp),
        Code::Rcpss_xmm_xmmm32 => (Scalar, S, Rcp),
        Code::Rsqrtps_xmm_xmmm128 => (Packed, S, Rsqrt),
        Code::Rsqrtss_xmm_xmmm32 => (Scalar, S, Rsqrt),
        Code::Cmpps_xmm_xmmm128_imm8 => (Packed, S, Cmp),
        Code::Cmppd_xmm_xmmm128_imm8 => (Packed, D, Cmp),
        Code::Cmpss_xmm_xmmm32_imm8 => (Scalar, S, Cmp),
        Code::Cmpsd_xmm_xmmm64_imm8 => (Scalar, D, Cmp),
        Code::Roundps_xmm_xmmm128_imm8 => (Packed, S, Round),
        Code::Roundpd_xmm_xmmm128_imm8 => (Packed, D, Round),
        Code::Roundss_xmm_xmmm32_imm8 => (Scalar, S, Round),
        Code::Roundsd_xmm_xmmm64_imm8 => (Scalar, D, Round),
        _ => return None,
    })
}

/// The instructions with their own operand layout.
fn special(code: Code) -> bool {
    arith::claims(code) || cmp::claims(code) || cvt::claims(code)
}

/// True when this module implements `code`.
pub fn claims(code: Code) -> bool {
    table(code).is_some() || special(code)
}

/// Executes `code` if this module implements it.
pub fn execute(fpu: &mut Fpu, code: Code, ops: Operands) -> Option<Result<(), SimdFault>> {
    if let Some((shape, w, kind)) = table(code) {
        return Some(elementwise(fpu, ops, shape, w, kind));
    }
    arith::execute(fpu, code, ops)
        .or_else(|| cmp::execute(fpu, code, ops))
        .or_else(|| cvt::execute(fpu, code, ops))
}

/// The XMM register of operand `i`, or #UD for a form this module does not know.
fn xmm(ops: Operands, i: usize) -> Result<usize, SimdFault> {
    match ops.loc(i) {
        Loc::Xmm(n) => Ok(usize::from(n)),
        _ => Err(SimdFault::Ud),
    }
}

/// The value of source operand `i`: a register, or the memory/GPR bytes in `io`.
fn source(fpu: &Fpu, ops: Operands, i: usize) -> Result<u128, SimdFault> {
    match ops.loc(i) {
        Loc::Xmm(n) => Ok(fpu.xmm128(usize::from(n))),
        Loc::Mm(n) => Ok(u128::from(fpu.mm(usize::from(n)))),
        Loc::Mem | Loc::Gpr => Ok(fpu.io128()),
        _ => Err(SimdFault::Ud),
    }
}

/// Computes `f` on each `(a, b)` of `pairs` into element i of XMM `d` (the other elements
/// taken from `base`), then commits the combined flags and writes the register if allowed.
fn write_lanes(
    fpu: &mut Fpu,
    d: usize,
    w: W,
    base: u128,
    pairs: &[(u64, u64)],
    f: impl Fn(Mx, usize, u64, u64) -> (u64, Flags),
) -> Result<(), SimdFault> {
    let mx = Mx(fpu.mxcsr);
    let mut out = base;
    let mut flags = 0;
    for (i, &(a, b)) in pairs.iter().enumerate() {
        let (r, fl) = f(mx, i, a, b);
        flags |= fl;
        w.set(&mut out, i, r);
    }
    lane::commit(fpu, flags)?;
    fpu.set_xmm128(d, out);
    Ok(())
}

/// The element-wise instructions of [`table`].
fn elementwise(
    fpu: &mut Fpu,
    ops: Operands,
    shape: Shape,
    w: W,
    kind: Kind,
) -> Result<(), SimdFault> {
    let d = xmm(ops, 0)?;
    let dv = fpu.xmm128(d);
    let sv = source(fpu, ops, 1)?;
    let n = if shape == Shape::Packed { w.lanes() } else { 1 };
    let mut pairs = [(0, 0); 4];
    for (i, p) in pairs.iter_mut().enumerate().take(n) {
        let b = w.get(sv, i);
        *p = if kind.unary() {
            (b, b)
        } else {
            (w.get(dv, i), b)
        };
    }
    if let Some(out) = fast(Mx(fpu.mxcsr), w, kind, dv, &pairs[..n]) {
        fpu.set_xmm128(d, out);
        return Ok(());
    }
    let imm = ops.imm();
    write_lanes(fpu, d, w, dv, &pairs[..n], |mx, _, a, b| match kind {
        Kind::Bin(op) => lane::binop(mx, w, op, a, b),
        Kind::Min => arith::minmax(mx, w, a, b, false),
        Kind::Max => arith::minmax(mx, w, a, b, true),
        Kind::Sqrt => lane::sqrt(mx, w, a),
        Kind::Rcp => (arith::rcp(a), 0),
        Kind::Rsqrt => (arith::rsqrt(a), 0),
        Kind::Cmp => cmp::cmp(mx, w, a, b, imm),
        Kind::Round => arith::round(mx, w, a, imm),
    })
}

/// An element-wise ADD/SUB/MUL/DIV/SQRT done entirely on the host FPU (see [`hard`]): the
/// destination's new value when every element qualifies, in which case MXCSR is left as
/// it is (no flag but the already set PE could have been raised). `None` sends the
/// instruction the SoftFloat way, where qualifying elements still take the fast path one
/// by one.
#[inline]
fn fast(mx: Mx, w: W, kind: Kind, base: u128, pairs: &[(u64, u64)]) -> Option<u128> {
    if !matches!(kind, Kind::Bin(_) | Kind::Sqrt) || !hard::usable(mx) {
        return None;
    }
    // Built in two 64-bit halves kept in registers: cheaper than `W::set`'s variable
    // 128-bit shifts, and no 16-byte load of freshly stored narrower elements (a
    // store-forwarding stall).
    let (mut lo, mut hi) = (base as u64, (base >> 64) as u64);
    for (i, &(a, b)) in pairs.iter().enumerate() {
        let r = match kind {
            Kind::Bin(op) => hard::binop(w, op, a, b)?,
            _ => hard::sqrt(w, b)?,
        };
        let half = if w.bits() * i < 64 { &mut lo } else { &mut hi };
        match w {
            W::S if i % 2 == 0 => *half = *half & !0xffff_ffff | r,
            W::S => *half = *half & 0xffff_ffff | r << 32,
            W::D => *half = r,
        }
    }
    #[cfg(test)]
    for _ in pairs {
        hard::test_hooks::taken();
    }
    Some(u128::from(lo) | u128::from(hi) << 64)
}
