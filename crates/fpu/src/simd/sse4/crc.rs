//! CRC32 (SSE4.2): the CRC-32C (Castagnoli) polynomial, bit-reflected, with neither the
//! initial nor the final inversion (software applies those around a run of CRC32
//! instructions).

/// The reflected form of the polynomial 0x1EDC6F41.
const POLY: u32 = 0x82f6_3b78;

/// The CRC of every byte value, for byte-at-a-time updates.
const TABLE: [u32; 256] = table();

const fn table() -> [u32; 256] {
    let mut t = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 { c >> 1 ^ POLY } else { c >> 1 };
            k += 1;
        }
        t[i] = c;
        i += 1;
    }
    t
}

/// CRC32 r32/r64, r/m8/16/32/64: accumulates the low `bytes` bytes of `value` (1, 2, 4 or
/// 8, least significant first, as they lie in memory) into the CRC `acc` (the low 32 bits
/// of the destination register) and returns the new CRC. The translator writes it to the
/// destination zero-extended, for the 64-bit forms as well.
pub fn crc32c(acc: u32, value: u64, bytes: u32) -> u32 {
    value.to_le_bytes()[..bytes.min(8) as usize]
        .iter()
        .fold(acc, |c, &b| {
            c >> 8 ^ TABLE[((c ^ u32::from(b)) & 0xff) as usize]
        })
}
