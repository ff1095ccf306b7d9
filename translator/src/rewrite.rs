//! The sensitive-instruction rewrite: what happens to each instruction that cannot simply be
//! lowered inside a block, and why.
//!
//! | instruction | strategy | why |
//! |---|---|---|
//! | CPUID | runs alone in the runtime | reads the CPU model, which belongs to the machine |
//! | HLT | runs alone; the run loop waits for an interrupt or stops | the vCPU must leave generated code to sleep |
//! | IN, OUT, INS, OUTS | run alone through `runtime::io_perm`; the port bus dispatches to devices | devices live outside generated code; the I/O permission check (IOPL, TSS bitmap) reads the TSS; REP INS/OUTS iterate like the other REP string ops |
//! | POPF | runs alone; ends the block | may change TF (part of the block key) and IF (interrupt window); IOPL-sensitive in virtual-8086 mode; which flags it may change depends on CPL and IOPL |
//! | PUSHF | inline, except in 16-bit code at CPL 3, where it runs alone | in virtual-8086 mode with IOPL < 3 it is #GP(0), or with CR4.VME pushes VIF as IF, and neither IOPL nor CR4 is in the block key; the key does hold the decoding mode and CPL, and virtual-8086 mode is 16-bit code at CPL 3, so only those blocks (v86 and rare 16-bit ring-3 protected-mode code) pay for the check, and Linux's frequent PUSHF stays inline (CR4.PVI does not change PUSHF) |
//! | CLI, STI | run alone, with the CPL/IOPL check; inline at CPL 0 | IF opens or closes the interrupt window; STI's one-instruction shadow starts a new block; IOPL-sensitive at CPL > 0, where CR4.VME (virtual-8086 mode) and CR4.PVI (CPL 3) make them act on VIF (`runtime::v86::vme`) |
//! | RDMSR, WRMSR | run alone through `runtime::msr` | MSRs live in CpuState, and some belong to devices (IA32_APIC_BASE) |
//! | RDTSC, RDTSCP, RDPID | inline | the TSC counts retired instructions (`tsc_base` minus the budget in generated code), so it is deterministic; kernels read it constantly; CR4.TSD is checked when the block's CPL is not 0 |
//! | RDPKRU, WRPKRU | run alone (`semantics::control_regs`) | #UD depends on CR4.PKE, which is not in the block key; WRPKRU changes what the TLB's tags allow and flushes it; rare (context switches) |
//! | LGDT, LIDT, SGDT, SIDT | run alone | the tables are CPU state that delivery and segment loads read |
//! | MOV/PUSH/POP of segment registers | run alone through `runtime::segment` | a load checks the descriptor, may fault, and may change the stack size (part of the block key) |
//! | INT n, INT3, INTO, IRET | run alone through `runtime::interrupt` (IVT/IDT delivery, IRET) and `runtime::v86` | they load CS, may change mode, CPL and stack, and enter or leave virtual-8086 mode; INT n and IRET are IOPL-sensitive there |
//! | far JMP, far CALL, RETF | run alone through `runtime::far` | they load CS (and through call gates SS from the TSS): mode, CPL and stack size may change; every descriptor check may fault |
//! | SYSCALL, SYSRET, SYSENTER, SYSEXIT | run alone through `runtime::fastcall` | they load flat CS/SS from MSRs and change CPL and mode |
//! | SWAPGS | runs alone through `runtime::fastcall` | reads and writes KERNEL_GS_BASE, an MSR; CPL 0 only |
//! | LAR, LSL, VERR, VERW | run alone through `runtime::segment` | they read descriptor tables with the CPL's privilege rules |
//! | LLDT, LTR | run alone through `runtime::segment` | they load LDTR/TR (LTR writes the busy bit) |
//! | SLDT, STR, SMSW, ARPL | run alone | #UD in real mode (not SMSW) and CR4.UMIP are decided at run time from state the block key does not hold |
//! | FXSAVE, FXRSTOR, XSAVE, XSAVEOPT, XSAVEC, XRSTOR, XGETBV, XSETBV | run alone (`semantics::fpu_state`) | whole-state images of up to 2696 bytes (x87, SSE, PKRU), checked page by page before the first byte moves; XSETBV changes what XSAVE manages; rare (context switches) |
//! | x87, MMX, SSE | inline: a call to the FPU unit's helper (soft float), or inline code for moves and bitwise forms | CR0.EM/TS/MP are in the block key, so #UD/#NM are decided at translation time; CR4.OSFXSR is read once per block with SSE (a kernel sets it after running much of its code); MXCSR and the x87 control word are read by the helper at run time |
//! | UD0/UD1/UD2, unclaimed forms | inline #UD that ends the block | the fault is precise at the instruction |
//! | REP string ops | one iteration per execution, ending the block; the next iteration chains to the same block | every iteration is an interrupt window, and chaining keeps the loop in generated code |
//!
//! "Runs alone" means the decoder ends the previous block before the instruction and gives it
//! a block of its own, which the run loop interprets with the whole machine at hand. The
//! generated code of the surrounding blocks never needs a path into device code.
//!
//! Such a block also gets compiled code when it turns hot, if its instruction needs nothing
//! but the CPU state and guest memory ([`runs_compiled`]): CPUID, the system-call MSRs,
//! SYSCALL/SYSRET, control-register moves, segment loads other than SS... Linux runs these on
//! every system call and context switch. The code calls the interpreter for that one
//! instruction (`jit::helpers::run_runtime`) and goes on to the next block through a lookup
//! keyed by the state the instruction left (it may change the mode, CPL or CS), so that a
//! chain of blocks need not go back to the run loop. The helper hands the instruction to
//! the run loop before running it when a run-time value makes it need the machine (an MSR
//! that belongs to a device or reads the TSC, SYSRET setting TF), and returns there after
//! it when the machine must look (IF set with an interrupt pending, TF or RF set, CR8
//! written, a store into translated code). The run loop itself still interprets these
//! blocks when it meets them.

use crane86_runtime::CpuMode;
use iced_x86::Instruction;

use crate::emit::Ctx;
use crate::table::{lookup, Class, Op};

/// How the decoder treats one instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Plan {
    /// Lowered inside the block; `ends_block` when it transfers control.
    Inline {
        /// The instruction is the last of its block.
        ends_block: bool,
    },
    /// Runs alone in a block of its own, in the runtime.
    Runtime,
    /// Not implemented or invalid: raises #UD, ending the block.
    Invalid,
}

/// Decides how `insn` is translated in the mode `ctx` (part of the block key).
pub fn plan(insn: &Instruction, ctx: Ctx) -> Plan {
    match lookup(insn.code()) {
        None => Plan::Invalid,
        // CLI and STI at CPL 0 (no IOPL check can fail), STAC and CLAC at CPL 0, and SWAPGS
        // in 64-bit mode at CPL 0 (no fault) run inline; each ends its block, so a block
        // holds at most one and the run loop sees what it did (the STI shadow, the GS base a
        // later block uses, the AC flag the memory slow paths read).
        Some(e) if e.class == Class::Runtime && inline_at_cpl0(insn, e.op, ctx) => {
            Plan::Inline { ends_block: true }
        }
        Some(e) if e.class == Class::Runtime => Plan::Runtime,
        Some(e) if e.op == Op::Pushf && may_be_v86(ctx) => Plan::Runtime,
        Some(e) => Plan::Inline {
            ends_block: e.ends_block()
                || (insn.is_string_instruction()
                    && (insn.has_rep_prefix() || insn.has_repne_prefix())),
        },
    }
}

/// The runtime-class instructions that need no runtime when the block runs at CPL 0: CLI
/// and STI (the IOPL check passes), STAC and CLAC (#UD only above CPL 0), and SWAPGS in
/// 64-bit mode.
pub(crate) fn inline_at_cpl0(insn: &Instruction, op: Op, ctx: Ctx) -> bool {
    use iced_x86::Mnemonic;
    ctx.cpl == 0
        && match op {
            Op::InterruptFlag => true,
            Op::ControlReg => matches!(insn.mnemonic(), Mnemonic::Stac | Mnemonic::Clac),
            Op::FastCall => {
                insn.mnemonic() == iced_x86::Mnemonic::Swapgs && ctx.mode == CpuMode::Long64
            }
            _ => false,
        }
}

/// Whether runtime-class `insn` may also run from generated code through
/// `jit::helpers::run_runtime` (see the module documentation): it needs no device and none
/// of the run loop's own state (interrupt shadows after STI and loads of SS, breakpoints
/// that MOV DR arms, I/O ports, HLT, software interrupts and far transfers, which deliver
/// through the run loop or may switch tasks). IRET qualifies: the helper leaves to the run
/// loop the IRETs that end NMI blocking or return to another task (NT set).
pub fn runs_compiled(insn: &Instruction) -> bool {
    use iced_x86::{Mnemonic::*, OpKind, Register};
    let writes_ss = insn.op0_kind() == OpKind::Register && insn.op0_register() == Register::SS;
    match insn.mnemonic() {
        Cpuid | Rdmsr | Wrmsr | Syscall | Sysret | Sysretq | Sysenter | Sysexit | Sysexitq
        | Swapgs | Lgdt | Lidt | Sgdt | Sidt | Sldt | Str | Lldt | Ltr | Smsw | Lmsw | Clts
        | Invlpg | Invpcid | Wbinvd | Invd | Clflush | Clflushopt | Clwb | Stac | Clac | Rdpkru
        | Wrpkru | Popf | Popfd | Popfq | Lds | Les | Lfs | Lgs | Xgetbv | Xsetbv | Fxsave
        | Fxsave64 | Fxrstor | Fxrstor64 | Xsave | Xsave64 | Xsaveopt | Xsaveopt64 | Xsavec
        | Xsavec64 | Xrstor | Xrstor64 | Iret | Iretd | Iretq => true,
        Mov if crate::semantics::control_regs::is_control_move(insn) => (0..2).all(|i| {
            insn.op_kind(i) != OpKind::Register
                || !crate::semantics::control_regs::is_debug_register(insn.op_register(i))
        }),
        Mov | Pop => !writes_ss,
        Push => true,
        _ => false,
    }
}

/// What an instruction means for interrupt delivery right after it: the run loop keeps the
/// shadows and NMI blocking, and code that chains blocks without the run loop (interpreted
/// chains, baseline code) stops after any instruction that has an effect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InterruptEffect {
    /// STI: a one-instruction shadow if it set IF.
    Sti,
    /// MOV SS or POP SS: a one-instruction shadow.
    LoadSs,
    /// IRET: ends NMI blocking, and may change IF.
    Iret,
    /// CLI or POPF: may change IF, and holds nothing off after it.
    ChangesIf,
    /// Nothing special.
    None,
}

impl InterruptEffect {
    /// What `insn` means for interrupt delivery after it.
    // By `Code`, a field of the instruction: `mnemonic()` reads iced-x86's table, a cache
    // miss the run loop took for the last instruction of every block it interpreted.
    pub fn of(insn: &Instruction) -> InterruptEffect {
        use iced_x86::{Code, Register};
        match insn.code() {
            Code::Sti => InterruptEffect::Sti,
            Code::Iretw | Code::Iretd | Code::Iretq => InterruptEffect::Iret,
            Code::Cli | Code::Popfw | Code::Popfd | Code::Popfq => InterruptEffect::ChangesIf,
            Code::Popw_SS | Code::Popd_SS => InterruptEffect::LoadSs,
            Code::Mov_Sreg_rm16 | Code::Mov_Sreg_r32m16 | Code::Mov_Sreg_r64m16
                if insn.op0_register() == Register::SS =>
            {
                InterruptEffect::LoadSs
            }
            _ => InterruptEffect::None,
        }
    }

    /// True when the next instruction may take an interrupt as after any other (no shadow
    /// and no NMI blocking ends); a change of IF alone is seen by comparing it.
    pub fn holds_nothing(self) -> bool {
        matches!(self, InterruptEffect::None | InterruptEffect::ChangesIf)
    }
}

/// True when a block with this key might run in virtual-8086 mode, which decodes as 16-bit
/// protected-mode code at CPL 3.
fn may_be_v86(ctx: Ctx) -> bool {
    ctx.mode == CpuMode::Prot16 && ctx.user
}

#[cfg(test)]
mod tests {
    use super::*;
    use iced_x86::{Decoder, DecoderOptions};

    fn decode(bits: u32, bytes: &[u8]) -> Instruction {
        Decoder::with_ip(bits, bytes, 0, DecoderOptions::NONE).decode()
    }

    #[test]
    fn interrupt_effects_of_the_instructions_that_have_one() {
        use InterruptEffect::*;
        let cases: [(&[u8], InterruptEffect); 11] = [
            (&[0xfb], Sti),
            (&[0x8e, 0x10], LoadSs),
            (&[0x48, 0x8e, 0xd0], LoadSs),
            (&[0xfa], ChangesIf),
            (&[0x9d], ChangesIf),
            (&[0x48, 0xcf], Iret),
            (&[0xcf], Iret),
            (&[0x8e, 0xd0], LoadSs),
            (&[0x8e, 0xd8], None),
            (&[0x89, 0xd8], None),
            (&[0x0f, 0x01, 0xf8], None),
        ];
        for (bytes, effect) in cases {
            let insn = decode(64, bytes);
            assert_eq!(InterruptEffect::of(&insn), effect, "{insn}");
            assert_eq!(
                InterruptEffect::of(&insn).holds_nothing(),
                matches!(effect, None | ChangesIf),
                "{insn}"
            );
        }
        // POP SS exists only outside 64-bit mode.
        assert_eq!(InterruptEffect::of(&decode(32, &[0x17])), LoadSs);
        assert_eq!(InterruptEffect::of(&decode(16, &[0x17])), LoadSs);
        assert_eq!(InterruptEffect::of(&decode(16, &[0x66, 0x9d])), ChangesIf);
        assert_eq!(InterruptEffect::of(&decode(16, &[0xcf])), Iret);
    }

    #[test]
    fn pushf_runs_alone_only_where_virtual_8086_mode_may_run() {
        let pushf = decode(16, &[0x9c]);
        let ctx = |mode, user| Ctx {
            user,
            cpl: if user { 3 } else { 0 },
            ..crate::testutil::cpl0_ctx(mode, false)
        };
        assert_eq!(plan(&pushf, ctx(CpuMode::Prot16, true)), Plan::Runtime);
        for (mode, user) in [
            (CpuMode::Prot16, false),
            (CpuMode::Real16, false),
            (CpuMode::Prot32, true),
        ] {
            let insn = if mode == CpuMode::Prot32 {
                decode(32, &[0x9c])
            } else {
                pushf
            };
            assert_eq!(
                plan(&insn, ctx(mode, user)),
                Plan::Inline { ends_block: false },
                "{mode:?} user {user}"
            );
        }
    }

    #[test]
    fn string_io_runs_alone() {
        let ctx = crate::testutil::cpl0_ctx(CpuMode::Prot32, true);
        // rep insb, outsd
        assert_eq!(plan(&decode(32, &[0xf3, 0x6c]), ctx), Plan::Runtime);
        assert_eq!(plan(&decode(32, &[0x6f]), ctx), Plan::Runtime);
    }
}
