//! Stack accesses that reuse the translation of the block's previous one.
//!
//! Function prologues and epilogues are runs of PUSH and POP, and compiled code between them
//! reads and writes its locals at RSP plus small offsets: within a block, the stack
//! accesses after the first almost always lie in the page the first one found in the TLB.
//! The *stack memo* keeps that page and its addend in variables for the rest of the guest
//! block: an access of a stack site whose address lies inside the remembered page (an
//! unsigned compare of `addr - page`) adds the addend, three instructions in place of the
//! inline TLB check's twelve and its two loads; otherwise it checks the TLB as usual and
//! remembers what it found.
//!
//! # Which accesses
//! [`stack_sites`] picks the instructions whose every memory access (explicit or implicit)
//! is based on the stack pointer through SS: PUSH, POP, CALL, RET, ENTER, LEAVE and moves
//! to and from locals. The first stack site of a member checks the TLB directly (the memo is
//! known to be empty there) and fills the memo.
//!
//! # Why a remembered translation stays right
//! The memo lives within one member of the function: [`JitEmitter::begin_member`] empties
//! it, so no value survives a transfer in or out. Inside, the reasoning of [`super::memo`]
//! holds: a remembered *read* right stays valid, since only calls out of generated code
//! change TLB entries, the memory slow paths never take a read right away, and any other
//! call forgets the memo. A *write* right can be taken away by any slow path (its walk may
//! start tracking the page as a paging structure, [`crane86_runtime::memory::tlb_protect_phys`]),
//! so every slow path forgets the memo's write right on its way back. A write right is only
//! ever remembered from a TLB write hit, which also proves the page holds no translated
//! code and has its dirty bit set.
//!
//! # Encoding
//! `read` and `write` hold [`LIMIT`] while the right is remembered and 0 otherwise, so an
//! access hits when `addr - page < limit`, unsigned: the whole access (at most 8 bytes)
//! lies in the page, and no address matches a forgotten right, whatever `page` holds.

use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::{Block, BlockArg, InstBuilder, Value};
use cranelift_frontend::Variable;
use iced_x86::{InstructionInfoFactory, Register};

use super::{off, JitEmitter, I64};
use crate::decode::DecodedBlock;

/// The bound on `addr - page` below which an access of up to 8 bytes lies in the page.
const LIMIT: u64 = 4096 - 8 + 1;

/// The stack memo's variables (see the module documentation).
#[derive(Clone, Copy, Debug)]
pub(super) struct StackMemo {
    page: Variable,
    addend: Variable,
    read: Variable,
    write: Variable,
}

impl JitEmitter<'_, '_> {
    /// Empties the stack memo at the start of a member (declaring its variables the first
    /// time), if the function has stack sites.
    pub(super) fn start_stack_memo(&mut self) {
        if self.stack_sites.is_empty() {
            return;
        }
        let m = match self.stack_memo {
            Some(m) => m,
            None => {
                let m = StackMemo {
                    page: self.b.declare_var(I64),
                    addend: self.b.declare_var(I64),
                    read: self.b.declare_var(I64),
                    write: self.b.declare_var(I64),
                };
                self.stack_memo = Some(m);
                m
            }
        };
        let zero = self.iconst(0);
        for v in [m.page, m.addend, m.read, m.write] {
            self.b.def_var(v, zero);
        }
        self.stack_filled = false;
    }

    /// Forgets the stack memo's write right (`all`: both rights), on the current path.
    pub(super) fn forget_stack(&mut self, all: bool) {
        let Some(m) = self.stack_memo else {
            return;
        };
        let zero = self.iconst(0);
        self.b.def_var(m.write, zero);
        if all {
            self.b.def_var(m.read, zero);
            self.stack_filled = false;
        }
    }

    /// The check of a stack site's access, shaped like [`JitEmitter::tlb_check`]: the
    /// returned fast block gets the host address, the cold slow block runs the slow path.
    pub(super) fn stack_check(&mut self, addr: Value, size: u32, write: bool) -> (Block, Block) {
        let tag_offset = if write { 8 } else { 0 };
        let Some(m) = self.stack_memo else {
            return self.tlb_check(addr, size, tag_offset);
        };
        let fast = self.b.create_block();
        self.b.append_block_param(fast, I64);
        if self.stack_filled {
            let page = self.b.use_var(m.page);
            let limit = self.b.use_var(if write { m.write } else { m.read });
            let addend = self.b.use_var(m.addend);
            let offset = self.b.ins().isub(addr, page);
            let hit = self.b.ins().icmp(IntCC::UnsignedLessThan, offset, limit);
            if self.chain.count {
                self.count_hit(hit, off::JIT_TLB_HITS);
                self.count_hit(hit, off::JIT_STACK_HITS);
            }
            let host = self.b.ins().iadd(addr, addend);
            let check = self.b.create_block();
            self.b
                .ins()
                .brif(hit, fast, &[BlockArg::Value(host)], check, &[]);
            self.b.seal_block(check);
            self.b.switch_to_block(check);
        }
        let (found, slow) = self.tlb_check(addr, size, tag_offset);
        // The TLB hit proves the whole access lies in the page of `addr`.
        self.b.switch_to_block(found);
        let host = self.b.block_params(found)[0];
        let page = self.b.ins().band_imm_s(addr, !0xfffi64);
        let addend = self.b.ins().isub(host, addr);
        let limit = self.iconst(LIMIT);
        let zero = self.iconst(0);
        self.b.def_var(m.page, page);
        self.b.def_var(m.addend, addend);
        self.b.def_var(m.read, limit);
        self.b.def_var(m.write, if write { limit } else { zero });
        self.b.ins().jump(fast, &[BlockArg::Value(host)]);
        self.b.seal_block(fast);
        self.stack_filled = true;
        (fast, slow)
    }
}

/// The addresses of the instructions of `blocks` whose memory accesses are all based on the
/// stack pointer through SS (see the module documentation).
pub(super) fn stack_sites(blocks: &[DecodedBlock]) -> Vec<u64> {
    let mut f = InstructionInfoFactory::new();
    let mut sites = Vec::new();
    for d in blocks.iter().flat_map(|b| &b.insns) {
        let info = f.info(&d.insn);
        let mems = info.used_memory();
        let stack = !mems.is_empty()
            && mems
                .iter()
                .all(|m| m.base().full_register() == Register::RSP && m.segment() == Register::SS);
        if stack {
            sites.push(d.insn.ip());
        }
    }
    sites
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::decode_block;
    use crate::emit::{Ctx, FPU_OS};

    fn sites(code: &[u8]) -> Vec<u64> {
        let ctx = Ctx {
            mode: crane86_runtime::CpuMode::Long64,
            stack32: true,
            user: true,
            cpl: 3,
            fpu: FPU_OS,
            v86: false,
            seg_checks: false,
        };
        let b = decode_block(code, 0x1000, code.len(), ctx, false);
        stack_sites(std::slice::from_ref(&b))
            .into_iter()
            .map(|ip| ip - 0x1000)
            .collect()
    }

    #[test]
    fn stack_sites_are_the_accesses_through_the_stack_pointer() {
        let code = [
            0x55, // 0: push rbp
            0x48, 0x8b, 0x44, 0x24, 0x08, // 1: mov rax, [rsp+8]
            0x48, 0x8b, 0x03, // 6: mov rax, [rbx]
            0x64, 0x48, 0x8b, 0x04, 0x24, // 9: mov rax, fs:[rsp]
            0xff, 0x34, 0x24, // 14: push qword [rsp]
            0xff, 0x33, // 17: push qword [rbx]
            0x48, 0x01, 0xc3, // 19: add rbx, rax
            0x5d, // 22: pop rbp
            0xc3, // 23: ret
        ];
        assert_eq!(sites(&code), vec![0, 1, 14, 22, 23]);
    }
}
