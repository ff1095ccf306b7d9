//! The MC146818 real-time clock and CMOS memory at ports 0x70 (index) and 0x71 (data),
//! interrupting on IRQ 8.
//!
//! The chip's 128 bytes hold the time and date (0x00-0x09), registers A-D (0x0A-0x0D) and
//! battery-backed memory the BIOS uses (0x0E-0x7F, with the IBM century byte at 0x32). Time is
//! never stored while the clock runs: it is `base + clock.now_ns()` (plus whatever the guest
//! set), rendered into BCD or binary, 12- or 24-hour, when the guest reads it. Interrupt flags
//! are brought up to date lazily, on every access and in [`Rtc::update`]; the machine calls
//! `update` at [`Rtc::next_deadline_ns`] so that interrupts arrive on time.
//!
//! The IRQ output is a level: it rises when a flag in register C meets its enable bit in
//! register B, and falls when the guest reads register C. A guest that does not read C gets
//! no further interrupts, as on hardware.

use std::sync::Arc;

use crate::{Clock, IrqLine, PortDevice};

/// Port offset of the index register (bit 7 disables NMI on a PC).
pub const INDEX: u16 = 0;
/// Port offset of the data register.
pub const DATA: u16 = 1;
/// Index port bit 7: NMI disabled (the rest of the byte is the CMOS index).
pub const INDEX_NMI_DISABLE: u8 = 1 << 7;

/// Seconds.
pub const SECONDS: u8 = 0x00;
/// Seconds alarm.
pub const SECONDS_ALARM: u8 = 0x01;
/// Minutes.
pub const MINUTES: u8 = 0x02;
/// Minutes alarm.
pub const MINUTES_ALARM: u8 = 0x03;
/// Hours (bit 7 = PM in 12-hour mode).
pub const HOURS: u8 = 0x04;
/// Hours alarm.
pub const HOURS_ALARM: u8 = 0x05;
/// Day of the week, 1 = Sunday.
pub const DAY_OF_WEEK: u8 = 0x06;
/// Day of the month, 1-31.
pub const DAY_OF_MONTH: u8 = 0x07;
/// Month, 1-12.
pub const MONTH: u8 = 0x08;
/// Year within the century, 0-99.
pub const YEAR: u8 = 0x09;
/// Register A: update in progress, divider, rate select.
pub const REG_A: u8 = 0x0a;
/// Register B: control.
pub const REG_B: u8 = 0x0b;
/// Register C: interrupt flags (read-only, cleared by reading).
pub const REG_C: u8 = 0x0c;
/// Register D: valid RAM and time (read-only).
pub const REG_D: u8 = 0x0d;
/// The century, in the byte IBM PCs (and ACPI's FADT default) use.
pub const CENTURY: u8 = 0x32;

/// A: an update cycle is in progress or about to start; time registers are unstable.
pub const A_UIP: u8 = 1 << 7;
/// A: the divider bits (6-4); 010 runs the clock from a 32.768 kHz crystal.
pub const A_DV_MASK: u8 = 0b0111_0000;
/// A: divider bits 6 and 5 both set hold the divider chain in reset (the clock stops).
pub const A_DV_RESET: u8 = 0b0110_0000;
/// A: rate select for the periodic interrupt (bits 3-0, 0 = off).
pub const A_RS_MASK: u8 = 0x0f;
/// B: SET, updates stop so the guest can write the time.
pub const B_SET: u8 = 1 << 7;
/// B: periodic interrupt enable.
pub const B_PIE: u8 = 1 << 6;
/// B: alarm interrupt enable.
pub const B_AIE: u8 = 1 << 5;
/// B: update-ended interrupt enable.
pub const B_UIE: u8 = 1 << 4;
/// B: square-wave output enable (no pin here; stored only).
pub const B_SQWE: u8 = 1 << 3;
/// B: data mode, 1 = binary, 0 = BCD.
pub const B_DM_BINARY: u8 = 1 << 2;
/// B: 1 = 24-hour mode, 0 = 12-hour with the PM flag in hours bit 7.
pub const B_24H: u8 = 1 << 1;
/// B: daylight saving enable (not modelled; stored only).
pub const B_DSE: u8 = 1 << 0;
/// C: some flag below is set and enabled: the IRQ line is asserted.
pub const C_IRQF: u8 = 1 << 7;
/// C: periodic interrupt flag.
pub const C_PF: u8 = 1 << 6;
/// C: alarm flag.
pub const C_AF: u8 = 1 << 5;
/// C: update-ended flag.
pub const C_UF: u8 = 1 << 4;
/// D: valid RAM and time (the battery is good).
pub const D_VRT: u8 = 1 << 7;
/// Alarm bytes with both top bits set match any value ("don't care").
pub const ALARM_DONT_CARE: u8 = 0xc0;

/// Register A after reset: 32.768 kHz divider, 1024 Hz rate, as every PC BIOS programs it.
const DEFAULT_A: u8 = 0x26;
/// Register B after reset: 24-hour BCD, no interrupts; the mode PC firmware and OSes expect.
const DEFAULT_B: u8 = B_24H;
/// Nanoseconds per second.
const NS: i128 = 1_000_000_000;
/// The time base, 32.768 kHz: periodic rates are powers of two of it.
const XTAL_HZ: u128 = 32_768;
/// UIP rises this long before each update (the datasheet's t_BUC).
const UIP_LEAD_NS: i128 = 244_000;
/// Seconds in a day: the alarm repeats at least this often, so a longer gap is cut to it.
const DAY: i64 = 86_400;

/// A snapshot of an [`Rtc`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RtcState {
    /// The CMOS bytes (the time bytes are current only while the clock is stopped).
    pub cmos: [u8; 128],
    /// The selected index.
    pub index: u8,
    /// Index port bit 7 as last written.
    pub nmi_disabled: bool,
    /// RTC time in Unix nanoseconds minus the virtual clock.
    pub offset_ns: i128,
    /// Virtual time the flags were last brought up to date.
    pub last_ns: u64,
    /// Whether the IRQ line is asserted.
    pub irq_high: bool,
}

/// The MC146818 RTC with its CMOS memory.
pub struct Rtc<I: IrqLine> {
    clock: Arc<dyn Clock>,
    irq: I,
    s: RtcState,
}

impl<I: IrqLine> Rtc<I> {
    /// An RTC whose time at virtual time 0 is `base_unix_secs` (seconds since 1970-01-01 UTC;
    /// a deterministic machine passes a fixed value).
    pub fn new(clock: Arc<dyn Clock>, irq: I, base_unix_secs: i64) -> Self {
        let mut cmos = [0; 128];
        cmos[usize::from(REG_A)] = DEFAULT_A;
        cmos[usize::from(REG_B)] = DEFAULT_B;
        cmos[usize::from(REG_D)] = D_VRT;
        let last_ns = clock.now_ns();
        Rtc {
            clock,
            irq,
            s: RtcState {
                cmos,
                index: 0,
                nmi_disabled: false,
                offset_ns: i128::from(base_unix_secs) * NS,
                last_ns,
                irq_high: false,
            },
        }
    }

    /// Rebuilds an RTC from a snapshot taken with the same clock.
    pub fn from_state(state: RtcState, clock: Arc<dyn Clock>, irq: I) -> Self {
        irq.set_level(state.irq_high);
        Rtc {
            clock,
            irq,
            s: state,
        }
    }

    /// Saves the device's state.
    pub fn state(&self) -> RtcState {
        self.s.clone()
    }

    /// Whether the guest last wrote the index port with NMIs disabled.
    pub fn nmi_disabled(&self) -> bool {
        self.s.nmi_disabled
    }

    /// A CMOS byte as stored (time bytes are current only while the clock is stopped).
    pub fn cmos_byte(&self, index: u8) -> u8 {
        self.s.cmos[usize::from(index & 0x7f)]
    }

    /// Sets a CMOS memory byte (for firmware configuration such as the floppy or disk types).
    pub fn set_cmos_byte(&mut self, index: u8, value: u8) {
        self.s.cmos[usize::from(index & 0x7f)] = value;
    }

    /// Fills the memory-size bytes BIOSes read: RAM below 4 GiB (`below_4g`, counted from 0)
    /// and above it, in bytes.
    pub fn set_memory_size(&mut self, below_4g: u64, above_4g: u64) {
        const KIB: u64 = 1 << 10;
        const MIB: u64 = 1 << 20;
        let mut put16 = |lo: u8, v: u64| {
            let v = v.min(0xffff) as u16;
            self.s.cmos[usize::from(lo)] = v as u8;
            self.s.cmos[usize::from(lo) + 1] = (v >> 8) as u8;
        };
        // Conventional memory, in KiB: always 640 on a PC.
        put16(0x15, 640);
        // Extended memory above 1 MiB, in KiB (saturating at 64 MiB): the POST and saved copies.
        let ext = below_4g.saturating_sub(MIB) / KIB;
        put16(0x17, ext);
        put16(0x30, ext);
        // Memory above 16 MiB, in 64 KiB units.
        put16(0x34, below_4g.saturating_sub(16 * MIB) >> 16);
        // Memory above 4 GiB, in 64 KiB units, three bytes.
        let high = (above_4g >> 16).min(0xff_ffff);
        for i in 0..3 {
            self.s.cmos[0x5b + i] = (high >> (8 * i)) as u8;
        }
    }

    /// Whether the alarm interrupt is asserted (AF set with AIE): what wakes a PIIX4 board
    /// from S3 when the PM block's RTC_EN allows it.
    pub fn alarm_interrupt(&self) -> bool {
        self.reg(REG_C) & C_AF != 0 && self.reg(REG_B) & B_AIE != 0
    }

    /// The virtual time at which an interrupt may next become due, for the machine to call
    /// [`Rtc::update`]; `None` when none can (nothing enabled, or the line is already high and
    /// only the guest's read of register C can lower it).
    pub fn next_deadline_ns(&self) -> Option<u64> {
        if self.s.irq_high {
            return None;
        }
        let now = self.clock.now_ns();
        let b = self.reg(REG_B);
        let mut next: Option<u64> = None;
        if b & B_PIE != 0 {
            if let Some(p) = self.period_ticks() {
                let target = (ticks(now) / p + 1) * p;
                let t = (target * 1_000_000_000).div_ceil(XTAL_HZ);
                next = Some(u64::try_from(t).unwrap_or(u64::MAX));
            }
        }
        if b & (B_UIE | B_AIE) != 0 && self.running() {
            let secs = self.rtc_ns(now).div_euclid(NS);
            let t = (secs + 1) * NS - self.s.offset_ns;
            let t = u64::try_from(t.max(0)).unwrap_or(u64::MAX);
            next = Some(next.map_or(t, |n| n.min(t)));
        }
        next
    }

    /// Brings the interrupt flags up to the clock's time and drives the IRQ line.
    pub fn update(&mut self) {
        let now = self.clock.now_ns();
        let last = self.s.last_ns;
        if now > last {
            let mut flags = 0;
            if let Some(p) = self.period_ticks() {
                if ticks(now) / p > ticks(last) / p {
                    flags |= C_PF;
                }
            }
            if self.running() {
                let s0 = self.rtc_ns(last).div_euclid(NS) as i64;
                let s1 = self.rtc_ns(now).div_euclid(NS) as i64;
                if s1 > s0 {
                    flags |= C_UF;
                    if self.alarm_hit(s0.max(s1 - DAY) + 1, s1) {
                        flags |= C_AF;
                    }
                }
            }
            self.s.cmos[usize::from(REG_C)] |= flags;
            self.s.last_ns = now;
        }
        self.drive_irq();
    }

    fn reg(&self, i: u8) -> u8 {
        self.s.cmos[usize::from(i)]
    }

    fn bcd(&self) -> bool {
        self.reg(REG_B) & B_DM_BINARY == 0
    }

    /// The clock advances unless SET is on or the divider is held in reset.
    fn running(&self) -> bool {
        self.reg(REG_B) & B_SET == 0 && self.reg(REG_A) & A_DV_RESET != A_DV_RESET
    }

    /// The periodic interrupt's period in 32.768 kHz ticks, if it runs.
    fn period_ticks(&self) -> Option<u128> {
        let a = self.reg(REG_A);
        if a & A_DV_RESET == A_DV_RESET {
            return None;
        }
        match a & A_RS_MASK {
            0 => None,
            // Rates 1 and 2 repeat rates 8 and 9 (256 and 128 Hz) on a 32.768 kHz time base.
            rs @ 1..=2 => Some(1 << (rs + 6)),
            rs => Some(1 << (rs - 1)),
        }
    }

    fn rtc_ns(&self, now: u64) -> i128 {
        self.s.offset_ns + i128::from(now)
    }

    fn drive_irq(&mut self) {
        let c = self.reg(REG_C);
        let pending = c & self.reg(REG_B) & (C_PF | C_AF | C_UF) != 0;
        if pending {
            self.s.cmos[usize::from(REG_C)] |= C_IRQF;
        }
        let high = c & C_IRQF != 0 || pending;
        if high != self.s.irq_high {
            self.s.irq_high = high;
            self.irq.set_level(high);
        }
    }

    fn encode(&self, v: u32) -> u8 {
        if self.bcd() {
            (((v / 10 % 10) << 4) | (v % 10)) as u8
        } else {
            v as u8
        }
    }

    fn decode(&self, b: u8) -> i64 {
        if self.bcd() {
            i64::from(b >> 4) * 10 + i64::from(b & 0x0f)
        } else {
            i64::from(b)
        }
    }

    fn encode_hour(&self, h: u32) -> u8 {
        if self.reg(REG_B) & B_24H != 0 {
            self.encode(h)
        } else {
            let h12 = if h.is_multiple_of(12) { 12 } else { h % 12 };
            self.encode(h12) | if h >= 12 { 0x80 } else { 0 }
        }
    }

    fn decode_hour(&self, b: u8) -> i64 {
        if self.reg(REG_B) & B_24H != 0 {
            self.decode(b)
        } else {
            let pm = if b & 0x80 != 0 { 12 } else { 0 };
            self.decode(b & 0x7f) % 12 + pm
        }
    }

    /// Whether the alarm matches any second in `from..=to` (Unix seconds).
    fn alarm_hit(&self, from: i64, to: i64) -> bool {
        let (sa, ma, ha) = (
            self.reg(SECONDS_ALARM),
            self.reg(MINUTES_ALARM),
            self.reg(HOURS_ALARM),
        );
        let hit = |alarm: u8, now: u8| alarm & ALARM_DONT_CARE == ALARM_DONT_CARE || alarm == now;
        (from..=to).any(|t| {
            let sod = t.rem_euclid(DAY) as u32;
            hit(sa, self.encode(sod % 60))
                && hit(ma, self.encode(sod / 60 % 60))
                && hit(ha, self.encode_hour(sod / 3600))
        })
    }

    /// Writes the running time into the time bytes.
    fn render_time(&mut self) {
        let secs = self.rtc_ns(self.clock.now_ns()).div_euclid(NS) as i64;
        let days = secs.div_euclid(DAY);
        let sod = secs.rem_euclid(DAY) as u32;
        let (y, m, d) = civil_from_days(days);
        let bytes = [
            (SECONDS, self.encode(sod % 60)),
            (MINUTES, self.encode(sod / 60 % 60)),
            (HOURS, self.encode_hour(sod / 3600)),
            // 1970-01-01 was a Thursday: day 5 counting Sunday as 1.
            (
                DAY_OF_WEEK,
                self.encode(((days + 4).rem_euclid(7) + 1) as u32),
            ),
            (DAY_OF_MONTH, self.encode(d)),
            (MONTH, self.encode(m)),
            (YEAR, self.encode(y.rem_euclid(100) as u32)),
            (CENTURY, self.encode(y.div_euclid(100).clamp(0, 99) as u32)),
        ];
        for (i, v) in bytes {
            self.s.cmos[usize::from(i)] = v;
        }
    }

    /// Reads the time bytes as Unix seconds.
    fn parse_time(&self) -> i64 {
        let year = self.decode(self.reg(CENTURY)) * 100 + self.decode(self.reg(YEAR));
        let month = self.decode(self.reg(MONTH)).clamp(1, 12);
        let day = self.decode(self.reg(DAY_OF_MONTH)).clamp(1, 31);
        days_from_civil(year, month, day) * DAY
            + self.decode_hour(self.reg(HOURS)) * 3600
            + self.decode(self.reg(MINUTES)) * 60
            + self.decode(self.reg(SECONDS))
    }

    /// Restarts the clock from the time bytes, keeping the phase within the second `frac`.
    fn restart_from_regs(&mut self, frac_ns: i128) {
        let now = self.clock.now_ns();
        self.s.offset_ns = i128::from(self.parse_time()) * NS + frac_ns - i128::from(now);
        self.s.last_ns = now;
    }

    fn read_data(&mut self) -> u8 {
        self.update();
        let i = self.s.index;
        match i {
            SECONDS | MINUTES | HOURS | DAY_OF_WEEK..=YEAR | CENTURY if self.running() => {
                self.render_time();
                self.reg(i)
            }
            REG_A => {
                let frac = self.rtc_ns(self.clock.now_ns()).rem_euclid(NS);
                let uip = self.running() && frac >= NS - UIP_LEAD_NS;
                self.reg(REG_A) & !A_UIP | if uip { A_UIP } else { 0 }
            }
            REG_C => {
                let c = self.reg(REG_C);
                self.s.cmos[usize::from(REG_C)] = 0;
                self.drive_irq();
                c
            }
            _ => self.reg(i),
        }
    }

    fn write_data(&mut self, v: u8) {
        self.update();
        let i = self.s.index;
        let was_running = self.running();
        if was_running {
            self.render_time();
        }
        let frac = self.rtc_ns(self.clock.now_ns()).rem_euclid(NS);
        match i {
            REG_A => self.s.cmos[usize::from(i)] = v & !A_UIP | self.reg(REG_A) & A_UIP,
            // Setting SET also clears UIE, per the datasheet.
            REG_B if v & B_SET != 0 => self.s.cmos[usize::from(i)] = v & !B_UIE,
            REG_C | REG_D => tracing::debug!(index = i, v, "rtc: write to a read-only register"),
            _ => self.s.cmos[usize::from(i)] = v,
        }
        let time_byte = matches!(i, SECONDS | MINUTES | HOURS | DAY_OF_WEEK..=YEAR | CENTURY);
        match (was_running, self.running()) {
            // Leaving SET (or divider reset) starts a fresh second.
            (false, true) => self.restart_from_regs(0),
            (true, true) if time_byte => self.restart_from_regs(frac),
            _ => {}
        }
        self.drive_irq();
    }
}

/// Ticks of the 32.768 kHz time base at virtual time `ns`.
fn ticks(ns: u64) -> u128 {
    u128::from(ns) * XTAL_HZ / 1_000_000_000
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date (year, month, day) of a day count since 1970-01-01.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

impl<I: IrqLine> PortDevice for Rtc<I> {
    /// Byte accesses; a wider one is split into bytes at consecutive ports, as on ISA.
    fn read(&mut self, offset: u16, size: u8) -> u32 {
        (0..size.clamp(1, 4)).fold(0, |acc, k| {
            let b = match offset.saturating_add(u16::from(k)) {
                // The index register is write-only; PCs read the floating bus.
                INDEX => 0xff,
                DATA => self.read_data(),
                off => {
                    tracing::debug!(off, "rtc: read past the ports");
                    0xff
                }
            };
            acc | u32::from(b) << (8 * k)
        })
    }

    fn write(&mut self, offset: u16, size: u8, value: u32) {
        for k in 0..size.clamp(1, 4) {
            let v = (value >> (8 * k)) as u8;
            match offset.saturating_add(u16::from(k)) {
                INDEX => {
                    self.s.nmi_disabled = v & INDEX_NMI_DISABLE != 0;
                    self.s.index = v & !INDEX_NMI_DISABLE;
                }
                DATA => self.write_data(v),
                off => tracing::debug!(off, v, "rtc: write past the ports dropped"),
            }
        }
    }
}

#[cfg(test)]
mod tests;
