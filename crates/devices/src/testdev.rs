//! QEMU's `pc-testdev`, the test device kvm-unit-tests expects on the `pc` machine.
//!
//! As QEMU defines it (hw/misc/pc-testdev.c): a 32-bit scratch register at port 0xE0, a
//! "flush page" port at 0xE4 (on KVM it changes a page's host
//! protection; here there is no host mapping to change, so writes are dropped), 24
//! interrupt-line ports from 0x2000 (writing V to 0x2000 + n drives ISA IRQ n to `V != 0`),
//! and 64 KiB of scratch memory-mapped at 0xFF000000 that reads back what was written.
//!
//! QEMU also has a byte view of the register at 0xE8-0xEB; it is left out because it
//! collides with isa-debugcon at 0xE9, which crane86 always has, and no kvm-unit-test uses
//! it.

use std::sync::Arc;

use crate::{IrqLine, MmioDevice, PortDevice};

/// The scratch register's port.
pub const TESTDEV_PORT: u16 = 0xe0;
/// Ports of the scratch register and the flush port (0xE0-0xE7).
pub const TESTDEV_PORTS_LEN: u16 = 8;
/// The first interrupt-line port.
pub const TESTDEV_IRQ_PORT: u16 = 0x2000;
/// Interrupt lines (ports 0x2000-0x2017).
pub const TESTDEV_IRQS: u16 = 24;
/// Where the scratch memory is mapped.
pub const TESTDEV_IOMEM_BASE: u64 = 0xff00_0000;
/// Size of the scratch memory.
pub const TESTDEV_IOMEM_LEN: u64 = 0x1_0000;

/// Offset of the flush-page port from [`TESTDEV_PORT`].
const FLUSH: u16 = 4;

/// The scratch register and flush port (0xE0-0xE7).
#[derive(Default)]
pub struct TestDevPorts {
    data: u32,
}

impl TestDevPorts {
    /// A device with the register at 0.
    pub fn new() -> TestDevPorts {
        TestDevPorts::default()
    }

    /// The byte lane of the register an access at `offset` starts at, or `None` for the
    /// flush port.
    fn lane(offset: u16) -> Option<u32> {
        match offset {
            0..FLUSH => Some(u32::from(offset)),
            _ => None,
        }
    }
}

impl PortDevice for TestDevPorts {
    fn read(&mut self, offset: u16, size: u8) -> u32 {
        let bits = 8 * u32::from(size.clamp(1, 4));
        match Self::lane(offset) {
            Some(lane) => (u64::from(self.data) >> (8 * lane)) as u32 & (u32::MAX >> (32 - bits)),
            None => u32::MAX >> (32 - bits),
        }
    }

    fn write(&mut self, offset: u16, size: u8, value: u32) {
        let Some(lane) = Self::lane(offset) else {
            tracing::trace!(value, "pc-testdev flush-page write (nothing to flush)");
            return;
        };
        for i in 0..u32::from(size.clamp(1, 4)) {
            let byte = lane + i;
            if byte < 4 {
                let shift = 8 * byte;
                self.data = (self.data & !(0xff << shift)) | (((value >> (8 * i)) & 0xff) << shift);
            }
        }
    }
}

/// The interrupt-line ports (0x2000-0x2017): line `n` is ISA IRQ `n`.
pub struct TestDevIrqs {
    lines: Vec<Arc<dyn IrqLine>>,
}

impl TestDevIrqs {
    /// Ports driving `lines[n]` from port offset `n`.
    pub fn new(lines: Vec<Arc<dyn IrqLine>>) -> TestDevIrqs {
        TestDevIrqs { lines }
    }
}

impl PortDevice for TestDevIrqs {
    /// Reads return 0 (QEMU's lines are write-only).
    fn read(&mut self, _offset: u16, _size: u8) -> u32 {
        0
    }

    fn write(&mut self, offset: u16, _size: u8, value: u32) {
        match self.lines.get(usize::from(offset)) {
            Some(line) => line.set_level(value != 0),
            None => tracing::debug!(offset, value, "pc-testdev write beyond its IRQ lines"),
        }
    }
}

/// The scratch memory at 0xFF000000.
pub struct TestDevIomem {
    buf: Vec<u8>,
}

impl Default for TestDevIomem {
    fn default() -> Self {
        TestDevIomem {
            buf: vec![0; TESTDEV_IOMEM_LEN as usize],
        }
    }
}

impl TestDevIomem {
    /// Zeroed scratch memory.
    pub fn new() -> TestDevIomem {
        TestDevIomem::default()
    }
}

impl MmioDevice for TestDevIomem {
    fn read(&mut self, offset: u64, size: u8) -> u64 {
        (0..u64::from(size.clamp(1, 8))).fold(0, |acc, i| {
            let b = self
                .buf
                .get(offset.saturating_add(i) as usize)
                .copied()
                .unwrap_or(0xff);
            acc | u64::from(b) << (8 * i)
        })
    }

    fn write(&mut self, offset: u64, size: u8, value: u64) {
        for i in 0..u64::from(size.clamp(1, 8)) {
            if let Some(b) = self.buf.get_mut(offset.saturating_add(i) as usize) {
                *b = (value >> (8 * i)) as u8;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::Edges;

    #[test]
    fn the_scratch_register_reads_back_at_every_width() {
        let mut d = TestDevPorts::new();
        d.write(0, 4, 0x1234_5678);
        assert_eq!(d.read(0, 1), 0x78);
        assert_eq!(d.read(0, 2), 0x5678);
        assert_eq!(d.read(0, 4), 0x1234_5678);
        d.write(1, 1, 0xab);
        assert_eq!(d.read(0, 4), 0x1234_ab78);
        d.write(FLUSH, 4, 0x1000);
        assert_eq!(d.read(FLUSH, 4), 0xffff_ffff);
    }

    #[test]
    fn irq_ports_drive_their_lines() {
        let e = Edges::default();
        let mut d = TestDevIrqs::new(vec![Arc::new(NoLine), Arc::new(e.clone())]);
        d.write(1, 4, 1);
        assert!(e.high());
        d.write(1, 4, 0);
        assert!(!e.high());
        assert_eq!(e.count(), 1);
        d.write(100, 4, 1);
    }

    struct NoLine;
    impl IrqLine for NoLine {
        fn set_level(&self, _high: bool) {}
    }

    #[test]
    fn iomem_reads_back_and_never_panics() {
        let mut m = TestDevIomem::new();
        m.write(0x10, 8, 0x1122_3344_5566_7788);
        assert_eq!(m.read(0x12, 2), 0x5566);
        m.write(TESTDEV_IOMEM_LEN - 1, 8, u64::MAX);
        assert_eq!(m.read(TESTDEV_IOMEM_LEN - 1, 2), 0xffff);
        let _ = m.read(u64::MAX, 8);
    }
}
