//! Tests of the SSE floating-point instructions: random and special operands compared with
//! the host CPU (results and MXCSR flags under random RC/DAZ/FTZ, all exceptions masked on
//! the host), plus known cases for the unmasked-exception paths.

#[macro_use]
mod host;
mod hard;
mod host_cvt;
mod known;

use super::lane::W;
use crate::operands::{Loc, Operands};
use crate::simd::SimdFault;
use crate::state::Fpu;
use iced_x86::Code;

pub(super) use crate::testutil::Rng;

const SPECIAL32: &[u32] = &[
    0x0000_0000,
    0x8000_0000,
    0x7f80_0000,
    0xff80_0000,
    0x7fc0_0000,
    0xffc0_0000,
    0x7fa0_0001,
    0xff80_0001,
    0x7fc1_2345,
    0xffd5_4321,
    0x0000_0001,
    0x8000_0001,
    0x007f_ffff,
    0x807f_ffff,
    0x0040_0000,
    0x0080_0000,
    0x8080_0000,
    0x0080_0001,
    0x7f7f_ffff,
    0xff7f_ffff,
    0x3f80_0000,
    0xbf80_0000,
    0x3f00_0000,
    0x3fc0_0000,
    0x4020_0000,
    0xc020_0000,
    0x4f00_0000,
    0xcf00_0000,
    0x4eff_ffff,
    0xceff_ffff,
    0x4f00_0001,
    0xcf00_0001,
    0x5f00_0000,
    0xdf00_0000,
    0x5eff_ffff,
    0xdf00_0001,
    0x3400_0000,
    0x3f7f_ffff,
    0x4b00_0000,
    0x4b7f_ffff,
    0x4f80_0000,
    0x7e80_0000,
    0x0100_0000,
];

const SPECIAL64: &[u64] = &[
    0,
    0x8000_0000_0000_0000,
    0x7ff0_0000_0000_0000,
    0xfff0_0000_0000_0000,
    0x7ff8_0000_0000_0000,
    0xfff8_0000_0000_0000,
    0x7ff4_0000_0000_0001,
    0xfff0_0000_0000_0001,
    0x7ff8_1234_5678_9abc,
    0xfffc_dead_beef_0001,
    0x0000_0000_0000_0001,
    0x8000_0000_0000_0001,
    0x000f_ffff_ffff_ffff,
    0x800f_ffff_ffff_ffff,
    0x0010_0000_0000_0000,
    0x8010_0000_0000_0000,
    0x7fef_ffff_ffff_ffff,
    0xffef_ffff_ffff_ffff,
    0x3ff0_0000_0000_0000,
    0xbff0_0000_0000_0000,
    0x3fe0_0000_0000_0000,
    0x3ff8_0000_0000_0000,
    0x4004_0000_0000_0000,
    0xc004_0000_0000_0000,
    0x41e0_0000_0000_0000, // 2^31
    0xc1e0_0000_0000_0000, // -2^31
    0x41df_ffff_ffc0_0000, // 2^31 - 1
    0x41df_ffff_ffe0_0000, // 2^31 - 0.5
    0xc1e0_0000_0010_0000, // -2^31 - 0.5
    0xc1e0_0000_0020_0000, // -2^31 - 1
    0x43e0_0000_0000_0000, // 2^63
    0xc3e0_0000_0000_0000, // -2^63
    0x43df_ffff_ffff_ffff, // below 2^63
    0xc3e0_0000_0000_0001, // below -2^63
    0x47ef_ffff_e000_0000, // the largest single
    0x47ef_ffff_f000_0000, // halfway above it
    0x36a0_0000_0000_0000, // the smallest single denormal
    0x3690_0000_0000_0000, // half of it
    0x380f_ffff_f000_0000, // just below the smallest single normal
    0x3810_0000_0000_0000,
    0x4330_0000_0000_0000, // 2^52
];

/// A random element of width `w`: specials, raw bits, ordinary numbers, denormals, and
/// numbers near the ends of the exponent range.
pub(super) fn elem(r: &mut Rng, w: W) -> u64 {
    let (ebits, fbits) = match w {
        W::S => (8u32, 23u32),
        W::D => (11, 52),
    };
    let bias = (1u64 << (ebits - 1)) - 1;
    let emax = (1u64 << ebits) - 1;
    let sign = (r.next() & 1) << (ebits + fbits);
    let frac = r.next() & ((1 << fbits) - 1);
    let exp = match r.below(8) {
        0 | 1 => {
            return match w {
                W::S => u64::from(SPECIAL32[r.below(SPECIAL32.len() as u64) as usize]),
                W::D => SPECIAL64[r.below(SPECIAL64.len() as u64) as usize],
            }
        }
        2 => return r.next() & w_mask(w),
        3 => 0,
        4 => r.below(4) + 1,
        5 => emax - 1 - r.below(4),
        _ => bias - 32 + r.below(70),
    };
    // Short significands make exact and halfway cases frequent.
    let frac = if r.below(3) == 0 {
        frac & !((1 << r.below(u64::from(fbits))) - 1)
    } else {
        frac
    };
    sign | exp << fbits | frac
}

fn w_mask(w: W) -> u64 {
    match w {
        W::S => 0xffff_ffff,
        W::D => u64::MAX,
    }
}

/// A second operand related to `a`: often close to it (cancellation, equal values), an
/// exact small multiple, or independent.
pub(super) fn related(r: &mut Rng, w: W, a: u64) -> u64 {
    match r.below(6) {
        0 => a ^ (r.below(4)),
        1 => a ^ w_sign(w),
        2 => a,
        _ => elem(r, w),
    }
}

fn w_sign(w: W) -> u64 {
    match w {
        W::S => 0x8000_0000,
        W::D => 0x8000_0000_0000_0000,
    }
}

/// A 128-bit operand of random elements; `other` gives elements related to it.
pub(super) fn vec(r: &mut Rng, w: W, other: Option<u128>) -> u128 {
    let mut v = 0u128;
    for i in 0..w.lanes() {
        let e = match other {
            Some(o) => related(r, w, w.get(o, i)),
            None => elem(r, w),
        };
        w.set(&mut v, i, e);
    }
    v
}

/// A random MXCSR with all exceptions masked, random RC, DAZ and FTZ, and usually clear
/// flags (sometimes random ones, which must stay set).
pub(super) fn mxcsr(r: &mut Rng) -> u32 {
    let x = r.next() as u32;
    let flags = if x >> 4 & 3 == 0 { x >> 8 & 0x3f } else { 0 };
    0x1f80 | (x & 3) << 13 | (x >> 2 & 1) << 6 | (x >> 3 & 1) << 15 | flags
}

/// Runs `code` on the emulator with XMM1 = `d` and the source `s` in XMM2 or, with `mem`,
/// in memory; returns XMM1 and MXCSR.
pub(super) fn emu(code: Code, mx: u32, d: u128, s: u128, imm: u8, mem: bool) -> (u128, u32) {
    let mut f = Fpu {
        mxcsr: mx,
        ..Fpu::default()
    };
    f.set_xmm128(1, d);
    let src = if mem {
        f.set_io128(s);
        Loc::Mem
    } else {
        f.set_xmm128(2, s);
        Loc::Xmm(2)
    };
    let ops = Operands::new([Loc::Xmm(1), src, Loc::None], imm, 0);
    let r = super::execute(&mut f, code, ops).expect("claimed");
    assert_eq!(r, Ok(()), "{code:?} faulted with masked exceptions");
    (f.xmm128(1), f.mxcsr)
}

/// Like [`emu`] but returns the fault as well, for the unmasked paths.
pub(super) fn emu_fault(
    code: Code,
    mx: u32,
    d: u128,
    s: u128,
    imm: u8,
) -> (Result<(), SimdFault>, u128, u32) {
    let mut f = Fpu {
        mxcsr: mx,
        ..Fpu::default()
    };
    f.set_xmm128(1, d);
    f.set_xmm128(2, s);
    let ops = Operands::new([Loc::Xmm(1), Loc::Xmm(2), Loc::None], imm, 0);
    let r = super::execute(&mut f, code, ops).expect("claimed");
    (r, f.xmm128(1), f.mxcsr)
}
