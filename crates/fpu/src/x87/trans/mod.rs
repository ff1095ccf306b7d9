//! The transcendental instructions: FSIN, FCOS, FSINCOS, FPTAN, FPATAN, F2XM1, FYL2X and
//! FYL2XP1. Special operands follow the SDM's tables; finite results are evaluated in
//! binary128 ([`quad`]) and rounded once per RC (precision control does not apply).

mod quad;

use super::arith::{rounded, Res};
use super::stack::{C1, C2};
use super::value::{classify, inf, nan_pick, sign, unpack, unsf, with_sign, zero, Class};
use crate::soft::{self, with_env, Env, Flags, Round, DE, IE, OE, PE, UE, ZE};
use crate::state::{F80, X87};
use quad::Q;

/// The transcendental operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Trans {
    Sin,
    Cos,
    SinCos,
    Tan,
    Atan,
    Exp2m1,
    Yl2x,
    Yl2xp1,
}

/// Rounds a binary128 result to 80 bits per RC; `dir` is the sign of (true value -
/// computed value) when the computed value may be exact at 80 bits though the true one is
/// not (tiny arguments), 0 otherwise.
fn finish(x: &X87, q: Q, dir: i32) -> Res {
    finish_scaled(x, q, 0, dir)
}

/// [`finish`] for the value `q * 2^e2`: products with an operand's exponent taken out, so
/// that results beyond binary128's range (which is the 80-bit format's) still round
/// exactly once, and the unmasked overflow/underflow responses (exponent biased by 24576,
/// full precision) see all the bits.
fn finish_scaled(x: &X87, q: Q, e2: i32, dir: i32) -> Res {
    // Scaling into binary128's denormals rounds to odd (toward zero, sticky last bit), so
    // that the final rounding to 80 bits, with at least 49 bits fewer, stays exact.
    let scale = |q: Q, mut k: i32| {
        let env = Env {
            round: Round::Zero,
            precision: 80,
        };
        let (mut q, mut inexact) = (q, false);
        while k != 0 {
            let step = k.clamp(-16000, 16000);
            let (r, f) = with_env(env, || quad::mul(q, quad::pow2(step)));
            q = r;
            inexact |= f & PE != 0;
            k -= step;
        }
        if inexact {
            quad::sticky(q)
        } else {
            q
        }
    };
    let round = |q: Q| {
        // The nudge only matters, and is only right, when the computed value is exact at
        // 80 bits: otherwise it could cancel the computation's own residual.
        let (_, f) = with_env(x.env(false), || soft::f128_to_extF80(q));
        let q = if f & PE == 0 { quad::nudge(q, dir) } else { q };
        rounded(x.env(false), |e| {
            with_env(e, || unsf(soft::f128_to_extF80(q)))
        })
    };
    // Every caller's true result is nonzero (exact zeros are special cases).
    let exp = if quad::is_zero(q) {
        -20000
    } else {
        quad::biased_exp(q) as i32 - 16383 + e2
    };
    if exp > 16383 {
        if !x.masked(OE) {
            let mut w = round(scale(q, e2 - 24576));
            w.flags = (w.flags & PE) | OE;
            return w;
        }
        let neg = quad::is_neg(q);
        let to_inf = match x.env(false).round {
            Round::Nearest => true,
            Round::Zero => false,
            Round::Up => !neg,
            Round::Down => neg,
        };
        let v = if to_inf {
            inf(neg)
        } else {
            with_sign(
                F80 {
                    signif: u64::MAX,
                    sign_exp: 0x7ffe,
                },
                neg,
            )
        };
        return Res {
            v,
            flags: OE | PE,
            up: to_inf,
        };
    }
    let q2 = if exp < -16494 {
        // Below binary128's denormals: its smallest one stands for "tiny, nonzero".
        let t = quad::min_denormal();
        if quad::is_neg(q) {
            quad::neg(t)
        } else {
            t
        }
    } else {
        scale(q, e2)
    };
    let r = round(q2);
    let tiny = r.flags & UE != 0 || classify(r.v) == Class::Denormal;
    if tiny && !x.masked(UE) {
        let mut w = round(scale(q, e2 + 24576));
        w.flags = (w.flags & PE) | UE;
        return w;
    }
    r
}

/// Evaluates `f` in round-to-nearest binary128.
fn quad<T>(f: impl FnOnce() -> T) -> T {
    with_env(Env::DEFAULT, f).0
}

/// The shared operand screening of one-operand functions: Err(result) for NaNs,
/// unsupported encodings and infinities (invalid for all of them but F2XM1), with the
/// denormal flag otherwise.
fn screen(x: &X87, v: F80) -> Result<Flags, Res> {
    match classify(v) {
        Class::Unsupported => Err(Res::exact(F80::INDEFINITE, IE)),
        Class::SNaN => Err(Res::exact(nan_pick(v, v), IE)),
        Class::QNaN => Err(Res::exact(v, 0)),
        Class::Denormal if !x.masked(DE) => Err(Res::exact(v, DE)),
        Class::Denormal => Ok(DE),
        _ => Ok(0),
    }
}

/// True when |v| >= 2^63: FSIN/FCOS/FSINCOS/FPTAN leave such operands alone and set C2.
fn out_of_range(v: F80) -> bool {
    matches!(classify(v), Class::Normal) && unpack(v).1 >= 63
}

/// sin or cos of a finite in-range value.
fn sincos(x: &X87, v: F80, cos: bool) -> Res {
    if classify(v) == Class::Zero {
        return Res::exact(if cos { one() } else { v }, 0);
    }
    let (k, r, tiny) = quad(|| {
        let (k, r) = quad::reduce(v);
        (k, r, unpack(v).1 < -40)
    });
    let k = if cos { k + 1 } else { k };
    let (s, c) = quad(|| quad::sin_cos(r));
    // sin(|x| + k pi/2) cycles sin, cos, -sin, -cos; sin is odd, cos even.
    let (base, minus) = match k & 3 {
        0 => (s, false),
        1 => (c, false),
        2 => (s, true),
        _ => (c, true),
    };
    let val = if minus != (!cos && sign(v)) {
        quad::neg(base)
    } else {
        base
    };
    // Tiny arguments: sin x = x - x^3/6 (toward zero), cos x = 1 - x^2/2 (below one).
    let dir = match (tiny, cos) {
        (false, _) => 0,
        (true, false) => {
            if quad::is_neg(val) {
                1
            } else {
                -1
            }
        }
        (true, true) => -1,
    };
    finish(x, val, dir)
}

fn one() -> F80 {
    F80 {
        signif: 1 << 63,
        sign_exp: 0x3fff,
    }
}

/// Executes a transcendental instruction.
pub(crate) fn run(x: &mut X87, t: Trans) {
    match t {
        Trans::Sin | Trans::Cos => {
            let Some(v) = x.get(0) else {
                return underflow(x, 0);
            };
            x.cc(C2, false);
            let r = match screen(x, v) {
                Err(r) => r,
                Ok(_) if classify(v) == Class::Inf => Res::exact(F80::INDEFINITE, IE),
                Ok(_) if out_of_range(v) => {
                    x.cc(C2, true);
                    x.cc(C1, false);
                    return;
                }
                Ok(de) => {
                    let mut r = sincos(x, v, t == Trans::Cos);
                    r.flags |= de;
                    r
                }
            };
            if x.deliver(r.flags, r.up) {
                x.set_st(0, r.v);
            }
        }
        Trans::SinCos | Trans::Tan => two_results(x, t),
        Trans::Atan | Trans::Yl2x | Trans::Yl2xp1 => binary(x, t),
        Trans::Exp2m1 => {
            let Some(v) = x.get(0) else {
                return underflow(x, 0);
            };
            let r = match screen(x, v) {
                Err(r) => r,
                Ok(de) => {
                    let mut r = match classify(v) {
                        Class::Inf if sign(v) => Res::exact(with_sign(one(), true), 0),
                        Class::Inf | Class::Zero => Res::exact(v, 0),
                        // Outside the domain (|x| > 1) the SDM leaves the result undefined;
                        // AMD processors, whose CPUID crane86 presents, return x, inexact.
                        _ if magnitude_above_one(v) => Res::exact(v, PE),
                        // 2^x - 1 = x ln 2 (1 + x ln 2 / 2 + ...): for tiny x the product
                        // alone, its exponent kept apart, nudged up.
                        _ if unpack(v).1 < -80 => {
                            let (m, e) = rebased(v);
                            let q = quad(|| quad::mul(m, quad::ln2()));
                            finish_scaled(x, q, e, 1)
                        }
                        _ => {
                            let q = quad(|| quad::exp2m1(v));
                            finish(x, q, 0)
                        }
                    };
                    r.flags |= de;
                    r
                }
            };
            if x.deliver(r.flags, r.up) {
                x.set_st(0, r.v);
            }
        }
    }
}

/// Masked stack underflow: the destination gets the QNaN indefinite.
fn underflow(x: &mut X87, d: usize) {
    if x.underflow() {
        x.set_st(d, F80::INDEFINITE);
    }
}

/// FSINCOS (ST(0) becomes sin, then cos is pushed: ST(1) = sin, ST(0) = cos) and FPTAN
/// (ST(0) becomes tan, then 1.0 is pushed).
fn two_results(x: &mut X87, t: Trans) {
    let Some(v) = x.get(0) else {
        if x.underflow() {
            x.set_st(0, F80::INDEFINITE);
            x.push(F80::INDEFINITE);
        }
        x.cc(C2, false);
        return;
    };
    x.cc(C2, false);
    if !x.is_empty(7) {
        if x.overflow() {
            x.set_st(0, F80::INDEFINITE);
            x.push(F80::INDEFINITE);
        }
        return;
    }
    let (first, second) = match screen(x, v) {
        Err(r) => (r, r),
        Ok(_) if classify(v) == Class::Inf => {
            let r = Res::exact(F80::INDEFINITE, IE);
            (r, r)
        }
        Ok(_) if out_of_range(v) => {
            x.cc(C2, true);
            x.cc(C1, false);
            return;
        }
        Ok(de) => {
            let (mut a, mut b) = if t == Trans::SinCos {
                (sincos(x, v, false), sincos(x, v, true))
            } else {
                (tan(x, v), Res::exact(one(), 0))
            };
            a.flags |= de;
            b.flags |= de;
            (a, b)
        }
    };
    let flags = first.flags | second.flags;
    // C1 reports the rounding of the value left in ST(0).
    if x.deliver(flags, second.up) {
        x.set_st(0, first.v);
        x.push(second.v);
    }
}

/// tan of a finite in-range value.
fn tan(x: &X87, v: F80) -> Res {
    if classify(v) == Class::Zero {
        return Res::exact(v, 0);
    }
    let q = quad(|| {
        let (k, r) = quad::reduce(v);
        let (s, c) = quad::sin_cos(r);
        let t = if k & 1 == 0 {
            quad::div(s, c)
        } else {
            quad::neg(quad::div(c, s))
        };
        if sign(v) {
            quad::neg(t)
        } else {
            t
        }
    });
    // tan x = x + x^3/3: away from zero for tiny arguments.
    let dir = if unpack(v).1 < -40 {
        if sign(v) {
            -1
        } else {
            1
        }
    } else {
        0
    };
    finish(x, q, dir)
}

/// FPATAN, FYL2X, FYL2XP1: ST(1) = f(ST(1), ST(0)), then pop.
fn binary(x: &mut X87, t: Trans) {
    let (Some(a), Some(b)) = (x.get(0), x.get(1)) else {
        if x.underflow() {
            x.set_st(1, F80::INDEFINITE);
            x.pop();
        }
        return;
    };
    let r = binary_value(x, t, b, a);
    if x.deliver(r.flags, r.up) {
        x.set_st(1, r.v);
        x.pop();
    }
}

/// f(y, x) for the two-operand functions, y = ST(1), x = ST(0).
fn binary_value(x87: &X87, t: Trans, y: F80, x: F80) -> Res {
    let (cy, cx) = (classify(y), classify(x));
    if cy == Class::Unsupported || cx == Class::Unsupported {
        return Res::exact(F80::INDEFINITE, IE);
    }
    if cy.is_nan() || cx.is_nan() {
        let f = if cy == Class::SNaN || cx == Class::SNaN {
            IE
        } else {
            0
        };
        return Res::exact(nan_pick(y, x), f);
    }
    // The log of a negative number is invalid before anything else is looked at.
    let log_neg = match t {
        Trans::Yl2x => sign(x) && cx != Class::Zero,
        Trans::Yl2xp1 => sign(x) && cx == Class::Inf,
        _ => false,
    };
    if log_neg {
        return Res::exact(F80::INDEFINITE, IE);
    }
    // As with division, log2(0)'s zero divide is detected ahead of a denormal multiplier.
    let log0 = t == Trans::Yl2x && cx == Class::Zero;
    let de = if (cy == Class::Denormal || cx == Class::Denormal) && !log0 {
        DE
    } else {
        0
    };
    if de != 0 && !x87.masked(DE) {
        return Res::exact(y, de);
    }
    let mut r = match t {
        Trans::Atan => atan2(x87, y, x),
        Trans::Yl2x => yl2x(x87, y, x),
        _ => yl2xp1(x87, y, x),
    };
    r.flags |= de;
    r
}

/// A multiple of pi (num/den) with the given sign, rounded per RC.
fn pi_frac(x: &X87, neg: bool, num: i64, den: i64) -> Res {
    let q = quad(|| quad::div(quad::mul(quad::pi(), quad::int(num)), quad::int(den)));
    finish(x, if neg { quad::neg(q) } else { q }, 0)
}

/// FPATAN: atan2(y, x) with the IEEE special cases.
fn atan2(x87: &X87, y: F80, x: F80) -> Res {
    let (cy, cx) = (classify(y), classify(x));
    let ny = sign(y);
    let nx = sign(x);
    match (cy, cx) {
        (Class::Zero, _) if !nx => Res::exact(zero(ny), 0),
        (Class::Zero, _) => pi_frac(x87, ny, 1, 1),
        (Class::Inf, Class::Inf) => pi_frac(x87, ny, if nx { 3 } else { 1 }, 4),
        (Class::Inf, _) | (_, Class::Zero) => pi_frac(x87, ny, 1, 2),
        (_, Class::Inf) if !nx => Res::exact(zero(ny), 0),
        (_, Class::Inf) => pi_frac(x87, ny, 1, 1),
        _ => {
            // atan t = t - t^3/3 for tiny ratios: the ratio itself with its exponent kept
            // apart (it may lie far below the format's range), nudged toward zero.
            if !nx && unpack(y).1 - unpack(x).1 < -40 {
                let ((my, ey), (mx, ex)) = (rebased(y), rebased(x));
                let q = quad(|| quad::div(my, quad::abs(mx)));
                return finish_scaled(x87, q, ey - ex, if ny { 1 } else { -1 });
            }
            let q = quad(|| {
                let (ay, ax) = (quad::abs(quad::q80(y)), quad::abs(quad::q80(x)));
                let mut a = if quad::is_neg(quad::sub(ax, ay)) {
                    let half_pi = quad::div(quad::pi(), quad::int(2));
                    quad::sub(half_pi, quad::atan(quad::div(ax, ay)))
                } else {
                    quad::atan(quad::div(ay, ax))
                };
                if nx {
                    a = quad::sub(quad::pi(), a);
                }
                if ny {
                    quad::neg(a)
                } else {
                    a
                }
            });
            finish(x87, q, 0)
        }
    }
}

/// The product of y and an exactly signed special log value (infinity or zero), with
/// IEEE's invalid 0 * inf.
fn times_special(y: F80, log_neg: bool, log_inf: bool) -> Res {
    let cy = classify(y);
    let neg = sign(y) != log_neg;
    match (cy, log_inf) {
        (Class::Zero, true) | (Class::Inf, false) => Res::exact(F80::INDEFINITE, IE),
        (Class::Inf, true) => Res::exact(inf(neg), 0),
        (_, true) => Res::exact(inf(neg), 0),
        _ => Res::exact(zero(neg), 0),
    }
}

/// FYL2X: y * log2(x).
fn yl2x(x87: &X87, y: F80, x: F80) -> Res {
    let cx = classify(x);
    if sign(x) && cx != Class::Zero {
        return Res::exact(F80::INDEFINITE, IE);
    }
    match cx {
        Class::Zero => {
            let mut r = times_special(y, true, true);
            if matches!(classify(y), Class::Normal | Class::Denormal) {
                r.flags |= ZE;
            }
            r
        }
        Class::Inf => times_special(y, false, true),
        _ if x == one() => times_special(y, false, false),
        _ if classify(y) == Class::Inf => times_special(y, x.sign_exp & 0x7fff < 0x3fff, true),
        _ if classify(y) == Class::Zero => times_special(y, x.sign_exp & 0x7fff < 0x3fff, false),
        _ => {
            let (my, ey) = rebased(y);
            let q = quad(|| quad::mul(my, quad::log2(x)));
            // Hardware reports every FYL2X result inexact, exact powers of two included.
            let mut r = finish_scaled(x87, q, ey, 0);
            r.flags |= PE;
            if classify(r.v) == Class::Denormal {
                r.flags |= UE;
            }
            r
        }
    }
}

/// A finite nonzero value as its significand in [1, 2) (signed) and its exponent.
fn rebased(v: F80) -> (Q, i32) {
    let (m, e) = unpack(v);
    (quad::from_sig(sign(v), u128::from(m) << 64, 0), e)
}

/// |v| > 1 for a finite, supported value.
fn magnitude_above_one(v: F80) -> bool {
    let e = v.sign_exp & 0x7fff;
    e > 0x3fff || (e == 0x3fff && v.signif != 1 << 63)
}

/// FYL2XP1: y * log2(x + 1).
fn yl2xp1(x87: &X87, y: F80, x: F80) -> Res {
    let cx = classify(x);
    match cx {
        Class::Zero => times_special(y, sign(x), false),
        // Outside the documented domain, but hardware does the obvious: log2(+inf) is
        // +inf, log2(-inf) invalid.
        Class::Inf if sign(x) => Res::exact(F80::INDEFINITE, IE),
        Class::Inf => times_special(y, false, true),
        _ if classify(y) == Class::Inf => times_special(y, sign(x), true),
        _ if classify(y) == Class::Zero => times_special(y, sign(x), false),
        // x <= -1 leaves log2(x + 1) undefined (the SDM's domain is |x| < 1 - sqrt(2)/2);
        // AMD processors return x, inexact, and compute for every x > -1.
        _ if sign(x) && (magnitude_above_one(x) || x.sign_exp & 0x7fff == 0x3fff) => {
            Res::exact(x, PE)
        }
        _ => {
            let (my, ey) = rebased(y);
            if unpack(x).1 < -80 {
                // log2(1 + x) = x / ln 2 (1 - x/2 + ...): for tiny x with its exponent
                // kept apart, which binary128's denormals could not hold precisely.
                let (mx, ex) = rebased(x);
                let q = quad(|| quad::div(quad::mul(my, mx), quad::ln2()));
                return finish_scaled(x87, q, ey + ex, 0);
            }
            let q = quad(|| quad::mul(my, quad::log2_1p(x)));
            finish_scaled(x87, q, ey, 0)
        }
    }
}
