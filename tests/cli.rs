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
    // The JIT tier compiles every block before it runs (the interpreter runs only the
    // port writes, which are left to the run loop) and never uses baseline code.
    let insns = &json["insns"];
    let n = |k: &str| insns[k].as_u64().unwrap();
    assert!(n("interp") < 1000, "{insns}");
    assert_eq!(n("baseline"), 0, "{insns}");
    assert_eq!(
        n("total"),
        n("interp") + n("baseline") + n("jit"),
        "{insns}"
    );
    assert_eq!(json["interrupts"].as_u64(), Some(0));
    assert!(json["blocks"]["compiled"].as_u64().unwrap() > 0);
    // Every compile is counted in one of the two optimisation levels, whose time is split
    // among the parts, which add up to the whole (`--jit-opt tiered` compiles quickly first,
    // then optimises sieve's hot loops).
    let compile = &json["compile"];
    let count = |t: &str| compile[t]["compiles"].as_u64().unwrap();
    assert_eq!(
        count("unoptimised") + count("optimised"),
        json["blocks"]["compiled"].as_u64().unwrap()
    );
    for (t, optimiser) in [("unoptimised", false), ("optimised", true)] {
        let tier = &compile[t];
        assert!(count(t) > 0, "{t}: {tier}");
        let ms = |k: &str| tier[k].as_f64().unwrap();
        for part in ["build_ms", "lower_ms", "regalloc_ms", "emit_ms"] {
            assert!(ms(part) > 0.0, "{t}: {part} in {tier}");
        }
        assert_eq!(ms("optimise_ms") > 0.0, optimiser, "{t}: {tier}");
        let parts: f64 = [
            "build_ms",
            "optimise_ms",
            "lower_ms",
            "regalloc_ms",
            "emit_ms",
            "cranelift_other_ms",
        ]
        .iter()
        .map(|k| ms(k))
        .sum();
        assert!((parts - ms("ms")).abs() < 1e-6 * ms("ms"), "{t}: {tier}");
    }
    // The vCPU thread's phases were sampled: shares of seven phases that add up to 100%.
    let phases = json["phases_percent"].as_object().expect("sampled phases");
    assert_eq!(phases.len(), 7, "{phases:?}");
    let total: f64 = phases.values().map(|v| v.as_f64().unwrap()).sum();
    assert!((total - 100.0).abs() < 1e-6, "{phases:?}");
    let exits = &json["exits"];
    assert!(exits["chained"].as_u64().is_some());
    assert!(exits["dispatched"].as_u64().unwrap() > 0);
}

/// The crc32 guest spends its ~20 ms in one compiled loop: generated code is the largest of
/// the sampled phases (70-90% of the samples; the loop is compiled on the compile thread,
/// which is not sampled).
#[test]
fn the_phase_samples_find_a_compiled_loop_in_generated_code() {
    let o = crane86(&["run", "--guest", "crc32", "--stats=json"]);
    let err = text(&o.stderr);
    let json: serde_json::Value = serde_json::from_str(err.lines().last().unwrap()).unwrap();
    let phases = json["phases_percent"].as_object().expect("sampled phases");
    let share = |k: &str| phases[k].as_f64().unwrap();
    let code = share("generated_code");
    for (k, v) in phases {
        assert!(
            k == "generated_code" || v.as_f64().unwrap() < code,
            "{phases:?}"
        );
    }
    assert_eq!(share("idle"), 0.0, "crc32 never halts: {phases:?}");
}

#[test]
fn the_text_statistics_name_every_counter() {
    let o = crane86(&["run", "--guest", "strings", "--mode", "32", "--stats"]);
    let err = text(&o.stderr);
    for row in [
        "guest instructions",
        "blocks compiled",
        "us/guest insn",
        "compiles, unoptimised",
        "register allocation",
        "vCPU thread by phase",
        "generated code",
        "cache lookups",
        "chained",
        "invalidations",
        "code bytes",
        "baseline code",
        "exceptions delivered",
        "interrupts delivered",
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

/// A panic inside a guest's run (forced here by the test-only `CRANE86_TEST_PANIC_AT_INSNS`)
/// is crane86's bug: one line saying so, the guest's state, the code at CS:RIP, where to
/// report it with the command line, and status 122; Rust's "panicked at" and backtrace only
/// when `RUST_BACKTRACE` asks for them. On the flat and the PC board.
#[test]
fn an_internal_error_reports_the_guest_state_and_its_own_status() {
    let dir = std::env::temp_dir().join(format!("crane86-internal-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // Multiboot: `cli; jmp $`.
    let multiboot = dir.join("spin.mb");
    std::fs::write(&multiboot, common::multiboot_image(&[0xfa, 0xeb, 0xfe])).unwrap();
    let mb = multiboot.to_str().unwrap();
    let cases: [(&[&str], &str, bool); 3] = [
        (&["run", "--guest", "crc32"], "64-bit mode", false),
        (&["run", "--guest", "crc32"], "64-bit mode", true),
        (&["run", "--multiboot", mb], "32-bit protected mode", false),
    ];
    for (args, mode, backtrace) in cases {
        let env = ("CRANE86_TEST_PANIC_AT_INSNS", "1000");
        let err = internal_error(args, env, backtrace);
        let reason = "test-only panic after 1000 guest instructions";
        assert_internal_report(&err, args, reason, mode, Some(1000), backtrace);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A panic inside a helper that generated code called (a memory slow path here, forced by
/// the test-only `CRANE86_TEST_HELPER_PANIC_AT_INSNS`) cannot unwind through the helper's
/// `extern "C"` frame: the helper catches it, the code leaves, and the run reports it as any
/// other internal error instead of aborting. In compiled and in baseline code.
#[test]
fn a_panic_in_a_helper_of_generated_code_gets_the_internal_error_report() {
    for tier in ["jit", "baseline"] {
        let args: &[&str] = &["run", "--guest", "crc32", "--tier", tier];
        let env = ("CRANE86_TEST_HELPER_PANIC_AT_INSNS", "0");
        let err = internal_error(args, env, false);
        let reason = "test-only panic in a helper";
        assert_internal_report(&err, args, reason, "64-bit mode", None, false);
    }
}

/// Runs crane86 with `args` and the test-only panic variable `env`, checks status 122 and
/// returns its standard error.
fn internal_error(args: &[&str], env: (&str, &str), backtrace: bool) -> String {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_crane86"));
    cmd.args(args).env(env.0, env.1);
    if backtrace {
        cmd.env("RUST_BACKTRACE", "1");
    } else {
        cmd.env_remove("RUST_BACKTRACE");
    }
    let o = cmd.output().unwrap();
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(122), "{args:?}: {err}");
    err
}

/// The internal-error report in `err`: the reason line (naming `reason`), the guest state
/// in `mode` (with `retired` instructions, if given), the registers, the block at CS:RIP,
/// the request to report with the command line `args`, and Rust's own output only if
/// `backtrace`.
fn assert_internal_report(
    err: &str,
    args: &[&str],
    reason: &str,
    mode: &str,
    retired: Option<u64>,
    backtrace: bool,
) {
    let mut lines = err
        .lines()
        .skip_while(|l| !l.starts_with("crane86: internal error"));
    let first = lines
        .next()
        .unwrap_or_else(|| panic!("no reason line in {err}"));
    assert!(
        first.contains("a bug in crane86, not a fault of the guest") && first.contains(reason),
        "{args:?}: {first}"
    );
    let state = lines.next().unwrap();
    assert!(
        state.starts_with("crane86: guest state: ")
            && state.contains(mode)
            && state.contains("CS:RIP 0008:0x")
            && retired.is_none_or(|n| state.contains(&format!("{n} instructions retired"))),
        "{state}"
    );
    for reg in [
        "rip=", "rax=", "rsp=", "r15=", "rflags=", "cr0=", "cr3=", "cr4=", "efer=",
    ] {
        assert!(err.contains(reg), "{args:?}: no {reg} in {err}");
    }
    assert!(err.contains("crane86: the block at CS:RIP:"), "{err}");
    let last = err.lines().last().unwrap();
    assert!(
        last.starts_with("crane86: please report this crane86 bug")
            && last.ends_with(&args.join(" ")),
        "{last}"
    );
    let noise = err.contains("panicked at") || err.contains("stack backtrace");
    assert_eq!(
        noise, backtrace,
        "{args:?}, RUST_BACKTRACE: {backtrace}: {err}"
    );
    if !backtrace {
        assert!(
            err.trim_start().starts_with("crane86: internal error"),
            "nothing before the reason: {err}"
        );
    }
}

/// Bad input named in the README's table: a directory where a file should be (EISDIR, which
/// also holds when the tests run as root, unlike a chmod 000 file), a PE or random file as a
/// kernel, images and modules larger than `-m`, a GDB port in use: one line naming the file
/// or thing and the reason, status 1.
#[test]
fn more_bad_input_gets_one_line_naming_the_file() {
    let dir = std::env::temp_dir().join(format!("crane86-badinput-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let d = dir.to_str().unwrap().to_string();
    let pe = dir.join("prog.exe");
    let mut pe_bytes = b"MZ\x90\x00".to_vec();
    pe_bytes.resize(4096, 0x5a);
    std::fs::write(&pe, &pe_bytes).unwrap();
    let pe = pe.to_str().unwrap().to_string();
    let mb = dir.join("spin.mb");
    std::fs::write(&mb, common::multiboot_image(&[0xfa, 0xeb, 0xfe])).unwrap();
    let mb = mb.to_str().unwrap().to_string();
    let big = dir.join("big.bin");
    std::fs::write(&big, vec![0u8; 3 << 20]).unwrap();
    let big = big.to_str().unwrap().to_string();
    let is_dir = "Is a directory (os error 21)";
    let cases: Vec<(Vec<&str>, String)> = vec![
        (vec!["--flat", &d], format!("cannot read flat image {d}: {is_dir}")),
        (vec!["--kernel", &d], format!("cannot read kernel {d}: {is_dir}")),
        (
            vec!["--multiboot", &d],
            format!("cannot read multiboot kernel {d}: {is_dir}"),
        ),
        (
            vec!["--kernel", &pe, "--initrd", &d],
            format!("cannot read initrd {d}: {is_dir}"),
        ),
        (
            vec!["--multiboot", &mb, "--initrd", &d],
            format!("cannot read module {d}: {is_dir}"),
        ),
        (
            vec!["--kernel", &pe],
            format!("cannot load the Linux kernel {pe}: not a Linux bzImage"),
        ),
        (
            vec!["--multiboot", &pe],
            format!("cannot load the multiboot image {pe}: no multiboot v1 header"),
        ),
        (
            vec!["--multiboot", &mb, "-m", "1"],
            format!("cannot load the multiboot image {mb}: the a.out image at 0x100000 (35 bytes) does not fit in 0x100000 bytes of guest RAM"),
        ),
        (
            vec!["--multiboot", &mb, "--initrd", &big, "-m", "2"],
            format!("cannot load the multiboot image {mb}: a module at 0x101000 (3145728 bytes) does not fit"),
        ),
    ];
    for (args, want) in cases {
        let o = crane86(&[&["run"], args.as_slice()].concat());
        let err = text(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: one line, got {err}");
        assert!(err.contains(&want), "{args:?}: `{want}` not in {err}");
    }
    // A module that fits goes after the kernel even when the middle of RAM (where modules
    // go) is inside it: the guest runs (it used to be overwritten and triple-fault).
    let small = dir.join("small.bin");
    std::fs::write(&small, vec![0xffu8; 100_000]).unwrap();
    let o = crane86(&[
        "run",
        "--multiboot",
        &mb,
        "--initrd",
        small.to_str().unwrap(),
        "-m",
        "2",
        "--timeout",
        "1",
    ]);
    assert_eq!(o.status.code(), Some(121), "{}", text(&o.stderr));
    // A GDB port in use: the reason once (it used to be printed twice).
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    let o = crane86(&["run", "--guest", "crc32", &format!("--gdb=tcp:{port}")]);
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert_eq!(
        err.trim_end(),
        format!("crane86: cannot listen for GDB on 127.0.0.1:{port}: Address already in use (os error 98)")
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A guest that resets the machine (port 0xCF9) is booted again, as QEMU does, with RAM
/// and devices fresh and the kernel loaded again; with `--no-reboot` the reset ends the run
/// with status 0 and one line saying so.
#[test]
fn a_reset_reboots_unless_no_reboot() {
    let dir = std::env::temp_dir().join(format!("crane86-reboot-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // Print "boot\n" on COM1 (a byte in RAM that a reboot must clear counts the boots the
    // guest itself saw: it prints "again" if it finds its mark), then reset through 0xCF9.
    let code: Vec<u8> = [
        &[0x80, 0x3d, 0x00, 0x00, 0x20, 0x00, 0x00][..], // cmp byte [0x200000], 0
        &[0x75, 0x1c],                                   // jne again
        &[0xc6, 0x05, 0x00, 0x00, 0x20, 0x00, 0x01],     // mov byte [0x200000], 1
        &[0x66, 0xba, 0xf8, 0x03],                       // mov dx, 0x3f8
        &[
            0xb0, b'b', 0xee, 0xb0, b'o', 0xee, 0xb0, b'o', 0xee, 0xb0, b't', 0xee,
        ],
        &[0xb0, b'\n', 0xee],
        &[0xeb, 0x0d], // jmp reset
        // again: print "again\n"
        &[
            0x66, 0xba, 0xf8, 0x03, 0xb0, b'a', 0xee, 0xb0, b'\n', 0xee, 0xfa, 0xf4,
        ],
        &[0x90],
        // reset: out 0xcf9, 0x06
        &[0x66, 0xba, 0xf9, 0x0c, 0xb0, 0x06, 0xee, 0xfa, 0xf4],
    ]
    .concat();
    let mb = dir.join("reset.mb");
    std::fs::write(&mb, common::multiboot_image(&code)).unwrap();
    let mb = mb.to_str().unwrap();

    let o = crane86(&["run", "--no-reboot", "--multiboot", mb]);
    let (out, err) = (text(&o.stdout), text(&o.stderr));
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert_eq!(out, "boot\n");
    assert!(
        err.contains("reset the machine") && err.contains("--no-reboot"),
        "{err}"
    );

    let o = crane86(&["run", "--timeout", "2", "--multiboot", mb]);
    let (out, err) = (text(&o.stdout), text(&o.stderr));
    assert_eq!(o.status.code(), Some(121), "{err}");
    // The timeout may stop the guest in the middle of a line.
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines.len() > 10
            && lines[..lines.len() - 1].iter().all(|&l| l == "boot")
            && "boot".starts_with(lines[lines.len() - 1]),
        "{out}"
    );
    assert!(err.contains("rebooting (reboot 1)"), "{err}");
}
