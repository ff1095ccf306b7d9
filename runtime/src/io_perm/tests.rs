//! Tests for the I/O permission bitmap.

use super::*;
use crate::flags::VM;
use crate::segment::tests::{code32, data32, desc, setup, TSS};
use crate::segment::Descriptor;
use crate::state::{CpuMode, SegReg};

/// Where the bitmap starts inside the TSS.
const MAP: u32 = 0x88;

/// Ring 3 of protected mode with IOPL 0 and a busy 32-bit TSS whose bitmap covers ports
/// 0..0x100 (0x20 bytes, then the 0xff terminator) and allows 0x80..0x83 and 0x87 only.
fn machine() -> (CpuState, PhysMem) {
    let limit = MAP + 0x20; // the terminator byte is the last in the segment
    let tss = desc(TSS as u32, limit, 0x8b, 0);
    let entries = [0, code32(0), data32(0), code32(3), data32(3), tss];
    let (mut cpu, mut mem) = setup(CpuMode::Prot32, &entries, 0x1b, 0x23);
    cpu.tr = Descriptor::from_raw(tss, 0, 0).to_segment(0x28);
    mem.write_phys(TSS + 0x66, 2, u64::from(MAP));
    for i in 0..=0x20 {
        mem.write_phys(TSS + u64::from(MAP) + i, 1, 0xff);
    }
    mem.write_phys(TSS + u64::from(MAP) + 0x10, 1, !0x8f & 0xff);
    (cpu, mem)
}

fn allowed(cpu: &mut CpuState, mem: &mut PhysMem, port: u16, size: u32) -> bool {
    match check(cpu, mem, port, size) {
        Ok(()) => true,
        Err(f) => {
            assert_eq!(f, Fault::with_code(Exception::GeneralProtection, 0));
            false
        }
    }
}

#[test]
fn the_bitmap_decides_above_iopl() {
    let (mut cpu, mut mem) = machine();
    let cases = [
        (0x80, 1, true),
        (0x83, 1, true),
        (0x80, 4, true),
        (0x81, 4, false), // 0x84 denied
        (0x84, 1, false),
        (0x87, 1, true),
        (0x86, 2, false), // 0x86 denied, 0x87 allowed
        (0x87, 2, false), // 0x87 allowed, 0x88 denied: the straddling word access
        (0x7f, 2, false),
        (0x3f8, 1, false),
    ];
    for (port, size, want) in cases {
        assert_eq!(
            allowed(&mut cpu, &mut mem, port, size),
            want,
            "port {port:#x} size {size}"
        );
    }
    // The same bitmap applies in virtual-8086 mode whatever IOPL is.
    cpu.rflags |= VM | IOPL;
    assert!(allowed(&mut cpu, &mut mem, 0x80, 1));
    assert!(!allowed(&mut cpu, &mut mem, 0x84, 1));
    assert!(!allowed(&mut cpu, &mut mem, 0x87, 2));
}

#[test]
fn no_check_at_or_below_iopl_or_in_real_mode() {
    let (mut cpu, mut mem) = machine();
    cpu.rflags |= IOPL;
    assert!(allowed(&mut cpu, &mut mem, 0x84, 4));
    cpu.rflags &= !IOPL;
    cpu.seg[SegReg::Cs as usize].selector = 0x08;
    assert!(allowed(&mut cpu, &mut mem, 0x84, 4));
    let mut real = CpuState::new(CpuMode::Real16);
    assert!(allowed(&mut real, &mut mem, 0x84, 4));
}

#[test]
fn bits_beyond_the_limit_count_as_set() {
    let (mut cpu, mut mem) = machine();
    // Ports 0xf8..0xff: their byte is the last bitmap byte; the word read needs the
    // terminator after it, which is the segment's last byte. Clear both: allowed.
    mem.write_phys(TSS + u64::from(MAP) + 0x1f, 2, 0);
    assert!(allowed(&mut cpu, &mut mem, 0xf8, 1));
    // Ports from 0x100 on: the word reaches past the limit.
    assert!(!allowed(&mut cpu, &mut mem, 0x100, 1));
    // One byte less of segment: the word for 0xf8 no longer fits.
    cpu.tr.limit -= 1;
    assert!(!allowed(&mut cpu, &mut mem, 0xf8, 1));
    // A map base at or past the limit: no bitmap, everything faults.
    mem.write_phys(TSS + 0x66, 2, u64::from(cpu.tr.limit));
    assert!(!allowed(&mut cpu, &mut mem, 0, 1));
}

#[test]
fn only_a_32_bit_tss_has_a_bitmap() {
    let (mut cpu, mut mem) = machine();
    // A busy 16-bit TSS (type 3).
    cpu.tr.attrs = (cpu.tr.attrs & !0xf) | 0x3;
    assert!(!allowed(&mut cpu, &mut mem, 0x80, 1));
    // A 32-bit TSS shorter than 104 bytes.
    let (mut cpu, mut mem) = machine();
    cpu.tr.limit = 0x66;
    assert!(!allowed(&mut cpu, &mut mem, 0x80, 1));
    // No TSS loaded at all.
    let (mut cpu, mut mem) = machine();
    cpu.tr = Default::default();
    assert!(!allowed(&mut cpu, &mut mem, 0x80, 1));
}
