//! The baseline tier against the interpreter, beyond the shared `run_both` snippets (which
//! every tier runs, the baseline included): that blocks do run in baseline code, and the
//! run-level contract of `run_block` (retired counts, faults mid-block, stores into the
//! block's own code, early exits).

use crane86_runtime::{CpuMode, CpuState, Exception, PhysMem};
use iced_x86::code_asm::*;

use crate::cache::Tier;
use crate::testutil::{asm, run_tier, Outcome, CODE, DATA};

/// Runs `code` interpreted and in the baseline tier; asserts that they agree, retired
/// counts included, and that baseline code ran at least `min_baseline` instructions.
fn agree(mode: CpuMode, code: &[u8], setup: impl Fn(&mut CpuState, &mut PhysMem), min: u64) {
    let i = Box::new(run_tier(Tier::Interp, mode, code, &setup));
    let b = Box::new(run_tier(Tier::Baseline, mode, code, &setup));
    check(&i, &b);
    assert!(
        b.baseline_insns >= min,
        "{} instructions ran in baseline code, expected at least {min}",
        b.baseline_insns
    );
}

fn check(i: &Outcome, b: &Outcome) {
    assert_eq!(i.cpu.gpr, b.cpu.gpr, "registers");
    assert_eq!(i.cpu.rip, b.cpu.rip, "rip");
    assert_eq!(i.flags(), b.flags(), "rflags");
    assert_eq!(i.fault, b.fault, "fault");
    assert_eq!(i.cpu.retired, b.cpu.retired, "instructions retired");
    assert_eq!(i.cpu.cr2, b.cpu.cr2, "cr2");
    for a in (DATA..DATA + 0x1000).step_by(8) {
        assert_eq!(i.m(a, 8), b.m(a, 8), "memory at {a:#x}");
    }
}

#[test]
fn a_loop_with_memory_and_flags_across_blocks_runs_in_baseline_code() {
    let code = asm(64, |a| {
        let mut top = a.create_label();
        let mut skip = a.create_label();
        a.mov(rsi, DATA).unwrap();
        a.mov(ecx, 200u32).unwrap();
        a.xor(eax, eax).unwrap();
        a.set_label(&mut top).unwrap();
        a.add(eax, ecx).unwrap();
        a.imul_3(edx, eax, 7).unwrap();
        a.mov(qword_ptr(rsi + rcx * 8), rdx).unwrap();
        a.movzx(ebx, byte_ptr(rsi + rcx)).unwrap();
        // The flags of this compare are read by the next block's JA.
        a.cmp(ebx, 0x80).unwrap();
        a.ja(skip).unwrap();
        a.sub(word_ptr(rsi + 8), bx).unwrap();
        a.shl(rdx, 3).unwrap();
        a.set_label(&mut skip).unwrap();
        a.bswap(edx).unwrap();
        a.dec(ecx).unwrap();
        a.jnz(top).unwrap();
        a.mov(r8, qword_ptr(rsi + 16)).unwrap();
        a.setc(r9b).unwrap();
    });
    agree(CpuMode::Long64, &code, |_, _| {}, 1000);
}

#[test]
fn a_fault_inside_a_block_retires_the_instructions_before_it() {
    // The load faults on a page the harness does not map (#PF with CR2).
    let code = asm(64, |a| {
        a.mov(eax, 1u32).unwrap();
        a.add(rax, 2).unwrap();
        a.mov(rbx, 0x100_0000_0000u64).unwrap();
        a.mov(rcx, qword_ptr(rbx)).unwrap();
        a.mov(edx, 9u32).unwrap();
    });
    let o = Box::new(run_tier(Tier::Baseline, CpuMode::Long64, &code, &|_, _| {}));
    assert_eq!(o.fault.map(|f| f.exception), Some(Exception::PageFault));
    assert_eq!(o.cpu.retired, 3);
    assert_eq!(o.baseline_insns, 3);
    agree(CpuMode::Long64, &code, |_, _| {}, 3);
}

#[test]
fn a_raised_fault_leaves_rip_at_its_instruction() {
    // #DE from a zero divisor, decided at run time.
    let code = asm(32, |a| {
        a.mov(eax, 100u32).unwrap();
        a.xor(edx, edx).unwrap();
        a.div(ecx).unwrap();
        a.mov(ebx, 1u32).unwrap();
    });
    agree(CpuMode::Prot32, &code, |cpu, _| cpu.gpr[1] = 0, 2);
    agree(CpuMode::Prot32, &code, |cpu, _| cpu.gpr[1] = 7, 4);
}

#[test]
fn a_store_into_the_next_instruction_is_seen_by_it() {
    // The store rewrites the immediate of the MOV after it, in the same block: the block
    // must stop after the store so the MOV is decoded again.
    let code = asm(32, |a| {
        a.mov(byte_ptr(CODE as u32 + 8), 0x55).unwrap(); // 7 bytes
        a.mov(ecx, 0x1111_1111u32).unwrap(); // B9 + imm32: the imm's first byte at 8
        a.mov(edx, 2u32).unwrap();
    });
    let i = Box::new(run_tier(Tier::Interp, CpuMode::Prot32, &code, &|_, _| {}));
    assert_eq!(i.r(1), 0x1111_1155);
    let b = Box::new(run_tier(Tier::Baseline, CpuMode::Prot32, &code, &|_, _| {}));
    check(&i, &b);
    assert!(b.baseline_insns >= 1);
}

#[test]
fn a_rep_string_instruction_with_no_iterations_goes_on_at_the_next() {
    let code = asm(64, |a| {
        a.mov(rdi, DATA).unwrap();
        a.mov(eax, 0x61u32).unwrap();
        a.rep().stosb().unwrap();
        a.mov(ebx, 5u32).unwrap();
        a.mov(ecx, 40u32).unwrap();
        a.rep().stosb().unwrap();
        a.mov(edx, 6u32).unwrap();
    });
    agree(CpuMode::Long64, &code, |cpu, _| cpu.gpr[1] = 0, 5);
}

#[test]
fn sixteen_bit_code_with_segments_runs_in_baseline_code() {
    let code = asm(16, |a| {
        let mut top = a.create_label();
        a.mov(ax, 0x0800u32).unwrap();
        a.mov(ds, ax).unwrap();
        a.mov(cx, 50u32).unwrap();
        a.set_label(&mut top).unwrap();
        a.add(word_ptr(0x10), cx).unwrap();
        a.adc(dx, 0).unwrap();
        a.loop_(top).unwrap();
        a.mov(bx, word_ptr(0x10)).unwrap();
    });
    agree(CpuMode::Real16, &code, |_, _| {}, 100);
}
