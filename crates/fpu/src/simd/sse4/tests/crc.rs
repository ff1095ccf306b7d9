//! CRC32 (through [`crc32c`]) against the host's CRC32 instruction and a known check value.
//!
//! The `unsafe` is calling the `sse4.2` target-feature function, only after `host_ok` found
//! SSE4.2 on the host.

use core::arch::x86_64::{_mm_crc32_u16, _mm_crc32_u32, _mm_crc32_u64, _mm_crc32_u8};

use super::{host_ok, Rng};
use crate::simd::sse4::crc32c;

/// The host's CRC32 of the low `bytes` bytes of `value` (1, 2, 4 or 8).
#[target_feature(enable = "sse4.2")]
fn host_crc(acc: u32, value: u64, bytes: u32) -> u32 {
    match bytes {
        1 => _mm_crc32_u8(acc, value as u8),
        2 => _mm_crc32_u16(acc, value as u16),
        4 => _mm_crc32_u32(acc, value as u32),
        _ => {
            let r = _mm_crc32_u64(u64::from(acc), value);
            // The 64-bit form zero-extends its 32-bit CRC.
            assert_eq!(r >> 32, 0);
            r as u32
        }
    }
}

#[test]
fn crc32_matches_host() {
    if !host_ok() {
        return;
    }
    let mut rng = Rng::new(41);
    for _ in 0..20_000 {
        let acc = match rng.below(4) {
            0 => 0,
            1 => u32::MAX,
            _ => rng.next() as u32,
        };
        let value = rng.next();
        for bytes in [1, 2, 4, 8] {
            // SAFETY: the host has SSE4.2 (checked above).
            let want = unsafe { host_crc(acc, value, bytes) };
            assert_eq!(
                crc32c(acc, value, bytes),
                want,
                "{acc:#x} {value:#x} {bytes}"
            );
        }
    }
}

/// The CRC-32C check value: "123456789" with the conventional pre- and post-inversion
/// done around the instruction-level CRC gives 0xE3069283.
#[test]
fn crc32c_check_value() {
    let crc = b"123456789"
        .iter()
        .fold(u32::MAX, |c, &b| crc32c(c, u64::from(b), 1));
    assert_eq!(!crc, 0xe306_9283);
    let eight = u64::from_le_bytes(*b"12345678");
    assert_eq!(
        !crc32c(crc32c(u32::MAX, eight, 8), u64::from(b'9'), 1),
        0xe306_9283
    );
}
