//! Running a workload on one side — crane86, QEMU TCG or the host itself — and turning what
//! the child prints into [`Sample`]s. The command lines are those of `tests/linux_guest.rs`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::child::{Child, Next};
use super::host::{BenchImage, LinuxImage};
use super::markers::{Marker, Splitter};
use super::workloads::Arch;

/// Guest RAM in MiB, the same on both emulators.
pub const MEM_MIB: &str = "512";

/// The busybox applets the bench script runs on the host (the rest are shell builtins).
const NATIVE_APPLETS: [&str; 7] = ["sh", "gzip", "md5sum", "rm", "cat", "tr", "true"];

/// How long a guest may take to power off after its last workload before it is killed.
const POWER_OFF_GRACE: Duration = Duration::from_secs(30);

/// Who runs a workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Side {
    /// This crane86 binary.
    Crane86,
    /// `qemu-system-* -accel tcg`.
    Qemu,
    /// The host CPU, without emulation.
    Native,
}

impl Side {
    /// The side's name in progress lines and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Side::Crane86 => "crane86",
            Side::Qemu => "qemu",
            Side::Native => "native",
        }
    }
}

/// One timing of one workload on one side.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// Seconds, or why the run gave no timing.
    pub secs: Result<f64, String>,
    /// The result lines the workload printed.
    pub output: Vec<String>,
}

impl Sample {
    fn failed(why: impl Into<String>) -> Sample {
        Sample {
            secs: Err(why.into()),
            output: Vec::new(),
        }
    }
}

/// Starts children and times them, each within `timeout`.
pub struct Runner {
    /// The crane86 executable (this process's own).
    pub crane86: PathBuf,
    /// How long one workload (or one boot) may take.
    pub timeout: Duration,
    /// Extra arguments for every `crane86 run` (`--crane86-arg`).
    pub extra: Vec<String>,
    /// Extra arguments for every QEMU run (`--qemu-arg`), after the bench's own.
    pub qemu_extra: Vec<String>,
}

impl Runner {
    /// The command booting `image` with the kernel command line `append` on an emulator.
    fn linux_cmd(&self, side: Side, arch: Arch, image: &LinuxImage, append: &str) -> Command {
        let mut cmd;
        if side == Side::Qemu {
            cmd = Command::new(arch.qemu());
            cmd.args(["-accel", "tcg", "-m", MEM_MIB, "-nographic", "-no-reboot"])
                .arg("-kernel")
                .arg(&image.kernel)
                .arg("-initrd")
                .arg(&image.initrd)
                .args(["-append", append])
                .args(&self.qemu_extra);
        } else {
            cmd = Command::new(&self.crane86);
            cmd.arg("run")
                .arg("--kernel")
                .arg(&image.kernel)
                .arg("--initrd")
                .arg(&image.initrd)
                .args(["-m", MEM_MIB, "--append", append])
                .args(&self.extra);
        }
        cmd
    }

    fn spawn(&self, mut cmd: Command) -> Result<Child, Sample> {
        Child::spawn(&mut cmd).map_err(|e| Sample::failed(format!("{e:#}")))
    }

    /// From spawn to `crane86: boot complete` of `image`; the emulator is killed then.
    pub fn boot(&self, side: Side, arch: Arch, image: &LinuxImage) -> Sample {
        let cmd = self.linux_cmd(side, arch, image, "console=ttyS0");
        let mut child = match self.spawn(cmd) {
            Ok(c) => c,
            Err(s) => return s,
        };
        let deadline = Instant::now() + self.timeout;
        loop {
            match child.next_line(deadline) {
                Next::Line(l) if super::markers::parse(&l.text) == Some(Marker::BootComplete) => {
                    child.kill();
                    return Sample {
                        secs: Ok(l.at.as_secs_f64()),
                        output: Vec::new(),
                    };
                }
                Next::Line(_) => {}
                Next::Eof => return Sample::failed(exited_early(&mut child, "before /init")),
                Next::TimedOut => return Sample::failed(self.timed_out("no boot marker")),
            }
        }
    }

    /// One boot of the bench image running the bench script's workloads `names` in order;
    /// one sample per name, in the same order.
    pub fn in_guest(&self, side: Side, image: &LinuxImage, names: &[&str]) -> Vec<Sample> {
        let append = format!(
            "console=ttyS0 crane86.script=bench crane86.bench={}",
            names.join(",")
        );
        let cmd = self.linux_cmd(side, Arch::Amd64, image, &append);
        self.script_samples(side, cmd, names)
    }

    /// The bench script's workloads `names` on the host: the guest's busybox runs the
    /// script itself, with its applets (and `cbench`) linked into a scratch directory that
    /// is the script's whole PATH, so that nothing of the host's own userland takes part.
    /// Timed between the same start and end lines as in the guest.
    pub fn native_script(&self, bench: &BenchImage, names: &[&str]) -> Vec<Sample> {
        let dir = std::env::temp_dir().join(format!("crane86-bench-{}", std::process::id()));
        let made = (|| -> std::io::Result<()> {
            // Left over by a run that was killed, with this process id.
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir)?;
            for applet in NATIVE_APPLETS {
                std::os::unix::fs::symlink(&bench.busybox, dir.join(applet))?;
            }
            std::os::unix::fs::symlink(&bench.cbench, dir.join("cbench"))
        })();
        let samples = match made {
            Err(e) => vec![Sample::failed(format!("{}: {e}", dir.display())); names.len()],
            Ok(()) => {
                let mut cmd = Command::new(&bench.busybox);
                cmd.arg("sh")
                    .arg(&bench.script)
                    .env_clear()
                    .env("PATH", &dir)
                    .env("CRANE86_BENCH", names.join(","))
                    .env("CRANE86_TMP", &dir)
                    .env("CRANE86_TRUE", dir.join("true"));
                self.script_samples(Side::Native, cmd, names)
            }
        };
        let _ = std::fs::remove_dir_all(&dir);
        samples
    }

    /// Runs `cmd`, which prints the bench script's markers for `names` (after a boot
    /// marker, on an emulator), and times each workload between its start and end lines.
    fn script_samples(&self, side: Side, cmd: Command, names: &[&str]) -> Vec<Sample> {
        let mut child = match self.spawn(cmd) {
            Ok(c) => c,
            Err(s) => return vec![s; names.len()],
        };
        let mut split = Splitter::default();
        let mut deadline = Instant::now() + self.timeout;
        // Why workloads that never started did not run.
        let mut stopped = None;
        loop {
            match child.next_line(deadline) {
                Next::Line(l) => {
                    if split.feed(&l) {
                        deadline = Instant::now() + self.timeout;
                    }
                    if split.done {
                        // Every sample is in; the guest only has to power off.
                        deadline = deadline.min(Instant::now() + POWER_OFF_GRACE);
                    }
                }
                Next::Eof => {
                    if !split.done {
                        let why = exited_early(&mut child, "before the last workload");
                        split.close_unfinished(&why);
                        stopped = Some(why);
                    } else if let Some((status, _)) = child.wait(deadline) {
                        if !status.success() {
                            eprintln!(
                                "bench: warning: {} ran every workload but exited with {status}",
                                side.name()
                            );
                        }
                    }
                    break;
                }
                Next::TimedOut if split.done => {
                    eprintln!(
                        "bench: warning: {} ran every workload but did not power off; stopped",
                        side.name()
                    );
                    break;
                }
                Next::TimedOut => {
                    let why = match split.running() {
                        Some(_) => self.timed_out("no end line"),
                        None if split.boot.is_none() && side != Side::Native => {
                            self.timed_out("no boot marker")
                        }
                        None => self.timed_out("the next workload did not start"),
                    };
                    child.kill();
                    split.close_unfinished(&why);
                    stopped = Some(why);
                    break;
                }
            }
        }
        let stopped = stopped.unwrap_or_else(|| "the guest never started it".into());
        names
            .iter()
            .map(|name| match split.spans.iter().find(|s| s.name == *name) {
                Some(span) => Sample {
                    secs: span.secs.clone(),
                    output: span.output.clone(),
                },
                None => Sample::failed(format!("not run: {stopped}")),
            })
            .collect()
    }

    /// `cbench NAME` on the host, from spawn to exit.
    pub fn native(&self, cbench: &Path, name: &str) -> Sample {
        let mut cmd = Command::new(cbench);
        cmd.arg(name);
        self.to_exit(cmd, 0)
    }

    /// `crane86 run --guest GUEST --mode 64`, from spawn to exit.
    pub fn flat(&self, guest: &str) -> Sample {
        let mut cmd = Command::new(&self.crane86);
        cmd.args(["run", "--guest", guest, "--mode", "64"])
            .args(&self.extra);
        // The guests end with isa-debug-exit 0, which `crane86 run` turns into status 1.
        self.to_exit(cmd, 1)
    }

    /// Runs `cmd` to its exit, which must be with status `want`; its stdout lines are the
    /// output.
    fn to_exit(&self, cmd: Command, want: i32) -> Sample {
        let mut child = match self.spawn(cmd) {
            Ok(c) => c,
            Err(s) => return s,
        };
        let deadline = Instant::now() + self.timeout;
        let mut output = Vec::new();
        loop {
            match child.next_line(deadline) {
                Next::Line(l) => output.push(l.text.trim().to_string()),
                Next::Eof => break,
                Next::TimedOut => return Sample::failed(self.timed_out("still running")),
            }
        }
        let secs = match child.wait(deadline) {
            Some((status, at)) if status.code() == Some(want) => Ok(at.as_secs_f64()),
            Some((status, _)) => Err(format!("exited with {status} (expected {want})")),
            None => Err(self.timed_out("still running")),
        };
        Sample { secs, output }
    }

    fn timed_out(&self, what: &str) -> String {
        format!("timed out: {what} after {} s", self.timeout.as_secs())
    }
}

/// Why a child ended before it should have: its exit status and last stderr line.
fn exited_early(child: &mut Child, when: &str) -> String {
    let status = child
        .wait(Instant::now() + Duration::from_secs(5))
        .map_or("did not exit".to_string(), |(s, _)| s.to_string());
    let stderr = child.stderr_tail();
    match stderr.lines().rev().find(|l| !l.trim().is_empty()) {
        Some(last) => format!("exited {when} ({status}): {}", last.trim()),
        None => format!("exited {when} ({status})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `--crane86-arg` reaches only crane86's command line and `--qemu-arg` only QEMU's, each
    /// after the bench's own arguments.
    #[test]
    fn extra_arguments_go_to_their_own_side() {
        let runner = Runner {
            crane86: PathBuf::from("/bin/crane86"),
            timeout: Duration::from_secs(1),
            extra: vec!["--jit-threshold=200".into()],
            qemu_extra: vec!["-cpu".into(), "max".into()],
        };
        let image = LinuxImage {
            kernel: PathBuf::from("vmlinuz"),
            initrd: PathBuf::from("initrd.img"),
        };
        let args = |side| -> Vec<String> {
            runner
                .linux_cmd(side, Arch::Amd64, &image, "console=ttyS0")
                .get_args()
                .map(|a| a.to_string_lossy().into_owned())
                .collect()
        };
        let qemu = args(Side::Qemu);
        assert_eq!(qemu[qemu.len() - 2..], ["-cpu", "max"], "{qemu:?}");
        assert!(
            !qemu.iter().any(|a| a.contains("jit-threshold")),
            "{qemu:?}"
        );
        let ours = args(Side::Crane86);
        assert_eq!(ours.last().map(String::as_str), Some("--jit-threshold=200"));
        assert!(!ours.iter().any(|a| a == "max"), "{ours:?}");
    }
}
