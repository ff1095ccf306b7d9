//! Blocks that cross a page boundary under paging (`crate::jit::SecondPage`): their code
//! checks the second page's TLB entry on entry, so they are chained to and found by
//! generated code's lookups like any other block, and a second page that maps elsewhere
//! after a CR3 switch (with its TLB entry refilled by a data access, or empty) still runs
//! the new page's bytes. Each program runs in every tier, which must agree with the
//! interpreter and with the sum worked out here.

use crane86_runtime::{CpuMode, CpuState, PhysMem};
use iced_x86::code_asm::*;

use super::jump_cache_tests::{
    calls_to, remappable_tables, sum_switched_halfway, switch_to_b_halfway, F1, F2,
};
use super::ret_tests::{run_counted, run_tiers_prepared};
use super::Tier;

/// The function: `add ebx, imm32; ret`, starting 2 bytes before [`F1`]'s page so that its
/// immediate and its RET lie on that page. Page tables A give it an immediate of 1, tables B
/// (which map F1's linear page onto [`F2`]'s frame) one of 100.
const FUNC: u64 = F1 - 2;

fn straddling(mem: &mut PhysMem, cpu: &mut CpuState) {
    mem.load(FUNC, &[0x81, 0xc3]).unwrap();
    mem.load(F1, &[1, 0, 0, 0, 0xc3]).unwrap();
    mem.load(F2, &[100, 0, 0, 0, 0xc3]).unwrap();
    remappable_tables(mem, cpu);
}

#[test]
fn a_page_crossing_block_is_entered_from_generated_code() {
    const N: u32 = 1000;
    for indirect in [false, true] {
        let code = calls_to(64, N, FUNC, indirect, |a| a.nop());
        let cpu = run_tiers_prepared(CpuMode::Long64, &code, 1 << 22, &straddling);
        assert_eq!(cpu.gpr[3], u64::from(N), "indirect: {indirect}");
        // Each call went through the run loop when such blocks were not chain targets.
        let (_, steps) = run_counted(CpuMode::Long64, &code, Tier::Jit, 1 << 22, &straddling);
        assert!(
            steps < 20,
            "indirect: {indirect}: {steps} run-loop steps for {N} calls"
        );
    }
}

#[test]
fn a_page_crossing_block_whose_second_page_is_remapped_runs_the_new_bytes() {
    const N: u32 = 400;
    for indirect in [false, true] {
        for refill in [false, true] {
            let code = calls_to(64, N, FUNC, indirect, |a| {
                switch_to_b_halfway(a, N, |a| {
                    if refill {
                        // A data access fills the page's TLB entry with its new
                        // translation, which the block's check must tell from the old one
                        // by its addend.
                        a.mov(edx, dword_ptr(F1 as u32))?;
                    }
                    Ok(())
                })
            });
            let cpu = run_tiers_prepared(CpuMode::Long64, &code, 1 << 22, &straddling);
            assert_eq!(
                cpu.gpr[3],
                sum_switched_halfway(N),
                "indirect: {indirect}, refill: {refill}"
            );
        }
    }
}
