//! The ends of a block's code: writing guest state back, retiring instructions, and the
//! transfers out of the block (chained through a slot, looked up, into a region member, or
//! back to the run loop).

use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::{Block, BlockArg, InstBuilder, Value};

use crane86_runtime::BlockKey;

use super::super::helpers::KEY_FROM_STATE;
use super::super::shims::Helper;
use super::super::{off, state_flags, EXIT_FAULT, EXIT_NEXT};
use super::{JitEmitter, Slot, I64};

/// What an exit stores back to `CpuState` (see [`JitEmitter::write_back`]): the registers
/// whose writes are pending, whether the flags record is, and the flags'
/// operation when it is known at translation time. Fault exits storing the same share code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct WriteBack {
    gprs: u16,
    cc: bool,
    cc_static: Option<u64>,
}

/// The mode an exit's target runs in, which its lookup is keyed by.
#[derive(Clone, Copy, Debug)]
pub(super) enum Dest {
    /// The mode bits and CS base of this key: the block's own, or those a SYSCALL or SYSRET
    /// leads to ([`BlockKey::after_fast_call`]). The jump cache serves such exits.
    Mode(BlockKey),
    /// Whatever the CPU state holds after a runtime-class instruction
    /// ([`KEY_FROM_STATE`]).
    FromState,
}

impl JitEmitter<'_, '_> {
    /// Stores every changed piece of guest state back to CpuState. General registers and
    /// the rest of RFLAGS need nothing, [`crate::emit::Emit::set_gpr`] and
    /// [`crate::emit::Emit::set_rflags_rest`] writing them through, but for register writes
    /// still pending ([`super::deferred`]).
    pub(super) fn write_back(&mut self) {
        self.store_pending_gprs();
        if self.cc_state == Slot::Dirty {
            for i in 0..4 {
                let v = match (i, self.cc_static) {
                    (0, Some(op)) => self.iconst(op.encode()),
                    _ => self.b.use_var(self.cc[i]),
                };
                self.store_cc(v, i);
            }
        }
    }

    /// Before a transfer to a member that has the flags record in its variables
    /// (`flags_carried_to`): defines all four on this path, with what `CpuState` holds if
    /// this member has not touched them and with the constant operation if it is known
    /// here. Only variables are defined, not `cc_state` changed: the emitter is in one arm
    /// of a branch, and the other arm still has the state from before it.
    pub(super) fn carry_flags(&mut self) {
        match self.cc_state {
            Slot::Unloaded => {
                for i in 0..4 {
                    let v = self.load_cc(i);
                    self.b.def_var(self.cc[i], v);
                }
            }
            Slot::Clean | Slot::Dirty => {
                if let Some(op) = self.cc_static {
                    let v = self.iconst(op.encode());
                    self.b.def_var(self.cc[0], v);
                }
            }
        }
    }

    /// Retires `n` instructions and, on an exit that may close a cycle (`back`, see
    /// [`Self::may_loop`]), branches to a new cold block (returned, not sealed: the caller
    /// may add predecessors) when the vCPU must go back to the run loop: the budget ran out
    /// or an exit was requested; otherwise execution goes on in a new current block. Two
    /// compare-and-branches, which the host fuses and predicts, rather than one branch on a
    /// combined condition.
    ///
    /// A forward exit only retires: every cycle of guest code has an exit that goes back (the
    /// one out of its block at the highest address), so the budget (the next timer deadline,
    /// in instructions) and a request (from another thread, or a device access of the code
    /// itself) are seen within one turn of whatever loop the code is in, and a run of
    /// forward exits, which never revisits an address, is bounded by the code's size. The
    /// budget's compare and branch on every forward exit were 10 bytes of each hot exit's
    /// code; the request's load, test and branch there were 5% of the shell loop.
    pub(super) fn retire_and_check(&mut self, n: u32, back: bool) -> Option<Block> {
        if !back {
            self.retire(n);
            return None;
        }
        // The budget is compared before the subtraction (`budget - n <= 0` is
        // `budget <= n`): `cmp $n, reg` where the subtraction's result needed a `test` of
        // its own.
        let bud = self.b.use_var(self.budget);
        let exhausted = self
            .b
            .ins()
            .icmp_imm_s(IntCC::SignedLessThanOrEqual, bud, i64::from(n));
        self.retire(n);
        let stop = self.b.create_block();
        self.b.set_cold_block(stop);
        let more = self.b.create_block();
        self.b.ins().brif(exhausted, stop, &[], more, &[]);
        self.b.seal_block(more);
        self.b.switch_to_block(more);
        let req = self
            .b
            .ins()
            .uload32(state_flags(), self.cpu, off::EXIT_REQUEST);
        let go = self.b.create_block();
        self.b.ins().brif(req, stop, &[], go, &[]);
        self.b.seal_block(go);
        self.b.switch_to_block(go);
        Some(stop)
    }

    /// The entry check of a block that crosses into `page` ([`crate::jit::SecondPage`]):
    /// unless the TLB entry of that page, at the block's privilege, allows fetches with the
    /// addend the block was decoded with, leave before the first instruction (nothing
    /// retired, at the block's address) and ask for the block to be interpreted. The run
    /// loop's lookup re-checks the page first, so a block whose page now maps elsewhere is
    /// dropped, and one whose TLB entry was only missing runs (its walk fills the entry for
    /// the next entry): a failed check always makes progress.
    pub(super) fn second_page_guard(&mut self, page: crate::jit::SecondPage, ip: u64) {
        use crane86_runtime::state::PendingFault;
        let (exec, addend) = self.fetch_tlb_entry(page.linear);
        let want_page = self.iconst(page.linear & !0xfff);
        let want_addend = self.iconst(page.addend);
        let differs = self.differs(&[(exec, want_page), (addend, want_addend)]);
        let (fail, ok) = self.split(differs);
        self.b.switch_to_block(fail);
        let rip = self.iconst(ip);
        self.store_state(rip, off::RIP);
        let z = self.iconst(0);
        self.store_state(z, off::LINK);
        let retry = self.b.ins().iconst(
            cranelift_codegen::ir::types::I32,
            i64::from(PendingFault::RECHECK),
        );
        let pending_at = off::FAULT + std::mem::offset_of!(PendingFault, pending) as i32;
        self.b
            .ins()
            .store(state_flags(), retry, self.cpu, pending_at);
        self.ret(EXIT_FAULT);
        self.b.switch_to_block(ok);
    }

    /// Whether an exit of the current instruction to `target` may close a cycle: it goes back
    /// (to this instruction or before it). A cycle of blocks always has such an edge, the one
    /// out of its block at the highest address.
    pub(super) fn may_loop(&self, target: u64) -> bool {
        target <= self.insn_ip
    }

    /// Subtracts `n` retired instructions from the budget.
    pub(super) fn retire(&mut self, n: u32) {
        let bud = self.b.use_var(self.budget);
        // A subtraction: Cranelift encodes `iadd` of a negative constant with a 32-bit
        // immediate (`add $-9, %rsi` in 7 bytes), `isub` of a small one with a byte (4).
        let n = self.iconst(u64::from(n));
        let nb = self.b.ins().isub(bud, n);
        self.b.def_var(self.budget, nb);
    }

    /// Returns to the run loop with exit code `code`, leaving the budget in CpuState.
    pub(super) fn ret(&mut self, code: i64) {
        let bud = self.b.use_var(self.budget);
        self.store_state(bud, off::BUDGET);
        let c = self.b.ins().iconst(I64, code);
        self.b.ins().return_(&[c]);
    }

    /// Exit to the run loop, continuing at `rip`, after `n` instructions.
    pub(super) fn exit_next(&mut self, rip: Value, n: u32) {
        self.write_back();
        self.store_state(rip, off::RIP);
        self.retire(n);
        let z = self.iconst(0);
        self.store_state(z, off::LINK);
        self.ret(EXIT_NEXT);
    }

    /// Exit with the fault in `cpu.fault`, at the current instruction: a jump to the
    /// function's fault exit for what [`Self::write_back`] has to store here, with the
    /// instruction's address and the count of instructions retired before it.
    ///
    /// Every memory access has such an exit on its slow path, about ten IR instructions
    /// each when each had its own; the accesses of a block mostly find the same things to
    /// store, and share one exit. That took 17% off the boot's cold code (compile time did
    /// not change measurably).
    pub(super) fn exit_fault(&mut self) {
        let kind = self.write_back_kind();
        let found = self.fault_exits.iter().find(|(k, _)| *k == kind);
        let (exit, new) = match found {
            Some(&(_, b)) => (b, false),
            None => {
                let b = self.b.create_block();
                self.b.set_cold_block(b);
                self.b.append_block_param(b, I64);
                self.b.append_block_param(b, I64);
                self.fault_exits.push((kind, b));
                (b, true)
            }
        };
        let ip = self.iconst(self.insn_ip);
        let n = self.iconst(u64::from(self.index));
        self.b
            .ins()
            .jump(exit, &[BlockArg::Value(ip), BlockArg::Value(n)]);
        if !new {
            return;
        }
        // The body reads the guest state's variables, whose values the predecessors give
        // (all of which store the same ones: `kind`); it is sealed with the function.
        self.b.switch_to_block(exit);
        let (ip, n) = (self.b.block_params(exit)[0], self.b.block_params(exit)[1]);
        self.write_back();
        self.store_state(ip, off::RIP);
        let bud = self.b.use_var(self.budget);
        let bud = self.b.ins().isub(bud, n);
        self.store_state(bud, off::BUDGET);
        let z = self.iconst(0);
        self.store_state(z, off::LINK);
        let c = self.b.ins().iconst(I64, EXIT_FAULT);
        self.b.ins().return_(&[c]);
    }

    /// What [`Self::write_back`] stores at this point of the code.
    fn write_back_kind(&self) -> WriteBack {
        WriteBack {
            gprs: self.gpr_pending,
            cc: self.cc_state == Slot::Dirty,
            cc_static: self.cc_static.map(|op| op.encode()),
        }
    }

    /// Seals the fault exits, whose predecessors are all known once the function is
    /// translated.
    pub fn seal_fault_exits(&mut self) {
        for &(_, b) in &self.fault_exits {
            self.b.seal_block(b);
        }
    }

    /// Exit to a known target after `n` instructions of the current member: jump to its
    /// header if it is a member of the region, else tail-call its code if a chain slot holds
    /// it (or [`super::helpers::jump_lookup`] finds it) and the vCPU may go on.
    pub(super) fn exit_chain(&mut self, target: u64, n: u32) {
        if let Some(head) = self.head_of(target) {
            return self.loop_back(head, target, n);
        }
        self.write_back();
        match self.slot_for(target) {
            Some(slot) => self.chain_tail(None, [(target, slot), (target, slot)], n),
            None => {
                let rip = self.iconst(target);
                let back = self.may_loop(target);
                self.jump_tail_checked(rip, n, Dest::Mode(self.chain.key), back);
            }
        }
    }

    /// The linear address of `target` if it lies on another linear page than the block
    /// under paging: an exit there is chained only while the TLB entry of its page allows
    /// fetches with the addend the slot was linked with (see [`crate::jit::SlotWords`]).
    pub(super) fn cross_page(&self, target: u64) -> Option<u64> {
        let key = self.chain.key;
        if !key.paging() {
            return None;
        }
        let mut linear = key.cs_base.wrapping_add(target);
        if key.mode() != crane86_runtime::CpuMode::Long64 {
            linear &= 0xffff_ffff;
        }
        (linear & !0xfff != key.linear() & !0xfff).then_some(linear)
    }

    /// The end of an exit whose target has no chain slot, once state is written back: retire
    /// `n` instructions and, unless the vCPU must go back to the run loop, tail-call the
    /// target's code if [`super::helpers::jump_lookup`] finds it.
    pub(super) fn jump_tail(&mut self, rip: Value, n: u32) {
        self.jump_tail_keyed(rip, n, Dest::Mode(self.chain.key));
    }

    /// [`Self::jump_tail`] with the target's mode given.
    pub(super) fn jump_tail_keyed(&mut self, rip: Value, n: u32, dest: Dest) {
        self.jump_tail_checked(rip, n, dest, true);
    }

    /// [`Self::jump_tail_keyed`], checking the budget and exit requests only when the exit
    /// may go `back` ([`Self::retire_and_check`]).
    fn jump_tail_checked(&mut self, rip: Value, n: u32, dest: Dest, back: bool) {
        let stop = self.retire_and_check(n, back);
        self.lookup_and_chain(rip, dest);
        if let Some(stop) = stop {
            self.b.ins().jump(stop, &[]);
            self.b.seal_block(stop);
            self.b.switch_to_block(stop);
        }
        self.store_state(rip, off::RIP);
        let z = self.iconst(0);
        self.store_state(z, off::LINK);
        self.ret(EXIT_NEXT);
    }

    /// Tail-calls the code [`super::helpers::jump_lookup`] finds for `rip` in mode `dest`, if
    /// the cache has a lookup table, checking the block's jump cache first for a known mode
    /// ([`super::jump_cache`]); execution goes on in the current block when it finds none.
    pub(super) fn lookup_and_chain(&mut self, rip: Value, dest: Dest) {
        if self.chain.jump_table == 0 {
            return;
        }
        let cached = match dest {
            Dest::Mode(k) if self.uses_jump_cache() => Some(k),
            _ => None,
        };
        if let Some(k) = cached {
            self.jump_cache_check(rip, k);
            // Most indirect branches keep their target: the lookup after a miss is cold,
            // and with it everything it leads to (`propagate_cold`).
            if let Some(miss) = self.b.current_block() {
                self.b.set_cold_block(miss);
            }
        }
        let (cs_base, bits) = match dest {
            Dest::Mode(k) => (k.cs_base, k.bits),
            // `jump_lookup` reads neither.
            Dest::FromState => (0, KEY_FROM_STATE),
        };
        let cs_base = self.iconst(cs_base);
        let bits = self.iconst(bits);
        let table = self.iconst(self.chain.jump_table);
        let code = self
            .call_helper(Helper::JumpLookup, &[rip, cs_base, bits, table])
            .expect("jump_lookup returns the code");
        let (go, miss) = self.fork(code);
        self.b.switch_to_block(go);
        if let Some(k) = cached {
            self.jump_cache_fill(rip, code, k);
        }
        self.chain_to(code);
        self.b.switch_to_block(miss);
    }

    /// The common end of chained exits, once state is written back: retire `n` instructions
    /// and, unless the vCPU must go back to the run loop, take the first exit when `cond` is
    /// `None` or non-zero and the second otherwise, each jumping to its target's code once
    /// its slot is linked (a direct jump, patched: [`super::super::direct`]). RIP and the link token are only stored on the way back to the run loop: a
    /// chained target knows its own address.
    pub(super) fn chain_tail(&mut self, cond: Option<Value>, exits: [(u64, usize); 2], n: u32) {
        let back = exits.iter().any(|&(t, _)| self.may_loop(t));
        let stop = self.retire_and_check(n, back);
        let [(t0, s0), (t1, s1)] = exits;
        match cond {
            Some(c) if exits[0] != exits[1] => {
                let c = self.truth(c);
                let (arm0, arm1) = self.fork(c);
                self.b.switch_to_block(arm0);
                self.chain_arm(t0, s0);
                self.b.switch_to_block(arm1);
                self.chain_arm(t1, s1);
            }
            _ => self.chain_arm(t0, s0),
        }
        // Back to the run loop, at whichever target the instruction chose.
        let Some(stop) = stop else {
            return;
        };
        self.b.seal_block(stop);
        self.b.switch_to_block(stop);
        let pick = |em: &mut Self, a: u64, b: u64| {
            let av = em.iconst(a);
            match cond {
                Some(c) if a != b => {
                    let bv = em.iconst(b);
                    let c = em.truth(c);
                    em.b.ins().select(c, av, bv)
                }
                _ => av,
            }
        };
        let rip = pick(self, t0, t1);
        let token = pick(self, self.chain.token[s0], self.chain.token[s1]);
        self.store_state(rip, off::RIP);
        self.store_state(token, off::LINK);
        self.ret(EXIT_NEXT);
    }

    /// One arm of [`Self::chain_tail`]: jump to the code linked to chain slot `slot`, or (its
    /// stub) return to the run loop at `target` with the slot's token while it is empty. An exit to
    /// another page checks the TLB first, and looks its target up when the TLB disagrees.
    pub(super) fn chain_arm(&mut self, target: u64, slot: usize) {
        if let Some(linear) = self.cross_page(target) {
            return self.chain_arm_cross_page(target, linear, slot);
        }
        self.chain_direct(slot);
    }

    /// Jumps to the code linked to direct slot `slot` (a `jmp rel32` that the cache patches;
    /// its stub returns to the run loop while the slot is empty: see [`super::super::direct`]).
    fn chain_direct(&mut self, slot: usize) {
        use cranelift_codegen::ir::{ExtFuncData, ExternalName, UserExternalName};
        let f = match self.sigs.direct[slot] {
            Some(f) => f,
            None => {
                let name = self
                    .b
                    .func
                    .declare_imported_user_function(UserExternalName::new(
                        super::super::direct::CHAIN_NAMESPACE,
                        slot as u32,
                    ));
                let f = self.b.import_function(ExtFuncData {
                    name: ExternalName::User(name),
                    signature: self.sigs.block,
                    colocated: true,
                    patchable: false,
                });
                self.sigs.direct[slot] = Some(f);
                f
            }
        };
        let bud = self.b.use_var(self.budget);
        self.count_chain();
        self.b.ins().return_call(f, &[self.cpu, bud]);
    }

    /// The guest RIP each chain slot's exit leads to, as assigned during the translation.
    pub fn slot_targets(&self) -> [Option<u64>; 3] {
        [
            self.slot_target[0],
            self.slot_target[1],
            self.ret_slot_target,
        ]
    }

    /// [`Self::chain_arm`] for a target at `linear` on another page: chained while the TLB
    /// entry of that page allows fetches and holds the addend the slot was linked with (the
    /// page maps where it did then); otherwise back to the run loop if the slot was never
    /// linked (the run loop links it), else through [`super::helpers::jump_lookup`].
    fn chain_arm_cross_page(&mut self, target: u64, linear: u64, slot: usize) {
        let (exec, addend) = self.fetch_tlb_entry(linear);
        let slot_addr = self.iconst(self.chain.slot_addr[slot]);
        let want = self
            .b
            .ins()
            .load(I64, state_flags(), slot_addr, crate::jit::SLOT_ADDEND);
        let page = self.iconst(linear & !0xfff);
        let differs = self.differs(&[(exec, page), (addend, want)]);
        let linked = self.b.create_block();
        let miss = self.b.create_block();
        self.b.set_cold_block(miss);
        self.b.ins().brif(differs, miss, &[], linked, &[]);
        self.b.seal_block(linked);
        self.b.switch_to_block(linked);
        // The addend matches only while the slot is linked (its unlinked values are no
        // addend), so the jump goes to the linked code.
        self.chain_direct(slot);
        self.b.seal_block(miss);
        self.b.switch_to_block(miss);
        let lookup = self.b.create_block();
        let back = self.b.create_block();
        let fresh = self
            .b
            .ins()
            .icmp_imm_s(IntCC::Equal, want, crate::jit::ADDEND_UNLINKED as i64);
        self.b.ins().brif(fresh, back, &[], lookup, &[]);
        self.b.seal_block(lookup);
        self.b.switch_to_block(lookup);
        let rip = self.iconst(target);
        self.lookup_and_chain(rip, Dest::Mode(self.chain.key));
        self.b.ins().jump(back, &[]);
        self.b.seal_block(back);
        self.b.switch_to_block(back);
        self.return_via_slot(target, slot);
    }

    /// The fetch tag and the addend of linear page `linear`'s entry in the TLB of the block's
    /// privilege: what transfers to another page compare with the values their target was
    /// linked or decoded with.
    fn fetch_tlb_entry(&mut self, linear: u64) -> (Value, Value) {
        use crane86_runtime::memory::{tlb_index, TlbEntry};
        let entry = off::TLB
            + self.tlb_offset()
            + (tlb_index(linear) * std::mem::size_of::<TlbEntry>()) as i32;
        let exec_at = entry + std::mem::offset_of!(TlbEntry, exec) as i32;
        let addend_at = entry + std::mem::offset_of!(TlbEntry, addend) as i32;
        let exec = self.b.ins().load(I64, state_flags(), self.cpu, exec_at);
        let addend = self.b.ins().load(I64, state_flags(), self.cpu, addend_at);
        (exec, addend)
    }

    /// Back to the run loop at `target` with exit `slot`'s token, so that it links the slot.
    fn return_via_slot(&mut self, target: u64, slot: usize) {
        let rip = self.iconst(target);
        let token = self.iconst(self.chain.token[slot]);
        self.store_state(rip, off::RIP);
        self.store_state(token, off::LINK);
        self.ret(EXIT_NEXT);
    }

    /// Tail-calls the compiled block at `code`, counting the transfer when statistics want
    /// it ([`super::JitOptions::count_chains`]).
    pub(super) fn chain_to(&mut self, code: Value) {
        let bud = self.b.use_var(self.budget);
        self.count_chain();
        self.b
            .ins()
            .return_call_indirect(self.sigs.block, code, &[self.cpu, bud]);
    }

    /// Counts a chained transfer when statistics want it ([`super::JitOptions::count_chains`]).
    fn count_chain(&mut self) {
        if self.chain.count {
            let c = self.load_state(off::CHAINED);
            let c = self.b.ins().iadd_imm_s(c, 1);
            self.store_state(c, off::CHAINED);
        }
    }

    /// A transfer to a member of the region: account for the instructions, and go on at its
    /// header unless (on a transfer that goes back) the budget ran out or an exit was
    /// requested.
    ///
    /// The flags record is stored here when this member changed it, since members start
    /// with it in `CpuState` ([`Self::begin_member`]); only on the way out to the run loop
    /// when the target's first instruction sets them all anyway (`flags_dead_at`), where an
    /// interrupt may still see them.
    pub(super) fn loop_back(&mut self, head: Block, target: u64, n: u32) {
        let carried = self.flags_carried_to.contains(&target);
        if carried {
            self.carry_flags();
        }
        let dead = carried || self.flags_dead_at.contains(&target);
        if !dead {
            self.write_back();
        }
        let stop = self.retire_and_check(n, self.may_loop(target));
        self.b.ins().jump(head, &[]);
        let Some(stop) = stop else {
            return;
        };
        self.b.seal_block(stop);
        self.b.switch_to_block(stop);
        if dead {
            self.write_back();
        }
        let rip = self.iconst(target);
        self.store_state(rip, off::RIP);
        let z = self.iconst(0);
        self.store_state(z, off::LINK);
        self.ret(EXIT_NEXT);
    }
}
