//! Runtime-class instructions: the ones that need the machine (port I/O, the CPU model,
//! halting) or change the bits a translation depends on. They run only in the interpreter,
//! alone in their block (see [`crate::rewrite`]), so they can reach the whole machine.

use crane86_runtime::{flags as fl, Exception, Fault};
use iced_x86::{Instruction, Mnemonic, OpKind, Register};

use super::flags::set_eflags;
use super::operands::{mask, read_gpr_sized, read_reg, write_gpr_sized};
use super::stack::{pop_value, set_sp, sp};
use crate::cpu_model;
use crate::emit::{Emit, R};
use crate::interp::Interp;

/// What the run loop does after a runtime-class instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Go on with the next instruction.
    Continue,
    /// The CPU halted (HLT) until an interrupt arrives.
    Halt,
}

/// Executes one runtime-class instruction.
pub fn execute(it: &mut Interp<'_>, insn: &Instruction) -> R<Outcome> {
    match insn.mnemonic() {
        Mnemonic::Cpuid => {
            let leaf = it.cpu.gpr[0] as u32;
            let sub = it.cpu.gpr[1] as u32;
            let r = cpu_model::cpuid(leaf, sub);
            for (i, reg) in [0usize, 3, 1, 2].into_iter().enumerate() {
                it.cpu.gpr[reg] = u64::from(r[i]);
            }
        }
        Mnemonic::Hlt => return Ok(Outcome::Halt),
        Mnemonic::In => port_in(it, insn)?,
        Mnemonic::Out => port_out(it, insn)?,
        Mnemonic::Popf | Mnemonic::Popfd | Mnemonic::Popfq => popf(it, insn)?,
        _ => return Err(it.raise(Fault::new(Exception::InvalidOpcode))),
    }
    Ok(Outcome::Continue)
}

fn port_of(it: &mut Interp<'_>, insn: &Instruction, n: u32) -> u16 {
    match insn.op_kind(n) {
        OpKind::Immediate8 => insn.immediate8() as u16,
        _ => read_reg(it, Register::DX) as u16,
    }
}

/// IN AL/AX/EAX, imm8/DX. (The I/O permission checks arrive with protected-mode
/// privilege levels; flat test guests run at CPL 0.)
fn port_in(it: &mut Interp<'_>, insn: &Instruction) -> R<()> {
    let size = insn.op_register(0).size() as u32;
    let port = port_of(it, insn, 1);
    let v = match it.io.as_deref_mut() {
        Some(io) => io.port_read(port, size as u8),
        None => u32::MAX,
    };
    write_gpr_sized(it, 0, size, u64::from(v) & mask(size));
    Ok(())
}

/// OUT imm8/DX, AL/AX/EAX.
fn port_out(it: &mut Interp<'_>, insn: &Instruction) -> R<()> {
    let size = insn.op_register(1).size() as u32;
    let port = port_of(it, insn, 0);
    let v = read_gpr_sized(it, 0, size) as u32;
    if let Some(io) = it.io.as_deref_mut() {
        io.port_write(port, size as u8, v);
    }
    Ok(())
}

/// POPF/POPFD/POPFQ at CPL 0: every flag software may change, RF cleared, VM/VIF/VIP kept.
/// A 16-bit POPF changes only the low 16 bits.
fn popf(it: &mut Interp<'_>, insn: &Instruction) -> R<()> {
    let size = insn.stack_pointer_increment() as u32;
    let s = sp(it);
    let (v, new) = pop_value(it, s, size)?;
    let writable =
        (fl::ARITH | fl::TF | fl::IF | fl::DF | fl::IOPL | fl::NT | fl::AC | fl::ID) & mask(size);
    let old = crate::interp::rflags(it.cpu);
    let new_flags = ((old & !writable) | (v & writable)) & !fl::RF | fl::FIXED1;
    set_sp(it, new);
    set_eflags(it, new_flags);
    let rest = new_flags & !fl::ARITH;
    it.set_rflags_rest(rest);
    Ok(())
}
