//! Direct chaining ([`crate::jit::direct`]): linked exits jump straight to their target's
//! code, unlinking points them back at their stub, and a link is only made into code whose
//! slot serves that target; and code cut into hot and cold parts ([`crate::jit::split`]).

use crane86_runtime::{BlockKey, CpuState, PhysMem};

use super::{Cache, Tier};
use crate::jit::slot_token;
use crate::testutil::{prot32_guest, test_jit_options};

use super::tests::{chain_of, START};

/// Blocks in the chain.
const BLOCKS: u32 = 200;
/// Times the chain runs.
const ROUNDS: u32 = 50;

struct Run {
    cpu: CpuState,
    cache: Cache,
    mem: PhysMem,
    /// Trips through the run loop.
    steps: u64,
}

/// Runs [`chain`] compiled, as the run loop does, checking the links after every step.
fn run() -> Run {
    let (code, hlt) = chain_of(BLOCKS);
    let (mut mem, mut cpu) = prot32_guest(&code, START, u64::from(ROUNDS));
    let opts = test_jit_options(false, false);
    let mut cache = Cache::new(Tier::Jit, 1 << 22, opts).unwrap();
    let steps = crate::testutil::drive(
        &mut cache,
        &mut cpu,
        &mut mem,
        hlt,
        1_000_000,
        |_, _, _| {},
        |cache| {
            assert!(
                cache.links_consistent(),
                "a jump leads elsewhere than its slot"
            )
        },
    );
    Run {
        cpu,
        cache,
        mem,
        steps,
    }
}

#[test]
fn linked_exits_jump_without_the_run_loop() {
    let r = run();
    let sum: u64 = (0..u64::from(BLOCKS)).sum();
    assert_eq!(r.cpu.gpr[3], sum * u64::from(ROUNDS));
    let (jumps, linked) = r.cache.direct_jumps();
    assert!(jumps > BLOCKS as usize, "{jumps} direct jumps");
    assert!(linked >= BLOCKS as usize, "{linked} of {jumps} linked");
    // Each exit comes back to the run loop once, to be linked; then the budget (1000
    // instructions a step) is what ends a trip: a chain that only ran through stubs would
    // take a trip per block.
    let insns = u64::from(BLOCKS * ROUNDS) * 2;
    assert!(
        r.steps < u64::from(BLOCKS) + 2 * insns / 1000 + 10,
        "{} trips through the run loop",
        r.steps
    );
}

#[test]
fn compiled_code_is_cut_into_hot_and_cold_parts() {
    let r = run();
    let s = &r.cache.stats;
    assert!(s.blocks_compiled > u64::from(BLOCKS), "{s:?}");
    // The block whose exit goes back has cold code (the way back to the run loop when the
    // budget runs out), and the chain ran through the rewritten jumps between the parts;
    // the blocks whose exits all go forward only retire, and have none.
    assert!(s.uncut < s.blocks_compiled, "{s:?}");
    assert!(s.uncut >= u64::from(BLOCKS), "{s:?}");
    assert!(s.cold_bytes > 0 && s.cold_bytes < s.code_bytes, "{s:?}");
}

#[test]
fn dropped_targets_point_their_jumps_back_at_the_stub() {
    let mut r = run();
    let (_, linked) = r.cache.direct_jumps();
    assert!(linked > 0);
    // Writing the code page drops every block on it: no jump may lead into dropped code.
    r.mem.write_phys(START + 2, 1, 7);
    for bytes in r.mem.take_code_writes() {
        r.cache.invalidate_written(bytes, &mut r.mem);
    }
    assert!(r.cache.links_consistent());
    assert_eq!(r.cache.direct_jumps().1, 0);
}

#[test]
fn an_exit_is_linked_only_to_the_target_its_code_chose() {
    let mut r = run();
    let cpu = r.cpu.clone();
    // Two consecutive blocks: the first's exit 0 leads to the second.
    let key = |ip: u64| {
        let mut c = cpu.clone();
        c.rip = ip;
        BlockKey::new(ip, &c)
    };
    let first = r.cache.lookup(key(START), &mut r.cpu, &mut r.mem);
    let second = r.cache.lookup(key(START + 16), &mut r.cpu, &mut r.mem);
    let slot = (0..2)
        .find(|&s| r.cache.block(first).chain.targets[s] == Some(START + 16))
        .expect("an exit to the next block");
    // As if the first block's code had been compiled again, with that slot serving
    // another target: a token from its old code must not link the new code's slot.
    let b = r.cache.blocks[first as usize].as_mut().unwrap();
    b.chain.targets[slot] = Some(START + 32);
    b.unlink(slot, &mut r.cache.arena);
    r.cache.link(slot_token(first, slot), second, &cpu);
    assert_eq!(
        r.cache.block(first).slots[slot],
        0,
        "linked to the wrong target"
    );
    r.cache.block_mut(first).chain.targets[slot] = Some(START + 16);
    r.cache.link(slot_token(first, slot), second, &cpu);
    assert_ne!(r.cache.block(first).slots[slot], 0, "not linked");
    assert!(r.cache.links_consistent());
}

/// An exit request is seen at the first exit that may close a loop (a jump back), not at
/// every chained exit: the run goes through the chain's 200 forward jumps and stops at the
/// `jnz` back to its start, long before the budget would end it.
#[test]
fn an_exit_request_is_seen_at_the_next_backward_exit() {
    let mut r = run();
    r.cpu.rip = START;
    r.cpu.gpr[1] = 10; // ECX: more rounds to go
    r.cpu.gpr[3] = 0; // EBX: the sum
    r.cpu.link = 0;
    r.cpu.exit_request.store(
        crane86_runtime::state::EXIT_STOP,
        std::sync::atomic::Ordering::Release,
    );
    let key = BlockKey::new(START, &r.cpu);
    let id = r.cache.lookup(key, &mut r.cpu, &mut r.mem);
    assert!(
        r.cache.prepare(id, r.cpu.cc.op).unwrap(),
        "the chain is compiled"
    );
    const BUDGET: i64 = 1_000_000;
    r.cpu.budget = BUDGET;
    r.cache.run_compiled(id, &mut r.cpu, &mut r.mem);
    let retired = BUDGET - r.cpu.budget;
    // Each block is two instructions, and the `dec ecx; jnz` two more.
    assert_eq!(retired, i64::from(BLOCKS) * 2 + 2, "retired");
    assert_eq!(r.cpu.rip, START);
    assert_eq!(r.cpu.gpr[1], 9);
    let sum: u64 = (0..u64::from(BLOCKS)).sum();
    assert_eq!(r.cpu.gpr[3], sum);
}
