//! Executable memory for generated code: one of the few modules with `unsafe`.
//!
//! The arena is a memfd mapped twice: a read-write view that code is copied into and a
//! read-execute view that code runs from. No mapping is ever writable and executable at once
//! (W^X, ARCHITECTURE.md decision 8), and no `mprotect` flipping is needed per block.
//!
//! Invariants:
//! - both views map the same `cap` bytes of the same file for the arena's whole life;
//! - each view sits in the middle of a reservation of its own with [`GUARD_BYTES`] of
//!   `PROT_NONE` before and after it, never made accessible, so that a stray jump or access
//!   just past either view faults instead of reaching other host memory;
//! - [`CodeArena::alloc`] only hands out ranges below `used` + the new size, never overlapping
//!   a live block, and returns addresses inside the execute view;
//! - [`CodeArena::reset`] is only called when no generated code is running and every pointer
//!   into the arena has been dropped (the translation cache flushes all blocks first);
//! - [`CodeArena::patch_jump`] writes only the 4 bytes it is given, within the code handed
//!   out, and only while no generated code runs (the cache patches direct exits between
//!   blocks, on the vCPU thread, the only thread that runs generated code). The bytes are a
//!   `jmp rel32`'s displacement that the cache recorded when it placed the code
//!   ([`super::direct`]). The host's instruction caches follow stores through the other view:
//!   x86 keeps them coherent by physical address.

use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd};

/// Alignment of each block's (hot) code: what the host's decoders fetch at once. A cache
/// line (64) for every block wasted 6% of the hot code on padding, and fork/exec ran about
/// 5% slower (session 13, an AMD EPYC host); see [`HOT_ALIGN`] for the blocks that get it.
pub const ALIGN: usize = 16;

/// Alignment of optimised code (blocks that ran thousands of times, and loops): a cache line.
/// On an Intel Xeon host the shell loop ran 4% and gzip 3% faster with it (five and three
/// interleaved boots), fork/exec and the boots the same; optimised blocks are few, so the
/// padding costs little.
pub const HOT_ALIGN: usize = 64;

/// Alignment of each block's cold code.
const COLD_ALIGN: usize = 16;

/// Bytes of `PROT_NONE` on each side of both views. Generated code holds no host pointer
/// into the arena other than its own code and the chain targets the cache gives it, so one
/// page would catch a fall-through off the end; 64 KiB also catches a short jump or a
/// wrong small offset.
pub const GUARD_BYTES: usize = 64 << 10;

/// An address range reserved as `PROT_NONE`, of which the middle `len` bytes (after
/// [`GUARD_BYTES`]) are mapped to the arena's file; unmapped whole on drop.
struct View {
    /// The first byte after the leading guard.
    base: *mut u8,
    /// Bytes between the guards.
    len: usize,
}

impl View {
    /// Reserves `len` bytes between two guards and maps `file` there with `prot`.
    fn map(file: &File, len: usize, prot: libc::c_int) -> std::io::Result<View> {
        let total = len + 2 * GUARD_BYTES;
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
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `GUARD_BYTES < total`: inside the reservation.
        let base = unsafe { p.cast::<u8>().add(GUARD_BYTES) };
        // SAFETY: MAP_FIXED replaces `[base, base + len)`, which lies inside the reservation
        // just made and owned by nothing else; the file is this arena's own memfd, at least
        // `len` bytes long. The guards around it stay PROT_NONE.
        let q = unsafe {
            libc::mmap(
                base.cast(),
                len,
                prot,
                libc::MAP_SHARED | libc::MAP_FIXED,
                file.as_raw_fd(),
                0,
            )
        };
        if q == libc::MAP_FAILED {
            let e = std::io::Error::last_os_error();
            // SAFETY: unmapping the reservation made above, which nothing refers to.
            unsafe { libc::munmap(p, total) };
            return Err(e);
        }
        Ok(View { base, len })
    }
}

impl Drop for View {
    fn drop(&mut self) {
        // SAFETY: the reservation starts GUARD_BYTES before `base` and spans both guards;
        // the arena's owner guarantees no code runs from it any more (module invariants).
        unsafe {
            libc::munmap(
                self.base.sub(GUARD_BYTES).cast(),
                self.len + 2 * GUARD_BYTES,
            );
        }
    }
}

/// A bump-allocated region of executable memory: hot code grows from its start, cold code
/// ([`super::split`]) from its end, and it is full when they meet.
pub struct CodeArena {
    /// Where code is written; never executable.
    rw: View,
    /// Where code runs from; never writable.
    rx: View,
    /// Bytes used from the start.
    used: usize,
    /// Bytes used from the end.
    cold_used: usize,
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
        // The mappings keep the memfd alive after `file` is closed.
        let rw = View::map(&file, cap, libc::PROT_READ | libc::PROT_WRITE)?;
        let rx = View::map(&file, cap, libc::PROT_READ | libc::PROT_EXEC)?;
        Ok(CodeArena {
            rw,
            rx,
            used: 0,
            cold_used: 0,
        })
    }

    /// Copies `code` in and returns its executable address, or `None` when full.
    pub fn alloc(&mut self, code: &[u8]) -> Option<*const u8> {
        self.alloc_split(code, &[], ALIGN).map(|(hot, _)| hot)
    }

    /// Copies `hot` in at the hot end, at a multiple of `align` (a power of two), and `cold`
    /// (if not empty) at the cold end; returns their executable addresses (the second is
    /// meaningless for an empty `cold`), or `None` when they do not fit.
    pub fn alloc_split(
        &mut self,
        hot: &[u8],
        cold: &[u8],
        align: usize,
    ) -> Option<(*const u8, *const u8)> {
        let start = self.used.next_multiple_of(align);
        let end = start.checked_add(hot.len())?;
        let cold_end = self.rw.len - self.cold_used;
        let cold_start = if cold.is_empty() {
            cold_end
        } else {
            cold_end.checked_sub(cold.len())? & !(COLD_ALIGN - 1)
        };
        if end > cold_start {
            return None;
        }
        // SAFETY: `start <= end <= cold_start <= cold_start + cold.len() <= len`: both
        // ranges lie inside the writable view, apart from each other and from the code
        // handed out before; `&mut self` makes this the only writer; the sources are
        // separate host buffers.
        unsafe {
            std::ptr::copy_nonoverlapping(hot.as_ptr(), self.rw.base.add(start), hot.len());
            std::ptr::copy_nonoverlapping(cold.as_ptr(), self.rw.base.add(cold_start), cold.len());
        }
        self.used = end;
        self.cold_used = self.rw.len - cold_start;
        // SAFETY: both offsets are at most `len`: inside the execute view or one past it.
        Some(unsafe {
            (
                self.rx.base.add(start).cast_const(),
                self.rx.base.add(cold_start).cast_const(),
            )
        })
    }

    /// Rewrites the 32-bit displacement at `field` (an address in the execute view, inside
    /// code handed out) of the instruction ending at `end` so that it reaches `target`.
    /// Returns false, and writes nothing, when the field does not lie inside the code handed
    /// out or the distance does not fit.
    pub fn patch_rel32(&mut self, field: *const u8, end: *const u8, target: *const u8) -> bool {
        let Some(at) = self.field(field) else {
            return false;
        };
        let d = (target as i64).wrapping_sub(end as i64);
        let Ok(d) = i32::try_from(d) else {
            return false;
        };
        // SAFETY: `field` checked that the 4 bytes lie inside the used part of the writable
        // view; `&mut self` makes this the only writer, and no generated code runs meanwhile
        // (module invariants).
        unsafe {
            std::ptr::write_unaligned(self.rw.base.add(at).cast::<[u8; 4]>(), d.to_le_bytes());
        }
        true
    }

    /// Points the `jmp rel32` whose displacement field is at `site` (an address in the
    /// execute view, inside code handed out) at `target`. Returns false, and writes nothing,
    /// when the field does not lie inside the code handed out or the distance does not fit
    /// in a displacement.
    pub fn patch_jump(&mut self, site: *const u8, target: *const u8) -> bool {
        self.patch_rel32(site, site.wrapping_add(4), target)
    }

    /// Where the `jmp rel32` whose displacement field is at `site` leads (tests).
    #[cfg(test)]
    pub fn jump_target(&self, site: *const u8) -> Option<*const u8> {
        let at = self.field(site)?;
        // SAFETY: `field` checked that the 4 bytes lie inside the used part of the view.
        let d = unsafe { std::ptr::read_unaligned(self.rw.base.add(at).cast::<[u8; 4]>()) };
        let d = i32::from_le_bytes(d) as isize;
        Some((site as usize).wrapping_add(4).wrapping_add_signed(d) as *const u8)
    }

    /// The offset of a 4-byte field at execute-view address `site`, if it lies inside the
    /// code handed out.
    fn field(&self, site: *const u8) -> Option<usize> {
        let at = (site as usize).checked_sub(self.rx.base as usize)?;
        let end = at.checked_add(4)?;
        let hot = end <= self.used;
        let cold = at >= self.rw.len - self.cold_used && end <= self.rw.len;
        (hot || cold).then_some(at)
    }

    /// Forgets every block (see the module invariants).
    pub fn reset(&mut self) {
        self.used = 0;
        self.cold_used = 0;
    }

    /// Bytes in use.
    pub fn used(&self) -> usize {
        self.used + self.cold_used
    }

    /// Total capacity in bytes.
    pub fn capacity(&self) -> usize {
        self.rw.len
    }

    /// True when `p` points into the executable view.
    pub fn contains(&self, p: *const u8) -> bool {
        let base = self.rx.base as usize;
        (base..base + self.rx.len).contains(&(p as usize))
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
        assert_eq!(
            q as usize - p as usize,
            ALIGN.max(10).next_multiple_of(ALIGN)
        );
        assert!(a.contains(q));
        assert!(a.alloc(&[0; 8192]).is_none());
        // Cold code grows down from the end until it meets the hot code.
        let (h, c) = a.alloc_split(&[0xc3; 8], &[0xc3; 100], ALIGN).unwrap();
        assert_eq!(
            h as usize - q as usize,
            ALIGN.max(10).next_multiple_of(ALIGN)
        );
        assert_eq!(c as usize % 16, 0);
        assert!(c as usize + 100 <= p as usize + 4096 && a.contains(c));
        assert!(a.alloc_split(&[0; 8], &[0; 4000], ALIGN).is_none());
        a.reset();
        assert_eq!(a.used(), 0);
    }

    #[test]
    fn jumps_are_patched_within_the_code_only() {
        let mut a = CodeArena::new(1 << 16).unwrap();
        let p = a.alloc(&[0xe9, 0, 0, 0, 0, 0xc3]).unwrap();
        // Addresses only: nothing is dereferenced through them here.
        let site = p.wrapping_add(1);
        assert_eq!(a.jump_target(site), Some(p.wrapping_add(5)));
        assert!(a.patch_jump(site, p));
        assert_eq!(a.jump_target(site), Some(p));
        // A field reaching past the code handed out, or before the view, is refused.
        assert!(!a.patch_jump(p.wrapping_add(3), p));
        assert!(!a.patch_jump(p.wrapping_sub(64), p));
        // A target further than 2 GiB is refused.
        assert!(!a.patch_jump(site, (p as usize + (3 << 30)) as *const u8));
        assert_eq!(a.jump_target(site), Some(p));
    }

    #[test]
    fn both_views_sit_between_guard_pages() {
        let a = CodeArena::new(1 << 16).unwrap();
        for (view, perms) in [(&a.rw, "rw-s"), (&a.rx, "r-xs")] {
            let (base, end) = (view.base as usize, view.base as usize + view.len);
            assert_eq!(
                crane86_runtime::memory::host_mapping_permissions(base).as_deref(),
                Some(perms)
            );
            assert_eq!(
                crane86_runtime::memory::host_mapping_permissions(end - 1).as_deref(),
                Some(perms)
            );
            for g in [base - GUARD_BYTES, base - 1, end, end + GUARD_BYTES - 1] {
                assert_eq!(
                    crane86_runtime::memory::host_mapping_permissions(g).as_deref(),
                    Some("---p"),
                    "{g:#x} near {base:#x}"
                );
            }
        }
    }
}
