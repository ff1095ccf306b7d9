//! Architectural exceptions, as the guest sees them.

/// An x86 exception vector (SDM Vol. 3, 6.3.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Exception {
    /// #DE: divide error (DIV/IDIV by zero or quotient overflow).
    DivideError = 0,
    /// #DB: debug exception.
    Debug = 1,
    /// #BP: breakpoint (INT3).
    Breakpoint = 3,
    /// #OF: overflow (INTO).
    Overflow = 4,
    /// #BR: BOUND range exceeded.
    BoundRange = 5,
    /// #UD: invalid or not yet implemented opcode.
    InvalidOpcode = 6,
    /// #NM: device not available.
    DeviceNotAvailable = 7,
    /// #DF: double fault.
    DoubleFault = 8,
    /// #TS: invalid TSS.
    InvalidTss = 10,
    /// #NP: segment not present.
    SegmentNotPresent = 11,
    /// #SS: stack-segment fault.
    StackFault = 12,
    /// #GP: general protection.
    GeneralProtection = 13,
    /// #PF: page fault.
    PageFault = 14,
    /// #MF: x87 floating-point error.
    FpuError = 16,
    /// #AC: alignment check.
    AlignmentCheck = 17,
    /// #XM: SIMD floating-point exception.
    SimdError = 19,
}

impl Exception {
    /// The exception's mnemonic as the SDM writes it (`#UD`, `#GP`, ...).
    pub fn mnemonic(self) -> &'static str {
        match self {
            Exception::DivideError => "#DE",
            Exception::Debug => "#DB",
            Exception::Breakpoint => "#BP",
            Exception::Overflow => "#OF",
            Exception::BoundRange => "#BR",
            Exception::InvalidOpcode => "#UD",
            Exception::DeviceNotAvailable => "#NM",
            Exception::DoubleFault => "#DF",
            Exception::InvalidTss => "#TS",
            Exception::SegmentNotPresent => "#NP",
            Exception::StackFault => "#SS",
            Exception::GeneralProtection => "#GP",
            Exception::PageFault => "#PF",
            Exception::FpuError => "#MF",
            Exception::AlignmentCheck => "#AC",
            Exception::SimdError => "#XM",
        }
    }

    /// Converts a vector number back, for vectors that are exceptions.
    pub fn from_vector(v: u8) -> Option<Exception> {
        use Exception::*;
        Some(match v {
            0 => DivideError,
            1 => Debug,
            3 => Breakpoint,
            4 => Overflow,
            5 => BoundRange,
            6 => InvalidOpcode,
            7 => DeviceNotAvailable,
            8 => DoubleFault,
            10 => InvalidTss,
            11 => SegmentNotPresent,
            12 => StackFault,
            13 => GeneralProtection,
            14 => PageFault,
            16 => FpuError,
            17 => AlignmentCheck,
            19 => SimdError,
            _ => return None,
        })
    }
}

/// A raised exception with its error code, as recorded for delivery.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fault {
    /// Which exception.
    pub exception: Exception,
    /// The error code pushed by exceptions that have one (#GP, #PF, ...), else 0.
    pub error_code: u32,
}

impl Fault {
    /// A fault without an error code.
    pub fn new(exception: Exception) -> Fault {
        Fault {
            exception,
            error_code: 0,
        }
    }
}

impl Fault {
    /// A fault with an error code.
    pub fn with_code(exception: Exception, error_code: u32) -> Fault {
        Fault {
            exception,
            error_code,
        }
    }
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.exception.mnemonic())?;
        if self.error_code != 0 {
            write!(f, "({:#x})", self.error_code)?;
        }
        Ok(())
    }
}
