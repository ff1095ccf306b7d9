//! The port-I/O and MMIO buses: ordered, non-overlapping ranges, each owned by one device.

use crane86_runtime::PortIo;

use crate::{MmioDevice, PortDevice};

/// Errors building a bus (a wiring mistake in the machine, never guest behaviour).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BusError {
    /// The new range overlaps one already on the bus.
    #[error("range {base:#x}+{len:#x} overlaps a device already on the bus")]
    Overlap {
        /// Base of the rejected range.
        base: u64,
        /// Its length.
        len: u64,
    },
    /// A range of length zero, or one that wraps around the address space.
    #[error("range {base:#x}+{len:#x} is empty or wraps")]
    BadRange {
        /// Base of the rejected range.
        base: u64,
        /// Its length.
        len: u64,
    },
}

struct Range<D: ?Sized> {
    base: u64,
    len: u64,
    dev: Box<D>,
}

fn insert_sorted<D: ?Sized>(
    v: &mut Vec<Range<D>>,
    base: u64,
    len: u64,
    dev: Box<D>,
    limit: u64,
) -> Result<(), BusError> {
    let end = base
        .checked_add(len)
        .filter(|&e| len > 0 && e <= limit)
        .ok_or(BusError::BadRange { base, len })?;
    let i = v.partition_point(|r| r.base < base);
    let prev_overlaps = i > 0 && v[i - 1].base + v[i - 1].len > base;
    let next_overlaps = v.get(i).is_some_and(|r| r.base < end);
    if prev_overlaps || next_overlaps {
        return Err(BusError::Overlap { base, len });
    }
    v.insert(i, Range { base, len, dev });
    Ok(())
}

fn find<D: ?Sized>(v: &mut [Range<D>], addr: u64) -> Option<(&mut D, u64)> {
    let i = v.partition_point(|r| r.base <= addr);
    let r = v.get_mut(i.checked_sub(1)?)?;
    (addr < r.base + r.len).then(|| (&mut *r.dev, addr - r.base))
}

/// The port-I/O bus (64 Ki ports).
#[derive(Default)]
pub struct PortBus {
    ranges: Vec<Range<dyn PortDevice>>,
}

impl PortBus {
    /// An empty bus.
    pub fn new() -> PortBus {
        PortBus::default()
    }

    /// Puts `dev` at ports `base..base + len`.
    pub fn insert(
        &mut self,
        base: u16,
        len: u16,
        dev: Box<dyn PortDevice>,
    ) -> Result<(), BusError> {
        insert_sorted(
            &mut self.ranges,
            u64::from(base),
            u64::from(len),
            dev,
            0x1_0000,
        )
    }
}

impl PortBus {
    /// [`PortDevice::read_changes_state`] of the device at `port` (false where nothing
    /// answers: a floating read changes nothing).
    pub fn read_changes_state(&self, port: u16) -> bool {
        let addr = u64::from(port);
        let i = self.ranges.partition_point(|r| r.base <= addr);
        match i.checked_sub(1).map(|i| &self.ranges[i]) {
            Some(r) if addr < r.base + r.len => r.dev.read_changes_state((addr - r.base) as u16),
            _ => false,
        }
    }
}

impl PortIo for PortBus {
    fn port_read(&mut self, port: u16, size: u8) -> u32 {
        match find(&mut self.ranges, u64::from(port)) {
            Some((dev, off)) => dev.read(off as u16, size),
            None => {
                tracing::trace!(port, size, "read from an unclaimed port");
                u32::MAX >> (32 - 8 * u32::from(size.clamp(1, 4)))
            }
        }
    }

    fn port_write(&mut self, port: u16, size: u8, value: u32) {
        match find(&mut self.ranges, u64::from(port)) {
            Some((dev, off)) => dev.write(off as u16, size, value),
            None => tracing::trace!(port, size, value, "write to an unclaimed port dropped"),
        }
    }
}

/// The MMIO bus (the physical address space outside RAM).
#[derive(Default)]
pub struct MmioBus {
    ranges: Vec<Range<dyn MmioDevice>>,
}

impl MmioBus {
    /// An empty bus.
    pub fn new() -> MmioBus {
        MmioBus::default()
    }

    /// Puts `dev` at physical addresses `base..base + len`.
    pub fn insert(
        &mut self,
        base: u64,
        len: u64,
        dev: Box<dyn MmioDevice>,
    ) -> Result<(), BusError> {
        insert_sorted(&mut self.ranges, base, len, dev, u64::MAX)
    }

    /// Reads `size` bytes at physical address `addr`; all-ones where nothing is mapped.
    pub fn read(&mut self, addr: u64, size: u8) -> u64 {
        match find(&mut self.ranges, addr) {
            Some((dev, off)) => dev.read(off, size),
            None => u64::MAX >> (64 - 8 * u32::from(size.clamp(1, 8))),
        }
    }

    /// Writes `size` bytes at physical address `addr`; dropped where nothing is mapped.
    pub fn write(&mut self, addr: u64, size: u8, value: u64) {
        if let Some((dev, off)) = find(&mut self.ranges, addr) {
            dev.write(off, size, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Echo(u32);
    impl PortDevice for Echo {
        fn read(&mut self, offset: u16, _size: u8) -> u32 {
            self.0 + u32::from(offset)
        }
        fn write(&mut self, _offset: u16, _size: u8, value: u32) {
            self.0 = value;
        }
    }

    #[test]
    fn reads_change_state_unless_the_device_says_otherwise() {
        let mut bus = PortBus::new();
        bus.insert(0x40, 4, Box::new(Echo(0))).unwrap();
        let pm = crate::acpi_pm::AcpiPmPorts {
            pm: std::sync::Arc::new(parking_lot::Mutex::new(crate::acpi_pm::AcpiPm::new(
                std::sync::Arc::new(crate::ManualClock::new()),
                std::sync::Arc::new(crate::testing::EdgeCounter::default()),
            ))),
        };
        bus.insert(0x600, 0x10, Box::new(pm)).unwrap();
        assert!(bus.read_changes_state(0x43), "a device that does not say");
        assert!(!bus.read_changes_state(0x50), "nothing answers");
        assert!(!bus.read_changes_state(0x608), "PM_TMR");
        assert!(!bus.read_changes_state(0x60b), "PM_TMR's last byte");
        assert!(bus.read_changes_state(0x600), "PM1_STS");
    }

    #[test]
    fn ports_route_by_offset_and_reject_overlaps() {
        let mut bus = PortBus::new();
        bus.insert(0x40, 4, Box::new(Echo(100))).unwrap();
        bus.insert(0x60, 1, Box::new(Echo(7))).unwrap();
        assert_eq!(
            bus.insert(0x42, 4, Box::new(Echo(0))),
            Err(BusError::Overlap { base: 0x42, len: 4 })
        );
        assert_eq!(
            bus.insert(0x3e, 3, Box::new(Echo(0))),
            Err(BusError::Overlap { base: 0x3e, len: 3 })
        );
        assert_eq!(
            bus.insert(0xffff, 2, Box::new(Echo(0))),
            Err(BusError::BadRange {
                base: 0xffff,
                len: 2
            })
        );
        assert_eq!(bus.port_read(0x43, 1), 103);
        assert_eq!(bus.port_read(0x44, 1), 0xff);
        assert_eq!(bus.port_read(0x44, 2), 0xffff);
        bus.port_write(0x60, 1, 9);
        assert_eq!(bus.port_read(0x60, 1), 9);
    }

    #[test]
    fn unmapped_mmio_floats_high() {
        let mut bus = MmioBus::new();
        assert_eq!(bus.read(0xfee0_0000, 4), 0xffff_ffff);
        bus.write(0xfee0_0000, 4, 1);
    }
}
