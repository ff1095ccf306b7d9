//! Bit-manipulation extensions (SDM Vol. 2: ADCX ADOX, BMI1 ANDN BEXTR BLSI BLSMSK BLSR,
//! BMI2 BZHI MULX PDEP PEXT RORX SARX SHLX SHRX). TZCNT is in [`super::bit`].

use crane86_runtime::flags as fl;
use crane86_runtime::{CcKind, CcOp};
use iced_x86::{Instruction, Mnemonic};

use super::flags::{eflags_of, flag, set_eflags, update_flags, Flag};
use super::operands::{op_size, read_op, trunc, write_reg};
use crate::emit::{Arith, Bin, Cmp, Emit, Un, R};

fn logic_flags<E: Arith>(e: &mut E, res: E::V, size: u32) -> E::V {
    let z = e.imm(0);
    eflags_of(e, CcOp::new(CcKind::Logic, size as u8), z, z, res)
}

/// ADCX (carry in and out through CF) and ADOX (through OF); no other flag changes.
pub fn adx<E: Emit>(e: &mut E, insn: &Instruction) -> R<()> {
    let size = op_size(insn, 0);
    let a = read_op(e, insn, 0, size)?;
    let b = read_op(e, insn, 1, size)?;
    let over = insn.mnemonic() == Mnemonic::Adox;
    let cin = flag(e, if over { Flag::Of } else { Flag::Cf });
    let s = e.bin(Bin::Add, a, b);
    let s = e.bin(Bin::Add, s, cin);
    let res = trunc(e, s, size);
    // carry out: res < a, or res == a with a carry in
    let lt = e.cmp(Cmp::Ult, res, a);
    let eq = e.cmp(Cmp::Eq, res, a);
    let ec = e.bin(Bin::And, eq, cin);
    let cout = e.bin(Bin::Or, lt, ec);
    write_reg(e, insn.op_register(0), res);
    let which = if over { fl::OF } else { fl::CF };
    let sh = e.imm(u64::from(which.trailing_zeros()));
    let v = e.bin(Bin::Shl, cout, sh);
    update_flags(e, which, v);
    Ok(())
}

/// ANDN: `!src1 & src2`; SF ZF from the result, CF = OF = 0.
pub fn andn<E: Emit>(e: &mut E, insn: &Instruction) -> R<()> {
    let size = op_size(insn, 0);
    let b = read_op(e, insn, 2, size)?;
    let a = read_op(e, insn, 1, size)?;
    let na = e.un(Un::Not, a);
    let res = e.bin(Bin::And, na, b);
    let res = trunc(e, res, size);
    write_reg(e, insn.op_register(0), res);
    let z = e.imm(0);
    e.set_cc(CcOp::new(CcKind::Logic, size as u8), z, z, res);
    Ok(())
}

/// `v` with only its low `n` bits kept, where `n` is below 64.
fn low_bits<E: Arith>(e: &mut E, v: E::V, n: E::V) -> E::V {
    let one = e.imm(1);
    let m = e.bin(Bin::Shl, one, n);
    let m = e.bin(Bin::Sub, m, one);
    e.bin(Bin::And, v, m)
}

/// BEXTR: `len = ctl[15:8]` bits of `src` from bit `ctl[7:0]`; ZF from the result.
pub fn bextr<E: Emit>(e: &mut E, insn: &Instruction) -> R<()> {
    let size = op_size(insn, 0);
    let src = read_op(e, insn, 1, size)?;
    let ctl = read_op(e, insn, 2, size)?;
    let bits = e.imm(u64::from(size * 8));
    let ff = e.imm(0xff);
    let start = e.bin(Bin::And, ctl, ff);
    let eight = e.imm(8);
    let len = e.bin(Bin::Shr, ctl, eight);
    let len = e.bin(Bin::And, len, ff);
    let z = e.imm(0);
    let in_range = e.cmp(Cmp::Ult, start, bits);
    let s = e.select(in_range, start, z);
    let shifted = e.bin(Bin::Shr, src, s);
    let shifted = e.select(in_range, shifted, z);
    let short = e.cmp(Cmp::Ult, len, bits);
    let l = e.select(short, len, z);
    let cut = low_bits(e, shifted, l);
    let res = e.select(short, cut, shifted);
    write_reg(e, insn.op_register(0), res);
    e.set_cc(CcOp::new(CcKind::Logic, size as u8), z, z, res);
    Ok(())
}

/// BLSI, BLSMSK, BLSR: lowest set bit isolate / mask up to it / reset. CF: source is
/// non-zero (BLSI) or zero (BLSMSK, BLSR); SF ZF from the result; OF = 0.
pub fn bls<E: Emit>(e: &mut E, insn: &Instruction) -> R<()> {
    let size = op_size(insn, 0);
    let src = read_op(e, insn, 1, size)?;
    let one = e.imm(1);
    let z = e.imm(0);
    let m1 = e.bin(Bin::Sub, src, one);
    let (res, cf) = match insn.mnemonic() {
        Mnemonic::Blsi => {
            let n = e.un(Un::Neg, src);
            (e.bin(Bin::And, n, src), e.cmp(Cmp::Ne, src, z))
        }
        Mnemonic::Blsmsk => (e.bin(Bin::Xor, m1, src), e.cmp(Cmp::Eq, src, z)),
        _ => (e.bin(Bin::And, m1, src), e.cmp(Cmp::Eq, src, z)),
    };
    let res = trunc(e, res, size);
    write_reg(e, insn.op_register(0), res);
    let f = logic_flags(e, res, size);
    let f = e.bin(Bin::Or, f, cf);
    set_eflags(e, f);
    Ok(())
}

/// BZHI: clears the bits of `src` from index `n = idx[7:0]` up; CF = n is beyond the
/// operand; SF ZF from the result; OF = 0.
pub fn bzhi<E: Emit>(e: &mut E, insn: &Instruction) -> R<()> {
    let size = op_size(insn, 0);
    let src = read_op(e, insn, 1, size)?;
    let idx = read_op(e, insn, 2, size)?;
    let ff = e.imm(0xff);
    let n = e.bin(Bin::And, idx, ff);
    let bits = e.imm(u64::from(size * 8));
    let inside = e.cmp(Cmp::Ult, n, bits);
    let z = e.imm(0);
    let n0 = e.select(inside, n, z);
    let cut = low_bits(e, src, n0);
    let res = e.select(inside, cut, src);
    write_reg(e, insn.op_register(0), res);
    let f = logic_flags(e, res, size);
    let one = e.imm(1);
    let cf = e.bin(Bin::Xor, inside, one);
    let f = e.bin(Bin::Or, f, cf);
    set_eflags(e, f);
    Ok(())
}

/// MULX: `hi:lo := rDX * src` unsigned, no flags; when both destinations are the same
/// register it receives the high half.
pub fn mulx<E: Emit>(e: &mut E, insn: &Instruction) -> R<()> {
    let size = op_size(insn, 0);
    let src = read_op(e, insn, 2, size)?;
    let d = super::operands::read_gpr_sized(e, 2, size);
    let (lo, hi) = if size == 8 {
        (e.bin(Bin::Mul, d, src), e.bin(Bin::UMulHi, d, src))
    } else {
        let p = e.bin(Bin::Mul, d, src);
        let sh = e.imm(32);
        (trunc(e, p, 4), e.bin(Bin::Shr, p, sh))
    };
    write_reg(e, insn.op_register(1), lo);
    write_reg(e, insn.op_register(0), hi);
    Ok(())
}

/// PDEP (deposit the low bits of `src` at the set bits of `mask`) and PEXT (gather the bits
/// of `src` at the set bits of `mask` into the low bits); no flags. Unrolled over the width.
pub fn pdep_pext<E: Emit>(e: &mut E, insn: &Instruction) -> R<()> {
    let size = op_size(insn, 0);
    let src = read_op(e, insn, 1, size)?;
    let mask = read_op(e, insn, 2, size)?;
    let deposit = insn.mnemonic() == Mnemonic::Pdep;
    let one = e.imm(1);
    let mut k = e.imm(0);
    let mut res = e.imm(0);
    for i in 0..size * 8 {
        let iv = e.imm(u64::from(i));
        let mi = e.bin(Bin::Shr, mask, iv);
        let mi = e.bin(Bin::And, mi, one);
        let (from, to) = if deposit { (k, iv) } else { (iv, k) };
        let b = e.bin(Bin::Shr, src, from);
        let b = e.bin(Bin::And, b, one);
        let b = e.bin(Bin::And, b, mi);
        let b = e.bin(Bin::Shl, b, to);
        res = e.bin(Bin::Or, res, b);
        k = e.bin(Bin::Add, k, mi);
    }
    write_reg(e, insn.op_register(0), res);
    Ok(())
}

/// RORX, SARX, SHLX, SHRX: shifts and a rotate that leave the flags alone.
pub fn shift_x<E: Emit>(e: &mut E, insn: &Instruction) -> R<()> {
    let size = op_size(insn, 0);
    let src = read_op(e, insn, 1, size)?;
    let cnt = read_op(e, insn, 2, size)?;
    let m = e.imm(if size == 8 { 0x3f } else { 0x1f });
    let c = e.bin(Bin::And, cnt, m);
    let res = match insn.mnemonic() {
        Mnemonic::Shlx => e.bin(Bin::Shl, src, c),
        Mnemonic::Shrx => e.bin(Bin::Shr, src, c),
        Mnemonic::Sarx => {
            let w = super::operands::sext_size(e, src, size);
            e.bin(Bin::Sar, w, c)
        }
        _ if size == 8 => e.bin(Bin::Rotr, src, c),
        _ => {
            // 32-bit rotate: the value doubled, shifted.
            let sh = e.imm(32);
            let hi = e.bin(Bin::Shl, src, sh);
            let w = e.bin(Bin::Or, hi, src);
            e.bin(Bin::Shr, w, c)
        }
    };
    let res = trunc(e, res, size);
    write_reg(e, insn.op_register(0), res);
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::testutil::{asm, run64};
    use iced_x86::code_asm::*;

    const CF: u64 = 1;
    const ZF: u64 = 0x40;
    const SF: u64 = 0x80;
    const OF: u64 = 0x800;

    #[test]
    fn adcx_adox_chain_separately() {
        let c = asm(64, |a| {
            a.stc().unwrap();
            a.adcx(rax, rbx).unwrap();
            a.adox(ecx, edx).unwrap();
        });
        let o = run64(&c, &[(0, u64::MAX), (3, 0), (1, 0xffff_ffff), (2, 1)]);
        assert_eq!((o.r(0), o.r(1)), (0, 0));
        assert_eq!(o.flags() & (CF | OF), CF | OF);
    }

    #[test]
    fn bmi1() {
        let o = run64(
            &asm(64, |a| a.andn(rax, rbx, rcx).unwrap()),
            &[(3, 0xf0), (1, 0xff)],
        );
        assert_eq!((o.r(0), o.flags() & (ZF | SF | CF)), (0x0f, 0));
        let c = asm(64, |a| a.bextr(eax, ebx, ecx).unwrap());
        let o = run64(&c, &[(3, 0x1234_5678), (1, 0x0804)]);
        assert_eq!(o.r(0), 0x67);
        let o = run64(&c, &[(3, 0x1234_5678), (1, 0xff10)]);
        assert_eq!(o.r(0), 0x1234);
        let o = run64(&c, &[(3, 0x1234_5678), (1, 0x0820)]);
        assert_eq!((o.r(0), o.flags() & ZF), (0, ZF));
        let o = run64(&asm(64, |a| a.blsi(rax, rbx).unwrap()), &[(3, 0b1011000)]);
        assert_eq!((o.r(0), o.flags() & (CF | ZF)), (0b1000, CF));
        let o = run64(&asm(64, |a| a.blsmsk(eax, ebx).unwrap()), &[(3, 0)]);
        assert_eq!((o.r(0), o.flags() & (CF | ZF | SF)), (0xffff_ffff, CF | SF));
        let o = run64(&asm(64, |a| a.blsr(rax, rbx).unwrap()), &[(3, 0b1000)]);
        assert_eq!((o.r(0), o.flags() & (CF | ZF)), (0, ZF));
    }

    #[test]
    fn bmi2() {
        let c = asm(64, |a| a.bzhi(rax, rbx, rcx).unwrap());
        let o = run64(&c, &[(3, u64::MAX), (1, 0x104)]);
        assert_eq!((o.r(0), o.flags() & CF), (0xf, 0));
        let o = run64(&c, &[(3, u64::MAX), (1, 64)]);
        assert_eq!((o.r(0), o.flags() & CF), (u64::MAX, CF));
        let c = asm(64, |a| a.mulx(rax, rbx, rcx).unwrap());
        let o = run64(&c, &[(2, u64::MAX), (1, 2), (0, 7), (3, 7)]);
        assert_eq!((o.r(0), o.r(3), o.flags() & CF), (1, u64::MAX - 1, 0));
        let c = asm(64, |a| a.mulx(eax, eax, ecx).unwrap());
        let o = run64(&c, &[(2, 0x8000_0000), (1, 4)]);
        assert_eq!(o.r(0), 2);
        let c = asm(64, |a| a.pdep(rax, rbx, rcx).unwrap());
        let o = run64(&c, &[(3, 0b101), (1, 0xf0f0)]);
        assert_eq!(o.r(0), 0b101_0000);
        let c = asm(64, |a| a.pext(eax, ebx, ecx).unwrap());
        let o = run64(&c, &[(3, 0x8000_00a0), (1, 0x8000_00f0)]);
        assert_eq!(o.r(0), 0b11010);
        let o = run64(
            &asm(64, |a| a.rorx(eax, ebx, 4).unwrap()),
            &[(3, 0x1234_5678)],
        );
        assert_eq!(o.r(0), 0x8123_4567);
        let o = run64(
            &asm(64, |a| a.sarx(rax, rbx, rcx).unwrap()),
            &[(3, 1 << 63), (1, 67)],
        );
        assert_eq!(o.r(0), 0xf000_0000_0000_0000);
        let o = run64(
            &asm(64, |a| a.shlx(eax, ebx, ecx).unwrap()),
            &[(3, 3), (1, 31)],
        );
        assert_eq!(o.r(0), 0x8000_0000);
        let o = run64(
            &asm(64, |a| a.shrx(rax, rbx, rcx).unwrap()),
            &[(3, 0x100), (1, 8)],
        );
        assert_eq!(o.r(0), 1);
    }
}
