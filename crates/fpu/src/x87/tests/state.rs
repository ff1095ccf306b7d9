//! The state images, tag conversions, fault and store/commit semantics, FIP/FOP/FDP, and
//! what `claims` accepts.

use iced_x86::{Code, CpuidFeature, Decoder};

use super::host::{case, on_host, start_state, Host, Rng};
use crate::operands::{Loc, Operands};
use crate::state::{Fpu, F80, X87};
use crate::x87::{
    abridged_tag, after_fstenv, claims, commit, execute, finit, frstor, fsave, full_tag, load_env,
    store_env, Outcome, Site, X87Fault,
};
use crate::{IO_DATA0, IO_DATA1};

/// A random host starting state.
fn random_host(rng: &mut Rng) -> Host {
    let mut h = Host {
        fcw: rng.fcw(),
        count: rng.below(9),
        ..Host::default()
    };
    for v in h.vals.iter_mut() {
        *v = rng.f80().to_bytes();
    }
    h.fsw_or = rng.next() as u16 & (0x4700 | (h.fcw & 0x3f));
    if rng.below(2) == 0 {
        h.ftw_or = 3 << (2 * rng.below(8));
    }
    h
}

#[test]
fn fnstenv_image_matches_host() {
    // FNSTENV writes 28 bytes at [rsi]: 16 in `mem`, the rest in `spill`. Compare the
    // control, status and tag dwords with their reserved halves.
    let c = case!("fnstenv [rsi]");
    let mut rng = Rng(0x1357_9bdf);
    for _ in 0..2000 {
        let h = random_host(&mut rng);
        let host = on_host(&c, &h);
        let x = start_state(&h);
        let img = store_env(&x, true, true);
        assert_eq!(host.mem[..12], img[..12], "fcw {:04x}", h.fcw);
        // The reserved half of FDS's dword. (FOP, FIP and FDP belong to the harness's
        // own instructions; the host keeps FCS/FDS, which we report as deprecated, 0.)
        assert_eq!(host.spill[10..12], img[26..28]);
        // FNSTENV then masks every exception.
        let mut after = x;
        after_fstenv(&mut after);
        assert_eq!(u16::from_le_bytes([host.save[0], host.save[1]]), after.fcw);
    }
}

#[test]
fn fnsave_image_matches_host_and_reinitialises() {
    let c = case!("fnsave [rsi]");
    let mut rng = Rng(0x2468_ace0);
    for _ in 0..2000 {
        let h = random_host(&mut rng);
        let host = on_host(&c, &h);
        let x = start_state(&h);
        let img = fsave(&x, true, true);
        assert_eq!(img.len(), 108);
        assert_eq!(host.mem[..12], img[..12]);
        // The state after FNSAVE is FNINIT's (the host's own FNSAVE then saw it).
        let mut after = x;
        finit(&mut after);
        let again = fsave(&after, true, true);
        assert_eq!(host.save[..12], again[..12]);
    }
}

#[test]
fn env_and_save_round_trip_in_every_format() {
    let mut rng = Rng(0x1122_3344);
    for _ in 0..500 {
        let h = random_host(&mut rng);
        let mut x = start_state(&h);
        x.fop = rng.next() as u16 & 0x7ff;
        x.fip = rng.next() & 0xffff;
        x.fdp = rng.next() & 0xffff;
        for (op32, protected) in [(true, true), (true, false), (false, true), (false, false)] {
            let img = fsave(&x, op32, protected);
            assert_eq!(img.len(), if op32 { 108 } else { 94 });
            let mut y = X87 {
                regs: [F80::ZERO; 8],
                ..X87::default()
            };
            frstor(&mut y, &img, op32, protected);
            assert_eq!(y.regs, x.regs);
            assert_eq!((y.fcw, y.fsw, y.ftw), (x.fcw, x.fsw, x.ftw));
            assert_eq!((y.fip, y.fdp), (x.fip, x.fdp));
            if op32 || !protected {
                assert_eq!(y.fop, x.fop);
            }
            let env = store_env(&x, op32, protected);
            assert_eq!(env.len(), if op32 { 28 } else { 14 });
            let mut z = x;
            z.fcw = 0;
            load_env(&mut z, &env, op32, protected);
            assert_eq!((z.fcw, z.fsw, z.ftw), (x.fcw, x.fsw, x.ftw));
        }
    }
}

#[test]
fn real_mode_env_layout() {
    let x = X87 {
        fip: 0x12345,
        fdp: 0xabcde,
        fop: 0x5d8,
        ..X87::default()
    };
    let e = store_env(&x, false, false);
    let w = |i: usize| u16::from_le_bytes([e[2 * i], e[2 * i + 1]]);
    assert_eq!((w(0), w(1), w(2)), (0x037f, 0, 0xffff));
    assert_eq!((w(3), w(4), w(5), w(6)), (0x2345, 0x15d8, 0xbcde, 0xa000));
    let e = store_env(&x, true, false);
    let d = |i: usize| u32::from_le_bytes(e[4 * i..4 * i + 4].try_into().unwrap());
    assert_eq!(
        (d(3), d(4), d(5), d(6)),
        (0xffff_2345, 0x15d8, 0xffff_bcde, 0xa000)
    );
}

#[test]
fn abridged_tags() {
    let mut x = X87::default();
    x.push(F80 {
        signif: 1 << 63,
        sign_exp: 0x3fff,
    });
    x.push(F80::ZERO);
    x.push(F80::INDEFINITE);
    // TOP = 5: R5 special, R6 zero, R7 valid.
    assert_eq!(x.ftw, 0x03ff | 0x2 << 10 | 0x1 << 12);
    let a = abridged_tag(x.ftw);
    assert_eq!(a, 0xe0);
    assert_eq!(full_tag(&x, a), x.ftw);
    assert_eq!(abridged_tag(0xffff), 0);
    assert_eq!(full_tag(&x, 0), 0xffff);
}

fn decode(bytes: &[u8]) -> (Code, Operands) {
    let i = Decoder::new(64, bytes, 0).decode();
    (i.code(), Operands::of(&i))
}

#[test]
fn pending_exception_faults_waiting_instructions_only() {
    let mut fpu = Fpu {
        x87: X87 {
            fcw: 0x037e, // IE unmasked
            ..X87::default()
        },
        ..Fpu::default()
    };
    // fld1; fld1; fsub st(0), st(0) is fine; fsqrt of -1 raises an unmasked IE.
    let run = |fpu: &mut Fpu, b: &[u8]| {
        let (c, o) = decode(b);
        execute(
            fpu,
            c,
            o,
            Site {
                ip: 0x1000,
                data: 0,
            },
        )
    };
    run(&mut fpu, &[0xd9, 0xe8]).unwrap(); // fld1
    run(&mut fpu, &[0xd9, 0xe0]).unwrap(); // fchs
    let before = fpu.x87;
    assert_eq!(run(&mut fpu, &[0xd9, 0xfa]), Ok(Outcome::Done)); // fsqrt
    assert_eq!(fpu.x87.regs, before.regs, "unmasked IE: no result");
    assert_eq!(fpu.x87.fsw & 0x80ff, 0x8081, "IE, ES and B");
    let pending = fpu.x87;
    // Waiting instructions fault without touching anything.
    for b in [
        &[0x9b][..],
        &[0xd9, 0xe8],
        &[0xd8, 0xc1],
        &[0x9b, 0xdf, 0xe0],
    ] {
        assert_eq!(run(&mut fpu, b), Err(X87Fault::Mf), "{b:x?}");
        assert_eq!(fpu.x87, pending);
    }
    // Non-waiting ones run: FNSTSW AX, FNSTCW, FNCLEX (which clears the exception).
    assert_eq!(run(&mut fpu, &[0xdf, 0xe0]), Ok(Outcome::Done));
    assert_eq!(fpu.io[IO_DATA0] as u16, pending.fsw);
    assert_eq!(run(&mut fpu, &[0xd9, 0x38]), Ok(Outcome::Store));
    assert_eq!(fpu.io[IO_DATA0] as u16, 0x037e);
    assert_eq!(run(&mut fpu, &[0xdb, 0xe2]), Ok(Outcome::Done));
    assert_eq!(fpu.x87.fsw & 0x80ff, 0);
    assert_eq!(run(&mut fpu, &[0x9b]), Ok(Outcome::Done));
    // FLDCW that unmasks a raised flag sets ES.
    fpu.x87.fsw |= 0x20;
    fpu.io[IO_DATA0] = 0x035f;
    assert_eq!(run(&mut fpu, &[0xd9, 0x28]), Ok(Outcome::Done));
    assert_eq!(fpu.x87.fsw & 0x80a0, 0x80a0);
}

#[test]
fn stores_wait_for_commit_and_record_pointers() {
    let mut fpu = Fpu {
        x87: X87::default(),
        ..Fpu::default()
    };
    let (c, o) = decode(&[0xd9, 0xeb]); // fldpi
    execute(&mut fpu, c, o, Site { ip: 0x40, data: 0 }).unwrap();
    assert_eq!((fpu.x87.fip, fpu.x87.fop), (0x40, 0x1eb));
    let before = fpu.x87;
    let (c, o) = decode(&[0xdd, 0x1e]); // fstp qword [rsi]
    let r = execute(
        &mut fpu,
        c,
        o,
        Site {
            ip: 0x42,
            data: 0x9000,
        },
    );
    assert_eq!(r, Ok(Outcome::Store));
    assert_eq!(fpu.io[IO_DATA0], core::f64::consts::PI.to_bits());
    assert_eq!(fpu.x87, before, "nothing changes before the commit");
    commit(&mut fpu);
    // FOP of a memory form keeps the ModRM reg field (see `Operands`).
    assert_eq!(
        (fpu.x87.fip, fpu.x87.fdp, fpu.x87.fop),
        (0x42, 0x9000, 0x518)
    );
    assert_eq!((fpu.x87.fcs, fpu.x87.fds), (0, 0));
    assert_eq!(fpu.x87.ftw, 0xffff);
    // Control instructions leave the pointers alone.
    let (c, o) = decode(&[0xdb, 0xe2]); // fnclex
    execute(&mut fpu, c, o, Site { ip: 0x99, data: 0 }).unwrap();
    assert_eq!(fpu.x87.fip, 0x42);
    // An 80-bit load from io: fld tbyte [rsi].
    fpu.io[IO_DATA0] = 0x8000_0000_0000_0000;
    fpu.io[IO_DATA1] = 0x4000;
    let (c, o) = decode(&[0xdb, 0x2e]);
    assert_eq!(o.loc(0), Loc::Mem);
    execute(&mut fpu, c, o, Site::default()).unwrap();
    assert_eq!(
        fpu.x87.regs[fpu.x87.phys(0)],
        F80 {
            signif: 1 << 63,
            sign_exp: 0x4000
        }
    );
}

#[test]
fn unmasked_store_exceptions_suppress_the_store() {
    let mut fpu = Fpu {
        x87: X87 {
            fcw: 0x0377, // OE unmasked
            ..X87::default()
        },
        ..Fpu::default()
    };
    fpu.x87.push(F80 {
        signif: 1 << 63,
        sign_exp: 0x7000,
    });
    let (c, o) = decode(&[0xd9, 0x1e]); // fstp dword [rsi]
    assert_eq!(execute(&mut fpu, c, o, Site::default()), Ok(Outcome::Done));
    assert!(!fpu.x87.is_empty(0), "no pop");
    assert_eq!(fpu.x87.fsw & 0x80ff, 0x8088);
}

#[test]
fn claims_exactly_the_x87_set() {
    let env = [
        Code::Fldenv_m14byte,
        Code::Fldenv_m28byte,
        Code::Fnstenv_m14byte,
        Code::Fnstenv_m28byte,
        Code::Fstenv_m14byte,
        Code::Fstenv_m28byte,
        Code::Fnsave_m94byte,
        Code::Fnsave_m108byte,
        Code::Fsave_m94byte,
        Code::Fsave_m108byte,
        Code::Frstor_m94byte,
        Code::Frstor_m108byte,
    ];
    for code in env {
        assert!(!claims(code), "{code:?}");
    }
    assert!(claims(Code::Wait));
    let mut n = 0;
    let x87 = |code: Code| {
        code.cpuid_features().iter().any(|f| {
            matches!(
                f,
                CpuidFeature::FPU | CpuidFeature::FPU287 | CpuidFeature::FPU387
            )
        })
    };
    let mut missing = vec![];
    for code in Code::values() {
        if claims(code) {
            n += 1;
            assert!(code == Code::Wait || x87(code), "{code:?}");
        } else if x87(code) && !env.contains(&code) {
            missing.push(code);
        }
    }
    assert_eq!(missing, [], "x87 codes not claimed");
    assert!(n > 120, "{n}");
    let _ = F80::ZERO;
}

#[test]
fn fldenv_recomputes_the_exception_summary() {
    // Checked on the host: ES and B follow the loaded flags and masks, not the loaded
    // ES and B bits.
    let c = case!("fldenv [rsi]");
    for (fcw, fsw) in [
        (0x037eu16, 0x0001u16),
        (0x037f, 0x0081),
        (0x037e, 0x8001),
        (0x037f, 0x8000),
        (0x0360, 0x003f),
    ] {
        let mut h = Host::default();
        let mut env = [0u8; 28];
        env[..2].copy_from_slice(&fcw.to_le_bytes());
        env[4..6].copy_from_slice(&fsw.to_le_bytes());
        env[8..10].copy_from_slice(&0xffffu16.to_le_bytes());
        h.mem.copy_from_slice(&env[..16]);
        h.save[..12].copy_from_slice(&env[16..]);
        let host = on_host(&c, &h);
        let mut x = X87::default();
        load_env(&mut x, &env, true, true);
        assert_eq!(u16::from_le_bytes([host.save[4], host.save[5]]), x.fsw);
    }
}
