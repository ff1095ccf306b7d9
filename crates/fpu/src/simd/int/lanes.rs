//! Element access on packed values held in a `u128` (element 0 in the low bits), shared by
//! the lane operations.

/// A mask of the low `bits` bits (1..=64).
pub(super) fn mask(bits: u32) -> u64 {
    if bits >= 64 {
        u64::MAX
    } else {
        (1 << bits) - 1
    }
}

/// How many `bits`-wide elements an operand of `n` bytes has.
pub(super) fn count(n: usize, bits: u32) -> usize {
    n * 8 / bits as usize
}

/// Element `i` (`bits` wide), zero-extended.
pub(super) fn get(v: u128, bits: u32, i: usize) -> u64 {
    (v >> (bits as usize * i)) as u64 & mask(bits)
}

/// Element `i` (`bits` wide), sign-extended.
pub(super) fn sget(v: u128, bits: u32, i: usize) -> i64 {
    sext(get(v, bits, i), bits)
}

/// The low `bits` bits of `x` as a signed value.
pub(super) fn sext(x: u64, bits: u32) -> i64 {
    let sh = 64 - bits;
    ((x << sh) as i64) >> sh
}

/// ORs `x`, cut to `bits`, into element `i` of `r` (which must be zero there).
pub(super) fn put(r: &mut u128, bits: u32, i: usize, x: u64) {
    *r |= u128::from(x & mask(bits)) << (bits as usize * i);
}

/// Replaces element `i` of `v` with `x`.
pub(super) fn replace(v: u128, bits: u32, i: usize, x: u64) -> u128 {
    let m = u128::from(mask(bits)) << (bits as usize * i);
    (v & !m) | (u128::from(x & mask(bits)) << (bits as usize * i))
}

/// Applies `f` to each pair of corresponding unsigned elements.
pub(super) fn map2(a: u128, b: u128, n: usize, bits: u32, f: impl Fn(u64, u64) -> u64) -> u128 {
    let mut r = 0;
    for i in 0..count(n, bits) {
        put(&mut r, bits, i, f(get(a, bits, i), get(b, bits, i)));
    }
    r
}

/// Applies `f` to each pair of corresponding signed elements; the result is cut to `bits`.
pub(super) fn smap2(a: u128, b: u128, n: usize, bits: u32, f: impl Fn(i64, i64) -> i64) -> u128 {
    map2(a, b, n, bits, |x, y| f(sext(x, bits), sext(y, bits)) as u64)
}

/// `x` saturated to the signed range of `bits` bits.
pub(super) fn sat_s(x: i64, bits: u32) -> u64 {
    let max = (1i64 << (bits - 1)) - 1;
    x.clamp(-max - 1, max) as u64 & mask(bits)
}

/// `x` saturated to the unsigned range of `bits` bits.
pub(super) fn sat_u(x: i64, bits: u32) -> u64 {
    x.clamp(0, mask(bits) as i64) as u64
}

/// The low `n` bytes of `v`, element 0 first.
pub(super) fn bytes(v: u128, n: usize) -> [u8; 16] {
    let mut b = v.to_le_bytes();
    b[n..].fill(0);
    b
}
