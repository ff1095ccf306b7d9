//! Timer interrupts on the PC board, in every tier: a 32-bit guest programs the 8254 PIT
//! behind the 8259 PIC, or the local APIC timer through its MMIO page, enables interrupts,
//! HLTs, and counts the interrupts in its handler. The virtual clock (1 instruction = 1 ns,
//! plus the time HLT skips) decides when they arrive.

use crane86_machine::{Machine, RunEnd};
use crane86_runtime::CpuMode;
use iced_x86::code_asm::*;

mod common;

use common::{asm, interrupt_gate, machine, ENTRY, HANDLER, IDT, TIERS};

const COUNTER: u64 = 0x3000;

/// Loads the guest: `setup` runs first (flat segments reloaded), then `sti`, then HLT until
/// the counter reaches `want`, then the count goes out to isa-debug-exit. `eoi` ends the
/// handler's interrupt at its controller.
fn load(
    m: &mut Machine,
    vector: u8,
    want: u32,
    setup: impl FnOnce(&mut CodeAssembler) -> Result<(), IcedError>,
    eoi: impl FnOnce(&mut CodeAssembler) -> Result<(), IcedError>,
) {
    let main = asm(ENTRY, |a| {
        let mut top = a.create_label();
        common::enter_flat(a)?;
        setup(a)?;
        a.sti()?;
        a.set_label(&mut top)?;
        a.hlt()?;
        a.cmp(dword_ptr(COUNTER), want)?;
        a.jb(top)?;
        a.cli()?;
        a.mov(eax, dword_ptr(COUNTER))?;
        a.out(0xf4, al)
    });
    let handler = asm(HANDLER, |a| {
        a.push(eax)?;
        a.inc(dword_ptr(COUNTER))?;
        eoi(a)?;
        a.pop(eax)?;
        a.iretd()
    });
    common::load(m, &main, &handler, vector);
}

#[test]
fn the_pit_interrupts_through_the_pic_and_wakes_hlt() {
    const PERIOD: u32 = 1000; // PIT ticks: 1000 / 1.193182 MHz = 838 us
    for tier in TIERS {
        let mut m = machine(tier);
        load(
            &mut m,
            0x20,
            5,
            |a| {
                // 8259 master: edge, cascade, vectors 0x20-0x27, 8086 mode; only IRQ 0.
                for (port, v) in [(0x20, 0x11), (0x21, 0x20), (0x21, 0x04), (0x21, 0x01)] {
                    a.mov(al, v)?;
                    a.out(port, al)?;
                }
                a.mov(al, 0xfe)?;
                a.out(0x21, al)?;
                // 8254 counter 0, lobyte/hibyte, mode 2 (rate generator).
                a.mov(al, 0x34)?;
                a.out(0x43, al)?;
                a.mov(al, PERIOD & 0xff)?;
                a.out(0x40, al)?;
                a.mov(al, PERIOD >> 8)?;
                a.out(0x40, al)
            },
            |a| {
                a.mov(al, 0x20)?;
                a.out(0x20, al)
            },
        );
        let end = m.run(Some(1_000_000)).unwrap();
        assert_eq!(end, RunEnd::DebugExit(5), "{tier:?}");
        assert_eq!(m.stats.interrupts, 5, "{tier:?}");
        let now = m.pc.as_ref().unwrap().now_ns();
        // Five periods have passed, and HLT skipped most of them.
        assert!((4_100_000..5_100_000).contains(&now), "{tier:?}: {now} ns");
        assert!(m.cpu.retired < 10_000, "{tier:?}: {}", m.cpu.retired);
    }
}

#[test]
fn the_local_apic_timer_interrupts_through_mmio_in_periodic_mode() {
    const APIC: u32 = 0xfee0_0000;
    for tier in TIERS {
        let mut m = machine(tier);
        load(
            &mut m,
            0x31,
            7,
            |a| {
                // Software-enable (SVR), divide by 1, periodic timer on vector 0x31, 50 us.
                a.mov(dword_ptr(APIC + 0xf0), 0x1ff)?;
                a.mov(dword_ptr(APIC + 0x3e0), 0xb)?;
                a.mov(dword_ptr(APIC + 0x320), 0x2_0031)?;
                a.mov(dword_ptr(APIC + 0x380), 50_000)
            },
            |a| a.mov(dword_ptr(APIC + 0xb0), 0),
        );
        let end = m.run(Some(1_000_000)).unwrap();
        assert_eq!(end, RunEnd::DebugExit(7), "{tier:?}");
        assert_eq!(m.stats.interrupts, 7, "{tier:?}");
        let now = m.pc.as_ref().unwrap().now_ns();
        assert!((350_000..400_000).contains(&now), "{tier:?}: {now} ns");
    }
}

#[test]
fn hlt_with_interrupts_disabled_or_no_timer_ends_the_run() {
    for tier in TIERS {
        let mut m = machine(tier);
        let code = asm(ENTRY, |a| {
            a.sti()?;
            a.nop()?;
            a.hlt()
        });
        m.load_flat(&code, ENTRY, ENTRY, CpuMode::Prot32).unwrap();
        assert_eq!(m.run(Some(1000)).unwrap(), RunEnd::Halted, "{tier:?}");
    }
}

/// STI holds interrupts off for exactly one instruction (`sti; cli` takes none), and
/// interrupts that became pending while IF was clear are all taken as soon as it is set:
/// the handler's IRET reopens the window at once (no shadow after IRET), so `sti; nop; cli`
/// takes both of two pending self-IPIs. The same in every tier.
#[test]
fn the_sti_shadow_is_one_instruction_and_iret_opens_the_window() {
    const APIC: u32 = 0xfee0_0000;
    const SEEN_AFTER_SHADOW: u64 = 0x3010;
    for tier in TIERS {
        let mut m = machine(tier);
        load(
            &mut m,
            0x40,
            0,
            |a| {
                a.mov(dword_ptr(APIC + 0xf0), 0x1ff)?;
                // Two fixed self-IPIs (shorthand "self"), vectors 0x40 and 0x41, with IF=0.
                a.mov(dword_ptr(APIC + 0x300), 0x4_0040)?;
                a.mov(dword_ptr(APIC + 0x300), 0x4_0041)?;
                // A few ordinary blocks first, so that the interpreter reaches the STI by
                // chaining blocks (`Machine::chain_interpreted`), not from the run loop.
                for _ in 0..3 {
                    let mut next = a.create_label();
                    a.jmp(next)?;
                    a.set_label(&mut next)?;
                    a.nop()?;
                }
                a.sti()?;
                a.cli()?;
                a.mov(eax, dword_ptr(COUNTER))?;
                a.mov(dword_ptr(SEEN_AFTER_SHADOW), eax)?;
                a.sti()?;
                a.nop()?;
                a.cli()?;
                // Report here, before `load`'s HLT loop.
                a.mov(eax, dword_ptr(COUNTER))?;
                a.out(0xf4, al)
            },
            |a| a.mov(dword_ptr(APIC + 0xb0), 0),
        );
        m.mem
            .load(IDT + 8 * 0x41, &interrupt_gate().to_le_bytes())
            .unwrap();
        let end = m.run(Some(100_000)).unwrap();
        assert_eq!(end, RunEnd::DebugExit(2), "{tier:?}");
        let seen = &m.mem.ram()[SEEN_AFTER_SHADOW as usize..][..4];
        assert_eq!(
            seen,
            [0, 0, 0, 0],
            "{tier:?}: an interrupt inside the STI shadow"
        );
    }
}

/// The RTC's periodic interrupt (1024 Hz) reaches the CPU as IRQ 8, through the slave 8259
/// and the cascade; the handler reads register C to lower the line, as a guest must.
#[test]
fn the_rtc_periodic_interrupt_arrives_through_the_cascade() {
    for tier in TIERS {
        let mut m = machine(tier);
        load(
            &mut m,
            0x28,
            5,
            |a| {
                // Master at 0x20 with the slave on IRQ 2, slave at 0x28; unmask IRQ 2 and 8.
                for (port, v) in [
                    (0x20, 0x11),
                    (0x21, 0x20),
                    (0x21, 0x04),
                    (0x21, 0x01),
                    (0xa0, 0x11),
                    (0xa1, 0x28),
                    (0xa1, 0x02),
                    (0xa1, 0x01),
                    (0x21, 0xfb),
                    (0xa1, 0xfe),
                ] {
                    a.mov(al, v)?;
                    a.out(port, al)?;
                }
                // Register A: divider on, rate 6 (1024 Hz); register B: 24-hour, PIE.
                for (reg, v) in [(0x0a, 0x26), (0x0b, 0x42)] {
                    a.mov(al, reg)?;
                    a.out(0x70, al)?;
                    a.mov(al, v)?;
                    a.out(0x71, al)?;
                }
                Ok(())
            },
            |a| {
                a.mov(al, 0x0c)?;
                a.out(0x70, al)?;
                a.in_(al, 0x71)?;
                a.mov(al, 0x20)?;
                a.out(0xa0, al)?;
                a.out(0x20, al)
            },
        );
        let end = m.run(Some(1_000_000)).unwrap();
        assert_eq!(end, RunEnd::DebugExit(5), "{tier:?}");
        let now = m.pc.as_ref().unwrap().now_ns();
        // Five periods of 976.5625 us (the first may be short: the divider chain's phase).
        assert!((3_900_000..5_000_000).contains(&now), "{tier:?}: {now} ns");
    }
}

/// A busy loop over two blocks (no HLT) takes the local APIC timer's interrupts when they
/// are due, in every tier: the interpreter runs its blocks one after another without the
/// run loop ([`Machine::chain_interpreted`]) but still stops at the timer's deadline, and
/// compiled code within one turn of the loop.
#[test]
fn a_busy_loop_takes_timer_interrupts_on_time_in_every_tier() {
    const APIC: u32 = 0xfee0_0000;
    const PERIOD_NS: u64 = 50_000;
    const WANT: u32 = 7;
    for tier in TIERS {
        let mut m = machine(tier);
        let main = asm(ENTRY, |a| {
            let (mut top, mut skip) = (a.create_label(), a.create_label());
            common::enter_flat(a)?;
            a.mov(dword_ptr(APIC + 0xf0), 0x1ff)?;
            a.mov(dword_ptr(APIC + 0x3e0), 0xb)?;
            a.mov(dword_ptr(APIC + 0x320), 0x2_0031)?;
            a.mov(dword_ptr(APIC + 0x380), PERIOD_NS as u32)?;
            a.sti()?;
            a.set_label(&mut top)?;
            a.inc(ebx)?;
            a.test(ebx, 1)?;
            a.jz(skip)?;
            a.inc(ecx)?;
            a.set_label(&mut skip)?;
            a.cmp(dword_ptr(COUNTER), WANT)?;
            a.jb(top)?;
            a.cli()?;
            a.mov(eax, dword_ptr(COUNTER))?;
            a.out(0xf4, al)
        });
        let handler = asm(HANDLER, |a| {
            a.inc(dword_ptr(COUNTER))?;
            a.mov(dword_ptr(APIC + 0xb0), 0)?;
            a.iretd()
        });
        common::load(&mut m, &main, &handler, 0x31);
        let end = m.run(Some(10_000_000)).unwrap();
        assert_eq!(end, RunEnd::DebugExit(WANT), "{tier:?}");
        let now = m.pc.as_ref().unwrap().now_ns();
        let due = u64::from(WANT) * PERIOD_NS;
        // The handler and the loop's exit after the last interrupt take 15 instructions
        // (1 ns each). The interpreter stops at the deadline, at the end of the block it is
        // in; compiled code looks at its budget only on exits that may close a cycle (the
        // loop's JB), so it takes the interrupt within one turn of the loop (6
        // instructions). Any later shows.
        let late = match tier {
            crane86_translator::Tier::Interp => 20,
            _ => 15 + 6 + 1,
        };
        assert!(
            (due..due + late).contains(&now),
            "{tier:?}: the last interrupt {} ns late",
            now - due
        );
        if tier == crane86_translator::Tier::Interp {
            assert!(
                m.stats.interp_chained > m.stats.interp_runs / 2,
                "{} of {} interpreted blocks chained",
                m.stats.interp_chained,
                m.stats.interp_runs
            );
        }
    }
}
