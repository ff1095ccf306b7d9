//! Pure functions that baseline code calls for the rare operations it does not inline:
//! values in, a value out, no pointers (so no `unsafe`). Each evaluates through
//! [`Values`], the interpreter's own arithmetic, so both tiers agree by construction.

use crane86_runtime::helper_panic::guard_pure;
use crane86_runtime::CcOp;

use crate::emit::{Arith, Bin, FloatOp, FloatWidth, Un};
use crate::interp::Values;
use crate::semantics::flags;

const BINS: [Bin; 17] = [
    Bin::Add,
    Bin::Sub,
    Bin::And,
    Bin::Or,
    Bin::Xor,
    Bin::Shl,
    Bin::Shr,
    Bin::Sar,
    Bin::Rotl,
    Bin::Rotr,
    Bin::Mul,
    Bin::UMulHi,
    Bin::SMulHi,
    Bin::UDiv,
    Bin::URem,
    Bin::SDiv,
    Bin::SRem,
];

const UNS: [Un; 6] = [Un::Not, Un::Neg, Un::Popcnt, Un::Clz, Un::Ctz, Un::Bswap];

const FLOATS: [FloatOp; 5] = [
    FloatOp::Add,
    FloatOp::Sub,
    FloatOp::Mul,
    FloatOp::Div,
    FloatOp::Sqrt,
];

/// The argument that names `op` to [`bin`].
pub(super) fn bin_code(op: Bin) -> u64 {
    BINS.iter().position(|&b| b == op).unwrap_or(0) as u64
}

/// The argument that names `op` to [`un`].
pub(super) fn un_code(op: Un) -> u64 {
    UNS.iter().position(|&u| u == op).unwrap_or(0) as u64
}

/// The argument that names `op` on `w` to [`float`].
pub(super) fn float_code(op: FloatOp, w: FloatWidth) -> u64 {
    let i = FLOATS.iter().position(|&f| f == op).unwrap_or(0) as u64;
    i | u64::from(w == FloatWidth::Double) << 8
}

/// [`Arith::bin`] for the operation [`bin_code`] names.
pub(super) extern "C" fn bin(code: u64, a: u64, b: u64) -> u64 {
    let op = BINS.get(code as usize).copied().unwrap_or(Bin::Add);
    guard_pure(0, || Values.bin(op, a, b))
}

/// [`Arith::un`] for the operation [`un_code`] names.
pub(super) extern "C" fn un(code: u64, a: u64) -> u64 {
    let op = UNS.get(code as usize).copied().unwrap_or(Un::Not);
    guard_pure(0, || Values.un(op, a))
}

/// [`Arith::float`] for what [`float_code`] names.
pub(super) extern "C" fn float(code: u64, a: u64, b: u64) -> u64 {
    let op = FLOATS
        .get((code & 0xff) as usize)
        .copied()
        .unwrap_or(FloatOp::Add);
    let w = if code >> 8 & 1 != 0 {
        FloatWidth::Double
    } else {
        FloatWidth::Single
    };
    guard_pure(0, || Values.float(op, w, a, b))
}

/// One part of [`Arith::div_wide`]: `part & 3` 0 the quotient, 1 the remainder, 2 the
/// success flag; bit 8 of `part` asks for the signed division.
pub(super) extern "C" fn div_wide(part: u64, hi: u64, lo: u64, d: u64) -> u64 {
    let (q, r, ok) = guard_pure((0, 0, 0), || Values.div_wide(part >> 8 & 1 != 0, hi, lo, d));
    match part & 3 {
        0 => q,
        1 => r,
        _ => ok,
    }
}

/// The arithmetic flags of a lazy-flags record (`op` as [`CcOp::encode`] packs it).
pub(super) extern "C" fn eflags(op: u64, s1: u64, s2: u64, res: u64) -> u64 {
    guard_pure(0, || {
        flags::eflags_of(&mut Values, CcOp::decode(op), s1, s2, res)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_name_each_operation_once() {
        for (i, &b) in BINS.iter().enumerate() {
            assert_eq!(bin_code(b), i as u64);
        }
        for (i, &u) in UNS.iter().enumerate() {
            assert_eq!(un_code(u), i as u64);
        }
        assert_eq!(bin(bin_code(Bin::SDiv), (-9i64) as u64, 2), (-4i64) as u64);
        assert_eq!(un(un_code(Un::Ctz), 0x10), 4);
        let four = 4f64.to_bits();
        let sqrt = float(float_code(FloatOp::Sqrt, FloatWidth::Double), four, 0);
        assert_eq!(f64::from_bits(sqrt), 2.0);
        assert_eq!(div_wide(0x100, u64::MAX, (-7i64) as u64, 2), (-3i64) as u64);
        assert_eq!(div_wide(2, 1, 0, 1), 0, "a quotient too wide fails");
    }
}
