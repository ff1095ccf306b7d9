//! Conversions, COMIS/UCOMIS and the MMX-register conversions compared with the host CPU.
//!
//! The `asm!` blocks (and transmutes between `u128` and `__m128i`, both 16 plain bytes) are
//! the module's `unsafe`. Invariants: each block names every register it
//! changes (as an output or a clobber), touches no memory but the live buffers it is given
//! pointers to, and leaves what the Rust ABI expects: an empty x87 stack (EMMS or FNINIT
//! where MMX or x87 registers were used) and the host's MXCSR and control word restored.

use core::arch::asm;
use core::arch::x86_64::__m128i;
use core::mem::transmute;

use iced_x86::Code;

use super::{elem, mxcsr, vec, Rng};
use crate::operands::{Loc, Operands};
use crate::simd::float::lane::W;
use crate::state::{Fpu, IO_DATA0, IO_FLAGS};

/// An instruction on the host: (MXCSR in, destination, source) to (result, MXCSR out).
type HostFn = fn(u32, u128, u128) -> (u128, u32);

/// Wraps host code around one instruction: `{x}` is an XMM destination (in/out) holding
/// the destination operand, `{y}` an XMM source, `{g}` a general register (in/out) holding
/// the source's low 64 bits. `$ret` says which of `x` and `g` is the result.
macro_rules! host {
    ($ret:ident, $($t:expr),+) => {{
        fn f(mx: u32, d: u128, s: u128) -> (u128, u32) {
            let mut m = mx;
            let mut saved = 0u32;
            let mut g: u64 = s as u64;
            // SAFETY: u128 and __m128i are both 16 plain bytes.
            let (mut x, y) = unsafe { (transmute::<u128, __m128i>(d), transmute::<u128, __m128i>(s)) };
            // SAFETY: the instructions touch only the named registers and MM0 (declared
            // clobbered, and left by EMMS where used); the host MXCSR is saved first and
            // restored after, through pointers to live locals.
            unsafe {
                asm!(
                    "# {g} {y} {x}",
                    "stmxcsr [{sv}]",
                    "ldmxcsr [{m}]",
                    $($t),+,
                    "stmxcsr [{m}]",
                    "ldmxcsr [{sv}]",
                    sv = in(reg) &mut saved as *mut u32,
                    m = in(reg) &mut m as *mut u32,
                    x = inout(xmm_reg) x,
                    y = in(xmm_reg) y,
                    g = inout(reg) g,
                    out("mm0") _,
                );
            }
            // SAFETY: as above.
            let xv = unsafe { transmute::<__m128i, u128>(x) };
            (host!(@ret $ret, xv, g), m)
        }
        f as HostFn
    }};
    (@ret x, $xv:expr, $g:expr) => {{
        let _ = $g;
        $xv
    }};
    (@ret g, $xv:expr, $g:expr) => {{
        let _ = $xv;
        u128::from($g)
    }};
}

/// Runs `code` on the emulator with its destination and source at `dl`/`sl` (XMM1, XMM2,
/// MM3, memory or GPR) holding `d`/`s`; returns the destination and MXCSR, and checks
/// the MMX transition when an MMX register is involved (`mmx`).
fn emu(code: Code, mx: u32, d: u128, s: u128, dl: Loc, sl: Loc, mmx: bool) -> (u128, u32) {
    let mut f = Fpu {
        mxcsr: mx,
        ..Fpu::default()
    };
    match dl {
        Loc::Xmm(n) => f.set_xmm128(n.into(), d),
        Loc::Mm(n) => f.set_mm(n.into(), d as u64),
        _ => {}
    }
    match sl {
        Loc::Xmm(n) => f.set_xmm128(n.into(), s),
        Loc::Mm(n) => f.set_mm(n.into(), s as u64),
        _ => f.set_io128(s),
    }
    let ftw = f.x87.ftw;
    let r = super::super::execute(&mut f, code, Operands::new([dl, sl, Loc::None], 0, 0));
    assert_eq!(r, Some(Ok(())), "{code:?}");
    assert_eq!(
        f.x87.ftw,
        if mmx { 0 } else { ftw },
        "{code:?} MMX transition"
    );
    let v = match dl {
        Loc::Xmm(n) => f.xmm128(n.into()),
        Loc::Mm(n) => u128::from(f.mm(n.into())),
        _ => u128::from(f.io[IO_DATA0]),
    };
    (v, f.mxcsr)
}

/// Random operands for conversions: float elements biased toward the integer ranges, or
/// integers biased toward the edges of exact representability.
fn operand(r: &mut Rng, w: W, int: bool) -> u128 {
    let mut v = 0u128;
    for i in 0..w.lanes() {
        let e = if int {
            match r.below(4) {
                0 => r.next(),
                1 => (1u64 << r.below(64))
                    .wrapping_add(r.below(64))
                    .wrapping_sub(32),
                2 => (1u64 << r.below(64))
                    .wrapping_neg()
                    .wrapping_add(r.below(3)),
                _ => r.below(1 << 26).wrapping_sub(1 << 25),
            }
        } else if r.below(2) == 0 {
            let (fb, bias) = match w {
                W::S => (23, 127),
                W::D => (52, 1023),
            };
            let x = elem(r, w);
            let exp = bias - 2 + r.below(68);
            (x & !(((1 << 11) - 1) << fb)) | exp << fb
        } else {
            elem(r, w)
        };
        w.set(&mut v, i, e);
    }
    v
}

/// Compares `code` with `host` on random operands.
#[allow(clippy::too_many_arguments)]
fn check(code: Code, host: HostFn, w: W, int: bool, dl: Loc, sl: Loc, mmx: bool, seed: u64) {
    let mut r = Rng::new(seed ^ (code as u64) << 8);
    for _ in 0..10_000 {
        let mx = mxcsr(&mut r);
        let d = vec(&mut r, W::D, None);
        let mut s = operand(&mut r, w, int);
        if sl == Loc::Gpr {
            // A 32-bit general register source reads zero-extended.
            if matches!(code, Code::Cvtsi2ss_xmm_rm32 | Code::Cvtsi2sd_xmm_rm32) {
                s &= 0xffff_ffff;
            }
            s &= u128::from(u64::MAX);
        }
        let want = host(mx, d, s);
        let got = emu(code, mx, d, s, dl, sl, mmx);
        assert_eq!(got, want, "{code:?} mxcsr {mx:#x} d {d:#034x} s {s:#034x}");
    }
}

#[test]
fn xmm_conversions_match_host() {
    use Code::*;
    let (x1, x2) = (Loc::Xmm(1), Loc::Xmm(2));
    let cases: &[(Code, HostFn, W, bool)] = &[
        (
            Cvtss2sd_xmm_xmmm32,
            host!(x, "cvtss2sd {x}, {y}"),
            W::S,
            false,
        ),
        (
            Cvtsd2ss_xmm_xmmm64,
            host!(x, "cvtsd2ss {x}, {y}"),
            W::D,
            false,
        ),
        (
            Cvtps2pd_xmm_xmmm64,
            host!(x, "cvtps2pd {x}, {y}"),
            W::S,
            false,
        ),
        (
            Cvtpd2ps_xmm_xmmm128,
            host!(x, "cvtpd2ps {x}, {y}"),
            W::D,
            false,
        ),
        (
            Cvtdq2ps_xmm_xmmm128,
            host!(x, "cvtdq2ps {x}, {y}"),
            W::S,
            true,
        ),
        (
            Cvtps2dq_xmm_xmmm128,
            host!(x, "cvtps2dq {x}, {y}"),
            W::S,
            false,
        ),
        (
            Cvttps2dq_xmm_xmmm128,
            host!(x, "cvttps2dq {x}, {y}"),
            W::S,
            false,
        ),
        (
            Cvtdq2pd_xmm_xmmm64,
            host!(x, "cvtdq2pd {x}, {y}"),
            W::S,
            true,
        ),
        (
            Cvtpd2dq_xmm_xmmm128,
            host!(x, "cvtpd2dq {x}, {y}"),
            W::D,
            false,
        ),
        (
            Cvttpd2dq_xmm_xmmm128,
            host!(x, "cvttpd2dq {x}, {y}"),
            W::D,
            false,
        ),
    ];
    for (k, &(code, h, w, int)) in cases.iter().enumerate() {
        check(code, h, w, int, x1, x2, false, 10 + k as u64);
        check(code, h, w, int, x1, Loc::Mem, false, 30 + k as u64);
    }
}

#[test]
fn gpr_conversions_match_host() {
    use Code::*;
    let (x1, x2, g) = (Loc::Xmm(1), Loc::Xmm(2), Loc::Gpr);
    let to_xmm: &[(Code, HostFn, W)] = &[
        (Cvtsi2ss_xmm_rm32, host!(x, "cvtsi2ss {x}, {g:e}"), W::S),
        (Cvtsi2ss_xmm_rm64, host!(x, "cvtsi2ss {x}, {g}"), W::D),
        (Cvtsi2sd_xmm_rm32, host!(x, "cvtsi2sd {x}, {g:e}"), W::S),
        (Cvtsi2sd_xmm_rm64, host!(x, "cvtsi2sd {x}, {g}"), W::D),
    ];
    for (k, &(code, h, w)) in to_xmm.iter().enumerate() {
        check(code, h, w, true, x1, g, false, 50 + k as u64);
        check(code, h, w, true, x1, Loc::Mem, false, 55 + k as u64);
    }
    let to_gpr: &[(Code, HostFn, W)] = &[
        (Cvtss2si_r32_xmmm32, host!(g, "cvtss2si {g:e}, {y}"), W::S),
        (Cvtss2si_r64_xmmm32, host!(g, "cvtss2si {g}, {y}"), W::S),
        (Cvttss2si_r32_xmmm32, host!(g, "cvttss2si {g:e}, {y}"), W::S),
        (Cvttss2si_r64_xmmm32, host!(g, "cvttss2si {g}, {y}"), W::S),
        (Cvtsd2si_r32_xmmm64, host!(g, "cvtsd2si {g:e}, {y}"), W::D),
        (Cvtsd2si_r64_xmmm64, host!(g, "cvtsd2si {g}, {y}"), W::D),
        (Cvttsd2si_r32_xmmm64, host!(g, "cvttsd2si {g:e}, {y}"), W::D),
        (Cvttsd2si_r64_xmmm64, host!(g, "cvttsd2si {g}, {y}"), W::D),
    ];
    for (k, &(code, h, w)) in to_gpr.iter().enumerate() {
        check(code, h, w, false, g, x2, false, 60 + k as u64);
        check(code, h, w, false, g, Loc::Mem, false, 70 + k as u64);
    }
}

#[test]
fn mmx_conversions_match_host() {
    use Code::*;
    let (x1, x2, m3) = (Loc::Xmm(1), Loc::Xmm(2), Loc::Mm(3));
    let from_mm: &[(Code, HostFn)] = &[
        (
            Cvtpi2ps_xmm_mmm64,
            host!(x, "movq mm0, {g}", "cvtpi2ps {x}, mm0", "emms"),
        ),
        (
            Cvtpi2pd_xmm_mmm64,
            host!(x, "movq mm0, {g}", "cvtpi2pd {x}, mm0", "emms"),
        ),
    ];
    for (k, &(code, h)) in from_mm.iter().enumerate() {
        check(code, h, W::S, true, x1, m3, true, 80 + k as u64);
        // CVTPI2PD with a memory source is not an MMX instruction.
        // A memory source makes neither CVTPI2PS nor CVTPI2PD an MMX instruction (AMD).
        check(code, h, W::S, true, x1, Loc::Mem, false, 85 + k as u64);
    }
    let to_mm: &[(Code, HostFn, W)] = &[
        (
            Cvtps2pi_mm_xmmm64,
            host!(g, "cvtps2pi mm0, {y}", "movq {g}, mm0", "emms"),
            W::S,
        ),
        (
            Cvttps2pi_mm_xmmm64,
            host!(g, "cvttps2pi mm0, {y}", "movq {g}, mm0", "emms"),
            W::S,
        ),
        (
            Cvtpd2pi_mm_xmmm128,
            host!(g, "cvtpd2pi mm0, {y}", "movq {g}, mm0", "emms"),
            W::D,
        ),
        (
            Cvttpd2pi_mm_xmmm128,
            host!(g, "cvttpd2pi mm0, {y}", "movq {g}, mm0", "emms"),
            W::D,
        ),
    ];
    for (k, &(code, h, w)) in to_mm.iter().enumerate() {
        check(code, h, w, false, m3, x2, true, 90 + k as u64);
        check(code, h, w, false, m3, Loc::Mem, true, 95 + k as u64);
    }
}

#[test]
fn comis_matches_host() {
    use Code::*;
    const FLAGS: u64 = 0x8d5; // OF SF ZF AF PF CF
    let cases: &[(Code, HostFn, W)] = &[
        (
            Comiss_xmm_xmmm32,
            host!(g, "comiss {x}, {y}", "pushfq", "pop {g}"),
            W::S,
        ),
        (
            Comisd_xmm_xmmm64,
            host!(g, "comisd {x}, {y}", "pushfq", "pop {g}"),
            W::D,
        ),
        (
            Ucomiss_xmm_xmmm32,
            host!(g, "ucomiss {x}, {y}", "pushfq", "pop {g}"),
            W::S,
        ),
        (
            Ucomisd_xmm_xmmm64,
            host!(g, "ucomisd {x}, {y}", "pushfq", "pop {g}"),
            W::D,
        ),
    ];
    for &(code, h, w) in cases {
        let mut r = Rng::new(code as u64);
        for _ in 0..20_000 {
            let mx = mxcsr(&mut r);
            let d = vec(&mut r, w, None);
            let s = vec(&mut r, w, Some(d));
            let (hf, hm) = h(mx, d, s);
            let mut f = Fpu {
                mxcsr: mx,
                ..Fpu::default()
            };
            f.set_xmm128(1, d);
            f.set_xmm128(2, s);
            f.io[IO_FLAGS] = 0xdead;
            let ops = Operands::new([Loc::Xmm(1), Loc::Xmm(2), Loc::None], 0, 0);
            assert_eq!(super::super::execute(&mut f, code, ops), Some(Ok(())));
            assert_eq!(
                (f.io[IO_FLAGS], f.mxcsr),
                (hf as u64 & FLAGS, hm),
                "{code:?} mxcsr {mx:#x} d {d:#034x} s {s:#034x}"
            );
        }
    }
}

/// The x87 TOP and tag word after `cvtpi2ps`/`cvtpi2pd` with a memory source, executed
/// after FNINIT and one FLD1 (TOP = 7, only R7 valid).
fn x87_after(pd: bool) -> (u16, u16) {
    let src = [1u32, 2u32];
    let mut env = [0u16; 14];
    // SAFETY: the x87 stack is emptied and its control word reset by the final FNINIT,
    // as the ABI requires; XMM0 is declared clobbered; the pointers are to live locals of
    // the right sizes (FNSTENV writes 28 bytes).
    unsafe {
        if pd {
            asm!(
                "fninit", "fld1", "cvtpi2pd xmm0, qword ptr [{s}]", "fnstenv [{e}]", "fninit",
                s = in(reg) src.as_ptr(), e = in(reg) env.as_mut_ptr(), out("xmm0") _,
            );
        } else {
            asm!(
                "fninit", "fld1", "cvtpi2ps xmm0, qword ptr [{s}]", "fnstenv [{e}]", "fninit",
                s = in(reg) src.as_ptr(), e = in(reg) env.as_mut_ptr(), out("xmm0") _,
            );
        }
    }
    (env[2] >> 11 & 7, env[4])
}

#[test]
fn memory_source_mmx_transition_matches_host() {
    // CVTPI2PD from memory is not an MMX instruction (SDM Vol. 2 "CVTPI2PD").
    assert_eq!(x87_after(true), (7, 0x3fff));
    // CVTPI2PS from memory is one on Intel processors (the SDM makes no exception for it),
    // but AMD processors leave the x87 untouched, and crane86 presents an AMD CPU: compare
    // on an AMD host.
    if crate::host_is_amd() {
        assert_eq!(x87_after(false), (7, 0x3fff));
    }
    for (code, want) in [
        (Code::Cvtpi2ps_xmm_mmm64, (7, 0x3fff)),
        (Code::Cvtpi2pd_xmm_mmm64, (7, 0x3fff)),
    ] {
        let mut f = Fpu::default();
        f.x87.fsw = 7 << 11;
        f.x87.ftw = 0x3fff;
        f.io[IO_DATA0] = 0x0000_0002_0000_0001;
        let ops = Operands::new([Loc::Xmm(0), Loc::Mem, Loc::None], 0, 0);
        assert_eq!(super::super::execute(&mut f, code, ops), Some(Ok(())));
        assert_eq!((f.x87.fsw >> 11 & 7, f.x87.ftw), want, "{code:?}");
    }
}
