//! Runtime-class instructions that generated code runs through the interpreter
//! (`crane86_translator::rewrite::runs_compiled`): the same results in every tier, loops
//! around them stay out of the run loop, and a fault in one is precise.

mod common;

use common::{flat_machine as machine, TIERS};
use crane86_machine::RunEnd;
use crane86_runtime::{CpuMode, Exception, Gpr, SegReg};
use crane86_translator::Tier;
use iced_x86::code_asm::*;

const ITERATIONS: u32 = 300;

/// A loop over CPUID, WRMSR/RDMSR of FS.base, WRMSR of TSC_AUX with RDTSCP and RDPID, a MOV from and to CR0, MOV from DS and to ES, POPF,
/// RDMSR of the TSC (handed back to the run loop) and MOV to CR8 (which returns to it),
/// folding what they give into R8; then `out 0xf4`.
fn system_loop() -> Vec<u8> {
    let mut a = CodeAssembler::new(64).unwrap();
    let mut top = a.create_label();
    a.xor(r8, r8).unwrap();
    a.mov(r12d, ITERATIONS).unwrap();
    a.set_label(&mut top).unwrap();
    a.mov(eax, r12d).unwrap();
    a.and(eax, 7).unwrap();
    a.xor(ecx, ecx).unwrap();
    a.cpuid().unwrap();
    a.xor(r8d, eax).unwrap();
    a.add(r8d, ebx).unwrap();
    a.xor(r8d, ecx).unwrap();
    a.add(r8d, edx).unwrap();
    // FS.base = counter << 4, read back
    a.mov(ecx, 0xc000_0100u32 as i32).unwrap();
    a.mov(eax, r12d).unwrap();
    a.shl(eax, 4).unwrap();
    a.xor(edx, edx).unwrap();
    a.wrmsr().unwrap();
    a.xor(eax, eax).unwrap();
    a.rdmsr().unwrap();
    a.add(r8, rax).unwrap();
    // TSC_AUX = counter, read back by RDTSCP (ECX) and RDPID (inline instructions)
    a.mov(ecx, 0xc000_0103u32 as i32).unwrap();
    a.mov(eax, r12d).unwrap();
    a.xor(edx, edx).unwrap();
    a.wrmsr().unwrap();
    a.rdtscp().unwrap();
    a.mov(r13d, ecx).unwrap();
    a.rdpid(rax).unwrap();
    a.add(r8, rax).unwrap();
    // CR0 round trip, DS reload, POPF of the flags PUSHF saw
    a.mov(rax, cr0).unwrap();
    a.mov(cr0, rax).unwrap();
    // a null selector into ES (allowed in 64-bit mode), the old DS value read into R11
    a.mov(ax, ds).unwrap();
    a.movzx(r11d, ax).unwrap();
    a.xor(eax, eax).unwrap();
    a.mov(es, ax).unwrap();
    a.pushfq().unwrap();
    a.popfq().unwrap();
    // the TSC: its run-time value differs between tiers, so only its presence is checked
    a.mov(ecx, 0x10).unwrap();
    a.rdmsr().unwrap();
    a.mov(r9d, eax).unwrap();
    a.mov(eax, r12d).unwrap();
    a.and(eax, 15).unwrap();
    a.mov(cr8, rax).unwrap();
    a.dec(r12d).unwrap();
    a.jne(top).unwrap();
    a.mov(rax, cr8).unwrap();
    a.mov(r10, rax).unwrap();
    a.mov(eax, 0).unwrap();
    a.out(0xf4, al).unwrap();
    a.assemble(0x1000).unwrap()
}

/// A flat 64-bit machine in `tier` that ran `code` (at 0x1000) to its `out 0xf4` within
/// `limit` instructions.
fn run_to_exit(tier: Tier, code: &[u8], limit: u64) -> crane86_machine::Machine {
    let mut m = machine(tier);
    m.load_flat(code, 0x1000, 0x1000, CpuMode::Long64).unwrap();
    assert_eq!(
        m.run(Some(limit)).unwrap(),
        RunEnd::DebugExit(0),
        "{tier:?}"
    );
    m
}

/// Checks a tier's result `got` against the first tier's (`want`, set by the first call),
/// and in the JIT tier that fewer than `max_runs` blocks ran interpreted.
fn agrees_and_stays_compiled<T: PartialEq + std::fmt::Debug>(
    tier: Tier,
    want: &mut Option<T>,
    got: T,
    m: &crane86_machine::Machine,
    max_runs: u64,
) {
    match want {
        None => *want = Some(got),
        Some(w) => assert_eq!(&got, w, "{tier:?} against the interpreter"),
    }
    if tier == Tier::Jit {
        let runs = m.stats.interp_runs;
        assert!(runs < max_runs, "{runs} interpreted block runs");
    }
}

/// Runs `code` in 64-bit mode in `tier` (after `setup`) and checks that it stops at a fault
/// `exception` with error code `code` at `at` (`what` names the instruction).
fn run_to_fault(
    tier: Tier,
    code: &[u8],
    setup: impl FnOnce(&mut crane86_machine::Machine),
    (exception, error_code, at, what): (Exception, u32, u64, &str),
) -> crane86_machine::Machine {
    let mut m = machine(tier);
    m.load_flat(code, 0x1000, 0x1000, CpuMode::Long64).unwrap();
    setup(&mut m);
    match m.run(Some(1_000_000)).unwrap() {
        RunEnd::Fault { fault, rip } => {
            assert_eq!(fault.exception, exception, "{tier:?}");
            assert_eq!(fault.error_code, error_code, "{tier:?}");
            assert_eq!(rip, at, "{tier:?}: at the {what}");
        }
        other => panic!("{tier:?}: {other:?}"),
    }
    m
}

#[test]
fn a_loop_of_system_instructions_agrees_in_every_tier_and_stays_compiled() {
    let code = system_loop();
    let mut want = None;
    for tier in TIERS {
        let m = run_to_exit(tier, &code, 1_000_000);
        let got = (
            m.cpu.gpr(Gpr::R8),
            m.cpu.seg[SegReg::Fs as usize].base,
            m.cpu.gpr(Gpr::R10),
            m.cpu.cr0,
            m.cpu.rflags,
        );
        assert_eq!(got.1, 0x10, "{tier:?}: FS.base of the last iteration");
        assert_eq!(got.2, 1, "{tier:?}: CR8 of the last iteration");
        assert_ne!(m.cpu.gpr(Gpr::R9), 0, "{tier:?}: the TSC was read");
        assert_eq!(m.cpu.gpr(Gpr::R13), 1, "{tier:?}: TSC_AUX through RDTSCP");
        // Per iteration: six runtime instructions run from generated code; the TSC read
        // and the CR8 write come back to the run loop (two interpreted runs of the TSC
        // read and the block after the CR8 write at most).
        agrees_and_stays_compiled(tier, &mut want, got, &m, 3 * u64::from(ITERATIONS) + 50);
    }
}

/// WRMSR of a non-canonical FS.base in the 200th iteration: #GP(0) at the WRMSR, with the
/// state of the iterations before, in every tier.
#[test]
fn a_fault_in_a_compiled_runtime_instruction_is_precise() {
    let mut a = CodeAssembler::new(64).unwrap();
    let mut top = a.create_label();
    let mut wrmsr = a.create_label();
    a.mov(r12d, 0).unwrap();
    a.mov(ecx, 0xc000_0100u32 as i32).unwrap();
    a.set_label(&mut top).unwrap();
    a.inc(r12d).unwrap();
    a.xor(eax, eax).unwrap();
    // EDX = 0x8000 from the 200th iteration on: bit 47 set, bits 63:48 clear
    a.cmp(r12d, 200).unwrap();
    a.mov(edx, 0x8000).unwrap();
    a.mov(r13d, 0).unwrap();
    a.cmovb(edx, r13d).unwrap();
    a.set_label(&mut wrmsr).unwrap();
    a.wrmsr().unwrap();
    a.jmp(top).unwrap();
    let code = a.assemble(0x1000).unwrap();
    let at = 0x1000 + code.len() as u64 - 2 - 2;
    for tier in TIERS {
        let gp0 = (Exception::GeneralProtection, 0, at, "WRMSR");
        let m = run_to_fault(tier, &code, |_| {}, gp0);
        assert_eq!(m.cpu.gpr(Gpr::R12), 200, "{tier:?}");
        assert_eq!(m.cpu.seg[SegReg::Fs as usize].base, 0, "{tier:?}");
    }
}

/// STAC and CLAC at CPL 0 run inline (each ends its block): EFLAGS.AC as PUSHF sees it after
/// each, in every tier.
#[test]
fn stac_and_clac_at_cpl0_set_and_clear_ac_in_every_tier() {
    const AC: i32 = 1 << 18;
    let mut a = CodeAssembler::new(64).unwrap();
    let mut top = a.create_label();
    a.xor(r8, r8).unwrap();
    a.xor(r9, r9).unwrap();
    a.mov(r12d, 100).unwrap();
    a.set_label(&mut top).unwrap();
    a.stac().unwrap();
    a.pushfq().unwrap();
    a.pop(rax).unwrap();
    a.and(eax, AC).unwrap();
    a.add(r8, rax).unwrap();
    a.clac().unwrap();
    a.pushfq().unwrap();
    a.pop(rax).unwrap();
    a.and(eax, AC).unwrap();
    a.add(r9, rax).unwrap();
    a.dec(r12d).unwrap();
    a.jne(top).unwrap();
    a.mov(eax, 0).unwrap();
    a.out(0xf4, al).unwrap();
    let code = a.assemble(0x1000).unwrap();
    for tier in TIERS {
        let m = run_to_exit(tier, &code, 100_000);
        assert_eq!(
            m.cpu.gpr(Gpr::R8),
            100 * AC as u64,
            "{tier:?}: AC after STAC"
        );
        assert_eq!(m.cpu.gpr(Gpr::R9), 0, "{tier:?}: AC after CLAC");
    }
}

/// IRETQ used as a same-privilege jump in a loop (a frame of SS, RSP, RFLAGS, CS and the
/// target pushed by hand): the same state in every tier, and compiled, the loop does not
/// come back to the run loop for the IRET. Halfway, the machine is made to believe an NMI
/// handler runs: the next IRET, though compiled and chained to, must end NMI blocking,
/// which the run loop does.
#[test]
fn a_loop_of_iretq_agrees_in_every_tier_and_stays_compiled() {
    let mut a = CodeAssembler::new(64).unwrap();
    let (mut top, mut after) = (a.create_label(), a.create_label());
    a.xor(r8, r8).unwrap();
    a.mov(r12d, ITERATIONS).unwrap();
    a.set_label(&mut top).unwrap();
    a.mov(rax, rsp).unwrap();
    a.push(0x10).unwrap();
    a.push(rax).unwrap();
    a.pushfq().unwrap();
    a.push(0x08).unwrap();
    a.lea(rcx, ptr(after)).unwrap();
    a.push(rcx).unwrap();
    a.iretq().unwrap();
    a.set_label(&mut after).unwrap();
    a.add(r8, rsp).unwrap();
    a.dec(r12d).unwrap();
    a.jne(top).unwrap();
    a.mov(eax, 0).unwrap();
    a.out(0xf4, al).unwrap();
    let code = a.assemble(0x1000).unwrap();
    // A GDT with the selectors `CpuState::new` gives 64-bit mode: 0x08 code, 0x10 data.
    let gdt: [u64; 3] = [0, 0x00af_9a00_0000_ffff, 0x00cf_9200_0000_ffff];
    let gdt: Vec<u8> = gdt.iter().flat_map(|d| d.to_le_bytes()).collect();
    let mut want = None;
    // The first run stops at some point of an iteration, the second takes it from there.
    for (tier, first) in TIERS
        .into_iter()
        .flat_map(|t| (2000..2010).map(move |n| (t, n)))
    {
        let mut m = machine(tier);
        m.load_flat(&code, 0x1000, 0x1000, CpuMode::Long64).unwrap();
        m.mem.load(0x500, &gdt).unwrap();
        m.cpu.gdtr.base = 0x500;
        m.cpu.gdtr.limit = 23;
        assert_eq!(m.run(Some(first)).unwrap(), RunEnd::Limit, "{tier:?}");
        m.cpu.nmi_blocked = true;
        assert_eq!(
            m.run(Some(1_000_000)).unwrap(),
            RunEnd::DebugExit(0),
            "{tier:?}"
        );
        assert!(!m.cpu.nmi_blocked, "{tier:?}: NMIs still blocked");
        let got = (m.cpu.gpr(Gpr::R8), m.cpu.gpr(Gpr::Rsp), m.cpu.rflags);
        agrees_and_stays_compiled(tier, &mut want, got, &m, u64::from(ITERATIONS) / 2);
    }
}

/// A loop of ITERATIONS system calls between a user loop adding 3 to R8 and a kernel
/// entry counting them in R9, under STAR/LSTAR/SFMASK set up by the code itself; with
/// `bad_rcx_at`, the kernel's SYSRETQ returns to a non-canonical RCX from that iteration
/// on. Returns the code and the address of the kernel's SYSRETQ.
fn syscall_loop(bad_rcx_at: Option<u32>) -> (Vec<u8>, u64) {
    let mut a = CodeAssembler::new(64).unwrap();
    let mut user = a.create_label();
    let mut entry = a.create_label();
    let mut done = a.create_label();
    let mut back = a.create_label();
    let msr = |a: &mut CodeAssembler, index: u32, value: u64| {
        a.mov(ecx, index as i32).unwrap();
        a.mov(eax, value as u32).unwrap();
        a.mov(edx, (value >> 32) as u32).unwrap();
        a.wrmsr().unwrap();
    };
    // EFER.SCE (LME and LMA kept), STAR (kernel CS 0x08, user base 0x10), SFMASK 0.
    a.mov(ecx, 0xc000_0080u32 as i32).unwrap();
    a.rdmsr().unwrap();
    a.or(eax, 1).unwrap();
    a.wrmsr().unwrap();
    msr(&mut a, 0xc000_0081, 0x0010_0008 << 32);
    msr(&mut a, 0xc000_0084, 0);
    a.lea(rax, ptr(entry)).unwrap();
    a.mov(rdx, rax).unwrap();
    a.shr(rdx, 32).unwrap();
    a.mov(ecx, 0xc000_0082u32 as i32).unwrap();
    a.wrmsr().unwrap();
    a.xor(r8, r8).unwrap();
    a.xor(r9, r9).unwrap();
    a.mov(r12d, ITERATIONS).unwrap();
    a.lea(rcx, ptr(user)).unwrap();
    a.mov(r11d, 2).unwrap();
    a.sysretq().unwrap();
    a.set_label(&mut user).unwrap();
    a.add(r8, 3).unwrap();
    a.syscall().unwrap();
    a.jmp(user).unwrap();
    a.set_label(&mut entry).unwrap();
    a.inc(r9).unwrap();
    if let Some(n) = bad_rcx_at {
        // RCX = 0x8000_0000_0000 (not canonical) from iteration `n` on.
        a.cmp(r9d, n as i32).unwrap();
        a.mov(r13, 0x8000_0000_0000u64).unwrap();
        a.cmovae(rcx, r13).unwrap();
    }
    a.dec(r12d).unwrap();
    a.jz(done).unwrap();
    a.set_label(&mut back).unwrap();
    a.sysretq().unwrap();
    a.set_label(&mut done).unwrap();
    a.mov(eax, 0).unwrap();
    a.out(0xf4, al).unwrap();
    common::assemble_marked(a, back)
}

/// A user loop making `ITERATIONS` system calls, each returned from with SYSRETQ: the kernel
/// side counts them in R9, the user side adds 3 to R8 per call. SYSCALL and SYSRETQ know the
/// mode they leave, so their targets come from the jump cache rather than `jump_lookup`.
#[test]
fn a_loop_of_syscall_and_sysret_agrees_in_every_tier_and_stays_compiled() {
    let (code, _) = syscall_loop(None);

    let mut want = None;
    for tier in TIERS {
        let m = run_to_exit(tier, &code, 1_000_000);
        let got = (
            m.cpu.gpr(Gpr::R8),
            m.cpu.gpr(Gpr::R9),
            m.cpu.gpr(Gpr::R11),
            m.cpu.seg[SegReg::Cs as usize].selector,
            m.cpu.seg[SegReg::Ss as usize].selector,
        );
        assert_eq!(got.0, 3 * u64::from(ITERATIONS), "{tier:?}");
        assert_eq!(got.1, u64::from(ITERATIONS), "{tier:?}");
        assert_eq!((got.3, got.4), (0x08, 0x10), "{tier:?}: kernel CS and SS");
        agrees_and_stays_compiled(tier, &mut want, got, &m, 50);
        if tier == Tier::Jit {
            // Keyed by the state they leave, each SYSCALL and SYSRETQ would look its target
            // up: 600 lookups.
            let lookups = m.cpu.jump_lookups;
            assert!(lookups < 20, "{lookups} lookups");
        }
    }
}

/// A SYSRETQ to a non-canonical RCX, from compiled code in the 200th system call: #GP(0) at
/// the SYSRETQ, still at CPL 0 with the kernel's segments, in every tier.
#[test]
fn a_sysret_to_a_non_canonical_rip_faults_at_the_sysret_in_every_tier() {
    let (code, at) = syscall_loop(Some(200));
    for tier in TIERS {
        let gp0 = (Exception::GeneralProtection, 0, at, "SYSRETQ");
        let m = run_to_fault(tier, &code, |_| {}, gp0);
        assert_eq!(m.cpu.gpr(Gpr::R9), 200, "{tier:?}");
        assert_eq!(m.cpu.gpr(Gpr::R8), 3 * 200, "{tier:?}");
        assert_eq!(m.cpu.seg[SegReg::Cs as usize].selector, 0x08, "{tier:?}");
        assert_eq!(m.cpu.seg[SegReg::Ss as usize].selector, 0x10, "{tier:?}");
    }
}

/// IRETQ to a CS beyond the GDT in the 200th iteration of a compiled IRETQ loop: #GP with
/// the selector, at the IRETQ, with its frame still on the stack, in every tier.
#[test]
fn an_iretq_to_a_bad_selector_faults_at_the_iretq_in_every_tier() {
    let mut a = CodeAssembler::new(64).unwrap();
    let (mut top, mut after, mut iret) = (a.create_label(), a.create_label(), a.create_label());
    a.xor(r8, r8).unwrap();
    a.mov(r12d, ITERATIONS).unwrap();
    a.set_label(&mut top).unwrap();
    a.mov(rax, rsp).unwrap();
    a.push(0x10).unwrap();
    a.push(rax).unwrap();
    a.pushfq().unwrap();
    // CS 0x18 (beyond the GDT's limit) in iteration 200.
    a.mov(ecx, 0x08).unwrap();
    a.mov(edx, 0x18).unwrap();
    a.cmp(r12d, ITERATIONS as i32 - 199).unwrap();
    a.cmove(ecx, edx).unwrap();
    a.push(rcx).unwrap();
    a.lea(rcx, ptr(after)).unwrap();
    a.push(rcx).unwrap();
    a.set_label(&mut iret).unwrap();
    a.iretq().unwrap();
    a.set_label(&mut after).unwrap();
    a.add(r8, 1).unwrap();
    a.dec(r12d).unwrap();
    a.jne(top).unwrap();
    a.mov(eax, 0).unwrap();
    a.out(0xf4, al).unwrap();
    let (code, at) = common::assemble_marked(a, iret);
    let gdt: [u64; 3] = [0, 0x00af_9a00_0000_ffff, 0x00cf_9200_0000_ffff];
    let gdt: Vec<u8> = gdt.iter().flat_map(|d| d.to_le_bytes()).collect();
    for tier in TIERS {
        let mut stack = 0;
        let setup = |m: &mut crane86_machine::Machine| {
            m.mem.load(0x500, &gdt).unwrap();
            m.cpu.gdtr.base = 0x500;
            m.cpu.gdtr.limit = 23;
            stack = m.cpu.gpr(Gpr::Rsp);
        };
        let gp = (Exception::GeneralProtection, 0x18, at, "IRETQ");
        let m = run_to_fault(tier, &code, setup, gp);
        assert_eq!(m.cpu.gpr(Gpr::R8), 199, "{tier:?}");
        assert_eq!(m.cpu.gpr(Gpr::Rsp), stack - 40, "{tier:?}: the frame stays");
        assert_eq!(m.cpu.seg[SegReg::Cs as usize].selector, 0x08, "{tier:?}");
    }
}
