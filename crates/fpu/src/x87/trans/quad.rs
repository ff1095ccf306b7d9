//! The elementary functions in binary128 (113-bit significand): 49 bits more than the
//! 80-bit result needs, so one final rounding gives results within an ulp (nearly always
//! correctly rounded). Every function here runs under [`crate::soft::with_env`] with
//! round-to-nearest; only the final conversion uses the guest's rounding.

use crate::soft::{self, SF128};
use crate::state::F80;
use crate::x87::value::{sf, unpack};

/// A binary128 value.
pub(crate) type Q = SF128;

fn bits(q: Q) -> u128 {
    u128::from(q.v[0]) | u128::from(q.v[1]) << 64
}

fn from_bits(b: u128) -> Q {
    Q {
        v: [b as u64, (b >> 64) as u64],
    }
}

/// `m * 2^e` for a normalised 128-bit significand (bit 127 set), rounded to nearest.
pub(crate) fn from_sig(neg: bool, m: u128, e: i32) -> Q {
    let frac = ((m << 1) >> 16) + ((m >> 14) & 1);
    // A carry out of the fraction bumps the exponent, which the addition does naturally.
    let b = ((e + 16383) as u128) << 112;
    from_bits((b + frac) | (u128::from(neg) << 127))
}

/// An exact integer.
pub(crate) fn int(n: i64) -> Q {
    soft::i64_to_f128(n)
}

/// An 80-bit value, exactly.
pub(crate) fn q80(v: F80) -> Q {
    soft::extF80_to_f128(sf(v))
}

/// The absolute value.
pub(crate) fn abs(q: Q) -> Q {
    from_bits(bits(q) & !(1 << 127))
}

/// The negation.
pub(crate) fn neg(q: Q) -> Q {
    from_bits(bits(q) ^ 1 << 127)
}

/// The biased exponent field (0x7fff for infinities and NaNs).
pub(crate) fn biased_exp(q: Q) -> u32 {
    ((bits(q) >> 112) & 0x7fff) as u32
}

/// `q` with its last significand bit set (round to odd).
pub(crate) fn sticky(q: Q) -> Q {
    from_bits(bits(q) | 1)
}

/// True for either zero.
pub(crate) fn is_zero(q: Q) -> bool {
    bits(q) << 1 == 0
}

/// The smallest positive denormal.
pub(crate) fn min_denormal() -> Q {
    from_bits(1)
}

/// 2^k for k within the normal range.
pub(crate) fn pow2(k: i32) -> Q {
    from_bits(((k + 16383) as u128) << 112)
}

/// True for a negative value.
pub(crate) fn is_neg(q: Q) -> bool {
    bits(q) >> 127 != 0
}

/// `q` moved by one unit in the last place toward +inf (`dir` > 0) or -inf (`dir` < 0):
/// the residual of a result whose computed value is exact at 80 bits, so that the final
/// rounding sees which side of it the true value lies on.
pub(crate) fn nudge(q: Q, dir: i32) -> Q {
    let b = bits(q);
    let mag = b & !(1 << 127);
    if dir == 0 || mag == 0 {
        return q;
    }
    let up = (dir > 0) != is_neg(q);
    if !up && mag == 1 {
        // The smallest denormal stands for a value below binary128's range: keep it.
        return q;
    }
    from_bits(if up { b + 1 } else { b - 1 })
}

pub(crate) fn add(a: Q, b: Q) -> Q {
    soft::f128_add(a, b)
}
pub(crate) fn sub(a: Q, b: Q) -> Q {
    soft::f128_sub(a, b)
}
pub(crate) fn mul(a: Q, b: Q) -> Q {
    soft::f128_mul(a, b)
}
pub(crate) fn div(a: Q, b: Q) -> Q {
    soft::f128_div(a, b)
}

/// pi to 128 bits.
pub(crate) fn pi() -> Q {
    from_sig(false, 0xc90f_daa2_2168_c234_c4c6_628b_80dc_1cd1, 1)
}

/// ln 2 to 128 bits.
pub(crate) fn ln2() -> Q {
    from_sig(false, 0xb172_17f7_d1cf_79ab_c9e3_b398_03f2_f6af, -1)
}

/// pi/2 as the x87 reduces by it: pi rounded to 66 bits, over two, in units of 2^-65.
const HALF_PI66: u128 = 0x3_243f_6a88_85a3_08d3;

/// Reduces |x| (finite, below 2^63) modulo the x87's 66-bit pi/2: returns the quadrant
/// (mod 4) and the remainder in [-pi/4, pi/4], computed exactly (as hardware does, the
/// result for large arguments follows that pi, not the true one).
pub(crate) fn reduce(x: F80) -> (u32, Q) {
    let (m, e) = unpack(x);
    if e < -2 {
        return (0, abs(q80(x)));
    }
    // |x| = m * 2^(e - 63) = (m << s) units of 2^-65.
    let s = (e - 63 + 65) as u32;
    let mut rem = u128::from(m);
    let mut k: u32 = 0;
    for _ in 0..s {
        rem <<= 1;
        k = k.wrapping_shl(1);
        if rem >= HALF_PI66 {
            rem -= HALF_PI66;
            k |= 1;
        }
    }
    let (neg, rem) = if 2 * rem > HALF_PI66 {
        k = k.wrapping_add(1);
        (true, HALF_PI66 - rem)
    } else {
        (false, rem)
    };
    if rem == 0 {
        return (k & 3, int(0));
    }
    let lz = rem.leading_zeros();
    (k & 3, from_sig(neg, rem << lz, 127 - lz as i32 - 65))
}

/// sin and cos of a reduced argument (|r| <= pi/4) by their Taylor series.
pub(crate) fn sin_cos(r: Q) -> (Q, Q) {
    let r2 = mul(r, r);
    let (mut s, mut ts) = (r, r);
    let one = int(1);
    let (mut c, mut tc) = (one, one);
    for n in 1..=24i64 {
        ts = neg(div(mul(ts, r2), int((2 * n) * (2 * n + 1))));
        s = add(s, ts);
        tc = neg(div(mul(tc, r2), int((2 * n - 1) * (2 * n))));
        c = add(c, tc);
    }
    (s, c)
}

/// atan of |t| <= 1: three argument halvings (atan t = 2 atan(t / (1 + sqrt(1 + t^2))))
/// bring it below tan(pi/32), then the Taylor series.
pub(crate) fn atan(t: Q) -> Q {
    let one = int(1);
    let mut t = t;
    for _ in 0..3 {
        let h = soft::f128_sqrt(add(one, mul(t, t)));
        t = div(t, add(one, h));
    }
    let t2 = mul(t, t);
    let (mut sum, mut p) = (t, t);
    for n in 1..=26i64 {
        p = neg(mul(p, t2));
        sum = add(sum, div(p, int(2 * n + 1)));
    }
    mul(sum, int(8))
}

/// 2 atanh(s) = ln((1 + s) / (1 - s)) for |s| <= 0.18, by its series.
fn two_atanh(s: Q) -> Q {
    let s2 = mul(s, s);
    let (mut sum, mut p) = (s, s);
    for n in 1..=30i64 {
        p = mul(p, s2);
        sum = add(sum, div(p, int(2 * n + 1)));
    }
    mul(sum, int(2))
}

/// log2 of a finite positive value.
pub(crate) fn log2(x: F80) -> Q {
    let (m, mut e) = unpack(x);
    // m in [1, 2) as a binary128; fold the upper half to [sqrt(1/2), sqrt(2)).
    let mut mq = from_sig(false, u128::from(m) << 64, 0);
    if m > 0xb504_f333_f9de_6484 {
        mq = from_sig(false, u128::from(m) << 64, -1);
        e += 1;
    }
    let one = int(1);
    let s = div(sub(mq, one), add(mq, one));
    add(int(i64::from(e)), div(two_atanh(s), ln2()))
}

/// log2 of a finite positive binary128 value (normal).
fn log2_q(q: Q) -> Q {
    let mut e = biased_exp(q) as i32 - 16383;
    let mut m = mul(q, pow2(-e));
    // Fold [sqrt(2), 2) down to [sqrt(1/2), 1) so the atanh series converges fast.
    let sqrt2 = from_sig(false, 0xb504_f333_f9de_6484u128 << 64, 0);
    if is_neg(sub(sqrt2, m)) {
        m = mul(m, pow2(-1));
        e += 1;
    }
    let one = int(1);
    let s = div(sub(m, one), add(m, one));
    add(int(i64::from(e)), div(two_atanh(s), ln2()))
}

/// log2(1 + x) for x > -1. Inside the SDM's domain (|x| < 1 - sqrt(2)/2) by atanh of
/// x / (2 + x), which keeps tiny x exact; beyond it (hardware computes there too) through
/// 1 + x, exact in binary128 for every 80-bit x below 2^112.
pub(crate) fn log2_1p(x: F80) -> Q {
    let xq = q80(x);
    if x.sign_exp & 0x7fff >= 0x3ffd {
        return log2_q(add(int(1), xq));
    }
    let s = div(xq, add(int(2), xq));
    div(two_atanh(s), ln2())
}

/// 2^x - 1 for |x| <= 1, as expm1(x ln 2) by its Taylor series.
pub(crate) fn exp2m1(x: F80) -> Q {
    let t = mul(q80(x), ln2());
    let (mut sum, mut p) = (t, t);
    for n in 2..=40i64 {
        p = div(mul(p, t), int(n));
        sum = add(sum, p);
    }
    sum
}
