//! [`BlockKey`]: the identity of a translated block.
//!
//! A block's translation depends on where its bytes are (the physical address, so that two
//! address spaces mapping the same code share it and a write to the physical page finds it)
//! and on every mode bit that changes how those bytes decode or behave. Both are packed into
//! one `u64` so the lookup is a single compare.

use crate::state::{CpuMode, CpuState, CR0_PE, CR0_PG};

/// Bits of the key that hold the physical address.
const ADDR_BITS: u32 = 48;
const ADDR_MASK: u64 = (1 << ADDR_BITS) - 1;

const MODE_SHIFT: u32 = ADDR_BITS; // 2 bits: CpuMode
const STACK32_SHIFT: u32 = MODE_SHIFT + 2; // 1 bit: SS.B
const CPL_SHIFT: u32 = STACK32_SHIFT + 1; // 2 bits
const PE_SHIFT: u32 = CPL_SHIFT + 2; // 1 bit
const PG_SHIFT: u32 = PE_SHIFT + 1; // 1 bit
const TF_SHIFT: u32 = PG_SHIFT + 1; // 1 bit: single-step translates one instruction per block
const LAST_BIT: u32 = TF_SHIFT + 1;
const _: () = assert!(LAST_BIT <= 64, "BlockKey fields overflow a u64");

/// A translated block's identity: physical address of its first byte plus mode bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlockKey(pub u64);

impl BlockKey {
    /// The key for code at physical address `phys` executed in `cpu`'s current mode.
    pub fn new(phys: u64, cpu: &CpuState) -> BlockKey {
        let cpl = u64::from(cpu.seg[1].selector & 3);
        let bits = (cpu.mode as u64) << MODE_SHIFT
            | u64::from(cpu.stack_is_32()) << STACK32_SHIFT
            | cpl << CPL_SHIFT
            | u64::from(cpu.cr0 & CR0_PE != 0) << PE_SHIFT
            | u64::from(cpu.cr0 & CR0_PG != 0) << PG_SHIFT
            | u64::from(cpu.rflags & crate::flags::TF != 0) << TF_SHIFT;
        BlockKey((phys & ADDR_MASK) | bits)
    }

    /// The physical address of the block's first byte.
    pub fn phys(self) -> u64 {
        self.0 & ADDR_MASK
    }

    /// The decoding mode recorded in the key.
    pub fn mode(self) -> CpuMode {
        match (self.0 >> MODE_SHIFT) & 3 {
            0 => CpuMode::Real16,
            1 => CpuMode::Prot16,
            2 => CpuMode::Prot32,
            _ => CpuMode::Long64,
        }
    }

    /// True when the stack is 32-bit wide (outside 64-bit mode).
    pub fn stack32(self) -> bool {
        (self.0 >> STACK32_SHIFT) & 1 != 0
    }

    /// True when the block was translated for single-stepping.
    pub fn single_step(self) -> bool {
        (self.0 >> TF_SHIFT) & 1 != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_separates_modes_and_keeps_the_address() {
        let c64 = CpuState::new(CpuMode::Long64);
        let c32 = CpuState::new(CpuMode::Prot32);
        let a = BlockKey::new(0x1234_5678, &c64);
        let b = BlockKey::new(0x1234_5678, &c32);
        assert_ne!(a, b);
        assert_eq!(a.phys(), 0x1234_5678);
        assert_eq!(a.mode(), CpuMode::Long64);
        assert_eq!(b.mode(), CpuMode::Prot32);
        assert!(b.stack32());
    }
}
