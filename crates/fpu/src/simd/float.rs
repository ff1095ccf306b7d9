//! (to be written)

use iced_x86::Code;

use super::SimdFault;
use crate::operands::Operands;
use crate::state::Fpu;

/// True when this module implements `code`.
pub fn claims(_code: Code) -> bool {
    false
}

/// Executes `code` if this module implements it.
pub fn execute(_fpu: &mut Fpu, _code: Code, _ops: Operands) -> Option<Result<(), SimdFault>> {
    None
}
