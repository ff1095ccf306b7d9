#!/bin/bash
# Build crane86's Linux guest images from Debian (bookworm) packages:
#   OUT/vmlinuz       the stock Debian kernel (linux-image-*-unsigned when
#                     there is one) of the metapackage linux-image-amd64
#                     (--arch amd64) or linux-image-686 (--arch i386)
#   OUT/initrd.img    gzip'd newc cpio: busybox-static, applet links, /init,
#                     /etc/crane86/checks, /etc/crane86/suspend
#   OUT/busybox       the same busybox binary, to run `checks` on the host
#   OUT/versions.txt  package, version, architecture and SHA256 of each .deb
#   OUT/debs/         the downloaded .debs, reused by later runs
#
# Usage: guest-images/linux/build.sh [--arch amd64|i386] [--out DIR]
#   default arch amd64, default DIR target/guest/linux-<arch> under the repo
#   root.  Runs as root on Debian 12 (uses apt-get, dpkg-deb, cpio, gzip and
#   installs cpio with apt-get when it is missing).
#
# Reproducible: the initramfs is built from a staging tree whose files all
# have mtime SOURCE_DATE_EPOCH (0 when unset), owner 0:0, fixed modes, names
# sorted bytewise, `cpio --reproducible -R 0:0 -H newc` and `gzip -n -9`, so
# two runs with the same packages give a byte-identical initrd.img (checked:
# two consecutive runs give the same sha256sum).
#
# Offline rebuilds: a .deb already in OUT/debs/ whose SHA256 matches the one
# the apt lists give for the candidate version is used as it is.
set -Eeuo pipefail

prog=build.sh
msg() { printf '%s: %s\n' "$prog" "$*" >&2; }
die() { printf '%s: error: %s\n' "$prog" "$*" >&2; exit 1; }
on_err() {
	local rc=$?
	# Report once, from the main shell (errtrace also fires in $(...)).
	[ "$BASH_SUBSHELL" -gt 0 ] ||
		printf '%s: error: command failed (exit %d) at line %d: %s\n' "$prog" "$rc" "$1" "$2" >&2
	exit "$rc"
}
trap 'on_err "$LINENO" "$BASH_COMMAND"' ERR

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_root=$(cd "$here/../.." && pwd)

arch=amd64
out=
while [ $# -gt 0 ]; do
	case "$1" in
	--arch) [ $# -ge 2 ] || die "--arch needs a value (amd64 or i386)"; arch=$2; shift 2 ;;
	--arch=*) arch=${1#--arch=}; shift ;;
	--out) [ $# -ge 2 ] || die "--out needs a directory"; out=$2; shift 2 ;;
	--out=*) out=${1#--out=}; shift ;;
	-h | --help) sed -n '2,/^set -Eeuo/{/^set -Eeuo/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
	*) die "unknown argument '$1' (usage: $0 [--arch amd64|i386] [--out DIR])" ;;
	esac
done

case "$arch" in
amd64) kernel_meta=linux-image-amd64 ;;
i386) kernel_meta=linux-image-686 ;;
*) die "unsupported --arch '$arch' (amd64 or i386)" ;;
esac
[ -n "$out" ] || out=$repo_root/target/guest/linux-$arch
mkdir -p "$out/debs"
out=$(cd "$out" && pwd)

[ "$(id -u)" = 0 ] || die "must run as root (apt-get, dpkg --add-architecture, mknod)"
if ! command -v apt-get >/dev/null || ! command -v dpkg-deb >/dev/null; then
	die "apt-get and dpkg-deb are needed: this script runs on Debian"
fi

epoch=${SOURCE_DATE_EPOCH:-0}
case "$epoch" in '' | *[!0-9]*) die "SOURCE_DATE_EPOCH must be a number of seconds, got '$epoch'" ;; esac

host_arch=$(dpkg --print-architecture)

# --- tools ----------------------------------------------------------------
apt_updated=no
apt_update() {
	[ "$apt_updated" = no ] || return 0
	msg "running apt-get update"
	local err try
	err=$(mktemp)
	for try in 1 2 3; do
		if apt-get update -qq >/dev/null 2>"$err"; then
			rm -f "$err"
			apt_updated=yes
			return 0
		fi
		[ "$try" = 3 ] || sleep 5
	done
	# Some index files failed (a mirror mid-sync, no network): apt keeps the
	# ones it has; go on with them and fail later if a package is missing.
	msg "warning: apt-get update failed, using the package lists apt has: $(grep -m1 '^E:' "$err" || echo 'no error text')"
	rm -f "$err"
	apt_updated=yes
}

need_tool() { # command package
	command -v "$1" >/dev/null && return 0
	msg "installing $2 (for $1)"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null 2>&1 || {
		apt_update
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null ||
			die "could not install $2, which provides $1"
	}
}
need_tool cpio cpio
need_tool gzip gzip
need_tool sha256sum coreutils

# --- apt metadata -----------------------------------------------------------
if [ "$arch" != "$host_arch" ] && ! dpkg --print-foreign-architectures | grep -qx "$arch"; then
	msg "adding dpkg architecture $arch"
	dpkg --add-architecture "$arch"
	apt_updated=no
	apt_update
fi

# field PKG:ARCH FIELD -> the field of the candidate version ('' if none)
field() {
	apt-cache show --no-all-versions "$1" 2>/dev/null |
		awk -v f="$2" 'BEGIN { f = f ":" } $1 == f { sub(/^[^:]*:[ \t]*/, ""); print; exit }'
}

have_pkg() { [ -n "$(field "$1" Version)" ]; }

if ! have_pkg "$kernel_meta:$arch"; then
	apt_update
	have_pkg "$kernel_meta:$arch" || die "package $kernel_meta:$arch not found in the apt lists (is this Debian 12 with main enabled?)"
fi

# --- kernel package name ----------------------------------------------------
# The metapackage depends on exactly one linux-image-<abi>-<flavour>; take the
# first name in its Depends that starts with linux-image-.
kernel_pkg=$(field "$kernel_meta:$arch" Depends | tr ',|' '\n' |
	sed -n 's/^[ \t]*\(linux-image-[^ \t(]*\).*/\1/p' | head -n 1)
[ -n "$kernel_pkg" ] || die "could not find the kernel package that $kernel_meta:$arch depends on"
if have_pkg "$kernel_pkg-unsigned:$arch"; then
	kernel_pkg=$kernel_pkg-unsigned
fi

# --- download ---------------------------------------------------------------
# fetch PKG [ARCH [record|norecord]] -> sets deb to
# OUT/debs/<pkg>_<version without epoch>_<arch>.deb and, unless norecord,
# adds the package to versions.txt
fetch() {
	local pkg=$1 arch=${2:-$arch} record=${3:-record} ver size sha file tmp mib
	ver=$(field "$pkg:$arch" Version)
	[ -n "$ver" ] || die "package $pkg:$arch not found in the apt lists"
	sha=$(field "$pkg:$arch" SHA256)
	size=$(field "$pkg:$arch" Size)
	file=$out/debs/${pkg}_${ver#*:}_$arch.deb
	if [ -f "$file" ] && [ -n "$sha" ] && [ "$(sha256sum < "$file" | cut -d' ' -f1)" = "$sha" ]; then
		msg "using cached $pkg:$arch $ver"
	else
		mib=$(( (${size:-0} + 524288) / 1048576 ))
		msg "downloading $pkg:$arch $ver ($mib MiB)"
		tmp=$(mktemp -d "$out/debs/.dl.XXXXXX")
		(cd "$tmp" && apt-get download -qq -o APT::Sandbox::User=root "$pkg:$arch=$ver" >/dev/null 2>"$tmp/.err") || {
			local why
			why=$(grep -m1 -E '^(E|W):' "$tmp/.err" || true)
			rm -rf "$tmp"
			die "could not download $pkg:$arch=$ver: ${why:-apt-get download failed}"
		}
		local got
		got=$(find "$tmp" -maxdepth 1 -name '*.deb' | head -n 1)
		[ -n "$got" ] || { rm -rf "$tmp"; die "apt-get download of $pkg:$arch=$ver produced no .deb"; }
		if [ -n "$sha" ] && [ "$(sha256sum < "$got" | cut -d' ' -f1)" != "$sha" ]; then
			rm -rf "$tmp"
			die "downloaded $pkg $ver does not match the SHA256 in the apt lists"
		fi
		mv -f "$got" "$file"
		rm -rf "$tmp"
	fi
	deb=$file
	[ "$record" = norecord ] ||
		printf '%s %s %s %s\n' "$pkg" "$ver" "$arch" "$(sha256sum < "$file" | cut -d' ' -f1)" >> "$versions_tmp"
}

work=$(mktemp -d "${TMPDIR:-/tmp}/crane86-linux.XXXXXX")
trap 'rm -rf "$work"' EXIT
versions_tmp=$work/versions.txt
printf '# package version architecture sha256-of-deb\n' > "$versions_tmp"

deb=
fetch "$kernel_pkg"
kernel_deb=$deb
fetch busybox-static
busybox_deb=$deb

# --- kernel -----------------------------------------------------------------
msg "extracting kernel"
mkdir "$work/kernel"
dpkg-deb --fsys-tarfile "$kernel_deb" | tar -x -C "$work/kernel" --wildcards './boot/vmlinuz-*' ||
	die "no boot/vmlinuz-* in $(basename "$kernel_deb")"
vmlinuz=$(find "$work/kernel/boot" -name 'vmlinuz-*' | head -n 1)
[ -n "$vmlinuz" ] || die "no boot/vmlinuz-* in $(basename "$kernel_deb")"
cp "$vmlinuz" "$out/vmlinuz.tmp"
mv -f "$out/vmlinuz.tmp" "$out/vmlinuz"
msg "kernel $(basename "$vmlinuz") -> $out/vmlinuz"

# --- busybox and its applet list --------------------------------------------
mkdir "$work/bb"
dpkg-deb -x "$busybox_deb" "$work/bb"
[ -x "$work/bb/bin/busybox" ] || die "no bin/busybox in $(basename "$busybox_deb")"

# The applet list comes from the binary itself (`busybox --list`), which is
# the only source that is exact for that build.  The target binary is tried
# first: it runs when arch = host arch, and an i386 binary also runs on an
# amd64 host whose kernel has IA-32 emulation (Debian's has).  When it cannot
# run, the host-arch busybox-static of the same Debian version is used:
# Debian builds busybox-static from one configuration for every x86 arch, so
# its list is the same.  Parsing the applet-name table out of the binary was
# rejected as fragile (its layout is a build detail).
applets=
if applets=$("$work/bb/bin/busybox" --list 2>/dev/null) && [ -n "$applets" ]; then
	:
else
	bb_ver=$(field "busybox-static:$arch" Version)
	host_ver=$(field "busybox-static:$host_arch" Version)
	[ "${bb_ver%+b*}" = "${host_ver%+b*}" ] ||
		die "cannot run the $arch busybox here, and the $host_arch busybox-static ($host_ver) is not the same version as $bb_ver, so its applet list could differ"
	msg "$arch busybox does not run here; taking the applet list from busybox-static:$host_arch $host_ver"
	fetch busybox-static "$host_arch" norecord
	dpkg-deb -x "$deb" "$work/hostbb"
	applets=$("$work/hostbb/bin/busybox" --list) || die "could not run busybox-static:$host_arch --list"
fi
[ -n "$applets" ] || die "busybox --list gave no applets"

# --- staging tree -----------------------------------------------------------
msg "building initramfs"
umask 022
root=$work/root
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,dev,proc,sys,tmp,root,etc/crane86,mnt,run,var}
chmod 1777 "$root/tmp"
chmod 0700 "$root/root"
install -m 0755 "$work/bb/bin/busybox" "$root/bin/busybox"
while IFS= read -r a; do
	case "$a" in '' | busybox | */*) continue ;; esac
	ln -s busybox "$root/bin/$a"
done <<< "$applets"
install -m 0755 "$here/init" "$root/init"
install -m 0755 "$here/checks" "$root/etc/crane86/checks"
install -m 0755 "$here/suspend" "$root/etc/crane86/suspend"
printf 'root:x:0:0:root:/root:/bin/sh\n' > "$root/etc/passwd"
printf 'root:x:0:\n' > "$root/etc/group"
printf 'crane86\n' > "$root/etc/hostname"
# The kernel opens /dev/console before it runs /init (devtmpfs is mounted
# over /dev later).
mknod -m 0600 "$root/dev/console" c 5 1
mknod -m 0666 "$root/dev/null" c 1 3
find "$root" -exec touch -h -d "@$epoch" {} +

(cd "$root" && find . -mindepth 1 -print0 | LC_ALL=C sort -z |
	cpio --quiet --null --reproducible -R 0:0 -H newc -o) |
	gzip -n -9 > "$out/initrd.img.tmp"
mv -f "$out/initrd.img.tmp" "$out/initrd.img"
install -m 0755 "$work/bb/bin/busybox" "$out/busybox"
mv -f "$versions_tmp" "$out/versions.txt"

msg "initrd.img $(sha256sum < "$out/initrd.img" | cut -d' ' -f1) ($(wc -c < "$out/initrd.img") bytes)"
msg "done: $out/vmlinuz $out/initrd.img $out/versions.txt"
