//! SSE4.1/4.2 packed-integer operations whose destination is the first XMM operand: blends,
//! min/max, multiplies, 64-bit compares, PACKUSDW, PMOVSX/PMOVZX, PTEST, PHMINPOSUW,
//! MPSADBW and MOVNTDQA.

use iced_x86::Code;

use super::lanes::{from_u16s, from_u32s, from_u64s, from_u8s, ones, u16s, u32s, u64s, u8s};
use super::{xmm_or_mem, xmm_reg};
use crate::operands::{Loc, Operands};
use crate::simd::SimdFault;
use crate::state::{Fpu, IO_FLAGS};

/// EFLAGS.CF.
const CF: u64 = 1 << 0;
/// EFLAGS.ZF.
const ZF: u64 = 1 << 6;

/// True for the codes [`execute`] implements.
pub fn claims(code: Code) -> bool {
    use Code::*;
    matches!(
        code,
        Pblendvb_xmm_xmmm128
            | Blendvps_xmm_xmmm128
            | Blendvpd_xmm_xmmm128
            | Pblendw_xmm_xmmm128_imm8
            | Blendps_xmm_xmmm128_imm8
            | Blendpd_xmm_xmmm128_imm8
            | Pminsb_xmm_xmmm128
            | Pminsd_xmm_xmmm128
            | Pminuw_xmm_xmmm128
            | Pminud_xmm_xmmm128
            | Pmaxsb_xmm_xmmm128
            | Pmaxsd_xmm_xmmm128
            | Pmaxuw_xmm_xmmm128
            | Pmaxud_xmm_xmmm128
            | Pmulld_xmm_xmmm128
            | Pmuldq_xmm_xmmm128
            | Pcmpeqq_xmm_xmmm128
            | Pcmpgtq_xmm_xmmm128
            | Packusdw_xmm_xmmm128
            | Pmovsxbw_xmm_xmmm64
            | Pmovsxbd_xmm_xmmm32
            | Pmovsxbq_xmm_xmmm16
            | Pmovsxwd_xmm_xmmm64
            | Pmovsxwq_xmm_xmmm32
            | Pmovsxdq_xmm_xmmm64
            | Pmovzxbw_xmm_xmmm64
            | Pmovzxbd_xmm_xmmm32
            | Pmovzxbq_xmm_xmmm16
            | Pmovzxwd_xmm_xmmm64
            | Pmovzxwq_xmm_xmmm32
            | Pmovzxdq_xmm_xmmm64
            | Ptest_xmm_xmmm128
            | Phminposuw_xmm_xmmm128
            | Mpsadbw_xmm_xmmm128_imm8
            | Movntdqa_xmm_m128
    )
}

/// Executes one of the [`claims`] codes: operand 0 is the destination XMM register,
/// operand 1 the `xmm/m` source.
pub fn execute(fpu: &mut Fpu, code: Code, ops: Operands) -> Result<(), SimdFault> {
    use Code::*;
    let d = xmm_reg(ops, 0)?;
    let a = fpu.xmm128(d);
    let b = xmm_or_mem(fpu, ops, 1)?;
    let imm = ops.imm();
    let r = match code {
        // The mask is XMM0 as it was before the instruction, even when XMM0 is the
        // destination.
        Pblendvb_xmm_xmmm128 => blend_by_mask(a, b, fpu.xmm128(0), 8),
        Blendvps_xmm_xmmm128 => blend_by_mask(a, b, fpu.xmm128(0), 32),
        Blendvpd_xmm_xmmm128 => blend_by_mask(a, b, fpu.xmm128(0), 64),
        Pblendw_xmm_xmmm128_imm8 => blend_by_imm(a, b, imm, 16),
        Blendps_xmm_xmmm128_imm8 => blend_by_imm(a, b, imm & 0xf, 32),
        Blendpd_xmm_xmmm128_imm8 => blend_by_imm(a, b, imm & 3, 64),
        Pminsb_xmm_xmmm128 => zip8(a, b, |x, y| (x as i8).min(y as i8) as u8),
        Pmaxsb_xmm_xmmm128 => zip8(a, b, |x, y| (x as i8).max(y as i8) as u8),
        Pminuw_xmm_xmmm128 => zip16(a, b, u16::min),
        Pmaxuw_xmm_xmmm128 => zip16(a, b, u16::max),
        Pminsd_xmm_xmmm128 => zip32(a, b, |x, y| (x as i32).min(y as i32) as u32),
        Pmaxsd_xmm_xmmm128 => zip32(a, b, |x, y| (x as i32).max(y as i32) as u32),
        Pminud_xmm_xmmm128 => zip32(a, b, u32::min),
        Pmaxud_xmm_xmmm128 => zip32(a, b, u32::max),
        Pmulld_xmm_xmmm128 => zip32(a, b, u32::wrapping_mul),
        Pmuldq_xmm_xmmm128 => {
            // Signed products of the even doublewords, each a full quadword.
            let (x, y) = (u32s(a), u32s(b));
            let mul = |i: usize| (i64::from(x[i] as i32) * i64::from(y[i] as i32)) as u64;
            from_u64s([mul(0), mul(2)])
        }
        Pcmpeqq_xmm_xmmm128 => zip64(a, b, |x, y| if x == y { u64::MAX } else { 0 }),
        Pcmpgtq_xmm_xmmm128 => zip64(
            a,
            b,
            |x, y| {
                if (x as i64) > (y as i64) {
                    u64::MAX
                } else {
                    0
                }
            },
        ),
        Packusdw_xmm_xmmm128 => {
            let (x, y) = (u32s(a), u32s(b));
            let sat = |v: u32| (v as i32).clamp(0, 0xffff) as u16;
            from_u16s(core::array::from_fn(|i| {
                sat(if i < 4 { x[i] } else { y[i - 4] })
            }))
        }
        Pmovsxbw_xmm_xmmm64 => extend(b, 8, 16, true),
        Pmovsxbd_xmm_xmmm32 => extend(b, 8, 32, true),
        Pmovsxbq_xmm_xmmm16 => extend(b, 8, 64, true),
        Pmovsxwd_xmm_xmmm64 => extend(b, 16, 32, true),
        Pmovsxwq_xmm_xmmm32 => extend(b, 16, 64, true),
        Pmovsxdq_xmm_xmmm64 => extend(b, 32, 64, true),
        Pmovzxbw_xmm_xmmm64 => extend(b, 8, 16, false),
        Pmovzxbd_xmm_xmmm32 => extend(b, 8, 32, false),
        Pmovzxbq_xmm_xmmm16 => extend(b, 8, 64, false),
        Pmovzxwd_xmm_xmmm64 => extend(b, 16, 32, false),
        Pmovzxwq_xmm_xmmm32 => extend(b, 16, 64, false),
        Pmovzxdq_xmm_xmmm64 => extend(b, 32, 64, false),
        Ptest_xmm_xmmm128 => {
            // Only flags change; PF, AF, SF and OF are cleared.
            let mut f = 0;
            if a & b == 0 {
                f |= ZF;
            }
            if !a & b == 0 {
                f |= CF;
            }
            fpu.io[IO_FLAGS] = f;
            return Ok(());
        }
        Phminposuw_xmm_xmmm128 => phminposuw(b),
        Mpsadbw_xmm_xmmm128_imm8 => mpsadbw(a, b, imm),
        // There is no register-source form (mod = 11 is #UD).
        Movntdqa_xmm_m128 if ops.loc(1) == Loc::Mem => b,
        _ => return Err(SimdFault::Ud),
    };
    fpu.set_xmm128(d, r);
    Ok(())
}

/// Each `lane_bits` lane from `b` where the top bit of the same lane of `mask` is set, from
/// `a` elsewhere.
fn blend_by_mask(a: u128, b: u128, mask: u128, lane_bits: u32) -> u128 {
    let mut sel = 0u128;
    for i in 0..128 / lane_bits {
        if mask >> (i * lane_bits + lane_bits - 1) & 1 != 0 {
            sel |= ones(lane_bits) << (i * lane_bits);
        }
    }
    (a & !sel) | (b & sel)
}

/// Each `lane_bits` lane i from `b` where bit i of `imm` is set, from `a` elsewhere.
fn blend_by_imm(a: u128, b: u128, imm: u8, lane_bits: u32) -> u128 {
    let mut sel = 0u128;
    for i in 0..128 / lane_bits {
        if imm >> i & 1 != 0 {
            sel |= ones(lane_bits) << (i * lane_bits);
        }
    }
    (a & !sel) | (b & sel)
}

/// Applies `f` to corresponding bytes.
fn zip8(a: u128, b: u128, f: impl Fn(u8, u8) -> u8) -> u128 {
    let (x, y) = (u8s(a), u8s(b));
    from_u8s(core::array::from_fn(|i| f(x[i], y[i])))
}

/// Applies `f` to corresponding words.
fn zip16(a: u128, b: u128, f: impl Fn(u16, u16) -> u16) -> u128 {
    let (x, y) = (u16s(a), u16s(b));
    from_u16s(core::array::from_fn(|i| f(x[i], y[i])))
}

/// Applies `f` to corresponding doublewords.
fn zip32(a: u128, b: u128, f: impl Fn(u32, u32) -> u32) -> u128 {
    let (x, y) = (u32s(a), u32s(b));
    from_u32s(core::array::from_fn(|i| f(x[i], y[i])))
}

/// Applies `f` to corresponding quadwords.
fn zip64(a: u128, b: u128, f: impl Fn(u64, u64) -> u64) -> u128 {
    let (x, y) = (u64s(a), u64s(b));
    from_u64s(core::array::from_fn(|i| f(x[i], y[i])))
}

/// PMOVSX/PMOVZX: the low `128 / to` lanes of `from` bits of `src`, each sign- or
/// zero-extended to `to` bits. Only the bytes the form reads are looked at, so a memory
/// source loaded with exactly that many bytes gives the same result as a register.
fn extend(src: u128, from: u32, to: u32, signed: bool) -> u128 {
    let mut r = 0u128;
    for i in 0..128 / to {
        let x = (src >> (i * from)) as u64 & ones(from) as u64;
        let x = if signed {
            // Move the lane's sign bit to bit 63 and shift it back arithmetically.
            (((x << (64 - from)) as i64) >> (64 - from)) as u64
        } else {
            x
        };
        r |= (u128::from(x) & ones(to)) << (i * to);
    }
    r
}

/// PHMINPOSUW: the smallest unsigned word of `src` in bits 15:0 and the index of its
/// first occurrence in bits 18:16; everything else zero.
fn phminposuw(src: u128) -> u128 {
    let w = u16s(src);
    let (idx, min) = w.iter().enumerate().fold(
        (0, w[0]),
        |(bi, bm), (i, &x)| if x < bm { (i, x) } else { (bi, bm) },
    );
    u128::from(min) | (idx as u128) << 16
}

/// MPSADBW: eight sums of absolute differences between the 4-byte block of `src` chosen by
/// imm8[1:0] and the eight overlapping 4-byte windows of `dst` starting at byte 0 or 4
/// (imm8[2]).
fn mpsadbw(dst: u128, src: u128, imm: u8) -> u128 {
    let (x, y) = (u8s(dst), u8s(src));
    let dst_off = usize::from(imm >> 2 & 1) * 4;
    let src_off = usize::from(imm & 3) * 4;
    from_u16s(core::array::from_fn(|i| {
        (0..4)
            .map(|j| u16::from(x[dst_off + i + j].abs_diff(y[src_off + j])))
            .sum()
    }))
}
