//! Regions: the guest blocks compiled together with a block that heads a loop spanning
//! several blocks (see [`Cache::region`]).

use super::{BlockId, Cache};
use crate::decode::DecodedBlock;

/// Most candidate blocks for a region, the entry included ([`Cache::region`]).
const MAX_REGION_BLOCKS: usize = 12;

/// Most guest instructions in a region's candidates beyond its entry block, to bound
/// compile time.
const MAX_REGION_INSNS: usize = 128;

/// Where a block may go next without an indirect transfer: the targets of its final direct
/// jump or conditional branch (LOOP and JCXZ included), its fall-through after a conditional
/// branch, and the next instruction when it only ended at the length cap. Calls, returns and
/// instructions that end a block for the run loop's sake (STI, ...) give none.
pub(super) fn successors(b: &DecodedBlock) -> impl Iterator<Item = u64> {
    use iced_x86::{FlowControl, OpKind};
    let mut out = [None, None];
    if let Some(last) = b.insns.last().filter(|d| !d.runtime) {
        let i = &last.insn;
        let direct = matches!(
            i.op0_kind(),
            OpKind::NearBranch16 | OpKind::NearBranch32 | OpKind::NearBranch64
        );
        match i.flow_control() {
            FlowControl::UnconditionalBranch if direct => out[0] = Some(i.near_branch_target()),
            FlowControl::ConditionalBranch if direct => {
                out[0] = Some(i.near_branch_target());
                out[1] = Some(i.next_ip());
            }
            FlowControl::Next
                if b.insns.len() == crate::decode::MAX_BLOCK_INSNS
                    && crate::rewrite::plan(i, b.ctx)
                        == crate::rewrite::Plan::Inline { ends_block: false } =>
            {
                out[0] = Some(i.next_ip());
            }
            _ => {}
        }
    }
    out.into_iter().flatten()
}

impl Cache {
    /// The region compiled for block `id`: the block and the blocks that lie on a cycle
    /// through it, when it heads a loop whose body spans several blocks (a branch inside the
    /// body); just the block otherwise. Candidates are the blocks it reaches by direct
    /// branches or by falling through, breadth first, that are already decoded (they have
    /// run since the last flush), lie on the same page and nowhere else, and are not
    /// runtime-class; of those, the members are the ones from which the block is reached
    /// again. Transfers between members become jumps within one function, so that the loop
    /// runs without chained transfers. Code that does not loop gains little from more than
    /// its own block and would be compiled once per block it is part of, so it gets none.
    /// No regions while a debugger has breakpoints (see [`Cache::set_entry_barriers`]).
    ///
    /// Members share the entry block's fate: they lie on its physical page, so a store there
    /// drops the entry block and its code with the rest.
    pub(super) fn region(&mut self, id: BlockId) -> Vec<DecodedBlock> {
        let members = self.region_members(id);
        for &m in &members[1..] {
            self.block_mut(m).in_region = true;
        }
        members
            .iter()
            .map(|&m| self.block(m).decoded.clone())
            .collect()
    }

    /// The ids of [`Cache::region`]'s members, the entry first.
    pub(super) fn region_members(&self, id: BlockId) -> Vec<BlockId> {
        let entry = self.block(id);
        let alone = vec![id];
        if !self.barriers.is_empty()
            || entry.pages[1].is_some()
            || entry.key.single_step()
            || entry.in_region
        {
            return alone;
        }
        let mode64 = entry.key.mode() == crane86_runtime::CpuMode::Long64;
        let linear_of = |ip: u64| {
            let l = entry.key.cs_base.wrapping_add(ip);
            if mode64 {
                l
            } else {
                l & 0xffff_ffff
            }
        };
        let page = entry.key.linear() & !0xfff;
        let phys_page = entry.key.phys() & !0xfff;
        // Candidates: (start, id, successors), the entry first.
        let mut cands: Vec<(u64, BlockId, Vec<u64>)> =
            vec![(entry.start_ip(), id, successors(&entry.decoded).collect())];
        let mut queue: std::collections::VecDeque<u64> = cands[0].2.iter().copied().collect();
        let mut insns = 0;
        while let Some(ip) = queue.pop_front() {
            if cands.len() >= MAX_REGION_BLOCKS || insns >= MAX_REGION_INSNS {
                break;
            }
            let linear = linear_of(ip);
            if cands.iter().any(|c| c.0 == ip) || linear & !0xfff != page {
                continue;
            }
            let key = entry.key.successor(ip, phys_page | (linear & 0xfff));
            let Some((m, b)) = self.map.get(&key).and_then(|&m| {
                let b = self.blocks.get(m as usize)?.as_ref()?;
                Some((m, b))
            }) else {
                continue;
            };
            if b.pages[1].is_some() || b.decoded.is_runtime() || b.decoded.insns.is_empty() {
                continue;
            }
            insns += b.decoded.insns.len();
            let succ: Vec<u64> = successors(&b.decoded).collect();
            queue.extend(succ.iter().copied());
            cands.push((ip, m, succ));
        }
        // Members: candidates that reach the entry again (a fixed point over the few
        // candidates).
        let mut back = vec![false; cands.len()];
        let mut changed = true;
        while changed {
            changed = false;
            for i in 0..cands.len() {
                if back[i] {
                    continue;
                }
                let reaches = cands[i].2.iter().any(|&t| {
                    t == cands[0].0 || cands.iter().zip(&back).any(|(c, &k)| k && c.0 == t)
                });
                if reaches {
                    back[i] = true;
                    changed = true;
                }
            }
        }
        if !back[0] || back.iter().filter(|&&k| k).count() < 2 {
            // No loop through several blocks (a self-loop compiles alone, as a loop).
            return alone;
        }
        cands
            .iter()
            .zip(&back)
            .filter(|(_, &k)| k)
            .map(|(c, _)| c.1)
            .collect()
    }
}
