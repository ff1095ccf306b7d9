//! The FPU/SIMD part of a conformance case: a random FXSAVE image as input (x87 registers,
//! control and status words, tags, MXCSR, XMM registers, rich in special values), and the
//! comparison of the host's and the emulator's images afterwards.
//!
//! The host loads the input image with FXRSTOR64 before the instruction and saves the result
//! with FXSAVE64 (see `layout`); the emulator loads and saves the same format through
//! `crane86_fpu::save`, so both sides are compared in one format.
//!
//! Every exception stays masked (FCW bits 5:0, MXCSR bits 12:7): an unmasked one would trap
//! the host process. Rounding, precision, DAZ and FTZ are random.

use crane86_fpu::save::{Layout, FXSAVE_SIZE};
use crane86_fpu::{Fpu, F80};

use crate::gen::Rng;

/// An FXSAVE image.
pub type Image = [u8; FXSAVE_SIZE];

/// The layout both sides use: 64-bit pointers, all 16 XMM registers (32-bit forms cannot
/// reach XMM8..15, which then stay as loaded on both sides).
pub const LAYOUT: Layout = Layout {
    wide: true,
    xmm_regs: 16,
};

/// The image of the state after FNINIT with MXCSR at its default: what forms that do not
/// touch the FPU run with.
pub fn default_image() -> Box<Image> {
    let fpu = Fpu {
        x87: crane86_fpu::state::X87::default(),
        ..Fpu::default()
    };
    let mut img = Box::new([0u8; FXSAVE_SIZE]);
    crane86_fpu::save::fxsave(&fpu, LAYOUT, &mut img);
    img
}

/// A random 32-bit float pattern, biased towards special values.
pub fn f32_bits(rng: &mut Rng) -> u32 {
    let sign = (rng.next() as u32) << 31;
    let mant = rng.next() as u32 & 0x7f_ffff;
    sign | match rng.below(14) {
        0 => 0,                                               // ±0
        1 => 0x7f80_0000,                                     // ±inf
        2 => 0x7fc0_0000 | (mant & 0x3f_ffff),                // QNaN with payload
        3 => 0x7f80_0000 | (mant & 0x3f_ffff) | 1,            // SNaN with payload
        4 => mant | 1,                                        // denormal
        5 => 0x0080_0000 | mant,                              // smallest normals
        6 => 0x7f7f_ffff - (mant & 0xf),                      // near the largest finite
        7 => 0x3f80_0000 | (mant & 0xf),                      // near 1.0
        8 => (0x4b00_0000 | mant) & 0x7fff_ffff,              // integers near 2^23
        9 => 0x4eff_ffff - (mant & 0xff),                     // near 2^31
        _ => (rng.next() as u32 & 0x7fff_ffff) % 0x7f80_0000, // any finite
    }
}

/// A random 64-bit float pattern, biased towards special values.
pub fn f64_bits(rng: &mut Rng) -> u64 {
    let sign = rng.next() << 63;
    let mant = rng.next() & 0xf_ffff_ffff_ffff;
    sign | match rng.below(14) {
        0 => 0,
        1 => 0x7ff0_0000_0000_0000,
        2 => 0x7ff8_0000_0000_0000 | (mant & 0x7_ffff_ffff_ffff),
        3 => 0x7ff0_0000_0000_0000 | (mant & 0x7_ffff_ffff_ffff) | 1,
        4 => mant | 1,
        5 => 0x0010_0000_0000_0000 | mant,
        6 => 0x7fef_ffff_ffff_ffff - (mant & 0xf),
        7 => 0x3ff0_0000_0000_0000 | (mant & 0xf),
        8 => 0x43df_ffff_ffff_ffff - (mant & 0xff), // near 2^63
        9 => 0x41df_ffff_ffc0_0000 | (mant & 0x3f_ffff), // near 2^31
        10 => f32_as_f64(rng),
        _ => (rng.next() & 0x7fff_ffff_ffff_ffff) % 0x7ff0_0000_0000_0000,
    }
}

fn f32_as_f64(rng: &mut Rng) -> u64 {
    f64::from(f32::from_bits(f32_bits(rng) & 0x7f7f_ffff)).to_bits() & !(1 << 63)
}

/// A random 80-bit value, biased towards special values and unsupported encodings.
pub fn f80(rng: &mut Rng) -> F80 {
    let sign = ((rng.next() & 1) as u16) << 15;
    let m = rng.next();
    let (signif, exp) = match rng.below(14) {
        0 => (0, 0),
        1 => (1 << 63, 0x7fff),                          // ±inf
        2 => (0xc000_0000_0000_0000 | (m >> 2), 0x7fff), // QNaN
        3 => ((1 << 63) | (m >> 2) | 1, 0x7fff),         // SNaN
        4 => (m >> 1, 0),                                // denormal
        5 => ((1 << 63) | (m >> 1), 0),                  // pseudo-denormal
        6 => (m >> 1, 1 + (m as u16 & 0x7ffd)),          // unnormal
        7 => ((1 << 63) | (m & 0xf), 0x3fff),            // near 1.0
        8 => ((1 << 63) | m, 0x3fff + 62),               // near 2^63
        9 => ((1 << 63) | m, 0x3fff + (m as u16 % 40)),  // moderate integers and fractions
        _ => ((1 << 63) | m, (rng.next() as u16) % 0x7fff),
    };
    F80 {
        signif,
        sign_exp: sign | exp,
    }
}

/// Fills 16 bytes with random float lanes of one width, or random integers.
pub fn vector(rng: &mut Rng) -> [u64; 2] {
    let mut lanes = [0u64; 2];
    match rng.below(3) {
        0 => {
            for l in lanes.iter_mut() {
                *l = u64::from(f32_bits(rng)) | u64::from(f32_bits(rng)) << 32;
            }
        }
        1 => {
            for l in lanes.iter_mut() {
                *l = f64_bits(rng);
            }
        }
        _ => {
            for l in lanes.iter_mut() {
                *l = rng.value();
            }
        }
    }
    lanes
}

/// A random input image (see the module documentation for what stays fixed).
pub fn random_image(rng: &mut Rng) -> Box<Image> {
    let mut fpu = Fpu::default();
    let x = &mut fpu.x87;
    // Precision control 00, 10 or 11 (01 is reserved), any rounding, exceptions masked.
    let pc = [0u16, 2, 3][rng.below(3) as usize];
    x.fcw = 0x003f | 0x0040 | pc << 8 | (rng.below(4) as u16) << 10;
    // Sticky flags and condition codes random; TOP random; ES/B clear (nothing unmasked).
    x.fsw = (rng.next() as u16 & 0x477f & !0x0080) | (rng.below(8) as u16) << 11;
    for r in x.regs.iter_mut() {
        *r = f80(rng);
    }
    let abridged = rng.next() as u8;
    x.ftw = crane86_fpu::x87::full_tag(x, abridged);
    fpu.mxcsr = 0x1f80
        | (rng.next() as u32 & 0x3f)
        | (rng.below(4) as u32) << 13
        | if rng.one_in(4) { 1 << 6 } else { 0 }
        | if rng.one_in(4) { 1 << 15 } else { 0 };
    for r in fpu.xmm.iter_mut() {
        *r = vector(rng);
    }
    let mut img = Box::new([0u8; FXSAVE_SIZE]);
    crane86_fpu::save::fxsave(&fpu, LAYOUT, &mut img);
    img
}

/// The compared fields of an image: offset, length, name. FOP, FIP and FDP (bytes 6..24)
/// are left out: AMD processors save them only while an x87 exception is pending.
const FIELDS: &[(usize, usize, &str)] = &[
    (0, 2, "fcw"),
    (2, 2, "fsw"),
    (4, 1, "ftw"),
    (24, 4, "mxcsr"),
];

/// True when two RCPPS/RSQRTPS results agree as far as the SDM defines them: bit-equal, or
/// both finite, non-zero, of one sign, and each within the SDM's relative error bound
/// (|error| <= 1.5 * 2^-12) of the same exact value, so within 3 * 2^-12 of each other. The
/// SDM leaves the bits below that bound to the implementation (Intel and AMD differ).
fn approx_lane_ok(want: u32, got: u32) -> bool {
    if want == got {
        return true;
    }
    let (w, g) = (f32::from_bits(want), f32::from_bits(got));
    if !w.is_finite() || !g.is_finite() || w == 0.0 || g == 0.0 || w.signum() != g.signum() {
        return false;
    }
    let (w, g) = (f64::from(w), f64::from(g));
    ((w - g) / w).abs() <= 3.0 / 4096.0
}

/// The position of a finite 80-bit value on the number line, in units of its last place
/// (normals and denormals alike), for the 1-ulp comparison of transcendental results.
fn f80_ordinal(b: &[u8]) -> Option<i128> {
    let signif = u64::from_le_bytes(b[..8].try_into().expect("8 bytes"));
    let se = u16::from_le_bytes([b[8], b[9]]);
    let exp = i128::from(se & 0x7fff);
    if exp == 0x7fff {
        return None;
    }
    // Normals: 2^63 ulps per binade above the denormal range.
    let mag = if exp == 0 {
        i128::from(signif)
    } else {
        (exp - 1) * (1i128 << 63) + i128::from(signif)
    };
    Some(if se & 0x8000 != 0 { -mag } else { mag })
}

/// True when two 80-bit results are equal or finite and one unit in the last place apart:
/// the accuracy the SDM gives for the x87 transcendental instructions (their last bit, and
/// so C1, is the implementation's).
fn within_one_ulp(want: &[u8], got: &[u8]) -> bool {
    want == got
        || matches!((f80_ordinal(want), f80_ordinal(got)), (Some(a), Some(b)) if (a - b).abs() <= 1)
}

/// How loosely an instruction's results compare (what the SDM leaves to the implementation).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tolerance {
    /// The XMM register holding an RCPxS/RSQRTxS result: lanes within the SDM's bound.
    pub approx_xmm: Option<usize>,
    /// An x87 transcendental: ST registers within one ulp, C1 not compared.
    pub transcendental: bool,
    /// The XMM register holding a DPPS (32) or DPPD (64) result, with its lane width, when
    /// the host is not an AMD processor: lanes that are NaNs on both sides compare equal.
    /// Intel processors deliver the final sum's first NaN to the low lanes and its second
    /// to the high ones, where the SDM's pseudo-code and AMD processors (the CPU crane86
    /// presents) give every lane the same (`crane86_fpu::host_is_amd`).
    pub vendor_nan_xmm: Option<(usize, u32)>,
}

/// Describes the differences between two output images, or `None`.
pub fn compare(want: &Image, got: &Image, tol: Tolerance) -> Option<String> {
    let approx = tol.approx_xmm;
    let mut diffs = Vec::new();
    let hex = |b: &[u8]| -> String { b.iter().rev().map(|x| format!("{x:02x}")).collect() };
    for &(at, len, name) in FIELDS {
        let (mut w, mut g) = (want[at..at + len].to_vec(), got[at..at + len].to_vec());
        if tol.transcendental && name == "fsw" {
            // C1 (bit 9): "rounded up", which follows the last bit of the result.
            w[1] &= !0x02;
            g[1] &= !0x02;
        }
        if w != g {
            diffs.push(format!(
                "{name}: want {} got {}",
                hex(&want[at..at + len]),
                hex(&got[at..at + len])
            ));
        }
    }
    for i in 0..8 {
        let at = 32 + 16 * i;
        let same = if tol.transcendental {
            within_one_ulp(&want[at..at + 10], &got[at..at + 10])
        } else {
            want[at..at + 10] == got[at..at + 10]
        };
        if !same {
            diffs.push(format!(
                "st{i}: want {} got {}",
                hex(&want[at..at + 10]),
                hex(&got[at..at + 10])
            ));
        }
    }
    for i in 0..16 {
        let at = 160 + 16 * i;
        let lane = |img: &Image, l: usize| {
            u32::from_le_bytes(img[at + 4 * l..at + 4 * l + 4].try_into().expect("4 bytes"))
        };
        if approx == Some(i) && (0..4).all(|l| approx_lane_ok(lane(want, l), lane(got, l))) {
            continue;
        }
        if let Some((_, bits)) = tol.vendor_nan_xmm.filter(|&(r, _)| r == i) {
            let xmm =
                |img: &Image| u128::from_le_bytes(img[at..at + 16].try_into().expect("16 bytes"));
            if crane86_fpu::equal_but_for_nan_payloads(xmm(want), xmm(got), bits) {
                continue;
            }
        }
        if want[at..at + 16] != got[at..at + 16] {
            diffs.push(format!(
                "xmm{i}: want {} got {}",
                hex(&want[at..at + 16]),
                hex(&got[at..at + 16])
            ));
        }
    }
    (!diffs.is_empty()).then(|| diffs.join(", "))
}

/// A short description of the input image, for mismatch reports.
pub fn describe(img: &Image) -> String {
    let u16_at = |i: usize| u16::from_le_bytes([img[i], img[i + 1]]);
    let u32_at = |i: usize| u32::from_le_bytes(img[i..i + 4].try_into().expect("4 bytes"));
    let mut s = format!(
        "fcw={:#06x} fsw={:#06x} ftw={:#04x} mxcsr={:#x}",
        u16_at(0),
        u16_at(2),
        img[4],
        u32_at(24)
    );
    for i in 0..4 {
        let at = 160 + 16 * i;
        let lo = u64::from_le_bytes(img[at..at + 8].try_into().expect("8"));
        let hi = u64::from_le_bytes(img[at + 8..at + 16].try_into().expect("8"));
        s += &format!(" xmm{i}={hi:016x}{lo:016x}");
    }
    for i in 0..2 {
        let at = 32 + 16 * i;
        let m = u64::from_le_bytes(img[at..at + 8].try_into().expect("8"));
        s += &format!(" st{i}={:04x}:{m:016x}", u16_at(at + 8));
    }
    s
}

/// Puts an in-domain value in ST0 of an input image (F2XM1: |x| <= 1; FYL2XP1:
/// |x| < 1 - sqrt(2)/2): outside those domains the SDM leaves the result undefined. One
/// case in eight keeps the random (often special) value, whose results the SDM does define
/// for zeros, infinities and NaNs.
pub fn constrain_st0(img: &mut Image, rng: &mut Rng, max_exp: u16) {
    if rng.one_in(8) {
        return;
    }
    let top = usize::from((u16::from_le_bytes([img[2], img[3]]) >> 11) & 7);
    let exp = max_exp - rng.below(64) as u16;
    let signif = if exp == 0x3fff {
        1 << 63
    } else {
        (1 << 63) | rng.next()
    };
    let sign = ((rng.next() & 1) as u16) << 15;
    img[32..40].copy_from_slice(&signif.to_le_bytes());
    img[40..42].copy_from_slice(&(sign | exp).to_le_bytes());
    img[4] |= 1 << top;
}
