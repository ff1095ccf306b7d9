//! The floating-point and vector side of the virtual CPU: the x87 FPU (80-bit soft float),
//! MMX and SSE..SSE4.2, and their state-save layouts.
//!
//! This crate knows nothing of the rest of the machine. The runtime embeds an [`Fpu`] in its
//! `CpuState`; translated code moves memory and general-register operands through
//! [`Fpu::io`] and calls [`execute_simd`] or [`x87::execute`] through a runtime helper, which
//! turns a returned fault into a guest exception.
//!
//! Arithmetic is Berkeley SoftFloat 3 (through `softfloat-sys`, wrapped in [`soft`]): results,
//! rounding and exception flags are exact for every rounding mode and precision, independent
//! of the host FPU. One exception, for speed: SSE ADD/SUB/MUL/DIV/SQRT and double-to-single
//! narrowing of ordinary operands use the host's own IEEE arithmetic when MXCSR (round to
//! nearest, no FTZ/DAZ, inexact already flagged) and the result prove it identical, flags
//! included (`simd::float`'s `hard` module). The x86-specific rules SoftFloat leaves to its user (NaN selection, DAZ,
//! FTZ, the denormal-operand flag, x87 tags and the C0..C3 condition codes) live here.

pub mod operands;
pub mod save;
pub mod simd;
pub mod soft;
pub mod state;
#[cfg(test)]
mod testutil;
pub mod x87;

pub use operands::{Loc, Operands};
pub use simd::{execute_simd, SimdFault};
pub use state::{
    Fpu, F80, IO_DATA0, IO_DATA1, IO_FLAGS, IO_RAX, IO_RDX, MXCSR_DEFAULT, MXCSR_MASK,
};

/// Whether the host is an AMD processor, like the CPU crane86 presents (AuthenticAMD, family
/// 19h). The tests that compare with the host's own instructions need it: where AMD and Intel
/// processors differ (the CVTPI2PS x87 transition; which NaN DPPS and DPPD deliver to each
/// lane when several products are NaNs; FPREM's underflow on a denormal dividend), only an AMD
/// host can referee the model, and an Intel host is compared on the rest.
pub fn host_is_amd() -> bool {
    let id = core::arch::x86_64::__cpuid(0);
    // "AuthenticAMD" in EBX, EDX, ECX.
    [id.ebx, id.edx, id.ecx] == [0x6874_7541, 0x6974_6e65, 0x444d_4163]
}
