//! The Intel MultiProcessor Specification 1.4 table, for guests that look for it instead
//! of (or before) ACPI: 32-bit Linux with `acpi=off`, old kernels, small test kernels.
//!
//! The floating pointer structure goes at [`MPTABLE_START`] (0xF0000, inside the BIOS
//! ROM area that Linux scans in 16-byte steps) and the configuration table right after
//! it. The table describes the same machine as the MADT ([`crate::acpi`]): one processor
//! per vCPU (APIC ID = index, vCPU 0 the bootstrap processor), one ISA bus, one I/O APIC
//! at 0xFEC00000, ISA IRQs routed to I/O APIC pins identically except IRQ0 → pin 2 and
//! IRQ2 (the cascade) left out, IRQ9 (the SCI) level-triggered active high, and each local
//! APIC's LINT0 as ExtINT and LINT1 as NMI (virtual wire mode: no IMCR).

use crate::layout::{IOAPIC_ADDR, LAPIC_ADDR, LEGACY_END, MPTABLE_START};
use crate::{checksum, FirmwareError};

/// Size of the MP floating pointer structure.
pub const FLOATING_POINTER_SIZE: usize = 16;
/// Size of the configuration table header.
pub const CONFIG_HEADER_SIZE: usize = 44;
/// The MP specification revision the table follows (1.4).
pub const SPEC_REV: u8 = 4;

/// Entry type: processor (20 bytes).
pub const ENTRY_PROCESSOR: u8 = 0;
/// Entry type: bus (8 bytes).
pub const ENTRY_BUS: u8 = 1;
/// Entry type: I/O APIC (8 bytes).
pub const ENTRY_IOAPIC: u8 = 2;
/// Entry type: I/O interrupt assignment (8 bytes).
pub const ENTRY_IO_INTERRUPT: u8 = 3;
/// Entry type: local interrupt assignment (8 bytes).
pub const ENTRY_LOCAL_INTERRUPT: u8 = 4;

/// Interrupt type: vectored interrupt from the I/O APIC.
pub const INT_TYPE_INT: u8 = 0;
/// Interrupt type: NMI.
pub const INT_TYPE_NMI: u8 = 1;
/// Interrupt type: external (8259) interrupt.
pub const INT_TYPE_EXTINT: u8 = 3;

/// Processor flag: usable.
const CPU_ENABLED: u8 = 1 << 0;
/// Processor flag: the bootstrap processor.
const CPU_BOOTSTRAP: u8 = 1 << 1;
/// Local APIC version reported for each processor: an integrated xAPIC.
pub const LAPIC_VERSION: u8 = 0x14;
/// I/O APIC version reported (the 82093AA's).
pub const IOAPIC_VERSION: u8 = 0x11;
/// CPU signature (CPUID.1:EAX) reported: family 6. Linux only prints it.
pub const CPU_SIGNATURE: u32 = 0x600;
/// CPU feature flags (CPUID.1:EDX) reported: FPU and APIC.
pub const CPU_FEATURES: u32 = 1 << 0 | 1 << 9;
/// The ISA bus's ID.
pub const ISA_BUS_ID: u8 = 0;
/// Interrupt flags: conforming to the bus (ISA: edge, active high).
pub const FLAGS_CONFORMING: u16 = 0;
/// Interrupt flags: level triggered, active high.
pub const FLAGS_LEVEL_HIGH: u16 = 0b1101;

/// The MP tables and where they go: floating pointer then configuration table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MpTable {
    /// Guest physical address of the floating pointer (the config table follows it).
    pub addr: u64,
    /// Floating pointer and configuration table, checksums filled in.
    pub bytes: Vec<u8>,
}

impl MpTable {
    /// Hands the bytes to `write(guest_addr, bytes)`, e.g. a closure calling `PhysMem::load`.
    pub fn write(&self, mut write: impl FnMut(u64, &[u8])) {
        write(self.addr, &self.bytes);
    }
}

/// Builds the MP tables for `num_vcpus` processors and an I/O APIC with ID `ioapic_id`.
///
/// Fails if the vCPU count is 0 or above 255, like [`crate::acpi::build_acpi`].
pub fn build_mptable(num_vcpus: u32, ioapic_id: u8) -> Result<MpTable, FirmwareError> {
    let cpus = match num_vcpus {
        0 => return Err(FirmwareError::NoVcpus),
        n if n > 255 => return Err(FirmwareError::TooManyVcpus(n)),
        n => n as u8,
    };
    let config_addr = MPTABLE_START + FLOATING_POINTER_SIZE as u64;

    // Entries, in the order the spec requires: by type.
    let mut entries: Vec<[u8; 8]> = Vec::new();
    let mut processors = Vec::new();
    for id in 0..cpus {
        let flags = CPU_ENABLED | if id == 0 { CPU_BOOTSTRAP } else { 0 };
        let mut p = [0u8; 20];
        p[..4].copy_from_slice(&[ENTRY_PROCESSOR, id, LAPIC_VERSION, flags]);
        p[4..8].copy_from_slice(&CPU_SIGNATURE.to_le_bytes());
        p[8..12].copy_from_slice(&CPU_FEATURES.to_le_bytes());
        processors.push(p);
    }
    entries.push([ENTRY_BUS, ISA_BUS_ID, b'I', b'S', b'A', b' ', b' ', b' ']);
    let addr = (IOAPIC_ADDR as u32).to_le_bytes();
    entries.push([
        ENTRY_IOAPIC,
        ioapic_id,
        IOAPIC_VERSION,
        1,
        addr[0],
        addr[1],
        addr[2],
        addr[3],
    ]);
    for irq in (0..16u8).filter(|&irq| irq != 2) {
        let pin = if irq == 0 { 2 } else { irq };
        let flags = if irq == crate::acpi::SCI_IRQ {
            FLAGS_LEVEL_HIGH
        } else {
            FLAGS_CONFORMING
        };
        let [f0, f1] = flags.to_le_bytes();
        entries.push([
            ENTRY_IO_INTERRUPT,
            INT_TYPE_INT,
            f0,
            f1,
            ISA_BUS_ID,
            irq,
            ioapic_id,
            pin,
        ]);
    }
    for (kind, lint) in [(INT_TYPE_EXTINT, 0), (INT_TYPE_NMI, 1)] {
        // Source bus and IRQ are unused for these; destination 0xFF: every local APIC.
        entries.push([ENTRY_LOCAL_INTERRUPT, kind, 0, 0, ISA_BUS_ID, 0, 0xFF, lint]);
    }

    let mut config = Vec::new();
    config.extend_from_slice(b"PCMP");
    config.extend_from_slice(&[0, 0]); // base table length, below
    config.push(SPEC_REV);
    config.push(0); // checksum, below
    config.extend_from_slice(b"CRANE86 "); // OEM ID
    config.extend_from_slice(b"CRANE86 PC  "); // product ID
    config.extend_from_slice(&0u32.to_le_bytes()); // OEM table pointer
    config.extend_from_slice(&0u16.to_le_bytes()); // OEM table size
    let count = (processors.len() + entries.len()) as u16;
    config.extend_from_slice(&count.to_le_bytes());
    config.extend_from_slice(&(LAPIC_ADDR as u32).to_le_bytes());
    config.extend_from_slice(&[0, 0, 0, 0]); // extended table length and checksum, reserved
    debug_assert_eq!(config.len(), CONFIG_HEADER_SIZE);
    processors.iter().for_each(|p| config.extend_from_slice(p));
    entries.iter().for_each(|e| config.extend_from_slice(e));
    let len = config.len() as u16;
    config[4..6].copy_from_slice(&len.to_le_bytes());
    config[7] = checksum(&config);

    let mut bytes = Vec::with_capacity(FLOATING_POINTER_SIZE + config.len());
    bytes.extend_from_slice(b"_MP_");
    bytes.extend_from_slice(&(config_addr as u32).to_le_bytes());
    bytes.push(1); // length in paragraphs
    bytes.push(SPEC_REV);
    bytes.push(0); // checksum, below
    bytes.extend_from_slice(&[0; 5]); // features: config table present, virtual wire mode
    bytes[10] = checksum(&bytes);
    bytes.extend_from_slice(&config);

    let need = bytes.len() as u64;
    if MPTABLE_START + need > LEGACY_END {
        return Err(FirmwareError::TablesTooLarge {
            what: "MP table",
            need,
            room: LEGACY_END - MPTABLE_START,
        });
    }
    Ok(MpTable {
        addr: MPTABLE_START,
        bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::byte_sum;
    use crate::layout::SYSTEM_BIOS_START;

    /// Low memory with the MP table written in, and the floating pointer found by scanning
    /// the BIOS area in 16-byte steps as Linux does.
    fn scan(num_vcpus: u32) -> (Vec<u8>, usize) {
        let mut mem = vec![0u8; LEGACY_END as usize];
        build_mptable(num_vcpus, 7).unwrap().write(|addr, bytes| {
            mem[addr as usize..addr as usize + bytes.len()].copy_from_slice(bytes)
        });
        let fp = (SYSTEM_BIOS_START as usize..LEGACY_END as usize)
            .step_by(16)
            .find(|&a| &mem[a..a + 4] == b"_MP_" && byte_sum(&mem[a..a + 16]) == 0)
            .expect("no MP floating pointer");
        (mem, fp)
    }

    #[test]
    fn floating_pointer_leads_to_a_valid_config_table() {
        let (mem, fp) = scan(2);
        assert_eq!(fp as u64, MPTABLE_START);
        assert_eq!((mem[fp + 8], mem[fp + 9], mem[fp + 11]), (1, 4, 0));
        let cfg = u32::from_le_bytes(mem[fp + 4..fp + 8].try_into().unwrap()) as usize;
        assert_eq!(&mem[cfg..cfg + 4], b"PCMP");
        let len = u16::from_le_bytes([mem[cfg + 4], mem[cfg + 5]]) as usize;
        assert_eq!(byte_sum(&mem[cfg..cfg + len]), 0, "config table checksum");
        assert_eq!(
            u32::from_le_bytes(mem[cfg + 36..cfg + 40].try_into().unwrap()),
            0xFEE0_0000
        );
        let count = u16::from_le_bytes([mem[cfg + 34], mem[cfg + 35]]) as usize;
        // 2 processors, 1 bus, 1 I/O APIC, 15 I/O interrupts, 2 local interrupts.
        assert_eq!(count, 2 + 1 + 1 + 15 + 2);
        assert_eq!(len, CONFIG_HEADER_SIZE + 2 * 20 + 19 * 8);
    }

    #[test]
    fn entries_describe_the_machine_in_type_order() {
        let (mem, fp) = scan(3);
        let cfg = u32::from_le_bytes(mem[fp + 4..fp + 8].try_into().unwrap()) as usize;
        let len = u16::from_le_bytes([mem[cfg + 4], mem[cfg + 5]]) as usize;
        let mut at = cfg + CONFIG_HEADER_SIZE;
        let mut entries = Vec::new();
        while at < cfg + len {
            let size = if mem[at] == ENTRY_PROCESSOR { 20 } else { 8 };
            entries.push(&mem[at..at + size]);
            at += size;
        }
        assert_eq!(at, cfg + len);
        assert!(
            entries.windows(2).all(|w| w[0][0] <= w[1][0]),
            "entries sorted by type"
        );

        let cpus: Vec<_> = entries.iter().filter(|e| e[0] == ENTRY_PROCESSOR).collect();
        let ids_flags: Vec<_> = cpus.iter().map(|e| (e[1], e[3])).collect();
        assert_eq!(
            ids_flags,
            [(0, 3), (1, 1), (2, 1)],
            "APIC IDs; vCPU 0 is the BSP"
        );

        let bus: Vec<_> = entries.iter().filter(|e| e[0] == ENTRY_BUS).collect();
        assert_eq!(bus.len(), 1);
        assert_eq!(&bus[0][2..8], b"ISA   ");

        let ioapic = entries.iter().find(|e| e[0] == ENTRY_IOAPIC).unwrap();
        assert_eq!((ioapic[1], ioapic[3]), (7, 1), "ID, enabled");
        assert_eq!(
            u32::from_le_bytes(ioapic[4..8].try_into().unwrap()),
            0xFEC0_0000
        );

        let routes: Vec<_> = entries
            .iter()
            .filter(|e| e[0] == ENTRY_IO_INTERRUPT)
            .map(|e| (e[5], e[7], u16::from_le_bytes([e[2], e[3]])))
            .collect();
        assert_eq!(routes.len(), 15);
        assert!(routes.contains(&(0, 2, FLAGS_CONFORMING)), "IRQ0 -> pin 2");
        assert!(
            routes.contains(&(9, 9, FLAGS_LEVEL_HIGH)),
            "SCI level, active high"
        );
        assert!(
            !routes.iter().any(|r| r.0 == 2),
            "no IRQ2: it is the cascade"
        );

        let lints: Vec<_> = entries
            .iter()
            .filter(|e| e[0] == ENTRY_LOCAL_INTERRUPT)
            .map(|e| (e[1], e[6], e[7]))
            .collect();
        assert_eq!(lints, [(INT_TYPE_EXTINT, 0xFF, 0), (INT_TYPE_NMI, 0xFF, 1)]);
    }

    #[test]
    fn vcpu_limits() {
        assert_eq!(build_mptable(0, 0), Err(FirmwareError::NoVcpus));
        assert_eq!(build_mptable(256, 0), Err(FirmwareError::TooManyVcpus(256)));
        let t = build_mptable(255, 0).unwrap();
        assert!(t.addr + t.bytes.len() as u64 <= LEGACY_END);
    }
}
