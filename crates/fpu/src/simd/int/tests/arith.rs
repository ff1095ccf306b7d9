//! Arithmetic, comparisons, logic and shifts against the host CPU.

use iced_x86::Code;

use super::{both, check_cases, host_mm, host_xmm, mm2, xmm, xmm2, HostMm, HostXmm, Rng};

#[test]
fn add_sub_against_host() {
    let cases = [
        both!(Paddb_mm_mmm64, Paddb_xmm_xmmm128, "paddb"),
        both!(Paddw_mm_mmm64, Paddw_xmm_xmmm128, "paddw"),
        both!(Paddd_mm_mmm64, Paddd_xmm_xmmm128, "paddd"),
        both!(Paddq_mm_mmm64, Paddq_xmm_xmmm128, "paddq"),
        both!(Psubb_mm_mmm64, Psubb_xmm_xmmm128, "psubb"),
        both!(Psubw_mm_mmm64, Psubw_xmm_xmmm128, "psubw"),
        both!(Psubd_mm_mmm64, Psubd_xmm_xmmm128, "psubd"),
        both!(Psubq_mm_mmm64, Psubq_xmm_xmmm128, "psubq"),
        both!(Paddsb_mm_mmm64, Paddsb_xmm_xmmm128, "paddsb"),
        both!(Paddsw_mm_mmm64, Paddsw_xmm_xmmm128, "paddsw"),
        both!(Psubsb_mm_mmm64, Psubsb_xmm_xmmm128, "psubsb"),
        both!(Psubsw_mm_mmm64, Psubsw_xmm_xmmm128, "psubsw"),
        both!(Paddusb_mm_mmm64, Paddusb_xmm_xmmm128, "paddusb"),
        both!(Paddusw_mm_mmm64, Paddusw_xmm_xmmm128, "paddusw"),
        both!(Psubusb_mm_mmm64, Psubusb_xmm_xmmm128, "psubusb"),
        both!(Psubusw_mm_mmm64, Psubusw_xmm_xmmm128, "psubusw"),
    ];
    check_cases(&cases, 400, 1, Rng::u128);
}

#[test]
fn multiply_average_min_max_against_host() {
    let cases = [
        both!(Pmullw_mm_mmm64, Pmullw_xmm_xmmm128, "pmullw"),
        both!(Pmulhw_mm_mmm64, Pmulhw_xmm_xmmm128, "pmulhw"),
        both!(Pmulhuw_mm_mmm64, Pmulhuw_xmm_xmmm128, "pmulhuw"),
        both!(Pmuludq_mm_mmm64, Pmuludq_xmm_xmmm128, "pmuludq"),
        both!(Pmaddwd_mm_mmm64, Pmaddwd_xmm_xmmm128, "pmaddwd"),
        both!(Pavgb_mm_mmm64, Pavgb_xmm_xmmm128, "pavgb"),
        both!(Pavgw_mm_mmm64, Pavgw_xmm_xmmm128, "pavgw"),
        both!(Pminub_mm_mmm64, Pminub_xmm_xmmm128, "pminub"),
        both!(Pmaxub_mm_mmm64, Pmaxub_xmm_xmmm128, "pmaxub"),
        both!(Pminsw_mm_mmm64, Pminsw_xmm_xmmm128, "pminsw"),
        both!(Pmaxsw_mm_mmm64, Pmaxsw_xmm_xmmm128, "pmaxsw"),
        both!(Psadbw_mm_mmm64, Psadbw_xmm_xmmm128, "psadbw"),
    ];
    check_cases(&cases, 400, 2, Rng::u128);
}

#[test]
fn pmaddwd_wraps_the_one_overflowing_sum() {
    let r = xmm2(Code::Pmaddwd_xmm_xmmm128, 0x8000_8000, 0x8000_8000, 0);
    assert_eq!(r, 0x8000_0000);
}

#[test]
fn compare_and_logic_against_host() {
    let cases = [
        both!(Pcmpeqb_mm_mmm64, Pcmpeqb_xmm_xmmm128, "pcmpeqb"),
        both!(Pcmpeqw_mm_mmm64, Pcmpeqw_xmm_xmmm128, "pcmpeqw"),
        both!(Pcmpeqd_mm_mmm64, Pcmpeqd_xmm_xmmm128, "pcmpeqd"),
        both!(Pcmpgtb_mm_mmm64, Pcmpgtb_xmm_xmmm128, "pcmpgtb"),
        both!(Pcmpgtw_mm_mmm64, Pcmpgtw_xmm_xmmm128, "pcmpgtw"),
        both!(Pcmpgtd_mm_mmm64, Pcmpgtd_xmm_xmmm128, "pcmpgtd"),
        both!(Pand_mm_mmm64, Pand_xmm_xmmm128, "pand"),
        both!(Pandn_mm_mmm64, Pandn_xmm_xmmm128, "pandn"),
        both!(Por_mm_mmm64, Por_xmm_xmmm128, "por"),
        both!(Pxor_mm_mmm64, Pxor_xmm_xmmm128, "pxor"),
        xmm!(Andps_xmm_xmmm128, "andps"),
        xmm!(Andnps_xmm_xmmm128, "andnps"),
        xmm!(Orps_xmm_xmmm128, "orps"),
        xmm!(Xorps_xmm_xmmm128, "xorps"),
        xmm!(Andpd_xmm_xmmm128, "andpd"),
        xmm!(Andnpd_xmm_xmmm128, "andnpd"),
        xmm!(Orpd_xmm_xmmm128, "orpd"),
        xmm!(Xorpd_xmm_xmmm128, "xorpd"),
    ];
    // Sources equal to the destination in some elements are what PCMPEQ needs to see:
    // mix random sources with ones made from a reused value.
    check_cases(&cases, 300, 3, Rng::u128);
    let mut rng = Rng::new(33);
    for case in &cases {
        for _ in 0..100 {
            let a = rng.u128();
            let b = a ^ (rng.u128() & rng.u128() & rng.u128());
            if let Some((code, host)) = case.xmm {
                assert_eq!(xmm2(code, a, b, 0), host(a, b), "{code:?}");
            }
            if let Some((code, host)) = case.mm {
                let (a, b) = (a as u64, b as u64);
                assert_eq!(mm2(code, a, b, 0), host(a, b), "{code:?}");
            }
        }
    }
}

/// A shift count: small ones of every size, huge ones, and ones whose only large bits are
/// above bit 31 or in the ignored upper quadword.
fn count(rng: &mut Rng) -> u128 {
    let upper = u128::from(rng.next()) << 64;
    upper
        | match rng.next() % 4 {
            0 | 1 => u128::from(rng.next() % 70),
            2 => u128::from((rng.next() % 70) | 1 << (32 + rng.next() % 32)),
            _ => u128::from(rng.next()),
        }
}

#[test]
fn shifts_by_register_against_host() {
    let cases = [
        both!(Psllw_mm_mmm64, Psllw_xmm_xmmm128, "psllw"),
        both!(Pslld_mm_mmm64, Pslld_xmm_xmmm128, "pslld"),
        both!(Psllq_mm_mmm64, Psllq_xmm_xmmm128, "psllq"),
        both!(Psrlw_mm_mmm64, Psrlw_xmm_xmmm128, "psrlw"),
        both!(Psrld_mm_mmm64, Psrld_xmm_xmmm128, "psrld"),
        both!(Psrlq_mm_mmm64, Psrlq_xmm_xmmm128, "psrlq"),
        both!(Psraw_mm_mmm64, Psraw_xmm_xmmm128, "psraw"),
        both!(Psrad_mm_mmm64, Psrad_xmm_xmmm128, "psrad"),
    ];
    check_cases(&cases, 400, 4, count);
}

/// Runs a shift-by-immediate form (one register operand) on `a` in XMM or MMX register 5.
fn shift_imm(code: Code, mmx: bool, a: u128, imm: u8) -> u128 {
    use crate::operands::Loc;
    let mut rng = Rng::new(u64::from(imm) + 1);
    let mut f = super::junk_state(&mut rng);
    let mut want = f;
    let r = if mmx {
        f.set_mm(5, a as u64);
        super::exec(&mut f, code, [Loc::Mm(5), Loc::None, Loc::None], imm);
        want.set_mm(5, f.mm(5));
        want.mmx_enter();
        u128::from(f.mm(5))
    } else {
        f.set_xmm128(5, a);
        super::exec(&mut f, code, [Loc::Xmm(5), Loc::None, Loc::None], imm);
        want.set_xmm128(5, f.xmm128(5));
        f.xmm128(5)
    };
    assert_eq!(f, want, "{code:?} wrote more than its destination");
    r
}

#[test]
fn shifts_by_immediate_equal_shifts_by_register() {
    use Code as C;
    let pairs = [
        (
            C::Psllw_mm_imm8,
            C::Psllw_mm_mmm64,
            C::Psllw_xmm_imm8,
            C::Psllw_xmm_xmmm128,
        ),
        (
            C::Pslld_mm_imm8,
            C::Pslld_mm_mmm64,
            C::Pslld_xmm_imm8,
            C::Pslld_xmm_xmmm128,
        ),
        (
            C::Psllq_mm_imm8,
            C::Psllq_mm_mmm64,
            C::Psllq_xmm_imm8,
            C::Psllq_xmm_xmmm128,
        ),
        (
            C::Psrlw_mm_imm8,
            C::Psrlw_mm_mmm64,
            C::Psrlw_xmm_imm8,
            C::Psrlw_xmm_xmmm128,
        ),
        (
            C::Psrld_mm_imm8,
            C::Psrld_mm_mmm64,
            C::Psrld_xmm_imm8,
            C::Psrld_xmm_xmmm128,
        ),
        (
            C::Psrlq_mm_imm8,
            C::Psrlq_mm_mmm64,
            C::Psrlq_xmm_imm8,
            C::Psrlq_xmm_xmmm128,
        ),
        (
            C::Psraw_mm_imm8,
            C::Psraw_mm_mmm64,
            C::Psraw_xmm_imm8,
            C::Psraw_xmm_xmmm128,
        ),
        (
            C::Psrad_mm_imm8,
            C::Psrad_mm_mmm64,
            C::Psrad_xmm_imm8,
            C::Psrad_xmm_xmmm128,
        ),
    ];
    let mut rng = Rng::new(5);
    for (mm_imm, mm_reg, xmm_imm, xmm_reg) in pairs {
        for imm in 0..=255u8 {
            let a = rng.u128();
            let want = xmm2(xmm_reg, a, u128::from(imm), 0);
            assert_eq!(shift_imm(xmm_imm, false, a, imm), want, "{xmm_imm:?} {imm}");
            let want = mm2(mm_reg, a as u64, u64::from(imm), 0);
            assert_eq!(
                shift_imm(mm_imm, true, a, imm),
                u128::from(want),
                "{mm_imm:?} {imm}"
            );
        }
    }
}

#[test]
fn shifts_by_immediate_against_host() {
    let mut rng = Rng::new(6);
    let xmm_cases: [(Code, u8, HostXmm); 8] = [
        (Code::Psllw_xmm_imm8, 3, host_xmm!("psllw xmm0, 3")),
        (Code::Psrad_xmm_imm8, 31, host_xmm!("psrad xmm0, 31")),
        (Code::Psraw_xmm_imm8, 200, host_xmm!("psraw xmm0, 200")),
        (Code::Psrlq_xmm_imm8, 63, host_xmm!("psrlq xmm0, 63")),
        (Code::Pslldq_xmm_imm8, 5, host_xmm!("pslldq xmm0, 5")),
        (Code::Pslldq_xmm_imm8, 16, host_xmm!("pslldq xmm0, 16")),
        (Code::Psrldq_xmm_imm8, 15, host_xmm!("psrldq xmm0, 15")),
        (Code::Psrldq_xmm_imm8, 255, host_xmm!("psrldq xmm0, 255")),
    ];
    let mm_cases: [(Code, u8, HostMm); 3] = [
        (Code::Psllq_mm_imm8, 64, host_mm!("psllq mm0, 64")),
        (Code::Psrlw_mm_imm8, 9, host_mm!("psrlw mm0, 9")),
        (Code::Psrad_mm_imm8, 33, host_mm!("psrad mm0, 33")),
    ];
    for _ in 0..200 {
        let a = rng.u128();
        for (code, imm, host) in xmm_cases {
            assert_eq!(shift_imm(code, false, a, imm), host(a, 0), "{code:?} {imm}");
        }
        for (code, imm, host) in mm_cases {
            let want = u128::from(host(a as u64, 0));
            assert_eq!(shift_imm(code, true, a, imm), want, "{code:?} {imm}");
        }
    }
    // Every byte count, against the definition.
    for imm in 0..=255u8 {
        let a = rng.u128();
        let want = if imm > 15 { 0 } else { a << (8 * imm) };
        assert_eq!(shift_imm(Code::Pslldq_xmm_imm8, false, a, imm), want);
        let want = if imm > 15 { 0 } else { a >> (8 * imm) };
        assert_eq!(shift_imm(Code::Psrldq_xmm_imm8, false, a, imm), want);
    }
}
