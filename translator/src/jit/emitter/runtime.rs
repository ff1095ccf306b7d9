//! A runtime-class instruction in generated code: a call to the interpreter for it, then on
//! to the next block through a lookup keyed by the state it left (see `crate::rewrite`).

use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::InstBuilder;

use crane86_runtime::CpuMode;

use super::super::helpers::{RUNTIME_BAIL, RUNTIME_DONE, RUNTIME_FAULT};
use super::super::shims::Helper;
use super::super::{off, EXIT_NEXT};
use super::exits::Dest;
use super::JitEmitter;
use crate::decode::DecodedBlock;

impl JitEmitter<'_, '_> {
    /// Whether `block` is a runtime-class instruction this code may run through
    /// [`super::super::helpers::run_runtime`]: one [`crate::rewrite::runs_compiled`] accepts,
    /// with the cache's boxed copy of the block to hand the helper.
    pub(super) fn runs_runtime(&self, block: &DecodedBlock) -> bool {
        block.is_runtime()
            && self.chain.runtime != 0
            && crate::rewrite::runs_compiled(&block.insns[0].insn)
    }

    /// The code of a block holding one runtime-class instruction (see
    /// [`Self::runs_runtime`]). Nothing of the guest state lives in variables here: the
    /// helper reads and writes `CpuState`, where the previous block left everything.
    pub(super) fn translate_runtime(&mut self, block: &DecodedBlock) {
        let d = &block.insns[0];
        self.insn_ip = d.insn.ip();
        self.index = 0;
        let copy = self.iconst(self.chain.runtime);
        let status = self
            .call_helper(Helper::RunRuntime, &[copy])
            .expect("run_runtime returns a status");
        let not_done = self
            .b
            .ins()
            .icmp_imm_u(IntCC::NotEqual, status, RUNTIME_DONE as i64);
        let (other, next) = self.split(not_done);
        // Not done: a fault (at the instruction, nothing retired), an instruction left to the
        // run loop (nothing retired, RIP at it) or one that retired but needs the run loop.
        self.b.switch_to_block(other);
        let faulted = self
            .b
            .ins()
            .icmp_imm_u(IntCC::Equal, status, RUNTIME_FAULT as i64);
        let (fault, rest) = self.split(faulted);
        self.b.switch_to_block(fault);
        self.exit_fault();
        self.b.switch_to_block(rest);
        let bailed = self
            .b
            .ins()
            .icmp_imm_u(IntCC::Equal, status, RUNTIME_BAIL as i64);
        let one = self.iconst(1);
        let zero = self.iconst(0);
        let n = self.b.ins().select(bailed, zero, one);
        let bud = self.b.use_var(self.budget);
        let bud = self.b.ins().isub(bud, n);
        self.b.def_var(self.budget, bud);
        self.store_state(zero, off::LINK);
        self.ret(EXIT_NEXT);
        // Done: on to the block at the new RIP, in whatever mode the instruction left.
        self.b.switch_to_block(next);
        let rip = self.load_state(off::RIP);
        let dest = self.mode_after(&d.insn);
        self.jump_tail_keyed(rip, 1, dest);
        self.ended = true;
    }

    /// The mode a runtime-class instruction that retired leaves: known for SYSCALL and
    /// 64-bit SYSRET in 64-bit code that is not single-stepped (their flat segment caches
    /// make it; see
    /// [`crane86_runtime::BlockKey::after_fast_call`]), which then find their target through
    /// the jump cache; read from the CPU state for any other.
    fn mode_after(&self, insn: &iced_x86::Instruction) -> Dest {
        use iced_x86::Mnemonic;
        let k = self.chain.key;
        if k.mode() != CpuMode::Long64 || k.single_step() {
            return Dest::FromState;
        }
        match insn.mnemonic() {
            Mnemonic::Syscall => Dest::Mode(k.after_fast_call(0)),
            Mnemonic::Sysretq => Dest::Mode(k.after_fast_call(3)),
            _ => Dest::FromState,
        }
    }
}
