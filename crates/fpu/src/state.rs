//! The architectural state of the x87 FPU and the SSE unit, laid out for generated code.

/// An 80-bit extended-precision value as the x87 holds it: a 64-bit significand with an
/// explicit integer bit, and sign plus 15-bit biased exponent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct F80 {
    /// The significand, integer bit 63 explicit.
    pub signif: u64,
    /// Bit 15 the sign, bits 14:0 the biased exponent.
    pub sign_exp: u16,
}

impl F80 {
    /// +0.0.
    pub const ZERO: F80 = F80 {
        signif: 0,
        sign_exp: 0,
    };
    /// The "real indefinite" QNaN that masked invalid operations return.
    pub const INDEFINITE: F80 = F80 {
        signif: 0xc000_0000_0000_0000,
        sign_exp: 0xffff,
    };

    /// The 10 bytes of the memory format (little-endian significand, then sign/exponent).
    pub fn to_bytes(self) -> [u8; 10] {
        let mut b = [0u8; 10];
        b[..8].copy_from_slice(&self.signif.to_le_bytes());
        b[8..].copy_from_slice(&self.sign_exp.to_le_bytes());
        b
    }

    /// The value of 10 bytes in memory format.
    pub fn from_bytes(b: &[u8; 10]) -> F80 {
        F80 {
            signif: u64::from_le_bytes(b[..8].try_into().expect("8 bytes")),
            sign_exp: u16::from_le_bytes([b[8], b[9]]),
        }
    }
}

/// MXCSR after reset and FNINIT-free power-up: all exceptions masked, round to nearest.
pub const MXCSR_DEFAULT: u32 = 0x1f80;
/// The MXCSR bits that may be set (FXSAVE's MXCSR_MASK): everything up to DAZ, bit 6.
pub const MXCSR_MASK: u32 = 0xffff;

/// Index into [`Fpu::io`]: the low 64 bits of a memory or general-register operand.
pub const IO_DATA0: usize = 0;
/// Index into [`Fpu::io`]: bits 64..128 of a memory operand (80-bit x87 operands use its
/// low 16 bits).
pub const IO_DATA1: usize = 1;
/// Index into [`Fpu::io`]: RAX as an implicit input (PCMPESTRx's first string length).
pub const IO_RAX: usize = 2;
/// Index into [`Fpu::io`]: RDX as an implicit input (PCMPESTRx's second string length).
pub const IO_RDX: usize = 3;
/// Index into [`Fpu::io`]: the arithmetic flags an instruction sets (COMISS, PTEST,
/// PCMPxSTRx, FCOMI...): CF, PF, AF, ZF, SF and OF in their EFLAGS positions.
pub const IO_FLAGS: usize = 4;

/// The x87 register file and control registers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct X87 {
    /// The physical registers R0..R7 (ST(i) is R[(TOP + i) mod 8]); MMX register MMi is the
    /// significand of R[i].
    pub regs: [F80; 8],
    /// The control word.
    pub fcw: u16,
    /// The status word, TOP in bits 13:11.
    pub fsw: u16,
    /// The full tag word, two bits per physical register (00 valid, 01 zero, 10 special,
    /// 11 empty).
    pub ftw: u16,
    /// The last non-control instruction's opcode (11 bits: low 3 bits of the first opcode
    /// byte, then the ModRM byte).
    pub fop: u16,
    /// The last non-control instruction's address (offset; in 64-bit mode the whole RIP).
    pub fip: u64,
    /// The last memory operand's address.
    pub fdp: u64,
    /// The last instruction's code segment selector.
    pub fcs: u16,
    /// The last memory operand's segment selector.
    pub fds: u16,
}

impl Default for X87 {
    /// The state after FNINIT.
    fn default() -> Self {
        X87 {
            regs: [F80::ZERO; 8],
            fcw: 0x037f,
            fsw: 0,
            ftw: 0xffff,
            fop: 0,
            fip: 0,
            fdp: 0,
            fcs: 0,
            fds: 0,
        }
    }
}

/// The FPU/SIMD state of one virtual CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct Fpu {
    /// XMM0..XMM15, each as two little-endian 64-bit halves (`[low, high]`).
    pub xmm: [[u64; 2]; 16],
    /// The SSE control and status register.
    pub mxcsr: u32,
    /// Padding, kept zero.
    pub _pad: u32,
    /// Operand exchange with generated code (see the `IO_*` indices): memory and
    /// general-register operands go in here before a helper call and results come out.
    pub io: [u64; 5],
    /// The x87 FPU.
    pub x87: X87,
    /// An x87 store's new x87 state, computed by the prepare step and made architectural by
    /// the commit step once the memory write has succeeded (see [`crate::x87`]).
    pub pending: X87,
}

impl Default for Fpu {
    /// The state after reset (SDM Vol. 3 table 10-1): x87 as after FNINIT but with FCW
    /// 0x0040 and all tags "zero", XMM registers zero, MXCSR 0x1F80.
    fn default() -> Self {
        let x87 = X87 {
            fcw: 0x0040,
            ftw: 0x5555,
            ..X87::default()
        };
        Fpu {
            xmm: [[0; 2]; 16],
            mxcsr: MXCSR_DEFAULT,
            _pad: 0,
            io: [0; 5],
            x87,
            pending: x87,
        }
    }
}

impl Fpu {
    /// What every MMX instruction but EMMS does to the x87 (SDM Vol. 1 table 9-3): TOP = 0
    /// and all tags valid.
    pub fn mmx_enter(&mut self) {
        self.x87.fsw &= !(7 << 11);
        self.x87.ftw = 0;
    }

    /// MMX register `i`.
    pub fn mm(&self, i: usize) -> u64 {
        self.x87.regs[i & 7].signif
    }

    /// Writes MMX register `i`: the significand of R[i], with the exponent field all ones as
    /// hardware leaves it.
    pub fn set_mm(&mut self, i: usize, v: u64) {
        self.x87.regs[i & 7] = F80 {
            signif: v,
            sign_exp: 0xffff,
        };
    }

    /// XMM register `i` as one 128-bit value.
    pub fn xmm128(&self, i: usize) -> u128 {
        let [lo, hi] = self.xmm[i & 15];
        u128::from(lo) | u128::from(hi) << 64
    }

    /// Writes XMM register `i` from one 128-bit value.
    pub fn set_xmm128(&mut self, i: usize, v: u128) {
        self.xmm[i & 15] = [v as u64, (v >> 64) as u64];
    }

    /// The memory/general-register operand in `io` as one 128-bit value.
    pub fn io128(&self) -> u128 {
        u128::from(self.io[IO_DATA0]) | u128::from(self.io[IO_DATA1]) << 64
    }

    /// Puts a 128-bit result into `io` for the translator to store.
    pub fn set_io128(&mut self, v: u128) {
        self.io[IO_DATA0] = v as u64;
        self.io[IO_DATA1] = (v >> 64) as u64;
    }
}
