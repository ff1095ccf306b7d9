//! `crane86 difftest qemu`: both machines one instruction at a time, compared after every
//! step (see the crate documentation for the method).

use std::collections::{BTreeMap, VecDeque};
use std::io::Write;
use std::time::Duration;

use crane86_machine::{Board, Machine, MachineConfig, RunEnd};
use crane86_runtime::state::EXIT_DEVICE;
use crane86_runtime::{memory, CpuMode, CpuState, PhysMem, SegReg};
use crane86_translator::Tier;
use iced_x86::{
    Decoder, DecoderOptions, FlowControl, Formatter, Instruction, IntelFormatter, Mnemonic,
};

use crate::qemu::{Qemu, QemuConfig, QemuError};
use crate::rsp::{RspError, StopReply};
use crate::state::{adopt_registers, scope_of, ArchState, Field};

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

/// One executed instruction, for the history shown at a divergence.
#[derive(Clone, Debug)]
struct Executed {
    step: u64,
    linear: u64,
    bytes: Vec<u8>,
    text: String,
}

/// The instruction crane86 is about to execute, decoded from its memory.
fn next_instruction(cpu: &mut CpuState, mem: &mut PhysMem) -> Option<(Instruction, Vec<u8>, u64)> {
    let mut linear = cpu.seg(SegReg::Cs).base.wrapping_add(cpu.rip);
    if cpu.mode != CpuMode::Long64 {
        linear &= 0xffff_ffff;
    }
    let mut bytes = Vec::with_capacity(15);
    for i in 0..15u64 {
        let at = linear.wrapping_add(i);
        let Ok(phys) = memory::fetch_phys(cpu, mem, at) else {
            break;
        };
        bytes.push(mem.peek_phys(phys, 1) as u8);
    }
    let mut d = Decoder::with_ip(cpu.mode.bitness(), &bytes, cpu.rip, DecoderOptions::NONE);
    let insn = d.decode();
    if insn.is_invalid() {
        return None;
    }
    bytes.truncate(insn.len());
    Some((insn, bytes, linear))
}

fn disassemble(insn: &Instruction) -> String {
    let mut out = String::new();
    IntelFormatter::new().format(insn, &mut out);
    out
}

fn hex_bytes(b: &[u8]) -> String {
    b.iter()
        .map(|x| format!("{x:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// What kind of allowed difference an instruction can explain, if any.
fn explanation(insn: &Instruction, touched_device: bool) -> Option<&'static str> {
    use Mnemonic as M;
    match insn.mnemonic() {
        M::Rdtsc | M::Rdtscp | M::Rdpmc | M::Rdrand | M::Rdseed | M::Rdpid => {
            Some("time-and-randomness")
        }
        M::In | M::Insb | M::Insw | M::Insd => Some("device-input"),
        M::Cpuid | M::Rdmsr | M::Xgetbv => Some("cpu-model"),
        _ if touched_device => Some("device-input"),
        _ => None,
    }
}

/// Differences that are QEMU's, documented with their evidence in docs/design.md; crane86
/// follows the SDM there.
fn known_qemu_deviation(insn: &Instruction, differ: &[(Field, Field)]) -> Option<&'static str> {
    // QEMU 7.2's SYSCALL rebuilds EFLAGS from its EFLAGS word alone, in which the lazily
    // kept arithmetic flags are zero: OF SF ZF AF PF CF all read 0 afterwards, whatever
    // SFMASK says (SDM: RFLAGS AND NOT SFMASK).
    let arith = u128::from(crane86_runtime::flags::ARITH);
    let only_arith_cleared = |(q, c): &(Field, Field)| {
        q.name == "eflags" && (q.value ^ c.value) & !arith == 0 && q.value & arith == 0
    };
    (insn.mnemonic() == Mnemonic::Syscall && differ.iter().all(only_arith_cleared))
        .then_some("qemu-syscall-arith-flags")
}

/// The handler QEMU entered, if its new state is the entry of an external interrupt
/// (vector 32 and up, or NMI) taken in place of `insn`: the handler is that vector's in
/// the IDT (IVT) and the return address on the new stack is the interrupted instruction
/// (after HLT, the next one).
fn interrupt_taken(
    qemu: &mut Qemu,
    cpu: &mut CpuState,
    mem: &mut PhysMem,
    q: &ArchState,
    insn: Option<&Instruction>,
) -> Result<Option<u8>, QemuError> {
    let (Some(rip), Some(rsp), Some(cs)) = (q.get("rip"), q.get("rsp"), q.get("cs")) else {
        return Ok(None);
    };
    let (rip, rsp, cs) = (rip as u64, rsp as u64, cs as u16);
    let pre = cpu.rip;
    let resumes = match insn {
        Some(i) if i.mnemonic() == Mnemonic::Hlt => [pre, i.next_ip()],
        _ => [pre, pre],
    };
    let real = cpu.cr0 & 1 == 0;
    let long = cpu.efer & (1 << 10) != 0;
    let entry = if real {
        4
    } else if long {
        16
    } else {
        8
    };
    let mut vectors = Vec::new();
    for v in (32..=255u16).chain([2]) {
        let at = cpu.idtr.base + u64::from(v) * entry;
        if u64::from(v) * entry + entry - 1 > u64::from(cpu.idtr.limit) {
            continue;
        }
        let read = |cpu: &mut CpuState, mem: &mut PhysMem, a: u64, n: u32| {
            memory::read_linear(cpu, mem, a, n).ok()
        };
        let handler = if real {
            read(cpu, mem, at, 4).map(|w| ((w >> 16) as u16, w & 0xffff))
        } else {
            let (Some(lo), Some(hi)) = (read(cpu, mem, at, 4), read(cpu, mem, at + 4, 4)) else {
                continue;
            };
            let mut off = (lo & 0xffff) | (hi & 0xffff_0000);
            if long {
                off |= read(cpu, mem, at + 8, 4).unwrap_or(0) << 32;
            }
            Some(((lo >> 16) as u16, off))
        };
        if let Some((sel, off)) = handler {
            let same_cs = if real { sel == cs } else { sel & !3 == cs & !3 };
            if same_cs && off == rip {
                vectors.push(v as u8);
            }
        }
    }
    if vectors.is_empty() {
        return Ok(None);
    }
    // The return address at the top of QEMU's new stack (QEMU reads through its MMU).
    let ss_base = q.get("ss_base").unwrap_or(0) as u64;
    let width = if long {
        8
    } else if real {
        2
    } else {
        4
    };
    let top = qemu.rsp.read_memory(ss_base.wrapping_add(rsp), width)?;
    let mut v = [0u8; 8];
    v[..width].copy_from_slice(&top);
    let ret = u64::from_le_bytes(v);
    Ok(resumes.contains(&ret).then(|| vectors[0]))
}

/// Prints both states side by side, marking the fields that differ.
fn side_by_side(
    out: &mut dyn Write,
    q: &ArchState,
    c: &ArchState,
    differ: &[(Field, Field)],
) -> std::io::Result<()> {
    writeln!(out, "  {:<8} {:<34} {:<34}", "", "qemu", "crane86")?;
    for f in &q.fields {
        let Some(cv) = c.get(f.name) else { continue };
        let mark = if differ.iter().any(|(d, _)| d.name == f.name) {
            "  <<"
        } else {
            ""
        };
        writeln!(
            out,
            "  {:<8} {:<34} {:<34}{mark}",
            f.name,
            format!("{:0w$x}", f.value, w = f.digits),
            format!("{:0w$x}", cv, w = f.digits)
        )?;
    }
    Ok(())
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
    let mut o = Outcome {
        steps: 0,
        divergences: 0,
        explained: BTreeMap::new(),
        end: End::Limit,
    };
    let mut history: VecDeque<Executed> = VecDeque::with_capacity(cfg.history + 1);
    let mut last_selectors = Vec::new();
    let mut prev_q = Some(qemu.state(scope_of(&m.cpu, cfg.fpu))?);
    let mut last_system = system_snapshot(&m.cpu);
    while o.steps < cfg.max_steps {
        let scope = scope_of(&m.cpu, cfg.fpu);
        if cfg.until_interrupt && m.interrupt_pending() {
            o.end = End::Asynchronous(
                "crane86's interrupt controllers have an enabled interrupt for the CPU".into(),
            );
            break;
        }
        let next = next_instruction(&mut m.cpu, &mut m.mem);
        let insn = next.as_ref().map(|n| n.0);
        let is_hlt = insn.is_some_and(|i| i.mnemonic() == Mnemonic::Hlt);
        if cfg.until_interrupt && is_hlt {
            o.end = End::Halted;
            break;
        }
        let timeout = Duration::from_secs(if is_hlt { 30 } else { 10 });
        let qstop = match qemu.rsp.step(timeout) {
            Ok(s) => s,
            // isa-debug-exit ends QEMU without a stop reply.
            Err(RspError::Closed) => match qemu.exit_status() {
                Some(code) => StopReply::Exited(code as u8),
                None => return Err(RspError::Closed.into()),
            },
            Err(RspError::Timeout(..)) if is_hlt => {
                o.end = End::Halted;
                break;
            }
            Err(e) => return Err(e.into()),
        };
        // QEMU sometimes answers a step without having executed anything (its vCPU loop
        // left early); such a step shows the state it started from: step again.
        let mut qstop = qstop;
        let mut q_core = None;
        if qstop == StopReply::Signal(5) {
            for _ in 0..8 {
                let q = qemu.state(scope)?;
                if prev_q.as_ref() != Some(&q) {
                    q_core = Some(q);
                    break;
                }
                *o.explained.entry("qemu-empty-steps").or_default() += 1;
                qstop = match qemu.rsp.step(timeout) {
                    Ok(s) => s,
                    Err(RspError::Closed) => match qemu.exit_status() {
                        Some(code) => StopReply::Exited(code as u8),
                        None => return Err(RspError::Closed.into()),
                    },
                    Err(e) => return Err(e.into()),
                };
                if qstop != StopReply::Signal(5) {
                    break;
                }
            }
        }
        o.steps += 1;
        if let Some((i, bytes, linear)) = &next {
            history.push_back(Executed {
                step: o.steps,
                linear: *linear,
                bytes: bytes.clone(),
                text: disassemble(i),
            });
            if history.len() > cfg.history {
                history.pop_front();
            }
        }
        if let StopReply::Exited(code) | StopReply::Terminated(code) = qstop {
            let end = m.step()?;
            o.end = match end {
                RunEnd::DebugExit(v) if (v << 1 | 1) & 0xff == u32::from(code) => End::Exited(v),
                other => End::Stopped(format!(
                    "QEMU's guest ended (status {code}); crane86's step ended with {other:?}"
                )),
            };
            if !matches!(o.end, End::Exited(_)) {
                o.divergences += 1;
            }
            break;
        }
        let mut q = match q_core {
            Some(q) => q,
            None => qemu.state(scope)?,
        };
        prev_q = Some(q.clone());
        // The hidden segment state only `info registers` shows, when it may have changed:
        // crane86 changed its own, QEMU loaded a selector, or every few thousand steps.
        let selectors: Vec<Option<u128>> = ["es", "cs", "ss", "ds", "fs", "gs"]
            .iter()
            .map(|n| q.get(n))
            .collect();
        let mut checkpoint =
            selectors != last_selectors || o.steps.is_multiple_of(CHECKPOINT_EVERY);
        last_selectors = selectors;
        // QEMU took an interrupt instead of (or, after HLT, right after) the instruction?
        let suspicious = match insn {
            Some(i) => {
                i.flow_control() != FlowControl::Next
                    || q.get("rip").map(|r| r as u64) != Some(i.next_ip() & rip_mask(&m.cpu))
            }
            None => true,
        };
        let mut injected = false;
        if suspicious && !cfg.until_interrupt {
            if let Some(v) = interrupt_taken(&mut qemu, &mut m.cpu, &mut m.mem, &q, insn.as_ref())?
            {
                if is_hlt {
                    m.step()?;
                }
                if let Some(end) = m.inject_interrupt(v) {
                    o.end = End::Stopped(format!("crane86 could not take interrupt {v}: {end:?}"));
                    break;
                }
                *o.explained.entry("interrupts-replayed").or_default() += 1;
                injected = true;
            }
        }
        if suspicious && cfg.until_interrupt {
            if let Some(v) = interrupt_taken(&mut qemu, &mut m.cpu, &mut m.mem, &q, insn.as_ref())?
            {
                o.steps -= 1;
                o.end = End::Asynchronous(format!("QEMU took interrupt vector {v}"));
                break;
            }
        }
        let mut undefined = 0;
        if !injected {
            m.cpu
                .exit_request
                .fetch_and(!EXIT_DEVICE, std::sync::atomic::Ordering::AcqRel);
            let end = m.step()?;
            let touched_device = m
                .cpu
                .exit_request
                .load(std::sync::atomic::Ordering::Acquire)
                & EXIT_DEVICE
                != 0;
            match end {
                RunEnd::Limit => {}
                RunEnd::Halted if is_hlt => {}
                other => {
                    o.divergences += 1;
                    o.end = End::Stopped(format!(
                        "crane86's run ended with {other:?} while QEMU goes on"
                    ));
                    break;
                }
            }
            undefined = insn.map_or(0, |i| {
                crate::state::eflags_of_iced(crate::random::gen::undefined_of(&i))
            });
            checkpoint |= note_system(&m.cpu, &mut last_system);
            if checkpoint {
                q.add_system(&crate::sync::system_regs(&mut qemu)?);
            }
            let c = ArchState::of_crane86(&m.cpu, scope_of(&m.cpu, cfg.fpu));
            let differ = q.differences(&c, undefined);
            if undefined != 0 && q.get("eflags") != c.get("eflags") {
                adopt_registers_flags(&mut m.cpu, &q, undefined);
                *o.explained.entry("undefined-flags").or_default() += 1;
            }
            if differ.is_empty() {
                continue;
            }
            let explained = insn
                .as_ref()
                .and_then(|i| explanation(i, touched_device))
                .or_else(|| insn.as_ref().and_then(|i| known_qemu_deviation(i, &differ)));
            if let Some(kind) = explained {
                tracing::debug!(
                    step = o.steps,
                    kind,
                    differ = ?differ.iter().map(|(q, c)| (q.name, q.value, c.value)).collect::<Vec<_>>(),
                    "explained difference"
                );
                adopt_registers(&mut m.cpu, &q, u64::MAX);
                *o.explained.entry(kind).or_default() += 1;
                let c = ArchState::of_crane86(&m.cpu, scope_of(&m.cpu, cfg.fpu));
                if q.differences(&c, 0).is_empty() {
                    continue;
                }
            }
            report(out, &o, next.as_ref(), &q, &c, &differ, &history)?;
        } else {
            note_system(&m.cpu, &mut last_system);
            q.add_system(&crate::sync::system_regs(&mut qemu)?);
            let c = ArchState::of_crane86(&m.cpu, scope_of(&m.cpu, cfg.fpu));
            let differ = q.differences(&c, undefined);
            if differ.is_empty() {
                continue;
            }
            report(out, &o, next.as_ref(), &q, &c, &differ, &history)?;
        }
        o.divergences += 1;
        if o.divergences >= cfg.max_divergences {
            o.end = End::Diverged;
            break;
        }
        adopt_registers(&mut m.cpu, &q, u64::MAX);
    }
    let explained: Vec<String> = o
        .explained
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    if !explained.is_empty() {
        writeln!(
            out,
            "difftest: explained differences (crane86 took QEMU's values): {}",
            explained.join(" ")
        )?;
    }
    let qemu_serial = std::fs::read(&qemu.serial).unwrap_or_default();
    let crane_serial = m.serial_output();
    if qemu_serial == crane_serial {
        writeln!(
            out,
            "difftest: COM1 output identical ({} bytes)",
            crane_serial.len()
        )?;
    } else {
        let same = qemu_serial
            .iter()
            .zip(&crane_serial)
            .take_while(|(a, b)| a == b)
            .count();
        writeln!(
            out,
            "difftest: COM1 output differs from byte {same} (QEMU {} bytes, crane86 {})",
            qemu_serial.len(),
            crane_serial.len()
        )?;
    }
    let end = match &o.end {
        End::Limit => format!("{} steps compared (the limit)", o.steps),
        End::Exited(v) => format!("both guests exited through isa-debug-exit with value {v:#x}"),
        End::Halted => "the guest halted (HLT) with interrupts held; nothing happens without an asynchronous event".into(),
        End::Asynchronous(what) => format!("first asynchronous event: {what}"),
        End::Stopped(why) => why.clone(),
        End::Diverged => "divergence limit reached".into(),
    };
    writeln!(out, "difftest: end: {end}")?;
    writeln!(
        out,
        "difftest: steps={} divergences={}",
        o.steps, o.divergences
    )?;
    Ok(o)
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

/// Adopts only the EFLAGS bits in `bits` (an instruction's undefined flags).
fn adopt_registers_flags(cpu: &mut CpuState, q: &ArchState, bits: u64) {
    let Some(v) = q.get("eflags") else { return };
    let now = crane86_translator::interp::rflags(cpu);
    let new = (now & !bits) | (v as u64 & bits);
    cpu.cc = crane86_runtime::LazyFlags::from_eflags(new);
    cpu.rflags = (new & !crane86_runtime::flags::ARITH) | crane86_runtime::flags::FIXED1;
}

fn report(
    out: &mut dyn Write,
    o: &Outcome,
    next: Option<&(Instruction, Vec<u8>, u64)>,
    q: &ArchState,
    c: &ArchState,
    differ: &[(Field, Field)],
    history: &VecDeque<Executed>,
) -> std::io::Result<()> {
    let what = match next {
        Some((i, bytes, linear)) => {
            format!("{linear:#x}  {}  {}", hex_bytes(bytes), disassemble(i))
        }
        None => "an instruction crane86 cannot decode".into(),
    };
    writeln!(
        out,
        "divergence {} at step {}: {what}",
        o.divergences + 1,
        o.steps
    )?;
    let names: Vec<&str> = differ.iter().map(|(f, _)| f.name).collect();
    writeln!(out, "  differing: {}", names.join(" "))?;
    side_by_side(out, q, c, differ)?;
    writeln!(out, "  the last {} instructions:", history.len())?;
    for e in history {
        writeln!(
            out,
            "    step {:>9}  {:#014x}  {:<24} {}",
            e.step,
            e.linear,
            hex_bytes(&e.bytes),
            e.text
        )?;
    }
    Ok(())
}
