//! Tests of the PCID rules and of INVPCID on the software TLB.

use super::*;
use crate::memory::tests::{global_and_local_tables, GLOBAL, LOCAL};
use crate::memory::{read_data, write_data};
use crate::paging::pte::{A, D, P, RW};
use crate::paging::CR4_PGE;
use crate::{CpuMode, PhysMem};

fn long_mode_cpu() -> CpuState {
    let mut cpu = CpuState::new(CpuMode::Long64);
    cpu.cr3 = 0x1000;
    cpu
}

#[test]
fn pcide_is_set_only_in_ia32e_mode_with_pcid_zero() {
    let mut cpu = long_mode_cpu();
    let with = cpu.cr4 | CR4_PCIDE;
    assert!(cr4_allows(&cpu, with));
    cpu.cr3 |= 1;
    assert!(!cr4_allows(&cpu, with), "CR3[11:0] = 1");
    // Already set: CR3[11:0] is the PCID and other CR4 bits may change.
    cpu.cr4 |= CR4_PCIDE;
    assert!(cr4_allows(&cpu, with | CR4_PGE));
    let mut cpu = CpuState::new(CpuMode::Prot32);
    assert!(!cr4_allows(&cpu, cpu.cr4 | CR4_PCIDE), "EFER.LMA = 0");
    cpu.cr4 |= CR4_PGE;
    assert!(cr4_allows(&cpu, cpu.cr4), "PCIDE not asked for");
}

#[test]
fn paging_stays_on_while_pcide_is_set() {
    let mut cpu = long_mode_cpu();
    assert!(cr0_allows(&cpu, cpu.cr0 & !CR0_PG));
    cpu.cr4 |= CR4_PCIDE;
    assert!(!cr0_allows(&cpu, cpu.cr0 & !CR0_PG));
    assert!(cr0_allows(&cpu, cpu.cr0));
}

#[test]
fn cr3_bit_63_is_the_no_flush_request_only_with_pcide() {
    let mut cpu = long_mode_cpu();
    let v = CR3_NOFLUSH | 0x5000;
    assert_eq!(cr3_value(&cpu, v), (v, false));
    cpu.cr4 |= CR4_PCIDE;
    assert_eq!(cr3_value(&cpu, v | 7), (0x5007, true));
    assert_eq!(cr3_value(&cpu, 0x5007), (0x5007, false));
}

#[test]
fn invpcid_checks_its_type_and_descriptor() {
    use Invpcid::*;
    let lin = 0xffff_8000_0000_1000;
    assert_eq!(
        Invpcid::decode(0, [0, lin], false),
        Some(Address {
            pcid: 0,
            linear: lin
        })
    );
    assert_eq!(Invpcid::decode(1, [0, 0], false), Some(Context { pcid: 0 }));
    assert_eq!(Invpcid::decode(2, [0, 0], false), Some(AllWithGlobals));
    assert_eq!(Invpcid::decode(3, [0, 0], false), Some(All));
    // A type above 3, even one that is 4 in its low bits.
    assert_eq!(Invpcid::decode(4, [0, 0], true), None);
    assert_eq!(Invpcid::decode(1 << 32, [0, 0], true), None);
    // Descriptor bits 63:12.
    assert_eq!(Invpcid::decode(2, [1 << 12, 0], true), None);
    assert_eq!(Invpcid::decode(3, [1 << 63, 0], true), None);
    // A PCID other than 0 for types 0 and 1 needs CR4.PCIDE; types 2 and 3 ignore it.
    assert_eq!(Invpcid::decode(0, [5, 0], false), None);
    assert_eq!(Invpcid::decode(1, [5, 0], false), None);
    assert_eq!(Invpcid::decode(1, [5, 0], true), Some(Context { pcid: 5 }));
    assert_eq!(Invpcid::decode(2, [5, 0], false), Some(AllWithGlobals));
    assert_eq!(Invpcid::decode(3, [0xfff, 0], false), Some(All));
    // The address matters for type 0 only, and all 64 bits of it.
    assert_eq!(Invpcid::decode(0, [0, 1 << 47], true), None);
    assert!(Invpcid::decode(0, [0, 0x1_0000_0000], true).is_some());
    assert_eq!(
        Invpcid::decode(1, [0, 1 << 47], true),
        Some(Context { pcid: 0 })
    );
}

/// A 4-level mapping of 0x100000 (global) and 0x101000 (not) with both pages read once, so
/// both are cached.
fn cached_global_and_local() -> (CpuState, PhysMem) {
    let mut mem = global_and_local_tables();
    let mut cpu = long_mode_cpu();
    cpu.cr4 |= CR4_PGE | CR4_PCIDE;
    write_data(&mut cpu, &mut mem, GLOBAL, 4, 1).unwrap();
    write_data(&mut cpu, &mut mem, LOCAL, 4, 2).unwrap();
    (cpu, mem)
}

/// Which of the two pages are still in the TLB: reading each and counting translations (a
/// walk, or a lookup in the shadow page tables, which keep what CR3 writes drop).
fn cached(cpu: &mut CpuState, mem: &mut PhysMem) -> (bool, bool) {
    let mut hit = |a| {
        let translations = |c: &CpuState| c.paging.walks + c.shadow.stats.hits;
        let before = translations(cpu);
        read_data(cpu, mem, a, 4).unwrap();
        translations(cpu) == before
    };
    (hit(GLOBAL), hit(LOCAL))
}

#[test]
fn invpcid_types_drop_what_they_must() {
    for (inv, global_kept) in [
        (Invpcid::Context { pcid: 3 }, true),
        (Invpcid::All, true),
        (Invpcid::AllWithGlobals, false),
    ] {
        let (mut cpu, mut mem) = cached_global_and_local();
        inv.execute(&mut cpu);
        assert_eq!(cached(&mut cpu, &mut mem), (global_kept, false), "{inv:?}");
    }
    // One address: that page goes, the other stays.
    let (mut cpu, mut mem) = cached_global_and_local();
    Invpcid::Address {
        pcid: 0,
        linear: LOCAL,
    }
    .execute(&mut cpu);
    assert_eq!(cached(&mut cpu, &mut mem), (true, false));
    // The new mapping of the page is seen once it is invalidated.
    mem.write_phys(0x4000 + 0x101 * 8, 8, 0x30_0000 | P | RW | A | D);
    mem.write_phys(0x30_0008, 4, 0x77);
    assert_eq!(read_data(&mut cpu, &mut mem, LOCAL, 4).unwrap(), 2, "stale");
    Invpcid::Address {
        pcid: 0,
        linear: LOCAL,
    }
    .execute(&mut cpu);
    assert_eq!(read_data(&mut cpu, &mut mem, LOCAL, 4).unwrap(), 0x77);
}
