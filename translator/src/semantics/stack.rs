//! Stack manipulation (SDM Vol. 1, 6.2 and 7.3.1.5): PUSH, POP, PUSHF, PUSHA/POPA, ENTER,
//! LEAVE, and the push/pop primitives CALL and RET share.

use crane86_runtime::flags as fl;
use iced_x86::{Code, Instruction, OpKind, Register};

use super::flags::eflags;
use super::operands::{
    effective_address, linear, loc, read_gpr_sized, read_op, trunc, write_gpr_sized, write_loc,
};
use super::seg_check::{check, checked_linear, Access};
use crate::emit::{Bin, Emit, R};

const RSP: usize = 4;
const RBP: usize = 5;

/// The linear address of stack offset `sp` (SS base added outside 64-bit mode).
pub fn stack_linear<E: Emit>(e: &mut E, sp: E::V) -> E::V {
    linear(e, Register::SS, sp)
}

/// `sp - n`, wrapped to the stack width.
pub fn sp_offset<E: Emit>(e: &mut E, sp: E::V, delta: i64) -> E::V {
    let ssz = e.ctx().stack_size();
    let d = e.imm(delta as u64);
    let v = e.bin(Bin::Add, sp, d);
    trunc(e, v, ssz)
}

/// The current stack pointer at the stack width.
pub fn sp<E: Emit>(e: &mut E) -> E::V {
    let ssz = e.ctx().stack_size();
    read_gpr_sized(e, RSP, ssz)
}

/// Writes the stack pointer at the stack width (a 16-bit stack keeps the upper bits of ESP).
pub fn set_sp<E: Emit>(e: &mut E, v: E::V) {
    let ssz = e.ctx().stack_size();
    write_gpr_sized(e, RSP, ssz, v);
}

/// Stores `v` (`size` bytes) below the stack pointer and returns the new stack pointer; the
/// caller writes it back once nothing else can fault.
pub fn push_value<E: Emit>(e: &mut E, sp_now: E::V, v: E::V, size: u32) -> R<E::V> {
    let new = sp_offset(e, sp_now, -(size as i64));
    let lin = checked_linear(e, Register::SS, new, size, Access::Write)?;
    e.store(lin, size, v)?;
    Ok(new)
}

/// Loads `size` bytes at the stack pointer; returns the value and the new stack pointer.
pub fn pop_value<E: Emit>(e: &mut E, sp_now: E::V, size: u32) -> R<(E::V, E::V)> {
    let lin = checked_linear(e, Register::SS, sp_now, size, Access::Read)?;
    let v = e.load(lin, size)?;
    let new = sp_offset(e, sp_now, size as i64);
    Ok((v, new))
}

/// PUSH r/m/imm. The operand size is what the stack pointer moves by.
pub fn push<E: Emit>(e: &mut E, insn: &Instruction) -> R<()> {
    let size = (-insn.stack_pointer_increment()) as u32;
    let v = read_op(e, insn, 0, size)?;
    let s = sp(e);
    let new = push_value(e, s, v, size)?;
    set_sp(e, new);
    Ok(())
}

/// POP r/m. A memory destination addressed through the stack pointer uses its value after
/// the increment, as the SDM specifies.
pub fn pop<E: Emit>(e: &mut E, insn: &Instruction) -> R<()> {
    let size = insn.stack_pointer_increment() as u32;
    let s = sp(e);
    let (v, new) = pop_value(e, s, size)?;
    if insn.op_kind(0) == OpKind::Memory {
        // Compute the destination with the incremented stack pointer visible.
        let old = e.gpr(RSP);
        set_sp(e, new);
        let ea = effective_address(e, insn);
        e.set_gpr(RSP, old);
        let seg = insn.memory_segment();
        let lin = checked_linear(e, seg, ea, size, Access::Write)?;
        if super::operands::ss64(e, seg) {
            e.store_ss64(lin, size, v)?;
        } else {
            e.store(lin, size, v)?;
        }
        set_sp(e, new);
    } else {
        let dst = loc(e, insn, 0)?;
        set_sp(e, new);
        write_loc(e, dst, size, v)?;
    }
    Ok(())
}

/// The RFLAGS image PUSHF stores: VM and RF read as 0.
pub fn rflags_image<E: Emit>(e: &mut E) -> E::V {
    let rest = e.rflags_rest();
    let keep = e.imm(!(fl::VM | fl::RF | fl::ARITH));
    let rest = e.bin(Bin::And, rest, keep);
    let f = eflags(e);
    e.bin(Bin::Or, rest, f)
}

/// PUSHF/PUSHFD/PUSHFQ.
pub fn pushf<E: Emit>(e: &mut E, insn: &Instruction) -> R<()> {
    let size = (-insn.stack_pointer_increment()) as u32;
    let v = rflags_image(e);
    let v = trunc(e, v, size);
    let s = sp(e);
    let new = push_value(e, s, v, size)?;
    set_sp(e, new);
    Ok(())
}

/// PUSHA/PUSHAD: AX CX DX BX original-SP BP SI DI.
pub fn pusha<E: Emit>(e: &mut E, insn: &Instruction) -> R<()> {
    let size = if insn.code() == Code::Pushaw { 2 } else { 4 };
    let mut s = sp(e);
    // SDM: #SS(0) if the starting or ending stack address is outside the limit, before
    // anything is written (each push checks the start again).
    let last = sp_offset(e, s, -8 * i64::from(size));
    check(e, Register::SS, last, size, Access::Write)?;
    let original = read_gpr_sized(e, RSP, size);
    for r in 0..8 {
        let v = if r == RSP {
            original
        } else {
            read_gpr_sized(e, r, size)
        };
        s = push_value(e, s, v, size)?;
    }
    set_sp(e, s);
    Ok(())
}

/// POPA/POPAD: the saved SP is skipped.
pub fn popa<E: Emit>(e: &mut E, insn: &Instruction) -> R<()> {
    let size = if insn.code() == Code::Popaw { 2 } else { 4 };
    let mut s = sp(e);
    let mut vals = Vec::with_capacity(8);
    for _ in 0..8 {
        let (v, n) = pop_value(e, s, size)?;
        vals.push(v);
        s = n;
    }
    for (i, v) in vals.into_iter().enumerate() {
        let r = 7 - i;
        if r != RSP {
            write_gpr_sized(e, r, size, v);
        }
    }
    set_sp(e, s);
    Ok(())
}

/// ENTER size, level. Every segment check comes first, in the order of the accesses (the
/// BP push, then each frame-pointer read and its push, the frame pointer's push), then the
/// final stack pointer's (SDM: #SS(0) if the new SP is outside the limit), so an ENTER
/// that faults on its limits has written nothing; then the loads and stores in the same
/// order, and the frame and stack pointers change last.
pub fn enter<E: Emit>(e: &mut E, insn: &Instruction) -> R<()> {
    let osz = match insn.code() {
        Code::Enterw_imm16_imm8 => 2,
        Code::Enterd_imm16_imm8 => 4,
        _ => 8,
    };
    let alloc = insn.immediate(0) & 0xffff;
    let level = insn.immediate(1) & 31;
    let ssz = e.ctx().stack_size();
    let step = i64::from(osz);
    let s = sp(e);
    let bp_w = read_gpr_sized(e, RBP, ssz);
    // Offsets: the i-th push stores at SP - i * size, the i-th read loads BP - i * size.
    let pushes = if level > 0 { level as i64 + 1 } else { 1 };
    let mut push_at = Vec::with_capacity(pushes as usize);
    let mut read_at = Vec::with_capacity(level as usize);
    for i in 1..=pushes {
        if i > 1 && i < pushes {
            let p = sp_offset(e, bp_w, -(i - 1) * step);
            check(e, Register::SS, p, osz, Access::Read)?;
            read_at.push(p);
        }
        let w = sp_offset(e, s, -i * step);
        check(e, Register::SS, w, osz, Access::Write)?;
        push_at.push(w);
    }
    let frame = push_at[0];
    let last = push_at[push_at.len() - 1];
    let new_sp = sp_offset(e, last, -(alloc as i64));
    if alloc != 0 {
        check(e, Register::SS, new_sp, osz, Access::Write)?;
    }
    // The accesses in the SDM's order: a frame-pointer read may see an earlier push.
    let rbp = read_gpr_sized(e, RBP, osz);
    let mut reads = read_at.into_iter();
    for (i, at) in push_at.into_iter().enumerate() {
        let v = if i == 0 {
            rbp
        } else if let Some(p) = reads.next() {
            let lin = stack_linear(e, p);
            e.load(lin, osz)?
        } else {
            frame
        };
        let lin = stack_linear(e, at);
        e.store(lin, osz, v)?;
    }
    write_gpr_sized(e, RBP, osz, frame);
    set_sp(e, new_sp);
    Ok(())
}

/// LEAVE: SP = BP, then BP = pop.
pub fn leave<E: Emit>(e: &mut E, insn: &Instruction) -> R<()> {
    let osz = match insn.code() {
        Code::Leavew => 2,
        Code::Leaved => 4,
        _ => 8,
    };
    let ssz = e.ctx().stack_size();
    let bp = read_gpr_sized(e, RBP, ssz);
    let (v, new) = pop_value(e, bp, osz)?;
    set_sp(e, new);
    write_gpr_sized(e, RBP, osz, v);
    Ok(())
}
