//! MMX and SSE..SSE4.2: dispatch of one instruction to its semantics.
//!
//! Contract with the translator (see [`crate::operands`]):
//! - before the call, a memory or general-register *source* operand is in `io[IO_DATA0..]`
//!   (as many bytes as the operand has, zero-extended to the slot), PCMPESTRx's RAX and RDX
//!   in `io[IO_RAX]`/`io[IO_RDX]`;
//! - XMM and MMX destinations are written here; a memory or general-register *destination*
//!   is left in `io[IO_DATA0..]` for the translator to store; instructions that set EFLAGS
//!   leave CF/PF/AF/ZF/SF/OF in `io[IO_FLAGS]` (the translator writes exactly the flags the
//!   instruction defines).
//! - On `Err`, no register is written and nothing is to be stored. MXCSR's sticky flags
//!   are already updated for [`SimdFault::Xm`], as hardware does before delivering #XM.
//!
//! Checks that depend only on CR0/CR4 (#UD for CR0.EM or !CR4.OSFXSR, #NM for CR0.TS) and
//! alignment are the translator's; they come first, before any memory access.

use iced_x86::Code;

use crate::operands::Operands;
use crate::state::Fpu;

pub mod float;
pub mod int;
pub mod sse4;

/// Why an MMX/SSE instruction did not complete.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SimdFault {
    /// An unmasked SIMD floating-point exception: #XM when CR4.OSXMMEXCPT is set, else #UD.
    Xm,
    /// #GP(0): LDMXCSR/FXRSTOR with reserved MXCSR bits set.
    Gp,
    /// #UD: an encoding this unit does not implement.
    Ud,
    /// #MF: an MMX instruction found an unmasked x87 exception pending.
    Mf,
}

/// True when this unit implements `code` (the translator's opcode table asks).
pub fn claims(code: Code) -> bool {
    int::claims(code) || float::claims(code) || sse4::claims(code) || control_claims(code)
}

/// Executes one MMX/SSE instruction. See the module documentation for the contract.
pub fn execute_simd(fpu: &mut Fpu, code: Code, ops: Operands) -> Result<(), SimdFault> {
    // Straight to the unit that claims the code: asking each unit in turn cost a string
    // compare (PCMPISTRI, the last unit's) seven failed dispatches, about as much as the
    // compare itself in busybox sh's loops.
    let r = match unit_of(code) {
        Unit::Control => control(fpu, code, ops),
        Unit::Int => int::execute(fpu, code, ops),
        Unit::Float => float::execute(fpu, code, ops),
        Unit::Sse4 => sse4::execute(fpu, code, ops),
        Unit::None => None,
    };
    r.unwrap_or(Err(SimdFault::Ud))
}

/// The unit that implements an instruction, in the order the units are asked when several
/// claim one (none does today).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Unit {
    Control,
    Int,
    Float,
    Sse4,
    None,
}

/// [`Unit`] of `code`, from a table of every code built on first use from the units'
/// `claims`.
fn unit_of(code: Code) -> Unit {
    static TABLE: std::sync::OnceLock<Box<[Unit]>> = std::sync::OnceLock::new();
    let table = TABLE.get_or_init(|| {
        Code::values()
            .map(|c| {
                if control_claims(c) {
                    Unit::Control
                } else if int::claims(c) {
                    Unit::Int
                } else if float::claims(c) {
                    Unit::Float
                } else if sse4::claims(c) {
                    Unit::Sse4
                } else {
                    Unit::None
                }
            })
            .collect()
    });
    table.get(code as usize).copied().unwrap_or(Unit::None)
}

fn control_claims(code: Code) -> bool {
    matches!(
        code,
        Code::Ldmxcsr_m32
            | Code::Stmxcsr_m32
            | Code::Emms
            | Code::Maskmovq_rDI_mm_mm
            | Code::Maskmovdqu_rDI_xmm_xmm
    )
}

/// MASKMOVQ/MASKMOVDQU: the bytes of the first register whose mask byte (second register)
/// has bit 7 set replace those of the memory at DS:rDI. The translator loads the 8 or 16
/// bytes there into `io`, this merges, and the translator stores them back (byte-exact for
/// RAM; an MMIO target would see a read, which hardware does not do).
fn maskmov(fpu: &mut Fpu, ops: Operands) -> Result<(), SimdFault> {
    use crate::operands::Loc;
    let (data, mask, width, mmx) = match (ops.loc(0), ops.loc(1)) {
        (Loc::Mm(a), Loc::Mm(b)) => (
            u128::from(fpu.mm(usize::from(a))),
            u128::from(fpu.mm(usize::from(b))),
            8,
            true,
        ),
        (Loc::Xmm(a), Loc::Xmm(b)) => (
            fpu.xmm128(usize::from(a)),
            fpu.xmm128(usize::from(b)),
            16,
            false,
        ),
        _ => return Err(SimdFault::Ud),
    };
    if mmx && fpu.x87.fsw & 0x80 != 0 {
        return Err(SimdFault::Mf);
    }
    let bytes = (0..width).fold(0u128, |m, i| {
        if (mask >> (8 * i + 7)) & 1 != 0 {
            m | 0xff << (8 * i)
        } else {
            m
        }
    });
    let merged = (fpu.io128() & !bytes) | (data & bytes);
    if mmx {
        fpu.mmx_enter();
    }
    fpu.set_io128(merged);
    Ok(())
}

/// LDMXCSR, STMXCSR, EMMS, MASKMOVQ and MASKMOVDQU.
fn control(fpu: &mut Fpu, code: Code, ops: Operands) -> Option<Result<(), SimdFault>> {
    Some(match code {
        Code::Ldmxcsr_m32 => {
            let v = fpu.io[crate::IO_DATA0] as u32;
            if v & !crate::MXCSR_MASK != 0 {
                Err(SimdFault::Gp)
            } else {
                fpu.mxcsr = v;
                Ok(())
            }
        }
        Code::Stmxcsr_m32 => {
            fpu.io[crate::IO_DATA0] = u64::from(fpu.mxcsr);
            Ok(())
        }
        Code::Maskmovq_rDI_mm_mm | Code::Maskmovdqu_rDI_xmm_xmm => maskmov(fpu, ops),
        Code::Emms => {
            // All tags empty; TOP is 0 as after any MMX instruction (what AMD hosts show).
            fpu.x87.ftw = 0xffff;
            fpu.x87.fsw &= !(7 << 11);
            Ok(())
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operands::Loc;

    /// The table sends every code to the unit that implements it: each claimed code's unit
    /// runs it (an operand combination it cannot have may still be #UD, but the code is
    /// the unit's), and no other code reaches a unit.
    #[test]
    fn every_claimed_code_reaches_the_unit_that_runs_it() {
        let ops = [
            Operands::new([Loc::Xmm(1), Loc::Xmm(2), Loc::None], 0, 0),
            Operands::new([Loc::Mm(1), Loc::Mm(2), Loc::None], 0, 0),
            Operands::new([Loc::Xmm(1), Loc::Mem, Loc::None], 0, 0),
            Operands::new([Loc::Gpr, Loc::Xmm(2), Loc::None], 0, 0),
        ];
        let mut claimed = 0;
        for code in Code::values() {
            let unit = unit_of(code);
            assert_eq!(unit != Unit::None, claims(code), "{code:?}");
            for &o in &ops {
                let mut f = Fpu::default();
                let ran = match unit {
                    Unit::Control => control(&mut f, code, o),
                    Unit::Int => int::execute(&mut f, code, o),
                    Unit::Float => float::execute(&mut f, code, o),
                    Unit::Sse4 => sse4::execute(&mut f, code, o),
                    Unit::None => continue,
                };
                assert!(
                    ran.is_some(),
                    "{code:?} claimed by {unit:?}, which does not run it"
                );
                claimed += 1;
            }
        }
        assert!(claimed > 4 * 300, "{claimed}");
    }

    #[test]
    fn maskmovdqu_merges_the_selected_bytes() {
        let mut f = Fpu::default();
        f.set_xmm128(1, 0x1111_2222_3333_4444_5555_6666_7777_8888);
        // Bytes 0, 2 and 15 selected.
        f.set_xmm128(2, 0x8000_0000_0000_0000_0000_0000_0080_0080);
        f.set_io128(u128::MAX);
        let ops = Operands::new([Loc::Xmm(1), Loc::Xmm(2), Loc::None], 0, 0);
        execute_simd(&mut f, Code::Maskmovdqu_rDI_xmm_xmm, ops).unwrap();
        assert_eq!(f.io128(), 0x11ff_ffff_ffff_ffff_ffff_ffff_ff77_ff88);
    }

    #[test]
    fn maskmovq_is_an_mmx_instruction() {
        let mut f = Fpu::default();
        f.set_mm(0, 0x0102_0304_0506_0708);
        f.set_mm(1, 0x8000_0000_0000_0080);
        f.io[crate::IO_DATA0] = 0;
        f.x87.fsw = 3 << 11;
        let ops = Operands::new([Loc::Mm(0), Loc::Mm(1), Loc::None], 0, 0);
        execute_simd(&mut f, Code::Maskmovq_rDI_mm_mm, ops).unwrap();
        assert_eq!(f.io[crate::IO_DATA0], 0x0100_0000_0000_0008);
        assert_eq!((f.x87.fsw >> 11) & 7, 0, "TOP = 0 after an MMX instruction");
        f.x87.fsw |= 0x80;
        assert_eq!(
            execute_simd(&mut f, Code::Maskmovq_rDI_mm_mm, ops),
            Err(SimdFault::Mf)
        );
    }
}
