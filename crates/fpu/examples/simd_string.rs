//! Times the SSE4.2 string compares (PCMPxSTRx) and SSSE3 PSHUFB through [`execute_simd`],
//! the entry point translated code calls, on a rotating set of string-like operands (text
//! with NULs at varying positions, as glibc's str* functions see) so that no single input
//! pattern is all the branch predictor has to learn.
//!
//! `cargo run --release -p crane86-fpu --example simd_string [instructions [operand pairs]]`

use std::hint::black_box;
use std::time::Instant;

use crane86_fpu::{execute_simd, Fpu, Loc, Operands, IO_DATA0, IO_RAX, IO_RDX};
use iced_x86::Code;

/// Operand pairs: short character sets or substrings for XMM1, text for XMM2.
fn operands() -> Vec<(u128, u128)> {
    // A small xorshift generator: the example needs variety, not quality.
    let mut s = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    (0..64)
        .map(|_| {
            let set_len = 1 + next() % 6;
            let text_len = 8 + next() % 9;
            let mut text = |len: u64| {
                let mut b = [0u8; 16];
                for x in b.iter_mut().take(len as usize) {
                    *x = b'a' + (next() % 26) as u8;
                }
                u128::from_le_bytes(b)
            };
            (text(set_len), text(text_len))
        })
        .collect()
}

/// `code` with `imm` over the operand pairs, `n` instructions; nanoseconds per instruction.
fn time(code: Code, imm: u8, pairs: &[(u128, u128)], n: u64) -> f64 {
    let mut f = Fpu::default();
    let ops = Operands::new([Loc::Xmm(1), Loc::Xmm(2), Loc::None], imm, 0);
    let mut sink = 0u128;
    let start = Instant::now();
    for i in 0..n {
        let (a, b) = pairs[i as usize % pairs.len()];
        f.set_xmm128(1, a);
        f.set_xmm128(2, b);
        // The explicit-length forms read EAX/EDX; 5 and 12 are typical.
        f.io[IO_RAX] = 5;
        f.io[IO_RDX] = 12;
        execute_simd(black_box(&mut f), code, ops).expect("no fault");
        sink ^= f.xmm128(0) ^ f.xmm128(1) ^ u128::from(f.io[IO_DATA0]);
    }
    let ns = start.elapsed().as_nanos() as f64 / n as f64;
    black_box(sink);
    ns
}

fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .map_or(5_000_000, |a| a.parse().expect("a count"));
    // Fewer operand pairs make the branches predictable, isolating the arithmetic.
    let mut pairs = operands();
    if let Some(k) = std::env::args().nth(2) {
        pairs.truncate(k.parse().expect("a number of operand pairs"));
    }
    let cases = [
        ("PCMPISTRI 0x00", Code::Pcmpistri_xmm_xmmm128_imm8, 0x00),
        ("PCMPISTRI 0x0c", Code::Pcmpistri_xmm_xmmm128_imm8, 0x0c),
        ("PCMPISTRI 0x1a", Code::Pcmpistri_xmm_xmmm128_imm8, 0x1a),
        ("PCMPISTRI 0x3a", Code::Pcmpistri_xmm_xmmm128_imm8, 0x3a),
        ("PCMPISTRI 0x12", Code::Pcmpistri_xmm_xmmm128_imm8, 0x12),
        ("PCMPISTRI 0x44", Code::Pcmpistri_xmm_xmmm128_imm8, 0x44),
        ("PCMPISTRI 0x01", Code::Pcmpistri_xmm_xmmm128_imm8, 0x01),
        ("PCMPISTRM 0x40", Code::Pcmpistrm_xmm_xmmm128_imm8, 0x40),
        ("PCMPESTRI 0x0c", Code::Pcmpestri_xmm_xmmm128_imm8, 0x0c),
        ("PCMPESTRM 0x18", Code::Pcmpestrm_xmm_xmmm128_imm8, 0x18),
        ("PSHUFB xmm", Code::Pshufb_xmm_xmmm128, 0),
        ("PSHUFB mm", Code::Pshufb_mm_mmm64, 0),
        // A trivial instruction: the cost of the entry point and of this loop.
        ("PXOR xmm (floor)", Code::Pxor_xmm_xmmm128, 0),
    ];
    println!("{n} instructions each, ns per instruction through execute_simd");
    for (name, code, imm) in cases {
        let ops = if matches!(code, Code::Pshufb_mm_mmm64) {
            // MMX registers; the operands are the same values, cut to 64 bits.
            time_mmx(code, &pairs, n)
        } else {
            time(code, imm, &pairs, n)
        };
        println!("{name:16} {ops:8.1}");
    }
}

/// Like [`time`] for an MMX form (MM1, MM2).
fn time_mmx(code: Code, pairs: &[(u128, u128)], n: u64) -> f64 {
    let mut f = Fpu::default();
    let ops = Operands::new([Loc::Mm(1), Loc::Mm(2), Loc::None], 0, 0);
    let mut sink = 0u64;
    let start = Instant::now();
    for i in 0..n {
        let (a, b) = pairs[i as usize % pairs.len()];
        f.set_mm(1, a as u64);
        f.set_mm(2, b as u64);
        execute_simd(black_box(&mut f), code, ops).expect("no fault");
        sink ^= f.mm(1);
    }
    let ns = start.elapsed().as_nanos() as f64 / n as f64;
    black_box(sink);
    ns
}
