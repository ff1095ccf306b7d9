//! The glue between devices: shared-device adaptors for the buses, the ISA interrupt line
//! that reaches both interrupt controllers, the MMIO handler guest memory calls, and the
//! serial sink.

use std::io::Write;
use std::sync::Arc;

use crane86_devices::ioapic::IoApic;
use crane86_devices::lapic::LapicMmio;
use crane86_devices::pic::PicPair;
use crane86_devices::{IrqLine, MmioBus, MmioDevice, PortDevice};
use crane86_runtime::MmioHandler;
use parking_lot::Mutex;

/// A port device the machine also keeps a handle to (to read its state between blocks).
pub(crate) struct Shared<T>(pub(crate) Arc<Mutex<T>>);

impl<T: PortDevice> PortDevice for Shared<T> {
    fn read(&mut self, offset: u16, size: u8) -> u32 {
        self.0.lock().read(offset, size)
    }

    fn write(&mut self, offset: u16, size: u8, value: u32) {
        self.0.lock().write(offset, size, value)
    }
}

/// The I/O APIC input an ISA IRQ reaches: the identity, except IRQ 0 on pin 2 (the
/// interrupt source override every PC firmware reports, and QEMU's wiring).
pub(crate) fn isa_gsi(irq: u8) -> u8 {
    if irq == 0 {
        2
    } else {
        irq
    }
}

/// An ISA interrupt line: on a PC it is wired to an 8259 input and to an I/O APIC pin at
/// once; which of the two the guest listens to is its choice (masks, LINT0, the APIC).
#[derive(Clone)]
pub(crate) struct IsaIrq {
    pub(crate) pic: Arc<Mutex<PicPair>>,
    pub(crate) ioapic: Arc<Mutex<IoApic>>,
    pub(crate) irq: u8,
}

impl IrqLine for IsaIrq {
    fn set_level(&self, high: bool) {
        // Lock order (see the devices crate): the PIC alone, then the I/O APIC (which may
        // lock the local APIC); never both at once.
        self.pic.lock().set_irq(self.irq, high);
        self.ioapic.lock().set_irq(isa_gsi(self.irq), high);
    }
}

/// Guest physical accesses outside RAM: the MMIO bus, where an access nothing claims floats
/// high.
pub(crate) struct PcMmio(pub(crate) MmioBus);

impl MmioHandler for PcMmio {
    fn mmio_read(&mut self, addr: u64, size: u32) -> u64 {
        self.0.read(addr, size as u8)
    }

    fn mmio_write(&mut self, addr: u64, size: u32, value: u64) {
        self.0.write(addr, size as u8, value)
    }
}

/// Where COM1's and debugcon's bytes go: kept for the caller (tests read them) and, when
/// `echo` is set, copied (and flushed) to the host's stdout as they arrive.
#[derive(Clone, Default)]
pub struct SerialSink {
    inner: Arc<Mutex<SinkState>>,
}

#[derive(Default)]
struct SinkState {
    bytes: Vec<u8>,
    echo: bool,
}

impl SerialSink {
    /// Everything written so far.
    pub fn bytes(&self) -> Vec<u8> {
        self.inner.lock().bytes.clone()
    }

    /// Forgets what was written so far.
    pub fn clear(&self) {
        self.inner.lock().bytes.clear()
    }

    /// Copies output to the host's stdout from now on (or stops).
    pub fn set_echo(&self, echo: bool) {
        self.inner.lock().echo = echo;
    }
}

impl Write for SerialSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut s = self.inner.lock();
        s.bytes.extend_from_slice(buf);
        if s.echo {
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(buf);
            // Every write, not only at newlines: an interactive guest's prompt and the
            // echo of what is typed have none.
            let _ = out.flush();
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.inner.lock().echo {
            std::io::stdout().flush()?;
        }
        Ok(())
    }
}

/// IA32_APIC_BASE.EN: the APIC is globally enabled.
const APIC_BASE_ENABLE: u64 = 1 << 11;

/// The local APIC's page as the bus sees it: while IA32_APIC_BASE.EN is clear the APIC does
/// not decode it, so reads float high and writes go nowhere (kvm-unit-tests' apic_disable
/// checks this).
pub(crate) struct ApicPage(pub(crate) LapicMmio);

impl MmioDevice for ApicPage {
    fn read(&mut self, offset: u64, size: u8) -> u64 {
        if self.0.lapic.lock().apic_base() & APIC_BASE_ENABLE == 0 {
            return u64::MAX >> (64 - 8 * u32::from(size.clamp(1, 8)));
        }
        self.0.read(offset, size)
    }

    fn write(&mut self, offset: u64, size: u8, value: u64) {
        if self.0.lapic.lock().apic_base() & APIC_BASE_ENABLE == 0 {
            return;
        }
        self.0.write(offset, size, value)
    }
}
