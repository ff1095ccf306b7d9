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
    if let Some(r) = control(fpu, code, ops) {
        return r;
    }
    if let Some(r) = int::execute(fpu, code, ops) {
        return r;
    }
    if let Some(r) = float::execute(fpu, code, ops) {
        return r;
    }
    if let Some(r) = sse4::execute(fpu, code, ops) {
        return r;
    }
    Err(SimdFault::Ud)
}

fn control_claims(code: Code) -> bool {
    matches!(code, Code::Ldmxcsr_m32 | Code::Stmxcsr_m32 | Code::Emms)
}

/// LDMXCSR, STMXCSR and EMMS.
fn control(fpu: &mut Fpu, code: Code, _ops: Operands) -> Option<Result<(), SimdFault>> {
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
        Code::Emms => {
            // All tags empty; TOP is 0 as after any MMX instruction (what AMD hosts show).
            fpu.x87.ftw = 0xffff;
            fpu.x87.fsw &= !(7 << 11);
            Ok(())
        }
        _ => return None,
    })
}
