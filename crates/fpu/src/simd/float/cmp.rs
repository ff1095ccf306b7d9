//! Floating-point comparisons: the CMPPS/PD/SS/SD masks and COMIS/UCOMIS's EFLAGS.

use iced_x86::Code;

use super::lane::{self, Mx, W};
use super::{source, xmm};
use crate::operands::Operands;
use crate::simd::SimdFault;
use crate::soft::{Flags, IE};
use crate::state::{Fpu, IO_FLAGS};

/// How two values compare.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Order {
    Less,
    Equal,
    Greater,
    Unordered,
}

/// Compares `a` and `b` after DAZ; `signaling` makes a QNaN raise IE as well as a SNaN.
/// DE is reported only for ordered operands: a NaN takes precedence.
fn compare(mx: Mx, w: W, a: u64, b: u64, signaling: bool) -> (Order, Flags) {
    let (x, fa) = mx.src(w, a);
    let (y, fb) = mx.src(w, b);
    if w.is_nan(x) || w.is_nan(y) {
        let invalid = signaling || w.is_snan(x) || w.is_snan(y);
        return (Order::Unordered, if invalid { IE } else { 0 });
    }
    let order = match w.key(x).cmp(&w.key(y)) {
        std::cmp::Ordering::Less => Order::Less,
        std::cmp::Ordering::Equal => Order::Equal,
        std::cmp::Ordering::Greater => Order::Greater,
    };
    (order, fa | fb)
}

/// CMPxx element with predicate imm8[2:0] (the legacy encodings define only EQ, LT, LE,
/// UNORD, NEQ, NLT, NLE, ORD and the processor ignores imm8[7:3]): all ones when true.
/// LT, LE, NLT and NLE are signaling (IE for a QNaN too).
pub(super) fn cmp(mx: Mx, w: W, a: u64, b: u64, imm: u8) -> (u64, Flags) {
    let pred = imm & 7;
    let (o, f) = compare(mx, w, a, b, matches!(pred, 1 | 2 | 5 | 6));
    let lt = o == Order::Less;
    let eq = o == Order::Equal;
    let un = o == Order::Unordered;
    let t = match pred {
        0 => eq,
        1 => lt,
        2 => lt || eq,
        3 => un,
        4 => !eq,
        5 => !lt,
        6 => !(lt || eq),
        _ => !un,
    };
    (if t { u64::MAX } else { 0 }, f)
}

/// True for the instructions [`execute`] implements.
pub(super) fn claims(code: Code) -> bool {
    matches!(
        code,
        Code::Comiss_xmm_xmmm32
            | Code::Comisd_xmm_xmmm64
            | Code::Ucomiss_xmm_xmmm32
            | Code::Ucomisd_xmm_xmmm64
    )
}

/// COMISS/COMISD (signaling: IE for any NaN) and UCOMISS/UCOMISD (IE only for a SNaN):
/// ZF, PF, CF as for an unsigned integer compare, all three set when unordered; OF, SF and
/// AF cleared.
pub(super) fn execute(fpu: &mut Fpu, code: Code, ops: Operands) -> Option<Result<(), SimdFault>> {
    let (w, signaling) = match code {
        Code::Comiss_xmm_xmmm32 => (W::S, true),
        Code::Comisd_xmm_xmmm64 => (W::D, true),
        Code::Ucomiss_xmm_xmmm32 => (W::S, false),
        Code::Ucomisd_xmm_xmmm64 => (W::D, false),
        _ => return None,
    };
    Some((|| {
        let a = w.get(fpu.xmm128(xmm(ops, 0)?), 0);
        let b = w.get(source(fpu, ops, 1)?, 0);
        let (o, f) = compare(Mx(fpu.mxcsr), w, a, b, signaling);
        lane::commit(fpu, f)?;
        const CF: u64 = 1;
        const PF: u64 = 1 << 2;
        const ZF: u64 = 1 << 6;
        fpu.io[IO_FLAGS] = match o {
            Order::Unordered => ZF | PF | CF,
            Order::Greater => 0,
            Order::Less => CF,
            Order::Equal => ZF,
        };
        Ok(())
    })())
}
