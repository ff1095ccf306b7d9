//! Paging behaviour that the nasm system guests do not cover: SMAP with STAC/CLAC, SMEP,
//! protection keys in hot compiled loops, and what the TLB keeps across privilege levels,
//! in every tier. The flat 64-bit machine
//! maps RAM with user pages (`paging::identity_map`), so every page is a user page here.

use crane86_machine::{ExceptionPolicy, Machine, MachineConfig, RunEnd};
use crane86_runtime::{CpuMode, Exception, Gpr};
use crane86_translator::Tier;
use iced_x86::code_asm::*;

mod common;

const TIERS: [Tier; 3] = [Tier::Interp, Tier::Jit, Tier::Auto { threshold: 2 }];

fn run(code: &[u8], tier: Tier) -> (Machine, RunEnd) {
    let mut m = Machine::new(&MachineConfig {
        tier,
        exceptions: ExceptionPolicy::Stop,
        ..MachineConfig::default()
    })
    .unwrap();
    m.load_flat(code, 0x1000, 0x1000, CpuMode::Long64).unwrap();
    let end = m.run(Some(10_000)).unwrap();
    (m, end)
}

fn expect_pf(m: &Machine, end: RunEnd, tier: Tier, code: u32, rip: u64, fault_addr: u64) {
    match end {
        RunEnd::Fault { fault, rip: at } => {
            assert_eq!(fault.exception, Exception::PageFault, "{tier:?}");
            assert_eq!(fault.error_code, code, "{tier:?}: error code");
            assert_eq!(at, rip, "{tier:?}: faulting RIP");
        }
        other => panic!("{tier:?}: {other:?}"),
    }
    assert_eq!(m.cpu.cr2, fault_addr, "{tier:?}: CR2");
}

/// With CR4.SMAP, kernel reads of user pages work between STAC and CLAC and fault after
/// CLAC (P set: a protection fault, not a missing page), in a loop so the JIT runs it too.
#[test]
fn smap_follows_stac_and_clac() {
    let mut a = CodeAssembler::new(64).unwrap();
    let mut top = a.create_label();
    a.mov(rax, cr4).unwrap();
    a.or(rax, 1 << 21).unwrap();
    a.mov(cr4, rax).unwrap();
    a.mov(ecx, 10).unwrap();
    a.set_label(&mut top).unwrap();
    a.stac().unwrap();
    a.mov(rbx, qword_ptr(0x3000)).unwrap();
    a.clac().unwrap();
    a.dec(ecx).unwrap();
    a.jnz(top).unwrap();
    a.mov(rdx, qword_ptr(0x3008)).unwrap();
    a.hlt().unwrap();
    let code = a.assemble(0x1000).unwrap();
    let faulting = 0x1000 + code.len() as u64 - 1 - 8;
    for tier in TIERS {
        let (m, end) = run(&code, tier);
        expect_pf(&m, end, tier, 0x1, faulting, 0x3008);
        assert_eq!(m.cpu.gpr(Gpr::Rcx), 0, "{tier:?}: the loop ran");
    }
}

/// STAC sets and CLAC clears EFLAGS.AC, as PUSHF sees it.
#[test]
fn stac_sets_and_clac_clears_ac() {
    let mut a = CodeAssembler::new(64).unwrap();
    a.stac().unwrap();
    a.pushfq().unwrap();
    a.pop(rbx).unwrap();
    a.clac().unwrap();
    a.pushfq().unwrap();
    a.pop(rcx).unwrap();
    a.hlt().unwrap();
    let code = a.assemble(0x1000).unwrap();
    for tier in TIERS {
        let (m, end) = run(&code, tier);
        assert_eq!(end, RunEnd::Halted, "{tier:?}");
        assert_ne!(
            m.cpu.gpr(Gpr::Rbx) & (1 << 18),
            0,
            "{tier:?}: AC after STAC"
        );
        assert_eq!(
            m.cpu.gpr(Gpr::Rcx) & (1 << 18),
            0,
            "{tier:?}: AC after CLAC"
        );
    }
}

/// With CR4.SMEP the kernel cannot execute from a user page: the fetch of the instruction
/// after the MOV to CR4 faults with P and I/D set.
#[test]
fn smep_stops_kernel_fetches_from_user_pages() {
    let mut a = CodeAssembler::new(64).unwrap();
    a.mov(rax, cr4).unwrap();
    a.or(rax, 1 << 20).unwrap();
    a.mov(cr4, rax).unwrap();
    a.nop().unwrap();
    a.hlt().unwrap();
    let code = a.assemble(0x1000).unwrap();
    let nop = 0x1000 + code.len() as u64 - 2;
    for tier in TIERS {
        let (m, end) = run(&code, tier);
        expect_pf(&m, end, tier, 0x11, nop, nop);
    }
}

/// A store loop that hits the TLB's write tag (compiled in the JIT tiers), then WRPKRU with
/// write-disable for key 0 (every page of the flat machine has key 0) and CR0.WP = 1: reads
/// still work, the next store faults with P, W and PK. The rights the TLB cached before the
/// WRPKRU must not outlive it.
#[test]
fn wrpkru_takes_effect_on_pages_the_tlb_holds() {
    let mut a = CodeAssembler::new(64).unwrap();
    let mut top = a.create_label();
    a.mov(rax, cr4).unwrap();
    a.or(rax, 1 << 22).unwrap(); // CR4.PKE
    a.mov(cr4, rax).unwrap();
    a.mov(rax, cr0).unwrap();
    a.or(rax, 1 << 16).unwrap(); // CR0.WP
    a.mov(cr0, rax).unwrap();
    a.xor(ecx, ecx).unwrap();
    a.xor(edx, edx).unwrap();
    a.mov(ebx, 10).unwrap();
    a.set_label(&mut top).unwrap();
    a.mov(qword_ptr(0x3000), rbx).unwrap();
    a.dec(ebx).unwrap();
    a.jnz(top).unwrap();
    a.mov(eax, 2).unwrap(); // WD for key 0
    a.wrpkru().unwrap();
    a.mov(rsi, qword_ptr(0x3000)).unwrap();
    a.mov(qword_ptr(0x3000), rsi).unwrap();
    a.hlt().unwrap();
    let code = a.assemble(0x1000).unwrap();
    let store = 0x1000 + code.len() as u64 - 1 - 8;
    for tier in TIERS {
        let (m, end) = run(&code, tier);
        expect_pf(&m, end, tier, 0x23, store, 0x3000);
        assert_eq!(m.cpu.gpr(Gpr::Rsi), 1, "{tier:?}: the read after WRPKRU");
        assert_eq!(m.cpu.pkru, 2, "{tier:?}");
    }
}

/// RDPKRU and WRPKRU raise #UD while CR4.PKE is clear, and #GP(0) with ECX != 0.
#[test]
fn rdpkru_needs_cr4_pke_and_ecx_zero() {
    let mut a = CodeAssembler::new(64).unwrap();
    a.xor(ecx, ecx).unwrap();
    a.rdpkru().unwrap();
    a.hlt().unwrap();
    let code = a.assemble(0x1000).unwrap();
    let mut b = CodeAssembler::new(64).unwrap();
    b.mov(rax, cr4).unwrap();
    b.or(rax, 1 << 22).unwrap();
    b.mov(cr4, rax).unwrap();
    b.mov(ecx, 1).unwrap();
    b.rdpkru().unwrap();
    b.hlt().unwrap();
    let code_gp = b.assemble(0x1000).unwrap();
    let rdpkru = 0x1000 + code_gp.len() as u64 - 4;
    for tier in TIERS {
        match run(&code, tier).1 {
            RunEnd::Fault { fault, rip } => {
                assert_eq!(fault.exception, Exception::InvalidOpcode, "{tier:?}");
                assert_eq!(rip, 0x1002, "{tier:?}");
            }
            other => panic!("{tier:?}: {other:?}"),
        }
        match run(&code_gp, tier).1 {
            RunEnd::Fault { fault, rip } => {
                assert_eq!(fault.exception, Exception::GeneralProtection, "{tier:?}");
                assert_eq!((fault.error_code, rip), (0, rdpkru), "{tier:?}");
            }
            other => panic!("{tier:?}: {other:?}"),
        }
    }
}

/// PKRU as XSAVE state component 9 in the compacted format (XSAVEC, which Linux uses and
/// QEMU 7.2 lacks, so no system guest compares it): saved right after the header, with
/// XCOMP_BV naming it; XRSTOR of that image loads it back.
#[test]
fn xsavec_keeps_pkru_right_after_the_header() {
    let mut a = CodeAssembler::new(64).unwrap();
    a.mov(rax, cr4).unwrap();
    a.or(rax, (1 << 22) | (1 << 18)).unwrap(); // CR4.PKE, CR4.OSXSAVE
    a.mov(cr4, rax).unwrap();
    a.mov(eax, 0x203).unwrap(); // XCR0 = x87 | SSE | PKRU
    a.xor(ecx, ecx).unwrap();
    a.xor(edx, edx).unwrap();
    a.xsetbv().unwrap();
    a.mov(eax, 0x5555_0000).unwrap(); // AD for keys 8-15: the machine's pages have key 0
    a.wrpkru().unwrap();
    a.mov(eax, -1).unwrap();
    a.mov(edx, -1).unwrap();
    a.xsavec(ptr(0x4000)).unwrap();
    a.mov(rbx, qword_ptr(0x4000 + 576)).unwrap();
    a.mov(rsi, qword_ptr(0x4000 + 512)).unwrap(); // XSTATE_BV
    a.mov(rdi, qword_ptr(0x4000 + 520)).unwrap(); // XCOMP_BV
    a.mov(dword_ptr(0x4000 + 576), 8).unwrap();
    a.xor(eax, eax).unwrap();
    a.xor(edx, edx).unwrap();
    a.wrpkru().unwrap();
    a.mov(eax, -1).unwrap();
    a.mov(edx, -1).unwrap();
    a.xrstor(ptr(0x4000)).unwrap();
    a.hlt().unwrap();
    let code = a.assemble(0x1000).unwrap();
    for tier in TIERS {
        let (m, end) = run(&code, tier);
        assert_eq!(end, RunEnd::Halted, "{tier:?}");
        assert_eq!(m.cpu.gpr(Gpr::Rbx), 0x5555_0000, "{tier:?}: saved PKRU");
        assert_eq!(m.cpu.gpr(Gpr::Rsi), 0x203, "{tier:?}: XSTATE_BV");
        assert_eq!(m.cpu.gpr(Gpr::Rdi), (1 << 63) | 0x203, "{tier:?}: XCOMP_BV");
        assert_eq!(m.cpu.pkru, 8, "{tier:?}: restored PKRU");
    }
}

/// INVPCID in real mode (CPL 0 there: allowed) and in a 64-bit loop hot enough for the JIT
/// (runtime class, run from compiled code through `rewrite::runs_compiled`): types 0-3 with a
/// zero descriptor pass, type 4 is #GP(0) at the instruction.
#[test]
fn invpcid_runs_in_real_mode_and_in_compiled_loops() {
    for real in [true, false] {
        let bits = if real { 16 } else { 64 };
        let mut a = CodeAssembler::new(bits).unwrap();
        let mut top = a.create_label();
        a.mov(ecx, 10).unwrap();
        a.set_label(&mut top).unwrap();
        for kind in 0..4 {
            a.mov(eax, kind).unwrap();
            if real {
                a.invpcid(eax, xmmword_ptr(0x3000)).unwrap();
            } else {
                a.invpcid(rax, xmmword_ptr(0x3000)).unwrap();
            }
        }
        a.dec(ecx).unwrap();
        a.jnz(top).unwrap();
        a.mov(eax, 4).unwrap();
        let mut faulting = a.create_label();
        a.set_label(&mut faulting).unwrap();
        if real {
            a.invpcid(eax, xmmword_ptr(0x3000)).unwrap();
        } else {
            a.invpcid(rax, xmmword_ptr(0x3000)).unwrap();
        }
        a.hlt().unwrap();
        let (code, at) = common::assemble_marked(a, faulting);
        let mode = if real {
            CpuMode::Real16
        } else {
            CpuMode::Long64
        };
        for tier in TIERS {
            let mut m = Machine::new(&MachineConfig {
                tier,
                exceptions: ExceptionPolicy::Stop,
                ..MachineConfig::default()
            })
            .unwrap();
            m.load_flat(&code, 0x1000, 0x1000, mode).unwrap();
            match m.run(Some(10_000)).unwrap() {
                RunEnd::Fault { fault, rip } => {
                    assert_eq!(fault.exception, Exception::GeneralProtection, "{tier:?}");
                    assert_eq!(fault.error_code, 0, "{tier:?}");
                    assert_eq!(rip, at, "{tier:?}, real mode {real}");
                }
                other => panic!("{tier:?}, real mode {real}: {other:?}"),
            }
            assert_eq!(m.cpu.gpr(Gpr::Rcx) & 0xffff, 0, "{tier:?}: the loop ran");
        }
    }
}
