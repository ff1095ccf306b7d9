//! Shifts and rotates (SDM Vol. 1, 7.3.6; Vol. 2 SAL/SAR/SHL/SHR, RCL/RCR/ROL/ROR,
//! SHLD, SHRD).
//!
//! The count is masked to 5 bits (6 for 64-bit operands). A masked count of 0 changes
//! nothing, not even the flags; with a CL count that is only known at run time, so the new
//! value and flags are chosen with `select` against the old ones. An immediate count that is
//! known to be non-zero keeps the lazy flags record (SHL/SHR/SAR) and skips the selects.

use crane86_runtime::flags as fl;
use crane86_runtime::{CcKind, CcOp};
use iced_x86::{Instruction, OpKind};

use super::flags::{eflags, eflags_of, flag, set_eflags, Flag};
use super::operands::{loc, op_size, read_loc, read_op, sign_bit, trunc, write_loc, Loc};
use crate::emit::{Bin, Cmp, Emit, R};

/// The shift and rotate operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShiftOp {
    /// SHL/SAL.
    Shl,
    /// SHR.
    Shr,
    /// SAR.
    Sar,
    /// ROL.
    Rol,
    /// ROR.
    Ror,
    /// RCL.
    Rcl,
    /// RCR.
    Rcr,
}

/// The masked count: `Ok(Some(c))` for an immediate (known at translation time), else the
/// run-time value.
enum Count<V> {
    Known(u64),
    Dynamic(V),
}

fn count<E: Emit>(e: &mut E, insn: &Instruction, n: u32, size: u32) -> R<Count<E::V>> {
    let m = if size == 8 { 0x3f } else { 0x1f };
    if insn.op_kind(n) == OpKind::Register {
        let c = read_op(e, insn, n, 1)?;
        let mv = e.imm(m);
        Ok(Count::Dynamic(e.bin(Bin::And, c, mv)))
    } else {
        Ok(Count::Known(insn.immediate(n) & m))
    }
}

/// Applies a shift or rotate with masked count `c` (which may be 0: the caller selects)
/// given a non-zero stand-in `c1`; returns (result, new arithmetic flags).
fn compute<E: Emit>(e: &mut E, op: ShiftOp, a: E::V, c: E::V, c1: E::V, size: u32) -> (E::V, E::V) {
    let bits = u64::from(size * 8);
    let kind = match op {
        ShiftOp::Shl => Some(CcKind::Shl),
        ShiftOp::Shr => Some(CcKind::Shr),
        ShiftOp::Sar => Some(CcKind::Sar),
        _ => None,
    };
    if let Some(kind) = kind {
        let res = shift_value(e, kind, a, c1, size);
        let f = eflags_of(e, CcOp::new(kind, size as u8), a, c1, res);
        return (res, f);
    }
    let old = eflags(e);
    let (res, cf) = match op {
        ShiftOp::Rol | ShiftOp::Ror => {
            // The rotation itself is modulo the width; CF and OF change for any non-zero
            // masked count.
            let bm = e.imm(bits - 1);
            let n = e.bin(Bin::And, c, bm);
            let res = rotate(e, op == ShiftOp::Rol, a, n, size);
            let cf = if op == ShiftOp::Rol {
                let one = e.imm(1);
                e.bin(Bin::And, res, one)
            } else {
                sign_bit(e, res, size)
            };
            (res, cf)
        }
        _ => {
            let n = if size <= 2 {
                let m = e.imm(bits + 1);
                e.bin(Bin::URem, c, m)
            } else {
                c
            };
            let z = e.imm(0);
            let nz = e.cmp(Cmp::Ne, n, z);
            let one = e.imm(1);
            let n1 = e.select(nz, n, one);
            let cf_in = flag(e, Flag::Cf);
            let (r, cf) = rotate_carry(e, op == ShiftOp::Rcl, a, cf_in, n1, size);
            let res = e.select(nz, r, a);
            (res, e.select(nz, cf, cf_in))
        }
    };
    let _ = c1;
    // OF (defined for a count of 1): ROL and RCL: MSB(res) ^ CF; ROR and RCR: the two top
    // bits of the result.
    let msb = sign_bit(e, res, size);
    let of = if matches!(op, ShiftOp::Rol | ShiftOp::Rcl) {
        e.bin(Bin::Xor, msb, cf)
    } else {
        let sh = e.imm(bits - 2);
        let s = e.bin(Bin::Shr, res, sh);
        let one = e.imm(1);
        let b = e.bin(Bin::And, s, one);
        e.bin(Bin::Xor, msb, b)
    };
    let keep = e.imm(!(fl::CF | fl::OF));
    let f = e.bin(Bin::And, old, keep);
    let f = e.bin(Bin::Or, f, cf);
    let eleven = e.imm(11);
    let of = e.bin(Bin::Shl, of, eleven);
    (res, e.bin(Bin::Or, f, of))
}

fn shift_value<E: Emit>(e: &mut E, kind: CcKind, a: E::V, c: E::V, size: u32) -> E::V {
    let r = match kind {
        CcKind::Shl => e.bin(Bin::Shl, a, c),
        CcKind::Shr => e.bin(Bin::Shr, a, c),
        _ => {
            let w = super::operands::sext_size(e, a, size);
            e.bin(Bin::Sar, w, c)
        }
    };
    trunc(e, r, size)
}

/// Rotates a `size`-byte value by `n` (below the width).
fn rotate<E: Emit>(e: &mut E, left: bool, a: E::V, n: E::V, size: u32) -> E::V {
    if size == 8 {
        return e.bin(if left { Bin::Rotl } else { Bin::Rotr }, a, n);
    }
    let w = e.imm(u64::from(size * 8));
    let m = e.bin(Bin::Sub, w, n);
    let (l, r) = if left { (n, m) } else { (m, n) };
    let x = e.bin(Bin::Shl, a, l);
    let y = e.bin(Bin::Shr, a, r);
    let v = e.bin(Bin::Or, x, y);
    trunc(e, v, size)
}

/// Rotates `a` through the carry `cf` by `n` in 1..=width; returns (result, new CF).
fn rotate_carry<E: Emit>(
    e: &mut E,
    left: bool,
    a: E::V,
    cf: E::V,
    n: E::V,
    size: u32,
) -> (E::V, E::V) {
    let w = e.imm(u64::from(size * 8));
    let one = e.imm(1);
    let wn = e.bin(Bin::Sub, w, n);
    let n_1 = e.bin(Bin::Sub, n, one);
    if left {
        // (a << n) | (cf << (n - 1)) | (a >> (w - n + 1)); CF = bit w - n of a
        let x = e.bin(Bin::Shl, a, n);
        let y = e.bin(Bin::Shl, cf, n_1);
        let t = e.bin(Bin::Shr, a, wn);
        let z = e.bin(Bin::Shr, t, one);
        let v = e.bin(Bin::Or, x, y);
        let v = e.bin(Bin::Or, v, z);
        let c = e.bin(Bin::And, t, one);
        (trunc(e, v, size), c)
    } else {
        // (a >> n) | (cf << (w - n)) | (a << (w - n + 1)); CF = bit n - 1 of a
        let x = e.bin(Bin::Shr, a, n);
        let y = e.bin(Bin::Shl, cf, wn);
        let t = e.bin(Bin::Shl, a, wn);
        let z = e.bin(Bin::Shl, t, one);
        let v = e.bin(Bin::Or, x, y);
        let v = e.bin(Bin::Or, v, z);
        let s = e.bin(Bin::Shr, a, n_1);
        let c = e.bin(Bin::And, s, one);
        (trunc(e, v, size), c)
    }
}

/// Writes the result and flags, or (count 0 at run time) the old value and flags.
fn finish<E: Emit>(
    e: &mut E,
    dst: Loc<E::V>,
    size: u32,
    a: E::V,
    cnt: Count<E::V>,
    run: impl FnOnce(&mut E, E::V, E::V) -> (E::V, E::V),
) -> R<()> {
    match cnt {
        // The operand is written back unchanged (a 32-bit register is zero-extended, as a
        // CL count of 0 does too).
        Count::Known(0) => write_loc(e, dst, size, a),
        Count::Known(c) => {
            let cv = e.imm(c);
            let (res, f) = run(e, cv, cv);
            write_loc(e, dst, size, res)?;
            set_eflags(e, f);
            Ok(())
        }
        Count::Dynamic(c) => {
            let z = e.imm(0);
            let nz = e.cmp(Cmp::Ne, c, z);
            let one = e.imm(1);
            let c1 = e.select(nz, c, one);
            let old = eflags(e);
            let (res, f) = run(e, c, c1);
            let res = e.select(nz, res, a);
            let f = e.select(nz, f, old);
            write_loc(e, dst, size, res)?;
            set_eflags(e, f);
            Ok(())
        }
    }
}

/// SHL SHR SAR ROL ROR RCL RCR r/m, 1 / CL / imm8.
pub fn shift<E: Emit>(e: &mut E, insn: &Instruction, op: ShiftOp) -> R<()> {
    let size = op_size(insn, 0);
    let dst = loc(e, insn, 0)?;
    let a = read_loc(e, dst, size)?;
    let cnt = count(e, insn, 1, size)?;
    let kind = match op {
        ShiftOp::Shl => Some(CcKind::Shl),
        ShiftOp::Shr => Some(CcKind::Shr),
        ShiftOp::Sar => Some(CcKind::Sar),
        _ => None,
    };
    if let (Some(kind), Count::Known(c)) = (kind, &cnt) {
        // The common case: a lazy record, no flags computed.
        if *c == 0 {
            return write_loc(e, dst, size, a);
        }
        let cv = e.imm(*c);
        let res = shift_value(e, kind, a, cv, size);
        write_loc(e, dst, size, res)?;
        e.set_cc(CcOp::new(kind, size as u8), a, cv, res);
        return Ok(());
    }
    finish(e, dst, size, a, cnt, |e, c, c1| {
        compute(e, op, a, c, c1, size)
    })
}

/// SHLD (left) and SHRD r/m, r, imm8 / CL: shift `dst` filling from `src`.
pub fn shift_double<E: Emit>(e: &mut E, insn: &Instruction, left: bool) -> R<()> {
    let size = op_size(insn, 0);
    let dst = loc(e, insn, 0)?;
    let a = read_loc(e, dst, size)?;
    let b = read_op(e, insn, 1, size)?;
    let cnt = count(e, insn, 2, size)?;
    finish(e, dst, size, a, cnt, |e, _c, c1| {
        double(e, left, a, b, c1, size)
    })
}

/// SHLD/SHRD with a count `c` in 1..=31 (63): (result, flags). For 16-bit operands a count
/// above 16 is undefined; it shifts through `dst:src:dst` as Intel hardware does.
fn double<E: Emit>(e: &mut E, left: bool, a: E::V, b: E::V, c: E::V, size: u32) -> (E::V, E::V) {
    let one = e.imm(1);
    let (res, cf) = if size == 2 {
        // 48-bit pattern: SHLD takes a:b:a (a on top), SHRD a:b:a (a at the bottom).
        let s16 = e.imm(16);
        let s32 = e.imm(32);
        let bs = e.bin(Bin::Shl, b, s16);
        let a32 = e.bin(Bin::Shl, a, s32);
        let w = e.bin(Bin::Or, a32, bs);
        let w = e.bin(Bin::Or, w, a);
        if left {
            let k = e.bin(Bin::Sub, s32, c);
            let r = e.bin(Bin::Shr, w, k);
            let s48 = e.imm(48);
            let k2 = e.bin(Bin::Sub, s48, c);
            let t = e.bin(Bin::Shr, w, k2);
            (r, e.bin(Bin::And, t, one))
        } else {
            let r = e.bin(Bin::Shr, w, c);
            let c_1 = e.bin(Bin::Sub, c, one);
            let t = e.bin(Bin::Shr, w, c_1);
            (r, e.bin(Bin::And, t, one))
        }
    } else {
        let w = e.imm(u64::from(size * 8));
        let wc = e.bin(Bin::Sub, w, c);
        if left {
            let x = e.bin(Bin::Shl, a, c);
            let y = e.bin(Bin::Shr, b, wc);
            let t = e.bin(Bin::Shr, a, wc);
            (e.bin(Bin::Or, x, y), e.bin(Bin::And, t, one))
        } else {
            let x = e.bin(Bin::Shr, a, c);
            let y = e.bin(Bin::Shl, b, wc);
            let c_1 = e.bin(Bin::Sub, c, one);
            let t = e.bin(Bin::Shr, a, c_1);
            (e.bin(Bin::Or, x, y), e.bin(Bin::And, t, one))
        }
    };
    let res = trunc(e, res, size);
    // SF ZF PF from the result (a logic record gives exactly those, with CF = OF = AF = 0);
    // OF = the sign changed (defined for a count of 1).
    let z = e.imm(0);
    let f = eflags_of(e, CcOp::new(CcKind::Logic, size as u8), z, z, res);
    let f = e.bin(Bin::Or, f, cf);
    let sa = sign_bit(e, a, size);
    let sr = sign_bit(e, res, size);
    let of = e.bin(Bin::Xor, sa, sr);
    let eleven = e.imm(11);
    let of = e.bin(Bin::Shl, of, eleven);
    (res, e.bin(Bin::Or, f, of))
}

#[cfg(test)]
mod tests {
    use super::ShiftOp;
    use crate::testutil::{encode, form, run_both};
    use crane86_runtime::{CpuMode, LazyFlags};
    use iced_x86::{Instruction, Mnemonic, OpCodeOperandKind as K, Register};

    const CF: u64 = 1;
    const PF: u64 = 4;
    const ZF: u64 = 0x40;
    const SF: u64 = 0x80;
    const OF: u64 = 0x800;

    /// Bit-by-bit reference: (result, CF, OF for count 1), or None when nothing changes.
    fn model(op: ShiftOp, v: u64, count: u64, cf: u64, size: u32) -> Option<(u64, u64, u64)> {
        let bits = u64::from(size * 8);
        let m = if size == 8 { u64::MAX } else { (1 << bits) - 1 };
        let msb = |x: u64| (x >> (bits - 1)) & 1;
        let c = count & if size == 8 { 0x3f } else { 0x1f };
        if c == 0 {
            return None;
        }
        let (mut x, mut cf) = (v & m, cf);
        let n = match op {
            ShiftOp::Rcl | ShiftOp::Rcr if size <= 2 => c % (bits + 1),
            _ => c,
        };
        for _ in 0..n {
            match op {
                ShiftOp::Shl => (cf, x) = (msb(x), (x << 1) & m),
                ShiftOp::Shr => (cf, x) = (x & 1, x >> 1),
                ShiftOp::Sar => (cf, x) = (x & 1, (x >> 1) | (x & (1 << (bits - 1)))),
                ShiftOp::Rol => (cf, x) = (msb(x), ((x << 1) | msb(x)) & m),
                ShiftOp::Ror => (cf, x) = (x & 1, (x >> 1) | ((x & 1) << (bits - 1))),
                ShiftOp::Rcl => (cf, x) = (msb(x), ((x << 1) | cf) & m),
                ShiftOp::Rcr => (cf, x) = (x & 1, (x >> 1) | (cf << (bits - 1))),
            }
        }
        let of = match op {
            ShiftOp::Shl | ShiftOp::Rol | ShiftOp::Rcl => msb(x) ^ cf,
            ShiftOp::Shr => msb(v & m),
            ShiftOp::Sar => 0,
            ShiftOp::Ror | ShiftOp::Rcr => msb(x) ^ ((x >> (bits - 2)) & 1),
        };
        Some((x, cf, of))
    }

    fn rm(size: u32) -> (K, Register) {
        match size {
            1 => (K::r8_or_mem, Register::BL),
            2 => (K::r16_or_mem, Register::BX),
            4 => (K::r32_or_mem, Register::EBX),
            _ => (K::r64_or_mem, Register::RBX),
        }
    }

    fn check(op: ShiftOp, m: Mnemonic, size: u32, count: u64, imm: bool, v: u64, cf_in: u64) {
        let (k, r) = rm(size);
        let insn = if imm {
            let code = form(m, &[k, K::imm8]);
            Instruction::with2(code, r, count as u32).unwrap()
        } else {
            let code = form(m, &[k, K::cl]);
            Instruction::with2(code, r, Register::CL).unwrap()
        };
        let code = encode(64, &[insn]);
        let flags_in = cf_in | OF | SF; // OF and SF set so that a kept flag shows
        let o = run_both(CpuMode::Long64, &code, |cpu, _| {
            cpu.gpr[3] = v;
            cpu.gpr[1] = count;
            cpu.cc = LazyFlags::from_eflags(flags_in);
        });
        let bits = size * 8;
        let mask = if size == 8 { u64::MAX } else { (1 << bits) - 1 };
        let ctx = format!("{op:?} size {size} count {count} imm {imm} v {v:#x} cf {cf_in}");
        let f = o.flags();
        match model(op, v, count, cf_in, size) {
            None => {
                assert_eq!(o.r(3) & mask, v & mask, "{ctx}");
                assert_eq!(f & 0x8d5, flags_in, "{ctx}");
            }
            Some((res, cf, of)) => {
                assert_eq!(o.r(3) & mask, res, "{ctx}");
                if size < 4 {
                    assert_eq!(o.r(3) & !mask, v & !mask, "{ctx}");
                }
                assert_eq!(f & CF, cf, "{ctx} CF");
                let masked = count & if size == 8 { 0x3f } else { 0x1f };
                if masked == 1 {
                    assert_eq!((f & OF) >> 11, of, "{ctx} OF");
                }
                if matches!(op, ShiftOp::Shl | ShiftOp::Shr | ShiftOp::Sar) {
                    assert_eq!(f & ZF != 0, res == 0, "{ctx} ZF");
                    assert_eq!((f & SF) >> 7, res >> (bits - 1), "{ctx} SF");
                    let even = (res & 0xff).count_ones() % 2 == 0;
                    assert_eq!(f & PF != 0, even, "{ctx} PF");
                } else {
                    // Rotates keep SF ZF PF.
                    assert_eq!(f & (SF | ZF | PF), SF, "{ctx}");
                }
            }
        }
    }

    const OPS: [(ShiftOp, Mnemonic); 7] = [
        (ShiftOp::Shl, Mnemonic::Shl),
        (ShiftOp::Shr, Mnemonic::Shr),
        (ShiftOp::Sar, Mnemonic::Sar),
        (ShiftOp::Rol, Mnemonic::Rol),
        (ShiftOp::Ror, Mnemonic::Ror),
        (ShiftOp::Rcl, Mnemonic::Rcl),
        (ShiftOp::Rcr, Mnemonic::Rcr),
    ];

    #[test]
    fn shifts_and_rotates_by_cl_match_the_model() {
        for (op, m) in OPS {
            for size in [1, 2, 4, 8] {
                for (i, count) in [0u64, 1, 2, 7, 8, 9, 16, 17, 31, 32, 63, 0x41]
                    .iter()
                    .enumerate()
                {
                    let v = 0x8123_4567_89ab_cdefu64.rotate_left(i as u32 * 5);
                    check(op, m, size, *count, false, v, (i as u64) & 1);
                }
            }
        }
    }

    #[test]
    fn shifts_and_rotates_by_imm_match_the_model() {
        for (op, m) in OPS {
            for size in [1, 2, 4, 8] {
                for (i, count) in [0u64, 1, 3, 8, 9, 33].iter().enumerate() {
                    let v = 0xc0de_0000_f00d_8001u64.rotate_left(i as u32 * 7);
                    check(op, m, size, *count, true, v, 1 - ((i as u64) & 1));
                }
            }
        }
    }

    #[test]
    fn shift_by_one_form() {
        let code = form(Mnemonic::Sar, &[K::r32_or_mem, K::imm8_const_1]);
        let insn = Instruction::with2(code, Register::EBX, 1u32).unwrap();
        let o = run_both(CpuMode::Long64, &encode(64, &[insn]), |cpu, _| {
            cpu.gpr[3] = 0x8000_0003;
        });
        assert_eq!(o.r(3), 0xc000_0001);
        assert_eq!(o.flags() & (CF | OF | SF | ZF), CF | SF);
    }

    #[test]
    fn shld_and_shrd() {
        use crate::testutil::asm;
        use iced_x86::code_asm::*;
        let run = |c: Vec<u8>, a: u64, b: u64, n: u64| {
            crate::testutil::run64(&c, &[(3, a), (2, b), (1, n)])
        };
        let o = run(
            asm(64, |x| x.shld(ebx, edx, 4).unwrap()),
            0x1234_5678,
            0xabcd_ef01,
            0,
        );
        assert_eq!(o.r(3), 0x2345_678a);
        assert_eq!(o.flags() & (CF | ZF | SF), 1);
        let o = run(asm(64, |x| x.shrd(rbx, rdx, cl).unwrap()), 0x10, 0x3, 8);
        assert_eq!(o.r(3), 0x0300_0000_0000_0000);
        assert_eq!(o.flags() & (CF | ZF), 0);
        let o = run(asm(64, |x| x.shrd(bx, dx, 1).unwrap()), 0x8001, 0x0001, 0);
        assert_eq!(o.r(3), 0xc000);
        // CF = bit 0 out, OF = sign changed 1 -> 1: clear
        assert_eq!(o.flags() & (CF | OF | SF), CF | SF);
        let o = run(asm(64, |x| x.shld(bx, dx, 1).unwrap()), 0x4000, 0x8000, 0);
        assert_eq!(o.r(3), 0x8001);
        assert_eq!(o.flags() & (CF | OF | SF), OF | SF);
        // count 0 by CL: nothing changes (flags set by the harness are 0x2)
        let o = run(asm(64, |x| x.shld(rbx, rdx, cl).unwrap()), 5, 6, 64);
        assert_eq!(o.r(3), 5);
        assert_eq!(o.flags() & 0x8d5, 0);
        let o = run(
            asm(64, |x| x.shld(qword_ptr(0x8000), rdx, cl).unwrap()),
            0,
            u64::MAX,
            63,
        );
        assert_eq!(o.m(0x8000, 8), (1 << 63) - 1);
    }
}
