//! The stack the runtime pushes frames on and pops them from: interrupt and exception
//! delivery, IRET, far CALL/RETF and the error code of a task switch share it.
//!
//! Outside 64-bit mode every push and pop is checked against the stack segment's limit
//! (expand-down and the B bit included, SDM Vol. 3 5.3) and faults with #SS. The error code
//! depends on the stack: 0 (or EXT) for the current one, the new SS selector for one a
//! privilege change is about to load. [`Stack::room`] checks a whole frame before its first
//! push, as the SDM's pseudocode does ("IF new stack does not have room for ..."), so a
//! frame that does not fit leaves memory untouched too.
//!
//! In 64-bit mode there is no limit, but a stack address must be canonical: an access that
//! is not faults with #SS(0) rather than a data access's #GP(0) (SDM Vol. 2 "INT n",
//! "IRET", "CALL"), and [`Stack::canonical_room`] checks a whole 64-bit frame first.
//!
//! A stack's accesses are explicit accesses at the privilege level that owns the stack
//! (SDM Vol. 3 4.6: only descriptor tables, the IDT and the TSS are implicit supervisor
//! accesses): the current CPL for the current stack, so a RETF, IRET or far CALL at CPL 3
//! reads and writes as user mode and a supervisor-only page faults with U set; the new CPL
//! for the stack a privilege change switches to, as Bochs and QEMU 9 do. EFLAGS.AC as it
//! stands then opens user pages under SMAP to supervisor stacks, as it does for other
//! explicit supervisor data accesses.

use crate::exception::{Exception, Fault};
use crate::memory::{privilege_at, read_as, write_as, PhysMem, Privilege};
use crate::paging::canonical;
use crate::segment::limit::{access_fault, rules, Rules};
use crate::segment::{cpl, mode64};
use crate::state::{CpuState, SegReg, Segment, SEG_DB};

/// The segment a stack's accesses are checked against, and the #SS error code.
#[derive(Clone, Copy)]
struct Limit {
    seg: Segment,
    rules: Rules,
    code: u32,
}

/// A stack being pushed or popped: base, pointer and pointer width, and (outside 64-bit
/// mode) the segment limit its accesses must respect.
pub(crate) struct Stack {
    pub(crate) base: u64,
    pub(crate) sp: u64,
    pub(crate) mask: u64,
    pub(crate) linear_mask: u64,
    limit: Option<Limit>,
    /// The privilege of the stack's accesses.
    pl: Privilege,
}

impl Stack {
    /// SS:RSP as they are, checked against SS with #SS(0) (nothing in 64-bit mode), accessed
    /// at the current privilege level.
    pub(crate) fn current(cpu: &CpuState) -> Stack {
        let ss = cpu.seg[SegReg::Ss as usize];
        if mode64(cpu) {
            return Stack::new(0, cpu.gpr[4], u64::MAX, u64::MAX).at(cpu, cpl(cpu));
        }
        let mask = if ss.attrs & SEG_DB != 0 {
            0xffff_ffff
        } else {
            0xffff
        };
        let mut st = Stack::new(ss.base, cpu.gpr[4], mask, 0xffff_ffff).at(cpu, cpl(cpu));
        st.limit = rules(cpu).map(|rules| Limit {
            seg: ss,
            rules,
            code: 0,
        });
        st
    }

    /// An unchecked stack (64-bit stacks; callers add a segment with [`Stack::checked`]),
    /// accessed in supervisor mode until [`Stack::at`] says otherwise: the stacks made here
    /// are the inner ones a privilege change switches to.
    pub(crate) fn new(base: u64, sp: u64, mask: u64, linear_mask: u64) -> Stack {
        Stack {
            base,
            sp: sp & mask,
            mask,
            linear_mask,
            limit: None,
            pl: Privilege::Supervisor,
        }
    }

    /// This stack, accessed as code at privilege level `cpl` accesses data.
    pub(crate) fn at(mut self, cpu: &CpuState, cpl: u8) -> Stack {
        self.pl = privilege_at(cpu, cpl);
        self
    }

    /// This stack, checked against the protected-mode segment `seg` (a new stack about to
    /// be loaded) with #SS(`code`).
    pub(crate) fn checked(mut self, seg: Segment, code: u32) -> Stack {
        self.limit = Some(Limit {
            seg,
            rules: Rules::Protected,
            code,
        });
        self
    }

    /// This stack with another #SS error code (EXT for a fault while delivering an event).
    pub(crate) fn with_code(mut self, code: u32) -> Stack {
        if let Some(l) = &mut self.limit {
            l.code = code;
        }
        self
    }

    /// #SS(code) when `size` bytes at offset `off` lie outside the segment; #SS(0) when a
    /// 64-bit stack's bytes are not all canonical.
    fn check(&self, off: u64, size: u32, write: bool) -> Result<(), Fault> {
        match self.limit {
            Some(l) if access_fault(&l.seg, l.rules, false, off, size, write) => {
                Err(Fault::with_code(Exception::StackFault, l.code))
            }
            None if self.mask == u64::MAX => {
                let first = self.base.wrapping_add(off);
                let last = first.wrapping_add(u64::from(size) - 1);
                if canonical(first) && canonical(last) {
                    Ok(())
                } else {
                    Err(Fault::with_code(Exception::StackFault, 0))
                }
            }
            _ => Ok(()),
        }
    }

    /// A 64-bit stack about to receive `bytes` of pushes must stay canonical, else #SS(0)
    /// before anything is written (16- and 32-bit stacks wrap instead, and are checked by
    /// [`Stack::room`]).
    pub(crate) fn canonical_room(&self, bytes: u64) -> Result<(), Fault> {
        if self.mask == u64::MAX
            && !(canonical(self.sp.wrapping_sub(bytes)) && canonical(self.sp.wrapping_sub(1)))
        {
            return Err(Fault::with_code(Exception::StackFault, 0));
        }
        Ok(())
    }

    /// Checks that `count` pushes of `size` bytes each fit, without writing anything.
    pub(crate) fn room(&self, count: u32, size: u32) -> Result<(), Fault> {
        let mut sp = self.sp;
        for _ in 0..count {
            sp = sp.wrapping_sub(u64::from(size)) & self.mask;
            self.check(sp, size, true)?;
        }
        Ok(())
    }

    /// Pushes `size` bytes of `v`; on a fault the pointer is unchanged.
    pub(crate) fn push(
        &mut self,
        cpu: &mut CpuState,
        mem: &mut PhysMem,
        size: u32,
        v: u64,
    ) -> Result<(), Fault> {
        let sp = self.sp.wrapping_sub(u64::from(size)) & self.mask;
        self.check(sp, size, true)?;
        write_as(
            cpu,
            mem,
            self.base.wrapping_add(sp) & self.linear_mask,
            size,
            v,
            self.pl,
        )?;
        self.sp = sp;
        Ok(())
    }

    /// Pops `size` bytes; on a fault the pointer is unchanged.
    pub(crate) fn pop(
        &mut self,
        cpu: &mut CpuState,
        mem: &mut PhysMem,
        size: u32,
    ) -> Result<u64, Fault> {
        self.check(self.sp, size, false)?;
        let v = read_as(
            cpu,
            mem,
            self.base.wrapping_add(self.sp) & self.linear_mask,
            size,
            self.pl,
        )?;
        self.sp = self.sp.wrapping_add(u64::from(size)) & self.mask;
        Ok(v)
    }

    /// The new RSP: a 16-bit pointer keeps the old value's upper bits.
    pub(crate) fn rsp(&self, old: u64) -> u64 {
        if self.mask == 0xffff {
            (old & !0xffff) | self.sp
        } else {
            self.sp
        }
    }
}
