//! Hardware breakpoints (DR0-DR3 under DR7, SDM Vol. 3 chapter 18): which breakpoints are
//! armed, whether an instruction breakpoint matches an instruction about to run, and which
//! data and I/O breakpoints an instruction's accesses hit.
//!
//! Instruction breakpoints (R/W = 00), data breakpoints (R/W = 01 write, 11 read or write)
//! and, with CR4.DE = 1, I/O breakpoints (R/W = 10: IN, OUT, INS and OUTS touching a port
//! in the range; without CR4.DE the encoding is undefined and such a breakpoint never
//! fires) are modelled. While any breakpoint is armed, blocks are single-instruction and
//! interpreted (the bit is part of the block key, like TF), so the run loop sees every
//! instruction: it checks the instruction's address before it runs and its accesses
//! ([`instruction_accesses`]: memory operands and ports, listed before it runs, from the
//! registers it starts with) after it retires, with [`data_breakpoint_hits`]. Implicit
//! accesses of the system (page walks, descriptor tables, interrupt frames, the I/O
//! permission bitmap) are not matched. A REP INS/OUTS runs one iteration per execution, so
//! an I/O breakpoint traps after the first iteration that touched the port, as the SDM
//! says (18.3.1.2), with EIP still at the instruction when iterations remain.

use iced_x86::{Instruction, InstructionInfoFactory, Mnemonic, OpAccess, OpKind, Register};

use crate::state::{CpuMode, CpuState, SegReg, CR4_DE};

/// DR6.BD: the #DB is a general-detect fault (a debug-register access with DR7.GD set).
pub const DR6_BD: u64 = 1 << 13;
/// DR6.BS: the #DB includes a single-step trap.
pub const DR6_BS: u64 = 1 << 14;
/// DR6.BT: the #DB is the task-switch trap of a TSS with its T flag set.
pub const DR6_BT: u64 = 1 << 15;
/// DR6.B0-B3: which breakpoints matched.
pub const DR6_HITS: u64 = 0xf;

/// DR7.Ln|Gn for breakpoint `n`.
fn enabled(dr7: u64, n: usize) -> bool {
    dr7 & (0b11 << (2 * n)) != 0
}

/// DR7.R/Wn: 00 instruction execution, 01 data writes, 10 I/O, 11 data reads and writes.
fn kind(dr7: u64, n: usize) -> u64 {
    (dr7 >> (16 + 4 * n)) & 0b11
}

/// DR7.LENn as a byte count: 00 one, 01 two, 10 eight, 11 four.
fn length(dr7: u64, n: usize) -> u64 {
    match (dr7 >> (18 + 4 * n)) & 0b11 {
        0b00 => 1,
        0b01 => 2,
        0b10 => 8,
        _ => 4,
    }
}

/// True when at least one instruction breakpoint is armed.
pub fn exec_breakpoints_armed(cpu: &CpuState) -> bool {
    let dr7 = cpu.dr[7];
    dr7 & 0xff != 0 && (0..4).any(|n| enabled(dr7, n) && kind(dr7, n) == 0b00)
}

/// True when breakpoint `n` is matched against accesses: a data breakpoint (R/W = 01 or
/// 11), or an I/O breakpoint (R/W = 10) with CR4.DE.
fn matches_accesses(cpu: &CpuState, n: usize) -> bool {
    let k = kind(cpu.dr[7], n);
    enabled(cpu.dr[7], n) && (k & 1 != 0 || (k == 0b10 && cpu.cr4 & CR4_DE != 0))
}

/// True when at least one breakpoint matched against an instruction's accesses after it
/// retires is armed: a data breakpoint (R/W = 01 or 11), or with CR4.DE an I/O breakpoint
/// (R/W = 10). The run loop then lists the accesses ([`instruction_accesses`]) and matches
/// them ([`data_breakpoint_hits`]).
pub fn data_breakpoints_armed(cpu: &CpuState) -> bool {
    cpu.dr[7] & 0xff != 0 && (0..4).any(|n| matches_accesses(cpu, n))
}

/// True when any breakpoint the run loop checks is armed: blocks must then hold one
/// instruction and be interpreted.
pub fn breakpoints_armed(cpu: &CpuState) -> bool {
    exec_breakpoints_armed(cpu) || data_breakpoints_armed(cpu)
}

/// The DR6.B0-B3 bits of the armed instruction breakpoints whose address is `linear`, or
/// `None` when none matches.
pub fn exec_breakpoint_hit(cpu: &CpuState, linear: u64) -> Option<u64> {
    let dr7 = cpu.dr[7];
    let bits = (0..4)
        .filter(|&n| enabled(dr7, n) && kind(dr7, n) == 0b00 && cpu.dr[n] == linear)
        .fold(0u64, |b, n| b | 1 << n);
    (bits != 0).then_some(bits)
}

/// One memory or I/O access of an instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Access {
    /// Linear address of the first byte; for an I/O access, the first port.
    pub addr: u64,
    /// Bytes (at least 1).
    pub len: u64,
    /// The instruction reads it.
    pub read: bool,
    /// The instruction writes it.
    pub write: bool,
    /// The access is to I/O port space (IN, OUT, INS, OUTS), not memory.
    pub io: bool,
}

/// The DR6.B0-B3 bits of the armed data and I/O breakpoints that `accesses` hit (0 for
/// none). A breakpoint covers LEN bytes (or ports) from its address aligned down to LEN (SDM
/// Vol. 3 18.2.5); R/W = 01 matches memory writes, 11 memory reads and writes, and with
/// CR4.DE 10 matches port reads and writes.
pub fn data_breakpoint_hits(cpu: &CpuState, accesses: &[Access]) -> u64 {
    let dr7 = cpu.dr[7];
    let mut bits = 0;
    for n in 0..4 {
        if !matches_accesses(cpu, n) {
            continue;
        }
        let k = kind(dr7, n);
        let len = length(dr7, n);
        let start = cpu.dr[n] & !(len - 1);
        let hit = accesses.iter().any(|a| {
            let wanted = match k {
                0b01 => !a.io && a.write,
                0b11 => !a.io && (a.read || a.write),
                _ => a.io,
            };
            wanted && a.addr < start.wrapping_add(len) && start < a.addr.wrapping_add(a.len)
        });
        if hit {
            bits |= 1 << n;
        }
    }
    bits
}

/// The explicit memory accesses of `insn` run with `cpu`'s current registers, from iced-x86's
/// instruction info: operands, stack pushes and pops, string operands (one iteration: a REP
/// instruction runs one iteration per execution, none when the count is 0), RIP-relative
/// operands; and the ports IN, OUT, INS and OUTS touch (`io` set). LEA, prefetches and NOP
/// forms access nothing.
pub fn instruction_accesses(cpu: &CpuState, insn: &Instruction) -> Vec<Access> {
    let long = cpu.mode == CpuMode::Long64;
    if insn.has_rep_prefix() || insn.has_repne_prefix() {
        if let Some(size) = string_address_size(insn) {
            // The count register (CX, ECX or RCX: the address size) is 0: no iteration.
            let mask = match size {
                16 => 0xffff,
                32 => 0xffff_ffff,
                _ => u64::MAX,
            };
            if cpu.gpr[1] & mask == 0 {
                return Vec::new();
            }
        }
    }
    let mut factory = InstructionInfoFactory::new();
    let info = factory.info(insn);
    let reg = |r: Register, _element: usize, _size: usize| register_value(cpu, long, r);
    let mut out: Vec<Access> = port_access(cpu, insn).into_iter().collect();
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
        // iced leaves the size of REP string operands unknown (the whole run's); one
        // iteration accesses one element.
        let size = match used.memory_size().size() {
            0 => insn.memory_size().size(),
            n => n,
        };
        let len = size.max(1) as u64;
        out.push(Access {
            addr,
            len,
            read,
            write,
            io: false,
        });
    }
    out
}

/// The ports an I/O instruction touches: IN and OUT at the immediate port or DX, INS and
/// OUTS at DX, as many consecutive ports as the data has bytes (AL/AX/EAX for IN and OUT,
/// the string element for INS and OUTS).
fn port_access(cpu: &CpuState, insn: &Instruction) -> Option<Access> {
    let (read, len) = match insn.mnemonic() {
        Mnemonic::In => (true, insn.op0_register().size()),
        Mnemonic::Out => (false, insn.op1_register().size()),
        Mnemonic::Insb | Mnemonic::Insw | Mnemonic::Insd => (true, insn.memory_size().size()),
        Mnemonic::Outsb | Mnemonic::Outsw | Mnemonic::Outsd => (false, insn.memory_size().size()),
        _ => return None,
    };
    let immediate = (0..insn.op_count()).any(|i| insn.op_kind(i) == OpKind::Immediate8);
    let addr = if immediate {
        u64::from(insn.immediate8())
    } else {
        cpu.gpr[2] & 0xffff
    };
    Some(Access {
        addr,
        len: len.max(1) as u64,
        read,
        write: !read,
        io: true,
    })
}

/// 16, 32 or 64 for a string instruction: its address size, from the register its memory
/// operand is based on (SI/ESI/RSI or DI/EDI/RDI); `None` for other instructions.
fn string_address_size(insn: &Instruction) -> Option<u32> {
    use iced_x86::OpKind as K;
    (0..insn.op_count()).find_map(|i| match insn.op_kind(i) {
        K::MemorySegSI | K::MemorySegDI | K::MemoryESDI => Some(16),
        K::MemorySegESI | K::MemorySegEDI | K::MemoryESEDI => Some(32),
        K::MemorySegRSI | K::MemorySegRDI | K::MemoryESRDI => Some(64),
        _ => None,
    })
}

/// A register's value for iced's address computation: general registers at their width,
/// segment registers as their base (0 for CS, DS, ES and SS in 64-bit mode).
fn register_value(cpu: &CpuState, long: bool, r: Register) -> Option<u64> {
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
                1 if matches!(r, Register::AH | Register::CH | Register::DH | Register::BH) => {
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

#[cfg(test)]
mod tests {
    use super::*;
    use iced_x86::{Decoder, DecoderOptions};

    fn decode(bitness: u32, bytes: &[u8]) -> Instruction {
        Decoder::with_ip(bitness, bytes, 0x1000, DecoderOptions::NONE).decode()
    }

    fn access(addr: u64, len: u64, read: bool, write: bool) -> Access {
        Access {
            addr,
            len,
            read,
            write,
            io: false,
        }
    }

    fn port(addr: u64, len: u64, read: bool) -> Access {
        Access {
            addr,
            len,
            read,
            write: !read,
            io: true,
        }
    }

    #[test]
    fn only_enabled_execute_breakpoints_match() {
        let mut cpu = CpuState::new(CpuMode::Prot32);
        cpu.dr[0] = 0x1000;
        cpu.dr[1] = 0x2000;
        assert!(!breakpoints_armed(&cpu));
        // L0 (execute), G1 with R/W1 = 01 (data write).
        cpu.dr[7] = 0x400 | 0b1 | 0b1000 | (0b01 << 20);
        assert!(exec_breakpoints_armed(&cpu));
        assert!(data_breakpoints_armed(&cpu));
        assert_eq!(exec_breakpoint_hit(&cpu, 0x1000), Some(0b1));
        assert_eq!(exec_breakpoint_hit(&cpu, 0x2000), None);
        assert_eq!(exec_breakpoint_hit(&cpu, 0x1001), None);
    }

    #[test]
    fn io_breakpoints_need_cr4_de() {
        let mut cpu = CpuState::new(CpuMode::Prot32);
        cpu.dr[0] = 0x80;
        // G0, R/W0 = 10, LEN0 = 00.
        cpu.dr[7] = 0x400 | 0b10 | (0b10 << 16);
        // Without CR4.DE the encoding is undefined: never armed, never hit.
        assert!(!breakpoints_armed(&cpu));
        assert_eq!(data_breakpoint_hits(&cpu, &[port(0x80, 1, false)]), 0);
        cpu.cr4 |= CR4_DE;
        assert!(breakpoints_armed(&cpu));
        assert!(data_breakpoints_armed(&cpu));
        assert_eq!(data_breakpoint_hits(&cpu, &[port(0x80, 1, false)]), 0b1);
        assert_eq!(data_breakpoint_hits(&cpu, &[port(0x80, 1, true)]), 0b1);
        // A memory access at the same address is no I/O.
        assert_eq!(
            data_breakpoint_hits(&cpu, &[access(0x80, 1, true, true)]),
            0
        );
    }

    #[test]
    fn io_breakpoint_ranges_and_data_breakpoints_ignore_ports() {
        let mut cpu = CpuState::new(CpuMode::Prot32);
        cpu.cr4 |= CR4_DE;
        // L1: R/W1 = 10, LEN1 = 11 (4 ports) at 0x3f9, aligned down to 0x3f8..0x3fb.
        cpu.dr[1] = 0x3f9;
        cpu.dr[7] = 0x400 | 0b100 | (0b1110 << 20);
        for (p, len, want) in [
            (0x3f7u64, 1u64, 0u64),
            (0x3f7, 2, 0b10),
            (0x3f8, 1, 0b10),
            (0x3fb, 4, 0b10),
            (0x3fc, 4, 0),
        ] {
            assert_eq!(
                data_breakpoint_hits(&cpu, &[port(p, len, true)]),
                want,
                "port {p:#x} len {len}"
            );
        }
        // A read/write data breakpoint (R/W1 = 11) at 0x3f8 is not hit by port 0x3f8.
        cpu.dr[7] = 0x400 | 0b100 | (0b1111 << 20);
        assert_eq!(data_breakpoint_hits(&cpu, &[port(0x3f8, 1, false)]), 0);
    }

    #[test]
    fn io_instructions_list_their_ports() {
        let mut cpu = CpuState::new(CpuMode::Prot32);
        cpu.gpr[2] = 0x1_03f8; // EDX: only DX counts
        cpu.gpr[6] = 0x3000; // ESI
        cpu.gpr[7] = 0x4000; // EDI
        cpu.gpr[1] = 1; // ECX
                        // out 0x80, al / in ax, 0x61 / in eax, dx / out dx, al
        assert_eq!(
            instruction_accesses(&cpu, &decode(32, &[0xe6, 0x80])),
            [port(0x80, 1, false)]
        );
        assert_eq!(
            instruction_accesses(&cpu, &decode(32, &[0x66, 0xe5, 0x61])),
            [port(0x61, 2, true)]
        );
        assert_eq!(
            instruction_accesses(&cpu, &decode(32, &[0xed])),
            [port(0x3f8, 4, true)]
        );
        assert_eq!(
            instruction_accesses(&cpu, &decode(32, &[0xee])),
            [port(0x3f8, 1, false)]
        );
        // rep outsw: the port and the memory read; insd: the port and the memory write.
        let a = instruction_accesses(&cpu, &decode(32, &[0xf3, 0x66, 0x6f]));
        assert!(a.contains(&port(0x3f8, 2, false)), "{a:?}");
        assert!(a.contains(&access(0x3000, 2, true, false)), "{a:?}");
        let a = instruction_accesses(&cpu, &decode(32, &[0x6d]));
        assert!(a.contains(&port(0x3f8, 4, true)), "{a:?}");
        assert!(a.contains(&access(0x4000, 4, false, true)), "{a:?}");
        // A REP INS with a count of 0 touches no port.
        cpu.gpr[1] = 0;
        assert!(instruction_accesses(&cpu, &decode(32, &[0xf3, 0x6c])).is_empty());
    }

    #[test]
    fn write_breakpoints_ignore_reads() {
        let mut cpu = CpuState::new(CpuMode::Long64);
        cpu.dr[1] = 0x5000;
        // G1, R/W1 = 01, LEN1 = 11 (4 bytes): the kvm-unit-tests value.
        cpu.dr[7] = 0x00d0_040a;
        assert_eq!(
            data_breakpoint_hits(&cpu, &[access(0x5000, 8, true, false)]),
            0
        );
        assert_eq!(
            data_breakpoint_hits(&cpu, &[access(0x5000, 8, false, true)]),
            0b10
        );
        // Read/write (R/W1 = 11) matches both.
        cpu.dr[7] = 0x00f0_040a;
        assert_eq!(
            data_breakpoint_hits(&cpu, &[access(0x5003, 1, true, false)]),
            0b10
        );
        assert_eq!(
            data_breakpoint_hits(&cpu, &[access(0x5004, 4, true, true)]),
            0
        );
        assert_eq!(
            data_breakpoint_hits(&cpu, &[access(0x4ffc, 4, true, true)]),
            0
        );
        assert_eq!(
            data_breakpoint_hits(&cpu, &[access(0x4ffd, 4, true, true)]),
            0b10
        );
    }

    #[test]
    fn lengths_align_the_address_down() {
        let mut cpu = CpuState::new(CpuMode::Prot32);
        for (len_bits, len) in [(0b00u64, 1u64), (0b01, 2), (0b11, 4), (0b10, 8)] {
            cpu.dr[2] = 0x8000 + len - 1; // the last byte of an aligned range
                                          // G2, R/W2 = 11.
            cpu.dr[7] = 0x400 | (0b10 << 4) | (0b11 << 24) | (len_bits << 26);
            for off in 0..16u64 {
                let want = if off < len { 0b100 } else { 0 };
                let got = data_breakpoint_hits(&cpu, &[access(0x8000 + off, 1, true, false)]);
                assert_eq!(got, want, "len {len} offset {off}");
            }
            assert_eq!(
                data_breakpoint_hits(&cpu, &[access(0x7fff, 1, false, true)]),
                0
            );
        }
    }

    #[test]
    fn several_breakpoints_report_together() {
        let mut cpu = CpuState::new(CpuMode::Prot32);
        cpu.dr[0] = 0x100;
        cpu.dr[3] = 0x104;
        // L0 and L3, both write, 8 and 1 bytes.
        cpu.dr[7] = 0x400 | 0b1 | (0b1 << 6) | (0b1001 << 16) | (0b0001 << 28);
        let hits = data_breakpoint_hits(&cpu, &[access(0x100, 8, false, true)]);
        assert_eq!(hits, 0b1001);
    }

    #[test]
    fn accesses_of_common_instructions() {
        let mut cpu = CpuState::new(CpuMode::Long64);
        cpu.gpr[0] = 0x2000; // RAX
        cpu.gpr[4] = 0x9000; // RSP
                             // mov [rax+8], ecx
        let a = instruction_accesses(&cpu, &decode(64, &[0x89, 0x48, 0x08]));
        assert_eq!(a, vec![access(0x2008, 4, false, true)]);
        // push rax
        let a = instruction_accesses(&cpu, &decode(64, &[0x50]));
        assert_eq!(a, vec![access(0x8ff8, 8, false, true)]);
        // lea rcx, [rax+8]: no access
        let a = instruction_accesses(&cpu, &decode(64, &[0x48, 0x8d, 0x48, 0x08]));
        assert!(a.is_empty());
        // mov ss, [rax] in 32-bit code with a DS base.
        let mut cpu = CpuState::new(CpuMode::Prot32);
        cpu.seg[SegReg::Ds as usize].base = 0x10_0000;
        cpu.gpr[0] = 0x2000;
        let a = instruction_accesses(&cpu, &decode(32, &[0x8e, 0x10]));
        assert_eq!(a, vec![access(0x10_2000, 2, true, false)]);
    }

    #[test]
    fn rep_strings_list_one_iteration_or_none() {
        let mut cpu = CpuState::new(CpuMode::Prot32);
        cpu.gpr[6] = 0x3000; // ESI
        cpu.gpr[7] = 0x4000; // EDI
        cpu.gpr[1] = 2; // ECX
        let rep_movsd = decode(32, &[0xf3, 0xa5]);
        let a = instruction_accesses(&cpu, &rep_movsd);
        assert!(a.contains(&access(0x3000, 4, true, false)), "{a:?}");
        assert!(a.contains(&access(0x4000, 4, false, true)), "{a:?}");
        cpu.gpr[1] = 0;
        assert!(instruction_accesses(&cpu, &rep_movsd).is_empty());
        // REPNE SCASW in 16-bit code: CX is the count, ES:DI the operand.
        let mut cpu = CpuState::new(CpuMode::Real16);
        cpu.seg[SegReg::Es as usize].base = 0x2_0000;
        cpu.gpr[7] = 0x1_0010; // EDI: only DI counts
        cpu.gpr[1] = 0x1_0000; // ECX: CX = 0, no iteration
        let repne_scasw = decode(16, &[0xf2, 0xaf]);
        assert!(instruction_accesses(&cpu, &repne_scasw).is_empty());
        cpu.gpr[1] = 1;
        let a = instruction_accesses(&cpu, &repne_scasw);
        assert_eq!(a, vec![access(0x2_0010, 2, true, false)]);
    }
}
