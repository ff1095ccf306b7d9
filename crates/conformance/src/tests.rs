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
        assert_eq!(f.mismatches, [0; TIERS.len()], "{}", r.table());
    }
    assert!(r.summary_line().starts_with("conformance host: forms="));
}

#[test]
fn control_flow_lands_where_the_host_does() {
    let r = run(&opts("Jne_rel", 40)).unwrap();
    let f = form(&r, Code::Jne_rel8_64);
    assert!(f.skipped.is_none());
    assert_eq!(f.mismatches, [0; TIERS.len()], "{}", r.table());
}

#[test]
fn a_tampered_host_result_is_caught() {
    fn flip(regs: &mut Regs) {
        regs.gpr[0] ^= 1;
    }
    let mut c = Checker::new(Some(flip)).unwrap();
    let r = c.run(&opts("Add_rm32_r32", 10)).unwrap();
    let f = form(&r, Code::Add_rm32_r32);
    assert_eq!(f.mismatches, [10; TIERS.len()], "{}", r.table());
    assert!(f.first_mismatch.as_deref().unwrap().contains("rax: want"));
    // The filter also matches XADD; every tampered input of every matched form counts.
    assert_eq!(r.mismatches(), 30 * r.forms_tested() as u64);
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
    assert_eq!(f.mismatches, [0; TIERS.len()], "{}", r.table());
}

#[test]
fn a_tampered_flag_is_caught() {
    fn flip_cf(regs: &mut Regs) {
        regs.flags ^= fl::CF;
    }
    let mut c = Checker::new(Some(flip_cf)).unwrap();
    let r = c.run(&opts("Sub_rm64_r64", 5)).unwrap();
    let f = form(&r, Code::Sub_rm64_r64);
    assert_eq!(f.mismatches, [5; TIERS.len()], "{}", r.table());
    assert!(f.first_mismatch.as_deref().unwrap().contains("differ CF"));
}

#[test]
fn divisions_are_generated_without_host_faults() {
    let mut rng = Rng::new(3);
    let base = 0x1000_0000;
    for code in [
        Code::Div_rm64,
        Code::Div_rm8,
        Code::Idiv_rm32,
        Code::Idiv_rm16,
    ] {
        let spec = gen::spec(code).unwrap();
        for _ in 0..200 {
            let c = gen::instance(&spec, &mut rng, base, false).unwrap();
            let insn = &c.insn;
            let size = match insn.op0_kind() {
                iced_x86::OpKind::Register => insn.op0_register().size() as u32,
                _ => insn.memory_size().size() as u32,
            };
            let d = match insn.op0_kind() {
                iced_x86::OpKind::Register => gen::reg_read(&c.input.gpr, insn.op0_register()),
                _ => {
                    let off = (insn.memory_displacement64().wrapping_add(
                        if insn.memory_base() == iced_x86::Register::RIP
                            || insn.memory_base() == iced_x86::Register::None
                        {
                            0
                        } else {
                            c.input.gpr[insn.memory_base().number()]
                        },
                    ) + if insn.memory_index() == iced_x86::Register::None {
                        0
                    } else {
                        c.input.gpr[insn.memory_index().number()]
                            * u64::from(insn.memory_index_scale())
                    } - base
                        - layout::MEM_OFF) as usize;
                    let mut b = [0u8; 8];
                    b[..size as usize].copy_from_slice(&c.mem[off..off + size as usize]);
                    u64::from_le_bytes(b)
                }
            };
            assert_ne!(d, 0, "{code:?}");
            if insn.mnemonic() == iced_x86::Mnemonic::Div {
                let hi = match size {
                    1 => (c.input.gpr[0] >> 8) & 0xff,
                    8 => c.input.gpr[2],
                    _ => c.input.gpr[2] & ((1u64 << (size * 8)) - 1),
                };
                assert!(hi < d, "{code:?}: high {hi:#x} divisor {d:#x}");
            }
        }
    }
}

#[test]
fn shift_counts_decide_which_flags_are_undefined() {
    let base = 0x1000_0000;
    let mut rng = Rng::new(5);
    let spec = gen::spec(Code::Shl_rm32_CL).unwrap();
    let mut seen = [false; 3];
    for _ in 0..300 {
        let c = gen::instance(&spec, &mut rng, base, false).unwrap();
        let count = c.input.gpr[1] & 0x1f;
        match count {
            0 => {
                assert_eq!(c.undefined, 0);
                seen[0] = true;
            }
            1 => {
                assert_eq!(c.undefined & fl::OF, 0);
                seen[1] = true;
            }
            _ => {
                assert_ne!(c.undefined & fl::OF, 0);
                seen[2] = true;
            }
        }
    }
    assert_eq!(seen, [true; 3]);
}

/// Asserts that every form in `codes` ran at least `inputs` inputs with no mismatch, or,
/// on a host without compatibility mode, was skipped saying so.
fn assert_compat_forms_agree(r: &Report, codes: &[Code], inputs: u32) {
    for &code in codes {
        let f = form(r, code);
        if !native::compat_mode_available() {
            assert!(f.skipped.as_deref().unwrap().contains("compatibility"));
            continue;
        }
        assert!(f.skipped.is_none(), "{}", r.table());
        assert!(f.inputs >= inputs, "{}", r.table());
        assert_eq!(f.mismatches, [0; TIERS.len()], "{}", r.table());
    }
}

#[test]
fn forms_invalid_in_64_bit_mode_run_in_compatibility_mode() {
    let mut c = Checker::new(None).unwrap();
    let mut all = Report::default();
    for filter in [
        "Daa",
        "Pushad",
        "Inc_r32",
        "Aam_imm8",
        "Aad_imm8",
        "Jne_rel8_32",
    ] {
        all.forms.extend(c.run(&opts(filter, 40)).unwrap().forms);
    }
    assert_compat_forms_agree(
        &all,
        &[
            Code::Daa,
            Code::Pushad,
            Code::Inc_r32,
            Code::Aam_imm8,
            Code::Aad_imm8,
            Code::Jne_rel8_32,
        ],
        40,
    );
}

#[test]
fn loops_with_a_cx_counter_and_far_stack_forms_agree_in_32_bit_mode() {
    let mut c = Checker::new(None).unwrap();
    let mut all = Report::default();
    for filter in [
        "Loop_rel8_32",
        "Popad",
        "Enterd",
        "Retnd",
        "Call_rm32",
        "Pop_rm32",
    ] {
        all.forms.extend(c.run(&opts(filter, 30)).unwrap().forms);
    }
    assert_compat_forms_agree(
        &all,
        &[
            Code::Loop_rel8_32_CX,
            Code::Loop_rel8_32_ECX,
            Code::Popad,
            Code::Enterd_imm16_imm8,
            Code::Retnd_imm16,
            Code::Call_rm32,
            Code::Pop_rm32,
        ],
        30,
    );
}

#[test]
fn a_tampered_32_bit_result_is_caught_in_the_low_half_only() {
    if !native::compat_mode_available() {
        return;
    }
    fn flip_low(regs: &mut Regs) {
        regs.gpr[0] ^= 1;
    }
    fn flip_high(regs: &mut Regs) {
        // Compatibility mode leaves the upper halves undefined: never compared.
        regs.gpr[0] ^= 1 << 40;
        regs.gpr[9] ^= 1;
    }
    let r = Checker::new(Some(flip_low))
        .unwrap()
        .run(&opts("Daa", 10))
        .unwrap();
    let f = form(&r, Code::Daa);
    assert_eq!(f.mismatches, [10; TIERS.len()], "{}", r.table());
    assert!(f.first_mismatch.as_deref().unwrap().contains("32-bit"));
    let r = Checker::new(Some(flip_high))
        .unwrap()
        .run(&opts("Daa", 10))
        .unwrap();
    assert_eq!(r.mismatches(), 0, "{}", r.table());
}

#[test]
fn aam_by_zero_raises_divide_error_in_both_tiers() {
    let r = run(&opts("Aam_imm8", 5)).unwrap();
    let f = form(&r, Code::Aam_imm8);
    if f.skipped.is_none() {
        // Five host-checked inputs and one AAM 0 (#DE) checked in the emulator only.
        assert_eq!(f.inputs, 6);
        assert_eq!(f.mismatches, [0; TIERS.len()], "{}", r.table());
    }
}

#[test]
fn the_32_bit_generator_uses_legacy_registers_and_32_bit_addresses() {
    let base = 0x1000_0000;
    let mut rng = Rng::new(11);
    for code in [
        Code::Add_rm8_imm8_82,
        Code::Push_rm32,
        Code::Dec_r16,
        Code::Inc_r32,
    ] {
        let spec = gen::spec(code).unwrap();
        assert_eq!(spec.bits, 32);
        for _ in 0..200 {
            let c = gen::instance(&spec, &mut rng, base, false).unwrap();
            assert_eq!(c.bits, 32);
            assert_eq!(c.insn.code(), code);
            assert!(c.input.gpr[8..].iter().all(|&g| g == 0), "{code:?}");
            assert!(c.input.gpr[..8].iter().all(|&g| g >> 32 == 0), "{code:?}");
            for i in 0..c.insn.op_count() {
                match c.insn.op_kind(i) {
                    iced_x86::OpKind::Register => {
                        assert!(c.insn.op_register(i).full_register().number() < 8)
                    }
                    iced_x86::OpKind::Memory => {
                        for r in [c.insn.memory_base(), c.insn.memory_index()] {
                            assert!(r == iced_x86::Register::None || r.is_gpr32(), "{r:?}");
                        }
                    }
                    _ => {}
                }
            }
        }
    }
}
