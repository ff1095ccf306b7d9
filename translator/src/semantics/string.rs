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
use crane86_runtime::memory::BulkOp;
use crane86_runtime::{CcKind, CcOp, CpuMode};
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
    // Only where no segment limit applies past the first element: flat segments, and for a
    // MOVS source an override only in 64-bit mode.
    let ctx = e.ctx();
    let limits = ctx.seg_checks
        || (op == StrOp::Movs
            && ctx.mode != CpuMode::Long64
            && insn.memory_segment() != Register::DS);
    let bulk_ok = asz >= 4 && !limits && matches!(op, StrOp::Movs | StrOp::Stos);
    if let Some(c) = count.filter(|_| bulk_ok) {
        let regs = Regs { c, si, di, df };
        bulk(e, insn, op, size, asz, regs, src, dst)?;
    }
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

/// The count, address registers (at the address size) and DF a REP string instruction
/// starts with.
struct Regs<V> {
    c: V,
    si: V,
    di: V,
    df: V,
}

/// REP MOVS and STOS: the iterations [`Emit::rep_bulk`] can do at once, then on at the same
/// instruction while more are left, or at the next; when it did none, nothing changes and
/// the caller does one iteration the ordinary way (which faults, or fills the TLB so that the
/// next round can go in bulk).
#[allow(clippy::too_many_arguments)]
fn bulk<E: Emit>(
    e: &mut E,
    insn: &Instruction,
    op: StrOp,
    size: u32,
    asz: u32,
    r: Regs<E::V>,
    src: E::V,
    dst: E::V,
) -> R<()> {
    let movs = op == StrOp::Movs;
    let zero = e.imm(0);
    // Forward only.
    let mut n = e.select(r.df, zero, r.c);
    let shift = e.imm(u64::from(size.trailing_zeros()));
    if asz == 4 {
        // Not past 4 GiB, where the 32-bit address registers would wrap.
        let top = e.imm(1 << 32);
        for reg in [Some(r.di), movs.then_some(r.si)].into_iter().flatten() {
            let room = e.bin(Bin::Sub, top, reg);
            let room = e.bin(Bin::Shr, room, shift);
            let less = e.cmp(Cmp::Ult, room, n);
            n = e.select(less, room, n);
        }
    }
    let (bulk_op, value) = if movs {
        (BulkOp::Movs, src)
    } else {
        (BulkOp::Stos, read_gpr_sized(e, RAX, size))
    };
    let done = e.rep_bulk(bulk_op, size, dst, value, n);
    let did = e.cmp(Cmp::Ne, done, zero);
    let bytes = e.bin(Bin::Shl, done, shift);
    // Registers change only when iterations were done: an ordinary iteration that faults
    // next must leave them as they were (a 32-bit write would clear their high halves).
    let di = e.bin(Bin::Add, r.di, bytes);
    set_if(e, did, RDI, asz, di);
    if movs {
        let si = e.bin(Bin::Add, r.si, bytes);
        set_if(e, did, RSI, asz, si);
    }
    let left = e.bin(Bin::Sub, r.c, done);
    let left = trunc(e, left, asz);
    set_if(e, did, RCX, asz, left);
    let none_left = e.cmp(Cmp::Eq, left, zero);
    let finished = e.bin(Bin::And, did, none_left);
    e.exit_if(finished, insn.next_ip())?;
    e.exit_if(did, insn.ip())
}

/// Writes `v` to register `r` at address size `asz` (4 or 8) when `cond` is non-zero; leaves
/// the register alone otherwise.
fn set_if<E: Emit>(e: &mut E, cond: E::V, r: usize, asz: u32, v: E::V) {
    let new = if asz == 8 { v } else { e.zext(v, 32) };
    let old = e.gpr(r);
    let v = e.select(cond, new, old);
    e.set_gpr(r, v);
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
    fn rep_stosq_across_pages_in_bulk() {
        let c = asm(64, |a| a.rep().stosq().unwrap());
        // 0x208 quadwords from 0x10 before a page end: parts of three pages.
        let start = DATA + 0xff0;
        let o = run64(&c, &[(0, 0x0102_0304_0506_0708), (1, 0x208), (7, start)]);
        let end = start + 8 * 0x208;
        assert_eq!((o.r(1), o.r(7)), (0, end));
        assert_eq!(o.m(start - 8, 8), 0, "before the first element");
        assert_eq!(o.m(end, 8), 0, "after the last");
        for a in (start..end).step_by(8) {
            assert_eq!(o.m(a, 8), 0x0102_0304_0506_0708, "{a:#x}");
        }
        // A round per page (and one ordinary iteration where the TLB had no entry yet), not
        // one per element.
        assert!(o.cpu.retired <= 8, "{} rounds", o.cpu.retired);
    }

    #[test]
    fn rep_movs_onto_its_own_source_copies_element_by_element() {
        // Each iteration reads what the one before wrote: MOVSB one byte ahead repeats the
        // first byte; MOVSD two bytes ahead copies "abcd", then reads back "cd" it wrote.
        let c = asm(64, |a| a.rep().movsb().unwrap());
        let o = with_data(&c, b"abcdefgh", &[(1, 6), (6, DATA), (7, DATA + 1)]);
        assert_eq!(&o.m(DATA, 8).to_le_bytes(), b"aaaaaaah");
        let c = asm(64, |a| a.rep().movsd().unwrap());
        let o = with_data(&c, b"abcdefghijkl", &[(1, 2), (6, DATA), (7, DATA + 2)]);
        assert_eq!(&o.m(DATA, 8).to_le_bytes(), b"ababcdcd");
        assert_eq!((o.r(1), o.r(6), o.r(7)), (0, DATA + 8, DATA + 10));
        // Behind its source it is a plain copy.
        let c = asm(64, |a| a.rep().movsw().unwrap());
        let o = with_data(&c, b"abcdefghij", &[(1, 4), (6, DATA + 2), (7, DATA)]);
        assert_eq!(&o.m(DATA, 8).to_le_bytes(), b"cdefghij");
    }

    #[test]
    fn rep_movsb_with_32_bit_addresses_writes_the_32_bit_registers() {
        // a32 rep movsb: ECX, ESI and EDI, written back zero-extended.
        let c = [0x67, 0xf3, 0xa4];
        let high = 0xdead_0000_0000_0000;
        let o = with_data(
            &c,
            b"abcdefgh",
            &[(1, high | 4), (6, high | DATA), (7, high | (DATA + 0x100))],
        );
        assert_eq!(o.m(DATA + 0x100, 8), u64::from_le_bytes(*b"abcd\0\0\0\0"));
        assert_eq!((o.r(1), o.r(6), o.r(7)), (0, DATA + 4, DATA + 0x104));
    }

    /// 64-bit page tables at `at` mapping the first 2 MiB in 4 KiB pages, but for `hole`.
    fn map_with_hole(mem: &mut crane86_runtime::PhysMem, at: u64, hole: u64) -> u64 {
        use crane86_runtime::paging::pte::{A, D, P, RW, US};
        let f = P | RW | US | A | D;
        for level in 0..3 {
            let t = at + 0x1000 * level;
            mem.write_phys(t, 8, (t + 0x1000) | f);
        }
        for i in 0..512u64 {
            let page = i << 12;
            let e = if page == hole { 0 } else { page | f };
            mem.write_phys(at + 0x3000 + 8 * i, 8, e);
        }
        at
    }

    #[test]
    fn rep_stosb_into_a_missing_page_faults_there_with_the_work_before_done() {
        let c = asm(64, |a| a.rep().stosb().unwrap());
        let hole = DATA + 0x1000;
        let o = run_both(CpuMode::Long64, &c, |cpu, mem| {
            cpu.cr3 = map_with_hole(mem, 0xf0000, hole);
            cpu.gpr[0] = 0xab;
            cpu.gpr[1] = 100;
            cpu.gpr[7] = hole - 0x10;
        });
        let f = o.fault.expect("a page fault");
        assert_eq!(f.exception, crane86_runtime::Exception::PageFault);
        assert_eq!(o.cpu.cr2, hole);
        assert_eq!((o.r(1), o.r(7)), (100 - 0x10, hole));
        assert_eq!(o.m(hole - 0x10, 8), 0xabab_abab_abab_abab);
        assert_eq!(o.m(hole - 8, 8), 0xabab_abab_abab_abab);
        assert_eq!(o.m(hole - 0x18, 8), 0);
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
