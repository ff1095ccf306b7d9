//! The baseline back end's primitives: [`Arith`] and [`Emit`] for [`BaselineEmitter`], each a
//! fixed sequence of host instructions on the emitter's scratch registers and value slots
//! (see the parent module for the frame and the contract).

use super::*;

fn bin_cond(op: Cmp) -> Cond {
    match op {
        Cmp::Eq => Cond::E,
        Cmp::Ne => Cond::Ne,
        Cmp::Ult => Cond::B,
        Cmp::Ule => Cond::Be,
        Cmp::Slt => Cond::L,
        Cmp::Sle => Cond::Le,
    }
}

impl Arith for BaselineEmitter {
    type V = BV;

    fn imm(&mut self, v: u64) -> BV {
        BV::Imm(v)
    }

    fn bin(&mut self, op: Bin, a: BV, b: BV) -> BV {
        if let (BV::Imm(x), BV::Imm(y)) = (a, b) {
            return BV::Imm(Values.bin(op, x, y));
        }
        let alu = match op {
            Bin::Add => Some(Alu::Add),
            Bin::Sub => Some(Alu::Sub),
            Bin::And => Some(Alu::And),
            Bin::Or => Some(Alu::Or),
            Bin::Xor => Some(Alu::Xor),
            _ => None,
        };
        let shift = match op {
            Bin::Shl => Some(Shift::Shl),
            Bin::Shr => Some(Shift::Shr),
            Bin::Sar => Some(Shift::Sar),
            Bin::Rotl => Some(Shift::Rol),
            Bin::Rotr => Some(Shift::Ror),
            _ => None,
        };
        self.get(RAX, a);
        if let Some(alu) = alu {
            match b {
                BV::Imm(y) if i32::try_from(y as i64).is_ok() => {
                    self.asm().alu_imm(alu, RAX, y as i64 as i32)
                }
                _ => {
                    self.get(RCX, b);
                    self.asm().alu(alu, RAX, RCX);
                }
            }
            return self.put(RAX);
        }
        if let Some(sh) = shift {
            // The host masks the count to six bits, as `Values` does (semantics keep
            // shift counts below 64; rotates are modulo 64).
            match b {
                BV::Imm(y) => self.asm().shift_imm(sh, RAX, (y & 63) as u8),
                _ => {
                    self.get(RCX, b);
                    self.asm().shift_cl(sh, RAX);
                }
            }
            return self.put(RAX);
        }
        match op {
            Bin::Mul => {
                self.get(RCX, b);
                self.asm().imul(RAX, RCX);
                self.put(RAX)
            }
            Bin::UMulHi | Bin::SMulHi => {
                self.get(RCX, b);
                let u = if op == Bin::UMulHi {
                    Unary::Mul
                } else {
                    Unary::Imul
                };
                self.asm().unary(u, RCX);
                self.put(RDX)
            }
            // Division: rare, and total in `Values` (no host #DE on any input).
            _ => {
                let code = BV::Imm(helpers::bin_code(op));
                self.call_pure(helpers::bin as *const () as u64, &[code, a, b])
            }
        }
    }

    fn un(&mut self, op: Un, a: BV) -> BV {
        if let BV::Imm(x) = a {
            return BV::Imm(Values.un(op, x));
        }
        match op {
            Un::Not | Un::Neg | Un::Bswap => {
                self.get(RAX, a);
                match op {
                    Un::Not => self.asm().unary(Unary::Not, RAX),
                    Un::Neg => self.asm().unary(Unary::Neg, RAX),
                    _ => self.asm().bswap(RAX),
                }
                self.put(RAX)
            }
            // Counting bits may use instructions the host lacks: through `Values`.
            _ => {
                let code = BV::Imm(helpers::un_code(op));
                self.call_pure(helpers::un as *const () as u64, &[code, a])
            }
        }
    }

    fn cmp(&mut self, op: Cmp, a: BV, b: BV) -> BV {
        if let (BV::Imm(x), BV::Imm(y)) = (a, b) {
            return BV::Imm(Values.cmp(op, x, y));
        }
        self.get(RAX, a);
        self.get(RCX, b);
        self.asm().alu(Alu::Xor, RDX, RDX);
        self.asm().alu(Alu::Cmp, RAX, RCX);
        self.asm().setcc(bin_cond(op), RDX);
        self.put(RDX)
    }

    fn select(&mut self, c: BV, a: BV, b: BV) -> BV {
        if let BV::Imm(c) = c {
            return if c != 0 { a } else { b };
        }
        if a == b {
            return a;
        }
        self.get(RCX, c);
        self.get(RAX, b);
        self.get(RDX, a);
        self.asm().test(RCX);
        self.asm().cmov(Cond::Ne, RAX, RDX);
        self.put(RAX)
    }

    fn sext(&mut self, a: BV, bits: u32) -> BV {
        self.extend(a, bits, true)
    }

    fn zext(&mut self, a: BV, bits: u32) -> BV {
        self.extend(a, bits, false)
    }

    fn div_wide(&mut self, signed: bool, hi: BV, lo: BV, d: BV) -> (BV, BV, BV) {
        let f = helpers::div_wide as *const () as u64;
        let part = |p: u64| BV::Imm(p | u64::from(signed) << 8);
        let q = self.call_pure(f, &[part(0), hi, lo, d]);
        let r = self.call_pure(f, &[part(1), hi, lo, d]);
        let ok = self.call_pure(f, &[part(2), hi, lo, d]);
        (q, r, ok)
    }

    fn float(&mut self, op: FloatOp, w: FloatWidth, a: BV, b: BV) -> BV {
        let code = BV::Imm(helpers::float_code(op, w));
        self.call_pure(helpers::float as *const () as u64, &[code, a, b])
    }
}

impl Emit for BaselineEmitter {
    fn ctx(&self) -> Ctx {
        self.ctx
    }

    fn gpr(&mut self, r: usize) -> BV {
        self.state(off::GPR + 8 * (r & 15) as i32, 8)
    }

    fn set_gpr(&mut self, r: usize, v: BV) {
        self.set_state(off::GPR + 8 * (r & 15) as i32, 8, v);
    }

    fn rflags_rest(&mut self) -> BV {
        self.state(off::RFLAGS, 8)
    }

    fn set_rflags_rest(&mut self, v: BV) {
        self.set_state(off::RFLAGS, 8, v);
    }

    fn seg_base(&mut self, s: SegReg) -> BV {
        self.state(off::SEG + off::SEG_SIZE * s as i32 + off::SEG_BASE, 8)
    }

    fn seg_limit(&mut self, s: SegReg) -> BV {
        self.state(off::SEG + off::SEG_SIZE * s as i32 + off::SEG_LIMIT, 4)
    }

    fn seg_attrs(&mut self, s: SegReg) -> BV {
        self.state(off::SEG + off::SEG_SIZE * s as i32 + off::SEG_ATTRS, 2)
    }

    fn set_cc(&mut self, op: CcOp, src1: BV, src2: BV, res: BV) {
        self.set_state(off::CC, 8, BV::Imm(op.encode()));
        self.set_state(off::CC + 8, 8, src1);
        self.set_state(off::CC + 16, 8, src2);
        self.set_state(off::CC + 24, 8, res);
        self.cc_static = Some(op);
    }

    fn cc_op(&self) -> Option<CcOp> {
        self.cc_static
    }

    fn cc_values(&mut self) -> (BV, BV, BV) {
        let s1 = self.state(off::CC + 8, 8);
        let s2 = self.state(off::CC + 16, 8);
        let res = self.state(off::CC + 24, 8);
        (s1, s2, res)
    }

    fn cc_dynamic_eflags(&mut self) -> BV {
        let op = self.state(off::CC, 8);
        let (s1, s2, res) = self.cc_values();
        self.call_pure(helpers::eflags as *const () as u64, &[op, s1, s2, res])
    }

    fn load(&mut self, linear: BV, size: u32) -> R<BV> {
        self.access(linear, size, None)
    }

    fn store(&mut self, linear: BV, size: u32, v: BV) -> R<()> {
        self.access(linear, size, Some(v)).map(|_| ())
    }

    fn rep_bulk(&mut self, op: BulkOp, size: u32, dst: BV, src: BV, count: BV) -> BV {
        // The helper changes memory only (never faults); it may write translated code,
        // which the store check after the instruction sees.
        self.has_store = true;
        self.get(RSI, dst);
        self.get(RDX, src);
        self.get(RCX, count);
        self.asm().mov_imm(R8, op.code(size));
        self.asm().mov(RDI, RBX);
        self.a
            .call(crane86_runtime::memory::rep_bulk_slow as *const () as u64);
        self.put(RAX)
    }

    fn can_shuffle_bytes(&self) -> bool {
        false
    }

    fn shuffle_bytes(&mut self, _a: [BV; 2], _idx: [BV; 2]) -> [BV; 2] {
        self.decline("PSHUFB's shuffle");
        [BV::Imm(0); 2]
    }

    fn xmm(&mut self, r: usize, half: usize) -> BV {
        self.state(off::XMM + 16 * (r & 15) as i32 + 8 * (half & 1) as i32, 8)
    }

    fn set_xmm(&mut self, r: usize, half: usize, v: BV) {
        self.set_state(
            off::XMM + 16 * (r & 15) as i32 + 8 * (half & 1) as i32,
            8,
            v,
        );
    }

    fn fpu_io(&mut self, i: usize) -> BV {
        self.state(off::FPU_IO + 8 * i as i32, 8)
    }

    fn set_fpu_io(&mut self, i: usize, v: BV) {
        self.set_state(off::FPU_IO + 8 * i as i32, 8, v);
    }

    fn fpu_call(&mut self, h: FpuHelper, args: [BV; 4]) -> R<BV> {
        use crane86_runtime::fpu;
        let f = match h {
            FpuHelper::Simd => fpu::simd_helper as *const () as u64,
            FpuHelper::StringCompare => fpu::string_compare_helper as *const () as u64,
            FpuHelper::X87 => fpu::x87_helper as *const () as u64,
            FpuHelper::X87Commit => fpu::x87_commit_helper as *const () as u64,
        };
        let fault = self.fault_exit();
        for (&r, &v) in [RSI, RDX, RCX, R8].iter().zip(&args) {
            self.get(r, v);
        }
        self.asm().mov(RDI, RBX);
        self.asm().call(f);
        // STATUS_FAULT: the helper recorded the fault.
        self.asm().mov_imm(RCX, fpu::STATUS_FAULT);
        self.asm().alu(Alu::Cmp, RAX, RCX);
        self.asm().jcc(Cond::E, fault);
        Ok(self.put(RAX))
    }

    fn fpu_call_if(&mut self, cond: BV, h: FpuHelper, args: [BV; 4], io: &[(usize, BV)]) -> R<()> {
        match cond {
            BV::Imm(0) => Ok(()),
            BV::Imm(_) => {
                for &(i, v) in io {
                    self.set_fpu_io(i, v);
                }
                self.fpu_call(h, args).map(|_| ())
            }
            BV::Slot(_) => {
                let skip = self.a.label();
                self.get(RAX, cond);
                self.asm().test(RAX);
                self.asm().jcc(Cond::E, skip);
                for &(i, v) in io {
                    self.set_fpu_io(i, v);
                }
                self.fpu_call(h, args)?;
                self.asm().bind(skip);
                Ok(())
            }
        }
    }

    fn mxcsr(&mut self) -> BV {
        self.state(off::MXCSR, 4)
    }

    fn require_osfxsr(&mut self) -> R<()> {
        let at = self.a.label();
        let exit = self.fault_exit();
        self.asm().test_mem32_imm(RBX, off::CR4, CR4_OSFXSR as u32);
        self.asm().jcc(Cond::E, at);
        self.stubs.push(Stub::Raise {
            at,
            fault: Fault::new(Exception::InvalidOpcode),
            exit,
        });
        Ok(())
    }

    fn read_tsc(&mut self) -> R<BV> {
        // Needs the instructions retired so far in the block at run time.
        self.decline("RDTSC");
        Ok(BV::Imm(0))
    }

    fn swap_gs_base(&mut self) {
        let gs = off::SEG + off::SEG_SIZE * SegReg::Gs as i32 + off::SEG_BASE;
        self.asm().load(8, RAX, RBX, gs);
        self.asm().load(8, RCX, RBX, off::KERNEL_GS_BASE);
        self.asm().store(8, RBX, gs, RCX);
        self.asm().store(8, RBX, off::KERNEL_GS_BASE, RAX);
    }

    fn tsc_aux(&mut self) -> BV {
        self.state(off::TSC_AUX, 4)
    }

    fn sti_window(&mut self, _was_clear: BV) {
        // As in the interpreter: the run loop sees the STI itself.
    }

    fn raise_if(&mut self, cond: BV, fault: Fault) -> R<()> {
        match cond {
            BV::Imm(0) => Ok(()),
            BV::Imm(_) => Err(self.raise(fault)),
            BV::Slot(_) => {
                let at = self.a.label();
                let exit = self.fault_exit();
                self.get(RAX, cond);
                self.asm().test(RAX);
                self.asm().jcc(Cond::Ne, at);
                self.stubs.push(Stub::Raise { at, fault, exit });
                Ok(())
            }
        }
    }

    fn raise(&mut self, fault: Fault) -> Stop {
        let at = self.a.label();
        let exit = self.fault_exit();
        self.asm().jmp(at);
        self.stubs.push(Stub::Raise { at, fault, exit });
        self.ended = true;
        Stop
    }

    fn exit_if(&mut self, cond: BV, target: u64) -> R<()> {
        let n = self.index + 1;
        let flags = if n == self.len { RET_WHOLE } else { 0 };
        match cond {
            BV::Imm(0) => Ok(()),
            BV::Imm(_) => {
                self.exit(BV::Imm(target), n, flags);
                self.ended = true;
                Err(Stop)
            }
            BV::Slot(_) => {
                let at = self.a.label();
                self.get(RAX, cond);
                self.asm().test(RAX);
                self.asm().jcc(Cond::Ne, at);
                self.stubs.push(Stub::Exit {
                    at,
                    rip: target,
                    n,
                    flags,
                });
                Ok(())
            }
        }
    }

    fn jump(&mut self, target: BV) {
        self.next = Some(target);
    }

    fn branch(&mut self, cond: BV, taken: u64, not_taken: u64) {
        let t = self.select(cond, BV::Imm(taken), BV::Imm(not_taken));
        self.next = Some(t);
    }
}
