//! `claims` covers exactly the intended SSE4 forms, and every claimed form runs.

use iced_x86::{CpuidFeature, EncodingKind, OpCodeOperandKind};

use super::*;
use crate::simd::sse4;

/// The legacy-encoded SSE4.1/SSE4.2 codes this module is responsible for: all of them but
/// the floating-point arithmetic (ROUNDxx, DPPx) and CRC32 (a general-register
/// instruction, evaluated through `crc32c`).
fn intended(code: Code) -> bool {
    let f = code.cpuid_features();
    let sse4 = f.contains(&CpuidFeature::SSE4_1) || f.contains(&CpuidFeature::SSE4_2);
    let name = format!("{code:?}");
    sse4 && code.op_code().encoding() == EncodingKind::Legacy
        && !["Round", "Dpp", "Crc32"]
            .iter()
            .any(|p| name.starts_with(p))
}

#[test]
fn claims_exactly_the_intended_codes() {
    let mut n = 0;
    for code in Code::values() {
        assert_eq!(sse4::claims(code), intended(code), "{code:?}");
        if !sse4::claims(code) {
            let mut fpu = Fpu::default();
            let ops = Operands::new([Loc::Xmm(1), Loc::Xmm(2), Loc::None], 0, 0);
            assert!(sse4::execute(&mut fpu, code, ops).is_none(), "{code:?}");
        } else {
            n += 1;
        }
    }
    assert_eq!(n, 54);
}

/// Every claimed code runs (no #UD) with each register/memory choice its operands allow.
#[test]
fn every_claimed_code_executes() {
    for code in Code::values().filter(|&c| sse4::claims(c)) {
        let oc = code.op_code();
        for use_mem in [false, true] {
            let mut locs = [Loc::None; 3];
            let mut n = 0;
            for i in 0..oc.op_count() {
                use OpCodeOperandKind::*;
                let loc = match oc.op_kind(i) {
                    xmm_reg => Loc::Xmm(3),
                    xmm_or_mem if use_mem => Loc::Mem,
                    xmm_or_mem => Loc::Xmm(4),
                    mem => Loc::Mem,
                    r32_or_mem | r64_or_mem if use_mem => Loc::Mem,
                    r32_or_mem | r64_or_mem | r32_reg | r64_reg => Loc::Gpr,
                    _ => continue,
                };
                locs[n] = loc;
                n += 1;
            }
            let mut fpu = Fpu::default();
            let r = execute_simd(&mut fpu, code, Operands::new(locs, 0x5a, 0));
            assert_eq!(r, Ok(()), "{code:?} {locs:?}");
        }
    }
}
