//! Translating a region: its members' headers, their per-member state, and the chain slots
//! its exits are given.

use cranelift_codegen::ir::{Block, InstBuilder};
use iced_x86::OpKind;

use super::{used_gprs, JitEmitter, Slot};
use crate::decode::DecodedBlock;
use crate::emit::Emit;
use crate::semantics;
use crane86_runtime::CcOp;

impl JitEmitter<'_, '_> {
    /// Emits a region: `blocks[0]` is the entry, the others guest blocks it reaches by direct
    /// branches (see [`crate::cache`]), compiled into this one function.
    pub fn translate(&mut self, blocks: &[DecodedBlock]) {
        let Some(entry) = blocks.first() else {
            return;
        };
        let start = entry.insns.first().map_or(0, |d| d.insn.ip());
        if let Some(page) = self.chain.second_page {
            self.second_page_guard(page, start);
        }
        let loops = entry.insns.iter().any(|d| {
            matches!(
                d.insn.op0_kind(),
                OpKind::NearBranch16 | OpKind::NearBranch32 | OpKind::NearBranch64
            ) && d.insn.near_branch_target() == start
        });
        if self.runs_runtime(entry) {
            self.begin_member(entry);
            self.translate_runtime(entry);
            return;
        }
        if blocks.len() == 1 && !loops {
            self.begin_member(entry);
            self.translate_body(entry);
            return;
        }
        // The registers the members use are loaded before the headers, so that they live in
        // host registers across the region's internal transfers. One the decoder's
        // information left out is loaded where it is first read, in its member (still right,
        // since register writes reach CpuState at once).
        let used = used_gprs(blocks);
        for r in (0..16).filter(|r| used & (1 << r) != 0) {
            self.gpr(r);
        }
        self.memo_sites = super::memo::memo_sites(blocks);
        if !self.memo_sites.is_empty() {
            self.start_memos(self.memo_sites.len());
        }
        for b in blocks {
            let ip = b.insns.first().map_or(0, |d| d.insn.ip());
            let head = self.b.create_block();
            self.heads.push((ip, head));
            if b.insns.first().is_some_and(|d| sets_flags_first(&d.insn)) {
                self.flags_dead_at.push(ip);
            }
        }
        self.flags_carried_to = members_reading_flags_first(blocks);
        if self.flags_carried_to.contains(&start) {
            // The entry too, with what `CpuState` holds on the way in from outside: once
            // per run of the function, where its transfers would store them each turn.
            self.carry_flags();
        }
        self.b.ins().jump(self.heads[0].1, &[]);
        for (i, b) in blocks.iter().enumerate() {
            self.b.switch_to_block(self.heads[i].1);
            for r in (0..16).filter(|r| used & (1 << r) == 0) {
                self.reg_state[r] = Slot::Unloaded;
            }
            self.begin_member(b);
            self.translate_body(b);
        }
        for &(_, head) in &self.heads {
            self.b.seal_block(head);
        }
    }

    /// Per-member state at the start of a member's code: nothing is known about the flags'
    /// operation (several paths may lead here), and no value of another member may be used.
    pub(super) fn begin_member(&mut self, block: &DecodedBlock) {
        // Every way out of the previous member stored its pending register writes.
        debug_assert_eq!(self.gpr_pending, 0);
        self.defer_gprs = false;
        // Written through, so CpuState holds it: each member loads it where it first reads
        // it (few do: string instructions for DF), rather than keep it live across the
        // region.
        self.rflags_state = Slot::Unloaded;
        // Stored by every transfer from a member that changed it (`loop_back`), so that
        // its four values do not live around the region's loops for the exits' sake: most
        // members set the flags before they read them, and the rest load them here. A
        // member that reads them first has them in the variables instead
        // (`carry_flags`), maybe newer than `CpuState`'s.
        let start = block.insns.first().map_or(0, |d| d.insn.ip());
        self.cc_state = if self.flags_carried_to.contains(&start) {
            Slot::Dirty
        } else {
            Slot::Unloaded
        };
        self.cc_static = None;
        self.seg_base = [None; 6];
        self.xmm_loaded = [[false; 2]; 16];
        self.mxcsr = None;
        self.osfxsr_checked = false;
        self.ended = false;
        self.begin_groups(block);
        self.cc_hint = block
            .cc_hint
            .map(CcOp::decode)
            .filter(|op| Some(op.encode()) == block.cc_hint);
    }

    /// The header of the region member starting at `ip`.
    pub(super) fn head_of(&self, ip: u64) -> Option<Block> {
        self.heads.iter().find(|h| h.0 == ip).map(|h| h.1)
    }

    /// The chain slot serving exits to `target`, if a slot is free for it. Every direct
    /// exit may be linked (the rule of [`crate::cache::Cache::link`]): within the block's own
    /// linear page, or without paging, as is; to another page, behind the TLB check of
    /// [`Self::cross_page`].
    pub(super) fn slot_for(&mut self, target: u64) -> Option<usize> {
        if let Some(i) = self.slot_target.iter().position(|t| *t == Some(target)) {
            return Some(i);
        }
        let i = self.slot_target.iter().position(Option::is_none)?;
        self.slot_target[i] = Some(target);
        Some(i)
    }

    pub(super) fn translate_body(&mut self, block: &DecodedBlock) {
        let mut next_ip = 0;
        for (i, d) in block.insns.iter().enumerate() {
            self.insn_ip = d.insn.ip();
            self.index = i as u32;
            self.memo_here = self.memo_sites.contains(&self.insn_ip);
            next_ip = d.insn.next_ip();
            self.insn_next_ip = next_ip;
            let defer = !d.runtime && super::deferred::defers_gprs(&d.insn);
            if !defer {
                self.flush_gprs();
            }
            self.defer_gprs = defer;
            if d.runtime {
                // A runtime-class instruction the JIT does not run (see `translate`): hand it
                // back to the run loop.
                let ip = self.iconst(self.insn_ip);
                self.exit_next(ip, i as u32);
                return;
            }
            let _ = semantics::execute(self, &d.insn);
            if self.ended {
                return;
            }
        }
        self.flush_gprs();
        self.defer_gprs = false;
        self.exit_chain(next_ip, block.insns.len() as u32);
    }
}

/// The members of a region whose first instruction that touches an arithmetic flag reads
/// one (or keeps one, as INC and DEC keep CF): transfers to them hand the flags record on
/// in its variables, where storing it and loading it back cost a store and a load each and
/// put the store-to-load forwarding on the path to the flag's reader. Members that set the
/// flags first are left out: the variables would only serve the exits before that (a
/// memory access's fault exit), and would live across the transfer for them. Every
/// transfer into such a member defines the variables ([`JitEmitter::carry_flags`]), and
/// so does the way in from outside when the member is the entry ([`JitEmitter::translate`]).
fn members_reading_flags_first(blocks: &[DecodedBlock]) -> Vec<u64> {
    use iced_x86::RflagsBits;
    const ARITH: u32 = RflagsBits::OF
        | RflagsBits::SF
        | RflagsBits::ZF
        | RflagsBits::AF
        | RflagsBits::CF
        | RflagsBits::PF;
    blocks
        .iter()
        .filter(|b| {
            b.insns
                .iter()
                .map(|d| &d.insn)
                .find(|i| (i.rflags_read() | i.rflags_modified()) & ARITH != 0)
                .is_some_and(|i| {
                    i.rflags_read() & ARITH != 0 || i.rflags_modified() & ARITH != ARITH
                })
        })
        .filter_map(|b| b.insns.first().map(|d| d.insn.ip()))
        .collect()
}

/// Whether `insn`, first in its member, makes the flags it finds dead: an ALU instruction
/// that writes all six arithmetic flags whatever its operands and reads none (ADD, SUB, CMP,
/// AND, OR, XOR, TEST, NEG; not shifts, which keep them for a count of 0), with no memory
/// operand, so that nothing (no fault) can leave the block before it.
fn sets_flags_first(insn: &iced_x86::Instruction) -> bool {
    use iced_x86::Mnemonic::*;
    matches!(
        insn.mnemonic(),
        Add | Sub | Cmp | And | Or | Xor | Test | Neg
    ) && (0..insn.op_count()).all(|i| insn.op_kind(i) != OpKind::Memory)
}

#[cfg(test)]
mod tests {
    use crate::testutil::{asm, run64, run_both_regions, Outcome, CODE, DATA};
    use crane86_runtime::CpuMode;
    use iced_x86::code_asm::*;

    const DF: u64 = 1 << 10;

    /// Runs 64-bit `code` with registers `regs` on the interpreter and with regions (which
    /// must agree), and checks that the JIT compiled at least one region.
    fn run_region(code: &[u8], regs: &[(usize, u64)]) -> Outcome {
        let regs = regs.to_vec();
        let o = run_both_regions(CpuMode::Long64, code, move |cpu, _| {
            for &(r, v) in &regs {
                cpu.gpr[r] = v;
            }
        });
        assert!(o.regions > 0, "no region was compiled");
        o
    }

    /// A loop of 20 iterations through three blocks: STD in the header, CLD in one of the
    /// two blocks after it, and STOSB in both, which reads DF where the block starts. Each
    /// iteration stores its counter at RDI going up or down by DF; then, if `probe`, loads
    /// from `R8 + 8 * RCX`. Ends with ECX = 0 and DF set (the last iteration is odd). The
    /// loop's blocks turn hot within its first iterations, so that most run as a region.
    fn toggling_loop(probe: bool) -> Vec<u8> {
        asm(64, |a| {
            let mut top = a.create_label();
            let mut odd = a.create_label();
            a.mov(ecx, 20).unwrap();
            a.set_label(&mut top).unwrap();
            a.std().unwrap();
            a.test(ecx, 1).unwrap();
            a.jnz(odd).unwrap();
            a.cld().unwrap();
            a.set_label(&mut odd).unwrap();
            a.mov(al, cl).unwrap();
            a.stosb().unwrap();
            if probe {
                a.mov(rdx, qword_ptr(r8 + rcx * 8)).unwrap();
            }
            a.dec(ecx).unwrap();
            a.jnz(top).unwrap();
        })
    }

    #[test]
    fn the_direction_flag_written_in_a_region_reaches_its_members_and_exits() {
        // Also compiled block by block (`run64`), where only the exits can store it.
        for o in [
            run_region(&toggling_loop(false), &[(7, DATA + 0x80)]),
            run64(&toggling_loop(false), &[(7, DATA + 0x80)]),
        ] {
            check_toggled(&o);
        }
    }

    fn check_toggled(o: &Outcome) {
        assert!(o.fault.is_none());
        assert_eq!(o.r(1), 0);
        assert_eq!(o.flags() & DF, DF, "the last iteration leaves DF set");
        // The even counters go to 0x80 and step up, the odd ones to 0x81 and step down.
        assert_eq!(o.m(DATA + 0x80, 1), 2);
        assert_eq!(o.m(DATA + 0x81, 1), 1);
    }

    #[test]
    fn a_fault_in_a_region_member_sees_the_direction_flag_of_its_iteration() {
        // The probe reads the identity map's upper half from its start down, and leaves it
        // for a non-canonical address (#GP) when ECX = 3, an odd iteration: DF set there,
        // after the even one cleared it.
        let o = run_region(
            &toggling_loop(true),
            &[(7, DATA + 0x80), (8, 0xffff_8000_0000_0000 - 32)],
        );
        assert!(o.fault.is_some(), "the probe faults");
        assert_eq!(o.r(1), 3);
        assert_eq!(o.flags() & DF, DF);
    }

    #[test]
    fn a_member_reads_the_flags_another_member_set() {
        // The header's SHR sets CF to bit 0 of ECX (odd and even iterations alternate) and ZF
        // when ECX < 2; its JNZ leads to the SETB block, which reads that CF where it starts.
        // The last iteration goes through INC, which keeps CF.
        let code = asm(64, |a| {
            let mut top = a.create_label();
            let mut mid = a.create_label();
            a.mov(ecx, 10).unwrap();
            a.xor(ebx, ebx).unwrap();
            a.xor(esi, esi).unwrap();
            a.set_label(&mut top).unwrap();
            a.mov(eax, ecx).unwrap();
            a.shr(eax, 1).unwrap();
            a.jnz(mid).unwrap();
            a.inc(ebx).unwrap();
            a.set_label(&mut mid).unwrap();
            a.setb(dl).unwrap();
            a.movzx(edx, dl).unwrap();
            a.add(esi, edx).unwrap();
            a.dec(ecx).unwrap();
            a.jnz(top).unwrap();
        });
        let o = run_region(&code, &[]);
        // The odd counters, 9, 7, 5, 3 and 1.
        assert_eq!((o.r(3), o.r(6)), (1, 5));
    }

    /// The loop for [`members_that_read_the_flags_first_get_them_in_variables`]: the header
    /// compares ECX with 5 and leaves two members to read its CF (ADC) and its SF and OF
    /// (SETL) where they start; with `probe`, the
    /// first of them loads `[r8 + rcx * 8]` before its ADC.
    fn carried_flags_loop(probe: bool) -> Vec<u8> {
        asm(64, |a| {
            let mut top = a.create_label();
            let mut mid = a.create_label();
            let mut end = a.create_label();
            a.mov(ecx, 10).unwrap();
            a.xor(ebx, ebx).unwrap();
            a.xor(esi, esi).unwrap();
            a.set_label(&mut top).unwrap();
            a.cmp(ecx, 5).unwrap();
            a.jz(mid).unwrap();
            if probe {
                a.mov(rdx, qword_ptr(r8 + rcx * 8)).unwrap();
            }
            a.adc(ebx, 0).unwrap();
            a.dec(ecx).unwrap();
            a.jnz(top).unwrap();
            a.jmp(end).unwrap();
            a.set_label(&mut mid).unwrap();
            a.setl(dl).unwrap();
            a.movzx(edx, dl).unwrap();
            a.add(esi, edx).unwrap();
            a.dec(ecx).unwrap();
            a.jnz(top).unwrap();
            a.set_label(&mut end).unwrap();
            a.nop().unwrap();
        })
    }

    #[test]
    fn members_that_read_the_flags_first_get_them_in_variables() {
        // ECX from 10 down: the ADC member adds CF (ECX < 5) for 9, 8, 7, 6 (0) and 4, 3,
        // 2, 1 (1 each); the SETL member runs once, for ECX = 5 (not less: 0).
        let code = carried_flags_loop(false);
        let o = run_region(&code, &[]);
        assert_eq!((o.r(1), o.r(3), o.r(6)), (0, 4, 0));
        // Both members after the header read the header's flags first (ADC, SETL); the
        // header sets them first (CMP).
        let insns: Vec<_> = iced_x86::Decoder::with_ip(64, &code, CODE, 0)
            .into_iter()
            .collect();
        let jz = insns
            .iter()
            .find(|i| i.mnemonic() == iced_x86::Mnemonic::Je)
            .unwrap();
        let jnz = insns
            .iter()
            .find(|i| i.mnemonic() == iced_x86::Mnemonic::Jne)
            .unwrap();
        let (top, low, mid) = (
            jnz.near_branch_target(),
            jz.next_ip(),
            jz.near_branch_target(),
        );
        let ctx = crate::testutil::cpl0_ctx(CpuMode::Long64, false);
        let blocks: Vec<_> = [top, low, mid]
            .iter()
            .map(|&at| {
                let bytes = &code[(at - CODE) as usize..];
                crate::decode::decode_block(bytes, at, 4096, ctx, false)
            })
            .collect();
        assert_eq!(super::members_reading_flags_first(&blocks), vec![low, mid]);
    }

    #[test]
    fn a_member_that_did_not_touch_the_flags_hands_on_those_in_cpu_state() {
        // The header's CMP sets CF (ECX < 20); its JZ (never taken) and its fall-through
        // both lead to a member that only moves a register and jumps, which does not read
        // the flags first, so it starts with them in `CpuState`; its JMP into the ADC
        // member defines the variables from there, and the ADC reads CF through them.
        let code = asm(64, |a| {
            let mut top = a.create_label();
            let mut hop = a.create_label();
            let mut next = a.create_label();
            a.mov(ecx, 10).unwrap();
            a.xor(ebx, ebx).unwrap();
            a.set_label(&mut top).unwrap();
            a.cmp(ecx, 20).unwrap();
            a.jz(hop).unwrap();
            a.nop().unwrap();
            a.set_label(&mut hop).unwrap();
            a.mov(edx, ecx).unwrap();
            a.jmp(next).unwrap();
            a.int3().unwrap();
            a.set_label(&mut next).unwrap();
            a.adc(ebx, edx).unwrap();
            a.dec(ecx).unwrap();
            a.jnz(top).unwrap();
        });
        let o = run_region(&code, &[]);
        // 10 + 9 + ... + 1, plus one carry each time.
        assert_eq!((o.r(1), o.r(3)), (0, 55 + 10));
    }

    #[test]
    fn a_fault_in_a_member_with_carried_flags_sees_them() {
        // The probe leaves the canonical half at ECX = 3, before the ADC: RFLAGS must be
        // the header's CMP of 3 with 5 (CF and SF set), which only the variables held.
        let o = run_region(
            &carried_flags_loop(true),
            &[(8, 0xffff_8000_0000_0000 - 32)],
        );
        assert!(o.fault.is_some(), "the probe faults");
        assert_eq!(o.r(1), 3);
        const CF: u64 = 1;
        const SF: u64 = 1 << 7;
        assert_eq!(o.flags() & (CF | SF), CF | SF);
    }

    #[test]
    fn a_member_that_sets_every_flag_first_is_entered_without_storing_them() {
        // The header starts with AND, so transfers to it skip the flags record's stores;
        // 600 iterations run past the harness's budget of 1000 instructions per entry, so
        // some transfers stop there for the run loop (which stores the record).
        let code = asm(64, |a| {
            let mut top = a.create_label();
            let mut even = a.create_label();
            a.mov(ecx, 600).unwrap();
            a.xor(ebx, ebx).unwrap();
            a.set_label(&mut top).unwrap();
            a.and(eax, 0xffff).unwrap();
            a.add(eax, ecx).unwrap();
            a.test(eax, 1).unwrap();
            a.jz(even).unwrap();
            a.inc(ebx).unwrap();
            a.set_label(&mut even).unwrap();
            a.dec(ecx).unwrap();
            a.jnz(top).unwrap();
        });
        let o = run_region(&code, &[(0, 0)]);
        assert_eq!(o.r(1), 0);
        // EAX after each iteration is the sum 600 + 599 + ... so far (under 2^18, and kept
        // to 16 bits); compare with the same computed here.
        let (mut acc, mut odd) = (0u64, 0u64);
        for c in (1..=600u64).rev() {
            acc = (acc & 0xffff) + c;
            odd += acc & 1;
        }
        assert_eq!((o.r(0), o.r(3)), (acc, odd));
    }
}
