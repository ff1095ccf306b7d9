//! ACPI S3, suspend to RAM, on the PC board: the sleep itself (the hardware's part) and the
//! resume at the OS's waking vector (the part a BIOS plays on a real PC).
//!
//! Writing SLP_TYP = 1 ([`SLP_TYP_S3`](crane86_devices::acpi_pm::SLP_TYP_S3), QEMU's PIIX4
//! value) with SLP_EN to PM1a_CNT stops the CPU. RAM and the devices keep their state; of
//! the timers only the RTC counts for waking (the others are powered down on a PC, so
//! their deadlines do not end the sleep). The machine wakes when the RTC's alarm interrupt
//! is asserted while PM1_EN.RTC_EN is set, when the power button was pressed, or on input
//! at the console (as a keypress wakes a PC; otherwise a guest put to sleep without an
//! alarm could only be stopped); PM1_STS
//! then shows WAK_STS (and RTC_STS for an RTC wake), as on QEMU. The CPU restarts as after
//! a reset and, as firmware does on a resume, jumps in real mode to the waking vector the
//! OS left in the FACS (the 64-bit `X_Firmware_Waking_Vector` if non-zero, else the 32-bit
//! one; CS = vector / 16, IP = vector % 16, ACPI 6.5 section 16.3.2). Without a FACS at the
//! firmware's address (a multiboot kernel over the tables' area) or a vector in the first
//! MiB, firmware would boot afresh: the run ends with a reset request.
//!
//! The DSDT's `\_S3` package names that value, so Linux offers `mem` sleep and resumes
//! through this path (with the RTC's wake alarm armed).
//!
//! The instruction count (the virtual clock) and the TSC continue across the sleep: time
//! the machine slept is skipped like idle time.

use crane86_firmware::acpi::{FACS_ADDR, FACS_WAKING_VECTOR, FACS_X_WAKING_VECTOR};
use crane86_runtime::phase::Phase;
use crane86_runtime::state::EXIT_STOP;
use crane86_runtime::{CpuMode, CpuState, SegReg, Segment};
use std::sync::atomic::Ordering;

use super::irq::Wake;
use super::Pc;
use crate::{Machine, RunEnd};

/// What ended a sleep.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum WakeEvent {
    /// The RTC's alarm interrupt, with RTC_EN set.
    Rtc,
    /// The power button.
    PowerButton,
    /// Input at the console (COM1 from the host), as a key wakes a PC: the bytes also
    /// reach the UART as usual.
    Input,
}

impl Pc {
    /// The wake event of a sleeping machine, if one happened.
    fn wake_event(&self) -> Option<WakeEvent> {
        let pm = self.pm.lock();
        if pm.rtc_wake_enabled() && self.rtc.lock().alarm_interrupt() {
            return Some(WakeEvent::Rtc);
        }
        if pm.power_button_pressed() {
            return Some(WakeEvent::PowerButton);
        }
        (self.input_bytes != self.input_at_sleep).then_some(WakeEvent::Input)
    }

    /// When the RTC may next raise its interrupt, if that could wake the machine.
    fn wake_deadline(&self) -> Option<u64> {
        if !self.pm.lock().rtc_wake_enabled() {
            return None;
        }
        self.rtc.lock().next_deadline_ns()
    }
}

impl Machine {
    /// The machine sleeps in S3 until a wake event, then resumes at the OS's waking vector
    /// (see the module documentation). `None`: it runs on; otherwise how the run ends (a
    /// stop request leaves it asleep, and the next run goes on sleeping).
    pub(crate) fn suspend_to_ram(&mut self) -> Option<RunEnd> {
        let pc = self.pc.as_mut()?;
        if !pc.suspended {
            tracing::info!("ACPI S3: the machine sleeps");
            pc.suspended = true;
            pc.input_at_sleep = pc.input_bytes;
        }
        // The sleep is idle time in `--stats`' phases, as a HLT's wait is.
        let phase = self.phase.get();
        self.phase.set(Phase::Idle);
        let wake = pc.wait(
            &mut self.cpu,
            |pc| pc.wake_event().is_some(),
            Pc::wake_deadline,
        );
        self.phase.set(phase);
        match wake {
            Wake::Event => {}
            Wake::Stopped => return Some(RunEnd::Stopped),
            // No wake source left (RTC_EN clear, no host input to come): asleep for good.
            Wake::Never => {
                tracing::warn!("ACPI S3: nothing can wake the machine (no RTC wake alarm, no console input): the run ends");
                return Some(RunEnd::Halted);
            }
        }
        let by_rtc = pc.wake_event() == Some(WakeEvent::Rtc);
        pc.suspended = false;
        pc.pm.lock().wake(by_rtc);
        pc.note_device_access();
        tracing::info!(by_rtc, "ACPI S3: wake-up");
        match self.waking_vector() {
            Some(vector) => {
                self.restart_cpu_at(vector);
                None
            }
            None => {
                tracing::info!("ACPI S3: no waking vector in the FACS: the firmware would boot");
                Some(RunEnd::Reset)
            }
        }
    }

    /// The waking vector the OS left in the FACS, if it is one firmware can jump to in real
    /// mode.
    fn waking_vector(&mut self) -> Option<u64> {
        if self.mem.read_phys(FACS_ADDR, 4) != u64::from(u32::from_le_bytes(*b"FACS")) {
            return None;
        }
        let x = self.mem.read_phys(FACS_ADDR + FACS_X_WAKING_VECTOR, 8);
        let v = match x {
            0 => self.mem.read_phys(FACS_ADDR + FACS_WAKING_VECTOR, 4),
            x => x,
        };
        (v != 0 && v < 1 << 20).then_some(v)
    }

    /// The CPU as after a reset, then at `vector` in real mode (CS = vector / 16): what
    /// firmware hands a resuming OS. The instruction count, the TSC (and TSC_ADJUST), a pending stop request
    /// and the machine's phase cell carry over.
    fn restart_cpu_at(&mut self, vector: u64) {
        let mut cpu = CpuState::new(CpuMode::Real16);
        // The machine's phase cell, as `Machine::run` gives every CPU state it runs.
        cpu.phase = self.phase.clone();
        cpu.retired = self.cpu.retired;
        cpu.msr.tsc_offset = self.cpu.msr.tsc_offset;
        cpu.msr.tsc_adjust = self.cpu.msr.tsc_adjust;
        let stop = self.cpu.exit_request.load(Ordering::Acquire) & EXIT_STOP;
        cpu.exit_request.store(stop, Ordering::Release);
        cpu.seg[SegReg::Cs as usize] = Segment::real((vector >> 4) as u16);
        cpu.rip = vector & 0xf;
        self.cpu = cpu;
        self.irq_shadow = false;
        self.retry_interpreted = false;
        self.db_blocked = None;
    }
}
