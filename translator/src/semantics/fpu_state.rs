//! The FPU state-save instructions that move whole images: FXSAVE/FXRSTOR, XSAVE, XSAVEOPT,
//! XSAVEC, XRSTOR, XGETBV/XSETBV, and (in [`super::x87_env`]) FLDENV, FNSTENV, FNSAVE and
//! FRSTOR. They run alone in the runtime (see [`crate::rewrite`]):
//! they are rare (a context switch), touch up to 2696 bytes (576 for x87 and SSE, then PKRU
//! at offset 0xA80 of the standard format), and XSETBV changes what XSAVE manages.
//!
//! Faults stay precise: every page of the image is checked (for writes: probed writable)
//! before the first byte moves.

use crane86_fpu::save::{self, Layout, FXSAVE_SIZE, XSAVE_HEADER, XSAVE_SIZE};
use crane86_runtime::memory::translate;
use crane86_runtime::paging::Access;
use crane86_runtime::state::{CR0_EM, CR0_TS, CR4_OSXSAVE};
use crane86_runtime::{segment, CpuMode, Exception, Fault};
use iced_x86::{Instruction, Mnemonic};

use super::operands::mem_access;
use super::seg_check::Access as SegAccess;
use crate::emit::{Emit, R};
use crate::interp::Interp;

use crate::cpu_model::{PKRU_OFFSET, PKRU_SIZE, XCR0_PKRU, XCR0_SUPPORTED};

/// Where the PKRU component lies in an XSAVE image: at its fixed place in the standard
/// format, right after the header in the compacted one (no component between SSE and PKRU
/// exists on this CPU).
fn pkru_offset(compact: bool) -> usize {
    if compact {
        XSAVE_SIZE
    } else {
        PKRU_OFFSET as usize
    }
}

fn gp0(it: &mut Interp<'_>) -> crate::emit::Stop {
    it.raise(Fault::with_code(Exception::GeneralProtection, 0))
}

fn layout(it: &Interp<'_>, insn: &Instruction) -> Layout {
    let long = it.cpu.mode == CpuMode::Long64;
    Layout {
        wide: long
            && matches!(
                insn.mnemonic(),
                Mnemonic::Fxsave64
                    | Mnemonic::Fxrstor64
                    | Mnemonic::Xsave64
                    | Mnemonic::Xsaveopt64
                    | Mnemonic::Xsavec64
                    | Mnemonic::Xrstor64
            ),
        xmm_regs: if long { 16 } else { 8 },
    }
}

/// The image's linear address, checked for alignment and for access to all of its bytes.
pub(super) fn image_at(
    it: &mut Interp<'_>,
    insn: &Instruction,
    size: usize,
    align: u64,
    write: bool,
) -> R<u64> {
    let kind = if write {
        SegAccess::Write
    } else {
        SegAccess::Read
    };
    let a = mem_access(it, insn, size as u32, kind)?;
    if a & (align - 1) != 0 {
        return Err(gp0(it));
    }
    let user = segment::cpl(it.cpu) == 3;
    let access = if write { Access::Write } else { Access::Read };
    for probe in [a, a.wrapping_add(size as u64 - 1)] {
        if let Err(f) = translate(it.cpu, it.mem, probe, access, user) {
            it.cpu.raise(f, probe);
            return Err(crate::emit::Stop);
        }
    }
    Ok(a)
}

pub(super) fn read_image(it: &mut Interp<'_>, a: u64, out: &mut [u8]) -> R<()> {
    for (i, chunk) in out.chunks_mut(8).enumerate() {
        let v = it.load(a.wrapping_add(8 * i as u64), chunk.len() as u32)?;
        chunk.copy_from_slice(&v.to_le_bytes()[..chunk.len()]);
    }
    Ok(())
}

pub(super) fn write_image(it: &mut Interp<'_>, a: u64, bytes: &[u8]) -> R<()> {
    for (i, chunk) in bytes.chunks(8).enumerate() {
        let mut b = [0u8; 8];
        b[..chunk.len()].copy_from_slice(chunk);
        it.store(
            a.wrapping_add(8 * i as u64),
            chunk.len() as u32,
            u64::from_le_bytes(b),
        )?;
    }
    Ok(())
}

/// #UD without CR4.OSXSAVE, #NM under CR0.TS: the checks of the XSAVE family.
fn xsave_checks(it: &mut Interp<'_>) -> R<()> {
    if it.cpu.cr4 & CR4_OSXSAVE == 0 {
        return Err(it.raise(Fault::new(Exception::InvalidOpcode)));
    }
    if it.cpu.cr0 & CR0_TS != 0 {
        return Err(it.raise(Fault::new(Exception::DeviceNotAvailable)));
    }
    Ok(())
}

/// Executes one state-save instruction.
pub fn execute(it: &mut Interp<'_>, insn: &Instruction) -> R<()> {
    use Mnemonic as M;
    match insn.mnemonic() {
        M::Fxsave | M::Fxsave64 | M::Fxrstor | M::Fxrstor64 => {
            if it.cpu.cr0 & (CR0_EM | CR0_TS) != 0 {
                return Err(it.raise(Fault::new(Exception::DeviceNotAvailable)));
            }
            let l = layout(it, insn);
            let save = matches!(insn.mnemonic(), M::Fxsave | M::Fxsave64);
            let a = image_at(it, insn, FXSAVE_SIZE, 16, save)?;
            let mut img = [0u8; FXSAVE_SIZE];
            read_image(it, a, &mut img)?;
            if save {
                save::fxsave(&it.cpu.fpu, l, &mut img);
                write_image(it, a, &img[..464])
            } else {
                save::fxrstor(&mut it.cpu.fpu, l, &img).map_err(|_| gp0(it))
            }
        }
        M::Xsave | M::Xsave64 | M::Xsaveopt | M::Xsaveopt64 | M::Xsavec | M::Xsavec64 => {
            xsave_checks(it)?;
            let l = layout(it, insn);
            let rfbm = it.cpu.xcr0 & ((it.cpu.gpr[2] << 32) | (it.cpu.gpr[0] & 0xffff_ffff));
            let compact = matches!(insn.mnemonic(), M::Xsavec | M::Xsavec64);
            let pkru_at = pkru_offset(compact);
            let size = if rfbm & XCR0_PKRU != 0 {
                pkru_at + PKRU_SIZE as usize
            } else {
                XSAVE_SIZE
            };
            let a = image_at(it, insn, size, 64, true)?;
            let mut img = [0u8; XSAVE_SIZE];
            read_image(it, a, &mut img)?;
            let mut legacy: [u8; FXSAVE_SIZE] = img[..FXSAVE_SIZE].try_into().expect("512");
            if rfbm & 1 != 0 {
                save::save_x87(&it.cpu.fpu, l, &mut legacy);
            }
            if rfbm & 2 != 0 {
                save::save_mxcsr(&it.cpu.fpu, &mut legacy);
                save::save_xmm(&it.cpu.fpu, l, &mut legacy);
            }
            img[..FXSAVE_SIZE].copy_from_slice(&legacy);
            // Every component always counts as in use (XINUSE = XCR0), which the SDM
            // allows (QEMU does the same): XSAVEOPT then saves like XSAVE.
            let h = XSAVE_HEADER;
            let old_bv = u64::from_le_bytes(img[h..h + 8].try_into().expect("8"));
            let bv = if compact {
                rfbm
            } else {
                (old_bv & !rfbm) | rfbm
            };
            img[h..h + 8].copy_from_slice(&bv.to_le_bytes());
            if compact {
                let xcomp = (1u64 << 63) | rfbm;
                img[h + 8..h + 16].copy_from_slice(&xcomp.to_le_bytes());
            }
            write_image(it, a, &img)?;
            if rfbm & XCR0_PKRU != 0 {
                // PKRU in bytes 3:0, the reserved bytes 7:4 written as zero.
                let v = u64::from(it.cpu.pkru);
                it.store(a.wrapping_add(pkru_at as u64), 8, v)?;
            }
            Ok(())
        }
        M::Xrstor | M::Xrstor64 => {
            xsave_checks(it)?;
            let l = layout(it, insn);
            let a = image_at(it, insn, XSAVE_SIZE, 64, false)?;
            let rfbm = it.cpu.xcr0 & ((it.cpu.gpr[2] << 32) | (it.cpu.gpr[0] & 0xffff_ffff));
            let mut img = [0u8; XSAVE_SIZE];
            read_image(it, a, &mut img)?;
            let h = XSAVE_HEADER;
            let word =
                |i: usize| u64::from_le_bytes(img[h + 8 * i..h + 8 * i + 8].try_into().expect("8"));
            let (bv, xcomp) = (word(0), word(1));
            let compact = xcomp >> 63 != 0;
            // SDM 13.8: a header that sets bits outside XCR0, a compacted form that does not
            // cover XSTATE_BV, or non-zero reserved header bytes is #GP(0).
            let reserved_bad = if compact {
                xcomp & !(1 << 63) & !it.cpu.xcr0 != 0 || bv & !xcomp != 0
            } else {
                xcomp != 0 || (2..8).any(|i| word(i) != 0)
            };
            if bv & !it.cpu.xcr0 != 0 || reserved_bad {
                return Err(gp0(it));
            }
            // PKRU is read before anything changes, so a fault there leaves no trace. In the
            // compacted form it follows the header: no other component lies between.
            let pkru = match (rfbm & XCR0_PKRU != 0, bv & XCR0_PKRU != 0) {
                (false, _) => None,
                (true, false) => Some(0),
                (true, true) => {
                    let at = a.wrapping_add(pkru_offset(compact) as u64);
                    Some(it.load(at, 4)? as u32)
                }
            };
            let legacy: [u8; FXSAVE_SIZE] = img[..FXSAVE_SIZE].try_into().expect("512");
            let mxcsr = if rfbm & 2 != 0 && (!compact || bv & 2 != 0) {
                Some(save::image_mxcsr(&legacy).map_err(|_| gp0(it))?)
            } else {
                None
            };
            let fpu = &mut it.cpu.fpu;
            if rfbm & 1 != 0 {
                if bv & 1 != 0 {
                    save::restore_x87(fpu, l, &legacy);
                } else {
                    save::init_x87(fpu);
                }
            }
            if rfbm & 2 != 0 {
                if bv & 2 != 0 {
                    save::restore_xmm(fpu, l, &legacy);
                } else {
                    save::init_sse(fpu, l);
                }
                match mxcsr {
                    Some(m) => fpu.mxcsr = m,
                    None => fpu.mxcsr = crane86_fpu::MXCSR_DEFAULT,
                }
            }
            if let Some(v) = pkru {
                // Flushes the TLB if the rights change.
                it.cpu.set_pkru(v);
            }
            Ok(())
        }
        M::Xgetbv => {
            if it.cpu.cr4 & CR4_OSXSAVE == 0 {
                return Err(it.raise(Fault::new(Exception::InvalidOpcode)));
            }
            if it.cpu.gpr[1] as u32 != 0 {
                return Err(gp0(it));
            }
            let v = it.cpu.xcr0;
            it.cpu.gpr[0] = v & 0xffff_ffff;
            it.cpu.gpr[2] = v >> 32;
            Ok(())
        }
        M::Xsetbv => {
            if it.cpu.cr4 & CR4_OSXSAVE == 0 {
                return Err(it.raise(Fault::new(Exception::InvalidOpcode)));
            }
            let v = (it.cpu.gpr[2] << 32) | (it.cpu.gpr[0] & 0xffff_ffff);
            if segment::cpl(it.cpu) != 0
                || it.cpu.gpr[1] as u32 != 0
                || v & 1 == 0
                || v & !XCR0_SUPPORTED != 0
            {
                return Err(gp0(it));
            }
            it.cpu.xcr0 = v;
            Ok(())
        }
        _ => super::x87_env::execute(it, insn),
    }
}
