//! The inline TLB check of generated code (`JitEmitter::tlb_check`) and the translations a
//! loop remembers across its iterations (`JitEmitter::memo_load`): every access must read
//! the bytes the interpreter reads, through whatever mappings the TLB and the memos hold.

use crane86_runtime::paging::pte;
use crane86_runtime::{CpuMode, PhysMem};
use iced_x86::code_asm::*;

use crate::testutil::{asm, run_both};

/// The identity map of the test harness (`testutil`) keeps its PDPT at the top of its 1 MiB.
const PDPT: u64 = (1 << 20) - 0x1000;
const RWP: u64 = pte::P | pte::RW | pte::A | pte::D;

/// Maps 4 KiB linear page `linear` (below 512 GiB) to physical page `phys` through a page
/// directory and a page table of their own at `tables` (two pages), replacing the harness's
/// 1 GiB identity mapping of that gigabyte.
fn map_4k(mem: &mut PhysMem, linear: u64, phys: u64, tables: u64) {
    let (pd, pt) = (tables, tables + 0x1000);
    let gib = (linear >> 30) & 511;
    mem.write_phys(PDPT + 8 * gib, 8, pd | RWP);
    mem.write_phys(pd + 8 * ((linear >> 21) & 511), 8, pt | RWP);
    mem.write_phys(pt + 8 * ((linear >> 12) & 511), 8, phys | RWP);
}

/// A 4-byte load that crosses from linear page 0x7FFFF000 into 0x80000000, after an access
/// to the second page filled its TLB entry. The two pages share a TLB slot under the hash
/// before session 11 (page number XOR page number >> 10), so the check, which compares the
/// tag with the page of the access's last byte, hit for the crossing access and added the
/// second page's addend to an address in the first: it read the two bytes before the second
/// page's physical page (host memory outside guest RAM if that page is the first).
#[test]
fn a_load_crossing_into_a_page_in_the_same_slot_reads_both_pages() {
    let code = asm(64, |a| {
        a.mov(rsi, 0x8000_0000u64).unwrap();
        a.mov(eax, dword_ptr(rsi)).unwrap();
        a.mov(rsi, 0x7fff_fffeu64).unwrap();
        a.mov(ebx, dword_ptr(rsi)).unwrap();
    });
    let o = run_both(CpuMode::Long64, &code, |_, mem| {
        map_4k(mem, 0x7fff_f000, 0x50000, 0x30000);
        map_4k(mem, 0x8000_0000, 0x60000, 0x32000);
        mem.write_phys(0x50ffc, 4, 0x4433_2211);
        mem.write_phys(0x60000, 4, 0x8877_6655);
        // What the crossing access would read through the second page's addend.
        mem.write_phys(0x5fffc, 4, 0xffee_0000);
    });
    assert_eq!(o.r(0), 0x8877_6655);
    assert_eq!(o.r(3), 0x6655_4433);
}
