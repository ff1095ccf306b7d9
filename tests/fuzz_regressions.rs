//! The fuzz harnesses (`crates/fuzzing`) without libFuzzer: every input that ever made a
//! target fail (`tests/fuzz-regressions/TARGET/*`, minimised by `cargo fuzz tmin`) must now
//! pass, and so must a fixed sample of random inputs per target, so that the suite keeps
//! the fuzzers' oracles even where cargo-fuzz is not installed.

use std::path::Path;

use crane86_fuzzing::TARGETS;

/// Random inputs per target (`CRANE86_FUZZ_SAMPLES` overrides).
const SAMPLES: usize = 300;

#[test]
fn every_saved_finding_passes() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz-regressions");
    let mut failures = Vec::new();
    let mut n = 0;
    for (name, run) in TARGETS {
        let Ok(dir) = std::fs::read_dir(root.join(name)) else {
            continue;
        };
        for entry in dir.flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "md") {
                continue;
            }
            let data = std::fs::read(&path).unwrap();
            n += 1;
            if let Err(f) = run(&data) {
                failures.push(format!("{}: {f}", path.display()));
            }
        }
    }
    eprintln!("{n} saved findings replayed");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// xorshift64*: the sample must be the same in every run.
fn next(s: &mut u64) -> u64 {
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    s.wrapping_mul(0x2545_f491_4f6c_dd1d)
}

#[test]
fn random_inputs_pass_every_harness() {
    let samples = std::env::var("CRANE86_FUZZ_SAMPLES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(SAMPLES);
    let mut failures = Vec::new();
    for (t, (name, run)) in TARGETS.iter().enumerate() {
        let mut s = 0x9e37_79b9_7f4a_7c15 ^ t as u64;
        for i in 0..samples {
            let len = (next(&mut s) % 600) as usize;
            let data: Vec<u8> = (0..len).map(|_| next(&mut s) as u8).collect();
            if let Err(f) = run(&data) {
                failures.push(format!("{name} sample {i} ({data:02x?}): {f}"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
