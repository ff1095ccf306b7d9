//! Entering generated code: one of the few modules with `unsafe`.
//!
//! Invariants for [`run_compiled`]:
//! - `trampoline` and `code` come from the translation cache's arenas (checked by the cache
//!   before calling) and were produced by [`super::Jit`] with the block signature;
//! - for the duration of the call `cpu.mem` points to `mem`, which nothing else touches, and
//!   it is reset to null afterwards so no dangling pointer outlives the call; `cpu.ram_host`
//!   holds the host range of its RAM meanwhile, and is zeroed with it.

use crane86_runtime::{CpuState, PhysMem};

/// Runs compiled block `code` (and whatever it chains to) on `cpu`; returns the exit code
/// ([`super::EXIT_NEXT`] or [`super::EXIT_FAULT`]).
///
/// # Safety
/// `trampoline` must be the cache's entry trampoline and `code` a live block of the same
/// cache (see the module invariants).
pub unsafe fn run_compiled(
    trampoline: *const u8,
    code: *const u8,
    cpu: &mut CpuState,
    mem: &mut PhysMem,
) -> i64 {
    let ram = mem.ram().as_ptr_range();
    cpu.ram_host = [ram.start as u64, ram.end as u64];
    cpu.mem = mem as *mut PhysMem;
    // SAFETY: the trampoline was compiled with exactly this host-ABI signature.
    let f: extern "C" fn(u64, *mut CpuState) -> i64 = unsafe { std::mem::transmute(trampoline) };
    let r = f(code as u64, cpu as *mut CpuState);
    cpu.mem = std::ptr::null_mut();
    cpu.ram_host = [0; 2];
    // A helper that panicked stopped the code early; the panic goes on from here.
    crane86_runtime::helper_panic::resume();
    r
}

/// What baseline code returns: `(flags and instructions retired, id of the last block)`
/// (see [`crate::baseline`]), in RAX and RDX as the C ABI returns a pair of words.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BaselineRet(pub u64, pub u64);

/// Runs baseline code `code` ([`crate::baseline`]) on `cpu`, one block and the blocks it
/// chains to (at most `budget` more, until `limit` instructions have retired); returns its
/// result.
///
/// # Safety
/// `code` must be the live baseline code of a block of the calling cache, in its arena
/// (written by [`crate::baseline::translate`], whose code is an `extern "C"` function of
/// the `CpuState` pointer, the limit and the budget that returns a [`BaselineRet`]), and
/// every chain slot it may follow must name live baseline code of the same cache; the
/// `cpu.mem` invariant is the one of [`run_compiled`].
pub unsafe fn run_baseline(
    code: *const u8,
    cpu: &mut CpuState,
    mem: &mut PhysMem,
    limit: u64,
    budget: u64,
) -> BaselineRet {
    let ram = mem.ram().as_ptr_range();
    cpu.ram_host = [ram.start as u64, ram.end as u64];
    cpu.mem = mem as *mut PhysMem;
    // SAFETY: baseline code is written with exactly this host-ABI signature.
    let f: extern "C" fn(*mut CpuState, u64, u64) -> BaselineRet =
        unsafe { std::mem::transmute(code) };
    let r = f(cpu as *mut CpuState, limit, budget);
    cpu.mem = std::ptr::null_mut();
    cpu.ram_host = [0; 2];
    crane86_runtime::helper_panic::resume();
    r
}
