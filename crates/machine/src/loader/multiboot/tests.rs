//! Tests of the multiboot loader: images built byte by byte.

use super::*;

const RAM: u64 = 64 << 20;

fn mem() -> PhysMem {
    PhysMem::new(RAM).unwrap()
}

fn mb_header(flags: u32) -> Vec<u8> {
    let mut h = Vec::new();
    for v in [
        HEADER_MAGIC,
        flags,
        0u32.wrapping_sub(HEADER_MAGIC.wrapping_add(flags)),
    ] {
        h.extend_from_slice(&v.to_le_bytes());
    }
    h
}

/// An ELF32 image with one PT_LOAD segment at `paddr`: the multiboot header, then `code`,
/// with `bss` zero bytes after the file part.
fn elf(paddr: u32, code: &[u8], bss: u32) -> Vec<u8> {
    let mut payload = mb_header(0);
    payload.extend_from_slice(code);
    let mut f = vec![0u8; 52 + 32];
    f[0..4].copy_from_slice(b"\x7fELF");
    f[4] = 1; // 32-bit
    f[5] = 1; // little-endian
    f[6] = 1;
    f[16..18].copy_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    f[18..20].copy_from_slice(&3u16.to_le_bytes()); // EM_386
    f[24..28].copy_from_slice(&(paddr + 12).to_le_bytes()); // entry: just after the header
    f[28..32].copy_from_slice(&52u32.to_le_bytes()); // phoff
    f[42..44].copy_from_slice(&32u16.to_le_bytes()); // phentsize
    f[44..46].copy_from_slice(&1u16.to_le_bytes()); // phnum
    let ph = [
        1u32,
        84,
        paddr,
        paddr,
        payload.len() as u32,
        payload.len() as u32 + bss,
        7,
        4,
    ];
    for (i, v) in ph.iter().enumerate() {
        f[52 + 4 * i..56 + 4 * i].copy_from_slice(&v.to_le_bytes());
    }
    f.extend_from_slice(&payload);
    f
}

fn info_u32(m: &PhysMem, off: u64) -> u32 {
    m.peek_phys(INFO_ADDR + off, 4) as u32
}

fn c_string(m: &PhysMem, addr: u64) -> String {
    let ram = m.ram();
    let s = &ram[addr as usize..];
    String::from_utf8_lossy(&s[..s.iter().position(|&b| b == 0).unwrap()]).into_owned()
}

#[test]
fn an_elf_kernel_is_loaded_and_entered_as_the_protocol_says() {
    let mut m = mem();
    // Dirty the bss range first: the loader must zero it.
    m.ram_mut()[0x40_0000 + 12 + 2..0x40_0000 + 12 + 2 + 64].fill(0xaa);
    let img = elf(0x40_0000, &[0xf4, 0xf4], 64);
    let env = b"A=1\nB=2\n";
    let cpu = load(
        &mut m,
        &img,
        "-smp 1 test",
        &[Module {
            data: env,
            cmdline: "env",
        }],
    )
    .unwrap();
    assert_eq!(cpu.gpr(Gpr::Rax), u64::from(BOOT_MAGIC));
    assert_eq!(cpu.gpr(Gpr::Rbx), INFO_ADDR);
    assert_eq!(cpu.rip, 0x40_000c);
    assert_eq!(cpu.mode, CpuMode::Prot32);
    assert_eq!(m.peek_phys(0x40_000c, 2), 0xf4f4);
    assert!(m.ram()[0x40_000e..0x40_000e + 64].iter().all(|&b| b == 0));
    // the information structure
    let flags = info_u32(&m, 0);
    assert_eq!(
        flags & (INFO_MEM | INFO_CMDLINE | INFO_MODS | INFO_MMAP),
        INFO_MEM | INFO_CMDLINE | INFO_MODS | INFO_MMAP
    );
    assert_eq!(info_u32(&m, 4), 639);
    assert_eq!(u64::from(info_u32(&m, 8)), (RAM - (1 << 20)) / 1024);
    assert_eq!(c_string(&m, u64::from(info_u32(&m, 16))), "-smp 1 test");
    assert_eq!(info_u32(&m, 20), 1);
    let mods = u64::from(info_u32(&m, 24));
    let (start, end) = (m.peek_phys(mods, 4), m.peek_phys(mods + 4, 4));
    assert_eq!(end - start, env.len() as u64);
    assert_eq!(&m.ram()[start as usize..end as usize], env);
    assert_eq!(start % 4096, 0);
    assert_eq!(c_string(&m, m.peek_phys(mods + 8, 4)), "env");
    // the memory map: two RAM entries
    let (len, addr) = (info_u32(&m, 44), u64::from(info_u32(&m, 48)));
    assert_eq!(len, 48);
    assert_eq!(m.peek_phys(addr, 4), 20);
    assert_eq!(m.peek_phys(addr + 4, 8), 0);
    assert_eq!(m.peek_phys(addr + 24 + 4, 8), 1 << 20);
    assert_eq!(m.peek_phys(addr + 24 + 12, 8), RAM - (1 << 20));
    assert_eq!(m.peek_phys(addr + 24 + 20, 4), 1);
}

#[test]
fn an_aout_kludge_image_uses_the_header_addresses() {
    let mut m = mem();
    let flags = FLAG_AOUT_KLUDGE;
    let mut img = mb_header(flags);
    let load_addr = 0x10_0000u32;
    // header_addr, load_addr, load_end_addr (0: whole file), bss_end_addr, entry_addr
    for v in [load_addr, load_addr, 0, load_addr + 0x2000, load_addr + 32] {
        img.extend_from_slice(&v.to_le_bytes());
    }
    img.extend_from_slice(&[0x90; 4]);
    img.push(0xf4);
    m.ram_mut()[0x10_0100..0x10_0200].fill(0x55);
    let cpu = load(&mut m, &img, "", &[]).unwrap();
    assert_eq!(cpu.rip, u64::from(load_addr) + 32);
    assert_eq!(m.peek_phys(0x10_0024, 1), 0xf4);
    assert!(
        m.ram()[0x10_0100..0x10_0200].iter().all(|&b| b == 0),
        "bss is zeroed"
    );
}

#[test]
fn bad_images_get_one_clear_error_each() {
    let mut m = mem();
    assert_eq!(
        load(&mut m, &[0u8; 100], "", &[]).err(),
        Some(MultibootError::NoHeader)
    );
    let mut bad_sum = mb_header(0);
    bad_sum[8] ^= 1;
    assert_eq!(
        load(&mut m, &bad_sum, "", &[]).err(),
        Some(MultibootError::NoHeader)
    );
    assert_eq!(
        load(&mut m, &mb_header(1 << 2), "", &[]).err(),
        Some(MultibootError::UnsupportedFlags(1 << 2))
    );
    assert_eq!(
        load(&mut m, &mb_header(0), "", &[]).err(),
        Some(MultibootError::NotElf)
    );
    let mut truncated = elf(0x40_0000, &[0xf4], 0);
    truncated[28..32].copy_from_slice(&0xffff_fff0u32.to_le_bytes());
    assert!(matches!(
        load(&mut m, &truncated, "", &[]),
        Err(MultibootError::BadElf(_))
    ));
    let too_high = elf(0x7fff_0000, &[0xf4], 0);
    assert!(matches!(
        load(&mut m, &too_high, "", &[]),
        Err(MultibootError::DoesNotFit { .. })
    ));
    let big = vec![0u8; 40 << 20];
    let ok = elf(0x40_0000, &[0xf4], 0);
    assert!(matches!(
        load(
            &mut m,
            &ok,
            "",
            &[Module {
                data: &big,
                cmdline: ""
            }]
        ),
        Err(MultibootError::DoesNotFit {
            what: "a module",
            ..
        })
    ));
}

#[test]
fn random_images_never_panic() {
    let mut x: u64 = 0x1234_5678;
    let mut m = mem();
    for i in 0..2000 {
        let mut img = elf(0x40_0000, &[0xf4; 16], 8);
        for _ in 0..(i % 8) + 1 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let at = (x >> 33) as usize % img.len();
            img[at] = (x >> 13) as u8;
        }
        let _ = load(&mut m, &img, "x", &[]);
    }
}

#[test]
fn a_multiboot_kernel_runs_with_the_magic_and_info_pointer() {
    use crate::{Machine, MachineConfig, RunEnd};
    // cmp eax, 0x2badb002; jne +4; mov al, bh; out 0xf4, al; hlt
    let code = [
        0x3d, 0x02, 0xb0, 0xad, 0x2b, 0x75, 0x04, 0x88, 0xf8, 0xe6, 0xf4, 0xf4,
    ];
    let img = elf(0x40_0000, &code, 0);
    let mut m = Machine::new(&MachineConfig {
        ram_bytes: 16 << 20,
        ..MachineConfig::default()
    })
    .unwrap();
    m.load_multiboot(&img, "", &[]).unwrap();
    assert_eq!(
        m.run(Some(1000)).unwrap(),
        RunEnd::DebugExit((INFO_ADDR >> 8) as u32 & 0xff)
    );
}

/// Finds the RSDP the way ACPI 6.5 section 5.2.5.1 tells an OS to on IA-PC systems: the
/// first KiB of the EBDA (its segment is the word at 0x40E), then 0xE0000..0xFFFFF, on
/// 16-byte boundaries, a signature `RSD PTR ` whose first 20 bytes sum to zero (and all 36
/// for revision 2 and later).
fn scan_for_rsdp(m: &PhysMem) -> Option<u64> {
    let ebda = m.peek_phys(0x40e, 2) << 4;
    let windows = [(ebda, ebda + 1024), (0xe_0000, 0x10_0000)];
    let sums_to_zero = |at: u64, len: u64| {
        (0..len)
            .map(|i| m.peek_phys(at + i, 1) as u8)
            .fold(0u8, u8::wrapping_add)
            == 0
    };
    windows
        .into_iter()
        .filter(|&(start, _)| start != 0)
        .flat_map(|(start, end)| (start..end).step_by(16))
        .find(|&at| {
            m.peek_phys(at, 8) == u64::from_le_bytes(*b"RSD PTR ")
                && sums_to_zero(at, 20)
                && (m.peek_phys(at + 15, 1) < 2 || sums_to_zero(at, 36))
        })
}

/// The table the RSDT at `rsdt` lists with signature `sig`, checksum verified.
fn find_table(m: &PhysMem, rsdt: u64, sig: &[u8; 4]) -> Option<u64> {
    let sum = |at: u64| {
        let len = m.peek_phys(at + 4, 4);
        (0..len)
            .map(|i| m.peek_phys(at + i, 1) as u8)
            .fold(0u8, u8::wrapping_add)
    };
    assert_eq!(sum(rsdt), 0, "RSDT checksum");
    let entries = (m.peek_phys(rsdt + 4, 4) - 36) / 4;
    (0..entries)
        .map(|i| m.peek_phys(rsdt + 36 + 4 * i, 4))
        .find(|&t| m.peek_phys(t, 4) == u64::from(u32::from_le_bytes(*sig)))
        .inspect(|&t| assert_eq!(sum(t), 0, "{} checksum", String::from_utf8_lossy(sig)))
}

#[test]
fn a_multiboot_boot_finds_the_acpi_tables_by_the_spec_scan() {
    use crane86_devices::acpi_pm::ACPI_PM_BASE;
    let mut m = mem();
    load(&mut m, &elf(0x40_0000, &[0xf4], 0), "", &[]).unwrap();
    let rsdp = scan_for_rsdp(&m).expect("an RSDP in the BIOS area");
    let rsdt = m.peek_phys(rsdp + 16, 4);
    let fadt = find_table(&m, rsdt, b"FACP").expect("a FADT");
    // PM1a_CNT_BLK (FADT offset 64) is the board's ACPI PM block's control register.
    assert_eq!(m.peek_phys(fadt + 64, 4), u64::from(ACPI_PM_BASE) + 4);
    assert_eq!(m.peek_phys(fadt + 89, 1), 2, "PM1_CNT_LEN");
    // The DSDT (FADT offset 40) holds \_S5.
    let dsdt = m.peek_phys(fadt + 40, 4);
    let len = m.peek_phys(dsdt + 4, 4) as usize;
    let body = &m.ram()[dsdt as usize..dsdt as usize + len];
    assert!(body.windows(4).any(|w| w == b"_S5_"));
    assert!(find_table(&m, rsdt, b"APIC").is_some(), "a MADT");
    // And the MP floating pointer where a BIOS leaves it.
    assert_eq!(
        m.peek_phys(0xf_0000, 4),
        u64::from(u32::from_le_bytes(*b"_MP_"))
    );
}

#[test]
fn a_kernel_in_the_bios_area_keeps_it_and_gets_no_tables() {
    let mut m = mem();
    let img = elf(0xe_8000, &[0xf4; 64], 0);
    let cpu = load(&mut m, &img, "", &[]).unwrap();
    assert_eq!(cpu.rip, 0xe_800c);
    assert_eq!(m.peek_phys(0xe_800c, 1), 0xf4);
    assert_eq!(scan_for_rsdp(&m), None);
    // A kernel just below the area is fine and gets them.
    let mut m = mem();
    load(&mut m, &elf(0xd_0000, &[0xf4; 64], 0), "", &[]).unwrap();
    assert!(scan_for_rsdp(&m).is_some());
}
