//! Moving single elements between XMM registers and general registers or memory: PEXTRB,
//! PEXTRW (the 0F 3A 15 form, which can also store to memory), PEXTRD, PEXTRQ, EXTRACTPS,
//! PINSRB, PINSRD, PINSRQ and INSERTPS.

use iced_x86::Code;

use super::lanes::{from_u32s, ones, u32s};
use super::{xmm_reg, Loc};
use crate::operands::Operands;
use crate::simd::SimdFault;
use crate::state::{Fpu, IO_DATA0};

/// True for the codes [`execute`] implements.
pub fn claims(code: Code) -> bool {
    use Code::*;
    matches!(
        code,
        Pextrb_r32m8_xmm_imm8
            | Pextrb_r64m8_xmm_imm8
            | Pextrw_r32m16_xmm_imm8
            | Pextrw_r64m16_xmm_imm8
            | Pextrd_rm32_xmm_imm8
            | Pextrq_rm64_xmm_imm8
            | Extractps_rm32_xmm_imm8
            | Extractps_r64m32_xmm_imm8
            | Pinsrb_xmm_r32m8_imm8
            | Pinsrb_xmm_r64m8_imm8
            | Pinsrd_xmm_rm32_imm8
            | Pinsrq_xmm_rm64_imm8
            | Insertps_xmm_xmmm32_imm8
    )
}

/// Executes one of the [`claims`] codes.
///
/// Extracts leave the element zero-extended in `io[IO_DATA0]`: that is the full value a
/// general-register destination receives (the upper bits of a 64-bit register are
/// cleared), and its low bytes are what a memory destination stores. Inserts take a
/// general-register or memory element from `io[IO_DATA0]`.
pub fn execute(fpu: &mut Fpu, code: Code, ops: Operands) -> Result<(), SimdFault> {
    use Code::*;
    let imm = u32::from(ops.imm());
    // The element size in bits, for the extract and the general insert forms.
    let width = match code {
        Pextrb_r32m8_xmm_imm8 | Pextrb_r64m8_xmm_imm8 => 8,
        Pinsrb_xmm_r32m8_imm8 | Pinsrb_xmm_r64m8_imm8 => 8,
        Pextrw_r32m16_xmm_imm8 | Pextrw_r64m16_xmm_imm8 => 16,
        Pextrd_rm32_xmm_imm8 | Pinsrd_xmm_rm32_imm8 => 32,
        Extractps_rm32_xmm_imm8 | Extractps_r64m32_xmm_imm8 => 32,
        Pextrq_rm64_xmm_imm8 | Pinsrq_xmm_rm64_imm8 => 64,
        Insertps_xmm_xmmm32_imm8 => return insertps(fpu, ops),
        _ => return Err(SimdFault::Ud),
    };
    // The immediate's unused high bits are ignored: the index wraps within the register.
    let shift = (imm % (128 / width)) * width;
    match ops.loc(0) {
        Loc::Gpr | Loc::Mem => {
            let s = xmm_reg(ops, 1)?;
            fpu.io[IO_DATA0] = ((fpu.xmm128(s) >> shift) & ones(width)) as u64;
        }
        Loc::Xmm(d) => {
            if !matches!(ops.loc(1), Loc::Gpr | Loc::Mem) {
                return Err(SimdFault::Ud);
            }
            let d = usize::from(d);
            let v = u128::from(fpu.io[IO_DATA0]) & ones(width);
            let m = ones(width) << shift;
            fpu.set_xmm128(d, (fpu.xmm128(d) & !m) | v << shift);
        }
        _ => return Err(SimdFault::Ud),
    }
    Ok(())
}

/// INSERTPS: a single from the source (element imm8[7:6] of a register, or the 32-bit
/// memory operand) replaces element imm8[5:4] of the destination, then the elements whose
/// imm8[3:0] bit is set are zeroed.
fn insertps(fpu: &mut Fpu, ops: Operands) -> Result<(), SimdFault> {
    let imm = ops.imm();
    let d = xmm_reg(ops, 0)?;
    let elem = match ops.loc(1) {
        Loc::Xmm(s) => u32s(fpu.xmm128(usize::from(s)))[usize::from(imm >> 6)],
        Loc::Mem => fpu.io[IO_DATA0] as u32,
        _ => return Err(SimdFault::Ud),
    };
    let mut r = u32s(fpu.xmm128(d));
    r[usize::from(imm >> 4 & 3)] = elem;
    for (i, e) in r.iter_mut().enumerate() {
        if imm >> i & 1 != 0 {
            *e = 0;
        }
    }
    fpu.set_xmm128(d, from_u32s(r));
    Ok(())
}
