//! Test doubles shared by the device tests.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use crate::IrqLine;

/// An interrupt line that counts rising edges and remembers its level.
#[derive(Default)]
pub(crate) struct EdgeCounter {
    pub(crate) high: AtomicBool,
    pub(crate) edges: AtomicU32,
}

impl IrqLine for EdgeCounter {
    fn set_level(&self, high: bool) {
        if high && !self.high.swap(true, Ordering::SeqCst) {
            self.edges.fetch_add(1, Ordering::SeqCst);
        }
        self.high.store(high, Ordering::SeqCst);
    }
}

/// A cloneable interrupt line (clones share the counters) that counts rising edges and
/// remembers the level.
#[derive(Clone, Default)]
pub(crate) struct Edges(std::sync::Arc<(AtomicU32, AtomicU32)>);

impl IrqLine for Edges {
    fn set_level(&self, high: bool) {
        if self.0 .1.swap(u32::from(high), Ordering::SeqCst) == 0 && high {
            self.0 .0.fetch_add(1, Ordering::SeqCst);
        }
    }
}

impl Edges {
    /// Rising edges so far.
    pub(crate) fn count(&self) -> u32 {
        self.0 .0.load(Ordering::SeqCst)
    }

    /// The current level.
    pub(crate) fn high(&self) -> bool {
        self.0 .1.load(Ordering::SeqCst) != 0
    }
}

/// One step of the 64-bit LCG (Knuth's MMIX constants) that drives the random-access tests.
pub(crate) fn lcg(x: u64) -> u64 {
    x.wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407)
}
