//! Every test guest, in every mode it supports, produces its expected output and exits
//! cleanly under every tier.

use crane86_guests::Guest;
use crane86_machine::{Machine, MachineConfig, RunEnd};
use crane86_runtime::CpuMode;
use crane86_translator::Tier;

/// Enough for the largest guest with room to spare.
const LIMIT: u64 = 200_000_000;

fn mode(bits: u32) -> CpuMode {
    match bits {
        16 => CpuMode::Real16,
        32 => CpuMode::Prot32,
        _ => CpuMode::Long64,
    }
}

fn run(g: &Guest, tier: Tier) -> Result<(), String> {
    let mut m = Machine::new(&MachineConfig {
        tier,
        ..Default::default()
    })
    .unwrap();
    m.load_flat(&g.image, g.load_addr, g.entry, mode(g.bitness))
        .unwrap();
    let end = m.run(Some(LIMIT)).unwrap();
    let out = String::from_utf8_lossy(&m.ports.serial).into_owned();
    if end != RunEnd::DebugExit(0) || out != g.expected_output {
        return Err(format!(
            "{} ({}-bit) under {tier:?}: ended with {end:?}\n  output:   {out:?}\n  expected: {:?}",
            g.name, g.bitness, g.expected_output
        ));
    }
    Ok(())
}

fn check(name: &str, tier: Tier) {
    let failures: Vec<String> = [64, 32, 16]
        .into_iter()
        .filter_map(|bits| crane86_guests::by_name(name, bits))
        .filter_map(|g| run(&g, tier).err())
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

const AUTO: Tier = Tier::Auto { threshold: 5 };

macro_rules! guest_tests {
    ($($name:ident),*) => {
        $(
            mod $name {
                use super::*;
                #[test]
                fn interp() {
                    check(stringify!($name), Tier::Interp);
                }
                #[test]
                fn jit() {
                    check(stringify!($name), Tier::Jit);
                }
                #[test]
                fn auto() {
                    check(stringify!($name), AUTO);
                }
                #[test]
                fn baseline() {
                    check(stringify!($name), Tier::Baseline);
                }
            }
        )*
    };
}

guest_tests!(sieve, sort, crc32, strings);

#[test]
fn every_guest_is_covered() {
    let mut names: Vec<&str> = crane86_guests::names().collect();
    names.sort_unstable();
    assert_eq!(names, ["crc32", "sieve", "sort", "strings"]);
}
