//! Far control transfers: JMP, CALL and RET (RETF) to another code segment, in real,
//! virtual-8086, protected and long mode, with call gates and the privilege-changing CALL
//! through the TSS's stacks (SDM Vol. 2 "CALL", "JMP", "RET"; Vol. 3 5.8).
//!
//! Like [`crate::interrupt`], everything takes the full RFLAGS value and returns the new one
//! (only a task switch changes it; see [`crate::task`]), and on failure no register has
//! changed: every check and every read happens before the first register write (except for
//! faults a task switch raises in the new task's context, after its commit point). Stack memory
//! is not written by a CALL that faults on its own checks (the room on the stack is checked
//! before the first push), but a page fault on a later push leaves the earlier ones written.
//!
//! Checks are made in the order of the SDM's pseudocode, with its error codes: outside
//! 64-bit mode every push and pop is checked against the stack segment's limit (see
//! [`Stack`]), #SS(0) on the current stack and #SS(new SS) on the inner stack of a
//! privilege-changing CALL, before the new instruction pointer is checked against the
//! code segment's limit.

use crate::exception::{Exception, Fault};
use crate::interrupt::{Delivery, Stack};
use crate::memory::{read_linear, PhysMem};
use crate::paging::canonical;
use crate::segment::{
    self, cpl, fetch_descriptor, gp, long_mode, read_descriptor, update_mode, Descriptor, SYS_CALL,
    SYS_CALL16, SYS_TASK_GATE, SYS_TSS, SYS_TSS16, SYS_TSS16_BUSY, SYS_TSS_BUSY,
};
use crate::state::{CpuState, SegReg, Segment, SEG_P};
use crate::task::{self, TaskSource};

/// Which far transfer: they share the target checks and differ in what they push.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FarKind {
    /// JMP ptr16:16/32, JMP m16:16/32/64.
    Jmp,
    /// CALL ptr16:16/32, CALL m16:16/32/64.
    Call,
}

/// A far JMP or CALL to `selector:offset`.
///
/// `op_size` is the operand size in bytes (2, 4 or 8: the width of the offset and of the
/// pushed CS and return address), `next_ip` the address of the next instruction (the return
/// address), `rflags` the full current RFLAGS. Returns the new RFLAGS; CS, RIP and, for a
/// CALL, SS and RSP are updated. Real and virtual-8086 mode load CS as selector * 16;
/// protected and long mode go through the descriptor: a code segment, a call gate, or (outside
/// long mode) a task gate or TSS, which switches tasks.
// The operands are the instruction's, one argument each, as the SDM's pseudocode names them.
#[allow(clippy::too_many_arguments)]
pub fn jmp_call(
    cpu: &mut CpuState,
    mem: &mut PhysMem,
    kind: FarKind,
    selector: u16,
    offset: u64,
    op_size: u32,
    next_ip: u64,
    rflags: u64,
) -> Result<u64, Delivery> {
    if !segment::protected(cpu) {
        real_jmp_call(cpu, mem, kind, selector, offset, op_size, next_ip)?;
        return Ok(rflags);
    }
    if selector & 0xfffc == 0 {
        return Err(gp(0).into());
    }
    let d = read_descriptor(cpu, mem, selector)?;
    let lm = long_mode(cpu);
    if d.s() {
        if !d.is_code() {
            return Err(gp(selector).into());
        }
        direct(cpu, mem, kind, selector, d, offset, op_size, next_ip)?;
        return Ok(rflags);
    }
    let source = match kind {
        FarKind::Jmp => TaskSource::Jmp,
        FarKind::Call => TaskSource::Call,
    };
    match d.typ() {
        SYS_CALL => call_gate(cpu, mem, kind, selector, d, next_ip)?,
        SYS_CALL16 if !lm => call_gate(cpu, mem, kind, selector, d, next_ip)?,
        SYS_TASK_GATE if !lm => {
            return task_gate(cpu, mem, selector, d, source, next_ip, rflags);
        }
        SYS_TSS | SYS_TSS16 | SYS_TSS_BUSY | SYS_TSS16_BUSY if !lm => {
            // A busy TSS, one in the LDT, or one the caller may not use, is #GP(TSS
            // selector).
            let rpl = (selector & 3) as u8;
            if d.dpl() < cpl(cpu) || d.dpl() < rpl || d.typ() & 2 != 0 || selector & 4 != 0 {
                return Err(gp(selector).into());
            }
            if !d.present() {
                return Err(np(selector).into());
            }
            return task::switch(cpu, mem, selector, d, source, next_ip, rflags);
        }
        _ => return Err(gp(selector).into()),
    }
    Ok(rflags)
}

fn np(selector: u16) -> Fault {
    Fault::with_code(Exception::SegmentNotPresent, u32::from(selector & 0xfffc))
}

fn gp0() -> Fault {
    gp(0)
}

fn mask_of(size: u32) -> u64 {
    match size {
        2 => 0xffff,
        4 => 0xffff_ffff,
        _ => u64::MAX,
    }
}

/// Real-address and virtual-8086 mode: the offset must lie within the current CS limit
/// (64 KiB unless "unreal"), CS is loaded as selector * 16.
fn real_jmp_call(
    cpu: &mut CpuState,
    mem: &mut PhysMem,
    kind: FarKind,
    selector: u16,
    offset: u64,
    op_size: u32,
    next_ip: u64,
) -> Result<(), Fault> {
    let ip = offset & mask_of(op_size);
    let mut st = Stack::current(cpu);
    if kind == FarKind::Call {
        st.room(2, op_size)?;
    }
    if ip > u64::from(cpu.seg[SegReg::Cs as usize].limit) {
        return Err(gp0());
    }
    if kind == FarKind::Call {
        let cs = u64::from(cpu.seg[SegReg::Cs as usize].selector);
        st.push(cpu, mem, op_size, cs)?;
        st.push(cpu, mem, op_size, next_ip & mask_of(op_size))?;
    }
    cpu.gpr[4] = st.rsp(cpu.gpr[4]);
    cpu.seg[SegReg::Cs as usize] = segment::real_segment(cpu, SegReg::Cs, selector);
    cpu.rip = ip;
    update_mode(cpu);
    Ok(())
}

/// The new instruction pointer's check: within the limit for a 16/32-bit target, canonical
/// for a 64-bit one; #GP(0) otherwise.
fn check_ip(target: &Descriptor, to64: bool, ip: u64) -> Result<(), Fault> {
    let ok = if to64 {
        canonical(ip)
    } else {
        ip <= u64::from(target.limit())
    };
    if ok {
        Ok(())
    } else {
        Err(gp0())
    }
}

/// Loads CS (RPL = `new_cpl`, accessed bit set) and RIP, and recomputes the mode.
fn commit_cs(
    cpu: &mut CpuState,
    mem: &mut PhysMem,
    mut d: Descriptor,
    selector: u16,
    new_cpl: u8,
    ip: u64,
) -> Result<(), Fault> {
    segment::set_accessed(cpu, mem, &mut d)?;
    cpu.seg[SegReg::Cs as usize] = d.to_segment((selector & 0xfffc) | u16::from(new_cpl));
    cpu.rip = ip;
    update_mode(cpu);
    Ok(())
}

/// JMP/CALL straight to a code segment: conforming code needs DPL ≤ CPL, non-conforming
/// code RPL ≤ CPL and DPL = CPL; the CPL does not change.
#[allow(clippy::too_many_arguments)]
fn direct(
    cpu: &mut CpuState,
    mem: &mut PhysMem,
    kind: FarKind,
    selector: u16,
    d: Descriptor,
    offset: u64,
    op_size: u32,
    next_ip: u64,
) -> Result<(), Fault> {
    let cpl = cpl(cpu);
    let rpl = (selector & 3) as u8;
    let lm = long_mode(cpu);
    if lm && d.l() && d.db() {
        return Err(gp(selector));
    }
    let allowed = if d.is_conforming() {
        d.dpl() <= cpl
    } else {
        rpl <= cpl && d.dpl() == cpl
    };
    if !allowed {
        return Err(gp(selector));
    }
    if !d.present() {
        return Err(np(selector));
    }
    let to64 = lm && d.l();
    let mut ip = offset & mask_of(op_size);
    // CALL truncates to 32 bits when the target is compatibility mode; JMP lets the limit
    // check catch a wide offset instead (SDM pseudocode of each).
    if kind == FarKind::Call && !to64 {
        ip &= 0xffff_ffff;
    }
    same_level(
        cpu,
        mem,
        kind,
        op_size,
        next_ip,
        d,
        selector,
        cpl,
        (ip, to64),
    )
}

/// The end of a transfer that keeps the CPL: a CALL checks the room for CS and the return
/// address on the current stack, then the new instruction pointer (`ip`, and whether the
/// target is 64-bit code) is checked, the CALL pushes, and CS:IP is loaded.
#[allow(clippy::too_many_arguments)]
fn same_level(
    cpu: &mut CpuState,
    mem: &mut PhysMem,
    kind: FarKind,
    size: u32,
    next_ip: u64,
    cs: Descriptor,
    cs_sel: u16,
    cpl: u8,
    (ip, to64): (u64, bool),
) -> Result<(), Fault> {
    let mut st = Stack::current(cpu);
    if kind == FarKind::Call {
        st.canonical_room(2 * u64::from(size))?;
        st.room(2, size)?;
    }
    check_ip(&cs, to64, ip)?;
    if kind == FarKind::Call {
        let old_cs = u64::from(cpu.seg[SegReg::Cs as usize].selector);
        st.push(cpu, mem, size, old_cs)?;
        st.push(cpu, mem, size, next_ip & mask_of(size))?;
    }
    let rsp = st.rsp(cpu.gpr[4]);
    commit_cs(cpu, mem, cs, cs_sel, cpl, ip)?;
    cpu.gpr[4] = rsp;
    Ok(())
}

/// Checks a stack segment about to be loaded at privilege level `rpl`: null is #GP(0) / the
/// caller's business; beyond the table, RPL ≠ `rpl`, not writable data or DPL ≠ `rpl` is
/// `bad(selector)`; not present is #SS(selector).
fn check_stack(
    cpu: &mut CpuState,
    mem: &mut PhysMem,
    selector: u16,
    rpl: u8,
    bad: Exception,
) -> Result<Descriptor, Fault> {
    let code = u32::from(selector & 0xfffc);
    let Some(d) = fetch_descriptor(cpu, mem, selector)? else {
        return Err(Fault::with_code(bad, code));
    };
    if (selector & 3) as u8 != rpl || !d.is_writable() || d.dpl() != rpl {
        return Err(Fault::with_code(bad, code));
    }
    if !d.present() {
        return Err(Fault::with_code(Exception::StackFault, code));
    }
    Ok(d)
}

/// Reads `size` bytes at `off` in the current TSS; beyond TR's limit → #TS(TR).
fn tss_read(cpu: &mut CpuState, mem: &mut PhysMem, off: u32, size: u32) -> Result<u64, Fault> {
    if off + size - 1 > cpu.tr.limit || cpu.tr.attrs & SEG_P == 0 {
        return Err(Fault::with_code(
            Exception::InvalidTss,
            u32::from(cpu.tr.selector & 0xfffc),
        ));
    }
    let mask = if long_mode(cpu) {
        u64::MAX
    } else {
        0xffff_ffff
    };
    read_linear(
        cpu,
        mem,
        cpu.tr.base.wrapping_add(u64::from(off)) & mask,
        size,
    )
}

/// JMP or CALL through a call gate (16- or 32-bit outside long mode, 64-bit in long mode).
fn call_gate(
    cpu: &mut CpuState,
    mem: &mut PhysMem,
    kind: FarKind,
    gate_sel: u16,
    gate: Descriptor,
    next_ip: u64,
) -> Result<(), Fault> {
    let cpl = cpl(cpu);
    let lm = long_mode(cpu);
    if gate.dpl() < cpl || ((gate_sel & 3) as u8) > gate.dpl() {
        return Err(gp(gate_sel));
    }
    // The upper half of a 16-byte gate must have a zero type field.
    if lm && (gate.upper >> 40) & 0x1f != 0 {
        return Err(gp(gate_sel));
    }
    if !gate.present() {
        return Err(np(gate_sel));
    }
    let cs_sel = gate.gate_selector();
    if cs_sel & 0xfffc == 0 {
        return Err(gp0());
    }
    let cs = read_descriptor(cpu, mem, cs_sel)?;
    let allowed = cs.is_code()
        && match kind {
            // JMP never changes the CPL.
            FarKind::Jmp => {
                if cs.is_conforming() {
                    cs.dpl() <= cpl
                } else {
                    cs.dpl() == cpl
                }
            }
            FarKind::Call => cs.dpl() <= cpl,
        };
    if !allowed || (lm && (!cs.l() || cs.db())) {
        return Err(gp(cs_sel));
    }
    if !cs.present() {
        return Err(np(cs_sel));
    }
    let size = match (gate.typ(), lm) {
        (SYS_CALL16, _) => 2,
        (_, false) => 4,
        (_, true) => 8,
    };
    let ip = gate.gate_offset() & mask_of(size);
    let raise = kind == FarKind::Call && !cs.is_conforming() && cs.dpl() < cpl;
    if !raise {
        return same_level(cpu, mem, kind, size, next_ip, cs, cs_sel, cpl, (ip, lm));
    }
    more_privilege(cpu, mem, gate, cs, cs_sel, size, ip, next_ip)
}

/// CALL through a gate to a more privileged non-conforming segment: switch to the stack the
/// TSS holds for the new CPL, check that the frame fits (#SS(new SS) if not) and the new
/// instruction pointer, read the gate's parameters from the caller's stack (32- and 16-bit
/// gates; #SS(0) beyond its limit), then push the caller's SS:ESP, the parameters and the
/// return address.
#[allow(clippy::too_many_arguments)]
fn more_privilege(
    cpu: &mut CpuState,
    mem: &mut PhysMem,
    gate: Descriptor,
    cs: Descriptor,
    cs_sel: u16,
    size: u32,
    ip: u64,
    next_ip: u64,
) -> Result<(), Fault> {
    let new_cpl = cs.dpl();
    let lm = long_mode(cpu);
    let (ss, mut st) = if lm {
        let sp = tss_read(cpu, mem, 4 + 8 * u32::from(new_cpl), 8)?;
        // Long mode: SS becomes a null selector with RPL = new CPL.
        let sel = u16::from(new_cpl);
        let null = Segment {
            base: 0,
            limit: 0,
            selector: sel,
            attrs: sel << 5,
        };
        (null, Stack::new(0, sp, u64::MAX, u64::MAX).at(cpu, new_cpl))
    } else {
        let (ss_sel, sp) = if cpu.tr.attrs & 8 != 0 {
            let off = 4 + 8 * u32::from(new_cpl);
            let sp = tss_read(cpu, mem, off, 4)?;
            (tss_read(cpu, mem, off + 4, 2)? as u16, sp)
        } else {
            let off = 2 + 4 * u32::from(new_cpl);
            let sp = tss_read(cpu, mem, off, 2)?;
            (tss_read(cpu, mem, off + 2, 2)? as u16, sp)
        };
        if ss_sel & 0xfffc == 0 {
            return Err(Fault::with_code(Exception::InvalidTss, 0));
        }
        let mut d = check_stack(cpu, mem, ss_sel, new_cpl, Exception::InvalidTss)?;
        segment::set_accessed(cpu, mem, &mut d)?;
        let m = if d.db() { 0xffff_ffff } else { 0xffff };
        let seg = d.to_segment(ss_sel);
        let code = u32::from(ss_sel & 0xfffc);
        (
            seg,
            Stack::new(d.base(), sp, m, 0xffff_ffff)
                .checked(seg, code)
                .at(cpu, new_cpl),
        )
    };
    let old_ss = u64::from(cpu.seg[SegReg::Ss as usize].selector);
    let old_cs = u64::from(cpu.seg[SegReg::Cs as usize].selector);
    let old_rsp = cpu.gpr[4];
    let count = if lm {
        0
    } else {
        u32::from(gate.gate_param_count())
    };
    st.canonical_room(4 * u64::from(size))?;
    st.room(4 + count, size)?;
    check_ip(&cs, lm, ip)?;
    // The parameters, read from the caller's top of stack upwards before anything is
    // pushed; they keep their order, the one at the caller's top of stack ending up just
    // above the return address.
    let mut old = Stack::current(cpu);
    let mut params = Vec::with_capacity(count as usize);
    for _ in 0..count {
        params.push(old.pop(cpu, mem, size)?);
    }
    st.push(cpu, mem, size, old_ss)?;
    st.push(cpu, mem, size, old_rsp & mask_of(size))?;
    for v in params.into_iter().rev() {
        st.push(cpu, mem, size, v)?;
    }
    st.push(cpu, mem, size, old_cs)?;
    st.push(cpu, mem, size, next_ip & mask_of(size))?;
    let rsp = st.rsp(old_rsp);
    commit_cs(cpu, mem, cs, cs_sel, new_cpl, ip)?;
    cpu.seg[SegReg::Ss as usize] = ss;
    cpu.gpr[4] = rsp;
    update_mode(cpu);
    Ok(())
}

/// JMP or CALL through a task gate: the gate's DPL must admit the caller; the TSS selector
/// it holds must name an available TSS in the GDT.
fn task_gate(
    cpu: &mut CpuState,
    mem: &mut PhysMem,
    gate_sel: u16,
    gate: Descriptor,
    source: TaskSource,
    next_ip: u64,
    rflags: u64,
) -> Result<u64, Delivery> {
    if gate.dpl() < cpl(cpu) || gate.dpl() < (gate_sel & 3) as u8 {
        return Err(gp(gate_sel).into());
    }
    if !gate.present() {
        return Err(np(gate_sel).into());
    }
    let tss_sel = gate.gate_selector();
    let tss = task::gate_tss(cpu, mem, tss_sel, 0)?;
    task::switch(cpu, mem, tss_sel, tss, source, next_ip, rflags)
}

/// RETF / RETF imm16 with an operand size of `op_size` bytes (2, 4 or 8), releasing
/// `release` bytes of parameters. Returns the new RFLAGS (unchanged: RET never changes
/// flags). A return to an outer privilege level pops SS:ESP, releases the parameters on both
/// stacks and nulls the data segment registers the new CPL may not use.
pub fn retf(
    cpu: &mut CpuState,
    mem: &mut PhysMem,
    op_size: u32,
    release: u16,
    rflags: u64,
) -> Result<u64, Delivery> {
    let n = op_size;
    let release = u64::from(release);
    let mut st = Stack::current(cpu);
    if !segment::protected(cpu) {
        let ip = st.pop(cpu, mem, n)? & mask_of(n);
        let cs = st.pop(cpu, mem, n)? as u16;
        if ip > u64::from(cpu.seg[SegReg::Cs as usize].limit) {
            return Err(gp0().into());
        }
        st.sp = st.sp.wrapping_add(release) & st.mask;
        cpu.gpr[4] = st.rsp(cpu.gpr[4]);
        cpu.seg[SegReg::Cs as usize] = segment::real_segment(cpu, SegReg::Cs, cs);
        cpu.rip = ip;
        update_mode(cpu);
        return Ok(rflags);
    }
    let lm = long_mode(cpu);
    let old_cpl = cpl(cpu);
    let ip = st.pop(cpu, mem, n)? & mask_of(n);
    let cs_sel = st.pop(cpu, mem, n)? as u16;
    if cs_sel & 0xfffc == 0 {
        return Err(gp0().into());
    }
    let cs = read_descriptor(cpu, mem, cs_sel)?;
    let rpl = (cs_sel & 3) as u8;
    if !cs.is_code() || (lm && cs.l() && cs.db()) || rpl < old_cpl {
        return Err(gp(cs_sel).into());
    }
    if (cs.is_conforming() && cs.dpl() > rpl) || (!cs.is_conforming() && cs.dpl() != rpl) {
        return Err(gp(cs_sel).into());
    }
    if !cs.present() {
        return Err(np(cs_sel).into());
    }
    let to64 = lm && cs.l();
    st.sp = st.sp.wrapping_add(release) & st.mask;
    if rpl == old_cpl {
        check_ip(&cs, to64, ip)?;
        let rsp = st.rsp(cpu.gpr[4]);
        commit_cs(cpu, mem, cs, cs_sel, rpl, ip)?;
        cpu.gpr[4] = rsp;
        return Ok(rflags);
    }
    // Return to an outer privilege level: the caller's SS:ESP follow the parameters.
    let sp = st.pop(cpu, mem, n)?;
    let ss_sel = st.pop(cpu, mem, n)? as u16;
    let ss = if ss_sel & 0xfffc == 0 {
        // Only a return to 64-bit code below ring 3 may leave SS null.
        if !to64 || rpl == 3 {
            return Err(gp0().into());
        }
        None
    } else {
        Some(check_stack(
            cpu,
            mem,
            ss_sel,
            rpl,
            Exception::GeneralProtection,
        )?)
    };
    check_ip(&cs, to64, ip)?;
    let ss_wide = to64 || ss.is_some_and(|d| d.db());
    let old_rsp = cpu.gpr[4];
    let mut rsp = if ss_wide {
        sp
    } else {
        (old_rsp & !0xffff) | (sp & 0xffff)
    };
    // The parameters are released on the caller's stack too, at its own width.
    rsp = if to64 {
        rsp.wrapping_add(release)
    } else if ss_wide {
        rsp.wrapping_add(release) & 0xffff_ffff
    } else {
        (rsp & !0xffff) | (rsp.wrapping_add(release) & 0xffff)
    };
    let new_ss = match ss {
        Some(mut d) => {
            segment::set_accessed(cpu, mem, &mut d)?;
            d.to_segment(ss_sel)
        }
        None => Segment {
            base: 0,
            limit: 0,
            selector: ss_sel,
            attrs: u16::from(rpl) << 5,
        },
    };
    commit_cs(cpu, mem, cs, cs_sel, rpl, ip)?;
    cpu.seg[SegReg::Ss as usize] = new_ss;
    cpu.gpr[4] = rsp;
    null_inaccessible(cpu, rpl);
    update_mode(cpu);
    Ok(rflags)
}

/// After a return to the outer level `new_cpl`: ES, DS, FS and GS holding a data or
/// non-conforming code segment with DPL < `new_cpl` become null (selector 0, unusable),
/// so the less privileged code cannot use them. The base is kept, as the IRET code does.
pub fn null_inaccessible(cpu: &mut CpuState, new_cpl: u8) {
    for s in [SegReg::Es, SegReg::Ds, SegReg::Fs, SegReg::Gs] {
        let a = cpu.seg[s as usize].attrs;
        let dpl = ((a >> 5) & 3) as u8;
        let conforming_code = a & 0x1c == 0x1c;
        if a & SEG_P != 0 && !conforming_code && dpl < new_cpl {
            cpu.seg[s as usize] = Segment {
                selector: 0,
                attrs: 0,
                ..cpu.seg[s as usize]
            };
        }
    }
}

#[cfg(test)]
mod tests;
