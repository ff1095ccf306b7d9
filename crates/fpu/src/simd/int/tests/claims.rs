//! What this module claims, and the rules every claimed form follows (MMX mode, #MF).

use iced_x86::{Code, CpuidFeature, EncodingKind, Mnemonic, OpCodeOperandKind as K};

use super::{exec, junk_state, Rng};
use crate::operands::{Loc, Operands};
use crate::simd::{execute_simd, int, SimdFault};

/// The register operand numbers the forms use, by operand position.
const REG: [u8; 3] = [3, 6, 12];

/// The operand lists of `code`'s forms: the register form, and the memory form when an
/// operand may be memory.
pub(super) fn forms(code: Code) -> Vec<[Loc; 3]> {
    let oc = code.op_code();
    let mut reg = [Loc::None; 3];
    let mut mem = [Loc::None; 3];
    let mut n = 0;
    for i in 0..oc.op_count() {
        let (r, m) = match oc.op_kind(i) {
            K::mm_reg | K::mm_rm => (Loc::Mm(REG[n]), Loc::Mm(REG[n])),
            K::xmm_reg | K::xmm_rm => (Loc::Xmm(REG[n]), Loc::Xmm(REG[n])),
            K::mm_or_mem => (Loc::Mm(REG[n]), Loc::Mem),
            K::xmm_or_mem => (Loc::Xmm(REG[n]), Loc::Mem),
            K::r32_or_mem | K::r64_or_mem => (Loc::Gpr, Loc::Mem),
            K::r32_reg | K::r64_reg | K::r32_rm | K::r64_rm => (Loc::Gpr, Loc::Gpr),
            K::mem => (Loc::Mem, Loc::Mem),
            K::imm8 => continue,
            k => panic!("{code:?}: unexpected operand kind {k:?}"),
        };
        reg[n] = r;
        mem[n] = m;
        n += 1;
    }
    if reg == mem {
        vec![reg]
    } else {
        vec![reg, mem]
    }
}

/// The legacy-encoded MMX..SSSE3 instructions that are another module's: floating-point
/// arithmetic, conversions and comparisons, MXCSR and EMMS, fences, hints, stores from
/// general registers, and the masked stores the translator does itself.
fn not_ours(m: Mnemonic) -> bool {
    use Mnemonic as M;
    matches!(
        m,
        M::Fisttp
            | M::Prefetchnta
            | M::Prefetcht0
            | M::Prefetcht1
            | M::Prefetcht2
            | M::Cvtpi2ps
            | M::Cvtpi2pd
            | M::Cvtsi2ss
            | M::Cvtsi2sd
            | M::Cvttps2pi
            | M::Cvttpd2pi
            | M::Cvtps2pi
            | M::Cvtpd2pi
            | M::Cvttss2si
            | M::Cvttsd2si
            | M::Cvtss2si
            | M::Cvtsd2si
            | M::Cvtps2pd
            | M::Cvtpd2ps
            | M::Cvtss2sd
            | M::Cvtsd2ss
            | M::Cvtdq2ps
            | M::Cvtps2dq
            | M::Cvttps2dq
            | M::Cvttpd2dq
            | M::Cvtdq2pd
            | M::Cvtpd2dq
            | M::Ucomiss
            | M::Ucomisd
            | M::Comiss
            | M::Comisd
            | M::Sqrtps
            | M::Sqrtpd
            | M::Sqrtss
            | M::Sqrtsd
            | M::Rsqrtps
            | M::Rsqrtss
            | M::Rcpps
            | M::Rcpss
            | M::Addps
            | M::Addpd
            | M::Addss
            | M::Addsd
            | M::Mulps
            | M::Mulpd
            | M::Mulss
            | M::Mulsd
            | M::Subps
            | M::Subpd
            | M::Subss
            | M::Subsd
            | M::Minps
            | M::Minpd
            | M::Minss
            | M::Minsd
            | M::Divps
            | M::Divpd
            | M::Divss
            | M::Divsd
            | M::Maxps
            | M::Maxpd
            | M::Maxss
            | M::Maxsd
            | M::Haddpd
            | M::Haddps
            | M::Hsubpd
            | M::Hsubps
            | M::Addsubpd
            | M::Addsubps
            | M::Cmpps
            | M::Cmppd
            | M::Cmpss
            | M::Cmpsd
            | M::Emms
            | M::Ldmxcsr
            | M::Stmxcsr
            | M::Lfence
            | M::Mfence
            | M::Sfence
            | M::Movnti
            | M::Maskmovq
            | M::Maskmovdqu
    )
}

#[test]
fn claims_exactly_the_non_arithmetic_legacy_forms() {
    let exts = [
        CpuidFeature::MMX,
        CpuidFeature::SSE,
        CpuidFeature::SSE2,
        CpuidFeature::SSE3,
        CpuidFeature::SSSE3,
    ];
    let mut claimed = 0;
    for code in Code::values() {
        let ours = code.op_code().encoding() == EncodingKind::Legacy
            && code.cpuid_features().iter().any(|f| exts.contains(f))
            && !not_ours(code.mnemonic());
        assert_eq!(int::claims(code), ours, "{code:?}");
        claimed += usize::from(ours);
    }
    // The count pins the list: a new iced version that adds or renames forms shows here.
    assert_eq!(claimed, 244);
}

#[test]
fn every_claimed_form_executes() {
    let mut rng = Rng::new(12);
    for code in Code::values().filter(|&c| int::claims(c)) {
        for locs in forms(code) {
            for imm in [0, 1, 0x55, 0xff] {
                let mut f = junk_state(&mut rng);
                exec(&mut f, code, locs, imm);
            }
        }
    }
}

#[test]
fn mmx_forms_enter_mmx_mode_or_raise_mf() {
    let mut rng = Rng::new(13);
    let mut checked = 0;
    for code in Code::values().filter(|&c| int::claims(c)) {
        for locs in forms(code) {
            let mmx = locs.iter().any(|l| matches!(l, Loc::Mm(_)));
            let mut f = junk_state(&mut rng);
            exec(&mut f, code, locs, 0);
            if mmx {
                assert_eq!((f.x87.ftw, f.x87.fsw >> 11 & 7), (0, 0), "{code:?}");
                // An unmasked exception pending (ES set): #MF and nothing changes.
                let mut f = junk_state(&mut rng);
                f.x87.fsw |= 0x80;
                let before = f;
                let r = execute_simd(&mut f, code, Operands::new(locs, 0, 0));
                assert_eq!(r, Err(SimdFault::Mf), "{code:?}");
                assert_eq!(f, before, "{code:?}");
                checked += 1;
            } else {
                // SSE forms leave the x87 alone, even with an exception pending.
                assert_eq!((f.x87.ftw, f.x87.fsw >> 11 & 7), (0xffff, 5), "{code:?}");
                let mut f = junk_state(&mut rng);
                f.x87.fsw |= 0x80;
                exec(&mut f, code, locs, 0);
            }
        }
    }
    assert!(checked > 100);
}

#[test]
fn mxcsr_is_never_touched() {
    let mut rng = Rng::new(14);
    for code in Code::values().filter(|&c| int::claims(c)) {
        for locs in forms(code) {
            let mut f = junk_state(&mut rng);
            f.mxcsr = 0x1f80 | 0x3f;
            exec(&mut f, code, locs, 0);
            assert_eq!(f.mxcsr, 0x1f80 | 0x3f, "{code:?}");
            f.mxcsr = 0;
            exec(&mut f, code, locs, 0);
            assert_eq!(f.mxcsr, 0, "{code:?}");
        }
    }
}

#[test]
fn destination_and_source_may_be_the_same_register() {
    let mut rng = Rng::new(15);
    for code in Code::values().filter(|&c| int::claims(c)) {
        let locs = forms(code)[0];
        let same = match locs {
            [Loc::Xmm(d), Loc::Xmm(_), Loc::None] => [Loc::Xmm(d), Loc::Xmm(d), Loc::None],
            [Loc::Mm(d), Loc::Mm(_), Loc::None] => [Loc::Mm(d), Loc::Mm(d), Loc::None],
            _ => continue,
        };
        for imm in [0, 0x1b, 0xff] {
            let mut f = junk_state(&mut rng);
            // The same value in both registers of the two-register form.
            f.xmm[usize::from(REG[1])] = f.xmm[usize::from(REG[0])];
            f.x87.regs[usize::from(REG[1] & 7)] = f.x87.regs[usize::from(REG[0] & 7)];
            let mut g = f;
            exec(&mut f, code, locs, imm);
            exec(&mut g, code, same, imm);
            let d = usize::from(REG[0]);
            assert_eq!(f.xmm[d], g.xmm[d], "{code:?}");
            assert_eq!(f.mm(d), g.mm(d), "{code:?}");
        }
    }
}
