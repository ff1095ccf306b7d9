//! `crane86 difftest qemu`: both machines one instruction at a time, compared after every
//! step (see the crate documentation for the method).

mod explain;
mod memory;
mod report;

use std::collections::{BTreeMap, VecDeque};
use std::io::Write;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crane86_machine::{Board, Machine, MachineConfig, RunEnd};
use crane86_runtime::state::EXIT_DEVICE;
use crane86_runtime::{CpuMode, CpuState};
use crane86_translator::Tier;
use iced_x86::{FlowControl, Instruction, Mnemonic};

use crate::qemu::{Qemu, QemuConfig, QemuError};
use crate::rsp::{RspError, StopReply};
use crate::state::{adopt_registers, scope_of, ArchState, Scope};
use explain::{adopt_registers_flags, explanation, interrupt_taken, known_qemu_deviation};
use report::{disassemble, next_instruction, Executed};

/// What to compare and for how long.
#[derive(Clone, Debug)]
pub struct LockstepConfig {
    /// How QEMU starts and loads the guest.
    pub qemu: QemuConfig,
    /// The linear address both start from: QEMU runs to it, then crane86 copies QEMU.
    pub start: u64,
    /// Steps to compare at most.
    pub max_steps: u64,
    /// Stop at the first asynchronous event (an interrupt either side would take) instead
    /// of replaying QEMU's interrupts in crane86.
    pub until_interrupt: bool,
    /// Compare x87 and SSE registers too.
    pub fpu: bool,
    /// Compare the memory each instruction writes too (one more QEMU round trip per
    /// write).
    pub memory: bool,
    /// Instructions shown before a divergence.
    pub history: usize,
    /// After a divergence, adopt QEMU's registers and go on (up to this many divergences);
    /// 1 stops at the first.
    pub max_divergences: u64,
    /// How long QEMU may take to reach `start`.
    pub start_timeout: Duration,
}

/// How a comparison ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum End {
    /// `max_steps` compared.
    Limit,
    /// Both guests exited through isa-debug-exit with this value.
    Exited(u32),
    /// The guest executed HLT with interrupts held: nothing more happens without an
    /// asynchronous event.
    Halted,
    /// `--until-interrupt`: the first asynchronous event.
    Asynchronous(String),
    /// The machines ended differently, or the comparison could not go on.
    Stopped(String),
    /// `max_divergences` reached.
    Diverged,
}

/// The result of a comparison.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// Steps compared (instructions retired plus events delivered).
    pub steps: u64,
    /// Differences not explained as allowed ones.
    pub divergences: u64,
    /// Explained differences by kind: crane86 took QEMU's values.
    pub explained: BTreeMap<&'static str, u64>,
    /// How it ended.
    pub end: End,
}

/// Errors that end a comparison before it starts or in the middle.
#[derive(Debug, thiserror::Error)]
pub enum LockstepError {
    /// QEMU failed.
    #[error(transparent)]
    Qemu(#[from] QemuError),
    /// crane86's machine could not be built.
    #[error(transparent)]
    Machine(#[from] crane86_machine::MachineError),
    /// QEMU did not reach the start address.
    #[error("QEMU did not reach the start address {addr:#x}: {why}")]
    NoStart {
        /// The address.
        addr: u64,
        /// What happened instead.
        why: String,
    },
    /// The report could not be written.
    #[error("writing the report: {0}")]
    Report(#[from] std::io::Error),
}

impl From<RspError> for LockstepError {
    fn from(e: RspError) -> Self {
        LockstepError::Qemu(e.into())
    }
}

/// Runs the comparison, writing divergences and the summary to `out`. The last line is
/// `difftest: steps=N divergences=D`.
pub fn run(cfg: &LockstepConfig, out: &mut dyn Write) -> Result<Outcome, LockstepError> {
    let mut qemu = Qemu::start(&cfg.qemu)?;
    match qemu.run_to(cfg.start, cfg.start_timeout) {
        Ok(StopReply::Signal(_)) => {}
        Ok(other) => {
            return Err(LockstepError::NoStart {
                addr: cfg.start,
                why: format!("the guest ended first ({other:?})"),
            })
        }
        Err(QemuError::Rsp(RspError::Timeout(..))) => {
            return Err(LockstepError::NoStart {
                addr: cfg.start,
                why: format!("not within {:?}", cfg.start_timeout),
            })
        }
        Err(e) => return Err(e.into()),
    }
    if !cfg.until_interrupt {
        // Interrupts and timers run while QEMU steps; crane86 replays what QEMU takes.
        qemu.rsp.step_flags(1)?;
    }
    let mut m = Machine::new(&MachineConfig {
        ram_bytes: cfg.qemu.mem_mib << 20,
        tier: Tier::Interp,
        code_arena_bytes: 1 << 20,
        board: Board::Pc,
        ..MachineConfig::default()
    })?;
    m.debug.hold_interrupts = true;
    m.debug.halt_stops = true;
    crate::sync::clone_from_qemu(&mut qemu, &mut m)?;
    writeln!(
        out,
        "difftest: crane86 copied QEMU's machine at {:#x} ({} MiB of RAM); comparing{}",
        cfg.start,
        cfg.qemu.mem_mib,
        if cfg.until_interrupt {
            " until the first interrupt"
        } else {
            ""
        }
    )?;
    let prev_q = Some(qemu.state(scope_of(&m.cpu, cfg.fpu))?);
    let last_system = system_snapshot(&m.cpu);
    let mut l = Lockstep {
        cfg,
        out,
        o: Outcome {
            steps: 0,
            divergences: 0,
            explained: BTreeMap::new(),
            end: End::Limit,
        },
        history: VecDeque::with_capacity(cfg.history + 1),
        last_selectors: Vec::new(),
        prev_q,
        last_system,
        qemu,
        m,
    };
    while l.o.steps < cfg.max_steps {
        if let Some(end) = l.step()? {
            l.o.end = end;
            break;
        }
    }
    report::summary(l.out, &l.o, &l.qemu, &l.m)?;
    Ok(l.o)
}

/// One comparison in progress.
struct Lockstep<'a> {
    cfg: &'a LockstepConfig,
    out: &'a mut dyn Write,
    o: Outcome,
    history: VecDeque<Executed>,
    /// QEMU's selectors after the last step (a change calls for a system-state check).
    last_selectors: Vec<Option<u128>>,
    /// QEMU's state after the last step (a step that changes nothing executed nothing).
    prev_q: Option<ArchState>,
    last_system: SystemSnapshot,
    qemu: Qemu,
    m: Machine,
}

/// What one QEMU step did.
enum QemuStep {
    /// It stopped after an instruction or a delivery, in this state.
    Stopped(ArchState),
    /// The guest ended QEMU (isa-debug-exit) with this status.
    Exited(u8),
    /// A HLT did not come back: nothing happens without an asynchronous event.
    Halted,
    /// Steps do not move QEMU: see [`Lockstep::unstick_qemu`].
    Stuck,
}

impl Lockstep<'_> {
    /// One step of both machines and the comparison; `Some` ends the run.
    fn step(&mut self) -> Result<Option<End>, LockstepError> {
        let scope = scope_of(&self.m.cpu, self.cfg.fpu);
        if self.cfg.until_interrupt && self.m.interrupt_pending() {
            return Ok(Some(End::Asynchronous(
                "crane86's interrupt controllers have an enabled interrupt for the CPU".into(),
            )));
        }
        let next = next_instruction(&mut self.m.cpu, &mut self.m.mem);
        let insn = next.as_ref().map(|n| n.0);
        let is_hlt = insn.is_some_and(|i| i.mnemonic() == Mnemonic::Hlt);
        if self.cfg.until_interrupt && is_hlt {
            return Ok(Some(End::Halted));
        }
        let (q, stuck) = match self.step_qemu(scope, is_hlt)? {
            QemuStep::Stopped(q) => (q, false),
            QemuStep::Stuck => (self.qemu.state(scope)?, true),
            QemuStep::Halted => return Ok(Some(End::Halted)),
            QemuStep::Exited(code) => {
                self.o.steps += 1;
                return self.both_exited(code).map(Some);
            }
        };
        self.o.steps += 1;
        if let Some((i, bytes, linear)) = &next {
            self.history.push_back(Executed {
                step: self.o.steps,
                linear: *linear,
                bytes: bytes.clone(),
                text: disassemble(i),
            });
            if self.history.len() > self.cfg.history {
                self.history.pop_front();
            }
        }
        self.prev_q = Some(q.clone());
        // QEMU took an interrupt instead of (or, after HLT, right after) the instruction?
        let suspicious = match insn {
            Some(i) => {
                i.flow_control() != FlowControl::Next
                    || q.get("rip").map(|r| r as u64) != Some(i.next_ip() & rip_mask(&self.m.cpu))
            }
            None => true,
        };
        if suspicious && !stuck {
            let (m, qemu) = (&mut self.m, &mut self.qemu);
            if let Some(v) = interrupt_taken(qemu, &mut m.cpu, &mut m.mem, &q, insn.as_ref())? {
                if self.cfg.until_interrupt {
                    self.o.steps -= 1;
                    return Ok(Some(End::Asynchronous(format!(
                        "QEMU took interrupt vector {v}"
                    ))));
                }
                if is_hlt {
                    self.m.step()?;
                }
                if let Some(end) = self.m.inject_interrupt(v) {
                    return Ok(Some(End::Stopped(format!(
                        "crane86 could not take interrupt {v}: {end:?}"
                    ))));
                }
                *self.o.explained.entry("interrupts-replayed").or_default() += 1;
                return self.compare(q, next.as_ref(), 0, false, true);
            }
        }
        self.m
            .cpu
            .exit_request
            .fetch_and(!EXIT_DEVICE, Ordering::AcqRel);
        let exceptions = self.m.stats.exceptions;
        let old_tr = self.m.cpu.tr;
        let writes = match (self.cfg.memory, &insn) {
            (true, Some(i)) => memory::written(i, &self.m.cpu),
            _ => Vec::new(),
        };
        match self.m.step()? {
            RunEnd::Limit => {}
            RunEnd::Halted if is_hlt => {}
            other => {
                self.o.divergences += 1;
                return Ok(Some(End::Stopped(format!(
                    "crane86's run ended with {other:?} while QEMU goes on"
                ))));
            }
        }
        let mut touched_device = self.m.cpu.exit_request.load(Ordering::Acquire) & EXIT_DEVICE != 0;
        let mut next = next;
        let mut insn = insn;
        // QEMU 7.2's PAUSE leaves the CPU loop without the single-step trap, so its step
        // runs the next instruction too: crane86 follows with one more.
        let q_rip = q.get("rip").map(|r| r as u64);
        if insn.is_some_and(|i| i.mnemonic() == Mnemonic::Pause) && q_rip != Some(self.m.cpu.rip) {
            let second = next_instruction(&mut self.m.cpu, &mut self.m.mem);
            if second
                .as_ref()
                .map(|s| s.0.next_ip() & rip_mask(&self.m.cpu))
                == q_rip
            {
                self.m
                    .cpu
                    .exit_request
                    .fetch_and(!EXIT_DEVICE, Ordering::AcqRel);
                if self.m.step()? != RunEnd::Limit {
                    return Ok(Some(End::Stopped("crane86's run ended after PAUSE".into())));
                }
                touched_device = self.m.cpu.exit_request.load(Ordering::Acquire) & EXIT_DEVICE != 0;
                insn = second.as_ref().map(|s| s.0);
                next = second;
                *self
                    .o
                    .explained
                    .entry("qemu-pause-double-steps")
                    .or_default() += 1;
            }
        }
        let q = if stuck {
            match self.unstick_qemu(scope)? {
                Ok(q) => q,
                Err(end) => return Ok(Some(end)),
            }
        } else {
            q
        };
        self.prev_q = Some(q.clone());
        let mut memory_differences = Vec::new();
        if self.m.stats.exceptions == exceptions {
            for (at, len) in writes {
                let explained = insn.as_ref();
                if let Some(what) = self.check_written(at, len, explained, touched_device)? {
                    memory_differences.push(what);
                }
            }
        } else {
            if let Some(what) = self.check_frame(&q)? {
                memory_differences.push(what);
            }
            if let Some(what) = self.check_task_gate_rf(old_tr)? {
                memory_differences.push(what);
            }
        }
        for what in memory_differences {
            if let Some(end) = self.memory_divergence(&what, next.as_ref(), &q)? {
                return Ok(Some(end));
            }
        }
        let undefined = insn.map_or(0, |i| {
            crate::state::eflags_of_iced(crate::random::gen::undefined_of(&i))
        });
        self.compare(q, next.as_ref(), undefined, touched_device, false)
    }

    /// Steps QEMU once, stepping again when it answered without executing anything (its
    /// vCPU loop sometimes leaves early; the state then is the one it started from).
    fn step_qemu(&mut self, scope: Scope, is_hlt: bool) -> Result<QemuStep, LockstepError> {
        let timeout = Duration::from_secs(if is_hlt { 30 } else { 10 });
        for _ in 0..8 {
            match self.qemu.rsp.step(timeout) {
                Ok(StopReply::Signal(5)) => {}
                Ok(StopReply::Exited(code) | StopReply::Terminated(code)) => {
                    return Ok(QemuStep::Exited(code))
                }
                Ok(other) => {
                    return Err(RspError::Reply {
                        request: "s".into(),
                        reply: format!("{other:?}"),
                    }
                    .into())
                }
                // isa-debug-exit ends QEMU without a stop reply.
                Err(RspError::Closed) => match self.qemu.exit_status() {
                    Some(code) => return Ok(QemuStep::Exited(code as u8)),
                    None => return Err(RspError::Closed.into()),
                },
                Err(RspError::Timeout(..)) if is_hlt => return Ok(QemuStep::Halted),
                Err(e) => return Err(e.into()),
            }
            let q = self.qemu.state(scope)?;
            if self.prev_q.as_ref() != Some(&q) {
                return Ok(QemuStep::Stopped(q));
            }
            *self.o.explained.entry("qemu-empty-steps").or_default() += 1;
        }
        // Nine steps without a change: a jump to itself, or a QEMU step that never
        // completes (QEMU 7.2 single-steps a MOV to CR4 that must #GP forever).
        Ok(QemuStep::Stuck)
    }

    /// QEMU could not single-step the instruction: let it run to where crane86's step
    /// went (a breakpoint there) and compare that. A jump to itself just compares.
    fn unstick_qemu(&mut self, scope: Scope) -> Result<Result<ArchState, End>, LockstepError> {
        let cs_base = self.m.cpu.seg(crane86_runtime::SegReg::Cs).base;
        let target = cs_base.wrapping_add(self.m.cpu.rip) & rip_mask(&self.m.cpu);
        let now = self.qemu.state(scope)?;
        if now.get("rip").map(|r| r as u64) == Some(self.m.cpu.rip) {
            return Ok(Ok(now));
        }
        *self.o.explained.entry("qemu-stuck-steps").or_default() += 1;
        match self.qemu.run_to(target, Duration::from_secs(10)) {
            Ok(StopReply::Signal(_)) => {}
            Err(QemuError::Rsp(RspError::Timeout(..))) => {
                let at = now.get("rip").unwrap_or(0);
                return Ok(Err(End::Stopped(format!(
                    "QEMU does not get past the instruction at {at:#x} under its gdbstub, \
                     single-stepping or running to {target:#x}, where crane86 went \
                     (a QEMU problem; nothing more can be compared)"
                ))));
            }
            Ok(other) => {
                return Err(RspError::Reply {
                    request: "c".into(),
                    reply: format!("{other:?}"),
                }
                .into())
            }
            Err(e) => return Err(e.into()),
        }
        Ok(Ok(self.qemu.state(scope)?))
    }

    /// Reports a difference in memory (`what`) as a divergence; `Some` ends the run.
    fn memory_divergence(
        &mut self,
        what: &str,
        next: Option<&(Instruction, Vec<u8>, u64)>,
        q: &ArchState,
    ) -> Result<Option<End>, LockstepError> {
        let c = ArchState::of_crane86(&self.m.cpu, scope_of(&self.m.cpu, self.cfg.fpu));
        report::report(self.out, &self.o, next, q, &c, &[], &self.history)?;
        writeln!(self.out, "  {what}")?;
        self.o.divergences += 1;
        Ok((self.o.divergences >= self.cfg.max_divergences).then_some(End::Diverged))
    }

    /// `--memory`: the `len` bytes the instruction wrote at `at` must be equal; when the
    /// instruction's values are explained (device input...), crane86 takes QEMU's.
    fn check_written(
        &mut self,
        at: u64,
        len: usize,
        insn: Option<&Instruction>,
        touched_device: bool,
    ) -> Result<Option<String>, LockstepError> {
        let theirs = match self.qemu.rsp.read_memory(at, len) {
            Ok(b) => b,
            Err(RspError::Reply { .. }) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let Some(ours) = memory::read(&mut self.m.cpu, &mut self.m.mem, at, len) else {
            return Ok(None);
        };
        if ours == theirs {
            return Ok(None);
        }
        if let Some(kind) = insn.and_then(|i| explanation(i, touched_device)) {
            memory::write(&mut self.m.cpu, &mut self.m.mem, at, &theirs);
            *self.o.explained.entry(kind).or_default() += 1;
            return Ok(None);
        }
        Ok(Some(format!(
            "memory written at {at:#x}: qemu {} crane86 {}",
            crate::rsp::hex(&theirs),
            crate::rsp::hex(&ours)
        )))
    }

    /// After crane86 delivered an exception: its frame must equal QEMU's, except for RF in
    /// the pushed RFLAGS, which QEMU 7.2 leaves clear where CPUs set it (fault-class
    /// exceptions); crane86 then takes QEMU's frame. `Some` describes a frame difference.
    fn check_frame(&mut self, q: &ArchState) -> Result<Option<String>, LockstepError> {
        let width = match self.m.cpu.mode {
            CpuMode::Long64 => 48,
            CpuMode::Prot32 => 24,
            _ => 6,
        };
        let Some(rsp) = q.get("rsp") else {
            return Ok(None);
        };
        let ss = self.m.cpu.seg(crane86_runtime::SegReg::Ss).base;
        let mut at = ss.wrapping_add(rsp as u64);
        if self.m.cpu.mode != CpuMode::Long64 {
            at &= 0xffff_ffff;
        }
        let theirs = match self.qemu.rsp.read_memory(at, width) {
            Ok(b) => b,
            Err(RspError::Reply { .. }) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let mut ours = Vec::with_capacity(width);
        for i in 0..width as u64 {
            let (cpu, mem) = (&mut self.m.cpu, &mut self.m.mem);
            match crane86_runtime::memory::read_linear(cpu, mem, at + i, 1) {
                Ok(b) => ours.push(b as u8),
                Err(_) => return Ok(None),
            }
        }
        if ours == theirs {
            return Ok(None);
        }
        // QEMU 7.2 in 64-bit mode builds the error code of a fault on an IDT gate from
        // the gate's byte offset (vector * 16 + 2); the SDM's is vector * 8 + 2 (bits 15:3
        // hold the vector).
        let word = |b: &[u8]| u64::from_le_bytes(b[..8].try_into().unwrap_or([0; 8]));
        let (mine, qemus) = (word(&ours), word(&theirs));
        let idt_code = self.m.cpu.mode == CpuMode::Long64
            && mine & 2 != 0
            && mine >> 16 == 0
            && qemus == ((mine >> 3) << 4) | (mine & 7);
        if idt_code {
            *self
                .o
                .explained
                .entry("qemu-64bit-idt-error-code")
                .or_default() += 1;
        }
        let only_known = ours.iter().zip(&theirs).enumerate().all(|(i, (a, b))| {
            a == b || (idt_code && i < 8) || (i % 4 == 2 && a ^ b == 1 && a & 1 == 1)
        });
        if !only_known {
            return Ok(Some(format!(
                "exception frame at {at:#x}: qemu {} crane86 {}",
                crate::rsp::hex(&theirs),
                crate::rsp::hex(&ours)
            )));
        }
        for (i, b) in theirs.iter().enumerate() {
            let (cpu, mem) = (&mut self.m.cpu, &mut self.m.mem);
            let _ =
                crane86_runtime::memory::write_linear(cpu, mem, at + i as u64, 1, u64::from(*b));
        }
        *self.o.explained.entry("qemu-fault-frame-rf").or_default() += 1;
        Ok(None)
    }

    /// After crane86 delivered an exception through a task gate (TR changed): the EFLAGS
    /// saved in the old 32-bit TSS must equal QEMU's, except for RF, which crane86 sets for
    /// fault-class exceptions there as in a stack frame and QEMU 7.2 leaves as it was (the
    /// same difference as in [`Self::check_frame`]); crane86 then takes QEMU's value.
    fn check_task_gate_rf(
        &mut self,
        old_tr: crane86_runtime::Segment,
    ) -> Result<Option<String>, LockstepError> {
        const RF: u64 = 1 << 16;
        if self.m.cpu.tr.selector == old_tr.selector || old_tr.attrs & 8 == 0 {
            return Ok(None);
        }
        let at = old_tr.base.wrapping_add(0x24) & 0xffff_ffff;
        let theirs = match self.qemu.rsp.read_memory(at, 4) {
            Ok(b) => u64::from(u32::from_le_bytes(b[..4].try_into().unwrap_or([0; 4]))),
            Err(RspError::Reply { .. }) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let (cpu, mem) = (&mut self.m.cpu, &mut self.m.mem);
        let Ok(ours) = crane86_runtime::memory::read_linear(cpu, mem, at, 4) else {
            return Ok(None);
        };
        if ours == theirs {
            return Ok(None);
        }
        if ours ^ theirs != RF || ours & RF == 0 {
            return Ok(Some(format!(
                "EFLAGS saved in the old TSS at {at:#x}: qemu {theirs:#x} crane86 {ours:#x}"
            )));
        }
        let _ = crane86_runtime::memory::write_linear(cpu, mem, at, 4, theirs);
        *self.o.explained.entry("qemu-fault-frame-rf").or_default() += 1;
        Ok(None)
    }

    /// QEMU's guest ended with `code`: crane86's must end the same way at this step.
    fn both_exited(&mut self, code: u8) -> Result<End, LockstepError> {
        let end = match self.m.step()? {
            RunEnd::DebugExit(v) if (v << 1 | 1) & 0xff == u32::from(code) => End::Exited(v),
            other => {
                self.o.divergences += 1;
                End::Stopped(format!(
                    "QEMU's guest ended (status {code}); crane86's step ended with {other:?}"
                ))
            }
        };
        Ok(end)
    }

    /// Compares QEMU's state `q` with crane86's after the step, adopting what is explained;
    /// `Some` ends the run (the divergence limit).
    fn compare(
        &mut self,
        mut q: ArchState,
        next: Option<&(Instruction, Vec<u8>, u64)>,
        undefined: u64,
        touched_device: bool,
        injected: bool,
    ) -> Result<Option<End>, LockstepError> {
        // The hidden segment state only `info registers` shows, when it may have changed:
        // crane86 changed its own, QEMU loaded a selector, or every few thousand steps.
        let selectors: Vec<Option<u128>> = ["es", "cs", "ss", "ds", "fs", "gs"]
            .iter()
            .map(|n| q.get(n))
            .collect();
        let mut checkpoint = injected
            || selectors != self.last_selectors
            || self.o.steps.is_multiple_of(CHECKPOINT_EVERY);
        self.last_selectors = selectors;
        checkpoint |= note_system(&self.m.cpu, &mut self.last_system);
        if checkpoint {
            q.add_system(&crate::sync::system_regs(&mut self.qemu)?);
        }
        let fpu = self.cfg.fpu;
        let c = ArchState::of_crane86(&self.m.cpu, scope_of(&self.m.cpu, fpu));
        let differ = q.differences(&c, undefined);
        if undefined != 0 && q.get("eflags") != c.get("eflags") {
            adopt_registers_flags(&mut self.m.cpu, &q, undefined);
            *self.o.explained.entry("undefined-flags").or_default() += 1;
        }
        if differ.is_empty() {
            return Ok(None);
        }
        let insn = next.map(|n| &n.0);
        let explained = insn
            .and_then(|i| explanation(i, touched_device))
            .or_else(|| insn.and_then(|i| known_qemu_deviation(i, &differ)));
        if let Some(kind) = explained.filter(|_| !injected) {
            tracing::debug!(
                step = self.o.steps,
                kind,
                differ = ?differ.iter().map(|(q, c)| (q.name, q.value, c.value)).collect::<Vec<_>>(),
                "explained difference"
            );
            adopt_registers(&mut self.m.cpu, &q, u64::MAX);
            *self.o.explained.entry(kind).or_default() += 1;
            let c = ArchState::of_crane86(&self.m.cpu, scope_of(&self.m.cpu, fpu));
            if q.differences(&c, 0).is_empty() {
                return Ok(None);
            }
        }
        report::report(self.out, &self.o, next, &q, &c, &differ, &self.history)?;
        self.o.divergences += 1;
        if self.o.divergences >= self.cfg.max_divergences {
            return Ok(Some(End::Diverged));
        }
        adopt_registers(&mut self.m.cpu, &q, u64::MAX);
        Ok(None)
    }
}

/// Steps between comparisons of the state only `info registers` shows, when nothing
/// suggests it changed.
const CHECKPOINT_EVERY: u64 = 4096;

/// crane86's segment and descriptor-table state, to notice when a step changed it.
type SystemSnapshot = (
    [crane86_runtime::Segment; 6],
    crane86_runtime::Segment,
    crane86_runtime::Segment,
    crane86_runtime::DescriptorTable,
    crane86_runtime::DescriptorTable,
);

fn system_snapshot(cpu: &CpuState) -> SystemSnapshot {
    (cpu.seg, cpu.ldtr, cpu.tr, cpu.gdtr, cpu.idtr)
}

/// Records crane86's system state; true when it changed since the last call.
fn note_system(cpu: &CpuState, last: &mut SystemSnapshot) -> bool {
    let now = system_snapshot(cpu);
    let changed = now != *last;
    *last = now;
    changed
}

fn rip_mask(cpu: &CpuState) -> u64 {
    if cpu.mode == CpuMode::Long64 {
        u64::MAX
    } else {
        0xffff_ffff
    }
}
