//! 80-bit values: classification, the x87 NaN rule, exact conversions from the memory
//! formats, and packing of exact binary results.

use crate::soft::ExtF80;
use crate::state::F80;

/// The explicit integer bit of the significand.
pub(crate) const INT_BIT: u64 = 1 << 63;
/// The quiet bit of a NaN's significand.
pub(crate) const QUIET_BIT: u64 = 1 << 62;
/// The exponent bias of the 80-bit format.
pub(crate) const BIAS: i32 = 16383;

/// What an 80-bit register holds, as the x87 sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Class {
    Zero,
    Normal,
    /// Exponent field 0 with a non-zero significand, pseudo-denormals (integer bit set)
    /// included: both raise the denormal-operand exception.
    Denormal,
    Inf,
    QNaN,
    SNaN,
    /// Unnormals, pseudo-NaNs and pseudo-infinities: the 387 and later reject them as
    /// invalid operands.
    Unsupported,
}

/// The class of `v`.
pub(crate) fn classify(v: F80) -> Class {
    let exp = v.sign_exp & 0x7fff;
    if exp == 0x7fff {
        if v.signif & INT_BIT == 0 {
            Class::Unsupported
        } else if v.signif << 1 == 0 {
            Class::Inf
        } else if v.signif & QUIET_BIT != 0 {
            Class::QNaN
        } else {
            Class::SNaN
        }
    } else if exp == 0 {
        if v.signif == 0 {
            Class::Zero
        } else {
            Class::Denormal
        }
    } else if v.signif & INT_BIT == 0 {
        Class::Unsupported
    } else {
        Class::Normal
    }
}

impl Class {
    pub(crate) fn is_nan(self) -> bool {
        matches!(self, Class::QNaN | Class::SNaN)
    }
}

/// The sign bit.
pub(crate) fn sign(v: F80) -> bool {
    v.sign_exp & 0x8000 != 0
}

/// `v` with its sign bit replaced.
pub(crate) fn with_sign(v: F80, neg: bool) -> F80 {
    F80 {
        signif: v.signif,
        sign_exp: (v.sign_exp & 0x7fff) | if neg { 0x8000 } else { 0 },
    }
}

/// Signed zero.
pub(crate) fn zero(neg: bool) -> F80 {
    with_sign(F80::ZERO, neg)
}

/// Signed infinity.
pub(crate) fn inf(neg: bool) -> F80 {
    with_sign(
        F80 {
            signif: INT_BIT,
            sign_exp: 0x7fff,
        },
        neg,
    )
}

/// A NaN made quiet.
pub(crate) fn quiet(v: F80) -> F80 {
    F80 {
        signif: v.signif | QUIET_BIT,
        sign_exp: v.sign_exp,
    }
}

/// The x87 NaN rule (SDM Vol. 1 table 4-7) for two operands of which at least one is a
/// NaN: a lone NaN propagates; a QNaN beats an SNaN; of two NaNs of the same kind the one
/// with the larger significand wins (ties go to the positive one); the result is quiet.
pub(crate) fn nan_pick(a: F80, b: F80) -> F80 {
    let (ca, cb) = (classify(a), classify(b));
    let r = match (ca.is_nan(), cb.is_nan()) {
        (true, false) => a,
        (false, true) => b,
        _ if ca != cb => {
            if ca == Class::QNaN {
                a
            } else {
                b
            }
        }
        _ => {
            let (sa, sb) = (a.signif | QUIET_BIT, b.signif | QUIET_BIT);
            if sa > sb || (sa == sb && a.sign_exp <= b.sign_exp) {
                a
            } else {
                b
            }
        }
    };
    quiet(r)
}

/// `v` with a pseudo-denormal rewritten as the normal encoding of the same value, as
/// hardware writes back an operand it passes through.
pub(crate) fn canon(v: F80) -> F80 {
    let pseudo = v.sign_exp & 0x7fff == 0 && v.signif & INT_BIT != 0;
    F80 {
        signif: v.signif,
        sign_exp: v.sign_exp | u16::from(pseudo),
    }
}

/// To SoftFloat's representation. Pseudo-denormals (exponent 0, integer bit set) become
/// the normal encoding of the same value, which SoftFloat's arithmetic expects.
pub(crate) fn sf(v: F80) -> ExtF80 {
    let pseudo = v.sign_exp & 0x7fff == 0 && v.signif & INT_BIT != 0;
    ExtF80 {
        signif: v.signif,
        signExp: v.sign_exp | u16::from(pseudo),
    }
}

/// From SoftFloat's representation.
pub(crate) fn unsf(v: ExtF80) -> F80 {
    F80 {
        signif: v.signif,
        sign_exp: v.signExp,
    }
}

/// The significand normalised (integer bit set) and the unbiased exponent of its integer
/// bit, for a finite non-zero value (denormals and pseudo-denormals use exponent 1 - bias).
pub(crate) fn unpack(v: F80) -> (u64, i32) {
    let e = i32::from(v.sign_exp & 0x7fff).max(1) - BIAS;
    let lz = v.signif.leading_zeros();
    (v.signif << lz, e - lz as i32)
}

/// Packs an exactly representable value `m * 2^e` (m != 0, at most 64 significant bits
/// once the trailing zeros that fall below the denormal range are dropped), producing a
/// denormal when the exponent is below the normal range. Callers guarantee exactness and
/// range; bits shifted out would be lost.
pub(crate) fn pack_exact(neg: bool, m: u128, e: i32) -> F80 {
    if m == 0 {
        return zero(neg);
    }
    // Exponent of the leading bit.
    let top = 127 - m.leading_zeros() as i32;
    let lead_exp = e + top;
    let biased = lead_exp + BIAS;
    if biased >= 1 {
        let signif = if top >= 63 {
            (m >> (top - 63)) as u64
        } else {
            (m << (63 - top)) as u64
        };
        with_sign(
            F80 {
                signif,
                sign_exp: biased as u16,
            },
            neg,
        )
    } else {
        // Denormal: the significand's lsb has weight 2^(1 - bias - 63).
        let shift = e - (1 - BIAS - 63);
        let signif = if shift >= 0 {
            (m << shift) as u64
        } else {
            (m >> (-shift)) as u64
        };
        with_sign(
            F80 {
                signif,
                sign_exp: 0,
            },
            neg,
        )
    }
}

/// A binary float of `frac_bits` fraction bits and exponent bias `bias` (its exponent
/// field `exp`, all ones for infinities and NaNs), widened exactly to 80 bits; the flag
/// says it was a denormal (which raises DE when loaded or used).
fn widen(neg: bool, exp: i32, frac: u64, frac_bits: u32, bias: i32) -> (F80, bool) {
    let max_exp = 2 * bias + 1;
    match exp {
        0 if frac == 0 => (zero(neg), false),
        0 => (
            pack_exact(neg, u128::from(frac), 1 - bias - frac_bits as i32),
            true,
        ),
        _ => {
            let sign_exp = if exp == max_exp {
                0x7fff
            } else {
                (exp - bias + BIAS) as u16
            };
            let v = F80 {
                signif: INT_BIT | frac << (63 - frac_bits),
                sign_exp,
            };
            (with_sign(v, neg), false)
        }
    }
}

/// A 32-bit float from memory, widened exactly, with its denormal flag.
pub(crate) fn from_f32(bits: u32) -> (F80, bool) {
    let exp = ((bits >> 23) & 0xff) as i32;
    widen(bits >> 31 != 0, exp, u64::from(bits & 0x7f_ffff), 23, 127)
}

/// A 64-bit float from memory, widened exactly, with its denormal flag.
pub(crate) fn from_f64(bits: u64) -> (F80, bool) {
    let exp = ((bits >> 52) & 0x7ff) as i32;
    widen(bits >> 63 != 0, exp, bits & ((1 << 52) - 1), 52, 1023)
}

/// An integer, converted exactly.
pub(crate) fn from_int(v: i64) -> F80 {
    pack_exact(v < 0, u128::from(v.unsigned_abs()), 0)
}

/// The tag (00 valid, 01 zero, 10 special) a non-empty register holding `v` gets.
pub(crate) fn tag_of(v: F80) -> u16 {
    match classify(v) {
        Class::Zero => 1,
        Class::Normal => 0,
        _ => 2,
    }
}
