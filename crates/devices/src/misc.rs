//! Tiny port devices: the POST code port (0x80), QEMU's isa-debugcon (0xE9) and
//! isa-debug-exit (0xF4), and the PS/2 "system control port A" (0x92: fast A20 and reset).
//!
//! Each is one byte wide; a wider access applies to the low byte (these are write-mostly
//! latches, and firmware that writes a word to them means its low byte).

use std::io::Write;

use crate::PortDevice;

/// The POST diagnostic port: firmware writes its progress codes here.
pub const POST_CODE_PORT: u16 = 0x80;
/// QEMU's isa-debugcon: bytes written are a debug console.
pub const DEBUGCON_PORT: u16 = 0xe9;
/// What reading the debugcon port returns: QEMU answers 0xE9 so a guest can detect it.
pub const DEBUGCON_READBACK: u8 = 0xe9;
/// QEMU's isa-debug-exit, as test harnesses configure it (`iobase=0xf4`).
pub const DEBUG_EXIT_PORT: u16 = 0xf4;
/// System control port A.
pub const PORT92: u16 = 0x92;
/// Port 0x92: writing 1 resets the CPU (a "fast reset"); it reads back as 0.
pub const PORT92_RESET: u8 = 1 << 0;
/// Port 0x92: the A20 gate (1 = address line 20 passes through).
pub const PORT92_A20: u8 = 1 << 1;

/// The POST code port: remembers the last value and logs it.
#[derive(Debug, Default)]
pub struct PostCode {
    last: Option<u8>,
}

impl PostCode {
    /// A port that has seen no code yet.
    pub fn new() -> Self {
        PostCode::default()
    }

    /// The last code written, if any.
    pub fn last(&self) -> Option<u8> {
        self.last
    }
}

impl PortDevice for PostCode {
    /// Reads return the last code (0 before any): some boards latch it, and nothing relies on
    /// the value, since the port's other use is a short I/O delay.
    fn read(&mut self, _offset: u16, _size: u8) -> u32 {
        u32::from(self.last.unwrap_or(0))
    }

    fn write(&mut self, offset: u16, _size: u8, value: u32) {
        let code = value as u8;
        tracing::debug!(offset, code = format_args!("{code:#04x}"), "POST code");
        self.last = Some(code);
    }
}

/// QEMU's isa-debugcon: every byte written goes to `W`.
#[derive(Debug)]
pub struct DebugCon<W: Write + Send> {
    out: W,
}

impl<W: Write + Send> DebugCon<W> {
    /// A debug console writing to `out`.
    pub fn new(out: W) -> Self {
        DebugCon { out }
    }

    /// The output sink.
    pub fn writer(&self) -> &W {
        &self.out
    }
}

impl<W: Write + Send> PortDevice for DebugCon<W> {
    fn read(&mut self, _offset: u16, _size: u8) -> u32 {
        u32::from(DEBUGCON_READBACK)
    }

    fn write(&mut self, _offset: u16, _size: u8, value: u32) {
        if let Err(e) = self.out.write_all(&[value as u8]) {
            tracing::debug!(%e, "debugcon: byte lost");
        }
    }
}

/// QEMU's isa-debug-exit: a write asks the machine to stop with a status derived from it.
#[derive(Debug, Default)]
pub struct DebugExit {
    value: Option<u32>,
}

impl DebugExit {
    /// A port not yet written.
    pub fn new() -> Self {
        DebugExit::default()
    }

    /// The raw value written (the first write wins, since the machine stops at it).
    pub fn value(&self) -> Option<u32> {
        self.value
    }

    /// The process exit status QEMU would give: `(value << 1) | 1`, so that a guest can never
    /// make QEMU report plain success (0).
    pub fn exit_code(&self) -> Option<u32> {
        self.value.map(|v| (v << 1) | 1)
    }
}

impl PortDevice for DebugExit {
    /// Reads return 0, like QEMU's.
    fn read(&mut self, _offset: u16, _size: u8) -> u32 {
        0
    }

    /// The value is the whole access (test harnesses use byte or dword writes).
    fn write(&mut self, offset: u16, size: u8, value: u32) {
        let value = value & (u32::MAX >> (32 - 8 * u32::from(size.clamp(1, 4))));
        tracing::debug!(offset, value, "debug-exit written");
        self.value.get_or_insert(value);
    }
}

/// System control port A (0x92): fast A20 gate and CPU reset.
#[derive(Debug)]
pub struct Port92 {
    value: u8,
    reset_requested: bool,
}

impl Default for Port92 {
    /// A20 enabled, like QEMU's machines start (firmware enables it anyway, and a kernel loaded
    /// directly expects it on).
    fn default() -> Self {
        Port92 {
            value: PORT92_A20,
            reset_requested: false,
        }
    }
}

impl Port92 {
    /// The port after power-on (A20 enabled).
    pub fn new() -> Self {
        Port92::default()
    }

    /// Whether this port lets A20 through (the machine ORs it with the i8042's gate).
    pub fn a20(&self) -> bool {
        self.value & PORT92_A20 != 0
    }

    /// Whether the guest asked for a reset since the last call; clears the request.
    pub fn take_reset_request(&mut self) -> bool {
        std::mem::take(&mut self.reset_requested)
    }
}

impl PortDevice for Port92 {
    fn read(&mut self, _offset: u16, _size: u8) -> u32 {
        u32::from(self.value & !PORT92_RESET)
    }

    fn write(&mut self, _offset: u16, _size: u8, value: u32) {
        let value = value as u8;
        // Bit 0 is a trigger, not a latch: it reads back 0, so every write of 1 is a new edge.
        if value & PORT92_RESET != 0 {
            tracing::debug!("port 0x92: reset requested");
            self.reset_requested = true;
        }
        self.value = value & !PORT92_RESET;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lcg(x: &mut u64) -> u64 {
        *x = crate::testing::lcg(*x);
        *x >> 11
    }

    #[test]
    fn test_post_code_remembers_last() {
        let mut p = PostCode::new();
        assert_eq!(p.last(), None);
        p.write(0, 1, 0x12);
        p.write(0, 1, 0x1234);
        assert_eq!(p.last(), Some(0x34));
        assert_eq!(p.read(0, 1), 0x34);
    }

    #[test]
    fn test_debugcon_collects_bytes_and_reads_e9() {
        let mut d = DebugCon::new(Vec::new());
        for &b in b"ok\n" {
            d.write(0, 1, u32::from(b));
        }
        assert_eq!(d.writer().as_slice(), b"ok\n");
        assert_eq!(d.read(0, 1), 0xe9);
    }

    #[test]
    fn test_debug_exit_code() {
        let mut e = DebugExit::new();
        assert_eq!(e.exit_code(), None);
        e.write(0, 4, 0x10);
        assert_eq!(e.value(), Some(0x10));
        assert_eq!(e.exit_code(), Some(0x21));
        e.write(0, 1, 0x1ff);
        assert_eq!(e.value(), Some(0x10));
        let mut e = DebugExit::new();
        e.write(0, 1, 0x1ff);
        assert_eq!(e.exit_code(), Some(0x1ff));
        assert_eq!(e.read(0, 1), 0);
    }

    #[test]
    fn test_port92_a20_and_reset() {
        let mut p = Port92::new();
        assert!(p.a20());
        p.write(0, 1, 0);
        assert!(!p.a20());
        assert!(!p.take_reset_request());
        p.write(0, 1, u32::from(PORT92_A20 | PORT92_RESET));
        assert!(p.a20());
        assert_eq!(p.read(0, 1), u32::from(PORT92_A20));
        assert!(p.take_reset_request());
        assert!(!p.take_reset_request());
    }

    #[test]
    fn test_misc_random_accesses_never_panic() {
        let mut devs: Vec<Box<dyn PortDevice>> = vec![
            Box::new(PostCode::new()),
            Box::new(DebugCon::new(std::io::sink())),
            Box::new(DebugExit::new()),
            Box::new(Port92::new()),
        ];
        let mut x = 7;
        for _ in 0..10_000 {
            let r = lcg(&mut x);
            let d = &mut devs[(r % 4) as usize];
            let off = (r >> 2) as u16;
            let size = [0, 1, 2, 3, 4, 8, 255][((r >> 20) % 7) as usize];
            if r & (1 << 40) != 0 {
                d.write(off, size, (r >> 8) as u32);
            } else {
                d.read(off, size);
            }
        }
    }
}
