//! PCMPESTRI/M (with and without REX.W) and PCMPISTRI/M against the host, for every imm8
//! value, on strings with NULs, small alphabets (so matches are common), embedded
//! substrings and explicit lengths that are negative, oversized or have junk in the upper
//! half of RAX/RDX.

use super::*;
use crate::state::{IO_DATA0, IO_FLAGS};

with_imms!(host_imm_fn!(host_estrm, "0x66, 0x0f, 0x3a, 0x60, 0xca"));
with_imms!(host_imm_fn!(
    host_estrm64,
    "0x66, 0x48, 0x0f, 0x3a, 0x60, 0xca"
));
with_imms!(host_imm_fn!(host_estri, "0x66, 0x0f, 0x3a, 0x61, 0xca"));
with_imms!(host_imm_fn!(
    host_estri64,
    "0x66, 0x48, 0x0f, 0x3a, 0x61, 0xca"
));
with_imms!(host_imm_fn!(host_istrm, "0x66, 0x0f, 0x3a, 0x62, 0xca"));
with_imms!(host_imm_fn!(host_istri, "0x66, 0x0f, 0x3a, 0x63, 0xca"));

/// A "string" register: elements of the given width drawn mostly from a tiny alphabet,
/// with NULs and boundary values mixed in.
fn string_vec(rng: &mut Rng, words: bool) -> u128 {
    let w = if words { 16 } else { 8 };
    let nul_odds = 2 + rng.below(12);
    let mut v = 0u128;
    for i in 0..128 / w {
        let e: u128 = if rng.below(nul_odds) == 0 {
            0
        } else {
            match rng.below(10) {
                0..=5 => u128::from(b'a') + u128::from(rng.below(3)),
                6 => [0x7f, 0x80, 0xff, 0x7fff, 0x8000, 0xffff, 1][rng.below(7) as usize],
                _ => u128::from(rng.next()),
            }
        };
        v |= (e & ((1 << w) - 1)) << (i * w);
    }
    v
}

/// A string length for RAX/RDX.
fn length(rng: &mut Rng) -> u64 {
    match rng.below(8) {
        0..=3 => rng.below(20),
        4 => (rng.below(20) as i64).wrapping_neg() as u64,
        5 => [
            0x8000_0000,
            0xffff_ffff_0000_0003,
            0x0000_0001_0000_0005,
            0x8000_0000_0000_0000,
            u64::MAX,
            0x7fff_ffff,
            0xffff_fff0,
            0x8000_0000_0000_0007,
        ][rng.below(8) as usize],
        _ => rng.next(),
    }
}

/// Host and emulator agree on `code` (run on the host by `host`) for all 256 immediates.
fn check(code: Code, host: fn(u8, &mut Host), index: bool, seed: u64) {
    if !host_ok() {
        return;
    }
    let mut rng = Rng::new(seed);
    for imm in 0..=255u8 {
        let words = imm & 1 != 0;
        for _ in 0..40 {
            let a = string_vec(&mut rng, words);
            let mut b = string_vec(&mut rng, words);
            if rng.below(3) == 0 {
                // Plant (a prefix of) `a` in `b` so equal-ordered finds something.
                let shift = 8 * rng.below(16) as u32;
                b = b & !(u128::MAX << shift) | a << shift;
            }
            let h0 = Host {
                x0: rng.u128(),
                x1: a,
                x2: b,
                rax: length(&mut rng),
                rcx: rng.next(),
                rdx: length(&mut rng),
                flags: 0,
            };
            let mut h = h0;
            host(imm, &mut h);
            for mem in [false, true] {
                let mut fpu = fpu_of(&h0);
                let src = if mem {
                    fpu.set_io128(b);
                    Loc::Mem
                } else {
                    Loc::Xmm(2)
                };
                run(&mut fpu, code, [Loc::Xmm(1), src, Loc::None], imm);
                let what = format!("{code:?} imm={imm:#04x} {h0:x?} mem={mem}");
                assert_eq!(fpu.io[IO_FLAGS], h.flags & ARITH_FLAGS, "flags: {what}");
                if index {
                    assert_eq!(fpu.io[IO_DATA0], h.rcx, "index: {what}");
                    assert_eq!(fpu.xmm128(0), h0.x0, "xmm0: {what}");
                } else {
                    assert_eq!(fpu.xmm128(0), h.x0, "mask: {what}");
                }
                assert_eq!(fpu.xmm128(1), a, "xmm1: {what}");
            }
        }
    }
}

#[test]
fn pcmpestri_matches_host() {
    check(Code::Pcmpestri_xmm_xmmm128_imm8, host_estri, true, 11);
}

#[test]
fn pcmpestri64_matches_host() {
    check(Code::Pcmpestri64_xmm_xmmm128_imm8, host_estri64, true, 12);
}

#[test]
fn pcmpestrm_matches_host() {
    check(Code::Pcmpestrm_xmm_xmmm128_imm8, host_estrm, false, 13);
}

#[test]
fn pcmpestrm64_matches_host() {
    check(Code::Pcmpestrm64_xmm_xmmm128_imm8, host_estrm64, false, 14);
}

#[test]
fn pcmpistri_matches_host() {
    check(Code::Pcmpistri_xmm_xmmm128_imm8, host_istri, true, 15);
}

#[test]
fn pcmpistrm_matches_host() {
    check(Code::Pcmpistrm_xmm_xmmm128_imm8, host_istrm, false, 16);
}

/// Known answers that do not depend on the host: strcspn-, strspn- and strstr-style uses.
#[test]
fn pcmpistri_known_vectors() {
    let s = |t: &[u8]| {
        let mut b = [0u8; 16];
        b[..t.len()].copy_from_slice(t);
        u128::from_le_bytes(b)
    };
    // (xmm1 string, xmm2 string, imm8, index, CF/ZF/SF)
    type Case = (&'static [u8], &'static [u8], u8, u64, u64);
    let cases: [Case; 5] = [
        // Equal any: first of "xyz" in "abcdzef" is at 4; ZF (string ends), SF (set ends).
        (b"xyz", b"abcdzef", 0x00, 4, 0x01 | 0x40 | 0x80),
        // Equal any, masked negative: the first character of "abcabd" not in "abc" is at 5.
        (b"abc", b"abcabd", 0x30, 5, 0x01 | 0x40 | 0x80),
        // Ranges "az": first lower-case letter of "12Ab3c" is at 3.
        (b"az", b"12Ab3c", 0x04, 3, 0x01 | 0x40 | 0x80),
        // Equal ordered: "lo" in "hello world" at 3.
        (b"lo", b"hello world", 0x0c, 3, 0x01 | 0x40 | 0x80),
        // Equal each on identical full strings, negative polarity: no mismatch, index 16.
        (b"0123456789abcdef", b"0123456789abcdef", 0x18, 16, 0),
    ];
    for (a, b, imm, index, flags) in cases {
        let mut fpu = Fpu::default();
        fpu.set_xmm128(1, s(a));
        fpu.set_xmm128(2, s(b));
        run(
            &mut fpu,
            Code::Pcmpistri_xmm_xmmm128_imm8,
            [Loc::Xmm(1), Loc::Xmm(2), Loc::None],
            imm,
        );
        assert_eq!(fpu.io[IO_DATA0], index, "{a:?} {b:?} {imm:#x}");
        assert_eq!(fpu.io[IO_FLAGS] & 0xc1, flags, "{a:?} {b:?} {imm:#x}");
    }
}
