//! Return-address prediction: a near CALL pushes a prediction onto the vCPU's return stack
//! buffer (`crane86_runtime::rsb`), and a near RET pops it and, when it provably names the
//! code at the address the RET popped, tail-calls that code instead of calling
//! [`super::super::helpers::jump_lookup`].
//!
//! What proves it (checked in this order, so that nothing is dereferenced before the cache
//! vouches for it):
//! - the popped address equals the prediction's return address, and the RET's block has the
//!   calling block's CS base and mode bits (`ctx`): the continuation's key is the one the run
//!   loop would build, up to the physical address;
//! - the entry exists at all: the cache empties the buffer before it runs code under a new
//!   epoch (`Cache::run_compiled`, `Rsb::enter_epoch`), so every entry was pushed since the
//!   last block or code was dropped: the calling block and its return slot are alive, and
//!   the code the slot holds is live (a slot is emptied when its target is dropped). This
//!   took the epoch's two loads and compare off every RET (session 17);
//! - under paging, nothing more: a CALL whose return address lies on another linear page
//!   than its block's first pushes an unusable entry, so the continuation lies on the page
//!   the calling block ran from, whose physical page it was translated from (the rule of
//!   direct exits within a page); and the TLB's flushes (CR3 writes, INVLPG, INVPCID, mode
//!   changes) make the entries of every page whose translation they drop unusable
//!   (`crane86_runtime::rsb`), so the page maps where it did when the CALL ran. This took a
//!   TLB probe (an index, two loads, a compare and a branch) off every RET;
//! - the slot holds code.
//!
//! The RET retires its instructions and checks the budget and exit requests first, exactly as
//! a chained exit does. A prediction whose slot was never linked sends the RET back to the run
//! loop with the slot's token, so that the run loop links it; any other failure looks the
//! target up as before.

use std::mem::offset_of;

use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::{InstBuilder, Value};

use crane86_runtime::rsb::{RsbEntry, NO_CTX, RSB_ENTRIES};

use super::super::{off, state_flags, ADDEND_UNLINKED, EXIT_NEXT, RETURN_SLOT, SLOT_ADDEND};
use super::exits::Dest;
use super::{JitEmitter, I64};

/// Byte offsets of an entry's fields within `CpuState` (plus the entry's own offset).
const E_RIP: i32 = off::RSB + offset_of!(RsbEntry, rip) as i32;
const E_CTX: i32 = off::RSB + offset_of!(RsbEntry, ctx) as i32;
const E_SLOT: i32 = off::RSB + offset_of!(RsbEntry, slot) as i32;
const E_TOKEN: i32 = off::RSB + offset_of!(RsbEntry, token) as i32;

/// log2 of the entry size, for indexing.
const ENTRY_SHIFT: i64 = 6;
const _: () = assert!(std::mem::size_of::<RsbEntry>() == 1 << ENTRY_SHIFT);

impl JitEmitter<'_, '_> {
    /// Whether this code predicts returns: only with a cache's epoch and lookup table.
    fn predicts_returns(&self) -> bool {
        self.chain.epoch != 0 && self.chain.jump_table != 0
    }

    /// The block's CS base and mode bits as one [`RsbEntry::ctx`] word, when they fit (a CS
    /// base is a 32-bit descriptor field, and the mode bits are 16).
    fn rsb_ctx(&self) -> Option<u64> {
        let k = self.chain.key;
        (k.cs_base <= u64::from(u32::MAX) && k.mode_bits() <= 0xffff)
            .then(|| k.cs_base << 16 | k.mode_bits())
    }

    /// The address of entry `top` of the buffer (the entry offsets are added by the accesses).
    fn rsb_entry(&mut self, top: Value) -> Value {
        let byte = self.b.ins().ishl_imm_u(top, ENTRY_SHIFT);
        self.b.ins().iadd(self.cpu, byte)
    }

    /// A near CALL returning to `ret` pushes its prediction. The block's return slot serves
    /// the first CALL compiled into it; another CALL (in a region) pushes an entry that is
    /// never used, so that the buffer stays in step with the guest's calls.
    pub(super) fn push_return(&mut self, ret: u64) {
        if !self.predicts_returns() {
            return;
        }
        let slot_free = *self.ret_slot_target.get_or_insert(ret) == ret;
        // A return to another page than the block's is not predicted (module doc).
        let usable = slot_free && self.cross_page(ret).is_none();
        let ctx = self.rsb_ctx().filter(|_| usable).unwrap_or(NO_CTX);
        let top = self.load_state(off::RSB_TOP);
        let top = self.b.ins().iadd_imm_s(top, 1);
        let top = self.b.ins().band_imm_s(top, (RSB_ENTRIES - 1) as i64);
        self.store_state(top, off::RSB_TOP);
        let ent = self.rsb_entry(top);
        let put = |em: &mut Self, v: Value, at: i32| {
            em.b.ins().store(state_flags(), v, ent, at);
        };
        let v = self.iconst(ret);
        put(self, v, E_RIP);
        let v = self.iconst(ctx);
        put(self, v, E_CTX);
        if ctx == NO_CTX {
            return;
        }
        let v = self.iconst(self.chain.slot_addr[RETURN_SLOT]);
        put(self, v, E_SLOT);
        let v = self.iconst(self.chain.token[RETURN_SLOT]);
        put(self, v, E_TOKEN);
    }

    /// Ends a near RET to `target`: pop the newest prediction and tail-call its code if it
    /// provably is `target`'s (see the module documentation), else go on as an indirect jump
    /// does.
    pub(super) fn predicted_return(&mut self, target: Value) {
        self.write_back();
        self.predicted_return_tail(target, self.index + 1);
        self.finish_instruction_end();
    }

    /// [`Self::predicted_return`] once state is written back, after `n` instructions.
    fn predicted_return_tail(&mut self, target: Value, n: u32) {
        if !self.predicts_returns() {
            return self.jump_tail(target, n);
        }
        // Pop whatever happens next, so the buffer stays in step with the guest's returns.
        let top = self.load_state(off::RSB_TOP);
        let ent = self.rsb_entry(top);
        let prev = self.b.ins().iadd_imm_s(top, -1);
        let prev = self.b.ins().band_imm_s(prev, (RSB_ENTRIES - 1) as i64);
        self.store_state(prev, off::RSB_TOP);
        let Some(ctx) = self.rsb_ctx() else {
            return self.jump_tail(target, n);
        };
        let e_rip = self.b.ins().load(I64, state_flags(), ent, E_RIP);
        let e_ctx = self.b.ins().load(I64, state_flags(), ent, E_CTX);
        let ctx = self.iconst(ctx);
        let differs = self.differs(&[(e_rip, target), (e_ctx, ctx)]);

        let back = self
            .retire_and_check(n, true)
            .expect("an exit that may go back checks");
        let predicted = self.b.create_block();
        let lookup = self.b.create_block();
        // A failed prediction is rare: its lookup is cold code.
        self.b.set_cold_block(lookup);
        self.b.ins().brif(differs, lookup, &[], predicted, &[]);
        self.b.seal_block(predicted);

        // The buffer's epoch vouches for the slot: read it.
        self.b.switch_to_block(predicted);
        let slot = self.b.ins().load(I64, state_flags(), ent, E_SLOT);
        let code = self.b.ins().load(I64, state_flags(), slot, 0);
        let go = self.b.create_block();
        let unusable = self.b.create_block();
        self.b.set_cold_block(unusable);
        self.b.ins().brif(code, go, &[], unusable, &[]);
        self.b.seal_block(go);
        self.b.seal_block(unusable);
        self.b.switch_to_block(go);
        self.chain_to(code);

        // A slot never linked: back to the run loop, which links it to the target.
        self.b.switch_to_block(unusable);
        let addend = self.b.ins().load(I64, state_flags(), slot, SLOT_ADDEND);
        let fresh = self
            .b
            .ins()
            .icmp_imm_s(IntCC::Equal, addend, ADDEND_UNLINKED as i64);
        let relink = self.b.create_block();
        self.b.set_cold_block(relink);
        self.b.ins().brif(fresh, relink, &[], lookup, &[]);
        self.b.seal_block(relink);
        self.b.seal_block(lookup);
        self.b.switch_to_block(relink);
        let token = self.b.ins().load(I64, state_flags(), ent, E_TOKEN);
        self.store_state(target, off::RIP);
        self.store_state(token, off::LINK);
        self.ret(EXIT_NEXT);

        self.b.switch_to_block(lookup);
        self.lookup_and_chain(target, Dest::Mode(self.chain.key));
        self.b.ins().jump(back, &[]);
        self.b.seal_block(back);
        self.b.switch_to_block(back);
        self.store_state(target, off::RIP);
        let z = self.iconst(0);
        self.store_state(z, off::LINK);
        self.ret(EXIT_NEXT);
    }
}
