//! Return predictions across remaps (`crane86_runtime::rsb`): RET uses a prediction without
//! checking the TLB, so a remap of the return page that the guest makes take effect (a CR3
//! write, INVLPG) between the CALL and the RET must drop it, while a CR3 write leaves those of
//! global pages alone. Each program runs in every tier, which must agree with the
//! interpreter and with the sum worked out here.

use crane86_runtime::paging::pte;
use crane86_runtime::{CpuMode, CpuState, PhysMem};
use iced_x86::code_asm::*;

use super::jump_cache_tests::{
    calls_to, remappable_tables, sum_switched_halfway, switch_to_b_halfway, F1, F2, TABLES_A,
    TABLES_B,
};
use super::ret_tests::{assemble, run_counted, run_tiers_prepared, START};
use super::Tier;

/// The callee that remaps [`F1`]'s page, on a page of its own.
const G: u64 = 0xa000;

/// Calls run through each tier.
const N: u32 = 400;

/// The code at linear [`F1`]: `call G; add ebx, imm8; ret`.
fn call_g_then_add(imm: u8) -> Vec<u8> {
    let mut a = CodeAssembler::new(64).unwrap();
    a.call(G).unwrap();
    a.add(ebx, i32::from(imm)).unwrap();
    a.ret().unwrap();
    a.assemble(F1).unwrap()
}

/// Page tables A and B ([`remappable_tables`]), [`F1`]'s page holding `call G; add ebx, 1;
/// ret` under A and the same with 100 under B, and `remap` at [`G`] when ECX is `N / 2`,
/// followed by a RET.
fn with_callee(mem: &mut PhysMem, cpu: &mut CpuState, remap: fn(&mut CodeAssembler)) {
    mem.load(F1, &call_g_then_add(1)).unwrap();
    mem.load(F2, &call_g_then_add(100)).unwrap();
    let mut a = CodeAssembler::new(64).unwrap();
    let mut skip = a.create_label();
    a.cmp(ecx, N / 2).unwrap();
    a.jne(skip).unwrap();
    remap(&mut a);
    a.set_label(&mut skip).unwrap();
    a.ret().unwrap();
    mem.load(G, &a.assemble(G).unwrap()).unwrap();
    remappable_tables(mem, cpu);
}

/// The sum when the remap takes effect at the RET of the call with ECX = `N / 2`: that call
/// and the later ones return into the new page's code.
fn remapped_sum() -> u64 {
    u64::from(N / 2) + 100 * u64::from(N / 2)
}

#[test]
fn a_return_page_remapped_by_a_cr3_write_in_the_callee_runs_the_new_code() {
    let code = calls_to(64, N, F1, false, |a| a.nop());
    let prepare = |mem: &mut PhysMem, cpu: &mut CpuState| {
        with_callee(mem, cpu, |a| {
            a.mov(edx, TABLES_B as u32).unwrap();
            a.mov(cr3, rdx).unwrap();
        })
    };
    let cpu = run_tiers_prepared(CpuMode::Long64, &code, 1 << 22, &prepare);
    assert_eq!(cpu.gpr[3], remapped_sum());
}

#[test]
fn a_return_page_remapped_by_invlpg_in_the_callee_runs_the_new_code() {
    let code = calls_to(64, N, F1, false, |a| a.nop());
    let prepare = |mem: &mut PhysMem, cpu: &mut CpuState| {
        with_callee(mem, cpu, |a| {
            // F1's entry in tables A's page table now names F2's frame.
            let entry = TABLES_A + 0x3000 + 8 * (F1 >> 12);
            a.mov(rax, F2 | pte::P | pte::RW | pte::A | pte::D).unwrap();
            a.mov(qword_ptr(entry as u32), rax).unwrap();
            a.invlpg(byte_ptr(F1 as u32)).unwrap();
        })
    };
    let cpu = run_tiers_prepared(CpuMode::Long64, &code, 1 << 22, &prepare);
    assert_eq!(cpu.gpr[3], remapped_sum());
}

/// Identity page tables at [`TABLES_A`] for the first 2 MiB, global when `global` (with
/// CR4.PGE).
fn identity_tables(mem: &mut PhysMem, cpu: &mut CpuState, global: bool) {
    let flags = pte::P | pte::RW | pte::A;
    let (pdpt, pd, pt) = (TABLES_A + 0x1000, TABLES_A + 0x2000, TABLES_A + 0x3000);
    mem.write_phys(TABLES_A, 8, pdpt | flags);
    mem.write_phys(pdpt, 8, pd | flags);
    mem.write_phys(pd, 8, pt | flags);
    let g = if global { pte::G } else { 0 };
    for i in 0..512u64 {
        mem.write_phys(pt + 8 * i, 8, i << 12 | flags | pte::D | g);
    }
    cpu.cr3 = TABLES_A;
    if global {
        cpu.cr4 |= 1 << 7;
    }
}

#[test]
fn a_cr3_write_keeps_the_predictions_of_global_pages_only() {
    // Two call sites, so that the RET's jump cache (one target) cannot stand in for the
    // predictions: each RET the buffer does not predict calls `jump_lookup`.
    let code = assemble(64, |a| {
        let mut top = a.create_label();
        let mut g = a.create_label();
        let mut end = a.create_label();
        a.mov(ecx, N)?;
        a.xor(ebx, ebx)?;
        a.set_label(&mut top)?;
        a.call(g)?;
        a.add(ebx, 1)?;
        a.call(g)?;
        a.add(ebx, 2)?;
        a.dec(ecx)?;
        a.jnz(top)?;
        a.jmp(end)?;
        a.set_label(&mut g)?;
        a.mov(rdx, cr3)?;
        a.mov(cr3, rdx)?;
        a.ret()?;
        a.set_label(&mut end)?;
        a.nop()
    });
    assert!(code.len() < 0x1000 - (START as usize & 0xfff), "one page");
    for global in [true, false] {
        let prepare =
            move |mem: &mut PhysMem, cpu: &mut CpuState| identity_tables(mem, cpu, global);
        let cpu = run_tiers_prepared(CpuMode::Long64, &code, 1 << 22, &prepare);
        assert_eq!(cpu.gpr[3], 3 * u64::from(N), "global: {global}");
        let (cpu, _) = run_counted(CpuMode::Long64, &code, Tier::Jit, 1 << 22, &prepare);
        let rets = 2 * u64::from(N);
        if global {
            assert!(
                cpu.jump_lookups < 10,
                "{} lookups for {rets} returns to a global page",
                cpu.jump_lookups
            );
        } else {
            assert!(
                cpu.jump_lookups >= rets - 10,
                "{} lookups for {rets} returns to a page the CR3 writes flushed",
                cpu.jump_lookups
            );
        }
    }
}

#[test]
fn a_return_to_another_page_is_not_predicted_from_a_slot_linked_under_another_cr3() {
    // `call G` ends the page before F1's, so its return address is F1, whose page tables A
    // and B map differently while the calling page maps alike. Its return slot is linked
    // under A; after the switch to B the same calling block runs, and its RET must not take
    // A's continuation.
    const CALLER: u64 = F1 - 5;
    let prepare = |mem: &mut PhysMem, cpu: &mut CpuState| {
        let mut a = CodeAssembler::new(64).unwrap();
        a.call(G).unwrap();
        mem.load(CALLER, &a.assemble(CALLER).unwrap()).unwrap();
        // `add ebx, imm32; ret` at F1 under A and B.
        mem.load(F1, &[0x81, 0xc3, 1, 0, 0, 0, 0xc3]).unwrap();
        mem.load(F2, &[0x81, 0xc3, 100, 0, 0, 0, 0xc3]).unwrap();
        mem.load(G, &[0xc3]).unwrap();
        remappable_tables(mem, cpu);
    };
    let code = calls_to(64, N, CALLER, false, |a| {
        switch_to_b_halfway(a, N, |_| Ok(()))
    });
    let cpu = run_tiers_prepared(CpuMode::Long64, &code, 1 << 22, &prepare);
    assert_eq!(cpu.gpr[3], sum_switched_halfway(N));
}
