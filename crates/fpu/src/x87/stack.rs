//! The register stack, tags, status-word bits and exception signalling.

use super::value::tag_of;
use crate::soft::{Env, Flags, Round};
use crate::state::{F80, X87};

/// FSW: stack fault.
pub(crate) const SF: u16 = 1 << 6;
/// FSW: exception summary.
pub(crate) const ES: u16 = 1 << 7;
/// FSW: condition code C0.
pub(crate) const C0: u16 = 1 << 8;
/// FSW: condition code C1.
pub(crate) const C1: u16 = 1 << 9;
/// FSW: condition code C2.
pub(crate) const C2: u16 = 1 << 10;
/// FSW: condition code C3.
pub(crate) const C3: u16 = 1 << 14;
/// FSW: busy, a copy of ES kept for 8087 compatibility.
pub(crate) const B: u16 = 1 << 15;
/// The six exception flags (and the six mask bits of FCW).
pub(crate) const EXC: u16 = 0x3f;
/// Exceptions detected before any result exists: an unmasked one leaves the destination
/// and TOP untouched.
pub(crate) const PRE: Flags = crate::soft::IE | crate::soft::DE | crate::soft::ZE;

/// The control word as hardware keeps a loaded value: bit 6 reads as one, bits 7, 13..15
/// as zero; the infinity-control bit 12 is kept though it has no effect.
pub(crate) fn fcw_value(v: u16) -> u16 {
    (v & 0x1f3f) | 0x40
}

impl X87 {
    /// The top-of-stack index.
    pub(crate) fn top(&self) -> usize {
        usize::from((self.fsw >> 11) & 7)
    }

    fn set_top(&mut self, t: usize) {
        self.fsw = (self.fsw & !(7 << 11)) | ((t as u16 & 7) << 11);
    }

    /// The physical register of ST(i).
    pub(crate) fn phys(&self, i: usize) -> usize {
        (self.top() + i) & 7
    }

    /// The tag of physical register `r`.
    pub(crate) fn tag(&self, r: usize) -> u16 {
        (self.ftw >> (2 * r)) & 3
    }

    fn set_tag(&mut self, r: usize, t: u16) {
        self.ftw = (self.ftw & !(3 << (2 * r))) | (t << (2 * r));
    }

    /// True when ST(i) is empty.
    pub(crate) fn is_empty(&self, i: usize) -> bool {
        self.tag(self.phys(i)) == 3
    }

    /// ST(i), or None when it is empty.
    pub(crate) fn get(&self, i: usize) -> Option<F80> {
        (!self.is_empty(i)).then(|| self.regs[self.phys(i)])
    }

    /// Writes ST(i) and its tag.
    pub(crate) fn set_st(&mut self, i: usize, v: F80) {
        let r = self.phys(i);
        self.regs[r] = v;
        self.set_tag(r, tag_of(v));
    }

    /// Marks ST(i) empty.
    pub(crate) fn free(&mut self, i: usize) {
        let r = self.phys(i);
        self.set_tag(r, 3);
    }

    /// Pushes `v` (the caller has checked for stack overflow).
    pub(crate) fn push(&mut self, v: F80) {
        self.set_top(self.top().wrapping_sub(1));
        self.set_st(0, v);
    }

    /// Empties ST(0) and increments TOP.
    pub(crate) fn pop(&mut self) {
        self.free(0);
        self.set_top(self.top() + 1);
    }

    /// Moves TOP by `d` without touching tags (FINCSTP/FDECSTP).
    pub(crate) fn rotate(&mut self, d: usize) {
        self.set_top(self.top().wrapping_add(d));
    }

    /// Sets or clears condition code bits `bits`.
    pub(crate) fn cc(&mut self, bits: u16, on: bool) {
        if on {
            self.fsw |= bits;
        } else {
            self.fsw &= !bits;
        }
    }

    /// Sets C3, C2, C0 from a compare/classify result (C1 is left alone).
    pub(crate) fn set_c320(&mut self, c3: bool, c2: bool, c0: bool) {
        self.cc(C3, c3);
        self.cc(C2, c2);
        self.cc(C0, c0);
    }

    /// Records exception flags (FSW bit order) and sets ES/B when one is unmasked. Returns
    /// the unmasked subset.
    pub(crate) fn raise(&mut self, flags: Flags) -> Flags {
        let f = flags as u16 & (EXC | SF);
        self.fsw |= f;
        let unmasked = f & EXC & !self.fcw;
        if unmasked != 0 {
            self.fsw |= ES | B;
        }
        Flags::from(unmasked)
    }

    /// True when exception `f` (a [`crate::soft`] flag) is masked.
    pub(crate) fn masked(&self, f: Flags) -> bool {
        self.fcw & f as u16 == f as u16
    }

    /// Signals stack underflow (IE with SF, C1 = 0). True when masked: the caller then
    /// delivers the QNaN indefinite.
    pub(crate) fn underflow(&mut self) -> bool {
        self.cc(C1, false);
        self.raise(crate::soft::IE | Flags::from(SF)) == 0
    }

    /// Signals stack overflow (IE with SF, C1 = 1). True when masked.
    pub(crate) fn overflow(&mut self) -> bool {
        self.cc(C1, true);
        self.raise(crate::soft::IE | Flags::from(SF)) == 0
    }

    /// Recomputes ES and B from the flags and masks (after FCW or FSW were loaded).
    pub(crate) fn update_es(&mut self) {
        if self.fsw & EXC & !self.fcw != 0 {
            self.fsw |= ES | B;
        } else {
            self.fsw &= !(ES | B);
        }
    }

    /// The rounding environment: RC always, PC when `pc` (only FADD/FSUB/FMUL/FDIV/FSQRT
    /// round to the precision-control setting).
    pub(crate) fn env(&self, pc: bool) -> Env {
        let precision = match (self.fcw >> 8) & 3 {
            0 if pc => 32,
            2 if pc => 64,
            _ => 80,
        };
        Env {
            round: Round::from_rc(u32::from(self.fcw >> 10)),
            precision,
        }
    }

    /// Delivers a computed result's flags: C1 = round-up indication, flags recorded. True
    /// when the destination may be written (no unmasked IE, DE or ZE).
    pub(crate) fn deliver(&mut self, flags: Flags, up: bool) -> bool {
        self.cc(C1, up && flags & crate::soft::PE != 0);
        self.raise(flags) & PRE == 0
    }
}
