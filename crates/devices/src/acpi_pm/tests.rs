//! Tests of the ACPI PM block and the reset control register: they drive the ports as a
//! guest would.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use super::*;
use crate::ManualClock;

#[derive(Default)]
struct Line {
    high: AtomicBool,
    edges: AtomicU32,
}

impl IrqLine for Line {
    fn set_level(&self, high: bool) {
        if high && !self.high.swap(true, Ordering::SeqCst) {
            self.edges.fetch_add(1, Ordering::SeqCst);
        }
        self.high.store(high, Ordering::SeqCst);
    }
}

fn rig() -> (ManualClock, Arc<Line>, AcpiPm) {
    let clock = ManualClock::new();
    let sci = Arc::new(Line::default());
    let pm = AcpiPm::new(Arc::new(clock.clone()), sci.clone());
    (clock, sci, pm)
}

#[test]
fn test_pm_timer_ticks_at_3_579545_mhz() {
    let (clock, _, mut pm) = rig();
    assert_eq!(pm.read(PM_TMR, 4), 0);
    clock.set(1_000);
    assert_eq!(pm.read(PM_TMR, 4), 3, "3.58 ticks per µs");
    clock.set(1_000_000);
    assert_eq!(pm.read(PM_TMR, 4), 3579);
    clock.set(1_000_000_000);
    assert_eq!(pm.read(PM_TMR, 4), 3_579_545, "one second");
    // 24 bits: wraps after 2^24 ticks (about 4.687 s).
    clock.set(tick_to_ns(0xff_ffff));
    assert_eq!(pm.read(PM_TMR, 4), 0xff_ffff);
    assert_eq!(pm.read(PM_TMR + 2, 1), 0xff);
    assert_eq!(pm.read(PM_TMR + 3, 1), 0, "bits 31-24 read 0");
    clock.set(tick_to_ns(0x100_0000));
    assert_eq!(pm.read(PM_TMR, 4), 0);
    clock.set(10_000_000_000);
    assert_eq!(
        pm.read(PM_TMR, 4),
        (35_795_450 & 0xff_ffff) as u32,
        "ten seconds, wrapped twice"
    );
    pm.write(PM_TMR, 4, 0);
    assert_eq!(
        pm.read(PM_TMR, 4),
        (35_795_450 & 0xff_ffff) as u32,
        "read only"
    );
    assert_eq!(tick_to_ns(3_579_545), 1_000_000_000);
}

#[test]
fn test_pm1_status_write_one_to_clear() {
    let (clock, _, mut pm) = rig();
    assert_eq!(pm.read(PM1_STS, 2), 0);
    clock.set(tick_to_ns(1 << 23));
    assert_eq!(pm.read(PM1_STS, 2), u32::from(TMR_STS), "bit 23 set");
    pm.press_power_button();
    assert_eq!(pm.read(PM1_STS, 2), u32::from(TMR_STS | PWRBTN_STS));
    pm.write(PM1_STS, 2, 0); // writing 0 changes nothing
    assert_eq!(pm.read(PM1_STS, 2), u32::from(TMR_STS | PWRBTN_STS));
    pm.write(PM1_STS + 1, 1, 0x01); // the power button's byte
    assert_eq!(pm.read(PM1_STS, 2), u32::from(TMR_STS));
    pm.write(PM1_STS, 2, 0xffff);
    assert_eq!(pm.read(PM1_STS, 2), 0);
    clock.set(tick_to_ns(1 << 24) - 1);
    assert_eq!(pm.read(PM1_STS, 2), 0, "bit 23 has not changed again yet");
    clock.set(tick_to_ns(1 << 24));
    assert_eq!(
        pm.read(PM1_STS, 2),
        u32::from(TMR_STS),
        "bit 23 falls: set again"
    );
}

#[test]
fn test_pm1_enable_and_sci() {
    let (clock, sci, mut pm) = rig();
    pm.write(PM1_EN, 2, 0xffff);
    assert_eq!(
        pm.read(PM1_EN, 2),
        u32::from(EN_BITS),
        "only real enables stick"
    );
    pm.write(PM1_EN, 2, u32::from(TMR_STS));
    assert_eq!(pm.next_deadline_ns(), Some(tick_to_ns(1 << 23)));
    clock.set(tick_to_ns(1 << 23) - 1);
    pm.update();
    assert!(!sci.high.load(Ordering::SeqCst));
    clock.set(pm.next_deadline_ns().unwrap());
    pm.update();
    assert!(
        sci.high.load(Ordering::SeqCst),
        "timer overflow raises the SCI"
    );
    assert_eq!(pm.next_deadline_ns(), None, "already pending");
    pm.write(PM1_STS, 2, u32::from(TMR_STS));
    assert!(!sci.high.load(Ordering::SeqCst), "cleared");
    assert_eq!(pm.next_deadline_ns(), Some(tick_to_ns(2 << 23)));
    // A disabled status bit does not raise it; enabling a pending one does.
    pm.press_power_button();
    assert!(!sci.high.load(Ordering::SeqCst));
    pm.write(PM1_EN + 1, 1, u32::from(PWRBTN_STS >> 8));
    assert!(sci.high.load(Ordering::SeqCst));
    assert_eq!(sci.edges.load(Ordering::SeqCst), 2);
}

#[test]
fn test_pm1_cnt_sci_en_is_always_set() {
    // No SMI mode (FADT SMI_CMD = 0): the hardware keeps the machine in ACPI mode, and an OS
    // that checks SCI_EN before a mode switch finds it set.
    let (_, _, mut pm) = rig();
    assert!(pm.sci_enabled());
    assert_eq!(pm.read(PM1_CNT, 2), u32::from(SCI_EN));
    pm.write(PM1_CNT, 2, 0);
    assert_eq!(
        pm.read(PM1_CNT, 2),
        u32::from(SCI_EN),
        "writes cannot clear it"
    );
    pm.write(PM1_CNT, 1, 1 << 1);
    assert_eq!(pm.read(PM1_CNT, 2), u32::from(SCI_EN | 1 << 1));
}

#[test]
fn test_pm1_cnt_sleep_request() {
    let (_, _, mut pm) = rig();
    assert_eq!(pm.take_sleep_request(), None);
    pm.write(PM1_CNT, 2, u32::from(SCI_EN));
    assert!(pm.sci_enabled());
    assert_eq!(pm.take_sleep_request(), None, "no SLP_EN");
    // Linux's S5: SLP_TYP from _S5 (0), then SLP_EN in a second write.
    pm.write(PM1_CNT, 2, u32::from(SCI_EN | u16::from(SLP_TYP_S5) << 10));
    assert_eq!(pm.take_sleep_request(), None);
    pm.write(PM1_CNT, 2, u32::from(SCI_EN | SLP_EN));
    assert_eq!(pm.take_sleep_request(), Some(SLP_TYP_S5));
    assert_eq!(pm.take_sleep_request(), None, "taken once");
    assert_eq!(pm.read(PM1_CNT, 2), u32::from(SCI_EN), "SLP_EN reads 0");
    // S3 through the high byte alone.
    pm.write(PM1_CNT + 1, 1, u32::from((SLP_EN | 1 << 10) >> 8));
    assert_eq!(pm.take_sleep_request(), Some(SLP_TYP_S3));
    assert_eq!(pm.read(PM1_CNT, 2), u32::from(SCI_EN | 1 << 10));
}

#[test]
fn test_pm1_wake_from_sleep() {
    let (_, sci, mut pm) = rig();
    assert!(!pm.rtc_wake_enabled());
    pm.write(PM1_EN + 1, 1, u32::from(RTC_STS >> 8));
    assert!(pm.rtc_wake_enabled());
    assert!(!pm.power_button_pressed());
    // An RTC wake-up shows WAK_STS and RTC_STS, and RTC_EN makes the latter an SCI.
    pm.wake(true);
    assert_eq!(pm.read(PM1_STS, 2), u32::from(WAK_STS | RTC_STS));
    assert!(sci.high.load(Ordering::SeqCst));
    pm.write(PM1_STS, 2, 0xffff);
    assert!(!sci.high.load(Ordering::SeqCst));
    // Another wake source: WAK_STS alone (no enable, no SCI).
    pm.wake(false);
    assert_eq!(pm.read(PM1_STS, 2), u32::from(WAK_STS));
    assert!(!sci.high.load(Ordering::SeqCst));
    pm.press_power_button();
    assert!(pm.power_button_pressed());
}

#[test]
fn test_pm_unimplemented_offsets_float() {
    let (_, _, mut pm) = rig();
    assert_eq!(pm.read(0x0c, 4), 0xffff_ffff);
    assert_eq!(pm.read(0x3f, 1), 0xff);
    pm.write(0x20, 4, 0);
}

#[test]
fn test_pm_state_round_trip() {
    let (clock, _, mut pm) = rig();
    pm.write(PM1_EN, 2, u32::from(TMR_STS));
    pm.write(PM1_CNT, 2, 1);
    clock.set(tick_to_ns(1 << 23));
    pm.update();
    let s = pm.state();
    let (clock2, sci2, mut pm2) = rig();
    clock2.set(clock.now_ns());
    pm2.restore(&s);
    assert_eq!(pm2.state(), s);
    assert!(
        sci2.high.load(Ordering::SeqCst),
        "the SCI follows the snapshot"
    );
}

#[test]
fn test_reset_control() {
    let mut rc = ResetControl::new();
    rc.write(0, 1, 0x02);
    assert_eq!(rc.take_reset_request(), None, "SYS_RST alone only selects");
    assert_eq!(rc.read(0, 1), 0x02);
    rc.write(0, 1, 0x06);
    assert_eq!(rc.take_reset_request(), Some(ResetKind::System));
    assert_eq!(rc.take_reset_request(), None);
    assert_eq!(rc.read(0, 1), 0x02, "RST_CPU reads 0");
    rc.write(0, 1, 0x0e);
    assert_eq!(rc.take_reset_request(), Some(ResetKind::System));
    rc.write(0, 1, 0x04);
    assert_eq!(rc.take_reset_request(), Some(ResetKind::Cpu));
    assert_eq!(rc.read(1, 1), 0xff);
}

#[test]
fn test_pm_random_access_never_panics() {
    let clock = ManualClock::new();
    let pm = Arc::new(Mutex::new(AcpiPm::new(
        Arc::new(clock.clone()),
        Arc::new(crate::NoIrq),
    )));
    let mut devs: [Box<dyn PortDevice>; 2] = [
        Box::new(AcpiPmPorts { pm: pm.clone() }),
        Box::new(ResetControl::new()),
    ];
    let mut x: u64 = 0xfeed_f00d;
    for _ in 0..200_000 {
        x = crate::testing::lcg(x);
        let r = (x >> 16) as u32;
        let dev = &mut devs[(r & 1) as usize];
        let offset = ((r >> 1) % 0x48) as u16;
        let size = [1, 2, 4, 3, 0][((r >> 8) % 5) as usize];
        match (r >> 12) % 4 {
            0 => drop(dev.read(offset, size)),
            1 | 2 => dev.write(offset, size, (x >> 32) as u32),
            _ => {
                clock.advance(u64::from(r >> 14) * 1000);
                let mut p = pm.lock();
                p.update();
                let _ = p.next_deadline_ns();
                let _ = p.take_sleep_request();
            }
        }
    }
}
