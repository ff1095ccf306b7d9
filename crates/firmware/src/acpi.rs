//! The ACPI tables, built in Rust: RSDP, RSDT, XSDT, FADT, FACS, DSDT, MADT and HPET.
//!
//! **Where they go.** Everything, RSDP included, lives in the 64 KiB at
//! [`RSDP_ADDR`]`..`[`SYSTEM_BIOS_START`] (0xE0000..0xF0000): the RSDP in the first paragraph,
//! where an OS that scans 0xE0000..0xFFFFF (Linux without a boot-params pointer,
//! kvm-unit-tests) finds it at once, and the tables right after it. The whole area is
//! reported as e820 type 3 (ACPI) by [`crate::e820`]. The tables are small (about 700 bytes
//! for one vCPU, under 3 KiB for 255), so they never need RAM above 1 MiB, and keeping them
//! below 1 MiB leaves all RAM above it to the kernel.
//!
//! **Hardware described.** A PIIX4-like ACPI PM block at I/O port [`PM_IO_BASE`] (0x600):
//! PM1a event block at 0x600 (4 bytes), PM1a control at 0x604 (2), the 24-bit PM timer at
//! 0x608 (4); the SCI on IRQ [`SCI_IRQ`] (9); reset by writing 0x06 to port 0xCF9. There
//! is no SMI command port, so the OS takes the machine to be in ACPI mode already (the PM
//! device should read back `SCI_EN` set in PM1a control). The DSDT holds only
//! `Name(_S3, Package(){1, 1, 0, 0})` and `Name(_S5, Package(){0, 0, 0, 0})`: suspend to
//! RAM is `SLP_TYP` = [`S3_SLP_TYP`] (1) and soft-off [`S5_SLP_TYP`] (0) with `SLP_EN`
//! written to PM1a control, as on QEMU's PIIX4. The MADT lists one local APIC per
//! vCPU (APIC ID = processor UID = index), one I/O APIC at 0xFEC00000 with GSI base 0, and
//! QEMU's interrupt source overrides (IRQ0 → GSI2, IRQ9 → GSI9 level/active-high).
//!
//! **Why hand-written.** The `acpi_tables` crate (rust-vmm, 0.2.1 on crates.io) exists and
//! would do, but for seven fixed tables and one AML `Name` it brings more API than it
//! saves code. Writing the bytes here keeps every field visible next to the spec's name
//! for it, adds no dependency, and the AML subset ([`crate::aml`]) comes with a decoder the
//! tests use to read the DSDT back. The tests do not need `iasl`, but the tables were
//! checked by hand once with `iasl -d` (ACPICA 20200925): every field decodes as meant and
//! the DSDT disassembled to `Name (_S5, Package (0x04) { Zero, Zero, Zero, Zero })` (the
//! `_S3` package, added in session 32, is the same encoding with One).

use crate::aml::{encode_name, AmlValue};
use crate::layout::{
    ACPI_TABLES_START, HPET_ADDR, IOAPIC_ADDR, LAPIC_ADDR, RSDP_ADDR, SYSTEM_BIOS_START,
};
use crate::{checksum, FirmwareError};

/// Base I/O port of the ACPI PM register block.
pub const PM_IO_BASE: u16 = 0x600;
/// PM1a event block (status and enable registers): port and length.
pub const PM1A_EVT_BLK: (u16, u8) = (PM_IO_BASE, 4);
/// PM1a control block: port and length.
pub const PM1A_CNT_BLK: (u16, u8) = (PM_IO_BASE + 4, 2);
/// PM timer block (3.579545 MHz, 24 bits): port and length.
pub const PM_TMR_BLK: (u16, u8) = (PM_IO_BASE + 8, 4);
/// The ISA IRQ (and GSI) of the ACPI SCI.
pub const SCI_IRQ: u8 = 9;
/// The `SLP_TYP` value the DSDT's `\_S5` gives for soft-off.
pub const S5_SLP_TYP: u8 = 0;
/// The `SLP_TYP` value the DSDT's `\_S3` gives for suspend to RAM (QEMU's PIIX4 value).
pub const S3_SLP_TYP: u8 = 1;
/// The reset register: I/O port 0xCF9 (PIIX "reset control").
pub const RESET_PORT: u16 = 0xCF9;
/// The value written to [`RESET_PORT`] to reset (full reset + reset CPU).
pub const RESET_VALUE: u8 = 0x06;
/// The CMOS register holding the century, for the FADT's `CENTURY` field.
pub const RTC_CENTURY_REG: u8 = 0x32;
/// OEM ID in every table header and the RSDP.
pub const OEM_ID: [u8; 6] = *b"CRANE8";
/// OEM table ID in every table header.
pub const OEM_TABLE_ID: [u8; 8] = *b"CRANE86 ";
/// Creator ID in every table header.
pub const CREATOR_ID: [u8; 4] = *b"CR86";

/// Size of a system description table header.
pub const HEADER_SIZE: usize = 36;
/// Size of an ACPI 2.0+ RSDP.
pub const RSDP_SIZE: usize = 36;
/// Size of the ACPI 6.0 FADT.
pub const FADT_SIZE: usize = 276;

// FADT `Flags` bits (ACPI 6.0 table 5-35).
/// `WBINVD` works to flush caches.
const FADT_WBINVD: u32 = 1 << 0;
/// C1 is supported on all processors.
const FADT_PROC_C1: u32 = 1 << 2;
/// No fixed-feature power button (it would be a control method device, if any).
const FADT_PWR_BUTTON: u32 = 1 << 4;
/// No fixed-feature sleep button.
const FADT_SLP_BUTTON: u32 = 1 << 5;
/// The RTC alarm can wake from S4.
const FADT_RTC_S4: u32 = 1 << 7;
/// The reset register is supported.
const FADT_RESET_REG_SUP: u32 = 1 << 10;
/// The OS should prefer a platform clock (HPET, PM timer) over the TSC for time keeping.
const FADT_USE_PLATFORM_CLOCK: u32 = 1 << 15;

// FADT `IAPC_BOOT_ARCH` bits.
/// There are legacy ISA devices (UART, PIT, PIC, ...).
const BOOT_ARCH_LEGACY_DEVICES: u16 = 1 << 0;
/// An 8042 keyboard controller is present.
const BOOT_ARCH_8042: u16 = 1 << 1;
/// There is no VGA: do not probe its ports and memory.
const BOOT_ARCH_VGA_NOT_PRESENT: u16 = 1 << 2;

// Generic address structure fields.
const GAS_SYSTEM_MEMORY: u8 = 0;
const GAS_SYSTEM_IO: u8 = 1;
const ACCESS_BYTE: u8 = 1;
const ACCESS_WORD: u8 = 2;
const ACCESS_DWORD: u8 = 3;

// MADT.
/// MADT flag: the machine also has dual 8259 PICs.
const MADT_PCAT_COMPAT: u32 = 1;
/// MADT entry type: processor local APIC.
pub const MADT_LOCAL_APIC: u8 = 0;
/// MADT entry type: I/O APIC.
pub const MADT_IOAPIC: u8 = 1;
/// MADT entry type: interrupt source override.
pub const MADT_INT_SRC_OVERRIDE: u8 = 2;
/// MADT entry type: local APIC NMI.
pub const MADT_LOCAL_APIC_NMI: u8 = 4;
/// MPS INTI flags: active high, edge triggered.
pub const INTI_EDGE_HIGH: u16 = 0b0101;
/// MPS INTI flags: active high, level triggered.
pub const INTI_LEVEL_HIGH: u16 = 0b1101;

/// HPET event timer block ID: vendor 0x8086 (bits 31:16), legacy replacement capable
/// (bit 15), 64-bit counter (bit 13), 3 comparators (bits 12:8 hold 3 - 1), revision 1.
pub const HPET_EVENT_TIMER_BLOCK_ID: u32 = 0x8086 << 16 | 1 << 15 | 1 << 13 | (3 - 1) << 8 | 1;
/// The HPET's minimum clock tick in periodic mode, in counter ticks.
pub const HPET_MIN_TICK: u16 = 0x80;

/// What the ACPI tables describe that varies between machines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcpiConfig {
    /// Number of vCPUs, 1 to 255; each gets a local APIC entry with APIC ID = its index.
    pub num_vcpus: u32,
    /// The I/O APIC's ID (QEMU uses 0 too).
    pub ioapic_id: u8,
    /// Whether there is a VGA adapter; without one the FADT says "VGA not present".
    pub vga_present: bool,
}

impl Default for AcpiConfig {
    /// One vCPU, I/O APIC ID 0, no VGA (crane86's console is the serial port).
    fn default() -> AcpiConfig {
        AcpiConfig {
            num_vcpus: 1,
            ioapic_id: 0,
            vga_present: false,
        }
    }
}

/// One table (or the RSDP) and the guest physical address it goes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcpiPart {
    /// The signature: `b"RSD "` for the RSDP (whose real signature is 8 bytes), else the
    /// table's own (`FACP` for the FADT, `APIC` for the MADT).
    pub signature: [u8; 4],
    /// Guest physical address of the first byte.
    pub addr: u64,
    /// The table's bytes, checksums filled in.
    pub bytes: Vec<u8>,
}

/// The built ACPI tables, each with its guest physical address, in address order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcpiImage {
    /// The parts, RSDP first.
    pub parts: Vec<AcpiPart>,
}

impl AcpiImage {
    /// Guest physical address of the RSDP, for `boot_params.acpi_rsdp_addr`.
    pub fn rsdp_addr(&self) -> u64 {
        self.parts[0].addr
    }

    /// The part with signature `signature` (`b"RSD "` for the RSDP), if built.
    pub fn part(&self, signature: &[u8; 4]) -> Option<&AcpiPart> {
        self.parts.iter().find(|p| &p.signature == signature)
    }

    /// The guest physical range `(start, end)` the parts span.
    pub fn range(&self) -> (u64, u64) {
        let last = self
            .parts
            .iter()
            .map(|p| p.addr + p.bytes.len() as u64)
            .max();
        (self.rsdp_addr(), last.unwrap_or(0))
    }

    /// Hands every part to `write(guest_addr, bytes)`, e.g. a closure calling
    /// `PhysMem::load`.
    pub fn write(&self, mut write: impl FnMut(u64, &[u8])) {
        for p in &self.parts {
            write(p.addr, &p.bytes);
        }
    }

    /// Like [`AcpiImage::write`] for a writer that can fail; stops at the first error.
    pub fn try_write<E>(
        &self,
        mut write: impl FnMut(u64, &[u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        self.parts.iter().try_for_each(|p| write(p.addr, &p.bytes))
    }
}

/// Where [`build_acpi`] puts the FACS (its first table, 64-byte aligned): the firmware's
/// own record of it, which a resume from S3 reads the OS's waking vector from.
pub const FACS_ADDR: u64 = ACPI_TABLES_START.next_multiple_of(64);

/// Offsets within the FACS (ACPI 6.5, table 5.14): the 32-bit real-mode waking vector, and
/// the 64-bit one (used instead when non-zero).
pub const FACS_WAKING_VECTOR: u64 = 12;
/// See [`FACS_WAKING_VECTOR`].
pub const FACS_X_WAKING_VECTOR: u64 = 24;

/// Builds the ACPI tables for `config` at the addresses of [`crate::layout`].
///
/// Fails if the vCPU count is 0 or above 255.
pub fn build_acpi(config: &AcpiConfig) -> Result<AcpiImage, FirmwareError> {
    match config.num_vcpus {
        0 => return Err(FirmwareError::NoVcpus),
        n if n > 255 => return Err(FirmwareError::TooManyVcpus(n)),
        _ => {}
    }
    let mut placer = Placer {
        next: ACPI_TABLES_START,
        parts: Vec::new(),
    };
    let facs = placer.place(*b"FACS", facs(), 64);
    debug_assert_eq!(facs, FACS_ADDR);
    let dsdt = placer.place(*b"DSDT", dsdt(), 16);
    let fadt = placer.place(*b"FACP", fadt(config, facs, dsdt), 16);
    let madt = placer.place(*b"APIC", madt(config), 16);
    let hpet = placer.place(*b"HPET", hpet(), 16);
    let listed = [fadt, madt, hpet];
    let rsdt = placer.place(*b"RSDT", rsdt(&listed), 16);
    let xsdt = placer.place(*b"XSDT", xsdt(&listed), 16);
    if placer.next > SYSTEM_BIOS_START {
        return Err(FirmwareError::TablesTooLarge {
            what: "ACPI tables",
            need: placer.next - ACPI_TABLES_START,
            room: SYSTEM_BIOS_START - ACPI_TABLES_START,
        });
    }
    let mut parts = vec![AcpiPart {
        signature: *b"RSD ",
        addr: RSDP_ADDR,
        bytes: rsdp(rsdt, xsdt),
    }];
    parts.extend(placer.parts);
    Ok(AcpiImage { parts })
}

/// Hands out addresses in the table area.
struct Placer {
    next: u64,
    parts: Vec<AcpiPart>,
}

impl Placer {
    fn place(&mut self, signature: [u8; 4], bytes: Vec<u8>, align: u64) -> u64 {
        let addr = self.next.next_multiple_of(align);
        self.next = addr + bytes.len() as u64;
        self.parts.push(AcpiPart {
            signature,
            addr,
            bytes,
        });
        addr
    }
}

/// A system description table: the 36-byte header, then `body`, with length and checksum.
fn sdt(signature: &[u8; 4], revision: u8, body: &[u8]) -> Vec<u8> {
    let mut t = Vec::with_capacity(HEADER_SIZE + body.len());
    t.extend_from_slice(signature);
    t.extend_from_slice(&((HEADER_SIZE + body.len()) as u32).to_le_bytes());
    t.push(revision);
    t.push(0); // checksum, below
    t.extend_from_slice(&OEM_ID);
    t.extend_from_slice(&OEM_TABLE_ID);
    t.extend_from_slice(&1u32.to_le_bytes()); // OEM revision
    t.extend_from_slice(&CREATOR_ID);
    t.extend_from_slice(&1u32.to_le_bytes()); // creator revision
    t.extend_from_slice(body);
    t[9] = checksum(&t);
    t
}

/// A generic address structure.
fn gas(space: u8, bit_width: u8, access_size: u8, address: u64) -> [u8; 12] {
    let mut g = [0; 12];
    g[0] = space;
    g[1] = bit_width;
    g[2] = 0; // bit offset
    g[3] = access_size;
    g[4..].copy_from_slice(&address.to_le_bytes());
    g
}

/// The RSDP, revision 2: `checksum` covers the ACPI 1.0 part (20 bytes), the extended
/// checksum all 36.
fn rsdp(rsdt: u64, xsdt: u64) -> Vec<u8> {
    let mut r = Vec::with_capacity(RSDP_SIZE);
    r.extend_from_slice(b"RSD PTR ");
    r.push(0); // checksum
    r.extend_from_slice(&OEM_ID);
    r.push(2); // revision: ACPI 2.0+
    r.extend_from_slice(&(rsdt as u32).to_le_bytes());
    r.extend_from_slice(&(RSDP_SIZE as u32).to_le_bytes());
    r.extend_from_slice(&xsdt.to_le_bytes());
    r.extend_from_slice(&[0; 4]); // extended checksum, reserved
    r[8] = checksum(&r[..20]);
    r[32] = checksum(&r);
    r
}

/// The RSDT: 32-bit pointers to the tables.
fn rsdt(tables: &[u64]) -> Vec<u8> {
    let body: Vec<u8> = tables
        .iter()
        .flat_map(|&a| (a as u32).to_le_bytes())
        .collect();
    sdt(b"RSDT", 1, &body)
}

/// The XSDT: 64-bit pointers to the tables.
fn xsdt(tables: &[u64]) -> Vec<u8> {
    let body: Vec<u8> = tables.iter().flat_map(|&a| a.to_le_bytes()).collect();
    sdt(b"XSDT", 1, &body)
}

/// The FACS: no checksum; present because a FADT without `HW_REDUCED_ACPI` should have one
/// (it holds the waking vector and the global lock).
fn facs() -> Vec<u8> {
    let mut f = vec![0; 64];
    f[0..4].copy_from_slice(b"FACS");
    f[4..8].copy_from_slice(&64u32.to_le_bytes());
    // Hardware signature, waking vectors, global lock and flags stay 0.
    f[32] = 2; // version
    f
}

/// The DSDT: `Name(_S3, Package(){S3_SLP_TYP, S3_SLP_TYP, 0, 0})` and the same for `_S5`.
fn dsdt() -> Vec<u8> {
    let package = |typ: u8| {
        let typ = AmlValue::Integer(u64::from(typ));
        AmlValue::Package(vec![
            typ.clone(),
            typ,
            AmlValue::Integer(0),
            AmlValue::Integer(0),
        ])
    };
    let mut aml = encode_name("_S3", &package(S3_SLP_TYP));
    aml.extend(encode_name("_S5", &package(S5_SLP_TYP)));
    // Revision 2: AML integers are 64 bits.
    sdt(b"DSDT", 2, &aml)
}

/// The FADT, revision 6.0 (276 bytes).
fn fadt(config: &AcpiConfig, facs: u64, dsdt: u64) -> Vec<u8> {
    let mut b = vec![0u8; FADT_SIZE - HEADER_SIZE];
    // Offsets below are the spec's (from the start of the table); `put` maps them into `b`.
    let mut put = |offset: usize, bytes: &[u8]| {
        b[offset - HEADER_SIZE..offset - HEADER_SIZE + bytes.len()].copy_from_slice(bytes)
    };
    put(36, &(facs as u32).to_le_bytes()); // FIRMWARE_CTRL
    put(40, &(dsdt as u32).to_le_bytes()); // DSDT
    put(45, &[0]); // Preferred_PM_Profile: unspecified
    put(46, &u16::from(SCI_IRQ).to_le_bytes()); // SCI_INT
                                                // SMI_CMD (48), ACPI_ENABLE, ACPI_DISABLE, S4BIOS_REQ, PSTATE_CNT: 0, no SMI.
    put(56, &u32::from(PM1A_EVT_BLK.0).to_le_bytes()); // PM1a_EVT_BLK
    put(64, &u32::from(PM1A_CNT_BLK.0).to_le_bytes()); // PM1a_CNT_BLK
    put(76, &u32::from(PM_TMR_BLK.0).to_le_bytes()); // PM_TMR_BLK
                                                     // PM1b, PM2, GPE0, GPE1 blocks: none.
    put(88, &[PM1A_EVT_BLK.1]); // PM1_EVT_LEN
    put(89, &[PM1A_CNT_BLK.1]); // PM1_CNT_LEN
    put(91, &[PM_TMR_BLK.1]); // PM_TMR_LEN
    put(96, &0x0FFFu16.to_le_bytes()); // P_LVL2_LAT > 100: no C2
    put(98, &0x0FFFu16.to_le_bytes()); // P_LVL3_LAT > 1000: no C3
    put(108, &[RTC_CENTURY_REG]); // CENTURY
    let mut boot_arch = BOOT_ARCH_LEGACY_DEVICES | BOOT_ARCH_8042;
    if !config.vga_present {
        boot_arch |= BOOT_ARCH_VGA_NOT_PRESENT;
    }
    put(109, &boot_arch.to_le_bytes()); // IAPC_BOOT_ARCH (CMOS RTC present: bit 5 clear)
    let flags = FADT_WBINVD
        | FADT_PROC_C1
        | FADT_PWR_BUTTON
        | FADT_SLP_BUTTON
        | FADT_RTC_S4
        | FADT_RESET_REG_SUP
        | FADT_USE_PLATFORM_CLOCK; // TMR_VAL_EXT clear: 24-bit timer; HW_REDUCED_ACPI clear
    put(112, &flags.to_le_bytes());
    put(116, &gas(GAS_SYSTEM_IO, 8, ACCESS_BYTE, RESET_PORT.into())); // RESET_REG
    put(128, &[RESET_VALUE]);
    put(131, &[0]); // FADT minor version: 6.0
    put(132, &facs.to_le_bytes()); // X_FIRMWARE_CTRL
    put(140, &dsdt.to_le_bytes()); // X_DSDT
    let io = |(port, len): (u16, u8), access| gas(GAS_SYSTEM_IO, len * 8, access, port.into());
    put(148, &io(PM1A_EVT_BLK, ACCESS_WORD)); // X_PM1a_EVT_BLK: status and enable words
    put(172, &io(PM1A_CNT_BLK, ACCESS_WORD)); // X_PM1a_CNT_BLK
    put(208, &io(PM_TMR_BLK, ACCESS_DWORD)); // X_PM_TMR_BLK
                                             // X_PM1b_*, X_PM2_CNT, X_GPE*, sleep control/status, hypervisor vendor: 0.
    sdt(b"FACP", 6, &b)
}

/// The MADT, revision 4.
fn madt(config: &AcpiConfig) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&(LAPIC_ADDR as u32).to_le_bytes());
    b.extend_from_slice(&MADT_PCAT_COMPAT.to_le_bytes());
    for cpu in 0..config.num_vcpus as u8 {
        // UID, APIC ID, flags: enabled.
        b.extend_from_slice(&[MADT_LOCAL_APIC, 8, cpu, cpu, 1, 0, 0, 0]);
    }
    b.extend_from_slice(&[MADT_IOAPIC, 12, config.ioapic_id, 0]);
    b.extend_from_slice(&(IOAPIC_ADDR as u32).to_le_bytes());
    b.extend_from_slice(&0u32.to_le_bytes()); // GSI base
    for (irq, gsi, flags) in [
        (0u8, 2u32, INTI_EDGE_HIGH),
        (SCI_IRQ, SCI_IRQ.into(), INTI_LEVEL_HIGH),
    ] {
        b.extend_from_slice(&[MADT_INT_SRC_OVERRIDE, 10, 0, irq]); // bus 0: ISA
        b.extend_from_slice(&gsi.to_le_bytes());
        b.extend_from_slice(&flags.to_le_bytes());
    }
    // LINT1 of every processor (UID 0xFF) is the NMI input, flags conforming.
    b.extend_from_slice(&[MADT_LOCAL_APIC_NMI, 6, 0xFF, 0, 0, 1]);
    sdt(b"APIC", 4, &b)
}

/// The HPET description table.
fn hpet() -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&HPET_EVENT_TIMER_BLOCK_ID.to_le_bytes());
    b.extend_from_slice(&gas(GAS_SYSTEM_MEMORY, 64, 0, HPET_ADDR));
    b.push(0); // HPET number
    b.extend_from_slice(&HPET_MIN_TICK.to_le_bytes());
    b.push(0); // page protection: none
    sdt(b"HPET", 1, &b)
}
