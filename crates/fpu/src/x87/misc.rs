//! FPREM/FPREM1 (partial remainder) and FXTRACT.

use super::arith::Res;
use super::value::{canon, Class, BIAS};
use super::value::{classify, from_int, inf, nan_pick, pack_exact, sign, unpack, with_sign};
use crate::soft::{DE, IE, ZE};
use crate::state::{F80, X87};

/// The outcome of one FPREM/FPREM1 step: the new ST(0), and the quotient's low bits with
/// whether the reduction completed (None when no remainder was computed).
pub(crate) struct Prem {
    pub res: Res,
    /// The quotient's low bits; None for NaN and invalid operands, which leave C0, C1
    /// and C3 alone.
    pub quotient: Option<u64>,
    pub complete: bool,
}

/// One FPREM (`ieee` false: quotient truncated) or FPREM1 (`ieee`: quotient rounded to
/// nearest even) step on ST(0) = `a`, ST(1) = `b`. When the exponents differ by 64 or more
/// the step only reduces ST(0) by a multiple of ST(1) * 2^(D - N), N in 32..=63, and
/// reports it incomplete (C2 = 1) as hardware does.
pub(crate) fn prem(x: &X87, a: F80, b: F80, ieee: bool) -> Prem {
    let done = |res: Res| Prem {
        res,
        quotient: Some(0),
        complete: true,
    };
    let special = |res: Res| Prem {
        res,
        quotient: None,
        complete: true,
    };
    let (ca, cb) = (classify(a), classify(b));
    if ca == Class::Unsupported || cb == Class::Unsupported {
        return special(Res::exact(F80::INDEFINITE, IE));
    }
    if ca.is_nan() || cb.is_nan() {
        let f = if ca == Class::SNaN || cb == Class::SNaN {
            IE
        } else {
            0
        };
        return special(Res::exact(nan_pick(a, b), f));
    }
    if ca == Class::Inf || cb == Class::Zero {
        return special(Res::exact(F80::INDEFINITE, IE));
    }
    let de = if ca == Class::Denormal || cb == Class::Denormal {
        DE
    } else {
        0
    };
    if (de != 0 && !x.masked(DE)) || ca == Class::Zero || cb == Class::Inf {
        return done(Res::exact(canon(a), de));
    }
    let (ma, ea) = unpack(a);
    let (mb, eb) = unpack(b);
    let d = ea - eb;
    if d < -1 || (d == -1 && !ieee) {
        return done(Res::exact(canon(a), de));
    }
    let (k, complete) = if d >= 64 {
        (((d & 31) | 32) as u32, false)
    } else {
        (d.max(0) as u32, true)
    };
    let num = u128::from(ma) << k;
    let den = u128::from(mb) << u32::from(d == -1);
    let mut q = num / den;
    let mut r = num % den;
    let mut neg = sign(a);
    if ieee && complete && (2 * r > den || (2 * r == den && q & 1 != 0)) {
        q += 1;
        r = den - r;
        neg = !neg;
    }
    let unit = ea - 63 - k as i32;
    let v = if r == 0 {
        with_sign(F80::ZERO, sign(a))
    } else {
        pack_exact(neg, r, unit)
    };
    Prem {
        res: Res::exact(v, de),
        quotient: Some(q as u64),
        complete,
    }
}

/// FXTRACT of `v`: (exponent, significand) as the new ST(1) and ST(0), with the flags.
pub(crate) fn xtract(x: &X87, v: F80) -> (F80, F80, crate::soft::Flags) {
    match classify(v) {
        Class::Unsupported => (F80::INDEFINITE, F80::INDEFINITE, IE),
        Class::SNaN => (nan_pick(v, v), nan_pick(v, v), IE),
        Class::QNaN => (v, v, 0),
        Class::Zero => (inf(true), v, ZE),
        Class::Inf => (inf(false), v, 0),
        c => {
            let de = if c == Class::Denormal { DE } else { 0 };
            if de != 0 && !x.masked(DE) {
                return (v, v, de);
            }
            let (m, e) = unpack(v);
            let signif = with_sign(
                F80 {
                    signif: m,
                    sign_exp: BIAS as u16,
                },
                sign(v),
            );
            (from_int(i64::from(e)), signif, de)
        }
    }
}
