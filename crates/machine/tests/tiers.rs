//! The three tiers agree on small loops, and compiled code chains and invalidates correctly.

use crane86_machine::{Machine, MachineConfig, RunEnd};
use crane86_runtime::{CpuMode, Gpr};
use crane86_translator::Tier;
use iced_x86::code_asm::*;

fn machine(tier: Tier) -> Machine {
    Machine::new(&MachineConfig {
        tier,
        ..MachineConfig::default()
    })
    .unwrap()
}

const TIERS: [Tier; 3] = [Tier::Interp, Tier::Jit, Tier::Auto { threshold: 3 }];

/// sum = Σ (3i + 7) ^ 0x55 for i in 1..=1000, then out 0xf4 with its low byte.
fn sum_loop() -> Vec<u8> {
    let mut a = CodeAssembler::new(64).unwrap();
    let mut top = a.create_label();
    a.xor(eax, eax).unwrap();
    a.mov(ecx, 1000).unwrap();
    a.xor(r8, r8).unwrap();
    a.set_label(&mut top).unwrap();
    a.lea(rax, qword_ptr(rcx + rcx * 2 + 7)).unwrap();
    a.xor(rax, 0x55).unwrap();
    a.add(r8, rax).unwrap();
    a.push(r8).unwrap();
    a.pop(r9).unwrap();
    a.dec(ecx).unwrap();
    a.jne(top).unwrap();
    a.mov(rax, r9).unwrap();
    a.out(0xf4, al).unwrap();
    a.assemble(0x1000).unwrap()
}

#[test]
fn a_loop_gives_the_same_result_in_every_tier() {
    let want: u64 = (1..=1000u64).map(|i| (3 * i + 7) ^ 0x55).sum();
    for tier in TIERS {
        let mut m = machine(tier);
        m.load_flat(&sum_loop(), 0x1000, 0x1000, CpuMode::Long64)
            .unwrap();
        let end = m.run(Some(1_000_000)).unwrap();
        assert_eq!(end, RunEnd::DebugExit((want & 0xff) as u32), "{tier:?}");
        assert_eq!(m.cpu.gpr(Gpr::R8), want, "{tier:?}");
        assert_eq!(m.cpu.gpr(Gpr::Rcx), 0, "{tier:?}");
    }
}

/// A loop that patches the immediate of an instruction it executes later in the same loop:
/// every iteration must see the freshly written byte, in every tier.
#[test]
fn self_modifying_code_is_seen_by_every_tier() {
    let mut a = CodeAssembler::new(64).unwrap();
    let mut top = a.create_label();
    let mut patched = a.create_label();
    a.xor(r8, r8).unwrap();
    a.mov(ecx, 200).unwrap();
    a.set_label(&mut top).unwrap();
    // byte [patched + 1] = cl  (the imm8 of `add r8d, imm8`... encoded as 41 83 c0 ib)
    a.lea(rdx, ptr(patched)).unwrap();
    a.mov(byte_ptr(rdx + 3), cl).unwrap();
    a.set_label(&mut patched).unwrap();
    a.add(r8d, 0x7f_i32).unwrap();
    a.dec(ecx).unwrap();
    a.jne(top).unwrap();
    a.mov(eax, 0).unwrap();
    a.out(0xf4, al).unwrap();
    let code = a.assemble(0x1000).unwrap();
    // The patched instruction must really be `add r8d, imm8` with the immediate at offset 3.
    let want: u64 = (1..=200u64)
        .map(|i| {
            if i < 128 {
                i
            } else {
                (i as i8) as i32 as u32 as u64
            }
        })
        .fold(0u64, |acc, v| (acc + v) & 0xffff_ffff);
    for tier in TIERS {
        let mut m = machine(tier);
        m.load_flat(&code, 0x1000, 0x1000, CpuMode::Long64).unwrap();
        assert_eq!(
            m.run(Some(1_000_000)).unwrap(),
            RunEnd::DebugExit(0),
            "{tier:?}"
        );
        assert_eq!(m.cpu.gpr(Gpr::R8), want, "{tier:?}");
        assert!(
            m.stats.smc_pages > 0,
            "{tier:?}: the stores hit translated code"
        );
    }
}

/// Executing an invalid opcode stops at exactly that instruction with #UD, with everything
/// before it retired.
#[test]
fn invalid_opcode_faults_precisely() {
    use crane86_runtime::Exception;
    // mov eax, 5; add eax, 1; ud2
    let code = [0xb8, 5, 0, 0, 0, 0x83, 0xc0, 0x01, 0x0f, 0x0b];
    for tier in TIERS {
        let mut m = machine(tier);
        m.load_flat(&code, 0x1000, 0x1000, CpuMode::Long64).unwrap();
        match m.run(Some(100)).unwrap() {
            RunEnd::Fault { fault, rip } => {
                assert_eq!(fault.exception, Exception::InvalidOpcode, "{tier:?}");
                assert_eq!(rip, 0x1008, "{tier:?}");
            }
            other => panic!("{tier:?}: {other:?}"),
        }
        assert_eq!(m.cpu.gpr(Gpr::Rax), 6, "{tier:?}");
    }
}

/// Jumping far outside RAM, or to an address no physical address can have, ends cleanly.
#[test]
fn wild_jumps_end_in_clean_faults() {
    use crane86_runtime::Exception;
    for target in [0x7fff_0000u64, 0x1234_5678_9abc_def0, u64::MAX - 3] {
        let mut a = CodeAssembler::new(64).unwrap();
        a.mov(rax, target).unwrap();
        a.jmp(rax).unwrap();
        let code = a.assemble(0x1000).unwrap();
        for tier in TIERS {
            let mut m = machine(tier);
            m.load_flat(&code, 0x1000, 0x1000, CpuMode::Long64).unwrap();
            match m.run(Some(100)).unwrap() {
                RunEnd::Fault { fault, rip } => {
                    assert!(
                        matches!(
                            fault.exception,
                            Exception::InvalidOpcode | Exception::GeneralProtection
                        ),
                        "{tier:?} {target:#x}: {fault:?}"
                    );
                    assert_eq!(rip, target, "{tier:?}");
                }
                other => panic!("{tier:?} {target:#x}: {other:?}"),
            }
        }
    }
}

/// A long REP MOVSB stops between iterations when the instruction budget runs out, with
/// RCX/RSI/RDI showing the iterations done and RIP still at the REP instruction; running
/// on completes the copy. Every tier, including a JIT loop kept inside one function.
#[test]
fn rep_string_instructions_are_interruptible_between_iterations() {
    let mut a = CodeAssembler::new(64).unwrap();
    let mut rep = a.create_label();
    a.mov(rsi, 0x10_0000u64).unwrap();
    a.mov(rdi, 0x20_0000u64).unwrap();
    a.mov(ecx, 50_000).unwrap();
    a.set_label(&mut rep).unwrap();
    a.rep().movsb().unwrap();
    a.mov(eax, 0).unwrap();
    a.out(0xf4, al).unwrap();
    let code = a.assemble(0x1000).unwrap();
    let rep_ip = 0x1000 + code.len() as u64 - 2 - 5 - 2; // rep movsb is 2 bytes before mov eax
    let src: Vec<u8> = (0..50_000u32).map(|i| (i * 7 + 3) as u8).collect();
    for tier in TIERS {
        let mut m = machine(tier);
        m.load_flat(&code, 0x1000, 0x1000, CpuMode::Long64).unwrap();
        m.mem.load(0x10_0000, &src).unwrap();
        assert_eq!(m.run(Some(10_000)).unwrap(), RunEnd::Limit, "{tier:?}");
        assert_eq!(
            m.cpu.rip, rep_ip,
            "{tier:?}: stopped at the REP instruction"
        );
        let left = m.cpu.gpr(Gpr::Rcx);
        assert!(
            left > 0 && left < 50_000,
            "{tier:?}: {left} iterations left"
        );
        let done = 50_000 - left;
        assert_eq!(m.cpu.gpr(Gpr::Rsi), 0x10_0000 + done, "{tier:?}");
        assert_eq!(m.cpu.gpr(Gpr::Rdi), 0x20_0000 + done, "{tier:?}");
        assert_eq!(
            &m.mem.ram()[0x20_0000..0x20_0000 + done as usize],
            &src[..done as usize],
            "{tier:?}"
        );
        assert_eq!(m.run(None).unwrap(), RunEnd::DebugExit(0), "{tier:?}");
        assert_eq!(
            &m.mem.ram()[0x20_0000..0x20_0000 + 50_000],
            &src[..],
            "{tier:?}"
        );
        assert_eq!(m.cpu.gpr(Gpr::Rcx), 0, "{tier:?}");
    }
}
