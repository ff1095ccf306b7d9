//! The HPET (IA-PC High Precision Event Timer, spec 1.0a) at 0xFED00000: one 64-bit main
//! counter at 10 MHz and three comparators.
//!
//! Nothing ticks: while enabled, the main counter is computed from the [`Clock`] when read
//! (ticks are `floor(ns / 100)` on one global grid). The machine asks
//! [`Hpet::next_deadline_ns`] when a timer next fires and calls [`Hpet::update`] once that
//! time has passed; every register access also updates first.
//!
//! Interrupts: the device holds one [`IrqLine`] per I/O APIC input (GSI 0-23). A timer drives
//! the GSI in its route field (only GSIs 20-23 are offered, [`ROUTE_CAP`], as on Intel ICH
//! chipsets, so they never collide with ISA interrupts). In legacy replacement mode
//! (`LEG_RT_CNF`) timer 0 drives GSI 2 ([`LEGACY_TIMER0_GSI`], the I/O APIC input that the
//! MADT's IRQ0 override names, where the PIT would be) and timer 1 drives GSI 8
//! ([`LEGACY_TIMER1_GSI`], the RTC's). The machine wires those two lines to both the I/O APIC
//! pin and the 8259 input (IRQ 0 and IRQ 8), and disconnects the PIT and RTC from them while
//! [`Hpet::legacy_replacement`] is set.
//!
//! Edge-triggered timers pulse their line and leave the interrupt status register alone;
//! level-triggered timers set their status bit and hold the line high until the guest
//! writes 1 to that bit.
//!
//! Simplifications: no FSB (MSI) delivery; writes to the main counter while it runs are
//! dropped; a one-shot timer whose comparator is passed several times within one update
//! fires once; when several comparators are passed in one update their interrupts are
//! raised in timer order.

use std::sync::Arc;

use parking_lot::Mutex;

use crate::{Clock, IrqLine, MmioDevice};

/// Where the firmware tables place the HPET.
pub const HPET_BASE: u64 = 0xfed0_0000;
/// Size of its register block.
pub const HPET_LEN: u64 = 0x400;
/// Main counter frequency in Hz.
pub const HPET_HZ: u64 = 10_000_000;
/// Main counter period in femtoseconds, as the capabilities register reports it.
pub const HPET_PERIOD_FS: u64 = 100_000_000;
/// Number of timers (comparators).
pub const HPET_TIMERS: usize = 3;
/// Number of interrupt lines the device can drive (I/O APIC inputs 0-23).
pub const HPET_GSIS: usize = 24;
/// The GSI timer 0 drives in legacy replacement mode.
pub const LEGACY_TIMER0_GSI: usize = 2;
/// The GSI timer 1 drives in legacy replacement mode.
pub const LEGACY_TIMER1_GSI: usize = 8;
/// The GSIs every timer may be routed to (bit n = GSI n): 20-23.
pub const ROUTE_CAP: u32 = 0x00f0_0000;
const NS_PER_S: u64 = 1_000_000_000;

// Register offsets (all 64-bit).
/// General capabilities and ID (read only).
const REG_CAP: u64 = 0x000;
/// General configuration.
const REG_CONFIG: u64 = 0x010;
/// General interrupt status (write 1 to clear).
const REG_ISR: u64 = 0x020;
/// Main counter value.
const REG_COUNTER: u64 = 0x0f0;
/// Timer 0's registers; timer n's are `TIMER_STRIDE * n` further.
const REG_TIMER0: u64 = 0x100;
/// Distance between two timers' register groups.
const TIMER_STRIDE: u64 = 0x20;
/// Within a timer's group: configuration and capabilities.
const TN_CONFIG: u64 = 0x00;
/// Within a timer's group: comparator value.
const TN_COMPARATOR: u64 = 0x08;
/// Within a timer's group: FSB interrupt route (no FSB delivery: reads 0).
const TN_FSB_ROUTE: u64 = 0x10;

// General capabilities and ID.
/// Bits 7-0: revision ID (must not be 0).
const CAP_REV_ID: u64 = 0x01;
/// Bits 12-8: number of the last timer.
const CAP_NUM_TIM_SHIFT: u32 = 8;
/// Bit 13: the main counter is 64 bits wide.
const CAP_COUNT_SIZE: u64 = 1 << 13;
/// Bit 15: legacy replacement routing is supported.
const CAP_LEG_RT: u64 = 1 << 15;
/// Bits 31-16: PCI vendor ID.
const CAP_VENDOR_SHIFT: u32 = 16;
/// The vendor reported: Intel.
const VENDOR_INTEL: u64 = 0x8086;
/// Bits 63-32: main counter period in femtoseconds.
const CAP_PERIOD_SHIFT: u32 = 32;

// General configuration.
/// Bit 0: the main counter runs and timers may interrupt.
const CFG_ENABLE: u64 = 1 << 0;
/// Bit 1: legacy replacement routing (timer 0 → IRQ 0, timer 1 → IRQ 8).
const CFG_LEGACY: u64 = 1 << 1;
/// The writable bits.
const CFG_WRITABLE: u64 = CFG_ENABLE | CFG_LEGACY;

// Timer n configuration and capabilities.
/// Bit 1: level-triggered (1) or edge-triggered (0).
const TN_LEVEL: u64 = 1 << 1;
/// Bit 2: the timer may interrupt.
const TN_INT_ENABLE: u64 = 1 << 2;
/// Bit 3: periodic mode (only if periodic capable).
const TN_PERIODIC: u64 = 1 << 3;
/// Bit 4: periodic capable (read only).
const TN_PERIODIC_CAP: u64 = 1 << 4;
/// Bit 5: the comparator is 64 bits wide (read only).
const TN_SIZE_CAP: u64 = 1 << 5;
/// Bit 6: the next comparator write sets the comparator itself in periodic mode (then
/// clears).
const TN_VAL_SET: u64 = 1 << 6;
/// Bit 8: force the timer to 32 bits.
const TN_32BIT: u64 = 1 << 8;
/// Bits 13-9: I/O APIC route.
const TN_ROUTE_SHIFT: u32 = 9;
/// The route field.
const TN_ROUTE_MASK: u64 = 0x1f << TN_ROUTE_SHIFT;
/// Bits 63-32: the GSIs the route field accepts (read only).
const TN_ROUTE_CAP_SHIFT: u32 = 32;
/// The plain read/write bits (the route field is checked separately).
const TN_WRITABLE: u64 = TN_LEVEL | TN_INT_ENABLE | TN_PERIODIC | TN_VAL_SET | TN_32BIT;

/// The main counter tick in progress at `ns`.
pub fn ns_to_tick(ns: u64) -> u64 {
    (u128::from(ns) * u128::from(HPET_HZ) / u128::from(NS_PER_S)) as u64
}

/// The first nanosecond at which tick `tick` has begun (saturating).
pub fn tick_to_ns(tick: u128) -> u64 {
    let ns = tick
        .saturating_mul(u128::from(NS_PER_S))
        .div_ceil(u128::from(HPET_HZ));
    ns.min(u128::from(u64::MAX)) as u64
}

/// One timer, as plain data (also its snapshot).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HpetTimerState {
    /// The writable bits of its configuration register.
    pub config: u64,
    /// The comparator: the main counter value at which it next fires.
    pub comparator: u64,
    /// In periodic mode, what is added to the comparator each time it fires.
    pub period: u64,
}

impl Default for HpetTimerState {
    fn default() -> Self {
        HpetTimerState {
            config: 0,
            comparator: u64::MAX,
            period: 0,
        }
    }
}

impl HpetTimerState {
    /// The comparator width as a mask.
    fn mask(&self) -> u64 {
        if self.config & TN_32BIT != 0 {
            0xffff_ffff
        } else {
            u64::MAX
        }
    }

    fn periodic(&self) -> bool {
        self.config & TN_PERIODIC != 0
    }

    /// Whether the comparator is passed when the counter moves from `from` by `span` ticks;
    /// if so advances a periodic comparator past the end.
    fn check(&mut self, from: u64, span: u64) -> bool {
        let mask = self.mask();
        let d = self.comparator.wrapping_sub(from) & mask;
        if d == 0 || d > span {
            return false;
        }
        let period = self.period & mask;
        if self.periodic() && period != 0 {
            let periods = (span - d) / period + 1;
            self.comparator = self.comparator.wrapping_add(periods.wrapping_mul(period)) & mask;
        }
        true
    }

    /// Ticks from counter value `from` to the next time the comparator is reached (a whole
    /// wrap if it is reached now).
    fn ticks_until(&self, from: u64) -> u128 {
        let mask = self.mask();
        match self.comparator.wrapping_sub(from) & mask {
            0 => u128::from(mask) + 1,
            d => u128::from(d),
        }
    }
}

/// A snapshot of the HPET (plain data). Its ticks count from the clock's zero, so it
/// restores against a clock with the same origin.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HpetState {
    /// The general configuration register.
    pub config: u64,
    /// The general interrupt status register.
    pub isr: u64,
    /// The main counter when halted; when running, its value at `start_tick`.
    pub counter: u64,
    /// The clock tick at which the counter last started.
    pub start_tick: u64,
    /// Every comparator match up to this clock tick has been handled.
    pub checked_tick: u64,
    /// The timers.
    pub timers: [HpetTimerState; HPET_TIMERS],
    /// The GSIs currently held high (bit n = GSI n).
    pub levels: u32,
}

/// The HPET.
///
/// Lines are driven with the HPET locked: a line must not lock the HPET itself.
pub struct Hpet {
    clock: Arc<dyn Clock>,
    lines: Vec<Arc<dyn IrqLine>>,
    s: HpetState,
}

impl Hpet {
    /// An HPET at reset (halted, counter 0, comparators all ones). `lines[n]` is GSI n; a
    /// shorter vector leaves the missing GSIs unconnected.
    pub fn new(clock: Arc<dyn Clock>, lines: Vec<Arc<dyn IrqLine>>) -> Hpet {
        if lines.len() < HPET_GSIS {
            tracing::debug!(len = lines.len(), "HPET wired to fewer than 24 GSIs");
        }
        Hpet {
            clock,
            lines,
            s: HpetState::default(),
        }
    }

    fn now_tick(&self) -> u64 {
        ns_to_tick(self.clock.now_ns())
    }

    fn enabled(&self) -> bool {
        self.s.config & CFG_ENABLE != 0
    }

    /// Whether legacy replacement routing is on (the PIT and RTC lose their interrupts).
    pub fn legacy_replacement(&self) -> bool {
        self.s.config & CFG_LEGACY != 0
    }

    /// The main counter at clock tick `tick` (not before the last start).
    fn counter_at(&self, tick: u64) -> u64 {
        if self.enabled() {
            self.s
                .counter
                .wrapping_add(tick.saturating_sub(self.s.start_tick))
        } else {
            self.s.counter
        }
    }

    /// The main counter now, as the guest reads it.
    pub fn counter(&self) -> u64 {
        self.counter_at(self.now_tick())
    }

    /// The GSI timer `i` drives.
    fn gsi(&self, i: usize) -> usize {
        match i {
            0 if self.legacy_replacement() => LEGACY_TIMER0_GSI,
            1 if self.legacy_replacement() => LEGACY_TIMER1_GSI,
            _ => ((self.s.timers[i].config & TN_ROUTE_MASK) >> TN_ROUTE_SHIFT) as usize,
        }
    }

    fn line(&self, gsi: usize) -> Option<&Arc<dyn IrqLine>> {
        let line = self.lines.get(gsi);
        if line.is_none() {
            tracing::debug!(gsi, "HPET interrupt on an unconnected GSI");
        }
        line
    }

    /// Handles every comparator passed since the last update: sets status bits, pulses
    /// edge-triggered lines, advances periodic comparators.
    pub fn update(&mut self) {
        let now = self.now_tick();
        if !self.enabled() || now <= self.s.checked_tick {
            return;
        }
        let from = self.counter_at(self.s.checked_tick);
        let span = now - self.s.checked_tick;
        self.s.checked_tick = now;
        for i in 0..HPET_TIMERS {
            if !self.s.timers[i].check(from, span) {
                continue;
            }
            let config = self.s.timers[i].config;
            if config & TN_LEVEL != 0 {
                self.s.isr |= 1 << i;
            } else if config & TN_INT_ENABLE != 0 {
                let gsi = self.gsi(i);
                // A line held high by a level-triggered timer has no edge to give.
                if self.s.levels & (1 << gsi) == 0 {
                    if let Some(line) = self.line(gsi) {
                        line.pulse();
                    }
                }
            }
        }
        self.sync_levels();
    }

    /// Drives every line to the level the level-triggered timers ask for.
    fn sync_levels(&mut self) {
        let mut want = 0u32;
        if self.enabled() {
            for (i, t) in self.s.timers.iter().enumerate() {
                let on = TN_LEVEL | TN_INT_ENABLE;
                if t.config & on == on && self.s.isr & (1 << i) != 0 {
                    want |= 1 << self.gsi(i);
                }
            }
        }
        let changed = want ^ self.s.levels;
        self.s.levels = want;
        for gsi in (0..32).filter(|g| changed & (1 << g) != 0) {
            if let Some(line) = self.line(gsi) {
                line.set_level(want & (1 << gsi) != 0);
            }
        }
    }

    /// When a timer with interrupts enabled next reaches its comparator (virtual ns), if the
    /// counter runs. May be in the past if [`Hpet::update`] is overdue.
    pub fn next_deadline_ns(&self) -> Option<u64> {
        if !self.enabled() {
            return None;
        }
        let from = self.counter_at(self.s.checked_tick);
        self.s
            .timers
            .iter()
            .filter(|t| t.config & TN_INT_ENABLE != 0)
            .map(|t| u128::from(self.s.checked_tick) + t.ticks_until(from))
            .min()
            .map(tick_to_ns)
    }

    fn read_reg(&self, reg: u64) -> Option<u64> {
        Some(match reg {
            REG_CAP => {
                CAP_REV_ID
                    | (HPET_TIMERS as u64 - 1) << CAP_NUM_TIM_SHIFT
                    | CAP_COUNT_SIZE
                    | CAP_LEG_RT
                    | VENDOR_INTEL << CAP_VENDOR_SHIFT
                    | HPET_PERIOD_FS << CAP_PERIOD_SHIFT
            }
            REG_CONFIG => self.s.config,
            REG_ISR => self.s.isr,
            REG_COUNTER => self.counter(),
            _ => {
                let (i, o) = timer_reg(reg)?;
                let t = &self.s.timers[i];
                match o {
                    TN_CONFIG => {
                        t.config
                            | TN_PERIODIC_CAP
                            | TN_SIZE_CAP
                            | u64::from(ROUTE_CAP) << TN_ROUTE_CAP_SHIFT
                    }
                    TN_COMPARATOR => t.comparator,
                    TN_FSB_ROUTE => 0,
                    _ => return None,
                }
            }
        })
    }

    /// Writes the bits `m` of the register at `reg` from `value`.
    fn write_reg(&mut self, reg: u64, value: u64, m: u64) {
        match reg {
            REG_CAP => tracing::debug!(value, "HPET write to the capabilities dropped"),
            REG_CONFIG => self.write_config((self.s.config & !m | value & m) & CFG_WRITABLE),
            REG_ISR => self.s.isr &= !(value & m),
            REG_COUNTER if self.enabled() => {
                tracing::warn!(value, "HPET main counter written while running, dropped")
            }
            REG_COUNTER => self.s.counter = self.s.counter & !m | value & m,
            _ => match timer_reg(reg) {
                Some((i, TN_CONFIG)) => self.write_timer_config(i, value, m),
                Some((i, TN_COMPARATOR)) => {
                    let t = &mut self.s.timers[i];
                    let mask = t.mask();
                    if !t.periodic() || t.config & TN_VAL_SET != 0 {
                        t.comparator = (t.comparator & !m | value & m) & mask;
                    }
                    if t.periodic() {
                        t.period = (t.period & !m | value & m) & mask;
                    }
                    t.config &= !TN_VAL_SET;
                }
                Some((_, TN_FSB_ROUTE)) => tracing::debug!("HPET FSB route write dropped"),
                _ => tracing::warn!(reg, value, "HPET write to a reserved register dropped"),
            },
        }
        self.sync_levels();
    }

    fn write_config(&mut self, new: u64) {
        let now = self.now_tick();
        let was = self.enabled();
        if was && new & CFG_ENABLE == 0 {
            self.s.counter = self.counter_at(now); // halt
        }
        self.s.config = new;
        if !was && self.enabled() {
            self.s.start_tick = now;
            self.s.checked_tick = now;
        }
    }

    fn write_timer_config(&mut self, i: usize, value: u64, m: u64) {
        let t = &mut self.s.timers[i];
        let merged = t.config & !m | value & m;
        let route = (merged & TN_ROUTE_MASK) >> TN_ROUTE_SHIFT;
        let route_bits = if ROUTE_CAP & (1 << route) != 0 {
            merged & TN_ROUTE_MASK
        } else {
            if m & TN_ROUTE_MASK != 0 && merged & TN_ROUTE_MASK != t.config & TN_ROUTE_MASK {
                tracing::debug!(timer = i, route, "HPET route not in the capabilities");
            }
            t.config & TN_ROUTE_MASK
        };
        let new = merged & TN_WRITABLE | route_bits;
        if new & TN_LEVEL == 0 {
            self.s.isr &= !(1 << i); // the status bit only means something for level
        }
        if new & TN_32BIT != 0 {
            t.comparator &= 0xffff_ffff;
            t.period &= 0xffff_ffff;
        }
        t.config = new;
    }

    /// Reads `size` bytes at `offset` of the register block.
    pub fn read_mmio(&mut self, offset: u64, size: u8) -> u64 {
        self.update();
        let size = checked_size(offset, size);
        let ones = u64::MAX >> (64 - 8 * u32::from(size));
        if offset.saturating_add(u64::from(size)) > HPET_LEN {
            tracing::warn!(offset, size, "HPET read beyond its registers");
            return ones;
        }
        if (offset & 7) + u64::from(size) > 8 {
            // Straddles two registers: byte by byte.
            return (0..u64::from(size))
                .fold(0, |acc, b| acc | self.read_mmio(offset + b, 1) << (8 * b));
        }
        match self.read_reg(offset & !7) {
            Some(v) => (v >> (8 * (offset & 7))) & ones,
            None => {
                tracing::debug!(offset, size, "HPET read of a reserved register");
                ones
            }
        }
    }

    /// Writes `size` bytes at `offset` of the register block.
    pub fn write_mmio(&mut self, offset: u64, size: u8, value: u64) {
        self.update();
        let size = checked_size(offset, size);
        if offset.saturating_add(u64::from(size)) > HPET_LEN {
            tracing::warn!(offset, size, value, "HPET write beyond its registers");
            return;
        }
        if (offset & 7) + u64::from(size) > 8 {
            for b in 0..u64::from(size) {
                self.write_mmio(offset + b, 1, value >> (8 * b));
            }
            return;
        }
        let shift = 8 * (offset & 7);
        let m = (u64::MAX >> (64 - 8 * u32::from(size))) << shift;
        self.write_reg(offset & !7, value << shift, m);
    }

    /// A snapshot.
    pub fn state(&self) -> HpetState {
        self.s.clone()
    }

    /// Restores a snapshot taken with [`Hpet::state`] (and drives the lines to match).
    pub fn restore(&mut self, state: &HpetState) {
        let levels = self.s.levels;
        self.s = state.clone();
        self.s.levels = levels;
        self.sync_levels();
    }
}

fn checked_size(offset: u64, size: u8) -> u8 {
    if !matches!(size, 1 | 2 | 4 | 8) {
        tracing::warn!(offset, size, "HPET access of an impossible size, clamped");
    }
    size.clamp(1, 8)
}

/// The timer and offset within its group of register `reg`, if it is a timer's.
fn timer_reg(reg: u64) -> Option<(usize, u64)> {
    let rel = reg.checked_sub(REG_TIMER0)?;
    let i = (rel / TIMER_STRIDE) as usize;
    (i < HPET_TIMERS).then_some((i, rel % TIMER_STRIDE))
}

impl MmioDevice for Hpet {
    fn read(&mut self, offset: u64, size: u8) -> u64 {
        self.read_mmio(offset, size)
    }

    fn write(&mut self, offset: u64, size: u8, value: u64) {
        self.write_mmio(offset, size, value)
    }
}

/// The register block of a shared [`Hpet`] (the machine keeps the other handle to schedule
/// it).
#[derive(Clone)]
pub struct HpetMmio {
    /// The timer.
    pub hpet: Arc<Mutex<Hpet>>,
}

impl MmioDevice for HpetMmio {
    fn read(&mut self, offset: u64, size: u8) -> u64 {
        self.hpet.lock().read_mmio(offset, size)
    }

    fn write(&mut self, offset: u64, size: u8, value: u64) {
        self.hpet.lock().write_mmio(offset, size, value)
    }
}

#[cfg(test)]
mod tests;
