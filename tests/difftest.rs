//! `crane86 difftest random` (issue 7): random programs in 16-, 32- and 64-bit mode run in
//! crane86 (both tiers) and in QEMU TCG with no divergence, and the regression files in
//! `tests/difftest-regressions/` (cases that once diverged, with QEMU's result recorded)
//! replay in crane86 without QEMU.
//!
//! QEMU comes from the Debian package `qemu-system-x86`, which `scripts/test.sh` installs.
//! The lockstep comparison of the system guests is in `tests/system_guests.rs`.

use std::path::Path;
use std::process::Command;

use crane86_difftest::random::case::{Case, Crane86Env};
use crane86_translator::Tier;

fn random_run(mode: &str, seed: &str, count: &str) {
    let save = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("difftest-random-{mode}"));
    let out = Command::new(env!("CARGO_BIN_EXE_crane86"))
        .args([
            "difftest", "random", "--mode", mode, "--seed", seed, "--count", count,
        ])
        .arg("--save-dir")
        .arg(&save)
        .output()
        .expect("crane86 runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().last().unwrap_or_default();
    assert_eq!(
        last,
        format!("difftest: random mode={mode} cases={count} divergences=0"),
        "\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success());
}

#[test]
fn random_programs_in_real_mode_agree_with_qemu() {
    random_run("16", "7000", "400");
}

#[test]
fn random_programs_in_protected_mode_agree_with_qemu() {
    random_run("32", "8000", "400");
}

#[test]
fn random_programs_in_long_mode_agree_with_qemu() {
    random_run("64", "9000", "400");
}

/// Every saved case replays in both tiers with QEMU's recorded result.
#[test]
fn regression_cases_replay() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/difftest-regressions");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("tests/difftest-regressions exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "case"))
        .collect();
    files.sort();
    assert!(
        !files.is_empty(),
        "no regression cases in {}",
        dir.display()
    );
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap();
        let (case, expect) =
            Case::from_file(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        for tier in [Tier::Interp, Tier::Jit] {
            let mut env = Crane86Env::new(case.bits, tier).unwrap();
            let got = case.normalize(env.run(&case).unwrap());
            assert!(
                case.matches(&case.normalize(expect.clone()), &got),
                "{} ({tier:?}): crane86 gives {got:x?}, QEMU gave {expect:x?}",
                path.display()
            );
        }
    }
}
