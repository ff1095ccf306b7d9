//! The MMX/SSE unit in generated code: calls into its helpers (plain and under a guard),
//! PSHUFB as a host shuffle, and the run-time CR4.OSFXSR check of SSE instructions.

use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::{InstBuilder, Value};

use crane86_runtime::state::CR4_OSFXSR;
use crane86_runtime::Fault;

use super::{off, JitEmitter};
use crate::emit::{Emit, FpuHelper, R};

impl JitEmitter<'_, '_> {
    /// [`Emit::shuffle_bytes`] as Cranelift's `swizzle` (the host's PSHUFB): an index of 16
    /// or more gives 0, so `idx & 0x8f` keeps PSHUFB's zeroing bit 7 and its four index bits.
    pub(super) fn swizzle_bytes(&mut self, a: [Value; 2], idx: [Value; 2]) -> [Value; 2] {
        use cranelift_codegen::ir::{types, Endianness, MemFlagsData};
        let little = MemFlagsData::new().with_endianness(Endianness::Little);
        let to_vec = |em: &mut Self, v: [Value; 2]| {
            let x = em.b.ins().scalar_to_vector(types::I64X2, v[0]);
            let x = em.b.ins().insertlane(x, v[1], 1);
            em.b.ins().bitcast(types::I8X16, little, x)
        };
        let av = to_vec(self, a);
        let iv = to_vec(self, idx);
        let m = self.b.ins().iconst(types::I8, 0x8f);
        let m = self.b.ins().splat(types::I8X16, m);
        let iv = self.b.ins().band(iv, m);
        let r = self.b.ins().swizzle(av, iv);
        let r = self.b.ins().bitcast(types::I64X2, little, r);
        [
            self.b.ins().extractlane(r, 0),
            self.b.ins().extractlane(r, 1),
        ]
    }

    /// [`Emit::fpu_call`].
    pub(super) fn call_fpu(&mut self, h: FpuHelper, args: [Value; 4]) -> R<Value> {
        use crane86_runtime::fpu;
        let f = match h {
            FpuHelper::Simd => fpu::simd_helper as *const (),
            FpuHelper::StringCompare => fpu::string_compare_helper as *const (),
            FpuHelper::X87 => fpu::x87_helper as *const (),
            FpuHelper::X87Commit => fpu::x87_commit_helper as *const (),
        };
        let f = self.iconst(f as usize as u64);
        let cpu = self.real_cpu();
        let call = self.b.ins().call_indirect(
            self.sigs.fpu,
            f,
            &[cpu, args[0], args[1], args[2], args[3]],
        );
        let status = self.b.inst_results(call)[0];
        // The helper may have changed any XMM register and MXCSR, and TLB entries.
        self.xmm_loaded = [[false; 2]; 16];
        self.mxcsr = None;
        self.forget_memos();
        self.forget_groups();
        let faulted = self
            .b
            .ins()
            .icmp_imm_s(IntCC::Equal, status, fpu::STATUS_FAULT as i64);
        let (fail, cont) = self.split(faulted);
        self.b.switch_to_block(fail);
        self.exit_fault();
        self.b.switch_to_block(cont);
        Ok(status)
    }

    /// [`Emit::fpu_call_if`].
    pub(super) fn call_fpu_if(
        &mut self,
        cond: Value,
        h: FpuHelper,
        args: [Value; 4],
        io: &[(usize, Value)],
    ) -> R<()> {
        if self.const_of(cond) == Some(0) {
            return Ok(());
        }
        let call = self.b.create_block();
        let merge = self.b.create_block();
        self.b.set_cold_block(call);
        self.b.ins().brif(cond, call, &[], merge, &[]);
        self.b.seal_block(call);
        self.b.switch_to_block(call);
        for &(i, v) in io {
            self.set_fpu_io(i, v);
        }
        // A fault leaves through `fpu_call`'s own cold exit; the instruction goes on at
        // `merge` otherwise, where the XMM halves held in variables get the values the
        // helper left (reloaded here, so the path that skipped the call keeps its own).
        let loaded = self.xmm_loaded;
        self.call_fpu(h, args)?;
        for (r, halves) in loaded.iter().enumerate() {
            for (h, &l) in halves.iter().enumerate() {
                if l {
                    let v = self.load_state(off::XMM + 16 * r as i32 + 8 * h as i32);
                    self.b.def_var(self.xmm[r][h], v);
                }
            }
        }
        self.xmm_loaded = loaded;
        self.b.ins().jump(merge, &[]);
        self.b.seal_block(merge);
        self.b.switch_to_block(merge);
        Ok(())
    }

    /// [`Emit::require_osfxsr`]: once per member, since only runtime-class instructions
    /// (which end a block) write CR4.
    pub(super) fn check_osfxsr(&mut self) -> R<()> {
        if self.osfxsr_checked {
            return Ok(());
        }
        let cr4 = self.load_state(off::CR4);
        let on = self.b.ins().band_imm_s(cr4, CR4_OSFXSR as i64);
        let clear = self.b.ins().icmp_imm_s(IntCC::Equal, on, 0);
        self.raise_if(clear, Fault::new(crane86_runtime::Exception::InvalidOpcode))?;
        self.osfxsr_checked = true;
        Ok(())
    }
}
