//! The packed-integer SSE4 instructions against the host, register and memory forms, with
//! every immediate for the ones that take one.

use super::*;
use crate::state::IO_FLAGS;

/// Defines `fn $name(imm: u8, h: &mut Host)` for an instruction without immediate.
macro_rules! host_fn {
    ($name:ident, $bytes:literal) => {
        fn $name(_imm: u8, h: &mut Host) {
            host_asm!(h, $bytes);
        }
    };
}

host_fn!(h_pblendvb, "0x66, 0x0f, 0x38, 0x10, 0xca");
host_fn!(h_blendvps, "0x66, 0x0f, 0x38, 0x14, 0xca");
host_fn!(h_blendvpd, "0x66, 0x0f, 0x38, 0x15, 0xca");
host_fn!(h_ptest, "0x66, 0x0f, 0x38, 0x17, 0xca");
host_fn!(h_pmovsxbw, "0x66, 0x0f, 0x38, 0x20, 0xca");
host_fn!(h_pmovsxbd, "0x66, 0x0f, 0x38, 0x21, 0xca");
host_fn!(h_pmovsxbq, "0x66, 0x0f, 0x38, 0x22, 0xca");
host_fn!(h_pmovsxwd, "0x66, 0x0f, 0x38, 0x23, 0xca");
host_fn!(h_pmovsxwq, "0x66, 0x0f, 0x38, 0x24, 0xca");
host_fn!(h_pmovsxdq, "0x66, 0x0f, 0x38, 0x25, 0xca");
host_fn!(h_pmuldq, "0x66, 0x0f, 0x38, 0x28, 0xca");
host_fn!(h_pcmpeqq, "0x66, 0x0f, 0x38, 0x29, 0xca");
host_fn!(h_packusdw, "0x66, 0x0f, 0x38, 0x2b, 0xca");
host_fn!(h_pmovzxbw, "0x66, 0x0f, 0x38, 0x30, 0xca");
host_fn!(h_pmovzxbd, "0x66, 0x0f, 0x38, 0x31, 0xca");
host_fn!(h_pmovzxbq, "0x66, 0x0f, 0x38, 0x32, 0xca");
host_fn!(h_pmovzxwd, "0x66, 0x0f, 0x38, 0x33, 0xca");
host_fn!(h_pmovzxwq, "0x66, 0x0f, 0x38, 0x34, 0xca");
host_fn!(h_pmovzxdq, "0x66, 0x0f, 0x38, 0x35, 0xca");
host_fn!(h_pcmpgtq, "0x66, 0x0f, 0x38, 0x37, 0xca");
host_fn!(h_pminsb, "0x66, 0x0f, 0x38, 0x38, 0xca");
host_fn!(h_pminsd, "0x66, 0x0f, 0x38, 0x39, 0xca");
host_fn!(h_pminuw, "0x66, 0x0f, 0x38, 0x3a, 0xca");
host_fn!(h_pminud, "0x66, 0x0f, 0x38, 0x3b, 0xca");
host_fn!(h_pmaxsb, "0x66, 0x0f, 0x38, 0x3c, 0xca");
host_fn!(h_pmaxsd, "0x66, 0x0f, 0x38, 0x3d, 0xca");
host_fn!(h_pmaxuw, "0x66, 0x0f, 0x38, 0x3e, 0xca");
host_fn!(h_pmaxud, "0x66, 0x0f, 0x38, 0x3f, 0xca");
host_fn!(h_pmulld, "0x66, 0x0f, 0x38, 0x40, 0xca");
host_fn!(h_phminposuw, "0x66, 0x0f, 0x38, 0x41, 0xca");
with_imms!(host_imm_fn!(h_blendps, "0x66, 0x0f, 0x3a, 0x0c, 0xca"));
with_imms!(host_imm_fn!(h_blendpd, "0x66, 0x0f, 0x3a, 0x0d, 0xca"));
with_imms!(host_imm_fn!(h_pblendw, "0x66, 0x0f, 0x3a, 0x0e, 0xca"));
with_imms!(host_imm_fn!(h_mpsadbw, "0x66, 0x0f, 0x3a, 0x42, 0xca"));

type HostFn = fn(u8, &mut Host);

/// Each instruction, its host runner, the size of its memory operand and whether it takes
/// an immediate.
const TABLE: [(Code, HostFn, usize, bool); 34] = {
    use Code::*;
    [
        (Pblendvb_xmm_xmmm128, h_pblendvb, 16, false),
        (Blendvps_xmm_xmmm128, h_blendvps, 16, false),
        (Blendvpd_xmm_xmmm128, h_blendvpd, 16, false),
        (Ptest_xmm_xmmm128, h_ptest, 16, false),
        (Pmovsxbw_xmm_xmmm64, h_pmovsxbw, 8, false),
        (Pmovsxbd_xmm_xmmm32, h_pmovsxbd, 4, false),
        (Pmovsxbq_xmm_xmmm16, h_pmovsxbq, 2, false),
        (Pmovsxwd_xmm_xmmm64, h_pmovsxwd, 8, false),
        (Pmovsxwq_xmm_xmmm32, h_pmovsxwq, 4, false),
        (Pmovsxdq_xmm_xmmm64, h_pmovsxdq, 8, false),
        (Pmuldq_xmm_xmmm128, h_pmuldq, 16, false),
        (Pcmpeqq_xmm_xmmm128, h_pcmpeqq, 16, false),
        (Packusdw_xmm_xmmm128, h_packusdw, 16, false),
        (Pmovzxbw_xmm_xmmm64, h_pmovzxbw, 8, false),
        (Pmovzxbd_xmm_xmmm32, h_pmovzxbd, 4, false),
        (Pmovzxbq_xmm_xmmm16, h_pmovzxbq, 2, false),
        (Pmovzxwd_xmm_xmmm64, h_pmovzxwd, 8, false),
        (Pmovzxwq_xmm_xmmm32, h_pmovzxwq, 4, false),
        (Pmovzxdq_xmm_xmmm64, h_pmovzxdq, 8, false),
        (Pcmpgtq_xmm_xmmm128, h_pcmpgtq, 16, false),
        (Pminsb_xmm_xmmm128, h_pminsb, 16, false),
        (Pminsd_xmm_xmmm128, h_pminsd, 16, false),
        (Pminuw_xmm_xmmm128, h_pminuw, 16, false),
        (Pminud_xmm_xmmm128, h_pminud, 16, false),
        (Pmaxsb_xmm_xmmm128, h_pmaxsb, 16, false),
        (Pmaxsd_xmm_xmmm128, h_pmaxsd, 16, false),
        (Pmaxuw_xmm_xmmm128, h_pmaxuw, 16, false),
        (Pmaxud_xmm_xmmm128, h_pmaxud, 16, false),
        (Pmulld_xmm_xmmm128, h_pmulld, 16, false),
        (Phminposuw_xmm_xmmm128, h_phminposuw, 16, false),
        (Blendps_xmm_xmmm128_imm8, h_blendps, 16, true),
        (Blendpd_xmm_xmmm128_imm8, h_blendpd, 16, true),
        (Pblendw_xmm_xmmm128_imm8, h_pblendw, 16, true),
        (Mpsadbw_xmm_xmmm128_imm8, h_mpsadbw, 16, true),
    ]
};

/// One random case of `code` against the host, register form and memory form (the memory
/// operand holding only the bytes the form reads, as the translator loads it).
fn check_case(rng: &mut Rng, code: Code, host: HostFn, mem_bytes: usize, imm: u8) {
    let (a, b) = rng.pair();
    let h0 = Host {
        x0: rng.vector(),
        x1: a,
        x2: b,
        ..Host::default()
    };
    let mut h = h0;
    host(imm, &mut h);
    for mem in [false, true] {
        let mut fpu = fpu_of(&h0);
        let src = if mem {
            let keep = u128::MAX >> (128 - 8 * mem_bytes);
            fpu.set_io128(b & keep);
            Loc::Mem
        } else {
            Loc::Xmm(2)
        };
        run(&mut fpu, code, [Loc::Xmm(1), src, Loc::None], imm);
        let what = format!(
            "{code:?} imm={imm:#04x} a={a:#x} b={b:#x} x0={:#x} mem={mem}",
            h0.x0
        );
        assert_eq!(fpu.xmm128(1), h.x1, "{what}");
        assert_eq!(fpu.xmm128(0), h.x0, "xmm0: {what}");
        if code == Code::Ptest_xmm_xmmm128 {
            assert_eq!(fpu.io[IO_FLAGS], h.flags & ARITH_FLAGS, "flags: {what}");
        }
    }
}

#[test]
fn packed_integer_ops_match_host() {
    if !host_ok() {
        return;
    }
    let mut rng = Rng::new(21);
    for (code, host, mem_bytes, has_imm) in TABLE {
        if has_imm {
            for imm in 0..=255u8 {
                for _ in 0..20 {
                    check_case(&mut rng, code, host, mem_bytes, imm);
                }
            }
        } else {
            for _ in 0..3000 {
                let imm = rng.next() as u8;
                check_case(&mut rng, code, host, mem_bytes, imm);
            }
        }
    }
}

/// The variable blends read XMM0 as it was, also when XMM0 is the destination.
#[test]
fn blendv_into_xmm0_matches_host() {
    if !host_ok() {
        return;
    }
    host_fn!(h_pblendvb0, "0x66, 0x0f, 0x38, 0x10, 0xc2");
    host_fn!(h_blendvps0, "0x66, 0x0f, 0x38, 0x14, 0xc2");
    host_fn!(h_blendvpd0, "0x66, 0x0f, 0x38, 0x15, 0xc2");
    let cases: [(Code, HostFn); 3] = [
        (Code::Pblendvb_xmm_xmmm128, h_pblendvb0),
        (Code::Blendvps_xmm_xmmm128, h_blendvps0),
        (Code::Blendvpd_xmm_xmmm128, h_blendvpd0),
    ];
    let mut rng = Rng::new(22);
    for (code, host) in cases {
        for _ in 0..500 {
            let (a, b) = rng.pair();
            let h0 = Host {
                x0: a,
                x2: b,
                ..Host::default()
            };
            let mut h = h0;
            host(0, &mut h);
            let mut fpu = fpu_of(&h0);
            run(&mut fpu, code, [Loc::Xmm(0), Loc::Xmm(2), Loc::None], 0);
            assert_eq!(fpu.xmm128(0), h.x0, "{code:?} a={a:#x} b={b:#x}");
        }
    }
}

/// MOVNTDQA is a plain 16-byte load into the register.
#[test]
fn movntdqa_matches_host() {
    if !host_ok() {
        return;
    }
    #[repr(align(16))]
    struct Line(u128);
    let mut rng = Rng::new(23);
    for _ in 0..200 {
        let line = Line(rng.u128());
        let mut h = Host {
            x1: rng.u128(),
            rax: &line as *const Line as u64,
            ..Host::default()
        };
        // movntdqa xmm1, [rax]
        host_asm!(h, "0x66, 0x0f, 0x38, 0x2a, 0x08");
        let mut fpu = Fpu::default();
        fpu.set_io128(line.0);
        run(
            &mut fpu,
            Code::Movntdqa_xmm_m128,
            [Loc::Xmm(1), Loc::Mem, Loc::None],
            0,
        );
        assert_eq!(fpu.xmm128(1), h.x1);
    }
    let mut fpu = Fpu::default();
    let ops = Operands::new([Loc::Xmm(1), Loc::Xmm(2), Loc::None], 0, 0);
    assert_eq!(
        execute_simd(&mut fpu, Code::Movntdqa_xmm_m128, ops),
        Err(SimdFault::Ud)
    );
}
