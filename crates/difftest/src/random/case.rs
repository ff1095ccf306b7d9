//! One random case: the initial state and the code, how crane86 runs it, what a run leaves
//! (the compared result), and the regression file format that keeps a divergent case.

use std::fmt::Write as _;

use crane86_conformance::Rng;
use crane86_machine::{Board, Machine, MachineConfig, RunEnd};
use crane86_runtime::{flags as fl, CpuMode, LazyFlags};
use crane86_translator::Tier;

use super::env::{self, END, SCRATCH, SCRATCH_LEN, SETUP};

/// The `rip` of a result when the machine shut down (a triple fault) instead of stopping.
pub const NO_STOP: u64 = u64::MAX;

/// A case's inputs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Case {
    /// Code size: 16 (real mode), 32 or 64.
    pub bits: u32,
    /// General registers (RBX and RSP hold the base and the stack pointer).
    pub gpr: [u64; 16],
    /// EFLAGS.
    pub rflags: u64,
    /// XMM registers.
    pub xmm: [u128; 16],
    /// Seed of the scratch memory's initial bytes.
    pub scratch_seed: u64,
    /// The instructions' bytes; they end at [`END`].
    pub code: Vec<u8>,
    /// Flags not compared (undefined after some prefix of the code).
    pub undefined_flags: u64,
    /// The code has SSE floating-point arithmetic (see [`Case::same_xmm`]).
    pub sse_float: bool,
}

/// What a run leaves, the part compared.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Result {
    /// Where execution stopped: [`END`] or an exception stub.
    pub rip: u64,
    /// General registers (the low 32 bits outside 64-bit mode).
    pub gpr: [u64; 16],
    /// EFLAGS, undefined flags cleared.
    pub rflags: u64,
    /// XMM registers (the first 8 outside 64-bit mode).
    pub xmm: [u128; 16],
    /// The scratch area.
    pub scratch: Vec<u8>,
}

impl Case {
    /// A random case around `code` (seeded from `rng`).
    pub fn random(
        rng: &mut Rng,
        bits: u32,
        code: Vec<u8>,
        undefined_flags: u64,
        sse_float: bool,
    ) -> Case {
        let mut gpr = [0u64; 16];
        for (i, g) in gpr.iter_mut().enumerate() {
            *g = match (bits, i) {
                (_, 3) => env::BASE,
                (_, 4) => env::STACK_TOP,
                (64, _) => rng.value(),
                (_, 0..=7) => rng.value() & 0xffff_ffff,
                _ => 0,
            };
        }
        let mut xmm = [0u128; 16];
        for x in xmm.iter_mut().take(if bits == 64 { 16 } else { 8 }) {
            *x = u128::from(rng.value()) | (u128::from(rng.value()) << 64);
            if sse_float {
                *x = no_nans(*x);
            }
        }
        let mut rflags = (rng.next() & fl::ARITH) | fl::FIXED1;
        if rng.one_in(4) {
            rflags |= fl::DF;
        }
        Case {
            bits,
            gpr,
            rflags,
            xmm,
            scratch_seed: rng.next(),
            code,
            undefined_flags,
            sse_float,
        }
    }

    /// Where the code starts.
    pub fn start(&self) -> u64 {
        END - self.code.len() as u64
    }

    /// The scratch area's initial bytes.
    pub fn scratch(&self) -> Vec<u8> {
        let mut rng = Rng::new(self.scratch_seed);
        let mut out = vec![0u8; SCRATCH_LEN];
        for c in out.chunks_mut(16) {
            let mut v = u128::from(rng.value()) | (u128::from(rng.value()) << 64);
            if self.sse_float {
                v = no_nans(v);
            }
            c.copy_from_slice(&v.to_le_bytes()[..c.len()]);
        }
        out
    }

    /// Whether crane86's result `c` matches QEMU's `q` (both normalized).
    pub fn matches(&self, q: &Result, c: &Result) -> bool {
        q.rip == c.rip
            && q.gpr == c.gpr
            && q.rflags == c.rflags
            && q.scratch == c.scratch
            && q.xmm.iter().zip(&c.xmm).all(|(a, b)| self.same_xmm(*a, *b))
    }

    /// `r` as compared: registers truncated to the mode, undefined flags cleared.
    pub fn normalize(&self, mut r: Result) -> Result {
        if self.bits != 64 {
            for (i, g) in r.gpr.iter_mut().enumerate() {
                *g = if i < 8 { *g & 0xffff_ffff } else { 0 };
            }
            r.rip &= 0xffff_ffff;
            for x in r.xmm.iter_mut().skip(8) {
                *x = 0;
            }
        }
        r.rflags &= !self.undefined_flags & 0xffff_ffff;
        self.normalize_frame(&mut r);
        r
    }

    /// XMM registers compared lane by lane, where two NaNs of the same lane width count as
    /// equal when the case has SSE floating-point arithmetic: with two NaN operands SSE
    /// returns the first, but QEMU 7.2 applies the x87 rule (the larger significand). The
    /// host-CPU conformance check covers crane86's NaN propagation.
    pub fn same_xmm(&self, a: u128, b: u128) -> bool {
        if a == b {
            return true;
        }
        if !self.sse_float {
            return false;
        }
        let nan32 = |v: u32| v & 0x7f80_0000 == 0x7f80_0000 && v & 0x007f_ffff != 0;
        let nan64 = |v: u64| {
            v & 0x7ff0_0000_0000_0000 == 0x7ff0_0000_0000_0000 && v & 0x000f_ffff_ffff_ffff != 0
        };
        let lanes32 = (0..4).all(|i| {
            let (x, y) = ((a >> (32 * i)) as u32, (b >> (32 * i)) as u32);
            x == y || (nan32(x) && nan32(y))
        });
        let lanes64 = (0..2).all(|i| {
            let (x, y) = ((a >> (64 * i)) as u64, (b >> (64 * i)) as u64);
            x == y || (nan64(x) && nan64(y))
        });
        lanes32 || lanes64
    }

    /// After an exception outside 64-bit mode (whose frames go to the IST stack, outside
    /// the scratch area) the frame is in scratch memory: its FLAGS image carries the same
    /// undefined flags as EFLAGS, and a 32-bit frame's CS slot has an upper half the SDM
    /// leaves to the implementation (QEMU zero-extends, recent CPUs write 16 bits).
    fn normalize_frame(&self, r: &mut Result) {
        let stubs = env::STUBS..env::STUBS + 32 * 16;
        if self.bits == 64 || !stubs.contains(&r.rip) {
            return;
        }
        let vector = (r.rip - env::STUBS) / 16;
        let sp = r.gpr[4] & if self.bits == 16 { 0xffff } else { 0xffff_ffff };
        let Some(at) = sp.checked_sub(SCRATCH).map(|a| a as usize) else {
            return;
        };
        let (cs, flags, width) = if self.bits == 16 {
            (None, at + 4, 2)
        } else {
            let code = usize::from(matches!(vector, 8 | 10..=14 | 17 | 21)) * 4;
            (Some(at + code + 4), at + code + 8, 4)
        };
        if let Some(cs) = cs {
            if let Some(b) = r.scratch.get_mut(cs + 2..cs + 4) {
                b.fill(0);
            }
        }
        if let Some(b) = r.scratch.get_mut(flags..flags + width) {
            let mut v = [0u8; 8];
            v[..width].copy_from_slice(b);
            // RF too: CPUs set it in the image a fault pushes, QEMU 7.2 does not.
            let masked = u64::from_le_bytes(v) & !(self.undefined_flags | fl::RF);
            b.copy_from_slice(&masked.to_le_bytes()[..width]);
        }
    }

    /// The case as a regression file, with QEMU's result.
    pub fn to_file(&self, note: &str, expect: &Result) -> String {
        let mut s = String::new();
        let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        let _ = writeln!(
            s,
            "# crane86 difftest random: a case where crane86 and QEMU TCG differed"
        );
        for line in note.lines() {
            let _ = writeln!(s, "# {line}");
        }
        let _ = writeln!(s, "bits {}", self.bits);
        let _ = writeln!(s, "code {}", hex(&self.code));
        let _ = writeln!(s, "gpr {}", words(&self.gpr));
        let _ = writeln!(s, "rflags {:#x}", self.rflags);
        let _ = writeln!(s, "xmm {}", words128(&self.xmm));
        let _ = writeln!(s, "scratch-seed {:#x}", self.scratch_seed);
        let _ = writeln!(s, "undefined-flags {:#x}", self.undefined_flags);
        let _ = writeln!(s, "sse-float {}", u8::from(self.sse_float));
        let _ = writeln!(s, "expect-rip {:#x}", expect.rip);
        let _ = writeln!(s, "expect-gpr {}", words(&expect.gpr));
        let _ = writeln!(s, "expect-rflags {:#x}", expect.rflags);
        let _ = writeln!(s, "expect-xmm {}", words128(&expect.xmm));
        let initial = self.scratch();
        for (i, (a, b)) in initial.iter().zip(&expect.scratch).enumerate() {
            if a != b {
                let _ = writeln!(s, "expect-byte {:#x} {:#04x}", SCRATCH + i as u64, b);
            }
        }
        s
    }

    /// Parses a regression file: the case and QEMU's result.
    pub fn from_file(text: &str) -> std::result::Result<(Case, Result), String> {
        let mut case = Case {
            bits: 0,
            gpr: [0; 16],
            rflags: 0,
            xmm: [0; 16],
            scratch_seed: 0,
            code: Vec::new(),
            undefined_flags: 0,
            sse_float: false,
        };
        let mut expect = Result {
            rip: 0,
            gpr: [0; 16],
            rflags: 0,
            xmm: [0; 16],
            scratch: Vec::new(),
        };
        let mut bytes = Vec::new();
        let num = |s: &str| -> std::result::Result<u64, String> {
            let t = s.trim_start_matches("0x");
            u64::from_str_radix(t, 16).map_err(|e| format!("`{s}`: {e}"))
        };
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (key, rest) = line.split_once(' ').unwrap_or((line, ""));
            let bad = |e: String| format!("line {}: {e}", n + 1);
            match key {
                "bits" => case.bits = rest.parse().map_err(|e| bad(format!("{e}")))?,
                "code" => {
                    case.code = (0..rest.len())
                        .step_by(2)
                        .map(|i| u8::from_str_radix(rest.get(i..i + 2).unwrap_or("zz"), 16))
                        .collect::<std::result::Result<_, _>>()
                        .map_err(|e| bad(format!("{e}")))?
                }
                "gpr" => case.gpr = parse_words(rest).map_err(bad)?,
                "rflags" => case.rflags = num(rest).map_err(bad)?,
                "xmm" => case.xmm = parse_words128(rest).map_err(bad)?,
                "scratch-seed" => case.scratch_seed = num(rest).map_err(bad)?,
                "undefined-flags" => case.undefined_flags = num(rest).map_err(bad)?,
                "sse-float" => case.sse_float = rest == "1",
                "expect-rip" => expect.rip = num(rest).map_err(bad)?,
                "expect-gpr" => expect.gpr = parse_words(rest).map_err(bad)?,
                "expect-rflags" => expect.rflags = num(rest).map_err(bad)?,
                "expect-xmm" => expect.xmm = parse_words128(rest).map_err(bad)?,
                "expect-byte" => {
                    let (a, v) = rest
                        .split_once(' ')
                        .ok_or_else(|| bad("address and value".into()))?;
                    bytes.push((num(a).map_err(bad)?, num(v).map_err(bad)? as u8));
                }
                other => return Err(bad(format!("unknown key `{other}`"))),
            }
        }
        if !matches!(case.bits, 16 | 32 | 64) || case.code.is_empty() {
            return Err("a case needs `bits` (16, 32 or 64) and `code`".into());
        }
        expect.scratch = case.scratch();
        for (a, v) in bytes {
            let i = a
                .checked_sub(SCRATCH)
                .filter(|&i| (i as usize) < SCRATCH_LEN);
            let i = i.ok_or_else(|| format!("expect-byte {a:#x} outside the scratch area"))?;
            expect.scratch[i as usize] = v;
        }
        Ok((case, expect))
    }
}

/// `v` with no lane that reads as a NaN, as four singles or as two doubles (the exponent's
/// top bit cleared where it would be one): inputs of cases with SSE floating-point
/// arithmetic, where two NaN operands give implementation-specific results (see
/// [`Case::same_xmm`]) that later integer operations would carry into registers and memory.
fn no_nans(mut v: u128) -> u128 {
    for i in 0..4 {
        let lane = (v >> (32 * i)) as u32;
        if lane & 0x7f80_0000 == 0x7f80_0000 && lane & 0x007f_ffff != 0 {
            v &= !(1u128 << (32 * i + 30));
        }
    }
    for i in 0..2 {
        let lane = (v >> (64 * i)) as u64;
        if lane & 0x7ff0_0000_0000_0000 == 0x7ff0_0000_0000_0000
            && lane & 0x000f_ffff_ffff_ffff != 0
        {
            v &= !(1u128 << (64 * i + 62));
        }
    }
    v
}

fn words(v: &[u64; 16]) -> String {
    v.iter()
        .map(|x| format!("{x:x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn words128(v: &[u128; 16]) -> String {
    v.iter()
        .map(|x| format!("{x:x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn parse_words(s: &str) -> std::result::Result<[u64; 16], String> {
    let v: Vec<u64> = s
        .split_whitespace()
        .map(|w| u64::from_str_radix(w, 16).map_err(|e| format!("`{w}`: {e}")))
        .collect::<std::result::Result<_, _>>()?;
    v.try_into().map_err(|_| "16 values expected".to_string())
}

fn parse_words128(s: &str) -> std::result::Result<[u128; 16], String> {
    let v: Vec<u128> = s
        .split_whitespace()
        .map(|w| u128::from_str_radix(w, 16).map_err(|e| format!("`{w}`: {e}")))
        .collect::<std::result::Result<_, _>>()?;
    v.try_into().map_err(|_| "16 values expected".to_string())
}

/// A crane86 machine set up for cases of one mode: the tables loaded and the setup code
/// run from real mode to [`env::READY`].
pub struct Crane86Env {
    /// The machine.
    pub machine: Machine,
}

/// Errors setting up crane86's side.
#[derive(Debug, thiserror::Error)]
pub enum EnvError {
    /// The machine could not be built or loaded.
    #[error(transparent)]
    Machine(#[from] crane86_machine::MachineError),
    /// Guest memory refused a piece.
    #[error(transparent)]
    Memory(#[from] crane86_runtime::MemError),
    /// The setup code could not be assembled.
    #[error("assembling the setup code: {0}")]
    Asm(#[from] iced_x86::IcedError),
    /// The setup code did not end at READY.
    #[error("crane86's setup for {bits}-bit cases ended with {end:?} at {rip:#x}")]
    Setup {
        /// The mode.
        bits: u32,
        /// How the run ended.
        end: RunEnd,
        /// Where.
        rip: u64,
    },
}

impl Crane86Env {
    /// Builds the machine (`tier` runs the cases) and runs the setup for `bits`.
    pub fn new(bits: u32, tier: Tier) -> std::result::Result<Crane86Env, EnvError> {
        let mut m = Machine::new(&MachineConfig {
            ram_bytes: 16 << 20,
            tier,
            code_arena_bytes: 16 << 20,
            board: Board::Flat,
            ..MachineConfig::default()
        })?;
        for (addr, bytes) in env::tables().into_iter().chain(env::setup(bits)?) {
            m.mem.load(addr, &bytes)?;
        }
        m.load_flat(&[], SETUP, SETUP, CpuMode::Real16)?;
        m.debug.halt_stops = true;
        let end = m.run(Some(10_000))?;
        if end != RunEnd::Halted || m.cpu.rip != env::READY + 1 {
            return Err(EnvError::Setup {
                bits,
                end,
                rip: m.cpu.rip,
            });
        }
        Ok(Crane86Env { machine: m })
    }

    /// Runs `case` and returns its result (not yet normalized).
    pub fn run(&mut self, case: &Case) -> std::result::Result<Result, EnvError> {
        let m = &mut self.machine;
        m.mem.load(case.start(), &case.code)?;
        m.mem.load(END, &[0xf4])?;
        m.mem.load(SCRATCH, &case.scratch())?;
        for (i, x) in case.xmm.iter().enumerate() {
            m.cpu.fpu.set_xmm128(i, *x);
        }
        m.cache.flush(&mut m.mem);
        m.cpu.gpr = case.gpr;
        m.cpu.rip = case.start();
        m.cpu.cc = LazyFlags::from_eflags(case.rflags);
        m.cpu.rflags = (case.rflags & !fl::ARITH) | fl::FIXED1;
        let end = m.run(Some(100_000))?;
        let rip = match end {
            RunEnd::Halted => m.cpu.rip.wrapping_sub(1),
            RunEnd::TripleFault { .. } => NO_STOP,
            // Anything else: where it is, marked so that it never matches QEMU's stop.
            _ => m.cpu.rip | (1 << 63),
        };
        let mut xmm = [0u128; 16];
        for (i, x) in xmm.iter_mut().enumerate() {
            *x = m.cpu.fpu.xmm128(i);
        }
        Ok(Result {
            rip,
            gpr: m.cpu.gpr,
            rflags: crane86_translator::interp::rflags(&m.cpu),
            xmm,
            scratch: m.mem.ram()[SCRATCH as usize..SCRATCH as usize + SCRATCH_LEN].to_vec(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regression_files_round_trip() {
        let mut rng = Rng::new(7);
        let case = Case::random(&mut rng, 64, vec![0x48, 0x01, 0xd8], 0x10, true);
        let mut expect = Result {
            rip: END,
            gpr: case.gpr,
            rflags: 0x202,
            xmm: case.xmm,
            scratch: case.scratch(),
        };
        expect.scratch[5] ^= 0xff;
        let text = case.to_file("a note\non two lines", &expect);
        let (c2, e2) = Case::from_file(&text).unwrap();
        assert_eq!(c2, case);
        assert_eq!(e2, expect);
        assert!(Case::from_file("bits 64\nbogus 1\n").is_err());
    }
}
