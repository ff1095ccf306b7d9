//! Random bytes as guest code, in one CPU mode, through the interpreter and the JIT.
//!
//! Input: one byte chooses the mode and a few CPU settings, eight bytes seed the registers,
//! the rest (up to [`MAX_CODE`] bytes) is the code, loaded at [`CODE`] and followed by HLT
//! so that a run that falls off its end stops there. Both tiers start from the same state on
//! fresh machines; exceptions are delivered through whatever the guest left at the IDT's
//! address (zeros at first: the run ends in a triple fault, unless the code built a handler).

use crane86_machine::{Machine, MachineConfig, RunEnd};
use crane86_runtime::paging::{CR0_WP, CR4_PSE, CR4_SMAP, CR4_SMEP};
use crane86_runtime::state::{CR0_EM, CR0_PG, CR0_TS};
use crane86_runtime::{CpuMode, SegReg, Segment};
use crane86_translator::Tier;

use crate::compare::tiers_agree;
use crate::{splitmix, Bytes, Finding};

/// Where the code goes.
pub const CODE: u64 = 0x1000;
/// Guest RAM: small, so that random addresses often fall outside it.
pub const RAM: u64 = 1 << 20;
/// Code bytes taken from an input.
pub const MAX_CODE: usize = 256;
/// Instructions per run.
pub const BUDGET: u64 = 1000;
/// Self-modifying inputs whose interpreter run invalidated more blocks than this are not
/// compared (see [`run`]); their JIT run stops after [`SMC_BUDGET`] instructions.
const SMC_COMPARED: u64 = 16;
const SMC_BUDGET: u64 = 50;
/// The 32-bit paged mode's page directory and page table, below the stack.
const PAGE_DIR: u64 = RAM - 0x2000;

/// The modes the first byte chooses among (its low three bits, modulo five).
const MODES: [(CpuMode, bool); 5] = [
    (CpuMode::Real16, false),
    (CpuMode::Prot16, false),
    (CpuMode::Prot32, false),
    (CpuMode::Prot32, true),
    (CpuMode::Long64, false),
];

/// A fresh machine for `tier`.
pub(crate) fn machine(tier: Tier, ram: u64) -> Machine {
    Machine::new(&MachineConfig {
        tier,
        ram_bytes: ram,
        code_arena_bytes: 4 << 20,
        ..Default::default()
    })
    .expect("a small machine can always be built")
}

/// Puts `m` in the state the input describes.
fn setup(m: &mut Machine, mode: CpuMode, paged: bool, settings: u8, seed: u64, code: &[u8]) {
    // HLT everywhere but the code: a jump out of it ends the run at once, instead of
    // running (and compiling) long runs of ADD [BX+SI], AL through zeroed memory.
    m.mem.ram_mut().fill(0xf4);
    m.mem.load(CODE, code).expect("the code fits in RAM");
    m.cpu = m.flat_cpu(mode);
    let mut s = seed;
    for r in m.cpu.gpr.iter_mut() {
        let v = splitmix(&mut s);
        // Mostly addresses in or near RAM, so that memory operands reach it.
        *r = match v & 3 {
            0 => 0,
            1 => (v >> 8) % RAM,
            2 => (v >> 8) & 0xffff,
            _ => v,
        };
        if mode != CpuMode::Long64 {
            *r &= 0xffff_ffff;
        }
    }
    // Arithmetic flags, DF, and sometimes TF (a #DB after the first instruction) or AC.
    let f = splitmix(&mut s);
    m.cpu.cc = crane86_runtime::flags::LazyFlags::from_eflags(f & 0x8d5);
    m.cpu.rflags = 0x2 | (f & 0x400);
    if settings & 0x08 != 0 {
        m.cpu.rflags |= 0x100;
    }
    if settings & 0x10 != 0 {
        m.cpu.rflags |= 0x4_0000;
        m.cpu.cr0 |= 1 << 18;
    }
    if settings & 0x20 != 0 {
        m.cpu.cr0 |= CR0_TS;
    }
    if settings & 0x40 != 0 {
        m.cpu.cr0 |= CR0_EM;
    }
    match mode {
        CpuMode::Real16 => m.cpu.seg[SegReg::Cs as usize] = Segment::real(0),
        CpuMode::Prot32 if paged => {
            // Identity map all of RAM with 4 KiB pages (user, writable), CR4 from the input.
            let table = PAGE_DIR + 0x1000;
            m.mem.write_phys(PAGE_DIR, 4, table | 0x67);
            for i in 0..RAM / 0x1000 {
                m.mem.write_phys(table + 4 * i, 4, (i << 12) | 0x67);
            }
            m.cpu.cr3 = PAGE_DIR;
            m.cpu.cr0 |= CR0_PG | if settings & 0x80 != 0 { CR0_WP } else { 0 };
            m.cpu.cr4 |= [0, CR4_PSE, CR4_SMEP, CR4_SMAP][usize::from(settings >> 5 & 3)];
            m.cpu.gpr[4] = PAGE_DIR - 16;
        }
        _ => {}
    }
    m.cpu.rip = CODE;
    m.cpu.flush_tlb();
}

/// Runs `data` as guest code in both tiers; `Err` when they disagree or a run fails.
pub fn run(data: &[u8]) -> Result<(), Finding> {
    let mut input = Bytes::new(data);
    let settings = input.u8();
    let (mode, paged) = MODES[usize::from(settings & 7) % MODES.len()];
    let seed = input.u64();
    let code = input.rest(MAX_CODE);
    let mut interp = machine(Tier::Interp, RAM);
    setup(&mut interp, mode, paged, settings, seed, code);
    let interp_end = interp
        .run(Some(BUDGET))
        .map_err(|e| Finding(format!("interpreter: machine error: {e}")))?;
    // Code that keeps rewriting itself is retranslated at every store; compiling each
    // version (a millisecond apiece) would make such inputs thousands of times slower than
    // the rest. The JIT still compiles the first versions, unchecked against the
    // interpreter, since a shorter run ends at its budget.
    let smc = interp.cache.stats.invalidated_smc > SMC_COMPARED;
    let mut jit = machine(Tier::Jit, RAM);
    setup(&mut jit, mode, paged, settings, seed, code);
    let jit_end = jit
        .run(Some(if smc { SMC_BUDGET } else { BUDGET }))
        .map_err(|e| Finding(format!("JIT: machine error: {e}")))?;
    if smc {
        return Ok(());
    }
    tiers_agree(&interp, &interp_end, &jit, &jit_end)
        .map_err(|f| Finding(format!("{mode:?} paged={paged}: {f}")))
}

/// How a run of `data` ends in the interpreter: for tests that want to see what the
/// harness did with an input.
pub fn interp_end(data: &[u8]) -> RunEnd {
    let mut input = Bytes::new(data);
    let settings = input.u8();
    let (mode, paged) = MODES[usize::from(settings & 7) % MODES.len()];
    let seed = input.u64();
    let code = input.rest(MAX_CODE);
    let mut m = machine(Tier::Interp, RAM);
    setup(&mut m, mode, paged, settings, seed, code);
    m.run(Some(BUDGET)).unwrap_or(RunEnd::Stopped)
}
