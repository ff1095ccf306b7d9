//! Which RFLAGS bits are architecturally undefined after an instruction, so that the checker
//! masks exactly those and compares everything else.
//!
//! The static part comes from iced-x86 (`Instruction::rflags_undefined`, the SDM's
//! "undefined" entries per form). The table below adds what depends on the runtime count:
//!
//! | instructions | condition (masked count c, width w) | undefined |
//! |---|---|---|
//! | SHL SAL SHR SAR ROL ROR RCL RCR | c = 0 | nothing (flags unchanged) |
//! | same | c = 1 | the static set minus OF |
//! | same | c > 1 | the static set plus OF |
//! | SHL SAL SHR | c >= w (8/16-bit forms) | also CF |
//! | SHLD SHRD | c = 0 / c = 1 / c > 1 | as for shifts; 16-bit counts above 16 are never generated (result undefined) |
//!
//! Other data-dependent cases are handled by the generator instead: BSWAP r16 (result
//! undefined) is skipped, DIV/IDIV never overflow natively.

use crane86_runtime::flags as fl;
use iced_x86::{Instruction, Mnemonic, OpKind, Register, RflagsBits};

use crate::layout::Regs;

/// iced's RflagsBits to EFLAGS bits.
pub fn eflags_of(bits: u32) -> u64 {
    let map = [
        (RflagsBits::OF, fl::OF),
        (RflagsBits::SF, fl::SF),
        (RflagsBits::ZF, fl::ZF),
        (RflagsBits::AF, fl::AF),
        (RflagsBits::CF, fl::CF),
        (RflagsBits::PF, fl::PF),
        (RflagsBits::DF, fl::DF),
    ];
    map.iter()
        .filter(|(b, _)| bits & b != 0)
        .fold(0, |acc, (_, f)| acc | f)
}

/// The count operand of a shift, rotate or double shift, before masking.
fn count(insn: &Instruction, input: &Regs) -> u64 {
    let n = insn.op_count() - 1;
    match insn.op_kind(n) {
        OpKind::Register if insn.op_register(n) == Register::CL => input.gpr[1] & 0xff,
        OpKind::Immediate8 => u64::from(insn.immediate8()),
        _ => 1,
    }
}

/// Operand width in bits of the destination.
fn width(insn: &Instruction) -> u64 {
    let bytes = match insn.op0_kind() {
        OpKind::Register => insn.op0_register().size(),
        _ => insn.memory_size().size(),
    };
    bytes as u64 * 8
}

/// The EFLAGS bits not to compare after `insn` ran on `input`.
pub fn mask(insn: &Instruction, input: &Regs) -> u64 {
    use Mnemonic as M;
    let stat = eflags_of(insn.rflags_undefined());
    match insn.mnemonic() {
        M::Shl
        | M::Sal
        | M::Shr
        | M::Sar
        | M::Rol
        | M::Ror
        | M::Rcl
        | M::Rcr
        | M::Shld
        | M::Shrd => {
            let w = width(insn);
            let c = count(insn, input) & if w == 64 { 0x3f } else { 0x1f };
            let mut u = match c {
                0 => 0,
                1 => stat & !fl::OF,
                _ => stat | fl::OF,
            };
            if matches!(insn.mnemonic(), M::Shl | M::Sal | M::Shr) && c >= w {
                u |= fl::CF;
            }
            u
        }
        _ => stat,
    }
}
