//! Evaluation of the lazy arithmetic flags and of condition codes.
//!
//! This is the single definition of how each flag follows from a recorded operation
//! ([`crane86_runtime::CcKind`]). The interpreter evaluates it on integers; the JIT emits it as
//! IR, specialised on the operation when it is known at translation time (a CMP followed by a
//! JL becomes one signed compare); the runtime's `eflags_of` helper instantiates it for blocks
//! where the operation is only known at run time.

use crane86_runtime::flags as fl;
use crane86_runtime::{CcKind, CcOp};
use iced_x86::ConditionCode;

use super::operands::{mask, sext_size, sign_bit};
use crate::emit::{Arith, Bin, Cmp, Emit, Un};

/// One arithmetic flag.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flag {
    /// Carry.
    Cf,
    /// Parity.
    Pf,
    /// Auxiliary carry.
    Af,
    /// Zero.
    Zf,
    /// Sign.
    Sf,
    /// Overflow.
    Of,
}

impl Flag {
    /// The flag's bit position in EFLAGS.
    pub fn bit(self) -> u32 {
        match self {
            Flag::Cf => 0,
            Flag::Pf => 2,
            Flag::Af => 4,
            Flag::Zf => 6,
            Flag::Sf => 7,
            Flag::Of => 11,
        }
    }
}

fn bit_of<E: Arith>(e: &mut E, v: E::V, bit: u32) -> E::V {
    let sh = e.imm(u64::from(bit));
    let s = e.bin(Bin::Shr, v, sh);
    let one = e.imm(1);
    e.bin(Bin::And, s, one)
}

/// Computes one flag, as 0 or 1.
pub fn flag<E: Emit>(e: &mut E, f: Flag) -> E::V {
    e.guess_cc(|e| flag_now(e, f))
}

fn flag_now<E: Emit>(e: &mut E, f: Flag) -> E::V {
    let Some(op) = e.cc_op() else {
        let all = e.cc_dynamic_eflags();
        return bit_of(e, all, f.bit());
    };
    let (s1, s2, res) = e.cc_values();
    flag_of(e, op, f, s1, s2, res)
}

/// Computes flag `f` of the operation `op` with the given record values.
pub fn flag_of<E: Arith>(e: &mut E, op: CcOp, f: Flag, s1: E::V, s2: E::V, res: E::V) -> E::V {
    let size = u32::from(op.size);
    let bits = size * 8;
    use CcKind::*;
    match (op.kind, f) {
        (Eflags, f) => bit_of(e, res, f.bit()),
        (_, Flag::Zf) => {
            let m = e.imm(mask(size));
            let r = e.bin(Bin::And, res, m);
            let z = e.imm(0);
            e.cmp(Cmp::Eq, r, z)
        }
        (_, Flag::Sf) => sign_bit(e, res, size),
        (_, Flag::Pf) => {
            let ff = e.imm(0xff);
            let low = e.bin(Bin::And, res, ff);
            let n = e.un(Un::Popcnt, low);
            let one = e.imm(1);
            let odd = e.bin(Bin::And, n, one);
            e.bin(Bin::Xor, odd, one)
        }
        (Logic, Flag::Cf | Flag::Of | Flag::Af) | (Mul | Sar, Flag::Af) => e.imm(0),
        (Shl | Shr, Flag::Af) => e.imm(0),
        (Add | Adc | Sub | Sbb, Flag::Af) => {
            let x = e.bin(Bin::Xor, s1, s2);
            let x = e.bin(Bin::Xor, x, res);
            bit_of(e, x, 4)
        }
        (Inc | Dec, Flag::Af) => {
            let x = e.bin(Bin::Xor, s1, res);
            let one = e.imm(1);
            let x = e.bin(Bin::Xor, x, one);
            bit_of(e, x, 4)
        }
        (Add, Flag::Cf) => {
            let m = e.imm(mask(size));
            let r = e.bin(Bin::And, res, m);
            e.cmp(Cmp::Ult, r, s1)
        }
        (Sub, Flag::Cf) => e.cmp(Cmp::Ult, s1, s2),
        (Adc, Flag::Cf) => {
            // carry out of the top bit: majority(s1, s2, carry-in), recovered from the result
            let both = e.bin(Bin::And, s1, s2);
            let either = e.bin(Bin::Or, s1, s2);
            let nres = e.un(Un::Not, res);
            let t = e.bin(Bin::And, either, nres);
            let c = e.bin(Bin::Or, both, t);
            bit_of(e, c, bits - 1)
        }
        (Sbb, Flag::Cf) => {
            let ns1 = e.un(Un::Not, s1);
            let a = e.bin(Bin::And, ns1, s2);
            let b = e.bin(Bin::Or, ns1, s2);
            let b = e.bin(Bin::And, b, res);
            let c = e.bin(Bin::Or, a, b);
            bit_of(e, c, bits - 1)
        }
        (Add | Adc, Flag::Of) => {
            let a = e.bin(Bin::Xor, s1, res);
            let b = e.bin(Bin::Xor, s2, res);
            let c = e.bin(Bin::And, a, b);
            bit_of(e, c, bits - 1)
        }
        (Sub | Sbb, Flag::Of) => {
            let a = e.bin(Bin::Xor, s1, s2);
            let b = e.bin(Bin::Xor, s1, res);
            let c = e.bin(Bin::And, a, b);
            bit_of(e, c, bits - 1)
        }
        (Inc | Dec, Flag::Cf) => s2,
        (Inc, Flag::Of) => {
            let m = e.imm(mask(size));
            let r = e.bin(Bin::And, res, m);
            let min = e.imm(1 << (bits - 1));
            e.cmp(Cmp::Eq, r, min)
        }
        (Dec, Flag::Of) => {
            let m = e.imm(mask(size));
            let r = e.bin(Bin::And, res, m);
            let max = e.imm((1 << (bits - 1)) - 1);
            e.cmp(Cmp::Eq, r, max)
        }
        (Shl, Flag::Cf) => {
            // the last bit shifted out: bit (bits - count) of the source
            let one = e.imm(1);
            let c1 = e.bin(Bin::Sub, s2, one);
            let shifted = e.bin(Bin::Shl, s1, c1);
            bit_of(e, shifted, bits - 1)
        }
        (Shl, Flag::Of) => {
            let cf = flag_of(e, op, Flag::Cf, s1, s2, res);
            let sf = sign_bit(e, res, size);
            e.bin(Bin::Xor, cf, sf)
        }
        (Shr, Flag::Cf) => {
            let one = e.imm(1);
            let c1 = e.bin(Bin::Sub, s2, one);
            let shifted = e.bin(Bin::Shr, s1, c1);
            e.bin(Bin::And, shifted, one)
        }
        (Shr, Flag::Of) => sign_bit(e, s1, size),
        (Sar, Flag::Cf) => {
            let one = e.imm(1);
            let c1 = e.bin(Bin::Sub, s2, one);
            let wide = sext_size(e, s1, size);
            let shifted = e.bin(Bin::Sar, wide, c1);
            e.bin(Bin::And, shifted, one)
        }
        (Sar, Flag::Of) => e.imm(0),
        (Mul, Flag::Cf | Flag::Of) => s2,
    }
}

/// All six arithmetic flags at their EFLAGS positions.
pub fn eflags<E: Emit>(e: &mut E) -> E::V {
    e.guess_cc(eflags_now)
}

fn eflags_now<E: Emit>(e: &mut E) -> E::V {
    let Some(op) = e.cc_op() else {
        return e.cc_dynamic_eflags();
    };
    let (s1, s2, res) = e.cc_values();
    eflags_of(e, op, s1, s2, res)
}

/// All six arithmetic flags of a recorded operation.
pub fn eflags_of<E: Arith>(e: &mut E, op: CcOp, s1: E::V, s2: E::V, res: E::V) -> E::V {
    if op.kind == CcKind::Eflags {
        let m = e.imm(fl::ARITH);
        return e.bin(Bin::And, res, m);
    }
    let mut acc = e.imm(0);
    for f in [Flag::Cf, Flag::Pf, Flag::Af, Flag::Zf, Flag::Sf, Flag::Of] {
        let v = flag_of(e, op, f, s1, s2, res);
        let sh = e.imm(u64::from(f.bit()));
        let v = e.bin(Bin::Shl, v, sh);
        acc = e.bin(Bin::Or, acc, v);
    }
    acc
}

/// Replaces the lazy record with explicit flags (for instructions that change some flags and
/// keep others: rotates, BT, SAHF, POPF, CLC...).
pub fn set_eflags<E: Emit>(e: &mut E, flags: E::V) {
    let z = e.imm(0);
    let m = e.imm(fl::ARITH);
    let f = e.bin(Bin::And, flags, m);
    e.set_cc(CcOp::EFLAGS, z, z, f);
}

/// Updates some arithmetic flags: `new` supplies the bits in `which`, the others are kept.
pub fn update_flags<E: Emit>(e: &mut E, which: u64, new: E::V) {
    let old = eflags(e);
    let keep = e.imm(!which);
    let old = e.bin(Bin::And, old, keep);
    let take = e.imm(which);
    let new = e.bin(Bin::And, new, take);
    let f = e.bin(Bin::Or, old, new);
    set_eflags(e, f);
}

/// Evaluates a condition code, as 0 or 1. Known operations get a direct comparison.
pub fn cond<E: Emit>(e: &mut E, cc: ConditionCode) -> E::V {
    e.guess_cc(|e| cond_now(e, cc))
}

fn cond_now<E: Emit>(e: &mut E, cc: ConditionCode) -> E::V {
    use ConditionCode as C;
    if let Some(op) = e.cc_op() {
        if let Some(v) = fast_cond(e, op, cc) {
            return v;
        }
    }
    let (base, negate) = match cc {
        C::o => (C::o, false),
        C::no => (C::o, true),
        C::b => (C::b, false),
        C::ae => (C::b, true),
        C::e => (C::e, false),
        C::ne => (C::e, true),
        C::be => (C::be, false),
        C::a => (C::be, true),
        C::s => (C::s, false),
        C::ns => (C::s, true),
        C::p => (C::p, false),
        C::np => (C::p, true),
        C::l => (C::l, false),
        C::ge => (C::l, true),
        C::le => (C::le, false),
        C::g => (C::le, true),
        C::None => return e.imm(1),
    };
    let v = match base {
        C::o => flag_now(e, Flag::Of),
        C::b => flag_now(e, Flag::Cf),
        C::e => flag_now(e, Flag::Zf),
        C::be => {
            let c = flag_now(e, Flag::Cf);
            let z = flag_now(e, Flag::Zf);
            e.bin(Bin::Or, c, z)
        }
        C::s => flag_now(e, Flag::Sf),
        C::p => flag_now(e, Flag::Pf),
        C::l => {
            let s = flag_now(e, Flag::Sf);
            let o = flag_now(e, Flag::Of);
            e.bin(Bin::Xor, s, o)
        }
        _ => {
            let s = flag_now(e, Flag::Sf);
            let o = flag_now(e, Flag::Of);
            let l = e.bin(Bin::Xor, s, o);
            let z = flag_now(e, Flag::Zf);
            e.bin(Bin::Or, l, z)
        }
    };
    if negate {
        let one = e.imm(1);
        e.bin(Bin::Xor, v, one)
    } else {
        v
    }
}

/// Direct forms for the common pairs: after SUB/CMP every condition is one comparison of the
/// operands; after a logical operation CF = OF = 0 simplifies the signed ones.
fn fast_cond<E: Emit>(e: &mut E, op: CcOp, cc: ConditionCode) -> Option<E::V> {
    use ConditionCode as C;
    let size = u32::from(op.size);
    match op.kind {
        CcKind::Sub => {
            let (s1, s2, _) = e.cc_values();
            let (cmp, swap, signed) = match cc {
                C::b => (Cmp::Ult, false, false),
                C::ae => (Cmp::Ule, true, false),
                C::e => (Cmp::Eq, false, false),
                C::ne => (Cmp::Ne, false, false),
                C::be => (Cmp::Ule, false, false),
                C::a => (Cmp::Ult, true, false),
                C::l => (Cmp::Slt, false, true),
                C::ge => (Cmp::Sle, true, true),
                C::le => (Cmp::Sle, false, true),
                C::g => (Cmp::Slt, true, true),
                _ => return None,
            };
            let (a, b) = if signed {
                (sext_size(e, s1, size), sext_size(e, s2, size))
            } else {
                (s1, s2)
            };
            let (a, b) = if swap { (b, a) } else { (a, b) };
            Some(e.cmp(cmp, a, b))
        }
        CcKind::Logic => {
            let (_, _, res) = e.cc_values();
            match cc {
                C::e | C::ne | C::be | C::a => {
                    let z = e.imm(0);
                    let r = super::operands::trunc(e, res, size);
                    Some(e.cmp(
                        if matches!(cc, C::e | C::be) {
                            Cmp::Eq
                        } else {
                            Cmp::Ne
                        },
                        r,
                        z,
                    ))
                }
                C::s | C::l => Some(sign_bit(e, res, size)),
                C::ns | C::ge => {
                    let s = sign_bit(e, res, size);
                    let one = e.imm(1);
                    Some(e.bin(Bin::Xor, s, one))
                }
                C::le | C::g => {
                    let r = sext_size(e, res, size);
                    let z = e.imm(0);
                    Some(if cc == C::le {
                        e.cmp(Cmp::Sle, r, z)
                    } else {
                        e.cmp(Cmp::Slt, z, r)
                    })
                }
                C::b | C::o => Some(e.imm(0)),
                C::ae | C::no => Some(e.imm(1)),
                _ => None,
            }
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use crate::testutil::{asm, run64};
    use iced_x86::code_asm::*;

    /// A block that reads flags set by its predecessor, entered after an ADD on odd
    /// iterations and after a SUB, a logical op or an INC on the others: the JIT compiles it
    /// on its first entry with that entry's operation as its guess, and every other entry
    /// takes the general path. Both must agree with the interpreter.
    #[test]
    fn flag_reads_at_block_start_agree_whichever_operation_set_them() {
        let code = asm(64, |a| {
            let mut top = a.create_label();
            let mut odd = a.create_label();
            let mut third = a.create_label();
            let mut join = a.create_label();
            a.mov(ecx, 40).unwrap();
            a.set_label(&mut top).unwrap();
            a.test(ecx, 1).unwrap();
            a.jnz(odd).unwrap();
            a.test(ecx, 2).unwrap();
            a.jnz(third).unwrap();
            a.sub(eax, ebx).unwrap();
            a.jmp(join).unwrap();
            a.set_label(&mut third).unwrap();
            a.inc(rbx).unwrap();
            a.jmp(join).unwrap();
            a.set_label(&mut odd).unwrap();
            a.add(eax, ebx).unwrap();
            a.jmp(join).unwrap();
            a.set_label(&mut join).unwrap();
            // A condition (SETBE), then CF (ADC), both of the predecessor's operation.
            a.setbe(sil).unwrap();
            a.adc(edx, 0).unwrap();
            a.add(edi, esi).unwrap();
            a.xor(eax, 0x9e37_79b9u32 as i32).unwrap();
            a.imul_3(ebx, ebx, 0x6b).unwrap();
            a.dec(ecx).unwrap();
            a.jnz(top).unwrap();
        });
        let o = run64(&code, &[(0, 0x1234_5678), (3, 0xfedc_ba98)]);
        assert_ne!(o.r(2), 0, "ADC saw some carries");
        assert_ne!(o.r(7), 0, "SETBE was true sometimes");
        assert_eq!(o.r(1), 0);
    }
}
