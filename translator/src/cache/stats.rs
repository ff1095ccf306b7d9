//! The translation cache's counters.

use std::time::Duration;

use crate::jit::timing::CompileTimes;

#[cfg(doc)]
use super::Cache;

/// Interpreted runs of blocks without code, for one reason ([`CacheStats::interp_cold`] and
/// the next two): what the background compiler's throughput costs.
#[derive(Clone, Copy, Debug, Default)]
pub struct InterpRuns {
    /// Block runs.
    pub runs: u64,
    /// Guest instructions in those blocks (a run that faults retires fewer).
    pub insns: u64,
}

impl InterpRuns {
    /// Counts a run of a block of `insns` instructions.
    pub(super) fn add(&mut self, insns: usize) {
        self.runs += 1;
        self.insns += insns as u64;
    }
}

/// Translation-cache statistics (`--stats`).
#[derive(Clone, Debug, Default)]
pub struct CacheStats {
    /// Blocks decoded (all enter the interpreter tier first, or go straight to the JIT).
    pub blocks_decoded: u64,
    /// Interpreted runs of blocks that had not yet run often enough to be compiled (not
    /// counted under [`super::Tier::Interp`], where no block ever is).
    pub interp_cold: InterpRuns,
    /// Interpreted runs of blocks waiting in the background compiler's queue.
    pub interp_waiting: InterpRuns,
    /// Interpreted runs of blocks hot enough to compile that the background compiler's
    /// queue, full, turned away (each run tries again).
    pub interp_refused: InterpRuns,
    /// Guest instructions in decoded blocks.
    pub insns_decoded: u64,
    /// Blocks compiled by the JIT.
    pub blocks_compiled: u64,
    /// Guest instructions in compiled blocks.
    pub insns_compiled: u64,
    /// Of the compiles, regions: a loop's head compiled together with the blocks it loops
    /// through.
    pub regions: u64,
    /// Time spent compiling.
    pub compile_time: Duration,
    /// Compiles without Cranelift's optimiser (quick code, or `--jit-opt none`), and where
    /// their time went.
    pub unoptimised: TierStats,
    /// Compiles with it.
    pub optimised: TierStats,
    /// Time spent decoding.
    pub decode_time: Duration,
    /// Lookups by the run loop.
    pub lookups: u64,
    /// Lookups answered by the block's predecessor, which remembers the blocks it led to
    /// ([`crate::Cache::lookup_after`]).
    pub successor_hits: u64,
    /// Lookups answered by the direct-mapped table.
    pub fast_hits: u64,
    /// Lookups answered by the hash map.
    pub map_hits: u64,
    /// Lookups that had to translate.
    pub misses: u64,
    /// Exits linked to their target (later taken without the run loop).
    pub links: u64,
    /// Of those, exits to another linear page under paging, taken while the TLB agrees.
    pub links_cross_page: u64,
    /// Blocks compiled again optimised after their quick code ran its count
    /// ([`crate::jit::JitOptions::tiered`]); also counted in `blocks_compiled`.
    pub recompiled: u64,
    /// Blocks invalidated because their page was written.
    pub invalidated_smc: u64,
    /// Stores into code pages that missed every block there, so dropped none
    /// ([`crate::Cache::invalidate_written`]).
    pub smc_spared: u64,
    /// Page-crossing blocks dropped because their second page now maps elsewhere.
    pub invalidated_remap: u64,
    /// Code-arena flushes: the arena was full, so every block's compiled code was dropped
    /// (the blocks stay decoded).
    pub flushes: u64,
    /// Capacity flushes: the decoded blocks reached their budget (see
    /// [`Cache::block_budget`]), so every block was dropped.
    pub capacity_flushes: u64,
    /// Blocks dropped by capacity flushes.
    pub evicted: u64,
    /// Bytes of host code produced.
    pub code_bytes: u64,
    /// Of those, bytes placed in the arena's cold end ([`crate::jit::split`]).
    pub cold_bytes: u64,
    /// Compiled blocks whose code was not cut into a hot and a cold part (none had a cold
    /// block, or the cut was refused).
    pub uncut: u64,
    /// The baseline tier ([`crate::baseline`]).
    pub baseline: BaselineStats,
}

/// What the baseline tier translated and ran.
#[derive(Clone, Debug, Default)]
pub struct BaselineStats {
    /// Blocks translated.
    pub blocks: u64,
    /// Guest instructions in them.
    pub insns: u64,
    /// Bytes of host code written.
    pub bytes: u64,
    /// Time spent translating (declined attempts included).
    pub time: Duration,
    /// Blocks the baseline declined, by the first thing it does not cover.
    pub declined: std::collections::BTreeMap<&'static str, u64>,
    /// Translated blocks that found no room in the code arena (they stay interpreted until
    /// the next flush).
    pub no_room: u64,
    /// Calls into baseline code and the instructions they retired (with the blocks they
    /// chained to).
    pub runs: InterpRuns,
    /// Links made from one block's baseline code to the next one's.
    pub links: u64,
}

/// The compiles of one Cranelift optimisation level.
#[derive(Clone, Debug, Default)]
pub struct TierStats {
    /// Compiles placed (a region counts once).
    pub blocks: u64,
    /// Guest instructions they compiled (a region's members included).
    pub insns: u64,
    /// Where their time went, added up.
    pub times: CompileTimes,
}

impl TierStats {
    /// Counts a compile of `insns` guest instructions that took `times`.
    pub fn add(&mut self, insns: u64, times: &CompileTimes) {
        self.blocks += 1;
        self.insns += insns;
        self.times.add(times);
    }

    /// Compile time per guest instruction, in microseconds.
    pub fn us_per_insn(&self) -> f64 {
        if self.insns == 0 {
            0.0
        } else {
            self.times.total.as_secs_f64() * 1e6 / self.insns as f64
        }
    }
}
