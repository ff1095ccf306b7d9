//! Limit and type checks on data accesses (SDM Vol. 3, 5.3 "Limit checking" and 5.5
//! "Type checking"): which segments need them, and the reference form of the check.
//!
//! Generated code checks an access only in blocks whose key says DS, ES or SS is not flat
//! ([`data_segments_flat`]), on an access through an FS or GS override when the key says
//! that segment is not flat ([`segment_flat`]), and on every access through a CS override
//! outside 64-bit mode; the translator emits the same arithmetic as [`access_fault`] (its unit tests
//! compare the two). In 64-bit mode only the canonical checks apply.

use crate::state::{CpuMode, CpuState, SegReg, Segment, CR0_PE, SEG_DB, SEG_P};

/// Type field bit of a code/data descriptor: code (else data).
pub const TYPE_CODE: u16 = 1 << 3;
/// Type field bit: expand-down (data segments).
pub const TYPE_EXPAND_DOWN: u16 = 1 << 2;
/// Type field bit: writable (data) or readable (code).
pub const TYPE_RW: u16 = 1 << 1;

/// How the checks apply: in real-address and virtual-8086 mode only the limit counts (the
/// segments are 64 KiB read/write data unless unreal mode left a larger limit), in protected
/// mode also the type, expand-down and the null selector.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rules {
    /// Real-address or virtual-8086 mode.
    Real,
    /// Protected mode (16- or 32-bit code, or compatibility mode).
    Protected,
}

/// The rules `cpu` runs under, or `None` in 64-bit mode (no limit or type checks).
pub fn rules(cpu: &CpuState) -> Option<Rules> {
    match cpu.mode {
        CpuMode::Long64 => None,
        _ if cpu.cr0 & CR0_PE == 0 || cpu.rflags & crate::flags::VM != 0 => Some(Rules::Real),
        _ => Some(Rules::Protected),
    }
}

/// True when an access to `seg` can never fault on its limit or type: a present, writable,
/// expand-up data segment (any segment in real-address mode) with a 4 GiB limit.
pub fn is_flat(seg: &Segment, rules: Rules) -> bool {
    let typed = match rules {
        Rules::Real => true,
        Rules::Protected => {
            seg.attrs & SEG_P != 0
                && seg.attrs & (1 << 4) != 0
                && seg.attrs & (TYPE_CODE | TYPE_EXPAND_DOWN | TYPE_RW) == TYPE_RW
        }
    };
    typed && seg.limit == u32::MAX
}

/// True when DS, ES and SS are all flat (always in 64-bit mode): blocks then emit no checks
/// for accesses through them. This is one bit of the block key.
pub fn data_segments_flat(cpu: &CpuState) -> bool {
    match rules(cpu) {
        None => true,
        Some(r) => [SegReg::Ds, SegReg::Es, SegReg::Ss]
            .iter()
            .all(|&s| is_flat(&cpu.seg[s as usize], r)),
    }
}

/// True outside 64-bit mode when `s` is flat ([`is_flat`]): accesses through it can skip
/// the limit and type checks. One bit of the block key each for FS and GS; every
/// instruction that loads a segment register is runtime-class, as for
/// [`data_segments_flat`]. In 64-bit mode, where nothing is checked, the bits stay clear.
pub fn segment_flat(cpu: &CpuState, s: SegReg) -> bool {
    rules(cpu).is_some_and(|r| is_flat(&cpu.seg[s as usize], r))
}

/// True outside 64-bit mode when DS, ES and SS all have base 0, as every 32-bit operating
/// system's flat segments do: blocks then add no base to accesses through them (in 64-bit
/// mode no base is added anyway, so the bit stays clear there). One bit of the block key;
/// every instruction that changes a segment base is runtime-class, so the next block's key
/// is built from the new state, as for [`data_segments_flat`].
pub fn data_bases_zero(cpu: &CpuState) -> bool {
    cpu.mode != CpuMode::Long64
        && [SegReg::Ds, SegReg::Es, SegReg::Ss]
            .iter()
            .all(|&s| cpu.seg[s as usize].base == 0)
}

/// The reference check: true when an access of `size` bytes at offset `off` (already
/// truncated to the address size) through `seg` faults (#SS(0) through SS, #GP(0)
/// otherwise). `null_checked` is false for SS and CS, whose caches are never null where
/// they are used. The range is `off..=off + size - 1` without wrapping: a word at offset
/// 0xFFFF of a 64 KiB segment faults, as the SDM says for real-address mode too.
pub fn access_fault(
    seg: &Segment,
    rules: Rules,
    null_checked: bool,
    off: u64,
    size: u32,
    write: bool,
) -> bool {
    let end = off + u64::from(size.max(1)) - 1;
    if rules == Rules::Real {
        return end > u64::from(seg.limit);
    }
    let a = seg.attrs;
    if null_checked && a & SEG_P == 0 {
        return true;
    }
    let kind = a & (TYPE_CODE | TYPE_RW);
    let bad_type = if write {
        kind != TYPE_RW
    } else {
        kind == TYPE_CODE
    };
    if bad_type {
        return true;
    }
    if a & (TYPE_CODE | TYPE_EXPAND_DOWN) == TYPE_EXPAND_DOWN {
        let top: u64 = if a & SEG_DB != 0 { 0xffff_ffff } else { 0xffff };
        off <= u64::from(seg.limit) || end > top
    } else {
        end > u64::from(seg.limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(limit: u32, typ: u16, db: bool) -> Segment {
        Segment {
            base: 0x1000,
            limit,
            selector: 0x10,
            attrs: SEG_P | 0x10 | typ | if db { SEG_DB } else { 0 },
        }
    }

    #[test]
    fn expand_up_covers_every_byte() {
        let s = data(0xfff, 0x3, true);
        for size in 1..=16 {
            let last_ok = 0x1000 - u64::from(size);
            assert!(!access_fault(
                &s,
                Rules::Protected,
                true,
                last_ok,
                size,
                true
            ));
            assert!(access_fault(
                &s,
                Rules::Protected,
                true,
                last_ok + 1,
                size,
                false
            ));
        }
        assert!(!access_fault(&s, Rules::Protected, true, 0, 16, false));
    }

    #[test]
    fn expand_down_valid_range_is_above_the_limit() {
        // Expand-down, B = 0: offsets limit+1 ..= 0xFFFF.
        let s = data(0x0fff, 0x7, false);
        assert!(access_fault(&s, Rules::Protected, true, 0x0fff, 1, false));
        assert!(!access_fault(&s, Rules::Protected, true, 0x1000, 1, false));
        for size in 1..=16u32 {
            let top = 0x1_0000 - u64::from(size);
            assert!(!access_fault(&s, Rules::Protected, true, top, size, true));
            assert!(access_fault(
                &s,
                Rules::Protected,
                true,
                top + 1,
                size,
                true
            ));
        }
        assert!(access_fault(&s, Rules::Protected, true, 0x1_0000, 1, false));
        // B = 1: up to 0xFFFFFFFF.
        let s = data(0x0fff, 0x7, true);
        assert!(!access_fault(
            &s,
            Rules::Protected,
            true,
            0x1_0000,
            4,
            false
        ));
        assert!(!access_fault(
            &s,
            Rules::Protected,
            true,
            0xffff_fffc,
            4,
            false
        ));
        assert!(access_fault(
            &s,
            Rules::Protected,
            true,
            0xffff_fffd,
            4,
            false
        ));
        assert!(access_fault(&s, Rules::Protected, true, 0xffe, 4, false));
    }

    #[test]
    fn types_null_and_real_mode() {
        let ro = data(0xffff, 0x1, true);
        assert!(!access_fault(&ro, Rules::Protected, true, 0, 4, false));
        assert!(access_fault(&ro, Rules::Protected, true, 0, 4, true));
        let exec_only = data(0xffff, 0x9, true);
        assert!(access_fault(
            &exec_only,
            Rules::Protected,
            false,
            0,
            1,
            false
        ));
        let exec_read = data(0xffff, 0xb, true);
        assert!(!access_fault(
            &exec_read,
            Rules::Protected,
            false,
            0,
            1,
            false
        ));
        assert!(access_fault(
            &exec_read,
            Rules::Protected,
            false,
            0,
            1,
            true
        ));
        let null = Segment::default();
        assert!(access_fault(&null, Rules::Protected, true, 0, 1, false));
        // Real mode: the 64 KiB limit only, a word at 0xFFFF crossing it.
        let r = Segment::real(0x1234);
        assert!(!access_fault(&r, Rules::Real, true, 0xfffe, 2, true));
        assert!(access_fault(&r, Rules::Real, true, 0xffff, 2, true));
        assert!(!is_flat(&r, Rules::Real));
    }

    #[test]
    fn flat_segments_skip_checks() {
        let mut cpu = CpuState::new(CpuMode::Prot32);
        assert!(data_segments_flat(&cpu));
        cpu.seg[SegReg::Es as usize].attrs &= !TYPE_RW;
        assert!(!data_segments_flat(&cpu));
        assert!(data_segments_flat(&CpuState::new(CpuMode::Long64)));
        assert!(!data_segments_flat(&CpuState::new(CpuMode::Real16)));
    }

    #[test]
    fn fs_and_gs_are_keyed_flat_only_outside_64_bit_mode_with_a_4_gib_limit() {
        use crate::BlockKey;
        let mut cpu = CpuState::new(CpuMode::Prot32);
        // A base does not matter (the 32-bit kernel's per-CPU FS has one).
        cpu.seg[SegReg::Fs as usize].base = 0x1000;
        let k = BlockKey::new(0, &cpu);
        assert!(k.fs_flat() && k.gs_flat());
        cpu.seg[SegReg::Fs as usize].limit = 0x1ff;
        cpu.seg[SegReg::Gs as usize].attrs &= !SEG_P;
        let k = BlockKey::new(0, &cpu);
        assert!(!k.fs_flat() && !k.gs_flat());
        assert_ne!(
            k.mode_bits(),
            BlockKey::new(0, &CpuState::new(CpuMode::Prot32)).mode_bits()
        );
        let k = BlockKey::new(0, &CpuState::new(CpuMode::Long64));
        assert!(
            !k.fs_flat() && !k.gs_flat(),
            "nothing is checked in 64-bit mode"
        );
    }

    #[test]
    fn zero_bases_are_those_of_ds_es_and_ss_outside_64_bit_mode() {
        let mut cpu = CpuState::new(CpuMode::Prot32);
        assert!(data_bases_zero(&cpu));
        cpu.seg[SegReg::Fs as usize].base = 0x1000;
        assert!(data_bases_zero(&cpu), "FS does not count");
        for s in [SegReg::Ds, SegReg::Es, SegReg::Ss] {
            let mut c = CpuState::new(CpuMode::Prot32);
            c.seg[s as usize].base = 0x1000;
            assert!(!data_bases_zero(&c), "{s:?}");
            let key = crate::BlockKey::new(0, &c);
            assert!(!key.zero_bases(), "{s:?}");
        }
        assert!(crate::BlockKey::new(0, &cpu).zero_bases());
        assert!(!data_bases_zero(&CpuState::new(CpuMode::Long64)));
    }
}
