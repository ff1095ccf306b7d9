//! MMX and SSE instructions: availability checks, operand traffic and the helper call.
//!
//! The instruction semantics live in `crane86_fpu` (soft float, exact MXCSR behaviour) and
//! run through one runtime helper ([`FpuHelper::Simd`]), called the same way by both tiers.
//! This module does what needs the translator: the #UD/#NM checks that CR0/CR4 (part of the
//! block key) decide, 16-byte alignment, loading a memory or general-register source into
//! the unit's exchange area, and writing a general-register, memory or EFLAGS result back,
//! in an order that keeps exceptions precise (every check and load before the helper, the
//! helper before any store, a store's high part before its low part so that a fault on
//! either leaves memory untouched).
//!
//! The most frequent data movement and bitwise forms (what compilers emit for `memcpy`,
//! `memset`, zeroing and scalar float code: MOVAPS..., MOVSD/MOVSS, MOVLPD/MOVHPD,
//! UNPCKLPD/UNPCKHPD, PXOR/ANDPD...) are lowered inline as 64-bit halves instead; they have
//! no MXCSR interaction, so the inline form is exactly the helper's. SSE float arithmetic
//! and COMIS/UCOMIS are inline under a guard, with the helper as fallback
//! (`simd_float`); the hot SSE2 integer forms (packed add/subtract, unpacks, PSHUFD and
//! friends, shifts by an immediate) are inline SWAR arithmetic (`simd_int`).

use crane86_fpu::{Operands, IO_DATA0, IO_DATA1, IO_FLAGS, IO_RAX, IO_RDX};
use crane86_runtime::key::{FPU_EM, FPU_TS};
use crane86_runtime::{flags as fl, Exception, Fault};
use iced_x86::{Code, Instruction, OpKind, Register};

use super::flags::set_eflags;
use super::operands::{mem_access, op_size, read_op, read_reg, write_reg};
use super::seg_check::{checked_linear, Access};
use crate::emit::{Bin, Emit, FpuHelper, R};

/// Raises #UD/#NM as CR0.EM/TS and CR4.OSFXSR say (SDM Vol. 3 table 2-2): SSE forms need
/// OSFXSR and no EM; MMX forms need no EM; both raise #NM under TS, after the #UD checks.
pub(super) fn check_available<E: Emit>(e: &mut E, sse: bool) -> R<()> {
    let f = e.ctx().fpu;
    if f & FPU_EM != 0 {
        return Err(e.raise(Fault::new(Exception::InvalidOpcode)));
    }
    if sse {
        e.require_osfxsr()?;
    }
    if f & FPU_TS != 0 {
        return Err(e.raise(Fault::new(Exception::DeviceNotAvailable)));
    }
    Ok(())
}

/// True for an SSE form (any XMM operand, or an MXCSR instruction); false for MMX-only forms.
fn is_sse(insn: &Instruction) -> bool {
    matches!(insn.code(), Code::Ldmxcsr_m32 | Code::Stmxcsr_m32)
        || (0..insn.op_count())
            .any(|i| insn.op_kind(i) == OpKind::Register && insn.op_register(i).is_xmm())
}

/// Legacy SSE forms whose 16-byte memory operand need not be aligned.
fn unaligned_ok(code: Code) -> bool {
    use iced_x86::Mnemonic as M;
    matches!(
        code.mnemonic(),
        M::Movups
            | M::Movupd
            | M::Movdqu
            | M::Lddqu
            | M::Pcmpestri
            | M::Pcmpestri64
            | M::Pcmpestrm
            | M::Pcmpestrm64
            | M::Pcmpistri
            | M::Pcmpistrm
    )
}

/// Loads `size` bytes (1..=16) at `a` into the exchange area, low bytes first.
pub(super) fn load_io<E: Emit>(e: &mut E, a: E::V, size: u32) -> R<()> {
    let lo = e.load(a, size.min(8))?;
    let hi = if size > 8 {
        let eight = e.imm(8);
        let a8 = e.bin(Bin::Add, a, eight);
        Some(e.load(a8, size - 8)?)
    } else {
        None
    };
    e.set_fpu_io(IO_DATA0, lo);
    let hi = hi.unwrap_or_else(|| e.imm(0));
    e.set_fpu_io(IO_DATA1, hi);
    Ok(())
}

/// Stores `size` bytes (1..=16) from the exchange area at `a`: the part above 8 bytes first,
/// so that a fault on either part leaves memory unchanged.
pub(super) fn store_io<E: Emit>(e: &mut E, a: E::V, size: u32) -> R<()> {
    if size > 8 {
        let hi = e.fpu_io(IO_DATA1);
        let eight = e.imm(8);
        let a8 = e.bin(Bin::Add, a, eight);
        e.store(a8, size - 8, hi)?;
    }
    let lo = e.fpu_io(IO_DATA0);
    e.store(a, size.min(8), lo)
}

/// Stores a 128-bit value given as two halves, high half first (see [`store_io`]).
fn store128<E: Emit>(e: &mut E, a: E::V, lo: E::V, hi: E::V) -> R<()> {
    let eight = e.imm(8);
    let a8 = e.bin(Bin::Add, a, eight);
    e.store(a8, 8, hi)?;
    e.store(a, 8, lo)
}

/// The linear address of a 16-byte operand, with the alignment #GP(0) of aligned forms.
fn address<E: Emit>(e: &mut E, insn: &Instruction, size: u32, access: Access) -> R<E::V> {
    let a = mem_access(e, insn, size, access)?;
    if size == 16 && !unaligned_ok(insn.code()) {
        let m = e.imm(15);
        let low = e.bin(Bin::And, a, m);
        e.raise_if(low, Fault::with_code(Exception::GeneralProtection, 0))?;
    }
    Ok(a)
}

/// Executes or translates one MMX/SSE instruction.
pub fn execute<E: Emit>(e: &mut E, insn: &Instruction) -> R<()> {
    check_available(e, is_sse(insn))?;
    if inline(e, insn)? || super::simd_int::inline(e, insn)? || super::simd_float::execute(e, insn)?
    {
        return Ok(());
    }
    if matches!(
        insn.code(),
        Code::Maskmovq_rDI_mm_mm | Code::Maskmovdqu_rDI_xmm_xmm
    ) {
        return maskmov(e, insn);
    }
    let code = insn.code();
    let mem_size = insn.memory_size().size() as u32;
    let mem_at = (0..insn.op_count()).find(|&i| insn.op_kind(i) == OpKind::Memory);
    let addr = match mem_at {
        Some(i) => {
            let access = if i == 0 { Access::Write } else { Access::Read };
            Some(address(e, insn, mem_size, access)?)
        }
        None => None,
    };
    // Sources: a memory operand anywhere but the destination, or a general register.
    match mem_at {
        Some(i) if i > 0 => load_io(e, addr.expect("memory operand"), mem_size)?,
        _ => {
            for i in 1..insn.op_count() {
                if insn.op_kind(i) == OpKind::Register && insn.op_register(i).is_gpr() {
                    let v = read_reg(e, insn.op_register(i));
                    e.set_fpu_io(IO_DATA0, v);
                }
            }
        }
    }
    if matches!(
        insn.mnemonic(),
        iced_x86::Mnemonic::Pcmpestri
            | iced_x86::Mnemonic::Pcmpestri64
            | iced_x86::Mnemonic::Pcmpestrm
            | iced_x86::Mnemonic::Pcmpestrm64
    ) {
        let rax = e.gpr(0);
        let rdx = e.gpr(2);
        e.set_fpu_io(IO_RAX, rax);
        e.set_fpu_io(IO_RDX, rdx);
    }
    if matches!(code, Code::Ldmxcsr_m32) {
        // LDMXCSR's operand is its source although it is operand 0.
        load_io(e, addr.expect("memory operand"), 4)?;
    }
    let z = e.imm(0);
    if let Some(form) = string_form(insn) {
        let form = e.imm(form);
        e.fpu_call(FpuHelper::StringCompare, [form, z, z, z])?;
    } else {
        let c = e.imm(code as u64);
        let o = e.imm(Operands::of(insn).0);
        e.fpu_call(FpuHelper::Simd, [c, o, z, z])?;
    }
    // Results that leave the unit.
    if mem_at == Some(0) && code != Code::Ldmxcsr_m32 {
        store_io(e, addr.expect("memory operand"), mem_size)?;
    }
    if insn.op_count() > 0 && insn.op_kind(0) == OpKind::Register && insn.op_register(0).is_gpr() {
        let v = e.fpu_io(IO_DATA0);
        write_reg(e, insn.op_register(0), v);
    }
    if matches!(
        insn.mnemonic(),
        iced_x86::Mnemonic::Pcmpestri
            | iced_x86::Mnemonic::Pcmpestri64
            | iced_x86::Mnemonic::Pcmpistri
    ) {
        let v = e.fpu_io(IO_DATA0);
        write_reg(e, Register::ECX, v);
    }
    if insn.rflags_modified() != 0 {
        let f = e.fpu_io(IO_FLAGS);
        let m = e.imm(fl::ARITH);
        let f = e.bin(Bin::And, f, m);
        set_eflags(e, f);
    }
    Ok(())
}

/// For an SSE4.2 string compare, its operands packed for its own helper
/// (`crane86_runtime::fpu::string_form`), which skips the SIMD unit's dispatch.
fn string_form(insn: &Instruction) -> Option<u64> {
    use iced_x86::Mnemonic as M;
    if !matches!(
        insn.mnemonic(),
        M::Pcmpestri | M::Pcmpestri64 | M::Pcmpestrm | M::Pcmpestrm64 | M::Pcmpistri | M::Pcmpistrm
    ) {
        return None;
    }
    let xmm = |i: u32| match insn.op_kind(i) {
        OpKind::Register if insn.op_register(i).is_xmm() => Some(insn.op_register(i).number()),
        _ => None,
    };
    let b = match insn.op_kind(1) {
        OpKind::Memory => None,
        _ => Some(xmm(1)?),
    };
    Some(crane86_runtime::fpu::string_form(
        insn.code(),
        insn.immediate8(),
        xmm(0)?,
        b,
    ))
}

/// MASKMOVQ/MASKMOVDQU: load the 8/16 bytes at DS:rDI (segment override allowed), merge
/// the selected bytes in the unit, store them back.
fn maskmov<E: Emit>(e: &mut E, insn: &Instruction) -> R<()> {
    let asz = match insn.op0_kind() {
        OpKind::MemorySegDI => 2,
        OpKind::MemorySegEDI => 4,
        _ => 8,
    };
    let width = if insn.code() == Code::Maskmovq_rDI_mm_mm {
        8
    } else {
        16
    };
    let di = super::operands::read_gpr_sized(e, 7, asz);
    let a = checked_linear(e, insn.memory_segment(), di, width, Access::Write)?;
    load_io(e, a, width)?;
    let c = e.imm(insn.code() as u64);
    let o = e.imm(Operands::of(insn).0);
    let z = e.imm(0);
    e.fpu_call(FpuHelper::Simd, [c, o, z, z])?;
    store_io(e, a, width)
}

/// The inline forms: moves and bitwise operations on XMM registers. Returns false when
/// `insn` is not one of them.
fn inline<E: Emit>(e: &mut E, insn: &Instruction) -> R<bool> {
    use Code as C;
    let code = insn.code();
    let xmm = |i: u32| insn.op_register(i).number();
    match code {
        // Loads and register moves of a whole XMM register.
        C::Movaps_xmm_xmmm128
        | C::Movups_xmm_xmmm128
        | C::Movapd_xmm_xmmm128
        | C::Movupd_xmm_xmmm128
        | C::Movdqa_xmm_xmmm128
        | C::Movdqu_xmm_xmmm128
        | C::Lddqu_xmm_m128
        | C::Movntdqa_xmm_m128 => {
            let (lo, hi) = source128(e, insn)?;
            e.set_xmm(xmm(0), 0, lo);
            e.set_xmm(xmm(0), 1, hi);
        }
        // Stores of a whole XMM register.
        C::Movaps_xmmm128_xmm
        | C::Movups_xmmm128_xmm
        | C::Movapd_xmmm128_xmm
        | C::Movupd_xmmm128_xmm
        | C::Movdqa_xmmm128_xmm
        | C::Movdqu_xmmm128_xmm
        | C::Movntps_m128_xmm
        | C::Movntpd_m128_xmm
        | C::Movntdq_m128_xmm => {
            let lo = e.xmm(xmm(1), 0);
            let hi = e.xmm(xmm(1), 1);
            if insn.op0_kind() == OpKind::Memory {
                let a = address(e, insn, 16, Access::Write)?;
                store128(e, a, lo, hi)?;
            } else {
                e.set_xmm(xmm(0), 0, lo);
                e.set_xmm(xmm(0), 1, hi);
            }
        }
        C::Pxor_xmm_xmmm128
        | C::Xorps_xmm_xmmm128
        | C::Xorpd_xmm_xmmm128
        | C::Por_xmm_xmmm128
        | C::Orps_xmm_xmmm128
        | C::Orpd_xmm_xmmm128
        | C::Pand_xmm_xmmm128
        | C::Andps_xmm_xmmm128
        | C::Andpd_xmm_xmmm128
        | C::Pandn_xmm_xmmm128
        | C::Andnps_xmm_xmmm128
        | C::Andnpd_xmm_xmmm128 => {
            use iced_x86::Mnemonic as M;
            let d = xmm(0);
            let zeroing = matches!(insn.mnemonic(), M::Pxor | M::Xorps | M::Xorpd)
                && insn.op1_kind() == OpKind::Register
                && xmm(1) == d;
            let (slo, shi) = if zeroing {
                let z = e.imm(0);
                (z, z)
            } else {
                source128(e, insn)?
            };
            let mut halves = [slo, shi];
            for (h, s) in halves.iter_mut().enumerate() {
                if zeroing {
                    continue;
                }
                let mut dv = e.xmm(d, h);
                let op = match insn.mnemonic() {
                    M::Pxor | M::Xorps | M::Xorpd => Bin::Xor,
                    M::Por | M::Orps | M::Orpd => Bin::Or,
                    M::Pand | M::Andps | M::Andpd => Bin::And,
                    _ => {
                        dv = e.un(crate::emit::Un::Not, dv);
                        Bin::And
                    }
                };
                *s = e.bin(op, dv, *s);
            }
            e.set_xmm(d, 0, halves[0]);
            e.set_xmm(d, 1, halves[1]);
        }
        // The compare and mask-extract pair of string scans (strlen, memchr), in 64-bit
        // halves with SWAR arithmetic, so they need no helper call.
        C::Pcmpeqb_xmm_xmmm128 | C::Pcmpeqw_xmm_xmmm128 | C::Pcmpeqd_xmm_xmmm128 => {
            let lane = match code {
                C::Pcmpeqb_xmm_xmmm128 => 8,
                C::Pcmpeqw_xmm_xmmm128 => 16,
                _ => 32,
            };
            let (slo, shi) = source128(e, insn)?;
            let d = xmm(0);
            for (h, s) in [(0, slo), (1, shi)] {
                let dv = e.xmm(d, h);
                let r = lanes_equal(e, dv, s, lane);
                e.set_xmm(d, h, r);
            }
        }
        C::Pmovmskb_r32_xmm | C::Pmovmskb_r64_xmm => {
            let r = xmm(1);
            let lo = e.xmm(r, 0);
            let hi = e.xmm(r, 1);
            let ml = byte_signs(e, lo);
            let mh = byte_signs(e, hi);
            let eight = e.imm(8);
            let mh = e.bin(Bin::Shl, mh, eight);
            let v = e.bin(Bin::Or, ml, mh);
            write_reg(e, insn.op_register(0), v);
        }
        // MOVSD/MOVSS: a load zeroes the rest of the register, a register move keeps it.
        C::Movsd_xmm_xmmm64 | C::Movss_xmm_xmmm32 | C::Movsd_xmmm64_xmm | C::Movss_xmmm32_xmm => {
            let single = matches!(code, C::Movss_xmm_xmmm32 | C::Movss_xmmm32_xmm);
            let size = if single { 4 } else { 8 };
            if insn.op1_kind() == OpKind::Memory {
                let a = mem_access(e, insn, size, Access::Read)?;
                let v = e.load(a, size)?;
                let z = e.imm(0);
                e.set_xmm(xmm(0), 0, v);
                e.set_xmm(xmm(0), 1, z);
            } else {
                let v = e.xmm(xmm(1), 0);
                if insn.op0_kind() == OpKind::Memory {
                    let a = mem_access(e, insn, size, Access::Write)?;
                    e.store(a, size, v)?;
                } else if single {
                    let d = e.xmm(xmm(0), 0);
                    let keep = e.imm(0xffff_ffff_0000_0000);
                    let d = e.bin(Bin::And, d, keep);
                    let v = e.zext(v, 32);
                    let v = e.bin(Bin::Or, d, v);
                    e.set_xmm(xmm(0), 0, v);
                } else {
                    e.set_xmm(xmm(0), 0, v);
                }
            }
        }
        // One 64-bit half loaded or stored, the other kept.
        C::Movlpd_xmm_m64 | C::Movlps_xmm_m64 | C::Movhpd_xmm_m64 | C::Movhps_xmm_m64 => {
            let a = mem_access(e, insn, 8, Access::Read)?;
            let v = e.load(a, 8)?;
            let half = usize::from(matches!(code, C::Movhpd_xmm_m64 | C::Movhps_xmm_m64));
            e.set_xmm(xmm(0), half, v);
        }
        C::Movlpd_m64_xmm | C::Movlps_m64_xmm | C::Movhpd_m64_xmm | C::Movhps_m64_xmm => {
            let half = usize::from(matches!(code, C::Movhpd_m64_xmm | C::Movhps_m64_xmm));
            let v = e.xmm(xmm(1), half);
            let a = mem_access(e, insn, 8, Access::Write)?;
            e.store(a, 8, v)?;
        }
        C::Movhlps_xmm_xmm | C::Movlhps_xmm_xmm => {
            let (from, to) = if code == C::Movhlps_xmm_xmm {
                (1, 0)
            } else {
                (0, 1)
            };
            let v = e.xmm(xmm(1), from);
            e.set_xmm(xmm(0), to, v);
        }
        // UNPCKLPD: the two low halves; UNPCKHPD: the two high halves.
        C::Unpcklpd_xmm_xmmm128 | C::Unpckhpd_xmm_xmmm128 => {
            let (slo, shi) = source128(e, insn)?;
            let d = xmm(0);
            if code == C::Unpcklpd_xmm_xmmm128 {
                e.set_xmm(d, 1, slo);
            } else {
                let dhi = e.xmm(d, 1);
                e.set_xmm(d, 0, dhi);
                e.set_xmm(d, 1, shi);
            }
        }
        // MOVD/MOVQ between XMM and general registers or memory.
        C::Movd_xmm_rm32 | C::Movq_xmm_rm64 | C::Movq_xmm_xmmm64 => {
            let size = if code == C::Movd_xmm_rm32 { 4 } else { 8 };
            let v = match insn.op1_kind() {
                OpKind::Memory => {
                    let a = mem_access(e, insn, size, Access::Read)?;
                    e.load(a, size)?
                }
                _ if code == C::Movq_xmm_xmmm64 => e.xmm(xmm(1), 0),
                _ => {
                    let v = read_reg(e, insn.op_register(1));
                    if size == 4 {
                        e.zext(v, 32)
                    } else {
                        v
                    }
                }
            };
            let z = e.imm(0);
            e.set_xmm(xmm(0), 0, v);
            e.set_xmm(xmm(0), 1, z);
        }
        C::Movd_rm32_xmm | C::Movq_rm64_xmm | C::Movq_xmmm64_xmm => {
            let size = if code == C::Movd_rm32_xmm { 4 } else { 8 };
            let v = e.xmm(xmm(1), 0);
            match insn.op0_kind() {
                OpKind::Memory => {
                    let a = mem_access(e, insn, size, Access::Write)?;
                    e.store(a, size, v)?;
                }
                _ if code == C::Movq_xmmm64_xmm => {
                    let z = e.imm(0);
                    e.set_xmm(xmm(0), 0, v);
                    e.set_xmm(xmm(0), 1, z);
                }
                _ => write_reg(e, insn.op_register(0), v),
            }
        }
        _ => return Ok(false),
    }
    Ok(true)
}

/// PCMPEQ on one 64-bit half: each `lane`-bit lane of the result is all ones where `a` and
/// `b` agree, else zero. With x = a ^ b, adding the low bits of each lane to all-ones-but-
/// the-top carries into the top bit exactly when those low bits are not all zero; or-ing x
/// in covers the top bit itself, so the top bit of `t` is "lane of x non-zero", without a
/// carry crossing lanes. A lone top bit per lane then becomes a full lane as
/// (z << 1) - (z >> (lane - 1)), modulo 2^64.
fn lanes_equal<E: Emit>(e: &mut E, a: E::V, b: E::V, lane: u32) -> E::V {
    let top = match lane {
        8 => 0x8080_8080_8080_8080u64,
        16 => 0x8000_8000_8000_8000,
        _ => 0x8000_0000_8000_0000,
    };
    let x = e.bin(Bin::Xor, a, b);
    let low_bits = e.imm(!top);
    let lx = e.bin(Bin::And, x, low_bits);
    let t = e.bin(Bin::Add, lx, low_bits);
    let t = e.bin(Bin::Or, t, x);
    let nt = e.un(crate::emit::Un::Not, t);
    let top_v = e.imm(top);
    let z = e.bin(Bin::And, nt, top_v);
    let one = e.imm(1);
    let up = e.bin(Bin::Shl, z, one);
    let sh = e.imm(u64::from(lane - 1));
    let down = e.bin(Bin::Shr, z, sh);
    e.bin(Bin::Sub, up, down)
}

/// PMOVMSKB on one 64-bit half: the top bit of byte i as bit i. The multiplier moves the
/// top bit of byte i to bit 56 + i (the partial products never collide), and the shift keeps
/// those eight bits.
fn byte_signs<E: Emit>(e: &mut E, v: E::V) -> E::V {
    let tops = e.imm(0x8080_8080_8080_8080);
    let m = e.bin(Bin::And, v, tops);
    let k = e.imm(0x0002_0408_1020_4081);
    let p = e.bin(Bin::Mul, m, k);
    let sh = e.imm(56);
    e.bin(Bin::Shr, p, sh)
}

/// Operand 1 as a 128-bit value (XMM register or aligned-as-required memory).
pub(super) fn source128<E: Emit>(e: &mut E, insn: &Instruction) -> R<(E::V, E::V)> {
    if insn.op1_kind() == OpKind::Memory {
        let a = address(e, insn, 16, Access::Read)?;
        let lo = e.load(a, 8)?;
        let eight = e.imm(8);
        let a8 = e.bin(Bin::Add, a, eight);
        let hi = e.load(a8, 8)?;
        Ok((lo, hi))
    } else {
        let r = insn.op_register(1).number();
        Ok((e.xmm(r, 0), e.xmm(r, 1)))
    }
}

/// CRC32 r32/r64, r/m8..64 (SSE4.2, but a general-register instruction: no CR0/CR4
/// checks): the CRC-32C step of the unit, through the same helper.
pub fn crc32<E: Emit>(e: &mut E, insn: &Instruction) -> R<()> {
    let size = op_size(insn, 1);
    let acc = read_op(e, insn, 0, 4)?;
    let v = read_op(e, insn, 1, size)?;
    e.set_fpu_io(IO_RAX, acc);
    e.set_fpu_io(IO_DATA0, v);
    let c = e.imm(insn.code() as u64);
    let z = e.imm(0);
    e.fpu_call(FpuHelper::Simd, [c, z, z, z])?;
    let r = e.fpu_io(IO_DATA0);
    write_reg(e, insn.op0_register(), r);
    Ok(())
}

#[cfg(test)]
mod tests {
    use crane86_runtime::state::CR4_OSFXSR;
    use crane86_runtime::{BlockKey, CpuMode, CpuState, Exception, PhysMem};
    use iced_x86::code_asm::*;

    use crate::cache::{Cache, Tier};
    use crate::testutil::{asm, run_step, test_jit_options, CODE};

    /// CR4.OSFXSR is not in the block key: one translation of a block with SSE runs its
    /// instructions while OSFXSR is set and raises #UD at the first of them, after the
    /// instructions before it, while it is clear, whatever OSFXSR was when it was
    /// translated. Checked on both tiers, translating first under each setting.
    #[test]
    fn sse_checks_cr4_osfxsr_when_it_runs() {
        let code = asm(64, |a| {
            a.add(ecx, 1).unwrap();
            a.movaps(xmm0, xmm1).unwrap();
            a.add(ecx, 2).unwrap();
            a.paddd(xmm0, xmm1).unwrap();
            a.add(ecx, 4).unwrap();
        });
        for tier in [Tier::Interp, Tier::Jit] {
            for first_on in [true, false] {
                let mut mem = PhysMem::new(1 << 20).unwrap();
                mem.load(CODE, &code).unwrap();
                mem.load(CODE + code.len() as u64, &[0xf4]).unwrap();
                let mut cpu = CpuState::new(CpuMode::Long64);
                cpu.cr3 = crane86_runtime::paging::identity_map(&mut mem, (1 << 20) - 0x2000);
                let mut cache = Cache::new(tier, 1 << 22, test_jit_options(true, false)).unwrap();
                let mut key = None;
                for (round, on) in [first_on, !first_on, first_on, !first_on]
                    .into_iter()
                    .enumerate()
                {
                    cpu.rip = CODE;
                    cpu.gpr[1] = 0;
                    cpu.fpu
                        .set_xmm128(1, 0x0000_0003_0000_0002_0000_0001_0000_0005);
                    cpu.cr4 = if on {
                        cpu.cr4 | CR4_OSFXSR
                    } else {
                        cpu.cr4 & !CR4_OSFXSR
                    };
                    let k = BlockKey::new(CODE, &cpu);
                    assert_eq!(*key.get_or_insert(k), k, "OSFXSR changed the key");
                    let id = cache.lookup(k, &mut cpu, &mut mem);
                    run_step(&mut cache, id, &mut cpu, &mut mem);
                    let what = format!("{tier:?}, round {round}, OSFXSR {on}");
                    if on {
                        assert_eq!(cpu.fault.pending, 0, "{what}");
                        assert_eq!(cpu.gpr[1], 7, "{what}");
                        assert_eq!(
                            cpu.fpu.xmm128(0),
                            0x0000_0006_0000_0004_0000_0002_0000_000a,
                            "{what}"
                        );
                    } else {
                        let f = cpu.take_fault().expect(&what);
                        assert_eq!(f.exception, Exception::InvalidOpcode, "{what}");
                        assert_eq!(cpu.rip, CODE + 3, "{what}: not at the MOVAPS");
                        assert_eq!(cpu.gpr[1], 1, "{what}");
                    }
                }
                if tier == Tier::Jit {
                    let id = cache.lookup(key.unwrap(), &mut cpu, &mut mem);
                    let compiled = cache.prepare(id, cpu.cc.op).unwrap();
                    assert!(compiled, "the block was not compiled");
                }
            }
        }
    }
}
