//! Watchpoints: which memory the next instruction reads and writes.
//!
//! crane86 has no watchpoint hardware to program and its memory fast paths are inline in
//! generated code, so watchpoints are checked instruction by instruction: while any is set
//! the stub runs the guest with [`Machine::step`] (the interpreter) and, before each
//! step, lists the instruction's explicit memory operands with iced-x86's instruction info
//! (stack pushes and pops, string operands and RIP-relative operands included) at the
//! current register values: `crane86_runtime::debug::instruction_accesses`, which the run
//! loop also uses for the guest's own data breakpoints. If a listed access overlaps a watched range and the
//! instruction then retires (a faulting access never happened), the stop is reported
//! after it, as a CPU reports a data breakpoint. Implicit accesses of the system (page
//! walks, descriptor-table reads, interrupt frames) are not watched. The normal run loop
//! is untouched: watchpoints cost nothing while none is set.

use gdbstub::target::ext::breakpoints::WatchKind;
use iced_x86::{Decoder, DecoderOptions};

use crane86_machine::Machine;
pub use crane86_runtime::debug::Access;
use crane86_runtime::{debug, CpuMode, SegReg};

use crate::mem::{self, AddrSpace};

/// One watched range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Watchpoint {
    /// First linear address.
    pub addr: u64,
    /// Length in bytes (at least 1).
    pub len: u64,
    /// Which accesses trigger it.
    pub kind: WatchKind,
}

impl Watchpoint {
    fn overlaps(&self, addr: u64, len: u64) -> bool {
        addr < self.addr.saturating_add(self.len) && self.addr < addr.saturating_add(len)
    }

    fn triggered_by(&self, read: bool, write: bool) -> bool {
        match self.kind {
            WatchKind::Write => write,
            WatchKind::Read => read,
            WatchKind::ReadWrite => read || write,
        }
    }
}

/// The explicit memory accesses of the instruction at the CPU's RIP, or none when it
/// cannot be fetched or decoded (the step will fault).
pub fn next_accesses(m: &mut Machine) -> Vec<Access> {
    let cpu = &m.cpu;
    let long = cpu.mode == CpuMode::Long64;
    let cs = cpu.seg[SegReg::Cs as usize].base;
    let mut linear = cs.wrapping_add(cpu.rip);
    if !long {
        linear &= 0xffff_ffff;
    }
    let bitness = cpu.mode.bitness();
    let rip = cpu.rip;
    let mut bytes = [0u8; 15];
    let n = mem::read(m, AddrSpace::Linear, linear, &mut bytes);
    let mut decoder = Decoder::with_ip(bitness, &bytes[..n], rip, DecoderOptions::NONE);
    let insn = decoder.decode();
    if insn.is_invalid() {
        return Vec::new();
    }
    debug::instruction_accesses(&m.cpu, &insn)
}

/// The first watchpoint `accesses` trigger, with the address GDB is told.
pub fn hit(watchpoints: &[Watchpoint], accesses: &[Access]) -> Option<(WatchKind, u64)> {
    // Port accesses (IN, OUT, INS, OUTS) are not memory: GDB watches addresses.
    for a in accesses.iter().filter(|a| !a.io) {
        for w in watchpoints {
            if w.overlaps(a.addr, a.len) && w.triggered_by(a.read, a.write) {
                return Some((w.kind, w.addr.max(a.addr)));
            }
        }
    }
    None
}
