//! The GDB stub (`crane86 run --gdb tcp:PORT [--wait-gdb]`) driven by Debian's `gdb` in
//! batch mode: breakpoints, single steps, registers, memory, watchpoints, continue, kill,
//! and Ctrl-C over the raw protocol. The Linux test attaches to a booted kernel.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

/// The flat test loop (64-bit, loaded at 0x1000):
/// ```text
/// 0x1000 mov ecx, 100
/// 0x1005 inc eax
/// 0x1007 add ebx, 2
/// 0x100a mov [0x2000], eax
/// 0x1011 dec ecx
/// 0x1013 jnz 0x1005
/// 0x1015 mov al, 0x2a
/// 0x1017 out 0xf4, al      ; isa-debug-exit: status (0x2a << 1) | 1 = 85
/// ```
const LOOP: &[u8] = &[
    0xb9, 0x64, 0x00, 0x00, 0x00, 0xff, 0xc0, 0x83, 0xc3, 0x02, 0x89, 0x04, 0x25, 0x00, 0x20, 0x00,
    0x00, 0xff, 0xc9, 0x75, 0xf0, 0xb0, 0x2a, 0xe6, 0xf4,
];

/// `jmp $` at 0x1000: a guest that runs until stopped.
const SPIN: &[u8] = &[0xeb, 0xfe];

const TIMEOUT: Duration = Duration::from_secs(600);

/// A crane86 run with its GDB port.
struct Run {
    child: Child,
    port: u16,
    stdout: Receiver<String>,
}

impl Run {
    /// Waits (a minute at most) for the run to end; its exit status.
    fn wait(mut self) -> Option<i32> {
        let t0 = Instant::now();
        loop {
            if let Some(st) = self.child.try_wait().expect("wait") {
                return st.code();
            }
            if t0.elapsed() > Duration::from_secs(60) {
                let _ = self.child.kill();
                let _ = self.child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until the guest printed a line containing `marker`.
    fn wait_for_output(&self, marker: &str) {
        let t0 = Instant::now();
        while t0.elapsed() < TIMEOUT {
            match self.stdout.recv_timeout(Duration::from_secs(1)) {
                Ok(line) if line.contains(marker) => return,
                Ok(_) | Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        panic!("the guest never printed `{marker}`");
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// Starts `crane86 run ARGS --gdb tcp:PORT` and waits until the stub listens.
fn start(args: &[&str]) -> Run {
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_crane86"))
        .arg("run")
        .args(args)
        .arg(format!("--gdb=tcp:{port}"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start crane86");
    let (tx, stdout) = mpsc::channel();
    let out = child.stdout.take().expect("stdout");
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut err = BufReader::new(child.stderr.take().expect("stderr"));
    let mut line = String::new();
    loop {
        line.clear();
        if err.read_line(&mut line).expect("read stderr") == 0 {
            panic!("crane86 ended before listening");
        }
        if line.contains("gdb stub listening on") {
            break;
        }
    }
    // Keep draining stderr so the child never blocks on it.
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut err, &mut std::io::sink());
    });
    Run {
        child,
        port,
        stdout,
    }
}

fn flat(image: &[u8], extra: &[&str]) -> Run {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let path = dir.join(format!(
        "gdb-guest-{}-{}.bin",
        std::process::id(),
        free_port()
    ));
    std::fs::write(&path, image).expect("write the guest");
    let mut args = vec![
        "--flat",
        path.to_str().expect("utf-8 path"),
        "--entry",
        "0x1000",
        "--mode",
        "64",
    ];
    args.extend_from_slice(extra);
    start(&args)
}

/// Runs gdb in batch mode against `port` with `commands`; its whole output.
fn gdb(port: u16, commands: &[&str]) -> String {
    let mut cmd = Command::new("timeout");
    cmd.args(["300", "gdb", "-batch", "-nx", "-ex", "set confirm off"]);
    cmd.args(["-ex", &format!("target remote 127.0.0.1:{port}")]);
    for c in commands {
        cmd.args(["-ex", c]);
    }
    let out = cmd.output().expect("gdb runs (apt-get install gdb)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("--- gdb output ---\n{text}");
    text
}

/// The value of `$N = VALUE` lines, in order.
fn values(out: &str) -> Vec<String> {
    out.lines()
        .filter_map(|l| {
            let (lhs, rhs) = l.split_once(" = ")?;
            lhs.strip_prefix('$')?.parse::<u32>().ok()?;
            Some(rhs.trim().to_string())
        })
        .collect()
}

#[test]
fn gdb_breaks_steps_watches_and_continues_in_every_tier() {
    for tier in ["interp", "jit", "auto"] {
        let run = flat(LOOP, &["--tier", tier, "--wait-gdb"]);
        let out = gdb(
            run.port,
            &[
                "p $pc",
                "break *0x1007",
                "continue",
                "p $rax",
                "stepi",
                "p $pc",
                "continue",
                "p $rax",
                "p $rbx",
                "delete",
                "watch *(int*)0x2000",
                "continue",
                "p $pc",
                "delete",
                "hbreak *0x1011",
                "continue",
                "p $pc",
                "delete",
                "set $rbx = 0x1234",
                "p/x $rbx",
                "p/x $cr0",
                "p/x $efer",
                "p/x $cr3",
                "p/x $eflags & 0x40",
                "continue",
            ],
        );
        assert!(out.contains("Breakpoint 1, 0x0000000000001007"), "{tier}");
        assert!(
            out.contains("Hardware watchpoint 2: *(int*)0x2000"),
            "{tier}"
        );
        assert!(out.contains("Old value = 1\nNew value = 2"), "{tier}");
        assert!(out.contains("Breakpoint 3, 0x0000000000001011"), "{tier}");
        assert_eq!(
            values(&out),
            [
                "(void (*)()) 0x1000",
                "1",
                "(void (*)()) 0x100a",
                "2",
                "2",
                "(void (*)()) 0x1011",
                "(void (*)()) 0x1011",
                "0x1234",
                "0x80000033",
                "0x500",
                "0xffe000",
                // ZF: `dec ecx` left 97, so ZF is clear.
                "0x0",
            ],
            "{tier}"
        );
        // The guest ran to its end: isa-debug-exit 0x2a, status 85 (octal 0125).
        assert!(out.contains("exited with code 0125"), "{tier}: {out}");
        assert_eq!(run.wait(), Some(85), "{tier}");
    }
}

/// 0x1000 movq rax, xmm1 / 0x1005 fninit / 0x1007 fld1 / 0x1009 hlt
const FPU: &[u8] = &[0x66, 0x48, 0x0f, 0x7e, 0xc8, 0xdb, 0xe3, 0xd9, 0xe8, 0xf4];

#[test]
fn gdb_reads_and_writes_sse_x87_flags_and_system_registers() {
    let run = flat(FPU, &["--wait-gdb"]);
    let out = gdb(
        run.port,
        &[
            "set $xmm1.v2_int64[0] = 0x1122334455667788",
            "stepi",
            // The guest sees what GDB wrote.
            "p/x $rax",
            "stepi",
            "stepi",
            "p $st0",
            "p/x $fctrl",
            "p/x $fstat",
            "p/x $ftag",
            "set $st0 = 2.5",
            "p $st0",
            "p $mxcsr",
            "set $eflags = 0x243",
            "p $eflags",
            "set $cr2 = 0x1234",
            "set $fs_base = 0x5000",
            "set $k_gs_base = 0x6000",
            "p/x $cr2",
            "p/x $fs_base",
            "p/x $k_gs_base",
            "monitor info registers",
            "continue",
        ],
    );
    assert_eq!(
        values(&out),
        [
            "0x1122334455667788",
            "1",
            "0x37f",
            // TOP = 7 after one push; R7 valid, the others empty.
            "0x3800",
            "0x3fff",
            "2.5",
            "[ IM DM ZM OM UM PM ]",
            "[ CF ZF IF ]",
            "0x1234",
            "0x5000",
            "0x6000",
        ],
        "{out}"
    );
    assert!(out.contains("rflags=0000000000000243"), "{out}");
    assert!(out.contains("cr2=0000000000001234"), "{out}");
    assert!(out.contains("fs   sel=0010 base=0000000000005000"), "{out}");
    assert!(out.contains("kernel_gs_base=0000000000006000"), "{out}");
    assert!(
        out.contains("exited normally"),
        "HLT ends the flat guest: {out}"
    );
    assert_eq!(run.wait(), Some(0));
}

#[test]
fn gdb_steps_32_bit_and_real_mode_guests() {
    for (mode, second) in [("32", "0x1007"), ("16", "0x1009")] {
        let run = start(&["--guest", "crc32", "--mode", mode, "--wait-gdb"]);
        let out = gdb(
            run.port,
            &["p/x $pc", "stepi", "stepi", "p/x $pc", "continue"],
        );
        assert_eq!(values(&out), ["0x1000", second], "{mode}-bit: {out}");
        // The guest's own end: isa-debug-exit 0, status 1.
        assert!(out.contains("exited with code 01"), "{mode}-bit: {out}");
        assert_eq!(run.wait(), Some(1), "{mode}-bit");
    }
}

#[test]
fn gdb_writes_code_of_a_compiled_loop_and_the_new_code_runs() {
    let run = flat(LOOP, &["--tier", "jit", "--wait-gdb"]);
    let out = gdb(
        run.port,
        &[
            "break *0x1011",
            "continue",
            "continue",
            // `add ebx, 2` becomes `add ebx, 5` in the compiled loop body.
            "set {unsigned char}0x1009 = 5",
            "x/3xb 0x1007",
            "delete",
            "break *0x1015",
            "continue",
            "p $rbx",
            "kill",
        ],
    );
    assert!(out.contains("0x1007:\t0x83\t0xc3\t0x05"), "{out}");
    // Two iterations added 2, the other 98 added 5.
    assert_eq!(values(&out), ["494"]);
    assert_eq!(run.wait(), Some(0), "kill ends the run with status 0");
}

#[test]
fn gdb_reads_linear_and_physical_memory() {
    // The flat 64-bit machine maps linear 0xffff_8000_0000_0000 + x to physical x.
    let run = flat(LOOP, &["--wait-gdb"]);
    let out = gdb(
        run.port,
        &[
            "x/2xb 0xffff800000001005",
            "monitor translate 0xffff800000001005",
            "monitor phys on",
            "x/2xb 0x1005",
            "monitor phys off",
            "monitor info registers",
            "kill",
        ],
    );
    assert!(out.contains("0xffff800000001005:\t0xff\t0xc0"), "{out}");
    assert!(out.contains("linear 0xffff800000001005 -> physical 0x1005"));
    assert!(out.contains("0x1005:\t0xff\t0xc0"));
    assert!(out.contains("cr0=0000000080000033"));
    assert!(out.contains("cs   sel=0008"));
    assert_eq!(run.wait(), Some(0));
}

/// Sends one packet and returns the reply's body (acknowledgement mode).
fn packet(conn: &mut TcpStream, body: &str) -> String {
    let sum = body.bytes().fold(0u8, |a, b| a.wrapping_add(b));
    write!(conn, "${body}#{sum:02x}").expect("send");
    reply(conn)
}

/// Reads one packet (skipping acknowledgements) and acknowledges it.
fn reply(conn: &mut TcpStream) -> String {
    let mut body = Vec::new();
    let mut byte = [0u8];
    loop {
        conn.read_exact(&mut byte).expect("read");
        if byte[0] == b'$' {
            break;
        }
    }
    loop {
        conn.read_exact(&mut byte).expect("read");
        if byte[0] == b'#' {
            break;
        }
        body.push(byte[0]);
    }
    let mut sum = [0u8; 2];
    conn.read_exact(&mut sum).expect("checksum");
    conn.write_all(b"+").expect("ack");
    // Run-length encoding: `X*n` is X repeated 1 + (n - 29) times.
    let mut out = Vec::new();
    let mut it = body.into_iter();
    while let Some(b) = it.next() {
        if b == b'*' {
            let n = it.next().expect("a run length");
            let last = *out.last().expect("a byte to repeat");
            out.extend(std::iter::repeat_n(last, usize::from(n - 29)));
        } else {
            out.push(b);
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn gdb_attaches_to_a_running_guest_and_ctrl_c_stops_it() {
    let run = flat(SPIN, &["--tier", "jit"]);
    // No --wait-gdb: the guest is already running when the connection comes.
    std::thread::sleep(Duration::from_millis(300));
    let mut conn = TcpStream::connect(("127.0.0.1", run.port)).expect("connect");
    conn.set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let stop = packet(&mut conn, "?");
    assert!(stop.starts_with('S') || stop.starts_with('T'), "{stop}");
    // `c` has no reply until the target stops; Ctrl-C (0x03) stops it.
    let sum = b'c';
    write!(conn, "$c#{sum:02x}").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    conn.write_all(&[0x03]).unwrap();
    let stop = reply(&mut conn);
    assert!(
        stop.starts_with("T02") || stop.starts_with("S02"),
        "SIGINT: {stop}"
    );
    // The guest stands at its `jmp $`; read RIP with `g` (rip is bytes 0x80..0x88).
    let regs = packet(&mut conn, "g");
    assert_eq!(&regs[0x100..0x110], "0010000000000000", "{regs}");
    // Detach: the guest runs on, and another debugger can attach.
    assert_eq!(packet(&mut conn, "D"), "OK");
    drop(conn);
    std::thread::sleep(Duration::from_millis(300));
    let out = gdb(run.port, &["p $pc", "kill"]);
    assert_eq!(values(&out), ["(void (*)()) 0x1000"]);
    assert_eq!(run.wait(), Some(0));
}

#[test]
fn a_gdb_port_in_use_is_one_clear_error() {
    let busy = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    let out = Command::new(env!("CARGO_BIN_EXE_crane86"))
        .args(["run", "--guest", "crc32"])
        .arg(format!("--gdb=tcp:{port}"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains(&format!("cannot listen for GDB on 127.0.0.1:{port}")),
        "{err}"
    );
}

/// Linux's local APIC timer vector (`LOCAL_TIMER_VECTOR`): its handler runs on every timer
/// interrupt, also while the guest idles.
const LOCAL_TIMER_VECTOR: u64 = 0xec;

#[test]
fn gdb_attaches_to_a_running_linux_guest_breaks_steps_and_continues() {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let images = repo.join("target/guest/linux-amd64");
    let status = Command::new("bash")
        .arg(repo.join("guest-images/linux/build.sh"))
        .args(["--arch", "amd64", "--out"])
        .arg(&images)
        .status()
        .expect("run guest-images/linux/build.sh");
    assert!(status.success(), "building the amd64 guest failed");
    let (kernel, initrd) = (images.join("vmlinuz"), images.join("initrd.img"));
    let run = start(&[
        "--kernel",
        kernel.to_str().unwrap(),
        "--initrd",
        initrd.to_str().unwrap(),
        "-m",
        "512",
        "--append",
        "console=ttyS0 nokaslr",
    ]);
    run.wait_for_output("crane86: boot complete");
    // Debian's System.map is a placeholder, so the kernel address comes from the machine:
    // the IDT's gate for the timer vector. A first session finds the IDT and detaches.
    let out = gdb(run.port, &["monitor info registers", "detach"]);
    let idt = out
        .lines()
        .find_map(|l| l.strip_prefix("idtr base="))
        .and_then(|l| u64::from_str_radix(&l[..16], 16).ok())
        .unwrap_or_else(|| panic!("no IDTR in {out}"));
    assert!(out.contains("detached"), "{out}");
    let gate = format!(
        "set $g = (unsigned long *) {:#x}",
        idt + 16 * LOCAL_TIMER_VECTOR
    );
    let out = gdb(
        run.port,
        &[
            &gate,
            "set $h = ($g[0] & 0xffff) | (($g[0] >> 32) & 0xffff0000) | ($g[1] << 32)",
            "p/x $h",
            "break *$h",
            "continue",
            "p/x $pc",
            "stepi",
            "p/x $pc",
            "p/x $cs",
            "p/x $cr0 & 0x80000001",
            "p/x $efer & 0x400",
            "continue",
            "p/x $pc",
            "kill",
        ],
    );
    let v = values(&out);
    assert_eq!(v.len(), 7, "{out}");
    let handler = u64::from_str_radix(v[0].trim_start_matches("0x"), 16).unwrap();
    assert!(
        handler >= 0xffff_ffff_8000_0000,
        "a kernel text address: {handler:#x}"
    );
    assert!(
        out.contains(&format!("Breakpoint 1, {handler:#018x}")),
        "{out}"
    );
    assert_eq!(v[1], v[0], "stopped at the breakpoint");
    let stepped = u64::from_str_radix(v[2].trim_start_matches("0x"), 16).unwrap();
    assert!(
        stepped > handler && stepped <= handler + 15,
        "stepi moved one instruction: {stepped:#x}"
    );
    assert_eq!(v[3], "0x10", "the kernel code segment");
    assert_eq!(v[4], "0x80000001", "protected mode and paging");
    assert_eq!(v[5], "0x400", "long mode active");
    assert_eq!(v[6], v[0], "continue comes round to the breakpoint again");
    assert_eq!(run.wait(), Some(0));
}
