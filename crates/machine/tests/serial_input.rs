//! Host input to COM1 through `SerialInput` handles, sent from another thread while the
//! machine runs: a 32-bit guest takes IRQ 4 through the 8259, drains the UART in its handler
//! and HLTs in between with no timer armed, so only the input can wake it. Also: stop
//! requests from another thread end a run, in compiled code and in a parked HLT.

use std::thread;
use std::time::{Duration, Instant};

use crane86_machine::{Machine, RunEnd};
use crane86_runtime::CpuMode;
use crane86_translator::Tier;
use iced_x86::code_asm::*;

mod common;

use common::{asm, machine, ENTRY, HANDLER, TIERS};

const COUNT: u64 = 0x3000;
const BUF: u64 = 0x10000;
const COM1: u32 = 0x3f8;
/// Bytes the host sends in the ordering test.
const N: usize = 5000;

/// Loads `main` and `handler` behind IDT vector 0x24 (IRQ 4 with the 8259 master at 0x20).
fn load(m: &mut Machine, main: &[u8], handler: &[u8]) {
    common::load(m, main, handler, 0x24);
}

/// The guest: 8259 master at vectors 0x20-0x27 with only IRQ 4 unmasked, COM1's
/// received-data interrupt on (IER and MCR.OUT2), then HLT until `N` bytes have arrived,
/// then isa-debug-exit 0.
/// The handler copies every byte the UART holds to `BUF` in arrival order.
fn load_receiver(m: &mut Machine) {
    let main = asm(ENTRY, |a| {
        let mut top = a.create_label();
        let mut done = a.create_label();
        common::enter_flat(a)?;
        for (port, v) in [(0x20, 0x11), (0x21, 0x20), (0x21, 0x04), (0x21, 0x01)] {
            a.mov(al, v)?;
            a.out(port, al)?;
        }
        a.mov(al, 0xef)?;
        a.out(0x21, al)?;
        // IER: received data; MCR: DTR, RTS and OUT2 (the PC's IRQ gate).
        a.mov(dx, COM1 + 1)?;
        a.mov(al, 1)?;
        a.out(dx, al)?;
        a.mov(dx, COM1 + 4)?;
        a.mov(al, 0x0b)?;
        a.out(dx, al)?;
        // Check and sleep with interrupts off, and let STI's one-instruction shadow cover
        // the HLT: an interrupt taken between the check and the HLT would otherwise drain
        // the last bytes and leave the guest halted for good (the classic lost wake-up,
        // which made this test fail now and then until session 20).
        a.set_label(&mut top)?;
        a.cli()?;
        a.cmp(dword_ptr(COUNT), N as u32)?;
        a.jae(done)?;
        a.sti()?;
        a.hlt()?;
        a.jmp(top)?;
        a.set_label(&mut done)?;
        a.mov(al, 0)?;
        a.out(0xf4, al)
    });
    let handler = asm(HANDLER, |a| {
        let mut next = a.create_label();
        let mut done = a.create_label();
        a.push(eax)?;
        a.push(edx)?;
        a.push(edi)?;
        a.set_label(&mut next)?;
        a.mov(dx, COM1 + 5)?;
        a.in_(al, dx)?;
        a.test(al, 1)?;
        a.jz(done)?;
        a.mov(dx, COM1)?;
        a.in_(al, dx)?;
        a.mov(edi, dword_ptr(COUNT))?;
        a.mov(byte_ptr(edi + BUF as i32), al)?;
        a.inc(dword_ptr(COUNT))?;
        a.jmp(next)?;
        a.set_label(&mut done)?;
        a.mov(al, 0x20)?;
        a.out(0x20, al)?;
        a.pop(edi)?;
        a.pop(edx)?;
        a.pop(eax)?;
        a.iretd()
    });
    load(m, &main, &handler);
}

/// The first `n` bytes the guest stored at `BUF`.
fn read_buf(m: &mut Machine, n: usize) -> Vec<u8> {
    (0..n as u64)
        .map(|i| m.mem.read_phys(BUF + i, 1) as u8)
        .collect()
}

#[test]
fn bytes_sent_from_another_thread_reach_the_guest_in_order() {
    for tier in TIERS {
        let mut m = machine(tier);
        load_receiver(&mut m);
        let input = m.serial_input().expect("the PC board has serial input");
        let sent: Vec<u8> = (0..N).map(|i| (i * 7 + i / 251) as u8).collect();
        let to_send = sent.clone();
        let sender = thread::spawn(move || {
            // Chunks of every size from 1 to 97 bytes, with pauses, so that input arrives
            // both while the guest runs and while it is parked in HLT.
            let mut rest = &to_send[..];
            let mut size = 1;
            while !rest.is_empty() {
                let (chunk, tail) = rest.split_at(size.min(rest.len()));
                input.send(chunk);
                rest = tail;
                size = size % 97 + 1;
                if size % 13 == 0 {
                    thread::sleep(Duration::from_millis(1));
                }
            }
        });
        // A generous limit: on a loaded host the sender may be starved while the guest
        // idles through timer wake-ups (seen once at 50 M).
        let end = m.run(Some(500_000_000)).unwrap();
        sender.join().unwrap();
        assert_eq!(
            end,
            RunEnd::DebugExit(0),
            "{tier:?}: {} instructions retired",
            m.cpu.retired
        );
        let got = read_buf(&mut m, N);
        assert!(got == sent, "{tier:?}: the guest received other bytes");
    }
}

#[test]
fn input_sent_before_the_guest_listens_waits_on_the_board_until_it_does() {
    // Every byte is queued and the last handle dropped before the guest runs: the board must
    // hold them while the UART is not yet interrupt-driven, hand them over once the guest
    // sets IER and MCR.OUT2, and not end the run as "nothing can wake it" meanwhile.
    for tier in TIERS {
        let mut m = machine(tier);
        load_receiver(&mut m);
        let sent: Vec<u8> = (0..N).map(|i| (i * 13 + 5) as u8).collect();
        let input = m.serial_input().unwrap();
        input.send(&sent);
        drop(input);
        let end = m.run(Some(50_000_000)).unwrap();
        assert_eq!(end, RunEnd::DebugExit(0), "{tier:?}");
        assert!(read_buf(&mut m, N) == sent, "{tier:?}: other bytes");
    }
}

#[test]
fn a_halted_guest_waits_for_input_and_ends_when_no_sender_is_left() {
    let mut m = machine(Tier::Auto { threshold: 3 });
    load_receiver(&mut m);
    let input = m.serial_input().unwrap();
    let t0 = Instant::now();
    let sender = thread::spawn(move || {
        thread::sleep(Duration::from_millis(200));
        input.send(b"abc");
        thread::sleep(Duration::from_millis(100));
        // Dropping the last handle: nothing can wake the guest any more.
    });
    let end = m.run(Some(50_000_000)).unwrap();
    sender.join().unwrap();
    assert_eq!(end, RunEnd::Halted);
    assert!(t0.elapsed() >= Duration::from_millis(300));
    assert_eq!(read_buf(&mut m, 3), b"abc");
    // The run thread was parked, not spinning through HLTs.
    assert!(m.cpu.retired < 10_000, "{} instructions", m.cpu.retired);
}

#[test]
fn a_stop_request_ends_a_run_in_compiled_code_or_parked_in_hlt() {
    for tier in TIERS {
        // An endless loop: only the stop request (through exit_request) ends it.
        let mut m = machine(tier);
        let code = asm(ENTRY, |a| {
            let mut top = a.create_label();
            a.set_label(&mut top)?;
            a.inc(eax)?;
            a.jmp(top)
        });
        m.load_flat(&code, ENTRY, ENTRY, CpuMode::Prot32).unwrap();
        let input = m.serial_input().unwrap();
        let stopper = thread::spawn(move || {
            thread::sleep(Duration::from_millis(100));
            input.request_stop();
        });
        assert_eq!(m.run(None).unwrap(), RunEnd::Stopped, "{tier:?}");
        stopper.join().unwrap();
    }
    // Parked in HLT with a sender alive.
    let mut m = machine(Tier::Interp);
    load_receiver(&mut m);
    let input = m.serial_input().unwrap();
    let stopper = thread::spawn(move || {
        thread::sleep(Duration::from_millis(100));
        input.request_stop();
        input
    });
    assert_eq!(m.run(None).unwrap(), RunEnd::Stopped);
    drop(stopper.join().unwrap());
    // A stop requested while nothing runs ends the next run at once.
    m.serial_input().unwrap().request_stop();
    assert_eq!(m.run(None).unwrap(), RunEnd::Stopped);
}
