//! Tests for segment loads and descriptor queries, plus table-building helpers the interrupt
//! tests share.

use super::*;
use crate::state::{DescriptorTable, SEG_G};

pub(crate) const GDT: u64 = 0x1000;
pub(crate) const LDT: u64 = 0x2000;
pub(crate) const IDT: u64 = 0x3000;
pub(crate) const TSS: u64 = 0x4000;

/// A code/data/system descriptor: `access` = P|DPL|S|type byte, `flags` = G|DB|L|AVL nibble,
/// `limit` the raw 20-bit limit.
pub(crate) use super::encode_descriptor as desc;

/// Flat 4 GiB 32-bit code, readable, with the given DPL.
pub(crate) fn code32(dpl: u8) -> u64 {
    desc(0, 0xfffff, 0x9a | (dpl << 5), 0xc)
}

/// Flat 4 GiB 32-bit writable data with the given DPL.
pub(crate) fn data32(dpl: u8) -> u64 {
    desc(0, 0xfffff, 0x92 | (dpl << 5), 0xc)
}

/// 64-bit code with the given DPL.
pub(crate) fn code64(dpl: u8) -> u64 {
    desc(0, 0xfffff, 0x9a | (dpl << 5), 0xa)
}

/// Where [`paging32`] keeps its page directory and page table: the last two pages of the
/// tests' 128 KiB of RAM.
const PD32: u64 = 0x1e000;
const PT32: u64 = 0x1f000;

/// Turns on 32-bit paging over the tests' 128 KiB of RAM, linear = physical, every page
/// present, writable and user-accessible; tests take rights away with [`page_rights`].
pub(crate) fn paging32(cpu: &mut CpuState, mem: &mut PhysMem) {
    mem.write_phys(PD32, 4, PT32 | 7);
    for page in 0..32u64 {
        mem.write_phys(PT32 + 4 * page, 4, (page << 12) | 7);
    }
    cpu.cr3 = PD32;
    cpu.cr0 |= crate::state::CR0_PG;
    cpu.flush_tlb();
}

/// Gives the page holding `linear` the PTE flags `flags` (P = 1, R/W = 2, U/S = 4) under
/// [`paging32`].
pub(crate) fn page_rights(cpu: &mut CpuState, mem: &mut PhysMem, linear: u64, flags: u64) {
    let page = linear >> 12;
    mem.write_phys(PT32 + 4 * page, 4, (page << 12) | flags);
    cpu.flush_tlb();
}

pub(crate) fn write_table(mem: &mut PhysMem, base: u64, entries: &[u64]) {
    for (i, e) in entries.iter().enumerate() {
        mem.write_phys(base + 8 * i as u64, 8, *e);
    }
}

/// A protected-mode (or long-mode) CPU with a GDT of `entries` at [`GDT`], CS = `cs`
/// (whose RPL is the CPL) and SS = `ss`, caches loaded from the table.
pub(crate) fn setup(mode: CpuMode, entries: &[u64], cs: u16, ss: u16) -> (CpuState, PhysMem) {
    let mut mem = PhysMem::new(0x20000).unwrap();
    write_table(&mut mem, GDT, entries);
    let mut cpu = CpuState::new(mode);
    if mode == CpuMode::Long64 {
        // Long mode always pages: map linear = physical from the last two pages of RAM.
        cpu.cr3 = crate::paging::identity_map(&mut mem, 0x1e000);
    }
    cpu.gdtr = DescriptorTable {
        base: GDT,
        limit: (entries.len() * 8 - 1) as u16,
    };
    for (sreg, sel) in [(SegReg::Cs, cs), (SegReg::Ss, ss)] {
        if sel & 0xfffc != 0 {
            let d = Descriptor::from_raw(entries[usize::from(sel >> 3)], 0, 0);
            cpu.seg[sreg as usize] = d.to_segment(sel);
        }
    }
    update_mode(&mut cpu);
    (cpu, mem)
}

fn gdt() -> Vec<u64> {
    vec![
        0,                                                // 0x00 null
        code32(0),                                        // 0x08
        data32(0),                                        // 0x10
        code32(3),                                        // 0x18
        data32(3),                                        // 0x20
        desc(0x1234_5678, 0xabcde, 0x92 | (2 << 5), 0x4), // 0x28 byte-granular data DPL 2
        desc(0, 0xffff, 0x98, 0x4),                       // 0x30 execute-only code
        desc(0, 0xffff, 0x9e, 0x4),                       // 0x38 conforming readable code DPL 0
        desc(0, 0xffff, 0x90, 0x4),                       // 0x40 read-only data DPL 0
        desc(0, 0xffff, 0x12, 0x4),                       // 0x48 not-present data DPL 0
        desc(LDT as u32, 0x17, 0x82, 0),                  // 0x50 LDT
        desc(TSS as u32, 0x67, 0x89, 0),                  // 0x58 available 32-bit TSS
        desc(0, 0xffff, 0x02, 0),                         // 0x60 not-present LDT
        desc(0, 0xffff, 0x9b, 0x4),                       // 0x68 code accessed already
        desc(0, 0xffff, 0x8c, 0),                         // 0x70 call gate (system)
        desc(0, 0xffff, 0x1a, 0x4),                       // 0x78 not-present readable code
    ]
}

fn prot(cpl: u8) -> (CpuState, PhysMem) {
    let cs = if cpl == 0 {
        0x08
    } else {
        0x18 | u16::from(cpl)
    };
    let ss = if cpl == 0 {
        0x10
    } else {
        0x20 | u16::from(cpl)
    };
    let (mut cpu, mem) = setup(CpuMode::Prot32, &gdt(), cs, ss);
    // For CPL 1/2 tests, pretend CS has that RPL (CPL = CS.RPL).
    cpu.seg[SegReg::Cs as usize].selector = cs;
    (cpu, mem)
}

fn gpf(sel: u16) -> Fault {
    Fault::with_code(Exception::GeneralProtection, u32::from(sel))
}

#[test]
fn descriptor_fields_decode() {
    let d = Descriptor::from_raw(desc(0x1234_5678, 0xabcde, 0xf2, 0xd), 0, 0);
    assert_eq!(d.base(), 0x1234_5678);
    assert_eq!(d.limit(), 0xabcd_efff);
    assert_eq!((d.typ(), d.s(), d.dpl(), d.present()), (2, true, 3, true));
    assert!(d.g() && d.db() && !d.l() && d.avl());
    assert_eq!(d.attrs(), 0xd0f2);
    let d = Descriptor::from_raw(desc(0, 0xabcde, 0x92, 0), 0, 0);
    assert_eq!(d.limit(), 0xabcde);
    // A 64-bit interrupt gate: offset 0x1122334455667788, selector 0x08, IST 3, DPL 3.
    let lo = 0x7788u64 | (0x08 << 16) | (3 << 32) | (0xeeu64 << 40) | (0x5566u64 << 48);
    let d = Descriptor::from_raw(lo, 0x1122_3344, 0);
    assert_eq!(d.gate_offset(), 0x1122_3344_5566_7788);
    assert_eq!(
        (d.gate_selector(), d.gate_ist(), d.dpl(), d.typ()),
        (8, 3, 3, 0xe)
    );
}

#[test]
fn read_descriptor_checks_the_limit_and_ti() {
    let (mut cpu, mut mem) = prot(0);
    assert_eq!(
        read_descriptor(&mut cpu, &mut mem, 0x7b).unwrap().lo,
        gdt()[15] as u32
    );
    assert_eq!(read_descriptor(&mut cpu, &mut mem, 0x80), Err(gpf(0x80)));
    assert_eq!(read_descriptor(&mut cpu, &mut mem, 0x83), Err(gpf(0x80)));
    // LDT selector with a null LDTR.
    cpu.ldtr = Segment::default();
    assert_eq!(read_descriptor(&mut cpu, &mut mem, 0x0c), Err(gpf(0x0c)));
    cpu.gdtr.limit = 0x7e; // the last entry only partly inside
    assert_eq!(read_descriptor(&mut cpu, &mut mem, 0x78), Err(gpf(0x78)));
}

#[test]
fn ldt_selectors_read_the_ldt() {
    let (mut cpu, mut mem) = prot(0);
    write_table(&mut mem, LDT, &[0, data32(0), data32(3)]);
    load_ldtr(&mut cpu, &mut mem, 0x50).unwrap();
    assert_eq!(
        (cpu.ldtr.base, cpu.ldtr.limit, cpu.ldtr.selector),
        (LDT, 0x17, 0x50)
    );
    load_segment(&mut cpu, &mut mem, SegReg::Ds, 0x0c).unwrap();
    assert_eq!(cpu.seg(SegReg::Ds).attrs, 0xc093);
    assert_eq!(mem.read_phys(LDT + 13, 1), 0x93);
    assert_eq!(
        load_segment(&mut cpu, &mut mem, SegReg::Ds, 0x1c),
        Err(gpf(0x1c))
    );
}

#[test]
fn real_and_v86_loads_compute_the_base() {
    let mut cpu = CpuState::new(CpuMode::Real16);
    let mut mem = PhysMem::new(0x1000).unwrap();
    cpu.seg[SegReg::Ds as usize].limit = 0xffff_ffff; // unreal mode survives
    load_segment(&mut cpu, &mut mem, SegReg::Ds, 0x1234).unwrap();
    let ds = *cpu.seg(SegReg::Ds);
    assert_eq!(
        (ds.base, ds.limit, ds.selector),
        (0x12340, 0xffff_ffff, 0x1234)
    );
    load_segment(&mut cpu, &mut mem, SegReg::Cs, 0xf000).unwrap();
    assert_eq!(cpu.seg(SegReg::Cs).base, 0xf0000);
    let (mut cpu, mut mem) = prot(0);
    cpu.rflags |= flags::VM;
    load_segment(&mut cpu, &mut mem, SegReg::Ss, 0xffff).unwrap();
    let ss = *cpu.seg(SegReg::Ss);
    assert_eq!((ss.base, ss.limit, ss.attrs), (0xffff0, 0xffff, 0xf3));
    assert_eq!(cpl(&cpu), 3);
}

#[test]
fn data_segment_loads_follow_the_privilege_rules() {
    let (mut cpu, mut mem) = prot(0);
    load_segment(&mut cpu, &mut mem, SegReg::Es, 0x2a).unwrap();
    let es = *cpu.seg(SegReg::Es);
    assert_eq!(
        (es.base, es.limit, es.selector, es.attrs),
        (0x1234_5678, 0xabcde, 0x2a, 0x40d3)
    );
    assert_eq!(
        mem.read_phys(GDT + 0x28 + 5, 1),
        0xd3,
        "accessed bit set in memory"
    );
    // RPL 3 > DPL 2.
    assert_eq!(
        load_segment(&mut cpu, &mut mem, SegReg::Es, 0x2b),
        Err(gpf(0x28))
    );
    // Execute-only code, system descriptor.
    assert_eq!(
        load_segment(&mut cpu, &mut mem, SegReg::Ds, 0x30),
        Err(gpf(0x30))
    );
    assert_eq!(
        load_segment(&mut cpu, &mut mem, SegReg::Ds, 0x70),
        Err(gpf(0x70))
    );
    assert_eq!(
        load_segment(&mut cpu, &mut mem, SegReg::Ds, 0x50),
        Err(gpf(0x50))
    );
    // Not present.
    let np = Fault::with_code(Exception::SegmentNotPresent, 0x48);
    assert_eq!(load_segment(&mut cpu, &mut mem, SegReg::Fs, 0x48), Err(np));
    let np = Fault::with_code(Exception::SegmentNotPresent, 0x78);
    assert_eq!(load_segment(&mut cpu, &mut mem, SegReg::Fs, 0x78), Err(np));
    // Readable code is fine; read-only data too.
    load_segment(&mut cpu, &mut mem, SegReg::Gs, 0x08).unwrap();
    load_segment(&mut cpu, &mut mem, SegReg::Gs, 0x40).unwrap();
    // Beyond the GDT.
    assert_eq!(
        load_segment(&mut cpu, &mut mem, SegReg::Gs, 0x1003),
        Err(gpf(0x1000))
    );
    // CPL 3: DPL 0 data refused, conforming DPL 0 code allowed.
    let (mut cpu, mut mem) = prot(3);
    assert_eq!(
        load_segment(&mut cpu, &mut mem, SegReg::Ds, 0x13),
        Err(gpf(0x10))
    );
    assert_eq!(
        load_segment(&mut cpu, &mut mem, SegReg::Ds, 0x0b),
        Err(gpf(0x08))
    );
    load_segment(&mut cpu, &mut mem, SegReg::Ds, 0x3b).unwrap();
    load_segment(&mut cpu, &mut mem, SegReg::Ds, 0x23).unwrap();
    // CPL 2 with RPL 2 may load DPL 2; CPL 3 may not.
    let (mut cpu, mut mem) = prot(2);
    load_segment(&mut cpu, &mut mem, SegReg::Ds, 0x2a).unwrap();
    assert_eq!(
        load_segment(&mut cpu, &mut mem, SegReg::Ds, 0x10),
        Err(gpf(0x10))
    );
}

#[test]
fn null_selectors() {
    let (mut cpu, mut mem) = prot(0);
    load_segment(&mut cpu, &mut mem, SegReg::Ds, 0x3).unwrap();
    assert_eq!(
        *cpu.seg(SegReg::Ds),
        Segment {
            base: 0,
            limit: 0,
            selector: 3,
            attrs: 0
        }
    );
    assert_eq!(load_segment(&mut cpu, &mut mem, SegReg::Ss, 0), Err(gpf(0)));
    assert_eq!(
        load_segment(&mut cpu, &mut mem, SegReg::Cs, 0x08),
        Err(Fault::new(Exception::InvalidOpcode))
    );
    // 64-bit mode: null SS allowed at CPL < 3 with RPL = CPL.
    let (mut cpu, mut mem) = setup(
        CpuMode::Long64,
        &[0, code64(0), data32(0), code64(3), data32(3)],
        0x08,
        0x10,
    );
    assert_eq!(cpu.mode, CpuMode::Long64);
    load_segment(&mut cpu, &mut mem, SegReg::Ss, 0).unwrap();
    assert_eq!(cpu.seg(SegReg::Ss).selector, 0);
    assert_eq!(load_segment(&mut cpu, &mut mem, SegReg::Ss, 1), Err(gpf(0)));
    cpu.seg[SegReg::Cs as usize].selector = 0x1b;
    assert_eq!(load_segment(&mut cpu, &mut mem, SegReg::Ss, 3), Err(gpf(0)));
    // Compatibility mode: refused.
    cpu.seg[SegReg::Cs as usize] = Descriptor::from_raw(code32(0), 0, 0).to_segment(0x08);
    assert_eq!(load_segment(&mut cpu, &mut mem, SegReg::Ss, 0), Err(gpf(0)));
}

#[test]
fn stack_segment_rules() {
    let (mut cpu, mut mem) = prot(0);
    load_segment(&mut cpu, &mut mem, SegReg::Ss, 0x10).unwrap();
    assert_eq!(mem.read_phys(GDT + 0x10 + 5, 1), 0x93);
    assert_eq!(
        load_segment(&mut cpu, &mut mem, SegReg::Ss, 0x11),
        Err(gpf(0x10)),
        "RPL"
    );
    assert_eq!(
        load_segment(&mut cpu, &mut mem, SegReg::Ss, 0x20),
        Err(gpf(0x20)),
        "DPL"
    );
    assert_eq!(
        load_segment(&mut cpu, &mut mem, SegReg::Ss, 0x40),
        Err(gpf(0x40)),
        "RO"
    );
    assert_eq!(
        load_segment(&mut cpu, &mut mem, SegReg::Ss, 0x08),
        Err(gpf(0x08)),
        "code"
    );
    let ss = Fault::with_code(Exception::StackFault, 0x48);
    assert_eq!(load_segment(&mut cpu, &mut mem, SegReg::Ss, 0x48), Err(ss));
    let (mut cpu, mut mem) = prot(3);
    load_segment(&mut cpu, &mut mem, SegReg::Ss, 0x23).unwrap();
    assert_eq!(
        load_segment(&mut cpu, &mut mem, SegReg::Ss, 0x10),
        Err(gpf(0x10))
    );
}

#[test]
fn ldtr_and_tr_loads() {
    let (mut cpu, mut mem) = prot(0);
    load_tr(&mut cpu, &mut mem, 0x58).unwrap();
    assert_eq!((cpu.tr.base, cpu.tr.limit, cpu.tr.attrs), (TSS, 0x67, 0x8b));
    assert_eq!(mem.read_phys(GDT + 0x58 + 5, 1), 0x8b, "busy in memory");
    assert_eq!(
        load_tr(&mut cpu, &mut mem, 0x58),
        Err(gpf(0x58)),
        "already busy"
    );
    assert_eq!(load_tr(&mut cpu, &mut mem, 0), Err(gpf(0)));
    assert_eq!(load_tr(&mut cpu, &mut mem, 0x5c), Err(gpf(0x5c)), "TI");
    assert_eq!(load_tr(&mut cpu, &mut mem, 0x50), Err(gpf(0x50)), "LDT");
    assert_eq!(load_ldtr(&mut cpu, &mut mem, 0x58), Err(gpf(0x58)), "TSS");
    assert_eq!(load_ldtr(&mut cpu, &mut mem, 0x10), Err(gpf(0x10)), "data");
    let np = Fault::with_code(Exception::SegmentNotPresent, 0x60);
    assert_eq!(load_ldtr(&mut cpu, &mut mem, 0x60), Err(np));
    load_ldtr(&mut cpu, &mut mem, 0).unwrap();
    assert_eq!(cpu.ldtr.attrs, 0);
    let (mut cpu, mut mem) = prot(3);
    assert_eq!(load_ldtr(&mut cpu, &mut mem, 0x50), Err(gpf(0)));
    assert_eq!(load_tr(&mut cpu, &mut mem, 0x58), Err(gpf(0)));
    let mut cpu = CpuState::new(CpuMode::Real16);
    let ud = Err(Fault::new(Exception::InvalidOpcode));
    assert_eq!(load_tr(&mut cpu, &mut mem, 0x58), ud);
    assert_eq!(
        lar(&mut cpu, &mut mem, 0x58),
        Err(Fault::new(Exception::InvalidOpcode))
    );
}

#[test]
fn long_mode_system_descriptors_are_16_bytes() {
    let tss_lo = desc(0x5000, 0x67, 0x89, 0);
    let ldt_lo = desc(0x6000, 0xff, 0x82, 0);
    let entries = [
        0,
        code64(0),
        data32(0),
        tss_lo,
        0xffff_8765,
        ldt_lo,
        0x2bcd,
        desc(0, 0x67, 0x81, 0),
    ];
    let (mut cpu, mut mem) = setup(CpuMode::Long64, &entries, 0x08, 0x10);
    load_tr(&mut cpu, &mut mem, 0x18).unwrap();
    assert_eq!(cpu.tr.base, 0xffff_8765_0000_5000);
    load_ldtr(&mut cpu, &mut mem, 0x28).unwrap();
    assert_eq!(cpu.ldtr.base, 0x2bcd_0000_6000);
    // A 16-bit TSS is not valid in long mode; a 16-byte descriptor straddling the limit
    // is refused.
    assert_eq!(load_tr(&mut cpu, &mut mem, 0x38), Err(gpf(0x38)));
    cpu.gdtr.limit = 0x2f;
    assert_eq!(load_ldtr(&mut cpu, &mut mem, 0x28), Err(gpf(0x28)));
    // Non-zero upper type field.
    cpu.gdtr.limit = 0x3f;
    mem.write_phys(GDT + 0x30, 8, 0x1f << 40);
    assert_eq!(load_ldtr(&mut cpu, &mut mem, 0x28), Err(gpf(0x28)));
    // LAR/LSL accept the LDT and busy TSS, refuse the 16-bit TSS in long mode.
    assert_eq!(lar(&mut cpu, &mut mem, 0x18).unwrap(), Some(0x8b00));
    assert_eq!(lsl(&mut cpu, &mut mem, 0x18).unwrap(), Some(0x67));
    assert_eq!(lar(&mut cpu, &mut mem, 0x38).unwrap(), None);
}

/// In long mode the 64-bit base of an LDT or TSS descriptor must be canonical: LLDT and LTR
/// raise #GP(sel) and load nothing, and LTR leaves the descriptor available
/// (kvm-unit-tests' `la57` checks the two faults).
#[test]
fn long_mode_system_descriptors_need_a_canonical_base() {
    let entries = [
        0,
        code64(0),
        data32(0),
        desc(0x5000, 0x67, 0x89, 0),
        0x1234_5678,
        desc(0x6000, 0xff, 0x82, 0),
        0x0001_0000,
    ];
    let (mut cpu, mut mem) = setup(CpuMode::Long64, &entries, 0x08, 0x10);
    let (tr, ldtr) = (cpu.tr, cpu.ldtr);
    assert_eq!(load_tr(&mut cpu, &mut mem, 0x18), Err(gpf(0x18)));
    assert_eq!(load_ldtr(&mut cpu, &mut mem, 0x28), Err(gpf(0x28)));
    assert_eq!((cpu.tr, cpu.ldtr), (tr, ldtr), "nothing loaded");
    assert_eq!(
        mem.read_phys(GDT + 0x18 + 5, 1) & 0xf,
        0x9,
        "the TSS stays available"
    );
    // The same bases are fine where they are 32 bits: the upper words are not read.
    let mut entries = entries;
    entries[1] = code32(0);
    let (mut cpu, mut mem) = setup(CpuMode::Prot32, &entries, 0x08, 0x10);
    load_tr(&mut cpu, &mut mem, 0x18).unwrap();
    load_ldtr(&mut cpu, &mut mem, 0x28).unwrap();
    assert_eq!((cpu.tr.base, cpu.ldtr.base), (0x5000, 0x6000));
}

#[test]
fn lar_lsl_verr_verw() {
    let (mut cpu, mut mem) = prot(0);
    assert_eq!(lar(&mut cpu, &mut mem, 0x08).unwrap(), Some(0x00c0_9a00));
    assert_eq!(lsl(&mut cpu, &mut mem, 0x08).unwrap(), Some(0xffff_ffff));
    assert_eq!(lsl(&mut cpu, &mut mem, 0x28).unwrap(), Some(0xabcde));
    assert_eq!(lar(&mut cpu, &mut mem, 0x50).unwrap(), Some(0x8200));
    assert_eq!(
        lar(&mut cpu, &mut mem, 0x70).unwrap(),
        Some(0x8c00),
        "call gate: LAR yes"
    );
    assert_eq!(
        lsl(&mut cpu, &mut mem, 0x70).unwrap(),
        None,
        "call gate: LSL no"
    );
    assert_eq!(lar(&mut cpu, &mut mem, 0).unwrap(), None);
    assert_eq!(
        lar(&mut cpu, &mut mem, 0x400).unwrap(),
        None,
        "beyond limit: no fault"
    );
    assert_eq!(
        lar(&mut cpu, &mut mem, 0x2b).unwrap(),
        None,
        "RPL 3 > DPL 2"
    );
    assert!(verr(&mut cpu, &mut mem, 0x08).unwrap());
    assert!(!verr(&mut cpu, &mut mem, 0x30).unwrap(), "execute-only");
    assert!(!verw(&mut cpu, &mut mem, 0x08).unwrap());
    assert!(!verw(&mut cpu, &mut mem, 0x40).unwrap(), "read-only");
    assert!(verw(&mut cpu, &mut mem, 0x10).unwrap());
    assert!(!verr(&mut cpu, &mut mem, 0x50).unwrap(), "system");
    assert!(!verw(&mut cpu, &mut mem, 0).unwrap());
    let (mut cpu, mut mem) = prot(3);
    assert_eq!(lar(&mut cpu, &mut mem, 0x10).unwrap(), None);
    assert_eq!(
        lar(&mut cpu, &mut mem, 0x3b).unwrap(),
        Some(0x0040_9e00),
        "conforming"
    );
    assert!(verr(&mut cpu, &mut mem, 0x3b).unwrap());
    assert!(!verw(&mut cpu, &mut mem, 0x13).unwrap());
    assert!(verw(&mut cpu, &mut mem, 0x23).unwrap());
    assert!(!verr(&mut cpu, &mut mem, 0x10).unwrap());
}

#[test]
fn cpl_and_mode() {
    let (mut cpu, _) = prot(0);
    assert_eq!((cpl(&cpu), cpu.mode), (0, CpuMode::Prot32));
    cpu.seg[SegReg::Cs as usize].attrs &= !SEG_DB;
    update_mode(&mut cpu);
    assert_eq!(cpu.mode, CpuMode::Prot16);
    cpu.cr0 &= !CR0_PE;
    update_mode(&mut cpu);
    assert_eq!((cpl(&cpu), cpu.mode), (0, CpuMode::Real16));
    let _ = SEG_G;
}

/// A small deterministic generator for the hammers.
pub(crate) struct Rng(pub u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn random_tables_never_panic() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for round in 0..300 {
        let entries: Vec<u64> = (0..32).map(|_| rng.next()).collect();
        let mode = [CpuMode::Prot32, CpuMode::Long64, CpuMode::Prot16][round % 3];
        let (mut cpu, mut mem) = setup(mode, &[0, code32(0)], 0x08, 0);
        write_table(&mut mem, GDT, &entries);
        write_table(&mut mem, LDT, &entries);
        cpu.gdtr.limit = rng.next() as u16;
        cpu.ldtr = Segment {
            base: LDT,
            limit: rng.next() as u32 & 0x1ff,
            selector: 0x50,
            attrs: 0x82,
        };
        cpu.seg[SegReg::Cs as usize].selector = rng.next() as u16 & 3 | 0x08;
        for _ in 0..40 {
            let sel = rng.next() as u16;
            let sreg =
                [SegReg::Es, SegReg::Ss, SegReg::Ds, SegReg::Fs, SegReg::Gs][sel as usize % 5];
            let _ = load_segment(&mut cpu, &mut mem, sreg, sel);
            let _ = load_ldtr(&mut cpu, &mut mem, sel);
            let _ = load_tr(&mut cpu, &mut mem, sel);
            let _ = lar(&mut cpu, &mut mem, sel);
            let _ = lsl(&mut cpu, &mut mem, sel);
            let _ = verr(&mut cpu, &mut mem, sel);
            let _ = verw(&mut cpu, &mut mem, sel);
        }
    }
}

#[test]
fn encode_descriptor_is_what_from_raw_decodes() {
    let d = Descriptor::from_raw(encode_descriptor(0x1234_5678, 0xa_bcde, 0x9a, 0xc), 0, 0);
    assert_eq!(
        (d.base(), d.typ(), d.dpl(), d.present()),
        (0x1234_5678, 0xa, 0, true)
    );
    assert!(d.g() && d.db() && !d.l());
    assert_eq!(d.limit(), 0xabcd_efff);
}
