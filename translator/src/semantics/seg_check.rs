//! Segment limit and type checks on data accesses (SDM Vol. 3, 5.3 and 5.5): the generated
//! form of `crane86_runtime::segment::limit::access_fault`.
//!
//! A block whose key says DS, ES and SS are flat (`Ctx::seg_checks` clear) emits nothing for
//! accesses through them, so flat guests pay nothing; accesses through an FS or GS override
//! only in blocks whose key says that segment is not flat (`Ctx::fs_flat`, `Ctx::gs_flat`:
//! the 32-bit Linux kernel's per-CPU data is behind a flat FS with a base, and every such
//! access used to pay the check, about fifteen host instructions), and through a CS override
//! in every block outside 64-bit mode (rare). The check reads the segment's limit and attributes at run
//! time and raises #SS(0) for SS, #GP(0) otherwise, before the access changes anything.

use crane86_runtime::segment::limit::{TYPE_CODE, TYPE_EXPAND_DOWN, TYPE_RW};
use crane86_runtime::state::{SEG_DB, SEG_P};
use crane86_runtime::{CpuMode, Exception, Fault, SegReg};
use iced_x86::Register;

use super::operands::{linear, seg_of};
use crate::emit::{Arith, Bin, Cmp, Emit, R};

/// What a data access does to its bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// A load.
    Read,
    /// A store (a read-modify-write is checked as a read, then as a write).
    Write,
}

/// Raises #SS(0)/#GP(0) when an access of `size` bytes at offset `off` (already truncated
/// to the address size) through `seg` breaks the segment's limit or type.
/// Inline, so that the common case (nothing to check) costs the caller a compare, not a call.
#[inline(always)]
pub fn check<E: Emit>(e: &mut E, seg: Register, off: E::V, size: u32, access: Access) -> R<()> {
    let ctx = e.ctx();
    let s = seg_of(seg);
    let checked = match s {
        SegReg::Cs => true,
        SegReg::Fs => !ctx.fs_flat,
        SegReg::Gs => !ctx.gs_flat,
        _ => ctx.seg_checks,
    };
    if ctx.mode == CpuMode::Long64 || !checked {
        return Ok(());
    }
    check_limit_and_type(e, s, off, size, access)
}

/// [`check`] for a segment that needs it.
fn check_limit_and_type<E: Emit>(
    e: &mut E,
    s: SegReg,
    off: E::V,
    size: u32,
    access: Access,
) -> R<()> {
    let ctx = e.ctx();
    let real = ctx.mode == CpuMode::Real16 || ctx.v86;
    let limit = e.seg_limit(s);
    let attrs = if real { None } else { Some(e.seg_attrs(s)) };
    let null_checked = !matches!(s, SegReg::Ss | SegReg::Cs);
    let bad = fault_cond(e, limit, attrs, null_checked, off, size, access);
    let vector = if s == SegReg::Ss {
        Exception::StackFault
    } else {
        Exception::GeneralProtection
    };
    e.raise_if(bad, Fault::with_code(vector, 0))
}

/// [`check`], then the linear address of the access.
pub fn checked_linear<E: Emit>(
    e: &mut E,
    seg: Register,
    off: E::V,
    size: u32,
    access: Access,
) -> R<E::V> {
    check(e, seg, off, size, access)?;
    Ok(linear(e, seg, off))
}

/// 1 when the access faults, else 0: `attrs` is `None` under real-address-mode rules (the
/// limit alone counts).
pub fn fault_cond<A: Arith>(
    e: &mut A,
    limit: A::V,
    attrs: Option<A::V>,
    null_checked: bool,
    off: A::V,
    size: u32,
    access: Access,
) -> A::V {
    // A size of 0 (a memory form iced gives no size) is checked as one byte.
    let last = e.imm(u64::from(size.max(1)) - 1);
    let end = e.bin(Bin::Add, off, last);
    let beyond = e.cmp(Cmp::Ult, limit, end);
    let Some(attrs) = attrs else {
        return beyond;
    };
    // Type: stores need a writable data segment, loads anything but execute-only code.
    let km = e.imm(u64::from(TYPE_CODE | TYPE_RW));
    let kind = e.bin(Bin::And, attrs, km);
    let mut bad = match access {
        Access::Write => {
            let ok = e.imm(u64::from(TYPE_RW));
            e.cmp(Cmp::Ne, kind, ok)
        }
        Access::Read => {
            let exec_only = e.imm(u64::from(TYPE_CODE));
            e.cmp(Cmp::Eq, kind, exec_only)
        }
    };
    if null_checked {
        let p = e.imm(u64::from(SEG_P));
        let present = e.bin(Bin::And, attrs, p);
        let zero = e.imm(0);
        let null = e.cmp(Cmp::Eq, present, zero);
        bad = e.bin(Bin::Or, bad, null);
    }
    // Expand-down data: valid offsets are limit+1 ..= 0xFFFF, or 0xFFFFFFFF with B set.
    let em = e.imm(u64::from(TYPE_CODE | TYPE_EXPAND_DOWN));
    let ek = e.bin(Bin::And, attrs, em);
    let edv = e.imm(u64::from(TYPE_EXPAND_DOWN));
    let down = e.cmp(Cmp::Eq, ek, edv);
    let dbm = e.imm(u64::from(SEG_DB));
    let big = e.bin(Bin::And, attrs, dbm);
    let top32 = e.imm(0xffff_ffff);
    let top16 = e.imm(0xffff);
    let top = e.select(big, top32, top16);
    let below = e.cmp(Cmp::Ule, off, limit);
    let over = e.cmp(Cmp::Ult, top, end);
    let down_bad = e.bin(Bin::Or, below, over);
    let range = e.select(down, down_bad, beyond);
    e.bin(Bin::Or, bad, range)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interp::Values;
    use crane86_runtime::segment::limit::{access_fault, Rules};
    use crane86_runtime::Segment;

    /// The generated arithmetic agrees with the runtime's reference check on every
    /// combination of segment kind, offset near the edges and size 1..16.
    #[test]
    fn generated_check_matches_reference() {
        let mut kinds = Vec::new();
        for typ in 0..16u16 {
            for db in [0, SEG_DB] {
                for p in [0, SEG_P] {
                    kinds.push(p | 0x10 | typ | db);
                }
            }
        }
        let limits = [
            0u32,
            0xfff,
            0xfffe,
            0xffff,
            0x1_0000,
            0xffff_fffe,
            0xffff_ffff,
        ];
        let offs = [
            0u64, 1, 0xffe, 0xfff, 0x1000, 0xfff0, 0xfffe, 0xffff, 0x1_0000,
        ];
        for &attrs in &kinds {
            for &limit in &limits {
                let seg = Segment {
                    base: 0,
                    limit,
                    selector: 8,
                    attrs,
                };
                for &off in offs.iter().chain(&[0xffff_fff0, 0xffff_ffff]) {
                    for size in 1..=16 {
                        for access in [Access::Read, Access::Write] {
                            let w = access == Access::Write;
                            for null in [false, true] {
                                let v = &mut Values;
                                let (l, a) = (u64::from(limit), u64::from(attrs));
                                let got = fault_cond(v, l, Some(a), null, off, size, access);
                                let want = access_fault(&seg, Rules::Protected, null, off, size, w);
                                assert_eq!(got != 0, want, "{seg:x?} {off:#x} {size} {access:?}");
                                let got = fault_cond(v, l, None, null, off, size, access);
                                let want = access_fault(&seg, Rules::Real, null, off, size, w);
                                assert_eq!(got != 0, want, "real {seg:x?} {off:#x} {size}");
                            }
                        }
                    }
                }
            }
        }
    }

    use crate::testutil::{asm, run_both, Outcome, DATA};
    use crane86_runtime::CpuMode;
    use iced_x86::code_asm::{ax, dword_ptr, eax, word_ptr};

    const RSP: usize = 4;

    /// Runs 32-bit `code` (both back ends) with SS an expand-down data segment (B = 1,
    /// base 0) whose limit is `DATA + 0xfff`, ESP at `sp` and DS a byte-granular segment
    /// of limit 0xff based at DATA; EAX is non-zero.
    fn run32_small(sp: u64, code: &[u8]) -> Outcome {
        run32_small_bp(sp, 0, code)
    }

    /// [`run32_small`] with EBP at `bp`.
    fn run32_small_bp(sp: u64, bp: u64, code: &[u8]) -> Outcome {
        run_both(CpuMode::Prot32, code, move |cpu, _| {
            cpu.gpr[5] = bp;
            let stack = &mut cpu.seg[SegReg::Ss as usize];
            stack.limit = (DATA + 0xfff) as u32;
            stack.attrs = SEG_P | SEG_DB | 0x17;
            let data = &mut cpu.seg[SegReg::Ds as usize];
            data.base = DATA;
            data.limit = 0xff;
            cpu.gpr[RSP] = sp;
            cpu.gpr[0] = 0x1111_1111; // EAX: what PUSHAD would store first
        })
    }

    fn expect(o: &Outcome, vector: Exception, rip: u64) {
        assert_eq!(o.fault, Some(Fault::with_code(vector, 0)));
        assert_eq!(o.cpu.rip, rip);
    }

    #[test]
    fn pushes_and_calls_below_an_expand_down_limit_raise_ss() {
        let top = DATA + 0x1000;
        let push = asm(32, |a| a.push(eax).unwrap());
        let o = run32_small(top + 4, &push);
        assert_eq!(o.fault, None);
        let o = run32_small(top + 2, &push);
        expect(&o, Exception::StackFault, crate::testutil::CODE);
        assert_eq!(o.r(RSP), top + 2, "ESP unchanged");
        assert_eq!(o.m(top - 2, 4), 0, "nothing written");
        let call = asm(32, |a| {
            let mut l = a.create_label();
            a.call(l).unwrap();
            a.set_label(&mut l).unwrap();
            a.nop().unwrap();
        });
        expect(
            &run32_small(top + 3, &call),
            Exception::StackFault,
            crate::testutil::CODE,
        );
        let pusha = asm(32, |a| a.pushad().unwrap());
        let o = run32_small(top + 16, &pusha);
        expect(&o, Exception::StackFault, crate::testutil::CODE);
        let written = o.m(top, 8) | o.m(top + 8, 8);
        assert_eq!(written, 0, "PUSHAD checks its last push before the first");
        let enter = asm(32, |a| a.enter(8u32, 0u32).unwrap());
        assert_eq!(run32_small(top + 12, &enter).fault, None);
        let pop = asm(32, |a| a.pop(eax).unwrap());
        // B = 1: the stack reaches 0xFFFFFFFF; a POP of the last three bytes crosses it.
        expect(
            &run32_small(0xffff_fffd, &pop),
            Exception::StackFault,
            crate::testutil::CODE,
        );
    }

    /// ENTER checks all its pushes, its frame-pointer reads and the final stack pointer
    /// before it stores anything: a fault leaves memory, ESP and EBP as they were.
    #[test]
    fn enter_checks_every_push_before_the_first() {
        let top = DATA + 0x1000;
        let bp = top + 0x100;
        let nested = asm(32, |a| a.enter(0u32, 3u32).unwrap());
        // Pushes at top+4, top, top-4 (faults), top-8.
        let o = run32_small_bp(top + 8, bp, &nested);
        expect(&o, Exception::StackFault, crate::testutil::CODE);
        assert_eq!((o.r(RSP), o.r(5)), (top + 8, bp), "ESP and EBP unchanged");
        assert_eq!(
            o.m(top, 8),
            0,
            "the pushes before the faulting one are not written"
        );
        // With room for the four pushes it runs: EBP, two copied frame pointers, the frame.
        let o = run32_small_bp(top + 16, bp, &nested);
        assert_eq!(o.fault, None);
        assert_eq!((o.r(RSP), o.r(5)), (top, top + 12));
        assert_eq!(o.m(top + 12, 4), bp);
        assert_eq!(o.m(top, 4), top + 12);
        // A frame-pointer read below the limit faults as well, before any store.
        let o = run32_small_bp(top + 0x100, top + 4, &nested);
        expect(&o, Exception::StackFault, crate::testutil::CODE);
        assert_eq!(o.m(top + 0xfc, 4), 0);
        // The allocation: the final ESP must lie within the limit (SDM: "the new value of
        // ESP"), checked before the EBP push is written.
        let alloc = asm(32, |a| a.enter(8u32, 0u32).unwrap());
        let o = run32_small_bp(top + 4, bp, &alloc);
        expect(&o, Exception::StackFault, crate::testutil::CODE);
        assert_eq!(o.r(RSP), top + 4);
        assert_eq!(o.m(top, 4), 0);
    }

    #[test]
    fn data_accesses_and_strings_beyond_the_limit_raise_gp() {
        let code = asm(32, |a| {
            a.mov(eax, dword_ptr(0xfc)).unwrap();
            a.mov(dword_ptr(0xfd), eax).unwrap();
        });
        let o = run32_small(DATA + 0x2000, &code);
        expect(&o, Exception::GeneralProtection, crate::testutil::CODE + 5);
        let movs = asm(32, |a| a.rep().movsd().unwrap());
        let o = run_both(CpuMode::Prot32, &movs, |cpu, _| {
            let dst = &mut cpu.seg[SegReg::Es as usize];
            dst.base = DATA;
            dst.limit = 0x10;
            cpu.gpr[1] = 8; // ECX
            cpu.gpr[6] = DATA + 0x100; // ESI (flat DS)
            cpu.gpr[7] = 4; // EDI: the fourth dword crosses the limit
        });
        expect(&o, Exception::GeneralProtection, crate::testutil::CODE);
        assert_eq!(o.r(1), 5, "three iterations done");
        assert_eq!(o.r(7), 16);
    }

    #[test]
    fn real_mode_word_at_the_end_of_the_segment() {
        let code = asm(16, |a| {
            a.mov(ax, word_ptr(0xfffe)).unwrap();
            a.mov(ax, word_ptr(0xffff)).unwrap();
        });
        let o = run_both(CpuMode::Real16, &code, |_, _| {});
        expect(&o, Exception::GeneralProtection, crate::testutil::CODE + 3);
        let code = asm(16, |a| a.push(ax).unwrap());
        let o = run_both(CpuMode::Real16, &code, |cpu, _| cpu.gpr[RSP] = 1);
        expect(&o, Exception::StackFault, crate::testutil::CODE);
    }

    /// In 64-bit mode a ModRM operand through SS (RSP or RBP as the base) at a non-canonical
    /// address is #SS(0), other segments #GP(0), and the fault comes before the instruction
    /// changes anything: the JIT checks it only on its TLB miss path, at the access.
    #[test]
    fn non_canonical_operands_through_ss_raise_ss_in_64_bit_mode() {
        use iced_x86::code_asm::{qword_ptr, rax, rbp, rbx, rsp};
        const BAD: u64 = 0x8000_0000_0000_0000;
        let run = |code: &[u8]| {
            run_both(CpuMode::Long64, code, |cpu, _| {
                cpu.gpr[5] = BAD; // RBP
                cpu.gpr[3] = BAD; // RBX
                cpu.gpr[0] = 0x1234;
            })
        };
        let cases: [(&[u8], Exception); 5] = [
            (
                &asm(64, |a| a.mov(rax, qword_ptr(rbp + 8)).unwrap()),
                Exception::StackFault,
            ),
            (
                &asm(64, |a| a.mov(qword_ptr(rbp - 8), rax).unwrap()),
                Exception::StackFault,
            ),
            (
                &asm(64, |a| a.add(qword_ptr(rbp), rax).unwrap()),
                Exception::StackFault,
            ),
            (
                &asm(64, |a| a.mov(rax, qword_ptr(rbx + 8)).unwrap()),
                Exception::GeneralProtection,
            ),
            (
                &asm(64, |a| a.mov(qword_ptr(rbx), rax).unwrap()),
                Exception::GeneralProtection,
            ),
        ];
        for (code, vector) in cases {
            let o = run(code);
            assert_eq!(o.fault, Some(Fault::with_code(vector, 0)), "{code:x?}");
            assert_eq!(o.cpu.rip, crate::testutil::CODE);
            assert_eq!(o.r(0), 0x1234, "{vector:?}: RAX unchanged");
        }
        // POP to a non-canonical frame slot: the stack read succeeds, the store faults, and
        // RSP keeps its value.
        let pop = asm(64, |a| {
            a.mov(rax, rsp).unwrap();
            a.pop(qword_ptr(rbp + 16)).unwrap();
        });
        let o = run(&pop);
        expect(&o, Exception::StackFault, crate::testutil::CODE + 3);
        assert_eq!(o.r(RSP), o.r(0), "RSP unchanged");
    }
}
