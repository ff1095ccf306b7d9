//! What the vCPU thread is doing, for `--stats`'s time per phase.
//!
//! The vCPU thread stores its current [`Phase`] in a [`PhaseCell`] at every change (a relaxed
//! store, a nanosecond or so: cheap enough to stay on in every run); a [`PhaseSampler`]
//! thread, started only when statistics are wanted, reads the cell at a fixed interval and
//! counts the samples per phase. Reading a clock at every change instead would cost tens of
//! nanoseconds several times per run-loop iteration (millions per boot), and the samples
//! give the shares within about a percent over a run of seconds (thousands of samples).

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// What the vCPU thread is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Phase {
    /// The run loop's own work between blocks (fetch, lookups, linking, checks).
    RunLoop = 0,
    /// Decoding blocks and compiling, or installing compiled code, on the vCPU thread.
    Translate,
    /// The interpreter.
    Interp,
    /// Generated code: Cranelift's and the baseline tier's.
    Jit,
    /// Helpers that generated code calls: memory slow paths, lookups of indirect targets,
    /// runtime-class instructions, the FPU and SIMD units.
    Helper,
    /// The devices: timers, interrupt controllers, port I/O.
    Devices,
    /// Waiting in HLT for an interrupt.
    Idle,
}

/// Every phase, in `Phase as usize` order.
pub const PHASES: [Phase; 7] = [
    Phase::RunLoop,
    Phase::Translate,
    Phase::Interp,
    Phase::Jit,
    Phase::Helper,
    Phase::Devices,
    Phase::Idle,
];

impl Phase {
    /// What `--stats` calls it.
    pub fn name(self) -> &'static str {
        match self {
            Phase::RunLoop => "run loop",
            Phase::Translate => "translation",
            Phase::Interp => "interpreter",
            Phase::Jit => "generated code",
            Phase::Helper => "helpers",
            Phase::Devices => "devices",
            Phase::Idle => "idle",
        }
    }

    fn from_u8(v: u8) -> Phase {
        PHASES
            .get(usize::from(v))
            .copied()
            .unwrap_or(Phase::RunLoop)
    }
}

/// Where the vCPU thread records its phase; clones share the cell.
#[derive(Clone, Debug, Default)]
pub struct PhaseCell(Arc<AtomicU8>);

impl PhaseCell {
    /// Records that the vCPU thread is now in `p`.
    #[inline]
    pub fn set(&self, p: Phase) {
        self.0.store(p as u8, Ordering::Relaxed);
    }

    /// The phase last recorded.
    pub fn get(&self) -> Phase {
        Phase::from_u8(self.0.load(Ordering::Relaxed))
    }

    /// Records `p` until the returned guard is dropped, then the phase before it. The guard
    /// holds its own handle on the cell (an `Arc` clone, so not for the hottest paths, which
    /// call [`PhaseCell::set`] in pairs), so its owner stays free to borrow itself mutably.
    pub fn enter(&self, p: Phase) -> PhaseGuard {
        let before = self.get();
        self.set(p);
        PhaseGuard {
            cell: self.clone(),
            before,
        }
    }
}

/// Restores the phase [`PhaseCell::enter`] replaced.
pub struct PhaseGuard {
    cell: PhaseCell,
    before: Phase,
}

impl Drop for PhaseGuard {
    fn drop(&mut self) {
        self.cell.set(self.before);
    }
}

/// A thread that samples a [`PhaseCell`] at a fixed interval until [`PhaseSampler::finish`].
pub struct PhaseSampler {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<[u64; PHASES.len()]>,
}

impl PhaseSampler {
    /// Starts sampling `cell` every `every`.
    pub fn start(cell: PhaseCell, every: Duration) -> std::io::Result<PhaseSampler> {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::Builder::new()
            .name("crane86-phases".into())
            .spawn(move || {
                let mut samples = [0u64; PHASES.len()];
                while !stopped.load(Ordering::Relaxed) {
                    std::thread::sleep(every);
                    samples[cell.get() as usize] += 1;
                }
                samples
            })?;
        Ok(PhaseSampler { stop, thread })
    }

    /// Stops sampling; the samples per phase, in [`PHASES`] order.
    pub fn finish(self) -> [u64; PHASES.len()] {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_guard_restores_the_phase_before_it() {
        let c = PhaseCell::default();
        assert_eq!(c.get(), Phase::RunLoop);
        c.set(Phase::Jit);
        {
            let _g = c.enter(Phase::Helper);
            assert_eq!(c.get(), Phase::Helper);
        }
        assert_eq!(c.get(), Phase::Jit);
        assert_eq!(Phase::from_u8(200), Phase::RunLoop, "stays total");
    }

    #[test]
    fn the_sampler_counts_the_phase_the_cell_holds() {
        let c = PhaseCell::default();
        c.set(Phase::Interp);
        let s = PhaseSampler::start(c.clone(), Duration::from_millis(1)).unwrap();
        std::thread::sleep(Duration::from_millis(60));
        c.set(Phase::Idle);
        std::thread::sleep(Duration::from_millis(60));
        let n = s.finish();
        let (interp, idle) = (n[Phase::Interp as usize], n[Phase::Idle as usize]);
        assert!(interp >= 10 && idle >= 10, "{n:?}");
        assert_eq!(n.iter().sum::<u64>(), interp + idle, "{n:?}");
    }
}
