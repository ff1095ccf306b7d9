//! The scratch area's layout and the code page around the instruction under test.
//!
//! Offsets from the base address (the same address natively and in guest RAM):
//!
//! | offset | contents |
//! |---|---|
//! | `0x0000` | prologue: save host state, load the input state, `jmp INSN` |
//! | `INSN` | the instruction under test, then the fall-through landing stub |
//! | `TAKEN` | the taken landing stub (branch targets, indirect targets, return address) |
//! | `EXIT32` | 32-bit runs: `jmp far [FAR_OUT]` back to 64-bit mode at `EPI` |
//! | `EPI` | epilogue: store the state, restore the host, `cld`, `ret` |
//! | `FAR_IN`, `FAR_OUT` | 32-bit runs: far pointers into and out of compatibility mode |
//! | `0x1000..0x3000` | scratch data (memory operands point into its middle) |
//! | `0x3000..0x5000` | scratch stack, RSP = `STACK_PTR` |
//! | `0x5000` | control area: input and output state (GPRs, flags, FXSAVE images), saved host RSP and FPU state, landing marker |
//!
//! In the emulated copy of the page the two landing stubs are replaced by `hlt`. In 32-bit
//! runs the landing stubs jump to `EXIT32` instead of `EPI`.

use iced_x86::code_asm::*;
use iced_x86::IcedError;

/// Page size.
pub const PAGE: usize = 0x1000;
/// Bytes mapped.
pub const MAP_LEN: usize = 0x6000;
/// The instruction under test.
pub const INSN: u64 = 0x100;
/// The taken-path landing stub (within rel8 reach of `INSN`).
pub const TAKEN: u64 = 0x180;
/// The epilogue.
pub const EPI: u64 = 0x400;
/// Start of the compared scratch memory (data then stack).
pub const MEM_OFF: u64 = 0x1000;
/// Length of the compared scratch memory.
pub const MEM_LEN: usize = 0x4000;
/// Memory operands' effective addresses fall in `DATA_LO..DATA_HI`.
pub const DATA_LO: u64 = 0x1800;
/// See [`DATA_LO`].
pub const DATA_HI: u64 = 0x2800;
/// The scratch stack pointer.
pub const STACK_PTR: u64 = 0x4000;
/// Control area: input GPRs.
pub const CTRL: u64 = 0x5000;
/// Input RFLAGS.
pub const IN_FLAGS: u64 = CTRL + 0x80;
/// Output GPRs.
pub const OUT_GPR: u64 = CTRL + 0x100;
/// Output RFLAGS.
pub const OUT_FLAGS: u64 = CTRL + 0x180;
/// Saved host RSP.
pub const SAVE_RSP: u64 = CTRL + 0x200;
/// Landing marker byte: 1 fall-through, 2 taken.
pub const MARKER: u64 = CTRL + 0x208;
/// Saved host DS and ES selectors (two words; 32-bit runs only).
pub const SAVE_DS_ES: u64 = CTRL + 0x210;
/// Input FPU/SIMD state: an FXSAVE64 image the prologue loads with FXRSTOR64.
pub const IN_FX: u64 = CTRL + 0x400;
/// Output FPU/SIMD state, saved by the epilogue.
pub const OUT_FX: u64 = CTRL + 0x600;
/// The host's own FPU/SIMD state while the instruction runs.
pub const SAVE_FX: u64 = CTRL + 0x800;

/// `fxsave64 [addr]` (REX.W 0F AE /0) or `fxrstor64 [addr]` (/1), absolute disp32.
fn fx(addr: u64, restore: bool) -> Vec<u8> {
    let mut v = vec![0x48, 0x0f, 0xae, if restore { 0x0c } else { 0x04 }, 0x25];
    v.extend_from_slice(&(addr as u32).to_le_bytes());
    v
}

/// 32-bit runs: the 32-bit code both landing stubs jump to, `jmp far [FAR_OUT]`.
pub const EXIT32: u64 = 0x300;
/// 32-bit runs: far pointer {offset32 = `base + INSN`, selector [`USER32_CS`]}, in the code
/// page (read-only data once the page is RX).
pub const FAR_IN: u64 = 0x3f0;
/// 32-bit runs: far pointer {offset32 = `base + EPI`, selector [`USER_CS`]}.
pub const FAR_OUT: u64 = 0x3f8;
/// Linux x86-64's 32-bit user code segment selector (`__USER32_CS`): compatibility mode.
pub const USER32_CS: u16 = 0x23;
/// Linux x86-64's 64-bit user code segment selector (`__USER_CS`).
pub const USER_CS: u16 = 0x33;

/// Guest RAM of the emulated machines; every candidate base lies below it.
pub const GUEST_RAM: u64 = 0x2000_0000;

/// Where the scratch area may be mapped, in order of preference (all below 2 GiB, so that
/// absolute 32-bit addressing reaches them, and below [`GUEST_RAM`]).
pub const CANDIDATE_BASES: &[u64] = &[
    0x1000_0000,
    0x1010_0000,
    0x1020_0000,
    0x1030_0000,
    0x1040_0000,
    0x1050_0000,
    0x1060_0000,
    0x1070_0000,
    0x0800_0000,
    0x0810_0000,
    0x0820_0000,
    0x0830_0000,
    0x1800_0000,
    0x1810_0000,
    0x1820_0000,
    0x1830_0000,
];

/// The 16 GPRs and RFLAGS.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Regs {
    /// RAX..R15.
    pub gpr: [u64; 16],
    /// RFLAGS.
    pub flags: u64,
}

const GPRS: [AsmRegister64; 16] = [
    rax, rcx, rdx, rbx, rsp, rbp, rsi, rdi, r8, r9, r10, r11, r12, r13, r14, r15,
];

/// `jmp far [addr]` (FF /5, m16:32, absolute disp32 through a SIB byte without base or
/// index): the same bytes in 64-bit and in 32-bit code.
fn jmp_far_abs(addr: u64) -> Vec<u8> {
    let mut v = vec![0xff, 0x2c, 0x25];
    v.extend_from_slice(&(addr as u32).to_le_bytes());
    v
}

/// A far pointer m16:32.
fn far_ptr(offset: u64, sel: u16) -> [u8; 6] {
    let mut p = [0u8; 6];
    p[..4].copy_from_slice(&(offset as u32).to_le_bytes());
    p[4..].copy_from_slice(&sel.to_le_bytes());
    p
}

/// The constant part of the native code page: prologue, taken stub, epilogue; `int3`
/// everywhere else.
///
/// With `bits == 32` the instruction under test runs in compatibility mode: the prologue
/// saves the host DS and ES, loads both with the host SS selector (Linux's flat
/// `__USER_DS`, valid in both modes), loads the input state and far-jumps through
/// [`FAR_IN`] to `INSN` with CS = [`USER32_CS`]; the landing stubs jump to [`EXIT32`],
/// which far-jumps through [`FAR_OUT`] back to the 64-bit epilogue, which restores DS and
/// ES after storing the state. RSP is restored from the control area, so compatibility
/// mode clearing the upper halves of the registers does no harm.
pub fn fixed_page(base: u64, bits: u32) -> Result<Vec<u8>, IcedError> {
    let compat = bits == 32;
    let mut page = vec![0xcc; PAGE];
    let mut a = CodeAssembler::new(64)?;
    for r in [rbx, rbp, r12, r13, r14, r15] {
        a.push(r)?;
    }
    a.mov(qword_ptr(base + SAVE_RSP), rsp)?;
    a.db(&fx(base + SAVE_FX, false))?;
    a.db(&fx(base + IN_FX, true))?;
    if compat {
        // mov eax, ds / mov [SAVE_DS_ES], ax / mov eax, es / mov [SAVE_DS_ES + 2], ax
        a.db(&[0x8c, 0xd8])?;
        a.mov(word_ptr(base + SAVE_DS_ES), ax)?;
        a.db(&[0x8c, 0xc0])?;
        a.mov(word_ptr(base + SAVE_DS_ES + 2), ax)?;
        // mov eax, ss / mov ds, eax / mov es, eax
        a.db(&[0x8c, 0xd0, 0x8e, 0xd8, 0x8e, 0xc0])?;
    }
    a.push(qword_ptr(base + IN_FLAGS))?;
    a.popfq()?;
    for (i, r) in GPRS.iter().enumerate() {
        if i != 4 {
            a.mov(*r, qword_ptr(base + CTRL + 8 * i as u64))?;
        }
    }
    a.mov(rsp, qword_ptr(base + CTRL + 32))?;
    if compat {
        a.db(&jmp_far_abs(base + FAR_IN))?;
    } else {
        a.jmp(base + INSN)?;
    }
    let pro = a.assemble(base)?;
    assert!(pro.len() <= INSN as usize, "prologue too long");
    page[..pro.len()].copy_from_slice(&pro);

    let stub = landing_stub(base, base + TAKEN, 2, bits);
    page[TAKEN as usize..TAKEN as usize + stub.len()].copy_from_slice(&stub);
    if compat {
        let exit = jmp_far_abs(base + FAR_OUT);
        page[EXIT32 as usize..EXIT32 as usize + exit.len()].copy_from_slice(&exit);
        let fin = far_ptr(base + INSN, USER32_CS);
        page[FAR_IN as usize..FAR_IN as usize + 6].copy_from_slice(&fin);
        let fout = far_ptr(base + EPI, USER_CS);
        page[FAR_OUT as usize..FAR_OUT as usize + 6].copy_from_slice(&fout);
    }

    let mut a = CodeAssembler::new(64)?;
    for (i, r) in GPRS.iter().enumerate() {
        a.mov(qword_ptr(base + OUT_GPR + 8 * i as u64), *r)?;
    }
    a.db(&fx(base + OUT_FX, false))?;
    a.db(&fx(base + SAVE_FX, true))?;
    a.mov(rsp, qword_ptr(base + SAVE_RSP))?;
    a.pushfq()?;
    a.pop(qword_ptr(base + OUT_FLAGS))?;
    if compat {
        // movzx eax, word [SAVE_DS_ES] / mov ds, eax / movzx eax, word [+2] / mov es, eax
        a.movzx(eax, word_ptr(base + SAVE_DS_ES))?;
        a.db(&[0x8e, 0xd8])?;
        a.movzx(eax, word_ptr(base + SAVE_DS_ES + 2))?;
        a.db(&[0x8e, 0xc0])?;
    }
    a.cld()?;
    for r in [r15, r14, r13, r12, rbp, rbx] {
        a.pop(r)?;
    }
    a.ret()?;
    let epi = a.assemble(base + EPI)?;
    page[EPI as usize..EPI as usize + epi.len()].copy_from_slice(&epi);
    Ok(page)
}

/// `mov byte [MARKER], marker; jmp EPI` (32-bit code: `jmp EXIT32`) at address `at`;
/// touches neither registers nor flags. Absolute 32-bit addressing through a SIB byte
/// (the same bytes in 64-bit and 32-bit code): every base is below 2 GiB.
fn landing_stub(base: u64, at: u64, marker: u8, bits: u32) -> Vec<u8> {
    let mut v = vec![0xc6, 0x04, 0x25];
    v.extend_from_slice(&((base + MARKER) as u32).to_le_bytes());
    v.push(marker);
    let next = at + v.len() as u64 + 5;
    let to = if bits == 32 { EXIT32 } else { EPI };
    let rel = (base + to).wrapping_sub(next) as i64 as i32;
    v.push(0xe9);
    v.extend_from_slice(&rel.to_le_bytes());
    v
}

/// The native code page: `fixed` with `insn` at `INSN` followed by the fall-through stub.
/// `bits` is the code size `fixed` was built for.
pub fn native_page(base: u64, fixed: &[u8], insn: &[u8], bits: u32) -> Vec<u8> {
    let mut page = fixed.to_vec();
    let at = INSN as usize;
    page[at..at + insn.len()].copy_from_slice(insn);
    let fall = INSN + insn.len() as u64;
    let stub = landing_stub(base, base + fall, 1, bits);
    page[fall as usize..fall as usize + stub.len()].copy_from_slice(&stub);
    page
}

/// The emulated code page: `insn` at `INSN`, `hlt` at the fall-through and taken addresses.
pub fn emulated_page(insn: &[u8]) -> Vec<u8> {
    let mut page = vec![0xf4; PAGE];
    page[INSN as usize..INSN as usize + insn.len()].copy_from_slice(insn);
    page
}
