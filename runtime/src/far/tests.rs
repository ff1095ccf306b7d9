//! Tests for far JMP, CALL and RETF: real mode, direct transfers, call gates with and without
//! a privilege change, long-mode gates, and the fault order.

use super::*;
use crate::flags::FIXED1;
use crate::segment::tests::{
    code32, code64, data32, desc, page_rights, paging32, setup, write_table, Rng, GDT, TSS,
};
use crate::state::CpuMode;

const FL: u64 = FIXED1 | crate::flags::IF;

fn rd(mem: &PhysMem, a: u64, n: u32) -> u64 {
    mem.peek_phys(a, n)
}

fn fault(e: Exception, code: u32) -> Result<u64, Delivery> {
    Err(Delivery::Fault(Fault::with_code(e, code)))
}

/// A call gate: `access` = P|DPL|type byte, `count` parameters.
fn gate(sel: u16, off: u32, access: u8, count: u8) -> u64 {
    crate::segment::encode_gate(sel, off, access) | u64::from(count & 0x1f) << 32
}

/// The GDT the protected-mode tests share.
fn gdt() -> Vec<u64> {
    vec![
        0,                                // 0x00
        code32(0),                        // 0x08 ring-0 code
        data32(0),                        // 0x10 ring-0 data
        code32(3),                        // 0x18 ring-3 code
        data32(3),                        // 0x20 ring-3 data
        desc(0x1_0000, 0xfff, 0x9e, 0x4), // 0x28 conforming code DPL 0, limit 0xfff
        desc(0, 0xffff, 0x1a, 4),         // 0x30 not-present code
        gate(0x08, 0x4000, 0xec, 2),      // 0x38 32-bit call gate DPL 3 -> ring 0, 2 params
        gate(0x08, 0x4800, 0x8c, 0),      // 0x40 32-bit call gate DPL 0
        desc(TSS as u32, 0x67, 0x89, 0),  // 0x48 32-bit TSS (current)
        gate(0x18, 0x0123_5000, 0xe4, 1), // 0x50 16-bit call gate DPL 3 -> ring 3 code
        gate(0x08, 0x4000, 0x6c, 0),      // 0x58 not-present call gate DPL 3
        desc(0, 0xffff, 0x92, 0x4),       // 0x60 16-bit ring-0 stack
        desc(0, 0x8feb, 0x96, 0x4),       // 0x68 ring-0 stack, expand-down above 0x8feb
    ]
}

/// 32-bit protected mode at CPL `cpl` (0 or 3) with TR pointing at a TSS whose ring-0 stack
/// is 0x10:0x9000.
fn prot(cpl: u8) -> (CpuState, PhysMem) {
    let (cs, ss) = if cpl == 0 { (0x08, 0x10) } else { (0x1b, 0x23) };
    let (mut cpu, mut mem) = setup(CpuMode::Prot32, &gdt(), cs, ss);
    cpu.tr = Descriptor::from_raw(gdt()[9], 0, 0).to_segment(0x48);
    mem.write_phys(TSS + 4, 4, 0x9000);
    mem.write_phys(TSS + 8, 2, 0x10);
    cpu.gpr[4] = 0x8000;
    cpu.rip = 0x1000;
    (cpu, mem)
}

#[test]
fn real_mode_far_call_jmp_and_retf() {
    let mut cpu = CpuState::new(CpuMode::Real16);
    let mut mem = PhysMem::new(0x20000).unwrap();
    cpu.seg[SegReg::Cs as usize] = Segment::real(0x100);
    cpu.seg[SegReg::Ss as usize] = Segment::real(0x200);
    cpu.gpr[4] = 0x1_0100;
    let f = jmp_call(
        &mut cpu,
        &mut mem,
        FarKind::Call,
        0x1234,
        0x5678,
        2,
        0x0105,
        FL,
    );
    assert_eq!(f, Ok(FL));
    assert_eq!((cpu.seg(SegReg::Cs).base, cpu.rip), (0x12340, 0x5678));
    assert_eq!(
        cpu.gpr[4], 0x1_00fc,
        "SP wraps at 16 bits, the upper ESP bits stay"
    );
    assert_eq!((rd(&mem, 0x20fc, 2), rd(&mem, 0x20fe, 2)), (0x0105, 0x100));
    // RETF 4 releases two words of parameters.
    retf(&mut cpu, &mut mem, 2, 4, FL).unwrap();
    assert_eq!((cpu.seg(SegReg::Cs).selector, cpu.rip), (0x100, 0x105));
    assert_eq!(cpu.gpr[4], 0x1_0104);
    // A 32-bit far JMP beyond the 64 KiB limit is #GP(0).
    assert_eq!(
        jmp_call(&mut cpu, &mut mem, FarKind::Jmp, 0, 0x1_0000, 4, 0, FL),
        fault(Exception::GeneralProtection, 0)
    );
    jmp_call(&mut cpu, &mut mem, FarKind::Jmp, 0xf000, 0xfff0, 4, 0, FL).unwrap();
    assert_eq!((cpu.seg(SegReg::Cs).base, cpu.rip), (0xf0000, 0xfff0));
}

#[test]
fn direct_far_jmp_and_call_follow_the_conforming_rules() {
    let (mut cpu, mut mem) = prot(0);
    // Non-conforming, DPL = CPL: fine; the RPL is replaced by the CPL... which is 0 here.
    jmp_call(&mut cpu, &mut mem, FarKind::Jmp, 0x08, 0x2000, 4, 0, FL).unwrap();
    assert_eq!((cpu.seg(SegReg::Cs).selector, cpu.rip), (0x08, 0x2000));
    assert_eq!(rd(&mem, GDT + 8 + 5, 1), 0x9b, "accessed bit set");
    // A far CALL to the conforming segment pushes CS:EIP.
    jmp_call(
        &mut cpu,
        &mut mem,
        FarKind::Call,
        0x28,
        0x100,
        4,
        0x2007,
        FL,
    )
    .unwrap();
    assert_eq!(cpu.seg(SegReg::Cs).base, 0x1_0000);
    assert_eq!(
        (cpu.gpr[4], rd(&mem, 0x7ff8, 4), rd(&mem, 0x7ffc, 4)),
        (0x7ff8, 0x2007, 0x08)
    );
    retf(&mut cpu, &mut mem, 4, 0, FL).unwrap();
    assert_eq!(
        (cpu.seg(SegReg::Cs).selector, cpu.rip, cpu.gpr[4]),
        (0x08, 0x2007, 0x8000)
    );

    let (mut cpu, mut mem) = prot(3);
    let gp = |c| fault(Exception::GeneralProtection, c);
    let mut go = |sel, off| jmp_call(&mut cpu, &mut mem, FarKind::Call, sel, off, 4, 0, FL);
    assert_eq!(go(0x08, 0), gp(0x08), "non-conforming DPL 0 from CPL 3");
    assert_eq!(
        go(0x1a, 0),
        Ok(FL),
        "RPL 2 ≤ CPL 3 is fine; CS.RPL becomes 3"
    );
    assert_eq!(cpu.seg(SegReg::Cs).selector, 0x1b);
    let mut go = |sel, off| jmp_call(&mut cpu, &mut mem, FarKind::Call, sel, off, 4, 0, FL);
    assert_eq!(go(0x03, 0), gp(0), "null selector");
    assert_eq!(go(0x20, 0), gp(0x20), "data segment");
    assert_eq!(go(0x68, 0), gp(0x68), "beyond the GDT");
    assert_eq!(go(0x48, 0), gp(0x48), "TSS with DPL 0");
    let (mut cpu, mut mem) = prot(0);
    let mut go = |sel, off| jmp_call(&mut cpu, &mut mem, FarKind::Jmp, sel, off, 4, 0, FL);
    assert_eq!(go(0x30, 0), fault(Exception::SegmentNotPresent, 0x30));
    assert_eq!(
        go(0x28, 0x1000),
        gp(0),
        "beyond the conforming segment's limit"
    );
    assert_eq!(go(0x2b, 0xfff), Ok(FL), "conforming: RPL ignored, CPL kept");
    assert_eq!(cpu.seg(SegReg::Cs).selector, 0x28);
}

#[test]
fn call_gate_to_ring_0_copies_parameters_and_retf_returns_to_ring_3() {
    let (mut cpu, mut mem) = prot(3);
    cpu.seg[SegReg::Ds as usize] = Descriptor::from_raw(data32(0), 0, 0).to_segment(0x10);
    cpu.seg[SegReg::Es as usize] = Descriptor::from_raw(data32(3), 0, 0).to_segment(0x23);
    // Two parameters on the ring-3 stack.
    mem.write_phys(0x8000, 4, 0x1111);
    mem.write_phys(0x8004, 4, 0x2222);
    let f = jmp_call(
        &mut cpu,
        &mut mem,
        FarKind::Call,
        0x3b,
        0xdead,
        4,
        0x1007,
        FL,
    )
    .unwrap();
    assert_eq!(f, FL);
    assert_eq!(
        (cpu.seg(SegReg::Cs).selector, cpu.rip),
        (0x08, 0x4000),
        "offset from the gate"
    );
    assert_eq!(
        (cpu.seg(SegReg::Ss).selector, cpu.gpr[4]),
        (0x10, 0x9000 - 24)
    );
    assert_eq!(cpl(&cpu), 0);
    let frame: Vec<u64> = (0..6).map(|i| rd(&mem, 0x9000 - 24 + 4 * i, 4)).collect();
    assert_eq!(frame, [0x1007, 0x1b, 0x1111, 0x2222, 0x8000, 0x23]);
    // RETF 8: back to ring 3, both stacks released by 8; DS (DPL 0) is nulled, ES kept.
    retf(&mut cpu, &mut mem, 4, 8, FL).unwrap();
    assert_eq!((cpu.seg(SegReg::Cs).selector, cpu.rip), (0x1b, 0x1007));
    assert_eq!((cpu.seg(SegReg::Ss).selector, cpu.gpr[4]), (0x23, 0x8008));
    assert_eq!(cpl(&cpu), 3);
    assert_eq!(
        (cpu.seg(SegReg::Ds).selector, cpu.seg(SegReg::Ds).attrs),
        (0, 0)
    );
    assert_eq!(cpu.seg(SegReg::Es).selector, 0x23);
}

#[test]
fn call_gate_faults_come_in_the_sdm_order() {
    let gp = |c| fault(Exception::GeneralProtection, c);
    let (mut cpu, mut mem) = prot(3);
    let mut go = |sel| jmp_call(&mut cpu, &mut mem, FarKind::Call, sel, 0, 4, 0, FL);
    assert_eq!(go(0x40), gp(0x40), "gate DPL 0 < CPL 3");
    assert_eq!(go(0x5b), fault(Exception::SegmentNotPresent, 0x58));
    // A JMP through a gate never changes privilege: ring-0 non-conforming target is #GP.
    assert_eq!(
        jmp_call(&mut cpu, &mut mem, FarKind::Jmp, 0x3b, 0, 4, 0, FL),
        gp(0x08)
    );
    // The TSS's ring-0 SS is null: #TS(0); wrong DPL: #TS(sel); 16-bit stack is fine.
    let mut cpu0 = prot(3);
    cpu0.1.write_phys(TSS + 8, 2, 0);
    let (ref mut c, ref mut m) = cpu0;
    let before = c.clone();
    assert_eq!(
        jmp_call(c, m, FarKind::Call, 0x3b, 0, 4, 0, FL),
        fault(Exception::InvalidTss, 0)
    );
    assert_eq!((c.gpr, c.seg, c.rip), (before.gpr, before.seg, before.rip));
    m.write_phys(TSS + 8, 2, 0x20);
    assert_eq!(
        jmp_call(c, m, FarKind::Call, 0x3b, 0, 4, 0, FL),
        fault(Exception::InvalidTss, 0x20)
    );
    // TR's limit too small for the ring-0 stack pointer: #TS(TR).
    c.tr.limit = 8;
    assert_eq!(
        jmp_call(c, m, FarKind::Call, 0x3b, 0, 4, 0, FL),
        fault(Exception::InvalidTss, 0x48)
    );
    c.tr.limit = 0x67;
    m.write_phys(TSS + 8, 2, 0x60);
    jmp_call(c, m, FarKind::Call, 0x3b, 0, 4, 0x1007, FL).unwrap();
    assert_eq!((c.seg(SegReg::Ss).selector, c.gpr[4]), (0x60, 0x9000 - 24));
}

#[test]
fn sixteen_bit_gate_at_the_same_level_pushes_words() {
    let (mut cpu, mut mem) = prot(3);
    jmp_call(&mut cpu, &mut mem, FarKind::Call, 0x53, 0, 4, 0x1_2345, FL).unwrap();
    // A 16-bit gate truncates its offset and the return address; no parameters are copied
    // at the same privilege level.
    assert_eq!((cpu.seg(SegReg::Cs).selector, cpu.rip), (0x1b, 0x5000));
    assert_eq!(cpu.gpr[4], 0x7ffc);
    assert_eq!((rd(&mem, 0x7ffc, 2), rd(&mem, 0x7ffe, 2)), (0x2345, 0x1b));
    retf(&mut cpu, &mut mem, 2, 0, FL).unwrap();
    assert_eq!((cpu.rip, cpu.gpr[4]), (0x2345, 0x8000));
}

#[test]
fn retf_checks_the_returned_selectors() {
    let gp = |c| fault(Exception::GeneralProtection, c);
    let (mut cpu, mut mem) = prot(0);
    let ret_to = |cpu: &mut CpuState, mem: &mut PhysMem, cs: u64, ss: u64| {
        cpu.gpr[4] = 0x7ff0;
        for (i, v) in [0x100, cs, 0x6000, ss].iter().enumerate() {
            mem.write_phys(0x7ff0 + 4 * i as u64, 4, *v);
        }
        let before = cpu.clone();
        let r = retf(cpu, mem, 4, 0, FL);
        if r.is_err() {
            assert_eq!(
                (cpu.gpr, cpu.seg, cpu.rip),
                (before.gpr, before.seg, before.rip)
            );
        }
        r
    };
    assert_eq!(ret_to(&mut cpu, &mut mem, 0, 0), gp(0));
    assert_eq!(
        ret_to(&mut cpu, &mut mem, 0x20, 0),
        gp(0x20),
        "data segment"
    );
    assert_eq!(
        ret_to(&mut cpu, &mut mem, 0x19, 0),
        gp(0x18),
        "RPL 1 ≠ DPL 3"
    );
    assert_eq!(
        ret_to(&mut cpu, &mut mem, 0x1b, 0x10),
        gp(0x10),
        "SS RPL 0 ≠ 3"
    );
    assert_eq!(
        ret_to(&mut cpu, &mut mem, 0x1b, 0x1b),
        gp(0x18),
        "SS not writable"
    );
    assert_eq!(ret_to(&mut cpu, &mut mem, 0x1b, 3), gp(0), "null SS");
    assert_eq!(ret_to(&mut cpu, &mut mem, 0x1b, 0x23), Ok(FL));
    assert_eq!((cpu.rip, cpu.gpr[4], cpl(&cpu)), (0x100, 0x6000, 3));
    assert_eq!(
        ret_to(&mut cpu, &mut mem, 0x08, 0),
        gp(0x08),
        "RPL 0 < CPL 3"
    );
}

/// Long mode: compatibility-mode ring 3 calls a 64-bit ring-0 routine through a 64-bit call
/// gate, and RETFQ returns with SS:RSP.
#[test]
fn long_mode_call_gate_and_retfq() {
    let g = gate(0x08, 0x5000_1234, 0xec, 0);
    let entries = [
        0,
        code64(0),                       // 0x08
        data32(0),                       // 0x10
        code32(3),                       // 0x18 compatibility-mode ring 3
        data32(3),                       // 0x20
        g,                               // 0x28 64-bit call gate, upper half next
        0x0000_7fff,                     // offset 63..32 = 0x7fff
        desc(TSS as u32, 0x67, 0x89, 0), // 0x38 64-bit TSS
        0,
        code64(3), // 0x48 64-bit ring 3
    ];
    let (mut cpu, mut mem) = setup(CpuMode::Long64, &entries, 0x1b, 0x23);
    assert_eq!(cpu.mode, CpuMode::Prot32, "compatibility mode");
    cpu.tr = Descriptor::from_raw(entries[7], 0, 0).to_segment(0x38);
    mem.write_phys(TSS + 4, 8, 0x9000);
    cpu.gpr[4] = 0x8000;
    jmp_call(&mut cpu, &mut mem, FarKind::Call, 0x2b, 0, 4, 0x1007, FL).unwrap();
    assert_eq!(cpu.rip, 0x7fff_5000_1234);
    assert_eq!(cpu.mode, CpuMode::Long64);
    let ss = *cpu.seg(SegReg::Ss);
    assert_eq!((ss.selector, ss.attrs), (0, 0), "null SS with RPL 0");
    assert_eq!(cpu.gpr[4], 0x9000 - 32);
    let frame: Vec<u64> = (0..4).map(|i| rd(&mem, 0x9000 - 32 + 8 * i, 8)).collect();
    assert_eq!(frame, [0x1007, 0x1b, 0x8000, 0x23]);
    retf(&mut cpu, &mut mem, 8, 0, FL).unwrap();
    assert_eq!(
        (cpu.mode, cpu.rip, cpu.gpr[4]),
        (CpuMode::Prot32, 0x1007, 0x8000)
    );
    assert_eq!((cpu.seg(SegReg::Ss).selector, cpl(&cpu)), (0x23, 3));
    // Far JMP to 64-bit ring-3 code; a 32-bit code segment with L = 1 and D = 1 is refused.
    jmp_call(
        &mut cpu,
        &mut mem,
        FarKind::Jmp,
        0x4b,
        0x1234_5678_9000,
        8,
        0,
        FL,
    )
    .unwrap();
    assert_eq!((cpu.mode, cpu.rip), (CpuMode::Long64, 0x1234_5678_9000));
    assert_eq!(
        jmp_call(
            &mut cpu,
            &mut mem,
            FarKind::Jmp,
            0x4b,
            0x8000_0000_0000,
            8,
            0,
            FL
        ),
        fault(Exception::GeneralProtection, 0),
        "non-canonical target"
    );
    mem.write_phys(GDT + 0x48, 8, code64(3) | 1 << 54);
    assert_eq!(
        jmp_call(&mut cpu, &mut mem, FarKind::Jmp, 0x4b, 0, 8, 0, FL),
        fault(Exception::GeneralProtection, 0x48)
    );
    // A 32-bit (legacy) call gate type is invalid in long mode... the 64-bit gate with a
    // non-zero upper type is refused too.
    mem.write_phys(GDT + 0x30, 8, 0x0000_1f00_0000_ffff);
    assert_eq!(
        jmp_call(&mut cpu, &mut mem, FarKind::Call, 0x2b, 0, 8, 0, FL),
        fault(Exception::GeneralProtection, 0x28)
    );
}

#[test]
fn random_descriptors_never_panic() {
    let mut rng = Rng(0x1234_5678_9abc_def1);
    for round in 0..400 {
        let mode = [CpuMode::Prot32, CpuMode::Long64, CpuMode::Prot16][round % 3];
        let entries: Vec<u64> = (0..16).map(|_| rng.next()).collect();
        let (mut cpu, mut mem) = setup(mode, &[0, code32(0)], 0x08, 0);
        write_table(&mut mem, GDT, &entries);
        cpu.gdtr.limit = rng.next() as u16 & 0xff;
        cpu.tr = Segment {
            base: rng.next() & 0xffff,
            limit: rng.next() as u32 & 0xff,
            selector: 0x48,
            attrs: 0x8b,
        };
        cpu.seg[SegReg::Cs as usize].selector = 0x08 | (rng.next() as u16 & 3);
        cpu.gpr[4] = rng.next();
        for _ in 0..20 {
            let sel = rng.next() as u16;
            let kind = if rng.next() & 1 == 0 {
                FarKind::Jmp
            } else {
                FarKind::Call
            };
            let size = [2, 4, 8][(rng.next() % 3) as usize];
            let _ = jmp_call(&mut cpu, &mut mem, kind, sel, rng.next(), size, 0, FL);
            mem.write_phys(cpu.gpr[4] & 0xffff, 8, rng.next());
            let _ = retf(&mut cpu, &mut mem, size, rng.next() as u16, FL);
        }
    }
}

#[test]
fn far_call_pushes_are_checked_against_the_stack_limit() {
    // Same level, expand-down SS valid above 0x7ffb: CS fits, the return address does not.
    let (mut cpu, mut mem) = prot(0);
    cpu.seg[SegReg::Ss as usize].attrs |= 0x4;
    cpu.seg[SegReg::Ss as usize].limit = 0x7ffb;
    let before = cpu.clone();
    let call = |cpu: &mut CpuState, mem: &mut PhysMem, sel, off| {
        jmp_call(cpu, mem, FarKind::Call, sel, off, 4, 0x1007, FL)
    };
    assert_eq!(
        call(&mut cpu, &mut mem, 0x08, 0x2000),
        fault(Exception::StackFault, 0)
    );
    assert_eq!(
        (cpu.gpr, cpu.seg, cpu.rip),
        (before.gpr, before.seg, before.rip)
    );
    assert_eq!(rd(&mem, 0x7ffc, 4), 0, "CS not written");
    // The room comes before the new EIP: beyond the conforming segment's limit too, #SS.
    assert_eq!(
        call(&mut cpu, &mut mem, 0x28, 0x2000),
        fault(Exception::StackFault, 0)
    );
    cpu.seg[SegReg::Ss as usize].limit = 0x7ff7;
    assert_eq!(
        call(&mut cpu, &mut mem, 0x28, 0x2000),
        fault(Exception::GeneralProtection, 0)
    );
    call(&mut cpu, &mut mem, 0x08, 0x2000).unwrap();
    assert_eq!((cpu.gpr[4], rd(&mem, 0x7ff8, 4)), (0x7ff8, 0x1007));
    // Real mode: a word at 0xFFFF crosses the 64 KiB limit.
    let mut cpu = CpuState::new(CpuMode::Real16);
    let mut mem = PhysMem::new(0x20000).unwrap();
    cpu.gpr[4] = 1;
    let before = cpu.clone();
    assert_eq!(
        jmp_call(&mut cpu, &mut mem, FarKind::Call, 0x10, 0, 2, 5, FL),
        fault(Exception::StackFault, 0)
    );
    assert_eq!(
        (cpu.gpr, cpu.seg, cpu.rip),
        (before.gpr, before.seg, before.rip)
    );
}

#[test]
fn a_call_gate_frame_that_does_not_fit_the_inner_stack_is_ss_new_selector() {
    let (mut cpu, mut mem) = prot(3);
    mem.write_phys(0x8000, 4, 0x1111);
    mem.write_phys(0x8004, 4, 0x2222);
    // Ring-0 stack 0x68, valid above 0x8feb: 20 bytes below ESP0 0x9000, 24 needed.
    mem.write_phys(TSS + 8, 2, 0x68);
    let before = cpu.clone();
    let go = |cpu: &mut CpuState, mem: &mut PhysMem| {
        jmp_call(cpu, mem, FarKind::Call, 0x3b, 0, 4, 0x1007, FL)
    };
    assert_eq!(go(&mut cpu, &mut mem), fault(Exception::StackFault, 0x68));
    assert_eq!(
        (cpu.gpr, cpu.seg, cpu.rip),
        (before.gpr, before.seg, before.rip)
    );
    let untouched = (0..5).all(|i| rd(&mem, 0x8fec + 4 * i, 4) == 0);
    assert!(untouched, "nothing pushed on the new stack");
    // The parameters are read from the caller's stack within its limit: #SS(0), before
    // any push.
    mem.write_phys(TSS + 4, 4, 0x9004);
    cpu.seg[SegReg::Ss as usize].limit = 0x8005;
    assert_eq!(go(&mut cpu, &mut mem), fault(Exception::StackFault, 0));
    assert_eq!(rd(&mem, 0x9000, 4), 0);
    cpu.seg[SegReg::Ss as usize].limit = 0x8007;
    go(&mut cpu, &mut mem).unwrap();
    assert_eq!((cpu.seg(SegReg::Ss).selector, cpu.gpr[4]), (0x68, 0x8fec));
    let frame: Vec<u64> = (0..6).map(|i| rd(&mem, 0x8fec + 4 * i, 4)).collect();
    assert_eq!(frame, [0x1007, 0x1b, 0x1111, 0x2222, 0x8000, 0x23]);
    // RETF pops within the limit: with an expand-up limit of 0x8ffb, EIP and CS pop, but
    // after the 8 released bytes the caller's ESP does not.
    cpu.seg[SegReg::Ss as usize].limit = 0x8ffb;
    cpu.seg[SegReg::Ss as usize].attrs &= !0x4;
    let before = cpu.clone();
    assert_eq!(
        retf(&mut cpu, &mut mem, 4, 8, FL),
        fault(Exception::StackFault, 0)
    );
    assert_eq!(
        (cpu.gpr, cpu.seg, cpu.rip),
        (before.gpr, before.seg, before.rip)
    );
}

/// A #PF with error code `code` at `cr2`.
fn page_fault_at(cpu: &CpuState, r: Result<u64, Delivery>, code: u32, cr2: u64) {
    assert_eq!(r, fault(Exception::PageFault, code));
    assert_eq!(cpu.cr2, cr2);
}

#[test]
fn stack_accesses_of_far_transfers_run_at_the_stack_owners_privilege() {
    const P: u64 = 1;
    const RW: u64 = 2;
    const US: u64 = 4;
    // RETF at CPL 3 pops as user mode: a supervisor-only stack page is #PF(P|U), where
    // an implicit supervisor access would have read it.
    let (mut cpu, mut mem) = prot(3);
    paging32(&mut cpu, &mut mem);
    mem.write_phys(0x8000, 4, 0x1007);
    mem.write_phys(0x8004, 4, 0x1b);
    page_rights(&mut cpu, &mut mem, 0x8000, P | RW);
    let r = retf(&mut cpu, &mut mem, 4, 0, FL);
    page_fault_at(&cpu, r, 0x5, 0x8000);
    assert_eq!((cpu.rip, cpu.gpr[4]), (0x1000, 0x8000), "nothing changed");
    page_rights(&mut cpu, &mut mem, 0x8000, P | RW | US);
    assert_eq!(retf(&mut cpu, &mut mem, 4, 0, FL), Ok(FL));
    assert_eq!((cpu.rip, cpu.gpr[4]), (0x1007, 0x8008));

    // A far CALL at CPL 3 pushes as user mode: a read-only user page is #PF(P|W|U) even
    // with CR0.WP = 0, which lets supervisor writes through.
    let (mut cpu, mut mem) = prot(3);
    paging32(&mut cpu, &mut mem);
    page_rights(&mut cpu, &mut mem, 0x7000, P | US);
    let r = jmp_call(
        &mut cpu,
        &mut mem,
        FarKind::Call,
        0x1b,
        0x2000,
        4,
        0x1007,
        FL,
    );
    page_fault_at(&cpu, r, 0x7, 0x7ffc);
    assert_eq!(rd(&mem, 0x7ffc, 4), 0, "nothing written");

    // Through a call gate to ring 0: the parameters are read from the caller's stack as
    // user mode, the inner stack is written as supervisor mode (a supervisor-only page).
    // The caller's stack is at 0x7000, the ring-0 stack below 0x9000.
    let (mut cpu, mut mem) = prot(3);
    paging32(&mut cpu, &mut mem);
    cpu.gpr[4] = 0x7000;
    mem.write_phys(0x7000, 4, 0x1111);
    mem.write_phys(0x7004, 4, 0x2222);
    page_rights(&mut cpu, &mut mem, 0x7000, P | RW);
    let r = jmp_call(&mut cpu, &mut mem, FarKind::Call, 0x3b, 0, 4, 0x1007, FL);
    page_fault_at(&cpu, r, 0x5, 0x7000);
    assert_eq!((cpl(&cpu), cpu.gpr[4]), (3, 0x7000));
    page_rights(&mut cpu, &mut mem, 0x7000, P | RW | US);
    page_rights(&mut cpu, &mut mem, 0x8000, P | RW);
    jmp_call(&mut cpu, &mut mem, FarKind::Call, 0x3b, 0, 4, 0x1007, FL).unwrap();
    assert_eq!((cpl(&cpu), cpu.gpr[4]), (0, 0x9000 - 24));
    assert_eq!(rd(&mem, 0x9000 - 16, 4), 0x1111);
    // RETF from ring 0 pops the supervisor-only inner stack, then lands on ring 3.
    retf(&mut cpu, &mut mem, 4, 8, FL).unwrap();
    assert_eq!((cpl(&cpu), cpu.rip, cpu.gpr[4]), (3, 0x1007, 0x7008));
}
