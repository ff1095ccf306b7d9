//! [`JitEmitter`]: the [`Emit`] implementation that builds Cranelift IR for one block.

use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::{
    types, AbiParam, Block, BlockArg, InstBuilder, InstructionData, Opcode, SigRef, Signature,
    Value, ValueDef,
};
use cranelift_codegen::isa::CallConv;
use cranelift_frontend::{FunctionBuilder, Variable};

use crane86_runtime::memory::{BulkOp, TlbEntry, SLOW_SS64};
use crane86_runtime::{CcOp, Fault, SegReg};

use super::shims::Helper;
use super::{guest_flags, off, state_flags, ChainSlots};
use crate::decode::DecodedBlock;
use crate::emit::{Ctx, Emit, FpuHelper, Stop, R};

mod access;
mod arith;
mod deferred;
mod emit;
mod exits;
mod group;
mod jump_cache;
mod memo;
mod region;
mod ret;
mod runtime;
mod simd;

const I64: types::Type = types::I64;
const I32: types::Type = types::I32;

/// Where a piece of guest state stands inside the block being translated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Slot {
    /// Not read yet: the variable is undefined.
    Unloaded,
    /// Loaded from CpuState and unchanged.
    Clean,
    /// Changed: must be stored back at every exit.
    Dirty,
}

struct Sigs {
    block: SigRef,
    fpu: SigRef,
    /// Per [`Helper`]: its host signature and its shim's, imported on first use.
    helper: [Option<(SigRef, SigRef)>; Helper::ALL.len()],
    /// Per direct chain slot: the pseudo-function its exits jump to ([`super::direct`]),
    /// imported on first use.
    direct: [Option<cranelift_codegen::ir::FuncRef>; super::direct::DIRECT_SLOTS],
}

/// Builds the IR of one block. See the module documentation of [`crate::jit`].
pub struct JitEmitter<'a, 'f> {
    /// Instructions left before the vCPU must return to the run loop: a block parameter,
    /// passed on to chained blocks and stored to `CpuState::budget` on every return.
    budget: Variable,
    host_cc: CallConv,
    b: &'a mut FunctionBuilder<'f>,
    cpu: Value,
    ctx: Ctx,
    regs: [Variable; 16],
    reg_state: [Slot; 16],
    rflags: Variable,
    rflags_state: Slot,
    /// op, src1, src2, res
    cc: [Variable; 4],
    cc_state: Slot,
    cc_static: Option<CcOp>,
    /// The block's profile hint for the flags' operation on entry ([`Emit::guess_cc`]).
    cc_hint: Option<CcOp>,
    /// Inside [`Emit::guess_cc`]: no nested guess.
    guessing: bool,
    seg_base: [Option<Value>; 6],
    insn_ip: u64,
    /// The address of the instruction after the current one.
    insn_next_ip: u64,
    index: u32,
    ended: bool,
    sigs: Sigs,
    chain: ChainSlots,
    /// For a region (several guest blocks compiled together, or one that branches back to
    /// its own start): each member's start address and header. A transfer to a member jumps
    /// to its header with the guest state still in variables, instead of storing it and
    /// chaining.
    heads: Vec<(u64, Block)>,
    /// The start addresses of the members whose first instruction sets every arithmetic
    /// flag without reading one and without a way out before it: a transfer there need not
    /// store the flags record ([`Self::loop_back`]).
    flags_dead_at: Vec<u64>,
    /// The start addresses of the members that read a flag before they set one: transfers
    /// there hand the flags record on in its variables rather than through `CpuState`
    /// ([`Self::carry_flags`]).
    flags_carried_to: Vec<u64>,
    /// The targets of the two chain slots, assigned as exits ask for them: each slot only
    /// ever serves one target, since the cache links a slot to one block.
    slot_target: [Option<u64>; 2],
    /// The return address of the near CALL that the return slot serves (the first compiled).
    ret_slot_target: Option<u64>,
    /// XMM0-15 halves as variables, written through like the general registers (see
    /// [`Emit::set_xmm`]); `xmm_loaded` tells which hold CpuState's current value.
    xmm: [[Variable; 2]; 16],
    xmm_loaded: [[bool; 2]; 16],
    /// MXCSR as loaded since the last helper call (only helpers change it).
    mxcsr: Option<Value>,
    /// CR4.OSFXSR was checked in this member ([`Emit::require_osfxsr`]).
    osfxsr_checked: bool,
    /// A region's load-site memos ([`memo`]); empty outside regions.
    memos: Vec<memo::Memo>,
    /// Load sites given a memo so far.
    memos_used: usize,
    /// The instructions of the region whose loads get a memo ([`memo::memo_sites`]).
    memo_sites: Vec<u64>,
    /// The current instruction is one of them.
    memo_here: bool,
    /// Block parameters known to be zero-extended from so many bits: the results of guest
    /// loads narrower than 8 bytes ([`JitEmitter::zero_extended_from`]).
    narrow_params: std::collections::HashMap<Value, u8>,
    /// The current instruction's register writes may wait ([`deferred`]).
    defer_gprs: bool,
    /// Registers written and not stored yet (a bit per register).
    gpr_pending: u16,
    /// The function's fault exits, one per kind of write-back ([`Self::exit_fault`]).
    fault_exits: Vec<(exits::WriteBack, Block)>,
    /// The variables of the member's access groups ([`group`]), declared at the entry.
    group_vars: Vec<Variable>,
    /// The member's groups started so far, the `n`th with the `n`th variable.
    groups: Vec<group::Started>,
    /// The member's planned groups not started yet.
    group_plan: Vec<group::Planned>,
}

/// The general registers (a bit per register, RAX = bit 0) that the instructions of `block`
/// read or write, explicitly or implicitly, by iced-x86's instruction information.
fn used_gprs(blocks: &[DecodedBlock]) -> u16 {
    use iced_x86::{InstructionInfoFactory, OpAccess, Register};
    let mut f = InstructionInfoFactory::new();
    let mut mask = 0u16;
    for d in blocks.iter().flat_map(|b| &b.insns) {
        for u in f.info(&d.insn).used_registers() {
            let full = u.register().full_register();
            if u.access() != OpAccess::None && full.is_gpr64() {
                mask |= 1 << (full as u32 - Register::RAX as u32);
            }
        }
    }
    mask
}

fn sig(cc: CallConv, params: usize, returns: usize) -> Signature {
    let mut s = Signature::new(cc);
    s.params.extend((0..params).map(|_| AbiParam::new(I64)));
    s.returns.extend((0..returns).map(|_| AbiParam::new(I64)));
    s
}

impl<'a, 'f> JitEmitter<'a, 'f> {
    /// An emitter writing into `b`, whose current block is the function entry.
    pub fn new(
        b: &'a mut FunctionBuilder<'f>,
        cpu: Value,
        budget: Value,
        ctx: Ctx,
        block_sig: Signature,
        host_cc: CallConv,
        chain: ChainSlots,
    ) -> Self {
        let regs = std::array::from_fn(|_| b.declare_var(I64));
        let rflags = b.declare_var(I64);
        let cc = std::array::from_fn(|_| b.declare_var(I64));
        let budget_var = b.declare_var(I64);
        b.def_var(budget_var, budget);
        let xmm = std::array::from_fn(|_| [b.declare_var(I64), b.declare_var(I64)]);
        let sigs = Sigs {
            block: b.import_signature(block_sig),
            fpu: b.import_signature(sig(host_cc, 5, 1)),
            helper: [None; Helper::ALL.len()],
            direct: [None; super::direct::DIRECT_SLOTS],
        };
        let mut e = JitEmitter {
            budget: budget_var,
            host_cc,
            b,
            cpu,
            ctx,
            regs,
            reg_state: [Slot::Unloaded; 16],
            rflags,
            rflags_state: Slot::Unloaded,
            cc,
            cc_state: Slot::Unloaded,
            cc_static: None,
            cc_hint: None,
            guessing: false,
            seg_base: [None; 6],
            insn_ip: 0,
            insn_next_ip: 0,
            index: 0,
            ended: false,
            sigs,
            chain,
            heads: Vec::new(),
            flags_dead_at: Vec::new(),
            flags_carried_to: Vec::new(),
            slot_target: [None; 2],
            ret_slot_target: None,
            xmm,
            xmm_loaded: [[false; 2]; 16],
            mxcsr: None,
            osfxsr_checked: false,
            memos: Vec::new(),
            memos_used: 0,
            memo_sites: Vec::new(),
            memo_here: false,
            narrow_params: std::collections::HashMap::new(),
            defer_gprs: false,
            gpr_pending: 0,
            fault_exits: Vec::new(),
            group_vars: Vec::new(),
            groups: Vec::new(),
            group_plan: Vec::new(),
        };
        e.declare_group_vars();
        e
    }

    fn iconst(&mut self, v: u64) -> Value {
        self.b.ins().iconst(I64, v as i64)
    }

    fn const_of(&self, v: Value) -> Option<u64> {
        let dfg = &self.b.func.dfg;
        match dfg.value_def(v) {
            ValueDef::Result(inst, 0) => match dfg.insts[inst] {
                InstructionData::UnaryImm {
                    opcode: Opcode::Iconst,
                    imm,
                } => Some(imm.bits() as u64),
                _ => None,
            },
            _ => None,
        }
    }

    /// The instruction that defines `v`, with its opcode and arguments.
    fn def_of(&self, v: Value) -> Option<(Opcode, &[Value])> {
        let dfg = &self.b.func.dfg;
        match dfg.value_def(v) {
            ValueDef::Result(inst, 0) => Some((dfg.insts[inst].opcode(), dfg.inst_args(inst))),
            _ => None,
        }
    }

    /// The value to test for "non-zero" in place of `c`: for a 0/1 value made by zero-extending
    /// a comparison ([`Arith::cmp`]), the comparison itself, so that the host compares and
    /// branches (or selects) on its flags directly.
    fn truth(&self, c: Value) -> Value {
        match self.def_of(c) {
            Some((Opcode::Uextend, &[x]))
                if self.def_of(x).is_some_and(|(o, _)| o == Opcode::Icmp) =>
            {
                x
            }
            _ => c,
        }
    }

    /// The width in bits that `a` is known to be zero-extended from (64 when nothing is
    /// known): a zero extension, a narrow load, or a narrow guest load's result.
    fn zero_extended_from(&self, a: Value) -> u32 {
        match self.def_of(a) {
            Some((Opcode::Uextend, &[x])) => self.b.func.dfg.value_type(x).bits(),
            Some((Opcode::Uload8, _)) => 8,
            Some((Opcode::Uload16, _)) => 16,
            Some((Opcode::Uload32, _)) => 32,
            _ => self.narrow_params.get(&a).map_or(64, |&b| u32::from(b)),
        }
    }

    /// `a` without a zero extension from a narrower type, with that type, when it is one.
    fn narrow(&self, a: Value) -> Option<(Value, types::Type)> {
        match self.def_of(a) {
            Some((Opcode::Uextend, &[x])) => Some((x, self.b.func.dfg.value_type(x))),
            _ => None,
        }
    }

    /// Branches on `c` to a new cold block (returned first) or a new continuation block, and
    /// seals both (each has this one predecessor). The continuation of a cold block is cold
    /// too: a slow path's rest must not sit between a fast path and the code after it.
    fn split(&mut self, c: Value) -> (Block, Block) {
        let cold = self
            .b
            .current_block()
            .is_some_and(|cur| self.b.func.layout.is_cold(cur));
        let c = self.truth(c);
        let (yes, no) = self.fork(c);
        self.b.set_cold_block(yes);
        if cold {
            self.b.set_cold_block(no);
        }
        (yes, no)
    }

    /// Branches on `c` (zero or not) to two new sealed blocks, returned as (non-zero, zero);
    /// the current block ends.
    pub(super) fn fork(&mut self, c: Value) -> (Block, Block) {
        let yes = self.b.create_block();
        let no = self.b.create_block();
        self.b.ins().brif(c, yes, &[], no, &[]);
        self.b.seal_block(yes);
        self.b.seal_block(no);
        (yes, no)
    }

    /// Calls helper `h` with `args` (after the CPU state pointer, for those that take it):
    /// through its register-preserving shim when the cache made shims, directly otherwise.
    /// Returns its result, if it has one.
    ///
    /// [`Helper::RunRuntime`] is always called directly: its block holds nothing but the
    /// CPU state pointer across the call, so the System V convention costs the block one
    /// callee-saved register, where the shim saved every caller-saved general and XMM
    /// register (about fifty memory accesses per SYSCALL, SYSRET or IRET).
    fn call_helper(&mut self, h: Helper, args: &[Value]) -> Option<Value> {
        let (host, shim) = match self.sigs.helper[h as usize] {
            Some(s) => s,
            None => {
                let host = self.b.import_signature(h.host_signature(self.host_cc));
                let shim = self.b.import_signature(h.shim_signature());
                self.sigs.helper[h as usize] = Some((host, shim));
                (host, shim)
            }
        };
        if !matches!(
            h,
            Helper::LoadSlow | Helper::StoreSlow | Helper::Eflags | Helper::DivWide
        ) {
            // See `memo`: only the memory slow paths are known to leave read rights alone.
            self.forget_memos();
        }
        if !matches!(h, Helper::Eflags | Helper::DivWide) {
            // See `group`: the slow paths may also take write rights away.
            self.forget_groups();
        }
        match self.chain.shims.of(h).filter(|_| h != Helper::RunRuntime) {
            Some(addr) => {
                for (i, &a) in args.iter().enumerate() {
                    self.store_state(a, off::HELPER_ARGS + 8 * i as i32);
                }
                let f = self.iconst(addr);
                self.b.ins().call_indirect(shim, f, &[self.cpu]);
                h.returns().then(|| self.load_state(off::HELPER_RET))
            }
            None => {
                let mut all = Vec::with_capacity(args.len() + 1);
                let f = self.iconst(h.function());
                if h.takes_cpu() {
                    all.push(self.real_cpu());
                }
                all.extend_from_slice(args);
                let call = self.b.ins().call_indirect(host, f, &all);
                h.returns().then(|| self.b.inst_results(call)[0])
            }
        }
    }

    /// The address of `CpuState` itself, for calls into Rust: generated code holds a
    /// pointer [`super::CPU_BIAS`] bytes into it.
    pub(super) fn real_cpu(&mut self) -> Value {
        self.b
            .ins()
            .iadd_imm_s(self.cpu, -i64::from(super::CPU_BIAS))
    }

    fn store_state(&mut self, v: Value, offset: i32) {
        self.b.ins().store(state_flags(), v, self.cpu, offset);
    }

    fn load_state(&mut self, offset: i32) -> Value {
        self.b.ins().load(I64, state_flags(), self.cpu, offset)
    }

    /// Word `i` of the flags record in `CpuState` (`LazyFlags`: the operation, then the
    /// operands and the result).
    ///
    /// The operation is read and written as its low byte: every `CcOp::encode` fits one,
    /// and every writer of the word (the runtime's whole-word ones included) leaves the
    /// upper bytes zero. A constant operation's store is then `movb $imm8` (4 bytes) where a
    /// quadword's immediate took 8, at most exits of hot code.
    fn load_cc(&mut self, i: usize) -> Value {
        let at = off::CC + 8 * i as i32;
        if i == 0 {
            self.b.ins().uload8(I64, state_flags(), self.cpu, at)
        } else {
            self.load_state(at)
        }
    }

    /// Stores word `i` of the flags record ([`Self::load_cc`]).
    fn store_cc(&mut self, v: Value, i: usize) {
        let at = off::CC + 8 * i as i32;
        if i == 0 {
            self.b.ins().istore8(state_flags(), v, self.cpu, at);
        } else {
            self.store_state(v, at);
        }
    }

    fn ensure_cc_loaded(&mut self) {
        if self.cc_state == Slot::Unloaded {
            for i in 0..4 {
                let v = self.load_cc(i);
                self.b.def_var(self.cc[i], v);
            }
            self.cc_state = Slot::Clean;
        }
    }

    fn record_fault(&mut self, f: Fault) {
        let one = self.b.ins().iconst(I32, 1);
        let vec = self.b.ins().iconst(I32, i64::from(f.exception as u8));
        let code = self.b.ins().iconst(I32, i64::from(f.error_code));
        let z = self.iconst(0);
        self.b.ins().store(state_flags(), one, self.cpu, off::FAULT);
        self.b
            .ins()
            .store(state_flags(), vec, self.cpu, off::FAULT + 4);
        self.b
            .ins()
            .store(state_flags(), code, self.cpu, off::FAULT + 8);
        self.store_state(z, off::FAULT + 16);
    }

    /// Where the TLB of the block's privilege starts within `CpuState::tlb` (see there).
    fn tlb_offset(&self) -> i32 {
        Self::tlb_offset_for(self.ctx.user)
    }

    /// Where the TLB of user (CPL 3) or supervisor accesses starts within `CpuState::tlb`.
    fn tlb_offset_for(user: bool) -> i32 {
        let one = (crane86_runtime::memory::TLB_ENTRIES * size_of::<TlbEntry>()) as i32;
        if user {
            one
        } else {
            0
        }
    }

    fn fault_check(&mut self) {
        let pending = self.b.ins().uload32(state_flags(), self.cpu, off::FAULT);
        let (fault, cont) = self.split(pending);
        self.b.switch_to_block(fault);
        self.exit_fault();
        self.b.switch_to_block(cont);
    }

    fn finish_instruction_end(&mut self) {
        self.ended = true;
    }
}
