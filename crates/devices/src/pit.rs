//! The 8254 programmable interval timer (ports 0x40-0x43) and system control port B (0x61).
//!
//! Three 16-bit down-counters clocked at 1.193182 MHz. Counter 0's output drives IRQ 0,
//! counter 1 once timed DRAM refresh, counter 2 drives the speaker and its gate and output
//! are reachable through port 0x61 (which Linux and firmware use to calibrate the TSC).
//!
//! Nothing ticks: a counter remembers the clock tick at which it started and computes its
//! count and output from the [`Clock`] when read. Ticks are `floor(ns * 1193182 / 1e9)` on
//! one global grid, so rounding never drifts. The machine asks [`Pit::next_deadline_ns`] when
//! IRQ 0 next rises and calls [`Pit::update`] once that time has passed; every port access
//! also updates first, so no edge is lost when the guest reprograms a counter.
//!
//! Simplifications: a count takes effect at once (the real chip waits for the next clock
//! edge, ~838 ns), mode 3 reloads a new count at the end of the whole period rather than
//! the half period, and mode 3 counts of odd values read approximately.

use std::sync::Arc;

use parking_lot::Mutex;

use crate::{read_bytes, write_bytes, Clock, IrqLine, PortDevice};

/// Input clock of every counter, in Hz (the PC's 14.31818 MHz crystal divided by 12).
pub const PIT_HZ: u64 = 1_193_182;
const NS_PER_S: u64 = 1_000_000_000;

// Offsets within 0x40-0x43.
/// Counters 0-2 are at offsets 0-2.
const COUNTERS: u16 = 3;
/// The control word register (write only).
const CONTROL: u16 = 3;

// Control word.
/// Bits 7-6: counter select; 3 is the read-back command.
const CW_SELECT_SHIFT: u8 = 6;
/// Counter select value of the read-back command.
const SELECT_READ_BACK: u8 = 3;
/// Bits 5-4: access mode.
const CW_ACCESS_SHIFT: u8 = 4;
/// Access mode 0: the counter latch command.
const ACCESS_LATCH: u8 = 0;
/// Access mode 1: low byte only.
const ACCESS_LSB: u8 = 1;
/// Access mode 2: high byte only.
const ACCESS_MSB: u8 = 2;
/// Access mode 3: low byte then high byte.
const ACCESS_WORD: u8 = 3;
/// Bits 3-1: the counting mode (6 and 7 are aliases of 2 and 3).
const CW_MODE_SHIFT: u8 = 1;
/// Bit 0: count in BCD (4 decades) rather than binary.
const CW_BCD: u8 = 0x01;
/// The control-word bits a counter keeps (and reports in its status).
const CW_COUNTER_BITS: u8 = 0x3f;

// Read-back command (select = 3).
/// Bit 5, active low: latch the count of the selected counters.
const RB_NO_COUNT: u8 = 0x20;
/// Bit 4, active low: latch the status of the selected counters.
const RB_NO_STATUS: u8 = 0x10;
/// Bits 1-3 select counters 0-2.
const RB_COUNTER0: u8 = 0x02;

// Status byte (read-back): bits 5-0 are the counter's control word bits.
/// Bit 7: the OUT pin.
const STATUS_OUT: u8 = 0x80;
/// Bit 6: null count, a written count not yet loaded into the counting element.
const STATUS_NULL_COUNT: u8 = 0x40;

// Port 0x61, system control port B.
/// Bit 0: counter 2's gate.
const P61_GATE2: u8 = 0x01;
/// Bit 1: speaker data enable (counter 2's output to the speaker).
const P61_SPEAKER: u8 = 0x02;
/// Bits 0-3 are read/write (bits 2-3 are the parity and channel-check enables, stored only).
const P61_WRITABLE: u8 = 0x0f;
/// Bit 4: DRAM refresh request, toggling (read only).
const P61_REFRESH: u8 = 0x10;
/// Bit 5: counter 2's output (read only).
const P61_OUT2: u8 = 0x20;
/// The refresh bit toggles every 15.085 µs, counter 1's refresh period at the standard
/// divisor of 18; software times short delays by counting its toggles.
const REFRESH_PERIOD_NS: u64 = 15_085;

/// The clock tick in progress at `ns`.
fn ns_to_tick(ns: u64) -> u64 {
    (u128::from(ns) * u128::from(PIT_HZ) / u128::from(NS_PER_S)) as u64
}

/// The first nanosecond at which tick `tick` has begun.
pub fn tick_to_ns(tick: u64) -> u64 {
    let ns = (u128::from(tick) * u128::from(NS_PER_S)).div_ceil(u128::from(PIT_HZ));
    ns.min(u128::from(u64::MAX)) as u64
}

fn from_bcd(v: u16) -> u32 {
    // A digit above 9 is not a BCD digit; it counts as 9.
    (0..4).rev().fold(0, |acc, i| {
        acc * 10 + u32::from((v >> (4 * i)) & 0xf).min(9)
    })
}

fn to_bcd(v: u32) -> u16 {
    (0..4).fold(0, |acc, i| {
        acc | (((v / 10u32.pow(i)) % 10) as u16) << (4 * i)
    })
}

/// One counter, as plain data (also its snapshot).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PitCounterState {
    /// Bits 5-0 of the last control word: access mode, counting mode, BCD.
    pub control: u8,
    /// The count register as the guest wrote it (BCD-coded in BCD mode).
    pub count: u16,
    /// The count of the current run in ticks (1 to 65536, or 10000 in BCD).
    pub active: u32,
    /// The clock tick at which the current run started.
    pub load_tick: u64,
    /// Counting: a count was loaded since the control word (and, in modes 1 and 5, the gate
    /// triggered it).
    pub armed: bool,
    /// A count was written since the control word.
    pub count_written: bool,
    /// Ticks elapsed in the run when a low gate stopped the counting.
    pub frozen: Option<u64>,
    /// In modes 2 and 3, a count written while counting: (tick it takes effect, count).
    pub pending: Option<(u64, u32)>,
    /// A written count is not yet in the counting element.
    pub null_count: bool,
    /// The gate input.
    pub gate: bool,
    /// A latched count, until read.
    pub latched: Option<u16>,
    /// A latched status byte, until read.
    pub status: Option<u8>,
    /// In low-then-high access, the next read returns the high byte.
    pub read_hi: bool,
    /// In low-then-high access, the next write is the high byte.
    pub write_hi: bool,
    /// The low byte written before the high one.
    pub write_lo: u8,
}

impl PitCounterState {
    fn mode(&self) -> u8 {
        match (self.control >> CW_MODE_SHIFT) & 7 {
            m @ 6..=7 => m - 4,
            m => m,
        }
    }

    fn access(&self) -> u8 {
        match (self.control >> CW_ACCESS_SHIFT) & 3 {
            ACCESS_LATCH => ACCESS_WORD, // only at power-on: no control word yet
            a => a,
        }
    }

    fn bcd(&self) -> bool {
        self.control & CW_BCD != 0
    }

    fn modulus(&self) -> u64 {
        if self.bcd() {
            10_000
        } else {
            0x1_0000
        }
    }

    /// The count register as ticks (0 is the largest count).
    fn reload(&self) -> u32 {
        let n = if self.bcd() {
            from_bcd(self.count)
        } else {
            u32::from(self.count)
        };
        if n == 0 {
            self.modulus() as u32
        } else {
            n
        }
    }

    fn elapsed(&self, now: u64) -> u64 {
        self.frozen
            .unwrap_or_else(|| now.saturating_sub(self.load_tick))
    }

    /// Starts a run of the count register at `now` (stopped if the gate is low in the modes
    /// the gate stops).
    fn start(&mut self, now: u64) {
        self.active = self.reload();
        self.load_tick = now;
        self.armed = true;
        self.null_count = false;
        self.pending = None;
        self.frozen = (!self.gate && !matches!(self.mode(), 1 | 5)).then_some(0);
    }

    /// The count register was written.
    fn count_loaded(&mut self, now: u64) {
        self.count_written = true;
        self.null_count = true;
        match self.mode() {
            2 | 3 if self.armed && self.frozen.is_none() => {
                // Takes effect when the current period ends.
                let end = self.next_rise_after(now).unwrap_or(now);
                self.pending = Some((end, self.reload()));
            }
            1 | 5 => {} // waits for a gate trigger
            _ => self.start(now),
        }
    }

    fn set_gate(&mut self, high: bool, now: u64) {
        if high == self.gate {
            return;
        }
        self.gate = high;
        match (self.mode(), high) {
            (0 | 4, true) => {
                if let Some(d) = self.frozen.take() {
                    self.load_tick = now.saturating_sub(d);
                }
            }
            (1 | 5, true) if self.count_written => self.start(now),
            (2 | 3, true) if self.armed => self.start(now),
            (0 | 2 | 3 | 4, false) if self.armed => self.frozen = Some(self.elapsed(now)),
            _ => {}
        }
    }

    /// Applies a pending count whose period boundary has passed.
    fn sync(&mut self, now: u64) {
        if let Some((at, n)) = self.pending {
            if at <= now && self.frozen.is_none() {
                self.pending = None;
                self.active = n;
                self.load_tick = at;
                self.null_count = false;
            }
        }
    }

    /// The counting element at `now`, as the guest reads it (BCD-coded in BCD mode).
    fn value(&self, now: u64) -> u16 {
        let m = self.modulus();
        let n = u64::from(self.active.max(1));
        let v = if !self.armed {
            u64::from(self.reload())
        } else {
            let d = self.elapsed(now);
            match self.mode() {
                2 => n - d % n,
                3 => {
                    let (p, half) = (d % n, n.div_ceil(2));
                    n.saturating_sub(2 * if p < half { p } else { p - half })
                }
                _ => (n + m - d % m) % m,
            }
        } % m;
        if self.bcd() {
            to_bcd(v as u32)
        } else {
            v as u16
        }
    }

    /// The OUT pin at `now`.
    fn out(&self, now: u64) -> bool {
        if !self.armed {
            return self.mode() != 0; // mode 0 goes low with its control word
        }
        let (n, d) = (u64::from(self.active.max(1)), self.elapsed(now));
        match self.mode() {
            0 | 1 => d >= n,
            2 => self.frozen.is_some() || d % n != n - 1,
            3 => self.frozen.is_some() || d % n < n.div_ceil(2),
            _ => d != n,
        }
    }

    /// The first tick after `t` at which OUT rises from counting (the IRQ 0 edges): the end
    /// of every period in modes 2 and 3, terminal count in modes 0 and 1, the end of the
    /// one-tick strobe in modes 4 and 5.
    fn next_rise_after(&self, t: u64) -> Option<u64> {
        if !self.armed || self.frozen.is_some() {
            return None;
        }
        if let Some((at, _)) = self.pending.filter(|&(at, _)| at > t) {
            return Some(at);
        }
        let (n, d) = (
            u64::from(self.active.max(1)),
            t.saturating_sub(self.load_tick),
        );
        match self.mode() {
            0 | 1 => (d < n).then_some(self.load_tick + n),
            2 | 3 => Some(self.load_tick + (d / n + 1) * n),
            _ => (d <= n).then_some(self.load_tick + n + 1),
        }
    }

    fn status_byte(&self, now: u64) -> u8 {
        let out = if self.out(now) { STATUS_OUT } else { 0 };
        let null = if self.null_count {
            STATUS_NULL_COUNT
        } else {
            0
        };
        out | null | self.control & CW_COUNTER_BITS
    }

    fn read(&mut self, now: u64) -> u8 {
        if let Some(status) = self.status.take() {
            return status;
        }
        let v = self.latched.unwrap_or_else(|| self.value(now));
        let (byte, done) = match self.access() {
            ACCESS_LSB => (v as u8, true),
            ACCESS_MSB => ((v >> 8) as u8, true),
            _ => {
                self.read_hi = !self.read_hi;
                if self.read_hi {
                    (v as u8, false)
                } else {
                    ((v >> 8) as u8, true)
                }
            }
        };
        if done {
            self.latched = None;
        }
        byte
    }

    fn write(&mut self, value: u8, now: u64) {
        match self.access() {
            ACCESS_LSB => self.count = u16::from(value),
            ACCESS_MSB => self.count = u16::from(value) << 8,
            _ if !self.write_hi => {
                self.write_hi = true;
                self.write_lo = value;
                if self.mode() == 0 {
                    self.armed = false; // the first byte stops counting; OUT goes low
                }
                return;
            }
            _ => {
                self.write_hi = false;
                self.count = u16::from(self.write_lo) | u16::from(value) << 8;
            }
        }
        self.count_loaded(now);
    }

    fn control_word(&mut self, value: u8, now: u64) {
        if (value >> CW_ACCESS_SHIFT) & 3 == ACCESS_LATCH {
            // A second latch before the first is read changes nothing.
            if self.latched.is_none() {
                self.latched = Some(self.value(now));
            }
            return;
        }
        let gate = self.gate;
        *self = PitCounterState {
            control: value & CW_COUNTER_BITS,
            count: self.count,
            gate,
            null_count: true,
            ..PitCounterState::default()
        };
    }
}

/// A snapshot of the PIT and port 0x61 (plain data). Its ticks count from the clock's zero,
/// so it restores against a clock with the same origin.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PitState {
    /// Counters 0-2.
    pub counters: [PitCounterState; 3],
    /// The writable bits of port 0x61.
    pub port61: u8,
    /// Every IRQ 0 edge up to this tick has been raised.
    pub irq_checked_tick: u64,
}

/// The 8254 PIT with port 0x61's state.
///
/// IRQ 0 is raised with the PIT locked: the line must not lock the PIT itself.
pub struct Pit {
    clock: Arc<dyn Clock>,
    irq0: Arc<dyn IrqLine>,
    counters: [PitCounterState; 3],
    port61: u8,
    irq_checked_tick: u64,
}

impl Pit {
    /// A PIT at power-on: no counter programmed, gates 0 and 1 high, gate 2 low (port 0x61
    /// clear). Counter 0's output pulses `irq0`.
    pub fn new(clock: Arc<dyn Clock>, irq0: Arc<dyn IrqLine>) -> Pit {
        let counter = |gate| PitCounterState {
            control: ACCESS_WORD << CW_ACCESS_SHIFT,
            gate,
            ..PitCounterState::default()
        };
        let irq_checked_tick = ns_to_tick(clock.now_ns());
        Pit {
            clock,
            irq0,
            counters: [counter(true), counter(true), counter(false)],
            port61: 0,
            irq_checked_tick,
        }
    }

    fn now_tick(&self) -> u64 {
        ns_to_tick(self.clock.now_ns())
    }

    /// Raises IRQ 0 if counter 0's output rose since the last update (once, however many
    /// periods passed: the PIC latches one edge anyway).
    pub fn update(&mut self) {
        let now = self.now_tick();
        if self.counters[0]
            .next_rise_after(self.irq_checked_tick)
            .is_some_and(|t| t <= now)
        {
            self.irq0.pulse();
        }
        self.irq_checked_tick = self.irq_checked_tick.max(now);
        for c in &mut self.counters {
            c.sync(now);
        }
    }

    /// When IRQ 0 next rises (virtual ns), if counter 0 is counting towards an edge. May be
    /// in the past if [`Pit::update`] is overdue.
    pub fn next_deadline_ns(&self) -> Option<u64> {
        self.counters[0]
            .next_rise_after(self.irq_checked_tick)
            .map(tick_to_ns)
    }

    /// Reads the byte at `offset` (0-3) of ports 0x40-0x43.
    pub fn read_port(&mut self, offset: u16) -> u8 {
        self.update();
        let now = self.now_tick();
        match self.counters.get_mut(usize::from(offset)) {
            Some(c) => c.read(now),
            None => {
                // The control register is write-only; the bus floats.
                tracing::debug!(offset, "PIT read of the control register or beyond");
                0xff
            }
        }
    }

    /// Writes the byte at `offset` (0-3) of ports 0x40-0x43.
    pub fn write_port(&mut self, offset: u16, value: u8) {
        self.update();
        let now = self.now_tick();
        match offset {
            0..COUNTERS => self.counters[usize::from(offset)].write(value, now),
            CONTROL => match value >> CW_SELECT_SHIFT {
                SELECT_READ_BACK => self.read_back(value, now),
                i => self.counters[usize::from(i)].control_word(value, now),
            },
            _ => tracing::warn!(offset, value, "PIT write beyond its ports"),
        }
    }

    fn read_back(&mut self, value: u8, now: u64) {
        for (i, c) in self.counters.iter_mut().enumerate() {
            if value & (RB_COUNTER0 << i) == 0 {
                continue;
            }
            if value & RB_NO_COUNT == 0 && c.latched.is_none() {
                c.latched = Some(c.value(now));
            }
            if value & RB_NO_STATUS == 0 && c.status.is_none() {
                c.status = Some(c.status_byte(now));
            }
        }
    }

    /// Reads port 0x61: the gate and speaker bits as written, the refresh toggle and
    /// counter 2's output.
    pub fn read_port61(&mut self) -> u8 {
        self.update();
        let now_ns = self.clock.now_ns();
        let refresh = if (now_ns / REFRESH_PERIOD_NS) & 1 != 0 {
            P61_REFRESH
        } else {
            0
        };
        let out2 = if self.counters[2].out(ns_to_tick(now_ns)) {
            P61_OUT2
        } else {
            0
        };
        self.port61 | refresh | out2
    }

    /// Writes port 0x61: bit 0 is counter 2's gate; the read-only bits are ignored.
    pub fn write_port61(&mut self, value: u8) {
        self.update();
        let now = self.now_tick();
        self.port61 = value & P61_WRITABLE;
        self.counters[2].set_gate(value & P61_GATE2 != 0, now);
    }

    /// Whether the speaker sounds: enabled in port 0x61 and counter 2's output high.
    pub fn speaker_on(&self) -> bool {
        self.port61 & P61_SPEAKER != 0 && self.counters[2].out(self.now_tick())
    }

    /// Counter `i` (0-2), for tests and debugging.
    pub fn counter(&self, i: usize) -> Option<&PitCounterState> {
        self.counters.get(i)
    }

    /// A snapshot.
    pub fn state(&self) -> PitState {
        PitState {
            counters: self.counters.clone(),
            port61: self.port61,
            irq_checked_tick: self.irq_checked_tick,
        }
    }

    /// Restores a snapshot taken with [`Pit::state`].
    pub fn restore(&mut self, state: &PitState) {
        self.counters = state.counters.clone();
        self.port61 = state.port61;
        self.irq_checked_tick = state.irq_checked_tick;
    }
}

/// Ports 0x40-0x43 of a shared [`Pit`].
#[derive(Clone)]
pub struct PitPorts {
    /// The timer.
    pub pit: Arc<Mutex<Pit>>,
}

impl PortDevice for PitPorts {
    fn read(&mut self, offset: u16, size: u8) -> u32 {
        let mut pit = self.pit.lock();
        read_bytes(offset, size, |o| pit.read_port(o))
    }

    fn write(&mut self, offset: u16, size: u8, value: u32) {
        let mut pit = self.pit.lock();
        write_bytes(offset, size, value, |o, v| pit.write_port(o, v));
    }
}

/// Port 0x61 (system control port B), sharing the [`Pit`] for counter 2's gate and output.
#[derive(Clone)]
pub struct Port61 {
    /// The timer.
    pub pit: Arc<Mutex<Pit>>,
}

impl PortDevice for Port61 {
    fn read(&mut self, offset: u16, size: u8) -> u32 {
        let mut pit = self.pit.lock();
        read_bytes(offset, size, |o| match o {
            0 => pit.read_port61(),
            _ => {
                tracing::warn!(offset = o, "port 0x61 read beyond its port");
                0xff
            }
        })
    }

    fn write(&mut self, offset: u16, size: u8, value: u32) {
        let mut pit = self.pit.lock();
        write_bytes(offset, size, value, |o, v| match o {
            0 => pit.write_port61(v),
            _ => tracing::warn!(offset = o, value = v, "port 0x61 write beyond its port"),
        });
    }
}

#[cfg(test)]
mod tests;
