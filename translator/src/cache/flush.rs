//! Dropping blocks: one (a store into its code, a remap), every block's code (the arena
//! is full, a debugger sets its first breakpoint), or every block (the decoded blocks'
//! budget is spent). Each drop starts a new epoch, so no return prediction made before it is
//! used again.

use crane86_runtime::PhysMem;

use super::{block_cost, fast_index, fresh_slots, BlockId, Cache, ChainInfo, NO_ENTRY};

impl Cache {
    /// Drops block `id`: its links both ways, its page records, its lookup entries.
    pub(super) fn remove(&mut self, id: BlockId, mem: &mut PhysMem) {
        let Some(b) = self.blocks[id as usize].take() else {
            return;
        };
        b.cancel_compile();
        self.clear_baseline_links(b.baseline_incoming.clone(), b.baseline_chain);
        // Return predictions pushed until now may name this block's slots, or its code
        // through another block's return slot: none of them may be used any more.
        self.new_epoch();
        self.decoded_bytes = self.decoded_bytes.saturating_sub(block_cost(&b));
        for (src, slot) in &b.incoming {
            if let Some(Some(s)) = self.blocks.get_mut(*src as usize) {
                s.unlink(*slot as usize, &mut self.arena);
            }
        }
        for t in b.outgoing.iter().flatten() {
            if let Some(Some(tb)) = self.blocks.get_mut(*t as usize) {
                tb.incoming.retain(|&(s, _)| s != id);
            }
        }
        for p in b.pages.iter().flatten() {
            if let Some(v) = self.by_page.get_mut(p) {
                v.retain(|&x| x != id);
                if v.is_empty() {
                    self.by_page.remove(p);
                    mem.set_code_page(*p, false);
                }
            }
        }
        self.map.remove(&b.key);
        let fi = fast_index(b.key);
        if self.fast[fi].key == b.key {
            self.fast[fi] = NO_ENTRY;
        }
        self.free.push(id);
    }

    /// Forgets all compiled code (blocks stay decoded and go back to the interpreter or are
    /// recompiled on their next run).
    pub(super) fn flush_code(&mut self) {
        for b in self.blocks.iter_mut().flatten() {
            b.code = None;
            b.baseline = None;
            b.baseline_tried = false;
            b.baseline_chain = None;
            b.baseline_incoming.clear();
            if let Some(s) = b.baseline_slots.as_mut() {
                **s = Default::default();
            }
            *b.chain = ChainInfo::default();
            *b.slots = fresh_slots();
            b.incoming.clear();
            b.outgoing = [None; 3];
        }
        for e in self.fast.iter_mut() {
            e.code = 0;
        }
        self.arena.reset();
        self.new_epoch();
        self.stats.flushes += 1;
    }

    /// Drops every block. Only between blocks: no generated code may be running, and block
    /// ids held by the caller are dead afterwards (as is the exit token in `CpuState::link`,
    /// which the caller must clear).
    pub fn flush(&mut self, mem: &mut PhysMem) {
        for b in self.blocks.iter().flatten() {
            b.cancel_compile();
        }
        for p in self.by_page.keys() {
            mem.set_code_page(*p, false);
        }
        self.by_page.clear();
        self.spared.clear();
        self.map.clear();
        self.blocks.clear();
        self.free.clear();
        self.fast.fill(NO_ENTRY);
        self.arena.reset();
        self.decoded_bytes = 0;
        self.new_epoch();
    }

    /// Invalidates every return prediction pushed so far (see [`Cache::epoch`]).
    pub(super) fn new_epoch(&mut self) {
        *self.epoch = super::new_epoch();
    }
}
