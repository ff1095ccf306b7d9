//! SSSE3 against the host CPU (skipped on a host without SSSE3).

use iced_x86::Code;
use proptest::prelude::{any, prop_assert_eq, proptest};

use super::super::ssse3::pshufb;
use super::shuffle::{check_imm, imm_mm, imm_xmm};
use super::{both, check_cases, host_mm, host_ssse3, host_xmm, Rng};

#[test]
fn ssse3_against_host() {
    if !host_ssse3() {
        return;
    }
    let cases = [
        both!(Pshufb_mm_mmm64, Pshufb_xmm_xmmm128, "pshufb"),
        both!(Pabsb_mm_mmm64, Pabsb_xmm_xmmm128, "pabsb"),
        both!(Pabsw_mm_mmm64, Pabsw_xmm_xmmm128, "pabsw"),
        both!(Pabsd_mm_mmm64, Pabsd_xmm_xmmm128, "pabsd"),
        both!(Psignb_mm_mmm64, Psignb_xmm_xmmm128, "psignb"),
        both!(Psignw_mm_mmm64, Psignw_xmm_xmmm128, "psignw"),
        both!(Psignd_mm_mmm64, Psignd_xmm_xmmm128, "psignd"),
        both!(Phaddw_mm_mmm64, Phaddw_xmm_xmmm128, "phaddw"),
        both!(Phaddd_mm_mmm64, Phaddd_xmm_xmmm128, "phaddd"),
        both!(Phaddsw_mm_mmm64, Phaddsw_xmm_xmmm128, "phaddsw"),
        both!(Phsubw_mm_mmm64, Phsubw_xmm_xmmm128, "phsubw"),
        both!(Phsubd_mm_mmm64, Phsubd_xmm_xmmm128, "phsubd"),
        both!(Phsubsw_mm_mmm64, Phsubsw_xmm_xmmm128, "phsubsw"),
        both!(Pmaddubsw_mm_mmm64, Pmaddubsw_xmm_xmmm128, "pmaddubsw"),
        both!(Pmulhrsw_mm_mmm64, Pmulhrsw_xmm_xmmm128, "pmulhrsw"),
    ];
    check_cases(&cases, 400, 10, Rng::u128);
}

#[test]
fn palignr_against_host() {
    if !host_ssse3() {
        return;
    }
    let xmm_cases = imm_xmm!(
        Palignr_xmm_xmmm128_imm8,
        "palignr",
        [0, 1, 5, 8, 15, 16, 17, 24, 31, 32, 33, 200, 255]
    );
    let mm_cases = imm_mm!(
        Palignr_mm_mmm64_imm8,
        "palignr",
        [0, 1, 3, 7, 8, 9, 15, 16, 17, 255]
    );
    check_imm(&xmm_cases, &mm_cases, 11);
}

#[test]
fn pshufb_mmx_index_uses_three_bits() {
    // Index byte 0x0f selects byte 7 in the MMX form (bit 3 ignored), 0x80 clears.
    let r = super::mm2(
        Code::Pshufb_mm_mmm64,
        0x8877_6655_4433_2211,
        0x0000_0000_0000_800f,
        0,
    );
    assert_eq!(r, 0x1111_1111_1111_0088);
}

proptest! {
    /// PSHUFB against a byte-by-byte model of its definition, for both widths.
    #[test]
    fn pshufb_matches_model(a in any::<u128>(), b in any::<u128>()) {
        for n in [8usize, 16] {
            let (a, b) = if n == 8 { (a as u64 as u128, b as u64 as u128) } else { (a, b) };
            let (src, idx) = (a.to_le_bytes(), b.to_le_bytes());
            let mut want = 0u128;
            for (i, &k) in idx.iter().enumerate().take(n) {
                if k & 0x80 == 0 {
                    want |= u128::from(src[usize::from(k) % n]) << (8 * i);
                }
            }
            prop_assert_eq!(pshufb(a, b, 0, n), want, "n={}", n);
        }
    }
}
