//! The `crane86` command line: argument parsing, the `run` command and the statistics report.
//! The binary (`main.rs`) only maps results to exit codes.
#![deny(missing_docs)]

pub mod args;
pub mod console;
pub mod kut;
pub mod run;
pub mod stats;
