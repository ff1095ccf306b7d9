//! EFLAGS bits and the lazy representation of the arithmetic flags.
//!
//! The six arithmetic flags (CF PF AF ZF SF OF) are not computed when an instruction executes.
//! Instead the last flag-setting operation records its kind, size, operands and result in a
//! [`LazyFlags`]; a flag is computed only when something reads it (QEMU's CC_OP idea,
//! ARCHITECTURE.md decision 3). The evaluation itself is written once, generically, in the
//! translator's `semantics::flags` module, so the interpreter, the JIT and the runtime's
//! `rflags` accessor all share one definition.

/// Carry flag.
pub const CF: u64 = 1 << 0;
/// Bit 1 of EFLAGS reads as 1.
pub const FIXED1: u64 = 1 << 1;
/// Parity flag (even parity of the result's low byte).
pub const PF: u64 = 1 << 2;
/// Auxiliary carry (carry out of bit 3).
pub const AF: u64 = 1 << 4;
/// Zero flag.
pub const ZF: u64 = 1 << 6;
/// Sign flag.
pub const SF: u64 = 1 << 7;
/// Trap flag (single-step).
pub const TF: u64 = 1 << 8;
/// Interrupt enable flag.
pub const IF: u64 = 1 << 9;
/// Direction flag (string instructions count down when set).
pub const DF: u64 = 1 << 10;
/// Overflow flag.
pub const OF: u64 = 1 << 11;
/// I/O privilege level (two bits).
pub const IOPL: u64 = 3 << 12;
/// Nested task.
pub const NT: u64 = 1 << 14;
/// Resume flag.
pub const RF: u64 = 1 << 16;
/// Virtual-8086 mode.
pub const VM: u64 = 1 << 17;
/// Alignment check.
pub const AC: u64 = 1 << 18;
/// Virtual interrupt flag.
pub const VIF: u64 = 1 << 19;
/// Virtual interrupt pending.
pub const VIP: u64 = 1 << 20;
/// CPUID is available when software can toggle this bit.
pub const ID: u64 = 1 << 21;
/// The arithmetic flags, the ones the lazy representation covers.
pub const ARITH: u64 = CF | PF | AF | ZF | SF | OF;

/// The kind of the last flag-setting operation. The operand size is kept beside it (see
/// [`CcOp`]) so that the encoding stays one small integer, cheap to compare in generated code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum CcKind {
    /// `res` holds the arithmetic flags themselves, already computed.
    Eflags = 0,
    /// `res = src1 + src2`.
    Add = 1,
    /// `res = src1 + src2 + carry-in` (the carry is recovered from the operands).
    Adc = 2,
    /// `res = src1 - src2` (also CMP and NEG with `src1 = 0`).
    Sub = 3,
    /// `res = src1 - src2 - borrow-in`.
    Sbb = 4,
    /// AND, OR, XOR, TEST: CF = OF = 0.
    Logic = 5,
    /// `res = src1 + 1`; `src2` holds the preserved CF (INC leaves CF alone).
    Inc = 6,
    /// `res = src1 - 1`; `src2` holds the preserved CF.
    Dec = 7,
    /// `res = src1 << src2` with `src2` in 1..=size*8-1 after masking.
    Shl = 8,
    /// `res = src1 >> src2` (logical).
    Shr = 9,
    /// `res = src1 >> src2` (arithmetic).
    Sar = 10,
    /// Multiplication: `src2` is 1 when the result overflowed its low half (CF = OF = src2).
    Mul = 11,
}

impl CcKind {
    const ALL: [CcKind; 12] = [
        CcKind::Eflags,
        CcKind::Add,
        CcKind::Adc,
        CcKind::Sub,
        CcKind::Sbb,
        CcKind::Logic,
        CcKind::Inc,
        CcKind::Dec,
        CcKind::Shl,
        CcKind::Shr,
        CcKind::Sar,
        CcKind::Mul,
    ];
}

/// A flag-setting operation and its operand size, packed as `kind << 2 | log2(size)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CcOp {
    /// What computed the result.
    pub kind: CcKind,
    /// Operand size in bytes: 1, 2, 4 or 8.
    pub size: u8,
}

impl CcOp {
    /// The already-computed flags (`res` holds them).
    pub const EFLAGS: CcOp = CcOp {
        kind: CcKind::Eflags,
        size: 8,
    };

    /// A new operation record.
    pub fn new(kind: CcKind, size: u8) -> CcOp {
        debug_assert!(matches!(size, 1 | 2 | 4 | 8), "operand size {size}");
        CcOp { kind, size }
    }

    /// The packed form stored in [`LazyFlags::op`]. It fits a byte, which generated code
    /// relies on: it reads and writes only the word's low byte.
    pub fn encode(self) -> u64 {
        const _: () = assert!(CcKind::ALL.len() << 2 <= 256);
        ((self.kind as u64) << 2) | u64::from(self.size.trailing_zeros())
    }

    /// Unpacks [`CcOp::encode`]; an unknown value reads as already-computed flags, so a
    /// corrupted state can never make flag evaluation misbehave.
    pub fn decode(v: u64) -> CcOp {
        let kind = CcKind::ALL
            .get((v >> 2) as usize)
            .copied()
            .unwrap_or(CcKind::Eflags);
        CcOp {
            kind,
            size: 1 << (v & 3),
        }
    }
}

/// The lazily evaluated arithmetic flags, as stored in [`crate::CpuState`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct LazyFlags {
    /// [`CcOp::encode`] of the last flag-setting operation.
    pub op: u64,
    /// First operand, zero-extended from the operation size.
    pub src1: u64,
    /// Second operand (or the kind-specific extra value documented on [`CcKind`]).
    pub src2: u64,
    /// The result, or the flags themselves for [`CcKind::Eflags`].
    pub res: u64,
}

impl LazyFlags {
    /// Flags that are already known: `flags` holds CF..OF at their EFLAGS positions.
    pub fn from_eflags(flags: u64) -> LazyFlags {
        LazyFlags {
            op: CcOp::EFLAGS.encode(),
            src1: 0,
            src2: 0,
            res: flags & ARITH,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ccop_roundtrips_every_kind_and_size() {
        for kind in CcKind::ALL {
            for size in [1u8, 2, 4, 8] {
                let op = CcOp::new(kind, size);
                assert_eq!(CcOp::decode(op.encode()), op);
            }
        }
    }

    #[test]
    fn ccop_decodes_garbage_as_computed_flags() {
        assert_eq!(CcOp::decode(u64::MAX).kind, CcKind::Eflags);
    }
}
