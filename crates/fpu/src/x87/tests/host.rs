//! The host-comparison harness: one instruction runs on the host x87 (`asm!`) and in the
//! emulator from the same state, and the FNSAVE images, memory operand, EFLAGS and AX are
//! compared.
//!
//! The `asm!` blocks are the module's `unsafe`. Invariants: each names every register it
//! changes (as an output or a clobber), touches no memory but the live buffers it is given
//! pointers to, and leaves what the Rust ABI expects: an empty x87 stack (EMMS or FNINIT
//! where MMX or x87 registers were used) and the host's MXCSR and control word restored.
//! Besides them, `decode` reads the 16 bytes at an instruction's address in this
//! executable's own text, which is mapped readable.

use core::arch::asm;
use core::mem::offset_of;

use iced_x86::{Decoder, MemorySize};

use crate::operands::Operands;
use crate::state::{Fpu, F80, X87};
use crate::x87::{commit, execute, fsave, Outcome, Site};
use crate::{IO_DATA0, IO_DATA1, IO_FLAGS};

/// The host run's inputs and outputs, addressed from the `asm!` block by offset.
#[repr(C)]
#[derive(Clone, Copy)]
pub(super) struct Host {
    pub fcw: u16,
    pub count: u64,
    pub vals: [[u8; 10]; 8],
    pub flags_in: u64,
    pub flags_out: u64,
    pub rax: u64,
    pub mem: [u8; 16],
    /// Room after `mem` for the 28-byte FNSTENV image.
    pub spill: [u8; 16],
    pub save: [u8; 108],
    /// Bits ORed into the status word before the instruction (condition codes, masked
    /// exception flags).
    pub fsw_or: u16,
    /// Bits ORed into the tag word before the instruction (11 pairs empty registers).
    pub ftw_or: u16,
    pub env: [u8; 28],
}

impl Default for Host {
    fn default() -> Self {
        Host {
            fcw: 0x37f,
            count: 0,
            vals: [[0; 10]; 8],
            flags_in: 2,
            flags_out: 0,
            rax: 0,
            mem: [0; 16],
            spill: [0; 16],
            save: [0; 108],
            fsw_or: 0,
            ftw_or: 0,
            env: [0; 28],
        }
    }
}

/// One instruction: how to run it on the host, and where its encoding is.
pub(super) struct Case {
    pub text: &'static str,
    pub run: fn(&mut Host),
    pub addr: *const u8,
}

/// Builds a [`Case`] for one instruction written in Intel syntax (memory operands at
/// `[rsi]`).
macro_rules! case {
    ($text:literal) => {{
        fn run(h: &mut crate::x87::tests::host::Host) {
            use crate::x87::tests::host::Host;
            // SAFETY: the block touches only the x87 state (left initialised by FNSAVE
            // and FNINIT), EFLAGS, the declared scratch registers and `*h`, whose fields
            // it addresses by their offsets.
            unsafe {
                core::arch::asm!(
                    "fninit",
                    "fldz", "fldz", "fldz", "fldz", "fldz", "fldz", "fldz", "fldz",
                    "fninit",
                    "fldcw word ptr [{h} + {o_fcw}]",
                    "mov rcx, qword ptr [{h} + {o_count}]",
                    "2:",
                    "test rcx, rcx",
                    "jz 3f",
                    "dec rcx",
                    "lea rax, [rcx + rcx*4]",
                    "fld tbyte ptr [{h} + rax*2 + {o_vals}]",
                    "jmp 2b",
                    "3:",
                    "fnstenv [{h} + {o_env}]",
                    "mov ax, word ptr [{h} + {o_fsw_or}]",
                    "or word ptr [{h} + {o_env} + 4], ax",
                    "mov ax, word ptr [{h} + {o_ftw_or}]",
                    "or word ptr [{h} + {o_env} + 8], ax",
                    "fldenv [{h} + {o_env}]",
                    "lea rsi, [{h} + {o_mem}]",
                    "xor eax, eax",
                    "push qword ptr [{h} + {o_fin}]",
                    "popfq",
                    $text,
                    "pushfq",
                    "pop qword ptr [{h} + {o_fout}]",
                    "mov qword ptr [{h} + {o_rax}], rax",
                    "fnsave [{h} + {o_save}]",
                    "fninit",
                    h = in(reg) h as *mut Host,
                    o_fcw = const core::mem::offset_of!(Host, fcw),
                    o_count = const core::mem::offset_of!(Host, count),
                    o_vals = const core::mem::offset_of!(Host, vals),
                    o_fin = const core::mem::offset_of!(Host, flags_in),
                    o_fout = const core::mem::offset_of!(Host, flags_out),
                    o_rax = const core::mem::offset_of!(Host, rax),
                    o_mem = const core::mem::offset_of!(Host, mem),
                    o_save = const core::mem::offset_of!(Host, save),
                    o_env = const core::mem::offset_of!(Host, env),
                    o_fsw_or = const core::mem::offset_of!(Host, fsw_or),
                    o_ftw_or = const core::mem::offset_of!(Host, ftw_or),
                    out("rax") _,
                    out("rcx") _,
                    out("rsi") _,
                );
            }
        }
        let addr: *const u8;
        // SAFETY: only computes the address of the (never executed) instruction copy.
        unsafe {
            core::arch::asm!("lea {p}, [rip + 2f]", "jmp 3f", "2:", $text, "3:", p = out(reg) addr);
        }
        crate::x87::tests::host::Case {
            text: $text,
            run,
            addr,
        }
    }};
}
pub(super) use case;

/// What one run produced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Result {
    pub save: [u8; 108],
    pub mem: [u8; 16],
    pub spill: [u8; 16],
    pub flags: u64,
    pub ax: u16,
}

/// Runs `case` on the host.
pub(super) fn on_host(case: &Case, h: &Host) -> Result {
    let mut h = *h;
    (case.run)(&mut h);
    Result {
        save: h.save,
        mem: h.mem,
        spill: h.spill,
        flags: h.flags_out,
        ax: h.rax as u16,
    }
}

/// The decoded instruction of `case`.
pub(super) fn decode(case: &Case) -> iced_x86::Instruction {
    // SAFETY: `addr` points at an instruction in this executable's text, which is mapped
    // readable; 16 bytes cover it and the following code.
    let bytes = unsafe { core::slice::from_raw_parts(case.addr, 16) };
    let mut d = Decoder::new(64, bytes, 0);
    let first = d.decode();
    // iced decodes the waiting forms (FSTSW = WAIT; FNSTSW) as two instructions: the
    // instruction under test is the second.
    if first.code() == iced_x86::Code::Wait && !case.text.starts_with("wait") {
        d.decode()
    } else {
        first
    }
}

/// The emulator's x87 state equivalent to the host's before the instruction.
pub(super) fn start_state(h: &Host) -> X87 {
    let mut x = X87 {
        fcw: h.fcw,
        ..X87::default()
    };
    for i in (0..h.count as usize).rev() {
        x.push(F80::from_bytes(&h.vals[i]));
    }
    x.fsw |= h.fsw_or;
    x.ftw |= h.ftw_or;
    x
}

/// Runs `case` in the emulator from the same state.
pub(super) fn on_emu(case: &Case, h: &Host) -> Result {
    let insn = decode(case);
    let mut fpu = Fpu {
        x87: start_state(h),
        ..Fpu::default()
    };
    fpu.io[IO_DATA0] = u64::from_le_bytes(h.mem[..8].try_into().unwrap());
    fpu.io[IO_DATA1] = u64::from_le_bytes(h.mem[8..].try_into().unwrap());
    fpu.io[IO_FLAGS] = h.flags_in;
    let mut mem = h.mem;
    let out = execute(&mut fpu, insn.code(), Operands::of(&insn), Site::default())
        .unwrap_or_else(|e| panic!("{}: {e:?}", case.text));
    let mut ax = 0;
    if out == Outcome::Store {
        let n = insn.memory_size().size();
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&fpu.io[IO_DATA0].to_le_bytes());
        bytes[8..].copy_from_slice(&fpu.io[IO_DATA1].to_le_bytes());
        mem[..n].copy_from_slice(&bytes[..n]);
        commit(&mut fpu);
    } else if insn.op_count() > 0
        && insn.op0_kind() == iced_x86::OpKind::Register
        && insn.op0_register() == iced_x86::Register::AX
    {
        ax = fpu.io[IO_DATA0] as u16;
    }
    let mut save = [0u8; 108];
    save.copy_from_slice(&fsave(&fpu.x87, true, true));
    Result {
        save,
        mem,
        spill: h.spill,
        flags: fpu.io[IO_FLAGS],
        ax,
    }
}

/// The parts of two results that must agree: control word, status word under `fsw_mask`,
/// tags, the non-empty registers, memory, and (for FCOMI and FNSTSW AX) flags and AX.
pub(super) fn same(case: &Case, host: &Result, emu: &Result, fsw_mask: u16) -> bool {
    let w = |r: &Result, o: usize| u16::from_le_bytes([r.save[o], r.save[o + 1]]);
    if w(host, 0) != w(emu, 0) || w(host, 4) & fsw_mask != w(emu, 4) & fsw_mask {
        return false;
    }
    let tags = w(host, 8);
    if tags != w(emu, 8) {
        return false;
    }
    let top = usize::from(w(host, 4) >> 11) & 7;
    for i in 0..8 {
        if (tags >> (2 * ((top + i) & 7))) & 3 != 3
            && host.save[28 + 10 * i..38 + 10 * i] != emu.save[28 + 10 * i..38 + 10 * i]
        {
            return false;
        }
    }
    let insn = decode(case);
    if host.mem != emu.mem {
        return false;
    }
    let _ = insn;
    let text = case.text;
    if text.starts_with("fcomi") || text.starts_with("fucomi") {
        const ARITH: u64 = 0x8d5;
        if host.flags & ARITH != emu.flags & ARITH {
            return false;
        }
    }
    if text.contains(" ax") && host.ax != emu.ax {
        return false;
    }
    true
}

/// A small xorshift generator.
pub(super) struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// An 80-bit value biased toward the interesting cases.
    pub fn f80(&mut self) -> F80 {
        let s = (self.next() & 1) << 15;
        let sig = self.next();
        let se = |e: u64| (s | e) as u16;
        match self.below(25) {
            // Pseudo-infinity and pseudo-NaNs (integer bit clear).
            24 => F80 {
                signif: (sig >> 1) & if self.below(2) == 0 { 0 } else { u64::MAX },
                sign_exp: se(0x7fff),
            },
            0 => F80 {
                signif: 0,
                sign_exp: se(0),
            },
            1 => F80 {
                signif: 1 << 63,
                sign_exp: se(0x7fff),
            },
            2 => F80 {
                signif: sig | 3 << 62,
                sign_exp: se(0x7fff),
            },
            3 => F80 {
                signif: (sig | 1 << 63) & !(1 << 62) | 1,
                sign_exp: se(0x7fff),
            },
            4 => F80 {
                signif: sig >> self.below(64),
                sign_exp: se(0),
            },
            5 => F80 {
                signif: sig | 1 << 63,
                sign_exp: se(0),
            },
            6 => F80 {
                signif: sig >> 1 >> self.below(8),
                sign_exp: se(1 + self.below(0x7ffe)),
            },
            7 => F80 {
                signif: sig | 1 << 63,
                sign_exp: se(self.below(80) + 1),
            },
            8 => F80 {
                signif: sig | 1 << 63,
                sign_exp: se(0x7ffe - self.below(80)),
            },
            9 => {
                let n = self.next() as i64 >> self.below(64);
                super::super::value::from_int(n)
            }
            10 => F80 {
                signif: 1 << 63 | (self.below(16) << self.below(60)),
                sign_exp: se(0x3fff + self.below(4)),
            },
            11 => F80 {
                signif: u64::MAX - self.below(4),
                sign_exp: se(0x3ffe + self.below(4)),
            },
            12 => F80 {
                signif: sig & !0xff_ffff_ffff | 1 << 63 | (self.next() & 0x80_0000_0801),
                sign_exp: se(0x3fff + self.below(70)),
            },
            _ => F80 {
                signif: sig | 1 << 63,
                sign_exp: se(0x3fff - 40 + self.below(80)),
            },
        }
    }

    /// A memory operand of `size` for `insn`.
    pub fn mem(&mut self, size: MemorySize) -> [u8; 16] {
        let mut m = [0u8; 16];
        let v = self.f80();
        match size {
            MemorySize::Float32 => {
                let (b, _) = crate::soft::with_env(crate::soft::Env::DEFAULT, || {
                    crate::soft::extF80_to_f32(super::super::value::sf(v)).v
                });
                let b = match self.below(6) {
                    0 => self.next() as u32,
                    1 => self.next() as u32 & 0x807f_ffff,
                    _ => b,
                };
                m[..4].copy_from_slice(&b.to_le_bytes());
            }
            MemorySize::Float64 => {
                let (b, _) = crate::soft::with_env(crate::soft::Env::DEFAULT, || {
                    crate::soft::extF80_to_f64(super::super::value::sf(v)).v
                });
                let b = match self.below(6) {
                    0 => self.next(),
                    1 => self.next() & 0x800f_ffff_ffff_ffff,
                    _ => b,
                };
                m[..8].copy_from_slice(&b.to_le_bytes());
            }
            MemorySize::Bcd => {
                let mut lo = 0u64;
                for i in 0..16 {
                    lo |= self.below(10) << (4 * i);
                }
                if self.below(4) == 0 {
                    lo >>= 4 * self.below(16);
                }
                let hi = (self.below(100) / 10 * 16 + self.below(10)) as u16
                    | ((self.next() & 1) << 15) as u16;
                m[..8].copy_from_slice(&lo.to_le_bytes());
                m[8..10].copy_from_slice(&hi.to_le_bytes());
            }
            MemorySize::Float80 => m[..10].copy_from_slice(&v.to_bytes()),
            _ => {
                let n = self.next() >> self.below(64);
                let n = if self.below(8) == 0 {
                    0x8000_0000_0000_0000 >> (64 - 8 * size.size().max(1))
                } else {
                    n
                };
                m[..8].copy_from_slice(&n.to_le_bytes());
            }
        }
        m
    }

    /// A random control word: any rounding, any precision, usually all exceptions masked.
    pub fn fcw(&mut self) -> u16 {
        let masks = match self.below(4) {
            0 => self.next() as u16 & 0x3f,
            _ => 0x3f,
        };
        let pc = [0, 1, 2, 3, 3][self.below(5) as usize];
        0x40 | masks | pc << 8 | (self.below(4) as u16) << 10
    }
}

/// Runs `case` `n` times from random states and panics on the first mismatch.
pub(super) fn check(case: &Case, n: usize, seed: u64, fsw_mask: u16, min_count: u64) {
    check_with(case, n, seed, fsw_mask, min_count, |_, _| {}, false);
}

/// The distance in units in the last place between two finite 80-bit values of the same
/// sign (u64::MAX when not comparable).
fn ulps(a: F80, b: F80) -> u64 {
    if a.sign_exp & 0x8000 != b.sign_exp & 0x8000 {
        return if a.signif | b.signif == 0 {
            0
        } else {
            u64::MAX
        };
    }
    let idx = |v: F80| -> i128 {
        let e = i128::from(v.sign_exp & 0x7fff);
        e * (1 << 63) + i128::from(v.signif & !(1 << 63))
    };
    (idx(a) - idx(b)).unsigned_abs().min(u128::from(u64::MAX)) as u64
}

/// Like [`same`], but registers may differ by one ulp (and then C1 and the memory are not
/// compared).
fn close(case: &Case, host: &Result, emu: &Result, fsw_mask: u16) -> bool {
    if same(case, host, emu, fsw_mask) {
        return true;
    }
    let w = |r: &Result, o: usize| u16::from_le_bytes([r.save[o], r.save[o + 1]]);
    let mask = fsw_mask & !(1 << 9);
    if w(host, 4) & mask != w(emu, 4) & mask || w(host, 8) != w(emu, 8) {
        return false;
    }
    let tags = w(host, 8);
    let top = usize::from(w(host, 4) >> 11) & 7;
    (0..8).all(|i| {
        let a = F80::from_bytes(host.save[28 + 10 * i..38 + 10 * i].try_into().unwrap());
        let b = F80::from_bytes(emu.save[28 + 10 * i..38 + 10 * i].try_into().unwrap());
        (tags >> (2 * ((top + i) & 7))) & 3 == 3 || a == b || ulps(a, b) <= 1
    })
}

/// [`check`] with a hook that adjusts each random state (operand ranges) and optionally a
/// one-ulp tolerance on register results.
pub(super) fn check_with(
    case: &Case,
    n: usize,
    seed: u64,
    fsw_mask: u16,
    min_count: u64,
    fix: impl Fn(&mut Rng, &mut Host),
    tolerant: bool,
) {
    let insn = decode(case);
    // X87_TEST_SCALE=k runs k times as many iterations; X87_TEST_SEED varies the seed.
    let env = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<u64>().ok());
    let n = n * env("X87_TEST_SCALE").unwrap_or(1) as usize;
    let mut rng = Rng((seed
        ^ env("X87_TEST_SEED")
            .unwrap_or(0)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15))
        | 1);
    for iter in 0..n {
        let mut h = Host {
            fcw: rng.fcw(),
            count: (min_count + rng.below(4)).min(8),
            flags_in: 2 | (rng.next() & 0x45),
            ..Host::default()
        };
        if rng.below(8) == 0 {
            h.count = rng.below(9);
        }
        if rng.below(2) == 0 {
            // Condition codes, and only masked flags: an unmasked one would make the
            // waiting instruction under test fault.
            h.fsw_or = rng.next() as u16 & (0x4700 | (h.fcw & 0x3f));
        }
        if rng.below(8) == 0 {
            let r = rng.below(8);
            h.ftw_or = 3 << (2 * r);
        }
        for v in h.vals.iter_mut() {
            *v = rng.f80().to_bytes();
        }
        h.mem = rng.mem(insn.memory_size());
        fix(&mut rng, &mut h);
        let a = on_host(case, &h);
        let b = on_emu(case, &h);
        let ok = if tolerant {
            close(case, &a, &b, fsw_mask)
        } else {
            same(case, &a, &b, fsw_mask)
        };
        if !ok {
            let w = |r: &Result, o: usize| u16::from_le_bytes([r.save[o], r.save[o + 1]]);
            let st = |r: &Result, i: usize| {
                F80::from_bytes(r.save[28 + 10 * i..38 + 10 * i].try_into().unwrap())
            };
            panic!(
                "{} iter {iter}: fcw {:04x} count {} vals {:x?} mem {:02x?} flags {:x}\n host fsw {:04x} ftw {:04x} st0 {:x?} st1 {:x?} mem {:02x?} fl {:x} ax {:x}\n emu  fsw {:04x} ftw {:04x} st0 {:x?} st1 {:x?} mem {:02x?} fl {:x} ax {:x}",
                case.text, h.fcw, h.count,
                h.vals[..h.count as usize].iter().map(F80::from_bytes).collect::<Vec<_>>(),
                h.mem, h.flags_in,
                w(&a, 4), w(&a, 8), st(&a, 0), st(&a, 1), a.mem, a.flags, a.ax,
                w(&b, 4), w(&b, 8), st(&b, 0), st(&b, 1), b.mem, b.flags, b.ax,
            );
        }
    }
}

#[allow(dead_code)]
fn _offsets() -> usize {
    offset_of!(Host, save)
}

#[allow(dead_code)]
fn _asm() {
    // SAFETY: an empty block.
    unsafe { asm!("") }
}
