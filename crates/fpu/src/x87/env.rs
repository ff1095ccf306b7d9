//! The x87 environment and state images (FNSTENV/FLDENV, FNSAVE/FRSTOR), FNINIT, and
//! FXSAVE's abridged tag word. The translator runs those instructions itself (they need
//! the operand-size and mode dependent layouts) with these functions.

use super::value::tag_of;
use crate::state::{F80, X87};

/// The full tag word as FNSTENV/FNSAVE report it: empty stays empty, every other tag is
/// recomputed from the register's contents (MMX writes registers without retagging).
fn reported_tags(x87: &X87) -> u16 {
    (0..8).fold(0, |t, r| {
        let tag = if x87.tag(r) == 3 {
            3
        } else {
            tag_of(x87.regs[r])
        };
        t | tag << (2 * r)
    })
}

/// The FNSTENV image: 14 bytes with a 16-bit operand size, 28 with a 32-bit one, in the
/// real-mode (linear FIP/FDP split around FOP) or protected-mode (offsets and selectors)
/// format of SDM Vol. 1 figures 8-9..8-12. Reserved fields read as ones, as hardware
/// writes them.
pub fn store_env(x87: &X87, op32: bool, protected: bool) -> Vec<u8> {
    let tags = reported_tags(x87);
    let fop = x87.fop & 0x7ff;
    let mut out = Vec::with_capacity(28);
    if op32 {
        let mut dw = |v: u32| out.extend_from_slice(&v.to_le_bytes());
        let hi = 0xffff_0000;
        dw(hi | u32::from(x87.fcw));
        dw(hi | u32::from(x87.fsw));
        dw(hi | u32::from(tags));
        if protected {
            dw(x87.fip as u32);
            dw(u32::from(x87.fcs) | u32::from(fop) << 16);
            dw(x87.fdp as u32);
            dw(hi | u32::from(x87.fds));
        } else {
            dw(hi | (x87.fip as u32 & 0xffff));
            dw((x87.fip as u32 >> 16) << 12 | u32::from(fop));
            dw(hi | (x87.fdp as u32 & 0xffff));
            dw((x87.fdp as u32 >> 16) << 12);
        }
    } else {
        let mut w = |v: u16| out.extend_from_slice(&v.to_le_bytes());
        w(x87.fcw);
        w(x87.fsw);
        w(tags);
        if protected {
            w(x87.fip as u16);
            w(x87.fcs);
            w(x87.fdp as u16);
            w(x87.fds);
        } else {
            w(x87.fip as u16);
            w(((x87.fip >> 16) as u16 & 0xf) << 12 | fop);
            w(x87.fdp as u16);
            w(((x87.fdp >> 16) as u16 & 0xf) << 12);
        }
    }
    out
}

/// What FNSTENV does after storing the environment: mask all exceptions (SDM FSTENV).
pub fn after_fstenv(x87: &mut X87) {
    x87.fcw |= 0x3f;
}

/// FLDENV: loads an image in [`store_env`]'s layout. Tags other than empty are recomputed
/// from the registers; ES and B are recomputed from the loaded flags and masks, as
/// hardware does.
pub fn load_env(x87: &mut X87, bytes: &[u8], op32: bool, protected: bool) {
    let field = |i: usize| -> u32 {
        if op32 {
            u32::from_le_bytes(bytes[4 * i..4 * i + 4].try_into().expect("4 bytes"))
        } else {
            u32::from(u16::from_le_bytes([bytes[2 * i], bytes[2 * i + 1]]))
        }
    };
    x87.fcw = super::stack::fcw_value(field(0) as u16);
    x87.fsw = field(1) as u16;
    let tags = field(2) as u16;
    x87.ftw = (0..8).fold(0, |t, r| {
        let tag = if (tags >> (2 * r)) & 3 == 3 {
            3
        } else {
            tag_of(x87.regs[r])
        };
        t | tag << (2 * r)
    });
    let (f3, f4, f5, f6) = (field(3), field(4), field(5), field(6));
    if protected {
        x87.fip = u64::from(f3);
        x87.fcs = f4 as u16;
        x87.fop = if op32 { (f4 >> 16) as u16 & 0x7ff } else { 0 };
        x87.fdp = u64::from(f5);
        x87.fds = f6 as u16;
    } else {
        let wide = if op32 { 0xffff } else { 0xf };
        x87.fip = u64::from((f3 & 0xffff) | ((f4 >> 12) & wide) << 16);
        x87.fop = f4 as u16 & 0x7ff;
        x87.fdp = u64::from((f5 & 0xffff) | ((f6 >> 12) & wide) << 16);
        x87.fcs = 0;
        x87.fds = 0;
    }
    x87.update_es();
}

/// FNSAVE's image: the environment, then ST(0)..ST(7) in 80-bit format (94 or 108
/// bytes). The caller reinitialises with [`finit`] once the store has succeeded.
pub fn fsave(x87: &X87, op32: bool, protected: bool) -> Vec<u8> {
    let mut out = store_env(x87, op32, protected);
    for i in 0..8 {
        out.extend_from_slice(&x87.regs[x87.phys(i)].to_bytes());
    }
    out
}

/// FRSTOR: loads a [`fsave`] image.
pub fn frstor(x87: &mut X87, bytes: &[u8], op32: bool, protected: bool) {
    let env = if op32 { 28 } else { 14 };
    // The registers first: the tags are recomputed from them.
    let o = if op32 { 4 } else { 2 };
    let top = usize::from(u16::from_le_bytes([bytes[o], bytes[o + 1]]) >> 11) & 7;
    for i in 0..8 {
        let b: &[u8; 10] = bytes[env + 10 * i..env + 10 * i + 10]
            .try_into()
            .expect("10 bytes");
        x87.regs[(top + i) & 7] = F80::from_bytes(b);
    }
    load_env(x87, bytes, op32, protected);
}

/// FNINIT (and FNSAVE's reinitialisation): control word 0x037F, status 0, all tags empty,
/// instruction/data pointers and opcode cleared; the registers keep their contents.
pub fn finit(x87: &mut X87) {
    *x87 = X87 {
        regs: x87.regs,
        ..X87::default()
    };
}

/// FXSAVE's abridged tag byte: bit i set when physical register i is not empty.
pub fn abridged_tag(ftw: u16) -> u8 {
    (0..8).fold(0, |t, r| t | (u8::from((ftw >> (2 * r)) & 3 != 3) << r))
}

/// FXRSTOR's full tag word from an abridged tag byte: the non-empty registers' tags are
/// recomputed from their contents.
pub fn full_tag(x87: &X87, abridged: u8) -> u16 {
    (0..8).fold(0, |t, r| {
        let tag = if abridged & (1 << r) == 0 {
            3
        } else {
            tag_of(x87.regs[r])
        };
        t | tag << (2 * r)
    })
}
