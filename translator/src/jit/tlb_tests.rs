//! The inline TLB check of generated code (`JitEmitter::tlb_check`) and the translations a
//! loop remembers across its iterations (`JitEmitter::memo_load`): every access must read
//! the bytes the interpreter reads, through whatever mappings the TLB and the memos hold.

use crane86_runtime::paging::pte;
use crane86_runtime::{CpuMode, CpuState, Exception, PhysMem};
use iced_x86::code_asm::*;

use crate::cache::Tier;
use crate::testutil::{asm, run_both, run_tier, DATA};

/// The identity map of the test harness (`testutil`) keeps its PDPT at the top of its 1 MiB.
const PDPT: u64 = (1 << 20) - 0x1000;
const RWP: u64 = pte::P | pte::RW | pte::A | pte::D;

/// Where [`map_4k`] puts the page directories and tables it needs (zeroed RAM, 64 KiB).
const TABLES: u64 = 0x30000;

/// Maps 4 KiB linear page `linear` (below 8 GiB, outside the gigabyte of the harness's code
/// and data) to physical page `phys`, or unmaps it if `phys` is `None`; a gigabyte's first
/// such page replaces its 1 GiB identity mapping with a page directory. Each gigabyte and
/// each 2 MiB region gets a fixed table slot (enough for the few regions a test maps).
/// Returns the physical address of the page-table entry.
fn map_4k(mem: &mut PhysMem, linear: u64, phys: Option<u64>) -> u64 {
    let (gib, region) = ((linear >> 30) & 7, (linear >> 21) & 511);
    let table = |entry: u64, fresh: u64, mem: &mut PhysMem| {
        let e = mem.peek_phys(entry, 8);
        if e & pte::P != 0 && e & pte::PS == 0 {
            e & 0x000f_ffff_ffff_f000
        } else {
            mem.write_phys(entry, 8, fresh | RWP);
            fresh
        }
    };
    let pd = table(PDPT + 8 * gib, TABLES + 0x1000 * gib, mem);
    let pt_slot = TABLES + 0x8000 + 0x1000 * ((gib * 3 + region) % 8);
    let pt = table(pd + 8 * region, pt_slot, mem);
    let at = pt + 8 * ((linear >> 12) & 511);
    mem.write_phys(at, 8, phys.map_or(0, |p| p | RWP));
    at
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
        map_4k(mem, 0x7fff_f000, Some(0x50000));
        map_4k(mem, 0x8000_0000, Some(0x60000));
        mem.write_phys(0x50ffc, 4, 0x4433_2211);
        mem.write_phys(0x60000, 4, 0x8877_6655);
        // What the crossing access would read through the second page's addend.
        mem.write_phys(0x5fffc, 4, 0xffee_0000);
    });
    assert_eq!(o.r(0), 0x8877_6655);
    assert_eq!(o.r(3), 0x6655_4433);
}

/// Where the table-lookup loops below find their table: a gigabyte of 4 KiB pages of its own.
const TABLE: u64 = 0x4000_0000;
/// Bytes the loops run over, at [`DATA`] (identity-mapped).
const BYTES: usize = 1500;

/// Element `i` of table number `which`.
fn element(which: u32, i: u32) -> u32 {
    (i ^ which.wrapping_mul(0x5bd1_e995)).wrapping_mul(0x85eb_ca6b) ^ which
}

/// The table index of lookup `i`: every index in turn (7 is odd), so that each test's
/// interesting elements (a straddling one, one in an unmapped page) are reached.
fn index(i: usize) -> u32 {
    (i as u32).wrapping_mul(7).wrapping_add(3) & 0xff
}

/// The data bytes that make [`lookup_loop`] look up [`index`]`(0)`, `index(1)`, ... in
/// table number `which`, starting from EDX = `init`.
fn data(which: u32, init: u32) -> Vec<u8> {
    let mut c = init;
    (0..BYTES)
        .map(|i| {
            let b = ((c ^ index(i)) & 0xff) as u8;
            c = element(which, index(i));
            b
        })
        .collect()
}

/// EDX after [`lookup_loop`] over [`data`]`(which, _)`.
fn expected(which: u32) -> u32 {
    element(which, index(BYTES - 1))
}

/// R10D after [`lookup_loop`] over [`data`]`(which, _)` from R10D = 0: the sum of every
/// element looked up (EDX alone would miss a wrong upper byte, which no index depends on).
fn expected_sum(which: u32) -> u32 {
    (0..BYTES).fold(0u32, |s, i| s.wrapping_add(element(which, index(i))))
}

/// The loop of a byte-wise table-driven checksum (the CRC-32 shape): `edx = table[(edx ^
/// byte) & 0xff]` for [`BYTES`] bytes at RDI, table at RSI, summing the elements in R10D.
/// The lookup's index is a MOVZX from a byte and its base is unchanged in the loop, so the
/// load gets a memo.
fn lookup_loop(a: &mut CodeAssembler) {
    let mut top = a.create_label();
    a.mov(ecx, BYTES as u32).unwrap();
    a.set_label(&mut top).unwrap();
    a.movzx(eax, byte_ptr(rdi)).unwrap();
    a.inc(rdi).unwrap();
    a.xor(eax, edx).unwrap();
    a.movzx(eax, al).unwrap();
    a.mov(edx, dword_ptr(rsi + rax * 4)).unwrap();
    a.add(r10d, edx).unwrap();
    a.dec(ecx).unwrap();
    a.jnz(top).unwrap();
}

/// Writes table number `which` (256 elements) at physical address `at`, and its data bytes.
fn fill(mem: &mut PhysMem, which: u32, at: u64) {
    for i in 0..256u32 {
        mem.write_phys(at + 4 * u64::from(i), 4, u64::from(element(which, i)));
    }
    fill_data(mem, which);
}

fn set_pointers(cpu: &mut CpuState, table: u64) {
    cpu.gpr[6] = table;
    cpu.gpr[7] = DATA;
}

#[test]
fn table_lookups_in_a_loop_are_served_by_the_memo() {
    let code = asm(64, lookup_loop);
    let setup = |cpu: &mut CpuState, mem: &mut PhysMem| {
        map_4k(mem, TABLE, Some(0x50000));
        fill(mem, 1, 0x50000 + 0x100);
        set_pointers(cpu, TABLE + 0x100);
    };
    let o = run_both(CpuMode::Long64, &code, setup);
    assert_eq!(o.r(2) as u32, expected(1));
    assert_eq!(o.r(10) as u32, expected_sum(1));
    // Every lookup but the first of each run of the loop's function (a run ends when the
    // test harness's budget of 1000 instructions does) hits the memo.
    let jit = run_tier(Tier::Jit, CpuMode::Long64, &code, &setup);
    assert!(
        jit.cpu.jit_memo_hits >= BYTES as u64 - BYTES as u64 / 50,
        "{} memo hits for {BYTES} lookups",
        jit.cpu.jit_memo_hits
    );
}

/// Runs the lookup loop over table number `which`, laid out from linear `base` across
/// linear pages [`TABLE`] and the next, whose frames (0x50000 and 0x70000) are far apart;
/// the bytes after the first frame and before the second are poison. Each lookup must
/// read its own frame, whichever page the memo remembers. Returns the memo hits of the
/// compiled run.
fn run_straddling(which: u32, base: u64) -> u64 {
    run_straddling_in(which, base, 0x50000, 0x70000)
}

/// [`run_straddling`] with the two pages in frames `low` and `high`.
fn run_straddling_in(which: u32, base: u64, low: u64, high: u64) -> u64 {
    let code = asm(64, lookup_loop);
    let setup = |cpu: &mut CpuState, mem: &mut PhysMem| {
        map_4k(mem, TABLE, Some(low));
        map_4k(mem, TABLE + 0x1000, Some(high));
        let mut bytes = Vec::new();
        for i in 0..256 {
            bytes.extend_from_slice(&element(which, i).to_le_bytes());
        }
        let first = (TABLE + 0x1000 - base) as usize;
        mem.load(low + 0x1000 - first as u64, &bytes[..first])
            .unwrap();
        mem.load(high, &bytes[first..]).unwrap();
        mem.load(low + 0x1000, &[0x5a; 0x1000]).unwrap();
        if high > 0 {
            mem.load(high - 0x1000, &[0xa5; 0x1000]).unwrap();
        }
        fill_data(mem, which);
        set_pointers(cpu, base);
    };
    let o = run_both(CpuMode::Long64, &code, setup);
    assert_eq!(o.r(2) as u32, expected(which));
    assert_eq!(o.r(10) as u32, expected_sum(which));
    run_tier(Tier::Jit, CpuMode::Long64, &code, &setup)
        .cpu
        .jit_memo_hits
}

/// Lookups a straddled table's memo may miss: per run of the loop's function (the
/// harness's budget of 1000 instructions ends one, about 120 lookups), the first lookup
/// and the first in the other page, and a few more for the runs' first iterations.
const STRADDLE_MISSES: u64 = BYTES as u64 / 20;

/// [`run_straddling`], and the memo must have served all but [`STRADDLE_MISSES`] lookups.
fn run_straddling_from_the_memo(which: u32, base: u64) {
    let hits = run_straddling(which, base);
    assert!(
        hits >= BYTES as u64 - STRADDLE_MISSES,
        "{hits} memo hits for {BYTES} lookups"
    );
}

/// Half the table in each page: lookups alternate between the pages at random. The memo
/// holds both pages once it has missed into the second (the in-guest CRC-32 with its table
/// on a page boundary ran 30% longer while a miss retired the memo instead).
#[test]
fn a_table_straddling_two_pages_is_read_from_both_frames() {
    run_straddling_from_the_memo(2, TABLE + 0x1000 - 0x1fe);
}

/// Only the first two elements in the first page: the first lookup (element 3) finds the
/// second page, and the memo extends downwards.
#[test]
fn a_table_first_found_in_its_second_page_keeps_both_pages() {
    run_straddling_from_the_memo(7, TABLE + 0x1000 - 8);
}

/// The table's second page in the first frame of RAM: a memo that holds both pages also
/// reads the host page before the second page's frame (see `JitEmitter::memo_check`), which
/// is not RAM here, so the memo must give up instead, and every lookup still reads its own
/// frame.
#[test]
fn a_table_whose_second_page_is_the_first_frame_of_ram_is_read_without_two_pages() {
    let hits = run_straddling_in(2, TABLE + 0x1000 - 0x1fe, 0x50000, 0);
    assert!(
        hits < BYTES as u64 / 2,
        "{hits} memo hits for {BYTES} lookups: the memo kept both pages"
    );
}

/// All of the table but its last element in the first page, at an odd offset: element 255
/// straddles the boundary and must not be read through either page's translation.
#[test]
fn an_element_straddling_the_page_end_is_read_from_both_frames() {
    run_straddling(6, TABLE + 0x1000 - 0x3fe);
}

fn fill_data(mem: &mut PhysMem, which: u32) {
    mem.load(DATA, &data(which, 0)).unwrap();
}

/// The table's second half lies in a page that is not mapped: the first lookup there faults
/// exactly as in the interpreter, after lookups in the first page the memo served.
#[test]
fn a_lookup_past_a_remembered_page_into_an_unmapped_one_faults() {
    let code = asm(64, lookup_loop);
    let o = run_both(CpuMode::Long64, &code, |cpu, mem| {
        map_4k(mem, TABLE, Some(0x50000));
        map_4k(mem, TABLE + 0x1000, None);
        fill(mem, 3, 0x50000 + 0x1000 - 0x200);
        set_pointers(cpu, TABLE + 0x1000 - 0x200);
    });
    let f = o.fault.expect("a page fault");
    assert_eq!(f.exception, Exception::PageFault);
    assert!(o.r(1) < BYTES as u64, "the fault comes inside the loop");
}

/// The loop runs, then the table's page is mapped to another frame (a PTE store and INVLPG,
/// which end the loop's function), then the same loop runs again: its memo starts afresh.
#[test]
fn a_loop_entered_again_after_invlpg_reads_the_new_frame() {
    let setup = |cpu: &mut CpuState, mem: &mut PhysMem| {
        let at = map_4k(mem, TABLE, Some(0x50000));
        fill(mem, 5, 0x60000);
        fill(mem, 4, 0x50000);
        // The second run starts from the first one's result, with data of its own.
        mem.load(DATA + 0x800, &data(5, expected(4))).unwrap();
        set_pointers(cpu, TABLE);
        cpu.gpr[9] = at;
    };
    let code = asm(64, |a| {
        let mut again = a.create_label();
        let mut done = a.create_label();
        a.xor(ebx, ebx).unwrap();
        a.set_label(&mut again).unwrap();
        let mut first_data = a.create_label();
        a.mov(rdi, DATA).unwrap();
        a.test(ebx, ebx).unwrap();
        a.jz(first_data).unwrap();
        a.add(rdi, 0x800).unwrap();
        a.set_label(&mut first_data).unwrap();
        lookup_loop(a);
        a.test(ebx, ebx).unwrap();
        a.jnz(done).unwrap();
        a.mov(r8d, edx).unwrap();
        a.mov(rax, 0x60000 | RWP).unwrap();
        a.mov(qword_ptr(r9), rax).unwrap();
        a.invlpg(byte_ptr(rsi)).unwrap();
        a.inc(ebx).unwrap();
        a.jmp(again).unwrap();
        a.set_label(&mut done).unwrap();
        a.nop().unwrap();
    });
    let o = run_both(CpuMode::Long64, &code, setup);
    assert_eq!(o.r(8) as u32, expected(4));
    assert_eq!(o.r(2) as u32, expected(5));
    assert_eq!(
        o.r(10) as u32,
        expected_sum(4).wrapping_add(expected_sum(5))
    );
}

/// A device that answers every read with more bytes than were asked for: its address with
/// high bits set.
struct WideDevice;

impl crane86_runtime::MmioHandler for WideDevice {
    fn mmio_read(&mut self, addr: u64, _size: u32) -> u64 {
        0xdead_beef_0000_0000 | addr
    }
    fn mmio_write(&mut self, _addr: u64, _size: u32, _value: u64) {}
}

/// Loads narrower than 8 bytes are zero-extended from their size, whatever a device
/// answers: generated code takes the slow path's value as zero-extended and adds no
/// extension of its own.
#[test]
fn narrow_loads_from_a_device_are_zero_extended() {
    let code = asm(64, |a| {
        // Past the harness's 1 MiB of RAM, identity-mapped: a device.
        a.mov(rsi, 0x20_1234u64).unwrap();
        a.movzx(eax, word_ptr(rsi)).unwrap();
        a.movzx(ebx, byte_ptr(rsi)).unwrap();
        a.mov(ecx, dword_ptr(rsi)).unwrap();
        a.mov(rdx, qword_ptr(rsi)).unwrap();
    });
    let o = run_both(CpuMode::Long64, &code, |_, mem| {
        mem.set_mmio(Box::new(WideDevice));
    });
    assert_eq!(o.r(0), 0x1234);
    assert_eq!(o.r(3), 0x34);
    assert_eq!(o.r(1), 0x0020_1234);
    assert_eq!(o.r(2), 0xdead_beef_0020_1234);
}

/// Where the group tests put the stack: a linear page in the second gigabyte.
const STACK: u64 = 0x4000_2000;

/// Pushes three registers, stores and loads through `[rsp + n]`, and pops them back into
/// other registers: one group of RSP-based accesses in one block.
fn frame_block(a: &mut CodeAssembler) {
    a.push(rbx).unwrap();
    a.push(rcx).unwrap();
    a.push(rdx).unwrap();
    a.mov(qword_ptr(rsp + 8), rax).unwrap();
    a.add(qword_ptr(rsp + 16), 5).unwrap();
    a.mov(rsi, qword_ptr(rsp)).unwrap();
    a.pop(r8).unwrap();
    a.pop(r9).unwrap();
    a.pop(r10).unwrap();
}

fn frame_regs(cpu: &mut CpuState, stack_pointer: u64) {
    cpu.gpr[0] = 0xaaaa;
    cpu.gpr[3] = 0x3333;
    cpu.gpr[1] = 0x1111;
    cpu.gpr[2] = 0x2222;
    cpu.gpr[4] = stack_pointer;
}

#[test]
fn the_accesses_of_a_stack_frame_share_one_check() {
    const TURNS: u64 = 200;
    let code = asm(64, |a| {
        let mut top = a.create_label();
        a.set_label(&mut top).unwrap();
        frame_block(a);
        a.dec(edi).unwrap();
        a.jnz(top).unwrap();
    });
    let setup = |cpu: &mut CpuState, mem: &mut PhysMem| {
        map_4k(mem, STACK, Some(0x50000));
        frame_regs(cpu, STACK + 0x800);
        cpu.gpr[7] = TURNS;
    };
    let o = run_both(CpuMode::Long64, &code, setup);
    // RDX, then RAX over RCX, then RBX + 5.
    assert_eq!(
        (o.r(8), o.r(9), o.r(10), o.r(6)),
        (0x2222, 0xaaaa, 0x3338, 0x2222)
    );
    assert_eq!(o.m(0x507f8, 8), 0x3338);
    assert_eq!(o.r(4), STACK + 0x800);
    // Ten accesses a turn (the ADD reads and writes). A turn's group is invalid while the
    // TLB misses the page, and after a slow path: the first turns only.
    let jit = run_tier(Tier::Jit, CpuMode::Long64, &code, &setup);
    assert!(
        jit.cpu.jit_grouped_hits >= 10 * (TURNS - 5),
        "{} grouped accesses",
        jit.cpu.jit_grouped_hits
    );
}

#[test]
fn a_group_whose_page_missed_the_tlb_is_checked_again_after_the_fill() {
    // One run of the frame: the first push misses the TLB, its slow path fills the entry,
    // and the group's check after it lets the nine accesses after it through.
    let code = asm(64, frame_block);
    let setup = |cpu: &mut CpuState, mem: &mut PhysMem| {
        map_4k(mem, STACK, Some(0x50000));
        frame_regs(cpu, STACK + 0x800);
    };
    let jit = run_tier(Tier::Jit, CpuMode::Long64, &code, &setup);
    assert_eq!(jit.r(10), 0x3338);
    assert_eq!(jit.cpu.jit_grouped_hits, 9);
}

#[test]
fn a_stack_frame_across_two_pages_reads_and_writes_both_frames() {
    // The frame straddles linear pages STACK and STACK + 0x1000, in frames far apart: the
    // group's check fails and each access checks the TLB itself.
    let code = asm(64, frame_block);
    let setup = |cpu: &mut CpuState, mem: &mut PhysMem| {
        map_4k(mem, STACK, Some(0x50000));
        map_4k(mem, STACK + 0x1000, Some(0x70000));
        frame_regs(cpu, STACK + 0x1010);
    };
    let o = run_both(CpuMode::Long64, &code, setup);
    assert_eq!(
        (o.r(8), o.r(9), o.r(10), o.r(6)),
        (0x2222, 0xaaaa, 0x3338, 0x2222)
    );
    // RBX's and RCX's slots are the second page's first words, RDX's the first page's last.
    assert_eq!(o.m(0x70008, 8), 0x3338);
    assert_eq!(o.m(0x70000, 8), 0xaaaa);
    assert_eq!(o.m(0x50ff8, 8), 0x2222);
}

#[test]
fn a_fault_in_the_middle_of_a_stack_frame_is_precise() {
    // The second push crosses into an unmapped page: #PF there, with RSP after the first.
    let code = asm(64, frame_block);
    let o = run_both(CpuMode::Long64, &code, |cpu, mem| {
        map_4k(mem, STACK + 0x1000, Some(0x70000));
        map_4k(mem, STACK, None);
        frame_regs(cpu, STACK + 0x1008);
    });
    assert_eq!(o.fault.map(|f| f.exception), Some(Exception::PageFault));
    assert_eq!(o.r(4), STACK + 0x1000);
    assert_eq!(o.m(0x70000, 8), 0x3333);
}

#[test]
fn rip_relative_loads_in_one_page_share_one_check() {
    const TURNS: u64 = 200;
    let code = asm(64, |a| {
        let mut top = a.create_label();
        let mut t = [a.create_label(), a.create_label(), a.create_label()];
        let mut end = a.create_label();
        a.xor(eax, eax).unwrap();
        a.set_label(&mut top).unwrap();
        a.add(rax, qword_ptr(t[0])).unwrap();
        a.add(rax, qword_ptr(t[1])).unwrap();
        a.mov(rbx, qword_ptr(t[2])).unwrap();
        a.dec(ecx).unwrap();
        a.jnz(top).unwrap();
        a.jmp(end).unwrap();
        for (label, v) in t.iter_mut().zip([3u64, 4, 0x77]) {
            a.set_label(label).unwrap();
            a.dq(&[v]).unwrap();
        }
        a.set_label(&mut end).unwrap();
        a.nop().unwrap();
    });
    let setup = |cpu: &mut CpuState, _: &mut PhysMem| cpu.gpr[1] = TURNS;
    let o = run_both(CpuMode::Long64, &code, setup);
    assert_eq!((o.r(0), o.r(3)), (7 * TURNS, 0x77));
    let jit = run_tier(Tier::Jit, CpuMode::Long64, &code, &setup);
    assert!(
        jit.cpu.jit_grouped_hits >= 3 * (TURNS - 5),
        "{} grouped accesses",
        jit.cpu.jit_grouped_hits
    );
}
