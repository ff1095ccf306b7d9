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
//!
//! IntRes2 comes from the host's own PCMPESTRM where the host has SSE4.2
//! ([`super::host_string`]). Otherwise, and as the model the tests check that path
//! against, the compares run bit-parallel ("SWAR") on the whole 128-bit register treated
//! as lanes of 8 or 16 bits, rather than element by element: these instructions sit in the
//! inner loops of glibc's strlen/strchr/strcspn/strstr/strcmp, so their cost shows up
//! directly in guest string handling. Lane results are carried as flags in the top bit of
//! each lane and gathered into a bit mask (one bit per element, like PMOVMSKB) only at the
//! end.

use iced_x86::Code;

use super::xmm_reg;
use crate::operands::{Loc, Operands};
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
    let b = match ops.loc(1) {
        Loc::Xmm(n) => Some(usize::from(n)),
        Loc::Mem => None,
        _ => return Err(SimdFault::Ud),
    };
    execute_regs(fpu, code, ops.imm(), xmm_reg(ops, 0)?, b)
}

/// [`execute`] with the operands given directly: xmm1 is XMM register `a`, xmm2/m128 XMM
/// register `b` or (`None`) the bytes the translator loaded into `io`. The translator calls
/// it through its own helper (`crane86_runtime::fpu::string_compare`), without the SIMD
/// unit's dispatch and operand decoding: glibc's `strcspn`/`strspn` run PCMPISTRI in their
/// inner loops, and those layers cost as much as the compare in busybox sh's loops.
pub fn execute_regs(
    fpu: &mut Fpu,
    code: Code,
    imm: u8,
    a: usize,
    b: Option<usize>,
) -> Result<(), SimdFault> {
    if a > 15 || b.is_some_and(|b| b > 15) {
        return Err(SimdFault::Ud);
    }
    let a = fpu.xmm128(a);
    let b = b.map_or_else(|| fpu.io128(), |r| fpu.xmm128(r));
    // imm8 bit 0 selects words; the element width is a constant inside each instance.
    if imm & 1 == 0 {
        finish::<8>(fpu, code, imm, a, b)
    } else {
        finish::<16>(fpu, code, imm, a, b)
    }
}

/// [`execute`] for `W`-bit elements, once the operands `a` (xmm1) and `b` (xmm2/m128) are
/// read.
fn finish<const W: u32>(
    fpu: &mut Fpu,
    code: Code,
    imm: u8,
    a: u128,
    b: u128,
) -> Result<(), SimdFault> {
    use Code::*;
    let n = Lanes::<W>::N;
    if code == Pcmpistri_xmm_xmmm128_imm8 {
        // The host's PCMPISTRI gives the index and the flags at once (the lengths from NULs
        // as the instruction finds them).
        if let Some((index, flags)) = super::host_string::istri(imm, a, b) {
            fpu.io[IO_DATA0] = u64::from(index);
            fpu.io[IO_FLAGS] = flags;
            return Ok(());
        }
    }
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
            (Lanes::<W>::implicit_len(a), Lanes::<W>::implicit_len(b))
        }
        _ => return Err(SimdFault::Ud),
    };
    let res = super::host_string::int_res2(imm, a, la, b, lb)
        .unwrap_or_else(|| Lanes::<W>::compare(imm, a, la, b, lb));

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
            n
        } else if msb {
            31 - res.leading_zeros()
        } else {
            res.trailing_zeros()
        };
        fpu.io[IO_DATA0] = u64::from(index);
    } else {
        let mask = if msb {
            Lanes::<W>::expand(res)
        } else {
            u128::from(res)
        };
        fpu.set_xmm128(0, mask);
    }
    Ok(())
}

/// IntRes2 computed in software, bit-parallel: what [`execute`] uses when the host cannot
/// run PCMPESTRM, and the model the tests hold against the host and the SDM's definition.
/// `la` and `lb` are the valid element counts (at most 16 bytes or 8 words, as imm8 bit 0
/// says).
pub fn soft_int_res2(imm: u8, a: u128, la: u32, b: u128, lb: u32) -> u32 {
    if imm & 1 == 0 {
        Lanes::<8>::compare(imm, a, la, b, lb)
    } else {
        Lanes::<16>::compare(imm, a, la, b, lb)
    }
}

/// An explicit length: the absolute value of the register, saturated to the element count.
fn explicit_len(v: i64, n: u32) -> u32 {
    v.unsigned_abs().min(u64::from(n)) as u32
}

/// The elements of a register as `W`-bit lanes (8 or 16), element 0 in the low bits, with
/// the constants and operations of the SWAR arithmetic on them. Lane-wise results are
/// "lane flags": a `u128` with only the top bit of each lane possibly set.
///
/// The `u128` arithmetic below never carries or borrows across a lane boundary (each
/// operation says why), so it is exact per lane even though the compiler lowers it to
/// 64-bit halves with carries between them.
struct Lanes<const W: u32>;

impl<const W: u32> Lanes<W> {
    /// Elements per register.
    const N: u32 = 128 / W;
    /// Lanes per 64-bit half.
    const HALF: u32 = 64 / W;
    /// The lowest bit of every lane.
    const ONES: u128 = u128::MAX / ((1 << W) - 1);
    /// The top bit of every lane: where lane flags live.
    const HIGH: u128 = Self::ONES << (W - 1);
    /// The flag of the last lane.
    const TOP: u128 = 1 << 127;
    /// All but the top bit of every lane.
    const LOW: u128 = !Self::HIGH;
    /// All bits of one lane.
    const ELEM: u64 = (1 << W) - 1;
    /// Multiplying the lane flags of a 64-bit half by this sums shifted copies of them in
    /// which lane i's flag (bit W*i + W-1) lands, for the copy shifted by (W-1)*(HALF-1-i),
    /// at bit 64 - HALF + i: the flags gathered in the top HALF bits. Every (flag, shift)
    /// product is a distinct single bit, so the sum has no carries.
    const GATHER: u64 = {
        let mut m = 0;
        let mut k = 0;
        while k < Self::HALF {
            m |= 1 << ((W - 1) * k);
            k += 1;
        }
        m
    };
    /// Bit i of lane i, for each lane of a 64-bit half.
    const DIAGONAL: u64 = {
        let mut m = 0;
        let mut k = 0;
        while k < Self::HALF {
            m |= 1 << ((W + 1) * k);
            k += 1;
        }
        m
    };

    /// IntRes2, one bit per element of the second operand: the aggregation of imm8[3:2] over
    /// xmm1 (`a`, valid below `la`) and xmm2/m128 (`b`, valid below `lb`), then the polarity of
    /// imm8[5:4]. The signedness of imm8[1] matters only for ranges.
    fn compare(imm: u8, a: u128, la: u32, b: u128, lb: u32) -> u32 {
        let all = (1u32 << Self::N) - 1;
        // Lane flags of the valid elements of b: any pair with an invalid element of b
        // compares false in equal any, ranges and equal ordered.
        let valid_b = Self::prefix(lb) & Self::HIGH;
        let res1 = match imm >> 2 & 3 {
            // Equal any: b[j] is one of the valid elements of a. One whole-register compare
            // of b per element of a, so short character sets (the usual case) are cheap.
            0 => {
                let (mut hit, mut rest) = (0, a);
                for _ in 0..la {
                    hit |= Self::eq(b, Self::splat(rest as u64 & Self::ELEM));
                    // The next element of a into lane 0 (a constant shift, cheaper than
                    // indexing a u128 by a variable amount).
                    rest >>= W;
                }
                Self::movemask(hit & valid_b)
            }
            // Ranges: b[j] lies in one of the pairs (a[i], a[i + 1]), i even, taken as lower
            // and upper bound. A bound that is invalid compares false, so only complete valid
            // pairs count.
            1 => {
                // Flipping the sign bits maps signed order onto unsigned order.
                let flip = if imm & 2 != 0 { Self::HIGH } else { 0 };
                let (a, b) = (a ^ flip, b ^ flip);
                let (mut hit, mut rest) = (0, a);
                for _ in 0..la / 2 {
                    let lo = Self::splat(rest as u64 & Self::ELEM);
                    let hi = Self::splat((rest >> W) as u64 & Self::ELEM);
                    hit |= Self::ge(b, lo) & Self::ge(hi, b);
                    rest >>= 2 * W;
                }
                Self::movemask(hit & valid_b)
            }
            // Equal each: a[i] == b[i]; where both are invalid the strings agree (true), where
            // one is invalid they do not (false).
            2 => {
                let eq = Self::movemask(Self::eq(a, b));
                let (va, vb) = ((1u32 << la) - 1, (1u32 << lb) - 1);
                (eq & va & vb) | (all & !va & !vb)
            }
            // Equal ordered: the substring a occurs in b starting at j. An invalid element of
            // a matches anything (the substring has ended); a valid element of a against an
            // invalid one of b fails. Positions past the end of the register are not compared,
            // so a prefix of the substring at the end of b counts as a match.
            _ => {
                // Start j survives element i when b[j + i] == a[i]; starts with j + i past the
                // register (the top i lanes, flagged in `past`) are not compared for this i
                // and stay candidates. Each step moves the next element of a into lane 0 and
                // b (with its validity) down one lane, so lane j of `b_i` is b[j + i].
                let (mut hit, mut rest, mut b_i, mut valid_b_i, mut past) =
                    (Self::HIGH, a, b, valid_b, 0);
                for _ in 0..la {
                    let at = Self::eq(b_i, Self::splat(rest as u64 & Self::ELEM));
                    hit &= (at & valid_b_i) | past;
                    rest >>= W;
                    b_i >>= W;
                    valid_b_i >>= W;
                    past = (past >> W) | Self::TOP;
                    if hit == 0 {
                        // No start left: later elements cannot bring one back.
                        break;
                    }
                }
                Self::movemask(hit)
            }
        };
        match imm >> 4 & 3 {
            1 => res1 ^ all,
            // Masked negative: only the valid elements of b are negated.
            3 => res1 ^ ((1u32 << lb) - 1),
            _ => res1,
        }
    }

    /// `x` (one element) in every lane.
    fn splat(x: u64) -> u128 {
        // One 64-bit multiply instead of a 128-bit one: x fits a lane, so no carries.
        let half = u128::from(x * Self::ONES as u64);
        half | (half << 64)
    }

    /// All ones in the lanes below `len`, zero above.
    fn prefix(len: u32) -> u128 {
        if len >= Self::N {
            u128::MAX
        } else {
            (1 << (len * W)) - 1
        }
    }

    /// Lane flags of the zero lanes of `x`. `(x & LOW) + LOW` sets a lane's top bit when
    /// its low bits are not all zero (and stays inside the lane: at most 2 * LOW); OR-ing
    /// in `x` adds its top bit. Unlike the shorter `(x - ONES) & !x & HIGH`, this has no
    /// false positives above a zero lane.
    fn zero(x: u128) -> u128 {
        !(((x & Self::LOW) + Self::LOW) | x) & Self::HIGH
    }

    /// Lane flags of the lanes where `x` and `y` are equal.
    fn eq(x: u128, y: u128) -> u128 {
        Self::zero(x ^ y)
    }

    /// Lane flags of the lanes where `x >= y`, unsigned. `(x | HIGH) - (y & LOW)` compares
    /// the low bits: each lane's minuend is at least HIGH and the subtrahend below it, so
    /// there is no borrow and the lane's top bit says low(x) >= low(y). The top bits decide
    /// when they differ.
    fn ge(x: u128, y: u128) -> u128 {
        let low_ge = (x | Self::HIGH) - (y & Self::LOW);
        ((x & !y) | (!(x ^ y) & low_ge)) & Self::HIGH
    }

    /// The lane flags `flags` as a bit mask, bit i for lane i (PMOVMSKB for W = 8).
    fn movemask(flags: u128) -> u32 {
        debug_assert_eq!(flags & !Self::HIGH, 0);
        let half = |h: u64| (h.wrapping_mul(Self::GATHER) >> (64 - Self::HALF)) as u32;
        half(flags as u64) | (half((flags >> 64) as u64) << Self::HALF)
    }

    /// The bit mask `m` (bit i for lane i) widened to all-ones or all-zeros lanes.
    fn expand(m: u32) -> u128 {
        // Each half's bits copied into every lane (they fit: HALF <= W), then lane i keeps
        // only bit i.
        let half = |bits: u32| {
            let bits = u64::from(bits & ((1 << Self::HALF) - 1));
            u128::from((bits * Self::ONES as u64) & Self::DIAGONAL)
        };
        let kept = half(m) | (half(m >> Self::HALF) << 64);
        // Non-zero lanes to flags, flags to whole lanes (no lane overflows ELEM).
        let flags = !Self::zero(kept) & Self::HIGH;
        (flags >> (W - 1)) * u128::from(Self::ELEM)
    }

    /// An implicit length: the index of the first zero element, or the element count.
    fn implicit_len(v: u128) -> u32 {
        // The extra bit N stands for "no zero element".
        (Self::movemask(Self::zero(v)) | (1 << Self::N)).trailing_zeros()
    }
}
