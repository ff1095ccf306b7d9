//! The e820 memory map: what the guest is told about its physical address space.
//!
//! The Linux boot loader copies these entries into `boot_params.e820_table` (each in the
//! packed 20-byte layout of [`E820Entry::to_bytes`]). For `ram_bytes` of RAM the map is:
//!
//! | range                                   | type     | why                              |
//! |-----------------------------------------|----------|----------------------------------|
//! | 0 .. 0x9FC00                            | RAM      | conventional memory, IVT and BDA |
//! | 0x9FC00 .. 0xA0000                      | reserved | EBDA                             |
//! | 0xA0000 .. 0xC0000                      | (absent) | VGA hole                         |
//! | 0xC0000 .. 0xE0000                      | reserved | option ROMs                      |
//! | 0xE0000 .. 0xF0000                      | ACPI     | RSDP and ACPI tables             |
//! | 0xF0000 .. 0x100000                     | reserved | system BIOS, MP table            |
//! | 0x100000 .. min(ram, 3 GiB)             | RAM      |                                  |
//! | 4 GiB .. 4 GiB + (ram - 3 GiB)          | RAM      | only when ram > 3 GiB            |
//!
//! The MMIO windows of the PCI hole (I/O APIC, HPET, local APIC) are left out, as QEMU
//! does: the MADT and HPET tables describe them and Linux reserves them itself.
//! The IVT and BDA (0 .. 0x500) are reported as RAM, as every PC BIOS does; Linux reserves
//! the first page on its own.

use crate::layout::{
    ram_ranges, ACPI_TABLES_START, EBDA_START, LEGACY_END, OPTION_ROM_START, RSDP_ADDR,
    SYSTEM_BIOS_START, VGA_HOLE_START,
};
use crate::FirmwareError;

/// Usable RAM.
pub const E820_RAM: u32 = 1;
/// Reserved: the OS must not use it.
pub const E820_RESERVED: u32 = 2;
/// ACPI tables: reclaimable once the OS has read them.
pub const E820_ACPI: u32 = 3;
/// ACPI non-volatile storage: must be preserved across sleep.
pub const E820_NVS: u32 = 4;

/// One e820 entry: `size` bytes from `addr` of type `kind` ([`E820_RAM`], ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct E820Entry {
    /// First guest physical address of the range.
    pub addr: u64,
    /// Length of the range in bytes.
    pub size: u64,
    /// The range's type: [`E820_RAM`], [`E820_RESERVED`], [`E820_ACPI`] or [`E820_NVS`].
    pub kind: u32,
}

impl E820Entry {
    /// Size of an entry in `boot_params` and in the INT 15h/E820 interface.
    pub const SIZE: usize = 20;

    /// The entry in the packed little-endian layout `{ u64 addr; u64 size; u32 type; }`.
    pub fn to_bytes(&self) -> [u8; Self::SIZE] {
        let mut out = [0; Self::SIZE];
        out[0..8].copy_from_slice(&self.addr.to_le_bytes());
        out[8..16].copy_from_slice(&self.size.to_le_bytes());
        out[16..20].copy_from_slice(&self.kind.to_le_bytes());
        out
    }

    /// One past the last address of the range.
    pub fn end(&self) -> u64 {
        self.addr + self.size
    }
}

/// The e820 map for `ram_bytes` of RAM laid out as [`ram_ranges`] says, sorted by address
/// and without overlaps (see the module documentation for the table).
///
/// Fails with [`FirmwareError::RamTooSmall`] unless the RAM reaches past 1 MiB.
pub fn e820_map(ram_bytes: u64) -> Result<Vec<E820Entry>, FirmwareError> {
    if ram_bytes <= LEGACY_END {
        return Err(FirmwareError::RamTooSmall(ram_bytes));
    }
    let entry = |addr: u64, end: u64, kind: u32| E820Entry {
        addr,
        size: end - addr,
        kind,
    };
    debug_assert_eq!(RSDP_ADDR, crate::layout::RSDP_SEARCH_START);
    let mut map = vec![
        entry(0, EBDA_START, E820_RAM),
        entry(EBDA_START, VGA_HOLE_START, E820_RESERVED),
        entry(OPTION_ROM_START, RSDP_ADDR, E820_RESERVED),
        // The RSDP and the tables after it: [`ACPI_TABLES_START`] is inside this entry.
        entry(RSDP_ADDR, SYSTEM_BIOS_START, E820_ACPI),
        entry(SYSTEM_BIOS_START, LEGACY_END, E820_RESERVED),
    ];
    debug_assert!((RSDP_ADDR..SYSTEM_BIOS_START).contains(&ACPI_TABLES_START));
    for (start, len) in ram_ranges(ram_bytes) {
        // The part below 1 MiB is described by the legacy entries above.
        let (start, end) = (start.max(LEGACY_END), start + len);
        if end > start {
            map.push(entry(start, end, E820_RAM));
        }
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::{HIGH_RAM_START, LOW_RAM_LIMIT};

    const MIB: u64 = 1 << 20;
    const GIB: u64 = 1 << 30;

    fn check_sorted_disjoint(map: &[E820Entry]) {
        for pair in map.windows(2) {
            assert!(
                pair[0].end() <= pair[1].addr,
                "{:x?} overlaps {:x?}",
                pair[0],
                pair[1]
            );
        }
        assert!(map.iter().all(|e| e.size > 0));
    }

    /// Every byte of `ram_ranges` is covered by exactly one entry, except the VGA hole;
    /// no entry lies outside RAM.
    fn check_covers_ram(map: &[E820Entry], ram: u64) {
        let mut expected: Vec<(u64, u64)> = Vec::new();
        for (start, len) in ram_ranges(ram) {
            let end = start + len;
            if start < VGA_HOLE_START && end > OPTION_ROM_START {
                expected.push((start, VGA_HOLE_START));
                expected.push((OPTION_ROM_START, end));
            } else {
                expected.push((start, end));
            }
        }
        // Merge the map's adjacent entries into runs and compare.
        let mut runs: Vec<(u64, u64)> = Vec::new();
        for e in map {
            match runs.last_mut() {
                Some(last) if last.1 == e.addr => last.1 = e.end(),
                _ => runs.push((e.addr, e.end())),
            }
        }
        assert_eq!(runs, expected);
        let ram_total: u64 = map
            .iter()
            .filter(|e| e.kind == E820_RAM)
            .map(|e| e.size)
            .sum();
        assert_eq!(ram_total, ram - (LEGACY_END - EBDA_START));
    }

    #[test]
    fn map_for_256_mib() {
        let map = e820_map(256 * MIB).unwrap();
        check_sorted_disjoint(&map);
        check_covers_ram(&map, 256 * MIB);
        let expected = [
            (0, 0x9_FC00, E820_RAM),
            (0x9_FC00, 0x400, E820_RESERVED),
            (0xC_0000, 0x2_0000, E820_RESERVED),
            (0xE_0000, 0x1_0000, E820_ACPI),
            (0xF_0000, 0x1_0000, E820_RESERVED),
            (0x10_0000, 256 * MIB - MIB, E820_RAM),
        ];
        let got: Vec<_> = map.iter().map(|e| (e.addr, e.size, e.kind)).collect();
        assert_eq!(got, expected);
    }

    #[test]
    fn map_for_6_gib_skips_the_pci_hole() {
        let map = e820_map(6 * GIB).unwrap();
        check_sorted_disjoint(&map);
        check_covers_ram(&map, 6 * GIB);
        let ram: Vec<_> = map
            .iter()
            .filter(|e| e.kind == E820_RAM)
            .map(|e| (e.addr, e.end()))
            .collect();
        assert_eq!(
            ram,
            [
                (0, EBDA_START),
                (LEGACY_END, LOW_RAM_LIMIT),
                (HIGH_RAM_START, HIGH_RAM_START + 3 * GIB)
            ]
        );
        assert!(!map
            .iter()
            .any(|e| e.addr < HIGH_RAM_START && e.end() > LOW_RAM_LIMIT));
    }

    #[test]
    fn map_at_the_edges() {
        for ram in [MIB + 4096, 3 * GIB, 3 * GIB + 4096, 4 * GIB] {
            let map = e820_map(ram).unwrap();
            check_sorted_disjoint(&map);
            check_covers_ram(&map, ram);
        }
        assert_eq!(e820_map(MIB), Err(FirmwareError::RamTooSmall(MIB)));
    }

    #[test]
    fn entry_bytes_are_packed_little_endian() {
        let e = E820Entry {
            addr: 0x1122_3344_5566_7788,
            size: 0x10_0000,
            kind: E820_ACPI,
        };
        let b = e.to_bytes();
        assert_eq!(&b[0..8], &[0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11]);
        assert_eq!(&b[8..16], &[0, 0, 0x10, 0, 0, 0, 0, 0]);
        assert_eq!(&b[16..20], &[3, 0, 0, 0]);
    }
}
