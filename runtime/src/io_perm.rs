//! The I/O permission checks of IN, OUT, INS and OUTS (SDM Vol. 1 19.5, Vol. 3 20.2.8).
//!
//! In protected mode an I/O instruction is allowed outright when CPL ≤ IOPL. Otherwise — and
//! always in virtual-8086 mode, whatever IOPL is — the I/O permission bitmap of the current
//! TSS decides: every port the access touches (1, 2 or 4 consecutive ports) must have its bit
//! clear, else #GP(0). Real mode has no checks.
//!
//! The bitmap starts at the 16-bit offset stored at TSS + 0x66. As on hardware, the check
//! reads the two bitmap bytes holding the first port's bit as one word, so an access whose
//! bits straddle a byte boundary is judged in one read; if that word does not lie entirely
//! within TR's limit the access faults (bits beyond the limit count as set; this is also why
//! a TSS must end its bitmap with an extra 0xff byte). Only a 32-bit (or, in long mode,
//! 64-bit) TSS has a bitmap: with a 16-bit TSS, or a TSS shorter than 104 bytes, every
//! checked access faults. QEMU and Bochs behave the same way.

use crate::exception::{Exception, Fault};
use crate::flags::IOPL;
use crate::memory::{read_linear, PhysMem};
use crate::segment::{self, long_mode};
use crate::state::{CpuState, CR0_PE, SEG_P};

/// Offset of the I/O map base field in a 32-bit or 64-bit TSS.
const IO_MAP_BASE: u32 = 0x66;
/// The smallest 32-bit TSS: its limit must be at least this.
const MIN_TSS_LIMIT: u32 = 103;

/// True when an I/O instruction must consult the bitmap: protected mode with CPL > IOPL, or
/// virtual-8086 mode. Reads IOPL and VM from `cpu.rflags` (neither is an arithmetic flag).
pub fn bitmap_applies(cpu: &CpuState) -> bool {
    if cpu.cr0 & CR0_PE == 0 {
        return false;
    }
    let iopl = ((cpu.rflags & IOPL) >> 12) as u8;
    crate::v86::active(cpu) || segment::cpl(cpu) > iopl
}

/// Checks an access of `size` bytes (1, 2 or 4) at `port`: `Ok` when it may proceed,
/// #GP(0) when the bitmap (or its absence) forbids it; a page fault while reading the
/// bitmap comes back as itself. See the module documentation.
pub fn check(cpu: &mut CpuState, mem: &mut PhysMem, port: u16, size: u32) -> Result<(), Fault> {
    if !bitmap_applies(cpu) {
        return Ok(());
    }
    let gp = Fault::with_code(Exception::GeneralProtection, 0);
    let tr = cpu.tr;
    // Type 9 (available) or 0xb (busy): a 32-bit TSS, or a 64-bit one in long mode.
    let tss32 = tr.attrs & 0x1d == 0x09;
    if tr.attrs & SEG_P == 0 || !tss32 || tr.limit < MIN_TSS_LIMIT {
        return Err(gp);
    }
    let mask = if long_mode(cpu) {
        u64::MAX
    } else {
        0xffff_ffff
    };
    let at = |off: u32| tr.base.wrapping_add(u64::from(off)) & mask;
    let map = read_linear(cpu, mem, at(IO_MAP_BASE), 2)? as u32;
    let off = map + u32::from(port >> 3);
    if off + 1 > tr.limit {
        return Err(gp);
    }
    let bits = read_linear(cpu, mem, at(off), 2)? >> (port & 7);
    if bits & ((1 << size) - 1) != 0 {
        return Err(gp);
    }
    Ok(())
}

#[cfg(test)]
mod tests;
