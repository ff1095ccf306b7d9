//! All firmware tables together in low memory, against the e820 map.

use crane86_firmware::acpi::{build_acpi, AcpiConfig};
use crane86_firmware::e820::{e820_map, E820_ACPI, E820_RESERVED};
use crane86_firmware::mptable::build_mptable;

/// Every byte of every table lies in one e820 entry of the expected type, and no two
/// tables overlap.
#[test]
fn tables_lie_in_their_e820_areas_without_overlapping() {
    let map = e820_map(256 << 20).unwrap();
    let acpi = build_acpi(&AcpiConfig {
        num_vcpus: 16,
        ..AcpiConfig::default()
    })
    .unwrap();
    let mp = build_mptable(16, 0).unwrap();
    let mut placed: Vec<(u64, u64, u32)> = Vec::new();
    acpi.write(|addr, bytes| placed.push((addr, addr + bytes.len() as u64, E820_ACPI)));
    mp.write(|addr, bytes| placed.push((addr, addr + bytes.len() as u64, E820_RESERVED)));
    placed.sort();
    for pair in placed.windows(2) {
        assert!(
            pair[0].1 <= pair[1].0,
            "{:x?} overlaps {:x?}",
            pair[0],
            pair[1]
        );
    }
    for (start, end, kind) in placed {
        let entry = map
            .iter()
            .find(|e| e.addr <= start && end <= e.end())
            .unwrap_or_else(|| panic!("{start:#x}..{end:#x} is in no single e820 entry"));
        assert_eq!(entry.kind, kind, "type of the entry holding {start:#x}");
    }
}
