//! Pieces several test files share.

pub mod guest_run;

/// A multiboot v1 image with the a.out kludge: loaded at 1 MiB, entered in 32-bit protected
/// mode right after its 32-byte header, where `code` starts.
#[allow(dead_code)] // not every test file that shares this module uses it
pub fn multiboot_image(code: &[u8]) -> Vec<u8> {
    let magic: u32 = 0x1bad_b002;
    let flags: u32 = 1 << 16;
    let mut img = Vec::new();
    for v in [
        magic,
        flags,
        0u32.wrapping_sub(magic.wrapping_add(flags)),
        0x10_0000,
        0x10_0000,
        0,
        0,
        0x10_0020,
    ] {
        img.extend_from_slice(&v.to_le_bytes());
    }
    img.extend_from_slice(code);
    img
}

/// The code of a multiboot guest (for [`multiboot_image`]) that storms its CPU with
/// interrupts: an IDT whose vector 0x40 handler counts in ESI and signals EOI, the legacy
/// PICs masked, the local APIC timer periodic on vector 0x40 with divider 1 and
/// `initial_count`, interrupts on; the main loop counts in EBX. 32-bit code with absolute
/// addresses (it has no RIP-relative form): the handler sits 0x100 bytes in, the IDTR image
/// 0x180 bytes in, the IDT at 2 MiB.
#[allow(dead_code)] // not every test file that shares this module uses it
pub fn apic_storm_code(initial_count: u32) -> Vec<u8> {
    use iced_x86::code_asm::*;
    const BASE: u32 = 0x10_0020;
    const HANDLER: u32 = BASE + 0x100;
    const IDTR: u32 = BASE + 0x180;
    const IDT: u32 = 0x20_0000;
    const APIC: u32 = 0xfee0_0000;
    let mut a = CodeAssembler::new(32).unwrap();
    let mut top = a.create_label();
    // A stack (multiboot leaves ESP undefined).
    a.mov(esp, 0x18_0000).unwrap();
    // IDT entry 0x40: a present DPL-0 32-bit interrupt gate to HANDLER through this CS.
    a.mov(eax, cs).unwrap();
    a.shl(eax, 16).unwrap();
    a.or(eax, HANDLER & 0xffff).unwrap();
    a.mov(dword_ptr(IDT + 0x40 * 8), eax).unwrap();
    a.mov(
        dword_ptr(IDT + 0x40 * 8 + 4),
        (HANDLER & 0xffff_0000) | 0x8e00,
    )
    .unwrap();
    a.lidt(dword_ptr(IDTR)).unwrap();
    // The legacy PICs masked (the BIOS hand-off leaves the PIT's IRQ 0 open).
    a.mov(al, 0xff).unwrap();
    a.out(0x21, al).unwrap();
    a.out(0xa1, al).unwrap();
    // Spurious-interrupt register: APIC software-enabled.
    a.mov(dword_ptr(APIC + 0xf0), 0x1ff).unwrap();
    // Divide by 1, periodic timer on vector 0x40.
    a.mov(dword_ptr(APIC + 0x3e0), 0xb).unwrap();
    a.mov(dword_ptr(APIC + 0x320), 0x2_0040).unwrap();
    a.mov(dword_ptr(APIC + 0x380), initial_count).unwrap();
    a.sti().unwrap();
    a.set_label(&mut top).unwrap();
    a.inc(ebx).unwrap();
    a.jmp(top).unwrap();
    let mut code = a.assemble(u64::from(BASE)).unwrap();
    code.resize(0x100, 0xcc);
    let mut h = CodeAssembler::new(32).unwrap();
    h.inc(esi).unwrap();
    h.mov(dword_ptr(APIC + 0xb0), 0).unwrap();
    h.iretd().unwrap();
    code.extend(h.assemble(u64::from(HANDLER)).unwrap());
    code.resize(0x180, 0xcc);
    code.extend_from_slice(&0x7ffu16.to_le_bytes());
    code.extend_from_slice(&IDT.to_le_bytes());
    code
}

/// 64-bit flat-guest code (at 0x1000) that churns page tables forever: reload CR3 (a full
/// TLB flush), store the first PML4 entry (the flat machine's identity map) back with its
/// own value, INVLPG and read a page that walks through the first 4 MiB.
#[allow(dead_code)] // not every test file that shares this module uses it
pub fn page_table_churn_code() -> Vec<u8> {
    use iced_x86::code_asm::*;
    let mut a = CodeAssembler::new(64).unwrap();
    let mut top = a.create_label();
    a.set_label(&mut top).unwrap();
    a.mov(rax, cr3).unwrap();
    a.mov(rbx, qword_ptr(rax)).unwrap();
    a.mov(qword_ptr(rax), rbx).unwrap();
    a.mov(cr3, rax).unwrap();
    a.invlpg(byte_ptr(rcx)).unwrap();
    a.mov(rdx, qword_ptr(rcx)).unwrap();
    a.add(rcx, 0x1000).unwrap();
    a.and(rcx, 0x3f_ffff).unwrap();
    a.jmp(top).unwrap();
    a.assemble(0x1000).unwrap()
}
