//! Direct chaining: a block's direct exits end in a `jmp rel32` that the cache patches to
//! the target's code when it links the exit, the way QEMU chains its translation blocks.
//!
//! Why not an indirect jump through the chain slot: on the fork/exec workload about 9 k
//! blocks are hot at once, far more exits than the host's branch target buffer holds. A
//! direct jump the predictor has never seen costs the decoder a short redirect; an indirect
//! one costs the load of its slot (often a cache miss) and a full mispredict. Before this
//! change, 37% of the samples in generated code fell in the first 32 bytes of blocks.
//!
//! Each such exit is compiled as a tail call to a *colocated* function named after its slot
//! (namespace [`CHAIN_NAMESPACE`]), which Cranelift emits as `jmp rel32` with a relocation.
//! [`resolve`] appends one small stub per slot to the code and points every jump of the slot
//! at it. The stub does what an empty slot did: it stores the target's RIP, the exit's link
//! token and the budget, and returns [`super::EXIT_NEXT`] to the run loop, which links the
//! exit. Both the jumps and their stubs move with the code (the displacements are relative),
//! so the code is position-independent until the cache patches a jump.

use cranelift_codegen::binemit::Reloc;
use cranelift_codegen::ir::{ExternalName, UserExternalName};
use cranelift_codegen::{FinalizedMachReloc, FinalizedRelocTarget};

use super::{off, JitError, EXIT_NEXT};

/// The user-name namespace of the pseudo-functions direct exits jump to; the index is the
/// chain slot.
pub const CHAIN_NAMESPACE: u32 = 1;

/// Slots whose exits jump directly (the return slot is read by RETs, through the return
/// stack buffer, so it stays a data word).
pub const DIRECT_SLOTS: usize = 2;

/// A `jmp rel32` of a direct exit: the offset of its 4-byte displacement in the block's code,
/// and the chain slot it serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChainSite {
    /// Byte offset of the displacement field from the start of the code.
    pub offset: u32,
    /// The chain slot (below [`DIRECT_SLOTS`]).
    pub slot: u8,
}

/// Where a block's code jumps when its direct exits are not linked, and what it targets.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChainInfo {
    /// Every direct jump in the code.
    pub sites: Vec<ChainSite>,
    /// Offset of each direct slot's stub from the start of the code (meaningful only for a
    /// slot that has sites).
    pub stubs: [u32; DIRECT_SLOTS],
    /// The guest RIP each chain slot's exit leads to (`None`: the slot is unused), so that a
    /// link can be checked against the code it patches.
    pub targets: [Option<u64>; 3],
}

impl ChainInfo {
    /// The sites of `slot`.
    pub fn sites_of(&self, slot: usize) -> impl Iterator<Item = &ChainSite> {
        self.sites.iter().filter(move |s| s.slot as usize == slot)
    }
}

/// A compiled block: its machine code and its direct exits.
#[derive(Clone, Debug)]
pub struct Compiled {
    /// The machine code, stubs included.
    pub bytes: Vec<u8>,
    /// The direct exits and their stubs.
    pub chain: ChainInfo,
    /// Where the code is cut into a hot and a cold part ([`super::split`]), if it is.
    pub cut: Option<super::split::Cut>,
    /// Where the compile's time went.
    pub times: super::timing::CompileTimes,
    /// Cranelift's optimiser made it.
    pub optimised: bool,
    /// Guest instructions it compiled (a region's members included).
    pub insns: u64,
}

/// The stub of an empty direct slot: entered by a tail call (`rdi` = cpu, `rsi` = budget,
/// the return address on the stack is the entry trampoline's), it returns to the run loop
/// at guest `rip` with `token` in `cpu.link`. With `count`, it takes back the chained
/// transfer the exit counted.
fn stub(rip: u64, token: u64, count: bool) -> Vec<u8> {
    let mut s = Vec::with_capacity(64);
    let disp = |s: &mut Vec<u8>, d: i32| s.extend_from_slice(&d.to_le_bytes());
    // movabs rax, rip; mov [rdi + RIP], rax
    s.extend_from_slice(&[0x48, 0xb8]);
    s.extend_from_slice(&rip.to_le_bytes());
    s.extend_from_slice(&[0x48, 0x89, 0x87]);
    disp(&mut s, off::RIP);
    // movabs rax, token; mov [rdi + LINK], rax
    s.extend_from_slice(&[0x48, 0xb8]);
    s.extend_from_slice(&token.to_le_bytes());
    s.extend_from_slice(&[0x48, 0x89, 0x87]);
    disp(&mut s, off::LINK);
    // mov [rdi + BUDGET], rsi
    s.extend_from_slice(&[0x48, 0x89, 0xb7]);
    disp(&mut s, off::BUDGET);
    if count {
        // dec qword [rdi + CHAINED]
        s.extend_from_slice(&[0x48, 0xff, 0x8f]);
        disp(&mut s, off::CHAINED);
    }
    // mov eax, EXIT_NEXT (zero-extends into rax); ret
    s.push(0xb8);
    s.extend_from_slice(&(EXIT_NEXT as u32).to_le_bytes());
    s.push(0xc3);
    s
}

/// Turns Cranelift's output into a [`Compiled`]: every relocation must be a direct exit's
/// `jmp rel32` (see the module documentation), which is pointed at its slot's stub, appended
/// here. `names` maps the function's user-name references to (namespace, index) pairs;
/// `tokens` are the slots' link tokens, `targets` their guest RIPs.
pub fn resolve(
    mut bytes: Vec<u8>,
    relocs: &[FinalizedMachReloc],
    names: impl Fn(&ExternalName) -> Option<UserExternalName>,
    tokens: [u64; 3],
    targets: [Option<u64>; 3],
    count: bool,
) -> Result<Compiled, JitError> {
    let mut sites = Vec::with_capacity(relocs.len());
    for r in relocs {
        let FinalizedRelocTarget::ExternalName(name) = &r.target else {
            return Err(JitError::Relocations);
        };
        let slot = match names(name) {
            Some(u) if u.namespace == CHAIN_NAMESPACE && (u.index as usize) < DIRECT_SLOTS => {
                u.index as u8
            }
            _ => return Err(JitError::Relocations),
        };
        let fits = (r.offset as usize)
            .checked_add(4)
            .is_some_and(|end| end <= bytes.len());
        if r.kind != Reloc::X86CallPCRel4 || r.addend != -4 || !fits {
            return Err(JitError::Relocations);
        }
        sites.push(ChainSite {
            offset: r.offset,
            slot,
        });
    }
    let mut stubs = [0u32; DIRECT_SLOTS];
    for (slot, at) in stubs.iter_mut().enumerate() {
        if !sites.iter().any(|s| s.slot as usize == slot) {
            continue;
        }
        let rip = targets[slot].ok_or(JitError::Relocations)?;
        bytes.resize(bytes.len().next_multiple_of(16), 0xcc);
        *at = u32::try_from(bytes.len()).map_err(|_| JitError::Relocations)?;
        bytes.extend_from_slice(&stub(rip, tokens[slot], count));
    }
    for s in &sites {
        let rel = i64::from(stubs[s.slot as usize]) - (i64::from(s.offset) + 4);
        let rel = i32::try_from(rel).map_err(|_| JitError::Relocations)?;
        let o = s.offset as usize;
        bytes[o..o + 4].copy_from_slice(&rel.to_le_bytes());
    }
    Ok(Compiled {
        bytes,
        chain: ChainInfo {
            sites,
            stubs,
            targets,
        },
        cut: None,
        times: Default::default(),
        optimised: false,
        insns: 0,
    })
}

/// The displacement a `jmp rel32` whose field is at `site` needs to reach `target`, if it
/// fits.
pub fn displacement(site: usize, target: usize) -> Option<i32> {
    let d = (target as i64).wrapping_sub(site as i64 + 4);
    i32::try_from(d).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use iced_x86::{Decoder, DecoderOptions, Mnemonic};

    #[test]
    fn stub_returns_to_the_run_loop_with_the_token() {
        for count in [false, true] {
            let code = stub(0x1234_5678_9abc, 0x55, count);
            let mut d = Decoder::with_ip(64, &code, 0, DecoderOptions::NONE);
            let insns: Vec<_> = d.iter().collect();
            let m: Vec<_> = insns.iter().map(|i| i.mnemonic()).collect();
            let mut want = vec![Mnemonic::Mov; 5];
            if count {
                want.push(Mnemonic::Dec);
            }
            want.extend([Mnemonic::Mov, Mnemonic::Ret]);
            assert_eq!(m, want);
            assert_eq!(insns[0].immediate64(), 0x1234_5678_9abc);
            assert_eq!(insns[1].memory_displacement64(), off::RIP as u64);
            assert_eq!(insns[2].immediate64(), 0x55);
            assert_eq!(insns[3].memory_displacement64(), off::LINK as u64);
            assert_eq!(insns[4].memory_displacement64(), off::BUDGET as u64);
            assert_eq!(insns[4].op1_register(), iced_x86::Register::RSI);
        }
    }

    #[test]
    fn displacement_fits_or_refuses() {
        assert_eq!(displacement(100, 104), Some(0));
        assert_eq!(displacement(100, 50), Some(-54));
        assert_eq!(displacement(0, 1 << 32), None);
    }
}
