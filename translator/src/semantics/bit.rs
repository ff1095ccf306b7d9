//! Bit and bit-string instructions (SDM Vol. 1, 7.3.7; Vol. 2 BT, BTS, BTR, BTC, BSF, BSR,
//! TZCNT, LZCNT, POPCNT).

use crane86_runtime::flags as fl;
use iced_x86::{Instruction, OpKind};

use super::flags::{set_eflags, update_flags};
use super::operands::{
    addr_size, effective_address, gpr_ref, loc, op_size, read_gref, read_loc, read_op, sext_size,
    trunc, write_loc, write_reg, Loc, MemRef,
};
use crate::emit::{Bin, Cmp, Emit, Un, R};

/// What BT* does to the selected bit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BitOp {
    /// BT: only reads.
    Test,
    /// BTS: sets it.
    Set,
    /// BTR: clears it.
    Reset,
    /// BTC: complements it.
    Complement,
}

/// BT BTS BTR BTC r/m, r / imm8: CF := the bit; the other flags are kept (OF SF AF PF are
/// undefined in the SDM). A register bit offset with a memory operand is a signed index into
/// the bit string that starts at the operand.
pub fn bt<E: Emit>(e: &mut E, insn: &Instruction, op: BitOp) -> R<()> {
    let size = op_size(insn, 0);
    let bits = u64::from(size * 8);
    let (dst, off) = if insn.op_kind(1) == OpKind::Register {
        let off = read_op(e, insn, 1, size)?;
        if insn.op_kind(0) == OpKind::Memory {
            // addr += size * floor(offset / bits), within the address size.
            let s = sext_size(e, off, size);
            let sh = e.imm(u64::from(bits.trailing_zeros()));
            let q = e.bin(Bin::Sar, s, sh);
            let bytes = e.imm(u64::from(size.trailing_zeros()));
            let disp = e.bin(Bin::Shl, q, bytes);
            let ea = effective_address(e, insn);
            let ea = e.bin(Bin::Add, ea, disp);
            let ea = trunc(e, ea, addr_size(insn));
            (Loc::Mem(MemRef::new(e, insn.memory_segment(), ea)), off)
        } else {
            (loc(e, insn, 0)?, off)
        }
    } else {
        let off = e.imm(insn.immediate(1));
        (loc(e, insn, 0)?, off)
    };
    let bm = e.imm(bits - 1);
    let n = e.bin(Bin::And, off, bm);
    let v = read_loc(e, dst, size)?;
    let s = e.bin(Bin::Shr, v, n);
    let one = e.imm(1);
    let cf = e.bin(Bin::And, s, one);
    let m = e.bin(Bin::Shl, one, n);
    let nv = match op {
        BitOp::Test => None,
        BitOp::Set => Some(e.bin(Bin::Or, v, m)),
        BitOp::Reset => {
            let nm = e.un(Un::Not, m);
            Some(e.bin(Bin::And, v, nm))
        }
        BitOp::Complement => Some(e.bin(Bin::Xor, v, m)),
    };
    if let Some(nv) = nv {
        write_loc(e, dst, size, nv)?;
    }
    update_flags(e, fl::CF, cf);
    Ok(())
}

/// Writes a bit-scan result, or keeps the destination (all 64 bits) when `keep` is set.
fn write_or_keep<E: Emit>(e: &mut E, insn: &Instruction, keep: E::V, v: E::V) {
    let r = insn.op_register(0);
    let g = gpr_ref(r).expect("bit scan destination is a register");
    if g.size == 4 {
        let old = e.gpr(g.index);
        let nv = e.zext(v, 32);
        let nv = e.select(keep, old, nv);
        e.set_gpr(g.index, nv);
    } else {
        let old = read_gref(e, g);
        let nv = e.select(keep, old, v);
        write_reg(e, r, nv);
    }
}

/// BSF and BSR: the index of the lowest (highest) set bit. A zero source sets ZF and leaves
/// the destination unchanged (as AMD documents and Intel hardware does); the other flags are
/// undefined and kept.
pub fn bit_scan<E: Emit>(e: &mut E, insn: &Instruction, reverse: bool) -> R<()> {
    let size = op_size(insn, 0);
    let src = read_op(e, insn, 1, size)?;
    let z = e.imm(0);
    let zero = e.cmp(Cmp::Eq, src, z);
    let idx = if reverse {
        let lz = e.un(Un::Clz, src);
        let k = e.imm(63);
        e.bin(Bin::Sub, k, lz)
    } else {
        e.un(Un::Ctz, src)
    };
    write_or_keep(e, insn, zero, idx);
    let six = e.imm(6);
    let zf = e.bin(Bin::Shl, zero, six);
    update_flags(e, fl::ZF, zf);
    Ok(())
}

/// TZCNT and LZCNT: the count of trailing (leading) zero bits, the operand width for a zero
/// source. CF := source is zero, ZF := result is zero; OF SF AF PF are undefined and kept.
pub fn count_zeros<E: Emit>(e: &mut E, insn: &Instruction, leading: bool) -> R<()> {
    let size = op_size(insn, 0);
    let src = read_op(e, insn, 1, size)?;
    let bits = u64::from(size * 8);
    let res = if leading {
        let lz = e.un(Un::Clz, src);
        let k = e.imm(64 - bits);
        e.bin(Bin::Sub, lz, k)
    } else if size == 8 {
        e.un(Un::Ctz, src)
    } else {
        let top = e.imm(1 << bits);
        let v = e.bin(Bin::Or, src, top);
        e.un(Un::Ctz, v)
    };
    write_reg(e, insn.op_register(0), res);
    let z = e.imm(0);
    let cf = e.cmp(Cmp::Eq, src, z);
    let rz = e.cmp(Cmp::Eq, res, z);
    let six = e.imm(6);
    let zf = e.bin(Bin::Shl, rz, six);
    let f = e.bin(Bin::Or, cf, zf);
    update_flags(e, fl::CF | fl::ZF, f);
    Ok(())
}

/// POPCNT: the number of set bits; ZF := source is zero, OF SF AF CF PF := 0.
pub fn popcnt<E: Emit>(e: &mut E, insn: &Instruction) -> R<()> {
    let size = op_size(insn, 0);
    let src = read_op(e, insn, 1, size)?;
    let res = e.un(Un::Popcnt, src);
    write_reg(e, insn.op_register(0), res);
    let z = e.imm(0);
    let zero = e.cmp(Cmp::Eq, src, z);
    let six = e.imm(6);
    let zf = e.bin(Bin::Shl, zero, six);
    set_eflags(e, zf);
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::testutil::{asm, run64};
    use iced_x86::code_asm::*;

    const CF: u64 = 1;
    const ZF: u64 = 0x40;

    #[test]
    fn bt_family_on_registers() {
        let o = run64(&asm(64, |a| a.bts(rbx, 63).unwrap()), &[(3, 1)]);
        assert_eq!((o.r(3), o.flags() & CF), (1 | 1 << 63, 0));
        let o = run64(
            &asm(64, |a| a.btr(ebx, ecx).unwrap()),
            &[(3, 0xff), (1, 35)],
        );
        assert_eq!((o.r(3), o.flags() & CF), (0xf7, CF));
        let o = run64(&asm(64, |a| a.btc(bx, 17).unwrap()), &[(3, 0x1_0000)]);
        assert_eq!((o.r(3), o.flags() & CF), (0x1_0002, 0));
        let o = run64(
            &asm(64, |a| a.bt(rbx, rcx).unwrap()),
            &[(3, 1 << 40), (1, 40)],
        );
        assert_eq!((o.r(3), o.flags() & CF), (1 << 40, CF));
    }

    #[test]
    fn bt_with_memory_and_register_offset_indexes_the_bit_string() {
        // bit 100 from 0x8010 is byte 0x801c bit 4; bit -1 is bit 31 of the dword at 0x800c
        let o = run64(
            &asm(64, |a| {
                a.bts(dword_ptr(rax), ecx).unwrap();
                a.bts(dword_ptr(rax), edx).unwrap();
                a.btc(word_ptr(rax), si).unwrap();
            }),
            &[(0, 0x8010), (1, 100), (2, 0xffff_ffff), (6, 0xfff0)],
        );
        assert_eq!(o.m(0x801c, 4), 0x10);
        // (the word at 0x800e below overlaps this dword)
        assert_eq!(o.m(0x800c, 4), 0x8001_0000);
        // si = -16: the word at 0x800e, bit 0
        assert_eq!(o.m(0x800e, 2), 0x8001);
        assert_eq!(o.flags() & CF, 0);
        let o = run64(
            &asm(64, |a| a.bt(qword_ptr(rax + 8), rcx).unwrap()),
            &[(0, 0x8000), (1, (-65i64) as u64)],
        );
        assert_eq!(o.flags() & CF, 0);
    }

    #[test]
    fn bit_scans() {
        let o = run64(&asm(64, |a| a.bsf(eax, ebx).unwrap()), &[(0, 7), (3, 0x50)]);
        assert_eq!((o.r(0), o.flags() & ZF), (4, 0));
        let o = run64(&asm(64, |a| a.bsr(rax, rbx).unwrap()), &[(3, 0x50)]);
        assert_eq!(o.r(0), 6);
        // zero source: ZF and the destination unchanged
        let o = run64(&asm(64, |a| a.bsf(eax, ebx).unwrap()), &[(0, 1 << 40 | 9)]);
        assert_eq!((o.r(0), o.flags() & ZF), (1 << 40 | 9, ZF));
        let o = run64(&asm(64, |a| a.bsr(ax, bx).unwrap()), &[(0, 0x1234_5678)]);
        assert_eq!((o.r(0), o.flags() & ZF), (0x1234_5678, ZF));
    }

    #[test]
    fn counts() {
        let o = run64(&asm(64, |a| a.tzcnt(ax, bx).unwrap()), &[(0, 0xffff_0000)]);
        assert_eq!((o.r(0), o.flags() & (CF | ZF)), (0xffff_0010, CF));
        let o = run64(&asm(64, |a| a.tzcnt(rax, rbx).unwrap()), &[(3, 1)]);
        assert_eq!((o.r(0), o.flags() & (CF | ZF)), (0, ZF));
        let o = run64(&asm(64, |a| a.lzcnt(eax, ebx).unwrap()), &[(3, 0x100)]);
        assert_eq!((o.r(0), o.flags() & (CF | ZF)), (23, 0));
        let o = run64(&asm(64, |a| a.lzcnt(rax, rbx).unwrap()), &[]);
        assert_eq!((o.r(0), o.flags() & (CF | ZF)), (64, CF));
        let o = run64(
            &asm(64, |a| a.popcnt(ecx, ebx).unwrap()),
            &[(3, 0xf0f0_0001)],
        );
        assert_eq!((o.r(1), o.flags() & 0x8d5), (9, 0));
        let o = run64(&asm(64, |a| a.popcnt(cx, bx).unwrap()), &[(3, 0xffff_0000)]);
        assert_eq!((o.r(1), o.flags() & 0x8d5), (0, ZF));
    }
}
