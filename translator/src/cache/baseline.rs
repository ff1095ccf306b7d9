//! Running blocks without compiled code: in baseline code ([`crate::baseline`]) once they
//! have some, interpreted otherwise; and the links that let one block's baseline code go
//! straight on to the next one's.

use std::time::Instant;

use crane86_runtime::{CpuState, PhysMem, PortIo};

use super::{BlockId, Cache};
use crate::baseline::{BaselineSlots, NO_LINK, RET_FAULT, RET_WHOLE};
use crate::interp::{run_block, InterpExit};

/// Runs of a block before it gets baseline code under `--tier auto`, by default. A
/// translation (about 5 µs a block) costs as much as a few dozen interpreted runs; 3, 8,
/// 16 and 32 gave the same boot times, and fewer translations fill less of the code arena
/// (`docs/design.md`, "The baseline tier").
pub const DEFAULT_BASELINE_RUNS: u32 = 16;

/// Entries through a block's chain entry between two looks of the cache at the block
/// ([`BaselineSlots::credit`]): its runs are counted (for tier-up) this many at a time.
const CREDIT: u64 = 16;

/// How a run of blocks without compiled code ended ([`Cache::run_cold`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ColdRun {
    /// How the last block's run ended.
    pub exit: InterpExit,
    /// Instructions retired, by every block that ran.
    pub retired: u64,
    /// The block that ran last (baseline code may have chained on from the first).
    pub last: BlockId,
    /// The last block ran to its end (every instruction retired, no fault).
    pub whole: bool,
    /// The run was baseline code's, not the interpreter's.
    pub baseline: bool,
}

impl Cache {
    /// Sets the runs of a block without compiled code before it gets baseline code (0: no
    /// baseline code, every such block is interpreted).
    pub fn set_baseline_runs(&mut self, runs: u32) {
        self.baseline_runs = runs;
    }

    /// Runs block `id`, which has no compiled code (or may not use it now), as
    /// [`run_block`] does: in its baseline code when `baseline` allows it and the block has
    /// or now gets some, interpreted otherwise. Baseline code may go on to up to `chain`
    /// more blocks through their links ([`Cache::link_baseline`]), within `limit`
    /// instructions in all. `baseline` is false where the caller needs the interpreter's
    /// instruction-by-instruction view (debugging, interrupt shadows).
    #[allow(clippy::too_many_arguments)]
    pub fn run_cold(
        &mut self,
        id: BlockId,
        cpu: &mut CpuState,
        mem: &mut PhysMem,
        io: &mut dyn PortIo,
        limit: u64,
        baseline: bool,
        chain: u64,
    ) -> ColdRun {
        if baseline && self.baseline_runs != 0 {
            if let Some(r) = self.run_baseline(id, cpu, mem, limit, chain) {
                return r;
            }
        }
        let block = &self.block(id).decoded;
        let (exit, retired) = run_block(cpu, mem, io, block, limit);
        ColdRun {
            exit,
            retired,
            last: id,
            whole: exit == InterpExit::Next && retired == block.insns.len() as u64,
            baseline: false,
        }
    }

    fn run_baseline(
        &mut self,
        id: BlockId,
        cpu: &mut CpuState,
        mem: &mut PhysMem,
        limit: u64,
        chain: u64,
    ) -> Option<ColdRun> {
        let runs = self.baseline_runs;
        let b = self.block_mut(id);
        let len = b.decoded.insns.len() as u64;
        // Baseline code runs the whole block: a limit inside it (a timer deadline, a
        // breakpoint) is the interpreter's to honour.
        if limit < len {
            return None;
        }
        let code = match b.baseline {
            Some(code) => {
                // Count the runs that came through the chain entry since the last look (a
                // credit spent to the end wrapped around below zero).
                if let Some(s) = b.baseline_slots.as_mut() {
                    let used = if s.credit > CREDIT {
                        CREDIT
                    } else {
                        CREDIT - s.credit
                    };
                    b.runs = b.runs.saturating_add(used as u32);
                    s.credit = CREDIT;
                }
                code
            }
            None => {
                if b.baseline_tried
                    || b.runs < runs
                    || b.decoded.is_runtime()
                    || b.key.single_step()
                {
                    return None;
                }
                self.translate_baseline(id)?
            }
        };
        debug_assert!(
            self.arena.contains(code),
            "baseline code lives in the arena"
        );
        // Baseline code is generated code for `--stats`' phases, as the helpers it calls
        // assume (they go back to that phase when they return).
        let before = self.phase.get();
        self.phase.set(crane86_runtime::phase::Phase::Jit);
        // SAFETY: `code` is the live baseline code of a block of this cache, and its links
        // name only live baseline code of this cache: code is dropped with the arena
        // generation that holds it (`flush_code`, which clears every link), and a block's
        // links in are cleared when it is dropped or gets compiled code.
        let r = unsafe { crate::jit::entry::run_baseline(code, cpu, mem, limit, chain) };
        self.phase.set(before);
        let retired = r.0 & 0xffff_ffff;
        self.stats.baseline.runs.runs += 1;
        self.stats.baseline.runs.insns += retired;
        let exit = if r.0 & RET_FAULT != 0 {
            InterpExit::Fault
        } else {
            InterpExit::Next
        };
        Some(ColdRun {
            exit,
            retired,
            last: r.1 as BlockId,
            whole: r.0 & RET_WHOLE != 0,
            baseline: true,
        })
    }

    /// Tries once to give block `id` baseline code.
    fn translate_baseline(&mut self, id: BlockId) -> Option<*const u8> {
        let _phase = self.translating();
        let t0 = Instant::now();
        let b = self.block_mut(id);
        b.baseline_tried = true;
        let insns = b.decoded.insns.len() as u64;
        let key = b.key;
        let slots = b.baseline_slots.get_or_insert_with(Box::default);
        **slots = BaselineSlots {
            credit: CREDIT,
            ..BaselineSlots::default()
        };
        let at = &**slots as *const BaselineSlots as u64;
        let r = crate::baseline::translate(&b.decoded, id, at);
        let placed = match r {
            Ok(t) => match self.arena.alloc(&t.code) {
                Some(p) => {
                    let s = &mut self.stats.baseline;
                    s.blocks += 1;
                    s.insns += insns;
                    s.bytes += t.code.len() as u64;
                    self.record_perf_map(p, t.code.len(), key, "_baseline");
                    let b = self.block_mut(id);
                    b.baseline = Some(p);
                    b.baseline_chain = Some((p.wrapping_add(t.chain_entry), t.chains));
                    Some(p)
                }
                None => {
                    self.stats.baseline.no_room += 1;
                    None
                }
            },
            Err(why) => {
                *self.stats.baseline.declined.entry(why).or_default() += 1;
                None
            }
        };
        self.stats.baseline.time += t0.elapsed();
        placed
    }

    /// Links block `from`'s baseline code to block `to`'s, which the caller found after it
    /// on the same linear page (the rule of `machine::chain`, whose other checks the code
    /// makes inline) and may enter without the run loop. Nothing happens unless both have
    /// baseline code, `from`'s chains on, and `to` has no compiled code (which the run loop
    /// should run instead) and lies on one page.
    pub fn link_baseline(&mut self, from: BlockId, to: BlockId) {
        let t = self.block(to);
        let Some((entry, _)) = t.baseline_chain else {
            return;
        };
        if t.code.is_some() || t.pages[1].is_some() || t.decoded.is_runtime() {
            return;
        }
        let ip = t.key.ip;
        let f = self.block_mut(from);
        if !matches!(f.baseline_chain, Some((_, true))) {
            return;
        }
        let Some(s) = f.baseline_slots.as_mut() else {
            return;
        };
        let want = [ip, entry as u64];
        let [l0, l1] = s.links_mut();
        if *l0 == want || *l1 == want {
            return;
        }
        // The link that already names this successor (its code was translated again), else
        // a free one, else the second: a block with more than two successors (an indirect
        // jump) keeps its first and swaps the second.
        let slot = if l0[0] == ip || l0[0] == NO_LINK {
            l0
        } else {
            l1
        };
        *slot = want;
        self.stats.baseline.links += 1;
        self.block_mut(to).baseline_incoming.push(from);
    }

    /// Clears the links of the blocks in `incoming` that lead to the chain entry `chain`
    /// (a block's, whose baseline code must not be entered any more).
    pub(super) fn clear_baseline_links(
        &mut self,
        incoming: Vec<BlockId>,
        chain: Option<(*const u8, bool)>,
    ) {
        let Some((entry, _)) = chain else {
            return;
        };
        for src in incoming {
            let Some(Some(s)) = self.blocks.get_mut(src as usize) else {
                continue;
            };
            if let Some(slots) = s.baseline_slots.as_mut() {
                for l in slots.links_mut() {
                    if l[1] == entry as u64 {
                        *l = [NO_LINK, 0];
                    }
                }
            }
        }
    }
}
