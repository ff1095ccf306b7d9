//! IntRes2 of the SSE4.2 string compares from the host's own PCMPESTRM, and PCMPISTRI's
//! whole result from the host's PCMPISTRI, when the host has SSE4.2 (every x86-64 built
//! since about 2011 does).
//!
//! glibc's strcmp, strcspn, strspn and strpbrk run PCMPISTRI in their inner loops, so a
//! guest shell spends a few per cent of its time in these instructions; the bit-parallel
//! model in [`super::string`] needs one pass per character of a strcspn set where the host
//! needs one instruction. The model stays the fallback for hosts without SSE4.2, and the
//! tests hold it to both this path and an element-by-element reference.
//!
//! For the other forms only IntRes2 comes from the host: the lengths, flags and the
//! …STRI/…STRM outputs are worked out by [`super::string`], and the explicit-length form
//! runs with the lengths already reduced to 0..=element count, so the host's length rules
//! never matter. PCMPISTRI, the form glibc's loops use, takes its index and flags from the
//! host instruction directly (its implicit lengths are the host's own rule, NUL-terminated).
//!
//! # Safety invariant
//! The module's `unsafe` is two calls of `#[target_feature(enable = "sse4.2")]` functions,
//! each made only after `is_x86_feature_detected!("sse4.2")` said the host has the feature.
//! The functions only compute on values (no memory, no pointers).

/// IntRes2 (one bit per element of `b`) for imm8 `imm` on `a` with `la` valid elements and
/// `b` with `lb`, both lengths at most the element count; `None` when the host cannot run
/// PCMPESTRM.
#[cfg(target_arch = "x86_64")]
pub(super) fn int_res2(imm: u8, a: u128, la: u32, b: u128, lb: u32) -> Option<u32> {
    if !std::arch::is_x86_feature_detected!("sse4.2") {
        return None;
    }
    // SAFETY: the host has SSE4.2 (checked just above), the only requirement of `estrm`.
    Some(unsafe { estrm(imm, a, la, b, lb) })
}

/// Without an x86-64 host there is no host instruction to ask.
#[cfg(not(target_arch = "x86_64"))]
pub(super) fn int_res2(_imm: u8, _a: u128, _la: u32, _b: u128, _lb: u32) -> Option<u32> {
    None
}

/// Expands `$call` (a macro taking a constant) once per value of imm8 bits 5:0, the bits
/// IntRes2 depends on (bit 6 only chooses the output form, bit 7 is ignored), and picks
/// the one for `$imm`: the intrinsic takes the immediate as a constant.
#[cfg(target_arch = "x86_64")]
macro_rules! by_imm {
    ($imm:expr, $call:ident; $($n:literal)*) => {
        match $imm & 0x3f {
            $($n => $call!($n),)*
            _ => unreachable!("imm8 & 0x3f < 64"),
        }
    };
}

/// PCMPISTRI itself for imm8 `imm` on `a` (xmm1) and `b` (xmm2/m128): the index it writes
/// to ECX and its arithmetic flags (CF, ZF, SF, OF; AF and PF clear) as EFLAGS bits; `None`
/// when the host cannot run it.
#[cfg(target_arch = "x86_64")]
pub(super) fn istri(imm: u8, a: u128, b: u128) -> Option<(u32, u64)> {
    if !std::arch::is_x86_feature_detected!("sse4.2") {
        return None;
    }
    // SAFETY: the host has SSE4.2 (checked just above), the only requirement of `istri_host`.
    Some(unsafe { istri_host(imm, a, b) })
}

/// Without an x86-64 host there is no host instruction to ask.
#[cfg(not(target_arch = "x86_64"))]
pub(super) fn istri(_imm: u8, _a: u128, _b: u128) -> Option<(u32, u64)> {
    None
}

/// [`istri`] on the host: imm8 bits 6:0 matter (bit 6 picks the least or most significant
/// index), so one instance per value of them.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse4.2")]
fn istri_host(imm: u8, a: u128, b: u128) -> (u32, u64) {
    use core::arch::x86_64::{
        _mm_cmpistrc, _mm_cmpistri, _mm_cmpistro, _mm_cmpistrs, _mm_cmpistrz, _mm_set_epi64x,
    };
    let v = |x: u128| _mm_set_epi64x((x >> 64) as i64, x as i64);
    let (va, vb) = (v(a), v(b));
    // The five intrinsics of one immediate are one PCMPISTRI to the compiler.
    macro_rules! run {
        ($n:expr) => {
            (
                _mm_cmpistri::<{ $n }>(va, vb),
                _mm_cmpistrc::<{ $n }>(va, vb),
                _mm_cmpistrz::<{ $n }>(va, vb),
                _mm_cmpistrs::<{ $n }>(va, vb),
                _mm_cmpistro::<{ $n }>(va, vb),
            )
        };
    }
    macro_rules! run_msb {
        ($n:literal) => {
            run!($n + 64)
        };
    }
    let (index, cf, zf, sf, of) = match imm & 0x7f {
        n if n < 64 => by_imm!(n, run;
            0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31
            32 33 34 35 36 37 38 39 40 41 42 43 44 45 46 47 48 49 50 51 52 53 54 55 56 57 58 59
            60 61 62 63),
        n => by_imm!(n - 64, run_msb;
            0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31
            32 33 34 35 36 37 38 39 40 41 42 43 44 45 46 47 48 49 50 51 52 53 54 55 56 57 58 59
            60 61 62 63),
    };
    let flags = u64::from(cf != 0)
        | u64::from(zf != 0) << 6
        | u64::from(sf != 0) << 7
        | u64::from(of != 0) << 11;
    (index as u32, flags)
}

/// PCMPESTRM's mask form (imm8 bit 6 clear): IntRes2 in the low bits of the result.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse4.2")]
fn estrm(imm: u8, a: u128, la: u32, b: u128, lb: u32) -> u32 {
    use core::arch::x86_64::{_mm_cmpestrm, _mm_cvtsi128_si32, _mm_set_epi64x};
    let v = |x: u128| _mm_set_epi64x((x >> 64) as i64, x as i64);
    let (va, vb, la, lb) = (v(a), v(b), la as i32, lb as i32);
    macro_rules! run {
        ($n:literal) => {
            _mm_cmpestrm::<$n>(va, la, vb, lb)
        };
    }
    let mask = by_imm!(imm, run;
        0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31
        32 33 34 35 36 37 38 39 40 41 42 43 44 45 46 47 48 49 50 51 52 53 54 55 56 57 58 59
        60 61 62 63);
    _mm_cvtsi128_si32(mask) as u32 & 0xffff
}
