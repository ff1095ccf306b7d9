//! Tests of the integer and data-movement instructions, mostly against the host CPU: the
//! host runs the same legacy-encoded instruction through `asm!` on the same random inputs.
//!
//! The `asm!` blocks are the module's `unsafe`. Invariants: each names every register it
//! changes (as an output or a clobber), touches no memory but the live buffers it is given
//! pointers to, and leaves what the Rust ABI expects: an empty x87 stack (EMMS or FNINIT
//! where MMX or x87 registers were used) and the host's MXCSR and control word restored.

use iced_x86::Code;

use crate::operands::{Loc, Operands};
use crate::simd::execute_simd;
use crate::state::Fpu;

mod arith;
mod claims;
mod decoded;
mod mov;
mod shuffle;
mod ssse3;

/// A small xorshift generator biased towards the byte values where integer edge cases live.
pub(super) struct Rng(u64);

impl Rng {
    pub(super) fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }

    pub(super) fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A byte that is 0, 1, 0x7f, 0x80 or 0xff half of the time: whole words and
    /// doublewords then often hit 0, -1, the extremes and the saturation boundaries.
    fn byte(&mut self) -> u8 {
        let r = self.next();
        match r % 10 {
            0 => 0,
            1 => 0xff,
            2 => 0x80,
            3 => 0x7f,
            4 => 1,
            _ => (r >> 8) as u8,
        }
    }

    pub(super) fn u128(&mut self) -> u128 {
        match self.next() % 16 {
            0 => 0,
            1 => u128::MAX,
            2 => u128::from(self.next()) | u128::from(self.next()) << 64,
            _ => u128::from_le_bytes(core::array::from_fn(|_| self.byte())),
        }
    }
}

/// A state with every XMM and MMX register and the `io` slots full of junk, so tests see
/// whatever an instruction wrongly leaves or reads.
pub(super) fn junk_state(rng: &mut Rng) -> Fpu {
    let mut f = Fpu::default();
    for i in 0..16 {
        f.set_xmm128(i, rng.u128());
    }
    for i in 0..8 {
        f.set_mm(i, rng.next());
    }
    f.x87.ftw = 0xffff;
    f.x87.fsw = 5 << 11;
    f.io = core::array::from_fn(|_| rng.next());
    f
}

/// Executes `code` on the operands `locs`, which must succeed.
pub(super) fn exec(f: &mut Fpu, code: Code, locs: [Loc; 3], imm: u8) {
    let r = execute_simd(f, code, Operands::new(locs, imm, 0));
    assert_eq!(r, Ok(()), "{code:?} {locs:?}");
}

/// Runs an XMM lane instruction with destination `a` and source `b`, both as `xmm3, xmm9`
/// and as `xmm3, m128`; asserts that the two forms agree, the source register is
/// unchanged and no other register is written; returns the destination.
pub(super) fn xmm2(code: Code, a: u128, b: u128, imm: u8) -> u128 {
    let mut rng = Rng::new(u64::from(imm) ^ a as u64 ^ b as u64);
    let mut f = junk_state(&mut rng);
    f.set_xmm128(3, a);
    f.set_xmm128(9, b);
    let mut want = f;
    exec(&mut f, code, [Loc::Xmm(3), Loc::Xmm(9), Loc::None], imm);
    let r = f.xmm128(3);
    want.set_xmm128(3, r);
    assert_eq!(f, want, "{code:?} wrote more than its destination");

    let mut g = junk_state(&mut rng);
    g.set_xmm128(3, a);
    g.set_io128(b);
    exec(&mut g, code, [Loc::Xmm(3), Loc::Mem, Loc::None], imm);
    assert_eq!(g.xmm128(3), r, "{code:?} memory form, a={a:#x} b={b:#x}");
    r
}

/// Runs an MMX lane instruction with destination `a` and source `b`, both as `mm3, mm6` and
/// as `mm3, m64` (with junk in the unused upper `io` slot); asserts the forms agree, the
/// x87 switched to MMX mode and nothing else changed; returns the destination.
pub(super) fn mm2(code: Code, a: u64, b: u64, imm: u8) -> u64 {
    let mut rng = Rng::new(u64::from(imm) ^ a ^ b.rotate_left(7));
    let mut f = junk_state(&mut rng);
    f.set_mm(3, a);
    f.set_mm(6, b);
    let mut want = f;
    exec(&mut f, code, [Loc::Mm(3), Loc::Mm(6), Loc::None], imm);
    let r = f.mm(3);
    want.set_mm(3, r);
    want.mmx_enter();
    assert_eq!(f, want, "{code:?} wrote more than its destination");

    let mut g = junk_state(&mut rng);
    g.set_mm(3, a);
    g.io[crate::IO_DATA0] = b;
    exec(&mut g, code, [Loc::Mm(3), Loc::Mem, Loc::None], imm);
    assert_eq!(g.mm(3), r, "{code:?} memory form, a={a:#x} b={b:#x}");
    r
}

/// A host function computing `xmm0 = op(xmm0, xmm1)` with one instruction given as
/// assembly text (it may also read the second operand as memory at `[{b}]`).
macro_rules! host_xmm {
    ($($ins:tt)*) => {{
        fn host(a: u128, b: u128) -> u128 {
            let (a, b) = (a.to_le_bytes(), b.to_le_bytes());
            let mut r = [0u8; 16];
            // SAFETY: the code reads the two 16-byte buffers `a` and `b`, writes the
            // 16-byte buffer `r`, touches no stack, and declares the registers it changes.
            unsafe {
                core::arch::asm!(
                    "movdqu xmm0, [{a}]",
                    "movdqu xmm1, [{b}]",
                    $($ins)*,
                    "movdqu [{r}], xmm0",
                    a = in(reg) a.as_ptr(),
                    b = in(reg) b.as_ptr(),
                    r = in(reg) r.as_mut_ptr(),
                    out("xmm0") _,
                    out("xmm1") _,
                    options(nostack),
                );
            }
            u128::from_le_bytes(r)
        }
        host as fn(u128, u128) -> u128
    }};
}

/// A host function computing `mm0 = op(mm0, mm1)` with one instruction given as assembly
/// text; it leaves the host x87 empty again with EMMS.
macro_rules! host_mm {
    ($($ins:tt)*) => {{
        fn host(a: u64, b: u64) -> u64 {
            let r: u64;
            // SAFETY: the code only moves values between general registers and mm0/mm1,
            // both declared clobbered, and ends with EMMS so the x87 stack is empty as the
            // Rust ABI expects.
            unsafe {
                core::arch::asm!(
                    "movq mm0, {a}",
                    "movq mm1, {b}",
                    $($ins)*,
                    "movq {r}, mm0",
                    "emms",
                    a = in(reg) a,
                    b = in(reg) b,
                    r = lateout(reg) r,
                    out("mm0") _,
                    out("mm1") _,
                    options(nostack, nomem),
                );
            }
            r
        }
        host as fn(u64, u64) -> u64
    }};
}

pub(super) use {host_mm, host_xmm};

/// A host computation of an XMM instruction: `(destination, source) -> destination`.
pub(super) type HostXmm = fn(u128, u128) -> u128;

/// A host computation of an MMX instruction: `(destination, source) -> destination`.
pub(super) type HostMm = fn(u64, u64) -> u64;

/// An instruction with an MMX and an XMM form (or only the latter), and host versions.
pub(super) struct Case {
    pub mm: Option<(Code, HostMm)>,
    pub xmm: Option<(Code, HostXmm)>,
}

/// A [`Case`] for a two-operand instruction: `both!(mm code, xmm code, "mnemonic")`,
/// `xmm!(xmm code, "mnemonic")`, `mmx!(mm code, "mnemonic")`.
macro_rules! both {
    ($mm:ident, $xmm:ident, $m:literal) => {
        $crate::simd::int::tests::Case {
            mm: Some((
                iced_x86::Code::$mm,
                $crate::simd::int::tests::host_mm!(concat!($m, " mm0, mm1")),
            )),
            xmm: Some((
                iced_x86::Code::$xmm,
                $crate::simd::int::tests::host_xmm!(concat!($m, " xmm0, xmm1")),
            )),
        }
    };
}

macro_rules! xmm {
    ($xmm:ident, $m:literal) => {
        $crate::simd::int::tests::Case {
            mm: None,
            xmm: Some((
                iced_x86::Code::$xmm,
                $crate::simd::int::tests::host_xmm!(concat!($m, " xmm0, xmm1")),
            )),
        }
    };
}

pub(super) use {both, xmm};

/// Checks every case on `iters` random input pairs against the host, with sources from
/// `src` (destinations are always random).
pub(super) fn check_cases(cases: &[Case], iters: usize, seed: u64, src: fn(&mut Rng) -> u128) {
    let mut rng = Rng::new(seed);
    for case in cases {
        for _ in 0..iters {
            let (a, b) = (rng.u128(), src(&mut rng));
            if let Some((code, host)) = case.xmm {
                let want = host(a, b);
                assert_eq!(xmm2(code, a, b, 0), want, "{code:?} a={a:#x} b={b:#x}");
            }
            if let Some((code, host)) = case.mm {
                let (a, b) = (a as u64, b as u64);
                let want = host(a, b);
                assert_eq!(mm2(code, a, b, 0), want, "{code:?} a={a:#x} b={b:#x}");
            }
        }
    }
}

/// True when the host can run SSSE3 instructions (every x86-64 CPU runs SSE2).
pub(super) fn host_ssse3() -> bool {
    is_x86_feature_detected!("ssse3")
}
