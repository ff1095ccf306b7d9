//! Multiboot v1 (the protocol kvm-unit-tests and many small kernels use): find the header in
//! the first 8 KiB, load an ELF32 image's `PT_LOAD` segments (or the a.out-kludge ranges the
//! header gives), lay out the boot information (memory sizes, command line, modules, memory
//! map) in low memory, and enter in 32-bit protected mode with EAX = 0x2BADB002 and EBX = the
//! information's address.
//!
//! The ACPI and MP tables go where a BIOS leaves them (see [`super::firmware`]), as SeaBIOS
//! has left them under QEMU by the time its multiboot loader runs, unless the kernel, a
//! module or the information area occupies that BIOS area.
//!
//! ELF parsing is done here by hand: only the ELF32 file header and program headers are
//! needed, every offset is bounds-checked, and a general ELF crate would add more surface
//! than it saves.

use crane86_runtime::{CpuMode, CpuState, Gpr, PhysMem};

use super::firmware::{overlaps_firmware_area, place_firmware_tables};

/// The magic the image's header carries.
pub const HEADER_MAGIC: u32 = 0x1bad_b002;
/// The magic the loader leaves in EAX.
pub const BOOT_MAGIC: u32 = 0x2bad_b002;
/// The header must lie in the first 8 KiB, 4-byte aligned.
const HEADER_SEARCH: usize = 8192;
/// Header flag: the a.out-kludge address fields are valid.
const FLAG_AOUT_KLUDGE: u32 = 1 << 16;
/// Header flags the loader can honour: page-align modules (0), memory info (1). A required
/// flag it does not know (the low 16 bits are "required") makes the image unbootable.
const KNOWN_REQUIRED: u32 = 0b11;

/// Info flag: mem_lower/mem_upper are valid.
const INFO_MEM: u32 = 1 << 0;
/// Info flag: cmdline is valid.
const INFO_CMDLINE: u32 = 1 << 2;
/// Info flag: mods_count/mods_addr are valid.
const INFO_MODS: u32 = 1 << 3;
/// Info flag: mmap_length/mmap_addr are valid.
const INFO_MMAP: u32 = 1 << 6;

/// Where the loader puts the boot information (below the 640 KiB limit, above the BDA).
const INFO_ADDR: u64 = 0x9000;
/// Size of the information area: info struct, memory map, module list and strings.
const INFO_AREA: u64 = 0x7000;
/// Where in the information area the boot GDT goes (between the memory map and the module
/// list).
const GDT_OFF: usize = 0x1c0;

/// A module given to the kernel (the environment file of kvm-unit-tests, an initrd).
pub struct Module<'a> {
    /// Its bytes.
    pub data: &'a [u8],
    /// Its command line (string shown to the kernel).
    pub cmdline: &'a str,
}

/// What can go wrong, step by step.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MultibootError {
    /// No header with a valid checksum in the first 8 KiB.
    #[error("no multiboot v1 header in the first 8 KiB of the image")]
    NoHeader,
    /// The header asks for something this loader cannot do.
    #[error("the multiboot header requires unsupported features (flags {0:#x})")]
    UnsupportedFlags(u32),
    /// Neither a valid ELF32 image nor a.out-kludge addresses.
    #[error("the image is neither an ELF32 x86 executable nor a multiboot a.out-kludge image")]
    NotElf,
    /// An ELF header or program header points outside the file.
    #[error("the ELF image is truncated or corrupt: {0}")]
    BadElf(&'static str),
    /// The firmware tables could not be placed.
    #[error(transparent)]
    Firmware(#[from] super::firmware::FirmwareTablesError),
    /// A segment, module or the info area does not fit in guest RAM.
    #[error("{what} at {addr:#x} ({len} bytes) does not fit in {ram:#x} bytes of guest RAM")]
    DoesNotFit {
        /// What did not fit.
        what: &'static str,
        /// Where it should go.
        addr: u64,
        /// Its size.
        len: u64,
        /// RAM size.
        ram: u64,
    },
}

fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        b.get(off..off.checked_add(4)?)?.try_into().ok()?,
    ))
}

fn u16_at(b: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_le_bytes(
        b.get(off..off.checked_add(2)?)?.try_into().ok()?,
    ))
}

/// The parsed header: its offset in the file and its fields.
struct Header {
    offset: usize,
    flags: u32,
    header_addr: u32,
    load_addr: u32,
    load_end_addr: u32,
    bss_end_addr: u32,
    entry_addr: u32,
}

fn find_header(image: &[u8]) -> Result<Header, MultibootError> {
    let end = image.len().min(HEADER_SEARCH);
    (0..end.saturating_sub(11))
        .step_by(4)
        .find_map(|off| {
            let magic = u32_at(image, off)?;
            let flags = u32_at(image, off + 4)?;
            let sum = u32_at(image, off + 8)?;
            if magic != HEADER_MAGIC || magic.wrapping_add(flags).wrapping_add(sum) != 0 {
                return None;
            }
            let field = |i: usize| u32_at(image, off + 12 + 4 * i).unwrap_or(0);
            Some(Header {
                offset: off,
                flags,
                header_addr: field(0),
                load_addr: field(1),
                load_end_addr: field(2),
                bss_end_addr: field(3),
                entry_addr: field(4),
            })
        })
        .ok_or(MultibootError::NoHeader)
}

fn fits(mem: &PhysMem, what: &'static str, addr: u64, len: u64) -> Result<(), MultibootError> {
    if mem.is_ram(addr, len) {
        Ok(())
    } else {
        Err(MultibootError::DoesNotFit {
            what,
            addr,
            len,
            ram: mem.ram_size(),
        })
    }
}

fn write(
    mem: &mut PhysMem,
    what: &'static str,
    addr: u64,
    data: &[u8],
) -> Result<(), MultibootError> {
    fits(mem, what, addr, data.len() as u64)?;
    mem.load(addr, data)
        .map_err(|_| MultibootError::DoesNotFit {
            what,
            addr,
            len: data.len() as u64,
            ram: mem.ram_size(),
        })
}

fn zero(mem: &mut PhysMem, what: &'static str, addr: u64, len: u64) -> Result<(), MultibootError> {
    fits(mem, what, addr, len)?;
    mem.ram_mut()[addr as usize..(addr + len) as usize].fill(0);
    Ok(())
}

/// The physical range a kernel image occupies (the union of its pieces).
#[derive(Clone, Copy, Debug)]
struct Extent {
    start: u64,
    end: u64,
}

impl Extent {
    const EMPTY: Extent = Extent {
        start: u64::MAX,
        end: 0,
    };

    fn add(&mut self, start: u64, len: u64) {
        self.start = self.start.min(start);
        self.end = self.end.max(start + len);
    }

    fn overlaps(&self, start: u64, len: u64) -> bool {
        self.start < start + len && start < self.end
    }
}

/// Loads an ELF32 executable's PT_LOAD segments; returns the entry point.
fn load_elf(mem: &mut PhysMem, image: &[u8], extent: &mut Extent) -> Result<u32, MultibootError> {
    if image.get(0..4) != Some(b"\x7fELF".as_slice())
        || image.get(4) != Some(&1)
        || image.get(5) != Some(&1)
    {
        return Err(MultibootError::NotElf);
    }
    if u16_at(image, 18) != Some(3) {
        return Err(MultibootError::NotElf); // e_machine must be EM_386
    }
    let entry = u32_at(image, 24).ok_or(MultibootError::BadElf("header"))?;
    let phoff = u32_at(image, 28).ok_or(MultibootError::BadElf("header"))? as usize;
    let phentsize = u16_at(image, 42).ok_or(MultibootError::BadElf("header"))? as usize;
    let phnum = u16_at(image, 44).ok_or(MultibootError::BadElf("header"))? as usize;
    if phentsize < 32 {
        return Err(MultibootError::BadElf("program header size"));
    }
    for i in 0..phnum {
        let ph = phoff
            .checked_add(i * phentsize)
            .ok_or(MultibootError::BadElf("program header offset"))?;
        let field =
            |n: usize| u32_at(image, ph + 4 * n).ok_or(MultibootError::BadElf("program header"));
        if field(0)? != 1 {
            continue; // not PT_LOAD
        }
        let (offset, paddr, filesz, memsz) = (field(1)? as usize, field(3)?, field(4)?, field(5)?);
        if filesz > memsz {
            return Err(MultibootError::BadElf(
                "segment file size exceeds memory size",
            ));
        }
        let data = offset
            .checked_add(filesz as usize)
            .and_then(|end| image.get(offset..end))
            .ok_or(MultibootError::BadElf("segment outside the file"))?;
        zero(mem, "an ELF segment", u64::from(paddr), u64::from(memsz))?;
        write(mem, "an ELF segment", u64::from(paddr), data)?;
        extent.add(u64::from(paddr), u64::from(memsz));
    }
    Ok(entry)
}

/// Loads an a.out-kludge image with the header's addresses; returns the entry point.
fn load_aout(
    mem: &mut PhysMem,
    image: &[u8],
    h: &Header,
    extent: &mut Extent,
) -> Result<u32, MultibootError> {
    // The file offset of load_addr: the header sits at header_addr in memory.
    let start = (h.offset as u64)
        .checked_sub(u64::from(h.header_addr.wrapping_sub(h.load_addr)))
        .ok_or(MultibootError::NotElf)? as usize;
    let len = if h.load_end_addr == 0 {
        image.len().saturating_sub(start)
    } else {
        h.load_end_addr
            .checked_sub(h.load_addr)
            .ok_or(MultibootError::NotElf)? as usize
    };
    let data = image
        .get(start..start.saturating_add(len))
        .ok_or(MultibootError::NotElf)?;
    write(mem, "the a.out image", u64::from(h.load_addr), data)?;
    extent.add(u64::from(h.load_addr), len as u64);
    if h.bss_end_addr > h.load_addr + len as u32 {
        let bss = u64::from(h.load_addr) + len as u64;
        zero(mem, "the a.out bss", bss, u64::from(h.bss_end_addr) - bss)?;
        extent.add(bss, u64::from(h.bss_end_addr) - bss);
    }
    Ok(h.entry_addr)
}

/// The command line a multiboot kernel gets for `kernel_path` and the user's `append`, as
/// QEMU builds it: the kernel's file name, a space, then the arguments. Kernels that take
/// their `argv[0]` from the first word (kvm-unit-tests does) see their own name there and
/// their arguments after it; with `append` alone as the command line, its first word became
/// the program name and was lost.
pub fn qemu_cmdline(kernel_path: &str, append: &str) -> String {
    format!("{kernel_path} {append}")
}

/// Loads a multiboot v1 kernel with its command line and modules into `mem` and returns the
/// CPU state to start it with.
pub fn load(
    mem: &mut PhysMem,
    image: &[u8],
    cmdline: &str,
    modules: &[Module<'_>],
) -> Result<CpuState, MultibootError> {
    // 1. the header
    let h = find_header(image)?;
    let unknown_required = h.flags & 0xffff & !KNOWN_REQUIRED;
    if unknown_required != 0 {
        return Err(MultibootError::UnsupportedFlags(h.flags));
    }
    // 2. the image
    let mut extent = Extent::EMPTY;
    let entry = if h.flags & FLAG_AOUT_KLUDGE != 0 {
        load_aout(mem, image, &h, &mut extent)?
    } else {
        load_elf(mem, image, &mut extent)?
    };
    // The information area goes at INFO_ADDR unless the kernel lives there (kernels linked
    // low, such as kvm-unit-tests' realmode test at 0x8000); then right after the kernel.
    let info_addr = if extent.overlaps(INFO_ADDR, INFO_AREA) {
        (extent.end + 0xfff) & !0xfff
    } else {
        INFO_ADDR
    };
    // 3. modules, page-aligned, after the highest byte of the kernel area (from 16 MiB down
    //    is left to the kernel; put them at 32 MiB or the middle of RAM, whichever is lower)
    //    but never over the kernel or an information area placed after it: with little RAM
    //    (`-m 2`) the middle of RAM is inside the kernel, and a module there overwrote it
    let mut after_kernel = (extent.end + 0xfff) & !0xfff;
    if info_addr == after_kernel {
        after_kernel += INFO_AREA.next_multiple_of(0x1000);
    }
    let mut next = ((mem.ram_size() / 2).min(32 << 20) & !0xfff).max(after_kernel);
    let mut mod_list = Vec::new();
    // What the firmware tables must not overwrite: the kernel, the information area and,
    // below, each module.
    let mut tables_fit =
        !overlaps_firmware_area(extent.start, extent.end.saturating_sub(extent.start))
            && !overlaps_firmware_area(info_addr, INFO_AREA);
    for m in modules {
        tables_fit &= !overlaps_firmware_area(next, m.data.len() as u64);
        write(mem, "a module", next, m.data)?;
        mod_list.push((next, next + m.data.len() as u64, m.cmdline));
        next = (next + m.data.len() as u64 + 0xfff) & !0xfff;
    }
    // 4. the information area: info struct, memory map, module list, strings
    fits(mem, "the multiboot information", info_addr, INFO_AREA)?;
    let mut area = vec![0u8; INFO_AREA as usize];
    let mut strings_at = 0x1000usize;
    let mut put_str = |area: &mut Vec<u8>, s: &str| -> u32 {
        let at = strings_at;
        let bytes = s.as_bytes();
        let n = bytes.len().min(area.len() - at - 1);
        area[at..at + n].copy_from_slice(&bytes[..n]);
        strings_at += n + 1;
        (info_addr + at as u64) as u32
    };
    let ram = mem.ram_size();
    let mem_lower_kib = 639u32;
    let mem_upper_kib = ((ram.min(0xffff_ffff) - (1 << 20)) / 1024) as u32;
    let mut info = [0u32; 22];
    info[0] = INFO_MEM | INFO_CMDLINE | INFO_MODS | INFO_MMAP;
    info[1] = mem_lower_kib;
    info[2] = mem_upper_kib;
    info[4] = put_str(&mut area, cmdline);
    info[5] = mod_list.len() as u32;
    let mods_off = 0x200usize;
    info[6] = (info_addr + mods_off as u64) as u32;
    for (i, (start, end, cl)) in mod_list.iter().enumerate() {
        let s = put_str(&mut area, cl);
        let e = mods_off + 16 * i;
        for (j, v) in [*start as u32, *end as u32, s, 0].into_iter().enumerate() {
            area[e + 4 * j..e + 4 * j + 4].copy_from_slice(&v.to_le_bytes());
        }
    }
    // memory map: (size=20, base, length, type) entries; RAM below 640 KiB and from 1 MiB.
    let mmap_off = 0x100usize;
    let entries: [(u64, u64, u32); 2] =
        [(0, 0x9fc00, 1), (1 << 20, ram.saturating_sub(1 << 20), 1)];
    for (i, (base, len, kind)) in entries.iter().enumerate() {
        let e = mmap_off + 24 * i;
        area[e..e + 4].copy_from_slice(&20u32.to_le_bytes());
        area[e + 4..e + 12].copy_from_slice(&base.to_le_bytes());
        area[e + 12..e + 20].copy_from_slice(&len.to_le_bytes());
        area[e + 20..e + 24].copy_from_slice(&kind.to_le_bytes());
    }
    info[11] = (24 * entries.len()) as u32;
    info[12] = (info_addr + mmap_off as u64) as u32;
    for (i, v) in info.iter().enumerate() {
        area[4 * i..4 * i + 4].copy_from_slice(&v.to_le_bytes());
    }
    write(mem, "the multiboot information", info_addr, &area)?;
    // The tables after everything else has been checked to fit. A kernel that lives in the
    // BIOS area gets none: a BIOS's tables would be gone under it too.
    if tables_fit {
        place_firmware_tables(mem)?;
    }
    // 5. the CPU: flat 32-bit protected mode, paging off, interrupts off, with a GDT like
    //    the one QEMU's multiboot loader leaves (0x08 flat code, 0x10 flat data): the spec
    //    says the kernel must load its own, but some (kvm-unit-tests' realmode) use it.
    let gdt_at = info_addr + GDT_OFF as u64;
    let gdt: [u64; 3] = [0, 0x00cf_9a00_0000_ffff, 0x00cf_9200_0000_ffff];
    for (i, d) in gdt.iter().enumerate() {
        mem.write_phys(gdt_at + 8 * i as u64, 8, *d);
    }
    let mut cpu = CpuState::new(CpuMode::Prot32);
    // What firmware leaves: protection on, nothing else (SSE off until the kernel sets
    // CR4.OSFXSR, as QEMU's multiboot handoff has it).
    cpu.cr0 = crane86_runtime::state::CR0_ET | crane86_runtime::state::CR0_PE;
    cpu.cr4 = 0;
    cpu.gdtr = crane86_runtime::DescriptorTable {
        base: gdt_at,
        limit: (8 * gdt.len() - 1) as u16,
    };
    cpu.set_gpr(Gpr::Rax, u64::from(BOOT_MAGIC));
    cpu.set_gpr(Gpr::Rbx, info_addr);
    cpu.rip = u64::from(entry);
    Ok(cpu)
}

#[cfg(test)]
mod tests;
