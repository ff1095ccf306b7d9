//! Real encodings through the translator's path: iced decodes the bytes, `Operands::of`
//! packs the operands, and the result must be what the SDM defines. This pins the operand
//! order of the forms whose register operand is the ModRM r/m field (stores, MOVQ 66 0F D6,
//! shifts by immediate, PEXTRW).

use iced_x86::Decoder;

use super::{junk_state, Rng};
use crate::operands::Operands;
use crate::simd::execute_simd;
use crate::state::{Fpu, IO_DATA0};

/// Decodes `bytes` (64-bit mode) and executes the instruction on `f`.
fn run(f: &mut Fpu, bytes: &[u8]) {
    let insn = Decoder::new(64, bytes, 0).decode();
    assert_eq!(insn.len(), bytes.len(), "{bytes:02x?}");
    let r = execute_simd(f, insn.code(), Operands::of(&insn));
    assert_eq!(r, Ok(()), "{insn}");
}

#[test]
fn decoded_instructions() {
    let mut rng = Rng::new(30);
    for _ in 0..50 {
        let f0 = junk_state(&mut rng);
        let (x0, x1, x9) = (f0.xmm128(0), f0.xmm128(1), f0.xmm128(9));
        let mm1 = f0.mm(1);

        // movq xmm1, xmm0 (66 0F D6 /r, register destination in r/m): upper half cleared.
        let mut f = f0;
        run(&mut f, &[0x66, 0x0f, 0xd6, 0xc1]);
        assert_eq!(f.xmm128(1), u128::from(x0 as u64));

        // movups xmm1, xmm0 (0F 11 /r, the store opcode with a register destination).
        let mut f = f0;
        run(&mut f, &[0x0f, 0x11, 0xc1]);
        assert_eq!(f.xmm128(1), x0);

        // movss xmm1, xmm0 (F3 0F 11 /r): only the low doubleword moves.
        let mut f = f0;
        run(&mut f, &[0xf3, 0x0f, 0x11, 0xc1]);
        assert_eq!(f.xmm128(1), x1 & !0xffff_ffff | x0 & 0xffff_ffff);

        // movd eax, xmm1 (66 0F 7E /r).
        let mut f = f0;
        run(&mut f, &[0x66, 0x0f, 0x7e, 0xc8]);
        assert_eq!(f.io[IO_DATA0], x1 as u32 as u64);

        // movq rax, xmm9 (66 REX.W+R 0F 7E /r).
        let mut f = f0;
        run(&mut f, &[0x66, 0x4c, 0x0f, 0x7e, 0xc8]);
        assert_eq!(f.io[IO_DATA0], x9 as u64);

        // psrlw mm1, 5 (0F 71 /2 ib).
        let mut f = f0;
        run(&mut f, &[0x0f, 0x71, 0xd1, 0x05]);
        let want = (0..4).fold(0, |r, i| r | ((mm1 >> (16 * i) & 0xffff) >> 5) << (16 * i));
        assert_eq!(f.mm(1), want);

        // psrldq xmm9, 3 (66 REX.B 0F 73 /3 ib).
        let mut f = f0;
        run(&mut f, &[0x66, 0x41, 0x0f, 0x73, 0xd9, 0x03]);
        assert_eq!(f.xmm128(9), x9 >> 24);

        // pextrw eax, mm1, 2 (0F C5 /r ib).
        let mut f = f0;
        run(&mut f, &[0x0f, 0xc5, 0xc1, 0x02]);
        assert_eq!(f.io[IO_DATA0], mm1 >> 32 & 0xffff);

        // movhps [rax], xmm9 (REX.R 0F 17 /r): the high quadword is stored.
        let mut f = f0;
        run(&mut f, &[0x44, 0x0f, 0x17, 0x08]);
        assert_eq!(f.io[IO_DATA0], (x9 >> 64) as u64);

        // palignr xmm1, [rax], 4 (66 0F 3A 0F /r ib) with the memory operand in io.
        let mut f = f0;
        let m = rng.u128();
        f.set_io128(m);
        run(&mut f, &[0x66, 0x0f, 0x3a, 0x0f, 0x08, 0x04]);
        assert_eq!(f.xmm128(1), m >> 32 | x1 << 96);
    }
}
