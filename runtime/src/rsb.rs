//! The return stack buffer: a small ring of predictions that generated code pushes at near
//! CALLs and pops at near RETs, so that a RET can go straight to the code after its CALL
//! instead of looking its target up (see the translator's `jit` module and docs/design.md,
//! "Return-address prediction").
//!
//! The buffer is only a hint. An entry is used only after RET has checked that the popped
//! return address, the block mode and CS base, and the translation cache's epoch all match,
//! and that the return page still maps where it did when the continuation was linked; any
//! mismatch takes the ordinary lookup. The runtime never reads the entries: only generated
//! code and its compiler know what the words mean.

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
    /// continuation shares: `cs_base << 16 | mode_bits`, or `u64::MAX` for an entry that
    /// must never be used (no return slot was available).
    pub ctx: u64,
    /// The translation cache's epoch when the CALL ran. The cache issues a new epoch, never
    /// used before by any cache, whenever it drops a block or code; while it is unchanged the
    /// calling block, and so `slot`, is alive. Epoch 0 is never issued: an entry of zeros is
    /// never used.
    pub epoch: u64,
    /// The host address of the calling block's return slot (its code word; the addend word
    /// follows at the translator's `SLOT_ADDEND`).
    pub slot: u64,
    /// The exit token naming that return slot, which RET hands the run loop (`CpuState::link`)
    /// when the slot is not linked yet.
    pub token: u64,
    /// Padding to 64 bytes.
    pub pad: [u64; 3],
}

/// The return stack buffer of a vCPU.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rsb {
    /// The ring of predictions.
    pub entries: [RsbEntry; RSB_ENTRIES],
    /// The index of the newest entry (modulo [`RSB_ENTRIES`]): CALL advances it and writes
    /// there, RET reads there and steps it back, whether or not the prediction was used.
    pub top: u64,
}

impl Rsb {
    /// An empty buffer: every entry's epoch is 0, which no cache ever has.
    pub const EMPTY: Rsb = Rsb {
        entries: [RsbEntry {
            rip: 0,
            ctx: 0,
            epoch: 0,
            slot: 0,
            token: 0,
            pad: [0; 3],
        }; RSB_ENTRIES],
        top: 0,
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_64_bytes_and_empty_is_zero() {
        assert_eq!(std::mem::size_of::<RsbEntry>(), 64);
        assert!(RSB_ENTRIES.is_power_of_two());
        assert_eq!(Rsb::EMPTY, Rsb::default());
        assert!(Rsb::EMPTY.entries.iter().all(|e| e.epoch == 0));
    }
}
