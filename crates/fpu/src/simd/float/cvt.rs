//! Conversions between single, double and integer formats (SSE, SSE2, and the MMX-register
//! forms CVTPI2PS/PD, CVT(T)PS2PI, CVT(T)PD2PI).

use iced_x86::Code;

use super::lane::{self, Mx, W};
use super::{hard, source};
use crate::operands::{Loc, Operands};
use crate::simd::SimdFault;
use crate::soft::{self, Env, Flags, Round, IE, SF32, SF64};
use crate::state::{Fpu, IO_DATA0};

/// FSW.ES: an unmasked x87 exception is pending.
const FSW_ES: u16 = 0x80;

/// True for the instructions [`execute`] implements.
pub(super) fn claims(code: Code) -> bool {
    matches!(
        code,
        Code::Cvtsi2ss_xmm_rm32
            | Code::Cvtsi2ss_xmm_rm64
            | Code::Cvtsi2sd_xmm_rm32
            | Code::Cvtsi2sd_xmm_rm64
            | Code::Cvtss2si_r32_xmmm32
            | Code::Cvtss2si_r64_xmmm32
            | Code::Cvttss2si_r32_xmmm32
            | Code::Cvttss2si_r64_xmmm32
            | Code::Cvtsd2si_r32_xmmm64
            | Code::Cvtsd2si_r64_xmmm64
            | Code::Cvttsd2si_r32_xmmm64
            | Code::Cvttsd2si_r64_xmmm64
            | Code::Cvtss2sd_xmm_xmmm32
            | Code::Cvtsd2ss_xmm_xmmm64
            | Code::Cvtps2pd_xmm_xmmm64
            | Code::Cvtpd2ps_xmm_xmmm128
            | Code::Cvtdq2ps_xmm_xmmm128
            | Code::Cvtps2dq_xmm_xmmm128
            | Code::Cvttps2dq_xmm_xmmm128
            | Code::Cvtdq2pd_xmm_xmmm64
            | Code::Cvtpd2dq_xmm_xmmm128
            | Code::Cvttpd2dq_xmm_xmmm128
            | Code::Cvtpi2ps_xmm_mmm64
            | Code::Cvtpi2pd_xmm_mmm64
            | Code::Cvtps2pi_mm_xmmm64
            | Code::Cvttps2pi_mm_xmmm64
            | Code::Cvtpd2pi_mm_xmmm128
            | Code::Cvttpd2pi_mm_xmmm128
    )
}

/// A floating-point element to a signed integer of 32 (`wide` false) or 64 bits, rounded
/// by MXCSR.RC or truncated. NaN and out-of-range values raise IE and give the integer
/// indefinite (the sign bit alone). DAZ applies; DE is not reported.
fn to_int(mx: Mx, w: W, x: u64, wide: bool, trunc: bool) -> (u64, Flags) {
    let (x, _) = mx.src(w, x);
    let env = Env {
        round: if trunc { Round::Zero } else { mx.round() },
        precision: 80,
    };
    let (r, f) = soft::with_env(env, || match (w, wide) {
        (W::S, false) => u64::from(soft::f32_to_i32(SF32 { v: x as u32 }) as u32),
        (W::S, true) => soft::f32_to_i64(SF32 { v: x as u32 }) as u64,
        (W::D, false) => u64::from(soft::f64_to_i32(SF64 { v: x }) as u32),
        (W::D, true) => soft::f64_to_i64(SF64 { v: x }) as u64,
    });
    if f & IE != 0 {
        (if wide { 1 << 63 } else { 1 << 31 }, IE)
    } else {
        (r, f)
    }
}

/// A signed integer to a floating-point element, rounded by MXCSR.RC (PE only).
fn from_int(mx: Mx, w: W, x: i64, wide: bool) -> (u64, Flags) {
    if w == W::D && !wide {
        // Every i32 is a double: exact in every rounding mode, no flags.
        return (f64::from(x as i32).to_bits(), 0);
    }
    soft::with_env(mx.env(), || match (w, wide) {
        (W::S, false) => u64::from(soft::i32_to_f32(x as i32).v),
        (W::S, true) => u64::from(soft::i64_to_f32(x).v),
        (W::D, false) => soft::i32_to_f64(x as i32).v,
        (W::D, true) => soft::i64_to_f64(x).v,
    })
}

/// A single to a double (`to` D) or a double to a single (`to` S): DAZ/DE on the operand,
/// a NaN quieted with its payload kept (truncated to single), SoftFloat's rounding and
/// flags, and FTZ on the narrowed result.
pub(super) fn to_float(mx: Mx, to: W, x: u64) -> (u64, Flags) {
    let from = if to == W::D { W::S } else { W::D };
    if to == W::D && !from.is_nan(x) && !from.is_denormal(x) {
        // Widening a zero, normal or infinite single is exact, flagless and independent of
        // MXCSR; the host does it.
        return (f64::from(f32::from_bits(x as u32)).to_bits(), 0);
    }
    if to == W::S && hard::usable(mx) {
        if let Some(r) = hard::narrow(x) {
            #[cfg(test)]
            hard::test_hooks::taken();
            return (r, 0);
        }
    }
    let (x, fx) = mx.src(from, x);
    let (r, f) = soft::with_env(mx.env(), || match to {
        W::D => soft::f32_to_f64(SF32 { v: x as u32 }).v,
        W::S => u64::from(soft::f64_to_f32(SF64 { v: x }).v),
    });
    // Only narrowing can overflow or underflow.
    mx.result(to, r, f | fx, || lane::double_fits_single(x))
}

/// The conversions. Where an MMX register is an operand the instruction is an MMX one: a
/// pending x87 exception faults first (#MF) and success enters MMX mode.
pub(super) fn execute(fpu: &mut Fpu, code: Code, ops: Operands) -> Option<Result<(), SimdFault>> {
    if !claims(code) {
        return None;
    }
    Some(convert(fpu, code, ops))
}

/// One conversion: all elements computed, flags committed, then the destination (XMM,
/// MMX, or the general register in `io`) written.
fn convert(fpu: &mut Fpu, code: Code, ops: Operands) -> Result<(), SimdFault> {
    // A form with an MMX register operand is an MMX instruction. With a memory source,
    // CVTPI2PD does not touch the x87 (SDM Vol. 2 "CVTPI2PD"); the SDM says CVTPI2PS does,
    // but AMD processors leave the x87 alone there too, and crane86 presents an AMD CPU
    // (the conformance run against an AMD host shows it).
    let _ = code;
    let mmx = matches!(ops.loc(0), Loc::Mm(_)) || matches!(ops.loc(1), Loc::Mm(_));
    if mmx && fpu.x87.fsw & FSW_ES != 0 {
        return Err(SimdFault::Mf);
    }
    let mx = Mx(fpu.mxcsr);
    let s = source(fpu, ops, 1)?;
    let base = match ops.loc(0) {
        Loc::Xmm(n) => fpu.xmm128(usize::from(n)),
        Loc::Mm(_) | Loc::Gpr => 0,
        _ => return Err(SimdFault::Ud),
    };
    let mut flags: Flags = 0;
    // The packed double-to-narrower forms zero the destination's upper half.
    let narrows = matches!(
        code,
        Code::Cvtpd2ps_xmm_xmmm128 | Code::Cvtpd2dq_xmm_xmmm128 | Code::Cvttpd2dq_xmm_xmmm128
    );
    let mut out = if narrows { 0 } else { base };
    let mut put = |to: W, i: usize, (r, f): (u64, Flags)| {
        flags |= f;
        to.set(&mut out, i, r);
    };
    let (sw, dw) = (W::S, W::D);
    let s64 = s as u64;
    match code {
        Code::Cvtsi2ss_xmm_rm32 => put(sw, 0, from_int(mx, sw, s64 as i32 as i64, false)),
        Code::Cvtsi2ss_xmm_rm64 => put(sw, 0, from_int(mx, sw, s64 as i64, true)),
        Code::Cvtsi2sd_xmm_rm32 => put(dw, 0, from_int(mx, dw, s64 as i32 as i64, false)),
        Code::Cvtsi2sd_xmm_rm64 => put(dw, 0, from_int(mx, dw, s64 as i64, true)),
        Code::Cvtss2si_r32_xmmm32 | Code::Cvttss2si_r32_xmmm32 => {
            let t = code == Code::Cvttss2si_r32_xmmm32;
            put(dw, 0, to_int(mx, sw, sw.get(s, 0), false, t));
        }
        Code::Cvtss2si_r64_xmmm32 | Code::Cvttss2si_r64_xmmm32 => {
            let t = code == Code::Cvttss2si_r64_xmmm32;
            put(dw, 0, to_int(mx, sw, sw.get(s, 0), true, t));
        }
        Code::Cvtsd2si_r32_xmmm64 | Code::Cvttsd2si_r32_xmmm64 => {
            let t = code == Code::Cvttsd2si_r32_xmmm64;
            put(dw, 0, to_int(mx, dw, s64, false, t));
        }
        Code::Cvtsd2si_r64_xmmm64 | Code::Cvttsd2si_r64_xmmm64 => {
            let t = code == Code::Cvttsd2si_r64_xmmm64;
            put(dw, 0, to_int(mx, dw, s64, true, t));
        }
        Code::Cvtss2sd_xmm_xmmm32 => put(dw, 0, to_float(mx, dw, sw.get(s, 0))),
        Code::Cvtsd2ss_xmm_xmmm64 => put(sw, 0, to_float(mx, sw, s64)),
        Code::Cvtps2pd_xmm_xmmm64 => {
            for i in 0..2 {
                put(dw, i, to_float(mx, dw, sw.get(s, i)));
            }
        }
        Code::Cvtpd2ps_xmm_xmmm128 => {
            for i in 0..2 {
                put(sw, i, to_float(mx, sw, dw.get(s, i)));
            }
        }
        Code::Cvtdq2ps_xmm_xmmm128 => {
            for i in 0..4 {
                put(sw, i, from_int(mx, sw, sw.get(s, i) as i32 as i64, false));
            }
        }
        Code::Cvtps2dq_xmm_xmmm128 | Code::Cvttps2dq_xmm_xmmm128 => {
            let t = code == Code::Cvttps2dq_xmm_xmmm128;
            for i in 0..4 {
                put(sw, i, to_int(mx, sw, sw.get(s, i), false, t));
            }
        }
        Code::Cvtdq2pd_xmm_xmmm64 | Code::Cvtpi2pd_xmm_mmm64 => {
            for i in 0..2 {
                put(dw, i, from_int(mx, dw, sw.get(s, i) as i32 as i64, false));
            }
        }
        Code::Cvtpd2dq_xmm_xmmm128
        | Code::Cvttpd2dq_xmm_xmmm128
        | Code::Cvtpd2pi_mm_xmmm128
        | Code::Cvttpd2pi_mm_xmmm128 => {
            let t = matches!(
                code,
                Code::Cvttpd2dq_xmm_xmmm128 | Code::Cvttpd2pi_mm_xmmm128
            );
            for i in 0..2 {
                put(sw, i, to_int(mx, dw, dw.get(s, i), false, t));
            }
        }
        Code::Cvtpi2ps_xmm_mmm64 => {
            for i in 0..2 {
                put(sw, i, from_int(mx, sw, sw.get(s, i) as i32 as i64, false));
            }
        }
        Code::Cvtps2pi_mm_xmmm64 | Code::Cvttps2pi_mm_xmmm64 => {
            let t = code == Code::Cvttps2pi_mm_xmmm64;
            for i in 0..2 {
                put(sw, i, to_int(mx, sw, sw.get(s, i), false, t));
            }
        }
        _ => return Err(SimdFault::Ud),
    }
    lane::commit(fpu, flags)?;
    if mmx {
        fpu.mmx_enter();
    }
    match ops.loc(0) {
        Loc::Xmm(n) => fpu.set_xmm128(usize::from(n), out),
        Loc::Mm(n) => fpu.set_mm(usize::from(n), out as u64),
        _ => fpu.io[IO_DATA0] = out as u64,
    }
    Ok(())
}
