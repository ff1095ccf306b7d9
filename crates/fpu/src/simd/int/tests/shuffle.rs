//! Shuffles, unpacks, packs and word insertion against the host CPU.

use iced_x86::Code;

use super::{both, check_cases, host_mm, host_xmm, mm2, xmm, xmm2, HostMm, HostXmm, Rng};

/// `(code, imm, host)` for an XMM instruction with an immediate, one per listed imm8.
macro_rules! imm_xmm {
    ($code:ident, $m:literal, [$($imm:literal),*]) => {
        [$((Code::$code, $imm, host_xmm!(concat!($m, " xmm0, xmm1, ", $imm)))),*]
    };
}

/// `(code, imm, host)` for an MMX instruction with an immediate, one per listed imm8.
macro_rules! imm_mm {
    ($code:ident, $m:literal, [$($imm:literal),*]) => {
        [$((Code::$code, $imm, host_mm!(concat!($m, " mm0, mm1, ", $imm)))),*]
    };
}

pub(super) use {imm_mm, imm_xmm};

/// Checks immediate forms on random inputs against the host.
pub(super) fn check_imm(
    xmm_cases: &[(Code, u8, HostXmm)],
    mm_cases: &[(Code, u8, HostMm)],
    seed: u64,
) {
    let mut rng = Rng::new(seed);
    for _ in 0..150 {
        let (a, b) = (rng.u128(), rng.u128());
        for &(code, imm, host) in xmm_cases {
            assert_eq!(xmm2(code, a, b, imm), host(a, b), "{code:?} imm={imm}");
        }
        for &(code, imm, host) in mm_cases {
            let (a, b) = (a as u64, b as u64);
            assert_eq!(mm2(code, a, b, imm), host(a, b), "{code:?} imm={imm}");
        }
    }
}

#[test]
fn shuffles_against_host() {
    let mut xmm_cases = Vec::new();
    xmm_cases.extend(imm_xmm!(
        Pshufd_xmm_xmmm128_imm8,
        "pshufd",
        [0, 27, 228, 78, 177, 57, 147, 255, 114, 216, 3, 192]
    ));
    xmm_cases.extend(imm_xmm!(
        Pshufhw_xmm_xmmm128_imm8,
        "pshufhw",
        [0, 27, 228, 78, 177, 57, 147, 255, 114, 216, 3, 192]
    ));
    xmm_cases.extend(imm_xmm!(
        Pshuflw_xmm_xmmm128_imm8,
        "pshuflw",
        [0, 27, 228, 78, 177, 57, 147, 255, 114, 216, 3, 192]
    ));
    xmm_cases.extend(imm_xmm!(
        Shufps_xmm_xmmm128_imm8,
        "shufps",
        [0, 27, 228, 78, 177, 57, 147, 255, 114, 216, 3, 192]
    ));
    xmm_cases.extend(imm_xmm!(
        Shufpd_xmm_xmmm128_imm8,
        "shufpd",
        [0, 1, 2, 3, 4, 255]
    ));
    let mm_cases = imm_mm!(
        Pshufw_mm_mmm64_imm8,
        "pshufw",
        [0, 27, 228, 78, 177, 57, 147, 255, 114, 216, 3, 192]
    );
    check_imm(&xmm_cases, &mm_cases, 7);
}

#[test]
fn unpacks_and_packs_against_host() {
    let cases = [
        both!(Punpcklbw_mm_mmm32, Punpcklbw_xmm_xmmm128, "punpcklbw"),
        both!(Punpcklwd_mm_mmm32, Punpcklwd_xmm_xmmm128, "punpcklwd"),
        both!(Punpckldq_mm_mmm32, Punpckldq_xmm_xmmm128, "punpckldq"),
        both!(Punpckhbw_mm_mmm64, Punpckhbw_xmm_xmmm128, "punpckhbw"),
        both!(Punpckhwd_mm_mmm64, Punpckhwd_xmm_xmmm128, "punpckhwd"),
        both!(Punpckhdq_mm_mmm64, Punpckhdq_xmm_xmmm128, "punpckhdq"),
        xmm!(Punpcklqdq_xmm_xmmm128, "punpcklqdq"),
        xmm!(Punpckhqdq_xmm_xmmm128, "punpckhqdq"),
        xmm!(Unpcklps_xmm_xmmm128, "unpcklps"),
        xmm!(Unpckhps_xmm_xmmm128, "unpckhps"),
        xmm!(Unpcklpd_xmm_xmmm128, "unpcklpd"),
        xmm!(Unpckhpd_xmm_xmmm128, "unpckhpd"),
        both!(Packsswb_mm_mmm64, Packsswb_xmm_xmmm128, "packsswb"),
        both!(Packssdw_mm_mmm64, Packssdw_xmm_xmmm128, "packssdw"),
        both!(Packuswb_mm_mmm64, Packuswb_xmm_xmmm128, "packuswb"),
        xmm!(Movddup_xmm_xmmm64, "movddup"),
        xmm!(Movsldup_xmm_xmmm128, "movsldup"),
        xmm!(Movshdup_xmm_xmmm128, "movshdup"),
    ];
    check_cases(&cases, 300, 8, Rng::u128);
}

#[test]
fn punpckl_mmx_memory_operand_is_a_doubleword() {
    // The MMX PUNPCKLxx forms read only 32 bits of memory: the translator zero-extends
    // them, and the result must not depend on anything above.
    let r = mm2(
        Code::Punpcklbw_mm_mmm32,
        0x0807_0605_0403_0201,
        0xd4c3_b2a1,
        0,
    );
    assert_eq!(r, 0xd404_c303_b202_a101);
}

/// PINSRW from a general register or memory against the host, at every word position
/// and with counts beyond the number of words.
#[test]
fn pinsrw_against_host() {
    use crate::operands::Loc;
    let xmm_cases = [
        (0, host_xmm!("pinsrw xmm0, word ptr [{b}], 0")),
        (1, host_xmm!("pinsrw xmm0, word ptr [{b}], 1")),
        (2, host_xmm!("pinsrw xmm0, word ptr [{b}], 2")),
        (3, host_xmm!("pinsrw xmm0, word ptr [{b}], 3")),
        (4, host_xmm!("pinsrw xmm0, word ptr [{b}], 4")),
        (5, host_xmm!("pinsrw xmm0, word ptr [{b}], 5")),
        (6, host_xmm!("pinsrw xmm0, word ptr [{b}], 6")),
        (7, host_xmm!("pinsrw xmm0, word ptr [{b}], 7")),
        (8, host_xmm!("pinsrw xmm0, word ptr [{b}], 8")),
        (13, host_xmm!("pinsrw xmm0, word ptr [{b}], 13")),
        (255, host_xmm!("pinsrw xmm0, word ptr [{b}], 255")),
    ];
    let mm_cases = [
        (0, host_mm!("pinsrw mm0, {b:e}, 0")),
        (1, host_mm!("pinsrw mm0, {b:e}, 1")),
        (2, host_mm!("pinsrw mm0, {b:e}, 2")),
        (3, host_mm!("pinsrw mm0, {b:e}, 3")),
        (4, host_mm!("pinsrw mm0, {b:e}, 4")),
        (7, host_mm!("pinsrw mm0, {b:e}, 7")),
        (255, host_mm!("pinsrw mm0, {b:e}, 255")),
    ];
    let mut rng = Rng::new(9);
    for _ in 0..100 {
        let (a, b) = (rng.u128(), rng.u128());
        for &(imm, host) in &xmm_cases {
            let want = host(a, b);
            for (loc, code) in [
                (Loc::Gpr, Code::Pinsrw_xmm_r32m16_imm8),
                (Loc::Gpr, Code::Pinsrw_xmm_r64m16_imm8),
                (Loc::Mem, Code::Pinsrw_xmm_r32m16_imm8),
            ] {
                let mut f = super::junk_state(&mut rng);
                f.set_xmm128(2, a);
                f.io[crate::IO_DATA0] = b as u64;
                super::exec(&mut f, code, [Loc::Xmm(2), loc, Loc::None], imm);
                assert_eq!(f.xmm128(2), want, "{code:?} imm={imm}");
            }
        }
        for &(imm, host) in &mm_cases {
            let (a, b) = (a as u64, b as u64);
            let want = host(a, b);
            for (loc, code) in [
                (Loc::Gpr, Code::Pinsrw_mm_r32m16_imm8),
                (Loc::Gpr, Code::Pinsrw_mm_r64m16_imm8),
                (Loc::Mem, Code::Pinsrw_mm_r32m16_imm8),
            ] {
                let mut f = super::junk_state(&mut rng);
                f.set_mm(2, a);
                f.io[crate::IO_DATA0] = b;
                super::exec(&mut f, code, [Loc::Mm(2), loc, Loc::None], imm);
                assert_eq!(f.mm(2), want, "{code:?} imm={imm}");
            }
        }
    }
}
