//! The Cranelift back end: [`Emit`] emitting IR, the block compiler, and the entry trampoline.
//!
//! A block becomes one function `fn(cpu: *mut CpuState) -> u64` in Cranelift's `tail` calling
//! convention, so a block can end by tail-calling the next one (chaining, ARCHITECTURE.md
//! decision 9). Guest registers live in Cranelift variables, loaded on first use; a write
//! goes to the variable and through to CpuState at once, so exits store nothing but the
//! flags (decision 4, revised: see docs/design.md). The lazy flags are variables too, and the
//! operation that produced them is tracked at translation time so that a condition after a
//! CMP becomes one compare. Exits return 0 (continue at `cpu.rip`) or 1 (a fault is pending).

pub mod arena;
pub mod direct;
mod emitter;
pub mod entry;
pub mod helpers;
pub mod shims;
pub mod split;
pub mod timing;
#[cfg(test)]
mod tlb_tests;
pub mod worker;

use std::mem::offset_of;

use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::{
    types, AbiParam, ExternalName, InstBuilder, MemFlagsData, Signature, UserFuncName, Value,
};
use cranelift_codegen::isa::{CallConv, OwnedTargetIsa};
use cranelift_codegen::settings::{self, Configurable};
use cranelift_codegen::{control::ControlPlane, Context};
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext};

use crate::decode::DecodedBlock;
pub use direct::{ChainInfo, ChainSite, Compiled};
pub use emitter::JitEmitter;

/// Errors of the JIT back end. None of them is the guest's doing.
#[derive(Debug, thiserror::Error)]
pub enum JitError {
    /// The host ISA could not be configured.
    #[error("cannot set up Cranelift for this host: {0}")]
    Isa(String),
    /// Cranelift rejected a function (a translator bug).
    #[error("Cranelift failed to compile a block: {0}")]
    Compile(String),
    /// The compiled code needs relocations other than direct exits' jumps
    /// ([`direct`]), which the arena cannot apply.
    #[error("compiled code unexpectedly needs relocations")]
    Relocations,
    /// The background compiler skipped a job whose block was dropped while it waited.
    #[error("the block was dropped before it was compiled")]
    Cancelled,
}

/// Exit code: continue at `cpu.rip`.
pub const EXIT_NEXT: i64 = 0;
/// Exit code: a fault is pending in `cpu.fault`, `cpu.rip` is the faulting instruction.
pub const EXIT_FAULT: i64 = 1;

/// How a block's exits find the next block's code without the run loop: the slots its direct
/// exits chain through (with the token the block writes to `cpu.link` while a slot is
/// empty), the return slot its near CALL predicts the return through (see [`RETURN_SLOT`]),
/// and, for indirect branches and exits that find their slot unusable, the block's own key
/// and the cache's lookup table for [`helpers::jump_lookup`].
#[derive(Clone, Copy, Debug)]
pub struct ChainSlots {
    /// Host addresses of the three slots' code words (see [`SlotWords`]).
    pub slot_addr: [u64; 3],
    /// The tokens naming the three exits.
    pub token: [u64; 3],
    /// The key of the block being compiled: its mode bits and CS base are its successors'.
    pub key: crane86_runtime::BlockKey,
    /// The cache's direct-mapped table (0: none, every such exit returns to the run loop).
    pub jump_table: u64,
    /// The address of the cache's epoch word, which changes whenever the cache drops a block
    /// or code (0: no return-address prediction; see [`crane86_runtime::rsb`]).
    pub epoch: u64,
    /// Count chained transfers in `CpuState::chained` ([`JitOptions::count_chains`]).
    pub count: bool,
    /// The register-preserving shims slow paths call helpers through ([`shims`]).
    pub shims: shims::Shims,
    /// For a block of one runtime-class instruction: the address of the cache's boxed copy
    /// of it, which [`helpers::run_runtime`] interprets (0: such a block returns to the run
    /// loop instead).
    pub runtime: u64,
    /// Compile quickly (Cranelift's `opt_level=none`) and count runs: the address of the
    /// block's tier-up counter ([`TIER_UP_WORD`] of its [`SlotWords`]), which the code
    /// decrements on entry; at zero it asks the cache to compile the block again optimised
    /// (`CpuState::tier_up_ids`, emptied by [`crate::Cache::take_tier_ups`]). 0: optimised
    /// code that counts nothing.
    pub tier_up: u64,
    /// The count quick code starts over from when the cache's list of requests is full.
    pub tier_up_runs: u64,
    /// The address of the block's jump cache ([`JUMP_CACHE_WORD`] of its [`SlotWords`]),
    /// which its indirect branches check before calling [`helpers::jump_lookup`] (0: none).
    pub jump_cache: u64,
    /// For a block whose tail lies on another linear page under paging: that page as the
    /// block was decoded from it. The code checks it on entry ([`SecondPage`]), so such a
    /// block may be chained to and looked up from generated code like any other.
    pub second_page: Option<SecondPage>,
}

/// The second linear page of a block that crosses a page boundary under paging, and the TLB
/// addend (host minus linear address) that page had when the block was decoded. The block's
/// key names only its first page; its code starts by comparing the fetch tag and addend of
/// this page's TLB entry (at the block's privilege) with these, the proof the cross-page
/// exits use: the same addend for the same linear page is the same physical page, in
/// whatever address space the code runs. When they differ the code leaves before its first
/// instruction and hands the block to the interpreter (`PendingFault::RECHECK`), after the run
/// loop's lookup, which re-checks the page (dropping the block if it maps elsewhere now) and
/// fills the TLB entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SecondPage {
    /// The page's linear address (page-aligned).
    pub linear: u64,
    /// Host address of its physical page minus `linear`.
    pub addend: u64,
}

/// A block's chain slots as its generated code reads them: words 0 to 2 hold the code of each
/// exit's linked target (0: none); words 3 to 5 the TLB addend of the target's page when it
/// was linked, for an exit to another linear page under paging and for the return slot
/// under paging, or one of [`ADDEND_UNLINKED`] and [`ADDEND_REFUSED`].
///
/// Such an exit is chained only while the TLB entry of the target's page allows fetches and
/// holds that same addend, which proves the page maps to the same physical page as when the
/// target was translated, in whatever address space the exit runs. Addends are page-aligned
/// (host and linear pages both are), so the two markers never match one.
/// Word 6 is the tier-up counter of quickly compiled code ([`ChainSlots::tier_up`]).
/// Words 7 to 10 are the block's jump cache ([`JUMP_CACHE_WORD`]).
pub type SlotWords = [u64; 11];

/// The first word of [`SlotWords`]' jump cache: the last target an indirect branch of the
/// block found code for through [`helpers::jump_lookup`], as four words: its RIP, the cache
/// epoch then (0: empty; epochs are never 0), its code, and under paging the TLB addend of
/// its page then (or [`ADDEND_UNLINKED`]). See `emitter/jump_cache.rs`.
pub const JUMP_CACHE_WORD: usize = 7;

/// The word of [`SlotWords`] that counts down the runs of quickly compiled code.
pub const TIER_UP_WORD: usize = 6;

/// The slot of [`SlotWords`] that serves a block's near CALL: linked to the block after the
/// CALL (its continuation), read by the RET that returns there through the vCPU's return
/// stack buffer, only for a continuation on the calling block's page (see
/// `emitter/ret.rs`). The RET reads its addend word only to tell a slot never linked
/// ([`ADDEND_UNLINKED`]) from one refused or emptied.
pub const RETURN_SLOT: usize = 2;

/// [`SlotWords`] addend of a cross-page exit not linked (yet, or any more): taking it returns
/// to the run loop, which links it.
pub const ADDEND_UNLINKED: u64 = 1;
/// [`SlotWords`] addend of a cross-page exit that cannot be linked (its target crosses a
/// page, or has other mode bits): taking it looks the target up with [`helpers::jump_lookup`]
/// rather than returning to the run loop each time.
pub const ADDEND_REFUSED: u64 = 3;

/// Fresh chain slots: no exit linked.
pub const fn fresh_slots() -> SlotWords {
    [
        0,
        0,
        0,
        ADDEND_UNLINKED,
        ADDEND_UNLINKED,
        ADDEND_UNLINKED,
        0,
        0,
        0,
        0,
        ADDEND_UNLINKED,
    ]
}

/// The byte offset of an exit's addend word from its code word in [`SlotWords`].
pub const SLOT_ADDEND: i32 = 24;

/// The exit token of slot `slot` of block `id`: what generated code writes to `cpu.link`
/// while the slot is empty, and [`token_slot`] reads back. Never 0 (no exit).
pub const fn slot_token(id: u32, slot: usize) -> u64 {
    ((id as u64) << 2) + 1 + slot as u64
}

/// The block id and slot a [`slot_token`] names.
pub const fn token_slot(token: u64) -> (u32, usize) {
    (((token - 1) >> 2) as u32, ((token - 1) & 3) as usize)
}

impl ChainSlots {
    /// Slots for compiling a block outside a cache (benchmarks, tools): its direct exits
    /// chain through `slots`, which must outlive any run of the code, and every other exit
    /// returns to the run loop (no lookup table, no return-address prediction).
    pub fn standalone(slots: &SlotWords, key: crane86_runtime::BlockKey) -> ChainSlots {
        let base = slots.as_ptr() as u64;
        ChainSlots {
            slot_addr: [base, base + 8, base + 16],
            token: [slot_token(0, 0), slot_token(0, 1), slot_token(0, 2)],
            key,
            jump_table: 0,
            epoch: 0,
            count: true,
            shims: shims::Shims::default(),
            runtime: 0,
            tier_up: 0,
            tier_up_runs: TIER_UP_RUNS,
            jump_cache: 0,
            second_page: None,
        }
    }
}

/// Translation settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JitOptions {
    /// Run Cranelift's optimiser (`opt_level=speed`) rather than none.
    pub optimize: bool,
    /// Run the IR verifier (on in tests, off in release: it costs 1.5-2x compile time).
    pub verify: bool,
    /// With `--tier auto`: compile hot blocks on a background thread while the vCPU goes on
    /// interpreting them ([`worker`]), instead of stopping to compile. Off by default, since
    /// which instructions run in which tier then depends on host timing.
    pub background: bool,
    /// Count every chained transfer between compiled blocks in `CpuState::chained` (a
    /// read-modify-write per transfer: on for `--stats`, off otherwise).
    pub count_chains: bool,
    /// With `optimize`: compile a block that is not a region quickly first
    /// ([`ChainSlots::tier_up`]) and optimised once it has run [`TIER_UP_RUNS`] times more.
    /// Cranelift's optimiser costs about as much compile time as it saves on code that runs a
    /// few hundred times, and the Linux boot compiles 11 k such blocks.
    pub tiered: bool,
    /// With `tiered`: runs of quick code before it is compiled again optimised.
    pub tier_up_runs: u64,
}

/// Runs of quickly compiled code before it is compiled again optimised, by default.
pub const TIER_UP_RUNS: u64 = 2000;

impl Default for JitOptions {
    fn default() -> Self {
        JitOptions {
            optimize: true,
            verify: cfg!(debug_assertions),
            background: false,
            count_chains: true,
            tiered: false,
            tier_up_runs: TIER_UP_RUNS,
        }
    }
}

/// The Cranelift compiler with its reusable contexts.
pub struct Jit {
    /// `isa` runs Cranelift's optimiser ([`JitOptions::optimize`]).
    optimize: bool,
    isa: OwnedTargetIsa,
    /// The same with `opt_level=none`, for [`ChainSlots::tier_up`] code.
    isa_quick: OwnedTargetIsa,
    ctx: Context,
    fctx: FunctionBuilderContext,
}

/// How far past the start of `CpuState` the pointer generated code holds points: fields in
/// the first 256 bytes of `CpuState` (the general registers, RIP, the flags record, RFLAGS,
/// the first segments) are then within a signed byte of it, and their accesses take a
/// one-byte displacement instead of four. The flags record alone is stored (four words) at
/// most block exits: 3 bytes less per store, in code whose size the host's front end waits
/// on. The trampoline adds it, calls into Rust subtract it ([`off`]).
pub(crate) const CPU_BIAS: i32 = 0x80;

/// Defines [`off_abs`] (offsets from the start of `CpuState`) and [`off`] (the same from the
/// pointer generated code holds, [`CPU_BIAS`] bytes in) from one list of fields, and the
/// sizes and offsets within a `Segment`, the same in both.
macro_rules! cpu_offsets {
    (fields { $($name:ident = $e:expr;)* } inner { $($iname:ident = $ie:expr;)* }) => {
        /// Byte offsets of CpuState fields from its start, for code that holds the real
        /// pointer (the baseline tier).
        // Each tier uses a part of the list.
        #[allow(dead_code)]
        pub(crate) mod off_abs {
            use super::offset_of;
            use crane86_runtime::CpuState;
            $(pub const $name: i32 = $e;)*
            $(pub const $iname: i32 = $ie;)*
        }

        /// Byte offsets of CpuState fields from the pointer generated code holds, which
        /// is [`CPU_BIAS`] bytes into `CpuState`.
        #[allow(dead_code)]
        pub(crate) mod off {
            $(pub const $name: i32 = super::off_abs::$name - super::CPU_BIAS;)*
            $(pub const $iname: i32 = super::off_abs::$iname;)*
        }
    };
}

cpu_offsets! {
    fields {
        GPR = offset_of!(CpuState, gpr) as i32;
        RIP = offset_of!(CpuState, rip) as i32;
        CC = offset_of!(CpuState, cc) as i32;
        RFLAGS = offset_of!(CpuState, rflags) as i32;
        SEG = offset_of!(CpuState, seg) as i32;
        EXIT_REQUEST = offset_of!(CpuState, exit_request) as i32;
        BUDGET = offset_of!(CpuState, budget) as i32;
        TSC_BASE = offset_of!(CpuState, tsc_base) as i32;
        CR4 = offset_of!(CpuState, cr4) as i32;
        IRQ_PENDING = offset_of!(CpuState, irq_pending) as i32;
        STI_SHADOW = offset_of!(CpuState, sti_shadow) as i32;
        KERNEL_GS_BASE = (offset_of!(CpuState, msr) + offset_of!(crane86_runtime::msr::Msrs, kernel_gs_base)) as i32;
        TSC_AUX = (offset_of!(CpuState, msr) + offset_of!(crane86_runtime::msr::Msrs, tsc_aux)) as i32;
        FAULT = offset_of!(CpuState, fault) as i32;
        SMC = offset_of!(CpuState, smc_pending) as i32;
        FERR = offset_of!(CpuState, ferr) as i32;
        LINK = offset_of!(CpuState, link) as i32;
        CHAINED = offset_of!(CpuState, chained) as i32;
        JIT_TLB_HITS = offset_of!(CpuState, jit_tlb_hits) as i32;
        JIT_MEMO_HITS = offset_of!(CpuState, jit_memo_hits) as i32;
        JIT_GROUPED_HITS = offset_of!(CpuState, jit_grouped_hits) as i32;
        RAM_HOST = offset_of!(CpuState, ram_host) as i32;
        SCRATCH = offset_of!(CpuState, scratch) as i32;
        TIER_UP_IDS = offset_of!(CpuState, tier_up_ids) as i32;
        TIER_UP_LEN = offset_of!(CpuState, tier_up_len) as i32;
        HELPER_RET = offset_of!(CpuState, helper_ret) as i32;
        HELPER_ARGS = offset_of!(CpuState, helper_args) as i32;
        XMM = (offset_of!(CpuState, fpu) + offset_of!(crane86_fpu::Fpu, xmm)) as i32;
        MXCSR = (offset_of!(CpuState, fpu) + offset_of!(crane86_fpu::Fpu, mxcsr)) as i32;
        FPU_IO = (offset_of!(CpuState, fpu) + offset_of!(crane86_fpu::Fpu, io)) as i32;
        TLB = offset_of!(CpuState, tlb) as i32;
        RSB = (offset_of!(CpuState, rsb) + offset_of!(crane86_runtime::rsb::Rsb, entries)) as i32;
        RSB_TOP = (offset_of!(CpuState, rsb) + offset_of!(crane86_runtime::rsb::Rsb, top)) as i32;
    }
    inner {
        SEG_SIZE = size_of::<crane86_runtime::Segment>() as i32;
        SEG_BASE = offset_of!(crane86_runtime::Segment, base) as i32;
        SEG_LIMIT = offset_of!(crane86_runtime::Segment, limit) as i32;
        SEG_ATTRS = offset_of!(crane86_runtime::Segment, attrs) as i32;
    }
}

impl Jit {
    /// A compiler for the host.
    pub fn new(opts: JitOptions) -> Result<Jit, JitError> {
        let mut fb = settings::builder();
        let set = |fb: &mut settings::Builder, k: &str, v: &str| {
            fb.set(k, v)
                .map_err(|e| JitError::Isa(format!("{k}={v}: {e}")))
        };
        set(
            &mut fb,
            "opt_level",
            if opts.optimize { "speed" } else { "none" },
        )?;
        // Tail calls on x86-64 need frame pointers (else emission panics).
        set(&mut fb, "preserve_frame_pointers", "true")?;
        set(
            &mut fb,
            "enable_verifier",
            if opts.verify { "true" } else { "false" },
        )?;
        set(&mut fb, "is_pic", "false")?;
        if let Ok(v) = std::env::var("CRANE86_REGALLOC") {
            set(&mut fb, "regalloc_algorithm", &v)?;
        }
        let mut quick = fb.clone();
        set(&mut quick, "opt_level", "none")?;
        let build = |fb: settings::Builder| {
            cranelift_native::builder()
                .map_err(|e| JitError::Isa(e.to_string()))?
                .finish(settings::Flags::new(fb))
                .map_err(|e| JitError::Isa(e.to_string()))
        };
        Ok(Jit {
            optimize: opts.optimize,
            isa: build(fb)?,
            isa_quick: build(quick)?,
            ctx: Context::new(),
            fctx: FunctionBuilderContext::new(),
        })
    }

    /// The signature of every block: `tail fn(cpu, budget) -> exit code`. The instruction
    /// budget travels in a register from block to block and reaches `CpuState::budget` only
    /// on the way back to the run loop.
    fn block_sig(&self) -> Signature {
        let mut s = Signature::new(CallConv::Tail);
        s.params.push(AbiParam::new(types::I64));
        s.params.push(AbiParam::new(types::I64));
        s.returns.push(AbiParam::new(types::I64));
        s
    }

    /// Compiles the function in the context; returns its code, its relocations (only direct
    /// exits have any: see [`direct`]) and where its instructions end and its cold part
    /// starts, if it has one ([`split`]).
    fn finish(&mut self, blocks: &[DecodedBlock], quick: bool) -> Result<Finished, JitError> {
        if tracing::enabled!(target: "crane86::ir", tracing::Level::TRACE) {
            let guest: Vec<String> = blocks
                .iter()
                .flat_map(|b| &b.insns)
                .map(|d| format!("{:#x} {}", d.insn.ip(), d.insn))
                .collect();
            tracing::trace!(target: "crane86::ir", "guest:\n{}\n{}", guest.join("\n"), self.ctx.func.display());
        }
        let asm = tracing::enabled!(target: "crane86::asm", tracing::Level::TRACE);
        self.ctx.set_disasm(asm);
        let isa = if quick { &self.isa_quick } else { &self.isa };
        let code = self
            .ctx
            .compile(&**isa, &mut ControlPlane::default())
            .map_err(|e| JitError::Compile(format!("{:?}", e.inner)))?;
        if let Some(text) = code.vcode.as_ref().filter(|_| asm) {
            tracing::trace!(target: "crane86::asm", "host code:\n{text}");
        }
        let relocs = code.buffer.relocs().to_vec();
        let bytes = code.code_buffer().to_vec();
        let locs = code.buffer.get_srclocs_sorted();
        let code_end = locs.iter().map(|l| l.end).max().unwrap_or(0) as usize;
        let cold = split::cold_start(locs.iter().map(|l| (l.start, l.end, l.loc.bits())));
        Ok(Finished {
            bytes,
            relocs,
            code_end,
            cold,
        })
    }

    /// The entry trampoline: a host-ABI `fn(code, cpu) -> u64` that calls a block in the tail
    /// convention. Rust cannot call the tail convention itself.
    pub fn compile_trampoline(&mut self) -> Result<Vec<u8>, JitError> {
        let mut sig = Signature::new(self.isa.default_call_conv());
        sig.params.push(AbiParam::new(types::I64));
        sig.params.push(AbiParam::new(types::I64));
        sig.returns.push(AbiParam::new(types::I64));
        self.ctx.func.signature = sig;
        self.ctx.func.name = UserFuncName::user(0, 0);
        let bsig = self.block_sig();
        let mut b = FunctionBuilder::new(&mut self.ctx.func, &mut self.fctx);
        let params = enter_function(&mut b);
        let (code, cpu) = (params[0], params[1]);
        let cpu = b.ins().iadd_imm_s(cpu, i64::from(CPU_BIAS));
        let sref = b.import_signature(bsig);
        let budget = b.ins().load(types::I64, state_flags(), cpu, off::BUDGET);
        let call = b.ins().call_indirect(sref, code, &[cpu, budget]);
        let r = b.inst_results(call)[0];
        b.ins().return_(&[r]);
        b.finalize(self.isa.frontend_config());
        self.finish_plain()
    }

    /// Compiles the function in the context, which must need no relocation (the trampoline
    /// and the shims call nothing by name).
    pub(crate) fn finish_plain(&mut self) -> Result<Vec<u8>, JitError> {
        let out = self.finish(&[], false);
        self.ctx.clear();
        match out? {
            f if f.relocs.is_empty() => Ok(f.bytes),
            _ => Err(JitError::Relocations),
        }
    }

    /// Compiles one decoded block to machine code.
    pub fn compile_block(
        &mut self,
        block: &DecodedBlock,
        chain: ChainSlots,
    ) -> Result<Compiled, JitError> {
        self.compile_region(std::slice::from_ref(block), chain)
    }

    /// Compiles a region to machine code: `blocks[0]`, entered by the code, and guest blocks
    /// on its page that it reaches by direct branches, which become jumps within the code
    /// (see [`crate::cache`] for how regions are formed).
    pub fn compile_region(
        &mut self,
        blocks: &[DecodedBlock],
        chain: ChainSlots,
    ) -> Result<Compiled, JitError> {
        let t0 = timing::start();
        let ctx = blocks
            .first()
            .map(|b| b.ctx)
            .ok_or_else(|| JitError::Compile("an empty region".into()))?;
        self.ctx.func.signature = self.block_sig();
        self.ctx.func.name = UserFuncName::user(0, 1);
        let bsig = self.block_sig();
        let host_cc = self.isa.default_call_conv();
        let fc = self.isa.frontend_config();
        let mut b = FunctionBuilder::new(&mut self.ctx.func, &mut self.fctx);
        let params = enter_function(&mut b);
        let (cpu, budget) = (params[0], params[1]);
        let quick = chain.tier_up != 0;
        let optimised = !quick && self.optimize;
        if quick {
            let id = token_slot(chain.token[0]).0;
            count_run(&mut b, chain.tier_up, chain.tier_up_runs, cpu, id);
        }
        let mut em = JitEmitter::new(&mut b, cpu, budget, ctx, bsig, host_cc, chain);
        em.translate(blocks);
        em.seal_fault_exits();
        let targets = em.slot_targets();
        b.finalize(fc);
        mark_cold(&mut self.ctx.func);
        let out = self.finish(blocks, quick).and_then(|f| {
            let params = &self.ctx.func.params;
            let mut c = direct::resolve(
                f.bytes,
                &f.relocs,
                |name| match name {
                    ExternalName::User(r) => params.user_named_funcs().get(*r).cloned(),
                    _ => None,
                },
                chain.token,
                targets,
                chain.count,
            )?;
            c.cut = f.cold.and_then(|at| split::plan(&c.bytes, f.code_end, at));
            c.times = timing::finish(t0);
            c.optimised = optimised;
            c.insns = blocks.iter().map(|b| b.insns.len() as u64).sum();
            Ok(c)
        });
        self.ctx.clear();
        out
    }
}

/// What [`Jit::finish`] returns.
struct Finished {
    bytes: Vec<u8>,
    relocs: Vec<cranelift_codegen::FinalizedMachReloc>,
    /// Where the instructions end (constants follow).
    code_end: usize,
    /// The first byte of cold code, if any.
    cold: Option<usize>,
}

/// Gives every instruction of `func` the source location that tells [`split`] whether its
/// block is cold, after making cold every block that only cold blocks lead to.
fn mark_cold(func: &mut cranelift_codegen::ir::Function) {
    use cranelift_codegen::ir::SourceLoc;
    propagate_cold(func);
    let blocks: Vec<_> = func.layout.blocks().collect();
    for blk in blocks {
        let loc = if func.layout.is_cold(blk) {
            split::COLD
        } else {
            split::HOT
        };
        let insts: Vec<_> = func.layout.block_insts(blk).collect();
        for i in insts {
            func.set_srcloc(i, SourceLoc::new(loc));
        }
    }
}

/// Marks cold every block reached only through cold blocks. The emitter marks the first block
/// of a rare path cold (a TLB miss, a failed prediction, a return to the run loop); the blocks
/// that path goes on to create need no mark of their own to stay out of the hot code, where
/// they would sit between the hot parts of the function (a RET's jump-cache probe and lookup
/// call after a failed return prediction, about 250 bytes, were).
fn propagate_cold(func: &mut cranelift_codegen::ir::Function) {
    let Some(entry) = func.layout.entry_block() else {
        return;
    };
    let mut hot = std::collections::HashSet::new();
    let mut work = vec![entry];
    hot.insert(entry);
    while let Some(blk) = work.pop() {
        let Some(last) = func.layout.last_inst(blk) else {
            continue;
        };
        let dests = func.dfg.insts[last]
            .branch_destination(&func.dfg.jump_tables, &func.dfg.exception_tables);
        for d in dests {
            let to = d.block(&func.dfg.value_lists);
            if !func.layout.is_cold(to) && hot.insert(to) {
                work.push(to);
            }
        }
    }
    let blocks: Vec<_> = func.layout.blocks().collect();
    for blk in blocks {
        if !hot.contains(&blk) {
            func.layout.set_cold(blk);
        }
    }
}

/// The entry of quickly compiled code: decrements the tier-up counter at `counter` and, when
/// it reaches zero, asks the cache to compile block `id` again optimised by appending `id`
/// to `CpuState::tier_up_ids` ([`ChainSlots::tier_up`]). The code goes on either way, so
/// the request costs no trip to the run loop. When the list is full the count starts over.
fn count_run(b: &mut FunctionBuilder, counter: u64, runs: u64, cpu: Value, id: u32) {
    let addr = b.ins().iconst(types::I64, counter as i64);
    let n = b.ins().load(types::I64, state_flags(), addr, 0);
    let n = b.ins().iadd_imm_s(n, -1);
    b.ins().store(state_flags(), n, addr, 0);
    let due = b.ins().icmp_imm_s(IntCC::Equal, n, 0);
    let request = b.create_block();
    let full = b.create_block();
    let append = b.create_block();
    let go_on = b.create_block();
    b.ins().brif(due, request, &[], go_on, &[]);
    b.seal_block(request);
    b.set_cold_block(request);
    b.switch_to_block(request);
    let len = b
        .ins()
        .load(types::I32, state_flags(), cpu, off::TIER_UP_LEN);
    let room = b.ins().icmp_imm_u(
        IntCC::UnsignedLessThan,
        len,
        crane86_runtime::state::TIER_UP_REQUESTS as i64,
    );
    b.ins().brif(room, append, &[], full, &[]);
    b.seal_block(append);
    b.seal_block(full);
    b.set_cold_block(append);
    b.switch_to_block(append);
    let slot = b.ins().uextend(types::I64, len);
    let slot = b.ins().ishl_imm_u(slot, 2);
    let at = b.ins().iadd(cpu, slot);
    let id = b.ins().iconst(types::I32, i64::from(id));
    b.ins().store(state_flags(), id, at, off::TIER_UP_IDS);
    let len = b.ins().iadd_imm_s(len, 1);
    b.ins().store(state_flags(), len, cpu, off::TIER_UP_LEN);
    b.ins().jump(go_on, &[]);
    b.set_cold_block(full);
    b.switch_to_block(full);
    let again = b.ins().iconst(types::I64, runs as i64);
    b.ins().store(state_flags(), again, addr, 0);
    b.ins().jump(go_on, &[]);
    b.seal_block(go_on);
    b.switch_to_block(go_on);
}

/// Starts a function in `b`: its entry block, with the function's parameters as block
/// parameters, current and sealed. Returns the parameters.
pub(crate) fn enter_function(b: &mut FunctionBuilder) -> Vec<cranelift_codegen::ir::Value> {
    let entry = b.create_block();
    b.append_block_params_for_function_params(entry);
    b.switch_to_block(entry);
    b.seal_block(entry);
    b.block_params(entry).to_vec()
}

/// Memory flags for CpuState accesses: aligned, never trapping.
pub(crate) fn state_flags() -> MemFlagsData {
    MemFlagsData::trusted()
}

/// Memory flags for guest memory accesses through the TLB: never trapping (the TLB checked
/// the page), possibly unaligned.
pub(crate) fn guest_flags() -> MemFlagsData {
    MemFlagsData::new().with_notrap()
}

#[cfg(test)]
mod cold_tests {
    use cranelift_codegen::ir::{types, AbiParam, Function, InstBuilder, Signature};
    use cranelift_codegen::isa::CallConv;
    use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext};

    /// entry branches to `hot` or to `rare` (marked cold); `rare` goes on to `after_rare`,
    /// which goes to `join`; `hot` goes to `join` too. Only `after_rare` becomes cold: `join`
    /// is reached from hot code.
    #[test]
    fn blocks_reached_only_through_cold_blocks_become_cold() {
        let mut sig = Signature::new(CallConv::SystemV);
        sig.params.push(AbiParam::new(types::I64));
        sig.returns.push(AbiParam::new(types::I64));
        let mut func = Function::with_name_signature(Default::default(), sig);
        let mut ctx = FunctionBuilderContext::new();
        let mut b = FunctionBuilder::new(&mut func, &mut ctx);
        let [entry, hot, rare, after_rare, join] = std::array::from_fn(|_| b.create_block());
        b.append_block_params_for_function_params(entry);
        b.set_cold_block(rare);
        b.switch_to_block(entry);
        let x = b.block_params(entry)[0];
        b.ins().brif(x, hot, &[], rare, &[]);
        b.switch_to_block(hot);
        b.ins().jump(join, &[]);
        b.switch_to_block(rare);
        b.ins().jump(after_rare, &[]);
        b.switch_to_block(after_rare);
        b.ins().jump(join, &[]);
        b.switch_to_block(join);
        b.ins().return_(&[x]);
        b.seal_all_blocks();
        let flags = cranelift_codegen::settings::Flags::new(cranelift_codegen::settings::builder());
        let isa = cranelift_native::builder().unwrap().finish(flags).unwrap();
        b.finalize(isa.frontend_config());
        super::propagate_cold(&mut func);
        let cold: Vec<bool> = [entry, hot, rare, after_rare, join]
            .iter()
            .map(|&blk| func.layout.is_cold(blk))
            .collect();
        assert_eq!(cold, [false, false, true, true, false]);
    }
}
