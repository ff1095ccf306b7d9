//! The virtual-mode extensions (SDM Vol. 3 20.3 and 20.4): CR4.VME for virtual-8086 mode
//! and CR4.PVI for ring 3 of protected mode.
//!
//! With IOPL < 3 a virtual-8086 monitor must otherwise emulate every CLI, STI, PUSHF, POPF,
//! INT n and IRET of its task (each is #GP(0)). With CR4.VME = 1 the processor keeps a
//! *virtual* interrupt flag, EFLAGS.VIF, for the task instead:
//! - CLI and STI clear and set VIF (IF stays as the monitor left it);
//! - PUSHF (16-bit only) pushes the FLAGS image with IF replaced by VIF and IOPL as 3;
//! - POPF and IRET (16-bit only) load VIF from the popped IF and leave IF and IOPL alone;
//! - EFLAGS.VIP, which only the monitor sets, says a virtual interrupt is pending: an STI,
//!   or a POPF/IRET that would set VIF, raises #GP(0) instead so the monitor can deliver it;
//!   so does a POPF/IRET that would set TF;
//! - INT n consults the software interrupt redirection bitmap, the 32 bytes below the I/O
//!   permission bitmap of the TSS (SDM table 20-2): a clear bit sends the interrupt to the
//!   task's own real-mode interrupt vector table at linear address 0, inside virtual-8086
//!   mode (pushing FLAGS, CS and IP on the task's stack, with VIF in the image's IF when
//!   IOPL < 3); a set bit goes to the protected-mode IDT when IOPL = 3 and is #GP(0)
//!   otherwise, as without VME.
//!
//! The 32-bit forms (PUSHFD, POPFD, IRETD) stay #GP(0) with IOPL < 3, and INT3, INTO and
//! INT1 are never redirected. With CR4.PVI = 1, CLI and STI at CPL 3 of protected mode with
//! IOPL < 3 act on VIF the same way; PVI changes nothing else.
//!
//! Where the SDM leaves the details of the bitmap read open, this follows Bochs: a TSS limit
//! below 103, or a bitmap byte beyond the limit (an I/O map base below 32 included), is
//! #GP(0); the TSS and the vector table are read as implicit supervisor accesses, the stack
//! as the task's own (CPL 3) accesses, within its 64 KiB segment (a word at offset FFFFH is
//! #SS(0), as for the task's own pushes).
//!
//! Like the rest of this crate's delivery code, the functions take and return the *full*
//! RFLAGS and leave `cpu.rflags` alone; the caller applies the result.

use crate::exception::{Exception, Fault};
use crate::flags::{self, DF, IF, IOPL, NT, RF, TF, VIF, VIP, VM};
use crate::interrupt::{Delivery, Stack};

use crate::memory::{read_linear, PhysMem};
use crate::segment;
use crate::state::{CpuState, SegReg, CR0_PE, CR4_PVI, CR4_VME};

/// Offset of the I/O map base field in a 32-bit TSS.
const IO_MAP_BASE: u32 = 0x66;
/// The smallest 32-bit TSS: a shorter one has no I/O map base, so no redirection bitmap.
const MIN_TSS_LIMIT: u32 = 103;
/// The redirection bitmap's size in bytes: one bit per vector.
const REDIRECTION_BITMAP: u32 = 32;

fn gp0() -> Fault {
    Fault::with_code(Exception::GeneralProtection, 0)
}

fn iopl(rflags: u64) -> u64 {
    (rflags & IOPL) >> 12
}

/// True in virtual-8086 mode with the extensions on and IOPL < 3: the case where CLI, STI,
/// PUSHF, POPF and IRET work on VIF.
fn vme_virtual(cpu: &CpuState, rflags: u64) -> bool {
    rflags & VM != 0 && cpu.cr4 & CR4_VME != 0 && iopl(rflags) < 3
}

/// CLI (`set` false) or STI (`set` true): the new full RFLAGS, or #GP(0). IF changes where
/// CPL ≤ IOPL (always in real mode); otherwise VIF does, in virtual-8086 mode with CR4.VME
/// and at CPL 3 of protected mode with CR4.PVI, where STI with VIP set is #GP(0) (a virtual
/// interrupt is pending: the monitor must deliver it); anything else is #GP(0).
pub fn cli_sti(cpu: &CpuState, rflags: u64, set: bool) -> Result<u64, Fault> {
    let cpl = u64::from(segment::cpl(cpu));
    if cpu.cr0 & CR0_PE == 0 || cpl <= iopl(rflags) {
        return Ok(if set { rflags | IF } else { rflags & !IF });
    }
    let virtual_flag = if rflags & VM != 0 {
        cpu.cr4 & CR4_VME != 0
    } else {
        cpu.cr4 & CR4_PVI != 0 && cpl == 3
    };
    if !virtual_flag || (set && rflags & VIP != 0) {
        return Err(gp0());
    }
    Ok(if set { rflags | VIF } else { rflags & !VIF })
}

/// PUSHF's IOPL rule in virtual-8086 mode for an operand of `size` bytes: `Ok(None)` when
/// the ordinary image is pushed (not virtual-8086 mode, or IOPL = 3), `Ok(Some(image))`
/// for the 16-bit VME image (IF replaced by VIF, IOPL as 3), #GP(0) otherwise.
pub fn pushf(cpu: &CpuState, rflags: u64, size: u32) -> Result<Option<u64>, Fault> {
    if rflags & VM == 0 || iopl(rflags) == 3 {
        return Ok(None);
    }
    if !vme_virtual(cpu, rflags) || size != 2 {
        return Err(gp0());
    }
    Ok(Some(virtual_image(rflags)))
}

/// The 16-bit FLAGS image the task sees with VME and IOPL < 3: IF is VIF, IOPL reads 3.
fn virtual_image(rflags: u64) -> u64 {
    let mut v = (rflags & 0xffff & !IF) | IOPL;
    if rflags & VIF != 0 {
        v |= IF;
    }
    v
}

/// POPF's check before the pop, in virtual-8086 mode with IOPL < 3: only the 16-bit form
/// with CR4.VME may go on (to [`popf`]); anything else is #GP(0).
pub fn popf_allowed(cpu: &CpuState, rflags: u64, size: u32) -> Result<(), Fault> {
    if rflags & VM != 0 && iopl(rflags) < 3 && (!vme_virtual(cpu, rflags) || size != 2) {
        return Err(gp0());
    }
    Ok(())
}

/// POPF of `popped` (`size` bytes) with the current full RFLAGS `old`, once
/// [`popf_allowed`] passed: the new full RFLAGS, or #GP(0). Outside the VME case the bits
/// [`super::popf_mask`] allows change. With VME and IOPL < 3: #GP(0) if the image sets TF,
/// or sets IF while VIP is set; else VIF takes the image's IF, the other FLAGS bits but IF
/// and IOPL change. RF is cleared either way.
pub fn popf(cpu: &CpuState, old: u64, popped: u64, size: u32) -> Result<u64, Fault> {
    if vme_virtual(cpu, old) {
        let (vif, keep) = virtual_load(old, popped)?;
        return Ok(((old & !keep) | (popped & keep) | vif) & !RF | flags::FIXED1);
    }
    let size_mask = if size >= 8 {
        u64::MAX
    } else {
        (1u64 << (8 * size)) - 1
    };
    let writable = super::popf_mask(cpu) & size_mask;
    Ok(((old & !writable) | (popped & writable)) & !RF | flags::FIXED1)
}

/// The VME load of a popped 16-bit FLAGS image (POPF, IRET): #GP(0) when it sets TF, or
/// sets IF with VIP set; else the new VIF bit (from the image's IF) and the mask of the
/// bits taken from the image, which leaves IF and IOPL alone.
fn virtual_load(old: u64, popped: u64) -> Result<(u64, u64), Fault> {
    if popped & TF != 0 || (popped & IF != 0 && old & VIP != 0) {
        return Err(gp0());
    }
    let vif = if popped & IF != 0 { VIF } else { 0 };
    // VIF is replaced whatever the image says.
    Ok((vif, (flags::ARITH | DF | NT) | VIF))
}

/// A 16-bit IRET in virtual-8086 mode with CR4.VME and IOPL < 3 (a 32-bit one is #GP(0),
/// see [`crate::interrupt::iret`]): pops IP, CS and FLAGS from the task's stack; #GP(0) if
/// the image sets TF, or sets IF with VIP set; else loads CS:IP, VIF from the image's IF and
/// the other FLAGS bits but IF and IOPL. Returns the new full RFLAGS; registers change only
/// when nothing faulted.
pub fn iret16(cpu: &mut CpuState, mem: &mut PhysMem, rflags: u64) -> Result<u64, Delivery> {
    let mut st = Stack::current(cpu);
    let ip = st.pop(cpu, mem, 2)?;
    let cs = st.pop(cpu, mem, 2)? as u16;
    let fl = st.pop(cpu, mem, 2)?;
    let (vif, keep) = virtual_load(rflags, fl)?;
    cpu.gpr[4] = st.rsp(cpu.gpr[4]);
    cpu.seg[SegReg::Cs as usize] = super::segment(SegReg::Cs, cs);
    cpu.rip = ip;
    Ok((rflags & !keep) | (fl & keep) | vif | flags::FIXED1)
}

/// Where INT n goes in virtual-8086 mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SoftwareInterrupt {
    /// Through the protected-mode IDT, as an ordinary software interrupt.
    Idt,
    /// Redirected to the task's real-mode handler: CS:IP and the stack are already
    /// updated; this is the new full RFLAGS.
    Redirected(u64),
}

/// INT `vector` (the CD ib form only; `insn_len` bytes long, at `cpu.rip`) with the full
/// RFLAGS `rflags` (SDM Vol. 3 table 20-2). Outside virtual-8086 mode: the IDT. In it,
/// without CR4.VME: the IDT with IOPL = 3, #GP(0) otherwise. With CR4.VME the redirection
/// bitmap decides (see the module documentation); a page fault while reading the TSS, the
/// vector table or writing the stack comes back as itself, with no register changed.
pub fn int_n(
    cpu: &mut CpuState,
    mem: &mut PhysMem,
    vector: u8,
    insn_len: u8,
    rflags: u64,
) -> Result<SoftwareInterrupt, Delivery> {
    if rflags & VM == 0 {
        return Ok(SoftwareInterrupt::Idt);
    }
    let iopl3 = iopl(rflags) == 3;
    if cpu.cr4 & CR4_VME == 0 || redirection_bit(cpu, mem, vector)? {
        return if iopl3 {
            Ok(SoftwareInterrupt::Idt)
        } else {
            Err(gp0().into())
        };
    }
    let entry = read_linear(cpu, mem, u64::from(vector) * 4, 4)?;
    let image = if iopl3 {
        rflags & 0xffff
    } else {
        virtual_image(rflags)
    };
    let ret = cpu.rip.wrapping_add(u64::from(insn_len)) & 0xffff;
    let cs = u64::from(cpu.seg[SegReg::Cs as usize].selector);
    let mut st = Stack::current(cpu);
    st.room(3, 2)?;
    for v in [image, cs, ret] {
        st.push(cpu, mem, 2, v)?;
    }
    cpu.gpr[4] = st.rsp(cpu.gpr[4]);
    cpu.seg[SegReg::Cs as usize] = super::segment(SegReg::Cs, (entry >> 16) as u16);
    cpu.rip = entry & 0xffff;
    let cleared = TF | RF | if iopl3 { IF } else { VIF };
    Ok(SoftwareInterrupt::Redirected(rflags & !cleared))
}

/// Bit `vector` of the TSS's software interrupt redirection bitmap (true: not redirected).
fn redirection_bit(cpu: &mut CpuState, mem: &mut PhysMem, vector: u8) -> Result<bool, Fault> {
    let tr = cpu.tr;
    if tr.limit < MIN_TSS_LIMIT {
        return Err(gp0());
    }
    let at = |off: u32| tr.base.wrapping_add(u64::from(off)) & 0xffff_ffff;
    let map = read_linear(cpu, mem, at(IO_MAP_BASE), 2)? as u32;
    // A map base below 32 wraps to a huge offset, beyond any limit.
    let off = map
        .wrapping_sub(REDIRECTION_BITMAP)
        .wrapping_add(u32::from(vector >> 3));
    if off > tr.limit {
        return Err(gp0());
    }
    let byte = read_linear(cpu, mem, at(off), 1)?;
    Ok(byte >> (vector & 7) & 1 != 0)
}

#[cfg(test)]
mod tests;
