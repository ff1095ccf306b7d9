//! REP STOS and REP MOVS in bulk.
//!
//! Without this, each iteration of a REP string instruction is one run of its block: the
//! Debian kernel's `clear_page` (REP STOSQ of 512 quadwords) and `copy_page` (REP MOVSQ)
//! cost 512 block runs, each with its own TLB check, and so do the REP STOSB/MOVSB of
//! glibc's `memset`/`memcpy`. Hardware runs such "fast strings" in bulk too, taking
//! interrupts only between groups of iterations.
//!
//! [`rep_bulk`] does the iterations that lie within one page of the destination (and one of
//! the source) when the TLB already maps them with the access's rights: then no iteration
//! can fault, none touches a code page, a tracked paging-structure page or MMIO (writable TLB
//! entries exist only for RAM pages that are none of those, see the module invariants of
//! [`crate::memory`]), and the result is that of the iterations done one at a time. Anything
//! else (a TLB miss, DF set, TF or a breakpoint armed, an element crossing the page end)
//! does none, and the instruction does one iteration the ordinary way, which fills the TLB
//! or raises the fault.

use super::{data_privilege, tlb::tlb_lookup, PhysMem, PAGE_MASK, PAGE_SIZE};
use crate::flags::TF;
use crate::state::CpuState;

/// [`rep_bulk`]'s operation: store the value (STOS) or copy from the source (MOVS).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BulkOp {
    /// REP STOS.
    Stos,
    /// REP MOVS.
    Movs,
}

impl BulkOp {
    /// `self` and the element size packed into one word, for generated code to pass.
    pub fn code(self, size: u32) -> u64 {
        u64::from(self == BulkOp::Movs) << 8 | u64::from(size)
    }

    /// The operation and element size [`BulkOp::code`] packed.
    pub fn from_code(code: u64) -> (BulkOp, u32) {
        let op = if code >> 8 & 1 != 0 {
            BulkOp::Movs
        } else {
            BulkOp::Stos
        };
        (op, (code & 0xff) as u32)
    }
}

/// Performs up to `count` forward iterations of REP STOS (storing the low `size` bytes of
/// `src_or_value`) or REP MOVS (from linear `src_or_value`) of `size`-byte elements at
/// linear `dst`, as many as lie within the destination's page (and the source's), when the
/// TLB maps both for the current privilege; returns how many it did (0: none). Changes
/// memory only; the caller advances the registers. The caller passes a `count` that its
/// address registers cannot wrap within, and 0 when DF is set.
pub fn rep_bulk(
    cpu: &mut CpuState,
    mem: &mut PhysMem,
    op: BulkOp,
    size: u32,
    dst: u64,
    src_or_value: u64,
    count: u64,
) -> u64 {
    if count == 0
        || !matches!(size, 1 | 2 | 4 | 8)
        // Single steps and data breakpoints see every iteration.
        || cpu.rflags & TF != 0
        || cpu.rep_one_at_a_time
        || crate::debug::breakpoints_armed(cpu)
    {
        return 0;
    }
    let size = u64::from(size);
    let room = |linear: u64| (PAGE_SIZE - (linear & !PAGE_MASK)) / size;
    let mut n = count.min(room(dst));
    let pl = data_privilege(cpu);
    let Some(to) = tlb_lookup(cpu, mem, dst, pl, |e| e.write) else {
        return 0;
    };
    let from = match op {
        BulkOp::Stos => None,
        BulkOp::Movs => {
            n = n.min(room(src_or_value));
            match tlb_lookup(cpu, mem, src_or_value, pl, |e| e.read) {
                Some(p) => Some(p),
                None => return 0,
            }
        }
    };
    if n == 0 {
        return 0;
    }
    let len = (n * size) as usize;
    let ram = mem.ram_mut();
    let to = to as usize;
    if to.checked_add(len).is_none_or(|end| end > ram.len()) {
        return 0;
    }
    match from {
        None => fill(&mut ram[to..to + len], src_or_value, size),
        Some(from) => {
            let from = from as usize;
            if from.checked_add(len).is_none_or(|end| end > ram.len()) {
                return 0;
            }
            if to > from && to < from + len {
                // The destination overlaps the source ahead of it: element by element, each
                // reading what an earlier one may have written, as the iterations do.
                let s = size as usize;
                for i in (0..len).step_by(s) {
                    ram.copy_within(from + i..from + i + s, to + i);
                }
            } else {
                ram.copy_within(from..from + len, to);
            }
        }
    }
    cpu.paging.data_hits += 1;
    n
}

/// Fills `dst` with the low `size` bytes of `value`, repeated: with `memset` when they are
/// all one byte (the kernel clearing a page), else with stores of the element's width. A
/// copy of a slice of run-time length per element made each element a call to `memcpy`.
fn fill(dst: &mut [u8], value: u64, size: u64) {
    fn each<const N: usize>(dst: &mut [u8], value: u64) {
        let v: [u8; N] = value.to_le_bytes()[..N].try_into().expect("N <= 8");
        for chunk in dst.chunks_exact_mut(N) {
            chunk.copy_from_slice(&v);
        }
    }
    let bytes = value.to_le_bytes();
    let elem = &bytes[..size as usize];
    if elem.iter().all(|&b| b == elem[0]) {
        dst.fill(elem[0]);
        return;
    }
    match size {
        2 => each::<2>(dst, value),
        4 => each::<4>(dst, value),
        _ => each::<8>(dst, value),
    }
}

#[cfg(test)]
mod tests {
    use super::fill;

    #[test]
    fn fill_repeats_the_element_of_each_width() {
        for size in [1u64, 2, 4, 8] {
            for value in [0u64, 0x4242_4242_4242_4242, 0x0102_0304_0506_0708, u64::MAX] {
                let mut dst = [0xeeu8; 64];
                fill(&mut dst[8..40], value, size);
                let elem = &value.to_le_bytes()[..size as usize];
                for (i, chunk) in dst[8..40].chunks(size as usize).enumerate() {
                    assert_eq!(chunk, elem, "size {size} value {value:#x} element {i}");
                }
                assert!(dst[..8].iter().chain(&dst[40..]).all(|&b| b == 0xee));
            }
        }
    }
}
