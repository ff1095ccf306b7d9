//! Basic arithmetic: add, subtract, multiply, divide, square root, round to integer and
//! scale, with the x87's operand checks, C1 round-up indication and its masked and unmasked
//! overflow/underflow responses.

use super::value::{classify, inf, nan_pick, pack_exact, sf, sign, unpack, unsf, zero, Class};
use super::value::{with_sign, BIAS};
use crate::soft::{self, with_env, Env, ExtF80, Flags, Round, DE, IE, OE, PE, UE};
use crate::state::{F80, X87};

/// An operand with its denormal-ness judged in its source format (a denormal m32/m64 is
/// a normal 80-bit number but still raises DE).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Opnd {
    /// The value.
    pub v: F80,
    /// It raises DE when used.
    pub denormal: bool,
}

impl Opnd {
    /// A register operand.
    pub(crate) fn reg(v: F80) -> Opnd {
        Opnd {
            v,
            denormal: classify(v) == Class::Denormal,
        }
    }
}

/// A computed result with the exceptions it raised and whether rounding increased its
/// magnitude (C1).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Res {
    /// The result.
    pub v: F80,
    /// The exceptions raised, in FSW bit order.
    pub flags: Flags,
    /// Rounding increased the magnitude (C1 when PE).
    pub up: bool,
}

impl Res {
    /// A result that needed no rounding.
    pub(crate) fn exact(v: F80, flags: Flags) -> Res {
        Res {
            v,
            flags,
            up: false,
        }
    }
}

/// The two-operand arithmetic operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Bin {
    /// dst + src.
    Add,
    /// dst * src.
    Mul,
    /// dst - src.
    Sub,
    /// src - dst.
    SubR,
    /// dst / src.
    Div,
    /// src / dst.
    DivR,
}

/// `dst op src` in the FPU's current environment.
pub(crate) fn binop(x: &X87, op: Bin, dst: Opnd, src: Opnd) -> Res {
    let (a, b, op) = match op {
        Bin::SubR => (src, dst, Bin::Sub),
        Bin::DivR => (src, dst, Bin::Div),
        _ => (dst, src, op),
    };
    let (ca, cb) = (classify(a.v), classify(b.v));
    if ca == Class::Unsupported || cb == Class::Unsupported {
        return Res::exact(F80::INDEFINITE, IE);
    }
    if ca.is_nan() || cb.is_nan() {
        let f = if ca == Class::SNaN || cb == Class::SNaN {
            IE
        } else {
            0
        };
        return Res::exact(nan_pick(a.v, b.v), f);
    }
    // Division by zero is detected ahead of a denormal dividend.
    let de = if (a.denormal || b.denormal) && !(op == Bin::Div && cb == Class::Zero) {
        DE
    } else {
        0
    };
    if de != 0 && !x.masked(DE) {
        return Res::exact(a.v, de);
    }
    let f = move |a: ExtF80, b: ExtF80| match op {
        Bin::Add => soft::extF80_add(a, b),
        Bin::Sub => soft::extF80_sub(a, b),
        Bin::Mul => soft::extF80_mul(a, b),
        _ => soft::extF80_div(a, b),
    };
    let mut r = rounded(x.env(true), |e| with_env(e, || unsf(f(sf(a.v), sf(b.v)))));
    r.flags |= de;
    if r.flags & IE == 0 && wrap_needed(x, &r) {
        r = wrapped(x, op, a.v, b.v, de);
    }
    r
}

/// Runs `f` in `env` and, when the result is inexact, once more toward zero to tell
/// whether rounding went up in magnitude.
pub(crate) fn rounded(env: Env, f: impl Fn(Env) -> (F80, Flags)) -> Res {
    let (v, flags) = f(env);
    let up = flags & PE != 0
        && match env.round {
            Round::Zero => false,
            _ => {
                let (t, _) = f(Env {
                    round: Round::Zero,
                    ..env
                });
                t != v
            }
        };
    Res { v, flags, up }
}

/// True when the result needs the unmasked overflow/underflow response: OE raised and
/// unmasked, or a tiny result (even an exact one) with UE unmasked.
fn wrap_needed(x: &X87, r: &Res) -> bool {
    let tiny = r.flags & UE != 0 || classify(r.v) == Class::Denormal;
    (r.flags & OE != 0 && !x.masked(OE)) || (tiny && !x.masked(UE))
}

/// A value rebased to exponent 0 (in [1, 2)) and the exponent taken out.
fn rebase(v: F80) -> (F80, i32) {
    if v.signif == 0 {
        // A zero stays a zero; its exponent must not count in an addition's alignment.
        return (v, i32::MIN / 2);
    }
    let (m, e) = unpack(v);
    (
        with_sign(
            F80 {
                signif: m,
                sign_exp: BIAS as u16,
            },
            sign(v),
        ),
        e,
    )
}

/// The unmasked overflow/underflow response (SDM Vol. 1 8.5.4/8.5.5): the result rounded
/// to the destination precision with an unbounded exponent, then the exponent brought back
/// into range by subtracting (overflow) or adding (underflow) 24576.
fn wrapped(x: &X87, op: Bin, a: F80, b: F80, de: Flags) -> Res {
    let (ra, mut ea) = rebase(a);
    let (rb, mut eb) = rebase(b);
    let (ra, rb, shift) = match op {
        _ if op != Bin::Add && op != Bin::Sub && (a.signif == 0 || b.signif == 0) => {
            return Res::exact(unsf(soft::extF80_mul(sf(a), sf(b))), de);
        }
        Bin::Mul => (ra, rb, ea + eb),
        Bin::Div => (ra, rb, ea - eb),
        _ => {
            // Keep the smaller operand within 100 binades: further away it only acts as a
            // sticky bit, and rebasing must not push it out of range.
            let hi = ea.max(eb);
            ea = ea.max(hi - 100);
            eb = eb.max(hi - 100);
            let put = |v: F80, e: i32| {
                if v.signif == 0 {
                    return v;
                }
                F80 {
                    signif: v.signif,
                    sign_exp: (v.sign_exp & 0x8000) | (BIAS + e - hi) as u16,
                }
            };
            (put(ra, ea), put(rb, eb), hi)
        }
    };
    let f = move |a: ExtF80, b: ExtF80| match op {
        Bin::Add => soft::extF80_add(a, b),
        Bin::Sub => soft::extF80_sub(a, b),
        Bin::Mul => soft::extF80_mul(a, b),
        _ => soft::extF80_div(a, b),
    };
    let r = rounded(x.env(true), |e| with_env(e, || unsf(f(sf(ra), sf(rb)))));
    rewrap(r, shift, de)
}

/// Moves a rebased result `r * 2^shift` back into range per the unmasked responses.
fn rewrap(r: Res, shift: i32, de: Flags) -> Res {
    if classify(r.v) == Class::Zero {
        return Res {
            flags: r.flags | de,
            ..r
        };
    }
    let e = i32::from(r.v.sign_exp & 0x7fff) + shift;
    let (e, flag) = if e > 0x7ffe {
        (e - 24576, OE)
    } else if e < 1 {
        (e + 24576, UE)
    } else {
        (e, 0)
    };
    // Beyond what the bias adjustment can bring back: hardware delivers zero or infinity.
    if e < 1 {
        return Res::exact(zero(sign(r.v)), UE | PE | de);
    }
    if e > 0x7ffe {
        return Res {
            v: inf(sign(r.v)),
            flags: OE | PE | de,
            up: true,
        };
    }
    Res {
        v: F80 {
            signif: r.v.signif,
            sign_exp: (r.v.sign_exp & 0x8000) | (e.clamp(1, 0x7ffe) as u16),
        },
        flags: (r.flags & PE) | flag | de,
        up: r.up,
    }
}

/// The unmasked underflow response for a result computed exactly (FPREM): a denormal
/// result is normalised with its exponent raised by 24576, and UE is signalled.
pub(crate) fn wrap_tiny(x: &X87, r: Res) -> Res {
    let blocked = r.flags & super::stack::PRE & !Flags::from(x.fcw) != 0;
    if classify(r.v) != Class::Denormal || x.masked(UE) || blocked {
        return r;
    }
    let (m, e) = unpack(r.v);
    Res {
        v: with_sign(
            F80 {
                signif: m,
                sign_exp: (e + BIAS + 24576) as u16,
            },
            sign(r.v),
        ),
        flags: r.flags | UE,
        up: false,
    }
}

/// FSQRT.
pub(crate) fn sqrt(x: &X87, a: F80) -> Res {
    match classify(a) {
        Class::Unsupported => Res::exact(F80::INDEFINITE, IE),
        Class::SNaN => Res::exact(nan_pick(a, a), IE),
        Class::QNaN | Class::Zero => Res::exact(a, 0),
        _ if sign(a) => Res::exact(F80::INDEFINITE, IE),
        Class::Inf => Res::exact(a, 0),
        c => {
            let de = if c == Class::Denormal { DE } else { 0 };
            if de != 0 && !x.masked(DE) {
                return Res::exact(a, de);
            }
            let mut r = rounded(x.env(true), |e| {
                with_env(e, || unsf(soft::extF80_sqrt(sf(a))))
            });
            r.flags |= de;
            r
        }
    }
}

/// FRNDINT: round to an integral value per RC (precision control does not apply).
pub(crate) fn rndint(x: &X87, a: F80) -> Res {
    match classify(a) {
        Class::Unsupported => Res::exact(F80::INDEFINITE, IE),
        Class::SNaN => Res::exact(nan_pick(a, a), IE),
        Class::QNaN | Class::Zero | Class::Inf => Res::exact(a, 0),
        c => {
            let de = if c == Class::Denormal { DE } else { 0 };
            if de != 0 && !x.masked(DE) {
                return Res::exact(a, de);
            }
            let mut r = rounded(x.env(false), |e| {
                with_env(e, || unsf(soft::extF80_round_to_int(sf(a), true)))
            });
            r.flags |= de;
            r
        }
    }
}

/// FSCALE: ST(0) * 2^trunc(ST(1)).
pub(crate) fn scale(x: &X87, a: F80, b: F80) -> Res {
    let (ca, cb) = (classify(a), classify(b));
    if ca == Class::Unsupported || cb == Class::Unsupported {
        return Res::exact(F80::INDEFINITE, IE);
    }
    if ca.is_nan() || cb.is_nan() {
        let f = if ca == Class::SNaN || cb == Class::SNaN {
            IE
        } else {
            0
        };
        return Res::exact(nan_pick(a, b), f);
    }
    let de = if ca == Class::Denormal || cb == Class::Denormal {
        DE
    } else {
        0
    };
    if de != 0 && !x.masked(DE) {
        return Res::exact(a, de);
    }
    if cb == Class::Inf {
        return match (ca, sign(b)) {
            (Class::Zero, false) | (Class::Inf, true) => Res::exact(F80::INDEFINITE, IE | de),
            (Class::Zero | Class::Inf, _) => Res::exact(a, de),
            (_, false) => Res::exact(inf(sign(a)), de),
            (_, true) => Res::exact(zero(sign(a)), de),
        };
    }
    if ca == Class::Zero || ca == Class::Inf {
        return Res::exact(a, de);
    }
    // The scale factor, truncated; anything beyond +-2^17 already over/underflows.
    let n: i32 = if cb == Class::Zero {
        0
    } else {
        let (m, e) = unpack(b);
        let mag = if e >= 17 {
            1 << 17
        } else if e < 0 {
            0
        } else {
            (m >> (63 - e)) as i32
        };
        if sign(b) {
            -mag
        } else {
            mag
        }
    };
    let (m, e) = unpack(a);
    let target = e + n;
    if (1 - BIAS..=BIAS).contains(&target) {
        return Res::exact(pack_exact(sign(a), u128::from(m), target - 63), de);
    }
    // Out of the normal range: one multiplication by a power of two rounds exactly once.
    let t = target.clamp(-17000, 17000);
    let k: i32 = if t > 0 { 16000 } else { -16000 };
    let base = with_sign(
        F80 {
            signif: m,
            sign_exp: (t - k + BIAS) as u16,
        },
        sign(a),
    );
    let pow = F80 {
        signif: 1 << 63,
        sign_exp: (k + BIAS) as u16,
    };
    let mut r = rounded(x.env(false), |e| {
        with_env(e, || unsf(soft::extF80_mul(sf(base), sf(pow))))
    });
    r.flags |= de;
    if wrap_needed(x, &r) {
        let (rb, _) = rebase(with_sign(
            F80 {
                signif: m,
                sign_exp: BIAS as u16,
            },
            sign(a),
        ));
        return rewrap(Res::exact(rb, 0), target, de);
    }
    r
}
