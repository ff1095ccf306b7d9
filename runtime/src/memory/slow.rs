//! The slow paths generated code calls on a TLB miss (and for REP string instructions in
//! bulk). One of the few modules with `unsafe`: the `extern "C"` entry points dereference
//! the calling [`CpuState`] and [`CpuState::mem`]. Their invariant: they are only called by
//! generated code while the run loop has set `CpuState::mem` to its live `PhysMem`, which
//! nothing else borrows while they run; each body runs under `helper_panic::guard`.

use super::{data_privilege, read_data, rep_bulk, write_or_decline, BulkOp};
use crate::exception::{Exception, Fault};
use crate::helper_panic::guard;
use crate::paging::canonical;
use crate::phase::Phase;
use crate::state::CpuState;

/// Flag in the `size` argument of [`load_slow`] and [`store_slow`]: the operand is through SS
/// in 64-bit mode, where a non-canonical address is #SS(0) rather than the #GP(0) of other
/// segments (SDM Vol. 3 6.15). Generated code checks it only here, on a TLB miss: a hit proves
/// the access lies in one canonical page.
pub const SLOW_SS64: u64 = 0x100;
/// Flag in the `size` argument of [`store_slow`]: a store into a page holding translated
/// code is not made, and the instruction is handed back to be run again interpreted, as if
/// it had faulted (`CpuState::request_retry`). The JIT sets it so that its code need not
/// look at `smc_pending` after every store: the interpreter runs the store, ends its block
/// there, and the run loop drops the code it hit. Every instruction is restartable after a
/// fault on a store (its register writes follow its stores), so the re-run is exact.
pub const SLOW_CODE_RETRY: u64 = 0x200;
const SIZE_MASK: u64 = 0xff;

/// Records #SS(0) and returns true when `size` carries [`SLOW_SS64`] and `linear` is not
/// canonical.
fn stack_fault(cpu: &mut CpuState, linear: u64, size: u64) -> bool {
    if size & SLOW_SS64 == 0 || canonical(linear) {
        return false;
    }
    cpu.raise(Fault::with_code(Exception::StackFault, 0), linear);
    true
}

/// Load slow path called by generated code on a TLB miss. On a fault it records it in
/// `cpu.fault` and returns 0; the caller checks `cpu.fault.pending`. `size` is 1, 2, 4 or 8,
/// possibly with [`SLOW_SS64`]. The value is zero-extended from `size` bytes, as the inline
/// path's narrow load is (a device's wider answer is cut by [`PhysMem::read_phys`]):
/// generated code relies on it.
///
/// # Safety
/// `cpu` must be valid and `cpu.mem` must point to the live `PhysMem` (module invariant).
pub unsafe extern "C" fn load_slow(cpu: *mut CpuState, linear: u64, size: u64) -> u64 {
    // SAFETY: generated code passes its own live CpuState, which the body below borrows
    // only while `guard` does not look at it.
    unsafe { guard(cpu, 0, || load_slow_in(&mut *cpu, linear, size)) }
}

/// [`load_slow`]'s work.
///
/// # Safety
/// As for [`load_slow`], with `cpu` borrowed.
unsafe fn load_slow_in(cpu: &mut CpuState, linear: u64, size: u64) -> u64 {
    cpu.phase.set(Phase::Helper);
    // SAFETY: see the module invariants: `mem` is live and not otherwise borrowed now.
    let mem = unsafe { &mut *cpu.mem };
    cpu.mem_slow += 1;
    let v = if stack_fault(cpu, linear, size) {
        0
    } else {
        match read_data(cpu, mem, linear, (size & SIZE_MASK) as u32) {
            Ok(v) => v,
            Err(f) => {
                cpu.raise(f, linear);
                0
            }
        }
    };
    cpu.phase.set(Phase::Jit);
    v
}

/// Store slow path called by generated code on a TLB miss or a store to a code page. On a
/// fault it records it in `cpu.fault`. A store that hit translated code sets
/// `cpu.smc_pending`, or with [`SLOW_CODE_RETRY`] in `size` is not made and asks for the
/// instruction to be run again interpreted ([`CpuState::request_retry`]).
///
/// # Safety
/// As for [`load_slow`].
pub unsafe extern "C" fn store_slow(cpu: *mut CpuState, linear: u64, size: u64, value: u64) {
    // SAFETY: as in `load_slow`.
    unsafe { guard(cpu, (), || store_slow_in(&mut *cpu, linear, size, value)) }
}

/// [`store_slow`]'s work.
///
/// # Safety
/// As for [`load_slow`], with `cpu` borrowed.
unsafe fn store_slow_in(cpu: &mut CpuState, linear: u64, size: u64, value: u64) {
    cpu.phase.set(Phase::Helper);
    // SAFETY: as in `load_slow`; the slow path is the only user of `mem` while it runs.
    let mem = unsafe { &mut *cpu.mem };
    cpu.mem_slow += 1;
    if !stack_fault(cpu, linear, size) {
        let pl = data_privilege(cpu);
        let decline = size & SLOW_CODE_RETRY != 0;
        match write_or_decline(
            cpu,
            mem,
            linear,
            (size & SIZE_MASK) as u32,
            value,
            pl,
            decline,
        ) {
            Ok(true) => {}
            Ok(false) => cpu.request_retry(),
            Err(f) => cpu.raise(f, linear),
        }
    }
    cpu.phase.set(Phase::Jit);
}

/// [`rep_bulk`] for generated code: `code` is [`BulkOp::code`]. Returns the iterations done.
///
/// # Safety
/// As for [`load_slow`].
pub unsafe extern "C" fn rep_bulk_slow(
    cpu: *mut CpuState,
    dst: u64,
    src_or_value: u64,
    count: u64,
    code: u64,
) -> u64 {
    // SAFETY: as in `load_slow`; no iterations done is what the caller can always take.
    unsafe {
        guard(cpu, 0, || {
            rep_bulk_slow_in(&mut *cpu, dst, src_or_value, count, code)
        })
    }
}

/// [`rep_bulk_slow`]'s work.
///
/// # Safety
/// As for [`load_slow`], with `cpu` borrowed.
unsafe fn rep_bulk_slow_in(
    cpu: &mut CpuState,
    dst: u64,
    src_or_value: u64,
    count: u64,
    code: u64,
) -> u64 {
    cpu.phase.set(Phase::Helper);
    // SAFETY: as in `load_slow`; the helper is the only user of `mem` while it runs.
    let mem = unsafe { &mut *cpu.mem };
    let (op, size) = BulkOp::from_code(code);
    let done = rep_bulk(cpu, mem, op, size, dst, src_or_value, count);
    cpu.phase.set(Phase::Jit);
    done
}
