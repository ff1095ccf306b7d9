//! The local APIC timer: a down-counter at [`LAPIC_TIMER_HZ`] over the divide
//! configuration, in one-shot, periodic or TSC-deadline mode, computed lazily from the clock.

use super::*;

impl LocalApic {
    pub(super) fn now(&self) -> u64 {
        self.clock.now_ns()
    }

    pub(super) fn timer_mode(&self) -> u32 {
        (self.s.lvt[LVT_TIMER] >> LVT_TIMER_MODE_SHIFT) & 3
    }

    /// The timer's divisor: 1, 2, 4, ... 128.
    pub(super) fn divisor_shift(&self) -> u32 {
        let d = self.s.timer_divide;
        let code = ((d & 8) >> 1) | (d & 3);
        (code + 1) & 7
    }

    /// Virtual ns that `count` timer decrements take at the present divisor.
    pub(super) fn count_to_ns(&self, count: u32) -> u64 {
        let ticks = u128::from(count) << self.divisor_shift();
        (ticks * u128::from(NS_PER_S) / u128::from(LAPIC_TIMER_HZ)) as u64
    }

    /// One full count, in ns.
    pub(super) fn period_ns(&self) -> u64 {
        self.count_to_ns(self.s.timer_initial)
    }

    /// The timer's current count register.
    pub(super) fn current_count(&self) -> u32 {
        if self.timer_mode() == TIMER_TSC_DEADLINE || self.s.timer_initial == 0 {
            return 0;
        }
        let elapsed = self.now().saturating_sub(self.s.timer_start_ns);
        let ticks = (u128::from(elapsed) * u128::from(LAPIC_TIMER_HZ) / u128::from(NS_PER_S))
            >> self.divisor_shift();
        let initial = u128::from(self.s.timer_initial);
        if self.timer_mode() == TIMER_PERIODIC {
            (initial - ticks % initial) as u32
        } else {
            initial.saturating_sub(ticks) as u32
        }
    }

    /// Virtual ns of TSC value `tsc` (rounded up, so the deadline is never early).
    pub(super) fn tsc_to_ns(&self, tsc: u64) -> u64 {
        let ns = (u128::from(tsc) * u128::from(NS_PER_S)).div_ceil(u128::from(self.tsc_hz));
        ns.min(u128::from(u64::MAX)) as u64
    }

    /// Writes IA32_TSC_DEADLINE (MSR 0x6E0): in TSC-deadline mode the timer fires once the
    /// TSC reaches `tsc`; 0 disarms. Outside that mode the write is kept but arms nothing.
    pub fn set_tsc_deadline(&mut self, tsc: u64) {
        self.update();
        self.s.tsc_deadline = tsc;
        if self.timer_mode() == TIMER_TSC_DEADLINE {
            self.s.timer_deadline_ns = (tsc != 0).then(|| self.tsc_to_ns(tsc));
        }
    }

    /// Reads IA32_TSC_DEADLINE: 0 once it fired or outside TSC-deadline mode.
    pub fn tsc_deadline(&self) -> u64 {
        if self.timer_mode() == TIMER_TSC_DEADLINE {
            self.s.tsc_deadline
        } else {
            0
        }
    }

    /// When the timer next raises an interrupt (virtual ns), if armed and unmasked. May be
    /// in the past if [`LocalApic::update`] is overdue.
    pub fn next_deadline_ns(&self) -> Option<u64> {
        if self.s.lvt[LVT_TIMER] & LVT_MASKED != 0 {
            return None;
        }
        self.s.timer_deadline_ns
    }

    /// Handles a timer expiration that is due: requests the timer vector (once, however
    /// many periods passed) unless the LVT entry is masked, and re-arms a periodic timer
    /// at its next multiple of the period after now.
    pub fn update(&mut self) {
        let now = self.now();
        let Some(deadline) = self.s.timer_deadline_ns.filter(|&d| d <= now) else {
            return;
        };
        let lvt = self.s.lvt[LVT_TIMER];
        if lvt & LVT_MASKED == 0 {
            self.request((lvt & LVT_VECTOR) as u8, false);
        }
        let period = self.period_ns();
        self.s.timer_deadline_ns = match self.timer_mode() {
            TIMER_PERIODIC if period > 0 => {
                let next = deadline + period * ((now - deadline) / period + 1);
                Some(next)
            }
            TIMER_TSC_DEADLINE => {
                self.s.tsc_deadline = 0;
                None
            }
            // One-shot, a periodic count of 0, or the reserved mode 3 (run as one-shot).
            _ => None,
        };
    }

    /// Starts the count from the initial count now (an initial count write).
    pub(super) fn start_timer(&mut self) {
        self.s.timer_start_ns = self.now();
        let period = self.period_ns();
        self.s.timer_deadline_ns = (self.s.timer_initial != 0
            && self.timer_mode() != TIMER_TSC_DEADLINE)
            .then(|| self.s.timer_start_ns.saturating_add(period.max(1)));
    }

    /// Resumes a one-shot or periodic count from `current` at the present rate.
    pub(super) fn restart_from(&mut self, current: u32) {
        if self.s.timer_initial == 0 || current == 0 || self.timer_mode() == TIMER_TSC_DEADLINE {
            return;
        }
        // Pretend the count started early enough to stand at `current` now.
        let done_ns = self.count_to_ns(self.s.timer_initial - current.min(self.s.timer_initial));
        let now = self.now();
        self.s.timer_start_ns = now.saturating_sub(done_ns);
        let left_ns = self.count_to_ns(current);
        self.s.timer_deadline_ns = Some(now + left_ns.max(1));
    }
}
