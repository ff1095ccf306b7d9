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

/// Whether XMM values `a` and `b`, taken as lanes of `bits` (32 or 64) bits, are equal
/// lane by lane with any NaN matching any NaN: how host comparisons accept the one corner
/// where Intel and AMD processors give different NaNs (DPPS and DPPD with several NaN
/// products, see [`host_is_amd`]).
pub fn equal_but_for_nan_payloads(a: u128, b: u128, bits: u32) -> bool {
    let (exp, mask) = if bits == 32 {
        (0x7f80_0000u128, u128::from(u32::MAX))
    } else {
        (0x7ff0_0000_0000_0000u128, u128::from(u64::MAX))
    };
    let frac = (mask >> 1) & !exp;
    let nan = |v: u128| v & exp == exp && v & frac != 0;
    (0..128 / bits).all(|l| {
        let (x, y) = (a >> (l * bits) & mask, b >> (l * bits) & mask);
        x == y || (nan(x) && nan(y))
    })
}

#[cfg(test)]
mod tests {
    use super::equal_but_for_nan_payloads as same;

    #[test]
    fn nan_lanes_match_any_nan_and_nothing_else() {
        // Single precision: a quiet NaN with another payload, and a signalling one.
        let q = 0x7fc0_0000u128;
        assert!(same(q | q << 96, 0x7fc1_2345 | 0xffa0_0001 << 96, 32));
        // Infinity is not a NaN; ordinary lanes must be equal.
        assert!(!same(q, 0x7f80_0000, 32));
        assert!(!same(q | 1 << 32, q | 2 << 32, 32));
        // Double precision: the same rules on 64-bit lanes, and a 32-bit NaN pattern in
        // the low half of a 64-bit lane is just a number.
        let d = 0x7ff8_0000_0000_0000u128;
        assert!(same(d << 64 | 5, 0xfff0_0000_0000_0001 << 64 | 5, 64));
        assert!(!same(q, 0x7fc1_0000, 64));
    }
}
