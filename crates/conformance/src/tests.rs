//! Quick checks of the checker itself.

use super::*;

fn opts(filter: &str, inputs: u32) -> Options {
    Options {
        inputs,
        filter: Some(filter.into()),
        seed: 7,
    }
}

fn form(r: &Report, code: Code) -> &FormResult {
    r.forms
        .iter()
        .find(|f| f.code == code)
        .expect("form in report")
}

#[test]
fn a_few_forms_agree_with_the_host() {
    let r = run(&opts("Add_rm", 40)).unwrap();
    assert!(r.forms_tested() >= 4, "{}", r.table());
    for code in [Code::Add_rm32_r32, Code::Add_rm64_imm8, Code::Add_rm8_r8] {
        let f = form(&r, code);
        assert!(f.skipped.is_none(), "{}", r.table());
        assert_eq!(f.inputs, 40);
        assert_eq!(f.mismatches_interp + f.mismatches_jit, 0, "{}", r.table());
    }
    assert!(r.summary_line().starts_with("conformance host: forms="));
}

#[test]
fn control_flow_lands_where_the_host_does() {
    let r = run(&opts("Jne_rel", 40)).unwrap();
    let f = form(&r, Code::Jne_rel8_64);
    assert!(f.skipped.is_none());
    assert_eq!(f.mismatches_interp + f.mismatches_jit, 0, "{}", r.table());
}

#[test]
fn a_tampered_host_result_is_caught() {
    fn flip(regs: &mut Regs) {
        regs.gpr[0] ^= 1;
    }
    let mut c = Checker::new(Some(flip)).unwrap();
    let r = c.run(&opts("Add_rm32_r32", 10)).unwrap();
    let f = form(&r, Code::Add_rm32_r32);
    assert_eq!(f.mismatches_interp, 10, "{}", r.table());
    assert_eq!(f.mismatches_jit, 10, "{}", r.table());
    assert!(f.first_mismatch.as_deref().unwrap().contains("rax: want"));
    assert_eq!(r.mismatches(), 20);
}

#[test]
fn runtime_forms_are_skipped_with_a_reason() {
    let r = run(&opts("Cpuid", 5)).unwrap();
    let f = form(&r, Code::Cpuid);
    assert!(f.skipped.as_deref().unwrap().contains("runtime"));
    assert_eq!(r.forms_tested(), 0);
}

#[test]
fn ud2_raises_invalid_opcode_in_both_tiers() {
    let r = run(&opts("Ud2", 3)).unwrap();
    let f = form(&r, Code::Ud2);
    assert_eq!(f.inputs, 3);
    assert_eq!(f.mismatches_interp + f.mismatches_jit, 0, "{}", r.table());
}
