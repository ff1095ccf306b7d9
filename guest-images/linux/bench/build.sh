#!/bin/bash
# Build the benchmark overlay of crane86's amd64 Linux guest:
#   OUT/bench/cbench         the C micro-benchmarks (*.c here) as one static
#                            binary (gcc -static -O2), also run on the host
#   OUT/bench/overlay.cpio.gz  gzip'd newc cpio: /bin/cbench and
#                            /etc/crane86/bench (the workload script)
#   OUT/initrd-bench.img     OUT/initrd.img followed by the overlay: Linux
#                            unpacks concatenated cpio archives in order, so
#                            the guest sees the base image plus these files
#
# Usage: guest-images/linux/bench/build.sh [--out DIR]
#   DIR defaults to target/guest/linux-amd64 under the repo root and must
#   hold the base image from guest-images/linux/build.sh (initrd.img). The
#   base image is not changed. Needs gcc with a static libc (Debian:
#   libc6-dev), cpio and gzip; as root on Debian it installs what is missing.
#
# Reproducible like the base image: fixed mtimes (SOURCE_DATE_EPOCH, default
# 0), owner 0:0, sorted names, `cpio --reproducible`, `gzip -n -9`.
set -Eeuo pipefail

prog=bench/build.sh
msg() { printf '%s: %s\n' "$prog" "$*" >&2; }
die() { printf '%s: error: %s\n' "$prog" "$*" >&2; exit 1; }
trap 'rc=$?; [ "$BASH_SUBSHELL" -gt 0 ] || printf "%s: error: command failed (exit %d) at line %d: %s\n" "$prog" "$rc" "$LINENO" "$BASH_COMMAND" >&2; exit "$rc"' ERR

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_root=$(cd "$here/../../.." && pwd)

out=
while [ $# -gt 0 ]; do
	case "$1" in
	--out) [ $# -ge 2 ] || die "--out needs a directory"; out=$2; shift 2 ;;
	--out=*) out=${1#--out=}; shift ;;
	-h | --help) sed -n '2,/^set -Eeuo/{/^set -Eeuo/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
	*) die "unknown argument '$1' (usage: $0 [--out DIR])" ;;
	esac
done
[ -n "$out" ] || out=$repo_root/target/guest/linux-amd64
[ -f "$out/initrd.img" ] ||
	die "no base image $out/initrd.img: run guest-images/linux/build.sh --arch amd64 --out $out first"
out=$(cd "$out" && pwd)

epoch=${SOURCE_DATE_EPOCH:-0}
case "$epoch" in '' | *[!0-9]*) die "SOURCE_DATE_EPOCH must be a number of seconds, got '$epoch'" ;; esac

need_tool() { # command package
	command -v "$1" >/dev/null && return 0
	[ "$(id -u)" = 0 ] && command -v apt-get >/dev/null ||
		die "$1 is missing (Debian package $2)"
	msg "installing $2 (for $1)"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null 2>&1 ||
		die "could not install $2, which provides $1"
}
need_tool gcc gcc
need_tool cpio cpio
need_tool gzip gzip
if [ ! -f "$(gcc -print-file-name=libc.a)" ]; then
	[ "$(id -u)" = 0 ] && command -v apt-get >/dev/null ||
		die "gcc has no static libc (Debian package libc6-dev)"
	msg "installing libc6-dev (static libc for gcc -static)"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libc6-dev >/dev/null 2>&1 ||
		die "could not install libc6-dev"
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/crane86-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT

# --- the C benchmarks -------------------------------------------------------
mkdir -p "$out/bench"
if ! gcc -static -O2 -Wall -Wextra -o "$work/cbench" "$here"/*.c -lm 2>"$work/gcc.err"; then
	cat "$work/gcc.err" >&2
	die "gcc failed on $here/*.c"
fi
install -m 0755 "$work/cbench" "$out/bench/cbench"

# --- overlay ----------------------------------------------------------------
umask 022
root=$work/root
mkdir -p "$root/bin" "$root/etc/crane86"
install -m 0755 "$work/cbench" "$root/bin/cbench"
install -m 0755 "$here/bench" "$root/etc/crane86/bench"
find "$root" -exec touch -h -d "@$epoch" {} +
(cd "$root" && find . -mindepth 1 -print0 | LC_ALL=C sort -z |
	cpio --quiet --null --reproducible -R 0:0 -H newc -o) |
	gzip -n -9 > "$work/overlay.cpio.gz"
install -m 0644 "$work/overlay.cpio.gz" "$out/bench/overlay.cpio.gz"
cat "$out/initrd.img" "$work/overlay.cpio.gz" > "$out/initrd-bench.img.tmp"
mv -f "$out/initrd-bench.img.tmp" "$out/initrd-bench.img"
msg "initrd-bench.img $(sha256sum < "$out/initrd-bench.img" | cut -d' ' -f1) ($(wc -c < "$out/initrd-bench.img") bytes)"
