//! The x87 FPU: 80-bit extended precision on SoftFloat, the register stack with its tags,
//! the status and control words, and the exception rules of SDM Vol. 1 chapter 8.
//!
//! Contract with the translator:
//! - operands come in iced order through [`Operands`]: `Loc::St(i)` for ST(i), `Loc::Mem`
//!   for memory (a source's bytes in `io[IO_DATA0]`, plus the low 16 bits of
//!   `io[IO_DATA1]` for 80-bit and BCD operands), `Loc::Gpr` for FNSTSW AX;
//! - a memory destination (FST, FIST, FBSTP, FNSTSW/FNSTCW m16) returns
//!   [`Outcome::Store`] with the bytes in `io` and the new state in [`Fpu::pending`]; the
//!   translator stores, then calls [`commit`], so a faulting store leaves the FPU as it
//!   was. When an unmasked exception forbids the store the state is updated directly and
//!   the result is [`Outcome::Done`];
//! - FNSTSW AX leaves the status word in `io[IO_DATA0]`; FCOMI and friends leave ZF/PF/CF
//!   in `io[IO_FLAGS]`; FCMOVcc reads EFLAGS from `io[IO_FLAGS]`;
//! - FNSTENV/FLDENV/FNSAVE/FRSTOR are not executed here: the translator uses
//!   [`store_env`], [`load_env`], [`fsave`], [`frstor`], [`finit`] and [`after_fstenv`].

use iced_x86::Code;

use crate::operands::{Loc, Operands};
use crate::state::{Fpu, IO_DATA0, IO_DATA1, IO_FLAGS};

mod arith;
mod compare;
mod dispatch;
mod env;
mod misc;
mod stack;
mod trans;
mod transfer;
mod value;

pub use env::{abridged_tag, after_fstenv, finit, frstor, fsave, full_tag, load_env, store_env};

use dispatch::{kind, run, Kind};

/// Why an x87 instruction did not complete.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum X87Fault {
    /// An unmasked x87 exception was pending (FSW.ES) when a waiting instruction started:
    /// #MF when CR0.NE is set, else the legacy FERR# interrupt (the runtime decides). The
    /// instruction did not execute.
    Mf,
    /// #UD: an encoding this unit does not implement.
    Ud,
}

/// What the translator does after a successful [`execute`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The instruction is complete (nothing to store, or an unmasked exception suppressed
    /// the store).
    Done = 0,
    /// Store `io[IO_DATA0..]` (the memory operand's size), then call [`commit`]: the new x87
    /// state waits in [`Fpu::pending`] so that a faulting store leaves the FPU unchanged.
    Store = 1,
}

/// Where the instruction is, for FIP/FDP/FOP.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Site {
    /// The instruction's offset (RIP).
    pub ip: u64,
    /// The memory operand's offset (effective address), 0 without one.
    pub data: u64,
}

/// True when this unit implements `code`: every x87 instruction but the environment and
/// state saves/loads (which the translator runs with this module's functions), plus WAIT.
pub fn claims(code: Code) -> bool {
    kind(code).is_some()
}

/// Executes one x87 instruction (or WAIT). See the module documentation for the contract.
pub fn execute(fpu: &mut Fpu, code: Code, ops: Operands, site: Site) -> Result<Outcome, X87Fault> {
    let Some(k) = kind(code) else {
        return Err(X87Fault::Ud);
    };
    if k.waits() && fpu.x87.fsw & stack::ES != 0 {
        return Err(X87Fault::Mf);
    }
    let mut x = fpu.x87;
    if !k.is_control() {
        x.fop = ops.fop();
        x.fip = site.ip;
        x.fcs = 0;
        if (0..3).any(|i| ops.loc(i) == Loc::Mem) {
            x.fdp = site.data;
            x.fds = 0;
        }
    }
    let mut io = Io {
        data: [fpu.io[IO_DATA0], fpu.io[IO_DATA1]],
        flags: fpu.io[IO_FLAGS],
    };
    let out = run(&mut x, &mut io, k, code, ops);
    fpu.io[IO_DATA0] = io.data[0];
    fpu.io[IO_DATA1] = io.data[1];
    fpu.io[IO_FLAGS] = io.flags;
    match out {
        Outcome::Done => fpu.x87 = x,
        Outcome::Store => fpu.pending = x,
    }
    Ok(out)
}

/// Makes a store's prepared x87 state architectural (see [`Outcome::Store`]).
pub fn commit(fpu: &mut Fpu) {
    fpu.x87 = fpu.pending;
}

/// The operand exchange slots an instruction reads and writes.
pub(crate) struct Io {
    /// `io[IO_DATA0]`, `io[IO_DATA1]`.
    pub data: [u64; 2],
    /// `io[IO_FLAGS]`.
    pub flags: u64,
}

impl Kind {
    /// Control instructions leave FIP/FDP/FOP alone (SDM Vol. 1 8.1.8).
    fn is_control(self) -> bool {
        matches!(
            self,
            Kind::Init { .. }
                | Kind::Clex { .. }
                | Kind::Ldcw
                | Kind::Stcw { .. }
                | Kind::StswMem { .. }
                | Kind::StswAx { .. }
                | Kind::Wait
                | Kind::Legacy { .. }
        )
    }

    /// Waiting instructions first check for a pending unmasked exception.
    fn waits(self) -> bool {
        match self {
            Kind::Init { wait }
            | Kind::Clex { wait }
            | Kind::Stcw { wait }
            | Kind::StswMem { wait }
            | Kind::StswAx { wait }
            | Kind::Legacy { wait } => wait,
            Kind::Ldcw => false,
            _ => true,
        }
    }
}

#[cfg(test)]
mod tests;
