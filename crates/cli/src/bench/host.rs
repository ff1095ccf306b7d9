//! The machine the benchmark runs on (for the report's header) and the files it needs:
//! the QEMU binaries and the guest images.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use super::workloads::Arch;

/// What the report says about where it was measured.
#[derive(Clone, Debug)]
pub struct Machine {
    /// The host CPU's model name from /proc/cpuinfo.
    pub cpu: String,
    /// Logical CPUs.
    pub cores: usize,
    /// The host kernel's release.
    pub kernel: String,
    /// crane86's git commit (`-dirty` with uncommitted changes), when the source tree is a
    /// git checkout.
    pub commit: Option<String>,
    /// `qemu-system-x86_64 --version`'s first line, unless QEMU is not used.
    pub qemu: Option<String>,
}

impl Machine {
    /// Reads the host's description; asks QEMU for its version unless `qemu` is false.
    pub fn probe(qemu: bool) -> Result<Machine> {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .and_then(|rest| rest.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_else(|| "unknown CPU".into());
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_string())
            .unwrap_or_default();
        let qemu = if qemu {
            Some(qemu_version(Arch::Amd64)?)
        } else {
            None
        };
        Ok(Machine {
            cpu,
            cores,
            kernel,
            commit: git_commit(),
            qemu,
        })
    }
}

/// The first line of `qemu-system-* --version`, or an error that says how to install QEMU.
pub fn qemu_version(arch: Arch) -> Result<String> {
    let bin = arch.qemu();
    match Command::new(bin).arg("--version").output() {
        Ok(out) if out.status.success() => Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()
            .unwrap_or(bin)
            .trim()
            .to_string()),
        Ok(out) => bail!("`{bin} --version` failed ({})", out.status),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
            "{bin} not found: install QEMU (apt-get install qemu-system-x86) or pass --no-qemu"
        ),
        Err(e) => Err(e).with_context(|| format!("cannot run {bin}")),
    }
}

/// `git rev-parse --short HEAD` in the source tree, with `-dirty` when tracked files have
/// changes; `None` without git or outside a checkout.
fn git_commit() -> Option<String> {
    let git = |args: &[&str]| {
        Command::new("git")
            .arg("-C")
            .arg(env!("CARGO_MANIFEST_DIR"))
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let commit = git(&["rev-parse", "--short", "HEAD"])?;
    let dirty =
        git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
    Some(if dirty {
        format!("{commit}-dirty")
    } else {
        commit
    })
}

/// A Linux guest image: kernel and initrd.
#[derive(Clone, Debug)]
pub struct LinuxImage {
    /// The bzImage.
    pub kernel: PathBuf,
    /// The initial RAM disk.
    pub initrd: PathBuf,
}

/// The base image of `arch` (`vmlinuz`, `initrd.img`), built first when missing.
pub fn base_image(arch: Arch) -> Result<LinuxImage> {
    let dir = crate::run::linux_image_dir(arch.name())?;
    Ok(LinuxImage {
        kernel: dir.join("vmlinuz"),
        initrd: dir.join("initrd.img"),
    })
}

/// The amd64 bench image and the host copy of its C benchmarks.
#[derive(Clone, Debug)]
pub struct BenchImage {
    /// The kernel and `initrd-bench.img` (the base initrd with the bench overlay after it).
    pub image: LinuxImage,
    /// `cbench`, the static binary of the C benchmarks, to run natively.
    pub cbench: PathBuf,
    /// The guest's busybox, the same binary, which runs the bench script natively.
    pub busybox: PathBuf,
    /// The bench script (`guest-images/linux/bench/bench`), which the overlay holds too.
    pub script: PathBuf,
}

/// Runs `guest-images/linux/bench/build.sh` (a few seconds: it compiles the C benchmarks
/// and packs the overlay, so the image always matches the sources) over the amd64 base
/// image.
pub fn bench_image() -> Result<BenchImage> {
    let base = base_image(Arch::Amd64)?;
    let dir = base.kernel.parent().unwrap_or(Path::new(".")).to_path_buf();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("guest-images/linux/bench/build.sh");
    let status = Command::new("bash")
        .arg(&script)
        .arg("--out")
        .arg(&dir)
        .status()
        .with_context(|| format!("cannot run {}", script.display()))?;
    if !status.success() {
        bail!(
            "building the bench image failed ({}); see the lines above",
            script.display()
        );
    }
    Ok(BenchImage {
        image: LinuxImage {
            kernel: base.kernel,
            initrd: dir.join("initrd-bench.img"),
        },
        cbench: dir.join("bench/cbench"),
        busybox: dir.join("busybox"),
        script: Path::new(env!("CARGO_MANIFEST_DIR")).join("guest-images/linux/bench/bench"),
    })
}
