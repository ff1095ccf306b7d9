//! Native execution on the host CPU: the only module with `unsafe`.
//!
//! A [`Native`] owns one anonymous mapping of [`layout::MAP_LEN`] bytes at a fixed address
//! low in the address space (the emulated run uses the same guest addresses). Page 0 holds
//! code and is RX whenever code runs; the rest (scratch data, scratch stack, control area) is
//! RW. The mapping is never writable and executable at once.
//!
//! Invariants the callers uphold (and [`Native::run`] relies on):
//! - the code page passed to [`Native::run`] was built by [`crate::layout`]: a prologue at
//!   offset 0 that saves the callee-saved registers and the host RSP into the control area,
//!   loads the input state and jumps to the instruction under test, whose every exit path
//!   (fall-through and taken) lands on a stub that jumps to the epilogue, which stores the
//!   state, restores the host registers, clears DF and returns;
//! - the prologue saves the host's FPU/SIMD state to `SAVE_FX` and loads the case's from
//!   `IN_FX`; the epilogue saves the result to `OUT_FX` and restores the host's, so Rust code
//!   never runs with the guest's rounding or masks. Input images keep every FPU and SIMD
//!   exception masked (see `fpstate`);
//! - the instruction under test cannot fault on the host: its memory operands point into the
//!   scratch data and stack areas with room to spare, branch targets are the landing stubs,
//!   divisors are non-zero and quotients fit (see `gen`), privileged and non-deterministic
//!   forms are never run natively;
//! - for 32-bit forms, the page was built with `bits == 32`: the prologue saves DS and ES,
//!   loads them with the (flat, Linux `__USER_DS`) SS selector and far-jumps to the
//!   instruction in compatibility mode (CS = `__USER32_CS`, only on a host where
//!   [`compat_mode_available`] said so); the landing stubs far-jump back to the 64-bit
//!   epilogue (CS = `__USER_CS`), which restores RSP from the control area (compatibility
//!   mode leaves the upper register halves undefined), DS and ES. The 32-bit code, its
//!   stack, data and far pointers all lie in the mapping, below 2 GiB;
//! - asynchronous signals are blocked on this thread while the code runs, because the guest
//!   RSP (the scratch stack, or anything the instruction wrote to RSP) is live then.

use std::io;

use crate::layout::{self, Regs};

/// The fixed-address scratch mapping.
pub(crate) struct Native {
    base: *mut u8,
}

/// What the native run produced.
pub(crate) struct NativeOut {
    /// Final registers and RFLAGS (from PUSHFQ).
    pub regs: Regs,
    /// 1: left through the fall-through stub, 2: through the taken stub.
    pub marker: u8,
    /// The scratch data and stack areas after the run.
    pub mem: Vec<u8>,
    /// The FPU/SIMD state after the run (FXSAVE64 image).
    pub fx: Box<crate::fpstate::Image>,
}

/// True when this thread runs in 64-bit mode with CS = `__USER_CS` and the GDT holds a
/// present, DPL-3, 32-bit code segment at `__USER32_CS` (Linux's compatibility-mode
/// selector; absent e.g. when the kernel runs with `ia32_emulation=false`).
pub(crate) fn compat_mode_available() -> bool {
    let cs: u16;
    let ar: u32;
    let ok: u8;
    // SAFETY: reading CS and LAR on a selector are unprivileged, side-effect free
    // instructions; LAR only writes its destination and ZF (declared clobbered by default).
    unsafe {
        std::arch::asm!("mov {0:x}, cs", out(reg) cs, options(nomem, nostack, preserves_flags));
        std::arch::asm!(
            "lar {ar:e}, {sel:e}",
            "setz {ok}",
            ar = out(reg) ar,
            sel = in(reg) u32::from(layout::USER32_CS),
            ok = out(reg_byte) ok,
            options(nomem, nostack),
        );
    }
    // Access rights: P (bit 15), DPL 3 (bits 13-14), code segment (bits 11-12 = 0b11),
    // D = 1 (bit 22), L = 0 (bit 21).
    let want = (1 << 15) | (3 << 13) | (3 << 11) | (1 << 22);
    let mask = want | (1 << 21);
    cs == layout::USER_CS && ok == 1 && ar & mask == want
}

impl Native {
    /// Maps the scratch area at the first free candidate address.
    pub fn new() -> io::Result<Native> {
        let mut last = io::Error::other("no candidate address");
        for &addr in layout::CANDIDATE_BASES {
            // SAFETY: an anonymous private mapping with MAP_FIXED_NOREPLACE never replaces an
            // existing mapping; on success we own [addr, addr + MAP_LEN).
            let p = unsafe {
                libc::mmap(
                    addr as *mut libc::c_void,
                    layout::MAP_LEN,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE,
                    -1,
                    0,
                )
            };
            if p == libc::MAP_FAILED {
                last = io::Error::last_os_error();
                continue;
            }
            if p as u64 != addr {
                // An old kernel ignored the NOREPLACE flag and gave another address.
                // SAFETY: `p` is the mapping just created, of MAP_LEN bytes.
                unsafe { libc::munmap(p, layout::MAP_LEN) };
                continue;
            }
            return Ok(Native { base: p.cast() });
        }
        Err(last)
    }

    /// The guest/host address of the mapping.
    pub fn base(&self) -> u64 {
        self.base as u64
    }

    fn protect_code(&self, prot: libc::c_int) -> io::Result<()> {
        // SAFETY: page 0 of our own mapping; changing its protection affects nothing else.
        let r = unsafe { libc::mprotect(self.base.cast(), layout::PAGE, prot) };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Runs `code` (a full code page from [`crate::layout`]) with scratch memory `mem` and
    /// input state `input`.
    pub fn run(
        &mut self,
        code: &[u8],
        mem: &[u8],
        input: &Regs,
        fx: &crate::fpstate::Image,
    ) -> io::Result<NativeOut> {
        assert_eq!(code.len(), layout::PAGE);
        assert_eq!(mem.len(), layout::MEM_LEN);
        self.protect_code(libc::PROT_READ | libc::PROT_WRITE)?;
        // SAFETY: page 0 is ours and RW now; `code` is exactly one page.
        unsafe { std::ptr::copy_nonoverlapping(code.as_ptr(), self.base, layout::PAGE) };
        self.protect_code(libc::PROT_READ | libc::PROT_EXEC)?;
        let mut ctrl = [0u64; 17];
        ctrl[..16].copy_from_slice(&input.gpr);
        ctrl[16] = input.flags;
        // SAFETY: the scratch and control areas lie inside our RW mapping (layout offsets are
        // below MAP_LEN and the control area starts at CTRL, 8-aligned).
        unsafe {
            std::ptr::copy_nonoverlapping(
                mem.as_ptr(),
                self.base.add(layout::MEM_OFF as usize),
                layout::MEM_LEN,
            );
            let c = self.base.add(layout::CTRL as usize).cast::<u64>();
            std::ptr::copy_nonoverlapping(ctrl.as_ptr(), c, 16);
            c.add((layout::IN_FLAGS - layout::CTRL) as usize / 8)
                .write(ctrl[16]);
            self.base.add(layout::MARKER as usize).write(0);
            std::ptr::copy_nonoverlapping(
                fx.as_ptr(),
                self.base.add(layout::IN_FX as usize),
                fx.len(),
            );
        }
        // SAFETY: sigset_t is plain data (a bit array), for which all zeroes is a valid value.
        let mut all: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: as for `all`.
        let mut old: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: both pointers are to live local sigsets: sigfillset writes `all`,
        // pthread_sigmask reads it and writes `old`. Blocking every signal for the duration
        // of the native call keeps the kernel from delivering one onto the scratch stack the
        // prologue switches to; the old mask is restored right after the call (below).
        unsafe {
            libc::sigfillset(&mut all);
            libc::pthread_sigmask(libc::SIG_BLOCK, &all, &mut old);
        }
        // SAFETY: page 0 is RX and holds the prologue at offset 0 (module invariants); it
        // follows the C ABI: callee-saved registers and RSP are restored, DF is clear on
        // return, and it touches no memory outside our mapping.
        unsafe {
            let f: extern "C" fn() = std::mem::transmute::<*mut u8, extern "C" fn()>(self.base);
            f();
            libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
        }
        let mut out = NativeOut {
            regs: Regs::default(),
            marker: 0,
            mem: vec![0; layout::MEM_LEN],
            fx: Box::new([0; crane86_fpu::save::FXSAVE_SIZE]),
        };
        // SAFETY: as above, reading back our own RW areas.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.base.add(layout::MEM_OFF as usize),
                out.mem.as_mut_ptr(),
                layout::MEM_LEN,
            );
            let o = self.base.add(layout::OUT_GPR as usize).cast::<u64>();
            std::ptr::copy_nonoverlapping(o, out.regs.gpr.as_mut_ptr(), 16);
            out.regs.flags = self
                .base
                .add(layout::OUT_FLAGS as usize)
                .cast::<u64>()
                .read();
            out.marker = self.base.add(layout::MARKER as usize).read();
            std::ptr::copy_nonoverlapping(
                self.base.add(layout::OUT_FX as usize),
                out.fx.as_mut_ptr(),
                out.fx.len(),
            );
        }
        Ok(out)
    }
}

impl Drop for Native {
    fn drop(&mut self) {
        // SAFETY: the mapping was created by `new` with this length and nothing refers to it
        // once the owner is dropped.
        unsafe { libc::munmap(self.base.cast(), layout::MAP_LEN) };
    }
}
