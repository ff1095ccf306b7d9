//! Data transfer: loads and stores in every memory format, integer and BCD conversions,
//! and the constants.

use super::arith::{rounded, Res};
use super::value::{classify, pack_exact, quiet, sf, sign, unpack, unsf, Class};
use super::value::{BIAS, INT_BIT};
use crate::soft::{self, with_env, Env, Flags, Round, DE, IE, OE, UE};
use crate::state::{F80, X87};

/// Pushes a loaded value after the stack-overflow check (whose masked response pushes the
/// QNaN indefinite), raising `flags`; an unmasked IE, DE or ZE among them prevents the
/// load.
pub(crate) fn push_checked(x: &mut X87, v: F80, flags: Flags) {
    if !x.is_empty(7) {
        if x.overflow() {
            x.push(F80::INDEFINITE);
        }
        return;
    }
    if x.deliver(flags, false) {
        x.push(v);
    }
}

/// FLD of an m32fp/m64fp value already widened: SNaNs are quieted with IE, denormals raise
/// DE.
pub(crate) fn load_fp(x: &mut X87, v: F80, denormal: bool) {
    let mut flags = if denormal { DE } else { 0 };
    let mut v = v;
    if classify(v) == Class::SNaN {
        flags |= IE;
        v = quiet(v);
    }
    if !x.is_empty(7) {
        return push_checked(x, v, 0);
    }
    // An unmasked DE still loads the value (hardware signals it afterwards); only an
    // unmasked IE prevents the load.
    x.cc(super::stack::C1, false);
    if x.raise(flags) & IE == 0 {
        x.push(v);
    }
}

/// The destination formats of FST/FSTP to memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FpFmt {
    F32,
    F64,
}

/// The bits of `v` converted to `fmt` per RC, with the flags raised. An SNaN or
/// unsupported operand gives IE; NaNs keep the top of their payload.
pub(crate) fn to_fp(x: &X87, v: F80, fmt: FpFmt) -> (u64, Res) {
    let neg = sign(v);
    let (exp_bits, frac_bits) = match fmt {
        FpFmt::F32 => (8, 23),
        FpFmt::F64 => (11, 52),
    };
    let sign_bit = u64::from(neg) << (exp_bits + frac_bits);
    let exp_all = ((1u64 << exp_bits) - 1) << frac_bits;
    let nan = |s: u64| sign_bit | exp_all | ((s << 1) >> (64 - frac_bits)) | (1 << (frac_bits - 1));
    match classify(v) {
        // The format's QNaN indefinite (negative, quiet bit only).
        Class::Unsupported => (
            1 << (exp_bits + frac_bits) | exp_all | 1 << (frac_bits - 1),
            Res::exact(v, IE),
        ),
        c @ (Class::SNaN | Class::QNaN) => {
            let f = if c == Class::SNaN { IE } else { 0 };
            (nan(v.signif), Res::exact(v, f))
        }
        Class::Inf => (sign_bit | exp_all, Res::exact(v, 0)),
        Class::Zero => (sign_bit, Res::exact(v, 0)),
        _ => {
            let mut bits = 0;
            let r = rounded(x.env(false), |e| {
                let (b, f) = with_env(e, || match fmt {
                    FpFmt::F32 => u64::from(soft::extF80_to_f32(sf(v)).v),
                    FpFmt::F64 => soft::extF80_to_f64(sf(v)).v,
                });
                // Only the magnitude matters for the round-up test: compare as an F80.
                (
                    F80 {
                        signif: b,
                        sign_exp: 0,
                    },
                    f,
                )
            });
            bits |= r.v.signif;
            let tiny = bits & exp_all == 0 && bits & !sign_bit != 0;
            let mut flags = r.flags;
            if tiny && !x.masked(UE) {
                flags |= UE;
            }
            (bits, Res { v, flags, up: r.up })
        }
    }
}

/// True when a store's flags forbid writing memory: an unmasked IE, OE or UE (the
/// operand then stays on the stack).
pub(crate) fn store_blocked(x: &X87, flags: Flags) -> bool {
    flags & (IE | OE | UE) & !Flags::from(x.fcw) != 0
}

/// The integer FIST/FISTP/FISTTP store: `v` rounded per RC (or toward zero for FISTTP)
/// into `bits` bits, or None (with IE) when it does not fit; PE and C1 round-up as usual.
pub(crate) fn to_int(x: &X87, v: F80, bits: u32, truncate: bool) -> (Option<i64>, Res) {
    match classify(v) {
        Class::Unsupported | Class::SNaN | Class::QNaN | Class::Inf => {
            return (None, Res::exact(v, IE))
        }
        Class::Zero => return (Some(0), Res::exact(v, 0)),
        _ => {}
    }
    let mut env = x.env(false);
    if truncate {
        env.round = Round::Zero;
    }
    let r = rounded(env, |e| {
        with_env(e, || unsf(soft::extF80_round_to_int(sf(v), true)))
    });
    let int = integral(r.v);
    let limit = 1u128 << (bits - 1);
    match int {
        Some(m) if m < limit || (m == limit && sign(v)) => {
            let n = if sign(v) {
                (m as i128).wrapping_neg() as i64
            } else {
                m as i64
            };
            (Some(n), r)
        }
        _ => (None, Res::exact(v, IE)),
    }
}

/// The magnitude of an integral value, None when it is 2^64 or more.
fn integral(v: F80) -> Option<u128> {
    if classify(v) == Class::Zero {
        return Some(0);
    }
    let (m, e) = unpack(v);
    if e >= 64 {
        None
    } else if e < 0 {
        Some(0)
    } else {
        Some(u128::from(m >> (63 - e)))
    }
}

/// Decodes a packed BCD operand (18 digits, sign in bit 79). Invalid digits give an
/// undefined value on hardware; here they count with their binary value.
pub(crate) fn from_bcd(lo: u64, hi: u16) -> F80 {
    let mut n: u64 = 0;
    let digits = |b: u8, n: &mut u64| {
        *n = *n * 10 + u64::from(b >> 4);
        *n = *n * 10 + u64::from(b & 15);
    };
    digits(hi as u8, &mut n);
    for i in (0..8).rev() {
        digits((lo >> (8 * i)) as u8, &mut n);
    }
    let neg = hi & 0x8000 != 0;
    pack_exact(neg, u128::from(n), 0)
}

/// The packed BCD indefinite FBSTP stores on a masked invalid operation.
pub(crate) const BCD_INDEFINITE: (u64, u16) = (0xc000_0000_0000_0000, 0xffff);

/// FBSTP's conversion: `v` rounded per RC to an integer of at most 18 digits.
pub(crate) fn to_bcd(x: &X87, v: F80) -> (Option<(u64, u16)>, Res) {
    let (n, r) = match classify(v) {
        Class::Zero => (Some(0), Res::exact(v, 0)),
        Class::Unsupported | Class::SNaN | Class::QNaN | Class::Inf => (None, Res::exact(v, IE)),
        _ => {
            let r = rounded(x.env(false), |e| {
                with_env(e, || unsf(soft::extF80_round_to_int(sf(v), true)))
            });
            (integral(r.v), r)
        }
    };
    match n {
        Some(mut n) if n < 1_000_000_000_000_000_000 => {
            let mut lo = 0u64;
            for i in 0..16 {
                lo |= ((n % 10) as u64) << (4 * i);
                n /= 10;
            }
            let hi = (n % 10) as u16 | ((n / 10) as u16) << 4 | if sign(v) { 0x8000 } else { 0 };
            (Some((lo, hi)), r)
        }
        _ => (None, Res::exact(v, IE)),
    }
}

/// The constant loads: the value's significand to 128 bits and its unbiased exponent,
/// rounded to 64 bits per RC as the 387 and later do (no exception, C1 cleared).
pub(crate) fn constant(env: Env, code: iced_x86::Code) -> F80 {
    use iced_x86::Code;
    let (m, e): (u128, i32) = match code {
        Code::Fld1 => (1 << 127, 0),
        Code::Fldz => return F80::ZERO,
        Code::Fldpi => (0xc90f_daa2_2168_c234_c4c6_628b_80dc_1cd1, 1),
        Code::Fldl2t => (0xd49a_784b_cd1b_8afe_492b_f6ff_4daf_db4c, 1),
        Code::Fldl2e => (0xb8aa_3b29_5c17_f0bb_be87_fed0_691d_3e88, 0),
        Code::Fldlg2 => (0x9a20_9a84_fbcf_f798_8f89_59ac_0b7c_9178, -2),
        _ => (0xb172_17f7_d1cf_79ab_c9e3_b398_03f2_f6af, -1),
    };
    let hi = (m >> 64) as u64;
    let lo = m as u64;
    let inc = match env.round {
        Round::Nearest => lo > 1 << 63 || (lo == 1 << 63 && hi & 1 != 0),
        Round::Up => lo != 0,
        Round::Down | Round::Zero => false,
    };
    debug_assert!(hi & INT_BIT != 0 && hi != u64::MAX);
    F80 {
        signif: hi + u64::from(inc),
        sign_exp: (e + BIAS) as u16,
    }
}
