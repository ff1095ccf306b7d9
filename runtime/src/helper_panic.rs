//! Panics inside the helpers that generated code calls.
//!
//! Helpers are `extern "C"` functions, and a panic cannot unwind out of one: Rust aborts the
//! process, so a crane86 bug on a slow path used to end the run without the internal-error
//! report (the guest state, status 122) that a panic anywhere else in the run gets. Every
//! helper's body therefore runs under [`guard`], which catches the panic, keeps its payload
//! for the thread and returns a harmless value, after making generated code leave soon:
//! with a pending fault (generated code checks it after every call that may fault, and
//! leaves through its fault exit) and an exit request (checked where a loop may close, so
//! that helpers without a fault check are left within one turn). [`resume`], which the JIT
//! and baseline entry points call once generated code has returned, resumes the panic
//! there, in Rust frames, where the run's caller catches it as it catches any other.
//!
//! The panic hook runs at the panic itself, inside the helper, so the report keeps the
//! panic's message and source location.

use std::any::Any;
use std::cell::RefCell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::state::{CpuState, EXIT_DEVICE};

thread_local! {
    /// The payload of a panic caught in a helper on this thread, until [`resume`].
    static CAUGHT: RefCell<Option<Box<dyn Any + Send>>> = const { RefCell::new(None) };
}

/// Test-only: a helper called with `retired` at or beyond this count panics (the CLI sets it
/// from `CRANE86_TEST_HELPER_PANIC_AT_INSNS`, so that the test suite can check the report of
/// a panic on a slow path). `u64::MAX`: never.
pub static TEST_PANIC_AT: AtomicU64 = AtomicU64::new(u64::MAX);

/// Runs helper body `f` for the generated code whose state is `cpu`, returning `fallback`
/// if it panics (see the module documentation).
///
/// # Safety
/// `cpu` must point to the live `CpuState` of the calling generated code, not borrowed
/// elsewhere while `guard` looks at it (before `f` runs and after it returned or unwound).
pub unsafe fn guard<T>(cpu: *mut CpuState, fallback: T, f: impl FnOnce() -> T) -> T {
    // SAFETY: the caller's contract; the read ends before `f` runs.
    let retired = unsafe { (*cpu).retired };
    let test_panic = retired >= TEST_PANIC_AT.load(Ordering::Relaxed);
    let r = catch_unwind(AssertUnwindSafe(|| {
        if test_panic {
            panic!("test-only panic in a helper after {retired} guest instructions");
        }
        f()
    }));
    match r {
        Ok(v) => v,
        Err(payload) => {
            // SAFETY: the caller's contract; whatever `f` borrowed ended with the unwind.
            let cpu = unsafe { &mut *cpu };
            cpu.fault.pending = 1;
            cpu.exit_request.fetch_or(EXIT_DEVICE, Ordering::AcqRel);
            keep(payload);
            fallback
        }
    }
}

/// [`guard`] for helpers that get no CPU state (pure functions of their arguments): the
/// panic is kept, and generated code goes on with `fallback` until it next returns.
pub fn guard_pure<T>(fallback: T, f: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|payload| {
        keep(payload);
        fallback
    })
}

fn keep(payload: Box<dyn Any + Send>) {
    CAUGHT.with(|c| {
        // The first panic is the one to report; a later one is its consequence.
        c.borrow_mut().get_or_insert(payload);
    });
}

/// Resumes, on the calling thread, the panic a helper caught since the last call, if any.
/// Called after generated code returned, before its exit code is looked at.
pub fn resume() {
    if let Some(payload) = CAUGHT.with(|c| c.borrow_mut().take()) {
        std::panic::resume_unwind(payload);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CpuMode;

    #[test]
    fn a_caught_panic_stops_generated_code_and_resumes_later() {
        let mut cpu = CpuState::new(CpuMode::Long64);
        let p: *mut CpuState = &mut cpu;
        // SAFETY: `cpu` is live and only reached through `p` during the call.
        let v = unsafe { guard(p, 7u64, || -> u64 { panic!("helper bug") }) };
        assert_eq!(v, 7);
        assert_eq!(cpu.fault.pending, 1);
        assert_ne!(cpu.exit_request.load(Ordering::Acquire) & EXIT_DEVICE, 0);
        // Kept until resumed, once.
        let r = catch_unwind(resume);
        let msg = r.expect_err("resumed").downcast::<&str>().map(|s| *s);
        assert_eq!(msg.ok(), Some("helper bug"));
        resume();
        // SAFETY: as above.
        assert_eq!(unsafe { guard(p, 0u64, || 5) }, 5);
        assert_eq!(guard_pure(1u32, || -> u32 { panic!("pure") }), 1);
        assert!(catch_unwind(resume).is_err());
    }
}
