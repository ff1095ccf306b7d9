//! Port I/O (SDM Vol. 1 chapter 19): IN, OUT, INS and OUTS, with and without REP. All are
//! runtime class: the port bus belongs to the machine.
//!
//! Every access first passes the I/O permission check of `runtime::io_perm` (CPL against
//! IOPL in protected mode, the TSS bitmap above IOPL and always in virtual-8086 mode), which
//! raises #GP(0) before anything else happens. The string forms follow the conventions of
//! [`super::string`]: the address size picks (E/R)SI, (E/R)DI and (E/R)CX, DF the direction,
//! INS writes to ES:DI and OUTS reads from DS:SI (or the override); with REP each execution
//! performs one iteration and branches back to the instruction while the count is not zero,
//! so every iteration is an interrupt window and a fault leaves the registers of the
//! completed iterations. INS stores a zero to its destination before reading the port, as
//! QEMU and Bochs do, so that a page fault on the destination strikes before the device sees
//! a read it cannot take back.

use crane86_runtime::{flags as fl, io_perm};
use iced_x86::{Instruction, OpKind, Register};

use super::operands::{mask, read_gpr_sized, read_reg, write_gpr_sized};
use super::seg_check::{checked_linear, Access};
use super::string::string_addr_size;
use crate::emit::{Emit, R};
use crate::interp::Interp;

const RCX: usize = 1;
const RSI: usize = 6;
const RDI: usize = 7;

/// The port of an IN or OUT: an 8-bit immediate or DX.
fn port_of(it: &mut Interp<'_>, insn: &Instruction, n: u32) -> u16 {
    match insn.op_kind(n) {
        OpKind::Immediate8 => insn.immediate8() as u16,
        _ => read_reg(it, Register::DX) as u16,
    }
}

/// #GP(0) unless `size` bytes at `port` may be accessed (see `runtime::io_perm`).
fn permit(it: &mut Interp<'_>, port: u16, size: u32) -> R<()> {
    match io_perm::check(it.cpu, it.mem, port, size) {
        Ok(()) => Ok(()),
        Err(f) => Err(it.raise(f)),
    }
}

fn read_port(it: &mut Interp<'_>, port: u16, size: u32) -> u64 {
    let v = match it.io.as_deref_mut() {
        Some(io) => io.port_read(port, size as u8),
        None => u32::MAX,
    };
    u64::from(v) & mask(size)
}

fn write_port(it: &mut Interp<'_>, port: u16, size: u32, v: u64) {
    if let Some(io) = it.io.as_deref_mut() {
        io.port_write(port, size as u8, v as u32);
    }
}

/// IN AL/AX/EAX, imm8/DX.
pub fn port_in(it: &mut Interp<'_>, insn: &Instruction) -> R<()> {
    let size = insn.op_register(0).size() as u32;
    let port = port_of(it, insn, 1);
    permit(it, port, size)?;
    let v = read_port(it, port, size);
    write_gpr_sized(it, 0, size, v);
    Ok(())
}

/// OUT imm8/DX, AL/AX/EAX.
pub fn port_out(it: &mut Interp<'_>, insn: &Instruction) -> R<()> {
    let size = insn.op_register(1).size() as u32;
    let port = port_of(it, insn, 0);
    permit(it, port, size)?;
    let v = read_gpr_sized(it, 0, size);
    write_port(it, port, size, v);
    Ok(())
}

/// One (REP: one iteration of) INSB/INSW/INSD (`input`) or OUTSB/OUTSW/OUTSD.
pub fn string(it: &mut Interp<'_>, insn: &Instruction, input: bool) -> R<()> {
    let asz = string_addr_size(insn);
    let size = insn.memory_size().size() as u32;
    let port = it.cpu.gpr[2] as u16;
    permit(it, port, size)?;
    let rep = insn.has_rep_prefix() || insn.has_repne_prefix();
    let count = read_gpr_sized(it, RCX, asz);
    if rep && count == 0 {
        it.next = Some(insn.next_ip());
        return Ok(());
    }
    let delta = if it.cpu.rflags & fl::DF != 0 {
        u64::from(size).wrapping_neg()
    } else {
        u64::from(size)
    };
    if input {
        let di = read_gpr_sized(it, RDI, asz);
        let dst = checked_linear(it, Register::ES, di, size, Access::Write)?;
        it.store(dst, size, 0)?;
        let v = read_port(it, port, size);
        it.store(dst, size, v)?;
        write_gpr_sized(it, RDI, asz, di.wrapping_add(delta) & mask(asz));
    } else {
        let si = read_gpr_sized(it, RSI, asz);
        let src = checked_linear(it, insn.memory_segment(), si, size, Access::Read)?;
        let v = it.load(src, size)?;
        write_port(it, port, size, v);
        write_gpr_sized(it, RSI, asz, si.wrapping_add(delta) & mask(asz));
    }
    if rep {
        let left = count.wrapping_sub(1) & mask(asz);
        write_gpr_sized(it, RCX, asz, left);
        let target = if left != 0 { insn.ip() } else { insn.next_ip() };
        it.next = Some(target);
    }
    Ok(())
}
