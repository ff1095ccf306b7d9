//! Hardware breakpoints (DR0-DR3 under DR7, SDM Vol. 3 chapter 18): which instruction
//! breakpoints are armed and whether one matches an instruction about to run.
//!
//! Only instruction breakpoints are modelled. Blocks are single-instruction while one is
//! armed (the bit is part of the block key, like TF), so the run loop can check each
//! instruction's address before it runs. Data breakpoints (R/W = 01 or 11) and I/O
//! breakpoints are stored in DR7 but never fire yet.

use crate::state::CpuState;

/// DR7.Ln|Gn for breakpoint `n`.
fn enabled(dr7: u64, n: usize) -> bool {
    dr7 & (0b11 << (2 * n)) != 0
}

/// DR7.R/Wn: 00 = instruction execution.
fn is_execute(dr7: u64, n: usize) -> bool {
    (dr7 >> (16 + 4 * n)) & 0b11 == 0
}

/// True when at least one instruction breakpoint is armed.
pub fn exec_breakpoints_armed(cpu: &CpuState) -> bool {
    let dr7 = cpu.dr[7];
    dr7 & 0xff != 0 && (0..4).any(|n| enabled(dr7, n) && is_execute(dr7, n))
}

/// The DR6.B0-B3 bits of the armed instruction breakpoints whose address is `linear`, or
/// `None` when none matches.
pub fn exec_breakpoint_hit(cpu: &CpuState, linear: u64) -> Option<u64> {
    let dr7 = cpu.dr[7];
    let bits = (0..4)
        .filter(|&n| enabled(dr7, n) && is_execute(dr7, n) && cpu.dr[n] == linear)
        .fold(0u64, |b, n| b | 1 << n);
    (bits != 0).then_some(bits)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CpuMode;

    #[test]
    fn only_enabled_execute_breakpoints_match() {
        let mut cpu = CpuState::new(CpuMode::Prot32);
        cpu.dr[0] = 0x1000;
        cpu.dr[1] = 0x2000;
        assert!(!exec_breakpoints_armed(&cpu));
        // L0 (execute), G1 with R/W1 = 01 (data write).
        cpu.dr[7] = 0x400 | 0b1 | 0b1000 | (0b01 << 20);
        assert!(exec_breakpoints_armed(&cpu));
        assert_eq!(exec_breakpoint_hit(&cpu, 0x1000), Some(0b1));
        assert_eq!(exec_breakpoint_hit(&cpu, 0x2000), None);
        assert_eq!(exec_breakpoint_hit(&cpu, 0x1001), None);
    }
}
