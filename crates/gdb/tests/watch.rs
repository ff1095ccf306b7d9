//! The memory accesses the watchpoint check sees for the next instruction.

use crane86_gdb::watch::{hit, next_accesses, Access, Watchpoint};
use crane86_machine::{Machine, MachineConfig};
use crane86_runtime::{CpuMode, Gpr};
use gdbstub::target::ext::breakpoints::WatchKind;

/// 0x1000 push rax / 0x1001 mov rax, [rip + 0x100] / 0x1008 rep movsb / 0x100a lea rax, [rbx]
const CODE: [u8; 13] = [
    0x50, 0x48, 0x8b, 0x05, 0x00, 0x01, 0x00, 0x00, 0xf3, 0xa4, 0x48, 0x8d, 0x03,
];

fn machine() -> Machine {
    let mut m = Machine::new(&MachineConfig::default()).unwrap();
    m.load_flat(&CODE, 0x1000, 0x1000, CpuMode::Long64).unwrap();
    m.cpu.set_gpr(Gpr::Rsp, 0x8000);
    m.cpu.set_gpr(Gpr::Rsi, 0x3000);
    m.cpu.set_gpr(Gpr::Rdi, 0x4000);
    m.cpu.set_gpr(Gpr::Rcx, 5);
    m
}

fn at(m: &mut Machine, rip: u64) -> Vec<Access> {
    m.cpu.rip = rip;
    next_accesses(m)
}

#[test]
fn pushes_rip_relative_loads_and_string_operands_are_seen_and_lea_is_not() {
    let mut m = machine();
    let write = |addr, len| Access {
        addr,
        len,
        read: false,
        write: true,
        io: false,
    };
    let read = |addr, len| Access {
        addr,
        len,
        read: true,
        write: false,
        io: false,
    };
    assert_eq!(at(&mut m, 0x1000), [write(0x7ff8, 8)]);
    assert_eq!(at(&mut m, 0x1001), [read(0x1108, 8)]);
    let movs = at(&mut m, 0x1008);
    assert!(movs.contains(&read(0x3000, 1)), "{movs:?}");
    assert!(movs.contains(&write(0x4000, 1)), "{movs:?}");
    // A REP string instruction with a count of 0 accesses nothing.
    m.cpu.set_gpr(Gpr::Rcx, 0);
    assert_eq!(at(&mut m, 0x1008), []);
    assert_eq!(at(&mut m, 0x100a), []);
}

#[test]
fn a_watchpoint_fires_on_overlap_for_its_kind_only() {
    let w = |kind| Watchpoint {
        addr: 0x7ffc,
        len: 4,
        kind,
    };
    // push rax writes 0x7ff8..0x8000: overlaps the watched 0x7ffc..0x8000.
    let mut m = machine();
    let push = at(&mut m, 0x1000);
    assert_eq!(
        hit(&[w(WatchKind::Write)], &push),
        Some((WatchKind::Write, 0x7ffc))
    );
    assert_eq!(
        hit(&[w(WatchKind::ReadWrite)], &push),
        Some((WatchKind::ReadWrite, 0x7ffc))
    );
    assert_eq!(hit(&[w(WatchKind::Read)], &push), None);
    let elsewhere = Watchpoint {
        addr: 0x8000,
        len: 8,
        kind: WatchKind::Write,
    };
    assert_eq!(hit(&[elsewhere], &push), None);
}
