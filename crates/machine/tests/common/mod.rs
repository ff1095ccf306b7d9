//! What the PC-board guest tests share: a PC machine per tier, a 32-bit assembler, and the
//! flat protected-mode setup (GDT, one interrupt gate, the guest at `ENTRY`).
#![allow(dead_code)]

use crane86_machine::{Board, ExceptionPolicy, Machine, MachineConfig};
use crane86_runtime::{CpuMode, DescriptorTable};
use crane86_translator::Tier;
use iced_x86::code_asm::*;

/// Every tier, the automatic one compiling after three runs.
pub const TIERS: [Tier; 3] = [Tier::Interp, Tier::Jit, Tier::Auto { threshold: 3 }];
pub const GDT: u64 = 0x500;
pub const IDT: u64 = 0x600;
pub const ENTRY: u64 = 0x1000;
pub const HANDLER: u64 = 0x2000;
/// Flat 4 GiB code (0x08) and data (0x10) segments, 32-bit.
pub const GDT_ENTRIES: [u64; 3] = [0, 0x00cf_9a00_0000_ffff, 0x00cf_9200_0000_ffff];

/// A PC board machine that stops at the first exception (the tests' result).
pub fn machine(tier: Tier) -> Machine {
    Machine::new(&MachineConfig {
        tier,
        exceptions: ExceptionPolicy::Stop,
        board: Board::Pc,
        ..MachineConfig::default()
    })
    .unwrap()
}

/// A flat test machine (no PC devices) that stops at the first exception.
pub fn flat_machine(tier: Tier) -> Machine {
    Machine::new(&MachineConfig {
        tier,
        exceptions: ExceptionPolicy::Stop,
        ..MachineConfig::default()
    })
    .unwrap()
}

/// Assembles 32-bit code at `at`.
pub fn asm(at: u64, f: impl FnOnce(&mut CodeAssembler) -> Result<(), IcedError>) -> Vec<u8> {
    let mut a = CodeAssembler::new(32).unwrap();
    f(&mut a).unwrap();
    a.assemble(at).unwrap()
}

/// The guest's first instructions: reload CS, DS and SS from the test GDT (the flat
/// loader's descriptor caches do not come from it) and set the stack below 0x8000.
pub fn enter_flat(a: &mut CodeAssembler) -> Result<(), IcedError> {
    let mut flat = a.create_label();
    // jmp far 0x08:flat, 7 bytes at ENTRY.
    a.jmp_far(0x08, ENTRY as u32 + 7)?;
    a.set_label(&mut flat)?;
    a.mov(eax, 0x10)?;
    a.mov(ds, ax)?;
    a.mov(ss, ax)?;
    a.mov(esp, 0x8000)
}

/// A 32-bit interrupt gate to `HANDLER` through the flat code segment.
pub fn interrupt_gate() -> u64 {
    (HANDLER & 0xffff) | (0x08 << 16) | (0x8e << 40) | ((HANDLER >> 16) << 48)
}

/// Loads `main` at `ENTRY` in 32-bit protected mode with flat segments, and `handler` behind
/// IDT vector `vector`.
pub fn load(m: &mut Machine, main: &[u8], handler: &[u8], vector: u8) {
    m.load_flat(main, ENTRY, ENTRY, CpuMode::Prot32).unwrap();
    m.mem.load(HANDLER, handler).unwrap();
    for (i, d) in GDT_ENTRIES.iter().enumerate() {
        m.mem.load(GDT + 8 * i as u64, &d.to_le_bytes()).unwrap();
    }
    m.mem
        .load(IDT + 8 * u64::from(vector), &interrupt_gate().to_le_bytes())
        .unwrap();
    m.cpu.gdtr = DescriptorTable {
        base: GDT,
        limit: (GDT_ENTRIES.len() * 8 - 1) as u16,
    };
    m.cpu.idtr = DescriptorTable {
        base: IDT,
        limit: 0x7ff,
    };
}

/// Assembles `a` at 0x1000; returns the code and the address of label `mark` (the
/// instruction a test expects to fault).
pub fn assemble_marked(mut a: CodeAssembler, mark: CodeLabel) -> (Vec<u8>, u64) {
    let r = a
        .assemble_options(
            0x1000,
            iced_x86::BlockEncoderOptions::RETURN_NEW_INSTRUCTION_OFFSETS,
        )
        .unwrap();
    let at = r.label_ip(&mark).unwrap();
    (r.inner.code_buffer, at)
}
