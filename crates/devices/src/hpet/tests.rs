//! Tests of the HPET: they drive its registers as a guest would.

use std::sync::atomic::Ordering;

use super::*;
use crate::testing::EdgeCounter;
use crate::ManualClock;

struct Rig {
    clock: ManualClock,
    lines: Vec<Arc<EdgeCounter>>,
    hpet: Hpet,
}

impl Rig {
    fn new() -> Rig {
        let clock = ManualClock::new();
        let lines: Vec<Arc<EdgeCounter>> = (0..HPET_GSIS).map(|_| Arc::default()).collect();
        let dyn_lines = lines
            .iter()
            .map(|l| l.clone() as Arc<dyn IrqLine>)
            .collect();
        let hpet = Hpet::new(Arc::new(clock.clone()), dyn_lines);
        Rig { clock, lines, hpet }
    }

    fn rd(&mut self, off: u64) -> u64 {
        self.hpet.read(off, 8)
    }

    fn rd32(&mut self, off: u64) -> u64 {
        self.hpet.read(off, 4)
    }

    fn wr(&mut self, off: u64, v: u64) {
        self.hpet.write(off, 8, v)
    }

    fn wr32(&mut self, off: u64, v: u64) {
        self.hpet.write(off, 4, v)
    }

    fn edges(&self, gsi: usize) -> u32 {
        self.lines[gsi].edges.load(Ordering::SeqCst)
    }

    fn high(&self, gsi: usize) -> bool {
        self.lines[gsi].high.load(Ordering::SeqCst)
    }

    /// Runs the machine's loop until the clock reaches `ns`.
    fn run_to(&mut self, ns: u64) {
        while let Some(d) = self.hpet.next_deadline_ns().filter(|&d| d <= ns) {
            self.clock.set(d);
            self.hpet.update();
        }
        self.clock.set(ns);
        self.hpet.update();
    }
}

fn tconf(i: u64) -> u64 {
    REG_TIMER0 + TIMER_STRIDE * i + TN_CONFIG
}

fn tcmp(i: u64) -> u64 {
    REG_TIMER0 + TIMER_STRIDE * i + TN_COMPARATOR
}

#[test]
fn test_hpet_capabilities() {
    let mut r = Rig::new();
    let cap = r.rd(REG_CAP);
    assert_eq!(cap & 0xff, 1, "revision");
    assert_eq!((cap >> 8) & 0x1f, 2, "three timers");
    assert_ne!(cap & (1 << 13), 0, "64-bit counter");
    assert_ne!(cap & (1 << 15), 0, "legacy replacement capable");
    assert_eq!((cap >> 16) & 0xffff, 0x8086);
    assert_eq!(cap >> 32, 100_000_000, "10 MHz");
    // Linux reads it as two dwords.
    assert_eq!(r.rd32(REG_CAP) | r.rd32(REG_CAP + 4) << 32, cap);
    r.wr(REG_CAP, 0);
    assert_eq!(r.rd(REG_CAP), cap, "read only");
    for i in 0..3 {
        let c = r.rd(tconf(i));
        assert_ne!(c & TN_PERIODIC_CAP, 0);
        assert_ne!(c & TN_SIZE_CAP, 0);
        assert_eq!(c >> 32, u64::from(ROUTE_CAP));
        assert_eq!(r.rd(tcmp(i)), u64::MAX, "comparator resets to all ones");
    }
    assert_eq!(r.rd(0x0f8), u64::MAX, "reserved");
    assert_eq!(r.hpet.read(0x3fc, 8), u64::MAX, "beyond the block");
}

#[test]
fn test_hpet_counter_runs_only_when_enabled() {
    let mut r = Rig::new();
    r.clock.advance(1_000_000);
    assert_eq!(r.rd(REG_COUNTER), 0, "halted at reset");
    r.wr(REG_CONFIG, CFG_ENABLE);
    assert_eq!(r.rd(REG_CONFIG), CFG_ENABLE);
    r.clock.advance(1_000);
    assert_eq!(r.rd(REG_COUNTER), 10, "10 ticks per µs");
    r.clock.advance(1_000_000_000);
    assert_eq!(r.rd(REG_COUNTER), 10_000_010);
    r.wr(REG_COUNTER, 5);
    assert_eq!(r.rd(REG_COUNTER), 10_000_010, "no writes while running");
    r.wr(REG_CONFIG, 0);
    r.clock.advance(1_000_000);
    assert_eq!(r.rd(REG_COUNTER), 10_000_010, "halted");
    r.wr32(REG_COUNTER, 0xffff_fff0);
    r.wr32(REG_COUNTER + 4, 7);
    assert_eq!(r.rd(REG_COUNTER), 0x7_ffff_fff0);
    r.wr(REG_CONFIG, CFG_ENABLE | 0xfc);
    assert_eq!(r.rd(REG_CONFIG), CFG_ENABLE, "reserved bits stay 0");
    r.clock.advance(3_000);
    assert_eq!(
        r.rd(REG_COUNTER),
        0x8_0000_000e,
        "carries into the high dword"
    );
    assert_eq!(r.rd32(REG_COUNTER + 4), 8);
}

#[test]
fn test_hpet_one_shot_fires_once() {
    let mut r = Rig::new();
    r.wr(tconf(2), 20 << TN_ROUTE_SHIFT | TN_INT_ENABLE);
    assert_eq!((r.rd(tconf(2)) & TN_ROUTE_MASK) >> TN_ROUTE_SHIFT, 20);
    r.wr(tcmp(2), 1000);
    assert_eq!(r.hpet.next_deadline_ns(), None, "halted");
    r.wr(REG_CONFIG, CFG_ENABLE);
    assert_eq!(r.hpet.next_deadline_ns(), Some(100_000));
    r.clock.set(99_999);
    r.hpet.update();
    assert_eq!(r.edges(20), 0, "not yet");
    r.clock.set(100_000);
    r.hpet.update();
    assert_eq!(r.edges(20), 1);
    assert!(!r.high(20), "edge: pulsed");
    assert_eq!(r.rd(REG_ISR), 0, "edge timers leave the status alone");
    r.run_to(10_000_000_000);
    assert_eq!(r.edges(20), 1, "once");
    // The next match is a whole 64-bit wrap away.
    assert!(r.hpet.next_deadline_ns().unwrap() > 10_000_000_000);
}

#[test]
fn test_hpet_periodic_fires_repeatedly() {
    let mut r = Rig::new();
    r.wr(REG_CONFIG, CFG_ENABLE | CFG_LEGACY);
    r.clock.set(50_000); // counter 500
                         // Linux's sequence: periodic, value set, then the first expiry, then the period.
    r.wr32(
        tconf(0),
        TN_INT_ENABLE | TN_PERIODIC | TN_VAL_SET | TN_32BIT,
    );
    let now = r.rd32(REG_COUNTER);
    assert_eq!(now, 500);
    r.wr32(tcmp(0), now + 10_000);
    r.wr32(tcmp(0), 10_000); // 1 ms
    assert_eq!(r.rd(tconf(0)) & TN_VAL_SET, 0, "cleared by the write");
    assert_eq!(r.rd(tcmp(0)), 10_500);
    for n in 1..=10u64 {
        let d = r.hpet.next_deadline_ns().unwrap();
        assert_eq!(d, 50_000 + n * 1_000_000);
        r.clock.set(d);
        r.hpet.update();
        assert_eq!(r.edges(LEGACY_TIMER0_GSI), n as u32);
    }
    assert_eq!(r.rd(tcmp(0)), 110_500, "the comparator moves on");
    // Several periods missed: one interrupt, the comparator catches up.
    r.clock.set(50_000 + 15_500_000);
    r.hpet.update();
    assert_eq!(r.edges(LEGACY_TIMER0_GSI), 11);
    assert_eq!(r.rd(tcmp(0)), 160_500);
    assert!(r.lines[20..]
        .iter()
        .all(|l| l.edges.load(Ordering::SeqCst) == 0));
}

#[test]
fn test_hpet_legacy_routes_timer1_to_gsi8() {
    let mut r = Rig::new();
    r.wr(REG_CONFIG, CFG_ENABLE | CFG_LEGACY);
    assert!(r.hpet.legacy_replacement());
    r.wr(tconf(1), TN_INT_ENABLE);
    r.wr(tcmp(1), 100);
    r.run_to(20_000);
    assert_eq!(r.edges(LEGACY_TIMER1_GSI), 1);
}

#[test]
fn test_hpet_level_status_write_one_to_clear() {
    let mut r = Rig::new();
    r.wr(tconf(1), 21 << TN_ROUTE_SHIFT | TN_INT_ENABLE | TN_LEVEL);
    r.wr(tcmp(1), 50);
    r.wr(REG_CONFIG, CFG_ENABLE);
    r.run_to(10_000);
    assert_eq!(r.rd(REG_ISR), 2);
    assert!(r.high(21), "level: held");
    r.wr(REG_ISR, 1); // another timer's bit: nothing
    assert_eq!(r.rd(REG_ISR), 2);
    assert!(r.high(21));
    r.hpet.write(REG_ISR, 1, 2);
    assert_eq!(r.rd(REG_ISR), 0);
    assert!(!r.high(21));
    assert_eq!(r.edges(21), 1);
    // A disabled interrupt still sets the status bit but not the line.
    r.wr(tconf(1), 21 << TN_ROUTE_SHIFT | TN_LEVEL);
    let c = r.rd(REG_COUNTER);
    r.wr(tcmp(1), c + 10);
    r.clock.advance(2_000);
    assert_eq!(r.rd(REG_ISR), 2);
    assert!(!r.high(21));
    // Enabling it asserts the pending level; halting the HPET drops it.
    r.wr(tconf(1), 21 << TN_ROUTE_SHIFT | TN_LEVEL | TN_INT_ENABLE);
    assert!(r.high(21));
    r.wr(REG_CONFIG, 0);
    assert!(!r.high(21));
}

#[test]
fn test_hpet_route_outside_capabilities_is_refused() {
    let mut r = Rig::new();
    r.wr(tconf(2), 5 << TN_ROUTE_SHIFT | TN_INT_ENABLE);
    assert_eq!(r.rd(tconf(2)) & TN_ROUTE_MASK, 0);
    r.wr(tconf(2), 23 << TN_ROUTE_SHIFT);
    r.wr(tconf(2), 5 << TN_ROUTE_SHIFT);
    assert_eq!(r.rd(tconf(2)) & TN_ROUTE_MASK, 23 << TN_ROUTE_SHIFT);
    r.wr(tconf(2), TN_PERIODIC_CAP | TN_SIZE_CAP | 1 << 14 | 1 << 15);
    assert_eq!(
        r.rd(tconf(2)) & 0xffff,
        23 << TN_ROUTE_SHIFT | TN_PERIODIC_CAP | TN_SIZE_CAP,
        "read-only and FSB bits"
    );
}

#[test]
fn test_hpet_32bit_mode() {
    let mut r = Rig::new();
    r.wr(tconf(2), 22 << TN_ROUTE_SHIFT | TN_INT_ENABLE | TN_32BIT);
    assert_eq!(r.rd(tcmp(2)), 0xffff_ffff, "the high half clears");
    r.wr(tcmp(2), 0x1234_0000_0100);
    assert_eq!(r.rd(tcmp(2)), 0x100, "upper bits ignored");
    // Start just below a 32-bit boundary: the comparator matches after the low half wraps.
    r.wr(REG_COUNTER, 0x5_ffff_ff00);
    r.wr(REG_CONFIG, CFG_ENABLE);
    assert_eq!(r.hpet.next_deadline_ns(), Some(0x200 * 100));
    r.run_to(0x1ff * 100);
    assert_eq!(r.edges(22), 0);
    r.run_to(0x200 * 100);
    assert_eq!(r.edges(22), 1);
    assert_eq!(
        r.rd(REG_COUNTER),
        0x6_0000_0100,
        "the main counter stays 64-bit"
    );
    // A 32-bit one-shot matches again every 2^32 ticks.
    assert_eq!(
        r.hpet.next_deadline_ns(),
        Some((0x200 + (1u64 << 32)) * 100)
    );
    // A 32-bit periodic timer wraps its comparator.
    r.wr(
        tconf(2),
        22 << TN_ROUTE_SHIFT | TN_INT_ENABLE | TN_32BIT | TN_PERIODIC | TN_VAL_SET,
    );
    r.wr(tcmp(2), 0xffff_fff0);
    r.wr(tcmp(2), 0x20);
    let t0 = r.clock.now_ns();
    let to_match = 0xffff_fff0u64 - 0x100;
    r.run_to(t0 + (to_match + 0x20) * 100);
    assert_eq!(r.edges(22), 3);
    assert_eq!(r.rd(tcmp(2)), 0x30, "wrapped, then one period on");
}

#[test]
fn test_hpet_state_round_trip() {
    let mut r = Rig::new();
    r.wr(tconf(0), TN_INT_ENABLE | TN_PERIODIC | TN_VAL_SET);
    r.wr(tcmp(0), 100);
    r.wr(REG_CONFIG, CFG_ENABLE);
    r.run_to(5_000);
    let s = r.hpet.state();
    let mut other = Rig::new();
    other.clock.set(5_000);
    other.hpet.restore(&s);
    assert_eq!(other.hpet.state(), s);
    assert_eq!(other.rd(REG_COUNTER), r.rd(REG_COUNTER));
    assert_eq!(other.hpet.next_deadline_ns(), r.hpet.next_deadline_ns());
}

#[test]
fn test_hpet_random_access_never_panics() {
    let clock = ManualClock::new();
    let hpet = Arc::new(Mutex::new(Hpet::new(
        Arc::new(clock.clone()),
        (0..4)
            .map(|_| Arc::new(crate::NoIrq) as Arc<dyn IrqLine>)
            .collect(), // < 24 GSIs
    )));
    let mut dev = HpetMmio { hpet: hpet.clone() };
    let mut x: u64 = 0x1234_5678;
    for _ in 0..200_000 {
        x = crate::testing::lcg(x);
        let r = x >> 16;
        let offset = if r & 1 == 0 {
            (r >> 1) % 0x140
        } else {
            (r >> 1) % 0x500
        };
        let size = [1, 2, 4, 8, 3, 0, 9][((r >> 12) % 7) as usize];
        match (r >> 16) % 4 {
            0 => drop(dev.read(offset, size)),
            1 | 2 => dev.write(offset, size, x.rotate_left(17)),
            _ => {
                clock.advance((r >> 20) % 1_000_000);
                let mut h = hpet.lock();
                h.update();
                if let Some(d) = h.next_deadline_ns() {
                    clock.set(d.min(clock.now_ns() + 10_000_000));
                    h.update();
                }
            }
        }
    }
}
