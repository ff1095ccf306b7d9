//! The C99 `<stdint.h>` types that `softfloat-sys` names, for the hosts crane86 builds on.
//!
//! crates.io's `c99` derives these by compiling and running a C program through CMake at
//! build time. CMake is not on a fresh Debian machine, and `cargo run --release` must work
//! there, so the workspace patches `c99` with this crate: the aliases are fixed by the LP64
//! ABI of 64-bit Linux (glibc's `<stdint.h>`: the "fast" types wider than 8 bits are `long`).
#![no_std]
#![allow(non_camel_case_types)]

#[cfg(not(all(target_pointer_width = "64", target_os = "linux")))]
compile_error!("c99 shim: only the LP64 Linux ABI is described here");

pub type int8_t = i8;
pub type int16_t = i16;
pub type int32_t = i32;
pub type int64_t = i64;
pub type uint8_t = u8;
pub type uint16_t = u16;
pub type uint32_t = u32;
pub type uint64_t = u64;
pub type int_least8_t = i8;
pub type int_least16_t = i16;
pub type int_least32_t = i32;
pub type int_least64_t = i64;
pub type uint_least8_t = u8;
pub type uint_least16_t = u16;
pub type uint_least32_t = u32;
pub type uint_least64_t = u64;
pub type int_fast8_t = i8;
pub type int_fast16_t = i64;
pub type int_fast32_t = i64;
pub type int_fast64_t = i64;
pub type uint_fast8_t = u8;
pub type uint_fast16_t = u64;
pub type uint_fast32_t = u64;
pub type uint_fast64_t = u64;
pub type intptr_t = isize;
pub type uintptr_t = usize;
pub type intmax_t = i64;
pub type uintmax_t = u64;
