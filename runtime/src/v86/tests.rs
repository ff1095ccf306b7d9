//! Tests for entering and leaving virtual-8086 mode and the IOPL rules of POPF.

use super::*;
use crate::flags::{CF, RF, VIF, VIP};
use crate::interrupt::{deliver, iret, Event, EventKind};
use crate::segment::tests::{code32, data32, desc, setup, IDT, TSS};
use crate::segment::{cpl, update_mode, Descriptor};
use crate::state::{CpuMode, DescriptorTable};

/// An interrupt or trap gate: selector, offset, access byte (P, DPL, type).
fn gate(sel: u16, off: u32, access: u8) -> u64 {
    crate::segment::encode_gate(sel, off, access)
}

/// Ring-0 stack from the TSS.
const ESP0: u64 = 0xa000;

/// Protected mode at CPL 0 with a 32-bit TSS (SS0:ESP0 = 0x10:0xa000) and these gates:
/// 0x30 DPL-3 interrupt gate, 0x31 DPL-3 trap gate, 0x32 DPL-0 gate, 0x33 to a DPL-3 code
/// segment, 0x34 to a conforming DPL-0 one, 0x35 a 16-bit DPL-3 interrupt gate, 13 (#GP) a
/// DPL-0 interrupt gate.
pub(super) fn machine() -> (CpuState, PhysMem) {
    let tss = desc(TSS as u32, 0x67, 0x8b, 0);
    let entries = [
        0,
        code32(0),
        data32(0),
        code32(3),
        data32(3),
        tss,
        desc(0, 0xfffff, 0x9e, 0xc), // 0x30: conforming code, DPL 0
    ];
    let (mut cpu, mut mem) = setup(CpuMode::Prot32, &entries, 0x08, 0x10);
    cpu.tr = Descriptor::from_raw(tss, 0, 0).to_segment(0x28);
    cpu.idtr = DescriptorTable {
        base: IDT,
        limit: 0x7ff,
    };
    mem.write_phys(TSS + 4, 4, ESP0);
    mem.write_phys(TSS + 8, 2, 0x10);
    for (v, g) in [
        (0x30, gate(0x08, 0x3000, 0xee)),
        (0x31, gate(0x08, 0x3100, 0xef)),
        (0x32, gate(0x08, 0x3200, 0x8e)),
        (0x33, gate(0x18, 0x3300, 0xee)),
        (0x34, gate(0x30, 0x3400, 0xee)),
        (0x35, gate(0x08, 0x1_3500, 0xe6)),
        (13, gate(0x08, 0x1300, 0x8e)),
    ] {
        mem.write_phys(IDT + 8 * v, 8, g);
    }
    let flat = Descriptor::from_raw(entries[2], 0, 0).to_segment(0x10);
    for s in [SegReg::Ds, SegReg::Es, SegReg::Fs, SegReg::Gs] {
        cpu.seg[s as usize] = flat;
    }
    (cpu, mem)
}

/// Applies a returned RFLAGS the way the callers do.
pub(super) fn apply(cpu: &mut CpuState, fl: u64) {
    cpu.rflags = (fl & !flags::ARITH) | flags::FIXED1;
    update_mode(cpu);
}

/// The frame a monitor builds to enter virtual-8086 mode, at 0x9000 on the ring-0 stack.
const ENTRY_FRAME: [u64; 9] = [
    0xdead_1234, // EIP: only IP survives
    0x0800,      // CS
    0x3202 | VM | CF,
    0x0001_0ffe, // ESP: kept whole
    0x0700,      // SS
    0x1111,      // ES
    0x2222,      // DS
    0x3333,      // FS
    0xffff_4444, // GS: the high word is ignored
];

/// Enters virtual-8086 mode through IRET from CPL 0; returns the new RFLAGS.
pub(super) fn enter(cpu: &mut CpuState, mem: &mut PhysMem) -> u64 {
    cpu.gpr[4] = 0x9000;
    for (i, v) in ENTRY_FRAME.iter().enumerate() {
        mem.write_phys(0x9000 + 4 * i as u64, 4, *v);
    }
    let fl = iret(cpu, mem, 32, 0x2).unwrap();
    apply(cpu, fl);
    fl
}

#[test]
fn iret_at_cpl0_enters_v86() {
    let (mut cpu, mut mem) = machine();
    let fl = enter(&mut cpu, &mut mem);
    assert_eq!(fl, 0x3202 | VM | CF);
    assert_eq!((cpu.rip, cpu.gpr[4]), (0x1234, 0x0001_0ffe));
    for (s, sel) in [
        (SegReg::Cs, 0x0800u16),
        (SegReg::Ss, 0x0700),
        (SegReg::Es, 0x1111),
        (SegReg::Ds, 0x2222),
        (SegReg::Fs, 0x3333),
        (SegReg::Gs, 0x4444),
    ] {
        let seg = cpu.seg(s);
        assert_eq!(
            (seg.selector, seg.base, seg.limit),
            (sel, u64::from(sel) << 4, 0xffff),
            "{s:?}"
        );
        // 0xF3 for every register, CS included (the VM-entry checks, QEMU).
        assert_eq!(seg.attrs & 0xff, 0xf3);
    }
    assert_eq!((cpl(&cpu), cpu.mode), (3, CpuMode::Prot16));
    assert!(active(&cpu));
    // Reserved bits of the popped image are dropped, VIF/VIP/RF/IOPL are taken at CPL 0.
    let (mut cpu, mut mem) = machine();
    let mut frame = ENTRY_FRAME;
    frame[2] = 0xffc0_0000 | VM | VIF | VIP | RF | 0x8028;
    cpu.gpr[4] = 0x9000;
    for (i, v) in frame.iter().enumerate() {
        mem.write_phys(0x9000 + 4 * i as u64, 4, *v);
    }
    let fl = iret(&mut cpu, &mut mem, 32, 0x2).unwrap();
    assert_eq!(fl, VM | VIF | VIP | RF | 0x2);
}

#[test]
fn iret_to_v86_needs_cpl0_and_a_32_bit_operand() {
    // At CPL 3 the VM bit of the image is ignored: a plain return to ring 3.
    let (mut cpu, mut mem) = machine();
    cpu.seg[SegReg::Cs as usize].selector = 0x1b;
    cpu.gpr[4] = 0x9000;
    for (i, v) in [0x10u64, 0x1b, 0x202 | VM].iter().enumerate() {
        mem.write_phys(0x9000 + 4 * i as u64, 4, *v);
    }
    let fl = iret(&mut cpu, &mut mem, 32, 0x2).unwrap();
    assert_eq!(fl & VM, 0);
}

fn soft(vector: u8) -> Event {
    Event {
        vector,
        kind: EventKind::Software { insn_len: 2 },
    }
}

fn frame(mem: &PhysMem, at: u64, n: u64, size: u32) -> Vec<u64> {
    (0..n)
        .map(|i| mem.peek_phys(at + u64::from(size) * i, size))
        .collect()
}

#[test]
fn interrupt_from_v86_saves_the_segments_and_nulls_them() {
    let (mut cpu, mut mem) = machine();
    let fl = enter(&mut cpu, &mut mem);
    let fl = deliver(&mut cpu, &mut mem, soft(0x30), fl | flags::TF | NT).unwrap();
    // Interrupt gate: IF cleared too; VM, TF, NT cleared.
    assert_eq!(fl, 0x3002 | CF);
    let sp = ESP0 - 36;
    assert_eq!(
        frame(&mem, sp, 9, 4),
        [
            0x1236,
            0x0800,
            0x3302 | VM | CF | NT,
            0x0001_0ffe,
            0x0700,
            0x1111,
            0x2222,
            0x3333,
            0x4444
        ]
    );
    assert_eq!((cpu.rip, cpu.gpr[4]), (0x3000, sp));
    assert_eq!(
        (cpu.seg(SegReg::Cs).selector, cpu.seg(SegReg::Ss).selector),
        (0x08, 0x10)
    );
    for s in [SegReg::Es, SegReg::Ds, SegReg::Fs, SegReg::Gs] {
        assert_eq!(*cpu.seg(s), Segment::default(), "{s:?}");
    }
    apply(&mut cpu, fl);
    assert_eq!((cpl(&cpu), cpu.mode), (0, CpuMode::Prot32));
    // IRET from the handler goes back to virtual-8086 mode with every register.
    let back = iret(&mut cpu, &mut mem, 32, fl).unwrap();
    apply(&mut cpu, back);
    assert_eq!(back, 0x3302 | VM | CF | NT);
    assert_eq!((cpu.rip, cpu.gpr[4], cpl(&cpu)), (0x1236, 0x0001_0ffe, 3));
    assert_eq!(
        (cpu.seg(SegReg::Ds).base, cpu.seg(SegReg::Gs).selector),
        (0x22220, 0x4444)
    );
}

#[test]
fn exceptions_from_v86_push_the_error_code_last() {
    let (mut cpu, mut mem) = machine();
    let fl = enter(&mut cpu, &mut mem) & !flags::IOPL;
    let gp = Event {
        vector: 13,
        kind: EventKind::Exception {
            error_code: Some(0),
        },
    };
    // The gate's DPL (0 here) does not matter for exceptions.
    deliver(&mut cpu, &mut mem, gp, fl).unwrap();
    let sp = ESP0 - 40;
    assert_eq!(cpu.gpr[4], sp);
    assert_eq!(frame(&mem, sp, 3, 4), [0, 0x1234, 0x0800]);
    assert_eq!(mem.read_phys(sp + 36, 4), 0x4444);
}

#[test]
fn a_16_bit_gate_pushes_a_16_bit_frame() {
    let (mut cpu, mut mem) = machine();
    let fl = enter(&mut cpu, &mut mem);
    let out = deliver(&mut cpu, &mut mem, soft(0x35), fl).unwrap();
    assert_eq!(out & (VM | IF), 0);
    let sp = ESP0 - 18;
    assert_eq!(
        frame(&mem, sp, 9, 2),
        [
            0x1236,
            0x0800,
            0x3202 | CF,
            0x0ffe,
            0x0700,
            0x1111,
            0x2222,
            0x3333,
            0x4444
        ]
    );
    assert_eq!((cpu.rip, cpu.gpr[4]), (0x3500, sp));
}

#[test]
fn v86_interrupt_faults_leave_the_registers_alone() {
    use crate::interrupt::Delivery;
    let gp = |code| {
        Err(Delivery::Fault(Fault::with_code(
            Exception::GeneralProtection,
            code,
        )))
    };
    let (mut cpu, mut mem) = machine();
    let fl = enter(&mut cpu, &mut mem);
    let before = (cpu.seg, cpu.rip, cpu.gpr[4]);
    // INT n: gate DPL < CPL 3.
    assert_eq!(
        deliver(&mut cpu, &mut mem, soft(0x32), fl),
        gp(0x32 * 8 + 2)
    );
    // The target must be DPL 0 and non-conforming: #GP(selector).
    assert_eq!(deliver(&mut cpu, &mut mem, soft(0x33), fl), gp(0x18));
    assert_eq!(deliver(&mut cpu, &mut mem, soft(0x34), fl), gp(0x30));
    // An external event sets EXT in the error code.
    let ext = Event {
        vector: 0x33,
        kind: EventKind::External,
    };
    assert_eq!(deliver(&mut cpu, &mut mem, ext, fl), gp(0x19));
    // A bad SS0 in the TSS: #TS(SS0 | EXT = 0).
    mem.write_phys(TSS + 8, 2, 0x18);
    assert_eq!(
        deliver(&mut cpu, &mut mem, soft(0x30), fl),
        Err(Delivery::Fault(Fault::with_code(
            Exception::InvalidTss,
            0x18
        )))
    );
    assert_eq!((cpu.seg, cpu.rip, cpu.gpr[4]), before);
}

#[test]
fn iopl_sensitive_instructions() {
    let gp = Err(Fault::with_code(Exception::GeneralProtection, 0));
    assert_eq!(iopl_sensitive(VM | 0x2), gp);
    assert_eq!(iopl_sensitive(VM | 0x2002), gp);
    assert_eq!(iopl_sensitive(VM | 0x3002), Ok(()));
    // Outside virtual-8086 mode IOPL is checked against the CPL by each instruction.
    assert_eq!(iopl_sensitive(0x2), Ok(()));
}

#[test]
fn popf_mask_follows_cpl_and_iopl() {
    let base = flags::ARITH | flags::TF | flags::DF | NT | flags::AC | flags::ID;
    let (mut cpu, _) = machine();
    assert_eq!(popf_mask(&cpu), base | IF | IOPL);
    cpu.seg[SegReg::Cs as usize].selector = 0x1b;
    assert_eq!(popf_mask(&cpu), base);
    cpu.rflags |= IOPL;
    assert_eq!(popf_mask(&cpu), base | IF);
    // Virtual-8086 mode with IOPL 3 (the only case POPF runs there): IF but never IOPL.
    cpu.rflags |= VM;
    assert_eq!(popf_mask(&cpu), base | IF);
    // Real mode: everything.
    let real = CpuState::new(CpuMode::Real16);
    assert_eq!(popf_mask(&real), base | IF | IOPL);
}
