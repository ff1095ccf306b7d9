//! What debuggers and lockstep comparisons need from the machine: one instruction at a
//! time, interrupts held back and injected from outside.
//!
//! [`Machine::step`] is the unit both the GDB stub and `crane86 difftest` count in, and it
//! is QEMU's: one instruction retires, or one exception or interrupt is delivered (the CPU
//! then stands at the handler's first instruction, which has not run).

use crane86_runtime::flags as fl;
use crane86_runtime::interrupt::EventKind;

use crate::{Machine, MachineError, RunEnd};

impl Machine {
    /// Executes one guest instruction in the interpreter, or delivers the exception that
    /// is pending. Returns [`RunEnd::Limit`] when the step completed and the machine can go
    /// on, or how the run ended (HLT with [`crate::DebugControl::halt_stops`], a triple
    /// fault, isa-debug-exit...).
    pub fn step(&mut self) -> Result<RunEnd, MachineError> {
        let saved = self.debug.interpret_only;
        self.debug.interpret_only = true;
        let end = self.run(Some(1));
        self.debug.interpret_only = saved;
        end
    }

    /// An external interrupt or NMI is waiting and the CPU would take it before its next
    /// instruction if [`crate::DebugControl::hold_interrupts`] were off (IF set, no
    /// interrupt shadow; NMIs regardless of IF). Always false on the flat board.
    pub fn interrupt_pending(&mut self) -> bool {
        let Some(pc) = self.pc.as_mut() else {
            return false;
        };
        pc.refresh(&mut self.cpu);
        if self.irq_shadow {
            return false;
        }
        (pc.nmi_pending && !self.nmi_blocked) || (pc.pending && self.cpu.rflags & fl::IF != 0)
    }

    /// Delivers external interrupt `vector` through the IDT now, as if an interrupt
    /// controller had raised it (none is told): for replaying another machine's interrupts.
    /// Returns how the run ends if delivery shut the CPU down.
    pub fn inject_interrupt(&mut self, vector: u8) -> Option<RunEnd> {
        self.irq_shadow = false;
        self.deliver_external_event(vector, EventKind::External)
    }
}
