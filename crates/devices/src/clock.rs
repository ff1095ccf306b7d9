//! The virtual clock that drives every timer.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// A source of virtual time in nanoseconds, monotonic, starting near 0 at machine start.
/// Devices compute their state from it lazily (when read) and ask to be woken at their next
/// deadline; they never read the host clock themselves.
pub trait Clock: Send + Sync {
    /// Virtual nanoseconds since the machine started.
    fn now_ns(&self) -> u64;
}

/// A clock that moves only when told: the deterministic clock's core, and the one device
/// tests use.
#[derive(Clone, Debug, Default)]
pub struct ManualClock {
    ns: Arc<AtomicU64>,
}

impl ManualClock {
    /// A clock at 0.
    pub fn new() -> ManualClock {
        ManualClock::default()
    }

    /// Moves the clock forward by `ns`.
    pub fn advance(&self, ns: u64) {
        self.ns.fetch_add(ns, Ordering::AcqRel);
    }

    /// Sets the clock (never backwards: an earlier time is ignored). One thread moves a
    /// clock (the PC board's vCPU thread, before every look at its devices): the compare and
    /// the store are not one atomic step, since a locked read-modify-write here, on every
    /// iteration of the run loop, was a quarter of the devices' time in it.
    pub fn set(&self, ns: u64) {
        if ns > self.ns.load(Ordering::Relaxed) {
            self.ns.store(ns, Ordering::Release);
        }
    }
}

impl Clock for ManualClock {
    fn now_ns(&self) -> u64 {
        self.ns.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_only_moves_forward() {
        let c = ManualClock::new();
        c.advance(10);
        c.set(5);
        assert_eq!(c.now_ns(), 10);
        c.set(20);
        assert_eq!(c.now_ns(), 20);
    }
}
