//! FLDENV, FNSTENV/FSTENV, FNSAVE/FSAVE and FRSTOR: the x87 environment and register images
//! in their 16-bit and 32-bit, real-mode and protected-mode formats. They run alone in the
//! runtime with the FPU state-save group (see [`super::fpu_state`]); the formats themselves
//! are `crane86_fpu::x87`'s.

use crane86_fpu::x87;
use crane86_runtime::state::{CR0_EM, CR0_PE, CR0_TS};
use crane86_runtime::{flags as fl, Exception, Fault};
use iced_x86::{Code, Instruction, Mnemonic};

use super::fpu_state::{image_at, read_image, write_image};
use crate::emit::{Emit, Stop, R};
use crate::interp::Interp;

/// Executes one of the four (or its waiting form).
pub fn execute(it: &mut Interp<'_>, insn: &Instruction) -> R<()> {
    if it.cpu.cr0 & (CR0_EM | CR0_TS) != 0 {
        return Err(it.raise(Fault::new(Exception::DeviceNotAvailable)));
    }
    let code = insn.code();
    if matches!(insn.mnemonic(), Mnemonic::Fstenv | Mnemonic::Fsave) {
        // The FWAIT of the waiting forms: a pending unmasked exception is reported first.
        let status = crane86_runtime::fpu::x87(it.cpu, Code::Wait as u64, 0, 0, insn.ip());
        if status == crane86_runtime::fpu::STATUS_FAULT {
            return Err(Stop);
        }
    }
    let op32 = matches!(
        code,
        Code::Fldenv_m28byte
            | Code::Fnstenv_m28byte
            | Code::Fstenv_m28byte
            | Code::Frstor_m108byte
            | Code::Fnsave_m108byte
            | Code::Fsave_m108byte
    );
    // Virtual-8086 mode uses the real-mode layouts.
    let protected = it.cpu.cr0 & CR0_PE != 0 && it.cpu.rflags & fl::VM == 0;
    let env_len = if op32 { 28 } else { 14 };
    let save_len = env_len + 80;
    match insn.mnemonic() {
        Mnemonic::Fnstenv | Mnemonic::Fstenv => {
            let a = image_at(it, insn, env_len, 1, true)?;
            let bytes = x87::store_env(&it.cpu.fpu.x87, op32, protected);
            write_image(it, a, &bytes)?;
            x87::after_fstenv(&mut it.cpu.fpu.x87);
        }
        Mnemonic::Fldenv => {
            let a = image_at(it, insn, env_len, 1, false)?;
            let mut bytes = vec![0u8; env_len];
            read_image(it, a, &mut bytes)?;
            x87::load_env(&mut it.cpu.fpu.x87, &bytes, op32, protected);
        }
        Mnemonic::Fnsave | Mnemonic::Fsave => {
            let a = image_at(it, insn, save_len, 1, true)?;
            let bytes = x87::fsave(&it.cpu.fpu.x87, op32, protected);
            write_image(it, a, &bytes)?;
            x87::finit(&mut it.cpu.fpu.x87);
        }
        Mnemonic::Frstor => {
            let a = image_at(it, insn, save_len, 1, false)?;
            let mut bytes = vec![0u8; save_len];
            read_image(it, a, &mut bytes)?;
            x87::frstor(&mut it.cpu.fpu.x87, &bytes, op32, protected);
        }
        _ => return Err(it.raise(Fault::new(Exception::InvalidOpcode))),
    }
    Ok(())
}
