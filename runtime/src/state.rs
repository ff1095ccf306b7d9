//! [`CpuState`]: everything architectural about one virtual CPU, laid out for generated code.
//!
//! Generated code receives a `*mut CpuState` and addresses fields with
//! `core::mem::offset_of!`, so the struct is `#[repr(C)]` and holds only plain data plus the
//! one context pointer documented on [`CpuState::mem`]. No globals: two CPUs are two values.
//!
//! The module's one `unsafe` is `impl Send for CpuState`, which the raw `mem` pointer would
//! otherwise forbid: the pointer is null outside a run, and during one it points to memory
//! that the same run borrows, so a CPU state moved to another thread never carries a live
//! pointer with it.

use std::sync::atomic::{AtomicU32, Ordering};

use crate::flags::{self, LazyFlags};
use crate::memory::{PhysMem, TlbEntry, TlbVictims, Tlbs, TLBS, TLB_ENTRIES};
use crate::shadow::ShadowTables;

/// A general-purpose register, numbered as the instruction encoding numbers them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
#[allow(missing_docs)]
pub enum Gpr {
    Rax = 0,
    Rcx,
    Rdx,
    Rbx,
    Rsp,
    Rbp,
    Rsi,
    Rdi,
    R8,
    R9,
    R10,
    R11,
    R12,
    R13,
    R14,
    R15,
}

impl Gpr {
    /// All sixteen, in encoding order.
    pub const ALL: [Gpr; 16] = [
        Gpr::Rax,
        Gpr::Rcx,
        Gpr::Rdx,
        Gpr::Rbx,
        Gpr::Rsp,
        Gpr::Rbp,
        Gpr::Rsi,
        Gpr::Rdi,
        Gpr::R8,
        Gpr::R9,
        Gpr::R10,
        Gpr::R11,
        Gpr::R12,
        Gpr::R13,
        Gpr::R14,
        Gpr::R15,
    ];

    /// The lower-case name of the 64-bit register.
    pub fn name(self) -> &'static str {
        [
            "rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi", "r8", "r9", "r10", "r11",
            "r12", "r13", "r14", "r15",
        ][self as usize]
    }
}

/// A segment register, numbered as the instruction encoding numbers them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
#[allow(missing_docs)]
pub enum SegReg {
    Es = 0,
    Cs,
    Ss,
    Ds,
    Fs,
    Gs,
}

/// A segment register with its hidden descriptor cache.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct Segment {
    /// Linear base address.
    pub base: u64,
    /// Limit in bytes (already scaled by the granularity bit).
    pub limit: u32,
    /// The visible selector.
    pub selector: u16,
    /// Descriptor attributes: bits 8..15 of the descriptor's high dword (type, S, DPL, P) in
    /// bits 0..7, and bits 20..23 (AVL, L, D/B, G) in bits 12..15, as VMX lays them out.
    pub attrs: u16,
}

/// Segment attribute: present.
pub const SEG_P: u16 = 1 << 7;
/// Segment attribute: 64-bit code segment (L).
pub const SEG_L: u16 = 1 << 13;
/// Segment attribute: default operand size 32 (D/B).
pub const SEG_DB: u16 = 1 << 14;
/// Segment attribute: limit in 4 KiB units (G).
pub const SEG_G: u16 = 1 << 15;

impl Segment {
    /// A flat segment: base 0, limit 4 GiB, the given attributes.
    pub fn flat(selector: u16, attrs: u16) -> Segment {
        Segment {
            base: 0,
            limit: 0xffff_ffff,
            selector,
            attrs,
        }
    }

    /// A real-mode segment: base = selector * 16, limit 64 KiB.
    pub fn real(selector: u16) -> Segment {
        Segment {
            base: u64::from(selector) << 4,
            limit: 0xffff,
            selector,
            attrs: SEG_P | 0x13,
        }
    }
}

/// A descriptor-table register (GDTR or IDTR): the table's linear base and its limit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct DescriptorTable {
    /// Linear base address of the table.
    pub base: u64,
    /// Limit: the offset of the table's last valid byte.
    pub limit: u16,
}

/// The execution mode, which decides how instructions decode and which state is in effect.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum CpuMode {
    /// Real-address mode: 16-bit code, segment = selector * 16.
    Real16 = 0,
    /// Protected mode with a 16-bit code segment.
    Prot16 = 1,
    /// Protected mode with a 32-bit code segment.
    Prot32 = 2,
    /// Long mode, 64-bit code segment.
    Long64 = 3,
}

impl CpuMode {
    /// Code size in bits: what iced-x86 calls the bitness.
    pub fn bitness(self) -> u32 {
        match self {
            CpuMode::Real16 | CpuMode::Prot16 => 16,
            CpuMode::Prot32 => 32,
            CpuMode::Long64 => 64,
        }
    }
}

/// [`CpuState::exit_request`] bit: stop the run (someone outside the guest asked).
pub const EXIT_STOP: u32 = 1 << 0;
/// [`CpuState::exit_request`] bit: a device wants the run loop to look at it (an interrupt
/// may be pending, a timer deadline may have moved); the run goes on.
pub const EXIT_DEVICE: u32 = 1 << 1;

/// CR0.PE: protection enable.
pub const CR0_PE: u64 = 1 << 0;
/// CR0.MP: WAIT/FWAIT honour CR0.TS.
pub const CR0_MP: u64 = 1 << 1;
/// CR0.EM: no x87 (x87 and MMX instructions #NM/#UD, SSE #UD).
pub const CR0_EM: u64 = 1 << 2;
/// CR0.TS: task switched; the first FPU/SIMD instruction raises #NM (lazy FPU switching).
pub const CR0_TS: u64 = 1 << 3;
/// CR0.ET: extension type, reads as 1.
pub const CR0_ET: u64 = 1 << 4;
/// CR0.NE: x87 errors raise #MF (else the legacy FERR# interrupt path).
pub const CR0_NE: u64 = 1 << 5;
/// CR4.OSFXSR: the OS saves SSE state with FXSAVE; SSE instructions are #UD without it.
pub const CR4_OSFXSR: u64 = 1 << 9;
/// CR4.OSXMMEXCPT: unmasked SIMD floating-point exceptions raise #XM (else #UD).
pub const CR4_OSXMMEXCPT: u64 = 1 << 10;
/// CR4.OSXSAVE: XSAVE/XRSTOR/XGETBV/XSETBV are enabled.
pub const CR4_OSXSAVE: u64 = 1 << 18;
/// CR4.PKE: protection keys for user-mode pages (PKRU), under 4-level paging; also enables
/// RDPKRU/WRPKRU.
pub const CR4_PKE: u64 = 1 << 22;
/// CR4.PKS: protection keys for supervisor-mode pages (IA32_PKRS), under 4-level paging.
pub const CR4_PKS: u64 = 1 << 24;
/// CR0.PG: paging.
pub const CR0_PG: u64 = 1 << 31;
/// CR4.PAE.
pub const CR4_PAE: u64 = 1 << 5;
/// CR4.TSD: RDTSC and RDTSCP are privileged (#GP(0) at CPL > 0).
pub const CR4_TSD: u64 = 1 << 2;
/// CR4.VME: virtual-8086 mode extensions (VIF/VIP for CLI, STI, PUSHF, POPF, IRET, and the
/// software interrupt redirection bitmap), see `v86::vme`.
pub const CR4_VME: u64 = 1 << 0;
/// CR4.PVI: protected-mode virtual interrupts (CLI/STI at CPL 3 act on VIF).
pub const CR4_PVI: u64 = 1 << 1;
/// CR4.DE: debugging extensions (DR4/DR5 are #UD; DR7 R/W = 10b means I/O breakpoints).
pub const CR4_DE: u64 = 1 << 3;
/// EFER.LME: long mode enable.
pub const EFER_LME: u64 = 1 << 8;
/// EFER.LMA: long mode active.
pub const EFER_LMA: u64 = 1 << 10;

/// DR6 after reset: the reserved bits that read as 1.
pub const DR6_INIT: u64 = 0xffff_0ff0;
/// DR7 after reset: bit 10 reads as 1.
pub const DR7_INIT: u64 = 0x400;

/// An exception recorded by a slow path or the interpreter, waiting to be delivered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct PendingFault {
    /// 1 when a fault is pending; [`PendingFault::RETRY`] when generated code asks for its
    /// instruction to be run again interpreted (not a fault; generated code takes the same
    /// exit for both).
    pub pending: u32,
    /// The vector.
    pub vector: u32,
    /// The error code, if the vector has one.
    pub error_code: u32,
    /// Padding, kept zero.
    pub _pad: u32,
    /// The faulting linear address (becomes CR2 for #PF).
    pub address: u64,
}

impl PendingFault {
    /// [`PendingFault::pending`] of a request to run the instruction again interpreted.
    pub const RETRY: u32 = 2;
    /// [`PendingFault::pending`] of a page-crossing block's code that found its second page's
    /// TLB entry changed on entry, before any instruction: the block runs interpreted after
    /// the run loop's lookup has re-checked the page.
    pub const RECHECK: u32 = 3;
}

/// Why generated code handed its work back to the interpreter ([`CpuState::take_retry`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retry {
    /// A store into a page holding translated code ([`PendingFault::RETRY`]).
    Store,
    /// A page-crossing block's entry check of its second page failed
    /// ([`PendingFault::RECHECK`]).
    SecondPage,
}

/// Counters of address translation, for `--stats`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct PagingStats {
    /// Translations done by the slow paths (a page walk when paging is on).
    pub walks: u64,
    /// Of those, the ones that ended in a page fault.
    pub page_faults: u64,
    /// TLB entries filled.
    pub tlb_fills: u64,
    /// Whole-TLB flushes (CR3 and paging-mode writes).
    pub tlb_flushes: u64,
    /// Single-page invalidations (INVLPG).
    pub invlpg: u64,
    /// Block fetches answered by the TLB's fetch tags.
    pub fetch_hits: u64,
    /// Block fetches that had to translate.
    pub fetch_misses: u64,
    /// Slow-path lookups answered by a TLB's victim buffer (no walk).
    pub tlb_victim_hits: u64,
    /// Data accesses of the runtime (the interpreter, helpers and the slow paths of compiled
    /// code) that the TLB, its victim buffer included, answered.
    pub data_hits: u64,
    /// Data accesses that the TLB could not answer: a translation from the shadow page
    /// tables or a walk followed.
    pub data_misses: u64,
}

/// Room in [`CpuState::tier_up_ids`].
pub const TIER_UP_REQUESTS: usize = 16;

/// The whole architectural state of one virtual CPU.
#[repr(C)]
pub struct CpuState {
    /// RAX..R15 in encoding order.
    pub gpr: [u64; 16],
    /// The instruction pointer; valid at every block exit.
    pub rip: u64,
    /// The arithmetic flags, lazily evaluated.
    pub cc: LazyFlags,
    /// RFLAGS except the six arithmetic flags (those live in [`CpuState::cc`]).
    pub rflags: u64,
    /// Set non-zero by anything (a device, a signal handler thread) that needs the vCPU back
    /// in the run loop; generated code checks it at every chained block exit that may close
    /// a loop. The bits say why: [`EXIT_STOP`] ends the run, [`EXIT_DEVICE`] only returns to
    /// the loop. Among the first fields, where generated code reaches it with a one-byte
    /// displacement (see the JIT's `CPU_BIAS`).
    pub exit_request: AtomicU32,
    /// ES CS SS DS FS GS, in encoding order.
    pub seg: [Segment; 6],
    /// Control register 0.
    pub cr0: u64,
    /// Control register 2 (page-fault linear address).
    pub cr2: u64,
    /// Control register 3 (page-table base).
    pub cr3: u64,
    /// Control register 4.
    pub cr4: u64,
    /// The EFER MSR.
    pub efer: u64,
    /// The global descriptor table register.
    pub gdtr: DescriptorTable,
    /// The interrupt descriptor table register.
    pub idtr: DescriptorTable,
    /// The local descriptor table register: the LDT's selector and its descriptor cache.
    pub ldtr: Segment,
    /// The task register: the current TSS's selector and its descriptor cache.
    pub tr: Segment,
    /// The mode this state decodes in; derived from CR0, EFER and CS, kept for speed.
    pub mode: CpuMode,
    /// Guest instructions the vCPU may still retire before it must return to the run loop.
    /// Generated code subtracts each block's length at its exit.
    pub budget: i64,
    /// A fault raised by a slow path, for the run loop to deliver.
    pub fault: PendingFault,
    /// Set by the store slow path when a store hit a page holding translated code; the block
    /// stops after the current instruction so the run loop can invalidate that code first
    /// (interpreted and baseline code: the JIT's stores into code are not made but handed
    /// back, `memory::SLOW_CODE_RETRY`).
    pub smc_pending: u32,
    /// REP string instructions do one iteration per run, never a run of them in bulk
    /// (`crate::memory::rep_bulk`): set while a debugger or the lockstep comparison with
    /// QEMU steps one instruction, where each iteration is a step, as under TF.
    pub rep_one_at_a_time: bool,
    /// Non-zero while the board has a maskable interrupt waiting (set by the run loop before
    /// it enters generated code, which cannot see devices): an STI in generated code that
    /// enables interrupts then returns to the run loop so it can be delivered.
    pub irq_pending: u32,
    /// Set by generated code when it returned after such an STI: the run loop holds
    /// delivery off for one instruction (the STI shadow) and clears it.
    pub sti_shadow: u32,
    /// Written by generated code at an exit that could have chained but found no target yet:
    /// an opaque token naming the exit, which the translation cache uses to link it.
    pub link: u64,
    /// Blocks whose quickly compiled code has run its count, for the translation cache to
    /// compile again optimised (the first `tier_up_len`; generated code appends, the cache
    /// empties it between blocks). A full list drops a request; its block counts again.
    pub tier_up_ids: [u32; TIER_UP_REQUESTS],
    /// How many of `tier_up_ids` are requests.
    pub tier_up_len: u32,
    /// Chained block transfers taken by generated code (a statistic).
    pub chained: u64,
    /// Exits of generated code that looked their target up (`jump_lookup`: indirect
    /// branches, exits after runtime-class instructions, cross-page exits the TLB check
    /// sent there), found or not (a statistic).
    pub jump_lookups: u64,
    /// Memory accesses that missed the inline TLB check and took a slow path (a statistic).
    pub mem_slow: u64,
    /// Memory accesses of compiled code that the inline TLB check let through (a statistic,
    /// counted only when the JIT's `count_chains` option asks for statistics).
    pub jit_tlb_hits: u64,
    /// Of those, the loads a loop's memo served without reading the TLB (the translator's
    /// `jit::emitter::memo`; a statistic, counted like `jit_tlb_hits`).
    pub jit_memo_hits: u64,
    /// Of those, the accesses a group check served without reading the TLB (the translator's
    /// `jit::emitter::group`; a statistic, counted like `jit_tlb_hits`).
    pub jit_grouped_hits: u64,
    /// Guest instructions retired so far (the TSC and, later, the deterministic clock).
    pub retired: u64,
    /// While generated code runs: the TSC value it would read if `budget` were 0, that is
    /// [`crate::msr::tsc`] at entry plus the budget given. Generated code reads the TSC at an
    /// instruction as `tsc_base - budget + instructions before it in the block`.
    pub tsc_base: u64,
    /// Counters of the address-translation machinery (`--stats`).
    pub paging: PagingStats,
    /// The model-specific registers that live nowhere else.
    pub msr: crate::msr::Msrs,
    /// Results of helpers that return more than one value (wide division).
    pub scratch: [u64; 2],
    /// The result of a helper called from generated code through a register-preserving shim
    /// (the shim's calling convention has no return values; see the translator's
    /// `jit::shims`).
    pub helper_ret: u64,
    /// The arguments (after the CPU state pointer) of a helper called through a shim: the
    /// shim takes only the CPU state pointer, so that its call claims no argument register
    /// that the block keeps guest values in (see the translator's `jit::shims`).
    pub helper_args: [u64; 4],
    /// The guest's physical memory, for the slow paths that generated code calls.
    ///
    /// Invariant: while generated code or a slow path runs, this points to the live
    /// [`PhysMem`] that the run loop owns and no other reference to it is in use. The run loop
    /// sets it before entering generated code; it is null otherwise.
    pub mem: *mut PhysMem,
    /// The host address range of guest RAM (start, end) while generated code runs, set with
    /// [`CpuState::mem`]: generated code compares host addresses with it before it reads a
    /// page next to one a TLB entry gave (a two-page load memo, the translator's
    /// `jit::emitter::memo`), so that such a read stays inside RAM. Zero otherwise.
    pub ram_host: [u64; 2],
    /// Debug registers DR0-DR7 (DR4/DR5 alias DR6/DR7 when CR4.DE is clear).
    pub dr: [u64; 8],
    /// CR8: the task-priority register as MOV CR8 sees it (bits 3:0).
    pub cr8: u64,
    /// The software TLBs, linear page -> host address: `tlb[0]` for supervisor accesses,
    /// `tlb[1]` for user-mode accesses (CPL 3), both checked inline by generated code, and
    /// `tlb[2]` for supervisor data accesses while SMAP is open (CR4.SMAP and EFLAGS.AC:
    /// `memory::data_privilege`), which only the runtime reads. A block's CPL is part of its
    /// key, so generated code knows which one to index; keeping them apart means a privilege
    /// change needs no flush.
    pub tlb: Tlbs,
    /// Which entries of each TLB may be valid (a bit per entry, set when one is filled), so
    /// that a flush, which CR3 writes make frequent, touches only those and not both whole
    /// tables.
    pub tlb_filled: [[u64; TLB_ENTRIES / 64]; TLBS],
    /// Which entries of each TLB were filled from a global translation (G set, CR4.PGE = 1):
    /// a CR3 write keeps them ([`CpuState::flush_tlb_nonglobal`]).
    pub tlb_global: [[u64; TLB_ENTRIES / 64]; TLBS],
    /// Where the TLBs hold a writable entry of each guest-physical page (indexed by page
    /// number; see [`crate::memory::TlbWriters`]), so that taking write permission away from
    /// one page ([`crate::memory::tlb_protect_phys`]) looks at one slot instead of every
    /// filled entry.
    pub tlb_writers: crate::memory::TlbWriters,
    /// The largest page (2 MiB, 4 MiB or 1 GiB) any entry filled since the last flush came
    /// from, or 0: INVLPG must drop every entry of the page its address lies in, and the
    /// TLB holds large pages as 4 KiB pieces.
    pub tlb_large: u64,
    /// The entries fills displaced from `tlb`, which slow paths look in before walking;
    /// generated code never reads them.
    pub tlb_victims: TlbVictims,
    /// The x87, MMX and SSE state, and the operand exchange area of its helpers.
    pub fpu: crane86_fpu::Fpu,
    /// XCR0: the state components XSAVE manages (bit 0 x87, always set; bit 1 SSE; bit 9
    /// PKRU).
    pub xcr0: u64,
    /// PKRU: two bits per protection key i, access-disable (bit 2i) and write-disable
    /// (bit 2i + 1), applied to user-mode pages when CR4.PKE = 1. Written through
    /// [`CpuState::set_pkru`], which keeps the TLB coherent with it.
    pub pkru: u32,
    /// Set when an x87 instruction found an unmasked exception pending with CR0.NE clear:
    /// the board raises IRQ 13 (the PC's FERR# wiring) and clears this.
    pub ferr: u32,
    /// Set by a task switch into a 32-bit TSS whose T flag is set: the run loop raises the
    /// #DB with DR6.BT before the new task's first instruction, and clears this
    /// (`crane86_runtime::task`, SDM Vol. 3 17.3.1.5).
    pub task_trap: bool,
    /// An NMI handler is running: further NMIs wait for its IRET (SDM Vol. 3 6.7.1). The
    /// machine sets it when it delivers an NMI; the IRET that clears it runs in the run
    /// loop (generated code's IRET leaves such an IRET to it).
    pub nmi_blocked: bool,
    /// The shadow page tables behind the TLBs: translations of every recent address space,
    /// kept across CR3 writes (`crate::shadow`).
    pub shadow: Box<ShadowTables>,
    /// The return stack buffer that generated code pushes at near CALLs and checks at near
    /// RETs (a prediction only; see [`crate::rsb`]).
    pub rsb: crate::rsb::Rsb,
    /// What the vCPU thread is doing, for `--stats` (see [`crate::phase`]).
    pub phase: crate::phase::PhaseCell,
}

// SAFETY: the only non-Send field is the `mem` context pointer, which is null outside a run
// and only ever points to memory owned by the thread that runs the CPU. (The TLBs' host
// addends are plain integers, dereferenced only by generated code during a run.)
unsafe impl Send for CpuState {}

impl CpuState {
    /// A CPU in the given mode with flat segments (base 0; real mode: selector 0), all
    /// registers zero, flags 0x2, as the flat test-guest loader wants it.
    ///
    /// GDTR and IDTR have base 0 and limit 0xffff, and LDTR and TR selector 0, base 0, limit
    /// 0xffff, as after reset (SDM Vol. 3 table 10-1); LDTR holds a present LDT type and TR a
    /// present busy TSS type (16-bit in real mode, 32/64-bit otherwise), the attributes VMX
    /// expects for them.
    pub fn new(mode: CpuMode) -> CpuState {
        let (cs, data, cr0, efer) = match mode {
            CpuMode::Real16 => (Segment::real(0), Segment::real(0), CR0_ET, 0),
            CpuMode::Prot16 => (
                Segment::flat(0x08, SEG_P | 0x1b | SEG_G),
                Segment::flat(0x10, SEG_P | 0x13 | SEG_G),
                CR0_ET | CR0_PE | CR0_MP | CR0_NE,
                0,
            ),
            CpuMode::Prot32 => (
                Segment::flat(0x08, SEG_P | 0x1b | SEG_DB | SEG_G),
                Segment::flat(0x10, SEG_P | 0x13 | SEG_DB | SEG_G),
                CR0_ET | CR0_PE | CR0_MP | CR0_NE,
                0,
            ),
            CpuMode::Long64 => (
                Segment::flat(0x08, SEG_P | 0x1b | SEG_L | SEG_G),
                Segment::flat(0x10, SEG_P | 0x13 | SEG_DB | SEG_G),
                CR0_ET | CR0_PE | CR0_PG | CR0_MP | CR0_NE,
                EFER_LME | EFER_LMA,
            ),
        };
        let mut seg = [data; 6];
        seg[SegReg::Cs as usize] = cs;
        CpuState {
            gpr: [0; 16],
            rip: 0,
            cc: LazyFlags::from_eflags(0),
            rflags: flags::FIXED1,
            seg,
            cr0,
            cr2: 0,
            cr3: 0,
            // Flat protected-mode guests start as an OS would leave user code: the FPU in
            // native error mode, SSE enabled with #XM.
            cr4: match mode {
                CpuMode::Long64 => CR4_PAE | CR4_OSFXSR | CR4_OSXMMEXCPT,
                CpuMode::Real16 => 0,
                _ => CR4_OSFXSR | CR4_OSXMMEXCPT,
            },
            efer,
            gdtr: DescriptorTable {
                base: 0,
                limit: 0xffff,
            },
            idtr: DescriptorTable {
                base: 0,
                limit: 0xffff,
            },
            ldtr: Segment {
                base: 0,
                limit: 0xffff,
                selector: 0,
                attrs: SEG_P | 0x02,
            },
            tr: Segment {
                base: 0,
                limit: 0xffff,
                selector: 0,
                attrs: SEG_P | if mode == CpuMode::Real16 { 0x03 } else { 0x0b },
            },
            mode,
            exit_request: AtomicU32::new(0),
            budget: 0,
            fault: PendingFault::default(),
            smc_pending: 0,
            rep_one_at_a_time: false,
            irq_pending: 0,
            sti_shadow: 0,
            link: 0,
            tier_up_ids: [0; TIER_UP_REQUESTS],
            tier_up_len: 0,
            chained: 0,
            jump_lookups: 0,
            mem_slow: 0,
            jit_tlb_hits: 0,
            jit_memo_hits: 0,
            jit_grouped_hits: 0,
            retired: 0,
            tsc_base: 0,
            paging: PagingStats::default(),
            msr: crate::msr::Msrs::default(),
            scratch: [0; 2],
            helper_ret: 0,
            helper_args: [0; 4],
            mem: std::ptr::null_mut(),
            ram_host: [0; 2],
            dr: [0, 0, 0, 0, 0, 0, DR6_INIT, DR7_INIT],
            cr8: 0,
            fpu: crane86_fpu::Fpu::default(),
            xcr0: 1,
            pkru: 0,
            ferr: 0,
            task_trap: false,
            nmi_blocked: false,
            rsb: crate::rsb::Rsb::EMPTY,
            phase: crate::phase::PhaseCell::default(),
            tlb: Tlbs::new(),
            tlb_filled: [[0; TLB_ENTRIES / 64]; TLBS],
            tlb_global: [[0; TLB_ENTRIES / 64]; TLBS],
            tlb_writers: crate::memory::TlbWriters::default(),
            tlb_large: 0,
            tlb_victims: TlbVictims::EMPTY,
            shadow: Box::new(ShadowTables::new()),
        }
    }

    /// Reads a 64-bit general register.
    pub fn gpr(&self, r: Gpr) -> u64 {
        self.gpr[r as usize]
    }

    /// Writes a 64-bit general register.
    pub fn set_gpr(&mut self, r: Gpr, v: u64) {
        self.gpr[r as usize] = v;
    }

    /// A segment register's cache.
    pub fn seg(&self, s: SegReg) -> &Segment {
        &self.seg[s as usize]
    }

    /// True when the stack segment is 32-bit (SS.B) outside 64-bit mode.
    pub fn stack_is_32(&self) -> bool {
        self.seg[SegReg::Ss as usize].attrs & SEG_DB != 0
    }

    /// Asks the vCPU to come back to the run loop soon and stop the run; callable from any
    /// thread.
    pub fn request_exit(&self) {
        self.exit_request.fetch_or(EXIT_STOP, Ordering::Release);
    }

    /// Asks the vCPU to come back to the run loop soon so that the machine can look at its
    /// devices (an interrupt may be pending); the run goes on.
    pub fn request_device_attention(&self) {
        self.exit_request.fetch_or(EXIT_DEVICE, Ordering::Release);
    }

    /// Records a fault for the run loop to deliver.
    pub fn raise(&mut self, f: crate::Fault, address: u64) {
        self.fault = PendingFault {
            pending: 1,
            vector: f.exception as u32,
            error_code: f.error_code,
            _pad: 0,
            address,
        };
    }

    /// Asks for the current instruction to be run again by the interpreter: generated code
    /// leaves through its fault exit (precise, with the instructions before it retired and
    /// nothing of this one), and the run loop takes the request with [`Self::take_retry`]
    /// instead of a fault (see `memory::SLOW_CODE_RETRY`).
    pub fn request_retry(&mut self) {
        self.fault = PendingFault {
            pending: PendingFault::RETRY,
            ..PendingFault::default()
        };
    }

    /// Whether generated code asked for its current instruction to be run again interpreted
    /// ([`Self::request_retry`], or a page-crossing block's entry check), and why; clears
    /// the request. The caller runs the block at RIP in the interpreter next.
    pub fn take_retry(&mut self) -> Option<Retry> {
        let why = match self.fault.pending {
            PendingFault::RETRY => Retry::Store,
            PendingFault::RECHECK => Retry::SecondPage,
            _ => return None,
        };
        self.fault = PendingFault::default();
        Some(why)
    }

    /// Takes the pending fault, if any.
    pub fn take_fault(&mut self) -> Option<crate::Fault> {
        if self.fault.pending == 0 {
            return None;
        }
        debug_assert!(
            !matches!(
                self.fault.pending,
                PendingFault::RETRY | PendingFault::RECHECK
            ),
            "a retry taken as a fault"
        );
        let f = self.fault;
        self.fault = PendingFault::default();
        Some(crate::Fault {
            exception: crate::Exception::from_vector(f.vector as u8)
                .unwrap_or(crate::Exception::GeneralProtection),
            error_code: f.error_code,
        })
    }

    /// Loads PKRU (WRPKRU, XRSTOR). The TLB's read and write tags were computed with the
    /// old value (see `memory::tlb_fill`), so a change flushes it.
    pub fn set_pkru(&mut self, v: u32) {
        if v != self.pkru {
            self.pkru = v;
            self.flush_tlb();
        }
    }

    /// Drops every TLB entry, global ones included (a paging-mode change, CR4.PGE, PKRU,
    /// a task switch).
    pub fn flush_tlb(&mut self) {
        self.shadow.clear();
        self.tlb_global = [[0; TLB_ENTRIES / 64]; TLBS];
        self.flush_tlb_nonglobal();
    }

    /// Drops every TLB entry but those filled from global translations, as a CR3 write does
    /// (SDM Vol. 3 4.10.4.1). Linux maps the kernel with global pages (without PTI): its
    /// text, stacks and direct map stay cached across the context switches of a pipe.
    pub fn flush_tlb_nonglobal(&mut self) {
        self.paging.tlb_flushes += 1;
        // The victim buffers do not remember which entries were global.
        crate::memory::flush_victims(self);
        let mut large_left = false;
        for ((tlb, filled), global) in self
            .tlb
            .iter_mut()
            .zip(self.tlb_filled.iter_mut())
            .zip(self.tlb_global.iter())
        {
            for (w, word) in filled.iter_mut().enumerate() {
                let mut bits = *word & !global[w];
                *word &= global[w];
                large_left |= *word != 0;
                while bits != 0 {
                    tlb[w * 64 + bits.trailing_zeros() as usize] = TlbEntry::INVALID;
                    bits &= bits - 1;
                }
            }
        }
        if !large_left {
            self.tlb_large = 0;
        }
        // Return predictions are used without a TLB check (see `crate::rsb`): keep those
        // whose page's fetch translation survived (a global one), drop the rest.
        let tlb = &self.tlb;
        self.rsb.forget(|linear| {
            let i = crate::memory::tlb_index(linear);
            (0..2).all(|n| tlb[n][i].exec != linear & !0xfff)
        });
    }
}

impl Clone for CpuState {
    fn clone(&self) -> CpuState {
        CpuState {
            gpr: self.gpr,
            rip: self.rip,
            cc: self.cc,
            rflags: self.rflags,
            seg: self.seg,
            cr0: self.cr0,
            cr2: self.cr2,
            cr3: self.cr3,
            cr4: self.cr4,
            efer: self.efer,
            gdtr: self.gdtr,
            idtr: self.idtr,
            ldtr: self.ldtr,
            tr: self.tr,
            mode: self.mode,
            exit_request: AtomicU32::new(self.exit_request.load(Ordering::Relaxed)),
            budget: self.budget,
            fault: self.fault,
            smc_pending: self.smc_pending,
            rep_one_at_a_time: self.rep_one_at_a_time,
            irq_pending: self.irq_pending,
            sti_shadow: self.sti_shadow,
            link: self.link,
            tier_up_ids: self.tier_up_ids,
            tier_up_len: self.tier_up_len,
            chained: self.chained,
            jump_lookups: self.jump_lookups,
            mem_slow: self.mem_slow,
            jit_tlb_hits: self.jit_tlb_hits,
            jit_memo_hits: self.jit_memo_hits,
            jit_grouped_hits: self.jit_grouped_hits,
            retired: self.retired,
            tsc_base: self.tsc_base,
            paging: self.paging,
            msr: self.msr,
            scratch: self.scratch,
            helper_ret: self.helper_ret,
            helper_args: self.helper_args,
            mem: std::ptr::null_mut(),
            ram_host: [0; 2],
            dr: self.dr,
            cr8: self.cr8,
            fpu: self.fpu,
            xcr0: self.xcr0,
            pkru: self.pkru,
            ferr: self.ferr,
            task_trap: self.task_trap,
            nmi_blocked: self.nmi_blocked,
            // Predictions name the code of the cache that ran this state: a copy starts empty.
            rsb: crate::rsb::Rsb::EMPTY,
            tlb: self.tlb.clone(),
            tlb_filled: self.tlb_filled,
            tlb_global: self.tlb_global,
            tlb_writers: self.tlb_writers.clone(),
            tlb_large: self.tlb_large,
            tlb_victims: self.tlb_victims,
            shadow: self.shadow.clone(),
            // A copy runs on its own: it records its phases apart.
            phase: crate::phase::PhaseCell::default(),
        }
    }
}

impl std::fmt::Debug for CpuState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, r) in Gpr::ALL.iter().enumerate() {
            write!(f, "{:>3}={:016x}", r.name(), self.gpr[i])?;
            f.write_str(if i % 4 == 3 { "\n" } else { " " })?;
        }
        writeln!(
            f,
            "rip={:016x} mode={:?} cc={:x?}",
            self.rip, self.mode, self.cc
        )
    }
}
