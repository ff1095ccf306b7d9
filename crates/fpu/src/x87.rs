//! The x87 FPU: (to be written)

use iced_x86::Code;

use crate::operands::Operands;
use crate::state::Fpu;

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

/// True when this unit implements `code`.
pub fn claims(_code: Code) -> bool {
    false
}

/// Executes one x87 instruction (or WAIT).
pub fn execute(
    _fpu: &mut Fpu,
    _code: Code,
    _ops: Operands,
    _site: Site,
) -> Result<Outcome, X87Fault> {
    Err(X87Fault::Ud)
}

/// Makes a store's prepared x87 state architectural (see [`Outcome::Store`]).
pub fn commit(fpu: &mut Fpu) {
    fpu.x87 = fpu.pending;
}

/// FXSAVE's abridged tag byte: bit i set when physical register i is not empty.
pub fn abridged_tag(ftw: u16) -> u8 {
    (0..8).fold(0u8, |acc, i| {
        if (ftw >> (2 * i)) & 3 != 3 {
            acc | 1 << i
        } else {
            acc
        }
    })
}

/// The full tag word from an abridged tag byte, classifying each non-empty register by
/// its contents (00 valid, 01 zero, 10 special: NaN, infinity, denormal or unsupported).
pub fn full_tag(x87: &crate::state::X87, abridged: u8) -> u16 {
    (0..8).fold(0u16, |acc, i| {
        let tag = if abridged & (1 << i) == 0 {
            3
        } else {
            let r = x87.regs[i];
            let exp = r.sign_exp & 0x7fff;
            if exp == 0x7fff {
                2
            } else if exp == 0 {
                if r.signif == 0 {
                    1
                } else {
                    2
                }
            } else if r.signif >> 63 == 0 {
                2
            } else {
                0
            }
        };
        acc | tag << (2 * i)
    })
}
