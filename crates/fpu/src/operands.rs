//! How translated code tells a helper where an instruction's operands are.
//!
//! The translator packs the operands of one SSE/MMX/x87 instruction into a `u64` at
//! translation time ([`Operands::of`]); the helper unpacks it. Memory and general-register
//! operands travel through [`crate::Fpu::io`]: the translator loads a source operand into
//! `io[IO_DATA0..]` before the call and stores a destination operand from there after it.

use iced_x86::{Instruction, OpKind, Register};

/// Where one operand lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Loc {
    /// XMM register n.
    Xmm(u8),
    /// MMX register n.
    Mm(u8),
    /// x87 register ST(i).
    St(u8),
    /// A memory operand: its bytes are in `io[IO_DATA0..]` (little-endian, low bytes first).
    Mem,
    /// A general register: its value is in `io[IO_DATA0]` (a source) or goes there (a
    /// destination; the translator writes it with the operand size's extension rules).
    Gpr,
    /// No operand in this position.
    None,
}

impl Loc {
    fn encode(self) -> u64 {
        match self {
            Loc::Xmm(n) => u64::from(n & 15),
            Loc::Mm(n) => 0x10 | u64::from(n & 7),
            Loc::St(i) => 0x20 | u64::from(i & 7),
            Loc::Mem => 0x30,
            Loc::Gpr => 0x31,
            Loc::None => 0xff,
        }
    }

    fn decode(b: u8) -> Loc {
        match b {
            0x00..=0x0f => Loc::Xmm(b),
            0x10..=0x17 => Loc::Mm(b & 7),
            0x20..=0x27 => Loc::St(b & 7),
            0x30 => Loc::Mem,
            0x31 => Loc::Gpr,
            _ => Loc::None,
        }
    }
}

/// The packed operands of one instruction: up to three register/memory operands in iced's
/// operand order (immediates left out), the 8-bit immediate, and the x87 opcode (FOP).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Operands(pub u64);

impl Operands {
    /// The operands of `insn`. Implicit operands (XMM0 of BLENDVPS, RAX/RDX of PCMPESTRx)
    /// are not listed: the helper knows them from the instruction's code.
    pub fn of(insn: &Instruction) -> Operands {
        let mut locs = [Loc::None; 3];
        let mut n = 0;
        let mut imm = 0u8;
        for i in 0..insn.op_count() {
            let loc = match insn.op_kind(i) {
                OpKind::Register => reg_loc(insn.op_register(i)),
                OpKind::Memory => Loc::Mem,
                OpKind::Immediate8 => {
                    imm = insn.immediate8();
                    continue;
                }
                OpKind::Immediate8_2nd => continue,
                _ => continue,
            };
            if n < 3 {
                locs[n] = loc;
                n += 1;
            }
        }
        Operands::new(locs, imm, fop(insn))
    }

    /// Packs operands explicitly (tests, and callers that build instructions by hand).
    pub fn new(locs: [Loc; 3], imm: u8, fop: u16) -> Operands {
        Operands(
            locs[0].encode()
                | locs[1].encode() << 8
                | locs[2].encode() << 16
                | u64::from(imm) << 24
                | u64::from(fop & 0x7ff) << 32,
        )
    }

    /// Operand `i` (0..3).
    pub fn loc(self, i: usize) -> Loc {
        Loc::decode((self.0 >> (8 * i)) as u8)
    }

    /// The 8-bit immediate (0 when the instruction has none).
    pub fn imm(self) -> u8 {
        (self.0 >> 24) as u8
    }

    /// The x87 opcode (FOP) of the instruction.
    pub fn fop(self) -> u16 {
        ((self.0 >> 32) & 0x7ff) as u16
    }
}

fn reg_loc(r: Register) -> Loc {
    if r.is_xmm() {
        Loc::Xmm(r.number() as u8)
    } else if r.is_mm() {
        Loc::Mm(r.number() as u8)
    } else if (Register::ST0..=Register::ST7).contains(&r) {
        Loc::St((r as u32 - Register::ST0 as u32) as u8)
    } else if r.is_gpr() {
        Loc::Gpr
    } else {
        Loc::None
    }
}

/// The x87 FOP field: the low three bits of the first opcode byte (D8..DF) and the ModRM
/// byte. iced does not keep the raw bytes: register forms rebuild the ModRM byte from the
/// ST(i) operand; memory forms keep only the ModRM reg field (mod and rm describe the
/// addressing, which FOP's users, exception handlers, do not decode).
fn fop(insn: &Instruction) -> u16 {
    let oc = insn.op_code();
    let c = oc.op_code();
    if oc.op_code_len() == 2 && (0xd8..=0xdf).contains(&(c >> 8)) {
        let st = (0..insn.op_count())
            .filter(|&i| insn.op_kind(i) == OpKind::Register)
            .map(|i| insn.op_register(i))
            .filter(|r| (Register::ST0..=Register::ST7).contains(r))
            .map(|r| r as u32 - Register::ST0 as u32)
            .max()
            .unwrap_or(0);
        (((c >> 8) & 7) << 8 | ((c & 0xff) + st)) as u16
    } else if oc.op_code_len() == 1 && (0xd8..=0xdf).contains(&c) {
        let reg = oc.group_index().max(0) as u32;
        ((c & 7) << 8 | reg << 3) as u16
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operands_round_trip() {
        let o = Operands::new([Loc::Xmm(9), Loc::Mem, Loc::None], 0x5a, 0x1e8);
        assert_eq!(o.loc(0), Loc::Xmm(9));
        assert_eq!(o.loc(1), Loc::Mem);
        assert_eq!(o.loc(2), Loc::None);
        assert_eq!(o.imm(), 0x5a);
        assert_eq!(o.fop(), 0x1e8);
    }

    #[test]
    fn operands_of_decoded_instructions() {
        let d = |b: &[u8]| iced_x86::Decoder::new(64, b, 0).decode();
        // pshufd xmm3, xmm12, 0x1b
        let o = Operands::of(&d(&[0x66, 0x41, 0x0f, 0x70, 0xdc, 0x1b]));
        assert_eq!(
            (o.loc(0), o.loc(1), o.imm()),
            (Loc::Xmm(3), Loc::Xmm(12), 0x1b)
        );
        // movd eax, xmm1
        let o = Operands::of(&d(&[0x66, 0x0f, 0x7e, 0xc8]));
        assert_eq!((o.loc(0), o.loc(1)), (Loc::Gpr, Loc::Xmm(1)));
        // paddb mm1, [rax]
        let o = Operands::of(&d(&[0x0f, 0xfc, 0x08]));
        assert_eq!((o.loc(0), o.loc(1)), (Loc::Mm(1), Loc::Mem));
        // fadd st(0), st(3): D8 C3
        let o = Operands::of(&d(&[0xd8, 0xc3]));
        assert_eq!(
            (o.loc(0), o.loc(1), o.fop()),
            (Loc::St(0), Loc::St(3), 0x0c3)
        );
        // fld1: D9 E8
        assert_eq!(Operands::of(&d(&[0xd9, 0xe8])).fop(), 0x1e8);
        // fstp qword [rax]: DD /3
        assert_eq!(Operands::of(&d(&[0xdd, 0x18])).fop(), 0x518);
    }
}
