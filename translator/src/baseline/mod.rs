//! The baseline tier: blocks translated straight to x86-64 machine code by templates, in
//! microseconds, to run in the interpreter's place while Cranelift's compiler catches up.
//!
//! Why: the boots are bound by the background compiler's throughput. Cranelift's quick code
//! costs about 100 µs plus 35 µs per guest instruction, and over the i386 boot 29 M
//! instructions ran interpreted (25-33 ns each) in blocks that ran 100 to 10,000 times
//! waiting for it (`docs/design.md`, "Session 25 measurements"). This back end implements
//! [`Emit`] as QEMU's TCG without its optimiser would: every value lives in a slot of the
//! host stack frame, each primitive is a short fixed sequence of host instructions on a
//! few scratch registers, and there is no register allocation, no IR and no relocation.
//!
//! The code replaces an interpreted run exactly ([`crate::interp::run_block`]), not
//! compiled code: it is entered by [`crate::Cache::run_cold`] from the run loop and from
//! interpreted chains, runs a block, and returns how many instructions retired, whether a
//! fault is pending and whether the block ran whole; it sets `cpu.rip`. The rest of the run
//! loop (devices, interrupts, SMC invalidation) sees what it saw after an interpreted
//! block. Its contract, the same as `run_block`'s:
//! - each instruction's state writes happen as the semantics make them (the semantics do
//!   every access and check first: a fault leaves the instruction without effect);
//! - a fault (a slow path's, or a `raise`) leaves `cpu.rip` at the instruction, the
//!   instructions before it retired;
//! - a store that hit translated code (`cpu.smc_pending`) ends the block after its
//!   instruction;
//! - an early exit (`exit_if`) completes its instruction and goes on at its target.
//!
//! Chaining: a block that ran whole may go straight on to the successor the cache linked in
//! its [`BaselineSlots`] (`Cache::link_baseline`, from `machine::chain`, which found that
//! successor on the block's linear page), after the checks `machine::chain` makes between
//! two blocks, inline: the run's limit, the chain's budget, `exit_request`, `smc_pending`,
//! `ferr`. It jumps to the successor's chain entry in the same frame, so one call may run
//! many blocks; it returns the id of the last one too. A block that may change IF or hold
//! interrupts off never chains on.
//!
//! Memory accesses check the TLB inline as the JIT's do ([`crate::jit`]'s layout of
//! `CpuState::tlb`) and call the same slow paths on a miss. Operations the templates do not
//! cover (the x87 and SSE helpers' operand exchange is covered; RDTSC, PSHUFB's shuffle and
//! the like are not) make the block decline: it stays interpreted.
//!
//! Frame: RBX holds the `CpuState` pointer, R12 the instructions retired by the blocks
//! before in the chain, R13 the run's limit, R14 the chain's budget, R15 the id of the last
//! block that ran whole; value slots are `[rsp + 8 * i]`, reused from each instruction's
//! start (no value outlives its instruction: the semantics keep state in `CpuState`).

mod helpers;
mod ops;
pub mod x64;

use crane86_runtime::memory::{BulkOp, TLB_ENTRIES};
use crane86_runtime::state::CR4_OSFXSR;
use crane86_runtime::{CcOp, Exception, Fault, SegReg};

use crate::decode::DecodedBlock;
use crate::emit::{Arith, Bin, Cmp, Ctx, Emit, FloatOp, FloatWidth, FpuHelper, Stop, Un, R};
use crate::interp::Values;
use crate::jit::off_abs as off;
use crate::rewrite::InterruptEffect;
use crate::semantics;
use x64::{
    Alu, Asm, Cond, Label, Reg, Shift, Unary, R12, R13, R14, R15, R8, RAX, RBX, RCX, RDI, RDX, RSI,
    RSP,
};

/// Value slots per instruction; an instruction that needs more makes its block decline.
const MAX_SLOTS: u32 = 240;
/// The frame below the saved RBX: the slots, keeping RSP 16-byte aligned at calls.
const FRAME: i32 = (MAX_SLOTS as i32) * 8 + 64;

/// The return value's flag for "a fault is pending" (the low 32 bits count the
/// instructions retired).
pub const RET_FAULT: u64 = 1 << 32;
/// The return value's flag for "the last block ran to its end" (it may chain on).
pub const RET_WHOLE: u64 = 1 << 33;

/// What a baseline block's code reads to chain to a successor without returning: two links
/// (a block that ends in a conditional branch has two successors, which one link would
/// keep swapping), each the successor's instruction pointer and chain entry, and what counts
/// the block's own chained entries ([`BaselineSlots::credit`]). Boxed by the cache: the code
/// holds its address.
#[repr(C)]
#[derive(Debug)]
pub struct BaselineSlots {
    /// The first link: the successor's instruction pointer ([`NO_LINK`]: none) and its
    /// chain entry ([`Translated::chain_entry`]).
    pub link0: [u64; 2],
    /// Entries through the chain entry left before the code returns instead, so that the
    /// cache counts the block's runs (tier-up) and sees it again.
    pub credit: u64,
    /// The second link, as the first.
    pub link1: [u64; 2],
}

/// No successor linked: no instruction pointer is this value (it is not canonical).
pub const NO_LINK: u64 = 0x8000_0000_0000_0001;

/// Where the generated code finds each field of [`BaselineSlots`].
const LINK0: i32 = 0;
const CREDIT: i32 = 16;
const LINK1: i32 = 24;

impl BaselineSlots {
    /// The links, first then second.
    pub fn links_mut(&mut self) -> [&mut [u64; 2]; 2] {
        [&mut self.link0, &mut self.link1]
    }
}

impl Default for BaselineSlots {
    fn default() -> Self {
        BaselineSlots {
            link0: [NO_LINK, 0],
            credit: 0,
            link1: [NO_LINK, 0],
        }
    }
}

/// A translated block.
pub struct Translated {
    /// The code: `extern "C" fn(cpu, limit, chain budget) -> (u64, u64)`.
    pub code: Vec<u8>,
    /// The offset of the entry other baseline blocks chain to.
    pub chain_entry: usize,
    /// Whether the code may chain on to its successor.
    pub chains: bool,
}

/// A value of the baseline back end: a constant, or a slot of the frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BV {
    /// Known at translation time.
    Imm(u64),
    /// In `[rsp + 8 * slot]`.
    Slot(u32),
}

/// Code after the block body, reached by jumps from it.
enum Stub {
    /// A TLB miss: the linear address in RAX and a store's value in R8; a load's value
    /// comes back in RAX.
    Slow {
        at: Label,
        done: Label,
        size: u64,
        fault: Label,
        store: bool,
    },
    /// Records `fault`, then leaves as the instruction's fault exit does.
    Raise {
        at: Label,
        fault: Fault,
        exit: Label,
    },
    /// Leaves the block with `cpu.rip = rip`, `n` of its instructions retired, and
    /// `flags` (`RET_*`).
    Exit {
        at: Label,
        rip: u64,
        n: u32,
        flags: u64,
    },
}

/// The baseline translator of one block: [`Emit`] writing x86-64 code.
pub struct BaselineEmitter {
    a: Asm,
    ctx: Ctx,
    /// The next free slot of the current instruction.
    slot: u32,
    /// The slot whose value RAX holds too, if any: [`Self::get`] then copies RAX instead
    /// of loading (most values are used right after they are made).
    rax: Option<u32>,
    /// Why the block cannot be translated, once something was not covered.
    declined: Option<&'static str>,
    /// The lazy-flags operation, once an instruction of this block set it.
    cc_static: Option<CcOp>,
    /// The current instruction: its index in the block and address.
    index: u32,
    ip: u64,
    /// Where the current instruction transfers to (`jump`/`branch`), if it does.
    next: Option<BV>,
    /// The current instruction always leaves the block (an unconditional fault or exit):
    /// the rest of the block is unreachable.
    ended: bool,
    /// The current instruction stores to memory (a store may hit translated code).
    has_store: bool,
    /// The current instruction's fault exit, once one of its checks needs it.
    fault_exit: Option<Label>,
    stubs: Vec<Stub>,
    epilogue: Label,
    /// The block's id in the cache (returned, so the cache knows where a chain ended).
    id: u32,
    /// Its instruction count.
    len: u32,
}

impl BaselineEmitter {
    /// Sign- or zero-extends the low `bits` of `a` (folded when it is a constant).
    fn extend(&mut self, a: BV, bits: u32, signed: bool) -> BV {
        if let BV::Imm(x) = a {
            return BV::Imm(if signed {
                Values.sext(x, bits)
            } else {
                Values.zext(x, bits)
            });
        }
        self.get(RAX, a);
        if signed {
            self.asm().sext(bits, RAX, RAX);
        } else {
            self.asm().zext(bits, RAX, RAX);
        }
        self.put(RAX)
    }
    fn new(ctx: Ctx, id: u32, len: u32) -> BaselineEmitter {
        // About 200 bytes per guest instruction over the Debian boots, the stubs included:
        // room for that up front spares the buffer's regrowths.
        let mut a = Asm::with_capacity(256 + 256 * len as usize);
        let epilogue = a.label();
        BaselineEmitter {
            a,
            ctx,
            slot: 0,
            rax: None,
            declined: None,
            cc_static: None,
            index: 0,
            ip: 0,
            next: None,
            ended: false,
            has_store: false,
            fault_exit: None,
            stubs: Vec::new(),
            epilogue,
            id,
            len,
        }
    }

    fn decline(&mut self, why: &'static str) {
        self.declined.get_or_insert(why);
    }

    /// Puts `v` in host register `r`.
    fn get(&mut self, r: Reg, v: BV) {
        match v {
            BV::Slot(s) if self.rax == Some(s) => {
                if r != RAX {
                    self.a.mov(r, RAX);
                }
            }
            BV::Imm(i) => {
                if r == RAX {
                    self.rax = None;
                }
                self.a.mov_imm(r, i)
            }
            BV::Slot(s) => {
                if r == RAX {
                    self.rax = Some(s);
                }
                self.a.load(8, r, RSP, 8 * s as i32)
            }
        }
    }

    /// The assembler, for anything but [`Self::get`] and [`Self::put`]: what it emits may
    /// change RAX, so RAX no longer holds a slot's value as far as they know.
    fn asm(&mut self) -> &mut Asm {
        self.rax = None;
        &mut self.a
    }

    /// A new slot holding host register `r`.
    fn put(&mut self, r: Reg) -> BV {
        let s = self.slot;
        if s >= MAX_SLOTS {
            self.decline("too many values in one instruction");
            return BV::Imm(0);
        }
        self.slot += 1;
        self.a.store(8, RSP, 8 * s as i32, r);
        if r == RAX {
            self.rax = Some(s);
        }
        BV::Slot(s)
    }

    /// A slot holding the `size`-byte field at `CpuState + offset`, zero-extended.
    fn state(&mut self, offset: i32, size: u32) -> BV {
        self.asm().load(size, RAX, RBX, offset);
        self.put(RAX)
    }

    /// Stores the low `size` bytes of `v` into `CpuState + offset`.
    fn set_state(&mut self, offset: i32, size: u32, v: BV) {
        match v {
            BV::Imm(i) if size == 8 && i32::try_from(i as i64).is_ok() => {
                self.asm().store_imm(8, RBX, offset, i as i64 as i32)
            }
            BV::Imm(i) if size == 4 => self.asm().store_imm(4, RBX, offset, i as u32 as i32),
            _ => {
                self.get(RAX, v);
                self.asm().store(size, RBX, offset, RAX);
            }
        }
    }

    /// The current instruction's fault exit.
    fn fault_exit(&mut self) -> Label {
        if let Some(l) = self.fault_exit {
            return l;
        }
        let l = self.a.label();
        self.stubs.push(Stub::Exit {
            at: l,
            rip: self.ip,
            n: self.index,
            flags: RET_FAULT,
        });
        self.fault_exit = Some(l);
        l
    }

    /// Jumps to the fault exit when `cpu.fault.pending` is set (after a slow path).
    fn check_fault(&mut self, fault: Label) {
        self.asm().cmp_mem32_imm(RBX, off::FAULT, 0);
        self.asm().jcc(Cond::Ne, fault);
    }

    /// Calls the pure helper `f` with `args` (at most four) and returns its result's slot.
    fn call_pure(&mut self, f: u64, args: &[BV]) -> BV {
        const ARGS: [Reg; 4] = [RDI, RSI, RDX, RCX];
        for (&r, &v) in ARGS.iter().zip(args) {
            self.get(r, v);
        }
        self.asm().call(f);
        self.put(RAX)
    }

    /// The TLB check of an access of `size` bytes at the linear address in RAX: jumps to
    /// `miss` unless the entry's tag at `tag` (0 read, 8 write) matches, and leaves the
    /// entry's address in RCX. RDX is clobbered.
    fn tlb_check(&mut self, size: u32, tag: i32, miss: Label) -> i32 {
        const _: () = assert!(size_of::<crane86_runtime::memory::TlbEntry>() == 32);
        // The user TLB follows the supervisor one (`CpuState::tlb`).
        let one = (TLB_ENTRIES * size_of::<crane86_runtime::memory::TlbEntry>()) as i32;
        let base = off::TLB + if self.ctx.user { one } else { 0 };
        self.asm().mov(RCX, RAX);
        self.asm().shift_imm(Shift::Shr, RCX, 7);
        self.a
            .alu_imm(Alu::And, RCX, ((TLB_ENTRIES - 1) << 5) as i32);
        self.asm().alu(Alu::Add, RCX, RBX);
        self.asm().lea(RDX, RAX, size as i32 - 1);
        self.asm().alu_imm(Alu::And, RDX, -4096);
        self.asm().alu_mem(Alu::Cmp, RDX, RCX, base + tag);
        self.asm().jcc(Cond::Ne, miss);
        base
    }

    fn access(&mut self, linear: BV, size: u32, store: Option<BV>) -> R<BV> {
        let fault = self.fault_exit();
        let (at, done) = (self.a.label(), self.a.label());
        self.get(RAX, linear);
        if let Some(v) = store {
            self.get(R8, v);
        }
        let base = self.tlb_check(size, if store.is_some() { 8 } else { 0 }, at);
        self.asm().load(8, RDX, RCX, base + 16);
        self.asm().alu(Alu::Add, RDX, RAX);
        if store.is_some() {
            self.asm().store(size, RDX, 0, R8);
            self.has_store = true;
        } else {
            self.asm().load(size, RAX, RDX, 0);
        }
        self.stubs.push(Stub::Slow {
            at,
            done,
            size: u64::from(size),
            fault,
            store: store.is_some(),
        });
        self.asm().bind(done);
        Ok(match store {
            Some(_) => BV::Imm(0),
            None => self.put(RAX),
        })
    }

    /// Leaves the block: `cpu.rip = rip`, `n` of its instructions retired, `flags`.
    fn exit(&mut self, rip: BV, n: u32, flags: u64) {
        self.set_state(off::RIP, 8, rip);
        self.leave(n, flags);
    }

    /// Returns the instructions retired (those of the blocks before this one in the chain,
    /// in R12, and `n`) with `flags`, and this block's id.
    fn leave(&mut self, n: u32, flags: u64) {
        let id = u64::from(self.id);
        let a = self.asm();
        a.lea(RAX, R12, n as i32);
        if flags != 0 {
            a.mov_imm(RCX, flags);
            a.alu(Alu::Or, RAX, RCX);
        }
        a.mov_imm(RDX, id);
        let l = self.epilogue;
        self.asm().jmp(l);
    }

    /// The end of the block, going on at `next` (already in `cpu.rip` when `stored`): chains
    /// to the linked successor when `slots` is given and nothing needs the cache first.
    fn end(&mut self, next: BV, slots: Option<u64>) {
        self.set_state(off::RIP, 8, next);
        let Some(slots) = slots else {
            return self.leave(self.len, RET_WHOLE);
        };
        let out = self.a.label();
        let (len, id) = (self.len as i32, u64::from(self.id));
        let a = self.asm();
        a.alu_imm(Alu::Add, R12, len);
        // What `machine::chain` looks at between two blocks: the run's limit, the chain's
        // length, requests from other threads, stores into code, an x87 error for IRQ 13.
        a.alu(Alu::Cmp, R12, R13);
        a.jcc(Cond::Ae, out);
        a.alu_imm(Alu::Sub, R14, 1);
        a.jcc(Cond::B, out);
        a.cmp_mem32_imm(RBX, off::EXIT_REQUEST, 0);
        a.jcc(Cond::Ne, out);
        a.cmp_mem32_imm(RBX, off::SMC, 0);
        a.jcc(Cond::Ne, out);
        a.cmp_mem32_imm(RBX, off::FERR, 0);
        a.jcc(Cond::Ne, out);
        a.mov_imm(RCX, slots);
        a.load(8, RAX, RBX, off::RIP);
        a.mov_imm(R15, id);
        let second = self.a.label();
        let a = self.asm();
        a.alu_mem(Alu::Cmp, RAX, RCX, LINK0);
        a.jcc(Cond::Ne, second);
        a.jmp_mem(RCX, LINK0 + 8);
        a.bind(second);
        a.alu_mem(Alu::Cmp, RAX, RCX, LINK1);
        a.jcc(Cond::Ne, out);
        a.jmp_mem(RCX, LINK1 + 8);
        a.bind(out);
        // R12 already counts this block.
        self.leave(0, RET_WHOLE);
    }

    fn emit_stubs(&mut self) {
        for s in std::mem::take(&mut self.stubs) {
            match s {
                Stub::Slow {
                    at,
                    done,
                    size,
                    fault,
                    store,
                } => {
                    self.asm().bind(at);
                    self.asm().mov(RSI, RAX);
                    self.asm().mov(RDI, RBX);
                    self.asm().mov_imm(RDX, size);
                    let f = if store {
                        self.asm().mov(RCX, R8);
                        crane86_runtime::memory::store_slow as *const ()
                    } else {
                        crane86_runtime::memory::load_slow as *const ()
                    };
                    self.asm().call(f as u64);
                    self.check_fault(fault);
                    self.asm().jmp(done);
                }
                Stub::Raise { at, fault, exit } => {
                    self.asm().bind(at);
                    self.asm().store_imm(4, RBX, off::FAULT, 1);
                    self.a
                        .store_imm(4, RBX, off::FAULT + 4, fault.exception as u32 as i32);
                    self.a
                        .store_imm(4, RBX, off::FAULT + 8, fault.error_code as i32);
                    self.asm().store_imm(8, RBX, off::FAULT + 16, 0);
                    self.asm().jmp(exit);
                }
                Stub::Exit { at, rip, n, flags } => {
                    self.asm().bind(at);
                    self.exit(BV::Imm(rip), n, flags);
                }
            }
        }
    }

    /// Translates the instructions of `block`; `slots` is the address of the block's
    /// [`BaselineSlots`].
    fn translate(mut self, block: &DecodedBlock, slots: u64) -> Result<Translated, &'static str> {
        // The frame: RBX the CPU state, R12 the instructions retired by the blocks before in
        // the chain, R13 the run's limit, R14 the chain's budget, R15 the id of the last
        // block that ran whole (for a return at a chain entry); then the slots.
        for r in [RBX, R12, R13, R14, R15] {
            self.asm().push(r);
        }
        self.asm().alu_imm(Alu::Sub, RSP, FRAME);
        let a = self.asm();
        a.mov(RBX, RDI);
        a.alu(Alu::Xor, R12, R12);
        a.mov(R13, RSI);
        a.mov(R14, RDX);
        a.alu(Alu::Xor, R15, R15);
        let body = self.a.label();
        self.asm().jmp(body);
        // The chain entry: another block's code jumps here, with the frame as it is. Each
        // such entry spends one of the block's credits; with none left, the chain returns
        // (`cpu.rip` is this block's start) so the cache counts the runs.
        let chain_entry = self.a.buf.len();
        let spent = self.a.label();
        let a = self.asm();
        a.mov_imm(RCX, slots);
        a.alu_mem_imm(Alu::Sub, RCX, CREDIT, 1);
        a.jcc(Cond::B, spent);
        a.bind(body);
        // A block that may change IF or hold interrupts off never chains on: the cache must
        // look at interrupts after it (as `machine::chain` does after every interpreted block).
        let chains = block
            .insns
            .iter()
            .all(|d| InterruptEffect::of(&d.insn) == InterruptEffect::None);
        let n = block.insns.len();
        for (i, d) in block.insns.iter().enumerate() {
            if d.runtime {
                return Err("a runtime-class instruction");
            }
            self.slot = 0;
            self.rax = None;
            self.index = i as u32;
            self.ip = d.insn.ip();
            self.next = None;
            self.ended = false;
            self.has_store = false;
            self.fault_exit = None;
            let r = semantics::execute_row(&mut self, &d.insn, d.row);
            if let Some(why) = self.declined {
                return Err(why);
            }
            if self.ended {
                // The instruction always leaves: nothing after it runs.
                break;
            }
            if r.is_err() {
                return Err("an instruction stopped without leaving");
            }
            let next_ip = d.insn.next_ip();
            if i + 1 == n {
                let next = self.next.unwrap_or(BV::Imm(next_ip));
                self.end(next, chains.then_some(slots));
            } else {
                if self.next.is_some_and(|v| v != BV::Imm(next_ip)) {
                    return Err("a transfer inside the block");
                }
                if self.has_store {
                    let l = self.a.label();
                    self.stubs.push(Stub::Exit {
                        at: l,
                        rip: next_ip,
                        n: self.index + 1,
                        flags: 0,
                    });
                    self.asm().cmp_mem32_imm(RBX, off::SMC, 0);
                    self.asm().jcc(Cond::Ne, l);
                }
            }
        }
        self.emit_stubs();
        // Out of credits: the previous block (R15) ran whole.
        let a = self.asm();
        a.bind(spent);
        a.mov(RAX, R12);
        a.mov_imm(RCX, RET_WHOLE);
        a.alu(Alu::Or, RAX, RCX);
        a.mov(RDX, R15);
        let l = self.epilogue;
        let a = self.asm();
        a.bind(l);
        a.alu_imm(Alu::Add, RSP, FRAME);
        for r in [R15, R14, R13, R12, RBX] {
            a.pop(r);
        }
        a.ret();
        let code = self.a.finish().ok_or("an unbound label")?;
        Ok(Translated {
            code,
            chain_entry,
            chains,
        })
    }
}

/// Translates block `id` into baseline code (see the module documentation) whose chain
/// slots are at `slots`, or says why it cannot: then the block stays interpreted.
pub fn translate(block: &DecodedBlock, id: u32, slots: u64) -> Result<Translated, &'static str> {
    if block.insns.is_empty() {
        return Err("an empty block");
    }
    BaselineEmitter::new(block.ctx, id, block.insns.len() as u32).translate(block, slots)
}

#[cfg(test)]
mod tests;
