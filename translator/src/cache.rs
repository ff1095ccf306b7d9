//! The translation cache: blocks by [`BlockKey`], a direct-mapped lookup table in front of a
//! hash map, tiering from the interpreter to the JIT, chaining between compiled blocks, and
//! invalidation of every block on a physical page.
//!
//! Both halves of the cache are bounded, so that a guest cannot grow host memory by running
//! code at ever-new addresses. The compiled code lives in a fixed-size arena; when it is
//! full, every block's code is dropped and the blocks stay decoded ([`CacheStats::flushes`]).
//! The decoded blocks and their bookkeeping are charged against a budget of host bytes (the
//! same size as the arena, [`Cache::block_budget`]); when a new block must be decoded and
//! the budget is spent, every block is dropped first ([`CacheStats::capacity_flushes`]).
//! Like QEMU's TCG, which flushes its whole code buffer when it fills, the cache flushes
//! whole rather than evicting a block at a time: no per-block recency to keep on the hot
//! lookup path, no chain links to unpick block by block, and a guest whose working set fits
//! never sees it. Capacity flushes happen only in [`Cache::lookup`], which the run loop
//! calls between blocks, when no generated code runs and no block id is held; results of
//! background compiles for dropped blocks are recognised by their serial and thrown away.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::AtomicU32;
use std::sync::Arc;
use std::time::Instant;

use crane86_runtime::memory::{probe_fetch_phys, PAGE_SIZE};
use crane86_runtime::{BlockKey, CpuState, PhysMem};

use crate::decode::{decode_block, DecodedBlock};
use crate::emit::Ctx;
use crate::jit::arena::CodeArena;
use crate::jit::direct::DIRECT_SLOTS;
use crate::jit::shims::{Helper, Shims};
use crate::jit::worker::{CompileWorker, Done, Job};
use crate::jit::{
    fresh_slots, ChainInfo, Jit, JitError, JitOptions, SecondPage, SlotWords, ADDEND_UNLINKED,
};

mod baseline;
mod compile;
#[cfg(test)]
mod crossing_tests;
#[cfg(test)]
mod direct_tests;
mod flush;
#[cfg(test)]
mod jump_cache_tests;
mod link;
mod region;
#[cfg(test)]
mod ret_remap_tests;
#[cfg(test)]
mod ret_tests;
mod smc;
mod stats;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tier_tests;
pub use baseline::{ColdRun, DEFAULT_BASELINE_RUNS};
pub use stats::{BaselineStats, CacheStats, InterpRuns, TierStats};

/// Which back end runs blocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tier {
    /// Interpret everything.
    Interp,
    /// Compile every block before its first run.
    Jit,
    /// Interpret until a block has run `threshold` times, then compile it.
    Auto {
        /// Runs before a block is compiled.
        threshold: u32,
    },
    /// Translate every block the baseline covers before its first run, interpret the rest,
    /// never compile with Cranelift: for testing the baseline tier ([`crate::baseline`]).
    Baseline,
}

impl Tier {
    /// Whether a block that has run `runs` times should be compiled.
    fn hot(self, runs: u32) -> bool {
        match self {
            Tier::Interp | Tier::Baseline => false,
            Tier::Jit => true,
            Tier::Auto { threshold } => runs >= threshold,
        }
    }
}

/// Identifies a block in the cache.
pub type BlockId = u32;

/// A cached block.
pub struct Block {
    /// Its key.
    pub key: BlockKey,
    /// The decoded instructions (the interpreter runs these).
    pub decoded: DecodedBlock,
    /// Physical pages the block's bytes lie on (the second only if it crosses a page).
    pub pages: [Option<u64>; 2],
    /// For a block that crosses a page: the linear page its tail was fetched from. The key
    /// names only the first page, so each lookup re-checks that this page still maps to
    /// `pages[1]`.
    pub second_linear: Option<u64>,
    /// The same page with its TLB addend, when paging is on and the page is RAM: the block's
    /// code checks it on entry ([`crate::jit::SecondPage`]), so the block is a chain target
    /// like any other. Blocks that cross a page under paging without it are entered only from
    /// the run loop.
    pub second_page: Option<SecondPage>,
    /// How often the block has run (saturating), for tiering.
    pub runs: u32,
    /// Unique among all blocks this cache ever held (ids are reused), so that background
    /// compile results find the block they were made for.
    serial: u64,
    /// Queued for the background compiler.
    queued: bool,
    /// While queued: its runs since, shared with the queued job, which the compiler takes
    /// hottest first ([`crate::jit::worker`]).
    heat: Option<Arc<AtomicU32>>,
    /// While queued: its runs since, which `heat` shows every `HEAT_STEP`-th.
    queued_runs: u32,
    /// A member of another block's region (compiled or queued): compiled alone itself, so
    /// that a loop is compiled as a region once, from the first of its blocks to turn hot.
    in_region: bool,
    /// Compiled code, once it exists.
    pub code: Option<*const u8>,
    /// Baseline code ([`crate::baseline`]), which runs in the interpreter's place until
    /// `code` exists, once translated.
    pub baseline: Option<*const u8>,
    /// Baseline translation was tried (it is never tried twice for a block's decoding).
    baseline_tried: bool,
    /// That code's chain entry (other baseline blocks jump there), and whether the code
    /// itself chains on.
    baseline_chain: Option<(*const u8, bool)>,
    /// The slots that code reads; boxed so their address is stable.
    baseline_slots: Option<Box<crate::baseline::BaselineSlots>>,
    /// Blocks whose baseline code may be linked to this block's (their slots are cleared
    /// when this block's baseline code must not be entered any more).
    baseline_incoming: Vec<BlockId>,
    /// That code's direct exits (the jumps the cache patches when it links them) and the
    /// targets of its chain slots.
    chain: Box<ChainInfo>,
    /// Where that code was cut (offsets from there on lie in its cold part, at
    /// `cold_code`; see [`crate::jit::split`]), or `u32::MAX`.
    cut_at: u32,
    /// The cold part of that code.
    cold_code: *const u8,
    /// That code is quick code, which counts its runs to be compiled again optimised
    /// ([`crate::jit::ChainSlots::tier_up`]).
    quick: bool,
    /// The chain slots (two for direct exits, one for the return after a near CALL) that
    /// generated code reads; boxed so their address is stable.
    slots: Box<SlotWords>,
    /// For a runtime-class block compiled to run its instruction from generated code: a copy
    /// of `decoded` at a stable address, which that code hands the interpreter (see
    /// `crate::rewrite`); it lives as long as the block, and so as long as the code.
    runtime: Option<Box<DecodedBlock>>,
    /// Chain slots of other blocks that point at this block's code.
    incoming: Vec<(BlockId, u8)>,
    /// Targets this block's slots point at.
    outgoing: [Option<BlockId>; 3],
    /// The last two blocks [`Cache::lookup_after`] found after this one, newest first, with
    /// their instruction pointers, so that only the candidate that may match is read
    /// ([`NO_ID`]: none).
    next: [(u64, BlockId); 2],
}

/// No block (an id no block ever has).
const NO_ID: BlockId = BlockId::MAX;

impl Block {
    /// Tells the background compiler to skip this block's job, if one is queued: the block
    /// is being dropped.
    fn cancel_compile(&self) {
        if let Some(h) = &self.heat {
            h.store(
                crate::jit::worker::CANCELLED,
                std::sync::atomic::Ordering::Relaxed,
            );
        }
    }

    /// The instruction pointer the block was decoded at.
    pub fn start_ip(&self) -> u64 {
        self.decoded.insns.first().map_or(0, |d| d.insn.ip())
    }

    /// Empties chain slot `slot` (its target is gone or may no longer be entered), pointing
    /// its direct jumps back at their stub.
    fn unlink(&mut self, slot: usize, arena: &mut CodeArena) {
        self.slots[slot] = 0;
        self.slots[3 + slot] = ADDEND_UNLINKED;
        self.outgoing[slot] = None;
        self.aim(slot, None, arena);
    }

    /// Points the direct jumps of chain slot `slot` at `to`, or at the slot's stub (`None`).
    /// False when a jump cannot reach `to` (the jumps then all lead to the stub).
    fn aim(&self, slot: usize, to: Option<*const u8>, arena: &mut CodeArena) -> bool {
        if self.code.is_none() || slot >= DIRECT_SLOTS {
            return true;
        }
        let stub = self.code_at(self.chain.stubs[slot]);
        let mut ok = true;
        for site in self.chain.sites_of(slot) {
            ok &= arena.patch_jump(self.code_at(site.offset), to.unwrap_or(stub));
        }
        if !ok && to.is_some() {
            for site in self.chain.sites_of(slot) {
                arena.patch_jump(self.code_at(site.offset), stub);
            }
        }
        ok
    }

    /// Where offset `x` of the block's code (as compiled, before the cut) lies.
    fn code_at(&self, x: u32) -> *const u8 {
        let code = self.code.unwrap_or(std::ptr::null());
        if x < self.cut_at {
            code.wrapping_add(x as usize)
        } else {
            self.cold_code.wrapping_add((x - self.cut_at) as usize)
        }
    }
}

/// Entries of the direct-mapped lookup table in front of the hash map (40 bytes each), which
/// `jump_lookup` also reads. 1 << 15 entries thrashed on a fork/exec loop, where kernel and
/// short-lived user blocks compete: 2.0 M of its lookups fell through to the hash map and
/// each such miss in `jump_lookup` was a run-loop round trip; with 1 << 17, 0.7 M (run-loop
/// returns 7.1 M -> 5.8 M over the run).
const FAST_SIZE: usize = 1 << 17;

/// The smallest decoded-block budget, so that a tiny code arena still leaves room for a
/// working set of a few hundred blocks.
const MIN_BLOCK_BUDGET: usize = 256 << 10;

/// Background compiles queued at most: beyond it a hot block stays interpreted until the
/// worker catches up, so that the queue (each job holds a copy of its block) stays bounded.
const MAX_IN_FLIGHT: usize = 1024;

/// Host bytes a block is charged against the budget: the block itself, its instruction
/// vector, its boxed chain slots, its share of the hash map, the page index and the chain
/// links it may gain, and an allocator header per heap allocation. An estimate, but one that grows with everything a block holds.
fn block_cost(b: &Block) -> usize {
    const ALLOC_HEADER: usize = 16;
    let insns = b.decoded.insns.capacity() * std::mem::size_of::<crate::decode::DecodedInsn>();
    let map = 2 * std::mem::size_of::<(BlockKey, BlockId)>();
    // A block gains at most three links in all (its own three slots), but a target's
    // `incoming` vector starts at four entries.
    let links = 4 * std::mem::size_of::<(BlockId, u8)>();
    // Charged as if the block were alone on its pages: a page-index entry and its vector.
    let pages = b.pages.iter().flatten().count()
        * (std::mem::size_of::<(u64, Vec<BlockId>)>()
            + std::mem::size_of::<BlockId>()
            + ALLOC_HEADER);
    std::mem::size_of::<Option<Block>>()
        + insns
        + std::mem::size_of::<SlotWords>()
        + map
        + links
        + pages
        + 3 * ALLOC_HEADER
}

/// An entry of the direct-mapped table in front of the cache's hash map. Generated code reads
/// it too (through [`crate::jit::helpers::jump_lookup`], which gets the table's address as a
/// constant): `code` is the block's compiled code when generated code may jump to it without
/// the run loop, else 0.
#[derive(Clone, Copy, Debug)]
pub(crate) struct FastEntry {
    pub(crate) key: BlockKey,
    pub(crate) id: BlockId,
    pub(crate) code: u64,
}
const PAGE_MASK: u64 = !(PAGE_SIZE - 1);

/// Copies physical memory into `out`; what lies beyond RAM reads as 0xff.
/// True for a block that crosses into a second page under paging without code that checks
/// that page on entry ([`Block::second_page`]): only the run loop, which re-checks the page at
/// every lookup, may enter it.
fn unguarded_crossing(b: &Block) -> bool {
    b.key.paging() && b.second_linear.is_some() && b.second_page.is_none()
}

fn copy_phys(mem: &PhysMem, phys: u64, out: &mut [u8]) {
    let ram = mem.ram();
    let start = (phys as usize).min(ram.len());
    let n = out.len().min(ram.len() - start);
    out[..n].copy_from_slice(&ram[start..start + n]);
    out[n..].fill(0xff);
}

/// Decoding needs guest bytes; the cache gets them through this.
pub struct Fetch<'a> {
    /// Guest memory.
    pub mem: &'a PhysMem,
}

/// The translation cache. See the module documentation.
pub struct Cache {
    /// Where the vCPU thread records that it translates (`crane86_runtime::phase`).
    phase: crane86_runtime::phase::PhaseCell,
    blocks: Vec<Option<Block>>,
    free: Vec<BlockId>,
    map: HashMap<BlockKey, BlockId>,
    /// Never reallocated: compiled code holds its address.
    fast: Box<[FastEntry]>,
    by_page: HashMap<u64, Vec<BlockId>>,
    /// Per code page: stores into it that missed all its blocks since its blocks were last
    /// dropped (see [`Cache::invalidate_written`]).
    spared: HashMap<u64, u32>,
    arena: CodeArena,
    /// The trampoline lives in an arena of its own that is never reset.
    _tramp_arena: CodeArena,
    jit: Jit,
    trampoline: *const u8,
    tier: Tier,
    /// The background compiler (`--tier auto` with [`JitOptions::background`]).
    worker: Option<CompileWorker>,
    /// [`JitOptions::count_chains`].
    count_chains: bool,
    /// [`JitOptions::tiered`] (with `optimize`).
    tiered: bool,
    /// [`JitOptions::tier_up_runs`].
    tier_up_runs: u64,
    /// The helper shims, in the trampoline's arena.
    shims: Shims,
    /// The serial number of the next block.
    next_serial: u64,
    /// The epoch that return-address predictions are checked against
    /// ([`crane86_runtime::rsb`]): replaced by a never-used value whenever a block or
    /// compiled code is dropped. Boxed: generated code reads it at a fixed address.
    epoch: Box<u64>,
    /// `/tmp/perf-PID.map`, when asked for (see [`Cache::enable_perf_map`]).
    perf_map: Option<std::io::BufWriter<std::fs::File>>,
    /// Linear addresses the run loop must reach before the instruction there runs (a
    /// debugger's breakpoints, see [`Cache::set_entry_barriers`]).
    barriers: BTreeSet<u64>,
    /// Runs of a block without compiled code before it gets baseline code (0: never).
    baseline_runs: u32,
    /// Host bytes the live blocks are charged ([`block_cost`]).
    decoded_bytes: usize,
    /// The most `decoded_bytes` may reach before the next new block flushes the cache.
    block_budget: usize,
    /// Statistics.
    pub stats: CacheStats,
}

/// Errors of the cache: only host-side failures (memory, Cranelift), never guest behaviour.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// The JIT failed.
    #[error(transparent)]
    Jit(#[from] JitError),
    /// The code arena could not be created.
    #[error("cannot create the code arena: {0}")]
    Arena(std::io::Error),
    /// A single block does not fit in an empty arena.
    #[error("a compiled block of {0} bytes does not fit in the code arena")]
    TooBig(usize),
}

/// An empty slot of the direct-mapped table: no key has every mode bit set.
const NO_BLOCK: BlockKey = BlockKey {
    ip: u64::MAX,
    cs_base: u64::MAX,
    bits: u64::MAX,
};

const NO_ENTRY: FastEntry = FastEntry {
    key: NO_BLOCK,
    id: 0,
    code: 0,
};

/// A cache epoch never issued before, by any cache in the process (two caches may run the
/// same `CpuState` one after the other, so each one's predictions must fail in the other).
/// Never 0, the epoch of an empty prediction.
fn new_epoch() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

pub(crate) fn fast_index(key: BlockKey) -> usize {
    // The physical address usually equals or mirrors the IP (XORing the two would cancel
    // out under identity mappings), so hash the IP, the CS base and the mode bits only.
    let k = key.ip ^ key.cs_base.rotate_left(7) ^ key.mode_bits();
    ((k ^ (k >> 12)) as usize) & (FAST_SIZE - 1)
}

impl Cache {
    /// A cache using `tier`, with `arena_bytes` of executable memory, and as many host bytes
    /// (at least 256 KiB) for the decoded blocks (see the module documentation).
    pub fn new(tier: Tier, arena_bytes: usize, opts: JitOptions) -> Result<Cache, CacheError> {
        // Build the opcode table now, so its one-time cost is not charged to the first block.
        crate::table::lookup(iced_x86::Code::INVALID);
        let arena = CodeArena::new(arena_bytes).map_err(CacheError::Arena)?;
        let mut tramp_arena = CodeArena::new(16 << 10).map_err(CacheError::Arena)?;
        let mut jit = Jit::new(opts)?;
        let worker = match tier {
            Tier::Auto { .. } if opts.background => Some(CompileWorker::start(opts)?),
            _ => None,
        };
        let tramp = jit.compile_trampoline()?;
        let trampoline = tramp_arena
            .alloc(&tramp)
            .ok_or(CacheError::TooBig(tramp.len()))?;
        let mut shims = Shims::default();
        for h in Helper::ALL {
            let code = jit.compile_shim(h)?;
            let at = tramp_arena
                .alloc(&code)
                .ok_or(CacheError::TooBig(code.len()))?;
            shims.addr[h as usize] = at as u64;
        }
        Ok(Cache {
            phase: Default::default(),
            blocks: Vec::new(),
            free: Vec::new(),
            map: HashMap::new(),
            fast: vec![NO_ENTRY; FAST_SIZE].into_boxed_slice(),
            by_page: HashMap::new(),
            spared: HashMap::new(),
            arena,
            _tramp_arena: tramp_arena,
            jit,
            trampoline,
            tier,
            worker,
            next_serial: 0,
            epoch: Box::new(new_epoch()),
            perf_map: None,
            barriers: BTreeSet::new(),
            decoded_bytes: 0,
            baseline_runs: match tier {
                Tier::Baseline => 1,
                Tier::Auto { .. } => DEFAULT_BASELINE_RUNS,
                Tier::Interp | Tier::Jit => 0,
            },
            block_budget: arena_bytes.max(MIN_BLOCK_BUDGET),
            stats: CacheStats::default(),
            count_chains: opts.count_chains,
            tiered: opts.tiered && opts.optimize,
            tier_up_runs: opts.tier_up_runs.max(1),
            shims,
        })
    }

    /// Starts writing `/tmp/perf-PID.map`, the file Linux `perf report` reads to name code
    /// that has no symbols: one line per compiled block, `guest_<rip>_<cs base>`, so host
    /// profiles attribute time to guest blocks. Returns the path.
    pub fn enable_perf_map(&mut self) -> std::io::Result<std::path::PathBuf> {
        let path = std::path::PathBuf::from(format!("/tmp/perf-{}.map", std::process::id()));
        let file = std::fs::File::create(&path)?;
        self.perf_map = Some(std::io::BufWriter::new(file));
        Ok(path)
    }

    fn record_perf_map(&mut self, ptr: *const u8, len: usize, key: BlockKey, tag: &str) {
        use std::io::Write;
        let Some(w) = self.perf_map.as_mut() else {
            return;
        };
        // perf reads the file when it reports, after the run: buffered writes suffice, and a
        // failed write only loses names, so it turns the map off rather than the machine.
        let line = writeln!(
            w,
            "{:x} {:x} guest_{:x}_{:x}{tag}",
            ptr as usize, len, key.ip, key.cs_base
        );
        if line.and_then(|()| w.flush()).is_err() {
            tracing::warn!("cannot write the perf map; no more block names are recorded");
            self.perf_map = None;
        }
    }

    /// The tier policy.
    pub fn tier(&self) -> Tier {
        self.tier
    }

    /// The entry trampoline (see [`crate::jit::Jit::compile_trampoline`]).
    pub fn trampoline(&self) -> *const u8 {
        self.trampoline
    }

    /// The block with this id.
    pub fn block(&self, id: BlockId) -> &Block {
        self.blocks[id as usize].as_ref().expect("live block id")
    }

    fn block_mut(&mut self, id: BlockId) -> &mut Block {
        self.blocks[id as usize].as_mut().expect("live block id")
    }

    /// Number of live blocks.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True when no block is cached.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Bytes of the code arena in use.
    pub fn code_used(&self) -> usize {
        self.arena.used()
    }

    /// Host bytes the live decoded blocks are charged (an estimate of what they hold).
    pub fn decoded_bytes(&self) -> usize {
        self.decoded_bytes
    }

    /// The budget of [`Cache::decoded_bytes`]: a new block that finds it spent flushes the
    /// cache first.
    pub fn block_budget(&self) -> usize {
        self.block_budget
    }

    /// Records translation work in `cell` from now on (see `crane86_runtime::phase`).
    pub fn set_phase_cell(&mut self, cell: crane86_runtime::phase::PhaseCell) {
        self.phase = cell;
    }

    /// Records `Translate` as the vCPU thread's phase until the guard drops.
    fn translating(&self) -> crane86_runtime::phase::PhaseGuard {
        self.phase.enter(crane86_runtime::phase::Phase::Translate)
    }

    /// Finds the block for `key`, decoding it from guest memory if needed. `cpu` is the CPU
    /// about to run it: a block whose tail lies on another page needs that page's current
    /// translation.
    pub fn lookup(&mut self, key: BlockKey, cpu: &mut CpuState, mem: &mut PhysMem) -> BlockId {
        self.stats.lookups += 1;
        let fi = fast_index(key);
        let FastEntry { key: k, id, .. } = self.fast[fi];
        let found = if k == key {
            self.stats.fast_hits += 1;
            Some(id)
        } else if let Some(&id) = self.map.get(&key) {
            self.stats.map_hits += 1;
            self.fast[fi] = self.fast_entry(id);
            Some(id)
        } else {
            None
        };
        if let Some(id) = found {
            let b = self.block(id);
            // An empty block stands for a fetch that faulted: look again each time, the
            // page may be mapped by now.
            let stale = b.decoded.insns.is_empty()
                || b.second_linear.is_some_and(|lin| {
                    probe_fetch_phys(cpu, mem, lin).map(|p| p & PAGE_MASK) != b.pages[1]
                });
            if !stale {
                return id;
            }
            self.remove(id, mem);
            self.stats.invalidated_remap += 1;
            // The exit that led here may belong to the block just dropped, whose id the
            // new block can take: it must not be linked.
            cpu.link = 0;
        }
        self.stats.misses += 1;
        if self.decoded_bytes >= self.block_budget {
            // The safe point: the run loop holds no block between lookups, and no generated
            // code runs. The exit that led here names a block about to be dropped.
            self.stats.capacity_flushes += 1;
            self.stats.evicted += self.map.len() as u64;
            self.flush(mem);
            cpu.link = 0;
        }
        let id = self.insert(key, cpu, mem);
        self.fast[fi] = self.fast_entry(id);
        id
    }

    /// [`Cache::lookup`] for the block that runs after block `from` (live), which the
    /// interpreter just ran: first among the two blocks found after it last, whose key is
    /// compared, then in the tables. A block that goes where it went before so skips the
    /// direct-mapped table, a cache miss that was half of each lookup while the Debian
    /// kernel's init phase ran its blocks interpreted. Only blocks that need none of
    /// [`Cache::lookup`]'s re-checks are taken from the memo (not an empty block for a fetch
    /// that faulted, not one crossing into a second page).
    pub fn lookup_after(
        &mut self,
        from: BlockId,
        key: BlockKey,
        cpu: &mut CpuState,
        mem: &mut PhysMem,
    ) -> BlockId {
        let (from_key, memo) = {
            let b = self.block(from);
            (b.key, b.next)
        };
        for (ip, m) in memo {
            if ip != key.ip {
                continue;
            }
            let hit = self
                .blocks
                .get(m as usize)
                .and_then(Option::as_ref)
                .is_some_and(|b| {
                    b.key == key && !b.decoded.insns.is_empty() && b.second_linear.is_none()
                });
            if hit {
                self.stats.lookups += 1;
                self.stats.successor_hits += 1;
                return m;
            }
        }
        let id = self.lookup(key, cpu, mem);
        // The lookup may have flushed the cache, `from` with it (its id may even name
        // another block now).
        if let Some(b) = self
            .blocks
            .get_mut(from as usize)
            .and_then(Option::as_mut)
            .filter(|b| b.key == from_key)
        {
            b.next = [(key.ip, id), b.next[0]];
        }
        id
    }

    /// The direct-mapped table's entry for block `id`. Its code is only offered to jumps from
    /// generated code when the block needs none of the run loop's checks: a block that
    /// crosses into a second page under paging must have that page's mapping re-checked
    /// (its code does it when the page is RAM: [`Block::second_page`]), and a block holding
    /// an entry barrier (a breakpoint) must be stopped at.
    fn fast_entry(&self, id: BlockId) -> FastEntry {
        let b = self.block(id);
        let direct = !unguarded_crossing(b) && !self.holds_barrier(b);
        FastEntry {
            key: b.key,
            id,
            code: b.code.filter(|_| direct).map_or(0, |c| c as u64),
        }
    }

    /// The address of the direct-mapped table, for [`crate::jit::helpers::jump_lookup`].
    fn fast_table(&self) -> u64 {
        self.fast.as_ptr() as u64
    }

    fn insert(&mut self, key: BlockKey, cpu: &mut CpuState, mem: &mut PhysMem) -> BlockId {
        let _phase = self.translating();
        let t0 = Instant::now();
        let phys = key.phys();
        let page = phys & PAGE_MASK;
        let room = (page + PAGE_SIZE - phys) as usize;
        // Up to 15 bytes from the next page, so an instruction that straddles the page end
        // decodes; the next page is fetched through the current translation (and if it
        // cannot be, the block ends before the instruction that needs it). Bytes beyond the
        // end of RAM read as 0xff, as the bus does.
        let mut bytes = [0xffu8; 4096 + 15];
        copy_phys(mem, phys, &mut bytes[..room]);
        let next_linear = (key.linear() & PAGE_MASK).wrapping_add(PAGE_SIZE);
        let next_phys = probe_fetch_phys(cpu, mem, next_linear);
        let want = match next_phys {
            Some(p) => {
                copy_phys(mem, p & PAGE_MASK, &mut bytes[room..room + 15]);
                room + 15
            }
            None => room,
        };
        let ctx = Ctx::of(&key);
        let decoded = decode_block(&bytes[..want], key.ip, room, ctx, key.single_step());
        let crosses = decoded.byte_len as usize > room;
        let second = next_phys.filter(|_| crosses).map(|p| p & PAGE_MASK);
        let second_page = second
            .filter(|&p| key.paging() && mem.is_ram(p, PAGE_SIZE))
            .map(|p| SecondPage {
                linear: next_linear,
                addend: mem.host_addr(p).wrapping_sub(next_linear),
            });
        let pages = [Some(page), second];
        self.stats.blocks_decoded += 1;
        self.stats.insns_decoded += decoded.insns.len() as u64;
        let block = Block {
            key,
            decoded,
            pages,
            second_linear: second.map(|_| next_linear),
            second_page,
            runs: 0,
            serial: self.next_serial,
            queued: false,
            heat: None,
            in_region: false,
            queued_runs: 0,
            next: [(0, NO_ID); 2],
            quick: false,
            code: None,
            baseline: None,
            baseline_tried: false,
            baseline_chain: None,
            baseline_slots: None,
            baseline_incoming: Vec::new(),
            chain: Box::default(),
            cut_at: u32::MAX,
            cold_code: std::ptr::null(),
            slots: Box::new(fresh_slots()),
            runtime: None,
            incoming: Vec::new(),
            outgoing: [None; 3],
        };
        self.next_serial += 1;
        self.decoded_bytes += block_cost(&block);
        let id = match self.free.pop() {
            Some(id) => {
                self.blocks[id as usize] = Some(block);
                id
            }
            None => {
                self.blocks.push(Some(block));
                (self.blocks.len() - 1) as BlockId
            }
        };
        self.map.insert(key, id);
        for p in pages.into_iter().flatten() {
            self.by_page.entry(p).or_default().push(id);
            if !mem.is_code_page(p) {
                mem.set_code_page(p, true);
                crane86_runtime::memory::tlb_protect_phys(cpu, mem, p);
            }
        }
        self.stats.decode_time += t0.elapsed();
        id
    }

    /// Runs block `id`'s compiled code (and whatever it chains to) on `cpu`; returns the JIT
    /// exit code, or `None` when the block has no compiled code (interpret it instead).
    pub fn run_compiled(&self, id: BlockId, cpu: &mut CpuState, mem: &mut PhysMem) -> Option<i64> {
        let code = self.blocks.get(id as usize)?.as_ref()?.code?;
        debug_assert!(self.arena.contains(code), "block code lives in the arena");
        // Return predictions are only checked against this epoch's blocks: the epoch only
        // changes here, outside generated code (`crane86_runtime::rsb`).
        cpu.rsb.enter_epoch(*self.epoch);
        // SAFETY: `code` is the live compiled code of a block of this cache (block code is
        // dropped with the arena generation that holds it), and the trampoline is this
        // cache's own.
        Some(unsafe { crate::jit::entry::run_compiled(self.trampoline, code, cpu, mem) })
    }
}
