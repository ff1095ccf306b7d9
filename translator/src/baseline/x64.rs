//! The x86-64 encoder of the baseline tier: only the instruction forms its templates use,
//! written straight into a byte buffer.
//!
//! The baseline exists to translate in microseconds, so its encoder is a few table-free
//! functions rather than iced-x86's general encoder (which builds and validates an
//! `Instruction` per host instruction); the tests decode every form this module writes with
//! iced-x86 and compare it with what was meant, for every register.
//!
//! Memory operands are always `[base + disp]` with a 64-bit base register; register
//! operands are encoding numbers (0 = RAX ... 15 = R15).

/// A host register, by its encoding number.
pub type Reg = u8;

/// RAX.
pub const RAX: Reg = 0;
/// RCX.
pub const RCX: Reg = 1;
/// RDX.
pub const RDX: Reg = 2;
/// RBX.
pub const RBX: Reg = 3;
/// RSP.
pub const RSP: Reg = 4;
/// RSI.
pub const RSI: Reg = 6;
/// RDI.
pub const RDI: Reg = 7;
/// R8.
pub const R8: Reg = 8;
/// R12.
pub const R12: Reg = 12;
/// R13.
pub const R13: Reg = 13;
/// R14.
pub const R14: Reg = 14;
/// R15.
pub const R15: Reg = 15;

/// A condition code, by its encoding (the low nibble of `Jcc`/`SETcc`/`CMOVcc`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Cond {
    /// Below (CF).
    B = 2,
    /// Above or equal (not CF).
    Ae = 3,
    /// Equal (ZF).
    E = 4,
    /// Not equal.
    Ne = 5,
    /// Below or equal.
    Be = 6,
    /// Less (SF != OF).
    L = 0xc,
    /// Less or equal.
    Le = 0xe,
}

/// Two-operand integer instructions with the `op r/m64, r64` and `op r/m64, imm32` forms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Alu {
    /// ADD.
    Add,
    /// OR.
    Or,
    /// AND.
    And,
    /// SUB.
    Sub,
    /// XOR.
    Xor,
    /// CMP.
    Cmp,
}

impl Alu {
    /// The `/digit` of the immediate form (group 1), which also gives the register forms'
    /// opcodes (`digit * 8 + 1`, and `+ 3` for `r64, r/m64`).
    fn digit(self) -> u8 {
        match self {
            Alu::Add => 0,
            Alu::Or => 1,
            Alu::And => 4,
            Alu::Sub => 5,
            Alu::Xor => 6,
            Alu::Cmp => 7,
        }
    }
}

/// Shifts and rotates (group 2), by their `/digit`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Shift {
    /// ROL.
    Rol = 0,
    /// ROR.
    Ror = 1,
    /// SHL.
    Shl = 4,
    /// SHR.
    Shr = 5,
    /// SAR.
    Sar = 7,
}

/// Group 3 instructions on one 64-bit register, by their `/digit`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Unary {
    /// NOT.
    Not = 2,
    /// NEG.
    Neg = 3,
    /// MUL: RDX:RAX = RAX * r, unsigned.
    Mul = 4,
    /// IMUL: RDX:RAX = RAX * r, signed.
    Imul = 5,
}

/// A position in the code that jumps may name before it is bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Label(u32);

/// Machine code being written, with labels and the `rel32` fields that refer to them.
#[derive(Default)]
pub struct Asm {
    /// The bytes so far.
    pub buf: Vec<u8>,
    labels: Vec<Option<u32>>,
    fixups: Vec<(u32, Label)>,
}

impl Asm {
    /// An empty buffer.
    pub fn new() -> Asm {
        Asm::default()
    }

    /// An empty buffer with room for `bytes` bytes of code.
    pub fn with_capacity(bytes: usize) -> Asm {
        Asm {
            buf: Vec::with_capacity(bytes),
            labels: Vec::with_capacity(bytes / 16),
            fixups: Vec::with_capacity(bytes / 16),
        }
    }

    /// A new, unbound label.
    pub fn label(&mut self) -> Label {
        self.labels.push(None);
        Label(self.labels.len() as u32 - 1)
    }

    /// Binds `l` to the current position.
    pub fn bind(&mut self, l: Label) {
        self.labels[l.0 as usize] = Some(self.buf.len() as u32);
    }

    /// Resolves every jump and returns the code; `None` if a label was never bound.
    pub fn finish(mut self) -> Option<Vec<u8>> {
        for &(at, l) in &self.fixups {
            let target = self.labels[l.0 as usize]?;
            let rel = i64::from(target) - (i64::from(at) + 4);
            let at = at as usize;
            self.buf[at..at + 4].copy_from_slice(&(rel as i32).to_le_bytes());
        }
        Some(self.buf)
    }

    fn byte(&mut self, b: u8) {
        self.buf.push(b);
    }

    fn bytes(&mut self, b: &[u8]) {
        self.buf.extend_from_slice(b);
    }

    /// A REX prefix when one is needed: `w` for 64-bit operand size, `reg` and `rm` (the
    /// ModRM fields' registers, or the opcode's for `+r` forms), and `force` when a byte
    /// register SPL..DIL is named (without REX those encodings mean AH..BH).
    fn rex(&mut self, w: bool, reg: Reg, rm: Reg, force: bool) {
        let r = 0x40 | u8::from(w) << 3 | (reg >> 3 & 1) << 2 | (rm >> 3 & 1);
        if r != 0x40 || force {
            self.byte(r);
        }
    }

    /// ModRM (and SIB and displacement) for `[base + disp]`.
    fn mem(&mut self, reg: Reg, base: Reg, disp: i32) {
        let short = i8::try_from(disp).is_ok();
        let md = if short { 0x40 } else { 0x80 };
        self.byte(md | (reg & 7) << 3 | (base & 7));
        if base & 7 == 4 {
            // RSP and R12 as a base need a SIB byte (no index).
            self.byte(0x24);
        }
        if short {
            self.byte(disp as u8);
        } else {
            self.bytes(&disp.to_le_bytes());
        }
    }

    /// ModRM for two registers.
    fn regs(&mut self, reg: Reg, rm: Reg) {
        self.byte(0xc0 | (reg & 7) << 3 | (rm & 7));
    }

    /// `op reg, [base + disp]` (or the reverse, by opcode) with operand size `w`.
    fn op_mem(&mut self, w: bool, force: bool, op: &[u8], reg: Reg, base: Reg, disp: i32) {
        self.rex(w, reg, base, force);
        self.bytes(op);
        self.mem(reg, base, disp);
    }

    /// `op` with ModRM naming two registers.
    fn op_regs(&mut self, w: bool, force: bool, op: &[u8], reg: Reg, rm: Reg) {
        self.rex(w, reg, rm, force);
        self.bytes(op);
        self.regs(reg, rm);
    }

    /// Loads `size` bytes (1, 2, 4 or 8) at `[base + disp]` into `dst`, zero-extended.
    pub fn load(&mut self, size: u32, dst: Reg, base: Reg, disp: i32) {
        match size {
            1 => self.op_mem(false, false, &[0x0f, 0xb6], dst, base, disp),
            2 => self.op_mem(false, false, &[0x0f, 0xb7], dst, base, disp),
            4 => self.op_mem(false, false, &[0x8b], dst, base, disp),
            _ => self.op_mem(true, false, &[0x8b], dst, base, disp),
        }
    }

    /// Stores the low `size` bytes of `src` at `[base + disp]`.
    pub fn store(&mut self, size: u32, base: Reg, disp: i32, src: Reg) {
        match size {
            1 => self.op_mem(false, (4..8).contains(&src), &[0x88], src, base, disp),
            2 => {
                self.byte(0x66);
                self.op_mem(false, false, &[0x89], src, base, disp)
            }
            4 => self.op_mem(false, false, &[0x89], src, base, disp),
            _ => self.op_mem(true, false, &[0x89], src, base, disp),
        }
    }

    /// Stores `imm`, sign-extended to `size` bytes (4 or 8), at `[base + disp]`.
    pub fn store_imm(&mut self, size: u32, base: Reg, disp: i32, imm: i32) {
        self.op_mem(size == 8, false, &[0xc7], 0, base, disp);
        self.bytes(&imm.to_le_bytes());
    }

    /// `dst = imm`, in the shortest of the three forms.
    pub fn mov_imm(&mut self, dst: Reg, imm: u64) {
        if let Ok(v) = u32::try_from(imm) {
            // MOV r32, imm32 zero-extends.
            self.rex(false, 0, dst, false);
            self.byte(0xb8 | (dst & 7));
            self.bytes(&v.to_le_bytes());
        } else if let Ok(v) = i32::try_from(imm as i64) {
            self.op_regs(true, false, &[0xc7], 0, dst);
            self.bytes(&v.to_le_bytes());
        } else {
            self.rex(true, 0, dst, false);
            self.byte(0xb8 | (dst & 7));
            self.bytes(&imm.to_le_bytes());
        }
    }

    /// `dst = src` (64 bits).
    pub fn mov(&mut self, dst: Reg, src: Reg) {
        self.op_regs(true, false, &[0x89], src, dst);
    }

    /// `dst = dst op src` (or only the flags, for CMP).
    pub fn alu(&mut self, op: Alu, dst: Reg, src: Reg) {
        self.op_regs(true, false, &[op.digit() * 8 + 1], src, dst);
    }

    /// `dst = dst op imm` with `imm` sign-extended from 32 bits.
    pub fn alu_imm(&mut self, op: Alu, dst: Reg, imm: i32) {
        if let Ok(b) = i8::try_from(imm) {
            self.op_regs(true, false, &[0x83], op.digit(), dst);
            self.byte(b as u8);
        } else {
            self.op_regs(true, false, &[0x81], op.digit(), dst);
            self.bytes(&imm.to_le_bytes());
        }
    }

    /// `dst = dst op [base + disp]` (64 bits).
    pub fn alu_mem(&mut self, op: Alu, dst: Reg, base: Reg, disp: i32) {
        self.op_mem(true, false, &[op.digit() * 8 + 3], dst, base, disp);
    }

    /// `[base + disp] = [base + disp] op imm` on 64 bits, `imm` sign-extended from 8 bits.
    pub fn alu_mem_imm(&mut self, op: Alu, base: Reg, disp: i32, imm: i8) {
        self.op_mem(true, false, &[0x83], op.digit(), base, disp);
        self.byte(imm as u8);
    }

    /// Jumps to the address held at `[base + disp]`.
    pub fn jmp_mem(&mut self, base: Reg, disp: i32) {
        self.op_mem(false, false, &[0xff], 4, base, disp);
    }

    /// Compares the 32-bit word at `[base + disp]` with `imm` (sign-extended from 8 bits).
    pub fn cmp_mem32_imm(&mut self, base: Reg, disp: i32, imm: i8) {
        self.op_mem(false, false, &[0x83], 7, base, disp);
        self.byte(imm as u8);
    }

    /// Tests `r` against itself (ZF when zero).
    pub fn test(&mut self, r: Reg) {
        self.op_regs(true, false, &[0x85], r, r);
    }

    /// Tests the 32-bit word at `[base + disp]` against `imm` (ZF when no bit is common).
    pub fn test_mem32_imm(&mut self, base: Reg, disp: i32, imm: u32) {
        self.op_mem(false, false, &[0xf7], 0, base, disp);
        self.bytes(&imm.to_le_bytes());
    }

    /// `dst = dst * src`, low 64 bits.
    pub fn imul(&mut self, dst: Reg, src: Reg) {
        self.op_regs(true, false, &[0x0f, 0xaf], dst, src);
    }

    /// A group 3 instruction on `r`.
    pub fn unary(&mut self, op: Unary, r: Reg) {
        self.op_regs(true, false, &[0xf7], op as u8, r);
    }

    /// Shifts or rotates `r` by CL.
    pub fn shift_cl(&mut self, op: Shift, r: Reg) {
        self.op_regs(true, false, &[0xd3], op as u8, r);
    }

    /// Shifts or rotates `r` by `imm`.
    pub fn shift_imm(&mut self, op: Shift, r: Reg, imm: u8) {
        self.op_regs(true, false, &[0xc1], op as u8, r);
        self.byte(imm);
    }

    /// Reverses the bytes of `r`.
    pub fn bswap(&mut self, r: Reg) {
        self.rex(true, 0, r, false);
        self.bytes(&[0x0f, 0xc8 | (r & 7)]);
    }

    /// Sets the low byte of `r` to 1 when `c` holds, else 0 (the rest of `r` is kept).
    pub fn setcc(&mut self, c: Cond, r: Reg) {
        self.op_regs(false, (4..8).contains(&r), &[0x0f, 0x90 | c as u8], 0, r);
    }

    /// `dst = src` when `c` holds (64 bits).
    pub fn cmov(&mut self, c: Cond, dst: Reg, src: Reg) {
        self.op_regs(true, false, &[0x0f, 0x40 | c as u8], dst, src);
    }

    /// `dst` = the low `bits` (8, 16 or 32) of `src`, zero-extended.
    pub fn zext(&mut self, bits: u32, dst: Reg, src: Reg) {
        match bits {
            8 => self.op_regs(false, (4..8).contains(&src), &[0x0f, 0xb6], dst, src),
            16 => self.op_regs(false, false, &[0x0f, 0xb7], dst, src),
            _ => self.op_regs(false, false, &[0x89], src, dst),
        }
    }

    /// `dst` = the low `bits` (8, 16 or 32) of `src`, sign-extended.
    pub fn sext(&mut self, bits: u32, dst: Reg, src: Reg) {
        match bits {
            8 => self.op_regs(true, false, &[0x0f, 0xbe], dst, src),
            16 => self.op_regs(true, false, &[0x0f, 0xbf], dst, src),
            _ => self.op_regs(true, false, &[0x63], dst, src),
        }
    }

    /// `dst = base + disp`.
    pub fn lea(&mut self, dst: Reg, base: Reg, disp: i32) {
        self.op_mem(true, false, &[0x8d], dst, base, disp);
    }

    fn rel32(&mut self, l: Label) {
        self.fixups.push((self.buf.len() as u32, l));
        self.bytes(&[0; 4]);
    }

    /// Jumps to `l` when `c` holds.
    pub fn jcc(&mut self, c: Cond, l: Label) {
        self.bytes(&[0x0f, 0x80 | c as u8]);
        self.rel32(l);
    }

    /// Jumps to `l`.
    pub fn jmp(&mut self, l: Label) {
        self.byte(0xe9);
        self.rel32(l);
    }

    /// Calls the function at host address `f` through RAX (which the call clobbers anyway).
    pub fn call(&mut self, f: u64) {
        self.mov_imm(RAX, f);
        self.bytes(&[0xff, 0xd0]);
    }

    /// Pushes `r`.
    pub fn push(&mut self, r: Reg) {
        self.rex(false, 0, r, false);
        self.byte(0x50 | (r & 7));
    }

    /// Pops into `r`.
    pub fn pop(&mut self, r: Reg) {
        self.rex(false, 0, r, false);
        self.byte(0x58 | (r & 7));
    }

    /// Returns.
    pub fn ret(&mut self) {
        self.byte(0xc3);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use iced_x86::{Decoder, DecoderOptions, Formatter, IntelFormatter};

    const NAMES: [&str; 16] = [
        "rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi", "r8", "r9", "r10", "r11", "r12",
        "r13", "r14", "r15",
    ];
    const NAMES32: [&str; 16] = [
        "eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi", "r8d", "r9d", "r10d", "r11d",
        "r12d", "r13d", "r14d", "r15d",
    ];
    const NAMES16: [&str; 16] = [
        "ax", "cx", "dx", "bx", "sp", "bp", "si", "di", "r8w", "r9w", "r10w", "r11w", "r12w",
        "r13w", "r14w", "r15w",
    ];
    const NAMES8: [&str; 16] = [
        "al", "cl", "dl", "bl", "spl", "bpl", "sil", "dil", "r8b", "r9b", "r10b", "r11b", "r12b",
        "r13b", "r14b", "r15b",
    ];

    /// Decodes the one instruction `f` writes and formats it as iced-x86's Intel syntax.
    fn one(f: impl FnOnce(&mut Asm)) -> String {
        let mut a = Asm::new();
        f(&mut a);
        let code = a.finish().unwrap();
        let mut d = Decoder::with_ip(64, &code, 0, DecoderOptions::NONE);
        let insn = d.decode();
        assert_eq!(insn.len(), code.len(), "one instruction: {code:02x?}");
        let mut out = String::new();
        let mut fmt = IntelFormatter::new();
        fmt.options_mut().set_hex_prefix("0x");
        fmt.options_mut().set_hex_suffix("");
        fmt.options_mut().set_uppercase_hex(false);
        fmt.options_mut().set_small_hex_numbers_in_decimal(false);
        fmt.options_mut().set_space_after_operand_separator(true);
        fmt.format(&insn, &mut out);
        out
    }

    fn mem(base: Reg, disp: i32) -> String {
        match disp {
            0 => format!("[{}]", NAMES[base as usize]),
            d if d < 0 => format!("[{}-{:#x}]", NAMES[base as usize], -i64::from(d)),
            d => format!("[{}+{:#x}]", NAMES[base as usize], d),
        }
    }

    #[test]
    fn loads_and_stores_decode_as_meant_for_every_base_and_register() {
        for r in 0..16u8 {
            for base in 0..16u8 {
                for disp in [0, 8, -8, 0x1234, -0x1000] {
                    let m = mem(base, disp);
                    let (n, n32, n16, n8) = (
                        NAMES[r as usize],
                        NAMES32[r as usize],
                        NAMES16[r as usize],
                        NAMES8[r as usize],
                    );
                    assert_eq!(
                        one(|a| a.load(1, r, base, disp)),
                        format!("movzx {n32}, byte ptr {m}")
                    );
                    assert_eq!(
                        one(|a| a.load(2, r, base, disp)),
                        format!("movzx {n32}, word ptr {m}")
                    );
                    assert_eq!(one(|a| a.load(4, r, base, disp)), format!("mov {n32}, {m}"));
                    assert_eq!(one(|a| a.load(8, r, base, disp)), format!("mov {n}, {m}"));
                    assert_eq!(one(|a| a.store(1, base, disp, r)), format!("mov {m}, {n8}"));
                    assert_eq!(
                        one(|a| a.store(2, base, disp, r)),
                        format!("mov {m}, {n16}")
                    );
                    assert_eq!(
                        one(|a| a.store(4, base, disp, r)),
                        format!("mov {m}, {n32}")
                    );
                    assert_eq!(one(|a| a.store(8, base, disp, r)), format!("mov {m}, {n}"));
                    assert_eq!(one(|a| a.lea(r, base, disp)), format!("lea {n}, {m}"));
                    assert_eq!(
                        one(|a| a.alu_mem(Alu::Cmp, r, base, disp)),
                        format!("cmp {n}, {m}")
                    );
                }
            }
        }
        assert_eq!(
            one(|a| a.store_imm(4, RSP, 16, -1)),
            "mov dword ptr [rsp+0x10], 0xffffffff"
        );
        assert_eq!(
            one(|a| a.store_imm(8, RBX, 0x200, -2)),
            "mov qword ptr [rbx+0x200], 0xfffffffffffffffe"
        );
        assert_eq!(
            one(|a| a.alu_mem_imm(Alu::Sub, RCX, 16, 1)),
            "sub qword ptr [rcx+0x10], 0x1"
        );
        assert_eq!(one(|a| a.jmp_mem(R12, 8)), "jmp qword ptr [r12+0x8]");
        assert_eq!(one(|a| a.jmp_mem(RCX, 8)), "jmp qword ptr [rcx+0x8]");
        assert_eq!(
            one(|a| a.cmp_mem32_imm(RBX, 0x300, 0)),
            "cmp dword ptr [rbx+0x300], 0x0"
        );
        assert_eq!(
            one(|a| a.test_mem32_imm(RBX, 0x10, 0x200)),
            "test dword ptr [rbx+0x10], 0x200"
        );
    }

    #[test]
    fn register_forms_decode_as_meant_for_every_pair() {
        for d in 0..16u8 {
            let (dn, dn32) = (NAMES[d as usize], NAMES32[d as usize]);
            for s in 0..16u8 {
                let (sn, sn32, sn16, sn8) = (
                    NAMES[s as usize],
                    NAMES32[s as usize],
                    NAMES16[s as usize],
                    NAMES8[s as usize],
                );
                assert_eq!(one(|a| a.mov(d, s)), format!("mov {dn}, {sn}"));
                for (op, name) in [
                    (Alu::Add, "add"),
                    (Alu::Or, "or"),
                    (Alu::And, "and"),
                    (Alu::Sub, "sub"),
                    (Alu::Xor, "xor"),
                    (Alu::Cmp, "cmp"),
                ] {
                    assert_eq!(one(|a| a.alu(op, d, s)), format!("{name} {dn}, {sn}"));
                }
                assert_eq!(one(|a| a.imul(d, s)), format!("imul {dn}, {sn}"));
                assert_eq!(
                    one(|a| a.cmov(Cond::Ne, d, s)),
                    format!("cmovne {dn}, {sn}")
                );
                assert_eq!(one(|a| a.zext(8, d, s)), format!("movzx {dn32}, {sn8}"));
                assert_eq!(one(|a| a.zext(16, d, s)), format!("movzx {dn32}, {sn16}"));
                assert_eq!(one(|a| a.zext(32, d, s)), format!("mov {dn32}, {sn32}"));
                assert_eq!(one(|a| a.sext(8, d, s)), format!("movsx {dn}, {sn8}"));
                assert_eq!(one(|a| a.sext(16, d, s)), format!("movsx {dn}, {sn16}"));
                assert_eq!(one(|a| a.sext(32, d, s)), format!("movsxd {dn}, {sn32}"));
            }
            assert_eq!(one(|a| a.test(d)), format!("test {dn}, {dn}"));
            assert_eq!(one(|a| a.bswap(d)), format!("bswap {dn}"));
            assert_eq!(
                one(|a| a.setcc(Cond::Be, d)),
                format!("setbe {}", NAMES8[d as usize])
            );
            for (op, name) in [
                (Unary::Not, "not"),
                (Unary::Neg, "neg"),
                (Unary::Mul, "mul"),
                (Unary::Imul, "imul"),
            ] {
                assert_eq!(one(|a| a.unary(op, d)), format!("{name} {dn}"));
            }
            for (op, name) in [
                (Shift::Rol, "rol"),
                (Shift::Ror, "ror"),
                (Shift::Shl, "shl"),
                (Shift::Shr, "shr"),
                (Shift::Sar, "sar"),
            ] {
                assert_eq!(one(|a| a.shift_cl(op, d)), format!("{name} {dn}, cl"));
                assert_eq!(one(|a| a.shift_imm(op, d, 7)), format!("{name} {dn}, 0x7"));
            }
            assert_eq!(
                one(|a| a.alu_imm(Alu::And, d, -4096)),
                format!("and {dn}, 0xfffffffffffff000")
            );
            assert_eq!(one(|a| a.alu_imm(Alu::Add, d, 3)), format!("add {dn}, 0x3"));
            assert_eq!(one(|a| a.mov_imm(d, 5)), format!("mov {dn32}, 0x5"));
            assert_eq!(
                one(|a| a.mov_imm(d, u64::MAX)),
                format!("mov {dn}, 0xffffffffffffffff")
            );
            assert_eq!(
                one(|a| a.mov_imm(d, 0x1234_5678_9abc)),
                format!("mov {dn}, 0x123456789abc")
            );
            assert_eq!(one(|a| a.push(d)), format!("push {dn}"));
            assert_eq!(one(|a| a.pop(d)), format!("pop {dn}"));
        }
        assert_eq!(one(|a| a.ret()), "ret");
    }

    #[test]
    fn jumps_reach_their_labels_either_way() {
        let mut a = Asm::new();
        let back = a.label();
        let fwd = a.label();
        a.bind(back);
        a.jcc(Cond::E, fwd);
        a.jmp(back);
        a.bind(fwd);
        a.ret();
        let code = a.finish().unwrap();
        let mut d = Decoder::with_ip(64, &code, 0x1000, DecoderOptions::NONE);
        let j1 = d.decode();
        let j2 = d.decode();
        let r = d.decode();
        assert_eq!(j1.near_branch64(), r.ip());
        assert_eq!(j2.near_branch64(), 0x1000);
        let mut a = Asm::new();
        let never = a.label();
        a.jmp(never);
        assert!(a.finish().is_none(), "an unbound label is an error");
    }
}
