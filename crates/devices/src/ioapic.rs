//! The I/O APIC (82093AA-style, version 0x20, 24 pins) at 0xFEC00000, and the interrupt
//! message that travels from it (and from a local APIC's ICR) to a local APIC.
//!
//! The guest reaches the registers indirectly: it writes a register index to IOREGSEL
//! (offset 0x00) and then reads or writes the 32-bit register through IOWIN (offset 0x10).
//! The EOI register at offset 0x40 (version 0x20 parts) ends a level-triggered interrupt
//! by vector, like the local APIC's EOI broadcast.
//!
//! Each of the 24 input pins has a 64-bit redirection entry that turns an asserted pin into
//! an [`ApicMessage`], handed to an [`InterruptSink`] (the machine connects it to the local
//! APIC). An edge-triggered pin sends one message per rising edge. A level-triggered pin
//! sends one message and sets its remote IRR; it sends again only after the local APIC's EOI
//! for its vector ([`IoApic::end_of_interrupt`]) clears remote IRR while the pin is still
//! asserted. As the datasheet says, an edge on a masked pin is lost and a masked level pin
//! has no side effects, but a level pin that is still asserted when unmasked is delivered.
//!
//! Inputs are logical: [`IoApic::set_irq`] takes "asserted", as every [`IrqLine`] of the
//! device model does. The polarity bit is kept and read back (it describes the board's
//! wiring to the guest) but does not invert the input, as in QEMU and KVM.
//!
//! Messages are delivered with the I/O APIC locked: the sink must not lock the I/O APIC.

use std::sync::Arc;

use parking_lot::Mutex;

use crate::{IrqLine, MmioDevice};

/// Guest physical base address of the I/O APIC.
pub const IOAPIC_BASE: u64 = 0xfec0_0000;
/// Size of its MMIO window (the registers repeat no further).
pub const IOAPIC_SIZE: u64 = 0x1000;
/// Number of input pins (redirection entries).
pub const IOAPIC_PINS: u8 = 24;

// MMIO offsets.
/// IOREGSEL: the index of the register IOWIN reaches (bits 7-0).
const IOREGSEL: u64 = 0x00;
/// IOWIN: the selected 32-bit register.
const IOWIN: u64 = 0x10;
/// EOI register (version 0x20): writing a vector clears remote IRR of matching entries.
const IOEOI: u64 = 0x40;

// Register indices (through IOREGSEL).
/// IOAPICID: bits 27-24 are the I/O APIC's ID.
const REG_ID: u8 = 0x00;
/// IOAPICVER: version in bits 7-0, highest redirection entry in bits 23-16 (read only).
const REG_VER: u8 = 0x01;
/// IOAPICARB: arbitration ID in bits 27-24 (read only; loaded from the ID).
const REG_ARB: u8 = 0x02;
/// First redirection register: entry `n` is at `0x10 + 2n` (low half) and `0x11 + 2n`.
const REG_REDTBL: u8 = 0x10;
/// One past the last redirection register.
const REG_REDTBL_END: u8 = REG_REDTBL + 2 * IOAPIC_PINS;

/// The version this I/O APIC reports.
const VERSION: u32 = 0x20;
/// The ID field of IOAPICID and IOAPICARB.
const ID_MASK: u32 = 0x0f00_0000;
/// The shift of the ID field.
const ID_SHIFT: u32 = 24;

// Redirection entry bits.
/// Interrupt vector.
const RTE_VECTOR: u64 = 0xff;
/// Delivery mode, bits 10-8 (see [`DeliveryMode`]).
const RTE_DELIVERY_SHIFT: u32 = 8;
/// Destination mode: logical (set) or physical.
const RTE_DEST_LOGICAL: u64 = 1 << 11;
// Bit 12, delivery status (a message waits to be sent), is read only and always clear
// here: delivery is immediate.
/// Input polarity: active low (set) or active high (kept, not applied: see the module doc).
const RTE_POLARITY_LOW: u64 = 1 << 13;
/// Remote IRR: a level-triggered interrupt was accepted and awaits its EOI (read only).
const RTE_REMOTE_IRR: u64 = 1 << 14;
/// Trigger mode: level (set) or edge.
const RTE_LEVEL: u64 = 1 << 15;
/// Interrupt mask: the pin is ignored (set, the reset value).
const RTE_MASKED: u64 = 1 << 16;
/// Destination, bits 63-56: an APIC ID (physical) or a set of APICs (logical).
const RTE_DEST_SHIFT: u32 = 56;
/// The delivery mode field.
const RTE_DELIVERY_MASK: u64 = 7 << RTE_DELIVERY_SHIFT;
/// The destination field.
const RTE_DEST_MASK: u64 = 0xff << RTE_DEST_SHIFT;
/// Bits the guest may write: everything except delivery status, remote IRR and the
/// reserved bits 55-17.
const RTE_WRITABLE: u64 = RTE_VECTOR
    | RTE_DELIVERY_MASK
    | RTE_DEST_LOGICAL
    | RTE_POLARITY_LOW
    | RTE_LEVEL
    | RTE_MASKED
    | RTE_DEST_MASK;

/// How a message is delivered: the 3-bit field of redirection entries, LVT entries and the
/// ICR.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeliveryMode {
    /// 0: the vector, to every destination APIC.
    Fixed,
    /// 1: the vector, to the destination APIC of lowest priority (here: the one APIC).
    LowestPriority,
    /// 2: a system management interrupt (the vector is ignored).
    Smi,
    /// 4: a non-maskable interrupt (the vector is ignored).
    Nmi,
    /// 5: INIT (with level clear and level trigger: INIT level de-assert, a no-op).
    Init,
    /// 6: start-up IPI (ICR only): the vector is the start page.
    StartUp,
    /// 7: the vector comes from an external 8259A (the PIC's INTA cycle).
    ExtInt,
}

impl DeliveryMode {
    /// The mode encoded by the low 3 bits of `bits`; `None` for the reserved value 3.
    pub fn from_bits(bits: u8) -> Option<DeliveryMode> {
        Some(match bits & 7 {
            0 => DeliveryMode::Fixed,
            1 => DeliveryMode::LowestPriority,
            2 => DeliveryMode::Smi,
            4 => DeliveryMode::Nmi,
            5 => DeliveryMode::Init,
            6 => DeliveryMode::StartUp,
            7 => DeliveryMode::ExtInt,
            _ => return None,
        })
    }

    /// The 3-bit encoding.
    pub fn bits(self) -> u8 {
        match self {
            DeliveryMode::Fixed => 0,
            DeliveryMode::LowestPriority => 1,
            DeliveryMode::Smi => 2,
            DeliveryMode::Nmi => 4,
            DeliveryMode::Init => 5,
            DeliveryMode::StartUp => 6,
            DeliveryMode::ExtInt => 7,
        }
    }
}

/// An interrupt message on the APIC bus (or, on later CPUs, the system bus).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ApicMessage {
    /// The vector (ignored for SMI, NMI, INIT and ExtINT).
    pub vector: u8,
    /// How it is delivered.
    pub delivery_mode: DeliveryMode,
    /// The destination: an APIC ID, or a logical set when `logical`.
    pub destination: u8,
    /// Destination mode: logical (`true`) or physical.
    pub logical: bool,
    /// Trigger mode: level (`true`) or edge. A level-triggered fixed interrupt sets the
    /// receiving APIC's TMR bit, so that its EOI is broadcast back to the I/O APIC.
    pub level_triggered: bool,
    /// The level (assert or de-assert; only INIT level de-assert sends a clear level).
    pub level: bool,
}

/// Where interrupt messages go: the machine connects this to the local APIC(s).
pub trait InterruptSink: Send + Sync {
    /// Delivers `msg` to the APICs it names.
    fn deliver(&self, msg: ApicMessage);
}

/// A sink that drops every message (for an I/O APIC nobody listens to).
#[derive(Clone, Copy, Debug, Default)]
pub struct NoSink;

impl InterruptSink for NoSink {
    fn deliver(&self, _msg: ApicMessage) {}
}

/// The I/O APIC's registers, as plain data (also its snapshot).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IoApicState {
    /// IOREGSEL: the register IOWIN reaches.
    pub select: u8,
    /// The I/O APIC ID (4 bits).
    pub id: u8,
    /// The 24 redirection entries.
    pub redirection: [u64; IOAPIC_PINS as usize],
    /// Current (logical) level of each input pin, bit `n` for pin `n`.
    pub lines: u32,
}

impl Default for IoApicState {
    /// The reset state: every entry masked, everything else clear.
    fn default() -> IoApicState {
        IoApicState {
            select: 0,
            id: 0,
            redirection: [RTE_MASKED; IOAPIC_PINS as usize],
            lines: 0,
        }
    }
}

/// The I/O APIC.
pub struct IoApic {
    sink: Arc<dyn InterruptSink>,
    s: IoApicState,
}

impl IoApic {
    /// An I/O APIC in its reset state (every pin masked) with ID `id`, sending to `sink`.
    pub fn new(id: u8, sink: Arc<dyn InterruptSink>) -> IoApic {
        let s = IoApicState {
            id: id & 0xf,
            ..IoApicState::default()
        };
        IoApic { sink, s }
    }

    /// Drives pin `pin` (0-23) to `level` (asserted or not). Other pins are logged and
    /// dropped.
    pub fn set_irq(&mut self, pin: u8, level: bool) {
        if pin >= IOAPIC_PINS {
            tracing::warn!(pin, "I/O APIC input that does not exist");
            return;
        }
        let bit = 1u32 << pin;
        let was = self.s.lines & bit != 0;
        if level {
            self.s.lines |= bit;
        } else {
            self.s.lines &= !bit;
        }
        let entry = self.s.redirection[usize::from(pin)];
        if entry & RTE_LEVEL != 0 {
            self.service_level(pin);
        } else if level && !was && entry & RTE_MASKED == 0 {
            self.send(entry);
        }
    }

    /// The EOI broadcast (or a write to the EOI register) for `vector`: clears remote IRR of
    /// every level-triggered entry with that vector, and delivers again from those whose pin
    /// is still asserted.
    pub fn end_of_interrupt(&mut self, vector: u8) {
        for pin in 0..IOAPIC_PINS {
            let entry = &mut self.s.redirection[usize::from(pin)];
            if *entry & RTE_VECTOR == u64::from(vector) && *entry & RTE_REMOTE_IRR != 0 {
                *entry &= !RTE_REMOTE_IRR;
                self.service_level(pin);
            }
        }
    }

    /// Reads register `index` (as through IOWIN).
    pub fn read_register(&self, index: u8) -> u32 {
        match index {
            REG_ID => u32::from(self.s.id) << ID_SHIFT,
            REG_VER => VERSION | (u32::from(IOAPIC_PINS) - 1) << 16,
            REG_ARB => u32::from(self.s.id) << ID_SHIFT,
            REG_REDTBL..REG_REDTBL_END => {
                let entry = self.s.redirection[usize::from((index - REG_REDTBL) / 2)];
                if index & 1 == 0 {
                    entry as u32
                } else {
                    (entry >> 32) as u32
                }
            }
            _ => {
                tracing::debug!(index, "I/O APIC read of a register that does not exist");
                u32::MAX
            }
        }
    }

    /// Writes register `index` (as through IOWIN). Read-only registers and bits ignore it.
    pub fn write_register(&mut self, index: u8, value: u32) {
        match index {
            REG_ID => self.s.id = ((value & ID_MASK) >> ID_SHIFT) as u8,
            REG_REDTBL..REG_REDTBL_END => {
                let pin = (index - REG_REDTBL) / 2;
                let entry = &mut self.s.redirection[usize::from(pin)];
                let new = if index & 1 == 0 {
                    (*entry & !0xffff_ffff) | u64::from(value)
                } else {
                    (*entry & 0xffff_ffff) | u64::from(value) << 32
                };
                // Delivery status stays clear: delivery is immediate.
                let kept = *entry & RTE_REMOTE_IRR;
                *entry = (new & RTE_WRITABLE) | kept;
                if *entry & RTE_LEVEL == 0 {
                    // Remote IRR is undefined for edge-triggered entries: keep it clear.
                    *entry &= !RTE_REMOTE_IRR;
                }
                self.service_level(pin);
            }
            _ => tracing::debug!(index, value, "I/O APIC write to a read-only register"),
        }
    }

    /// Redirection entry `pin` (for tests and debugging); `None` beyond pin 23.
    pub fn redirection(&self, pin: u8) -> Option<u64> {
        self.s.redirection.get(usize::from(pin)).copied()
    }

    /// A snapshot.
    pub fn state(&self) -> IoApicState {
        self.s.clone()
    }

    /// Restores a snapshot taken with [`IoApic::state`]. Nothing is delivered: a pending
    /// level interrupt waits for its remote IRR to clear, as it did when saved.
    pub fn restore(&mut self, state: &IoApicState) {
        self.s = state.clone();
    }

    /// Sends from a level-triggered pin if it is asserted, unmasked and not awaiting EOI.
    fn service_level(&mut self, pin: u8) {
        let entry = &mut self.s.redirection[usize::from(pin)];
        let asserted = self.s.lines & (1 << pin) != 0;
        if *entry & (RTE_LEVEL | RTE_MASKED | RTE_REMOTE_IRR) == RTE_LEVEL && asserted {
            // Remote IRR is set only for fixed and lowest-priority delivery, as in QEMU;
            // NMI, SMI, INIT and ExtINT have no EOI to wait for.
            if matches!((*entry >> RTE_DELIVERY_SHIFT) & 7, 0 | 1) {
                *entry |= RTE_REMOTE_IRR;
            }
            let entry = *entry;
            self.send(entry);
        }
    }

    fn send(&self, entry: u64) {
        let Some(delivery_mode) = DeliveryMode::from_bits((entry >> RTE_DELIVERY_SHIFT) as u8)
        else {
            tracing::warn!(entry, "I/O APIC entry with a reserved delivery mode");
            return;
        };
        if delivery_mode == DeliveryMode::StartUp {
            tracing::warn!(entry, "I/O APIC entry with start-up delivery, dropped");
            return;
        }
        self.sink.deliver(ApicMessage {
            vector: (entry & RTE_VECTOR) as u8,
            delivery_mode,
            destination: (entry >> RTE_DEST_SHIFT) as u8,
            logical: entry & RTE_DEST_LOGICAL != 0,
            level_triggered: entry & RTE_LEVEL != 0,
            level: true,
        });
    }
}

impl MmioDevice for IoApic {
    fn read(&mut self, offset: u64, size: u8) -> u64 {
        let value = match offset & !3 {
            IOREGSEL => u32::from(self.s.select),
            IOWIN => self.read_register(self.s.select),
            IOEOI => 0,
            _ => {
                tracing::debug!(offset, size, "I/O APIC read outside its registers");
                u32::MAX
            }
        };
        let shifted = u64::from(value >> (8 * (offset & 3)));
        shifted & (u64::MAX >> (64 - 8 * u32::from(size.clamp(1, 8))))
    }

    fn write(&mut self, offset: u64, size: u8, value: u64) {
        // The registers are 32 bits wide; a narrower write at their start sets the low
        // bytes and keeps the rest, other placements are dropped.
        if offset & 3 != 0 {
            tracing::warn!(offset, size, value, "unaligned I/O APIC write dropped");
            return;
        }
        let merge = |old: u32| match size {
            1 => (old & !0xff) | (value as u32 & 0xff),
            2 => (old & !0xffff) | (value as u32 & 0xffff),
            _ => value as u32,
        };
        match offset {
            IOREGSEL => self.s.select = value as u8,
            IOWIN => {
                let index = self.s.select;
                let old = self.read_register(index);
                self.write_register(index, merge(old));
            }
            IOEOI => self.end_of_interrupt(value as u8),
            _ => tracing::debug!(offset, size, value, "I/O APIC write outside its registers"),
        }
    }
}

/// The MMIO window of a shared [`IoApic`], for the bus.
#[derive(Clone)]
pub struct IoApicMmio {
    /// The I/O APIC.
    pub ioapic: Arc<Mutex<IoApic>>,
}

impl MmioDevice for IoApicMmio {
    fn read(&mut self, offset: u64, size: u8) -> u64 {
        self.ioapic.lock().read(offset, size)
    }

    fn write(&mut self, offset: u64, size: u8, value: u64) {
        self.ioapic.lock().write(offset, size, value);
    }
}

/// One input pin of a shared [`IoApic`], as an [`IrqLine`] for a device.
#[derive(Clone)]
pub struct IoApicLine {
    /// The I/O APIC.
    pub ioapic: Arc<Mutex<IoApic>>,
    /// The pin (0-23).
    pub pin: u8,
}

impl IrqLine for IoApicLine {
    fn set_level(&self, high: bool) {
        self.ioapic.lock().set_irq(self.pin, high);
    }
}

#[cfg(test)]
mod tests;
