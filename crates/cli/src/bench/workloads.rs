//! The benchmark suite: every workload, what it measures, where it runs, and the selection
//! by `--quick` and `--filter`.

/// A Linux guest image's architecture.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Arch {
    /// Debian's x86-64 kernel and busybox.
    Amd64,
    /// Debian's 686 kernel and busybox.
    I386,
}

impl Arch {
    /// The name `guest-images/linux/build.sh --arch` takes.
    pub fn name(self) -> &'static str {
        match self {
            Arch::Amd64 => "amd64",
            Arch::I386 => "i386",
        }
    }

    /// The QEMU system emulator for this architecture.
    pub fn qemu(self) -> &'static str {
        match self {
            Arch::Amd64 => "qemu-system-x86_64",
            Arch::I386 => "qemu-system-i386",
        }
    }
}

/// Where a workload runs and what is timed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// From the emulator's spawn to `crane86: boot complete` on the console of the base
    /// image (`initrd.img`), on crane86 and on QEMU.
    Boot(Arch),
    /// A workload of the bench script in the amd64 bench image (`initrd-bench.img`), timed
    /// between its start and end lines, on crane86 and on QEMU; all of them share one boot
    /// per repetition and side. With `native`, it is `cbench NAME`, also run on the host
    /// from spawn to exit; without, the script runs it on the host with the guest's busybox.
    InGuest {
        /// The same static binary runs natively on the host too.
        native: bool,
    },
    /// A bundled flat test guest (`crane86 run --guest NAME --mode 64`), from spawn to
    /// exit, on crane86 only: QEMU cannot load these images.
    Flat {
        /// The bundled guest's name.
        guest: &'static str,
    },
}

/// One benchmark.
#[derive(Debug, PartialEq, Eq)]
pub struct Workload {
    /// Its name in the table and for `--filter`; for in-guest workloads, also the bench
    /// script's name for it.
    pub name: &'static str,
    /// Where it runs.
    pub kind: Kind,
    /// Part of `--quick`.
    pub quick: bool,
    /// What it does, in a few words.
    pub about: &'static str,
}

impl Workload {
    /// Whether QEMU runs this workload (and which emulator).
    pub fn qemu_arch(&self) -> Option<Arch> {
        match self.kind {
            Kind::Boot(arch) => Some(arch),
            Kind::InGuest { .. } => Some(Arch::Amd64),
            Kind::Flat { .. } => None,
        }
    }
}

const fn w(name: &'static str, kind: Kind, quick: bool, about: &'static str) -> Workload {
    Workload {
        name,
        kind,
        quick,
        about,
    }
}

const GUEST: Kind = Kind::InGuest { native: false };
const CBENCH: Kind = Kind::InGuest { native: true };

/// Every workload, in the order they run and are reported.
pub const SUITE: &[Workload] = &[
    w(
        "boot-amd64",
        Kind::Boot(Arch::Amd64),
        true,
        "spawn to /init, Debian x86-64 kernel",
    ),
    w(
        "boot-i386",
        Kind::Boot(Arch::I386),
        false,
        "spawn to /init, Debian 686 kernel",
    ),
    w(
        "gzip",
        GUEST,
        false,
        "busybox gzip of 16 MiB of text | md5sum",
    ),
    w(
        "shell-loop",
        GUEST,
        true,
        "busybox sh: 100k iterations of i=$((i+1))",
    ),
    w(
        "fork-exec",
        GUEST,
        false,
        "busybox sh: 2000 runs of /bin/true",
    ),
    w("syscall", CBENCH, true, "1M getppid() system calls"),
    w(
        "page-fault",
        CBENCH,
        false,
        "4 x touch every page of 64 MiB mmap",
    ),
    w(
        "pipe",
        CBENCH,
        false,
        "50k pipe round trips between 2 processes",
    ),
    w("memcpy", CBENCH, false, "256 MiB through memcpy"),
    w("crc32", CBENCH, true, "table-driven CRC-32 over 32 MiB"),
    w(
        "nbody",
        CBENCH,
        false,
        "5-body simulation in double, 200k steps",
    ),
    w(
        "flat-crc32",
        Kind::Flat { guest: "crc32" },
        true,
        "bundled flat guest, 64-bit",
    ),
    w(
        "flat-sieve",
        Kind::Flat { guest: "sieve" },
        false,
        "bundled flat guest, 64-bit",
    ),
    w(
        "flat-sort",
        Kind::Flat { guest: "sort" },
        false,
        "bundled flat guest, 64-bit",
    ),
    w(
        "flat-strings",
        Kind::Flat { guest: "strings" },
        false,
        "bundled flat guest, 64-bit",
    ),
];

/// The workloads to run: the quick subset with `quick`, then those whose name contains any
/// of `filters` (case-insensitive; all when there are none), in suite order.
pub fn select(quick: bool, filters: &[String]) -> Vec<&'static Workload> {
    let filters: Vec<String> = filters.iter().map(|f| f.to_lowercase()).collect();
    SUITE
        .iter()
        .filter(|w| !quick || w.quick)
        .filter(|w| filters.is_empty() || filters.iter().any(|f| w.name.contains(f.as_str())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(ws: &[&Workload]) -> Vec<&'static str> {
        ws.iter().map(|w| w.name).collect()
    }

    #[test]
    fn names_are_unique_and_usable_on_a_kernel_command_line() {
        for (i, a) in SUITE.iter().enumerate() {
            assert!(
                SUITE[i + 1..].iter().all(|b| b.name != a.name),
                "{}",
                a.name
            );
            assert!(a
                .name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'));
        }
    }

    #[test]
    fn filters_match_substrings_case_insensitively_in_suite_order() {
        let f = |s: &[&str]| s.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(names(&select(false, &f(&["CRC"]))), ["crc32", "flat-crc32"]);
        assert_eq!(
            names(&select(false, &f(&["pipe", "boot"]))),
            ["boot-amd64", "boot-i386", "pipe"]
        );
        assert!(select(false, &f(&["no-such"])).is_empty());
        assert_eq!(select(false, &[]).len(), SUITE.len());
    }

    #[test]
    fn quick_is_a_subset_that_still_covers_both_sides() {
        let quick = select(true, &[]);
        assert!(quick.len() < SUITE.len());
        assert!(quick.iter().any(|w| matches!(w.kind, Kind::Boot(_))));
        assert!(quick.iter().any(|w| w.kind == CBENCH));
        assert_eq!(names(&select(true, &["boot".to_string()])), ["boot-amd64"]);
    }
}
