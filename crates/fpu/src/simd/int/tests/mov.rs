//! Data movement: whole-state checks against the SDM's definitions, and the host CPU for
//! the merging moves and the extractions into general registers.
//!
//! The `asm!` blocks are the module's `unsafe`. Invariants: each names every register it
//! changes (as an output or a clobber), touches no memory but the live buffers it is given
//! pointers to, and leaves what the Rust ABI expects: an empty x87 stack (EMMS or FNINIT
//! where MMX or x87 registers were used) and the host's MXCSR and control word restored.

use iced_x86::{Code, Mnemonic};

use super::claims::forms;
use super::{exec, host_xmm, junk_state, HostXmm, Rng};
use crate::operands::Loc;
use crate::simd::int;
use crate::state::{Fpu, IO_DATA0};

/// The value of a source operand, all of it.
fn read(f: &Fpu, loc: Loc) -> u128 {
    match loc {
        Loc::Xmm(i) => f.xmm128(usize::from(i)),
        Loc::Mm(i) => u128::from(f.mm(usize::from(i))),
        _ => f.io128(),
    }
}

/// MOVD, MOVQ, MOVDQA/U, MOVAPS/UPS/APD/UPD, MOVNTx, LDDQU, MOVQ2DQ, MOVDQ2Q in all their
/// forms: the low bytes of the source, zero-extended into the destination register; a
/// memory or general-register destination gets exactly those bytes; nothing else changes.
#[test]
fn plain_moves_copy_and_zero_extend() {
    use Mnemonic as M;
    let mut rng = Rng::new(20);
    let mut seen = 0;
    for code in Code::values().filter(|&c| int::claims(c)) {
        let bytes = match code.mnemonic() {
            M::Movd => 4,
            M::Movq | M::Movq2dq | M::Movdq2q | M::Movntq => 8,
            M::Movdqa
            | M::Movdqu
            | M::Movaps
            | M::Movups
            | M::Movapd
            | M::Movupd
            | M::Movntdq
            | M::Movntps
            | M::Movntpd
            | M::Lddqu => 16,
            _ => continue,
        };
        let keep = if bytes == 16 {
            u128::MAX
        } else {
            (1u128 << (8 * bytes)) - 1
        };
        for locs in forms(code) {
            seen += 1;
            for _ in 0..20 {
                let mut f = junk_state(&mut rng);
                let mut want = f;
                let v = read(&f, locs[1]) & keep;
                match locs[0] {
                    Loc::Xmm(i) => want.set_xmm128(usize::from(i), v),
                    Loc::Mm(i) => want.set_mm(usize::from(i), v as u64),
                    _ if bytes == 16 => want.set_io128(v),
                    _ => want.io[IO_DATA0] = v as u64,
                }
                if locs.iter().any(|l| matches!(l, Loc::Mm(_))) {
                    want.mmx_enter();
                }
                exec(&mut f, code, locs, 0);
                assert_eq!(f, want, "{code:?} {locs:?}");
            }
        }
    }
    assert_eq!(seen, 55);
}

/// The host's result of a merging move `xmm0 <- op(xmm0, xmm1 or [b])`, against ours with
/// the destination in XMM3 and the source in XMM9 or memory.
fn check_merge(code: Code, src: Loc, host: fn(u128, u128) -> u128, rng: &mut Rng) {
    for _ in 0..200 {
        let mut f = junk_state(rng);
        let (a, b) = (rng.u128(), rng.u128());
        f.set_xmm128(3, a);
        f.set_xmm128(9, b);
        f.set_io128(b);
        let mut want = f;
        want.set_xmm128(3, host(a, b));
        exec(&mut f, code, [Loc::Xmm(3), src, Loc::None], 0);
        assert_eq!(f, want, "{code:?} {src:?}");
    }
}

#[test]
fn scalar_and_half_moves_against_host() {
    let mut rng = Rng::new(21);
    let reg: [(Code, HostXmm); 6] = [
        (Code::Movss_xmm_xmmm32, host_xmm!("movss xmm0, xmm1")),
        (Code::Movss_xmmm32_xmm, host_xmm!("movss xmm0, xmm1")),
        (Code::Movsd_xmm_xmmm64, host_xmm!("movsd xmm0, xmm1")),
        (Code::Movsd_xmmm64_xmm, host_xmm!("movsd xmm0, xmm1")),
        (Code::Movhlps_xmm_xmm, host_xmm!("movhlps xmm0, xmm1")),
        (Code::Movlhps_xmm_xmm, host_xmm!("movlhps xmm0, xmm1")),
    ];
    for (code, host) in reg {
        check_merge(code, Loc::Xmm(9), host, &mut rng);
    }
    let mem: [(Code, HostXmm); 6] = [
        (
            Code::Movss_xmm_xmmm32,
            host_xmm!("movss xmm0, dword ptr [{b}]"),
        ),
        (
            Code::Movsd_xmm_xmmm64,
            host_xmm!("movsd xmm0, qword ptr [{b}]"),
        ),
        (
            Code::Movlps_xmm_m64,
            host_xmm!("movlps xmm0, qword ptr [{b}]"),
        ),
        (
            Code::Movhps_xmm_m64,
            host_xmm!("movhps xmm0, qword ptr [{b}]"),
        ),
        (
            Code::Movlpd_xmm_m64,
            host_xmm!("movlpd xmm0, qword ptr [{b}]"),
        ),
        (
            Code::Movhpd_xmm_m64,
            host_xmm!("movhpd xmm0, qword ptr [{b}]"),
        ),
    ];
    for (code, host) in mem {
        check_merge(code, Loc::Mem, host, &mut rng);
    }
}

#[test]
fn scalar_and_half_stores() {
    let mut rng = Rng::new(22);
    let cases = [
        (Code::Movss_xmmm32_xmm, 0xffff_ffff, false),
        (Code::Movsd_xmmm64_xmm, u64::MAX, false),
        (Code::Movlps_m64_xmm, u64::MAX, false),
        (Code::Movlpd_m64_xmm, u64::MAX, false),
        (Code::Movhps_m64_xmm, u64::MAX, true),
        (Code::Movhpd_m64_xmm, u64::MAX, true),
    ];
    for (code, keep, high) in cases {
        for _ in 0..50 {
            let mut f = junk_state(&mut rng);
            let mut want = f;
            want.io[IO_DATA0] = f.xmm[6][usize::from(high)] & keep;
            exec(&mut f, code, [Loc::Mem, Loc::Xmm(6), Loc::None], 0);
            assert_eq!(f, want, "{code:?}");
        }
    }
}

/// A host computation of an extraction: `source -> general register`.
type HostGpr = fn(u128) -> u64;

/// A host computation that leaves a general register: `{g} <- op(xmm1 or mm1)`.
macro_rules! host_gpr {
    (xmm $($ins:tt)*) => {{
        fn host(b: u128) -> u64 {
            let b = b.to_le_bytes();
            let g: u64;
            // SAFETY: reads the 16-byte buffer `b` into xmm1 (declared clobbered) and
            // writes only the output register.
            unsafe {
                core::arch::asm!(
                    "movdqu xmm1, [{b}]",
                    $($ins)*,
                    b = in(reg) b.as_ptr(),
                    g = lateout(reg) g,
                    out("xmm1") _,
                    options(nostack, readonly),
                );
            }
            g
        }
        host as fn(u128) -> u64
    }};
    (mm $($ins:tt)*) => {{
        fn host(b: u128) -> u64 {
            let g: u64;
            // SAFETY: moves a general register into mm1 (declared clobbered), writes only
            // the output register, and ends with EMMS so the x87 stack is empty again.
            unsafe {
                core::arch::asm!(
                    "movq mm1, {b}",
                    $($ins)*,
                    "emms",
                    b = in(reg) b as u64,
                    g = lateout(reg) g,
                    out("mm1") _,
                    options(nostack, nomem),
                );
            }
            g
        }
        host as fn(u128) -> u64
    }};
}

#[test]
fn extractions_into_general_registers_against_host() {
    // The host writes a 32-bit register, which zero-extends it: `g` is the full value the
    // translator must write, for the r32 and r64 forms alike.
    let cases: [(Code, Code, u8, HostGpr); 10] = [
        (
            Code::Pmovmskb_r32_xmm,
            Code::Pmovmskb_r64_xmm,
            0,
            host_gpr!(xmm "pmovmskb {g:e}, xmm1"),
        ),
        (
            Code::Pmovmskb_r32_mm,
            Code::Pmovmskb_r64_mm,
            0,
            host_gpr!(mm "pmovmskb {g:e}, mm1"),
        ),
        (
            Code::Movmskps_r32_xmm,
            Code::Movmskps_r64_xmm,
            0,
            host_gpr!(xmm "movmskps {g:e}, xmm1"),
        ),
        (
            Code::Movmskpd_r32_xmm,
            Code::Movmskpd_r64_xmm,
            0,
            host_gpr!(xmm "movmskpd {g:e}, xmm1"),
        ),
        (
            Code::Pextrw_r32_xmm_imm8,
            Code::Pextrw_r64_xmm_imm8,
            0,
            host_gpr!(xmm "pextrw {g:e}, xmm1, 0"),
        ),
        (
            Code::Pextrw_r32_xmm_imm8,
            Code::Pextrw_r64_xmm_imm8,
            7,
            host_gpr!(xmm "pextrw {g:e}, xmm1, 7"),
        ),
        (
            Code::Pextrw_r32_xmm_imm8,
            Code::Pextrw_r64_xmm_imm8,
            13,
            host_gpr!(xmm "pextrw {g:e}, xmm1, 13"),
        ),
        (
            Code::Pextrw_r32_mm_imm8,
            Code::Pextrw_r64_mm_imm8,
            2,
            host_gpr!(mm "pextrw {g:e}, mm1, 2"),
        ),
        (
            Code::Pextrw_r32_mm_imm8,
            Code::Pextrw_r64_mm_imm8,
            3,
            host_gpr!(mm "pextrw {g:e}, mm1, 3"),
        ),
        (
            Code::Pextrw_r32_mm_imm8,
            Code::Pextrw_r64_mm_imm8,
            254,
            host_gpr!(mm "pextrw {g:e}, mm1, 254"),
        ),
    ];
    let mut rng = Rng::new(23);
    for (c32, c64, imm, host) in cases {
        for code in [c32, c64] {
            for _ in 0..200 {
                let mut f = junk_state(&mut rng);
                let locs = forms(code)[0];
                let src = locs[1];
                let mut want = f;
                want.io[IO_DATA0] = host(read(&f, src));
                if matches!(src, Loc::Mm(_)) {
                    want.mmx_enter();
                }
                exec(&mut f, code, locs, imm);
                assert_eq!(f, want, "{code:?} imm={imm}");
            }
        }
    }
}
