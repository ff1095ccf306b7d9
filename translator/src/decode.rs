//! Decoding a guest block with iced-x86: from a start address to the first control transfer,
//! runtime-class instruction, invalid instruction, page end or length cap.

use iced_x86::{Decoder, DecoderError, DecoderOptions, Instruction};

use crate::emit::Ctx;
use crate::rewrite::{plan, Plan};

/// Most instructions per block: long enough for straight-line code, short enough to keep
/// compile time per block bounded.
pub const MAX_BLOCK_INSNS: usize = 64;

/// One decoded instruction with the translator's decision about it.
#[derive(Clone, Debug)]
pub struct DecodedInsn {
    /// The instruction as iced decoded it (its `ip` is the guest instruction pointer).
    pub insn: Instruction,
    /// True for a runtime-class instruction (alone in its block, interpreted).
    pub runtime: bool,
    /// Its row of the instruction table ([`crate::table::lookup`]), looked up once here: the
    /// interpreter runs a block's instructions many times before it is compiled.
    pub row: Option<crate::table::Entry>,
}

/// A decoded block.
#[derive(Clone, Debug)]
pub struct DecodedBlock {
    /// The mode it was decoded in.
    pub ctx: Ctx,
    /// Its instructions, in order.
    pub insns: Vec<DecodedInsn>,
    /// Guest bytes covered, from the first byte of the first instruction.
    pub byte_len: u64,
    /// The lazy flags' operation ([`crane86_runtime::CcOp::encode`]) seen on entry the last
    /// time the block was about to run (see [`crate::cache::Cache::prepare`]): the JIT
    /// compiles flag reads at the block's start for this operation first, behind a check
    /// ([`crate::emit::Emit::guess_cc`]). A hint only: never needed for correctness.
    pub cc_hint: Option<u64>,
}

impl DecodedBlock {
    /// True when the block is one runtime-class instruction.
    pub fn is_runtime(&self) -> bool {
        self.insns.len() == 1 && self.insns[0].runtime
    }
}

/// Decodes a block starting at instruction pointer `ip` from `bytes`, which start at the
/// block's first byte. Instructions must start within the first `page_room` bytes (the rest
/// of the page); one that starts there may extend past it into the following bytes. When
/// `bytes` ends at the page end (the next page cannot be fetched), the block stops before an
/// instruction that would need more, and is empty if that is the first.
/// `single_step` limits the block to one instruction.
pub fn decode_block(
    bytes: &[u8],
    ip: u64,
    page_room: usize,
    ctx: Ctx,
    single_step: bool,
) -> DecodedBlock {
    let mut dec = Decoder::with_ip(ctx.mode.bitness(), bytes, ip, DecoderOptions::NONE);
    let mut insns = Vec::new();
    let mut offset = 0usize;
    let mut insn = Instruction::default();
    while offset < page_room && insns.len() < MAX_BLOCK_INSNS {
        dec.decode_out(&mut insn);
        if insn.is_invalid() && dec.last_error() == DecoderError::NoMoreBytes {
            // The instruction runs into a page that cannot be fetched: the block ends before
            // it, and the run loop raises the fetch's page fault once execution gets there
            // (a block with no instructions).
            break;
        }
        let p = if insn.is_invalid() || vex_in_real_mode(&insn, ctx) {
            Plan::Invalid
        } else {
            plan(&insn, ctx)
        };
        match p {
            Plan::Runtime if !insns.is_empty() => break,
            Plan::Runtime => {
                insns.push(DecodedInsn {
                    insn,
                    runtime: true,
                    row: crate::table::lookup(insn.code()),
                });
                offset += insn.len();
                break;
            }
            Plan::Invalid => {
                // Keep a one-byte stand-in if iced consumed nothing useful; the block ends at
                // the #UD it raises either way.
                let len = insn.len().max(1);
                if !insn.is_invalid() {
                    // Valid bytes that this mode refuses: an invalid instruction of their
                    // length, which raises #UD like any other.
                    let mut bad = Instruction::default();
                    bad.set_len(len);
                    bad.set_code_size(insn.code_size());
                    insn = bad;
                }
                insn.set_ip(ip.wrapping_add(offset as u64));
                insns.push(DecodedInsn {
                    insn,
                    runtime: false,
                    row: crate::table::lookup(insn.code()),
                });
                offset += len;
                break;
            }
            Plan::Inline { ends_block } => {
                insns.push(DecodedInsn {
                    insn,
                    runtime: false,
                    row: crate::table::lookup(insn.code()),
                });
                offset += insn.len();
                if ends_block || single_step {
                    break;
                }
            }
        }
        if single_step {
            break;
        }
    }
    DecodedBlock {
        ctx,
        insns,
        byte_len: offset as u64,
        cc_hint: None,
    }
}

/// VEX, EVEX and XOP encodings in real and virtual-8086 mode: #UD (SDM Vol. 2 2.3.2; the
/// bytes decode as LES/LDS with a register operand there, itself invalid).
fn vex_in_real_mode(insn: &Instruction, ctx: Ctx) -> bool {
    (ctx.mode == crane86_runtime::CpuMode::Real16 || ctx.v86)
        && matches!(
            insn.encoding(),
            iced_x86::EncodingKind::VEX
                | iced_x86::EncodingKind::EVEX
                | iced_x86::EncodingKind::XOP
        )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crane86_runtime::CpuMode;

    const C64: Ctx = crate::testutil::cpl0_ctx(CpuMode::Long64, false);

    #[test]
    fn block_ends_at_a_branch() {
        // add eax, ebx; jne -4; nop
        let code = [0x01, 0xd8, 0x75, 0xfc, 0x90];
        let b = decode_block(&code, 0x1000, 4096, C64, false);
        assert_eq!(b.insns.len(), 2);
        assert_eq!(b.byte_len, 4);
    }

    #[test]
    fn runtime_instructions_get_a_block_of_their_own() {
        // nop; cpuid
        let code = [0x90, 0x0f, 0xa2];
        let b = decode_block(&code, 0, 4096, C64, false);
        assert_eq!(b.insns.len(), 1);
        let b = decode_block(&code[1..], 1, 4095, C64, false);
        assert!(b.is_runtime());
    }

    #[test]
    fn invalid_bytes_end_the_block_with_one_instruction() {
        // 06 (PUSH ES) does not exist in 64-bit mode. (0F FF FF decodes as UD0 with a ModRM,
        // a valid instruction, so it cannot serve here.)
        let code = [0x90, 0x06, 0xff, 0xff];
        let b = decode_block(&code, 0, 4096, C64, false);
        assert_eq!(b.insns.len(), 2);
        assert!(b.insns[1].insn.is_invalid());
    }

    #[test]
    fn vex_instructions_are_invalid_in_real_mode() {
        // rorx eax, esi, 0x39 (VEX.LZ.F2.0F3A.W0 F0 /r ib), then nop.
        let code = [0xc4, 0xe3, 0x7b, 0xf0, 0xc6, 0x39, 0x90];
        let real = crate::testutil::cpl0_ctx(CpuMode::Real16, false);
        let b = decode_block(&code, 0x7000, 4096, real, false);
        assert_eq!(b.insns.len(), 1);
        assert!(b.insns[0].insn.is_invalid());
        assert_eq!(b.insns[0].insn.ip(), 0x7000);
        let prot16 = Ctx {
            mode: CpuMode::Prot16,
            ..real
        };
        let b = decode_block(&code, 0x7000, 4096, prot16, false);
        assert_eq!(b.insns.len(), 2);
        assert!(!b.insns[0].insn.is_invalid());
        let v86 = Ctx {
            v86: true,
            ..prot16
        };
        let b = decode_block(&code, 0x7000, 4096, v86, false);
        assert!(b.insns[0].insn.is_invalid());
    }

    #[test]
    fn an_instruction_into_an_unfetchable_page_ends_the_block_before_it() {
        // nop; mov eax, imm32 cut after two bytes.
        let code = [0x90, 0xb8, 0x01];
        let b = decode_block(&code, 0xffd, 3, C64, false);
        assert_eq!(b.insns.len(), 1);
        assert_eq!(b.byte_len, 1);
        let b = decode_block(&code[1..], 0xffe, 2, C64, false);
        assert!(b.insns.is_empty());
    }

    #[test]
    fn blocks_stop_at_the_page_end() {
        let code = [0x90; 32];
        let b = decode_block(&code, 0xff0, 16, C64, false);
        assert_eq!(b.insns.len(), 16);
    }
}
