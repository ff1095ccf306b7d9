//! Register-preserving shims for the helpers that generated code calls on its slow paths.
//!
//! A block calls a Rust helper (`extern "C"`, the host's System V convention) when a memory
//! access misses the TLB, when the flags' operation is unknown, for a wide division and to
//! find the code of an indirect branch's target. Such a call clobbers every caller-saved
//! register, so every value the block still needs after it (the `CpuState` pointer at least)
//! had to sit in a callee-saved register, and a block that has one such call anywhere, even on
//! a cold path, saved and restored those registers in its prologue and epilogue on every run:
//! up to ten memory accesses per block transfer.
//!
//! Instead, blocks call a shim in Cranelift's `preserve_all` convention, which clobbers
//! nothing: values stay where they are across the call, and a block's prologue only saves the
//! registers its own code uses. The shim calls the helper in the System V convention and,
//! since `preserve_all` has no return values, leaves the helper's result in
//! `CpuState::helper_ret`. Cranelift compiles each shim and saves exactly the registers the
//! call inside may clobber (the caller-saved general registers and the XMM registers): the
//! cost moves from every block run to the slow paths.
//!
//! The shim's only argument is the CPU state pointer, which blocks hold in the first argument
//! register anyway; the helper's other arguments go through `CpuState::helper_args`. Passed
//! in registers, they claimed the argument registers at every slow path's call, and the
//! register allocator kept the values that live through a block out of those registers for
//! the whole block, not only around the cold call: the budget, which arrives in the second
//! argument register, was moved out at every entry and back at every exit, and a block short
//! of registers took callee-saved ones, saved and restored on every run.

use cranelift_codegen::ir::{types, AbiParam, InstBuilder, Signature, UserFuncName};
use cranelift_codegen::isa::CallConv;
use cranelift_frontend::FunctionBuilder;

use super::{off, state_flags, Jit, JitError};

/// The helpers that generated code reaches through a shim.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Helper {
    /// `crane86_runtime::memory::load_slow(cpu, linear, size) -> value`.
    LoadSlow,
    /// `crane86_runtime::memory::store_slow(cpu, linear, size, value)`.
    StoreSlow,
    /// [`super::helpers::eflags_of`]`(op, src1, src2, res) -> flags` (no CPU argument).
    Eflags,
    /// [`super::helpers::div_wide_helper`]`(cpu, signed, hi, lo, divisor) -> ok`.
    DivWide,
    /// [`super::helpers::jump_lookup`]`(cpu, rip, cs_base, mode bits, table) -> code`.
    JumpLookup,
    /// [`super::helpers::run_runtime`]`(cpu, block) -> status`.
    RunRuntime,
    /// `crane86_runtime::memory::rep_bulk_slow(cpu, dst, src or value, count, op) -> done`.
    RepBulk,
}

impl Helper {
    /// Every helper, in the order of [`Shims::addr`].
    pub const ALL: [Helper; 7] = [
        Helper::LoadSlow,
        Helper::StoreSlow,
        Helper::Eflags,
        Helper::DivWide,
        Helper::JumpLookup,
        Helper::RunRuntime,
        Helper::RepBulk,
    ];

    /// The helper's own address.
    pub fn function(self) -> u64 {
        use crane86_runtime::memory::{load_slow, rep_bulk_slow, store_slow};
        let f = match self {
            Helper::LoadSlow => load_slow as *const (),
            Helper::StoreSlow => store_slow as *const (),
            Helper::Eflags => super::helpers::eflags_of as *const (),
            Helper::DivWide => super::helpers::div_wide_helper as *const (),
            Helper::JumpLookup => super::helpers::jump_lookup as *const (),
            Helper::RunRuntime => super::helpers::run_runtime as *const (),
            Helper::RepBulk => rep_bulk_slow as *const (),
        };
        f as usize as u64
    }

    /// Its arguments other than the CPU state pointer.
    pub fn args(self) -> usize {
        match self {
            Helper::RunRuntime => 1,
            Helper::LoadSlow => 2,
            Helper::StoreSlow => 3,
            Helper::Eflags | Helper::DivWide | Helper::JumpLookup | Helper::RepBulk => 4,
        }
    }

    /// Whether its first argument is the CPU state pointer.
    pub fn takes_cpu(self) -> bool {
        self != Helper::Eflags
    }

    /// Whether it returns a value.
    pub fn returns(self) -> bool {
        self != Helper::StoreSlow
    }

    /// Its System V signature.
    pub fn host_signature(self, host: CallConv) -> Signature {
        let mut s = Signature::new(host);
        let n = self.args() + usize::from(self.takes_cpu());
        s.params.extend((0..n).map(|_| AbiParam::new(types::I64)));
        if self.returns() {
            s.returns.push(AbiParam::new(types::I64));
        }
        s
    }

    /// The shim's signature: the CPU state pointer alone; the helper's other arguments are
    /// in `CpuState::helper_args`.
    pub fn shim_signature(self) -> Signature {
        let mut s = Signature::new(CallConv::PreserveAll);
        s.params.push(AbiParam::new(types::I64));
        s
    }
}

/// The shims' entry points, indexed like [`Helper::ALL`]; all zero when blocks call the
/// helpers directly (code compiled outside a cache).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Shims {
    /// Entry point of each helper's shim.
    pub addr: [u64; Helper::ALL.len()],
}

impl Shims {
    /// The shim of `h`, if there are shims.
    pub fn of(&self, h: Helper) -> Option<u64> {
        let a = self.addr[h as usize];
        (a != 0).then_some(a)
    }
}

impl Jit {
    /// Compiles the shim of helper `h`: a `preserve_all` function that calls it and stores
    /// its result in `CpuState::helper_ret`.
    pub fn compile_shim(&mut self, h: Helper) -> Result<Vec<u8>, JitError> {
        self.ctx.func.signature = h.shim_signature();
        self.ctx.func.name = UserFuncName::user(0, 2 + h as u32);
        let host = h.host_signature(self.isa.default_call_conv());
        let fc = self.isa.frontend_config();
        let mut b = FunctionBuilder::new(&mut self.ctx.func, &mut self.fctx);
        let params = super::enter_function(&mut b);
        let cpu = params[0];
        let mut args = Vec::with_capacity(h.args() + 1);
        if h.takes_cpu() {
            // Rust takes the real pointer (see `CPU_BIAS`).
            args.push(b.ins().iadd_imm_s(cpu, -i64::from(super::CPU_BIAS)));
        }
        for i in 0..h.args() {
            let at = off::HELPER_ARGS + 8 * i as i32;
            args.push(b.ins().load(types::I64, state_flags(), cpu, at));
        }
        let sig = b.import_signature(host);
        let f = b.ins().iconst(types::I64, h.function() as i64);
        let call = b.ins().call_indirect(sig, f, &args);
        if h.returns() {
            let r = b.inst_results(call)[0];
            b.ins().store(state_flags(), r, cpu, off::HELPER_RET);
        }
        b.ins().return_(&[]);
        b.finalize(fc);
        self.finish_plain()
    }
}

#[cfg(test)]
mod tests {
    use iced_x86::code_asm::*;
    use iced_x86::{Decoder, DecoderOptions, Mnemonic, Register};

    use super::Shims;
    use crate::decode::decode_block;
    use crate::emit::Ctx;
    use crate::jit::{slot_token, ChainSlots, Jit, JitOptions, TIER_UP_RUNS};
    use crane86_runtime::{BlockKey, CpuMode, CpuState};

    /// A block of three memory accesses, compiled as the cache compiles it (slow paths
    /// through shims), keeps everything in registers: its hot code has no stack slot (no
    /// spill, no callee-saved register saved and restored on every run) and leaves the budget
    /// in the register it arrives in (`rsi`), only counting it down. With the helpers'
    /// arguments in registers, every slow path's call claimed `rsi`, `rdx` and `rcx`, and
    /// this block saved two callee-saved registers.
    #[test]
    fn a_block_with_slow_paths_keeps_no_stack_frame_and_its_budget_in_place() {
        let mut a = CodeAssembler::new(64).unwrap();
        a.mov(rax, qword_ptr(rbx)).unwrap();
        a.add(qword_ptr(rsi + 8), rax).unwrap();
        a.mov(rcx, qword_ptr(rdx)).unwrap();
        a.jmp(0x2000u64).unwrap();
        let ip = 0x1000;
        let bytes = a.assemble(ip).unwrap();
        let mut cpu = CpuState::new(CpuMode::Long64);
        cpu.rip = ip;
        let key = BlockKey::new(ip, &cpu);
        let ctx = Ctx::of(&key);
        let block = decode_block(&bytes, ip, 4096, ctx, false);
        let mut jit = Jit::new(JitOptions {
            optimize: true,
            verify: true,
            background: false,
            count_chains: false,
            tiered: false,
            tier_up_runs: TIER_UP_RUNS,
        })
        .unwrap();
        // The code is only looked at, never run: any nonzero addresses do.
        let chain = ChainSlots {
            slot_addr: [0x10_0000, 0x10_0008, 0x10_0010],
            token: [0, 1, 2].map(|s| slot_token(1, s)),
            key,
            jump_table: 0x20_0000,
            epoch: 0x30_0000,
            count: false,
            shims: Shims {
                addr: std::array::from_fn(|i| 0x40_0000 + 0x100 * i as u64),
            },
            runtime: 0,
            tier_up: 0,
            tier_up_runs: TIER_UP_RUNS,
            jump_cache: 0x10_0038,
            second_page: None,
        };
        let code = jit.compile_block(&block, chain).unwrap();
        let cut = code.cut.as_ref().expect("the slow paths are cold").at as usize;
        let mut budget_writes = 0;
        for insn in Decoder::with_ip(64, &code.bytes[..cut], 0, DecoderOptions::NONE) {
            // The frame pointer's push, pop and moves are the only stack work left.
            let stack = insn.memory_base() == Register::RSP
                || insn.memory_base() == Register::RBP
                || (insn.op0_register() == Register::RSP && insn.mnemonic() != Mnemonic::Mov);
            assert!(!stack, "a stack slot in the hot code: {insn}");
            let copies_budget = insn.mnemonic() == Mnemonic::Mov
                && insn.op_count() == 2
                && insn.op1_register() == Register::RSI;
            assert!(!copies_budget, "the budget moves: {insn}");
            budget_writes += usize::from(insn.op0_register() == Register::RSI);
        }
        assert!(budget_writes > 0, "the exit counts the budget down in rsi");
    }
}
