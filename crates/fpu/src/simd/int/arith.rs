//! Packed integer arithmetic, comparisons, bitwise logic and shifts: the [`super::LaneFn`]s
//! of the MMX/SSE2 integer instructions. `B` is the element width in bits; `a` is the
//! destination, `b` the source, `n` the operand width in bytes.

use super::lanes::{count, get, map2, mask, put, sat_s, sat_u, sget, smap2};

/// PADDB/W/D/Q: wrapping addition.
pub(super) fn add<const B: u32>(a: u128, b: u128, _: u8, n: usize) -> u128 {
    map2(a, b, n, B, u64::wrapping_add)
}

/// PSUBB/W/D/Q: wrapping subtraction.
pub(super) fn sub<const B: u32>(a: u128, b: u128, _: u8, n: usize) -> u128 {
    map2(a, b, n, B, u64::wrapping_sub)
}

/// PADDSB/W: signed saturating addition.
pub(super) fn adds<const B: u32>(a: u128, b: u128, _: u8, n: usize) -> u128 {
    smap2(a, b, n, B, |x, y| sat_s(x + y, B) as i64)
}

/// PSUBSB/W: signed saturating subtraction.
pub(super) fn subs<const B: u32>(a: u128, b: u128, _: u8, n: usize) -> u128 {
    smap2(a, b, n, B, |x, y| sat_s(x - y, B) as i64)
}

/// PADDUSB/W: unsigned saturating addition.
pub(super) fn addus<const B: u32>(a: u128, b: u128, _: u8, n: usize) -> u128 {
    map2(a, b, n, B, |x, y| sat_u((x + y) as i64, B))
}

/// PSUBUSB/W: unsigned saturating subtraction.
pub(super) fn subus<const B: u32>(a: u128, b: u128, _: u8, n: usize) -> u128 {
    map2(a, b, n, B, |x, y| x.saturating_sub(y))
}

/// PMULLW: the low 16 bits of each product (the same for signed and unsigned).
pub(super) fn pmullw(a: u128, b: u128, _: u8, n: usize) -> u128 {
    map2(a, b, n, 16, |x, y| x * y)
}

/// PMULHW: the high 16 bits of each signed product.
pub(super) fn pmulhw(a: u128, b: u128, _: u8, n: usize) -> u128 {
    smap2(a, b, n, 16, |x, y| (x * y) >> 16)
}

/// PMULHUW: the high 16 bits of each unsigned product.
pub(super) fn pmulhuw(a: u128, b: u128, _: u8, n: usize) -> u128 {
    map2(a, b, n, 16, |x, y| (x * y) >> 16)
}

/// PMULUDQ: each quadword becomes the full product of the two low doublewords.
pub(super) fn pmuludq(a: u128, b: u128, _: u8, n: usize) -> u128 {
    map2(a, b, n, 64, |x, y| (x & 0xffff_ffff) * (y & 0xffff_ffff))
}

/// PMADDWD: each doubleword becomes the sum of the two signed word products. The only sum
/// that does not fit, 2 * 0x8000 * 0x8000, wraps to 0x8000_0000 as on hardware.
pub(super) fn pmaddwd(a: u128, b: u128, _: u8, n: usize) -> u128 {
    let mut r = 0;
    for i in 0..count(n, 32) {
        let lo = sget(a, 16, 2 * i) * sget(b, 16, 2 * i);
        let hi = sget(a, 16, 2 * i + 1) * sget(b, 16, 2 * i + 1);
        put(&mut r, 32, i, (lo + hi) as u64);
    }
    r
}

/// PAVGB/W: the unsigned average, rounded up.
pub(super) fn avg<const B: u32>(a: u128, b: u128, _: u8, n: usize) -> u128 {
    map2(a, b, n, B, |x, y| (x + y + 1) >> 1)
}

/// PMINUB (and the unsigned minimum at any width).
pub(super) fn minu<const B: u32>(a: u128, b: u128, _: u8, n: usize) -> u128 {
    map2(a, b, n, B, u64::min)
}

/// PMAXUB.
pub(super) fn maxu<const B: u32>(a: u128, b: u128, _: u8, n: usize) -> u128 {
    map2(a, b, n, B, u64::max)
}

/// PMINSW.
pub(super) fn mins<const B: u32>(a: u128, b: u128, _: u8, n: usize) -> u128 {
    smap2(a, b, n, B, i64::min)
}

/// PMAXSW.
pub(super) fn maxs<const B: u32>(a: u128, b: u128, _: u8, n: usize) -> u128 {
    smap2(a, b, n, B, i64::max)
}

/// PSADBW: per quadword, the sum of the absolute byte differences in its low word, the
/// rest of the quadword zero.
pub(super) fn psadbw(a: u128, b: u128, _: u8, n: usize) -> u128 {
    let mut r = 0;
    for q in 0..count(n, 64) {
        let sum: u64 = (8 * q..8 * q + 8)
            .map(|i| get(a, 8, i).abs_diff(get(b, 8, i)))
            .sum();
        put(&mut r, 64, q, sum);
    }
    r
}

/// PCMPEQB/W/D: all ones where equal.
pub(super) fn cmpeq<const B: u32>(a: u128, b: u128, _: u8, n: usize) -> u128 {
    map2(a, b, n, B, |x, y| if x == y { mask(B) } else { 0 })
}

/// PCMPGTB/W/D: all ones where the destination element is greater, signed.
pub(super) fn cmpgt<const B: u32>(a: u128, b: u128, _: u8, n: usize) -> u128 {
    smap2(a, b, n, B, |x, y| if x > y { -1 } else { 0 })
}

/// PAND, ANDPS, ANDPD.
pub(super) fn and(a: u128, b: u128, _: u8, _: usize) -> u128 {
    a & b
}

/// PANDN, ANDNPS, ANDNPD: the *destination* is inverted.
pub(super) fn andn(a: u128, b: u128, _: u8, _: usize) -> u128 {
    !a & b
}

/// POR, ORPS, ORPD.
pub(super) fn or(a: u128, b: u128, _: u8, _: usize) -> u128 {
    a | b
}

/// PXOR, XORPS, XORPD.
pub(super) fn xor(a: u128, b: u128, _: u8, _: usize) -> u128 {
    a ^ b
}

/// A logical left shift of every element by `c`; counts of the element width or more
/// clear it.
fn sll(a: u128, c: u64, n: usize, bits: u32) -> u128 {
    map2(
        a,
        0,
        n,
        bits,
        |x, _| if c >= u64::from(bits) { 0 } else { x << c },
    )
}

/// A logical right shift of every element by `c`.
fn srl(a: u128, c: u64, n: usize, bits: u32) -> u128 {
    map2(
        a,
        0,
        n,
        bits,
        |x, _| if c >= u64::from(bits) { 0 } else { x >> c },
    )
}

/// An arithmetic right shift of every element by `c`; counts of the element width or more
/// fill it with its sign.
fn sra(a: u128, c: u64, n: usize, bits: u32) -> u128 {
    let c = c.min(u64::from(bits) - 1);
    smap2(a, 0, n, bits, |x, _| x >> c)
}

/// PSLLW/D/Q by a register or memory count: the whole low quadword is the count.
pub(super) fn sll_r<const B: u32>(a: u128, b: u128, _: u8, n: usize) -> u128 {
    sll(a, b as u64, n, B)
}

/// PSRLW/D/Q by a register or memory count.
pub(super) fn srl_r<const B: u32>(a: u128, b: u128, _: u8, n: usize) -> u128 {
    srl(a, b as u64, n, B)
}

/// PSRAW/D by a register or memory count.
pub(super) fn sra_r<const B: u32>(a: u128, b: u128, _: u8, n: usize) -> u128 {
    sra(a, b as u64, n, B)
}

/// PSLLW/D/Q by an immediate.
pub(super) fn sll_i<const B: u32>(a: u128, _: u128, imm: u8, n: usize) -> u128 {
    sll(a, u64::from(imm), n, B)
}

/// PSRLW/D/Q by an immediate.
pub(super) fn srl_i<const B: u32>(a: u128, _: u128, imm: u8, n: usize) -> u128 {
    srl(a, u64::from(imm), n, B)
}

/// PSRAW/D by an immediate.
pub(super) fn sra_i<const B: u32>(a: u128, _: u128, imm: u8, n: usize) -> u128 {
    sra(a, u64::from(imm), n, B)
}

/// PSLLDQ: the whole register shifted left by `imm` bytes; counts above 15 clear it.
pub(super) fn pslldq(a: u128, _: u128, imm: u8, _: usize) -> u128 {
    a.checked_shl(8 * u32::from(imm)).unwrap_or(0)
}

/// PSRLDQ: the whole register shifted right by `imm` bytes.
pub(super) fn psrldq(a: u128, _: u128, imm: u8, _: usize) -> u128 {
    a.checked_shr(8 * u32::from(imm)).unwrap_or(0)
}
