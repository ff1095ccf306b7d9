//! What debuggers and lockstep comparisons need from the machine: one instruction at a
//! time, interrupts held back and injected from outside.
//!
//! [`Machine::step`] is the unit both the GDB stub and `crane86 difftest` count in, and it
//! is QEMU's: one instruction retires, or one exception or interrupt is delivered (the CPU
//! then stands at the handler's first instruction, which has not run).
//!
//! [`Breakpoints`] are a debugger's instruction breakpoints, kept outside guest memory (no
//! INT3 is written): the run loop stops with [`RunEnd::Breakpoint`] before an instruction
//! at one of their linear addresses, in both tiers. A block that holds one past its first
//! instruction is interpreted up to it; the translation cache is told the addresses
//! ([`crane86_translator::Cache::set_entry_barriers`]) so that compiled code never chains
//! or jumps into a block holding one: such blocks are only entered from the run loop,
//! which checks them, while all other compiled code keeps running chained. With none set
//! the run loop pays one emptiness test per block.

use std::collections::BTreeSet;

use crane86_runtime::flags as fl;
use crane86_runtime::interrupt::EventKind;
use crane86_translator::decode::DecodedBlock;

use crate::{Machine, MachineError, RunEnd};

impl Machine {
    /// Executes one guest instruction in the interpreter (one iteration of a REP string
    /// instruction, as a single step under TF does), or delivers the exception that is
    /// pending. Returns [`RunEnd::Limit`] when the step completed and the machine can go
    /// on, or how the run ended (HLT with [`crate::DebugControl::halt_stops`], a triple
    /// fault, isa-debug-exit...). [`Breakpoints`] do not stop a step: it runs the
    /// instruction a breakpoint stopped the run before.
    pub fn step(&mut self) -> Result<RunEnd, MachineError> {
        let saved = self.debug.interpret_only;
        let breakpoints = std::mem::take(&mut self.breakpoints);
        self.debug.interpret_only = true;
        self.cpu.rep_one_at_a_time = true;
        let end = self.run(Some(1));
        self.cpu.rep_one_at_a_time = false;
        self.debug.interpret_only = saved;
        self.breakpoints = breakpoints;
        end
    }

    /// An external interrupt or NMI is waiting and the CPU would take it before its next
    /// instruction if [`crate::DebugControl::hold_interrupts`] were off (IF set, no
    /// interrupt shadow; NMIs regardless of IF). Always false on the flat board.
    pub fn interrupt_pending(&mut self) -> bool {
        let Some(pc) = self.pc.as_mut() else {
            return false;
        };
        pc.refresh(&mut self.cpu);
        if self.irq_shadow {
            return false;
        }
        (pc.nmi_pending && !self.cpu.nmi_blocked) || (pc.pending && self.cpu.rflags & fl::IF != 0)
    }

    /// Delivers external interrupt `vector` through the IDT now, as if an interrupt
    /// controller had raised it (none is told): for replaying another machine's interrupts.
    /// Returns how the run ends if delivery shut the CPU down.
    pub fn inject_interrupt(&mut self, vector: u8) -> Option<RunEnd> {
        self.irq_shadow = false;
        self.deliver_external_event(vector, EventKind::External)
    }

    /// Delivers the external interrupt or NMI that [`Machine::interrupt_pending`] reports,
    /// as the run loop would before its next instruction (nothing when
    /// [`crate::DebugControl::hold_interrupts`] is on). For callers that step with
    /// interrupts held and let them in between steps. Returns how the run ends if delivery
    /// shut the CPU down or a device ended it.
    pub fn deliver_pending_interrupt(&mut self) -> Option<RunEnd> {
        if self.debug.hold_interrupts {
            return None;
        }
        self.service_devices()
    }
}

/// A debugger's instruction breakpoints: linear addresses the run loop stops before.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Breakpoints {
    addrs: BTreeSet<u64>,
    /// Changed since the run loop last gave the set to the translation cache.
    changed: bool,
}

/// What the breakpoints mean for one block about to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BlockBreak {
    /// No breakpoint in the block.
    None,
    /// A breakpoint at the block's first instruction: stop before running anything.
    AtStart,
    /// A breakpoint at instruction `n` (n > 0): run the first `n` instructions only.
    After(u64),
}

impl Breakpoints {
    /// Adds a breakpoint at linear address `addr`; false if one was there already.
    pub fn insert(&mut self, addr: u64) -> bool {
        let new = self.addrs.insert(addr);
        self.changed |= new;
        new
    }

    /// Removes the breakpoint at `addr`; false if there was none.
    pub fn remove(&mut self, addr: u64) -> bool {
        let had = self.addrs.remove(&addr);
        self.changed |= had;
        had
    }

    /// True when a breakpoint is set at `addr`.
    pub fn contains(&self, addr: u64) -> bool {
        self.addrs.contains(&addr)
    }

    /// True when no breakpoint is set.
    pub fn is_empty(&self) -> bool {
        self.addrs.is_empty()
    }

    /// Removes every breakpoint.
    pub fn clear(&mut self) {
        self.changed |= !self.addrs.is_empty();
        self.addrs.clear();
    }

    /// The addresses, once after each change (for the translation cache).
    pub(crate) fn take_changed(&mut self) -> Option<&BTreeSet<u64>> {
        std::mem::take(&mut self.changed).then_some(&self.addrs)
    }

    /// Where `block`, starting at linear address `linear`, must stop.
    pub(crate) fn check(&self, linear: u64, block: &DecodedBlock) -> BlockBreak {
        if self.addrs.contains(&linear) {
            return BlockBreak::AtStart;
        }
        let (start, end) = (
            linear.saturating_add(1),
            linear.saturating_add(block.byte_len),
        );
        if start >= end || self.addrs.range(start..end).next().is_none() {
            return BlockBreak::None;
        }
        let Some(first) = block.insns.first().map(|d| d.insn.ip()) else {
            return BlockBreak::None;
        };
        // Instructions are contiguous from `linear`. A breakpoint inside an instruction
        // (not at its first byte) never matches, as on a CPU.
        for (n, d) in block.insns.iter().enumerate().skip(1) {
            let at = linear.wrapping_add(d.insn.ip().wrapping_sub(first));
            if self.addrs.contains(&at) {
                return BlockBreak::After(n as u64);
            }
        }
        BlockBreak::None
    }
}
