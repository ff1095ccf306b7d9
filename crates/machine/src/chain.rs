//! Interpreted blocks chained without the run loop's checks.
//!
//! While the background compiler catches up, which during the Debian kernel's init phase
//! means most of it, the vCPU interprets the blocks waiting for it, and each of them cost a
//! trip through the run loop: the device check, the fetch translation and block key, the
//! compiler's channel, the lookup in the block table (a cache miss). That was a quarter of
//! the vCPU thread's time in that phase, as much as the interpretation itself.
//!
//! After an ordinary block ran interpreted to its end, [`Machine::chain_interpreted`] goes
//! straight on to the block its last instruction leads to, as generated code chains: only
//! what can change between two ordinary blocks is looked at.
//! - *Devices.* The run's instruction limit stops at the next timer deadline, as it does
//!   for generated code; other threads and device accesses (MMIO) ask for attention through
//!   `CpuState::exit_request`, and an x87 error for IRQ 13 through `CpuState::ferr`, both
//!   looked at before every block.
//! - *Mode and mapping.* An ordinary block changes no mode bit (instructions that can are
//!   runtime-class, alone in their blocks, which end the chain), so the next block has the
//!   same key bits, on the same physical page when it starts on the same linear page. A
//!   block on another page needs the fetch translation, probed (a fetch that would fault
//!   ends the chain, and the run loop raises the fault).
//! - *Baseline code* (`crane86_translator::baseline`) runs in the interpreter's place for
//!   blocks that have some, and when a block follows another on the same linear page, the
//!   loop links the first one's code to the second's (`Cache::link_baseline`): next time
//!   that code makes the checks above itself and goes on without coming back here. A run
//!   may therefore end in a later block than the one it began with (`ColdRun::last`).
//! - *Everything else* ends the chain: a fault, a store into translated code, an
//!   instruction that did not retire, the interrupt flag changing, a block with code (the
//!   run loop runs it and links), a runtime-class block, a block ending in an instruction
//!   with an interrupt shadow (STI, inline at CPL 0: the run loop must run it to hold
//!   interrupts off after it), single-stepping, debugger breakpoints, an interrupt shadow.

use crane86_runtime::phase::Phase;
use std::sync::atomic::Ordering;

use crane86_runtime::memory::probe_fetch_phys;
use crane86_runtime::{flags as fl, CpuMode};
use crane86_translator::cache::BlockId;
use crane86_translator::interp::InterpExit;
use crane86_translator::rewrite::InterruptEffect;

use crate::run::RunEnd;
use crate::{Machine, MachineError};

/// Most blocks one chain runs before the run loop looks again (so that compiled code the
/// background compiler finished is taken up).
const MAX_CHAIN: usize = 64;

impl Machine {
    /// Runs interpreted, one after another, the blocks that follow block `id`, which just
    /// ran interpreted to its end, while nothing needs the run loop (see the module
    /// documentation), retiring at most `limit` instructions. Returns the instructions
    /// retired, or how the run ends.
    pub(crate) fn chain_interpreted(
        &mut self,
        mut id: BlockId,
        limit: u64,
    ) -> Result<Result<u64, RunEnd>, MachineError> {
        let mut retired = 0;
        let mut blocks = 0;
        while blocks < MAX_CHAIN {
            if retired >= limit
                || self.cpu.exit_request.load(Ordering::Acquire) != 0
                || self.cpu.fault.pending != 0
                || self.cpu.ferr != 0
                || self.mem.has_dirty_code()
            {
                break;
            }
            let key = self.cache.block(id).key;
            let mut linear = key.cs_base.wrapping_add(self.cpu.rip);
            if key.mode() != CpuMode::Long64 {
                linear &= 0xffff_ffff;
            }
            let same_page = linear & !0xfff == key.linear() & !0xfff;
            let phys = if same_page {
                (key.phys() & !0xfff) | (linear & 0xfff)
            } else {
                match probe_fetch_phys(&mut self.cpu, &mut self.mem, linear) {
                    Some(p) if p < 1 << 48 => p,
                    _ => break,
                }
            };
            let next = self.cache.lookup_after(
                id,
                key.successor(self.cpu.rip, phys),
                &mut self.cpu,
                &mut self.mem,
            );
            let b = self.cache.block(next);
            if b.code.is_some() || b.decoded.insns.is_empty() || b.decoded.is_runtime() {
                break;
            }
            if self.cache.prepare(next, self.cpu.cc.op)? {
                // Compiled on the spot: the run loop runs it.
                break;
            }
            let block = &self.cache.block(next).decoded;
            let len = block.insns.len() as u64;
            // A block that ends in STI (inline at CPL 0) or another instruction with an
            // effect on interrupt delivery runs from the run loop, which keeps the shadow
            // after it.
            if !block
                .insns
                .last()
                .is_some_and(|d| InterruptEffect::of(&d.insn).holds_nothing())
            {
                break;
            }
            let if_before = self.cpu.rflags & fl::IF;
            // The block before ran whole, interpreted or in baseline code: link the two,
            // so that next time that code goes on to this block's by itself, with the
            // checks above made inline (on the same linear page, the successor's physical
            // page follows from the block's own, as for the JIT's direct links).
            if same_page {
                self.cache.link_baseline(id, next);
            }
            let io: &mut dyn crane86_runtime::PortIo = match self.pc.as_mut() {
                Some(pc) => pc.port_io(),
                None => &mut self.ports,
            };
            self.phase.set(Phase::Interp);
            let r = self.cache.run_cold(
                next,
                &mut self.cpu,
                &mut self.mem,
                io,
                limit - retired,
                true,
                (MAX_CHAIN - blocks) as u64,
            );
            self.phase.set(Phase::RunLoop);
            let n = r.retired;
            self.stats.count_cold(&r);
            self.stats.interp_chained += 1;
            self.cpu.retired += n;
            retired += n;
            if let InterpExit::Unsupported(what) = r.exit {
                return Ok(Err(RunEnd::Unsupported {
                    what,
                    rip: self.cpu.rip,
                }));
            }
            // Baseline code may have run more blocks, each counted against the chain.
            blocks += (n / len.max(1)).max(1) as usize;
            if !r.whole || self.cpu.rflags & fl::IF != if_before {
                break;
            }
            id = r.last;
        }
        Ok(Ok(retired))
    }
}
