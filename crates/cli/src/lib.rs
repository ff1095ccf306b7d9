//! The `crane86` command line: argument parsing, the `run` command, the statistics report and
//! the `bench` command.
//! The binary (`main.rs`) only maps results to exit codes.
#![deny(missing_docs)]

pub mod args;
pub mod bench;
pub mod console;
pub mod difftest;
pub mod internal;
pub mod kut;
pub mod run;
pub mod stats;
