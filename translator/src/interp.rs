//! The interpreter back end: [`Emit`] over plain integers, acting on the CPU state at once.
//!
//! It is the cold tier (blocks run here until they are hot enough to compile), the executor of
//! runtime-class instructions (which need the machine), and the oracle the JIT is tested
//! against. It shares every line of instruction semantics with the JIT.

use crane86_runtime::memory::{read_data, rep_bulk, write_data, BulkOp};
use crane86_runtime::state::{CR4_OSFXSR, CR4_TSD};
use crane86_runtime::{CcOp, CpuState, Exception, Fault, LazyFlags, PhysMem, PortIo, SegReg};

use crate::decode::DecodedBlock;
use crate::emit::{Arith, Bin, Cmp, Ctx, Emit, FloatOp, FloatWidth, FpuHelper, Stop, Un, R};
use crate::semantics::{self, flags};

/// The interpreter's view of one CPU for the duration of one instruction.
pub struct Interp<'a> {
    /// The CPU being run.
    pub cpu: &'a mut CpuState,
    /// Guest memory.
    pub mem: &'a mut PhysMem,
    /// The port-I/O bus, for runtime-class instructions.
    pub io: Option<&'a mut dyn PortIo>,
    ctx: Ctx,
    /// The transfer target set by a control-flow instruction.
    pub next: Option<u64>,
    /// Instructions of the current block retired before this one (not yet in
    /// `cpu.retired`, which the run loop advances after the block).
    pub retired_before: u64,
}

impl<'a> Interp<'a> {
    /// An interpreter for `cpu` in the mode `ctx`.
    pub fn new(
        cpu: &'a mut CpuState,
        mem: &'a mut PhysMem,
        io: Option<&'a mut dyn PortIo>,
        ctx: Ctx,
    ) -> Self {
        Interp {
            cpu,
            mem,
            io,
            ctx,
            next: None,
            retired_before: 0,
        }
    }
}

/// Plain 64-bit integer arithmetic: the interpreter's values, and the evaluator the runtime
/// uses for flags whose operation is only known at run time.
#[derive(Clone, Copy, Debug, Default)]
pub struct Values;

impl Arith for Values {
    type V = u64;

    fn imm(&mut self, v: u64) -> u64 {
        v
    }

    fn bin(&mut self, op: Bin, a: u64, b: u64) -> u64 {
        match op {
            Bin::Add => a.wrapping_add(b),
            Bin::Sub => a.wrapping_sub(b),
            Bin::And => a & b,
            Bin::Or => a | b,
            Bin::Xor => a ^ b,
            Bin::Shl => a.wrapping_shl(b as u32),
            Bin::Shr => a.wrapping_shr(b as u32),
            Bin::Sar => (a as i64).wrapping_shr(b as u32) as u64,
            Bin::Rotl => a.rotate_left((b & 63) as u32),
            Bin::Rotr => a.rotate_right((b & 63) as u32),
            Bin::Mul => a.wrapping_mul(b),
            Bin::UMulHi => ((u128::from(a) * u128::from(b)) >> 64) as u64,
            Bin::SMulHi => ((i128::from(a as i64) * i128::from(b as i64)) >> 64) as u64,
            // Semantics never divide by zero (they raise #DE first); stay total regardless.
            Bin::UDiv => a.checked_div(b).unwrap_or(0),
            Bin::URem => a.checked_rem(b).unwrap_or(0),
            Bin::SDiv => (a as i64).checked_div(b as i64).unwrap_or(0) as u64,
            Bin::SRem => (a as i64).checked_rem(b as i64).unwrap_or(0) as u64,
        }
    }

    fn un(&mut self, op: Un, a: u64) -> u64 {
        match op {
            Un::Not => !a,
            Un::Neg => a.wrapping_neg(),
            Un::Popcnt => u64::from(a.count_ones()),
            Un::Clz => u64::from(a.leading_zeros()),
            Un::Ctz => u64::from(a.trailing_zeros()),
            Un::Bswap => a.swap_bytes(),
        }
    }

    fn cmp(&mut self, op: Cmp, a: u64, b: u64) -> u64 {
        u64::from(match op {
            Cmp::Eq => a == b,
            Cmp::Ne => a != b,
            Cmp::Ult => a < b,
            Cmp::Ule => a <= b,
            Cmp::Slt => (a as i64) < (b as i64),
            Cmp::Sle => (a as i64) <= (b as i64),
        })
    }

    fn select(&mut self, c: u64, a: u64, b: u64) -> u64 {
        if c != 0 {
            a
        } else {
            b
        }
    }

    fn sext(&mut self, a: u64, bits: u32) -> u64 {
        let sh = 64 - bits;
        (((a << sh) as i64) >> sh) as u64
    }

    fn zext(&mut self, a: u64, bits: u32) -> u64 {
        a & (u64::MAX >> (64 - bits))
    }

    fn div_wide(&mut self, signed: bool, hi: u64, lo: u64, d: u64) -> (u64, u64, u64) {
        div_wide(signed, hi, lo, d).map_or((0, 0, 0), |(q, r)| (q, r, 1))
    }

    /// Rust's `f32`/`f64` operators: correctly rounded IEEE operations (SSE2 on x86-64)
    /// under the host thread's MXCSR, which crane86 never changes from the default (round to
    /// nearest, no FTZ/DAZ).
    fn float(&mut self, op: FloatOp, w: FloatWidth, a: u64, b: u64) -> u64 {
        // The same five operations on either width.
        macro_rules! apply {
            ($x:expr, $y:expr) => {{
                let (x, y) = ($x, $y);
                match op {
                    FloatOp::Add => x + y,
                    FloatOp::Sub => x - y,
                    FloatOp::Mul => x * y,
                    FloatOp::Div => x / y,
                    FloatOp::Sqrt => x.sqrt(),
                }
                .to_bits()
            }};
        }
        match w {
            FloatWidth::Single => {
                u64::from(apply!(f32::from_bits(a as u32), f32::from_bits(b as u32)))
            }
            FloatWidth::Double => apply!(f64::from_bits(a), f64::from_bits(b)),
        }
    }
}

impl Arith for Interp<'_> {
    type V = u64;

    fn imm(&mut self, v: u64) -> u64 {
        v
    }
    fn bin(&mut self, op: Bin, a: u64, b: u64) -> u64 {
        Values.bin(op, a, b)
    }
    fn un(&mut self, op: Un, a: u64) -> u64 {
        Values.un(op, a)
    }
    fn cmp(&mut self, op: Cmp, a: u64, b: u64) -> u64 {
        Values.cmp(op, a, b)
    }
    fn select(&mut self, c: u64, a: u64, b: u64) -> u64 {
        Values.select(c, a, b)
    }
    fn sext(&mut self, a: u64, bits: u32) -> u64 {
        Values.sext(a, bits)
    }
    fn zext(&mut self, a: u64, bits: u32) -> u64 {
        Values.zext(a, bits)
    }
    fn div_wide(&mut self, signed: bool, hi: u64, lo: u64, d: u64) -> (u64, u64, u64) {
        Values.div_wide(signed, hi, lo, d)
    }
    fn float(&mut self, op: FloatOp, w: FloatWidth, a: u64, b: u64) -> u64 {
        Values.float(op, w, a, b)
    }
}

impl Emit for Interp<'_> {
    fn ctx(&self) -> Ctx {
        self.ctx
    }

    fn gpr(&mut self, r: usize) -> u64 {
        self.cpu.gpr[r]
    }

    fn set_gpr(&mut self, r: usize, v: u64) {
        self.cpu.gpr[r] = v;
    }

    fn rflags_rest(&mut self) -> u64 {
        self.cpu.rflags
    }

    fn set_rflags_rest(&mut self, v: u64) {
        self.cpu.rflags = v;
    }

    fn seg_base(&mut self, s: SegReg) -> u64 {
        self.cpu.seg[s as usize].base
    }

    fn seg_limit(&mut self, s: SegReg) -> u64 {
        u64::from(self.cpu.seg[s as usize].limit)
    }

    fn seg_attrs(&mut self, s: SegReg) -> u64 {
        u64::from(self.cpu.seg[s as usize].attrs)
    }

    fn set_cc(&mut self, op: CcOp, src1: u64, src2: u64, res: u64) {
        self.cpu.cc.op = op.encode();
        self.cpu.cc.src1 = src1;
        self.cpu.cc.src2 = src2;
        self.cpu.cc.res = res;
    }

    fn cc_op(&self) -> Option<CcOp> {
        Some(CcOp::decode(self.cpu.cc.op))
    }

    fn cc_values(&mut self) -> (u64, u64, u64) {
        (self.cpu.cc.src1, self.cpu.cc.src2, self.cpu.cc.res)
    }

    fn cc_dynamic_eflags(&mut self) -> u64 {
        eflags_value(&self.cpu.cc)
    }

    fn load(&mut self, linear: u64, size: u32) -> R<u64> {
        read_data(self.cpu, self.mem, linear, size).map_err(|f| {
            self.cpu.raise(f, linear);
            Stop
        })
    }

    fn rep_bulk(&mut self, op: BulkOp, size: u32, dst: u64, src_or_value: u64, count: u64) -> u64 {
        rep_bulk(self.cpu, self.mem, op, size, dst, src_or_value, count)
    }

    fn store(&mut self, linear: u64, size: u32, v: u64) -> R<()> {
        write_data(self.cpu, self.mem, linear, size, v).map_err(|f| {
            self.cpu.raise(f, linear);
            Stop
        })
    }

    fn shuffle_bytes(&mut self, a: [u64; 2], idx: [u64; 2]) -> [u64; 2] {
        let a = u128::from(a[0]) | u128::from(a[1]) << 64;
        let idx = u128::from(idx[0]) | u128::from(idx[1]) << 64;
        let mut r = 0u128;
        for i in 0..16 {
            let k = (idx >> (8 * i)) as u8;
            if k & 0x80 == 0 {
                r |= ((a >> (8 * u32::from(k & 15))) & 0xff) << (8 * i);
            }
        }
        [r as u64, (r >> 64) as u64]
    }

    fn xmm(&mut self, r: usize, half: usize) -> u64 {
        self.cpu.fpu.xmm[r & 15][half & 1]
    }

    fn set_xmm(&mut self, r: usize, half: usize, v: u64) {
        self.cpu.fpu.xmm[r & 15][half & 1] = v;
    }

    fn fpu_io(&mut self, i: usize) -> u64 {
        self.cpu.fpu.io[i]
    }

    fn set_fpu_io(&mut self, i: usize, v: u64) {
        self.cpu.fpu.io[i] = v;
    }

    fn fpu_call(&mut self, h: FpuHelper, a: [u64; 4]) -> R<u64> {
        use crane86_runtime::fpu;
        let status = match h {
            FpuHelper::Simd => fpu::simd(self.cpu, a[0], a[1]),
            FpuHelper::StringCompare => fpu::string_compare(self.cpu, a[0]),
            FpuHelper::X87 => fpu::x87(self.cpu, a[0], a[1], a[2], a[3]),
            FpuHelper::X87Commit => {
                fpu::x87_commit(self.cpu);
                fpu::STATUS_OK
            }
        };
        if status == fpu::STATUS_FAULT {
            Err(Stop)
        } else {
            Ok(status)
        }
    }

    fn fpu_call_if(
        &mut self,
        cond: u64,
        h: FpuHelper,
        args: [u64; 4],
        io: &[(usize, u64)],
    ) -> R<()> {
        if cond != 0 {
            for &(i, v) in io {
                self.cpu.fpu.io[i] = v;
            }
            self.fpu_call(h, args)?;
        }
        Ok(())
    }

    fn mxcsr(&mut self) -> u64 {
        u64::from(self.cpu.fpu.mxcsr)
    }

    fn require_osfxsr(&mut self) -> R<()> {
        if self.cpu.cr4 & CR4_OSFXSR == 0 {
            return Err(self.raise(Fault::new(Exception::InvalidOpcode)));
        }
        Ok(())
    }

    fn swap_gs_base(&mut self) {
        let gs = &mut self.cpu.seg[SegReg::Gs as usize].base;
        std::mem::swap(gs, &mut self.cpu.msr.kernel_gs_base);
    }

    fn tsc_aux(&mut self) -> u64 {
        self.cpu.msr.tsc_aux & 0xffff_ffff
    }

    fn sti_window(&mut self, _was_clear: u64) {}

    fn read_tsc(&mut self) -> R<u64> {
        if self.cpu.cr4 & CR4_TSD != 0 && crane86_runtime::segment::cpl(self.cpu) > 0 {
            return Err(self.raise(Fault::with_code(Exception::GeneralProtection, 0)));
        }
        Ok(crane86_runtime::msr::tsc(self.cpu).wrapping_add(self.retired_before))
    }

    fn raise_if(&mut self, cond: u64, fault: Fault) -> R<()> {
        if cond != 0 {
            Err(self.raise(fault))
        } else {
            Ok(())
        }
    }

    fn exit_if(&mut self, cond: u64, target: u64) -> R<()> {
        if cond != 0 {
            // `next` set with a Stop: the run loop takes it as a completed instruction.
            self.next = Some(target);
            Err(Stop)
        } else {
            Ok(())
        }
    }

    fn raise(&mut self, fault: Fault) -> Stop {
        self.cpu.raise(fault, 0);
        Stop
    }

    fn jump(&mut self, target: u64) {
        self.next = Some(target);
    }

    fn branch(&mut self, cond: u64, taken: u64, not_taken: u64) {
        self.next = Some(if cond != 0 { taken } else { not_taken });
    }
}

/// How an interpreted run of a block ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InterpExit {
    /// Execution goes on at `cpu.rip`.
    Next,
    /// A fault is pending in `cpu.fault`; `cpu.rip` is the faulting instruction (after the
    /// trap-like #DB of ICEBP, which retired, the next one).
    Fault,
    /// The guest executed HLT.
    Halt,
    /// An instruction needs something not implemented yet; `cpu.rip` is that instruction.
    Unsupported(&'static str),
}

/// 128-by-64-bit division as DIV/IDIV define it; `None` for a zero divisor or a quotient
/// that does not fit in 64 bits.
pub fn div_wide(signed: bool, hi: u64, lo: u64, d: u64) -> Option<(u64, u64)> {
    let n = (u128::from(hi) << 64) | u128::from(lo);
    if signed {
        let n = n as i128;
        let d = i128::from(d as i64);
        let q = n.checked_div(d)?;
        let r = n.checked_rem(d)?;
        i64::try_from(q).ok().map(|q| (q as u64, r as u64))
    } else {
        let d = u128::from(d);
        let q = n.checked_div(d)?;
        u64::try_from(q).ok().map(|q| (q, (n % d) as u64))
    }
}

/// The six arithmetic flags of a lazy record, evaluated.
pub fn eflags_value(cc: &LazyFlags) -> u64 {
    flags::eflags_of(&mut Values, CcOp::decode(cc.op), cc.src1, cc.src2, cc.res)
}

/// The architectural RFLAGS value of a CPU.
pub fn rflags(cpu: &CpuState) -> u64 {
    (cpu.rflags & !crane86_runtime::flags::ARITH) | eflags_value(&cpu.cc)
}

/// Runs the instructions of a decoded block from the first; stops early at a fault, at a
/// store into translated code (the rest of the block may be stale), or after `limit`
/// instructions. Returns the exit and the number of instructions retired.
pub fn run_block(
    cpu: &mut CpuState,
    mem: &mut PhysMem,
    io: &mut dyn PortIo,
    block: &DecodedBlock,
    limit: u64,
) -> (InterpExit, u64) {
    let mut it = Interp::new(cpu, mem, Some(io), block.ctx);
    let mut retired = 0;
    for d in block.insns.iter().take(limit.max(1) as usize) {
        it.cpu.rip = d.insn.ip();
        it.next = None;
        it.retired_before = retired;
        let result = if d.runtime {
            semantics::system::execute(&mut it, &d.insn)
        } else {
            semantics::execute_row(&mut it, &d.insn, d.row)
                .map(|()| semantics::system::Outcome::Continue)
        };
        // An early exit (`exit_if`) stops the semantics but completes the instruction.
        let result = match result {
            Err(Stop) if it.next.is_some() => Ok(semantics::system::Outcome::Continue),
            r => r,
        };
        match result {
            Ok(semantics::system::Outcome::Unsupported(what)) => {
                return (InterpExit::Unsupported(what), retired);
            }
            Ok(outcome) => {
                let next = it.next.unwrap_or_else(|| d.insn.next_ip());
                let halted = outcome == semantics::system::Outcome::Halt;
                it.cpu.rip = next;
                retired += 1;
                if halted {
                    return (InterpExit::Halt, retired);
                }
                if outcome == semantics::system::Outcome::DebugTrap {
                    // A trap: the #DB is delivered with RIP at the next instruction.
                    it.cpu.raise(Fault::new(Exception::Debug), 0);
                    return (InterpExit::Fault, retired);
                }
                if it.cpu.smc_pending != 0 {
                    break;
                }
            }
            Err(Stop) => return (InterpExit::Fault, retired),
        }
    }
    (InterpExit::Next, retired)
}
