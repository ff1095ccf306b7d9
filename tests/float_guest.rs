//! A float-heavy C program (`guest-images/float/float.c`: FFTs, Mandelbrot sets and
//! conversions in single, double and x87 extended precision) gives the same checksums as a
//! flat crane86 guest, under the interpreter and under the JIT, as it does natively on the
//! host CPU.
//!
//! The program is compiled at test time with the host's gcc, twice from one source: as a host
//! program (the reference) and as a freestanding flat binary (`flat.ld`) for the guest. gcc
//! and binutils come with the Rust toolchain's Debian prerequisites; `scripts/test.sh`
//! installs them if missing.

use std::path::{Path, PathBuf};
use std::process::Command;

use crane86_machine::{ExceptionPolicy, Machine, MachineConfig, RunEnd};
use crane86_runtime::CpuMode;
use crane86_translator::Tier;

/// The load address and entry point of flat guests.
const LOAD: u64 = 0x1000;

fn source_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("guest-images/float")
}

fn out_dir() -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join("float-guest");
    std::fs::create_dir_all(&d).expect("create the build directory");
    d
}

fn run(cmd: &mut Command) -> Vec<u8> {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e} (is gcc installed?)"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Flags shared by both builds: the same optimisation, and no errno-setting library call
/// for sqrt (the guest has no library).
const CFLAGS: &[&str] = &["-O2", "-fno-math-errno"];

/// The host build's output: the expected checksums.
fn native_output(dir: &Path) -> String {
    let exe = dir.join("float-host");
    run(Command::new("gcc")
        .args(CFLAGS)
        .arg("-DHOST")
        .arg("-o")
        .arg(&exe)
        .arg(source_dir().join("float.c")));
    String::from_utf8(run(&mut Command::new(&exe))).expect("ASCII output")
}

/// The flat guest image.
fn guest_image(dir: &Path) -> Vec<u8> {
    let elf = dir.join("float.elf");
    let bin = dir.join("float.bin");
    run(Command::new("gcc")
        .args(CFLAGS)
        .args([
            "-ffreestanding",
            "-nostdlib",
            "-static",
            "-fno-pic",
            "-no-pie",
            "-mno-red-zone",
            "-fno-stack-protector",
            "-fcf-protection=none",
            "-Wl,--build-id=none",
            "-Wl,--no-warn-rwx-segments",
        ])
        .arg("-T")
        .arg(source_dir().join("flat.ld"))
        .arg("-o")
        .arg(&elf)
        .arg(source_dir().join("float.c")));
    run(Command::new("objcopy")
        .args(["-O", "binary"])
        .arg(&elf)
        .arg(&bin));
    std::fs::read(&bin).expect("read the flat image")
}

fn guest_output(image: &[u8], tier: Tier) -> String {
    let mut m = Machine::new(&MachineConfig {
        tier,
        exceptions: ExceptionPolicy::Stop,
        ..MachineConfig::default()
    })
    .expect("machine");
    m.load_flat(image, LOAD, LOAD, CpuMode::Long64)
        .expect("load the guest");
    let end = m.run(Some(2_000_000_000)).expect("run");
    let out = String::from_utf8_lossy(&m.serial_output()).into_owned();
    assert_eq!(
        end,
        RunEnd::DebugExit(0),
        "{tier:?} ended early; output so far:\n{out}"
    );
    out
}

#[test]
fn float_kernels_match_the_host_in_every_tier() {
    let dir = out_dir();
    let want = native_output(&dir);
    assert_eq!(want.lines().count(), 9, "host output:\n{want}");
    let image = guest_image(&dir);
    for tier in [Tier::Interp, Tier::Jit] {
        assert_eq!(guest_output(&image, tier), want, "{tier:?}");
    }
}
