//! Tests of the I/O APIC: they drive its registers as a guest would.

use super::*;

/// Records every message.
#[derive(Default)]
struct Recorder(Mutex<Vec<ApicMessage>>);

impl InterruptSink for Recorder {
    fn deliver(&self, msg: ApicMessage) {
        self.0.lock().push(msg);
    }
}

impl Recorder {
    fn take(&self) -> Vec<ApicMessage> {
        std::mem::take(&mut *self.0.lock())
    }
}

fn rig() -> (Arc<Recorder>, IoApic) {
    let sink = Arc::new(Recorder::default());
    let ioapic = IoApic::new(0, sink.clone());
    (sink, ioapic)
}

/// Writes register `index` through IOREGSEL and IOWIN.
fn write_reg(io: &mut IoApic, index: u8, value: u32) {
    io.write(IOREGSEL, 1, u64::from(index));
    io.write(IOWIN, 4, u64::from(value));
}

/// Reads register `index` through IOREGSEL and IOWIN.
fn read_reg(io: &mut IoApic, index: u8) -> u32 {
    io.write(IOREGSEL, 4, u64::from(index));
    io.read(IOWIN, 4) as u32
}

/// Programs entry `pin` with `low` (vector, mode, flags) and destination `dest`.
fn program(io: &mut IoApic, pin: u8, low: u32, dest: u8) {
    write_reg(io, 0x11 + 2 * pin, u32::from(dest) << 24);
    write_reg(io, 0x10 + 2 * pin, low);
}

fn fixed(vector: u8, dest: u8, level_triggered: bool) -> ApicMessage {
    ApicMessage {
        vector,
        delivery_mode: DeliveryMode::Fixed,
        destination: dest,
        logical: false,
        level_triggered,
        level: true,
    }
}

#[test]
fn test_ioapic_register_select_and_window() {
    let (_, mut io) = rig();
    io.write(IOREGSEL, 4, 0x01);
    assert_eq!(io.read(IOREGSEL, 4), 0x01, "IOREGSEL reads back");
    assert_eq!(io.read(IOWIN, 4), 0x0017_0020, "version 0x20, 24 entries");
    write_reg(&mut io, 0x00, 0x0a00_0000 | 0xff);
    assert_eq!(read_reg(&mut io, 0x00), 0x0a00_0000, "ID bits 27-24 only");
    assert_eq!(
        read_reg(&mut io, 0x02),
        0x0a00_0000,
        "arbitration ID follows"
    );
    write_reg(&mut io, 0x01, 0);
    assert_eq!(read_reg(&mut io, 0x01), 0x0017_0020, "version is read only");
    assert_eq!(read_reg(&mut io, 0x40), u32::MAX, "no register 0x40");
    assert_eq!(read_reg(&mut io, 0x10), 0x0001_0000, "entries reset masked");
    assert_eq!(io.read(IOWIN, 1), 0x00, "byte reads of the window");
    assert_eq!(io.read(IOWIN + 2, 1), 0x01);
}

#[test]
fn test_ioapic_redirection_entry_round_trip() {
    let (_, mut io) = rig();
    for pin in [0u8, 9, 23] {
        program(&mut io, pin, 0x0001_a9f5 | u32::from(pin), 0xc3);
        assert_eq!(
            read_reg(&mut io, 0x10 + 2 * pin),
            0x0001_a9f5 | u32::from(pin)
        );
        assert_eq!(read_reg(&mut io, 0x11 + 2 * pin), 0xc300_0000);
        assert_eq!(
            io.redirection(pin),
            Some(0xc300_0000_0001_a9f5 | u64::from(pin))
        );
    }
    // Reserved bits, delivery status and remote IRR ignore writes.
    program(&mut io, 3, 0xfffe_ffff, 0xff);
    assert_eq!(read_reg(&mut io, 0x16), 0x0000_afff);
    write_reg(&mut io, 0x17, 0xffff_ffff);
    assert_eq!(read_reg(&mut io, 0x17), 0xff00_0000);
    assert_eq!(io.redirection(24), None);
}

#[test]
fn test_ioapic_masked_pin_sends_nothing() {
    let (sink, mut io) = rig();
    io.set_irq(4, true);
    io.set_irq(4, false);
    assert!(sink.take().is_empty(), "reset: every pin masked");
    program(&mut io, 4, 0x0001_0034, 0);
    io.set_irq(4, true);
    io.set_irq(4, false);
    assert!(sink.take().is_empty());
    program(&mut io, 4, 0x0000_0034, 0);
    assert!(sink.take().is_empty(), "a masked edge is lost, not held");
}

#[test]
fn test_ioapic_edge_pin_sends_one_message_per_edge() {
    let (sink, mut io) = rig();
    program(&mut io, 1, 0x0000_0831, 0x01); // vector 0x31, logical, edge
    io.set_irq(1, true);
    io.set_irq(1, true);
    let msg = ApicMessage {
        logical: true,
        ..fixed(0x31, 0x01, false)
    };
    assert_eq!(sink.take(), vec![msg], "one message per rising edge");
    io.set_irq(1, false);
    assert!(sink.take().is_empty());
    IoApicLine {
        ioapic: Arc::new(Mutex::new(io)),
        pin: 1,
    }
    .pulse();
    assert_eq!(sink.take(), vec![msg], "through the IrqLine adapter");
}

#[test]
fn test_ioapic_level_pin_holds_remote_irr_until_eoi() {
    let (sink, mut io) = rig();
    program(&mut io, 10, 0x0000_a040, 0); // vector 0x40, level, active low
    io.set_irq(10, true);
    assert_eq!(sink.take(), vec![fixed(0x40, 0, true)]);
    assert_ne!(read_reg(&mut io, 0x24) & (1 << 14), 0, "remote IRR set");
    io.set_irq(10, false);
    io.set_irq(10, true);
    assert!(sink.take().is_empty(), "nothing more until the EOI");
    io.end_of_interrupt(0x41);
    assert!(sink.take().is_empty(), "another vector's EOI");
    io.end_of_interrupt(0x40);
    assert_eq!(
        sink.take(),
        vec![fixed(0x40, 0, true)],
        "still asserted: sent again"
    );
    io.set_irq(10, false);
    io.write(IOEOI, 4, 0x40);
    assert_eq!(
        read_reg(&mut io, 0x24) & (1 << 14),
        0,
        "EOI register clears"
    );
    assert!(sink.take().is_empty(), "deasserted: nothing sent");
}

#[test]
fn test_ioapic_level_pin_delivered_on_unmask() {
    let (sink, mut io) = rig();
    program(&mut io, 5, 0x0001_8050, 0);
    io.set_irq(5, true);
    assert!(sink.take().is_empty());
    program(&mut io, 5, 0x0000_8050, 0);
    assert_eq!(sink.take(), vec![fixed(0x50, 0, true)]);
}

#[test]
fn test_ioapic_delivery_modes() {
    let (sink, mut io) = rig();
    program(&mut io, 2, 0x0000_0400, 0); // NMI
    program(&mut io, 3, 0x0000_0700, 0); // ExtINT
    program(&mut io, 6, 0x0000_0300, 0); // reserved
    for pin in [2, 3, 6] {
        io.set_irq(pin, true);
    }
    let modes: Vec<_> = sink.take().iter().map(|m| m.delivery_mode).collect();
    assert_eq!(modes, vec![DeliveryMode::Nmi, DeliveryMode::ExtInt]);
}

#[test]
fn test_ioapic_snapshot_round_trip() {
    let (_, mut io) = rig();
    program(&mut io, 7, 0x0000_8077, 3);
    io.set_irq(7, true);
    let state = io.state();
    let (_, mut other) = rig();
    other.restore(&state);
    assert_eq!(other.state(), state);
    assert_eq!(read_reg(&mut other, 0x1e), 0x0000_c077);
}

#[test]
fn test_ioapic_random_access_never_panics() {
    let sink = Arc::new(Recorder::default());
    let io = Arc::new(Mutex::new(IoApic::new(1, sink.clone())));
    let mut mmio = IoApicMmio { ioapic: io.clone() };
    let mut x: u64 = 0x1234_5678;
    for _ in 0..200_000 {
        x = crate::testing::lcg(x);
        let r = (x >> 16) as u32;
        let offset = u64::from((r >> 2) % 0x50);
        let size = [1, 2, 4, 8, 3, 0][((r >> 4) % 6) as usize];
        match (r >> 8) % 5 {
            0 => drop(mmio.read(offset, size)),
            1 => mmio.write(offset, size, x >> 24),
            2 => mmio.write(IOREGSEL, 4, u64::from(r >> 24)),
            3 => IoApicLine {
                ioapic: io.clone(),
                pin: ((r >> 12) % 30) as u8,
            }
            .set_level(r & (1 << 20) != 0),
            _ => io.lock().end_of_interrupt((r >> 24) as u8),
        }
        sink.take();
    }
}
