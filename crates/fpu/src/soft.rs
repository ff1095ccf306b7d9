// The wrappers keep SoftFloat's names (f64_mulAdd, extF80_sqrt...) so its documentation applies.
#![allow(non_snake_case)]
//! Safe wrappers around Berkeley SoftFloat 3 (`softfloat-sys`), the crate's only `unsafe`.
//!
//! SoftFloat keeps its rounding mode, exception flags and x87 rounding precision in
//! thread-local globals. [`with_env`] sets them for one computation and returns the flags it
//! raised, so callers never see SoftFloat's globals: every operation is a pure function of
//! its inputs and its [`Env`].
//!
//! # Safety invariant
//! The SoftFloat functions are plain C computations on values passed by copy; they touch no
//! memory but their thread-local globals. Calling them is sound on any input. Each wrapper
//! below is a one-line `unsafe` call relying on that.

use softfloat_sys as sf;

pub use sf::{extFloat80_t as ExtF80, float32_t as SF32, float64_t as SF64};

/// The four IEEE rounding modes in x86 encoding order (MXCSR.RC, FCW.RC).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Round {
    /// Round to nearest, ties to even (RC = 00).
    Nearest,
    /// Round toward -infinity (RC = 01).
    Down,
    /// Round toward +infinity (RC = 10).
    Up,
    /// Round toward zero (RC = 11).
    Zero,
}

impl Round {
    /// The rounding mode of a two-bit RC field.
    pub fn from_rc(rc: u32) -> Round {
        match rc & 3 {
            0 => Round::Nearest,
            1 => Round::Down,
            2 => Round::Up,
            _ => Round::Zero,
        }
    }

    fn sf(self) -> u8 {
        match self {
            Round::Nearest => sf::softfloat_round_near_even,
            Round::Down => sf::softfloat_round_min,
            Round::Up => sf::softfloat_round_max,
            Round::Zero => sf::softfloat_round_minMag,
        }
    }
}

/// IEEE exception flags raised by an operation, in x86 MXCSR/FSW bit order: IE (bit 0), DE
/// (bit 1, never raised by SoftFloat: callers detect denormal operands), ZE (2), OE (3),
/// UE (4), PE (5).
pub type Flags = u32;
/// Invalid operation.
pub const IE: Flags = 1 << 0;
/// Denormal operand.
pub const DE: Flags = 1 << 1;
/// Division by zero.
pub const ZE: Flags = 1 << 2;
/// Overflow.
pub const OE: Flags = 1 << 3;
/// Underflow.
pub const UE: Flags = 1 << 4;
/// Precision (inexact result).
pub const PE: Flags = 1 << 5;

/// The environment of one operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Env {
    /// The rounding mode.
    pub round: Round,
    /// x87 precision control for 80-bit results: 32, 64 or 80 significand-and-sign bits
    /// (SoftFloat's `extF80_roundingPrecision`); 80 outside the x87.
    pub precision: u8,
}

impl Env {
    /// Round to nearest, full precision.
    pub const DEFAULT: Env = Env {
        round: Round::Nearest,
        precision: 80,
    };
}

/// Runs `f` under `env` and returns its result with the exception flags it raised.
pub fn with_env<T>(env: Env, f: impl FnOnce() -> T) -> (T, Flags) {
    // SAFETY: see the module invariant; these only write SoftFloat's thread-local globals.
    unsafe {
        sf::softfloat_roundingMode_write_helper(env.round.sf());
        sf::extF80_roundingPrecision_write_helper(env.precision);
        sf::softfloat_detectTininess_write_helper(sf::softfloat_tininess_afterRounding);
        sf::softfloat_exceptionFlags_write_helper(0);
    }
    let r = f();
    // SAFETY: as above, a read of a thread-local global.
    let raw = unsafe { sf::softfloat_exceptionFlags_read_helper() };
    let mut flags = 0;
    if raw & sf::softfloat_flag_invalid != 0 {
        flags |= IE;
    }
    if raw & sf::softfloat_flag_infinite != 0 {
        flags |= ZE;
    }
    if raw & sf::softfloat_flag_overflow != 0 {
        flags |= OE;
    }
    if raw & sf::softfloat_flag_underflow != 0 {
        flags |= UE;
    }
    if raw & sf::softfloat_flag_inexact != 0 {
        flags |= PE;
    }
    (r, flags)
}

/// The SoftFloat rounding mode of [`with_env`]'s current environment, for the conversions
/// that take one explicitly.
fn current_round() -> u8 {
    // SAFETY: a read of a thread-local global.
    unsafe { sf::softfloat_roundingMode_read_helper() }
}

macro_rules! wrap {
    ($( $(#[$m:meta])* $name:ident($($a:ident: $t:ty),*) -> $r:ty; )*) => {$(
        $(#[$m])*
        #[inline]
        pub fn $name($($a: $t),*) -> $r {
            // SAFETY: see the module invariant.
            unsafe { sf::$name($($a),*) }
        }
    )*};
}

wrap! {
    /// f32 addition.
    f32_add(a: SF32, b: SF32) -> SF32;
    /// f32 subtraction.
    f32_sub(a: SF32, b: SF32) -> SF32;
    /// f32 multiplication.
    f32_mul(a: SF32, b: SF32) -> SF32;
    /// f32 division.
    f32_div(a: SF32, b: SF32) -> SF32;
    /// f32 square root.
    f32_sqrt(a: SF32) -> SF32;
    /// f32 fused multiply-add.
    f32_mulAdd(a: SF32, b: SF32, c: SF32) -> SF32;
    /// Quiet equality (invalid only for signaling NaNs).
    f32_eq(a: SF32, b: SF32) -> bool;
    /// Signaling less-than (invalid for any NaN).
    f32_lt(a: SF32, b: SF32) -> bool;
    /// Signaling less-or-equal.
    f32_le(a: SF32, b: SF32) -> bool;
    /// Signaling equality.
    f32_eq_signaling(a: SF32, b: SF32) -> bool;
    /// Quiet less-than.
    f32_lt_quiet(a: SF32, b: SF32) -> bool;
    /// Quiet less-or-equal.
    f32_le_quiet(a: SF32, b: SF32) -> bool;
    /// f32 to f64 (exact).
    f32_to_f64(a: SF32) -> SF64;
    /// f32 to 80-bit (exact).
    f32_to_extF80(a: SF32) -> ExtF80;
    /// f64 addition.
    f64_add(a: SF64, b: SF64) -> SF64;
    /// f64 subtraction.
    f64_sub(a: SF64, b: SF64) -> SF64;
    /// f64 multiplication.
    f64_mul(a: SF64, b: SF64) -> SF64;
    /// f64 division.
    f64_div(a: SF64, b: SF64) -> SF64;
    /// f64 square root.
    f64_sqrt(a: SF64) -> SF64;
    /// f64 fused multiply-add.
    f64_mulAdd(a: SF64, b: SF64, c: SF64) -> SF64;
    /// Quiet equality.
    f64_eq(a: SF64, b: SF64) -> bool;
    /// Signaling less-than.
    f64_lt(a: SF64, b: SF64) -> bool;
    /// Signaling less-or-equal.
    f64_le(a: SF64, b: SF64) -> bool;
    /// Signaling equality.
    f64_eq_signaling(a: SF64, b: SF64) -> bool;
    /// Quiet less-than.
    f64_lt_quiet(a: SF64, b: SF64) -> bool;
    /// Quiet less-or-equal.
    f64_le_quiet(a: SF64, b: SF64) -> bool;
    /// f64 to f32, rounded.
    f64_to_f32(a: SF64) -> SF32;
    /// f64 to 80-bit (exact).
    f64_to_extF80(a: SF64) -> ExtF80;
    /// i32 to f32, rounded.
    i32_to_f32(a: i32) -> SF32;
    /// i32 to f64 (exact).
    i32_to_f64(a: i32) -> SF64;
    /// i32 to 80-bit (exact).
    i32_to_extF80(a: i32) -> ExtF80;
    /// i64 to f32, rounded.
    i64_to_f32(a: i64) -> SF32;
    /// i64 to f64, rounded.
    i64_to_f64(a: i64) -> SF64;
    /// i64 to 80-bit (exact).
    i64_to_extF80(a: i64) -> ExtF80;
    /// 80-bit addition, rounded to the environment's precision.
    extF80_add(a: ExtF80, b: ExtF80) -> ExtF80;
    /// 80-bit subtraction.
    extF80_sub(a: ExtF80, b: ExtF80) -> ExtF80;
    /// 80-bit multiplication.
    extF80_mul(a: ExtF80, b: ExtF80) -> ExtF80;
    /// 80-bit division.
    extF80_div(a: ExtF80, b: ExtF80) -> ExtF80;
    /// 80-bit IEEE remainder (FPREM1's result).
    extF80_rem(a: ExtF80, b: ExtF80) -> ExtF80;
    /// 80-bit square root.
    extF80_sqrt(a: ExtF80) -> ExtF80;
    /// Quiet equality.
    extF80_eq(a: ExtF80, b: ExtF80) -> bool;
    /// Signaling less-than.
    extF80_lt(a: ExtF80, b: ExtF80) -> bool;
    /// Signaling less-or-equal.
    extF80_le(a: ExtF80, b: ExtF80) -> bool;
    /// Quiet less-than.
    extF80_lt_quiet(a: ExtF80, b: ExtF80) -> bool;
    /// Quiet less-or-equal.
    extF80_le_quiet(a: ExtF80, b: ExtF80) -> bool;
    /// 80-bit to f32, rounded.
    extF80_to_f32(a: ExtF80) -> SF32;
    /// 80-bit to f64, rounded.
    extF80_to_f64(a: ExtF80) -> SF64;
}

/// f32 to i32 in the current rounding mode (invalid and 0x8000_0000 when out of range).
pub fn f32_to_i32(a: SF32) -> i32 {
    // SAFETY: see the module invariant.
    unsafe { sf::f32_to_i32(a, current_round(), true) as i32 }
}
/// f32 to i64 in the current rounding mode.
pub fn f32_to_i64(a: SF32) -> i64 {
    // SAFETY: see the module invariant.
    unsafe { sf::f32_to_i64(a, current_round(), true) }
}
/// f64 to i32 in the current rounding mode.
pub fn f64_to_i32(a: SF64) -> i32 {
    // SAFETY: see the module invariant.
    unsafe { sf::f64_to_i32(a, current_round(), true) as i32 }
}
/// f64 to i64 in the current rounding mode.
pub fn f64_to_i64(a: SF64) -> i64 {
    // SAFETY: see the module invariant.
    unsafe { sf::f64_to_i64(a, current_round(), true) }
}
/// 80-bit to i32 in the current rounding mode.
pub fn extF80_to_i32(a: ExtF80) -> i32 {
    // SAFETY: see the module invariant.
    unsafe { sf::extF80_to_i32(a, current_round(), true) as i32 }
}
/// 80-bit to i64 in the current rounding mode.
pub fn extF80_to_i64(a: ExtF80) -> i64 {
    // SAFETY: see the module invariant.
    unsafe { sf::extF80_to_i64(a, current_round(), true) }
}
/// f32 rounded to an integral value in the current rounding mode; `exact` raises inexact.
pub fn f32_round_to_int(a: SF32, exact: bool) -> SF32 {
    // SAFETY: see the module invariant.
    unsafe { sf::f32_roundToInt(a, current_round(), exact) }
}
/// f64 rounded to an integral value in the current rounding mode.
pub fn f64_round_to_int(a: SF64, exact: bool) -> SF64 {
    // SAFETY: see the module invariant.
    unsafe { sf::f64_roundToInt(a, current_round(), exact) }
}
/// 80-bit rounded to an integral value in the current rounding mode.
pub fn extF80_round_to_int(a: ExtF80, exact: bool) -> ExtF80 {
    // SAFETY: see the module invariant.
    unsafe { sf::extF80_roundToInt(a, current_round(), exact) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_modes_and_flags() {
        let one = SF32 {
            v: 1.0f32.to_bits(),
        };
        let three = SF32 {
            v: 3.0f32.to_bits(),
        };
        let env = |round| Env {
            round,
            precision: 80,
        };
        let (q, f) = with_env(env(Round::Nearest), || f32_div(one, three));
        assert_eq!(f32::from_bits(q.v), 1.0f32 / 3.0);
        assert_eq!(f, PE);
        let (qd, _) = with_env(env(Round::Down), || f32_div(one, three));
        let (qu, _) = with_env(env(Round::Up), || f32_div(one, three));
        assert_eq!(qu.v, qd.v + 1);
        let zero = SF32 { v: 0 };
        let (_, f) = with_env(env(Round::Nearest), || f32_div(one, zero));
        assert_eq!(f, ZE);
    }
}

// ---- x87 transcendentals: 128-bit quad precision (used by crate::x87's FSIN, FPATAN,
// FYL2X... which evaluate in binary128 and round once to 80 bits) ----

pub use sf::float128_t as SF128;

wrap! {
    /// f128 addition.
    f128_add(a: SF128, b: SF128) -> SF128;
    /// f128 subtraction.
    f128_sub(a: SF128, b: SF128) -> SF128;
    /// f128 multiplication.
    f128_mul(a: SF128, b: SF128) -> SF128;
    /// f128 division.
    f128_div(a: SF128, b: SF128) -> SF128;
    /// f128 square root.
    f128_sqrt(a: SF128) -> SF128;
    /// 80-bit to f128 (exact).
    extF80_to_f128(a: ExtF80) -> SF128;
    /// f128 to 80-bit, rounded to the environment's mode and precision.
    f128_to_extF80(a: SF128) -> ExtF80;
    /// i64 to f128 (exact).
    i64_to_f128(a: i64) -> SF128;
}
