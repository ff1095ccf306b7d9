//! The emulated machine: guest memory, port I/O, the translation cache and the run loop that
//! ties them to one virtual CPU.
//!
//! Two boards: [`Board::Flat`], the minimal machine the core translator's test guests need
//! (flat RAM from address 0, a byte sink on port 0x3F8 and QEMU's isa-debug-exit on port
//! 0xF4, no interrupts), and [`Board::Pc`], the PC chipset of [`pc`] (interrupt controllers,
//! timers, COM1, the local APIC...) that multiboot kernels such as kvm-unit-tests run on.
//! The flat board stays because its guests and the conformance oracle want a machine where
//! nothing but the CPU moves.
//!
//! ```
//! use crane86_machine::{Machine, MachineConfig, RunEnd};
//! use crane86_runtime::CpuMode;
//! // mov al, 'A'; out 0xf4, al  (isa-debug-exit with value 0x41)
//! let code = [0xb0, 0x41, 0xe6, 0xf4];
//! let mut m = Machine::new(&MachineConfig::default()).unwrap();
//! m.load_flat(&code, 0x1000, 0x1000, CpuMode::Long64).unwrap();
//! assert_eq!(m.run(None).unwrap(), RunEnd::DebugExit(0x41));
//! ```
#![deny(missing_docs)]

mod chain;
mod debug;
pub mod loader;
pub mod pc;
mod ports;
mod run;

pub use debug::Breakpoints;
pub use pc::{SerialInput, SerialSink};
pub use ports::FlatPorts;
pub use run::{MachineStats, RunEnd};

use crane86_runtime::phase::PhaseCell;
use crane86_runtime::{paging, CpuMode, CpuState, Gpr, MemError, PhysMem, SegReg, Segment};
use crane86_translator::cache::CacheError;
use crane86_translator::jit::JitOptions;
use crane86_translator::{Cache, Tier};

/// How to build a machine.
#[derive(Clone, Debug)]
pub struct MachineConfig {
    /// Guest RAM in bytes.
    pub ram_bytes: u64,
    /// Which translation tiers run.
    pub tier: Tier,
    /// Executable memory for compiled code, in bytes; the decoded blocks may hold as many
    /// host bytes again (`crane86 run --code-cache`, see [`Cache::block_budget`]).
    pub code_arena_bytes: usize,
    /// Cranelift settings.
    pub jit: JitOptions,
    /// What an exception does.
    pub exceptions: ExceptionPolicy,
    /// Which devices surround the CPU.
    pub board: Board,
}

/// Which devices surround the CPU.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Board {
    /// The flat test machine: [`FlatPorts`] only, no interrupts, no MMIO.
    #[default]
    Flat,
    /// The PC chipset ([`pc::Pc`]), with the virtual clock and interrupt delivery.
    Pc,
}

/// What the machine does when the guest raises an exception.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ExceptionPolicy {
    /// Deliver it through the IDT (real-mode IVT), as a CPU does.
    #[default]
    Deliver,
    /// Stop the run with [`RunEnd::Fault`]: for checking instruction semantics, where the
    /// exception itself is the result.
    Stop,
}

impl Default for MachineConfig {
    fn default() -> Self {
        MachineConfig {
            ram_bytes: 16 << 20,
            tier: Tier::Auto {
                threshold: DEFAULT_JIT_THRESHOLD,
            },
            code_arena_bytes: 64 << 20,
            jit: JitOptions::default(),
            exceptions: ExceptionPolicy::default(),
            board: Board::default(),
        }
    }
}

/// Runs of a block before `--tier auto` compiles it.
pub const DEFAULT_JIT_THRESHOLD: u32 = 50;

/// Errors building or running a machine: all about the host or the configuration, never
/// about what the guest does (guest errors end a run with a [`RunEnd`]).
#[derive(Debug, thiserror::Error)]
pub enum MachineError {
    /// Guest memory could not be set up, or an image does not fit.
    #[error(transparent)]
    Memory(#[from] MemError),
    /// The translation cache failed.
    #[error(transparent)]
    Cache(#[from] CacheError),
    /// An entry point outside guest RAM.
    #[error("entry point {0:#x} is outside guest RAM")]
    BadEntry(u64),
    /// The PC board's devices could not be wired (a bug in the board, not the guest).
    #[error("cannot wire the PC board: {0}")]
    Board(#[from] crane86_devices::BusError),
    /// A multiboot image could not be loaded. (The reason is the error's source, which
    /// `anyhow`'s `{:#}` prints after the colon; repeating it here printed it twice.)
    #[error("cannot load the multiboot image")]
    Multiboot(#[from] loader::multiboot::MultibootError),
    /// A Linux kernel could not be loaded (the reason is the source).
    #[error("cannot load the Linux kernel")]
    Linux(#[from] loader::linux::LinuxError),
}

/// One virtual CPU, its memory, its ports and its translation cache.
pub struct Machine {
    /// The CPU.
    pub cpu: CpuState,
    /// Guest physical memory.
    pub mem: PhysMem,
    /// The flat board's port-I/O devices (unused on the PC board).
    pub ports: FlatPorts,
    /// The PC board's devices, on [`Board::Pc`].
    pub pc: Option<Box<pc::Pc>>,
    /// An interrupt shadow (after STI, MOV SS, POP SS) holds interrupts off for one block.
    irq_shadow: bool,
    /// Generated code handed its current instruction back to be run interpreted (a store
    /// into translated code, `CpuState::take_retry`): the next block runs in the
    /// interpreter.
    retry_interpreted: bool,
    /// MOV SS blocking after an SS load: the debug traps (DR6 bits) it holds back until the
    /// next instruction retires (see `run.rs`).
    db_blocked: Option<u64>,
    /// The translation cache.
    pub cache: Cache,
    /// What the vCPU thread is doing, for `--stats`'s time per phase; the same cell for the
    /// whole machine's life, handed to the CPU state and the cache at every run (the CPU
    /// state is replaced by loads and reboots).
    pub phase: PhaseCell,
    /// Run statistics.
    pub stats: MachineStats,
    /// What an exception does.
    pub exceptions: ExceptionPolicy,
    /// Settings for debuggers and lockstep comparisons.
    pub debug: DebugControl,
    /// A debugger's instruction breakpoints (linear addresses).
    pub breakpoints: Breakpoints,
}

/// How the run loop behaves under a debugger or a lockstep comparison. The default is a
/// normal run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DebugControl {
    /// Interpret every instruction, never entering compiled code: runs end exactly at their
    /// instruction limit (a compiled block runs whole).
    pub interpret_only: bool,
    /// Leave external interrupts and NMIs pending instead of delivering them, as QEMU's
    /// gdbstub does while it single-steps; [`Machine::interrupt_pending`] tells whether one
    /// waits, [`Machine::inject_interrupt`] delivers one from outside.
    pub hold_interrupts: bool,
    /// HLT ends the run with [`RunEnd::Halted`] (RIP after the HLT) instead of waiting for
    /// an interrupt.
    pub halt_stops: bool,
}

impl Machine {
    /// Loads a multiboot v1 kernel (ELF32 or a.out kludge) with its command line and modules
    /// and points the CPU at its entry in 32-bit protected mode. On the PC board the devices
    /// and low memory start as a BIOS would leave them ([`pc`]'s `bios` module).
    pub fn load_multiboot(
        &mut self,
        image: &[u8],
        cmdline: &str,
        modules: &[loader::multiboot::Module<'_>],
    ) -> Result<(), MachineError> {
        if let Some(pc) = self.pc.as_mut() {
            // Before the loader, which may put its tables over the BIOS's low memory.
            pc::bios::handoff(pc, &mut self.mem);
        }
        self.cpu = loader::multiboot::load(&mut self.mem, image, cmdline, modules)?;
        self.cache.flush(&mut self.mem);
        Ok(())
    }

    /// Loads a Linux bzImage with its initrd and command line through the Linux boot
    /// protocol (32-bit entry), with the firmware tables a BIOS would leave.
    pub fn load_linux(
        &mut self,
        kernel: &[u8],
        initrd: Option<&[u8]>,
        cmdline: &str,
    ) -> Result<(), MachineError> {
        if let Some(pc) = self.pc.as_mut() {
            pc::bios::handoff(pc, &mut self.mem);
        }
        self.cpu = loader::linux::load(&mut self.mem, kernel, initrd, cmdline)?;
        self.cache.flush(&mut self.mem);
        Ok(())
    }

    /// A hardware reset, as the reset line does to a PC: RAM cleared, every device and the
    /// CPU as at power-on, the translation cache emptied. What the guest printed on COM1,
    /// the console's input handles and the statistics survive. The caller loads the guest
    /// again (crane86 has no firmware that would): this is how `crane86 run` reboots.
    pub fn reboot(&mut self) -> Result<(), MachineError> {
        let ram = self.mem.ram_size();
        let mut mem = PhysMem::new(ram)?;
        if let Some(pc) = self.pc.as_mut() {
            let (new, mmio) = pc.after_reset(ram)?;
            mem.set_mmio(mmio);
            self.pc = Some(Box::new(new));
        }
        // The old RAM goes only after the cache has forgotten its pages.
        self.cache.flush(&mut self.mem);
        self.mem = mem;
        self.cpu = CpuState::new(CpuMode::Real16);
        self.irq_shadow = false;
        self.retry_interpreted = false;
        self.ports.exit = None;
        Ok(())
    }

    /// The value the guest wrote to isa-debug-exit, once it has.
    pub fn debug_exit_value(&self) -> Option<u32> {
        match &self.pc {
            Some(pc) => pc.debug_exit(),
            None => self.ports.exit,
        }
    }

    /// Everything the guest printed on COM1 (and, on the PC board, debugcon).
    pub fn serial_output(&self) -> Vec<u8> {
        match &self.pc {
            Some(pc) => pc.serial().bytes(),
            None => self.ports.serial.clone(),
        }
    }

    /// A handle through which other threads type into COM1 and stop the run, on the PC
    /// board (`None` on the flat board, which has no serial input).
    pub fn serial_input(&self) -> Option<SerialInput> {
        self.pc.as_ref().map(|pc| pc.serial_input())
    }

    /// On the PC board: let idle time (HLT until the next timer) pass in real time rather
    /// than skipping it. For interactive use; the default skips, which keeps runs fast and
    /// their timing a function of the guest alone.
    pub fn set_realtime_idle(&mut self, on: bool) {
        if let Some(pc) = self.pc.as_mut() {
            pc.set_realtime_idle(on);
        }
    }

    /// Names compiled blocks in `/tmp/perf-PID.map` for Linux `perf` (see
    /// [`Cache::enable_perf_map`]); returns the file's path.
    pub fn enable_perf_map(&mut self) -> std::io::Result<std::path::PathBuf> {
        self.cache.enable_perf_map()
    }

    /// Copies the guest's serial output to the host's stdout as it arrives (or stops).
    pub fn set_echo(&mut self, echo: bool) {
        self.ports.echo = echo;
        if let Some(pc) = &self.pc {
            pc.serial().set_echo(echo);
        }
    }

    /// A machine with zeroed RAM and a CPU in 64-bit mode at address 0.
    pub fn new(cfg: &MachineConfig) -> Result<Machine, MachineError> {
        let mut mem = PhysMem::new(cfg.ram_bytes)?;
        let pc = match cfg.board {
            Board::Flat => None,
            Board::Pc => {
                let (pc, mmio) = pc::Pc::new(cfg.ram_bytes)?;
                mem.set_mmio(mmio);
                Some(Box::new(pc))
            }
        };
        Ok(Machine {
            cpu: CpuState::new(CpuMode::Long64),
            mem,
            ports: FlatPorts::default(),
            pc,
            irq_shadow: false,
            retry_interpreted: false,
            db_blocked: None,
            cache: Cache::new(cfg.tier, cfg.code_arena_bytes, cfg.jit)?,
            phase: PhaseCell::default(),
            stats: MachineStats::default(),
            exceptions: cfg.exceptions,
            debug: DebugControl::default(),
            breakpoints: Breakpoints::default(),
        })
    }

    /// Loads a flat binary at `load_addr` and points a CPU in `mode` at `entry` (see
    /// [`Machine::flat_cpu`]).
    pub fn load_flat(
        &mut self,
        image: &[u8],
        load_addr: u64,
        entry: u64,
        mode: CpuMode,
    ) -> Result<(), MachineError> {
        self.mem.load(load_addr, image)?;
        if entry >= self.mem.ram_size() {
            return Err(MachineError::BadEntry(entry));
        }
        self.cpu = self.flat_cpu(mode);
        if mode == CpuMode::Real16 {
            // Keep IP within 64 KiB: CS covers the entry's 64 KiB window.
            let cs = ((entry >> 4) & 0xf000) as u16;
            self.cpu.seg[SegReg::Cs as usize] = Segment::real(cs);
            self.cpu.rip = entry - (u64::from(cs) << 4);
        } else {
            self.cpu.rip = entry;
        }
        self.cache.flush(&mut self.mem);
        Ok(())
    }

    /// A CPU in `mode` for a flat guest: on the flat board no local APIC (IA32_APIC_BASE.EN
    /// clear), flat segments (real mode: all selectors 0), the
    /// stack pointer at the top of RAM (in real and 16-bit mode: at the top of the first
    /// 64 KiB). In 64-bit mode, which cannot run without paging, the last two pages of RAM
    /// hold page tables that map linear = physical ([`paging::identity_map`]) and the stack
    /// starts below them.
    pub fn flat_cpu(&mut self, mode: CpuMode) -> CpuState {
        let mut cpu = CpuState::new(mode);
        if self.pc.is_none() {
            // The flat board has no local APIC: globally disabled, so CPUID offers none.
            cpu.msr.apic_base &= !crane86_runtime::msr::APIC_BASE_EN;
        }
        let ram = self.mem.ram_size();
        let top = match mode {
            CpuMode::Real16 | CpuMode::Prot16 => ram.min(0x1_0000) - 2,
            CpuMode::Prot32 => ram.min(0xffff_f000) - 16,
            CpuMode::Long64 => {
                let tables = ram.saturating_sub(0x2000);
                cpu.cr3 = paging::identity_map(&mut self.mem, tables);
                tables.saturating_sub(16)
            }
        };
        cpu.set_gpr(Gpr::Rsp, top);
        cpu
    }
}
