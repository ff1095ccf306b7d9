//! Return-address prediction (`crate::jit`'s near RET, `crane86_runtime::rsb`): returns that
//! match their CALL go straight to the code after it, and every way a prediction can go
//! stale (a return address overwritten on the stack, the code after the CALL rewritten, the
//! cache flushed, more nested calls than the buffer holds) still returns to the right place.
//! Each program runs in every tier, which must agree; the JIT must also predict.

use crane86_runtime::{BlockKey, CpuMode, CpuState, PhysMem};
use iced_x86::code_asm::*;

use super::{Cache, Tier};
use crate::jit::JitOptions;

pub(super) const START: u64 = 0x1000;
pub(super) const RAM: u64 = 1 << 21;

const TIERS: [Tier; 3] = [Tier::Interp, Tier::Jit, Tier::Auto { threshold: 3 }];

/// Assembles `f`'s program at [`START`] for `bits`-bit code; it must end at its last byte
/// (the run stops there, where a HLT follows).
pub(super) fn assemble(
    bits: u32,
    f: impl FnOnce(&mut CodeAssembler) -> Result<(), IcedError>,
) -> Vec<u8> {
    let mut a = CodeAssembler::new(bits).unwrap();
    f(&mut a).unwrap();
    a.assemble(START).unwrap()
}

/// Prepares memory and the CPU before a run, after the program is loaded: sets up paging
/// for 64-bit mode.
pub(super) type Prepare<'a> = &'a dyn Fn(&mut PhysMem, &mut CpuState);

/// [`Prepare`] for the flat machines: 64-bit code under identity paging, other modes flat
/// without paging.
pub(super) fn identity(mem: &mut PhysMem, cpu: &mut CpuState) {
    if cpu.mode == CpuMode::Long64 {
        cpu.cr3 = crane86_runtime::paging::identity_map(mem, RAM - 0x2000);
    }
}

/// Runs `code` in `mode` (set up by `prepare`) in `tier` as the run loop does, with a cache
/// of `arena` bytes; returns the final CPU.
fn run(mode: CpuMode, code: &[u8], tier: Tier, arena: usize, prepare: Prepare) -> CpuState {
    run_counted(mode, code, tier, arena, prepare).0
}

/// [`run`], also returning how many times the run loop ran a block.
pub(super) fn run_counted(
    mode: CpuMode,
    code: &[u8],
    tier: Tier,
    arena: usize,
    prepare: Prepare,
) -> (CpuState, u64) {
    let mut mem = PhysMem::new(RAM).unwrap();
    mem.load(START, code).unwrap();
    let end = START + code.len() as u64;
    mem.load(end, &[0xf4]).unwrap();
    let mut cpu = CpuState::new(mode);
    prepare(&mut mem, &mut cpu);
    cpu.rip = START;
    cpu.gpr[4] = 0x10_0000;
    let opts = crate::testutil::test_jit_options(true, false);
    let mut cache = Cache::new(tier, arena, opts).unwrap();
    let steps = crate::testutil::drive(
        &mut cache,
        &mut cpu,
        &mut mem,
        end,
        2_000_000,
        |_, _, _| {},
        |_| {},
    );
    (cpu, steps)
}

/// Runs `code` in every tier; asserts they agree on the general registers and returns the
/// JIT tier's CPU.
fn run_tiers(mode: CpuMode, code: &[u8], arena: usize) -> CpuState {
    run_tiers_prepared(mode, code, arena, &identity)
}

/// [`run_tiers`] with memory and the CPU set up by `prepare`.
pub(super) fn run_tiers_prepared(
    mode: CpuMode,
    code: &[u8],
    arena: usize,
    prepare: Prepare,
) -> CpuState {
    let mut jit = None;
    let mut first: Option<[u64; 16]> = None;
    for tier in TIERS {
        let cpu = run(mode, code, tier, arena, prepare);
        match first {
            None => first = Some(cpu.gpr),
            Some(g) => assert_eq!(g, cpu.gpr, "{tier:?} differs from the interpreter"),
        }
        if tier == Tier::Jit {
            jit = Some(cpu);
        }
    }
    jit.unwrap()
}

#[test]
fn matching_returns_are_predicted() {
    const N: u64 = 1000;
    for bits in [64, 32] {
        let code = assemble(bits, |a| {
            let mut top = a.create_label();
            let mut f = a.create_label();
            let mut end = a.create_label();
            a.mov(ecx, N as u32)?;
            a.xor(ebx, ebx)?;
            a.set_label(&mut top)?;
            a.call(f)?;
            a.dec(ecx)?;
            a.jnz(top)?;
            a.jmp(end)?;
            a.set_label(&mut f)?;
            a.add(ebx, 3)?;
            a.ret()?;
            a.set_label(&mut end)?;
            a.nop()
        });
        let mode = if bits == 64 {
            CpuMode::Long64
        } else {
            CpuMode::Prot32
        };
        let cpu = run_tiers(mode, &code, 1 << 22);
        assert_eq!(cpu.gpr[3], 3 * N, "{bits}-bit");
        // Without prediction every RET calls `jump_lookup`; with it, at most the first ones
        // (before the return slot is linked) miss.
        assert!(
            cpu.jump_lookups < 4,
            "{bits}-bit: {} lookups for {N} returns",
            cpu.jump_lookups
        );
    }
}

#[test]
fn return_address_overwritten_on_the_stack_goes_to_the_new_address() {
    let code = assemble(64, |a| {
        let mut top = a.create_label();
        let mut back = a.create_label();
        let mut f = a.create_label();
        let mut plain = a.create_label();
        let mut alt = a.create_label();
        let mut end = a.create_label();
        a.mov(ecx, 200u32)?;
        a.xor(ebx, ebx)?;
        a.xor(edx, edx)?;
        a.set_label(&mut top)?;
        a.call(f)?;
        a.add(rbx, 1)?;
        a.set_label(&mut back)?;
        a.dec(ecx)?;
        a.jnz(top)?;
        a.jmp(end)?;
        // Every third call returns to `alt` instead.
        a.set_label(&mut f)?;
        a.mov(eax, ecx)?;
        a.xor(edx, edx)?;
        a.mov(esi, 3u32)?;
        a.div(esi)?;
        a.test(edx, edx)?;
        a.jnz(plain)?;
        a.lea(rax, qword_ptr(alt))?;
        a.mov(qword_ptr(rsp), rax)?;
        a.set_label(&mut plain)?;
        a.ret()?;
        a.set_label(&mut alt)?;
        a.add(rdi, 1)?;
        a.jmp(back)?;
        a.set_label(&mut end)?;
        a.nop()
    });
    let cpu = run_tiers(CpuMode::Long64, &code, 1 << 22);
    // ecx = 200..1: multiples of 3 go to `alt` (66 of them).
    assert_eq!(cpu.gpr[7], 66);
    assert_eq!(cpu.gpr[3], 200 - 66);
}

#[test]
fn code_after_the_call_rewritten_before_the_return_runs_new_code() {
    let code = assemble(64, |a| {
        let mut top = a.create_label();
        let mut cont = a.create_label();
        let mut f = a.create_label();
        let mut plain = a.create_label();
        let mut end = a.create_label();
        a.mov(ecx, 100u32)?;
        a.xor(ebx, ebx)?;
        a.set_label(&mut top)?;
        a.call(f)?;
        a.set_label(&mut cont)?;
        // 48 83 C3 01: the callee patches the immediate (byte 3).
        a.db(&[0x48, 0x83, 0xc3, 0x01])?;
        a.dec(ecx)?;
        a.jnz(top)?;
        a.jmp(end)?;
        a.set_label(&mut f)?;
        a.cmp(ecx, 50)?;
        a.jne(plain)?;
        a.lea(rax, qword_ptr(cont))?;
        a.mov(byte_ptr(rax + 3), 5)?;
        a.set_label(&mut plain)?;
        a.ret()?;
        a.set_label(&mut end)?;
        a.nop()
    });
    let cpu = run_tiers(CpuMode::Long64, &code, 1 << 22);
    // Iterations with ecx = 100..51 add 1; from the one that patched (ecx = 50) on, 5.
    assert_eq!(cpu.gpr[3], 50 + 50 * 5);
}

#[test]
fn returns_after_cache_flushes_run_correctly() {
    // The callee runs through more distinct blocks than the smallest cache holds, so every
    // call flushes the cache (and its code arena) before its RET.
    const BLOCKS: u32 = 3000;
    const CALLS: u32 = 3;
    let code = assemble(32, |a| {
        let mut top = a.create_label();
        let mut chain = a.create_label();
        let mut end = a.create_label();
        a.mov(ecx, CALLS)?;
        a.xor(ebx, ebx)?;
        a.xor(esi, esi)?;
        a.set_label(&mut top)?;
        a.call(chain)?;
        a.inc(esi)?;
        a.dec(ecx)?;
        a.jnz(top)?;
        a.jmp(end)?;
        a.set_label(&mut chain)?;
        for i in 0..BLOCKS {
            let mut next = a.create_label();
            a.add(ebx, i)?;
            a.jmp(next)?;
            a.set_label(&mut next)?;
        }
        a.ret()?;
        a.set_label(&mut end)?;
        a.nop()
    });
    let cpu = run_tiers(CpuMode::Prot32, &code, 64 << 10);
    let sum: u64 = (0..u64::from(BLOCKS)).sum();
    assert_eq!(cpu.gpr[3], (sum * u64::from(CALLS)) & 0xffff_ffff);
    assert_eq!(cpu.gpr[6], u64::from(CALLS));
}

#[test]
fn recursion_deeper_than_the_buffer_returns_correctly() {
    // sum(n) = n + sum(n - 1), 100 deep (the buffer holds 32), ten times.
    const DEPTH: u32 = 100;
    const ROUNDS: u32 = 10;
    let code = assemble(64, |a| {
        let mut top = a.create_label();
        let mut rec = a.create_label();
        let mut base = a.create_label();
        let mut end = a.create_label();
        a.mov(ebp, ROUNDS)?;
        a.xor(ebx, ebx)?;
        a.set_label(&mut top)?;
        a.mov(ecx, DEPTH)?;
        a.xor(eax, eax)?;
        a.call(rec)?;
        a.add(rbx, rax)?;
        a.dec(ebp)?;
        a.jnz(top)?;
        a.jmp(end)?;
        a.set_label(&mut rec)?;
        a.test(ecx, ecx)?;
        a.jz(base)?;
        a.push(rcx)?;
        a.dec(ecx)?;
        a.call(rec)?;
        a.pop(rcx)?;
        a.add(rax, rcx)?;
        a.set_label(&mut base)?;
        a.ret()?;
        a.set_label(&mut end)?;
        a.nop()
    });
    let cpu = run_tiers(CpuMode::Long64, &code, 1 << 22);
    let sum = u64::from(DEPTH * (DEPTH + 1) / 2);
    assert_eq!(cpu.gpr[3], sum * u64::from(ROUNDS));
    // The innermost 32 returns of each round are predicted, the outer ones were overwritten
    // in the buffer and look up.
    let rets = u64::from((DEPTH + 2) * ROUNDS);
    assert!(
        cpu.jump_lookups > 0 && cpu.jump_lookups < rets,
        "{} lookups for {rets} returns",
        cpu.jump_lookups
    );
}

#[test]
fn predictions_of_one_cache_are_not_used_by_another() {
    // A CPU state that ran under one cache and then runs under another (as tests and tools
    // do) carries predictions naming the first cache's slots: the epochs differ.
    let a = Cache::new(Tier::Jit, 1 << 20, JitOptions::default()).unwrap();
    let b = Cache::new(Tier::Jit, 1 << 20, JitOptions::default()).unwrap();
    assert_ne!(*a.epoch, *b.epoch);
    assert_ne!(*a.epoch, 0);
}

#[test]
fn dropping_blocks_or_code_changes_the_epoch() {
    let code = assemble(32, |a| {
        a.add(ebx, 1)?;
        a.nop()
    });
    let mut mem = PhysMem::new(RAM).unwrap();
    mem.load(START, &code).unwrap();
    let mut cpu = CpuState::new(CpuMode::Prot32);
    cpu.rip = START;
    let mut cache = Cache::new(Tier::Jit, 1 << 20, JitOptions::default()).unwrap();
    let key = BlockKey::new(START, &cpu);
    let id = cache.lookup(key, &mut cpu, &mut mem);
    assert!(cache.prepare(id, cpu.cc.op).unwrap());
    let e0 = *cache.epoch;
    cache.invalidate_page(START & !0xfff, &mut mem);
    let e1 = *cache.epoch;
    assert_ne!(e0, e1, "SMC invalidation");
    let id = cache.lookup(key, &mut cpu, &mut mem);
    assert!(cache.prepare(id, cpu.cc.op).unwrap());
    cache.flush_code();
    let e2 = *cache.epoch;
    assert_ne!(e1, e2, "arena flush");
    cache.flush(&mut mem);
    assert_ne!(e2, *cache.epoch, "capacity flush");
}
