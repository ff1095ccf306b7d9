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
