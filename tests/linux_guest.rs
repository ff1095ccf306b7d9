//! Debian's stock x86-64 and i386 (686) kernels, each with a busybox initramfs (built from Debian packages by
//! `guest-images/linux/build.sh`) boots under crane86, runs the deterministic checks script
//! (`guest-images/linux/checks`: md5sum, sha256sum, gzip round trip, sort, awk arithmetic
//! over a generated file of a few MiB) and powers off; the results must equal those of the
//! same busybox run on the host, and every line must equal QEMU TCG's for the same boot.
//!
//! The image build downloads the kernel and busybox packages with apt the first time and
//! reuses them afterwards (`target/guest/linux-<arch>/debs`). The i386 guest's results are
//! compared with the i386 busybox on the host: its awk computes on the x87, so its floating
//! point lines differ from amd64's (and must match the host's x87 bit for bit).

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// A boot that takes longer than this is stuck.
const TIMEOUT: Duration = Duration::from_secs(900);
const MEM_MIB: &str = "512";
const APPEND: &str = "console=ttyS0 crane86.script=checks";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// One of the two guests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Arch {
    Amd64,
    I386,
}

impl Arch {
    fn name(self) -> &'static str {
        match self {
            Arch::Amd64 => "amd64",
            Arch::I386 => "i386",
        }
    }

    /// What `uname -m` prints in the guest.
    fn machine(self) -> &'static str {
        match self {
            Arch::Amd64 => "x86_64",
            Arch::I386 => "i686",
        }
    }

    fn qemu(self) -> &'static str {
        match self {
            Arch::Amd64 => "qemu-system-x86_64",
            Arch::I386 => "qemu-system-i386",
        }
    }

    fn slot(self) -> usize {
        self as usize
    }
}

/// Builds (or reuses) the guest images once per test process; the script serialises on
/// apt and dpkg, so the two architectures are built one after the other.
fn images(arch: Arch) -> PathBuf {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    static DIRS: [OnceLock<PathBuf>; 2] = [OnceLock::new(), OnceLock::new()];
    DIRS[arch.slot()]
        .get_or_init(|| {
            let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
            let out = repo().join(format!("target/guest/linux-{}", arch.name()));
            let status = Command::new("bash")
                .arg(repo().join("guest-images/linux/build.sh"))
                .args(["--arch", arch.name(), "--out"])
                .arg(&out)
                .status()
                .expect("run guest-images/linux/build.sh");
            assert!(
                status.success(),
                "building the {arch:?} guest images failed"
            );
            out
        })
        .clone()
}
/// Runs `cmd` to completion within [`TIMEOUT`]; returns its stdout and exit status.
fn run(mut cmd: Command) -> (String, Option<i32>) {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    let mut stdout = child.stdout.take().expect("piped stdout");
    let reader = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = stdout.read_to_end(&mut s);
        s
    });
    let t0 = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait") {
            break st.code();
        }
        if t0.elapsed() > TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = reader.join().expect("reader thread");
    (String::from_utf8_lossy(&out).replace('\r', ""), status)
}

/// The checks script's result lines (`label: value`), from the boot marker to its end
/// marker.
fn results(output: &str) -> Vec<String> {
    script_results(output, "crane86: checks done")
}

/// A script's result lines (`label: value`), from the boot marker to `end`.
fn script_results(output: &str, end: &str) -> Vec<String> {
    let lines: Vec<&str> = output.lines().collect();
    let start = lines
        .iter()
        .position(|l| l.trim() == "crane86: boot complete")
        .unwrap_or_else(|| panic!("no boot marker in the output:\n{output}"));
    let end = lines
        .iter()
        .position(|l| l.trim() == end)
        .unwrap_or_else(|| panic!("the script did not finish ({end}):\n{output}"));
    lines[start + 1..end]
        .iter()
        .filter(|l| l.contains(": ") && !l.starts_with('['))
        .map(|l| l.trim().to_string())
        .collect()
}

/// The lines that depend only on busybox and a correct CPU (from `data-bytes` on).
fn portable(lines: &[String]) -> Vec<String> {
    let from = lines
        .iter()
        .position(|l| l.starts_with("data-bytes:"))
        .expect("a data-bytes line");
    lines[from..].to_vec()
}

/// crane86's result lines, from one boot per guest shared by the tests of this file.
fn crane86_boot(arch: Arch) -> Vec<String> {
    static LINES: [OnceLock<Vec<String>>; 2] = [OnceLock::new(), OnceLock::new()];
    LINES[arch.slot()].get_or_init(|| boot_once(arch)).clone()
}

/// `crane86 run` of the guest's kernel and initrd with the command line `append`.
fn crane86_cmd(arch: Arch, append: &str) -> Command {
    let dir = images(arch);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_crane86"));
    cmd.arg("run")
        .arg("--kernel")
        .arg(dir.join("vmlinuz"))
        .arg("--initrd")
        .arg(dir.join("initrd.img"))
        .args(["-m", MEM_MIB, "--append", append]);
    cmd
}

fn boot_once(arch: Arch) -> Vec<String> {
    let (out, status) = run(crane86_cmd(arch, APPEND));
    assert_eq!(
        status,
        Some(0),
        "crane86 did not power off the {arch:?} guest cleanly:\n{out}"
    );
    results(&out)
}

fn host_checks(arch: Arch) -> Vec<String> {
    let dir = images(arch);
    let mut host = Command::new(dir.join("busybox"));
    host.arg("sh").arg(repo().join("guest-images/linux/checks"));
    let (out, status) = run(host);
    assert_eq!(status, Some(0), "the checks failed on the host:\n{out}");
    let lines: Vec<String> = out.lines().map(str::to_string).collect();
    portable(&lines[..lines.len() - 1])
}

fn qemu_boot(arch: Arch) -> Vec<String> {
    results(&qemu_run(arch, APPEND))
}

/// QEMU TCG's console output for a boot of the guest with the command line `append`, which
/// must end in a clean power-off.
fn qemu_run(arch: Arch, append: &str) -> String {
    let dir = images(arch);
    let mut q = Command::new(arch.qemu());
    q.args(["-accel", "tcg", "-m", MEM_MIB, "-nographic", "-no-reboot"])
        .arg("-kernel")
        .arg(dir.join("vmlinuz"))
        .arg("-initrd")
        .arg(dir.join("initrd.img"))
        .args(["-append", append]);
    let (out, status) = run(q);
    assert_eq!(status, Some(0), "QEMU did not power off cleanly:\n{out}");
    out
}

/// The guest suspends to RAM (ACPI S3 through `/sys/power/state`) with the RTC's wake
/// alarm armed, resumes on it, and reports what its kernel saw
/// (`guest-images/linux/suspend`): on crane86 the same lines as on QEMU TCG (whose resume
/// goes through SeaBIOS), and one S3 entry and wake-up each.
fn suspend_matches_qemu_tcg(arch: Arch) {
    const APPEND_SUSPEND: &str = "console=ttyS0 crane86.script=suspend";
    const END: &str = "crane86: suspend done";
    let (out, status) = run(crane86_cmd(arch, APPEND_SUSPEND));
    assert_eq!(status, Some(0), "crane86 did not power off cleanly:\n{out}");
    let got = script_results(&out, END);
    assert_eq!(
        got,
        [
            "suspend: resumed",
            "s3-entries: 1",
            "s3-wakeups: 1",
            "rtc-alarm: no"
        ],
        "{out}"
    );
    assert_eq!(got, script_results(&qemu_run(arch, APPEND_SUSPEND), END));
}

#[test]
fn amd64_suspends_to_ram_and_resumes_as_on_qemu_tcg() {
    suspend_matches_qemu_tcg(Arch::Amd64);
}

#[test]
fn i386_suspends_to_ram_and_resumes_as_on_qemu_tcg() {
    suspend_matches_qemu_tcg(Arch::I386);
}

#[test]
fn amd64_checks_match_the_host_busybox() {
    let got = crane86_boot(Arch::Amd64);
    assert_eq!(portable(&got), host_checks(Arch::Amd64));
    assert!(
        got.contains(&format!("arch: {}", Arch::Amd64.machine())),
        "{got:?}"
    );
}

#[test]
fn amd64_checks_match_qemu_tcg() {
    assert_eq!(crane86_boot(Arch::Amd64), qemu_boot(Arch::Amd64));
}

#[test]
fn i386_checks_match_the_host_busybox() {
    let got = crane86_boot(Arch::I386);
    assert_eq!(portable(&got), host_checks(Arch::I386));
    assert!(
        got.contains(&format!("arch: {}", Arch::I386.machine())),
        "{got:?}"
    );
}

#[test]
fn i386_checks_match_qemu_tcg() {
    assert_eq!(crane86_boot(Arch::I386), qemu_boot(Arch::I386));
}

/// Ten boots in a row of the amd64 guest reach `/init` and power off, none hangs (each
/// within [`TIMEOUT`]). `/init` powers off at once when the script it is asked for does
/// not exist.
#[test]
fn ten_boots_in_a_row_reach_init_and_power_off() {
    for i in 0..10 {
        let cmd = crane86_cmd(Arch::Amd64, "console=ttyS0 quiet crane86.script=none-such");
        let (out, status) = run(cmd);
        assert_eq!(status, Some(0), "boot {i}:\n{out}");
        assert!(out.contains("crane86: boot complete"), "boot {i}:\n{out}");
    }
}

/// `--deterministic`: two boots of the amd64 guest print the same console output byte for
/// byte, dmesg timestamps included (the guest's clocks count retired instructions, and
/// interrupts land at the same instructions).
#[test]
fn deterministic_boots_are_identical() {
    let boot = || {
        let mut cmd = crane86_cmd(Arch::Amd64, "console=ttyS0 crane86.script=none-such");
        cmd.arg("--deterministic");
        let (out, status) = run(cmd);
        assert_eq!(status, Some(0), "{out}");
        assert!(out.contains("crane86: boot complete"), "{out}");
        out
    };
    let (a, b) = (boot(), boot());
    let first = a.lines().zip(b.lines()).position(|(x, y)| x != y);
    assert!(
        a == b,
        "the boots differ from line {first:?}:\n{:?}\n{:?}",
        first.and_then(|i| a.lines().nth(i)),
        first.and_then(|i| b.lines().nth(i))
    );
    // Guest time did pass: the kernel logged timestamps after zero.
    assert!(a
        .lines()
        .any(|l| l.starts_with("[    0.") && !l.starts_with("[    0.000000]")));
}
