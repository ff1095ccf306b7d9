//! Interrupt and exception delivery, IRET, and the double-fault rules (SDM Vol. 3 chapter 6).
//!
//! [`deliver`] pushes the frame and loads CS:RIP and RFLAGS for one event, in real mode
//! (IVT), 32-bit protected mode (8-byte interrupt/trap gates, with a privilege change through
//! the TSS) and long mode (16-byte gates, 64-bit frames, IST stacks). [`iret`] undoes it.
//! Both take and return the *full* RFLAGS value: [`CpuState::rflags`] lacks the six
//! arithmetic flags, which live lazily in [`CpuState::cc`] and only the translator can
//! evaluate. The caller passes the evaluated RFLAGS in and, on success, splits the returned
//! value back: `cpu.cc = LazyFlags::from_eflags(v)` and `cpu.rflags = v & !flags::ARITH`.
//! The functions do not touch `cpu.rflags` or `cpu.cc` themselves.
//!
//! A fault while delivering (a bad gate, a not-present segment, a stack problem) leaves the
//! registers untouched (the stack memory may be partly written, as on hardware) and comes
//! back as [`Delivery::Fault`]: the caller then applies [`combine`] to decide between
//! delivering it, a double fault, or a triple fault (shutdown).
//!
//! A task gate in the IDT switches tasks through [`crate::task`] (which, past its commit
//! point, applies the new task's RFLAGS itself and raises faults in the new task's context).
//! IRET with NT = 1 outside long mode is a task return: callers check
//! [`crate::task::nested_iret`] first, since it needs the address of the next instruction.
//!
//! Virtual-8086 mode is entered by a 32-bit IRET at CPL 0 and left by an interrupt or
//! exception through a gate to ring 0; [`crate::v86`] holds the parts specific to it. Since
//! RFLAGS.VM takes part in the mode, callers recompute [`CpuState::mode`] with
//! [`update_mode`] after applying the returned RFLAGS (the mode computed here still sees the
//! old VM bit).
//!
//! Outside 64-bit mode the frame is checked against the stack segment's limit before the
//! first push (see [`Stack::room`]): #SS(EXT) on the current stack, #SS(new SS | EXT) on the
//! stack of a privilege change. In long mode the whole frame must lie at canonical
//! addresses, else #SS(0) before anything is written, and IRETQ's pops fault the same way
//! (see [`Stack`]).

use crate::exception::{Exception, Fault};
use crate::flags::{self, AC, ID, IF, IOPL, NT, RF, TF, VIF, VIP, VM};
use crate::memory::{read_linear, PhysMem};
use crate::paging::canonical;
use crate::segment::{self, cpl, fetch_descriptor, long_mode, mode64, update_mode, Descriptor};
use crate::state::{CpuState, SegReg, Segment, CR0_PE, SEG_DB, SEG_P};
use crate::task::{self, TaskSource};
use crate::v86;

mod stack;
pub(crate) use stack::Stack;

/// What caused an event, which decides the pushed RIP, the EXT bit of error codes and the
/// gate-DPL check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// A processor exception. The pushed RIP is `cpu.rip` as the caller left it: the
    /// faulting instruction for faults, the next instruction for traps (#DB traps, #OF from
    /// the hardware's point of view is raised by INTO: use [`EventKind::Software`]). The
    /// error code is pushed when present (never in real mode).
    Exception {
        /// The error code, for the vectors that have one.
        error_code: Option<u32>,
    },
    /// INT n, INT3 or INTO: `cpu.rip` is the instruction itself and `rip + insn_len` is
    /// pushed. The gate's DPL must be at least the CPL, else #GP(vector * 8 + 2).
    Software {
        /// Length of the INT instruction in bytes.
        insn_len: u8,
    },
    /// An external (maskable) interrupt: `cpu.rip` is the next instruction to execute.
    External,
    /// A non-maskable interrupt (vector 2): `cpu.rip` is the next instruction to execute.
    Nmi,
}

/// One interrupt or exception to deliver.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event {
    /// The vector (IDT index).
    pub vector: u8,
    /// What caused it.
    pub kind: EventKind,
}

/// Why [`deliver`] or [`iret`] did not complete.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// A fault during delivery or IRET; no register changed. For delivery, use [`combine`]
    /// with the original event to decide what to deliver next.
    Fault(Fault),
    /// A case this module does not implement yet (an IRET task return, a 16-bit TSS).
    Unsupported(&'static str),
}

impl From<Fault> for Delivery {
    fn from(f: Fault) -> Delivery {
        Delivery::Fault(f)
    }
}

/// What to do when a second exception arises while delivering a first (SDM table 6-5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Combined {
    /// Handle the two serially: deliver the second one.
    Serial,
    /// Deliver a double fault (#DF, error code 0).
    DoubleFault,
    /// Shut down: a fault while delivering a double fault.
    TripleFault,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Class {
    Benign,
    Contributory,
    PageFault,
    DoubleFault,
}

fn class(e: Exception) -> Class {
    use Exception::*;
    match e {
        DivideError | InvalidTss | SegmentNotPresent | StackFault | GeneralProtection => {
            Class::Contributory
        }
        PageFault => Class::PageFault,
        DoubleFault => Class::DoubleFault,
        _ => Class::Benign,
    }
}

/// SDM Vol. 3 table 6-5: a contributory exception during a contributory one, or a
/// contributory exception or page fault during a page fault, is a double fault; any
/// contributory exception, page fault or double fault during a double fault is a triple fault; everything
/// else (anything after a benign exception, a benign second exception, a page fault during a
/// contributory exception) is handled serially.
pub fn combine(first: Exception, second: Exception) -> Combined {
    let bad = matches!(class(second), Class::Contributory | Class::PageFault);
    match class(first) {
        Class::Contributory if class(second) == Class::Contributory => Combined::DoubleFault,
        Class::PageFault if bad => Combined::DoubleFault,
        Class::DoubleFault if bad || class(second) == Class::DoubleFault => Combined::TripleFault,
        _ => Combined::Serial,
    }
}

fn coded(e: Exception, code: u32) -> Delivery {
    Delivery::Fault(Fault::with_code(e, code))
}

/// Delivers one event: checks the gate and target, pushes the frame, loads CS:RIP (and SS:RSP
/// on a privilege change), and returns the new RFLAGS (TF, NT, RF and VM cleared, IF too
/// for interrupt gates; real mode clears IF, TF and AC). `rflags` is the full current value.
/// See the module documentation for the fault and unsupported cases.
pub fn deliver(
    cpu: &mut CpuState,
    mem: &mut PhysMem,
    event: Event,
    rflags: u64,
) -> Result<u64, Delivery> {
    let ret = match event.kind {
        EventKind::Software { insn_len } => {
            let r = cpu.rip.wrapping_add(u64::from(insn_len));
            if mode64(cpu) {
                r
            } else if cpu.seg[SegReg::Cs as usize].attrs & SEG_DB != 0 && segment::protected(cpu) {
                r & 0xffff_ffff
            } else {
                r & 0xffff
            }
        }
        _ => cpu.rip,
    };
    if cpu.cr0 & CR0_PE == 0 {
        deliver_real(cpu, mem, event.vector, ret, rflags)
    } else {
        deliver_protected(cpu, mem, event, ret, rflags)
    }
}

fn deliver_real(
    cpu: &mut CpuState,
    mem: &mut PhysMem,
    vector: u8,
    ret: u64,
    rflags: u64,
) -> Result<u64, Delivery> {
    let off = u64::from(vector) * 4;
    if off + 3 > u64::from(cpu.idtr.limit) {
        return Err(coded(Exception::GeneralProtection, 0));
    }
    let entry = read_linear(cpu, mem, cpu.idtr.base.wrapping_add(off) & 0xffff_ffff, 4)?;
    // SDM: "IF top 6 bytes of stack not within stack limits THEN #SS".
    let mut st = Stack::current(cpu);
    st.room(3, 2)?;
    st.push(cpu, mem, 2, rflags)?;
    st.push(
        cpu,
        mem,
        2,
        u64::from(cpu.seg[SegReg::Cs as usize].selector),
    )?;
    st.push(cpu, mem, 2, ret)?;
    cpu.gpr[4] = st.rsp(cpu.gpr[4]);
    cpu.seg[SegReg::Cs as usize] = segment::real_segment(cpu, SegReg::Cs, (entry >> 16) as u16);
    cpu.rip = entry & 0xffff;
    Ok(rflags & !(IF | TF | AC))
}

/// Checks a gate's target code segment: null → #GP(EXT); beyond the table, not code, or
/// DPL > CPL → #GP(sel | EXT); not present → #NP(sel | EXT).
fn gate_target(
    cpu: &mut CpuState,
    mem: &mut PhysMem,
    sel: u16,
    ext: u32,
) -> Result<Descriptor, Delivery> {
    let code = u32::from(sel & 0xfffc) | ext;
    if sel & 0xfffc == 0 {
        return Err(coded(Exception::GeneralProtection, ext));
    }
    let Some(d) = fetch_descriptor(cpu, mem, sel)? else {
        return Err(coded(Exception::GeneralProtection, code));
    };
    if !d.is_code() || d.dpl() > cpl(cpu) {
        return Err(coded(Exception::GeneralProtection, code));
    }
    // Long mode: the target must be 64-bit code (L = 1, D = 0).
    if long_mode(cpu) && (!d.l() || d.db()) {
        return Err(coded(Exception::GeneralProtection, code));
    }
    if !d.present() {
        return Err(coded(Exception::SegmentNotPresent, code));
    }
    Ok(d)
}

/// Reads `size` bytes at `off` in the current TSS; beyond TR's limit → #TS(TR | EXT).
fn tss_read(
    cpu: &mut CpuState,
    mem: &mut PhysMem,
    off: u32,
    size: u32,
    ext: u32,
) -> Result<u64, Delivery> {
    if off + size - 1 > cpu.tr.limit || cpu.tr.attrs & SEG_P == 0 {
        return Err(coded(
            Exception::InvalidTss,
            u32::from(cpu.tr.selector & 0xfffc) | ext,
        ));
    }
    let mask = if long_mode(cpu) {
        u64::MAX
    } else {
        0xffff_ffff
    };
    Ok(read_linear(
        cpu,
        mem,
        cpu.tr.base.wrapping_add(u64::from(off)) & mask,
        size,
    )?)
}

fn deliver_protected(
    cpu: &mut CpuState,
    mem: &mut PhysMem,
    event: Event,
    ret: u64,
    rflags: u64,
) -> Result<u64, Delivery> {
    let software = matches!(event.kind, EventKind::Software { .. });
    let ext = u32::from(!software);
    let idt_code = u32::from(event.vector) * 8 + 2 + ext;
    let lm = long_mode(cpu);
    let entry = if lm { 16 } else { 8 };
    let off = u64::from(event.vector) * entry;
    if off + entry - 1 > u64::from(cpu.idtr.limit) {
        return Err(coded(Exception::GeneralProtection, idt_code));
    }
    let mask = if lm { u64::MAX } else { 0xffff_ffff };
    let addr = cpu.idtr.base.wrapping_add(off) & mask;
    let raw = read_linear(cpu, mem, addr, 8)?;
    let upper = if lm {
        read_linear(cpu, mem, addr.wrapping_add(8) & mask, 8)?
    } else {
        0
    };
    let gate = Descriptor::from_raw(raw, upper, addr);
    let valid = if lm {
        matches!(gate.typ(), 0xe | 0xf)
    } else {
        matches!(gate.typ(), 5 | 6 | 7 | 0xe | 0xf)
    };
    if gate.s() || !valid {
        return Err(coded(Exception::GeneralProtection, idt_code));
    }
    let old_cpl = cpl(cpu);
    if software && gate.dpl() < old_cpl {
        return Err(coded(Exception::GeneralProtection, idt_code));
    }
    if !gate.present() {
        return Err(coded(Exception::SegmentNotPresent, idt_code));
    }
    if gate.typ() == 5 {
        let error_code = match event.kind {
            EventKind::Exception { error_code } => error_code,
            _ => None,
        };
        let tss_sel = gate.gate_selector();
        let tss = task::gate_tss(cpu, mem, tss_sel, ext)?;
        let source = TaskSource::Interrupt {
            error_code,
            ext: ext != 0,
        };
        return task::switch(cpu, mem, tss_sel, tss, source, ret, rflags);
    }
    let sel = gate.gate_selector();
    let target = gate_target(cpu, mem, sel, ext)?;
    let new_cpl = if !target.is_conforming() && target.dpl() < old_cpl {
        target.dpl()
    } else {
        old_cpl
    };
    // From virtual-8086 mode only a non-conforming DPL-0 target will do (the privilege
    // change to ring 0 below then also saves and nulls the data segment registers).
    let from_v86 = rflags & VM != 0 && !lm;
    if from_v86 && new_cpl != 0 {
        return Err(coded(
            Exception::GeneralProtection,
            u32::from(sel & 0xfffc) | ext,
        ));
    }
    let wide = gate.typ() & 8 != 0;
    let offset = if wide {
        gate.gate_offset()
    } else {
        gate.gate_offset() & 0xffff
    };
    // The SDM checks the new stack's room before the new instruction pointer (below).
    let bad_ip = if lm {
        !canonical(offset)
    } else {
        offset > u64::from(target.limit())
    };
    let error_code = match event.kind {
        EventKind::Exception { error_code } => error_code,
        _ => None,
    };
    let old_cs = u64::from(cpu.seg[SegReg::Cs as usize].selector);
    let old_ss = u64::from(cpu.seg[SegReg::Ss as usize].selector);
    let old_rsp = cpu.gpr[4];
    let mut new_ss = None;
    let mut st;
    if lm {
        let ist = gate.gate_ist();
        st = Stack::new(0, old_rsp, u64::MAX, u64::MAX).at(cpu, new_cpl);
        if ist != 0 {
            st.sp = tss_read(cpu, mem, 0x24 + 8 * (u32::from(ist) - 1), 8, ext)?;
        } else if new_cpl < old_cpl {
            st.sp = tss_read(cpu, mem, 4 + 8 * u32::from(new_cpl), 8, ext)?;
        }
        // A stack switch (to an inner ring, or to an IST stack even at the same
        // privilege) loads SS with a null selector of the new CPL: Bochs and QEMU both
        // take the IST case as a stack switch.
        if new_cpl < old_cpl || ist != 0 {
            let sel = u16::from(new_cpl);
            new_ss = Some(Segment {
                base: 0,
                limit: 0,
                selector: sel,
                attrs: sel << 5,
            });
        }
        st.sp &= !0xf;
        // The SDM's order: the new stack's address, then the target's.
        st.canonical_room(8 * (5 + u64::from(error_code.is_some())))?;
        if bad_ip {
            return Err(coded(Exception::GeneralProtection, ext));
        }
        for v in [old_ss, old_rsp, rflags, old_cs, ret] {
            st.push(cpu, mem, 8, v)?;
        }
        if let Some(e) = error_code {
            st.push(cpu, mem, 8, u64::from(e))?;
        }
    } else {
        let size = if wide { 4 } else { 2 };
        if new_cpl < old_cpl {
            let (ss_sel, sp) = if cpu.tr.attrs & 8 != 0 {
                let o = 4 + 8 * u32::from(new_cpl);
                (
                    tss_read(cpu, mem, o + 4, 2, ext)? as u16,
                    tss_read(cpu, mem, o, 4, ext)?,
                )
            } else {
                let o = 2 + 4 * u32::from(new_cpl);
                (
                    tss_read(cpu, mem, o + 2, 2, ext)? as u16,
                    tss_read(cpu, mem, o, 2, ext)?,
                )
            };
            let ss = stack_for(cpu, mem, ss_sel, new_cpl, ext)?;
            let m = if ss.attrs & SEG_DB != 0 {
                0xffff_ffff
            } else {
                0xffff
            };
            let code = u32::from(ss_sel & 0xfffc) | ext;
            st = Stack::new(ss.base, sp, m, 0xffff_ffff)
                .checked(ss, code)
                .at(cpu, new_cpl);
            new_ss = Some(ss);
            let saved = if from_v86 { 6 } else { 2 };
            st.room(saved + 3 + u32::from(error_code.is_some()), size)?;
            if bad_ip {
                return Err(coded(Exception::GeneralProtection, ext));
            }
            if from_v86 {
                v86::push_data_segments(cpu, mem, &mut st, size)?;
            }
            st.push(cpu, mem, size, old_ss)?;
            st.push(cpu, mem, size, old_rsp)?;
        } else {
            st = Stack::current(cpu).with_code(ext);
            st.room(3 + u32::from(error_code.is_some()), size)?;
            if bad_ip {
                return Err(coded(Exception::GeneralProtection, ext));
            }
        }
        for v in [rflags, old_cs, ret] {
            st.push(cpu, mem, size, v)?;
        }
        if let Some(e) = error_code {
            st.push(cpu, mem, size, u64::from(e))?;
        }
    }
    let rsp = st.rsp(old_rsp);
    let mut target = target;
    segment::set_accessed(cpu, mem, &mut target)?;
    if let Some(ss) = new_ss {
        cpu.seg[SegReg::Ss as usize] = ss;
    }
    cpu.gpr[4] = rsp;
    cpu.seg[SegReg::Cs as usize] = target.to_segment((sel & 0xfffc) | u16::from(new_cpl));
    cpu.rip = offset;
    if from_v86 {
        v86::null_data_segments(cpu);
    }
    update_mode(cpu);
    let mut out = rflags & !(TF | NT | RF | VM);
    if gate.typ() & 1 == 0 {
        out &= !IF;
    }
    Ok(out)
}

/// Checks the ring-`cpl` stack segment named by the TSS: null → #TS(EXT); RPL ≠ CPL,
/// beyond the table, not writable data or DPL ≠ CPL → #TS(sel | EXT); not present →
/// #SS(sel | EXT). Returns the cache to load (accessed bit set).
fn stack_for(
    cpu: &mut CpuState,
    mem: &mut PhysMem,
    sel: u16,
    new_cpl: u8,
    ext: u32,
) -> Result<Segment, Delivery> {
    let code = u32::from(sel & 0xfffc) | ext;
    if sel & 0xfffc == 0 {
        return Err(coded(Exception::InvalidTss, ext));
    }
    let ts = coded(Exception::InvalidTss, code);
    if (sel & 3) as u8 != new_cpl {
        return Err(ts);
    }
    let Some(mut d) = fetch_descriptor(cpu, mem, sel)? else {
        return Err(ts);
    };
    if !d.is_writable() || d.dpl() != new_cpl {
        return Err(ts);
    }
    if !d.present() {
        return Err(coded(Exception::StackFault, code));
    }
    segment::set_accessed(cpu, mem, &mut d)?;
    Ok(d.to_segment(sel))
}

/// The RFLAGS bits IRET may change: always the arithmetic flags, TF, DF, NT, RF, AC and ID;
/// IOPL, VIF and VIP at CPL 0; IF when CPL ≤ IOPL. A 16-bit IRET changes only bits 0..15.
fn iret_mask(cpl: u8, rflags: u64, op_size: u32) -> u64 {
    let mut m = flags::ARITH | TF | flags::DF | NT | RF | AC | ID;
    if cpl == 0 {
        m |= IOPL | VIF | VIP;
    }
    if u64::from(cpl) <= (rflags & IOPL) >> 12 {
        m |= IF;
    }
    if op_size == 16 {
        m &= 0xffff;
    }
    m
}

/// IRET with a 16-, 32- or 64-bit operand size (`op_size` in bits; 64 only in 64-bit
/// mode). `rflags` is the full current RFLAGS; the result is the new full RFLAGS for the
/// caller to split. Real mode; virtual-8086 mode with IOPL = 3 (with IOPL < 3 #GP(0), but
/// for a 16-bit IRET with CR4.VME, see [`crate::v86::vme::iret16`]); a 32-bit
/// IRET at CPL 0 to virtual-8086 mode (see [`crate::v86`]); protected
/// and long mode returns to the same or an outer privilege level with every CS/SS check
/// (#GP(sel), #NP(sel) for CS, #SS(sel) for SS, #GP(0) for a null CS, a null SS outside
/// 64-bit returns, NT = 1 in long mode or a RIP beyond CS's limit / non-canonical). On a
/// return to an outer level, DS/ES/FS/GS holding segments the new CPL may not use are
/// nulled. In 64-bit mode SS:RSP are always popped.
pub fn iret(
    cpu: &mut CpuState,
    mem: &mut PhysMem,
    op_size: u32,
    rflags: u64,
) -> Result<u64, Delivery> {
    let n = op_size / 8;
    let gp0 = || coded(Exception::GeneralProtection, 0);
    if cpu.cr0 & CR0_PE == 0 || rflags & VM != 0 {
        let v86 = rflags & VM != 0;
        if v86 && (rflags & IOPL) != IOPL {
            // IOPL < 3: only the 16-bit form with CR4.VME runs, on VIF.
            if n == 2 && cpu.cr4 & crate::state::CR4_VME != 0 {
                return v86::vme::iret16(cpu, mem, rflags);
            }
            return Err(gp0());
        }
        let mut st = Stack::current(cpu);
        let ip = st.pop(cpu, mem, n)?;
        let cs = st.pop(cpu, mem, n)? as u16;
        let fl = st.pop(cpu, mem, n)?;
        if ip > u64::from(cpu.seg[SegReg::Cs as usize].limit) && !v86 {
            return Err(gp0());
        }
        // Real mode: EFLAGS = (popped & 0x257fd5) | (EFLAGS & 0x1a0000); virtual-8086 mode
        // also keeps IOPL.
        let mut mask = (iret_mask(0, rflags, op_size) | IF) & !(VIF | VIP);
        if v86 {
            mask &= !IOPL;
        }
        cpu.gpr[4] = st.rsp(cpu.gpr[4]);
        cpu.seg[SegReg::Cs as usize] = segment::real_segment(cpu, SegReg::Cs, cs);
        cpu.rip = ip & if n == 2 { 0xffff } else { 0xffff_ffff };
        return Ok((rflags & !mask) | (fl & mask) | flags::FIXED1);
    }
    let lm = long_mode(cpu);
    if rflags & NT != 0 {
        if lm {
            return Err(gp0());
        }
        return Err(Delivery::Unsupported("IRET task return (NT = 1)"));
    }
    let from64 = mode64(cpu);
    let old_cpl = cpl(cpu);
    let mut st = Stack::current(cpu);
    let ip = st.pop(cpu, mem, n)?;
    let cs_sel = st.pop(cpu, mem, n)? as u16;
    let fl = st.pop(cpu, mem, n)?;
    if !lm && n == 4 && fl & VM != 0 && old_cpl == 0 {
        return v86::iret_to_v86(cpu, mem, st, ip, cs_sel, fl);
    }
    let gp = |s: u16| coded(Exception::GeneralProtection, u32::from(s & 0xfffc));
    if cs_sel & 0xfffc == 0 {
        return Err(gp0());
    }
    let Some(mut cs) = fetch_descriptor(cpu, mem, cs_sel)? else {
        return Err(gp(cs_sel));
    };
    let rpl = (cs_sel & 3) as u8;
    if !cs.is_code()
        || rpl < old_cpl
        || (cs.is_conforming() && cs.dpl() > rpl)
        || (!cs.is_conforming() && cs.dpl() != rpl)
        || (lm && cs.l() && cs.db())
    {
        return Err(gp(cs_sel));
    }
    if !cs.present() {
        return Err(coded(
            Exception::SegmentNotPresent,
            u32::from(cs_sel & 0xfffc),
        ));
    }
    let to64 = lm && cs.l();
    let new_ip = match n {
        2 => ip & 0xffff,
        4 => ip & 0xffff_ffff,
        _ => ip,
    };
    let mut new_ss = None;
    let mut rsp = st.rsp(cpu.gpr[4]);
    if rpl > old_cpl || from64 {
        let sp = st.pop(cpu, mem, n)?;
        let ss_sel = st.pop(cpu, mem, n)? as u16;
        let ss = if ss_sel & 0xfffc == 0 {
            if !to64 || rpl == 3 {
                return Err(gp0());
            }
            Segment {
                base: 0,
                limit: 0,
                selector: ss_sel,
                attrs: u16::from(rpl) << 5,
            }
        } else {
            if (ss_sel & 3) as u8 != rpl {
                return Err(gp(ss_sel));
            }
            let Some(mut d) = fetch_descriptor(cpu, mem, ss_sel)? else {
                return Err(gp(ss_sel));
            };
            if !d.is_writable() || d.dpl() != rpl {
                return Err(gp(ss_sel));
            }
            if !d.present() {
                return Err(coded(Exception::StackFault, u32::from(ss_sel & 0xfffc)));
            }
            segment::set_accessed(cpu, mem, &mut d)?;
            d.to_segment(ss_sel)
        };
        rsp = if to64 || ss.attrs & SEG_DB != 0 {
            if n == 2 {
                sp & 0xffff
            } else {
                sp
            }
        } else {
            (rsp & !0xffff) | (sp & 0xffff)
        };
        new_ss = Some(ss);
    }
    let bad_ip = if to64 {
        !canonical(new_ip)
    } else {
        new_ip > u64::from(cs.limit())
    };
    if bad_ip {
        return Err(gp0());
    }
    segment::set_accessed(cpu, mem, &mut cs)?;
    let mask = iret_mask(old_cpl, rflags, op_size);
    cpu.seg[SegReg::Cs as usize] = cs.to_segment(cs_sel);
    if let Some(ss) = new_ss {
        cpu.seg[SegReg::Ss as usize] = ss;
    }
    cpu.gpr[4] = rsp;
    cpu.rip = new_ip;
    if rpl > old_cpl {
        crate::far::null_inaccessible(cpu, rpl);
    }
    update_mode(cpu);
    Ok((rflags & !mask) | (fl & mask) | flags::FIXED1)
}

#[cfg(test)]
mod tests;
