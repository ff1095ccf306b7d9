//! Segment limit and type checks on data accesses (SDM Vol. 3, 5.3 and 5.5): the generated
//! form of `crane86_runtime::segment::limit::access_fault`.
//!
//! A block whose key says DS, ES and SS are flat (`Ctx::seg_checks` clear) emits nothing for
//! accesses through them, so flat guests pay nothing; accesses through a CS, FS or GS
//! override are checked in every block outside 64-bit mode (they are rare, and FS/GS are
//! often null in 32-bit code). The check reads the segment's limit and attributes at run
//! time and raises #SS(0) for SS, #GP(0) otherwise, before the access changes anything.

use crane86_runtime::segment::limit::{TYPE_CODE, TYPE_EXPAND_DOWN, TYPE_RW};
use crane86_runtime::state::{SEG_DB, SEG_P};
use crane86_runtime::{CpuMode, Exception, Fault, SegReg};
use iced_x86::Register;

use super::operands::{linear, seg_of};
use crate::emit::{Arith, Bin, Cmp, Emit, R};

/// What a data access does to its bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// A load.
    Read,
    /// A store (a read-modify-write is checked as a read, then as a write).
    Write,
}

/// Raises #SS(0)/#GP(0) when an access of `size` bytes at offset `off` (already truncated
/// to the address size) through `seg` breaks the segment's limit or type.
pub fn check<E: Emit>(e: &mut E, seg: Register, off: E::V, size: u32, access: Access) -> R<()> {
    let ctx = e.ctx();
    let s = seg_of(seg);
    if ctx.mode == CpuMode::Long64
        || !(ctx.seg_checks || matches!(s, SegReg::Cs | SegReg::Fs | SegReg::Gs))
    {
        return Ok(());
    }
    let real = ctx.mode == CpuMode::Real16 || ctx.v86;
    let limit = e.seg_limit(s);
    let attrs = if real { None } else { Some(e.seg_attrs(s)) };
    let null_checked = !matches!(s, SegReg::Ss | SegReg::Cs);
    let bad = fault_cond(e, limit, attrs, null_checked, off, size, access);
    let vector = if s == SegReg::Ss {
        Exception::StackFault
    } else {
        Exception::GeneralProtection
    };
    e.raise_if(bad, Fault::with_code(vector, 0))
}

/// [`check`], then the linear address of the access.
pub fn checked_linear<E: Emit>(
    e: &mut E,
    seg: Register,
    off: E::V,
    size: u32,
    access: Access,
) -> R<E::V> {
    check(e, seg, off, size, access)?;
    Ok(linear(e, seg, off))
}

/// 1 when the access faults, else 0: `attrs` is `None` under real-address-mode rules (the
/// limit alone counts).
pub fn fault_cond<A: Arith>(
    e: &mut A,
    limit: A::V,
    attrs: Option<A::V>,
    null_checked: bool,
    off: A::V,
    size: u32,
    access: Access,
) -> A::V {
    let last = e.imm(u64::from(size) - 1);
    let end = e.bin(Bin::Add, off, last);
    let beyond = e.cmp(Cmp::Ult, limit, end);
    let Some(attrs) = attrs else {
        return beyond;
    };
    // Type: stores need a writable data segment, loads anything but execute-only code.
    let km = e.imm(u64::from(TYPE_CODE | TYPE_RW));
    let kind = e.bin(Bin::And, attrs, km);
    let mut bad = match access {
        Access::Write => {
            let ok = e.imm(u64::from(TYPE_RW));
            e.cmp(Cmp::Ne, kind, ok)
        }
        Access::Read => {
            let exec_only = e.imm(u64::from(TYPE_CODE));
            e.cmp(Cmp::Eq, kind, exec_only)
        }
    };
    if null_checked {
        let p = e.imm(u64::from(SEG_P));
        let present = e.bin(Bin::And, attrs, p);
        let zero = e.imm(0);
        let null = e.cmp(Cmp::Eq, present, zero);
        bad = e.bin(Bin::Or, bad, null);
    }
    // Expand-down data: valid offsets are limit+1 ..= 0xFFFF, or 0xFFFFFFFF with B set.
    let em = e.imm(u64::from(TYPE_CODE | TYPE_EXPAND_DOWN));
    let ek = e.bin(Bin::And, attrs, em);
    let edv = e.imm(u64::from(TYPE_EXPAND_DOWN));
    let down = e.cmp(Cmp::Eq, ek, edv);
    let dbm = e.imm(u64::from(SEG_DB));
    let big = e.bin(Bin::And, attrs, dbm);
    let top32 = e.imm(0xffff_ffff);
    let top16 = e.imm(0xffff);
    let top = e.select(big, top32, top16);
    let below = e.cmp(Cmp::Ule, off, limit);
    let over = e.cmp(Cmp::Ult, top, end);
    let down_bad = e.bin(Bin::Or, below, over);
    let range = e.select(down, down_bad, beyond);
    e.bin(Bin::Or, bad, range)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interp::Values;
    use crane86_runtime::segment::limit::{access_fault, Rules};
    use crane86_runtime::Segment;

    /// The generated arithmetic agrees with the runtime's reference check on every
    /// combination of segment kind, offset near the edges and size 1..16.
    #[test]
    fn generated_check_matches_reference() {
        let mut kinds = Vec::new();
        for typ in 0..16u16 {
            for db in [0, SEG_DB] {
                for p in [0, SEG_P] {
                    kinds.push(p | 0x10 | typ | db);
                }
            }
        }
        let limits = [
            0u32,
            0xfff,
            0xfffe,
            0xffff,
            0x1_0000,
            0xffff_fffe,
            0xffff_ffff,
        ];
        let offs = [
            0u64, 1, 0xffe, 0xfff, 0x1000, 0xfff0, 0xfffe, 0xffff, 0x1_0000,
        ];
        for &attrs in &kinds {
            for &limit in &limits {
                let seg = Segment {
                    base: 0,
                    limit,
                    selector: 8,
                    attrs,
                };
                for &off in offs.iter().chain(&[0xffff_fff0, 0xffff_ffff]) {
                    for size in 1..=16 {
                        for access in [Access::Read, Access::Write] {
                            let w = access == Access::Write;
                            for null in [false, true] {
                                let v = &mut Values;
                                let (l, a) = (u64::from(limit), u64::from(attrs));
                                let got = fault_cond(v, l, Some(a), null, off, size, access);
                                let want = access_fault(&seg, Rules::Protected, null, off, size, w);
                                assert_eq!(got != 0, want, "{seg:x?} {off:#x} {size} {access:?}");
                                let got = fault_cond(v, l, None, null, off, size, access);
                                let want = access_fault(&seg, Rules::Real, null, off, size, w);
                                assert_eq!(got != 0, want, "real {seg:x?} {off:#x} {size}");
                            }
                        }
                    }
                }
            }
        }
    }
}
