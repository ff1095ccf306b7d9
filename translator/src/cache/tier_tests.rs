//! Tiered compilation ([`crate::jit::JitOptions::tiered`]): quick code counts its runs, is
//! compiled again optimised, and the new code takes over the links into the block.

use crane86_runtime::CpuState;

use super::{Cache, CacheStats, Tier};
use crate::jit::{JitOptions, TIER_UP_RUNS, TIER_UP_WORD};
use crate::testutil::{prot32_guest, test_jit_options};
use crane86_runtime::state::TIER_UP_REQUESTS;

const START: u64 = 0x1000;
const CALLS: u32 = 3 * TIER_UP_RUNS as u32;

/// 32-bit code: `START: call F; dec ecx; jnz START; hlt` and `F: add ebx, 1; ret`. Three
/// blocks that loop through one another without forming a region (calls and returns end
/// region candidates), each run `CALLS` times. Returns the code and the HLT's address.
fn calls() -> (Vec<u8>, u64) {
    let mut code = vec![0xe8, 0x10, 0, 0, 0]; // call START + 0x15
    code.extend_from_slice(&[0x49, 0x75, 0xf8]); // dec ecx; jnz START
    let hlt = START + code.len() as u64;
    code.push(0xf4);
    code.resize(0x15, 0xcc);
    code.extend_from_slice(&[0x83, 0xc3, 0x01, 0xc3]); // add ebx, 1; ret
    (code, hlt)
}

/// Every link into a block with code leads to its current code (slot words and direct
/// jumps alike).
fn links_lead_to_current_code(cache: &Cache) -> bool {
    cache.links_consistent()
}

/// Runs [`calls`] as the run loop does, with the list of tier-up requests kept full for the
/// first `full_for` steps; returns the CPU and the statistics.
fn run(tier: Tier, opts: JitOptions, full_for: u64) -> (CpuState, CacheStats) {
    let (code, hlt) = calls();
    let (mut mem, mut cpu) = prot32_guest(&code, START, u64::from(CALLS));
    cpu.gpr[4] = 0xf000;
    let mut cache = Cache::new(tier, 1 << 22, opts).unwrap();
    crate::testutil::drive(
        &mut cache,
        &mut cpu,
        &mut mem,
        hlt,
        1_000_000,
        |cache, cpu, step| {
            cache.take_tier_ups(cpu).unwrap();
            if step <= full_for {
                cpu.tier_up_len = TIER_UP_REQUESTS as u32;
            }
        },
        |cache| assert!(links_lead_to_current_code(cache), "{tier:?}: a stale link"),
    );
    for b in cache.blocks.iter().flatten().filter(|b| b.code.is_some()) {
        if b.quick {
            // Quick code left: it has not run its count since it was compiled.
            assert!(
                b.slots[TIER_UP_WORD] as i64 > 0,
                "{tier:?}: {:#x}",
                b.start_ip()
            );
        }
    }
    (cpu, cache.stats.clone())
}

fn opts(tiered: bool, background: bool) -> JitOptions {
    JitOptions {
        tiered,
        ..test_jit_options(true, background)
    }
}

#[test]
fn quick_code_is_compiled_again_once_it_has_run_its_count() {
    let (cpu, stats) = run(Tier::Jit, opts(true, false), 0);
    assert_eq!(cpu.gpr[3] & 0xffff_ffff, u64::from(CALLS));
    assert_eq!(cpu.gpr[1] & 0xffff_ffff, 0);
    // The call, the function and the loop's tail each ran 3x their count: each was
    // compiled quick, then optimised, and never again.
    assert_eq!(stats.recompiled, 3, "{stats:?}");
    assert_eq!(stats.blocks_compiled, 3 + 3, "{stats:?}");
}

#[test]
fn without_tiers_blocks_compile_once() {
    let (cpu, stats) = run(Tier::Jit, opts(false, false), 0);
    assert_eq!(cpu.gpr[3] & 0xffff_ffff, u64::from(CALLS));
    assert_eq!(stats.recompiled, 0);
}

#[test]
fn background_recompiles_keep_links_current() {
    let (cpu, _) = run(Tier::Auto { threshold: 2 }, opts(true, true), 0);
    assert_eq!(cpu.gpr[3] & 0xffff_ffff, u64::from(CALLS));
    assert_eq!(cpu.gpr[1] & 0xffff_ffff, 0);
}

#[test]
fn a_request_that_finds_the_list_full_is_made_again_later() {
    // Full while the first counts run out (a third of the way: the 13th of some 33 steps):
    // those requests are dropped, the counts start over, and the second requests are taken.
    let (cpu, stats) = run(Tier::Jit, opts(true, false), 20);
    assert_eq!(cpu.gpr[3] & 0xffff_ffff, u64::from(CALLS));
    assert_eq!(stats.recompiled, 3, "{stats:?}");
}

/// `--stats` tells why interpreted blocks had no code: runs before the threshold count as
/// not yet hot, runs while the block waits in the background compiler's queue as waiting.
#[test]
fn interpreted_runs_are_counted_by_why_the_block_has_no_code() {
    use crane86_runtime::BlockKey;
    let (code, _) = calls();
    let (mut mem, mut cpu) = prot32_guest(&code, START, 1);
    let mut cache = Cache::new(Tier::Auto { threshold: 3 }, 1 << 20, opts(true, true)).unwrap();
    let id = cache.lookup(BlockKey::new(START, &cpu), &mut cpu, &mut mem);
    // The block at START is one CALL. Without `collect_compiled` its code is never
    // installed, so every run from the third on finds it queued.
    for _ in 0..5 {
        assert!(!cache.prepare(id, cpu.cc.op).unwrap());
    }
    let s = &cache.stats;
    assert_eq!((s.interp_cold.runs, s.interp_cold.insns), (2, 2), "{s:?}");
    assert_eq!(
        (s.interp_waiting.runs, s.interp_waiting.insns),
        (3, 3),
        "{s:?}"
    );
    assert_eq!(s.interp_refused.runs, 0, "{s:?}");
    // Under `--tier interp` no block is ever hot: none of its runs has a reason to count.
    let mut cache = Cache::new(Tier::Interp, 1 << 20, opts(true, false)).unwrap();
    let id = cache.lookup(BlockKey::new(START, &cpu), &mut cpu, &mut mem);
    for _ in 0..5 {
        assert!(!cache.prepare(id, cpu.cc.op).unwrap());
    }
    assert_eq!(cache.stats.interp_cold.runs, 0);
}
