//! Stores into code pages: which blocks they make stale.
//!
//! A store into a physical page that holds translated code reaches the memory slow path
//! (such a page never has a writable TLB entry), which records the bytes it wrote
//! ([`PhysMem::take_code_writes`]); the run loop hands them to
//! [`Cache::invalidate_written`] before it runs another block.
//!
//! Dropping every block of a written page is always right, but code pages are often written
//! where no block lies: the Debian kernel patches jump labels and alternatives in its text
//! all through its boot, a byte or two at a time, and each such store used to drop every
//! block of the page (35 k blocks over one boot, `memcpy`'s page 206 times). So a store that
//! misses every block of its page drops nothing, up to [`SPARED_STORES`] times per page;
//! after that the page's blocks are dropped all the same, which makes it a data page again
//! whose stores go fast (a page that mixes hot data and code must not pay the slow path on
//! every store for good).
//!
//! A store that hits any block drops the whole page, as before: the members of a region lie
//! on its entry block's page and are compiled into its code ([`Cache::region`]), so dropping
//! only the written block would leave the entry's code stale.

use std::ops::Range;

use crane86_runtime::memory::PAGE_SIZE;
use crane86_runtime::PhysMem;

use super::{Block, Cache};

/// Stores into a code page that miss all its blocks before the page is dropped anyway.
const SPARED_STORES: u32 = 1024;

/// The longest x86 instruction: the decoder may have read this many bytes of a block's last
/// instruction to find it undecodable, whatever length it then gave it.
const MAX_INSN_LEN: u64 = 15;

impl Cache {
    /// Drops the blocks a store into `bytes` (within one physical page) may have made stale;
    /// true when it dropped the page's blocks.
    pub fn invalidate_written(&mut self, bytes: Range<u64>, mem: &mut PhysMem) -> bool {
        let page = bytes.start & !(PAGE_SIZE - 1);
        let Some(ids) = self.by_page.get(&page) else {
            mem.set_code_page(page, false);
            return false;
        };
        let hit = ids.iter().any(|&id| {
            self.blocks
                .get(id as usize)
                .and_then(Option::as_ref)
                .is_some_and(|b| overlaps(&block_bytes_on(b, page), &bytes))
        });
        if !hit {
            let n = self.spared.entry(page).or_insert(0);
            *n += 1;
            if *n <= SPARED_STORES {
                self.stats.smc_spared += 1;
                return false;
            }
        }
        self.invalidate_page(page, mem);
        true
    }

    /// Drops every block on physical page `page` (their bytes changed).
    pub fn invalidate_page(&mut self, page: u64, mem: &mut PhysMem) {
        self.spared.remove(&page);
        let Some(ids) = self.by_page.remove(&page) else {
            mem.set_code_page(page, false);
            return;
        };
        tracing::debug!(
            target: "crane86::smc",
            page = format_args!("{page:#x}"),
            blocks = ids.len(),
            "stores into a page of code: its blocks are dropped"
        );
        for id in ids {
            if self.blocks.get(id as usize).is_some_and(|b| b.is_some()) {
                self.remove(id, mem);
                self.stats.invalidated_smc += 1;
            }
        }
        mem.set_code_page(page, false);
    }
}

/// The physical bytes of page `page` that block `b`'s translation depends on (empty when
/// none are on that page).
fn block_bytes_on(b: &Block, page: u64) -> Range<u64> {
    let start = b.key.phys();
    let ends_undecodable = b.decoded.insns.last().is_some_and(|d| d.insn.is_invalid());
    let len = if ends_undecodable {
        b.decoded.byte_len + MAX_INSN_LEN
    } else {
        b.decoded.byte_len.max(1)
    };
    let first_page = start & !(PAGE_SIZE - 1);
    let first_end = first_page + PAGE_SIZE;
    if b.pages[0] == Some(page) && page == first_page {
        start..start.saturating_add(len).min(first_end)
    } else if b.pages[1] == Some(page) {
        let rest = start.saturating_add(len).saturating_sub(first_end);
        page..page + rest.min(PAGE_SIZE)
    } else {
        0..0
    }
}

fn overlaps(a: &Range<u64>, b: &Range<u64>) -> bool {
    a.start < b.end && b.start < a.end
}

#[cfg(test)]
mod tests {
    use crane86_runtime::{BlockKey, CpuMode, CpuState, PhysMem};

    use super::SPARED_STORES;
    use crate::cache::{Cache, Tier};
    use crate::jit::JitOptions;

    const PAGE: u64 = 0x3000;

    /// A cache holding two 32-bit blocks on page `PAGE`: `inc eax; jmp +0x20` at 0x3100
    /// (6 bytes) and `dec eax; mov eax, 1` at 0x3ffd, whose MOV crosses into the next page
    /// (the block's last byte is at 0x4002). Returns the memory, CPU and cache, and the two
    /// blocks' keys.
    fn two_blocks() -> (PhysMem, CpuState, Cache, [BlockKey; 2]) {
        let mut mem = PhysMem::new(1 << 20).unwrap();
        mem.load(PAGE + 0x100, &[0x40, 0xe9, 0x20, 0, 0, 0])
            .unwrap();
        mem.load(PAGE + 0xffd, &[0x48, 0xb8, 1, 0, 0, 0]).unwrap();
        let mut cpu = CpuState::new(CpuMode::Prot32);
        let mut cache = Cache::new(Tier::Interp, 1 << 22, JitOptions::default()).unwrap();
        let keys = [PAGE + 0x100, PAGE + 0xffd].map(|ip| {
            cpu.rip = ip;
            let key = BlockKey::new(ip, &cpu);
            cache.lookup(key, &mut cpu, &mut mem);
            key
        });
        (mem, cpu, cache, keys)
    }

    /// Stores `bytes` at `addr` as the guest does and hands the written ranges to the cache
    /// as the run loop does; returns how many pages it dropped.
    fn store(mem: &mut PhysMem, cache: &mut Cache, addr: u64, bytes: &[u8]) -> usize {
        for (i, &b) in bytes.iter().enumerate() {
            mem.write_phys(addr + i as u64, 1, u64::from(b));
        }
        mem.take_code_writes()
            .into_iter()
            .filter(|r| cache.invalidate_written(r.clone(), mem))
            .count()
    }

    fn held(cache: &Cache, key: BlockKey) -> bool {
        cache.map.contains_key(&key)
    }

    #[test]
    fn a_store_beside_every_block_drops_nothing() {
        let (mut mem, _, mut cache, keys) = two_blocks();
        // Right after the first block, right before the second, and far from both.
        for addr in [PAGE + 0x106, PAGE + 0xffc, PAGE + 0x800] {
            assert_eq!(store(&mut mem, &mut cache, addr, &[0xcc]), 0, "{addr:#x}");
        }
        assert!(keys.iter().all(|&k| held(&cache, k)));
        assert_eq!(cache.stats.smc_spared, 3);
        assert_eq!(cache.stats.invalidated_smc, 0);
        // The page is still code: stores to it keep being reported.
        assert!(mem.is_code_page(PAGE));
    }

    #[test]
    fn a_store_into_a_block_drops_its_whole_page() {
        for addr in [PAGE + 0x100, PAGE + 0x105, PAGE + 0xfff] {
            let (mut mem, _, mut cache, keys) = two_blocks();
            assert_eq!(store(&mut mem, &mut cache, addr, &[0x90]), 1, "{addr:#x}");
            // Both blocks go, not only the one written: a region's members share its fate.
            assert!(keys.iter().all(|&k| !held(&cache, k)), "{addr:#x}");
            assert_eq!(cache.stats.invalidated_smc, 2);
        }
    }

    #[test]
    fn a_store_into_the_tail_of_a_page_crossing_block_drops_it() {
        let (mut mem, _, mut cache, keys) = two_blocks();
        // Past the tail (the block's last byte is at 0x4002): nothing.
        assert_eq!(store(&mut mem, &mut cache, PAGE + 0x1003, &[0x90]), 0);
        assert!(held(&cache, keys[1]));
        assert_eq!(store(&mut mem, &mut cache, PAGE + 0x1002, &[0x90]), 1);
        assert!(!held(&cache, keys[1]));
        // The first page's other block stays: only the written page's blocks are dropped.
        assert!(held(&cache, keys[0]));
    }

    #[test]
    fn a_store_straddling_into_a_block_is_seen() {
        let (mut mem, _, mut cache, keys) = two_blocks();
        // Four bytes from 0x30fe: the last two are the block's first.
        mem.write_phys(PAGE + 0xfe, 4, 0x9090_9090);
        let dropped = mem
            .take_code_writes()
            .into_iter()
            .filter(|r| cache.invalidate_written(r.clone(), &mut mem))
            .count();
        assert_eq!(dropped, 1);
        assert!(!held(&cache, keys[0]));
    }

    #[test]
    fn a_page_stored_to_often_becomes_data_again() {
        let (mut mem, _, mut cache, keys) = two_blocks();
        for i in 0..SPARED_STORES {
            let dropped = store(&mut mem, &mut cache, PAGE + 0x800, &[i as u8]);
            assert_eq!(dropped, 0, "store {i}");
        }
        assert!(held(&cache, keys[0]));
        assert_eq!(store(&mut mem, &mut cache, PAGE + 0x800, &[0]), 1);
        assert!(!held(&cache, keys[0]));
        assert!(!mem.is_code_page(PAGE), "its stores may go fast again");
    }

    #[test]
    fn an_undecodable_end_depends_on_the_bytes_after_it() {
        let mut mem = PhysMem::new(1 << 20).unwrap();
        // `inc eax`, then an opcode iced cannot decode (0F 04), which ends the block.
        mem.load(PAGE + 0x200, &[0x40, 0x0f, 0x04]).unwrap();
        let mut cpu = CpuState::new(CpuMode::Prot32);
        let mut cache = Cache::new(Tier::Interp, 1 << 22, JitOptions::default()).unwrap();
        cpu.rip = PAGE + 0x200;
        let key = BlockKey::new(PAGE + 0x200, &cpu);
        let id = cache.lookup(key, &mut cpu, &mut mem);
        assert!(cache.block(id).decoded.insns[1].insn.is_invalid());
        // Bytes after the undecodable opcode could have made it decode: the block goes.
        assert_eq!(store(&mut mem, &mut cache, PAGE + 0x20a, &[0x90]), 1);
        assert!(!held(&cache, key));
    }
}
