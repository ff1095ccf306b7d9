//! The return stack buffer: a small ring of predictions that generated code pushes at near
//! CALLs and pops at near RETs, so that a RET can go straight to the code after its CALL
//! instead of looking its target up (see the translator's `jit` module and docs/design.md,
//! "Return-address prediction").
//!
//! The buffer is only a hint. An entry is used only after RET has checked that the popped
//! return address and the block mode and CS base match; any mismatch takes the ordinary
//! lookup. Every entry was pushed under the translation cache's current epoch: the cache
//! empties the buffer before it runs generated code under another epoch than [`Rsb::epoch`]
//! (a new epoch, never used before by any cache, whenever it drops a block or code), so while
//! an entry is there its calling block, and so its slot, is alive.
//!
//! Under paging, a usable entry's return address lies on its calling block's first linear
//! page (the compiler pushes an unusable one otherwise), so the continuation the slot links
//! to was translated from the physical page that linear page mapped to when the CALL ran.
//! RET does not check that it still does: the TLB's flushes drop the entries of the pages
//! whose translations they drop ([`Rsb::forget`]), which is when a guest's remapping may take
//! effect. Only generated code, its compiler and that rule know what the words mean.

/// Entries in [`Rsb::entries`]: a power of two (the top index wraps with a mask). Deeper call
/// chains than this overwrite the oldest entries, whose RETs then miss and look up.
pub const RSB_ENTRIES: usize = 32;

/// One prediction, written by a near CALL in generated code. 64 bytes, so that generated
/// code finds entry `i` at `i << 6`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RsbEntry {
    /// The guest return address the CALL pushed.
    pub rip: u64,
    /// The calling block's CS base and mode bits (`BlockKey::mode_bits`), which its
    /// continuation shares: `cs_base << 16 | mode_bits`, or [`NO_CTX`] for an entry that
    /// must never be used (no return slot was available, or the buffer was emptied).
    pub ctx: u64,
    /// The host address of the calling block's return slot (its code word; the addend word
    /// follows at the translator's `SLOT_ADDEND`).
    pub slot: u64,
    /// The exit token naming that return slot, which RET hands the run loop (`CpuState::link`)
    /// when the slot is not linked yet.
    pub token: u64,
    /// Padding to 64 bytes.
    pub pad: [u64; 4],
}

/// [`RsbEntry::ctx`] of an entry that must never be used: no block's CS base and mode bits
/// (a CS base has 32 bits, the mode bits 16).
pub const NO_CTX: u64 = u64::MAX;

/// The return stack buffer of a vCPU.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rsb {
    /// The ring of predictions.
    pub entries: [RsbEntry; RSB_ENTRIES],
    /// The index of the newest entry (modulo [`RSB_ENTRIES`]): CALL advances it and writes
    /// there, RET reads there and steps it back, whether or not the prediction was used.
    pub top: u64,
    /// The translation cache epoch the entries were pushed under (0, which no cache issues,
    /// when empty).
    pub epoch: u64,
}

impl Rsb {
    /// An empty buffer: no entry is ever used.
    pub const EMPTY: Rsb = Rsb {
        entries: [RsbEntry {
            rip: 0,
            ctx: NO_CTX,
            slot: 0,
            token: 0,
            pad: [0; 4],
        }; RSB_ENTRIES],
        top: 0,
        epoch: 0,
    };

    /// Empties the buffer unless its entries were pushed under `epoch`, the epoch of the
    /// cache whose code is about to run, and records that epoch.
    pub fn enter_epoch(&mut self, epoch: u64) {
        if self.epoch != epoch {
            *self = Rsb {
                epoch,
                ..Rsb::EMPTY
            };
        }
    }
}

impl Rsb {
    /// Makes unusable every entry whose return address, as a linear address, `stale` says
    /// may now map elsewhere. In a 32-bit mode the linear address is the CS base plus the
    /// return address modulo 4 GiB: an entry whose sum passes 4 GiB is asked about both ways.
    pub fn forget(&mut self, mut stale: impl FnMut(u64) -> bool) {
        for e in &mut self.entries {
            if e.ctx == NO_CTX {
                continue;
            }
            let linear = (e.ctx >> 16).wrapping_add(e.rip);
            if stale(linear) || stale(linear & 0xffff_ffff) {
                e.ctx = NO_CTX;
            }
        }
    }
}

impl Default for Rsb {
    fn default() -> Rsb {
        Rsb::EMPTY
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_64_bytes_and_empty_is_zero() {
        assert_eq!(std::mem::size_of::<RsbEntry>(), 64);
        assert!(RSB_ENTRIES.is_power_of_two());
        assert_eq!(Rsb::EMPTY, Rsb::default());
        assert!(Rsb::EMPTY.entries.iter().all(|e| e.ctx == NO_CTX));
    }

    #[test]
    fn forget_makes_the_entries_of_stale_pages_unusable() {
        let mut r = Rsb::EMPTY;
        r.entries[1] = RsbEntry {
            rip: 0x1234,
            ctx: 0x10,
            ..RsbEntry::default()
        };
        // CS base 0x1000_0000 (ctx bits 16 up), return address 0xf000_1000: the linear
        // address wraps to 0x1000 in 32-bit modes.
        r.entries[2] = RsbEntry {
            rip: 0xf000_1000,
            ctx: 0x1000_0000 << 16 | 0x10,
            ..RsbEntry::default()
        };
        let mut asked = Vec::new();
        r.forget(|lin| {
            asked.push(lin);
            lin & !0xfff == 0x1000
        });
        assert_eq!(asked, [0x1234, 0x1_0000_1000, 0x1000]);
        assert_eq!(r.entries[1].ctx, NO_CTX, "0x1234 lies on page 0x1000");
        assert_eq!(r.entries[2].ctx, NO_CTX, "wraps onto page 0x1000");
        r.entries[1].ctx = 0x10;
        r.forget(|lin| lin & !0xfff == 0x2000);
        assert_eq!(r.entries[1].ctx, 0x10, "another page: kept");
    }

    #[test]
    fn another_epoch_empties_the_buffer() {
        let mut r = Rsb::EMPTY;
        r.enter_epoch(7);
        r.entries[3].ctx = 0x10;
        r.top = 3;
        r.enter_epoch(7);
        assert_eq!((r.entries[3].ctx, r.top), (0x10, 3), "same epoch: kept");
        r.enter_epoch(8);
        assert_eq!(
            r,
            Rsb {
                epoch: 8,
                ..Rsb::EMPTY
            }
        );
    }
}
