//! Debian's stock x86-64 kernel with a busybox initramfs (built from Debian packages by
//! `guest-images/linux/build.sh`) boots under crane86, runs the deterministic checks script
//! (`guest-images/linux/checks`: md5sum, sha256sum, gzip round trip, sort, awk arithmetic
//! over a generated file of a few MiB) and powers off; the results must equal those of the
//! same busybox run on the host, and every line must equal QEMU TCG's for the same boot.
//!
//! The image build downloads the kernel and busybox packages with apt the first time and
//! reuses them afterwards (`target/guest/linux-amd64/debs`).

use std::io::Read;
use std::path::{Path, PathBuf};
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

/// Builds (or reuses) the amd64 guest images once per test process.
fn images() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let out = repo().join("target/guest/linux-amd64");
        let status = Command::new("bash")
            .arg(repo().join("guest-images/linux/build.sh"))
            .args(["--arch", "amd64", "--out"])
            .arg(&out)
            .status()
            .expect("run guest-images/linux/build.sh");
        assert!(status.success(), "building the Linux guest images failed");
        out
    })
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

/// The script's result lines (`label: value`), from the boot marker to the end marker.
fn results(output: &str) -> Vec<String> {
    let lines: Vec<&str> = output.lines().collect();
    let start = lines
        .iter()
        .position(|l| l.trim() == "crane86: boot complete")
        .unwrap_or_else(|| panic!("no boot marker in the output:\n{output}"));
    let end = lines
        .iter()
        .position(|l| l.trim() == "crane86: checks done")
        .unwrap_or_else(|| panic!("the checks did not finish:\n{output}"));
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

/// crane86's result lines, from one boot shared by the tests of this file.
fn crane86_boot() -> Vec<String> {
    static LINES: OnceLock<Vec<String>> = OnceLock::new();
    LINES.get_or_init(boot_once).clone()
}

fn boot_once() -> Vec<String> {
    let dir = images();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_crane86"));
    cmd.arg("run")
        .arg("--kernel")
        .arg(dir.join("vmlinuz"))
        .arg("--initrd")
        .arg(dir.join("initrd.img"))
        .args(["-m", MEM_MIB, "--append", APPEND]);
    let (out, status) = run(cmd);
    assert_eq!(status, Some(0), "crane86 did not power off cleanly:\n{out}");
    results(&out)
}

#[test]
fn checks_match_the_host_busybox() {
    let dir = images();
    let mut host = Command::new(dir.join("busybox"));
    host.arg("sh").arg(repo().join("guest-images/linux/checks"));
    let (out, status) = run(host);
    assert_eq!(status, Some(0), "the checks failed on the host:\n{out}");
    let want: Vec<String> = out.lines().map(str::to_string).collect();
    let want = portable(&want[..want.len() - 1]);
    let got = crane86_boot();
    assert_eq!(portable(&got), want);
    assert!(got.contains(&"arch: x86_64".to_string()), "{got:?}");
}

#[test]
fn checks_match_qemu_tcg() {
    let dir = images();
    let mut q = Command::new("qemu-system-x86_64");
    q.args(["-accel", "tcg", "-m", MEM_MIB, "-nographic", "-no-reboot"])
        .arg("-kernel")
        .arg(dir.join("vmlinuz"))
        .arg("-initrd")
        .arg(dir.join("initrd.img"))
        .args(["-append", APPEND]);
    let (out, status) = run(q);
    assert_eq!(status, Some(0), "QEMU did not power off cleanly:\n{out}");
    assert_eq!(crane86_boot(), results(&out));
}
