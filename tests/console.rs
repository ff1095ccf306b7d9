//! The console: the host's stdin typed into a Linux guest's COM1.
//!
//! - `piped_stdin_drives_the_guest_shell`: commands piped into `crane86 run` reach busybox
//!   sh on ttyS0, and `poweroff -f` ends the run with status 0;
//! - `interactive_console_in_tmux`: crane86 on a terminal (a tmux pane): typed commands run,
//!   Ctrl-C goes to the guest, `Ctrl-A x` quits, and the terminal is back in cooked mode
//!   afterwards.
//!
//! The guest is Debian's kernel and busybox from `guest-images/linux/build.sh`: its output
//! directory `target/guest/linux-amd64/` (`vmlinuz`, `busybox`), or the directory
//! `CRANE86_LINUX_IMAGES` names. The initramfs is built here, at test time, around that
//! busybox with an /init of its own (an interactive shell on the console). Without either
//! directory the tests skip with a message; with one, missing files are a failure.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// A boot to the shell takes about 20 s; this leaves room for a loaded machine.
const TIMEOUT: Duration = Duration::from_secs(240);

/// /init: mount the usual filesystems, then a shell with the console as its controlling
/// terminal, then power off when it exits.
const INIT: &str = "#!/bin/sh
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
echo console-test: shell starting
setsid cttyhack sh
poweroff -f
";

/// The busybox applets the test uses, linked in /bin.
const APPLETS: [&str; 9] = [
    "sh", "mount", "setsid", "cttyhack", "poweroff", "stty", "uname", "sleep", "echo",
];

/// The kernel and busybox, or `None` (after saying so) when no image directory exists.
fn guest_files() -> Option<(PathBuf, PathBuf)> {
    let dir = match std::env::var_os("CRANE86_LINUX_IMAGES") {
        Some(d) => PathBuf::from(d),
        None => {
            let d = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/guest/linux-amd64");
            if !d.is_dir() {
                eprintln!(
                    "SKIP: no Linux guest images: {} is absent and CRANE86_LINUX_IMAGES is \
                     unset (run guest-images/linux/build.sh)",
                    d.display()
                );
                return None;
            }
            d
        }
    };
    let kernel = dir.join("vmlinuz");
    let busybox = dir.join("busybox");
    for f in [&kernel, &busybox] {
        assert!(f.is_file(), "{} is missing", f.display());
    }
    Some((kernel, busybox))
}

/// Appends one newc cpio entry.
fn cpio_entry(out: &mut Vec<u8>, ino: u32, name: &str, mode: u32, rdev: (u32, u32), data: &[u8]) {
    let fields = [
        ino,
        mode,
        0,
        0,
        1,
        0,
        data.len() as u32,
        0,
        0,
        rdev.0,
        rdev.1,
        name.len() as u32 + 1,
        0,
    ];
    out.extend_from_slice(b"070701");
    for f in fields {
        out.extend_from_slice(format!("{f:08x}").as_bytes());
    }
    out.extend_from_slice(name.as_bytes());
    out.push(0);
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
    out.extend_from_slice(data);
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
}

/// Builds the test's initramfs (uncompressed newc cpio) around `busybox`; returns its path.
/// Writes the initramfs to a file named after `test`: the tests of this file run in
/// parallel, and one must not read the file while another rewrites it.
fn build_initramfs(busybox: &Path, test: &str) -> PathBuf {
    let bb = std::fs::read(busybox).expect("read busybox");
    let mut cpio = Vec::new();
    let mut ino = 1..;
    let mut add = |name: &str, mode: u32, rdev: (u32, u32), data: &[u8]| {
        cpio_entry(&mut cpio, ino.next().unwrap(), name, mode, rdev, data)
    };
    for dir in ["bin", "dev", "proc", "sys", "tmp"] {
        add(dir, 0o040755, (0, 0), &[]);
    }
    // The kernel opens /dev/console for /init before devtmpfs is mounted.
    add("dev/console", 0o020600, (5, 1), &[]);
    add("bin/busybox", 0o100755, (0, 0), &bb);
    for applet in APPLETS {
        add(&format!("bin/{applet}"), 0o120777, (0, 0), b"busybox");
    }
    add("init", 0o100755, (0, 0), INIT.as_bytes());
    add("TRAILER!!!", 0, (0, 0), &[]);
    let path =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("console-initramfs-{test}.cpio"));
    std::fs::write(&path, cpio).expect("write the initramfs");
    path
}

/// `crane86 run` arguments that boot `kernel` with `initrd` on ttyS0.
fn run_args(kernel: &Path, initrd: &Path) -> Vec<String> {
    [
        "run",
        "--kernel",
        &kernel.display().to_string(),
        "--initrd",
        &initrd.display().to_string(),
        "-m",
        "512",
        "--append",
        "console=ttyS0 quiet",
    ]
    .map(String::from)
    .to_vec()
}

/// Waits for `child` until `TIMEOUT`; kills it then. Returns its exit status, `None` if
/// it had to be killed.
fn wait_bounded(child: &mut Child) -> Option<i32> {
    let t0 = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait for crane86") {
            return status.code();
        }
        if t0.elapsed() > TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn piped_stdin_drives_the_guest_shell() {
    let Some((kernel, busybox)) = guest_files() else {
        return;
    };
    let initrd = build_initramfs(&busybox, "piped");
    let mut child = Command::new(env!("CARGO_BIN_EXE_crane86"))
        .args(run_args(&kernel, &initrd))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start crane86");
    // All of it at once, long before the guest's shell (or its serial driver) runs: the
    // board holds it until the driver listens.
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(b"echo hello-$((6*7))\npoweroff -f\n")
        .unwrap();
    drop(stdin);
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err = thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let status = wait_bounded(&mut child);
    let (out, err) = (out.join().unwrap(), err.join().unwrap());
    assert_eq!(
        status,
        Some(0),
        "crane86 did not power off in time (or failed)\nstdout:\n{out}\nstderr:\n{err}"
    );
    // The echoed command line shows `hello-$((6*7))`: only the shell's output has 42.
    assert!(
        out.lines().any(|l| l.trim_end() == "hello-42"),
        "no hello-42 line\nstdout:\n{out}\nstderr:\n{err}"
    );
}

/// A private tmux server (its own socket, no configuration), killed when dropped.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn cmd(&self, args: &[&str]) -> std::process::Output {
        Command::new("tmux")
            .args(["-L", &self.socket, "-f", "/dev/null"])
            .args(args)
            .output()
            .expect("run tmux")
    }

    /// Everything the pane shows, with its scrollback.
    fn capture(&self) -> String {
        let o = self.cmd(&["capture-pane", "-p", "-J", "-S", "-3000", "-t", "t"]);
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// Types `text` literally, then Enter.
    fn type_line(&self, text: &str) {
        self.cmd(&["send-keys", "-t", "t", "-l", text]);
        self.cmd(&["send-keys", "-t", "t", "Enter"]);
    }

    /// Polls the pane until `pred` holds; panics with the pane's contents after `limit`.
    fn wait_for(&self, what: &str, limit: Duration, pred: impl Fn(&str) -> bool) -> String {
        let t0 = Instant::now();
        loop {
            let screen = self.capture();
            if pred(&screen) {
                return screen;
            }
            assert!(
                t0.elapsed() < limit,
                "timed out waiting for {what}; the pane shows:\n{screen}"
            );
            thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        self.cmd(&["kill-server"]);
    }
}

/// The last line of `screen` that is not blank, trailing blanks aside.
fn last_line(screen: &str) -> &str {
    screen
        .lines()
        .map(str::trim_end)
        .rfind(|l| !l.is_empty())
        .unwrap_or("")
}

/// Lines of `screen` equal to `line` (trailing blanks aside).
fn count_lines(screen: &str, line: &str) -> usize {
    screen.lines().filter(|l| l.trim_end() == line).count()
}

#[test]
fn interactive_console_in_tmux() {
    let Some((kernel, busybox)) = guest_files() else {
        return;
    };
    if Command::new("tmux").arg("-V").output().is_err() {
        eprintln!("SKIP: tmux is not installed (Debian package `tmux`)");
        return;
    }
    let initrd = build_initramfs(&busybox, "tmux");
    let tmux = Tmux {
        socket: format!("crane86-console-test-{}", std::process::id()),
    };
    let o = tmux.cmd(&[
        "new-session",
        "-d",
        "-s",
        "t",
        "-x",
        "200",
        "-y",
        "50",
        "sh",
    ]);
    assert!(o.status.success(), "tmux new-session failed: {o:?}");
    let quoted: Vec<String> = std::iter::once(env!("CARGO_BIN_EXE_crane86").to_string())
        .chain(run_args(&kernel, &initrd))
        .map(|a| format!("'{a}'"))
        .collect();
    tmux.type_line(&format!("{}; echo crane86-exit=$?", quoted.join(" ")));
    tmux.wait_for("the guest's shell prompt", TIMEOUT, |s| {
        s.contains("console-test: shell starting") && s.lines().any(|l| l.starts_with("/ # "))
    });

    tmux.type_line("echo hello-$((6*7))");
    tmux.wait_for("hello-42", Duration::from_secs(60), |s| {
        count_lines(s, "hello-42") == 1
    });

    // Ctrl-C is the guest's: it interrupts the guest's sleep, and crane86 goes on.
    tmux.type_line("sleep 1000");
    thread::sleep(Duration::from_secs(1));
    tmux.cmd(&["send-keys", "-t", "t", "C-c"]);
    tmux.type_line("echo after-$((1+1))");
    // Waits for the prompt after the output too: busybox's line editor asks the
    // terminal for the cursor position (ESC [6n) as it prints a prompt, and tmux's
    // answer must be in the input queue ahead of Ctrl-A x. Otherwise the answer is
    // left for the pane's shell once crane86 is gone, and garbles its next line.
    let screen = tmux.wait_for(
        "after-2 and the next prompt",
        Duration::from_secs(60),
        |s| count_lines(s, "after-2") == 1 && last_line(s) == "/ #",
    );
    // From the guest's shell (its prompt and echo), not the pane's after crane86 died.
    assert!(
        screen.contains("/ # echo after-$((1+1))"),
        "Ctrl-C did not reach the guest:\n{screen}"
    );

    tmux.cmd(&["send-keys", "-t", "t", "C-a", "x"]);
    let screen = tmux.wait_for("crane86 to exit", Duration::from_secs(60), |s| {
        s.lines().any(|l| l.starts_with("crane86-exit="))
    });
    assert!(
        screen.contains("crane86: terminated by Ctrl-A x"),
        "no termination message:\n{screen}"
    );
    assert!(
        screen.contains("crane86-exit=125"),
        "wrong exit status:\n{screen}"
    );

    // The pane's shell runs `stty -a` on the terminal crane86 left behind.
    tmux.type_line("stty -a; echo stty-done");
    let screen = tmux.wait_for("stty -a", Duration::from_secs(30), |s| {
        count_lines(s, "stty-done") == 1
    });
    let words: Vec<&str> = screen.split_whitespace().collect();
    for mode in ["icanon", "echo", "isig", "icrnl", "opost"] {
        assert!(
            words.contains(&mode),
            "the terminal was not restored ({mode} is off):\n{screen}"
        );
    }
}
