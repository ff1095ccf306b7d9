//! Making a crane86 machine an exact copy of QEMU's: the registers of the `g` packet, the
//! hidden state only QEMU's `info registers` shows (descriptor caches, GDTR/IDTR, LDTR, TR,
//! control registers, EFER), and all of guest RAM (through `pmemsave`).

use crane86_machine::Machine;
use crane86_runtime::{segment, DescriptorTable, SegReg, Segment};

use crate::qemu::{Qemu, QemuError};
use crate::state::{adopt_registers, scope_of};

/// The system state `info registers` prints that the `g` packet lacks.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SystemRegs {
    /// ES CS SS DS FS GS (crane86's order), with their descriptor caches.
    pub segs: [Segment; 6],
    /// LDTR.
    pub ldtr: Segment,
    /// TR.
    pub tr: Segment,
    /// GDTR.
    pub gdtr: DescriptorTable,
    /// IDTR.
    pub idtr: DescriptorTable,
    /// CR0, CR2, CR3, CR4.
    pub cr: [u64; 4],
    /// EFER.
    pub efer: u64,
    /// The x87 tag word as QEMU prints it (abridged: bit i set when physical register i is
    /// not empty).
    pub ftw_abridged: u8,
}

/// QEMU prints a descriptor cache's flags as the descriptor's high dword (type, S, DPL, P
/// in bits 8..15; AVL, L, D/B, G in bits 20..23); crane86 keeps them as VMX does.
fn attrs_of_qemu_flags(flags: u64) -> u16 {
    (((flags >> 8) & 0xff) | (((flags >> 20) & 0xf) << 12)) as u16
}

fn hex_field(s: &str) -> Option<u64> {
    u64::from_str_radix(s, 16).ok()
}

/// Parses QEMU's `info registers` (32- and 64-bit layouts).
pub fn parse_info_registers(text: &str) -> Option<SystemRegs> {
    let mut r = SystemRegs::default();
    let mut seen = 0u32;
    for line in text.lines() {
        let Some(head) = line.get(..4) else {
            continue;
        };
        let rest: Vec<&str> = line[4..].split_whitespace().collect();
        let seg = |rest: &[&str]| -> Option<Segment> {
            Some(Segment {
                selector: hex_field(rest.first()?)? as u16,
                base: hex_field(rest.get(1)?)?,
                limit: hex_field(rest.get(2)?)? as u32,
                attrs: attrs_of_qemu_flags(hex_field(rest.get(3)?)?),
            })
        };
        let table = |rest: &[&str]| -> Option<DescriptorTable> {
            Some(DescriptorTable {
                base: hex_field(rest.first()?)?,
                limit: hex_field(rest.get(1)?)? as u16,
            })
        };
        let index = match head {
            "ES =" => Some(SegReg::Es),
            "CS =" => Some(SegReg::Cs),
            "SS =" => Some(SegReg::Ss),
            "DS =" => Some(SegReg::Ds),
            "FS =" => Some(SegReg::Fs),
            "GS =" => Some(SegReg::Gs),
            _ => None,
        };
        if let Some(i) = index {
            r.segs[i as usize] = seg(&rest)?;
            seen |= 1 << (i as u32);
            continue;
        }
        match head {
            "LDT=" => r.ldtr = seg(&rest)?,
            "TR =" => r.tr = seg(&rest)?,
            "GDT=" => r.gdtr = table(&rest)?,
            "IDT=" => r.idtr = table(&rest)?,
            _ => {}
        }
        for token in line.split_whitespace() {
            let Some((name, value)) = token.split_once('=') else {
                continue;
            };
            let Some(v) = hex_field(value) else {
                continue;
            };
            match name {
                "CR0" => r.cr[0] = v,
                "CR2" => r.cr[1] = v,
                "CR3" => r.cr[2] = v,
                "CR4" => r.cr[3] = v,
                "EFER" => {
                    r.efer = v;
                    seen |= 1 << 8;
                }
                "FTW" => r.ftw_abridged = v as u8,
                _ => {}
            }
        }
    }
    // All six segments and EFER: anything less is not the output we know.
    (seen == 0x13f).then_some(r)
}

/// Makes `m` a copy of QEMU's machine as it stands: RAM, registers, system registers. The
/// translation cache and TLB are emptied.
pub fn clone_from_qemu(qemu: &mut Qemu, m: &mut Machine) -> Result<(), QemuError> {
    let sys = system_regs(qemu)?;
    copy_ram(qemu, m)?;
    let cpu = &mut m.cpu;
    cpu.seg = sys.segs;
    cpu.ldtr = sys.ldtr;
    cpu.tr = sys.tr;
    cpu.gdtr = sys.gdtr;
    cpu.idtr = sys.idtr;
    cpu.cr0 = sys.cr[0];
    cpu.cr2 = sys.cr[1];
    cpu.cr3 = sys.cr[2];
    cpu.cr4 = sys.cr[3];
    cpu.efer = sys.efer;
    segment::update_mode(cpu);
    let scope = scope_of(cpu, true);
    let state = qemu.state(scope)?;
    adopt_registers(cpu, &state, u64::MAX);
    adopt_fpu(cpu, &state, sys.ftw_abridged);
    segment::update_mode(cpu);
    cpu.flush_tlb();
    let m_mem = &mut m.mem;
    m.cache.flush(m_mem);
    Ok(())
}

/// Takes QEMU's x87 and SSE registers (FCW, FSW, ST0-7, the tags, XMM, MXCSR).
fn adopt_fpu(cpu: &mut crane86_runtime::CpuState, q: &crate::state::ArchState, ftw: u8) {
    let x = &mut cpu.fpu.x87;
    if let Some(v) = q.get("fctrl") {
        x.fcw = v as u16;
    }
    if let Some(v) = q.get("fstat") {
        x.fsw = v as u16;
    }
    let top = usize::from((x.fsw >> 11) & 7);
    for i in 0..8 {
        if let Some(v) = q.get(["st0", "st1", "st2", "st3", "st4", "st5", "st6", "st7"][i]) {
            let b = v.to_le_bytes();
            let mut ten = [0u8; 10];
            ten.copy_from_slice(&b[..10]);
            x.regs[(top + i) & 7] = crane86_fpu::state::F80::from_bytes(&ten);
        }
    }
    x.ftw = crane86_fpu::x87::full_tag(x, ftw);
    cpu.fpu.pending = cpu.fpu.x87;
    for i in 0..16 {
        if let Some(v) = q.get(&format!("xmm{i}")) {
            cpu.fpu.set_xmm128(i, v);
        }
    }
    if let Some(v) = q.get("mxcsr") {
        cpu.fpu.mxcsr = v as u32;
    }
}

/// QEMU's system registers now (`info registers`).
pub fn system_regs(qemu: &mut Qemu) -> Result<SystemRegs, QemuError> {
    let text = qemu.rsp.monitor("info registers")?;
    parse_info_registers(&text).ok_or_else(|| {
        crate::rsp::RspError::Reply {
            request: "qRcmd,info registers".into(),
            reply: text.lines().take(3).collect::<Vec<_>>().join(" / "),
        }
        .into()
    })
}

/// Copies all of guest RAM from QEMU (its `pmemsave` monitor command writes it to a file;
/// far faster than memory packets).
fn copy_ram(qemu: &mut Qemu, m: &mut Machine) -> Result<(), QemuError> {
    let size = m.mem.ram_size();
    let name = crate::qemu::temp_name("ram.bin");
    let path = std::env::temp_dir().join(&name);
    let out = qemu.rsp.monitor(&format!("pmemsave 0 {size:#x} {name}"))?;
    let ram = std::fs::read(&path);
    let _ = std::fs::remove_file(&path);
    match ram {
        Ok(ram) if ram.len() as u64 == size => {
            m.mem.ram_mut().copy_from_slice(&ram);
            Ok(())
        }
        _ => Err(crate::rsp::RspError::Reply {
            request: "qRcmd,pmemsave".into(),
            reply: format!("no {size}-byte dump ({})", out.trim()),
        }
        .into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROTECTED: &str = "\
EAX=2badb002 EBX=00009500 ECX=00100020 EDX=00000511
EIP=00100020 EFL=00000006 [-----P-] CPL=0 II=0 A20=1 SMM=0 HLT=0
ES =0010 00000000 ffffffff 00cf9300 DPL=0 DS   [-WA]
CS =0008 00000000 ffffffff 00cf9a00 DPL=0 CS32 [-R-]
SS =0010 00000000 ffffffff 00cf9300 DPL=0 DS   [-WA]
DS =0010 00000000 ffffffff 00cf9300 DPL=0 DS   [-WA]
FS =0010 00000000 ffffffff 00cf9300 DPL=0 DS   [-WA]
GS =0010 00000000 ffffffff 00cf9300 DPL=0 DS   [-WA]
LDT=0000 00000000 0000ffff 00008200 DPL=0 LDT
TR =0000 00000000 0000ffff 00008b00 DPL=0 TSS32-busy
GDT=     000c02b8 00000027
IDT=     00000000 000003ff
CR0=00000011 CR2=00000000 CR3=00000000 CR4=00000000
EFER=0000000000000000
";

    #[test]
    fn info_registers_of_protected_mode_parse() {
        let r = parse_info_registers(PROTECTED).unwrap();
        let cs = r.segs[SegReg::Cs as usize];
        assert_eq!((cs.selector, cs.base, cs.limit), (8, 0, 0xffff_ffff));
        // P DPL0 S code/readable/accessed... and G, D/B.
        assert_eq!(
            cs.attrs,
            0x9a | crane86_runtime::state::SEG_G | crane86_runtime::state::SEG_DB
        );
        assert_eq!(r.gdtr.base, 0xc02b8);
        assert_eq!(r.gdtr.limit, 0x27);
        assert_eq!(r.idtr.limit, 0x3ff);
        assert_eq!(r.cr[0], 0x11);
        assert_eq!(r.tr.attrs & 0xff, 0x8b);
    }

    #[test]
    fn truncated_output_is_refused() {
        assert!(parse_info_registers("CR0=00000011").is_none());
    }
}
