//! [`BlockKey`]: the identity of a translated block.
//!
//! A block's translation depends on where its bytes are (the physical address, so that a
//! write to the physical page finds it), on the instruction pointer and CS base it was
//! decoded at (relative branches, RIP-relative operands and pushed return addresses are
//! resolved against them; the same physical page may be mapped at several linear addresses,
//! as a shared library is under ASLR) and on every mode bit that changes how those bytes
//! decode or behave. The physical address and the mode bits are packed into one `u64`.

use crate::state::{CpuMode, CpuState, SegReg, CR0_EM, CR0_MP, CR0_PE, CR0_PG, CR0_TS};

/// [`BlockKey::fpu_bits`]: CR0.EM.
pub const FPU_EM: u8 = 1 << 0;
/// [`BlockKey::fpu_bits`]: CR0.TS.
pub const FPU_TS: u8 = 1 << 1;
/// [`BlockKey::fpu_bits`]: CR0.MP.
pub const FPU_MP: u8 = 1 << 2;

/// Bits of the key that hold the physical address.
const ADDR_BITS: u32 = 48;
const ADDR_MASK: u64 = (1 << ADDR_BITS) - 1;

const MODE_SHIFT: u32 = ADDR_BITS; // 2 bits: CpuMode
const STACK32_SHIFT: u32 = MODE_SHIFT + 2; // 1 bit: SS.B
const CPL_SHIFT: u32 = STACK32_SHIFT + 1; // 2 bits
const PE_SHIFT: u32 = CPL_SHIFT + 2; // 1 bit
const PG_SHIFT: u32 = PE_SHIFT + 1; // 1 bit
                                    // 1 bit: one instruction per block, for TF single-stepping and armed breakpoints.
const TF_SHIFT: u32 = PG_SHIFT + 1;
// 3 bits: CR0.EM, CR0.TS and CR0.MP, which decide whether x87/MMX/SSE instructions run or
// raise #NM/#UD (see `fpu_bits`). CR4.OSFXSR, which SSE also needs, is not keyed: a kernel
// sets it once, early in its boot, and keying it translated every block run both before
// and after twice; SSE instructions check it at run time instead.
const FPU_SHIFT: u32 = TF_SHIFT + 1;
// 1 bit: EFLAGS.VM (virtual-8086 mode decodes as 16-bit protected mode, but refuses VEX).
const VM_SHIFT: u32 = FPU_SHIFT + 3;
// 1 bit: DS, ES or SS is not flat, so accesses through them need limit and type checks
// (`segment::limit::data_segments_flat`).
const SEGCHECK_SHIFT: u32 = VM_SHIFT + 1;
// 1 bit: outside 64-bit mode, DS, ES and SS have base 0 (`segment::limit::data_bases_zero`),
// so accesses through them add no base.
const ZERO_BASE_SHIFT: u32 = SEGCHECK_SHIFT + 1;
// 2 bits: outside 64-bit mode, FS (then GS) is flat (`segment::limit::segment_flat`), so
// accesses through an FS (GS) override need no limit and type checks. The 32-bit Linux
// kernel reaches its per-CPU data (`current`, the preemption count) through FS, a flat
// segment with a non-zero base, and 32-bit glibc its thread-local data through GS.
const FS_FLAT_SHIFT: u32 = ZERO_BASE_SHIFT + 1;
const GS_FLAT_SHIFT: u32 = FS_FLAT_SHIFT + 1;
const LAST_BIT: u32 = GS_FLAT_SHIFT + 1;
const _: () = assert!(LAST_BIT <= 64, "BlockKey fields overflow a u64");

/// A translated block's identity: where it was decoded (RIP and CS base), the physical
/// address of its first byte, and the mode bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlockKey {
    /// The instruction pointer of the first instruction.
    pub ip: u64,
    /// The CS base it was decoded under.
    pub cs_base: u64,
    /// The physical address (low 48 bits) and the mode bits.
    pub bits: u64,
}

impl BlockKey {
    /// The key for code at physical address `phys`, at `cpu`'s RIP, in its current mode.
    // Inlined into the run loop, which reads the key back whole right after: as a call it
    // wrote three words the caller loaded as wider ones, a store-forwarding stall.
    #[inline]
    pub fn new(phys: u64, cpu: &CpuState) -> BlockKey {
        let cpl = u64::from(crate::segment::cpl(cpu));
        let bits = (cpu.mode as u64) << MODE_SHIFT
            // SS.B means nothing in 64-bit mode, where SYSCALL leaves it set and an interrupt
            // from user mode loads a null SS: keyed there, every kernel block reached both
            // ways would be translated twice.
            | u64::from(cpu.stack_is_32() && cpu.mode != CpuMode::Long64) << STACK32_SHIFT
            | cpl << CPL_SHIFT
            | u64::from(cpu.cr0 & CR0_PE != 0) << PE_SHIFT
            | u64::from(cpu.cr0 & CR0_PG != 0) << PG_SHIFT
            | u64::from(cpu.rflags & crate::flags::TF != 0 || crate::debug::breakpoints_armed(cpu))
                << TF_SHIFT
            | u64::from(fpu_bits(cpu)) << FPU_SHIFT
            | u64::from(cpu.rflags & crate::flags::VM != 0) << VM_SHIFT
            | u64::from(!crate::segment::limit::data_segments_flat(cpu)) << SEGCHECK_SHIFT
            | u64::from(crate::segment::limit::data_bases_zero(cpu)) << ZERO_BASE_SHIFT
            | u64::from(crate::segment::limit::segment_flat(cpu, SegReg::Fs)) << FS_FLAT_SHIFT
            | u64::from(crate::segment::limit::segment_flat(cpu, SegReg::Gs)) << GS_FLAT_SHIFT;
        BlockKey {
            ip: cpu.rip,
            cs_base: cpu.seg[SegReg::Cs as usize].base,
            bits: (phys & ADDR_MASK) | bits,
        }
    }

    /// The key of the block at `ip`, whose first byte is at physical address `phys`, in the
    /// same mode and code segment as this one: where a block leads when none of its
    /// instructions changes a mode bit (those that do are runtime-class and end the run of
    /// generated code).
    pub fn successor(self, ip: u64, phys: u64) -> BlockKey {
        BlockKey {
            ip,
            cs_base: self.cs_base,
            bits: (self.bits & !ADDR_MASK) | (phys & ADDR_MASK),
        }
    }

    /// The physical address of the block's first byte.
    pub fn phys(self) -> u64 {
        self.bits & ADDR_MASK
    }

    /// The linear address of the block's first byte.
    pub fn linear(self) -> u64 {
        let l = self.cs_base.wrapping_add(self.ip);
        if self.mode() == CpuMode::Long64 {
            l
        } else {
            l & 0xffff_ffff
        }
    }

    /// The mode bits alone (everything but the addresses), to compare two blocks' modes.
    pub fn mode_bits(self) -> u64 {
        self.bits >> ADDR_BITS
    }

    /// The CPL the block runs at.
    pub fn cpl(self) -> u8 {
        ((self.bits >> CPL_SHIFT) & 3) as u8
    }

    /// True when the block runs in virtual-8086 mode (EFLAGS.VM).
    pub fn v86(self) -> bool {
        (self.bits >> VM_SHIFT) & 1 != 0
    }

    /// True when DS, ES or SS was not flat for this block: its accesses through them are
    /// checked against the segment's limit and type.
    pub fn seg_checks(self) -> bool {
        (self.bits >> SEGCHECK_SHIFT) & 1 != 0
    }

    /// True when the block runs outside 64-bit mode with DS, ES and SS at base 0: its
    /// accesses through them add no segment base.
    pub fn zero_bases(self) -> bool {
        (self.bits >> ZERO_BASE_SHIFT) & 1 != 0
    }

    /// True when the block runs outside 64-bit mode with a flat FS: accesses through an FS
    /// override need no limit and type checks.
    pub fn fs_flat(self) -> bool {
        (self.bits >> FS_FLAT_SHIFT) & 1 != 0
    }

    /// The same for GS.
    pub fn gs_flat(self) -> bool {
        (self.bits >> GS_FLAT_SHIFT) & 1 != 0
    }

    /// True when paging was on (CR0.PG) for this block.
    pub fn paging(self) -> bool {
        (self.bits >> PG_SHIFT) & 1 != 0
    }

    /// The decoding mode recorded in the key.
    pub fn mode(self) -> CpuMode {
        match (self.bits >> MODE_SHIFT) & 3 {
            0 => CpuMode::Real16,
            1 => CpuMode::Prot16,
            2 => CpuMode::Prot32,
            _ => CpuMode::Long64,
        }
    }

    /// True when the stack is 32-bit wide (outside 64-bit mode; always false in 64-bit mode,
    /// whose stack is 64-bit whatever SS.B says).
    pub fn stack32(self) -> bool {
        (self.bits >> STACK32_SHIFT) & 1 != 0
    }

    /// The CR0 bits that decide how FPU/SIMD instructions behave (`FPU_*`).
    pub fn fpu_bits(self) -> u8 {
        ((self.bits >> FPU_SHIFT) & 7) as u8
    }

    /// The key of the code a SYSCALL or a 64-bit SYSRET leads to from this 64-bit block's
    /// code, without its address (`ip` and the physical address are this key's): 64-bit code
    /// at `cpl` with a flat CS cache (CS base 0, as `fastcall` loads it; SS.B is not keyed in
    /// 64-bit mode);
    /// paging and the FPU bits are this key's, which neither instruction changes.
    ///
    /// Valid only for a block of 64-bit code that is not single-stepped: TF and VM are clear
    /// after either instruction then (the generated code leaves the other cases, SYSRET
    /// loading TF from R11, to the run loop), and no breakpoint is armed.
    pub fn after_fast_call(self, cpl: u8) -> BlockKey {
        debug_assert!(self.mode() == CpuMode::Long64 && !self.single_step());
        let cleared = (3 << CPL_SHIFT)
            | (1 << TF_SHIFT)
            | (1 << VM_SHIFT)
            | (1 << SEGCHECK_SHIFT)
            | (1 << FS_FLAT_SHIFT)
            | (1 << GS_FLAT_SHIFT)
            | (1 << STACK32_SHIFT);
        let bits = (self.bits & !cleared)
            | (CpuMode::Long64 as u64) << MODE_SHIFT
            | u64::from(cpl & 3) << CPL_SHIFT;
        BlockKey {
            ip: self.ip,
            cs_base: 0,
            bits,
        }
    }

    /// True when the block was translated for single-stepping (TF, or an armed instruction or data
    /// breakpoint): one instruction, always interpreted.
    pub fn single_step(self) -> bool {
        (self.bits >> TF_SHIFT) & 1 != 0
    }
}

/// The `FPU_*` bits of `cpu`'s CR0.
pub fn fpu_bits(cpu: &CpuState) -> u8 {
    let mut b = 0;
    for (on, bit) in [
        (cpu.cr0 & CR0_EM, FPU_EM),
        (cpu.cr0 & CR0_TS, FPU_TS),
        (cpu.cr0 & CR0_MP, FPU_MP),
    ] {
        if on != 0 {
            b |= bit;
        }
    }
    b
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

    /// Kernel code reached by SYSCALL (SS.B set) and by an interrupt from user mode (a null
    /// SS) is one block in 64-bit mode; outside it SS.B decides the stack's width.
    #[test]
    fn ss_b_is_keyed_outside_64_bit_mode_only() {
        use crate::state::SEG_DB;
        for (mode, keyed) in [(CpuMode::Long64, false), (CpuMode::Prot32, true)] {
            let mut cpu = CpuState::new(mode);
            cpu.seg[SegReg::Ss as usize].attrs |= SEG_DB;
            let set = BlockKey::new(0x9000, &cpu);
            cpu.seg[SegReg::Ss as usize].attrs &= !SEG_DB;
            let clear = BlockKey::new(0x9000, &cpu);
            assert_eq!(set != clear, keyed, "{mode:?}");
            assert!(!clear.stack32());
        }
    }

    /// [`BlockKey::after_fast_call`] is the key the run loop builds after SYSCALL and SYSRET,
    /// whatever the segment caches held before (a CS base, a 16-bit SS) and with each FPU
    /// bit.
    #[test]
    fn the_key_after_syscall_and_sysret_is_the_run_loops() {
        use crate::fastcall::{syscall, sysret};
        use crate::flags::{IF, TF};
        use crate::msr::EFER_SCE;
        use crate::segment::update_mode;
        use crate::state::{CR0_EM, CR0_MP, CR0_TS, CR4_OSFXSR, SEG_DB};
        for fpu in 0..16u32 {
            let mut cpu = CpuState::new(CpuMode::Long64);
            cpu.efer |= EFER_SCE;
            cpu.msr.star = 0x0023_0010 << 32;
            cpu.msr.lstar = 0xffff_ffff_8100_0000;
            cpu.msr.sfmask = TF | IF;
            for (bit, flag) in [(1, CR0_EM), (2, CR0_TS), (4, CR0_MP)] {
                if fpu & bit != 0 {
                    cpu.cr0 |= flag;
                }
            }
            if fpu & 8 != 0 {
                cpu.cr4 |= CR4_OSFXSR;
            }
            // User code at CPL 3 with a CS base and a 16-bit stack segment cache.
            cpu.seg[SegReg::Cs as usize].selector = 0x33;
            cpu.seg[SegReg::Cs as usize].base = 0x1000;
            cpu.seg[SegReg::Ss as usize].selector = 0x2b;
            cpu.seg[SegReg::Ss as usize].attrs &= !SEG_DB;
            let user = BlockKey::new(0x5000, &cpu);
            assert_eq!(user.cpl(), 3);

            let before = cpu.rflags | IF;
            let rflags = syscall(&mut cpu, 0x40_1000, before).unwrap();
            cpu.rflags = rflags;
            update_mode(&mut cpu);
            let kernel = BlockKey::new(0x9000, &cpu);
            let want = user.after_fast_call(0);
            assert_eq!(
                (want.cs_base, want.mode_bits()),
                (kernel.cs_base, kernel.mode_bits())
            );

            cpu.gpr[11] = IF | 2;
            let rflags = sysret(&mut cpu, 8).unwrap();
            cpu.rflags = rflags;
            update_mode(&mut cpu);
            let back = BlockKey::new(0x5000, &cpu);
            let want = kernel.after_fast_call(3);
            assert_eq!(
                (want.cs_base, want.mode_bits()),
                (back.cs_base, back.mode_bits())
            );
        }
    }
}
