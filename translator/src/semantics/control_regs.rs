//! Control and debug registers, and the cache/TLB maintenance instructions: MOV to and from
//! CR0/CR2/CR3/CR4/CR8 and DR0-DR7, CLTS, LMSW, INVLPG, WBINVD, INVD, CLFLUSH, RDTSCP,
//! RDPID, STAC/CLAC (EFLAGS.AC decides what SMAP lets the kernel touch), RDPKRU/WRPKRU
//! (the protection-key rights of user pages, which the TLB's tags depend on), and INVPCID
//! (with the PCID rules of CR3 and CR4 in `crane86_runtime::pcid`).
//!
//! All are runtime class: each runs alone in its block, so a write that changes how code
//! translates (CR0.PE/PG, EFER.LMA through CR0.PG, CR4 paging bits) or what the TLB holds
//! takes effect at the very next block lookup. The checks follow SDM Vol. 2 (MOV—Move
//! to/from Control Registers) and Vol. 3 section 2.5.

use crane86_runtime::memory::tlb_flush_page;
use crane86_runtime::paging::{CR0_WP, CR4_PGE, CR4_PSE, CR4_SMAP, CR4_SMEP, EFER_NXE, MAXPHYADDR};
use crane86_runtime::pcid::{self, Invpcid, CR4_PCIDE};
use crane86_runtime::state::{
    CR0_ET, CR0_PE, CR0_PG, CR4_DE, CR4_PAE, CR4_PKE, CR4_PKS, EFER_LMA, EFER_LME,
};
use crane86_runtime::{segment, CpuMode, CpuState, Exception, Fault, SegReg};
use iced_x86::{Instruction, Mnemonic, OpKind, Register};

use super::operands::{mem_access, mem_linear, read_op};
use super::seg_check::Access;
use crate::emit::{Emit, R};
use crate::interp::Interp;

/// CR0.MP, EM, TS, NE, AM, NW, CD: the bits besides PE, ET, WP and PG that software sets.
const CR0_MP: u64 = 1 << 1;
const CR0_EM: u64 = 1 << 2;
const CR0_TS: u64 = 1 << 3;
const CR0_NE: u64 = 1 << 5;
const CR0_AM: u64 = 1 << 18;
const CR0_NW: u64 = 1 << 29;
const CR0_CD: u64 = 1 << 30;
/// Every CR0 bit that exists; the others are reserved (#GP when set in bits 63:32, ignored
/// in 31:0 as hardware does).
const CR0_DEFINED: u64 = CR0_PE
    | CR0_MP
    | CR0_EM
    | CR0_TS
    | CR0_ET
    | CR0_NE
    | CR0_WP
    | CR0_AM
    | CR0_NW
    | CR0_CD
    | CR0_PG;

/// CR4 bits this CPU implements (and so accepts): VME, PVI, TSD, DE, PSE, PAE, MCE, PGE,
/// PCE, OSFXSR, OSXMMEXCPT, UMIP, PCIDE, OSXSAVE, SMEP, SMAP, PKE, PKS. Setting any other bit is
/// #GP(0). PKE and PKS may be set in any mode; they take effect under 4-level paging only.
/// VME and PVI are read at run time by the instructions they change, all runtime class
/// where they apply (virtual-8086 mode and CPL 3), so they need no block-key bit.
const CR4_UMIP: u64 = 1 << 11;
const CR4_SUPPORTED: u64 = 0b111_1111_1111
    | CR4_UMIP
    | CR4_PCIDE
    | crane86_runtime::state::CR4_OSXSAVE
    | CR4_SMEP
    | CR4_SMAP
    | CR4_PKE
    | CR4_PKS;
/// CR4 bits that change what a cached translation allows, or (PCIDE) which translations
/// may be cached: clearing PCIDE must drop every entry (SDM Vol. 3 4.10.4.1); setting it
/// need not, but may.
const CR4_PAGING: u64 =
    CR4_PSE | CR4_PAE | CR4_PGE | CR4_SMEP | CR4_SMAP | CR4_PKE | CR4_PKS | CR4_PCIDE;

/// DR6 bits that always read as 1, and DR7's.
const DR6_FIXED1: u64 = 0xffff_0ff0;
const DR7_FIXED1: u64 = 0x400;
/// DR6.BD and DR7.GD: general detect.
const DR6_BD: u64 = 1 << 13;
const DR7_GD: u64 = 1 << 13;

fn gp0(it: &mut Interp<'_>) -> crate::emit::Stop {
    it.raise(Fault::with_code(Exception::GeneralProtection, 0))
}

/// #GP(0) unless at CPL 0 (real mode counts as CPL 0).
fn require_cpl0(it: &mut Interp<'_>) -> R<()> {
    if segment::cpl(it.cpu) != 0 {
        return Err(gp0(it));
    }
    Ok(())
}

/// Executes one instruction of this module.
pub fn execute(it: &mut Interp<'_>, insn: &Instruction) -> R<()> {
    match insn.mnemonic() {
        Mnemonic::Mov => mov(it, insn),
        Mnemonic::Clts => {
            require_cpl0(it)?;
            it.cpu.cr0 &= !CR0_TS;
            Ok(())
        }
        Mnemonic::Lmsw => {
            require_cpl0(it)?;
            let v = read_op(it, insn, 0, 2)?;
            // LMSW loads MP, EM, TS and can set PE but never clear it.
            let low = (v & 0xf) | (it.cpu.cr0 & CR0_PE);
            let new = (it.cpu.cr0 & !0xf) | low;
            write_cr0(it, new)
        }
        Mnemonic::Invlpg => {
            require_cpl0(it)?;
            let linear = mem_linear(it, insn);
            tlb_flush_page(it.cpu, linear);
            Ok(())
        }
        Mnemonic::Invpcid => invpcid(it, insn),
        Mnemonic::Wbinvd | Mnemonic::Invd => require_cpl0(it),
        Mnemonic::Clflush | Mnemonic::Clflushopt | Mnemonic::Clwb => {
            // No caches to flush or write back, but the address is checked as a one-byte
            // read would be (SDM Vol. 2: CLFLUSHOPT and CLWB fault as CLFLUSH does).
            let linear = mem_access(it, insn, 1, Access::Read)?;
            it.load(linear, 1).map(|_| ())
        }
        Mnemonic::Stac | Mnemonic::Clac => {
            // #UD, not #GP, outside ring 0 (SDM Vol. 2 STAC).
            if segment::cpl(it.cpu) != 0 {
                return Err(it.raise(Fault::new(Exception::InvalidOpcode)));
            }
            let ac = crane86_runtime::flags::AC;
            if insn.mnemonic() == Mnemonic::Stac {
                it.cpu.rflags |= ac;
            } else {
                it.cpu.rflags &= !ac;
            }
            Ok(())
        }
        Mnemonic::Rdpkru | Mnemonic::Wrpkru => pkru(it, insn.mnemonic() == Mnemonic::Wrpkru),
        _ => Err(it.raise(Fault::new(Exception::InvalidOpcode))),
    }
}

/// RDPKRU (EDX:EAX = 0:PKRU) and WRPKRU (PKRU = EAX), at any privilege level: #UD without
/// CR4.PKE, #GP(0) when ECX (and for WRPKRU, EDX) is not zero. A WRPKRU that changes PKRU
/// flushes the TLB, whose tags were computed with the old rights.
fn pkru(it: &mut Interp<'_>, write: bool) -> R<()> {
    if it.cpu.cr4 & CR4_PKE == 0 {
        return Err(it.raise(Fault::new(Exception::InvalidOpcode)));
    }
    let (ecx, edx) = (it.cpu.gpr[1] as u32, it.cpu.gpr[2] as u32);
    if ecx != 0 || (write && edx != 0) {
        return Err(gp0(it));
    }
    if write {
        let v = it.cpu.gpr[0] as u32;
        it.cpu.set_pkru(v);
    } else {
        it.cpu.gpr[0] = u64::from(it.cpu.pkru);
        it.cpu.gpr[2] = 0;
    }
    Ok(())
}

/// INVPCID type, [descriptor] (SDM Vol. 2 INVPCID). CPL 0 only, real mode included; in
/// virtual-8086 mode (CPL 3) it is #GP(0). The descriptor is read before its checks, as the
/// SDM's operation reads it first: a #PF on it wins over a #GP for its contents.
fn invpcid(it: &mut Interp<'_>, insn: &Instruction) -> R<()> {
    require_cpl0(it)?;
    // The type register is 64 bits in 64-bit mode, 32 elsewhere whatever CS.D says.
    let width_mask = if it.ctx().mode == CpuMode::Long64 {
        u64::MAX
    } else {
        0xffff_ffff
    };
    let kind = it.cpu.gpr[gpr_index(insn.op0_register())] & width_mask;
    let at = mem_linear(it, insn);
    let lo = it.load(at, 8)?;
    let hi_at = at.wrapping_add(8) & width_mask;
    let hi = it.load(hi_at, 8)?;
    let pcide = it.cpu.cr4 & CR4_PCIDE != 0;
    let Some(inv) = Invpcid::decode(kind, [lo, hi], pcide) else {
        return Err(gp0(it));
    };
    inv.execute(it.cpu);
    Ok(())
}

/// SGDT, SIDT, SLDT, STR and SMSW at CPL > 0 with CR4.UMIP set: #GP(0).
pub fn umip_check(it: &mut Interp<'_>) -> R<()> {
    if it.cpu.cr4 & CR4_UMIP != 0 && segment::cpl(it.cpu) > 0 {
        return Err(gp0(it));
    }
    Ok(())
}

/// MOV to or from a control or debug register. The general register operand is 64 bits in
/// 64-bit mode and 32 bits elsewhere, whatever the operand-size prefix says.
fn mov(it: &mut Interp<'_>, insn: &Instruction) -> R<()> {
    let (dst, src) = (insn.op_register(0), insn.op_register(1));
    let wide = it.ctx().mode == CpuMode::Long64;
    let width_mask = if wide { u64::MAX } else { 0xffff_ffff };
    if let Some(n) = cr_number(src) {
        require_cpl0(it)?;
        let v = read_cr(it, n)?;
        it.cpu.gpr[gpr_index(dst)] = v & width_mask;
        Ok(())
    } else if let Some(n) = cr_number(dst) {
        require_cpl0(it)?;
        let v = it.cpu.gpr[gpr_index(src)] & width_mask;
        write_cr(it, n, v)
    } else if let Some(n) = dr_number(src) {
        let n = debug_access(it, n)?;
        it.cpu.gpr[gpr_index(dst)] = it.cpu.dr[n] & width_mask;
        Ok(())
    } else if let Some(n) = dr_number(dst) {
        let n = debug_access(it, n)?;
        let v = it.cpu.gpr[gpr_index(src)] & width_mask;
        write_dr(it, n, v)
    } else {
        Err(it.raise(Fault::new(Exception::InvalidOpcode)))
    }
}

fn cr_number(r: Register) -> Option<u8> {
    let n = (r as u32).checked_sub(Register::CR0 as u32)?;
    (n < 16).then_some(n as u8)
}

/// Whether `r` is one of DR0-DR15 (a MOV DR, not a MOV CR).
pub fn is_debug_register(r: Register) -> bool {
    dr_number(r).is_some()
}

fn dr_number(r: Register) -> Option<u8> {
    let n = (r as u32).checked_sub(Register::DR0 as u32)?;
    (n < 16).then_some(n as u8)
}

fn gpr_index(r: Register) -> usize {
    r.full_register().number() & 15
}

fn read_cr(it: &mut Interp<'_>, n: u8) -> R<u64> {
    let c = &it.cpu;
    Ok(match n {
        0 => c.cr0,
        2 => c.cr2,
        3 => c.cr3,
        4 => c.cr4,
        8 if it.ctx().mode == CpuMode::Long64 => c.cr8,
        _ => return Err(it.raise(Fault::new(Exception::InvalidOpcode))),
    })
}

fn write_cr(it: &mut Interp<'_>, n: u8, v: u64) -> R<()> {
    match n {
        0 => write_cr0(it, v),
        2 => {
            it.cpu.cr2 = v;
            Ok(())
        }
        3 => write_cr3(it, v),
        4 => write_cr4(it, v),
        8 if it.ctx().mode == CpuMode::Long64 => {
            if v & !0xf != 0 {
                return Err(gp0(it));
            }
            it.cpu.cr8 = v;
            Ok(())
        }
        _ => Err(it.raise(Fault::new(Exception::InvalidOpcode))),
    }
}

/// The mode bits a CR0/CR4/EFER change touches; the TLB is flushed when they change.
fn paging_bits(cpu: &CpuState) -> (u64, u64, u64) {
    (
        cpu.cr0 & (CR0_PG | CR0_WP | CR0_PE),
        cpu.cr4 & CR4_PAGING,
        cpu.efer & (EFER_LMA | EFER_NXE),
    )
}

fn write_cr0(it: &mut Interp<'_>, v: u64) -> R<()> {
    if v >> 32 != 0 {
        return Err(gp0(it));
    }
    let v = (v & CR0_DEFINED) | CR0_ET;
    let cpu = &*it.cpu;
    let invalid = (v & CR0_PG != 0 && v & CR0_PE == 0) || (v & CR0_NW != 0 && v & CR0_CD == 0);
    if invalid || !pcid::cr0_allows(cpu, v) {
        return Err(gp0(it));
    }
    let enabling_paging = v & CR0_PG != 0 && cpu.cr0 & CR0_PG == 0;
    let disabling_paging = v & CR0_PG == 0 && cpu.cr0 & CR0_PG != 0;
    let mut efer = cpu.efer;
    if enabling_paging && efer & EFER_LME != 0 {
        // Activating long mode needs PAE, and a CS that is not a 64-bit segment.
        let cs_l = cpu.seg[SegReg::Cs as usize].attrs & crane86_runtime::state::SEG_L != 0;
        if cpu.cr4 & CR4_PAE == 0 || cs_l {
            return Err(gp0(it));
        }
        efer |= EFER_LMA;
    }
    if disabling_paging && efer & EFER_LMA != 0 {
        // Leaving long mode is only allowed from compatibility mode.
        if it.ctx().mode == CpuMode::Long64 {
            return Err(gp0(it));
        }
        efer &= !EFER_LMA;
    }
    let before = paging_bits(it.cpu);
    it.cpu.cr0 = v;
    it.cpu.efer = efer;
    after_mode_change(it.cpu, before);
    Ok(())
}

/// MOV to CR3. With CR4.PCIDE, bit 63 asks not to invalidate the TLB and is not stored;
/// the TLB, which holds one address space only, drops its non-global entries anyway
/// (allowed: see `crane86_runtime::pcid`).
fn write_cr3(it: &mut Interp<'_>, v: u64) -> R<()> {
    let (v, _no_flush) = pcid::cr3_value(it.cpu, v);
    if it.cpu.efer & EFER_LMA != 0 && v >> MAXPHYADDR != 0 {
        return Err(gp0(it));
    }
    it.cpu.cr3 = v;
    it.cpu.flush_tlb_nonglobal();
    Ok(())
}

fn write_cr4(it: &mut Interp<'_>, v: u64) -> R<()> {
    let long = it.cpu.efer & EFER_LMA != 0;
    if v & !CR4_SUPPORTED != 0 || (long && v & CR4_PAE == 0) || !pcid::cr4_allows(it.cpu, v) {
        return Err(gp0(it));
    }
    let before = paging_bits(it.cpu);
    it.cpu.cr4 = v;
    after_mode_change(it.cpu, before);
    Ok(())
}

/// After CR0/CR4 changed: the decoding mode, and the TLB if anything it caches depends on
/// changed.
fn after_mode_change(cpu: &mut CpuState, before: (u64, u64, u64)) {
    if paging_bits(cpu) != before {
        cpu.flush_tlb();
    }
    segment::update_mode(cpu);
}

/// The checks of a debug-register access: CPL 0, DR4/DR5 are #UD with CR4.DE and alias
/// DR6/DR7 without it, and DR7.GD turns the access into a #DB. Returns the register to use.
fn debug_access(it: &mut Interp<'_>, n: u8) -> R<usize> {
    require_cpl0(it)?;
    let n = match n {
        0..=3 | 6 | 7 => n,
        4 | 5 if it.cpu.cr4 & CR4_DE == 0 => n + 2,
        _ => return Err(it.raise(Fault::new(Exception::InvalidOpcode))),
    };
    if it.cpu.dr[7] & DR7_GD != 0 {
        it.cpu.dr[6] |= DR6_BD;
        it.cpu.dr[7] &= !DR7_GD;
        return Err(it.raise(Fault::new(Exception::Debug)));
    }
    Ok(usize::from(n))
}

fn write_dr(it: &mut Interp<'_>, n: usize, v: u64) -> R<()> {
    match n {
        0..=3 => it.cpu.dr[n] = v,
        _ => {
            if v >> 32 != 0 {
                return Err(gp0(it));
            }
            it.cpu.dr[n] = if n == 6 {
                (v | DR6_FIXED1) & !(1 << 12)
            } else {
                (v | DR7_FIXED1) & !((1 << 11) | (1 << 12) | (1 << 14) | (1 << 15))
            };
        }
    }
    Ok(())
}

/// True when `insn` is a MOV to or from a control or debug register.
pub fn is_control_move(insn: &Instruction) -> bool {
    (0..2).any(|i| {
        insn.op_kind(i) == OpKind::Register
            && (cr_number(insn.op_register(i)).is_some()
                || dr_number(insn.op_register(i)).is_some())
    })
}
