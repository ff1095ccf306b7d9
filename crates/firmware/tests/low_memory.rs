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

/// The FACS is where the machine's S3 resume looks for the waking vector, and its vector
/// fields are at the offsets it reads.
#[test]
fn the_facs_is_at_the_address_a_resume_reads() {
    use crane86_firmware::acpi::{FACS_ADDR, FACS_WAKING_VECTOR, FACS_X_WAKING_VECTOR};
    let image = build_acpi(&AcpiConfig::default()).unwrap();
    let facs = image.part(b"FACS").expect("a FACS");
    assert_eq!(facs.addr, FACS_ADDR);
    // FADT's FIRMWARE_CTRL (offset 36) and X_FIRMWARE_CTRL (offset 132) name it.
    let fadt = &image.part(b"FACP").unwrap().bytes;
    assert_eq!(
        u32::from_le_bytes(fadt[36..40].try_into().unwrap()),
        FACS_ADDR as u32
    );
    assert_eq!(
        u64::from_le_bytes(fadt[132..140].try_into().unwrap()),
        FACS_ADDR
    );
    // Both waking vectors start at zero, inside the 64-byte table.
    let (v, x) = (FACS_WAKING_VECTOR as usize, FACS_X_WAKING_VECTOR as usize);
    assert_eq!(&facs.bytes[v..v + 4], &[0; 4]);
    assert_eq!(&facs.bytes[x..x + 8], &[0; 8]);
    assert_eq!(&facs.bytes[0..4], b"FACS");
}
