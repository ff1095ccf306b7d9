//! Tiering and compilation: counting block runs, compiling hot blocks (here or on the
//! background worker), installing their code.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Instant;

use super::{fast_index, BlockId, Cache, CacheError, CompileWorker, Done, Job, MAX_IN_FLIGHT};
use crate::decode::DecodedBlock;
use crate::jit::arena::CodeArena;
use crate::jit::split::{self, Cut, TAIL_JUMP};
use crate::jit::worker::CANCELLED;
use crate::jit::JitError;
use crate::jit::{slot_token, ChainSlots, Compiled, JUMP_CACHE_WORD, TIER_UP_WORD};
use crane86_runtime::CpuState;

/// A queued block's runs are published to its job's heat every this many
/// ([`crate::jit::worker::Job::heat`]).
const HEAT_STEP: u32 = 8;

impl Cache {
    /// Counts a run of block `id` and tells whether it should run compiled (then run it with
    /// [`Cache::run_compiled`]); compiles it when the tier policy says it is time. `false`
    /// means: interpret it. `entry_cc` is `cpu.cc.op` now, kept as the compiler's hint
    /// ([`DecodedBlock::cc_hint`]).
    pub fn prepare(&mut self, id: BlockId, entry_cc: u64) -> Result<bool, CacheError> {
        let tier = self.tier;
        let b = self.block_mut(id);
        b.runs = b.runs.saturating_add(1);
        if b.decoded.is_runtime() {
            // Its code serves other blocks' exits only (see `prepare_runtime`).
            return Ok(false);
        }
        if b.code.is_some() {
            return Ok(true);
        }
        b.decoded.cc_hint = Some(entry_cc);
        // Single-stepped blocks (TF) stay in the interpreter: the run loop must see every
        // instruction retire to raise its #DB, which chaining and self-loops would skip.
        if b.decoded.insns.is_empty() || b.key.single_step() {
            return Ok(false);
        }
        let insns = b.decoded.insns.len();
        if !tier.hot(b.runs) {
            // Under `--tier interp` nothing ever turns hot: not a reason worth a count.
            if tier != super::Tier::Interp {
                self.stats.interp_cold.add(insns);
            }
            return Ok(false);
        }
        let compiled = self.start_compile(id, false)?;
        if !compiled {
            if self.block(id).queued {
                self.stats.interp_waiting.add(insns);
            } else {
                self.stats.interp_refused.add(insns);
            }
        }
        Ok(compiled)
    }

    /// Counts a run of block `id`, one runtime-class instruction that the run loop is about
    /// to interpret, and compiles it when hot if generated code may run that instruction too
    /// ([`crate::rewrite::runs_compiled`]): other blocks' exits then reach it, and it goes
    /// on to its successor, without the run loop. Once it has code, links the exit `token`
    /// the run loop came by (from `cpu.link`) to it.
    pub fn prepare_runtime(
        &mut self,
        id: BlockId,
        token: u64,
        cpu: &CpuState,
    ) -> Result<(), CacheError> {
        let tier = self.tier;
        let b = self.block_mut(id);
        b.runs = b.runs.saturating_add(1);
        if b.code.is_some() {
            self.link(token, id, cpu);
            return Ok(());
        }
        // Not in virtual-8086 mode: with CR4.VME, POPF and the interrupt flag work on VIF
        // there, which `run_runtime`'s checks after the instruction do not cover.
        if !b.decoded.is_runtime()
            || b.decoded.ctx.v86
            || b.key.single_step()
            || !crate::rewrite::runs_compiled(&b.decoded.insns[0].insn)
            || !tier.hot(b.runs)
        {
            return Ok(());
        }
        if b.runtime.is_none() {
            b.runtime = Some(Box::new(b.decoded.clone()));
        }
        self.start_compile(id, false).map(|_| ())
    }

    /// Compiles hot block `id` (`upgrade`: again, optimised, it has quick code): queues it
    /// for the background compiler (`false`: it has no new code yet) or compiles it here
    /// (`true`).
    fn start_compile(&mut self, id: BlockId, upgrade: bool) -> Result<bool, CacheError> {
        let b = self.block(id);
        let (queued, serial) = (b.queued, b.serial);
        if let Some(w) = &self.worker {
            if queued {
                // Still interpreted: the compiler takes the hottest job next. The runs
                // since it was queued are counted here and published to the job every
                // `HEAT_STEP`-th: the worker only ranks jobs by them, and each write of the
                // shared word cost a cache miss (the worker reads it), 2% of the vCPU in
                // the kernel's init phase when it was an atomic add per run. The cache is
                // the word's only writer (`Block::cancel_compile` too), so a store will do.
                let b = self.block_mut(id);
                b.queued_runs = b.queued_runs.saturating_add(1);
                if b.queued_runs.is_multiple_of(HEAT_STEP) {
                    if let Some(h) = &b.heat {
                        h.store(b.queued_runs.min(CANCELLED - 1), Ordering::Relaxed);
                    }
                }
                return Ok(false);
            }
            if w.in_flight() >= MAX_IN_FLIGHT {
                if upgrade {
                    // Try again after as many runs more.
                    self.block_mut(id).slots[TIER_UP_WORD] = self.tier_up_runs;
                }
                return Ok(false);
            }
            let blocks = self.region(id);
            let quick = self.compiles_quick(id, &blocks, upgrade);
            let heat = Arc::new(AtomicU32::new(0));
            let job = Job {
                id,
                serial,
                blocks,
                chain: self.chain_slots(id, quick),
                heat: heat.clone(),
            };
            if self.worker.as_mut().is_some_and(|w| w.submit(job)) {
                let runs = self.tier_up_runs;
                let b = self.block_mut(id);
                b.queued = true;
                b.queued_runs = 0;
                b.heat = Some(heat);
                b.slots[TIER_UP_WORD] = tier_up_start(quick, runs);
                return Ok(false);
            }
            // The worker is gone (it panicked): compile here from now on.
            self.worker = None;
        }
        self.compile(id, upgrade).map(|_| true)
    }

    /// Whether block `id`, to be compiled as `blocks`, gets quick code first
    /// ([`JitOptions::tiered`](crate::jit::JitOptions::tiered)): not a loop (a region, or a
    /// block that branches to itself, which runs within its code and so counts only its
    /// entries: loops are worth optimising at once), not a runtime-class block (the run loop
    /// interprets those, so it would never see their count run out), not a recompile.
    fn compiles_quick(&self, id: BlockId, blocks: &[DecodedBlock], upgrade: bool) -> bool {
        let b = self.block(id);
        let self_loop = super::region::successors(&b.decoded).any(|t| t == b.start_ip());
        self.tiered && !upgrade && blocks.len() == 1 && !self_loop && !b.decoded.is_runtime()
    }

    /// Compiles again, optimised, the blocks whose quick code has run its count since the
    /// last call (`CpuState::tier_up_ids`); their quick code goes on running until the new
    /// code is installed. The run loop calls this between blocks, before it looks a block
    /// up (so no id in the list has been given to a new block yet: requests whose block
    /// was dropped meanwhile find none, or one without quick code).
    pub fn take_tier_ups(&mut self, cpu: &mut CpuState) -> Result<(), CacheError> {
        let n = std::mem::take(&mut cpu.tier_up_len) as usize;
        for &id in &cpu.tier_up_ids[..n.min(cpu.tier_up_ids.len())] {
            let due = self
                .blocks
                .get(id as usize)
                .and_then(Option::as_ref)
                .is_some_and(|b| b.quick && b.code.is_some() && !b.queued);
            if due {
                self.start_compile(id, true)?;
            }
        }
        Ok(())
    }

    /// Installs the blocks the background compiler has finished since the last call (the
    /// run loop calls this between blocks; without a worker it does nothing).
    pub fn collect_compiled(&mut self) -> Result<(), CacheError> {
        while let Some(d) = self.worker.as_mut().and_then(CompileWorker::poll) {
            self.install(d)?;
        }
        Ok(())
    }

    fn install(&mut self, d: Done) -> Result<(), CacheError> {
        let _phase = self.translating();
        self.stats.compile_time += d.time;
        let live = self
            .blocks
            .get(d.id as usize)
            .and_then(Option::as_ref)
            .is_some_and(|b| b.serial == d.serial && b.queued);
        if !live {
            // The block was dropped (its page written, the cache flushed) meanwhile.
            return Ok(());
        }
        let b = self.block_mut(d.id);
        b.queued = false;
        let quick = d.quick;
        b.heat = None;
        if matches!(d.result, Err(JitError::Cancelled)) {
            // Only a block dropped meanwhile is cancelled, and that one is not live; stay
            // total anyway: it is queued again when it next turns hot.
            return Ok(());
        }
        if d.region && !self.barriers.is_empty() {
            // Made before a debugger set a breakpoint, which a region could run past.
            return Ok(());
        }
        self.place(d.id, d.result?, quick)?;
        Ok(())
    }

    /// The chain slots and lookup table the code of block `id` uses; `quick`: the code
    /// counts its runs in the block's tier-up word.
    fn chain_slots(&self, id: BlockId, quick: bool) -> ChainSlots {
        let b = self.block(id);
        let base = b.slots.as_ptr() as u64;
        ChainSlots {
            slot_addr: [base, base + 8, base + 16],
            token: [0, 1, 2].map(|slot| slot_token(id, slot)),
            key: b.key,
            jump_table: self.fast_table(),
            epoch: &*self.epoch as *const u64 as u64,
            count: self.count_chains,
            shims: self.shims,
            runtime: b
                .runtime
                .as_deref()
                .map_or(0, |r| r as *const DecodedBlock as u64),
            tier_up: if quick {
                base + 8 * TIER_UP_WORD as u64
            } else {
                0
            },
            tier_up_runs: self.tier_up_runs,
            jump_cache: base + 8 * JUMP_CACHE_WORD as u64,
            second_page: b.second_page,
        }
    }

    fn compile(&mut self, id: BlockId, upgrade: bool) -> Result<*const u8, CacheError> {
        let _phase = self.translating();
        let t0 = Instant::now();
        let blocks = self.region(id);
        let quick = self.compiles_quick(id, &blocks, upgrade);
        let slots = self.chain_slots(id, quick);
        let start = tier_up_start(quick, self.tier_up_runs);
        self.block_mut(id).slots[TIER_UP_WORD] = start;
        let code = self.jit.compile_region(&blocks, slots)?;
        self.stats.compile_time += t0.elapsed();
        self.place(id, code, quick)
    }

    /// Copies block `id`'s machine code into the arena and makes it the block's code
    /// (`quick`: code that counts its runs). Code that replaces the block's quick code takes
    /// over the links into the block, and starts with its own exits unlinked (it may assign
    /// its slots to other targets, when it is a region); the old code stays in the arena
    /// unused until the arena is reset.
    fn place(&mut self, id: BlockId, code: Compiled, quick: bool) -> Result<*const u8, CacheError> {
        let bytes = &code.bytes[..];
        let (hot, cold) = match &code.cut {
            Some(cut) => {
                let at = cut.at as usize;
                let mut hot = bytes[..at].to_vec();
                if cut.tail_jump {
                    hot.extend_from_slice(&TAIL_JUMP);
                }
                (std::borrow::Cow::Owned(hot), &bytes[at..])
            }
            None => (std::borrow::Cow::Borrowed(bytes), &[][..]),
        };
        let align = if quick {
            crate::jit::arena::ALIGN
        } else {
            crate::jit::arena::HOT_ALIGN
        };
        let (ptr, cold_ptr) = match self.arena.alloc_split(&hot, cold, align) {
            Some(p) => p,
            None => {
                // Arena full: drop every block's code (the generation ends) and retry.
                self.flush_code();
                self.arena
                    .alloc_split(&hot, cold, align)
                    .ok_or(CacheError::TooBig(bytes.len()))?
            }
        };
        if let Some(cut) = &code.cut {
            if !apply_cut(&mut self.arena, cut, ptr, cold_ptr) {
                // Cannot happen within one arena (under 4 GiB, every displacement fits);
                // the code is left unused rather than run half-rewritten.
                return Err(CacheError::Jit(crate::jit::JitError::Relocations));
            }
        }
        self.stats.blocks_compiled += 1;
        let own = self.block(id).decoded.insns.len() as u64;
        self.stats.insns_compiled += own;
        self.stats.regions += u64::from(code.insns > own);
        let tier = if code.optimised {
            &mut self.stats.optimised
        } else {
            &mut self.stats.unoptimised
        };
        tier.add(code.insns, &code.times);
        self.stats.code_bytes += (hot.len() + cold.len()) as u64;
        self.stats.cold_bytes += cold.len() as u64;
        self.stats.uncut += u64::from(code.cut.is_none());
        let key = self.block(id).key;
        let tag = if quick { "_quick" } else { "" };
        self.record_perf_map(ptr, hot.len(), key, tag);
        if !cold.is_empty() {
            self.record_perf_map(cold_ptr, cold.len(), key, &format!("{tag}_cold"));
        }
        let b = self.blocks[id as usize].as_mut().expect("live block id");
        let replaced = b.code.replace(ptr).is_some();
        // Baseline blocks chained here would keep running the baseline code.
        let incoming = std::mem::take(&mut b.baseline_incoming);
        let chain = b.baseline_chain;
        self.clear_baseline_links(incoming, chain);
        let b = self.blocks[id as usize].as_mut().expect("live block id");
        *b.chain = code.chain;
        b.cut_at = code.cut.as_ref().map_or(u32::MAX, |c| c.at);
        b.cold_code = cold_ptr;
        b.quick = quick;
        if replaced {
            let outgoing = std::mem::take(&mut b.outgoing);
            for slot in 0..outgoing.len() {
                b.unlink(slot, &mut self.arena);
            }
            self.stats.recompiled += 1;
            for (slot, t) in outgoing.iter().enumerate() {
                if let Some(Some(tb)) = t.and_then(|t| self.blocks.get_mut(t as usize)) {
                    tb.incoming.retain(|&(s, k)| (s, k as usize) != (id, slot));
                }
            }
            for (src, slot) in self.block(id).incoming.clone() {
                let Some(Some(s)) = self.blocks.get_mut(src as usize) else {
                    continue;
                };
                if s.aim(slot as usize, Some(ptr), &mut self.arena) {
                    s.slots[slot as usize] = ptr as u64;
                } else {
                    s.unlink(slot as usize, &mut self.arena);
                    self.block_mut(id).incoming.retain(|&l| l != (src, slot));
                }
            }
            // Return predictions may lead to the old code through a return slot.
            self.new_epoch();
        }
        let fi = fast_index(key);
        if self.fast[fi].key == key {
            self.fast[fi] = self.fast_entry(id);
        }
        Ok(ptr)
    }
}

/// Rewrites the displacements that cross `cut` once its parts lie at `hot` and `cold`
/// (see [`crate::jit::split`]). False if one cannot be written.
fn apply_cut(arena: &mut CodeArena, cut: &Cut, hot: *const u8, cold: *const u8) -> bool {
    let (h, c) = (hot as usize, cold as usize);
    let mut ok = true;
    for f in &cut.fixups {
        let hot_side = f.field < cut.at;
        let field = split::place(f.field, cut.at, h, c, hot_side);
        let end = split::place(f.end, cut.at, h, c, hot_side);
        let target = split::place(f.target, cut.at, h, c, f.target < cut.at);
        ok &= arena.patch_rel32(field as *const u8, end as *const u8, target as *const u8);
    }
    if cut.tail_jump {
        let jmp = h + cut.at as usize;
        ok &= arena.patch_rel32((jmp + 1) as *const u8, (jmp + 5) as *const u8, cold);
    }
    ok
}

/// The tier-up counter for new code: its run count when `quick`, else a count that never
/// runs out (quick code still running while its optimised successor compiles must not come
/// back to the run loop at every run).
fn tier_up_start(quick: bool, runs: u64) -> u64 {
    if quick {
        runs
    } else {
        i64::MAX as u64
    }
}
