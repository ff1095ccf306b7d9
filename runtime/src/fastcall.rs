//! The fast system-call instructions: SYSCALL/SYSRET (STAR, LSTAR, CSTAR, SFMASK),
//! SYSENTER/SYSEXIT (the SYSENTER_CS/ESP/EIP MSRs) and SWAPGS (KERNEL_GS_BASE), per
//! SDM Vol. 2 and AMD APM Vol. 3.
//!
//! None of them reads a descriptor: CS and SS are loaded with fixed flat caches derived from
//! the MSRs. The functions take the full RFLAGS and return the new one (the caller splits it
//! back, as for [`crate::interrupt`]); on a fault nothing has changed.
//!
//! Vendor choices (the CPU model says AuthenticAMD, the brief says Intel where they differ on
//! a fault): SYSCALL works in 64-bit mode (target LSTAR) and, as on AMD, in compatibility
//! mode (target CSTAR; Intel raises #UD there, and Linux on AMD uses it for 32-bit
//! processes); outside long mode it is #UD. SYSRET works only in 64-bit mode and, as on
//! Intel, raises #GP(0) at CPL 0 for a non-canonical RCX (AMD would fault later, in user
//! mode). SYSENTER/SYSEXIT work in long mode as on Intel (AMD raises #UD there), including
//! the REX.W form of SYSEXIT that returns to 64-bit mode.

use crate::exception::{Exception, Fault};
use crate::flags::{IF, RF, VM};
use crate::msr::EFER_SCE;
use crate::paging::canonical;
use crate::segment::{cpl, long_mode, mode64, update_mode};
use crate::state::{CpuState, SegReg, Segment, CR0_PE, SEG_DB, SEG_G, SEG_L, SEG_P};

fn ud() -> Fault {
    Fault::new(Exception::InvalidOpcode)
}

fn gp0() -> Fault {
    Fault::with_code(Exception::GeneralProtection, 0)
}

/// A flat code segment cache: present, S, execute/read, accessed, the given DPL.
fn flat_code(selector: u16, dpl: u8, bits64: bool) -> Segment {
    let size = if bits64 { SEG_L } else { SEG_DB };
    Segment::flat(
        selector,
        SEG_P | 0x1b | (u16::from(dpl) << 5) | size | SEG_G,
    )
}

/// A flat stack segment cache: present, S, read/write, accessed, 32-bit, the given DPL.
fn flat_stack(selector: u16, dpl: u8) -> Segment {
    Segment::flat(
        selector,
        SEG_P | 0x13 | (u16::from(dpl) << 5) | SEG_DB | SEG_G,
    )
}

fn load_flat(cpu: &mut CpuState, cs: Segment, ss: Segment) {
    cpu.seg[SegReg::Cs as usize] = cs;
    cpu.seg[SegReg::Ss as usize] = ss;
    update_mode(cpu);
}

/// SYSCALL: RCX ← the next instruction, R11 ← RFLAGS, RFLAGS &= !SFMASK (RF cleared too),
/// CS ← STAR[47:32] (ring-0 64-bit code), SS ← STAR[47:32] + 8, RIP ← LSTAR (CSTAR from
/// compatibility mode). #UD unless long mode is active with EFER.SCE set.
pub fn syscall(cpu: &mut CpuState, next_ip: u64, rflags: u64) -> Result<u64, Fault> {
    if !long_mode(cpu) || cpu.efer & EFER_SCE == 0 {
        return Err(ud());
    }
    let (rcx, target) = if mode64(cpu) {
        (next_ip, cpu.msr.lstar)
    } else {
        (next_ip & 0xffff_ffff, cpu.msr.cstar)
    };
    let sel = ((cpu.msr.star >> 32) & 0xfffc) as u16;
    cpu.gpr[1] = rcx;
    cpu.gpr[11] = rflags & !RF;
    cpu.rip = target;
    load_flat(
        cpu,
        flat_code(sel, 0, true),
        flat_stack(sel.wrapping_add(8), 0),
    );
    Ok(rflags & !(cpu.msr.sfmask | RF) | crate::flags::FIXED1)
}

/// SYSRET (`op_size` 4: to compatibility mode at ECX; 8: to 64-bit mode at RCX): RFLAGS ←
/// R11 (RF and VM cleared, bit 1 set), CS ← STAR[63:48] (+16 for 64-bit) with RPL 3,
/// SS ← STAR[63:48] + 8 with RPL 3. #UD outside 64-bit mode or with EFER.SCE clear;
/// #GP(0) at CPL > 0 or for a non-canonical RCX.
pub fn sysret(cpu: &mut CpuState, op_size: u32) -> Result<u64, Fault> {
    if !mode64(cpu) || cpu.efer & EFER_SCE == 0 {
        return Err(ud());
    }
    if cpl(cpu) != 0 {
        return Err(gp0());
    }
    let to64 = op_size == 8;
    let rcx = cpu.gpr[1];
    if to64 && !canonical(rcx) {
        return Err(gp0());
    }
    let base = (cpu.msr.star >> 48) as u16;
    let cs_sel = if to64 { base.wrapping_add(16) } else { base } | 3;
    let ss_sel = base.wrapping_add(8) | 3;
    cpu.rip = if to64 { rcx } else { rcx & 0xffff_ffff };
    load_flat(cpu, flat_code(cs_sel, 3, to64), flat_stack(ss_sel, 3));
    Ok(cpu.gpr[11] & 0x3c_7fd7 | crate::flags::FIXED1)
}

/// SYSENTER: CS ← SYSENTER_CS (ring 0; 64-bit code when long mode is active, else 32-bit),
/// SS ← SYSENTER_CS + 8, RSP/RIP ← SYSENTER_ESP/EIP (32 bits outside long mode); VM, IF
/// and RF are cleared. #GP(0) in real mode or when SYSENTER_CS names the null selector.
pub fn sysenter(cpu: &mut CpuState, rflags: u64) -> Result<u64, Fault> {
    let cs_msr = cpu.msr.sysenter[0] as u16;
    if cpu.cr0 & CR0_PE == 0 || cs_msr & 0xfffc == 0 {
        return Err(gp0());
    }
    let lm = long_mode(cpu);
    let m = if lm { u64::MAX } else { 0xffff_ffff };
    let sel = cs_msr & 0xfffc;
    cpu.gpr[4] = cpu.msr.sysenter[1] & m;
    cpu.rip = cpu.msr.sysenter[2] & m;
    load_flat(
        cpu,
        flat_code(sel, 0, lm),
        flat_stack(sel.wrapping_add(8), 0),
    );
    // From virtual-8086 mode the mode computed here still sees VM set: the caller applies
    // the returned RFLAGS and recomputes the mode, as after every far transfer.
    Ok(rflags & !(VM | IF | RF))
}

/// SYSEXIT (`op_size` 4: to 32-bit code; 8: to 64-bit code): CS ← SYSENTER_CS + 16 (+32
/// for 64-bit) with RPL 3, SS ← CS + 8, RSP ← RCX, RIP ← RDX (ECX/EDX for 32-bit). #GP(0)
/// in real mode, at CPL > 0, when SYSENTER_CS is null, or (64-bit) for a non-canonical RCX
/// or RDX. RFLAGS is unchanged.
pub fn sysexit(cpu: &mut CpuState, op_size: u32, rflags: u64) -> Result<u64, Fault> {
    let cs_msr = cpu.msr.sysenter[0] as u16;
    if cpu.cr0 & CR0_PE == 0 || cs_msr & 0xfffc == 0 || cpl(cpu) != 0 || rflags & VM != 0 {
        return Err(gp0());
    }
    let to64 = op_size == 8;
    let (rcx, rdx) = (cpu.gpr[1], cpu.gpr[2]);
    if to64 && !(canonical(rcx) && canonical(rdx)) {
        return Err(gp0());
    }
    let cs_sel = cs_msr.wrapping_add(if to64 { 32 } else { 16 }) | 3;
    let m = if to64 { u64::MAX } else { 0xffff_ffff };
    cpu.gpr[4] = rcx & m;
    cpu.rip = rdx & m;
    load_flat(
        cpu,
        flat_code(cs_sel, 3, to64),
        flat_stack(cs_sel.wrapping_add(8), 3),
    );
    Ok(rflags)
}

/// SWAPGS: exchanges GS.base with KERNEL_GS_BASE. #UD outside 64-bit mode, #GP(0) at
/// CPL > 0.
pub fn swapgs(cpu: &mut CpuState) -> Result<(), Fault> {
    if !mode64(cpu) {
        return Err(ud());
    }
    if cpl(cpu) != 0 {
        return Err(gp0());
    }
    let gs = &mut cpu.seg[SegReg::Gs as usize].base;
    std::mem::swap(gs, &mut cpu.msr.kernel_gs_base);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flags::{CF, FIXED1, TF};
    use crate::state::{CpuMode, EFER_LMA};

    fn long64() -> CpuState {
        let mut cpu = CpuState::new(CpuMode::Long64);
        cpu.efer |= EFER_SCE;
        cpu.msr.star = (0x23u64 << 48) | (0x10u64 << 32);
        cpu.msr.lstar = 0xffff_8000_0000_1000;
        cpu.msr.cstar = 0x2000;
        cpu.msr.sfmask = IF | TF;
        cpu
    }

    #[test]
    fn syscall_from_64_bit_user_mode_and_sysret_back() {
        let mut cpu = long64();
        cpu.seg[SegReg::Cs as usize] = flat_code(0x33, 3, true);
        cpu.seg[SegReg::Ss as usize] = flat_stack(0x2b, 3);
        update_mode(&mut cpu);
        let user_flags = FIXED1 | IF | TF | CF;
        let f = syscall(&mut cpu, 0x40_1234, user_flags | RF).unwrap();
        assert_eq!(
            f,
            FIXED1 | CF,
            "SFMASK cleared IF and TF, RF always cleared"
        );
        assert_eq!((cpu.gpr[1], cpu.gpr[11]), (0x40_1234, user_flags));
        assert_eq!(cpu.rip, 0xffff_8000_0000_1000);
        assert_eq!(cpu.seg(SegReg::Cs).selector, 0x10);
        assert_eq!(cpu.seg(SegReg::Ss).selector, 0x18);
        assert_eq!((cpl(&cpu), cpu.mode), (0, CpuMode::Long64));
        // SYSRETQ: CS = 0x23 + 16 | 3, SS = 0x23 + 8 | 3, RFLAGS from R11.
        cpu.gpr[11] |= 1 << 17 | RF;
        let f = sysret(&mut cpu, 8).unwrap();
        assert_eq!(f, user_flags, "VM and RF never come back from R11");
        assert_eq!(cpu.rip, 0x40_1234);
        assert_eq!(cpu.seg(SegReg::Cs).selector, 0x33);
        assert_eq!(cpu.seg(SegReg::Ss).selector, 0x2b);
        assert_eq!((cpl(&cpu), cpu.mode), (3, CpuMode::Long64));
        assert_eq!(cpu.seg(SegReg::Ss).attrs >> 5 & 3, 3);
    }

    #[test]
    fn sysret_to_compatibility_mode_and_syscall_back_through_cstar() {
        let mut cpu = long64();
        cpu.gpr[1] = 0xdead_0000_0000_5678;
        cpu.gpr[11] = FIXED1 | IF;
        let f = sysret(&mut cpu, 4).unwrap();
        assert_eq!(f, FIXED1 | IF);
        assert_eq!((cpu.rip, cpu.mode), (0x5678, CpuMode::Prot32));
        assert_eq!(cpu.seg(SegReg::Cs).selector, 0x23);
        assert!(long_mode(&cpu) && !mode64(&cpu));
        assert_eq!(sysret(&mut cpu, 4), Err(ud()), "SYSRET only in 64-bit mode");
        let f = syscall(&mut cpu, 0x1_0000_5680, f).unwrap();
        assert_eq!((cpu.rip, cpu.gpr[1]), (0x2000, 0x5680));
        assert_eq!((cpu.mode, f), (CpuMode::Long64, FIXED1));
    }

    #[test]
    fn syscall_and_sysret_faults() {
        let mut cpu = long64();
        cpu.efer &= !EFER_SCE;
        assert_eq!(syscall(&mut cpu, 0, FIXED1), Err(ud()));
        assert_eq!(sysret(&mut cpu, 8), Err(ud()));
        let mut cpu = CpuState::new(CpuMode::Prot32);
        cpu.efer |= EFER_SCE;
        assert_eq!(syscall(&mut cpu, 0, FIXED1), Err(ud()), "legacy mode");
        let mut cpu = long64();
        cpu.gpr[1] = 0x8000_0000_0000_0000;
        let before = cpu.clone();
        assert_eq!(sysret(&mut cpu, 8), Err(gp0()), "non-canonical RCX");
        assert_eq!(cpu.rip, before.rip);
        assert_eq!(cpu.seg, before.seg);
        cpu.gpr[1] = 0x1000;
        cpu.seg[SegReg::Cs as usize].selector |= 3;
        assert_eq!(sysret(&mut cpu, 8), Err(gp0()), "CPL 3");
    }

    #[test]
    fn sysenter_and_sysexit_in_protected_and_long_mode() {
        let mut cpu = CpuState::new(CpuMode::Prot32);
        assert_eq!(sysenter(&mut cpu, FIXED1), Err(gp0()), "SYSENTER_CS null");
        cpu.msr.sysenter = [0x08, 0x1_0000_9000, 0x1_0000_4000];
        cpu.seg[SegReg::Cs as usize] = flat_code(0x1b, 3, false);
        let f = sysenter(&mut cpu, FIXED1 | IF | CF).unwrap();
        assert_eq!(f, FIXED1 | CF);
        assert_eq!(
            (cpu.gpr[4], cpu.rip),
            (0x9000, 0x4000),
            "32 bits outside long mode"
        );
        assert_eq!(cpu.seg(SegReg::Ss).selector, 0x10);
        assert_eq!((cpl(&cpu), cpu.mode), (0, CpuMode::Prot32));
        cpu.gpr[1] = 0x7000;
        cpu.gpr[2] = 0x3000;
        let f = sysexit(&mut cpu, 4, f).unwrap();
        assert_eq!(f, FIXED1 | CF);
        assert_eq!((cpu.gpr[4], cpu.rip), (0x7000, 0x3000));
        assert_eq!(cpu.seg(SegReg::Cs).selector, 0x1b);
        assert_eq!(cpu.seg(SegReg::Ss).selector, 0x23);
        assert_eq!(sysexit(&mut cpu, 4, f), Err(gp0()), "CPL 3");
        let mut real = CpuState::new(CpuMode::Real16);
        real.msr.sysenter[0] = 0x08;
        assert_eq!(sysenter(&mut real, FIXED1), Err(gp0()));

        let mut cpu = CpuState::new(CpuMode::Long64);
        cpu.msr.sysenter = [0x08, 0xffff_8000_0000_9000, 0xffff_8000_0000_4000];
        cpu.seg[SegReg::Cs as usize] = flat_code(0x1b, 3, false);
        update_mode(&mut cpu);
        assert!(cpu.efer & EFER_LMA != 0 && cpu.mode == CpuMode::Prot32);
        sysenter(&mut cpu, FIXED1).unwrap();
        assert_eq!(
            (cpu.rip, cpu.mode),
            (0xffff_8000_0000_4000, CpuMode::Long64)
        );
        cpu.gpr[1] = 0x7fff_0000_0000;
        cpu.gpr[2] = 0x8000_0000_0000;
        assert_eq!(
            sysexit(&mut cpu, 8, FIXED1),
            Err(gp0()),
            "non-canonical RDX"
        );
        cpu.gpr[2] = 0x4000_0000_1000;
        sysexit(&mut cpu, 8, FIXED1).unwrap();
        assert_eq!((cpu.rip, cpu.gpr[4]), (0x4000_0000_1000, 0x7fff_0000_0000));
        assert_eq!(cpu.seg(SegReg::Cs).selector, 0x2b);
        assert_eq!(cpu.seg(SegReg::Ss).selector, 0x33);
        assert_eq!((cpl(&cpu), cpu.mode), (3, CpuMode::Long64));
    }

    #[test]
    fn swapgs_exchanges_the_bases_at_cpl0_in_64_bit_mode_only() {
        let mut cpu = CpuState::new(CpuMode::Long64);
        cpu.seg[SegReg::Gs as usize].base = 0x1111;
        cpu.msr.kernel_gs_base = 0xffff_8000_0000_2222;
        swapgs(&mut cpu).unwrap();
        assert_eq!(cpu.seg(SegReg::Gs).base, 0xffff_8000_0000_2222);
        assert_eq!(cpu.msr.kernel_gs_base, 0x1111);
        cpu.seg[SegReg::Cs as usize].selector |= 3;
        assert_eq!(swapgs(&mut cpu), Err(gp0()));
        let mut cpu = CpuState::new(CpuMode::Prot32);
        assert_eq!(swapgs(&mut cpu), Err(ud()));
    }
}
