//! `Machine::step`: one instruction, or one exception delivered, per call.

use crane86_machine::{Machine, MachineConfig, RunEnd};
use crane86_runtime::{CpuMode, Gpr, SegReg};

fn real_mode_machine(code: &[u8]) -> Machine {
    let mut m = Machine::new(&MachineConfig::default()).unwrap();
    m.load_flat(code, 0x1000, 0x1000, CpuMode::Real16).unwrap();
    m
}

#[test]
fn each_step_retires_one_instruction_even_once_the_code_is_hot() {
    // mov cx, 3; l: inc ax; loop l; hlt
    let code = [0xb9, 0x03, 0x00, 0x40, 0xe2, 0xfd, 0xf4];
    let mut m = real_mode_machine(&code);
    m.debug.halt_stops = true;
    let mut rips = Vec::new();
    loop {
        let end = m.step().unwrap();
        rips.push(m.cpu.rip);
        if end != RunEnd::Limit {
            assert_eq!(end, RunEnd::Halted);
            break;
        }
    }
    assert_eq!(
        rips,
        [0x1003, 0x1004, 0x1003, 0x1004, 0x1003, 0x1004, 0x1006, 0x1007]
    );
    assert_eq!(m.cpu.gpr(Gpr::Rax) & 0xffff, 3);
    assert_eq!(m.cpu.retired, 8);
}

#[test]
fn a_step_into_an_exception_stops_at_the_handler_before_its_first_instruction() {
    // int3 at 0x1000; the IVT sends vector 3 to 0000:2000, which holds `inc bx`.
    let mut m = real_mode_machine(&[0xcc, 0x90]);
    m.mem.load(3 * 4, &[0x00, 0x20, 0x00, 0x00]).unwrap();
    m.mem.load(0x2000, &[0x43]).unwrap();
    assert_eq!(m.step().unwrap(), RunEnd::Limit);
    assert_eq!(m.cpu.rip, 0x2000);
    assert_eq!(m.cpu.seg(SegReg::Cs).selector, 0);
    assert_eq!(m.cpu.gpr(Gpr::Rbx), 0);
    assert_eq!(m.step().unwrap(), RunEnd::Limit);
    assert_eq!(m.cpu.gpr(Gpr::Rbx), 1);
}
