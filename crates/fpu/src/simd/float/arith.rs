//! Arithmetic beyond the plain element-wise operations: MIN/MAX, the RCP/RSQRT
//! approximations, ROUND, the SSE3 horizontal and alternating forms, and SSE4.1 DPPS/DPPD.

use iced_x86::Code;

use super::lane::{self, binop, Mx, Op, W};
use super::{source, write_lanes, xmm};
use crate::operands::Operands;
use crate::simd::SimdFault;
use crate::soft::{self, Env, Flags, Round, IE, PE, SF32, SF64};
use crate::state::Fpu;

/// True for the instructions [`execute`] implements.
pub(super) fn claims(code: Code) -> bool {
    matches!(
        code,
        Code::Addsubps_xmm_xmmm128
            | Code::Addsubpd_xmm_xmmm128
            | Code::Haddps_xmm_xmmm128
            | Code::Haddpd_xmm_xmmm128
            | Code::Hsubps_xmm_xmmm128
            | Code::Hsubpd_xmm_xmmm128
            | Code::Dpps_xmm_xmmm128_imm8
            | Code::Dppd_xmm_xmmm128_imm8
    )
}

/// ADDSUB, HADD, HSUB and DPP.
pub(super) fn execute(fpu: &mut Fpu, code: Code, ops: Operands) -> Option<Result<(), SimdFault>> {
    let w = match code {
        Code::Addsubps_xmm_xmmm128
        | Code::Haddps_xmm_xmmm128
        | Code::Hsubps_xmm_xmmm128
        | Code::Dpps_xmm_xmmm128_imm8 => W::S,
        Code::Addsubpd_xmm_xmmm128
        | Code::Haddpd_xmm_xmmm128
        | Code::Hsubpd_xmm_xmmm128
        | Code::Dppd_xmm_xmmm128_imm8 => W::D,
        _ => return None,
    };
    Some(horizontal(fpu, code, ops, w))
}

/// The SSE3 and SSE4.1 instructions that combine elements across positions.
fn horizontal(fpu: &mut Fpu, code: Code, ops: Operands, w: W) -> Result<(), SimdFault> {
    let d = xmm(ops, 0)?;
    let dv = fpu.xmm128(d);
    let sv = source(fpu, ops, 1)?;
    let n = w.lanes();
    let mut pairs = [(0, 0); 4];
    match code {
        Code::Addsubps_xmm_xmmm128 | Code::Addsubpd_xmm_xmmm128 => {
            for (i, p) in pairs.iter_mut().enumerate().take(n) {
                *p = (w.get(dv, i), w.get(sv, i));
            }
            // Even elements subtract, odd elements add.
            write_lanes(fpu, d, w, dv, &pairs[..n], |mx, i, a, b| {
                let op = if i % 2 == 0 { Op::Sub } else { Op::Add };
                binop(mx, w, op, a, b)
            })
        }
        Code::Dpps_xmm_xmmm128_imm8 | Code::Dppd_xmm_xmmm128_imm8 => {
            dpp(fpu, d, w, dv, sv, ops.imm())
        }
        _ => {
            // Each result combines two adjacent elements: the destination's pairs fill the
            // low half of the result, the source's the high half.
            let half = n / 2;
            for (i, p) in pairs.iter_mut().enumerate().take(n) {
                let (v, j) = if i < half {
                    (dv, 2 * i)
                } else {
                    (sv, 2 * (i - half))
                };
                *p = (w.get(v, j), w.get(v, j + 1));
            }
            let add = matches!(code, Code::Haddps_xmm_xmmm128 | Code::Haddpd_xmm_xmmm128);
            let op = if add { Op::Add } else { Op::Sub };
            write_lanes(fpu, d, w, dv, &pairs[..n], |mx, _, a, b| {
                binop(mx, w, op, a, b)
            })
        }
    }
}

/// DPPS/DPPD (SDM Vol. 2 "DPPS"): the products selected by imm8[7:4] (others +0.0), summed
/// pairwise in the order the SDM's operation gives, the sum broadcast to the elements
/// selected by imm8[3:0] (others +0.0). The SDM determines exceptions "separately for each
/// add and multiply operation": each stage (the multiplies, the first adds, the last add)
/// is rounded under MXCSR and its flags are made architectural like those of a separate
/// packed instruction, so an unmasked exception in a stage stops there with the flags of
/// the earlier stages recorded and the destination unchanged.
fn dpp(fpu: &mut Fpu, d: usize, w: W, dv: u128, sv: u128, imm: u8) -> Result<(), SimdFault> {
    let mx = Mx(fpu.mxcsr);
    let n = w.lanes();
    let mut flags: Flags = 0;
    let mut t = [0u64; 4];
    for (i, ti) in t.iter_mut().enumerate().take(n) {
        if imm & (0x10 << i) != 0 {
            let (r, f) = binop(mx, w, Op::Mul, w.get(dv, i), w.get(sv, i));
            flags |= f;
            *ti = r;
        }
    }
    lane::commit(fpu, flags)?;
    let add = |a, b, flags: &mut Flags| {
        let (r, f) = binop(mx, w, Op::Add, a, b);
        *flags |= f;
        r
    };
    let mut flags = 0;
    let sum = if n == 4 {
        let lo = add(t[0], t[1], &mut flags);
        let hi = add(t[2], t[3], &mut flags);
        lane::commit(fpu, flags)?;
        flags = 0;
        add(lo, hi, &mut flags)
    } else {
        add(t[0], t[1], &mut flags)
    };
    lane::commit(fpu, flags)?;
    let mut out = 0u128;
    for i in 0..n {
        if imm & (1 << i) != 0 {
            w.set(&mut out, i, sum);
        }
    }
    fpu.set_xmm128(d, out);
    Ok(())
}

/// MIN (`max` false) or MAX of `a` (destination) and `b` (source): `b` whenever the
/// comparison fails, so for a NaN in either operand (IE, even for a QNaN) and for two zeros
/// of any signs (SDM Vol. 2 "MINPS").
pub(super) fn minmax(mx: Mx, w: W, a: u64, b: u64, max: bool) -> (u64, Flags) {
    let (x, fa) = mx.src(w, a);
    let (y, fb) = mx.src(w, b);
    if w.is_nan(x) || w.is_nan(y) {
        return (y, IE);
    }
    let (kx, ky) = (w.key(x), w.key(y));
    let first = if max { kx > ky } else { kx < ky };
    (if first { x } else { y }, fa | fb)
}

/// Rounds a double-precision value that is a normal single-precision number to single
/// precision by truncating its significand to 12 fraction bits, an approximation with a
/// relative error below 2^-12.
fn approx12(r: u64) -> u64 {
    let sign = (r >> 32) & 0x8000_0000;
    let exp = ((r >> 52) & 0x7ff) + 127 - 1023;
    let frac = (r >> 29) & 0x007f_f800;
    sign | exp << 23 | frac
}

/// RCPSS/RCPPS element: 1/a with |relative error| <= 1.5 * 2^-12 (the correctly rounded
/// reciprocal truncated to 12 fraction bits, so not bit-identical to any Intel or AMD
/// part). Denormal inputs read as zero and tiny results flush to zero whatever DAZ/FTZ say
/// (SDM Vol. 2 "RCPPS"); no flags.
pub(super) fn rcp(a: u64) -> u64 {
    let w = W::S;
    let sign = a & w.sign();
    if w.is_nan(a) {
        return a | w.quiet();
    }
    if w.is_zero(a) || w.is_denormal(a) {
        return sign | w.inf();
    }
    if w.is_inf(a) {
        return sign;
    }
    let one = SF64 { v: 1f64.to_bits() };
    let x = soft::f32_to_f64(SF32 { v: a as u32 });
    let (r, _) = soft::with_env(Env::DEFAULT, || soft::f64_div(one, x).v);
    if r & !(1 << 63) < 0x3810_0000_0000_0000 {
        // Below 2^-126: tiny, always flushed.
        return sign;
    }
    approx12(r)
}

/// RSQRTSS/RSQRTPS element: 1/sqrt(a) within the same error bound as [`rcp`]. ±0 and
/// denormals give ±inf, +inf gives +0, negative numbers and -inf the QNaN indefinite;
/// no flags.
pub(super) fn rsqrt(a: u64) -> u64 {
    let w = W::S;
    let sign = a & w.sign();
    if w.is_nan(a) {
        return a | w.quiet();
    }
    if w.is_zero(a) || w.is_denormal(a) {
        return sign | w.inf();
    }
    if sign != 0 {
        return w.indefinite();
    }
    if w.is_inf(a) {
        return 0;
    }
    let one = SF64 { v: 1f64.to_bits() };
    let x = soft::f32_to_f64(SF32 { v: a as u32 });
    let (r, _) = soft::with_env(Env::DEFAULT, || soft::f64_div(one, soft::f64_sqrt(x)).v);
    approx12(r)
}

/// ROUNDPS/PD/SS/SD element (SSE4.1): `a` rounded to an integral value in the mode of
/// imm8[1:0], or MXCSR.RC when imm8[2] is set; imm8[3] suppresses the precision exception.
/// Only a SNaN raises IE; DAZ applies, DE is never reported.
pub(super) fn round(mx: Mx, w: W, a: u64, imm: u8) -> (u64, Flags) {
    let rc = if imm & 4 != 0 {
        mx.round()
    } else {
        Round::from_rc(u32::from(imm))
    };
    let (a, _) = mx.src(w, a);
    if w.is_nan(a) {
        return lane::nan2(w, a, a);
    }
    let env = Env {
        round: rc,
        precision: 80,
    };
    let (r, f) = soft::with_env(env, || match w {
        W::S => u64::from(soft::f32_round_to_int(SF32 { v: a as u32 }, true).v),
        W::D => soft::f64_round_to_int(SF64 { v: a }, true).v,
    });
    (r, if imm & 8 != 0 { f & !PE } else { f })
}
