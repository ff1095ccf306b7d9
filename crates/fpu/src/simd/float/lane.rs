//! One element of an SSE floating-point operation: IEEE formats as raw bits, the MXCSR
//! environment (RC, DAZ, FTZ, masks) and the x86 rules SoftFloat leaves to its caller (NaN
//! selection, denormal operands, flush-to-zero, the order in which flags become visible).

use super::hard;
use crate::simd::SimdFault;
use crate::soft::{self, Env, Flags, Round, DE, IE, OE, PE, SF32, SF64, UE, ZE};
use crate::state::Fpu;

/// MXCSR.DAZ: denormal source operands read as zero.
const DAZ: u32 = 1 << 6;
/// MXCSR.FTZ: masked underflows return zero.
const FTZ: u32 = 1 << 15;
/// The pre-computation exceptions (SDM Vol. 1 11.5.2): found from the operands alone.
pub(crate) const PRE: Flags = IE | DE | ZE;

/// The width of one element.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum W {
    /// Single precision (f32, PS/SS forms).
    S,
    /// Double precision (f64, PD/SD forms).
    D,
}

impl W {
    /// Bits in one element.
    pub(crate) fn bits(self) -> usize {
        match self {
            W::S => 32,
            W::D => 64,
        }
    }
    /// Elements in an XMM register.
    pub(crate) fn lanes(self) -> usize {
        128 / self.bits()
    }
    fn mask(self) -> u64 {
        u64::MAX >> (64 - self.bits())
    }
    /// The sign bit.
    pub(crate) fn sign(self) -> u64 {
        1 << (self.bits() - 1)
    }
    fn exp(self) -> u64 {
        match self {
            W::S => 0x7f80_0000,
            W::D => 0x7ff0_0000_0000_0000,
        }
    }
    fn frac(self) -> u64 {
        match self {
            W::S => 0x007f_ffff,
            W::D => 0x000f_ffff_ffff_ffff,
        }
    }
    /// The quiet bit of a NaN (the top fraction bit).
    pub(crate) fn quiet(self) -> u64 {
        match self {
            W::S => 1 << 22,
            W::D => 1 << 51,
        }
    }
    /// The "QNaN floating-point indefinite" of a masked invalid operation.
    pub(crate) fn indefinite(self) -> u64 {
        match self {
            W::S => 0xffc0_0000,
            W::D => 0xfff8_0000_0000_0000,
        }
    }
    /// Positive infinity.
    pub(crate) fn inf(self) -> u64 {
        self.exp()
    }
    /// True for a NaN, quiet or signaling.
    pub(crate) fn is_nan(self, x: u64) -> bool {
        x & self.exp() == self.exp() && x & self.frac() != 0
    }
    /// True for a signaling NaN.
    pub(crate) fn is_snan(self, x: u64) -> bool {
        self.is_nan(x) && x & self.quiet() == 0
    }
    /// True for an infinity of either sign.
    pub(crate) fn is_inf(self, x: u64) -> bool {
        x & !self.sign() == self.exp()
    }
    /// True for a denormal (nonzero with a zero exponent).
    pub(crate) fn is_denormal(self, x: u64) -> bool {
        x & self.exp() == 0 && x & self.frac() != 0
    }
    /// True for ±0.
    pub(crate) fn is_zero(self, x: u64) -> bool {
        x & !self.sign() == 0
    }
    /// Element `i` of a 128-bit value.
    pub(crate) fn get(self, v: u128, i: usize) -> u64 {
        (v >> (i * self.bits())) as u64 & self.mask()
    }
    /// Replaces element `i` of a 128-bit value.
    pub(crate) fn set(self, v: &mut u128, i: usize, x: u64) {
        let sh = i * self.bits();
        *v = *v & !(u128::from(self.mask()) << sh) | u128::from(x & self.mask()) << sh;
    }
    /// An order key for non-NaN values: equal keys for ±0, monotonic in the value. Pure
    /// integer arithmetic so that comparisons never depend on the host's MXCSR.
    pub(crate) fn key(self, x: u64) -> i128 {
        let mag = i128::from(x & !self.sign());
        if x & self.sign() != 0 {
            -mag
        } else {
            mag
        }
    }
}

/// The MXCSR as the environment of one instruction.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Mx(pub(crate) u32);

impl Mx {
    /// The rounding mode of MXCSR.RC.
    pub(crate) fn round(self) -> Round {
        Round::from_rc(self.0 >> 13)
    }
    /// The SoftFloat environment for MXCSR.RC.
    pub(crate) fn env(self) -> Env {
        Env {
            round: self.round(),
            precision: 80,
        }
    }
    /// Reads a source operand: a denormal becomes a signed zero under DAZ, and otherwise
    /// reports the denormal-operand condition DE.
    pub(crate) fn src(self, w: W, x: u64) -> (u64, Flags) {
        if !w.is_denormal(x) {
            (x, 0)
        } else if self.0 & DAZ != 0 {
            (x & w.sign(), 0)
        } else {
            (x, DE)
        }
    }
    /// Applies the post-computation rules SoftFloat does not know to a computed result `r`
    /// with SoftFloat's flags `f` (SDM Vol. 1 11.5.2.4, 11.5.2.5, 10.2.3.3):
    /// - SoftFloat reports underflow only for tiny *inexact* results (the masked
    ///   definition); with UE unmasked x86 reports every tiny result;
    /// - with OE or UE unmasked, PE means that rounding to the destination precision *with
    ///   unbounded exponent* was inexact (`exact` tells, computed only then), not that the
    ///   delivered (overflowed or denormalised) value was;
    /// - with UE masked and FTZ set, a tiny result becomes a signed zero with UE and PE.
    pub(crate) fn result(
        self,
        w: W,
        r: u64,
        f: Flags,
        exact: impl FnOnce() -> bool,
    ) -> (u64, Flags) {
        let unmasked = !(self.0 >> 7) & 0x3f;
        let pe = |exact: bool| if exact { 0 } else { PE };
        if f & OE != 0 {
            return if unmasked & OE != 0 {
                (r, f & !PE | pe(exact()))
            } else {
                (r, f)
            };
        }
        let tiny = f & UE != 0 || w.is_denormal(r);
        if !tiny {
            (r, f)
        } else if unmasked & UE != 0 {
            (r, f & !PE | UE | pe(exact()))
        } else if self.0 & FTZ != 0 {
            (r & w.sign(), f | UE | PE)
        } else {
            (r, f)
        }
    }
}

/// True when `a op b` (non-NaN operands of width `w`, after DAZ) is exactly representable
/// at `w`'s precision if the exponent range were unbounded. Computed one format wider
/// (f64 for singles, 80-bit for doubles), whose range holds every such result: an inexact
/// wider result means more significant bits than the wider format has, so certainly more
/// than `w` has; an exact one is checked for bits below `w`'s precision.
pub(crate) fn exact_unbounded(w: W, op: Op, a: u64, b: u64) -> bool {
    let env = Env::DEFAULT;
    match w {
        W::S => {
            let x = soft::f32_to_f64(SF32 { v: a as u32 });
            let y = soft::f32_to_f64(SF32 { v: b as u32 });
            let (r, f) = soft::with_env(env, || match op {
                Op::Add => soft::f64_add(x, y),
                Op::Sub => soft::f64_sub(x, y),
                Op::Mul => soft::f64_mul(x, y),
                Op::Div => soft::f64_div(x, y),
            });
            f & PE == 0 && r.v & ((1 << 29) - 1) == 0
        }
        W::D => {
            let x = soft::f64_to_extF80(SF64 { v: a });
            let y = soft::f64_to_extF80(SF64 { v: b });
            let (r, f) = soft::with_env(env, || match op {
                Op::Add => soft::extF80_add(x, y),
                Op::Sub => soft::extF80_sub(x, y),
                Op::Mul => soft::extF80_mul(x, y),
                Op::Div => soft::extF80_div(x, y),
            });
            f & PE == 0 && r.signif & ((1 << 11) - 1) == 0
        }
    }
}

/// True when the double `a` has at most single precision's 24 significant bits (the
/// unbounded-exponent exactness of narrowing it).
pub(crate) fn double_fits_single(a: u64) -> bool {
    soft::f64_to_extF80(SF64 { v: a }).signif & ((1 << 40) - 1) == 0
}

/// The result of an operation with NaN operands `a` (the destination's element) and `b`:
/// the first NaN quieted, with IE for any signaling NaN (SDM Vol. 1 table 4-7).
pub(crate) fn nan2(w: W, a: u64, b: u64) -> (u64, Flags) {
    let f = if w.is_snan(a) || w.is_snan(b) { IE } else { 0 };
    let r = if w.is_nan(a) { a } else { b };
    (r | w.quiet(), f)
}

/// A two-operand arithmetic operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    /// a + b.
    Add,
    /// a - b.
    Sub,
    /// a * b.
    Mul,
    /// a / b.
    Div,
}

/// `a op b` under MXCSR, with the flags it raises.
///
/// Takes the host-FPU fast path when MXCSR and the operands allow it (see [`super::hard`]);
/// the flags returned then are none, as the only one the operation could raise, PE, is
/// already set and masked.
pub(crate) fn binop(mx: Mx, w: W, op: Op, a: u64, b: u64) -> (u64, Flags) {
    if hard::usable(mx) {
        if let Some(r) = hard::binop(w, op, a, b) {
            #[cfg(test)]
            hard::test_hooks::taken();
            return (r, 0);
        }
    }
    let (a, fa) = mx.src(w, a);
    let (b, fb) = mx.src(w, b);
    if w.is_nan(a) || w.is_nan(b) {
        // A NaN operand takes precedence over DE (SDM Vol. 1 11.5.2, exception priority).
        return nan2(w, a, b);
    }
    let (r, f) = soft::with_env(mx.env(), || match w {
        W::S => {
            let (x, y) = (SF32 { v: a as u32 }, SF32 { v: b as u32 });
            u64::from(
                match op {
                    Op::Add => soft::f32_add(x, y),
                    Op::Sub => soft::f32_sub(x, y),
                    Op::Mul => soft::f32_mul(x, y),
                    Op::Div => soft::f32_div(x, y),
                }
                .v,
            )
        }
        W::D => {
            let (x, y) = (SF64 { v: a }, SF64 { v: b });
            match op {
                Op::Add => soft::f64_add(x, y),
                Op::Sub => soft::f64_sub(x, y),
                Op::Mul => soft::f64_mul(x, y),
                Op::Div => soft::f64_div(x, y),
            }
            .v
        }
    });
    // Invalid and divide-by-zero outrank the denormal-operand exception.
    let f = if f & (IE | ZE) != 0 { f } else { f | fa | fb };
    mx.result(w, r, f, || exact_unbounded(w, op, a, b))
}

/// The square root of `a` under MXCSR, on the host FPU when [`super::hard`] allows.
pub(crate) fn sqrt(mx: Mx, w: W, a: u64) -> (u64, Flags) {
    if hard::usable(mx) {
        if let Some(r) = hard::sqrt(w, a) {
            #[cfg(test)]
            hard::test_hooks::taken();
            return (r, 0);
        }
    }
    let (a, fa) = mx.src(w, a);
    if w.is_nan(a) {
        return nan2(w, a, a);
    }
    let (r, f) = soft::with_env(mx.env(), || match w {
        W::S => u64::from(soft::f32_sqrt(SF32 { v: a as u32 }).v),
        W::D => soft::f64_sqrt(SF64 { v: a }).v,
    });
    let f = if f & IE != 0 { f } else { f | fa };
    // A square root can neither overflow nor underflow.
    mx.result(w, r, f, || true)
}

/// Makes an instruction's collected flags architectural (SDM Vol. 1 11.5.2): when any lane
/// has an unmasked pre-computation exception (IE, DE, ZE), only the pre-computation flags
/// of all lanes are recorded; otherwise all flags are. `Ok` means the result may be
/// written; `Err(Xm)` that an unmasked exception leaves the destination unchanged.
pub(crate) fn commit(fpu: &mut Fpu, flags: Flags) -> Result<(), SimdFault> {
    let unmasked = !(fpu.mxcsr >> 7) & 0x3f;
    let pre = flags & PRE;
    if pre & unmasked != 0 {
        fpu.mxcsr |= pre;
        return Err(SimdFault::Xm);
    }
    fpu.mxcsr |= flags & 0x3f;
    if flags & unmasked != 0 {
        Err(SimdFault::Xm)
    } else {
        Ok(())
    }
}
