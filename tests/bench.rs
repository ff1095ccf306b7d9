//! `crane86 bench` end to end: the quick subset filtered to the shell loop, one in-guest C
//! benchmark and one flat guest, one repetition, on crane86 and QEMU TCG; the table and the
//! JSON must show that both emulators and the host ran the in-guest ones and printed the
//! same results (the shell loop natively through the bench script and the guest's busybox,
//! the C benchmark as the same static binary).
//!
//! Like `tests/linux_guest.rs`, this needs QEMU (`apt-get install qemu-system-x86`) and
//! builds the amd64 guest image with `guest-images/linux/build.sh` (apt downloads the first
//! time); a missing piece fails the test with a message saying what to install.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn build_amd64_image() {
    let status = Command::new("bash")
        .arg(repo().join("guest-images/linux/build.sh"))
        .args(["--arch", "amd64", "--out"])
        .arg(repo().join("target/guest/linux-amd64"))
        .status()
        .expect("run guest-images/linux/build.sh");
    assert!(status.success(), "building the amd64 guest image failed");
}

#[test]
fn quick_bench_runs_both_sides_and_reports_table_and_json() {
    let qemu = Command::new("qemu-system-x86_64").arg("--version").output();
    assert!(
        qemu.is_ok_and(|o| o.status.success()),
        "qemu-system-x86_64 is needed for this test: apt-get install qemu-system-x86"
    );
    build_amd64_image();
    let json = std::env::temp_dir().join(format!("crane86-bench-{}.json", std::process::id()));
    let out = Command::new(env!("CARGO_BIN_EXE_crane86"))
        .args(["bench", "--quick", "--reps", "1", "--timeout", "150"])
        .args(["--filter", "shell-loop", "--filter", "syscall"])
        .args(["--filter", "flat-crc32", "--json"])
        .arg(&json)
        .output()
        .expect("run crane86 bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "crane86 bench failed ({}):\n{stdout}\n{stderr}",
        out.status
    );

    // The header names the machine and QEMU; the table has one row per workload.
    assert!(stdout.contains("machine: "), "{stdout}");
    assert!(stdout.contains("qemu: QEMU emulator version"), "{stdout}");
    let lines: Vec<&str> = stdout.lines().collect();
    let head = lines
        .iter()
        .position(|l| l.starts_with("workload") && l.contains("crane86/QEMU"))
        .unwrap_or_else(|| panic!("no table header:\n{stdout}"));
    assert!(lines[head + 1].starts_with("--------"), "{stdout}");
    let row = |name: &str| -> Vec<String> {
        let line = lines[head + 2..]
            .iter()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("no row for {name}:\n{stdout}"));
        line.split("  ")
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(String::from)
            .collect()
    };
    let syscall = row("syscall");
    // workload, crane86, QEMU, ratio, native, crane86/native, QEMU/native, check
    assert_eq!(syscall.len(), 8, "{syscall:?}");
    for cell in &syscall[1..3] {
        assert!(
            cell.contains(" s (") || cell.contains(" ms ("),
            "{syscall:?}"
        );
    }
    let ratio: f64 = syscall[3].parse().expect("a ratio");
    assert!(ratio > 0.0, "{syscall:?}");
    assert_eq!(syscall[7], "ok", "{syscall:?}");
    let shell = row("shell-loop");
    assert_eq!(shell.len(), 8, "{shell:?}");
    assert!(shell[4].contains(" ms ("), "a native time: {shell:?}");
    assert_eq!(shell[7], "ok", "{shell:?}");
    let flat = row("flat-crc32");
    assert_eq!(flat[2], "n/a", "{flat:?}");
    assert_eq!(flat.last().map(String::as_str), Some("ok"), "{flat:?}");

    // The JSON has every raw sample, the same on both emulators' and the host's output.
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(&json).expect("the JSON file"))
        .expect("valid JSON");
    let _ = std::fs::remove_file(&json);
    assert_eq!(doc["reps"], 1);
    assert!(doc["machine"]["qemu"].as_str().is_some(), "{doc}");
    assert!(doc["machine"]["cores"].as_u64().unwrap_or(0) >= 1, "{doc}");
    let workloads = doc["workloads"].as_array().expect("a workloads array");
    let names: Vec<&str> = workloads
        .iter()
        .filter_map(|w| w["name"].as_str())
        .collect();
    assert_eq!(names, ["shell-loop", "syscall", "flat-crc32"]);
    for (w, result) in workloads.iter().zip([
        "shell-loop: i=100000",
        "syscall: getppid calls=1000000 same=1000000",
    ]) {
        for side in ["crane86", "qemu", "native"] {
            let samples = w[side]["samples_s"].as_array().expect("samples");
            assert_eq!(samples.len(), 1, "{side}: {w}");
            assert!(samples[0].as_f64().is_some_and(|s| s > 0.0), "{side}: {w}");
            assert_eq!(w[side]["outputs"][0][0], result, "{side}: {w}");
        }
        assert_eq!(w["check"], "ok");
        assert!(w["ratio_crane86_qemu"].as_f64().is_some());
        assert!(w["ratio_crane86_native"].as_f64().is_some());
    }
    assert!(workloads[2]["qemu"].is_null());
}
