//! GDB's Ctrl-C reaches a vCPU parked in HLT: on the PC board a HLT with interrupts on and
//! no timer armed waits for host input, and the stub's waker thread must wake it.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use crane86_gdb::{serve, Options, Outcome};
use crane86_machine::{Board, Machine, MachineConfig};
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

#[test]
fn ctrl_c_stops_a_guest_parked_in_hlt_and_kill_ends_the_run() {
    let cfg = MachineConfig {
        board: Board::Pc,
        ..MachineConfig::default()
    };
    let mut m = Machine::new(&cfg).unwrap();
    m.load_flat(&IDLE, 0x1000, 0x1000, CpuMode::Long64).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
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
        let stop = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| reply(&mut conn)));
        let Ok(stop) = stop else {
            // The vCPU never woke: serve() would block the test forever.
            eprintln!("no stop reply after Ctrl-C: the parked vCPU was not woken");
            std::process::exit(1);
        };
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
