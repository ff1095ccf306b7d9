//! The `loaders` harness (`crane86_fuzzing::loaders`) as a libFuzzer target: a finding panics,
//! which libFuzzer reports as a crash with the input that caused it.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Err(finding) = crane86_fuzzing::loaders::run(data) {
        panic!("{finding}");
    }
});
