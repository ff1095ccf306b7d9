//! Shuffles, unpacks, packs and PINSRW: the [`super::LaneFn`]s that move elements between
//! positions. `a` is the destination, `b` the source, `n` the operand width in bytes.

use super::lanes::{count, get, put, replace, sat_s, sat_u, sget};

/// Selects 2-bit-indexed elements of `v` for the `len` elements starting at `first`.
fn select(v: u128, bits: u32, first: usize, len: usize, imm: u8) -> u128 {
    let mut r = v;
    for i in 0..len {
        let from = first + (usize::from(imm) >> (2 * i) & 3);
        r = replace(r, bits, first + i, get(v, bits, from));
    }
    r
}

/// PSHUFD: each doubleword of the result is the source doubleword its imm8 field selects.
pub(super) fn pshufd(_: u128, b: u128, imm: u8, _: usize) -> u128 {
    select(b, 32, 0, 4, imm)
}

/// PSHUFLW: the low four words selected by imm8, the high quadword copied. Also PSHUFW,
/// whose MMX operand is just that low quadword.
pub(super) fn pshuflw(_: u128, b: u128, imm: u8, _: usize) -> u128 {
    select(b, 16, 0, 4, imm)
}

/// PSHUFHW: the high four words selected by imm8, the low quadword copied.
pub(super) fn pshufhw(_: u128, b: u128, imm: u8, _: usize) -> u128 {
    select(b, 16, 4, 4, imm)
}

/// SHUFPS: the low two doublewords from the destination, the high two from the source.
pub(super) fn shufps(a: u128, b: u128, imm: u8, _: usize) -> u128 {
    let sel = |v, i: usize| get(v, 32, usize::from(imm) >> (2 * i) & 3);
    let mut r = 0;
    put(&mut r, 32, 0, sel(a, 0));
    put(&mut r, 32, 1, sel(a, 1));
    put(&mut r, 32, 2, sel(b, 2));
    put(&mut r, 32, 3, sel(b, 3));
    r
}

/// SHUFPD: the low quadword from the destination (imm8 bit 0), the high one from the source
/// (bit 1).
pub(super) fn shufpd(a: u128, b: u128, imm: u8, _: usize) -> u128 {
    let mut r = 0;
    put(&mut r, 64, 0, get(a, 64, usize::from(imm & 1)));
    put(&mut r, 64, 1, get(b, 64, usize::from(imm >> 1 & 1)));
    r
}

/// Interleaves the elements of one half (low or high) of `a` and `b`, `a`'s first.
fn unpack(a: u128, b: u128, n: usize, bits: u32, high: bool) -> u128 {
    let half = count(n, bits) / 2;
    let base = if high { half } else { 0 };
    let mut r = 0;
    for i in 0..half {
        put(&mut r, bits, 2 * i, get(a, bits, base + i));
        put(&mut r, bits, 2 * i + 1, get(b, bits, base + i));
    }
    r
}

/// PUNPCKLBW/WD/DQ/QDQ, UNPCKLPS, UNPCKLPD: interleave the low halves.
pub(super) fn unpackl<const B: u32>(a: u128, b: u128, _: u8, n: usize) -> u128 {
    unpack(a, b, n, B, false)
}

/// PUNPCKHBW/WD/DQ/QDQ, UNPCKHPS, UNPCKHPD: interleave the high halves.
pub(super) fn unpackh<const B: u32>(a: u128, b: u128, _: u8, n: usize) -> u128 {
    unpack(a, b, n, B, true)
}

/// Narrows the `B`-bit signed elements of `a` then `b` into `B / 2`-bit ones with `sat`.
fn pack<const B: u32>(a: u128, b: u128, n: usize, sat: fn(i64, u32) -> u64) -> u128 {
    let k = count(n, B);
    let mut r = 0;
    for i in 0..k {
        put(&mut r, B / 2, i, sat(sget(a, B, i), B / 2));
        put(&mut r, B / 2, k + i, sat(sget(b, B, i), B / 2));
    }
    r
}

/// PACKSSWB, PACKSSDW: signed saturation.
pub(super) fn packss<const B: u32>(a: u128, b: u128, _: u8, n: usize) -> u128 {
    pack::<B>(a, b, n, sat_s)
}

/// PACKUSWB: signed words saturated to unsigned bytes.
pub(super) fn packus<const B: u32>(a: u128, b: u128, _: u8, n: usize) -> u128 {
    pack::<B>(a, b, n, sat_u)
}

/// PINSRW: the source's low word replaces the destination word imm8 selects (modulo the
/// number of words).
pub(super) fn pinsrw(a: u128, b: u128, imm: u8, n: usize) -> u128 {
    let i = usize::from(imm) % count(n, 16);
    replace(a, 16, i, b as u64)
}

/// MOVDDUP: the source's low quadword in both quadwords.
pub(super) fn movddup(_: u128, b: u128, _: u8, _: usize) -> u128 {
    let q = b as u64;
    u128::from(q) | u128::from(q) << 64
}

/// MOVSLDUP: the source's even doublewords, each duplicated.
pub(super) fn movsldup(_: u128, b: u128, _: u8, _: usize) -> u128 {
    select(b, 32, 0, 4, 0b10_10_00_00)
}

/// MOVSHDUP: the source's odd doublewords, each duplicated.
pub(super) fn movshdup(_: u128, b: u128, _: u8, _: usize) -> u128 {
    select(b, 32, 0, 4, 0b11_11_01_01)
}
