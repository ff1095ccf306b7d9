//! The page-table walker: linear to physical translation as the SDM (Vol. 3, chapter 4)
//! describes it, with the access-rights checks and the accessed/dirty bit updates.
//!
//! [`walk`] is pure apart from the A/D writes: it reads the paging structures from a
//! [`PhysMem`], decides, and on success writes the A and D bits back. It knows nothing about
//! the software TLB; the memory slow paths call it on a TLB miss and cache the
//! [`Translation`].
//!
//! Modes (chosen by [`WalkRegs::mode`]):
//! - CR0.PG = 0: no paging, the linear address is the physical address.
//! - 32-bit paging (CR4.PAE = 0): two levels of 4-byte entries, 4 KiB pages, and 4 MiB pages
//!   when CR4.PSE = 1, with PSE-36 supplying physical bits 39:32 from PDE bits 20:13.
//! - PAE paging (CR4.PAE = 1, EFER.LMA = 0): the four PDPTEs, then two levels of 8-byte
//!   entries; 4 KiB and 2 MiB pages.
//! - 4-level paging (EFER.LMA = 1): 4 KiB, 2 MiB and 1 GiB pages. 5-level paging (CR4.LA57)
//!   is not advertised and not implemented.
//!
//! Choices where the SDM leaves room, or where this model differs from hardware:
//! - The physical-address width (MAXPHYADDR) is [`MAXPHYADDR`] = 40 bits. 1 GiB pages are
//!   always allowed: the CPUID the guest sees must advertise Page1GB (and PSE, PSE-36, PAE,
//!   NX, SMEP, SMAP) for this to be faithful.
//! - The PAE PDPTEs are read from memory at every walk, not loaded into registers at MOV CR3
//!   time. A PDPTE with a reserved bit set therefore raises #PF with RSVD at the access rather
//!   than #GP at the MOV CR3 that loaded it.
//! - A and D bits are written only when the walk succeeds. The SDM allows a processor to set
//!   the A bits of the upper levels even when the walk ends in a fault; this model does not.
//!   Bits already set are not rewritten. PAE PDPTEs have no A bit (bit 5 is reserved there)
//!   and are never written. The write is a plain store of the whole entry (4 or
//!   8 bytes) through [`PhysMem::write_phys`], which is atomic enough for one CPU.
//! - Paging structures outside RAM read as all ones, like a floating bus ([`PhysMem::read_phys`]).
//!   Such an entry is present with every reserved bit set, so PAE and 4-level walks fault with
//!   RSVD, as does a 32-bit PDE when CR4.PSE = 1 (PS plus reserved bit 21). With 32-bit paging
//!   and CR4.PSE = 0 there are no reserved bits: the all-ones PDE points to a page table at
//!   0xffff_f000, whose all-ones PTE maps the page at 0xffff_f000 with every permission, just
//!   as a real bus would. A/D writes to such entries are dropped.
//! - Linear-address width: 32-bit and PAE paging use bits 31:0 of `linear` and ignore the
//!   rest; 4-level paging uses bits 47:0. A non-canonical address is a #GP (or #SS) that the
//!   caller raises before walking; the walker does not check it. With paging off the address
//!   is returned unchanged (A20 masking, if any, is the caller's).
//! - Protection keys (SDM Vol. 3 4.6.2) apply under 4-level paging only: the leaf entry's bits
//!   62:59 are the page's key, checked against PKRU for user-mode pages (CR4.PKE) and against
//!   IA32_PKRS for supervisor-mode pages (CR4.PKS), for data accesses only ([`key_allows`]).
//!   As in QEMU, a user-mode access to a supervisor-mode page faults on U/S before any key is
//!   looked at; otherwise a key that refuses the access faults with PK in the error code even
//!   when R/W or SMAP would refuse it too (the SDM defines PK by the key alone).

use crate::exception::{Exception, Fault};
use crate::memory::PhysMem;
use crate::state::{CpuState, CR0_PG, CR4_PAE, CR4_PKE, CR4_PKS, EFER_LMA};

#[cfg(test)]
mod tests;

/// The physical-address width (MAXPHYADDR) of the modelled CPU, in bits.
pub const MAXPHYADDR: u32 = 40;

/// CR0.WP: supervisor writes honour read-only pages.
pub const CR0_WP: u64 = 1 << 16;
/// CR4.PSE: 4 MiB pages under 32-bit paging.
pub const CR4_PSE: u64 = 1 << 4;
/// CR4.PGE: global pages.
pub const CR4_PGE: u64 = 1 << 7;
/// CR4.SMEP: supervisor-mode execution prevention.
pub const CR4_SMEP: u64 = 1 << 20;
/// CR4.SMAP: supervisor-mode access prevention.
pub const CR4_SMAP: u64 = 1 << 21;
/// EFER.NXE: the XD bit of PAE and 4-level entries is honoured (else it is reserved).
pub const EFER_NXE: u64 = 1 << 11;

/// Bits of a paging-structure entry.
pub mod pte {
    /// Present.
    pub const P: u64 = 1 << 0;
    /// Read/write: writes allowed when set.
    pub const RW: u64 = 1 << 1;
    /// User/supervisor: user-mode accesses allowed when set.
    pub const US: u64 = 1 << 2;
    /// Page-level write-through.
    pub const PWT: u64 = 1 << 3;
    /// Page-level cache disable.
    pub const PCD: u64 = 1 << 4;
    /// Accessed.
    pub const A: u64 = 1 << 5;
    /// Dirty (leaf entries only).
    pub const D: u64 = 1 << 6;
    /// Page size: the entry maps a large page (PDE, 4-level PDPTE); PAT in a 4 KiB PTE.
    pub const PS: u64 = 1 << 7;
    /// Global (leaf entries only; honoured when CR4.PGE = 1).
    pub const G: u64 = 1 << 8;
    /// Execute-disable (PAE and 4-level entries, when EFER.NXE = 1).
    pub const XD: u64 = 1 << 63;
}

/// Bits of the page-fault error code.
pub mod pf {
    /// 0: the page was not present; 1: a protection or reserved-bit violation.
    pub const P: u32 = 1 << 0;
    /// The access was a write.
    pub const W: u32 = 1 << 1;
    /// The access was a user-mode access (CPL 3 and not an implicit supervisor access).
    pub const U: u32 = 1 << 2;
    /// A reserved bit was set in a paging-structure entry.
    pub const RSVD: u32 = 1 << 3;
    /// The access was an instruction fetch and NX (PAE/4-level with EFER.NXE) or SMEP is on.
    pub const ID: u32 = 1 << 4;
    /// The page's protection key refused the data access (PKRU or IA32_PKRS).
    pub const PK: u32 = 1 << 5;
}

/// The kind of memory access being translated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Access {
    /// A data read (including the read half of a read-modify-write that has not faulted yet).
    Read,
    /// A data write.
    Write,
    /// An instruction fetch.
    Execute,
}

/// The paging mode selected by CR0, CR4 and EFER.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PagingMode {
    /// CR0.PG = 0: linear addresses are physical.
    Off,
    /// 32-bit paging (CR4.PAE = 0).
    Bits32,
    /// PAE paging (CR4.PAE = 1, EFER.LMA = 0).
    Pae,
    /// 4-level paging (EFER.LMA = 1).
    Level4,
}

/// The control registers a walk depends on, copied from [`CpuState`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WalkRegs {
    /// CR0 (PG, WP).
    pub cr0: u64,
    /// CR3 (the root of the paging structures).
    pub cr3: u64,
    /// CR4 (PSE, PAE, PGE, SMEP, SMAP).
    pub cr4: u64,
    /// EFER (NXE, LMA).
    pub efer: u64,
    /// PKRU: the key rights of user-mode pages, when CR4.PKE = 1.
    pub pkru: u32,
    /// IA32_PKRS: the key rights of supervisor-mode pages, when CR4.PKS = 1.
    pub pkrs: u32,
}

impl WalkRegs {
    /// The registers of `cpu`.
    pub fn from_cpu(cpu: &CpuState) -> WalkRegs {
        WalkRegs {
            cr0: cpu.cr0,
            cr3: cpu.cr3,
            cr4: cpu.cr4,
            efer: cpu.efer,
            pkru: cpu.pkru,
            pkrs: cpu.msr.pkrs,
        }
    }

    /// The paging mode these registers select. EFER.LMA selects 4-level paging whatever
    /// CR4.PAE says (the CPU never lets LMA be set without PAE).
    pub fn mode(&self) -> PagingMode {
        if self.cr0 & CR0_PG == 0 {
            PagingMode::Off
        } else if self.efer & EFER_LMA != 0 {
            PagingMode::Level4
        } else if self.cr4 & CR4_PAE != 0 {
            PagingMode::Pae
        } else {
            PagingMode::Bits32
        }
    }

    /// The physical address of the paging-structure root CR3 selects (without its flag and
    /// PCID bits): what tells one address space from another.
    pub fn root(&self) -> u64 {
        match self.mode() {
            PagingMode::Off => 0,
            PagingMode::Bits32 => self.cr3 & 0xffff_f000,
            PagingMode::Pae => self.cr3 & 0xffff_ffe0,
            PagingMode::Level4 => self.cr3 & ADDR_MASK,
        }
    }

    /// True when the XD bit is honoured: PAE or 4-level paging with EFER.NXE = 1.
    pub fn nx_enabled(&self) -> bool {
        matches!(self.mode(), PagingMode::Pae | PagingMode::Level4) && self.efer & EFER_NXE != 0
    }

    /// The key rights register that governs pages of this kind (`user_page`: U/S set at
    /// every level): PKRU under CR4.PKE for user-mode pages, IA32_PKRS under CR4.PKS for
    /// supervisor-mode pages, or 0 (no restriction) when that is off or paging is not
    /// 4-level.
    fn key_rights(&self, user_page: bool) -> u32 {
        let (enable, rights) = if user_page {
            (CR4_PKE, self.pkru)
        } else {
            (CR4_PKS, self.pkrs)
        };
        if self.mode() == PagingMode::Level4 && self.cr4 & enable != 0 {
            rights
        } else {
            0
        }
    }
}

/// Whether `v` is a canonical linear address: bits 63:47 all equal (48-bit linear addresses;
/// the CPU model has no 5-level paging). Every 64-bit address check of the CPU uses this one.
pub fn canonical(v: u64) -> bool {
    ((v as i64) << 16 >> 16) as u64 == v
}

/// True when the protection key `key` of a page lets a data access through (SDM Vol. 3
/// 4.6.2): access-disable (AD, bit 2 * key of the rights register) refuses every data
/// access; write-disable (WD, bit 2 * key + 1) refuses user-mode writes, and supervisor-mode
/// writes when CR0.WP = 1. `user_page`: U/S was set at every level (PKRU decides, else
/// IA32_PKRS); `user_access`: an explicit access at CPL 3. Instruction fetches are never
/// subject to keys: callers do not ask for them.
pub fn key_allows(
    regs: &WalkRegs,
    user_page: bool,
    key: u8,
    write: bool,
    user_access: bool,
) -> bool {
    let rights = regs.key_rights(user_page) >> (2 * u32::from(key & 0xf));
    let (ad, wd) = (rights & 1 != 0, rights & 2 != 0);
    !(ad || (write && wd && (user_access || regs.cr0 & CR0_WP != 0)))
}

/// A successful translation.
///
/// The permission fields are the page's effective attributes, combined over every level (R/W
/// and U/S ANDed, XD ORed); they are not "what this access may do". A cache of translations
/// must re-apply the rules of [`walk`] (CR0.WP, SMEP, SMAP, CPL) before reusing one for a
/// different kind of access, and must walk again for the first write to a page that is not
/// [`Translation::dirty`] so that the D bit gets set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Translation {
    /// The physical address of the accessed byte.
    pub phys: u64,
    /// The size of the page that maps it: 4 KiB, 2 MiB, 4 MiB or 1 GiB.
    pub page_size: u64,
    /// R/W was set at every level.
    pub writable: bool,
    /// U/S was set at every level: a user-mode page.
    pub user: bool,
    /// Instruction fetches are not blocked by XD (no level had XD set, or NX is off).
    pub executable: bool,
    /// The leaf has G set and CR4.PGE = 1.
    pub global: bool,
    /// The leaf's D bit is set (after this walk's update). True with paging off.
    pub dirty: bool,
    /// The protection key (bits 62:59 of the leaf) under 4-level paging; 0 otherwise. See
    /// [`key_allows`] for what it restricts.
    pub key: u8,
}

/// 4 KiB.
const SIZE_4K: u64 = 1 << 12;

/// Bits `hi..=lo` set.
const fn bits(hi: u32, lo: u32) -> u64 {
    (u64::MAX >> (63 - hi)) & (u64::MAX << lo)
}

/// Physical-address bits of a 4 KiB-aligned table or page: MAXPHYADDR-1..=12.
const ADDR_MASK: u64 = bits(MAXPHYADDR - 1, 12);

/// One paging-structure entry that the walk used, for the A/D update.
#[derive(Clone, Copy, Default)]
struct Used {
    addr: u64,
    value: u64,
    /// Entry size in bytes (4 or 8).
    size: u32,
}

/// What the walk found, before the permission check.
struct Leaf {
    phys: u64,
    page_size: u64,
    value: u64,
    writable: bool,
    user: bool,
    xd: bool,
    /// The protection key (4-level leaves only).
    key: u8,
}

/// The entries a walk touched (at most four; PAE PDPTEs have no A bit and are not listed).
#[derive(Default)]
struct Path {
    used: [Used; 4],
    len: usize,
    /// Every entry read, the PAE PDPTE included.
    trace: Trace,
}

impl Path {
    fn push(&mut self, addr: u64, value: u64, size: u32) {
        self.trace.push(addr);
        if let Some(slot) = self.used.get_mut(self.len) {
            *slot = Used { addr, value, size };
            self.len += 1;
        }
    }
}

/// The physical addresses of the paging-structure entries a successful walk read, root
/// first (at most four: a PAE walk reads a PDPTE, a PDE and a PTE; a 4-level walk one entry
/// per level). A cache of the translation stays valid while none of them is written (see
/// `crate::shadow`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Trace {
    addrs: [u64; 4],
    len: usize,
}

impl Trace {
    /// The entries read, root first.
    pub fn entries(&self) -> &[u64] {
        &self.addrs[..self.len]
    }

    fn push(&mut self, addr: u64) {
        if let Some(slot) = self.addrs.get_mut(self.len) {
            *slot = addr;
            self.len += 1;
        }
    }
}

/// Writes 4-level paging structures that map the first 512 GiB of linear addresses onto
/// the same physical addresses (1 GiB pages, writable, user, A and D already set), and the
/// same 512 GiB again from the start of the upper half (0xffff_8000_0000_0000, where kernels
/// keep their direct map), into the two pages at physical `at`; returns the CR3 value that
/// selects them.
///
/// Long mode cannot run with paging off, so the flat 64-bit test machines use this: the
/// guest sees linear = physical, as 32-bit flat guests do without paging.
pub fn identity_map(mem: &mut PhysMem, at: u64) -> u64 {
    let flags = pte::P | pte::RW | pte::US | pte::A;
    let pdpt = at + SIZE_4K;
    mem.write_phys(at, 8, pdpt | flags);
    for i in 1..512 {
        let e = if i == 256 { pdpt | flags } else { 0 };
        mem.write_phys(at + 8 * i, 8, e);
    }
    for i in 0..512u64 {
        mem.write_phys(pdpt + 8 * i, 8, (i << 30) | flags | pte::D | pte::PS);
    }
    at
}

/// Translates `linear` for an access of kind `access`.
///
/// - `user`: the access is made at CPL 3.
/// - `implicit_supervisor`: the access is an implicit supervisor-mode access (descriptor
///   tables, TSS, ...) whatever the CPL. A user-mode access is `user && !implicit_supervisor`;
///   every other access is a supervisor-mode access.
/// - `ac`: EFLAGS.AC. With CR4.SMAP = 1 it lets explicit supervisor data accesses reach
///   user-mode pages; implicit supervisor accesses to user pages fault regardless.
///
/// On failure returns a #PF [`Fault`] whose error code has P, W/R, U/S, RSVD, I/D and PK as
/// the SDM (4.7) defines them; the caller sets CR2 to `linear`. On success the A bit of every
/// paging-structure entry used, and the D bit of the leaf on a write, are set in memory.
///
/// ```
/// use crane86_runtime::paging::{pte, walk, Access, WalkRegs};
/// use crane86_runtime::state::{CR0_PG, CR4_PAE, EFER_LMA};
/// use crane86_runtime::PhysMem;
/// let mut mem = PhysMem::new(1 << 20).unwrap();
/// let rwp = pte::P | pte::RW;
/// // PML4 at 0x1000, PDPT at 0x2000, a 2 MiB page at 0x20_0000 for linear 0.
/// mem.write_phys(0x1000, 8, 0x2000 | rwp);
/// mem.write_phys(0x2000, 8, 0x3000 | rwp);
/// mem.write_phys(0x3000, 8, 0x20_0000 | pte::PS | rwp);
/// let (cr0, cr3, cr4, efer) = (CR0_PG | 1, 0x1000, CR4_PAE, EFER_LMA);
/// let regs = WalkRegs { cr0, cr3, cr4, efer, ..Default::default() };
/// let t = walk(&mut mem, &regs, 0x1234, Access::Write, false, false, false).unwrap();
/// assert_eq!((t.phys, t.page_size), (0x20_1234, 2 << 20));
/// assert_eq!(mem.read_phys(0x3000, 8) & (pte::A | pte::D), pte::A | pte::D);
/// // A user-mode access to this supervisor page: #PF with P and U/S set.
/// let f = walk(&mut mem, &regs, 0x1234, Access::Read, true, false, false).unwrap_err();
/// assert_eq!(f.error_code, 0b101);
/// ```
pub fn walk(
    mem: &mut PhysMem,
    regs: &WalkRegs,
    linear: u64,
    access: Access,
    user: bool,
    implicit_supervisor: bool,
    ac: bool,
) -> Result<Translation, Fault> {
    walk_traced(mem, regs, linear, access, user, implicit_supervisor, ac).map(|(t, _)| t)
}

/// [`walk`], also returning the paging-structure entries it read, for a cache of the
/// translation that must notice when they change.
pub fn walk_traced(
    mem: &mut PhysMem,
    regs: &WalkRegs,
    linear: u64,
    access: Access,
    user: bool,
    implicit_supervisor: bool,
    ac: bool,
) -> Result<(Translation, Trace), Fault> {
    let mode = regs.mode();
    if mode == PagingMode::Off {
        let t = Translation {
            phys: linear,
            page_size: SIZE_4K,
            writable: true,
            user: true,
            executable: true,
            global: false,
            dirty: true,
            key: 0,
        };
        return Ok((t, Trace::default()));
    }
    let nxe = regs.nx_enabled();
    let mut path = Path::default();
    let leaf = match mode {
        PagingMode::Bits32 => walk32(mem, regs, linear, &mut path),
        _ => walk_long(
            mem,
            regs,
            linear,
            nxe,
            mode == PagingMode::Level4,
            &mut path,
        ),
    };
    let leaf = leaf.map_err(|bits| page_fault(regs, access, user, implicit_supervisor, bits))?;
    let rights = Rights {
        user: leaf.user,
        writable: leaf.writable,
        xd: nxe && leaf.xd,
        key: leaf.key,
    };
    check(regs, &rights, access, user, implicit_supervisor, ac)
        .map_err(|bits| page_fault(regs, access, user, implicit_supervisor, bits))?;

    // Success: set A everywhere, D in the leaf on a write. These updates only ever add bits
    // the walk found clear, so they are not writes a cache of translations must react to.
    let last = path.len.saturating_sub(1);
    for (i, e) in path.used[..path.len].iter().enumerate() {
        let mut v = e.value | pte::A;
        if i == last && access == Access::Write {
            v |= pte::D;
        }
        if v != e.value {
            mem.write_paging_entry(e.addr, e.size, v);
        }
    }

    let t = Translation {
        phys: leaf.phys,
        page_size: leaf.page_size,
        writable: leaf.writable,
        user: leaf.user,
        executable: !rights.xd,
        global: leaf.value & pte::G != 0 && regs.cr4 & CR4_PGE != 0,
        dirty: leaf.value & pte::D != 0 || access == Access::Write,
        key: leaf.key,
    };
    Ok((t, path.trace))
}

/// A page's rights, combined over every level of its walk.
struct Rights {
    user: bool,
    writable: bool,
    /// Fetches are blocked (XD set at some level, with NX on).
    xd: bool,
    key: u8,
}

/// The #PF of an access, with `bits` (P, RSVD, PK) added to what the access itself puts in
/// the error code.
fn page_fault(regs: &WalkRegs, access: Access, user: bool, implicit: bool, bits: u32) -> Fault {
    let mut code = bits;
    if access == Access::Write {
        code |= pf::W;
    }
    if user && !implicit {
        code |= pf::U;
    }
    if access == Access::Execute && (regs.nx_enabled() || regs.cr4 & CR4_SMEP != 0) {
        code |= pf::ID;
    }
    Fault::with_code(Exception::PageFault, code)
}

/// Whether a present page with `rights` allows the access under `regs`: `Err` holds the
/// error-code bits of the refusal (P, or P|PK).
fn check(
    regs: &WalkRegs,
    rights: &Rights,
    access: Access,
    user: bool,
    implicit_supervisor: bool,
    ac: bool,
) -> Result<(), u32> {
    let user_access = user && !implicit_supervisor;
    // A user-mode access to a supervisor-mode page fails on U/S alone; otherwise a key that
    // refuses a data access is a fault of its own kind (PK), whatever R/W and SMAP say.
    if user_access && !rights.user {
        return Err(pf::P);
    }
    if access != Access::Execute
        && !key_allows(
            regs,
            rights.user,
            rights.key,
            access == Access::Write,
            user_access,
        )
    {
        return Err(pf::P | pf::PK);
    }
    let smep = regs.cr4 & CR4_SMEP != 0;
    let smap = regs.cr4 & CR4_SMAP != 0;
    let wp = regs.cr0 & CR0_WP != 0;
    let allowed = if user_access {
        match access {
            Access::Read => true,
            Access::Write => rights.writable,
            Access::Execute => !rights.xd,
        }
    } else {
        // Supervisor-mode access. SMAP lets explicit accesses through with EFLAGS.AC = 1.
        let data_to_user_ok = !smap || (ac && !implicit_supervisor);
        match access {
            Access::Read => !rights.user || data_to_user_ok,
            Access::Write => (!rights.user || data_to_user_ok) && (rights.writable || !wp),
            // SMEP: no supervisor fetches from user pages.
            Access::Execute => !rights.xd && (!rights.user || !smep),
        }
    };
    if allowed {
        Ok(())
    } else {
        Err(pf::P)
    }
}

/// True when a cached translation `t` lets the access through now without a walk: the
/// walker's own rules, applied to the rights it found (CR0.WP, SMEP, SMAP with EFLAGS.AC,
/// CPL and the protection keys are read from `regs` now). A write also needs the D bit set
/// already, or the walk must run to set it.
pub fn permits(
    regs: &WalkRegs,
    t: &Translation,
    access: Access,
    user: bool,
    implicit_supervisor: bool,
    ac: bool,
) -> bool {
    let rights = Rights {
        user: t.user,
        writable: t.writable,
        xd: !t.executable,
        key: t.key,
    };
    (access != Access::Write || t.dirty)
        && check(regs, &rights, access, user, implicit_supervisor, ac).is_ok()
}

/// The physical address `linear` maps to under `regs`, for a debugger: the same walk as
/// [`walk`] but with no permission check (a debugger may look at any mapped page) and no
/// trace (no A/D writes, no fault, CR2 untouched). `None` when the address is not mapped.
///
/// Paging structures are read through [`PhysMem::read_phys`], as the CPU reads them; a
/// table outside RAM therefore reads whatever the bus answers.
pub fn debug_translate(mem: &mut PhysMem, regs: &WalkRegs, linear: u64) -> Option<u64> {
    let mut path = Path::default();
    let leaf = match regs.mode() {
        PagingMode::Off => return Some(linear),
        PagingMode::Bits32 => walk32(mem, regs, linear, &mut path),
        mode => walk_long(
            mem,
            regs,
            linear,
            regs.nx_enabled(),
            mode == PagingMode::Level4,
            &mut path,
        ),
    };
    leaf.ok().map(|l| l.phys)
}

/// 32-bit paging. Errors are the error-code bits to add (0 for not present, P|RSVD).
fn walk32(mem: &mut PhysMem, regs: &WalkRegs, linear: u64, path: &mut Path) -> Result<Leaf, u32> {
    let lin = linear & 0xffff_ffff;
    let pde_addr = (regs.cr3 & 0xffff_f000) | ((lin >> 22) << 2);
    let pde = mem.read_phys(pde_addr, 4);
    if pde & pte::P == 0 {
        return Err(0);
    }
    path.push(pde_addr, pde, 4);
    let mut writable = pde & pte::RW != 0;
    let mut user = pde & pte::US != 0;

    if pde & pte::PS != 0 && regs.cr4 & CR4_PSE != 0 {
        // 4 MiB page. With MAXPHYADDR = 40, PDE bits 20:13 are physical bits 39:32 (PSE-36)
        // and bit 21 is reserved.
        if pde & bits(21, MAXPHYADDR - 19) != 0 {
            return Err(pf::P | pf::RSVD);
        }
        let high = (pde >> 13) & bits(MAXPHYADDR - 33, 0);
        let phys = (pde & 0xffc0_0000) | (high << 32) | (lin & 0x3f_ffff);
        return Ok(Leaf {
            phys,
            page_size: 1 << 22,
            value: pde,
            writable,
            user,
            xd: false,
            key: 0,
        });
    }

    let pte_addr = (pde & 0xffff_f000) | (((lin >> 12) & 0x3ff) << 2);
    let pte = mem.read_phys(pte_addr, 4);
    if pte & pte::P == 0 {
        return Err(0);
    }
    path.push(pte_addr, pte, 4);
    writable &= pte & pte::RW != 0;
    user &= pte & pte::US != 0;
    Ok(Leaf {
        phys: (pte & 0xffff_f000) | (lin & 0xfff),
        page_size: SIZE_4K,
        value: pte,
        writable,
        user,
        xd: false,
        key: 0,
    })
}

/// Reserved bits of a PAE PDPTE: 2:1, 8:5 and 63:MAXPHYADDR.
const PDPTE_PAE_RSVD: u64 = bits(2, 1) | bits(8, 5) | bits(63, MAXPHYADDR);

/// PAE and 4-level paging. Errors are the error-code bits to add.
fn walk_long(
    mem: &mut PhysMem,
    regs: &WalkRegs,
    linear: u64,
    nxe: bool,
    level4: bool,
    path: &mut Path,
) -> Result<Leaf, u32> {
    const RSVD: u32 = pf::P | pf::RSVD;
    // Reserved in every entry of the level's format: physical bits above MAXPHYADDR (up to
    // 51 in 4-level paging, where 62:52 are ignored; up to 62 in PAE paging), and XD without
    // NXE.
    let mut base_rsvd = if level4 {
        bits(51, MAXPHYADDR)
    } else {
        bits(62, MAXPHYADDR)
    };
    if !nxe {
        base_rsvd |= pte::XD;
    }

    let (lin, mut table, shifts): (u64, u64, &[u32]) = if level4 {
        (
            linear & bits(47, 0),
            regs.cr3 & ADDR_MASK,
            &[39, 30, 21, 12],
        )
    } else {
        let lin = linear & 0xffff_ffff;
        let pdpte_addr = (regs.cr3 & 0xffff_ffe0) | ((lin >> 30) << 3);
        let pdpte = mem.read_phys(pdpte_addr, 8);
        if pdpte & pte::P == 0 {
            return Err(0);
        }
        if pdpte & PDPTE_PAE_RSVD != 0 {
            return Err(RSVD);
        }
        path.trace.push(pdpte_addr);
        (lin, pdpte & ADDR_MASK, &[21, 12])
    };

    let mut writable = true;
    let mut user = true;
    let mut xd = false;
    for &shift in shifts {
        let addr = table | (((lin >> shift) & 0x1ff) << 3);
        let e = mem.read_phys(addr, 8);
        if e & pte::P == 0 {
            return Err(0);
        }
        let mut rsvd = base_rsvd;
        let large = shift != 12 && e & pte::PS != 0;
        if shift == 39 && large {
            // PS is reserved in a PML4E.
            return Err(RSVD);
        }
        if large {
            // The page-frame bits below the page size (bit 12 is PAT).
            rsvd |= bits(shift - 1, 13);
        }
        if e & rsvd != 0 {
            return Err(RSVD);
        }
        path.push(addr, e, 8);
        writable &= e & pte::RW != 0;
        user &= e & pte::US != 0;
        xd |= e & pte::XD != 0;
        if large || shift == 12 {
            let page_size = 1u64 << shift;
            return Ok(Leaf {
                phys: (e & ADDR_MASK & !(page_size - 1)) | (lin & (page_size - 1)),
                page_size,
                value: e,
                writable,
                user,
                xd,
                // Bits 62:59 are the key in 4-level entries; in PAE entries they are
                // reserved, so zero here.
                key: if level4 { ((e >> 59) & 0xf) as u8 } else { 0 },
            });
        }
        table = e & ADDR_MASK;
    }
    // Unreachable: the last level (shift 12) always returns above.
    Err(RSVD)
}
