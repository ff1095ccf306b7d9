//! The i8042 PS/2 controller at ports 0x60 (data) and 0x64 (status/command), with a keyboard
//! (IRQ 1) and a mouse that answers but never moves (IRQ 12).
//!
//! The controller has one output buffer. Bytes wait in three queues behind it: the
//! controller's own replies (first), then the keyboard's, then the mouse's; a port disabled
//! in the command byte holds its queue back. A byte in the buffer drives its port's IRQ line
//! high while that port's interrupt is enabled in the command byte; reading port 0x60 lowers
//! it, and the next byte raises it again (an edge for the 8259).
//!
//! The controller's output port carries the CPU reset line (bit 0, active low) and the A20
//! gate (bit 1). The machine polls them: [`I8042::take_reset_request`] and [`I8042::a20`].
//!
//! Scancodes given to [`I8042::enqueue_key`] are passed through as they are: the caller sends
//! set 1 when the command byte asks for translation (the default), set 2 otherwise.

use std::collections::VecDeque;

use crate::{IrqLine, PortDevice};

/// Port offset of the data register (port 0x60).
pub const DATA: u16 = 0;
/// Port offset of the status (read) and command (write) register (port 0x64).
pub const COMMAND: u16 = 4;

/// Status: the output buffer holds a byte for the guest.
pub const STATUS_OBF: u8 = 1 << 0;
/// Status: the input buffer is full (never: commands are handled at once).
pub const STATUS_IBF: u8 = 1 << 1;
/// Status: the system flag (set by a passing self-test; mirrors command byte bit 2).
pub const STATUS_SYS: u8 = 1 << 2;
/// Status: the last write was to the command port (1) or the data port (0).
pub const STATUS_A2: u8 = 1 << 3;
/// Status: the keyboard is not inhibited by the keylock.
pub const STATUS_UNLOCKED: u8 = 1 << 4;
/// Status: the byte in the output buffer came from the mouse.
pub const STATUS_AUX_OBF: u8 = 1 << 5;

/// Command byte: keyboard interrupt (IRQ 1) enable.
pub const CMD_KBD_INT: u8 = 1 << 0;
/// Command byte: mouse interrupt (IRQ 12) enable.
pub const CMD_AUX_INT: u8 = 1 << 1;
/// Command byte: the system flag.
pub const CMD_SYS: u8 = 1 << 2;
/// Command byte: keyboard port disabled.
pub const CMD_KBD_DISABLE: u8 = 1 << 4;
/// Command byte: mouse port disabled.
pub const CMD_AUX_DISABLE: u8 = 1 << 5;
/// Command byte: translate keyboard set 2 to set 1.
pub const CMD_TRANSLATE: u8 = 1 << 6;

/// Output port: CPU reset line, active low (writing 0 resets).
pub const OUT_RESET: u8 = 1 << 0;
/// Output port: the A20 gate.
pub const OUT_A20: u8 = 1 << 1;
/// Output port: the output buffer holds a keyboard byte (IRQ 1).
pub const OUT_OBF: u8 = 1 << 4;
/// Output port: the output buffer holds a mouse byte (IRQ 12).
pub const OUT_AUX_OBF: u8 = 1 << 5;

/// Controller command: read controller RAM byte 0-31 (0x20 is the command byte).
pub const CCMD_READ_RAM: u8 = 0x20;
/// Controller command: write controller RAM byte 0-31 (0x60 is the command byte).
pub const CCMD_WRITE_RAM: u8 = 0x60;
/// Controller command: disable the mouse port.
pub const CCMD_AUX_DISABLE: u8 = 0xa7;
/// Controller command: enable the mouse port.
pub const CCMD_AUX_ENABLE: u8 = 0xa8;
/// Controller command: test the mouse port (0x00 = passed).
pub const CCMD_AUX_TEST: u8 = 0xa9;
/// Controller command: self-test (0x55 = passed).
pub const CCMD_SELF_TEST: u8 = 0xaa;
/// Controller command: test the keyboard port (0x00 = passed).
pub const CCMD_KBD_TEST: u8 = 0xab;
/// Controller command: disable the keyboard port.
pub const CCMD_KBD_DISABLE: u8 = 0xad;
/// Controller command: enable the keyboard port.
pub const CCMD_KBD_ENABLE: u8 = 0xae;
/// Controller command: read the input port.
pub const CCMD_READ_INPUT: u8 = 0xc0;
/// Controller command: read the output port.
pub const CCMD_READ_OUTPUT: u8 = 0xd0;
/// Controller command: write the output port (next data byte).
pub const CCMD_WRITE_OUTPUT: u8 = 0xd1;
/// Controller command: put the next data byte in the output buffer as if from the keyboard.
pub const CCMD_WRITE_KBD_OBUF: u8 = 0xd2;
/// Controller command: put the next data byte in the output buffer as if from the mouse.
pub const CCMD_WRITE_AUX_OBUF: u8 = 0xd3;
/// Controller command: send the next data byte to the mouse.
pub const CCMD_WRITE_AUX: u8 = 0xd4;
/// Controller command: disable A20 (a common extension).
pub const CCMD_A20_DISABLE: u8 = 0xdd;
/// Controller command: enable A20 (a common extension).
pub const CCMD_A20_ENABLE: u8 = 0xdf;
/// Controller command: read the test inputs.
pub const CCMD_READ_TEST: u8 = 0xe0;
/// Controller commands 0xF0-0xFF pulse the output port bits that are 0 in the low nibble;
/// 0xFE pulses bit 0, the CPU reset.
pub const CCMD_PULSE: u8 = 0xf0;

/// Device reply: acknowledge.
pub const ACK: u8 = 0xfa;
/// Device reply: resend (unknown command).
pub const RESEND: u8 = 0xfe;
/// Device reply: basic assurance test passed (after a reset).
pub const BAT_OK: u8 = 0xaa;
/// Keyboard reply to echo (0xEE).
pub const ECHO: u8 = 0xee;

/// The command byte after reset: both interrupts on, system flag set, translation on, the
/// way a BIOS leaves the controller for an OS.
const DEFAULT_COMMAND: u8 = CMD_KBD_INT | CMD_AUX_INT | CMD_SYS | CMD_TRANSLATE;
/// The output port after reset: not in reset, and A20 on, as QEMU's machines start (firmware
/// enables it anyway; a kernel loaded directly expects it).
const DEFAULT_OUTPUT: u8 = OUT_RESET | OUT_A20;
/// A queue longer than this drops new bytes (a real keyboard buffers 16; this is generous).
const QUEUE_MAX: usize = 256;

/// Where a byte in the output buffer came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// The keyboard port (and the controller's own replies): IRQ 1.
    Keyboard,
    /// The mouse port: IRQ 12.
    Aux,
}

/// A snapshot of an [`I8042`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct I8042State {
    /// Controller RAM; byte 0 is the command byte.
    pub ram: [u8; 32],
    /// The output port.
    pub output_port: u8,
    /// Whether the last write was to the command port.
    pub last_was_command: bool,
    /// A controller command waiting for its data byte.
    pub pending_command: Option<u8>,
    /// The output buffer.
    pub obuf: Option<(u8, Source)>,
    /// The last byte read from the data port (read again when the buffer is empty).
    pub last_data: u8,
    /// Controller replies waiting for the output buffer.
    pub ctrl_queue: VecDeque<(u8, Source)>,
    /// Keyboard bytes waiting.
    pub kbd_queue: VecDeque<u8>,
    /// Mouse bytes waiting.
    pub aux_queue: VecDeque<u8>,
    /// A keyboard command waiting for its argument.
    pub kbd_pending: Option<u8>,
    /// The keyboard sends scancodes.
    pub kbd_scanning: bool,
    /// The keyboard's scancode set (1-3).
    pub scancode_set: u8,
    /// The keyboard LEDs.
    pub leds: u8,
    /// A mouse command waiting for its argument.
    pub aux_pending: Option<u8>,
    /// The guest asked for a reset not yet taken by the machine.
    pub reset_requested: bool,
    /// IRQ 1 level.
    pub kbd_irq_high: bool,
    /// IRQ 12 level.
    pub aux_irq_high: bool,
}

impl Default for I8042State {
    fn default() -> Self {
        let mut ram = [0; 32];
        ram[0] = DEFAULT_COMMAND;
        I8042State {
            ram,
            output_port: DEFAULT_OUTPUT,
            last_was_command: false,
            pending_command: None,
            obuf: None,
            last_data: 0,
            ctrl_queue: VecDeque::new(),
            kbd_queue: VecDeque::new(),
            aux_queue: VecDeque::new(),
            kbd_pending: None,
            kbd_scanning: true,
            scancode_set: 2,
            leds: 0,
            aux_pending: None,
            reset_requested: false,
            kbd_irq_high: false,
            aux_irq_high: false,
        }
    }
}

/// The PS/2 controller with its keyboard and mouse.
pub struct I8042<I: IrqLine> {
    kbd_irq: I,
    aux_irq: I,
    s: I8042State,
}

impl<I: IrqLine> I8042<I> {
    /// A controller after reset, its keyboard on `kbd_irq` (IRQ 1) and mouse on `aux_irq`
    /// (IRQ 12).
    pub fn new(kbd_irq: I, aux_irq: I) -> Self {
        Self::from_state(I8042State::default(), kbd_irq, aux_irq)
    }

    /// Rebuilds a controller from a snapshot.
    pub fn from_state(state: I8042State, kbd_irq: I, aux_irq: I) -> Self {
        kbd_irq.set_level(state.kbd_irq_high);
        aux_irq.set_level(state.aux_irq_high);
        I8042 {
            kbd_irq,
            aux_irq,
            s: state,
        }
    }

    /// Saves the device's state.
    pub fn state(&self) -> I8042State {
        self.s.clone()
    }

    /// Whether the guest asked for a CPU reset since the last call; clears the request.
    pub fn take_reset_request(&mut self) -> bool {
        std::mem::take(&mut self.s.reset_requested)
    }

    /// Whether the output port lets A20 through (the machine ORs it with port 0x92's gate).
    pub fn a20(&self) -> bool {
        self.s.output_port & OUT_A20 != 0
    }

    /// The command byte.
    pub fn command_byte(&self) -> u8 {
        self.s.ram[0]
    }

    /// Queues scancode bytes from the keyboard (dropped while the keyboard is not scanning).
    pub fn enqueue_key(&mut self, bytes: &[u8]) {
        if self.s.kbd_scanning {
            for &b in bytes {
                push(&mut self.s.kbd_queue, b);
            }
            self.refill();
        }
    }

    fn status(&self) -> u8 {
        let mut st = STATUS_UNLOCKED | (self.command_byte() & CMD_SYS);
        match self.s.obuf {
            Some((_, Source::Keyboard)) => st |= STATUS_OBF,
            Some((_, Source::Aux)) => st |= STATUS_OBF | STATUS_AUX_OBF,
            None => {}
        }
        if self.s.last_was_command {
            st |= STATUS_A2;
        }
        st
    }

    fn output_port(&self) -> u8 {
        let obf = match self.s.obuf {
            Some((_, Source::Keyboard)) => OUT_OBF,
            Some((_, Source::Aux)) => OUT_AUX_OBF,
            None => 0,
        };
        self.s.output_port & !(OUT_OBF | OUT_AUX_OBF) | obf
    }

    fn reply(&mut self, b: u8) {
        self.reply_as(b, Source::Keyboard);
    }

    fn reply_as(&mut self, b: u8, src: Source) {
        if self.s.ctrl_queue.len() < QUEUE_MAX {
            self.s.ctrl_queue.push_back((b, src));
        }
    }

    /// Moves the next waiting byte into an empty output buffer and drives the IRQ lines.
    fn refill(&mut self) {
        if self.s.obuf.is_none() {
            let cmd = self.command_byte();
            self.s.obuf = self.s.ctrl_queue.pop_front().or_else(|| {
                let kbd = (cmd & CMD_KBD_DISABLE == 0)
                    .then(|| self.s.kbd_queue.pop_front())
                    .flatten()
                    .map(|b| (b, Source::Keyboard));
                kbd.or_else(|| {
                    (cmd & CMD_AUX_DISABLE == 0)
                        .then(|| self.s.aux_queue.pop_front())
                        .flatten()
                        .map(|b| (b, Source::Aux))
                })
            });
        }
        self.drive_irqs();
    }

    fn drive_irqs(&mut self) {
        let cmd = self.command_byte();
        let kbd = matches!(self.s.obuf, Some((_, Source::Keyboard))) && cmd & CMD_KBD_INT != 0;
        let aux = matches!(self.s.obuf, Some((_, Source::Aux))) && cmd & CMD_AUX_INT != 0;
        if kbd != self.s.kbd_irq_high {
            self.s.kbd_irq_high = kbd;
            self.kbd_irq.set_level(kbd);
        }
        if aux != self.s.aux_irq_high {
            self.s.aux_irq_high = aux;
            self.aux_irq.set_level(aux);
        }
    }

    fn write_output_port(&mut self, v: u8) {
        if v & OUT_RESET == 0 {
            tracing::debug!("i8042: reset through the output port");
            self.s.reset_requested = true;
        }
        // The reset line is momentary: the CPU restarts and the controller lets it go.
        self.s.output_port = v | OUT_RESET;
    }

    fn read_data(&mut self) -> u8 {
        if let Some((b, _)) = self.s.obuf.take() {
            self.s.last_data = b;
            // Lower the line before the next byte raises it: one edge per byte.
            self.drive_irqs();
            self.refill();
        }
        self.s.last_data
    }

    fn write_command(&mut self, c: u8) {
        self.s.last_was_command = true;
        self.s.pending_command = None;
        match c {
            0x20..=0x3f => {
                let v = self.s.ram[usize::from(c & 0x1f)];
                self.reply(v);
            }
            0x60..=0x7f | CCMD_WRITE_OUTPUT..=CCMD_WRITE_AUX => self.s.pending_command = Some(c),
            CCMD_AUX_DISABLE => self.s.ram[0] |= CMD_AUX_DISABLE,
            CCMD_AUX_ENABLE => self.s.ram[0] &= !CMD_AUX_DISABLE,
            CCMD_AUX_TEST | CCMD_KBD_TEST => self.reply(0x00),
            CCMD_SELF_TEST => {
                self.s.ram[0] |= CMD_SYS;
                self.reply(0x55);
            }
            CCMD_KBD_DISABLE => self.s.ram[0] |= CMD_KBD_DISABLE,
            CCMD_KBD_ENABLE => self.s.ram[0] &= !CMD_KBD_DISABLE,
            CCMD_READ_INPUT | CCMD_READ_TEST => self.reply(0x00),
            CCMD_READ_OUTPUT => {
                let v = self.output_port();
                self.reply(v);
            }
            CCMD_A20_DISABLE => self.s.output_port &= !OUT_A20,
            CCMD_A20_ENABLE => self.s.output_port |= OUT_A20,
            CCMD_PULSE..=0xff => {
                if c & OUT_RESET == 0 {
                    tracing::debug!("i8042: reset pulse");
                    self.s.reset_requested = true;
                }
            }
            _ => tracing::debug!(c, "i8042: unknown controller command ignored"),
        }
        self.refill();
    }

    fn write_data(&mut self, v: u8) {
        self.s.last_was_command = false;
        match self.s.pending_command.take() {
            Some(c @ 0x60..=0x7f) => self.s.ram[usize::from(c & 0x1f)] = v,
            Some(CCMD_WRITE_OUTPUT) => self.write_output_port(v),
            Some(CCMD_WRITE_KBD_OBUF) => self.reply_as(v, Source::Keyboard),
            Some(CCMD_WRITE_AUX_OBUF) => self.reply_as(v, Source::Aux),
            Some(CCMD_WRITE_AUX) => self.aux_write(v),
            _ => {
                // Talking to the keyboard re-enables its port, as on real controllers.
                self.s.ram[0] &= !CMD_KBD_DISABLE;
                self.kbd_write(v);
            }
        }
        self.refill();
    }

    fn kbd_write(&mut self, v: u8) {
        let q = &mut self.s.kbd_queue;
        if let Some(cmd) = self.s.kbd_pending.take() {
            match (cmd, v) {
                (0xed, _) => self.s.leds = v & 0x07,
                (0xf0, 0) => {
                    push(q, ACK);
                    push(q, self.s.scancode_set);
                    return;
                }
                (0xf0, 1..=3) => self.s.scancode_set = v,
                (0xf0, _) => return push(q, RESEND),
                _ => {}
            }
            return push(q, ACK);
        }
        match v {
            // Set LEDs, set typematic rate, select scancode set: an argument follows.
            0xed | 0xf3 | 0xf0 => {
                self.s.kbd_pending = Some(v);
                push(q, ACK);
            }
            0xee => push(q, ECHO),
            // Identify: an MF2 keyboard; its second byte is translated like a scancode.
            0xf2 => {
                let id = if self.s.ram[0] & CMD_TRANSLATE != 0 {
                    0x41
                } else {
                    0x83
                };
                for b in [ACK, 0xab, id] {
                    push(q, b);
                }
            }
            0xf4 => {
                self.s.kbd_scanning = true;
                push(q, ACK);
            }
            // Disable and set-default both restore defaults and clear the buffer.
            0xf5 | 0xf6 => {
                q.clear();
                self.s.kbd_scanning = v == 0xf6;
                self.s.scancode_set = 2;
                push(q, ACK);
            }
            0xf7..=0xfd => push(q, ACK),
            0xff => {
                q.clear();
                self.s.kbd_scanning = true;
                self.s.scancode_set = 2;
                self.s.leds = 0;
                push(q, ACK);
                push(q, BAT_OK);
            }
            _ => {
                tracing::debug!(v, "i8042: unknown keyboard command");
                push(q, RESEND);
            }
        }
    }

    fn aux_write(&mut self, v: u8) {
        let q = &mut self.s.aux_queue;
        if self.s.aux_pending.take().is_some() {
            return push(q, ACK);
        }
        let reply: &[u8] = match v {
            // Set resolution, set sample rate: an argument follows.
            0xe8 | 0xf3 => {
                self.s.aux_pending = Some(v);
                &[ACK]
            }
            // Status: stream mode, disabled, 4 counts/mm, 100 samples/s.
            0xe9 => &[ACK, 0x00, 0x02, 100],
            // Read data: no movement, no buttons.
            0xeb => &[ACK, 0x08, 0x00, 0x00],
            // Identify: a standard PS/2 mouse.
            0xf2 => &[ACK, 0x00],
            0xe6 | 0xe7 | 0xea | 0xec | 0xee | 0xf0 | 0xf4..=0xf6 => &[ACK],
            0xff => {
                q.clear();
                &[ACK, BAT_OK, 0x00]
            }
            _ => &[RESEND],
        };
        for &b in reply {
            push(q, b);
        }
    }
}

fn push(q: &mut VecDeque<u8>, b: u8) {
    if q.len() < QUEUE_MAX {
        q.push_back(b);
    } else {
        tracing::debug!(b, "i8042: queue full, byte dropped");
    }
}

impl<I: IrqLine> PortDevice for I8042<I> {
    /// Byte accesses; a wider one applies to the low byte (no consecutive port is ours).
    fn read(&mut self, offset: u16, _size: u8) -> u32 {
        match offset {
            DATA => u32::from(self.read_data()),
            COMMAND => u32::from(self.status()),
            _ => {
                tracing::debug!(offset, "i8042: read of an unused offset");
                0xff
            }
        }
    }

    fn write(&mut self, offset: u16, _size: u8, value: u32) {
        match offset {
            DATA => self.write_data(value as u8),
            COMMAND => self.write_command(value as u8),
            _ => tracing::debug!(offset, value, "i8042: write to an unused offset dropped"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::testing::Edges;

    fn dev() -> (I8042<Edges>, Edges, Edges) {
        let (k, a) = (Edges::default(), Edges::default());
        (I8042::new(k.clone(), a.clone()), k, a)
    }

    fn cmd(d: &mut I8042<Edges>, c: u8) {
        d.write(COMMAND, 1, u32::from(c));
    }

    fn data(d: &mut I8042<Edges>, v: u8) {
        d.write(DATA, 1, u32::from(v));
    }

    /// Reads everything in the output buffer, polling status like Linux's i8042 driver.
    fn drain(d: &mut I8042<Edges>) -> Vec<u8> {
        let mut out = Vec::new();
        while d.read(COMMAND, 1) as u8 & STATUS_OBF != 0 {
            out.push(d.read(DATA, 1) as u8);
        }
        out
    }

    #[test]
    fn test_i8042_self_test_and_interface_tests() {
        let (mut d, _, _) = dev();
        assert_eq!(d.read(COMMAND, 1) as u8 & STATUS_OBF, 0);
        cmd(&mut d, CCMD_SELF_TEST);
        let st = d.read(COMMAND, 1) as u8;
        assert_eq!(
            st & (STATUS_OBF | STATUS_SYS | STATUS_A2),
            STATUS_OBF | STATUS_SYS | STATUS_A2
        );
        assert_eq!(drain(&mut d), [0x55]);
        cmd(&mut d, CCMD_KBD_TEST);
        cmd(&mut d, CCMD_AUX_TEST);
        assert_eq!(drain(&mut d), [0x00, 0x00]);
        // An empty buffer reads the last byte again.
        assert_eq!(d.read(DATA, 1), 0x00);
    }

    #[test]
    fn test_i8042_command_byte_round_trip_and_port_enables() {
        let (mut d, _, _) = dev();
        cmd(&mut d, CCMD_READ_RAM);
        assert_eq!(drain(&mut d), [DEFAULT_COMMAND]);
        cmd(&mut d, CCMD_WRITE_RAM);
        data(&mut d, 0x65);
        assert_eq!(d.command_byte(), 0x65);
        cmd(&mut d, CCMD_READ_RAM);
        assert_eq!(drain(&mut d), [0x65]);
        cmd(&mut d, CCMD_KBD_ENABLE);
        cmd(&mut d, CCMD_AUX_DISABLE);
        assert_eq!(d.command_byte(), 0x65 & !CMD_KBD_DISABLE | CMD_AUX_DISABLE);
        cmd(&mut d, CCMD_KBD_DISABLE);
        cmd(&mut d, CCMD_AUX_ENABLE);
        assert_eq!(
            d.command_byte() & (CMD_KBD_DISABLE | CMD_AUX_DISABLE),
            CMD_KBD_DISABLE
        );
    }

    #[test]
    fn test_i8042_reset_pulse_and_output_port() {
        let (mut d, _, _) = dev();
        assert!(!d.take_reset_request());
        cmd(&mut d, 0xfe);
        assert!(d.take_reset_request());
        assert!(!d.take_reset_request());
        // Pulsing other bits does not reset.
        cmd(&mut d, 0xff);
        assert!(!d.take_reset_request());
        assert!(d.a20());
        cmd(&mut d, CCMD_WRITE_OUTPUT);
        data(&mut d, OUT_RESET);
        assert!(!d.a20());
        assert!(!d.take_reset_request());
        cmd(&mut d, CCMD_READ_OUTPUT);
        assert_eq!(drain(&mut d), [OUT_RESET]);
        cmd(&mut d, CCMD_WRITE_OUTPUT);
        data(&mut d, OUT_A20);
        assert!(d.a20());
        assert!(d.take_reset_request());
        cmd(&mut d, CCMD_A20_DISABLE);
        assert!(!d.a20());
        cmd(&mut d, CCMD_A20_ENABLE);
        assert!(d.a20());
    }

    #[test]
    fn test_i8042_keyboard_commands() {
        let (mut d, _, _) = dev();
        data(&mut d, 0xff);
        assert_eq!(drain(&mut d), [ACK, BAT_OK]);
        data(&mut d, 0xf2);
        assert_eq!(drain(&mut d), [ACK, 0xab, 0x41]);
        data(&mut d, 0xf5);
        data(&mut d, 0xf4);
        data(&mut d, 0xed);
        data(&mut d, 0x07);
        assert_eq!(drain(&mut d), [ACK, ACK, ACK, ACK]);
        data(&mut d, 0xf0);
        data(&mut d, 0x00);
        assert_eq!(drain(&mut d), [ACK, ACK, 2]);
        data(&mut d, 0xee);
        data(&mut d, 0x12);
        assert_eq!(drain(&mut d), [ECHO, RESEND]);
    }

    #[test]
    fn test_i8042_keyboard_irq_and_disabled_port() {
        let (mut d, kbd, aux) = dev();
        d.enqueue_key(&[0x1e, 0x9e]);
        assert_eq!(kbd.count(), 1);
        assert_eq!(d.read(DATA, 1), 0x1e);
        assert_eq!(kbd.count(), 2, "the second byte is a new edge");
        assert_eq!(d.read(DATA, 1), 0x9e);
        assert_eq!(kbd.count(), 2);
        // Interrupt disabled in the command byte: the byte is there, the line stays low.
        cmd(&mut d, CCMD_WRITE_RAM);
        data(&mut d, DEFAULT_COMMAND & !CMD_KBD_INT);
        d.enqueue_key(&[0x2a]);
        assert_eq!(kbd.count(), 2);
        assert_eq!(drain(&mut d), [0x2a]);
        // The keyboard port disabled: scancodes wait until it is enabled again.
        cmd(&mut d, CCMD_WRITE_RAM);
        data(&mut d, DEFAULT_COMMAND);
        cmd(&mut d, CCMD_KBD_DISABLE);
        d.enqueue_key(&[0x10]);
        assert_eq!(drain(&mut d), []);
        cmd(&mut d, CCMD_KBD_ENABLE);
        assert_eq!(kbd.count(), 3);
        assert_eq!(drain(&mut d), [0x10]);
        assert_eq!(aux.count(), 0);
    }

    #[test]
    fn test_i8042_mouse_answers_on_irq12() {
        let (mut d, kbd, aux) = dev();
        cmd(&mut d, CCMD_WRITE_AUX);
        data(&mut d, 0xff);
        assert_eq!(aux.count(), 1);
        assert_ne!(d.read(COMMAND, 1) as u8 & STATUS_AUX_OBF, 0);
        assert_eq!(drain(&mut d), [ACK, BAT_OK, 0x00]);
        cmd(&mut d, CCMD_WRITE_AUX);
        data(&mut d, 0xf3);
        cmd(&mut d, CCMD_WRITE_AUX);
        data(&mut d, 100);
        cmd(&mut d, CCMD_WRITE_AUX);
        data(&mut d, 0xf2);
        assert_eq!(drain(&mut d), [ACK, ACK, ACK, 0x00]);
        cmd(&mut d, CCMD_WRITE_AUX_OBUF);
        data(&mut d, 0x5a);
        assert_eq!(drain(&mut d), [0x5a]);
        assert_eq!(kbd.count(), 0);
    }

    #[test]
    fn test_i8042_state_round_trip() {
        let (mut d, _, _) = dev();
        d.enqueue_key(&[1, 2, 3]);
        let s = d.state();
        let k = Edges::default();
        let mut d2 = I8042::from_state(s, k.clone(), Edges::default());
        assert_eq!(k.count(), 1);
        assert_eq!(drain(&mut d2), [1, 2, 3]);
    }

    #[test]
    fn test_i8042_random_accesses_never_panic() {
        let (mut d, _, _) = dev();
        let mut x: u64 = 42;
        for _ in 0..50_000 {
            x = crate::testing::lcg(x);
            let off = [DATA, COMMAND, 1, 0xffff][((x >> 33) % 4) as usize];
            let size = [0, 1, 2, 4][((x >> 40) % 4) as usize];
            let v = (x >> 20) as u32;
            match x % 4 {
                0 | 1 => d.write(off, size, v),
                2 => drop(d.read(off, size)),
                _ => d.enqueue_key(&[v as u8]),
            }
            d.take_reset_request();
        }
        assert!(d.state().kbd_queue.len() <= QUEUE_MAX);
    }
}
