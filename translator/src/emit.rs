//! [`Emit`]: the small set of primitive operations that instruction semantics are written
//! against (ARCHITECTURE.md decision 1).
//!
//! Every instruction's semantics are written once, in `semantics/`, as generic functions over
//! `E: Emit`. Two back ends implement the trait:
//! - [`crate::interp::Interp`], where a value is a plain `u64` and each primitive happens at
//!   once: the cold tier, the single-step engine, and the JIT's test oracle;
//! - [`crate::jit::JitEmitter`], where a value is a Cranelift SSA value and each primitive
//!   emits IR.
//!
//! Values are always 64 bits wide; semantics mask to the operand size themselves. Primitives
//! are total (no primitive traps): semantics check for faults first with [`Emit::raise_if`].
//!
//! Precise exceptions rest on one rule that every semantics function follows: **all memory
//! accesses and fault checks of an instruction happen before its first register or flags
//! write**, so a fault leaves the instruction without effect.

use crane86_runtime::memory::BulkOp;
use crane86_runtime::{CcOp, CpuMode, Fault, SegReg};

/// An instruction stopped early because it raised a fault (already recorded by the back end).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stop;

/// The result of a primitive that may fault.
pub type R<T> = Result<T, Stop>;

/// Binary operations on 64-bit values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bin {
    /// Wrapping addition.
    Add,
    /// Wrapping subtraction.
    Sub,
    /// Bitwise and.
    And,
    /// Bitwise or.
    Or,
    /// Bitwise exclusive or.
    Xor,
    /// Shift left; the count must be below 64.
    Shl,
    /// Logical shift right; the count must be below 64.
    Shr,
    /// Arithmetic shift right; the count must be below 64.
    Sar,
    /// Rotate left by the count modulo 64.
    Rotl,
    /// Rotate right by the count modulo 64.
    Rotr,
    /// Wrapping multiplication, low 64 bits.
    Mul,
    /// High 64 bits of the unsigned 128-bit product.
    UMulHi,
    /// High 64 bits of the signed 128-bit product.
    SMulHi,
    /// Unsigned division; the divisor must be non-zero.
    UDiv,
    /// Unsigned remainder; the divisor must be non-zero.
    URem,
    /// Signed division; no zero divisor, no `MIN / -1`.
    SDiv,
    /// Signed remainder; same restrictions as [`Bin::SDiv`].
    SRem,
}

/// Unary operations on 64-bit values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Un {
    /// Bitwise not.
    Not,
    /// Two's complement negation.
    Neg,
    /// Number of set bits.
    Popcnt,
    /// Leading zero bits of the 64-bit value (64 for zero).
    Clz,
    /// Trailing zero bits (64 for zero).
    Ctz,
    /// Byte swap of the 64-bit value.
    Bswap,
}

/// Integer comparisons, producing 1 or 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cmp {
    /// Equal.
    Eq,
    /// Not equal.
    Ne,
    /// Unsigned less than.
    Ult,
    /// Unsigned less than or equal.
    Ule,
    /// Signed less than (as 64-bit values).
    Slt,
    /// Signed less than or equal (as 64-bit values).
    Sle,
}

/// IEEE floating-point operations of [`Arith::float`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FloatOp {
    /// a + b.
    Add,
    /// a - b.
    Sub,
    /// a * b.
    Mul,
    /// a / b.
    Div,
    /// The square root of a (b is ignored).
    Sqrt,
}

/// The format of the operands of [`Arith::float`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FloatWidth {
    /// binary32 in the low 32 bits of a value (the upper 32 bits of operands are ignored,
    /// those of the result zero).
    Single,
    /// binary64.
    Double,
}

/// The FPU/SIMD unit's helpers that semantics may call ([`Emit::fpu_call`]); each is a
/// function of `crane86_runtime::fpu` taking four values and returning a status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FpuHelper {
    /// `simd(code, operands, _, _)`: one MMX/SSE instruction.
    Simd,
    /// `string_compare(form, _, _, _)`: an SSE4.2 string compare
    /// (`crane86_runtime::fpu::string_form`).
    StringCompare,
    /// `x87(code, operands, data offset, rip)`: one x87 instruction.
    X87,
    /// `x87_commit()`: an x87 store's new state, after its memory write.
    X87Commit,
}

/// Facts about the code being translated that semantics need and that the block key fixes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ctx {
    /// The decoding mode.
    pub mode: CpuMode,
    /// SS.B: the stack pointer is ESP (else SP) outside 64-bit mode.
    pub stack32: bool,
    /// CPL 3: explicit memory accesses are user-mode accesses (and use the user TLB).
    pub user: bool,
    /// The CPL (0 in real mode); `user` is `cpl == 3`. Privileged instructions that only
    /// need CPL 0 run inline when it is 0, and stay runtime-class otherwise.
    pub cpl: u8,
    /// CR0.EM/TS/MP (`crane86_runtime::key::FPU_*`): whether x87, MMX and SSE instructions
    /// run or raise #NM/#UD (SSE also needs CR4.OSFXSR, see [`Emit::require_osfxsr`]).
    pub fpu: u8,
    /// Virtual-8086 mode (EFLAGS.VM): decodes as 16-bit code, where VEX raises #UD.
    pub v86: bool,
    /// DS, ES or SS is not flat (`BlockKey::seg_checks`): accesses through them are checked
    /// against the segment's limit and type. Flat blocks check only CS/FS/GS overrides.
    pub seg_checks: bool,
    /// Outside 64-bit mode, DS, ES and SS have base 0 (`BlockKey::zero_bases`): accesses
    /// through them add no base.
    pub zero_bases: bool,
    /// Outside 64-bit mode, FS is flat (`BlockKey::fs_flat`): accesses through an FS
    /// override are not checked.
    pub fs_flat: bool,
    /// The same for GS (`BlockKey::gs_flat`).
    pub gs_flat: bool,
}

/// [`Ctx::fpu`] as an operating system sets it up: the FPU present and in use.
pub const FPU_OS: u8 = crane86_runtime::key::FPU_MP;

impl Ctx {
    /// The context of the block that `key` names.
    pub fn of(key: &crane86_runtime::BlockKey) -> Ctx {
        Ctx {
            mode: key.mode(),
            stack32: key.stack32(),
            user: key.cpl() == 3,
            cpl: key.cpl(),
            fpu: key.fpu_bits(),
            v86: key.v86(),
            seg_checks: key.seg_checks(),
            zero_bases: key.zero_bases(),
            fs_flat: key.fs_flat(),
            gs_flat: key.gs_flat(),
        }
    }

    /// Width of the stack pointer in bytes.
    pub fn stack_size(self) -> u32 {
        match (self.mode, self.stack32) {
            (CpuMode::Long64, _) => 8,
            (_, true) => 4,
            _ => 2,
        }
    }
}

/// Pure value operations: what flag evaluation needs, and what every back end provides.
pub trait Arith {
    /// A 64-bit value: an integer in the interpreter, an SSA value in the JIT.
    type V: Copy;

    /// A constant.
    fn imm(&mut self, v: u64) -> Self::V;
    /// A binary operation.
    fn bin(&mut self, op: Bin, a: Self::V, b: Self::V) -> Self::V;
    /// A unary operation.
    fn un(&mut self, op: Un, a: Self::V) -> Self::V;
    /// A comparison, 1 when true.
    fn cmp(&mut self, op: Cmp, a: Self::V, b: Self::V) -> Self::V;
    /// `if c != 0 { a } else { b }`.
    fn select(&mut self, c: Self::V, a: Self::V, b: Self::V) -> Self::V;
    /// Sign-extends the low `bits` bits (8, 16 or 32) to 64.
    fn sext(&mut self, a: Self::V, bits: u32) -> Self::V;
    /// Zero-extends the low `bits` bits (8, 16 or 32) to 64.
    fn zext(&mut self, a: Self::V, bits: u32) -> Self::V;
    /// Divides the 128-bit value `hi:lo` by `d`: returns (quotient, remainder, ok), where ok
    /// is 0 when `d` is zero or the quotient does not fit in 64 bits (signed or unsigned),
    /// and the other two are then meaningless.
    fn div_wide(
        &mut self,
        signed: bool,
        hi: Self::V,
        lo: Self::V,
        d: Self::V,
    ) -> (Self::V, Self::V, Self::V);
    /// `a op b` in IEEE arithmetic with round-to-nearest-even, no flush-to-zero and no
    /// denormals-are-zero, on raw bits: the host FPU's answer. Total, but defined only up to
    /// NaN payloads: semantics use it only under a guard that rules out NaN operands and
    /// results (the SSE fast path, `semantics::simd_float`), never to decide flags.
    fn float(&mut self, op: FloatOp, w: FloatWidth, a: Self::V, b: Self::V) -> Self::V;
}

/// The primitive operations semantics are written against. See the module documentation.
pub trait Emit: Arith {
    /// Facts fixed by the block key.
    fn ctx(&self) -> Ctx;

    /// Reads a 64-bit general register (encoding number 0..16).
    fn gpr(&mut self, r: usize) -> Self::V;
    /// Writes a 64-bit general register.
    fn set_gpr(&mut self, r: usize, v: Self::V);
    /// RFLAGS without the six arithmetic flags.
    fn rflags_rest(&mut self) -> Self::V;
    /// Writes RFLAGS without the arithmetic flags (bit 1 and the reserved bits are the
    /// caller's concern).
    fn set_rflags_rest(&mut self, v: Self::V);
    /// The base of a segment register's descriptor cache.
    fn seg_base(&mut self, s: SegReg) -> Self::V;
    /// A segment's limit (in bytes, zero-extended), read at run time from its cache.
    fn seg_limit(&mut self, s: SegReg) -> Self::V;
    /// A segment's attributes (`Segment::attrs`), read at run time from its cache.
    fn seg_attrs(&mut self, s: SegReg) -> Self::V;

    /// Records the last flag-setting operation (lazy flags).
    fn set_cc(&mut self, op: CcOp, src1: Self::V, src2: Self::V, res: Self::V);
    /// The last flag-setting operation, when known at translation time (always in the
    /// interpreter; in the JIT after a flag-setting instruction of the same block).
    fn cc_op(&self) -> Option<CcOp>;
    /// `(src1, src2, res)` of the lazy flags.
    fn cc_values(&mut self) -> (Self::V, Self::V, Self::V);
    /// The arithmetic flags computed by the runtime, for when [`Emit::cc_op`] is unknown.
    fn cc_dynamic_eflags(&mut self) -> Self::V;
    /// Evaluates `f`, a pure computation from the lazy flags, when [`Emit::cc_op`] may be
    /// unknown. The JIT, given a profile hint of the operation usually recorded on entry to
    /// the block, checks the recorded operation at run time and evaluates `f` twice: with the
    /// operation known (a comparison or two, inline) when it is the hinted one, and through
    /// [`Emit::cc_dynamic_eflags`] otherwise. Elsewhere `f` just runs. `f` must not call
    /// `guess_cc` itself.
    fn guess_cc<F: FnMut(&mut Self) -> Self::V>(&mut self, mut f: F) -> Self::V {
        f(self)
    }

    /// Reads `size` bytes (1, 2, 4 or 8) at a linear address.
    fn load(&mut self, linear: Self::V, size: u32) -> R<Self::V>;
    /// Writes `size` bytes at a linear address.
    fn store(&mut self, linear: Self::V, size: u32, v: Self::V) -> R<()>;
    /// [`Emit::load`] of an operand through SS in 64-bit mode, whose non-canonical address is
    /// #SS(0) rather than #GP(0). The JIT checks it on the TLB miss path only: a hit proves
    /// the access lies in one canonical page.
    fn load_ss64(&mut self, linear: Self::V, size: u32) -> R<Self::V> {
        crate::semantics::operands::ss64_canonical(self, linear)?;
        self.load(linear, size)
    }
    /// [`Emit::store`] of an operand through SS in 64-bit mode, as [`Emit::load_ss64`].
    fn store_ss64(&mut self, linear: Self::V, size: u32, v: Self::V) -> R<()> {
        crate::semantics::operands::ss64_canonical(self, linear)?;
        self.store(linear, size, v)
    }

    /// Does up to `count` iterations of a REP STOS or MOVS at once, forward, from linear
    /// `dst` (and source `src_or_value`, or the value to store): those within one page of
    /// each that the TLB already maps ([`crane86_runtime::memory::rep_bulk`]). Returns how
    /// many, 0 when none; changes memory only, never faults.
    fn rep_bulk(
        &mut self,
        op: BulkOp,
        size: u32,
        dst: Self::V,
        src_or_value: Self::V,
        count: Self::V,
    ) -> Self::V;

    /// Whether [`Emit::shuffle_bytes`] may be used (the JIT needs the host's PSHUFB).
    fn can_shuffle_bytes(&self) -> bool {
        true
    }
    /// PSHUFB on 128 bits (halves low, high): byte `i` of the result is 0 when byte `i` of
    /// `idx` has bit 7 set, else byte `idx[i] & 15` of `a`.
    fn shuffle_bytes(&mut self, a: [Self::V; 2], idx: [Self::V; 2]) -> [Self::V; 2];

    /// Reads one 64-bit half (0 low, 1 high) of XMM register `r`.
    fn xmm(&mut self, r: usize, half: usize) -> Self::V;
    /// Writes one 64-bit half of XMM register `r`.
    fn set_xmm(&mut self, r: usize, half: usize, v: Self::V);
    /// Reads slot `i` of the FPU unit's operand exchange area (`crane86_fpu::IO_*`).
    fn fpu_io(&mut self, i: usize) -> Self::V;
    /// Writes slot `i` of the FPU unit's operand exchange area.
    fn set_fpu_io(&mut self, i: usize, v: Self::V);
    /// Calls an FPU/SIMD helper. When it records a fault the instruction stops there
    /// (`Err`); otherwise returns its status (`crane86_runtime::fpu::STATUS_*`).
    fn fpu_call(&mut self, h: FpuHelper, args: [Self::V; 4]) -> R<Self::V>;
    /// When `cond` is non-zero: writes the exchange-area slots `io` (slot, value) and
    /// calls the helper as [`Emit::fpu_call`] does (a fault stops the instruction, `Err`).
    /// When `cond` is zero nothing happens. The JIT puts the call on a cold path: this is
    /// the fallback of an instruction compiled inline under a guard.
    fn fpu_call_if(
        &mut self,
        cond: Self::V,
        h: FpuHelper,
        args: [Self::V; 4],
        io: &[(usize, Self::V)],
    ) -> R<()>;
    /// MXCSR, zero-extended. Only FPU/SIMD helpers change it.
    fn mxcsr(&mut self) -> Self::V;
    /// Raises #UD unless CR4.OSFXSR is set now: the check every SSE instruction makes.
    /// OSFXSR is not part of the block key (a kernel sets it once, early, and keying it
    /// split every block run both before and after), so it is read at run time. Only
    /// runtime-class instructions write CR4, and they end a block, so the JIT reads it once
    /// per block.
    fn require_osfxsr(&mut self) -> R<()>;

    /// The time-stamp counter as RDTSC reads it at the current instruction
    /// (`crane86_runtime::msr::tsc` plus the instructions retired since), or #GP(0) when
    /// CR4.TSD forbids RDTSC at the current CPL.
    fn read_tsc(&mut self) -> R<Self::V>;

    /// Exchanges the GS base with IA32_KERNEL_GS_BASE (SWAPGS).
    fn swap_gs_base(&mut self);
    /// IA32_TSC_AUX (its low 32 bits, as RDTSCP and RDPID read it).
    fn tsc_aux(&mut self) -> Self::V;
    /// After an STI at the end of its block: when `was_clear` (1: IF was 0 before it) and the
    /// run loop may deliver an interrupt next (`CpuState::irq_pending`, an exit request, the
    /// budget running out), generated code returns to the run loop with
    /// `CpuState::sti_shadow` set instead of chaining on. The interpreter does
    /// nothing: the run loop sees the STI itself.
    fn sti_window(&mut self, was_clear: Self::V);

    /// Raises `fault` when `cond` is non-zero; otherwise execution goes on.
    fn raise_if(&mut self, cond: Self::V, fault: Fault) -> R<()>;
    /// Raises `fault` unconditionally.
    fn raise(&mut self, fault: Fault) -> Stop;

    /// Ends the instruction early, with none of its effects, and goes on at `target` when
    /// `cond` is non-zero (a REP string instruction with a zero count); otherwise execution
    /// goes on. Returns `Err(Stop)` when the exit is certain.
    fn exit_if(&mut self, cond: Self::V, target: u64) -> R<()>;
    /// Ends the instruction with a transfer to `target` (an instruction pointer value).
    fn jump(&mut self, target: Self::V);
    /// A near CALL, its return address `ret` pushed, is about to [`Emit::jump`] to its
    /// target: the JIT records a return prediction (`crane86_runtime::rsb`). Only a hint:
    /// the interpreter does nothing.
    fn predict_return(&mut self, _ret: u64) {}
    /// Ends a near RET with a transfer to `target`, the return address it popped. The JIT
    /// checks the newest return prediction and goes straight to the code after the CALL
    /// when it provably matches; otherwise, and in the interpreter, as [`Emit::jump`].
    fn return_to(&mut self, target: Self::V) {
        self.jump(target)
    }
    /// Ends the instruction with a transfer to `taken` if `cond` is non-zero, else to
    /// `not_taken`: a conditional branch, or an iteration of a REP string instruction.
    fn branch(&mut self, cond: Self::V, taken: u64, not_taken: u64);
}
