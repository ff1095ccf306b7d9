//! Process-context identifiers (SDM Vol. 3 4.10.1 and 4.10.4): CR4.PCIDE, the PCID in
//! CR3[11:0], the no-flush bit 63 of MOV to CR3, and INVPCID (SDM Vol. 2, INVPCID).
//!
//! The software TLB is not tagged by PCID: it only ever holds translations of the current
//! address space (and global ones). So every invalidation PCIDs allow to be skipped or
//! narrowed is done whole instead, which the SDM permits (a processor may drop any TLB entry
//! at any time, 4.10.4.4): MOV to CR3 drops every non-global entry even with bit 63 set,
//! INVPCID of one address drops that page whatever the PCID, and of one context every
//! non-global entry. What PCIDs change here is what software may write and the faults; the
//! design for keeping other contexts' entries is in `docs/design.md` ("PCID").

use crate::memory::tlb_flush_page;
use crate::paging::canonical;
use crate::state::{CpuState, CR0_PG, EFER_LMA};

/// CR4.PCIDE: CR3[11:0] holds the current PCID (settable only in IA-32e mode).
pub const CR4_PCIDE: u64 = 1 << 17;
/// Bit 63 of a MOV to CR3 with CR4.PCIDE = 1: the TLB need not be invalidated. Never
/// stored in CR3.
pub const CR3_NOFLUSH: u64 = 1 << 63;
/// CR3[11:0]: the PCID while CR4.PCIDE = 1.
pub const CR3_PCID: u64 = 0xfff;

/// Whether a MOV to CR4 may load `new` as far as PCIDE is concerned: turning it on needs
/// IA-32e mode (EFER.LMA = 1) and CR3[11:0] = 0 (the current PCID becomes 000H).
pub fn cr4_allows(cpu: &CpuState, new: u64) -> bool {
    let setting = new & CR4_PCIDE != 0 && cpu.cr4 & CR4_PCIDE == 0;
    !setting || (cpu.efer & EFER_LMA != 0 && cpu.cr3 & CR3_PCID == 0)
}

/// Whether a MOV to CR0 may load `new`: paging cannot be turned off while CR4.PCIDE = 1
/// (which also keeps PCIDE from outliving IA-32e mode).
pub fn cr0_allows(cpu: &CpuState, new: u64) -> bool {
    new & CR0_PG != 0 || cpu.cr4 & CR4_PCIDE == 0
}

/// The value a MOV to CR3 stores, and whether it may skip invalidating the TLB: with
/// CR4.PCIDE = 1, bit 63 is the no-flush request and is dropped.
pub fn cr3_value(cpu: &CpuState, v: u64) -> (u64, bool) {
    if cpu.cr4 & CR4_PCIDE != 0 {
        (v & !CR3_NOFLUSH, v & CR3_NOFLUSH != 0)
    } else {
        (v, false)
    }
}

/// One INVPCID request, after its checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Invpcid {
    /// Type 0: the non-global translations of one linear address in one PCID.
    Address {
        /// The PCID of the descriptor.
        pcid: u16,
        /// The linear address (all 64 bits, even outside 64-bit mode).
        linear: u64,
    },
    /// Type 1: every non-global translation of one PCID.
    Context {
        /// The PCID of the descriptor.
        pcid: u16,
    },
    /// Type 2: every translation of every PCID, global ones included.
    AllWithGlobals,
    /// Type 3: every non-global translation of every PCID.
    All,
}

impl Invpcid {
    /// Checks an INVPCID of `kind` (the register operand) with the 16-byte descriptor
    /// `desc` (`[bits 63:0, bits 127:64]`) while CR4.PCIDE is `pcide`. `None` is #GP(0): a
    /// type above 3, descriptor bits 63:12 not zero, a PCID other than 000H for types 0
    /// and 1 without PCIDE, or a non-canonical address for type 0.
    pub fn decode(kind: u64, desc: [u64; 2], pcide: bool) -> Option<Invpcid> {
        let [lo, linear] = desc;
        if lo >> 12 != 0 {
            return None;
        }
        let pcid = (lo & CR3_PCID) as u16;
        if kind <= 1 && pcid != 0 && !pcide {
            return None;
        }
        match kind {
            0 if canonical(linear) => Some(Invpcid::Address { pcid, linear }),
            1 => Some(Invpcid::Context { pcid }),
            2 => Some(Invpcid::AllWithGlobals),
            3 => Some(Invpcid::All),
            _ => None,
        }
    }

    /// Carries the request out on the (untagged) TLB: see the module documentation for
    /// why each kind may drop more than it names.
    pub fn execute(self, cpu: &mut CpuState) {
        match self {
            // INVLPG's invalidation: it covers every PCID and may take global entries too.
            Invpcid::Address { linear, .. } => tlb_flush_page(cpu, linear),
            Invpcid::Context { .. } | Invpcid::All => cpu.flush_tlb_nonglobal(),
            Invpcid::AllWithGlobals => cpu.flush_tlb(),
        }
    }
}

#[cfg(test)]
mod tests;
