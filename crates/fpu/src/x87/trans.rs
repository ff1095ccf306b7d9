//! Transcendental instructions.

use crate::state::X87;

/// The transcendental operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Trans {
    Sin,
    Cos,
    SinCos,
    Tan,
    Atan,
    Exp2m1,
    Yl2x,
    Yl2xp1,
}

/// Executes a transcendental instruction.
pub(crate) fn run(_x: &mut X87, _t: Trans) {}
