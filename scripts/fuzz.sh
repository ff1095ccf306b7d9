#!/usr/bin/env bash
# Runs every libFuzzer target of fuzz/ (cargo fuzz) for SECONDS each (default 60), and fails
# on the first finding: a panic, a tier disagreement, one input running past 60 s, or a
# sanitizer report. The test suite (scripts/test.sh) calls it; a longer campaign is
#   scripts/fuzz.sh 3600 [TARGET...]
# with the corpus kept in fuzz/corpus/TARGET and findings in fuzz/artifacts/TARGET (both
# ignored by git; a finding, once fixed, is minimised with `cargo fuzz tmin` and copied to
# tests/fuzz-regressions/TARGET/, which tests/fuzz_regressions.rs replays).
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds=${1:-60}
shift || true
targets=("$@")
((${#targets[@]})) || targets=(code devices loaders tables)

# cargo-fuzz from crates.io, once.
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "== installing cargo-fuzz"
  cargo install cargo-fuzz --locked --quiet
fi
# libFuzzer's instrumentation and AddressSanitizer take -Z flags: the nightly toolchain when
# the machine has one, otherwise the stable compiler with its unstable flags unlocked (the
# sanitizer runtimes ship with stable's standard library on x86_64 Linux).
if rustc +nightly --version >/dev/null 2>&1; then
  toolchain=(+nightly)
else
  toolchain=()
  export RUSTC_BOOTSTRAP=1
fi

declare -A max_len=([code]=300 [devices]=4096 [loaders]=8192 [tables]=1024)
cargo "${toolchain[@]}" fuzz build -O
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t" "artifacts/$t"
  echo "== fuzz $t for ${seconds}s"
  if ! cargo "${toolchain[@]}" fuzz run -O "$t" "$PWD/corpus/$t" -- \
      -max_total_time="$seconds" -timeout=60 -rss_limit_mb=2048 \
      -max_len="${max_len[$t]:-4096}" -artifact_prefix="$PWD/artifacts/$t/" \
      -len_control=0 -print_final_stats=1 > "artifacts/$t.log" 2>&1; then
    echo "fuzz target $t found something:"
    tail -n 60 "artifacts/$t.log"
    exit 1
  fi
  grep -E "^stat::number_of_executed_units|^#[0-9]+ +DONE" "artifacts/$t.log" || true
done
