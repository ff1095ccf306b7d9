//! Hot and cold code apart: a block's cold blocks (slow paths, fault exits, returns to the
//! run loop) go to the cold end of the arena, so that the hot parts of the blocks that run
//! together lie close together in the host's instruction cache.
//!
//! Cranelift emits a function's cold blocks after all the others, then its constants. The
//! compiler marks every IR instruction of a cold block with source location [`COLD`] and the
//! others with [`HOT`]; the first byte of cold code is where the function is cut. Whatever
//! lies before the cut stays hot, whatever lies after it (cold blocks, constants, the chain
//! stubs of [`super::direct`]) moves. The cut is correct wherever it falls on an instruction
//! boundary, as long as every reference across it is rewritten: [`plan`] decodes the code
//! (iced-x86) and lists each near branch and RIP-relative operand whose target lies on the
//! other side, and a jump to the cold part is added when the hot part's last instruction
//! would fall through into it. Only 32-bit displacements can be rewritten (Cranelift's x64
//! back end emits no others); any surprise gives up the cut, and the code is placed whole.
//!
//! Measured first: 1 KiB of padding after every block made fork/exec 10% slower with a
//! large arena (and much slower with the default 64 MiB, which it overflowed), while huge
//! pages for the arena changed nothing: it is cache footprint, not the iTLB.

use iced_x86::{Decoder, DecoderOptions, FlowControl, OpKind};

/// Source location of IR instructions in cold blocks.
pub const COLD: u32 = 2;
/// Source location of IR instructions in other blocks.
pub const HOT: u32 = 1;

/// A 32-bit displacement that crosses the cut, in the coordinates of the uncut code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fixup {
    /// Offset of the 4-byte field.
    pub field: u32,
    /// Offset of the end of its instruction (what the displacement is relative to).
    pub end: u32,
    /// Offset of the target.
    pub target: u32,
}

/// Where a function is cut and what must be rewritten when its parts are placed apart.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Cut {
    /// The first byte of the cold part.
    pub at: u32,
    /// References across the cut.
    pub fixups: Vec<Fixup>,
    /// The hot part's last instruction falls through into the cold part: a `jmp rel32` to
    /// the cold part's start is appended to the hot part.
    pub tail_jump: bool,
}

/// The bytes of the jump [`Cut::tail_jump`] appends (its displacement is patched).
pub const TAIL_JUMP: [u8; 5] = [0xe9, 0, 0, 0, 0];

/// Where the cold part of a function's code starts, from its instructions' source locations
/// (`(start, end, mark)`, [`HOT`] or [`COLD`]; other marks are ignored): at the start of a
/// cold instruction, where the fewest bytes land on the wrong side (cold ones before the
/// cut, hot ones after it), the earliest such place, if what follows it is mostly cold.
/// Cranelift emits the cold blocks last, but marks stray both ways:
/// - its optimiser moves pure instructions between blocks (out of loops, to where their
///   value is first needed) with their marks: one that carried the cold mark into a loop's
///   preheader made the first cold mark start the cold part there, with the whole loop after
///   it (a region's loop body ran from the cold end of the arena);
/// - the jumps from cold slow paths back to their hot continuations, which Cranelift emits
///   in edge blocks among the cold ones, carry a hot mark: cutting after the last hot mark
///   left every cold block before such a jump in the hot part (6.5% of the hot bytes over
///   the boot and the shell loop, in a tenth of the functions).
///
/// Any instruction boundary is a correct cut ([`plan`]); the marks only decide which bytes
/// share the host's instruction cache with the hot code. `None`: nothing cold.
pub fn cold_start(locs: impl Iterator<Item = (u32, u32, u32)>) -> Option<usize> {
    let mut ranges: Vec<(u32, u32, u32)> = locs.filter(|l| l.2 == HOT || l.2 == COLD).collect();
    ranges.sort_unstable();
    let bytes = |l: &(u32, u32, u32)| u64::from(l.1 - l.0);
    // Walking forward, the bytes of each mark seen before each candidate cut.
    let (mut hot_left, mut cold_left) = ranges.iter().fold((0, 0), |(h, c), l| {
        if l.2 == HOT {
            (h + bytes(l), c)
        } else {
            (h, c + bytes(l))
        }
    });
    let mut cold_before = 0;
    let mut best: Option<(u64, usize)> = None;
    for l in &ranges {
        if l.2 == HOT {
            hot_left -= bytes(l);
            continue;
        }
        let cost = cold_before + hot_left;
        // A cold part must be mostly cold.
        if hot_left < cold_left && best.is_none_or(|(c, _)| cost < c) {
            best = Some((cost, l.0 as usize));
        }
        cold_before += bytes(l);
        cold_left -= bytes(l);
    }
    best.map(|(_, at)| at)
}

/// Plans the cut of `code` (whose instructions end at `code_end`; constants follow) at
/// `at`. `None` when the code cannot be cut there safely.
pub fn plan(code: &[u8], code_end: usize, at: usize) -> Option<Cut> {
    if at == 0 || at >= code_end || code_end > code.len() || code.len() > u32::MAX as usize {
        return None;
    }
    let mut d = Decoder::with_ip(64, &code[..code_end], 0, DecoderOptions::NONE);
    let mut fixups = Vec::new();
    let mut boundary_seen = false;
    let mut last_hot_flow = None;
    while d.can_decode() {
        let start = d.position();
        let insn = d.decode();
        if insn.is_invalid() {
            return None;
        }
        let end = d.position();
        if start == at {
            boundary_seen = true;
        }
        if start < at && end > at {
            return None;
        }
        let hot = start < at;
        if hot {
            last_hot_flow = Some(insn.flow_control());
        }
        let offsets = d.get_constant_offsets(&insn);
        let branch = (0..insn.op_count()).any(|i| {
            matches!(
                insn.op_kind(i),
                OpKind::NearBranch16 | OpKind::NearBranch32 | OpKind::NearBranch64
            )
        });
        let (field, size, target) = if branch {
            (
                offsets.immediate_offset(),
                offsets.immediate_size(),
                insn.near_branch_target(),
            )
        } else if insn.is_ip_rel_memory_operand() {
            (
                offsets.displacement_offset(),
                offsets.displacement_size(),
                insn.ip_rel_memory_address(),
            )
        } else {
            continue;
        };
        if target >= code.len() as u64 {
            return None;
        }
        if (target < at as u64) == hot {
            continue;
        }
        if size != 4 {
            return None;
        }
        fixups.push(Fixup {
            field: (start + field) as u32,
            end: end as u32,
            target: target as u32,
        });
    }
    if !boundary_seen {
        return None;
    }
    let tail_jump = !matches!(
        last_hot_flow?,
        FlowControl::UnconditionalBranch
            | FlowControl::IndirectBranch
            | FlowControl::Return
            | FlowControl::Exception
    );
    Some(Cut {
        at: at as u32,
        fixups,
        tail_jump,
    })
}

/// Where offset `x` of the uncut code lands when the part before `at` is placed at `hot`
/// and the rest at `cold` (`hot_side`: for an instruction's end, the side the instruction
/// starts on, since an end at the cut still belongs to the hot part).
pub fn place(x: u32, at: u32, hot: usize, cold: usize, hot_side: bool) -> usize {
    if hot_side {
        hot + x as usize
    } else {
        cold + (x - at) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cold-marked instruction the optimiser hoisted into hot code (at 10) does not start
    /// the cold part; the cold blocks after the last hot instruction do.
    #[test]
    fn the_cold_part_starts_after_the_last_hot_instruction() {
        let locs = [
            (0, 10, HOT),
            (10, 14, COLD),
            (14, 40, HOT),
            (40, 41, 0xffff_ffff),
            (41, 80, COLD),
            (80, 90, COLD),
        ];
        assert_eq!(cold_start(locs.iter().copied()), Some(41));
        assert_eq!(cold_start(locs[..3].iter().copied()), None);
        assert_eq!(cold_start([(0, 8, HOT)].into_iter()), None);
    }

    /// A slow path's jump back to its hot continuation, placed among the cold blocks with a
    /// hot mark (at 60), does not pull the cold blocks before it into the hot part.
    #[test]
    fn a_hot_jump_among_the_cold_blocks_stays_with_them() {
        let locs = [(0, 40, HOT), (40, 60, COLD), (60, 65, HOT), (65, 120, COLD)];
        assert_eq!(cold_start(locs.iter().copied()), Some(40));
        // Unless the hot code there outweighs the cold code before it.
        let locs = [(0, 40, HOT), (40, 44, COLD), (44, 90, HOT), (90, 120, COLD)];
        assert_eq!(cold_start(locs.iter().copied()), Some(90));
    }

    /// `jz +5` (rel32) over a `ret`, then at the cut a `mov eax, [rip + 2]`, `ret` and a
    /// 4-byte constant.
    fn sample() -> (Vec<u8>, usize, usize) {
        let mut c = vec![0x0f, 0x84];
        c.extend_from_slice(&1i32.to_le_bytes()); // jz to offset 7 (the cut)
        c.push(0xc3); // ret, offset 6
        let at = c.len();
        c.extend_from_slice(&[0x8b, 0x05]);
        c.extend_from_slice(&1i32.to_le_bytes()); // mov eax, [rip+1] -> offset 14
        c.push(0xc3); // offset 13
        let end = c.len();
        c.extend_from_slice(&[0xaa, 0xbb, 0xcc, 0xdd]);
        (c, end, at)
    }

    #[test]
    fn references_across_the_cut_are_listed() {
        let (code, end, at) = sample();
        let cut = plan(&code, end, at).unwrap();
        assert_eq!(cut.at, 7);
        // The jz crosses; the load from the constant stays within the cold part.
        assert_eq!(
            cut.fixups,
            vec![Fixup {
                field: 2,
                end: 6,
                target: 7
            }]
        );
        assert!(!cut.tail_jump, "the hot part ends in a ret");
    }

    #[test]
    fn a_hot_part_that_falls_through_gets_a_jump() {
        let (mut code, end, at) = sample();
        code[6] = 0x90; // nop instead of ret
        let cut = plan(&code, end, at).unwrap();
        assert!(cut.tail_jump);
    }

    #[test]
    fn a_cut_inside_an_instruction_or_a_short_jump_across_is_refused() {
        let (code, end, _) = sample();
        assert_eq!(plan(&code, end, 3), None);
        // jmp short +1 over a ret, cut after the ret.
        let code = [0xeb, 0x01, 0xc3, 0xc3];
        assert_eq!(plan(&code, 4, 3), None);
    }

    #[test]
    fn placed_offsets_follow_their_part() {
        assert_eq!(place(3, 7, 1000, 5000, true), 1003);
        assert_eq!(place(7, 7, 1000, 5000, true), 1007);
        assert_eq!(place(9, 7, 1000, 5000, false), 5002);
    }
}
