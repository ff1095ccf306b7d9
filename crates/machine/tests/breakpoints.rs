//! Debugger breakpoints (`Machine::breakpoints`) stop the run before the instruction at
//! their address, in the interpreter and in compiled code, also once the code is hot and
//! its blocks chained.

use crane86_machine::{Machine, MachineConfig, RunEnd};
use crane86_runtime::{CpuMode, Gpr};
use crane86_translator::Tier;

/// 0x1000 mov ecx, 100 / 0x1005 inc eax / 0x1007 add ebx, 2 / 0x100a dec ecx /
/// 0x100c jnz 0x1005 / 0x100e hlt
const LOOP: [u8; 15] = [
    0xb9, 0x64, 0x00, 0x00, 0x00, 0xff, 0xc0, 0x83, 0xc3, 0x02, 0xff, 0xc9, 0x75, 0xf7, 0xf4,
];

fn machine(tier: Tier) -> Machine {
    let cfg = MachineConfig {
        tier,
        ..MachineConfig::default()
    };
    let mut m = Machine::new(&cfg).unwrap();
    m.load_flat(&LOOP, 0x1000, 0x1000, CpuMode::Long64).unwrap();
    m
}

fn eax(m: &Machine) -> u64 {
    m.cpu.gpr(Gpr::Rax)
}

#[test]
fn a_breakpoint_inside_a_block_stops_before_its_instruction_in_every_tier() {
    for tier in [Tier::Interp, Tier::Jit, Tier::Auto { threshold: 2 }] {
        let mut m = machine(tier);
        // Warm up: 40 iterations, so the loop is compiled and chained to itself.
        assert_eq!(m.run(Some(1 + 4 * 40)).unwrap(), RunEnd::Limit, "{tier:?}");
        assert_eq!(eax(&m), 40, "{tier:?}");
        m.breakpoints.insert(0x1007);
        for round in 1..=3 {
            assert_eq!(m.run(None).unwrap(), RunEnd::Breakpoint(0x1007), "{tier:?}");
            assert_eq!(m.cpu.rip, 0x1007, "{tier:?}");
            assert_eq!(eax(&m), 40 + round, "{tier:?}: inc ran, add did not");
            assert_eq!(m.cpu.gpr(Gpr::Rbx), 2 * (40 + round - 1), "{tier:?}");
            // A step runs the instruction the breakpoint stopped before.
            assert_eq!(m.step().unwrap(), RunEnd::Limit);
            assert_eq!(m.cpu.rip, 0x100a, "{tier:?}");
        }
        m.breakpoints.clear();
        assert_eq!(m.run(None).unwrap(), RunEnd::Halted, "{tier:?}");
        assert_eq!(eax(&m), 100, "{tier:?}");
    }
}

#[test]
fn a_breakpoint_at_the_start_of_a_hot_chained_block_stops_every_iteration() {
    for tier in [Tier::Interp, Tier::Jit] {
        let mut m = machine(tier);
        assert_eq!(m.run(Some(1 + 4 * 50)).unwrap(), RunEnd::Limit, "{tier:?}");
        m.breakpoints.insert(0x1005);
        let mut hits = 0;
        loop {
            match m.run(None).unwrap() {
                RunEnd::Breakpoint(0x1005) => {
                    hits += 1;
                    assert_eq!(eax(&m), 50 + hits - 1, "{tier:?}");
                    m.step().unwrap();
                }
                RunEnd::Halted => break,
                end => panic!("{tier:?}: unexpected {end:?}"),
            }
        }
        assert_eq!(hits, 50, "{tier:?}: one stop per remaining iteration");
        assert_eq!(eax(&m), 100, "{tier:?}");
    }
}

#[test]
fn a_breakpoint_inside_an_instruction_never_stops() {
    let mut m = machine(Tier::Jit);
    m.breakpoints.insert(0x1006);
    assert_eq!(m.run(None).unwrap(), RunEnd::Halted);
    assert_eq!(eax(&m), 100);
}

/// 0x1000 mov ecx, 100 / 0x1005 call 0x1100 / 0x100a dec ecx / 0x100c jnz 0x1005 /
/// 0x100e hlt; 0x1100 inc eax / 0x1102 ret
fn call_loop(tier: Tier) -> Machine {
    let mut m = machine(tier);
    let main = [
        0xb9, 0x64, 0x00, 0x00, 0x00, 0xe8, 0xf6, 0x00, 0x00, 0x00, 0xff, 0xc9, 0x75, 0xf7, 0xf4,
    ];
    m.mem.load(0x1000, &main).unwrap();
    m.mem.load(0x1100, &[0xff, 0xc0, 0xc3]).unwrap();
    m
}

#[test]
fn breakpoints_at_call_and_return_targets_stop_hot_compiled_code() {
    // The call is a chained exit, the return an indirect one (`jump_lookup`): neither may
    // enter a block holding a breakpoint without the run loop.
    for addr in [0x1100, 0x100a] {
        let mut m = call_loop(Tier::Jit);
        assert_eq!(m.run(Some(1 + 5 * 60)).unwrap(), RunEnd::Limit);
        assert!(m.cpu.chained > 0, "the loop runs chained");
        m.breakpoints.insert(addr);
        let mut hits = 0;
        loop {
            match m.run(None).unwrap() {
                RunEnd::Breakpoint(a) => {
                    assert_eq!(a, addr);
                    hits += 1;
                    m.step().unwrap();
                }
                RunEnd::Halted => break,
                end => panic!("{addr:#x}: unexpected {end:?}"),
            }
        }
        assert_eq!(eax(&m), 100);
        assert_eq!(hits, 40, "{addr:#x}: one stop per remaining iteration");
    }
}

#[test]
fn code_without_breakpoints_stays_chained_while_one_is_set_elsewhere() {
    let mut m = call_loop(Tier::Jit);
    // Never reached: calls and returns must still go from block to block in compiled code
    // (chain slots and `jump_lookup`) rather than through the run loop.
    m.breakpoints.insert(0x5000);
    assert_eq!(m.run(None).unwrap(), RunEnd::Halted);
    assert_eq!(eax(&m), 100);
    assert!(m.cpu.chained >= 200, "chained transfers: {}", m.cpu.chained);
    assert!(
        m.stats.jit_entries < 20,
        "entries from the loop: {}",
        m.stats.jit_entries
    );
}
