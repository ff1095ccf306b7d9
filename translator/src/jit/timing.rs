//! Where compile time goes: Cranelift's passes, timed by a profiler of ours on every thread
//! that compiles, and the rest of [`super::Jit::compile_region`] (building the IR, placing
//! exits, cutting the code).
//!
//! Cranelift times its passes through a per-thread [`Profiler`]; its default one keeps a
//! table whose fields it does not expose. Ours keeps the passes `--stats` reports
//! ([`CompileTimes`]) in a thread-local array that each compile takes and resets.
//!
//! Measured with it (session 22, the i386 boot): a quick compile costs about 100 µs
//! whatever its size plus about 35 µs per guest instruction, register allocation is 40%
//! of it, and a one-instruction block takes 140 µs. The fixed part dominates the blocks
//! of one to three instructions that are half of all compiles.

use std::any::Any;
use std::cell::Cell;
use std::time::{Duration, Instant};

use cranelift_codegen::timing::{self, Pass, Profiler};

/// Where the time of one compile, or of many added up, went.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct CompileTimes {
    /// The whole compile: building the IR, Cranelift, resolving exits, cutting the code.
    pub total: Duration,
    /// Cranelift's `Context::compile`, every part below included.
    pub cranelift: Duration,
    /// Cranelift's e-graph optimiser (only optimised code runs it).
    pub optimise: Duration,
    /// Lowering the IR to machine instructions with virtual registers.
    pub lower: Duration,
    /// Register allocation (regalloc2).
    pub regalloc: Duration,
    /// Emitting the machine code.
    pub emit: Duration,
}

impl CompileTimes {
    /// Adds `o` to these times.
    pub fn add(&mut self, o: &CompileTimes) {
        self.total += o.total;
        self.cranelift += o.cranelift;
        self.optimise += o.optimise;
        self.lower += o.lower;
        self.regalloc += o.regalloc;
        self.emit += o.emit;
    }

    /// The time outside Cranelift: the emitter building the IR from the guest
    /// instructions, and placing exits and cutting the code afterwards.
    pub fn build(&self) -> Duration {
        self.total.saturating_sub(self.cranelift)
    }

    /// Cranelift's time outside the passes above (the control-flow analyses, the
    /// per-function set-up of lowering and register allocation, the frame layout).
    pub fn cranelift_other(&self) -> Duration {
        self.cranelift
            .saturating_sub(self.optimise + self.lower + self.regalloc + self.emit)
    }
}

/// The passes kept, in [`CompileTimes`] order after `total`.
const KEPT: usize = 5;

fn slot(pass: Pass) -> Option<usize> {
    Some(match pass {
        Pass::compile => 0,
        Pass::egraph => 1,
        Pass::vcode_lower => 2,
        Pass::regalloc => 3,
        // Its finalisation is a pass within it.
        Pass::vcode_emit => 4,
        _ => return None,
    })
}

thread_local! {
    static SPENT: Cell<[Duration; KEPT]> = const { Cell::new([Duration::ZERO; KEPT]) };
    static INSTALLED: Cell<bool> = const { Cell::new(false) };
}

/// Our profiler: a token per pass that adds its time to the thread's table when dropped.
struct PassClock;

struct Token {
    slot: Option<usize>,
    start: Instant,
}

impl Profiler for PassClock {
    fn start_pass(&self, pass: Pass) -> Box<dyn Any> {
        Box::new(Token {
            slot: slot(pass),
            start: Instant::now(),
        })
    }
}

impl Drop for Token {
    fn drop(&mut self) {
        if let Some(i) = self.slot {
            let spent = self.start.elapsed();
            SPENT.with(|s| {
                let mut t = s.get();
                t[i] += spent;
                s.set(t);
            });
        }
    }
}

/// Makes Cranelift time this thread's passes with our profiler (once per thread).
fn install() {
    if !INSTALLED.with(|i| i.replace(true)) {
        timing::set_thread_profiler(Box::new(PassClock));
    }
}

/// Starts timing a compile on this thread: forgets passes timed since the last one.
pub(crate) fn start() -> Instant {
    install();
    SPENT.with(|s| s.set([Duration::ZERO; KEPT]));
    Instant::now()
}

/// The times of the compile [`start`] began at `t0`.
pub(crate) fn finish(t0: Instant) -> CompileTimes {
    let [cranelift, optimise, lower, regalloc, emit] = SPENT.with(Cell::get);
    CompileTimes {
        total: t0.elapsed(),
        cranelift,
        optimise,
        lower,
        regalloc,
        emit,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_add_up_and_other_is_what_is_left() {
        let ms = Duration::from_millis;
        let mut t = CompileTimes {
            total: ms(10),
            cranelift: ms(8),
            optimise: ms(1),
            lower: ms(2),
            regalloc: ms(3),
            emit: ms(1),
        };
        assert_eq!(t.build(), ms(2));
        assert_eq!(t.cranelift_other(), ms(1));
        let once = t;
        t.add(&once);
        assert_eq!(t.total, ms(20));
        assert_eq!(t.regalloc, ms(6));
        assert_eq!(t.cranelift_other(), ms(2));
    }

    #[test]
    fn only_this_threads_passes_since_start_count() {
        let t0 = start();
        {
            let _outer = timing::start_pass(Pass::compile);
            let _inner = timing::start_pass(Pass::regalloc);
            std::thread::sleep(Duration::from_millis(2));
        }
        // A pass we do not keep.
        drop(timing::start_pass(Pass::domtree));
        let t = finish(t0);
        assert!(t.regalloc >= Duration::from_millis(2), "{t:?}");
        assert!(t.cranelift >= t.regalloc && t.total >= t.cranelift, "{t:?}");
        assert_eq!(t.lower, Duration::ZERO);
        // Another thread's passes are its own.
        std::thread::spawn(|| {
            let t0 = start();
            {
                let _lower = timing::start_pass(Pass::vcode_lower);
                std::thread::sleep(Duration::from_millis(1));
            }
            assert!(finish(t0).lower > Duration::ZERO);
        })
        .join()
        .unwrap();
        let t = finish(start());
        assert_eq!(t.regalloc, Duration::ZERO, "start forgets earlier passes");
    }
}
