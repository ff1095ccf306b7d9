//! GDB's Ctrl-C reaches a vCPU parked in HLT: on the PC board a HLT with interrupts on and
//! no timer armed waits for host input, and the stub's waker thread must wake it.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use crane86_gdb::{serve, Options, Outcome};
use crane86_machine::{Board, Machine, MachineConfig, SerialInput};
use crane86_runtime::CpuMode;

/// 0x1000 sti / 0x1001 hlt / 0x1002 jmp 0x1001
const IDLE: [u8; 4] = [0xfb, 0xf4, 0xeb, 0xfd];

fn send(conn: &mut TcpStream, body: &str) {
    let sum = body.bytes().fold(0u8, |a, b| a.wrapping_add(b));
    write!(conn, "${body}#{sum:02x}").expect("send");
}

/// The body of the next packet (acknowledgements skipped), acknowledged.
fn reply(conn: &mut TcpStream) -> String {
    let mut byte = || {
        let mut b = [0u8];
        conn.read_exact(&mut b).expect("a reply within the timeout");
        b[0]
    };
    while byte() != b'$' {}
    let mut body = Vec::new();
    loop {
        match byte() {
            b'#' => break,
            b => body.push(b),
        }
    }
    let _checksum = [byte(), byte()];
    conn.write_all(b"+").expect("ack");
    String::from_utf8_lossy(&body).into_owned()
}

/// The machine, with a serial-input handle held as the CLI's console holds one (so that
/// its HLT parks rather than ends the run), and a listener.
fn parked_machine() -> (Machine, SerialInput, TcpListener, u16) {
    let cfg = MachineConfig {
        board: Board::Pc,
        ..MachineConfig::default()
    };
    let mut m = Machine::new(&cfg).unwrap();
    m.load_flat(&IDLE, 0x1000, 0x1000, CpuMode::Long64).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let console = m.serial_input().expect("the PC board has serial input");
    (m, console, listener, port)
}

/// Exits the test process when `f` panics (a read timed out): the vCPU was never woken,
/// and `serve` would block the test forever.
fn or_exit<T>(what: &str, f: impl FnOnce() -> T) -> T {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(v) => v,
        Err(_) => {
            eprintln!("{what}: the parked vCPU was not woken");
            std::process::exit(1);
        }
    }
}

#[test]
fn gdb_attaches_to_a_guest_parked_in_hlt() {
    let (mut m, _console, listener, port) = parked_machine();
    let client = std::thread::spawn(move || {
        // The guest is parked by the time GDB comes.
        std::thread::sleep(Duration::from_millis(500));
        let mut conn = TcpStream::connect(("127.0.0.1", port)).unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        send(&mut conn, "?");
        let stop = or_exit("attach", || reply(&mut conn));
        send(&mut conn, "k");
        stop
    });
    let outcome = serve(&mut m, listener, &Options::default()).unwrap();
    let stop = client.join().unwrap();
    assert!(stop.starts_with('S') || stop.starts_with('T'), "{stop}");
    assert_eq!(outcome, Outcome::Killed);
}

#[test]
fn ctrl_c_stops_a_guest_parked_in_hlt_and_kill_ends_the_run() {
    let (mut m, _console, listener, port) = parked_machine();
    let client = std::thread::spawn(move || {
        let mut conn = TcpStream::connect(("127.0.0.1", port)).unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        send(&mut conn, "?");
        let first = reply(&mut conn);
        send(&mut conn, "c");
        // Long enough for the guest to reach its HLT and park.
        std::thread::sleep(Duration::from_millis(500));
        conn.write_all(&[0x03]).unwrap();
        let stop = or_exit("Ctrl-C", || reply(&mut conn));
        send(&mut conn, "k");
        (first, stop)
    });
    let outcome = serve(
        &mut m,
        listener,
        &Options {
            wait: true,
            max_insns: None,
        },
    )
    .unwrap();
    let (first, stop) = client.join().unwrap();
    assert!(first.starts_with('S') || first.starts_with('T'), "{first}");
    assert!(
        stop.starts_with("T02") || stop.starts_with("S02"),
        "SIGINT: {stop}"
    );
    assert_eq!(outcome, Outcome::Killed);
    // Stopped in the idle loop: after the HLT, at the jump back to it.
    assert!(matches!(m.cpu.rip, 0x1001 | 0x1002), "rip={:#x}", m.cpu.rip);
}
