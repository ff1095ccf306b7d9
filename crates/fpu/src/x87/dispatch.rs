//! Instruction decoding into operation families, and their execution on the register
//! stack (operand fetch, stack faults, result delivery, pops).

use iced_x86::Code;

use super::arith::{binop, rndint, scale, sqrt, Bin, Opnd};
use super::compare::{compare, eflags, fxam, set_fsw};
use super::misc::{prem, xtract};
use super::stack::{C0, C1, C2, C3};
use super::trans::{self, Trans};
use super::transfer::{self as tr, FpFmt};
use super::value::{from_f32, from_f64, from_int, sign, with_sign};
use super::{Io, Outcome};
use crate::operands::{Loc, Operands};
use crate::soft::PE;
use crate::state::{F80, X87};

/// Where a non-register operand comes from (the memory operand's format).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Src {
    /// m32fp.
    F32,
    /// m64fp.
    F64,
    /// m80fp.
    F80,
    /// m16int.
    I16,
    /// m32int.
    I32,
    /// m64int.
    I64,
    /// m80bcd.
    Bcd,
    /// A register, ST(i) from the operands.
    Reg,
}

/// An instruction family with its parameters. `wait` marks the forms that check for a
/// pending exception first (FINIT against FNINIT...); `pop`/`pops` how often the stack is
/// popped after a successful operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// FADD..FDIVRP, FIADD..FIDIVR: operation, source, pop.
    Arith(Bin, Src, bool),
    /// FCOM/FCOMP/FCOMPP/FICOM/FICOMP (`quiet` false) and FUCOM* (`quiet`).
    Com { src: Src, quiet: bool, pops: u8 },
    /// FCOMI/FCOMIP/FUCOMI/FUCOMIP: the result goes to EFLAGS.
    Comi { quiet: bool, pop: bool },
    /// FTST.
    Tst,
    /// FXAM.
    Xam,
    /// FLD/FILD/FBLD.
    Ld(Src),
    /// FLD1, FLDZ, FLDPI...
    Const,
    /// FST/FSTP to memory in format `fmt`.
    St { fmt: Src, pop: bool },
    /// FIST/FISTP/FISTTP (`trunc`) to a `bits`-bit integer.
    Ist { bits: u32, pop: bool, trunc: bool },
    /// FBSTP.
    Bstp,
    /// FST/FSTP ST(i).
    StReg { pop: bool },
    /// FSTPNCE ST(i): FSTP without the empty check.
    StpNoCheck,
    /// FXCH.
    Xch,
    /// FCMOVcc, the condition from the code.
    Cmov(Code),
    /// FCHS.
    Chs,
    /// FABS.
    Abs,
    /// FSQRT.
    Sqrt,
    /// FRNDINT.
    Rndint,
    /// FSCALE.
    Scale,
    /// FXTRACT.
    Xtract,
    /// FPREM (`ieee` false) and FPREM1.
    Prem { ieee: bool },
    /// The transcendentals.
    Trans(Trans),
    /// FINCSTP.
    Incstp,
    /// FDECSTP.
    Decstp,
    /// FFREE/FFREEP.
    Free { pop: bool },
    /// FNOP.
    Nop,
    /// FNINIT/FINIT.
    Init { wait: bool },
    /// FNCLEX/FCLEX.
    Clex { wait: bool },
    /// FLDCW.
    Ldcw,
    /// FNSTCW/FSTCW.
    Stcw { wait: bool },
    /// FNSTSW/FSTSW m16.
    StswMem { wait: bool },
    /// FNSTSW/FSTSW AX.
    StswAx { wait: bool },
    /// WAIT/FWAIT.
    Wait,
    /// FNENI/FNDISI/FNSETPM: 8087/287 controls that the 387 and later execute as no-ops.
    Legacy { wait: bool },
}

/// The family of `code`, None for codes this unit does not execute.
pub(crate) fn kind(code: Code) -> Option<Kind> {
    use Bin::*;
    use Code as C;
    use Src::*;
    let arith = |op, src| Some(Kind::Arith(op, src, false));
    Some(match code {
        C::Fadd_m32fp => return arith(Add, F32),
        C::Fadd_m64fp => return arith(Add, F64),
        C::Fiadd_m16int => return arith(Add, I16),
        C::Fiadd_m32int => return arith(Add, I32),
        C::Fadd_st0_sti | C::Fadd_sti_st0 => return arith(Add, Reg),
        C::Faddp_sti_st0 => Kind::Arith(Add, Reg, true),
        C::Fmul_m32fp => return arith(Mul, F32),
        C::Fmul_m64fp => return arith(Mul, F64),
        C::Fimul_m16int => return arith(Mul, I16),
        C::Fimul_m32int => return arith(Mul, I32),
        C::Fmul_st0_sti | C::Fmul_sti_st0 => return arith(Mul, Reg),
        C::Fmulp_sti_st0 => Kind::Arith(Mul, Reg, true),
        C::Fsub_m32fp => return arith(Sub, F32),
        C::Fsub_m64fp => return arith(Sub, F64),
        C::Fisub_m16int => return arith(Sub, I16),
        C::Fisub_m32int => return arith(Sub, I32),
        C::Fsub_st0_sti | C::Fsub_sti_st0 => return arith(Sub, Reg),
        C::Fsubp_sti_st0 => Kind::Arith(Sub, Reg, true),
        C::Fsubr_m32fp => return arith(SubR, F32),
        C::Fsubr_m64fp => return arith(SubR, F64),
        C::Fisubr_m16int => return arith(SubR, I16),
        C::Fisubr_m32int => return arith(SubR, I32),
        C::Fsubr_st0_sti | C::Fsubr_sti_st0 => return arith(SubR, Reg),
        C::Fsubrp_sti_st0 => Kind::Arith(SubR, Reg, true),
        C::Fdiv_m32fp => return arith(Div, F32),
        C::Fdiv_m64fp => return arith(Div, F64),
        C::Fidiv_m16int => return arith(Div, I16),
        C::Fidiv_m32int => return arith(Div, I32),
        C::Fdiv_st0_sti | C::Fdiv_sti_st0 => return arith(Div, Reg),
        C::Fdivp_sti_st0 => Kind::Arith(Div, Reg, true),
        C::Fdivr_m32fp => return arith(DivR, F32),
        C::Fdivr_m64fp => return arith(DivR, F64),
        C::Fidivr_m16int => return arith(DivR, I16),
        C::Fidivr_m32int => return arith(DivR, I32),
        C::Fdivr_st0_sti | C::Fdivr_sti_st0 => return arith(DivR, Reg),
        C::Fdivrp_sti_st0 => Kind::Arith(DivR, Reg, true),

        C::Fcom_m32fp => com(F32, false, 0),
        C::Fcom_m64fp => com(F64, false, 0),
        C::Ficom_m16int => com(I16, false, 0),
        C::Ficom_m32int => com(I32, false, 0),
        C::Fcom_st0_sti | C::Fcom_st0_sti_DCD0 => com(Reg, false, 0),
        C::Fcomp_m32fp => com(F32, false, 1),
        C::Fcomp_m64fp => com(F64, false, 1),
        C::Ficomp_m16int => com(I16, false, 1),
        C::Ficomp_m32int => com(I32, false, 1),
        C::Fcomp_st0_sti | C::Fcomp_st0_sti_DCD8 | C::Fcomp_st0_sti_DED0 => com(Reg, false, 1),
        C::Fcompp => com(Reg, false, 2),
        C::Fucom_st0_sti => com(Reg, true, 0),
        C::Fucomp_st0_sti => com(Reg, true, 1),
        C::Fucompp => com(Reg, true, 2),
        C::Fcomi_st0_sti => Kind::Comi {
            quiet: false,
            pop: false,
        },
        C::Fcomip_st0_sti => Kind::Comi {
            quiet: false,
            pop: true,
        },
        C::Fucomi_st0_sti => Kind::Comi {
            quiet: true,
            pop: false,
        },
        C::Fucomip_st0_sti => Kind::Comi {
            quiet: true,
            pop: true,
        },
        C::Ftst => Kind::Tst,
        C::Fxam => Kind::Xam,

        C::Fld_m32fp => Kind::Ld(F32),
        C::Fld_m64fp => Kind::Ld(F64),
        C::Fld_m80fp => Kind::Ld(F80),
        C::Fild_m16int => Kind::Ld(I16),
        C::Fild_m32int => Kind::Ld(I32),
        C::Fild_m64int => Kind::Ld(I64),
        C::Fbld_m80bcd => Kind::Ld(Bcd),
        C::Fld_sti => Kind::Ld(Reg),
        C::Fld1 | C::Fldl2t | C::Fldl2e | C::Fldpi | C::Fldlg2 | C::Fldln2 | C::Fldz => Kind::Const,
        C::Fst_m32fp => st(F32, false),
        C::Fst_m64fp => st(F64, false),
        C::Fstp_m32fp => st(F32, true),
        C::Fstp_m64fp => st(F64, true),
        C::Fstp_m80fp => st(F80, true),
        C::Fist_m16int => ist(16, false, false),
        C::Fist_m32int => ist(32, false, false),
        C::Fistp_m16int => ist(16, true, false),
        C::Fistp_m32int => ist(32, true, false),
        C::Fistp_m64int => ist(64, true, false),
        C::Fisttp_m16int => ist(16, true, true),
        C::Fisttp_m32int => ist(32, true, true),
        C::Fisttp_m64int => ist(64, true, true),
        C::Fbstp_m80bcd => Kind::Bstp,
        C::Fst_sti => Kind::StReg { pop: false },
        C::Fstp_sti | C::Fstp_sti_DFD0 | C::Fstp_sti_DFD8 => Kind::StReg { pop: true },
        C::Fstpnce_sti => Kind::StpNoCheck,
        C::Fxch_st0_sti | C::Fxch_st0_sti_DDC8 | C::Fxch_st0_sti_DFC8 => Kind::Xch,
        C::Fcmovb_st0_sti
        | C::Fcmove_st0_sti
        | C::Fcmovbe_st0_sti
        | C::Fcmovu_st0_sti
        | C::Fcmovnb_st0_sti
        | C::Fcmovne_st0_sti
        | C::Fcmovnbe_st0_sti
        | C::Fcmovnu_st0_sti => Kind::Cmov(code),

        C::Fchs => Kind::Chs,
        C::Fabs => Kind::Abs,
        C::Fsqrt => Kind::Sqrt,
        C::Frndint => Kind::Rndint,
        C::Fscale => Kind::Scale,
        C::Fxtract => Kind::Xtract,
        C::Fprem => Kind::Prem { ieee: false },
        C::Fprem1 => Kind::Prem { ieee: true },
        C::Fsin => Kind::Trans(Trans::Sin),
        C::Fcos => Kind::Trans(Trans::Cos),
        C::Fsincos => Kind::Trans(Trans::SinCos),
        C::Fptan => Kind::Trans(Trans::Tan),
        C::Fpatan => Kind::Trans(Trans::Atan),
        C::F2xm1 => Kind::Trans(Trans::Exp2m1),
        C::Fyl2x => Kind::Trans(Trans::Yl2x),
        C::Fyl2xp1 => Kind::Trans(Trans::Yl2xp1),

        C::Fincstp => Kind::Incstp,
        C::Fdecstp => Kind::Decstp,
        C::Ffree_sti => Kind::Free { pop: false },
        C::Ffreep_sti => Kind::Free { pop: true },
        C::Fnop => Kind::Nop,
        C::Fninit => Kind::Init { wait: false },
        C::Finit => Kind::Init { wait: true },
        C::Fnclex => Kind::Clex { wait: false },
        C::Fclex => Kind::Clex { wait: true },
        C::Fldcw_m2byte => Kind::Ldcw,
        C::Fnstcw_m2byte => Kind::Stcw { wait: false },
        C::Fstcw_m2byte => Kind::Stcw { wait: true },
        C::Fnstsw_m2byte => Kind::StswMem { wait: false },
        C::Fstsw_m2byte => Kind::StswMem { wait: true },
        C::Fnstsw_AX => Kind::StswAx { wait: false },
        C::Fstsw_AX => Kind::StswAx { wait: true },
        C::Wait => Kind::Wait,
        C::Fneni | C::Fndisi | C::Fnsetpm => Kind::Legacy { wait: false },
        C::Feni | C::Fdisi | C::Fsetpm => Kind::Legacy { wait: true },
        _ => return None,
    })
}

fn com(src: Src, quiet: bool, pops: u8) -> Kind {
    Kind::Com { src, quiet, pops }
}

fn st(fmt: Src, pop: bool) -> Kind {
    Kind::St { fmt, pop }
}

fn ist(bits: u32, pop: bool, trunc: bool) -> Kind {
    Kind::Ist { bits, pop, trunc }
}

/// ST index of an operand location (ST(0) for anything else).
fn sti(l: Loc) -> usize {
    match l {
        Loc::St(i) => usize::from(i),
        _ => 0,
    }
}

/// The memory source operand in `io`, widened exactly.
fn mem(io: &Io, src: Src) -> Opnd {
    let d = io.data[0];
    let (v, denormal) = match src {
        Src::F32 => from_f32(d as u32),
        Src::F64 => from_f64(d),
        Src::I16 => (from_int(i64::from(d as u16 as i16)), false),
        Src::I32 => (from_int(i64::from(d as u32 as i32)), false),
        Src::I64 => (from_int(d as i64), false),
        Src::Bcd => (tr::from_bcd(d, io.data[1] as u16), false),
        Src::F80 | Src::Reg => (
            F80 {
                signif: d,
                sign_exp: io.data[1] as u16,
            },
            false,
        ),
    };
    Opnd { v, denormal }
}

/// Executes `k` on `x`.
pub(crate) fn run(x: &mut X87, io: &mut Io, k: Kind, code: Code, ops: Operands) -> Outcome {
    match k {
        Kind::Arith(op, src, pop) => {
            let (d, s) = if src == Src::Reg {
                let s = sti(ops.loc(1));
                (sti(ops.loc(0)), x.get(s).map(Opnd::reg))
            } else {
                (0, Some(mem(io, src)))
            };
            match (x.get(d), s) {
                (Some(dv), Some(sv)) => {
                    let r = binop(x, op, Opnd::reg(dv), sv);
                    if x.deliver(r.flags, r.up) {
                        x.set_st(d, r.v);
                        if pop {
                            x.pop();
                        }
                    }
                }
                _ => underflow_to(x, d, pop),
            }
        }
        Kind::Com { src, quiet, pops } => {
            let b = match src {
                Src::Reg if pops == 2 => x.get(1).map(Opnd::reg),
                Src::Reg => x.get(sti(ops.loc(1))).map(Opnd::reg),
                _ => Some(mem(io, src)),
            };
            let r = match (x.get(0), b) {
                (Some(a), Some(b)) => {
                    let (r, f) = compare(Opnd::reg(a), b, quiet);
                    set_fsw(x, r);
                    if !x.deliver(f, false) {
                        return Outcome::Done;
                    }
                    r
                }
                _ => {
                    set_fsw(x, None);
                    if !x.underflow() {
                        return Outcome::Done;
                    }
                    None
                }
            };
            set_fsw(x, r);
            for _ in 0..pops {
                x.pop();
            }
        }
        Kind::Comi { quiet, pop } => {
            let r = match (x.get(0), x.get(sti(ops.loc(1)))) {
                (Some(a), Some(b)) => {
                    let (r, f) = compare(Opnd::reg(a), Opnd::reg(b), quiet);
                    // Unlike FCOM, FCOMI leaves C1 alone.
                    let c1 = x.fsw & C1;
                    let ok = x.deliver(f, false);
                    x.fsw = (x.fsw & !C1) | c1;
                    io.flags = eflags(r);
                    if !ok {
                        return Outcome::Done;
                    }
                    r
                }
                _ => {
                    io.flags = eflags(None);
                    if !x.underflow() {
                        return Outcome::Done;
                    }
                    None
                }
            };
            io.flags = eflags(r);
            if pop {
                x.pop();
            }
        }
        Kind::Tst => match x.get(0) {
            Some(a) => {
                let (r, f) = compare(Opnd::reg(a), Opnd::reg(F80::ZERO), false);
                set_fsw(x, r);
                x.deliver(f, false);
            }
            None => {
                set_fsw(x, None);
                x.underflow();
            }
        },
        Kind::Xam => {
            let v = x.get(0);
            fxam(x, v);
        }
        Kind::Ld(Src::Reg) => match x.get(sti(ops.loc(0))) {
            Some(v) => tr::push_checked(x, v, 0),
            // An empty source is reported (and its masked response pushed) ahead of any
            // stack overflow.
            None => {
                if x.underflow() {
                    x.push(F80::INDEFINITE);
                }
            }
        },
        Kind::Ld(src @ (Src::F32 | Src::F64)) => {
            let o = mem(io, src);
            tr::load_fp(x, o.v, o.denormal);
        }
        Kind::Ld(src) => {
            let o = mem(io, src);
            tr::push_checked(x, o.v, 0);
        }
        Kind::Const => {
            let v = tr::constant(x.env(false), code);
            tr::push_checked(x, v, 0);
        }
        Kind::St { fmt, pop } => return store_fp(x, io, fmt, pop),
        Kind::Ist { bits, pop, trunc } => {
            let indefinite = 1u64 << (bits - 1);
            let mask = u64::MAX >> (64 - bits);
            let Some(v) = x.get(0) else {
                return store_underflow(x, io, [indefinite, 0], pop);
            };
            let (n, r) = tr::to_int(x, v, bits, trunc);
            x.cc(C1, r.up && r.flags & PE != 0);
            x.raise(r.flags);
            if tr::store_blocked(x, r.flags) {
                return Outcome::Done;
            }
            io.data[0] = n.map_or(indefinite, |n| n as u64 & mask);
            if pop {
                x.pop();
            }
            return Outcome::Store;
        }
        Kind::Bstp => {
            let (lo, hi) = tr::BCD_INDEFINITE;
            let Some(v) = x.get(0) else {
                return store_underflow(x, io, [lo, u64::from(hi)], true);
            };
            let (n, r) = tr::to_bcd(x, v);
            x.cc(C1, r.up && r.flags & PE != 0);
            x.raise(r.flags);
            if tr::store_blocked(x, r.flags) {
                return Outcome::Done;
            }
            let (lo, hi) = n.unwrap_or(tr::BCD_INDEFINITE);
            io.data = [lo, u64::from(hi)];
            x.pop();
            return Outcome::Store;
        }
        Kind::StReg { pop } => {
            let d = sti(ops.loc(0));
            match x.get(0) {
                Some(v) => {
                    x.cc(C1, false);
                    x.set_st(d, v);
                    if pop {
                        x.pop();
                    }
                }
                None => underflow_to(x, d, pop),
            }
        }
        Kind::StpNoCheck => {
            // D9 D8+i, "FSTP, no check for empty": with ST(0) empty, AMD processors (whose
            // CPUID crane86 presents) raise nothing and store nothing, and only pop.
            let d = sti(ops.loc(0));
            match x.get(0) {
                Some(v) => {
                    x.cc(C1, false);
                    x.set_st(d, v);
                    x.pop();
                }
                None => {
                    x.cc(C1, false);
                    x.pop();
                }
            }
        }
        Kind::Xch => {
            let j = sti(ops.loc(1));
            let (a, b) = (x.get(0), x.get(j));
            if (a.is_none() || b.is_none()) && !x.underflow() {
                return Outcome::Done;
            }
            x.cc(C1, false);
            let a = a.unwrap_or(F80::INDEFINITE);
            let b = b.unwrap_or(F80::INDEFINITE);
            x.set_st(0, b);
            x.set_st(j, a);
        }
        Kind::Cmov(c) => {
            let f = io.flags;
            let (cf, pf, zf) = (f & 1 != 0, f & 4 != 0, f & 0x40 != 0);
            let cond = match c {
                Code::Fcmovb_st0_sti => cf,
                Code::Fcmove_st0_sti => zf,
                Code::Fcmovbe_st0_sti => cf || zf,
                Code::Fcmovu_st0_sti => pf,
                Code::Fcmovnb_st0_sti => !cf,
                Code::Fcmovne_st0_sti => !zf,
                Code::Fcmovnbe_st0_sti => !cf && !zf,
                _ => !pf,
            };
            match (x.get(0), x.get(sti(ops.loc(1)))) {
                (Some(_), Some(v)) => {
                    if cond {
                        x.set_st(0, v);
                    }
                }
                _ => {
                    if x.underflow() {
                        x.set_st(0, F80::INDEFINITE);
                    }
                }
            }
        }
        Kind::Chs | Kind::Abs => match x.get(0) {
            Some(v) => {
                x.cc(C1, false);
                let neg = if k == Kind::Chs { !sign(v) } else { false };
                x.set_st(0, with_sign(v, neg));
            }
            None => underflow_to(x, 0, false),
        },
        Kind::Sqrt | Kind::Rndint => match x.get(0) {
            Some(v) => {
                let r = if k == Kind::Sqrt {
                    sqrt(x, v)
                } else {
                    rndint(x, v)
                };
                if x.deliver(r.flags, r.up) {
                    x.set_st(0, r.v);
                }
            }
            None => underflow_to(x, 0, false),
        },
        Kind::Scale => match (x.get(0), x.get(1)) {
            (Some(a), Some(b)) => {
                let r = scale(x, a, b);
                if x.deliver(r.flags, r.up) {
                    x.set_st(0, r.v);
                }
            }
            _ => underflow_to(x, 0, false),
        },
        Kind::Xtract => match x.get(0) {
            Some(_) if !x.is_empty(7) => {
                if x.overflow() {
                    x.set_st(0, F80::INDEFINITE);
                    x.push(F80::INDEFINITE);
                }
            }
            Some(v) => {
                let (e, s, f) = xtract(x, v);
                if x.deliver(f, false) {
                    x.set_st(0, e);
                    x.push(s);
                }
            }
            None => {
                if x.underflow() {
                    x.set_st(0, F80::INDEFINITE);
                    x.push(F80::INDEFINITE);
                }
            }
        },
        Kind::Prem { ieee } => match (x.get(0), x.get(1)) {
            (Some(a), Some(b)) => {
                let p = prem(x, a, b, ieee);
                let res = super::arith::wrap_tiny(x, p.res);
                x.cc(C2, !p.complete);
                if x.deliver(res.flags, false) {
                    x.set_st(0, res.v);
                    // An incomplete reduction reports no quotient bits.
                    if let Some(q) = p.quotient {
                        let q = if p.complete { q } else { 0 };
                        x.cc(C0, q & 4 != 0);
                        x.cc(C3, q & 2 != 0);
                        x.cc(C1, q & 1 != 0);
                    }
                }
            }
            _ => {
                underflow_to(x, 0, false);
                x.cc(C2, false);
            }
        },
        Kind::Trans(t) => trans::run(x, t),
        Kind::Incstp => {
            x.cc(C1, false);
            x.rotate(1);
        }
        Kind::Decstp => {
            x.cc(C1, false);
            x.rotate(7);
        }
        Kind::Free { pop } => {
            x.cc(C1, false);
            x.free(sti(ops.loc(0)));
            if pop {
                x.pop();
            }
        }
        Kind::Nop | Kind::Wait | Kind::Legacy { .. } => {}
        Kind::Init { .. } => super::env::finit(x),
        Kind::Clex { .. } => x.fsw &= 0x7f00,
        Kind::Ldcw => {
            x.fcw = super::stack::fcw_value(io.data[0] as u16);
            x.update_es();
        }
        Kind::Stcw { .. } => {
            io.data[0] = u64::from(x.fcw);
            return Outcome::Store;
        }
        Kind::StswMem { .. } => {
            io.data[0] = u64::from(x.fsw);
            return Outcome::Store;
        }
        Kind::StswAx { .. } => io.data[0] = u64::from(x.fsw),
    }
    Outcome::Done
}

/// Stack underflow with a register destination: the masked response writes the QNaN
/// indefinite to ST(d) (then pops if the instruction pops); unmasked, nothing changes.
fn underflow_to(x: &mut X87, d: usize, pop: bool) {
    if x.underflow() {
        x.set_st(d, F80::INDEFINITE);
        if pop {
            x.pop();
        }
    }
}

/// Stack underflow with a memory destination: the masked response stores the format's
/// indefinite.
fn store_underflow(x: &mut X87, io: &mut Io, indefinite: [u64; 2], pop: bool) -> Outcome {
    if !x.underflow() {
        return Outcome::Done;
    }
    io.data = indefinite;
    if pop {
        x.pop();
    }
    Outcome::Store
}

/// FST/FSTP to an m32fp/m64fp/m80fp operand.
fn store_fp(x: &mut X87, io: &mut Io, fmt: Src, pop: bool) -> Outcome {
    let Some(v) = x.get(0) else {
        let ind = match fmt {
            Src::F32 => [0xffc0_0000, 0],
            Src::F64 => [0xfff8_0000_0000_0000, 0],
            _ => [F80::INDEFINITE.signif, u64::from(F80::INDEFINITE.sign_exp)],
        };
        return store_underflow(x, io, ind, pop);
    };
    let ffmt = match fmt {
        Src::F32 => FpFmt::F32,
        Src::F64 => FpFmt::F64,
        _ => {
            x.cc(C1, false);
            io.data = [v.signif, u64::from(v.sign_exp)];
            if pop {
                x.pop();
            }
            return Outcome::Store;
        }
    };
    let (bits, mut r) = tr::to_fp(x, v, ffmt);
    if tr::store_blocked(x, r.flags) {
        // The store is suppressed before the precision exception is detected.
        r.flags &= !PE;
        r.up = false;
    }
    x.cc(C1, r.up && r.flags & PE != 0);
    x.raise(r.flags);
    if tr::store_blocked(x, r.flags) {
        return Outcome::Done;
    }
    io.data[0] = bits;
    if pop {
        x.pop();
    }
    Outcome::Store
}
