//! PCI bus 0 through configuration mechanism #1 (ports 0xCF8-0xCFF), an i440FX-like host
//! bridge (00:00.0) and a PIIX3-like PCI-to-ISA bridge (00:01.0).
//!
//! CONFIG_ADDRESS (0xCF8) is a 32-bit register and answers dword accesses only: bit 31
//! enables the data window, bits 23-16 are the bus, 15-11 the device, 10-8 the function,
//! 7-2 the dword register. CONFIG_DATA (0xCFC-0xCFF) reaches that dword in the addressed
//! function at any size and byte offset. Other accesses to 0xCF8-0xCFB are not the address
//! register: a byte at 0xCF9 is the reset control register ([`ResetControl`]), anything else
//! floats. With bit 31 clear, or a bus other than 0, or no function there, data reads as
//! all-ones and writes are dropped.
//!
//! A function is anything implementing [`PciFunction`]; [`ConfigSpace`] is a 256-byte
//! space with per-bit write masks that the two bridges (and later devices) build on.
//!
//! Missing: no BARs on either bridge, no PIIX IDE/USB/PM functions, the host bridge's PAM
//! and SMRAM registers are stored but do not remap memory (the machine may read them), and
//! PIRQ routing is stored for the machine to read, not applied.

use std::collections::BTreeMap;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::acpi_pm::{ResetControl, ResetKind};
use crate::PortDevice;

/// The first port of the mechanism #1 window (CONFIG_ADDRESS); CONFIG_DATA is 4 further.
pub const PCI_CONFIG_PORT: u16 = 0xcf8;
/// Ports the window covers (0xCF8-0xCFF).
pub const PCI_CONFIG_PORTS_LEN: u16 = 8;
/// Devices on a bus.
pub const PCI_DEVICES: u8 = 32;
/// Functions of a device.
pub const PCI_FUNCTIONS: u8 = 8;

// CONFIG_ADDRESS.
/// Bit 31: CONFIG_DATA reaches configuration space.
const ADDR_ENABLE: u32 = 1 << 31;
/// The bits that exist: enable, bus, device, function, dword register.
const ADDR_BITS: u32 = 0x80ff_fffc;
/// Offset of CONFIG_DATA within the window.
const DATA: u16 = 4;
/// Offset of the reset control register within the window (byte access only).
const RESET: u16 = 1;

// Type-0 header offsets.
/// Vendor ID, 16 bits.
pub const VENDOR_ID: u8 = 0x00;
/// Device ID, 16 bits.
pub const DEVICE_ID: u8 = 0x02;
/// Command, 16 bits.
pub const COMMAND: u8 = 0x04;
/// Status, 16 bits.
pub const STATUS: u8 = 0x06;
/// Revision ID, then the 24-bit class code (programming interface, subclass, class).
pub const REVISION_ID: u8 = 0x08;
/// Cache line size.
const CACHE_LINE: u8 = 0x0c;
/// Latency timer.
const LATENCY_TIMER: u8 = 0x0d;
/// Header type (bit 7: multi-function).
pub const HEADER_TYPE: u8 = 0x0e;
/// Subsystem vendor ID, 16 bits.
pub const SUBSYSTEM_VENDOR_ID: u8 = 0x2c;
/// Subsystem ID, 16 bits.
pub const SUBSYSTEM_ID: u8 = 0x2e;
/// Interrupt line (written by firmware, read by drivers).
pub const INTERRUPT_LINE: u8 = 0x3c;
/// Header type bit 7: the device has functions besides 0.
pub const HEADER_MULTI_FUNCTION: u8 = 0x80;

// Command register.
/// Bit 0: I/O space decoding.
const CMD_IO: u16 = 1 << 0;
/// Bit 1: memory space decoding.
const CMD_MEMORY: u16 = 1 << 1;
/// Bit 2: bus master.
const CMD_MASTER: u16 = 1 << 2;
/// Bit 6: parity error response.
const CMD_PARITY: u16 = 1 << 6;
/// Bit 8: SERR# enable.
const CMD_SERR: u16 = 1 << 8;
/// Bit 10: INTx disable.
const CMD_INTX_DISABLE: u16 = 1 << 10;
/// The command bits the bridges let software change.
const CMD_WRITABLE: u16 =
    CMD_IO | CMD_MEMORY | CMD_MASTER | CMD_PARITY | CMD_SERR | CMD_INTX_DISABLE;

// Status register.
/// Bit 7: fast back-to-back capable (read only).
const STS_FAST_B2B: u16 = 1 << 7;
/// Bits 10-9 = 01: medium DEVSEL# timing (read only).
const STS_DEVSEL_MEDIUM: u16 = 1 << 9;
/// Bits 8 and 11-15: error bits, write 1 to clear.
const STS_W1C: u16 = 0xf900;

/// QEMU's subsystem vendor (Red Hat, Inc.), which Linux and lspci show for its bridges.
pub const SUBSYSTEM_VENDOR_QEMU: u16 = 0x1af4;
/// QEMU's subsystem ID ("QEMU virtual machine").
pub const SUBSYSTEM_QEMU: u16 = 0x1100;
/// Intel's vendor ID.
pub const VENDOR_INTEL: u16 = 0x8086;
/// The i440FX PMC's device ID.
pub const DEVICE_I440FX: u16 = 0x1237;
/// The PIIX3 ISA bridge's device ID.
pub const DEVICE_PIIX3_ISA: u16 = 0x7000;

// i440FX device-specific registers.
/// PAM0-PAM6: the BIOS and option ROM shadow attributes.
const I440FX_PAM: u8 = 0x59;
/// SMRAM control.
const I440FX_SMRAM: u8 = 0x72;
/// SMRAM's default: C_BASE_SEG = 010 (SMRAM at 0xA0000).
const I440FX_SMRAM_DEFAULT: u8 = 0x02;

// PIIX3 device-specific registers.
/// PIRQA-PIRQD route control, one byte each.
pub const PIIX3_PIRQRC: u8 = 0x60;
/// PIRQ route bit 7: routing disabled.
const PIRQ_DISABLE: u8 = 0x80;
/// PIRQ route bits 3-0: the ISA IRQ (bits 6-4 are reserved).
const PIRQ_IRQ: u8 = 0x0f;

/// The ISA IRQ a PIIX PIRQ route control byte selects, if routing is enabled and the IRQ is
/// one the PIIX can route to (3-7, 9-12, 14, 15).
pub fn pirq_irq(route: u8) -> Option<u8> {
    let irq = route & PIRQ_IRQ;
    (route & PIRQ_DISABLE == 0 && matches!(irq, 3..=7 | 9..=12 | 14 | 15)).then_some(irq)
}

/// A PCI function's configuration space, as the bus reaches it.
pub trait PciFunction: Send {
    /// Reads `size` (1, 2 or 4) bytes at `offset` (little-endian, within one dword).
    fn config_read(&mut self, offset: u8, size: u8) -> u32;
    /// Writes `size` (1, 2 or 4) bytes at `offset`.
    fn config_write(&mut self, offset: u8, size: u8, value: u32);
}

/// A 256-byte configuration space with per-bit write and write-1-to-clear masks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigSpace {
    bytes: [u8; 256],
    writable: [u8; 256],
    w1c: [u8; 256],
}

impl ConfigSpace {
    /// A type-0 header with the given identity; everything else 0 and read only except the
    /// command bits I/O, memory, master, parity, SERR# and INTx disable, the status error
    /// bits (write 1 to clear), cache line size, latency timer and interrupt line. `class`
    /// is class << 16 | subclass << 8 | programming interface.
    pub fn type0(id: PciId, class: u32, header_type: u8) -> ConfigSpace {
        let mut c = ConfigSpace {
            bytes: [0; 256],
            writable: [0; 256],
            w1c: [0; 256],
        };
        c.set_u16(VENDOR_ID, id.vendor);
        c.set_u16(DEVICE_ID, id.device);
        c.set_u32(REVISION_ID, class << 8 | u32::from(id.revision));
        c.set_u8(HEADER_TYPE, header_type);
        c.set_u16(SUBSYSTEM_VENDOR_ID, id.subsystem_vendor);
        c.set_u16(SUBSYSTEM_ID, id.subsystem);
        c.set_u16(STATUS, STS_FAST_B2B | STS_DEVSEL_MEDIUM);
        c.set_writable(COMMAND, &CMD_WRITABLE.to_le_bytes());
        c.w1c[usize::from(STATUS)..usize::from(STATUS) + 2].copy_from_slice(&STS_W1C.to_le_bytes());
        c.set_writable(CACHE_LINE, &[0xff]);
        c.set_writable(LATENCY_TIMER, &[0xff]);
        c.set_writable(INTERRUPT_LINE, &[0xff]);
        c
    }

    /// Makes the bits `masks` writable, starting at `offset` (bytes past 0xFF are ignored).
    pub fn set_writable(&mut self, offset: u8, masks: &[u8]) {
        for (i, &m) in masks.iter().enumerate() {
            if let Some(w) = self.writable.get_mut(usize::from(offset) + i) {
                *w = m;
            }
        }
    }

    /// Sets a byte as the device (not the guest) does, ignoring the write masks.
    pub fn set_u8(&mut self, offset: u8, value: u8) {
        self.bytes[usize::from(offset)] = value;
    }

    /// Sets a little-endian word as the device does (bytes past 0xFF are ignored).
    pub fn set_u16(&mut self, offset: u8, value: u16) {
        self.set_bytes(offset, &value.to_le_bytes());
    }

    /// Sets a little-endian dword as the device does (bytes past 0xFF are ignored).
    pub fn set_u32(&mut self, offset: u8, value: u32) {
        self.set_bytes(offset, &value.to_le_bytes());
    }

    fn set_bytes(&mut self, offset: u8, value: &[u8]) {
        for (i, &b) in value.iter().enumerate() {
            if let Some(x) = self.bytes.get_mut(usize::from(offset) + i) {
                *x = b;
            }
        }
    }

    /// The byte at `offset`.
    pub fn u8(&self, offset: u8) -> u8 {
        self.bytes[usize::from(offset)]
    }

    /// Reads `size` bytes at `offset` as the guest does (bytes past 0xFF read 0xFF).
    pub fn read(&self, offset: u8, size: u8) -> u32 {
        (0..usize::from(size.clamp(1, 4))).fold(0, |acc, i| {
            let b = self
                .bytes
                .get(usize::from(offset) + i)
                .copied()
                .unwrap_or(0xff);
            acc | u32::from(b) << (8 * i)
        })
    }

    /// Writes `size` bytes at `offset` as the guest does: only writable bits change, and
    /// write-1-to-clear bits clear where a 1 is written.
    pub fn write(&mut self, offset: u8, size: u8, value: u32) {
        for i in 0..usize::from(size.clamp(1, 4)) {
            let o = usize::from(offset) + i;
            let Some(b) = self.bytes.get_mut(o) else {
                break;
            };
            let v = (value >> (8 * i)) as u8;
            let (w, c) = (self.writable[o], self.w1c[o]);
            *b = (*b & !w | v & w) & !(v & c);
        }
    }
}

impl PciFunction for ConfigSpace {
    fn config_read(&mut self, offset: u8, size: u8) -> u32 {
        self.read(offset, size)
    }

    fn config_write(&mut self, offset: u8, size: u8, value: u32) {
        self.write(offset, size, value)
    }
}

/// The identity fields of a type-0 header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PciId {
    /// Vendor ID.
    pub vendor: u16,
    /// Device ID.
    pub device: u16,
    /// Revision ID.
    pub revision: u8,
    /// Subsystem vendor ID.
    pub subsystem_vendor: u16,
    /// Subsystem ID.
    pub subsystem: u16,
}

/// The i440FX PCI and memory controller as host bridge 00:00.0 (class 06 00 00).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostBridge {
    /// Its configuration space.
    pub config: ConfigSpace,
}

impl HostBridge {
    /// The bridge at reset: memory and bus master decoding on, PAM all 0 (reads and writes
    /// of 0xC0000-0xFFFFF go to the PCI bus, i.e. ROM), SMRAM 0x02.
    pub fn new() -> HostBridge {
        let id = PciId {
            vendor: VENDOR_INTEL,
            device: DEVICE_I440FX,
            revision: 0x02,
            subsystem_vendor: SUBSYSTEM_VENDOR_QEMU,
            subsystem: SUBSYSTEM_QEMU,
        };
        let mut config = ConfigSpace::type0(id, 0x06_00_00, 0);
        config.set_u16(COMMAND, CMD_MEMORY | CMD_MASTER);
        // PMCCFG, DETURBO, DBC, DRT, DRAMC, DRAMT, PAM0-6; DRB0-7, FDHC; MTT, CLT, SMRAM;
        // ERRCMD, ERRSTS, TRC: stored only.
        config.set_writable(0x50, &[0xff; 0x10]);
        config.set_writable(0x60, &[0xff; 9]);
        config.set_writable(0x70, &[0xff; 3]);
        config.set_writable(0x90, &[0xff; 4]);
        config.set_u8(I440FX_SMRAM, I440FX_SMRAM_DEFAULT);
        HostBridge { config }
    }

    /// PAM register `i` (0-6): the shadow attributes of 0xF0000 (PAM0 high nibble) and the
    /// 16 KiB segments from 0xC0000 (PAM1-6); `None` past PAM6.
    pub fn pam(&self, i: usize) -> Option<u8> {
        (i < 7).then(|| self.config.u8(I440FX_PAM + i as u8))
    }

    /// The SMRAM control register.
    pub fn smram(&self) -> u8 {
        self.config.u8(I440FX_SMRAM)
    }
}

impl Default for HostBridge {
    fn default() -> Self {
        HostBridge::new()
    }
}

impl PciFunction for HostBridge {
    fn config_read(&mut self, offset: u8, size: u8) -> u32 {
        self.config.read(offset, size)
    }

    fn config_write(&mut self, offset: u8, size: u8, value: u32) {
        self.config.write(offset, size, value)
    }
}

/// The PIIX3 PCI-to-ISA bridge, function 0 of device 1 (class 06 01 00, multi-function).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IsaBridge {
    /// Its configuration space.
    pub config: ConfigSpace,
}

impl IsaBridge {
    /// The bridge at reset: I/O, memory and bus master on, PIRQ routing disabled (0x80).
    pub fn new() -> IsaBridge {
        let id = PciId {
            vendor: VENDOR_INTEL,
            device: DEVICE_PIIX3_ISA,
            revision: 0x00,
            subsystem_vendor: SUBSYSTEM_VENDOR_QEMU,
            subsystem: SUBSYSTEM_QEMU,
        };
        let mut c = ConfigSpace::type0(id, 0x06_01_00, HEADER_MULTI_FUNCTION);
        c.set_u16(COMMAND, CMD_IO | CMD_MEMORY | CMD_MASTER);
        c.set_u16(STATUS, STS_DEVSEL_MEDIUM);
        // IORT, XBCS (stored only).
        c.set_writable(0x4c, &[0xff; 4]);
        c.set_u8(0x4c, 0x4d);
        c.set_u16(0x4e, 0x0003);
        // PIRQA-D.
        c.set_writable(PIIX3_PIRQRC, &[PIRQ_DISABLE | PIRQ_IRQ; 4]);
        c.set_u32(PIIX3_PIRQRC, u32::from_le_bytes([PIRQ_DISABLE; 4]));
        // TOM, MSTAT; MBIRQ0-1; MBDMA0-1; APICBASE, DLC; the SMI registers: stored only.
        c.set_writable(0x69, &[0xff; 3]);
        c.set_u8(0x69, 0x02);
        c.set_writable(0x70, &[0xff; 2]);
        c.set_u8(0x70, 0x80);
        c.set_writable(0x76, &[0xff; 2]);
        c.set_u16(0x76, 0x0c0c);
        c.set_writable(0x80, &[0xff; 3]);
        c.set_writable(0xa0, &[0xff; 0x10]);
        c.set_u8(0xa8, 0x0f);
        IsaBridge { config: c }
    }

    /// PIRQ `n`'s (0-3 = A-D) route: the ISA IRQ, if enabled.
    pub fn pirq_route(&self, n: u8) -> Option<u8> {
        (n < 4)
            .then(|| self.config.u8(PIIX3_PIRQRC + n))
            .and_then(pirq_irq)
    }
}

impl Default for IsaBridge {
    fn default() -> Self {
        IsaBridge::new()
    }
}

impl PciFunction for IsaBridge {
    fn config_read(&mut self, offset: u8, size: u8) -> u32 {
        self.config.read(offset, size)
    }

    fn config_write(&mut self, offset: u8, size: u8, value: u32) {
        self.config.write(offset, size, value)
    }
}

/// Errors building a PCI bus (a wiring mistake in the machine).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PciError {
    /// A function already sits at that address.
    #[error("PCI 00:{device:02x}.{function} is already taken")]
    Occupied {
        /// Device number.
        device: u8,
        /// Function number.
        function: u8,
    },
    /// Device above 31 or function above 7.
    #[error("PCI 00:{device:02x}.{function} does not exist")]
    BadAddress {
        /// Device number.
        device: u8,
        /// Function number.
        function: u8,
    },
}

/// PCI bus 0: functions by device and function number.
#[derive(Default)]
pub struct PciBus {
    functions: BTreeMap<(u8, u8), Box<dyn PciFunction>>,
}

impl PciBus {
    /// An empty bus.
    pub fn new() -> PciBus {
        PciBus::default()
    }

    /// Bus 0 of an i440FX machine: the host bridge at 00:00.0, the ISA bridge at 00:01.0.
    pub fn i440fx() -> PciBus {
        let mut bus = PciBus::new();
        bus.functions.insert((0, 0), Box::new(HostBridge::new()));
        bus.functions.insert((1, 0), Box::new(IsaBridge::new()));
        bus
    }

    /// Puts `f` at `device`.`function`.
    pub fn insert(
        &mut self,
        device: u8,
        function: u8,
        f: Box<dyn PciFunction>,
    ) -> Result<(), PciError> {
        if device >= PCI_DEVICES || function >= PCI_FUNCTIONS {
            return Err(PciError::BadAddress { device, function });
        }
        if self.functions.contains_key(&(device, function)) {
            return Err(PciError::Occupied { device, function });
        }
        self.functions.insert((device, function), f);
        Ok(())
    }

    /// The function at `device`.`function`, if any.
    pub fn function_mut(
        &mut self,
        device: u8,
        function: u8,
    ) -> Option<&mut (dyn PciFunction + 'static)> {
        self.functions
            .get_mut(&(device, function))
            .map(|f| &mut **f)
    }

    /// Reads `size` bytes at `offset` of `device`.`function`'s space: all-ones if absent.
    pub fn config_read(&mut self, device: u8, function: u8, offset: u8, size: u8) -> u32 {
        match self.function_mut(device, function) {
            Some(f) => f.config_read(offset, size),
            None => u32::MAX >> (32 - 8 * u32::from(size.clamp(1, 4))),
        }
    }

    /// Writes `size` bytes at `offset` of `device`.`function`'s space: dropped if absent.
    pub fn config_write(&mut self, device: u8, function: u8, offset: u8, size: u8, value: u32) {
        if let Some(f) = self.function_mut(device, function) {
            f.config_write(offset, size, value);
        }
    }
}

/// The configuration mechanism #1 window (0xCF8-0xCFF) in front of bus 0, with the reset
/// control register that shares the window's byte 0xCF9.
pub struct PciHost {
    address: u32,
    bus: PciBus,
    reset: ResetControl,
}

impl PciHost {
    /// The window in front of `bus`, CONFIG_ADDRESS 0.
    pub fn new(bus: PciBus) -> PciHost {
        PciHost {
            address: 0,
            bus,
            reset: ResetControl::new(),
        }
    }

    /// The bus behind the window.
    pub fn bus(&mut self) -> &mut PciBus {
        &mut self.bus
    }

    /// CONFIG_ADDRESS.
    pub fn config_address(&self) -> u32 {
        self.address
    }

    /// The reset the guest asked for through port 0xCF9 since the last call.
    pub fn take_reset_request(&mut self) -> Option<ResetKind> {
        self.reset.take_reset_request()
    }

    /// The addressed function and register, if the window is enabled and on bus 0.
    fn target(&self) -> Option<(u8, u8, u8)> {
        let a = self.address;
        (a & ADDR_ENABLE != 0 && (a >> 16) & 0xff == 0).then_some((
            ((a >> 11) & 0x1f) as u8,
            ((a >> 8) & 7) as u8,
            (a & 0xfc) as u8,
        ))
    }
}

impl PortDevice for PciHost {
    fn read(&mut self, offset: u16, size: u8) -> u32 {
        let ones = |s: u8| u32::MAX >> (32 - 8 * u32::from(s.clamp(1, 4)));
        match (offset, size) {
            (0, 4) => self.address,
            (RESET, 1) => u32::from(self.reset.read_byte()),
            (DATA..PCI_CONFIG_PORTS_LEN, _) => {
                let lane = (offset - DATA) as u8;
                let eff = size.clamp(1, 4).min(4 - lane);
                let v = match self.target() {
                    Some((dev, func, reg)) => self.bus.config_read(dev, func, reg + lane, eff),
                    None => ones(eff),
                };
                v | ones(size) & !ones(eff)
            }
            _ => {
                tracing::debug!(offset, size, "PCI window access that is not mechanism #1");
                ones(size)
            }
        }
    }

    fn write(&mut self, offset: u16, size: u8, value: u32) {
        match (offset, size) {
            (0, 4) => self.address = value & ADDR_BITS,
            (RESET, 1) => self.reset.write_byte(value as u8),
            (DATA..PCI_CONFIG_PORTS_LEN, _) => {
                let lane = (offset - DATA) as u8;
                let eff = size.clamp(1, 4).min(4 - lane);
                if let Some((dev, func, reg)) = self.target() {
                    self.bus.config_write(dev, func, reg + lane, eff, value);
                }
            }
            _ => tracing::debug!(offset, size, value, "PCI window write dropped"),
        }
    }
}

/// Ports 0xCF8-0xCFF of a shared [`PciHost`] (the machine keeps the other handle for reset
/// requests and PIRQ routes).
#[derive(Clone)]
pub struct PciHostPorts {
    /// The host.
    pub host: Arc<Mutex<PciHost>>,
}

impl PortDevice for PciHostPorts {
    fn read(&mut self, offset: u16, size: u8) -> u32 {
        self.host.lock().read(offset, size)
    }

    fn write(&mut self, offset: u16, size: u8, value: u32) {
        self.host.lock().write(offset, size, value)
    }
}

#[cfg(test)]
mod tests;
