//! The host-CPU conformance checker.
//!
//! For every instruction form the translator's opcode table claims, [`run`] generates random
//! instances — random registers from each operand's
//! register class, register or memory forms, immediates, edge-case values and flags — and runs
//! each one twice over:
//! 1. natively, on the host CPU, inside a small fixed-address code page (see `layout` and
//!    the `native` module, the only `unsafe` code here);
//! 2. in crane86, in each of its tiers ([`TIERS`]: the interpreter, baseline code and the
//!    JIT), with the same code and data at
//!    the same guest addresses.
//!
//! Forms not valid in 64-bit mode (BCD arithmetic, PUSHA/POPA, INC/DEC 0x40-0x4F, 32-bit
//! pushes, pops and branches, ...) run as 32-bit code: natively in compatibility mode (a far
//! jump to Linux's `__USER32_CS` and back, see `layout::fixed_page`), in crane86 in flat
//! 32-bit protected mode (`CpuMode::Prot32`), with operands from the eight legacy registers
//! and 32-bit addressing; only the low halves of EAX..EDI are compared.
//!
//! It then compares all sixteen GPRs, where execution went (fall-through or taken target),
//! the arithmetic flags and DF (minus the bits the SDM calls undefined for that instruction
//! and input, see `undefined`), and the scratch data and stack memory.
//!
//! Setting `CRANE86_CONFORMANCE_TRACE` prints each form's name to stderr before it runs.
//!
//! Forms that must not run natively are checked in the emulator only where the outcome is
//! known (UD0/UD1/UD2 raise #UD; DIV/IDIV by zero raise #DE), or skipped with a reason.
//!
//! ```no_run
//! let report = crane86_conformance::run(&crane86_conformance::Options {
//!     inputs: 100,
//!     filter: Some("Add_".into()),
//!     seed: 1,
//! })
//! .unwrap();
//! println!("{}{}", report.table(), report.summary_line());
//! ```
#![deny(missing_docs)]

mod fpstate;
mod gen;
pub use gen::{set_imm, Rng};
mod layout;
mod native;
mod undefined;

#[cfg(test)]
mod tests;

use std::fmt::Write as _;

use crane86_machine::{ExceptionPolicy, Machine, MachineConfig, MachineError, RunEnd};
use crane86_runtime::flags::{self as fl, LazyFlags};
use crane86_runtime::{CpuMode, Exception, Gpr, MemError};
use crane86_translator::table::{claimed_forms, Class, Entry, Op};
use crane86_translator::{interp, Tier};
use iced_x86::{Code, Formatter, Instruction, InstructionInfoFactory, IntelFormatter, Mnemonic};

use crate::gen::Case;
use crate::layout::Regs;
use crate::native::Native;

/// What to check.
#[derive(Clone, Debug)]
pub struct Options {
    /// Random instances per form.
    pub inputs: u32,
    /// Only forms whose `Code` name or mnemonic contains this (case-insensitive).
    pub filter: Option<String>,
    /// Seed of the input generator.
    pub seed: u64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            inputs: 100,
            filter: None,
            seed: 1,
        }
    }
}

/// The outcome for one form.
#[derive(Clone, Debug)]
pub struct FormResult {
    /// The form.
    pub code: Code,
    /// Its name (`Code`'s debug name).
    pub name: String,
    /// Inputs run.
    pub inputs: u32,
    /// Inputs on which each tier of [`TIERS`] (in that order) disagreed with the host.
    pub mismatches: [u32; TIERS.len()],
    /// Why the form was not checked, if it was not.
    pub skipped: Option<String>,
    /// A description of the first mismatch.
    pub first_mismatch: Option<String>,
}

/// The outcome of a run.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// One entry per claimed form that passed the filter, in `Code` order.
    pub forms: Vec<FormResult>,
}

impl Report {
    /// Forms actually tested (not skipped).
    pub fn forms_tested(&self) -> usize {
        self.forms.iter().filter(|f| f.skipped.is_none()).count()
    }

    /// Total inputs run.
    pub fn inputs(&self) -> u64 {
        self.forms.iter().map(|f| u64::from(f.inputs)).sum()
    }

    /// Total mismatches over every tier.
    pub fn mismatches(&self) -> u64 {
        self.forms
            .iter()
            .flat_map(|f| f.mismatches)
            .map(u64::from)
            .sum()
    }

    /// A table with one line per form (skips and first mismatches included).
    pub fn table(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{:<36} {:>7} {:>7} {:>8} {:>7}  note",
            "form", "inputs", "interp", "baseline", "jit"
        );
        for f in &self.forms {
            match &f.skipped {
                Some(why) => {
                    let _ = writeln!(
                        s,
                        "{:<36} {:>7} {:>7} {:>8} {:>7}  skipped: {why}",
                        f.name, f.inputs, "-", "-", "-"
                    );
                }
                None => {
                    let note = if f.first_mismatch.is_some() {
                        "MISMATCH"
                    } else {
                        "ok"
                    };
                    let _ = writeln!(
                        s,
                        "{:<36} {:>7} {:>7} {:>8} {:>7}  {note}",
                        f.name, f.inputs, f.mismatches[0], f.mismatches[1], f.mismatches[2]
                    );
                    if let Some(m) = &f.first_mismatch {
                        let _ = writeln!(s, "    first mismatch: {m}");
                    }
                }
            }
        }
        s
    }

    /// `conformance host: forms=F inputs=I mismatches=M`.
    pub fn summary_line(&self) -> String {
        format!(
            "conformance host: forms={} inputs={} mismatches={}",
            self.forms_tested(),
            self.inputs(),
            self.mismatches()
        )
    }
}

/// Failures of the checker itself (never of the code under test, which are mismatches).
#[derive(Debug, thiserror::Error)]
pub enum ConformanceError {
    /// The fixed-address scratch area could not be mapped or protected.
    #[error("scratch area: {0}")]
    Scratch(#[from] std::io::Error),
    /// The emulated machine could not be built or run.
    #[error(transparent)]
    Machine(#[from] MachineError),
    /// Guest memory rejected the scratch area.
    #[error(transparent)]
    Memory(#[from] MemError),
    /// The fixed prologue/epilogue could not be assembled.
    #[error("assembling the test harness: {0}")]
    Assemble(String),
}

/// Checks every claimed form against the host CPU.
pub fn run(opts: &Options) -> Result<Report, ConformanceError> {
    Checker::new(None)?.run(opts)
}

/// The final state of one execution.
struct Final {
    regs: Regs,
    fx: Box<fpstate::Image>,
    /// Address execution landed on after the instruction.
    landing: u64,
    mem: Vec<u8>,
}

/// A hook that alters the native result, for testing that mismatches are caught.
type Tamper = fn(&mut Regs);

struct Checker {
    native: Native,
    base: u64,
    /// The fixed native code page for 64-bit forms.
    fixed: Vec<u8>,
    /// The same for 32-bit forms (compatibility mode), when the host can run them.
    fixed32: Option<Vec<u8>>,
    machines: [(Tier, Machine); TIERS.len()],
    /// The code size and instruction bytes each machine's code page and translation cache
    /// hold now: an identical next instance reuses the translation instead of flushing and
    /// recompiling.
    loaded: [(u32, Vec<u8>); TIERS.len()],
    tamper: Option<Tamper>,
}

/// The tiers every input runs in, in the order of [`FormResult::mismatches`]: every block
/// interpreted, in baseline code, and compiled by Cranelift before its first run.
pub const TIERS: [Tier; 3] = [Tier::Interp, Tier::Baseline, Tier::Jit];

fn machine(tier: Tier) -> Result<Machine, MachineError> {
    Machine::new(&MachineConfig {
        tier,
        ram_bytes: layout::GUEST_RAM,
        code_arena_bytes: 16 << 20,
        // The exception an instruction raises is the result being compared.
        exceptions: ExceptionPolicy::Stop,
        ..MachineConfig::default()
    })
}

fn matches_filter(code: Code, filter: &Option<String>) -> bool {
    match filter {
        None => true,
        Some(f) => {
            let f = f.to_ascii_lowercase();
            format!("{code:?}").to_ascii_lowercase().contains(&f)
                || format!("{:?}", code.mnemonic())
                    .to_ascii_lowercase()
                    .contains(&f)
        }
    }
}

fn format_insn(insn: &Instruction) -> String {
    let mut s = String::new();
    IntelFormatter::new().format(insn, &mut s);
    s
}

impl Checker {
    fn new(tamper: Option<Tamper>) -> Result<Checker, ConformanceError> {
        let native = Native::new()?;
        let base = native.base();
        let asm_err = |e: iced_x86::IcedError| ConformanceError::Assemble(e.to_string());
        let fixed = layout::fixed_page(base, 64).map_err(asm_err)?;
        let fixed32 = if native::compat_mode_available() {
            Some(layout::fixed_page(base, 32).map_err(asm_err)?)
        } else {
            None
        };
        Ok(Checker {
            native,
            base,
            fixed,
            fixed32,
            machines: [
                (TIERS[0], machine(TIERS[0])?),
                (TIERS[1], machine(TIERS[1])?),
                (TIERS[2], machine(TIERS[2])?),
            ],
            loaded: Default::default(),
            tamper,
        })
    }

    fn run(&mut self, opts: &Options) -> Result<Report, ConformanceError> {
        let mut report = Report::default();
        for (code, entry) in claimed_forms() {
            if matches_filter(code, &opts.filter) {
                report.forms.push(self.check_form(code, entry, opts)?);
            }
        }
        Ok(report)
    }

    fn check_form(
        &mut self,
        code: Code,
        entry: Entry,
        opts: &Options,
    ) -> Result<FormResult, ConformanceError> {
        let mut r = FormResult {
            code,
            name: format!("{code:?}"),
            inputs: 0,
            mismatches: [0; TIERS.len()],
            skipped: None,
            first_mismatch: None,
        };
        let skip = |mut r: FormResult, why: String| {
            r.skipped = Some(why);
            r.inputs = 0;
            r.mismatches = [0; TIERS.len()];
            r.first_mismatch = None;
            Ok(r)
        };
        if entry.class == Class::Runtime {
            return skip(
                r,
                "runtime class: needs the machine (CPUID/HLT/IN/OUT/POPF)".into(),
            );
        }
        let spec = match gen::spec(code) {
            Ok(s) => s,
            Err(why) => return skip(r, why),
        };
        if spec.bits == 32 && self.fixed32.is_none() {
            return skip(
                r,
                "not valid in 64-bit mode, and the host cannot run 32-bit compatibility-mode \
                 code (no usable __USER32_CS)"
                    .into(),
            );
        }
        if std::env::var_os("CRANE86_CONFORMANCE_TRACE").is_some() {
            // Names each form before it runs natively: a host crash points at its culprit.
            eprintln!("conformance: {code:?}");
        }
        let mut rng = Rng::new(opts.seed ^ (code as u64).wrapping_mul(0x0100_0000_01b3));
        for _ in 0..opts.inputs {
            let case = match gen::instance(&spec, &mut rng, self.base, false) {
                Ok(c) => c,
                Err(why) => return skip(r, why),
            };
            r.inputs += 1;
            if entry.op == Op::Ud {
                // Never run natively: the architected outcome is #UD at the instruction.
                self.expect_fault(&case, Exception::InvalidOpcode, &mut r)?;
                continue;
            }
            let want = self.native(&case)?;
            for t in 0..TIERS.len() {
                let got = self.emulate(t, &case)?;
                if let Some(diff) = compare(self.base, &case, &want, &got) {
                    self.record(t, &case, diff, &mut r);
                }
            }
        }
        if matches!(
            code.mnemonic(),
            Mnemonic::Div | Mnemonic::Idiv | Mnemonic::Aam
        ) {
            // Division by zero, checked in the emulator only.
            if let Ok(case) = gen::instance(&spec, &mut rng, self.base, true) {
                r.inputs += 1;
                self.expect_fault(&case, Exception::DivideError, &mut r)?;
            }
        }
        Ok(r)
    }

    fn record(&self, tier: usize, case: &Case, diff: String, r: &mut FormResult) {
        r.mismatches[tier] += 1;
        if r.first_mismatch.is_none() {
            r.first_mismatch = Some(format!(
                "`{}` ({}, {}-bit) [{:?}]: {diff}; input: {}",
                format_insn(&case.insn),
                hex(&case.bytes),
                case.bits,
                self.machines[tier].0,
                describe_input(case)
            ));
        }
    }

    fn expect_fault(
        &mut self,
        case: &Case,
        exc: Exception,
        r: &mut FormResult,
    ) -> Result<(), ConformanceError> {
        let at = self.base + layout::INSN;
        for t in 0..TIERS.len() {
            let got = self.emulate(t, case)?;
            let ok = matches!(got.end, RunEnd::Fault { fault, rip } if fault.exception == exc && rip == at);
            if !ok {
                let diff = format!(
                    "want {exc:?} at {at:#x}, run ended with {:?} (rip {:#x})",
                    got.end, got.rip
                );
                self.record(t, case, diff, r);
            }
        }
        Ok(())
    }

    fn native(&mut self, case: &Case) -> Result<Final, ConformanceError> {
        let bits = case.bits;
        let fixed = match (bits, &self.fixed32) {
            (32, Some(f)) => f,
            _ => &self.fixed,
        };
        let page = layout::native_page(self.base, fixed, &case.bytes, bits);
        let out = self.native.run(&page, &case.mem, &case.input, &case.fx)?;
        let mut regs = out.regs;
        if let Some(t) = self.tamper {
            t(&mut regs);
        }
        if bits == 32 {
            regs.gpr = low32(&regs.gpr);
        }
        let landing = match out.marker {
            1 => self.base + layout::INSN + case.bytes.len() as u64,
            2 => self.base + layout::TAKEN,
            _ => 0,
        };
        Ok(Final {
            regs,
            fx: out.fx,
            landing,
            mem: out.mem,
        })
    }

    fn emulate(&mut self, tier: usize, case: &Case) -> Result<Emulated, ConformanceError> {
        let base = self.base;
        let m = &mut self.machines[tier].1;
        if self.loaded[tier].0 != case.bits || self.loaded[tier].1 != case.bytes {
            m.mem.load(base, &layout::emulated_page(&case.bytes))?;
            m.cache.flush(&mut m.mem);
            self.loaded[tier] = (case.bits, case.bytes.clone());
        }
        m.mem.load(base + layout::MEM_OFF, &case.mem)?;
        m.ports.exit = None;
        // 32-bit forms run in flat 32-bit protected mode (paging off: linear = physical).
        let mode = if case.bits == 32 {
            CpuMode::Prot32
        } else {
            CpuMode::Long64
        };
        let mut cpu = m.flat_cpu(mode);
        cpu.gpr = case.input.gpr;
        cpu.rip = base + layout::INSN;
        cpu.cc = LazyFlags::from_eflags(case.input.flags);
        cpu.rflags = (case.input.flags & !fl::ARITH) | fl::FIXED1;
        crane86_fpu::save::fxrstor(&mut cpu.fpu, fpstate::LAYOUT, &case.fx)
            .map_err(|e| ConformanceError::Assemble(format!("input FPU image: {e:?}")))?;
        m.cpu = cpu;
        let end = m.run(Some(100_000))?;
        let lo = (base + layout::MEM_OFF) as usize;
        let mut fx = Box::new([0u8; crane86_fpu::save::FXSAVE_SIZE]);
        crane86_fpu::save::fxsave(&m.cpu.fpu, fpstate::LAYOUT, &mut fx);
        Ok(Emulated {
            fx,
            end,
            rip: m.cpu.rip,
            regs: Regs {
                gpr: if case.bits == 32 {
                    low32(&m.cpu.gpr)
                } else {
                    m.cpu.gpr
                },
                flags: interp::rflags(&m.cpu),
            },
            mem: m.mem.ram()[lo..lo + layout::MEM_LEN].to_vec(),
        })
    }
}

struct Emulated {
    fx: Box<fpstate::Image>,
    end: RunEnd,
    rip: u64,
    regs: Regs,
    mem: Vec<u8>,
}

/// A 32-bit run's comparable registers: the low halves of EAX..EDI (compatibility mode leaves
/// the upper halves undefined; R8..R15 do not exist), everything else zero.
fn low32(gpr: &[u64; 16]) -> [u64; 16] {
    let mut g = [0u64; 16];
    for i in 0..8 {
        g[i] = gpr[i] & 0xffff_ffff;
    }
    g
}

fn hex(b: &[u8]) -> String {
    b.iter()
        .map(|x| format!("{x:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn describe_input(case: &Case) -> String {
    let mut f = InstructionInfoFactory::new();
    let info = f.info(&case.insn);
    let mut seen = 0u16;
    let mut s = String::new();
    for u in info.used_registers() {
        let r = u.register();
        if !r.is_gpr() {
            continue;
        }
        let n = r.full_register().number();
        if seen & (1 << n) != 0 {
            continue;
        }
        seen |= 1 << n;
        let _ = write!(s, "{}={:#x} ", Gpr::ALL[n].name(), case.input.gpr[n]);
    }
    let _ = write!(s, "rflags={:#x}", case.input.flags);
    if case.fpu {
        let _ = write!(s, " {}", fpstate::describe(&case.fx));
    }
    s
}

fn place(base: u64, case: &Case, addr: u64) -> String {
    if addr == base + layout::INSN + case.bytes.len() as u64 {
        "fall-through".into()
    } else if addr == base + layout::TAKEN {
        "taken".into()
    } else {
        format!("{addr:#x}")
    }
}

/// Describes every difference between the host's result and the emulator's, or `None`.
fn compare(base: u64, case: &Case, want: &Final, got: &Emulated) -> Option<String> {
    if got.end != RunEnd::Halted {
        return Some(format!(
            "run ended with {:?} (rip {:#x}) instead of reaching the landing",
            got.end, got.rip
        ));
    }
    let mut diffs = Vec::new();
    for (i, g) in Gpr::ALL.iter().enumerate() {
        if want.regs.gpr[i] != got.regs.gpr[i] {
            diffs.push(format!(
                "{}: want {:#x} got {:#x}",
                g.name(),
                want.regs.gpr[i],
                got.regs.gpr[i]
            ));
        }
    }
    let mask = (fl::ARITH | fl::DF) & !case.undefined;
    let x = (want.regs.flags ^ got.regs.flags) & mask;
    if x != 0 {
        diffs.push(format!(
            "rflags: want {:#x} got {:#x} (differ {})",
            want.regs.flags & mask,
            got.regs.flags & mask,
            flag_names(x)
        ));
    }
    let landing = got.rip.wrapping_sub(1);
    if landing != want.landing {
        diffs.push(format!(
            "landing: want {} got {}",
            place(base, case, want.landing),
            place(base, case, landing)
        ));
    }
    if let Some(off) = (0..layout::MEM_LEN).find(|&i| want.mem[i] != got.mem[i]) {
        let n = (0..layout::MEM_LEN)
            .filter(|&i| want.mem[i] != got.mem[i])
            .count();
        let end = (off + 8).min(layout::MEM_LEN);
        diffs.push(format!(
            "memory at {:#x} ({n} bytes differ): want [{}] got [{}]",
            base + layout::MEM_OFF + off as u64,
            hex(&want.mem[off..end]),
            hex(&got.mem[off..end])
        ));
    }
    if case.fpu {
        use Mnemonic as M;
        let m = case.insn.mnemonic();
        let tol = fpstate::Tolerance {
            approx_xmm: matches!(m, M::Rcpps | M::Rcpss | M::Rsqrtps | M::Rsqrtss)
                .then(|| case.insn.op0_register().number()),
            transcendental: matches!(
                m,
                M::Fsin
                    | M::Fcos
                    | M::Fsincos
                    | M::Fptan
                    | M::Fpatan
                    | M::F2xm1
                    | M::Fyl2x
                    | M::Fyl2xp1
            ),
            vendor_nan_xmm: match m {
                M::Dpps | M::Dppd if !crane86_fpu::host_is_amd() => Some((
                    case.insn.op0_register().number(),
                    if m == M::Dpps { 32 } else { 64 },
                )),
                _ => None,
            },
        };
        if let Some(d) = fpstate::compare(&want.fx, &got.fx, tol) {
            diffs.push(d);
        }
    }
    if diffs.is_empty() {
        None
    } else {
        Some(diffs.join(", "))
    }
}

fn flag_names(bits: u64) -> String {
    [
        (fl::CF, "CF"),
        (fl::PF, "PF"),
        (fl::AF, "AF"),
        (fl::ZF, "ZF"),
        (fl::SF, "SF"),
        (fl::DF, "DF"),
        (fl::OF, "OF"),
    ]
    .iter()
    .filter(|(b, _)| bits & b != 0)
    .map(|(_, n)| *n)
    .collect::<Vec<_>>()
    .join(" ")
}
