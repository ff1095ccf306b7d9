//! The architectural state both sides are compared on, read from crane86's `CpuState` and
//! from QEMU's register packet, and the comparison itself.

use crane86_runtime::{flags as fl, CpuMode, CpuState};

use crate::layout::Layout;

/// GDB's names of the general registers (x86-64, i386), in crane86's (the encoding's)
/// order.
pub(crate) const GPR_NAMES: [[&str; 2]; 16] = [
    ["rax", "eax"],
    ["rcx", "ecx"],
    ["rdx", "edx"],
    ["rbx", "ebx"],
    ["rsp", "esp"],
    ["rbp", "ebp"],
    ["rsi", "esi"],
    ["rdi", "edi"],
    ["r8", ""],
    ["r9", ""],
    ["r10", ""],
    ["r11", ""],
    ["r12", ""],
    ["r13", ""],
    ["r14", ""],
    ["r15", ""],
];

/// Segment registers in crane86's order (ES CS SS DS FS GS) with GDB's names.
const SEGS: [(&str, &str); 6] = [
    ("es", "es_base"),
    ("cs", "cs_base"),
    ("ss", "ss_base"),
    ("ds", "ds_base"),
    ("fs", "fs_base"),
    ("gs", "gs_base"),
];

/// One compared value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Field {
    /// GDB's name of the register (`rax`, `eflags`, `cs_base`, `st0`, ...).
    pub name: &'static str,
    /// Its value (x87 registers: the 80-bit image; XMM: 128 bits).
    pub value: u128,
    /// Width in hex digits, for printing.
    pub digits: usize,
}

/// The state compared after every step, as a list of fields in a fixed order. A side that
/// cannot report a field leaves it out; only fields both sides have are compared.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ArchState {
    /// The fields.
    pub fields: Vec<Field>,
}

/// Which parts of the state a comparison covers.
#[derive(Clone, Copy, Debug, Default)]
pub struct Scope {
    /// Also x87 (ST0-7, FCW, FSW) and SSE (XMM, MXCSR) registers.
    pub fpu: bool,
    /// 64-bit mode: compare whole registers; otherwise their low 32 bits (QEMU reports
    /// the upper halves as zero outside 64-bit mode; the SDM leaves them undefined).
    pub long: bool,
}

impl ArchState {
    fn push(&mut self, name: &'static str, value: u128, digits: usize) {
        self.fields.push(Field {
            name,
            value,
            digits,
        });
    }

    /// The value of field `name`.
    pub fn get(&self, name: &str) -> Option<u128> {
        self.fields.iter().find(|f| f.name == name).map(|f| f.value)
    }

    /// crane86's state.
    pub fn of_crane86(cpu: &CpuState, scope: Scope) -> ArchState {
        let mut s = ArchState::default();
        let w = |v: u64| -> u128 {
            if scope.long {
                u128::from(v)
            } else {
                u128::from(v & 0xffff_ffff)
            }
        };
        s.push("rip", w(cpu.rip), 16);
        for (i, names) in GPR_NAMES.iter().enumerate() {
            if scope.long || i < 8 {
                s.push(names[0], w(cpu.gpr[i]), 16);
            }
        }
        s.push(
            "eflags",
            u128::from(crane86_translator::interp::rflags(cpu) & 0xffff_ffff),
            8,
        );
        for (i, (sel, base)) in SEGS.iter().enumerate() {
            s.push(sel, u128::from(cpu.seg[i].selector), 4);
            s.push(base, u128::from(cpu.seg[i].base), 16);
        }
        for (i, names) in SYSTEM_SEG_NAMES.iter().enumerate() {
            push_cache(&mut s, names, &cpu.seg[i]);
        }
        push_tables(&mut s, &cpu.ldtr, &cpu.tr, &cpu.gdtr, &cpu.idtr);
        s.push("cr0", u128::from(cpu.cr0), 8);
        s.push("cr2", u128::from(cpu.cr2), 16);
        s.push("cr3", u128::from(cpu.cr3), 16);
        s.push("cr4", u128::from(cpu.cr4), 8);
        s.push("efer", u128::from(cpu.efer), 8);
        if scope.fpu {
            let x = &cpu.fpu.x87;
            let top = usize::from((x.fsw >> 11) & 7);
            for (i, name) in ST_NAMES.iter().enumerate() {
                let b = x.regs[(top + i) & 7].to_bytes();
                let mut v = [0u8; 16];
                v[..10].copy_from_slice(&b);
                s.push(name, u128::from_le_bytes(v), 20);
            }
            s.push("fctrl", u128::from(x.fcw), 4);
            s.push("fstat", u128::from(x.fsw), 4);
            let n = if scope.long { 16 } else { 8 };
            for (i, name) in XMM_NAMES.iter().enumerate().take(n) {
                s.push(name, cpu.fpu.xmm128(i), 32);
            }
            s.push("mxcsr", u128::from(cpu.fpu.mxcsr), 8);
        }
        s
    }

    /// QEMU's state from its `g` packet, laid out as its target description says.
    pub fn of_qemu(layout: &Layout, regs: &[u8], scope: Scope) -> ArchState {
        let mut s = ArchState::default();
        let add = |s: &mut ArchState, name: &'static str, alt: &str, digits: usize| {
            let v = layout.value(regs, name).or_else(|| {
                if alt.is_empty() {
                    None
                } else {
                    layout.value(regs, alt)
                }
            });
            if let Some(v) = v {
                s.push(name, v, digits);
            }
        };
        add(&mut s, "rip", "eip", 16);
        for (i, names) in GPR_NAMES.iter().enumerate() {
            if scope.long || i < 8 {
                add(&mut s, names[0], names[1], 16);
            }
        }
        add(&mut s, "eflags", "", 8);
        for (sel, base) in SEGS {
            add(&mut s, sel, "", 4);
            add(&mut s, base, "", 16);
        }
        for (name, digits) in [
            ("cr0", 8),
            ("cr2", 16),
            ("cr3", 16),
            ("cr4", 8),
            ("efer", 8),
        ] {
            add(&mut s, name, "", digits);
        }
        if scope.fpu {
            for name in ST_NAMES {
                add(&mut s, name, "", 20);
            }
            add(&mut s, "fctrl", "", 4);
            add(&mut s, "fstat", "", 4);
            let n = if scope.long { 16 } else { 8 };
            for name in XMM_NAMES.iter().take(n) {
                add(&mut s, name, "", 32);
            }
            add(&mut s, "mxcsr", "", 8);
        }
        if !scope.long {
            for f in &mut s.fields {
                if f.name == "rip" || GPR_NAMES.iter().any(|n| n[0] == f.name) {
                    f.value &= 0xffff_ffff;
                }
            }
        }
        s
    }

    /// Adds what only QEMU's `info registers` shows: the CS/SS/DS/ES bases, every
    /// segment's limit and attributes, LDTR, TR, GDTR and IDTR.
    pub fn add_system(&mut self, sys: &crate::sync::SystemRegs) {
        for (i, (_, base)) in SEGS.iter().enumerate() {
            if self.get(base).is_none() {
                self.push(base, u128::from(sys.segs[i].base), 16);
            }
        }
        for (i, names) in SYSTEM_SEG_NAMES.iter().enumerate() {
            push_cache(self, names, &sys.segs[i]);
        }
        push_tables(self, &sys.ldtr, &sys.tr, &sys.gdtr, &sys.idtr);
    }

    /// The fields that differ, as (name, QEMU's value, crane86's value); `self` is QEMU's
    /// state. `eflags_ignored` are EFLAGS bits not compared (the SDM leaves them undefined
    /// after the instruction that just ran).
    pub fn differences(&self, crane: &ArchState, eflags_ignored: u64) -> Vec<(Field, Field)> {
        let mut out = Vec::new();
        for q in &self.fields {
            let Some(c) = crane.fields.iter().find(|c| c.name == q.name) else {
                continue;
            };
            let mask = if q.name == "eflags" {
                !u128::from(eflags_ignored)
            } else {
                u128::MAX
            };
            if q.value & mask != c.value & mask {
                out.push((*q, *c));
            }
        }
        out
    }
}

/// Names of the descriptor-cache fields, per segment register in crane86's order.
const SYSTEM_SEG_NAMES: [[&str; 2]; 6] = [
    ["es_limit", "es_attr"],
    ["cs_limit", "cs_attr"],
    ["ss_limit", "ss_attr"],
    ["ds_limit", "ds_attr"],
    ["fs_limit", "fs_attr"],
    ["gs_limit", "gs_attr"],
];

/// A descriptor cache's limit and attributes. An unusable segment (P clear: a null
/// selector loaded, or one IRET nulled) shows as zeros: what else its cache holds is
/// invisible to software, and CPUs and QEMU keep different things there. The accessed bit
/// of code and data segments is left out: QEMU does not set it on every load (far RET and
/// IRET leave it as the descriptor had it), where the SDM sets it on each.
fn push_cache(s: &mut ArchState, names: &[&'static str; 2], seg: &crane86_runtime::Segment) {
    let usable = seg.attrs & crane86_runtime::state::SEG_P != 0;
    let accessed = if seg.attrs & 0x10 != 0 { 1 } else { 0 };
    let (limit, attrs) = if usable {
        (seg.limit, seg.attrs & !accessed)
    } else {
        (0, 0)
    };
    s.push(names[0], u128::from(limit), 8);
    s.push(names[1], u128::from(attrs), 4);
}

fn push_tables(
    s: &mut ArchState,
    ldtr: &crane86_runtime::Segment,
    tr: &crane86_runtime::Segment,
    gdtr: &crane86_runtime::DescriptorTable,
    idtr: &crane86_runtime::DescriptorTable,
) {
    s.push("ldtr", u128::from(ldtr.selector), 4);
    s.push("ldtr_base", u128::from(ldtr.base), 16);
    s.push("tr", u128::from(tr.selector), 4);
    s.push("tr_base", u128::from(tr.base), 16);
    s.push("gdtr_base", u128::from(gdtr.base), 16);
    s.push("gdtr_limit", u128::from(gdtr.limit), 4);
    s.push("idtr_base", u128::from(idtr.base), 16);
    s.push("idtr_limit", u128::from(idtr.limit), 4);
}

const ST_NAMES: [&str; 8] = ["st0", "st1", "st2", "st3", "st4", "st5", "st6", "st7"];
const XMM_NAMES: [&str; 16] = [
    "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10",
    "xmm11", "xmm12", "xmm13", "xmm14", "xmm15",
];

/// The scope that fits crane86's current mode.
pub fn scope_of(cpu: &CpuState, fpu: bool) -> Scope {
    Scope {
        fpu,
        long: cpu.mode == CpuMode::Long64,
    }
}

/// Copies QEMU's general registers, RIP and the given EFLAGS bits into crane86: the
/// resynchronisation after an explained difference (a device input, a time stamp, a CPU
/// model value, an undefined flag).
pub fn adopt_registers(cpu: &mut CpuState, qemu: &ArchState, eflags_bits: u64) {
    if let Some(v) = qemu.get("rip") {
        cpu.rip = keep_upper(cpu.rip, v as u64, cpu.mode);
    }
    for (i, names) in GPR_NAMES.iter().enumerate() {
        if let Some(v) = qemu.get(names[0]) {
            cpu.gpr[i] = keep_upper(cpu.gpr[i], v as u64, cpu.mode);
        }
    }
    if let Some(v) = qemu.get("eflags") {
        let now = crane86_translator::interp::rflags(cpu);
        let new = (now & !eflags_bits) | (v as u64 & eflags_bits);
        cpu.cc = crane86_runtime::LazyFlags::from_eflags(new);
        cpu.rflags = (new & !fl::ARITH) | fl::FIXED1;
    }
}

/// Outside 64-bit mode QEMU reports 32 bits of a 64-bit register: the upper half stays
/// crane86's own.
fn keep_upper(old: u64, new: u64, mode: CpuMode) -> u64 {
    if mode == CpuMode::Long64 {
        new
    } else {
        (old & !0xffff_ffff) | (new & 0xffff_ffff)
    }
}

/// The EFLAGS bits of iced-x86's `RflagsBits` set (the arithmetic flags; iced numbers its
/// flags its own way).
pub fn eflags_of_iced(bits: u32) -> u64 {
    use iced_x86::RflagsBits as R;
    [
        (R::OF, fl::OF),
        (R::SF, fl::SF),
        (R::ZF, fl::ZF),
        (R::AF, fl::AF),
        (R::CF, fl::CF),
        (R::PF, fl::PF),
        (R::DF, fl::DF),
    ]
    .iter()
    .filter(|(r, _)| bits & r != 0)
    .fold(0, |acc, (_, f)| acc | f)
}
