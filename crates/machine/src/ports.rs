//! The port-I/O devices of the flat test machine: a byte sink for COM1's data register and
//! QEMU's isa-debug-exit.

use crane86_runtime::PortIo;

/// COM1's data register: bytes written here are the guest's output.
pub const SERIAL_DATA: u16 = 0x3f8;
/// COM1's line status register: reads report "transmitter empty" so polling guests proceed.
pub const SERIAL_LSR: u16 = 0x3fd;
/// QEMU's isa-debug-exit: writing V ends the run with status `(V << 1) | 1`.
pub const DEBUG_EXIT: u16 = 0xf4;
/// LSR bits: THR empty (5) and transmitter idle (6).
const LSR_IDLE: u32 = 0x60;

/// The flat machine's ports.
#[derive(Default)]
pub struct FlatPorts {
    /// Everything written to port 0x3F8.
    pub serial: Vec<u8>,
    /// Echo serial output to the host's stdout as it arrives.
    pub echo: bool,
    /// The value written to isa-debug-exit, once the guest has.
    pub exit: Option<u32>,
}

impl PortIo for FlatPorts {
    fn port_read(&mut self, port: u16, size: u8) -> u32 {
        match port {
            SERIAL_LSR => LSR_IDLE,
            // Nothing decodes other ports: the bus floats high.
            _ => u32::MAX >> (32 - 8 * u32::from(size)),
        }
    }

    fn port_write(&mut self, port: u16, _size: u8, value: u32) {
        match port {
            SERIAL_DATA => {
                let b = value as u8;
                self.serial.push(b);
                if self.echo {
                    use std::io::Write;
                    let mut out = std::io::stdout().lock();
                    let _ = out.write_all(&[b]);
                    if b == b'\n' {
                        let _ = out.flush();
                    }
                }
            }
            DEBUG_EXIT => self.exit = Some(value),
            _ => tracing::trace!(port, value, "write to unclaimed port"),
        }
    }
}
