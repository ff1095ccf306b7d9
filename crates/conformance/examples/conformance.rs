//! Runs the checker: `cargo run --release -p crane86-conformance --example conformance -- [inputs] [filter]`.
fn main() {
    let mut args = std::env::args().skip(1);
    let inputs = args.next().and_then(|a| a.parse().ok()).unwrap_or(100);
    let filter = args.next();
    let t0 = std::time::Instant::now();
    let report = crane86_conformance::run(&crane86_conformance::Options {
        inputs,
        filter,
        seed: 1,
    })
    .expect("conformance run");
    print!("{}", report.table());
    println!("{}", report.summary_line());
    eprintln!("took {:?}", t0.elapsed());
}
