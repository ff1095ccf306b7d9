//! QEMU TCG as the reference: started paused with its gdbstub on a Unix socket, driven one
//! instruction at a time.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::layout::Layout;
use crate::rsp::{Rsp, RspError, StopReply};
use crate::state::{ArchState, Scope};

/// Errors starting or driving QEMU.
#[derive(Debug, thiserror::Error)]
pub enum QemuError {
    /// The QEMU binary could not be started.
    #[error("cannot start {binary}: {source} (Debian package qemu-system-x86)")]
    Spawn {
        /// The binary.
        binary: String,
        /// Why.
        source: std::io::Error,
    },
    /// QEMU did not open its gdbstub socket.
    #[error("{binary} did not open its gdbstub within {secs} s; its stderr: {stderr}")]
    NoSocket {
        /// The binary.
        binary: String,
        /// How long we waited.
        secs: u64,
        /// What QEMU said.
        stderr: String,
    },
    /// The gdbstub conversation failed.
    #[error(transparent)]
    Rsp(#[from] RspError),
}

/// How to start QEMU.
#[derive(Clone, Debug)]
pub struct QemuConfig {
    /// `qemu-system-x86_64` or `qemu-system-i386`.
    pub binary: String,
    /// Guest RAM in MiB (`-m`).
    pub mem_mib: u64,
    /// `-cpu` model, if not QEMU's default.
    pub cpu: Option<String>,
    /// Where the guest's COM1 output goes (`None`: a temporary file).
    pub serial: Option<PathBuf>,
    /// The rest: how the guest is loaded (`-kernel ...`, `-initrd ...`, `-append ...`).
    pub guest_args: Vec<String>,
}

/// A running QEMU and the gdbstub connection to it.
pub struct Qemu {
    child: Child,
    socket: PathBuf,
    /// Where QEMU writes the guest's COM1 output.
    pub serial: PathBuf,
    serial_is_temporary: bool,
    /// The gdbstub connection.
    pub rsp: Rsp,
    /// The register layout of its `g` packet.
    pub layout: Layout,
}

impl Drop for Qemu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.socket);
        if self.serial_is_temporary {
            let _ = std::fs::remove_file(&self.serial);
        }
    }
}

impl Qemu {
    /// Starts QEMU paused before its first instruction and connects to its gdbstub.
    pub fn start(cfg: &QemuConfig) -> Result<Qemu, QemuError> {
        let socket = std::env::temp_dir().join(format!(
            "crane86-difftest-{}-{}.sock",
            std::process::id(),
            SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let _ = std::fs::remove_file(&socket);
        let mut cmd = Command::new(&cfg.binary);
        cmd.args(["-accel", "tcg", "-nodefaults", "-no-reboot", "-S"])
            .args(["-display", "none", "-monitor", "none"])
            .args(["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"])
            .args(["-m", &cfg.mem_mib.to_string()])
            .arg("-chardev")
            .arg(format!(
                "socket,id=gdb0,path={},server=on,wait=off",
                socket.display()
            ))
            .args(["-gdb", "chardev:gdb0"]);
        // COM1 must exist on both sides (a missing UART reads as 0xFF).
        let serial = cfg
            .serial
            .clone()
            .unwrap_or_else(|| std::env::temp_dir().join(temp_name("serial.txt")));
        cmd.arg("-serial").arg(format!("file:{}", serial.display()));
        if let Some(cpu) = &cfg.cpu {
            cmd.args(["-cpu", cpu]);
        }
        // In the temporary directory: monitor commands that write files (`pmemsave`) take
        // bare names there, as a path's leading `/` would parse as a division.
        cmd.args(&cfg.guest_args)
            .current_dir(std::env::temp_dir())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|source| QemuError::Spawn {
            binary: cfg.binary.clone(),
            source,
        })?;
        let deadline = Instant::now() + Duration::from_secs(20);
        let stream = loop {
            if let Ok(s) = std::os::unix::net::UnixStream::connect(&socket) {
                break s;
            }
            let exited = matches!(child.try_wait(), Ok(Some(_)));
            if exited || Instant::now() > deadline {
                let _ = child.kill();
                let mut stderr = String::new();
                if let Some(mut e) = child.stderr.take() {
                    use std::io::Read;
                    let _ = e.read_to_string(&mut stderr);
                }
                return Err(QemuError::NoSocket {
                    binary: cfg.binary.clone(),
                    secs: 20,
                    stderr: stderr.trim().to_string(),
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut rsp = Rsp::new(Box::new(stream));
        rsp.handshake()?;
        rsp.request("?")?;
        let top = rsp.features("target.xml")?;
        let layout = Layout::parse(&top, |href| rsp.features(href))?;
        Ok(Qemu {
            child,
            socket,
            serial_is_temporary: cfg.serial.is_none(),
            serial,
            rsp,
            layout,
        })
    }

    /// How QEMU ended, once it has exited by itself, waiting up to `limit` for it.
    fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// QEMU's exit status once it has exited by itself (waits up to five seconds);
    /// isa-debug-exit makes it `value << 1 | 1`.
    pub fn exit_status(&mut self) -> Option<i32> {
        self.wait_exit(Duration::from_secs(5))?.code()
    }

    /// The signal that killed QEMU, if it died of one (a crash, such as the SIGFPE of a
    /// division it performs on the host).
    pub fn exit_signal(&mut self) -> Option<i32> {
        use std::os::unix::process::ExitStatusExt;
        self.wait_exit(Duration::from_secs(2))?.signal()
    }

    /// Runs until the first instruction at linear address `addr` (a hardware breakpoint,
    /// removed again), waiting at most `timeout`.
    /// On a timeout QEMU is stopped again (interrupted) before the error returns.
    pub fn run_to(&mut self, addr: u64, timeout: Duration) -> Result<StopReply, QemuError> {
        self.rsp.breakpoint(1, addr, true)?;
        let stop = match self.rsp.cont(timeout) {
            Err(RspError::Timeout(what, t)) => {
                self.rsp.interrupt()?;
                self.rsp.wait_stop(Duration::from_secs(5))?;
                self.rsp.breakpoint(1, addr, false)?;
                return Err(RspError::Timeout(what, t).into());
            }
            other => other?,
        };
        self.rsp.breakpoint(1, addr, false)?;
        Ok(stop)
    }

    /// The compared state, now.
    pub fn state(&mut self, scope: Scope) -> Result<ArchState, QemuError> {
        let g = self.registers()?;
        Ok(ArchState::of_qemu(&self.layout, &g, scope))
    }

    /// The raw `g` packet, extended with `p` reads of registers past its end (QEMU's
    /// packet stops before some of the registers its description lists).
    pub fn registers(&mut self) -> Result<Vec<u8>, QemuError> {
        let mut g = self.rsp.read_registers()?;
        let end = self
            .layout
            .regs
            .iter()
            .map(|r| r.offset + r.bytes)
            .max()
            .unwrap_or(0);
        if g.len() < end {
            let missing: Vec<_> = self
                .layout
                .regs
                .iter()
                .filter(|r| r.offset >= g.len())
                .map(|r| (r.number, r.offset, r.bytes))
                .collect();
            g.resize(end, 0);
            for (n, off, len) in missing {
                let reply = self.rsp.request(&format!("p{n:x}"))?;
                if let Some(b) = crate::rsp::unhex(&reply) {
                    let k = b.len().min(len);
                    g[off..off + k].copy_from_slice(&b[..k]);
                }
            }
        }
        Ok(g)
    }
}

static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// True when `binary` runs (`--version`): the tests and the CLI say what to install when
/// it does not.
pub fn available(binary: &str) -> bool {
    Command::new(binary)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The name of a file for QEMU to write in its working directory (the temporary
/// directory), unique to this process.
pub fn temp_name(name: &str) -> String {
    format!("crane86-difftest-{}-{name}", std::process::id())
}
