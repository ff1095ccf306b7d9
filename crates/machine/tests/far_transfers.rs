//! Far JMP/CALL/RETF, call gates, SYSCALL/SYSRET, SYSENTER/SYSEXIT, SWAPGS and the system
//! segment instructions, in small guests run under every tier.
//!
//! Each guest is a few pieces of code placed at fixed addresses (so that selectors and
//! offsets can be immediates) with a GDT written by the test; it ends with an OUT to
//! isa-debug-exit from ring 0, and the test then checks registers and memory.

use crane86_machine::{ExceptionPolicy, Machine, MachineConfig, RunEnd};
use crane86_runtime::{CpuMode, DescriptorTable, Exception, Gpr, SegReg};
use crane86_translator::Tier;
use iced_x86::code_asm::*;
use iced_x86::IcedError;

const TIERS: [Tier; 3] = [Tier::Interp, Tier::Jit, Tier::Auto { threshold: 2 }];

const GDT: u64 = 0x500;
const TSS: u64 = 0x600;

// Flat descriptors.
const CODE32_0: u64 = 0x00cf_9a00_0000_ffff;
const DATA32_0: u64 = 0x00cf_9200_0000_ffff;
const CODE32_3: u64 = 0x00cf_fa00_0000_ffff;
const DATA32_3: u64 = 0x00cf_f200_0000_ffff;
const CODE64_0: u64 = 0x00af_9a00_0000_ffff;
const CODE64_3: u64 = 0x00af_fa00_0000_ffff;
/// A 32-bit TSS at [`TSS`], limit 0x67, available.
const TSS32: u64 = 0x0000_8900_0000_0067 | (TSS << 16);
/// A not-present 32-bit code segment.
const CODE32_ABSENT: u64 = CODE32_0 & !(1 << 47);

fn machine(tier: Tier) -> Machine {
    Machine::new(&MachineConfig {
        tier,
        // The faults these guests provoke are the results being checked.
        exceptions: ExceptionPolicy::Stop,
        ..MachineConfig::default()
    })
    .unwrap()
}

/// A call gate: `access` = P|DPL|type, `count` parameters.
fn gate(sel: u16, off: u32, access: u8, count: u8) -> u64 {
    u64::from(off & 0xffff)
        | (u64::from(sel) << 16)
        | (u64::from(count) << 32)
        | (u64::from(access) << 40)
        | (u64::from(off >> 16) << 48)
}

fn asm(bits: u32, at: u64, f: impl FnOnce(&mut CodeAssembler) -> Result<(), IcedError>) -> Vec<u8> {
    let mut a = CodeAssembler::new(bits).unwrap();
    f(&mut a).unwrap();
    a.assemble(at).unwrap()
}

/// A guest: pieces of code at their addresses, the GDT, and the mode the first piece starts
/// in.
struct Guest {
    mode: CpuMode,
    pieces: Vec<(u64, Vec<u8>)>,
    gdt: Vec<u64>,
}

impl Guest {
    fn load(&self, m: &mut Machine) {
        let (entry, code) = &self.pieces[0];
        m.load_flat(code, *entry, *entry, self.mode).unwrap();
        for (at, code) in &self.pieces[1..] {
            m.mem.load(*at, code).unwrap();
        }
        for (i, d) in self.gdt.iter().enumerate() {
            m.mem.load(GDT + 8 * i as u64, &d.to_le_bytes()).unwrap();
        }
        m.cpu.gdtr = DescriptorTable {
            base: GDT,
            limit: (self.gdt.len() * 8 - 1) as u16,
        };
    }
}

fn read32(m: &Machine, a: u64) -> u64 {
    let r = &m.mem.ram()[a as usize..a as usize + 4];
    u64::from(u32::from_le_bytes(r.try_into().unwrap()))
}

/// Real mode: CALL FAR to another segment with a parameter, RETF 2 back, JMP FAR onward.
#[test]
fn real_mode_far_call_retf_and_jmp() {
    let main = asm(16, 0x1000, |a| {
        a.mov(bx, 0)?;
        a.push(0x55)?;
        a.call_far(0x0200, 0x0010)?; // linear 0x2010
        a.add(bx, 1)?;
        a.jmp_far(0x0300, 0x0000) // linear 0x3000
    });
    let routine = asm(16, 0x10, |a| {
        a.mov(bp, sp)?;
        a.mov(ax, word_ptr(bp + 4))?; // the parameter, above CS:IP
        a.add(bx, ax)?;
        a.mov(dx, cs)?;
        a.retf_1(2)
    });
    let tail = asm(16, 0, |a| {
        a.mov(ax, bx)?;
        a.out(0xf4, al)
    });
    let g = Guest {
        mode: CpuMode::Real16,
        pieces: vec![(0x1000, main), (0x2010, routine), (0x3000, tail)],
        gdt: vec![0],
    };
    for tier in TIERS {
        let mut m = machine(tier);
        g.load(&mut m);
        let sp0 = m.cpu.gpr(Gpr::Rsp);
        assert_eq!(
            m.run(Some(1000)).unwrap(),
            RunEnd::DebugExit(0x56),
            "{tier:?}"
        );
        assert_eq!(
            m.cpu.gpr(Gpr::Rdx) & 0xffff,
            0x200,
            "{tier:?}: CS in the routine"
        );
        assert_eq!(
            m.cpu.gpr(Gpr::Rsp),
            sp0,
            "{tier:?}: RETF 2 released the parameter"
        );
        assert_eq!(m.cpu.seg(SegReg::Cs).base, 0x3000, "{tier:?}");
    }
}

/// 32-bit protected mode: LTR/LLDT, a far JMP, RETF to ring 3 (nulling the ring-0 data
/// segments), a CALL through a call gate to ring 0 with one parameter copied and RETF 4
/// back, then LAR/LSL/VERR/VERW/ARPL/STR/SLDT/SMSW at ring 3, and a second gate to exit.
#[test]
fn protected_mode_rings_call_gates_and_segment_instructions() {
    let setup = asm(32, 0x1000, |a| {
        a.mov(esp, 0x8000)?;
        a.mov(eax, 0x28)?;
        a.ltr(ax)?;
        a.mov(eax, 0x40)?;
        a.lldt(ax)?;
        a.jmp_far(0x08, 0x1100)
    });
    let to_user = asm(32, 0x1100, |a| {
        a.push(0x23)?;
        a.push(0x7000)?;
        a.push(0x1b)?;
        a.push(0x2000)?;
        a.retf()
    });
    let zf_bit = |a: &mut CodeAssembler, bit: u32| -> Result<(), IcedError> {
        a.pushfd()?;
        a.pop(eax)?;
        a.shr(eax, 6)?;
        a.and(eax, 1)?;
        a.shl(eax, bit)?;
        a.or(edi, eax)
    };
    let user = asm(32, 0x2000, |a| {
        a.mov(esi, fs)?;
        a.mov(eax, 0x23)?;
        a.mov(ds, ax)?;
        a.mov(dword_ptr(0x3030), esi)?;
        a.push(5)?;
        a.call_far(0x33, 0)?;
        a.mov(dword_ptr(0x3000), ebx)?;
        a.mov(dword_ptr(0x3004), esp)?;
        a.xor(edi, edi)?;
        a.mov(eax, 0x1b)?;
        a.lar(ecx, eax)?;
        zf_bit(a, 0)?;
        a.mov(dword_ptr(0x3008), ecx)?;
        a.mov(eax, 0x23)?;
        a.lsl(edx, eax)?;
        zf_bit(a, 1)?;
        a.mov(dword_ptr(0x300c), edx)?;
        a.mov(eax, 0x48)?;
        a.lsl(edx, eax)?;
        zf_bit(a, 2)?;
        a.mov(eax, 0x1b)?;
        a.verr(ax)?;
        zf_bit(a, 3)?;
        a.mov(eax, 0x1b)?;
        a.verw(ax)?;
        zf_bit(a, 4)?;
        a.mov(eax, 0x23)?;
        a.verw(ax)?;
        zf_bit(a, 5)?;
        a.mov(eax, 0x10)?;
        a.mov(ecx, 3)?;
        a.arpl(ax, cx)?;
        a.mov(dword_ptr(0x3014), eax)?;
        zf_bit(a, 6)?;
        a.mov(eax, 0x13)?;
        a.arpl(ax, cx)?;
        zf_bit(a, 7)?; // already RPL 3: ZF = 0
        a.mov(dword_ptr(0x3010), edi)?;
        a.str(word_ptr(0x3018))?;
        a.mov(eax, 0xffff_ffffu32 as i32)?;
        a.sldt(eax)?;
        a.mov(dword_ptr(0x301c), eax)?;
        a.smsw(eax)?;
        a.mov(dword_ptr(0x3020), eax)?;
        a.call_far(0x3b, 0)
    });
    let handler = asm(32, 0x2400, |a| {
        a.mov(eax, dword_ptr(esp + 8))?; // the copied parameter
        a.lea(ebx, dword_ptr(eax + eax + 1))?;
        a.mov(eax, dword_ptr(esp + 4))?; // the caller's CS
        a.mov(dword_ptr(0x3024), eax)?;
        a.mov(dword_ptr(0x302c), esp)?;
        a.mov(eax, ss)?;
        a.mov(dword_ptr(0x3028), eax)?;
        a.retf_1(4)
    });
    let exit = asm(32, 0x2500, |a| {
        a.mov(eax, 0x42)?;
        a.out(0xf4, al)
    });
    let g = Guest {
        mode: CpuMode::Prot32,
        pieces: vec![
            (0x1000, setup),
            (0x1100, to_user),
            (0x2000, user),
            (0x2400, handler),
            (0x2500, exit),
        ],
        gdt: vec![
            0,
            CODE32_0,
            DATA32_0,
            CODE32_3,
            DATA32_3,
            TSS32,
            gate(0x08, 0x2400, 0xec, 1),
            gate(0x08, 0x2500, 0xec, 0),
            0x0000_8200_0700_0017, // 0x40 LDT at 0x700
            0x0000_9200_0000_1234, // 0x48 ring-0 data, limit 0x1234
        ],
    };
    for tier in TIERS {
        let mut m = machine(tier);
        g.load(&mut m);
        m.mem.load(TSS + 4, &0x9000u32.to_le_bytes()).unwrap();
        m.mem.load(TSS + 8, &0x10u16.to_le_bytes()).unwrap();
        m.cpu.seg[SegReg::Fs as usize].selector = 0x10;
        assert_eq!(
            m.run(Some(10_000)).unwrap(),
            RunEnd::DebugExit(0x42),
            "{tier:?}"
        );
        let got: Vec<u64> = (0..13).map(|i| read32(&m, 0x3000 + 4 * i)).collect();
        assert_eq!(got[0], 11, "{tier:?}: the handler saw the parameter 5");
        assert_eq!(
            got[1], 0x7000,
            "{tier:?}: RETF 4 released it on the ring-3 stack"
        );
        assert_eq!(
            got[2], 0x00c0_fb00,
            "{tier:?}: LAR (accessed bit set by the CS load)"
        );
        assert_eq!(got[3], 0xffff_ffff, "{tier:?}: LSL of flat data");
        assert_eq!(got[4], 0b110_1011, "{tier:?}: ZF of each query");
        assert_eq!(got[5] & 0xffff, 0x13, "{tier:?}: ARPL");
        assert_eq!(got[6] & 0xffff, 0x28, "{tier:?}: STR");
        assert_eq!(got[7], 0x40, "{tier:?}: SLDT r32 zero-extends");
        assert_eq!(got[8], 0x33, "{tier:?}: SMSW: PE, MP, ET and NE");
        assert_eq!(got[9], 0x1b, "{tier:?}: the gate pushed the caller's CS");
        assert_eq!(got[10], 0x10, "{tier:?}: ring-0 SS from the TSS");
        assert_eq!(
            got[11],
            0x9000 - 20,
            "{tier:?}: SS:ESP, parameter, CS:EIP pushed"
        );
        assert_eq!(got[12], 0, "{tier:?}: FS (DPL 0) nulled by RETF to ring 3");
        assert_eq!(
            (m.cpu.tr.selector, m.cpu.ldtr.selector),
            (0x28, 0x40),
            "{tier:?}"
        );
        assert_eq!(m.mem.ram()[GDT as usize + 0x2d], 0x8b, "{tier:?}: TSS busy");
        assert_eq!(m.cpu.seg(SegReg::Cs).selector, 0x08, "{tier:?}");
    }
}

/// Long mode: a far JMP through memory into compatibility mode and JMP FAR back, a far CALL
/// m16:64 with RETFQ, SYSRETQ to ring 3, SYSCALL back with SFMASK applied, SWAPGS.
#[test]
fn long_mode_far_transfers_syscall_sysret_and_swapgs() {
    let wrmsr = |a: &mut CodeAssembler, msr: u32, v: u64| -> Result<(), IcedError> {
        a.mov(ecx, msr as i32)?;
        a.mov(eax, v as u32 as i32)?;
        a.mov(edx, (v >> 32) as u32 as i32)?;
        a.wrmsr()
    };
    let main = asm(64, 0x1000, |a| {
        a.mov(esp, 0x8000)?;
        a.mov(ecx, 0xc000_0080u32 as i32)?;
        a.rdmsr()?;
        a.or(eax, 1)?; // EFER.SCE
        a.wrmsr()?;
        wrmsr(a, 0xc000_0081, (0x18 << 48) | (0x08 << 32))?; // STAR
        wrmsr(a, 0xc000_0082, 0x2300)?; // LSTAR
        wrmsr(a, 0xc000_0084, 0x400)?; // SFMASK: DF
        wrmsr(a, 0xc000_0102, 0x3100)?; // KERNEL_GS_BASE
        a.jmp(fword_ptr(0x2800))?; // m16:32 → 0x30:0x2000, compatibility mode
        a.nop()
    });
    let compat = asm(32, 0x2000, |a| {
        a.mov(ebx, 0x1234)?;
        a.jmp_far(0x08, 0x2040)
    });
    let back64 = asm(64, 0x2040, |a| {
        a.call(tword_ptr(0x2810))?; // m16:64 → 0x08:0x2100
        a.mov(rcx, 0x2200u64)?;
        a.mov(r11d, 2)?;
        a.sysretq()
    });
    let routine = asm(64, 0x2100, |a| {
        a.add(ebx, 1)?;
        a.mov(r15, rsp)?;
        a.retf() // RETFQ
    });
    let user = asm(64, 0x2200, |a| {
        a.std()?;
        a.mov(eax, 7)?;
        a.syscall()
    });
    let kernel = asm(64, 0x2300, |a| {
        a.pushfq()?;
        a.pop(r12)?;
        a.swapgs()?;
        a.mov(r13, qword_ptr(0).gs())?;
        a.swapgs()?;
        a.mov(eax, 0)?;
        a.out(0xf4, al)
    });
    let mut ptrs = vec![0u8; 0x20];
    ptrs[0..4].copy_from_slice(&0x2000u32.to_le_bytes());
    ptrs[4..6].copy_from_slice(&0x30u16.to_le_bytes());
    ptrs[0x10..0x18].copy_from_slice(&0x2100u64.to_le_bytes());
    ptrs[0x18..0x1a].copy_from_slice(&0x08u16.to_le_bytes());
    let g = Guest {
        mode: CpuMode::Long64,
        pieces: vec![
            (0x1000, main),
            (0x2000, compat),
            (0x2040, back64),
            (0x2100, routine),
            (0x2200, user),
            (0x2300, kernel),
            (0x2800, ptrs),
            (0x3100, 0x1122_3344_5566_7788u64.to_le_bytes().to_vec()),
        ],
        gdt: vec![
            0, CODE64_0, DATA32_0, CODE32_3, DATA32_3, CODE64_3, CODE32_0,
        ],
    };
    for tier in TIERS {
        let mut m = machine(tier);
        g.load(&mut m);
        assert_eq!(
            m.run(Some(10_000)).unwrap(),
            RunEnd::DebugExit(0),
            "{tier:?}"
        );
        assert_eq!(
            m.cpu.gpr(Gpr::Rbx),
            0x1235,
            "{tier:?}: compat code and the far call ran"
        );
        assert_eq!(
            m.cpu.gpr(Gpr::R15),
            0x8000 - 16,
            "{tier:?}: CALL m16:64 pushed 2 qwords"
        );
        assert_eq!(
            m.cpu.gpr(Gpr::Rcx),
            0x2208,
            "{tier:?}: SYSCALL saved the next RIP"
        );
        assert_eq!(
            m.cpu.gpr(Gpr::R11),
            0x402,
            "{tier:?}: ...and RFLAGS with DF"
        );
        assert_eq!(m.cpu.gpr(Gpr::R12), 0x2, "{tier:?}: SFMASK cleared DF");
        assert_eq!(
            m.cpu.gpr(Gpr::R13),
            0x1122_3344_5566_7788,
            "{tier:?}: SWAPGS"
        );
        assert_eq!(m.cpu.seg(SegReg::Gs).base, 0, "{tier:?}");
        assert_eq!(m.cpu.seg(SegReg::Cs).selector, 0x08, "{tier:?}");
        assert_eq!(m.cpu.seg(SegReg::Ss).selector, 0x10, "{tier:?}");
        assert_eq!(m.cpu.mode, CpuMode::Long64, "{tier:?}");
    }
}

/// SYSEXIT from ring 0 to ring 3 and SYSENTER back, in 32-bit protected mode.
#[test]
fn sysenter_and_sysexit_round_trip() {
    let main = asm(32, 0x1000, |a| {
        for (msr, v) in [(0x174, 0x08), (0x175, 0x9000), (0x176, 0x2300)] {
            a.mov(ecx, msr)?;
            a.mov(eax, v)?;
            a.xor(edx, edx)?;
            a.wrmsr()?;
        }
        a.mov(ecx, 0x7000)?;
        a.mov(edx, 0x2200)?;
        a.sysexit()
    });
    let user = asm(32, 0x2200, |a| {
        a.mov(ebx, esp)?;
        a.mov(esi, cs)?;
        a.sysenter()
    });
    let kernel = asm(32, 0x2300, |a| {
        a.mov(eax, 0x99)?;
        a.out(0xf4, al)
    });
    let g = Guest {
        mode: CpuMode::Prot32,
        pieces: vec![(0x1000, main), (0x2200, user), (0x2300, kernel)],
        gdt: vec![0, CODE32_0, DATA32_0, CODE32_3, DATA32_3],
    };
    for tier in TIERS {
        let mut m = machine(tier);
        g.load(&mut m);
        assert_eq!(
            m.run(Some(1000)).unwrap(),
            RunEnd::DebugExit(0x99),
            "{tier:?}"
        );
        assert_eq!(
            m.cpu.gpr(Gpr::Rbx),
            0x7000,
            "{tier:?}: SYSEXIT loaded ESP from ECX"
        );
        assert_eq!(m.cpu.gpr(Gpr::Rsi), 0x1b, "{tier:?}: ring-3 CS");
        assert_eq!(m.cpu.gpr(Gpr::Rsp), 0x9000, "{tier:?}: SYSENTER_ESP");
        assert_eq!(m.cpu.seg(SegReg::Ss).selector, 0x10, "{tier:?}");
    }
}

/// Faults stop the machine at the faulting instruction with the SDM's error code, and the
/// instruction has no effect.
#[test]
fn far_transfer_faults_are_precise() {
    let cases: Vec<(CpuMode, Vec<u8>, Exception, u32)> = vec![
        (
            CpuMode::Prot32,
            asm(32, 0x1000, |a| {
                a.mov(ebx, 1)?;
                a.jmp_far(0x28, 0) // not present
            }),
            Exception::SegmentNotPresent,
            0x28,
        ),
        (
            CpuMode::Prot32,
            asm(32, 0x1000, |a| {
                a.mov(ebx, 1)?;
                a.call_far(0x13, 0) // a data segment
            }),
            Exception::GeneralProtection,
            0x10,
        ),
        (
            CpuMode::Prot32,
            asm(32, 0x1000, |a| {
                a.mov(ebx, 1)?;
                a.call_far(0x30, 0) // a gate whose target is not present
            }),
            Exception::SegmentNotPresent,
            0x28,
        ),
        (
            CpuMode::Long64,
            asm(64, 0x1000, |a| {
                a.mov(ebx, 1)?;
                a.syscall() // EFER.SCE clear
            }),
            Exception::InvalidOpcode,
            0,
        ),
        (
            CpuMode::Real16,
            asm(16, 0x1000, |a| {
                a.mov(ebx, 1)?;
                a.lar(ax, bx) // not in real mode
            }),
            Exception::InvalidOpcode,
            0,
        ),
    ];
    for (mode, code, exception, error_code) in cases {
        let g = Guest {
            mode,
            pieces: vec![(0x1000, code.clone())],
            gdt: vec![
                0,
                CODE32_0,
                DATA32_0,
                CODE32_3,
                DATA32_3,
                CODE32_ABSENT,
                gate(0x28, 0, 0x8c, 0),
            ],
        };
        let insn_at = 0x1000 + if mode == CpuMode::Real16 { 6 } else { 5 };
        for tier in TIERS {
            let mut m = machine(tier);
            g.load(&mut m);
            let sp0 = m.cpu.gpr(Gpr::Rsp);
            match m.run(Some(100)).unwrap() {
                RunEnd::Fault { fault, rip } => {
                    assert_eq!((fault.exception, fault.error_code), (exception, error_code));
                    assert_eq!(m.cpu.seg(SegReg::Cs).base + rip, insn_at, "{tier:?}");
                }
                other => panic!("{tier:?} {exception:?}: {other:?}"),
            }
            assert_eq!(m.cpu.gpr(Gpr::Rbx), 1, "{tier:?}");
            assert_eq!(m.cpu.gpr(Gpr::Rsp), sp0, "{tier:?}: nothing pushed");
        }
    }
}

/// Hardware task switches: CALL FAR to a TSS and INT through a task gate both run task B,
/// whose IRETD (NT = 1) returns to task A; A's registers survive, B resumes after its IRETD.
#[test]
fn task_switches_by_call_and_interrupt_return_with_iret() {
    let main = asm(32, 0x1000, |a| {
        a.mov(esp, 0x8000)?;
        a.mov(eax, 0x28)?;
        a.ltr(ax)?;
        a.mov(ebx, 0x1111)?;
        a.call_far(0x30, 0)?;
        a.int(0x40)?;
        a.mov(eax, dword_ptr(0x3000))?;
        a.add(eax, ebx)?;
        a.out(0xf4, al)
    });
    let task_b = asm(32, 0x2000, |a| {
        let mut top = a.create_label();
        a.set_label(&mut top)?;
        a.inc(dword_ptr(0x3000))?;
        a.mov(ebx, 0x2222)?;
        a.iretd()?;
        a.jmp(top)
    });
    let g = Guest {
        mode: CpuMode::Prot32,
        pieces: vec![(0x1000, main), (0x2000, task_b)],
        gdt: task_b_gdt(),
    };
    let image = task_b_tss();
    // IDT vector 0x40: a task gate to B.
    let task_gate = (0x30u64 << 16) | (0x85 << 40);
    for tier in TIERS {
        let mut m = machine(tier);
        g.load(&mut m);
        m.mem.load(TSS_B, &image).unwrap();
        m.mem
            .load(0x800 + 0x40 * 8, &task_gate.to_le_bytes())
            .unwrap();
        m.cpu.idtr = DescriptorTable {
            base: 0x800,
            limit: 0x7ff,
        };
        assert_eq!(
            m.run(Some(1000)).unwrap(),
            RunEnd::DebugExit(0x13),
            "{tier:?}"
        );
        assert_eq!(
            m.cpu.gpr(Gpr::Rbx),
            0x1111,
            "{tier:?}: task A's EBX came back"
        );
        assert_eq!(read32(&m, 0x3000), 2, "{tier:?}: task B ran twice");
        assert_eq!(m.cpu.tr.selector, 0x28, "{tier:?}");
        assert_eq!(m.cpu.cr0 & 8, 8, "{tier:?}: CR0.TS");
        let ram = m.mem.ram();
        assert_eq!(
            ram[GDT as usize + 0x35],
            0x89,
            "{tier:?}: B available again"
        );
        assert_eq!(ram[GDT as usize + 0x2d], 0x8b, "{tier:?}: A busy");
        assert_eq!(read32(&m, TSS_B) & 0xffff, 0x28, "{tier:?}: B's back link");
        assert_eq!(read32(&m, TSS_B + 0x34), 0x2222, "{tier:?}: B's EBX saved");
        assert_eq!(m.cpu.rflags & (1 << 14), 0, "{tier:?}: NT clear in task A");
    }
}

/// The T flag of a 32-bit TSS: entering task B (T set) by CALL FAR, and by an exception
/// through a task gate, raises #DB with DR6.BT before B's first instruction; the #DB
/// handler (an interrupt gate, run in B's context) records DR6 and the EIP it would return
/// to, then leaves through isa-debug-exit.
#[test]
fn a_tss_with_the_t_flag_traps_before_the_first_instruction() {
    const SEEN: u64 = 0x3000;
    for via_exception in [false, true] {
        let main = asm(32, 0x1000, |a| {
            a.mov(esp, 0x8000)?;
            a.mov(eax, 0x28)?;
            a.ltr(ax)?;
            if via_exception {
                a.ud2()?;
            } else {
                a.call_far(0x30, 0)?;
            }
            a.hlt()
        });
        let task_b = asm(32, 0x2000, |a| {
            a.nop()?;
            a.hlt()
        });
        let db_handler = asm(32, 0x2800, |a| {
            a.mov(eax, dr6)?;
            a.mov(dword_ptr(SEEN), eax)?;
            a.mov(eax, dword_ptr(esp))?;
            a.mov(dword_ptr(SEEN + 4), eax)?;
            a.out(0xf4, al)
        });
        let g = Guest {
            mode: CpuMode::Prot32,
            pieces: vec![(0x1000, main), (0x2000, task_b), (0x2800, db_handler)],
            gdt: task_b_gdt(),
        };
        let mut image = task_b_tss();
        image[0x64] = 1; // T
                         // IDT: vector 1 an interrupt gate to the handler, vector 6 a task gate to B.
        let int_gate = 0x2800u64 | (0x08 << 16) | (0x8e << 40);
        let task_gate = (0x30u64 << 16) | (0x85 << 40);
        for tier in TIERS {
            let mut m = Machine::new(&MachineConfig {
                tier,
                ..MachineConfig::default()
            })
            .unwrap();
            g.load(&mut m);
            m.mem.load(TSS_B, &image).unwrap();
            m.mem.load(0x800 + 8, &int_gate.to_le_bytes()).unwrap();
            m.mem.load(0x800 + 6 * 8, &task_gate.to_le_bytes()).unwrap();
            m.cpu.idtr = DescriptorTable {
                base: 0x800,
                limit: 0x7ff,
            };
            let what = format!("{tier:?}, via exception {via_exception}");
            assert!(
                matches!(m.run(Some(1000)).unwrap(), RunEnd::DebugExit(_)),
                "{what}"
            );
            assert_eq!(read32(&m, SEEN) & 0xe00f, 0x8000, "{what}: DR6.BT alone");
            assert_eq!(
                read32(&m, SEEN + 4),
                0x2000,
                "{what}: at B's first instruction"
            );
            assert_eq!(m.cpu.tr.selector, 0x30, "{what}: in task B");
        }
    }
}

/// Where task B's TSS lies in the task-gate tests.
const TSS_B: u64 = 0x700;

/// The GDT of the task-gate tests: flat ring 0 and ring 3 segments, the current task's TSS
/// and task B's TSS (at `TSS_B`).
fn task_b_gdt() -> Vec<u64> {
    vec![
        0,
        CODE32_0,
        DATA32_0,
        CODE32_3,
        DATA32_3,
        TSS32,
        0x0000_8900_0000_0067 | (TSS_B << 16),
    ]
}

/// Task B's 32-bit TSS image: EIP 0x2000, EFLAGS 2, ESP 0x9000, CS 0x08, the others 0x10.
fn task_b_tss() -> Vec<u8> {
    let mut image = vec![0u8; 0x68];
    image[0x20..0x24].copy_from_slice(&0x2000u32.to_le_bytes());
    image[0x24..0x28].copy_from_slice(&2u32.to_le_bytes());
    image[0x38..0x3c].copy_from_slice(&0x9000u32.to_le_bytes());
    for (i, sel) in [0x10u16, 0x08, 0x10, 0x10, 0x10, 0x10].iter().enumerate() {
        image[0x48 + 4 * i..0x4a + 4 * i].copy_from_slice(&sel.to_le_bytes());
    }
    image
}
