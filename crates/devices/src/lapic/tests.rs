//! Tests of the local APIC: they drive its registers as a guest would.

use super::*;
use crate::ManualClock;

/// 2 GHz: two TSC ticks per virtual nanosecond.
const TSC_HZ: u64 = 2_000_000_000;

struct Rig {
    clock: ManualClock,
    apic: LocalApic,
}

impl Rig {
    /// A software-enabled APIC with spurious vector 0xFF.
    fn new() -> Rig {
        let clock = ManualClock::new();
        let mut apic = LocalApic::new(0, Arc::new(clock.clone()), TSC_HZ);
        apic.write_mmio(REG_SVR, 4, 0x1ff);
        Rig { clock, apic }
    }

    fn read(&mut self, offset: u64) -> u32 {
        self.apic.read_mmio(offset, 4) as u32
    }

    fn write(&mut self, offset: u64, value: u32) -> Option<u8> {
        self.apic.write_mmio(offset, 4, u64::from(value))
    }

    /// A fixed self-IPI through the ICR shorthand "self".
    fn self_ipi(&mut self, vector: u8) {
        self.write(REG_ICR_LOW, 0x0004_0000 | u32::from(vector));
    }

    fn irr_has(&mut self, vector: u8) -> bool {
        let word = self.read(REG_IRR + 0x10 * u64::from(vector / 32));
        word & (1 << (vector % 32)) != 0
    }

    /// Takes every interrupt the CPU would take now.
    fn take_all(&mut self) -> Vec<u8> {
        let mut v = Vec::new();
        while self.apic.has_interrupt() {
            v.extend(self.apic.acknowledge());
        }
        v
    }
}

fn fixed(vector: u8, level_triggered: bool) -> ApicMessage {
    ApicMessage {
        vector,
        delivery_mode: DeliveryMode::Fixed,
        destination: 0,
        logical: false,
        level_triggered,
        level: true,
    }
}

#[test]
fn test_lapic_reset_registers() {
    let clock = ManualClock::new();
    let mut apic = LocalApic::new(3, Arc::new(clock), TSC_HZ);
    assert_eq!(apic.read_mmio(REG_ID, 4), 0x0300_0000);
    assert_eq!(apic.read_mmio(REG_VERSION, 4), 0x0005_0014);
    assert_eq!(apic.read_mmio(REG_SVR, 4), 0xff, "software disabled");
    assert_eq!(apic.read_mmio(REG_DFR, 4), 0xffff_ffff, "flat model");
    for lvt in 0..6 {
        assert_eq!(apic.read_mmio(REG_LVT_TIMER + 0x10 * lvt, 4), 0x1_0000);
    }
    assert_eq!(apic.apic_base(), 0xfee0_0900, "BSP, enabled");
    assert_eq!(apic.read_mmio(REG_ID + 4, 4), 0, "beyond the register: 0");
    assert_eq!(apic.read_mmio(REG_ID + 3, 1), 0x03, "byte reads");
}

#[test]
fn test_lapic_software_enable_via_svr() {
    let clock = ManualClock::new();
    let mut apic = LocalApic::new(0, Arc::new(clock), TSC_HZ);
    apic.accept(fixed(0x40, false));
    assert!(!apic.has_interrupt(), "software disabled: dropped");
    assert_eq!(apic.acknowledge(), None);
    apic.write_mmio(REG_LVT_TIMER, 4, 0x30);
    assert_eq!(
        apic.read_mmio(REG_LVT_TIMER, 4),
        0x1_0030,
        "the mask stays while disabled"
    );
    apic.write_mmio(REG_SVR, 4, 0x1ef);
    assert_eq!(apic.read_mmio(REG_SVR, 4), 0x1ef);
    apic.accept(fixed(0x40, false));
    assert!(apic.has_interrupt());
    apic.write_mmio(REG_LVT_TIMER, 4, 0x30);
    assert_eq!(apic.read_mmio(REG_LVT_TIMER, 4), 0x30);
    apic.write_mmio(REG_SVR, 4, 0x0ef);
    assert_eq!(
        apic.read_mmio(REG_LVT_TIMER, 4),
        0x1_0030,
        "disable masks every LVT"
    );
    assert!(!apic.has_interrupt(), "held in the IRR while disabled");
}

#[test]
fn test_lapic_self_ipi_is_delivered() {
    let mut rig = Rig::new();
    rig.self_ipi(0x50);
    assert!(rig.irr_has(0x50));
    assert!(rig.apic.has_interrupt());
    assert_eq!(rig.apic.acknowledge(), Some(0x50));
    assert!(!rig.irr_has(0x50));
    assert_eq!(rig.read(REG_ISR + 0x20) & (1 << 16), 1 << 16, "in service");
    // Physical destination = own ID, no shorthand: also local, not queued.
    rig.write(REG_ICR_HIGH, 0);
    rig.write(REG_ICR_LOW, 0x51);
    assert!(rig.irr_has(0x51));
    assert!(rig.apic.take_ipis().is_empty());
    // All excluding self: only queued for the machine.
    rig.write(REG_ICR_LOW, 0x000c_4500); // INIT, assert
    assert_eq!(rig.apic.take_ipis().len(), 1);
    assert!(!rig.apic.take_init());
    // An illegal vector is an error, not an interrupt.
    rig.self_ipi(0x05);
    assert!(!rig.irr_has(0x05));
    rig.write(REG_ESR, 0);
    assert_eq!(rig.read(REG_ESR), 1 << 5, "send illegal vector");
    rig.write(REG_ESR, 0);
    assert_eq!(rig.read(REG_ESR), 0);
}

#[test]
fn test_lapic_priority_with_tpr_and_ppr() {
    let mut rig = Rig::new();
    rig.write(REG_TPR, 0x50);
    rig.self_ipi(0x55);
    assert!(
        !rig.apic.has_interrupt(),
        "class 5 is not above TPR class 5"
    );
    assert_eq!(rig.read(REG_PPR), 0x50);
    rig.self_ipi(0x61);
    assert_eq!(rig.apic.acknowledge(), Some(0x61));
    assert_eq!(rig.read(REG_PPR), 0x60, "the in-service class");
    rig.apic.set_cr8(2);
    assert_eq!(rig.read(REG_TPR), 0x20);
    assert_eq!(rig.apic.cr8(), 2);
    assert!(!rig.apic.has_interrupt(), "0x55 waits for 0x61's EOI");
    assert_eq!(rig.write(REG_EOI, 0), None, "edge: no broadcast");
    assert_eq!(rig.read(REG_PPR), 0x20);
    assert_eq!(rig.take_all(), vec![0x55]);
}

#[test]
fn test_lapic_eoi_order_with_nesting() {
    let mut rig = Rig::new();
    rig.apic.accept(fixed(0x30, false));
    assert_eq!(rig.apic.acknowledge(), Some(0x30));
    rig.apic.accept(fixed(0x80, true));
    rig.apic.accept(fixed(0x31, false));
    assert_eq!(rig.take_all(), vec![0x80], "0x80 nests, 0x31 waits");
    assert_eq!(rig.write(REG_EOI, 0), Some(0x80), "level: broadcast");
    assert_eq!(rig.take_all(), vec![], "0x30 still in service");
    assert_eq!(rig.write(REG_EOI, 0), None);
    assert_eq!(rig.take_all(), vec![0x31]);
    assert_eq!(rig.write(REG_EOI, 0), None);
    assert_eq!(rig.write(REG_EOI, 0), None, "EOI with nothing in service");
    assert_eq!(rig.apic.regs().isr, [0; 8]);
}

#[test]
fn test_lapic_spurious_vector_when_nothing_pending() {
    let mut rig = Rig::new();
    rig.write(REG_SVR, 0x1df);
    assert_eq!(rig.apic.acknowledge(), Some(0xdf));
    assert_eq!(
        rig.apic.regs().isr,
        [0; 8],
        "no ISR bit for the spurious vector"
    );
    rig.self_ipi(0x40);
    rig.apic.set_cr8(0xf);
    assert_eq!(
        rig.apic.acknowledge(),
        Some(0xdf),
        "masked by the TPR since"
    );
}

#[test]
fn test_lapic_one_shot_timer_fires_once() {
    let mut rig = Rig::new();
    rig.write(REG_TIMER_DIVIDE, 0x1); // divide by 4
    rig.write(REG_LVT_TIMER, 0x40);
    rig.write(REG_TIMER_INITIAL, 1000);
    assert_eq!(rig.apic.next_deadline_ns(), Some(4000));
    rig.clock.advance(2000);
    assert_eq!(rig.read(REG_TIMER_CURRENT), 500);
    rig.clock.advance(1999);
    rig.apic.update();
    assert!(!rig.apic.has_interrupt());
    assert_eq!(rig.read(REG_TIMER_CURRENT), 1);
    rig.clock.advance(1);
    rig.apic.update();
    assert_eq!(rig.take_all(), vec![0x40]);
    assert_eq!(rig.read(REG_TIMER_CURRENT), 0);
    assert_eq!(rig.apic.next_deadline_ns(), None);
    rig.clock.advance(100_000);
    rig.apic.update();
    assert!(!rig.irr_has(0x40), "once");
}

#[test]
fn test_lapic_periodic_timer_fires_repeatedly() {
    let mut rig = Rig::new();
    rig.write(REG_TIMER_DIVIDE, 0xb); // divide by 1
    rig.write(REG_LVT_TIMER, 0x2_0041);
    rig.write(REG_TIMER_INITIAL, 100);
    for period in 1..=3 {
        assert_eq!(rig.apic.next_deadline_ns(), Some(100 * period));
        rig.clock.set(100 * period);
        rig.apic.update();
        assert_eq!(rig.take_all(), vec![0x41]);
        rig.write(REG_EOI, 0);
        assert_eq!(rig.read(REG_TIMER_CURRENT), 100, "reloaded");
    }
    rig.clock.advance(30);
    assert_eq!(rig.read(REG_TIMER_CURRENT), 70);
    rig.clock.advance(1000); // many periods late: one interrupt
    rig.apic.update();
    assert_eq!(rig.take_all(), vec![0x41]);
    assert_eq!(rig.apic.next_deadline_ns(), Some(1400));
}

#[test]
fn test_lapic_tsc_deadline_timer() {
    let mut rig = Rig::new();
    rig.write(REG_LVT_TIMER, 0x4_0042);
    rig.write(REG_TIMER_INITIAL, 100);
    assert_eq!(rig.apic.next_deadline_ns(), None, "initial count ignored");
    rig.apic.set_tsc_deadline(2001); // 1000.5 ns, rounded up
    assert_eq!(rig.apic.tsc_deadline(), 2001);
    assert_eq!(rig.apic.next_deadline_ns(), Some(1001));
    rig.clock.set(1000);
    rig.apic.update();
    assert!(!rig.apic.has_interrupt());
    rig.clock.set(1001);
    rig.apic.update();
    assert_eq!(rig.take_all(), vec![0x42]);
    assert_eq!(rig.apic.tsc_deadline(), 0, "cleared when it fires");
    rig.apic.set_tsc_deadline(4000);
    rig.apic.set_tsc_deadline(0);
    rig.clock.advance(10_000);
    rig.apic.update();
    assert!(!rig.irr_has(0x42), "0 disarms");
    rig.apic.set_tsc_deadline(100); // already past
    rig.apic.update();
    assert!(rig.irr_has(0x42));
    rig.write(REG_LVT_TIMER, 0x0_0042);
    assert_eq!(rig.apic.tsc_deadline(), 0, "leaving the mode disarms");
}

#[test]
fn test_lapic_masked_timer_raises_nothing() {
    let mut rig = Rig::new();
    rig.write(REG_TIMER_DIVIDE, 0xb);
    rig.write(REG_LVT_TIMER, 0x3_0043); // periodic, masked
    rig.write(REG_TIMER_INITIAL, 100);
    assert_eq!(rig.apic.next_deadline_ns(), None);
    rig.clock.advance(250);
    rig.apic.update();
    assert!(!rig.irr_has(0x43));
    assert_eq!(rig.read(REG_TIMER_CURRENT), 50, "but it counts");
    rig.write(REG_LVT_TIMER, 0x2_0043);
    assert_eq!(rig.apic.next_deadline_ns(), Some(300), "no stale expiry");
    assert!(!rig.irr_has(0x43));
}

#[test]
fn test_lapic_current_count_and_divide() {
    let mut rig = Rig::new();
    rig.write(REG_TIMER_DIVIDE, 0xa); // divide by 128
    assert_eq!(rig.read(REG_TIMER_DIVIDE), 0xa);
    rig.write(REG_TIMER_INITIAL, 0xffff_ffff);
    rig.clock.advance(128 * 10);
    assert_eq!(rig.read(REG_TIMER_CURRENT), 0xffff_fff5);
    assert_eq!(rig.read(REG_TIMER_INITIAL), 0xffff_ffff);
    rig.write(REG_TIMER_DIVIDE, 0x0); // divide by 2, from where it stands
    rig.clock.advance(20);
    assert_eq!(rig.read(REG_TIMER_CURRENT), 0xffff_ffeb);
    rig.write(REG_TIMER_INITIAL, 0);
    assert_eq!(rig.read(REG_TIMER_CURRENT), 0, "0 stops the timer");
    assert_eq!(rig.apic.next_deadline_ns(), None);
}

#[test]
fn test_lapic_ioapic_level_interrupt_round_trip() {
    let clock = ManualClock::new();
    let lapic = Arc::new(Mutex::new(LocalApic::new(0, Arc::new(clock), TSC_HZ)));
    let ioapic = Arc::new(Mutex::new(IoApic::new(0, lapic.clone())));
    let mut mmio = LapicMmio {
        lapic: lapic.clone(),
        eoi: ioapic.clone(),
    };
    mmio.write(REG_SVR, 4, 0x1ff);
    {
        let mut io = ioapic.lock();
        io.write_register(0x10 + 2 * 9, 0x0000_8061); // pin 9: vector 0x61, level
        io.set_irq(9, true);
    }
    assert_eq!(lapic.lock().acknowledge(), Some(0x61));
    mmio.write(REG_EOI, 4, 0); // still asserted: the I/O APIC sends again
    assert_eq!(lapic.lock().acknowledge(), Some(0x61));
    ioapic.lock().set_irq(9, false);
    mmio.write(REG_EOI, 4, 0);
    assert!(!lapic.lock().has_interrupt());
    assert_eq!(
        ioapic.lock().redirection(9),
        Some(0x8061),
        "remote IRR clear"
    );
}

#[test]
fn test_lapic_destinations_and_other_modes() {
    let mut rig = Rig::new();
    rig.write(REG_LDR, 0x0200_0000);
    assert!(rig.apic.matches_destination(0x02, true));
    assert!(!rig.apic.matches_destination(0x01, true));
    rig.write(REG_DFR, 0x0000_0000); // cluster
    assert_eq!(rig.read(REG_DFR), 0x0fff_ffff);
    assert!(rig.apic.matches_destination(0x02, true));
    assert!(!rig.apic.matches_destination(0x12, true));
    assert!(rig.apic.matches_destination(0xff, false));
    assert!(!rig.apic.matches_destination(0x01, false));
    rig.apic.accept(ApicMessage {
        delivery_mode: DeliveryMode::Nmi,
        ..fixed(0, false)
    });
    rig.apic.accept(ApicMessage {
        delivery_mode: DeliveryMode::ExtInt,
        ..fixed(0, true)
    });
    assert!(rig.apic.take_nmi());
    assert!(!rig.apic.take_nmi());
    assert!(rig.apic.take_extint());
    assert!(!rig.apic.accepts_pic_interrupts(), "LINT0 masked");
    rig.write(REG_LVT_TIMER + 0x30, 0x700);
    assert!(rig.apic.accepts_pic_interrupts(), "virtual wire");
}

#[test]
fn test_lapic_apic_base_msr() {
    let mut rig = Rig::new();
    rig.write(REG_TPR, 0x30);
    assert!(!rig.apic.set_apic_base(0xfee0_0d00), "x2APIC refused");
    assert!(
        !rig.apic.set_apic_base(0xfee0_0801),
        "reserved bits refused"
    );
    assert!(rig.apic.set_apic_base(0xfee0_0000));
    assert_eq!(rig.apic.apic_base(), 0xfee0_0100, "disabled; BSP kept");
    rig.apic.accept(fixed(0x40, false));
    assert!(!rig.apic.has_interrupt());
    assert!(rig.apic.accepts_pic_interrupts());
    assert!(rig.apic.set_apic_base(0xfee0_0900));
    assert_eq!(rig.read(REG_TPR), 0, "disabling reset the registers");
    assert_eq!(rig.read(REG_SVR), 0xff);
}

#[test]
fn test_lapic_reserved_register_sets_esr() {
    let mut rig = Rig::new();
    rig.write(REG_LVT_ERROR, 0xfe);
    assert_eq!(rig.read(0x2f0), 0);
    assert!(rig.irr_has(0xfe), "the error interrupt");
    rig.write(REG_ESR, 0);
    assert_eq!(rig.read(REG_ESR), 1 << 7);
}

#[test]
fn test_lapic_snapshot_round_trip() {
    let mut rig = Rig::new();
    rig.write(REG_LVT_TIMER, 0x2_0041);
    rig.write(REG_TIMER_INITIAL, 100);
    rig.self_ipi(0x70);
    let state = rig.apic.state();
    let mut other = LocalApic::new(5, Arc::new(rig.clock.clone()), TSC_HZ);
    other.restore(&state);
    assert_eq!(other.state(), state);
    assert_eq!(other.next_deadline_ns(), Some(200), "divide by 2 at reset");
    assert!(other.has_interrupt());
}

#[test]
fn test_lapic_random_access_never_panics() {
    let clock = ManualClock::new();
    let lapic = Arc::new(Mutex::new(LocalApic::new(0, Arc::new(clock.clone()), 3)));
    let ioapic = Arc::new(Mutex::new(IoApic::new(0, lapic.clone())));
    let mut mmio = LapicMmio {
        lapic: lapic.clone(),
        eoi: ioapic.clone(),
    };
    let mut x: u64 = 0x1234_5678;
    for _ in 0..200_000 {
        x = crate::testing::lcg(x);
        let r = (x >> 16) as u32;
        // Mostly registers, sometimes anywhere in (or beyond) the page.
        let offset = if r & 1 == 0 {
            u64::from((r >> 2) % 0x40) * 0x10
        } else {
            u64::from(r >> 2) % 0x1100
        };
        let size = [1, 2, 4, 8, 3, 0][((r >> 4) % 6) as usize];
        match (r >> 8) % 8 {
            0 | 1 => drop(mmio.read(offset, size)),
            2 | 3 => mmio.write(offset, size, x >> 24),
            4 => clock.advance(u64::from(r >> 20)),
            5 => {
                let mut l = lapic.lock();
                l.update();
                let _ = l.next_deadline_ns();
                if l.has_interrupt() {
                    l.acknowledge();
                }
            }
            6 => {
                let mut l = lapic.lock();
                match r >> 29 {
                    0 => l.set_tsc_deadline(x),
                    1 => {
                        l.set_apic_base(x & 0xffff_ffff_ffff);
                    }
                    2 => l.set_cr8(x),
                    _ => l.accept(ApicMessage {
                        delivery_mode: DeliveryMode::from_bits((r >> 13) as u8)
                            .unwrap_or(DeliveryMode::Fixed),
                        ..fixed((x >> 50) as u8, r & (1 << 18) != 0)
                    }),
                }
                drop(l.take_ipis());
            }
            _ => {
                let mut io = ioapic.lock();
                io.write_register(0x10 + ((r >> 12) % 48) as u8, (x >> 20) as u32);
                io.set_irq(((r >> 18) % 24) as u8, r & (1 << 30) != 0);
            }
        }
    }
}
