//! The ACPI fixed hardware of a PIIX4-like power management block (ACPI spec chapter 4):
//! PM1a event and control registers and the PM timer, at an I/O base the FADT names (QEMU
//! uses 0x600, [`ACPI_PM_BASE`]); and the reset control register at port 0xCF9.
//!
//! Layout from the base: PM1a_STS (0x00, 16 bits, write 1 to clear), PM1a_EN (0x02, 16
//! bits), PM1a_CNT (0x04, 16 bits), PM_TMR (0x08, 32 bits, read only). The FADT should give
//! `PM1_EVT_LEN = 4`, `PM1_CNT_LEN = 2`, `PM_TMR_LEN = 4` and leave `TMR_VAL_EXT` clear: the
//! timer is 24 bits wide. The rest of the 64-byte block reads as all-ones.
//!
//! The PM timer runs at 3.579545 MHz from the [`Clock`] (ticks are
//! `floor(ns * 3579545 / 1e9)` on one global grid) and sets `TMR_STS` each time its bit 23
//! changes. The SCI is a level: high while any status bit with an enable bit (timer, global
//! lock, power button, sleep button, RTC) is set together with its enable, regardless of
//! `SCI_EN`, as on QEMU's PIIX4 (there is no SMI mode to route events to instead).
//!
//! `SCI_EN` reads 1 and ignores writes: the board has no SMI mode (the FADT's `SMI_CMD` is
//! 0), and the ACPI spec makes the bit the hardware's to set (ACPI 6.5, table 4.13: "It is
//! the responsibility of the hardware to set or reset this bit. OSPM always preserves this
//! bit position"), so a machine that cannot leave ACPI mode shows it always set. An OS that
//! follows the spec's mode switch (write `ACPI_ENABLE` to `SMI_CMD` when `SCI_EN` is clear,
//! then wait for it) would otherwise find no port to write and wait forever; QEMU's PIIX4,
//! which has SMM, starts with it clear until the OS writes `ACPI_ENABLE` to port 0xB2.
//!
//! Sleep: writing `SLP_EN` with `SLP_TYP` latches a request the machine collects with
//! [`AcpiPm::take_sleep_request`]. The DSDT must use QEMU's PIIX4 values: `_S5` = SLP_TYP 0
//! ([`SLP_TYP_S5`], soft off), `_S3` = 1 ([`SLP_TYP_S3`]).

use std::sync::Arc;

use parking_lot::Mutex;

use crate::{read_bytes, write_bytes, Clock, IrqLine, PortDevice};

/// The I/O base QEMU's PIIX4 PM uses (and the FADT names).
pub const ACPI_PM_BASE: u16 = 0x600;
/// Size of the I/O block.
pub const ACPI_PM_LEN: u16 = 0x40;
/// The PM timer's frequency in Hz.
pub const PM_TIMER_HZ: u64 = 3_579_545;
/// The SLP_TYP value that requests S5 (soft off), as the DSDT's `_S5` package says.
pub const SLP_TYP_S5: u8 = 0;
/// The SLP_TYP value that requests S3 (suspend to RAM), as the DSDT's `_S3` package says.
pub const SLP_TYP_S3: u8 = 1;
/// The reset control register's port.
pub const RESET_CONTROL_PORT: u16 = 0xcf9;
const NS_PER_S: u64 = 1_000_000_000;

// Offsets within the block.
/// PM1a_STS, 16 bits.
const PM1_STS: u16 = 0x00;
/// PM1a_EN, 16 bits.
const PM1_EN: u16 = 0x02;
/// PM1a_CNT, 16 bits.
const PM1_CNT: u16 = 0x04;
/// PM_TMR, 32 bits (read only).
const PM_TMR: u16 = 0x08;
/// End of the timer register.
const PM_TMR_END: u16 = 0x0c;

// PM1 status (write 1 to clear) and enable bits.
/// Bit 0: the PM timer's bit 23 changed.
pub const TMR_STS: u16 = 1 << 0;
/// Bit 4: bus master activity (no enable).
const BM_STS: u16 = 1 << 4;
/// Bit 5: the BIOS released the global lock.
const GBL_STS: u16 = 1 << 5;
/// Bit 8: the power button was pressed.
pub const PWRBTN_STS: u16 = 1 << 8;
/// Bit 9: the sleep button was pressed.
const SLPBTN_STS: u16 = 1 << 9;
/// Bit 10: the RTC alarm fired.
const RTC_STS: u16 = 1 << 10;
/// Bit 15: the system woke up (set on wake from a sleep state).
const WAK_STS: u16 = 1 << 15;
/// The status bits that exist (all write 1 to clear).
const STS_BITS: u16 = TMR_STS | BM_STS | GBL_STS | PWRBTN_STS | SLPBTN_STS | RTC_STS | WAK_STS;
/// The status bits with an enable bit at the same position, which raise the SCI.
const EN_BITS: u16 = TMR_STS | GBL_STS | PWRBTN_STS | SLPBTN_STS | RTC_STS;

// PM1 control.
/// Bit 0: SCI enable (events go to the SCI rather than an SMI): always set here.
pub const SCI_EN: u16 = 1 << 0;
/// Bit 1: bus master requests wake the processor from C3.
const BM_RLD: u16 = 1 << 1;
/// Bit 2: release the global lock to the BIOS (write only, reads 0).
const GBL_RLS: u16 = 1 << 2;
/// Bits 12-10: the sleep type.
const SLP_TYP_SHIFT: u32 = 10;
/// The sleep type field.
const SLP_TYP_MASK: u16 = 7 << SLP_TYP_SHIFT;
/// Bit 13: enter the sleep state in SLP_TYP (write only, reads 0).
const SLP_EN: u16 = 1 << 13;
/// The bits that read back as written.
const CNT_BITS: u16 = SCI_EN | BM_RLD | SLP_TYP_MASK;

/// The PM timer is 24 bits wide.
const TMR_MASK: u64 = 0x00ff_ffff;
/// `TMR_STS` is set each time the count crosses a multiple of 2^23.
const TMR_STS_SHIFT: u32 = 23;

// Reset control register (port 0xCF9).
/// Bit 1: with RST_CPU, a hard (system) reset rather than a CPU-only one.
const RC_SYS_RST: u8 = 1 << 1;
/// Bit 2: writing 1 resets.
const RC_RST_CPU: u8 = 1 << 2;
/// Bit 3: a full reset (power cycle) with SYS_RST (PIIX4).
const RC_FULL_RST: u8 = 1 << 3;

/// The PM timer tick in progress at `ns`.
pub fn ns_to_tick(ns: u64) -> u64 {
    (u128::from(ns) * u128::from(PM_TIMER_HZ) / u128::from(NS_PER_S)) as u64
}

/// The first nanosecond at which tick `tick` has begun (saturating).
pub fn tick_to_ns(tick: u64) -> u64 {
    let ns = (u128::from(tick) * u128::from(NS_PER_S)).div_ceil(u128::from(PM_TIMER_HZ));
    ns.min(u128::from(u64::MAX)) as u64
}

/// A snapshot of the PM block (plain data).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AcpiPmState {
    /// PM1a_STS.
    pub sts: u16,
    /// PM1a_EN.
    pub en: u16,
    /// PM1a_CNT's readable bits.
    pub cnt: u16,
    /// Timer overflows up to this PM timer tick have been seen.
    pub checked_tick: u64,
    /// A sleep request not yet collected: its SLP_TYP.
    pub sleep_request: Option<u8>,
    /// The level the SCI is driven at.
    pub sci: bool,
}

/// The PM1a registers and the PM timer.
///
/// The SCI is driven with the block locked: the line must not lock it itself.
pub struct AcpiPm {
    clock: Arc<dyn Clock>,
    sci: Arc<dyn IrqLine>,
    s: AcpiPmState,
}

impl AcpiPm {
    /// A block at power-on: no status, nothing enabled, SCI_EN set (ACPI mode, the only
    /// one), the SCI low.
    pub fn new(clock: Arc<dyn Clock>, sci: Arc<dyn IrqLine>) -> AcpiPm {
        let checked_tick = ns_to_tick(clock.now_ns());
        AcpiPm {
            clock,
            sci,
            s: AcpiPmState {
                checked_tick,
                cnt: SCI_EN,
                ..AcpiPmState::default()
            },
        }
    }

    fn now_tick(&self) -> u64 {
        ns_to_tick(self.clock.now_ns())
    }

    /// The PM timer's value now (24 bits).
    pub fn timer(&self) -> u32 {
        (self.now_tick() & TMR_MASK) as u32
    }

    /// Sets `TMR_STS` if the timer's bit 23 changed since the last update, and drives the SCI.
    pub fn update(&mut self) {
        let now = self.now_tick();
        if now >> TMR_STS_SHIFT > self.s.checked_tick >> TMR_STS_SHIFT {
            self.s.sts |= TMR_STS;
        }
        self.s.checked_tick = self.s.checked_tick.max(now);
        self.sync_sci();
    }

    fn sync_sci(&mut self) {
        let level = self.s.sts & self.s.en & EN_BITS != 0;
        if level != self.s.sci {
            self.s.sci = level;
            self.sci.set_level(level);
        }
    }

    /// When the timer next sets `TMR_STS` with its enable set (virtual ns), if that would
    /// raise the SCI. May be in the past if [`AcpiPm::update`] is overdue.
    pub fn next_deadline_ns(&self) -> Option<u64> {
        (self.s.en & TMR_STS != 0 && self.s.sts & TMR_STS == 0)
            .then(|| tick_to_ns(((self.s.checked_tick >> TMR_STS_SHIFT) + 1) << TMR_STS_SHIFT))
    }

    /// The power button was pressed: sets `PWRBTN_STS` (an SCI if enabled).
    pub fn press_power_button(&mut self) {
        self.update();
        self.s.sts |= PWRBTN_STS;
        self.sync_sci();
    }

    /// Whether `SCI_EN` is set (the machine is in ACPI mode): always, see the module docs.
    pub fn sci_enabled(&self) -> bool {
        self.s.cnt & SCI_EN != 0
    }

    /// The sleep state the guest asked for since the last call: its SLP_TYP
    /// ([`SLP_TYP_S5`] is power off).
    pub fn take_sleep_request(&mut self) -> Option<u8> {
        self.s.sleep_request.take()
    }

    /// Whether an RTC alarm may wake the machine from a sleep state (`RTC_EN`).
    pub fn rtc_wake_enabled(&self) -> bool {
        self.s.en & RTC_STS != 0
    }

    /// Whether the power button was pressed (`PWRBTN_STS`), which wakes a sleeping machine
    /// whatever the enables say.
    pub fn power_button_pressed(&self) -> bool {
        self.s.sts & PWRBTN_STS != 0
    }

    /// The machine resumed from a sleep state: sets `WAK_STS`, and `RTC_STS` when the RTC
    /// alarm woke it (as QEMU's PIIX4 does on an RTC wake-up).
    pub fn wake(&mut self, by_rtc: bool) {
        self.s.sts |= WAK_STS;
        if by_rtc {
            self.s.sts |= RTC_STS;
        }
        self.sync_sci();
    }

    fn read_byte(&self, offset: u16, timer: u32) -> u8 {
        let lane = |v: u16| (v >> (8 * (offset & 1))) as u8;
        match offset {
            0..2 => lane(self.s.sts),
            2..4 => lane(self.s.en),
            4..6 => lane(self.s.cnt),
            PM_TMR..PM_TMR_END => (timer >> (8 * (offset - PM_TMR))) as u8,
            _ => {
                tracing::debug!(offset, "ACPI PM read of an unimplemented register");
                0xff
            }
        }
    }

    fn write_byte(&mut self, offset: u16, value: u8) {
        let shift = 8 * (offset & 1);
        let (v, m) = (u16::from(value) << shift, 0xff << shift);
        match offset & !1 {
            PM1_STS => self.s.sts &= !(v & m & STS_BITS),
            PM1_EN => self.s.en = (self.s.en & !m | v & m) & EN_BITS,
            PM1_CNT => {
                // SCI_EN belongs to the hardware (see the module docs).
                self.s.cnt = (self.s.cnt & !m | v & m) & CNT_BITS | SCI_EN;
                if v & m & SLP_EN != 0 {
                    let typ = ((self.s.cnt & SLP_TYP_MASK) >> SLP_TYP_SHIFT) as u8;
                    tracing::info!(slp_typ = typ, "ACPI sleep request");
                    self.s.sleep_request = Some(typ);
                }
                if v & m & GBL_RLS != 0 {
                    tracing::debug!("ACPI GBL_RLS written: no BIOS to notify");
                }
            }
            PM_TMR..PM_TMR_END => tracing::debug!(value, "ACPI PM timer is read only"),
            _ => tracing::debug!(offset, value, "ACPI PM write to an unimplemented register"),
        }
    }

    /// A snapshot.
    pub fn state(&self) -> AcpiPmState {
        self.s.clone()
    }

    /// Restores a snapshot taken with [`AcpiPm::state`] (and drives the SCI to match).
    pub fn restore(&mut self, state: &AcpiPmState) {
        let sci = self.s.sci;
        self.s = state.clone();
        self.s.sci = sci;
        self.sync_sci();
    }
}

impl PortDevice for AcpiPm {
    fn read(&mut self, offset: u16, size: u8) -> u32 {
        self.update();
        let timer = self.timer();
        read_bytes(offset, size, |o| self.read_byte(o, timer))
    }

    fn write(&mut self, offset: u16, size: u8, value: u32) {
        self.update();
        write_bytes(offset, size, value, |o, v| self.write_byte(o, v));
        self.sync_sci();
    }
}

/// The I/O block of a shared [`AcpiPm`] (the machine keeps the other handle to poll sleep
/// requests and schedule the timer).
#[derive(Clone)]
pub struct AcpiPmPorts {
    /// The PM block.
    pub pm: Arc<Mutex<AcpiPm>>,
}

impl PortDevice for AcpiPmPorts {
    fn read(&mut self, offset: u16, size: u8) -> u32 {
        self.pm.lock().read(offset, size)
    }

    fn write(&mut self, offset: u16, size: u8, value: u32) {
        self.pm.lock().write(offset, size, value)
    }

    /// PM_TMR only reports the clock. Its overflow (TMR_STS and the SCI) happens at a
    /// deadline the machine stops at anyway, so a read before it changes nothing.
    fn read_changes_state(&self, offset: u16) -> bool {
        !(PM_TMR..PM_TMR_END).contains(&offset)
    }
}

/// What a write to the reset control register asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResetKind {
    /// RST_CPU alone: reset the processor only (an INIT).
    Cpu,
    /// RST_CPU with SYS_RST (0x06, or 0x0E for a full reset): reset the whole system.
    System,
}

/// The reset control register at port 0xCF9 (PIIX3/PIIX4 `RC`), one byte.
///
/// Writing a value with RST_CPU (bit 2) set latches a reset request for the machine to
/// collect with [`ResetControl::take_reset_request`]: 0x06 and 0x0E are the system resets
/// firmware and Linux (`reboot=pci`) write. Bits 1 and 3 read back; bit 2 reads 0.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResetControl {
    value: u8,
    request: Option<ResetKind>,
}

impl ResetControl {
    /// The register at power-on (0).
    pub fn new() -> ResetControl {
        ResetControl::default()
    }

    /// The reset asked for since the last call.
    pub fn take_reset_request(&mut self) -> Option<ResetKind> {
        self.request.take()
    }

    /// Reads the register.
    pub fn read_byte(&self) -> u8 {
        self.value
    }

    /// Writes the register.
    pub fn write_byte(&mut self, value: u8) {
        self.value = value & (RC_SYS_RST | RC_FULL_RST);
        if value & RC_RST_CPU != 0 {
            let kind = if value & RC_SYS_RST != 0 {
                ResetKind::System
            } else {
                ResetKind::Cpu
            };
            tracing::info!(value, ?kind, "reset requested through port 0xCF9");
            self.request = Some(kind);
        }
    }
}

impl PortDevice for ResetControl {
    fn read(&mut self, offset: u16, size: u8) -> u32 {
        read_bytes(offset, size, |o| match o {
            0 => self.read_byte(),
            _ => 0xff,
        })
    }

    fn write(&mut self, offset: u16, size: u8, value: u32) {
        write_bytes(offset, size, value, |o, v| match o {
            0 => self.write_byte(v),
            _ => tracing::debug!(offset = o, value = v, "write beyond port 0xCF9 dropped"),
        })
    }
}

#[cfg(test)]
mod tests;
