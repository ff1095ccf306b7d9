//! String instructions (SDM Vol. 1, 7.3.9): MOVS, CMPS, STOS, LODS, SCAS, with and without
//! REP/REPE/REPNE, in every element and address size.
//!
//! With a REP prefix each execution performs one iteration and then branches back to the
//! same instruction while more remain (see [`crate::rewrite`]): every iteration is an
//! interrupt window, and chaining keeps the loop in generated code. A zero count at the start
//! performs nothing and goes on at the next instruction. The address size (from iced's
//! operand kinds) picks CX/ECX/RCX, SI/ESI/RSI and DI/EDI/RDI; the source segment honours an
//! override, the destination is always ES. DF decides the direction.

use crane86_runtime::flags as fl;
use crane86_runtime::{CcKind, CcOp};
use iced_x86::{Instruction, OpKind, Register};

use super::operands::{linear, read_gpr_sized, trunc, write_gpr_sized};
use super::seg_check::{checked_linear, Access};
use crate::emit::{Bin, Cmp, Emit, R};

/// The five string operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StrOp {
    /// MOVS: [DI] := [SI].
    Movs,
    /// CMPS: flags of [SI] - [DI].
    Cmps,
    /// STOS: [DI] := accumulator.
    Stos,
    /// LODS: accumulator := [SI].
    Lods,
    /// SCAS: flags of accumulator - [DI].
    Scas,
}

const RAX: usize = 0;
const RCX: usize = 1;
const RSI: usize = 6;
const RDI: usize = 7;

/// The address size in bytes, from the string operand kinds.
pub(crate) fn string_addr_size(insn: &Instruction) -> u32 {
    for i in 0..insn.op_count() {
        match insn.op_kind(i) {
            OpKind::MemorySegSI | OpKind::MemoryESDI => return 2,
            OpKind::MemorySegESI | OpKind::MemoryESEDI => return 4,
            OpKind::MemorySegRSI | OpKind::MemoryESRDI => return 8,
            _ => {}
        }
    }
    8
}

/// One (REP: one iteration of) MOVS CMPS STOS LODS SCAS.
pub fn string<E: Emit>(e: &mut E, insn: &Instruction, op: StrOp) -> R<()> {
    let asz = string_addr_size(insn);
    let size = insn.memory_size().size() as u32;
    let rep = insn.has_rep_prefix() || insn.has_repne_prefix();
    let count = if rep {
        let c = read_gpr_sized(e, RCX, asz);
        let z = e.imm(0);
        let zero = e.cmp(Cmp::Eq, c, z);
        e.exit_if(zero, insn.next_ip())?;
        Some(c)
    } else {
        None
    };
    let rest = e.rflags_rest();
    let dfm = e.imm(fl::DF);
    let df = e.bin(Bin::And, rest, dfm);
    let up = e.imm(u64::from(size));
    let down = e.imm(u64::from(size).wrapping_neg());
    let delta = e.select(df, down, up);
    let uses_si = matches!(op, StrOp::Movs | StrOp::Cmps | StrOp::Lods);
    let uses_di = !matches!(op, StrOp::Lods);
    let si = read_gpr_sized(e, RSI, asz);
    let di = read_gpr_sized(e, RDI, asz);
    // Checks in the order of the accesses, all before the first store.
    let src = if uses_si {
        checked_linear(e, insn.memory_segment(), si, size, Access::Read)?
    } else {
        linear(e, insn.memory_segment(), si)
    };
    let dst = match op {
        StrOp::Lods => linear(e, Register::ES, di),
        StrOp::Movs | StrOp::Stos => checked_linear(e, Register::ES, di, size, Access::Write)?,
        StrOp::Cmps | StrOp::Scas => checked_linear(e, Register::ES, di, size, Access::Read)?,
    };
    // Loads, then stores.
    let acc = read_gpr_sized(e, RAX, size);
    let (a, b) = match op {
        StrOp::Movs | StrOp::Lods => (e.load(src, size)?, acc),
        StrOp::Cmps => {
            let a = e.load(src, size)?;
            (a, e.load(dst, size)?)
        }
        StrOp::Scas => (acc, e.load(dst, size)?),
        StrOp::Stos => (acc, acc),
    };
    match op {
        StrOp::Movs | StrOp::Stos => e.store(dst, size, a)?,
        _ => {}
    }
    // Then registers.
    if uses_si {
        let v = e.bin(Bin::Add, si, delta);
        write_gpr_sized(e, RSI, asz, v);
    }
    if uses_di {
        let v = e.bin(Bin::Add, di, delta);
        write_gpr_sized(e, RDI, asz, v);
    }
    if op == StrOp::Lods {
        write_gpr_sized(e, RAX, size, a);
    }
    let left = count.map(|c| {
        let one = e.imm(1);
        let c = e.bin(Bin::Sub, c, one);
        let c = trunc(e, c, asz);
        write_gpr_sized(e, RCX, asz, c);
        c
    });
    // Then flags.
    let compares = matches!(op, StrOp::Cmps | StrOp::Scas);
    if compares {
        let d = e.bin(Bin::Sub, a, b);
        let d = trunc(e, d, size);
        e.set_cc(CcOp::new(CcKind::Sub, size as u8), a, b, d);
    }
    // Then the next iteration, if any.
    if let Some(left) = left {
        let z = e.imm(0);
        let mut more = e.cmp(Cmp::Ne, left, z);
        if compares {
            let eq = e.cmp(Cmp::Eq, a, b);
            let go_on = if insn.has_repne_prefix() {
                let one = e.imm(1);
                e.bin(Bin::Xor, eq, one)
            } else {
                eq
            };
            more = e.bin(Bin::And, more, go_on);
        }
        e.branch(more, insn.ip(), insn.next_ip());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::testutil::{asm, run64, run_both, DATA};
    use crane86_runtime::CpuMode;

    const ZF: u64 = 0x40;
    const CF: u64 = 1;

    fn with_data(
        code: &[u8],
        data: &'static [u8],
        regs: &[(usize, u64)],
    ) -> crate::testutil::Outcome {
        let regs = regs.to_vec();
        run_both(CpuMode::Long64, code, move |cpu, mem| {
            mem.load(DATA, data).unwrap();
            for &(r, v) in &regs {
                cpu.gpr[r] = v;
            }
        })
    }

    #[test]
    fn rep_movsb_and_movsq() {
        let c = asm(64, |a| a.rep().movsb().unwrap());
        let o = with_data(&c, b"hello world", &[(1, 5), (6, DATA), (7, DATA + 0x100)]);
        assert_eq!(o.m(DATA + 0x100, 8), u64::from_le_bytes(*b"hello\0\0\0"));
        assert_eq!((o.r(1), o.r(6), o.r(7)), (0, DATA + 5, DATA + 0x105));
        let c = asm(64, |a| a.movsq().unwrap());
        let o = with_data(&c, b"abcdefgh", &[(1, 7), (6, DATA), (7, DATA + 0x10)]);
        assert_eq!(o.m(DATA + 0x10, 8), u64::from_le_bytes(*b"abcdefgh"));
        assert_eq!((o.r(1), o.r(6), o.r(7)), (7, DATA + 8, DATA + 0x18));
    }

    #[test]
    fn std_rep_stosd_goes_down() {
        let c = asm(64, |a| {
            a.std().unwrap();
            a.rep().stosd().unwrap();
            a.cld().unwrap();
        });
        let o = run64(&c, &[(0, 0x1122_3344), (1, 3), (7, DATA + 8)]);
        assert_eq!(o.m(DATA, 4), 0x1122_3344);
        assert_eq!(o.m(DATA + 4, 4), 0x1122_3344);
        assert_eq!(o.m(DATA + 8, 4), 0x1122_3344);
        assert_eq!(o.m(DATA + 12, 4), 0);
        assert_eq!((o.r(1), o.r(7)), (0, DATA - 4));
    }

    #[test]
    fn zero_count_does_nothing() {
        let c = asm(64, |a| a.rep().movsb().unwrap());
        // The addresses are outside RAM: no iteration, no access.
        let o = run64(&c, &[(6, 1 << 45), (7, 1 << 46)]);
        assert!(o.fault.is_none());
        assert_eq!((o.r(6), o.r(7)), (1 << 45, 1 << 46));
    }

    #[test]
    fn repne_scasb_finds_a_byte() {
        let c = asm(64, |a| a.repne().scasb().unwrap());
        let o = with_data(&c, b"hello", &[(0, b'l' as u64), (1, 100), (7, DATA)]);
        assert_eq!((o.r(1), o.r(7)), (97, DATA + 3));
        assert_eq!(o.flags() & ZF, ZF);
        let o = with_data(&c, b"hello", &[(0, b'z' as u64), (1, 5), (7, DATA)]);
        assert_eq!((o.r(1), o.r(7)), (0, DATA + 5));
        assert_eq!(o.flags() & ZF, 0);
    }

    #[test]
    fn repe_cmpsw_stops_at_a_difference() {
        let c = asm(64, |a| a.repe().cmpsw().unwrap());
        let o = with_data(&c, b"abcdabXd", &[(1, 4), (6, DATA), (7, DATA + 4)]);
        // words: "ab"="ab", then "cd" vs "Xd": 'c' (0x63) > 'X' (0x58), so no borrow
        assert_eq!((o.r(1), o.r(6), o.r(7)), (2, DATA + 4, DATA + 8));
        assert_eq!(o.flags() & (ZF | CF), 0);
    }

    #[test]
    fn lods_in_16_bit_code() {
        let c = asm(16, |a| {
            a.rep().lodsb().unwrap();
            a.lodsw().unwrap();
        });
        let o = run_both(CpuMode::Real16, &c, |cpu, mem| {
            mem.load(DATA, &[1, 2, 3, 4, 5, 6]).unwrap();
            cpu.gpr[1] = 0x1_0002; // CX = 2
            cpu.gpr[6] = 0xdead_0000 | DATA; // SI = 0x8000
            cpu.gpr[0] = 0xffff_ffff;
        });
        assert_eq!(o.r(0), 0xffff_0403);
        assert_eq!((o.r(1), o.r(6)), (0x1_0000, 0xdead_0000 | (DATA + 4)));
    }
}
