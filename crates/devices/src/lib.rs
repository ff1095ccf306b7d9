//! The PC device model: port and MMIO buses, interrupt lines, the virtual clock, and one file
//! per device.
//!
//! A device does not know where it is mapped: it implements [`PortDevice`] (or
//! [`MmioDevice`]) with offset-only `read`/`write`, and the bus subtracts the base. A device
//! never panics on any access, size or value: unknown offsets read as all-ones and writes to
//! them are logged and dropped. Interrupts leave a device through an [`IrqLine`], which the
//! machine connects to an interrupt controller. Time comes from a [`Clock`], so that a
//! deterministic clock (derived from retired instructions) makes two runs identical.
//!
//! ```
//! use crane86_devices::{PortBus, PortDevice};
//! use crane86_runtime::PortIo;
//!
//! struct Scratch(u8);
//! impl PortDevice for Scratch {
//!     fn read(&mut self, _offset: u16, _size: u8) -> u32 { u32::from(self.0) }
//!     fn write(&mut self, _offset: u16, _size: u8, value: u32) { self.0 = value as u8 }
//! }
//! let mut bus = PortBus::new();
//! bus.insert(0x80, 1, Box::new(Scratch(0))).unwrap();
//! bus.port_write(0x80, 1, 0x42);
//! assert_eq!(bus.port_read(0x80, 1), 0x42);
//! assert_eq!(bus.port_read(0x81, 1), 0xff); // nothing there: the bus floats high
//! ```
#![deny(missing_docs)]

pub mod acpi_pm;
mod bus;
mod clock;
pub mod fw_cfg;
pub mod hpet;
pub mod i8042;
pub mod ioapic;
pub mod lapic;
pub mod misc;
pub mod pci;
pub mod pic;
pub mod pit;
pub mod rtc;
pub mod testdev;
pub mod uart;

#[cfg(test)]
mod testing;

pub use bus::{BusError, MmioBus, PortBus};
pub use clock::{Clock, ManualClock};

/// A device on the port-I/O bus, addressed by offset from its base.
pub trait PortDevice: Send {
    /// Reads `size` (1, 2 or 4) bytes at `offset`.
    fn read(&mut self, offset: u16, size: u8) -> u32;
    /// Writes `size` (1, 2 or 4) bytes at `offset`.
    fn write(&mut self, offset: u16, size: u8, value: u32);
    /// Whether a read at `offset` may change what the device signals (an interrupt line, a
    /// timer deadline), so that the machine must look at its devices again before the next
    /// instruction. True unless the device knows the register only reports (a free-running
    /// counter): a guest polling one then costs no look at every timer.
    fn read_changes_state(&self, offset: u16) -> bool {
        let _ = offset;
        true
    }
}

/// A device on the MMIO bus, addressed by offset from its base.
pub trait MmioDevice: Send {
    /// Reads `size` (1, 2, 4 or 8) bytes at `offset`.
    fn read(&mut self, offset: u64, size: u8) -> u64;
    /// Writes `size` (1, 2, 4 or 8) bytes at `offset`.
    fn write(&mut self, offset: u64, size: u8, value: u64);
}

/// An interrupt line from a device to an interrupt controller.
///
/// `&self`, because a device holds its line while the controller behind it changes: the
/// implementation uses interior mutability.
pub trait IrqLine: Send + Sync {
    /// Drives the line high (`true`) or low.
    fn set_level(&self, high: bool);

    /// An edge: high, then low (for edge-triggered inputs).
    fn pulse(&self) {
        self.set_level(true);
        self.set_level(false);
    }
}

/// A line connected to nothing (for devices whose interrupt is not wired).
#[derive(Clone, Copy, Debug, Default)]
pub struct NoIrq;

impl IrqLine for NoIrq {
    fn set_level(&self, _high: bool) {}
}

/// Splits a `size`-byte port read into byte reads at consecutive offsets, lowest byte first, as
/// the ISA bus does for the byte-wide legacy chips. A size other than 1, 2 or 4 is logged and
/// clamped.
pub(crate) fn read_bytes(offset: u16, size: u8, mut read: impl FnMut(u16) -> u8) -> u32 {
    let size = checked_size(offset, size);
    (0..size).fold(0, |acc, i| {
        acc | u32::from(read(offset.wrapping_add(u16::from(i)))) << (8 * u32::from(i))
    })
}

/// Splits a `size`-byte port write into byte writes at consecutive offsets, lowest byte first.
pub(crate) fn write_bytes(offset: u16, size: u8, value: u32, mut write: impl FnMut(u16, u8)) {
    let size = checked_size(offset, size);
    for i in 0..size {
        write(
            offset.wrapping_add(u16::from(i)),
            (value >> (8 * u32::from(i))) as u8,
        );
    }
}

fn checked_size(offset: u16, size: u8) -> u8 {
    if !matches!(size, 1 | 2 | 4) {
        tracing::warn!(offset, size, "port access of an impossible size, clamped");
    }
    size.clamp(1, 4)
}
