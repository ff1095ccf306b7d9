//! Multiplication and division (SDM Vol. 1, 7.3.2.2; Vol. 2 MUL, IMUL, DIV, IDIV).
//!
//! MUL and IMUL record their flags as [`CcKind::Mul`] with `src2` = 1 when the product does
//! not fit the destination (CF = OF = that bit; SF ZF PF follow the low half, AF = 0, all
//! undefined in the SDM). DIV and IDIV leave the flags unchanged (undefined in the SDM) and
//! raise #DE, before any write, on a zero divisor or a quotient that does not fit.

use crane86_runtime::{CcKind, CcOp, Exception, Fault};
use iced_x86::Instruction;

use super::operands::{
    mask, op_size, read_gpr_sized, read_op, sext_size, trunc, write_gpr_sized, write_reg,
};
use crate::emit::{Bin, Cmp, Emit, R};

const RAX: usize = 0;
const RDX: usize = 2;

/// The full product of two `size`-byte values: (low half, high half, overflow bit), where
/// overflow means the product does not fit in `size` bytes (signed or unsigned).
fn product<E: Emit>(e: &mut E, a: E::V, b: E::V, size: u32, signed: bool) -> (E::V, E::V, E::V) {
    let bits = size * 8;
    if size == 8 {
        let lo = e.bin(Bin::Mul, a, b);
        let hi = e.bin(if signed { Bin::SMulHi } else { Bin::UMulHi }, a, b);
        let ext = if signed {
            let sh = e.imm(63);
            e.bin(Bin::Sar, lo, sh)
        } else {
            e.imm(0)
        };
        let ovf = e.cmp(Cmp::Ne, hi, ext);
        return (lo, hi, ovf);
    }
    // Both factors fit in 32 bits, so the 64-bit product is exact.
    let (x, y) = if signed {
        (sext_size(e, a, size), sext_size(e, b, size))
    } else {
        (a, b)
    };
    let p = e.bin(Bin::Mul, x, y);
    let lo = trunc(e, p, size);
    let sh = e.imm(u64::from(bits));
    let hi = e.bin(if signed { Bin::Sar } else { Bin::Shr }, p, sh);
    let hi = trunc(e, hi, size);
    let back = if signed { sext_size(e, lo, size) } else { lo };
    let ovf = e.cmp(Cmp::Ne, back, p);
    (lo, hi, ovf)
}

/// Writes the two results of MUL/DIV: `AH:AL = high:low` for byte operands, else
/// `rDX = high`, `rAX = low` at the operand size.
fn write_pair<E: Emit>(e: &mut E, size: u32, low: E::V, high: E::V) {
    if size == 1 {
        let low = trunc(e, low, 1);
        let high = trunc(e, high, 1);
        let eight = e.imm(8);
        let h = e.bin(Bin::Shl, high, eight);
        let ax = e.bin(Bin::Or, h, low);
        write_gpr_sized(e, RAX, 2, ax);
    } else {
        write_gpr_sized(e, RAX, size, low);
        write_gpr_sized(e, RDX, size, high);
    }
}

/// MUL r/m and the one-operand IMUL r/m: AX := AL * src, or rDX:rAX := rAX * src.
pub fn mul1<E: Emit>(e: &mut E, insn: &Instruction, signed: bool) -> R<()> {
    let size = op_size(insn, 0);
    let src = read_op(e, insn, 0, size)?;
    let acc = read_gpr_sized(e, RAX, size);
    let (lo, hi, ovf) = product(e, acc, src, size, signed);
    write_pair(e, size, lo, hi);
    e.set_cc(CcOp::new(CcKind::Mul, size as u8), acc, ovf, lo);
    Ok(())
}

/// The two- and three-operand IMUL: `dst := src1 * src2` truncated to the operand size.
pub fn imul_n<E: Emit>(e: &mut E, insn: &Instruction) -> R<()> {
    let size = op_size(insn, 0);
    let (a, b) = if insn.op_count() == 3 {
        let a = read_op(e, insn, 1, size)?;
        let b = read_op(e, insn, 2, size)?;
        (a, b)
    } else {
        let a = read_op(e, insn, 0, size)?;
        let b = read_op(e, insn, 1, size)?;
        (a, b)
    };
    let (lo, _, ovf) = product(e, a, b, size, true);
    write_reg(e, insn.op_register(0), lo);
    e.set_cc(CcOp::new(CcKind::Mul, size as u8), a, ovf, lo);
    Ok(())
}

/// DIV and IDIV r/m: AL, AH := AX / src, AX % src; or rAX, rDX := rDX:rAX / src, % src.
pub fn div<E: Emit>(e: &mut E, insn: &Instruction, signed: bool) -> R<()> {
    let size = op_size(insn, 0);
    let bits = size * 8;
    let d = read_op(e, insn, 0, size)?;
    // The dividend, as a 64-bit value for sizes 1, 2 and 4 (hi:lo for size 8).
    let (hi, lo) = if size == 8 {
        (e.gpr(RDX), e.gpr(RAX))
    } else if size == 1 {
        let ax = read_gpr_sized(e, RAX, 2);
        (e.imm(0), ax)
    } else {
        let h = read_gpr_sized(e, RDX, size);
        let l = read_gpr_sized(e, RAX, size);
        let sh = e.imm(u64::from(bits));
        let h = e.bin(Bin::Shl, h, sh);
        (e.imm(0), e.bin(Bin::Or, h, l))
    };
    let de = Fault::new(Exception::DivideError);
    let (q, r) = if size == 8 || (signed && size == 4) {
        // 64-bit quotients (and the 32-bit signed case, whose dividend may be i64::MIN)
        // go through the wide division, which never traps.
        let (hi, d64) = if size == 8 {
            (hi, d)
        } else {
            let sh = e.imm(63);
            (e.bin(Bin::Sar, lo, sh), sext_size(e, d, size))
        };
        let (q, r, ok) = e.div_wide(signed, hi, lo, d64);
        let z = e.imm(0);
        let bad = e.cmp(Cmp::Eq, ok, z);
        e.raise_if(bad, de)?;
        (q, r)
    } else {
        let z = e.imm(0);
        let zero = e.cmp(Cmp::Eq, d, z);
        e.raise_if(zero, de)?;
        if signed {
            let n = sext_size(e, lo, size * 2);
            let dv = sext_size(e, d, size);
            (e.bin(Bin::SDiv, n, dv), e.bin(Bin::SRem, n, dv))
        } else {
            (e.bin(Bin::UDiv, lo, d), e.bin(Bin::URem, lo, d))
        }
    };
    if size < 8 {
        // The quotient must fit the operand size.
        let fits = if signed {
            let t = trunc(e, q, size);
            let back = sext_size(e, t, size);
            e.cmp(Cmp::Eq, back, q)
        } else {
            let m = e.imm(mask(size));
            e.cmp(Cmp::Ule, q, m)
        };
        let one = e.imm(1);
        let bad = e.bin(Bin::Xor, fits, one);
        e.raise_if(bad, de)?;
    }
    write_pair(e, size, q, r);
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::testutil::{asm, run64};
    use crane86_runtime::Exception;
    use iced_x86::code_asm::*;

    const CF_OF: u64 = 0x801;

    #[test]
    fn mul_all_sizes() {
        let c = asm(64, |a| a.mul(bl).unwrap());
        let o = run64(&c, &[(0, 0x1234_56f0), (3, 0x10)]);
        assert_eq!(o.r(0), 0x1234_0f00);
        assert_eq!(o.flags() & CF_OF, CF_OF);
        let c = asm(64, |a| a.mul(bx).unwrap());
        let o = run64(&c, &[(0, 0x8000), (3, 2), (2, 0xffff_ffff)]);
        assert_eq!((o.r(0), o.r(2)), (0, 0xffff_0001));
        let c = asm(64, |a| a.mul(ebx).unwrap());
        let o = run64(&c, &[(0, 0xffff_ffff), (3, 0xffff_ffff)]);
        assert_eq!((o.r(0), o.r(2)), (1, 0xffff_fffe));
        let c = asm(64, |a| a.mul(rbx).unwrap());
        let o = run64(&c, &[(0, 3), (3, 5)]);
        assert_eq!((o.r(0), o.r(2)), (15, 0));
        assert_eq!(o.flags() & CF_OF, 0);
        let o = run64(&c, &[(0, u64::MAX), (3, u64::MAX)]);
        assert_eq!((o.r(0), o.r(2)), (1, u64::MAX - 1));
        assert_eq!(o.flags() & CF_OF, CF_OF);
    }

    #[test]
    fn imul_forms() {
        let c = asm(64, |a| a.imul(cl).unwrap());
        let o = run64(&c, &[(0, 0xfe), (1, 3)]);
        assert_eq!(o.r(0), 0xfffa);
        assert_eq!(o.flags() & CF_OF, 0);
        let c = asm(64, |a| a.imul(rcx).unwrap());
        let o = run64(&c, &[(0, u64::MAX), (1, 7)]);
        assert_eq!((o.r(0), o.r(2)), (u64::MAX - 6, u64::MAX));
        assert_eq!(o.flags() & CF_OF, 0);
        let c = asm(64, |a| a.imul_2(eax, ecx).unwrap());
        let o = run64(&c, &[(0, 0x1_0000), (1, 0x8000)]);
        assert_eq!(o.r(0), 0x8000_0000);
        assert_eq!(o.flags() & CF_OF, CF_OF);
        let c = asm(64, |a| a.imul_3(dx, cx, -3).unwrap());
        let o = run64(&c, &[(1, 100), (2, 0xdead_0000)]);
        assert_eq!(o.r(2), 0xdead_fed4);
        assert_eq!(o.flags() & CF_OF, 0);
        let c = asm(64, |a| {
            a.imul_3(rdx, qword_ptr(0x8000), 0x4000_0000).unwrap()
        });
        let o = run64(&c, &[]);
        assert_eq!(o.r(2), 0);
        let c = asm(64, |a| a.imul_2(rax, rcx).unwrap());
        let o = run64(&c, &[(0, 1 << 62), (1, 2)]);
        assert_eq!(o.r(0), 1 << 63);
        assert_eq!(o.flags() & CF_OF, CF_OF);
    }

    #[test]
    fn div_and_idiv() {
        let c = asm(64, |a| a.div(bl).unwrap());
        let o = run64(&c, &[(0, 1003), (3, 10)]);
        assert_eq!(o.r(0), (3 << 8) | 100);
        let c = asm(64, |a| a.div(ecx).unwrap());
        let o = run64(&c, &[(0, 5), (2, 1), (1, 0x10)]);
        assert_eq!((o.r(0), o.r(2)), (0x1000_0000, 5));
        let c = asm(64, |a| a.div(rcx).unwrap());
        let o = run64(&c, &[(0, 0), (2, 1), (1, 0x10)]);
        assert_eq!((o.r(0), o.r(2)), (1 << 60, 0));
        let c = asm(64, |a| a.idiv(cx).unwrap());
        let o = run64(&c, &[(0, 0xfff9), (2, 0xffff), (1, 2)]);
        assert_eq!((o.r(0), o.r(2)), (0xfffd, 0xffff));
        let c = asm(64, |a| a.idiv(ecx).unwrap());
        let o = run64(&c, &[(0, 0xffff_fff9), (2, 0xffff_ffff), (1, 0xffff_fffe)]);
        assert_eq!((o.r(0), o.r(2)), (3, 0xffff_ffff));
        let c = asm(64, |a| a.idiv(rcx).unwrap());
        let o = run64(&c, &[(0, (-100i64) as u64), (2, u64::MAX), (1, 7)]);
        assert_eq!((o.r(0), o.r(2)), ((-14i64) as u64, (-2i64) as u64));
    }

    #[test]
    fn divide_errors_leave_no_effect() {
        type Case = (Vec<u8>, Vec<(usize, u64)>);
        let cases: Vec<Case> = vec![
            (asm(64, |a| a.div(bl).unwrap()), vec![(0, 0x1000), (3, 0)]),
            (
                asm(64, |a| a.div(bl).unwrap()),
                vec![(0, 0x1000), (3, 0x10)],
            ),
            (
                asm(64, |a| a.idiv(bl).unwrap()),
                vec![(0, 0x8000), (3, 0xff)],
            ),
            (
                asm(64, |a| a.idiv(bx).unwrap()),
                vec![(0, 0), (2, 0x8000), (3, 0xffff)],
            ),
            (
                asm(64, |a| a.idiv(ebx).unwrap()),
                vec![(0, 0), (2, 0x8000_0000), (3, 0xffff_ffff)],
            ),
            (
                asm(64, |a| a.div(ebx).unwrap()),
                vec![(0, 0), (2, 1), (3, 1)],
            ),
            (
                asm(64, |a| a.div(rbx).unwrap()),
                vec![(0, 0), (2, 1), (3, 1)],
            ),
            (
                asm(64, |a| a.idiv(rbx).unwrap()),
                vec![(0, 0), (2, 1 << 63), (3, u64::MAX)],
            ),
            (
                asm(64, |a| a.idiv(rbx).unwrap()),
                vec![(0, 5), (2, 0), (3, 0)],
            ),
        ];
        for (c, regs) in cases {
            let o = run64(&c, &regs);
            assert_eq!(o.fault.map(|f| f.exception), Some(Exception::DivideError));
            assert_eq!(o.cpu.rip, crate::testutil::CODE);
            for (r, v) in regs {
                assert_eq!(o.r(r), v);
            }
        }
    }
}
