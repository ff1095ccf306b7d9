//! Guest memory as the debugger sees it: linear addresses through the guest's page tables
//! (without the walk's side effects), or physical addresses.
//!
//! Only RAM is read or written: device registers can have side effects on read, and a
//! debugger looking at memory must not change the machine. Writes go through
//! [`PhysMem::write_phys`], which records stores to pages holding translated code, so the
//! run loop drops those blocks before the guest runs again (GDB writing an instruction
//! takes effect, in both tiers).

use crane86_machine::Machine;
use crane86_runtime::paging::{debug_translate, WalkRegs};
use crane86_runtime::{CpuMode, PhysMem};

/// How the addresses GDB sends are read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AddrSpace {
    /// Linear addresses, translated through the guest's current page tables.
    #[default]
    Linear,
    /// Physical addresses (`monitor phys on`).
    Physical,
}

/// The physical address of `addr` in `space`, if it is mapped.
pub fn to_phys(m: &mut Machine, space: AddrSpace, addr: u64) -> Option<u64> {
    match space {
        AddrSpace::Physical => Some(addr),
        AddrSpace::Linear => {
            let linear = if m.cpu.mode == CpuMode::Long64 {
                addr
            } else {
                addr & 0xffff_ffff
            };
            debug_translate(&mut m.mem, &WalkRegs::from_cpu(&m.cpu), linear)
        }
    }
}

/// Bytes from `addr` to the end of its 4 KiB page (at least 1).
fn page_room(addr: u64) -> usize {
    (0x1000 - (addr & 0xfff)) as usize
}

/// Reads as much of `buf` as is mapped RAM from `addr` on; returns how many bytes were
/// read (fewer than asked where the first unmapped or non-RAM byte stops it).
pub fn read(m: &mut Machine, space: AddrSpace, addr: u64, buf: &mut [u8]) -> usize {
    let mut done = 0;
    while done < buf.len() {
        let at = addr.wrapping_add(done as u64);
        let n = page_room(at).min(buf.len() - done);
        let Some(phys) = to_phys(m, space, at) else {
            break;
        };
        if !ram(&m.mem, phys, n) {
            break;
        }
        let start = phys as usize;
        buf[done..done + n].copy_from_slice(&m.mem.ram()[start..start + n]);
        done += n;
    }
    done
}

/// Writes `data` at `addr`; false (and nothing written) unless every byte is mapped RAM.
pub fn write(m: &mut Machine, space: AddrSpace, addr: u64, data: &[u8]) -> bool {
    let mut pieces = Vec::new();
    let mut done = 0;
    while done < data.len() {
        let at = addr.wrapping_add(done as u64);
        let n = page_room(at).min(data.len() - done);
        match to_phys(m, space, at) {
            Some(phys) if ram(&m.mem, phys, n) => pieces.push((phys, done, n)),
            _ => return false,
        }
        done += n;
    }
    for (phys, from, n) in pieces {
        for (i, &b) in data[from..from + n].iter().enumerate() {
            m.mem.write_phys(phys + i as u64, 1, u64::from(b));
        }
    }
    true
}

fn ram(mem: &PhysMem, phys: u64, n: usize) -> bool {
    mem.is_ram(phys, n as u64)
}
