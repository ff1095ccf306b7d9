//! Virtual-8086 mode (SDM Vol. 3 chapter 20) and the IOPL rules of the flag instructions.
//!
//! A virtual-8086 task runs with EFLAGS.VM = 1 under CR0.PE = 1: real-mode addressing
//! (every segment register holds a paragraph number), 16-bit code, CPL 3. It is entered by a
//! 32-bit IRET at CPL 0 whose popped EFLAGS has VM set (`iret_to_v86`, called by
//! [`crate::interrupt::iret`]) or by a task switch, and left only by an interrupt or exception,
//! which must go through a 32- or 16-bit interrupt/trap gate to a non-conforming DPL-0 code
//! segment; [`crate::interrupt::deliver`] then pushes the data segment registers as well
//! (`push_data_segments`) and nulls them (`null_data_segments`).
//!
//! CLI, STI, PUSHF, POPF, INT n and IRET are IOPL-sensitive in virtual-8086 mode: with
//! IOPL = 3 they run, but POPF and IRET cannot change IOPL; with IOPL < 3 they raise #GP(0)
//! so that a monitor can emulate them, unless the virtual-mode extensions (CR4.VME, [`vme`])
//! let them work on the virtual interrupt flag VIF and redirect INT n to the task's own
//! vector table. INT3, INTO and the I/O instructions are not IOPL-sensitive there (the I/O
//! instructions always consult the TSS bitmap instead, see [`crate::io_perm`]).
//!
//! Like the rest of the delivery code, nothing here touches `cpu.rflags`: callers apply the
//! returned RFLAGS and then recompute the mode with [`crate::segment::update_mode`], which
//! depends on VM.

use crate::exception::{Exception, Fault};
use crate::flags::{self, AC, DF, ID, IF, IOPL, NT, TF, VM};
use crate::interrupt::{Delivery, Stack};
use crate::memory::PhysMem;
use crate::segment;
use crate::state::{CpuState, SegReg, Segment, CR0_PE, SEG_P};

/// The data segment registers in the order an interrupt from virtual-8086 mode pushes them
/// (IRET pops them in the reverse order).
const PUSHED: [SegReg; 4] = [SegReg::Gs, SegReg::Fs, SegReg::Ds, SegReg::Es];

/// Every EFLAGS bit that exists (reserved bits read as 0, bit 1 as 1).
const DEFINED: u64 =
    flags::ARITH | TF | IF | DF | IOPL | NT | flags::RF | VM | AC | flags::VIF | flags::VIP | ID;

/// True when the CPU runs in virtual-8086 mode (CR0.PE = 1 and EFLAGS.VM = 1).
pub fn active(cpu: &CpuState) -> bool {
    cpu.cr0 & CR0_PE != 0 && cpu.rflags & VM != 0
}

/// The segment cache a virtual-8086 mode load produces: base = selector * 16, limit 0xffff,
/// a present, accessed, DPL-3, 16-bit read/write data segment, CS included: access rights
/// 0xF3, which the SDM's VM-entry checks require of every segment of a virtual-8086 guest
/// (Vol. 3 27.3.1.2) and which QEMU loads.
pub fn segment(_sreg: SegReg, selector: u16) -> Segment {
    Segment {
        base: u64::from(selector) << 4,
        limit: 0xffff,
        selector,
        attrs: SEG_P | (3 << 5) | 0x13,
    }
}

/// #GP(0) for an IOPL-sensitive instruction (CLI, STI, PUSHF, POPF, INT n, IRET) in
/// virtual-8086 mode with IOPL < 3, the rule without CR4.VME (with it, see [`vme`]);
/// `rflags` is the full current RFLAGS.
pub fn iopl_sensitive(rflags: u64) -> Result<(), Fault> {
    if rflags & VM != 0 && rflags & IOPL != IOPL {
        return Err(Fault::with_code(Exception::GeneralProtection, 0));
    }
    Ok(())
}

/// The RFLAGS bits POPF may change at the current CPL (before narrowing to the operand
/// size): the arithmetic flags, TF, DF, NT, AC and ID always; IOPL only at CPL 0; IF only when
/// CPL ≤ IOPL. RF is cleared by POPF and VM, VIF and VIP are never loaded. In virtual-8086 mode
/// (CPL 3) the caller has already checked IOPL = 3, so IF is writable and IOPL is not.
pub fn popf_mask(cpu: &CpuState) -> u64 {
    let cpl = segment::cpl(cpu);
    let mut m = flags::ARITH | TF | DF | NT | AC | ID;
    if cpl == 0 {
        m |= IOPL;
    }
    if u64::from(cpl) <= (cpu.rflags & IOPL) >> 12 {
        m |= IF;
    }
    m
}

/// Pushes GS, FS, DS and ES (each `size` bytes, zero-extended) on the ring-0 stack of an
/// interrupt taken in virtual-8086 mode, before SS and ESP.
pub(crate) fn push_data_segments(
    cpu: &mut CpuState,
    mem: &mut PhysMem,
    st: &mut Stack,
    size: u32,
) -> Result<(), Fault> {
    for s in PUSHED {
        let sel = u64::from(cpu.seg[s as usize].selector);
        st.push(cpu, mem, size, sel)?;
    }
    Ok(())
}

/// Loads null selectors into DS, ES, FS and GS after an interrupt from virtual-8086 mode
/// has committed: their paragraph numbers mean nothing to protected-mode code.
pub(crate) fn null_data_segments(cpu: &mut CpuState) {
    for s in PUSHED {
        cpu.seg[s as usize] = Segment::default();
    }
}

/// The rest of a 32-bit IRET at CPL 0 whose popped EFLAGS (`fl`) has VM set, after EIP, CS
/// and EFLAGS were popped from `st`: pops ESP, SS, ES, DS, FS and GS (the selectors in the
/// low words of doublewords), loads all six segment registers virtual-8086 style and
/// returns the new RFLAGS (the popped image, reserved bits cleared). EIP is truncated to 16
/// bits. No limit check applies: every virtual-8086 segment has limit 0xffff, and a larger
/// IP faults when the code is fetched. Registers change only once every pop succeeded.
pub(crate) fn iret_to_v86(
    cpu: &mut CpuState,
    mem: &mut PhysMem,
    mut st: Stack,
    ip: u64,
    cs: u16,
    fl: u64,
) -> Result<u64, Delivery> {
    let esp = st.pop(cpu, mem, 4)?;
    // SS, ES, DS, FS, GS: the order of the frame, from the lowest address up.
    let order = [SegReg::Ss, SegReg::Es, SegReg::Ds, SegReg::Fs, SegReg::Gs];
    let mut sel = [0u16; 5];
    for s in &mut sel {
        *s = st.pop(cpu, mem, 4)? as u16;
    }
    for (sreg, s) in order.into_iter().zip(sel) {
        cpu.seg[sreg as usize] = segment(sreg, s);
    }
    cpu.seg[SegReg::Cs as usize] = segment(SegReg::Cs, cs);
    cpu.gpr[4] = esp & 0xffff_ffff;
    cpu.rip = ip & 0xffff;
    Ok((fl & DEFINED) | flags::FIXED1)
}

pub mod vme;

#[cfg(test)]
mod tests;
