//! The virtual x86 CPU's state and the guest memory that translated code runs on.
//!
//! This crate is the leaf of crane86: it knows nothing about decoding or code generation. It
//! holds the `#[repr(C)]` [`CpuState`] that generated code addresses by field offset, the lazy
//! flags representation, guest physical memory with its software TLB, and the small set of
//! `extern "C"` slow paths that generated code calls.
//!
//! ```
//! use crane86_runtime::{CpuState, CpuMode, Gpr};
//! let mut cpu = CpuState::new(CpuMode::Long64);
//! cpu.set_gpr(Gpr::Rax, 0x1234);
//! assert_eq!(cpu.gpr(Gpr::Rax), 0x1234);
//! ```
#![deny(missing_docs)]

pub mod debug;
pub mod exception;
pub mod far;
pub mod fastcall;
pub mod flags;
pub mod fpu;
pub mod helper_panic;
pub mod interrupt;
pub mod io_perm;
pub mod key;
pub mod memory;
pub mod msr;
pub mod paging;
pub mod pcid;
pub mod phase;
pub mod rsb;
pub mod segment;
pub mod shadow;
pub mod state;
pub mod task;
pub mod v86;

pub use exception::{Exception, Fault};
pub use flags::{CcKind, CcOp, LazyFlags};
pub use key::BlockKey;
pub use memory::{MemError, MmioHandler, PhysMem, PortIo};
pub use state::{CpuMode, CpuState, DescriptorTable, Gpr, SegReg, Segment};
