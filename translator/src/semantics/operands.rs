//! Operand access: registers with their sub-register rules, effective addresses, segment
//! bases, and the operand "locations" that instruction semantics read and write.

use crane86_runtime::{CpuMode, Exception, Fault, SegReg};
use iced_x86::{Instruction, OpKind, Register};

use super::seg_check::{check, Access};
use crate::emit::{Arith, Bin, Emit, R};

/// A value mask for an operand size in bytes.
pub fn mask(size: u32) -> u64 {
    if size >= 8 {
        u64::MAX
    } else {
        (1u64 << (size * 8)) - 1
    }
}

/// How an iced register maps onto the 16 general registers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GprRef {
    /// Encoding number of the full register.
    pub index: usize,
    /// Width in bytes.
    pub size: u32,
    /// AH, CH, DH or BH: bits 8..15 of the register.
    pub high8: bool,
}

/// Maps a general-purpose register, or `None` for any other register class.
pub fn gpr_ref(r: Register) -> Option<GprRef> {
    let n = r as u32;
    let (base, size) = if r.is_gpr8() {
        (Register::AL as u32, 1)
    } else if r.is_gpr16() {
        (Register::AX as u32, 2)
    } else if r.is_gpr32() {
        (Register::EAX as u32, 4)
    } else if r.is_gpr64() {
        (Register::RAX as u32, 8)
    } else {
        return None;
    };
    let i = (n - base) as usize;
    Some(match (size, i) {
        (1, 4..=7) => GprRef {
            index: i - 4,
            size,
            high8: true,
        },
        (1, 8..) => GprRef {
            index: i - 4,
            size,
            high8: false,
        },
        _ => GprRef {
            index: i,
            size,
            high8: false,
        },
    })
}

/// Reads a general register operand, zero-extended.
pub fn read_reg<E: Emit>(e: &mut E, r: Register) -> E::V {
    read_gref(e, gpr_ref(r).expect("read_reg on a non-GPR register"))
}

/// Writes a general register operand with the x86 merging rules.
pub fn write_reg<E: Emit>(e: &mut E, r: Register, v: E::V) {
    write_gref(e, gpr_ref(r).expect("write_reg on a non-GPR register"), v)
}

/// Reads a (sub-)register, zero-extended.
pub fn read_gref<E: Emit>(e: &mut E, g: GprRef) -> E::V {
    let full = e.gpr(g.index);
    if g.high8 {
        let eight = e.imm(8);
        let shifted = e.bin(Bin::Shr, full, eight);
        e.zext(shifted, 8)
    } else if g.size == 8 {
        full
    } else {
        e.zext(full, g.size * 8)
    }
}

/// Writes a (sub-)register with the x86 merging rules: 32-bit writes zero the upper half,
/// 8- and 16-bit writes keep the other bits.
pub fn write_gref<E: Emit>(e: &mut E, g: GprRef, v: E::V) {
    let nv = match (g.size, g.high8) {
        (8, _) => v,
        (4, _) => e.zext(v, 32),
        (_, high) => {
            let shift = if high { 8 } else { 0 };
            let old = e.gpr(g.index);
            let keep = e.imm(!(mask(g.size) << shift));
            let old = e.bin(Bin::And, old, keep);
            let low = e.zext(v, g.size * 8);
            let low = if high {
                let sh = e.imm(8);
                e.bin(Bin::Shl, low, sh)
            } else {
                low
            };
            e.bin(Bin::Or, old, low)
        }
    };
    e.set_gpr(g.index, nv);
}

/// Reads the low `size` bytes of general register `index` (8-bit: never AH..BH).
pub fn read_gpr_sized<E: Emit>(e: &mut E, index: usize, size: u32) -> E::V {
    read_gref(
        e,
        GprRef {
            index,
            size,
            high8: false,
        },
    )
}

/// Writes the low `size` bytes of general register `index` with the merging rules.
pub fn write_gpr_sized<E: Emit>(e: &mut E, index: usize, size: u32, v: E::V) {
    write_gref(
        e,
        GprRef {
            index,
            size,
            high8: false,
        },
        v,
    )
}

/// The segment register an iced segment register names (DS for anything else).
pub fn seg_of(r: Register) -> SegReg {
    match r {
        Register::ES => SegReg::Es,
        Register::CS => SegReg::Cs,
        Register::SS => SegReg::Ss,
        Register::FS => SegReg::Fs,
        Register::GS => SegReg::Gs,
        _ => SegReg::Ds,
    }
}

/// The address size of the instruction's ModRM memory operand, in bytes.
pub fn addr_size(insn: &Instruction) -> u32 {
    let base = insn.memory_base();
    let index = insn.memory_index();
    let r = if base != Register::None { base } else { index };
    match r {
        Register::None => match insn.memory_displ_size() {
            2 => 2,
            8 => 8,
            _ => 4,
        },
        Register::RIP => 8,
        Register::EIP => 4,
        r => r.size() as u32,
    }
}

/// The effective address (segment offset) of the ModRM memory operand.
pub fn effective_address<E: Emit>(e: &mut E, insn: &Instruction) -> E::V {
    let asz = addr_size(insn);
    let base = insn.memory_base();
    if base == Register::RIP || base == Register::EIP {
        return e.imm(insn.memory_displacement64() & mask(asz));
    }
    let mut acc: Option<E::V> = None;
    if base != Register::None {
        acc = Some(read_reg(e, base));
    }
    let index = insn.memory_index();
    if index != Register::None {
        let mut iv = read_reg(e, index);
        let scale = insn.memory_index_scale();
        if scale > 1 {
            let sh = e.imm(u64::from(scale.trailing_zeros()));
            iv = e.bin(Bin::Shl, iv, sh);
        }
        acc = Some(match acc {
            Some(a) => e.bin(Bin::Add, a, iv),
            None => iv,
        });
    }
    let disp = insn.memory_displacement64();
    let v = match acc {
        None => return e.imm(disp & mask(asz)),
        Some(a) if disp != 0 => {
            let d = e.imm(disp);
            e.bin(Bin::Add, a, d)
        }
        Some(a) => a,
    };
    if asz == 8 {
        v
    } else {
        e.zext(v, asz * 8)
    }
}

/// Turns a segment offset into a linear address: adds the segment base (in 64-bit mode only
/// for FS and GS) and wraps at 4 GiB outside 64-bit mode.
pub fn linear<E: Emit>(e: &mut E, seg: Register, offset: E::V) -> E::V {
    let s = seg_of(seg);
    if e.ctx().mode == CpuMode::Long64 {
        if matches!(s, SegReg::Fs | SegReg::Gs) {
            let b = e.seg_base(s);
            return e.bin(Bin::Add, b, offset);
        }
        return offset;
    }
    if e.ctx().zero_bases && matches!(s, SegReg::Ds | SegReg::Es | SegReg::Ss) {
        return e.zext(offset, 32);
    }
    let b = e.seg_base(s);
    let sum = e.bin(Bin::Add, b, offset);
    e.zext(sum, 32)
}

/// The linear address of the ModRM memory operand.
pub fn mem_linear<E: Emit>(e: &mut E, insn: &Instruction) -> E::V {
    let off = effective_address(e, insn);
    linear(e, insn.memory_segment(), off)
}

/// A memory operand: its linear address, and the segment and offset it was formed from,
/// which the access checks against the segment's limit and type.
#[derive(Clone, Copy, Debug)]
pub struct MemRef<V> {
    /// The linear address.
    pub lin: V,
    /// The segment register (as iced names it).
    pub seg: Register,
    /// The offset within the segment, truncated to the address size.
    pub off: V,
    /// Through SS in 64-bit mode: a non-canonical address is #SS(0), not #GP(0) (SDM Vol. 3
    /// 6.15). The access checks it ([`Emit::load_ss64`]), where the JIT's TLB hit proves
    /// the address canonical and only the slow path looks.
    pub ss64: bool,
}

impl<V: Copy> MemRef<V> {
    /// The memory operand at offset `off` in `seg`.
    pub fn new<E: Emit<V = V>>(e: &mut E, seg: Register, off: V) -> MemRef<V> {
        MemRef {
            lin: linear(e, seg, off),
            seg,
            off,
            ss64: ss64(e, seg),
        }
    }
}

/// The linear address of the ModRM memory operand for an access of `size` bytes, after
/// the segment's limit and type checks.
pub fn mem_access<E: Emit>(e: &mut E, insn: &Instruction, size: u32, access: Access) -> R<E::V> {
    let off = effective_address(e, insn);
    super::seg_check::checked_linear(e, insn.memory_segment(), off, size, access)
}

/// Where an operand lives.
#[derive(Clone, Copy, Debug)]
pub enum Loc<V> {
    /// A general register.
    Reg(Register),
    /// Memory, checked at each access.
    Mem(MemRef<V>),
    /// An immediate value.
    Imm(u64),
}

/// Resolves operand `n` of `insn` (register, ModRM memory or immediate).
#[inline(always)]
pub fn loc<E: Emit>(e: &mut E, insn: &Instruction, n: u32) -> R<Loc<E::V>> {
    Ok(match insn.op_kind(n) {
        OpKind::Register => Loc::Reg(insn.op_register(n)),
        OpKind::Memory => {
            let off = effective_address(e, insn);
            Loc::Mem(MemRef::new(e, insn.memory_segment(), off))
        }
        k if is_immediate(k) => Loc::Imm(insn.immediate(n)),
        _ => return Err(e.raise(Fault::new(Exception::InvalidOpcode))),
    })
}

/// Whether an operand of kind `k` is an immediate (of any width or extension).
pub(crate) fn is_immediate(k: OpKind) -> bool {
    matches!(
        k,
        OpKind::Immediate8
            | OpKind::Immediate8_2nd
            | OpKind::Immediate16
            | OpKind::Immediate32
            | OpKind::Immediate64
            | OpKind::Immediate8to16
            | OpKind::Immediate8to32
            | OpKind::Immediate8to64
            | OpKind::Immediate32to64
    )
}

/// Reads a location as `size` bytes, zero-extended.
#[inline(always)]
pub fn read_loc<E: Emit>(e: &mut E, l: Loc<E::V>, size: u32) -> R<E::V> {
    Ok(match l {
        Loc::Reg(r) => read_reg(e, r),
        Loc::Mem(m) => {
            check(e, m.seg, m.off, size, Access::Read)?;
            if m.ss64 {
                e.load_ss64(m.lin, size)?
            } else {
                e.load(m.lin, size)?
            }
        }
        Loc::Imm(v) => e.imm(v & mask(size)),
    })
}

/// Writes `size` bytes to a location.
#[inline(always)]
pub fn write_loc<E: Emit>(e: &mut E, l: Loc<E::V>, size: u32, v: E::V) -> R<()> {
    match l {
        Loc::Reg(r) => write_reg(e, r, v),
        Loc::Mem(m) => {
            check(e, m.seg, m.off, size, Access::Write)?;
            if m.ss64 {
                e.store_ss64(m.lin, size, v)?
            } else {
                e.store(m.lin, size, v)?
            }
        }
        Loc::Imm(_) => return Err(e.raise(Fault::new(Exception::InvalidOpcode))),
    }
    Ok(())
}

/// The size in bytes of operand `n`.
pub fn op_size(insn: &Instruction, n: u32) -> u32 {
    match insn.op_kind(n) {
        OpKind::Register => insn.op_register(n).size() as u32,
        OpKind::Memory => insn.memory_size().size() as u32,
        OpKind::Immediate8 | OpKind::Immediate8_2nd => 1,
        OpKind::Immediate16 | OpKind::Immediate8to16 => 2,
        OpKind::Immediate32 | OpKind::Immediate8to32 => 4,
        _ => 8,
    }
}

/// Reads operand `n` at `size` bytes.
#[inline(always)]
pub fn read_op<E: Emit>(e: &mut E, insn: &Instruction, n: u32, size: u32) -> R<E::V> {
    let l = loc(e, insn, n)?;
    read_loc(e, l, size)
}

/// Masks a value to `size` bytes.
pub fn trunc<E: Arith>(e: &mut E, v: E::V, size: u32) -> E::V {
    if size >= 8 {
        v
    } else {
        e.zext(v, size * 8)
    }
}

/// The sign bit of a `size`-byte value, as 0 or 1.
pub fn sign_bit<E: Arith>(e: &mut E, v: E::V, size: u32) -> E::V {
    let sh = e.imm(u64::from(size * 8 - 1));
    let s = e.bin(Bin::Shr, v, sh);
    let one = e.imm(1);
    e.bin(Bin::And, s, one)
}

/// Sign-extends a `size`-byte value to 64 bits.
pub fn sext_size<E: Arith>(e: &mut E, v: E::V, size: u32) -> E::V {
    if size >= 8 {
        v
    } else {
        e.sext(v, size * 8)
    }
}

/// Whether an operand through `seg` is one whose non-canonical address is #SS(0) (64-bit mode,
/// SS): [`MemRef::ss64`].
pub fn ss64<E: Emit>(e: &mut E, seg: Register) -> bool {
    e.ctx().mode == CpuMode::Long64 && seg == Register::SS
}

/// Raises #SS(0) when `a`, the linear address of an operand through SS in 64-bit mode, is not
/// canonical (SDM Vol. 3 6.15: other segments give #GP(0) there, from the memory access).
pub fn ss64_canonical<E: Emit + ?Sized>(e: &mut E, a: E::V) -> R<()> {
    let sh = e.imm(16);
    let up = e.bin(Bin::Shl, a, sh);
    let canon = e.bin(Bin::Sar, up, sh);
    let bad = e.cmp(crate::emit::Cmp::Ne, canon, a);
    e.raise_if(bad, Fault::with_code(Exception::StackFault, 0))
}
