//! The PC board: the chipset devices of `crane86_devices` wired together the way QEMU's `pc`
//! machine wires them, on a port bus and an MMIO bus, driven by a virtual clock.
//!
//! Port map: 8259 PIC pair (0x20, 0xA0, ELCR 0x4D0), 8254 PIT (0x40) and port B (0x61),
//! i8042 (0x60, 0x64), CMOS/RTC (0x70), POST codes (0x80), port A (0x92), debugcon (0xE9),
//! isa-debug-exit (0xF4, 4 ports as QEMU's `iosize=0x4`), QEMU's pc-testdev (0xE0-0xE7 and
//! IRQ lines at 0x2000), COM1 (0x3F8), fw_cfg (0x510), the
//! ACPI PM block (0x600), PCI configuration mechanism #1 and the reset register (0xCF8).
//! MMIO: I/O APIC (0xFEC00000), HPET (0xFED00000), local APIC (0xFEE00000), pc-testdev's
//! scratch memory (0xFF000000).
//!
//! ISA interrupts reach both the 8259 and the I/O APIC ([`wiring::IsaIrq`]), IRQ 0 on I/O
//! APIC pin 2 as every PC firmware reports; the HPET drives I/O APIC pins. The local APIC
//! takes the 8259's output through LINT0 (virtual-wire mode) while it is disabled or LINT0
//! is in ExtINT mode.
//!
//! Time (see `docs/design.md`): the clock is derived from the guest, one retired instruction
//! = 1 ns, plus the time HLT skipped. The TSC ticks at the same 1 GHz, so the local APIC's
//! TSC-deadline conversion is the identity.

pub(crate) mod bios;
mod input;
mod wiring;

use std::sync::Arc;

use crane86_devices::acpi_pm::{AcpiPm, AcpiPmPorts, ACPI_PM_BASE, ACPI_PM_LEN};
use crane86_devices::fw_cfg::{FwCfg, FW_CFG_PORT, FW_CFG_PORTS_LEN};
use crane86_devices::hpet::{Hpet, HpetMmio, HPET_BASE, HPET_GSIS, HPET_LEN};
use crane86_devices::i8042::I8042;
use crane86_devices::ioapic::{IoApic, IoApicLine, IoApicMmio, IOAPIC_BASE, IOAPIC_SIZE};
use crane86_devices::lapic::{LapicMmio, LocalApic, LAPIC_BASE, LAPIC_SIZE};
use crane86_devices::misc::{DebugCon, DebugExit, Port92, PostCode};
use crane86_devices::pci::{PciBus, PciHost, PciHostPorts, PCI_CONFIG_PORT, PCI_CONFIG_PORTS_LEN};
use crane86_devices::pic::{ElcrPorts, PicChip, PicPair, PicPorts};
use crane86_devices::pit::{Pit, PitPorts, Port61};
use crane86_devices::rtc::Rtc;
use crane86_devices::testdev::{
    TestDevIomem, TestDevIrqs, TestDevPorts, TESTDEV_IOMEM_BASE, TESTDEV_IOMEM_LEN, TESTDEV_IRQS,
    TESTDEV_IRQ_PORT, TESTDEV_PORT, TESTDEV_PORTS_LEN,
};
use crane86_devices::uart::{Uart, UART_PORTS};
use crane86_devices::{BusError, Clock, IrqLine, ManualClock, MmioBus, PortBus, PortDevice};
use crane86_runtime::{CpuState, PortIo};
use parking_lot::Mutex;

pub use input::SerialInput;
pub use wiring::SerialSink;
use wiring::{ApicPage, IsaIrq, PcMmio, Shared};

mod irq;
mod sleep;
pub(crate) use irq::Wake;

/// Indexes of LINT0 and LINT1 among the local APIC's LVT entries (timer, thermal,
/// performance, LINT0, LINT1, error).
const LVT_LINT0: usize = 3;
const LVT_LINT1: usize = 4;
/// LVT values: unmasked, delivery mode ExtINT (7) and NMI (4).
const LINT0_EXTINT: u32 = 0x700;
const LINT1_NMI: u32 = 0x400;

/// TSC frequency: the TSC counts virtual nanoseconds.
pub const TSC_HZ: u64 = 1_000_000_000;
/// The RTC's wall-clock time at virtual time 0 (2026-01-01 00:00:00 UTC): fixed, so that
/// two runs of a guest read the same dates.
pub const RTC_EPOCH_UNIX_SECS: i64 = 1_767_225_600;

/// The PC's devices and the state the run loop keeps about them.
pub struct Pc {
    clock: ManualClock,
    ports: PcPorts,
    pic: Arc<Mutex<PicPair>>,
    pit: Arc<Mutex<Pit>>,
    rtc: Arc<Mutex<Rtc<IsaIrq>>>,
    lapic: Arc<Mutex<LocalApic>>,
    hpet: Arc<Mutex<Hpet>>,
    pm: Arc<Mutex<AcpiPm>>,
    i8042: Arc<Mutex<I8042<IsaIrq>>>,
    port92: Arc<Mutex<Port92>>,
    pci: Arc<Mutex<PciHost>>,
    debug_exit: Arc<Mutex<DebugExit>>,
    /// IRQ 13: the x87's FERR# output, for kernels that leave CR0.NE clear.
    ferr: IsaIrq,
    serial: SerialSink,
    uart: Arc<Mutex<Com1>>,
    /// Host input for COM1, filled by [`SerialInput`] handles.
    input: input::InputQueue,
    /// HLT waits out idle time in real time instead of skipping it (interactive runs).
    realtime_idle: bool,
    /// Host input taken from `input` that waits for a guest driver to listen (see
    /// [`Pc::feed_input`]).
    held_input: Vec<u8>,
    /// Virtual time not counted by retired instructions: what HLT skipped, and port accesses'
    /// own time ([`PORT_ACCESS_NS`] each). The clock is retired instructions plus this.
    extra_ns: u64,
    /// The earliest timer deadline, as of the last look at the devices.
    next_deadline: Option<u64>,
    /// An interrupt was pending at the controllers at the last look.
    pub(crate) pending: bool,
    /// The local APIC received an NMI the CPU has not taken yet.
    pub(crate) nmi_pending: bool,
    /// IA32_APIC_BASE and CR8 as last copied between the CPU and the local APIC.
    synced_apic_base: u64,
    synced_cr8: u64,
    /// The machine is in ACPI S3 (suspend to RAM), waiting for a wake event ([`sleep`]).
    suspended: bool,
    /// Host input bytes taken so far (console input wakes a sleeping machine).
    input_bytes: u64,
    /// `input_bytes` when the machine went to sleep.
    input_at_sleep: u64,
}

/// COM1 as the board wires it: IRQ 4, output to the serial sink.
type Com1 = Uart<IsaIrq, SerialSink>;

/// The port bus, remembering whether the guest touched it since the run loop last looked
/// (a port access may raise an interrupt or reprogram a timer).
struct PcPorts {
    bus: PortBus,
    touched: bool,
    /// Port accesses not yet charged to the clock ([`Pc::charge_port_io`]).
    accesses: u64,
}

/// The virtual time one port access takes (a read or write; each element of a string
/// instruction is one). A port access crosses to the chipset and the ISA or LPC bus on a PC:
/// about a microsecond (an `outb` to port 0x80 is Linux's classic 1 µs delay, and an ACPI PM
/// timer read takes about as long). Counting an access as one instruction (1 ns), as before
/// session 9, made a guest that measures time in TSC cycles run a thousand times as many
/// port accesses as hardware would in the same time: kvm-unit-tests' `vmexit_inl_pmtimer`
/// runs `inl` until 2^30 cycles pass, and took 48 s on a quiet host.
pub const PORT_ACCESS_NS: u64 = 1000;

impl PortIo for PcPorts {
    fn port_read(&mut self, port: u16, size: u8) -> u32 {
        self.accesses += 1;
        self.touched |= self.bus.read_changes_state(port);
        self.bus.port_read(port, size)
    }

    fn port_write(&mut self, port: u16, size: u8, value: u32) {
        self.accesses += 1;
        self.touched = true;
        self.bus.port_write(port, size, value)
    }
}

/// Port 0xF0: a write clears the latched FERR# interrupt (IRQ 13) and, on the PC/AT, asserts
/// IGNNE# so the x87 goes on (crane86's x87 never waits for it). Reads float high.
struct FpuErrorClear(IsaIrq);

impl PortDevice for FpuErrorClear {
    fn read(&mut self, _offset: u16, _size: u8) -> u32 {
        0xffff_ffff
    }

    fn write(&mut self, _offset: u16, _size: u8, _value: u32) {
        self.0.set_level(false);
    }
}

/// A port device seen at `base + delta` of its own offsets (the i8042's command port,
/// 0x64, is offset 4 of a device whose data port is 0x60, with port B in between).
struct Offset<D>(D, u16);

impl<D: PortDevice> PortDevice for Offset<D> {
    fn read(&mut self, offset: u16, size: u8) -> u32 {
        self.0.read(offset.wrapping_add(self.1), size)
    }

    fn write(&mut self, offset: u16, size: u8, value: u32) {
        self.0.write(offset.wrapping_add(self.1), size, value)
    }
}

impl Pc {
    /// Builds the board for `ram_bytes` of RAM; returns it and the MMIO handler to give to
    /// guest memory.
    pub(crate) fn new(
        ram_bytes: u64,
    ) -> Result<(Pc, Box<dyn crane86_runtime::MmioHandler>), BusError> {
        Pc::build(
            ram_bytes,
            SerialSink::default(),
            input::InputQueue::default(),
        )
    }

    /// The board after a hardware reset: every device as at power-on, but the host's side
    /// of COM1 kept (what the guest printed so far, the echo setting, input typed and not
    /// yet read, the [`SerialInput`] handles given out) so that a console stays attached
    /// across the reboot. Returns the new board and its MMIO handler.
    pub(crate) fn after_reset(
        &mut self,
        ram_bytes: u64,
    ) -> Result<(Pc, Box<dyn crane86_runtime::MmioHandler>), BusError> {
        let (mut pc, mmio) = Pc::build(
            ram_bytes,
            self.serial.clone(),
            std::mem::take(&mut self.input),
        )?;
        pc.realtime_idle = self.realtime_idle;
        pc.held_input = std::mem::take(&mut self.held_input);
        Ok((pc, mmio))
    }

    fn build(
        ram_bytes: u64,
        serial: SerialSink,
        input: input::InputQueue,
    ) -> Result<(Pc, Box<dyn crane86_runtime::MmioHandler>), BusError> {
        let clock = ManualClock::new();
        let dyn_clock: Arc<dyn Clock> = Arc::new(clock.clone());

        let mut bsp_apic = LocalApic::new(0, dyn_clock.clone(), TSC_HZ);
        // What SeaBIOS leaves (and QEMU's reset sets) on the BSP: LINT0 in ExtINT mode, so
        // that the 8259 reaches the CPU through the enabled APIC (virtual wire), and LINT1
        // as NMI.
        let mut regs = bsp_apic.state();
        regs.lvt[LVT_LINT0] = LINT0_EXTINT;
        regs.lvt[LVT_LINT1] = LINT1_NMI;
        bsp_apic.restore(&regs);
        let lapic = Arc::new(Mutex::new(bsp_apic));
        let ioapic = Arc::new(Mutex::new(IoApic::new(1, lapic.clone())));
        let pic = Arc::new(Mutex::new(PicPair::new()));
        let isa = |irq| IsaIrq {
            pic: pic.clone(),
            ioapic: ioapic.clone(),
            irq,
        };
        let pit = Arc::new(Mutex::new(Pit::new(dyn_clock.clone(), Arc::new(isa(0)))));
        let mut rtc = Rtc::new(dyn_clock.clone(), isa(8), RTC_EPOCH_UNIX_SECS);
        rtc.set_memory_size(ram_bytes.min(1 << 32), ram_bytes.saturating_sub(1 << 32));
        let rtc = Arc::new(Mutex::new(rtc));
        let gsis: Vec<Arc<dyn IrqLine>> = (0..HPET_GSIS as u8)
            .map(|pin| {
                Arc::new(IoApicLine {
                    ioapic: ioapic.clone(),
                    pin,
                }) as Arc<dyn IrqLine>
            })
            .collect();
        let hpet = Arc::new(Mutex::new(Hpet::new(dyn_clock.clone(), gsis)));
        let pm = Arc::new(Mutex::new(AcpiPm::new(dyn_clock.clone(), Arc::new(isa(9)))));
        let i8042 = Arc::new(Mutex::new(I8042::new(isa(1), isa(12))));
        let port92 = Arc::new(Mutex::new(Port92::new()));
        let pci = Arc::new(Mutex::new(PciHost::new(PciBus::i440fx())));
        let debug_exit = Arc::new(Mutex::new(DebugExit::new()));

        let mut bus = PortBus::new();
        let chip = |chip| {
            Box::new(PicPorts {
                pic: pic.clone(),
                chip,
            })
        };
        bus.insert(0x20, 2, chip(PicChip::Master))?;
        bus.insert(0xa0, 2, chip(PicChip::Slave))?;
        bus.insert(0x4d0, 2, Box::new(ElcrPorts { pic: pic.clone() }))?;
        bus.insert(0x40, 4, Box::new(PitPorts { pit: pit.clone() }))?;
        bus.insert(0x61, 1, Box::new(Port61 { pit: pit.clone() }))?;
        bus.insert(0x60, 1, Box::new(Shared(i8042.clone())))?;
        bus.insert(0x64, 1, Box::new(Offset(Shared(i8042.clone()), 4)))?;
        bus.insert(0x70, 2, Box::new(Shared(rtc.clone())))?;
        bus.insert(0x80, 1, Box::new(PostCode::new()))?;
        let ferr = isa(13);
        bus.insert(0xf0, 1, Box::new(FpuErrorClear(ferr.clone())))?;
        bus.insert(0x92, 1, Box::new(Shared(port92.clone())))?;
        bus.insert(0xe9, 1, Box::new(DebugCon::new(serial.clone())))?;
        bus.insert(0xf4, 4, Box::new(Shared(debug_exit.clone())))?;
        let uart = Arc::new(Mutex::new(Uart::new(isa(4), serial.clone())));
        bus.insert(0x3f8, UART_PORTS, Box::new(Shared(uart.clone())))?;
        bus.insert(
            TESTDEV_PORT,
            TESTDEV_PORTS_LEN,
            Box::new(TestDevPorts::new()),
        )?;
        let testdev_lines = (0..TESTDEV_IRQS as u8)
            .map(|irq| {
                // ISA IRQs 0-15 reach both controllers; the I/O APIC's pins 16-23 only it.
                if irq < 16 {
                    Arc::new(isa(irq)) as Arc<dyn IrqLine>
                } else {
                    Arc::new(IoApicLine {
                        ioapic: ioapic.clone(),
                        pin: irq,
                    })
                }
            })
            .collect();
        bus.insert(
            TESTDEV_IRQ_PORT,
            TESTDEV_IRQS,
            Box::new(TestDevIrqs::new(testdev_lines)),
        )?;
        bus.insert(
            FW_CFG_PORT,
            FW_CFG_PORTS_LEN,
            Box::new(FwCfg::new(ram_bytes, 1)),
        )?;
        bus.insert(
            ACPI_PM_BASE,
            ACPI_PM_LEN,
            Box::new(AcpiPmPorts { pm: pm.clone() }),
        )?;
        bus.insert(
            PCI_CONFIG_PORT,
            PCI_CONFIG_PORTS_LEN,
            Box::new(PciHostPorts { host: pci.clone() }),
        )?;

        let mut mmio = MmioBus::new();
        mmio.insert(
            IOAPIC_BASE,
            IOAPIC_SIZE,
            Box::new(IoApicMmio {
                ioapic: ioapic.clone(),
            }),
        )?;
        mmio.insert(
            TESTDEV_IOMEM_BASE,
            TESTDEV_IOMEM_LEN,
            Box::new(TestDevIomem::new()),
        )?;
        mmio.insert(
            HPET_BASE,
            HPET_LEN,
            Box::new(HpetMmio { hpet: hpet.clone() }),
        )?;
        mmio.insert(
            LAPIC_BASE,
            LAPIC_SIZE,
            Box::new(ApicPage(LapicMmio {
                lapic: lapic.clone(),
                eoi: ioapic,
            })),
        )?;
        let synced_apic_base = lapic.lock().apic_base();
        let pc = Pc {
            clock,
            ports: PcPorts {
                bus,
                touched: true,
                accesses: 0,
            },
            pic,
            pit,
            rtc,
            lapic,
            hpet,
            pm,
            i8042,
            port92,
            pci,
            debug_exit,
            ferr,
            serial,
            uart,
            input,
            realtime_idle: false,
            held_input: Vec::new(),
            extra_ns: 0,
            next_deadline: None,
            pending: false,
            nmi_pending: false,
            synced_apic_base,
            synced_cr8: 0,
            suspended: false,
            input_bytes: 0,
            input_at_sleep: 0,
        };
        Ok((pc, Box::new(PcMmio(mmio))))
    }

    /// Something may have changed at a device (an MMIO access): look at them all again.
    pub(crate) fn note_device_access(&mut self) {
        self.ports.touched = true;
    }

    /// The port bus, for the interpreter's IN/OUT.
    pub(crate) fn port_io(&mut self) -> &mut dyn PortIo {
        &mut self.ports
    }

    /// Moves the clock and the TSC on by the time of the port accesses made since the last
    /// call ([`PORT_ACCESS_NS`] each).
    pub(crate) fn charge_port_io(&mut self, cpu: &mut CpuState) {
        let ns = std::mem::take(&mut self.ports.accesses) * PORT_ACCESS_NS;
        self.extra_ns += ns;
        cpu.msr.tsc_offset = cpu.msr.tsc_offset.wrapping_add(ns);
    }

    /// What COM1 and debugcon printed.
    pub fn serial(&self) -> &SerialSink {
        &self.serial
    }

    /// A handle other threads use to type into COM1 (and to stop the run).
    pub fn serial_input(&self) -> SerialInput {
        self.input.handle()
    }

    /// Publishes the running vCPU's `exit_request` to [`SerialInput`] senders for the
    /// guard's lifetime (see [`input::InputQueue::attach`]).
    pub(crate) fn attach_input(&self, exit: &std::sync::atomic::AtomicU32) -> input::Attached {
        self.input.attach(exit)
    }

    /// Hands host input to COM1.
    ///
    /// Input waits on the board until a guest driver listens through interrupts (IER's
    /// received-data bit and MCR.OUT2, see [`Uart::interrupt_driven_receive`]): Linux's 8250
    /// driver reads and drops the receive register while it probes and starts the port, so
    /// bytes piped in early (`printf 'cmd\n' | crane86 run ...`) would otherwise lose their
    /// first bytes to it. A guest that only polls the UART gets no input. IER and MCR only
    /// change through port writes, so the UART is only looked at again after port I/O.
    fn feed_input(&mut self) {
        let fresh = self.input.is_ready();
        if fresh {
            let (bytes, button) = self.input.take();
            self.input_bytes += bytes.len() as u64;
            self.held_input.extend(bytes);
            if button {
                self.pm.lock().press_power_button();
                // The PM block may have raised its SCI: make `refresh` look.
                self.ports.touched = true;
            }
        }
        if self.held_input.is_empty() || !(fresh || self.ports.touched) {
            return;
        }
        let mut uart = self.uart.lock();
        if uart.interrupt_driven_receive() {
            uart.enqueue_input(&self.held_input);
            self.held_input.clear();
            // The UART may have raised IRQ 4: make `refresh` look at the controllers.
            self.ports.touched = true;
        }
    }

    /// The value the guest wrote to isa-debug-exit, once it has.
    pub fn debug_exit(&self) -> Option<u32> {
        self.debug_exit.lock().value()
    }

    /// Virtual nanoseconds since power-on.
    pub fn now_ns(&self) -> u64 {
        self.clock.now_ns()
    }

    /// True (once) when the guest asked for a reset: the i8042's reset line, port A's reset
    /// bit or the reset control register.
    pub(crate) fn take_reset_request(&mut self) -> bool {
        let kbd = self.i8042.lock().take_reset_request();
        let port92 = self.port92.lock().take_reset_request();
        let cf9 = self.pci.lock().take_reset_request().is_some();
        kbd || port92 || cf9
    }

    /// The x87 signalled an error with CR0.NE clear (`CpuState::ferr`): FERR# raises IRQ 13
    /// until the handler writes port 0xF0, as the PC/AT wires it.
    pub(crate) fn fpu_error(&mut self) {
        self.ferr.set_level(true);
    }

    /// See [`crate::Machine::set_realtime_idle`].
    pub(crate) fn set_realtime_idle(&mut self, on: bool) {
        self.realtime_idle = on;
    }

    /// The sleep state the guest asked for through the ACPI PM block since the last call,
    /// as its SLP_TYP (S5 is soft off, S3 suspend to RAM: [`sleep`]).
    pub(crate) fn take_sleep_request(&mut self) -> Option<u8> {
        self.pm.lock().take_sleep_request()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One step of Knuth's MMIX LCG, for reproducible noise.
    fn lcg(x: u64) -> u64 {
        x.wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407)
    }

    #[test]
    fn any_port_or_mmio_access_of_any_size_is_harmless() {
        let (mut pc, mut mmio) = Pc::new(16 << 20).unwrap();
        let mut x = 1u64;
        for port in 0..=u16::MAX {
            for size in [0, 1, 2, 3, 4, 8] {
                x = lcg(x);
                pc.port_io().port_write(port, size, (x >> 32) as u32);
                let _ = pc.port_io().port_read(port, size);
            }
        }
        for base in [LAPIC_BASE, IOAPIC_BASE, HPET_BASE] {
            for off in 0..0x1010 {
                for size in [0, 1, 2, 3, 4, 8, 9] {
                    x = lcg(x);
                    mmio.mmio_write(base + off, size, x);
                    let _ = mmio.mmio_read(base + off, size);
                }
            }
        }
        let _ = pc.take_reset_request();
    }

    #[test]
    fn a_globally_disabled_apic_does_not_decode_its_page() {
        let (pc, mut mmio) = Pc::new(16 << 20).unwrap();
        let version = mmio.mmio_read(LAPIC_BASE + 0x30, 4);
        assert_ne!(version, 0xffff_ffff);
        assert!(pc.lapic.lock().set_apic_base(LAPIC_BASE));
        assert_eq!(mmio.mmio_read(LAPIC_BASE + 0x30, 4), 0xffff_ffff);
        mmio.mmio_write(LAPIC_BASE + 0x80, 4, 0xff);
        assert!(pc.lapic.lock().set_apic_base(LAPIC_BASE | (1 << 11)));
        assert_eq!(mmio.mmio_read(LAPIC_BASE + 0x30, 4), version);
        assert_eq!(
            mmio.mmio_read(LAPIC_BASE + 0x80, 4),
            0,
            "the write went nowhere"
        );
    }

    #[test]
    fn unclaimed_mmio_floats_high() {
        let (_pc, mut mmio) = Pc::new(16 << 20).unwrap();
        assert_eq!(mmio.mmio_read(0xfeb0_0000, 4), 0xffff_ffff);
        assert_eq!(mmio.mmio_read(0xfeb0_0000, 8), u64::MAX);
    }
}
