//! The firmware tables a BIOS leaves in low memory, placed by every PC boot loader: the ACPI
//! tables (RSDP first, in the 0xE0000..0xFFFFF window an OS scans) and the Intel MP table,
//! both built by `crane86_firmware` for one vCPU. Under QEMU, SeaBIOS leaves the same kinds
//! of tables before any kernel runs, so a kernel finds them whichever loader started it.

use crane86_firmware::acpi::{build_acpi, AcpiConfig};
use crane86_firmware::layout::{LEGACY_END, RSDP_SEARCH_START};
use crane86_firmware::mptable::build_mptable;
use crane86_runtime::PhysMem;

/// The guest physical range the tables may occupy, `[start, end)`: the RSDP search window
/// up to 1 MiB. The ACPI tables sit in its first 64 KiB, the MP table at 0xF0000.
pub const FIRMWARE_AREA: (u64, u64) = (RSDP_SEARCH_START, LEGACY_END);

/// Why the tables could not be placed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FirmwareTablesError {
    /// A table could not be built (too many vCPUs, tables larger than their area).
    #[error("building the firmware tables: {0}")]
    Build(#[from] crane86_firmware::FirmwareError),
    /// Guest RAM does not reach the BIOS area.
    #[error("the firmware tables do not fit in guest RAM: {0}")]
    NoRoom(String),
}

/// Whether `[start, start + len)` overlaps [`FIRMWARE_AREA`]: a loader must not place the
/// tables over a kernel, module or boot information that lives there.
pub fn overlaps_firmware_area(start: u64, len: u64) -> bool {
    len > 0 && start < FIRMWARE_AREA.1 && FIRMWARE_AREA.0 < start.saturating_add(len)
}

/// Writes the ACPI tables (RSDP in the BIOS scan area) and the MP table where a BIOS would
/// leave them.
pub fn place_firmware_tables(mem: &mut PhysMem) -> Result<(), FirmwareTablesError> {
    let acpi = build_acpi(&AcpiConfig::default())?;
    let mp = build_mptable(1, 0)?;
    let mut load = |addr: u64, bytes: &[u8]| {
        mem.load(addr, bytes)
            .map_err(|e| FirmwareTablesError::NoRoom(e.to_string()))
    };
    acpi.try_write(&mut load)?;
    load(mp.addr, &mp.bytes)
}
