//! The fixed machine every random case runs in, the same for QEMU and crane86: where code,
//! data, stack and descriptor tables live, and the setup code that takes the CPU from reset
//! (real mode) into the mode under test.
//!
//! Physical = linear everywhere (paging, in 64-bit mode, is an identity map of 1 GiB in 2 MiB
//! pages), and everything sits below 64 KiB so that real mode reaches it with all segments 0.

use crane86_runtime::segment::encode_descriptor as descriptor;
use iced_x86::code_asm::*;

/// Real-mode interrupt vector table.
pub const IVT: u64 = 0x0000;
/// The GDT: null, 32-bit code 0x08, data 0x10, 64-bit code 0x18, 16-bit code 0x20, 16-bit
/// data 0x28, the 64-bit TSS 0x30 (two slots).
pub const GDT: u64 = 0x0500;
/// The 64-bit TSS (IST1 is the stack exceptions run on in 64-bit mode).
pub const TSS64: u64 = 0x0600;
/// 32-bit IDT (32 interrupt gates).
pub const IDT32: u64 = 0x0800;
/// 64-bit IDT (32 interrupt gates, all on IST1).
pub const IDT64: u64 = 0x0a00;
/// Exception landing pads: vector `v` lands on `STUBS + 16 * v`, which holds HLT.
pub const STUBS: u64 = 0x1000;
/// The setup code (real-mode entry).
pub const SETUP: u64 = 0x2000;
/// Where setup ends, ready for cases: HLT.
pub const READY: u64 = 0x2f00;
/// 4-level page tables: PML4, PDPT, PD.
pub const PML4: u64 = 0x3000;
/// The end of a case's code: its instructions end here, where a HLT waits.
pub const END: u64 = 0x7000;
/// Largest code of one case.
pub const MAX_CODE: u64 = 0x0f00;
/// Scratch memory: data from here, the stack below its end.
pub const SCRATCH: u64 = 0x8000;
/// Scratch length (compared after every case).
pub const SCRATCH_LEN: usize = 0x2000;
/// Data operands fall in `SCRATCH..DATA_END`.
pub const DATA_END: u64 = 0x8f00;
/// The stack pointer a case starts with (in the scratch area).
pub const STACK_TOP: u64 = 0x9f00;
/// The value of the base register of memory operands (RBX/EBX/BX).
pub const BASE: u64 = 0x8800;
/// Top of the IST1 stack.
pub const IST_TOP: u64 = 0xb000;

/// Selectors.
const CODE32: u16 = 0x08;
const DATA: u16 = 0x10;
const CODE64: u16 = 0x18;
const TSS_SEL: u16 = 0x30;

/// The memory image of the tables and stubs: (address, bytes) pieces.
pub fn tables() -> Vec<(u64, Vec<u8>)> {
    let mut out = Vec::new();
    let mut ivt = Vec::new();
    for v in 0..256u64 {
        let stub = STUBS + 16 * v.min(31);
        ivt.extend_from_slice(&(stub as u16).to_le_bytes());
        ivt.extend_from_slice(&0u16.to_le_bytes());
    }
    out.push((IVT, ivt));
    let gdt = [
        0,
        descriptor(0, 0xfffff, 0x9a, 0xc),
        descriptor(0, 0xfffff, 0x92, 0xc),
        descriptor(0, 0xfffff, 0x9a, 0xa),
        descriptor(0, 0xffff, 0x9a, 0x0),
        descriptor(0, 0xffff, 0x92, 0x0),
        descriptor(TSS64 as u32, 0x67, 0x89, 0x0),
        0,
    ];
    out.push((GDT, gdt.iter().flat_map(|d| d.to_le_bytes()).collect()));
    let mut tss = vec![0u8; 0x68];
    tss[0x24..0x2c].copy_from_slice(&IST_TOP.to_le_bytes());
    tss[0x66..0x68].copy_from_slice(&0x68u16.to_le_bytes());
    out.push((TSS64, tss));
    let mut idt32 = Vec::new();
    let mut idt64 = Vec::new();
    for v in 0..32u64 {
        let stub = STUBS + 16 * v;
        let gate =
            (stub & 0xffff) | (u64::from(CODE32) << 16) | (0x8e << 40) | ((stub >> 16) << 48);
        idt32.extend_from_slice(&gate.to_le_bytes());
        let gate = (stub & 0xffff)
            | (u64::from(CODE64) << 16)
            | (1 << 32)
            | (0x8e << 40)
            | (((stub >> 16) & 0xffff) << 48);
        idt64.extend_from_slice(&gate.to_le_bytes());
        idt64.extend_from_slice(&(stub >> 32).to_le_bytes());
    }
    out.push((IDT32, idt32));
    out.push((IDT64, idt64));
    out.push((STUBS, vec![0xf4; 32 * 16]));
    // Identity map of the first GiB: PML4[0] -> PDPT, PDPT[0] -> PD, 512 2 MiB pages.
    let mut pt = vec![0u8; 0x3000];
    pt[..8].copy_from_slice(&(PML4 + 0x1003).to_le_bytes());
    pt[0x1000..0x1008].copy_from_slice(&(PML4 + 0x2003).to_le_bytes());
    for i in 0..512u64 {
        let e = (i << 21) | 0x83;
        pt[0x2000 + 8 * i as usize..0x2008 + 8 * i as usize].copy_from_slice(&e.to_le_bytes());
    }
    out.push((PML4, pt));
    out.push((READY, vec![0xf4]));
    out.push((END, vec![0xf4]));
    out
}

/// Pseudo-descriptors LGDT/LIDT read: at `GDT - 16` (GDTR), `- 32` (IDT32), `- 48` (IDT64),
/// `- 64` (real-mode IVT). Each: limit (2 bytes), base (8 bytes).
fn pseudo_descriptors() -> (u64, Vec<u8>) {
    let mut b = vec![0u8; 64];
    let mut put = |at: usize, limit: u16, base: u64| {
        b[at..at + 2].copy_from_slice(&limit.to_le_bytes());
        b[at + 2..at + 10].copy_from_slice(&base.to_le_bytes());
    };
    put(48, 8 * 8 - 1, GDT);
    put(32, 32 * 8 - 1, IDT32);
    put(16, 32 * 16 - 1, IDT64);
    put(0, 0x3ff, IVT);
    (GDT - 64, b)
}
const GDTR: u64 = GDT - 16;
const IDTR32: u64 = GDT - 32;
const IDTR64: u64 = GDT - 48;
const IDTR_REAL: u64 = GDT - 64;

/// The setup code for `bits` (16: real mode; 32: flat protected mode; 64: long mode), to be
/// loaded at [`SETUP`] and entered in real mode at 0000:SETUP; it ends at [`READY`].
pub fn setup(bits: u32) -> Result<Vec<(u64, Vec<u8>)>, IcedError> {
    let mut out = vec![pseudo_descriptors()];
    let prot32 = SETUP + 0x100;
    let long64 = SETUP + 0x200;
    // Real mode.
    let mut a = CodeAssembler::new(16)?;
    a.cli()?;
    a.xor(ax, ax)?;
    a.mov(ds, ax)?;
    a.mov(es, ax)?;
    a.mov(ss, ax)?;
    a.mov(sp, STACK_TOP as u32)?;
    // SSE on (CR4.OSFXSR, OSXMMEXCPT; CR0.MP), x87 native.
    a.mov(eax, cr4)?;
    a.or(eax, 0x600)?;
    a.mov(cr4, eax)?;
    a.mov(eax, cr0)?;
    a.or(eax, 0x22)?;
    a.and(eax, !0x4u32 as i32)?;
    a.mov(cr0, eax)?;
    a.fninit()?;
    if bits == 16 {
        a.lidt(word_ptr(IDTR_REAL))?;
        a.jmp(READY)?;
    } else {
        a.lgdt(word_ptr(GDTR))?;
        a.mov(eax, cr0)?;
        a.or(eax, 1)?;
        a.mov(cr0, eax)?;
        a.db(&[0xea])?; // jmp far ptr16:16
        a.dw(&[prot32 as u16, CODE32])?;
    }
    out.push((SETUP, a.assemble(SETUP)?));
    if bits == 16 {
        return Ok(out);
    }
    // 32-bit protected mode.
    let mut a = CodeAssembler::new(32)?;
    a.mov(ax, DATA as u32)?;
    for s in [ds, es, ss, fs, gs] {
        a.mov(s, ax)?;
    }
    a.mov(esp, STACK_TOP as u32)?;
    if bits == 32 {
        a.lidt(dword_ptr(IDTR32))?;
        a.jmp(READY)?;
    } else {
        a.mov(eax, cr4)?;
        a.or(eax, 0x20)?;
        a.mov(cr4, eax)?;
        a.mov(eax, PML4 as u32)?;
        a.mov(cr3, eax)?;
        a.mov(ecx, 0xc000_0080u32)?;
        a.rdmsr()?;
        a.or(eax, 0x100)?;
        a.wrmsr()?;
        a.mov(eax, cr0)?;
        a.or(eax, 0x8000_0000u32 as i32)?;
        a.mov(cr0, eax)?;
        a.db(&[0xea])?; // jmp far ptr16:32
        a.dd(&[long64 as u32])?;
        a.dw(&[CODE64])?;
    }
    out.push((prot32, a.assemble(prot32)?));
    if bits == 32 {
        return Ok(out);
    }
    // 64-bit mode.
    let mut a = CodeAssembler::new(64)?;
    a.mov(ax, DATA as u32)?;
    for s in [ds, es, ss, fs, gs] {
        a.mov(s, ax)?;
    }
    a.mov(ax, TSS_SEL as u32)?;
    a.ltr(ax)?;
    a.lidt(qword_ptr(IDTR64))?;
    a.mov(rsp, STACK_TOP)?;
    a.mov(rax, READY)?;
    a.jmp(rax)?;
    out.push((long64, a.assemble(long64)?));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_stay_apart() {
        for bits in [16, 32, 64] {
            let mut pieces = tables();
            pieces.extend(setup(bits).unwrap());
            pieces.sort_by_key(|p| p.0);
            for w in pieces.windows(2) {
                assert!(
                    w[0].0 + w[0].1.len() as u64 <= w[1].0,
                    "{bits}: {:#x}+{:#x} overlaps {:#x}",
                    w[0].0,
                    w[0].1.len(),
                    w[1].0
                );
            }
            assert!(pieces.iter().all(|p| p.0 + p.1.len() as u64 <= SCRATCH));
        }
    }
}
