//! The guest physical memory map, lowest address first.
//!
//! Each banner names a range; the constants under it are in ascending order (a test checks
//! the whole file's order through [`ORDERED`]). Addresses are plain `u64` guest physical
//! addresses; a `*_SIZE` is a length in bytes.
//!
//! Guest RAM starts at 0. Below 1 MiB the PC's legacy areas sit inside that RAM: the
//! machine backs them with RAM (so the firmware tables can be written there with
//! `PhysMem::load`) but the e820 map reports them reserved. The VGA hole is not reported at
//! all. RAM beyond [`LOW_RAM_LIMIT`] is moved above 4 GiB, leaving the 32-bit PCI hole for
//! MMIO: see [`ram_ranges`].

// ** Real-mode interrupt vector table and BIOS data area (0 .. 0x500) **

/// The real-mode interrupt vector table: 256 far pointers.
pub const IVT_START: u64 = 0x0;
/// The BIOS data area (COM/LPT port list, EBDA segment, equipment word, ...).
pub const BDA_START: u64 = 0x400;
/// End of the BIOS data area; conventional memory that the OS may use starts here.
pub const BDA_END: u64 = 0x500;

// ** Extended BIOS data area (0x9FC00 .. 0xA0000) **

/// The extended BIOS data area: the last 1 KiB of conventional memory, reported reserved.
pub const EBDA_START: u64 = 0x9_FC00;

// ** Legacy VGA hole (0xA0000 .. 0xC0000) **

/// The VGA frame buffer window; not RAM as far as the guest is told (absent from e820).
pub const VGA_HOLE_START: u64 = 0xA_0000;

// ** Option ROM and system BIOS area (0xC0000 .. 0x100000) **

/// Video BIOS and option ROMs, reported reserved; also the end of the VGA hole.
pub const OPTION_ROM_START: u64 = 0xC_0000;
/// Start of the window where an OS scans for the ACPI RSDP in 16-byte steps (to 1 MiB).
pub const RSDP_SEARCH_START: u64 = 0xE_0000;
/// Where the ACPI RSDP goes: the first paragraph of the search window.
pub const RSDP_ADDR: u64 = RSDP_SEARCH_START;
/// Start of the ACPI tables proper (FACS, DSDT, FADT, MADT, HPET, RSDT, XSDT), right
/// after the 36-byte RSDP and 64-byte aligned for the FACS; reported as e820 ACPI data.
pub const ACPI_TABLES_START: u64 = 0xE_0040;
/// End of the ACPI table area and start of the system BIOS segment, reported reserved.
pub const SYSTEM_BIOS_START: u64 = 0xF_0000;
/// Where the Intel MP floating pointer goes (the config table follows it).
pub const MPTABLE_START: u64 = SYSTEM_BIOS_START;
/// End of the legacy areas and of the RSDP search window: 1 MiB.
pub const LEGACY_END: u64 = 0x10_0000;

// ** Low RAM above 1 MiB (0x100000 .. LOW_RAM_LIMIT) **

/// First byte of RAM above the legacy areas: where a protected-mode kernel is loaded.
pub const HIGH_MEMORY_START: u64 = LEGACY_END;

// ** 32-bit PCI hole (LOW_RAM_LIMIT .. 4 GiB) **

/// Where RAM below 4 GiB stops and the 32-bit MMIO hole (PCI BARs, chipset devices) starts.
pub const LOW_RAM_LIMIT: u64 = 0xC000_0000;
/// Start of the 32-bit PCI hole (same as [`LOW_RAM_LIMIT`]).
pub const PCI_HOLE_START: u64 = LOW_RAM_LIMIT;
/// The I/O APIC's register window.
pub const IOAPIC_ADDR: u64 = 0xFEC0_0000;
/// Size of the I/O APIC's register window.
pub const IOAPIC_SIZE: u64 = 0x1000;
/// The HPET's register block.
pub const HPET_ADDR: u64 = 0xFED0_0000;
/// Size of the HPET's register block.
pub const HPET_SIZE: u64 = 0x400;
/// The local APIC's register page (the architectural default of `IA32_APIC_BASE`).
pub const LAPIC_ADDR: u64 = 0xFEE0_0000;
/// Size of the local APIC's register page.
pub const LAPIC_SIZE: u64 = 0x1000;
/// End of the 32-bit PCI hole: 4 GiB.
pub const PCI_HOLE_END: u64 = 0x1_0000_0000;

// ** High RAM (4 GiB ..) **

/// Where RAM beyond [`LOW_RAM_LIMIT`] continues.
pub const HIGH_RAM_START: u64 = PCI_HOLE_END;

/// Every address constant of this file in file order, with its name, so a test (and a
/// reader) can check that the map is ordered.
pub const ORDERED: &[(&str, u64)] = &[
    ("IVT_START", IVT_START),
    ("BDA_START", BDA_START),
    ("BDA_END", BDA_END),
    ("EBDA_START", EBDA_START),
    ("VGA_HOLE_START", VGA_HOLE_START),
    ("OPTION_ROM_START", OPTION_ROM_START),
    ("RSDP_SEARCH_START", RSDP_SEARCH_START),
    ("RSDP_ADDR", RSDP_ADDR),
    ("ACPI_TABLES_START", ACPI_TABLES_START),
    ("SYSTEM_BIOS_START", SYSTEM_BIOS_START),
    ("MPTABLE_START", MPTABLE_START),
    ("LEGACY_END", LEGACY_END),
    ("HIGH_MEMORY_START", HIGH_MEMORY_START),
    ("LOW_RAM_LIMIT", LOW_RAM_LIMIT),
    ("PCI_HOLE_START", PCI_HOLE_START),
    ("IOAPIC_ADDR", IOAPIC_ADDR),
    ("HPET_ADDR", HPET_ADDR),
    ("LAPIC_ADDR", LAPIC_ADDR),
    ("PCI_HOLE_END", PCI_HOLE_END),
    ("HIGH_RAM_START", HIGH_RAM_START),
];

// The windows fit their ranges and each other (checked when compiling).
const _: () = {
    assert!(RSDP_SEARCH_START >= OPTION_ROM_START && LEGACY_END - RSDP_SEARCH_START == 0x2_0000);
    assert!(RSDP_ADDR.is_multiple_of(16) && ACPI_TABLES_START.is_multiple_of(64));
    assert!(ACPI_TABLES_START >= RSDP_ADDR + 36); // the RSDP is 36 bytes
    assert!(IOAPIC_ADDR >= PCI_HOLE_START && IOAPIC_ADDR + IOAPIC_SIZE <= HPET_ADDR);
    assert!(HPET_ADDR + HPET_SIZE <= LAPIC_ADDR);
    assert!(LAPIC_ADDR + LAPIC_SIZE <= PCI_HOLE_END);
};

/// The guest physical ranges, as `(start, length)`, that hold `ram_bytes` of RAM: from 0 up
/// to [`LOW_RAM_LIMIT`], and the rest from [`HIGH_RAM_START`] (4 GiB) on.
///
/// The legacy areas below 1 MiB are part of the first range: they are backed by RAM even
/// though e820 reports them reserved (see [`crate::e820`]).
///
/// ```
/// use crane86_firmware::layout::{ram_ranges, HIGH_RAM_START, LOW_RAM_LIMIT};
/// assert_eq!(ram_ranges(256 << 20), vec![(0, 256 << 20)]);
/// assert_eq!(
///     ram_ranges(6 << 30),
///     vec![(0, LOW_RAM_LIMIT), (HIGH_RAM_START, (6 << 30) - LOW_RAM_LIMIT)]
/// );
/// ```
pub fn ram_ranges(ram_bytes: u64) -> Vec<(u64, u64)> {
    let mut ranges = Vec::with_capacity(2);
    let low = ram_bytes.min(LOW_RAM_LIMIT);
    if low > 0 {
        ranges.push((0, low));
    }
    if ram_bytes > LOW_RAM_LIMIT {
        ranges.push((HIGH_RAM_START, ram_bytes - LOW_RAM_LIMIT));
    }
    ranges
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constants_are_in_ascending_order() {
        for pair in ORDERED.windows(2) {
            let ((a, x), (b, y)) = (pair[0], pair[1]);
            assert!(x <= y, "{a} ({x:#x}) comes after {b} ({y:#x})");
        }
    }

    #[test]
    fn ram_ranges_split_around_the_pci_hole() {
        assert_eq!(ram_ranges(0), vec![]);
        assert_eq!(ram_ranges(LOW_RAM_LIMIT), vec![(0, LOW_RAM_LIMIT)]);
        assert_eq!(
            ram_ranges(LOW_RAM_LIMIT + 1),
            vec![(0, LOW_RAM_LIMIT), (HIGH_RAM_START, 1)]
        );
        let total: u64 = ram_ranges(6 << 30).iter().map(|r| r.1).sum();
        assert_eq!(total, 6 << 30);
    }
}
