//! The fuzz harnesses of crane86 (issue 9), one per attack surface, each a function from
//! arbitrary bytes to `Ok` or a [`Finding`]:
//!
//! - [`code::run`]: the bytes are guest code, run in one CPU mode (real, 16- or 32-bit
//!   protected, 32-bit protected with paging, long mode) through the interpreter and the
//!   JIT; the two tiers must end the same way with the same registers and memory;
//! - [`devices::run`]: the bytes are a program of port and MMIO accesses, string I/O and
//!   waits, run on the PC board with interrupts enabled and every vector handled;
//! - [`loaders::run`]: the bytes corrupt a valid bzImage or multiboot image (ELF32 or
//!   a.out kludge) and its command line, or are the image itself; what loads then runs;
//! - [`tables::run`]: the bytes patch valid page tables, a GDT, an IDT and a TSS that a fixed
//!   program then walks (loads, stores, segment loads, far transfers, software interrupts),
//!   in both tiers, which must agree.
//!
//! Every harness also has the implicit oracle of the fuzzer: no panic, no hang (each run has
//! an instruction budget, and waits end at the virtual clock's next deadline), and no access
//! outside guest RAM and the code arena (guard pages make one a crash). The `fuzz/` crate
//! wraps each function in a libFuzzer target; `tests/fuzz_regressions.rs` replays every
//! input that ever failed (`tests/fuzz-regressions/TARGET/`) and a fixed sample of random
//! inputs, so the suite keeps the findings fixed without cargo-fuzz.
#![deny(missing_docs)]

pub mod code;
mod compare;
pub mod devices;
pub mod loaders;
pub mod tables;

pub use compare::Finding;

/// A harness: an input in, `Ok` or what it found out.
pub type Harness = fn(&[u8]) -> Result<(), Finding>;

/// The harnesses by name, as the fuzz targets and the regression replay call them.
pub const TARGETS: [(&str, Harness); 4] = [
    ("code", code::run),
    ("devices", devices::run),
    ("loaders", loaders::run),
    ("tables", tables::run),
];

/// A fresh PC board with `ram` bytes of RAM, interpreting (the PC-board harnesses do not
/// compare tiers: interrupts land at block boundaries, so the tiers see them at different
/// instructions).
pub(crate) fn pc_machine(ram: u64) -> Result<crane86_machine::Machine, Finding> {
    crane86_machine::Machine::new(&crane86_machine::MachineConfig {
        tier: crane86_translator::Tier::Interp,
        ram_bytes: ram,
        code_arena_bytes: 1 << 20,
        board: crane86_machine::Board::Pc,
        ..Default::default()
    })
    .map_err(|e| Finding(format!("cannot build the PC board: {e}")))
}

/// Reads an input front to back; past its end every read gives zeros, so that any input,
/// including the empty one, is a valid program for every harness.
pub(crate) struct Bytes<'a> {
    data: &'a [u8],
    at: usize,
}

impl<'a> Bytes<'a> {
    pub(crate) fn new(data: &'a [u8]) -> Bytes<'a> {
        Bytes { data, at: 0 }
    }

    pub(crate) fn u8(&mut self) -> u8 {
        let b = self.data.get(self.at).copied().unwrap_or(0);
        self.at += 1;
        b
    }

    pub(crate) fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }

    pub(crate) fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }

    pub(crate) fn u64(&mut self) -> u64 {
        u64::from(self.u32()) | u64::from(self.u32()) << 32
    }

    /// True while unread bytes remain.
    pub(crate) fn more(&self) -> bool {
        self.at < self.data.len()
    }

    /// The unread bytes (at most `max`), consumed.
    pub(crate) fn rest(&mut self, max: usize) -> &'a [u8] {
        let start = self.at.min(self.data.len());
        let end = start.saturating_add(max).min(self.data.len());
        self.at = end;
        &self.data[start..end]
    }
}

/// splitmix64: turns a seed from the input into a stream of register values, so that a few
/// input bytes choose sixteen registers.
pub(crate) fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
