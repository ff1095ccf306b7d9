//! The JIT's [`Emit`]: guest state, flags, memory and helper calls as Cranelift IR (the
//! value operations are `arith`'s, the exits `exits`', the memory accesses `access`').

use super::*;

impl Emit for JitEmitter<'_, '_> {
    fn ctx(&self) -> Ctx {
        self.ctx
    }

    fn gpr(&mut self, r: usize) -> Value {
        if self.reg_state[r] == Slot::Unloaded {
            let v = self.load_state(off::GPR + 8 * r as i32);
            self.b.def_var(self.regs[r], v);
            self.reg_state[r] = Slot::Clean;
        }
        self.b.use_var(self.regs[r])
    }

    /// Keeps the value for later reads in the block and writes it through to CpuState at
    /// once: then no exit has registers to store, which keeps the many cold exits (every
    /// memory access has one) small and the values from living until them, and a register
    /// write costs one store, which the host's store buffer absorbs.
    ///
    /// Within a run of instructions that cannot leave the block, the store waits for the
    /// run's end, so that only a register's last value is stored ([`deferred`]).
    fn set_gpr(&mut self, r: usize, v: Value) {
        self.b.def_var(self.regs[r], v);
        if self.defer_gprs {
            self.gpr_pending |= 1 << r;
        } else {
            self.store_state(v, off::GPR + 8 * r as i32);
            self.gpr_pending &= !(1 << r);
        }
        self.reg_state[r] = Slot::Clean;
    }

    fn rflags_rest(&mut self) -> Value {
        if self.rflags_state == Slot::Unloaded {
            let v = self.load_state(off::RFLAGS);
            self.b.def_var(self.rflags, v);
            self.rflags_state = Slot::Clean;
        }
        self.b.use_var(self.rflags)
    }

    /// Written through at once, as general registers are: then no exit stores it, and in a
    /// region its value does not live around every loop for the exits' sake (the
    /// instructions that write it, CLD, STD, CLI, STI, STAC and CLAC, are rare).
    fn set_rflags_rest(&mut self, v: Value) {
        self.b.def_var(self.rflags, v);
        self.store_state(v, off::RFLAGS);
        self.rflags_state = Slot::Clean;
    }

    fn seg_base(&mut self, s: SegReg) -> Value {
        if let Some(v) = self.seg_base[s as usize] {
            return v;
        }
        let v = self.load_state(off::SEG + off::SEG_SIZE * s as i32);
        self.seg_base[s as usize] = Some(v);
        v
    }

    fn seg_limit(&mut self, s: SegReg) -> Value {
        let at = off::SEG + off::SEG_SIZE * s as i32 + off::SEG_LIMIT;
        self.b.ins().uload32(state_flags(), self.cpu, at)
    }

    fn seg_attrs(&mut self, s: SegReg) -> Value {
        let at = off::SEG + off::SEG_SIZE * s as i32 + off::SEG_ATTRS;
        self.b.ins().uload16(I64, state_flags(), self.cpu, at)
    }

    fn set_cc(&mut self, op: CcOp, src1: Value, src2: Value, res: Value) {
        let o = self.iconst(op.encode());
        self.b.def_var(self.cc[0], o);
        self.b.def_var(self.cc[1], src1);
        self.b.def_var(self.cc[2], src2);
        self.b.def_var(self.cc[3], res);
        self.cc_state = Slot::Dirty;
        self.cc_static = Some(op);
    }

    fn cc_op(&self) -> Option<CcOp> {
        self.cc_static
    }

    fn cc_values(&mut self) -> (Value, Value, Value) {
        self.ensure_cc_loaded();
        (
            self.b.use_var(self.cc[1]),
            self.b.use_var(self.cc[2]),
            self.b.use_var(self.cc[3]),
        )
    }

    fn cc_dynamic_eflags(&mut self) -> Value {
        self.ensure_cc_loaded();
        let args: Vec<Value> = (0..4).map(|i| self.b.use_var(self.cc[i])).collect();
        self.call_helper(Helper::Eflags, &args)
            .expect("eflags_of returns the flags")
    }

    fn guess_cc<F: FnMut(&mut Self) -> Value>(&mut self, mut f: F) -> Value {
        let hint = match self.cc_hint {
            Some(h) if self.cc_static.is_none() && !self.guessing => h,
            _ => return f(self),
        };
        // Loaded before the split, so that both arms see the same variables.
        self.ensure_cc_loaded();
        let op = self.b.use_var(self.cc[0]);
        let hit = self
            .b
            .ins()
            .icmp_imm_s(IntCC::Equal, op, hint.encode() as i64);
        let known = self.b.create_block();
        let other = self.b.create_block();
        let merge = self.b.create_block();
        let result = self.b.append_block_param(merge, I64);
        self.b.set_cold_block(other);
        self.b.ins().brif(hit, known, &[], other, &[]);
        self.b.seal_block(known);
        self.b.seal_block(other);
        self.guessing = true;
        self.b.switch_to_block(known);
        self.cc_static = Some(hint);
        let v = f(self);
        self.cc_static = None;
        self.b.ins().jump(merge, &[BlockArg::Value(v)]);
        self.b.switch_to_block(other);
        let v = f(self);
        self.b.ins().jump(merge, &[BlockArg::Value(v)]);
        self.guessing = false;
        self.b.seal_block(merge);
        self.b.switch_to_block(merge);
        result
    }

    fn load(&mut self, linear: Value, size: u32) -> R<Value> {
        self.load_access(linear, size, 0)
    }

    fn load_ss64(&mut self, linear: Value, size: u32) -> R<Value> {
        self.load_access(linear, size, SLOW_SS64)
    }

    fn store(&mut self, linear: Value, size: u32, v: Value) -> R<()> {
        self.store_access(linear, size, v, 0)
    }

    fn store_ss64(&mut self, linear: Value, size: u32, v: Value) -> R<()> {
        self.store_access(linear, size, v, SLOW_SS64)
    }

    fn rep_bulk(
        &mut self,
        op: BulkOp,
        size: u32,
        dst: Value,
        src_or_value: Value,
        count: Value,
    ) -> Value {
        let code = self.iconst(op.code(size));
        // It returns a value (`Helper::returns`); none would mean no iterations done.
        match self.call_helper(Helper::RepBulk, &[dst, src_or_value, count, code]) {
            Some(done) => done,
            None => self.iconst(0),
        }
    }

    fn can_shuffle_bytes(&self) -> bool {
        static SSSE3: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *SSSE3.get_or_init(|| std::arch::is_x86_feature_detected!("ssse3"))
    }

    /// Cranelift's `swizzle` (the host's PSHUFB): see [`JitEmitter::swizzle_bytes`].
    fn shuffle_bytes(&mut self, a: [Value; 2], idx: [Value; 2]) -> [Value; 2] {
        self.swizzle_bytes(a, idx)
    }

    fn xmm(&mut self, r: usize, half: usize) -> Value {
        let (r, h) = (r & 15, half & 1);
        if !self.xmm_loaded[r][h] {
            let v = self.load_state(off::XMM + 16 * r as i32 + 8 * h as i32);
            self.b.def_var(self.xmm[r][h], v);
            self.xmm_loaded[r][h] = true;
        }
        self.b.use_var(self.xmm[r][h])
    }

    /// Written through, as [`Emit::set_gpr`]: later reads in the block use the value, and
    /// CpuState always holds it for helpers and exits.
    fn set_xmm(&mut self, r: usize, half: usize, v: Value) {
        let (r, h) = (r & 15, half & 1);
        self.b.def_var(self.xmm[r][h], v);
        self.xmm_loaded[r][h] = true;
        self.store_state(v, off::XMM + 16 * r as i32 + 8 * h as i32);
    }

    fn fpu_io(&mut self, i: usize) -> Value {
        self.load_state(off::FPU_IO + 8 * i as i32)
    }

    fn set_fpu_io(&mut self, i: usize, v: Value) {
        self.store_state(v, off::FPU_IO + 8 * i as i32);
    }

    fn fpu_call(&mut self, h: FpuHelper, args: [Value; 4]) -> R<Value> {
        self.call_fpu(h, args)
    }

    fn fpu_call_if(
        &mut self,
        cond: Value,
        h: FpuHelper,
        args: [Value; 4],
        io: &[(usize, Value)],
    ) -> R<()> {
        self.call_fpu_if(cond, h, args, io)
    }

    fn mxcsr(&mut self) -> Value {
        if let Some(v) = self.mxcsr {
            return v;
        }
        let v = self.b.ins().uload32(state_flags(), self.cpu, off::MXCSR);
        self.mxcsr = Some(v);
        v
    }

    fn require_osfxsr(&mut self) -> R<()> {
        self.check_osfxsr()
    }

    fn swap_gs_base(&mut self) {
        let gs_off = off::SEG + off::SEG_SIZE * SegReg::Gs as i32;
        let gs = self.seg_base(SegReg::Gs);
        let kernel = self.load_state(off::KERNEL_GS_BASE);
        self.store_state(kernel, gs_off);
        self.store_state(gs, off::KERNEL_GS_BASE);
        self.seg_base[SegReg::Gs as usize] = Some(kernel);
    }

    fn tsc_aux(&mut self) -> Value {
        // WRMSR keeps only the low 32 bits.
        self.load_state(off::TSC_AUX)
    }

    fn sti_window(&mut self, was_clear: Value) {
        // Back to the run loop whenever it may deliver an interrupt after this block: one is
        // pending, a device access in this block may have raised one (the exit request), or
        // the budget runs out here (a timer deadline).
        let pending = self
            .b
            .ins()
            .uload32(state_flags(), self.cpu, off::IRQ_PENDING);
        let request = self
            .b
            .ins()
            .uload32(state_flags(), self.cpu, off::EXIT_REQUEST);
        let budget = self.b.use_var(self.budget);
        let ends = self.b.ins().icmp_imm_s(
            IntCC::SignedLessThanOrEqual,
            budget,
            i64::from(self.index + 1),
        );
        let ends = self.b.ins().uextend(I64, ends);
        let any = self.b.ins().bor(pending, request);
        let any = self.b.ins().bor(any, ends);
        let any = self.b.ins().icmp_imm_s(IntCC::NotEqual, any, 0);
        let any = self.b.ins().uextend(I64, any);
        let deliver = self.b.ins().band(was_clear, any);
        let (exit, cont) = self.split(deliver);
        self.b.switch_to_block(exit);
        let one = self.b.ins().iconst(I32, 1);
        self.b
            .ins()
            .store(state_flags(), one, self.cpu, off::STI_SHADOW);
        let next = self.iconst(self.insn_next_ip);
        self.exit_next(next, self.index + 1);
        self.b.switch_to_block(cont);
    }

    fn read_tsc(&mut self) -> R<Value> {
        if self.chain.key.cpl() > 0 {
            let cr4 = self.load_state(off::CR4);
            let tsd = self
                .b
                .ins()
                .band_imm_s(cr4, crane86_runtime::state::CR4_TSD as i64);
            self.raise_if(
                tsd,
                Fault::with_code(crane86_runtime::Exception::GeneralProtection, 0),
            )?;
        }
        let base = self.load_state(off::TSC_BASE);
        let budget = self.b.use_var(self.budget);
        let t = self.b.ins().isub(base, budget);
        Ok(self.b.ins().iadd_imm_s(t, i64::from(self.index)))
    }

    fn raise_if(&mut self, cond: Value, fault: Fault) -> R<()> {
        match self.const_of(cond) {
            Some(0) => return Ok(()),
            Some(_) => return Err(self.raise(fault)),
            None => {}
        }
        let (fail, cont) = self.split(cond);
        self.b.switch_to_block(fail);
        self.record_fault(fault);
        self.exit_fault();
        self.b.switch_to_block(cont);
        Ok(())
    }

    fn exit_if(&mut self, cond: Value, target: u64) -> R<()> {
        let n = self.index + 1;
        match self.const_of(cond) {
            Some(0) => return Ok(()),
            Some(_) => {
                self.exit_chain(target, n);
                self.finish_instruction_end();
                return Err(Stop);
            }
            None => {}
        }
        let (exit, cont) = self.split(cond);
        self.b.switch_to_block(exit);
        self.exit_chain(target, n);
        self.b.switch_to_block(cont);
        Ok(())
    }

    fn raise(&mut self, fault: Fault) -> Stop {
        self.record_fault(fault);
        self.exit_fault();
        self.finish_instruction_end();
        Stop
    }

    fn jump(&mut self, target: Value) {
        let n = self.index + 1;
        match self.const_of(target) {
            Some(t) => self.exit_chain(t, n),
            None => {
                self.write_back();
                self.jump_tail(target, n);
            }
        }
        self.finish_instruction_end();
    }

    fn predict_return(&mut self, ret: u64) {
        self.push_return(ret);
    }

    fn return_to(&mut self, target: Value) {
        self.predicted_return(target);
    }

    fn branch(&mut self, cond: Value, taken: u64, not_taken: u64) {
        let n = self.index + 1;
        if let Some(c) = self.const_of(cond) {
            self.exit_chain(if c != 0 { taken } else { not_taken }, n);
            self.finish_instruction_end();
            return;
        }
        let internal = self.head_of(taken).is_some() || self.head_of(not_taken).is_some();
        let slots = if internal {
            None
        } else {
            self.slot_for(taken).zip(self.slot_for(not_taken))
        };
        if let Some((s0, s1)) = slots {
            self.write_back();
            self.chain_tail(Some(cond), [(taken, s0), (not_taken, s1)], n);
        } else {
            let t = self.b.create_block();
            let f = self.b.create_block();
            let cond = self.truth(cond);
            self.b.ins().brif(cond, t, &[], f, &[]);
            self.b.seal_block(t);
            self.b.seal_block(f);
            self.b.switch_to_block(t);
            self.exit_chain(taken, n);
            self.b.switch_to_block(f);
            self.exit_chain(not_taken, n);
        }
        self.finish_instruction_end();
    }
}
