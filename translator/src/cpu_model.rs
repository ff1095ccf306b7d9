//! The CPU model presented through CPUID. Every feature bit set here is implemented
//! (ARCHITECTURE.md decision 12); the conformance tool checks the instruction forms behind
//! each one.
//!
//! The vendor is AuthenticAMD on purpose: the host we measure on is an AMD EPYC, so the
//! values the SDM leaves undefined (and the conformance tool masks) come from the same vendor,
//! and Linux does not enable page-table isolation on AMD (see ANCHORS.md).

const VENDOR: &[u8; 12] = b"AuthenticAMD";
const MAX_LEAF: u32 = 0xd;
const MAX_EXT_LEAF: u32 = 0x8000_0021;

// CPUID.1:EDX
const EDX1_FPU: u32 = 1 << 0;
/// Virtual-8086 mode extensions (CR4.VME) and protected-mode virtual interrupts (CR4.PVI).
const EDX1_VME: u32 = 1 << 1;
const EDX1_DE: u32 = 1 << 2;
const EDX1_PSE: u32 = 1 << 3;
const EDX1_TSC: u32 = 1 << 4;
const EDX1_MSR: u32 = 1 << 5;
const EDX1_PAE: u32 = 1 << 6;
const EDX1_MCE: u32 = 1 << 7;
const EDX1_CX8: u32 = 1 << 8;
/// CPUID.1:EDX.APIC: not in [`FEATURES`]; set while IA32_APIC_BASE.EN is (the flat test
/// machine, which has no local APIC, starts with it clear).
pub const EDX1_APIC: u32 = 1 << 9;
const EDX1_SEP: u32 = 1 << 11;
const EDX1_PGE: u32 = 1 << 13;
const EDX1_MCA: u32 = 1 << 14;
const EDX1_CMOV: u32 = 1 << 15;
const EDX1_PSE36: u32 = 1 << 17;
const EDX1_CLFSH: u32 = 1 << 19;
const EDX1_MMX: u32 = 1 << 23;
const EDX1_FXSR: u32 = 1 << 24;
const EDX1_SSE: u32 = 1 << 25;
const EDX1_SSE2: u32 = 1 << 26;
// CPUID.1:ECX
const ECX1_SSE3: u32 = 1 << 0;
const ECX1_SSSE3: u32 = 1 << 9;
const ECX1_CX16: u32 = 1 << 13;
/// Process-context identifiers: CR4.PCIDE (see `crane86_runtime::pcid`).
const ECX1_PCID: u32 = 1 << 17;
const ECX1_SSE41: u32 = 1 << 19;
const ECX1_SSE42: u32 = 1 << 20;
const ECX1_XSAVE: u32 = 1 << 26;
/// Running under a virtualizer: crane86 is one. Guests then expect virtual hardware (Linux
/// takes a PMU without counters as normal rather than broken).
const ECX1_HYPERVISOR: u32 = 1 << 31;
/// CPUID.1:ECX.OSXSAVE: not in [`FEATURES`]; it mirrors CR4.OSXSAVE.
pub const ECX1_OSXSAVE: u32 = 1 << 27;
const ECX1_MOVBE: u32 = 1 << 22;
const ECX1_POPCNT: u32 = 1 << 23;
// CPUID.7.0:EBX
/// IA32_TSC_ADJUST, as KVM offers it to its guests on AMD hosts too.
const EBX7_TSC_ADJUST: u32 = 1 << 1;
const EBX7_BMI1: u32 = 1 << 3;
/// FCS and FDS are saved as zero (the FPU keeps no segment selectors).
const EBX7_FPU_CSDS_DEPRECATED: u32 = 1 << 13;
const EBX7_SMEP: u32 = 1 << 7;
/// INVPCID.
const EBX7_INVPCID: u32 = 1 << 10;
const EBX7_SMAP: u32 = 1 << 20;
/// CLFLUSHOPT and CLWB, which Zen 3 has: with no caches, both are CLFLUSH's address check.
const EBX7_CLFLUSHOPT: u32 = 1 << 23;
const EBX7_CLWB: u32 = 1 << 24;
// CPUID.7.0:ECX
const ECX7_UMIP: u32 = 1 << 2;
/// Protection keys for user-mode pages: CR4.PKE, PKRU, RDPKRU/WRPKRU.
const ECX7_PKU: u32 = 1 << 3;
/// CPUID.7.0:ECX.OSPKE: not in [`FEATURES`]; it mirrors CR4.PKE.
pub const ECX7_OSPKE: u32 = 1 << 4;
const ECX7_RDPID: u32 = 1 << 22;
/// Protection keys for supervisor-mode pages: CR4.PKS, IA32_PKRS.
const ECX7_PKS: u32 = 1 << 31;
const EBX7_BMI2: u32 = 1 << 8;
const EBX7_ADX: u32 = 1 << 19;
// CPUID.80000001:EDX
const EDX81_SYSCALL: u32 = 1 << 11;
const EDX81_NX: u32 = 1 << 20;
const EDX81_PAGE1GB: u32 = 1 << 26;
const EDX81_RDTSCP: u32 = 1 << 27;
const EDX81_LM: u32 = 1 << 29;
// CPUID.80000008:EBX and 80000021:EAX/ECX: speculation bugs the CPU does not have, and
// the branch-prediction protection it offers.
const EBX88_SSB_NO: u32 = 1 << 26;
const EAX821_SRSO_NO: u32 = 1 << 29;
/// Automatic IBRS (EFER.AUTOIBRS protects CPL 0 from lower-privilege branch predictions).
const EAX821_AUTOIBRS: u32 = 1 << 8;
const ECX821_TSA_SQ_NO: u32 = 1 << 1;
const ECX821_TSA_L1_NO: u32 = 1 << 2;
// CPUID.80000001:ECX
const ECX81_LAHF: u32 = 1 << 0;
const ECX81_ABM: u32 = 1 << 5;

/// The feature bits, kept in one place so tests can compare them with the opcode table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Features {
    /// CPUID.1:ECX.
    pub ecx1: u32,
    /// CPUID.1:EDX.
    pub edx1: u32,
    /// CPUID.7.0:EBX.
    pub ebx7: u32,
    /// CPUID.7.0:ECX.
    pub ecx7: u32,
    /// CPUID.80000001:ECX.
    pub ecx81: u32,
    /// CPUID.80000001:EDX.
    pub edx81: u32,
}

/// What this build of crane86 advertises.
pub const FEATURES: Features = Features {
    ecx1: ECX1_SSE3
        | ECX1_SSSE3
        | ECX1_CX16
        | ECX1_PCID
        | ECX1_SSE41
        | ECX1_SSE42
        | ECX1_MOVBE
        | ECX1_POPCNT
        | ECX1_XSAVE
        | ECX1_HYPERVISOR,
    edx1: EDX1_FPU
        | EDX1_VME
        | EDX1_DE
        | EDX1_PSE
        | EDX1_TSC
        | EDX1_MSR
        | EDX1_PAE
        | EDX1_MCE
        | EDX1_CX8
        | EDX1_SEP
        | EDX1_PGE
        | EDX1_MCA
        | EDX1_CMOV
        | EDX1_PSE36
        | EDX1_CLFSH
        | EDX1_MMX
        | EDX1_FXSR
        | EDX1_SSE
        | EDX1_SSE2,
    ebx7: EBX7_TSC_ADJUST
        | EBX7_BMI1
        | EBX7_SMEP
        | EBX7_INVPCID
        | EBX7_FPU_CSDS_DEPRECATED
        | EBX7_BMI2
        | EBX7_ADX
        | EBX7_SMAP
        | EBX7_CLFLUSHOPT
        | EBX7_CLWB,
    ecx7: ECX7_UMIP | ECX7_PKU | ECX7_RDPID | ECX7_PKS,
    ecx81: ECX81_LAHF | ECX81_ABM,
    // AMD repeats the FPU, MMX and FXSR bits of leaf 1 here.
    edx81: EDX1_FPU
        | EDX81_SYSCALL
        | EDX81_NX
        | EDX1_MMX
        | EDX1_FXSR
        | EDX81_PAGE1GB
        | EDX81_RDTSCP
        | EDX81_LM,
};

/// XCR0 bit of the PKRU state component (9).
pub const XCR0_PKRU: u64 = 1 << 9;
/// XCR0 bits XSAVE manages: x87, SSE and PKRU (AVX is not offered).
pub const XCR0_SUPPORTED: u64 = 0b11 | XCR0_PKRU;
/// The size of the XSAVE area for x87 and SSE: the legacy region and the header.
const XSAVE_AREA: u32 = 576;
/// Where the PKRU component sits in the standard (non-compacted) XSAVE format, after the
/// places of the AVX, MPX and AVX-512 components this CPU does not have (SDM Vol. 1
/// 13.4.3), and its size: PKRU and four reserved bytes.
pub const PKRU_OFFSET: u32 = 0xa80;
/// See [`PKRU_OFFSET`].
pub const PKRU_SIZE: u32 = 8;

/// The size of an XSAVE area in the standard format holding the components of `xcr0`.
pub fn xsave_size(xcr0: u64) -> u32 {
    if xcr0 & XCR0_PKRU != 0 {
        PKRU_OFFSET + PKRU_SIZE
    } else {
        XSAVE_AREA
    }
}

/// The size of an XSAVE area in the compacted format holding the components of `xcr0`:
/// the legacy region and the header, then the components above SSE in order (PKRU only).
pub fn xsave_compacted_size(xcr0: u64) -> u32 {
    if xcr0 & XCR0_PKRU != 0 {
        XSAVE_AREA + PKRU_SIZE
    } else {
        XSAVE_AREA
    }
}
// CPUID.(0xD,1):EAX
const EAX_D1_XSAVEOPT: u32 = 1 << 0;
const EAX_D1_XSAVEC: u32 = 1 << 1;

/// CPUID.1:EAX (and 80000001:EAX): family 0x19 (extended family 0xA + 0xF), model 1,
/// stepping 0.
const FAMILY_MODEL: u32 = 0x00a0_0f10;

fn vendor_regs() -> [u32; 3] {
    let w = |i: usize| u32::from_le_bytes([VENDOR[i], VENDOR[i + 1], VENDOR[i + 2], VENDOR[i + 3]]);
    // CPUID returns the vendor string in EBX, EDX, ECX order.
    [w(0), w(4), w(8)]
}

/// CPUID for `leaf`/`subleaf`, as `[eax, ebx, ecx, edx]`.
pub fn cpuid(leaf: u32, subleaf: u32) -> [u32; 4] {
    let f = FEATURES;
    match leaf {
        0 => {
            let [b, d, c] = vendor_regs();
            [MAX_LEAF, b, c, d]
        }
        // Family 0x19 (Zen 3), model 0x01, stepping 0: an EPYC-class part. Not family 0x17:
        // Linux gives families 0x15-0x17 the RETBleed mitigation (every RET becomes a jump to
        // a return thunk), which a CPU that does not speculate does not need and which cost
        // a cross-page jump and an indirect branch per return (see docs/design.md).
        1 => [FAMILY_MODEL, 0x0001_0800, f.ecx1, f.edx1],
        7 if subleaf == 0 => [0, f.ebx7, f.ecx7, 0],
        // XSAVE enumeration: x87 and SSE in the legacy region, and PKRU. The sizes for the
        // components XCR0 enables now (subleaf 0 EBX, subleaf 1 EBX) are filled in by the
        // CPUID instruction, which sees XCR0; these are for XCR0 = x87 | SSE.
        0xd => match subleaf {
            0 => [
                XCR0_SUPPORTED as u32,
                XSAVE_AREA,
                xsave_size(XCR0_SUPPORTED),
                0,
            ],
            1 => [EAX_D1_XSAVEOPT | EAX_D1_XSAVEC, XSAVE_AREA, 0, 0],
            // Size, standard-format offset; ECX = 0: a user state component, not aligned to
            // 64 bytes in the compacted format.
            9 => [PKRU_SIZE, PKRU_OFFSET, 0, 0],
            _ => [0; 4],
        },
        0x8000_0000 => {
            let [b, d, c] = vendor_regs();
            [MAX_EXT_LEAF, b, c, d]
        }
        0x8000_0001 => [FAMILY_MODEL, 0, f.ecx81, f.edx81],
        0x8000_0002..=0x8000_0004 => brand(leaf - 0x8000_0002),
        // 48-bit virtual, 40-bit physical addresses. EBX.SSB_NO: a translated CPU does not
        // speculate, so speculative store bypass cannot happen.
        0x8000_0008 => [0x0000_3028, EBX88_SSB_NO, 0, 0],
        // EAX.SRSO_NO: no return-address speculation to overflow, for the same reason.
        // EAX.AUTOIBRS: indirect branch predictions cannot cross privilege levels, trivially
        // without predictions; Linux then needs no retpolines (EFER.AUTOIBRS is writable
        // and changes nothing). ECX.TSA_SQ_NO/TSA_L1_NO: no transient scheduler attacks
        // (without them Linux clears CPU buffers with VERW at every return to user mode).
        0x8000_0021 => [
            EAX821_SRSO_NO | EAX821_AUTOIBRS,
            0,
            ECX821_TSA_SQ_NO | ECX821_TSA_L1_NO,
            0,
        ],
        _ => [0; 4],
    }
}

fn brand(part: u32) -> [u32; 4] {
    let mut name = [0u8; 48];
    let text = b"crane86 virtual CPU";
    name[..text.len()].copy_from_slice(text);
    let chunk = &name[part as usize * 16..part as usize * 16 + 16];
    let w = |i: usize| u32::from_le_bytes([chunk[i], chunk[i + 1], chunk[i + 2], chunk[i + 3]]);
    [w(0), w(4), w(8), w(12)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vendor_string_reads_back() {
        let [_, b, c, d] = cpuid(0, 0);
        let mut s = Vec::new();
        for r in [b, d, c] {
            s.extend_from_slice(&r.to_le_bytes());
        }
        assert_eq!(&s, VENDOR);
    }
}

#[cfg(test)]
mod coverage {
    use iced_x86::{Code, CpuidFeature as F, EncodingKind};

    /// Every legacy-encoded form of an x87/MMX/SSE extension CPUID advertises is in the opcode
    /// table: advertising SSE4.2 promises all of SSE4.2.
    #[test]
    fn every_form_of_an_advertised_simd_extension_is_claimed() {
        let advertised = [
            F::FPU,
            F::FPU287,
            F::FPU387,
            F::MMX,
            F::SSE,
            F::SSE2,
            F::SSE3,
            F::SSSE3,
            F::SSE4_1,
            F::SSE4_2,
            F::FXSR,
            F::XSAVE,
            F::XSAVEOPT,
            F::XSAVEC,
        ];
        let missing: Vec<Code> = Code::values()
            .filter(|c| c.op_code().encoding() == EncodingKind::Legacy)
            .filter(|c| c.op_code().is_instruction())
            .filter(|c| {
                let f = c.cpuid_features();
                !f.is_empty() && f.iter().all(|x| advertised.contains(x))
            })
            .filter(|c| crate::table::lookup(*c).is_none())
            .collect();
        assert!(missing.is_empty(), "advertised but unclaimed: {missing:?}");
    }
}
