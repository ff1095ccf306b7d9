//! Tests for delivery, IRET and the double-fault table.

use super::*;
use crate::segment::tests::{
    code32, code64, data32, desc, page_rights, paging32, setup, write_table, Rng, GDT, IDT, TSS,
};
use crate::state::{CpuMode, DescriptorTable};

fn gate32(sel: u16, off: u32, access: u8) -> u64 {
    crate::segment::encode_gate(sel, off, access)
}

fn gate64(sel: u16, off: u64, access: u8, ist: u8) -> [u64; 2] {
    [
        gate32(sel, off as u32, access) | (u64::from(ist) << 32),
        off >> 32,
    ]
}

fn exc(vector: u8, error_code: Option<u32>) -> Event {
    Event {
        vector,
        kind: EventKind::Exception { error_code },
    }
}

fn ext(vector: u8) -> Event {
    Event {
        vector,
        kind: EventKind::External,
    }
}

fn soft(vector: u8) -> Event {
    Event {
        vector,
        kind: EventKind::Software { insn_len: 2 },
    }
}

fn err(e: Exception, code: u32) -> Result<u64, Delivery> {
    Err(Delivery::Fault(Fault::with_code(e, code)))
}

fn rd(mem: &PhysMem, a: u64, n: u32) -> u64 {
    mem.peek_phys(a, n)
}

const IFL: u64 = IF | flags::FIXED1 | flags::CF | TF;

#[test]
fn combine_follows_table_6_5() {
    use Exception::*;
    let all = [
        DivideError,
        Debug,
        Breakpoint,
        Overflow,
        BoundRange,
        InvalidOpcode,
        DeviceNotAvailable,
        DoubleFault,
        InvalidTss,
        SegmentNotPresent,
        StackFault,
        GeneralProtection,
        PageFault,
        FpuError,
        AlignmentCheck,
        SimdError,
    ];
    let contributory = |e| {
        matches!(
            e,
            DivideError | InvalidTss | SegmentNotPresent | StackFault | GeneralProtection
        )
    };
    for a in all {
        for b in all {
            let want =
                if a == DoubleFault && (contributory(b) || b == PageFault || b == DoubleFault) {
                    Combined::TripleFault
                } else if (contributory(a) && contributory(b))
                    || (a == PageFault && (contributory(b) || b == PageFault))
                {
                    Combined::DoubleFault
                } else {
                    Combined::Serial
                };
            assert_eq!(combine(a, b), want, "{a:?} then {b:?}");
        }
    }
    assert_eq!(combine(GeneralProtection, PageFault), Combined::Serial);
    assert_eq!(combine(PageFault, GeneralProtection), Combined::DoubleFault);
}

#[test]
fn real_mode_delivery_and_iret() {
    let mut cpu = CpuState::new(CpuMode::Real16);
    let mut mem = PhysMem::new(0x20000).unwrap();
    mem.write_phys(0x21 * 4, 4, 0x1234_5678);
    cpu.seg[SegReg::Cs as usize] = Segment::real(0x2000);
    cpu.seg[SegReg::Ss as usize] = Segment::real(0x100);
    cpu.rip = 0x10;
    cpu.gpr[4] = 0xdead_0000 | 0x800;
    let fl = deliver(&mut cpu, &mut mem, soft(0x21), IFL | AC).unwrap();
    assert_eq!(fl, flags::FIXED1 | flags::CF);
    assert_eq!(
        (
            cpu.seg(SegReg::Cs).selector,
            cpu.seg(SegReg::Cs).base,
            cpu.rip
        ),
        (0x1234, 0x12340, 0x5678)
    );
    assert_eq!(cpu.gpr[4], 0xdead_07fa);
    let sp = 0x1000 + 0x7fa;
    assert_eq!(
        (rd(&mem, sp, 2), rd(&mem, sp + 2, 2), rd(&mem, sp + 4, 2)),
        (0x12, 0x2000, 0x303)
    );
    let back = iret(&mut cpu, &mut mem, 16, fl).unwrap();
    assert_eq!(back, 0x303);
    assert_eq!(
        (cpu.seg(SegReg::Cs).base, cpu.rip, cpu.gpr[4]),
        (0x20000, 0x12, 0xdead_0800)
    );
    // An exception pushes RIP unchanged and no error code; the IVT limit is checked.
    cpu.rip = 0x33;
    deliver(&mut cpu, &mut mem, exc(13, Some(0)), 0x2).unwrap();
    assert_eq!(rd(&mem, sp, 2), 0x33);
    cpu.idtr.limit = 0x3ff;
    deliver(&mut cpu, &mut mem, exc(0xff, None), 0x2).unwrap();
    cpu.idtr.limit = 0x3fe;
    assert_eq!(
        deliver(&mut cpu, &mut mem, exc(0xff, None), 0x2),
        err(Exception::GeneralProtection, 0)
    );
    // A 32-bit IRET keeps VM/VIF/VIP and takes the rest.
    cpu.gpr[4] = 0x800;
    for (i, v) in [0x4444u64, 0x1234, 0x3f_7fd7].iter().enumerate() {
        mem.write_phys(0x1800 + 4 * i as u64, 4, *v);
    }
    let fl = iret(&mut cpu, &mut mem, 32, VIP).unwrap();
    assert_eq!(fl, 0x25_7fd7 | VIP);
    assert_eq!((cpu.rip, cpu.gpr[4]), (0x4444, 0x80c));
}

/// Protected mode, CPL 0 or 3, with a GDT, an IDT and a 32-bit TSS (ESP0 0xa000, SS0 0x10).
fn prot(user: bool) -> (CpuState, PhysMem) {
    let tss = desc(TSS as u32, 0x67, 0x8b, 0);
    let entries = [
        0,
        code32(0),
        data32(0),
        code32(3),
        data32(3),
        tss,
        desc(0, 0xffff, 0x12, 4),
        desc(0, 0xffff, 0x1a, 4),
        desc(0, 0xffff, 0x72, 4),
    ];
    let (cs, ss) = if user { (0x1b, 0x23) } else { (0x08, 0x10) };
    let (mut cpu, mut mem) = setup(CpuMode::Prot32, &entries, cs, ss);
    cpu.tr = Descriptor::from_raw(tss, 0, 0).to_segment(0x28);
    cpu.idtr = DescriptorTable {
        base: IDT,
        limit: 0x7ff,
    };
    mem.write_phys(TSS + 4, 4, 0xa000);
    mem.write_phys(TSS + 8, 2, 0x10);
    let idt = [
        (0x20, gate32(0x08, 0x11_2233, 0x8e)),
        (0x21, gate32(0x08, 0x44_5566, 0x8f)),
        (13, gate32(0x08, 0x1300, 0x8e)),
        (0x80, gate32(0x08, 0x8000, 0xee)),
        (0x30, gate32(0x08, 0x3000, 0x0e)), // not present
        (0x31, gate32(0x08, 0x3100, 0x8c)), // call gate: invalid in the IDT
        (0x32, gate32(0x00, 0x3200, 0x8e)), // null target
        (0x33, gate32(0x10, 0x3300, 0x8e)), // data target
        (0x34, gate32(0x38, 0x3400, 0x8e)), // not-present code
        (0x35, gate32(0x08, 0x3500, 0x85)), // task gate
        (0x36, gate32(0x1b, 0x3600, 0xee)), // DPL 3 code target
        (0x37, gate32(0x08, 0x3700, 0x86)), // 16-bit interrupt gate
    ];
    for (v, g) in idt {
        mem.write_phys(IDT + 8 * v, 8, g);
    }
    cpu.seg[SegReg::Ds as usize] = Descriptor::from_raw(entries[2], 0, 0).to_segment(0x10);
    (cpu, mem)
}

#[test]
fn same_privilege_interrupt_and_trap_gates() {
    let (mut cpu, mut mem) = prot(false);
    cpu.rip = 0x1000;
    cpu.gpr[4] = 0x9000;
    let fl = deliver(&mut cpu, &mut mem, ext(0x20), IFL | NT).unwrap();
    assert_eq!(fl, flags::FIXED1 | flags::CF);
    assert_eq!(
        (cpu.rip, cpu.gpr[4], cpu.seg(SegReg::Cs).selector),
        (0x11_2233, 0x8ff4, 0x08)
    );
    assert_eq!(
        (
            rd(&mem, 0x8ff4, 4),
            rd(&mem, 0x8ff8, 4),
            rd(&mem, 0x8ffc, 4)
        ),
        (0x1000, 0x08, IFL | NT)
    );
    assert_eq!(mem.read_phys(GDT + 8 + 5, 1), 0x9b, "accessed");
    // Trap gate keeps IF; software INT pushes the next RIP.
    cpu.gpr[4] = 0x9000;
    cpu.rip = 0x2000;
    let fl = deliver(&mut cpu, &mut mem, soft(0x21), IFL).unwrap();
    assert_eq!(fl, IF | flags::FIXED1 | flags::CF);
    assert_eq!((cpu.rip, rd(&mem, 0x8ff4, 4)), (0x44_5566, 0x2002));
    // An error code is pushed last.
    cpu.gpr[4] = 0x9000;
    cpu.rip = 0x3000;
    deliver(&mut cpu, &mut mem, exc(13, Some(0x28)), 0x202).unwrap();
    assert_eq!(cpu.gpr[4], 0x8ff0);
    let frame: Vec<u64> = (0..4).map(|i| rd(&mem, 0x8ff0 + 4 * i, 4)).collect();
    assert_eq!(frame, [0x28, 0x3000, 0x08, 0x202]);
    // IRET (after popping the error code) returns.
    cpu.gpr[4] = 0x8ff4;
    let fl = iret(&mut cpu, &mut mem, 32, 0x2).unwrap();
    assert_eq!((fl, cpu.rip, cpu.gpr[4]), (0x202, 0x3000, 0x9000));
    // A 16-bit gate pushes a 16-bit frame and truncates the offset.
    cpu.gpr[4] = 0x9000;
    deliver(
        &mut cpu,
        &mut mem,
        Event {
            vector: 0x37,
            kind: EventKind::Nmi,
        },
        0x202,
    )
    .unwrap();
    assert_eq!((cpu.rip, cpu.gpr[4]), (0x3700, 0x8ffa));
    assert_eq!(
        (
            rd(&mem, 0x8ffa, 2),
            rd(&mem, 0x8ffc, 2),
            rd(&mem, 0x8ffe, 2)
        ),
        (0x3000, 0x08, 0x202)
    );
}

#[test]
fn privilege_change_through_the_tss_and_back() {
    let (mut cpu, mut mem) = prot(true);
    cpu.rip = 0x40_0000;
    cpu.gpr[4] = 0x7_0000;
    let fl = deliver(&mut cpu, &mut mem, soft(0x80), 0x3202).unwrap();
    assert_eq!(fl, 0x3002);
    assert_eq!(
        (cpu.seg(SegReg::Cs).selector, cpu.seg(SegReg::Ss).selector),
        (0x08, 0x10)
    );
    assert_eq!(
        (cpu.rip, cpu.gpr[4], segment::cpl(&cpu)),
        (0x8000, 0xa000 - 20, 0)
    );
    let frame: Vec<u64> = (0..5).map(|i| rd(&mem, 0xa000 - 20 + 4 * i, 4)).collect();
    assert_eq!(frame, [0x40_0002, 0x1b, 0x3202, 0x7_0000, 0x23]);
    // IRET back to ring 3: DS (DPL 0 data) is nulled, IOPL may change at CPL 0.
    let fl = iret(&mut cpu, &mut mem, 32, fl).unwrap();
    assert_eq!(fl, 0x3202);
    assert_eq!(
        (cpu.seg(SegReg::Cs).selector, cpu.seg(SegReg::Ss).selector),
        (0x1b, 0x23)
    );
    assert_eq!(
        (cpu.rip, cpu.gpr[4], segment::cpl(&cpu)),
        (0x40_0002, 0x7_0000, 3)
    );
    assert_eq!(cpu.seg(SegReg::Ds).attrs, 0);
    // An exception in ring 3 with an error code.
    deliver(&mut cpu, &mut mem, exc(13, Some(0)), 0x202).unwrap();
    assert_eq!(cpu.gpr[4], 0xa000 - 24);
    // At CPL 3 IRET cannot change IOPL; IF only when CPL <= IOPL.
    let (mut cpu, mut mem) = prot(true);
    cpu.gpr[4] = 0x9000;
    for (i, v) in [0x10u64, 0x1b, 0x3000].iter().enumerate() {
        mem.write_phys(0x9000 + 4 * i as u64, 4, *v);
    }
    assert_eq!(iret(&mut cpu, &mut mem, 32, 0x202).unwrap(), 0x202);
}

#[test]
fn gate_and_target_faults() {
    let (mut cpu, mut mem) = prot(true);
    cpu.gpr[4] = 0x9000;
    use Exception::*;
    assert_eq!(
        deliver(&mut cpu, &mut mem, soft(0x20), 0x2),
        err(GeneralProtection, 0x20 * 8 + 2)
    );
    assert_eq!(
        deliver(&mut cpu, &mut mem, ext(0x30), 0x2),
        err(SegmentNotPresent, 0x30 * 8 + 3)
    );
    assert_eq!(
        deliver(&mut cpu, &mut mem, ext(0x31), 0x2),
        err(GeneralProtection, 0x31 * 8 + 3)
    );
    assert_eq!(
        deliver(&mut cpu, &mut mem, ext(0x32), 0x2),
        err(GeneralProtection, 1)
    );
    assert_eq!(
        deliver(&mut cpu, &mut mem, ext(0x33), 0x2),
        err(GeneralProtection, 0x11)
    );
    assert_eq!(
        deliver(&mut cpu, &mut mem, ext(0x34), 0x2),
        err(SegmentNotPresent, 0x39)
    );
    assert_eq!(
        deliver(&mut cpu, &mut mem, ext(0x35), 0x2),
        err(GeneralProtection, 0x09),
        "a task gate naming a code segment, not a TSS (EXT set)"
    );
    cpu.idtr.limit = 0x20 * 8 + 6;
    assert_eq!(
        deliver(&mut cpu, &mut mem, ext(0x20), 0x2),
        err(GeneralProtection, 0x103)
    );
    assert_eq!(
        deliver(&mut cpu, &mut mem, soft(0x20), 0x2),
        err(GeneralProtection, 0x102)
    );
    // A DPL-3 target from ring 0 is more privileged than CPL: #GP(sel | ext).
    let (mut cpu, mut mem) = prot(false);
    assert_eq!(
        deliver(&mut cpu, &mut mem, ext(0x36), 0x2),
        err(GeneralProtection, 0x19)
    );
    // Bad ring-0 stacks in the TSS.
    let (mut cpu, mut mem) = prot(true);
    let irq = ext(0x20);
    for (ss0, want) in [
        (0u64, err(InvalidTss, 1)),
        (0x11, err(InvalidTss, 0x11)),
        (0x08, err(InvalidTss, 9)),
        (0x20, err(InvalidTss, 0x21)),
        (0x30, err(StackFault, 0x31)),
        (0x400, err(InvalidTss, 0x401)),
    ] {
        mem.write_phys(TSS + 8, 2, ss0);
        assert_eq!(deliver(&mut cpu, &mut mem, irq, 0x2), want, "ss0 {ss0:#x}");
    }
    cpu.tr.limit = 8;
    assert_eq!(deliver(&mut cpu, &mut mem, irq, 0x2), err(InvalidTss, 0x29));
    // Nothing changed through all of that.
    assert_eq!((cpu.seg(SegReg::Cs).selector, cpu.gpr[4]), (0x1b, 0));
    // Virtual-8086 mode is delivered (see the v86 tests for the frame).
    cpu.rflags |= VM;
    cpu.tr.limit = 0x67;
    mem.write_phys(TSS + 8, 2, 0x10);
    assert!(deliver(&mut cpu, &mut mem, irq, VM).is_ok());
}

#[test]
fn iret_faults() {
    use Exception::*;
    let (mut cpu, mut mem) = prot(false);
    let frame = |mem: &mut PhysMem, v: [u64; 5]| {
        for (i, x) in v.iter().enumerate() {
            mem.write_phys(0x9000 + 4 * i as u64, 4, *x);
        }
    };
    let cases = [
        ([0x10, 0x00, 0x2, 0, 0], err(GeneralProtection, 0)),
        ([0x10, 0x10, 0x2, 0, 0], err(GeneralProtection, 0x10)),
        ([0x10, 0x18, 0x2, 0, 0], err(GeneralProtection, 0x18)),
        ([0x10, 0x3b, 0x2, 0, 0], err(GeneralProtection, 0x38)),
        ([0x10, 0x38, 0x2, 0, 0], err(SegmentNotPresent, 0x38)),
        ([0x10, 0x1b, 0x2, 0x100, 0x10], err(GeneralProtection, 0x10)),
        ([0x10, 0x1b, 0x2, 0x100, 0x13], err(GeneralProtection, 0x10)),
        ([0x10, 0x1b, 0x2, 0x100, 0x03], err(GeneralProtection, 0)),
        ([0x10, 0x1b, 0x2, 0x100, 0x33], err(GeneralProtection, 0x30)),
        ([0x10, 0x1b, 0x2, 0x100, 0x43], err(StackFault, 0x40)),
        (
            [0x10, 0x403, 0x2, 0x100, 0x23],
            err(GeneralProtection, 0x400),
        ),
    ];
    for (f, want) in cases {
        cpu.gpr[4] = 0x9000;
        frame(&mut mem, f);
        assert_eq!(iret(&mut cpu, &mut mem, 32, 0x2), want, "{f:x?}");
        assert_eq!(cpu.gpr[4], 0x9000);
    }
    // EIP beyond the limit of a present DPL-3 code segment.
    mem.write_phys(GDT + 0x38, 8, desc(0, 0xff, 0xfa, 0));
    frame(&mut mem, [0x100, 0x3b, 0x2, 0x100, 0x23]);
    assert_eq!(iret(&mut cpu, &mut mem, 32, 0x2), err(GeneralProtection, 0));
    assert_eq!(
        iret(&mut cpu, &mut mem, 32, NT),
        Err(Delivery::Unsupported("IRET task return (NT = 1)"))
    );
    cpu.rflags |= VM;
    assert_eq!(iret(&mut cpu, &mut mem, 32, VM), err(GeneralProtection, 0));
}

/// Long mode with a 64-bit TSS: RSP0 0xa008, IST1 0xc008.
fn long() -> (CpuState, PhysMem) {
    let tss = desc(TSS as u32, 0x67, 0x89, 0);
    let entries = [
        0,
        code64(0),
        data32(0),
        code64(3),
        data32(3),
        tss,
        0,
        code32(0),
    ];
    let (mut cpu, mut mem) = setup(CpuMode::Long64, &entries, 0x1b, 0x23);
    cpu.tr = Descriptor::from_raw(tss, 0, 0).to_segment(0x28);
    cpu.idtr = DescriptorTable {
        base: IDT,
        limit: 0xfff,
    };
    mem.write_phys(TSS + 4, 8, 0xa008);
    mem.write_phys(TSS + 0x24, 8, 0xc008);
    let gates = [
        (14, gate64(0x08, 0xffff_8000_0000_1400, 0x8e, 0)),
        (2, gate64(0x08, 0x200, 0x8e, 1)),
        (0x80, gate64(0x08, 0x8000, 0xef, 0)),
        (0x81, gate64(0x38, 0x8100, 0xee, 0)),
        (0x82, gate64(0x08, 0x8200, 0xe6, 0)),
        (0x83, gate64(0x08, 0x0000_8000_0000_0000, 0xee, 0)),
    ];
    for (v, [lo, hi]) in gates {
        write_table(&mut mem, IDT + 16 * v, &[lo, hi]);
    }
    (cpu, mem)
}

#[test]
fn long_mode_delivery_and_iretq() {
    let (mut cpu, mut mem) = long();
    cpu.rip = 0x7fff_0000_1000;
    cpu.gpr[4] = 0x5_0001;
    let fl = deliver(&mut cpu, &mut mem, exc(14, Some(6)), 0x202).unwrap();
    assert_eq!(fl, 0x2);
    assert_eq!(
        (cpu.rip, cpu.gpr[4], cpu.mode),
        (0xffff_8000_0000_1400, 0xa000 - 48, CpuMode::Long64)
    );
    assert_eq!(
        (cpu.seg(SegReg::Ss).selector, cpu.seg(SegReg::Cs).selector),
        (0, 0x08)
    );
    let frame: Vec<u64> = (0..6).map(|i| rd(&mem, 0xa000 - 48 + 8 * i, 8)).collect();
    assert_eq!(frame, [6, 0x7fff_0000_1000, 0x1b, 0x202, 0x5_0001, 0x23]);
    cpu.gpr[4] += 8;
    let fl = iret(&mut cpu, &mut mem, 64, fl).unwrap();
    assert_eq!(fl, 0x202);
    assert_eq!(
        (cpu.rip, cpu.gpr[4], segment::cpl(&cpu)),
        (0x7fff_0000_1000, 0x5_0001, 3)
    );
    assert_eq!(cpu.seg(SegReg::Ss).selector, 0x23);
    // Same privilege with IST: the IST stack, aligned; as for a privilege change, SS
    // becomes a null selector of the new CPL (what Bochs and QEMU do).
    let (mut cpu, mut mem) = long();
    cpu.seg[SegReg::Cs as usize].selector = 0x08;
    cpu.seg[SegReg::Ss as usize] = Segment::flat(0x10, 0xc093);
    cpu.gpr[4] = 0x6_0008;
    deliver(
        &mut cpu,
        &mut mem,
        Event {
            vector: 2,
            kind: EventKind::Nmi,
        },
        0x2,
    )
    .unwrap();
    assert_eq!((cpu.rip, cpu.gpr[4]), (0x200, 0xc000 - 40));
    assert_eq!(rd(&mem, 0xc000 - 16, 8), 0x6_0008);
    assert_eq!(rd(&mem, 0xc000 - 8, 8), 0x10);
    assert_eq!(cpu.seg(SegReg::Ss).selector, 0);
    assert_eq!(cpu.seg(SegReg::Ss).attrs & crate::state::SEG_P, 0);
    // Same privilege without IST: the current stack, aligned down.
    deliver(&mut cpu, &mut mem, soft(0x80), 0x202).unwrap();
    assert_eq!(cpu.gpr[4], 0xc000 - 48 - 40);
    // IRETQ at the same privilege pops SS:RSP too, a null SS is fine at CPL 0.
    let fl = iret(&mut cpu, &mut mem, 64, 0x2).unwrap();
    assert_eq!((fl, cpu.rip, cpu.gpr[4]), (0x202, 0x202, 0xc000 - 40));
    // Faults: 32-bit code target, 16-bit-style gate type, non-canonical offset, IDT limit.
    use Exception::*;
    let (mut cpu, mut mem) = long();
    assert_eq!(
        deliver(&mut cpu, &mut mem, soft(0x81), 0x2),
        err(GeneralProtection, 0x38)
    );
    assert_eq!(
        deliver(&mut cpu, &mut mem, soft(0x82), 0x2),
        err(GeneralProtection, 0x82 * 8 + 2)
    );
    assert_eq!(
        deliver(&mut cpu, &mut mem, soft(0x83), 0x2),
        err(GeneralProtection, 0)
    );
    assert_eq!(
        deliver(&mut cpu, &mut mem, soft(14), 0x2),
        err(GeneralProtection, 14 * 8 + 2)
    );
    cpu.idtr.limit = 0x80 * 16 + 14;
    assert_eq!(
        deliver(&mut cpu, &mut mem, soft(0x80), 0x2),
        err(GeneralProtection, 0x402)
    );
    assert_eq!(iret(&mut cpu, &mut mem, 64, NT), err(GeneralProtection, 0));
    cpu.tr.limit = 0x8;
    cpu.idtr.limit = 0xfff;
    assert_eq!(
        deliver(&mut cpu, &mut mem, soft(0x80), 0x2),
        err(InvalidTss, 0x28)
    );
}

/// 64-bit frames must lie at canonical addresses: a stack (the current one, RSP0 of the
/// TSS, or what IRETQ pops) that is not gives #SS(0) before anything is written, where the
/// pushes' own accesses would have given #GP(0) or a page fault.
#[test]
fn long_mode_frames_at_non_canonical_addresses_are_ss_zero() {
    use Exception::*;
    // Same privilege (CPL 0, the current stack): RSP just above the canonical hole, and
    // a frame that would cross below the start of the upper half.
    for rsp in [0x0000_8000_0000_0010u64, 0xffff_8000_0000_0018] {
        let (mut cpu, mut mem) = long();
        cpu.seg[SegReg::Cs as usize].selector = 0x08;
        cpu.gpr[4] = rsp;
        cpu.rip = 0x1234;
        assert_eq!(
            deliver(&mut cpu, &mut mem, soft(0x80), 0x2),
            err(StackFault, 0),
            "RSP {rsp:#x}"
        );
        assert_eq!((cpu.gpr[4], cpu.rip), (rsp, 0x1234), "nothing changed");
    }
    // A privilege change to a non-canonical RSP0; a canonical one at the same place works.
    let (mut cpu, mut mem) = long();
    mem.write_phys(TSS + 4, 8, 0xffff_0000_0000_a000);
    cpu.gpr[4] = 0x5_0000;
    assert_eq!(
        deliver(&mut cpu, &mut mem, exc(14, Some(6)), 0x202),
        err(StackFault, 0)
    );
    // The stack check comes before the target's: gate 0x83 has a non-canonical offset.
    // (RSP itself may be the first non-canonical address: the frame lies below it.)
    cpu.seg[SegReg::Cs as usize].selector = 0x08;
    cpu.gpr[4] = 0x0000_8000_0000_0010;
    assert_eq!(
        deliver(&mut cpu, &mut mem, soft(0x83), 0x2),
        err(StackFault, 0)
    );
    cpu.gpr[4] = 0x0000_8000_0000_0000;
    assert_eq!(
        deliver(&mut cpu, &mut mem, soft(0x83), 0x2),
        err(GeneralProtection, 0)
    );
    // IRETQ popping from a non-canonical RSP.
    let (mut cpu, mut mem) = long();
    cpu.seg[SegReg::Cs as usize].selector = 0x08;
    cpu.gpr[4] = 0x0000_8000_0000_0000;
    assert_eq!(iret(&mut cpu, &mut mem, 64, 0x2), err(StackFault, 0));
}

#[test]
fn random_tables_never_panic() {
    let mut rng = Rng(0x1234_5678_9abc_def1);
    for round in 0..200 {
        let (mut cpu, mut mem) = if round % 2 == 0 {
            prot(round % 4 == 0)
        } else {
            long()
        };
        if round % 5 == 0 {
            cpu.cr0 &= !crate::state::CR0_PE;
        }
        let junk: Vec<u64> = (0..256).map(|_| rng.next()).collect();
        write_table(&mut mem, IDT, &junk);
        write_table(&mut mem, TSS, &junk[..13]);
        write_table(&mut mem, GDT + 0x38, &junk[200..208]);
        for _ in 0..30 {
            let r = rng.next();
            cpu.gpr[4] = rng.next() & 0x1_ffff;
            let kind = match r % 4 {
                0 => EventKind::Exception {
                    error_code: Some(r as u32),
                },
                1 => EventKind::Software { insn_len: 2 },
                2 => EventKind::External,
                _ => EventKind::Nmi,
            };
            let fl = rng.next();
            let _ = deliver(
                &mut cpu,
                &mut mem,
                Event {
                    vector: (r >> 8) as u8,
                    kind,
                },
                fl,
            );
            for i in 0..5 {
                mem.write_phys((cpu.gpr[4] & 0x1_fff0) + 8 * i, 8, rng.next());
            }
            let _ = iret(
                &mut cpu,
                &mut mem,
                [16, 32, 64][(r >> 20) as usize % 3],
                rng.next(),
            );
        }
    }
}

/// SS made an expand-down 32-bit segment whose valid offsets start above `limit`.
fn expand_down(limit: u32, dpl: u8) -> u64 {
    desc(0, limit, 0x96 | (dpl << 5), 4)
}

#[test]
fn a_frame_that_does_not_fit_the_current_stack_is_ss_ext_with_nothing_written() {
    let (mut cpu, mut mem) = prot(false);
    cpu.rip = 0x1000;
    cpu.gpr[4] = 0x9000;
    // Offsets 0x8ff8.. are valid: EFLAGS and CS fit, EIP does not.
    cpu.seg[SegReg::Ss as usize] =
        Descriptor::from_raw(expand_down(0x8ff7, 0), 0, 0).to_segment(0x10);
    let before = cpu.clone();
    let ext = ext(0x20);
    assert_eq!(
        deliver(&mut cpu, &mut mem, ext, IFL),
        err(Exception::StackFault, 1)
    );
    assert_eq!(
        deliver(&mut cpu, &mut mem, soft(0x21), IFL),
        err(Exception::StackFault, 0),
        "INT n: EXT clear"
    );
    assert_eq!(
        (cpu.gpr, cpu.seg, cpu.rip),
        (before.gpr, before.seg, before.rip)
    );
    assert_eq!(rd(&mem, 0x8ff8, 8), 0, "no push written");
    // The error code is the fourth push: room for three is not enough.
    cpu.seg[SegReg::Ss as usize].limit = 0x8ff3;
    assert_eq!(
        deliver(&mut cpu, &mut mem, exc(13, Some(0)), IFL),
        err(Exception::StackFault, 1)
    );
    assert_eq!(rd(&mem, 0x8ff4, 8) | rd(&mem, 0x8ffc, 4), 0);
    cpu.seg[SegReg::Ss as usize].limit = 0x8fef;
    deliver(&mut cpu, &mut mem, exc(13, Some(0x28)), IFL).unwrap();
    assert_eq!((cpu.gpr[4], rd(&mem, 0x8ff0, 4)), (0x8ff0, 0x28));
    // IRET pops within the limit too: EFLAGS beyond a 0x8ffb expand-up limit is #SS(0).
    let (mut cpu, mut mem) = prot(false);
    cpu.gpr[4] = 0x8ff4;
    cpu.seg[SegReg::Ss as usize].limit = 0x8ffb;
    let before = cpu.clone();
    assert_eq!(
        iret(&mut cpu, &mut mem, 32, 0x2),
        err(Exception::StackFault, 0)
    );
    assert_eq!(
        (cpu.gpr, cpu.seg, cpu.rip),
        (before.gpr, before.seg, before.rip)
    );
}

#[test]
fn a_frame_that_does_not_fit_the_inner_stack_is_ss_new_selector() {
    let (mut cpu, mut mem) = prot(true);
    // Ring-0 stack 0x48: expand-down, valid above 0x9fef; ESP0 0xa000 leaves 16 bytes,
    // the inter-privilege frame needs 20.
    mem.write_phys(GDT + 0x48, 8, expand_down(0x9fef, 0));
    cpu.gdtr.limit = 0x4f;
    mem.write_phys(TSS + 8, 2, 0x48);
    cpu.rip = 0x1000;
    cpu.gpr[4] = 0x7000;
    let before = cpu.clone();
    let ext = ext(0x20);
    assert_eq!(
        deliver(&mut cpu, &mut mem, ext, IFL),
        err(Exception::StackFault, 0x49)
    );
    assert_eq!(
        deliver(&mut cpu, &mut mem, soft(0x80), IFL),
        err(Exception::StackFault, 0x48)
    );
    assert_eq!(
        (cpu.gpr, cpu.seg, cpu.rip),
        (before.gpr, before.seg, before.rip)
    );
    assert_eq!(
        rd(&mem, 0x9ff0, 8) | rd(&mem, 0x9ff8, 8),
        0,
        "no push written"
    );
    // Four more bytes of stack: the frame fits.
    mem.write_phys(TSS + 4, 4, 0xa004);
    deliver(&mut cpu, &mut mem, soft(0x80), IFL).unwrap();
    assert_eq!((cpu.seg(SegReg::Ss).selector, cpu.gpr[4]), (0x48, 0x9ff0));
    assert_eq!(rd(&mem, 0xa000, 4), 0x23, "the old SS, pushed first");
}

#[test]
fn the_room_check_comes_before_the_instruction_pointer_check() {
    let (mut cpu, mut mem) = prot(false);
    // Gate 0x22 targets an offset beyond the 64 KiB code segment 0x38 (made present).
    mem.write_phys(GDT + 0x38, 8, desc(0, 0xffff, 0x9a, 4));
    mem.write_phys(IDT + 8 * 0x22, 8, gate32(0x38, 0x1_0000, 0x8e));
    cpu.gpr[4] = 0x9000;
    cpu.seg[SegReg::Ss as usize].limit = 0x8ffb;
    let ext = ext(0x22);
    assert_eq!(
        deliver(&mut cpu, &mut mem, ext, IFL),
        err(Exception::StackFault, 1)
    );
    cpu.seg[SegReg::Ss as usize].limit = 0xffff_ffff;
    assert_eq!(
        deliver(&mut cpu, &mut mem, ext, IFL),
        err(Exception::GeneralProtection, 1)
    );
}

#[test]
fn real_mode_frames_respect_the_64k_limit() {
    let mut cpu = CpuState::new(CpuMode::Real16);
    let mut mem = PhysMem::new(0x20000).unwrap();
    cpu.seg[SegReg::Ss as usize] = Segment::real(0x100);
    // SP = 1: the first push would be a word at 0xFFFF, crossing the limit.
    cpu.gpr[4] = 1;
    let before = cpu.clone();
    assert_eq!(
        deliver(&mut cpu, &mut mem, soft(0x21), IFL),
        err(Exception::StackFault, 0)
    );
    assert_eq!((cpu.gpr, cpu.rip), (before.gpr, before.rip));
    // SP = 0 wraps to 0xFFFE: within the limit.
    cpu.gpr[4] = 0;
    deliver(&mut cpu, &mut mem, soft(0x21), IFL).unwrap();
    assert_eq!(cpu.gpr[4], 0xfffa);
    // IRET pops: a word at 0xFFFF crosses the end (a pop at 0xFFFE would wrap to 0).
    cpu.gpr[4] = 0xffff;
    assert_eq!(
        iret(&mut cpu, &mut mem, 16, 0x2),
        err(Exception::StackFault, 0)
    );
}

#[test]
fn frames_are_accessed_at_the_privilege_of_the_stack_they_are_on() {
    const P: u64 = 1;
    const RW: u64 = 2;
    const US: u64 = 4;
    let (mut cpu, mut mem) = prot(true);
    paging32(&mut cpu, &mut mem);
    cpu.rip = 0x1000;
    cpu.gpr[4] = 0x9000;
    // Through a gate to ring-3 code the frame goes on the current (user) stack as user
    // mode: a supervisor-only page is #PF(P|W|U).
    page_rights(&mut cpu, &mut mem, 0x8000, P | RW);
    let r = deliver(&mut cpu, &mut mem, soft(0x36), 0x202);
    assert_eq!(r, err(Exception::PageFault, 0x7));
    assert_eq!((cpu.cr2, cpu.rip, cpu.gpr[4]), (0x8ffc, 0x1000, 0x9000));
    // To ring 0 the frame goes on the TSS's stack (below 0xa000) as supervisor mode.
    page_rights(&mut cpu, &mut mem, 0x9000, P | RW);
    deliver(&mut cpu, &mut mem, soft(0x80), 0x202).unwrap();
    assert_eq!(
        (cpu.seg(SegReg::Cs).selector, cpu.gpr[4]),
        (0x08, 0xa000 - 20)
    );
    iret(&mut cpu, &mut mem, 32, 0x2).unwrap();
    assert_eq!((cpu.seg(SegReg::Cs).selector, cpu.gpr[4]), (0x1b, 0x9000));
    // Same level at CPL 3 on a user page; the IRET back pops as user mode too.
    page_rights(&mut cpu, &mut mem, 0x8000, P | RW | US);
    deliver(&mut cpu, &mut mem, soft(0x36), 0x202).unwrap();
    assert_eq!((cpu.rip, cpu.gpr[4]), (0x3600, 0x8ff4));
    page_rights(&mut cpu, &mut mem, 0x8000, P | RW);
    let r = iret(&mut cpu, &mut mem, 32, 0x202);
    assert_eq!(r, err(Exception::PageFault, 0x5));
    assert_eq!((cpu.cr2, cpu.rip), (0x8ff4, 0x3600));
    page_rights(&mut cpu, &mut mem, 0x8000, P | RW | US);
    iret(&mut cpu, &mut mem, 32, 0x202).unwrap();
    assert_eq!((cpu.rip, cpu.gpr[4]), (0x1004, 0x9000));
}
