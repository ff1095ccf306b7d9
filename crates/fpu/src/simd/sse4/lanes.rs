//! Views of a 128-bit vector as arrays of little-endian lanes, and back.

/// The 16 bytes of `v`, lowest first.
pub(super) fn u8s(v: u128) -> [u8; 16] {
    v.to_le_bytes()
}

/// The vector made of 16 bytes, lowest first.
pub(super) fn from_u8s(a: [u8; 16]) -> u128 {
    u128::from_le_bytes(a)
}

/// The 8 words of `v`, lowest first.
pub(super) fn u16s(v: u128) -> [u16; 8] {
    core::array::from_fn(|i| (v >> (16 * i)) as u16)
}

/// The vector made of 8 words, lowest first.
pub(super) fn from_u16s(a: [u16; 8]) -> u128 {
    a.iter()
        .enumerate()
        .fold(0, |r, (i, &x)| r | u128::from(x) << (16 * i))
}

/// The 4 doublewords of `v`, lowest first.
pub(super) fn u32s(v: u128) -> [u32; 4] {
    core::array::from_fn(|i| (v >> (32 * i)) as u32)
}

/// The vector made of 4 doublewords, lowest first.
pub(super) fn from_u32s(a: [u32; 4]) -> u128 {
    a.iter()
        .enumerate()
        .fold(0, |r, (i, &x)| r | u128::from(x) << (32 * i))
}

/// The 2 quadwords of `v`, lowest first.
pub(super) fn u64s(v: u128) -> [u64; 2] {
    [v as u64, (v >> 64) as u64]
}

/// The vector made of 2 quadwords, lowest first.
pub(super) fn from_u64s(a: [u64; 2]) -> u128 {
    u128::from(a[0]) | u128::from(a[1]) << 64
}

/// All-ones in the low `bits` bits (`bits` in 1..=128).
pub(super) fn ones(bits: u32) -> u128 {
    u128::MAX >> (128 - bits)
}
