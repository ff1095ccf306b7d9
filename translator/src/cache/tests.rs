//! The cache's bound: a guest that runs more distinct blocks than the cache holds still runs
//! correctly, through capacity flushes.

use crane86_runtime::CpuState;

use super::{Cache, CacheStats, Tier};
use crate::testutil::{prot32_guest, test_jit_options};

pub(super) const START: u64 = 0x1000;
/// Distinct blocks in the chain: several times what a 256 KiB budget holds.
const BLOCKS: u32 = 3000;
/// Times the chain runs.
const ROUNDS: u32 = 3;

/// 32-bit code at `START`: `blocks` blocks `add ebx, i; jmp next`, 16 bytes apart, then `dec
/// ecx; jnz START; hlt`. Returns the code and the address of the HLT (where the run stops).
pub(super) fn chain_of(blocks: u32) -> (Vec<u8>, u64) {
    let mut code = Vec::new();
    for i in 0..blocks {
        code.extend_from_slice(&[0x81, 0xc3]);
        code.extend_from_slice(&i.to_le_bytes());
        code.push(0xe9);
        code.extend_from_slice(&5i32.to_le_bytes());
        code.resize(code.len() + 5, 0xcc);
    }
    let back = -(code.len() as i32) - 7;
    code.extend_from_slice(&[0x49, 0x0f, 0x85]);
    code.extend_from_slice(&back.to_le_bytes());
    let hlt = START + code.len() as u64;
    code.push(0xf4);
    (code, hlt)
}

/// Runs the chain through a cache of the smallest size as the run loop does; returns the
/// CPU, the statistics and the most decoded bytes the cache ever held, with its budget.
fn run_chain(tier: Tier, background: bool) -> (CpuState, CacheStats, usize, usize) {
    let (code, hlt) = chain_of(BLOCKS);
    let (mut mem, mut cpu) = prot32_guest(&code, START, u64::from(ROUNDS));
    let opts = test_jit_options(false, background);
    let mut cache = Cache::new(tier, 64 << 10, opts).unwrap();
    let mut most = 0;
    crate::testutil::drive(
        &mut cache,
        &mut cpu,
        &mut mem,
        hlt,
        1_000_000,
        |_, _, _| {},
        |cache| most = most.max(cache.decoded_bytes()),
    );
    (cpu, cache.stats.clone(), most, cache.block_budget())
}

#[test]
fn blocks_run_correctly_across_capacity_flushes() {
    let sum: u64 = (0..u64::from(BLOCKS)).sum();
    for (tier, background) in [
        (Tier::Interp, false),
        (Tier::Jit, false),
        (Tier::Auto { threshold: 2 }, true),
    ] {
        let (cpu, stats, most, budget) = run_chain(tier, background);
        assert_eq!(
            cpu.gpr[3] & 0xffff_ffff,
            (sum * u64::from(ROUNDS)) & 0xffff_ffff
        );
        assert_eq!(cpu.gpr[1] & 0xffff_ffff, 0, "{tier:?}");
        // Every round decodes more blocks than fit: each round flushes at least once.
        assert!(
            stats.capacity_flushes >= u64::from(ROUNDS),
            "{tier:?}: {stats:?}"
        );
        assert!(stats.evicted >= stats.capacity_flushes, "{tier:?}");
        // One block may go past the budget: the one decoded after the check.
        assert!(
            most <= budget + 4096,
            "{tier:?}: {most} bytes held, budget {budget}"
        );
        assert!(
            stats.blocks_decoded > u64::from(BLOCKS * ROUNDS),
            "{tier:?}"
        );
        if tier == Tier::Jit {
            assert!(stats.blocks_compiled > 0 && stats.links > 0, "{stats:?}");
        }
    }
}

/// [`Cache::lookup_after`] finds the block [`Cache::lookup`] would, from the predecessor's
/// memo of the two blocks it led to last, and never a block that is gone or whose id now
/// names another block.
#[test]
fn a_lookup_after_a_block_finds_what_a_lookup_finds() {
    use crane86_runtime::BlockKey;
    let (code, _) = chain_of(300);
    let (mut mem, mut cpu) = prot32_guest(&code, START, 1);
    let mut cache = Cache::new(Tier::Interp, 1 << 20, test_jit_options(false, false)).unwrap();
    // Flat 32-bit code without paging: the physical address is the linear one. Block 0
    // lies on the first page, blocks 260 and up on the second.
    let key = |cpu: &mut CpuState, i: u64| {
        cpu.rip = START + 16 * i;
        BlockKey::new(cpu.rip, cpu)
    };
    let a = cache.lookup(key(&mut cpu, 0), &mut cpu, &mut mem);
    let k = [260, 261, 262, 263].map(|i| key(&mut cpu, i));
    let b = cache.lookup_after(a, k[0], &mut cpu, &mut mem);
    assert_eq!(cache.block(b).key, k[0]);
    assert_eq!(cache.stats.successor_hits, 0);
    assert_eq!(cache.lookup_after(a, k[0], &mut cpu, &mut mem), b);
    assert_eq!(cache.stats.successor_hits, 1);
    // Two successors are remembered.
    let c = cache.lookup_after(a, k[1], &mut cpu, &mut mem);
    assert_eq!(cache.lookup_after(a, k[0], &mut cpu, &mut mem), b);
    assert_eq!(cache.lookup_after(a, k[1], &mut cpu, &mut mem), c);
    assert_eq!(cache.stats.successor_hits, 3);
    // A store into b drops the blocks of its page, b and c, and the next block decoded
    // takes one of their ids.
    mem.write_phys(START + 16 * 260 + 2, 1, 0x55);
    for bytes in mem.take_code_writes() {
        cache.invalidate_written(bytes, &mut mem);
    }
    let d = cache.lookup(k[2], &mut cpu, &mut mem);
    assert!(d == b || d == c, "a freed id is reused");
    for (want, i) in [(k[0], 0), (k[1], 1)] {
        let misses = cache.stats.misses;
        let found = cache.lookup_after(a, want, &mut cpu, &mut mem);
        assert_eq!(cache.block(found).key, want, "successor {i}");
        assert_eq!(
            cache.stats.misses,
            misses + 1,
            "successor {i} decoded again"
        );
    }
    assert_eq!(cache.block(d).key, k[2]);
    let e = cache.lookup_after(a, k[3], &mut cpu, &mut mem);
    assert_eq!(e, cache.lookup(k[3], &mut cpu, &mut mem));
}
