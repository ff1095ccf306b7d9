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
