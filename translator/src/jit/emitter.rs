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
