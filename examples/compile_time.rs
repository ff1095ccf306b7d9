//! Measures JIT compile time per block of a bundled guest (a development aid).
use std::time::Instant;

use crane86_runtime::CpuMode;
use crane86_translator::decode::decode_block;
use crane86_translator::emit::Ctx;
use crane86_translator::jit::{ChainSlots, Jit, JitOptions};

fn main() {
    let g = crane86_guests::by_name("crc32", 64).unwrap();
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
    let mut blocks = Vec::new();
    let mut off = 0usize;
    while off < g.image.len() - 16 {
        let b = decode_block(&g.image[off..], g.load_addr + off as u64, 4096, ctx, false);
        off += b.byte_len as usize;
        blocks.push(b);
    }
    // Compiled only, never run: the slots just need a stable address.
    let slots = Box::new(crane86_translator::jit::fresh_slots());
    let key = crane86_runtime::BlockKey {
        ip: 0,
        cs_base: 0,
        bits: 0,
    };
    let chain = ChainSlots::standalone(&slots, key);
    for optimize in [false, true] {
        let mut jit = Jit::new(JitOptions {
            optimize,
            verify: false,
            background: false,
            count_chains: true,
            tiered: false,
            tier_up_runs: crane86_translator::jit::TIER_UP_RUNS,
        })
        .unwrap();
        let t0 = Instant::now();
        let mut n = 0;
        let mut bytes = 0;
        for _ in 0..20 {
            for b in &blocks {
                bytes += jit.compile_block(b, chain).unwrap().bytes.len();
                n += 1;
            }
        }
        let dt = t0.elapsed();
        println!(
            "optimize={optimize}: {n} compiles, {:.1} us/block, {} bytes/block, {} blocks",
            dt.as_secs_f64() * 1e6 / n as f64,
            bytes / n,
            blocks.len()
        );
    }
}
