//! The software TLBs in front of guest memory: one direct-mapped table per privilege that
//! generated code checks inline, and a small victim buffer behind each.
//!
//! A direct-mapped table thrashes when two hot pages share a slot (kvm-unit-tests'
//! `vmexit_cpuid` keeps its stack and a global 12 MiB apart, exactly 3072 pages: every
//! iteration walked the page tables twice). An entry a fill displaces goes to its table's
//! victim buffer, [`TLB_VICTIMS`] entries replaced round-robin (QEMU keeps such a buffer
//! too); a miss looks there before walking and swaps the entry back into its slot. Generated
//! code never reads the victim buffers, so they cost nothing on the fast path, and every
//! invalidation (flush, INVLPG, a page turning into code) covers them as it covers the
//! tables.

use super::{PhysMem, Privilege, PAGE_MASK, PAGE_SIZE};
use crate::paging::{key_allows, Translation, WalkRegs, CR0_WP, CR4_SMAP, CR4_SMEP};
use crate::state::CpuState;

/// The software TLBs ([`CpuState::tlb`]): supervisor, user, and supervisor with SMAP open.
pub const TLBS: usize = 3;

/// One TLB's entries, indexed by [`tlb_index`].
pub type TlbTable = [TlbEntry; TLB_ENTRIES];

/// The [`TLBS`] software TLBs of a CPU, indexed by [`Privilege`]'s TLB number: the two that
/// generated code checks inline (supervisor, user) in place, where it finds them at fixed
/// offsets from its `CpuState` pointer; the third (supervisor data accesses with SMAP open,
/// which only the runtime reads) on the heap, so that a `CpuState` does not grow by another
/// 64 KiB on test threads' small stacks.
#[derive(Clone, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct Tlbs {
    inline: [TlbTable; 2],
    smap_open: Box<TlbTable>,
}

impl Tlbs {
    /// Every entry invalid.
    pub fn new() -> Tlbs {
        let smap_open = vec![TlbEntry::INVALID; TLB_ENTRIES]
            .into_boxed_slice()
            .try_into()
            .expect("TLB_ENTRIES entries");
        Tlbs {
            inline: [[TlbEntry::INVALID; TLB_ENTRIES]; 2],
            smap_open,
        }
    }

    /// The tables in TLB-number order.
    pub fn iter(&self) -> impl Iterator<Item = &TlbTable> {
        self.inline.iter().chain(std::iter::once(&*self.smap_open))
    }

    /// The tables in TLB-number order, mutably.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut TlbTable> {
        self.inline
            .iter_mut()
            .chain(std::iter::once(&mut *self.smap_open))
    }
}

impl Default for Tlbs {
    fn default() -> Tlbs {
        Tlbs::new()
    }
}

impl std::ops::Index<usize> for Tlbs {
    type Output = TlbTable;
    fn index(&self, t: usize) -> &TlbTable {
        match t {
            0 | 1 => &self.inline[t],
            _ => &self.smap_open,
        }
    }
}

impl std::ops::IndexMut<usize> for Tlbs {
    fn index_mut(&mut self, t: usize) -> &mut TlbTable {
        match t {
            0 | 1 => &mut self.inline[t],
            _ => &mut self.smap_open,
        }
    }
}

/// Entries in each TLB's victim buffer.
pub const TLB_VICTIMS: usize = 8;

/// Entries of the direct-mapped software TLB (a power of two).
pub const TLB_ENTRIES: usize = 2048;

/// One software-TLB entry. Generated code indexes it by [`tlb_index`] and
/// compares the page of the access's last byte with `read` or `write`: a match means the
/// whole access is inside that page and `host = linear + addend`.
///
/// A tag is set only when that kind of access is allowed *for the privilege level of the
/// TLB holding the entry* (see [`CpuState::tlb`]) with no further page walk: reads need
/// the page readable at that level; writes also need it writable (CR0.WP honoured), its D bit
/// already set and no translated code on it; fetches need it executable (NX, SMEP).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct TlbEntry {
    /// Linear page readable through this entry, or [`TlbEntry::INVALID_TAG`].
    pub read: u64,
    /// Linear page writable through this entry (not a code page), or the invalid tag.
    pub write: u64,
    /// Host address minus linear address for this page.
    pub addend: u64,
    /// Linear page instructions may be fetched from, or the invalid tag. Also pads the entry
    /// to 32 bytes so an index is a shift.
    pub exec: u64,
}

impl TlbEntry {
    /// A tag no access can match: page addresses have their low 12 bits clear.
    pub const INVALID_TAG: u64 = u64::MAX;
    /// An empty entry.
    pub const INVALID: TlbEntry = TlbEntry {
        read: Self::INVALID_TAG,
        write: Self::INVALID_TAG,
        addend: 0,
        exec: Self::INVALID_TAG,
    };
}

/// The TLB slot of a linear address: the low bits of its page number, as QEMU indexes its
/// TLB. Generated code computes the slot's byte offset as `(linear >> 7) & ((ENTRIES - 1) <<
/// 5)`: a shift and a mask on the path from an address to its data, where the hashed index
/// of sessions 8-15 (the page number plus the address bits from 22 up, so that pages 4 MiB
/// apart did not share a slot of 1024) took two shifts, an add, a mask and a shift. With
/// 2048 entries the boot plus the system-call and gzip workloads make fewer memory slow
/// paths than with the hashed 1024 (6.1 M against 8.4 M), and 4096 made no fewer. More
/// entries would also overflow test threads' stacks, where `CpuState` lives in unit tests.
///
/// Consecutive pages never share a slot (their slots differ by one, modulo the size), which
/// the inline check needs: it finds the slot from an access's first byte and compares its tag
/// with the page of the last byte, so a page-crossing access must never find the next page's
/// entry in its first page's slot (an XOR fold once let pages 0x7FFFF and 0x80000 share one,
/// and such an access read the bytes before the second page's frame).
pub fn tlb_index(linear: u64) -> usize {
    (linear >> 12) as usize & (TLB_ENTRIES - 1)
}

/// Fills `linear`'s entry of the `pl` TLB from a translation, if it maps RAM, with the tags of
/// every access the translation allows at that privilege without another walk.
///
/// Protection keys are applied here with the PKRU and IA32_PKRS values of the moment: a data
/// tag is set only if the page's key allows that access now. Every change of what the keys
/// decide (WRPKRU, an XRSTOR that loads PKRU, WRMSR to IA32_PKRS, CR4.PKE/PKS, CR0.WP)
/// flushes the TLB, so no tag outlives the rights it was computed with.
pub(super) fn tlb_fill(
    cpu: &mut CpuState,
    mem: &PhysMem,
    linear: u64,
    t: &Translation,
    pl: Privilege,
) {
    let lpage = linear & PAGE_MASK;
    let ppage = t.phys & PAGE_MASK;
    if !mem.is_ram(ppage, PAGE_SIZE) {
        return;
    }
    let paging = cpu.cr0 & crate::state::CR0_PG != 0;
    let regs = WalkRegs::from_cpu(cpu);
    let user = pl == Privilege::User;
    let key_ok = |write: bool| key_allows(&regs, t.user, t.key, write, user);
    let (read, write, exec) = if !paging {
        (true, true, true)
    } else if user {
        (
            t.user && key_ok(false),
            t.user && t.writable && key_ok(true),
            t.user && t.executable,
        )
    } else {
        // With SMAP a supervisor access to a user page depends on EFLAGS.AC (and is never
        // allowed for implicit accesses): keep such pages out of the TLB that serves both
        // (the TLB of accesses made with AC set takes them).
        let smap_blocks = t.user && cpu.cr4 & CR4_SMAP != 0 && pl != Privilege::SupervisorAc;
        let smep_blocks = t.user && cpu.cr4 & CR4_SMEP != 0;
        (
            !smap_blocks && key_ok(false),
            !smap_blocks && (t.writable || cpu.cr0 & CR0_WP == 0) && key_ok(true),
            t.executable && !smep_blocks,
        )
    };
    let write = write && t.dirty && !mem.is_code_page(ppage) && !mem.is_table_page(ppage);
    cpu.paging.tlb_fills += 1;
    let tag = |ok: bool| if ok { lpage } else { TlbEntry::INVALID_TAG };
    let i = tlb_index(linear);
    let displaced = cpu.tlb[pl.tlb()][i];
    if displaced.page().is_some_and(|p| p != lpage) {
        cpu.tlb_victims.push(pl.tlb(), displaced);
    }
    cpu.tlb_filled[pl.tlb()][i / 64] |= 1 << (i % 64);
    if paging && t.global {
        cpu.tlb_global[pl.tlb()][i / 64] |= 1 << (i % 64);
    } else {
        cpu.tlb_global[pl.tlb()][i / 64] &= !(1 << (i % 64));
    }
    if paging && t.page_size > PAGE_SIZE {
        cpu.tlb_large = cpu.tlb_large.max(t.page_size);
    }
    let host = mem.host_addr(ppage);
    if write {
        let ram = mem.host_addr(0);
        cpu.tlb_writers.note(&cpu.tlb, ram, host, pl.tlb(), i);
    }
    cpu.tlb[pl.tlb()][i] = TlbEntry {
        read: tag(read),
        write: tag(write),
        addend: host.wrapping_sub(lpage),
        exec: tag(exec),
    };
}

/// Where the TLBs hold writable entries of each guest-physical page: none, one slot, or
/// perhaps several (a page written through two linear aliases, such as a user page and the
/// kernel's direct map of it). The page-fault workload took write permission away from a
/// page about once per fault (the kernel's store to a page table drops the shadow
/// translations that depend on it and stops tracking it; the next walk tracks it again),
/// and reading every filled entry each time was 7-9% of the run.
///
/// Invariant: a slot (not a victim: those are always searched) that holds a writable entry
/// of page `p` is the one `p`'s record names, or the record says several. Fills and recalls
/// into a slot keep it, since they are the only ways a slot gains a writable entry; removing
/// or overwriting entries cannot break it, so flushes and INVLPG need not touch the records
/// (a stale record only costs a look at its slot).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlbWriters {
    /// Per page: 0 none, [`TlbWriters::SEVERAL`], or 1 + the slot (TLB number times
    /// [`TLB_ENTRIES`] plus index). Grown on demand, up to the pages of guest RAM.
    pages: Vec<u32>,
}

impl TlbWriters {
    /// The record of a page that may have writable entries in several slots.
    const SEVERAL: u32 = u32::MAX;

    /// Records that slot `i` of TLB `t` now holds a writable entry of host page `host`
    /// (`ram` is guest RAM's host base).
    fn note(&mut self, tlbs: &Tlbs, ram: u64, host: u64, t: usize, i: usize) {
        let page = (host.wrapping_sub(ram) >> 12) as usize;
        if page >= self.pages.len() {
            self.pages.resize(page + 1, 0);
        }
        let me = 1 + (t * TLB_ENTRIES + i) as u32;
        let rec = &mut self.pages[page];
        *rec = match *rec {
            0 => me,
            r if r == me || r == Self::SEVERAL => r,
            r => {
                let slot = (r - 1) as usize;
                let e = &tlbs[slot / TLB_ENTRIES][slot % TLB_ENTRIES];
                if writes_to(e, host) {
                    Self::SEVERAL
                } else {
                    // By the invariant no other slot writes the page: the record moves.
                    me
                }
            }
        };
    }
}

#[cfg(test)]
impl TlbWriters {
    /// Whether the record of guest-physical page `page` allows a writable entry of it in
    /// slot `slot` (TLB number times [`TLB_ENTRIES`] plus index): the invariant.
    pub(crate) fn covers(&self, page: usize, slot: usize) -> bool {
        matches!(self.pages.get(page), Some(&r) if r == Self::SEVERAL || r == 1 + slot as u32)
    }
}

/// Whether `e` is a writable entry of host page `host`.
fn writes_to(e: &TlbEntry, host: u64) -> bool {
    e.write != TlbEntry::INVALID_TAG && e.write.wrapping_add(e.addend) == host
}

/// Drops write permission from every TLB entry that maps physical page `phys_page` (under
/// any linear alias), so stores to it reach the slow path: a page that now holds translated
/// code, or paging structures the shadow page tables track.
pub fn tlb_protect_phys(cpu: &mut CpuState, mem: &PhysMem, phys_page: u64) {
    if !mem.is_ram(phys_page, PAGE_SIZE) {
        return;
    }
    let host = mem.host_addr(phys_page & PAGE_MASK);
    let protect = |e: &mut TlbEntry| {
        if writes_to(e, host) {
            e.write = TlbEntry::INVALID_TAG;
        }
    };
    cpu.tlb_victims.all_mut().for_each(protect);
    let page = (phys_page >> 12) as usize;
    let Some(rec) = cpu.tlb_writers.pages.get_mut(page) else {
        return;
    };
    match std::mem::take(rec) {
        0 => {}
        TlbWriters::SEVERAL => {
            // Only entries filled since the last flush can be valid.
            for (tlb, filled) in cpu.tlb.iter_mut().zip(cpu.tlb_filled.iter()) {
                for (w, word) in filled.iter().enumerate() {
                    let mut bits = *word;
                    while bits != 0 {
                        protect(&mut tlb[w * 64 + bits.trailing_zeros() as usize]);
                        bits &= bits - 1;
                    }
                }
            }
        }
        r => {
            let slot = (r - 1) as usize;
            protect(&mut cpu.tlb[slot / TLB_ENTRIES][slot % TLB_ENTRIES]);
        }
    }
}

/// The physical address of an access within one page that `pl`'s TLB allows (the tag that
/// `tag` picks matches): what the walk would give, without it. Implicit supervisor accesses
/// use the supervisor TLB too: they differ from explicit ones only on user pages under SMAP
/// (EFLAGS.AC does not open those to them), and the supervisor TLB never tags a user page's
/// data accesses under SMAP, so those still walk and fault.
fn tlb_hit(
    cpu: &CpuState,
    mem: &PhysMem,
    linear: u64,
    pl: Privilege,
    tag: &impl Fn(&TlbEntry) -> u64,
) -> Option<u64> {
    let e = &cpu.tlb[pl.tlb()][tlb_index(linear)];
    (tag(e) == linear & PAGE_MASK)
        .then(|| linear.wrapping_add(e.addend).wrapping_sub(mem.host_addr(0)))
}

/// The addend (host minus linear address) of linear page `linear` if the TLB of CPL 3
/// (`user`) or of CPL 0-2 allows fetches from it now. Generated code that jumps to another
/// page checks the same entry for the same addend: a match proves the page still maps to
/// the physical page its chained target was translated from (the translator's
/// `Cache::link`).
pub fn tlb_fetch_addend(cpu: &CpuState, linear: u64, user: bool) -> Option<u64> {
    let e = &cpu.tlb[usize::from(user)][tlb_index(linear)];
    (e.exec == linear & PAGE_MASK).then_some(e.addend)
}

/// Drops the TLB entries of every privilege that map linear page `linear` (INVLPG).
pub fn tlb_flush_page(cpu: &mut CpuState, linear: u64) {
    cpu.paging.invlpg += 1;
    // Global translations outlive CR3 writes in the shadow tables too; the per-space ones
    // need nothing, being coherent with the paging structures.
    cpu.shadow.invalidate_global(linear);
    let region = match cpu.tlb_large {
        0 => PAGE_MASK,
        large => !(large - 1),
    };
    cpu.rsb.forget(|l| l & region == linear & region);
    for e in cpu.tlb_victims.all_mut() {
        if e.page().is_some_and(|p| p & region == linear & region) {
            *e = TlbEntry::INVALID;
        }
    }
    if cpu.tlb_large != 0 {
        // The address may lie in a large page whose other 4 KiB pieces are cached too: drop
        // every entry within the largest page size cached (more than needed is allowed).
        let region = !(cpu.tlb_large - 1);
        let hit = |tag: u64| tag != TlbEntry::INVALID_TAG && tag & region == linear & region;
        for (tlb, filled) in cpu.tlb.iter_mut().zip(cpu.tlb_filled.iter()) {
            for (w, word) in filled.iter().enumerate() {
                let mut bits = *word;
                while bits != 0 {
                    let e = &mut tlb[w * 64 + bits.trailing_zeros() as usize];
                    if hit(e.read) || hit(e.write) || hit(e.exec) {
                        *e = TlbEntry::INVALID;
                    }
                    bits &= bits - 1;
                }
            }
        }
        return;
    }
    let i = tlb_index(linear);
    let page = linear & PAGE_MASK;
    for t in cpu.tlb.iter_mut() {
        let e = &mut t[i];
        if e.read == page || e.write == page || e.exec == page {
            *e = TlbEntry::INVALID;
        }
    }
}

impl TlbEntry {
    /// The linear page the entry maps, if any of its tags is valid.
    fn page(&self) -> Option<u64> {
        [self.read, self.write, self.exec]
            .into_iter()
            .find(|&t| t != Self::INVALID_TAG)
    }
}

/// The entries fills displaced from each TLB (indexed as [`CpuState::tlb`]), most recent
/// last in round-robin order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TlbVictims {
    entries: [[TlbEntry; TLB_VICTIMS]; TLBS],
    next: [usize; TLBS],
}

impl TlbVictims {
    /// Empty buffers.
    pub const EMPTY: TlbVictims = TlbVictims {
        entries: [[TlbEntry::INVALID; TLB_VICTIMS]; TLBS],
        next: [0; TLBS],
    };

    /// Keeps `e`, displaced from TLB `t`, in place of the oldest victim.
    fn push(&mut self, t: usize, e: TlbEntry) {
        let n = self.next[t];
        self.entries[t][n] = e;
        self.next[t] = (n + 1) % TLB_VICTIMS;
    }

    /// Every victim entry of every TLB, for invalidation.
    pub(crate) fn all_mut(&mut self) -> impl Iterator<Item = &mut TlbEntry> {
        self.entries.iter_mut().flatten()
    }
}

/// Looks for `linear`'s page in the victim buffer of `pl`'s TLB with the tag `tag` picks
/// and, if it is there, swaps it with the entry in its slot. True when it was found.
fn recall(
    cpu: &mut CpuState,
    mem: &PhysMem,
    linear: u64,
    pl: Privilege,
    tag: &impl Fn(&TlbEntry) -> u64,
) -> bool {
    let (t, page) = (pl.tlb(), linear & PAGE_MASK);
    let Some(k) = cpu.tlb_victims.entries[t]
        .iter()
        .position(|e| tag(e) == page)
    else {
        return false;
    };
    let i = tlb_index(linear);
    let e = cpu.tlb_victims.entries[t][k];
    if e.write != TlbEntry::INVALID_TAG {
        let host = e.write.wrapping_add(e.addend);
        cpu.tlb_writers.note(&cpu.tlb, mem.host_addr(0), host, t, i);
    }
    std::mem::swap(&mut cpu.tlb_victims.entries[t][k], &mut cpu.tlb[t][i]);
    cpu.tlb_filled[t][i / 64] |= 1 << (i % 64);
    // Whether the recalled entry was global is not kept: treat it as not (a CR3 write then
    // drops it, which is always allowed).
    cpu.tlb_global[t][i / 64] &= !(1 << (i % 64));
    cpu.paging.tlb_victim_hits += 1;
    true
}

/// [`tlb_hit`], trying the victim buffer before giving up. An access with SMAP open
/// ([`Privilege::SupervisorAc`]) also takes the supervisor TLB's entries: that TLB tags no
/// user page's data accesses under SMAP, and on every other page EFLAGS.AC changes nothing.
/// Generated code's inline checks fill the supervisor TLB with the kernel pages of a copy to
/// or from user memory; without this, REP MOVS in bulk ([`super::rep_bulk`]) missed its
/// kernel page in the other TLB at every iteration.
pub(super) fn tlb_lookup(
    cpu: &mut CpuState,
    mem: &PhysMem,
    linear: u64,
    pl: Privilege,
    tag: impl Fn(&TlbEntry) -> u64,
) -> Option<u64> {
    let lookup = |cpu: &mut CpuState, pl| {
        tlb_hit(cpu, mem, linear, pl, &tag).or_else(|| {
            recall(cpu, mem, linear, pl, &tag).then(|| tlb_hit(cpu, mem, linear, pl, &tag))?
        })
    };
    lookup(cpu, pl).or_else(|| {
        if pl == Privilege::SupervisorAc {
            lookup(cpu, Privilege::Supervisor)
        } else {
            None
        }
    })
}

/// Empties the victim buffers (part of a whole-TLB flush).
pub(crate) fn flush_victims(cpu: &mut CpuState) {
    cpu.tlb_victims = TlbVictims::EMPTY;
}
