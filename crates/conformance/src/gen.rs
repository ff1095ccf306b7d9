//! The instruction forms of the conformance run: which forms are tested and how their
//! operands are made ([`spec`]), and random instances of them, with operands, input
//! registers, flags and memory constrained so that the instruction cannot fault natively
//! ([`instance`], in `gen/instance.rs`).

use crane86_runtime::flags as fl;
use iced_x86::{
    Code, CodeSize, Decoder, DecoderOptions, Encoder, FlowControl, Instruction, Mnemonic,
    OpCodeOperandKind as K, OpKind, Register,
};

use crate::layout::{self, Regs};

mod instance;
#[cfg(test)]
pub use instance::reg_read;
pub use instance::{instance, set_imm, Case};

/// The first CPUID feature `code` needs that the host CPU does not report (running it
/// natively would raise SIGILL).
fn host_lacks(code: Code) -> Option<String> {
    use iced_x86::CpuidFeature as F;
    code.cpuid_features().iter().find_map(|f| {
        let have = match f {
            F::BMI1 => std::arch::is_x86_feature_detected!("bmi1"),
            F::BMI2 => std::arch::is_x86_feature_detected!("bmi2"),
            F::ADX => std::arch::is_x86_feature_detected!("adx"),
            F::POPCNT => std::arch::is_x86_feature_detected!("popcnt"),
            F::LZCNT => std::arch::is_x86_feature_detected!("lzcnt"),
            F::MOVBE => std::arch::is_x86_feature_detected!("movbe"),
            F::CMPXCHG16B => std::arch::is_x86_feature_detected!("cmpxchg16b"),
            _ => true,
        };
        (!have).then(|| format!("{f:?}"))
    })
}

/// A small deterministic generator (SplitMix64).
pub struct Rng(u64);

impl Rng {
    /// Seeded generator.
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x9e37_79b9_7f4a_7c15)
    }

    /// 64 random bits. (Not an `Iterator`: the generator never ends, and callers want
    /// plain values.)
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// True one time in `n`.
    pub fn one_in(&mut self, n: u64) -> bool {
        self.below(n) == 0
    }

    /// A register or immediate value biased to edge cases: 0, 1, all-ones, the sign
    /// boundaries of every width, small counts (incl. ones at and above operand widths).
    pub fn value(&mut self) -> u64 {
        const EDGES: [u64; 12] = [
            0x7f,
            0x80,
            0xff,
            0x7fff,
            0x8000,
            0xffff,
            0x7fff_ffff,
            0x8000_0000,
            0xffff_ffff,
            0x7fff_ffff_ffff_ffff,
            0x8000_0000_0000_0000,
            0xffff_ffff_ffff_fffe,
        ];
        match self.below(16) {
            0 => 0,
            1 => 1,
            2 => u64::MAX,
            3..=5 => {
                let e = EDGES[self.below(EDGES.len() as u64) as usize];
                if self.one_in(2) {
                    // Random upper bits above the edge's width.
                    let bits = 64 - e.leading_zeros();
                    let hi = if bits >= 64 { 0 } else { self.next() << bits };
                    e | hi
                } else {
                    e
                }
            }
            6..=7 => self.below(70),
            8 => 0u64.wrapping_sub(self.below(70)),
            _ => self.next(),
        }
    }
}

/// How one operand is generated.
#[derive(Clone, Copy, Debug)]
enum Gen {
    Reg(u32),
    Fixed(Register),
    RegOrMem(u32),
    Mem,
    MemOffs,
    Imm(OpKind),
    One,
    Branch,
    StrSi,
    StrEsDi,
    StrSegDi,
    Xlat,
    /// An XMM register.
    Xmm,
    /// An XMM register or memory.
    XmmOrMem,
    /// An MMX register.
    Mm,
    /// An MMX register or memory.
    MmOrMem,
    /// ST(i).
    Sti,
}

/// A form the checker can generate instances of.
#[derive(Clone, Debug)]
pub struct Spec {
    /// The form.
    pub code: Code,
    /// Code size it runs in: 64, or 32 for forms not valid in 64-bit mode (compatibility
    /// mode natively, flat 32-bit protected mode in crane86).
    pub bits: u32,
    ops: Vec<Gen>,
    /// Registers (bit per encoding number) never chosen as explicit operands or addresses.
    reserved: u16,
    /// The form reads or writes x87/MMX/SSE state: its cases get a random FPU image.
    pub fpu: bool,
}

const RAX: u16 = 1;
const RCX: u16 = 1 << 1;
const RDX: u16 = 1 << 2;
const RBX: u16 = 1 << 3;
const RSP: u16 = 1 << 4;
const RBP: u16 = 1 << 5;
const RSI: u16 = 1 << 6;
const RDI: u16 = 1 << 7;

/// Mnemonics that are never run natively: privileged in user mode, non-deterministic, or
/// different by design between the host and the emulated CPU model.
fn native_denied(m: Mnemonic) -> Option<&'static str> {
    use Mnemonic as M;
    Some(match m {
        M::Cli
        | M::Sti
        | M::Hlt
        | M::In
        | M::Out
        | M::Insb
        | M::Insw
        | M::Insd
        | M::Outsb
        | M::Outsw
        | M::Outsd
        | M::Lgdt
        | M::Lidt
        | M::Lldt
        | M::Ltr
        | M::Invlpg
        | M::Invpcid
        | M::Wrmsr
        | M::Rdmsr
        | M::Wbinvd
        | M::Invd
        | M::Clts
        | M::Lmsw
        | M::Swapgs
        | M::Sysret
        | M::Sysexit
        | M::Iret
        | M::Iretd
        | M::Iretq => "privileged: faults in user mode",
        M::Sgdt | M::Sidt | M::Sldt | M::Str | M::Smsw => "reads system state (UMIP faults)",
        M::Rdtsc | M::Rdtscp | M::Rdpmc | M::Rdrand | M::Rdseed | M::Cpuid | M::Rdpid => {
            "non-deterministic or host-model dependent"
        }
        M::Syscall | M::Sysenter | M::Int | M::Int1 | M::Int3 | M::Into => {
            "traps to the host kernel"
        }
        _ => return None,
    })
}

/// Builds the generator for `code`, or says why the form cannot be checked.
pub fn spec(code: Code) -> Result<Spec, String> {
    let oc = code.op_code();
    if let Some(why) = native_denied(code.mnemonic()) {
        return Err(why.into());
    }
    if let Some(missing) = host_lacks(code) {
        return Err(format!("the host CPU lacks {missing}"));
    }
    if matches!(
        code,
        Code::Cmpxchg486_rm8_r8 | Code::Cmpxchg486_rm16_r16 | Code::Cmpxchg486_rm32_r32
    ) {
        return Err("486 A-step encoding (0F A6/A7): #UD on the host".into());
    }
    let bits = if oc.mode64() {
        64
    } else if oc.mode32() {
        32
    } else {
        return Err("valid in neither 64-bit nor 32-bit mode".into());
    };
    if code == Code::Bswap_r16 {
        return Err("BSWAP r16: result undefined".into());
    }
    if code.mnemonic() == iced_x86::Mnemonic::Bound {
        // Its only effect is the fault, which the native harness cannot take; the
        // `exceptions` system guest checks it against QEMU instead.
        return Err("BOUND: out-of-range indices raise #BR (SIGSEGV) natively".into());
    }
    let mut ops = Vec::new();
    let mut imms = 0;
    for &k in oc.op_kinds() {
        let g = match k {
            K::r8_reg | K::r8_opcode => Gen::Reg(1),
            K::r16_reg | K::r16_rm | K::r16_opcode | K::r16_reg_mem => Gen::Reg(2),
            K::r32_reg | K::r32_rm | K::r32_opcode | K::r32_reg_mem | K::r32_vvvv => Gen::Reg(4),
            K::r64_reg | K::r64_rm | K::r64_opcode | K::r64_reg_mem | K::r64_vvvv => Gen::Reg(8),
            K::r8_or_mem => Gen::RegOrMem(1),
            K::r16_or_mem => Gen::RegOrMem(2),
            K::r32_or_mem => Gen::RegOrMem(4),
            K::r64_or_mem => Gen::RegOrMem(8),
            K::mem => Gen::Mem,
            K::mem_offs => Gen::MemOffs,
            K::al => Gen::Fixed(Register::AL),
            K::cl => Gen::Fixed(Register::CL),
            K::ax => Gen::Fixed(Register::AX),
            K::dx => Gen::Fixed(Register::DX),
            K::eax => Gen::Fixed(Register::EAX),
            K::rax => Gen::Fixed(Register::RAX),
            K::imm8 => {
                imms += 1;
                Gen::Imm(if imms > 1 {
                    OpKind::Immediate8_2nd
                } else {
                    OpKind::Immediate8
                })
            }
            K::imm8_const_1 => Gen::One,
            K::imm8sex16 => Gen::Imm(OpKind::Immediate8to16),
            K::imm8sex32 => Gen::Imm(OpKind::Immediate8to32),
            K::imm8sex64 => Gen::Imm(OpKind::Immediate8to64),
            K::imm16 => {
                imms += 1;
                Gen::Imm(OpKind::Immediate16)
            }
            K::imm32 => Gen::Imm(OpKind::Immediate32),
            K::imm32sex64 => Gen::Imm(OpKind::Immediate32to64),
            K::imm64 => Gen::Imm(OpKind::Immediate64),
            K::br64_1 | K::br64_4 | K::br32_1 | K::br32_4 => Gen::Branch,
            K::br16_1 | K::br16_2 => {
                return Err(
                    "16-bit near branch: the target is truncated to 16 bits, outside the \
                     scratch page"
                        .into(),
                )
            }
            K::seg_rSI => Gen::StrSi,
            K::es_rDI => Gen::StrEsDi,
            K::seg_rDI => Gen::StrSegDi,
            K::seg_rBX_al => Gen::Xlat,
            K::xmm_reg | K::xmm_rm => Gen::Xmm,
            K::xmm_or_mem => Gen::XmmOrMem,
            K::mm_reg | K::mm_rm => Gen::Mm,
            K::mm_or_mem => Gen::MmOrMem,
            K::sti_opcode => Gen::Sti,
            K::st0 => Gen::Fixed(Register::ST0),
            other => return Err(format!("operand kind {other:?} not supported")),
        };
        ops.push(g);
    }
    let flow = code.flow_control();
    let indirect = matches!(
        flow,
        FlowControl::IndirectBranch | FlowControl::IndirectCall
    );
    let uses_stack = matches!(flow, FlowControl::Return | FlowControl::Call)
        || indirect
        || matches!(code.mnemonic(), Mnemonic::Push | Mnemonic::Pop);
    if uses_stack && oc.operand_size() == 16 && !matches!(flow, FlowControl::Next) {
        return Err("16-bit operand size control transfer: RIP truncated to 16 bits".into());
    }
    if matches!(flow, FlowControl::Interrupt | FlowControl::XbeginXabortXend) {
        return Err(format!("flow control {flow:?}"));
    }
    use Mnemonic as M;
    let m = code.mnemonic();
    let mut reserved = 0;
    if matches!(m, M::Div | M::Idiv) {
        reserved |= RAX | RDX | RSP;
    }
    if matches!(m, M::Bt | M::Bts | M::Btr | M::Btc) {
        reserved |= RSP;
    }
    if matches!(m, M::Enter | M::Leave) {
        reserved |= RBP;
    }
    if m == M::Xlatb {
        reserved |= RBX;
    }
    if matches!(m, M::Maskmovq | M::Maskmovdqu) {
        reserved |= RDI;
    }
    if code.is_string_instruction() {
        reserved |= RSI | RDI | RCX;
    }
    if indirect {
        reserved |= RSP;
    }
    let fpu = ops.iter().any(|g| {
        matches!(
            g,
            Gen::Xmm | Gen::XmmOrMem | Gen::Mm | Gen::MmOrMem | Gen::Sti
        )
    }) || code.cpuid_features().iter().any(|f| {
        use iced_x86::CpuidFeature as F;
        matches!(
            f,
            F::FPU | F::MMX | F::SSE | F::SSE2 | F::SSE3 | F::SSSE3 | F::SSE4_1 | F::SSE4_2
        )
    });
    Ok(Spec {
        code,
        bits,
        ops,
        reserved,
        fpu,
    })
}
