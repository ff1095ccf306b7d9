#!/usr/bin/env bash
# The whole crane86 test suite, as the README documents it: installs what the tests need
# (Debian packages, when there are any), then checks formatting and lints, runs every test in
# release mode (JIT-heavy tests are slow in debug), and a short host-CPU conformance run.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the tests need: nasm assembles the system test guests
# (guest-images/system, guest-images/pc) and QEMU TCG is the referee they are compared with
# (tests/system_guests.rs, tests/pc_guest.rs); gcc and binutils build the float guest and its native
# reference (tests/float_guest.rs), and with libc6-dev's static libc the C benchmarks of
# `crane86 bench` (guest-images/linux/bench, tests/bench.rs); cpio packs the Linux guest's initramfs
# (guest-images/linux/build.sh, tests/linux_guest.rs); tmux gives the interactive-console
# test a terminal (tests/console.rs); gdb drives the GDB stub (tests/gdb.rs).
PACKAGES=(nasm qemu-system-x86 gcc binutils libc6-dev cpio tmux gdb)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "== installing ${missing[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi

rustup component add rustfmt clippy >/dev/null 2>&1 || true

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --release -- -D warnings
echo "== conformance against the host CPU (short run; the full run is --inputs 1000)"
cargo run --release --quiet -- conformance host --inputs 200 | tail -n 3
echo "== difftest random against QEMU TCG (bounded run: 1000 programs per mode)"
for mode in 16 32 64; do
  cargo run --release --quiet -- difftest random --mode "$mode" --seed 1 --count 1000 \
    --save-dir target/difftest-regressions | tail -n 1
done
echo "== cargo test (release)"
cargo test --workspace --release
echo "== fuzz targets, 60 s each (cargo fuzz)"
./scripts/fuzz.sh 60
