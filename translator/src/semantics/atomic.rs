//! Exchange-and-compare instructions (SDM Vol. 1, 7.3.1.2; Vol. 2 XADD, CMPXCHG,
//! CMPXCHG8B/CMPXCHG16B).
//!
//! LOCK: crane86 runs one virtual CPU for now, so a plain load, operation and store is
//! atomic with respect to everything the guest can observe. With more CPUs these become host
//! atomic operations.

use crane86_runtime::flags as fl;
use crane86_runtime::{CcKind, CcOp, Exception, Fault};
use iced_x86::Instruction;

use super::flags::update_flags;
use super::operands::{
    gpr_ref, loc, mem_access, op_size, read_gpr_sized, read_loc, read_reg, trunc, write_loc,
    write_reg, Loc,
};
use super::seg_check::Access;
use crate::emit::{Bin, Cmp, Emit, R};

/// XADD r/m, r: `r := dst; dst := dst + r`, flags as ADD.
pub fn xadd<E: Emit>(e: &mut E, insn: &Instruction) -> R<()> {
    let size = op_size(insn, 0);
    let dst = loc(e, insn, 0)?;
    let a = read_loc(e, dst, size)?;
    let src = insn.op_register(1);
    let b = read_reg(e, src);
    let sum = e.bin(Bin::Add, a, b);
    let sum = trunc(e, sum, size);
    if let Loc::Mem(_) = dst {
        write_loc(e, dst, size, sum)?;
        write_reg(e, src, a);
    } else {
        // Both registers: the destination is written last (XADD rax, rax gives the sum).
        write_reg(e, src, a);
        write_loc(e, dst, size, sum)?;
    }
    e.set_cc(CcOp::new(CcKind::Add, size as u8), a, b, sum);
    Ok(())
}

/// CMPXCHG r/m, r: compares the accumulator with `dst`; if equal `dst := r`, else the
/// accumulator gets `dst`. The destination is always written (with its own value when not
/// equal); flags as `CMP acc, dst`.
pub fn cmpxchg<E: Emit>(e: &mut E, insn: &Instruction) -> R<()> {
    let size = op_size(insn, 0);
    let dst = loc(e, insn, 0)?;
    let d = read_loc(e, dst, size)?;
    let src = read_reg(e, insn.op_register(1));
    let acc = read_gpr_sized(e, 0, size);
    let eq = e.cmp(Cmp::Eq, acc, d);
    match dst {
        // A 32-bit register destination is left whole (upper half included) when the
        // compare fails, as the AMD host does; a write would zero-extend it.
        Loc::Reg(r) if size == 4 => {
            let g = gpr_ref(r).expect("CMPXCHG destination is a GPR");
            let full = e.gpr(g.index);
            let new = e.zext(src, 32);
            let v = e.select(eq, new, full);
            e.set_gpr(g.index, v);
        }
        _ => {
            let nv = e.select(eq, src, d);
            write_loc(e, dst, size, nv)?;
        }
    }
    // The accumulator is written only on a mismatch (then a 32-bit write zero-extends).
    let old = e.gpr(0);
    let new_acc = if size == 4 {
        e.zext(d, 32)
    } else {
        merge(e, old, d, size)
    };
    let a = e.select(eq, old, new_acc);
    e.set_gpr(0, a);
    let diff = e.bin(Bin::Sub, acc, d);
    let diff = trunc(e, diff, size);
    e.set_cc(CcOp::new(CcKind::Sub, size as u8), acc, d, diff);
    Ok(())
}

/// `old` with its low `size` bytes replaced by `v` (sizes 1, 2 and 8).
fn merge<E: Emit>(e: &mut E, old: E::V, v: E::V, size: u32) -> E::V {
    if size == 8 {
        return v;
    }
    let keep = e.imm(!super::operands::mask(size));
    let o = e.bin(Bin::And, old, keep);
    let v = trunc(e, v, size);
    e.bin(Bin::Or, o, v)
}

/// CMPXCHG8B m64 and CMPXCHG16B m128: compares rDX:rAX with memory; if equal, memory :=
/// rCX:rBX and ZF := 1, else rDX:rAX := memory and ZF := 0. Memory is always written; the
/// other flags are kept. CMPXCHG16B raises #GP(0) on a misaligned operand.
pub fn cmpxchg_wide<E: Emit>(e: &mut E, insn: &Instruction) -> R<()> {
    let half = if insn.mnemonic() == iced_x86::Mnemonic::Cmpxchg16b {
        8
    } else {
        4
    };
    let addr = mem_access(e, insn, 2 * half, Access::Write)?;
    if half == 8 {
        let m = e.imm(15);
        let low = e.bin(Bin::And, addr, m);
        let z = e.imm(0);
        let bad = e.cmp(Cmp::Ne, low, z);
        e.raise_if(bad, Fault::new(Exception::GeneralProtection))?;
    }
    let hi_addr = {
        let h = e.imm(u64::from(half));
        e.bin(Bin::Add, addr, h)
    };
    let (lo, hi) = if half == 8 {
        (e.load(addr, 8)?, e.load(hi_addr, 8)?)
    } else {
        let v = e.load(addr, 8)?;
        let sh = e.imm(32);
        let h = e.bin(Bin::Shr, v, sh);
        (e.zext(v, 32), h)
    };
    let ax = read_gpr_sized(e, 0, half);
    let dx = read_gpr_sized(e, 2, half);
    let bx = read_gpr_sized(e, 3, half);
    let cx = read_gpr_sized(e, 1, half);
    let e1 = e.cmp(Cmp::Eq, ax, lo);
    let e2 = e.cmp(Cmp::Eq, dx, hi);
    let eq = e.bin(Bin::And, e1, e2);
    let nlo = e.select(eq, bx, lo);
    let nhi = e.select(eq, cx, hi);
    if half == 8 {
        e.store(addr, 8, nlo)?;
        e.store(hi_addr, 8, nhi)?;
    } else {
        let sh = e.imm(32);
        let h = e.bin(Bin::Shl, nhi, sh);
        let v = e.bin(Bin::Or, h, nlo);
        e.store(addr, 8, v)?;
    }
    // rDX:rAX are written only on a mismatch (32-bit writes zero-extend).
    for (r, v) in [(0, lo), (2, hi)] {
        let old = e.gpr(r);
        let nv = e.select(eq, old, v);
        e.set_gpr(r, nv);
    }
    let six = e.imm(6);
    let zf = e.bin(Bin::Shl, eq, six);
    update_flags(e, fl::ZF, zf);
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::testutil::{asm, run64, CODE};
    use crane86_runtime::Exception;
    use iced_x86::code_asm::*;

    const CF: u64 = 1;
    const ZF: u64 = 0x40;

    #[test]
    fn xadd_forms() {
        let o = run64(
            &asm(64, |a| a.xadd(ebx, ecx).unwrap()),
            &[(3, 0xffff_ffff), (1, 1)],
        );
        assert_eq!((o.r(3), o.r(1)), (0, 0xffff_ffff));
        assert_eq!(o.flags() & (CF | ZF), CF | ZF);
        let o = run64(
            &asm(64, |a| {
                a.mov(qword_ptr(0x8000), 40).unwrap();
                a.lock().xadd(qword_ptr(0x8000), rcx).unwrap();
            }),
            &[(1, 2)],
        );
        assert_eq!((o.m(0x8000, 8), o.r(1)), (42, 40));
        let o = run64(&asm(64, |a| a.xadd(al, al).unwrap()), &[(0, 0x1_0021)]);
        assert_eq!(o.r(0), 0x1_0042);
    }

    #[test]
    fn cmpxchg_both_outcomes() {
        let c = asm(64, |a| a.cmpxchg(ebx, ecx).unwrap());
        let o = run64(&c, &[(0, 1 << 40 | 5), (3, 5), (1, 9)]);
        assert_eq!((o.r(0), o.r(3)), (1 << 40 | 5, 9));
        assert_eq!(o.flags() & ZF, ZF);
        let o = run64(&c, &[(0, 1 << 40 | 4), (3, 5), (1, 9)]);
        assert_eq!((o.r(0), o.r(3)), (5, 5));
        assert_eq!(o.flags() & (ZF | CF), CF);
        let c = asm(64, |a| a.cmpxchg(byte_ptr(0x8000), cl).unwrap());
        let o = run64(&c, &[(0, 0x1200), (1, 0x77)]);
        assert_eq!((o.m(0x8000, 1), o.r(0)), (0x77, 0x1200));
        let o = run64(&c, &[(0, 0x1201), (1, 0x77)]);
        assert_eq!((o.m(0x8000, 1), o.r(0)), (0, 0x1200));
    }

    #[test]
    fn cmpxchg8b_and_16b() {
        let c = asm(64, |a| {
            a.mov(qword_ptr(0x8000), rsi).unwrap();
            a.cmpxchg8b(qword_ptr(0x8000)).unwrap();
        });
        let hit = [
            (0, 0x2222),
            (2, 0x1111),
            (3, 0xbbbb),
            (1, 0xcccc),
            (6, 0x1111_0000_2222),
        ];
        let o = run64(&c, &hit);
        assert_eq!(o.m(0x8000, 8), 0xcccc_0000_bbbb);
        assert_eq!(o.flags() & ZF, ZF);
        let o = run64(&c, &[(0, 1 << 40), (2, 0), (6, 0x1111_0000_2222)]);
        assert_eq!((o.r(0), o.r(2), o.flags() & ZF), (0x2222, 0x1111, 0));
        let c = asm(64, |a| a.cmpxchg16b(xmmword_ptr(rdi)).unwrap());
        let regs = [(7, 0x8010), (0, 0), (2, 0), (3, 1), (1, 2)];
        let o = run64(&c, &regs);
        assert_eq!((o.m(0x8010, 8), o.m(0x8018, 8)), (1, 2));
        assert_eq!(o.flags() & ZF, ZF);
        let o = run64(&c, &[(7, 0x8018), (0, 5)]);
        assert_eq!(
            o.fault.map(|f| f.exception),
            Some(Exception::GeneralProtection)
        );
        assert_eq!((o.cpu.rip, o.r(0)), (CODE, 5));
    }
}
