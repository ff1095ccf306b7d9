//! Tests for hardware task switches: CALL through a task gate and IRET back, JMP to a TSS,
//! an exception through a task gate, and the faults before and after the commit point.

use super::*;
use crate::far::{jmp_call, FarKind};
use crate::flags::{CF, FIXED1, IF, RF};
use crate::interrupt::{deliver, Event, EventKind};
use crate::segment::tests::{code32, data32, desc, setup, write_table, Rng, GDT, IDT, LDT, TSS};
use crate::state::{CpuMode, DescriptorTable};

const TSS_B: u64 = 0x5000;
const TSS_D: u64 = 0x5800;

fn gdt() -> Vec<u64> {
    vec![
        0,
        code32(0),                                 // 0x08
        data32(0),                                 // 0x10
        code32(3),                                 // 0x18
        data32(3),                                 // 0x20
        desc(TSS as u32, 0x67, 0x8b, 0),           // 0x28 task A, current (busy)
        desc(TSS_B as u32, 0x67, 0x89, 0),         // 0x30 task B, available
        (u64::from(0x30u16) << 16) | (0xe5 << 40), // 0x38 task gate to B, DPL 3
        desc(LDT as u32, 0x17, 0x82, 0),           // 0x40 LDT
        desc(0x5400, 0x50, 0x89, 0),               // 0x48 TSS with a limit below 0x67
        desc(TSS_D as u32, 0x67, 0x89, 0),         // 0x50 task D: its CS is a data segment
        desc(0x5c00, 0x67, 0x09, 0),               // 0x58 TSS not present
    ]
}

/// Writes a 32-bit TSS image: EIP, EFLAGS, EAX..EDI = `gpr_base + i`, the selectors, LDT.
fn write_image(mem: &mut PhysMem, base: u64, eip: u32, eflags: u32, gpr_base: u32, segs: [u16; 6]) {
    mem.write_phys(base + 0x20, 4, u64::from(eip));
    mem.write_phys(base + 0x24, 4, u64::from(eflags));
    for i in 0..8 {
        mem.write_phys(base + 0x28 + 4 * i, 4, u64::from(gpr_base) + i);
    }
    for (i, s) in segs.iter().enumerate() {
        mem.write_phys(base + 0x48 + 4 * i as u64, 2, u64::from(*s));
    }
    mem.write_phys(base + 0x60, 2, 0x40);
}

/// Task A runs at CPL 0 with TR = 0x28; task B's image is a ring-3 task at 0x7777.
fn machine() -> (CpuState, PhysMem) {
    let (mut cpu, mut mem) = setup(CpuMode::Prot32, &gdt(), 0x08, 0x10);
    cpu.tr = Descriptor::from_raw(gdt()[5], 0, 0).to_segment(0x28);
    cpu.ldtr = Segment::default();
    for i in 0..8 {
        cpu.gpr[i] = 0xa0 + i as u64;
    }
    cpu.rip = 0x1000;
    write_image(
        &mut mem,
        TSS_B,
        0x7777,
        0x202 | 0x1,
        0xb0,
        [0x23, 0x1b, 0x23, 0x23, 0, 0x23],
    );
    write_image(
        &mut mem,
        TSS_D,
        0x100,
        0x2,
        0xd0,
        [0x10, 0x10, 0x10, 0x10, 0, 0],
    );
    (cpu, mem)
}

fn access(mem: &PhysMem, sel: u64) -> u64 {
    mem.peek_phys(GDT + sel + 5, 1)
}

#[test]
fn call_through_a_task_gate_nests_and_iret_returns() {
    let (mut cpu, mut mem) = machine();
    let old_flags = FIXED1 | IF | CF;
    let f = jmp_call(
        &mut cpu,
        &mut mem,
        FarKind::Call,
        0x38,
        0,
        4,
        0x1007,
        old_flags,
    )
    .unwrap();
    // The old task's dynamic state went into TSS A.
    assert_eq!(mem.read_phys(TSS + 0x20, 4), 0x1007);
    assert_eq!(mem.read_phys(TSS + 0x24, 4), old_flags);
    assert_eq!(mem.read_phys(TSS + 0x28 + 4 * 3, 4), 0xa3, "EBX");
    assert_eq!(mem.read_phys(TSS + 0x4c, 2), 0x08, "CS");
    // Nesting: back link, NT, both tasks busy.
    assert_eq!(mem.read_phys(TSS_B, 2), 0x28);
    assert_eq!(f, 0x203 | NT);
    assert_eq!(cpu.rflags, (0x203 | NT) & !flags::ARITH);
    assert_eq!(cpu.cc, LazyFlags::from_eflags(0x203 | NT));
    assert_eq!((access(&mem, 0x28), access(&mem, 0x30)), (0x8b, 0x8b));
    // Task B's state is loaded.
    assert_eq!((cpu.tr.selector, cpu.tr.attrs & 0xf), (0x30, 0xb));
    assert_eq!(cpu.cr0 & CR0_TS, CR0_TS);
    assert_eq!((cpu.rip, cpu.gpr[0], cpu.gpr[7]), (0x7777, 0xb0, 0xb7));
    assert_eq!(
        (cpu.seg(SegReg::Cs).selector, segment::cpl(&cpu)),
        (0x1b, 3)
    );
    assert_eq!(cpu.seg(SegReg::Ss).base, 0);
    assert_eq!(
        (cpu.seg(SegReg::Fs).selector, cpu.seg(SegReg::Fs).attrs),
        (0, 0)
    );
    assert_eq!((cpu.ldtr.selector, cpu.ldtr.base), (0x40, LDT));
    assert_eq!(cpu.mode, CpuMode::Prot32);

    // IRET with NT = 1 goes back along the back link; B becomes available again.
    cpu.gpr[3] = 0x1234;
    let back = nested_iret(&mut cpu, &mut mem, 0x7779, f).unwrap().unwrap();
    assert_eq!(back, old_flags);
    assert_eq!((cpu.tr.selector, cpu.rip), (0x28, 0x1007));
    assert_eq!((cpu.gpr[3], cpu.seg(SegReg::Cs).selector), (0xa3, 0x08));
    assert_eq!((access(&mem, 0x28), access(&mem, 0x30)), (0x8b, 0x89));
    assert_eq!(
        mem.read_phys(TSS_B + 0x20, 4),
        0x7779,
        "B saved where it left"
    );
    assert_eq!(
        mem.read_phys(TSS_B + 0x24, 4),
        0x203,
        "NT cleared in B's saved EFLAGS"
    );
    assert_eq!(mem.read_phys(TSS_B + 0x34, 4), 0x1234);
    assert!(
        nested_iret(&mut cpu, &mut mem, 0, old_flags).is_none(),
        "NT = 0"
    );
}

#[test]
fn jmp_to_a_tss_does_not_nest() {
    let (mut cpu, mut mem) = machine();
    let f = jmp_call(&mut cpu, &mut mem, FarKind::Jmp, 0x30, 0, 4, 0x1007, FIXED1).unwrap();
    assert_eq!(f & NT, 0);
    assert_eq!(mem.read_phys(TSS_B, 2), 0, "no back link");
    assert_eq!((access(&mem, 0x28), access(&mem, 0x30)), (0x89, 0x8b));
    assert_eq!(cpu.rip, 0x7777);
    // TSS B is now busy (and its DPL 0 is below the new CPL 3): #GP(0x30).
    assert_eq!(
        jmp_call(&mut cpu, &mut mem, FarKind::Jmp, 0x30, 0, 4, 0, f),
        Err(Delivery::Fault(Fault::with_code(
            Exception::GeneralProtection,
            0x30
        )))
    );
}

/// The T flag of the new 32-bit TSS asks the run loop for a #DB ([`CpuState::task_trap`]);
/// a switch that faults in the new task's context leaves none pending, and neither does a
/// TSS without the flag.
#[test]
fn the_t_flag_of_the_new_tss_asks_for_a_debug_trap() {
    let (mut cpu, mut mem) = machine();
    mem.write_phys(TSS_B + 0x64, 2, 1);
    jmp_call(&mut cpu, &mut mem, FarKind::Jmp, 0x30, 0, 4, 0x1007, FIXED1).unwrap();
    assert!(cpu.task_trap);

    let (mut cpu, mut mem) = machine();
    jmp_call(&mut cpu, &mut mem, FarKind::Jmp, 0x30, 0, 4, 0x1007, FIXED1).unwrap();
    assert!(!cpu.task_trap, "T clear");

    let (mut cpu, mut mem) = machine();
    mem.write_phys(TSS_D + 0x64, 2, 1);
    let r = jmp_call(&mut cpu, &mut mem, FarKind::Jmp, 0x50, 0, 4, 0x1007, FIXED1);
    assert!(r.is_err());
    assert!(!cpu.task_trap, "the switch faulted in task D");
}

#[test]
fn faults_before_the_commit_point_leave_the_old_task_alone() {
    let (mut cpu, mut mem) = machine();
    let before = cpu.clone();
    let go = |cpu: &mut CpuState, mem: &mut PhysMem, sel| {
        jmp_call(cpu, mem, FarKind::Jmp, sel, 0, 4, 0, FIXED1)
    };
    let err = |e, c| Err(Delivery::Fault(Fault::with_code(e, c)));
    assert_eq!(
        go(&mut cpu, &mut mem, 0x48),
        err(Exception::InvalidTss, 0x48)
    );
    assert_eq!(
        go(&mut cpu, &mut mem, 0x58),
        err(Exception::SegmentNotPresent, 0x58)
    );
    assert_eq!(
        go(&mut cpu, &mut mem, 0x28),
        err(Exception::GeneralProtection, 0x28),
        "busy"
    );
    assert_eq!(
        (cpu.tr, cpu.rip, cpu.gpr),
        (before.tr, before.rip, before.gpr)
    );
    assert_eq!(access(&mem, 0x28), 0x8b);
    // A task gate naming something that is not a TSS: #GP(its selector).
    mem.write_phys(GDT + 0x38, 8, (u64::from(0x10u16) << 16) | (0xe5 << 40));
    assert_eq!(
        go(&mut cpu, &mut mem, 0x38),
        err(Exception::GeneralProtection, 0x10)
    );
    // IRET with a back link that is not a busy TSS: #TS(link).
    mem.write_phys(TSS, 2, 0x30);
    assert_eq!(
        nested_iret(&mut cpu, &mut mem, 0, FIXED1 | NT).unwrap(),
        err(Exception::InvalidTss, 0x30)
    );
}

#[test]
fn a_bad_segment_in_the_new_task_faults_in_its_context() {
    let (mut cpu, mut mem) = machine();
    let r = jmp_call(&mut cpu, &mut mem, FarKind::Jmp, 0x50, 0, 4, 0x1007, FIXED1);
    assert_eq!(
        r,
        Err(Delivery::Fault(Fault::with_code(
            Exception::InvalidTss,
            0x10
        )))
    );
    // Committed: TR, EIP, registers and flags are task D's.
    assert_eq!((cpu.tr.selector, cpu.rip, cpu.gpr[0]), (0x50, 0x100, 0xd0));
    assert_eq!(cpu.rflags, FIXED1);
    assert_eq!(mem.read_phys(TSS + 0x20, 4), 0x1007);
    assert_eq!((access(&mem, 0x28), access(&mem, 0x50)), (0x89, 0x8b));
}

#[test]
fn an_exception_through_a_task_gate_pushes_its_error_code_on_the_new_stack() {
    let (mut cpu, mut mem) = machine();
    // IDT vector 13: a task gate to B (DPL 0 is fine for an exception).
    mem.write_phys(IDT + 13 * 8, 8, (u64::from(0x30u16) << 16) | (0x85 << 40));
    cpu.idtr = DescriptorTable {
        base: IDT,
        limit: 0x7ff,
    };
    mem.write_phys(TSS_B + 0x38, 4, 0x9000); // B's ESP
    let event = Event {
        vector: 13,
        kind: EventKind::Exception {
            error_code: Some(0x18),
        },
    };
    let f = deliver(&mut cpu, &mut mem, event, FIXED1 | IF).unwrap();
    assert_eq!(f, 0x203 | NT, "the new task's EFLAGS, IF included, plus NT");
    assert_eq!(
        (cpu.tr.selector, cpu.rip, cpu.gpr[4]),
        (0x30, 0x7777, 0x8ffc)
    );
    assert_eq!(mem.read_phys(0x8ffc, 4), 0x18);
    assert_eq!(
        mem.read_phys(TSS + 0x20, 4),
        0x1000,
        "the faulting instruction"
    );
    assert_eq!(mem.read_phys(TSS_B, 2), 0x28);
    // A software INT through a task gate whose DPL is below the CPL: #GP(vector * 8 + 2).
    let (mut cpu, mut mem) = machine();
    mem.write_phys(IDT + 0x40 * 8, 8, (u64::from(0x30u16) << 16) | (0x85 << 40));
    cpu.idtr.base = IDT;
    cpu.seg[SegReg::Cs as usize] = Descriptor::from_raw(code32(3), 0, 0).to_segment(0x1b);
    let soft = Event {
        vector: 0x40,
        kind: EventKind::Software { insn_len: 2 },
    };
    assert_eq!(
        deliver(&mut cpu, &mut mem, soft, FIXED1),
        Err(Delivery::Fault(Fault::with_code(
            Exception::GeneralProtection,
            0x40 * 8 + 2
        )))
    );
}

#[test]
fn an_error_code_beyond_the_new_stacks_limit_is_ss_in_the_new_task() {
    let (mut cpu, mut mem) = machine();
    // B's SS (0x23) becomes a 4 KiB segment; B's ESP 0x9000 is beyond it.
    mem.write_phys(GDT + 0x20, 8, desc(0, 0xfff, 0xf2, 4));
    mem.write_phys(IDT + 13 * 8, 8, (u64::from(0x30u16) << 16) | (0x85 << 40));
    cpu.idtr = DescriptorTable {
        base: IDT,
        limit: 0x7ff,
    };
    mem.write_phys(TSS_B + 0x38, 4, 0x9000);
    mem.write_phys(TSS_B + 0x64, 2, 1); // T: no trap when the switch faults
    let event = Event {
        vector: 13,
        kind: EventKind::Exception {
            error_code: Some(0x18),
        },
    };
    assert_eq!(
        deliver(&mut cpu, &mut mem, event, FIXED1 | IF),
        Err(Delivery::Fault(Fault::with_code(Exception::StackFault, 1)))
    );
    // Committed: the fault is B's, with B's ESP as it was.
    assert_eq!(
        (cpu.tr.selector, cpu.rip, cpu.gpr[4]),
        (0x30, 0x7777, 0x9000)
    );
    assert!(!cpu.task_trap);
    assert_eq!(mem.read_phys(0x8ffc, 4), 0);
}

#[test]
fn random_task_images_never_panic() {
    let mut rng = Rng(0xfeed_beef_1234_5678);
    for _ in 0..300 {
        let (mut cpu, mut mem) = machine();
        let entries: Vec<u64> = (0..12).map(|_| rng.next()).collect();
        write_table(&mut mem, GDT + 0x60, &entries);
        cpu.gdtr.limit = 0x60 + (rng.next() as u16 & 0x7f);
        for off in (0..0x68).step_by(8) {
            mem.write_phys(TSS_B + off, 8, rng.next());
        }
        mem.write_phys(TSS_B + 0x24, 4, rng.next() & 0xffff_ffff & !(1 << 17));
        let sel = [0x30, 0x38, 0x60 | (rng.next() as u16 & 0x7f)][(rng.next() % 3) as usize];
        let kind = if rng.next() & 1 == 0 {
            FarKind::Jmp
        } else {
            FarKind::Call
        };
        if let Ok(f) = jmp_call(&mut cpu, &mut mem, kind, sel, 0, 4, 0, FIXED1) {
            let _ = nested_iret(&mut cpu, &mut mem, 0, f | NT);
        }
    }
}

#[test]
fn a_switch_from_the_reset_tr_leaves_the_null_descriptor_alone() {
    let (mut cpu, mut mem) = machine();
    cpu.tr = Segment {
        base: 0x6800,
        limit: 0xffff,
        selector: 0,
        attrs: 0x8b,
    };
    jmp_call(&mut cpu, &mut mem, FarKind::Jmp, 0x30, 0, 4, 0x1007, FIXED1).unwrap();
    assert_eq!(mem.read_phys(GDT, 8), 0, "GDT[0] unchanged");
    assert_eq!(
        mem.read_phys(0x6800 + 0x20, 4),
        0x1007,
        "state saved at TR.base"
    );
    assert_eq!(cpu.tr.selector, 0x30);
}

/// Where task E's 16-bit TSS lives, and the selectors of the 16-bit tests.
const TSS_E: u64 = 0x6000;
/// EFLAGS.AC, a bit of the upper word a 16-bit TSS cannot hold.
const AC: u64 = 1 << 18;
const SEL_E: u16 = 0x60;
const SEL_E_GATE: u16 = 0x68;
const SEL_SHORT16: u16 = 0x70;

/// The machine of the 32-bit tests plus task E, a ring-0 task in a 16-bit TSS at 0x1234:
/// AX..DI = 0xe0.., its FS/GS slots do not exist, and a sentinel follows its 44 bytes.
fn machine16() -> (CpuState, PhysMem) {
    let (mut cpu, mut mem) = machine();
    let extra = [
        desc(TSS_E as u32, 0x2b, 0x81, 0),       // 0x60 task E, available
        (u64::from(SEL_E) << 16) | (0x85 << 40), // 0x68 task gate to E
        desc(0x6400, 0x2a, 0x81, 0),             // 0x70 16-bit TSS, limit too small
    ];
    write_table(&mut mem, GDT + u64::from(SEL_E), &extra);
    cpu.gdtr.limit = 0x77;
    mem.write_phys(TSS_E + 0x0e, 2, 0x1234); // IP
    mem.write_phys(TSS_E + 0x10, 2, 0x0203); // FLAGS: IF, CF
    for i in 0..8 {
        mem.write_phys(TSS_E + 0x12 + 2 * i, 2, 0xe0 + i);
    }
    for (i, s) in [0x10u64, 0x08, 0x10, 0x10].iter().enumerate() {
        mem.write_phys(TSS_E + 0x22 + 2 * i as u64, 2, *s);
    }
    mem.write_phys(TSS_E + 0x2a, 2, 0);
    mem.write_phys(TSS_E + 0x2c, 4, 0x5e5e_5e5e);
    cpu.seg[SegReg::Fs as usize] = cpu.seg[SegReg::Ds as usize];
    (cpu, mem)
}

#[test]
fn a_jmp_to_a_16_bit_tss_loads_words_and_a_jmp_back_saves_words() {
    let (mut cpu, mut mem) = machine16();
    // Paging on (one 4 MiB identity page) so that a CR3 in the TSS would be loaded.
    mem.write_phys(0x1_9000, 4, 0x87);
    cpu.cr4 |= crate::paging::CR4_PSE;
    cpu.cr0 |= CR0_PG;
    cpu.cr3 = 0x1_9000;
    cpu.flush_tlb();
    mem.write_phys(TSS + 0x1c, 4, 0x1_9000); // A's CR3, loaded when it is switched back to
    for i in 0..8 {
        cpu.gpr[i] = 0xdead_0000 + i as u64;
    }
    let f = jmp_call(
        &mut cpu,
        &mut mem,
        FarKind::Jmp,
        SEL_E,
        0,
        4,
        0x1007,
        FIXED1 | AC | RF,
    )
    .unwrap();
    assert_eq!(
        f,
        0x203 | AC,
        "FLAGS from the TSS, AC kept, RF and NT clear"
    );
    assert_eq!((cpu.tr.selector, cpu.tr.attrs & 0xf), (SEL_E, 0x3));
    assert_eq!((access(&mem, 0x28), access(&mem, 0x60)), (0x89, 0x83));
    assert_eq!(cpu.rip, 0x1234);
    // The low words come from the TSS, the upper ones stay (QEMU's choice; the SDM leaves
    // them undefined).
    assert_eq!(
        (cpu.gpr[0], cpu.gpr[4], cpu.gpr[7]),
        (0xdead_00e0, 0xdead_00e4, 0xdead_00e7)
    );
    assert_eq!(cpu.cr3, 0x1_9000, "a 16-bit TSS holds no CR3");
    assert_eq!(cpu.seg(SegReg::Cs).selector, 0x08);
    assert_eq!(
        (cpu.seg(SegReg::Fs).selector, cpu.seg(SegReg::Gs).selector),
        (0, 0),
        "FS and GS are loaded null"
    );
    // The 32-bit task's state went into its own (32-bit) TSS, in full.
    assert_eq!(mem.read_phys(TSS + 0x28 + 4 * 3, 4), 0xdead_0003);

    // JMP back to A: E's state is saved as words, nothing past its 44 bytes is written.
    cpu.gpr[3] = 0x1234_4242;
    let back = jmp_call(&mut cpu, &mut mem, FarKind::Jmp, 0x28, 0, 4, 0x1_1240, f).unwrap();
    assert_eq!(back, FIXED1 | AC | RF, "A's EFLAGS, as saved");
    assert_eq!((cpu.tr.selector, cpu.rip), (0x28, 0x1007));
    assert_eq!(cpu.gpr[3], 0xdead_0003);
    assert_eq!(mem.read_phys(TSS_E + 0x0e, 2), 0x1240, "IP: the low word");
    assert_eq!(mem.read_phys(TSS_E + 0x10, 2), 0x203, "FLAGS: the low word");
    assert_eq!(mem.read_phys(TSS_E + 0x18, 2), 0x4242, "BX");
    assert_eq!(mem.read_phys(TSS_E + 0x24, 2), 0x08, "CS");
    assert_eq!(mem.read_phys(TSS_E + 0x2c, 4), 0x5e5e_5e5e, "past the TSS");
    assert_eq!((access(&mem, 0x28), access(&mem, 0x60)), (0x8b, 0x81));
}

#[test]
fn an_exception_through_a_gate_to_a_16_bit_task_pushes_a_word_and_iret_returns() {
    let (mut cpu, mut mem) = machine16();
    mem.write_phys(IDT + 13 * 8, 8, (u64::from(SEL_E) << 16) | (0x85 << 40));
    cpu.idtr = DescriptorTable {
        base: IDT,
        limit: 0x7ff,
    };
    mem.write_phys(TSS_E + 0x1a, 2, 0x9000); // E's SP
    let event = Event {
        vector: 13,
        kind: EventKind::Exception {
            error_code: Some(0x18),
        },
    };
    let f = deliver(&mut cpu, &mut mem, event, FIXED1 | IF).unwrap();
    assert_eq!(f, 0x203 | NT);
    assert_eq!(
        (cpu.tr.selector, cpu.gpr[4]),
        (SEL_E, 0x8ffe),
        "a word pushed"
    );
    assert_eq!(mem.read_phys(0x8ffe, 2), 0x18);
    assert_eq!(mem.read_phys(TSS_E, 2), 0x28, "back link");

    // IRET with NT = 1 from the 16-bit task returns to A and frees E.
    let back = nested_iret(&mut cpu, &mut mem, 0x1300, f).unwrap().unwrap();
    assert_eq!(back, FIXED1 | IF);
    assert_eq!((cpu.tr.selector, cpu.rip), (0x28, 0x1000));
    assert_eq!(
        mem.read_phys(TSS_E + 0x10, 2),
        0x203,
        "NT cleared in E's FLAGS"
    );
    assert_eq!(mem.read_phys(TSS_E + 0x0e, 2), 0x1300);
    assert_eq!((access(&mem, 0x28), access(&mem, 0x60)), (0x8b, 0x81));

    // CALL through a task gate nests as well.
    let f = jmp_call(
        &mut cpu,
        &mut mem,
        FarKind::Call,
        SEL_E_GATE,
        0,
        4,
        0x1005,
        FIXED1,
    )
    .unwrap();
    assert_eq!((f & NT, cpu.rip), (NT, 0x1300));
    assert_eq!(mem.read_phys(TSS_E, 2), 0x28);
}

#[test]
fn a_16_bit_tss_below_0x2b_is_invalid() {
    let (mut cpu, mut mem) = machine16();
    assert_eq!(
        jmp_call(
            &mut cpu,
            &mut mem,
            FarKind::Jmp,
            SEL_SHORT16,
            0,
            4,
            0,
            FIXED1
        ),
        Err(Delivery::Fault(Fault::with_code(
            Exception::InvalidTss,
            u32::from(SEL_SHORT16)
        )))
    );
    assert_eq!(cpu.tr.selector, 0x28);
}
