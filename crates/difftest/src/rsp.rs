//! A client for the GDB remote serial protocol, enough to drive QEMU's gdbstub: packets and
//! acknowledgements, register and memory access, breakpoints, single-step and continue,
//! monitor commands, and the target description.
//!
//! The protocol is a byte stream of `$payload#checksum` packets, each acknowledged with `+`
//! (QEMU 7.2 does not offer no-ack mode). Replies may be run-length encoded (`x*n`), which
//! [`Rsp::recv`] expands.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

/// Errors talking to a gdbstub.
#[derive(Debug, thiserror::Error)]
pub enum RspError {
    /// The connection failed.
    #[error("gdbstub connection: {0}")]
    Io(#[from] std::io::Error),
    /// No reply within the time allowed.
    #[error("gdbstub: no reply to `{0}` within {1:?}")]
    Timeout(String, Duration),
    /// The stub closed the connection (QEMU exited).
    #[error("gdbstub: the connection closed")]
    Closed,
    /// A reply that does not parse, or an `Exx` error reply.
    #[error("gdbstub: `{request}` got `{reply}`")]
    Reply {
        /// The request, shortened.
        request: String,
        /// The reply, shortened.
        reply: String,
    },
}

/// A byte stream to a stub with a read timeout (a TCP or Unix socket).
pub trait Stream: Read + Write + Send {
    /// Sets how long one read may block.
    fn set_timeout(&self, t: Duration) -> std::io::Result<()>;
}

impl Stream for std::net::TcpStream {
    fn set_timeout(&self, t: Duration) -> std::io::Result<()> {
        self.set_read_timeout(Some(t))
    }
}

impl Stream for std::os::unix::net::UnixStream {
    fn set_timeout(&self, t: Duration) -> std::io::Result<()> {
        self.set_read_timeout(Some(t))
    }
}

/// Why the target stopped, from a stop reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StopReply {
    /// `Snn`/`Tnn...`: stopped with signal `nn` (5 = SIGTRAP after a step or breakpoint).
    Signal(u8),
    /// `Wnn`: the process (QEMU: the machine) exited with status `nn`.
    Exited(u8),
    /// `Xnn`: terminated by a signal.
    Terminated(u8),
}

/// A connected client.
pub struct Rsp {
    stream: Box<dyn Stream>,
    buf: Vec<u8>,
    /// How long a request waits for its reply (steps and continues have their own).
    pub timeout: Duration,
}

fn shorten(s: &str) -> String {
    if s.len() > 80 {
        format!("{}...", &s[..80])
    } else {
        s.to_string()
    }
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Bytes of a hex string (`xx` pairs; `None` on a bad digit or an odd length).
pub fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

impl Rsp {
    /// Wraps a connected stream.
    pub fn new(stream: Box<dyn Stream>) -> Rsp {
        Rsp {
            stream,
            buf: Vec::new(),
            timeout: Duration::from_secs(10),
        }
    }

    fn send(&mut self, payload: &str) -> Result<(), RspError> {
        let sum = payload.bytes().fold(0u8, |a, b| a.wrapping_add(b));
        let packet = format!("${payload}#{sum:02x}");
        self.stream.write_all(packet.as_bytes())?;
        Ok(())
    }

    /// Reads bytes until a whole packet is buffered; acknowledges it and returns its
    /// payload, run-length decoded.
    fn recv(&mut self, request: &str, timeout: Duration) -> Result<String, RspError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(start) = self.buf.iter().position(|&b| b == b'$') {
                if let Some(hash) = self.buf[start..].iter().position(|&b| b == b'#') {
                    let hash = start + hash;
                    if self.buf.len() >= hash + 3 {
                        let payload = self.buf[start + 1..hash].to_vec();
                        self.buf.drain(..hash + 3);
                        self.stream.write_all(b"+")?;
                        return Ok(expand_rle(&payload));
                    }
                }
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(RspError::Timeout(shorten(request), timeout));
            }
            self.stream
                .set_timeout((deadline - now).max(Duration::from_millis(1)))?;
            let mut chunk = [0u8; 65536];
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err(RspError::Closed),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                    return Err(RspError::Closed)
                }
                Err(e) => return Err(e.into()),
            }
            // Acknowledgements of our own packets carry no information here.
            while matches!(self.buf.first(), Some(b'+') | Some(b'-')) {
                self.buf.remove(0);
            }
        }
    }

    /// Sends a request and returns its reply.
    pub fn request(&mut self, payload: &str) -> Result<String, RspError> {
        self.send(payload)?;
        let t = self.timeout;
        self.recv(payload, t)
    }

    /// Sends a request whose reply must be `OK`.
    pub fn request_ok(&mut self, payload: &str) -> Result<(), RspError> {
        let reply = self.request(payload)?;
        if reply == "OK" {
            Ok(())
        } else {
            Err(bad(payload, &reply))
        }
    }

    /// Sends the `qSupported` handshake and returns the stub's feature list.
    pub fn handshake(&mut self) -> Result<String, RspError> {
        self.request("qSupported:multiprocess-;swbreak+;hwbreak+;xmlRegisters=i386")
    }

    /// Reads a whole `qXfer:features:read` annex (e.g. `target.xml`).
    pub fn features(&mut self, annex: &str) -> Result<String, RspError> {
        let mut out = String::new();
        loop {
            let req = format!("qXfer:features:read:{annex}:{:x},ffb", out.len());
            let reply = self.request(&req)?;
            let (kind, data) = reply.split_at(reply.len().min(1));
            out.push_str(data);
            match kind {
                "l" => return Ok(out),
                "m" if !data.is_empty() => {}
                _ => return Err(bad(&req, &reply)),
            }
        }
    }

    /// The `g` packet: every register, in target-description order.
    pub fn read_registers(&mut self) -> Result<Vec<u8>, RspError> {
        let reply = self.request("g")?;
        unhex(&reply).ok_or_else(|| bad("g", &reply))
    }

    /// Writes register number `n` (`P` packet) with its target-byte-order bytes.
    pub fn write_register(&mut self, n: usize, bytes: &[u8]) -> Result<(), RspError> {
        self.request_ok(&format!("P{n:x}={}", hex(bytes)))
    }

    /// Reads `len` bytes at `addr` (virtual or physical, per [`Rsp::physical_memory`]).
    pub fn read_memory(&mut self, addr: u64, len: usize) -> Result<Vec<u8>, RspError> {
        let mut out = Vec::with_capacity(len);
        while out.len() < len {
            let n = (len - out.len()).min(0x7f0);
            let req = format!("m{:x},{n:x}", addr + out.len() as u64);
            let reply = self.request(&req)?;
            match unhex(&reply) {
                Some(b) if b.len() == n => out.extend_from_slice(&b),
                _ => return Err(bad(&req, &reply)),
            }
        }
        Ok(out)
    }

    /// Writes `data` at `addr` (virtual or physical, per [`Rsp::physical_memory`]).
    pub fn write_memory(&mut self, addr: u64, data: &[u8]) -> Result<(), RspError> {
        for (i, chunk) in data.chunks(0x3f0).enumerate() {
            let at = addr + (i * 0x3f0) as u64;
            self.request_ok(&format!("M{at:x},{:x}:{}", chunk.len(), hex(chunk)))?;
        }
        Ok(())
    }

    /// Switches memory packets between physical (`true`) and virtual addresses: QEMU's
    /// `Qqemu.PhyMemMode`.
    pub fn physical_memory(&mut self, on: bool) -> Result<(), RspError> {
        self.request_ok(&format!("Qqemu.PhyMemMode:{}", u8::from(on)))
    }

    /// Sets QEMU's single-step flags (`Qqemu.sstep`): bit 0 enables stepping, bit 1 holds
    /// interrupts off while stepping, bit 2 holds timers.
    pub fn step_flags(&mut self, flags: u32) -> Result<(), RspError> {
        self.request_ok(&format!("Qqemu.sstep={flags:x}"))
    }

    /// Inserts (`on`) or removes a breakpoint of `kind` (0 software, 1 hardware) at `addr`.
    pub fn breakpoint(&mut self, kind: u8, addr: u64, on: bool) -> Result<(), RspError> {
        let op = if on { 'Z' } else { 'z' };
        self.request_ok(&format!("{op}{kind},{addr:x},1"))
    }

    /// Executes one instruction (`s`) and waits for the stop, up to `timeout`.
    pub fn step(&mut self, timeout: Duration) -> Result<StopReply, RspError> {
        self.send("s")?;
        let reply = self.recv("s", timeout)?;
        parse_stop("s", &reply)
    }

    /// Resumes (`c`) and waits for the next stop, up to `timeout`.
    pub fn cont(&mut self, timeout: Duration) -> Result<StopReply, RspError> {
        self.send("c")?;
        let reply = self.recv("c", timeout)?;
        parse_stop("c", &reply)
    }

    /// Waits for the stop reply of a target that was asked to stop ([`Rsp::interrupt`]).
    pub fn wait_stop(&mut self, timeout: Duration) -> Result<StopReply, RspError> {
        let reply = self.recv("(stop)", timeout)?;
        parse_stop("(stop)", &reply)
    }

    /// Runs a monitor command (`qRcmd`) and returns its output.
    pub fn monitor(&mut self, command: &str) -> Result<String, RspError> {
        let req = format!("qRcmd,{}", hex(command.as_bytes()));
        self.send(&req)?;
        let mut out = Vec::new();
        loop {
            let t = self.timeout;
            let reply = self.recv(&req, t)?;
            if reply == "OK" {
                return Ok(String::from_utf8_lossy(&out).into_owned());
            }
            match reply.strip_prefix('O').and_then(unhex) {
                Some(b) => out.extend_from_slice(&b),
                None if reply.is_empty() => return Err(bad(&req, "(unsupported)")),
                None => return Err(bad(&req, &reply)),
            }
        }
    }

    /// Asks a running target to stop (the out-of-band interrupt byte).
    pub fn interrupt(&mut self) -> Result<(), RspError> {
        self.stream.write_all(&[0x03])?;
        Ok(())
    }
}

fn bad(request: &str, reply: &str) -> RspError {
    RspError::Reply {
        request: shorten(request),
        reply: shorten(reply),
    }
}

fn parse_stop(request: &str, reply: &str) -> Result<StopReply, RspError> {
    let code = reply.get(1..3).and_then(|h| u8::from_str_radix(h, 16).ok());
    match (reply.chars().next(), code) {
        (Some('S' | 'T'), Some(c)) => Ok(StopReply::Signal(c)),
        (Some('W'), Some(c)) => Ok(StopReply::Exited(c)),
        (Some('X'), Some(c)) => Ok(StopReply::Terminated(c)),
        _ => Err(bad(request, reply)),
    }
}

/// Expands the protocol's run-length encoding: `c*n` repeats `c` `n - 29` more times.
fn expand_rle(payload: &[u8]) -> String {
    let mut out = Vec::with_capacity(payload.len());
    let mut i = 0;
    while i < payload.len() {
        if payload[i] == b'*' && i + 1 < payload.len() {
            if let Some(&last) = out.last() {
                let n = usize::from(payload[i + 1]).saturating_sub(29);
                out.extend(std::iter::repeat_n(last, n));
            }
            i += 2;
        } else {
            out.push(payload[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_length_encoding_expands() {
        // "0* " is '0' then 32 - 29 = 3 more.
        assert_eq!(expand_rle(b"a0* b"), "a0000b");
        assert_eq!(expand_rle(b"OK"), "OK");
    }

    #[test]
    fn stop_replies_parse() {
        assert_eq!(
            parse_stop("s", "T05thread:p01.01;").unwrap(),
            StopReply::Signal(5)
        );
        assert_eq!(parse_stop("c", "W00").unwrap(), StopReply::Exited(0));
        assert!(parse_stop("c", "E01").is_err());
    }

    #[test]
    fn hex_round_trips() {
        assert_eq!(unhex(&hex(&[0, 0x7f, 0xff])).unwrap(), [0, 0x7f, 0xff]);
        assert!(unhex("abc").is_none());
        assert!(unhex("zz").is_none());
    }
}
