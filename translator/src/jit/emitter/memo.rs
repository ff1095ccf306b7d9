//! Load translations a region remembers across its iterations, for table lookups.
//!
//! In a loop the inline TLB check sits on the critical path of every load whose address
//! depends on the previous iteration: index the TLB by the address, load the entry's tag and
//! addend, and only then the data. A table lookup indexed by a running value (CRC-32 by
//! byte, Huffman and other decoding tables) is such a chain, and its loop runs at the speed
//! of that latency. A *memo* keeps, per such load site of a region, the page and addend of
//! the first translation the site found in the TLB, in variables that live across the
//! region's iterations. While an access stays inside that page the site loads from
//! `(base + addend) + index + disp`, one host addressing mode whose only input that waits
//! on the previous iteration is the index, as in the guest's own code (the compare with the
//! page and its predicted branch sit beside it); otherwise it checks the TLB as before. A
//! miss into the neighbouring page (a table across a page boundary) makes the memo hold
//! both pages: from then on the site loads through both pages' addends and keeps the value
//! of the page the access is in, with a compare and a select after the loads. (Which half
//! of the table an index falls in is as random as the index: a branch mispredicted half the
//! time, and choosing the addend before the load put three steps on the data's path, 1.5x
//! the one-page loop's time on the in-guest CRC-32; the two loads cost 1.15x.) Any other
//! miss gives the memo up for the rest of the function's run ([`RETIRED`]).
//!
//! # Which loads get one
//! Only table lookups, where the page is known to stay: [`memo_sites`] picks the
//! instructions whose base register (if any) is RSP or unchanged in the region and whose
//! index was last written in the block by a MOVZX from a byte (at most 256 elements).
//! Memos on every load made the kernel's LZMA decoder and gzip's match search slower (10-40%
//! per block): where the page keeps changing a memo costs a mispredicted branch on top of
//! the TLB check, and where the loop runs few iterations per entry it only adds work.
//!
//! # Why a remembered translation stays right
//! A memo lives only while the region's function runs: it starts invalid at the function's
//! entry, and every exit (to the run loop, a chained block, a fault) leaves it behind.
//! Inside the function, TLB entries change only through calls out of generated code. The
//! memory slow paths (`load_slow`, `store_slow`) fill and evict entries, and the walks they
//! make may take write tags away from a page that became a paging structure
//! (`tlb_protect_phys`); none of that takes a read right away, and an evicted translation
//! stays the translation the paging structures gave, as it would in a hardware TLB until the
//! guest invalidates it (INVLPG, a CR3 write, which are runtime-class and never inside a
//! region). Every other call (the FPU and SIMD helpers, the runtime-instruction helper)
//! forgets all memos, being free to do more. Only loads have memos: a store memo would have
//! to be dropped at every slow path, whose walk may protect its page.
//!
//! # Page-crossing accesses
//! A memo matches when `addr - page < limit`, unsigned, with `limit = 4097 - size` once
//! valid: the whole access lies in the page. An invalid memo has `limit = 0`, which no
//! address matches, so its other variables need no particular value. Holding two pages,
//! `page` is the lower one, `limit` is 0 (the one-page check fails, predictably) and
//! `limit2 = 8193 - size` bounds the access to both pages; an access that crosses from one
//! into the other is told apart by its offset and takes the TLB's slow path, which handles
//! crossings.
//!
//! # The other page's load
//! A two-page hit also loads through the other page's addend: the host page right after
//! the lower page's frame, or right before the upper page's. The memo takes both pages only
//! when those host pages lie inside guest RAM (`CpuState::ram_host`, compared when it
//! extends), so that load reads some guest RAM, whose value is dropped, and never a guard
//! page or other host memory (test
//! `a_table_whose_second_page_is_the_first_frame_of_ram_is_read_without_two_pages`).

use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::{
    Block, BlockArg, InstBuilder, Opcode, StackSlot, StackSlotData, StackSlotKind, Value,
};
use cranelift_frontend::Variable;

use iced_x86::{InstructionInfoFactory, Mnemonic, OpAccess, OpKind, Register};

use super::{off, JitEmitter, I64};
use crate::decode::DecodedBlock;

/// Load sites per region that get a memo: each costs three variables live across the loop.
pub(super) const MEMOS: usize = 4;

/// A load site's memo: one remembered translation.
#[derive(Clone, Copy, Debug)]
pub(super) struct Memo {
    /// The linear page the translation is for; 0 until the site first remembers one (and
    /// for page 0), [`RETIRED`] once it gave up.
    page: Variable,
    /// Host minus linear address for that page.
    addend: Variable,
    /// `4097 - size` while valid with one page, 0 otherwise.
    limit: Variable,
    /// Two-page mode, in a stack slot of the function: the addend of the upper page at
    /// offset [`ADDEND2`] (`page` is then the lower one), and at [`LIMIT2`] `8193 - size`
    /// while the memo holds two pages, 0 otherwise. Out of variables, since only two-page
    /// hits read them: as variables they were two more values live around every loop, which
    /// the register allocator spilled and stored again on each iteration.
    slot: StackSlot,
}

/// Where [`Memo::slot`] keeps the upper page's addend.
const ADDEND2: i32 = 0;
/// Where [`Memo::slot`] keeps the two-page limit.
const LIMIT2: i32 = 8;

/// The page value of a memo that missed outside the pages it holds: it keeps checking the
/// TLB for the rest of the run of its function. Re-remembering the new page instead would
/// make a site whose accesses keep changing pages branch at random, a misprediction each
/// time (the in-guest CRC-32 ran 1.3x longer than with no memo when its stack table
/// straddled a page boundary, before memos could hold two pages).
const RETIRED: i64 = 1;

impl JitEmitter<'_, '_> {
    /// Declares the region's memos, invalid, at the current point (the function's entry,
    /// before the first member header): one per site in `sites`, at most [`MEMOS`]. Each
    /// memo costs a stack slot and its invalidation at the entry and at every call that
    /// forgets memos, so a region makes no more than its sites can use.
    pub(super) fn start_memos(&mut self, sites: usize) {
        let zero = self.iconst(0);
        for _ in 0..sites.min(MEMOS) {
            let m = Memo {
                page: self.b.declare_var(I64),
                addend: self.b.declare_var(I64),
                limit: self.b.declare_var(I64),
                slot: self.b.create_sized_stack_slot(StackSlotData::new(
                    StackSlotKind::ExplicitSlot,
                    16,
                    3,
                )),
            };
            for v in [m.page, m.addend, m.limit] {
                self.b.def_var(v, zero);
            }
            self.set_two(m, LIMIT2, zero);
            self.memos.push(m);
        }
    }

    /// Invalidates every memo: a call that may change TLB entries in any way is coming.
    pub(super) fn forget_memos(&mut self) {
        if self.memos.is_empty() {
            return;
        }
        let zero = self.iconst(0);
        for m in self.memos.clone() {
            self.b.def_var(m.limit, zero);
            self.set_two(m, LIMIT2, zero);
        }
    }

    /// A two-page field of memo `m`'s slot ([`ADDEND2`], [`LIMIT2`]).
    fn two(&mut self, m: Memo, at: i32) -> Value {
        self.b.ins().stack_load(I64, I64, m.slot, at)
    }

    fn set_two(&mut self, m: Memo, at: i32, v: Value) {
        self.b.ins().stack_store(I64, v, m.slot, at);
    }

    /// The next load site's memo, if one is left.
    pub(super) fn next_memo(&mut self) -> Option<Memo> {
        let m = self.memos.get(self.memos_used).copied();
        self.memos_used += 1;
        m
    }

    /// Counts a memo check's `hit` (with `--stats`) as an inline TLB hit and a memo hit.
    fn count_memo_hit(&mut self, hit: Value) {
        if self.chain.count {
            self.count_hit(hit, off::JIT_TLB_HITS);
            self.count_hit(hit, off::JIT_MEMO_HITS);
        }
    }

    /// The check of a load site with memo `m`, shaped like [`JitEmitter::tlb_check`]: the
    /// returned fast block is reached after a TLB hit, with the entry's addend (returned),
    /// the cold slow block runs the slow path. A memo hit loads by itself and jumps to
    /// `merge` with the value, so that its host address is formed in the load's block, as
    /// one host addressing mode.
    pub(super) fn memo_check(
        &mut self,
        m: Memo,
        addr: Value,
        size: u32,
        merge: Block,
    ) -> (Block, Block, Value) {
        let page = self.b.use_var(m.page);
        let limit = self.b.use_var(m.limit);
        let addend = self.b.use_var(m.addend);
        let sum = self.split_sum(addr);
        let offset = self.offset_in(sum, page);
        let hit = self.b.ins().icmp(IntCC::UnsignedLessThan, offset, limit);
        self.count_memo_hit(hit);
        let one = self.b.create_block();
        let two = self.b.create_block();
        self.b.ins().brif(hit, one, &[], two, &[]);
        self.b.seal_block(one);
        self.b.seal_block(two);
        self.b.switch_to_block(one);
        let base = self.rebased_base(sum, addend);
        self.load_memo_hit(sum, base, size, merge);
        // Two-page mode (the one-page check above never matches then, `limit` being 0, so
        // its branch stays predicted).
        self.b.switch_to_block(two);
        // `page` is the lower page now, `limit2 = 8193 - size`: the access lies in the two
        // pages, and must not cross from one into the other (the TLB's slow path handles
        // that), which `crosses` tells for accesses of more than one byte.
        let limit2 = self.two(m, LIMIT2);
        let addend2 = self.two(m, ADDEND2);
        let inside = self.b.ins().icmp(IntCC::UnsignedLessThan, offset, limit2);
        let either = if size > 1 {
            let from_end = self.b.ins().iadd_imm_s(offset, -(4097 - i64::from(size)));
            let apart = self.b.ins().icmp_imm_s(
                IntCC::UnsignedGreaterThanOrEqual,
                from_end,
                i64::from(size - 1),
            );
            self.b.ins().band(inside, apart)
        } else {
            inside
        };
        self.count_memo_hit(either);
        let both_hit = self.b.create_block();
        let check = self.b.create_block();
        self.b.ins().brif(either, both_hit, &[], check, &[]);
        self.b.seal_block(both_hit);
        self.b.seal_block(check);
        // Load through both pages' addends and keep the right value: the loads wait only on
        // the index, and the choice (one compare beside them) comes after, where a choice of
        // the address came before the load and lengthened the data's path by three steps.
        // The other page's load reads the host page next to that page's frame, inside RAM
        // (checked when the memo took both pages) and side-effect free.
        self.b.switch_to_block(both_hit);
        let upper = self
            .b
            .ins()
            .icmp_imm_s(IntCC::UnsignedGreaterThanOrEqual, offset, 4096);
        let base1 = self.rebased_base(sum, addend);
        let base2 = self.rebased_base(sum, addend2);
        let v1 = self.memo_load(sum, base1, size);
        let v2 = self.memo_load(sum, base2, size);
        let v = self.b.ins().select(upper, v2, v1);
        self.b.ins().jump(merge, &[BlockArg::Value(v)]);
        // The TLB's path: `fast` gets the entry's addend, as after a plain TLB check.
        let fast = self.b.create_block();
        let fast_addend = self.b.append_block_param(fast, I64);
        self.b.switch_to_block(check);
        let (found, slow, tlb_addend) = self.tlb_check(addr, size, 0);
        self.b.switch_to_block(found);
        let fresh = self.b.ins().icmp_imm_s(IntCC::Equal, page, 0);
        let remember = self.b.create_block();
        let missed = self.b.create_block();
        self.b.ins().brif(fresh, remember, &[], missed, &[]);
        self.b.seal_block(remember);
        self.b.seal_block(missed);
        // The TLB hit proves the whole access lies in the page of `addr`.
        self.b.switch_to_block(remember);
        let new_page = self.b.ins().band_imm_s(addr, !0xfffi64);
        let one = self.iconst(4097 - u64::from(size));
        self.b.def_var(m.page, new_page);
        self.b.def_var(m.addend, tlb_addend);
        self.b.def_var(m.limit, one);
        self.b.ins().jump(fast, &[BlockArg::Value(tlb_addend)]);
        // A one-page memo that missed into a neighbouring page (a table across a page
        // boundary) holds both pages from now on; any other miss retires the memo.
        self.b.switch_to_block(missed);
        let new_page = self.b.ins().band_imm_s(addr, !0xfffi64);
        let single = self
            .b
            .ins()
            .icmp_imm_s(IntCC::Equal, limit, 4097 - i64::from(size));
        let distance = self.b.ins().isub(new_page, page);
        let above = self.b.ins().icmp_imm_s(IntCC::Equal, distance, 4096);
        let below = self.b.ins().icmp_imm_s(IntCC::Equal, distance, -4096);
        let next_to = self.b.ins().bor(above, below);
        let pair = self.b.ins().band(single, next_to);
        let both = self.b.create_block();
        let retire = self.b.create_block();
        self.b.ins().brif(pair, both, &[], retire, &[]);
        self.b.seal_block(both);
        self.b.switch_to_block(both);
        let addend = self.b.use_var(m.addend);
        let low_page = self.b.ins().select(above, page, new_page);
        let low_addend = self.b.ins().select(above, addend, tlb_addend);
        let high_addend = self.b.ins().select(above, tlb_addend, addend);
        let zero = self.iconst(0);
        let inside_ram = self.neighbours_in_ram(low_page, low_addend, high_addend);
        let pair_ok = self.b.create_block();
        self.b.ins().brif(inside_ram, pair_ok, &[], retire, &[]);
        self.b.seal_block(pair_ok);
        self.b.switch_to_block(pair_ok);
        let two = self.iconst(8193 - u64::from(size));
        self.b.def_var(m.page, low_page);
        self.b.def_var(m.addend, low_addend);
        self.set_two(m, ADDEND2, high_addend);
        self.set_two(m, LIMIT2, two);
        self.b.def_var(m.limit, zero);
        self.b.ins().jump(fast, &[BlockArg::Value(tlb_addend)]);
        self.b.seal_block(retire);
        self.b.switch_to_block(retire);
        let retired = self.iconst(RETIRED as u64);
        let zero = self.iconst(0);
        self.b.def_var(m.page, retired);
        self.b.def_var(m.limit, zero);
        self.set_two(m, LIMIT2, zero);
        self.b.ins().jump(fast, &[BlockArg::Value(tlb_addend)]);
        self.b.seal_block(fast);
        (fast, slow, fast_addend)
    }

    /// Whether the host pages a two-page hit may also read are RAM: the one after the lower
    /// page's frame and the one before the upper page's (see "The other page's load" above),
    /// for the pages at linear `low_page` and `low_page + 4096` with those addends.
    fn neighbours_in_ram(
        &mut self,
        low_page: Value,
        low_addend: Value,
        high_addend: Value,
    ) -> Value {
        let low_host = self.b.ins().iadd(low_page, low_addend);
        let high_host = self.b.ins().iadd(low_page, high_addend);
        let high_host = self.b.ins().iadd_imm_s(high_host, 4096);
        let ram_start = self.load_state(off::RAM_HOST);
        let ram_end = self.load_state(off::RAM_HOST + 8);
        // Both frames are RAM (their TLB entries say so), so neither difference wraps.
        let room_after = self.b.ins().isub(ram_end, low_host);
        let room_before = self.b.ins().isub(high_host, ram_start);
        let after = self
            .b
            .ins()
            .icmp_imm_s(IntCC::UnsignedGreaterThanOrEqual, room_after, 8192);
        let before = self
            .b
            .ins()
            .icmp_imm_s(IntCC::UnsignedGreaterThanOrEqual, room_before, 4096);
        self.b.ins().band(after, before)
    }

    /// `addr` as `base + index + disp`, as [`crate::semantics::operands::effective_address`]
    /// builds a 64-bit address: `base` is then the operand's base register (steady in the
    /// region, [`memo_sites`]) and `index` its scaled index, the part that waits on the
    /// previous iteration. Any other shape is all `index`. Only the sums' grouping changes
    /// below (mod 2^64), so a shape misjudged costs time, never correctness.
    fn split_sum(&self, addr: Value) -> Sum {
        let (x, disp) = match self.def_of(addr) {
            Some((Opcode::Iadd, &[x, y])) => match self.const_of(y) {
                Some(k) => (x, k as i64),
                None => (addr, 0),
            },
            _ => (addr, 0),
        };
        match self.def_of(x) {
            Some((Opcode::Iadd, &[base, index])) => Sum {
                base: Some(base),
                index,
                disp,
            },
            _ => Sum {
                base: None,
                index: x,
                disp,
            },
        }
    }

    /// `sum - page`, as `index + (base + disp - page)`: the part in brackets does not wait on
    /// the index, so the offset is one add (or an LEA with the index's scale) after it.
    fn offset_in(&mut self, sum: Sum, page: Value) -> Value {
        let steady = match sum.base {
            Some(b) => self.b.ins().iadd_imm_s(b, sum.disp),
            None => self.iconst(sum.disp as u64),
        };
        let steady = self.b.ins().isub(steady, page);
        self.b.ins().iadd(sum.index, steady)
    }

    /// `base + addend`: what a memo hit adds the index and displacement to.
    fn rebased_base(&mut self, sum: Sum, addend: Value) -> Value {
        match sum.base {
            Some(b) => self.b.ins().iadd(b, addend),
            None => addend,
        }
    }

    /// The load of a memo hit at `rebased + index + disp` (one addressing mode: the data's
    /// path is the index and the load, as in the guest's own code), then a jump to `merge`.
    fn load_memo_hit(&mut self, sum: Sum, rebased: Value, size: u32, merge: Block) {
        let v = self.memo_load(sum, rebased, size);
        self.b.ins().jump(merge, &[BlockArg::Value(v)]);
    }

    /// The load at `rebased + index + disp`.
    fn memo_load(&mut self, sum: Sum, rebased: Value, size: u32) -> Value {
        let host = self.b.ins().iadd(rebased, sum.index);
        let host = self.b.ins().iadd_imm_s(host, sum.disp);
        self.load_host(host, size)
    }
}

/// A load address split as `base + index + disp` ([`JitEmitter::split_sum`]).
#[derive(Clone, Copy, Debug)]
struct Sum {
    base: Option<Value>,
    index: Value,
    disp: i64,
}

/// The bit of general register `r`'s full register (RAX = bit 0), if it is one.
fn gpr_bit(r: Register) -> Option<u16> {
    let full = r.full_register();
    full.is_gpr64()
        .then(|| 1 << (full as u32 - Register::RAX as u32))
}

/// The addresses of the instructions of a region (`blocks`, entry first) whose loads get a
/// memo (see the module documentation).
pub(super) fn memo_sites(blocks: &[DecodedBlock]) -> Vec<u64> {
    let mut f = InstructionInfoFactory::new();
    let rsp = gpr_bit(Register::RSP).unwrap_or(0);
    // Registers some instruction of the region changes.
    let mut varies = 0u16;
    for d in blocks.iter().flat_map(|b| &b.insns) {
        for u in f.info(&d.insn).used_registers() {
            let writes = matches!(
                u.access(),
                OpAccess::Write
                    | OpAccess::CondWrite
                    | OpAccess::ReadWrite
                    | OpAccess::ReadCondWrite
            );
            if let Some(bit) = gpr_bit(u.register()).filter(|_| writes) {
                varies |= bit;
            }
        }
    }
    let steady = |r: Register| match gpr_bit(r) {
        None => true, // none, RIP or EIP
        Some(bit) => bit == rsp || varies & bit == 0,
    };
    let mut sites = Vec::new();
    for b in blocks {
        for (i, d) in b.insns.iter().enumerate() {
            let info = f.info(&d.insn);
            let mems = info.used_memory();
            let ok = !mems.is_empty()
                && mems
                    .iter()
                    .all(|m| steady(m.base()) && byte_index(&b.insns[..i], m.index()));
            if ok {
                sites.push(d.insn.ip());
            }
        }
    }
    sites
}

/// Whether index register `r` was last written, among `before` (the instructions before
/// the load in its block), by a MOVZX from a byte.
fn byte_index(before: &[crate::decode::DecodedInsn], r: Register) -> bool {
    let Some(bit) = gpr_bit(r) else {
        return false;
    };
    let mut f = InstructionInfoFactory::new();
    for d in before.iter().rev() {
        let writes = f.info(&d.insn).used_registers().iter().any(|u| {
            gpr_bit(u.register()) == Some(bit)
                && !matches!(
                    u.access(),
                    OpAccess::Read | OpAccess::CondRead | OpAccess::None
                )
        });
        if writes {
            let insn = &d.insn;
            return insn.mnemonic() == Mnemonic::Movzx
                && match insn.op_kind(1) {
                    OpKind::Register => insn.op_register(1).size() == 1,
                    _ => insn.memory_size().size() == 1,
                };
        }
    }
    false
}
