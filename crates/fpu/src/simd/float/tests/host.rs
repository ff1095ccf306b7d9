//! Comparisons with the host CPU: each instruction runs on the host under the same MXCSR
//! (all exceptions masked) and on the emulator, and results and MXCSR must be identical.
//!
//! The `asm!` blocks (and transmutes between `u128` and `__m128i`, both 16 plain bytes) are
//! the module's `unsafe`. Invariants: each block names every register it
//! changes (as an output or a clobber), touches no memory but the live buffers it is given
//! pointers to, and leaves what the Rust ABI expects: an empty x87 stack (EMMS or FNINIT
//! where MMX or x87 registers were used) and the host's MXCSR and control word restored.

use iced_x86::Code;

use super::{emu, mxcsr, vec, Rng};
use crate::simd::float::lane::W;

/// An instruction on the host: (MXCSR in, destination, source) to (result, MXCSR out).
pub(super) type HostFn = fn(u32, u128, u128) -> (u128, u32);

/// Wraps one XMM-XMM instruction (template with `{x}` the destination, `{y}` the source)
/// as a [`HostFn`]. Paths are absolute so that the `hard` tests can use it too.
macro_rules! host {
    ($($t:tt)+) => {{
        fn f(mx: u32, d: u128, s: u128) -> (u128, u32) {
            let mut m = mx;
            let mut saved = 0u32;
            // SAFETY: u128 and __m128i are both 16 plain bytes.
            let (mut x, y) = unsafe { (::core::mem::transmute::<u128, ::core::arch::x86_64::__m128i>(d), ::core::mem::transmute::<u128, ::core::arch::x86_64::__m128i>(s)) };
            // SAFETY: one SSE instruction on the two named registers; the host MXCSR is
            // saved first and restored after, through pointers to live locals.
            unsafe {
                ::core::arch::asm!(
                    "stmxcsr [{sv}]",
                    "ldmxcsr [{m}]",
                    concat!($($t)+),
                    "stmxcsr [{m}]",
                    "ldmxcsr [{sv}]",
                    sv = in(reg) &mut saved as *mut u32,
                    m = in(reg) &mut m as *mut u32,
                    x = inout(xmm_reg) x,
                    y = in(xmm_reg) y,
                    options(nostack),
                );
            }
            // SAFETY: as above.
            (unsafe { ::core::mem::transmute::<::core::arch::x86_64::__m128i, u128>(x) }, m)
        }
        f as HostFn
    }};
}

/// Runs `n` random cases of `code` (elements of width `w`) against `host`.
fn check(code: Code, w: W, host: HostFn, imm: u8, n: usize, seed: u64) {
    let mut r = Rng::new(seed ^ code as u64);
    for _ in 0..n {
        let mx = mxcsr(&mut r);
        let d = vec(&mut r, w, None);
        let s = if r.below(2) == 0 {
            vec(&mut r, w, Some(d))
        } else {
            vec(&mut r, w, None)
        };
        let want = host(mx, d, s);
        let got = emu(code, mx, d, s, imm, r.below(2) == 0);
        if got != want && nan_lanes_differ_by_vendor(code, w, got, want) {
            continue;
        }
        assert_eq!(
            got, want,
            "{code:?} imm {imm:#x} mxcsr {mx:#x} d {d:#034x} s {s:#034x} (got, want)"
        );
    }
}

/// On a host that is not an AMD processor: whether `got` and `want` (result, MXCSR) differ
/// only in which NaN some lanes of a DPPS or DPPD result hold. Intel processors deliver the
/// first NaN of the final sum to the low lanes and the second one to the high lanes (the SDM's
/// pseudo-code, and AMD processors, give every lane the same sum); crane86 presents an AMD
/// CPU.
fn nan_lanes_differ_by_vendor(code: Code, w: W, got: (u128, u32), want: (u128, u32)) -> bool {
    if crate::host_is_amd()
        || !matches!(
            code,
            Code::Dpps_xmm_xmmm128_imm8 | Code::Dppd_xmm_xmmm128_imm8
        )
        || got.1 != want.1
    {
        return false;
    }
    let bits = if matches!(w, W::S) { 32 } else { 64 };
    crate::equal_but_for_nan_payloads(got.0, want.0, bits)
}

const N: usize = 20_000;

/// ADD, SUB, MUL, DIV and SQRT in their PS, PD, SS and SD forms, with the host's instruction.
pub(super) fn arithmetic_cases() -> Vec<(Code, W, HostFn)> {
    use Code::*;
    vec![
        (Addps_xmm_xmmm128, W::S, host!("addps {x}, {y}")),
        (Addpd_xmm_xmmm128, W::D, host!("addpd {x}, {y}")),
        (Addss_xmm_xmmm32, W::S, host!("addss {x}, {y}")),
        (Addsd_xmm_xmmm64, W::D, host!("addsd {x}, {y}")),
        (Subps_xmm_xmmm128, W::S, host!("subps {x}, {y}")),
        (Subpd_xmm_xmmm128, W::D, host!("subpd {x}, {y}")),
        (Subss_xmm_xmmm32, W::S, host!("subss {x}, {y}")),
        (Subsd_xmm_xmmm64, W::D, host!("subsd {x}, {y}")),
        (Mulps_xmm_xmmm128, W::S, host!("mulps {x}, {y}")),
        (Mulpd_xmm_xmmm128, W::D, host!("mulpd {x}, {y}")),
        (Mulss_xmm_xmmm32, W::S, host!("mulss {x}, {y}")),
        (Mulsd_xmm_xmmm64, W::D, host!("mulsd {x}, {y}")),
        (Divps_xmm_xmmm128, W::S, host!("divps {x}, {y}")),
        (Divpd_xmm_xmmm128, W::D, host!("divpd {x}, {y}")),
        (Divss_xmm_xmmm32, W::S, host!("divss {x}, {y}")),
        (Divsd_xmm_xmmm64, W::D, host!("divsd {x}, {y}")),
        (Sqrtps_xmm_xmmm128, W::S, host!("sqrtps {x}, {y}")),
        (Sqrtpd_xmm_xmmm128, W::D, host!("sqrtpd {x}, {y}")),
        (Sqrtss_xmm_xmmm32, W::S, host!("sqrtss {x}, {y}")),
        (Sqrtsd_xmm_xmmm64, W::D, host!("sqrtsd {x}, {y}")),
    ]
}

#[test]
fn basic_arithmetic_matches_host() {
    use Code::*;
    let mut cases = arithmetic_cases();
    cases.extend_from_slice(&[
        (Minps_xmm_xmmm128, W::S, host!("minps {x}, {y}")),
        (Minpd_xmm_xmmm128, W::D, host!("minpd {x}, {y}")),
        (Minss_xmm_xmmm32, W::S, host!("minss {x}, {y}")),
        (Minsd_xmm_xmmm64, W::D, host!("minsd {x}, {y}")),
        (Maxps_xmm_xmmm128, W::S, host!("maxps {x}, {y}")),
        (Maxpd_xmm_xmmm128, W::D, host!("maxpd {x}, {y}")),
        (Maxss_xmm_xmmm32, W::S, host!("maxss {x}, {y}")),
        (Maxsd_xmm_xmmm64, W::D, host!("maxsd {x}, {y}")),
    ]);
    for (code, w, h) in cases {
        check(code, w, h, 0, N, 1);
    }
}

#[test]
fn sse3_arithmetic_matches_host() {
    if !is_x86_feature_detected!("sse3") {
        return;
    }
    for (code, w, h) in sse3_cases() {
        check(code, w, h, 0, N, 2);
    }
}

/// The SSE3 ADDSUB, HADD and HSUB forms, with the host's instruction.
pub(super) fn sse3_cases() -> Vec<(Code, W, HostFn)> {
    use Code::*;
    vec![
        (Addsubps_xmm_xmmm128, W::S, host!("addsubps {x}, {y}")),
        (Addsubpd_xmm_xmmm128, W::D, host!("addsubpd {x}, {y}")),
        (Haddps_xmm_xmmm128, W::S, host!("haddps {x}, {y}")),
        (Haddpd_xmm_xmmm128, W::D, host!("haddpd {x}, {y}")),
        (Hsubps_xmm_xmmm128, W::S, host!("hsubps {x}, {y}")),
        (Hsubpd_xmm_xmmm128, W::D, host!("hsubpd {x}, {y}")),
    ]
}

/// `[(imm, host function)]` for one instruction template and a list of immediates.
macro_rules! with_imms {
    ($t:literal; $($i:literal),*) => {
        [$(($i as u8, host!($t, ", ", $i))),*]
    };
}

#[test]
fn compares_match_host() {
    use Code::*;
    // Predicates 0..7, and immediates with bits 7:3 set, which the legacy encoding ignores.
    let ps = with_imms!("cmpps {x}, {y}"; 0, 1, 2, 3, 4, 5, 6, 7, 0x0d, 0xf9);
    let pd = with_imms!("cmppd {x}, {y}"; 0, 1, 2, 3, 4, 5, 6, 7, 0x0a, 0x83);
    let ss = with_imms!("cmpss {x}, {y}"; 0, 1, 2, 3, 4, 5, 6, 7, 0x1e, 0x44);
    let sd = with_imms!("cmpsd {x}, {y}"; 0, 1, 2, 3, 4, 5, 6, 7, 0x11, 0xff);
    for (code, w, list) in [
        (Cmpps_xmm_xmmm128_imm8, W::S, ps),
        (Cmppd_xmm_xmmm128_imm8, W::D, pd),
        (Cmpss_xmm_xmmm32_imm8, W::S, ss),
        (Cmpsd_xmm_xmmm64_imm8, W::D, sd),
    ] {
        for (imm, h) in list {
            check(code, w, h, imm, N / 4, 3);
        }
    }
}

#[test]
fn sse41_round_and_dot_product_match_host() {
    if !is_x86_feature_detected!("sse4.1") {
        return;
    }
    use Code::*;
    let imms = |t| -> [(u8, HostFn); 16] {
        match t {
            0 => {
                with_imms!("roundps {x}, {y}"; 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15)
            }
            1 => {
                with_imms!("roundpd {x}, {y}"; 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15)
            }
            2 => {
                with_imms!("roundss {x}, {y}"; 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15)
            }
            _ => {
                with_imms!("roundsd {x}, {y}"; 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15)
            }
        }
    };
    let codes = [
        (Roundps_xmm_xmmm128_imm8, W::S),
        (Roundpd_xmm_xmmm128_imm8, W::D),
        (Roundss_xmm_xmmm32_imm8, W::S),
        (Roundsd_xmm_xmmm64_imm8, W::D),
    ];
    for (t, (code, w)) in codes.into_iter().enumerate() {
        for (imm, h) in imms(t) {
            check(code, w, h, imm, N / 8, 4);
        }
    }
    let dpps = with_imms!("dpps {x}, {y}"; 0xff, 0xf1, 0x31, 0x7f, 0xa5, 0x5a, 0x33, 0xcc, 0x0f, 0xf0, 0x18, 0xe2);
    for (imm, h) in dpps {
        check(Dpps_xmm_xmmm128_imm8, W::S, h, imm, N / 4, 5);
    }
    let dppd =
        with_imms!("dppd {x}, {y}"; 0x33, 0x31, 0x32, 0x13, 0x23, 0x30, 0x03, 0xff, 0x11, 0x22);
    for (imm, h) in dppd {
        check(Dppd_xmm_xmmm128_imm8, W::D, h, imm, N / 4, 6);
    }
}

/// RCP and RSQRT are approximations whose exact bits differ between processors, but their
/// special cases (zeros, denormals, infinities, NaNs, negative square roots, flushed tiny
/// reciprocals) are architectural: those must match the host exactly, flags included.
#[test]
fn approximation_special_cases_match_host() {
    use Code::*;
    let specials: &[u32] = &[
        0,
        0x8000_0000,
        1,
        0x8000_0001,
        0x007f_ffff,
        0x807f_ffff,
        0x7f80_0000,
        0xff80_0000,
        0x7fc0_0000,
        0xffc0_0000,
        0x7f80_0001,
        0xffa0_1234,
        0x7fc5_5555,
        0xff7f_ffff,
        0x7f7f_ffff,
        0x7f60_0000,
        0xbf80_0000,
        0xc2c8_0000,
    ];
    let cases: [(Code, HostFn); 4] = [
        (Rcpps_xmm_xmmm128, host!("rcpps {x}, {y}")),
        (Rcpss_xmm_xmmm32, host!("rcpss {x}, {y}")),
        (Rsqrtps_xmm_xmmm128, host!("rsqrtps {x}, {y}")),
        (Rsqrtss_xmm_xmmm32, host!("rsqrtss {x}, {y}")),
    ];
    let mut r = Rng::new(7);
    for (code, h) in cases {
        for &x in specials {
            // 1/x of numbers above 1.75 * 2^126 is tiny, and flushed, on every
            // implementation; the square root of a negative number is invalid.
            let is_rcp = matches!(code, Rcpps_xmm_xmmm128 | Rcpss_xmm_xmmm32);
            let skip = if is_rcp {
                matches!(x, 0xbf80_0000 | 0xc2c8_0000)
            } else {
                matches!(x, 0x7f7f_ffff | 0x7f60_0000)
            };
            if skip {
                continue;
            }
            let mx = mxcsr(&mut r);
            let d = vec(&mut r, W::S, None);
            let s = u128::from(x) * 0x0000_0001_0000_0001_0000_0001_0000_0001;
            assert_eq!(
                emu(code, mx, d, s, 0, false),
                h(mx, d, s),
                "{code:?} x {x:#010x} mxcsr {mx:#x}"
            );
        }
    }
}

/// Operands at the edges of underflow and overflow, under every combination of RC, DAZ and
/// FTZ: exact tiny results, results that round up to the smallest normal (tininess is
/// detected after rounding), denormal operands, overflow by rounding.
#[test]
fn range_edges_match_host() {
    use Code::*;
    let s_pairs: &[(u32, u32)] = &[
        (0x0080_0000, 0x3f00_0000), // min normal * 0.5: exact tiny
        (0x3f7f_ffff, 0x0080_0000), // (1 - 2^-24) * min normal
        (0x3f7f_ffff, 0x0080_0001),
        (0x0080_0001, 0x3f00_0000),
        (0x0000_0001, 0x3f00_0000),
        (0x0000_0003, 0x3f00_0000),
        (0x0080_0000, 0x8000_0001), // min normal - min denormal (add), products
        (0x00ff_ffff, 0x4000_0000),
        (0x7f7f_ffff, 0x3f80_0001),
        (0x7f7f_ffff, 0x7f7f_ffff),
        (0x7f7f_ffff, 0x3f00_0000),
        (0x0100_0000, 0x4000_0000),
    ];
    let d_pairs: &[(u64, u64)] = &[
        (0x0010_0000_0000_0000, 0x3fe0_0000_0000_0000),
        (0x3fef_ffff_ffff_ffff, 0x0010_0000_0000_0000),
        (0x3fef_ffff_ffff_ffff, 0x0010_0000_0000_0001),
        (0x0010_0000_0000_0001, 0x3fe0_0000_0000_0000),
        (0x0000_0000_0000_0001, 0x3fe0_0000_0000_0000),
        (0x0010_0000_0000_0000, 0x8000_0000_0000_0001),
        (0x7fef_ffff_ffff_ffff, 0x3ff0_0000_0000_0001),
        (0x7fef_ffff_ffff_ffff, 0x7fef_ffff_ffff_ffff),
        (0x001f_ffff_ffff_ffff, 0x4000_0000_0000_0000),
    ];
    let ss: [(Code, HostFn); 4] = [
        (Addss_xmm_xmmm32, host!("addss {x}, {y}")),
        (Subss_xmm_xmmm32, host!("subss {x}, {y}")),
        (Mulss_xmm_xmmm32, host!("mulss {x}, {y}")),
        (Divss_xmm_xmmm32, host!("divss {x}, {y}")),
    ];
    let sd: [(Code, HostFn); 4] = [
        (Addsd_xmm_xmmm64, host!("addsd {x}, {y}")),
        (Subsd_xmm_xmmm64, host!("subsd {x}, {y}")),
        (Mulsd_xmm_xmmm64, host!("mulsd {x}, {y}")),
        (Divsd_xmm_xmmm64, host!("divsd {x}, {y}")),
    ];
    let signs = [(0, 0), (1, 0), (0, 1), (1, 1)];
    for mode in 0..16u32 {
        let mx = 0x1f80 | (mode & 3) << 13 | (mode >> 2 & 1) << 6 | (mode >> 3 & 1) << 15;
        for &(a, b) in s_pairs {
            for (sa, sb) in signs {
                let (a, b) = (a ^ sa << 31, b ^ sb << 31);
                for (code, h) in ss {
                    for (d, s) in [(a, b), (b, a)] {
                        let (d, s) = (u128::from(d), u128::from(s));
                        assert_eq!(
                            emu(code, mx, d, s, 0, false),
                            h(mx, d, s),
                            "{code:?} {mx:#x} {d:#x} {s:#x}"
                        );
                    }
                }
            }
        }
        for &(a, b) in d_pairs {
            for (sa, sb) in signs {
                let (a, b) = (a ^ u64::from(sa) << 63, b ^ u64::from(sb) << 63);
                for (code, h) in sd {
                    for (d, s) in [(a, b), (b, a)] {
                        let (d, s) = (u128::from(d), u128::from(s));
                        assert_eq!(
                            emu(code, mx, d, s, 0, false),
                            h(mx, d, s),
                            "{code:?} {mx:#x} {d:#x} {s:#x}"
                        );
                    }
                }
            }
        }
    }
}
