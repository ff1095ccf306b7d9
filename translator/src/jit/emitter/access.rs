//! Guest memory accesses in generated code: the inline TLB check and its cold slow path.
//!
//! A load or store indexes the TLB by the address's page number, compares the entry's tag
//! with the page of the access's last byte (so a hit also proves the access does not cross
//! into the next page), and adds the entry's addend. A miss calls `load_slow`/`store_slow`,
//! which walk the page tables, fill the entry and raise the guest's faults. Checks that only
//! a miss can fail live in the slow path: a tag is a canonical page, so an operand through
//! SS in 64-bit mode ([`crane86_runtime::memory::SLOW_SS64`]) is canonical on every hit,
//! and only the helper looks.

use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::{Block, BlockArg, InstBuilder, Value};

use crane86_runtime::memory::{TlbEntry, SLOW_CODE_RETRY};

use super::{guest_flags, off, state_flags, JitEmitter, I64};
use crate::emit::R;
use crate::jit::shims::Helper;

impl JitEmitter<'_, '_> {
    /// The address of the TLB entry for `addr` (the TLB offset is added by the loads).
    pub(super) fn tlb_entry(&mut self, addr: Value) -> Value {
        // `crane86_runtime::memory::tlb_index`, times the entry's 32 bytes.
        const _: () = assert!(size_of::<TlbEntry>() == 32);
        // In 32 bits (the index lies in bits 12-21): shorter encodings, and the zero
        // extension is free after a 32-bit operation.
        let a32 = self
            .b
            .ins()
            .ireduce(cranelift_codegen::ir::types::I32, addr);
        let sh = self.b.ins().ushr_imm_u(a32, 7);
        let byte = self
            .b
            .ins()
            .band_imm_s(sh, ((crane86_runtime::memory::TLB_ENTRIES - 1) << 5) as i64);
        let byte = self.b.ins().uextend(I64, byte);
        self.b.ins().iadd(self.cpu, byte)
    }

    /// The TLB check shared by loads and stores: branches to a fast block or a cold slow
    /// block (returned), and returns the entry's addend. The fast block forms the host
    /// address `addr + addend` itself ([`JitEmitter::host_address`]), next to the access,
    /// where it folds into the access's addressing mode. (For this single-predecessor block
    /// Cranelift already removed a host-address parameter, so the code is the same as when
    /// it was passed in; the memo's blocks, with several predecessors, are where forming
    /// the address beside the load matters: see `memo`.)
    pub(super) fn tlb_check(
        &mut self,
        addr: Value,
        size: u32,
        tag_offset: i32,
    ) -> (Block, Block, Value) {
        let ent = self.tlb_entry(addr);
        let tlb = off::TLB + self.tlb_offset();
        let tag = self.b.ins().load(I64, state_flags(), ent, tlb + tag_offset);
        let last = if size > 1 {
            self.b.ins().iadd_imm_s(addr, i64::from(size - 1))
        } else {
            addr
        };
        let page = self.b.ins().band_imm_s(last, !0xfffi64);
        let hit = self.b.ins().icmp(IntCC::Equal, tag, page);
        if self.chain.count {
            self.count_hit(hit, off::JIT_TLB_HITS);
        }
        let fast = self.b.create_block();
        let slow = self.b.create_block();
        self.b.set_cold_block(slow);
        let addend = self.b.ins().load(I64, state_flags(), ent, tlb + 16);
        self.b.ins().brif(hit, fast, &[], slow, &[]);
        self.b.seal_block(fast);
        self.b.seal_block(slow);
        (fast, slow, addend)
    }

    /// The host address of `addr` after a TLB hit that returned `addend`, formed in the
    /// current block.
    pub(super) fn host_address(&mut self, addr: Value, addend: Value) -> Value {
        self.b.ins().iadd(addr, addend)
    }

    /// Statistics: adds `hit` (0 or 1) to the counter at `offset` in `CpuState`, without a
    /// branch.
    pub(super) fn count_hit(&mut self, hit: Value, offset: i32) {
        let n = self.load_state(offset);
        let one = self.b.ins().uextend(I64, hit);
        let n = self.b.ins().iadd(n, one);
        self.store_state(n, offset);
    }

    /// [`Emit::load`], with `slow_flags` (`SLOW_SS64`) for the TLB miss path.
    pub(super) fn load_access(&mut self, linear: Value, size: u32, slow_flags: u64) -> R<Value> {
        let memo = if self.memo_here {
            self.next_memo()
        } else {
            None
        };
        let merge = self.b.create_block();
        let result = self.b.append_block_param(merge, I64);
        if size < 8 {
            // Every path zero-extends: the slow path returns the `size` bytes it read.
            self.narrow_params.insert(result, (8 * size) as u8);
        }
        let group = match memo {
            Some(_) => None,
            None => self.group_of(linear, size, false),
        };
        if let Some(g) = group {
            let (fast, cold, addend) = self.group_branch(g);
            self.b.switch_to_block(fast);
            let host = self.host_address(linear, addend);
            let v = self.load_host(host, size);
            self.b.ins().jump(merge, &[BlockArg::Value(v)]);
            self.b.switch_to_block(cold);
        }
        let (fast, slow, addend) = match memo {
            Some(m) => self.memo_check(m, linear, size, merge),
            None => self.tlb_check(linear, size, 0),
        };
        self.b.switch_to_block(fast);
        let host = self.host_address(linear, addend);
        let v = self.load_host(host, size);
        self.b.ins().jump(merge, &[BlockArg::Value(v)]);
        self.b.switch_to_block(slow);
        let sz = self.iconst(u64::from(size) | slow_flags);
        let v = self
            .call_helper(Helper::LoadSlow, &[linear, sz])
            .expect("load_slow returns the value");
        self.fault_check();
        if let Some(g) = group {
            self.recheck_group(linear, g);
        }
        self.b.ins().jump(merge, &[BlockArg::Value(v)]);
        self.b.seal_block(merge);
        self.b.switch_to_block(merge);
        Ok(result)
    }

    /// Loads `size` bytes of guest memory at host address `host`, zero-extended.
    pub(super) fn load_host(&mut self, host: Value, size: u32) -> Value {
        match size {
            1 => self.b.ins().uload8(I64, guest_flags(), host, 0),
            2 => self.b.ins().uload16(I64, guest_flags(), host, 0),
            4 => self.b.ins().uload32(guest_flags(), host, 0),
            _ => self.b.ins().load(I64, guest_flags(), host, 0),
        }
    }

    /// Stores the low `size` bytes of `v` at guest address `linear` after a TLB hit that
    /// returned `addend`.
    fn store_host(&mut self, linear: Value, addend: Value, size: u32, v: Value) {
        let host = self.host_address(linear, addend);
        match size {
            1 => self.b.ins().istore8(guest_flags(), v, host, 0),
            2 => self.b.ins().istore16(guest_flags(), v, host, 0),
            4 => self.b.ins().istore32(guest_flags(), v, host, 0),
            _ => self.b.ins().store(guest_flags(), v, host, 0),
        };
    }

    /// [`Emit::store`], with `slow_flags` as for [`JitEmitter::load_access`].
    pub(super) fn store_access(
        &mut self,
        linear: Value,
        size: u32,
        v: Value,
        slow_flags: u64,
    ) -> R<()> {
        let merge = self.b.create_block();
        let group = self.group_of(linear, size, true);
        if let Some(g) = group {
            let (fast, cold, addend) = self.group_branch(g);
            self.b.switch_to_block(fast);
            self.store_host(linear, addend, size, v);
            self.b.ins().jump(merge, &[]);
            self.b.switch_to_block(cold);
        }
        let (fast, slow, addend) = self.tlb_check(linear, size, 8);
        self.b.switch_to_block(fast);
        self.store_host(linear, addend, size, v);
        self.b.ins().jump(merge, &[]);
        self.b.switch_to_block(slow);
        // A store into translated code is not made: the instruction leaves through the
        // fault exit to be run again interpreted (`SLOW_CODE_RETRY`), so that no store's
        // fast path has to look for one afterwards.
        let sz = self.iconst(u64::from(size) | slow_flags | SLOW_CODE_RETRY);
        self.call_helper(Helper::StoreSlow, &[linear, sz, v]);
        self.fault_check();
        if let Some(g) = group {
            self.recheck_group(linear, g);
        }
        self.b.ins().jump(merge, &[]);
        self.b.seal_block(merge);
        self.b.switch_to_block(merge);
        Ok(())
    }
}
