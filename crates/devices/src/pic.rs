//! The 8259A programmable interrupt controller pair of the PC, with the PIIX edge/level
//! control registers (ELCR).
//!
//! The master sits at ports 0x20-0x21 and delivers to the CPU; the slave sits at 0xA0-0xA1
//! and its output drives the master's IRQ 2 (the cascade). Sixteen inputs: IRQ 0-7 on the
//! master, 8-15 on the slave. The ELCR (ports 0x4D0 master, 0x4D1 slave) makes an input
//! level-triggered instead of edge-triggered.
//!
//! The machine drives inputs with [`PicPair::set_irq`] (or a [`PicLine`]), polls
//! [`PicPair::has_interrupt`] (the INTR pin) and, when the CPU takes the interrupt, calls
//! [`PicPair::acknowledge`] (the INTA cycle) for the vector.

use std::sync::Arc;

use parking_lot::Mutex;

use crate::{read_bytes, write_bytes, IrqLine, PortDevice};

// Offsets within one chip's two ports.
/// Command port: ICW1, OCW2 and OCW3 writes; IRR, ISR or poll-word reads.
const CMD: u16 = 0;
/// Data port: ICW2-ICW4 during initialization, OCW1 (the IMR) afterwards.
const DATA: u16 = 1;

// ICW1 (command port, bit 4 set).
/// ICW4 follows (otherwise ICW4's functions are all cleared).
const ICW1_IC4: u8 = 0x01;
/// Single chip: no ICW3.
const ICW1_SNGL: u8 = 0x02;
/// All eight inputs level-triggered.
const ICW1_LTIM: u8 = 0x08;
/// Marks ICW1 on the command port.
const ICW1_INIT: u8 = 0x10;

// ICW2 (data port, after ICW1).
/// The vector base: bits 7-3 of every vector; bits 2-0 are the input number.
const ICW2_VECTOR_MASK: u8 = 0xf8;

// ICW4 (data port, last).
/// Automatic end of interrupt: the INTA cycle does not set the ISR.
const ICW4_AEOI: u8 = 0x02;
/// Special fully nested mode: the master lets a slave interrupt of higher priority through
/// while the cascade input is in service.
const ICW4_SFNM: u8 = 0x10;

// OCW2 (command port, bits 4-3 = 00): bits 7-5 select the command, bits 2-0 the level.
/// Clear rotate-on-auto-EOI.
const OCW2_CLEAR_ROTATE_AEOI: u8 = 0;
/// Non-specific EOI: clear the highest-priority ISR bit.
const OCW2_EOI: u8 = 1;
/// Specific EOI: clear the ISR bit named by bits 2-0.
const OCW2_SPECIFIC_EOI: u8 = 3;
/// Set rotate-on-auto-EOI.
const OCW2_SET_ROTATE_AEOI: u8 = 4;
/// Non-specific EOI, then the cleared level becomes the lowest priority.
const OCW2_ROTATE_EOI: u8 = 5;
/// Set priority: the level in bits 2-0 becomes the lowest priority.
const OCW2_SET_PRIORITY: u8 = 6;
/// Specific EOI, then that level becomes the lowest priority.
const OCW2_ROTATE_SPECIFIC_EOI: u8 = 7;
/// The level field of OCW2.
const OCW2_LEVEL_MASK: u8 = 0x07;

// OCW3 (command port, bits 4-3 = 01).
/// Marks OCW3 (with bit 4 clear).
const OCW3_SELECT: u8 = 0x08;
/// With RR: read the ISR (set) or the IRR (clear) on the command port.
const OCW3_RIS: u8 = 0x01;
/// Act on RIS.
const OCW3_RR: u8 = 0x02;
/// Poll: the next read of either port is the poll word and acknowledges.
const OCW3_POLL: u8 = 0x04;
/// With ESMM: special mask mode on (set) or off.
const OCW3_SMM: u8 = 0x20;
/// Act on SMM.
const OCW3_ESMM: u8 = 0x40;

/// Poll word bit 7: an interrupt was pending (bits 2-0 name it).
const POLL_PENDING: u8 = 0x80;

/// The master's input that the slave's output drives.
const CASCADE_IRQ: u8 = 2;
/// The input a spurious interrupt reports (lowest priority at reset).
const SPURIOUS_IRQ: u8 = 7;

/// ELCR bits that may be set on the master: IRQ 0, 1 and 2 (timer, keyboard, cascade) are
/// always edge-triggered on the PIIX.
const ELCR_MASK_MASTER: u8 = 0xf8;
/// ELCR bits that may be set on the slave: IRQ 8 (RTC) and 13 (FPU) are always edge.
const ELCR_MASK_SLAVE: u8 = 0xde;

/// One 8259A, as plain data (also its snapshot).
///
/// The default is the power-on state: everything clear, vector base 0, until the firmware
/// sends ICW1.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PicChipState {
    /// Current level of each input line.
    pub lines: u8,
    /// Interrupt request register.
    pub irr: u8,
    /// In-service register.
    pub isr: u8,
    /// Interrupt mask register (OCW1).
    pub imr: u8,
    /// Vector base from ICW2 (bits 7-3).
    pub vector_base: u8,
    /// The input with the highest priority (0 after ICW1; moved by rotation).
    pub priority_base: u8,
    /// Next initialization word expected on the data port: 0 none (ready), 2, 3 or 4.
    pub init_step: u8,
    /// ICW1 announced an ICW4.
    pub icw4_expected: bool,
    /// ICW1 single mode (no ICW3).
    pub single: bool,
    /// ICW1 LTIM: every input level-triggered.
    pub level_all: bool,
    /// ICW3: cascade wiring (master: inputs with slaves; slave: its identity).
    pub cascade: u8,
    /// ICW4 automatic EOI.
    pub auto_eoi: bool,
    /// OCW2 rotate on automatic EOI.
    pub rotate_on_aeoi: bool,
    /// ICW4 special fully nested mode.
    pub special_fully_nested: bool,
    /// OCW3 special mask mode.
    pub special_mask: bool,
    /// OCW3 poll command pending: the next read is the poll word.
    pub poll: bool,
    /// OCW3 register select: the command port reads the ISR (true) or the IRR.
    pub read_isr: bool,
    /// Edge/level control register: set bits are level-triggered.
    pub elcr: u8,
}

impl PicChipState {
    fn level_mask(&self) -> u8 {
        if self.level_all {
            0xff
        } else {
            self.elcr
        }
    }

    /// The priority (0 highest) of the highest-priority bit of `mask`.
    fn priority(&self, mask: u8) -> Option<u8> {
        (0..8).find(|&p| mask & (1 << ((p + self.priority_base) & 7)) != 0)
    }

    fn irq_of(&self, priority: u8) -> u8 {
        (priority + self.priority_base) & 7
    }

    fn set_input(&mut self, irq: u8, level: bool) {
        let bit = 1 << irq;
        if self.level_mask() & bit != 0 {
            // Level: the request follows the line.
            if level {
                self.irr |= bit;
            } else {
                self.irr &= !bit;
            }
        } else if level && self.lines & bit == 0 {
            // Edge: latched on the rising edge, kept until acknowledged.
            self.irr |= bit;
        }
        if level {
            self.lines |= bit;
        } else {
            self.lines &= !bit;
        }
    }

    /// The input this chip would present now, if any. `nested_exempt` names the in-service
    /// bits that do not block in special fully nested mode (the master's cascade input).
    fn pending(&self, nested_exempt: u8) -> Option<u8> {
        let request = self.priority(self.irr & !self.imr)?;
        let mut in_service = self.isr;
        if self.special_mask {
            in_service &= !self.imr;
        }
        if self.special_fully_nested {
            in_service &= !nested_exempt;
        }
        match self.priority(in_service) {
            Some(current) if current <= request => None,
            _ => Some(self.irq_of(request)),
        }
    }

    /// The INTA cycle for `irq`: the request moves to service.
    fn ack(&mut self, irq: u8) {
        let bit = 1 << irq;
        if self.auto_eoi {
            if self.rotate_on_aeoi {
                self.priority_base = (irq + 1) & 7;
            }
        } else {
            self.isr |= bit;
        }
        if self.level_mask() & bit == 0 {
            self.irr &= !bit;
        }
    }

    fn poll_read(&mut self, nested_exempt: u8) -> u8 {
        self.poll = false;
        match self.pending(nested_exempt) {
            Some(irq) => {
                self.ack(irq);
                POLL_PENDING | irq
            }
            None => 0,
        }
    }

    fn read(&mut self, offset: u16, nested_exempt: u8) -> u8 {
        if self.poll {
            return self.poll_read(nested_exempt);
        }
        match offset {
            CMD if self.read_isr => self.isr,
            CMD => self.irr,
            _ => self.imr,
        }
    }

    fn write(&mut self, offset: u16, value: u8) {
        match offset {
            CMD if value & ICW1_INIT != 0 => self.icw1(value),
            CMD if value & OCW3_SELECT != 0 => self.ocw3(value),
            CMD => self.ocw2(value),
            _ => self.write_data(value),
        }
    }

    fn icw1(&mut self, value: u8) {
        // The datasheet's reset: IMR and ISR cleared, IR0 highest priority, special mask
        // mode off, IRR selected for reading, edge sense reset (a high edge input must go
        // low and high again), ICW4 functions cleared when no ICW4 follows.
        self.level_all = value & ICW1_LTIM != 0;
        self.single = value & ICW1_SNGL != 0;
        self.icw4_expected = value & ICW1_IC4 != 0;
        self.imr = 0;
        self.isr = 0;
        self.irr = self.lines & self.level_mask();
        self.priority_base = 0;
        self.special_mask = false;
        self.poll = false;
        self.read_isr = false;
        self.rotate_on_aeoi = false;
        self.auto_eoi = false;
        self.special_fully_nested = false;
        self.init_step = 2;
    }

    fn write_data(&mut self, value: u8) {
        match self.init_step {
            2 => {
                self.vector_base = value & ICW2_VECTOR_MASK;
                self.init_step = match (self.single, self.icw4_expected) {
                    (false, _) => 3,
                    (true, true) => 4,
                    (true, false) => 0,
                };
            }
            3 => {
                self.cascade = value;
                self.init_step = if self.icw4_expected { 4 } else { 0 };
            }
            4 => {
                // Bit 0 (8086 mode) and the buffered-mode bits change nothing we model.
                self.auto_eoi = value & ICW4_AEOI != 0;
                self.special_fully_nested = value & ICW4_SFNM != 0;
                self.init_step = 0;
            }
            _ => self.imr = value,
        }
    }

    fn ocw2(&mut self, value: u8) {
        let level = value & OCW2_LEVEL_MASK;
        match value >> 5 {
            OCW2_CLEAR_ROTATE_AEOI => self.rotate_on_aeoi = false,
            OCW2_SET_ROTATE_AEOI => self.rotate_on_aeoi = true,
            cmd @ (OCW2_EOI | OCW2_ROTATE_EOI) => {
                if let Some(p) = self.priority(self.isr) {
                    let irq = self.irq_of(p);
                    self.isr &= !(1 << irq);
                    if cmd == OCW2_ROTATE_EOI {
                        self.priority_base = (irq + 1) & 7;
                    }
                }
            }
            OCW2_SPECIFIC_EOI => self.isr &= !(1 << level),
            OCW2_ROTATE_SPECIFIC_EOI => {
                self.isr &= !(1 << level);
                self.priority_base = (level + 1) & 7;
            }
            OCW2_SET_PRIORITY => self.priority_base = (level + 1) & 7,
            _ => {} // 2: no operation
        }
    }

    fn ocw3(&mut self, value: u8) {
        if value & OCW3_POLL != 0 {
            self.poll = true;
        }
        if value & OCW3_RR != 0 {
            self.read_isr = value & OCW3_RIS != 0;
        }
        if value & OCW3_ESMM != 0 {
            self.special_mask = value & OCW3_SMM != 0;
        }
    }
}

/// Which chip of the pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PicChip {
    /// IRQ 0-7, ports 0x20-0x21, wired to the CPU.
    Master,
    /// IRQ 8-15, ports 0xA0-0xA1, wired to the master's IRQ 2.
    Slave,
}

/// A snapshot of the pair (plain data).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PicState {
    /// The master chip.
    pub master: PicChipState,
    /// The slave chip.
    pub slave: PicChipState,
}

/// The cascaded 8259A pair of the PC.
#[derive(Debug, Default)]
pub struct PicPair {
    master: PicChipState,
    slave: PicChipState,
}

impl PicPair {
    /// A pair in the power-on state (the firmware initializes it).
    pub fn new() -> PicPair {
        PicPair::default()
    }

    /// Drives input `irq` (0-15) to `level`. IRQ 2 is the cascade and cannot be driven (PC
    /// devices wired to IRQ 2 use IRQ 9); it and numbers above 15 are logged and dropped.
    pub fn set_irq(&mut self, irq: u8, level: bool) {
        match irq {
            CASCADE_IRQ | 16.. => tracing::warn!(irq, "PIC input that cannot be driven"),
            0..=7 => self.master.set_input(irq, level),
            _ => {
                self.slave.set_input(irq - 8, level);
                self.update_cascade();
            }
        }
    }

    /// The INTR output to the CPU: an unmasked request beats everything in service.
    pub fn has_interrupt(&self) -> bool {
        self.master.pending(1 << CASCADE_IRQ).is_some()
    }

    /// The INTA cycle: the vector for the CPU, with the ISR and IRR updated. If the request
    /// went away in the meantime, the vector of IRQ 7 (or 15 from the slave) without setting
    /// its ISR bit: the spurious interrupt.
    pub fn acknowledge(&mut self) -> u8 {
        let vector = match self.master.pending(1 << CASCADE_IRQ) {
            Some(CASCADE_IRQ) if !self.master.single => {
                self.master.ack(CASCADE_IRQ);
                match self.slave.pending(0) {
                    Some(irq) => {
                        self.slave.ack(irq);
                        self.slave.vector_base | irq
                    }
                    None => self.slave.vector_base | SPURIOUS_IRQ,
                }
            }
            Some(irq) => {
                self.master.ack(irq);
                self.master.vector_base | irq
            }
            None => self.master.vector_base | SPURIOUS_IRQ,
        };
        self.update_cascade();
        vector
    }

    /// Reads the byte at `offset` (0 or 1) of `chip`'s ports.
    pub fn read_port(&mut self, chip: PicChip, offset: u16) -> u8 {
        if offset > DATA {
            tracing::warn!(?chip, offset, "PIC read beyond its ports");
            return 0xff;
        }
        let value = match chip {
            PicChip::Master => self.master.read(offset, 1 << CASCADE_IRQ),
            PicChip::Slave => self.slave.read(offset, 0),
        };
        self.update_cascade();
        value
    }

    /// Writes the byte at `offset` (0 or 1) of `chip`'s ports.
    pub fn write_port(&mut self, chip: PicChip, offset: u16, value: u8) {
        match (chip, offset) {
            (_, 2..) => tracing::warn!(?chip, offset, value, "PIC write beyond its ports"),
            (PicChip::Master, _) => self.master.write(offset, value),
            (PicChip::Slave, _) => self.slave.write(offset, value),
        }
        self.update_cascade();
    }

    /// The ELCR of `chip`.
    pub fn elcr(&self, chip: PicChip) -> u8 {
        self.chip(chip).elcr
    }

    /// Sets the ELCR of `chip`; bits of inputs that are always edge-triggered stay clear. A
    /// newly level-triggered input requests if its line is high.
    pub fn set_elcr(&mut self, chip: PicChip, value: u8) {
        let (c, mask) = match chip {
            PicChip::Master => (&mut self.master, ELCR_MASK_MASTER),
            PicChip::Slave => (&mut self.slave, ELCR_MASK_SLAVE),
        };
        c.elcr = value & mask;
        let level = c.level_mask();
        c.irr = (c.irr & !level) | (c.lines & level);
        self.update_cascade();
    }

    /// The registers of `chip` (for tests and debugging).
    pub fn chip(&self, chip: PicChip) -> &PicChipState {
        match chip {
            PicChip::Master => &self.master,
            PicChip::Slave => &self.slave,
        }
    }

    /// A snapshot.
    pub fn state(&self) -> PicState {
        PicState {
            master: self.master.clone(),
            slave: self.slave.clone(),
        }
    }

    /// Restores a snapshot taken with [`PicPair::state`].
    pub fn restore(&mut self, state: &PicState) {
        self.master = state.master.clone();
        self.slave = state.slave.clone();
        self.update_cascade();
    }

    /// The slave's output is the master's IRQ 2 line.
    fn update_cascade(&mut self) {
        let out = self.slave.pending(0).is_some();
        self.master.set_input(CASCADE_IRQ, out);
    }
}

/// One input of a shared [`PicPair`], as an [`IrqLine`] for a device.
#[derive(Clone)]
pub struct PicLine {
    /// The controller.
    pub pic: Arc<Mutex<PicPair>>,
    /// The input (0-15).
    pub irq: u8,
}

impl IrqLine for PicLine {
    fn set_level(&self, high: bool) {
        self.pic.lock().set_irq(self.irq, high);
    }
}

/// The two ports of one chip of a shared [`PicPair`] (0x20-0x21 or 0xA0-0xA1).
#[derive(Clone)]
pub struct PicPorts {
    /// The controller.
    pub pic: Arc<Mutex<PicPair>>,
    /// Which chip these ports reach.
    pub chip: PicChip,
}

impl PortDevice for PicPorts {
    fn read(&mut self, offset: u16, size: u8) -> u32 {
        let mut pic = self.pic.lock();
        read_bytes(offset, size, |o| pic.read_port(self.chip, o))
    }

    fn write(&mut self, offset: u16, size: u8, value: u32) {
        let mut pic = self.pic.lock();
        write_bytes(offset, size, value, |o, v| pic.write_port(self.chip, o, v));
    }
}

/// The ELCR pair of a shared [`PicPair`] (0x4D0 master at offset 0, 0x4D1 slave at 1).
#[derive(Clone)]
pub struct ElcrPorts {
    /// The controller.
    pub pic: Arc<Mutex<PicPair>>,
}

fn elcr_chip(offset: u16) -> Option<PicChip> {
    match offset {
        0 => Some(PicChip::Master),
        1 => Some(PicChip::Slave),
        _ => None,
    }
}

impl PortDevice for ElcrPorts {
    fn read(&mut self, offset: u16, size: u8) -> u32 {
        let pic = self.pic.lock();
        read_bytes(offset, size, |o| match elcr_chip(o) {
            Some(chip) => pic.elcr(chip),
            None => {
                tracing::warn!(offset = o, "ELCR read beyond its ports");
                0xff
            }
        })
    }

    fn write(&mut self, offset: u16, size: u8, value: u32) {
        let mut pic = self.pic.lock();
        write_bytes(offset, size, value, |o, v| match elcr_chip(o) {
            Some(chip) => pic.set_elcr(chip, v),
            None => tracing::warn!(offset = o, value = v, "ELCR write beyond its ports"),
        });
    }
}

#[cfg(test)]
mod tests;
