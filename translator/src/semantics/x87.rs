//! x87 instructions: availability, operand traffic and the helper calls.
//!
//! The x87 itself (80-bit soft float, the register stack, the status and control words)
//! lives in `crane86_fpu::x87` and runs through the [`FpuHelper::X87`] helper in both tiers.
//! This module loads a memory source into the unit's exchange area before the call and, for
//! stores, writes memory between the helper's prepare step and [`FpuHelper::X87Commit`], so a
//! faulting store leaves the FPU as it was. The state-save instructions with large memory
//! images (FLDENV, FNSTENV, FNSAVE, FRSTOR) run alone in the runtime (see `fpu_state`).

use crane86_fpu::{Operands, IO_DATA0, IO_FLAGS};
use crane86_runtime::fpu::STATUS_DONE;
use crane86_runtime::key::{FPU_EM, FPU_MP, FPU_TS};
use crane86_runtime::{Exception, Fault};
use iced_x86::{Code, Instruction, Mnemonic, OpKind, Register};

use super::flags::{eflags, set_eflags};
use super::operands::{effective_address, write_reg};
use super::seg_check::{checked_linear, Access};
use super::simd::{load_io, store_io};
use crate::emit::{Bin, Cmp, Emit, FpuHelper, R};

/// The instruction a combined FWAIT form (`9B xx`, which iced decodes as one instruction)
/// performs after its wait.
pub fn without_wait(code: Code) -> Option<Code> {
    use Code as C;
    Some(match code {
        C::Fstsw_AX => C::Fnstsw_AX,
        C::Fstsw_m2byte => C::Fnstsw_m2byte,
        C::Fstcw_m2byte => C::Fnstcw_m2byte,
        C::Fclex => C::Fnclex,
        C::Finit => C::Fninit,
        C::Feni => C::Fneni,
        C::Fdisi => C::Fndisi,
        C::Fsetpm => C::Fnsetpm,
        C::Fstenv_m14byte => C::Fnstenv_m14byte,
        C::Fstenv_m28byte => C::Fnstenv_m28byte,
        C::Fsave_m94byte => C::Fnsave_m94byte,
        C::Fsave_m108byte => C::Fnsave_m108byte,
        _ => return None,
    })
}

/// Raises #NM as CR0 says (SDM Vol. 3 table 2-2): x87 instructions under CR0.EM or CR0.TS,
/// WAIT only under CR0.TS with CR0.MP.
pub(super) fn check_available<E: Emit>(e: &mut E, code: Code) -> R<()> {
    let f = e.ctx().fpu;
    let trap = if code == Code::Wait {
        f & FPU_TS != 0 && f & FPU_MP != 0
    } else {
        f & (FPU_EM | FPU_TS) != 0
    };
    if trap {
        return Err(e.raise(Fault::new(Exception::DeviceNotAvailable)));
    }
    Ok(())
}

fn is_store(code: Code) -> bool {
    matches!(
        code.mnemonic(),
        Mnemonic::Fst
            | Mnemonic::Fstp
            | Mnemonic::Fist
            | Mnemonic::Fistp
            | Mnemonic::Fisttp
            | Mnemonic::Fbstp
            | Mnemonic::Fnstsw
            | Mnemonic::Fnstcw
    )
}

fn call<E: Emit>(e: &mut E, code: Code, ops: u64, data: E::V, ip: u64) -> R<E::V> {
    let c = e.imm(code as u64);
    let o = e.imm(ops);
    let ip = e.imm(ip);
    e.fpu_call(FpuHelper::X87, [c, o, data, ip])
}

/// Executes or translates one x87 instruction or WAIT.
pub fn execute<E: Emit>(e: &mut E, insn: &Instruction) -> R<()> {
    check_available(e, insn.code())?;
    let ops = Operands::of(insn).0;
    let zero = e.imm(0);
    let code = match without_wait(insn.code()) {
        Some(nowait) => {
            call(e, Code::Wait, 0, zero, insn.ip())?;
            nowait
        }
        None => insn.code(),
    };
    let has_mem = (0..insn.op_count()).any(|i| insn.op_kind(i) == OpKind::Memory);
    let size = insn.memory_size().size() as u32;
    let store = has_mem && is_store(code);
    let (offset, addr) = if has_mem {
        let off = effective_address(e, insn);
        let access = if store { Access::Write } else { Access::Read };
        let lin = checked_linear(e, insn.memory_segment(), off, size.max(1), access)?;
        (off, Some(lin))
    } else {
        (zero, None)
    };
    if let (Some(a), false) = (addr, store) {
        load_io(e, a, size)?;
    }
    if matches!(
        code.mnemonic(),
        Mnemonic::Fcmovb
            | Mnemonic::Fcmove
            | Mnemonic::Fcmovbe
            | Mnemonic::Fcmovu
            | Mnemonic::Fcmovnb
            | Mnemonic::Fcmovne
            | Mnemonic::Fcmovnbe
            | Mnemonic::Fcmovnu
    ) {
        let f = eflags(e);
        e.set_fpu_io(IO_FLAGS, f);
    }
    let status = call(e, code, ops, offset, insn.ip())?;
    if let (Some(a), true) = (addr, store) {
        // An unmasked exception that suppresses the store completes the instruction here.
        let done = e.imm(STATUS_DONE);
        let skip = e.cmp(Cmp::Eq, status, done);
        e.exit_if(skip, insn.next_ip())?;
        store_io(e, a, size)?;
        let z = e.imm(0);
        e.fpu_call(FpuHelper::X87Commit, [z, z, z, z])?;
    }
    if code == Code::Fnstsw_AX {
        let v = e.fpu_io(IO_DATA0);
        write_reg(e, Register::AX, v);
    }
    if matches!(
        code.mnemonic(),
        Mnemonic::Fcomi | Mnemonic::Fcomip | Mnemonic::Fucomi | Mnemonic::Fucomip
    ) {
        let f = e.fpu_io(IO_FLAGS);
        let m = e.imm(crane86_runtime::flags::ARITH);
        let f = e.bin(Bin::And, f, m);
        set_eflags(e, f);
    }
    Ok(())
}
