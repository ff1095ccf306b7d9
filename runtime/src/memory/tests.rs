//! Tests of guest RAM, its guard regions, the TLB and the memory slow paths.

use super::*;
use crate::paging::CR0_WP;
use crate::state::{PendingFault, Retry};
use crate::CpuMode;

#[test]
fn guest_ram_is_exactly_its_size_between_guard_pages() {
    let mem = PhysMem::new(1 << 20).unwrap();
    assert_eq!(mem.ram().len(), 1 << 20);
    let base = mem.ram().as_ptr() as usize;
    let end = base + (1 << 20);
    assert_eq!(host_mapping_permissions(base).as_deref(), Some("rw-p"));
    assert_eq!(host_mapping_permissions(end - 1).as_deref(), Some("rw-p"));
    for g in [base - GUARD_BYTES, base - 1, end, end + GUARD_BYTES - 1] {
        assert_eq!(
            host_mapping_permissions(g).as_deref(),
            Some("---p"),
            "{g:#x} near {base:#x}"
        );
    }
}

#[test]
fn reads_and_writes_cross_pages_and_fill_the_tlb() {
    let mut mem = PhysMem::new(0x10000).unwrap();
    let mut cpu = CpuState::new(CpuMode::Prot32);
    write_linear(&mut cpu, &mut mem, 0xffe, 4, 0xdead_beef).unwrap();
    assert_eq!(
        read_linear(&mut cpu, &mut mem, 0xffe, 4).unwrap(),
        0xdead_beef
    );
    assert_eq!(cpu.tlb[0][1].read, 0x1000);
}

#[test]
fn outside_ram_reads_all_ones_and_drops_writes() {
    let mut mem = PhysMem::new(0x1000).unwrap();
    let mut cpu = CpuState::new(CpuMode::Prot32);
    write_linear(&mut cpu, &mut mem, 0x5000, 2, 7).unwrap();
    assert_eq!(read_linear(&mut cpu, &mut mem, 0x5000, 2).unwrap(), 0xffff);
    assert_eq!(cpu.tlb[0][5], TlbEntry::INVALID);
}

#[test]
fn a_store_to_a_code_page_is_reported_and_never_cached_writable() {
    let mut mem = PhysMem::new(0x4000).unwrap();
    let mut cpu = CpuState::new(CpuMode::Prot32);
    mem.set_code_page(0x2000, true);
    write_linear(&mut cpu, &mut mem, 0x2010, 1, 0x90).unwrap();
    assert_eq!(cpu.smc_pending, 1);
    assert_eq!(mem.take_code_writes(), vec![0x2010..0x2011]);
    assert_eq!(cpu.tlb[0][2].write, TlbEntry::INVALID_TAG);
}

#[test]
fn the_jits_store_into_a_code_page_is_declined_and_handed_back_to_the_interpreter() {
    let mut mem = PhysMem::new(0x4000).unwrap();
    let mut cpu = CpuState::new(CpuMode::Prot32);
    mem.set_code_page(0x2000, true);
    fn slow(cpu: &mut CpuState, mem: &mut PhysMem, linear: u64, size: u64, value: u64) {
        cpu.mem = mem;
        // SAFETY: `cpu` is live and its `mem` points at the live `mem`, which nothing else
        // borrows during the call.
        unsafe { store_slow(cpu, linear, size, value) }
    }
    // Into the code page, and across into it from the page before: nothing written, no
    // fault, a retry asked for.
    for (linear, size) in [(0x2010, 1), (0x1ffe, 4)] {
        slow(
            &mut cpu,
            &mut mem,
            linear,
            size | SLOW_CODE_RETRY,
            0x9090_9090,
        );
        assert_eq!(cpu.fault.pending, PendingFault::RETRY);
        assert_eq!(cpu.take_retry(), Some(Retry::Store));
        assert_eq!(cpu.smc_pending, 0);
    }
    assert_eq!(read_linear(&mut cpu, &mut mem, 0x1ffe, 4).unwrap(), 0);
    assert!(mem.take_code_writes().is_empty());
    // Elsewhere the flag changes nothing.
    slow(&mut cpu, &mut mem, 0x3000, 4 | SLOW_CODE_RETRY, 7);
    assert_eq!(cpu.fault.pending, 0);
    assert_eq!(read_linear(&mut cpu, &mut mem, 0x3000, 4).unwrap(), 7);
    // Without it (the baseline tier's and the interpreter's way) the store is made and
    // reported.
    slow(&mut cpu, &mut mem, 0x2010, 1, 0x90);
    assert_eq!((cpu.fault.pending, cpu.smc_pending), (0, 1));
    assert_eq!(mem.take_code_writes(), vec![0x2010..0x2011]);
    // `take_retry` takes a retry and nothing else.
    cpu.request_retry();
    assert_eq!(cpu.take_retry(), Some(Retry::Store));
    assert_eq!(cpu.take_retry(), None);
    cpu.raise(Fault::new(Exception::PageFault), 0);
    assert_eq!(cpu.take_retry(), None);
    assert!(cpu.take_fault().is_some());
}

#[test]
fn code_writes_are_reported_per_page_and_adjacent_ones_merged() {
    let mut mem = PhysMem::new(0x4000).unwrap();
    mem.set_code_page(0x1000, true);
    mem.set_code_page(0x2000, true);
    // Straddling the two code pages: one range on each.
    mem.write_phys(0x1ffe, 4, 0);
    assert_eq!(mem.take_code_writes(), vec![0x1ffe..0x2000, 0x2000..0x2002]);
    // A run of adjacent stores (a string store) is one range; a distant one is another.
    for a in 0..8 {
        mem.write_phys(0x1100 + 2 * a, 2, 0);
    }
    mem.write_phys(0x1800, 1, 0);
    // Stores to a data page are not code writes.
    mem.write_phys(0x3000, 8, 0);
    assert_eq!(mem.take_code_writes(), vec![0x1100..0x1110, 0x1800..0x1801]);
    assert!(!mem.has_dirty_code());
}

/// Remembers the last write and answers reads with the address.
struct Probe(std::sync::Arc<std::sync::Mutex<Vec<(u64, u32, u64)>>>);
impl MmioHandler for Probe {
    fn mmio_read(&mut self, addr: u64, _size: u32) -> u64 {
        addr
    }
    fn mmio_write(&mut self, addr: u64, size: u32, value: u64) {
        self.0.lock().unwrap().push((addr, size, value));
    }
}

#[test]
fn outside_ram_accesses_reach_the_mmio_handler_and_ask_for_attention() {
    let mut mem = PhysMem::new(0x1000).unwrap();
    let log = std::sync::Arc::default();
    mem.set_mmio(Box::new(Probe(std::sync::Arc::clone(&log))));
    let mut cpu = CpuState::new(CpuMode::Prot32);
    write_linear(&mut cpu, &mut mem, 0xfee0_00b0, 4, 0).unwrap();
    assert_eq!(*log.lock().unwrap(), vec![(0xfee0_00b0, 4, 0)]);
    assert_eq!(
        read_linear(&mut cpu, &mut mem, 0xfee0_0020, 4).unwrap(),
        0xfee0_0020
    );
    // Never cached: every access takes the slow path to the device.
    assert_eq!(cpu.tlb[0][tlb_index(0xfee0_0020)], TlbEntry::INVALID);
    assert_eq!(
        cpu.exit_request.load(std::sync::atomic::Ordering::Relaxed),
        crate::state::EXIT_DEVICE
    );
    // RAM accesses do not.
    cpu.exit_request
        .store(0, std::sync::atomic::Ordering::Relaxed);
    write_linear(&mut cpu, &mut mem, 0x10, 4, 1).unwrap();
    assert_eq!(
        cpu.exit_request.load(std::sync::atomic::Ordering::Relaxed),
        0
    );
}

#[test]
fn bad_ram_sizes_are_refused() {
    assert!(matches!(PhysMem::new(0), Err(MemError::BadSize(0))));
    assert!(matches!(PhysMem::new(100), Err(MemError::BadSize(100))));
}

/// A 4-level mapping of linear 0x10_0000 onto the same physical page (user, writable, A and
/// D set) with protection key 3, in fresh RAM, and a supervisor CPU in 64-bit mode using it
/// with CR4.PKE and CR0.WP set.
fn keyed_page() -> (CpuState, PhysMem) {
    use crate::paging::pte::{A, D, P, RW, US};
    let mut mem = PhysMem::new(4 << 20).unwrap();
    let upper = P | RW | US | A;
    mem.write_phys(0x1000, 8, 0x2000 | upper);
    mem.write_phys(0x2000, 8, 0x3000 | upper);
    mem.write_phys(0x3000, 8, 0x4000 | upper);
    mem.write_phys(0x4000 + 0x100 * 8, 8, 0x10_0000 | upper | D | 3 << 59);
    let mut cpu = CpuState::new(CpuMode::Long64);
    cpu.cr3 = 0x1000;
    cpu.cr0 |= CR0_WP;
    cpu.cr4 |= crate::state::CR4_PKE;
    (cpu, mem)
}

#[test]
fn tlb_tags_follow_protection_keys_and_pkru_writes_flush_them() {
    let (mut cpu, mut mem) = keyed_page();
    let lin = 0x10_0010;
    let slot = tlb_index(lin);
    write_data(&mut cpu, &mut mem, lin, 4, 7).unwrap();
    assert_eq!(cpu.tlb[0][slot].write, 0x10_0000);
    // WD for key 3: the entry goes, and comes back readable but not writable.
    cpu.set_pkru(0b10 << 6);
    assert_eq!(cpu.tlb[0][slot], TlbEntry::INVALID);
    assert_eq!(read_data(&mut cpu, &mut mem, lin, 4), Ok(7));
    assert_eq!(cpu.tlb[0][slot].read, 0x10_0000);
    assert_eq!(cpu.tlb[0][slot].write, TlbEntry::INVALID_TAG);
    let f = write_data(&mut cpu, &mut mem, lin, 4, 8).unwrap_err();
    assert_eq!((f.exception, f.error_code), (Exception::PageFault, 0x23));
    assert_eq!(cpu.cr2, lin);
    // AD for key 3: nothing cached for data, fetches still allowed.
    cpu.set_pkru(0b01 << 6);
    let f = read_data(&mut cpu, &mut mem, lin, 4).unwrap_err();
    assert_eq!(f.error_code, 0x21);
    assert_eq!(fetch_phys(&mut cpu, &mut mem, lin), Ok(lin));
    assert_eq!(cpu.tlb[0][slot].read, TlbEntry::INVALID_TAG);
    assert_eq!(cpu.tlb[0][slot].exec, 0x10_0000);
    // CR0.WP = 0 lets supervisor writes through WD; user writes still fault.
    cpu.set_pkru(0b10 << 6);
    cpu.cr0 &= !CR0_WP;
    cpu.flush_tlb();
    write_data(&mut cpu, &mut mem, lin, 4, 9).unwrap();
    assert_eq!(read_as(&mut cpu, &mut mem, lin, 4, Privilege::User), Ok(9));
    assert_eq!(cpu.tlb[1][slot].read, 0x10_0000);
    assert_eq!(cpu.tlb[1][slot].write, TlbEntry::INVALID_TAG);
    let f = write_as(&mut cpu, &mut mem, lin, 4, 9, Privilege::User).unwrap_err();
    assert_eq!(f.error_code, 0x27);
}

#[test]
fn pkrs_writes_flush_the_tlb_and_refuse_high_bits() {
    let (mut cpu, mut mem) = keyed_page();
    let lin = 0x10_0010;
    read_data(&mut cpu, &mut mem, lin, 4).unwrap();
    assert_ne!(cpu.tlb[0][tlb_index(lin)], TlbEntry::INVALID);
    crate::msr::write(&mut cpu, crate::msr::PKRS, 0x10).unwrap();
    assert_eq!(cpu.tlb[0][tlb_index(lin)], TlbEntry::INVALID);
    assert_eq!(crate::msr::read(&cpu, crate::msr::PKRS), Ok(0x10));
    assert!(crate::msr::write(&mut cpu, crate::msr::PKRS, 1 << 32).is_err());
}

/// Two pages that share a TLB slot: the one a fill displaced comes back from the
/// victim buffer without a walk, and INVLPG, code-page protection and flushes reach it there.
#[test]
fn displaced_entries_are_recalled_from_the_victim_buffer_and_invalidated_there() {
    let ram = (TLB_ENTRIES as u64 + 0x200) * PAGE_SIZE;
    let mut mem = PhysMem::new(ram).unwrap();
    let mut cpu = CpuState::new(CpuMode::Prot32);
    let a = 0x1008u64;
    let b = (0x100u64..)
        .map(|page| page * PAGE_SIZE + 8)
        .find(|&b| tlb_index(b) == tlb_index(a))
        .unwrap();
    assert!(b < ram);
    write_linear(&mut cpu, &mut mem, a, 4, 1).unwrap();
    write_linear(&mut cpu, &mut mem, b, 4, 2).unwrap();
    let walks = cpu.paging.walks;
    for _ in 0..10 {
        assert_eq!(read_linear(&mut cpu, &mut mem, a, 4).unwrap(), 1);
        assert_eq!(read_linear(&mut cpu, &mut mem, b, 4).unwrap(), 2);
    }
    assert_eq!(cpu.paging.walks, walks, "no walk for either page");
    assert!(cpu.paging.tlb_victim_hits >= 19);
    // `b` is in its slot now, `a` among the victims. Marking `a`'s page as code must drop
    // the victim's write tag: the next store there takes the walk and reports the SMC.
    mem.set_code_page(a & !0xfff, true);
    tlb_protect_phys(&mut cpu, &mem, a & !0xfff);
    write_linear(&mut cpu, &mut mem, a, 1, 0x90).unwrap();
    assert_eq!(cpu.smc_pending, 1);
    mem.set_code_page(a & !0xfff, false);
    // INVLPG of the page in the victim buffer: the next access walks.
    read_linear(&mut cpu, &mut mem, b, 4).unwrap();
    let walks = cpu.paging.walks;
    tlb_flush_page(&mut cpu, a);
    read_linear(&mut cpu, &mut mem, a, 4).unwrap();
    assert_eq!(cpu.paging.walks, walks + 1);
    // A whole flush empties the victims too.
    read_linear(&mut cpu, &mut mem, b, 4).unwrap();
    cpu.flush_tlb();
    let walks = cpu.paging.walks;
    read_linear(&mut cpu, &mut mem, a, 4).unwrap();
    read_linear(&mut cpu, &mut mem, b, 4).unwrap();
    assert_eq!(cpu.paging.walks, walks + 2);
}

/// 4 MiB of RAM with 4-level page tables at 0x1000 that map [`GLOBAL`]'s page as a global
/// page and [`LOCAL`]'s as a non-global one (both dirty, writable, supervisor).
pub(crate) fn global_and_local_tables() -> PhysMem {
    use crate::paging::pte::{A, D, G, P, RW};
    let mut mem = PhysMem::new(4 << 20).unwrap();
    let upper = P | RW | A;
    mem.write_phys(0x1000, 8, 0x2000 | upper);
    mem.write_phys(0x2000, 8, 0x3000 | upper);
    mem.write_phys(0x3000, 8, 0x4000 | upper);
    mem.write_phys(0x4000 + 0x100 * 8, 8, 0x10_0000 | upper | D | G);
    mem.write_phys(0x4000 + 0x101 * 8, 8, 0x20_0000 | upper | D);
    mem
}

/// An address in the global page of [`global_and_local_tables`].
pub(crate) const GLOBAL: u64 = 0x10_0008;
/// An address in its non-global page.
pub(crate) const LOCAL: u64 = 0x10_1008;

/// A CR3 write keeps the entries of global pages (G set, CR4.PGE = 1) and drops the others;
/// a full flush drops both.
#[test]
fn global_entries_survive_a_cr3_flush_but_not_a_full_one() {
    let mut mem = global_and_local_tables();
    let mut cpu = CpuState::new(CpuMode::Long64);
    cpu.cr3 = 0x1000;
    cpu.cr4 |= crate::paging::CR4_PGE;
    let (global, local) = (GLOBAL, LOCAL);
    write_data(&mut cpu, &mut mem, global, 4, 1).unwrap();
    write_data(&mut cpu, &mut mem, local, 4, 2).unwrap();
    cpu.flush_tlb_nonglobal();
    let walks = cpu.paging.walks;
    assert_eq!(read_data(&mut cpu, &mut mem, global, 4).unwrap(), 1);
    assert_eq!(cpu.paging.walks, walks, "the global page is still cached");
    assert_eq!(cpu.shadow.stats.hits, 0);
    assert_eq!(read_data(&mut cpu, &mut mem, local, 4).unwrap(), 2);
    assert_eq!(
        cpu.shadow.stats.hits, 1,
        "the other one left the TLB, and came back from the shadow page tables"
    );
    cpu.flush_tlb();
    read_data(&mut cpu, &mut mem, global, 4).unwrap();
    assert_eq!(
        cpu.paging.walks,
        walks + 1,
        "a full flush drops global pages too"
    );
    // Without CR4.PGE, G means nothing.
    cpu.cr4 &= !crate::paging::CR4_PGE;
    cpu.flush_tlb();
    read_data(&mut cpu, &mut mem, global, 4).unwrap();
    cpu.flush_tlb_nonglobal();
    let hits = cpu.shadow.stats.hits;
    read_data(&mut cpu, &mut mem, global, 4).unwrap();
    assert_eq!(cpu.shadow.stats.hits, hits + 1, "not kept in the TLB");
}

/// Generated code finds an access's TLB slot from its first byte and compares the tag with
/// the page of its last byte: that is only sound if a page's successor never shares its slot.
/// Checked across every boundary where the page number's low bits wrap at the TLB's size, in
/// the low 4 GiB (pages 0x7FFFF and 0x80000 shared one under an earlier XOR fold) and at high
/// addresses.
#[test]
fn consecutive_pages_never_share_a_tlb_slot() {
    let n = TLB_ENTRIES as u64;
    let lows = (0u64..1 << 20).step_by(n as usize).map(|p| p + n - 1);
    let highs = (0u64..4096).map(|k| 0x7fff_ffff_f000_0000u64 / PAGE_SIZE + k * n + n - 1);
    for page in lows.chain(highs).chain(0..4096) {
        let a = page * PAGE_SIZE;
        assert_ne!(tlb_index(a), tlb_index(a + PAGE_SIZE), "page {page:#x}");
    }
}

/// Writable TLB entries stay where the page's writer record says, through fills, displacements
/// into the victim buffers, recalls, aliases (many linear pages on a few physical ones) and
/// both privileges, so that `tlb_protect_phys` finds every one of them.
#[test]
fn protecting_a_page_finds_every_writable_entry_of_it() {
    use crate::paging::pte::{A, D, P, RW, US};
    let mut mem = PhysMem::new(4 << 20).unwrap();
    let upper = P | RW | US | A;
    mem.write_phys(0x1000, 8, 0x2000 | upper);
    mem.write_phys(0x2000, 8, 0x3000 | upper);
    mem.write_phys(0x3000, 8, 0x4000 | upper);
    // Linear pages 0x100-0x1ff and, a TLB's size later, 0x1100-0x11ff onto eight physical
    // pages, so each has about 64 aliases; the second range lies on the first one's TLB slots.
    let second = 0x10_0000 + TLB_ENTRIES as u64 * PAGE_SIZE;
    let pool = |n: u64| 0x20_0000 + (n % 8) * PAGE_SIZE;
    mem.write_phys(0x3000 + (second >> 21) * 8, 8, 0x5000 | upper);
    for n in 0..0x100u64 {
        mem.write_phys(0x4000 + (0x100 + n) * 8, 8, pool(n * 5) | upper | D);
        let pte = ((second >> 12) + n) & 0x1ff;
        mem.write_phys(0x5000 + pte * 8, 8, pool(n * 3) | upper | D);
    }
    assert_eq!(tlb_index(0x10_0000), tlb_index(second));
    let mut cpu = CpuState::new(CpuMode::Long64);
    cpu.cr3 = 0x1000;
    let ram = mem.host_addr(0);
    let check = |cpu: &CpuState| {
        for (t, tlb) in cpu.tlb.iter().enumerate() {
            for (i, e) in tlb.iter().enumerate() {
                if e.write != TlbEntry::INVALID_TAG {
                    let page = (e.write.wrapping_add(e.addend) - ram) as usize >> 12;
                    assert!(cpu.tlb_writers.covers(page, t * TLB_ENTRIES + i));
                }
            }
        }
    };
    let mut x = 12345u64;
    for round in 0..6000u64 {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let base = if x & (1 << 20) == 0 {
            0x10_0000
        } else {
            second
        };
        // Half the accesses stay within a few slots, so that displaced entries come back.
        let span = if round % 2 == 0 { 0x100 } else { 6 };
        let lin = base + ((x >> 33) % span) * PAGE_SIZE + 16;
        let pl = if x >> 63 == 0 {
            Privilege::Supervisor
        } else {
            Privilege::User
        };
        match round % 5 {
            0 => drop(read_as(&mut cpu, &mut mem, lin, 4, pl).unwrap()),
            4 if round % 35 == 4 => {
                let page = pool(x >> 40);
                tlb_protect_phys(&mut cpu, &mem, page);
                let host = mem.host_addr(page);
                let writes = |e: &TlbEntry| {
                    e.write != TlbEntry::INVALID_TAG && e.write.wrapping_add(e.addend) == host
                };
                assert!(!cpu.tlb.iter().flatten().any(writes), "round {round}");
                assert!(!cpu.tlb_victims.all_mut().any(|e| writes(e)));
            }
            _ => write_as(&mut cpu, &mut mem, lin, 4, round, pl).unwrap(),
        }
        check(&cpu);
    }
    assert!(cpu.paging.tlb_victim_hits > 100, "recalls were exercised");
}

/// Physical reads and writes of every size 1..=8 at every offset of a word move exactly those
/// bytes, little-endian (the common sizes take their own paths, see `le_read`).
#[test]
fn physical_accesses_of_every_size_move_exactly_their_bytes() {
    let mut mem = PhysMem::new(0x2000).unwrap();
    let pattern = 0x8877_6655_4433_2211u64;
    for size in 1..=8u32 {
        for at in 0x100..0x110u64 {
            mem.load(0xf0, &[0xaa; 0x40]).unwrap();
            mem.write_phys(at, size, pattern);
            let mut want = [0xaau8; 0x40];
            let o = (at - 0xf0) as usize;
            want[o..o + size as usize].copy_from_slice(&pattern.to_le_bytes()[..size as usize]);
            assert_eq!(&mem.ram()[0xf0..0x130], &want[..], "size {size} at {at:#x}");
            let mask = u64::MAX >> (64 - 8 * size);
            assert_eq!(mem.read_phys(at, size), pattern & mask, "size {size}");
            assert_eq!(mem.read_phys(at - 1, size), (pattern << 8 | 0xaa) & mask);
        }
    }
}
