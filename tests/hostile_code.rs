//! No guest input panics the host: random byte blocks run as guest code in every mode and
//! every tier must end cleanly (any `RunEnd`), never with a panic or an `Err`.
//!
//! The generator is seeded (set `CRANE86_FUZZ_SEED` to choose the seed, `CRANE86_FUZZ_BLOCKS`
//! to change the number of blocks per mode); a failure prints the seed, the block index, the
//! tier and the bytes, minimised on a fresh machine when the failure reproduces there.

use std::panic::{catch_unwind, AssertUnwindSafe};

use crane86_machine::{Machine, MachineConfig, RunEnd};
use crane86_runtime::{CpuMode, SegReg, Segment};
use crane86_translator::Tier;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// Where the random code goes.
const CODE: u64 = 0x1000;
/// Guest RAM: small, so that random addresses often fall outside it.
const RAM: u64 = 1 << 20;
/// Instructions per run.
const LIMIT: u64 = 200;
/// Random blocks per mode.
const BLOCKS: usize = 100_000;
/// Bytes loaded per run: the block, then HLT (0xF4) up to this length, so that the bytes after
/// a short block do not depend on earlier runs and a run that falls off its block ends there.
const WINDOW: usize = 80;

const TIERS: [Tier; 4] = [
    Tier::Interp,
    Tier::Jit,
    Tier::Auto { threshold: 10 },
    Tier::Baseline,
];

/// Which tier runs block `i`. Compiling a random block costs about a millisecond (Cranelift),
/// against microseconds to interpret it or translate it to baseline code, so the pure JIT
/// tier gets one block in 256 and the interpreter, the baseline tier and the auto tier
/// (which compiles what runs ten times) share the rest.
fn tier_of(i: usize) -> usize {
    if i % 256 == 255 {
        1
    } else if i.is_multiple_of(2) {
        0
    } else if i % 4 == 1 {
        3
    } else {
        2
    }
}

fn machine(tier: Tier) -> Machine {
    Machine::new(&MachineConfig {
        tier,
        ram_bytes: RAM,
        ..Default::default()
    })
    .unwrap()
}

/// Initial register values: zeros, small addresses inside RAM and arbitrary values.
#[derive(Clone, Copy, Debug)]
struct Regs([u64; 16]);

impl Regs {
    fn random(rng: &mut SmallRng) -> Regs {
        let mut r = [0u64; 16];
        for v in &mut r {
            *v = match rng.random_range(0..4) {
                0 => 0,
                1 => rng.random_range(0..RAM),
                2 => rng.random_range(0..0x1_0000),
                _ => rng.random(),
            };
        }
        Regs(r)
    }
}

/// Loads `code` at CODE and resets the CPU and the devices, keeping the translation cache.
fn reset(m: &mut Machine, mode: CpuMode, code: &[u8], regs: Regs) {
    let mut window = [0xf4u8; WINDOW];
    window[..code.len()].copy_from_slice(code);
    m.mem.load(CODE, &window).unwrap();
    m.cpu = m.flat_cpu(mode);
    for (i, &v) in regs.0.iter().enumerate() {
        m.cpu.gpr[i] = match mode {
            CpuMode::Long64 => v,
            _ => v & 0xffff_ffff,
        };
    }
    if mode == CpuMode::Real16 {
        m.cpu.seg[SegReg::Cs as usize] = Segment::real(0);
    }
    m.cpu.rip = CODE;
    m.cpu.flush_tlb();
    m.ports.exit = None;
    m.ports.serial.clear();
}

/// Runs one block; `Err` describes a panic or a machine error.
fn run_one(m: &mut Machine, mode: CpuMode, code: &[u8], regs: Regs) -> Result<RunEnd, String> {
    match catch_unwind(AssertUnwindSafe(|| {
        reset(m, mode, code, regs);
        m.run(Some(LIMIT))
    })) {
        Ok(Ok(end)) => Ok(end),
        Ok(Err(e)) => Err(format!("machine error: {e}")),
        Err(p) => Err(format!(
            "panic: {}",
            p.downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| p.downcast_ref::<&str>().copied())
                .unwrap_or("<non-string payload>")
        )),
    }
}

/// Shrinks `code` while it still fails on a fresh machine; `None` if it does not fail there.
fn minimise(mode: CpuMode, tier: Tier, code: &[u8], regs: Regs) -> Option<Vec<u8>> {
    let fails = |c: &[u8]| run_one(&mut machine(tier), mode, c, regs).is_err();
    if !fails(code) {
        return None;
    }
    let mut cur = code.to_vec();
    loop {
        let before = cur.len();
        // Drop single bytes from the end, then from anywhere, while it still fails.
        let mut i = cur.len();
        while i > 0 {
            i -= 1;
            let mut c = cur.clone();
            c.remove(i);
            if !c.is_empty() && fails(&c) {
                cur = c;
            }
        }
        if cur.len() == before {
            return Some(cur);
        }
    }
}

fn seed() -> u64 {
    std::env::var("CRANE86_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x00c2_a4e8_6f00)
}

fn blocks() -> usize {
    std::env::var("CRANE86_FUZZ_BLOCKS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(BLOCKS)
}

fn fuzz(mode: CpuMode) {
    let seed = seed() ^ mode as u64;
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut machines: Vec<Machine> = TIERS.iter().map(|&t| machine(t)).collect();
    let mut failures = Vec::new();
    let mut ends = [0usize; 5];
    let mut time = [std::time::Duration::ZERO; TIERS.len()];
    let n = blocks();
    for i in 0..n {
        let len = rng.random_range(1..=64);
        let code: Vec<u8> = (0..len).map(|_| rng.random()).collect();
        let regs = Regs::random(&mut rng);
        let t = tier_of(i);
        let t0 = std::time::Instant::now();
        let r = run_one(&mut machines[t], mode, &code, regs);
        time[t] += t0.elapsed();
        match r {
            Ok(end) => {
                ends[match end {
                    RunEnd::DebugExit(_) => 0,
                    RunEnd::Halted => 1,
                    RunEnd::Fault { .. } | RunEnd::TripleFault { .. } => 2,
                    RunEnd::Limit => 3,
                    RunEnd::Stopped
                    | RunEnd::Breakpoint(_)
                    | RunEnd::Reset
                    | RunEnd::PowerOff
                    | RunEnd::Unsupported { .. } => 4,
                }] += 1
            }
            Err(e) => {
                // The machine may be inconsistent after a panic: start a fresh one.
                machines[t] = machine(TIERS[t]);
                let min = minimise(mode, TIERS[t], &code, regs);
                failures.push(format!(
                    "seed {seed:#x} block {i} {mode:?} {:?}: {e}\n  bytes {code:02x?}\n  regs {:x?}\n  minimal on a fresh machine: {min:02x?}",
                    TIERS[t], regs.0
                ));
                if failures.len() >= 10 {
                    break;
                }
            }
        }
    }
    eprintln!(
        "{mode:?}: {n} blocks, seed {seed:#x}: exit {} halt {} fault {} limit {} stopped {}",
        ends[0], ends[1], ends[2], ends[3], ends[4]
    );
    for (t, m) in machines.iter().enumerate() {
        eprintln!(
            "  {:?}: {:?}, {} blocks decoded, {} in baseline code (declined {:?}), {} compiled in {:?}, {} SMC pages",
            TIERS[t],
            time[t],
            m.cache.stats.blocks_decoded,
            m.cache.stats.baseline.blocks,
            m.cache.stats.baseline.declined,
            m.cache.stats.blocks_compiled,
            m.cache.stats.compile_time,
            m.stats.smc_pages
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn random_code_real16() {
    fuzz(CpuMode::Real16);
}

#[test]
fn random_code_prot32() {
    fuzz(CpuMode::Prot32);
}

#[test]
fn random_code_long64() {
    fuzz(CpuMode::Long64);
}

/// Fixed inputs run on fresh machines in every tier: add the minimal bytes of any failure the
/// random runs find here. (None found so far; the entry below is a sanity case.)
const REGRESSIONS: &[(CpuMode, &[u8])] = &[
    // `out dx, al` to isa-debug-exit then more code: the run must end at the exit.
    (CpuMode::Long64, &[0x66, 0xba, 0xf4, 0x00, 0xee, 0xeb, 0xfe]),
];

#[test]
fn regressions() {
    for &(mode, code) in REGRESSIONS {
        for tier in TIERS {
            let mut m = machine(tier);
            let r = run_one(&mut m, mode, code, Regs([0; 16]));
            assert!(r.is_ok(), "{mode:?} {tier:?} {code:02x?}: {r:?}");
        }
    }
}
