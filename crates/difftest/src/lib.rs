//! Differential testing of crane86's CPU against QEMU TCG.
//!
//! `crane86 difftest qemu` ([`lockstep`]) starts QEMU paused with its gdbstub, lets it load
//! the guest and run to the guest's entry point, makes a crane86 machine an exact copy of
//! that state (registers, descriptor caches, control registers, all of RAM), and then steps
//! both one instruction at a time, comparing after every step. Differences that a CPU is
//! allowed to have (undefined flags, time stamps, device input, CPU-model values such as
//! CPUID) are reported as such and crane86 adopts QEMU's values; anything else is a
//! divergence, reported with both states side by side and the instructions before it.
//!
//! `crane86 difftest random` ([`random`]) runs generated instruction sequences in both.
#![deny(missing_docs)]

pub mod layout;
pub mod lockstep;
pub mod qemu;
pub mod random;
pub mod rsp;
pub mod state;
pub mod sync;
