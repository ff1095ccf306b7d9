//! Guest RAM's host mapping. One of the few modules with `unsafe`: [`GuestRam`] maps RAM
//! with `mmap`/`mprotect` and hands out slices of it, and generated code reaches it through
//! raw host addresses. Its invariants:
//! - guest RAM is one anonymous mapping of exactly the configured size that lives as long as
//!   its [`super::PhysMem`]; every host address generated code computes comes from a TLB
//!   entry whose page lies wholly inside it (checked when the entry is filled), or lies in
//!   the host page next to such a page after generated code compared it with
//!   `CpuState::ram_host` (a two-page load memo, the translator's `jit::emitter::memo`);
//! - [`GUARD_BYTES`] of `PROT_NONE` lie right before and right after it, reserved with it and
//!   never made accessible, so that an access that misses the RAM by a little (a wrong
//!   addend, an off-by-some in a slow path) faults at once instead of touching other host
//!   memory; no slice ever covers them;
//! - a TLB entry is filled only for a page of RAM, and only for accesses that do not cross a
//!   page, so `host = linear + addend` stays inside that page.

use std::ptr::NonNull;

use super::{MemError, PAGE_SIZE};

/// Bytes of inaccessible (`PROT_NONE`) host memory on each side of guest RAM. Generated code
/// forms host addresses only inside one page of RAM (see the module invariants), so any
/// guard would do against its mistakes; 64 KiB also catches a wrong base plus a small
/// offset, and costs only address space.
pub const GUARD_BYTES: usize = 64 << 10;

/// Guest RAM: one anonymous host mapping, between two guard regions ([`GUARD_BYTES`]).
pub struct GuestRam {
    /// The first byte of RAM, [`GUARD_BYTES`] into the reservation.
    base: NonNull<u8>,
    /// RAM size in bytes (the reservation is this plus both guards).
    size: usize,
}

// SAFETY: `GuestRam` owns its mapping alone (like a `Vec<u8>`): no other handle to it exists,
// and its bytes are only reached through `&self`/`&mut self` (or, by generated code, while
// the run loop holds the `PhysMem` mutably), so moving or sharing it across threads is as
// safe as for a `Vec<u8>`.
unsafe impl Send for GuestRam {}
// SAFETY: as above: shared access only reads through `&[u8]`.
unsafe impl Sync for GuestRam {}

impl GuestRam {
    pub(super) fn new(size: u64) -> Result<GuestRam, MemError> {
        if size == 0 || !size.is_multiple_of(PAGE_SIZE) || size >= 1 << 48 {
            return Err(MemError::BadSize(size));
        }
        let alloc_err = |source| MemError::Alloc { size, source };
        let total = (size as usize)
            .checked_add(2 * GUARD_BYTES)
            .ok_or(MemError::BadSize(size))?;
        // SAFETY: a new private anonymous mapping at an address the kernel picks: it overlaps
        // nothing that exists. The result is checked before use.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                total,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(alloc_err(std::io::Error::last_os_error()));
        }
        // SAFETY: `GUARD_BYTES < total`, so the address stays inside the reservation.
        let base = unsafe { p.cast::<u8>().add(GUARD_BYTES) };
        // SAFETY: `[base, base + size)` lies inside the reservation just made, which nothing
        // else knows about; only its middle becomes accessible, the guards stay PROT_NONE.
        let rc = unsafe {
            libc::mprotect(
                base.cast(),
                size as usize,
                libc::PROT_READ | libc::PROT_WRITE,
            )
        };
        if rc != 0 {
            let e = std::io::Error::last_os_error();
            // SAFETY: unmapping the reservation made above, which nothing refers to yet.
            unsafe { libc::munmap(p, total) };
            return Err(alloc_err(e));
        }
        let base = NonNull::new(base).ok_or_else(|| alloc_err(std::io::Error::other("null")))?;
        Ok(GuestRam {
            base,
            size: size as usize,
        })
    }

    /// The host address of guest physical address 0.
    pub(super) fn host_base(&self) -> u64 {
        self.base.as_ptr() as u64
    }

    pub(super) fn len(&self) -> usize {
        self.size
    }

    pub(super) fn bytes(&self) -> &[u8] {
        // SAFETY: `[base, base + size)` is mapped read-write and zero-initialised for as long
        // as `self` lives; the borrow of `self` keeps it from being unmapped or written
        // through `bytes_mut` meanwhile.
        unsafe { std::slice::from_raw_parts(self.base.as_ptr(), self.size) }
    }

    pub(super) fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `bytes`, and `&mut self` makes this the only reference.
        unsafe { std::slice::from_raw_parts_mut(self.base.as_ptr(), self.size) }
    }
}

impl Drop for GuestRam {
    fn drop(&mut self) {
        // SAFETY: the reservation starts GUARD_BYTES before `base` and spans both guards and
        // the RAM; nothing refers to it once its owner is dropped (generated code only runs
        // while the run loop borrows the `PhysMem`).
        unsafe {
            libc::munmap(
                self.base.as_ptr().sub(GUARD_BYTES).cast(),
                self.size + 2 * GUARD_BYTES,
            );
        }
    }
}

/// The permissions `/proc/self/maps` shows for the host mapping that holds `addr` (such as
/// `rw-p`, or `---p` for a guard region), or `None` when no mapping holds it. For the tests
/// that check guard pages around guest RAM and the code arena.
pub fn host_mapping_permissions(addr: usize) -> Option<String> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    maps.lines().find_map(|l| {
        let mut f = l.split_whitespace();
        let (lo, hi) = f.next()?.split_once('-')?;
        let lo = usize::from_str_radix(lo, 16).ok()?;
        let hi = usize::from_str_radix(hi, 16).ok()?;
        (lo..hi)
            .contains(&addr)
            .then(|| f.next().map(str::to_owned))?
    })
}
