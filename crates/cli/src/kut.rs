//! `crane86 kvm-unit-tests DIR`: runs every test of a built kvm-unit-tests tree, as its own
//! runner would under QEMU, and reports PASS/FAIL/SKIP per test.
//!
//! Each test comes from a section of `DIR/x86/unittests.cfg` (`file`, `test_args`, `smp`,
//! `arch`, `timeout`, `qemu_params`, `accel`, `check`). A test that needs what crane86 does
//! not offer (several vCPUs, VMX, SVM, an IOMMU, KVM itself, host checks) is SKIP with the
//! reason. The others run as `crane86 run --multiboot FILE -m 256 --append ARGS` in a child
//! process, killed at the test's timeout, so a hanging guest never hangs the runner. The
//! child's exit status is QEMU's isa-debug-exit status: 1 is PASS, 77 is SKIP (the tests exit
//! with 38 to skip), anything else is FAIL.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

/// kvm-unit-tests' default per-test timeout.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(90);
/// Guest RAM for every test (QEMU's runner uses its default, 128 MiB, or what the test asks).
const MEM_MIB: &str = "256";

/// One section of unittests.cfg.
#[derive(Debug, Default)]
struct Entry {
    name: String,
    file: String,
    test_args: String,
    smp: String,
    arch: String,
    timeout: String,
    qemu_params: String,
    accel: String,
    check: String,
}

/// Parses unittests.cfg: `[name]` sections of `key = value` lines; `#` starts a comment.
fn parse_cfg(text: &str) -> Vec<Entry> {
    let mut out: Vec<Entry> = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            out.push(Entry {
                name: name.to_string(),
                ..Entry::default()
            });
            continue;
        }
        let (Some(e), Some((key, value))) = (out.last_mut(), line.split_once('=')) else {
            continue;
        };
        let value = value.trim().to_string();
        match key.trim() {
            "file" => e.file = value,
            "test_args" | "extra_params" => e.test_args = value,
            "smp" => e.smp = value,
            "arch" => e.arch = value,
            "timeout" => e.timeout = value,
            "qemu_params" => e.qemu_params = value,
            "accel" => e.accel = value,
            "check" => e.check = value,
            _ => {}
        }
    }
    out
}

/// Why `e` cannot run on crane86, if it cannot.
fn skip_reason(e: &Entry, tree_arch: &str, dir: &Path) -> Option<String> {
    if !e.arch.is_empty() && e.arch != tree_arch {
        return Some(format!("built for {tree_arch}, the test is {}", e.arch));
    }
    if !e.smp.is_empty() && e.smp != "1" {
        return Some(format!("needs {} vCPUs", e.smp));
    }
    if e.accel == "kvm" {
        return Some("needs KVM".into());
    }
    if !e.check.is_empty() {
        return Some(format!("needs a host check ({})", e.check));
    }
    let p = &e.qemu_params;
    if p.contains("vmx") {
        return Some("needs VMX".into());
    }
    if p.contains("svm") {
        return Some("needs SVM".into());
    }
    if p.contains("iommu") {
        return Some("needs an IOMMU".into());
    }
    if !dir.join("x86").join(&e.file).is_file() {
        return Some(format!("x86/{} is not built", e.file));
    }
    None
}

/// The timeout unittests.cfg gives (`90`, `90s`, `2m`), else the default.
fn timeout(e: &Entry) -> Duration {
    let t = e.timeout.trim();
    let (num, mul) = match t.strip_suffix('m') {
        Some(n) => (n, 60),
        None => (t.strip_suffix('s').unwrap_or(t), 1),
    };
    num.parse::<u64>()
        .map(|n| Duration::from_secs(n * mul))
        .unwrap_or(DEFAULT_TIMEOUT)
}

/// How one test ended.
enum Verdict {
    Pass,
    Fail(String),
    Skip(String),
}

/// Runs one test in a child `crane86 run`, killing it at `limit`.
fn run_one(
    exe: &Path,
    dir: &Path,
    e: &Entry,
    limit: Duration,
    extra: &[String],
) -> Result<Verdict> {
    let args = e.test_args.trim_matches(|c| c == '\'' || c == '"');
    let mut child = Command::new(exe)
        // As QEMU's runner (x86/run: --no-reboot): a test that resets or triple-faults ends.
        .args(["run", "--no-reboot"])
        .arg("--multiboot")
        .arg(dir.join("x86").join(&e.file))
        .args(["-m", MEM_MIB, "--append", args])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot start crane86 run")?;
    // Drain both pipes on threads so that a chatty guest never blocks on a full pipe.
    let drain = |r: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut buf);
            }
            buf
        })
    };
    let out = drain(child.stdout.take().map(|r| Box::new(r) as _));
    let err = drain(child.stderr.take().map(|r| Box::new(r) as _));
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait()? {
            break Some(s);
        }
        if start.elapsed() >= limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut text = out.join().unwrap_or_default();
    text.extend(err.join().unwrap_or_default());
    let text = String::from_utf8_lossy(&text);
    let last = text
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim()
        .to_string();
    Ok(match status.and_then(|s| s.code()) {
        None if status.is_none() => Verdict::Fail(format!("timeout after {}s", limit.as_secs())),
        Some(1) => Verdict::Pass,
        Some(77) => Verdict::Skip(skip_line(&text).unwrap_or(last)),
        Some(code) => Verdict::Fail(format!("status {code}: {last}")),
        None => Verdict::Fail(format!("killed by a signal: {last}")),
    })
}

/// The guest's own reason for skipping: its last `SKIP: ...` line (the summary line that
/// follows it only counts the skips).
fn skip_line(output: &str) -> Option<String> {
    output
        .lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix("SKIP: "))
        .map(|why| why.trim().to_string())
}

/// Runs the tests of the tree at `dir` (all, or those named in `only`), printing one line per
/// test and the summary line; returns the counts (pass, fail, skip).
/// `max_timeout` caps every test's timeout; `extra` are more arguments for every test's
/// `crane86 run` (`--tier baseline`, to run the suite in another tier).
pub fn run_tree(
    dir: &Path,
    only: &[String],
    max_timeout: Option<Duration>,
    extra: &[String],
) -> Result<(u32, u32, u32)> {
    let cfg_path: PathBuf = dir.join("x86").join("unittests.cfg");
    let cfg = std::fs::read_to_string(&cfg_path)
        .with_context(|| format!("cannot read {}", cfg_path.display()))?;
    let tree_arch = std::fs::read_to_string(dir.join("config.mak"))
        .ok()
        .and_then(|c| {
            c.lines()
                .find_map(|l| l.strip_prefix("ARCH=").map(|a| a.trim().to_string()))
        })
        .unwrap_or_else(|| "x86_64".into());
    let exe = std::env::current_exe().context("cannot find the crane86 executable")?;
    let (mut pass, mut fail, mut skip) = (0, 0, 0);
    for e in parse_cfg(&cfg) {
        if !only.is_empty() && !only.contains(&e.name) {
            continue;
        }
        let verdict = match skip_reason(&e, &tree_arch, dir) {
            Some(why) => Verdict::Skip(why),
            None => {
                let limit = timeout(&e).min(max_timeout.unwrap_or(Duration::MAX));
                run_one(&exe, dir, &e, limit, extra)?
            }
        };
        match verdict {
            Verdict::Pass => {
                pass += 1;
                println!("PASS {}", e.name);
            }
            Verdict::Fail(why) => {
                fail += 1;
                println!("FAIL {} ({why})", e.name);
            }
            Verdict::Skip(why) => {
                skip += 1;
                println!("SKIP {} ({why})", e.name);
            }
        }
    }
    println!("kvm-unit-tests: pass={pass} fail={fail} skip={skip}");
    Ok((pass, fail, skip))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CFG: &str = "\
# comment
[apic-split]
file = apic.flat
smp = 2
timeout = 30

[vmexit_cpuid]
file = vmexit.flat
test_args = 'cpuid'

#[init]
#file = init.flat
[vmx]
file = vmx.flat
qemu_params = -cpu max,+vmx
timeout = 2m
";

    #[test]
    fn sections_keys_and_skips() {
        let e = parse_cfg(CFG);
        assert_eq!(e.len(), 3);
        assert_eq!(e[1].name, "vmexit_cpuid");
        assert_eq!(e[1].test_args, "'cpuid'");
        assert_eq!(timeout(&e[0]), Duration::from_secs(30));
        assert_eq!(timeout(&e[1]), DEFAULT_TIMEOUT);
        assert_eq!(timeout(&e[2]), Duration::from_secs(120));
        let dir = Path::new("/nonexistent");
        assert_eq!(skip_reason(&e[0], "x86_64", dir).unwrap(), "needs 2 vCPUs");
        assert_eq!(skip_reason(&e[2], "x86_64", dir).unwrap(), "needs VMX");
        assert!(skip_reason(&e[1], "x86_64", dir)
            .unwrap()
            .contains("not built"));
        // An i386 tree skips the x86_64-only sections.
        let only64 = Entry {
            arch: "x86_64".into(),
            ..Entry::default()
        };
        assert_eq!(
            skip_reason(&only64, "i386", dir).unwrap(),
            "built for i386, the test is x86_64"
        );
    }

    #[test]
    fn a_skipping_guest_gives_its_skip_line() {
        let out = "enabling apic\nSKIP: MSR_IA32_TSC_ADJUST feature not enabled\n\
                   SUMMARY: 1 tests, 1 skipped\n";
        assert_eq!(
            skip_line(out).as_deref(),
            Some("MSR_IA32_TSC_ADJUST feature not enabled")
        );
        assert_eq!(skip_line("SUMMARY: 0 tests\n"), None);
    }
}
