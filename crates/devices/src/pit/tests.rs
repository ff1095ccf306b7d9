//! Tests of the pit device: they drive its registers as a guest would.

use std::sync::atomic::Ordering;

use super::*;
use crate::testing::EdgeCounter;
use crate::ManualClock;

struct Rig {
    clock: ManualClock,
    irq: Arc<EdgeCounter>,
    pit: Pit,
}

impl Rig {
    fn new() -> Rig {
        let clock = ManualClock::new();
        let irq = Arc::new(EdgeCounter::default());
        let pit = Pit::new(Arc::new(clock.clone()), irq.clone());
        Rig { clock, irq, pit }
    }

    /// Programs `counter` with control word `cw` and a low-then-high count.
    fn program(&mut self, cw: u8, count: u16) {
        self.pit.write_port(CONTROL, cw);
        self.pit.write_port(u16::from(cw >> 6), count as u8);
        self.pit.write_port(u16::from(cw >> 6), (count >> 8) as u8);
    }

    fn at_tick(&mut self, tick: u64) {
        self.clock.set(tick_to_ns(tick));
    }

    fn edges(&self) -> u32 {
        self.irq.edges.load(Ordering::SeqCst)
    }

    /// Latches counter `i` and reads its word.
    fn latch(&mut self, i: u16) -> u16 {
        self.pit.write_port(CONTROL, (i as u8) << 6);
        let lo = self.pit.read_port(i);
        u16::from(lo) | u16::from(self.pit.read_port(i)) << 8
    }

    fn status(&mut self, i: u16) -> u8 {
        self.pit.write_port(CONTROL, 0xe0 | RB_COUNTER0 << i);
        self.pit.read_port(i)
    }
}

#[test]
fn test_pit_mode2_periodic_irq() {
    let mut r = Rig::new();
    assert_eq!(r.pit.next_deadline_ns(), None, "nothing programmed");
    r.program(0x34, 1193); // counter 0, lo/hi, mode 2: ~1 kHz, as Linux's HZ=1000
    assert_eq!(r.pit.next_deadline_ns(), Some(tick_to_ns(1193)));
    assert_eq!(tick_to_ns(1193), 999_848);
    // The machine's loop: run to the deadline, update.
    for period in 1..=10u64 {
        let deadline = r.pit.next_deadline_ns().unwrap();
        assert_eq!(deadline, tick_to_ns(1193 * period));
        r.clock.set(deadline - 1);
        r.pit.update();
        assert_eq!(r.edges(), period as u32 - 1, "not yet");
        r.clock.set(deadline);
        r.pit.update();
        assert_eq!(r.edges(), period as u32);
    }
    // A late update raises one edge for the missed periods and schedules the next.
    r.at_tick(1193 * 15 + 5);
    r.pit.update();
    assert_eq!(r.edges(), 11);
    assert_eq!(r.pit.next_deadline_ns(), Some(tick_to_ns(1193 * 16)));
}

#[test]
fn test_pit_latch_reads_count_at_known_times() {
    let mut r = Rig::new();
    r.program(0x34, 1000);
    r.at_tick(250);
    assert_eq!(r.latch(0), 750);
    r.at_tick(999);
    assert_eq!(r.latch(0), 1);
    r.at_tick(1000);
    assert_eq!(r.latch(0), 1000, "reloaded");
    // A latched count holds while time moves; a second latch is ignored until read.
    r.at_tick(1100);
    r.pit.write_port(CONTROL, 0x00);
    r.at_tick(1200);
    r.pit.write_port(CONTROL, 0x00);
    assert_eq!(r.pit.read_port(0), 900u16 as u8);
    assert_eq!(r.pit.read_port(0), (900u16 >> 8) as u8);
    // Live reads follow time, low byte then high byte.
    assert_eq!(r.pit.read_port(0), 800u16 as u8);
    assert_eq!(r.pit.read_port(0), (800u16 >> 8) as u8);
}

#[test]
fn test_pit_mode0_one_shot() {
    let mut r = Rig::new();
    r.program(0x30, 100);
    assert_eq!(r.status(0) & STATUS_OUT, 0, "OUT low while counting");
    r.at_tick(99);
    r.pit.update();
    assert_eq!(r.edges(), 0);
    r.at_tick(100);
    assert_eq!(r.pit.next_deadline_ns(), Some(tick_to_ns(100)));
    r.pit.update();
    assert_eq!(r.edges(), 1);
    assert_eq!(r.status(0) & STATUS_OUT, STATUS_OUT);
    assert_eq!(r.pit.next_deadline_ns(), None, "one shot");
    r.at_tick(110);
    assert_eq!(r.latch(0), 0xfff6, "the counter wraps and keeps counting");
    // The first byte of a new count stops counting and drops OUT; the second restarts.
    r.pit.write_port(0, 50);
    assert_eq!(r.status(0) & STATUS_OUT, 0);
    r.pit.write_port(0, 0);
    r.at_tick(160);
    r.pit.update();
    assert_eq!(r.edges(), 2);
}

#[test]
fn test_pit_readback_status_format() {
    let mut r = Rig::new();
    r.pit.write_port(CONTROL, 0xb4); // counter 2, lo/hi, mode 2, binary
    assert_eq!(
        r.status(2),
        STATUS_OUT | STATUS_NULL_COUNT | 0x34,
        "null count until a count is loaded"
    );
    r.pit.write_port(2, 0x10);
    r.pit.write_port(2, 0x00);
    r.pit.write_port61(P61_GATE2);
    assert_eq!(r.status(2), STATUS_OUT | 0x34);
    // Count and status together: status first, then the count.
    r.at_tick(3);
    r.pit.write_port(CONTROL, 0xc0 | RB_COUNTER0 << 2);
    assert_eq!(r.pit.read_port(2), STATUS_OUT | 0x34);
    assert_eq!(r.pit.read_port(2), 13);
    assert_eq!(r.pit.read_port(2), 0);
    // Mode 6 reads back as written (an alias of mode 2), BCD bit included.
    r.pit.write_port(CONTROL, 0x1d); // counter 0, lsb, mode 6, BCD
    assert_eq!(r.status(0), STATUS_OUT | STATUS_NULL_COUNT | 0x1d);
}

#[test]
fn test_pit_bcd_and_byte_access() {
    let mut r = Rig::new();
    r.program(0x31, 0x1000); // mode 0, BCD 1000
    r.at_tick(1);
    assert_eq!(r.latch(0), 0x0999);
    r.at_tick(1000);
    r.pit.update();
    assert_eq!(r.edges(), 1);
    r.at_tick(1001);
    assert_eq!(r.latch(0), 0x9999, "BCD wraps at 10000");
    // Low byte only, then high byte only.
    r.pit.write_port(CONTROL, 0x50); // counter 1, lsb, mode 0
    r.pit.write_port(1, 0x80);
    r.at_tick(1011);
    r.pit.write_port(CONTROL, 0x40);
    assert_eq!(r.pit.read_port(1), 0x76);
    r.pit.write_port(CONTROL, 0x60); // counter 1, msb, mode 0
    r.pit.write_port(1, 0x02);
    r.at_tick(1011 + 0x100);
    assert_eq!(r.pit.read_port(1), 0x01);
}

#[test]
fn test_pit_mode3_square_wave_on_port61() {
    let mut r = Rig::new();
    r.program(0xb6, 4); // counter 2, lo/hi, mode 3
    let out2 = |r: &mut Rig| r.pit.read_port61() & P61_OUT2 != 0;
    r.pit.write_port61(P61_GATE2 | P61_SPEAKER);
    r.at_tick(10); // the gate's rising edge restarts the count at tick 0
    r.pit.write_port61(0);
    r.pit.write_port61(P61_GATE2 | P61_SPEAKER);
    let wave: Vec<bool> = (10..18).map(|t| (r.at_tick(t), out2(&mut r)).1).collect();
    assert_eq!(wave, [true, true, false, false, true, true, false, false]);
    assert_eq!(r.pit.read_port61() & P61_WRITABLE, P61_GATE2 | P61_SPEAKER);
    // Gate low: OUT high and the counter holds.
    r.at_tick(18);
    r.pit.write_port61(0);
    r.at_tick(19);
    assert!(out2(&mut r));
    assert!(!r.pit.speaker_on());
}

#[test]
fn test_pit_mode0_gate_pauses_like_tsc_calibration() {
    // Linux's calibration: counter 2 in mode 0, gate via port 0x61, poll bit 5.
    let mut r = Rig::new();
    r.pit.write_port61(0);
    r.program(0xb0, 100);
    r.at_tick(50);
    assert_eq!(r.latch(2), 100, "gate low: not counting");
    r.pit.write_port61(P61_GATE2);
    r.at_tick(90);
    r.pit.write_port61(0);
    r.at_tick(500);
    assert_eq!(r.latch(2), 60);
    assert_eq!(r.pit.read_port61() & P61_OUT2, 0);
    r.pit.write_port61(P61_GATE2);
    r.at_tick(559);
    assert_eq!(r.pit.read_port61() & P61_OUT2, 0);
    r.at_tick(560);
    assert_eq!(r.pit.read_port61() & P61_OUT2, P61_OUT2);
}

#[test]
fn test_pit_mode1_and_mode5_gate_triggered() {
    let mut r = Rig::new();
    r.program(0xb2, 10); // counter 2, mode 1
    r.at_tick(5);
    assert_eq!(
        r.pit.read_port61() & P61_OUT2,
        P61_OUT2,
        "waits for a trigger"
    );
    assert_eq!(r.status(2) & STATUS_NULL_COUNT, STATUS_NULL_COUNT);
    r.pit.write_port61(P61_GATE2);
    r.at_tick(14);
    assert_eq!(r.pit.read_port61() & P61_OUT2, 0, "one shot running");
    r.at_tick(15);
    assert_eq!(r.pit.read_port61() & P61_OUT2, P61_OUT2);
    r.pit.write_port61(0);
    r.pit.write_port61(P61_GATE2); // retrigger
    assert_eq!(r.pit.read_port61() & P61_OUT2, 0);
    // Mode 5: a one-tick low strobe at terminal count after the trigger.
    r.program(0xba, 3);
    r.pit.write_port61(0);
    r.pit.write_port61(P61_GATE2);
    let wave: Vec<bool> = (15..20)
        .map(|t| (r.at_tick(t), r.pit.read_port61() & P61_OUT2 != 0).1)
        .collect();
    assert_eq!(wave, [true, true, true, false, true]);
}

#[test]
fn test_pit_mode4_software_strobe() {
    let mut r = Rig::new();
    r.program(0x38, 5); // counter 0, mode 4
    r.at_tick(5);
    r.pit.update();
    assert_eq!(r.status(0) & STATUS_OUT, 0, "strobe low at terminal count");
    assert_eq!(r.edges(), 0);
    r.at_tick(6);
    r.pit.update();
    assert_eq!(r.edges(), 1, "the edge when OUT returns high");
    r.at_tick(100);
    r.pit.update();
    assert_eq!(r.edges(), 1);
    r.pit.write_port(0, 10); // a new count retriggers
    r.pit.write_port(0, 0);
    r.at_tick(111);
    r.pit.update();
    assert_eq!(r.edges(), 2);
}

#[test]
fn test_pit_mode2_new_count_waits_for_period_end() {
    let mut r = Rig::new();
    r.program(0x34, 100);
    r.at_tick(30);
    r.pit.write_port(0, 50);
    r.pit.write_port(0, 0);
    assert_eq!(r.latch(0), 70, "the current period continues");
    assert_eq!(r.pit.next_deadline_ns(), Some(tick_to_ns(100)));
    r.at_tick(100);
    r.pit.update();
    assert_eq!(r.edges(), 1);
    assert_eq!(r.pit.next_deadline_ns(), Some(tick_to_ns(150)));
    r.at_tick(120);
    assert_eq!(r.latch(0), 30);
    // A new control word stops the counter until a count arrives.
    r.pit.write_port(CONTROL, 0x34);
    assert_eq!(r.pit.next_deadline_ns(), None);
}

#[test]
fn test_pit_refresh_toggle_and_snapshot() {
    let mut r = Rig::new();
    let refresh = |r: &mut Rig| r.pit.read_port61() & P61_REFRESH;
    let first = refresh(&mut r);
    r.clock.advance(REFRESH_PERIOD_NS);
    assert_ne!(refresh(&mut r), first);
    r.clock.advance(REFRESH_PERIOD_NS);
    assert_eq!(refresh(&mut r), first);
    r.program(0x34, 1000);
    r.at_tick(r.pit.counter(0).unwrap().load_tick + 400);
    let saved = r.pit.state();
    let mut other = Rig::new();
    other.clock.set(r.clock.now_ns());
    other.pit.restore(&saved);
    assert_eq!(other.pit.state(), saved);
    assert_eq!(other.latch(0), 600);
    assert_eq!(other.pit.next_deadline_ns(), r.pit.next_deadline_ns());
}

#[test]
fn test_pit_random_access_never_panics() {
    let clock = ManualClock::new();
    let pit = Arc::new(Mutex::new(Pit::new(
        Arc::new(clock.clone()),
        Arc::new(crate::NoIrq),
    )));
    let mut devs: [Box<dyn PortDevice>; 2] = [
        Box::new(PitPorts { pit: pit.clone() }),
        Box::new(Port61 { pit: pit.clone() }),
    ];
    let mut x: u64 = 0xdead_beef;
    for _ in 0..200_000 {
        x = crate::testing::lcg(x);
        let r = (x >> 16) as u32;
        let dev = &mut devs[(r & 1) as usize];
        let offset = ((r >> 1) % 6) as u16;
        let size = [1, 2, 4, 3, 0][((r >> 4) % 5) as usize];
        match (r >> 8) % 4 {
            0 => drop(dev.read(offset, size)),
            1 | 2 => dev.write(offset, size, (x >> 40) as u32),
            _ => {
                clock.advance(u64::from(r >> 12));
                let mut p = pit.lock();
                p.update();
                let _ = p.next_deadline_ns();
            }
        }
    }
}
