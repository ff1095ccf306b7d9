//! No host allocation per guest instruction or per interrupt once a guest is in a steady
//! state (issue 9: "no per-instruction or per-interrupt allocation in steady state"): a hot
//! loop in compiled code, page-table churn (CR3 reloads, INVLPG, page-table stores), and an
//! interrupt storm through the local APIC on the PC board each run millions of
//! instructions after a warm-up, and the allocator counts what they allocated meanwhile.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};

use crane86_machine::{Board, Machine, MachineConfig, RunEnd};
use crane86_runtime::CpuMode;
use iced_x86::code_asm::*;

mod common;

/// The system allocator, counting allocations and reallocations.
struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator, which upholds
// GlobalAlloc's contract; the counter has no effect on the memory handed out.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded with the caller's layout, as GlobalAlloc::alloc requires.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from this allocator, that is from System, with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: `ptr` came from System with `layout`; the caller guarantees `new_size`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Instructions run before counting, and while counting.
const WARM_UP: u64 = 2_000_000;
const MEASURED: u64 = 10_000_000;

/// The counter is global: the tests take turns, so that one's allocations do not count
/// against another.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn turn() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs `m` for the warm-up, then counts the allocations of the measured run; returns them
/// and how the measured run ended.
fn allocations(m: &mut Machine) -> (u64, RunEnd) {
    assert_eq!(m.run(Some(WARM_UP)).unwrap(), RunEnd::Limit);
    let before = ALLOCS.load(Ordering::Relaxed);
    let end = m.run(Some(MEASURED)).unwrap();
    (ALLOCS.load(Ordering::Relaxed) - before, end)
}

fn flat(code: &[u8]) -> Machine {
    let mut m = Machine::new(&MachineConfig::default()).unwrap();
    m.load_flat(code, 0x1000, 0x1000, CpuMode::Long64).unwrap();
    m
}

#[test]
fn a_hot_loop_allocates_nothing() {
    let _turn = turn();
    // Loads, stores, a call and a return, and a conditional branch: compiled, chained code.
    let mut a = CodeAssembler::new(64).unwrap();
    let mut top = a.create_label();
    let mut func = a.create_label();
    let mut skip = a.create_label();
    a.set_label(&mut top).unwrap();
    a.mov(rax, qword_ptr(0x8000 + rcx * 8)).unwrap();
    a.add(rax, rcx).unwrap();
    a.mov(qword_ptr(0x8000 + rcx * 8), rax).unwrap();
    a.call(func).unwrap();
    a.inc(rcx).unwrap();
    a.and(rcx, 0xff).unwrap();
    a.jmp(top).unwrap();
    a.set_label(&mut func).unwrap();
    a.test(rax, 1).unwrap();
    a.jz(skip).unwrap();
    a.inc(rbx).unwrap();
    a.set_label(&mut skip).unwrap();
    a.ret().unwrap();
    let mut m = flat(&a.assemble(0x1000).unwrap());
    let (n, end) = allocations(&mut m);
    assert_eq!(end, RunEnd::Limit);
    assert!(m.stats.insns_jit > MEASURED / 2, "{:?}", m.stats);
    assert_eq!(n, 0, "allocations in {MEASURED} instructions of a hot loop");
}

#[test]
fn page_table_churn_allocates_nothing() {
    let _turn = turn();
    let code = common::page_table_churn_code();
    let mut m = flat(&code);
    let (n, end) = allocations(&mut m);
    assert_eq!(end, RunEnd::Limit);
    assert_eq!(
        n, 0,
        "allocations in {MEASURED} instructions of page-table churn"
    );
}

#[test]
fn an_interrupt_storm_allocates_nothing() {
    let _turn = turn();
    // The local APIC timer, periodic, into a handler that signals EOI; the main loop
    // counts (the storm of tests/hostile_guests.rs, run in-process).
    let code = common::apic_storm_code(50);
    let image = common::multiboot_image(&code);
    let mut m = Machine::new(&MachineConfig {
        board: Board::Pc,
        ram_bytes: 64 << 20,
        ..Default::default()
    })
    .unwrap();
    m.load_multiboot(&image, "", &[]).unwrap();
    let before = m.stats.interrupts;
    let (n, end) = allocations(&mut m);
    assert_eq!(end, RunEnd::Limit);
    let interrupts = m.stats.interrupts - before;
    assert!(interrupts > 10_000, "only {interrupts} interrupts");
    assert_eq!(
        n, 0,
        "allocations while {interrupts} interrupts were delivered"
    );
}
