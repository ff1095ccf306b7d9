//! The three tiers agree on small loops, and compiled code chains and invalidates correctly.

use crane86_machine::{ExceptionPolicy, Machine, MachineConfig, RunEnd};
use crane86_runtime::{CpuMode, Gpr};
use crane86_translator::Tier;
use iced_x86::code_asm::*;
use iced_x86::BlockEncoderOptions;

fn machine(tier: Tier) -> Machine {
    Machine::new(&MachineConfig {
        tier,
        exceptions: ExceptionPolicy::Stop,
        ..MachineConfig::default()
    })
    .unwrap()
}

const TIERS: [Tier; 3] = [Tier::Interp, Tier::Jit, Tier::Auto { threshold: 3 }];

/// Writes a GDT at 0x500: null, flat 32-bit code (0x08), flat data (0x10) and data at base
/// `base` (0x18, below 16 MiB), four entries (GDTR not loaded).
fn write_gdt(m: &mut Machine, base: u32) {
    let based = 0x00cf_9200_0000_ffff | u64::from(base & 0xff_ffff) << 16;
    let gdt: [u64; 4] = [0, 0x00cf_9a00_0000_ffff, 0x00cf_9200_0000_ffff, based];
    for (i, d) in gdt.iter().enumerate() {
        m.mem.load(0x500 + 8 * i as u64, &d.to_le_bytes()).unwrap();
    }
}

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

/// Stores from a loop into code on another page: the loop's own code is never dropped, so
/// compiled code hands each such store back to the interpreter (`SLOW_CODE_RETRY`), which
/// must run each instruction exactly once: the patched function sees every new immediate,
/// and a PUSH into the code page moves RSP by 8 once.
#[test]
fn stores_into_code_on_another_page_run_once_and_are_seen() {
    let mut a = CodeAssembler::new(64).unwrap();
    let mut top = a.create_label();
    a.xor(r8, r8).unwrap();
    a.xor(r9, r9).unwrap();
    a.mov(ecx, 200).unwrap();
    a.mov(r10, rsp).unwrap();
    a.set_label(&mut top).unwrap();
    a.mov(rdx, 0x3003u64).unwrap();
    a.mov(byte_ptr(rdx), cl).unwrap();
    a.mov(rax, 0x3000u64).unwrap();
    a.call(rax).unwrap();
    a.mov(rsp, 0x3800u64).unwrap();
    a.push(rcx).unwrap();
    a.pop(rdx).unwrap();
    a.add(r9, rdx).unwrap();
    a.mov(rsp, r10).unwrap();
    a.dec(ecx).unwrap();
    a.jne(top).unwrap();
    a.mov(eax, 0).unwrap();
    a.out(0xf4, al).unwrap();
    let code = a.assemble(0x1000).unwrap();
    // add r8d, imm8; ret
    let func = [0x41, 0x83, 0xc0, 0x7f, 0xc3];
    let want: u64 = (1..=200u64)
        .map(|i| (i as u8 as i8) as i32 as u32 as u64)
        .fold(0u64, |acc, v| (acc + v) & 0xffff_ffff);
    for tier in TIERS {
        let mut m = machine(tier);
        m.load_flat(&code, 0x1000, 0x1000, CpuMode::Long64).unwrap();
        m.mem.load(0x3000, &func).unwrap();
        assert_eq!(
            m.run(Some(1_000_000)).unwrap(),
            RunEnd::DebugExit(0),
            "{tier:?}"
        );
        assert_eq!(m.cpu.gpr(Gpr::R8), want, "{tier:?}");
        assert_eq!(m.cpu.gpr(Gpr::R9), (1..=200).sum::<u64>(), "{tier:?}");
        assert!(
            m.stats.smc_pages > 0,
            "{tier:?}: the stores hit translated code"
        );
        if tier != Tier::Interp {
            assert!(m.stats.insns_jit > 1000, "{tier:?}: the loop ran compiled");
            // Two stores per iteration once the loop and the function are compiled.
            assert!(
                m.stats.smc_retries > 200,
                "{tier:?}: {}",
                m.stats.smc_retries
            );
        }
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

/// Jumping far outside RAM, to a non-canonical address, or to an unmapped one ends cleanly
/// (#UD from the floating bus's 0xff bytes, #GP, or #PF from the flat identity map, which
/// leaves the top of the address space unmapped). A non-canonical target faults at the jump
/// itself (#GP(0) with RIP at the JMP), the others at the target.
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
                            Exception::InvalidOpcode
                                | Exception::GeneralProtection
                                | Exception::PageFault
                        ),
                        "{tier:?} {target:#x}: {fault:?}"
                    );
                    let canonical = ((target as i64) << 16 >> 16) as u64 == target;
                    // mov rax, imm64 (10 bytes) at 0x1000, then the jump.
                    let want = if canonical { target } else { 0x100a };
                    assert_eq!(rip, want, "{tier:?} {target:#x}");
                }
                other => panic!("{tier:?} {target:#x}: {other:?}"),
            }
        }
    }
}

/// A long REP MOVSB stops between iterations when the instruction budget runs out, with
/// RCX/RSI/RDI showing the iterations done and RIP still at the REP instruction; running
/// on completes the copy. Every tier, including a JIT loop kept inside one function. Each
/// run of the instruction counts once against the budget, and does at most a page of
/// iterations (in bulk, `crane86_runtime::memory::rep_bulk`), so a budget of a few
/// instructions stops the 50,000-byte copy partway.
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
        assert_eq!(m.run(Some(6)).unwrap(), RunEnd::Limit, "{tier:?}");
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

/// INT n through the real-mode IVT and back with IRET: the handler runs with IF and TF clear
/// and the flags come back, in every tier.
#[test]
fn real_mode_int_and_iret_round_trip() {
    let mut a = CodeAssembler::new(16).unwrap();
    let mut handler = a.create_label();
    let mut after = a.create_label();
    // IVT[0x80] = 0000:handler
    a.mov(word_ptr(0x80 * 4), 0x1000 + 0x40).unwrap();
    a.mov(word_ptr(0x80 * 4 + 2), 0).unwrap();
    a.sti().unwrap();
    a.mov(bl, 0).unwrap();
    a.int(0x80).unwrap();
    a.jmp(after).unwrap();
    a.set_label(&mut after).unwrap();
    // AL = BL (set by the handler) + (IF after return ? 0x10 : 0)
    a.pushf().unwrap();
    a.pop(cx).unwrap();
    a.shr(cx, 5).unwrap();
    a.and(cl, 0x10).unwrap();
    a.mov(al, bl).unwrap();
    a.add(al, cl).unwrap();
    a.out(0xf4, al).unwrap();
    a.hlt().unwrap();
    let mut code = a.assemble(0x1000).unwrap();
    assert!(code.len() <= 0x40, "the handler goes at offset 0x40");
    code.resize(0x40, 0x90);
    let mut h = CodeAssembler::new(16).unwrap();
    h.set_label(&mut handler).unwrap();
    // BL = 0x40 | (IF ? 1 : 0)
    h.pushf().unwrap();
    h.pop(dx).unwrap();
    h.shr(dx, 9).unwrap();
    h.and(dl, 1).unwrap();
    h.or(dl, 0x40).unwrap();
    h.mov(bl, dl).unwrap();
    h.iret().unwrap();
    code.extend(h.assemble(0x1040).unwrap());
    for tier in TIERS {
        let mut m = machine(tier);
        m.load_flat(&code, 0x1000, 0x1000, CpuMode::Real16).unwrap();
        // IF was set before INT, cleared in the handler, restored by IRET.
        assert_eq!(
            m.run(Some(10_000)).unwrap(),
            RunEnd::DebugExit(0x50),
            "{tier:?}"
        );
    }
}

/// A 32-bit interrupt gate in a real IDT: INT 0x30 reaches the handler on the same stack with
/// EFLAGS, CS and EIP pushed, and IRETD returns.
#[test]
fn protected_mode_int_through_an_idt_gate() {
    let mut a = CodeAssembler::new(32).unwrap();
    let mut after = a.create_label();
    a.mov(esp, 0x8000).unwrap();
    a.mov(ebx, 0).unwrap();
    a.int(0x30).unwrap();
    a.set_label(&mut after).unwrap();
    a.mov(eax, ebx).unwrap();
    a.out(0xf4, al).unwrap();
    a.hlt().unwrap();
    let mut code = a.assemble(0x1000).unwrap();
    code.resize(0x80, 0x90);
    let mut h = CodeAssembler::new(32).unwrap();
    // EBX = saved CS (from the frame) + 0x20
    h.mov(ebx, dword_ptr(esp + 4)).unwrap();
    h.add(ebx, 0x20).unwrap();
    h.iretd().unwrap();
    code.extend(h.assemble(0x1080).unwrap());
    for tier in TIERS {
        let mut m = machine(tier);
        m.load_flat(&code, 0x1000, 0x1000, CpuMode::Prot32).unwrap();
        // GDT at 0x500: null, code 0x08 (flat 32-bit), data 0x10; IDT at 0x600.
        let gdt: [u64; 3] = [0, 0x00cf_9a00_0000_ffff, 0x00cf_9200_0000_ffff];
        for (i, d) in gdt.iter().enumerate() {
            m.mem.load(0x500 + 8 * i as u64, &d.to_le_bytes()).unwrap();
        }
        // interrupt gate: offset 0x1080, selector 0x08, type 0xE, DPL 0, present
        let off = 0x1080u64;
        let gate = (off & 0xffff) | (0x08 << 16) | (0x8e00 << 32) | ((off >> 16) << 48);
        m.mem.load(0x600 + 8 * 0x30, &gate.to_le_bytes()).unwrap();
        m.cpu.gdtr = crane86_runtime::DescriptorTable {
            base: 0x500,
            limit: 23,
        };
        m.cpu.idtr = crane86_runtime::DescriptorTable {
            base: 0x600,
            limit: 0x7ff,
        };
        assert_eq!(
            m.run(Some(10_000)).unwrap(),
            RunEnd::DebugExit(0x28),
            "{tier:?}"
        );
        assert_eq!(
            m.cpu.gpr(Gpr::Rsp),
            0x8000,
            "{tier:?}: IRETD popped the frame"
        );
    }
}

/// WRMSR/RDMSR, RDTSC, LGDT/SGDT, MOV to and from segment registers and PUSH/POP of them, in
/// 32-bit protected mode, in every tier.
#[test]
fn system_registers_round_trip() {
    let mut a = CodeAssembler::new(32).unwrap();
    a.mov(esp, 0x8000).unwrap();
    // GS.base via WRMSR, read back through a GS-relative load
    a.mov(ecx, 0xc000_0101u32 as i32).unwrap();
    a.mov(eax, 0x3000).unwrap();
    a.xor(edx, edx).unwrap();
    a.wrmsr().unwrap();
    a.mov(dword_ptr(0x3010), 0x1111_2222).unwrap();
    a.mov(esi, dword_ptr(0x10).gs()).unwrap();
    // LGDT from memory, SGDT back
    a.lgdt(ptr(0x2000)).unwrap();
    a.sgdt(ptr(0x2010)).unwrap();
    // a data segment with base 0x4000 from the new GDT into ES, via PUSH/POP through DS
    a.mov(eax, 0x18).unwrap();
    a.mov(es, ax).unwrap();
    a.mov(dword_ptr(0x4020), 0x5555_6666).unwrap();
    a.mov(edi, dword_ptr(0x20).es()).unwrap();
    a.push(es).unwrap();
    a.pop(fs).unwrap();
    a.mov(bx, fs).unwrap();
    // RDTSC twice: it moves forward
    a.rdtsc().unwrap();
    a.mov(ebp, eax).unwrap();
    a.rdtsc().unwrap();
    a.sub(eax, ebp).unwrap();
    a.mov(ecx, eax).unwrap();
    a.mov(eax, 0).unwrap();
    a.out(0xf4, al).unwrap();
    let code = a.assemble(0x1000).unwrap();
    for tier in TIERS {
        let mut m = machine(tier);
        m.load_flat(&code, 0x1000, 0x1000, CpuMode::Prot32).unwrap();
        write_gdt(&mut m, 0x4000);
        m.mem.load(0x2000, &[31, 0, 0x00, 0x05, 0, 0]).unwrap();
        assert_eq!(
            m.run(Some(10_000)).unwrap(),
            RunEnd::DebugExit(0),
            "{tier:?}"
        );
        assert_eq!(
            m.cpu.gpr(Gpr::Rsi),
            0x1111_2222,
            "{tier:?}: GS.base from WRMSR"
        );
        assert_eq!(
            &m.mem.ram()[0x2010..0x2016],
            &[31, 0, 0x00, 0x05, 0, 0],
            "{tier:?}: SGDT"
        );
        assert_eq!(m.cpu.gdtr.base, 0x500, "{tier:?}");
        assert_eq!(m.cpu.gpr(Gpr::Rdi), 0x5555_6666, "{tier:?}: ES.base 0x4000");
        assert_eq!(
            m.cpu.gpr(Gpr::Rbx) & 0xffff,
            0x18,
            "{tier:?}: FS loaded from ES"
        );
        assert_eq!(
            m.cpu.seg[crane86_runtime::SegReg::Fs as usize].base,
            0x4000,
            "{tier:?}"
        );
        assert!(
            m.cpu.gpr(Gpr::Rcx) > 0 && m.cpu.gpr(Gpr::Rcx) < 10,
            "{tier:?}: TSC ticks per instruction"
        );
        assert_eq!(m.cpu.gpr(Gpr::Rsp), 0x8000, "{tier:?}");
    }
}

/// Loading a selector beyond the GDT limit raises #GP with the selector as error code.
#[test]
fn a_bad_segment_load_faults_with_the_selector() {
    use crane86_runtime::Exception;
    let mut a = CodeAssembler::new(32).unwrap();
    a.mov(eax, 0x28).unwrap();
    a.mov(ds, ax).unwrap();
    let code = a.assemble(0x1000).unwrap();
    for tier in TIERS {
        let mut m = machine(tier);
        m.load_flat(&code, 0x1000, 0x1000, CpuMode::Prot32).unwrap();
        m.cpu.gdtr = crane86_runtime::DescriptorTable {
            base: 0x500,
            limit: 23,
        };
        match m.run(Some(100)).unwrap() {
            RunEnd::Fault { fault, rip } => {
                assert_eq!(fault.exception, Exception::GeneralProtection, "{tier:?}");
                assert_eq!(fault.error_code, 0x28, "{tier:?}");
                assert_eq!(rip, 0x1005, "{tier:?}");
            }
            other => panic!("{tier:?}: {other:?}"),
        }
    }
}

/// Blocks whose DS, ES and SS have base 0 add no base (`BlockKey::zero_bases`), so a load
/// that gives DS or ES another base must lead to blocks translated under the other key: a
/// loop alternating the two reads both copies of its data in every tier, compiled or not.
#[test]
fn data_segment_bases_follow_segment_loads_in_every_tier() {
    let mut a = CodeAssembler::new(32).unwrap();
    let mut top = a.create_label();
    a.xor(eax, eax).unwrap();
    a.mov(ecx, 40).unwrap();
    a.set_label(&mut top).unwrap();
    for (sel, disp) in [(0x10, 0x100), (0x18, 0x100)] {
        a.mov(ebx, sel).unwrap();
        a.mov(ds, bx).unwrap();
        a.add(eax, dword_ptr(disp)).unwrap();
    }
    for (sel, disp) in [(0x18, 0x104), (0x10, 0x104)] {
        a.mov(ebx, sel).unwrap();
        a.mov(es, bx).unwrap();
        a.add(eax, dword_ptr(disp).es()).unwrap();
    }
    a.dec(ecx).unwrap();
    a.jne(top).unwrap();
    a.out(0xf4, al).unwrap();
    let code = a.assemble(0x1000).unwrap();
    for tier in TIERS {
        let mut m = machine(tier);
        m.load_flat(&code, 0x1000, 0x1000, CpuMode::Prot32).unwrap();
        write_gdt(&mut m, 0x3000);
        m.cpu.gdtr = crane86_runtime::DescriptorTable {
            base: 0x500,
            limit: 31,
        };
        for (at, v) in [
            (0x100u64, 1u32),
            (0x3100, 100),
            (0x3104, 10_000),
            (0x104, 1_000_000),
        ] {
            m.mem.load(at, &v.to_le_bytes()).unwrap();
        }
        let want = 40 * 1_010_101u64;
        assert_eq!(
            m.run(Some(100_000)).unwrap(),
            RunEnd::DebugExit((want & 0xff) as u32),
            "{tier:?}"
        );
        assert_eq!(m.cpu.gpr(Gpr::Rax), want, "{tier:?}");
    }
}

/// A #UD handler that is itself an invalid opcode loops forever, as on hardware, without
/// retiring an instruction; the run still ends at its limit (each delivery counts).
#[test]
fn a_fault_loop_ends_at_the_limit() {
    for tier in TIERS {
        let mut m = Machine::new(&MachineConfig {
            tier,
            ..MachineConfig::default()
        })
        .unwrap();
        // UD2 at 0x1000 and at the handler, 0000:2000, that IVT entry 6 points at.
        m.load_flat(&[0x0f, 0x0b], 0x1000, 0x1000, CpuMode::Real16)
            .unwrap();
        m.mem.load(0x2000, &[0x0f, 0x0b]).unwrap();
        m.mem.load(6 * 4, &[0x00, 0x20, 0x00, 0x00]).unwrap();
        assert_eq!(m.run(Some(1000)).unwrap(), RunEnd::Limit, "{tier:?}");
        assert_eq!(m.stats.exceptions, 1000, "{tier:?}");
        assert_eq!(m.cpu.rip, 0x2000, "{tier:?}");
    }
}

/// An armed instruction breakpoint (DR0, DR7.L0) raises #DB before the instruction runs,
/// with DR6.B0 set, in every tier.
#[test]
fn instruction_breakpoints_fault_before_the_instruction() {
    use crane86_runtime::Exception;
    let mut a = CodeAssembler::new(64).unwrap();
    let mut target = a.create_label();
    a.lea(rax, ptr(target)).unwrap();
    a.mov(dr0, rax).unwrap();
    a.mov(eax, 1).unwrap();
    a.mov(dr7, rax).unwrap();
    a.mov(ebx, 7).unwrap();
    a.set_label(&mut target).unwrap();
    a.mov(ebx, 8).unwrap();
    a.hlt().unwrap();
    let code = a.assemble(0x1000).unwrap();
    let at = 0x1000 + code.len() as u64 - 6;
    for tier in TIERS {
        let mut m = machine(tier);
        m.load_flat(&code, 0x1000, 0x1000, CpuMode::Long64).unwrap();
        match m.run(Some(100)).unwrap() {
            RunEnd::Fault { fault, rip } => {
                assert_eq!(fault.exception, Exception::Debug, "{tier:?}");
                assert_eq!(rip, at, "{tier:?}");
            }
            other => panic!("{tier:?}: {other:?}"),
        }
        assert_eq!(m.cpu.gpr(Gpr::Rbx), 7, "{tier:?}: stopped before the MOV");
        assert_eq!(m.cpu.dr[6] & 0xf, 1, "{tier:?}: DR6.B0");
    }
}

/// Jumping outside RAM fetches from a floating bus (all-ones bytes, not an instruction): #UD
/// at the target, in every tier, rather than a run loop that spins without retiring.
#[test]
fn fetching_outside_ram_is_an_invalid_opcode() {
    let mut a = CodeAssembler::new(32).unwrap();
    a.mov(eax, 0xfeb0_0000u32).unwrap();
    a.jmp(eax).unwrap();
    let code = a.assemble(0x1000).unwrap();
    for tier in TIERS {
        let mut m = machine(tier);
        m.load_flat(&code, 0x1000, 0x1000, CpuMode::Prot32).unwrap();
        match m.run(Some(1000)).unwrap() {
            RunEnd::Fault { fault, rip } => {
                assert_eq!(fault.exception, crane86_runtime::Exception::InvalidOpcode);
                assert_eq!(rip, 0xfeb0_0000, "{tier:?}");
            }
            end => panic!("{tier:?}: {end:?}"),
        }
    }
}

/// LDS and LSS load a far pointer: the selector into the segment register, the offset into
/// the general register (real mode: base = selector * 16), in every tier.
#[test]
fn lds_and_lss_load_far_pointers() {
    use crane86_runtime::SegReg;
    // lss sp, [0x2004]; lds si, [0x2000]; hlt (LDS last: it moves DS, which both address)
    let code = [0x0f, 0xb2, 0x26, 0x04, 0x20, 0xc5, 0x36, 0x00, 0x20, 0xf4];
    for tier in TIERS {
        let mut m = machine(tier);
        m.load_flat(&code, 0x1000, 0x1000, CpuMode::Real16).unwrap();
        m.mem
            .load(0x2000, &[0x34, 0x12, 0x78, 0x56, 0xfe, 0x7f, 0x00, 0x30])
            .unwrap();
        assert_eq!(m.run(Some(100)).unwrap(), RunEnd::Halted, "{tier:?}");
        assert_eq!(m.cpu.gpr(Gpr::Rsi) & 0xffff, 0x1234, "{tier:?}");
        assert_eq!(m.cpu.seg(SegReg::Ds).selector, 0x5678, "{tier:?}");
        assert_eq!(m.cpu.seg(SegReg::Ds).base, 0x56780, "{tier:?}");
        assert_eq!(m.cpu.gpr(Gpr::Rsp) & 0xffff, 0x7ffe, "{tier:?}");
        assert_eq!(m.cpu.seg(SegReg::Ss).base, 0x30000, "{tier:?}");
    }
}

/// CPUID.1:EDX.APIC follows IA32_APIC_BASE.EN: clear on the flat machine (no local APIC),
/// set once the guest enables it.
#[test]
fn cpuid_apic_bit_follows_apic_base_enable() {
    let mut a = CodeAssembler::new(64).unwrap();
    a.mov(eax, 1).unwrap();
    a.cpuid().unwrap();
    a.mov(ebx, edx).unwrap();
    a.mov(ecx, 0x1b).unwrap();
    a.rdmsr().unwrap();
    a.or(eax, 1 << 11).unwrap();
    a.wrmsr().unwrap();
    a.mov(eax, 1).unwrap();
    a.cpuid().unwrap();
    a.hlt().unwrap();
    let code = a.assemble(0x1000).unwrap();
    for tier in TIERS {
        let mut m = machine(tier);
        m.load_flat(&code, 0x1000, 0x1000, CpuMode::Long64).unwrap();
        assert_eq!(m.run(Some(100)).unwrap(), RunEnd::Halted, "{tier:?}");
        assert_eq!(
            m.cpu.gpr(Gpr::Rbx) & (1 << 9),
            0,
            "{tier:?}: no APIC at first"
        );
        assert_ne!(
            m.cpu.gpr(Gpr::Rdx) & (1 << 9),
            0,
            "{tier:?}: APIC once enabled"
        );
    }
}

/// A loop that calls a function on another page and returns through RET: neither exit can
/// be chained through a slot (RET is indirect; under paging the call crosses pages), so
/// compiled code finds both targets through the cache's table (`jump_lookup`) and stays out
/// of the run loop; the result is the same as the interpreter's.
#[test]
fn calls_across_pages_and_returns_stay_in_compiled_code() {
    let mut a = CodeAssembler::new(64).unwrap();
    let mut top = a.create_label();
    let mut func = a.create_label();
    a.xor(r8, r8).unwrap();
    a.mov(ecx, 10_000).unwrap();
    a.set_label(&mut top).unwrap();
    a.call(func).unwrap();
    a.dec(ecx).unwrap();
    a.jne(top).unwrap();
    a.mov(rax, r8).unwrap();
    a.out(0xf4, al).unwrap();
    // The function on the next page.
    a.db(&[0xcc; 0x1000]).unwrap();
    a.set_label(&mut func).unwrap();
    a.lea(r8, qword_ptr(r8 + rcx * 2 + 1)).unwrap();
    a.ret().unwrap();
    let code = a.assemble(0x1000).unwrap();
    let want: u64 = (1..=10_000u64).map(|i| 2 * i + 1).sum();
    let mut entries = Vec::new();
    for tier in [Tier::Interp, Tier::Jit] {
        let mut m = machine(tier);
        m.load_flat(&code, 0x1000, 0x1000, CpuMode::Long64).unwrap();
        let end = m.run(Some(1_000_000)).unwrap();
        assert_eq!(end, RunEnd::DebugExit((want & 0xff) as u32), "{tier:?}");
        assert_eq!(m.cpu.gpr(Gpr::R8), want, "{tier:?}");
        entries.push(m.stats.jit_entries);
    }
    // 20,000 block transfers; a handful of entries from the run loop while the blocks are
    // first compiled and linked.
    assert!(
        entries[1] < 100,
        "{} entries into compiled code",
        entries[1]
    );
}

/// Background compilation (`JitOptions::background`): hot blocks are compiled on another
/// thread while the vCPU interprets them, then run compiled; results do not change.
#[test]
fn background_compilation_gives_the_same_result_and_compiles() {
    let want: u64 = (1..=1000u64).map(|i| (3 * i + 7) ^ 0x55).sum();
    let mut m = Machine::new(&MachineConfig {
        tier: Tier::Auto { threshold: 3 },
        exceptions: ExceptionPolicy::Stop,
        jit: crane86_translator::jit::JitOptions {
            background: true,
            ..Default::default()
        },
        ..MachineConfig::default()
    })
    .unwrap();
    // Run the loop many times over, so the compiled code arrives while it still runs.
    let mut code = sum_loop();
    let out = code.len() - 2;
    code.truncate(out);
    let mut a = CodeAssembler::new(64).unwrap();
    a.dec(r15).unwrap();
    a.jne(0x1000u64).unwrap();
    a.out(0xf4, al).unwrap();
    code.extend(a.assemble(0x1000 + out as u64).unwrap());
    m.load_flat(&code, 0x1000, 0x1000, CpuMode::Long64).unwrap();
    m.cpu.set_gpr(Gpr::R15, 2000);
    let end = m.run(Some(100_000_000)).unwrap();
    assert_eq!(end, RunEnd::DebugExit((want & 0xff) as u32));
    assert_eq!(m.cpu.gpr(Gpr::R9), want);
    assert!(m.cache.stats.blocks_compiled > 0, "nothing was compiled");
    assert!(m.stats.insns_jit > m.stats.insns_interp, "{:?}", m.stats);
}

/// Blocks under a flat FS skip the limit check of FS overrides (`BlockKey::fs_flat`), so
/// code that ran hot (compiled, in the JIT tiers) under a flat FS must be checked again once
/// FS is loaded with a 512-byte segment: a dword at FS:0x1FE crosses that limit, #GP(0) at
/// the access, in every tier.
#[test]
fn fs_override_checks_follow_fs_loads_in_every_tier() {
    use crane86_runtime::Exception;
    let mut a = CodeAssembler::new(32).unwrap();
    let mut top = a.create_label();
    a.xor(eax, eax).unwrap();
    a.mov(ecx, 200).unwrap();
    a.mov(ebx, 0x18).unwrap();
    a.mov(fs, bx).unwrap();
    a.mov(esi, 0x100).unwrap();
    a.xor(edi, edi).unwrap();
    a.set_label(&mut top).unwrap();
    a.add(eax, dword_ptr(esi).fs()).unwrap();
    a.add(esi, edi).unwrap();
    a.dec(ecx).unwrap();
    a.jne(top).unwrap();
    a.mov(ebx, 0x20).unwrap();
    a.mov(fs, bx).unwrap();
    // Within the limit first, then across it.
    a.mov(esi, 0x1fc).unwrap();
    a.mov(edi, 2).unwrap();
    a.mov(ecx, 2).unwrap();
    a.jmp(top).unwrap();
    let r = a
        .assemble_options(0x1000, BlockEncoderOptions::RETURN_NEW_INSTRUCTION_OFFSETS)
        .unwrap();
    let add_at = r.label_ip(&top).unwrap();
    let code = r.inner.code_buffer;
    for tier in TIERS {
        let mut m = machine(tier);
        m.load_flat(&code, 0x1000, 0x1000, CpuMode::Prot32).unwrap();
        // Null, flat code, flat data, flat data based at 0x3000, 512-byte data at 0x3000.
        let gdt: [u64; 5] = [
            0,
            0x00cf_9a00_0000_ffff,
            0x00cf_9200_0000_ffff,
            0x00cf_9200_3000_ffff,
            0x0040_9200_3000_01ff,
        ];
        for (i, d) in gdt.iter().enumerate() {
            m.mem.load(0x500 + 8 * i as u64, &d.to_le_bytes()).unwrap();
        }
        m.cpu.gdtr = crane86_runtime::DescriptorTable {
            base: 0x500,
            limit: 39,
        };
        m.mem.load(0x3100, &7u32.to_le_bytes()).unwrap();
        m.mem.load(0x31fc, &1000u32.to_le_bytes()).unwrap();
        match m.run(Some(100_000)).unwrap() {
            RunEnd::Fault { fault, rip } => {
                assert_eq!(fault.exception, Exception::GeneralProtection, "{tier:?}");
                assert_eq!(fault.error_code, 0, "{tier:?}");
                assert_eq!(rip, add_at, "{tier:?}");
            }
            other => panic!("{tier:?}: {other:?}"),
        }
        assert_eq!(m.cpu.gpr(Gpr::Rax), 200 * 7 + 1000, "{tier:?}");
        assert_eq!(m.cpu.gpr(Gpr::Rsi), 0x1fe, "{tier:?}");
    }
}

/// The run counters say who retired what: the same loop retires the same instructions in
/// the interpreter, in baseline code and in the JIT, and each tier's count holds its own
/// (baseline code's are not counted as interpreted).
#[test]
fn retired_instructions_are_counted_per_tier() {
    let mut totals = Vec::new();
    for tier in [Tier::Interp, Tier::Baseline, Tier::Jit] {
        let mut m = machine(tier);
        m.load_flat(&sum_loop(), 0x1000, 0x1000, CpuMode::Long64)
            .unwrap();
        assert!(matches!(
            m.run(Some(10_000_000)).unwrap(),
            RunEnd::DebugExit(_)
        ));
        let s = &m.stats;
        match tier {
            Tier::Interp => assert!(s.insns_baseline == 0 && s.insns_jit == 0, "{s:?}"),
            Tier::Baseline => assert!(
                s.insns_baseline > s.insns_interp && s.insns_jit == 0,
                "{s:?}"
            ),
            _ => assert!(
                s.insns_jit > s.insns_interp && s.insns_baseline == 0,
                "{s:?}"
            ),
        }
        assert_eq!(s.insns(), m.cpu.retired, "{tier:?}");
        totals.push(s.insns());
    }
    assert!(totals.iter().all(|&t| t == totals[0]), "{totals:?}");
}
