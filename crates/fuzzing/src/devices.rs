//! Random sequences of device accesses on the PC board, made by a guest program.
//!
//! The input is read as a list of operations: port writes and reads of every size, MMIO
//! writes and reads in the I/O APIC, HPET, local APIC and pc-testdev windows (or anywhere
//! above RAM), string I/O with a REP prefix, waits for the next interrupt (STI; HLT) and
//! busy loops that let virtual time pass, and writes to the timer MSRs. They become 32-bit
//! code that runs in the interpreter with interrupts delivered through an IDT whose every
//! vector has a handler: interrupts acknowledge the local APIC and both 8259s and return,
//! exceptions (which the program itself never causes, but for a refused WRMSR) end the run.
//! So the guest reaches whatever state the devices can be driven into, with timers firing.
//!
//! The oracle is the fuzzer's: no panic, no hang, no machine error. The run has an
//! instruction budget, and HLT only skips ahead to the next device deadline.

use crane86_machine::Machine;
use crane86_runtime::{CpuMode, DescriptorTable, SegReg, Segment};

use crate::{Bytes, Finding};

/// Guest RAM.
const RAM: u64 = 4 << 20;
/// The GDT (flat code 0x08, flat data 0x10), the IDT and the handler stubs.
const GDT: u64 = 0x500;
const IDT: u64 = 0x1000;
const STUBS: u64 = 0x2000;
const STUB_LEN: u64 = 16;
const COMMON: u64 = 0x3000;
/// The program, and the buffer string I/O reads and writes.
const PROGRAM: u64 = 0x4000;
const BUFFER: u64 = 0x20_0000;
/// Operations read from one input.
const MAX_OPS: usize = 400;
/// Instructions per run.
const BUDGET: u64 = 200_000;

/// MMIO windows: the I/O APIC, the HPET, the local APIC and pc-testdev's scratch memory.
const WINDOWS: [(u32, u32); 4] = [
    (0xfec0_0000, 0x1000),
    (0xfed0_0000, 0x400),
    (0xfee0_0000, 0x1000),
    (0xff00_0000, 0x1000),
];

/// Vectors for which the CPU pushes an error code.
fn has_error_code(v: u64) -> bool {
    matches!(v, 8 | 10..=14 | 17 | 21 | 29 | 30)
}

/// Builds the tables, the handlers and the program from `input`.
fn build(m: &mut Machine, input: &mut Bytes<'_>) {
    for (i, d) in [0u64, 0x00cf_9a00_0000_ffff, 0x00cf_9200_0000_ffff]
        .iter()
        .enumerate()
    {
        m.mem.write_phys(GDT + 8 * i as u64, 8, *d);
    }
    for v in 0..256u64 {
        let stub = STUBS + v * STUB_LEN;
        // A 32-bit interrupt gate: selector 0x08, present, DPL 0.
        let gate = (stub & 0xffff) | 0x08 << 16 | 0x8e00 << 32 | (stub >> 16) << 48;
        m.mem.write_phys(IDT + 8 * v, 8, gate);
        let mut code = Vec::new();
        if v < 32 && v != 2 {
            // An exception: report it through isa-debug-exit, which ends the run.
            code.extend_from_slice(&[0xb0, v as u8, 0xe6, 0xf4]);
        } else {
            if has_error_code(v) {
                code.extend_from_slice(&[0x83, 0xc4, 0x04]);
            }
            let rel = COMMON as i64 - (stub as i64 + code.len() as i64 + 5);
            code.push(0xe9);
            code.extend_from_slice(&(rel as i32).to_le_bytes());
        }
        m.mem.load(stub, &code).expect("stubs fit in RAM");
    }
    // push eax; EOI to the local APIC; non-specific EOI to both 8259s; pop eax; iret.
    let common = [
        0x50, 0xc7, 0x05, 0xb0, 0x00, 0xe0, 0xfe, 0, 0, 0, 0, 0xb0, 0x20, 0xe6, 0x20, 0xe6, 0xa0,
        0x58, 0xcf,
    ];
    m.mem.load(COMMON, &common).expect("the handler fits");

    let mut p = Vec::new();
    let imm32 = |p: &mut Vec<u8>, op: u8, v: u32| {
        p.push(op);
        p.extend_from_slice(&v.to_le_bytes());
    };
    for _ in 0..MAX_OPS {
        if !input.more() {
            break;
        }
        let kind = input.u8();
        let size = kind >> 4 & 3;
        match kind & 7 {
            0 | 1 => {
                let port = input.u16();
                imm32(&mut p, 0xba, u32::from(port));
                if kind & 7 == 0 {
                    imm32(&mut p, 0xb8, input.u32());
                    p.extend_from_slice(match size {
                        0 | 3 => &[0xee][..],
                        1 => &[0x66, 0xef],
                        _ => &[0xef],
                    });
                } else {
                    p.extend_from_slice(match size {
                        0 | 3 => &[0xec][..],
                        1 => &[0x66, 0xed],
                        _ => &[0xed],
                    });
                }
            }
            2 | 3 => {
                let w = input.u8();
                let off = u32::from(input.u16());
                let addr = match WINDOWS.get(usize::from(w % 5)) {
                    Some(&(base, len)) => base + (off & (len - 1)),
                    None => (input.u32() | 0x8000_0000) & !3,
                };
                imm32(&mut p, 0xbb, addr);
                if kind & 7 == 2 {
                    imm32(&mut p, 0xb8, input.u32());
                    p.extend_from_slice(match size {
                        0 | 3 => &[0x88, 0x03][..],
                        1 => &[0x66, 0x89, 0x03],
                        _ => &[0x89, 0x03],
                    });
                } else {
                    p.extend_from_slice(match size {
                        0 | 3 => &[0x8a, 0x03][..],
                        1 => &[0x66, 0x8b, 0x03],
                        _ => &[0x8b, 0x03],
                    });
                }
            }
            4 => p.extend_from_slice(&[0xfb, 0xf4, 0xfa]),
            5 => {
                imm32(&mut p, 0xb9, u32::from(input.u16()) + 1);
                p.extend_from_slice(&[0xfb, 0xe2, 0xfe, 0xfa]);
            }
            6 => {
                let port = input.u16();
                let count = input.u8();
                imm32(&mut p, 0xba, u32::from(port));
                imm32(&mut p, 0xbe, BUFFER as u32);
                imm32(&mut p, 0xbf, BUFFER as u32 + 0x1000);
                imm32(&mut p, 0xb9, u32::from(count));
                p.push(0xfc);
                p.extend_from_slice(match size {
                    0 => &[0xf3, 0x6e][..],
                    1 => &[0xf3, 0x6c],
                    2 => &[0xf3, 0x6f],
                    _ => &[0xf3, 0x6d],
                });
            }
            _ => {
                // WRMSR to IA32_APIC_BASE, IA32_TSC_DEADLINE or IA32_TSC.
                let msr = [0x1b, 0x6e0, 0x10, 0x6e0][usize::from(size)];
                imm32(&mut p, 0xb9, msr);
                imm32(&mut p, 0xb8, input.u32());
                imm32(&mut p, 0xba, u32::from(input.u8()));
                p.extend_from_slice(&[0x0f, 0x30]);
            }
        }
    }
    // Let pending interrupts in, then stop: CLI; HLT ends the run.
    p.extend_from_slice(&[0xfb, 0x90, 0xfa, 0xf4]);
    m.mem.load(PROGRAM, &p).expect("the program fits in RAM");
}

/// Runs the device program `data` describes on a fresh PC board.
pub fn run(data: &[u8]) -> Result<(), Finding> {
    let mut m = crate::pc_machine(RAM)?;
    build(&mut m, &mut Bytes::new(data));
    m.cpu = m.flat_cpu(CpuMode::Prot32);
    m.cpu.gdtr = DescriptorTable {
        base: GDT,
        limit: 0x17,
    };
    m.cpu.idtr = DescriptorTable {
        base: IDT,
        limit: 0x7ff,
    };
    m.cpu.seg[SegReg::Cs as usize] = Segment {
        selector: 0x08,
        ..m.cpu.seg[SegReg::Cs as usize]
    };
    m.cpu.rip = PROGRAM;
    m.cpu.gpr[4] = BUFFER - 16;
    m.run(Some(BUDGET))
        .map(|_| ())
        .map_err(|e| Finding(format!("machine error: {e}")))
}
