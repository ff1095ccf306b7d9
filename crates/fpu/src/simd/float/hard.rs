//! The host-FPU fast path ("hardfloat", after QEMU's softfloat): an element computed with
//! the host's own IEEE arithmetic when that provably gives SoftFloat's result and changes no
//! MXCSR flag, so the SoftFloat call (and its thread-local environment) is skipped.
//!
//! # When it applies
//! MXCSR must have RC = nearest, FTZ = 0, DAZ = 0, PM = 1 (precision masked) and PE = 1
//! (the inexact flag already set): then an inexact result is invisible, since its flag is
//! already set and masked. Everything else an operation could raise is excluded element by
//! element, before or after computing:
//! - operands are ±0 or normal: no NaN (IE, NaN selection), no infinity (IE for inf - inf,
//!   0 * inf...), no denormal (DE);
//! - DIV: a nonzero divisor (no ZE, no 0/0); SQRT: +0 or a positive normal (no IE; -0 takes
//!   the slow path);
//! - the result must be finite (no OE: in round-to-nearest an overflow always gives an
//!   infinity) and of magnitude *above* the smallest normal. Underflow is detected after
//!   rounding with an unbounded exponent (SDM Vol. 1 4.9.1.5; SoftFloat's
//!   `tininess_afterRounding`), so a result delivered as exactly ±MIN_NORMAL may still be
//!   tiny and raise UE: it takes the slow path;
//! - a zero result is accepted only when it is exact by construction: `x + (-x)`, `x - x`,
//!   a product with a zero factor, a zero dividend. The host then gives IEEE's sign of zero
//!   (+0 for an exact cancellation in round-to-nearest), which x86 and SoftFloat share.
//!
//! The unmasked-exception rules of `lane::Mx::result` apply only to tiny or overflowing
//! results, and `lane::commit` sees no new flag, so the masks other than PM are irrelevant.
//!
//! Per-element use is exact for packed instructions too: an element that passes contributes
//! no flag that is not already set, and the others go through SoftFloat as before, their
//! flags combined as usual.
//!
//! The host arithmetic is Rust's `f32`/`f64` operators (correctly rounded IEEE operations,
//! SSE2 on x86-64) under the host thread's MXCSR, which crane86 never changes from the
//! default (round to nearest, no FTZ/DAZ). Nothing here touches the host MXCSR.

use super::lane::{Mx, Op, W};

/// MXCSR.RC, the rounding control.
const RC: u32 = 3 << 13;
/// MXCSR.FTZ.
const FTZ: u32 = 1 << 15;
/// MXCSR.DAZ.
const DAZ: u32 = 1 << 6;
/// MXCSR.PM, the precision exception mask.
const PM: u32 = 1 << 12;
/// MXCSR.PE, the sticky precision (inexact) flag.
const PE: u32 = 1 << 5;

/// True when MXCSR allows the fast path (see the module documentation).
#[inline]
pub(crate) fn usable(mx: Mx) -> bool {
    #[cfg(test)]
    if test_hooks::DISABLED.get() {
        return false;
    }
    mx.0 & (RC | FTZ | DAZ | PM | PE) == PM | PE
}

/// The magnitude bits of the smallest positive normal and of infinity, per width.
#[inline]
fn limits(w: W) -> (u64, u64) {
    match w {
        W::S => (0x0080_0000, 0x7f80_0000),
        W::D => (0x0010_0000_0000_0000, 0x7ff0_0000_0000_0000),
    }
}

/// True for ±0 and the normal numbers.
#[inline]
fn plain(w: W, x: u64) -> bool {
    let (min, inf) = limits(w);
    let m = x & !w.sign();
    m == 0 || m.wrapping_sub(min) < inf - min
}

/// True for a result that cannot have raised OE or UE: finite and above the smallest
/// normal in magnitude (NaN magnitudes are above infinity's, so a NaN fails too).
#[inline]
fn safe_result(w: W, r: u64) -> bool {
    let (min, inf) = limits(w);
    let m = r & !w.sign();
    m > min && m < inf
}

/// `a op b` on the host, when that equals SoftFloat's result and raises at most PE.
/// The caller has checked [`usable`].
#[inline]
pub(crate) fn binop(w: W, op: Op, a: u64, b: u64) -> Option<u64> {
    if !plain(w, a) || !plain(w, b) {
        return None;
    }
    if op == Op::Div && w.is_zero(b) {
        // ZE or 0/0's IE. (The result test below would also reject x/0 = inf and 0/0 =
        // NaN; this states the rule.)
        return None;
    }
    let r = match w {
        W::S => {
            let (x, y) = (f32::from_bits(a as u32), f32::from_bits(b as u32));
            u64::from(
                match op {
                    Op::Add => x + y,
                    Op::Sub => x - y,
                    Op::Mul => x * y,
                    Op::Div => x / y,
                }
                .to_bits(),
            )
        }
        W::D => {
            let (x, y) = (f64::from_bits(a), f64::from_bits(b));
            match op {
                Op::Add => x + y,
                Op::Sub => x - y,
                Op::Mul => x * y,
                Op::Div => x / y,
            }
            .to_bits()
        }
    };
    if safe_result(w, r) {
        return Some(r);
    }
    // A zero is exact only when the operands force it; a product or quotient of nonzero
    // numbers that rounds to zero underflowed. A sum of two floats is a multiple of the
    // smallest denormal, so it rounds to zero only when it is exactly zero: the ADD/SUB
    // tests hold whenever the host is in IEEE round-to-nearest, and are kept so that a zero
    // is never accepted on the strength of the host's MXCSR alone.
    let sign = w.sign();
    let exact_zero = w.is_zero(r)
        && match op {
            Op::Add => a ^ b == sign || (w.is_zero(a) && w.is_zero(b)),
            Op::Sub => a == b || (w.is_zero(a) && w.is_zero(b)),
            Op::Mul => w.is_zero(a) || w.is_zero(b),
            Op::Div => w.is_zero(a),
        };
    exact_zero.then_some(r)
}

/// The square root of `a` on the host, for +0 and positive normals (whose roots are normal
/// or +0: never tiny, never overflowing). The caller has checked [`usable`].
#[inline]
pub(crate) fn sqrt(w: W, a: u64) -> Option<u64> {
    if a & w.sign() != 0 || !plain(w, a) {
        return None;
    }
    Some(match w {
        W::S => u64::from(f32::from_bits(a as u32).sqrt().to_bits()),
        W::D => f64::from_bits(a).sqrt().to_bits(),
    })
}

/// A double narrowed to single precision on the host (CVTSD2SS, CVTPD2PS), under the same
/// rule as [`binop`]: a ±0 or normal operand, a result finite and above the smallest
/// normal, or a zero from a zero. The caller has checked [`usable`].
#[inline]
pub(crate) fn narrow(a: u64) -> Option<u64> {
    if !plain(W::D, a) {
        return None;
    }
    // `as` rounds to nearest, ties to even (the Rust reference, "numeric cast").
    let r = u64::from((f64::from_bits(a) as f32).to_bits());
    (safe_result(W::S, r) || W::D.is_zero(a)).then_some(r)
}

/// Test hooks: a per-thread switch that turns the fast path off, and a count of the
/// elements it completed.
#[cfg(test)]
pub(crate) mod test_hooks {
    use std::cell::Cell;

    thread_local! {
        /// When set, [`super::usable`] is false: every element goes through SoftFloat.
        pub(crate) static DISABLED: Cell<bool> = const { Cell::new(false) };
        /// Elements the fast path completed on this thread.
        pub(crate) static TAKEN: Cell<u64> = const { Cell::new(0) };
    }

    /// Counts one element completed by the fast path.
    pub(crate) fn taken() {
        TAKEN.set(TAKEN.get() + 1);
    }

    /// Runs `f` with the fast path off.
    pub(crate) fn without<T>(f: impl FnOnce() -> T) -> T {
        let old = DISABLED.replace(true);
        let r = f();
        DISABLED.set(old);
        r
    }
}
