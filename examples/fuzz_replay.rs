//! Replays one input through a fuzz harness without libFuzzer, for debugging a finding:
//! `cargo run --release --example fuzz_replay -- TARGET FILE` prints `Ok` or the finding
//! (a panic shows its backtrace as usual).

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(name), Some(file)) = (args.next(), args.next()) else {
        eprintln!("usage: fuzz_replay TARGET FILE (targets: code, devices, loaders, tables)");
        std::process::exit(2);
    };
    let Some((_, run)) = crane86_fuzzing::TARGETS.iter().find(|t| t.0 == name) else {
        eprintln!("fuzz_replay: no target named {name}");
        std::process::exit(2);
    };
    let data = match std::fs::read(&file) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("fuzz_replay: cannot read {file}: {e}");
            std::process::exit(2);
        }
    };
    let t = std::time::Instant::now();
    let result = run(&data);
    println!("{name} {file}: {result:?} in {:?}", t.elapsed());
    std::process::exit(i32::from(result.is_err()));
}
