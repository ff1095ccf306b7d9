//! Hardware task switching through 32-bit and 16-bit TSSs (SDM Vol. 3 chapter 7): JMP or
//! CALL to a TSS or task gate, an interrupt through a task gate, and IRET with NT = 1.
//!
//! [`switch`] follows SDM 7.3: the new TSS is checked (present, limit ≥ 0x67 or 0x2b, busy state)
//! and read whole, the current task's dynamic state is saved into the current TSS, busy bits
//! and the back link are updated, TR is loaded and CR0.TS set. That is the commit point:
//! from then on the switch cannot be undone, and a fault while loading the new task's LDTR
//! and segments (#TS, #NP, #SS with the SDM's selectors) or its EIP check (#GP) happens *in
//! the context of the new task*, as the SDM specifies. So unlike the rest of the runtime,
//! [`switch`] applies the new RFLAGS to [`CpuState`] itself (the lazy record and the rest)
//! before loading segments; it also returns the value, so callers can treat it like every
//! other transfer.
//!
//! Checks of the new task's segments run in the order LDTR, CS, SS, ES, DS, FS, GS (the order
//! QEMU, the project's referee, uses; the SDM lists the checks without fixing an order
//! between registers). The PDPTE reload of PAE paging on the CR3 load is not implemented.
//!
//! The T (debug trap) flag of a 32-bit TSS (byte 0x64, bit 0; SDM Vol. 3 7.2.1 and
//! 17.3.1.5): a switch into such a task that completes sets [`CpuState::task_trap`], and the
//! run loop raises #DB with DR6.BT after the switch and before the new task's first
//! instruction, whichever way the task was entered (JMP, CALL, INT n, an exception or an
//! interrupt through a task gate, IRET). A 16-bit TSS has no T flag. A switch that faults
//! in the new task's context leaves no trap pending: the fault is what the new task sees.
//!
//! 16-bit TSSs (the 80286 format, SDM Vol. 3 7.6 and figure 7-10) are switched to and from
//! as well: the outgoing task's state is saved in the format of *its* TSS and the incoming
//! task's read in the format of the new one. A 16-bit TSS holds no CR3 (the current page
//! tables stay), no FS or GS (they are loaded null) and only the low words of EIP, EFLAGS
//! and the general registers. The SDM leaves the upper words of the general registers
//! "modified and not maintained": here they keep their values, as in QEMU TCG, and so do
//! AC, VIF, VIP and ID in the upper word of EFLAGS (VM and RF are cleared: a 16-bit task
//! never runs in virtual-8086 mode, and RF would come from a TSS field that is not there).

use crate::exception::{Exception, Fault};
use crate::flags::{self, LazyFlags, NT, RF, VM};
use crate::interrupt::{Delivery, Stack};
use crate::memory::{read_linear, write_linear, PhysMem};
use crate::segment::{
    self, fetch_descriptor, update_mode, Descriptor, SYS_LDT, SYS_TSS, SYS_TSS16,
};
use crate::state::{CpuState, SegReg, Segment, CR0_PG};

/// CR0.TS: set by every task switch so the first FPU/SSE use traps (#NM).
const CR0_TS: u64 = 1 << 3;

/// Where a TSS format keeps each field of a task's state (SDM Vol. 3 figures 7-2 and 7-10):
/// the 32-bit format in dwords, the 16-bit (80286) one in words.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Layout {
    /// Bytes per register field: 4 or 2.
    width: u32,
    /// Offset of EIP (IP); EFLAGS follows, then EAX..EDI, then the selectors.
    eip: u64,
    /// Offset of ES; then CS, SS, DS (and FS, GS in the 32-bit format).
    es: u64,
    /// How many selectors the format holds: ES, CS, SS, DS (, FS, GS).
    segs: usize,
    /// Offset of the LDT selector.
    ldt: u64,
    /// The smallest limit a new TSS may have (#TS below it): the last byte of the format.
    min_limit: u32,
    /// The last byte of the fields saved into the old TSS (its limit must reach it).
    save_end: u32,
}

/// The 32-bit TSS: the limit must cover the I/O map base field.
const TSS32: Layout = Layout {
    width: 4,
    eip: 0x20,
    es: 0x48,
    segs: 6,
    ldt: 0x60,
    min_limit: 0x67,
    save_end: 0x5f,
};

/// The 16-bit TSS: 44 bytes, up to the LDT selector.
const TSS16: Layout = Layout {
    width: 2,
    eip: 0x0e,
    es: 0x22,
    segs: 4,
    ldt: 0x2a,
    min_limit: 0x2b,
    save_end: 0x29,
};

impl Layout {
    /// The format of a TSS of descriptor type `typ` (bit 3 set: 32-bit).
    fn of(typ: u8) -> Layout {
        if typ & 8 != 0 {
            TSS32
        } else {
            TSS16
        }
    }

    fn eflags(self) -> u64 {
        self.eip + u64::from(self.width)
    }

    fn gpr(self, i: usize) -> u64 {
        self.eflags() + u64::from(self.width) * (i as u64 + 1)
    }

    /// Selector `i` (ES, CS, SS, DS, FS, GS) sits in a slot of the format's width.
    fn seg(self, i: usize) -> u64 {
        self.es + u64::from(self.width) * i as u64
    }
}

/// What started a task switch: it decides the busy-bit, back-link and NT handling.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TaskSource {
    /// JMP to a TSS or task gate: no nesting; the old task becomes not busy.
    Jmp,
    /// CALL to a TSS or task gate: nesting (back link, NT set); the old task stays busy.
    Call,
    /// IRET with NT = 1: back to the task in the back link; the old task becomes not busy.
    Iret,
    /// An interrupt or exception through a task gate: nesting like CALL, then the error code
    /// (if any) is pushed on the new task's stack.
    Interrupt {
        /// The error code to push, for exceptions that have one.
        error_code: Option<u32>,
        /// The event is external to the program (hardware interrupt or exception): error
        /// codes of faults during the switch carry EXT.
        ext: bool,
    },
}

impl TaskSource {
    fn nests(self) -> bool {
        matches!(self, TaskSource::Call | TaskSource::Interrupt { .. })
    }

    fn ext(self) -> u32 {
        match self {
            TaskSource::Interrupt { ext: true, .. } => 1,
            _ => 0,
        }
    }
}

fn coded(e: Exception, selector: u16, ext: u32) -> Fault {
    Fault::with_code(e, u32::from(selector & 0xfffc) | ext)
}

/// The TSS a task gate names: TI = 0 and within the GDT, else #GP(sel); an available TSS,
/// else #GP(sel); present, else #NP(sel). `ext` is the EXT bit of those error codes.
pub fn gate_tss(
    cpu: &mut CpuState,
    mem: &mut PhysMem,
    selector: u16,
    ext: u32,
) -> Result<Descriptor, Fault> {
    let gp = coded(Exception::GeneralProtection, selector, ext);
    if selector & 4 != 0 {
        return Err(gp);
    }
    let Some(d) = fetch_descriptor(cpu, mem, selector)? else {
        return Err(gp);
    };
    if d.s() || !matches!(d.typ(), SYS_TSS | SYS_TSS16) {
        return Err(gp);
    }
    if !d.present() {
        return Err(coded(Exception::SegmentNotPresent, selector, ext));
    }
    Ok(d)
}

/// IRET with NT = 1 in protected mode (not virtual-8086, not long mode): returns to the task
/// named by the current TSS's back link. `None` when IRET is an ordinary return. The link
/// must name a busy TSS in the GDT, else #TS(link); not present: #NP(link).
pub fn nested_iret(
    cpu: &mut CpuState,
    mem: &mut PhysMem,
    next_ip: u64,
    rflags: u64,
) -> Option<Result<u64, Delivery>> {
    if rflags & NT == 0 || !segment::protected(cpu) || segment::long_mode(cpu) {
        return None;
    }
    Some(task_return(cpu, mem, next_ip, rflags))
}

fn task_return(
    cpu: &mut CpuState,
    mem: &mut PhysMem,
    next_ip: u64,
    rflags: u64,
) -> Result<u64, Delivery> {
    let link = read_linear(cpu, mem, cpu.tr.base & 0xffff_ffff, 2)? as u16;
    let ts = coded(Exception::InvalidTss, link, 0);
    if link & 4 != 0 {
        return Err(ts.into());
    }
    let Some(d) = fetch_descriptor(cpu, mem, link)? else {
        return Err(ts.into());
    };
    if d.s() || !matches!(d.typ(), 0x3 | 0xb) {
        return Err(ts.into());
    }
    if !d.present() {
        return Err(coded(Exception::SegmentNotPresent, link, 0).into());
    }
    switch(cpu, mem, link, d, TaskSource::Iret, next_ip, rflags)
}

/// The state a TSS holds for its task (SDM Vol. 3 figures 7-2 and 7-10), widened: the
/// fields a 16-bit TSS lacks are `None` (CR3) or null (FS, GS).
struct Image {
    cr3: Option<u64>,
    eip: u64,
    eflags: u64,
    gpr: [u64; 8],
    /// ES, CS, SS, DS, FS, GS.
    seg: [u16; 6],
    ldt: u16,
    /// The T flag (32-bit TSS only).
    trap: bool,
}

/// Offset of the T flag (bit 0) in a 32-bit TSS.
const TSS32_T: u64 = 0x64;

fn read_image(
    cpu: &mut CpuState,
    mem: &mut PhysMem,
    base: u64,
    layout: Layout,
) -> Result<Image, Fault> {
    let mut rd =
        |off: u64, size: u32| read_linear(cpu, mem, base.wrapping_add(off) & 0xffff_ffff, size);
    let w = layout.width;
    let mut gpr = [0; 8];
    for (i, g) in gpr.iter_mut().enumerate() {
        *g = rd(layout.gpr(i), w)?;
    }
    let mut seg = [0; 6];
    for (i, s) in seg.iter_mut().enumerate().take(layout.segs) {
        *s = rd(layout.seg(i), 2)? as u16;
    }
    Ok(Image {
        cr3: if layout == TSS32 {
            Some(rd(0x1c, 4)?)
        } else {
            None
        },
        eip: rd(layout.eip, w)?,
        eflags: rd(layout.eflags(), w)?,
        gpr,
        seg,
        ldt: rd(layout.ldt, 2)? as u16,
        trap: layout == TSS32 && rd(TSS32_T, 2)? & 1 != 0,
    })
}

/// Sets or clears the busy bit of the TSS descriptor `selector` names in the GDT. A null
/// selector (TR never loaded since reset) names no descriptor: nothing to update.
fn set_busy(cpu: &mut CpuState, mem: &mut PhysMem, selector: u16, busy: bool) -> Result<(), Fault> {
    if selector & 0xfffc == 0 {
        return Ok(());
    }
    if let Some(d) = fetch_descriptor(cpu, mem, selector & !4)? {
        let access = (d.hi >> 8) & 0xff;
        let access = if busy { access | 2 } else { access & !2 };
        write_linear(cpu, mem, d.address.wrapping_add(5), 1, u64::from(access))?;
    }
    Ok(())
}

/// Switches to the task whose (checked, present) TSS descriptor `desc` the selector names.
/// `next_ip` is the EIP saved for the current task (the instruction after JMP/CALL/IRET/INT
/// n, or the faulting instruction for a fault); `rflags` the full current RFLAGS. See the
/// module documentation for what happens when and in whose context faults arise.
pub fn switch(
    cpu: &mut CpuState,
    mem: &mut PhysMem,
    selector: u16,
    desc: Descriptor,
    source: TaskSource,
    next_ip: u64,
    rflags: u64,
) -> Result<u64, Delivery> {
    let ext = source.ext();
    let new_layout = Layout::of(desc.typ());
    let old_layout = Layout::of(cpu.tr.attrs as u8);
    // Checks in the old task's context: the new TSS must hold a whole image of its format,
    // the old one must have room for the state saved into it.
    if desc.limit() < new_layout.min_limit {
        return Err(coded(Exception::InvalidTss, selector, ext).into());
    }
    if cpu.tr.limit < old_layout.save_end {
        return Err(coded(Exception::InvalidTss, cpu.tr.selector, ext).into());
    }
    let new = read_image(cpu, mem, desc.base(), new_layout)?;

    // Save the current task; update busy bits and the back link.
    let old_sel = cpu.tr.selector;
    let old_base = cpu.tr.base;
    if matches!(source, TaskSource::Jmp | TaskSource::Iret) {
        set_busy(cpu, mem, old_sel, false)?;
    }
    let saved_flags = if source == TaskSource::Iret {
        rflags & !NT
    } else {
        rflags
    };
    let wr = |cpu: &mut CpuState, mem: &mut PhysMem, off: u64, size: u32, v: u64| {
        write_linear(cpu, mem, old_base.wrapping_add(off) & 0xffff_ffff, size, v)
    };
    // A 16-bit TSS keeps the low words only (SDM 7.6: the upper ones are lost).
    let w = old_layout.width;
    wr(cpu, mem, old_layout.eip, w, next_ip)?;
    wr(cpu, mem, old_layout.eflags(), w, saved_flags)?;
    for i in 0..8 {
        let v = cpu.gpr[i];
        wr(cpu, mem, old_layout.gpr(i), w, v)?;
    }
    for i in 0..old_layout.segs {
        let v = u64::from(cpu.seg[i].selector);
        wr(cpu, mem, old_layout.seg(i), 2, v)?;
    }
    // A 16-bit TSS holds FLAGS only: AC, VIF, VIP and ID stay as they were, as in QEMU;
    // VM is cleared (the new task's segments are protected-mode ones), and so is RF, which a
    // new task takes from its TSS.
    let upper = if new_layout == TSS16 {
        rflags & 0xffff_0000 & !(VM | RF)
    } else {
        0
    };
    let mut new_flags = upper | (new.eflags & 0xffff_ffff) | flags::FIXED1;
    if source.nests() {
        write_linear(cpu, mem, desc.base() & 0xffff_ffff, 2, u64::from(old_sel))?;
        new_flags |= NT;
    }
    let mut desc = desc;
    if source != TaskSource::Iret {
        set_busy(cpu, mem, selector, true)?;
        desc.hi |= 2 << 8;
    }

    // The commit point: TR, CR0.TS, CR3, the registers and the selectors of the new task.
    cpu.tr = desc.to_segment(selector);
    cpu.cr0 |= CR0_TS;
    // A 16-bit task runs on the page tables of the task before it.
    if let (Some(cr3), true) = (new.cr3, cpu.cr0 & CR0_PG != 0) {
        cpu.cr3 = cr3;
        cpu.flush_tlb();
    }
    cpu.rip = new.eip;
    for (i, v) in new.gpr.iter().enumerate() {
        // From a 16-bit TSS only the low words are loaded; the upper ones are left as they
        // were (the SDM leaves them undefined; QEMU does this).
        cpu.gpr[i] = if new_layout == TSS16 {
            (cpu.gpr[i] & 0xffff_0000) | v
        } else {
            *v
        };
    }
    cpu.cc = LazyFlags::from_eflags(new_flags);
    cpu.rflags = new_flags & !flags::ARITH;
    for (i, s) in new.seg.iter().enumerate() {
        cpu.seg[i] = Segment {
            selector: *s,
            ..Segment::default()
        };
    }
    cpu.ldtr = Segment {
        selector: new.ldt,
        ..Segment::default()
    };
    let loaded = load_new_state(cpu, mem, &new, new_flags, ext);
    update_mode(cpu);
    loaded?;

    if let TaskSource::Interrupt {
        error_code: Some(code),
        ..
    } = source
    {
        // Pushed as a word onto a 16-bit task's stack, as a dword onto a 32-bit one's.
        // Outside its SS limit: #SS(EXT) in the new task's context (the SDM has no
        // pseudocode for it; EXT because the push is part of delivering the event).
        let mut st = Stack::current(cpu).with_code(ext);
        st.push(cpu, mem, new_layout.width, u64::from(code))?;
        cpu.gpr[4] = st.rsp(cpu.gpr[4]);
    }
    let cs = cpu.seg[SegReg::Cs as usize];
    if new_flags & VM == 0 && cpu.rip > u64::from(cs.limit) {
        return Err(Fault::with_code(Exception::GeneralProtection, ext).into());
    }
    cpu.task_trap = new.trap;
    Ok(new_flags)
}

/// Loads LDTR and the segment registers of the new task, with their checks.
fn load_new_state(
    cpu: &mut CpuState,
    mem: &mut PhysMem,
    new: &Image,
    new_flags: u64,
    ext: u32,
) -> Result<(), Fault> {
    let ts = |s: u16| coded(Exception::InvalidTss, s, ext);
    if new.ldt & 0xfffc != 0 {
        if new.ldt & 4 != 0 {
            return Err(ts(new.ldt));
        }
        let Some(d) = fetch_descriptor(cpu, mem, new.ldt)? else {
            return Err(ts(new.ldt));
        };
        if d.s() || d.typ() != SYS_LDT || !d.present() {
            return Err(ts(new.ldt));
        }
        cpu.ldtr = d.to_segment(new.ldt);
    }
    if new_flags & VM != 0 {
        // A virtual-8086 task: every selector is a paragraph number.
        for s in SEGS {
            cpu.seg[s as usize] = crate::v86::segment(s, new.seg[s as usize]);
        }
        return Ok(());
    }
    let cpl = (new.seg[SegReg::Cs as usize] & 3) as u8;
    for s in [
        SegReg::Cs,
        SegReg::Ss,
        SegReg::Es,
        SegReg::Ds,
        SegReg::Fs,
        SegReg::Gs,
    ] {
        let sel = new.seg[s as usize];
        if sel & 0xfffc == 0 {
            if matches!(s, SegReg::Cs | SegReg::Ss) {
                return Err(ts(0));
            }
            continue;
        }
        let Some(mut d) = fetch_descriptor(cpu, mem, sel)? else {
            return Err(ts(sel));
        };
        let rpl = (sel & 3) as u8;
        let ok = match s {
            SegReg::Cs => {
                d.is_code()
                    && if d.is_conforming() {
                        d.dpl() <= rpl
                    } else {
                        d.dpl() == rpl
                    }
            }
            SegReg::Ss => d.is_writable() && d.dpl() == cpl && rpl == cpl,
            _ => d.is_readable() && (d.is_conforming() || (d.dpl() >= cpl && d.dpl() >= rpl)),
        };
        if !ok {
            return Err(ts(sel));
        }
        if !d.present() {
            let e = if s == SegReg::Ss {
                Exception::StackFault
            } else {
                Exception::SegmentNotPresent
            };
            return Err(coded(e, sel, ext));
        }
        segment::set_accessed(cpu, mem, &mut d)?;
        cpu.seg[s as usize] = d.to_segment(sel);
    }
    Ok(())
}

const SEGS: [SegReg; 6] = [
    SegReg::Es,
    SegReg::Cs,
    SegReg::Ss,
    SegReg::Ds,
    SegReg::Fs,
    SegReg::Gs,
];

#[cfg(test)]
mod tests;
