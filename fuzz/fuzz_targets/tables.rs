//! The `tables` harness (`crane86_fuzzing::tables`) as a libFuzzer target: a finding panics,
//! which libFuzzer reports as a crash with the input that caused it.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Err(finding) = crane86_fuzzing::tables::run(data) {
        panic!("{finding}");
    }
});
