//! The shadow page tables: the translations the page walker found, kept per guest address
//! space across CR3 switches and coherent with the guest's page tables by write tracking.
//!
//! The software TLB in front of guest memory ([`crate::memory`]) holds the current address
//! space only: a MOV to CR3 drops its non-global entries, as the SDM requires of a TLB. The
//! tables here sit behind it. A TLB miss looks here before walking, so a process that runs
//! again after a context switch refills its TLB entries without walking its page tables.
//!
//! Why this is exact:
//! - Every paging-structure entry a cached translation was computed from is recorded (its
//!   physical address, in the walk's [`Trace`]), and the page holding it becomes *tracked*
//!   ([`PhysMem::is_table_page`]). A tracked page never gets a TLB write tag, so every store
//!   to it reaches [`PhysMem::write_phys`], which untracks it and queues it; before the next
//!   lookup, [`ShadowTables::sync`] drops every translation that depended on a queued page.
//!   A translation kept in a space's table therefore always equals what a walk of the
//!   current paging structures would give.
//! - The A and D bits are the exception that proves it: the walker's own A/D updates do not
//!   count as writes ([`PhysMem::write_paging_entry`]). A translation exists only if its walk
//!   set the A bits, and the guest clearing one is a tracked write; a translation whose D bit
//!   was clear has no write permission cached ([`crate::paging::Translation::dirty`]), so the
//!   first write walks and sets it.
//! - Global translations (G set, CR4.PGE) live in one table shared by every address space,
//!   as a TLB keeps them across CR3 writes (SDM Vol. 3 4.10.2.4: a global entry may be used
//!   whatever CR3 holds). Unlike the per-space tables they may be stale with respect to the
//!   current space's tables, which the SDM allows until INVLPG (or INVPCID) drops the page
//!   ([`ShadowTables::invalidate_global`]), or a full flush drops everything.
//! - Anything a translation depends on besides the paging structures (the paging mode,
//!   CR4.PSE/PGE, EFER.NXE) changes only with a full TLB flush, which clears these tables
//!   too ([`crate::state::CpuState::flush_tlb`]). CR0.WP, SMEP, SMAP and the protection-key
//!   rights are applied at each use ([`crate::paging::permits`]), not cached.
//!
//! Translations are kept per page of the size the guest mapped (4 KiB, 2 MiB, 4 MiB, 1 GiB),
//! keyed by the page's linear base, so a large page costs one entry, and INVLPG of any
//! address in it finds that entry.
//!
//! The tables are bounded: at most [`MAX_SPACES`] address spaces (the least recently used
//! goes), and [`MAX_ENTRIES`] translations or [`MAX_DEPS`] dependency records in all, past
//! which everything is dropped (the records of dropped translations are not hunted down one
//! by one; a stale record only costs a spurious drop later).

use std::collections::HashMap;
use std::hash::BuildHasherDefault;

use rustc_hash::FxHasher;

use crate::memory::PhysMem;
use crate::paging::{PagingMode, Trace, Translation};

type Map<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

/// Address spaces kept at once.
pub const MAX_SPACES: usize = 64;
/// Translations kept at once, in all spaces.
pub const MAX_ENTRIES: usize = 1 << 17;
/// Dependency records (translation, paging-structure page) kept at once.
pub const MAX_DEPS: usize = 4 * MAX_ENTRIES;

/// The space id of the global table.
const GLOBAL: u32 = 0;

/// The counters the shadow tables keep, for `--stats`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ShadowStats {
    /// TLB misses answered from the shadow tables, without a walk (counted by the memory
    /// slow paths, which know whether the kept translation allowed the access).
    pub hits: u64,
    /// Translations added after a walk.
    pub fills: u64,
    /// Stores into tracked paging-structure pages.
    pub tracked_writes: u64,
    /// Translations dropped because a paging-structure page they depend on was written.
    pub dropped: u64,
    /// Whole-table clears: full TLB flushes, and the size bounds.
    pub flushes: u64,
    /// Address spaces evicted to make room for another.
    pub evictions: u64,
    /// Switches to an address space whose translations were kept (CR3 writes that found
    /// their space already there).
    pub space_reuses: u64,
    /// Compactions of a paging-structure page's dependency list (see `COMPACT_AT`).
    pub compactions: u64,
}

/// One guest address space's translations, by the linear base of each page.
struct Space {
    /// The paging-structure root (CR3 without its flag and PCID bits).
    root: u64,
    id: u32,
    map: Map<u64, Translation>,
}

/// A translation that depends on a paging-structure page: which table holds it, under
/// which key.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Dep {
    space: u32,
    key: u64,
}

/// The shadow page tables of one vCPU (see the module documentation).
#[derive(Default)]
pub struct ShadowTables {
    /// Per-space tables, most recently used last.
    spaces: Vec<Space>,
    /// Global translations, shared by every space.
    global: Map<u64, Translation>,
    /// Paging-structure page (physical page number) -> the translations computed from it.
    deps: Map<u64, Vec<Dep>>,
    entries: usize,
    dep_records: usize,
    next_id: u32,
    /// The [`PhysMem::id`] whose tracking these tables rely on.
    mem_id: u64,
    /// Emptied dependency lists and written-page queues kept for reuse: the steady state of
    /// a guest that keeps rewriting its page tables allocates nothing.
    spare: Vec<Vec<Dep>>,
    written: Vec<u64>,
    /// Counters for `--stats`.
    pub stats: ShadowStats,
}

/// The paging-structure pages a fill started tracking (at most one per level).
#[derive(Clone, Copy, Debug, Default)]
pub struct NewlyTracked {
    pages: [u64; 4],
    len: usize,
}

impl NewlyTracked {
    /// The pages' physical addresses.
    pub fn pages(&self) -> &[u64] {
        &self.pages[..self.len]
    }
}

/// Emptied lists kept for reuse at most.
const SPARE_LISTS: usize = 256;

/// A page's dependency list is compacted when it is full (its length reaches its capacity)
/// from this length up. A list still more than half full after compacting gets twice the
/// capacity, so a compaction of C records follows at least C/2 additions: the cost per
/// record added stays constant whatever the share of live records. (Compacting at each
/// power of two instead compacted a list whose live records sat just below one every few
/// additions: a kernel table shared by every process, 2% of the page-fault workload.)
const COMPACT_AT: usize = 64;

/// Drops the duplicate records of `list` and those whose translation is gone. Translations
/// are dropped without hunting down their records in the lists of the other pages they
/// depended on, and refilled ones add records again: without this, the list of a page that
/// is never written (a kernel's upper-level table, which every process shares) would grow
/// until the bound clears everything. Compacting at each doubling keeps a list within twice
/// its live records at a constant cost per record added.
fn compact(list: &mut Vec<Dep>, spaces: &[Space], global: &Map<u64, Translation>) {
    list.sort_unstable();
    list.dedup();
    let mut at: Option<(u32, Option<&Space>)> = None;
    list.retain(|d| {
        if d.space == GLOBAL {
            return global.contains_key(&d.key);
        }
        let space = match at {
            Some((id, s)) if id == d.space => s,
            _ => {
                let s = spaces.iter().find(|s| s.id == d.space);
                at = Some((d.space, s));
                s
            }
        };
        space.is_some_and(|s| s.map.contains_key(&d.key))
    });
}

/// The linear-address bits that select pages under `mode`.
fn linear_mask(mode: PagingMode) -> u64 {
    match mode {
        PagingMode::Level4 => u64::MAX,
        _ => 0xffff_ffff,
    }
}

/// The page sizes `mode` can map, smallest first.
fn page_sizes(mode: PagingMode) -> &'static [u64] {
    match mode {
        PagingMode::Off => &[],
        PagingMode::Bits32 => &[1 << 12, 1 << 22],
        PagingMode::Pae => &[1 << 12, 1 << 21],
        PagingMode::Level4 => &[1 << 12, 1 << 21, 1 << 30],
    }
}

/// The entry of `map` that maps `linear`, trying each page size `mode` allows.
fn find(map: &Map<u64, Translation>, mode: PagingMode, linear: u64) -> Option<Translation> {
    page_sizes(mode).iter().find_map(|&size| {
        let key = linear & !(size - 1);
        map.get(&key)
            .filter(|t| linear - key < t.page_size)
            .map(|t| Translation {
                phys: t.phys + (linear - key),
                ..*t
            })
    })
}

impl ShadowTables {
    /// Empty tables.
    pub fn new() -> ShadowTables {
        ShadowTables {
            next_id: GLOBAL + 1,
            ..ShadowTables::default()
        }
    }

    /// Drops every translation (a full TLB flush, or a bound reached).
    pub fn clear(&mut self) {
        if self.entries != 0 || !self.spaces.is_empty() {
            self.stats.flushes += 1;
        }
        self.spaces.clear();
        self.global.clear();
        self.deps.clear();
        self.entries = 0;
        self.dep_records = 0;
    }

    /// Number of translations kept.
    pub fn len(&self) -> usize {
        self.entries
    }

    /// True when no translation is kept.
    pub fn is_empty(&self) -> bool {
        self.entries == 0
    }

    /// Brings the tables up to date with the stores into tracked pages since the last call,
    /// and with `mem` itself (tables built against other memory are dropped). Called before
    /// every lookup and fill.
    pub fn sync(&mut self, mem: &mut PhysMem) {
        if self.mem_id != mem.id() {
            self.clear();
            self.mem_id = mem.id();
        }
        if !mem.has_written_tables() {
            return;
        }
        let mut written = std::mem::take(&mut self.written);
        self.stats.tracked_writes += mem.swap_written_tables(&mut written);
        for &page in &written {
            self.page_written(page);
        }
        written.clear();
        self.written = written;
    }

    /// Drops the translations computed from paging-structure page `page` (a page number).
    fn page_written(&mut self, page: u64) {
        let Some(mut deps) = self.deps.remove(&page) else {
            return;
        };
        self.dep_records -= deps.len();
        for d in deps.drain(..) {
            let removed = if d.space == GLOBAL {
                self.global.remove(&d.key)
            } else {
                self.spaces
                    .iter_mut()
                    .find(|s| s.id == d.space)
                    .and_then(|s| s.map.remove(&d.key))
            };
            if removed.is_some() {
                self.entries -= 1;
                self.stats.dropped += 1;
            }
        }
        if self.spare.len() < SPARE_LISTS {
            self.spare.push(deps);
        }
    }

    /// The kept translation of `linear` in the address space rooted at `root`, or a global
    /// one. The caller checks that it permits the access ([`crate::paging::permits`]).
    pub fn lookup(&mut self, root: u64, mode: PagingMode, linear: u64) -> Option<Translation> {
        let linear = linear & linear_mask(mode);
        let n = self.spaces.len();
        let found = match self.spaces.iter().rposition(|s| s.root == root) {
            Some(i) => {
                if i + 1 != n {
                    // A context switch back to a space: make it the most recently used.
                    let s = self.spaces.remove(i);
                    self.spaces.push(s);
                    self.stats.space_reuses += 1;
                }
                find(&self.spaces[n - 1].map, mode, linear)
            }
            None => None,
        };
        found.or_else(|| find(&self.global, mode, linear))
    }

    /// Keeps the translation `t` of `linear` that a walk under `root` found, with the
    /// paging-structure entries it read (`trace`), tracking their pages in `mem`. Returns the
    /// pages that were not tracked before: the caller must take write permission for them
    /// out of its TLB, so that stores to them reach [`PhysMem::write_phys`].
    pub fn insert(
        &mut self,
        mem: &mut PhysMem,
        root: u64,
        mode: PagingMode,
        linear: u64,
        t: &Translation,
        trace: &Trace,
    ) -> NewlyTracked {
        let mut newly = NewlyTracked::default();
        let addrs = trace.entries();
        if mode == PagingMode::Off || addrs.iter().any(|&a| !mem.is_ram(a, 8)) {
            // Paging structures outside RAM cannot be tracked.
            return newly;
        }
        if self.entries >= MAX_ENTRIES || self.dep_records + addrs.len() > MAX_DEPS {
            self.clear();
        }
        let key = linear & linear_mask(mode) & !(t.page_size - 1);
        let stored = Translation {
            phys: t.phys & !(t.page_size - 1),
            ..*t
        };
        let space = if t.global {
            GLOBAL
        } else {
            self.space_id(root)
        };
        let map = if space == GLOBAL {
            &mut self.global
        } else {
            let last = self.spaces.len() - 1;
            &mut self.spaces[last].map
        };
        let old = map.insert(key, stored);
        self.stats.fills += 1;
        match old {
            None => self.entries += 1,
            // The same translation again (a walk that set the D bit, or a global one from
            // another space): its dependencies are recorded already, and a global one may
            // keep those of the space it came from.
            Some(o)
                if Translation {
                    dirty: o.dirty,
                    ..stored
                } == o =>
            {
                return newly
            }
            Some(_) => {}
        }
        for &a in addrs {
            let spare = &mut self.spare;
            let list = self
                .deps
                .entry(a >> 12)
                .or_insert_with(|| spare.pop().unwrap_or_default());
            if list.len() >= COMPACT_AT && list.len() == list.capacity() {
                let before = list.len();
                compact(list, &self.spaces, &self.global);
                self.stats.compactions += 1;
                self.dep_records -= before - list.len();
                if 2 * list.len() > list.capacity() {
                    list.reserve(list.capacity());
                }
            }
            list.push(Dep { space, key });
            self.dep_records += 1;
            if mem.track_table_page(a) {
                newly.pages[newly.len] = a & !0xfff;
                newly.len += 1;
            }
        }
        newly
    }

    /// The id of the space rooted at `root`, made the most recently used, creating it (and
    /// evicting the least recently used one) if needed.
    fn space_id(&mut self, root: u64) -> u32 {
        if let Some(i) = self.spaces.iter().rposition(|s| s.root == root) {
            let s = self.spaces.remove(i);
            self.spaces.push(s);
        } else {
            if self.spaces.len() >= MAX_SPACES {
                let gone = self.spaces.remove(0);
                self.entries -= gone.map.len();
                self.stats.evictions += 1;
            }
            // Never GLOBAL, even for tables made by `Default`.
            let id = self.next_id.max(GLOBAL + 1);
            // After 2^32 spaces an id comes back while stale records may still name it:
            // harmless, since a stale record only ever drops a translation.
            self.next_id = id.wrapping_add(1).max(GLOBAL + 1);
            self.spaces.push(Space {
                root,
                id,
                map: Map::default(),
            });
        }
        self.spaces[self.spaces.len() - 1].id
    }

    /// Drops the global translation of the page holding `linear`, of any size (INVLPG and
    /// INVPCID of one address). Per-space translations stay: they are coherent with the
    /// paging structures whatever the guest invalidates.
    pub fn invalidate_global(&mut self, linear: u64) {
        for size in [1u64 << 12, 1 << 21, 1 << 22, 1 << 30] {
            for mask in [u64::MAX, 0xffff_ffff] {
                if self.global.remove(&(linear & mask & !(size - 1))).is_some() {
                    self.entries -= 1;
                }
            }
        }
    }

    /// Number of address spaces kept.
    pub fn spaces(&self) -> usize {
        self.spaces.len()
    }
}

impl Clone for ShadowTables {
    /// A copy of a vCPU starts with empty tables: they are a cache, and the copy may run
    /// against other memory.
    fn clone(&self) -> ShadowTables {
        ShadowTables {
            stats: self.stats,
            ..ShadowTables::new()
        }
    }
}

impl std::fmt::Debug for ShadowTables {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShadowTables")
            .field("spaces", &self.spaces.len())
            .field("entries", &self.entries)
            .field("stats", &self.stats)
            .finish()
    }
}

#[cfg(test)]
mod tests;
