//! The run loop: find or translate the block at RIP, run it in its tier, handle what made it
//! stop (a fault, a store into code, HLT, a port write that ends the run), repeat.

use crane86_runtime::debug::{self, DR6_BS, DR6_BT, DR6_HITS};
use crane86_runtime::interrupt::{self, Combined, Delivery, Event, EventKind};
use crane86_runtime::memory::fetch_phys;
use crane86_runtime::phase::Phase;
use crane86_runtime::state::{Retry, EXIT_DEVICE, EXIT_STOP};
use crane86_runtime::{flags as fl, BlockKey, Exception, Fault, LazyFlags, SegReg};
use crane86_translator::interp::{self, InterpExit};
use crane86_translator::jit::EXIT_FAULT;
use crane86_translator::rewrite::InterruptEffect;

use crate::pc::Wake;
use crate::{Machine, MachineError};

/// Instructions generated code may retire before it returns to the run loop, so that the
/// loop stays responsive to requests and limits.
const SLICE: i64 = 1 << 22;

/// Why a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunEnd {
    /// The guest wrote this value to isa-debug-exit (port 0xF4).
    DebugExit(u32),
    /// The guest executed HLT with nothing to wake it.
    Halted,
    /// An exception, with [`crate::ExceptionPolicy::Stop`]: the machine stops at the
    /// first one instead of delivering it.
    Fault {
        /// The exception.
        fault: Fault,
        /// Where it happened.
        rip: u64,
    },
    /// A fault while delivering a double fault: the CPU shut down. (A PC would reset; a
    /// guest that gets here has lost control, and stopping with the cause is more useful.)
    TripleFault {
        /// The exception that started the chain.
        first: Fault,
        /// Where it happened.
        rip: u64,
    },
    /// The instruction limit was reached.
    Limit,
    /// The guest asked for a reset (i8042, port 0x92 or 0xCF9); crane86 does not reboot.
    Reset,
    /// The guest powered the machine off (ACPI S5).
    PowerOff,
    /// Someone asked the vCPU to stop (`CpuState::request_exit`).
    Stopped,
    /// The next instruction, at this linear address, has a debugger breakpoint
    /// ([`crate::Breakpoints`]); it has not run. [`Machine::step`] runs it.
    Breakpoint(u64),
    /// The guest needs something crane86 does not implement yet.
    Unsupported {
        /// What.
        what: &'static str,
        /// The instruction that needed it.
        rip: u64,
    },
}

/// Counters of one machine's runs.
#[derive(Clone, Debug, Default)]
pub struct MachineStats {
    /// Guest instructions retired by the interpreter.
    pub insns_interp: u64,
    /// Guest instructions retired by baseline code (`crane86_translator::baseline`).
    pub insns_baseline: u64,
    /// Guest instructions retired by compiled code.
    pub insns_jit: u64,
    /// Entries into compiled code from the run loop.
    pub jit_entries: u64,
    /// Runs of blocks without compiled code, interpreted or in baseline code.
    pub interp_runs: u64,
    /// Of those, the blocks run one after another without the run loop
    /// ([`Machine::chain_interpreted`]).
    pub interp_chained: u64,
    /// Code pages whose blocks guest stores invalidated.
    pub smc_pages: u64,
    /// Stores into code pages that compiled code handed back to the interpreter
    /// (`CpuState::take_retry`).
    pub smc_retries: u64,
    /// Entries into page-crossing blocks whose code found the second page's TLB entry
    /// changed, handed to the interpreter after the run loop re-checked the page
    /// (`crane86_translator::jit::SecondPage`).
    pub second_page_rechecks: u64,
    /// Exceptions delivered through the IDT (or the real-mode IVT).
    pub exceptions: u64,
    /// External interrupts delivered.
    pub interrupts: u64,
}

impl MachineStats {
    /// Counts one run of a block without compiled code, by who ran it.
    pub(crate) fn count_cold(&mut self, r: &crane86_translator::cache::ColdRun) {
        if r.baseline {
            self.insns_baseline += r.retired;
        } else {
            self.insns_interp += r.retired;
        }
        self.interp_runs += 1;
    }

    /// Guest instructions retired in every tier.
    pub fn insns(&self) -> u64 {
        self.insns_interp + self.insns_baseline + self.insns_jit
    }
}

/// Fault-class exceptions: the instruction did not complete and is restarted after the
/// handler. #DB is left out: its fault form (an instruction breakpoint) pushes RF as it was,
/// and its other forms are traps; #BP and #OF are traps, #DF and #MC aborts.
fn is_fault_class(e: Exception) -> bool {
    use Exception::*;
    matches!(
        e,
        DivideError
            | BoundRange
            | InvalidOpcode
            | DeviceNotAvailable
            | InvalidTss
            | SegmentNotPresent
            | StackFault
            | GeneralProtection
            | PageFault
            | FpuError
            | AlignmentCheck
            | SimdError
    )
}

/// The vectors that push an error code (SDM Vol. 3 table 6-1).
fn has_error_code(e: Exception) -> bool {
    use Exception::*;
    matches!(
        e,
        DoubleFault
            | InvalidTss
            | SegmentNotPresent
            | StackFault
            | GeneralProtection
            | PageFault
            | AlignmentCheck
    )
}

impl Machine {
    /// Runs until the guest stops, or until `limit` instructions have retired. Each exception
    /// delivered counts against `limit` as one instruction (not in `cpu.retired`): a handler
    /// that faults at its first instruction loops without retiring anything, as a CPU would,
    /// and the limit must still end that run.
    ///
    /// On the PC board, [`crate::SerialInput`] handles reach this run's `exit_request` while
    /// it lasts, so that input and stop requests from other threads interrupt it.
    pub fn run(&mut self, limit: Option<u64>) -> Result<RunEnd, MachineError> {
        // Loads and reboots replace the CPU state: give it, and the cache, the machine's cell.
        self.cpu.phase = self.phase.clone();
        self.cache.set_phase_cell(self.phase.clone());
        self.phase.set(Phase::RunLoop);
        let _attached = self
            .pc
            .as_ref()
            .map(|pc| pc.attach_input(&self.cpu.exit_request));
        let end = self.run_loop(limit);
        if let Some(pc) = &self.pc {
            pc.serial().flush_pending();
        }
        self.phase.set(Phase::RunLoop);
        end
    }

    /// The loop of [`Machine::run`], with the input handles attached.
    fn run_loop(&mut self, limit: Option<u64>) -> Result<RunEnd, MachineError> {
        let mut remaining = limit.unwrap_or(u64::MAX);
        if let Some(v) = self.debug_exit_value() {
            return Ok(RunEnd::DebugExit(v));
        }
        if let Some(addrs) = self.breakpoints.take_changed() {
            // Blocks holding a breakpoint must only be entered from this loop.
            self.cache.set_entry_barriers(addrs);
        }
        loop {
            if self.mem.has_dirty_code() {
                for bytes in self.mem.take_code_writes() {
                    if self.cache.invalidate_written(bytes, &mut self.mem) {
                        self.stats.smc_pages += 1;
                    }
                }
                self.cpu.link = 0;
            }
            self.cpu.smc_pending = 0;
            if let Some(fault) = self.cpu.take_fault() {
                self.cpu.link = 0;
                // Debug traps held by MOV SS blocking do not outlive an exception.
                self.db_blocked = None;
                if self.exceptions == crate::ExceptionPolicy::Stop {
                    return Ok(RunEnd::Fault {
                        fault,
                        rip: self.cpu.rip,
                    });
                }
                if let Some(end) = self.deliver_exception(fault) {
                    return Ok(end);
                }
                remaining = remaining.saturating_sub(1);
                continue;
            }
            if self.task_trap() {
                continue;
            }
            if remaining == 0 {
                return Ok(RunEnd::Limit);
            }
            // Almost always zero: a plain load first, the locked swap only when there is a
            // request to take (a request landing after the load is seen at the next check,
            // in generated code or here). The swap cost a tenth of a run-loop round trip.
            let request = if self
                .cpu
                .exit_request
                .load(std::sync::atomic::Ordering::Acquire)
                == 0
            {
                0
            } else {
                self.cpu
                    .exit_request
                    .swap(0, std::sync::atomic::Ordering::AcqRel)
            };
            if request & EXIT_STOP != 0 {
                return Ok(RunEnd::Stopped);
            }
            if let Some(pc) = self.pc.as_mut() {
                if request & EXIT_DEVICE != 0 {
                    pc.note_device_access();
                }
                self.phase.set(Phase::Devices);
                let serviced = self.service_devices();
                self.phase.set(Phase::RunLoop);
                if let Some(end) = serviced {
                    return Ok(end);
                }
                if self.cpu.fault.pending != 0 || self.task_trap() {
                    continue;
                }
            }
            let cs = self.cpu.seg(SegReg::Cs).base;
            let mut linear = cs.wrapping_add(self.cpu.rip);
            if self.cpu.mode != crane86_runtime::CpuMode::Long64 {
                linear &= 0xffff_ffff;
            }
            let phys = match fetch_phys(&mut self.cpu, &mut self.mem, linear) {
                Ok(p) => p,
                Err(f) => {
                    self.cpu.raise(f, linear);
                    continue;
                }
            };
            if phys >= 1 << 48 {
                // Only with paging off in long mode... which cannot happen; stay total.
                self.cpu
                    .raise(Fault::with_code(Exception::GeneralProtection, 0), linear);
                continue;
            }
            let key = BlockKey::new(phys, &self.cpu);
            self.cache.collect_compiled()?;
            self.cache.take_tier_ups(&mut self.cpu)?;
            // The safe point where a full cache flushes itself (`Cache::lookup`): no block id
            // is held across the call, no generated code runs, and the exit token below is
            // read after it (a flush clears it).
            let id = self.cache.lookup(key, &mut self.cpu, &mut self.mem);
            if self.cache.block(id).decoded.insns.is_empty() {
                // The first instruction runs into a page that cannot be fetched: that
                // fetch's fault, at this instruction.
                let next = (linear | 0xfff).wrapping_add(1);
                match fetch_phys(&mut self.cpu, &mut self.mem, next) {
                    Err(f) => self.cpu.raise(f, next),
                    // Not RAM: the bus floats high and FF FF is not an instruction.
                    Ok(_) => self.cpu.raise(Fault::new(Exception::InvalidOpcode), linear),
                }
                continue;
            }
            let token = std::mem::take(&mut self.cpu.link);
            // Stop at the next timer deadline (1 ns per instruction), and after one block
            // while an interrupt shadow is in force.
            let mut limit = remaining;
            if let Some(n) = self.pc.as_ref().and_then(|pc| pc.insns_until_deadline()) {
                limit = limit.min(n);
            }
            if self.irq_shadow {
                // Exactly one instruction: interpreted, since a compiled block runs whole.
                limit = 1;
            }
            // Debugger breakpoints (see `debug.rs`): stop before one, interpret up to one
            // inside the block. Compiled code never chains into such a block.
            let mut interpret = self.irq_shadow
                || self.debug.interpret_only
                || std::mem::take(&mut self.retry_interpreted);
            if !self.breakpoints.is_empty() {
                match self
                    .breakpoints
                    .check(linear, &self.cache.block(id).decoded)
                {
                    crate::debug::BlockBreak::AtStart => return Ok(RunEnd::Breakpoint(linear)),
                    crate::debug::BlockBreak::After(n) => {
                        limit = limit.min(n);
                        interpret = true;
                    }
                    crate::debug::BlockBreak::None => {}
                }
            }
            let if_before = self.cpu.rflags & fl::IF;
            // Runtime-class blocks are always interpreted here, with the machine at hand; the
            // code some of them get serves other blocks' exits (`Cache::prepare_runtime`).
            let runtime = self.cache.block(id).decoded.is_runtime();
            if !interpret && !runtime && self.cache.prepare(id, self.cpu.cc.op)? {
                self.cache.link(token, id, &self.cpu);
                let slice = limit.min(SLICE as u64) as i64;
                self.cpu.budget = slice;
                self.cpu.tsc_base = crane86_runtime::msr::tsc(&self.cpu).wrapping_add(slice as u64);
                self.phase.set(Phase::Jit);
                let exit = self
                    .cache
                    .run_compiled(id, &mut self.cpu, &mut self.mem)
                    .unwrap_or(crane86_translator::jit::EXIT_NEXT);
                self.phase.set(Phase::RunLoop);
                let retry = self.cpu.take_retry();
                self.retry_interpreted = retry.is_some();
                match retry {
                    Some(Retry::Store) => self.stats.smc_retries += 1,
                    Some(Retry::SecondPage) => self.stats.second_page_rechecks += 1,
                    None => {}
                }
                let retired = (slice - self.cpu.budget).max(0) as u64;
                self.stats.insns_jit += retired;
                self.cpu.retired += retired;
                self.stats.jit_entries += 1;
                remaining = remaining.saturating_sub(retired);
                // An STI in compiled code that enabled interrupts with one pending came back
                // here right after it: the next instruction still runs first.
                self.irq_shadow = std::mem::take(&mut self.cpu.sti_shadow) != 0;
                if retired > 0 {
                    // RF lasts one instruction (compiled code never sets it: IRET and task
                    // switches, which load it, are interpreted).
                    self.cpu.rflags &= !fl::RF;
                    // Held debug traps are only ever non-empty while TF or a breakpoint
                    // keeps every block interpreted; none outlives an instruction.
                    self.db_blocked = None;
                }
                if exit == EXIT_FAULT && self.cpu.fault.pending == 0 {
                    // Defensive: a fault exit always records its fault first.
                    self.cpu.link = 0;
                }
            } else {
                if runtime && !interpret {
                    self.cache.prepare_runtime(id, token, &self.cpu)?;
                }
                let single_step = self.cpu.rflags & fl::TF != 0;
                let rf = self.cpu.rflags & fl::RF != 0;
                if key.single_step() && !rf {
                    if let Some(hits) = debug::exec_breakpoint_hit(&self.cpu, linear) {
                        // An instruction breakpoint is a fault: before the instruction runs.
                        self.cpu.dr[6] = (self.cpu.dr[6] & !0xf) | hits;
                        self.cpu.raise(Fault::new(Exception::Debug), 0);
                        continue;
                    }
                }
                let block = &self.cache.block(id).decoded;
                let last = block.insns.last().map(|d| InterruptEffect::of(&d.insn));
                let last_ip = block.insns.last().map(|d| d.insn.ip());
                // Data breakpoints: the instruction's accesses, listed from the registers it
                // starts with (the block holds this one instruction) and matched if it
                // retires. See `crane86_runtime::debug`.
                let watched = block
                    .insns
                    .first()
                    .filter(|_| key.single_step() && debug::data_breakpoints_armed(&self.cpu))
                    .map(|d| debug::instruction_accesses(&self.cpu, &d.insn));
                let blocked = self.db_blocked.take();
                // By `Code` (a field), not `mnemonic()` (a table lookup): every interpreted
                // block comes here.
                let icebp = block
                    .insns
                    .first()
                    .is_some_and(|d| d.insn.code() == iced_x86::Code::Int1);
                let fast_call = block.insns.first().is_some_and(|d| {
                    matches!(
                        d.insn.code(),
                        iced_x86::Code::Syscall | iced_x86::Code::Sysretd | iced_x86::Code::Sysretq
                    )
                });
                let port_io = block.is_runtime();
                let io: &mut dyn crane86_runtime::PortIo = match self.pc.as_mut() {
                    Some(pc) => pc.port_io(),
                    None => &mut self.ports,
                };
                let len = block.insns.len() as u64;
                self.phase.set(Phase::Interp);
                // One block: what follows needs its last instruction (`last` above).
                let r = self.cache.run_cold(
                    id,
                    &mut self.cpu,
                    &mut self.mem,
                    io,
                    limit,
                    !interpret && !runtime,
                    0,
                );
                let (exit, n) = (r.exit, r.retired);
                self.phase.set(Phase::RunLoop);
                self.stats.count_cold(&r);
                self.cpu.retired += n;
                remaining = remaining.saturating_sub(n);
                // An ordinary block that ran to its end, with nothing for the run loop to
                // do after it: go on to the next without the run loop's checks.
                let chain = !runtime
                    && !interpret
                    && !key.single_step()
                    && !rf
                    && self.breakpoints.is_empty()
                    && exit == InterpExit::Next
                    && n == len
                    && self.cpu.fault.pending == 0
                    && last.is_some_and(InterruptEffect::holds_nothing)
                    && self.cpu.rflags & fl::IF == if_before;
                // isa-debug-exit is a port, and port I/O instructions are runtime-class: they
                // only ever run here, alone in their block. The one place to look (it takes a
                // lock on the PC board).
                if port_io {
                    if let Some(pc) = self.pc.as_mut() {
                        pc.charge_port_io(&mut self.cpu);
                    }
                    if let Some(v) = self.debug_exit_value() {
                        return Ok(RunEnd::DebugExit(v));
                    }
                }
                if rf && n > 0 {
                    // RF suppressed the breakpoint check for one instruction, now retired.
                    self.cpu.rflags &= !fl::RF;
                }
                // SYSCALL and SYSRET trap on TF as it is at their end (the SYSCALL mask may
                // clear it, SYSRET may set it from R11); every other instruction on TF as it
                // was when it began.
                let trap = if fast_call {
                    self.cpu.rflags & fl::TF != 0
                } else {
                    single_step
                };
                // The instruction's debug traps (DR6 bits): single-step and data breakpoints,
                // taken after it completes (SDM Vol. 3 18.3.1.2, 18.3.1.4). An instruction
                // that set TF (POPF, IRET) is not trapped, one that cleared it still is.
                let mut traps = 0;
                if n > 0 && self.cpu.fault.pending == 0 {
                    if trap {
                        traps |= DR6_BS;
                    }
                    if let Some(accesses) = &watched {
                        traps |= debug::data_breakpoint_hits(&self.cpu, accesses);
                    }
                    // A task switch (far JMP/CALL, INT n, IRET) into a TSS with the T flag:
                    // one #DB with the instruction's own traps.
                    if std::mem::take(&mut self.cpu.task_trap) {
                        traps |= DR6_BT;
                    }
                }
                self.debug_traps(
                    traps,
                    blocked,
                    n > 0 && last == Some(InterruptEffect::LoadSs),
                    icebp,
                );
                // STI that sets IF, and MOV SS/POP SS, hold interrupts off for the next
                // instruction; the shadow lasts one block, which starts with that
                // instruction. (Runtime instructions are alone in their block, so `last` is
                // the one that ran.)
                let sets_if = if_before == 0 && self.cpu.rflags & fl::IF != 0;
                self.irq_shadow = n > 0
                    && match last {
                        Some(InterruptEffect::Sti) => sets_if,
                        Some(InterruptEffect::LoadSs) => true,
                        Some(InterruptEffect::Iret) => {
                            self.cpu.nmi_blocked = false;
                            false
                        }
                        _ => false,
                    };
                match exit {
                    InterpExit::Halt => {
                        // A debug trap of the HLT itself (single-step) is an event that wakes
                        // the CPU at once: its handler returns past the HLT.
                        if self.cpu.fault.pending == 0 {
                            self.phase.set(Phase::Idle);
                            let wake = self.halt();
                            self.phase.set(Phase::RunLoop);
                            match wake {
                                Wake::Event => {}
                                Wake::Never => return Ok(RunEnd::Halted),
                                Wake::Stopped => {
                                    // Still halted: back onto the HLT (alone in its block).
                                    if let Some(ip) = last_ip {
                                        self.cpu.rip = ip;
                                    }
                                }
                            }
                        }
                    }
                    InterpExit::Unsupported(what) => {
                        return Ok(RunEnd::Unsupported {
                            what,
                            rip: self.cpu.rip,
                        })
                    }
                    InterpExit::Next | InterpExit::Fault => {}
                }
                if chain && self.cpu.fault.pending == 0 {
                    match self.chain_interpreted(id, limit - n)? {
                        Ok(more) => remaining = remaining.saturating_sub(more),
                        Err(end) => return Ok(end),
                    }
                }
            }
        }
    }
}

impl Machine {
    /// Raises the #DB of an instruction's debug traps `traps` (DR6 bits) after it retired,
    /// merged with the traps `blocked` held back by MOV SS blocking after the previous
    /// instruction. An instruction that loads SS (`loads_ss`) holds its own traps back for
    /// one instruction instead (SDM Vol. 3 6.8.3): they are delivered after the next one,
    /// after the handler entry of an INT n or INT3 that is next, and are lost when the next
    /// raises an exception (a fault, a general-detect #DB), which is what kvm-unit-tests'
    /// `debug` test expects of hardware. The #DB of an `icebp` that is next fuses the held
    /// data-breakpoint hits into its DR6 but not a held single-step (that test requires
    /// DR6.BS clear there). A second SS load in a row does not extend the blocking.
    fn debug_traps(&mut self, traps: u64, blocked: Option<u64>, loads_ss: bool, icebp: bool) {
        if self.cpu.fault.pending != 0 {
            let hits = blocked.unwrap_or(0) & DR6_HITS;
            if icebp && hits != 0 {
                self.cpu.dr[6] = (self.cpu.dr[6] & !DR6_HITS) | hits;
            }
            return;
        }
        if loads_ss && blocked.is_none() {
            self.db_blocked = Some(traps);
            return;
        }
        let traps = traps | blocked.unwrap_or(0);
        if traps == 0 {
            return;
        }
        // B0-B3 report the breakpoints that matched; BS and the rest only accumulate.
        let hits = traps & DR6_HITS;
        if hits != 0 {
            self.cpu.dr[6] = (self.cpu.dr[6] & !DR6_HITS) | hits;
        }
        self.cpu.dr[6] |= traps & !DR6_HITS;
        self.cpu.raise(Fault::new(Exception::Debug), 0);
    }

    /// Raises the #DB (DR6.BT) of a task switch into a TSS with its T flag set, when an
    /// exception or interrupt delivered through a task gate made it (SDM Vol. 3 17.3.1.5):
    /// before the new task's first instruction, and before any external interrupt (a trap
    /// on task switch outranks them, SDM Vol. 3 table 6-2). True when it raised one.
    fn task_trap(&mut self) -> bool {
        if !std::mem::take(&mut self.cpu.task_trap) {
            return false;
        }
        self.cpu.dr[6] |= DR6_BT;
        self.cpu.raise(Fault::new(Exception::Debug), 0);
        true
    }

    /// Delivers an exception raised at `cpu.rip` through the IDT, turning faults during
    /// delivery into a double fault or a shutdown as SDM Vol. 3 table 6-5 says. Returns how
    /// the run ends if it cannot go on.
    pub(crate) fn deliver_exception(&mut self, fault: Fault) -> Option<RunEnd> {
        let rip = self.cpu.rip;
        let mut current = fault;
        // Each step moves up the benign -> contributory/page fault -> double fault ladder,
        // so a handful of rounds always ends; the bound only keeps that obvious.
        for _ in 0..8 {
            let error_code = has_error_code(current.exception).then_some(current.error_code);
            let event = Event {
                vector: current.exception as u8,
                kind: EventKind::Exception { error_code },
            };
            let mut flags = interp::rflags(&self.cpu);
            if is_fault_class(current.exception) {
                // SDM Vol. 3 18.3.1.1: the frame of a fault holds RF = 1 (so that the
                // handler's IRET does not retrigger an instruction breakpoint on the restart).
                flags |= fl::RF;
            }
            match interrupt::deliver(&mut self.cpu, &mut self.mem, event, flags) {
                Ok(v) => {
                    self.cpu.cc = LazyFlags::from_eflags(v);
                    self.cpu.rflags = (v & !fl::ARITH) | fl::FIXED1;
                    // Leaving virtual-8086 mode changes the mode with the VM bit.
                    crane86_runtime::segment::update_mode(&mut self.cpu);
                    self.stats.exceptions += 1;
                    tracing::trace!(%current, rip, cr2 = self.cpu.cr2, "exception delivered");
                    return None;
                }
                Err(Delivery::Unsupported(what)) => return Some(RunEnd::Unsupported { what, rip }),
                Err(Delivery::Fault(second)) => {
                    match interrupt::combine(current.exception, second.exception) {
                        Combined::Serial => current = second,
                        Combined::DoubleFault => {
                            current = Fault::with_code(Exception::DoubleFault, 0)
                        }
                        Combined::TripleFault => break,
                    }
                }
            }
        }
        Some(RunEnd::TripleFault { first: fault, rip })
    }
}
