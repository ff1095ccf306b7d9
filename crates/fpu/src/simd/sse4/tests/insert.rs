//! PEXTRx, EXTRACTPS, PINSRx and INSERTPS against the host for every immediate, with
//! general-register and memory operands.

use super::*;
use crate::state::IO_DATA0;

// Register forms: the XMM operand is XMM1, the general register RAX/EAX.
with_imms!(host_imm_fn!(h_pextrb, "0x66, 0x0f, 0x3a, 0x14, 0xc8"));
with_imms!(host_imm_fn!(
    h_pextrb64,
    "0x66, 0x48, 0x0f, 0x3a, 0x14, 0xc8"
));
with_imms!(host_imm_fn!(h_pextrw, "0x66, 0x0f, 0x3a, 0x15, 0xc8"));
with_imms!(host_imm_fn!(
    h_pextrw64,
    "0x66, 0x48, 0x0f, 0x3a, 0x15, 0xc8"
));
with_imms!(host_imm_fn!(h_pextrd, "0x66, 0x0f, 0x3a, 0x16, 0xc8"));
with_imms!(host_imm_fn!(h_pextrq, "0x66, 0x48, 0x0f, 0x3a, 0x16, 0xc8"));
with_imms!(host_imm_fn!(h_extractps, "0x66, 0x0f, 0x3a, 0x17, 0xc8"));
with_imms!(host_imm_fn!(
    h_extractps64,
    "0x66, 0x48, 0x0f, 0x3a, 0x17, 0xc8"
));
with_imms!(host_imm_fn!(h_pinsrb, "0x66, 0x0f, 0x3a, 0x20, 0xc8"));
with_imms!(host_imm_fn!(
    h_pinsrb64,
    "0x66, 0x48, 0x0f, 0x3a, 0x20, 0xc8"
));
with_imms!(host_imm_fn!(h_pinsrd, "0x66, 0x0f, 0x3a, 0x22, 0xc8"));
with_imms!(host_imm_fn!(h_pinsrq, "0x66, 0x48, 0x0f, 0x3a, 0x22, 0xc8"));
with_imms!(host_imm_fn!(h_insertps, "0x66, 0x0f, 0x3a, 0x21, 0xca"));
// Memory forms, the operand at [RAX].
with_imms!(host_imm_fn!(h_pextrb_m, "0x66, 0x0f, 0x3a, 0x14, 0x08"));
with_imms!(host_imm_fn!(h_pextrw_m, "0x66, 0x0f, 0x3a, 0x15, 0x08"));
with_imms!(host_imm_fn!(h_pextrd_m, "0x66, 0x0f, 0x3a, 0x16, 0x08"));
with_imms!(host_imm_fn!(
    h_pextrq_m,
    "0x66, 0x48, 0x0f, 0x3a, 0x16, 0x08"
));
with_imms!(host_imm_fn!(h_extractps_m, "0x66, 0x0f, 0x3a, 0x17, 0x08"));
with_imms!(host_imm_fn!(h_insertps_m, "0x66, 0x0f, 0x3a, 0x21, 0x08"));

type HostFn = fn(u8, &mut Host);

/// Extracts: code, register-form runner, memory-form runner, element bytes.
const EXTRACTS: [(Code, HostFn, HostFn, usize); 8] = {
    use Code::*;
    [
        (Pextrb_r32m8_xmm_imm8, h_pextrb, h_pextrb_m, 1),
        (Pextrb_r64m8_xmm_imm8, h_pextrb64, h_pextrb_m, 1),
        (Pextrw_r32m16_xmm_imm8, h_pextrw, h_pextrw_m, 2),
        (Pextrw_r64m16_xmm_imm8, h_pextrw64, h_pextrw_m, 2),
        (Pextrd_rm32_xmm_imm8, h_pextrd, h_pextrd_m, 4),
        (Pextrq_rm64_xmm_imm8, h_pextrq, h_pextrq_m, 8),
        (Extractps_rm32_xmm_imm8, h_extractps, h_extractps_m, 4),
        (Extractps_r64m32_xmm_imm8, h_extractps64, h_extractps_m, 4),
    ]
};

/// Inserts from a general register or memory: code, runner, element bytes, whether the
/// register operand is 64-bit.
const INSERTS: [(Code, HostFn, usize, bool); 4] = {
    use Code::*;
    [
        (Pinsrb_xmm_r32m8_imm8, h_pinsrb, 1, false),
        (Pinsrb_xmm_r64m8_imm8, h_pinsrb64, 1, true),
        (Pinsrd_xmm_rm32_imm8, h_pinsrd, 4, false),
        (Pinsrq_xmm_rm64_imm8, h_pinsrq, 8, true),
    ]
};

#[test]
fn extracts_match_host() {
    if !host_ok() {
        return;
    }
    let mut rng = Rng::new(31);
    for (code, reg, mem, bytes) in EXTRACTS {
        for imm in 0..=255u8 {
            for _ in 0..8 {
                let x1 = rng.vector();
                // To a general register: the host's whole RAX afterwards (a 32-bit write
                // clears the upper half).
                let mut h = Host {
                    x1,
                    rax: rng.next(),
                    ..Host::default()
                };
                reg(imm, &mut h);
                let mut fpu = fpu_of(&Host {
                    x1,
                    ..Host::default()
                });
                fpu.io[IO_DATA0] = rng.next();
                run(&mut fpu, code, [Loc::Gpr, Loc::Xmm(1), Loc::None], imm);
                assert_eq!(fpu.io[IO_DATA0], h.rax, "{code:?} imm={imm:#x} {x1:#x}");
                assert_eq!(fpu.xmm128(1), x1);

                // To memory: the host stores exactly `bytes` bytes.
                let junk = rng.next();
                let mut buf = junk;
                let mut h = Host {
                    x1,
                    rax: &mut buf as *mut u64 as u64,
                    ..Host::default()
                };
                mem(imm, &mut h);
                let mut fpu = fpu_of(&Host {
                    x1,
                    ..Host::default()
                });
                run(&mut fpu, code, [Loc::Mem, Loc::Xmm(1), Loc::None], imm);
                let keep = u64::MAX.checked_shl(8 * bytes as u32).unwrap_or(0);
                assert_eq!(buf & keep, junk & keep, "{code:?} wrote too much");
                assert_eq!(fpu.io[IO_DATA0] & !keep, buf & !keep, "{code:?} {imm:#x}");
            }
        }
    }
}

#[test]
fn inserts_match_host() {
    if !host_ok() {
        return;
    }
    let mut rng = Rng::new(32);
    for (code, host, bytes, wide) in INSERTS {
        for imm in 0..=255u8 {
            for _ in 0..8 {
                let (x1, rax) = (rng.vector(), rng.next());
                let h0 = Host {
                    x1,
                    rax,
                    ..Host::default()
                };
                let mut h = h0;
                host(imm, &mut h);
                // From a general register (the translator passes the operand-size value)
                // and from memory (exactly the element's bytes).
                let reg_value = if wide { rax } else { rax & 0xffff_ffff };
                let mem_value = rax & u64::MAX >> (64 - 8 * bytes);
                for (loc, v) in [(Loc::Gpr, reg_value), (Loc::Mem, mem_value)] {
                    let mut fpu = fpu_of(&h0);
                    fpu.io[IO_DATA0] = v;
                    run(&mut fpu, code, [Loc::Xmm(1), loc, Loc::None], imm);
                    assert_eq!(fpu.xmm128(1), h.x1, "{code:?} imm={imm:#x} {loc:?} {h0:x?}");
                }
            }
        }
    }
}

#[test]
fn insertps_matches_host() {
    if !host_ok() {
        return;
    }
    let mut rng = Rng::new(33);
    for imm in 0..=255u8 {
        for _ in 0..16 {
            let (x1, x2) = rng.pair();
            let h0 = Host {
                x1,
                x2,
                ..Host::default()
            };
            let mut h = h0;
            h_insertps(imm, &mut h);
            let mut fpu = fpu_of(&h0);
            let code = Code::Insertps_xmm_xmmm32_imm8;
            run(&mut fpu, code, [Loc::Xmm(1), Loc::Xmm(2), Loc::None], imm);
            assert_eq!(fpu.xmm128(1), h.x1, "reg imm={imm:#x} {h0:x?}");

            // The memory form takes the 32-bit operand whatever imm8[7:6] says.
            let m = rng.next() as u32;
            let mut h = Host {
                x1,
                rax: &m as *const u32 as u64,
                ..Host::default()
            };
            h_insertps_m(imm, &mut h);
            let mut fpu = fpu_of(&h0);
            fpu.io[IO_DATA0] = u64::from(m);
            run(&mut fpu, code, [Loc::Xmm(1), Loc::Mem, Loc::None], imm);
            assert_eq!(fpu.xmm128(1), h.x1, "mem imm={imm:#x} {x1:#x} {m:#x}");
        }
    }
}
