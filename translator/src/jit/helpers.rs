//! `extern "C"` helpers that generated code calls for work too rare or too large to inline.
//! Memory slow paths live in the runtime (`crane86_runtime::memory`); these are the
//! translator's own.

use crane86_runtime::{CcOp, CpuState, LazyFlags};

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
