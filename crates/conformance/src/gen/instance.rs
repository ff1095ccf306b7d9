//! One random instance of a form [`super::spec`] described: operands chosen and encoded,
//! input registers, flags, memory and FPU state, constrained so that the instruction cannot
//! fault natively.

use super::*;

/// One generated instance.
#[derive(Clone, Debug)]
pub struct Case {
    /// The instruction, as decoded back from `bytes`.
    pub insn: Instruction,
    /// Its encoding at `base + INSN`.
    pub bytes: Vec<u8>,
    /// Input registers and flags.
    pub input: Regs,
    /// Input scratch memory (`MEM_LEN` bytes from `base + MEM_OFF`).
    pub mem: Vec<u8>,
    /// EFLAGS bits not compared.
    pub undefined: u64,
    /// Code size: 64, or 32 (compatibility mode natively, `CpuMode::Prot32` in crane86).
    pub bits: u32,
    /// Input FPU/SIMD state (an FXSAVE64 image).
    pub fx: Box<crate::fpstate::Image>,
    /// Compare the FPU/SIMD state afterwards.
    pub fpu: bool,
}

fn gpr_index(r: Register) -> usize {
    r.full_register().number()
}

fn is_high8(r: Register) -> bool {
    matches!(r, Register::AH | Register::CH | Register::DH | Register::BH)
}

fn size_mask(size: u32) -> u64 {
    if size >= 8 {
        u64::MAX
    } else {
        (1u64 << (size * 8)) - 1
    }
}

/// Reads a (sub-)register from `gpr`.
pub fn reg_read(gpr: &[u64; 16], r: Register) -> u64 {
    let v = gpr[gpr_index(r)];
    if is_high8(r) {
        (v >> 8) & 0xff
    } else {
        v & size_mask(r.size() as u32)
    }
}

/// Writes a (sub-)register into `gpr`, keeping the other bits.
fn reg_write(gpr: &mut [u64; 16], r: Register, v: u64) {
    let i = gpr_index(r);
    if is_high8(r) {
        gpr[i] = (gpr[i] & !0xff00) | ((v & 0xff) << 8);
    } else {
        let m = size_mask(r.size() as u32);
        gpr[i] = (gpr[i] & !m) | (v & m);
    }
}

fn reg_of(size: u32, n: u64, high8: bool) -> Register {
    let first = match size {
        1 => Register::AL,
        2 => Register::AX,
        4 => Register::EAX,
        _ => Register::RAX,
    } as usize;
    let idx = if size == 1 {
        // AL CL DL BL AH CH DH BH SPL BPL SIL DIL R8L..R15L
        if n >= 4 || high8 {
            n + 4
        } else {
            n
        }
    } else {
        n
    };
    Register::try_from(first + idx as usize).expect("GPR number in range")
}

fn pick_reg(rng: &mut Rng, size: u32, reserved: u16, bits: u32) -> Register {
    if bits == 32 {
        // Eight registers; byte registers are AL..BL and AH..BH.
        loop {
            let n = rng.below(8);
            let (num, high8) = if size == 1 && n >= 4 {
                (n - 4, true)
            } else {
                (n, false)
            };
            if reserved & (1 << num) == 0 {
                return reg_of(size, num, high8);
            }
        }
    }
    loop {
        let n = rng.below(16);
        let high8 = size == 1 && n < 4 && rng.one_in(4);
        if reserved & (1 << n) == 0 {
            return reg_of(size, n, high8);
        }
    }
}

/// Where a memory operand points.
struct MemOp {
    ea: u64,
    regs: u16,
}

fn make_mem(
    rng: &mut Rng,
    insn: &mut Instruction,
    i: u32,
    regs: &mut Regs,
    spec: &Spec,
    base: u64,
    offs: bool,
) -> MemOp {
    let (reserved, bits) = (spec.reserved, spec.bits);
    // Registers available as base/index, and the address size.
    let (nregs, asize) = if bits == 32 { (8, 4) } else { (16, 8) };
    let size = insn.memory_size().size().max(1) as u64;
    let mut ea = base + layout::DATA_LO + rng.below(layout::DATA_HI - layout::DATA_LO - 16);
    if size >= 16 {
        ea &= !15;
    }
    insn.set_op_kind(i, OpKind::Memory);
    let choice = rng.below(8);
    let mut used = 0u16;
    if offs || choice == 0 {
        // 64-bit: RIP-relative (or moffs64); 32-bit: absolute disp32 (or moffs32).
        let b = if offs || bits == 32 {
            Register::None
        } else {
            Register::RIP
        };
        insn.set_memory_base(b);
        insn.set_memory_index(Register::None);
        insn.set_memory_displacement64(ea);
        insn.set_memory_displ_size(asize);
    } else {
        let b = loop {
            let n = rng.below(nregs);
            if reserved & (1 << n) == 0 && !(n == 4 && size >= 16) {
                break n as usize;
            }
        };
        let disp = if rng.one_in(4) {
            0i64
        } else {
            rng.below(256) as i64 - 128
        };
        if b == 4 {
            ea = regs.gpr[4].wrapping_add(disp as u64);
        }
        let mut idx_part = 0u64;
        let mut index = Register::None;
        if choice == 1 && b != 4 {
            let x = loop {
                let n = rng.below(nregs) as usize;
                if n != 4 && n != b && reserved & (1 << n) == 0 {
                    break n;
                }
            };
            let scale = 1u64 << rng.below(4);
            let xv = rng.below(16);
            regs.gpr[x] = xv;
            idx_part = xv * scale;
            index = reg_of(asize, x as u64, false);
            insn.set_memory_index_scale(scale as u32);
            used |= 1 << x;
        }
        if b != 4 {
            regs.gpr[b] = ea.wrapping_sub(disp as u64).wrapping_sub(idx_part);
        }
        used |= 1 << b;
        insn.set_memory_base(reg_of(asize, b as u64, false));
        insn.set_memory_index(index);
        insn.set_memory_displacement64(disp as u64);
        insn.set_memory_displ_size(if disp == 0 { 0 } else { 1 });
    }
    MemOp { ea, regs: used }
}

fn mem_read(mem: &[u8], base: u64, ea: u64, size: u32) -> u64 {
    let off = (ea - base - layout::MEM_OFF) as usize;
    let mut b = [0u8; 8];
    b[..size as usize].copy_from_slice(&mem[off..off + size as usize]);
    u64::from_le_bytes(b)
}

fn mem_write(mem: &mut [u8], base: u64, ea: u64, size: u32, v: u64) {
    let off = (ea - base - layout::MEM_OFF) as usize;
    mem[off..off + size as usize].copy_from_slice(&v.to_le_bytes()[..size as usize]);
}

/// Makes operand `i` of `insn` the immediate `v` of `kind` (truncated or sign-extended as
/// the kind says).
pub fn set_imm(insn: &mut Instruction, i: u32, kind: OpKind, v: u64) {
    insn.set_op_kind(i, kind);
    match kind {
        OpKind::Immediate8 => insn.set_immediate8(v as u8),
        OpKind::Immediate8_2nd => insn.set_immediate8_2nd(v as u8),
        OpKind::Immediate16 => insn.set_immediate16(v as u16),
        OpKind::Immediate32 => insn.set_immediate32(v as u32),
        OpKind::Immediate64 => insn.set_immediate64(v),
        OpKind::Immediate8to16 => insn.set_immediate8to16(v as i8 as i16),
        OpKind::Immediate8to32 => insn.set_immediate8to32(v as i8 as i32),
        OpKind::Immediate8to64 => insn.set_immediate8to64(v as i8 as i64),
        _ => insn.set_immediate32to64(v as i32 as i64),
    }
}

/// Generates an instance of `spec` for the scratch area at `base`. With `div_zero` (DIV,
/// IDIV and AAM only) the divisor is zero: such a case must never run natively.
pub fn instance(spec: &Spec, rng: &mut Rng, base: u64, div_zero: bool) -> Result<Case, String> {
    let mut last = String::new();
    for _ in 0..64 {
        match try_instance(spec, rng, base, div_zero) {
            Ok(c) => return Ok(c),
            Err(e) => last = e,
        }
    }
    Err(format!("no encodable instance: {last}"))
}

fn try_instance(spec: &Spec, rng: &mut Rng, base: u64, div_zero: bool) -> Result<Case, String> {
    let bits = spec.bits;
    let mut regs = Regs::default();
    for g in regs.gpr.iter_mut() {
        *g = rng.value();
    }
    if bits == 32 {
        // A 32-bit state: R8..R15 and the upper halves do not exist.
        for (i, g) in regs.gpr.iter_mut().enumerate() {
            *g = if i < 8 { *g & 0xffff_ffff } else { 0 };
        }
    }
    regs.gpr[4] = base + layout::STACK_PTR;
    regs.flags = (rng.next() & fl::ARITH) | fl::FIXED1 | fl::IF;
    if rng.one_in(4) {
        regs.flags |= fl::DF;
    }
    let mut mem = vec![0u8; layout::MEM_LEN];
    for c in mem.chunks_mut(8) {
        c.copy_from_slice(&rng.next().to_le_bytes());
    }

    let mut insn = Instruction::default();
    insn.set_code(spec.code);
    insn.set_code_size(if bits == 32 {
        CodeSize::Code32
    } else {
        CodeSize::Code64
    });
    let mut memop: Option<MemOp> = None;
    for (i, g) in spec.ops.iter().enumerate() {
        let i = i as u32;
        let set_reg = |insn: &mut Instruction, r: Register| {
            insn.set_op_kind(i, OpKind::Register);
            insn.set_op_register(i, r);
        };
        match *g {
            Gen::Reg(size) => set_reg(&mut insn, pick_reg(rng, size, spec.reserved, bits)),
            Gen::Fixed(r) => set_reg(&mut insn, r),
            Gen::RegOrMem(size) if rng.one_in(2) => {
                set_reg(&mut insn, pick_reg(rng, size, spec.reserved, bits))
            }
            Gen::RegOrMem(_) | Gen::Mem | Gen::MemOffs => {
                let offs = matches!(g, Gen::MemOffs);
                let m = make_mem(rng, &mut insn, i, &mut regs, spec, base, offs);
                let size = insn.memory_size().size().clamp(1, 8) as u32;
                let v = if spec.fpu {
                    memory_float(rng, &insn)
                } else {
                    rng.value()
                };
                mem_write(&mut mem, base, m.ea, size, v);
                if spec.fpu && insn.memory_size().size() == 10 {
                    let f = crate::fpstate::f80(rng);
                    mem_write(&mut mem, base, m.ea, 8, f.signif);
                    mem_write(&mut mem, base, m.ea + 8, 2, u64::from(f.sign_exp));
                }
                memop = Some(m);
            }
            Gen::Imm(kind) => {
                let v = if rng.one_in(3) {
                    rng.below(70)
                } else {
                    rng.value()
                };
                set_imm(&mut insn, i, kind, v);
            }
            Gen::One => set_imm(&mut insn, i, OpKind::Immediate8, 1),
            Gen::Branch if bits == 32 => {
                insn.set_op_kind(i, OpKind::NearBranch32);
                insn.set_near_branch32((base + layout::TAKEN) as u32);
            }
            Gen::Branch => {
                insn.set_op_kind(i, OpKind::NearBranch64);
                insn.set_near_branch64(base + layout::TAKEN);
            }
            Gen::StrSi if bits == 32 => insn.set_op_kind(i, OpKind::MemorySegESI),
            Gen::StrEsDi if bits == 32 => insn.set_op_kind(i, OpKind::MemoryESEDI),
            Gen::StrSegDi if bits == 32 => insn.set_op_kind(i, OpKind::MemorySegEDI),
            Gen::StrSi => insn.set_op_kind(i, OpKind::MemorySegRSI),
            Gen::StrEsDi => insn.set_op_kind(i, OpKind::MemoryESRDI),
            Gen::StrSegDi => insn.set_op_kind(i, OpKind::MemorySegRDI),
            Gen::Xmm => set_reg(&mut insn, xmm(rng, bits)),
            Gen::XmmOrMem if rng.one_in(2) => set_reg(&mut insn, xmm(rng, bits)),
            Gen::Mm => set_reg(&mut insn, mm(rng)),
            Gen::MmOrMem if rng.one_in(2) => set_reg(&mut insn, mm(rng)),
            Gen::XmmOrMem | Gen::MmOrMem => {
                let m = make_mem(rng, &mut insn, i, &mut regs, spec, base, false);
                let v = crate::fpstate::vector(rng);
                let size = insn.memory_size().size().clamp(1, 16) as u32;
                mem_write(&mut mem, base, m.ea, size.min(8), v[0]);
                if size > 8 {
                    mem_write(&mut mem, base, m.ea + 8, size - 8, v[1]);
                }
                memop = Some(m);
            }
            Gen::Sti => set_reg(
                &mut insn,
                Register::try_from(Register::ST0 as usize + rng.below(8) as usize)
                    .unwrap_or(Register::ST1),
            ),
            Gen::Xlat => {
                insn.set_op_kind(i, OpKind::Memory);
                insn.set_memory_base(if bits == 32 {
                    Register::EBX
                } else {
                    Register::RBX
                });
                insn.set_memory_index(Register::AL);
                insn.set_memory_index_scale(1);
            }
        }
    }
    constrain(
        spec,
        rng,
        &mut insn,
        &mut regs,
        &mut mem,
        memop.as_ref(),
        base,
        div_zero,
    )?;

    let ip = base + layout::INSN;
    let mut enc = Encoder::new(bits);
    enc.encode(&insn, ip).map_err(|e| e.to_string())?;
    let bytes = enc.take_buffer();
    // UD0 without operands is the AMD decoding of 0F FF.
    let options = if spec.code == Code::Ud0 {
        DecoderOptions::AMD
    } else {
        DecoderOptions::NONE
    };
    let decoded = Decoder::with_ip(bits, &bytes, ip, options).decode();
    if decoded.code() != spec.code {
        return Err(format!("encoded as {:?}", decoded.code()));
    }
    let undefined = crate::undefined::mask(&decoded, &regs);
    let mut fx = if spec.fpu {
        crate::fpstate::random_image(rng)
    } else {
        crate::fpstate::default_image()
    };
    match spec.code {
        // Mostly inside the documented domains (largest exponents: 1.0 = 0x3fff and just
        // under 0.25 = 0x3ffc), where the results are defined; the rest random.
        Code::F2xm1 => crate::fpstate::constrain_st0(&mut fx, rng, 0x3fff),
        Code::Fyl2xp1 => crate::fpstate::constrain_st0(&mut fx, rng, 0x3ffc),
        _ => {}
    }
    Ok(Case {
        insn: decoded,
        bytes,
        input: regs,
        mem,
        undefined,
        bits,
        fx,
        fpu: spec.fpu,
    })
}

fn xmm(rng: &mut Rng, bits: u32) -> Register {
    let n = rng.below(if bits == 32 { 8 } else { 16 }) as usize;
    Register::try_from(Register::XMM0 as usize + n).unwrap_or(Register::XMM0)
}

fn mm(rng: &mut Rng) -> Register {
    Register::try_from(Register::MM0 as usize + rng.below(8) as usize).unwrap_or(Register::MM0)
}

/// A memory operand's value for an FPU/SIMD form: a float pattern of the operand's width
/// when it holds floats, else an integer.
fn memory_float(rng: &mut Rng, insn: &Instruction) -> u64 {
    use iced_x86::MemorySize as S;
    match insn.memory_size() {
        S::Float32 => u64::from(crate::fpstate::f32_bits(rng)),
        S::Float64 => crate::fpstate::f64_bits(rng),
        S::Packed64_Float32 => {
            u64::from(crate::fpstate::f32_bits(rng))
                | u64::from(crate::fpstate::f32_bits(rng)) << 32
        }
        _ => rng.value(),
    }
}

/// Per-mnemonic input constraints: valid targets, non-faulting divisions, in-range bit
/// offsets and string pointers.
#[allow(clippy::too_many_arguments)]
fn constrain(
    spec: &Spec,
    rng: &mut Rng,
    insn: &mut Instruction,
    regs: &mut Regs,
    mem: &mut [u8],
    memop: Option<&MemOp>,
    base: u64,
    div_zero: bool,
) -> Result<(), String> {
    use Mnemonic as M;
    let taken = base + layout::TAKEN;
    let addr_regs = memop.map_or(0, |m| m.regs);
    let conflict = |r: Register| addr_regs & (1 << gpr_index(r)) != 0;
    if spec.code == Code::Ldmxcsr_m32 {
        // A valid MXCSR with every exception masked (reserved bits would #GP natively, an
        // unmasked exception would trap the host later).
        let v = 0x1f80
            | (rng.next() & 0x3f)
            | rng.below(4) << 13
            | if rng.one_in(4) { 1 << 6 } else { 0 }
            | if rng.one_in(4) { 1 << 15 } else { 0 };
        if let Some(m) = memop {
            mem_write(mem, base, m.ea, 4, v);
        }
    }
    // Reads/writes operand 0 whether register or memory.
    let op0_size = match insn.op0_kind() {
        OpKind::Register => insn.op0_register().size() as u32,
        _ => insn.memory_size().size() as u32,
    };
    let read0 = |regs: &Regs, mem: &[u8]| match insn.op0_kind() {
        OpKind::Register => reg_read(&regs.gpr, insn.op0_register()),
        _ => mem_read(mem, base, memop.expect("memory operand").ea, op0_size),
    };
    let m = insn.mnemonic();
    match m {
        M::Div | M::Idiv => {
            let size = op0_size;
            let mask = size_mask(size);
            let mut d = read0(regs, mem) & mask;
            if div_zero {
                d = 0;
            } else if d == 0 {
                d = (rng.value() | 1) & mask;
            }
            match insn.op0_kind() {
                OpKind::Register => reg_write(&mut regs.gpr, insn.op0_register(), d),
                _ => mem_write(mem, base, memop.expect("memory").ea, size, d),
            }
            let (lo, hi) = match size {
                1 => (Register::AL, Register::AH),
                2 => (Register::AX, Register::DX),
                4 => (Register::EAX, Register::EDX),
                _ => (Register::RAX, Register::RDX),
            };
            let bits = size * 8;
            if m == M::Div {
                let h = if d == 0 { rng.value() } else { rng.next() % d };
                reg_write(&mut regs.gpr, hi, h);
            } else {
                let sext = |v: u64| ((v << (64 - bits)) as i64 >> (64 - bits)) as u64;
                let min = 1u64 << (bits - 1);
                let mut l = reg_read(&regs.gpr, lo);
                if d == mask && l == min {
                    l = 0;
                    reg_write(&mut regs.gpr, lo, l);
                }
                let h = if sext(l) >> 63 != 0 { u64::MAX } else { 0 };
                reg_write(&mut regs.gpr, hi, h);
            }
        }
        M::Aam => {
            // AAM divides AL by the immediate: 0 raises #DE.
            if div_zero {
                insn.set_immediate8(0);
            } else if insn.immediate8() == 0 {
                insn.set_immediate8(1 + rng.below(255) as u8);
            }
        }
        M::Bt | M::Bts | M::Btr | M::Btc
            if insn.op0_kind() == OpKind::Memory && insn.op1_kind() == OpKind::Register =>
        {
            let r = insn.op1_register();
            if conflict(r) {
                return Err("bit offset register is an address register".into());
            }
            let v = (rng.below(512) as i64 - 256) as u64;
            reg_write(&mut regs.gpr, r, v);
        }
        M::Shld | M::Shrd if op0_size == 2 => match insn.op2_kind() {
            OpKind::Immediate8 => {
                if insn.immediate8() & 31 > 16 {
                    insn.set_immediate8(rng.below(17) as u8);
                }
            }
            _ => {
                if regs.gpr[1] & 31 > 16 {
                    reg_write(&mut regs.gpr, Register::CL, rng.below(17));
                }
            }
        },
        M::Enter | M::Leave => {
            regs.gpr[5] = base + layout::STACK_PTR + 8 * rng.below(32);
            if m == M::Enter && insn.immediate16() >= 0xc00 {
                // The host probes the new stack top (RSP - frame size): keep it inside the
                // scratch stack.
                let size = if rng.one_in(4) { 0 } else { rng.below(0xc00) };
                insn.set_immediate16(size as u16);
            }
        }
        M::Xlatb => {
            regs.gpr[3] = base + layout::DATA_LO;
        }
        // The implicit DS:rDI destination, inside the scratch data.
        M::Maskmovq | M::Maskmovdqu => {
            regs.gpr[7] = base + 0x2400 + rng.below(0x400);
        }
        _ => {}
    }
    if insn.is_string_instruction() {
        let rep = rng.one_in(2);
        if rep {
            if matches!(
                m,
                M::Cmpsb
                    | M::Cmpsw
                    | M::Cmpsd
                    | M::Cmpsq
                    | M::Scasb
                    | M::Scasw
                    | M::Scasd
                    | M::Scasq
            ) && rng.one_in(2)
            {
                insn.set_has_repne_prefix(true);
            } else {
                insn.set_has_repe_prefix(true);
            }
            regs.gpr[1] = rng.below(20);
        }
        regs.gpr[6] = base + 0x1c00 + rng.below(0x400);
        regs.gpr[7] = base + 0x2400 + rng.below(0x400);
    }
    match spec.code.flow_control() {
        FlowControl::IndirectBranch | FlowControl::IndirectCall => match insn.op0_kind() {
            OpKind::Register => {
                let r = insn.op0_register();
                if conflict(r) {
                    return Err("target register is an address register".into());
                }
                reg_write(&mut regs.gpr, r, taken);
            }
            _ => {
                let ea = memop.expect("memory target").ea;
                mem_write(mem, base, ea, op0_size.min(8), taken);
            }
        },
        FlowControl::Return => {
            mem_write(mem, base, base + layout::STACK_PTR, 8, taken);
        }
        _ => {}
    }
    Ok(())
}
