//! Runtime-class instructions: the ones that need the machine (port I/O, the CPU model,
//! halting) or change the bits a translation depends on. They run only in the interpreter,
//! alone in their block (see [`crate::rewrite`]), so they can reach the whole machine.

use crane86_runtime::{flags as fl, segment, CpuMode, DescriptorTable, Exception, Fault, SegReg};
use iced_x86::{Code, Instruction, Mnemonic, OpKind, Register};

use crane86_runtime::interrupt::{self, deliver, Delivery, Event, EventKind};

use super::flags::{flag, set_eflags, Flag};
use super::operands::mask;
use super::operands::{loc, mem_access, op_size, read_op, write_loc};
use super::seg_check::Access;
use super::stack::{pop_value, push_value, set_sp, sp};
use crate::cpu_model;
use crate::emit::{Arith, Bin, Emit, R};
use crate::interp::Interp;

/// What the run loop does after a runtime-class instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Go on with the next instruction.
    Continue,
    /// The CPU halted (HLT) until an interrupt arrives.
    Halt,
    /// ICEBP (INT1): the instruction completed and raises a trap-like #DB, which is a
    /// hardware exception (no gate DPL check, unlike INT n) and leaves DR6 as it is.
    DebugTrap,
    /// The instruction needs something crane86 does not implement yet (a task switch, a
    /// virtual-8086 transition): the run must stop rather than pretend.
    Unsupported(&'static str),
}

/// Executes one runtime-class instruction.
pub fn execute(it: &mut Interp<'_>, insn: &Instruction) -> R<Outcome> {
    if crate::table::lookup(insn.code()).is_some_and(|e| e.op == crate::table::Op::FpuState) {
        super::fpu_state::execute(it, insn)?;
        return Ok(Outcome::Continue);
    }
    match insn.mnemonic() {
        Mnemonic::Cpuid => {
            let leaf = it.cpu.gpr[0] as u32;
            let sub = it.cpu.gpr[1] as u32;
            let mut r = cpu_model::cpuid(leaf, sub);
            if leaf == 1 && it.cpu.msr.apic_base & crane86_runtime::msr::APIC_BASE_EN != 0 {
                // CPUID.1:EDX.APIC follows IA32_APIC_BASE.EN, as on hardware.
                r[3] |= cpu_model::EDX1_APIC;
            }
            if leaf == 1 && it.cpu.cr4 & crane86_runtime::state::CR4_OSXSAVE != 0 {
                r[2] |= cpu_model::ECX1_OSXSAVE;
            }
            if leaf == 7 && sub == 0 && it.cpu.cr4 & crane86_runtime::state::CR4_PKE != 0 {
                r[2] |= cpu_model::ECX7_OSPKE;
            }
            if leaf == 0xd && sub <= 1 {
                // EBX: the XSAVE area size for the components XCR0 enables now, in the
                // standard format (subleaf 0) and the compacted one (subleaf 1; no IA32_XSS).
                r[1] = if sub == 0 {
                    cpu_model::xsave_size(it.cpu.xcr0)
                } else {
                    cpu_model::xsave_compacted_size(it.cpu.xcr0)
                };
            }
            for (i, reg) in [0usize, 3, 1, 2].into_iter().enumerate() {
                it.cpu.gpr[reg] = u64::from(r[i]);
            }
        }
        Mnemonic::Hlt => return Ok(Outcome::Halt),
        Mnemonic::In => super::io::port_in(it, insn)?,
        Mnemonic::Out => super::io::port_out(it, insn)?,
        Mnemonic::Insb | Mnemonic::Insw | Mnemonic::Insd => super::io::string(it, insn, true)?,
        Mnemonic::Outsb | Mnemonic::Outsw | Mnemonic::Outsd => super::io::string(it, insn, false)?,
        Mnemonic::Pushf | Mnemonic::Pushfd | Mnemonic::Pushfq => pushf(it, insn)?,
        Mnemonic::Popf | Mnemonic::Popfd | Mnemonic::Popfq => popf(it, insn)?,
        Mnemonic::Rdmsr | Mnemonic::Wrmsr => msr(it, insn.mnemonic() == Mnemonic::Wrmsr)?,
        Mnemonic::Lgdt | Mnemonic::Lidt | Mnemonic::Sgdt | Mnemonic::Sidt => {
            descriptor_table(it, insn)?
        }
        Mnemonic::Mov if super::control_regs::is_control_move(insn) => {
            super::control_regs::execute(it, insn)?
        }
        Mnemonic::Clts
        | Mnemonic::Lmsw
        | Mnemonic::Invlpg
        | Mnemonic::Invpcid
        | Mnemonic::Wbinvd
        | Mnemonic::Invd
        | Mnemonic::Clflush
        | Mnemonic::Clflushopt
        | Mnemonic::Clwb
        | Mnemonic::Stac
        | Mnemonic::Clac
        | Mnemonic::Rdpkru
        | Mnemonic::Wrpkru => super::control_regs::execute(it, insn)?,
        Mnemonic::Mov | Mnemonic::Push | Mnemonic::Pop => segment_move(it, insn)?,
        Mnemonic::Lds | Mnemonic::Les | Mnemonic::Lfs | Mnemonic::Lgs | Mnemonic::Lss => {
            far_pointer_load(it, insn)?
        }
        Mnemonic::Cli | Mnemonic::Sti => interrupt_flag(it, insn.mnemonic() == Mnemonic::Sti)?,
        Mnemonic::Int1 => return Ok(Outcome::DebugTrap),
        Mnemonic::Int | Mnemonic::Int3 | Mnemonic::Into => return software_interrupt(it, insn),
        Mnemonic::Iret | Mnemonic::Iretd | Mnemonic::Iretq => return iret(it, insn),
        m if super::far::handles(m) => return super::far::execute(it, insn),
        m if super::segments::handles(m) => return super::segments::execute(it, insn),
        _ => return Err(it.raise(Fault::new(Exception::InvalidOpcode))),
    }
    Ok(Outcome::Continue)
}

/// Applies the result of an event delivery, IRET or far transfer: the new RFLAGS (split back
/// into the lazy record and the rest), the mode, and the new CS:RIP, which becomes the
/// instruction's successor.
pub(super) fn finish_transfer(it: &mut Interp<'_>, result: Result<u64, Delivery>) -> R<Outcome> {
    match result {
        Ok(flags) => {
            apply_transfer(it.cpu, flags);
            it.next = Some(it.cpu.rip);
            Ok(Outcome::Continue)
        }
        Err(Delivery::Fault(f)) => Err(it.raise(f)),
        Err(Delivery::Unsupported(what)) => Ok(Outcome::Unsupported(what)),
    }
}

/// A far transfer's new RFLAGS `flags` into the CPU (the arithmetic flags as a known
/// value for the lazy flags), and the mode that follows from it and the new CS.
pub(crate) fn apply_transfer(cpu: &mut crane86_runtime::CpuState, flags: u64) {
    cpu.cc = crane86_runtime::LazyFlags {
        op: crane86_runtime::CcOp::EFLAGS.encode(),
        src1: 0,
        src2: 0,
        res: flags & fl::ARITH,
    };
    cpu.rflags = (flags & !fl::ARITH) | fl::FIXED1;
    // VM may have changed, and the mode depends on it.
    segment::update_mode(cpu);
}

/// #GP(0) unless the CPU runs at CPL 0 (real mode counts as CPL 0).
fn require_cpl0(it: &mut Interp<'_>) -> R<()> {
    if segment::cpl(it.cpu) != 0 {
        return Err(it.raise(Fault::with_code(Exception::GeneralProtection, 0)));
    }
    Ok(())
}

/// RDMSR and WRMSR: ECX selects, EDX:EAX carries the value.
fn msr(it: &mut Interp<'_>, write: bool) -> R<()> {
    require_cpl0(it)?;
    let index = it.cpu.gpr[1] as u32;
    if write {
        let v = (it.cpu.gpr[2] << 32) | (it.cpu.gpr[0] & 0xffff_ffff);
        if let Err(f) = crane86_runtime::msr::write(it.cpu, index, v) {
            return Err(it.raise(f));
        }
    } else {
        match crane86_runtime::msr::read(it.cpu, index) {
            Ok(v) => {
                it.cpu.gpr[0] = v & 0xffff_ffff;
                it.cpu.gpr[2] = v >> 32;
            }
            Err(f) => return Err(it.raise(f)),
        }
    }
    Ok(())
}

/// RDTSC: EDX:EAX = the TSC; #GP(0) at CPL > 0 when CR4.TSD is set. Not runtime-class:
/// kernels spin on it in delay loops (`delay_tsc`, clock calibration), and leaving generated
/// code for every read made those loops cost a run-loop round trip per iteration.
pub fn rdtsc<E: Emit>(e: &mut E) -> R<()> {
    let t = e.read_tsc()?;
    let lo = e.zext(t, 32);
    let sh = e.imm(32);
    let hi = e.bin(Bin::Shr, t, sh);
    e.set_gpr(0, lo);
    e.set_gpr(2, hi);
    Ok(())
}

/// RDTSCP: RDTSC, and ECX = IA32_TSC_AUX (low 32 bits). Inline for the same reason as
/// RDTSC: Linux's clock reads use it (`rdtsc_ordered`) when the CPU offers it, and as a
/// runtime-class instruction each one was a run-loop round trip (280 thousand in a boot).
pub fn rdtscp<E: Emit>(e: &mut E) -> R<()> {
    let aux = e.tsc_aux();
    rdtsc(e)?;
    e.set_gpr(1, aux);
    Ok(())
}

/// RDPID r32/r64: IA32_TSC_AUX into the register (zero-extended).
pub fn rdpid<E: Emit>(e: &mut E, insn: &Instruction) -> R<()> {
    let aux = e.tsc_aux();
    e.set_gpr(insn.op0_register().full_register().number() & 15, aux);
    Ok(())
}

/// CLI and STI where they cannot fault (CPL 0, see `rewrite::plan`): IF cleared or set. An
/// STI that enables interrupts while one is pending hands the vCPU back to the run loop,
/// which delivers it after the next instruction (the STI shadow).
pub fn interrupt_flag_cpl0<E: Emit>(e: &mut E, set: bool) -> R<()> {
    let rest = e.rflags_rest();
    if set {
        let if_bit = e.imm(fl::IF);
        let v = e.bin(Bin::Or, rest, if_bit);
        e.set_rflags_rest(v);
        let was = e.bin(Bin::And, rest, if_bit);
        let zero = e.imm(0);
        let was_clear = e.cmp(crate::emit::Cmp::Eq, was, zero);
        e.sti_window(was_clear);
    } else {
        let mask = e.imm(!fl::IF);
        let v = e.bin(Bin::And, rest, mask);
        e.set_rflags_rest(v);
    }
    Ok(())
}

/// STAC and CLAC at CPL 0, where they cannot fault (see `rewrite::plan`): EFLAGS.AC set or
/// cleared. Linux's exception and interrupt entries start with CLAC. The block ends after
/// it: the memory slow paths read AC from `CpuState` (SMAP), where the exit stores it.
pub fn ac_flag_cpl0<E: Emit>(e: &mut E, set: bool) -> R<()> {
    let rest = e.rflags_rest();
    let v = if set {
        let ac = e.imm(fl::AC);
        e.bin(Bin::Or, rest, ac)
    } else {
        let mask = e.imm(!fl::AC);
        e.bin(Bin::And, rest, mask)
    };
    e.set_rflags_rest(v);
    Ok(())
}

/// SWAPGS in 64-bit mode at CPL 0 (where it cannot fault, see `rewrite::plan`).
pub fn swapgs_cpl0<E: Emit>(e: &mut E) -> R<()> {
    e.swap_gs_base();
    Ok(())
}

/// LGDT, LIDT (CPL 0) and SGDT, SIDT: a 2-byte limit and a base of 8 bytes in 64-bit mode,
/// which LGDT and LIDT require canonical, else 4 (LGDT/LIDT with a 16-bit operand size keep
/// 24 bits of it).
fn descriptor_table(it: &mut Interp<'_>, insn: &Instruction) -> R<()> {
    let m = insn.mnemonic();
    let load = matches!(m, Mnemonic::Lgdt | Mnemonic::Lidt);
    let base_size = if it.ctx().mode == CpuMode::Long64 {
        8
    } else {
        4
    };
    let access = if load { Access::Read } else { Access::Write };
    let addr = mem_access(it, insn, 2 + base_size, access)?;
    if load {
        require_cpl0(it)?;
        let limit = it.load(addr, 2)? as u16;
        let four = it.imm(2);
        let base_at = it.bin(Bin::Add, addr, four);
        let mut base = it.load(base_at, base_size)?;
        if matches!(insn.code(), Code::Lgdt_m1632_16 | Code::Lidt_m1632_16) {
            base &= 0xff_ffff;
        }
        // A 64-bit table base must be canonical (AMD APM LGDT/LIDT: "#GP(0): the new base
        // address is non-canonical"; Intel CPUs fault alike).
        if base_size == 8 && !crane86_runtime::paging::canonical(base) {
            return Err(it.raise(Fault::with_code(Exception::GeneralProtection, 0)));
        }
        let t = DescriptorTable { base, limit };
        if m == Mnemonic::Lgdt {
            it.cpu.gdtr = t;
        } else {
            it.cpu.idtr = t;
        }
    } else {
        super::control_regs::umip_check(it)?;
        let t = if m == Mnemonic::Sgdt {
            it.cpu.gdtr
        } else {
            it.cpu.idtr
        };
        let limit = it.imm(u64::from(t.limit));
        it.store(addr, 2, limit)?;
        let two = it.imm(2);
        let base_at = it.bin(Bin::Add, addr, two);
        let base = it.imm(t.base);
        it.store(base_at, base_size, base)?;
    }
    Ok(())
}

/// MOV to and from segment registers, PUSH and POP of segment registers. Loads go through
/// the protection checks of `runtime::segment`; a POP changes the stack pointer only when
/// the load succeeds.
fn segment_move(it: &mut Interp<'_>, insn: &Instruction) -> R<()> {
    let sreg_of = |r: Register| -> Option<SegReg> {
        Some(match r {
            Register::ES => SegReg::Es,
            Register::CS => SegReg::Cs,
            Register::SS => SegReg::Ss,
            Register::DS => SegReg::Ds,
            Register::FS => SegReg::Fs,
            Register::GS => SegReg::Gs,
            _ => return None,
        })
    };
    let load = |it: &mut Interp<'_>, s: SegReg, sel: u16| -> R<()> {
        match segment::load_segment(it.cpu, it.mem, s, sel) {
            Ok(()) => Ok(()),
            Err(f) => Err(it.raise(f)),
        }
    };
    match insn.mnemonic() {
        Mnemonic::Mov => {
            if let Some(dst) = sreg_of(insn.op_register(0)) {
                let sel = read_op(it, insn, 1, 2)? as u16;
                load(it, dst, sel)?;
            } else {
                let src = sreg_of(insn.op_register(1)).unwrap_or(SegReg::Ds);
                let sel = u64::from(it.cpu.seg[src as usize].selector);
                let size = if insn.op_kind(0) == OpKind::Memory {
                    2
                } else {
                    op_size(insn, 0)
                };
                let dst = loc(it, insn, 0)?;
                let v = it.imm(sel);
                write_loc(it, dst, size, v)?;
            }
        }
        Mnemonic::Push => {
            let size = (-insn.stack_pointer_increment()) as u32;
            let s = sreg_of(insn.op_register(0)).unwrap_or(SegReg::Ds);
            let v = it.imm(u64::from(it.cpu.seg[s as usize].selector));
            let sp_now = sp(it);
            let new = push_value(it, sp_now, v, size)?;
            set_sp(it, new);
        }
        _ => {
            let size = insn.stack_pointer_increment() as u32;
            let s = sreg_of(insn.op_register(0)).unwrap_or(SegReg::Ds);
            let sp_now = sp(it);
            let (v, new) = pop_value(it, sp_now, size)?;
            load(it, s, v as u16)?;
            set_sp(it, new);
        }
    }
    Ok(())
}

/// LDS, LES, LFS, LGS, LSS: a far pointer from memory (offset, then selector), the selector
/// into the segment register (with every check of a segment load) and then the offset into
/// the general register, so a faulting load changes neither.
fn far_pointer_load(it: &mut Interp<'_>, insn: &Instruction) -> R<()> {
    let reg = insn.op_register(0);
    let size = reg.size() as u32;
    let at = mem_access(it, insn, size + 2, Access::Read)?;
    let offset = it.load(at, size)?;
    let step = it.imm(u64::from(size));
    let mut sel_at = it.bin(Bin::Add, at, step);
    if it.ctx().mode != CpuMode::Long64 {
        sel_at &= 0xffff_ffff;
    }
    let selector = it.load(sel_at, 2)? as u16;
    let sreg = match insn.mnemonic() {
        Mnemonic::Lds => SegReg::Ds,
        Mnemonic::Les => SegReg::Es,
        Mnemonic::Lfs => SegReg::Fs,
        Mnemonic::Lgs => SegReg::Gs,
        _ => SegReg::Ss,
    };
    if let Err(f) = segment::load_segment(it.cpu, it.mem, sreg, selector) {
        return Err(it.raise(f));
    }
    super::operands::write_reg(it, reg, offset);
    Ok(())
}

/// CLI and STI where they may fault or work on VIF (`runtime::v86::vme::cli_sti`): IF
/// changes when CPL <= IOPL; otherwise VIF does, in virtual-8086 mode with CR4.VME and at
/// CPL 3 with CR4.PVI (STI with VIP set is #GP(0)); otherwise #GP(0). STI ends its block, so
/// the instruction in its interrupt shadow starts a new one.
fn interrupt_flag(it: &mut Interp<'_>, set: bool) -> R<()> {
    let flags = crate::interp::rflags(it.cpu);
    match crane86_runtime::v86::vme::cli_sti(it.cpu, flags, set) {
        Ok(v) => {
            it.set_rflags_rest(v & !fl::ARITH);
            Ok(())
        }
        Err(f) => Err(it.raise(f)),
    }
}

/// INT n, INT3 and INTO: a software interrupt through the IVT or IDT (INTO only when OF=1).
/// In virtual-8086 mode INT n follows `runtime::v86::vme::int_n` (#GP(0) with IOPL < 3
/// unless CR4.VME redirects it to the task's own vector table); INT3 and INTO are not
/// IOPL-sensitive and always reach the protected-mode IDT (gate DPL checked against CPL 3).
fn software_interrupt(it: &mut Interp<'_>, insn: &Instruction) -> R<Outcome> {
    use crane86_runtime::v86::vme::{int_n, SoftwareInterrupt};
    let flags = crate::interp::rflags(it.cpu);
    let vector = match insn.mnemonic() {
        Mnemonic::Int3 => 3,
        Mnemonic::Into => {
            if flag(it, Flag::Of) == 0 {
                return Ok(Outcome::Continue);
            }
            4
        }
        _ => insn.immediate8(),
    };
    let insn_len = insn.len() as u8;
    if insn.mnemonic() == Mnemonic::Int {
        match int_n(it.cpu, it.mem, vector, insn_len, flags) {
            Ok(SoftwareInterrupt::Idt) => {}
            Ok(SoftwareInterrupt::Redirected(v)) => return finish_transfer(it, Ok(v)),
            Err(e) => return finish_transfer(it, Err(e)),
        }
    }
    let event = Event {
        vector,
        kind: EventKind::Software { insn_len },
    };
    let r = deliver(it.cpu, it.mem, event, flags);
    finish_transfer(it, r)
}

/// IRET, IRETD, IRETQ.
fn iret(it: &mut Interp<'_>, insn: &Instruction) -> R<Outcome> {
    let r = iret_transfer(it.cpu, it.mem, insn);
    finish_transfer(it, r)
}

/// IRET of any size: a return to the previous task when NT is set in protected mode, an
/// interrupt return otherwise. The new RFLAGS, or why it did not complete.
fn iret_transfer(
    cpu: &mut crane86_runtime::CpuState,
    mem: &mut crane86_runtime::PhysMem,
    insn: &Instruction,
) -> Result<u64, Delivery> {
    let bits = match insn.mnemonic() {
        Mnemonic::Iret => 16,
        Mnemonic::Iretd => 32,
        _ => 64,
    };
    let flags = crate::interp::rflags(cpu);
    // NT = 1 in protected mode: a return to the previous task (a task switch).
    let task = crane86_runtime::task::nested_iret(cpu, mem, insn.next_ip(), flags);
    task.unwrap_or_else(|| interrupt::iret(cpu, mem, bits, flags))
}

/// How [`run_transfer`] ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransferEnd {
    /// Completed: `cpu.rip` is the next instruction's.
    Done,
    /// Raised the fault now recorded in the CPU state; `cpu.rip` is still the
    /// instruction's.
    Fault,
    /// Needs the run loop (something not supported yet): nothing may be assumed done.
    Bail,
}

/// The transfers `jit::helpers::run_runtime` runs on every system call and interrupt
/// return from generated code (SYSCALL, SYSRETQ, IRET of any size), as [`execute`] runs
/// them but without the interpreter's per-instruction setup and dispatch (which were a
/// third of a SYSCALL/SYSRETQ round trip). `None` for every other instruction.
pub fn run_transfer(
    cpu: &mut crane86_runtime::CpuState,
    mem: &mut crane86_runtime::PhysMem,
    insn: &Instruction,
) -> Option<TransferEnd> {
    cpu.rip = insn.ip();
    let result = match insn.code() {
        Code::Syscall => {
            let flags = crate::interp::rflags(cpu);
            crane86_runtime::fastcall::syscall(cpu, insn.next_ip(), flags).map_err(Delivery::Fault)
        }
        // RFLAGS comes from R11: the flags of the moment are not needed.
        Code::Sysretq => crane86_runtime::fastcall::sysret(cpu, 8).map_err(Delivery::Fault),
        Code::Iretw | Code::Iretd | Code::Iretq => iret_transfer(cpu, mem, insn),
        _ => return None,
    };
    Some(match result {
        Ok(flags) => {
            apply_transfer(cpu, flags);
            TransferEnd::Done
        }
        Err(Delivery::Fault(f)) => {
            cpu.raise(f, 0);
            TransferEnd::Fault
        }
        Err(Delivery::Unsupported(_)) => TransferEnd::Bail,
    })
}

/// PUSHF/PUSHFD/PUSHFQ where it is runtime class (16-bit code at CPL 3, which covers
/// virtual-8086 mode; see [`crate::rewrite`]): in virtual-8086 mode with IOPL < 3, #GP(0)
/// or, for the 16-bit form with CR4.VME, the image with VIF as IF and IOPL as 3
/// (`runtime::v86::vme::pushf`); else the ordinary push.
fn pushf(it: &mut Interp<'_>, insn: &Instruction) -> R<()> {
    let flags = crate::interp::rflags(it.cpu);
    let size = (-insn.stack_pointer_increment()) as u32;
    match crane86_runtime::v86::vme::pushf(it.cpu, flags, size) {
        Ok(None) => super::stack::pushf(it, insn),
        Ok(Some(image)) => {
            let s = sp(it);
            let v = it.imm(image);
            let new = push_value(it, s, v, size)?;
            set_sp(it, new);
            Ok(())
        }
        Err(f) => Err(it.raise(f)),
    }
}

/// POPF/POPFD/POPFQ: in virtual-8086 mode with IOPL < 3 #GP(0), except the 16-bit form
/// with CR4.VME, which loads VIF from the popped IF (`runtime::v86::vme::popf`); otherwise
/// the flags the CPL and IOPL allow change (`runtime::v86::popf_mask`: IOPL only at CPL 0,
/// IF only when CPL <= IOPL), RF is cleared and VM/VIF/VIP are kept. A 16-bit POPF changes
/// only the low 16 bits.
fn popf(it: &mut Interp<'_>, insn: &Instruction) -> R<()> {
    use crane86_runtime::v86::vme;
    let old = crate::interp::rflags(it.cpu);
    let size = insn.stack_pointer_increment() as u32;
    if let Err(f) = vme::popf_allowed(it.cpu, old, size) {
        return Err(it.raise(f));
    }
    let s = sp(it);
    let (v, new) = pop_value(it, s, size)?;
    let new_flags = match vme::popf(it.cpu, old, v & mask(size), size) {
        Ok(f) => f,
        Err(f) => return Err(it.raise(f)),
    };
    set_sp(it, new);
    set_eflags(it, new_flags);
    let rest = new_flags & !fl::ARITH;
    it.set_rflags_rest(rest);
    Ok(())
}

#[cfg(test)]
mod tests {
    use iced_x86::code_asm::*;

    use crane86_runtime::{Exception, Fault};

    use crate::testutil::{asm, run64, DATA};

    /// LGDT and LIDT in 64-bit mode load an 8-byte base only if it is canonical, else #GP(0)
    /// with the register unchanged (kvm-unit-tests' `la57` checks the fault).
    #[test]
    fn lgdt_and_lidt_refuse_a_non_canonical_base_in_64_bit_mode() {
        for (base, loads) in [
            (0xffff_aaaa_aaaa_aaaa_u64, true),
            (0xffaa_aaaa_aaaa_aaaa, false),
            (0x0000_8000_0000_0000, false),
        ] {
            for lidt in [false, true] {
                let code = asm(64, |a| {
                    a.mov(word_ptr(DATA as i32), 0x1234u32).unwrap();
                    a.mov(rax, base).unwrap();
                    a.mov(qword_ptr(DATA as i32 + 2), rax).unwrap();
                    if lidt {
                        a.lidt(ptr(DATA as i32)).unwrap();
                    } else {
                        a.lgdt(ptr(DATA as i32)).unwrap();
                    }
                    a.mov(ebx, 1u32).unwrap();
                });
                let o = run64(&code, &[]);
                let t = if lidt { o.cpu.idtr } else { o.cpu.gdtr };
                let what = format!("{} base {base:#x}", if lidt { "LIDT" } else { "LGDT" });
                if loads {
                    assert_eq!(o.fault, None, "{what}");
                    assert_eq!((t.base, t.limit, o.r(3)), (base, 0x1234, 1), "{what}");
                } else {
                    let gp = Fault::with_code(Exception::GeneralProtection, 0);
                    assert_eq!(o.fault, Some(gp), "{what}");
                    assert_ne!(t.base, base, "{what}: loaded");
                    assert_eq!(o.r(3), 0, "{what}");
                }
            }
        }
    }

    /// CLFLUSH, CLFLUSHOPT and CLWB (kvm-unit-tests' `memory` runs the last two when
    /// CPUID.7.0:EBX advertises them) go on at a mapped address and fault at a
    /// non-canonical one as a one-byte read does.
    #[test]
    fn cache_line_flushes_check_their_address_and_do_nothing_else() {
        let [_, ebx7, _, _] = crate::cpu_model::cpuid(7, 0);
        assert_eq!(ebx7 & (3 << 23), 3 << 23, "CLFLUSHOPT and CLWB advertised");
        type Op = fn(&mut CodeAssembler, AsmMemoryOperand) -> Result<(), IcedError>;
        let ops: [(&str, Op); 3] = [
            ("CLFLUSH", |a, m| a.clflush(m)),
            ("CLFLUSHOPT", |a, m| a.clflushopt(m)),
            ("CLWB", |a, m| a.clwb(m)),
        ];
        for (name, op) in ops {
            let code = asm(64, |a| {
                a.mov(byte_ptr(DATA as i32), 7u32).unwrap();
                op(a, byte_ptr(DATA as i32)).unwrap();
                a.mov(ebx, 1u32).unwrap();
                op(a, byte_ptr(rcx)).unwrap();
                a.mov(ebx, 2u32).unwrap();
            });
            let o = run64(&code, &[(1, 0x8000_0000_0000_0000)]);
            let gp = Fault::with_code(Exception::GeneralProtection, 0);
            assert_eq!(o.fault, Some(gp), "{name} at a non-canonical address");
            assert_eq!((o.r(3), o.m(DATA, 1)), (1, 7), "{name}");
        }
    }

    #[test]
    fn rdtsc_counts_the_instructions_retired_before_it_in_both_tiers() {
        // TSC = retired instructions (offset 0): the first RDTSC is the second instruction,
        // and each iteration of the loop is five more; the JIT runs it as a loop inside one
        // compiled block, the interpreter block by block.
        let code = asm(64, |a| {
            a.mov(ecx, 5u32).unwrap();
            let mut top = a.create_label();
            a.set_label(&mut top).unwrap();
            a.rdtsc().unwrap();
            a.mov(qword_ptr(rcx * 8 + DATA as i32), rax).unwrap();
            a.mov(dword_ptr(rcx * 8 + DATA as i32 + 4), edx).unwrap();
            a.dec(ecx).unwrap();
            a.jnz(top).unwrap();
        });
        let o = run64(&code, &[]);
        for (i, want) in [(5, 1u64), (4, 6), (3, 11), (2, 16), (1, 21)] {
            assert_eq!(o.m(DATA + 8 * i, 8), want, "iteration for rcx = {i}");
        }
    }
}
