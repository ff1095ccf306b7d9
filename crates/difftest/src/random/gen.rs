//! Random instruction sequences: forms crane86 claims, valid in the mode, with operands from
//! the registers a case may change and memory operands inside the scratch area, encoded by
//! iced-x86's encoder.
//!
//! Two registers are reserved: RSP (only pushes and pops move it) and RBX, the base of
//! memory operands (nothing writes it). Memory operands are `[rbx+disp]`, absolute, or (in
//! 64-bit mode) RIP-relative, always inside `SCRATCH..DATA_END`. Instructions that read a
//! flag an earlier one left undefined are not generated: such a program's result is not
//! defined either.

use crane86_conformance::Rng;
use iced_x86::Instruction;
use iced_x86::{
    Code, Encoder, FlowControl, InstructionInfoFactory, Mnemonic, OpAccess, OpCodeOperandKind as K,
    OpKind, Register,
};

use super::env::{BASE, DATA_END, SCRATCH};

/// How one operand is generated.
#[derive(Clone, Copy, Debug)]
enum Op {
    Reg(u32),
    Fixed(Register),
    RegOrMem(u32),
    Mem,
    Imm(OpKind),
    One,
    Xmm,
    XmmOrMem,
}

/// A form the generator can produce, with its operand recipe.
#[derive(Clone, Debug)]
pub struct Form {
    /// The form.
    pub code: Code,
    ops: Vec<Op>,
}

/// Mnemonics never generated: privileged or I/O, control transfers, non-deterministic,
/// segment loads, string and stack-frame instructions (their addresses come from registers
/// that hold random values), and system state the cases do not control.
fn denied(m: Mnemonic) -> bool {
    use Mnemonic as M;
    matches!(
        m,
        M::Cli
            | M::Sti
            | M::Hlt
            | M::In
            | M::Out
            | M::Lgdt
            | M::Lidt
            | M::Lldt
            | M::Ltr
            | M::Sgdt
            | M::Sidt
            | M::Sldt
            | M::Str
            | M::Smsw
            | M::Lmsw
            | M::Clts
            | M::Invlpg
            | M::Invd
            | M::Wbinvd
            | M::Wrmsr
            | M::Rdmsr
            | M::Rdtsc
            | M::Rdtscp
            | M::Rdpmc
            | M::Rdrand
            | M::Rdseed
            | M::Rdpid
            | M::Rdpkru
            | M::Wrpkru
            | M::Cpuid
            | M::Swapgs
            | M::Syscall
            | M::Sysret
            | M::Sysenter
            | M::Sysexit
            | M::Enter
            | M::Leave
            | M::Lar
            | M::Lsl
            | M::Verr
            | M::Verw
            | M::Arpl
            | M::Lds
            | M::Les
            | M::Lfs
            | M::Lgs
            | M::Lss
            | M::Xgetbv
            | M::Xsetbv
            | M::Fxsave
            | M::Fxsave64
            | M::Fxrstor
            | M::Fxrstor64
            | M::Xsave
            | M::Xrstor
            | M::Ldmxcsr
            | M::Stmxcsr
            | M::Popf
            | M::Popfd
            | M::Popfq
            | M::Pushf
            | M::Pushfd
            | M::Pushfq
            | M::Wait
            | M::Pause
            | M::Bound
            | M::Clflush
            | M::Clflushopt
            | M::Clwb
            | M::Prefetchw
            | M::Invpcid
    )
}

/// Mnemonics whose results may differ between correct implementations, or where QEMU 7.2
/// is known to be wrong; the host-CPU conformance check covers them instead.
fn not_comparable(m: Mnemonic) -> bool {
    use Mnemonic as M;
    matches!(
        m,
        // Approximations: the SDM bounds the relative error (1.5 * 2^-12), not the bits.
        M::Rcpps | M::Rcpss | M::Rsqrtps | M::Rsqrtss
        // QEMU 7.2 computes EFLAGS wrongly after ADCX/ADOX (reserved bits come out set;
        // fixed in QEMU 8.0, "target/i386: fix ADOX followed by ADCX").
        | M::Adcx | M::Adox
        // QEMU 7.2 sets CF after BLSI as after BLSR (CF = source is zero); the SDM and the
        // host CPU: CF = source is not zero.
        | M::Blsi
        // QEMU 7.2 loses the flags CMPXCHG8B/16B must leave alone (CF PF AF SF OF), and
        // sets reserved EFLAGS bits after some.
        | M::Cmpxchg8b | M::Cmpxchg16b
        // QEMU 7.2 reads the explicit lengths of the REX.W forms (RAX, RDX) as 32-bit
        // values (checked on the host CPU: 0xffffffff in RDX is a length of 16, not 1).
        | M::Pcmpestri64 | M::Pcmpestrm64
        // A zero source leaves the destination undefined (CPUs keep it, QEMU zero-extends
        // a 32-bit one); which sources are zero is only known at run time.
        | M::Bsf | M::Bsr
    )
}

/// Flags `insn` leaves undefined, as iced-x86 bits: iced's static set, plus OF after a
/// shift or rotate whose count is not the constant 1 (defined for 1-bit counts only).
pub fn undefined_of(insn: &Instruction) -> u32 {
    use Mnemonic as M;
    let mut u = insn.rflags_undefined();
    let shift = matches!(
        insn.mnemonic(),
        M::Rcl | M::Rcr | M::Rol | M::Ror | M::Shl | M::Sal | M::Shr | M::Sar | M::Shld | M::Shrd
    );
    let count_is_one = (0..insn.op_count())
        .any(|i| matches!(insn.op_kind(i), OpKind::Immediate8) && insn.immediate8() == 1)
        && insn.op_count() == 2;
    if shift && !count_is_one {
        u |= iced_x86::RflagsBits::OF;
    }
    u
}

/// Forms QEMU 7.2 gets wrong in one mode only.
fn not_comparable_in(code: Code, bits: u32) -> bool {
    match code {
        // QEMU raises #UD for the F6 /1 and F7 /1 encodings of TEST, which CPUs execute as
        // TEST (iced-x86 names them `_F6r1`/`_F7r1`).
        Code::Test_rm8_imm8_F6r1
        | Code::Test_rm16_imm16_F7r1
        | Code::Test_rm32_imm32_F7r1
        | Code::Test_rm64_imm32_F7r1 => true,
        // In 16-bit code QEMU takes MOVBE's and CRC32's operand size from the presence of
        // the 66 prefix as if the code were 32-bit: 16 and 32 bits come out swapped.
        _ if bits == 16 => matches!(code.mnemonic(), Mnemonic::Movbe | Mnemonic::Crc32),
        _ => false,
    }
}

/// The generator's recipe for `code` in `bits`-bit code, or `None` when it cannot produce
/// it.
pub fn form(code: Code, bits: u32) -> Option<Form> {
    let oc = code.op_code();
    let valid = match bits {
        16 => oc.mode16(),
        32 => oc.mode32(),
        _ => oc.mode64(),
    };
    if !valid
        || denied(code.mnemonic())
        || not_comparable(code.mnemonic())
        || not_comparable_in(code, bits)
        || code.flow_control() != FlowControl::Next
    {
        return None;
    }
    if code.is_string_instruction() || code == Code::Bswap_r16 {
        return None;
    }
    // BT* with a register bit offset and a memory operand reach far outside the operand.
    if matches!(
        code.mnemonic(),
        Mnemonic::Bt | Mnemonic::Bts | Mnemonic::Btr | Mnemonic::Btc
    ) && oc
        .op_kinds()
        .iter()
        .any(|k| matches!(k, K::r16_reg | K::r32_reg | K::r64_reg))
    {
        return None;
    }
    let mut ops = Vec::new();
    let mut imms = 0;
    for &k in oc.op_kinds() {
        ops.push(match k {
            K::r8_reg | K::r8_opcode => Op::Reg(1),
            K::r16_reg | K::r16_rm | K::r16_opcode | K::r16_reg_mem => Op::Reg(2),
            K::r32_reg | K::r32_rm | K::r32_opcode | K::r32_reg_mem | K::r32_vvvv => Op::Reg(4),
            K::r64_reg | K::r64_rm | K::r64_opcode | K::r64_reg_mem | K::r64_vvvv => Op::Reg(8),
            K::r8_or_mem => Op::RegOrMem(1),
            K::r16_or_mem => Op::RegOrMem(2),
            K::r32_or_mem => Op::RegOrMem(4),
            K::r64_or_mem => Op::RegOrMem(8),
            K::mem => Op::Mem,
            K::al => Op::Fixed(Register::AL),
            K::cl => Op::Fixed(Register::CL),
            K::ax => Op::Fixed(Register::AX),
            K::dx => Op::Fixed(Register::DX),
            K::eax => Op::Fixed(Register::EAX),
            K::rax => Op::Fixed(Register::RAX),
            K::imm8 => {
                imms += 1;
                Op::Imm(if imms > 1 {
                    OpKind::Immediate8_2nd
                } else {
                    OpKind::Immediate8
                })
            }
            K::imm8_const_1 => Op::One,
            K::imm8sex16 => Op::Imm(OpKind::Immediate8to16),
            K::imm8sex32 => Op::Imm(OpKind::Immediate8to32),
            K::imm8sex64 => Op::Imm(OpKind::Immediate8to64),
            K::imm16 => {
                imms += 1;
                Op::Imm(OpKind::Immediate16)
            }
            K::imm32 => Op::Imm(OpKind::Immediate32),
            K::imm32sex64 => Op::Imm(OpKind::Immediate32to64),
            K::imm64 => Op::Imm(OpKind::Immediate64),
            K::xmm_reg | K::xmm_rm => Op::Xmm,
            K::xmm_or_mem => Op::XmmOrMem,
            _ => return None,
        });
    }
    Some(Form { code, ops })
}

/// Every form the generator produces in `bits`-bit code: crane86's claimed forms it has a
/// recipe for, minus x87 (QEMU's transcendental and rounding corners differ by design).
pub fn forms(bits: u32) -> Vec<Form> {
    crane86_translator::table::claimed_forms()
        .filter_map(|(code, _)| form(code, bits))
        .filter(|f| {
            !f.code.cpuid_features().iter().any(|c| {
                matches!(
                    c,
                    iced_x86::CpuidFeature::FPU
                        | iced_x86::CpuidFeature::FPU287
                        | iced_x86::CpuidFeature::FPU387
                )
            })
        })
        .collect()
}

const RBX: u32 = 3;
const RSP: u32 = 4;

/// A random register of `size` bytes other than the reserved RBX and RSP families.
fn register(rng: &mut Rng, size: u32, bits: u32) -> Register {
    let n = if bits == 64 { 16 } else { 8 };
    loop {
        let i = rng.below(n) as u32;
        let r = match size {
            1 if bits != 64 || rng.one_in(4) => {
                // AL CL DL BL AH CH DH BH: the high halves are AH..BH = 4..7.
                if i >= 8 {
                    continue;
                }
                let (enc, hi) = (i & 3, i >= 4);
                if enc == RBX || (!hi && enc == RSP) {
                    continue;
                }
                Register::AL as u32 + i
            }
            _ => {
                if i == RBX || i == RSP {
                    continue;
                }
                match size {
                    1 => {
                        // SPL BPL SIL DIL R8L..: encodings 4.. in the REX byte registers.
                        if i < 4 {
                            Register::AL as u32 + i
                        } else {
                            Register::SPL as u32 + (i - 4)
                        }
                    }
                    2 => Register::AX as u32 + i,
                    4 => Register::EAX as u32 + i,
                    _ => Register::RAX as u32 + i,
                }
            }
        };
        if let Ok(r) = Register::try_from(r as usize) {
            return r;
        }
    }
}

/// A random memory operand in the scratch data area, for operand `i` of `insn`.
fn memory(rng: &mut Rng, insn: &mut Instruction, i: u32, bits: u32) {
    let size = insn.memory_size().size().max(1) as u64;
    let mut ea = SCRATCH + rng.below(DATA_END - SCRATCH - 64);
    if size >= 16 {
        // Always aligned: QEMU 7.2 does not raise the #GP the SDM requires for most legacy
        // SSE instructions on a misaligned 16-byte operand (the host-CPU conformance check
        // covers crane86's alignment checks).
        ea &= !15;
    }
    insn.set_op_kind(i, OpKind::Memory);
    insn.set_memory_index(Register::None);
    let choice = rng.below(4);
    if choice == 0 || (choice == 1 && bits != 64) {
        // Absolute.
        insn.set_memory_base(Register::None);
        insn.set_memory_displacement64(ea);
        insn.set_memory_displ_size(if bits == 16 { 2 } else { 4 });
    } else if choice == 1 && !matches!(insn.mnemonic(), Mnemonic::Shld | Mnemonic::Shrd) {
        // (Not SHLD/SHRD: QEMU 7.2 forgets their immediate byte when it computes a
        // RIP-relative address, and lands one byte low.)
        insn.set_memory_base(Register::RIP);
        insn.set_memory_displacement64(ea);
        insn.set_memory_displ_size(8);
    } else {
        let base = match bits {
            16 => Register::BX,
            32 => Register::EBX,
            _ => Register::RBX,
        };
        let disp = ea.wrapping_sub(BASE);
        insn.set_memory_base(base);
        insn.set_memory_displacement64(if bits == 64 { disp } else { disp & 0xffff_ffff });
        let small = (disp as i64) >= -128 && (disp as i64) < 128;
        insn.set_memory_displ_size(if small {
            1
        } else if bits == 16 {
            2
        } else {
            4
        });
    }
}

/// Writes to RBX or RSP (other than a push's or pop's own stack pointer update).
fn touches_reserved(insn: &Instruction, info: &mut InstructionInfoFactory) -> bool {
    let stack_op = matches!(
        insn.mnemonic(),
        Mnemonic::Push | Mnemonic::Pop | Mnemonic::Pushad | Mnemonic::Pusha
    );
    info.info(insn).used_registers().iter().any(|u| {
        let full = u.register().full_register();
        let writes = !matches!(
            u.access(),
            OpAccess::Read | OpAccess::CondRead | OpAccess::None | OpAccess::NoMemAccess
        );
        writes && (full == Register::RBX || (full == Register::RSP && !stack_op))
    })
}

/// One random instance of `form`, or `None` if this attempt produced something unusable.
pub fn instance(
    rng: &mut Rng,
    form: &Form,
    bits: u32,
    info: &mut InstructionInfoFactory,
) -> Option<Instruction> {
    let mut insn = Instruction::default();
    insn.set_code(form.code);
    insn.set_code_size(match bits {
        16 => iced_x86::CodeSize::Code16,
        32 => iced_x86::CodeSize::Code32,
        _ => iced_x86::CodeSize::Code64,
    });
    for (i, op) in form.ops.iter().enumerate() {
        let i = i as u32;
        let set_reg = |insn: &mut Instruction, r: Register| {
            insn.set_op_kind(i, OpKind::Register);
            insn.set_op_register(i, r);
        };
        match *op {
            Op::Reg(size) => set_reg(&mut insn, register(rng, size, bits)),
            Op::Fixed(r) => set_reg(&mut insn, r),
            Op::RegOrMem(size) if rng.one_in(2) => set_reg(&mut insn, register(rng, size, bits)),
            Op::RegOrMem(_) | Op::Mem => memory(rng, &mut insn, i, bits),
            Op::XmmOrMem if rng.one_in(2) => memory(rng, &mut insn, i, bits),
            Op::Xmm | Op::XmmOrMem => {
                let n = if bits == 64 { 16 } else { 8 };
                let r = Register::XMM0 as usize + rng.below(n) as usize;
                set_reg(&mut insn, Register::try_from(r).ok()?)
            }
            Op::Imm(kind) => {
                let v = if rng.one_in(3) {
                    rng.below(70)
                } else {
                    rng.value()
                };
                crane86_conformance::set_imm(&mut insn, i, kind, v);
            }
            Op::One => crane86_conformance::set_imm(&mut insn, i, OpKind::Immediate8, 1),
        }
    }
    if touches_reserved(&insn, info) {
        return None;
    }
    // The encoder must accept it (REX-only registers with AH..BH, and the like, do not).
    Encoder::new(bits).encode(&insn, super::env::END).ok()?;
    Some(insn)
}

/// A random program of up to `max_len` instructions from `forms`.
pub fn program(rng: &mut Rng, forms: &[Form], bits: u32, max_len: usize) -> Vec<Instruction> {
    let mut info = InstructionInfoFactory::new();
    let len = 1 + rng.below(max_len as u64) as usize;
    let mut out = Vec::with_capacity(len);
    // Flags whose value is undefined at this point of the program.
    let mut undefined = 0u32;
    let mut attempts = 0;
    while out.len() < len && attempts < len * 50 {
        attempts += 1;
        let form = &forms[rng.below(forms.len() as u64) as usize];
        let Some(insn) = instance(rng, form, bits, &mut info) else {
            continue;
        };
        if insn.rflags_read() & undefined != 0 {
            continue;
        }
        undefined = (undefined & !surely_modified(&insn)) | undefined_of(&insn);
        out.push(insn);
    }
    out
}

/// Flags `insn` certainly writes, as iced-x86 bits: iced's static set, except for shifts
/// and rotates whose count may turn out zero (a zero count leaves every flag alone): by CL,
/// or by an immediate that masks to zero (for RCL/RCR of bytes and words: to a multiple of
/// 9 or 17, which rotates nothing).
pub fn surely_modified(insn: &Instruction) -> u32 {
    use Mnemonic as M;
    let m = insn.mnemonic();
    if !matches!(
        m,
        M::Rcl | M::Rcr | M::Rol | M::Ror | M::Shl | M::Sal | M::Shr | M::Sar | M::Shld | M::Shrd
    ) {
        return insn.rflags_modified();
    }
    let last = insn.op_count().saturating_sub(1);
    let count = match insn.op_kind(last) {
        OpKind::Immediate8 => u32::from(insn.immediate8()),
        OpKind::Register => return 0,
        _ => 1,
    };
    let width = match insn.op_kind(0) {
        OpKind::Register => insn.op_register(0).size() as u32 * 8,
        _ => insn.memory_size().size() as u32 * 8,
    };
    let masked = count & if width == 64 { 0x3f } else { 0x1f };
    let rotates_nothing = matches!(m, M::Rcl | M::Rcr) && width < 32 && masked % (width + 1) == 0;
    if masked == 0 || rotates_nothing {
        0
    } else {
        insn.rflags_modified()
    }
}

/// True when no instruction of `program` reads a flag an earlier one left undefined (what
/// [`program`] guarantees, and what the minimiser must keep).
pub fn valid(program: &[Instruction]) -> bool {
    let mut undefined = 0u32;
    for insn in program {
        if insn.rflags_read() & undefined != 0 {
            return false;
        }
        undefined = (undefined & !surely_modified(insn)) | undefined_of(insn);
    }
    true
}

/// Flags the SDM leaves undefined at the end of `program`, or after any prefix of it (a
/// fault may stop it anywhere).
pub fn undefined_flags(program: &[Instruction]) -> u64 {
    let mut now = 0u32;
    let mut any = 0u32;
    for insn in program {
        now = (now & !surely_modified(insn)) | undefined_of(insn);
        any |= now;
    }
    crate::state::eflags_of_iced(any)
}

/// The program has SSE floating-point arithmetic (a packed or scalar single or double
/// operation: the mnemonic ends in PS, PD, SS or SD).
pub fn sse_float(program: &[Instruction]) -> bool {
    program.iter().any(|i| {
        let name = format!("{:?}", i.mnemonic()).to_ascii_lowercase();
        ["ps", "pd", "ss", "sd"].iter().any(|s| name.ends_with(s))
            && i.cpuid_features().iter().any(|f| {
                use iced_x86::CpuidFeature as F;
                matches!(f, F::SSE | F::SSE2 | F::SSE3 | F::SSE4_1)
            })
    })
}
