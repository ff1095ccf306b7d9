//! Tests for the SSE float operations compiled inline: the guards (MXCSR, each element,
//! MIN/MAX), and every inline form, scalar and packed, against the FPU unit in both back
//! ends.

use super::{element, mxcsr_fast};
use crate::emit::{FloatOp, FloatWidth};
use crate::interp::Values;
use crate::testutil::{encode, run_both, DATA};
use crane86_fpu::{Operands, IO_DATA0, IO_DATA1};
use crane86_runtime::{CpuMode, CpuState};
use iced_x86::{Code, Instruction, MemoryOperand, Register};

/// MXCSR with PE set and every exception masked: the state the fast path needs.
const FAST: u32 = 0x1fa0;
/// MXCSR values the guard must send to the helper, and some it must not.
const MXCSRS: [u32; 8] = [
    FAST,
    0x1f80,            // PE clear: an inexact result would raise it
    FAST | 1 << 15,    // FTZ
    FAST | 1 << 6,     // DAZ
    FAST | 1 << 13,    // round down
    FAST & !(1 << 12), // PE unmasked
    FAST & !(1 << 11), // UE unmasked (irrelevant to accepted elements)
    FAST | 0x1f,       // other sticky flags (irrelevant)
];

const D_MIN: u64 = 0x0010_0000_0000_0000;
/// Doubles of every class, and pairs whose results are tiny, huge or exact zeros.
const DOUBLES: [u64; 22] = [
    0,
    1 << 63,
    0x3ff0_0000_0000_0000, // 1
    0xbff0_0000_0000_0000, // -1
    0x3ff8_0000_0000_0000, // 1.5
    0x4008_0000_0000_0000, // 3
    0x3fb9_9999_9999_999a, // 0.1
    0xc004_0000_0000_0000, // -2.5
    D_MIN,
    D_MIN | 1 << 63,
    D_MIN + (D_MIN >> 1),
    0x2000_0000_0000_0000, // 2^-511: squares are tiny
    0x5fe0_0000_0000_0000, // 2^511: squares overflow
    1,                     // denormal
    0x000f_ffff_ffff_ffff, // largest denormal
    0x7fef_ffff_ffff_ffff, // largest normal
    0x7ff0_0000_0000_0000, // +inf
    0xfff0_0000_0000_0000, // -inf
    0x7ff8_0000_0000_0000, // QNaN
    0x7ff0_0000_0000_0001, // SNaN
    0x3ff0_0000_0000_0001, // 1 + ulp
    0x0020_0000_0000_0000, // 2 * D_MIN: halves to D_MIN exactly
];
const S_MIN: u64 = 0x0080_0000;
const SINGLES: [u64; 20] = [
    0,
    0x8000_0000,
    0x3f80_0000, // 1
    0xbf80_0000, // -1
    0x3fc0_0000, // 1.5
    0x4040_0000, // 3
    0x3dcc_cccd, // 0.1
    0xc020_0000, // -2.5
    S_MIN,
    S_MIN | 0x8000_0000,
    0x2000_0000, // 2^-63: squares are tiny
    0x5f00_0000, // 2^63: squares overflow
    1,
    0x007f_ffff,
    0x7f7f_ffff,
    0x7f80_0000,
    0xff80_0000,
    0x7fc0_0000,
    0x7f80_0001,
    0x0100_0000, // 2 * S_MIN
];

fn f64b(x: f64) -> u64 {
    x.to_bits()
}

#[test]
fn mxcsr_guard() {
    let fast = |m: u32| mxcsr_fast(&mut Values, u64::from(m));
    assert_eq!(fast(FAST), 1);
    assert_eq!(fast(FAST | 0x1f), 1, "other sticky flags do not matter");
    assert_eq!(
        fast(FAST & !(0x1f << 7)),
        1,
        "masks other than PM do not matter"
    );
    assert_eq!(fast(0x1f80), 0, "PE clear");
    assert_eq!(fast(FAST | 1 << 15), 0, "FTZ");
    assert_eq!(fast(FAST | 1 << 6), 0, "DAZ");
    for rc in 1..4 {
        assert_eq!(fast(FAST | rc << 13), 0, "RC {rc}");
    }
    assert_eq!(fast(FAST & !(1 << 12)), 0, "PE unmasked");
}

#[test]
fn element_guard() {
    use FloatOp::*;
    use FloatWidth::Double as D;
    let el = |op, a, b| element(&mut Values, op, D, a, b);
    let one = f64b(1.0);
    assert_eq!(el(Add, one, f64b(2.0)), (f64b(3.0), 1));
    assert_eq!(el(Div, one, f64b(3.0)), (f64b(1.0 / 3.0), 1));
    assert_eq!(el(Sqrt, 0, f64b(2.0)), (f64b(2f64.sqrt()), 1));
    // Exact zeros: x - x, x + -x, a zero factor, a zero dividend, sqrt(+0).
    assert_eq!(el(Sub, one, one), (0, 1));
    assert_eq!(el(Add, one, f64b(-1.0)), (0, 1));
    assert_eq!(el(Mul, 1 << 63, one), (1 << 63, 1));
    assert_eq!(el(Div, 0, one), (0, 1));
    assert_eq!(el(Sqrt, 0, 0), (0, 1));
    // A tiny result (even one delivered as the smallest normal), an underflow to zero.
    assert_eq!(el(Mul, D_MIN, f64b(0.5)).1, 0);
    assert_eq!(el(Div, D_MIN, f64b(1.0 + f64::EPSILON)).1, 0);
    assert_eq!(el(Mul, f64b(1e-200), f64b(1e-200)).1, 0);
    assert_eq!(
        el(Sub, D_MIN + (D_MIN >> 1), D_MIN).1,
        0,
        "a denormal difference"
    );
    // Overflow, infinities, NaNs, denormal operands.
    assert_eq!(el(Mul, f64b(1e200), f64b(1e200)).1, 0);
    assert_eq!(el(Add, f64b(f64::INFINITY), one).1, 0);
    assert_eq!(el(Add, 0x7ff8_0000_0000_0000, one).1, 0);
    assert_eq!(el(Add, one, 0x7ff0_0000_0000_0001).1, 0);
    assert_eq!(el(Add, one, 1).1, 0, "denormal source");
    assert_eq!(el(Mul, 1, 0).1, 0, "denormal destination");
    // Division by zero, square roots of negatives and of -0.
    assert_eq!(el(Div, one, 0).1, 0);
    assert_eq!(el(Div, 0, 0).1, 0);
    assert_eq!(el(Sqrt, 0, f64b(-4.0)).1, 0);
    assert_eq!(el(Sqrt, 0, 1 << 63).1, 0);
    // Singles: the same rules on 32-bit elements.
    let s = |op, a: f32, b: f32| {
        element(
            &mut Values,
            op,
            FloatWidth::Single,
            a.to_bits().into(),
            b.to_bits().into(),
        )
    };
    assert_eq!(s(Mul, 3.0, 0.5), (1.5f32.to_bits().into(), 1));
    assert_eq!(s(Mul, 1e-30, 1e-30).1, 0);
    assert_eq!(s(Mul, 1e30, 1e30).1, 0);
    assert_eq!(s(Add, f32::MIN_POSITIVE / 2.0, 1.0).1, 0);
}

#[test]
fn minmax_guard() {
    use super::minmax_element;
    let mm = |a: f64, b: f64, max| {
        minmax_element(
            &mut Values,
            FloatWidth::Double,
            a.to_bits(),
            b.to_bits(),
            max,
        )
    };
    assert_eq!(mm(1.0, 2.0, false), (f64b(1.0), 1));
    assert_eq!(mm(1.0, 2.0, true), (f64b(2.0), 1));
    assert_eq!(mm(-3.0, f64::INFINITY, false), (f64b(-3.0), 1));
    // Two zeros, or equal values: the source.
    assert_eq!(mm(0.0, -0.0, false), (1 << 63, 1));
    assert_eq!(mm(-0.0, 0.0, true), (0, 1));
    // NaNs (IE) and denormals (DE, or DAZ) go to the helper.
    assert_eq!(mm(f64::NAN, 1.0, false).1, 0);
    assert_eq!(mm(1.0, f64::from_bits(1), true).1, 0);
}

/// A deterministic generator (xorshift64*).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn pick(&mut self, pool: &[u64]) -> u64 {
        let i = self.next() % (pool.len() as u64 + 2);
        match pool.get(i as usize) {
            Some(&v) => v,
            // Now and then a random element of the pool's format, sign and all.
            None if pool.len() == DOUBLES.len() => 0x3000_0000_0000_0000 ^ self.next() >> 2,
            None => 0x3000_0000 ^ (self.next() >> 34),
        }
    }
}

/// One element pair per lane from the pool of the width, packed into 128 bits.
fn vector(rng: &mut Rng, single: bool) -> u128 {
    if single {
        (0..4).fold(0, |v, i| v | u128::from(rng.pick(&SINGLES)) << (32 * i))
    } else {
        u128::from(rng.pick(&DOUBLES)) | u128::from(rng.pick(&DOUBLES)) << 64
    }
}

/// Runs `code` (xmm1 the destination, xmm2 or 16 bytes at DATA the source) from random
/// operands under each MXCSR of [`MXCSRS`] on both back ends (which `run_both` compares,
/// XMM and MXCSR included) and checks the outcome against the unit itself, the reference.
/// Returns how many cases the guard accepted.
fn check(code: Code, memory: bool, cases: usize, rng: &mut Rng) -> usize {
    let insn = if memory {
        Instruction::with2(
            code,
            Register::XMM1,
            MemoryOperand::with_base(Register::RSI),
        )
    } else {
        Instruction::with2(code, Register::XMM1, Register::XMM2)
    }
    .unwrap();
    let (bytes, decoded) = crate::testutil::encode_decoded(64, &insn);
    let single = matches!(
        code.op_code().instruction_string().split_whitespace().next(),
        Some(m) if m.ends_with("PS") || m.ends_with("SS")
    );
    let mut accepted = 0;
    for n in 0..cases {
        let mxcsr = if n % 2 == 0 {
            FAST
        } else {
            MXCSRS[rng.next() as usize % MXCSRS.len()]
        };
        let (d, s) = (vector(rng, single), vector(rng, single));
        let setup = |cpu: &mut CpuState, mem: &mut crane86_runtime::PhysMem| {
            cpu.fpu.mxcsr = mxcsr;
            cpu.fpu.set_xmm128(1, d);
            cpu.fpu.set_xmm128(2, s);
            cpu.gpr[6] = DATA;
            mem.load(DATA, &s.to_le_bytes()).unwrap();
        };
        let o = run_both(CpuMode::Long64, &bytes, setup);
        // The reference: the unit on the same state.
        let mut fpu = CpuState::new(CpuMode::Long64).fpu;
        fpu.mxcsr = mxcsr;
        fpu.set_xmm128(1, d);
        fpu.set_xmm128(2, s);
        fpu.io[IO_DATA0] = s as u64;
        fpu.io[IO_DATA1] = (s >> 64) as u64;
        let r = crane86_fpu::execute_simd(&mut fpu, code, Operands::of(&decoded));
        let what = format!("{code:?} d={d:#x} s={s:#x} mxcsr={mxcsr:#x}");
        assert_eq!(r.is_err(), o.fault.is_some(), "{what}: fault");
        assert_eq!(o.cpu.fpu.xmm, fpu.xmm, "{what}: XMM");
        assert_eq!(o.cpu.fpu.mxcsr, fpu.mxcsr, "{what}: MXCSR");
        if matches!(
            code,
            Code::Comisd_xmm_xmmm64
                | Code::Ucomisd_xmm_xmmm64
                | Code::Comiss_xmm_xmmm32
                | Code::Ucomiss_xmm_xmmm32
        ) && r.is_ok()
        {
            let f = o.flags() & 0x8d5;
            assert_eq!(f, fpu.io[crane86_fpu::IO_FLAGS], "{what}: EFLAGS");
        }
        if let Some((shape, w, op)) = super::arith_form(code) {
            // The guard on its own, element by element: wherever it accepts, the host's
            // result must be the unit's, with MXCSR unchanged.
            let (bits, lanes) = match (shape, w) {
                (super::Shape::Scalar, FloatWidth::Single) => (32, 1),
                (super::Shape::Scalar, FloatWidth::Double) => (64, 1),
                (super::Shape::Packed, FloatWidth::Single) => (32, 4),
                (super::Shape::Packed, FloatWidth::Double) => (64, 2),
            };
            let mask = u128::from(u64::MAX >> (64 - bits));
            let mut ok = mxcsr_fast(&mut Values, u64::from(mxcsr));
            let mut out = d;
            for i in 0..lanes {
                let (a, b) = ((d >> (i * bits)) & mask, (s >> (i * bits)) & mask);
                let (r, k) = element(&mut Values, op, w, a as u64, b as u64);
                ok &= k;
                out = out & !(mask << (i * bits)) | u128::from(r) << (i * bits);
            }
            if ok == 1 {
                accepted += 1;
                assert!(r.is_ok(), "{what}: accepted, but the unit faults");
                assert_eq!(fpu.xmm128(1), out, "{what}: accepted with another result");
                assert_eq!(fpu.mxcsr, mxcsr, "{what}: accepted, but MXCSR changes");
            }
        } else if r.is_ok() && fpu.mxcsr == mxcsr {
            accepted += 1;
        }
    }
    accepted
}

#[test]
fn inline_forms_match_the_unit() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let forms = [
        Code::Addsd_xmm_xmmm64,
        Code::Subsd_xmm_xmmm64,
        Code::Mulsd_xmm_xmmm64,
        Code::Divsd_xmm_xmmm64,
        Code::Sqrtsd_xmm_xmmm64,
        Code::Addss_xmm_xmmm32,
        Code::Subss_xmm_xmmm32,
        Code::Mulss_xmm_xmmm32,
        Code::Divss_xmm_xmmm32,
        Code::Sqrtss_xmm_xmmm32,
        Code::Addpd_xmm_xmmm128,
        Code::Subpd_xmm_xmmm128,
        Code::Mulpd_xmm_xmmm128,
        Code::Divpd_xmm_xmmm128,
        Code::Sqrtpd_xmm_xmmm128,
        Code::Addps_xmm_xmmm128,
        Code::Subps_xmm_xmmm128,
        Code::Mulps_xmm_xmmm128,
        Code::Divps_xmm_xmmm128,
        Code::Sqrtps_xmm_xmmm128,
        Code::Comisd_xmm_xmmm64,
        Code::Ucomisd_xmm_xmmm64,
        Code::Comiss_xmm_xmmm32,
        Code::Ucomiss_xmm_xmmm32,
        Code::Minsd_xmm_xmmm64,
        Code::Maxsd_xmm_xmmm64,
        Code::Minss_xmm_xmmm32,
        Code::Maxss_xmm_xmmm32,
        Code::Minpd_xmm_xmmm128,
        Code::Maxpd_xmm_xmmm128,
        Code::Minps_xmm_xmmm128,
        Code::Maxps_xmm_xmmm128,
    ];
    for code in forms {
        let accepted = check(code, false, 120, &mut rng);
        // Both paths must have been exercised.
        assert!(
            accepted > 0 && accepted < 120,
            "{code:?}: {accepted} accepted"
        );
        check(code, true, 24, &mut rng);
    }
}

/// The moves `simd.rs` lowers inline for the same code (MOVSD/MOVSS, MOVLPD/MOVHPD,
/// MOVHLPS/MOVLHPS, UNPCKLPD/UNPCKHPD) against the unit.
#[test]
fn inline_moves_match_the_unit() {
    let mut rng = Rng(7);
    for (code, reg, mem) in [
        (Code::Movsd_xmm_xmmm64, true, true),
        (Code::Movss_xmm_xmmm32, true, true),
        (Code::Movlpd_xmm_m64, false, true),
        (Code::Movhpd_xmm_m64, false, true),
        (Code::Movlps_xmm_m64, false, true),
        (Code::Movhps_xmm_m64, false, true),
        (Code::Movhlps_xmm_xmm, true, false),
        (Code::Movlhps_xmm_xmm, true, false),
        (Code::Unpcklpd_xmm_xmmm128, true, true),
        (Code::Unpckhpd_xmm_xmmm128, true, true),
    ] {
        if reg {
            check(code, false, 4, &mut rng);
        }
        if mem {
            check(code, true, 4, &mut rng);
        }
    }
    // Stores: only the element's bytes are written.
    let x: u128 = 0x1111_2222_3333_4444_5555_6666_7777_8888;
    for (code, size, value) in [
        (Code::Movsd_xmmm64_xmm, 8, x as u64),
        (Code::Movss_xmmm32_xmm, 4, x as u32 as u64),
        (Code::Movlpd_m64_xmm, 8, x as u64),
        (Code::Movhpd_m64_xmm, 8, (x >> 64) as u64),
        (Code::Movhps_m64_xmm, 8, (x >> 64) as u64),
    ] {
        let insn = Instruction::with2(
            code,
            MemoryOperand::with_base(Register::RSI),
            Register::XMM2,
        )
        .unwrap();
        let o = run_both(CpuMode::Long64, &encode(64, &[insn]), |cpu, mem| {
            cpu.fpu.set_xmm128(2, x);
            cpu.gpr[6] = DATA;
            mem.load(DATA, &[0xee; 16]).unwrap();
        });
        assert_eq!(o.m(DATA, size), value, "{code:?}");
        assert_eq!(o.m(DATA + u64::from(size), 1), 0xee, "{code:?}");
    }
    // Register to register MOVSD/MOVSS keep the rest of the destination.
    for (code, want) in [
        (
            Code::Movsd_xmm_xmmm64,
            0xaaaa_aaaa_aaaa_aaaa_7777_8888_5555_6666u128,
        ),
        (
            Code::Movss_xmmm32_xmm,
            0xaaaa_aaaa_aaaa_aaaa_aaaa_aaaa_5555_6666,
        ),
    ] {
        let insn = Instruction::with2(code, Register::XMM1, Register::XMM2).unwrap();
        let o = run_both(CpuMode::Long64, &encode(64, &[insn]), |cpu, _| {
            cpu.fpu.set_xmm128(1, u128::MAX / 0xff * 0xaa);
            cpu.fpu.set_xmm128(2, 0x7777_8888_5555_6666);
        });
        assert_eq!(o.cpu.fpu.xmm128(1), want, "{code:?}");
    }
}

/// A block mixing inline forms, their fallbacks and helper-only instructions on the
/// same registers: the JIT keeps XMM halves and MXCSR in variables across them, which
/// must see what the helper calls change (`run_both` compares the back ends).
#[test]
fn mixed_block_agrees_across_back_ends() {
    use iced_x86::code_asm::*;
    let code = crate::testutil::asm(64, |a| {
        a.addsd(xmm1, xmm2).unwrap();
        a.mulpd(xmm1, xmm3).unwrap();
        a.haddpd(xmm1, xmm2).unwrap(); // helper only
        a.subsd(xmm1, qword_ptr(rsi)).unwrap();
        a.ldmxcsr(dword_ptr(rsi + 16)).unwrap(); // helper: a new MXCSR
        a.divpd(xmm2, xmm1).unwrap();
        a.sqrtsd(xmm3, xmm2).unwrap();
        a.ucomisd(xmm3, xmm1).unwrap();
        a.movsd_2(qword_ptr(rsi + 32), xmm3).unwrap();
        a.mulss(xmm1, xmm2).unwrap();
        a.movapd(xmm4, xmm1).unwrap();
        a.cvtsd2ss(xmm4, xmm2).unwrap(); // helper only
        a.addps(xmm4, xmm1).unwrap();
        a.maxpd(xmm2, xmm3).unwrap();
        a.minsd(xmm3, qword_ptr(rsi)).unwrap();
        a.mulsd(xmm3, xmm2).unwrap();
    });
    let mut rng = Rng(99);
    for n in 0..300 {
        let regs = [1, 2, 3].map(|_| vector(&mut rng, n % 3 == 0));
        let mem = rng.pick(&DOUBLES);
        let mxcsr = [FAST, MXCSRS[rng.next() as usize % MXCSRS.len()]];
        let o = run_both(CpuMode::Long64, &code, |cpu, m| {
            cpu.fpu.mxcsr = mxcsr[0];
            for (i, v) in regs.iter().enumerate() {
                cpu.fpu.set_xmm128(i + 1, *v);
            }
            cpu.gpr[6] = DATA;
            m.load(DATA, &mem.to_le_bytes()).unwrap();
            m.load(DATA + 16, &mxcsr[1].to_le_bytes()).unwrap();
        });
        let _ = o;
    }
}
