//! The jump cache: each block remembers the last target its indirect branches found code for
//! through [`super::super::helpers::jump_lookup`], and checks it inline before calling the
//! helper again.
//!
//! Most indirect branches go to one target: the `jmp *GOT` stubs through which a static glibc
//! calls its string functions, a function pointer that does not change. Each lookup costs a
//! call through a register-preserving shim, a TLB probe in Rust and the table's hash; busybox
//! sh's arithmetic loop makes about 70 of them per iteration.
//!
//! The cache is four words of the block's [`crate::jit::SlotWords`] (from
//! [`crate::jit::JUMP_CACHE_WORD`]): the target's RIP, the cache epoch when it was filled, the
//! target's code, and under paging the TLB addend of the target's page then. A hit proves the
//! code is the one the lookup would find now, by the rules return-address prediction uses
//! (`ret.rs`):
//! - same RIP, and the CS base and mode bits the exit's target is known to have at
//!   translation (the block's own, or those a SYSCALL or 64-bit SYSRET leads to; exits
//!   whose target's mode comes from the CPU state do not use the cache): the same key up to
//!   the physical address;
//! - same epoch: no block and no code was dropped or replaced since, so the code is live and
//!   still the target's;
//! - under paging, the target page's TLB entry allows fetches at the target's privilege
//!   with the same addend: the page maps to the physical page it mapped to then. The fill records
//!   the addend only when that TLB entry is the target page's (the lookup's probe fills it),
//!   and a marker that matches no addend otherwise.

use crane86_runtime::BlockKey;
use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::{InstBuilder, Value};

use super::super::{off, state_flags, ADDEND_UNLINKED};
use super::{JitEmitter, I64};

/// Byte offsets of the cache's words from its first.
const C_RIP: i32 = 0;
const C_EPOCH: i32 = 8;
const C_CODE: i32 = 16;
const C_ADDEND: i32 = 24;

/// What [`JitEmitter::fetch_entry`] loads.
pub(super) struct FetchEntry {
    /// The entry's fetch tag.
    pub exec: Value,
    /// The page the tag must equal.
    pub page: Value,
    /// The entry's addend.
    pub addend: Value,
}

impl JitEmitter<'_, '_> {
    /// Whether exits to a known mode check the jump cache: only with a cache's epoch.
    pub(super) fn uses_jump_cache(&self) -> bool {
        self.chain.jump_cache != 0 && self.chain.epoch != 0
    }

    /// Tail-calls the code the jump cache holds for `rip` if it provably is that of `rip` in
    /// the mode of `key` (see the module documentation); execution goes on in the current
    /// block otherwise.
    pub(super) fn jump_cache_check(&mut self, rip: Value, key: BlockKey) {
        let at = self.iconst(self.chain.jump_cache);
        let c_rip = self.b.ins().load(I64, state_flags(), at, C_RIP);
        let c_epoch = self.b.ins().load(I64, state_flags(), at, C_EPOCH);
        let epoch_at = self.iconst(self.chain.epoch);
        let epoch = self.b.ins().load(I64, state_flags(), epoch_at, 0);
        let differs = self.differs(&[(c_rip, rip), (c_epoch, epoch)]);
        let mut go = self.b.create_block();
        let miss = self.b.create_block();
        self.b.ins().brif(differs, miss, &[], go, &[]);
        self.b.seal_block(go);
        if key.paging() {
            self.b.switch_to_block(go);
            let addend = self.b.ins().load(I64, state_flags(), at, C_ADDEND);
            let e = self.fetch_entry(rip, key);
            let differs = self.differs(&[(e.exec, e.page), (e.addend, addend)]);
            let mapped = self.b.create_block();
            self.b.ins().brif(differs, miss, &[], mapped, &[]);
            self.b.seal_block(mapped);
            go = mapped;
        }
        self.b.seal_block(miss);
        self.b.switch_to_block(go);
        let code = self.b.ins().load(I64, state_flags(), at, C_CODE);
        self.chain_to(code);
        self.b.switch_to_block(miss);
    }

    /// Records `code`, which the lookup just found for `rip` in the mode of `key`, in the
    /// jump cache.
    pub(super) fn jump_cache_fill(&mut self, rip: Value, code: Value, key: BlockKey) {
        let at = self.iconst(self.chain.jump_cache);
        let epoch_at = self.iconst(self.chain.epoch);
        let epoch = self.b.ins().load(I64, state_flags(), epoch_at, 0);
        let put = |em: &mut Self, v: Value, offset: i32| {
            em.b.ins().store(state_flags(), v, at, offset);
        };
        put(self, rip, C_RIP);
        put(self, code, C_CODE);
        if key.paging() {
            let e = self.fetch_entry(rip, key);
            let page_ok = self.b.ins().icmp(IntCC::Equal, e.exec, e.page);
            let none = self.iconst(ADDEND_UNLINKED);
            let addend = self.b.ins().select(page_ok, e.addend, none);
            put(self, addend, C_ADDEND);
        }
        put(self, epoch, C_EPOCH);
    }

    /// The TLB entry that indexes `target`'s linear page (CS base and mode from `k`) at
    /// `k`'s privilege: its fetch tag, the page it must equal to be that page's and allow
    /// fetches, and its addend.
    pub(super) fn fetch_entry(&mut self, target: Value, k: BlockKey) -> FetchEntry {
        use crane86_runtime::memory::TlbEntry;
        use std::mem::offset_of;
        let mut linear = self.b.ins().iadd_imm_s(target, k.cs_base as i64);
        if k.mode() != crane86_runtime::CpuMode::Long64 {
            linear = self.b.ins().band_imm_s(linear, 0xffff_ffff);
        }
        let ent = self.tlb_entry(linear);
        let tlb = off::TLB + Self::tlb_offset_for(k.cpl() == 3);
        let exec = self.b.ins().load(
            I64,
            state_flags(),
            ent,
            tlb + offset_of!(TlbEntry, exec) as i32,
        );
        let addend = self.b.ins().load(
            I64,
            state_flags(),
            ent,
            tlb + offset_of!(TlbEntry, addend) as i32,
        );
        let page = self.b.ins().band_imm_s(linear, !0xfffi64);
        FetchEntry { exec, page, addend }
    }

    /// Non-zero unless both values of every pair are equal: `(a ^ b) | ...`. The host
    /// computes it with an `xor` per pair and an `or`, then branches once, where comparisons
    /// combined with `band` gave a `sete` per pair, an `and` and a `test`: these checks sit
    /// on every RET, jump-cache hit and cross-page exit.
    pub(super) fn differs(&mut self, pairs: &[(Value, Value)]) -> Value {
        let mut acc: Option<Value> = None;
        for &(a, b) in pairs {
            let x = self.b.ins().bxor(a, b);
            acc = Some(match acc {
                Some(v) => self.b.ins().bor(v, x),
                None => x,
            });
        }
        acc.unwrap_or_else(|| self.b.ins().iconst(I64, 0))
    }
}
