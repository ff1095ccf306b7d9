//! The hot SSE2 integer forms lowered inline: packed add/subtract, the low and high
//! unpacks, PSHUFD/PSHUFLW/PSHUFHW and the shifts by an immediate.
//!
//! They are what glibc's string and memory routines (a byte broadcast is MOVD, PUNPCKLBW,
//! PUNPCKLWD, PSHUFD) and its ChaCha20 `arc4random` (PADDD, PSHUFD, PUNPCKLDQ/QDQ, PSLLD
//! and PSRLD as rotates) run most; measured on the in-guest workloads they were ~99% of the
//! integer SIMD helper calls apart from PSHUFB. Each is written once against [`Emit`] as
//! SWAR arithmetic on the two 64-bit halves of the XMM registers, so the interpreter and
//! the JIT share it. None of them touches MXCSR or the x87 state (only the XMM forms are
//! here; the MMX forms switch the x87 to MMX mode and stay with the helper), so the inline
//! form is exactly the unit's.

use iced_x86::{Code, Instruction};

use super::simd::source128;
use crate::emit::{Bin, Emit, Un, R};

/// The top bit of every `lane`-bit lane of a 64-bit half.
fn tops(lane: u32) -> u64 {
    match lane {
        8 => 0x8080_8080_8080_8080,
        16 => 0x8000_8000_8000_8000,
        32 => 0x8000_0000_8000_0000,
        _ => 1 << 63,
    }
}

/// `v` shifted by a translate-time constant: left when `left`, else right (logical).
/// Counts of 64 and more give zero, a count of zero gives `v`.
fn shift<E: Emit>(e: &mut E, v: E::V, count: u32, left: bool) -> E::V {
    match count {
        0 => v,
        64.. => e.imm(0),
        c => {
            let c = e.imm(u64::from(c));
            e.bin(if left { Bin::Shl } else { Bin::Shr }, v, c)
        }
    }
}

/// `v & m` for a constant mask `m`.
fn and_imm<E: Emit>(e: &mut E, v: E::V, m: u64) -> E::V {
    let m = e.imm(m);
    e.bin(Bin::And, v, m)
}

/// PADD on one half: lanes add without carries between them. The low bits of each lane
/// add with the top bits cleared, so a carry ends in the lane's own top bit; the top bit
/// is then the sum of both top bits and that carry, modulo 2 (an exclusive or).
fn add_lanes<E: Emit>(e: &mut E, a: E::V, b: E::V, lane: u32) -> E::V {
    if lane == 64 {
        return e.bin(Bin::Add, a, b);
    }
    let h = tops(lane);
    let la = and_imm(e, a, !h);
    let lb = and_imm(e, b, !h);
    let sum = e.bin(Bin::Add, la, lb);
    let x = e.bin(Bin::Xor, a, b);
    let top = and_imm(e, x, h);
    e.bin(Bin::Xor, sum, top)
}

/// PSUB on one half: with each lane's top bit of `a` set and that of `b` cleared, a borrow
/// of the low bits is taken from the lane's own top bit and never crosses it; the top bit
/// of the difference is then a ^ b ^ borrow, where the borrow is the top bit gone missing.
fn sub_lanes<E: Emit>(e: &mut E, a: E::V, b: E::V, lane: u32) -> E::V {
    if lane == 64 {
        return e.bin(Bin::Sub, a, b);
    }
    let h = tops(lane);
    let hv = e.imm(h);
    let ha = e.bin(Bin::Or, a, hv);
    let lb = and_imm(e, b, !h);
    let diff = e.bin(Bin::Sub, ha, lb);
    let nb = e.un(Un::Not, b);
    let x = e.bin(Bin::Xor, a, nb);
    let top = e.bin(Bin::And, x, hv);
    e.bin(Bin::Xor, diff, top)
}

/// The four `lane`-bit lanes (8 or 16) of the low 32 bits of `v`, each moved to the low
/// part of a lane twice as wide, the rest zero: the interleaving step of the unpacks.
fn spread<E: Emit>(e: &mut E, v: E::V, lane: u32) -> E::V {
    let v = e.zext(v, 32);
    let sixteen = e.imm(16);
    let up = e.bin(Bin::Shl, v, sixteen);
    let v = e.bin(Bin::Or, v, up);
    let v = and_imm(e, v, 0x0000_ffff_0000_ffff);
    if lane == 16 {
        return v;
    }
    let eight = e.imm(8);
    let up = e.bin(Bin::Shl, v, eight);
    let v = e.bin(Bin::Or, v, up);
    and_imm(e, v, 0x00ff_00ff_00ff_00ff)
}

/// The interleaving of the low 32 bits of `a` and `b` in `lane`-bit lanes, `a`'s first.
fn interleave<E: Emit>(e: &mut E, a: E::V, b: E::V, lane: u32) -> E::V {
    if lane == 32 {
        let a = e.zext(a, 32);
        let b = shift(e, b, 32, true);
        return e.bin(Bin::Or, a, b);
    }
    let a = spread(e, a, lane);
    let b = spread(e, b, lane);
    let b = shift(e, b, lane, true);
    e.bin(Bin::Or, a, b)
}

/// PUNPCKL*/PUNPCKH* from the chosen halves `a` (destination) and `b` (source): the
/// result's low half interleaves their low 32 bits, its high half their high 32 bits.
fn unpack<E: Emit>(e: &mut E, a: E::V, b: E::V, lane: u32) -> (E::V, E::V) {
    if lane == 64 {
        return (a, b);
    }
    let lo = interleave(e, a, b, lane);
    let ah = shift(e, a, 32, false);
    let bh = shift(e, b, 32, false);
    let hi = interleave(e, ah, bh, lane);
    (lo, hi)
}

/// The `bits`-bit element `k` of the 128-bit value `src`, zero-extended and placed at bit
/// `at` of a 64-bit half (`at + bits <= 64`).
fn element<E: Emit>(e: &mut E, src: (E::V, E::V), bits: u32, k: u32, at: u32) -> E::V {
    let per_half = 64 / bits;
    let half = if k / per_half == 0 { src.0 } else { src.1 };
    let from = (k % per_half) * bits;
    let field = (u64::MAX >> (64 - bits)) << at;
    if from == at {
        return and_imm(e, half, field);
    }
    let v = if from > at {
        shift(e, half, from - at, false)
    } else {
        shift(e, half, at - from, true)
    };
    // A field moved from the bottom to the top of the half, or back, needs no mask: the
    // shift drops everything else.
    if from == 0 && at + bits == 64 || at == 0 && from + bits == 64 {
        v
    } else {
        and_imm(e, v, field)
    }
}

/// Four `bits`-bit elements of `src` (32 or 16) selected by the 2-bit fields of `imm` and
/// placed side by side from bit 0 of a half (PSHUFD builds one half from two of them,
/// PSHUFLW/HW one half from four). `first` is the index of the first selectable element.
fn select<E: Emit>(
    e: &mut E,
    src: (E::V, E::V),
    bits: u32,
    first: u32,
    imm: u8,
    fields: core::ops::Range<u32>,
) -> E::V {
    let mut acc: Option<E::V> = None;
    for (slot, i) in fields.clone().enumerate() {
        let k = first + (u32::from(imm) >> (2 * i) & 3);
        let v = element(e, src, bits, k, bits * slot as u32);
        acc = Some(match acc {
            Some(a) => e.bin(Bin::Or, a, v),
            None => v,
        });
    }
    acc.expect("at least one field")
}

/// PSLL/PSRL/PSRA by an immediate on one half with `lane`-bit lanes. Logical shifts by the
/// lane width or more clear the lanes; arithmetic ones shift by `lane - 1` instead.
fn shift_lanes<E: Emit>(e: &mut E, v: E::V, lane: u32, count: u32, op: Bin) -> E::V {
    let ones = u64::MAX >> (64 - lane);
    let rep = u64::MAX / ones; // 1 in the low bit of every lane
    match op {
        Bin::Shl | Bin::Shr if count >= lane => e.imm(0),
        Bin::Shl | Bin::Shr => {
            let s = shift(e, v, count, op == Bin::Shl);
            if lane == 64 || count == 0 {
                return s;
            }
            // Clear the bits that crossed into a neighbouring lane.
            let keep = if op == Bin::Shl {
                (ones << count & ones) * rep
            } else {
                (ones >> count) * rep
            };
            and_imm(e, s, keep)
        }
        _ => {
            let c = count.min(lane - 1);
            if c == 0 {
                return v;
            }
            let logical = shift_lanes(e, v, lane, c, Bin::Shr);
            // Each negative lane's top c bits: with z its sign bit alone,
            // (z << 1) - (z >> (c - 1)) is 2^lane - 2^(lane - c) within the lane; the sum
            // over lanes is right modulo 2^64 as no lane's part leaves it.
            let z = and_imm(e, v, tops(lane));
            let up = shift(e, z, 1, true);
            let down = shift(e, z, c - 1, false);
            let fill = e.bin(Bin::Sub, up, down);
            e.bin(Bin::Or, logical, fill)
        }
    }
}

/// PSLLDQ/PSRLDQ: the 128-bit value (lo, hi) shifted by `bytes` bytes (counts above 15
/// clear it).
fn shift_bytes<E: Emit>(e: &mut E, lo: E::V, hi: E::V, bytes: u8, left: bool) -> (E::V, E::V) {
    let s = 8 * u32::from(bytes.min(16));
    // Name the halves in the direction of the shift: `near` is the one bits leave.
    let (near, far) = if left { (lo, hi) } else { (hi, lo) };
    let (new_near, new_far) = if s >= 64 {
        let z = e.imm(0);
        (z, shift(e, near, s - 64, left))
    } else if s == 0 {
        (near, far)
    } else {
        let n = shift(e, near, s, left);
        let f = shift(e, far, s, left);
        let carried = shift(e, near, 64 - s, !left);
        (n, e.bin(Bin::Or, f, carried))
    };
    if left {
        (new_near, new_far)
    } else {
        (new_far, new_near)
    }
}

/// Lowers `insn` inline when it is one of this module's forms; returns false otherwise.
pub(super) fn inline<E: Emit>(e: &mut E, insn: &Instruction) -> R<bool> {
    use Code as C;
    let code = insn.code();
    let d = insn.op0_register().number();
    let (lo, hi) = match code {
        C::Paddb_xmm_xmmm128
        | C::Paddw_xmm_xmmm128
        | C::Paddd_xmm_xmmm128
        | C::Paddq_xmm_xmmm128
        | C::Psubb_xmm_xmmm128
        | C::Psubw_xmm_xmmm128
        | C::Psubd_xmm_xmmm128
        | C::Psubq_xmm_xmmm128 => {
            let (lane, sub) = match code {
                C::Paddb_xmm_xmmm128 => (8, false),
                C::Paddw_xmm_xmmm128 => (16, false),
                C::Paddd_xmm_xmmm128 => (32, false),
                C::Paddq_xmm_xmmm128 => (64, false),
                C::Psubb_xmm_xmmm128 => (8, true),
                C::Psubw_xmm_xmmm128 => (16, true),
                C::Psubd_xmm_xmmm128 => (32, true),
                _ => (64, true),
            };
            let (slo, shi) = source128(e, insn)?;
            let mut out = [slo, shi];
            for (h, s) in out.iter_mut().enumerate() {
                let dv = e.xmm(d, h);
                *s = if sub {
                    sub_lanes(e, dv, *s, lane)
                } else {
                    add_lanes(e, dv, *s, lane)
                };
            }
            (out[0], out[1])
        }
        C::Punpcklbw_xmm_xmmm128
        | C::Punpcklwd_xmm_xmmm128
        | C::Punpckldq_xmm_xmmm128
        | C::Punpcklqdq_xmm_xmmm128
        | C::Punpckhbw_xmm_xmmm128
        | C::Punpckhwd_xmm_xmmm128
        | C::Punpckhdq_xmm_xmmm128
        | C::Punpckhqdq_xmm_xmmm128 => {
            let (lane, high) = match code {
                C::Punpcklbw_xmm_xmmm128 => (8, false),
                C::Punpcklwd_xmm_xmmm128 => (16, false),
                C::Punpckldq_xmm_xmmm128 => (32, false),
                C::Punpcklqdq_xmm_xmmm128 => (64, false),
                C::Punpckhbw_xmm_xmmm128 => (8, true),
                C::Punpckhwd_xmm_xmmm128 => (16, true),
                C::Punpckhdq_xmm_xmmm128 => (32, true),
                _ => (64, true),
            };
            let (slo, shi) = source128(e, insn)?;
            let h = usize::from(high);
            let a = e.xmm(d, h);
            let b = if high { shi } else { slo };
            unpack(e, a, b, lane)
        }
        C::Pshufd_xmm_xmmm128_imm8 => {
            let src = source128(e, insn)?;
            let imm = insn.immediate8();
            (
                select(e, src, 32, 0, imm, 0..2),
                select(e, src, 32, 0, imm, 2..4),
            )
        }
        C::Pshuflw_xmm_xmmm128_imm8 => {
            let src = source128(e, insn)?;
            (select(e, src, 16, 0, insn.immediate8(), 0..4), src.1)
        }
        C::Pshufhw_xmm_xmmm128_imm8 => {
            let src = source128(e, insn)?;
            (src.0, select(e, src, 16, 4, insn.immediate8(), 0..4))
        }
        C::Psllw_xmm_imm8
        | C::Pslld_xmm_imm8
        | C::Psllq_xmm_imm8
        | C::Psrlw_xmm_imm8
        | C::Psrld_xmm_imm8
        | C::Psrlq_xmm_imm8
        | C::Psraw_xmm_imm8
        | C::Psrad_xmm_imm8 => {
            let (lane, op) = match code {
                C::Psllw_xmm_imm8 => (16, Bin::Shl),
                C::Pslld_xmm_imm8 => (32, Bin::Shl),
                C::Psllq_xmm_imm8 => (64, Bin::Shl),
                C::Psrlw_xmm_imm8 => (16, Bin::Shr),
                C::Psrld_xmm_imm8 => (32, Bin::Shr),
                C::Psrlq_xmm_imm8 => (64, Bin::Shr),
                C::Psraw_xmm_imm8 => (16, Bin::Sar),
                _ => (32, Bin::Sar),
            };
            let count = u32::from(insn.immediate8());
            let lo = e.xmm(d, 0);
            let hi = e.xmm(d, 1);
            (
                shift_lanes(e, lo, lane, count, op),
                shift_lanes(e, hi, lane, count, op),
            )
        }
        C::Pshufb_xmm_xmmm128 if e.can_shuffle_bytes() => {
            let (slo, shi) = source128(e, insn)?;
            let a = [e.xmm(d, 0), e.xmm(d, 1)];
            let [lo, hi] = e.shuffle_bytes(a, [slo, shi]);
            (lo, hi)
        }
        C::Pslldq_xmm_imm8 | C::Psrldq_xmm_imm8 => {
            let lo = e.xmm(d, 0);
            let hi = e.xmm(d, 1);
            shift_bytes(e, lo, hi, insn.immediate8(), code == C::Pslldq_xmm_imm8)
        }
        _ => return Ok(false),
    };
    e.set_xmm(d, 0, lo);
    e.set_xmm(d, 1, hi);
    Ok(true)
}

#[cfg(test)]
mod tests {
    use crate::testutil::{encode, run_both, DATA};
    use crane86_fpu::{Operands, IO_DATA0, IO_DATA1};
    use crane86_runtime::CpuMode;
    use iced_x86::{Code, Instruction, MemoryOperand, Register};

    /// The forms of this module with a register-or-memory source.
    const BINARY: [Code; 20] = [
        Code::Paddb_xmm_xmmm128,
        Code::Paddw_xmm_xmmm128,
        Code::Paddd_xmm_xmmm128,
        Code::Paddq_xmm_xmmm128,
        Code::Psubb_xmm_xmmm128,
        Code::Psubw_xmm_xmmm128,
        Code::Psubd_xmm_xmmm128,
        Code::Psubq_xmm_xmmm128,
        Code::Punpcklbw_xmm_xmmm128,
        Code::Punpcklwd_xmm_xmmm128,
        Code::Punpckldq_xmm_xmmm128,
        Code::Punpcklqdq_xmm_xmmm128,
        Code::Punpckhbw_xmm_xmmm128,
        Code::Punpckhwd_xmm_xmmm128,
        Code::Punpckhdq_xmm_xmmm128,
        Code::Punpckhqdq_xmm_xmmm128,
        Code::Pshufb_xmm_xmmm128,
        Code::Pshufd_xmm_xmmm128_imm8,
        Code::Pshuflw_xmm_xmmm128_imm8,
        Code::Pshufhw_xmm_xmmm128_imm8,
    ];
    /// The shifts by an immediate.
    const SHIFTS: [Code; 10] = [
        Code::Psllw_xmm_imm8,
        Code::Pslld_xmm_imm8,
        Code::Psllq_xmm_imm8,
        Code::Psrlw_xmm_imm8,
        Code::Psrld_xmm_imm8,
        Code::Psrlq_xmm_imm8,
        Code::Psraw_xmm_imm8,
        Code::Psrad_xmm_imm8,
        Code::Pslldq_xmm_imm8,
        Code::Psrldq_xmm_imm8,
    ];
    /// Shift counts at and around every lane width.
    const COUNTS: [u8; 17] = [
        0, 1, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 128, 255,
    ];
    /// Lane patterns that carry, borrow and sign-extend at every width.
    const EDGES: [u128; 8] = [
        0,
        u128::MAX,
        0x8000_0000_0000_0000_8000_0000_0000_0000,
        0x8080_8080_8080_8080_8080_8080_8080_8080,
        0x7fff_7fff_7fff_7fff_7fff_7fff_7fff_7fff,
        0x0101_0101_0101_0101_0101_0101_0101_0101,
        0xff00_ff00_ffff_0000_ffff_ffff_0000_0001,
        0x0123_4567_89ab_cdef_fedc_ba98_7654_3210,
    ];

    /// Runs `code xmm1, <xmm2 | [rsi]>[, imm]` (or `code xmm1, imm` for a shift) from
    /// xmm1 = `d`, xmm2 = the 16 bytes at DATA = `s` on both back ends (which `run_both`
    /// compares), checks the result against the unit, the reference, and returns it.
    fn check(code: Code, memory: bool, imm: u8, d: u128, s: u128) -> u128 {
        let shuffle = BINARY[17..].contains(&code);
        let insn = if SHIFTS.contains(&code) {
            Instruction::with2(code, Register::XMM1, u32::from(imm))
        } else if memory {
            let m = MemoryOperand::with_base(Register::RSI);
            if shuffle {
                Instruction::with3(code, Register::XMM1, m, u32::from(imm))
            } else {
                Instruction::with2(code, Register::XMM1, m)
            }
        } else if shuffle {
            Instruction::with3(code, Register::XMM1, Register::XMM2, u32::from(imm))
        } else {
            Instruction::with2(code, Register::XMM1, Register::XMM2)
        }
        .unwrap();
        let (bytes, decoded) = crate::testutil::encode_decoded(64, &insn);
        let o = run_both(CpuMode::Long64, &bytes, |cpu, mem| {
            cpu.fpu.set_xmm128(1, d);
            cpu.fpu.set_xmm128(2, s);
            cpu.gpr[6] = DATA;
            mem.load(DATA, &s.to_le_bytes()).unwrap();
        });
        let what = format!("{code:?} mem={memory} imm={imm:#x} d={d:#x} s={s:#x}");
        assert!(o.fault.is_none(), "{what}: fault");
        let mut fpu = crane86_runtime::CpuState::new(CpuMode::Long64).fpu;
        fpu.set_xmm128(1, d);
        fpu.set_xmm128(2, s);
        fpu.io[IO_DATA0] = s as u64;
        fpu.io[IO_DATA1] = (s >> 64) as u64;
        crane86_fpu::execute_simd(&mut fpu, code, Operands::of(&decoded)).unwrap();
        assert_eq!(o.cpu.fpu.xmm128(1), fpu.xmm128(1), "{what}");
        assert_eq!(o.cpu.fpu.xmm128(2), s, "{what}: source changed");
        o.cpu.fpu.xmm128(1)
    }

    /// A deterministic generator (xorshift64*).
    fn next(x: &mut u64) -> u64 {
        *x ^= *x >> 12;
        *x ^= *x << 25;
        *x ^= *x >> 27;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    #[test]
    fn forms_match_the_unit() {
        let mut x = 0x9e37_79b9_7f4a_7c15;
        for code in BINARY {
            for (i, &d) in EDGES.iter().enumerate() {
                for (j, &s) in EDGES.iter().enumerate() {
                    let imm = next(&mut x) as u8;
                    check(code, (i + j) % 3 == 0, imm, d, s);
                }
            }
            for n in 0..40 {
                let d = u128::from(next(&mut x)) << 64 | u128::from(next(&mut x));
                let s = u128::from(next(&mut x)) << 64 | u128::from(next(&mut x));
                let imm = [0x1b, 0xe4, 0, 0xff, next(&mut x) as u8][n % 5];
                check(code, n % 2 == 0, imm, d, s);
            }
        }
        for code in SHIFTS {
            for count in COUNTS {
                for d in EDGES {
                    check(code, false, count, d, 0);
                }
            }
        }
    }

    #[test]
    fn known_answers() {
        use Code as C;
        // Lane carries and borrows stay in their lane.
        let r = check(C::Paddb_xmm_xmmm128, false, 0, 0x80ff_7f01, 0x8001_7f01);
        assert_eq!(r, 0x0000_fe02);
        let r = check(C::Paddw_xmm_xmmm128, false, 0, 0xffff_ffff, 0x0001_0001);
        assert_eq!(r, 0);
        let r = check(C::Paddq_xmm_xmmm128, false, 0, u128::from(u64::MAX), 1);
        assert_eq!(r, 0, "no carry into the high quadword");
        let r = check(C::Psubb_xmm_xmmm128, false, 0, 0x8000, 0x7f01);
        assert_eq!(r, 0x01ff);
        let r = check(C::Psubd_xmm_xmmm128, false, 0, 1 << 64, 1);
        assert_eq!(r, 1 << 64 | 0xffff_ffff);
        let r = check(C::Psubq_xmm_xmmm128, false, 0, 1 << 64, 1);
        assert_eq!(
            r,
            1 << 64 | u128::from(u64::MAX),
            "no borrow from the high quadword"
        );
        // Shifts: count 0, the lane's top bit, the lane width and beyond.
        let w = 0x8000_7fff_0001_8001_8000_7fff_0001_8001u128;
        assert_eq!(check(C::Psraw_xmm_imm8, false, 0, w, 0), w);
        assert_eq!(
            check(C::Psraw_xmm_imm8, false, 1, w, 0),
            0xc000_3fff_0000_c000_c000_3fff_0000_c000
        );
        for count in [15, 16, 255] {
            assert_eq!(
                check(C::Psraw_xmm_imm8, false, count, w, 0),
                0xffff_0000_0000_ffff_ffff_0000_0000_ffff
            );
        }
        assert_eq!(
            check(C::Psrlw_xmm_imm8, false, 15, w, 0),
            0x0001_0000_0000_0001_0001_0000_0000_0001
        );
        assert_eq!(check(C::Psrlw_xmm_imm8, false, 16, w, 0), 0);
        assert_eq!(
            check(C::Psllw_xmm_imm8, false, 1, w, 0),
            0x0000_fffe_0002_0002_0000_fffe_0002_0002
        );
        assert_eq!(check(C::Pslld_xmm_imm8, false, 32, u128::MAX, 0), 0);
        assert_eq!(
            check(C::Psrad_xmm_imm8, false, 31, 0x8000_0000_7fff_ffff, 0),
            0xffff_ffff_0000_0000
        );
        assert_eq!(
            check(C::Psrlq_xmm_imm8, false, 63, u128::MAX, 0),
            1 << 64 | 1
        );
        assert_eq!(check(C::Psllq_xmm_imm8, false, 64, u128::MAX, 0), 0);
        // Byte shifts of the whole register.
        let v = 0x0f0e_0d0c_0b0a_0908_0706_0504_0302_0100u128;
        assert_eq!(check(C::Pslldq_xmm_imm8, false, 1, v, 0), v << 8);
        assert_eq!(check(C::Pslldq_xmm_imm8, false, 9, v, 0), v << 72);
        assert_eq!(check(C::Psrldq_xmm_imm8, false, 8, v, 0), v >> 64);
        assert_eq!(check(C::Psrldq_xmm_imm8, false, 15, v, 0), 0x0f);
        assert_eq!(check(C::Psrldq_xmm_imm8, false, 16, v, 0), 0);
        // Unpacks and shuffles: the byte broadcast of memset.
        let b = check(C::Punpcklbw_xmm_xmmm128, false, 0, 0xab, 0xab);
        assert_eq!(b, 0xabab);
        let b = check(C::Punpcklwd_xmm_xmmm128, false, 0, b, b);
        assert_eq!(b, 0xabab_abab);
        let b = check(C::Pshufd_xmm_xmmm128_imm8, false, 0, 0, b);
        assert_eq!(b, u128::MAX / 0xff * 0xab);
        let s = 0x1f1e_1d1c_1b1a_1918_1716_1514_1312_1110u128;
        assert_eq!(
            check(C::Punpckhbw_xmm_xmmm128, true, 0, v, s),
            0x1f0f_1e0e_1d0d_1c0c_1b0b_1a0a_1909_1808
        );
        assert_eq!(
            check(C::Punpckldq_xmm_xmmm128, false, 0, v, s),
            0x1716_1514_0706_0504_1312_1110_0302_0100
        );
        assert_eq!(
            check(C::Pshufd_xmm_xmmm128_imm8, false, 0x1b, 0, v),
            0x0302_0100_0706_0504_0b0a_0908_0f0e_0d0c
        );
        assert_eq!(
            check(C::Pshufhw_xmm_xmmm128_imm8, false, 0x1b, 0, v),
            0x0908_0b0a_0d0c_0f0e_0706_0504_0302_0100
        );
    }

    /// A misaligned 16-byte source faults (#GP) before the destination changes.
    #[test]
    fn misaligned_source_faults() {
        let insn = Instruction::with2(
            Code::Paddd_xmm_xmmm128,
            Register::XMM1,
            MemoryOperand::with_base_displ(Register::RSI, 4),
        )
        .unwrap();
        let o = run_both(CpuMode::Long64, &encode(64, &[insn]), |cpu, _| {
            cpu.fpu.set_xmm128(1, 7);
            cpu.gpr[6] = DATA;
        });
        assert!(o.fault.is_some());
        assert_eq!(o.cpu.fpu.xmm128(1), 7);
    }
}
