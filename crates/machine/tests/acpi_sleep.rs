//! ACPI S3 (suspend to RAM) on the PC board, in every tier: a 32-bit guest leaves a waking
//! vector in the FACS, arms the RTC alarm, and writes SLP_TYP = 1 with SLP_EN to PM1a_CNT;
//! the machine sleeps until a wake event (the alarm with RTC_EN, or console input) and
//! resumes in real mode at the vector, as firmware does (`crates/machine/src/pc/sleep.rs`).

use crane86_devices::acpi_pm::ACPI_PM_BASE;
use crane86_firmware::acpi::{FACS_ADDR, FACS_WAKING_VECTOR};
use crane86_machine::{Machine, RunEnd};
use iced_x86::code_asm::*;

mod common;

use common::{asm, machine, ENTRY, TIERS};

/// Where the guest's resume code sits (real mode: CS = 0x300, IP = 0).
const RESUME: u64 = 0x3000;
/// What the guest reports if the CPU ran on past its sleep request.
const NOT_ASLEEP: u32 = 0xee;

/// Loads the guest. `rtc_en`: it enables the RTC wake-up (PM1_EN.RTC_EN); `vector`: the
/// waking vector it leaves in the FACS. The resume code reports PM1_STS's high byte
/// (WAK_STS is bit 15, RTC_STS bit 10) to isa-debug-exit.
fn load(m: &mut Machine, rtc_en: bool, vector: u32) {
    let main = asm(ENTRY, |a| {
        common::enter_flat(a)?;
        a.mov(dword_ptr(FACS_ADDR + FACS_WAKING_VECTOR), vector)?;
        // RTC alarm on every second (the "don't care" value in all three alarm registers),
        // its interrupt enabled (register B's AIE).
        for reg in [1u32, 3, 5] {
            a.mov(al, reg)?;
            a.out(0x70, al)?;
            a.mov(al, 0xc0)?;
            a.out(0x71, al)?;
        }
        a.mov(al, 0x0b)?;
        a.out(0x70, al)?;
        a.in_(al, 0x71)?;
        a.or(al, 0x20)?;
        a.out(0x71, al)?;
        a.mov(dx, u32::from(ACPI_PM_BASE) + 2)?;
        a.mov(ax, if rtc_en { 0x400u32 } else { 0 })?;
        a.out(dx, ax)?;
        // S3: SLP_TYP = 1, SLP_EN.
        a.mov(dx, u32::from(ACPI_PM_BASE) + 4)?;
        a.mov(ax, 0x2400u32)?;
        a.out(dx, ax)?;
        a.mov(al, NOT_ASLEEP)?;
        a.out(0xf4, al)
    });
    common::load(m, &main, &[0xf4], 0x20);
    let mut r = CodeAssembler::new(16).unwrap();
    r.mov(dx, u32::from(ACPI_PM_BASE) + 1).unwrap();
    r.in_(al, dx).unwrap();
    r.out(0xf4, al).unwrap();
    let resume = r.assemble(0).unwrap();
    m.mem.load(RESUME, &resume).unwrap();
    // The FACS as the firmware placed it (the flat loader places no tables).
    m.mem.load(FACS_ADDR, b"FACS").unwrap();
}

/// The DSDT's `\_S3` names the sleep type the PM block sleeps on, as `\_S5` names the one
/// it powers off on.
#[test]
fn the_dsdt_and_the_pm_block_agree_on_the_sleep_types() {
    use crane86_devices::acpi_pm::{SLP_TYP_S3, SLP_TYP_S5};
    use crane86_firmware::acpi::{S3_SLP_TYP, S5_SLP_TYP};
    assert_eq!(S3_SLP_TYP, SLP_TYP_S3);
    assert_eq!(S5_SLP_TYP, SLP_TYP_S5);
}

#[test]
fn a_guest_in_s3_resumes_at_its_waking_vector_when_the_rtc_alarm_fires() {
    for tier in TIERS {
        let mut m = machine(tier);
        load(&mut m, true, RESUME as u32);
        let end = m.run(Some(1_000_000)).unwrap();
        // WAK_STS and RTC_STS.
        assert_eq!(end, RunEnd::DebugExit(0x84), "{tier:?}");
        assert_eq!(
            m.cpu.seg[crane86_runtime::SegReg::Cs as usize].selector,
            0x300
        );
        assert_eq!(m.cpu.mode, crane86_runtime::CpuMode::Real16, "{tier:?}");
        // The alarm fires at the RTC's next second (its first, 1 s after power-on); the
        // sleep skipped the time up to it.
        let now = m.pc.as_ref().unwrap().now_ns();
        assert!(
            (1_000_000_000..1_000_100_000).contains(&now),
            "{tier:?}: {now} ns"
        );
        assert!(m.cpu.retired < 1000, "{tier:?}: {}", m.cpu.retired);
        // The restarted CPU reports its phases into the machine's cell (`--stats`).
        use crane86_runtime::phase::Phase;
        m.phase.set(Phase::Devices);
        assert_eq!(m.cpu.phase.get(), Phase::Devices, "{tier:?}");
    }
}

#[test]
fn without_rtc_en_or_console_input_nothing_wakes_the_sleeping_machine() {
    for tier in TIERS {
        let mut m = machine(tier);
        load(&mut m, false, RESUME as u32);
        // No wake source and no host input to come: asleep for good, the CPU never runs on.
        assert_eq!(m.run(Some(1_000_000)).unwrap(), RunEnd::Halted, "{tier:?}");
        // A later run goes on sleeping.
        assert_eq!(m.run(Some(1_000_000)).unwrap(), RunEnd::Halted, "{tier:?}");
    }
}

#[test]
fn console_input_wakes_the_sleeping_machine() {
    // WAK_STS alone: no RTC wake-up.
    wakes_by_host_action(|input| input.send(b"\r"), 0x80);
}

/// The console's `Ctrl-A p` (`SerialInput::press_power_button`) wakes a guest that enabled
/// no RTC wake-up; PM1_STS then shows WAK_STS and PWRBTN_STS.
#[test]
fn the_power_button_wakes_the_sleeping_machine() {
    wakes_by_host_action(|input| input.press_power_button(), 0x81);
}

/// In every tier: a guest asleep without RTC_EN resumes when another thread does `act`
/// on its COM1 input handle 100 ms into the sleep, and reports PM1_STS's high byte `sts`.
fn wakes_by_host_action(act: fn(&crane86_machine::SerialInput), sts: u32) {
    for tier in TIERS {
        let mut m = machine(tier);
        load(&mut m, false, RESUME as u32);
        let input = m.serial_input().expect("the PC board has COM1 input");
        let host = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(100));
            act(&input);
        });
        assert_eq!(
            m.run(Some(1_000_000)).unwrap(),
            RunEnd::DebugExit(sts),
            "{tier:?}"
        );
        host.join().unwrap();
    }
}

#[test]
fn a_wake_up_without_a_waking_vector_asks_for_a_reset() {
    for tier in TIERS {
        let mut m = machine(tier);
        load(&mut m, true, 0);
        assert_eq!(m.run(Some(1_000_000)).unwrap(), RunEnd::Reset, "{tier:?}");
    }
}
