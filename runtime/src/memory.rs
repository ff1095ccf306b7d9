//! Guest physical memory, the software TLB in front of it, and the accesses the runtime makes
//! through them at linear addresses.
//!
//! The `unsafe` parts live in two submodules, each with its invariants: `ram` (guest RAM's
//! host mapping between guard pages) and `slow` (the `extern "C"` slow paths generated code
//! calls, which dereference [`CpuState::mem`]).

use std::ops::Range;

use crate::exception::{Exception, Fault};
use crate::paging::{canonical, permits, walk_traced, Access, PagingMode, Translation, WalkRegs};
use crate::state::CpuState;

mod bulk;
mod ram;
mod slow;
mod tlb;
pub use bulk::{rep_bulk, BulkOp};
pub use ram::{host_mapping_permissions, GuestRam, GUARD_BYTES};
pub use slow::{load_slow, rep_bulk_slow, store_slow, SLOW_CODE_RETRY, SLOW_SS64};
pub(crate) use tlb::flush_victims;
pub use tlb::{
    tlb_fetch_addend, tlb_flush_page, tlb_index, tlb_protect_phys, TlbEntry, TlbTable, TlbVictims,
    TlbWriters, Tlbs, TLBS, TLB_ENTRIES, TLB_VICTIMS,
};
use tlb::{tlb_fill, tlb_lookup};

/// The page size that the TLB and code tracking work in.
pub const PAGE_SIZE: u64 = 4096;
const PAGE_MASK: u64 = !(PAGE_SIZE - 1);
/// The privilege of an access, which picks one of the software TLBs: supervisor (explicit
/// accesses at CPL 0-2, and implicit supervisor accesses such as descriptor-table reads),
/// user (explicit accesses at CPL 3), or supervisor with SMAP open (explicit data accesses
/// at CPL 0-2 while EFLAGS.AC lets them reach user pages).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Privilege {
    /// An explicit supervisor-mode access.
    Supervisor,
    /// A user-mode access.
    User,
    /// An implicit supervisor access: the CPU's own reads and writes of system structures,
    /// supervisor-mode whatever the CPL and never allowed to user pages under SMAP.
    Implicit,
    /// An explicit supervisor-mode data access with CR4.SMAP and EFLAGS.AC set, which SMAP
    /// lets reach user pages ([`data_privilege`]).
    SupervisorAc,
}

impl Privilege {
    /// The TLB the access uses (an index into [`CpuState::tlb`]).
    fn tlb(self) -> usize {
        match self {
            Privilege::User => 1,
            Privilege::Supervisor | Privilege::Implicit => 0,
            Privilege::SupervisorAc => 2,
        }
    }
}

/// Errors creating guest memory.
#[derive(Debug, thiserror::Error)]
pub enum MemError {
    /// The host could not map the requested amount of RAM.
    #[error("cannot allocate {size} bytes of guest RAM: {source}")]
    Alloc {
        /// Requested size.
        size: u64,
        /// The host error.
        source: std::io::Error,
    },
    /// The requested size is zero, not page-aligned, or beyond what the key can address.
    #[error("guest RAM size {0:#x} must be a non-zero multiple of 4 KiB below 256 TiB")]
    BadSize(u64),
    /// A load went beyond the end of RAM.
    #[error("{len} bytes at {addr:#x} do not fit in {ram:#x} bytes of guest RAM")]
    OutOfRange {
        /// Guest physical address.
        addr: u64,
        /// Length of the data.
        len: usize,
        /// RAM size.
        ram: u64,
    },
}

/// Port-mapped I/O as seen by the CPU: IN, OUT, INS and OUTS end up here.
pub trait PortIo {
    /// Reads `size` (1, 2 or 4) bytes from `port`.
    fn port_read(&mut self, port: u16, size: u8) -> u32;
    /// Writes `size` (1, 2 or 4) bytes to `port`.
    fn port_write(&mut self, port: u16, size: u8, value: u32);
}

/// Memory-mapped devices as seen by the CPU: every guest physical access outside RAM ends up
/// here (the machine puts its MMIO bus behind it). Accesses reach it only through the slow
/// paths, because TLB entries are never filled for pages that are not RAM.
///
/// An implementation must accept any address, size (1..=8) and value from the guest without
/// panicking; an address nothing decodes reads as all-ones.
pub trait MmioHandler: Send {
    /// Reads `size` bytes (1..=8) at guest physical address `addr`.
    fn mmio_read(&mut self, addr: u64, size: u32) -> u64;
    /// Writes the low `size` bytes (1..=8) of `value` at guest physical address `addr`.
    fn mmio_write(&mut self, addr: u64, size: u32, value: u64);
}

/// Guest physical memory: RAM from address 0, plus the bookkeeping that keeps translated
/// code coherent with stores (which physical pages hold code, which of those were written).
pub struct PhysMem {
    ram: GuestRam,
    /// Tells this memory from any other, for caches that rely on its write tracking.
    id: u64,
    /// One bit per RAM page: set while translated blocks exist for the page.
    code_pages: Vec<u64>,
    /// One bit per RAM page: set while the shadow page tables hold translations computed
    /// from paging-structure entries in the page (`crate::shadow`). Such a page never gets a
    /// TLB write tag, so every store to it comes through [`PhysMem::write_phys`].
    table_pages: Vec<u64>,
    /// Tracked pages written since the shadow tables last looked, and how many stores hit
    /// tracked pages (see [`PhysMem::swap_written_tables`]).
    written_tables: Vec<u64>,
    table_writes: u64,
    /// Bytes of code pages written since the run loop last looked, each range within one
    /// page (see [`PhysMem::take_code_writes`]).
    dirty_code: Vec<Range<u64>>,
    /// Where accesses outside RAM go; without it they float high and writes are dropped.
    mmio: Option<Box<dyn MmioHandler>>,
}

/// The little-endian value of `b` (1 to 8 bytes). The sizes accesses have are loads of
/// their own: a copy of a run-time length into a buffer is a call to `memcpy`, which was
/// about 2% of the vCPU thread in the kernel's init phase (slow paths and the interpreter).
#[inline]
fn le_read(b: &[u8]) -> u64 {
    if let Ok(a) = <[u8; 8]>::try_from(b) {
        return u64::from_le_bytes(a);
    }
    if let Ok(a) = <[u8; 4]>::try_from(b) {
        return u32::from_le_bytes(a).into();
    }
    if let Ok(a) = <[u8; 2]>::try_from(b) {
        return u16::from_le_bytes(a).into();
    }
    if let [x] = b {
        return u64::from(*x);
    }
    let mut buf = [0u8; 8];
    let n = b.len().min(8);
    buf[..n].copy_from_slice(&b[..n]);
    u64::from_le_bytes(buf)
}

/// Stores the low `b.len()` bytes (1 to 8) of `v` into `b`, little-endian (see [`le_read`]).
#[inline]
fn le_write(b: &mut [u8], v: u64) {
    match b.len() {
        8 => b.copy_from_slice(&v.to_le_bytes()),
        4 => b.copy_from_slice(&(v as u32).to_le_bytes()),
        2 => b.copy_from_slice(&(v as u16).to_le_bytes()),
        1 => b[0] = v as u8,
        n => {
            let n = n.min(8);
            b[..n].copy_from_slice(&v.to_le_bytes()[..n]);
        }
    }
}

impl PhysMem {
    /// `size` bytes of zeroed RAM.
    pub fn new(size: u64) -> Result<PhysMem, MemError> {
        let ram = GuestRam::new(size)?;
        let pages = size / PAGE_SIZE;
        static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        Ok(PhysMem {
            ram,
            id: NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            code_pages: vec![0; pages.div_ceil(64) as usize],
            table_pages: vec![0; pages.div_ceil(64) as usize],
            written_tables: Vec::new(),
            table_writes: 0,
            dirty_code: Vec::new(),
            mmio: None,
        })
    }

    /// Routes every access outside RAM to `handler` (the machine's MMIO bus).
    pub fn set_mmio(&mut self, handler: Box<dyn MmioHandler>) {
        self.mmio = Some(handler);
    }

    /// True when accesses outside RAM reach a device (see [`PhysMem::set_mmio`]).
    pub fn has_mmio(&self) -> bool {
        self.mmio.is_some()
    }

    /// RAM size in bytes.
    pub fn ram_size(&self) -> u64 {
        self.ram.len() as u64
    }

    /// The RAM as bytes, for loaders and tests.
    pub fn ram(&self) -> &[u8] {
        self.ram.bytes()
    }

    /// The RAM as mutable bytes, for loaders. Writes here bypass code and paging-structure
    /// tracking: load images before running, or call [`PhysMem::note_write`] for what they wrote
    /// (or flush the CPU's TLB, which empties its shadow page tables too).
    pub fn ram_mut(&mut self) -> &mut [u8] {
        self.ram.bytes_mut()
    }

    /// Copies `data` into RAM at `addr`.
    pub fn load(&mut self, addr: u64, data: &[u8]) -> Result<(), MemError> {
        let end = addr
            .checked_add(data.len() as u64)
            .filter(|&e| e <= self.ram_size())
            .ok_or(MemError::OutOfRange {
                addr,
                len: data.len(),
                ram: self.ram_size(),
            })?;
        self.ram.bytes_mut()[addr as usize..end as usize].copy_from_slice(data);
        self.note_write(addr, data.len() as u64);
        Ok(())
    }

    /// True when `[addr, addr + len)` is RAM.
    pub fn is_ram(&self, addr: u64, len: u64) -> bool {
        addr.checked_add(len).is_some_and(|e| e <= self.ram_size())
    }

    /// Reads `size` bytes (1..=8) at a physical address. Outside RAM the read goes to the
    /// MMIO handler; with none the bus floats high, as on a PC with nothing decoding the
    /// address.
    pub fn read_phys(&mut self, addr: u64, size: u32) -> u64 {
        if !self.is_ram(addr, u64::from(size)) {
            if let Some(h) = self.mmio.as_mut() {
                // A device may answer with more bytes than were read: the access sees its own.
                let size = size.clamp(1, 8);
                return h.mmio_read(addr, size) & (u64::MAX >> (64 - 8 * size));
            }
            tracing::trace!(addr, size, "read from unmapped physical address");
            return u64::MAX >> (64 - 8 * size.clamp(1, 8));
        }
        let a = addr as usize;
        le_read(&self.ram.bytes()[a..a + size as usize])
    }

    /// Reads `size` bytes (1..=8) of RAM at a physical address without touching any device:
    /// outside RAM it reads all-ones. For tests, debuggers and dumps, which must not have side
    /// effects.
    pub fn peek_phys(&self, addr: u64, size: u32) -> u64 {
        let size = size.clamp(1, 8);
        if !self.is_ram(addr, u64::from(size)) {
            return u64::MAX >> (64 - 8 * size);
        }
        let mut buf = [0u8; 8];
        let a = addr as usize;
        buf[..size as usize].copy_from_slice(&self.ram.bytes()[a..a + size as usize]);
        u64::from_le_bytes(buf)
    }

    /// Writes `size` bytes (1..=8) at a physical address; outside RAM the write goes to the
    /// MMIO handler, or is dropped when there is none.
    pub fn write_phys(&mut self, addr: u64, size: u32, value: u64) {
        if !self.is_ram(addr, u64::from(size)) {
            if let Some(h) = self.mmio.as_mut() {
                h.mmio_write(addr, size.clamp(1, 8), value);
                return;
            }
            tracing::trace!(
                addr,
                size,
                value,
                "write to unmapped physical address dropped"
            );
            return;
        }
        let a = addr as usize;
        le_write(&mut self.ram.bytes_mut()[a..a + size as usize], value);
        self.note_write(addr, u64::from(size));
    }

    /// This memory's identity: no two `PhysMem`s of a process share one.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Writes a paging-structure entry with the A/D bits the page walker set. Like
    /// [`PhysMem::write_phys`], except that a tracked page stays tracked: these updates only
    /// add bits the walk found clear, which no cached translation depends on (see
    /// `crate::shadow`).
    pub fn write_paging_entry(&mut self, addr: u64, size: u32, value: u64) {
        if !self.is_table_page(addr) {
            return self.write_phys(addr, size, value);
        }
        // Entries are aligned, so the write stays in this one page.
        self.set_page_bit(Bits::Table, addr, false);
        self.write_phys(addr, size, value);
        self.set_page_bit(Bits::Table, addr, true);
    }

    /// True when the shadow page tables rely on paging-structure entries in the page holding
    /// `addr` (see [`PhysMem::track_table_page`]).
    pub fn is_table_page(&self, addr: u64) -> bool {
        self.page_bit(Bits::Table, addr)
    }

    /// Marks the page holding `addr` as holding paging-structure entries that cached
    /// translations depend on: its next store is reported by
    /// [`PhysMem::swap_written_tables`]. True when it was not marked before; the caller must
    /// then take write permission for it out of its TLB.
    pub fn track_table_page(&mut self, addr: u64) -> bool {
        let was = self.is_table_page(addr);
        self.set_page_bit(Bits::Table, addr, true);
        !was && self.is_table_page(addr)
    }

    /// True when a tracked page was written since the last
    /// [`PhysMem::swap_written_tables`].
    pub fn has_written_tables(&self) -> bool {
        self.table_writes != 0
    }

    /// Swaps the queue of tracked pages (page numbers) written since the last call, each now
    /// untracked, with `empty` (whose capacity the queue keeps, so that a steady stream of
    /// such writes allocates nothing); returns how many stores hit tracked pages.
    pub fn swap_written_tables(&mut self, empty: &mut Vec<u64>) -> u64 {
        debug_assert!(empty.is_empty());
        std::mem::swap(&mut self.written_tables, empty);
        std::mem::take(&mut self.table_writes)
    }

    /// Records that the `len` bytes at physical address `addr` were written, for code
    /// coherence and for the shadow page tables.
    pub fn note_write(&mut self, addr: u64, len: u64) {
        let end = addr.saturating_add(len.max(1));
        let mut start = addr;
        while start < end {
            let page_end = (start & PAGE_MASK).saturating_add(PAGE_SIZE);
            self.note_page_write(start..end.min(page_end));
            start = page_end;
        }
    }

    /// [`PhysMem::note_write`] for bytes within one page.
    fn note_page_write(&mut self, bytes: Range<u64>) {
        if self.is_table_page(bytes.start) {
            // Untracked at once: the shadow tables drop what depended on the page before
            // their next lookup, and until a walk tracks it again stores may go fast.
            self.set_page_bit(Bits::Table, bytes.start, false);
            self.written_tables.push(bytes.start / PAGE_SIZE);
            self.table_writes += 1;
        }
        if self.is_code_page(bytes.start) {
            // A string store or a copy writes runs of adjacent bytes: one range for them.
            match self.dirty_code.last_mut() {
                Some(r)
                    if r.start & PAGE_MASK == bytes.start & PAGE_MASK
                        && r.start <= bytes.end
                        && bytes.start <= r.end =>
                {
                    r.start = r.start.min(bytes.start);
                    r.end = r.end.max(bytes.end);
                }
                _ => self.dirty_code.push(bytes),
            }
        }
    }

    /// True when translated code exists for the physical page holding `addr`.
    pub fn is_code_page(&self, addr: u64) -> bool {
        self.page_bit(Bits::Code, addr)
    }

    /// Marks or unmarks the physical page holding `addr` as holding translated code.
    pub fn set_code_page(&mut self, addr: u64, on: bool) {
        self.set_page_bit(Bits::Code, addr, on);
    }

    fn bits(&self, which: Bits) -> &Vec<u64> {
        match which {
            Bits::Code => &self.code_pages,
            Bits::Table => &self.table_pages,
        }
    }

    fn page_bit(&self, which: Bits, addr: u64) -> bool {
        let p = addr / PAGE_SIZE;
        self.bits(which)
            .get((p / 64) as usize)
            .is_some_and(|w| w & (1 << (p % 64)) != 0)
    }

    fn set_page_bit(&mut self, which: Bits, addr: u64, on: bool) {
        let p = addr / PAGE_SIZE;
        let bits = match which {
            Bits::Code => &mut self.code_pages,
            Bits::Table => &mut self.table_pages,
        };
        if let Some(w) = bits.get_mut((p / 64) as usize) {
            if on {
                *w |= 1 << (p % 64);
            } else {
                *w &= !(1 << (p % 64));
            }
        }
    }

    /// The bytes of code pages written since the last call, each range within one page:
    /// blocks holding them must be invalidated.
    pub fn take_code_writes(&mut self) -> Vec<Range<u64>> {
        std::mem::take(&mut self.dirty_code)
    }

    /// True when some code page was written and not yet handled.
    pub fn has_dirty_code(&self) -> bool {
        !self.dirty_code.is_empty()
    }

    /// Host address of a physical RAM address, from which TLB addends are formed; callers
    /// check [`PhysMem::is_ram`] first.
    pub fn host_addr(&self, addr: u64) -> u64 {
        self.ram.host_base() + addr
    }
}

/// The per-page bitmaps of [`PhysMem`].
#[derive(Clone, Copy)]
enum Bits {
    Code,
    Table,
}

/// Translates `linear` for one access: the page walk (A/D updates included) or, with paging
/// off, the identity. `user` marks an explicit access at CPL 3. A non-canonical address in
/// long mode is #GP(0). A page fault loads CR2 with `linear` here, when it is detected (as
/// QEMU does; if it turns into a double fault, CR2 still holds the address, as on hardware).
pub fn translate(
    cpu: &mut CpuState,
    mem: &mut PhysMem,
    linear: u64,
    access: Access,
    user: bool,
) -> Result<Translation, Fault> {
    walk_for(cpu, mem, linear, access, user, false)
}

/// [`translate`] for an explicit access (`implicit = false`: EFLAGS.AC may open user pages to
/// supervisor data accesses under SMAP) or an implicit supervisor one (never under SMAP).
fn walk_for(
    cpu: &mut CpuState,
    mem: &mut PhysMem,
    linear: u64,
    access: Access,
    user: bool,
    implicit: bool,
) -> Result<Translation, Fault> {
    let regs = WalkRegs::from_cpu(cpu);
    if regs.mode() == PagingMode::Level4 && !canonical(linear) {
        return Err(Fault::with_code(Exception::GeneralProtection, 0));
    }
    let ac = cpu.rflags & crate::flags::AC != 0;
    let mode = regs.mode();
    if mode != PagingMode::Off {
        cpu.shadow.sync(mem);
        if let Some(t) = cpu.shadow.lookup(regs.root(), mode, linear) {
            if permits(&regs, &t, access, user, implicit, ac) {
                cpu.shadow.stats.hits += 1;
                return Ok(t);
            }
        }
    }
    cpu.paging.walks += 1;
    match walk_traced(mem, &regs, linear, access, user, implicit, ac) {
        Ok((t, trace)) => {
            if mode != PagingMode::Off {
                let newly = cpu
                    .shadow
                    .insert(mem, regs.root(), mode, linear, &t, &trace);
                for &page in newly.pages() {
                    tlb_protect_phys(cpu, mem, page);
                }
            }
            Ok(t)
        }
        Err(f) => {
            if f.exception == Exception::PageFault {
                cpu.paging.page_faults += 1;
                cpu.cr2 = linear;
            }
            Err(f)
        }
    }
}

/// The privilege explicit accesses run at now.
pub fn current_privilege(cpu: &CpuState) -> Privilege {
    if crate::segment::cpl(cpu) == 3 {
        Privilege::User
    } else {
        Privilege::Supervisor
    }
}

/// The privilege of the CPU's explicit data accesses now: [`current_privilege`], except
/// that under CR4.SMAP with EFLAGS.AC set a supervisor's accesses use their own TLB, whose
/// entries SMAP does not close to user pages. The kernel's copies to and from user memory
/// run between STAC and CLAC; in the supervisor TLB, where SMAP keeps user pages' data tags
/// invalid, each of their accesses walked. Clearing AC needs no flush: accesses then use
/// the supervisor TLB again. Generated code never reads this TLB (its blocks check the
/// supervisor TLB inline), but its slow paths find the entry without a walk.
pub fn data_privilege(cpu: &CpuState) -> Privilege {
    privilege_at(cpu, crate::segment::cpl(cpu))
}

/// The privilege of explicit data accesses made at privilege level `cpl` (which a privilege
/// change may be about to enter) with the current CR4.SMAP and EFLAGS.AC: see
/// [`data_privilege`].
pub fn privilege_at(cpu: &CpuState, cpl: u8) -> Privilege {
    if cpl == 3 {
        Privilege::User
    } else if cpu.cr4 & crate::paging::CR4_SMAP != 0 && cpu.rflags & crate::flags::AC != 0 {
        Privilege::SupervisorAc
    } else {
        Privilege::Supervisor
    }
}

/// The mask applied to linear addresses in the current mode (they wrap at 4 GiB outside long
/// mode).
fn linear_mask(cpu: &CpuState) -> u64 {
    if cpu.efer & crate::state::EFER_LMA != 0 && cpu.mode == crate::CpuMode::Long64 {
        u64::MAX
    } else {
        0xffff_ffff
    }
}

/// Reads `size` bytes (1..=8) at a linear address with an explicit access at privilege
/// `pl`; fills that privilege's TLB.
pub fn read_as(
    cpu: &mut CpuState,
    mem: &mut PhysMem,
    linear: u64,
    size: u32,
    pl: Privilege,
) -> Result<u64, Fault> {
    if (linear & !PAGE_MASK) + u64::from(size) > PAGE_SIZE {
        let mask = linear_mask(cpu);
        let mut v = 0u64;
        for i in 0..size {
            v |= read_as(cpu, mem, linear.wrapping_add(u64::from(i)) & mask, 1, pl)? << (8 * i);
        }
        return Ok(v);
    }
    if let Some(phys) = tlb_lookup(cpu, mem, linear, pl, |e| e.read) {
        cpu.paging.data_hits += 1;
        return Ok(mem.read_phys(phys, size));
    }
    cpu.paging.data_misses += 1;
    let t = walk_for(
        cpu,
        mem,
        linear,
        Access::Read,
        pl == Privilege::User,
        pl == Privilege::Implicit,
    )?;
    tlb_fill(cpu, mem, linear, &t, pl);
    note_mmio(cpu, mem, t.phys, size);
    Ok(mem.read_phys(t.phys, size))
}

/// Writes `size` bytes (1..=8) at a linear address with an explicit access at privilege
/// `pl`. A page-crossing write checks both pages before changing either, so a fault leaves
/// memory untouched.
pub fn write_as(
    cpu: &mut CpuState,
    mem: &mut PhysMem,
    linear: u64,
    size: u32,
    value: u64,
    pl: Privilege,
) -> Result<(), Fault> {
    write_or_decline(cpu, mem, linear, size, value, pl, false).map(|_| ())
}

/// [`write_as`], except that with `decline_code` a write into a page holding translated
/// code is not made: it returns `Ok(false)` with memory unchanged (see [`SLOW_CODE_RETRY`]).
/// Otherwise it returns `Ok(true)` once written.
pub(super) fn write_or_decline(
    cpu: &mut CpuState,
    mem: &mut PhysMem,
    linear: u64,
    size: u32,
    value: u64,
    pl: Privilege,
    decline_code: bool,
) -> Result<bool, Fault> {
    let (user, implicit) = (pl == Privilege::User, pl == Privilege::Implicit);
    if (linear & !PAGE_MASK) + u64::from(size) > PAGE_SIZE {
        let mask = linear_mask(cpu);
        let last = linear.wrapping_add(u64::from(size) - 1) & mask;
        let first = walk_for(cpu, mem, linear, Access::Write, user, implicit)?;
        let second = walk_for(cpu, mem, last, Access::Write, user, implicit)?;
        if decline_code && (mem.is_code_page(first.phys) || mem.is_code_page(second.phys)) {
            return Ok(false);
        }
        for i in 0..size {
            let a = linear.wrapping_add(u64::from(i)) & mask;
            write_as(cpu, mem, a, 1, value >> (8 * i), pl)?;
        }
        return Ok(true);
    }
    if let Some(phys) = tlb_lookup(cpu, mem, linear, pl, |e| e.write) {
        // A writable entry never maps a code page, a tracked paging-structure page or a
        // page whose dirty bit is clear.
        cpu.paging.data_hits += 1;
        mem.write_phys(phys, size, value);
        return Ok(true);
    }
    cpu.paging.data_misses += 1;
    let t = walk_for(cpu, mem, linear, Access::Write, user, implicit)?;
    tlb_fill(cpu, mem, linear, &t, pl);
    if mem.is_code_page(t.phys) {
        if decline_code {
            return Ok(false);
        }
        cpu.smc_pending = 1;
    }
    note_mmio(cpu, mem, t.phys, size);
    mem.write_phys(t.phys, size, value);
    Ok(true)
}

/// A device access may raise an interrupt or move a timer deadline: ask generated code to
/// come back to the run loop at its next block exit so the machine can look.
fn note_mmio(cpu: &CpuState, mem: &PhysMem, phys: u64, size: u32) {
    if mem.mmio.is_some() && !mem.is_ram(phys, u64::from(size)) {
        cpu.request_device_attention();
    }
}

/// Reads at a linear address as an implicit supervisor access (descriptor tables, the TSS,
/// the IDT: accesses the CPU makes at CPL 0 whatever the CPL; stack frames are explicit
/// accesses, see `interrupt::stack`).
pub fn read_linear(
    cpu: &mut CpuState,
    mem: &mut PhysMem,
    linear: u64,
    size: u32,
) -> Result<u64, Fault> {
    read_as(cpu, mem, linear, size, Privilege::Implicit)
}

/// Writes at a linear address as an implicit supervisor access (see [`read_linear`]).
pub fn write_linear(
    cpu: &mut CpuState,
    mem: &mut PhysMem,
    linear: u64,
    size: u32,
    value: u64,
) -> Result<(), Fault> {
    write_as(cpu, mem, linear, size, value, Privilege::Implicit)
}

/// Reads at a linear address as an explicit access at the current privilege level: what
/// guest instructions do.
pub fn read_data(
    cpu: &mut CpuState,
    mem: &mut PhysMem,
    linear: u64,
    size: u32,
) -> Result<u64, Fault> {
    let pl = data_privilege(cpu);
    read_as(cpu, mem, linear, size, pl)
}

/// Writes at a linear address as an explicit access at the current privilege level.
pub fn write_data(
    cpu: &mut CpuState,
    mem: &mut PhysMem,
    linear: u64,
    size: u32,
    value: u64,
) -> Result<(), Fault> {
    let pl = data_privilege(cpu);
    write_as(cpu, mem, linear, size, value, pl)
}

/// The physical address instruction bytes at `linear` are fetched from, at the current
/// privilege level, through the TLB's fetch tags (walking and filling on a miss). `None`
/// as the error's absence of RAM is not a fault: the bytes then read as the bus floats.
pub fn fetch_phys(cpu: &mut CpuState, mem: &mut PhysMem, linear: u64) -> Result<u64, Fault> {
    let pl = current_privilege(cpu);
    if let Some(phys) = tlb_lookup(cpu, mem, linear, pl, |e| e.exec) {
        cpu.paging.fetch_hits += 1;
        return Ok(phys);
    }
    cpu.paging.fetch_misses += 1;
    let t = translate(cpu, mem, linear, Access::Execute, pl == Privilege::User)?;
    tlb_fill(cpu, mem, linear, &t, pl);
    Ok(t.phys)
}

/// [`fetch_phys`] for a fetch the CPU has not committed to (the decoder looking at the page
/// after a block's first one, the cache re-checking a page-crossing block): a failure leaves
/// no architectural trace (CR2 keeps its value) and is not a fault.
pub fn probe_fetch_phys(cpu: &mut CpuState, mem: &mut PhysMem, linear: u64) -> Option<u64> {
    let (cr2, faults) = (cpu.cr2, cpu.paging.page_faults);
    let r = fetch_phys(cpu, mem, linear).ok();
    cpu.cr2 = cr2;
    // The fetch that does fault is the CPU's own, later; count that one.
    cpu.paging.page_faults = faults;
    r
}

#[cfg(test)]
pub(crate) mod tests;
