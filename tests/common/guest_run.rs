//! Running a test guest under an emulator (crane86 or QEMU) with a time limit, and comparing
//! what two runs printed: shared by the guest test files that referee crane86 against QEMU.
#![allow(dead_code)] // not every test file that shares `common` runs guests

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Assembles `guest-images/<subdir>/<name>.asm` with NASM into a flat binary under the test
/// target's temporary directory (`out_subdir`), with `guest-images/<d>/` on the include
/// path for each `d` in `include`. Returns the binary's path.
pub fn assemble(
    subdir: &str,
    name: &str,
    include: &[&str],
    out_subdir: &str,
) -> std::path::PathBuf {
    need_tool("nasm", "nasm");
    let images = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("guest-images");
    let out_dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(out_subdir);
    std::fs::create_dir_all(&out_dir).expect("create the guest output directory");
    let out = out_dir.join(format!("{name}.bin"));
    let mut cmd = Command::new("nasm");
    cmd.args(["-f", "bin", "-w+all"]);
    for d in include {
        // NASM joins the include directory and the file name as strings: keep the slash.
        let mut dir = images.join(d).into_os_string();
        dir.push("/");
        cmd.arg("-I").arg(dir);
    }
    let o = cmd
        .arg("-o")
        .arg(&out)
        .arg(images.join(subdir).join(format!("{name}.asm")))
        .output()
        .expect("nasm runs");
    assert!(
        o.status.success(),
        "nasm failed on {name}.asm:\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    out
}

/// How a run ended and what it printed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Run {
    /// Everything written to COM1.
    pub output: String,
    /// The process exit status (isa-debug-exit value V gives `(V << 1) | 1`); `None` if the
    /// run timed out or was killed by a signal.
    pub status: Option<i32>,
    /// What the emulator printed on stderr (diagnostics only, never compared).
    pub stderr: String,
}

/// Fails the test with an installation hint when `tool` (from the Debian package `package`)
/// is missing.
pub fn need_tool(tool: &str, package: &str) {
    let found = Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    assert!(
        found,
        "`{tool}` is not installed: the system guests need the Debian package `{package}`. \
         Run scripts/test.sh, which installs it (or apt-get install {package})."
    );
}

/// Runs `cmd` with its stdout and stderr captured, killing it after `limit`.
pub fn run_with_limit(mut cmd: Command, what: &str, limit: Duration) -> Run {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
    // Drain both pipes on threads so a chatty child never blocks on a full pipe.
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = r.read_to_end(&mut buf);
            String::from_utf8_lossy(&buf).into_owned()
        })
    };
    let out = drain(Box::new(child.stdout.take().unwrap()));
    let err = drain(Box::new(child.stderr.take().unwrap()));
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait for the child") {
            break s.code();
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = err.join().unwrap();
    if status.is_none() && start.elapsed() > limit {
        stderr.push_str(&format!("\n[killed after {} s]", limit.as_secs()));
    }
    Run {
        output: out.join().unwrap(),
        status,
        stderr,
    }
}

/// A line diff of two short texts (longest common subsequence), `-` for lines only in
/// `want`, `+` for lines only in `got`.
pub fn diff(want: &str, got: &str) -> String {
    let a: Vec<&str> = want.lines().collect();
    let b: Vec<&str> = got.lines().collect();
    // lcs[i][j]: length of the LCS of a[i..] and b[j..]
    let mut lcs = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, String::new());
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            out += &format!("  {}\n", a[i]);
            i += 1;
            j += 1;
        } else if j < b.len() && (i == a.len() || lcs[i][j + 1] >= lcs[i + 1][j]) {
            out += &format!("+ {}\n", b[j]);
            j += 1;
        } else {
            out += &format!("- {}\n", a[i]);
            i += 1;
        }
    }
    if !got.is_empty() && !got.ends_with('\n') {
        out += "(crane86's output does not end with a newline)\n";
    }
    out
}
