//! SSE4.1 and SSE4.2 instructions other than floating-point arithmetic (ROUNDxx and DPPx
//! live with the float unit), legacy (non-VEX) encodings only.
//!
//! - [`int`]: blends, packed min/max, multiplies, 64-bit compares, PACKUSDW, PMOVSX/ZX,
//!   PTEST, PHMINPOSUW, MPSADBW and MOVNTDQA;
//! - [`insert`]: PEXTRx, PINSRx, EXTRACTPS and INSERTPS;
//! - [`string`]: the SSE4.2 string compares PCMPESTRI/M and PCMPISTRI/M;
//! - [`crc`]: CRC32, a general-register instruction the translator evaluates through
//!   [`crc32c`] rather than through [`execute`].

use iced_x86::Code;

use super::SimdFault;
use crate::operands::{Loc, Operands};
use crate::state::Fpu;

pub mod crc;
mod host_string;
pub mod insert;
pub mod int;
mod lanes;
pub mod string;
#[cfg(test)]
mod tests;

pub use crc::crc32c;

/// True when this module implements `code`.
pub fn claims(code: Code) -> bool {
    int::claims(code) || insert::claims(code) || string::claims(code)
}

/// Executes `code` if this module implements it.
pub fn execute(fpu: &mut Fpu, code: Code, ops: Operands) -> Option<Result<(), SimdFault>> {
    if int::claims(code) {
        Some(int::execute(fpu, code, ops))
    } else if insert::claims(code) {
        Some(insert::execute(fpu, code, ops))
    } else if string::claims(code) {
        Some(string::execute(fpu, code, ops))
    } else {
        None
    }
}

/// The XMM register number of operand `i`, or #UD when the translator passed something
/// else (an encoding this unit cannot have been asked to run).
fn xmm_reg(ops: Operands, i: usize) -> Result<usize, SimdFault> {
    match ops.loc(i) {
        Loc::Xmm(n) => Ok(usize::from(n)),
        _ => Err(SimdFault::Ud),
    }
}

/// The value of an `xmm/m128`-style source operand `i`: an XMM register, or the memory
/// bytes the translator loaded into `io` (zero-extended when the form reads fewer than 16).
fn xmm_or_mem(fpu: &Fpu, ops: Operands, i: usize) -> Result<u128, SimdFault> {
    match ops.loc(i) {
        Loc::Xmm(n) => Ok(fpu.xmm128(usize::from(n))),
        Loc::Mem => Ok(fpu.io128()),
        _ => Err(SimdFault::Ud),
    }
}
