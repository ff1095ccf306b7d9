//! Times SSE arithmetic through [`execute_simd`], the entry point translated code calls,
//! with the host-FPU fast path live (MXCSR.PE already set, round to nearest) and without
//! it (MXCSR reset to 0x1F80 before every instruction, so PE is clear and every element
//! goes through SoftFloat).
//!
//! `cargo run --release -p crane86-fpu --example sse_fast_path [instructions]`

use std::hint::black_box;
use std::time::Instant;

use crane86_fpu::{execute_simd, Fpu, Loc, Operands};
use iced_x86::Code;

/// XMM1 = `d` op XMM2 = `s`, `n` times in a row; nanoseconds per instruction.
fn time(code: Code, d: f64, s: f64, mxcsr: u32, n: u64) -> f64 {
    let single = matches!(code, Code::Mulps_xmm_xmmm128 | Code::Addps_xmm_xmmm128);
    let splat = |x: f64| -> u128 {
        if single {
            u128::from((x as f32).to_bits()) * 0x0000_0001_0000_0001_0000_0001_0000_0001
        } else {
            u128::from(x.to_bits()) * (1 | 1 << 64)
        }
    };
    let mut f = Fpu {
        mxcsr,
        ..Fpu::default()
    };
    f.set_xmm128(1, splat(d));
    f.set_xmm128(2, splat(s));
    let ops = Operands::new([Loc::Xmm(1), Loc::Xmm(2), Loc::None], 0, 0);
    let start = Instant::now();
    for _ in 0..n {
        f.mxcsr = mxcsr;
        execute_simd(black_box(&mut f), code, ops).expect("no fault");
    }
    let ns = start.elapsed().as_nanos() as f64 / n as f64;
    // The accumulator stays an ordinary number, so the live run is all fast path.
    let r = f.xmm128(1) as u64;
    assert!(if single {
        f32::from_bits(r as u32).is_normal()
    } else {
        f64::from_bits(r).is_normal()
    });
    ns
}

fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .map_or(10_000_000, |a| a.parse().expect("a count"));
    let cases = [
        ("ADDSD", Code::Addsd_xmm_xmmm64, 1.0, 1e-3),
        ("SUBSD", Code::Subsd_xmm_xmmm64, 1e5, 1e-3),
        ("MULSD", Code::Mulsd_xmm_xmmm64, 1.0, 0.999_999_9),
        ("DIVSD", Code::Divsd_xmm_xmmm64, 1.0, 1.000_000_1),
        ("SQRTSD", Code::Sqrtsd_xmm_xmmm64, 2.0, 3.0),
        ("ADDPD", Code::Addpd_xmm_xmmm128, 1.0, 1e-3),
        ("MULPD", Code::Mulpd_xmm_xmmm128, 1.0, 0.999_999_9),
        ("ADDPS", Code::Addps_xmm_xmmm128, 1.0, 1e-3),
        ("MULPS", Code::Mulps_xmm_xmmm128, 1.0, 0.999_999_9),
    ];
    println!("{n} instructions each, ns per instruction through execute_simd");
    println!(
        "{:8} {:>10} {:>10} {:>8}",
        "", "SoftFloat", "fast path", "speed-up"
    );
    for (name, code, d, s) in cases {
        let soft = time(code, d, s, 0x1f80, n);
        let fast = time(code, d, s, 0x1fa0, n);
        println!("{name:8} {soft:10.1} {fast:10.1} {:7.1}x", soft / fast);
    }
}
