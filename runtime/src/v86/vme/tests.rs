//! Tests for the virtual-mode extensions: CLI/STI/PUSHF/POPF/IRET on VIF and INT n through
//! the redirection bitmap.

use super::*;
use crate::exception::{Exception, Fault};
use crate::flags::CF;
use crate::state::CpuState;
use crate::v86::tests::{enter, machine};

const GP0: Fault = Fault {
    exception: Exception::GeneralProtection,
    error_code: 0,
};

/// Virtual-8086 mode (CS 0x0800, SS:SP 0x0700:0x0ffe, IP 0x1234) with CR4 = `cr4` and IOPL
/// `iopl`; the TSS is 0x2100 bytes long with its I/O map at 0x100, so the redirection
/// bitmap is at TSS + 0xe0, all clear (every INT n redirected).
fn v86(cr4: u64, iopl: u64) -> (CpuState, PhysMem) {
    let (mut cpu, mut mem) = machine();
    enter(&mut cpu, &mut mem);
    cpu.rflags = (cpu.rflags & !IOPL) | iopl << 12;
    cpu.cr4 = cr4;
    cpu.tr.limit = 0x2100;
    mem.write_phys(crate::segment::tests::TSS + 0x66, 2, 0x100);
    (cpu, mem)
}

fn full(cpu: &CpuState) -> u64 {
    cpu.rflags | CF
}

#[test]
fn cli_and_sti_act_on_vif_with_vme_and_iopl_below_3() {
    let (cpu, _) = v86(CR4_VME, 0);
    let fl = full(&cpu) | IF;
    assert_eq!(cli_sti(&cpu, fl, false), Ok(fl & !VIF));
    assert_eq!(cli_sti(&cpu, fl | VIF, false), Ok(fl & !VIF));
    assert_eq!(cli_sti(&cpu, fl & !IF, true), Ok((fl & !IF) | VIF));
    // A pending virtual interrupt: STI traps to the monitor, CLI does not.
    assert_eq!(cli_sti(&cpu, fl | VIP, true), Err(GP0));
    assert_eq!(cli_sti(&cpu, fl | VIP | VIF, false), Ok(fl | VIP));
    // Without VME, #GP(0); with IOPL 3, IF itself.
    let (cpu, _) = v86(0, 0);
    assert_eq!(cli_sti(&cpu, full(&cpu), true), Err(GP0));
    let (cpu, _) = v86(CR4_VME, 3);
    assert_eq!(cli_sti(&cpu, full(&cpu), true), Ok(full(&cpu) | IF));
    assert_eq!(cli_sti(&cpu, full(&cpu) | IF, false), Ok(full(&cpu) & !IF));
}

#[test]
fn pvi_covers_cli_and_sti_at_cpl_3_only() {
    let (mut cpu, _) = machine();
    cpu.cr4 = CR4_PVI;
    let fl = 0x202;
    // CPL 0: IF.
    assert_eq!(cli_sti(&cpu, fl, false), Ok(0x2));
    // CPL 3, IOPL 0: VIF.
    cpu.seg[SegReg::Cs as usize].selector = 0x1b;
    assert_eq!(cli_sti(&cpu, fl, false), Ok(fl));
    assert_eq!(cli_sti(&cpu, fl, true), Ok(fl | VIF));
    assert_eq!(cli_sti(&cpu, fl | VIP, true), Err(GP0));
    // CPL 3, IOPL 3: IF.
    assert_eq!(cli_sti(&cpu, 0x3002, true), Ok(0x3202));
    // CPL 2, IOPL 1: #GP(0) even with PVI, which is for CPL 3.
    cpu.seg[SegReg::Cs as usize].selector = 0x1a;
    assert_eq!(cli_sti(&cpu, 0x1002, true), Err(GP0));
    // PVI off at CPL 3: #GP(0).
    cpu.seg[SegReg::Cs as usize].selector = 0x1b;
    cpu.cr4 = 0;
    assert_eq!(cli_sti(&cpu, fl, true), Err(GP0));
}

#[test]
fn pushf_pushes_vif_as_if_and_iopl_as_3() {
    let (cpu, _) = v86(CR4_VME, 1);
    let fl = full(&cpu) | IF | flags::DF;
    assert_eq!(pushf(&cpu, fl, 2), Ok(Some((fl & 0xffff & !IF) | IOPL)));
    assert_eq!(
        pushf(&cpu, fl | VIF, 2),
        Ok(Some((fl & 0xffff) | IOPL | IF))
    );
    // PUSHFD is not virtualised.
    assert_eq!(pushf(&cpu, fl, 4), Err(GP0));
    let (cpu, _) = v86(0, 1);
    assert_eq!(pushf(&cpu, full(&cpu), 2), Err(GP0));
    let (cpu, _) = v86(CR4_VME, 3);
    assert_eq!(pushf(&cpu, full(&cpu), 4), Ok(None));
}

#[test]
fn popf_loads_vif_from_the_image_and_keeps_if_and_iopl() {
    let (cpu, _) = v86(CR4_VME, 0);
    let old = full(&cpu) | IF;
    assert_eq!(popf_allowed(&cpu, old, 2), Ok(()));
    assert_eq!(popf_allowed(&cpu, old, 4), Err(GP0));
    // IF = 1 and IOPL = 3 in the image: VIF set, IF and IOPL unchanged, CF cleared, DF set.
    let image = IF | IOPL | flags::DF | 0x2;
    assert_eq!(
        popf(&cpu, old, image, 2),
        Ok(((old & !CF) | flags::DF | VIF) & !RF)
    );
    // IF = 0 in the image clears VIF, not IF.
    assert_eq!(popf(&cpu, old | VIF, 0x2, 2), Ok(old & !CF));
    // TF in the image, or IF with VIP pending: #GP(0).
    assert_eq!(popf(&cpu, old, TF | 0x2, 2), Err(GP0));
    assert_eq!(popf(&cpu, old | VIP, IF | 0x2, 2), Err(GP0));
    assert_eq!(popf(&cpu, old | VIP, 0x2, 2), Ok((old | VIP) & !CF));
    let (cpu, _) = v86(0, 0);
    assert_eq!(popf_allowed(&cpu, full(&cpu), 2), Err(GP0));
}

#[test]
fn iret16_returns_on_vif() {
    let (mut cpu, mut mem) = v86(CR4_VME, 0);
    let ss = 0x7000;
    cpu.gpr[4] = 0x0f00;
    for (i, v) in [0x4321u64, 0x0900, IF | flags::DF | 0x2].iter().enumerate() {
        mem.write_phys(ss + 0x0f00 + 2 * i as u64, 2, *v);
    }
    let old = full(&cpu);
    let fl = iret16(&mut cpu, &mut mem, old).unwrap();
    assert_eq!(fl, (old & !CF) | flags::DF | VIF);
    assert_eq!(
        (cpu.rip, cpu.gpr[4], cpu.seg[SegReg::Cs as usize].base),
        (0x4321, 0x0f06, 0x9000)
    );
    // TF in the image: #GP(0), nothing changed.
    let (mut cpu, mut mem) = v86(CR4_VME, 0);
    cpu.gpr[4] = 0x0f00;
    mem.write_phys(ss + 0x0f04, 2, TF | 0x2);
    let before = (cpu.rip, cpu.gpr[4], cpu.seg);
    let fl = full(&cpu);
    assert_eq!(iret16(&mut cpu, &mut mem, fl), Err(GP0.into()));
    assert_eq!((cpu.rip, cpu.gpr[4], cpu.seg), before);
}

#[test]
fn int_n_is_redirected_to_the_task_vector_table() {
    let (mut cpu, mut mem) = v86(CR4_VME, 0);
    mem.write_phys(0x21 * 4, 4, 0x0123_0456);
    let old = full(&cpu) | IF | VIF | TF;
    let r = int_n(&mut cpu, &mut mem, 0x21, 2, old).unwrap();
    assert_eq!(r, SoftwareInterrupt::Redirected(old & !(VIF | TF)));
    assert_eq!(
        (cpu.rip, cpu.seg[SegReg::Cs as usize].selector),
        (0x456, 0x123)
    );
    assert_eq!(cpu.gpr[4], 0x0001_0ff8);
    // IP after the INT, CS, and FLAGS with IF = VIF and IOPL = 3.
    let mut at = |o: u64| mem.read_phys(0x7000 + o, 2);
    assert_eq!((at(0xff8), at(0xffa)), (0x1236, 0x0800));
    assert_eq!(at(0xffc), (old & 0xffff) | IOPL);
    // IOPL 3: the image is FLAGS itself and IF is cleared.
    let (mut cpu, mut mem) = v86(CR4_VME, 3);
    let old = full(&cpu) | IF;
    let r = int_n(&mut cpu, &mut mem, 0x21, 2, old).unwrap();
    assert_eq!(r, SoftwareInterrupt::Redirected(old & !IF));
    assert_eq!(mem.read_phys(0x7000 + 0xffc, 2), old & 0xffff);
}

#[test]
fn a_set_redirection_bit_goes_to_the_idt_or_faults() {
    for (cr4, iopl, want) in [
        (CR4_VME, 0, Err(GP0.into())),
        (CR4_VME, 3, Ok(SoftwareInterrupt::Idt)),
        (0, 0, Err(GP0.into())),
        (0, 3, Ok(SoftwareInterrupt::Idt)),
    ] {
        let (mut cpu, mut mem) = v86(cr4, iopl);
        // Vector 0x21: byte 4 of the bitmap (TSS + 0xe4), bit 1.
        mem.write_phys(crate::segment::tests::TSS + 0xe4, 1, 0x02);
        let fl = full(&cpu);
        let r = int_n(&mut cpu, &mut mem, 0x21, 2, fl);
        assert_eq!(r, want, "cr4 {cr4:#x} iopl {iopl}");
        // Its neighbour 0x20 is redirected with VME.
        if cr4 != 0 {
            let r = int_n(&mut cpu, &mut mem, 0x20, 2, fl);
            assert!(matches!(r, Ok(SoftwareInterrupt::Redirected(_))));
        }
    }
    // A TSS too short for the bitmap, or a map base below 32: #GP(0).
    let (mut cpu, mut mem) = v86(CR4_VME, 3);
    let fl = full(&cpu);
    cpu.tr.limit = 0x67;
    assert_eq!(int_n(&mut cpu, &mut mem, 0x21, 2, fl), Err(GP0.into()));
    cpu.tr.limit = 0x2100;
    mem.write_phys(crate::segment::tests::TSS + 0x66, 2, 0x10);
    assert_eq!(int_n(&mut cpu, &mut mem, 0x21, 2, fl), Err(GP0.into()));
    // Outside virtual-8086 mode: the IDT.
    let (mut cpu, mut mem) = machine();
    cpu.cr4 = CR4_VME;
    assert_eq!(
        int_n(&mut cpu, &mut mem, 0x21, 2, 0x2),
        Ok(SoftwareInterrupt::Idt)
    );
}

#[test]
fn redirected_frames_stay_within_the_64k_stack_segment() {
    let ss_fault = Fault::with_code(Exception::StackFault, 0);
    // INT n with SP = 3: the second word would sit at offset FFFFH, across the limit.
    // #SS(0) before anything is written, no register changed.
    let (mut cpu, mut mem) = v86(CR4_VME, 0);
    mem.write_phys(0x21 * 4, 4, 0x0123_0456);
    cpu.gpr[4] = 0x0001_0003;
    let before = (cpu.rip, cpu.gpr[4], cpu.seg);
    let fl = full(&cpu);
    assert_eq!(int_n(&mut cpu, &mut mem, 0x21, 2, fl), Err(ss_fault.into()));
    assert_eq!((cpu.rip, cpu.gpr[4], cpu.seg), before);
    assert_eq!(mem.read_phys(0x7000 + 1, 2), 0, "nothing written");
    // SP = 2: the words go to offsets 0, FFFEH and FFFCH (SP wraps within the segment).
    cpu.gpr[4] = 0x0001_0002;
    int_n(&mut cpu, &mut mem, 0x21, 2, fl).unwrap();
    assert_eq!(cpu.gpr[4], 0x0001_fffc);
    assert_eq!(mem.read_phys(0x7000 + 0xfffc, 2), 0x1236);
    assert_eq!(mem.read_phys(0x7000, 2), virtual_image(fl));
    // IRET with SP = FFFFH: the first word crosses the limit.
    let (mut cpu, mut mem) = v86(CR4_VME, 0);
    cpu.gpr[4] = 0xffff;
    let fl = full(&cpu);
    assert_eq!(iret16(&mut cpu, &mut mem, fl), Err(ss_fault.into()));
    assert_eq!(cpu.gpr[4], 0xffff);
    // SP = FFFEH: IP from FFFEH, CS and FLAGS from offsets 0 and 2 after the wrap.
    cpu.gpr[4] = 0xfffe;
    for (o, v) in [(0xfffe, 0x4321u64), (0, 0x0900), (2, 0x2)] {
        mem.write_phys(0x7000 + o, 2, v);
    }
    iret16(&mut cpu, &mut mem, fl).unwrap();
    assert_eq!((cpu.rip, cpu.gpr[4]), (0x4321, 0x0004));
}
