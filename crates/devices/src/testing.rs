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
