//! The glue between devices: shared-device adaptors for the buses, the ISA interrupt line
//! that reaches both interrupt controllers, the MMIO handler guest memory calls, and the
//! serial sink.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

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

/// Where COM1's and debugcon's bytes go: kept for the caller (tests read them; the most
/// recent [`CAPTURE_LIMIT`] bytes) and, when `echo` is set, copied to the host's stdout.
///
/// The guest writes one byte per UART access; a `write` system call for each (the Linux
/// boots print 17 k bytes) woke whatever reads our stdout as often. Echoed bytes wait in a
/// buffer until a newline, [`ECHO_BUFFER`] bytes, [`ECHO_DELAY`] after the first of them
/// (checked between blocks: [`SerialSink::flush_if_due`]), the guest going idle, or the run's
/// end, so a prompt or the echo of what is typed still shows at once.
#[derive(Clone, Default)]
pub struct SerialSink {
    inner: Arc<Mutex<SinkState>>,
    /// Echoed bytes are waiting in `SinkState::pending`: read between blocks without the lock.
    waiting: Arc<AtomicBool>,
}

/// The most output a [`SerialSink`] keeps for [`SerialSink::bytes`]: a guest that prints
/// forever must not grow the host's memory without bound.
pub const CAPTURE_LIMIT: usize = 16 << 20;

/// Echoed bytes held back before a write to stdout.
const ECHO_BUFFER: usize = 4096;

/// The longest an echoed byte waits while the guest keeps running.
const ECHO_DELAY: Duration = Duration::from_millis(10);

#[derive(Default)]
struct SinkState {
    bytes: Vec<u8>,
    echo: bool,
    pending: Vec<u8>,
    /// When the oldest byte of `pending` arrived.
    since: Option<Instant>,
}

impl SinkState {
    fn flush_pending(&mut self) {
        if !self.pending.is_empty() {
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(&self.pending);
            let _ = out.flush();
            self.pending.clear();
        }
        self.since = None;
    }
}

impl SerialSink {
    /// Everything written so far (the last [`CAPTURE_LIMIT`] bytes of it).
    pub fn bytes(&self) -> Vec<u8> {
        self.inner.lock().bytes.clone()
    }

    /// Forgets what was written so far.
    pub fn clear(&self) {
        self.inner.lock().bytes.clear()
    }

    /// Copies output to the host's stdout from now on (or stops).
    pub fn set_echo(&self, echo: bool) {
        let mut s = self.inner.lock();
        s.flush_pending();
        self.waiting.store(false, Ordering::Relaxed);
        s.echo = echo;
    }

    /// Writes the echoed bytes still held back to stdout.
    pub fn flush_pending(&self) {
        if self.waiting.swap(false, Ordering::Relaxed) {
            self.inner.lock().flush_pending();
        }
    }

    /// [`SerialSink::flush_pending`] once the oldest held-back byte has waited
    /// [`ECHO_DELAY`]: for the run loop, between blocks.
    pub fn flush_if_due(&self) {
        if !self.waiting.load(Ordering::Relaxed) {
            return;
        }
        let mut s = self.inner.lock();
        if s.since.is_some_and(|t| t.elapsed() >= ECHO_DELAY) {
            s.flush_pending();
            self.waiting.store(false, Ordering::Relaxed);
        }
    }
}

impl Write for SerialSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut s = self.inner.lock();
        let take = buf.len().min(CAPTURE_LIMIT);
        if s.bytes.len() + take > CAPTURE_LIMIT {
            // Keep at most the newer half: amortised, each byte is moved at most once.
            let keep = (CAPTURE_LIMIT - take).min(CAPTURE_LIMIT / 2);
            let drop = s.bytes.len().saturating_sub(keep);
            s.bytes.drain(..drop);
        }
        s.bytes.extend_from_slice(&buf[buf.len() - take..]);
        if s.echo {
            s.pending.extend_from_slice(buf);
            if s.since.is_none() {
                s.since = Some(Instant::now());
            }
            let due = s.since.is_some_and(|t| t.elapsed() >= ECHO_DELAY);
            if buf.contains(&b'\n') || s.pending.len() >= ECHO_BUFFER || due {
                s.flush_pending();
                self.waiting.store(false, Ordering::Relaxed);
            } else {
                self.waiting.store(true, Ordering::Relaxed);
            }
        }
        Ok(buf.len())
    }

    /// Nothing: the UART flushes after every byte it transmits, which is what the holding
    /// back is for (see the type's documentation for when held-back bytes go out).
    fn flush(&mut self) -> std::io::Result<()> {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A guest that prints without end keeps the host's memory bounded: the capture holds at
    /// most `CAPTURE_LIMIT` bytes, the newest ones, in order.
    #[test]
    fn the_capture_keeps_the_newest_bytes_within_its_limit() {
        let mut sink = SerialSink::default();
        let total = CAPTURE_LIMIT + CAPTURE_LIMIT / 2 + 7;
        for i in 0..total {
            sink.write_all(&[(i % 251) as u8]).unwrap();
        }
        let kept = sink.bytes();
        assert!(kept.len() <= CAPTURE_LIMIT && kept.len() >= CAPTURE_LIMIT / 2);
        let first = total - kept.len();
        assert!(kept
            .iter()
            .enumerate()
            .all(|(k, &b)| b == ((first + k) % 251) as u8));
        sink.write_all(&vec![9; CAPTURE_LIMIT + 1]).unwrap();
        let kept = sink.bytes();
        assert_eq!(kept.len(), CAPTURE_LIMIT);
        assert!(kept.iter().all(|&b| b == 9));
    }

    /// Without echo nothing is held back, and with it `flush_pending` empties the buffer
    /// (what the run loop calls at idle and at the run's end).
    #[test]
    fn echoed_bytes_wait_for_a_newline_or_a_flush() {
        let mut sink = SerialSink::default();
        sink.write_all(b"abc").unwrap();
        assert!(!sink.waiting.load(Ordering::Relaxed));
        sink.set_echo(true);
        sink.write_all(b"# ").unwrap();
        assert!(sink.waiting.load(Ordering::Relaxed));
        assert_eq!(sink.inner.lock().pending, b"# ");
        sink.flush_pending();
        assert!(!sink.waiting.load(Ordering::Relaxed));
        assert!(sink.inner.lock().pending.is_empty());
        sink.write_all(b"x\n").unwrap();
        assert!(sink.inner.lock().pending.is_empty());
        sink.set_echo(false);
        assert_eq!(sink.bytes(), b"abc# x\n");
    }
}
