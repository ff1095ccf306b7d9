//! `extern "C"` helpers that generated code calls for work too rare or too large to inline.
//! Memory slow paths live in the runtime (`crane86_runtime::memory`); these are the
//! translator's own.
//!
//! # Safety invariant
//! Only generated code calls the `unsafe` helpers, always with its own `*mut CpuState`: the
//! one [`super::entry::run_compiled`] was given, live and not otherwise borrowed until that
//! call returns, with `cpu.mem` pointing to the run's guest memory. [`jump_lookup`] also gets
//! the address of the direct-mapped table of the cache that compiled the caller, baked into
//! the code as a constant; the table is allocated once per cache and never moves or shrinks.

use crane86_runtime::memory::cached_fetch_phys;
use crane86_runtime::{BlockKey, CcOp, CpuMode, CpuState, LazyFlags};

use crate::cache::{fast_index, FastEntry};
use crate::interp::{div_wide, eflags_value};

/// The arithmetic flags of a lazy record whose operation was not known at translation time.
pub extern "C" fn eflags_of(op: u64, src1: u64, src2: u64, res: u64) -> u64 {
    eflags_value(&LazyFlags {
        op: CcOp::decode(op).encode(),
        src1,
        src2,
        res,
    })
}

/// Wide division for DIV/IDIV r/m64: writes quotient and remainder to `cpu.scratch` and
/// returns 1, or returns 0 when the divide faults.
///
/// # Safety
/// `cpu` must point to the live CpuState of the calling generated code.
pub unsafe extern "C" fn div_wide_helper(
    cpu: *mut CpuState,
    signed: u64,
    hi: u64,
    lo: u64,
    d: u64,
) -> u64 {
    match div_wide(signed != 0, hi, lo, d) {
        Some((q, r)) => {
            // SAFETY: generated code passes its own CpuState pointer, valid for the call.
            unsafe { (*cpu).scratch = [q, r] };
            1
        }
        None => 0,
    }
}

/// Finds the compiled code of the block at `rip`, for generated code leaving a block through
/// an exit that has no chain slot: an indirect branch (RET, JMP/CALL through a register or
/// memory), or a direct one to another linear page under paging, which the cache never links
/// because the page may map elsewhere the next time. Returns 0 when the run loop must decide:
/// the fetch misses the TLB, or the block is not in the cache's direct-mapped table with
/// code that may be entered directly.
///
/// The source block's mode bits and CS base are the target's (instructions that change them
/// are runtime-class and never compiled); the TLB, which every CR3 write, INVLPG and paging
/// change keeps exact, gives the physical address, so the key is the one the run loop would
/// build.
///
/// # Safety
/// `cpu` must point to the live CpuState of the calling generated code, with `cpu.mem` set
/// (as [`super::entry::run_compiled`] does), and `table` must be the address of the
/// translation cache's direct-mapped table that the calling code was compiled for, which
/// lives as long as the cache and so as long as any of its code.
pub unsafe extern "C" fn jump_lookup(
    cpu: *mut CpuState,
    rip: u64,
    cs_base: u64,
    mode_bits: u64,
    table: u64,
) -> u64 {
    // SAFETY: see the function's contract: both pointers are live for the call, and nothing
    // else accesses the CPU state or guest memory while generated code runs.
    let (cpu, mem) = unsafe { (&*cpu, &*(*cpu).mem) };
    let src = BlockKey {
        ip: rip,
        cs_base,
        bits: mode_bits,
    };
    let mut linear = cs_base.wrapping_add(rip);
    if src.mode() != CpuMode::Long64 {
        linear &= 0xffff_ffff;
    }
    let Some(phys) = cached_fetch_phys(cpu, mem, linear, src.cpl() == 3) else {
        return 0;
    };
    let key = src.successor(rip, phys);
    // SAFETY: `table` is the cache's table (see above); `fast_index` stays within its length.
    let e = unsafe { &*(table as *const FastEntry).add(fast_index(key)) };
    if e.key == key {
        e.code
    } else {
        0
    }
}
