//! `crane86 difftest random`: random instruction sequences run in crane86 (every tier) and
//! in QEMU TCG, from the same state, with final registers, flags and scratch memory
//! compared. A divergent case is minimised (instructions dropped while it still diverges)
//! and written as a regression file that the test suite replays in crane86 against QEMU's
//! recorded result.
//!
//! Both machines start from the same place: QEMU's, paused at reset, gets the tables and
//! setup code of [`env`] through its gdbstub and runs them to [`env::READY`]; crane86 runs
//! the same code from real mode. Each case then writes its code (ending at [`env::END`], a
//! HLT), its scratch memory and its registers into both, and runs until the HLT or the HLT
//! of the exception stub it faulted to. QEMU stops there on a breakpoint.

pub mod case;
pub mod env;
pub mod gen;

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use crane86_conformance::Rng;
use crane86_translator::Tier;
use iced_x86::{
    BlockEncoder, BlockEncoderOptions, Decoder, DecoderOptions, Formatter, Instruction,
    InstructionBlock, IntelFormatter,
};

use crate::qemu::{Qemu, QemuConfig, QemuError};
use crate::rsp::{RspError, StopReply};
use case::{Case, Crane86Env, EnvError, Result as CaseResult};

/// What to run.
#[derive(Clone, Debug)]
pub struct RandomConfig {
    /// Seed of the first case (case `k` uses `seed + k`).
    pub seed: u64,
    /// Cases to run.
    pub count: u64,
    /// Code size: 16 (real mode), 32 or 64.
    pub bits: u32,
    /// Longest program, in instructions.
    pub max_len: usize,
    /// The QEMU binary.
    pub qemu: String,
    /// Where divergent cases are saved (none: not saved).
    pub save_dir: Option<PathBuf>,
}

/// How a run went.
#[derive(Clone, Debug, Default)]
pub struct RandomOutcome {
    /// Cases run.
    pub cases: u64,
    /// Cases where a crane86 tier and QEMU differed.
    pub divergences: u64,
    /// Regression files written.
    pub saved: Vec<PathBuf>,
    /// Cases QEMU crashed on (not counted as divergences).
    pub qemu_crashes: u64,
}

/// Errors that stop a run.
#[derive(Debug, thiserror::Error)]
pub enum RandomError {
    /// QEMU failed.
    #[error(transparent)]
    Qemu(#[from] QemuError),
    /// crane86's side could not be set up.
    #[error(transparent)]
    Env(#[from] EnvError),
    /// Encoding a program failed.
    #[error("encoding a program: {0}")]
    Encode(#[from] iced_x86::IcedError),
    /// QEMU's setup did not reach READY.
    #[error("QEMU's setup for {bits}-bit cases stopped at {rip:#x}, not at READY")]
    Setup {
        /// The mode.
        bits: u32,
        /// Where it stopped.
        rip: u64,
    },
    /// Writing the report or a regression file failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl From<RspError> for RandomError {
    fn from(e: RspError) -> Self {
        RandomError::Qemu(e.into())
    }
}

/// QEMU, set up for cases of one mode.
struct QemuEnv {
    qemu: Qemu,
    /// The register packet at READY: cases change the general registers, RIP, EFLAGS and
    /// XMM registers in a copy.
    base: Vec<u8>,
}

impl QemuEnv {
    fn new(binary: &str, bits: u32) -> Result<QemuEnv, RandomError> {
        let mut qemu = Qemu::start(&QemuConfig {
            binary: binary.to_string(),
            mem_mib: 16,
            cpu: Some("max".into()),
            serial: None,
            guest_args: Vec::new(),
        })?;
        qemu.rsp.physical_memory(true)?;
        for (addr, bytes) in env::tables().into_iter().chain(env::setup(bits)?) {
            qemu.rsp.write_memory(addr, &bytes)?;
        }
        let layout = qemu.layout.clone();
        let g = qemu.registers()?;
        let mut want = g.clone();
        set(&layout, &mut want, "cs", 0);
        set(&layout, &mut want, "rip", u128::from(env::SETUP));
        set(&layout, &mut want, "eip", u128::from(env::SETUP));
        write_changed(&mut qemu, &g, &want)?;
        if tracing::enabled!(tracing::Level::DEBUG) {
            let text = qemu.rsp.monitor("info registers")?;
            tracing::debug!("QEMU at the setup entry:\n{text}");
        }
        for v in 0..32 {
            qemu.rsp.breakpoint(0, env::STUBS + 16 * v, true)?;
        }
        qemu.rsp.breakpoint(0, env::READY, true)?;
        qemu.rsp.breakpoint(0, env::END, true)?;
        qemu.rsp.cont(Duration::from_secs(10))?;
        let base = qemu.registers()?;
        let rip = get(&layout, &base, "rip").unwrap_or(0) as u64;
        if rip != env::READY {
            return Err(RandomError::Setup { bits, rip });
        }
        Ok(QemuEnv { qemu, base })
    }

    /// Runs `case`.
    fn run(&mut self, case: &Case) -> Result<QemuRun, RandomError> {
        let rsp = &mut self.qemu.rsp;
        rsp.write_memory(case.start(), &case.code)?;
        rsp.write_memory(env::SCRATCH, &case.scratch())?;
        let layout = self.qemu.layout.clone();
        let now = self.qemu.registers()?;
        let mut g = self.base.clone();
        for (i, name) in GPR_NAMES.iter().enumerate() {
            set(&layout, &mut g, name[0], u128::from(case.gpr[i]));
            set(&layout, &mut g, name[1], u128::from(case.gpr[i]));
        }
        set(&layout, &mut g, "rip", u128::from(case.start()));
        set(&layout, &mut g, "eip", u128::from(case.start()));
        set(&layout, &mut g, "eflags", u128::from(case.rflags));
        for (i, x) in case.xmm.iter().enumerate() {
            set(&layout, &mut g, &format!("xmm{i}"), *x);
        }
        write_changed(&mut self.qemu, &now, &g)?;
        match self.qemu.rsp.cont(Duration::from_secs(5)) {
            Ok(StopReply::Signal(_)) => {}
            Ok(_) | Err(RspError::Closed) | Err(RspError::Timeout(..)) => {
                return Ok(match self.qemu.exit_signal() {
                    Some(signal) => QemuRun::Crashed(signal),
                    None => QemuRun::Ended,
                })
            }
            Err(e) => return Err(e.into()),
        }
        let g = self.qemu.registers()?;
        let scratch = self.qemu.rsp.read_memory(env::SCRATCH, env::SCRATCH_LEN)?;
        let mut r = CaseResult {
            rip: get(&layout, &g, "rip")
                .or_else(|| get(&layout, &g, "eip"))
                .unwrap_or(0) as u64,
            gpr: [0; 16],
            rflags: get(&layout, &g, "eflags").unwrap_or(0) as u64,
            xmm: [0; 16],
            scratch,
        };
        for (i, name) in GPR_NAMES.iter().enumerate() {
            r.gpr[i] = get(&layout, &g, name[0])
                .or_else(|| get(&layout, &g, name[1]))
                .unwrap_or(0) as u64;
        }
        for (i, x) in r.xmm.iter_mut().enumerate() {
            *x = get(&layout, &g, &format!("xmm{i}")).unwrap_or(0);
        }
        Ok(QemuRun::Stopped(Box::new(r)))
    }
}

/// How QEMU's run of a case ended.
enum QemuRun {
    /// At END or a stub: its result.
    Stopped(Box<CaseResult>),
    /// Killed by this signal.
    Crashed(i32),
    /// It exited or stopped answering (a reset after a triple fault, with -no-reboot).
    Ended,
}

use crate::state::GPR_NAMES;

/// Writes, one `P` packet each, the registers where `want` differs from `now` (QEMU 7.2's
/// `G` packet reads some registers at 4 bytes outside 64-bit mode while `g` gives 8, so a
/// whole-packet write would shift them).
fn write_changed(qemu: &mut Qemu, now: &[u8], want: &[u8]) -> Result<(), RspError> {
    for r in qemu.layout.regs.clone() {
        let (Some(a), Some(b)) = (
            now.get(r.offset..r.offset + r.bytes),
            want.get(r.offset..r.offset + r.bytes),
        ) else {
            continue;
        };
        if a != b {
            qemu.rsp.write_register(r.number, b)?;
        }
    }
    Ok(())
}

fn set(layout: &crate::layout::Layout, g: &mut [u8], name: &str, v: u128) {
    if let Some(r) = layout.reg(name) {
        if let Some(dst) = g.get_mut(r.offset..r.offset + r.bytes) {
            let b = v.to_le_bytes();
            let n = dst.len().min(16);
            dst[..n].copy_from_slice(&b[..n]);
        }
    }
}

fn get(layout: &crate::layout::Layout, g: &[u8], name: &str) -> Option<u128> {
    layout.value(g, name)
}

/// Encodes `program` so that it ends at [`env::END`].
fn encode(program: &[Instruction], bits: u32) -> Result<Vec<u8>, iced_x86::IcedError> {
    let first = BlockEncoder::encode(
        bits,
        InstructionBlock::new(program, env::END - env::MAX_CODE),
        BlockEncoderOptions::NONE,
    )?;
    let len = first.code_buffer.len() as u64;
    let again = BlockEncoder::encode(
        bits,
        InstructionBlock::new(program, env::END - len),
        BlockEncoderOptions::NONE,
    )?;
    Ok(again.code_buffer)
}

/// The instructions of `code` at `ip`, for reports.
pub fn disassemble(code: &[u8], bits: u32, ip: u64) -> Vec<String> {
    let mut d = Decoder::with_ip(bits, code, ip, DecoderOptions::NONE);
    let mut f = IntelFormatter::new();
    let mut out = Vec::new();
    while d.can_decode() {
        let i = d.decode();
        let mut s = String::new();
        f.format(&i, &mut s);
        out.push(format!("{:#06x}  {s}", i.ip()));
    }
    out
}

/// Both crane86 tiers and QEMU on one case: the first tier that differs, with both results.
struct Verdict {
    tier: &'static str,
    qemu: CaseResult,
    crane86: CaseResult,
}

struct Runner {
    bits: u32,
    qemu_binary: String,
    qemu: QemuEnv,
    interp: Crane86Env,
    baseline: Crane86Env,
    jit: Crane86Env,
}

impl Runner {
    fn new(cfg: &RandomConfig) -> Result<Runner, RandomError> {
        Ok(Runner {
            bits: cfg.bits,
            qemu_binary: cfg.qemu.clone(),
            qemu: QemuEnv::new(&cfg.qemu, cfg.bits)?,
            interp: Crane86Env::new(cfg.bits, Tier::Interp)?,
            baseline: Crane86Env::new(cfg.bits, Tier::Baseline)?,
            jit: Crane86Env::new(cfg.bits, Tier::Jit)?,
        })
    }

    /// Runs `case` in QEMU and in every crane86 tier.
    fn check(&mut self, case: &Case) -> Result<Check, RandomError> {
        let q = match self.qemu.run(case)? {
            QemuRun::Stopped(r) => case.normalize(*r),
            QemuRun::Crashed(signal) => {
                self.qemu = QemuEnv::new(&self.qemu_binary, self.bits)?;
                let c = case.normalize(self.interp.run(case)?);
                return Ok(Check::QemuCrashed(signal, Box::new(c)));
            }
            QemuRun::Ended => {
                // A shutdown (triple fault): QEMU's registers are gone; crane86 must have
                // shut down too.
                self.qemu = QemuEnv::new(&self.qemu_binary, self.bits)?;
                let c = case.normalize(self.interp.run(case)?);
                if c.rip == case::NO_STOP {
                    return Ok(Check::Agree);
                }
                let dead = CaseResult {
                    rip: case::NO_STOP,
                    gpr: [0; 16],
                    rflags: 0,
                    xmm: [0; 16],
                    scratch: Vec::new(),
                };
                return Ok(Check::Diverge(Box::new(Verdict {
                    tier: "interp (QEMU shut down)",
                    qemu: dead,
                    crane86: c,
                })));
            }
        };
        for (tier, env) in [
            ("interp", &mut self.interp),
            ("baseline", &mut self.baseline),
            ("jit", &mut self.jit),
        ] {
            let c = case.normalize(env.run(case)?);
            if !case.matches(&q, &c) {
                return Ok(Check::Diverge(Box::new(Verdict {
                    tier,
                    qemu: q,
                    crane86: c,
                })));
            }
        }
        Ok(Check::Agree)
    }
}

/// The verdict on one case.
enum Check {
    /// QEMU and every crane86 tier agree.
    Agree,
    /// A crane86 tier differs from QEMU.
    Diverge(Box<Verdict>),
    /// QEMU died of this signal running the case (a QEMU bug); crane86's result.
    QemuCrashed(i32, Box<CaseResult>),
}

/// The fields where two results differ, for reports.
fn describe(v: &Verdict, bits: u32) -> Vec<String> {
    let mut out = Vec::new();
    let (q, c) = (&v.qemu, &v.crane86);
    if q.rip != c.rip {
        out.push(format!("rip: qemu {:#x} crane86 {:#x}", q.rip, c.rip));
    }
    let names = [
        "rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi", "r8", "r9", "r10", "r11", "r12",
        "r13", "r14", "r15",
    ];
    let n = if bits == 64 { 16 } else { 8 };
    for (i, name) in names.iter().enumerate().take(n) {
        if q.gpr[i] != c.gpr[i] {
            out.push(format!(
                "{name}: qemu {:#x} crane86 {:#x}",
                q.gpr[i], c.gpr[i]
            ));
        }
    }
    if q.rflags != c.rflags {
        out.push(format!(
            "eflags: qemu {:#x} crane86 {:#x}",
            q.rflags, c.rflags
        ));
    }
    for i in 0..16 {
        if q.xmm[i] != c.xmm[i] {
            // (NaN lanes the comparison accepts show here too when something else differs.)
            out.push(format!(
                "xmm{i}: qemu {:#034x} crane86 {:#034x}",
                q.xmm[i], c.xmm[i]
            ));
        }
    }
    if q.scratch != c.scratch {
        let first = q
            .scratch
            .iter()
            .zip(&c.scratch)
            .position(|(a, b)| a != b)
            .unwrap_or(0);
        out.push(format!(
            "memory differs from {:#x}",
            env::SCRATCH + first as u64
        ));
    }
    out
}

/// Drops instructions while the case still diverges; returns the smallest case found.
fn minimize(
    runner: &mut Runner,
    rng_seed: u64,
    program: &[Instruction],
) -> Result<(Vec<Instruction>, Case), RandomError> {
    let make = |p: &[Instruction]| -> Result<Case, RandomError> {
        let mut rng = Rng::new(rng_seed ^ 0x5eed);
        let code = encode(p, runner_bits(p))?;
        Ok(Case::random(
            &mut rng,
            runner_bits(p),
            code,
            gen::undefined_flags(p),
            gen::sse_float(p),
        ))
    };
    let mut best = program.to_vec();
    let mut i = best.len();
    while i > 0 && best.len() > 1 {
        i -= 1;
        let mut candidate = best.clone();
        candidate.remove(i);
        if !gen::valid(&candidate) {
            continue;
        }
        let case = make(&candidate)?;
        if matches!(runner.check(&case)?, Check::Diverge(_)) {
            best = candidate;
            i = i.min(best.len());
        }
    }
    let case = make(&best)?;
    Ok((best, case))
}

fn runner_bits(p: &[Instruction]) -> u32 {
    match p.first().map(|i| i.code_size()) {
        Some(iced_x86::CodeSize::Code16) => 16,
        Some(iced_x86::CodeSize::Code32) => 32,
        _ => 64,
    }
}

/// Runs the cases and writes a report to `out`; the last line is
/// `difftest: random mode=B cases=N divergences=D`.
pub fn run(cfg: &RandomConfig, out: &mut dyn Write) -> Result<RandomOutcome, RandomError> {
    let forms = gen::forms(cfg.bits);
    let mut runner = Runner::new(cfg)?;
    let mut o = RandomOutcome::default();
    writeln!(
        out,
        "difftest: random {}-bit programs of up to {} instructions from {} forms, seed {}",
        cfg.bits,
        cfg.max_len,
        forms.len(),
        cfg.seed
    )?;
    for k in 0..cfg.count {
        let seed = cfg.seed.wrapping_add(k);
        let mut rng = Rng::new(seed);
        let program = gen::program(&mut rng, &forms, cfg.bits, cfg.max_len);
        if program.is_empty() {
            continue;
        }
        let case_seed = rng.next();
        let mut case_rng = Rng::new(case_seed ^ 0x5eed);
        let case = Case::random(
            &mut case_rng,
            cfg.bits,
            encode(&program, cfg.bits)?,
            gen::undefined_flags(&program),
            gen::sse_float(&program),
        );
        o.cases += 1;
        match runner.check(&case)? {
            Check::Agree => continue,
            Check::QemuCrashed(signal, c) => {
                o.qemu_crashes += 1;
                writeln!(out, "QEMU crashed (signal {signal}) on case seed {seed}, a QEMU bug; crane86 stopped at {:#x}:", c.rip)?;
                for line in disassemble(&case.code, cfg.bits, case.start()) {
                    writeln!(out, "    {line}")?;
                }
                continue;
            }
            Check::Diverge(_) => {}
        }
        o.divergences += 1;
        let (small, case) = minimize(&mut runner, case_seed, &program)?;
        let Check::Diverge(verdict) = runner.check(&case)? else {
            continue;
        };
        writeln!(
            out,
            "divergence {} (case seed {seed}, {} of {} instructions kept), {}:",
            o.divergences,
            small.len(),
            program.len(),
            verdict.tier
        )?;
        for line in disassemble(&case.code, cfg.bits, case.start()) {
            writeln!(out, "    {line}")?;
        }
        let what = describe(&verdict, cfg.bits);
        for line in &what {
            writeln!(out, "  {line}")?;
        }
        if let Some(dir) = &cfg.save_dir {
            std::fs::create_dir_all(dir)?;
            let path = dir.join(format!("{}bit-seed{seed}.case", cfg.bits));
            let note = format!(
                "seed {seed}, mode {}-bit, crane86 {}:\n{}",
                cfg.bits,
                verdict.tier,
                what.join("\n")
            );
            std::fs::write(&path, case.to_file(&note, &verdict.qemu))?;
            writeln!(out, "  saved as {}", path.display())?;
            o.saved.push(path);
        }
    }
    writeln!(
        out,
        "difftest: random mode={} cases={} divergences={}",
        cfg.bits, o.cases, o.divergences
    )?;
    Ok(o)
}
