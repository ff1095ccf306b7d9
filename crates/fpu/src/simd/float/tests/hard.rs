//! The host-FPU fast path (`hard`): with MXCSR where it is live (round to nearest, no
//! FTZ/DAZ, PE set and masked), results and MXCSR must equal the host CPU's and the
//! SoftFloat path's for every operand, and ordinary operands must actually take it.

use iced_x86::Code;

use super::{elem, emu, emu_fault, related, vec, Rng};
use crate::simd::float::cvt;
use crate::simd::float::hard::{self, test_hooks};
use crate::simd::float::lane::{self, Mx, Op, W};
use crate::soft::{PE, UE};

/// An instruction on the host: (MXCSR in, destination, source) to (result, MXCSR out).
use super::host::HostFn;

/// MXCSR with the fast path live: RN, no FTZ/DAZ, all exceptions masked, PE set, and
/// sometimes other sticky flags already set.
const LIVE: u32 = 0x1f80 | PE;

fn live_mxcsr(r: &mut Rng) -> u32 {
    if r.below(4) == 0 {
        LIVE | (r.next() as u32 & 0x1f)
    } else {
        LIVE
    }
}

/// An element for the fast path's tests: mostly ordinary numbers of moderate exponent
/// (the fast path's domain), else the shared generator's specials, denormals and numbers
/// at the ends of the exponent range.
fn operand(r: &mut Rng, w: W) -> u64 {
    if r.below(2) == 0 {
        return elem(r, w);
    }
    let (fbits, bias) = match w {
        W::S => (23, 127),
        W::D => (52, 1023),
    };
    let sign = (r.next() & 1) << (fbits + if w == W::S { 8 } else { 11 });
    let exp = bias - 20 + r.below(40);
    sign | exp << fbits | (r.next() & ((1 << fbits) - 1))
}

fn operand_vec(r: &mut Rng, w: W, other: Option<u128>) -> u128 {
    if r.below(4) == 0 {
        return vec(r, w, other);
    }
    let mut v = 0u128;
    for i in 0..w.lanes() {
        let e = match other {
            Some(o) if r.below(3) == 0 => related(r, w, w.get(o, i)),
            _ => operand(r, w),
        };
        w.set(&mut v, i, e);
    }
    v
}

/// Pairs at the edges of underflow and overflow (results at, just above and just below
/// the smallest normal, exact tiny results, overflow by rounding), under live MXCSR.
const EDGES_S: &[(u32, u32)] = &[
    (0x3f7f_ffff, 0x0080_0000), // (1 - 2^-24) * MIN: rounds to MIN, tiny before rounding
    (0x3f7f_ffff, 0x0080_0001),
    (0x3f80_0001, 0x0080_0000),
    (0x0080_0000, 0x3f00_0000),
    (0x0100_0000, 0x4000_0000),
    (0x0100_0000, 0x3f00_0000),
    (0x0100_0001, 0x8100_0000), // cancellation to a denormal
    (0x7f7f_ffff, 0x3f80_0001),
    (0x7f7f_ffff, 0x7f7f_ffff),
    (0x7f7f_ffff, 0x3f7f_ffff),
    (0x3f80_0000, 0xbf80_0000),
    (0x8000_0000, 0x8000_0000),
    (0x0000_0000, 0x8000_0000),
];
const EDGES_D: &[(u64, u64)] = &[
    (0x3fef_ffff_ffff_ffff, 0x0010_0000_0000_0000),
    (0x3fef_ffff_ffff_ffff, 0x0010_0000_0000_0001),
    (0x3ff0_0000_0000_0001, 0x0010_0000_0000_0000),
    (0x0010_0000_0000_0000, 0x3fe0_0000_0000_0000),
    (0x0020_0000_0000_0000, 0x4000_0000_0000_0000),
    (0x0020_0000_0000_0000, 0x3fe0_0000_0000_0000),
    (0x0020_0000_0000_0001, 0x8020_0000_0000_0000),
    (0x7fef_ffff_ffff_ffff, 0x3ff0_0000_0000_0001),
    (0x7fef_ffff_ffff_ffff, 0x7fef_ffff_ffff_ffff),
    (0x7fef_ffff_ffff_ffff, 0x3fef_ffff_ffff_ffff),
    (0x3ff0_0000_0000_0000, 0xbff0_0000_0000_0000),
    (0x8000_0000_0000_0000, 0x8000_0000_0000_0000),
    (0, 0x8000_0000_0000_0000),
];

/// The edge pairs as (destination, source) vectors, both orders and all signs, one pair
/// per element (packed forms get the same pair in every element).
fn edge_cases(w: W) -> Vec<(u128, u128)> {
    let pairs: Vec<(u64, u64)> = match w {
        W::S => EDGES_S
            .iter()
            .map(|&(a, b)| (u64::from(a), u64::from(b)))
            .collect(),
        W::D => EDGES_D.to_vec(),
    };
    let mut out = Vec::new();
    for (a, b) in pairs {
        for (sa, sb) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
            let (a, b) = (a ^ (sa * w.sign()), b ^ (sb * w.sign()));
            for (x, y) in [(a, b), (b, a)] {
                let (mut d, mut s) = (0u128, 0u128);
                for i in 0..w.lanes() {
                    w.set(&mut d, i, x);
                    w.set(&mut s, i, y);
                }
                out.push((d, s));
            }
        }
    }
    out
}

/// Runs random and edge cases of `code` under live MXCSR against `host`; returns how many
/// elements the fast path completed.
fn check_live(code: Code, w: W, host: HostFn, n: usize, seed: u64) -> u64 {
    let mut r = Rng::new(seed ^ code as u64);
    let before = test_hooks::TAKEN.get();
    let mut cases = edge_cases(w);
    for _ in 0..n {
        let d = operand_vec(&mut r, w, None);
        let s = operand_vec(&mut r, w, Some(d));
        cases.push((d, s));
    }
    for (d, s) in cases {
        let mx = live_mxcsr(&mut r);
        let want = host(mx, d, s);
        let got = emu(code, mx, d, s, 0, r.below(2) == 0);
        assert_eq!(
            got, want,
            "{code:?} mxcsr {mx:#x} d {d:#034x} s {s:#034x} (got, want)"
        );
    }
    test_hooks::TAKEN.get() - before
}

const N: usize = 20_000;

#[test]
fn live_fast_path_matches_host() {
    use Code::*;
    let mut cases = super::host::arithmetic_cases();
    cases.extend_from_slice(&[
        (Cvtsd2ss_xmm_xmmm64, W::D, host!("cvtsd2ss {x}, {y}")),
        (Cvtpd2ps_xmm_xmmm128, W::D, host!("cvtpd2ps {x}, {y}")),
        (Cvtss2sd_xmm_xmmm32, W::S, host!("cvtss2sd {x}, {y}")),
        (Cvtps2pd_xmm_xmmm64, W::S, host!("cvtps2pd {x}, {y}")),
    ]);
    for (code, w, h) in cases {
        let taken = check_live(code, w, h, N, 11);
        // Conversions to double never count: they are exact and skip SoftFloat always.
        if !matches!(code, Cvtss2sd_xmm_xmmm32 | Cvtps2pd_xmm_xmmm64) {
            assert!(
                taken > N as u64 / 10,
                "{code:?}: the fast path completed only {taken} elements"
            );
        }
    }
    if is_x86_feature_detected!("sse3") {
        for (code, w, h) in super::host::sse3_cases() {
            check_live(code, w, h, N / 2, 12);
        }
    }
}

/// The same instruction with the fast path on and off: identical destination, MXCSR and
/// fault, under live-looking MXCSRs with random exception masks (PM among them) and
/// random sticky flags, and sometimes a non-live mode.
#[test]
fn fast_and_soft_paths_agree_on_instructions() {
    use Code::*;
    let codes: &[(Code, W)] = &[
        (Addps_xmm_xmmm128, W::S),
        (Addpd_xmm_xmmm128, W::D),
        (Addss_xmm_xmmm32, W::S),
        (Addsd_xmm_xmmm64, W::D),
        (Subps_xmm_xmmm128, W::S),
        (Subsd_xmm_xmmm64, W::D),
        (Mulps_xmm_xmmm128, W::S),
        (Mulpd_xmm_xmmm128, W::D),
        (Mulss_xmm_xmmm32, W::S),
        (Mulsd_xmm_xmmm64, W::D),
        (Divps_xmm_xmmm128, W::S),
        (Divpd_xmm_xmmm128, W::D),
        (Divss_xmm_xmmm32, W::S),
        (Divsd_xmm_xmmm64, W::D),
        (Sqrtps_xmm_xmmm128, W::S),
        (Sqrtsd_xmm_xmmm64, W::D),
        (Addsubpd_xmm_xmmm128, W::D),
        (Haddps_xmm_xmmm128, W::S),
        (Dpps_xmm_xmmm128_imm8, W::S),
        (Dppd_xmm_xmmm128_imm8, W::D),
        (Cvtsd2ss_xmm_xmmm64, W::D),
        (Cvtpd2ps_xmm_xmmm128, W::D),
    ];
    let mut r = Rng::new(21);
    for &(code, w) in codes {
        let mut cases = edge_cases(w);
        for _ in 0..N {
            let d = operand_vec(&mut r, w, None);
            cases.push((d, operand_vec(&mut r, w, Some(d))));
        }
        for (d, s) in cases {
            let mx = match r.below(8) {
                // Random masks and flags, PE set.
                0..=5 => PE | (r.next() as u32 & 0x1f9f),
                6 => LIVE,
                _ => super::mxcsr(&mut r),
            };
            let imm = r.next() as u8;
            let fast = emu_fault(code, mx, d, s, imm);
            let soft = test_hooks::without(|| emu_fault(code, mx, d, s, imm));
            assert_eq!(
                fast, soft,
                "{code:?} mxcsr {mx:#x} imm {imm:#x} d {d:#034x} s {s:#034x} (fast, soft)"
            );
        }
    }
}

/// Element by element: whenever `hard` gives a result, SoftFloat's path gives the same
/// bits and no flag but PE.
#[test]
fn fast_elements_equal_softfloat_elements() {
    let mut r = Rng::new(31);
    let mut hits = 0;
    for w in [W::S, W::D] {
        for i in 0..400_000 {
            let a = operand(&mut r, w);
            let b = if i % 3 == 0 {
                related(&mut r, w, a)
            } else {
                operand(&mut r, w)
            };
            let mx = Mx(LIVE);
            for op in [Op::Add, Op::Sub, Op::Mul, Op::Div] {
                if let Some(h) = hard::binop(w, op, a, b) {
                    hits += 1;
                    let (s, f) = test_hooks::without(|| lane::binop(mx, w, op, a, b));
                    assert_eq!((h, f & !PE), (s, 0), "{w:?} {op:?} {a:#x} {b:#x}");
                }
            }
            if let Some(h) = hard::sqrt(w, a) {
                let (s, f) = test_hooks::without(|| lane::sqrt(mx, w, a));
                assert_eq!((h, f & !PE), (s, 0), "{w:?} sqrt {a:#x}");
            }
            if w == W::D {
                if let Some(h) = hard::narrow(a) {
                    let (s, f) = test_hooks::without(|| cvt::to_float(mx, W::S, a));
                    assert_eq!((h, f & !PE), (s, 0), "narrow {a:#x}");
                }
            }
        }
    }
    assert!(hits > 1_000_000, "only {hits} fast elements");
}

/// Ordinary operands take the fast path under live MXCSR, and nothing takes it otherwise.
#[test]
fn fast_path_is_taken_only_when_live() {
    let one_and_half = 1.5f64.to_bits();
    let two_and_quarter = 2.25f64.to_bits();
    let run = |code, mx, d: u64, s: u64| {
        let before = test_hooks::TAKEN.get();
        let (x, m) = emu(code, mx, u128::from(d), u128::from(s), 0, false);
        (test_hooks::TAKEN.get() - before, x as u64, m)
    };
    let add = Code::Addsd_xmm_xmmm64;
    assert_eq!(
        run(add, LIVE, one_and_half, two_and_quarter),
        (1, 3.75f64.to_bits(), LIVE)
    );
    // 1/3 is inexact: PE stays set, nothing else.
    let third = (1.0f64 / 3.0).to_bits();
    let div = Code::Divsd_xmm_xmmm64;
    assert_eq!(
        run(div, LIVE, 1f64.to_bits(), 3f64.to_bits()),
        (1, third, LIVE)
    );
    // Not live: PE clear, another rounding mode, FTZ, DAZ, PE unmasked.
    for mx in [
        0x1f80,
        LIVE | 1 << 13,
        LIVE | 3 << 13,
        LIVE | 1 << 15,
        LIVE | 1 << 6,
    ] {
        let (n, _, _) = run(add, mx, one_and_half, two_and_quarter);
        assert_eq!(n, 0, "mxcsr {mx:#x}");
    }
    let (n, _, _) = run(add, LIVE & !(1 << 12), one_and_half, two_and_quarter);
    assert_eq!(n, 0, "PE unmasked");
    // Operands outside the domain: a denormal, an infinity, a NaN, a zero divisor.
    for (code, d, s) in [
        (add, one_and_half, 1),
        (add, one_and_half, f64::INFINITY.to_bits()),
        (add, f64::NAN.to_bits(), one_and_half),
        (div, one_and_half, 0),
    ] {
        assert_eq!(run(code, LIVE, d, s).0, 0, "{code:?} {d:#x} {s:#x}");
    }
    // A product that underflows to exactly the smallest normal raises UE: slow path.
    let (n, x, m) = run(
        Code::Mulsd_xmm_xmmm64,
        LIVE,
        0x3fef_ffff_ffff_ffff,
        0x0010_0000_0000_0000,
    );
    assert_eq!((n, x, m), (0, 0x0010_0000_0000_0000, LIVE | UE));
    // x - x is an exact +0 and stays fast; a packed double counts both elements.
    assert_eq!(
        run(Code::Subsd_xmm_xmmm64, LIVE, third, third),
        (1, 0, LIVE)
    );
    let before = test_hooks::TAKEN.get();
    let v = u128::from(one_and_half) | u128::from(two_and_quarter) << 64;
    emu(Code::Mulpd_xmm_xmmm128, LIVE, v, v, 0, false);
    assert_eq!(test_hooks::TAKEN.get() - before, 2);
}
