//! The jump cache (`jit/emitter/jump_cache.rs`): an indirect branch that keeps going to one
//! target skips `jump_lookup`, and every way the remembered code can go stale (another
//! target, the target's code rewritten, its page remapped by a CR3 switch) still runs the
//! right code. Each program runs in every tier, which must agree with the interpreter and
//! with the sum worked out here.

use crane86_runtime::paging::pte;
use crane86_runtime::{CpuMode, CpuState, PhysMem};
use iced_x86::code_asm::*;

use super::ret_tests::{assemble, identity, run_tiers_prepared, Prepare};

/// Where the called functions live, on a page of their own.
pub(super) const F1: u64 = 0x8000;
pub(super) const F2: u64 = 0x9000;

/// `add ebx, imm8; ret`; the immediate is byte 2.
fn add_and_return(imm: u8) -> [u8; 4] {
    [0x83, 0xc3, imm, 0xc3]
}

fn mode_of(bits: u32) -> CpuMode {
    if bits == 64 {
        CpuMode::Long64
    } else {
        CpuMode::Prot32
    }
}

/// The flat machine with `add ebx, 1; ret` at [`F1`] and `add ebx, 7; ret` at [`F2`].
fn two_functions(mem: &mut PhysMem, cpu: &mut CpuState) {
    identity(mem, cpu);
    mem.load(F1, &add_and_return(1)).unwrap();
    mem.load(F2, &add_and_return(7)).unwrap();
}

/// `bits`-bit code: ECX = `n`, EBX = 0, EAX = [`F1`], then `n` times an indirect call
/// through (R/E)AX followed by `body`.
fn call_loop(
    bits: u32,
    n: u32,
    body: impl FnOnce(&mut CodeAssembler) -> Result<(), IcedError>,
) -> Vec<u8> {
    calls_to(bits, n, F1, true, body)
}

/// `bits`-bit code: ECX = `n`, EBX = 0, EAX = `target`, then `n` times a call of `target`
/// (through (R/E)AX when `indirect`, else direct) followed by `body`.
pub(super) fn calls_to(
    bits: u32,
    n: u32,
    target: u64,
    indirect: bool,
    body: impl FnOnce(&mut CodeAssembler) -> Result<(), IcedError>,
) -> Vec<u8> {
    assemble(bits, |a| {
        let mut top = a.create_label();
        a.mov(ecx, n)?;
        a.xor(ebx, ebx)?;
        a.mov(eax, target as u32)?;
        a.set_label(&mut top)?;
        match (indirect, bits) {
            (false, _) => a.call(target)?,
            (true, 64) => a.call(rax)?,
            (true, _) => a.call(eax)?,
        }
        body(a)?;
        a.dec(ecx)?;
        a.jnz(top)
    })
}

#[test]
fn an_indirect_call_to_one_target_skips_the_lookup() {
    const N: u32 = 1000;
    for bits in [64, 32] {
        let code = call_loop(bits, N, |_| Ok(()));
        let cpu = run_tiers_prepared(mode_of(bits), &code, 1 << 22, &two_functions);
        assert_eq!(cpu.gpr[3], u64::from(N), "{bits}-bit");
        // The first calls find nothing compiled, or fill the cache; the rest hit it (and the
        // returns are predicted).
        assert!(
            cpu.jump_lookups < 4,
            "{bits}-bit: {} lookups for {N} calls",
            cpu.jump_lookups
        );
    }
}

#[test]
fn an_indirect_call_alternating_between_targets_reaches_each() {
    const N: u32 = 300;
    for bits in [64, 32] {
        let code = call_loop(bits, N, |a| a.xor(eax, (F1 ^ F2) as u32));
        let cpu = run_tiers_prepared(mode_of(bits), &code, 1 << 22, &two_functions);
        assert_eq!(cpu.gpr[3], u64::from(N / 2 * (1 + 7)), "{bits}-bit");
    }
}

/// The rewritten target drops its block: the cache's epoch changes, and the remembered code
/// (still in the arena) must not run.
#[test]
fn a_target_rewritten_between_calls_runs_its_new_code() {
    const N: u32 = 400;
    for bits in [64, 32] {
        let code = call_loop(bits, N, |a| {
            let mut skip = a.create_label();
            a.cmp(ecx, N / 2)?;
            a.jne(skip)?;
            a.mov(byte_ptr(F1 as u32 + 2), 100)?;
            a.set_label(&mut skip)?;
            a.nop()
        });
        let cpu = run_tiers_prepared(mode_of(bits), &code, 1 << 22, &two_functions);
        let (before, after) = (u64::from(N / 2 + 1), u64::from(N / 2 - 1));
        assert_eq!(cpu.gpr[3], before + 100 * after, "{bits}-bit");
    }
}

/// Page tables A map the first 2 MiB onto themselves with 4 KiB pages; tables B do the same
/// but map [`F1`]'s page onto [`F2`]'s.
pub(super) const TABLES_A: u64 = 0x18_0000;
pub(super) const TABLES_B: u64 = 0x18_4000;

fn remappable(mem: &mut PhysMem, cpu: &mut CpuState) {
    mem.load(F1, &add_and_return(1)).unwrap();
    mem.load(F2, &add_and_return(100)).unwrap();
    remappable_tables(mem, cpu);
}

/// Builds page tables A and B ([`TABLES_B`]) for 64-bit code and loads CR3 with A.
pub(super) fn remappable_tables(mem: &mut PhysMem, cpu: &mut CpuState) {
    let flags = pte::P | pte::RW | pte::A;
    for (at, f1_frame) in [(TABLES_A, F1), (TABLES_B, F2)] {
        let (pdpt, pd, pt) = (at + 0x1000, at + 0x2000, at + 0x3000);
        mem.write_phys(at, 8, pdpt | flags);
        mem.write_phys(pdpt, 8, pd | flags);
        mem.write_phys(pd, 8, pt | flags);
        for i in 0..512u64 {
            let frame = if i << 12 == F1 { f1_frame } else { i << 12 };
            mem.write_phys(pt + 8 * i, 8, frame | flags | pte::D);
        }
    }
    cpu.cr3 = TABLES_A;
}

/// The body of a [`calls_to`] loop of `n` calls that loads CR3 with tables B
/// ([`TABLES_B`]) after the call with ECX = `n / 2`, then runs `then`.
pub(super) fn switch_to_b_halfway(
    a: &mut CodeAssembler,
    n: u32,
    then: impl FnOnce(&mut CodeAssembler) -> Result<(), IcedError>,
) -> Result<(), IcedError> {
    let mut skip = a.create_label();
    a.cmp(ecx, n / 2)?;
    a.jne(skip)?;
    a.mov(edx, TABLES_B as u32)?;
    a.mov(cr3, rdx)?;
    then(a)?;
    a.set_label(&mut skip)?;
    a.nop()
}

/// EBX after `n` calls that add 1 under tables A and 100 under B, switched by
/// [`switch_to_b_halfway`]: the calls with ECX = `n` down to `n / 2` ran under A.
pub(super) fn sum_switched_halfway(n: u32) -> u64 {
    u64::from(n / 2 + 1) + 100 * u64::from(n / 2 - 1)
}

/// A CR3 switch maps the target's linear page onto another physical page: the remembered
/// code is the old page's, which the TLB's addend tells apart.
#[test]
fn a_target_page_remapped_between_calls_runs_the_new_pages_code() {
    const N: u32 = 400;
    let code = call_loop(64, N, |a| switch_to_b_halfway(a, N, |_| Ok(())));
    let prepare: Prepare = &remappable;
    let cpu = run_tiers_prepared(CpuMode::Long64, &code, 1 << 22, prepare);
    assert_eq!(cpu.gpr[3], sum_switched_halfway(N));
}
