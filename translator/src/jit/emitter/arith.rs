//! The JIT's [`Arith`]: value operations as Cranelift IR, folded when their operands are
//! constants and simplified where semantics produce patterns the host can do better.

use cranelift_codegen::ir::condcodes::{CondCode, IntCC};
use cranelift_codegen::ir::{types, InstBuilder, InstructionData, MemFlagsData, Value};

use super::super::off;
use super::super::shims::Helper;
use super::{JitEmitter, I32, I64};
use crate::emit::{Arith, Bin, Cmp, FloatOp, FloatWidth, Un};
use crate::interp::Values;

impl Arith for JitEmitter<'_, '_> {
    type V = Value;

    fn imm(&mut self, v: u64) -> Value {
        self.iconst(v)
    }

    fn bin(&mut self, op: Bin, a: Value, b: Value) -> Value {
        if let (Some(x), Some(y)) = (self.const_of(a), self.const_of(b)) {
            // Division by a constant zero is never emitted by semantics; fold the rest.
            let v = Values.bin(op, x, y);
            return self.iconst(v);
        }
        // Identities that semantics produce often (masking to 64 bits, adding 0); they keep
        // the IR small, which is most of the compile time.
        match (op, self.const_of(b)) {
            (Bin::And, Some(u64::MAX))
            | (
                Bin::Add | Bin::Sub | Bin::Or | Bin::Xor | Bin::Shl | Bin::Shr | Bin::Sar,
                Some(0),
            ) => return a,
            // Masks to an operand size: a zero extension, one `mov`/`movzx` on the host.
            (Bin::And, Some(0xff)) => return self.zext(a, 8),
            (Bin::And, Some(0xffff)) => return self.zext(a, 16),
            (Bin::And, Some(0xffff_ffff)) => return self.zext(a, 32),
            // The negation of a 0/1 comparison result: the opposite comparison.
            (Bin::Xor, Some(1)) => {
                let t = self.truth(a);
                if t != a {
                    let inst = self.b.func.dfg.value_def(t).unwrap_inst();
                    if let InstructionData::IntCompare { cond, args, .. } =
                        self.b.func.dfg.insts[inst]
                    {
                        let c = self.b.ins().icmp(cond.complement(), args[0], args[1]);
                        return self.b.ins().uextend(I64, c);
                    }
                }
            }
            _ => {}
        }
        let i = self.b.ins();
        match op {
            Bin::Add => i.iadd(a, b),
            Bin::Sub => i.isub(a, b),
            Bin::And => i.band(a, b),
            Bin::Or => i.bor(a, b),
            Bin::Xor => i.bxor(a, b),
            Bin::Shl => i.ishl(a, b),
            Bin::Shr => i.ushr(a, b),
            Bin::Sar => i.sshr(a, b),
            Bin::Rotl => i.rotl(a, b),
            Bin::Rotr => i.rotr(a, b),
            Bin::Mul => i.imul(a, b),
            Bin::UMulHi => i.umulhi(a, b),
            Bin::SMulHi => i.smulhi(a, b),
            Bin::UDiv => i.udiv(a, b),
            Bin::URem => i.urem(a, b),
            Bin::SDiv => i.sdiv(a, b),
            Bin::SRem => i.srem(a, b),
        }
    }

    fn un(&mut self, op: Un, a: Value) -> Value {
        if let Some(x) = self.const_of(a) {
            let v = Values.un(op, x);
            return self.iconst(v);
        }
        let i = self.b.ins();
        match op {
            Un::Not => i.bnot(a),
            Un::Neg => i.ineg(a),
            Un::Popcnt => i.popcnt(a),
            Un::Clz => i.clz(a),
            Un::Ctz => i.ctz(a),
            Un::Bswap => i.bswap(a),
        }
    }

    fn cmp(&mut self, op: Cmp, a: Value, b: Value) -> Value {
        if let (Some(x), Some(y)) = (self.const_of(a), self.const_of(b)) {
            let v = Values.cmp(op, x, y);
            return self.iconst(v);
        }
        let cc = match op {
            Cmp::Eq => IntCC::Equal,
            Cmp::Ne => IntCC::NotEqual,
            Cmp::Ult => IntCC::UnsignedLessThan,
            Cmp::Ule => IntCC::UnsignedLessThanOrEqual,
            Cmp::Slt => IntCC::SignedLessThan,
            Cmp::Sle => IntCC::SignedLessThanOrEqual,
        };
        // Zero-extended operands compare as unsigned or equal in their own width (a 32-bit
        // compare rather than a 64-bit one with a mask).
        if matches!(op, Cmp::Eq | Cmp::Ne | Cmp::Ult | Cmp::Ule) {
            if let Some((x, ty)) = self.narrow(a) {
                let y = match (self.narrow(b), self.const_of(b)) {
                    (Some((y, ty2)), _) if ty2 == ty => Some(y),
                    (_, Some(k)) if k <= u64::MAX >> (64 - ty.bits()) => {
                        Some(self.b.ins().iconst(ty, k as i64))
                    }
                    _ => None,
                };
                if let Some(y) = y {
                    let c = self.b.ins().icmp(cc, x, y);
                    return self.b.ins().uextend(I64, c);
                }
            }
        }
        let c = self.b.ins().icmp(cc, a, b);
        self.b.ins().uextend(I64, c)
    }

    fn select(&mut self, c: Value, a: Value, b: Value) -> Value {
        if let Some(x) = self.const_of(c) {
            return if x != 0 { a } else { b };
        }
        let c = self.truth(c);
        self.b.ins().select(c, a, b)
    }

    fn sext(&mut self, a: Value, bits: u32) -> Value {
        if let Some(x) = self.const_of(a) {
            let v = Values.sext(x, bits);
            return self.iconst(v);
        }
        let ty = match bits {
            8 => types::I8,
            16 => types::I16,
            _ => I32,
        };
        let n = self.b.ins().ireduce(ty, a);
        self.b.ins().sextend(I64, n)
    }

    fn zext(&mut self, a: Value, bits: u32) -> Value {
        if let Some(x) = self.const_of(a) {
            let v = Values.zext(x, bits);
            return self.iconst(v);
        }
        let ty = match bits {
            8 => types::I8,
            16 => types::I16,
            _ => I32,
        };
        if self.zero_extended_from(a) <= ty.bits() {
            // Already zero-extended from as narrow a type.
            return a;
        }
        let n = self.b.ins().ireduce(ty, a);
        self.b.ins().uextend(I64, n)
    }

    fn div_wide(&mut self, signed: bool, hi: Value, lo: Value, d: Value) -> (Value, Value, Value) {
        let s = self.iconst(u64::from(signed));
        let ok = self
            .call_helper(Helper::DivWide, &[s, hi, lo, d])
            .expect("the division helper returns ok");
        let q = self.load_state(off::SCRATCH);
        let r = self.load_state(off::SCRATCH + 8);
        (q, r, ok)
    }

    /// The bits moved to a float register (`bitcast`), one Cranelift float instruction
    /// (`fadd`... `sqrt`: SSE2's ADDSD... on an x86-64 host, IEEE round-to-nearest under
    /// the host's default MXCSR), and back.
    fn float(&mut self, op: FloatOp, w: FloatWidth, a: Value, b: Value) -> Value {
        if let (Some(x), Some(y)) = (self.const_of(a), self.const_of(b)) {
            let v = Values.float(op, w, x, y);
            return self.iconst(v);
        }
        let (ity, fty) = match w {
            FloatWidth::Single => (I32, types::F32),
            FloatWidth::Double => (I64, types::F64),
        };
        let mut to_float = |v: Value| {
            let v = if ity == I32 {
                self.b.ins().ireduce(I32, v)
            } else {
                v
            };
            self.b.ins().bitcast(fty, MemFlagsData::new(), v)
        };
        let x = to_float(a);
        let y = if op == FloatOp::Sqrt { x } else { to_float(b) };
        let i = self.b.ins();
        let r = match op {
            FloatOp::Add => i.fadd(x, y),
            FloatOp::Sub => i.fsub(x, y),
            FloatOp::Mul => i.fmul(x, y),
            FloatOp::Div => i.fdiv(x, y),
            FloatOp::Sqrt => i.sqrt(x),
        };
        let r = self.b.ins().bitcast(ity, MemFlagsData::new(), r);
        if ity == I32 {
            self.b.ins().uextend(I64, r)
        } else {
            r
        }
    }
}
