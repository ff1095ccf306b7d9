//! Protected-mode segmentation: descriptor decoding, segment-register loads with their
//! protection checks, LLDT/LTR, and the LAR/LSL/VERR/VERW queries (SDM Vol. 3, chapters 3
//! and 5).
//!
//! Everything here is a pure function of a [`CpuState`] and guest memory: descriptor tables
//! are read (and accessed/busy bits written) through [`read_linear`]/[`write_linear`], so the
//! code keeps working once paging is wired in. Faults come back as [`Fault`] values with the
//! error codes the SDM prescribes; nothing is raised or delivered here.
//!
//! Not covered: far CS loads (JMP/CALL/RET far, call gates), which the far-transfer code will
//! build from [`read_descriptor`]. Limit and type checks on ordinary memory accesses are in
//! [`limit`].

use crate::exception::{Exception, Fault};
use crate::flags;
use crate::memory::{read_linear, write_linear, PhysMem};
use crate::paging::canonical;
use crate::state::{CpuMode, CpuState, SegReg, Segment, CR0_PE, EFER_LMA, SEG_DB, SEG_L, SEG_P};

/// Descriptor type bit in code/data descriptors: accessed.
pub const TYPE_ACCESSED: u8 = 1;
/// System descriptor type: available 16-bit TSS.
pub const SYS_TSS16: u8 = 0x1;
/// System descriptor type: LDT.
pub const SYS_LDT: u8 = 0x2;
/// System descriptor type: busy 16-bit TSS.
pub const SYS_TSS16_BUSY: u8 = 0x3;
/// System descriptor type: 16-bit call gate.
pub const SYS_CALL16: u8 = 0x4;
/// System descriptor type: task gate.
pub const SYS_TASK_GATE: u8 = 0x5;
/// System descriptor type: 16-bit interrupt gate.
pub const SYS_INT16: u8 = 0x6;
/// System descriptor type: 16-bit trap gate.
pub const SYS_TRAP16: u8 = 0x7;
/// System descriptor type: available 32-bit (64-bit in long mode) TSS.
pub const SYS_TSS: u8 = 0x9;
/// System descriptor type: busy 32-bit (64-bit in long mode) TSS.
pub const SYS_TSS_BUSY: u8 = 0xb;
/// System descriptor type: 32-bit (64-bit in long mode) call gate.
pub const SYS_CALL: u8 = 0xc;
/// System descriptor type: 32-bit (64-bit in long mode) interrupt gate.
pub const SYS_INT: u8 = 0xe;
/// System descriptor type: 32-bit (64-bit in long mode) trap gate.
pub const SYS_TRAP: u8 = 0xf;

/// A decoded segment or gate descriptor, as read from the GDT, LDT or IDT.
///
/// `lo` and `hi` are the descriptor's two doublewords; `upper` holds the third and fourth
/// doublewords (bytes 8..15) of a 16-byte system descriptor in long mode, else 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Descriptor {
    /// Bytes 0..3.
    pub lo: u32,
    /// Bytes 4..7.
    pub hi: u32,
    /// Bytes 8..15 of a 16-byte long-mode system descriptor, else 0.
    pub upper: u64,
    /// Linear address of the descriptor in its table (for accessed/busy-bit updates).
    pub address: u64,
}

/// Encodes an 8-byte segment or system descriptor: `access` is byte 5 (P, DPL, S, type),
/// `flags` the high nibble of byte 6 (G, D/B, L, AVL), `limit` 20 bits. For building
/// tables in tests, guests and fuzz harnesses; [`Descriptor::from_raw`] decodes it.
pub fn encode_descriptor(base: u32, limit: u32, access: u8, flags: u8) -> u64 {
    u64::from(limit & 0xffff)
        | u64::from(base & 0xff_ffff) << 16
        | u64::from(access) << 40
        | u64::from((limit >> 16) & 0xf) << 48
        | u64::from(flags & 0xf) << 52
        | u64::from(base >> 24) << 56
}

/// Encodes an 8-byte gate (call, interrupt, trap or task gate; the low half of a 16-byte
/// long-mode gate): target `selector` and `offset` (bits 0..31), `access` byte 5 (P, DPL,
/// type). A call gate's parameter count goes in bits 32..36, a long-mode gate's IST in
/// bits 32..34: OR them in.
pub fn encode_gate(selector: u16, offset: u32, access: u8) -> u64 {
    u64::from(offset & 0xffff)
        | u64::from(selector) << 16
        | u64::from(access) << 40
        | u64::from(offset >> 16) << 48
}

impl Descriptor {
    /// Decodes a descriptor from its raw bytes (`upper` = bytes 8..15 or 0).
    pub fn from_raw(raw: u64, upper: u64, address: u64) -> Descriptor {
        Descriptor {
            lo: raw as u32,
            hi: (raw >> 32) as u32,
            upper,
            address,
        }
    }

    /// The four type bits (bits 8..11 of the high doubleword).
    pub fn typ(&self) -> u8 {
        ((self.hi >> 8) & 0xf) as u8
    }

    /// S: 1 for code/data segments, 0 for system descriptors and gates.
    pub fn s(&self) -> bool {
        self.hi & (1 << 12) != 0
    }

    /// The descriptor privilege level.
    pub fn dpl(&self) -> u8 {
        ((self.hi >> 13) & 3) as u8
    }

    /// P: present.
    pub fn present(&self) -> bool {
        self.hi & (1 << 15) != 0
    }

    /// AVL: available to software.
    pub fn avl(&self) -> bool {
        self.hi & (1 << 20) != 0
    }

    /// L: 64-bit code segment.
    pub fn l(&self) -> bool {
        self.hi & (1 << 21) != 0
    }

    /// D/B: default operand size / stack size 32.
    pub fn db(&self) -> bool {
        self.hi & (1 << 22) != 0
    }

    /// G: limit in 4 KiB units.
    pub fn g(&self) -> bool {
        self.hi & (1 << 23) != 0
    }

    /// The base address; for a 16-byte system descriptor it includes bits 32..63.
    pub fn base(&self) -> u64 {
        let b = u64::from(self.lo >> 16)
            | (u64::from(self.hi & 0xff) << 16)
            | (u64::from(self.hi >> 24) << 24);
        b | ((self.upper & 0xffff_ffff) << 32)
    }

    /// The limit in bytes, scaled by the granularity bit.
    pub fn limit(&self) -> u32 {
        let raw = (self.lo & 0xffff) | (self.hi & 0xf_0000);
        if self.g() {
            (raw << 12) | 0xfff
        } else {
            raw
        }
    }

    /// True for a code segment (S = 1 and type bit 3).
    pub fn is_code(&self) -> bool {
        self.s() && self.typ() & 8 != 0
    }

    /// True for a data segment (S = 1, type bit 3 clear).
    pub fn is_data(&self) -> bool {
        self.s() && self.typ() & 8 == 0
    }

    /// True for a conforming code segment.
    pub fn is_conforming(&self) -> bool {
        self.is_code() && self.typ() & 4 != 0
    }

    /// True for a readable code segment or any data segment.
    pub fn is_readable(&self) -> bool {
        self.is_data() || (self.is_code() && self.typ() & 2 != 0)
    }

    /// True for a writable data segment.
    pub fn is_writable(&self) -> bool {
        self.is_data() && self.typ() & 2 != 0
    }

    /// The attributes in the VMX layout that [`Segment::attrs`] uses.
    pub fn attrs(&self) -> u16 {
        (((self.hi >> 8) & 0xff) | ((self.hi >> 8) & 0xf000)) as u16
    }

    /// The segment-register cache this descriptor loads for `selector`.
    pub fn to_segment(&self, selector: u16) -> Segment {
        Segment {
            base: self.base(),
            limit: self.limit(),
            selector,
            attrs: self.attrs(),
        }
    }

    /// For a gate: the target code-segment selector (or the TSS selector of a task gate).
    pub fn gate_selector(&self) -> u16 {
        (self.lo >> 16) as u16
    }

    /// For a gate: the target offset; 64 bits for 16-byte long-mode gates.
    pub fn gate_offset(&self) -> u64 {
        u64::from(self.lo & 0xffff)
            | (u64::from(self.hi & 0xffff_0000))
            | ((self.upper & 0xffff_ffff) << 32)
    }

    /// For a call gate: the parameter count (doublewords or words to copy).
    pub fn gate_param_count(&self) -> u8 {
        (self.hi & 0x1f) as u8
    }

    /// For a long-mode interrupt or trap gate: the interrupt-stack-table index (0 = none).
    pub fn gate_ist(&self) -> u8 {
        (self.hi & 7) as u8
    }
}

/// True when the processor is in protected mode proper or long mode (CR0.PE = 1, not in
/// virtual-8086 mode): where selectors index descriptor tables.
pub fn protected(cpu: &CpuState) -> bool {
    cpu.cr0 & CR0_PE != 0 && cpu.rflags & flags::VM == 0
}

/// True when long mode is active (EFER.LMA), in 64-bit or compatibility mode.
pub fn long_mode(cpu: &CpuState) -> bool {
    cpu.efer & EFER_LMA != 0
}

/// True in 64-bit mode: long mode active and CS.L set.
pub fn mode64(cpu: &CpuState) -> bool {
    long_mode(cpu) && cpu.seg[SegReg::Cs as usize].attrs & SEG_L != 0
}

/// The current privilege level: 0 in real mode, 3 in virtual-8086 mode, else CS.RPL (which
/// every CS load sets to the CPL, conforming segments included).
pub fn cpl(cpu: &CpuState) -> u8 {
    if cpu.cr0 & CR0_PE == 0 {
        0
    } else if cpu.rflags & flags::VM != 0 {
        3
    } else {
        (cpu.seg[SegReg::Cs as usize].selector & 3) as u8
    }
}

/// Recomputes [`CpuState::mode`] from CR0.PE, EFER.LMA, RFLAGS.VM and the CS cache; call it
/// after changing any of them.
pub fn update_mode(cpu: &mut CpuState) {
    let cs = cpu.seg[SegReg::Cs as usize].attrs;
    cpu.mode = if cpu.cr0 & CR0_PE == 0 {
        CpuMode::Real16
    } else if cpu.rflags & flags::VM != 0 {
        CpuMode::Prot16
    } else if long_mode(cpu) && cs & SEG_L != 0 {
        CpuMode::Long64
    } else if cs & SEG_DB != 0 {
        CpuMode::Prot32
    } else {
        CpuMode::Prot16
    };
}

/// #GP with a selector error code (index and TI; EXT clear).
pub fn gp(selector: u16) -> Fault {
    Fault::with_code(Exception::GeneralProtection, u32::from(selector & 0xfffc))
}

fn fault(e: Exception, selector: u16) -> Fault {
    Fault::with_code(e, u32::from(selector & 0xfffc))
}

/// True for the system types that are 16 bytes long in long mode.
fn is_wide_system(typ: u8) -> bool {
    matches!(
        typ,
        SYS_LDT | SYS_TSS | SYS_TSS_BUSY | SYS_CALL | SYS_INT | SYS_TRAP
    )
}

/// Reads a descriptor without faulting on the table limit: `Ok(None)` when the selector's
/// entry (8 bytes, 16 for a long-mode system descriptor) lies outside the GDT/LDT or the
/// selector names the LDT while LDTR is null. Only memory faults come back as `Err`.
pub fn fetch_descriptor(
    cpu: &mut CpuState,
    mem: &mut PhysMem,
    selector: u16,
) -> Result<Option<Descriptor>, Fault> {
    let (base, limit) = if selector & 4 != 0 {
        let l = cpu.ldtr;
        if l.selector & 0xfffc == 0 || l.attrs & SEG_P == 0 {
            return Ok(None);
        }
        (l.base, l.limit)
    } else {
        (cpu.gdtr.base, u32::from(cpu.gdtr.limit))
    };
    let off = u32::from(selector & 0xfff8);
    if off + 7 > limit {
        return Ok(None);
    }
    let mask = if long_mode(cpu) {
        u64::MAX
    } else {
        0xffff_ffff
    };
    let addr = base.wrapping_add(u64::from(off)) & mask;
    let raw = read_linear(cpu, mem, addr, 8)?;
    let mut d = Descriptor::from_raw(raw, 0, addr);
    if long_mode(cpu) && !d.s() && is_wide_system(d.typ()) {
        if off + 15 > limit {
            return Ok(None);
        }
        d.upper = read_linear(cpu, mem, addr.wrapping_add(8) & mask, 8)?;
    }
    Ok(Some(d))
}

/// Reads the descriptor a selector names, from the GDT or (TI = 1) the LDT. A selector
/// outside the table's limit, or into the LDT while LDTR is null, is #GP(selector & 0xfffc).
/// In long mode LDT, TSS and call/interrupt/trap-gate descriptors are 16 bytes and the limit
/// check covers all of them. The null selector is not special here: callers check for it.
pub fn read_descriptor(
    cpu: &mut CpuState,
    mem: &mut PhysMem,
    selector: u16,
) -> Result<Descriptor, Fault> {
    fetch_descriptor(cpu, mem, selector)?.ok_or_else(|| gp(selector))
}

/// Sets the accessed bit of a code/data descriptor in memory (if it is not already set).
pub fn set_accessed(
    cpu: &mut CpuState,
    mem: &mut PhysMem,
    d: &mut Descriptor,
) -> Result<(), Fault> {
    if d.typ() & TYPE_ACCESSED == 0 {
        d.hi |= u32::from(TYPE_ACCESSED) << 8;
        write_linear(
            cpu,
            mem,
            d.address.wrapping_add(5),
            1,
            u64::from(d.hi >> 8) & 0xff,
        )?;
    }
    Ok(())
}

/// The segment cache that real-address and virtual-8086 mode loads produce: base =
/// selector * 16. Real mode keeps the old limit and attributes (so "unreal" mode survives);
/// virtual-8086 mode sets limit 0xffff and a present, accessed, DPL-3, 16-bit read/write data
/// (CS: code) segment.
pub fn real_segment(cpu: &CpuState, sreg: SegReg, selector: u16) -> Segment {
    let old = cpu.seg[sreg as usize];
    if cpu.rflags & flags::VM != 0 {
        crate::v86::segment(sreg, selector)
    } else {
        Segment {
            base: u64::from(selector) << 4,
            selector,
            ..old
        }
    }
}

/// MOV or POP to a segment register (SDM Vol. 2 "MOV", Vol. 3 5.5-5.7).
///
/// Real and virtual-8086 mode: see [`real_segment`]. Protected and long mode, checked in this
/// order:
/// - CS: #UD (MOV CS is invalid; far transfers load CS with their own checks).
/// - null selector: DS/ES/FS/GS are loaded unusable (base 0, limit 0, attributes 0); SS is
///   #GP(0) unless in 64-bit mode at CPL < 3 with RPL = CPL, where it is loaded with a
///   not-present cache carrying DPL = CPL.
/// - selector beyond the GDT/LDT limit: #GP(sel).
/// - SS: RPL ≠ CPL, not a writable data segment, or DPL ≠ CPL: #GP(sel); not present:
///   #SS(sel).
/// - DS/ES/FS/GS: a system descriptor or execute-only code: #GP(sel); data or non-conforming
///   code with DPL < max(CPL, RPL): #GP(sel); not present: #NP(sel).
///
/// On success the descriptor's accessed bit is set in memory and the cache loaded.
pub fn load_segment(
    cpu: &mut CpuState,
    mem: &mut PhysMem,
    sreg: SegReg,
    selector: u16,
) -> Result<(), Fault> {
    if !protected(cpu) {
        cpu.seg[sreg as usize] = real_segment(cpu, sreg, selector);
        return Ok(());
    }
    if sreg == SegReg::Cs {
        return Err(Fault::new(Exception::InvalidOpcode));
    }
    let cpl = cpl(cpu);
    let rpl = (selector & 3) as u8;
    if selector & 0xfffc == 0 {
        if sreg == SegReg::Ss {
            if !mode64(cpu) || cpl == 3 || rpl != cpl {
                return Err(gp(0));
            }
            cpu.seg[sreg as usize] = Segment {
                base: 0,
                limit: 0,
                selector,
                attrs: u16::from(cpl) << 5,
            };
        } else {
            cpu.seg[sreg as usize] = Segment {
                base: 0,
                limit: 0,
                selector,
                attrs: 0,
            };
        }
        return Ok(());
    }
    let mut d = read_descriptor(cpu, mem, selector)?;
    if sreg == SegReg::Ss {
        if rpl != cpl || !d.is_writable() || d.dpl() != cpl {
            return Err(gp(selector));
        }
        if !d.present() {
            return Err(fault(Exception::StackFault, selector));
        }
    } else {
        if !d.is_readable() {
            return Err(gp(selector));
        }
        if !d.is_conforming() && (d.dpl() < cpl || d.dpl() < rpl) {
            return Err(gp(selector));
        }
        if !d.present() {
            return Err(fault(Exception::SegmentNotPresent, selector));
        }
    }
    set_accessed(cpu, mem, &mut d)?;
    cpu.seg[sreg as usize] = d.to_segment(selector);
    Ok(())
}

/// Checks done by every descriptor-table instruction: #UD outside protected mode (real or
/// virtual-8086), #GP(0) when CPL ≠ 0 for the privileged ones.
fn table_insn_checks(cpu: &CpuState, privileged: bool) -> Result<(), Fault> {
    if !protected(cpu) {
        return Err(Fault::new(Exception::InvalidOpcode));
    }
    if privileged && cpl(cpu) != 0 {
        return Err(gp(0));
    }
    Ok(())
}

/// Reads a GDT system descriptor for LLDT/LTR: TI = 1 is #GP(sel), as is a long-mode 16-byte
/// descriptor whose upper type field is not zero.
fn read_gdt_system(
    cpu: &mut CpuState,
    mem: &mut PhysMem,
    selector: u16,
) -> Result<Descriptor, Fault> {
    if selector & 4 != 0 {
        return Err(gp(selector));
    }
    let d = read_descriptor(cpu, mem, selector)?;
    if long_mode(cpu) && (d.upper >> 40) & 0x1f != 0 {
        return Err(gp(selector));
    }
    Ok(d)
}

/// The last check of LLDT and LTR on an LDT or TSS descriptor: in long mode its 64-bit base
/// must be canonical, else #GP(sel) (the AMD APM's LLDT and LTR; the Intel
/// SDM likewise), before LTR marks the descriptor busy.
fn check_system_base(cpu: &CpuState, d: &Descriptor, selector: u16) -> Result<(), Fault> {
    if long_mode(cpu) && !canonical(d.base()) {
        return Err(gp(selector));
    }
    Ok(())
}

/// LLDT: loads LDTR. #UD outside protected mode, #GP(0) at CPL > 0. A null selector leaves
/// LDTR unusable (selector stored, attributes 0). Otherwise the selector must name (TI = 0) an
/// LDT descriptor in the GDT, else #GP(sel); not present: #NP(sel); in long mode a
/// non-canonical base: #GP(sel).
pub fn load_ldtr(cpu: &mut CpuState, mem: &mut PhysMem, selector: u16) -> Result<(), Fault> {
    table_insn_checks(cpu, true)?;
    if selector & 0xfffc == 0 {
        cpu.ldtr = Segment {
            base: 0,
            limit: 0,
            selector,
            attrs: 0,
        };
        return Ok(());
    }
    let d = read_gdt_system(cpu, mem, selector)?;
    if d.s() || d.typ() != SYS_LDT {
        return Err(gp(selector));
    }
    if !d.present() {
        return Err(fault(Exception::SegmentNotPresent, selector));
    }
    check_system_base(cpu, &d, selector)?;
    cpu.ldtr = d.to_segment(selector);
    Ok(())
}

/// LTR: loads TR and marks the TSS descriptor busy in memory. #UD outside protected mode,
/// #GP(0) at CPL > 0 or for a null selector; TI = 1 or not an available TSS (16- or 32-bit;
/// only the 64-bit one in long mode): #GP(sel); not present: #NP(sel); in long mode a
/// non-canonical base: #GP(sel), with the descriptor left available.
pub fn load_tr(cpu: &mut CpuState, mem: &mut PhysMem, selector: u16) -> Result<(), Fault> {
    table_insn_checks(cpu, true)?;
    if selector & 0xfffc == 0 {
        return Err(gp(0));
    }
    let mut d = read_gdt_system(cpu, mem, selector)?;
    let ok = match d.typ() {
        SYS_TSS => true,
        SYS_TSS16 => !long_mode(cpu),
        _ => false,
    };
    if d.s() || !ok {
        return Err(gp(selector));
    }
    if !d.present() {
        return Err(fault(Exception::SegmentNotPresent, selector));
    }
    check_system_base(cpu, &d, selector)?;
    d.hi |= 2 << 8;
    write_linear(
        cpu,
        mem,
        d.address.wrapping_add(5),
        1,
        u64::from(d.hi >> 8) & 0xff,
    )?;
    cpu.tr = d.to_segment(selector);
    Ok(())
}

/// The descriptor behind a selector for LAR/LSL/VERR/VERW, or `None` (ZF = 0) when it is
/// null or beyond its table's limit.
fn query(
    cpu: &mut CpuState,
    mem: &mut PhysMem,
    selector: u16,
) -> Result<Option<Descriptor>, Fault> {
    table_insn_checks(cpu, false)?;
    if selector & 0xfffc == 0 {
        return Ok(None);
    }
    fetch_descriptor(cpu, mem, selector)
}

/// The privilege test LAR/LSL/VERR/VERW share: conforming code always passes, everything
/// else needs DPL ≥ max(CPL, RPL).
fn visible(cpu: &CpuState, d: &Descriptor, selector: u16) -> bool {
    d.is_conforming() || (d.dpl() >= cpl(cpu) && d.dpl() >= (selector & 3) as u8)
}

/// LAR: the access rights (the descriptor's high doubleword masked with 0x00f0ff00), or
/// `None` for ZF = 0: null selector, beyond the limit, a type LAR does not accept (system
/// types 1, 2, 3, 4, 5, 9, B, C; in long mode only 2, 9, B, C), or failing the privilege
/// test. #UD outside protected mode. The caller keeps the low 16 bits for a 16-bit operand.
pub fn lar(cpu: &mut CpuState, mem: &mut PhysMem, selector: u16) -> Result<Option<u32>, Fault> {
    let Some(d) = query(cpu, mem, selector)? else {
        return Ok(None);
    };
    if !d.s() {
        let ok = if long_mode(cpu) {
            matches!(d.typ(), 2 | 9 | 0xb | 0xc)
        } else {
            matches!(d.typ(), 1..=5 | 9 | 0xb | 0xc)
        };
        if !ok {
            return Ok(None);
        }
    }
    Ok(visible(cpu, &d, selector).then_some(d.hi & 0x00f0_ff00))
}

/// LSL: the byte-granular segment limit, or `None` for ZF = 0 (as for [`lar`], accepting
/// code, data and system types 1, 2, 3, 9, B; in long mode 2, 9, B). #UD outside protected
/// mode.
pub fn lsl(cpu: &mut CpuState, mem: &mut PhysMem, selector: u16) -> Result<Option<u32>, Fault> {
    let Some(d) = query(cpu, mem, selector)? else {
        return Ok(None);
    };
    if !d.s() {
        let ok = if long_mode(cpu) {
            matches!(d.typ(), 2 | 9 | 0xb)
        } else {
            matches!(d.typ(), 1..=3 | 9 | 0xb)
        };
        if !ok {
            return Ok(None);
        }
    }
    Ok(visible(cpu, &d, selector).then_some(d.limit()))
}

/// VERR: ZF — true when the segment is a data or readable code segment that passes the
/// privilege test (conforming readable code always does). #UD outside protected mode.
pub fn verr(cpu: &mut CpuState, mem: &mut PhysMem, selector: u16) -> Result<bool, Fault> {
    let Some(d) = query(cpu, mem, selector)? else {
        return Ok(false);
    };
    Ok(d.is_readable() && visible(cpu, &d, selector))
}

/// VERW: ZF — true when the segment is a writable data segment with DPL ≥ max(CPL, RPL).
/// #UD outside protected mode.
pub fn verw(cpu: &mut CpuState, mem: &mut PhysMem, selector: u16) -> Result<bool, Fault> {
    let Some(d) = query(cpu, mem, selector)? else {
        return Ok(false);
    };
    Ok(d.is_writable() && visible(cpu, &d, selector))
}

pub mod limit;

#[cfg(test)]
pub(crate) mod tests;
