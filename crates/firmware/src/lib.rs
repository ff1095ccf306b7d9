//! The firmware tables a BIOS-less PC boot needs, built in Rust: the guest physical memory
//! map ([`layout`]), the e820 map the Linux boot loader copies into `boot_params`
//! ([`e820`]), the ACPI tables ([`acpi`], with the small AML encoder and decoder in
//! [`aml`]) and the Intel MP table ([`mptable`]) for guests that predate ACPI.
//!
//! Nothing here touches guest memory directly: builders return bytes together with the
//! guest physical address they belong at, and a writer takes a closure, so the machine can
//! hand them to `PhysMem::load` (or a test to a `Vec<u8>`).
//!
//! ```
//! use crane86_firmware::acpi::{build_acpi, AcpiConfig};
//! use crane86_firmware::e820::{e820_map, E820_RAM};
//! use crane86_firmware::layout::{LEGACY_END, RSDP_ADDR};
//!
//! // Low memory as a byte image; a machine would call `PhysMem::load` instead.
//! let mut low = vec![0u8; LEGACY_END as usize];
//! let image = build_acpi(&AcpiConfig { num_vcpus: 2, ..AcpiConfig::default() }).unwrap();
//! image.write(|addr, bytes| {
//!     low[addr as usize..addr as usize + bytes.len()].copy_from_slice(bytes)
//! });
//! assert_eq!(&low[RSDP_ADDR as usize..][..8], b"RSD PTR ");
//!
//! let map = e820_map(256 << 20).unwrap();
//! assert!(map.iter().any(|e| e.kind == E820_RAM && e.addr == LEGACY_END));
//! assert_eq!(map[0].to_bytes().len(), 20);
//! ```
#![deny(missing_docs)]

pub mod acpi;
pub mod aml;
pub mod e820;
pub mod layout;
pub mod mptable;

/// Why a firmware table could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FirmwareError {
    /// A machine needs at least one vCPU.
    #[error("no vCPUs: a machine needs at least one")]
    NoVcpus,
    /// xAPIC IDs are 8 bits and 0xFF is the broadcast ID, so at most 255 vCPUs fit.
    #[error("{0} vCPUs: xAPIC IDs allow at most 255")]
    TooManyVcpus(u32),
    /// The tables do not fit the area the memory map reserves for them.
    #[error("{what} needs {need:#x} bytes but its area holds {room:#x}")]
    TablesTooLarge {
        /// Which tables.
        what: &'static str,
        /// Bytes the tables need.
        need: u64,
        /// Bytes the area holds.
        room: u64,
    },
    /// The guest RAM does not even reach past the legacy areas below 1 MiB.
    #[error("{0:#x} bytes of RAM: need more than 1 MiB")]
    RamTooSmall(u64),
}

/// The byte that makes `bytes` sum to zero modulo 256 when added to them (the checksum
/// rule of ACPI and MP tables).
pub fn checksum(bytes: &[u8]) -> u8 {
    0u8.wrapping_sub(bytes.iter().fold(0u8, |sum, b| sum.wrapping_add(*b)))
}

/// The sum of `bytes` modulo 256: zero for a table with a correct checksum.
pub fn byte_sum(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0u8, |sum, b| sum.wrapping_add(*b))
}
