//! Test support: runs a code snippet on the interpreter and on the JIT, checks that the two
//! back ends agree, and hands back the final state for known-answer checks.

use crane86_runtime::{BlockKey, CpuMode, CpuState, Fault, PhysMem, PortIo};
use iced_x86::code_asm::CodeAssembler;

use crate::cache::{BlockId, Cache, Tier};
use crate::interp::rflags;
use crate::jit::JitOptions;

/// Where the snippet is loaded and starts.
pub const CODE: u64 = 0x1000;
/// A data area whose bytes are compared between the two back ends.
pub const DATA: u64 = 0x8000;
const DATA_LEN: u64 = 0x1000;

struct NoIo;

impl PortIo for NoIo {
    fn port_read(&mut self, _port: u16, _size: u8) -> u32 {
        0
    }
    fn port_write(&mut self, _port: u16, _size: u8, _value: u32) {}
}

/// The final state of one run.
pub struct Outcome {
    /// The CPU.
    pub cpu: CpuState,
    /// Guest memory.
    pub mem: PhysMem,
    /// The fault that stopped the run, if any (`cpu.rip` is then the faulting instruction).
    pub fault: Option<Fault>,
    /// Regions the run compiled ([`crate::cache::CacheStats::regions`]).
    pub regions: u64,
    /// Instructions retired in baseline code ([`crate::cache::BaselineStats::runs`]).
    pub baseline_insns: u64,
}

impl Outcome {
    /// General register `i`.
    pub fn r(&self, i: usize) -> u64 {
        self.cpu.gpr[i]
    }
    /// The architectural RFLAGS.
    pub fn flags(&self) -> u64 {
        rflags(&self.cpu)
    }
    /// `size` bytes of memory at `addr`.
    pub fn m(&self, addr: u64, size: u32) -> u64 {
        self.mem.peek_phys(addr, size)
    }
}

/// The translation context of flat CPL 0 code in `mode`, with a 32-bit stack if
/// `stack32`, as tests that decode or plan blocks by hand need it.
pub const fn cpl0_ctx(mode: CpuMode, stack32: bool) -> crate::emit::Ctx {
    crate::emit::Ctx {
        mode,
        stack32,
        user: false,
        cpl: 0,
        fpu: crate::emit::FPU_OS,
        v86: false,
        seg_checks: false,
        zero_bases: false,
        fs_flat: false,
        gs_flat: false,
    }
}

/// Assembles with iced's code assembler at [`CODE`].
pub fn asm(bits: u32, f: impl FnOnce(&mut CodeAssembler)) -> Vec<u8> {
    let mut a = CodeAssembler::new(bits).unwrap();
    f(&mut a);
    a.assemble(CODE).unwrap()
}

/// Runs `code` in one tier from the state `setup` leaves (after the defaults: `mode`, the
/// identity map in 64-bit mode, RSP) until it reaches its end or faults.
pub fn run_tier(
    tier: Tier,
    mode: CpuMode,
    code: &[u8],
    setup: &dyn Fn(&mut CpuState, &mut PhysMem),
) -> Outcome {
    let mut mem = PhysMem::new(1 << 20).unwrap();
    // A HLT after the snippet ends its last block (HLT runs alone), so the run stops there.
    mem.load(CODE, code).unwrap();
    mem.load(CODE + code.len() as u64, &[0xf4]).unwrap();
    let mut cpu = CpuState::new(mode);
    if mode == CpuMode::Long64 {
        // Long mode always pages: linear = physical through tables at the top of RAM.
        cpu.cr3 = crane86_runtime::paging::identity_map(&mut mem, (1 << 20) - 0x2000);
    }
    cpu.rip = CODE;
    cpu.gpr[4] = 0xf000;
    setup(&mut cpu, &mut mem);
    let end = CODE + code.len() as u64;
    let opts = JitOptions {
        optimize: true,
        verify: true,
        background: false,
        count_chains: true,
        tiered: false,
        tier_up_runs: crate::jit::TIER_UP_RUNS,
    };
    let mut cache = Cache::new(tier, 1 << 22, opts).unwrap();
    let mut steps = 0;
    while cpu.rip != end && cpu.fault.pending == 0 {
        steps += 1;
        assert!(steps < 100_000, "{tier:?}: the snippet does not finish");
        let key = BlockKey::new(cpu.rip, &cpu);
        let id = cache.lookup(key, &mut cpu, &mut mem);
        run_step(&mut cache, id, &mut cpu, &mut mem);
        if mem.has_dirty_code() {
            for bytes in mem.take_code_writes() {
                cache.invalidate_written(bytes, &mut mem);
            }
            cpu.link = 0;
        }
        cpu.smc_pending = 0;
    }
    let fault = cpu.take_fault();
    Outcome {
        cpu,
        mem,
        fault,
        regions: cache.stats.regions,
        baseline_insns: cache.stats.baseline.runs.insns,
    }
}

/// JIT options for tests: the IR verifier on, chained transfers counted, no tiered compiles.
pub fn test_jit_options(optimize: bool, background: bool) -> JitOptions {
    JitOptions {
        optimize,
        verify: true,
        background,
        count_chains: true,
        tiered: false,
        tier_up_runs: crate::jit::TIER_UP_RUNS,
    }
}

/// 1 MiB of RAM holding 32-bit `code` at `start`, and a protected-mode CPU about to run it
/// with ECX = `ecx`.
pub fn prot32_guest(code: &[u8], start: u64, ecx: u64) -> (PhysMem, CpuState) {
    let mut mem = PhysMem::new(1 << 20).unwrap();
    mem.load(start, code).unwrap();
    let mut cpu = CpuState::new(CpuMode::Prot32);
    cpu.rip = start;
    cpu.gpr[1] = ecx;
    (mem, cpu)
}

/// The run loop of the cache's tests, as the machine's does it: until RIP reaches `end`,
/// each step installs background compiles, calls `before` with the step's number, looks the
/// block at RIP up (its fetch translated through the TLB under paging), runs it with
/// [`run_step`], drops the blocks whose bytes were written, and calls `after`. A pending
/// fault or more than `max_steps` steps fail the test. Returns the steps taken.
pub fn drive(
    cache: &mut Cache,
    cpu: &mut CpuState,
    mem: &mut PhysMem,
    end: u64,
    max_steps: u64,
    mut before: impl FnMut(&mut Cache, &mut CpuState, u64),
    mut after: impl FnMut(&Cache),
) -> u64 {
    let mut steps = 0;
    while cpu.rip != end {
        steps += 1;
        assert!(steps <= max_steps, "the program does not finish");
        assert_eq!(cpu.fault.pending, 0, "fault at {:#x}", cpu.rip);
        cache.collect_compiled().unwrap();
        before(cache, cpu, steps);
        let key = key_at_rip(cpu, mem);
        let id = cache.lookup(key, cpu, mem);
        run_step(cache, id, cpu, mem);
        if mem.has_dirty_code() {
            for bytes in mem.take_code_writes() {
                cache.invalidate_written(bytes, mem);
            }
            cpu.link = 0;
        }
        cpu.smc_pending = 0;
        after(cache);
    }
    steps
}

/// The key of the block at RIP, its fetch translated through the TLB under paging.
fn key_at_rip(cpu: &mut CpuState, mem: &mut PhysMem) -> BlockKey {
    let rip = cpu.rip;
    let phys = if cpu.cr0 & crane86_runtime::state::CR0_PG != 0 {
        crane86_runtime::memory::fetch_phys(cpu, mem, rip).unwrap()
    } else {
        rip
    };
    BlockKey::new(phys, cpu)
}

/// One step of a test's run loop: links the exit that led to block `id` (`cpu.link`), then
/// runs the block, compiled if it is (with the budget and TSC base the run loop sets) or
/// else in baseline code or interpreted, for at most 1000 instructions, counting them in
/// `cpu.retired`.
pub fn run_step(cache: &mut Cache, id: BlockId, cpu: &mut CpuState, mem: &mut PhysMem) {
    let token = std::mem::take(&mut cpu.link);
    if cache.prepare(id, cpu.cc.op).unwrap() {
        cache.link(token, id, cpu);
        cpu.budget = 1000;
        cpu.tsc_base = crane86_runtime::msr::tsc(cpu) + 1000;
        cache.run_compiled(id, cpu, mem);
        cpu.retired += (1000 - cpu.budget) as u64;
        if cpu.take_retry().is_some() {
            // A store into translated code (or a page-crossing block whose second page
            // changed), handed back: the interpreter runs it, as the machine's run loop does.
            let id = cache.lookup(key_at_rip(cpu, mem), cpu, mem);
            cpu.retired += cache
                .run_cold(id, cpu, mem, &mut NoIo, 1000, false, 0)
                .retired;
        }
    } else {
        let n = cache
            .run_cold(id, cpu, mem, &mut NoIo, 1000, true, 0)
            .retired;
        cpu.retired += n;
    }
}

/// Runs `code` on both back ends from the same start state, asserts that they agree on the
/// registers, RIP, RFLAGS, the fault, XMM0-15, MXCSR and the data area, and returns the
/// interpreter's result.
pub fn run_both(
    mode: CpuMode,
    code: &[u8],
    setup: impl Fn(&mut CpuState, &mut PhysMem),
) -> Outcome {
    run_pair(Tier::Jit, mode, code, &setup, false)
}

/// [`run_both`] with the JIT's blocks compiled after two interpreted runs, so that a loop's
/// head is compiled with the blocks it loops through, already decoded by then (a region;
/// compiling every block before its first run never makes one). Returns the JIT's result.
pub fn run_both_regions(
    mode: CpuMode,
    code: &[u8],
    setup: impl Fn(&mut CpuState, &mut PhysMem),
) -> Outcome {
    run_pair(Tier::Auto { threshold: 2 }, mode, code, &setup, true)
}

/// Runs `code` interpreted and in the JIT tier `jit`, asserts that they agree, and returns
/// the JIT's result if `keep_jit`, else the interpreter's (one: an `Outcome` holds a whole
/// `CpuState`, TLBs included, and test threads have small stacks).
fn run_pair(
    jit: Tier,
    mode: CpuMode,
    code: &[u8],
    setup: &dyn Fn(&mut CpuState, &mut PhysMem),
    keep_jit: bool,
) -> Outcome {
    let i = run_boxed(Tier::Interp, mode, code, setup);
    check_baseline(&i, mode, code, setup);
    let j = run_boxed(jit, mode, code, setup);
    assert_agree(&i, &j, "JIT");
    if keep_jit {
        *j
    } else {
        *i
    }
}

/// [`run_tier`] with its result on the heap, so that the caller's frame holds no
/// `Outcome` (a whole `CpuState`): test threads have small stacks.
#[inline(never)]
fn run_boxed(
    tier: Tier,
    mode: CpuMode,
    code: &[u8],
    setup: &dyn Fn(&mut CpuState, &mut PhysMem),
) -> Box<Outcome> {
    Box::new(run_tier(tier, mode, code, setup))
}

/// Runs `code` in the baseline tier and asserts that it agrees with the interpreter's result
/// `i`.
fn check_baseline(
    i: &Outcome,
    mode: CpuMode,
    code: &[u8],
    setup: &dyn Fn(&mut CpuState, &mut PhysMem),
) {
    let b = run_boxed(Tier::Baseline, mode, code, setup);
    assert_agree(i, &b, "baseline");
}

/// Asserts that the interpreter's result `i` and tier `tier`'s `j` agree on the registers, RIP,
/// RFLAGS, the fault, XMM0-15, MXCSR and the data area.
fn assert_agree(i: &Outcome, j: &Outcome, tier: &str) {
    assert_eq!(i.cpu.gpr, j.cpu.gpr, "registers differ (interp vs {tier})");
    assert_eq!(i.cpu.rip, j.cpu.rip, "rip differs (interp vs {tier})");
    assert_eq!(i.flags(), j.flags(), "rflags differ (interp vs {tier})");
    assert_eq!(i.fault, j.fault, "faults differ (interp vs {tier})");
    assert_eq!(
        i.cpu.fpu.xmm, j.cpu.fpu.xmm,
        "XMM registers differ (interp vs {tier})"
    );
    assert_eq!(
        i.cpu.fpu.mxcsr, j.cpu.fpu.mxcsr,
        "MXCSR differs (interp vs {tier})"
    );
    for a in (DATA..DATA + DATA_LEN).step_by(8) {
        assert_eq!(
            i.m(a, 8),
            j.m(a, 8),
            "memory at {a:#x} differs (interp vs {tier})"
        );
    }
}

/// [`run_both`] in 64-bit mode with the given initial registers `(index, value)`.
pub fn run64(code: &[u8], regs: &[(usize, u64)]) -> Outcome {
    let regs = regs.to_vec();
    run_both(CpuMode::Long64, code, move |cpu, _| {
        for &(r, v) in &regs {
            cpu.gpr[r] = v;
        }
    })
}

/// Finds the legacy form of `m` whose operand kinds are exactly `kinds`.
pub fn form(m: iced_x86::Mnemonic, kinds: &[iced_x86::OpCodeOperandKind]) -> iced_x86::Code {
    iced_x86::Code::values()
        .find(|c| {
            let oc = c.op_code();
            c.mnemonic() == m
                && oc.encoding() == iced_x86::EncodingKind::Legacy
                && oc.op_kinds() == kinds
                && (oc.mode64() || !oc.mode16())
        })
        .unwrap_or_else(|| panic!("no form {m:?} {kinds:?}"))
}

/// Encodes instructions one after the other from [`CODE`] for `bits`-bit code.
pub fn encode(bits: u32, insns: &[iced_x86::Instruction]) -> Vec<u8> {
    let mut enc = iced_x86::Encoder::new(bits);
    let mut ip = CODE;
    for i in insns {
        let n = enc.encode(i, ip).unwrap();
        ip += n as u64;
    }
    enc.take_buffer()
}

/// Encodes one instruction at [`CODE`] for `bits`-bit code and decodes it back, as the
/// translator will see it (with its IP and length).
pub fn encode_decoded(bits: u32, insn: &iced_x86::Instruction) -> (Vec<u8>, iced_x86::Instruction) {
    let bytes = encode(bits, std::slice::from_ref(insn));
    let decoded =
        iced_x86::Decoder::with_ip(bits, &bytes, CODE, iced_x86::DecoderOptions::NONE).decode();
    (bytes, decoded)
}
