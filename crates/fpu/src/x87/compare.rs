//! Comparisons (FCOM, FUCOM, FICOM, FCOMI, FUCOMI, FTST) and FXAM.

use core::cmp::Ordering;

use super::arith::Opnd;
use super::value::{classify, sign, unpack, Class};
use crate::soft::{Flags, DE, IE};
use crate::state::{F80, X87};

/// Compares two operands: None when unordered. `quiet` (FUCOM*) raises IE only for SNaNs;
/// the others raise it for any NaN. Unsupported encodings always raise IE.
pub(crate) fn compare(a: Opnd, b: Opnd, quiet: bool) -> (Option<Ordering>, Flags) {
    let (ca, cb) = (classify(a.v), classify(b.v));
    if ca == Class::Unsupported || cb == Class::Unsupported {
        return (None, IE);
    }
    if ca.is_nan() || cb.is_nan() {
        let signaling = ca == Class::SNaN || cb == Class::SNaN;
        return (None, if signaling || !quiet { IE } else { 0 });
    }
    let de = if a.denormal || b.denormal { DE } else { 0 };
    (Some(order(a.v, b.v)), de)
}

/// The numeric order of two non-NaN supported values (zeros of either sign are equal).
fn order(a: F80, b: F80) -> Ordering {
    let key = |v: F80| -> (i32, u64) {
        match classify(v) {
            Class::Zero => (i32::MIN, 0),
            Class::Inf => (i32::MAX, 0),
            _ => {
                let (m, e) = unpack(v);
                (e, m)
            }
        }
    };
    let (za, zb) = (classify(a) == Class::Zero, classify(b) == Class::Zero);
    let na = sign(a) && !za;
    let nb = sign(b) && !zb;
    match (na, nb) {
        (false, true) => Ordering::Greater,
        (true, false) => Ordering::Less,
        (false, false) => key(a).cmp(&key(b)),
        (true, true) => key(b).cmp(&key(a)),
    }
}

/// Writes a compare result to C3/C2/C0 (C1 cleared): > 000, < 001, = 100, unordered 111.
pub(crate) fn set_fsw(x: &mut X87, r: Option<Ordering>) {
    let (c3, c2, c0) = match r {
        Some(Ordering::Greater) => (false, false, false),
        Some(Ordering::Less) => (false, false, true),
        Some(Ordering::Equal) => (true, false, false),
        None => (true, true, true),
    };
    x.set_c320(c3, c2, c0);
}

/// A compare result as EFLAGS for FCOMI/FUCOMI: ZF, PF, CF like C3, C2, C0; OF, SF, AF
/// clear.
pub(crate) fn eflags(r: Option<Ordering>) -> u64 {
    const CF: u64 = 1;
    const PF: u64 = 1 << 2;
    const ZF: u64 = 1 << 6;
    match r {
        Some(Ordering::Greater) => 0,
        Some(Ordering::Less) => CF,
        Some(Ordering::Equal) => ZF,
        None => ZF | PF | CF,
    }
}

/// FXAM's classification of ST(0) (`None` when empty) into C3, C2, C0, with C1 the sign.
pub(crate) fn fxam(x: &mut X87, v: Option<F80>) {
    let raw = x.regs[x.phys(0)];
    x.cc(super::stack::C1, sign(raw));
    let (c3, c2, c0) = match v.map(classify) {
        None => (true, false, true),
        Some(Class::Unsupported) => (false, false, false),
        Some(Class::QNaN | Class::SNaN) => (false, false, true),
        Some(Class::Normal) => (false, true, false),
        Some(Class::Inf) => (false, true, true),
        Some(Class::Zero) => (true, false, false),
        Some(Class::Denormal) => (true, true, false),
    };
    x.set_c320(c3, c2, c0);
}
