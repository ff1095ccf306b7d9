//! Running blocks without compiled code: in baseline code ([`crate::baseline`]) once they
//! have some, interpreted otherwise.

use std::time::Instant;

use crane86_runtime::{CpuState, PhysMem, PortIo};

use super::{BlockId, Cache};
use crate::interp::{run_block, InterpExit};

/// Runs of a block before it gets baseline code under `--tier auto`, by default. A
/// translation (about 5 µs a block) costs as much as a few dozen interpreted runs; 3, 8,
/// 16 and 32 gave the same boot times, and fewer translations fill less of the code arena
/// (`docs/design.md`, "The baseline tier").
pub const DEFAULT_BASELINE_RUNS: u32 = 16;

impl Cache {
    /// Sets the runs of a block without compiled code before it gets baseline code (0: no
    /// baseline code, every such block is interpreted).
    pub fn set_baseline_runs(&mut self, runs: u32) {
        self.baseline_runs = runs;
    }

    /// Runs block `id`, which has no compiled code (or may not use it now), as
    /// [`run_block`] does: in its baseline code when `baseline` allows it and the block has
    /// or now gets some, interpreted otherwise. Returns how the run ended and the
    /// instructions retired. `baseline` is false where the caller needs the interpreter's
    /// instruction-by-instruction view (debugging, interrupt shadows).
    pub fn run_cold(
        &mut self,
        id: BlockId,
        cpu: &mut CpuState,
        mem: &mut PhysMem,
        io: &mut dyn PortIo,
        limit: u64,
        baseline: bool,
    ) -> (InterpExit, u64) {
        if baseline && self.baseline_runs != 0 {
            if let Some(r) = self.run_baseline(id, cpu, mem, limit) {
                return r;
            }
        }
        run_block(cpu, mem, io, &self.block(id).decoded, limit)
    }

    fn run_baseline(
        &mut self,
        id: BlockId,
        cpu: &mut CpuState,
        mem: &mut PhysMem,
        limit: u64,
    ) -> Option<(InterpExit, u64)> {
        let b = self.block(id);
        let len = b.decoded.insns.len() as u64;
        // Baseline code runs the whole block: a limit inside it (a timer deadline, a
        // breakpoint) is the interpreter's to honour.
        if limit < len {
            return None;
        }
        let code = match b.baseline {
            Some(code) => code,
            None => {
                if b.baseline_tried
                    || b.runs < self.baseline_runs
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
        // SAFETY: `code` is the live baseline code of a block of this cache (dropped with
        // the arena generation that holds it, `flush_code`).
        let r = unsafe { crate::jit::entry::run_baseline(code, cpu, mem) };
        let retired = r & 0xffff_ffff;
        self.stats.baseline.runs.runs += 1;
        self.stats.baseline.runs.insns += retired;
        let exit = if r & crate::baseline::RET_FAULT != 0 {
            InterpExit::Fault
        } else {
            InterpExit::Next
        };
        Some((exit, retired))
    }

    /// Tries once to give block `id` baseline code.
    fn translate_baseline(&mut self, id: BlockId) -> Option<*const u8> {
        let _phase = self.translating();
        let t0 = Instant::now();
        let b = self.block_mut(id);
        b.baseline_tried = true;
        let insns = b.decoded.insns.len() as u64;
        let key = b.key;
        let r = crate::baseline::translate(&b.decoded);
        let placed = match r {
            Ok(code) => match self.arena.alloc(&code) {
                Some(p) => {
                    let s = &mut self.stats.baseline;
                    s.blocks += 1;
                    s.insns += insns;
                    s.bytes += code.len() as u64;
                    self.record_perf_map(p, code.len(), key, "_baseline");
                    self.block_mut(id).baseline = Some(p);
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
}
