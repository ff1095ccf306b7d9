//! Tests of the shadow page tables through the memory slow paths that use them: what a CR3
//! switch keeps, what a store into a paging structure drops, and that every cached
//! translation is re-checked against the current rights.

use super::*;
use crate::memory::{
    read_as, read_data, tlb_flush_page, tlb_index, write_as, write_data, Privilege, TlbEntry,
};
use crate::paging::pte::{A, D, G, P, RW, US};
use crate::paging::{CR4_PGE, CR4_PSE};
use crate::state::{CpuState, CR0_PG, CR4_PAE, EFER_LMA};
use crate::{CpuMode, Exception};

/// The linear address both spaces of [`two_spaces`] map, each to its own physical page.
const LIN: u64 = 0x10_0008;
/// Physical pages: space A maps [`LIN`] to `PAGE_A`, space B to `PAGE_B`.
const PAGE_A: u64 = 0x20_0000;
const PAGE_B: u64 = 0x30_0000;
/// The roots (PML4 pages) of the two spaces, and A's page table (PT).
const ROOT_A: u64 = 0x1000;
const PT_A: u64 = 0x4000;
const ROOT_B: u64 = 0x5000;

/// A 4-level chain from `root` through the three pages after it, whose last level maps
/// linear page 0x100 (0x10_0000) to `page` with `leaf` flags.
fn chain(mem: &mut PhysMem, root: u64, page: u64, leaf: u64) {
    let upper = P | RW | US | A;
    mem.write_phys(root, 8, (root + 0x1000) | upper);
    mem.write_phys(root + 0x1000, 8, (root + 0x2000) | upper);
    mem.write_phys(root + 0x2000, 8, (root + 0x3000) | upper);
    mem.write_phys(root + 0x3000 + 0x100 * 8, 8, page | leaf);
}

/// Two 4-level address spaces mapping [`LIN`] differently, each page holding its name, and
/// a 64-bit supervisor CPU in space A.
fn two_spaces() -> (CpuState, PhysMem) {
    let mut mem = PhysMem::new(8 << 20).unwrap();
    chain(&mut mem, ROOT_A, PAGE_A, P | RW | US | A | D);
    chain(&mut mem, ROOT_B, PAGE_B, P | RW | US | A | D);
    mem.write_phys(PAGE_A + 8, 4, 0xaaaa);
    mem.write_phys(PAGE_B + 8, 4, 0xbbbb);
    let mut cpu = CpuState::new(CpuMode::Long64);
    cpu.cr3 = ROOT_A;
    (cpu, mem)
}

/// A MOV to CR3 as the guest does it: new root, non-global TLB entries gone.
fn switch(cpu: &mut CpuState, root: u64) {
    cpu.cr3 = root;
    cpu.flush_tlb_nonglobal();
}

fn read(cpu: &mut CpuState, mem: &mut PhysMem, linear: u64) -> u64 {
    read_data(cpu, mem, linear, 4).unwrap()
}

#[test]
fn a_space_keeps_its_translations_across_cr3_switches() {
    let (mut cpu, mut mem) = two_spaces();
    assert_eq!(read(&mut cpu, &mut mem, LIN), 0xaaaa);
    switch(&mut cpu, ROOT_B);
    assert_eq!(read(&mut cpu, &mut mem, LIN), 0xbbbb);
    assert_eq!(cpu.paging.walks, 2);
    switch(&mut cpu, ROOT_A);
    assert_eq!(read(&mut cpu, &mut mem, LIN), 0xaaaa);
    switch(&mut cpu, ROOT_B);
    assert_eq!(read(&mut cpu, &mut mem, LIN), 0xbbbb);
    assert_eq!(cpu.paging.walks, 2, "both spaces were kept");
    assert_eq!(cpu.shadow.stats.hits, 2);
    assert_eq!(cpu.shadow.stats.space_reuses, 2);
    assert_eq!(cpu.shadow.spaces(), 2);
    assert_eq!(cpu.shadow.len(), 2);
}

#[test]
fn a_store_into_a_tracked_table_drops_what_was_computed_from_it() {
    let (mut cpu, mut mem) = two_spaces();
    read(&mut cpu, &mut mem, LIN);
    assert!(mem.is_table_page(PT_A) && mem.is_table_page(ROOT_A));
    switch(&mut cpu, ROOT_B);
    read(&mut cpu, &mut mem, LIN);
    // Space A's PTE now maps B's page: A must see it when it runs again.
    mem.write_phys(PT_A + 0x100 * 8, 8, PAGE_B | P | RW | US | A | D);
    assert!(
        !mem.is_table_page(PT_A),
        "a written page is no longer tracked"
    );
    switch(&mut cpu, ROOT_A);
    assert_eq!(read(&mut cpu, &mut mem, LIN), 0xbbbb);
    assert_eq!(cpu.paging.walks, 3);
    assert_eq!(cpu.shadow.stats.tracked_writes, 1);
    assert_eq!(cpu.shadow.stats.dropped, 1);
    assert!(mem.is_table_page(PT_A), "the walk tracks it again");
    // Space B's translation did not depend on A's table.
    switch(&mut cpu, ROOT_B);
    read(&mut cpu, &mut mem, LIN);
    assert_eq!(cpu.paging.walks, 3);
}

/// A guest store into its own page tables goes through the TLB like any other: a page
/// becoming tracked loses the write tags of every linear alias, so the store still reaches
/// the slow path that sees it.
#[test]
fn a_tracked_table_page_loses_its_write_tags_and_its_stores_are_seen() {
    let (mut cpu, mut mem) = two_spaces();
    // Space B maps A's page table, writable, at linear 0x10_1000, and uses it as its own
    // page table for linear 0x20_0000-0x3f_ffff (so 0x30_0000 maps to PAGE_A there too).
    const ALIAS: u64 = 0x10_1000;
    mem.write_phys(ROOT_B + 0x3000 + 0x101 * 8, 8, PT_A | P | RW | A | D);
    mem.write_phys(ROOT_B + 0x2000 + 8, 8, PT_A | P | RW | US | A);
    switch(&mut cpu, ROOT_B);
    write_data(&mut cpu, &mut mem, ALIAS + 8, 8, 0).unwrap();
    let slot = tlb_index(ALIAS);
    assert_eq!(
        cpu.tlb[0][slot].write, ALIAS,
        "writable before it is tracked"
    );
    // A walk through that page tracks it, and the alias loses its write tag at once.
    assert_eq!(read(&mut cpu, &mut mem, 0x30_0008), 0xaaaa);
    assert!(mem.is_table_page(PT_A));
    assert_eq!(cpu.tlb[0][slot].write, TlbEntry::INVALID_TAG);
    // Through the alias, B rewrites the PTE both spaces use.
    let pte = ALIAS + 0x100 * 8;
    write_data(&mut cpu, &mut mem, pte, 8, PAGE_B | P | RW | US | A | D).unwrap();
    assert_eq!(
        cpu.shadow.stats.tracked_writes, 0,
        "seen at the next lookup"
    );
    switch(&mut cpu, ROOT_A);
    assert_eq!(read(&mut cpu, &mut mem, LIN), 0xbbbb);
    assert_eq!(cpu.shadow.stats.tracked_writes, 1);
    switch(&mut cpu, ROOT_B);
    assert_eq!(read(&mut cpu, &mut mem, 0x30_0008), 0xbbbb);
}

#[test]
fn clearing_an_accessed_bit_makes_the_next_access_walk_and_set_it() {
    let (mut cpu, mut mem) = two_spaces();
    read(&mut cpu, &mut mem, LIN);
    switch(&mut cpu, ROOT_B);
    let pte = PT_A + 0x100 * 8;
    mem.write_phys(pte, 8, mem.peek_phys(pte, 8) & !A);
    switch(&mut cpu, ROOT_A);
    read(&mut cpu, &mut mem, LIN);
    assert_ne!(mem.peek_phys(pte, 8) & A, 0, "walked again, A set");
}

/// The walker's own A/D updates are not stores that drop anything: a write walk setting D in
/// one PTE keeps the translations computed from its neighbours in the same table.
#[test]
fn the_walkers_a_and_d_updates_keep_the_table_tracked() {
    let (mut cpu, mut mem) = two_spaces();
    mem.write_phys(PT_A + 0x101 * 8, 8, 0x40_0000 | P | RW);
    read(&mut cpu, &mut mem, LIN);
    write_data(&mut cpu, &mut mem, 0x10_1000, 4, 5).unwrap();
    assert_eq!(mem.peek_phys(PT_A + 0x101 * 8, 8) & (A | D), A | D);
    assert!(mem.is_table_page(PT_A));
    switch(&mut cpu, ROOT_B);
    switch(&mut cpu, ROOT_A);
    read(&mut cpu, &mut mem, LIN);
    read(&mut cpu, &mut mem, 0x10_1000);
    assert_eq!(cpu.paging.walks, 2, "both kept");
    assert_eq!(cpu.shadow.stats.tracked_writes, 0);
}

/// A translation kept from a read of a page whose D bit was clear does not let a write
/// through: the write walks, which sets D.
#[test]
fn a_kept_clean_page_walks_on_its_first_write() {
    let (mut cpu, mut mem) = two_spaces();
    let pte = PT_A + 0x100 * 8;
    mem.write_phys(pte, 8, PAGE_A | P | RW | US | A);
    read(&mut cpu, &mut mem, LIN);
    switch(&mut cpu, ROOT_B);
    switch(&mut cpu, ROOT_A);
    write_data(&mut cpu, &mut mem, LIN, 4, 1).unwrap();
    assert_eq!(cpu.paging.walks, 2);
    assert_ne!(mem.peek_phys(pte, 8) & D, 0);
    // From then on the kept translation is dirty and serves writes too.
    switch(&mut cpu, ROOT_B);
    switch(&mut cpu, ROOT_A);
    write_data(&mut cpu, &mut mem, LIN, 4, 2).unwrap();
    assert_eq!(cpu.paging.walks, 2);
}

/// A kept translation is only a cache of the page's rights: each use applies the rules of
/// the access at hand, and a refusal walks and faults with the walker's error code.
#[test]
fn kept_translations_are_checked_against_each_access() {
    let (mut cpu, mut mem) = two_spaces();
    let pte = PT_A + 0x100 * 8;
    mem.write_phys(pte, 8, PAGE_A | P | US | A | D);
    read_as(&mut cpu, &mut mem, LIN, 4, Privilege::User).unwrap();
    switch(&mut cpu, ROOT_B);
    switch(&mut cpu, ROOT_A);
    let f = write_as(&mut cpu, &mut mem, LIN, 4, 0, Privilege::User).unwrap_err();
    assert_eq!(f.exception, Exception::PageFault);
    assert_eq!(f.error_code, 0b111, "P | W | U");
    assert_eq!(cpu.cr2, LIN);
    // Supervisor reads of the user page go through under CR4.SMAP only with EFLAGS.AC.
    cpu.cr4 |= crate::paging::CR4_SMAP;
    let f = read_as(&mut cpu, &mut mem, LIN, 4, Privilege::Supervisor).unwrap_err();
    assert_eq!(f.error_code, 0b001);
    cpu.rflags |= crate::flags::AC;
    assert_eq!(
        read_as(&mut cpu, &mut mem, LIN, 4, Privilege::Supervisor).unwrap(),
        0xaaaa
    );
    assert!(read_as(&mut cpu, &mut mem, LIN, 4, Privilege::Implicit).is_err());
}

/// Under SMAP the kernel's explicit accesses to a user page with EFLAGS.AC set (its copies to
/// and from user memory) use a TLB of their own: after the first, they neither walk nor
/// consult the shadow tables, and the supervisor TLB that generated code reads and implicit
/// accesses use never gains the page. Clearing AC closes the page again at once.
#[test]
fn supervisor_accesses_with_smap_open_use_their_own_tlb() {
    let (mut cpu, mut mem) = two_spaces();
    cpu.cr4 |= crate::paging::CR4_SMAP;
    let slot = tlb_index(LIN);
    let f = read_data(&mut cpu, &mut mem, LIN, 4).unwrap_err();
    assert_eq!(f.exception, Exception::PageFault);
    cpu.rflags |= crate::flags::AC;
    assert_eq!(read(&mut cpu, &mut mem, LIN), 0xaaaa);
    write_data(&mut cpu, &mut mem, LIN, 4, 0xcccc).unwrap();
    let misses = cpu.paging.data_misses;
    for _ in 0..3 {
        write_data(&mut cpu, &mut mem, LIN + 4, 4, 1).unwrap();
        assert_eq!(read(&mut cpu, &mut mem, LIN), 0xcccc);
    }
    assert_eq!(cpu.paging.data_misses, misses, "served by the TLB");
    assert_eq!(cpu.tlb[2][slot].read, LIN & !0xfff);
    assert_eq!(cpu.tlb[2][slot].write, LIN & !0xfff);
    assert_eq!(cpu.tlb[0][slot].read, TlbEntry::INVALID_TAG);
    assert_eq!(cpu.tlb[0][slot].write, TlbEntry::INVALID_TAG);
    assert!(read_as(&mut cpu, &mut mem, LIN, 4, Privilege::Implicit).is_err());
    // A supervisor page the supervisor TLB holds (as generated code's accesses leave it)
    // serves accesses with SMAP open as it is.
    const KERNEL: u64 = 0x10_1000;
    mem.write_phys(ROOT_A + 0x3000 + 0x101 * 8, 8, PAGE_B | P | RW | A | D);
    cpu.rflags &= !crate::flags::AC;
    write_data(&mut cpu, &mut mem, KERNEL, 4, 7).unwrap();
    cpu.rflags |= crate::flags::AC;
    let misses = cpu.paging.data_misses;
    write_data(&mut cpu, &mut mem, KERNEL, 4, 8).unwrap();
    assert_eq!(read(&mut cpu, &mut mem, KERNEL), 8);
    assert_eq!(cpu.paging.data_misses, misses);
    assert_eq!(cpu.tlb[2][tlb_index(KERNEL)], TlbEntry::INVALID);
    cpu.rflags &= !crate::flags::AC;
    let f = write_data(&mut cpu, &mut mem, LIN, 4, 0).unwrap_err();
    assert_eq!(f.exception, Exception::PageFault);
    assert_eq!(f.error_code, 0b011, "P | W");
    // CR3 writes and INVLPG drop its entries as any other TLB's.
    cpu.rflags |= crate::flags::AC;
    switch(&mut cpu, ROOT_B);
    assert_eq!(cpu.tlb[2][slot], TlbEntry::INVALID);
    assert_eq!(read(&mut cpu, &mut mem, LIN), 0xbbbb);
    tlb_flush_page(&mut cpu, LIN);
    assert_eq!(cpu.tlb[2][slot], TlbEntry::INVALID);
}

/// Global translations serve every space, as a TLB's global entries outlive CR3 writes,
/// until INVLPG drops them.
#[test]
fn global_translations_serve_every_space_until_invlpg() {
    let (mut cpu, mut mem) = two_spaces();
    cpu.cr4 |= CR4_PGE;
    const KERNEL: u64 = 0x10_2000;
    mem.write_phys(PT_A + 0x102 * 8, 8, PAGE_A | P | RW | A | D | G);
    read(&mut cpu, &mut mem, KERNEL);
    switch(&mut cpu, ROOT_B);
    // Space B does not map KERNEL at all. Take the TLB's own global entry away, as a fill
    // of its slot would.
    cpu.tlb[0][tlb_index(KERNEL)] = TlbEntry::INVALID;
    assert_eq!(read(&mut cpu, &mut mem, KERNEL + 8), 0xaaaa);
    assert_eq!(cpu.paging.walks, 1, "from the global table");
    tlb_flush_page(&mut cpu, KERNEL);
    let f = read_data(&mut cpu, &mut mem, KERNEL, 4).unwrap_err();
    assert_eq!(f.exception, Exception::PageFault);
}

#[test]
fn a_full_flush_empties_the_tables() {
    let (mut cpu, mut mem) = two_spaces();
    read(&mut cpu, &mut mem, LIN);
    assert_eq!(cpu.shadow.len(), 1);
    cpu.flush_tlb();
    assert!(cpu.shadow.is_empty());
    read(&mut cpu, &mut mem, LIN);
    assert_eq!(cpu.paging.walks, 2);
    assert_eq!(cpu.shadow.stats.flushes, 1);
}

/// Tables built against one memory are not used with another, whose stores they never saw.
#[test]
fn tables_follow_their_memory() {
    let (mut cpu, mut mem) = two_spaces();
    read(&mut cpu, &mut mem, LIN);
    let (_, mut other) = two_spaces();
    other.write_phys(PAGE_A + 8, 4, 0x1234);
    switch(&mut cpu, ROOT_B);
    switch(&mut cpu, ROOT_A);
    assert_eq!(read(&mut cpu, &mut other, LIN), 0x1234);
    assert_eq!(cpu.paging.walks, 2);
}

#[test]
fn the_least_recently_used_space_makes_room() {
    let mut mem = PhysMem::new(8 << 20).unwrap();
    let mut cpu = CpuState::new(CpuMode::Long64);
    // MAX_SPACES + 1 roots sharing the lower levels of space A.
    chain(&mut mem, ROOT_A, PAGE_A, P | RW | US | A | D);
    let roots: Vec<u64> = (0..=MAX_SPACES as u64)
        .map(|i| 0x10_0000 + i * 0x1000)
        .collect();
    for &r in &roots {
        mem.write_phys(r, 8, mem.peek_phys(ROOT_A, 8));
        switch(&mut cpu, r);
        read(&mut cpu, &mut mem, LIN);
    }
    assert_eq!(cpu.shadow.spaces(), MAX_SPACES);
    assert_eq!(cpu.shadow.stats.evictions, 1);
    let walks = cpu.paging.walks;
    switch(&mut cpu, roots[1]);
    read(&mut cpu, &mut mem, LIN);
    assert_eq!(cpu.paging.walks, walks, "kept");
    switch(&mut cpu, roots[0]);
    read(&mut cpu, &mut mem, LIN);
    assert_eq!(cpu.paging.walks, walks + 1, "evicted");
}

/// 32-bit paging with a 4 MiB page, and PAE paging, whose PDPTEs are paging-structure
/// entries like the others: a store to any of them is seen.
#[test]
fn legacy_and_pae_walks_are_tracked_too() {
    let mut mem = PhysMem::new(16 << 20).unwrap();
    let mut cpu = CpuState::new(CpuMode::Prot32);
    cpu.cr0 |= CR0_PG;
    cpu.cr4 |= CR4_PSE;
    cpu.efer &= !EFER_LMA;
    // 32-bit: PD at 0x1000 maps 0x40_0000 as a 4 MiB page onto 0x80_0000.
    mem.write_phys(
        0x1000 + 4,
        4,
        0x80_0000 | P | RW | A | D | crate::paging::pte::PS,
    );
    mem.write_phys(0x80_0000 + 0x1234, 4, 7);
    mem.write_phys(0xc0_0000 + 0x1234, 4, 8);
    cpu.cr3 = 0x1000;
    assert_eq!(read(&mut cpu, &mut mem, 0x40_1234), 7);
    switch(&mut cpu, 0x2000);
    mem.write_phys(
        0x1000 + 4,
        4,
        0xc0_0000 | P | RW | A | D | crate::paging::pte::PS,
    );
    switch(&mut cpu, 0x1000);
    assert_eq!(read(&mut cpu, &mut mem, 0x40_1234), 8);
    assert_eq!(cpu.shadow.stats.dropped, 1);

    // PAE: PDPT at 0x3000, PD at 0x4000, PT at 0x5000 maps 0x1000 onto 0x6000.
    cpu.cr4 |= CR4_PAE;
    cpu.flush_tlb();
    mem.write_phys(0x3000, 8, 0x4000 | P);
    mem.write_phys(0x4000, 8, 0x5000 | P | RW | A);
    mem.write_phys(0x5000 + 8, 8, 0x6000 | P | RW | A | D);
    mem.write_phys(0x7000, 8, 0x4000 | P);
    mem.write_phys(0x6000, 4, 9);
    mem.write_phys(0x8000 + 8, 8, 0x9000 | P | RW | A | D);
    mem.write_phys(0x9000, 4, 10);
    cpu.cr3 = 0x3000;
    assert_eq!(read(&mut cpu, &mut mem, 0x1000), 9);
    switch(&mut cpu, 0x7000);
    // The first PDPTE of space 0x3000 now points to another directory.
    mem.write_phys(0x3000, 8, 0xa000 | P);
    mem.write_phys(0xa000, 8, 0x8000 | P | RW | A);
    switch(&mut cpu, 0x3000);
    assert_eq!(read(&mut cpu, &mut mem, 0x1000), 10);
}

/// Records of dropped translations stay behind in the lists of the pages that were not
/// written (here space A's upper levels), and every refill adds more: compaction keeps those
/// lists short, so the bound that clears everything is never reached.
#[test]
fn the_records_of_dropped_translations_do_not_pile_up() {
    let (mut cpu, mut mem) = two_spaces();
    let pte = PT_A + 0x100 * 8;
    for i in 0..10_000u64 {
        let page = if i % 2 == 0 { PAGE_A } else { PAGE_B };
        mem.write_phys(pte, 8, page | P | RW | US | A | D);
        switch(&mut cpu, ROOT_B);
        switch(&mut cpu, ROOT_A);
        read(&mut cpu, &mut mem, LIN);
    }
    assert_eq!(cpu.shadow.stats.dropped, 9_999);
    assert_eq!(cpu.shadow.stats.flushes, 0);
    assert!(
        cpu.shadow.dep_records < 4 * COMPACT_AT,
        "{}",
        cpu.shadow.dep_records
    );
}

/// 500 live translations under space A's upper levels, just below a power of two, then one
/// of them dropped and refilled 10,000 times: each refill adds a record to the upper
/// levels' lists. A compaction of C records must follow at least C/2 additions; compacting
/// at each power of two compacted every 12 additions here.
#[test]
fn a_list_whose_live_records_sit_below_a_power_of_two_is_not_compacted_again_and_again() {
    let (mut cpu, mut mem) = two_spaces();
    // A second page table under A's directory maps 2 MiB up: its translations do not
    // depend on the page table the loop writes.
    const PT2: u64 = 0x9000;
    const LIVE: u64 = 500;
    mem.write_phys(ROOT_A + 0x2000 + 8, 8, PT2 | P | RW | US | A);
    for i in 0..LIVE {
        mem.write_phys(PT2 + 8 * i, 8, (PAGE_A + (i << 12)) | P | RW | US | A | D);
    }
    for i in 0..LIVE {
        read(&mut cpu, &mut mem, (2 << 20) + (i << 12));
    }
    let pte = PT_A + 0x100 * 8;
    const CHURN: u64 = 10_000;
    for i in 0..CHURN {
        let page = if i % 2 == 0 {
            PAGE_B
        } else {
            PAGE_A + 0x10_0000
        };
        mem.write_phys(pte, 8, page | P | RW | US | A | D);
        // The guest's INVLPG after its PTE store.
        tlb_flush_page(&mut cpu, LIN);
        read(&mut cpu, &mut mem, LIN);
    }
    assert_eq!(cpu.shadow.stats.dropped, CHURN - 1);
    assert_eq!(cpu.shadow.stats.flushes, 0);
    assert!(cpu.shadow.len() >= LIVE as usize);
    // Three lists (the upper levels) hold the live records and take one per refill.
    let compactions = cpu.shadow.stats.compactions;
    assert!(
        compactions <= 3 * (CHURN / (LIVE / 2) + 4),
        "{compactions} compactions"
    );
    assert!(
        cpu.shadow.dep_records < 4 * 4 * LIVE as usize,
        "{}",
        cpu.shadow.dep_records
    );
}
