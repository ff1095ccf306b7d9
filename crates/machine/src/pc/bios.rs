//! The state a PC BIOS leaves behind when it hands over to a kernel, for boots that skip the
//! BIOS (multiboot): crane86 has no firmware, so the board starts as SeaBIOS would leave it
//! under QEMU, the machine kvm-unit-tests and hobby kernels are written against.
//!
//! - The 8259 pair is initialised with the BIOS vectors (IRQ 0-7 at 0x08, IRQ 8-15 at 0x70),
//!   edge-triggered, with IRQ 0 (timer), 1 (keyboard) and 2 (cascade) unmasked.
//! - PIT counter 0 runs in mode 3 with count 65536: the 18.2 Hz BIOS tick.
//! - Every real-mode interrupt vector points into a stub in the BIOS segment: the hardware
//!   IRQ vectors acknowledge the PIC and return, the others just return. (SeaBIOS's timer
//!   handler also counts ticks in the BIOS data area; nothing here needs that.)
//!
//! Kernels that enable interrupts without reprogramming the PIC see those timer ticks, as
//! they would under QEMU.

use crane86_runtime::PhysMem;

use super::Pc;

/// Where the interrupt stubs go: the top of the system BIOS segment, F000:FF00, clear of the
/// ACPI and MP tables (which start at 0xE0000 and 0xF0000).
const STUB_SEGMENT: u16 = 0xf000;
const STUB_OFFSET: u16 = 0xff00;
/// Vectors the BIOS gives IRQ 0 and IRQ 8.
const IRQ0_VECTOR: u8 = 0x08;
const IRQ8_VECTOR: u8 = 0x70;

/// `IRET`.
const STUB_IRET: &[u8] = &[0xcf];
/// `PUSH AX; MOV AL, 0x20; OUT 0x20, AL; POP AX; IRET`: EOI to the master.
const STUB_EOI_MASTER: &[u8] = &[0x50, 0xb0, 0x20, 0xe6, 0x20, 0x58, 0xcf];
/// `PUSH AX; MOV AL, 0x20; OUT 0xA0, AL; OUT 0x20, AL; POP AX; IRET`: EOI to both.
const STUB_EOI_BOTH: &[u8] = &[0x50, 0xb0, 0x20, 0xe6, 0xa0, 0xe6, 0x20, 0x58, 0xcf];

/// Puts the board and the low memory in the state the BIOS leaves. Needs RAM up to 1 MiB;
/// with less it leaves the IVT alone.
pub(crate) fn handoff(pc: &mut Pc, mem: &mut PhysMem) {
    let io = pc.port_io();
    // ICW1 (edge, cascade, ICW4), ICW2 (vector base), ICW3 (cascade on IRQ 2), ICW4 (8086).
    for (cmd, data, base, icw3) in [
        (0x20, 0x21, IRQ0_VECTOR, 0x04),
        (0xa0, 0xa1, IRQ8_VECTOR, 0x02),
    ] {
        io.port_write(cmd, 1, 0x11);
        io.port_write(data, 1, u32::from(base));
        io.port_write(data, 1, icw3);
        io.port_write(data, 1, 0x01);
    }
    io.port_write(0x21, 1, 0xf8);
    io.port_write(0xa1, 1, 0xff);
    // Counter 0, low then high byte, mode 3, binary; count 0 means 65536.
    io.port_write(0x43, 1, 0x36);
    io.port_write(0x40, 1, 0);
    io.port_write(0x40, 1, 0);

    if mem.ram_size() < 0x10_0000 {
        return;
    }
    let base = (u64::from(STUB_SEGMENT) << 4) + u64::from(STUB_OFFSET);
    let stubs = [STUB_IRET, STUB_EOI_MASTER, STUB_EOI_BOTH];
    let mut offsets = [0u16; 3];
    let mut at = 0u16;
    for (i, s) in stubs.iter().enumerate() {
        offsets[i] = STUB_OFFSET + at;
        let _ = mem.load(base + u64::from(at), s);
        at += s.len() as u16;
    }
    for vector in 0..=255u8 {
        let stub = match vector {
            IRQ0_VECTOR..0x10 => offsets[1],
            IRQ8_VECTOR..0x78 => offsets[2],
            _ => offsets[0],
        };
        let far = (u32::from(STUB_SEGMENT) << 16) | u32::from(stub);
        let _ = mem.load(u64::from(vector) * 4, &far.to_le_bytes());
    }
}
