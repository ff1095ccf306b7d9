//! Model-specific registers: RDMSR/WRMSR semantics over the MSRs the CPU model has. An MSR it
//! does not have raises #GP(0), as does a reserved bit or a non-canonical base address.

use crate::exception::{Exception, Fault};
use crate::paging::canonical;
use crate::state::{CpuState, SegReg, CR0_PG, EFER_LMA, EFER_LME};

/// EFER.SCE: SYSCALL/SYSRET enable.
pub const EFER_SCE: u64 = 1 << 0;
/// EFER.AUTOIBRS (AMD): automatic IBRS, advertised by CPUID.80000021:EAX[8]. Writable and
/// without effect: a translated CPU has no branch predictor to protect.
pub const EFER_AUTOIBRS: u64 = 1 << 21;

/// IA32_TIME_STAMP_COUNTER.
pub const TSC: u32 = 0x10;
/// IA32_TSC_ADJUST: the TSC's offset as software set it (SDM Vol. 3 18.17.3).
pub const TSC_ADJUST: u32 = 0x3b;
/// IA32_APIC_BASE.
pub const APIC_BASE: u32 = 0x1b;
/// IA32_MTRRCAP.
pub const MTRR_CAP: u32 = 0xfe;
/// IA32_MCG_CAP: machine-check capabilities.
pub const MCG_CAP: u32 = 0x179;
/// IA32_MCG_STATUS.
pub const MCG_STATUS: u32 = 0x17a;
/// IA32_SYSENTER_CS.
pub const SYSENTER_CS: u32 = 0x174;
/// IA32_SYSENTER_ESP.
pub const SYSENTER_ESP: u32 = 0x175;
/// IA32_SYSENTER_EIP.
pub const SYSENTER_EIP: u32 = 0x176;
/// IA32_MISC_ENABLE.
pub const MISC_ENABLE: u32 = 0x1a0;
/// IA32_PAT.
pub const PAT: u32 = 0x277;
/// IA32_MTRR_DEF_TYPE.
pub const MTRR_DEF_TYPE: u32 = 0x2ff;
/// IA32_PKRS: the protection-key rights of supervisor-mode pages (CR4.PKS), laid out as
/// PKRU; bits 63:32 are reserved.
pub const PKRS: u32 = 0x6e1;
/// IA32_EFER.
pub const EFER: u32 = 0xc000_0080;
/// STAR: SYSCALL/SYSRET selectors.
pub const STAR: u32 = 0xc000_0081;
/// LSTAR: 64-bit SYSCALL target.
pub const LSTAR: u32 = 0xc000_0082;
/// CSTAR: compatibility-mode SYSCALL target.
pub const CSTAR: u32 = 0xc000_0083;
/// SFMASK: RFLAGS mask on SYSCALL.
pub const SFMASK: u32 = 0xc000_0084;
/// FS.base.
pub const FS_BASE: u32 = 0xc000_0100;
/// GS.base.
pub const GS_BASE: u32 = 0xc000_0101;
/// The GS base SWAPGS exchanges with.
pub const KERNEL_GS_BASE: u32 = 0xc000_0102;
/// TSC_AUX (RDTSCP, RDPID).
pub const TSC_AUX: u32 = 0xc000_0103;
/// The legacy AMD performance counters (K7 PerfEvtSel0-3 at 0xC0010000-3, PerfCtr0-3 at
/// 0xC0010004-7), which every AMD64 CPU has whatever CPUID says. They exist so that kernels
/// that reset them at boot (Linux, kvm-unit-tests) do not fault; they never count: reads
/// are 0 and writes are dropped.
pub const K7_PERF: std::ops::RangeInclusive<u32> = 0xc001_0000..=0xc001_0007;

/// The local APIC's default base with the BSP and global-enable bits set.
pub const APIC_BASE_DEFAULT: u64 = 0xfee0_0000 | (1 << 8) | APIC_BASE_EN;
/// IA32_APIC_BASE.EN: the local APIC is globally enabled.
pub const APIC_BASE_EN: u64 = 1 << 11;
/// AMD's microcode patch level (MSR_AMD64_PATCH_LEVEL): reads 0 (no patch loaded); a
/// write asks for the level to be reported, which changes nothing here.
pub const PATCH_LEVEL: u32 = 0x8b;
/// AMD's northbridge configuration (NB_CFG): Linux sets its extended-config-space bit;
/// kept as written, it controls nothing crane86 models.
pub const NB_CFG: u32 = 0xc001_001f;

/// The PAT's power-on value (WB, WT, UC-, UC, twice).
pub const PAT_DEFAULT: u64 = 0x0007_0406_0007_0406;

/// The MSR values that live nowhere else in [`CpuState`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct Msrs {
    /// STAR.
    pub star: u64,
    /// LSTAR.
    pub lstar: u64,
    /// CSTAR.
    pub cstar: u64,
    /// SFMASK.
    pub sfmask: u64,
    /// KERNEL_GS_BASE.
    pub kernel_gs_base: u64,
    /// TSC_AUX.
    pub tsc_aux: u64,
    /// TSC minus retired instructions (the TSC ticks once per retired instruction).
    pub tsc_offset: u64,
    /// IA32_TSC_ADJUST: what WRMSRs to the TSC and to this MSR added to the TSC (it is part
    /// of `tsc_offset`, which also holds the idle time the machine skipped).
    pub tsc_adjust: u64,
    /// IA32_APIC_BASE.
    pub apic_base: u64,
    /// IA32_PAT.
    pub pat: u64,
    /// SYSENTER_CS, SYSENTER_ESP, SYSENTER_EIP.
    pub sysenter: [u64; 3],
    /// IA32_MISC_ENABLE.
    pub misc_enable: u64,
    /// IA32_MTRR_DEF_TYPE.
    pub mtrr_def_type: u64,
    /// NB_CFG.
    pub nb_cfg: u64,
    /// IA32_PKRS (bits 31:0; the TLB's tags depend on it, so writes go through [`write`]).
    pub pkrs: u32,
}

impl Default for Msrs {
    fn default() -> Self {
        Msrs {
            star: 0,
            lstar: 0,
            cstar: 0,
            sfmask: 0,
            kernel_gs_base: 0,
            tsc_aux: 0,
            tsc_offset: 0,
            tsc_adjust: 0,
            apic_base: APIC_BASE_DEFAULT,
            pat: PAT_DEFAULT,
            sysenter: [0; 3],
            misc_enable: 1, // fast-strings enabled, as firmware leaves it
            mtrr_def_type: 0,
            nb_cfg: 0,
            pkrs: 0,
        }
    }
}

fn gp() -> Fault {
    Fault::with_code(Exception::GeneralProtection, 0)
}

/// The time-stamp counter: one tick per retired guest instruction, plus the offset a
/// WRMSR to the TSC set. Deterministic by construction.
pub fn tsc(cpu: &CpuState) -> u64 {
    cpu.retired.wrapping_add(cpu.msr.tsc_offset)
}

/// RDMSR.
pub fn read(cpu: &CpuState, index: u32) -> Result<u64, Fault> {
    Ok(match index {
        TSC => tsc(cpu),
        TSC_ADJUST => cpu.msr.tsc_adjust,
        APIC_BASE => cpu.msr.apic_base,
        // No variable ranges, no fixed ranges, no write-combining: MTRRs are not advertised.
        MTRR_CAP => 0,
        // Machine-check architecture with no error-reporting banks and no MCG_CTL: nothing
        // in an emulator raises #MC, but MCA is architectural on x86-64 CPUs and software
        // (kvm-unit-tests, Linux) reads these unconditionally.
        MCG_CAP | MCG_STATUS => 0,
        SYSENTER_CS => cpu.msr.sysenter[0],
        SYSENTER_ESP => cpu.msr.sysenter[1],
        SYSENTER_EIP => cpu.msr.sysenter[2],
        MISC_ENABLE => cpu.msr.misc_enable,
        PAT => cpu.msr.pat,
        MTRR_DEF_TYPE => cpu.msr.mtrr_def_type,
        EFER => cpu.efer,
        STAR => cpu.msr.star,
        LSTAR => cpu.msr.lstar,
        CSTAR => cpu.msr.cstar,
        SFMASK => cpu.msr.sfmask,
        FS_BASE => cpu.seg[SegReg::Fs as usize].base,
        GS_BASE => cpu.seg[SegReg::Gs as usize].base,
        KERNEL_GS_BASE => cpu.msr.kernel_gs_base,
        TSC_AUX => cpu.msr.tsc_aux,
        PATCH_LEVEL => 0,
        NB_CFG => cpu.msr.nb_cfg,
        PKRS => u64::from(cpu.msr.pkrs),
        i if K7_PERF.contains(&i) => 0,
        _ => return Err(gp()),
    })
}

/// WRMSR. `retired` must be current (the TSC offset is computed from it).
pub fn write(cpu: &mut CpuState, index: u32, value: u64) -> Result<(), Fault> {
    let need_canonical = |v: u64| if canonical(v) { Ok(v) } else { Err(gp()) };
    match index {
        TSC => {
            // The TSC jumps by what the write changes, and TSC_ADJUST records the jump.
            let jump = value.wrapping_sub(tsc(cpu));
            cpu.msr.tsc_adjust = cpu.msr.tsc_adjust.wrapping_add(jump);
            cpu.msr.tsc_offset = value.wrapping_sub(cpu.retired);
        }
        TSC_ADJUST => {
            let jump = value.wrapping_sub(cpu.msr.tsc_adjust);
            cpu.msr.tsc_offset = cpu.msr.tsc_offset.wrapping_add(jump);
            cpu.msr.tsc_adjust = value;
        }
        APIC_BASE => {
            // Base (bits 12..39), BSP (8, read-only), EN (11); x2APIC (10) is not offered.
            let writable = 0x0000_00ff_ffff_f000 | (1 << 11);
            if value & !(writable | (1 << 8)) != 0 {
                return Err(gp());
            }
            cpu.msr.apic_base = (value & writable) | (cpu.msr.apic_base & (1 << 8));
        }
        // MCG_STATUS accepts only zero (SDM Vol. 3 16.3.1.2); MCG_CAP is read-only.
        MCG_STATUS if value == 0 => {}
        SYSENTER_CS => cpu.msr.sysenter[0] = value & 0xffff,
        SYSENTER_ESP => cpu.msr.sysenter[1] = need_canonical(value)?,
        SYSENTER_EIP => cpu.msr.sysenter[2] = need_canonical(value)?,
        MISC_ENABLE => cpu.msr.misc_enable = value,
        PAT => {
            // Each byte is a memory type: 0, 1, 4, 5, 6 or 7.
            if (0..8).any(|i| matches!((value >> (8 * i)) & 0xff, 2 | 3 | 8..)) {
                return Err(gp());
            }
            cpu.msr.pat = value;
        }
        MTRR_DEF_TYPE => {
            if value & !0xcff != 0 {
                return Err(gp());
            }
            cpu.msr.mtrr_def_type = value;
        }
        EFER => {
            // SCE, LME, NXE and AUTOIBRS are writable; LMA is the processor's; every other
            // bit is reserved.
            let writable = EFER_SCE | EFER_LME | EFER_LMA | crate::paging::EFER_NXE | EFER_AUTOIBRS;
            if value & !writable != 0 {
                return Err(gp());
            }
            if (value ^ cpu.efer) & crate::paging::EFER_NXE != 0 {
                // XD bits start or stop counting: cached permissions are stale.
                cpu.flush_tlb();
            }
            let lme_changes = (value ^ cpu.efer) & EFER_LME != 0;
            if lme_changes && cpu.cr0 & CR0_PG != 0 {
                return Err(gp());
            }
            cpu.efer = (value & !EFER_LMA) | (cpu.efer & EFER_LMA);
        }
        STAR => cpu.msr.star = value,
        LSTAR => cpu.msr.lstar = need_canonical(value)?,
        CSTAR => cpu.msr.cstar = need_canonical(value)?,
        SFMASK => cpu.msr.sfmask = value & 0xffff_ffff,
        FS_BASE => cpu.seg[SegReg::Fs as usize].base = need_canonical(value)?,
        GS_BASE => cpu.seg[SegReg::Gs as usize].base = need_canonical(value)?,
        KERNEL_GS_BASE => cpu.msr.kernel_gs_base = need_canonical(value)?,
        TSC_AUX => cpu.msr.tsc_aux = value & 0xffff_ffff,
        PATCH_LEVEL => {}
        NB_CFG => cpu.msr.nb_cfg = value,
        PKRS => {
            let v = u32::try_from(value).map_err(|_| gp())?;
            if v != cpu.msr.pkrs {
                // The TLB's tags for supervisor pages were computed with the old rights.
                cpu.msr.pkrs = v;
                cpu.flush_tlb();
            }
        }
        i if K7_PERF.contains(&i) => {}
        _ => return Err(gp()),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CpuMode;

    #[test]
    fn machine_check_msrs_report_no_banks() {
        let mut cpu = CpuState::new(CpuMode::Long64);
        assert_eq!(read(&cpu, MCG_CAP), Ok(0));
        assert_eq!(read(&cpu, MCG_STATUS), Ok(0));
        assert!(write(&mut cpu, MCG_STATUS, 0).is_ok());
        assert!(write(&mut cpu, MCG_STATUS, 1).is_err());
        assert!(write(&mut cpu, MCG_CAP, 0).is_err());
    }

    #[test]
    fn unknown_msrs_and_reserved_bits_raise_gp() {
        let mut cpu = CpuState::new(CpuMode::Long64);
        assert_eq!(read(&cpu, 0x1234), Err(gp()));
        assert_eq!(write(&mut cpu, 0x1234, 0), Err(gp()));
        assert_eq!(write(&mut cpu, EFER, 1 << 20), Err(gp()));
        assert_eq!(write(&mut cpu, FS_BASE, 0x8000_0000_0000_0000), Err(gp()));
        assert_eq!(write(&mut cpu, PAT, 0x02), Err(gp()));
        assert_eq!(write(&mut cpu, APIC_BASE, 1 << 10), Err(gp()));
    }

    #[test]
    fn efer_keeps_lma_and_refuses_lme_changes_under_paging() {
        let mut cpu = CpuState::new(CpuMode::Long64);
        let e = cpu.efer;
        write(&mut cpu, EFER, e | EFER_SCE).unwrap();
        assert_eq!(read(&cpu, EFER).unwrap(), e | EFER_SCE);
        // Linux sets AUTOIBRS when CPUID advertises it.
        write(&mut cpu, EFER, e | EFER_SCE | EFER_AUTOIBRS).unwrap();
        assert_eq!(read(&cpu, EFER).unwrap(), e | EFER_SCE | EFER_AUTOIBRS);
        write(&mut cpu, EFER, e | EFER_SCE).unwrap();
        assert_eq!(
            write(&mut cpu, EFER, EFER_SCE),
            Err(gp()),
            "LME cannot drop while PG=1"
        );
        let mut real = CpuState::new(CpuMode::Real16);
        write(&mut real, EFER, EFER_LME | EFER_LMA).unwrap();
        assert_eq!(real.efer, EFER_LME, "LMA is not writable");
    }

    #[test]
    fn bases_land_in_the_segment_caches_and_the_tsc_counts_instructions() {
        let mut cpu = CpuState::new(CpuMode::Long64);
        write(&mut cpu, GS_BASE, 0xffff_8000_0000_1000).unwrap();
        assert_eq!(cpu.seg[SegReg::Gs as usize].base, 0xffff_8000_0000_1000);
        assert_eq!(read(&cpu, GS_BASE).unwrap(), 0xffff_8000_0000_1000);
        cpu.retired = 100;
        write(&mut cpu, TSC, 1_000_000).unwrap();
        cpu.retired = 150;
        assert_eq!(read(&cpu, TSC).unwrap(), 1_000_050);
        assert_eq!(read(&cpu, TSC_ADJUST).unwrap(), 1_000_000 - 100);
        assert_eq!(read(&cpu, APIC_BASE).unwrap(), APIC_BASE_DEFAULT);
        write(&mut cpu, APIC_BASE, 0xfee0_0000).unwrap();
        assert_eq!(
            read(&cpu, APIC_BASE).unwrap(),
            0xfee0_0000 | (1 << 8),
            "BSP is read-only"
        );
    }

    /// IA32_TSC_ADJUST (kvm-unit-tests' `tsc_adjust`): writing it moves the TSC by the
    /// change, writing the TSC adds the jump to it, and time the machine skips (idle HLT)
    /// moves the TSC without touching it.
    #[test]
    fn tsc_adjust_follows_writes_to_either_msr() {
        let mut cpu = CpuState::new(CpuMode::Long64);
        cpu.retired = 1000;
        assert_eq!(read(&cpu, TSC_ADJUST).unwrap(), 0);
        write(&mut cpu, TSC_ADJUST, 100_000_000_000).unwrap();
        assert_eq!(read(&cpu, TSC).unwrap(), 100_000_001_000);
        write(&mut cpu, TSC_ADJUST, 0).unwrap();
        assert_eq!(read(&cpu, TSC).unwrap(), 1000);
        cpu.msr.tsc_offset += 500; // an idle skip
        cpu.retired = 2000;
        write(&mut cpu, TSC, 10_000).unwrap();
        assert_eq!(read(&cpu, TSC_ADJUST).unwrap(), 10_000 - 2500);
        assert_eq!(read(&cpu, TSC).unwrap(), 10_000);
        write(&mut cpu, TSC, 0).unwrap();
        assert_eq!(read(&cpu, TSC_ADJUST).unwrap(), (-2500i64) as u64);
    }
}
