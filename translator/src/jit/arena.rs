//! Executable memory for generated code: one of the few modules with `unsafe`.
//!
//! The arena is a memfd mapped twice: a read-write view that code is copied into and a
//! read-execute view that code runs from. No mapping is ever writable and executable at once
//! (W^X, ARCHITECTURE.md decision 8), and no `mprotect` flipping is needed per block.
//!
//! Invariants:
//! - both views map the same `cap` bytes of the same file for the arena's whole life;
//! - [`CodeArena::alloc`] only hands out ranges below `used` + the new size, never overlapping
//!   a live block, and returns addresses inside the execute view;
//! - [`CodeArena::reset`] is only called when no generated code is running and every pointer
//!   into the arena has been dropped (the translation cache flushes all blocks first).

use std::fs::File;
use std::os::fd::FromRawFd;

use memmap2::{Mmap, MmapMut, MmapOptions};

/// Alignment of each block's code (a cache line).
const ALIGN: usize = 64;

/// A bump-allocated region of executable memory.
pub struct CodeArena {
    rw: MmapMut,
    rx: Mmap,
    used: usize,
}

impl CodeArena {
    /// Reserves `cap` bytes (rounded up to a page).
    pub fn new(cap: usize) -> std::io::Result<CodeArena> {
        let cap = cap.max(4096).next_multiple_of(4096);
        // SAFETY: memfd_create with a valid NUL-terminated name; the result is checked.
        let fd = unsafe { libc::memfd_create(c"crane86-code".as_ptr(), libc::MFD_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor that nothing else owns.
        let file = unsafe { File::from_raw_fd(fd) };
        file.set_len(cap as u64)?;
        // SAFETY: the file is private to this arena (memfd, no other handle is shared), so
        // nothing outside this module changes the mapping under us.
        let rw = unsafe { MmapOptions::new().len(cap).map_mut(&file)? };
        // SAFETY: as above; this view is never written through.
        let rx = unsafe { MmapOptions::new().len(cap).map_exec(&file)? };
        Ok(CodeArena { rw, rx, used: 0 })
    }

    /// Copies `code` in and returns its executable address, or `None` when full.
    pub fn alloc(&mut self, code: &[u8]) -> Option<*const u8> {
        let start = self.used.next_multiple_of(ALIGN);
        let end = start.checked_add(code.len())?;
        if end > self.rw.len() {
            return None;
        }
        self.rw[start..end].copy_from_slice(code);
        self.used = end;
        // SAFETY: `start < end <= len`, so the pointer stays inside the execute view.
        Some(unsafe { self.rx.as_ptr().add(start) })
    }

    /// Forgets every block (see the module invariants).
    pub fn reset(&mut self) {
        self.used = 0;
    }

    /// Bytes in use.
    pub fn used(&self) -> usize {
        self.used
    }

    /// Total capacity in bytes.
    pub fn capacity(&self) -> usize {
        self.rw.len()
    }

    /// True when `p` points into the executable view.
    pub fn contains(&self, p: *const u8) -> bool {
        let base = self.rx.as_ptr() as usize;
        (base..base + self.rx.len()).contains(&(p as usize))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alloc_aligns_and_fills_up() {
        let mut a = CodeArena::new(4096).unwrap();
        let p = a.alloc(&[0xc3; 10]).unwrap();
        let q = a.alloc(&[0xc3; 10]).unwrap();
        assert_eq!(q as usize - p as usize, 64);
        assert!(a.contains(q));
        assert!(a.alloc(&[0; 8192]).is_none());
        a.reset();
        assert_eq!(a.used(), 0);
    }
}
