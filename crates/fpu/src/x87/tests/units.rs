//! Host comparisons, one test per instruction group.

use super::host::{case, check};

/// Status-word bits compared after arithmetic: everything but C0, C2, C3 (undefined).
const ARITH: u16 = !(super::super::stack::C0 | super::super::stack::C2 | super::super::stack::C3);
/// Everything.
const ALL: u16 = 0xffff;

#[test]
fn arith_registers() {
    for c in [
        case!("fadd st(0), st(1)"),
        case!("fadd st(2), st(0)"),
        case!("faddp st(1), st(0)"),
        case!("fsub st(0), st(1)"),
        case!("fsub st(1), st(0)"),
        case!("fsubp st(2), st(0)"),
        case!("fsubr st(0), st(1)"),
        case!("fsubr st(1), st(0)"),
        case!("fsubrp st(1), st(0)"),
        case!("fmul st(0), st(1)"),
        case!("fmul st(3), st(0)"),
        case!("fmulp st(1), st(0)"),
        case!("fdiv st(0), st(1)"),
        case!("fdiv st(1), st(0)"),
        case!("fdivp st(1), st(0)"),
        case!("fdivr st(0), st(1)"),
        case!("fdivr st(1), st(0)"),
        case!("fdivrp st(1), st(0)"),
    ] {
        check(&c, 20000, 0x1234_5678, ARITH, 1);
    }
}
