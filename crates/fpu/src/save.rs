//! The FXSAVE image and the XSAVE legacy region and header (SDM Vol. 1 10.5 and 13.4).
//!
//! These are the formats operating systems use to switch FPU contexts; Linux uses XSAVE (or
//! FXSAVE without it) on every context switch, so they must round-trip every bit of state.

use crate::state::{Fpu, F80, MXCSR_MASK};
use crate::x87::{abridged_tag, full_tag};

/// Size of the FXSAVE image and of the XSAVE legacy region.
pub const FXSAVE_SIZE: usize = 512;
/// Offset of the XSAVE header (XSTATE_BV, XCOMP_BV) in an XSAVE area.
pub const XSAVE_HEADER: usize = 512;
/// Size of an XSAVE area holding x87 and SSE state (legacy region plus header).
pub const XSAVE_SIZE: usize = 576;

/// How much of the image an FXSAVE in the current mode writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// REX.W FXSAVE64/FXRSTOR64: 64-bit FIP and FDP, no selectors.
    pub wide: bool,
    /// XMM registers in the image: 16 in 64-bit mode, 8 outside it.
    pub xmm_regs: usize,
}

/// The x87 part of the image (bytes 0..24 and the registers at 32..160).
pub fn save_x87(fpu: &Fpu, layout: Layout, out: &mut [u8; FXSAVE_SIZE]) {
    let x = &fpu.x87;
    out[0..2].copy_from_slice(&x.fcw.to_le_bytes());
    out[2..4].copy_from_slice(&x.fsw.to_le_bytes());
    out[4] = abridged_tag(x.ftw);
    out[5] = 0;
    out[6..8].copy_from_slice(&x.fop.to_le_bytes());
    if layout.wide {
        out[8..16].copy_from_slice(&x.fip.to_le_bytes());
        out[16..24].copy_from_slice(&x.fdp.to_le_bytes());
    } else {
        out[8..12].copy_from_slice(&(x.fip as u32).to_le_bytes());
        out[12..14].copy_from_slice(&x.fcs.to_le_bytes());
        out[14..16].fill(0);
        out[16..20].copy_from_slice(&(x.fdp as u32).to_le_bytes());
        out[20..22].copy_from_slice(&x.fds.to_le_bytes());
        out[22..24].fill(0);
    }
    let top = usize::from((x.fsw >> 11) & 7);
    for i in 0..8 {
        let at = 32 + 16 * i;
        out[at..at + 10].copy_from_slice(&x.regs[(top + i) & 7].to_bytes());
        out[at + 10..at + 16].fill(0);
    }
}

/// MXCSR and MXCSR_MASK (bytes 24..32).
pub fn save_mxcsr(fpu: &Fpu, out: &mut [u8; FXSAVE_SIZE]) {
    out[24..28].copy_from_slice(&fpu.mxcsr.to_le_bytes());
    out[28..32].copy_from_slice(&MXCSR_MASK.to_le_bytes());
}

/// The XMM registers (bytes 160..160 + 16 * n).
pub fn save_xmm(fpu: &Fpu, layout: Layout, out: &mut [u8; FXSAVE_SIZE]) {
    for i in 0..layout.xmm_regs {
        let at = 160 + 16 * i;
        out[at..at + 8].copy_from_slice(&fpu.xmm[i][0].to_le_bytes());
        out[at + 8..at + 16].copy_from_slice(&fpu.xmm[i][1].to_le_bytes());
    }
}

/// FXSAVE: `image` holds the memory's current 512 bytes and receives the saved state. Bytes
/// 464..512 are left alone (available to software); the XMM slots the mode cannot reach
/// keep their contents.
pub fn fxsave(fpu: &Fpu, layout: Layout, image: &mut [u8; FXSAVE_SIZE]) {
    save_x87(fpu, layout, image);
    save_mxcsr(fpu, image);
    save_xmm(fpu, layout, image);
}

/// Why a restore was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RestoreError {
    /// The image's MXCSR sets reserved bits (#GP(0)).
    Mxcsr,
}

/// The image's MXCSR, checked.
pub fn image_mxcsr(image: &[u8; FXSAVE_SIZE]) -> Result<u32, RestoreError> {
    let m = u32::from_le_bytes(image[24..28].try_into().expect("4 bytes"));
    if m & !MXCSR_MASK != 0 {
        return Err(RestoreError::Mxcsr);
    }
    Ok(m)
}

/// Loads the x87 part of an image.
pub fn restore_x87(fpu: &mut Fpu, layout: Layout, image: &[u8; FXSAVE_SIZE]) {
    let u16_at = |i: usize| u16::from_le_bytes([image[i], image[i + 1]]);
    let u32_at = |i: usize| u32::from_le_bytes(image[i..i + 4].try_into().expect("4 bytes"));
    let u64_at = |i: usize| u64::from_le_bytes(image[i..i + 8].try_into().expect("8 bytes"));
    let x = &mut fpu.x87;
    x.fcw = u16_at(0);
    x.fsw = u16_at(2);
    x.fop = u16_at(6) & 0x7ff;
    if layout.wide {
        x.fip = u64_at(8);
        x.fdp = u64_at(16);
        x.fcs = 0;
        x.fds = 0;
    } else {
        x.fip = u64::from(u32_at(8));
        x.fcs = u16_at(12);
        x.fdp = u64::from(u32_at(16));
        x.fds = u16_at(20);
    }
    let top = usize::from((x.fsw >> 11) & 7);
    for i in 0..8 {
        let at = 32 + 16 * i;
        let bytes: [u8; 10] = image[at..at + 10].try_into().expect("10 bytes");
        x.regs[(top + i) & 7] = F80::from_bytes(&bytes);
    }
    x.ftw = full_tag(x, image[4]);
}

/// Loads the XMM registers of an image.
pub fn restore_xmm(fpu: &mut Fpu, layout: Layout, image: &[u8; FXSAVE_SIZE]) {
    for i in 0..layout.xmm_regs {
        let at = 160 + 16 * i;
        let lo = u64::from_le_bytes(image[at..at + 8].try_into().expect("8 bytes"));
        let hi = u64::from_le_bytes(image[at + 8..at + 16].try_into().expect("8 bytes"));
        fpu.xmm[i] = [lo, hi];
    }
}

/// FXRSTOR: loads the whole state, or changes nothing when MXCSR is invalid.
pub fn fxrstor(
    fpu: &mut Fpu,
    layout: Layout,
    image: &[u8; FXSAVE_SIZE],
) -> Result<(), RestoreError> {
    let mxcsr = image_mxcsr(image)?;
    restore_x87(fpu, layout, image);
    fpu.mxcsr = mxcsr;
    restore_xmm(fpu, layout, image);
    Ok(())
}

/// XRSTOR's initial configuration of the x87 component (as FNINIT, with FOP/FIP/FDP
/// cleared and all registers zero).
pub fn init_x87(fpu: &mut Fpu) {
    fpu.x87 = crate::state::X87::default();
}

/// XRSTOR's initial configuration of the SSE component: XMM registers zero (MXCSR is not
/// part of it in the standard form; it is always loaded).
pub fn init_sse(fpu: &mut Fpu, layout: Layout) {
    for r in fpu.xmm.iter_mut().take(layout.xmm_regs) {
        *r = [0, 0];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fxsave_round_trips() {
        let mut fpu = Fpu::default();
        fpu.x87.fcw = 0x027f;
        fpu.x87.fsw = 0x3800 | 0x0021; // TOP = 7, PE and IE set
        fpu.x87.regs[7] = F80 {
            signif: 0x8000_0000_0000_0000,
            sign_exp: 0x3fff,
        };
        fpu.x87.ftw = 0x3fff; // R7 valid, the rest empty
        fpu.x87.fip = 0x1234_5678_9abc;
        fpu.mxcsr = 0x9fc0;
        for (i, r) in fpu.xmm.iter_mut().enumerate() {
            *r = [i as u64 * 0x0101, !(i as u64)];
        }
        let layout = Layout {
            wide: true,
            xmm_regs: 16,
        };
        let mut img = [0xaau8; FXSAVE_SIZE];
        fxsave(&fpu, layout, &mut img);
        assert_eq!(img[4], 0x80, "abridged tag: only R7 valid");
        assert_eq!(&img[32..42], &fpu.x87.regs[7].to_bytes(), "ST0 is R7");
        assert_eq!(&img[464..], &[0xaa; 48][..], "software area untouched");
        let mut back = Fpu::default();
        fxrstor(&mut back, layout, &img).unwrap();
        assert_eq!(back.x87, fpu.x87);
        assert_eq!(back.xmm, fpu.xmm);
        assert_eq!(back.mxcsr, fpu.mxcsr);
        img[26] = 1; // MXCSR bit 16: reserved
        assert_eq!(fxrstor(&mut back, layout, &img), Err(RestoreError::Mxcsr));
    }
}
