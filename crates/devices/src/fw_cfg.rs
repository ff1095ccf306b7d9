//! QEMU's firmware configuration interface (fw_cfg), legacy port I/O flavour: a 16-bit
//! selector at port 0x510 and a byte-wide data port at 0x511 (no DMA).
//!
//! Only the few numeric items test kernels read are provided (kvm-unit-tests asks for the CPU
//! count and the RAM size through it): the signature "QEMU", the interface ID (1: no DMA), the
//! RAM size, the CPU counts and the top of RAM. Each selected item reads out little-endian,
//! one byte per data read, then as zeros, as QEMU does; an unknown item reads as zeros too.

use crate::PortDevice;

/// The selector port; the data port follows it.
pub const FW_CFG_PORT: u16 = 0x510;
/// Ports taken: selector (16 bits) and data (8 bits).
pub const FW_CFG_PORTS_LEN: u16 = 2;

/// Item: the signature, "QEMU".
pub const SIGNATURE: u16 = 0x00;
/// Item: the interface ID (bit 0: traditional interface; bit 1, DMA, is not offered).
pub const ID: u16 = 0x01;
/// Item: RAM size in bytes (u64).
pub const RAM_SIZE: u16 = 0x03;
/// Item: the number of CPUs at boot (u16).
pub const NB_CPUS: u16 = 0x05;
/// Item: the largest number of CPUs (u16).
pub const MAX_CPUS: u16 = 0x0f;
/// Item: the top of RAM, in bytes (u64; kvm-unit-tests' MAX_RAM).
pub const MAX_RAM: u16 = 0x11;
/// Selector bits that are not part of the item number (write channel, arch-local).
const ENTRY_MASK: u16 = 0x3fff;
const ARCH_LOCAL: u16 = 0x8000;

/// The fw_cfg device.
pub struct FwCfg {
    ram_bytes: u64,
    cpus: u16,
    selector: u16,
    offset: usize,
}

impl FwCfg {
    /// A device describing a machine with `ram_bytes` of RAM and `cpus` CPUs.
    pub fn new(ram_bytes: u64, cpus: u16) -> FwCfg {
        FwCfg {
            ram_bytes,
            cpus,
            selector: 0,
            offset: 0,
        }
    }

    /// The bytes of the selected item.
    fn item(&self) -> Vec<u8> {
        if self.selector & ARCH_LOCAL != 0 {
            return Vec::new();
        }
        match self.selector & ENTRY_MASK {
            SIGNATURE => b"QEMU".to_vec(),
            ID => 1u32.to_le_bytes().to_vec(),
            RAM_SIZE | MAX_RAM => self.ram_bytes.to_le_bytes().to_vec(),
            NB_CPUS | MAX_CPUS => self.cpus.to_le_bytes().to_vec(),
            _ => Vec::new(),
        }
    }

    fn next_byte(&mut self) -> u8 {
        let b = self.item().get(self.offset).copied().unwrap_or(0);
        self.offset = self.offset.saturating_add(1);
        b
    }
}

impl PortDevice for FwCfg {
    fn read(&mut self, offset: u16, size: u8) -> u32 {
        match offset {
            // Data: each access reads the next bytes (a wide access reads several).
            1 => (0..size.clamp(1, 4)).fold(0, |acc, i| {
                acc | u32::from(self.next_byte()) << (8 * u32::from(i))
            }),
            0 => u32::from(self.selector),
            _ => u32::MAX >> (32 - 8 * u32::from(size.clamp(1, 4))),
        }
    }

    fn write(&mut self, offset: u16, size: u8, value: u32) {
        match offset {
            0 => {
                self.selector = value as u16;
                self.offset = 0;
            }
            _ => tracing::debug!(offset, size, value, "fw_cfg write ignored"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_item(d: &mut FwCfg, item: u16, len: usize) -> Vec<u8> {
        d.write(0, 2, u32::from(item));
        (0..len).map(|_| d.read(1, 1) as u8).collect()
    }

    #[test]
    fn items_read_out_byte_by_byte_then_zeros() {
        let mut d = FwCfg::new(256 << 20, 1);
        assert_eq!(read_item(&mut d, SIGNATURE, 6), b"QEMU\0\0");
        assert_eq!(read_item(&mut d, NB_CPUS, 2), [1, 0]);
        assert_eq!(read_item(&mut d, RAM_SIZE, 8), (256u64 << 20).to_le_bytes());
        assert_eq!(read_item(&mut d, 0x1234, 2), [0, 0]);
    }

    #[test]
    fn any_access_is_harmless() {
        let mut d = FwCfg::new(1 << 20, 1);
        for size in 0..=8 {
            for off in 0..4 {
                d.write(off, size, u32::MAX);
                let _ = d.read(off, size);
            }
        }
    }
}
