//! The `crane86` binary as a user runs it: exit statuses, output, statistics, and one clear
//! line for every kind of bad input.

use std::process::{Command, Output};

mod common;

fn crane86(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_crane86"))
        .args(args)
        .output()
        .expect("the crane86 binary runs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `crane86` alone boots the Debian guest (building its image first when missing) to a
/// shell on the console: commands piped to stdin run there, and `poweroff -f` ends the run
/// with status 0.
#[test]
fn no_arguments_boots_debian_to_a_shell() {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = Command::new(env!("CARGO_BIN_EXE_crane86"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the crane86 binary runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"echo hello-$((6*7))\npoweroff -f\n")
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    assert!(out.contains("crane86: boot complete"), "{out}");
    assert!(out.lines().any(|l| l.trim() == "hello-42"), "{out}");
}

#[test]
fn the_bundled_guest_runs_by_name() {
    let o = crane86(&["run", "--guest", "crc32"]);
    let want = crane86_guests::by_name("crc32", 64)
        .unwrap()
        .expected_output;
    assert_eq!(text(&o.stdout), want);
    assert_eq!(
        o.status.code(),
        Some(1),
        "isa-debug-exit 0 gives (0 << 1) | 1"
    );
}

#[test]
fn debug_exit_becomes_the_exit_status_and_stats_are_json() {
    let o = crane86(&["run", "--guest", "sieve", "--tier", "jit", "--stats=json"]);
    assert_eq!(
        o.status.code(),
        Some(1),
        "isa-debug-exit 0 gives (0 << 1) | 1"
    );
    assert!(text(&o.stdout).starts_with("sieve "));
    let err = text(&o.stderr);
    let json: serde_json::Value = serde_json::from_str(err.lines().last().unwrap()).unwrap();
    assert!(json["insns"]["jit"].as_u64().unwrap() > 1_000_000);
    assert!(json["blocks"]["compiled"].as_u64().unwrap() > 0);
    assert!(json["exits"]["chained"].as_u64().unwrap() > 0);
}

#[test]
fn the_text_statistics_name_every_counter() {
    let o = crane86(&["run", "--guest", "strings", "--mode", "32", "--stats"]);
    let err = text(&o.stderr);
    for row in [
        "guest instructions",
        "blocks compiled",
        "us/guest insn",
        "cache lookups",
        "chained",
        "invalidations",
        "code bytes",
    ] {
        assert!(err.contains(row), "missing `{row}` in\n{err}");
    }
}

#[test]
fn bad_input_gets_one_clear_line_and_a_failure_status() {
    let cases: [(&[&str], &str); 5] = [
        (
            &["run", "--flat", "/nonexistent/guest.bin"],
            "cannot read flat image /nonexistent/guest.bin",
        ),
        (&["run", "--guest", "nope"], "no bundled guest `nope`"),
        (
            &["run", "--multiboot", "/nonexistent/k.elf"],
            "cannot read multiboot kernel",
        ),
        (&["run", "--flat", "/dev/null"], "is empty"),
        (
            &[
                "run",
                "--flat",
                "Cargo.toml",
                "--load-addr",
                "0xfffff000",
                "-m",
                "1",
            ],
            "does not fit in 1 MiB",
        ),
    ];
    for (args, want) in cases {
        let o = crane86(args);
        let err = text(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: one line, got {err}");
        assert!(err.contains(want), "{args:?}: `{want}` not in {err}");
    }
    let o = crane86(&["run", "--flat", "x", "--mode", "48"]);
    assert_eq!(
        o.status.code(),
        Some(2),
        "argument errors are clap's status 2"
    );
}

#[test]
fn a_multiboot_file_that_is_not_one_is_refused_clearly() {
    let o = crane86(&["run", "--multiboot", "Cargo.toml"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o.stderr).contains("no multiboot v1 header"),
        "{}",
        text(&o.stderr)
    );
}

#[test]
fn conformance_host_ends_with_the_summary_line() {
    let o = crane86(&[
        "conformance",
        "host",
        "--inputs",
        "5",
        "--filter",
        "Adc_rm32",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    let last = out.lines().last().unwrap();
    assert!(
        last.starts_with("conformance host: forms=") && last.ends_with("mismatches=0"),
        "{last}"
    );
}

#[test]
fn perf_map_names_every_compiled_block() {
    let child = Command::new(env!("CARGO_BIN_EXE_crane86"))
        .args(["run", "--guest", "crc32", "--tier", "jit", "--perf-map"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1), "the guest's debug exit 0");
    let path = format!("/tmp/perf-{pid}.map");
    let map = std::fs::read_to_string(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    let lines: Vec<&str> = map.lines().collect();
    assert!(lines.len() > 10, "{} blocks named", lines.len());
    for l in lines {
        let f: Vec<&str> = l.split(' ').collect();
        assert_eq!(f.len(), 3, "{l}");
        assert!(u64::from_str_radix(f[0], 16).is_ok_and(|a| a != 0), "{l}");
        assert!(u64::from_str_radix(f[1], 16).is_ok_and(|n| n > 0), "{l}");
        assert!(f[2].starts_with("guest_"), "{l}");
    }
}

/// `--timeout` ends a spinning guest on either board with status 121 and one line.
#[test]
fn a_timeout_ends_a_spinning_guest_with_its_own_status() {
    let dir = std::env::temp_dir().join(format!("crane86-timeout-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // Flat: `jmp $`.
    let flat = dir.join("spin.bin");
    std::fs::write(&flat, [0xeb, 0xfe]).unwrap();
    // Multiboot: `cli; jmp $`.
    let mb = common::multiboot_image(&[0xfa, 0xeb, 0xfe]);
    let multiboot = dir.join("spin.mb");
    std::fs::write(&multiboot, &mb).unwrap();
    for args in [
        vec!["run", "--flat", flat.to_str().unwrap(), "--timeout", "1"],
        vec![
            "run",
            "--multiboot",
            multiboot.to_str().unwrap(),
            "--timeout",
            "1",
        ],
    ] {
        let t0 = std::time::Instant::now();
        let o = crane86(&args);
        let took = t0.elapsed();
        let err = text(&o.stderr);
        assert_eq!(o.status.code(), Some(121), "{args:?}: {err}");
        assert!(err.contains("crane86: timeout"), "{args:?}: {err}");
        assert!(
            took < std::time::Duration::from_secs(10),
            "{args:?}: {took:?}"
        );
    }
    let o = crane86(&["run", "--flat", flat.to_str().unwrap(), "--timeout", "0"]);
    assert_eq!(o.status.code(), Some(2), "clap refuses a zero timeout");
    let _ = std::fs::remove_dir_all(&dir);
}
