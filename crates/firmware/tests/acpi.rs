//! The ACPI tables as an OS sees them: written into an image of low memory through the
//! writer closure, then found by scanning for the RSDP and followed pointer by pointer.

use crane86_firmware::acpi::*;
use crane86_firmware::aml::{decode, AmlValue};
use crane86_firmware::layout::*;
use crane86_firmware::{byte_sum, FirmwareError};

/// Low memory (0 .. 1 MiB) with the tables for `config` written into it.
fn low_memory(config: &AcpiConfig) -> Vec<u8> {
    let image = build_acpi(config).unwrap();
    let mut mem = vec![0u8; LEGACY_END as usize];
    image.write(|addr, bytes| {
        let at = addr as usize;
        assert!(
            mem[at..at + bytes.len()].iter().all(|&b| b == 0),
            "parts overlap at {addr:#x}"
        );
        mem[at..at + bytes.len()].copy_from_slice(bytes);
    });
    mem
}

fn u16_at(mem: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(mem[at..at + 2].try_into().unwrap())
}
fn u32_at(mem: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(mem[at..at + 4].try_into().unwrap())
}
fn u64_at(mem: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(mem[at..at + 8].try_into().unwrap())
}

/// The RSDP's address, found the way Linux and kvm-unit-tests do.
fn scan_rsdp(mem: &[u8]) -> usize {
    (RSDP_SEARCH_START as usize..LEGACY_END as usize)
        .step_by(16)
        .find(|&a| &mem[a..a + 8] == b"RSD PTR " && byte_sum(&mem[a..a + 20]) == 0)
        .expect("no RSDP in 0xE0000..0xFFFFF")
}

/// The table at `addr`, checked: signature, length at least a header, checksum zero.
fn table<'m>(mem: &'m [u8], addr: u64, signature: &[u8; 4]) -> &'m [u8] {
    let at = addr as usize;
    assert!(
        (RSDP_SEARCH_START..SYSTEM_BIOS_START).contains(&addr),
        "{} at {addr:#x} is outside the ACPI area",
        String::from_utf8_lossy(signature)
    );
    assert_eq!(&mem[at..at + 4], signature, "signature at {addr:#x}");
    let len = u32_at(mem, at + 4) as usize;
    assert!(len >= HEADER_SIZE);
    let t = &mem[at..at + len];
    assert_eq!(
        byte_sum(t),
        0,
        "{} checksum",
        String::from_utf8_lossy(signature)
    );
    assert_eq!(&t[10..16], &OEM_ID);
    t
}

/// The tables the XSDT lists, by signature, after checking the RSDT lists the same.
fn listed_tables(mem: &[u8]) -> Vec<(String, u64)> {
    let r = scan_rsdp(mem);
    let rsdp = &mem[r..r + RSDP_SIZE];
    assert_eq!(rsdp[15], 2, "RSDP revision");
    assert_eq!(u32_at(rsdp, 20) as usize, RSDP_SIZE);
    assert_eq!(byte_sum(rsdp), 0, "RSDP extended checksum");
    let rsdt = table(mem, u32_at(rsdp, 16).into(), b"RSDT");
    let xsdt = table(mem, u64_at(rsdp, 24), b"XSDT");
    let rsdt_entries: Vec<u64> = rsdt[HEADER_SIZE..]
        .chunks(4)
        .map(|c| u32_at(c, 0).into())
        .collect();
    let xsdt_entries: Vec<u64> = xsdt[HEADER_SIZE..]
        .chunks(8)
        .map(|c| u64_at(c, 0))
        .collect();
    assert_eq!(rsdt_entries, xsdt_entries);
    xsdt_entries
        .into_iter()
        .map(|a| {
            (
                String::from_utf8_lossy(&mem[a as usize..a as usize + 4]).into_owned(),
                a,
            )
        })
        .collect()
}

fn find<'m>(mem: &'m [u8], signature: &[u8; 4]) -> &'m [u8] {
    let (_, addr) = listed_tables(mem)
        .into_iter()
        .find(|(s, _)| s.as_bytes() == signature)
        .unwrap_or_else(|| panic!("{} not listed", String::from_utf8_lossy(signature)));
    table(mem, addr, signature)
}

#[test]
fn rsdp_is_found_by_scanning_the_bios_area() {
    let mem = low_memory(&AcpiConfig::default());
    assert_eq!(scan_rsdp(&mem) as u64, RSDP_ADDR);
    assert_eq!(
        build_acpi(&AcpiConfig::default()).unwrap().rsdp_addr(),
        RSDP_ADDR
    );
}

#[test]
fn every_table_has_a_zero_checksum_and_lies_in_the_acpi_area() {
    let image = build_acpi(&AcpiConfig {
        num_vcpus: 8,
        ..AcpiConfig::default()
    })
    .unwrap();
    for part in &image.parts {
        let name = String::from_utf8_lossy(&part.signature);
        match &part.signature {
            b"RSD " => {
                assert_eq!(byte_sum(&part.bytes[..20]), 0, "RSDP v1 checksum");
                assert_eq!(byte_sum(&part.bytes), 0, "RSDP extended checksum");
            }
            b"FACS" => assert_eq!(part.addr % 64, 0, "FACS alignment"),
            _ => {
                assert_eq!(byte_sum(&part.bytes), 0, "{name} checksum");
                assert_eq!(
                    u32_at(&part.bytes, 4) as usize,
                    part.bytes.len(),
                    "{name} length"
                );
            }
        }
        assert!(part.addr >= RSDP_ADDR && part.addr + part.bytes.len() as u64 <= SYSTEM_BIOS_START);
    }
    let (start, end) = image.range();
    assert_eq!(start, RSDP_ADDR);
    assert!(end <= SYSTEM_BIOS_START);
}

#[test]
fn rsdt_and_xsdt_list_fadt_madt_and_hpet() {
    let mem = low_memory(&AcpiConfig::default());
    let names: Vec<String> = listed_tables(&mem).into_iter().map(|(s, _)| s).collect();
    assert_eq!(names, ["FACP", "APIC", "HPET"]);
    assert_eq!(find(&mem, b"FACP").len(), FADT_SIZE);
    assert_eq!(find(&mem, b"HPET").len(), 56);
}

#[test]
fn fadt_points_at_the_dsdt_and_facs_and_describes_the_pm_block() {
    let mem = low_memory(&AcpiConfig::default());
    let f = find(&mem, b"FACP");
    assert_eq!(f[8], 6, "FADT revision");
    // DSDT, 32 and 64 bits, agree and point at a valid DSDT.
    let dsdt = u32_at(f, 40) as u64;
    assert_eq!(u64_at(f, 140), dsdt);
    table(&mem, dsdt, b"DSDT");
    // FACS likewise.
    let facs = u32_at(f, 36) as u64;
    assert_eq!(u64_at(f, 132), facs);
    assert_eq!(&mem[facs as usize..][..4], b"FACS");
    assert_eq!(u32_at(&mem, facs as usize + 4), 64);
    assert_eq!(facs % 64, 0);

    assert_eq!(u16_at(f, 46), 9, "SCI_INT");
    assert_eq!(u32_at(f, 48), 0, "no SMI_CMD: always in ACPI mode");
    assert_eq!(u32_at(f, 56), 0x600, "PM1a_EVT_BLK");
    assert_eq!(u32_at(f, 60), 0, "PM1b_EVT_BLK");
    assert_eq!(u32_at(f, 64), 0x604, "PM1a_CNT_BLK");
    assert_eq!(u32_at(f, 76), 0x608, "PM_TMR_BLK");
    assert_eq!(
        (f[88], f[89], f[90], f[91]),
        (4, 2, 0, 4),
        "PM1_EVT/PM1_CNT/PM2_CNT/PM_TMR lengths"
    );
    assert_eq!(f[108], 0x32, "CENTURY");

    let boot_arch = u16_at(f, 109);
    assert_ne!(boot_arch & 1 << 1, 0, "8042 present");
    assert_ne!(boot_arch & 1 << 2, 0, "no VGA by default");
    assert_eq!(boot_arch & 1 << 5, 0, "CMOS RTC present");
    let flags = u32_at(f, 112);
    assert_ne!(flags & 1 << 10, 0, "RESET_REG_SUP");
    assert_eq!(flags & 1 << 8, 0, "24-bit PM timer");
    assert_eq!(flags & 1 << 20, 0, "not HW_REDUCED_ACPI");

    // RESET_REG: system I/O, 8 bits, port 0xCF9; RESET_VALUE 6.
    assert_eq!(&f[116..120], &[1, 8, 0, 1]);
    assert_eq!(u64_at(f, 120), 0xCF9);
    assert_eq!(f[128], 0x06);
    // Extended blocks: system I/O at the same ports, widths from the lengths.
    for (offset, port, bits) in [(148, 0x600, 32), (172, 0x604, 16), (208, 0x608, 32)] {
        assert_eq!((f[offset], f[offset + 1]), (1, bits), "GAS at {offset}");
        assert_eq!(u64_at(f, offset + 4), port, "GAS at {offset}");
    }
    assert_eq!(u64_at(f, 160 + 4), 0, "no PM1b");

    let with_vga = low_memory(&AcpiConfig {
        vga_present: true,
        ..AcpiConfig::default()
    });
    assert_eq!(u16_at(find(&with_vga, b"FACP"), 109) & 1 << 2, 0);
}

/// The MADT's entries as `(type, bytes)`.
fn madt_entries(madt: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    let mut at = HEADER_SIZE + 8;
    while at < madt.len() {
        let len = madt[at + 1] as usize;
        assert!(len >= 2 && at + len <= madt.len());
        out.push((madt[at], madt[at..at + len].to_vec()));
        at += len;
    }
    out
}

#[test]
fn madt_has_one_local_apic_per_vcpu_an_ioapic_and_qemus_overrides() {
    let mem = low_memory(&AcpiConfig {
        num_vcpus: 4,
        ioapic_id: 4,
        ..AcpiConfig::default()
    });
    let m = find(&mem, b"APIC");
    assert_eq!(u32_at(m, 36), 0xFEE0_0000, "local APIC address");
    assert_eq!(u32_at(m, 40), 1, "PCAT_COMPAT");
    let entries = madt_entries(m);

    let lapics: Vec<_> = entries.iter().filter(|e| e.0 == MADT_LOCAL_APIC).collect();
    assert_eq!(lapics.len(), 4);
    for (i, (_, e)) in lapics.iter().enumerate() {
        assert_eq!(e.len(), 8);
        assert_eq!((e[2], e[3]), (i as u8, i as u8), "UID and APIC ID");
        assert_eq!(u32_at(e, 4), 1, "enabled");
    }

    let ioapics: Vec<_> = entries.iter().filter(|e| e.0 == MADT_IOAPIC).collect();
    assert_eq!(ioapics.len(), 1);
    let io = &ioapics[0].1;
    assert_eq!((io.len(), io[2]), (12, 4), "length, I/O APIC ID");
    assert_eq!(u32_at(io, 4), 0xFEC0_0000);
    assert_eq!(u32_at(io, 8), 0, "GSI base");

    let overrides: Vec<_> = entries
        .iter()
        .filter(|e| e.0 == MADT_INT_SRC_OVERRIDE)
        .map(|(_, e)| (e[2], e[3], u32_at(e, 4), u16_at(e, 8)))
        .collect();
    assert_eq!(
        overrides,
        [(0, 0, 2, 0b0101), (0, 9, 9, 0b1101)],
        "(bus, IRQ, GSI, flags)"
    );

    let nmi: Vec<_> = entries
        .iter()
        .filter(|e| e.0 == MADT_LOCAL_APIC_NMI)
        .collect();
    assert_eq!(nmi.len(), 1);
    assert_eq!(
        (nmi[0].1[2], nmi[0].1[5]),
        (0xFF, 1),
        "all processors, LINT1"
    );
}

#[test]
fn vcpu_count_limits() {
    assert_eq!(
        build_acpi(&AcpiConfig {
            num_vcpus: 0,
            ..AcpiConfig::default()
        }),
        Err(FirmwareError::NoVcpus)
    );
    assert_eq!(
        build_acpi(&AcpiConfig {
            num_vcpus: 256,
            ..AcpiConfig::default()
        }),
        Err(FirmwareError::TooManyVcpus(256))
    );
    let mem = low_memory(&AcpiConfig {
        num_vcpus: 255,
        ..AcpiConfig::default()
    });
    let m = find(&mem, b"APIC");
    let lapics = madt_entries(m)
        .into_iter()
        .filter(|e| e.0 == MADT_LOCAL_APIC)
        .count();
    assert_eq!(lapics, 255);
}

#[test]
fn hpet_table_describes_the_hpet() {
    let mem = low_memory(&AcpiConfig::default());
    let h = find(&mem, b"HPET");
    let id = u32_at(h, 36);
    assert_eq!(id >> 16, 0x8086, "vendor");
    assert_eq!((id >> 8) & 0x1F, 2, "comparators - 1");
    assert_ne!(id & 1 << 15, 0, "legacy replacement capable");
    assert_eq!(id, 0x8086_A201);
    assert_eq!(h[40], 0, "system memory");
    assert_eq!(u64_at(h, 44), 0xFED0_0000);
    assert_eq!(u16_at(h, 53), 0x80, "minimum tick");
}

#[test]
fn dsdt_holds_s3_and_s5_with_the_pm_blocks_sleep_types() {
    let mem = low_memory(&AcpiConfig::default());
    let f = find(&mem, b"FACP");
    let dsdt = table(&mem, u64_at(f, 140), b"DSDT");
    let aml = &dsdt[HEADER_SIZE..];
    let s5 = [0x08, b'_', b'S', b'5', b'_', 0x12];
    assert!(
        aml.windows(s5.len()).any(|w| w == s5),
        "no Name(_S5, Package...) in {aml:02x?}"
    );
    let names = decode(aml).unwrap();
    let (_, value) = names
        .iter()
        .find(|(n, _)| n == "_S5_")
        .expect("_S5 decoded");
    assert_eq!(
        *value,
        AmlValue::Package(vec![AmlValue::Integer(u64::from(S5_SLP_TYP)); 4])
    );
    assert_eq!(S5_SLP_TYP, 0);
    // `_S3`'s sleep type in both fields (PM1a and PM1b), then two reserved zeros; the PM
    // block sleeps on that value (`crane86_devices::acpi_pm::SLP_TYP_S3`).
    let (_, s3) = names
        .iter()
        .find(|(n, _)| n == "_S3_")
        .expect("_S3 decoded");
    let typ = AmlValue::Integer(u64::from(S3_SLP_TYP));
    assert_eq!(
        *s3,
        AmlValue::Package(vec![
            typ.clone(),
            typ,
            AmlValue::Integer(0),
            AmlValue::Integer(0)
        ])
    );
    assert_eq!(S3_SLP_TYP, 1);
}

#[test]
fn try_write_passes_errors_through() {
    let image = build_acpi(&AcpiConfig::default()).unwrap();
    let mut calls = 0;
    let r = image.try_write(|_, _| {
        calls += 1;
        Err("full")
    });
    assert_eq!((r, calls), (Err("full"), 1));
    let mut n = 0;
    image
        .try_write(|_, _| {
            n += 1;
            Ok::<_, ()>(())
        })
        .unwrap();
    assert_eq!(n, image.parts.len());
}
