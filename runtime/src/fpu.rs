//! The runtime side of the FPU/SIMD unit ([`crane86_fpu`]): the helpers translated code calls
//! for x87, MMX and SSE instructions, which turn the unit's faults into guest exceptions
//! according to CR0 and CR4.
//!
//! Both tiers call the same functions (the interpreter directly, generated code through the
//! `extern "C"` shims), so they cannot disagree. Each helper returns a status: 0 when the
//! instruction goes on, [`STATUS_FAULT`] when it recorded a fault in [`CpuState::fault`],
//! [`STATUS_DONE`] when an x87 store completed without writing memory.
//!
//! # Safety invariant
//! The `extern "C"` shims are `unsafe` only because they turn the `*mut CpuState` generated
//! code passes into `&mut CpuState`: generated code passes its own, which the run loop lent
//! it for the call and which nothing else borrows until the shim returns.

use crate::phase::Phase;
use crane86_fpu::x87::{self, Outcome, Site, X87Fault};
use crane86_fpu::{Operands, SimdFault};
use iced_x86::Code;

use crate::state::{CpuState, CR0_NE, CR4_OSXMMEXCPT};
use crate::{Exception, Fault};

/// Helper status: the instruction goes on.
pub const STATUS_OK: u64 = 0;
/// Helper status: a fault is recorded in `cpu.fault`; the instruction stops.
pub const STATUS_FAULT: u64 = 1;
/// Helper status (x87 stores): the instruction is complete and memory must not be written.
pub const STATUS_DONE: u64 = 2;

fn code_of(code: u64) -> Code {
    // Codes come from the translator's own table; an out-of-range number (impossible from
    // generated code) decodes as INVALID, which every unit rejects with #UD.
    Code::try_from(code as usize).unwrap_or(Code::INVALID)
}

/// Executes one MMX/SSE instruction (see [`crane86_fpu::simd`] for the operand contract),
/// or CRC32 (accumulator in `io[IO_RAX]`, source in `io[IO_DATA0]`, result there).
pub fn simd(cpu: &mut CpuState, code: u64, ops: u64) -> u64 {
    let code = code_of(code);
    let crc_bytes = match code {
        Code::Crc32_r32_rm8 | Code::Crc32_r64_rm8 => 1,
        Code::Crc32_r32_rm16 => 2,
        Code::Crc32_r32_rm32 => 4,
        Code::Crc32_r64_rm64 => 8,
        _ => 0,
    };
    if crc_bytes != 0 {
        let io = &mut cpu.fpu.io;
        let acc = io[crane86_fpu::IO_RAX] as u32;
        io[crane86_fpu::IO_DATA0] = u64::from(crane86_fpu::simd::sse4::crc32c(
            acc,
            io[crane86_fpu::IO_DATA0],
            crc_bytes,
        ));
        return STATUS_OK;
    }
    let r = crane86_fpu::execute_simd(&mut cpu.fpu, code, Operands(ops));
    simd_status(cpu, r)
}

/// A SIMD unit's result as a helper status, its fault raised as the guest's exception.
fn simd_status(cpu: &mut CpuState, r: Result<(), SimdFault>) -> u64 {
    match r {
        Ok(()) => STATUS_OK,
        Err(f) => {
            let e = match f {
                SimdFault::Xm if cpu.cr4 & CR4_OSXMMEXCPT != 0 => Fault::new(Exception::SimdError),
                SimdFault::Xm | SimdFault::Ud => Fault::new(Exception::InvalidOpcode),
                SimdFault::Gp => Fault::with_code(Exception::GeneralProtection, 0),
                SimdFault::Mf => return x87_error(cpu),
            };
            cpu.raise(e, 0);
            STATUS_FAULT
        }
    }
}

/// An x87 or MMX instruction found an unmasked x87 exception pending: #MF in native mode
/// (CR0.NE), else the PC's legacy path: FERR# raises IRQ 13 and, as with IGNNE# asserted,
/// the instruction is not held up.
fn x87_error(cpu: &mut CpuState) -> u64 {
    if cpu.cr0 & CR0_NE != 0 {
        cpu.raise(Fault::new(Exception::FpuError), 0);
        STATUS_FAULT
    } else {
        cpu.ferr = 1;
        STATUS_OK
    }
}

/// Executes one x87 instruction; `data` is its memory operand's offset (for FDP) and `ip`
/// its RIP (for FIP).
pub fn x87(cpu: &mut CpuState, code: u64, ops: u64, data: u64, ip: u64) -> u64 {
    let code = code_of(code);
    let ops = Operands(ops);
    let site = Site { ip, data };
    let mut result = x87::execute(&mut cpu.fpu, code, ops, site);
    if result == Err(X87Fault::Mf) {
        if x87_error(cpu) == STATUS_FAULT {
            return STATUS_FAULT;
        }
        // Legacy mode: the pending exception stays pending, the instruction runs as if
        // IGNNE# were asserted. ES is cleared for the retry and restored afterwards.
        let es = cpu.fpu.x87.fsw & 0x8080;
        cpu.fpu.x87.fsw &= !0x8080;
        result = x87::execute(&mut cpu.fpu, code, ops, site);
        cpu.fpu.x87.fsw |= es;
        cpu.fpu.pending.fsw |= es;
    }
    match result {
        Ok(Outcome::Store) => STATUS_OK,
        Ok(Outcome::Done) => STATUS_DONE,
        Err(X87Fault::Mf) => STATUS_FAULT,
        Err(X87Fault::Ud) => {
            cpu.raise(Fault::new(Exception::InvalidOpcode), 0);
            STATUS_FAULT
        }
    }
}

/// Packs an SSE4.2 string compare for [`string_compare`]: its code, imm8, the XMM register
/// of xmm1, and that of xmm2/m128 or, for a memory operand, `None` (the translator loads
/// the 16 bytes into `io` first).
pub fn string_form(code: Code, imm: u8, a: usize, b: Option<usize>) -> u64 {
    code as u64
        | u64::from(imm) << 32
        | (a as u64 & 0xff) << 40
        | b.map_or(0, |r| r as u64 + 1) << 48
}

/// PCMPESTRI/M or PCMPISTRI/M given as [`string_form`] packs it, straight to
/// [`crane86_fpu::simd::sse4::string::execute_regs`] (lengths in `io[IO_RAX]` and
/// `io[IO_RDX]` for the explicit forms; the index to `io[IO_DATA0]`, the flags to
/// `io[IO_FLAGS]`, a mask to XMM0).
pub fn string_compare(cpu: &mut CpuState, form: u64) -> u64 {
    let code = code_of(form & 0xffff_ffff);
    let imm = (form >> 32) as u8;
    let a = (form >> 40 & 0xff) as usize;
    let b = match form >> 48 & 0xff {
        0 => None,
        r => Some(r as usize - 1),
    };
    let r = crane86_fpu::simd::sse4::string::execute_regs(&mut cpu.fpu, code, imm, a, b);
    simd_status(cpu, r)
}

/// Generated code's entry to [`string_compare`].
///
/// # Safety
/// As for [`simd_helper`].
pub unsafe extern "C" fn string_compare_helper(
    cpu: *mut CpuState,
    form: u64,
    _: u64,
    _: u64,
    _: u64,
) -> u64 {
    // SAFETY: as in `simd_helper`.
    unsafe { in_helper(cpu, |cpu| string_compare(cpu, form)) }
}

/// Runs `f` on the `CpuState` generated code passed to one of the helpers below, in the
/// vCPU's `Helper` phase.
///
/// # Safety
/// `cpu` must point to the live CpuState of the calling generated code.
unsafe fn in_helper(cpu: *mut CpuState, f: impl FnOnce(&mut CpuState) -> u64) -> u64 {
    // SAFETY: generated code passes its own CpuState, valid and unaliased for the call; the
    // body borrows it only while `guard` does not look at it. A panic stops the instruction.
    unsafe {
        crate::helper_panic::guard(cpu, STATUS_FAULT, || {
            let cpu = &mut *cpu;
            cpu.phase.set(Phase::Helper);
            let r = f(cpu);
            cpu.phase.set(Phase::Jit);
            r
        })
    }
}

/// Makes an x87 store's prepared state architectural once the memory write succeeded.
pub fn x87_commit(cpu: &mut CpuState) {
    x87::commit(&mut cpu.fpu);
}

/// Generated code's entry to [`simd`].
///
/// # Safety
/// `cpu` must point to the live CpuState of the calling generated code.
pub unsafe extern "C" fn simd_helper(
    cpu: *mut CpuState,
    code: u64,
    ops: u64,
    _: u64,
    _: u64,
) -> u64 {
    // SAFETY: the caller's contract.
    unsafe { in_helper(cpu, |cpu| simd(cpu, code, ops)) }
}

/// Generated code's entry to [`x87`].
///
/// # Safety
/// As for [`simd_helper`].
pub unsafe extern "C" fn x87_helper(
    cpu: *mut CpuState,
    code: u64,
    ops: u64,
    data: u64,
    ip: u64,
) -> u64 {
    // SAFETY: as in `simd_helper`.
    unsafe { in_helper(cpu, |cpu| x87(cpu, code, ops, data, ip)) }
}

/// Generated code's entry to [`x87_commit`].
///
/// # Safety
/// As for [`simd_helper`].
pub unsafe extern "C" fn x87_commit_helper(
    cpu: *mut CpuState,
    _: u64,
    _: u64,
    _: u64,
    _: u64,
) -> u64 {
    // SAFETY: as in `simd_helper`.
    unsafe {
        in_helper(cpu, |cpu| {
            x87_commit(cpu);
            STATUS_OK
        })
    }
}
