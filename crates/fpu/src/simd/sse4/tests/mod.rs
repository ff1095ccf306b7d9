//! Tests of the SSE4 module: every family against the host CPU (an x86-64 with SSE4.2) on
//! many random inputs, through the public [`crate::simd::execute_simd`] entry point.
//!
//! The host side runs the real instruction from raw encoding bytes inside `asm!`, with a
//! fixed register assignment (XMM1 the first operand, XMM2 the second, XMM0 the implicit
//! one, RAX/RCX/RDX the general registers), so every immediate can be exercised: a macro
//! expands one `asm!` block per immediate value.
//!
//! The `asm!` blocks (and transmutes between `u128` and `__m128i`, both 16 plain bytes) are
//! the module's `unsafe`. Invariants: each block names every register it
//! changes (as an output or a clobber), touches no memory but the live buffers it is given
//! pointers to, and leaves what the Rust ABI expects: an empty x87 stack (EMMS or FNINIT
//! where MMX or x87 registers were used) and the host's MXCSR and control word restored.

use core::arch::asm;
use core::arch::x86_64::__m128i;

use iced_x86::Code;

use crate::operands::{Loc, Operands};
use crate::simd::{execute_simd, SimdFault};
use crate::state::{Fpu, IO_RAX, IO_RDX};

mod claims;
mod crc;
mod insert;
mod int;
mod string;

pub(super) use crate::testutil::Rng;

impl Rng {
    pub(super) fn u128(&mut self) -> u128 {
        u128::from(self.next()) | u128::from(self.next()) << 64
    }

    /// A vector whose lanes (of a random width) are often special values (zero, one,
    /// all-ones, the signed extremes) so that saturation, sign and equality cases come up.
    pub(super) fn vector(&mut self) -> u128 {
        let w = 8u32 << self.below(4);
        let mut v = 0u128;
        for i in 0..128 / w {
            let lane: u128 = match self.below(8) {
                0 => 0,
                1 => 1,
                2 => u128::MAX,
                3 => 1 << (w - 1),
                4 => (1 << (w - 1)) - 1,
                _ => self.u128(),
            };
            v |= (lane & (u128::MAX >> (128 - w))) << (i * w);
        }
        v
    }

    /// Two vectors that often share lanes, so that equal elements are common.
    pub(super) fn pair(&mut self) -> (u128, u128) {
        let a = self.vector();
        let b = match self.below(4) {
            0 => a,
            1 => {
                let keep = self.u128();
                (a & keep) | (self.vector() & !keep)
            }
            _ => self.vector(),
        };
        (a, b)
    }
}

/// The registers an instruction run on the host reads and writes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Host {
    pub(super) x0: u128,
    pub(super) x1: u128,
    pub(super) x2: u128,
    pub(super) rax: u64,
    pub(super) rcx: u64,
    pub(super) rdx: u64,
    /// RFLAGS after the instruction.
    pub(super) flags: u64,
}

/// CF, PF, AF, ZF, SF and OF.
pub(super) const ARITH_FLAGS: u64 = 0x8d5;

/// The 256 immediate values, passed to the macro `$m` after its other arguments.
macro_rules! with_imms {
    ($m:ident!($($args:tt)*)) => {
        $m!($($args)*; 0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31 32 33 34 35 36 37 38 39 40 41 42 43 44 45 46 47 48 49 50 51 52 53 54 55 56 57 58 59 60 61 62 63 64 65 66 67 68 69 70 71 72 73 74 75 76 77 78 79 80 81 82 83 84 85 86 87 88 89 90 91 92 93 94 95 96 97 98 99 100 101 102 103 104 105 106 107 108 109 110 111 112 113 114 115 116 117 118 119 120 121 122 123 124 125 126 127 128 129 130 131 132 133 134 135 136 137 138 139 140 141 142 143 144 145 146 147 148 149 150 151 152 153 154 155 156 157 158 159 160 161 162 163 164 165 166 167 168 169 170 171 172 173 174 175 176 177 178 179 180 181 182 183 184 185 186 187 188 189 190 191 192 193 194 195 196 197 198 199 200 201 202 203 204 205 206 207 208 209 210 211 212 213 214 215 216 217 218 219 220 221 222 223 224 225 226 227 228 229 230 231 232 233 234 235 236 237 238 239 240 241 242 243 244 245 246 247 248 249 250 251 252 253 254 255);
    };
}
pub(super) use with_imms;

/// Runs the instruction encoded as `$bytes` (a string of comma-separated byte literals)
/// followed by the immediate `$imm` (if given) on the host, reading and writing `$h`.
macro_rules! host_asm {
    ($h:ident, $bytes:expr $(, $imm:literal)?) => {{
        // SAFETY: u128 and __m128i are both 16 bytes of plain data.
        let m = |v: u128| unsafe { core::mem::transmute::<u128, __m128i>(v) };
        // SAFETY: as above.
        let u = |v: __m128i| unsafe { core::mem::transmute::<__m128i, u128>(v) };
        let (mut x0, mut x1, x2) = (m($h.x0), m($h.x1), m($h.x2));
        let flags: u64;
        // SAFETY: the caller checked that the host has SSE4.2; the encoded instruction only
        // touches the registers named here (and memory at RAX when a test passes a pointer
        // to a live buffer there). pushfq/pop use the stack, so `nostack` is not given.
        unsafe {
            asm!(
                concat!(".byte ", $bytes $(, ", ", $imm)?),
                "pushfq",
                "pop {f}",
                f = out(reg) flags,
                inout("xmm0") x0,
                inout("xmm1") x1,
                in("xmm2") x2,
                inout("rax") $h.rax,
                inout("rcx") $h.rcx,
                in("rdx") $h.rdx,
            );
        }
        $h.x0 = u(x0);
        $h.x1 = u(x1);
        $h.flags = flags;
    }};
}
pub(super) use host_asm;

/// Defines `fn $name(imm: u8, h: &mut Host)`, running the instruction `$bytes` + imm8.
macro_rules! host_imm_fn {
    ($name:ident, $bytes:literal; $($n:literal)*) => {
        fn $name(imm: u8, h: &mut $crate::simd::sse4::tests::Host) {
            use core::arch::asm;
            use core::arch::x86_64::__m128i;
            match imm {
                $($n => $crate::simd::sse4::tests::host_asm!(h, $bytes, $n),)*
            }
        }
    };
}
pub(super) use host_imm_fn;

/// True when the host can run the reference instructions.
pub(super) fn host_ok() -> bool {
    is_x86_feature_detected!("sse4.2")
}

/// The emulator's state for a host register set: XMM0..XMM2, RAX/RDX in `io`, the other
/// XMM registers zero.
pub(super) fn fpu_of(h: &Host) -> Fpu {
    let mut fpu = Fpu::default();
    fpu.set_xmm128(0, h.x0);
    fpu.set_xmm128(1, h.x1);
    fpu.set_xmm128(2, h.x2);
    fpu.io[IO_RAX] = h.rax;
    fpu.io[IO_RDX] = h.rdx;
    fpu
}

/// Runs `code` with operands `locs` and immediate `imm`, expecting success.
pub(super) fn run(fpu: &mut Fpu, code: Code, locs: [Loc; 3], imm: u8) {
    let r: Result<(), SimdFault> = execute_simd(fpu, code, Operands::new(locs, imm, 0));
    assert_eq!(r, Ok(()), "{code:?}");
}

#[test]
fn host_runner_sanity() {
    if !host_ok() {
        return;
    }
    // pcmpeqq xmm1, xmm2
    let mut h = Host {
        x1: 5 | 7 << 64,
        x2: 5 | 8 << 64,
        ..Host::default()
    };
    host_asm!(h, "0x66, 0x0f, 0x38, 0x29, 0xca");
    assert_eq!(h.x1, u128::from(u64::MAX));
}
