//! Tier benchmarks: the crc32 guest (64-bit) under the interpreter, the baseline tier, the JIT
//! and the default auto tier; decode throughput; translation time per block in the baseline
//! tier and in Cranelift's two optimisation levels. The machine's parts (dispatch, interrupts,
//! the TLB, the cache's lookup) are in `parts.rs`.

use std::time::Duration;

use crane86_machine::{Machine, MachineConfig, RunEnd, DEFAULT_JIT_THRESHOLD};
use crane86_runtime::CpuMode;
use crane86_translator::decode::{decode_block, DecodedBlock};
use crane86_translator::emit::Ctx;
use crane86_translator::jit::{ChainSlots, Jit, JitOptions};
use crane86_translator::Tier;
use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};

fn guest() -> crane86_guests::Guest {
    crane86_guests::by_name("crc32", 64).unwrap()
}

/// Instructions the crc32 guest retires (measured once, for the throughput figure).
fn guest_insns() -> u64 {
    let g = guest();
    let mut m = machine(Tier::Interp);
    m.load_flat(&g.image, g.load_addr, g.entry, CpuMode::Long64)
        .unwrap();
    let end = m.run(None).unwrap();
    assert_eq!(end, RunEnd::DebugExit(0), "crc32 guest did not finish");
    m.stats.insns()
}

fn machine(tier: Tier) -> Machine {
    Machine::new(&MachineConfig {
        tier,
        ..Default::default()
    })
    .unwrap()
}

fn tiers(c: &mut Criterion) {
    let g = guest();
    let insns = guest_insns();
    let mut grp = c.benchmark_group("crc32_64");
    grp.sample_size(10)
        .measurement_time(Duration::from_secs(4))
        .warm_up_time(Duration::from_secs(1))
        .throughput(Throughput::Elements(insns));
    for (name, tier) in [
        ("interp", Tier::Interp),
        ("baseline", Tier::Baseline),
        ("jit", Tier::Jit),
        (
            "auto",
            Tier::Auto {
                threshold: DEFAULT_JIT_THRESHOLD,
            },
        ),
    ] {
        grp.bench_function(name, |b| {
            // A fresh machine per run: the translation cost is part of the measurement.
            b.iter_batched(
                || machine(tier),
                |mut m| {
                    m.load_flat(&g.image, g.load_addr, g.entry, CpuMode::Long64)
                        .unwrap();
                    let end = m.run(None).unwrap();
                    assert_eq!(end, RunEnd::DebugExit(0));
                    m
                },
                BatchSize::PerIteration,
            )
        });
    }
    // Warm: the translation cache already holds every block (the guest rebuilds its data
    // itself, so a rerun only needs a CPU reset): pure execution speed of each tier.
    for (name, tier) in [
        ("interp_warm", Tier::Interp),
        ("baseline_warm", Tier::Baseline),
        ("jit_warm", Tier::Jit),
    ] {
        let mut m = machine(tier);
        m.load_flat(&g.image, g.load_addr, g.entry, CpuMode::Long64)
            .unwrap();
        assert_eq!(m.run(None).unwrap(), RunEnd::DebugExit(0));
        let compiled = m.cache.stats.blocks_compiled;
        grp.bench_function(name, |b| {
            b.iter(|| {
                rerun(&mut m);
                assert_eq!(m.run(None).unwrap(), RunEnd::DebugExit(0));
            })
        });
        assert_eq!(
            m.cache.stats.blocks_compiled, compiled,
            "warm run recompiled"
        );
    }
    grp.finish();
}

/// Resets the CPU and the devices to the guest's entry, keeping memory and translations.
fn rerun(m: &mut Machine) {
    m.cpu = m.flat_cpu(CpuMode::Long64);
    m.cpu.rip = crane86_guests::CODE_ADDR;
    m.ports.exit = None;
    m.ports.serial.clear();
}

/// The blocks of the crc32 guest, decoded from every instruction boundary of its image.
fn blocks() -> Vec<DecodedBlock> {
    let g = guest();
    let ctx = Ctx {
        mode: CpuMode::Long64,
        stack32: false,
        user: false,
        cpl: 0,
        fpu: crane86_translator::emit::FPU_OS,
        v86: false,
        seg_checks: false,
        zero_bases: false,
        fs_flat: false,
        gs_flat: false,
    };
    let mut out = Vec::new();
    let mut off = 0usize;
    while off < g.image.len() {
        let b = decode_block(
            &g.image[off..],
            g.load_addr + off as u64,
            g.image.len() - off,
            ctx,
            false,
        );
        off += b.byte_len.max(1) as usize;
        out.push(b);
    }
    out
}

fn translate(c: &mut Criterion) {
    let g = guest();
    let ctx = Ctx {
        mode: CpuMode::Long64,
        stack32: false,
        user: false,
        cpl: 0,
        fpu: crane86_translator::emit::FPU_OS,
        v86: false,
        seg_checks: false,
        zero_bases: false,
        fs_flat: false,
        gs_flat: false,
    };
    let mut grp = c.benchmark_group("translate");
    grp.sample_size(10)
        .measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(500));
    grp.throughput(Throughput::Bytes(g.image.len() as u64));
    grp.bench_function("decode_image", |b| {
        b.iter(|| {
            let mut off = 0usize;
            let mut n = 0usize;
            while off < g.image.len() {
                let blk = decode_block(
                    black_box(&g.image[off..]),
                    g.load_addr + off as u64,
                    g.image.len() - off,
                    ctx,
                    false,
                );
                off += blk.byte_len.max(1) as usize;
                n += blk.insns.len();
            }
            n
        })
    });
    let blocks = blocks();
    let slots = Box::new(crane86_translator::jit::fresh_slots());
    let key = crane86_runtime::BlockKey {
        ip: 0,
        cs_base: 0,
        bits: 0,
    };
    let chain = ChainSlots::standalone(&slots, key);
    grp.throughput(Throughput::Elements(blocks.len() as u64));
    for (name, optimize) in [
        ("compile_blocks_opt", true),
        ("compile_blocks_noopt", false),
    ] {
        let mut jit = Jit::new(JitOptions {
            optimize,
            verify: false,
            background: false,
            count_chains: true,
            tiered: false,
            tier_up_runs: crane86_translator::jit::TIER_UP_RUNS,
        })
        .unwrap();
        grp.bench_function(name, |b| {
            b.iter(|| {
                blocks
                    .iter()
                    .map(|blk| jit.compile_block(blk, chain).unwrap().bytes.len())
                    .sum::<usize>()
            })
        });
    }
    grp.bench_function("translate_blocks_baseline", |b| {
        b.iter(|| {
            blocks
                .iter()
                .map(|blk| {
                    crane86_translator::baseline::translate(blk, 0, 0).map_or(0, |t| t.code.len())
                })
                .sum::<usize>()
        })
    });
    grp.finish();
}

criterion_group!(benches, tiers, translate);
criterion_main!(benches);
