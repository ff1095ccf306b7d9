//! The local APIC of the one CPU, in xAPIC mode (MMIO page at 0xFEE00000; x2APIC is not
//! advertised).
//!
//! Interrupts arrive as [`ApicMessage`]s ([`LocalApic::accept`], or through the
//! [`InterruptSink`] implemented by `Mutex<LocalApic>`, which also checks the destination)
//! and wait in the IRR. The CPU asks [`LocalApic::has_interrupt`] (the INTR pin) and, when it
//! takes the interrupt, [`LocalApic::acknowledge`] moves the vector from IRR to ISR. The
//! highest IRR vector is deliverable when its priority class (bits 7-4) is above the
//! processor priority (PPR), which is the larger of the task priority (TPR, also CR8) and
//! the class of the highest vector in service.
//!
//! A write to the EOI register clears the highest ISR bit. If that vector was accepted
//! level-triggered (its TMR bit is set), the EOI is broadcast: [`LocalApic::write_register`]
//! returns the vector, and [`LapicMmio`] passes it to an [`EoiBroadcast`] (the I/O APIC)
//! after unlocking the local APIC, because the I/O APIC may deliver again at once.
//!
//! The timer counts down at [`LAPIC_TIMER_HZ`] divided by the divide configuration, in
//! one-shot, periodic or TSC-deadline mode. Nothing ticks: the current count is computed
//! from the [`Clock`] when read. The machine asks [`LocalApic::next_deadline_ns`] and calls
//! [`LocalApic::update`] once that time has passed; every register access updates first.
//!
//! NMI, INIT, start-up and ExtINT messages set flags the machine takes
//! ([`LocalApic::take_nmi`], [`LocalApic::take_init`], [`LocalApic::take_extint`]); SMI is
//! logged and dropped. IPIs the ICR sends to other APICs are queued for the machine
//! ([`LocalApic::take_ipis`]); on this single-CPU machine they reach nobody.

use std::collections::VecDeque;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::ioapic::{ApicMessage, DeliveryMode, InterruptSink, IoApic};
use crate::{Clock, MmioDevice};

/// Default guest physical base of the local APIC page.
pub const LAPIC_BASE: u64 = 0xfee0_0000;
/// Size of the local APIC page.
pub const LAPIC_SIZE: u64 = 0x1000;
/// The timer's input clock (the "bus clock" before the divider), in Hz: one tick per
/// virtual nanosecond, as in QEMU. The guest measures it against the PIT or the TSC.
pub const LAPIC_TIMER_HZ: u64 = 1_000_000_000;
const NS_PER_S: u64 = 1_000_000_000;

// Register offsets (each register is 32 bits at the start of a 16-byte slot).
/// Local APIC ID, bits 31-24.
const REG_ID: u64 = 0x20;
/// Version (read only).
const REG_VERSION: u64 = 0x30;
/// Task priority.
const REG_TPR: u64 = 0x80;
/// Arbitration priority (read only).
const REG_APR: u64 = 0x90;
/// Processor priority (read only, computed).
const REG_PPR: u64 = 0xa0;
/// End of interrupt (write only).
const REG_EOI: u64 = 0xb0;
/// Remote read (read only, unused: reads 0).
const REG_RRD: u64 = 0xc0;
/// Logical destination, bits 31-24.
const REG_LDR: u64 = 0xd0;
/// Destination format, bits 31-28 (flat 0xF or cluster 0x0); bits 27-0 read as ones.
const REG_DFR: u64 = 0xe0;
/// Spurious interrupt vector.
const REG_SVR: u64 = 0xf0;
/// In-service register: eight 32-bit registers, vectors 0-255.
const REG_ISR: u64 = 0x100;
/// Trigger mode register: eight registers.
const REG_TMR: u64 = 0x180;
/// Interrupt request register: eight registers.
const REG_IRR: u64 = 0x200;
/// Error status.
const REG_ESR: u64 = 0x280;
/// Interrupt command, low half (writing it sends).
const REG_ICR_LOW: u64 = 0x300;
/// Interrupt command, high half: destination in bits 31-24.
const REG_ICR_HIGH: u64 = 0x310;
/// LVT timer; thermal, performance counter, LINT0, LINT1 and error follow every 0x10.
const REG_LVT_TIMER: u64 = 0x320;
/// LVT error, the last LVT entry.
const REG_LVT_ERROR: u64 = 0x370;
/// Timer initial count.
const REG_TIMER_INITIAL: u64 = 0x380;
/// Timer current count (read only).
const REG_TIMER_CURRENT: u64 = 0x390;
/// Timer divide configuration.
const REG_TIMER_DIVIDE: u64 = 0x3e0;

/// Number of LVT entries (timer, thermal, performance, LINT0, LINT1, error).
const LVT_COUNT: usize = 6;
/// LVT index of the timer.
const LVT_TIMER: usize = 0;
/// LVT index of LINT0.
const LVT_LINT0: usize = 3;
/// LVT index of the error interrupt.
const LVT_ERROR: usize = 5;
/// Version register: version 0x14 (integrated APIC), max LVT entry (count - 1) in
/// bits 23-16. Bit 24 (EOI-broadcast suppression) is clear.
const VERSION: u32 = 0x14 | ((LVT_COUNT as u32 - 1) << 16);

// LVT bits.
/// Vector.
const LVT_VECTOR: u32 = 0xff;
/// Delivery mode, bits 10-8 (thermal, performance, LINT0, LINT1).
const LVT_DELIVERY_MASK: u32 = 0x700;
// Bit 12, delivery status, is read only and always clear here: delivery is immediate.
/// Input pin polarity (LINT0, LINT1).
const LVT_POLARITY: u32 = 1 << 13;
/// Trigger mode: level (LINT0, LINT1).
const LVT_LEVEL: u32 = 1 << 15;
/// Masked (the reset value of every entry).
const LVT_MASKED: u32 = 1 << 16;
/// Timer mode, bits 18-17 (timer only): 0 one-shot, 1 periodic, 2 TSC-deadline.
const LVT_TIMER_MODE_SHIFT: u32 = 17;
/// Timer mode: periodic.
const TIMER_PERIODIC: u32 = 1;
/// Timer mode: TSC-deadline.
const TIMER_TSC_DEADLINE: u32 = 2;
/// Writable bits of each LVT entry, in LVT order.
const LVT_WRITABLE: [u32; LVT_COUNT] = [
    LVT_VECTOR | LVT_MASKED | 3 << LVT_TIMER_MODE_SHIFT,
    LVT_VECTOR | LVT_DELIVERY_MASK | LVT_MASKED,
    LVT_VECTOR | LVT_DELIVERY_MASK | LVT_MASKED,
    LVT_VECTOR | LVT_DELIVERY_MASK | LVT_POLARITY | LVT_LEVEL | LVT_MASKED,
    LVT_VECTOR | LVT_DELIVERY_MASK | LVT_POLARITY | LVT_LEVEL | LVT_MASKED,
    LVT_VECTOR | LVT_MASKED,
];

// SVR bits.
/// Spurious vector.
const SVR_VECTOR: u32 = 0xff;
/// APIC software enable.
const SVR_ENABLE: u32 = 1 << 8;
/// Focus processor checking disabled (kept, no effect with one CPU).
const SVR_FOCUS_DISABLED: u32 = 1 << 9;

// ESR bits.
/// Send illegal vector: the ICR named a fixed vector below 16.
const ESR_SEND_ILLEGAL_VECTOR: u32 = 1 << 5;
/// Receive illegal vector: a fixed interrupt with a vector below 16 arrived.
const ESR_RECEIVE_ILLEGAL_VECTOR: u32 = 1 << 6;
/// Illegal register address: an access to a reserved register.
const ESR_ILLEGAL_REGISTER: u32 = 1 << 7;

// ICR bits (low half).
/// Delivery mode shift (bits 10-8).
const ICR_DELIVERY_SHIFT: u32 = 8;
/// Destination mode: logical.
const ICR_LOGICAL: u32 = 1 << 11;
/// Level: assert (clear only for INIT level de-assert).
const ICR_LEVEL_ASSERT: u32 = 1 << 14;
/// Trigger mode: level.
const ICR_LEVEL_TRIGGER: u32 = 1 << 15;
/// Destination shorthand shift (bits 19-18): 0 none, 1 self, 2 all, 3 all but self.
const ICR_SHORTHAND_SHIFT: u32 = 18;
/// Writable bits of the low half (delivery status, bit 12, stays clear).
const ICR_LOW_WRITABLE: u32 = 0x000c_cfff;

// APIC base MSR (IA32_APIC_BASE, 0x1B).
/// This is the bootstrap processor (read only here).
const MSR_BSP: u64 = 1 << 8;
/// x2APIC mode (not supported: a write setting it is refused).
const MSR_X2APIC: u64 = 1 << 10;
/// APIC global enable.
const MSR_ENABLE: u64 = 1 << 11;
/// The base address field (bits 51-12).
const MSR_BASE_MASK: u64 = 0x000f_ffff_ffff_f000;

/// Most IPIs kept for the machine before the oldest are dropped.
const MAX_QUEUED_IPIS: usize = 64;

/// Where the EOI of a level-triggered interrupt goes: the I/O APIC.
pub trait EoiBroadcast: Send + Sync {
    /// The local APIC ended level-triggered interrupt `vector`.
    fn end_of_interrupt(&self, vector: u8);
}

impl EoiBroadcast for Mutex<IoApic> {
    fn end_of_interrupt(&self, vector: u8) {
        self.lock().end_of_interrupt(vector);
    }
}

/// The local APIC's registers and timer, as plain data (also its snapshot).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LapicState {
    /// IA32_APIC_BASE: base address, BSP and global enable bits.
    pub apic_base: u64,
    /// APIC ID (bits 31-24 of the ID register).
    pub id: u8,
    /// Task priority register.
    pub tpr: u8,
    /// Logical destination register (bits 31-24 significant).
    pub ldr: u32,
    /// Destination format register.
    pub dfr: u32,
    /// Spurious interrupt vector register.
    pub svr: u32,
    /// In-service register, vector `v` at bit `v % 32` of word `v / 32`.
    pub isr: [u32; 8],
    /// Trigger mode register (set: accepted level-triggered).
    pub tmr: [u32; 8],
    /// Interrupt request register.
    pub irr: [u32; 8],
    /// Error status register, as last latched by a write.
    pub esr: u32,
    /// Errors since the last ESR write.
    pub esr_pending: u32,
    /// Interrupt command register (high half in bits 63-32).
    pub icr: u64,
    /// LVT entries: timer, thermal, performance, LINT0, LINT1, error.
    pub lvt: [u32; LVT_COUNT],
    /// Timer initial count.
    pub timer_initial: u32,
    /// Timer divide configuration register (bits 0, 1 and 3).
    pub timer_divide: u32,
    /// Virtual time (ns) when the current count was last loaded with the initial count.
    pub timer_start_ns: u64,
    /// Virtual time (ns) of the next timer expiration not yet handled, if armed.
    pub timer_deadline_ns: Option<u64>,
    /// IA32_TSC_DEADLINE as last written (0: disarmed).
    pub tsc_deadline: u64,
    /// An NMI arrived and the CPU has not taken it.
    pub nmi_pending: bool,
    /// An INIT arrived.
    pub init_pending: bool,
    /// An ExtINT arrived: the vector must come from the PIC.
    pub extint_pending: bool,
    /// IPIs sent to other APICs, oldest first.
    pub ipis: VecDeque<ApicMessage>,
}

impl Default for LapicState {
    /// The power-on state of the bootstrap processor's APIC: globally enabled at
    /// 0xFEE00000, software disabled, every LVT entry masked.
    fn default() -> LapicState {
        LapicState {
            apic_base: LAPIC_BASE | MSR_BSP | MSR_ENABLE,
            id: 0,
            tpr: 0,
            ldr: 0,
            dfr: u32::MAX,
            svr: SVR_VECTOR,
            isr: [0; 8],
            tmr: [0; 8],
            irr: [0; 8],
            esr: 0,
            esr_pending: 0,
            icr: 0,
            lvt: [LVT_MASKED; LVT_COUNT],
            timer_initial: 0,
            timer_divide: 0,
            timer_start_ns: 0,
            timer_deadline_ns: None,
            tsc_deadline: 0,
            nmi_pending: false,
            init_pending: false,
            extint_pending: false,
            ipis: VecDeque::new(),
        }
    }
}

fn highest(bits: &[u32; 8]) -> Option<u8> {
    (0..8)
        .rev()
        .find(|&i| bits[i] != 0)
        .map(|i| (i * 32 + 31 - bits[i].leading_zeros() as usize) as u8)
}

fn set_bit(bits: &mut [u32; 8], vector: u8, value: bool) {
    let (word, bit) = (usize::from(vector / 32), 1u32 << (vector % 32));
    if value {
        bits[word] |= bit;
    } else {
        bits[word] &= !bit;
    }
}

/// The local APIC.
pub struct LocalApic {
    clock: Arc<dyn Clock>,
    tsc_hz: u64,
    s: LapicState,
}

impl LocalApic {
    /// The bootstrap processor's APIC at power-on, with ID `id`. `tsc_hz` is the TSC
    /// frequency the machine uses (TSC = virtual ns x `tsc_hz` / 10^9), which converts
    /// IA32_TSC_DEADLINE to virtual time.
    pub fn new(id: u8, clock: Arc<dyn Clock>, tsc_hz: u64) -> LocalApic {
        LocalApic {
            clock,
            tsc_hz: tsc_hz.max(1),
            s: LapicState {
                id,
                ..LapicState::default()
            },
        }
    }

    fn hw_enabled(&self) -> bool {
        self.s.apic_base & MSR_ENABLE != 0
    }

    fn sw_enabled(&self) -> bool {
        self.hw_enabled() && self.s.svr & SVR_ENABLE != 0
    }

    /// The processor priority: the task priority, or the class of the highest vector in
    /// service if that is higher.
    pub fn ppr(&self) -> u8 {
        let isrv = highest(&self.s.isr).unwrap_or(0);
        if self.s.tpr >> 4 >= isrv >> 4 {
            self.s.tpr
        } else {
            isrv & 0xf0
        }
    }

    fn apr(&self) -> u8 {
        let isrv = highest(&self.s.isr).unwrap_or(0);
        let irrv = highest(&self.s.irr).unwrap_or(0);
        let tpr = self.s.tpr;
        if tpr >> 4 >= irrv >> 4 && tpr >> 4 > isrv >> 4 {
            tpr
        } else {
            (tpr & 0xf0).max(isrv & 0xf0).max(irrv & 0xf0)
        }
    }

    /// The vector the CPU would take now, if any.
    fn deliverable(&self) -> Option<u8> {
        let v = highest(&self.s.irr)?;
        (self.sw_enabled() && v & 0xf0 > self.ppr() & 0xf0).then_some(v)
    }

    /// The INTR pin: an interrupt in the IRR beats the processor priority.
    pub fn has_interrupt(&self) -> bool {
        self.deliverable().is_some()
    }

    /// The CPU takes the interrupt: the highest deliverable vector moves from IRR to ISR and
    /// is returned. With nothing deliverable (the request went away, or the TPR rose), the
    /// spurious vector, with no ISR bit set. `None` when the APIC is disabled (globally or
    /// in software): the interrupt did not come from it.
    pub fn acknowledge(&mut self) -> Option<u8> {
        if !self.sw_enabled() {
            return None;
        }
        match self.deliverable() {
            Some(v) => {
                set_bit(&mut self.s.irr, v, false);
                set_bit(&mut self.s.isr, v, true);
                Some(v)
            }
            None => Some((self.s.svr & SVR_VECTOR) as u8),
        }
    }

    /// Accepts `msg` as addressed to this APIC (the caller has routed it). Fixed and
    /// lowest-priority vectors go to the IRR (dropped while the APIC is software disabled;
    /// a vector below 16 is an error instead); the others set their flags.
    pub fn accept(&mut self, msg: ApicMessage) {
        if !self.hw_enabled() {
            tracing::debug!(?msg, "message to a disabled local APIC dropped");
            return;
        }
        match msg.delivery_mode {
            DeliveryMode::Fixed | DeliveryMode::LowestPriority => {
                self.request(msg.vector, msg.level_triggered)
            }
            DeliveryMode::Nmi => self.s.nmi_pending = true,
            DeliveryMode::Init if msg.level || !msg.level_triggered => self.s.init_pending = true,
            DeliveryMode::Init => {} // INIT level de-assert
            DeliveryMode::ExtInt => self.s.extint_pending = true,
            DeliveryMode::StartUp => tracing::debug!(?msg, "start-up IPI to the BSP ignored"),
            DeliveryMode::Smi => tracing::warn!(?msg, "SMI not supported, dropped"),
        }
    }

    /// Whether `destination` in `logical` or physical mode names this APIC.
    pub fn matches_destination(&self, destination: u8, logical: bool) -> bool {
        if !logical {
            return destination == 0xff || destination == self.s.id;
        }
        let ldr = (self.s.ldr >> 24) as u8;
        if self.s.dfr >> 28 == 0xf {
            destination & ldr != 0
        } else {
            let cluster_ok = destination >> 4 == 0xf || destination >> 4 == ldr >> 4;
            cluster_ok && destination & ldr & 0xf != 0
        }
    }

    /// Sets IRR bit `vector` (and its TMR bit to `level_triggered`).
    fn request(&mut self, vector: u8, level_triggered: bool) {
        if !self.sw_enabled() {
            tracing::debug!(
                vector,
                "interrupt to a software-disabled local APIC dropped"
            );
        } else if vector < 16 {
            self.error(ESR_RECEIVE_ILLEGAL_VECTOR);
        } else {
            set_bit(&mut self.s.irr, vector, true);
            set_bit(&mut self.s.tmr, vector, level_triggered);
        }
    }

    /// Records an error and raises the error interrupt if its LVT allows.
    fn error(&mut self, bits: u32) {
        self.s.esr_pending |= bits;
        let lvt = self.s.lvt[LVT_ERROR];
        // The error interrupt with an illegal vector does not recurse.
        if lvt & LVT_MASKED == 0 && (lvt & LVT_VECTOR) >= 16 {
            self.request((lvt & LVT_VECTOR) as u8, false);
        }
    }

    /// Takes the pending NMI, if any.
    pub fn take_nmi(&mut self) -> bool {
        std::mem::take(&mut self.s.nmi_pending)
    }

    /// Takes the pending INIT, if any.
    pub fn take_init(&mut self) -> bool {
        std::mem::take(&mut self.s.init_pending)
    }

    /// Takes the pending ExtINT, if any: the machine then runs the PIC's INTA cycle.
    pub fn take_extint(&mut self) -> bool {
        std::mem::take(&mut self.s.extint_pending)
    }

    /// Takes the IPIs the ICR sent to other APICs, oldest first.
    pub fn take_ipis(&mut self) -> Vec<ApicMessage> {
        self.s.ipis.drain(..).collect()
    }

    /// Whether the 8259A's INTR reaches the CPU directly (virtual-wire mode): the APIC is
    /// globally disabled, or LINT0 is unmasked in ExtINT mode.
    pub fn accepts_pic_interrupts(&self) -> bool {
        let lint0 = self.s.lvt[LVT_LINT0];
        !self.hw_enabled()
            || (lint0 & LVT_MASKED == 0
                && lint0 & LVT_DELIVERY_MASK == u32::from(DeliveryMode::ExtInt.bits()) << 8)
    }

    /// IA32_APIC_BASE (MSR 0x1B).
    pub fn apic_base(&self) -> u64 {
        self.s.apic_base
    }

    /// Writes IA32_APIC_BASE. Returns `false`, changing nothing, for a value the CPU
    /// refuses with #GP (reserved bits, or x2APIC mode, which is not advertised). The BSP
    /// bit is read only. Clearing the enable bit resets the APIC to its power-on state
    /// (keeping its ID); the machine moves the MMIO page if the base changes.
    pub fn set_apic_base(&mut self, value: u64) -> bool {
        if value & !(MSR_BASE_MASK | MSR_BSP | MSR_ENABLE) != 0 || value & MSR_X2APIC != 0 {
            tracing::warn!(value, "invalid IA32_APIC_BASE write refused");
            return false;
        }
        if value & MSR_ENABLE == 0 && self.hw_enabled() {
            self.s = LapicState {
                id: self.s.id,
                ..LapicState::default()
            };
        }
        self.s.apic_base = (value & (MSR_BASE_MASK | MSR_ENABLE)) | (self.s.apic_base & MSR_BSP);
        true
    }

    /// CR8: the task priority class, TPR bits 7-4.
    pub fn cr8(&self) -> u64 {
        u64::from(self.s.tpr >> 4)
    }

    /// Writes CR8 (bits 3-0; the caller has refused reserved bits): TPR = CR8 << 4.
    pub fn set_cr8(&mut self, value: u64) {
        self.s.tpr = ((value & 0xf) << 4) as u8;
    }

    /// Reads the 32-bit register at `offset` (16-byte aligned) of the APIC page.
    pub fn read_register(&mut self, offset: u64) -> u32 {
        self.update();
        match offset {
            REG_ID => u32::from(self.s.id) << 24,
            REG_VERSION => VERSION,
            REG_TPR => u32::from(self.s.tpr),
            REG_APR => u32::from(self.apr()),
            REG_PPR => u32::from(self.ppr()),
            REG_EOI | REG_RRD => 0,
            REG_LDR => self.s.ldr,
            REG_DFR => self.s.dfr,
            REG_SVR => self.s.svr,
            REG_ISR..0x180 => self.s.isr[((offset - REG_ISR) / 0x10) as usize],
            REG_TMR..0x200 => self.s.tmr[((offset - REG_TMR) / 0x10) as usize],
            REG_IRR..0x280 => self.s.irr[((offset - REG_IRR) / 0x10) as usize],
            REG_ESR => self.s.esr,
            REG_ICR_LOW => self.s.icr as u32,
            REG_ICR_HIGH => (self.s.icr >> 32) as u32,
            REG_LVT_TIMER..=REG_LVT_ERROR => self.s.lvt[((offset - REG_LVT_TIMER) / 0x10) as usize],
            REG_TIMER_INITIAL => self.s.timer_initial,
            REG_TIMER_CURRENT => self.current_count(),
            REG_TIMER_DIVIDE => self.s.timer_divide,
            _ => {
                tracing::debug!(offset, "local APIC read of a reserved register");
                self.error(ESR_ILLEGAL_REGISTER);
                0
            }
        }
    }

    /// Writes the 32-bit register at `offset` (16-byte aligned) of the APIC page. Returns
    /// the vector when the write is an EOI that must be broadcast to the I/O APIC (the
    /// vector was accepted level-triggered).
    pub fn write_register(&mut self, offset: u64, value: u32) -> Option<u8> {
        self.update();
        match offset {
            REG_ID => self.s.id = (value >> 24) as u8,
            REG_TPR => self.s.tpr = value as u8,
            REG_EOI => return self.eoi(),
            REG_LDR => self.s.ldr = value & 0xff00_0000,
            REG_DFR => self.s.dfr = (value & 0xf000_0000) | 0x0fff_ffff,
            REG_SVR => self.write_svr(value),
            REG_ESR => {
                self.s.esr = std::mem::take(&mut self.s.esr_pending);
            }
            REG_ICR_LOW => {
                self.s.icr = (self.s.icr & !0xffff_ffff) | u64::from(value & ICR_LOW_WRITABLE);
                self.send_ipi();
            }
            REG_ICR_HIGH => {
                self.s.icr = (self.s.icr & 0xffff_ffff) | u64::from(value & 0xff00_0000) << 32
            }
            REG_LVT_TIMER..=REG_LVT_ERROR => {
                self.write_lvt(((offset - REG_LVT_TIMER) / 0x10) as usize, value)
            }
            REG_TIMER_INITIAL => {
                self.s.timer_initial = value;
                if self.timer_mode() != TIMER_TSC_DEADLINE {
                    self.start_timer();
                }
            }
            REG_TIMER_DIVIDE => {
                // The current count keeps its value; the new rate applies from now. Lazily:
                // restart the count from where it stands.
                let current = self.current_count();
                self.s.timer_divide = value & 0xb;
                self.restart_from(current);
            }
            REG_VERSION | REG_APR | REG_PPR | REG_RRD | REG_TIMER_CURRENT => {
                tracing::debug!(offset, value, "local APIC write to a read-only register")
            }
            REG_ISR..0x280 => {
                tracing::debug!(offset, value, "local APIC write to ISR/TMR/IRR ignored")
            }
            _ => {
                tracing::debug!(offset, value, "local APIC write to a reserved register");
                self.error(ESR_ILLEGAL_REGISTER);
            }
        }
        None
    }

    fn eoi(&mut self) -> Option<u8> {
        let v = highest(&self.s.isr)?;
        set_bit(&mut self.s.isr, v, false);
        let level = self.s.tmr[usize::from(v / 32)] & (1 << (v % 32)) != 0;
        level.then_some(v)
    }

    fn write_svr(&mut self, value: u32) {
        self.s.svr = value & (SVR_VECTOR | SVR_ENABLE | SVR_FOCUS_DISABLED);
        if value & SVR_ENABLE == 0 {
            // Software disable masks every LVT entry.
            for lvt in &mut self.s.lvt {
                *lvt |= LVT_MASKED;
            }
        }
    }

    fn write_lvt(&mut self, index: usize, value: u32) {
        let mut value = value & LVT_WRITABLE[index];
        if !self.sw_enabled() {
            value |= LVT_MASKED; // the mask cannot be cleared while software disabled
        }
        if index != LVT_TIMER {
            self.s.lvt[index] = value;
            return;
        }
        let old_mode = self.timer_mode();
        let current = self.current_count();
        self.s.lvt[LVT_TIMER] = value;
        let mode = self.timer_mode();
        if mode == 3 {
            // Reserved mode: treat as one-shot, as real parts do not fire in it reliably.
            tracing::warn!(value, "LVT timer with the reserved mode 3");
        }
        if (old_mode == TIMER_TSC_DEADLINE) != (mode == TIMER_TSC_DEADLINE) {
            // Switching to or from TSC-deadline mode disarms the timer.
            self.s.timer_deadline_ns = None;
            self.s.tsc_deadline = 0;
            self.s.timer_initial = 0;
        } else if old_mode != mode {
            self.restart_from(current);
        }
    }

    /// Sends the IPI the ICR now describes.
    fn send_ipi(&mut self) {
        let low = self.s.icr as u32;
        let Some(delivery_mode) = DeliveryMode::from_bits((low >> ICR_DELIVERY_SHIFT) as u8) else {
            tracing::warn!(low, "IPI with a reserved delivery mode dropped");
            return;
        };
        let msg = ApicMessage {
            vector: low as u8,
            delivery_mode,
            destination: (self.s.icr >> 56) as u8,
            logical: low & ICR_LOGICAL != 0,
            level_triggered: low & ICR_LEVEL_TRIGGER != 0,
            level: low & ICR_LEVEL_ASSERT != 0,
        };
        if matches!(
            delivery_mode,
            DeliveryMode::Fixed | DeliveryMode::LowestPriority
        ) && msg.vector < 16
        {
            self.error(ESR_SEND_ILLEGAL_VECTOR);
            return;
        }
        let (to_self, to_others) = match (low >> ICR_SHORTHAND_SHIFT) & 3 {
            0 => (
                self.matches_destination(msg.destination, msg.logical),
                msg.logical || msg.destination != self.s.id,
            ),
            1 => (true, false),
            2 => (true, true),
            _ => (false, true),
        };
        if to_others {
            if self.s.ipis.len() == MAX_QUEUED_IPIS {
                self.s.ipis.pop_front();
            }
            self.s.ipis.push_back(msg);
        }
        if to_self {
            self.accept(msg);
        }
    }

    /// The registers (for tests and debugging).
    pub fn regs(&self) -> &LapicState {
        &self.s
    }

    /// A snapshot.
    pub fn state(&self) -> LapicState {
        self.s.clone()
    }

    /// Restores a snapshot taken with [`LocalApic::state`].
    pub fn restore(&mut self, state: &LapicState) {
        self.s = state.clone();
    }

    /// An MMIO read of `size` bytes at `offset` in the APIC page: the register of the
    /// 16-byte slot, shifted for an offset inside its first 4 bytes; 0 beyond them.
    pub fn read_mmio(&mut self, offset: u64, size: u8) -> u64 {
        let offset = offset & (LAPIC_SIZE - 1);
        let within = offset & 0xf;
        let value = if within < 4 {
            u64::from(self.read_register(offset & !0xf) >> (8 * within))
        } else {
            0
        };
        value & (u64::MAX >> (64 - 8 * u32::from(size.clamp(1, 8))))
    }

    /// An MMIO write at `offset` in the APIC page: the low 32 bits of `value` go to the
    /// register of a 16-byte aligned offset (whatever the size); other offsets are dropped.
    /// Returns the EOI vector to broadcast, as [`LocalApic::write_register`].
    pub fn write_mmio(&mut self, offset: u64, size: u8, value: u64) -> Option<u8> {
        let offset = offset & (LAPIC_SIZE - 1);
        if offset & 0xf != 0 {
            tracing::warn!(offset, size, value, "misaligned local APIC write dropped");
            return None;
        }
        self.write_register(offset, value as u32)
    }
}

impl InterruptSink for Mutex<LocalApic> {
    /// Accepts `msg` if its destination names this APIC (a broadcast or this ID, or a
    /// logical set containing it); otherwise it reaches nobody on this one-CPU machine.
    fn deliver(&self, msg: ApicMessage) {
        let mut lapic = self.lock();
        if lapic.matches_destination(msg.destination, msg.logical) {
            lapic.accept(msg);
        } else {
            tracing::debug!(?msg, "interrupt message for no APIC dropped");
        }
    }
}

/// The MMIO page of a shared [`LocalApic`], for the bus: broadcasts level-triggered EOIs to
/// `eoi` with the local APIC unlocked.
///
/// Lock order: the I/O APIC before the local APIC (the I/O APIC delivers with itself
/// locked). Never drive an I/O APIC pin while holding the local APIC.
#[derive(Clone)]
pub struct LapicMmio {
    /// The local APIC.
    pub lapic: Arc<Mutex<LocalApic>>,
    /// Where level-triggered EOIs go (the I/O APIC).
    pub eoi: Arc<dyn EoiBroadcast>,
}

impl MmioDevice for LapicMmio {
    fn read(&mut self, offset: u64, size: u8) -> u64 {
        self.lapic.lock().read_mmio(offset, size)
    }

    fn write(&mut self, offset: u64, size: u8, value: u64) {
        let eoi = self.lapic.lock().write_mmio(offset, size, value);
        if let Some(vector) = eoi {
            self.eoi.end_of_interrupt(vector);
        }
    }
}

mod timer;

#[cfg(test)]
mod tests;
