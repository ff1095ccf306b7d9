//! The register set crane86 shows GDB, and its conversion to and from [`CpuState`].
//!
//! [`X86_64Crane86`] is gdbstub_arch's x86-64 core and SSE set (`X86_64_SSE`) plus what a
//! system debugger needs and that set lacks: the FS/GS bases (GDB's own
//! `org.gnu.gdb.i386.segments` feature, so `$fs_base` works as with a Linux process) and
//! KERNEL_GS_BASE, CR0, CR2, CR3, CR4, CR8 and EFER (a feature of our own, as QEMU's
//! gdbstub has them). GDB reads the layout from `target.xml`; the order of the `g` packet
//! is the order of that file.

use gdbstub::arch::{Arch, Registers};
use gdbstub_arch::x86::reg::X86_64CoreRegs;

use crane86_runtime::{flags as fl, CpuState, LazyFlags, SegReg};

/// The architecture crane86's stub speaks: x86-64 with SSE and the system registers.
pub enum X86_64Crane86 {}

impl Arch for X86_64Crane86 {
    type Usize = u64;
    type Registers = Regs;
    type RegId = ();
    type BreakpointKind = usize;

    fn target_description_xml() -> Option<&'static str> {
        Some(include_str!("target.xml"))
    }
}

/// Bytes of the core and SSE part of the `g` packet (gdbstub_arch's layout).
const CORE_BYTES: usize = 0x218;

/// The system registers after the core, in `target.xml`'s order.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SystemRegs {
    /// FS base.
    pub fs_base: u64,
    /// GS base.
    pub gs_base: u64,
    /// IA32_KERNEL_GS_BASE (what SWAPGS swaps in).
    pub k_gs_base: u64,
    /// CR0.
    pub cr0: u64,
    /// CR2.
    pub cr2: u64,
    /// CR3.
    pub cr3: u64,
    /// CR4.
    pub cr4: u64,
    /// CR8.
    pub cr8: u64,
    /// EFER.
    pub efer: u64,
}

impl SystemRegs {
    fn as_array(&self) -> [u64; 9] {
        [
            self.fs_base,
            self.gs_base,
            self.k_gs_base,
            self.cr0,
            self.cr2,
            self.cr3,
            self.cr4,
            self.cr8,
            self.efer,
        ]
    }

    fn from_array(a: [u64; 9]) -> SystemRegs {
        let [fs_base, gs_base, k_gs_base, cr0, cr2, cr3, cr4, cr8, efer] = a;
        SystemRegs {
            fs_base,
            gs_base,
            k_gs_base,
            cr0,
            cr2,
            cr3,
            cr4,
            cr8,
            efer,
        }
    }
}

/// Everything in a `g` packet.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Regs {
    /// General, segment, x87 and SSE registers (gdbstub_arch's x86-64 set).
    pub core: X86_64CoreRegs,
    /// Segment bases and control registers.
    pub sys: SystemRegs,
}

impl Registers for Regs {
    type ProgramCounter = u64;

    fn pc(&self) -> u64 {
        self.core.rip
    }

    fn gdb_serialize(&self, mut write_byte: impl FnMut(Option<u8>)) {
        self.core.gdb_serialize(&mut write_byte);
        for v in self.sys.as_array() {
            for b in v.to_le_bytes() {
                write_byte(Some(b));
            }
        }
    }

    fn gdb_deserialize(&mut self, bytes: &[u8]) -> Result<(), ()> {
        self.core
            .gdb_deserialize(bytes.get(..CORE_BYTES).ok_or(())?)?;
        let mut sys = [0u64; 9];
        let rest = bytes.get(CORE_BYTES..CORE_BYTES + 72).ok_or(())?;
        for (v, chunk) in sys.iter_mut().zip(rest.chunks_exact(8)) {
            *v = u64::from_le_bytes(chunk.try_into().map_err(|_| ())?);
        }
        self.sys = SystemRegs::from_array(sys);
        Ok(())
    }
}

/// GDB's general-register order (rax, rbx, rcx, rdx, rsi, rdi, rbp, rsp, r8-r15) as indices
/// into `CpuState::gpr`, which follows the instruction encoding (rax, rcx, rdx, rbx, rsp,
/// rbp, rsi, rdi, r8-r15).
const GDB_GPR: [usize; 16] = [0, 3, 1, 2, 6, 7, 5, 4, 8, 9, 10, 11, 12, 13, 14, 15];

/// GDB's segment order (cs, ss, ds, es, fs, gs).
const GDB_SEG: [SegReg; 6] = [
    SegReg::Cs,
    SegReg::Ss,
    SegReg::Ds,
    SegReg::Es,
    SegReg::Fs,
    SegReg::Gs,
];

/// The architectural RFLAGS of `cpu` (its arithmetic flags live in the lazy record).
pub fn rflags(cpu: &CpuState) -> u64 {
    crane86_translator::interp::rflags(cpu)
}

/// Sets RFLAGS: the arithmetic flags into the lazy record, the rest into `cpu.rflags`, as
/// interrupt delivery does.
pub fn set_rflags(cpu: &mut CpuState, v: u64) {
    cpu.cc = LazyFlags::from_eflags(v);
    cpu.rflags = (v & !fl::ARITH) | fl::FIXED1;
}

/// The registers GDB sees for `cpu`.
pub fn read(cpu: &CpuState) -> Regs {
    let mut r = Regs::default();
    let c = &mut r.core;
    for (i, &g) in GDB_GPR.iter().enumerate() {
        c.regs[i] = cpu.gpr[g];
    }
    c.rip = cpu.rip;
    c.eflags = rflags(cpu) as u32;
    let sel = |s: SegReg| u32::from(cpu.seg[s as usize].selector);
    c.segments.cs = sel(SegReg::Cs);
    c.segments.ss = sel(SegReg::Ss);
    c.segments.ds = sel(SegReg::Ds);
    c.segments.es = sel(SegReg::Es);
    c.segments.fs = sel(SegReg::Fs);
    c.segments.gs = sel(SegReg::Gs);
    let x87 = &cpu.fpu.x87;
    let top = usize::from((x87.fsw >> 11) & 7);
    for (i, st) in c.st.iter_mut().enumerate() {
        *st = x87.regs[(top + i) % 8].to_bytes();
    }
    c.fpu.fctrl = u32::from(x87.fcw);
    c.fpu.fstat = u32::from(x87.fsw);
    c.fpu.ftag = u32::from(x87.ftw);
    c.fpu.fiseg = u32::from(x87.fcs);
    c.fpu.fioff = x87.fip as u32;
    c.fpu.foseg = u32::from(x87.fds);
    c.fpu.fooff = x87.fdp as u32;
    c.fpu.fop = u32::from(x87.fop);
    for (i, x) in c.xmm.iter_mut().enumerate() {
        *x = cpu.fpu.xmm128(i);
    }
    c.mxcsr = cpu.fpu.mxcsr;
    r.sys = SystemRegs {
        fs_base: cpu.seg[SegReg::Fs as usize].base,
        gs_base: cpu.seg[SegReg::Gs as usize].base,
        k_gs_base: cpu.msr.kernel_gs_base,
        cr0: cpu.cr0,
        cr2: cpu.cr2,
        cr3: cpu.cr3,
        cr4: cpu.cr4,
        cr8: cpu.cr8,
        efer: cpu.efer,
    };
    r
}

/// What [`write()`] could not apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused(pub &'static str);

/// Writes the registers GDB sent into `cpu`, changing only those that differ from
/// `old` (what GDB read before: a `G` packet carries every register, and reloading an
/// unchanged segment or control register could have side effects). Segment selectors
/// are loaded as the instruction set would (descriptor checks included) through
/// `load_segment`; CS can only be changed in real mode. Control registers and EFER
/// flush the TLB and recompute the CPU mode.
pub fn write(
    cpu: &mut CpuState,
    mem: &mut crane86_runtime::PhysMem,
    old: &Regs,
    new: &Regs,
) -> Result<(), Refused> {
    let (o, n) = (&old.core, &new.core);
    for (i, &g) in GDB_GPR.iter().enumerate() {
        cpu.gpr[g] = n.regs[i];
    }
    cpu.rip = n.rip;
    if o.eflags != n.eflags {
        // The upper half of RFLAGS is reserved: GDB's 32-bit view is the whole of it.
        set_rflags(cpu, u64::from(n.eflags));
        crane86_runtime::segment::update_mode(cpu);
    }
    let seg = |s: &gdbstub_arch::x86::reg::X86SegmentRegs| [s.cs, s.ss, s.ds, s.es, s.fs, s.gs];
    for ((&s, old_sel), new_sel) in GDB_SEG.iter().zip(seg(&o.segments)).zip(seg(&n.segments)) {
        if old_sel == new_sel {
            continue;
        }
        let selector = u16::try_from(new_sel).map_err(|_| Refused("a selector is 16 bits"))?;
        if s == SegReg::Cs {
            if cpu.cr0 & crane86_runtime::state::CR0_PE != 0 {
                return Err(Refused("CS can only be written in real mode"));
            }
            cpu.seg[s as usize] = crane86_runtime::Segment::real(selector);
            continue;
        }
        crane86_runtime::segment::load_segment(cpu, mem, s, selector)
            .map_err(|_| Refused("the segment load faults"))?;
    }
    let x87 = &mut cpu.fpu.x87;
    x87.fcw = n.fpu.fctrl as u16;
    x87.fsw = n.fpu.fstat as u16;
    x87.ftw = n.fpu.ftag as u16;
    x87.fcs = n.fpu.fiseg as u16;
    x87.fip = u64::from(n.fpu.fioff);
    x87.fds = n.fpu.foseg as u16;
    x87.fdp = u64::from(n.fpu.fooff);
    x87.fop = n.fpu.fop as u16;
    let top = usize::from((x87.fsw >> 11) & 7);
    for (i, st) in n.st.iter().enumerate() {
        x87.regs[(top + i) % 8] = crane86_fpu::state::F80::from_bytes(st);
    }
    for (i, x) in n.xmm.iter().enumerate() {
        cpu.fpu.set_xmm128(i, *x);
    }
    cpu.fpu.mxcsr = n.mxcsr & crane86_fpu::state::MXCSR_MASK;
    let s = &new.sys;
    cpu.seg[SegReg::Fs as usize].base = s.fs_base;
    cpu.seg[SegReg::Gs as usize].base = s.gs_base;
    cpu.msr.kernel_gs_base = s.k_gs_base;
    cpu.cr2 = s.cr2;
    cpu.cr8 = s.cr8 & 0xf;
    let paging = (old.sys.cr0, old.sys.cr3, old.sys.cr4, old.sys.efer);
    if paging != (s.cr0, s.cr3, s.cr4, s.efer) {
        cpu.cr0 = s.cr0;
        cpu.cr3 = s.cr3;
        cpu.cr4 = s.cr4;
        cpu.efer = s.efer;
        cpu.flush_tlb();
        crane86_runtime::segment::update_mode(cpu);
    }
    Ok(())
}
