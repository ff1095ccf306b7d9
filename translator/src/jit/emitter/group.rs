//! One TLB check for the accesses of a block through the same base register.
//!
//! Most of a block's memory accesses go through a base register that does not change
//! between them, or changes by constants: a function's pushes and pops and its locals at
//! `[rsp + n]`, a structure's fields at `[rbx + n]`. Each of them used to check the TLB on
//! its own (index the TLB, load the tag, compare, load the addend: about ten host
//! instructions, 40 bytes and two loads; 15% of the shell loop's hot code). A *group*
//! checks once, at its first access (its *leader*),
//! that the bytes all its accesses can touch lie in one page whose TLB entry allows them,
//! and keeps the entry's addend in a variable; each access of the group then tests that
//! variable (one fused test-and-branch) and accesses `address + addend`.
//!
//! # Which accesses form a group
//! [`plan`] reads a block's memory operands from iced-x86's instruction information,
//! including the implicit ones of PUSH, POP, CALL and RET, and follows each general
//! register as its value at the block's start plus a constant: PUSH, POP, CALL and RET
//! move RSP by theirs, `add`/`sub` of an immediate, INC, DEC and `lea r, [r + n]` move
//! their register, and any other write starts a new value. Operands with a base register
//! of that kind, no index, 64-bit addressing and no FS or GS base belong to the group of
//! that register value; RIP-relative operands (constant addresses, a static's fields) form
//! one more group, of the accesses in one page. A group has at least [`MIN_SITES`]
//! accesses and spans at most [`MAX_SPAN`] bytes (one page crossing in `4096 / MAX_SPAN`
//! placements at worst, where the group's accesses check the TLB one by one).
//!
//! # Why the check covers the accesses it serves
//! The plan only says where a group is expected. Whether an access belongs to a started
//! group is decided from the IR: the access's address must be the group's root value plus
//! a constant ([`JitEmitter::root_offset`] follows `iadd` and `isub` of
//! constants), or a constant for the RIP-relative group, and its bytes must lie in the
//! range the leader checked. The leader proves,
//! for that range, that its first and last bytes are in one linear page, and that the TLB
//! entry of that page (at the block's privilege) holds the page as its read tag, and as its
//! write tag when the group has stores: exactly what each access's own check would prove,
//! since every address between lies in the same page and indexes the same entry. A failed
//! proof makes the variable [`INVALID`], and every access of the group then checks the TLB
//! itself in cold code.
//!
//! # How long the proof holds
//! TLB entries change only in calls out of generated code: the memory slow paths fill and
//! evict entries and may take a write tag away from a page that became a paging structure
//! or holds translated code, and the other helpers may do anything. Every call forgets the
//! groups ([`JitEmitter::forget_groups`]) but those of the flags and wide-division helpers,
//! which touch no TLB, and a group lives only within its guest block (a region's next
//! member starts without one). The variables are [`INVALID`] at the start of every member,
//! so an access reached on a path that did not pass its leader checks the TLB.

use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::{InstBuilder, InstructionData, Opcode, Value, ValueDef};
use cranelift_frontend::Variable;
use iced_x86::{
    CodeSize, Instruction, InstructionInfoFactory, Mnemonic, OpAccess, OpKind, Register,
};

use super::{off, state_flags, JitEmitter, I64};
use crate::decode::DecodedBlock;

/// Groups per function with a variable of their own; later ones are not started.
pub(super) const GROUP_VARS: usize = 6;

/// The plan's register number for RIP-relative operands (constant addresses).
const ABSOLUTE: usize = 16;

/// The fewest accesses that make a group: the leader's check costs about as much as one
/// access's own check, and each access of the group still tests the variable.
const MIN_SITES: usize = 3;

/// The widest range of bytes one group may check, from its lowest to its highest byte.
const MAX_SPAN: i64 = 512;

/// A group variable's value when its check failed or was forgotten: a real addend is a
/// multiple of the page size (host and guest pages share their offsets), this is odd.
const INVALID: i64 = 1;

/// One access the plan expects: its instruction, its offset from the group's register value
/// at the block's start, its size, and whether it reads or writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Site {
    insn: usize,
    offset: i64,
    size: u32,
    write: bool,
}

/// A group the plan expects in a block.
#[derive(Clone, Debug, Default)]
pub(super) struct Planned {
    sites: Vec<Site>,
    /// Bytes `[min, end)` relative to the register value, over every site.
    min: i64,
    end: i64,
    reads: bool,
    writes: bool,
}

/// The leader's check: bytes `[lo, end)` relative to the leader's address, read and
/// written as the group does.
#[derive(Clone, Copy, Debug)]
pub(super) struct Check {
    lo: i64,
    end: i64,
    reads: bool,
    writes: bool,
}

/// An access that a group serves.
#[derive(Clone, Copy, Debug)]
pub(super) struct Grouped {
    /// The group's variable (the addend, or [`INVALID`]).
    var: Variable,
    /// The group's check, if this access is its leader.
    leader: Option<Check>,
}

/// A group started in the current block.
#[derive(Clone, Copy, Debug)]
pub(super) struct Started {
    /// The IR value the group's addresses are constant offsets from; `None` for constant
    /// addresses (their offsets from 0).
    root: Option<Value>,
    /// Checked bytes `[lo, end)` relative to `root`.
    lo: i64,
    end: i64,
    writes: bool,
    var: Variable,
}

/// The groups of `block`: accesses through a base register whose value is its value at
/// the block's start plus a known constant (see the module documentation).
pub(super) fn plan(block: &DecodedBlock) -> Vec<Planned> {
    // Only 64-bit addressing qualifies (below): spare other modes' blocks iced-x86's
    // instruction information, a compile-time cost per instruction.
    if block.ctx.mode != crane86_runtime::CpuMode::Long64 {
        return Vec::new();
    }
    let mut factory = InstructionInfoFactory::new();
    // Per general register: which value it holds (a new one after each unknown write),
    // and its offset from that value.
    let mut value = [0u32; 17];
    let mut delta = [0i64; 17];
    let mut next_value = 1u32;
    let mut groups: Vec<((usize, u32), Planned)> = Vec::new();
    for (i, d) in block.insns.iter().enumerate() {
        if d.runtime {
            break;
        }
        let insn = &d.insn;
        let info = factory.info(insn);
        for m in info.used_memory() {
            // RIP-relative operands have constant addresses: one group for them all, with
            // the address as the offset.
            let r = match m.base() {
                // (iced reports a RIP-relative operand with its target as displacement,
                // with or without RIP as base.)
                Register::RIP | Register::None => ABSOLUTE,
                base => match gpr64(base) {
                    Some(r) => r,
                    None => continue,
                },
            };
            let (reads, write) = match m.access() {
                OpAccess::Read | OpAccess::CondRead => (true, false),
                OpAccess::Write | OpAccess::CondWrite => (false, true),
                // Read, then written: two accesses at one offset.
                OpAccess::ReadWrite | OpAccess::ReadCondWrite => (true, true),
                _ => continue,
            };
            let size = m.memory_size().size() as u32;
            if m.index() != Register::None
                || m.address_size() != CodeSize::Code64
                || matches!(m.segment(), Register::FS | Register::GS)
                || size == 0
            {
                continue;
            }
            let offset = match r {
                ABSOLUTE => m.displacement() as i64,
                r => delta[r].wrapping_add(m.displacement() as i64),
            };
            let key = (r, value[r]);
            let at = match groups.iter().position(|g| g.0 == key) {
                Some(at) => at,
                None => {
                    groups.push((key, Planned::default()));
                    groups.len() - 1
                }
            };
            let g = &mut groups[at].1;
            let end = offset.saturating_add(i64::from(size));
            let (min, max) = if g.sites.is_empty() {
                (offset, end)
            } else {
                (g.min.min(offset), g.end.max(end))
            };
            // Constant addresses in another page than the group's never share its check.
            let apart = r == ABSOLUTE && min >> 12 != (max - 1) >> 12;
            if max - min > MAX_SPAN || apart {
                continue;
            }
            g.min = min;
            g.end = max;
            g.reads |= reads;
            g.writes |= write;
            if reads {
                g.sites.push(Site {
                    insn: i,
                    offset,
                    size,
                    write: false,
                });
            }
            if write {
                g.sites.push(Site {
                    insn: i,
                    offset,
                    size,
                    write: true,
                });
            }
        }
        for (r, moved) in register_moves(insn, info) {
            match moved {
                Some(n) => delta[r] = delta[r].wrapping_add(n),
                None => {
                    value[r] = next_value;
                    next_value += 1;
                    delta[r] = 0;
                }
            }
        }
    }
    groups
        .into_iter()
        .map(|g| g.1)
        .filter(|g| g.sites.len() >= MIN_SITES)
        .collect()
}

/// The index of `r` if it is a 64-bit general register.
fn gpr64(r: Register) -> Option<usize> {
    r.is_gpr64().then(|| r as usize - Register::RAX as usize)
}

/// The general registers `insn` writes, each with the constant it adds to the register
/// (`None`: an unknown new value).
fn register_moves(
    insn: &Instruction,
    info: &iced_x86::InstructionInfo,
) -> Vec<(usize, Option<i64>)> {
    let mut out = Vec::new();
    for u in info.used_registers() {
        if !matches!(
            u.access(),
            OpAccess::Write | OpAccess::ReadWrite | OpAccess::CondWrite | OpAccess::ReadCondWrite
        ) {
            continue;
        }
        let full = u.register().full_register();
        let Some(r) = gpr64(full) else { continue };
        if out.iter().any(|&(o, _)| o == r) {
            continue;
        }
        out.push((r, constant_move(insn, u.register(), r)));
    }
    out
}

/// The constant `insn` adds to register `r` (written as `reg`), if it only adds one.
fn constant_move(insn: &Instruction, reg: Register, r: usize) -> Option<i64> {
    const RSP: usize = 4;
    let spi = i64::from(insn.stack_pointer_increment());
    let explicit = insn.op_count() > 0
        && insn.op0_kind() == OpKind::Register
        && insn.op0_register().full_register() == insn.op0_register()
        && gpr64(insn.op0_register()) == Some(r);
    if r == RSP
        && matches!(
            insn.mnemonic(),
            Mnemonic::Push | Mnemonic::Pop | Mnemonic::Call | Mnemonic::Ret
        )
    {
        // POP RSP loads the register from memory.
        return (!(insn.mnemonic() == Mnemonic::Pop && explicit)).then_some(spi);
    }
    if !explicit || reg != insn.op0_register() {
        return None;
    }
    match insn.mnemonic() {
        Mnemonic::Add | Mnemonic::Sub if is_immediate(insn.op1_kind()) => {
            let n = insn.immediate(1) as i64;
            Some(if insn.mnemonic() == Mnemonic::Add {
                n
            } else {
                n.wrapping_neg()
            })
        }
        Mnemonic::Inc => Some(1),
        Mnemonic::Dec => Some(-1),
        Mnemonic::Lea
            if gpr64(insn.memory_base()) == Some(r)
                && insn.memory_index() == Register::None
                && insn.memory_base() != Register::RIP =>
        {
            Some(insn.memory_displacement64() as i64)
        }
        _ => None,
    }
}

fn is_immediate(k: OpKind) -> bool {
    matches!(
        k,
        OpKind::Immediate8 | OpKind::Immediate8to64 | OpKind::Immediate32to64 | OpKind::Immediate32
    )
}

impl JitEmitter<'_, '_> {
    /// `v` as a value plus a constant, following additions and subtractions of constants
    /// (`iadd_imm` is an `iconst` and an `iadd` in this IR).
    pub(super) fn root_offset(&self, v: Value) -> (Value, i64) {
        let dfg = &self.b.func.dfg;
        let (mut v, mut c) = (dfg.resolve_aliases(v), 0i64);
        while let ValueDef::Result(inst, 0) = dfg.value_def(v) {
            let (next, k) = match dfg.insts[inst] {
                InstructionData::Binary {
                    opcode: Opcode::Iadd,
                    args,
                } => match (self.const_of(args[0]), self.const_of(args[1])) {
                    (_, Some(k)) => (args[0], k as i64),
                    (Some(k), None) => (args[1], k as i64),
                    _ => break,
                },
                InstructionData::Binary {
                    opcode: Opcode::Isub,
                    args,
                } => match self.const_of(args[1]) {
                    Some(k) => (args[0], (k as i64).wrapping_neg()),
                    None => break,
                },
                _ => break,
            };
            if dfg.value_type(next) != I64 {
                break;
            }
            v = dfg.resolve_aliases(next);
            c = c.wrapping_add(k);
        }
        (v, c)
    }

    /// The variable holding the addend of the group that serves an access of `size` bytes
    /// at `linear` (a store if `write`), starting the group here if this access is the
    /// first of a planned one. `None`: the access checks the TLB itself.
    pub(super) fn group_of(&mut self, linear: Value, size: u32, write: bool) -> Option<Grouped> {
        if self.groups.is_empty() && self.group_plan.is_empty() {
            return None;
        }
        let (root, c) = match self.const_of(linear) {
            Some(a) => (None, a as i64),
            None => {
                let (root, c) = self.root_offset(linear);
                (Some(root), c)
            }
        };
        let end = c.checked_add(i64::from(size))?;
        if let Some(g) = self.groups.iter().find(|g| g.root == root) {
            return (c >= g.lo && end <= g.end && (g.writes || !write)).then_some(Grouped {
                var: g.var,
                leader: None,
            });
        }
        if self.groups.len() >= self.group_vars.len() {
            return None;
        }
        // A planned group whose sites in this instruction, of this kind and size, all have
        // one offset: this access is that site.
        let insn = self.index as usize;
        let (at, offset) = self.group_plan.iter().enumerate().find_map(|(at, p)| {
            let mut offsets = p
                .sites
                .iter()
                .filter(|s| s.insn == insn && s.size == size && s.write == write)
                .map(|s| s.offset);
            let first = offsets.next()?;
            offsets.all(|o| o == first).then_some((at, first))
        })?;
        let p = self.group_plan.remove(at);
        let var = self.group_vars[self.groups.len()];
        let g = Started {
            root,
            lo: c.checked_add(p.min - offset)?,
            end: c.checked_add(p.end - offset)?,
            writes: p.writes,
            var,
        };
        if c < g.lo || end > g.end {
            return None;
        }
        let check = Check {
            lo: g.lo - c,
            end: g.end - c,
            reads: p.reads,
            writes: p.writes,
        };
        self.check_group(linear, check, var);
        self.groups.push(g);
        Some(Grouped {
            var,
            leader: Some(check),
        })
    }

    /// After the slow path of a group's leader (which failed its check, and then filled the
    /// TLB entry of its own page): the group's check again, so that the group's other
    /// accesses run fast from the first run of the block after a TLB flush, not from the
    /// second.
    pub(super) fn recheck_group(&mut self, linear: Value, g: Grouped) {
        if let Some(check) = g.leader {
            self.check_group(linear, check, g.var);
        }
    }

    /// The leader's check: bytes `[linear + lo, linear + end)` lie in one page whose TLB
    /// entry has it as read tag (if `reads`) and write tag (if `writes`); sets `var` to the
    /// entry's addend if so, to [`INVALID`] otherwise. One compare of all the conditions
    /// combined, and a select: no branch.
    fn check_group(&mut self, linear: Value, check: Check, var: Variable) {
        let Check {
            lo,
            end,
            reads,
            writes,
        } = check;
        let first = self.b.ins().iadd_imm_s(linear, lo);
        let last = self.b.ins().iadd_imm_s(linear, end - 1);
        let ent = self.tlb_entry(last);
        let tlb = off::TLB + self.tlb_offset();
        let page = self.b.ins().band_imm_s(last, !0xfffi64);
        let apart = self.b.ins().bxor(first, last);
        let mut bad = self.b.ins().band_imm_s(apart, !0xfffi64);
        for (wanted, at) in [(reads, 0), (writes, 8)] {
            if wanted {
                let tag = self.b.ins().load(I64, state_flags(), ent, tlb + at);
                let d = self.b.ins().bxor(tag, page);
                bad = self.b.ins().bor(bad, d);
            }
        }
        let addend = self.b.ins().load(I64, state_flags(), ent, tlb + 16);
        let invalid = self.b.ins().iconst(I64, INVALID);
        let ok = self.b.ins().icmp_imm_s(IntCC::Equal, bad, 0);
        let v = self.b.ins().select(ok, addend, invalid);
        self.b.def_var(var, v);
    }

    /// Branches on group variable `var`: to the returned fast block (with the addend) when
    /// the group's check holds, to the returned cold block otherwise.
    pub(super) fn group_branch(
        &mut self,
        g: Grouped,
    ) -> (
        cranelift_codegen::ir::Block,
        cranelift_codegen::ir::Block,
        Value,
    ) {
        let addend = self.b.use_var(g.var);
        // Bit 0 tells: an addend is a multiple of the page size, INVALID is odd. A byte test
        // (`test $1, %cl`) is 4 bytes shorter than one of the low 12 bits.
        let low = self
            .b
            .ins()
            .ireduce(cranelift_codegen::ir::types::I8, addend);
        let stale = self.b.ins().band_imm_s(low, INVALID);
        let (cold, fast) = self.split(stale);
        self.b.switch_to_block(fast);
        if self.chain.count {
            let one = self.b.ins().iconst(cranelift_codegen::ir::types::I8, 1);
            self.count_hit(one, off::JIT_TLB_HITS);
            self.count_hit(one, off::JIT_GROUPED_HITS);
        }
        (fast, cold, addend)
    }

    /// Makes every started group check the TLB access by access from here on: a call that
    /// may change TLB entries is coming.
    pub(super) fn forget_groups(&mut self) {
        if self.groups.is_empty() {
            return;
        }
        let invalid = self.b.ins().iconst(I64, INVALID);
        for g in self.groups.clone() {
            self.b.def_var(g.var, invalid);
        }
    }

    /// Declares the group variables, [`INVALID`], at the function's entry.
    pub(super) fn declare_group_vars(&mut self) {
        let invalid = self.b.ins().iconst(I64, INVALID);
        for _ in 0..GROUP_VARS {
            let v = self.b.declare_var(I64);
            self.b.def_var(v, invalid);
            self.group_vars.push(v);
        }
    }

    /// Per-member group state: the plan of `block`'s groups, none started, and every
    /// variable [`INVALID`] on every path into the member (the variables are shared by the
    /// members, and a value from another member's group must not reach this one's accesses).
    pub(super) fn begin_groups(&mut self, block: &DecodedBlock) {
        self.groups.clear();
        self.group_plan = plan(block);
        let invalid = self.b.ins().iconst(I64, INVALID);
        for &v in &self.group_vars {
            self.b.def_var(v, invalid);
        }
    }
}
