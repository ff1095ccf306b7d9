//! Which iced `Code`s this module implements and how: the single list both
//! [`super::claims`] and [`super::execute`] read, so the two cannot disagree.

use iced_x86::Code as C;

use super::mov::Move;
use super::{arith as a, shuffle as s, ssse3 as x, LaneFn, Op};

/// The operation of `code`, or `None` when this module does not implement it.
pub(super) fn op(code: C) -> Option<Op> {
    lane(code)
        .map(Op::Lane)
        .or_else(|| movement(code).map(Op::Move))
}

fn movement(code: C) -> Option<Move> {
    Some(match code {
        C::Movd_mm_rm32 | C::Movd_xmm_rm32 | C::Movd_rm32_mm | C::Movd_rm32_xmm => {
            Move::Copy { bytes: 4 }
        }
        C::Movq_mm_rm64
        | C::Movq_xmm_rm64
        | C::Movq_rm64_mm
        | C::Movq_rm64_xmm
        | C::Movq_mm_mmm64
        | C::Movq_mmm64_mm
        | C::Movq_xmm_xmmm64
        | C::Movq_xmmm64_xmm
        | C::Movq2dq_xmm_mm
        | C::Movdq2q_mm_xmm
        | C::Movntq_m64_mm => Move::Copy { bytes: 8 },
        C::Movdqa_xmm_xmmm128
        | C::Movdqa_xmmm128_xmm
        | C::Movdqu_xmm_xmmm128
        | C::Movdqu_xmmm128_xmm
        | C::Movaps_xmm_xmmm128
        | C::Movaps_xmmm128_xmm
        | C::Movups_xmm_xmmm128
        | C::Movups_xmmm128_xmm
        | C::Movapd_xmm_xmmm128
        | C::Movapd_xmmm128_xmm
        | C::Movupd_xmm_xmmm128
        | C::Movupd_xmmm128_xmm
        | C::Movntdq_m128_xmm
        | C::Movntps_m128_xmm
        | C::Movntpd_m128_xmm
        | C::Lddqu_xmm_m128 => Move::Copy { bytes: 16 },
        C::Movss_xmm_xmmm32 | C::Movss_xmmm32_xmm => Move::Scalar { bytes: 4 },
        C::Movsd_xmm_xmmm64 | C::Movsd_xmmm64_xmm => Move::Scalar { bytes: 8 },
        C::Movlps_xmm_m64 | C::Movlpd_xmm_m64 | C::Movlps_m64_xmm | C::Movlpd_m64_xmm => {
            Move::Half {
                dst_hi: false,
                src_hi: false,
            }
        }
        C::Movhps_xmm_m64 | C::Movhpd_xmm_m64 | C::Movlhps_xmm_xmm => Move::Half {
            dst_hi: true,
            src_hi: false,
        },
        C::Movhps_m64_xmm | C::Movhpd_m64_xmm | C::Movhlps_xmm_xmm => Move::Half {
            dst_hi: false,
            src_hi: true,
        },
        C::Movmskps_r32_xmm | C::Movmskps_r64_xmm => Move::SignMask { bits: 32 },
        C::Movmskpd_r32_xmm | C::Movmskpd_r64_xmm => Move::SignMask { bits: 64 },
        C::Pmovmskb_r32_mm | C::Pmovmskb_r64_mm | C::Pmovmskb_r32_xmm | C::Pmovmskb_r64_xmm => {
            Move::SignMask { bits: 8 }
        }
        C::Pextrw_r32_mm_imm8
        | C::Pextrw_r64_mm_imm8
        | C::Pextrw_r32_xmm_imm8
        | C::Pextrw_r64_xmm_imm8 => Move::Pextrw,
        _ => return None,
    })
}

fn lane(code: C) -> Option<LaneFn> {
    Some(match code {
        // Bitwise logic.
        C::Pand_mm_mmm64 | C::Pand_xmm_xmmm128 | C::Andps_xmm_xmmm128 | C::Andpd_xmm_xmmm128 => {
            a::and
        }
        C::Pandn_mm_mmm64
        | C::Pandn_xmm_xmmm128
        | C::Andnps_xmm_xmmm128
        | C::Andnpd_xmm_xmmm128 => a::andn,
        C::Por_mm_mmm64 | C::Por_xmm_xmmm128 | C::Orps_xmm_xmmm128 | C::Orpd_xmm_xmmm128 => a::or,
        C::Pxor_mm_mmm64 | C::Pxor_xmm_xmmm128 | C::Xorps_xmm_xmmm128 | C::Xorpd_xmm_xmmm128 => {
            a::xor
        }
        // Addition and subtraction.
        C::Paddb_mm_mmm64 | C::Paddb_xmm_xmmm128 => a::add::<8>,
        C::Paddw_mm_mmm64 | C::Paddw_xmm_xmmm128 => a::add::<16>,
        C::Paddd_mm_mmm64 | C::Paddd_xmm_xmmm128 => a::add::<32>,
        C::Paddq_mm_mmm64 | C::Paddq_xmm_xmmm128 => a::add::<64>,
        C::Psubb_mm_mmm64 | C::Psubb_xmm_xmmm128 => a::sub::<8>,
        C::Psubw_mm_mmm64 | C::Psubw_xmm_xmmm128 => a::sub::<16>,
        C::Psubd_mm_mmm64 | C::Psubd_xmm_xmmm128 => a::sub::<32>,
        C::Psubq_mm_mmm64 | C::Psubq_xmm_xmmm128 => a::sub::<64>,
        C::Paddsb_mm_mmm64 | C::Paddsb_xmm_xmmm128 => a::adds::<8>,
        C::Paddsw_mm_mmm64 | C::Paddsw_xmm_xmmm128 => a::adds::<16>,
        C::Psubsb_mm_mmm64 | C::Psubsb_xmm_xmmm128 => a::subs::<8>,
        C::Psubsw_mm_mmm64 | C::Psubsw_xmm_xmmm128 => a::subs::<16>,
        C::Paddusb_mm_mmm64 | C::Paddusb_xmm_xmmm128 => a::addus::<8>,
        C::Paddusw_mm_mmm64 | C::Paddusw_xmm_xmmm128 => a::addus::<16>,
        C::Psubusb_mm_mmm64 | C::Psubusb_xmm_xmmm128 => a::subus::<8>,
        C::Psubusw_mm_mmm64 | C::Psubusw_xmm_xmmm128 => a::subus::<16>,
        // Multiplication, averages, minima and maxima, sums of differences.
        C::Pmullw_mm_mmm64 | C::Pmullw_xmm_xmmm128 => a::pmullw,
        C::Pmulhw_mm_mmm64 | C::Pmulhw_xmm_xmmm128 => a::pmulhw,
        C::Pmulhuw_mm_mmm64 | C::Pmulhuw_xmm_xmmm128 => a::pmulhuw,
        C::Pmuludq_mm_mmm64 | C::Pmuludq_xmm_xmmm128 => a::pmuludq,
        C::Pmaddwd_mm_mmm64 | C::Pmaddwd_xmm_xmmm128 => a::pmaddwd,
        C::Pavgb_mm_mmm64 | C::Pavgb_xmm_xmmm128 => a::avg::<8>,
        C::Pavgw_mm_mmm64 | C::Pavgw_xmm_xmmm128 => a::avg::<16>,
        C::Pminub_mm_mmm64 | C::Pminub_xmm_xmmm128 => a::minu::<8>,
        C::Pmaxub_mm_mmm64 | C::Pmaxub_xmm_xmmm128 => a::maxu::<8>,
        C::Pminsw_mm_mmm64 | C::Pminsw_xmm_xmmm128 => a::mins::<16>,
        C::Pmaxsw_mm_mmm64 | C::Pmaxsw_xmm_xmmm128 => a::maxs::<16>,
        C::Psadbw_mm_mmm64 | C::Psadbw_xmm_xmmm128 => a::psadbw,
        // Comparisons.
        C::Pcmpeqb_mm_mmm64 | C::Pcmpeqb_xmm_xmmm128 => a::cmpeq::<8>,
        C::Pcmpeqw_mm_mmm64 | C::Pcmpeqw_xmm_xmmm128 => a::cmpeq::<16>,
        C::Pcmpeqd_mm_mmm64 | C::Pcmpeqd_xmm_xmmm128 => a::cmpeq::<32>,
        C::Pcmpgtb_mm_mmm64 | C::Pcmpgtb_xmm_xmmm128 => a::cmpgt::<8>,
        C::Pcmpgtw_mm_mmm64 | C::Pcmpgtw_xmm_xmmm128 => a::cmpgt::<16>,
        C::Pcmpgtd_mm_mmm64 | C::Pcmpgtd_xmm_xmmm128 => a::cmpgt::<32>,
        // Shifts.
        C::Psllw_mm_mmm64 | C::Psllw_xmm_xmmm128 => a::sll_r::<16>,
        C::Pslld_mm_mmm64 | C::Pslld_xmm_xmmm128 => a::sll_r::<32>,
        C::Psllq_mm_mmm64 | C::Psllq_xmm_xmmm128 => a::sll_r::<64>,
        C::Psrlw_mm_mmm64 | C::Psrlw_xmm_xmmm128 => a::srl_r::<16>,
        C::Psrld_mm_mmm64 | C::Psrld_xmm_xmmm128 => a::srl_r::<32>,
        C::Psrlq_mm_mmm64 | C::Psrlq_xmm_xmmm128 => a::srl_r::<64>,
        C::Psraw_mm_mmm64 | C::Psraw_xmm_xmmm128 => a::sra_r::<16>,
        C::Psrad_mm_mmm64 | C::Psrad_xmm_xmmm128 => a::sra_r::<32>,
        C::Psllw_mm_imm8 | C::Psllw_xmm_imm8 => a::sll_i::<16>,
        C::Pslld_mm_imm8 | C::Pslld_xmm_imm8 => a::sll_i::<32>,
        C::Psllq_mm_imm8 | C::Psllq_xmm_imm8 => a::sll_i::<64>,
        C::Psrlw_mm_imm8 | C::Psrlw_xmm_imm8 => a::srl_i::<16>,
        C::Psrld_mm_imm8 | C::Psrld_xmm_imm8 => a::srl_i::<32>,
        C::Psrlq_mm_imm8 | C::Psrlq_xmm_imm8 => a::srl_i::<64>,
        C::Psraw_mm_imm8 | C::Psraw_xmm_imm8 => a::sra_i::<16>,
        C::Psrad_mm_imm8 | C::Psrad_xmm_imm8 => a::sra_i::<32>,
        C::Pslldq_xmm_imm8 => a::pslldq,
        C::Psrldq_xmm_imm8 => a::psrldq,
        // Shuffles and duplications.
        C::Pshufd_xmm_xmmm128_imm8 => s::pshufd,
        C::Pshufw_mm_mmm64_imm8 | C::Pshuflw_xmm_xmmm128_imm8 => s::pshuflw,
        C::Pshufhw_xmm_xmmm128_imm8 => s::pshufhw,
        C::Shufps_xmm_xmmm128_imm8 => s::shufps,
        C::Shufpd_xmm_xmmm128_imm8 => s::shufpd,
        C::Movddup_xmm_xmmm64 => s::movddup,
        C::Movsldup_xmm_xmmm128 => s::movsldup,
        C::Movshdup_xmm_xmmm128 => s::movshdup,
        C::Pinsrw_mm_r32m16_imm8
        | C::Pinsrw_mm_r64m16_imm8
        | C::Pinsrw_xmm_r32m16_imm8
        | C::Pinsrw_xmm_r64m16_imm8 => s::pinsrw,
        // Unpacks and packs.
        C::Punpcklbw_mm_mmm32 | C::Punpcklbw_xmm_xmmm128 => s::unpackl::<8>,
        C::Punpcklwd_mm_mmm32 | C::Punpcklwd_xmm_xmmm128 => s::unpackl::<16>,
        C::Punpckldq_mm_mmm32 | C::Punpckldq_xmm_xmmm128 | C::Unpcklps_xmm_xmmm128 => {
            s::unpackl::<32>
        }
        C::Punpcklqdq_xmm_xmmm128 | C::Unpcklpd_xmm_xmmm128 => s::unpackl::<64>,
        C::Punpckhbw_mm_mmm64 | C::Punpckhbw_xmm_xmmm128 => s::unpackh::<8>,
        C::Punpckhwd_mm_mmm64 | C::Punpckhwd_xmm_xmmm128 => s::unpackh::<16>,
        C::Punpckhdq_mm_mmm64 | C::Punpckhdq_xmm_xmmm128 | C::Unpckhps_xmm_xmmm128 => {
            s::unpackh::<32>
        }
        C::Punpckhqdq_xmm_xmmm128 | C::Unpckhpd_xmm_xmmm128 => s::unpackh::<64>,
        C::Packsswb_mm_mmm64 | C::Packsswb_xmm_xmmm128 => s::packss::<16>,
        C::Packssdw_mm_mmm64 | C::Packssdw_xmm_xmmm128 => s::packss::<32>,
        C::Packuswb_mm_mmm64 | C::Packuswb_xmm_xmmm128 => s::packus::<16>,
        // SSSE3.
        C::Pshufb_mm_mmm64 | C::Pshufb_xmm_xmmm128 => x::pshufb,
        C::Palignr_mm_mmm64_imm8 | C::Palignr_xmm_xmmm128_imm8 => x::palignr,
        C::Pabsb_mm_mmm64 | C::Pabsb_xmm_xmmm128 => x::abs::<8>,
        C::Pabsw_mm_mmm64 | C::Pabsw_xmm_xmmm128 => x::abs::<16>,
        C::Pabsd_mm_mmm64 | C::Pabsd_xmm_xmmm128 => x::abs::<32>,
        C::Psignb_mm_mmm64 | C::Psignb_xmm_xmmm128 => x::sign::<8>,
        C::Psignw_mm_mmm64 | C::Psignw_xmm_xmmm128 => x::sign::<16>,
        C::Psignd_mm_mmm64 | C::Psignd_xmm_xmmm128 => x::sign::<32>,
        C::Phaddw_mm_mmm64 | C::Phaddw_xmm_xmmm128 => x::hadd::<16>,
        C::Phaddd_mm_mmm64 | C::Phaddd_xmm_xmmm128 => x::hadd::<32>,
        C::Phaddsw_mm_mmm64 | C::Phaddsw_xmm_xmmm128 => x::hadds,
        C::Phsubw_mm_mmm64 | C::Phsubw_xmm_xmmm128 => x::hsub::<16>,
        C::Phsubd_mm_mmm64 | C::Phsubd_xmm_xmmm128 => x::hsub::<32>,
        C::Phsubsw_mm_mmm64 | C::Phsubsw_xmm_xmmm128 => x::hsubs,
        C::Pmaddubsw_mm_mmm64 | C::Pmaddubsw_xmm_xmmm128 => x::pmaddubsw,
        C::Pmulhrsw_mm_mmm64 | C::Pmulhrsw_xmm_xmmm128 => x::pmulhrsw,
        _ => return None,
    })
}
