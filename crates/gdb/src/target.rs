//! The gdbstub target: a [`Machine`] stopped or running under GDB's control.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use gdbstub::common::Signal;
use gdbstub::conn::ConnectionExt;
use gdbstub::stub::run_blocking::{self, BlockingEventLoop};
use gdbstub::stub::SingleThreadStopReason;
use gdbstub::target::ext::base::singlethread::{
    SingleThreadBase, SingleThreadResume, SingleThreadResumeOps, SingleThreadSingleStep,
    SingleThreadSingleStepOps,
};
use gdbstub::target::ext::base::BaseOps;
use gdbstub::target::ext::breakpoints::{
    Breakpoints, BreakpointsOps, HwBreakpoint, HwBreakpointOps, HwWatchpoint, HwWatchpointOps,
    SwBreakpoint, SwBreakpointOps, WatchKind,
};
use gdbstub::target::ext::monitor_cmd::MonitorCmdOps;
use gdbstub::target::{Target, TargetError, TargetResult};

use crane86_machine::{Machine, MachineError, RunEnd};
use crane86_runtime::{CpuMode, SegReg};

use crate::mem::{self, AddrSpace};
use crate::regs::{self, Regs, X86_64Crane86};
use crate::watch::{self, Watchpoint};

/// Instructions per run slice while GDB waits for a stop: between slices the stub looks
/// for a Ctrl-C from GDB. About a millisecond of compiled code, 25 ms interpreted.
const RUN_SLICE: u64 = 1 << 20;

/// Interpreted steps between two looks at the connection while watchpoints are set.
const WATCH_SLICE: u32 = 1 << 12;

/// Stop reasons as this target reports them.
pub type StopReason = SingleThreadStopReason<u64>;

/// What GDB last asked the target to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Resume {
    Continue,
    Step,
}

/// A machine under a debugger, with the debugger's breakpoints and watchpoints.
pub struct Debugger<'m> {
    /// The machine.
    pub(crate) m: &'m mut Machine,
    /// How memory addresses from GDB are read (`monitor phys`).
    pub(crate) space: AddrSpace,
    /// Breakpoints GDB set, per address: (software, hardware) counts. The machine's own
    /// set holds every address with a non-zero count.
    breaks: BTreeMap<u64, (u32, u32)>,
    watchpoints: Vec<Watchpoint>,
    resume: Option<Resume>,
    /// The instruction at RIP runs before breakpoints are looked at again: the run was
    /// stopped at a breakpoint and GDB continues from there.
    step_over: bool,
    /// Instructions left of `--max-insns`.
    remaining: Option<u64>,
    /// The guest stopped for good (a triple fault...): GDB has been told with a signal and
    /// may look around; resuming ends the session.
    fatal: Option<RunEnd>,
    /// How the guest's run ended, once it has.
    pub(crate) ended: Option<RunEnd>,
    /// Raised by the session's [`crate::wake::Waker`] when it stopped the run.
    fired: Option<Arc<AtomicBool>>,
}

impl<'m> Debugger<'m> {
    /// A debugger for `m`, whose run may retire `remaining` more instructions.
    pub fn new(m: &'m mut Machine, remaining: Option<u64>) -> Debugger<'m> {
        Debugger {
            m,
            space: AddrSpace::Linear,
            breaks: BTreeMap::new(),
            watchpoints: Vec::new(),
            resume: None,
            step_over: false,
            remaining,
            fatal: None,
            ended: None,
            fired: None,
        }
    }

    /// Lets runs ended by `fired` (see [`crate::wake`]) count as interruptions.
    pub fn set_waker_flag(&mut self, fired: Arc<AtomicBool>) {
        self.fired = Some(fired);
    }

    /// True when `end` is a stop the waker asked for (GDB sent something), not the
    /// guest's or the user's.
    fn interrupted(&self, end: &Result<RunEnd, MachineError>) -> bool {
        matches!(end, Ok(RunEnd::Stopped))
            && self
                .fired
                .as_ref()
                .is_some_and(|f| f.swap(false, Ordering::AcqRel))
    }

    /// [`Machine::step`] with interrupts held, as QEMU's gdbstub holds them while it
    /// steps (a pending one is taken by the next run, or let in between the watchpoint
    /// loop's steps); again when the waker's stop ended it before it ran.
    fn step_machine(&mut self) -> Result<RunEnd, MachineError> {
        let hold = std::mem::replace(&mut self.m.debug.hold_interrupts, true);
        let end = loop {
            let end = self.m.step();
            if !self.interrupted(&end) {
                break end;
            }
        };
        self.m.debug.hold_interrupts = hold;
        end
    }

    /// Instructions left of the run's limit.
    pub fn remaining(&self) -> Option<u64> {
        self.remaining
    }

    /// The linear address of the next instruction.
    fn pc_linear(&self) -> u64 {
        let cpu = &self.m.cpu;
        let l = cpu.seg[SegReg::Cs as usize].base.wrapping_add(cpu.rip);
        if cpu.mode == CpuMode::Long64 {
            l
        } else {
            l & 0xffff_ffff
        }
    }

    fn count(&mut self, retired_before: u64) {
        let n = self.m.cpu.retired.wrapping_sub(retired_before);
        if let Some(r) = self.remaining.as_mut() {
            *r = r.saturating_sub(n);
        }
    }

    /// How a run that ended with `end` is reported; records that the guest is done.
    fn finish(&mut self, end: RunEnd) -> StopReason {
        match end {
            RunEnd::DebugExit(v) => {
                self.ended = Some(end);
                StopReason::Exited(((v << 1) | 1) as u8)
            }
            RunEnd::Halted | RunEnd::PowerOff => {
                self.ended = Some(end);
                StopReason::Exited(0)
            }
            RunEnd::Limit => {
                self.ended = Some(end);
                StopReason::Terminated(Signal::SIGXCPU)
            }
            RunEnd::Stopped => {
                self.ended = Some(end);
                StopReason::Terminated(Signal::SIGTERM)
            }
            RunEnd::Breakpoint(addr) => self.breakpoint_stop(addr),
            RunEnd::Fault { .. }
            | RunEnd::TripleFault { .. }
            | RunEnd::Reset
            | RunEnd::Unsupported { .. } => {
                tracing::info!(?end, "the guest stopped; resuming ends the run");
                self.fatal = Some(end);
                StopReason::Signal(Signal::SIGSEGV)
            }
        }
    }

    fn breakpoint_stop(&self, addr: u64) -> StopReason {
        match self.breaks.get(&addr) {
            Some(&(0, _)) => StopReason::HwBreak(()),
            _ => StopReason::SwBreak(()),
        }
    }

    /// GDB's single step: one instruction (or one exception delivered).
    fn step_once(&mut self) -> Result<StopReason, MachineError> {
        if let Some(end) = self.fatal {
            return Ok(self.finish_fatal(end));
        }
        let before = self.m.cpu.retired;
        let end = self.step_machine();
        self.count(before);
        Ok(match end? {
            RunEnd::Limit if self.remaining == Some(0) => self.finish(RunEnd::Limit),
            RunEnd::Limit => StopReason::DoneStep,
            end => self.finish(end),
        })
    }

    fn finish_fatal(&mut self, end: RunEnd) -> StopReason {
        self.ended = Some(end);
        StopReason::Terminated(Signal::SIGSEGV)
    }

    /// Runs one slice of a continue; `Some` when the guest stopped.
    fn run_slice(&mut self) -> Result<Option<StopReason>, MachineError> {
        if let Some(end) = self.fatal {
            return Ok(Some(self.finish_fatal(end)));
        }
        if !self.watchpoints.is_empty() {
            return self.watch_slice();
        }
        let before = self.m.cpu.retired;
        if std::mem::take(&mut self.step_over) {
            // Exactly the instruction at the breakpoint: an interrupt waiting is taken right
            // after it, by the run below.
            let end = self.step_machine()?;
            self.count(before);
            if end != RunEnd::Limit {
                return Ok(Some(self.finish(end)));
            }
        }
        let slice = self.remaining.map_or(RUN_SLICE, |r| r.min(RUN_SLICE));
        if slice == 0 {
            return Ok(Some(self.finish(RunEnd::Limit)));
        }
        let before = self.m.cpu.retired;
        let end = self.m.run(Some(slice));
        self.count(before);
        if self.interrupted(&end) {
            // Back to the event loop, which reads what GDB sent.
            return Ok(None);
        }
        Ok(match end? {
            RunEnd::Limit => None,
            end => Some(self.finish(end)),
        })
    }

    /// A slice of a continue with watchpoints: interpreted steps, each checked.
    fn watch_slice(&mut self) -> Result<Option<StopReason>, MachineError> {
        for _ in 0..WATCH_SLICE {
            if self.remaining == Some(0) {
                return Ok(Some(self.finish(RunEnd::Limit)));
            }
            if let Some(end) = self.m.deliver_pending_interrupt() {
                return Ok(Some(self.finish(end)));
            }
            let pc = self.pc_linear();
            if !std::mem::take(&mut self.step_over) && self.m.breakpoints.contains(pc) {
                return Ok(Some(self.breakpoint_stop(pc)));
            }
            let accesses = watch::next_accesses(self.m);
            let (before, exceptions) = (self.m.cpu.retired, self.m.stats.exceptions);
            let end = self.step_machine();
            self.count(before);
            match end? {
                RunEnd::Limit => {}
                end => return Ok(Some(self.finish(end))),
            }
            let retired = self.m.cpu.retired == before + 1;
            if retired && self.m.stats.exceptions == exceptions {
                if let Some((kind, addr)) = watch::hit(&self.watchpoints, &accesses) {
                    return Ok(Some(StopReason::Watch {
                        tid: (),
                        kind,
                        addr,
                    }));
                }
            }
        }
        Ok(None)
    }

    fn add_break(&mut self, addr: u64, hw: bool) -> bool {
        let e = self.breaks.entry(addr).or_default();
        if hw {
            e.1 += 1;
        } else {
            e.0 += 1;
        }
        self.m.breakpoints.insert(addr);
        true
    }

    fn remove_break(&mut self, addr: u64, hw: bool) -> bool {
        let Some(e) = self.breaks.get_mut(&addr) else {
            return false;
        };
        let n = if hw { &mut e.1 } else { &mut e.0 };
        if *n == 0 {
            return false;
        }
        *n -= 1;
        if *e == (0, 0) {
            self.breaks.remove(&addr);
            self.m.breakpoints.remove(addr);
        }
        true
    }

    /// Forgets every breakpoint and watchpoint (GDB detached).
    pub fn clear(&mut self) {
        self.breaks.clear();
        self.watchpoints.clear();
        self.m.breakpoints.clear();
    }
}

impl Target for Debugger<'_> {
    type Arch = X86_64Crane86;
    type Error = MachineError;

    fn base_ops(&mut self) -> BaseOps<'_, Self::Arch, Self::Error> {
        BaseOps::SingleThread(self)
    }

    fn support_breakpoints(&mut self) -> Option<BreakpointsOps<'_, Self>> {
        Some(self)
    }

    fn support_monitor_cmd(&mut self) -> Option<MonitorCmdOps<'_, Self>> {
        Some(self)
    }
}

impl SingleThreadBase for Debugger<'_> {
    fn read_registers(&mut self, out: &mut Regs) -> TargetResult<(), Self> {
        *out = regs::read(&self.m.cpu);
        Ok(())
    }

    fn write_registers(&mut self, new: &Regs) -> TargetResult<(), Self> {
        let old = regs::read(&self.m.cpu);
        regs::write(&mut self.m.cpu, &mut self.m.mem, &old, new).map_err(|e| {
            tracing::warn!(reason = e.0, "register write refused");
            TargetError::NonFatal
        })
    }

    fn read_addrs(&mut self, start: u64, data: &mut [u8]) -> TargetResult<usize, Self> {
        match mem::read(self.m, self.space, start, data) {
            0 if !data.is_empty() => Err(TargetError::NonFatal),
            n => Ok(n),
        }
    }

    fn write_addrs(&mut self, start: u64, data: &[u8]) -> TargetResult<(), Self> {
        if mem::write(self.m, self.space, start, data) {
            Ok(())
        } else {
            Err(TargetError::NonFatal)
        }
    }

    fn support_resume(&mut self) -> Option<SingleThreadResumeOps<'_, Self>> {
        Some(self)
    }
}

impl SingleThreadResume for Debugger<'_> {
    fn resume(&mut self, _signal: Option<Signal>) -> Result<(), Self::Error> {
        // Signals have no meaning for a whole machine: GDB passes back the one it was told
        // (SIGTRAP, SIGINT) and it is dropped, as QEMU drops it.
        self.resume = Some(Resume::Continue);
        self.step_over = self.m.breakpoints.contains(self.pc_linear());
        Ok(())
    }

    fn support_single_step(&mut self) -> Option<SingleThreadSingleStepOps<'_, Self>> {
        Some(self)
    }
}

impl SingleThreadSingleStep for Debugger<'_> {
    fn step(&mut self, _signal: Option<Signal>) -> Result<(), Self::Error> {
        self.resume = Some(Resume::Step);
        Ok(())
    }
}

impl Breakpoints for Debugger<'_> {
    fn support_sw_breakpoint(&mut self) -> Option<SwBreakpointOps<'_, Self>> {
        Some(self)
    }

    fn support_hw_breakpoint(&mut self) -> Option<HwBreakpointOps<'_, Self>> {
        Some(self)
    }

    fn support_hw_watchpoint(&mut self) -> Option<HwWatchpointOps<'_, Self>> {
        Some(self)
    }
}

impl SwBreakpoint for Debugger<'_> {
    fn add_sw_breakpoint(&mut self, addr: u64, _kind: usize) -> TargetResult<bool, Self> {
        Ok(self.add_break(addr, false))
    }

    fn remove_sw_breakpoint(&mut self, addr: u64, _kind: usize) -> TargetResult<bool, Self> {
        Ok(self.remove_break(addr, false))
    }
}

impl HwBreakpoint for Debugger<'_> {
    fn add_hw_breakpoint(&mut self, addr: u64, _kind: usize) -> TargetResult<bool, Self> {
        Ok(self.add_break(addr, true))
    }

    fn remove_hw_breakpoint(&mut self, addr: u64, _kind: usize) -> TargetResult<bool, Self> {
        Ok(self.remove_break(addr, true))
    }
}

impl HwWatchpoint for Debugger<'_> {
    fn add_hw_watchpoint(
        &mut self,
        addr: u64,
        len: u64,
        kind: WatchKind,
    ) -> TargetResult<bool, Self> {
        self.watchpoints.push(Watchpoint {
            addr,
            len: len.max(1),
            kind,
        });
        Ok(true)
    }

    fn remove_hw_watchpoint(
        &mut self,
        addr: u64,
        len: u64,
        kind: WatchKind,
    ) -> TargetResult<bool, Self> {
        let w = Watchpoint {
            addr,
            len: len.max(1),
            kind,
        };
        match self.watchpoints.iter().position(|x| *x == w) {
            Some(i) => {
                self.watchpoints.remove(i);
                Ok(true)
            }
            None => Ok(false),
        }
    }
}

/// The event loop of a session: runs the guest in slices and looks at the connection in
/// between, so a Ctrl-C from GDB stops it.
pub struct EventLoop<'m>(std::marker::PhantomData<&'m mut Machine>);

impl<'m> BlockingEventLoop for EventLoop<'m> {
    type Target = Debugger<'m>;
    type Connection = std::net::TcpStream;
    type StopReason = StopReason;

    fn wait_for_stop_reason(
        target: &mut Self::Target,
        conn: &mut Self::Connection,
    ) -> Result<
        run_blocking::Event<StopReason>,
        run_blocking::WaitForStopReasonError<MachineError, std::io::Error>,
    > {
        use run_blocking::{Event, WaitForStopReasonError as E};
        loop {
            let stop = match target.resume {
                Some(Resume::Step) => Some(target.step_once().map_err(E::Target)?),
                Some(Resume::Continue) => target.run_slice().map_err(E::Target)?,
                // Nothing to run: wait for GDB.
                None => None,
            };
            if let Some(stop) = stop {
                target.resume = None;
                return Ok(Event::TargetStopped(stop));
            }
            let byte = if target.resume.is_none() {
                Some(conn.read().map_err(E::Connection)?)
            } else {
                conn.peek().map_err(E::Connection)?
            };
            if let Some(b) = byte {
                return Ok(Event::IncomingData(b));
            }
        }
    }

    fn on_interrupt(target: &mut Self::Target) -> Result<Option<StopReason>, MachineError> {
        target.resume = None;
        Ok(Some(StopReason::Signal(Signal::SIGINT)))
    }
}
