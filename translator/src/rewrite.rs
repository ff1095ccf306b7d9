//! The sensitive-instruction rewrite: what happens to each instruction that cannot simply be
//! lowered inside a block, and why.
//!
//! | instruction | strategy | why |
//! |---|---|---|
//! | CPUID | runs alone in the runtime | reads the CPU model, which belongs to the machine |
//! | HLT | runs alone; the run loop waits for an interrupt or stops | the vCPU must leave generated code to sleep |
//! | IN, OUT | run alone; the port bus dispatches to devices | devices live outside generated code |
//! | POPF | runs alone; ends the block | may change TF (part of the block key) and IF (interrupt window) |
//! | CLI, STI | run alone, with the CPL/IOPL check | IF opens or closes the interrupt window; STI's one-instruction shadow starts a new block |
//! | RDMSR, WRMSR, RDTSC | run alone through `runtime::msr` | MSRs live in CpuState; the TSC counts retired instructions, so it is deterministic |
//! | LGDT, LIDT, SGDT, SIDT | run alone | the tables are CPU state that delivery and segment loads read |
//! | MOV/PUSH/POP of segment registers | run alone through `runtime::segment` | a load checks the descriptor, may fault, and may change the stack size (part of the block key) |
//! | INT n, INT3, INTO, IRET | run alone through `runtime::interrupt` (IVT/IDT delivery, IRET) | they load CS, may change mode, CPL and stack; task switches and virtual-8086 transitions stop the run as unsupported |
//! | far JMP, far CALL, RETF | run alone through `runtime::far` | they load CS (and through call gates SS from the TSS): mode, CPL and stack size may change; every descriptor check may fault |
//! | SYSCALL, SYSRET, SYSENTER, SYSEXIT | run alone through `runtime::fastcall` | they load flat CS/SS from MSRs and change CPL and mode |
//! | SWAPGS | runs alone through `runtime::fastcall` | reads and writes KERNEL_GS_BASE, an MSR; CPL 0 only |
//! | LAR, LSL, VERR, VERW | run alone through `runtime::segment` | they read descriptor tables with the CPL's privilege rules |
//! | LLDT, LTR | run alone through `runtime::segment` | they load LDTR/TR (LTR writes the busy bit) |
//! | SLDT, STR, SMSW, ARPL | run alone | #UD in real mode (not SMSW) and CR4.UMIP are decided at run time from state the block key does not hold |
//! | UD0/UD1/UD2, unclaimed forms | inline #UD that ends the block | the fault is precise at the instruction |
//! | REP string ops | one iteration per execution, ending the block; the next iteration chains to the same block | every iteration is an interrupt window, and chaining keeps the loop in generated code |
//!
//! "Runs alone" means the decoder ends the previous block before the instruction and gives it
//! a block of its own, which is always interpreted with the whole machine at hand. The
//! generated code of the surrounding blocks never needs a path into device code.

use iced_x86::Instruction;

use crate::table::{lookup, Class};

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

/// Decides how `insn` is translated.
pub fn plan(insn: &Instruction) -> Plan {
    match lookup(insn.code()) {
        None => Plan::Invalid,
        Some(e) if e.class == Class::Runtime => Plan::Runtime,
        Some(e) => Plan::Inline {
            ends_block: e.ends_block()
                || (insn.is_string_instruction()
                    && (insn.has_rep_prefix() || insn.has_repne_prefix())),
        },
    }
}
