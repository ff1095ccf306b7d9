//! Instruction semantics, written once against [`Emit`] and grouped by the SDM's chapters.
//!
//! [`execute`] dispatches through the opcode table ([`crate::table`]); each handler reads its
//! operands, checks for faults, performs its memory writes and only then writes registers and
//! flags (the rule that makes exceptions precise; see [`crate::emit`]).

pub mod alu;
pub mod atomic;
pub mod bcd;
pub mod bit;
pub mod bmi;
pub mod control;
pub mod control_regs;
pub mod data;
pub mod far;
pub mod flags;
pub mod fpu_state;
pub mod io;
pub mod muldiv;
pub mod operands;
pub mod seg_check;
pub mod segments;
pub mod shift;
pub mod simd;
mod simd_float;
mod simd_int;
pub mod stack;
pub mod string;
pub mod system;
pub mod x87;
pub mod x87_env;

use crane86_runtime::{Exception, Fault};
use iced_x86::Instruction;

use crate::emit::{Emit, R};
use crate::table::{lookup, Class, Entry, Op};

/// Executes (interpreter) or translates (JIT) one inline-class instruction. Control transfers
/// end with [`Emit::jump`] or [`Emit::branch`]; everything else falls through to the next
/// instruction, which the caller accounts for.
pub fn execute<E: Emit>(e: &mut E, insn: &Instruction) -> R<()> {
    execute_row(e, insn, lookup(insn.code()))
}

/// [`execute`] given the instruction's table row `row` (`lookup(insn.code())`), which
/// [`crate::decode::DecodedInsn::row`] keeps.
pub fn execute_row<E: Emit>(e: &mut E, insn: &Instruction, row: Option<Entry>) -> R<()> {
    // The runtime-class rows that `rewrite::plan` runs inline at CPL 0 come here too.
    let cpl0_inline = |en: &Entry| crate::rewrite::inline_at_cpl0(insn, en.op, e.ctx());
    let Some(entry) = row.filter(|en| en.class == Class::Inline || cpl0_inline(en)) else {
        return Err(e.raise(Fault::new(Exception::InvalidOpcode)));
    };
    match entry.op {
        Op::Alu(op) => alu::binary(e, insn, op),
        Op::Inc => alu::inc_dec(e, insn, true),
        Op::Dec => alu::inc_dec(e, insn, false),
        Op::Neg => alu::neg(e, insn),
        Op::Not => alu::not(e, insn),
        Op::Mov => data::mov(e, insn),
        Op::Movzx => data::mov_extend(e, insn, false),
        Op::Movsx => data::mov_extend(e, insn, true),
        Op::Movbe => data::movbe(e, insn),
        Op::Lea => data::lea(e, insn),
        Op::Xchg => data::xchg(e, insn),
        Op::Cmov => data::cmov(e, insn),
        Op::Setcc => data::setcc(e, insn),
        Op::Bswap => data::bswap(e, insn),
        Op::Convert => data::convert(e, insn),
        Op::Lahf => data::lahf(e),
        Op::Salc => data::salc(e),
        Op::Sahf => data::sahf(e),
        Op::Xlat => data::xlat(e, insn),
        Op::Carry => data::carry_op(e, insn.mnemonic()),
        Op::Cld => data::direction(e, false),
        Op::Std => data::direction(e, true),
        Op::Nop => data::nop(e),
        Op::Rdtsc => system::rdtsc(e),
        Op::Rdtscp => system::rdtscp(e),
        Op::Rdpid => system::rdpid(e, insn),
        // Only at CPL 0 (`rewrite::plan` keeps them runtime-class elsewhere).
        Op::InterruptFlag => {
            system::interrupt_flag_cpl0(e, insn.mnemonic() == iced_x86::Mnemonic::Sti)
        }
        Op::ControlReg
            if matches!(
                insn.mnemonic(),
                iced_x86::Mnemonic::Stac | iced_x86::Mnemonic::Clac
            ) =>
        {
            system::ac_flag_cpl0(e, insn.mnemonic() == iced_x86::Mnemonic::Stac)
        }
        Op::FastCall
            if insn.mnemonic() == iced_x86::Mnemonic::Swapgs
                && e.ctx().mode == crane86_runtime::CpuMode::Long64 =>
        {
            system::swapgs_cpl0(e)
        }
        Op::Push => stack::push(e, insn),
        Op::Pop => stack::pop(e, insn),
        Op::Pushf => stack::pushf(e, insn),
        Op::Pusha => stack::pusha(e, insn),
        Op::Popa => stack::popa(e, insn),
        Op::Enter => stack::enter(e, insn),
        Op::Leave => stack::leave(e, insn),
        Op::Jmp => control::jmp(e, insn),
        Op::Jcc => control::jcc(e, insn),
        Op::Jcxz => control::jcxz(e, insn),
        Op::Loop => control::loop_(e, insn),
        Op::Call => control::call(e, insn),
        Op::Ret => control::ret(e, insn),
        Op::Mul => muldiv::mul1(e, insn, false),
        Op::Imul if insn.op_count() == 1 => muldiv::mul1(e, insn, true),
        Op::Imul => muldiv::imul_n(e, insn),
        Op::Div => muldiv::div(e, insn, false),
        Op::Idiv => muldiv::div(e, insn, true),
        Op::Shift(op) => shift::shift(e, insn, op),
        Op::Shld => shift::shift_double(e, insn, true),
        Op::Shrd => shift::shift_double(e, insn, false),
        Op::Bt(op) => bit::bt(e, insn, op),
        Op::Bsf => bit::bit_scan(e, insn, false),
        Op::Bsr => bit::bit_scan(e, insn, true),
        Op::Tzcnt => bit::count_zeros(e, insn, false),
        Op::Lzcnt => bit::count_zeros(e, insn, true),
        Op::Popcnt => bit::popcnt(e, insn),
        Op::Xadd => atomic::xadd(e, insn),
        Op::Cmpxchg => atomic::cmpxchg(e, insn),
        Op::CmpxchgWide => atomic::cmpxchg_wide(e, insn),
        Op::Str(op) => string::string(e, insn, op),
        Op::DaaDas => bcd::daa_das(e, insn),
        Op::AaaAas => bcd::aaa_aas(e, insn),
        Op::Aam => bcd::aam(e, insn),
        Op::Aad => bcd::aad(e, insn),
        Op::Adx => bmi::adx(e, insn),
        Op::Andn => bmi::andn(e, insn),
        Op::Bextr => bmi::bextr(e, insn),
        Op::Bls => bmi::bls(e, insn),
        Op::Bzhi => bmi::bzhi(e, insn),
        Op::Mulx => bmi::mulx(e, insn),
        Op::PdepPext => bmi::pdep_pext(e, insn),
        Op::ShiftX => bmi::shift_x(e, insn),
        Op::Ud => Err(e.raise(Fault::new(Exception::InvalidOpcode))),
        Op::Bound => control::bound(e, insn),
        Op::Simd => simd::execute(e, insn),
        Op::Crc32 => simd::crc32(e, insn),
        Op::X87 => x87::execute(e, insn),
        // Runtime-class rows are filtered out above; should one slip through, it is #UD
        // rather than a host panic.
        Op::Cpuid
        | Op::Hlt
        | Op::In
        | Op::Out
        | Op::Ins
        | Op::Outs
        | Op::Popf
        | Op::Msr
        | Op::DescriptorTable
        | Op::SegmentMove
        | Op::Int
        | Op::Iret
        | Op::ControlReg
        | Op::FpuState
        | Op::Far
        | Op::FastCall
        | Op::SegmentInsn => Err(e.raise(Fault::new(Exception::InvalidOpcode))),
    }
}
