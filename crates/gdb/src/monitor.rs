//! `monitor` commands: what the register packets do not carry, and the physical view of
//! memory.

use std::fmt::Write as _;

use gdbstub::target::ext::monitor_cmd::{outputln, ConsoleOutput, MonitorCmd};

use crane86_runtime::{Gpr, SegReg, Segment};

use crate::mem::{self, AddrSpace};
use crate::regs;
use crate::target::Debugger;

const HELP: &str = "crane86 monitor commands:
  info registers      every register: general, RFLAGS, segments with their caches,
                      descriptor tables, control, debug and model-specific registers
  phys [on|off]       memory packets (x, set, dump...) use physical addresses (on) or
                      linear addresses through the guest's page tables (off, the default)
  translate ADDR      the physical address of linear address ADDR
  help                this text";

impl MonitorCmd for Debugger<'_> {
    fn handle_monitor_cmd(
        &mut self,
        cmd: &[u8],
        mut out: ConsoleOutput<'_>,
    ) -> Result<(), Self::Error> {
        let cmd = String::from_utf8_lossy(cmd);
        let words: Vec<&str> = cmd.split_whitespace().collect();
        match words.as_slice() {
            ["info", "registers"] | ["info", "reg"] | ["regs"] => {
                outputln!(out, "{}", self.register_dump());
            }
            ["phys"] => outputln!(out, "phys {}", on_off(self.space)),
            ["phys", "on"] => {
                self.space = AddrSpace::Physical;
                outputln!(out, "memory accesses use physical addresses");
            }
            ["phys", "off"] => {
                self.space = AddrSpace::Linear;
                outputln!(out, "memory accesses use linear addresses");
            }
            ["translate", addr] => match parse(addr) {
                Some(a) => match mem::to_phys(self.m, AddrSpace::Linear, a) {
                    Some(p) => outputln!(out, "linear {a:#x} -> physical {p:#x}"),
                    None => outputln!(out, "linear {a:#x} is not mapped"),
                },
                None => outputln!(out, "translate: `{addr}` is not an address"),
            },
            ["help"] | [] => outputln!(out, "{HELP}"),
            _ => outputln!(out, "unknown command `{cmd}`\n{HELP}"),
        }
        Ok(())
    }
}

fn on_off(space: AddrSpace) -> &'static str {
    match space {
        AddrSpace::Physical => "on",
        AddrSpace::Linear => "off",
    }
}

/// Decimal or 0x-prefixed hexadecimal.
fn parse(s: &str) -> Option<u64> {
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => s.parse().ok(),
    }
}

fn segment(out: &mut String, name: &str, s: &Segment) {
    let _ = writeln!(
        out,
        "{name:<4} sel={:04x} base={:016x} limit={:08x} attrs={:04x}",
        s.selector, s.base, s.limit, s.attrs
    );
}

impl Debugger<'_> {
    /// Every register of the CPU, as `monitor info registers` prints it (in the spirit of
    /// QEMU's `info registers`).
    pub(crate) fn register_dump(&self) -> String {
        let cpu = &self.m.cpu;
        let mut o = String::new();
        for (i, r) in Gpr::ALL.iter().enumerate() {
            let _ = write!(o, "{:<3}={:016x}", r.name(), cpu.gpr[i]);
            o.push_str(if i % 4 == 3 { "\n" } else { " " });
        }
        let _ = writeln!(
            o,
            "rip={:016x} rflags={:016x} mode={:?} cpl={}",
            cpu.rip,
            regs::rflags(cpu),
            cpu.mode,
            crane86_runtime::segment::cpl(cpu)
        );
        for (name, s) in [
            ("es", SegReg::Es),
            ("cs", SegReg::Cs),
            ("ss", SegReg::Ss),
            ("ds", SegReg::Ds),
            ("fs", SegReg::Fs),
            ("gs", SegReg::Gs),
        ] {
            segment(&mut o, name, &cpu.seg[s as usize]);
        }
        segment(&mut o, "ldtr", &cpu.ldtr);
        segment(&mut o, "tr", &cpu.tr);
        let _ = writeln!(
            o,
            "gdtr base={:016x} limit={:04x}\nidtr base={:016x} limit={:04x}",
            cpu.gdtr.base, cpu.gdtr.limit, cpu.idtr.base, cpu.idtr.limit
        );
        let _ = writeln!(
            o,
            "cr0={:016x} cr2={:016x} cr3={:016x} cr4={:016x}\ncr8={:016x} efer={:016x} xcr0={:016x}",
            cpu.cr0, cpu.cr2, cpu.cr3, cpu.cr4, cpu.cr8, cpu.efer, cpu.xcr0
        );
        let _ = writeln!(
            o,
            "dr0={:016x} dr1={:016x} dr2={:016x} dr3={:016x}\ndr6={:016x} dr7={:016x}",
            cpu.dr[0], cpu.dr[1], cpu.dr[2], cpu.dr[3], cpu.dr[6], cpu.dr[7]
        );
        let msr = &cpu.msr;
        let _ = writeln!(
            o,
            "kernel_gs_base={:016x} star={:016x} lstar={:016x}\ncstar={:016x} sfmask={:016x} apic_base={:016x}",
            msr.kernel_gs_base, msr.star, msr.lstar, msr.cstar, msr.sfmask, msr.apic_base
        );
        let x87 = &cpu.fpu.x87;
        let _ = write!(
            o,
            "fcw={:04x} fsw={:04x} ftw={:04x} mxcsr={:08x} retired={}",
            x87.fcw, x87.fsw, x87.ftw, cpu.fpu.mxcsr, cpu.retired
        );
        o
    }
}
