//! Guest x86 code to host code: decode, rewrite, lower, cache.
//!
//! The pipeline, in the order a guest block goes through it:
//! - [`decode`]: iced-x86 decodes a block, up to a control transfer, a runtime-class
//!   instruction, an invalid one, the page end or a length cap;
//! - [`rewrite`]: decides per instruction whether it is lowered inline or runs in the runtime
//!   (the sensitive ones), with the reasons;
//! - [`semantics`]: each instruction's meaning, written once against [`emit::Emit`] and
//!   indexed by the opcode [`table`];
//! - two back ends: [`interp`] (evaluates, the cold tier) and [`jit`] (emits Cranelift IR,
//!   compiled into an executable arena);
//! - [`cache`]: the translation cache keyed by [`crane86_runtime::BlockKey`], with tiering,
//!   chaining and invalidation by physical page.
//!
//! ```
//! use crane86_translator::table;
//! use iced_x86::Code;
//! assert!(table::lookup(Code::Add_rm32_r32).is_some());
//! ```
#![deny(missing_docs)]

pub mod baseline;
pub mod cache;
pub mod cpu_model;
pub mod decode;
pub mod emit;
pub mod interp;
pub mod jit;
pub mod rewrite;
pub mod semantics;
pub mod table;
#[cfg(test)]
pub(crate) mod testutil;

pub use cache::{BaselineStats, Cache, CacheStats, InterpRuns, Tier, TierStats};
