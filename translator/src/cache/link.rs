//! Chaining between compiled blocks (a linked exit jumps straight to its target's code),
//! and the entry barriers a debugger's breakpoints put on blocks, which keep generated code
//! from entering them without the run loop.

use std::collections::BTreeSet;

use crane86_runtime::memory::tlb_fetch_addend;
use crane86_runtime::CpuState;

use super::{unguarded_crossing, Block, BlockId, Cache, FastEntry, NO_BLOCK, PAGE_MASK};
use crate::jit::{token_slot, ADDEND_REFUSED, ADDEND_UNLINKED, RETURN_SLOT};

impl Cache {
    /// Links the exit named by `token` (from `cpu.link`) to block `target` if both are
    /// compiled, so the next time it is taken without the run loop. `cpu` is the state the
    /// target is about to run in: its TLB holds the target page's translation.
    pub fn link(&mut self, token: u64, target: BlockId, cpu: &CpuState) {
        if token == 0 {
            return;
        }
        let (src, slot) = token_slot(token);
        let Some(Some(s)) = self.blocks.get(src as usize) else {
            return;
        };
        if slot > RETURN_SLOT {
            return;
        }
        if s.outgoing[slot].is_some() || s.code.is_none() {
            return;
        }
        let Some(code) = self.block(target).code else {
            return;
        };
        // The token may come from code the block no longer runs (it was compiled again
        // since), whose slots served other targets.
        if s.chain.targets[slot] != Some(self.block(target).key.ip) {
            return;
        }
        // Only link within one mode: the slot is tied to the source's mode bits. With paging
        // on, a chained jump skips the run loop's translation of the target address. Within
        // the source's own linear page that is always right: whatever address space the
        // source runs in maps that page to the same physical page as when it was linked. An
        // exit to another page was compiled to check the target page's TLB entry first
        // (`SlotWords`): it is linked with that page's addend now, and is taken only while
        // the TLB still holds it. The return slot is read by a RET only for a continuation on
        // the calling block's page, and only while the TLB's flushes have left that page's
        // predictions alone (`jit/emitter/ret.rs`): a link within the page.
        let (sk, t) = (self.block(src).key, self.block(target));
        let tk = t.key;
        let cross_page = tk.paging() && tk.linear() & PAGE_MASK != sk.linear() & PAGE_MASK;
        let refuse =
            sk.mode_bits() != tk.mode_bits() || sk.cs_base != tk.cs_base || unguarded_crossing(t);
        if refuse {
            if cross_page || slot == RETURN_SLOT {
                self.block_mut(src).slots[3 + slot] = ADDEND_REFUSED;
            }
            return;
        }
        if self.holds_barrier(t) {
            return;
        }
        let addend = if cross_page {
            match tlb_fetch_addend(cpu, tk.linear(), tk.cpl() == 3) {
                Some(a) => a,
                None => return,
            }
        } else {
            ADDEND_UNLINKED
        };
        let s = self.blocks[src as usize]
            .as_mut()
            .expect("live source block");
        if !s.aim(slot, Some(code), &mut self.arena) {
            return;
        }
        s.slots[slot] = code as u64;
        s.slots[3 + slot] = addend;
        s.outgoing[slot] = Some(target);
        self.block_mut(target).incoming.push((src, slot as u8));
        self.stats.links += 1;
        if cross_page {
            self.stats.links_cross_page += 1;
        }
    }

    /// Sets the linear addresses that generated code must never pass without the run loop
    /// (a debugger's breakpoints): a block holding one is not linked to and not offered to
    /// `jump_lookup`, so it is only ever entered from the run loop, which checks it. Links
    /// into blocks that hold a new barrier are dropped; without barriers the cache behaves
    /// as before. Cheap enough to call at every debugger stop and resume.
    pub fn set_entry_barriers(&mut self, addrs: &BTreeSet<u64>) {
        if *addrs == self.barriers {
            return;
        }
        if self.barriers.is_empty() {
            // A region runs several blocks without the run loop, and may hold a barrier in
            // any of them: compile again, without regions while barriers are set.
            self.flush_code();
        }
        // Return predictions read their slot when taken, and the unlinking below empties
        // those into barrier blocks; a new epoch besides costs nothing here.
        self.new_epoch();
        self.barriers = addrs.clone();
        for id in 0..self.blocks.len() {
            let holds = self.blocks[id]
                .as_ref()
                .is_some_and(|b| self.holds_barrier(b));
            if !holds {
                continue;
            }
            let incoming = std::mem::take(&mut self.block_mut(id as BlockId).incoming);
            for (src, slot) in incoming {
                if let Some(Some(s)) = self.blocks.get_mut(src as usize) {
                    s.unlink(slot as usize, &mut self.arena);
                }
            }
        }
        for fi in 0..self.fast.len() {
            let FastEntry { key, id, .. } = self.fast[fi];
            let live = self
                .blocks
                .get(id as usize)
                .is_some_and(|b| b.as_ref().is_some_and(|b| b.key == key));
            if key != NO_BLOCK && live {
                self.fast[fi] = self.fast_entry(id);
            }
        }
    }

    /// Every link into a block with code leads to its current code, through its source's
    /// slot word and its direct jumps, and every direct jump of an empty slot leads to the
    /// slot's stub (tests).
    #[cfg(test)]
    pub(crate) fn links_consistent(&self) -> bool {
        let incoming_ok = self.blocks.iter().flatten().all(|b| {
            b.code.is_none_or(|code| {
                b.incoming.iter().all(|&(src, slot)| {
                    self.blocks[src as usize]
                        .as_ref()
                        .is_some_and(|s| s.slots[slot as usize] == code as u64)
                })
            })
        });
        let jumps_ok = self.blocks.iter().flatten().all(|b| {
            let Some(code) = b.code else {
                return true;
            };
            let _ = code;
            b.chain.sites.iter().all(|site| {
                let slot = site.slot as usize;
                let want = match b.slots[slot] {
                    0 => b.code_at(b.chain.stubs[slot]),
                    linked => linked as *const u8,
                };
                self.arena.jump_target(b.code_at(site.offset)) == Some(want)
            })
        });
        incoming_ok && jumps_ok
    }

    /// Direct jumps in all compiled code, and how many of them are linked (tests).
    #[cfg(test)]
    pub(crate) fn direct_jumps(&self) -> (usize, usize) {
        let all = self.blocks.iter().flatten().filter(|b| b.code.is_some());
        all.fold((0, 0), |(n, linked), b| {
            let l = b
                .chain
                .sites
                .iter()
                .filter(|s| b.slots[s.slot as usize] != 0);
            (n + b.chain.sites.len(), linked + l.count())
        })
    }

    /// True when a barrier lies within block `b`'s bytes.
    pub(super) fn holds_barrier(&self, b: &Block) -> bool {
        if self.barriers.is_empty() {
            return false;
        }
        let start = b.key.linear();
        let end = start.saturating_add(b.decoded.byte_len.max(1));
        self.barriers.range(start..end).next().is_some()
    }
}
