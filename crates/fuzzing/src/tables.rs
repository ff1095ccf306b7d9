//! Random page tables and descriptor tables under a fixed walk.
//!
//! A valid machine first: an identity map of the first 2 MiB (32-bit paging, PAE, 4-level,
//! or no paging), a GDT with kernel and user code and data, two TSSs, an LDT and call gates,
//! an IDT whose every vector reaches one handler. The input then patches those tables (byte
//! or entry writes anywhere in them) and chooses CR0.WP, CR4.PSE/PGE/SMEP/SMAP, EFER.NXE and
//! the operands of a fixed program of probes: loads and stores at chosen addresses (also
//! from user mode, and with EFLAGS.AC), segment register loads, LLDT/LTR, LAR/LSL/VERR/VERW,
//! INVLPG and CR3 reloads, INT n, far calls and jumps (through call gates and, outside long
//! mode, task switches), IRET to user mode, and the table stores. Each probe records its
//! number before it runs; the handler every exception and interrupt reaches resets the stack
//! and data segments and goes on with the next probe, so a faulting probe does not end the
//! run, while a fault the patched tables make undeliverable ends it in a triple fault.
//!
//! The oracle: both tiers end the same way in the same state, and neither panics.

use crane86_machine::{Machine, RunEnd};
use crane86_runtime::paging::{CR0_WP, CR4_PGE, CR4_PSE, CR4_SMAP, CR4_SMEP, EFER_NXE};
use crane86_runtime::segment::{encode_descriptor, encode_gate};
use crane86_runtime::state::{CR0_PG, CR4_PAE, SEG_DB, SEG_G, SEG_L, SEG_P};
use crane86_runtime::{CpuMode, DescriptorTable, SegReg, Segment};
use crane86_translator::Tier;
use iced_x86::code_asm::*;

use crate::code::machine;
use crate::compare::tiers_agree;
use crate::{Bytes, Finding};

/// Guest RAM.
const RAM: u64 = 2 << 20;
/// The program.
const PROGRAM: u64 = 0x1000;
/// The handler every vector, call gate and task switch reaches.
const HANDLER: u64 = 0x8000;
/// The number of the probe running, and the table of probe addresses.
const STEP: u64 = 0x9000;
const JUMPS: u64 = 0x9100;
/// Far pointers the far CALL and JMP probes use.
const FARPTR: u64 = 0x9800;
/// Stack top (kernel), and the user stack.
const STACK: u64 = 0xf000;
const USER_STACK: u64 = 0xe000;
/// The tables the input patches: `TABLES..TABLES + TABLES_LEN`.
const TABLES: u64 = 0x1_0000;
const TABLES_LEN: u64 = 0x8000;
const GDT: u64 = 0x1_4000;
const LDT: u64 = 0x1_4800;
const IDT: u64 = 0x1_5000;
const TSS_A: u64 = 0x1_6000;
const TSS_B: u64 = 0x1_6800;
/// A data page inside the tables area: the SGDT/SIDT probe stores here.
const DATA: u64 = 0x1_7000;
/// Instructions per run.
const BUDGET: u64 = 5_000;
/// Patches read from one input.
const MAX_PATCHES: usize = 64;

/// Paging modes the settings byte chooses among.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Paging {
    Bits32,
    Pae,
    Long,
    Off,
}

/// Selectors of the template GDT.
const CODE32: u16 = 0x08;
const DATA0: u16 = 0x10;
const CODE64: u16 = 0x18;
const USER_CODE32: u16 = 0x23;
const USER_DATA: u16 = 0x2b;
const TSS_A_SEL: u16 = 0x30;
const TSS_B_SEL: u16 = 0x40;
const CALL_GATE: u16 = 0x63;
const USER_CODE64: u16 = 0x73;
const LDT_SEL: u16 = 0x50;
const CODE16: u16 = 0x78;

/// A segment or system descriptor for the template (bases here are below 4 GiB).
fn descriptor(base: u64, limit: u32, access: u8, flags: u8) -> u64 {
    encode_descriptor(base as u32, limit, access, flags)
}

/// A gate (interrupt, trap or call) to `offset` in `selector` (the handler is below 4 GiB;
/// a long-mode gate's second quadword, the offset's high half, is then 0).
fn gate(offset: u64, selector: u16, access: u8) -> u64 {
    encode_gate(selector, offset as u32, access)
}

/// Writes the valid machine: page tables, GDT, LDT, IDT and TSSs.
fn template(m: &mut Machine, paging: Paging) {
    let w64 = |m: &mut Machine, at: u64, v: u64| m.mem.write_phys(at, 8, v);
    let long = paging == Paging::Long;
    // Present, writable, user: everything is reachable from both privilege levels until a
    // patch says otherwise.
    let flags = 0x7;
    match paging {
        Paging::Bits32 => {
            m.mem.write_phys(TABLES, 4, 0x1_3000 | flags);
            // A 4 MiB page aliasing physical 0 at 4 MiB (used when CR4.PSE is set).
            m.mem.write_phys(TABLES + 4, 4, 0x87);
            for i in 0..512 {
                m.mem.write_phys(0x1_3000 + 4 * i, 4, i << 12 | flags);
            }
        }
        Paging::Pae => {
            m.mem.write_phys(TABLES, 8, 0x1_1000 | 1);
            w64(m, 0x1_1000, 0x1_2000 | flags);
            w64(m, 0x1_1008, 0x83);
            for i in 0..512 {
                w64(m, 0x1_2000 + 8 * i, i << 12 | flags);
            }
        }
        Paging::Long => {
            w64(m, TABLES, 0x1_1000 | flags);
            w64(m, 0x1_1000, 0x1_2000 | flags);
            w64(m, 0x1_2000, 0x1_3000 | flags);
            w64(m, 0x1_2008, 0x87);
            // The top of the address space, too: PML4[511] reuses the same PDPT.
            w64(m, TABLES + 511 * 8, 0x1_1000 | flags);
            for i in 0..512 {
                w64(m, 0x1_3000 + 8 * i, i << 12 | flags);
            }
        }
        Paging::Off => {}
    }
    let tss = |base| descriptor(base, 0x67, 0x89, 0);
    let gdt = [
        0,
        descriptor(0, 0xfffff, 0x9a, 0xc),
        descriptor(0, 0xfffff, 0x92, 0xc),
        descriptor(0, 0xfffff, 0x9a, 0xa),
        descriptor(0, 0xfffff, 0xfa, 0xc),
        descriptor(0, 0xfffff, 0xf2, 0xc),
        tss(TSS_A) | 2 << 40, // busy: it is TR
        0,
        tss(TSS_B),
        0,
        descriptor(LDT, 0xff, 0x82, 0),
        0,
        gate(HANDLER, if long { CODE64 } else { CODE32 }, 0xec),
        0,
        descriptor(0, 0xfffff, 0xfa, 0xa),
        descriptor(0, 0xffff, 0x9a, 0x0),
    ];
    for (i, d) in gdt.iter().enumerate() {
        w64(m, GDT + 8 * i as u64, *d);
    }
    // The LDT: null, user data (selector 0x0f), kernel code (0x14).
    w64(m, LDT + 8, descriptor(0, 0xfffff, 0xf2, 0xc));
    w64(m, LDT + 16, descriptor(0, 0xfffff, 0x9a, 0xc));
    for v in 0..256u64 {
        let access = match v {
            0x80 => 0xee,
            _ => 0x8e,
        };
        if long {
            w64(m, IDT + 16 * v, gate(HANDLER, CODE64, access));
            w64(m, IDT + 16 * v + 8, HANDLER >> 32);
        } else if v == 0x81 {
            // A task gate to TSS B.
            w64(m, IDT + 8 * v, u64::from(TSS_B_SEL) << 16 | 0x85 << 40);
        } else {
            w64(m, IDT + 8 * v, gate(HANDLER, CODE32, access));
        }
    }
    if long {
        w64(m, TSS_A + 4, STACK);
        w64(m, TSS_A + 0x24, STACK);
    } else {
        m.mem.write_phys(TSS_A + 4, 4, STACK);
        m.mem.write_phys(TSS_A + 8, 4, u64::from(DATA0));
        let b = [
            (0x1c, TABLES),
            (0x20, HANDLER),
            (0x24, 2),
            (0x38, STACK),
            (0x48, u64::from(DATA0)),
            (0x4c, u64::from(CODE32)),
            (0x50, u64::from(DATA0)),
            (0x54, u64::from(DATA0)),
            (0x58, u64::from(DATA0)),
            (0x5c, u64::from(DATA0)),
        ];
        for (off, v) in b {
            m.mem.write_phys(TSS_B + off, 4, v);
        }
    }
    for t in [TSS_A, TSS_B] {
        m.mem.write_phys(t + 0x66, 2, 0x68);
    }
}

/// The operands the input chooses for the probes.
struct Operands {
    addrs: [u64; 16],
    sels: [u16; 8],
    vectors: [u8; 2],
}

/// An address from four input bytes: mostly in the tables, low memory or on page
/// boundaries, sometimes anything (in long mode also in the top half).
fn address(raw: u32, long: bool) -> u64 {
    let r = u64::from(raw);
    match raw >> 30 {
        0 => TABLES + (r & (TABLES_LEN - 1)),
        1 => r & 0x3f_ffff,
        2 => (r & 0xffff) << 12,
        _ if long => 0xffff_8000_0000_0000 | (r & 0x3fff_ffff) << 12,
        _ => r,
    }
}

/// A selector from two input bytes: mostly one of the template's (with a chosen RPL), so
/// that patches to those descriptors matter, sometimes any value.
fn selector(raw: u16) -> u16 {
    const KNOWN: [u16; 14] = [
        0,
        CODE32,
        DATA0,
        CODE64,
        USER_CODE32,
        USER_DATA,
        TSS_A_SEL,
        TSS_B_SEL,
        LDT_SEL,
        CALL_GATE,
        USER_CODE64,
        CODE16,
        0x0f, // LDT: user data
        0x14, // LDT: kernel code
    ];
    if raw & 0x8000 != 0 {
        raw & 0x7fff
    } else {
        KNOWN[usize::from(raw) % KNOWN.len()] & !3 | (raw >> 8 & 3)
    }
}

/// Assembles the probes for `bits`-bit code; returns the code and its probes' addresses.
fn program(bits: u32, ops: &Operands) -> Result<(Vec<u8>, Vec<u64>), IcedError> {
    // The IRET probe needs the address of code after it: assemble once to learn it (the
    // MOV immediates have a fixed size, so the second pass lays out the same).
    let (_, _, user_ip) = assemble(bits, ops, PROGRAM)?;
    let (code, ips, _) = assemble(bits, ops, user_ip)?;
    Ok((code, ips))
}

/// One assembly pass; returns the code, the probes' addresses and the user-mode entry.
fn assemble(
    bits: u32,
    ops: &Operands,
    user_ip: u64,
) -> Result<(Vec<u8>, Vec<u64>, u64), IcedError> {
    let long = bits == 64;
    let mut a = CodeAssembler::new(bits)?;
    let mut labels = Vec::new();
    let mut step = 0u32;
    macro_rules! probe {
        ($a:ident, $body:block) => {{
            let mut l = $a.create_label();
            $a.set_label(&mut l)?;
            $a.mov(dword_ptr(STEP), step)?;
            step += 1;
            labels.push(l);
            $body
        }};
    }
    // Loads, then stores, at chosen addresses.
    for i in 0..8 {
        probe!(a, {
            if long {
                a.mov(rbx, ops.addrs[i])?;
                if i < 4 {
                    a.mov(eax, dword_ptr(rbx))?;
                } else {
                    a.mov(dword_ptr(rbx), eax)?;
                }
            } else {
                a.mov(ebx, ops.addrs[i] as u32)?;
                if i < 4 {
                    a.mov(eax, dword_ptr(ebx))?;
                } else {
                    a.mov(dword_ptr(ebx), eax)?;
                }
            }
        });
    }
    // Segment loads and accesses through them.
    probe!(a, {
        a.mov(ax, u32::from(ops.sels[0]))?;
        a.mov(ds, ax)?;
        a.mov(eax, dword_ptr(0x100))?;
    });
    probe!(a, {
        a.mov(ax, u32::from(ops.sels[1]))?;
        a.mov(fs, ax)?;
        a.mov(eax, dword_ptr(0x10).fs())?;
    });
    probe!(a, {
        a.mov(ax, u32::from(ops.sels[2]))?;
        a.lldt(ax)?;
        a.mov(ax, 0x0f)?;
        a.mov(gs, ax)?;
        a.mov(dword_ptr(0x20).gs(), eax)?;
    });
    probe!(a, {
        a.mov(edx, u32::from(ops.sels[3]))?;
        a.lar(eax, edx)?;
        a.lsl(ecx, edx)?;
        a.mov(ax, dx)?;
        a.verr(ax)?;
        a.verw(ax)?;
    });
    // TLB: INVLPG and a CR3 reload between accesses (the stores above may have written the
    // tables).
    probe!(a, {
        if long {
            a.mov(rbx, ops.addrs[8])?;
            a.invlpg(byte_ptr(rbx))?;
            a.mov(eax, dword_ptr(rbx))?;
            a.mov(rax, cr3)?;
            a.mov(cr3, rax)?;
            a.mov(rbx, ops.addrs[9])?;
            a.mov(dword_ptr(rbx), eax)?;
        } else {
            a.mov(ebx, ops.addrs[8] as u32)?;
            a.invlpg(byte_ptr(ebx))?;
            a.mov(eax, dword_ptr(ebx))?;
            a.mov(eax, cr3)?;
            a.mov(cr3, eax)?;
            a.mov(ebx, ops.addrs[9] as u32)?;
            a.mov(dword_ptr(ebx), eax)?;
        }
    });
    probe!(a, {
        a.int(u32::from(ops.vectors[0]))?;
    });
    // Far transfers through chosen selectors: the pointers at FARPTR hold the selectors,
    // and the offsets reach the handler.
    probe!(a, {
        a.call(fword_ptr(FARPTR))?;
    });
    probe!(a, {
        a.jmp(fword_ptr(FARPTR + 8))?;
    });
    probe!(a, {
        a.mov(ax, u32::from(ops.sels[6]))?;
        a.ltr(ax)?;
        a.sgdt(ptr(DATA))?;
        a.sidt(ptr(DATA + 16))?;
        a.sldt(word_ptr(DATA + 32))?;
        a.str(word_ptr(DATA + 34))?;
    });
    // Supervisor access to user pages with AC set (SMAP), then to user mode.
    probe!(a, {
        a.stac()?;
        if long {
            a.mov(rbx, ops.addrs[10])?;
            a.mov(eax, dword_ptr(rbx))?;
        } else {
            a.mov(ebx, ops.addrs[10] as u32)?;
            a.mov(eax, dword_ptr(ebx))?;
        }
        a.clac()?;
    });
    let mut user = a.create_label();
    probe!(a, {
        // An IRET frame to CPL 3 at `user` (its address from the first assembly pass),
        // with the user code selector the input chose.
        let frame = [
            u64::from(USER_DATA),
            USER_STACK,
            0x202,
            u64::from(ops.sels[7] | 3),
            user_ip,
        ];
        for v in frame {
            if long {
                a.mov(rax, v)?;
                a.push(rax)?;
            } else {
                a.mov(eax, v as u32)?;
                a.push(eax)?;
            }
        }
        if long {
            a.iretq()?;
        } else {
            a.iretd()?;
        }
    });
    a.set_label(&mut user)?;
    a.nop()?;
    probe!(a, {
        if long {
            a.mov(rbx, ops.addrs[11])?;
            a.mov(eax, dword_ptr(rbx))?;
            a.mov(rbx, ops.addrs[12])?;
            a.mov(dword_ptr(rbx), eax)?;
        } else {
            a.mov(ebx, ops.addrs[11] as u32)?;
            a.mov(eax, dword_ptr(ebx))?;
            a.mov(ebx, ops.addrs[12] as u32)?;
            a.mov(dword_ptr(ebx), eax)?;
        }
        a.int(u32::from(ops.vectors[1]))?;
    });
    // Execute at a chosen address (NX, SMEP, a page the tables do not map).
    probe!(a, {
        if long {
            a.mov(rbx, ops.addrs[13])?;
            a.call(rbx)?;
        } else {
            a.mov(ebx, ops.addrs[13] as u32)?;
            a.call(ebx)?;
        }
    });
    debug_assert_eq!(step as usize, labels.len());
    let mut end = a.create_label();
    a.set_label(&mut end)?;
    a.hlt()?;
    let r = a.assemble_options(
        PROGRAM,
        iced_x86::BlockEncoderOptions::RETURN_NEW_INSTRUCTION_OFFSETS,
    )?;
    let mut ips = labels
        .iter()
        .map(|l| r.label_ip(l))
        .collect::<Result<Vec<_>, _>>()?;
    ips.push(r.label_ip(&end)?);
    let user_ip = r.label_ip(&user)?;
    Ok((r.inner.code_buffer, ips, user_ip))
}

/// The handler: fresh stack and data segments, then the probe after the one that ran.
fn handler(bits: u32) -> Result<Vec<u8>, IcedError> {
    let mut a = CodeAssembler::new(bits)?;
    if bits == 64 {
        a.mov(rsp, STACK)?;
        a.mov(eax, dword_ptr(STEP))?;
        a.inc(eax)?;
        a.mov(dword_ptr(STEP), eax)?;
        a.jmp(qword_ptr(JUMPS + rax * 8))?;
    } else {
        a.mov(ax, u32::from(DATA0))?;
        a.mov(ss, ax)?;
        a.mov(esp, STACK as u32)?;
        a.mov(ds, ax)?;
        a.mov(es, ax)?;
        a.mov(eax, dword_ptr(STEP))?;
        a.inc(eax)?;
        a.mov(dword_ptr(STEP), eax)?;
        a.jmp(dword_ptr(JUMPS + eax * 4))?;
    }
    a.assemble(HANDLER)
}

/// Sets up `m` for one input: template, patches, code, CPU state.
fn setup(m: &mut Machine, data: &[u8]) -> Result<(), Finding> {
    let mut input = Bytes::new(data);
    let settings = input.u8();
    let paging =
        [Paging::Bits32, Paging::Pae, Paging::Long, Paging::Off][usize::from(settings & 3)];
    let long = paging == Paging::Long;
    let ops = Operands {
        addrs: std::array::from_fn(|_| address(input.u32(), long)),
        sels: std::array::from_fn(|_| selector(input.u16())),
        vectors: [input.u8(), input.u8()],
    };
    // INT3 everywhere but the descriptor tables: a far transfer or call to a chosen address
    // that lands in unused memory raises #BP at once and the handler goes on with the next
    // probe, instead of running (and compiling) pages of ADD [EAX], AL. Unused page-table
    // entries read 0xCCCC..., which is not present (bit 0 clear) at every level.
    m.mem.ram_mut().fill(0xcc);
    m.mem.ram_mut()[GDT as usize..DATA as usize].fill(0);
    template(m, paging);
    for _ in 0..MAX_PATCHES {
        if !input.more() {
            break;
        }
        let at = input.u16();
        if at & 0x8000 != 0 {
            let off = u64::from(at & 0x7ff8);
            m.mem.write_phys(TABLES + off, 8, input.u64());
        } else {
            m.mem
                .write_phys(TABLES + u64::from(at & 0x7fff), 1, u64::from(input.u8()));
        }
    }
    let bits = if long { 64 } else { 32 };
    let asm = |e: IcedError| Finding(format!("cannot assemble the probes: {e}"));
    let (code, probes) = program(bits, &ops).map_err(asm)?;
    m.mem
        .load(PROGRAM, &code)
        .map_err(|e| Finding(e.to_string()))?;
    m.mem
        .load(HANDLER, &handler(bits).map_err(asm)?)
        .map_err(|e| Finding(e.to_string()))?;
    let end = *probes.last().expect("the end label");
    for i in 0..64u64 {
        let target = probes.get(i as usize).copied().unwrap_or(end);
        m.mem.write_phys(
            JUMPS + i * if long { 8 } else { 4 },
            if long { 8 } else { 4 },
            target,
        );
    }
    // Far pointers: offset, then the input's selectors (far CALL, far JMP).
    for (i, sel) in [ops.sels[4], ops.sels[5]].into_iter().enumerate() {
        let at = FARPTR + 8 * i as u64;
        m.mem.write_phys(at, 4, HANDLER);
        m.mem.write_phys(at + 4, 2, u64::from(sel));
    }

    let mode = if long {
        CpuMode::Long64
    } else {
        CpuMode::Prot32
    };
    m.cpu = m.flat_cpu(mode);
    let c = &mut m.cpu;
    c.gdtr = DescriptorTable {
        base: GDT,
        limit: 0x7f,
    };
    c.idtr = DescriptorTable {
        base: IDT,
        limit: if long { 0xfff } else { 0x7ff },
    };
    c.tr = Segment {
        selector: TSS_A_SEL,
        base: TSS_A,
        limit: 0x67,
        attrs: SEG_P | 0x0b,
    };
    let code_seg = if long {
        Segment::flat(CODE64, SEG_P | 0x1b | SEG_L | SEG_G)
    } else {
        Segment::flat(CODE32, SEG_P | 0x1b | SEG_DB | SEG_G)
    };
    c.seg[SegReg::Cs as usize] = code_seg;
    c.cr0 &= !CR0_PG;
    c.cr4 &= !CR4_PAE;
    if settings & 0x04 != 0 {
        c.cr0 |= CR0_WP;
    }
    for (bit, v) in [
        (0x08, CR4_PSE),
        (0x10, CR4_PGE),
        (0x20, CR4_SMEP),
        (0x40, CR4_SMAP),
    ] {
        if settings & bit != 0 {
            c.cr4 |= v;
        }
    }
    if settings & 0x80 != 0 {
        c.efer |= EFER_NXE;
    }
    match paging {
        Paging::Off => {}
        Paging::Bits32 => c.cr0 |= CR0_PG,
        Paging::Pae | Paging::Long => {
            c.cr0 |= CR0_PG;
            c.cr4 |= CR4_PAE;
        }
    }
    c.cr3 = TABLES;
    c.gpr[4] = STACK;
    c.rip = PROGRAM;
    c.flush_tlb();
    Ok(())
}

/// Runs the probes over the tables `data` describes, in both tiers.
pub fn run(data: &[u8]) -> Result<(), Finding> {
    let mut ends: Vec<RunEnd> = Vec::new();
    let mut machines = Vec::new();
    for tier in [Tier::Interp, Tier::Jit] {
        let mut m = machine(tier, RAM);
        setup(&mut m, data)?;
        let end = m
            .run(Some(BUDGET))
            .map_err(|e| Finding(format!("{tier:?}: machine error: {e}")))?;
        ends.push(end);
        machines.push(m);
    }
    tiers_agree(&machines[0], &ends[0], &machines[1], &ends[1])
}

/// How far the probes got in the interpreter: the probe number and how the run ended.
pub fn interp_progress(data: &[u8]) -> Result<(u64, RunEnd), Finding> {
    let mut m = machine(Tier::Interp, RAM);
    setup(&mut m, data)?;
    let end = m
        .run(Some(BUDGET))
        .map_err(|e| Finding(format!("machine error: {e}")))?;
    Ok((m.mem.peek_phys(STEP, 4), end))
}
