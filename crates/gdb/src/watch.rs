//! Watchpoints: which memory the next instruction reads and writes.
//!
//! crane86 has no watchpoint hardware to program and its memory fast paths are inline in
//! generated code, so watchpoints are checked instruction by instruction: while any is set
//! the stub runs the guest with [`Machine::step`] (the interpreter) and, before each
//! step, lists the instruction's explicit memory operands with iced-x86's instruction info
//! (stack pushes and pops, string operands and RIP-relative operands included) at the
//! current register values. If a listed access overlaps a watched range and the
//! instruction then retires (a faulting access never happened), the stop is reported
//! after it, as a CPU reports a data breakpoint. Implicit accesses of the system (page
//! walks, descriptor-table reads, interrupt frames) are not watched. The normal run loop
//! is untouched: watchpoints cost nothing while none is set.

use gdbstub::target::ext::breakpoints::WatchKind;
use iced_x86::{Decoder, DecoderOptions, InstructionInfoFactory, OpAccess, Register};

use crane86_machine::Machine;
use crane86_runtime::{CpuMode, SegReg};

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

/// A memory access of an instruction: linear address, size, read, written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Access {
    /// Linear address.
    pub addr: u64,
    /// Bytes.
    pub len: u64,
    /// The instruction reads it.
    pub read: bool,
    /// The instruction writes it.
    pub write: bool,
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
    let bitness = code_bitness(m);
    let rip = m.cpu.rip;
    let mut bytes = [0u8; 15];
    let n = mem::read(m, AddrSpace::Linear, linear, &mut bytes);
    let mut decoder = Decoder::with_ip(bitness, &bytes[..n], rip, DecoderOptions::NONE);
    let insn = decoder.decode();
    if insn.is_invalid() {
        return Vec::new();
    }
    let mut factory = InstructionInfoFactory::new();
    let info = factory.info(&insn);
    let cpu = &m.cpu;
    let reg = |r: Register, _element: usize, _size: usize| -> Option<u64> {
        register_value(cpu, long, r)
    };
    let mut out = Vec::new();
    for used in info.used_memory() {
        let (read, write) = match used.access() {
            OpAccess::Read | OpAccess::CondRead => (true, false),
            OpAccess::Write | OpAccess::CondWrite => (false, true),
            OpAccess::ReadWrite | OpAccess::ReadCondWrite => (true, true),
            // LEA, prefetches, NOP memory forms: no access.
            _ => continue,
        };
        let Some(mut addr) = used.virtual_address(0, reg) else {
            continue;
        };
        if !long {
            addr &= 0xffff_ffff;
        }
        let len = used.memory_size().size().max(1) as u64;
        out.push(Access {
            addr,
            len,
            read,
            write,
        });
    }
    out
}

/// The first watchpoint `accesses` trigger, with the address GDB is told.
pub fn hit(watchpoints: &[Watchpoint], accesses: &[Access]) -> Option<(WatchKind, u64)> {
    for a in accesses {
        for w in watchpoints {
            if w.overlaps(a.addr, a.len) && w.triggered_by(a.read, a.write) {
                return Some((w.kind, w.addr.max(a.addr)));
            }
        }
    }
    None
}

/// 16, 32 or 64: the default operand size of the code at RIP (CS.D, CS.L).
fn code_bitness(m: &Machine) -> u32 {
    m.cpu.mode.bitness()
}

/// A register's value for iced's address computation: general registers at their width,
/// segment registers as their base (0 for CS, DS, ES and SS in 64-bit mode).
fn register_value(cpu: &crane86_runtime::CpuState, long: bool, r: Register) -> Option<u64> {
    let seg = |s: SegReg| Some(cpu.seg[s as usize].base);
    match r {
        Register::ES | Register::CS | Register::SS | Register::DS if long => Some(0),
        Register::ES => seg(SegReg::Es),
        Register::CS => seg(SegReg::Cs),
        Register::SS => seg(SegReg::Ss),
        Register::DS => seg(SegReg::Ds),
        Register::FS => seg(SegReg::Fs),
        Register::GS => seg(SegReg::Gs),
        // iced folds RIP-relative displacements into absolute addresses.
        Register::RIP | Register::EIP => Some(0),
        r if r.is_gpr() => {
            let full = cpu.gpr[r.full_register().number() - Register::RAX.number()];
            match r.size() {
                1 if r.is_gpr8()
                    && matches!(r, Register::AH | Register::CH | Register::DH | Register::BH) =>
                {
                    Some((full >> 8) & 0xff)
                }
                1 => Some(full & 0xff),
                2 => Some(full & 0xffff),
                4 => Some(full & 0xffff_ffff),
                _ => Some(full),
            }
        }
        _ => None,
    }
}
