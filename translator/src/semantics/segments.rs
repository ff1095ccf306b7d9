//! The system segment instructions (SDM Vol. 2): LAR, LSL, VERR, VERW, ARPL, LLDT, LTR,
//! SLDT, STR and SMSW. The descriptor rules live in `runtime::segment`; this is the glue
//! that reads and writes the operands and ZF.
//!
//! All but SMSW are #UD in real-address and virtual-8086 mode, checked before any operand is
//! read (the opcode is invalid there, so an operand fault cannot come first). SLDT, STR and
//! SMSW raise #GP(0) at CPL > 0 when CR4.UMIP is set.

use crane86_runtime::{flags as fl, segment, Exception, Fault};
use iced_x86::{Instruction, Mnemonic, OpKind};

use super::flags::update_flags;
use super::operands::{loc, mask, op_size, read_op, write_loc};
use super::system::Outcome;
use crate::emit::{Arith, Emit, R};
use crate::interp::Interp;

/// True for the mnemonics this module executes.
pub fn handles(m: Mnemonic) -> bool {
    matches!(
        m,
        Mnemonic::Lar
            | Mnemonic::Lsl
            | Mnemonic::Verr
            | Mnemonic::Verw
            | Mnemonic::Arpl
            | Mnemonic::Lldt
            | Mnemonic::Ltr
            | Mnemonic::Sldt
            | Mnemonic::Str
            | Mnemonic::Smsw
    )
}

fn check<T>(it: &mut Interp<'_>, r: Result<T, Fault>) -> R<T> {
    r.map_err(|f| it.raise(f))
}

/// Sets ZF to `set`, keeping the other arithmetic flags.
fn set_zf(it: &mut Interp<'_>, set: bool) {
    let v = it.imm(if set { fl::ZF } else { 0 });
    update_flags(it, fl::ZF, v);
}

/// Executes one of the instructions listed in the module documentation.
pub fn execute(it: &mut Interp<'_>, insn: &Instruction) -> R<Outcome> {
    let m = insn.mnemonic();
    if m != Mnemonic::Smsw && !segment::protected(it.cpu) {
        return Err(it.raise(Fault::new(Exception::InvalidOpcode)));
    }
    match m {
        Mnemonic::Lar | Mnemonic::Lsl => {
            let sel = read_op(it, insn, 1, 2)? as u16;
            let r = if m == Mnemonic::Lar {
                segment::lar(it.cpu, it.mem, sel)
            } else {
                segment::lsl(it.cpu, it.mem, sel)
            };
            let found = check(it, r)?;
            if let Some(v) = found {
                let size = op_size(insn, 0);
                let dst = loc(it, insn, 0)?;
                let v = it.imm(u64::from(v) & mask(size));
                write_loc(it, dst, size, v)?;
            }
            set_zf(it, found.is_some());
        }
        Mnemonic::Verr | Mnemonic::Verw => {
            let sel = read_op(it, insn, 0, 2)? as u16;
            let r = if m == Mnemonic::Verr {
                segment::verr(it.cpu, it.mem, sel)
            } else {
                segment::verw(it.cpu, it.mem, sel)
            };
            let ok = check(it, r)?;
            set_zf(it, ok);
        }
        Mnemonic::Arpl => {
            // ARPL r/m16, r16: raise the destination selector's RPL to the source's.
            let dst = loc(it, insn, 0)?;
            let d = super::operands::read_loc(it, dst, 2)?;
            let s = read_op(it, insn, 1, 2)?;
            let adjust = (d & 3) < (s & 3);
            if adjust {
                let v = it.imm((d & !3) | (s & 3));
                write_loc(it, dst, 2, v)?;
            }
            set_zf(it, adjust);
        }
        Mnemonic::Lldt | Mnemonic::Ltr => {
            let sel = read_op(it, insn, 0, 2)? as u16;
            let r = if m == Mnemonic::Lldt {
                segment::load_ldtr(it.cpu, it.mem, sel)
            } else {
                segment::load_tr(it.cpu, it.mem, sel)
            };
            check(it, r)?;
        }
        _ => {
            // SLDT, STR, SMSW: a register destination takes the operand size (zero-extended;
            // SMSW stores as much of CR0 as fits), a memory destination always 16 bits.
            super::control_regs::umip_check(it)?;
            let v = match m {
                Mnemonic::Sldt => u64::from(it.cpu.ldtr.selector),
                Mnemonic::Str => u64::from(it.cpu.tr.selector),
                _ => it.cpu.cr0,
            };
            let size = if insn.op_kind(0) == OpKind::Memory {
                2
            } else {
                op_size(insn, 0)
            };
            let dst = loc(it, insn, 0)?;
            let v = it.imm(v & mask(size));
            write_loc(it, dst, size, v)?;
        }
    }
    Ok(Outcome::Continue)
}
