//! SSSE3: the [`super::LaneFn`]s of PSHUFB, PALIGNR, PABS, PSIGN, the horizontal
//! additions and subtractions, PMADDUBSW and PMULHRSW. Each has an MMX and an XMM form;
//! `a` is the destination, `b` the source, `n` the operand width in bytes.

use super::lanes::{bytes, count, get, map2, put, sat_s, sext, sget, smap2};

/// PSHUFB: each destination byte becomes the destination byte the source byte indexes
/// (modulo the width), or zero when the index byte has bit 7 set.
pub(super) fn pshufb(a: u128, b: u128, _: u8, n: usize) -> u128 {
    // One instance per width, so the loop has a constant trip count and index mask.
    if n == 16 {
        shuffle_bytes::<16>(a, b)
    } else {
        shuffle_bytes::<8>(a, b)
    }
}

/// [`pshufb`] on `N`-byte operands (8 or 16), working on byte arrays: indexing a `[u8; 16]`
/// is a plain load, where extracting bytes from a `u128` by a variable amount is a
/// double-width shift.
fn shuffle_bytes<const N: usize>(a: u128, b: u128) -> u128 {
    let (src, idx) = (a.to_le_bytes(), b.to_le_bytes());
    let mut r = [0u8; 16];
    for (out, &i) in r.iter_mut().zip(&idx).take(N) {
        // Bit 7 of the index byte, spread to the whole byte, clears the result without a
        // branch; the index wraps at the width (N is a power of two).
        let clear = ((i as i8) >> 7) as u8;
        *out = src[usize::from(i) & (N - 1)] & !clear;
    }
    u128::from_le_bytes(r)
}

/// PALIGNR: the destination:source concatenation (destination high) shifted right by imm8
/// bytes, keeping the low `n` bytes; bytes shifted in are zero.
pub(super) fn palignr(a: u128, b: u128, imm: u8, n: usize) -> u128 {
    let (lo, hi) = (bytes(b, n), bytes(a, n));
    let mut r = 0;
    for i in 0..n {
        let j = usize::from(imm) + i;
        let byte = if j < n {
            lo[j]
        } else if j < 2 * n {
            hi[j - n]
        } else {
            0
        };
        put(&mut r, 8, i, u64::from(byte));
    }
    r
}

/// PABSB/W/D: the absolute value of each source element; the most negative value stays
/// as it is (it reads as its own absolute value when taken as unsigned).
pub(super) fn abs<const B: u32>(_: u128, b: u128, _: u8, n: usize) -> u128 {
    smap2(b, 0, n, B, |x, _| x.abs())
}

/// PSIGNB/W/D: each destination element negated, zeroed or kept as the source element is
/// negative, zero or positive.
pub(super) fn sign<const B: u32>(a: u128, b: u128, _: u8, n: usize) -> u128 {
    smap2(a, b, n, B, |x, y| match y.signum() {
        -1 => -x,
        0 => 0,
        _ => x,
    })
}

/// The horizontal operation shared by PHADD*/PHSUB*: adjacent pairs of the destination
/// fill the low half of the result, those of the source the high half.
fn horizontal<const B: u32>(a: u128, b: u128, n: usize, f: impl Fn(i64, i64) -> u64) -> u128 {
    let half = count(n, B) / 2;
    let mut r = 0;
    for (base, v) in [(0, a), (half, b)] {
        for i in 0..half {
            put(
                &mut r,
                B,
                base + i,
                f(sget(v, B, 2 * i), sget(v, B, 2 * i + 1)),
            );
        }
    }
    r
}

/// PHADDW/D: wrapping sums of adjacent pairs.
pub(super) fn hadd<const B: u32>(a: u128, b: u128, _: u8, n: usize) -> u128 {
    horizontal::<B>(a, b, n, |x, y| (x + y) as u64)
}

/// PHSUBW/D: wrapping differences of adjacent pairs (even element minus odd).
pub(super) fn hsub<const B: u32>(a: u128, b: u128, _: u8, n: usize) -> u128 {
    horizontal::<B>(a, b, n, |x, y| (x - y) as u64)
}

/// PHADDSW: signed saturating sums of adjacent word pairs.
pub(super) fn hadds(a: u128, b: u128, _: u8, n: usize) -> u128 {
    horizontal::<16>(a, b, n, |x, y| sat_s(x + y, 16))
}

/// PHSUBSW: signed saturating differences of adjacent word pairs.
pub(super) fn hsubs(a: u128, b: u128, _: u8, n: usize) -> u128 {
    horizontal::<16>(a, b, n, |x, y| sat_s(x - y, 16))
}

/// PMADDUBSW: unsigned destination bytes times signed source bytes, adjacent products
/// added with signed word saturation.
pub(super) fn pmaddubsw(a: u128, b: u128, _: u8, n: usize) -> u128 {
    let mut r = 0;
    for i in 0..count(n, 16) {
        let prod = |j: usize| get(a, 8, j) as i64 * sget(b, 8, j);
        put(&mut r, 16, i, sat_s(prod(2 * i) + prod(2 * i + 1), 16));
    }
    r
}

/// PMULHRSW: signed word products scaled by 2^-15 with rounding: bits 30:15 of
/// `product + 0x4000`.
pub(super) fn pmulhrsw(a: u128, b: u128, _: u8, n: usize) -> u128 {
    map2(a, b, n, 16, |x, y| {
        let p = sext(x, 16) * sext(y, 16);
        (((p >> 14) + 1) >> 1) as u64
    })
}
