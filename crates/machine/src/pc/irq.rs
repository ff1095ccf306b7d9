//! Time and interrupts between blocks: the run loop's view of the PC's devices.
//!
//! Between two blocks the loop moves the virtual clock to "retired instructions + idle
//! time", brings the timers up to date when a deadline has passed or the guest touched a
//! device, and delivers the highest pending interrupt when RFLAGS.IF allows it. Generated
//! code never checks for interrupts: its budget is cut at the next timer deadline, and a
//! device access through MMIO sets `EXIT_DEVICE` in `cpu.exit_request`, so it comes back to
//! the loop by itself. Port I/O always runs in the interpreter, in a block of its own.

use crane86_devices::acpi_pm::{SLP_TYP_S3, SLP_TYP_S5};
use crane86_devices::Clock;
use crane86_runtime::interrupt::{self, Delivery, Event, EventKind};
use crane86_runtime::state::EXIT_STOP;
use crane86_runtime::{flags as fl, CpuState, LazyFlags};
use crane86_translator::interp;
use std::sync::atomic::Ordering;

use super::Pc;
use crate::{Machine, RunEnd};

impl Pc {
    /// Moves the clock to the CPU's time and copies IA32_APIC_BASE and CR8 to the local APIC
    /// when the CPU changed them (the CPU state holds the architectural registers; the APIC
    /// device follows them).
    fn sync(&mut self, cpu: &CpuState) {
        self.clock.set(cpu.retired.wrapping_add(self.extra_ns));
        if cpu.msr.apic_base != self.synced_apic_base {
            let mut lapic = self.lapic.lock();
            if !lapic.set_apic_base(cpu.msr.apic_base) {
                tracing::warn!(
                    value = cpu.msr.apic_base,
                    "IA32_APIC_BASE not accepted by the APIC"
                );
            }
            if cpu.msr.apic_base & !0xfff != crane86_devices::lapic::LAPIC_BASE {
                tracing::warn!(
                    value = cpu.msr.apic_base,
                    "the local APIC page cannot move yet: it stays at 0xFEE00000"
                );
            }
            self.synced_apic_base = cpu.msr.apic_base;
            self.ports.touched = true;
        }
        if cpu.cr8 != self.synced_cr8 {
            self.lapic.lock().set_cr8(cpu.cr8);
            self.synced_cr8 = cpu.cr8;
            self.ports.touched = true;
        }
    }

    /// Brings every timer up to date and recomputes the next deadline and whether an
    /// interrupt is pending, if anything may have changed since the last look. Returns
    /// whether it looked.
    pub(crate) fn refresh(&mut self, cpu: &mut CpuState) -> bool {
        self.sync(cpu);
        let now = self.clock.now_ns();
        if !self.ports.touched && self.next_deadline.is_none_or(|d| now < d) {
            return false;
        }
        self.ports.touched = false;
        // One lock at a time: timers may lock the interrupt controllers behind them.
        self.pit.lock().update();
        self.rtc.lock().update();
        self.hpet.lock().update();
        self.pm.lock().update();
        let (apic_pending, wire, cr8, nmi) = {
            let mut l = self.lapic.lock();
            l.update();
            (
                l.has_interrupt(),
                l.accepts_pic_interrupts(),
                l.cr8(),
                l.take_nmi(),
            )
        };
        self.nmi_pending |= nmi;
        cpu.cr8 = cr8;
        self.synced_cr8 = cr8;
        self.pending = apic_pending || (wire && self.pic.lock().has_interrupt());
        self.next_deadline = [
            self.pit.lock().next_deadline_ns(),
            self.rtc.lock().next_deadline_ns(),
            self.hpet.lock().next_deadline_ns(),
            self.pm.lock().next_deadline_ns(),
            self.lapic.lock().next_deadline_ns(),
        ]
        .into_iter()
        .flatten()
        .min();
        true
    }

    /// Instructions the CPU may retire before the next timer deadline (at least 1), or
    /// `None` without one.
    pub(crate) fn insns_until_deadline(&self) -> Option<u64> {
        let now = self.clock.now_ns();
        self.next_deadline.map(|d| d.saturating_sub(now).max(1))
    }

    /// The INTA cycle: the vector of the highest-priority pending interrupt, taken from the
    /// local APIC, or from the 8259 while the APIC passes it through (virtual wire).
    fn acknowledge(&mut self) -> Option<u8> {
        self.ports.touched = true;
        let wire = {
            let mut l = self.lapic.lock();
            if l.has_interrupt() {
                return l.acknowledge();
            }
            l.accepts_pic_interrupts()
        };
        let mut pic = self.pic.lock();
        (wire && pic.has_interrupt()).then(|| pic.acknowledge())
    }

    /// HLT with interrupts enabled: until an interrupt or NMI is pending, jumps the clock
    /// from one timer deadline to the next (the TSC jumps with it; a deadline whose interrupt
    /// is masked wakes nothing, as on hardware), or without one waits for host input.
    fn idle(&mut self, cpu: &mut CpuState, nmi_blocked: bool) -> Wake {
        self.wait(
            cpu,
            |pc| pc.pending || (pc.nmi_pending && !nmi_blocked),
            |pc| pc.next_deadline,
        )
    }

    /// Lets virtual time pass until `woken` says so after a look at the devices: from one
    /// `deadline` to the next, or, with none, waiting for host input (which may press a
    /// button or type what a device wakes on). What [`Pc::idle`] and S3 share.
    pub(super) fn wait(
        &mut self,
        cpu: &mut CpuState,
        woken: impl Fn(&Pc) -> bool,
        deadline: impl Fn(&Pc) -> Option<u64>,
    ) -> Wake {
        // Whatever the guest printed before going idle (a prompt) shows now.
        self.serial.flush_pending();
        loop {
            self.feed_input();
            self.refresh(cpu);
            if woken(self) {
                return Wake::Event;
            }
            if cpu.exit_request.load(Ordering::Acquire) & EXIT_STOP != 0 {
                return Wake::Stopped;
            }
            let now = self.clock.now_ns();
            let Some(deadline) = deadline(self) else {
                // No timer will fire: only host input (or a stop request) can end the wait.
                // Park the thread until some arrives rather than spin; with no sender left,
                // nothing ever will.
                if !self.input.wait() {
                    return Wake::Never;
                }
                continue;
            };
            let mut skip = deadline.saturating_sub(now);
            if self.realtime_idle {
                // Interactive runs: idle time passes in real time (a guest `sleep 1` takes a
                // second, an idle shell leaves the host idle); input ends the wait early, and
                // the clock then moves by the time actually waited.
                let t0 = std::time::Instant::now();
                if self
                    .input
                    .wait_timeout(std::time::Duration::from_nanos(skip))
                {
                    skip = skip.min(t0.elapsed().as_nanos() as u64);
                }
            }
            self.extra_ns += skip;
            cpu.msr.tsc_offset = cpu.msr.tsc_offset.wrapping_add(skip);
        }
    }
}

/// How an idle HLT ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Wake {
    /// An interrupt or NMI is pending: the CPU resumes.
    Event,
    /// Someone outside the guest asked the run to stop while the CPU waited.
    Stopped,
    /// Nothing can ever wake the CPU.
    Never,
}

impl Machine {
    /// Between blocks on the PC board: timers, reset requests, and the delivery of a pending
    /// interrupt when IF is set and no interrupt shadow (after STI) is in force. Returns how
    /// the run ends, if it does.
    pub(crate) fn service_devices(&mut self) -> Option<RunEnd> {
        if self.pc.as_ref()?.suspended {
            // A run stopped while the machine slept goes on sleeping.
            return self.suspend_to_ram();
        }
        let pc = self.pc.as_mut()?;
        pc.feed_input();
        pc.serial.flush_if_due();
        // Reset and power-off requests only come from port writes, which make `refresh`
        // look.
        if std::mem::take(&mut self.cpu.ferr) != 0 {
            pc.fpu_error();
        }
        let looked = pc.refresh(&mut self.cpu);
        self.cpu.irq_pending = u32::from(pc.pending);
        if looked {
            if pc.take_reset_request() {
                return Some(RunEnd::Reset);
            }
            match pc.take_sleep_request() {
                Some(SLP_TYP_S5) => return Some(RunEnd::PowerOff),
                Some(SLP_TYP_S3) => return self.suspend_to_ram(),
                Some(typ) => tracing::warn!(slp_typ = typ, "ACPI sleep type not offered: ignored"),
                None => {}
            }
        }
        if self.irq_shadow || self.debug.hold_interrupts {
            return None;
        }
        if pc.nmi_pending && !self.cpu.nmi_blocked {
            // NMIs ignore IF; further NMIs wait until the handler's IRET.
            pc.nmi_pending = false;
            self.cpu.nmi_blocked = true;
            return self.deliver_external_event(2, EventKind::Nmi);
        }
        if !pc.pending || self.cpu.rflags & fl::IF == 0 {
            return None;
        }
        let vector = pc.acknowledge()?;
        self.deliver_external_event(vector, EventKind::External)
    }

    /// HLT on the PC board: how the wait ended. [`Wake::Never`] ends the run with
    /// [`RunEnd::Halted`]; after [`Wake::Stopped`] the caller leaves the CPU on its HLT, so
    /// that a run resumed later (a debugger's `continue`) halts again.
    pub(crate) fn halt(&mut self) -> Wake {
        self.irq_shadow = false;
        if self.debug.halt_stops {
            return Wake::Never;
        }
        let Some(pc) = self.pc.as_mut() else {
            return Wake::Never;
        };
        if self.cpu.rflags & fl::IF == 0 {
            // Only an NMI can wake the CPU now, and only one already on its way.
            pc.refresh(&mut self.cpu);
            return if pc.nmi_pending && !self.cpu.nmi_blocked {
                Wake::Event
            } else {
                Wake::Never
            };
        }
        let nmi_blocked = self.cpu.nmi_blocked;
        pc.idle(&mut self.cpu, nmi_blocked)
    }

    /// Delivers external interrupt or NMI `vector` through the IDT (the real-mode IVT); a
    /// fault while doing so is delivered as an exception.
    pub(crate) fn deliver_external_event(&mut self, vector: u8, kind: EventKind) -> Option<RunEnd> {
        self.cpu.link = 0;
        let event = Event { vector, kind };
        let flags = interp::rflags(&self.cpu);
        match interrupt::deliver(&mut self.cpu, &mut self.mem, event, flags) {
            Ok(v) => {
                self.cpu.cc = LazyFlags::from_eflags(v);
                self.cpu.rflags = (v & !fl::ARITH) | fl::FIXED1;
                self.stats.interrupts += 1;
                tracing::trace!(vector, rip = self.cpu.rip, "interrupt delivered");
                None
            }
            Err(Delivery::Unsupported(what)) => Some(RunEnd::Unsupported {
                what,
                rip: self.cpu.rip,
            }),
            Err(Delivery::Fault(f)) => self.deliver_exception(f),
        }
    }
}
