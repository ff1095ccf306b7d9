//! The SSE4.2 string compares PCMPESTRI, PCMPESTRM, PCMPISTRI and PCMPISTRM (SDM Vol. 2
//! section 4.1).
//!
//! All four compare the elements of the first operand (xmm1: a character set, range pairs,
//! a string or a substring to look for) with those of the second (xmm2/m128: the string
//! searched) under the control of imm8:
//! - bits 1:0, the element format: unsigned bytes, unsigned words, signed bytes, signed
//!   words;
//! - bits 3:2, the aggregation: equal any, ranges, equal each, equal ordered;
//! - bits 5:4, the polarity applied to the aggregated result IntRes1, giving IntRes2;
//! - bit 6, which output: the least or most significant set bit's index (…STRI, to ECX),
//!   or IntRes2 as a bit mask or expanded to an element mask (…STRM, to XMM0).
//!
//! Bit 7 is reserved and ignored by the legacy encodings.
//!
//! Elements past a string's length are invalid and force the comparison results of
//! SDM table 4-7. The explicit-length forms take the lengths from EAX/RAX (xmm1) and
//! EDX/RDX (xmm2/m128) as absolute values saturated to the element count; the
//! implicit-length forms end each string at its first zero element.

use iced_x86::Code;

use super::{xmm_or_mem, xmm_reg};
use crate::operands::Operands;
use crate::simd::SimdFault;
use crate::state::{Fpu, IO_DATA0, IO_FLAGS, IO_RAX, IO_RDX};

/// EFLAGS.CF: IntRes2 is not zero.
const CF: u64 = 1 << 0;
/// EFLAGS.ZF: the second string (xmm2/m128) ends inside the register.
const ZF: u64 = 1 << 6;
/// EFLAGS.SF: the first string (xmm1) ends inside the register.
const SF: u64 = 1 << 7;
/// EFLAGS.OF: bit 0 of IntRes2.
const OF: u64 = 1 << 11;

/// True for the codes [`execute`] implements.
pub fn claims(code: Code) -> bool {
    use Code::*;
    matches!(
        code,
        Pcmpestri_xmm_xmmm128_imm8
            | Pcmpestri64_xmm_xmmm128_imm8
            | Pcmpestrm_xmm_xmmm128_imm8
            | Pcmpestrm64_xmm_xmmm128_imm8
            | Pcmpistri_xmm_xmmm128_imm8
            | Pcmpistrm_xmm_xmmm128_imm8
    )
}

/// Executes one of the [`claims`] codes. The index of a …STRI goes to `io[IO_DATA0]` (the
/// translator writes it to ECX, zero-extended to RCX in 64-bit mode); the mask of a
/// …STRM goes to XMM0. Both set CF, ZF, SF and OF and clear AF and PF in `io[IO_FLAGS]`.
pub fn execute(fpu: &mut Fpu, code: Code, ops: Operands) -> Result<(), SimdFault> {
    use Code::*;
    let imm = ops.imm();
    let a = fpu.xmm128(xmm_reg(ops, 0)?);
    let b = xmm_or_mem(fpu, ops, 1)?;
    let fmt = Format::of(imm);
    let n = fmt.count();
    let (la, lb) = match code {
        // Without REX.W the lengths are EAX and EDX, signed 32-bit.
        Pcmpestri_xmm_xmmm128_imm8 | Pcmpestrm_xmm_xmmm128_imm8 => (
            explicit_len(i64::from(fpu.io[IO_RAX] as u32 as i32), n),
            explicit_len(i64::from(fpu.io[IO_RDX] as u32 as i32), n),
        ),
        Pcmpestri64_xmm_xmmm128_imm8 | Pcmpestrm64_xmm_xmmm128_imm8 => (
            explicit_len(fpu.io[IO_RAX] as i64, n),
            explicit_len(fpu.io[IO_RDX] as i64, n),
        ),
        Pcmpistri_xmm_xmmm128_imm8 | Pcmpistrm_xmm_xmmm128_imm8 => {
            (implicit_len(a, fmt), implicit_len(b, fmt))
        }
        _ => return Err(SimdFault::Ud),
    };
    let res = compare(fmt, imm, &fmt.elements(a), la, &fmt.elements(b), lb);

    let mut flags = 0;
    if res != 0 {
        flags |= CF;
    }
    if lb < n {
        flags |= ZF;
    }
    if la < n {
        flags |= SF;
    }
    if res & 1 != 0 {
        flags |= OF;
    }
    fpu.io[IO_FLAGS] = flags;

    let want_index = matches!(
        code,
        Pcmpestri_xmm_xmmm128_imm8 | Pcmpestri64_xmm_xmmm128_imm8 | Pcmpistri_xmm_xmmm128_imm8
    );
    let msb = imm & 0x40 != 0;
    if want_index {
        let index = if res == 0 {
            n as u32
        } else if msb {
            31 - res.leading_zeros()
        } else {
            res.trailing_zeros()
        };
        fpu.io[IO_DATA0] = u64::from(index);
    } else {
        let mask = if msb {
            // Each result bit widened to an all-ones or all-zeros element.
            let w = fmt.bits();
            (0..n as u32)
                .filter(|&i| res >> i & 1 != 0)
                .fold(0u128, |m, i| m | (u128::MAX >> (128 - w)) << (i * w))
        } else {
            u128::from(res)
        };
        fpu.set_xmm128(0, mask);
    }
    Ok(())
}

/// The element format of imm8[1:0].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Format {
    /// Words rather than bytes.
    words: bool,
    /// Elements compare as signed integers (matters only for ranges).
    signed: bool,
}

impl Format {
    fn of(imm: u8) -> Format {
        Format {
            words: imm & 1 != 0,
            signed: imm & 2 != 0,
        }
    }

    /// Elements per register.
    fn count(self) -> usize {
        if self.words {
            8
        } else {
            16
        }
    }

    /// Bits per element.
    fn bits(self) -> u32 {
        if self.words {
            16
        } else {
            8
        }
    }

    /// The elements of `v` as integers, sign- or zero-extended by the format (the unused
    /// tail of the array is zero).
    fn elements(self, v: u128) -> [i32; 16] {
        let mut e = [0i32; 16];
        for (i, x) in e.iter_mut().take(self.count()).enumerate() {
            let raw = (v >> (i as u32 * self.bits())) as u16;
            *x = match (self.words, self.signed) {
                (false, false) => i32::from(raw as u8),
                (false, true) => i32::from(raw as u8 as i8),
                (true, false) => i32::from(raw),
                (true, true) => i32::from(raw as i16),
            };
        }
        e
    }
}

/// An explicit length: the absolute value of the register, saturated to the element count.
fn explicit_len(v: i64, n: usize) -> usize {
    v.unsigned_abs().min(n as u64) as usize
}

/// An implicit length: the index of the first zero element, or the element count.
fn implicit_len(v: u128, fmt: Format) -> usize {
    let w = fmt.bits();
    (0..fmt.count())
        .find(|&i| (v >> (i as u32 * w)) as u16 & (u128::MAX >> (128 - w)) as u16 == 0)
        .unwrap_or(fmt.count())
}

/// IntRes2, one bit per element of the second operand: the aggregation of imm8[3:2] over
/// xmm1 (`a`, valid below `la`) and xmm2/m128 (`b`, valid below `lb`), then the polarity of
/// imm8[5:4].
fn compare(fmt: Format, imm: u8, a: &[i32; 16], la: usize, b: &[i32; 16], lb: usize) -> u32 {
    let n = fmt.count();
    let mut res1 = 0u32;
    match imm >> 2 & 3 {
        // Equal any: b[j] is one of the valid elements of a. Any pair with an invalid
        // element compares false.
        0 => {
            for (j, x) in b[..lb].iter().enumerate() {
                if a[..la].contains(x) {
                    res1 |= 1 << j;
                }
            }
        }
        // Ranges: b[j] lies in one of the pairs (a[i], a[i + 1]), i even, taken as lower
        // and upper bound. A bound that is invalid, or an invalid b[j], compares false, so
        // only complete valid pairs count.
        1 => {
            for (j, &x) in b[..lb].iter().enumerate() {
                let hit = (0..la / 2 * 2)
                    .step_by(2)
                    .any(|i| a[i] <= x && x <= a[i + 1]);
                if hit {
                    res1 |= 1 << j;
                }
            }
        }
        // Equal each: a[i] == b[i]; where both are invalid the strings agree (true), where
        // one is invalid they do not (false).
        2 => {
            for i in 0..n {
                let eq = match (i < la, i < lb) {
                    (true, true) => a[i] == b[i],
                    (false, false) => true,
                    _ => false,
                };
                if eq {
                    res1 |= 1 << i;
                }
            }
        }
        // Equal ordered: the substring a occurs in b starting at j. An invalid element of
        // a matches anything (the substring has ended); a valid element of a against an
        // invalid one of b fails. Positions past the end of the register are not compared,
        // so a prefix of the substring at the end of b counts as a match.
        _ => {
            for j in 0..n {
                let hit = (0..n - j).all(|i| match (i < la, i + j < lb) {
                    (false, _) => true,
                    (true, true) => a[i] == b[i + j],
                    (true, false) => false,
                });
                if hit {
                    res1 |= 1 << j;
                }
            }
        }
    }
    let all = (1u32 << n) - 1;
    match imm >> 4 & 3 {
        1 => res1 ^ all,
        // Masked negative: only the valid elements of b are negated.
        3 => res1 ^ ((1u32 << lb) - 1),
        _ => res1,
    }
}
