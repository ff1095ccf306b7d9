//! PCMPESTRI/M (with and without REX.W) and PCMPISTRI/M against the host, for every imm8
//! value, on strings with NULs, small alphabets (so matches are common), embedded
//! substrings and explicit lengths that are negative, oversized or have junk in the upper
//! half of RAX/RDX; and, without the host, against [`reference`], a direct
//! element-by-element model of the SDM's definition, on random operands by proptest.

use proptest::prelude::{
    any, prop, prop_assert_eq, prop_oneof, proptest, Just, ProptestConfig, Strategy,
};

use super::*;
use crate::simd::sse4::string::soft_int_res2;
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

/// The software IntRes2 (the fallback for hosts without SSE4.2) against the host's
/// PCMPESTRM, which [`crate::simd::sse4::string::execute`] uses where it can: every imm8
/// that matters (bits 5:0) and every pair of lengths.
#[test]
fn the_software_compare_matches_the_host_instruction() {
    if !host_ok() {
        return;
    }
    let mut rng = Rng::new(17);
    for imm in 0..64u8 {
        let n = if imm & 1 != 0 { 8 } else { 16 };
        for _ in 0..20 {
            let a = string_vec(&mut rng, imm & 1 != 0);
            let b = string_vec(&mut rng, imm & 1 != 0);
            for la in 0..=n {
                for lb in 0..=n {
                    let mut h = Host {
                        x1: a,
                        x2: b,
                        rax: u64::from(la),
                        rdx: u64::from(lb),
                        ..Host::default()
                    };
                    host_estrm(imm, &mut h);
                    assert_eq!(
                        u128::from(soft_int_res2(imm, a, la, b, lb)),
                        h.x0,
                        "imm={imm:#04x} a={a:#x} la={la} b={b:#x} lb={lb}"
                    );
                }
            }
        }
    }
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

/// The string compares element by element, written straight from the SDM's definition
/// (this was the emulator's implementation before it went bit-parallel): the model the
/// property test holds the real one to.
mod reference {
    /// The element format of imm8[1:0].
    #[derive(Clone, Copy)]
    struct Format {
        words: bool,
        signed: bool,
    }

    impl Format {
        fn count(self) -> usize {
            if self.words {
                8
            } else {
                16
            }
        }

        fn bits(self) -> u32 {
            if self.words {
                16
            } else {
                8
            }
        }

        /// The elements, sign- or zero-extended (the unused tail is zero).
        fn elements(self, v: u128) -> [i32; 16] {
            let mut e = [0i32; 16];
            for (i, x) in e.iter_mut().take(self.count()).enumerate() {
                let raw = (v >> (i as u32 * self.bits())) as u16;
                *x = match (self.words, self.signed) {
                    (false, false) => i32::from(raw as u8),
                    (false, true) => i32::from(raw as u8 as i8),
                    (true, false) => i32::from(raw),
                    (true, true) => i32::from(raw as i16),
                };
            }
            e
        }
    }

    /// How the string lengths are found.
    #[derive(Clone, Copy, Debug)]
    pub(super) enum Lengths {
        /// EAX and EDX, signed 32-bit (the upper halves of RAX/RDX ignored).
        Explicit32,
        /// RAX and RDX, signed 64-bit.
        Explicit64,
        /// Up to the first zero element.
        Implicit,
    }

    /// What one instruction produces: the arithmetic flags (CF, ZF, SF, OF), the index
    /// (…STRI) and the mask (…STRM).
    #[derive(Debug, PartialEq, Eq)]
    pub(super) struct Out {
        pub(super) flags: u64,
        pub(super) index: u64,
        pub(super) mask: u128,
    }

    /// PCMPxSTRx with `imm` on xmm1 = `a`, xmm2/m128 = `b`, RAX, RDX.
    pub(super) fn pcmpstr(lengths: Lengths, imm: u8, a: u128, b: u128, rax: u64, rdx: u64) -> Out {
        let fmt = Format {
            words: imm & 1 != 0,
            signed: imm & 2 != 0,
        };
        let n = fmt.count();
        let explicit = |v: i64| v.unsigned_abs().min(n as u64) as usize;
        let implicit = |v: u128| {
            let w = fmt.bits();
            (0..n)
                .find(|&i| (v >> (i as u32 * w)) as u16 & (u128::MAX >> (128 - w)) as u16 == 0)
                .unwrap_or(n)
        };
        let (la, lb) = match lengths {
            Lengths::Explicit32 => (
                explicit(i64::from(rax as u32 as i32)),
                explicit(i64::from(rdx as u32 as i32)),
            ),
            Lengths::Explicit64 => (explicit(rax as i64), explicit(rdx as i64)),
            Lengths::Implicit => (implicit(a), implicit(b)),
        };
        let res = compare(fmt, imm, &fmt.elements(a), la, &fmt.elements(b), lb);
        let flags = u64::from(res != 0)
            | u64::from(lb < n) << 6
            | u64::from(la < n) << 7
            | u64::from(res & 1) << 11;
        let msb = imm & 0x40 != 0;
        let index = if res == 0 {
            n as u32
        } else if msb {
            31 - res.leading_zeros()
        } else {
            res.trailing_zeros()
        };
        let mask = if msb {
            let w = fmt.bits();
            (0..n as u32)
                .filter(|&i| res >> i & 1 != 0)
                .fold(0u128, |m, i| m | (u128::MAX >> (128 - w)) << (i * w))
        } else {
            u128::from(res)
        };
        Out {
            flags,
            index: u64::from(index),
            mask,
        }
    }

    /// IntRes2 for imm8 `imm` on registers `a` (`la` valid elements) and `b` (`lb`).
    pub(super) fn int_res2(imm: u8, a: u128, la: usize, b: u128, lb: usize) -> u32 {
        let fmt = Format {
            words: imm & 1 != 0,
            signed: imm & 2 != 0,
        };
        compare(fmt, imm, &fmt.elements(a), la, &fmt.elements(b), lb)
    }

    /// IntRes2 (see the SDM, and the comments of the real implementation).
    fn compare(fmt: Format, imm: u8, a: &[i32; 16], la: usize, b: &[i32; 16], lb: usize) -> u32 {
        let n = fmt.count();
        let mut res1 = 0u32;
        for j in 0..n {
            let hit = match imm >> 2 & 3 {
                0 => j < lb && a[..la].contains(&b[j]),
                1 => {
                    j < lb
                        && (0..la / 2 * 2)
                            .step_by(2)
                            .any(|i| a[i] <= b[j] && b[j] <= a[i + 1])
                }
                2 => match (j < la, j < lb) {
                    (true, true) => a[j] == b[j],
                    (false, false) => true,
                    _ => false,
                },
                _ => (0..n - j).all(|i| match (i < la, i + j < lb) {
                    (false, _) => true,
                    (true, true) => a[i] == b[i + j],
                    (true, false) => false,
                }),
            };
            res1 |= u32::from(hit) << j;
        }
        let all = (1u32 << n) - 1;
        match imm >> 4 & 3 {
            1 => res1 ^ all,
            3 => res1 ^ ((1u32 << lb) - 1),
            _ => res1,
        }
    }
}

/// A register of string-like bytes: drawn from a tiny alphabet (so that equal elements,
/// and equal words, are common), NULs (which end implicit-length strings), the byte
/// boundary values and anything.
fn arb_text() -> impl Strategy<Value = u128> {
    let byte = prop_oneof![
        3 => 0x61u8..0x64,
        1 => Just(0u8),
        1 => prop::sample::select(vec![0x7fu8, 0x80, 0xff, 0x01]),
        1 => any::<u8>(),
    ];
    prop::array::uniform16(byte).prop_map(u128::from_le_bytes)
}

/// An explicit length for RAX/RDX: small, negative, beyond the element count, or with
/// junk in the upper half (which the 32-bit forms must ignore).
fn arb_length() -> impl Strategy<Value = u64> {
    prop_oneof![
        3 => (-20i64..=20).prop_map(|v| v as u64),
        1 => prop::sample::select(vec![
            i64::MIN as u64,
            u64::MAX,
            0x8000_0000,
            0xffff_ffff_0000_0003,
        ]),
        1 => any::<u64>(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    /// The software IntRes2 agrees with [`reference`] for every imm8 and pair of lengths,
    /// whatever the host (on an SSE4.2 host the instructions themselves take the host's
    /// result, so this is what keeps the fallback honest).
    #[test]
    fn the_software_compare_matches_the_reference(a in arb_text(), b in arb_text()) {
        for imm in 0..64u8 {
            let n = if imm & 1 != 0 { 8 } else { 16 };
            for la in 0..=n {
                for lb in 0..=n {
                    prop_assert_eq!(
                        soft_int_res2(imm, a, la, b, lb),
                        reference::int_res2(imm, a, la as usize, b, lb as usize),
                        "imm={:#04x} a={:#x} la={} b={:#x} lb={}", imm, a, la, b, lb
                    );
                }
            }
        }
    }

    /// All six forms and all 256 immediates agree with [`reference`]: flags, index (…STRI,
    /// with XMM0 untouched) and mask (…STRM).
    #[test]
    fn pcmpstr_matches_reference(
        a in arb_text(),
        b in arb_text(),
        plant in prop::option::of(0u32..16),
        rax in arb_length(),
        rdx in arb_length(),
        x0 in any::<u128>(),
    ) {
        // Plant a at byte `shift` of b so that equal ordered finds (partial) matches.
        let b = match plant {
            Some(shift) => b & !(u128::MAX << (8 * shift)) | a << (8 * shift),
            None => b,
        };
        use reference::Lengths::*;
        let forms = [
            (Code::Pcmpestri_xmm_xmmm128_imm8, Explicit32, true),
            (Code::Pcmpestrm_xmm_xmmm128_imm8, Explicit32, false),
            (Code::Pcmpestri64_xmm_xmmm128_imm8, Explicit64, true),
            (Code::Pcmpestrm64_xmm_xmmm128_imm8, Explicit64, false),
            (Code::Pcmpistri_xmm_xmmm128_imm8, Implicit, true),
            (Code::Pcmpistrm_xmm_xmmm128_imm8, Implicit, false),
        ];
        for imm in 0..=255u8 {
            for (code, lengths, index) in forms {
                let want = reference::pcmpstr(lengths, imm, a, b, rax, rdx);
                let mut fpu = fpu_of(&Host { x0, x1: a, x2: b, rax, rdx, ..Host::default() });
                run(&mut fpu, code, [Loc::Xmm(1), Loc::Xmm(2), Loc::None], imm);
                let what =
                    format!("{code:?} imm={imm:#04x} a={a:#x} b={b:#x} rax={rax:#x} rdx={rdx:#x}");
                prop_assert_eq!(fpu.io[IO_FLAGS], want.flags, "flags: {}", what);
                if index {
                    prop_assert_eq!(fpu.io[IO_DATA0], want.index, "index: {}", what);
                    prop_assert_eq!(fpu.xmm128(0), x0, "xmm0: {}", what);
                } else {
                    prop_assert_eq!(fpu.xmm128(0), want.mask, "mask: {}", what);
                }
            }
        }
    }
}
