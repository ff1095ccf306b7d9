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

use crane86_runtime::memory::probe_fetch_phys;
use crane86_runtime::{BlockKey, CcOp, CpuMode, CpuState, LazyFlags, SegReg};

use crate::cache::{fast_index, FastEntry};
use crate::interp::{div_wide, eflags_value};
use crane86_runtime::helper_panic::{guard, guard_pure};

/// The arithmetic flags of a lazy record whose operation was not known at translation time.
pub extern "C" fn eflags_of(op: u64, src1: u64, src2: u64, res: u64) -> u64 {
    guard_pure(0, || {
        eflags_value(&LazyFlags {
            op: CcOp::decode(op).encode(),
            src1,
            src2,
            res,
        })
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
    // SAFETY: generated code passes its own CpuState pointer, valid for the call and only
    // written by the body while `guard` does not look at it. A panic reads as a fault.
    unsafe {
        guard(cpu, 0, || match div_wide(signed != 0, hi, lo, d) {
            Some((q, r)) => {
                (*cpu).scratch = [q, r];
                1
            }
            None => 0,
        })
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
/// are runtime-class, and their code asks for [`KEY_FROM_STATE`]); the TLB's fetch tags give
/// the physical address, walking the page tables on a miss as the run loop's fetch would (a
/// walk that fails leaves no trace: the run loop then takes the fault), so the key is the one
/// the run loop would build. The walk on a miss matters after CR3 writes, which empty the
/// TLB: on a fork/exec loop two thirds of the lookups that went back to the run loop missed
/// the TLB, not the table.
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
    // SAFETY: the contract above is the caller's.
    unsafe {
        as_helper(cpu, 0, |cpu| {
            jump_lookup_in(cpu, rip, cs_base, mode_bits, table)
        })
    }
}

/// [`jump_lookup`]'s work; the same contract.
unsafe fn jump_lookup_in(
    cpu: *mut CpuState,
    rip: u64,
    cs_base: u64,
    mode_bits: u64,
    table: u64,
) -> u64 {
    // SAFETY: see the function's contract: both pointers are live for the call, and nothing
    // else accesses the CPU state or guest memory while generated code runs.
    let (cpu, mem) = unsafe { (&mut *cpu, &mut *(*cpu).mem) };
    cpu.jump_lookups += 1;
    if mode_bits == KEY_FROM_STATE {
        return lookup_from_state(cpu, mem, table);
    }
    let src = BlockKey {
        ip: rip,
        cs_base,
        bits: mode_bits,
    };
    let mut linear = cs_base.wrapping_add(rip);
    if src.mode() != CpuMode::Long64 {
        linear &= 0xffff_ffff;
    }
    let Some(phys) = probe_fetch_phys(cpu, mem, linear) else {
        return 0;
    };
    // SAFETY: `table` is the caller's cache's table (see above).
    unsafe { table_code(table, src.successor(rip, phys)) }
}

/// [`jump_lookup`]'s `mode_bits` after a runtime-class instruction, which may have changed
/// the mode, CPL or CS: the key is built from the CPU state as the run loop builds it, at
/// `cpu.rip` (the `rip` and `cs_base` arguments are not used). Never the bits of a real key,
/// whose mode field is small.
pub const KEY_FROM_STATE: u64 = u64::MAX;

/// The code of the block at `cpu.rip` in the current mode, if the TLB has its fetch and
/// `table` has it compiled.
fn lookup_from_state(cpu: &mut CpuState, mem: &mut crane86_runtime::PhysMem, table: u64) -> u64 {
    let mut linear = cpu.seg[SegReg::Cs as usize].base.wrapping_add(cpu.rip);
    if cpu.mode != CpuMode::Long64 {
        linear &= 0xffff_ffff;
    }
    let Some(phys) = probe_fetch_phys(cpu, mem, linear) else {
        return 0;
    };
    // SAFETY: `table` is the caller's cache's table (see `jump_lookup`).
    unsafe { table_code(table, BlockKey::new(phys, cpu)) }
}

/// The code `table` holds for `key`, or 0.
///
/// # Safety
/// `table` must be a live cache's direct-mapped table (see [`jump_lookup`]).
unsafe fn table_code(table: u64, key: BlockKey) -> u64 {
    // SAFETY: per the contract; `fast_index` stays within the table's length.
    let e = unsafe { &*(table as *const FastEntry).add(fast_index(key)) };
    if e.key == key {
        e.code
    } else {
        0
    }
}

/// [`run_runtime`]: the instruction did not run; the run loop interprets it (`cpu.rip` is
/// its address).
pub const RUNTIME_BAIL: u64 = 0;
/// [`run_runtime`]: the instruction faulted; the fault is in `cpu.fault` and `cpu.rip` is the
/// instruction's address.
pub const RUNTIME_FAULT: u64 = 1;
/// [`run_runtime`]: the instruction retired; the run loop must look before the next block
/// runs (`cpu.rip` is its address).
pub const RUNTIME_RETURN: u64 = 2;
/// [`run_runtime`]: the instruction retired; the next block may follow without the run loop.
pub const RUNTIME_DONE: u64 = 3;

/// Ports for instructions run by [`run_runtime`], which never does port I/O
/// ([`crate::rewrite::runs_compiled`] leaves IN/OUT to the run loop): a read floats high, a
/// write goes nowhere, as on a bus with nothing decoding the port.
struct NoPorts;

impl crane86_runtime::PortIo for NoPorts {
    fn port_read(&mut self, _port: u16, _size: u8) -> u32 {
        u32::MAX
    }
    fn port_write(&mut self, _port: u16, _size: u8, _value: u32) {}
}

/// MSRs that are plain CPU state (no device behind them, no TSC): RDMSR and WRMSR of these may
/// run from generated code.
fn msr_is_cpu_state(index: u32) -> bool {
    use crane86_runtime::msr::*;
    matches!(
        index,
        SYSENTER_CS
            | SYSENTER_ESP
            | SYSENTER_EIP
            | MISC_ENABLE
            | PAT
            | PKRS
            | EFER
            | STAR
            | LSTAR
            | CSTAR
            | SFMASK
            | FS_BASE
            | GS_BASE
            | KERNEL_GS_BASE
            | TSC_AUX
    )
}

/// Runs the runtime-class instruction of `block` (a block of that one instruction, which
/// [`crate::rewrite::runs_compiled`] accepts) for generated code, with the interpreter, and
/// tells the code where to go next: one of the `RUNTIME_*` codes. See `crate::rewrite` for
/// which instructions and why.
///
/// # Safety
/// `cpu` as for the other helpers (see the module's invariant); `block` must point to the
/// cache's boxed copy of the block the calling code was compiled from, which lives as long
/// as that code (`crate::cache::Block::runtime`).
pub unsafe extern "C" fn run_runtime(cpu: *mut CpuState, block: u64) -> u64 {
    // SAFETY: the contract above is the caller's.
    unsafe { as_helper(cpu, RUNTIME_FAULT, |cpu| run_runtime_in(cpu, block)) }
}

/// Runs `f` on `cpu` in the helper phase (`--stats`'s time per phase, see
/// `crane86_runtime::phase`), back in the generated-code phase after it; `fallback` if it
/// panics (see `crane86_runtime::helper_panic`).
///
/// # Safety
/// `cpu` must point to a live CpuState; `f` gets the same pointer.
unsafe fn as_helper(
    cpu: *mut CpuState,
    fallback: u64,
    f: impl FnOnce(*mut CpuState) -> u64,
) -> u64 {
    use crane86_runtime::phase::Phase;
    // SAFETY: live per the contract; each reference here ends before the next access.
    unsafe {
        guard(cpu, fallback, || {
            (*cpu).phase.set(Phase::Helper);
            let r = f(cpu);
            (*cpu).phase.set(Phase::Jit);
            r
        })
    }
}

/// [`run_runtime`]'s work; the same contract.
unsafe fn run_runtime_in(cpu: *mut CpuState, block: u64) -> u64 {
    use crane86_runtime::flags::{IF, NT, RF, TF, VM};
    use iced_x86::{Mnemonic, Register};
    // SAFETY: see the function's contract: the state, guest memory and block are live for
    // the call, and nothing else accesses them while generated code runs.
    let (cpu, mem, block) = unsafe {
        (
            &mut *cpu,
            &mut *(*cpu).mem,
            &*(block as *const crate::decode::DecodedBlock),
        )
    };
    let Some(d) = block.insns.first() else {
        return RUNTIME_BAIL;
    };
    let insn = &d.insn;
    let bail = match insn.mnemonic() {
        Mnemonic::Rdmsr | Mnemonic::Wrmsr => !msr_is_cpu_state(cpu.gpr[1] as u32),
        // The single-step trap after SYSRET follows TF as SYSRET loads it from R11.
        Mnemonic::Sysret | Mnemonic::Sysretq => cpu.gpr[11] & TF != 0,
        // The IRET of an NMI handler ends NMI blocking, which the machine keeps; one with
        // NT set returns to another task (a task switch, with its T-flag trap).
        Mnemonic::Iret | Mnemonic::Iretd | Mnemonic::Iretq => {
            cpu.nmi_blocked || cpu.rflags & NT != 0
        }
        _ => false,
    };
    if bail {
        cpu.rip = insn.ip();
        return RUNTIME_BAIL;
    }
    let if_before = cpu.rflags & IF;
    use crate::semantics::system::{run_transfer, TransferEnd};
    let (exit, n) = match run_transfer(cpu, mem, insn) {
        Some(TransferEnd::Done) => (crate::interp::InterpExit::Next, 1),
        Some(TransferEnd::Fault) => (crate::interp::InterpExit::Fault, 0),
        Some(TransferEnd::Bail) => (crate::interp::InterpExit::Next, 0),
        None => crate::interp::run_block(cpu, mem, &mut NoPorts, block, 1),
    };
    match exit {
        crate::interp::InterpExit::Next if n == 1 => {}
        crate::interp::InterpExit::Fault if n == 0 => return RUNTIME_FAULT,
        // Anything else is the run loop's to handle, as if it had met the instruction.
        _ if n == 0 => {
            cpu.rip = insn.ip();
            return RUNTIME_BAIL;
        }
        _ => return RUNTIME_RETURN,
    }
    let opened = if_before == 0 && cpu.rflags & IF != 0 && cpu.irq_pending != 0;
    let cr8 = insn.mnemonic() == Mnemonic::Mov && insn.op0_register() == Register::CR8;
    // A return to virtual-8086 mode (IRET) goes on in the run loop too.
    if opened || cr8 || cpu.rflags & (TF | RF | VM) != 0 || cpu.smc_pending != 0 {
        RUNTIME_RETURN
    } else {
        RUNTIME_DONE
    }
}
