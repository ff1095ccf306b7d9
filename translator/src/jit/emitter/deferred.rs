//! Register writes held back across runs of instructions that call nothing that reads them.
//!
//! General registers are written through to `CpuState` (see [`crate::emit::Emit::set_gpr`]),
//! so that helpers and exits find them there. Within a run of instructions whose only ways
//! out are faults and whose only calls are the memory slow paths (register, immediate and
//! memory ALU operations, moves, PUSH and POP of registers, LEA, SETcc, CMOVcc, ...:
//! [`defers_gprs`]), a register written several times only needs its last value stored:
//! the CRC-32 byte loop writes ECX three times between memory accesses, and a function's
//! prologue moves RSP once per PUSH. Such instructions leave their writes pending; the first
//! instruction that is not one of them stores the pending registers before it starts, as
//! does the end of the block's body. Exits (`write_back`), the fault exits among them, store
//! them too, without forgetting them, since the code after an exit's branch still has them
//! pending. A fault inside such an instruction therefore leaves the registers of the
//! instructions before it, as write-through did: semantics write registers after the
//! instruction's memory accesses. The memory slow paths (`load_slow`, `store_slow`) read no
//! general register.

use iced_x86::{Instruction, Mnemonic, OpKind};

use super::super::off;
use super::JitEmitter;

/// Whether `insn` reads and writes only general registers, immediates and memory, and can
/// only fault or call the memory slow paths, never exit otherwise or call a helper that reads
/// `CpuState`'s registers: its register writes may wait.
pub(super) fn defers_gprs(insn: &Instruction) -> bool {
    use Mnemonic::*;
    let operands_ok = (0..insn.op_count()).all(|i| match insn.op_kind(i) {
        OpKind::Register => insn.op_register(i).is_gpr(),
        // Not POP to memory, whose address is formed with RSP already moved.
        OpKind::Memory => insn.mnemonic() != Pop,
        k => crate::semantics::operands::is_immediate(k),
    });
    operands_ok
        && !insn.has_lock_prefix()
        && matches!(
            insn.mnemonic(),
            Mov | Push
                | Pop
                | Movzx
                | Movsx
                | Movsxd
                | Add
                | Sub
                | Adc
                | Sbb
                | And
                | Or
                | Xor
                | Cmp
                | Test
                | Inc
                | Dec
                | Neg
                | Not
                | Shl
                | Shr
                | Sar
                | Rol
                | Ror
                | Lea
                | Bswap
                | Imul
                | Bt
                | Bsf
                | Bsr
                | Tzcnt
                | Lzcnt
                | Popcnt
                | Cdq
                | Cqo
                | Cwd
                | Cdqe
                | Cwde
                | Cbw
                | Andn
                | Sarx
                | Shlx
                | Shrx
                | Rorx
                | Cmovo
                | Cmovno
                | Cmovb
                | Cmovae
                | Cmove
                | Cmovne
                | Cmovbe
                | Cmova
                | Cmovs
                | Cmovns
                | Cmovp
                | Cmovnp
                | Cmovl
                | Cmovge
                | Cmovle
                | Cmovg
                | Seto
                | Setno
                | Setb
                | Setae
                | Sete
                | Setne
                | Setbe
                | Seta
                | Sets
                | Setns
                | Setp
                | Setnp
                | Setl
                | Setge
                | Setle
                | Setg
        )
}

impl JitEmitter<'_, '_> {
    /// Stores the pending register writes, at the start of an instruction that does not
    /// defer them or at the end of the body.
    pub(super) fn flush_gprs(&mut self) {
        self.store_pending_gprs();
        self.gpr_pending = 0;
    }

    /// Stores the pending register writes without forgetting them: for an exit, after which
    /// the code that follows it (another arm) still has them pending.
    pub(super) fn store_pending_gprs(&mut self) {
        for r in 0..16 {
            if self.gpr_pending & (1 << r) != 0 {
                let v = self.b.use_var(self.regs[r]);
                self.store_state(v, off::GPR + 8 * r as i32);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crane86_runtime::{CpuMode, Exception};
    use iced_x86::code_asm::*;

    use crate::testutil::{asm, run64, run_both};

    /// Registers written several times by deferring instructions, then an instruction that
    /// faults: the fault must see each register's last value (`run_both` compares the
    /// registers and the fault with the interpreter's).
    #[test]
    fn a_fault_after_deferred_writes_sees_the_last_values() {
        let code = asm(64, |a| {
            a.mov(ecx, 1u32).unwrap();
            a.add(ecx, 2).unwrap();
            a.lea(rdx, qword_ptr(rcx + rcx * 2 + 5)).unwrap();
            a.xor(ecx, 4).unwrap();
            a.imul_3(edx, edx, 3).unwrap();
            a.mov(rbx, 0x8000_0000_0000_0000u64).unwrap();
            a.mov(eax, dword_ptr(rbx)).unwrap();
        });
        let o = run64(&code, &[]);
        assert_eq!(
            o.fault.map(|f| f.exception),
            Some(Exception::GeneralProtection)
        );
        assert_eq!((o.r(1), o.r(2)), (7, 42));
    }

    /// Memory instructions defer too: a page fault in the middle of a run of loads, stores,
    /// pushes and pops sees every register as the instructions before it left it, RSP among
    /// them, and the stores before it made.
    #[test]
    fn a_fault_after_deferred_memory_instructions_sees_their_registers() {
        let code = asm(64, |a| {
            a.mov(ecx, 1u32).unwrap();
            a.add(ecx, dword_ptr(rsi)).unwrap();
            a.push(rcx).unwrap();
            a.pop(rdx).unwrap();
            a.add(rdx, 5).unwrap();
            a.push(rdx).unwrap();
            a.mov(qword_ptr(rsi + 8), rdx).unwrap();
            a.push(rcx).unwrap();
            a.mov(rbx, qword_ptr(rdi)).unwrap();
            a.pop(rax).unwrap();
        });
        let o = run64(
            &code,
            &[(6, crate::testutil::DATA), (7, 0x8000_0000_0000_0000)],
        );
        assert_eq!(
            o.fault.map(|f| f.exception),
            Some(Exception::GeneralProtection)
        );
        assert_eq!((o.r(1), o.r(2), o.r(0)), (1, 6, 0));
        assert_eq!(o.r(4), 0xf000 - 16);
        assert_eq!(o.m(crate::testutil::DATA + 8, 8), 6);
        assert_eq!((o.m(0xf000 - 8, 8), o.m(0xf000 - 16, 8)), (6, 1));
    }

    /// Helpers that read registers from `CpuState` (the SSE conversions, the x87 integer
    /// loads go through the FPU helper with the instruction) see the deferred writes.
    #[test]
    fn a_helper_after_deferred_writes_reads_the_last_values() {
        let code = asm(64, |a| {
            a.mov(eax, 5u32).unwrap();
            a.add(eax, 2).unwrap();
            a.lea(ecx, qword_ptr(rax * 8 + 1)).unwrap();
            a.neg(ecx).unwrap();
            a.cvtsi2sd(xmm0, eax).unwrap();
            a.cvtsi2sd(xmm1, ecx).unwrap();
        });
        let o = run64(&code, &[]);
        assert_eq!(o.cpu.fpu.xmm[0][0], 7f64.to_bits());
        assert_eq!(o.cpu.fpu.xmm[1][0], (-57f64).to_bits());
    }

    /// The same with a division by zero, and with a fault inside a loop of deferring
    /// instructions (a self-loop region, whose back edge and exits store the registers).
    #[test]
    fn deferred_writes_reach_divide_errors_and_loop_exits() {
        let code = asm(64, |a| {
            a.mov(esi, 10u32).unwrap();
            a.sub(esi, 3).unwrap();
            a.xor(ecx, ecx).unwrap();
            a.div(ecx).unwrap();
        });
        let o = run64(&code, &[(0, 5), (2, 0)]);
        assert_eq!(o.fault.map(|f| f.exception), Some(Exception::DivideError));
        assert_eq!(o.r(6), 7);
        let code = asm(64, |a| {
            let mut top = a.create_label();
            a.xor(eax, eax).unwrap();
            a.mov(ecx, 300u32).unwrap();
            a.set_label(&mut top).unwrap();
            a.add(eax, ecx).unwrap();
            a.lea(eax, qword_ptr(rax + 1)).unwrap();
            a.mov(edx, eax).unwrap();
            a.shl(edx, 1).unwrap();
            a.dec(ecx).unwrap();
            a.jnz(top).unwrap();
        });
        let o = run_both(CpuMode::Long64, &code, |_, _| {});
        let sum: u64 = (1..=300).sum::<u64>() + 300;
        assert_eq!((o.r(0), o.r(1), o.r(2)), (sum, 0, 2 * sum));
    }
}
