//! Benchmarks of the machine's parts, each through a small guest written for it (or, for the
//! Rust-side paths, a direct call): block dispatch and chaining, interrupt round trips, the
//! TLB's fast and miss paths, and the translation cache's lookup. Every guest runs warm (its
//! blocks already translated, as they are in a long-running guest) in each tier that runs
//! it: the interpreter, the baseline tier and Cranelift's code. Tier throughput on a whole
//! program and compile time per block are in `tiers.rs`.
//!
//! `cargo bench --bench parts`; `cargo test --release --bench parts` runs each guest once
//! and checks its answer.

use std::time::Duration;

use crane86_machine::{Machine, MachineConfig, RunEnd};
use crane86_runtime::memory::{read_as, Privilege};
use crane86_runtime::{CpuMode, DescriptorTable};
use crane86_translator::Tier;
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use iced_x86::code_asm::*;
use iced_x86::BlockEncoderOptions;

/// Where every guest's code starts.
const CODE: u64 = 0x1000;
/// The flat machine's isa-debug-exit port: the guest's answer.
const EXIT_PORT: u16 = 0xf4;
/// A port nothing decodes: a write to it is a run-loop round trip and nothing else.
const UNCLAIMED_PORT: u16 = 0x80;

/// The tiers each guest runs in.
const TIERS: [(&str, Tier); 3] = [
    ("interp", Tier::Interp),
    ("baseline", Tier::Baseline),
    ("jit", Tier::Jit),
];

/// A guest for one measurement: code, the mode it runs in, and how many of the measured
/// events (transfers, round trips, loads) one run makes.
struct Guest {
    code: Vec<u8>,
    mode: CpuMode,
    events: u64,
    ram: u64,
    /// Descriptor tables the guest needs, written before each run: (GDT, IDT) as (address,
    /// bytes); empty when it needs none.
    tables: Vec<(u64, Vec<u8>)>,
    gdtr: Option<DescriptorTable>,
    idtr: Option<DescriptorTable>,
}

impl Guest {
    fn flat(code: Vec<u8>, mode: CpuMode, events: u64) -> Guest {
        Guest {
            code,
            mode,
            events,
            ram: 16 << 20,
            tables: Vec::new(),
            gdtr: None,
            idtr: None,
        }
    }
}

/// Ends a guest: writes the loop counter's low byte (0 when every iteration ran) to the exit
/// port.
fn finish(a: &mut CodeAssembler) {
    if a.bitness() == 64 {
        a.mov(rax, rcx).unwrap();
    } else {
        a.mov(eax, ecx).unwrap();
    }
    a.out(EXIT_PORT as u32, al).unwrap();
    a.hlt().unwrap();
}

/// Loops of `n` iterations through a ring of 16 blocks, each ending in a direct jump to the
/// next: 16 transfers per iteration, all chained in compiled code.
fn direct_ring(n: u32) -> Guest {
    let mut a = CodeAssembler::new(64).unwrap();
    let mut labels: Vec<CodeLabel> = (0..16).map(|_| a.create_label()).collect();
    let mut done = a.create_label();
    a.mov(ecx, n).unwrap();
    a.xor(eax, eax).unwrap();
    for i in 0..16 {
        a.set_label(&mut labels[i]).unwrap();
        a.add(rax, 1).unwrap();
        if i == 15 {
            a.dec(ecx).unwrap();
            a.jz(done).unwrap();
            a.jmp(labels[0]).unwrap();
        } else {
            a.jmp(labels[i + 1]).unwrap();
        }
    }
    a.set_label(&mut done).unwrap();
    finish(&mut a);
    Guest::flat(
        a.assemble(CODE).unwrap(),
        CpuMode::Long64,
        16 * u64::from(n),
    )
}

/// Loops of `n` iterations, each an indirect jump through a register to one of `targets`
/// blocks (chosen by the counter's low bits) and a direct jump back: one target keeps the
/// jump cache's entry, two alternate and go through the lookup every other time.
fn indirect(n: u32, targets: u32) -> Guest {
    let mut a = CodeAssembler::new(64).unwrap();
    let mut top = a.create_label();
    let mut table = a.create_label();
    let mut done = a.create_label();
    let mut arms: Vec<CodeLabel> = (0..targets).map(|_| a.create_label()).collect();
    a.mov(ecx, n).unwrap();
    a.lea(rbx, ptr(table)).unwrap();
    a.set_label(&mut top).unwrap();
    a.mov(edx, ecx).unwrap();
    a.and(edx, targets - 1).unwrap();
    a.mov(rdx, qword_ptr(rbx + rdx * 8)).unwrap();
    a.jmp(rdx).unwrap();
    for arm in arms.iter_mut() {
        a.set_label(arm).unwrap();
        a.dec(ecx).unwrap();
        a.jnz(top).unwrap();
        a.jmp(done).unwrap();
    }
    a.set_label(&mut done).unwrap();
    finish(&mut a);
    a.set_label(&mut table).unwrap();
    // Placeholders, patched below with the arms' addresses.
    for _ in 0..targets {
        a.dq(&[0]).unwrap();
    }
    let res = a
        .assemble_options(CODE, BlockEncoderOptions::RETURN_NEW_INSTRUCTION_OFFSETS)
        .unwrap();
    let mut code = res.inner.code_buffer.clone();
    let table_at = (res.label_ip(&table).unwrap() - CODE) as usize;
    for (i, arm) in arms.iter().enumerate() {
        let ip = res.label_ip(arm).unwrap();
        code[table_at + 8 * i..table_at + 8 * i + 8].copy_from_slice(&ip.to_le_bytes());
    }
    Guest::flat(code, CpuMode::Long64, 2 * u64::from(n))
}

/// Loops of `n` iterations of a CALL to a function that only returns: the RET's target is
/// the return stack buffer's prediction.
fn call_ret(n: u32) -> Guest {
    let mut a = CodeAssembler::new(64).unwrap();
    let mut top = a.create_label();
    let mut func = a.create_label();
    let mut done = a.create_label();
    a.mov(ecx, n).unwrap();
    a.set_label(&mut top).unwrap();
    a.call(func).unwrap();
    a.dec(ecx).unwrap();
    a.jnz(top).unwrap();
    a.jmp(done).unwrap();
    a.set_label(&mut func).unwrap();
    a.add(rax, 1).unwrap();
    a.ret().unwrap();
    a.set_label(&mut done).unwrap();
    finish(&mut a);
    Guest::flat(a.assemble(CODE).unwrap(), CpuMode::Long64, 2 * u64::from(n))
}

/// Loops of `n` iterations that write to a port nothing decodes: port I/O is left to the
/// run loop in every tier, so each iteration is a round trip through it.
fn port_round_trip(n: u32) -> Guest {
    let mut a = CodeAssembler::new(64).unwrap();
    let mut top = a.create_label();
    a.mov(ecx, n).unwrap();
    a.set_label(&mut top).unwrap();
    a.out(UNCLAIMED_PORT as u32, al).unwrap();
    a.dec(ecx).unwrap();
    a.jnz(top).unwrap();
    finish(&mut a);
    Guest::flat(a.assemble(CODE).unwrap(), CpuMode::Long64, u64::from(n))
}

/// The 64-bit GDT of the interrupt guests: null, 64-bit code (0x08), data (0x10).
const GDT64: [u64; 3] = [0, 0x00af_9a00_0000_ffff, 0x00cf_9200_0000_ffff];
/// The 32-bit GDT: null, flat code (0x08), flat data (0x10).
const GDT32: [u64; 3] = [0, 0x00cf_9a00_0000_ffff, 0x00cf_9200_0000_ffff];
const GDT_AT: u64 = 0x500;
const IDT_AT: u64 = 0x600;
/// The vector the interrupt guests raise.
const VECTOR: u64 = 0x30;

/// Loops of `n` iterations of INT 0x30 through an interrupt gate to a handler that counts
/// and returns with IRET(D/Q): a software interrupt's whole round trip (the gate, the frame
/// pushed and popped, the flags) in 32-bit protected mode or 64-bit mode.
fn int_round_trip(n: u32, bits: u32) -> Guest {
    let mut a = CodeAssembler::new(bits).unwrap();
    let mut top = a.create_label();
    let mut handler = a.create_label();
    a.mov(ecx, n).unwrap();
    a.xor(ebx, ebx).unwrap();
    a.set_label(&mut top).unwrap();
    a.int(VECTOR as u32).unwrap();
    a.dec(ecx).unwrap();
    a.jnz(top).unwrap();
    // Every handler run counted: the answer is 0 only if EBX = n.
    a.sub(ebx, n).unwrap();
    a.or(ecx, ebx).unwrap();
    finish(&mut a);
    a.set_label(&mut handler).unwrap();
    a.inc(ebx).unwrap();
    if bits == 64 {
        a.iretq().unwrap();
    } else {
        a.iretd().unwrap();
    }
    let res = a
        .assemble_options(CODE, BlockEncoderOptions::RETURN_NEW_INSTRUCTION_OFFSETS)
        .unwrap();
    let off = res.label_ip(&handler).unwrap();
    let (mode, gdt, idt) = if bits == 64 {
        // 16-byte gate: offset, selector 0x08, present interrupt gate (0xE), DPL 0.
        let lo = (off & 0xffff) | (0x08 << 16) | (0x8e00 << 32) | (((off >> 16) & 0xffff) << 48);
        let mut gate = lo.to_le_bytes().to_vec();
        gate.extend_from_slice(&(off >> 32).to_le_bytes());
        (CpuMode::Long64, GDT64, gate)
    } else {
        let gate = (off & 0xffff) | (0x08 << 16) | (0x8e00 << 32) | ((off >> 16) << 48);
        (CpuMode::Prot32, GDT32, gate.to_le_bytes().to_vec())
    };
    let gate_size = idt.len() as u64;
    let gdt_bytes: Vec<u8> = gdt.iter().flat_map(|d| d.to_le_bytes()).collect();
    Guest {
        tables: vec![(GDT_AT, gdt_bytes), (IDT_AT + VECTOR * gate_size, idt)],
        gdtr: Some(DescriptorTable {
            base: GDT_AT,
            limit: 23,
        }),
        idtr: Some(DescriptorTable {
            base: IDT_AT,
            limit: (256 * gate_size - 1) as u16,
        }),
        ..Guest::flat(res.inner.code_buffer, mode, u64::from(n))
    }
}

/// Loops of `n` iterations of 16 loads from 16 pages `stride` bytes apart (64-bit,
/// identity-mapped): with 16 pages in a row every load hits the TLB; with 16 pages 8 MiB
/// apart, which share one TLB set, every load misses and refills.
fn loads(n: u32, stride: u32) -> Guest {
    let mut a = CodeAssembler::new(64).unwrap();
    let mut top = a.create_label();
    a.mov(ecx, n).unwrap();
    a.mov(esi, 0x40_0000).unwrap();
    a.xor(eax, eax).unwrap();
    a.set_label(&mut top).unwrap();
    for i in 0..16u32 {
        a.add(rax, qword_ptr(rsi + i * stride)).unwrap();
    }
    a.dec(ecx).unwrap();
    a.jnz(top).unwrap();
    finish(&mut a);
    let ram = (0x40_0000 + 16 * u64::from(stride))
        .next_power_of_two()
        .max(16 << 20);
    Guest {
        ram,
        ..Guest::flat(
            a.assemble(CODE).unwrap(),
            CpuMode::Long64,
            16 * u64::from(n),
        )
    }
}

/// A machine in `tier` holding `g`, run once so that its blocks are translated (in the JIT
/// tier, compiled) before anything is measured.
fn warm(g: &Guest, tier: Tier) -> Machine {
    let mut m = Machine::new(&MachineConfig {
        tier,
        ram_bytes: g.ram,
        ..Default::default()
    })
    .unwrap();
    m.load_flat(&g.code, CODE, CODE, g.mode).unwrap();
    run_once(&mut m, g);
    m
}

/// Runs `g` from its entry in `m` (memory and translations kept) and checks its answer.
fn run_once(m: &mut Machine, g: &Guest) {
    m.cpu = m.flat_cpu(g.mode);
    m.cpu.rip = CODE;
    for (at, bytes) in &g.tables {
        m.mem.load(*at, bytes).unwrap();
    }
    if let Some(t) = g.gdtr {
        m.cpu.gdtr = t;
    }
    if let Some(t) = g.idtr {
        m.cpu.idtr = t;
    }
    m.ports.exit = None;
    assert_eq!(m.run(None).unwrap(), RunEnd::DebugExit(0));
}

/// Benchmarks `guests` (name, guest) in every tier, per event.
fn group(c: &mut Criterion, name: &str, guests: &[(&str, Guest)]) {
    let mut grp = c.benchmark_group(name);
    grp.sample_size(10)
        .measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(300));
    for (gname, g) in guests {
        grp.throughput(Throughput::Elements(g.events));
        for (tname, tier) in TIERS {
            let mut m = warm(g, tier);
            let compiled = m.cache.stats.blocks_compiled;
            grp.bench_function(format!("{gname}/{tname}"), |b| {
                b.iter(|| run_once(&mut m, g))
            });
            assert_eq!(
                m.cache.stats.blocks_compiled, compiled,
                "{gname}/{tname}: a warm run compiled again"
            );
        }
    }
    grp.finish();
}

fn dispatch(c: &mut Criterion) {
    group(
        c,
        "dispatch",
        &[
            ("direct", direct_ring(4096)),
            ("indirect_one_target", indirect(16_384, 1)),
            ("indirect_two_targets", indirect(16_384, 2)),
            ("call_ret", call_ret(16_384)),
            ("run_loop", port_round_trip(16_384)),
        ],
    );
}

fn interrupts(c: &mut Criterion) {
    group(
        c,
        "interrupt",
        &[
            ("int_iretd_32", int_round_trip(8192, 32)),
            ("int_iretq_64", int_round_trip(8192, 64)),
        ],
    );
}

fn tlb(c: &mut Criterion) {
    group(
        c,
        "tlb_guest",
        &[
            ("hit", loads(4096, 0x1000)),
            ("miss", loads(1024, 0x80_0000)),
        ],
    );
    // The Rust-side path the interpreter and the slow paths use: a TLB hit, and a miss that
    // walks the page tables (the TLB flushed before each read).
    let g = loads(1, 0x1000);
    let mut m = warm(&g, Tier::Interp);
    let mut grp = c.benchmark_group("tlb_rust");
    grp.sample_size(20)
        .measurement_time(Duration::from_secs(1))
        .warm_up_time(Duration::from_millis(200))
        .throughput(Throughput::Elements(1));
    read_as(&mut m.cpu, &mut m.mem, 0x40_0000, 8, Privilege::Supervisor).unwrap();
    for (name, flush) in [("read_hit", false), ("read_walk", true)] {
        grp.bench_function(name, |b| {
            b.iter(|| {
                if flush {
                    crane86_runtime::memory::tlb_flush_page(&mut m.cpu, 0x40_0000);
                }
                read_as(
                    &mut m.cpu,
                    &mut m.mem,
                    black_box(0x40_0008),
                    8,
                    Privilege::Supervisor,
                )
                .unwrap()
            })
        });
    }
    grp.finish();
}

/// The translation cache's lookup of blocks it holds (the direct-mapped table's hit path),
/// over every block of the crc32 guest in turn.
fn cache_lookup(c: &mut Criterion) {
    let g = crane86_guests::by_name("crc32", 64).unwrap();
    let mut m = Machine::new(&MachineConfig {
        tier: Tier::Interp,
        ..Default::default()
    })
    .unwrap();
    m.load_flat(&g.image, g.load_addr, g.entry, CpuMode::Long64)
        .unwrap();
    assert_eq!(m.run(None).unwrap(), RunEnd::DebugExit(0));
    let keys: Vec<_> = (0..m.cache.len() as u32)
        .map(|id| m.cache.block(id).key)
        .collect();
    assert!(keys.len() > 10, "the crc32 guest has {} blocks", keys.len());
    let mut grp = c.benchmark_group("cache");
    grp.sample_size(20)
        .measurement_time(Duration::from_secs(1))
        .warm_up_time(Duration::from_millis(200))
        .throughput(Throughput::Elements(keys.len() as u64));
    grp.bench_function("lookup_hit", |b| {
        b.iter(|| {
            for (id, k) in keys.iter().enumerate() {
                let found = m.cache.lookup(black_box(*k), &mut m.cpu, &mut m.mem);
                assert_eq!(found, id as u32);
            }
        })
    });
    grp.finish();
}

criterion_group!(benches, dispatch, interrupts, tlb, cache_lookup);
criterion_main!(benches);
