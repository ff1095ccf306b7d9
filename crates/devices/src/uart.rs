//! COM1: a 16550A UART at ports 0x3F8-0x3FF, interrupt on IRQ 4.
//!
//! The register model is `vm-superio`'s [`Serial`], the one Firecracker and Cloud Hypervisor
//! boot Linux with: it reports a 16550A (FIFO bits in IIR), keeps a 64-byte receive FIFO, and
//! has an always-empty transmitter (LSR THRE and TEMT are always set, every byte written to THR
//! goes straight to the output). This file adapts it to crane86: the [`PortDevice`] width and
//! offset rules, an [`IrqLine`] behind `vm-superio`'s `Trigger`, and a host-side input queue
//! that refills the FIFO as the guest drains it, so that [`Uart::enqueue_input`] never drops a
//! byte.
//!
//! `vm-superio` signals an interrupt as an event (an eventfd in a VMM); here that event is a
//! [`IrqLine::pulse`], which an edge-triggered 8259 input (IRQ 4 on a PC) sees as one request.
//! Known limits of the model, harmless for Linux's 8250 driver: reading IIR clears the pending
//! identification even while received data remains (the driver then finds it through LSR.DR),
//! FCR writes (FIFO reset, trigger level) are ignored, and there is no line-status or
//! modem-status interrupt.

use std::collections::VecDeque;
use std::io::Write;

use vm_superio::serial::NoEvents;
use vm_superio::{Serial, SerialState, Trigger};

use crate::{IrqLine, PortDevice};

/// The UART occupies eight ports from its base.
pub const UART_PORTS: u16 = 8;
/// Receive/transmit data (divisor latch low byte while LCR.DLAB is set).
pub const DATA: u16 = 0;
/// Interrupt enable (divisor latch high byte while LCR.DLAB is set).
pub const IER: u16 = 1;
/// Interrupt identification on read, FIFO control on write.
pub const IIR: u16 = 2;
/// Line control.
pub const LCR: u16 = 3;
/// Modem control.
pub const MCR: u16 = 4;
/// Line status.
pub const LSR: u16 = 5;
/// Modem status.
pub const MSR: u16 = 6;
/// Scratch.
pub const SCR: u16 = 7;

/// IER: interrupt when received data is available.
pub const IER_RDA: u8 = 1 << 0;
/// IER: interrupt when the transmitter holding register is empty.
pub const IER_THRE: u8 = 1 << 1;
/// IIR: no interrupt pending.
pub const IIR_NONE: u8 = 1 << 0;
/// IIR: the transmitter holding register is empty.
pub const IIR_THRE: u8 = 0b010;
/// IIR: received data available.
pub const IIR_RDA: u8 = 0b100;
/// IIR: the FIFOs are enabled (both bits set: a 16550A, not a buggy 16550).
pub const IIR_FIFO: u8 = 0b1100_0000;
/// LCR: divisor latch access.
pub const LCR_DLAB: u8 = 1 << 7;
/// LSR: data ready.
pub const LSR_DR: u8 = 1 << 0;
/// LSR: the transmitter holding register is empty.
pub const LSR_THRE: u8 = 1 << 5;
/// LSR: the transmitter is empty (holding and shift registers).
pub const LSR_TEMT: u8 = 1 << 6;
/// MCR: OUT2, which gates the interrupt line on PCs.
pub const MCR_OUT2: u8 = 1 << 3;
/// MCR: loopback mode.
pub const MCR_LOOP: u8 = 1 << 4;

/// `vm-superio`'s interrupt `Trigger`, made of one of our [`IrqLine`]s.
#[derive(Debug)]
pub struct IrqTrigger<I: IrqLine>(pub I);

impl<I: IrqLine> Trigger for IrqTrigger<I> {
    type E = std::convert::Infallible;

    fn trigger(&self) -> Result<(), Self::E> {
        self.0.pulse();
        Ok(())
    }
}

/// A snapshot of a [`Uart`]: the registers and receive FIFO, plus the host input not yet in
/// the FIFO.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UartState {
    /// The 16550A registers and FIFO, as `vm-superio` saves them.
    pub serial: SerialState,
    /// Input bytes waiting for room in the FIFO.
    pub pending_input: Vec<u8>,
}

/// A 16550A UART whose interrupt is `I` and whose transmitted bytes go to `W`.
pub struct Uart<I: IrqLine, W: Write + Send> {
    serial: Serial<IrqTrigger<I>, NoEvents, W>,
    /// Host input waiting for room in the 64-byte FIFO.
    pending: VecDeque<u8>,
}

impl<I: IrqLine, W: Write + Send> Uart<I, W> {
    /// A UART after reset (8N1 at 9600 baud, no interrupts enabled), writing to `out`.
    pub fn new(irq: I, out: W) -> Self {
        Uart {
            serial: Serial::new(IrqTrigger(irq), out),
            pending: VecDeque::new(),
        }
    }

    /// Rebuilds a UART from a snapshot; `None` if the saved FIFO is longer than a 16550A's.
    pub fn from_state(state: &UartState, irq: I, out: W) -> Option<Self> {
        let serial = Serial::from_state(&state.serial, IrqTrigger(irq), NoEvents, out).ok()?;
        Some(Uart {
            serial,
            pending: state.pending_input.iter().copied().collect(),
        })
    }

    /// Saves the device's state.
    pub fn state(&self) -> UartState {
        UartState {
            serial: self.serial.state(),
            pending_input: self.pending.iter().copied().collect(),
        }
    }

    /// Queues bytes for the guest to receive (the console's keyboard). They enter the FIFO as
    /// it has room, raising the received-data interrupt if the guest enabled it.
    pub fn enqueue_input(&mut self, bytes: &[u8]) {
        self.pending.extend(bytes);
        self.refill();
    }

    /// True when the guest enabled the received-data interrupt (IER bit 0): a driver is
    /// listening for input.
    pub fn receive_interrupt_enabled(&self) -> bool {
        self.serial.state().interrupt_enable & IER_RDA != 0
    }

    /// True when a guest driver listens for input through interrupts: the received-data
    /// interrupt is enabled (IER bit 0) and MCR.OUT2 is set, which on a PC connects the
    /// UART's interrupt output to the interrupt controller. (A driver probing the chip sets
    /// IER alone for a moment; Linux's 8250 driver sets OUT2 only when it opens the port.)
    pub fn interrupt_driven_receive(&self) -> bool {
        let s = self.serial.state();
        s.interrupt_enable & IER_RDA != 0 && s.modem_control & MCR_OUT2 != 0
    }

    /// The output sink.
    pub fn writer(&self) -> &W {
        self.serial.writer()
    }

    /// The output sink, mutably (for example to flush it).
    pub fn writer_mut(&mut self) -> &mut W {
        self.serial.writer_mut()
    }

    /// Moves pending input into the FIFO, as far as it has room.
    fn refill(&mut self) {
        let room = self.serial.fifo_capacity().min(self.pending.len());
        if room == 0 {
            return;
        }
        let chunk: Vec<u8> = self.pending.iter().take(room).copied().collect();
        match self.serial.enqueue_raw_bytes(&chunk) {
            Ok(n) => drop(self.pending.drain(..n)),
            Err(e) => tracing::debug!(?e, "uart: input not queued"),
        }
    }

    fn read_byte(&mut self, offset: u16) -> u8 {
        if offset >= UART_PORTS {
            tracing::debug!(offset, "uart: read past the registers");
            return 0xff;
        }
        let v = self.serial.read(offset as u8);
        if offset == DATA {
            self.refill();
        }
        v
    }

    fn write_byte(&mut self, offset: u16, value: u8) {
        if offset >= UART_PORTS {
            tracing::debug!(offset, value, "uart: write past the registers dropped");
            return;
        }
        if let Err(e) = self.serial.write(offset as u8, value) {
            // Only the output sink can fail; the guest cannot block on it, so the byte is lost.
            tracing::debug!(?e, "uart: output byte lost");
        }
    }
}

impl<I: IrqLine, W: Write + Send> PortDevice for Uart<I, W> {
    /// A wider access is split into byte accesses at consecutive ports, as an ISA bus does.
    fn read(&mut self, offset: u16, size: u8) -> u32 {
        (0..size.clamp(1, 4)).fold(0, |acc, i| {
            let b = self.read_byte(offset.saturating_add(u16::from(i)));
            acc | u32::from(b) << (8 * i)
        })
    }

    fn write(&mut self, offset: u16, size: u8, value: u32) {
        for i in 0..size.clamp(1, 4) {
            let b = (value >> (8 * i)) as u8;
            self.write_byte(offset.saturating_add(u16::from(i)), b);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::testing::Edges;

    fn uart() -> (Uart<Edges, Vec<u8>>, Edges) {
        let irq = Edges::default();
        (Uart::new(irq.clone(), Vec::new()), irq)
    }

    fn rd(u: &mut Uart<Edges, Vec<u8>>, off: u16) -> u8 {
        u.read(off, 1) as u8
    }

    #[test]
    fn test_uart_divisor_latch_and_transmit() {
        let (mut u, irq) = uart();
        // Like Linux's early console: 115200 baud (divisor 1), 8N1.
        u.write(LCR, 1, u32::from(LCR_DLAB | 0x03));
        u.write(DATA, 1, 0x01);
        u.write(IER, 1, 0x00);
        assert_eq!(rd(&mut u, DATA), 0x01);
        assert_eq!(rd(&mut u, IER), 0x00);
        u.write(LCR, 1, 0x03);
        assert_eq!(rd(&mut u, LCR), 0x03);
        for &b in b"hello\n" {
            assert_ne!(rd(&mut u, LSR) & LSR_THRE, 0);
            u.write(DATA, 1, u32::from(b));
        }
        assert_eq!(u.writer().as_slice(), b"hello\n");
        // The divisor latch was written, not the output.
        assert_eq!(irq.count(), 0);
        let lsr = rd(&mut u, LSR);
        assert_eq!(lsr & (LSR_THRE | LSR_TEMT), LSR_THRE | LSR_TEMT);
    }

    #[test]
    fn test_uart_thre_interrupt() {
        let (mut u, irq) = uart();
        u.write(IER, 1, u32::from(IER_THRE));
        // Enabling THRE with an empty transmitter interrupts at once.
        assert_eq!(irq.count(), 1);
        assert_eq!(rd(&mut u, IIR), IIR_FIFO | IIR_THRE);
        assert_eq!(rd(&mut u, IIR), IIR_FIFO | IIR_NONE);
        u.write(DATA, 1, u32::from(b'x'));
        assert_eq!(irq.count(), 2);
        assert_eq!(rd(&mut u, IIR) & 0x0f, IIR_THRE);
        u.write(IER, 1, 0);
        u.write(DATA, 1, u32::from(b'y'));
        assert_eq!(irq.count(), 2);
        assert_eq!(u.writer().as_slice(), b"xy");
    }

    #[test]
    fn test_uart_input_reaches_guest_and_overflow_waits() {
        let (mut u, irq) = uart();
        u.write(IER, 1, u32::from(IER_RDA));
        assert_eq!(rd(&mut u, LSR) & LSR_DR, 0);
        let input: Vec<u8> = (0..100u8).collect();
        u.enqueue_input(&input);
        assert_eq!(irq.count(), 1);
        assert_eq!(rd(&mut u, IIR) & 0x0f, IIR_RDA);
        let mut got = Vec::new();
        while rd(&mut u, LSR) & LSR_DR != 0 {
            got.push(rd(&mut u, DATA));
        }
        // More than a FIFO's worth: the rest entered as the guest drained it.
        assert_eq!(got, input);
        assert!(irq.count() >= 2);
    }

    #[test]
    fn test_uart_interrupt_driven_receive_needs_ier_and_out2() {
        let (mut u, _irq) = uart();
        assert!(!u.interrupt_driven_receive());
        // Linux's probe: MCR without OUT2 (vm-superio resets it with OUT2 set), then IER.
        u.write(MCR, 1, 1);
        u.write(IER, 1, 0x0f);
        assert!(!u.interrupt_driven_receive());
        u.write(MCR, 1, u32::from(MCR_OUT2 | 1));
        assert!(u.interrupt_driven_receive());
        // The divisor latch hides IER without changing it.
        u.write(LCR, 1, u32::from(LCR_DLAB));
        u.write(IER, 1, 0);
        assert!(u.interrupt_driven_receive());
        u.write(LCR, 1, 0);
        u.write(IER, 1, u32::from(IER_THRE));
        assert!(!u.interrupt_driven_receive());
    }

    #[test]
    fn test_uart_receive_interrupt_enabled_follows_ier() {
        let (mut u, _irq) = uart();
        assert!(!u.receive_interrupt_enabled());
        u.write(IER, 1, u32::from(IER_RDA | IER_THRE));
        assert!(u.receive_interrupt_enabled());
        // The divisor latch hides IER without changing it.
        u.write(LCR, 1, u32::from(LCR_DLAB));
        u.write(IER, 1, 0);
        assert!(u.receive_interrupt_enabled());
        u.write(LCR, 1, 0);
        u.write(IER, 1, u32::from(IER_THRE));
        assert!(!u.receive_interrupt_enabled());
    }

    #[test]
    fn test_uart_loopback_and_scratch() {
        let (mut u, _irq) = uart();
        u.write(SCR, 1, 0x5a);
        assert_eq!(rd(&mut u, SCR), 0x5a);
        u.write(MCR, 1, u32::from(MCR_LOOP | 0x0f));
        // In loopback the modem outputs show up as inputs.
        assert_eq!(rd(&mut u, MSR) & 0xf0, 0xf0);
        u.write(DATA, 1, 0x42);
        assert_eq!(rd(&mut u, LSR) & LSR_DR, LSR_DR);
        assert_eq!(rd(&mut u, DATA), 0x42);
        assert!(u.writer().is_empty());
    }

    #[test]
    fn test_uart_state_round_trip() {
        let (mut u, _irq) = uart();
        u.write(LCR, 1, 0x1b);
        u.enqueue_input(&[7; 70]);
        let s = u.state();
        assert_eq!(s.pending_input.len(), 6);
        let mut v = Uart::from_state(&s, Edges::default(), Vec::new()).unwrap();
        assert_eq!(rd(&mut v, LCR), 0x1b);
        assert_eq!(v.state(), s);
    }

    #[test]
    fn test_uart_wide_and_bad_accesses() {
        let (mut u, _irq) = uart();
        u.write(SCR, 1, 0x11);
        // A word read at 6 is MSR then SCR.
        assert_eq!(u.read(MSR, 2) >> 8, 0x11);
        assert_eq!(u.read(8, 1), 0xff);
        assert_eq!(u.read(SCR, 2), 0xff11);
        u.write(0xffff, 4, 0xdead_beef);
    }

    #[test]
    fn test_uart_random_accesses_never_panic() {
        let (mut u, _irq) = uart();
        let mut x: u64 = 0x1234_5678;
        for _ in 0..20_000 {
            x = crate::testing::lcg(x);
            let off = ((x >> 33) % 12) as u16;
            let size = [1, 2, 4, 0, 3, 8][((x >> 45) % 6) as usize];
            let val = (x >> 13) as u32;
            if x & 1 == 0 {
                u.write(off, size, val);
            } else {
                u.read(off, size);
            }
            if x.is_multiple_of(97) {
                u.enqueue_input(&[val as u8; 3]);
            }
        }
    }
}
