//! The baseline tier against the interpreter, beyond the shared `run_both` snippets (which
//! every tier runs, the baseline included): that blocks do run in baseline code, and the
//! run-level contract of `run_block` (retired counts, faults mid-block, stores into the
//! block's own code, early exits).

use crane86_runtime::{CpuMode, CpuState, Exception, PhysMem};
use iced_x86::code_asm::*;

use crate::cache::Tier;
use crate::testutil::{asm, run_tier, Outcome, CODE, DATA};
use iced_x86::code_asm::CodeAssembler;

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

/// Assembles one block of a test.
type Assemble = dyn Fn(&mut CodeAssembler);

/// A baseline cache holding `blocks` (32-bit code: each its start and a closure that
/// assembles it), each translated by one run from its start. Returns the cache, the CPU
/// after those runs, memory and the blocks' ids.
fn translated(
    blocks: &[(u64, &Assemble)],
) -> (
    crate::cache::Cache,
    CpuState,
    PhysMem,
    Vec<crate::cache::BlockId>,
) {
    use crane86_runtime::BlockKey;
    let mut mem = PhysMem::new(1 << 20).unwrap();
    for (ip, f) in blocks {
        let mut a = CodeAssembler::new(32).unwrap();
        f(&mut a);
        mem.load(*ip, &a.assemble(*ip).unwrap()).unwrap();
    }
    let mut cpu = CpuState::new(CpuMode::Prot32);
    let opts = crate::testutil::test_jit_options(false, false);
    let mut cache = crate::cache::Cache::new(Tier::Baseline, 1 << 22, opts).unwrap();
    let mut ids = Vec::new();
    for (ip, _) in blocks {
        cpu.rip = *ip;
        let id = cache.lookup(BlockKey::new(*ip, &cpu), &mut cpu, &mut mem);
        cache.prepare(id, cpu.cc.op).unwrap();
        let len = cache.block(id).decoded.insns.len() as u64;
        let r = cache.run_cold(id, &mut cpu, &mut mem, &mut NoPorts, 1000, true, 0);
        assert_eq!(
            (r.retired, r.last, r.whole, r.baseline),
            (len, id, true, true)
        );
        ids.push(id);
    }
    (cache, cpu, mem, ids)
}

/// Two blocks that jump to each other, in 32-bit code: A at `CODE` adds 1 to EAX, B at
/// [`B_IP`] 2 to EBX. Returns the cache with both translated and linked both ways, and
/// their ids.
fn ping_pong() -> (
    crate::cache::Cache,
    CpuState,
    PhysMem,
    crate::cache::BlockId,
    crate::cache::BlockId,
) {
    let (mut cache, cpu, mem, ids) = translated(&[
        (CODE, &|a| {
            a.add(eax, 1).unwrap();
            a.jmp(B_IP).unwrap();
        }),
        (B_IP, &|a| {
            a.add(ebx, 2).unwrap();
            a.jmp(CODE).unwrap();
        }),
    ]);
    assert_eq!((cpu.rip, cpu.gpr[0], cpu.gpr[3]), (CODE, 1, 2));
    cache.link_baseline(ids[0], ids[1]);
    cache.link_baseline(ids[1], ids[0]);
    (cache, cpu, mem, ids[0], ids[1])
}

/// Where [`ping_pong`]'s block B starts: on the page after A's, so that a store into B's
/// code drops B alone. (Baseline links are made between blocks of one page; the cache
/// leaves that rule to its caller, `machine::chain`.)
const B_IP: u64 = CODE + 0x1000;

struct NoPorts;

impl crane86_runtime::PortIo for NoPorts {
    fn port_read(&mut self, _port: u16, _size: u8) -> u32 {
        0
    }
    fn port_write(&mut self, _port: u16, _size: u8, _value: u32) {}
}

#[test]
fn linked_blocks_chain_within_the_budget_and_say_where_they_stopped() {
    let (mut cache, mut cpu, mut mem, a, b) = ping_pong();
    // A, then five more blocks for a budget of five: A B A B A B.
    let r = cache.run_cold(a, &mut cpu, &mut mem, &mut NoPorts, 1000, true, 5);
    assert_eq!((r.retired, r.last, r.whole), (12, b, true));
    assert_eq!((cpu.rip, cpu.gpr[0], cpu.gpr[3]), (CODE, 4, 8));
    // The run's limit stops the chain after the block that reaches it.
    let r = cache.run_cold(a, &mut cpu, &mut mem, &mut NoPorts, 5, true, 50);
    assert_eq!((r.retired, r.last), (6, a));
    assert_eq!(cpu.rip, B_IP);
}

#[test]
fn a_block_entered_through_links_returns_once_its_credit_is_spent() {
    let (mut cache, mut cpu, mut mem, a, b) = ping_pong();
    let runs = cache.block(b).runs;
    // A, then 16 entries each of B and A; B's 17th entry finds no credit left and returns
    // before running, with A as the last block and RIP at B.
    let r = cache.run_cold(a, &mut cpu, &mut mem, &mut NoPorts, 100_000, true, 1000);
    assert_eq!((r.retired, r.last, r.whole), (66, a, true));
    assert_eq!((cpu.rip, cpu.gpr[0], cpu.gpr[3]), (B_IP, 18, 34));
    // Entering B from the cache counts the runs that came through its chain entry.
    let r = cache.run_cold(b, &mut cpu, &mut mem, &mut NoPorts, 100_000, true, 0);
    assert_eq!(r.retired, 2);
    assert_eq!(cache.block(b).runs, runs + 16);
}

#[test]
fn a_block_dropped_for_a_store_into_its_code_is_no_longer_chained_to() {
    let (mut cache, mut cpu, mut mem, a, _) = ping_pong();
    assert!(cache.invalidate_written(B_IP..B_IP + 1, &mut mem));
    let r = cache.run_cold(a, &mut cpu, &mut mem, &mut NoPorts, 1000, true, 10);
    assert_eq!((r.retired, r.last, r.whole), (2, a, true));
    assert_eq!(cpu.rip, B_IP);
}

/// A block ending in a conditional branch keeps a link to each of its two successors:
/// chained runs alternate between them without returning, and linking either again changes
/// nothing (with one link the two kept replacing each other).
#[test]
fn a_conditional_branch_keeps_both_successors_linked() {
    const X_IP: u64 = CODE + 0x100;
    // C: EDX += 1, to X when odd, else on to Y (the next instruction); X and Y go back to C.
    let c = |a: &mut CodeAssembler| {
        a.add(edx, 1).unwrap();
        a.test(dl, 1).unwrap();
        a.jnz(X_IP).unwrap();
    };
    let c_len = {
        let mut a = CodeAssembler::new(32).unwrap();
        c(&mut a);
        a.assemble(CODE).unwrap().len() as u64
    };
    let (mut cache, mut cpu, mut mem, ids) = translated(&[
        (X_IP, &|a| {
            a.add(eax, 1).unwrap();
            a.jmp(CODE).unwrap();
        }),
        (CODE + c_len, &|a| {
            a.add(ebx, 2).unwrap();
            a.jmp(CODE).unwrap();
        }),
        (CODE, &c),
    ]);
    let (x, y, c) = (ids[0], ids[1], ids[2]);
    assert_eq!(cpu.rip, X_IP, "C ran once, EDX odd");
    for (from, to) in [(c, x), (c, y), (x, c), (y, c)] {
        cache.link_baseline(from, to);
    }
    let links = cache.stats.baseline.links;
    assert_eq!(links, 4);
    cache.link_baseline(c, x);
    cache.link_baseline(c, y);
    assert_eq!(cache.stats.baseline.links, links, "a link made again");
    let before = (cpu.gpr[0], cpu.gpr[3], cpu.gpr[2]);
    // X, then six more blocks: C Y C X C Y.
    cpu.rip = X_IP;
    let r = cache.run_cold(x, &mut cpu, &mut mem, &mut NoPorts, 1000, true, 6);
    assert_eq!(
        (r.retired, r.last, r.whole),
        (2 + 3 + 2 + 3 + 2 + 3 + 2, y, true)
    );
    assert_eq!(
        (cpu.gpr[0], cpu.gpr[3], cpu.gpr[2]),
        (before.0 + 2, before.1 + 4, before.2 + 3)
    );
    assert_eq!(cpu.rip, CODE);
}
