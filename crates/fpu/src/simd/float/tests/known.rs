//! Known cases: the RCP/RSQRT error bound, unmasked exceptions, #MF, and what is claimed.

use iced_x86::{Code, EncodingKind, OpCodeOperandKind as K};

use super::{emu, emu_fault, Rng};
use crate::operands::{Loc, Operands};
use crate::simd::float::lane::W;
use crate::simd::SimdFault;
use crate::soft::{DE, IE, OE, PE, UE, ZE};
use crate::state::{Fpu, IO_DATA0, IO_FLAGS};

/// The largest relative error the SDM allows RCP and RSQRT: 1.5 * 2^-12.
const APPROX_MAX_REL_ERROR: f64 = 1.5 / 4096.0;

/// Four copies of a single-precision value.
fn splat(x: u32) -> u128 {
    u128::from(x) * 0x0000_0001_0000_0001_0000_0001_0000_0001
}

/// Builds a 128-bit value from four single-precision elements, element 0 first.
fn ps(e: [f32; 4]) -> u128 {
    let mut v = 0;
    for (i, x) in e.into_iter().enumerate() {
        W::S.set(&mut v, i, u64::from(x.to_bits()));
    }
    v
}

#[test]
fn approximations_are_within_the_sdm_bound() {
    let mut r = Rng::new(99);
    for _ in 0..200_000 {
        let x = (r.next() as u32) & 0x7fff_ffff;
        let (xe, f) = (x >> 23, f64::from(f32::from_bits(x)));
        if xe == 0 || xe == 0xff {
            continue; // zeros, denormals, infinities and NaNs: the special-case test
        }
        let (rc, _) = emu(Code::Rcpss_xmm_xmmm32, 0x1f80, 0, splat(x), 0, false);
        let (rs, m) = emu(Code::Rsqrtss_xmm_xmmm32, 0x1f80, 0, splat(x), 0, false);
        assert_eq!(m, 0x1f80, "no flags");
        let rc = f64::from(f32::from_bits(rc as u32));
        let rs = f64::from(f32::from_bits(rs as u32));
        let exact = 1.0 / f;
        if exact < f64::from(f32::MIN_POSITIVE) {
            assert_eq!(rc, 0.0, "tiny 1/{f:e} flushed");
        } else {
            assert!(
                ((rc - exact) / exact).abs() <= APPROX_MAX_REL_ERROR,
                "1/{f:e}"
            );
        }
        let exact = 1.0 / f.sqrt();
        assert!(
            ((rs - exact) / exact).abs() <= APPROX_MAX_REL_ERROR,
            "1/sqrt {f:e}"
        );
    }
}

/// MXCSR with all exceptions masked except `unmasked` (flags in MXCSR bit order).
fn mx_unmask(unmasked: u32) -> u32 {
    0x1f80 & !(unmasked << 7)
}

#[test]
fn unmasked_pre_computation_exception_hides_post_computation_flags() {
    // Element 0: SNaN + 1 (IE, unmasked); element 1: overflow (OE, PE masked).
    let snan = f32::from_bits(0x7fa0_0000);
    let d = ps([snan, f32::MAX, 1.0, 2.0]);
    let s = ps([1.0, f32::MAX, 1.0, 2.0]);
    let (r, v, m) = emu_fault(Code::Addps_xmm_xmmm128, mx_unmask(IE), d, s, 0);
    assert_eq!(r, Err(SimdFault::Xm));
    assert_eq!(v, d, "destination unchanged");
    assert_eq!(m, mx_unmask(IE) | IE, "only the pre-computation flag");
    // The same with IE masked: the masked response and every flag.
    let (r, v, m) = emu_fault(Code::Addps_xmm_xmmm128, 0x1f80, d, s, 0);
    assert_eq!(r, Ok(()));
    assert_eq!(W::S.get(v, 0), 0x7fe0_0000);
    assert_eq!(W::S.get(v, 1), 0x7f80_0000);
    assert_eq!(m, 0x1f80 | IE | OE | PE);
}

#[test]
fn unmasked_divide_by_zero_and_denormal() {
    let d = ps([1.0, 1.0, 0.0, 3.0]);
    let s = ps([0.0, 3.0, 1.0, 1.0]);
    let (r, v, m) = emu_fault(Code::Divps_xmm_xmmm128, mx_unmask(ZE), d, s, 0);
    assert_eq!((r, v, m), (Err(SimdFault::Xm), d, mx_unmask(ZE) | ZE));
    // A denormal operand with DE unmasked faults before the computation; a masked DE in
    // another element is reported along with it.
    let den = f32::from_bits(1);
    let d = ps([den, 1.0, 1.0, 1.0]);
    let s = ps([1.0, 3.0, 1.0, 1.0]);
    let (r, v, m) = emu_fault(Code::Mulps_xmm_xmmm128, mx_unmask(DE), d, s, 0);
    assert_eq!((r, v, m), (Err(SimdFault::Xm), d, mx_unmask(DE) | DE));
    // With DAZ the denormal reads as zero: no DE, no fault.
    let (r, _, m) = emu_fault(Code::Mulps_xmm_xmmm128, mx_unmask(DE) | 0x40, d, s, 0);
    assert_eq!((r, m), (Ok(()), mx_unmask(DE) | 0x40));
}

#[test]
fn unmasked_post_computation_exceptions() {
    // Overflow unmasked: OE, and PE only if the result rounded with unbounded exponent is
    // inexact (here exact: MAX * 2); a masked DE of another element is reported too (no
    // unmasked pre-computation exception).
    let den = f32::from_bits(0x10);
    let d = ps([f32::MAX, den, 1.0, 1.0]);
    let s = ps([2.0, 1.0, 1.0, 1.0]);
    let (r, v, m) = emu_fault(Code::Mulps_xmm_xmmm128, mx_unmask(OE), d, s, 0);
    assert_eq!((r, v, m), (Err(SimdFault::Xm), d, mx_unmask(OE) | OE | DE));
    // MAX * 1.5 needs 26 significant bits: PE too. Masked, PE always comes with OE.
    let s = ps([1.5, 1.0, 1.0, 1.0]);
    let (r, v, m) = emu_fault(Code::Mulss_xmm_xmmm32, mx_unmask(OE), d, s, 0);
    assert_eq!((r, v, m), (Err(SimdFault::Xm), d, mx_unmask(OE) | OE | PE));
    let s = ps([2.0, 1.0, 1.0, 1.0]);
    let (r, _, m) = emu_fault(Code::Mulss_xmm_xmmm32, 0x1f80, d, s, 0);
    assert_eq!((r, m), (Ok(()), 0x1f80 | OE | PE));
    // Double precision: MAX * 2 exact, MAX * 1.5 not.
    let pd = |a: f64, b: f64| u128::from(a.to_bits()) | u128::from(b.to_bits()) << 64;
    let d = pd(f64::MAX, 1.0);
    let (r, _, m) = emu_fault(Code::Mulsd_xmm_xmmm64, mx_unmask(OE), d, pd(2.0, 1.0), 0);
    assert_eq!((r, m), (Err(SimdFault::Xm), mx_unmask(OE) | OE));
    let (r, _, m) = emu_fault(Code::Mulsd_xmm_xmmm64, mx_unmask(OE), d, pd(1.5, 1.0), 0);
    assert_eq!((r, m), (Err(SimdFault::Xm), mx_unmask(OE) | OE | PE));
    // Underflow unmasked: an exact tiny result (min normal / 2) still reports UE; masked
    // it reports nothing.
    let d = ps([f32::MIN_POSITIVE, 1.0, 1.0, 1.0]);
    let s = ps([0.5, 1.0, 1.0, 1.0]);
    let (r, v, m) = emu_fault(Code::Mulss_xmm_xmmm32, mx_unmask(UE), d, s, 0);
    assert_eq!((r, v, m), (Err(SimdFault::Xm), d, mx_unmask(UE) | UE));
    let (r, _, m) = emu_fault(Code::Mulss_xmm_xmmm32, 0x1f80, d, s, 0);
    assert_eq!((r, m), (Ok(()), 0x1f80));
    // (1 + 2^-23) * 2^-127 has 24 significant bits: exact with unbounded exponent (UE
    // alone when unmasked) but not as a denormal (UE and PE when masked).
    let d = ps([f32::from_bits(0x0080_0001), 1.0, 1.0, 1.0]);
    let (r, _, m) = emu_fault(Code::Mulss_xmm_xmmm32, mx_unmask(UE), d, s, 0);
    assert_eq!((r, m), (Err(SimdFault::Xm), mx_unmask(UE) | UE));
    let (r, _, m) = emu_fault(Code::Mulss_xmm_xmmm32, 0x1f80, d, s, 0);
    assert_eq!((r, m), (Ok(()), 0x1f80 | UE | PE));
    // FTZ does not apply when UE is unmasked.
    let (r, _, m) = emu_fault(Code::Mulss_xmm_xmmm32, mx_unmask(UE) | 0x8000, d, s, 0);
    assert_eq!((r, m), (Err(SimdFault::Xm), mx_unmask(UE) | 0x8000 | UE));
    // (1 + 2^-23) * 2^-126 / 1.25 is inexact at any precision: UE and PE.
    let s = ps([1.25, 1.0, 1.0, 1.0]);
    let (r, _, m) = emu_fault(Code::Divss_xmm_xmmm32, mx_unmask(UE), d, s, 0);
    assert_eq!((r, m), (Err(SimdFault::Xm), mx_unmask(UE) | UE | PE));
    // CVTSD2SS of a double below the single range with few significant bits: UE alone.
    let d = pd(0.0, 0.0);
    let s = pd(f64::from_bits(0x3690_0000_0000_0000), 0.0); // 2^-150
    let (r, _, m) = emu_fault(Code::Cvtsd2ss_xmm_xmmm64, mx_unmask(UE), d, s, 0);
    assert_eq!((r, m), (Err(SimdFault::Xm), mx_unmask(UE) | UE));
    let (r, v, m) = emu_fault(Code::Cvtsd2ss_xmm_xmmm64, 0x1f80, d, s, 0);
    assert_eq!((r, v, m), (Ok(()), 0, 0x1f80 | UE | PE));
    // Precision unmasked.
    let d = ps([1.0, 0.0, 0.0, 0.0]);
    let s = ps([1.0e-10, 0.0, 0.0, 0.0]);
    let (r, v, m) = emu_fault(Code::Addss_xmm_xmmm32, mx_unmask(PE), d, s, 0);
    assert_eq!((r, v, m), (Err(SimdFault::Xm), d, mx_unmask(PE) | PE));
    // ROUNDSS with imm8[3] set ignores the precision exception even when unmasked.
    let s = ps([2.5, 0.0, 0.0, 0.0]);
    let (r, v, _) = emu_fault(Code::Roundss_xmm_xmmm32_imm8, mx_unmask(PE), d, s, 8);
    assert_eq!((r, W::S.get(v, 0)), (Ok(()), u64::from(2.0f32.to_bits())));
    let (r, _, m) = emu_fault(Code::Roundss_xmm_xmmm32_imm8, mx_unmask(PE), d, s, 0);
    assert_eq!((r, m), (Err(SimdFault::Xm), mx_unmask(PE) | PE));
}

#[test]
fn comis_and_conversions_with_unmasked_invalid() {
    let qnan = ps([f32::NAN, 0.0, 0.0, 0.0]);
    let one = ps([1.0, 0.0, 0.0, 0.0]);
    let ops = Operands::new([Loc::Xmm(1), Loc::Xmm(2), Loc::None], 0, 0);
    let run = |code, mx| {
        let mut f = Fpu {
            mxcsr: mx,
            ..Fpu::default()
        };
        f.set_xmm128(1, qnan);
        f.set_xmm128(2, one);
        f.io[IO_FLAGS] = 0x1234;
        let r = super::super::execute(&mut f, code, ops).expect("claimed");
        (r, f.io[IO_FLAGS], f.mxcsr)
    };
    // COMISS signals on a QNaN; UCOMISS does not.
    let m = mx_unmask(IE);
    assert_eq!(
        run(Code::Comiss_xmm_xmmm32, m),
        (Err(SimdFault::Xm), 0x1234, m | IE)
    );
    assert_eq!(run(Code::Ucomiss_xmm_xmmm32, m), (Ok(()), 0x45, m));
    // CVTSS2SI of a NaN: masked gives the integer indefinite, unmasked leaves the GPR.
    let mut f = Fpu::default();
    f.set_xmm128(2, qnan);
    f.io[IO_DATA0] = 7;
    let ops = Operands::new([Loc::Gpr, Loc::Xmm(2), Loc::None], 0, 0);
    let code = Code::Cvtss2si_r64_xmmm32;
    assert_eq!(super::super::execute(&mut f, code, ops), Some(Ok(())));
    assert_eq!((f.io[IO_DATA0], f.mxcsr), (1 << 63, 0x1f80 | IE));
    f.mxcsr = m;
    f.io[IO_DATA0] = 7;
    let r = super::super::execute(&mut f, Code::Cvtss2si_r32_xmmm32, ops);
    assert_eq!((r, f.io[IO_DATA0]), (Some(Err(SimdFault::Xm)), 7));
}

#[test]
fn mmx_forms_check_pending_x87_exceptions_first() {
    let x_m = Operands::new([Loc::Xmm(1), Loc::Mm(3), Loc::None], 0, 0);
    let x_mem = Operands::new([Loc::Xmm(1), Loc::Mem, Loc::None], 0, 0);
    let m_x = Operands::new([Loc::Mm(3), Loc::Xmm(2), Loc::None], 0, 0);
    let pending = || {
        let mut f = Fpu::default();
        f.x87.fsw = 0x80 | 0x01 | 5 << 11;
        f.mxcsr = mx_unmask(PE);
        f.set_mm(3, 0x0000_0003_ffff_ffff);
        f
    };
    for (code, ops) in [
        (Code::Cvtpi2ps_xmm_mmm64, x_m),
        (Code::Cvtpi2pd_xmm_mmm64, x_m),
        (Code::Cvtps2pi_mm_xmmm64, m_x),
        (Code::Cvttpd2pi_mm_xmmm128, m_x),
    ] {
        let mut f = pending();
        let before = f;
        assert_eq!(
            super::super::execute(&mut f, code, ops),
            Some(Err(SimdFault::Mf))
        );
        assert_eq!(f, before, "{code:?} changed state");
    }
    // CVTPI2PD from memory is no MMX instruction: no #MF, x87 untouched.
    let mut f = pending();
    f.io[IO_DATA0] = 0xffff_fffe_0000_0005;
    let code = Code::Cvtpi2pd_xmm_mmm64;
    assert_eq!(super::super::execute(&mut f, code, x_mem), Some(Ok(())));
    assert_eq!((f.x87.fsw, f.x87.ftw), (0x80 | 0x01 | 5 << 11, 0x5555));
    assert_eq!(f.xmm[1], [5f64.to_bits(), (-2f64).to_bits()]);
    // An unmasked SIMD exception does not make the MMX transition either.
    let mut f = Fpu {
        mxcsr: mx_unmask(PE),
        ..Fpu::default()
    };
    f.set_xmm128(2, ps([1.5, 2.0, 0.0, 0.0]));
    let before = f.x87;
    let r = super::super::execute(&mut f, Code::Cvtps2pi_mm_xmmm64, m_x);
    assert_eq!((r, f.x87), (Some(Err(SimdFault::Xm)), before));
    // And success does: TOP = 0, all tags valid, MM3 written.
    f.mxcsr = 0x1f80;
    f.x87.fsw = 3 << 11;
    let r = super::super::execute(&mut f, Code::Cvtps2pi_mm_xmmm64, m_x);
    assert_eq!(r, Some(Ok(())));
    assert_eq!(
        (f.x87.fsw, f.x87.ftw, f.mm(3)),
        (0, 0, 0x0000_0002_0000_0002)
    );
}

/// The operand locations of a claimed code's form, with `mem` choosing memory for its
/// register-or-memory operand.
fn form(code: Code, mem: bool) -> Operands {
    let mut locs = [Loc::None; 3];
    let mut n = 0;
    for &k in code.op_code().op_kinds() {
        let loc = match k {
            K::xmm_reg => Loc::Xmm(1),
            K::xmm_or_mem if mem => Loc::Mem,
            K::xmm_or_mem => Loc::Xmm(2),
            K::mm_reg => Loc::Mm(3),
            K::mm_or_mem if mem => Loc::Mem,
            K::mm_or_mem => Loc::Mm(4),
            K::r32_reg | K::r64_reg => Loc::Gpr,
            K::r32_or_mem | K::r64_or_mem if mem => Loc::Mem,
            K::r32_or_mem | K::r64_or_mem => Loc::Gpr,
            K::imm8 => continue,
            other => panic!("{code:?}: unexpected operand kind {other:?}"),
        };
        locs[n] = loc;
        n += 1;
    }
    Operands::new(locs, 0x35, 0)
}

#[test]
fn every_claimed_form_executes() {
    let claimed: Vec<Code> = Code::values()
        .filter(|&c| super::super::claims(c))
        .collect();
    assert_eq!(claimed.len(), 80);
    for code in claimed {
        assert_eq!(code.op_code().encoding(), EncodingKind::Legacy, "{code:?}");
        for mem in [false, true] {
            let mut f = Fpu::default();
            let r = super::super::execute(&mut f, code, form(code, mem));
            assert_eq!(r, Some(Ok(())), "{code:?} mem {mem}");
        }
    }
    // Neighbours that are not ours are left to other modules.
    for code in [
        Code::VEX_Vaddps_xmm_xmm_xmmm128,
        Code::Andps_xmm_xmmm128,
        Code::Movss_xmm_xmmm32,
    ] {
        assert!(!super::super::claims(code));
        let ops = Operands::new([Loc::Xmm(1), Loc::Xmm(2), Loc::None], 0, 0);
        assert_eq!(super::super::execute(&mut Fpu::default(), code, ops), None);
    }
}

#[test]
fn dot_product_stages_fault_separately() {
    let inf = f32::INFINITY;
    // The multiplies are exact; the last add is inf + -inf: IE in the third stage only.
    let d = ps([inf, 1.0, -inf, 1.0]);
    let s = ps([1.0; 4]);
    let code = Code::Dpps_xmm_xmmm128_imm8;
    let (r, v, m) = emu_fault(code, mx_unmask(IE), d, s, 0xff);
    assert_eq!((r, v, m), (Err(SimdFault::Xm), d, mx_unmask(IE) | IE));
    let (r, v, m) = emu_fault(code, 0x1f80, d, s, 0xf5);
    assert_eq!(
        (r, v, m),
        (Ok(()), 0x0000_0000_ffc0_0000_0000_0000_ffc0_0000, 0x1f81)
    );
    // An inexact product with PE unmasked faults in the first stage, before the adds'
    // invalid operation is seen.
    let d = ps([inf, 1.0 / 3.0, -inf, 1.0]);
    let s = ps([1.0, 1.0 / 3.0, 1.0, 1.0]);
    let (r, v, m) = emu_fault(code, mx_unmask(IE | PE), d, s, 0xff);
    assert_eq!((r, v, m), (Err(SimdFault::Xm), d, mx_unmask(IE | PE) | PE));
    // Masked, the first stage's PE is recorded when the last stage faults.
    let (r, _, m) = emu_fault(code, mx_unmask(IE), d, s, 0xff);
    assert_eq!((r, m), (Err(SimdFault::Xm), mx_unmask(IE) | IE | PE));
}
