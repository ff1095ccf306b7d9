//! Decimal arithmetic (SDM Vol. 1, 7.3.2.5 and 7.3.2.6): DAA DAS AAA AAS AAM AAD. Invalid in
//! 64-bit mode (the decoder does not produce them there).
//!
//! Undefined flags: DAA and DAS clear OF; AAA and AAS keep OF SF ZF PF; AAM sets SF ZF PF
//! from AL and clears OF AF CF; AAD sets all six as the 8-bit addition AL + AH * imm8 that it
//! performs.

use crane86_runtime::flags as fl;
use crane86_runtime::{CcKind, CcOp, Exception, Fault};
use iced_x86::{Instruction, Mnemonic};

use super::flags::{eflags, eflags_of, set_eflags, update_flags};
use super::operands::{read_gpr_sized, trunc, write_gpr_sized};
use crate::emit::{Arith, Bin, Cmp, Emit, R};

fn bit<E: Arith>(e: &mut E, v: E::V, b: u64) -> E::V {
    let sh = e.imm(b.trailing_zeros().into());
    let s = e.bin(Bin::Shr, v, sh);
    let one = e.imm(1);
    e.bin(Bin::And, s, one)
}

fn at<E: Arith>(e: &mut E, v: E::V, b: u64) -> E::V {
    let sh = e.imm(b.trailing_zeros().into());
    e.bin(Bin::Shl, v, sh)
}

/// `(AL & 0xf) > 9 || AF`.
fn low_adjust<E: Emit>(e: &mut E, al: E::V, f: E::V) -> E::V {
    let m = e.imm(0xf);
    let low = e.bin(Bin::And, al, m);
    let nine = e.imm(9);
    let gt = e.cmp(Cmp::Ult, nine, low);
    let af = bit(e, f, fl::AF);
    e.bin(Bin::Or, gt, af)
}

/// DAA and DAS: adjust AL after a packed-BCD addition (subtraction).
pub fn daa_das<E: Emit>(e: &mut E, insn: &Instruction) -> R<()> {
    let sub = insn.mnemonic() == Mnemonic::Das;
    let al = read_gpr_sized(e, 0, 1);
    let f = eflags(e);
    let cf = bit(e, f, fl::CF);
    let af = low_adjust(e, al, f);
    let op = if sub { Bin::Sub } else { Bin::Add };
    let six = e.imm(6);
    let t = e.bin(op, al, six);
    // The carry (borrow) out of AL +/- 6.
    let ff = e.imm(0xff);
    let c6 = if sub {
        e.cmp(Cmp::Ult, al, six)
    } else {
        e.cmp(Cmp::Ult, ff, t)
    };
    let t = trunc(e, t, 1);
    let al1 = e.select(af, t, al);
    let c1 = e.bin(Bin::Or, cf, c6);
    let z = e.imm(0);
    let cf1 = e.select(af, c1, z);
    let x99 = e.imm(0x99);
    let big = e.cmp(Cmp::Ult, x99, al);
    let hi = e.bin(Bin::Or, big, cf);
    let x60 = e.imm(0x60);
    let t2 = e.bin(op, al1, x60);
    let t2 = trunc(e, t2, 1);
    let al2 = e.select(hi, t2, al1);
    let one = e.imm(1);
    let cf2 = if sub { e.select(hi, one, cf1) } else { hi };
    write_gpr_sized(e, 0, 1, al2);
    let szp = eflags_of(e, CcOp::new(CcKind::Logic, 1), z, z, al2);
    let af = at(e, af, fl::AF);
    let flags = e.bin(Bin::Or, szp, af);
    let flags = e.bin(Bin::Or, flags, cf2);
    set_eflags(e, flags);
    Ok(())
}

/// AAA and AAS: adjust AX after an unpacked-BCD addition (subtraction); AF = CF = adjusted.
pub fn aaa_aas<E: Emit>(e: &mut E, insn: &Instruction) -> R<()> {
    let sub = insn.mnemonic() == Mnemonic::Aas;
    let ax = read_gpr_sized(e, 0, 2);
    let f = eflags(e);
    let adj = low_adjust(e, ax, f);
    let k = e.imm(0x106);
    let t = e.bin(if sub { Bin::Sub } else { Bin::Add }, ax, k);
    let ax1 = e.select(adj, t, ax);
    let m = e.imm(0xff0f);
    let ax1 = e.bin(Bin::And, ax1, m);
    write_gpr_sized(e, 0, 2, ax1);
    let a = at(e, adj, fl::AF);
    let both = e.bin(Bin::Or, a, adj);
    update_flags(e, fl::AF | fl::CF, both);
    Ok(())
}

/// AAM imm8: AH := AL / imm8, AL := AL % imm8; #DE when imm8 is 0.
pub fn aam<E: Emit>(e: &mut E, insn: &Instruction) -> R<()> {
    let base = insn.immediate(0) & 0xff;
    if base == 0 {
        return Err(e.raise(Fault::new(Exception::DivideError)));
    }
    let al = read_gpr_sized(e, 0, 1);
    let b = e.imm(base);
    let q = e.bin(Bin::UDiv, al, b);
    let r = e.bin(Bin::URem, al, b);
    let eight = e.imm(8);
    let h = e.bin(Bin::Shl, q, eight);
    let ax = e.bin(Bin::Or, h, r);
    write_gpr_sized(e, 0, 2, ax);
    let z = e.imm(0);
    e.set_cc(CcOp::new(CcKind::Logic, 1), z, z, r);
    Ok(())
}

/// AAD imm8: AL := AL + AH * imm8 (8 bits), AH := 0.
pub fn aad<E: Emit>(e: &mut E, insn: &Instruction) -> R<()> {
    let ax = read_gpr_sized(e, 0, 2);
    let al = trunc(e, ax, 1);
    let eight = e.imm(8);
    let ah = e.bin(Bin::Shr, ax, eight);
    let b = e.imm(insn.immediate(0) & 0xff);
    let p = e.bin(Bin::Mul, ah, b);
    let p = trunc(e, p, 1);
    let s = e.bin(Bin::Add, al, p);
    let s = trunc(e, s, 1);
    write_gpr_sized(e, 0, 2, s);
    e.set_cc(CcOp::new(CcKind::Add, 1), al, p, s);
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::testutil::{asm, run_both};
    use crane86_runtime::{CpuMode, Exception, LazyFlags};

    const CF: u64 = 1;
    const AF: u64 = 0x10;
    const ZF: u64 = 0x40;

    fn run(c: &[u8], v: u64, flags: u64) -> crate::testutil::Outcome {
        run_both(CpuMode::Prot32, c, |cpu, _| {
            cpu.gpr[0] = v;
            cpu.cc = LazyFlags::from_eflags(flags);
        })
    }

    #[test]
    fn daa_das() {
        // 0x19 + 0x28 = 0x41 with AF: DAA gives 0x47
        let c = asm(32, |a| a.daa().unwrap());
        let o = run(&c, 0x41, AF);
        assert_eq!((o.r(0), o.flags() & (CF | AF)), (0x47, AF));
        // 0x99 + 0x01 = 0x9a: DAA gives 0x00 with CF
        let o = run(&c, 0x9a, 0);
        assert_eq!((o.r(0), o.flags() & (CF | AF | ZF)), (0, CF | AF | ZF));
        // 0x10 - 0x01 = 0x0f with AF: DAS gives 0x09
        let c = asm(32, |a| a.das().unwrap());
        let o = run(&c, 0x0f, AF);
        assert_eq!((o.r(0), o.flags() & (CF | AF)), (0x09, AF));
        // 0x00 - 0x01 = 0xff with CF AF: DAS gives 0x99, CF
        let o = run(&c, 0xff, CF | AF);
        assert_eq!((o.r(0), o.flags() & (CF | AF)), (0x99, CF | AF));
    }

    #[test]
    fn aaa_aas() {
        let c = asm(32, |a| a.aaa().unwrap());
        let o = run(&c, 0x010b, 0);
        assert_eq!((o.r(0), o.flags() & (CF | AF)), (0x0201, CF | AF));
        let o = run(&c, 0x0105, 0);
        assert_eq!((o.r(0), o.flags() & (CF | AF)), (0x0105, 0));
        let c = asm(32, |a| a.aas().unwrap());
        let o = run(&c, 0x02ff, AF);
        assert_eq!((o.r(0), o.flags() & (CF | AF)), (0x0109, CF | AF));
    }

    #[test]
    fn aam_aad() {
        let c = asm(32, |a| a.aam(10).unwrap());
        let o = run(&c, 0xff4f, 0);
        assert_eq!(o.r(0), 0x0709);
        let c = asm(32, |a| a.aad(10).unwrap());
        let o = run(&c, 0x0709, 0);
        assert_eq!((o.r(0), o.flags() & ZF), (79, 0));
        let c = asm(32, |a| a.aam(0).unwrap());
        let o = run(&c, 0x1234, 0);
        assert_eq!(o.fault.map(|f| f.exception), Some(Exception::DivideError));
        assert_eq!(o.r(0), 0x1234);
    }
}
