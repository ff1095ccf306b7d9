//! Tests of the rtc device: they drive its registers as a guest would.

use super::*;
use crate::ManualClock;

use crate::testing::Edges;

/// 2023-11-14 22:13:20 UTC, a Tuesday.
const BASE: i64 = 1_700_000_000;

fn rtc() -> (Rtc<Edges>, ManualClock, Edges) {
    let clock = ManualClock::new();
    let irq = Edges::default();
    (
        Rtc::new(Arc::new(clock.clone()), irq.clone(), BASE),
        clock,
        irq,
    )
}

fn get(r: &mut Rtc<Edges>, i: u8) -> u8 {
    r.write(INDEX, 1, u32::from(i));
    r.read(DATA, 1) as u8
}

fn set(r: &mut Rtc<Edges>, i: u8, v: u8) {
    r.write(INDEX, 1, u32::from(i));
    r.write(DATA, 1, u32::from(v));
}

fn time(r: &mut Rtc<Edges>) -> [u8; 8] {
    [
        SECONDS,
        MINUTES,
        HOURS,
        DAY_OF_WEEK,
        DAY_OF_MONTH,
        MONTH,
        YEAR,
        CENTURY,
    ]
    .map(|i| get(r, i))
}

#[test]
fn test_rtc_binary_24h_time() {
    let (mut r, clock, _) = rtc();
    set(&mut r, REG_B, B_24H | B_DM_BINARY);
    clock.set(5_500_000_000);
    assert_eq!(time(&mut r), [25, 13, 22, 3, 14, 11, 23, 20]);
}

#[test]
fn test_rtc_bcd_12h_time_and_defaults() {
    let (mut r, _clock, _) = rtc();
    assert_eq!(get(&mut r, REG_A), DEFAULT_A);
    assert_eq!(get(&mut r, REG_D), D_VRT);
    // Default: BCD, 24-hour.
    assert_eq!(
        time(&mut r),
        [0x20, 0x13, 0x22, 0x03, 0x14, 0x11, 0x23, 0x20]
    );
    set(&mut r, REG_B, 0);
    assert_eq!(get(&mut r, HOURS), 0x80 | 0x10);
}

#[test]
fn test_rtc_periodic_1024hz() {
    let (mut r, clock, irq) = rtc();
    set(&mut r, REG_A, 0x26);
    set(&mut r, REG_B, B_24H | B_PIE);
    let end = 10_000_000;
    // The machine's loop: sleep to the deadline, update, and the guest's handler reads C.
    while let Some(t) = r.next_deadline_ns().filter(|&t| t <= end) {
        clock.set(t);
        r.update();
        assert!(irq.high());
        assert_eq!(get(&mut r, REG_C), C_IRQF | C_PF);
        assert!(!irq.high());
    }
    assert!((10..=11).contains(&irq.count()), "{} edges", irq.count());
    assert_eq!(get(&mut r, REG_C), 0, "reading C cleared the flags");
}

#[test]
fn test_rtc_unread_c_holds_line_and_rate_zero_is_off() {
    let (mut r, clock, irq) = rtc();
    set(&mut r, REG_B, B_24H | B_PIE);
    clock.advance(5_000_000);
    r.update();
    assert_eq!(irq.count(), 1);
    assert_eq!(r.next_deadline_ns(), None);
    clock.advance(5_000_000);
    r.update();
    assert_eq!(irq.count(), 1);
    get(&mut r, REG_C);
    set(&mut r, REG_A, 0x20);
    assert_eq!(r.next_deadline_ns(), None);
    clock.advance(5_000_000);
    assert_eq!(get(&mut r, REG_C), 0);
}

#[test]
fn test_rtc_flags_without_enable_do_not_interrupt() {
    let (mut r, clock, irq) = rtc();
    clock.advance(1_000_000_000);
    assert_eq!(get(&mut r, REG_C), C_PF | C_UF);
    assert_eq!(irq.count(), 0);
    // Enabling a flag that is already set interrupts at once.
    clock.advance(1_000_000_000);
    set(&mut r, REG_B, B_24H | B_UIE);
    assert_eq!(irq.count(), 1);
}

#[test]
fn test_rtc_update_ended_interrupt() {
    let (mut r, clock, irq) = rtc();
    set(&mut r, REG_B, B_24H | B_UIE);
    assert_eq!(r.next_deadline_ns(), Some(1_000_000_000));
    clock.set(999_999_999);
    r.update();
    assert_eq!(irq.count(), 0);
    clock.set(1_000_000_000);
    r.update();
    assert_eq!(irq.count(), 1);
    assert_eq!(get(&mut r, REG_C) & (C_IRQF | C_UF), C_IRQF | C_UF);
}

#[test]
fn test_rtc_alarm() {
    let (mut r, clock, irq) = rtc();
    set(&mut r, REG_B, B_24H | B_DM_BINARY | B_AIE);
    set(&mut r, SECONDS_ALARM, 23);
    set(&mut r, MINUTES_ALARM, ALARM_DONT_CARE);
    set(&mut r, HOURS_ALARM, 22);
    clock.set(2_000_000_000);
    r.update();
    assert_eq!(irq.count(), 0);
    // PF runs too (rate 6 by default), but only the alarm is enabled.
    assert_eq!(get(&mut r, REG_C), C_PF | C_UF);
    clock.set(3_000_000_000);
    r.update();
    assert_eq!(irq.count(), 1);
    assert!(r.alarm_interrupt(), "what wakes a board from S3");
    assert_eq!(get(&mut r, REG_C), C_IRQF | C_PF | C_AF | C_UF);
    assert!(!r.alarm_interrupt(), "reading register C clears it");
    // A wrong hour never matches.
    set(&mut r, HOURS_ALARM, 5);
    clock.advance(600_000_000_000);
    assert_eq!(get(&mut r, REG_C) & C_AF, 0);
}

#[test]
fn test_rtc_guest_sets_time() {
    let (mut r, clock, _) = rtc();
    clock.set(300_000_000);
    set(&mut r, REG_B, B_SET | B_24H | B_DM_BINARY);
    for (i, v) in [
        (SECONDS, 58),
        (MINUTES, 59),
        (HOURS, 23),
        (DAY_OF_MONTH, 31),
    ] {
        set(&mut r, i, v);
    }
    for (i, v) in [(MONTH, 12), (YEAR, 99), (CENTURY, 19)] {
        set(&mut r, i, v);
    }
    clock.advance(5_000_000_000);
    // Stopped while SET.
    assert_eq!(get(&mut r, SECONDS), 58);
    set(&mut r, REG_B, B_24H | B_DM_BINARY);
    clock.advance(2_500_000_000);
    assert_eq!(time(&mut r), [0, 0, 0, 7, 1, 1, 0, 20]);
    // Writing one field while running keeps the others ticking.
    set(&mut r, MINUTES, 30);
    clock.advance(1_000_000_000);
    assert_eq!(get(&mut r, MINUTES), 30);
    assert_eq!(get(&mut r, SECONDS), 1);
}

#[test]
fn test_rtc_uip_before_each_update() {
    let (mut r, clock, _) = rtc();
    clock.set(500_000_000);
    assert_eq!(get(&mut r, REG_A) & A_UIP, 0);
    clock.set(999_900_000);
    assert_eq!(get(&mut r, REG_A) & A_UIP, A_UIP);
    // Divider reset stops the clock and UIP.
    set(&mut r, REG_A, 0x70);
    assert_eq!(get(&mut r, REG_A), 0x70);
    let t = time(&mut r);
    clock.advance(3_000_000_000);
    assert_eq!(time(&mut r), t);
}

#[test]
fn test_rtc_index_nmi_and_memory_bytes() {
    let (mut r, _, _) = rtc();
    r.write(INDEX, 1, 0x80 | 0x40);
    assert!(r.nmi_disabled());
    r.write(DATA, 1, 0x5a);
    assert_eq!(r.cmos_byte(0x40), 0x5a);
    assert_eq!(r.read(INDEX, 1), 0xff);
    r.set_memory_size(3 << 30, 1 << 32);
    assert_eq!([get(&mut r, 0x15), get(&mut r, 0x16)], [0x80, 0x02]);
    assert_eq!([get(&mut r, 0x17), get(&mut r, 0x18)], [0xff, 0xff]);
    assert_eq!([get(&mut r, 0x30), get(&mut r, 0x31)], [0xff, 0xff]);
    let above16 = ((3u64 << 30) - (16 << 20)) >> 16;
    assert_eq!(
        u64::from(get(&mut r, 0x34)) | u64::from(get(&mut r, 0x35)) << 8,
        above16
    );
    assert_eq!(
        [get(&mut r, 0x5b), get(&mut r, 0x5c), get(&mut r, 0x5d)],
        [0, 0, 1]
    );
    r.set_memory_size(32 << 20, 0);
    assert_eq!([get(&mut r, 0x17), get(&mut r, 0x18)], [0x00, 0x7c]);
}

#[test]
fn test_rtc_calendar_round_trip() {
    for days in (-800_000..800_000).step_by(997) {
        let (y, m, d) = civil_from_days(days);
        assert_eq!(days_from_civil(y, i64::from(m), i64::from(d)), days);
    }
    assert_eq!(civil_from_days(0), (1970, 1, 1));
    assert_eq!(civil_from_days(11_016), (2000, 2, 29));
}

#[test]
fn test_rtc_state_round_trip() {
    let (mut r, clock, _) = rtc();
    set(&mut r, REG_B, B_24H | B_PIE);
    clock.advance(2_000_000);
    r.update();
    let s = r.state();
    let irq = Edges::default();
    let mut r2 = Rtc::from_state(s.clone(), Arc::new(clock.clone()), irq.clone());
    assert!(irq.high());
    assert_eq!(time(&mut r2), time(&mut r));
    assert_eq!(get(&mut r2, REG_C), C_IRQF | C_PF);
}

#[test]
fn test_rtc_random_accesses_never_panic() {
    let (mut r, clock, _) = rtc();
    let mut x: u64 = 99;
    for _ in 0..20_000 {
        x = crate::testing::lcg(x);
        let off = ((x >> 33) % 4) as u16;
        let size = [0, 1, 2, 4, 7][((x >> 40) % 5) as usize];
        let v = (x >> 17) as u32;
        match x % 5 {
            0 | 1 => r.write(off, size, v),
            2 => drop(r.read(off, size)),
            3 => clock.advance((x >> 30) % 3_000_000_000_000),
            _ => {
                r.update();
                let _ = r.next_deadline_ns();
            }
        }
    }
}
