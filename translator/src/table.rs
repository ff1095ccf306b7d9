//! The opcode table: for every iced-x86 [`Code`] the translator claims, its handler and how it
//! is translated. This is the index of the instruction set: if a form is not here, it raises
//! #UD, and the conformance tool and the coverage test enumerate exactly these forms.

use std::sync::OnceLock;

use iced_x86::{Code, EncodingKind, Mnemonic, OpCodeOperandKind as K};

use crate::semantics::alu::AluOp;
use crate::semantics::bit::BitOp;
use crate::semantics::shift::ShiftOp;
use crate::semantics::string::StrOp;

/// Which semantics function runs an instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Op {
    Alu(AluOp),
    Inc,
    Dec,
    Neg,
    Not,
    Mov,
    Movzx,
    Movsx,
    Movbe,
    Lea,
    Xchg,
    Cmov,
    Setcc,
    Bswap,
    Convert,
    Lahf,
    Sahf,
    Xlat,
    Carry,
    Cld,
    Std,
    Nop,
    Push,
    Pop,
    Pushf,
    Pusha,
    Popa,
    Enter,
    Leave,
    Jmp,
    Jcc,
    Jcxz,
    Loop,
    Call,
    Ret,
    Mul,
    Imul,
    Div,
    Idiv,
    Shift(ShiftOp),
    Shld,
    Shrd,
    Bt(BitOp),
    Bsf,
    Bsr,
    Tzcnt,
    Lzcnt,
    Popcnt,
    Xadd,
    Cmpxchg,
    CmpxchgWide,
    Str(StrOp),
    DaaDas,
    AaaAas,
    Aam,
    Aad,
    Adx,
    Andn,
    Bextr,
    Bls,
    Bzhi,
    Mulx,
    PdepPext,
    ShiftX,
    /// UD0, UD1, UD2: the architected invalid opcodes.
    Ud,
    /// SALC: AL from CF (undocumented, outside 64-bit mode).
    Salc,
    /// BOUND: check an array index against a pair of bounds in memory.
    Bound,
    /// x87 instructions and WAIT, through the FPU unit's helper.
    X87,
    /// MMX and SSE..SSE4.2 instructions, through the FPU unit's helper or inline.
    Simd,
    /// CRC32 (SSE4.2's general-register instruction).
    Crc32,
    // Runtime class: executed by the runtime with the machine at hand (see `rewrite`).
    Cpuid,
    Hlt,
    In,
    Out,
    /// INSB, INSW, INSD (with REP).
    Ins,
    /// OUTSB, OUTSW, OUTSD (with REP).
    Outs,
    Popf,
    /// RDTSC: inline, since kernels spin on it (see `system::rdtsc`).
    Rdtsc,
    /// RDTSCP: inline too: Linux reads its clock with it (`rdtsc_ordered`) where offered.
    Rdtscp,
    /// RDPID: TSC_AUX into a register.
    Rdpid,
    /// CLI, STI.
    InterruptFlag,
    /// RDMSR, WRMSR, RDTSC.
    Msr,
    /// LGDT, LIDT, SGDT, SIDT.
    DescriptorTable,
    /// MOV to/from segment registers, PUSH/POP of segment registers, LDS/LES/LFS/LGS/LSS.
    SegmentMove,
    /// INT n, INT3, INTO.
    Int,
    /// IRET, IRETD, IRETQ.
    Iret,
    /// MOV to/from CR/DR, CLTS, LMSW, INVLPG, INVPCID, WBINVD, INVD, CLFLUSH, RDTSCP, RDPID,
    /// STAC, CLAC.
    ControlReg,
    /// Far JMP, far CALL, RETF.
    Far,
    /// SYSCALL, SYSRET, SYSENTER, SYSEXIT, SWAPGS.
    FastCall,
    /// LAR, LSL, VERR, VERW, ARPL, LLDT, LTR, SLDT, STR, SMSW.
    SegmentInsn,
    /// FXSAVE/FXRSTOR, XSAVE/XSAVEOPT/XSAVEC/XRSTOR, XGETBV/XSETBV, FLDENV/FNSTENV,
    /// FNSAVE/FRSTOR: whole FPU state images.
    FpuState,
}

/// How a form is translated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// Lowered by both back ends inside a block.
    Inline,
    /// Sensitive: needs the machine (I/O, CPU model, halting) or changes translation mode
    /// bits. It runs alone in its own block through the runtime's system executor; see
    /// [`crate::rewrite`] for the strategy per instruction.
    Runtime,
}

/// One row of the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The handler.
    pub op: Op,
    /// How it is translated.
    pub class: Class,
}

impl Entry {
    /// True when the instruction always ends its block (a control transfer).
    pub fn ends_block(self) -> bool {
        matches!(
            self.op,
            Op::Jmp | Op::Jcc | Op::Jcxz | Op::Loop | Op::Call | Op::Ret | Op::Ud
        )
    }
}

/// The table row of `code`, or `None` when the form is not implemented (#UD).
pub fn lookup(code: Code) -> Option<Entry> {
    static TABLE: OnceLock<Vec<Option<Entry>>> = OnceLock::new();
    TABLE
        .get_or_init(|| Code::values().map(build).collect())
        .get(code as usize)
        .copied()
        .flatten()
}

/// Every claimed form, in `Code` order.
pub fn claimed_forms() -> impl Iterator<Item = (Code, Entry)> {
    Code::values().filter_map(|c| lookup(c).map(|e| (c, e)))
}

/// Operand kinds that belong to the system CPU (segment, control, debug registers, far
/// pointers): those forms are claimed by later work, not by the integer core.
fn has_system_operand(code: Code) -> bool {
    code.op_code().op_kinds().iter().any(|k| {
        matches!(
            k,
            K::seg_reg
                | K::cr_reg
                | K::dr_reg
                | K::tr_reg
                | K::farbr2_2
                | K::farbr4_2
                | K::es
                | K::cs
                | K::ss
                | K::ds
                | K::fs
                | K::gs
        )
    })
}

/// A control or debug register operand (MOV CRn/DRn).
fn has_control_operand(code: Code) -> bool {
    code.op_code()
        .op_kinds()
        .iter()
        .any(|k| matches!(k, K::cr_reg | K::dr_reg))
}

/// A segment register operand (MOV Sreg, PUSH/POP Sreg).
fn has_segment_operand(code: Code) -> bool {
    code.op_code().op_kinds().iter().any(|k| {
        matches!(
            k,
            K::seg_reg | K::es | K::cs | K::ss | K::ds | K::fs | K::gs
        )
    })
}

fn is_far(code: Code) -> bool {
    use Code::*;
    matches!(
        code,
        Call_m1616
            | Call_m1632
            | Call_m1664
            | Jmp_m1616
            | Jmp_m1632
            | Jmp_m1664
            | Call_ptr1616
            | Call_ptr1632
            | Jmp_ptr1616
            | Jmp_ptr1632
    )
}

fn is_bmi(m: Mnemonic) -> bool {
    use Mnemonic as M;
    matches!(
        m,
        M::Andn
            | M::Bextr
            | M::Blsi
            | M::Blsmsk
            | M::Blsr
            | M::Bzhi
            | M::Mulx
            | M::Pdep
            | M::Pext
            | M::Rorx
            | M::Sarx
            | M::Shlx
            | M::Shrx
    )
}

fn build(code: Code) -> Option<Entry> {
    let oc = code.op_code();
    if !oc.is_instruction() {
        return None;
    }
    // VEX only for the BMI1/BMI2 general-register instructions.
    match oc.encoding() {
        EncodingKind::Legacy => {}
        EncodingKind::VEX if is_bmi(code.mnemonic()) => {}
        _ => return None,
    }
    let runtime = |op| {
        Some(Entry {
            op,
            class: Class::Runtime,
        })
    };
    use Mnemonic as M;
    match code.mnemonic() {
        M::Rdmsr | M::Wrmsr => return runtime(Op::Msr),
        M::Fxsave
        | M::Fxsave64
        | M::Fxrstor
        | M::Fxrstor64
        | M::Xsave
        | M::Xsave64
        | M::Xsaveopt
        | M::Xsaveopt64
        | M::Xsavec
        | M::Xsavec64
        | M::Xrstor
        | M::Xrstor64
        | M::Xgetbv
        | M::Xsetbv
        | M::Fldenv
        | M::Fnstenv
        | M::Fstenv
        | M::Frstor
        | M::Fnsave
        | M::Fsave => return runtime(Op::FpuState),
        _ if code == Code::Wait
            || crane86_fpu::x87::claims(code)
            || crate::semantics::x87::without_wait(code).is_some_and(crane86_fpu::x87::claims) =>
        {
            return Some(Entry {
                op: Op::X87,
                class: Class::Inline,
            })
        }
        _ if crane86_fpu::simd::claims(code) => {
            return Some(Entry {
                op: Op::Simd,
                class: Class::Inline,
            })
        }
        M::Lgdt | M::Lidt | M::Sgdt | M::Sidt => return runtime(Op::DescriptorTable),
        M::Mov | M::Push | M::Pop if has_segment_operand(code) => return runtime(Op::SegmentMove),
        M::Mov if has_control_operand(code) => return runtime(Op::ControlReg),
        M::Lds | M::Les | M::Lfs | M::Lgs | M::Lss => return runtime(Op::SegmentMove),
        M::Jmp | M::Call if is_far(code) => return runtime(Op::Far),
        M::Retf => return runtime(Op::Far),
        M::Syscall
        | M::Sysret
        | M::Sysretq
        | M::Sysenter
        | M::Sysexit
        | M::Sysexitq
        | M::Swapgs => return runtime(Op::FastCall),
        M::Lar
        | M::Lsl
        | M::Verr
        | M::Verw
        | M::Arpl
        | M::Lldt
        | M::Ltr
        | M::Sldt
        | M::Str
        | M::Smsw => return runtime(Op::SegmentInsn),
        _ => {}
    }
    if has_system_operand(code) || is_far(code) {
        return None;
    }
    // The early-486 CMPXCHG encoding (0F A6/A7) decodes only with a special iced option and
    // is #UD on every later CPU.
    if matches!(
        code,
        Code::Cmpxchg486_rm8_r8 | Code::Cmpxchg486_rm16_r16 | Code::Cmpxchg486_rm32_r32
    ) {
        return None;
    }
    // MOVSD and CMPSD are also SSE mnemonics: string forms are the ones with string operands.
    let is_string = oc
        .op_kinds()
        .iter()
        .any(|k| matches!(k, K::seg_rSI | K::es_rDI));
    let inline = |op| {
        Some(Entry {
            op,
            class: Class::Inline,
        })
    };
    match code.mnemonic() {
        M::Add => inline(Op::Alu(AluOp::Add)),
        M::Or => inline(Op::Alu(AluOp::Or)),
        M::Adc => inline(Op::Alu(AluOp::Adc)),
        M::Sbb => inline(Op::Alu(AluOp::Sbb)),
        M::And => inline(Op::Alu(AluOp::And)),
        M::Sub => inline(Op::Alu(AluOp::Sub)),
        M::Xor => inline(Op::Alu(AluOp::Xor)),
        M::Cmp => inline(Op::Alu(AluOp::Cmp)),
        M::Test => inline(Op::Alu(AluOp::Test)),
        M::Inc => inline(Op::Inc),
        M::Dec => inline(Op::Dec),
        M::Neg => inline(Op::Neg),
        M::Not => inline(Op::Not),
        // MOVNTI: a store with a non-temporal hint, which a translated CPU has no use for.
        M::Mov | M::Movnti => inline(Op::Mov),
        M::Movzx => inline(Op::Movzx),
        M::Movsx | M::Movsxd => inline(Op::Movsx),
        M::Movbe => inline(Op::Movbe),
        M::Lea => inline(Op::Lea),
        M::Xchg => inline(Op::Xchg),
        M::Cmovo
        | M::Cmovno
        | M::Cmovb
        | M::Cmovae
        | M::Cmove
        | M::Cmovne
        | M::Cmovbe
        | M::Cmova
        | M::Cmovs
        | M::Cmovns
        | M::Cmovp
        | M::Cmovnp
        | M::Cmovl
        | M::Cmovge
        | M::Cmovle
        | M::Cmovg => inline(Op::Cmov),
        M::Seto
        | M::Setno
        | M::Setb
        | M::Setae
        | M::Sete
        | M::Setne
        | M::Setbe
        | M::Seta
        | M::Sets
        | M::Setns
        | M::Setp
        | M::Setnp
        | M::Setl
        | M::Setge
        | M::Setle
        | M::Setg => inline(Op::Setcc),
        M::Bswap => inline(Op::Bswap),
        M::Cbw | M::Cwde | M::Cdqe | M::Cwd | M::Cdq | M::Cqo => inline(Op::Convert),
        M::Lahf => inline(Op::Lahf),
        M::Salc => inline(Op::Salc),
        M::Sahf => inline(Op::Sahf),
        M::Xlatb => inline(Op::Xlat),
        M::Clc | M::Stc | M::Cmc => inline(Op::Carry),
        M::Cld => inline(Op::Cld),
        M::Std => inline(Op::Std),
        M::Nop | M::Pause => inline(Op::Nop),
        M::Rdtsc => inline(Op::Rdtsc),
        M::Rdtscp => inline(Op::Rdtscp),
        M::Rdpid => inline(Op::Rdpid),
        M::Push => inline(Op::Push),
        M::Pop => inline(Op::Pop),
        M::Pushf | M::Pushfd | M::Pushfq => inline(Op::Pushf),
        M::Pusha | M::Pushad => inline(Op::Pusha),
        M::Popa | M::Popad => inline(Op::Popa),
        M::Enter => inline(Op::Enter),
        M::Leave => inline(Op::Leave),
        M::Jmp => inline(Op::Jmp),
        M::Jo
        | M::Jno
        | M::Jb
        | M::Jae
        | M::Je
        | M::Jne
        | M::Jbe
        | M::Ja
        | M::Js
        | M::Jns
        | M::Jp
        | M::Jnp
        | M::Jl
        | M::Jge
        | M::Jle
        | M::Jg => inline(Op::Jcc),
        M::Jcxz | M::Jecxz | M::Jrcxz => inline(Op::Jcxz),
        M::Loop | M::Loope | M::Loopne => inline(Op::Loop),
        M::Call => inline(Op::Call),
        M::Ret => inline(Op::Ret),
        M::Mul => inline(Op::Mul),
        M::Imul => inline(Op::Imul),
        M::Div => inline(Op::Div),
        M::Idiv => inline(Op::Idiv),
        M::Shl | M::Sal => inline(Op::Shift(ShiftOp::Shl)),
        M::Shr => inline(Op::Shift(ShiftOp::Shr)),
        M::Sar => inline(Op::Shift(ShiftOp::Sar)),
        M::Rol => inline(Op::Shift(ShiftOp::Rol)),
        M::Ror => inline(Op::Shift(ShiftOp::Ror)),
        M::Rcl => inline(Op::Shift(ShiftOp::Rcl)),
        M::Rcr => inline(Op::Shift(ShiftOp::Rcr)),
        M::Shld => inline(Op::Shld),
        M::Shrd => inline(Op::Shrd),
        M::Bt => inline(Op::Bt(BitOp::Test)),
        M::Bts => inline(Op::Bt(BitOp::Set)),
        M::Btr => inline(Op::Bt(BitOp::Reset)),
        M::Btc => inline(Op::Bt(BitOp::Complement)),
        M::Bsf => inline(Op::Bsf),
        M::Bsr => inline(Op::Bsr),
        M::Tzcnt => inline(Op::Tzcnt),
        M::Lzcnt => inline(Op::Lzcnt),
        M::Popcnt => inline(Op::Popcnt),
        M::Crc32 => inline(Op::Crc32),
        M::Xadd => inline(Op::Xadd),
        M::Cmpxchg => inline(Op::Cmpxchg),
        M::Cmpxchg8b | M::Cmpxchg16b => inline(Op::CmpxchgWide),
        M::Movsb | M::Movsw | M::Movsd | M::Movsq if is_string => inline(Op::Str(StrOp::Movs)),
        M::Cmpsb | M::Cmpsw | M::Cmpsd | M::Cmpsq if is_string => inline(Op::Str(StrOp::Cmps)),
        M::Stosb | M::Stosw | M::Stosd | M::Stosq => inline(Op::Str(StrOp::Stos)),
        M::Lodsb | M::Lodsw | M::Lodsd | M::Lodsq => inline(Op::Str(StrOp::Lods)),
        M::Scasb | M::Scasw | M::Scasd | M::Scasq => inline(Op::Str(StrOp::Scas)),
        M::Daa | M::Das => inline(Op::DaaDas),
        M::Aaa | M::Aas => inline(Op::AaaAas),
        M::Aam => inline(Op::Aam),
        M::Aad => inline(Op::Aad),
        M::Adcx | M::Adox => inline(Op::Adx),
        M::Andn => inline(Op::Andn),
        M::Bextr => inline(Op::Bextr),
        M::Blsi | M::Blsmsk | M::Blsr => inline(Op::Bls),
        M::Bzhi => inline(Op::Bzhi),
        M::Mulx => inline(Op::Mulx),
        M::Pdep | M::Pext => inline(Op::PdepPext),
        M::Rorx | M::Sarx | M::Shlx | M::Shrx => inline(Op::ShiftX),
        M::Ud0 | M::Ud1 | M::Ud2 => inline(Op::Ud),
        M::Bound => inline(Op::Bound),
        M::Cpuid => runtime(Op::Cpuid),
        M::Hlt => runtime(Op::Hlt),
        M::In => runtime(Op::In),
        M::Out => runtime(Op::Out),
        M::Insb | M::Insw | M::Insd => runtime(Op::Ins),
        M::Outsb | M::Outsw | M::Outsd => runtime(Op::Outs),
        M::Popf | M::Popfd | M::Popfq => runtime(Op::Popf),
        M::Cli | M::Sti => runtime(Op::InterruptFlag),
        M::Int | M::Int1 | M::Int3 | M::Into => runtime(Op::Int),
        M::Iret | M::Iretd | M::Iretq => runtime(Op::Iret),
        M::Clts
        | M::Lmsw
        | M::Invlpg
        | M::Invpcid
        | M::Wbinvd
        | M::Invd
        | M::Clflush
        | M::Clflushopt
        | M::Clwb
        | M::Stac
        | M::Clac
        | M::Rdpkru
        | M::Wrpkru => runtime(Op::ControlReg),
        // Indirect-branch tracking is not offered (CET), so ENDBR is the NOP it was encoded as.
        M::Endbr32 | M::Endbr64 => inline(Op::Nop),
        // One vCPU and no caches: ordering and prefetch hints have nothing to do.
        M::Lfence
        | M::Mfence
        | M::Sfence
        | M::Prefetchnta
        | M::Prefetcht0
        | M::Prefetcht1
        | M::Prefetcht2
        | M::Prefetchw => inline(Op::Nop),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_forms_of_integer_mnemonics_are_not_claimed_as_inline() {
        // Control-register and segment-register moves run in the runtime, never inline.
        assert_eq!(lookup(Code::Mov_r64_cr).unwrap().class, Class::Runtime);
        assert_eq!(lookup(Code::Mov_dr_r32).unwrap().class, Class::Runtime);
        // Far transfers and the system segment instructions run in the runtime.
        for code in [
            Code::Call_ptr1632,
            Code::Jmp_m1664,
            Code::Retfq_imm16,
            Code::Syscall,
            Code::Sysexitq,
            Code::Swapgs,
            Code::Lar_r32_r32m16,
            Code::Smsw_r64m16,
            Code::Arpl_rm16_r16,
        ] {
            assert_eq!(
                lookup(code).map(|e| e.class),
                Some(Class::Runtime),
                "{code:?}"
            );
        }
        // Segment-register moves run in the runtime, never inline.
        assert_eq!(lookup(Code::Mov_Sreg_rm16).unwrap().class, Class::Runtime);
        assert_eq!(lookup(Code::Pushq_FS).unwrap().class, Class::Runtime);
    }

    #[test]
    fn ordinary_forms_are_claimed() {
        assert_eq!(lookup(Code::Add_rm32_r32).unwrap().op, Op::Alu(AluOp::Add));
        assert_eq!(lookup(Code::Hlt).unwrap().class, Class::Runtime);
        assert_eq!(lookup(Code::Insb_m8_DX).unwrap().op, Op::Ins);
        assert_eq!(lookup(Code::Outsd_DX_m32).unwrap().class, Class::Runtime);
        assert!(lookup(Code::Jne_rel8_64).unwrap().ends_block());
    }
}
