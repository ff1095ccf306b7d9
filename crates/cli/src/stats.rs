//! The `--stats` report: translation-cache and run counters, as a table or JSON.

use std::time::Duration;

use crane86_machine::{Machine, MachineStats};
use crane86_runtime::phase::PHASES;
use crane86_runtime::shadow::ShadowStats;
use crane86_runtime::state::PagingStats;
use crane86_translator::{BaselineStats, CacheStats, InterpRuns, TierStats};

/// Everything `--stats` reports, gathered from one machine after a run.
#[derive(Debug, Clone)]
pub struct Report {
    /// The run loop's counters.
    pub run: MachineStats,
    /// The translation cache's counters.
    pub cache: CacheStats,
    /// Chained transfers taken inside generated code.
    pub chained: u64,
    /// Exits of generated code that looked their target up (`jump_lookup`).
    pub jump_lookups: u64,
    /// Guest memory accesses of compiled code that took the slow path (TLB miss, page
    /// crossing, store into code, non-RAM).
    pub mem_slow: u64,
    /// Memory accesses of compiled code that hit the inline TLB check.
    pub jit_tlb_hits: u64,
    /// Of those, loads served by a loop's remembered translation.
    pub jit_memo_hits: u64,
    /// Of those, accesses served by their block's group check (same base register, one
    /// page).
    pub jit_grouped_hits: u64,
    /// Address-translation counters.
    pub paging: PagingStats,
    /// The shadow page tables' counters.
    pub shadow: ShadowStats,
    /// Address spaces and translations the shadow page tables hold at the end.
    pub shadow_held: (usize, usize),
    /// Wall time of the run.
    pub wall: Duration,
    /// Samples of the vCPU thread's phase, one per [`PHASE_SAMPLE`], in
    /// `crane86_runtime::phase::PHASES` order (none when nobody sampled).
    pub phases: Option<[u64; PHASES.len()]>,
}

/// How often `--stats` samples the vCPU thread's phase.
pub const PHASE_SAMPLE: Duration = Duration::from_millis(1);

impl Report {
    /// Collects the counters of `m` after a run that took `wall`.
    pub fn new(m: &Machine, wall: Duration, phases: Option<[u64; PHASES.len()]>) -> Report {
        Report {
            run: m.stats.clone(),
            cache: m.cache.stats.clone(),
            chained: m.cpu.chained,
            jump_lookups: m.cpu.jump_lookups,
            mem_slow: m.cpu.mem_slow,
            jit_tlb_hits: m.cpu.jit_tlb_hits,
            jit_memo_hits: m.cpu.jit_memo_hits,
            jit_grouped_hits: m.cpu.jit_grouped_hits,
            paging: m.cpu.paging,
            shadow: m.cpu.shadow.stats,
            shadow_held: (m.cpu.shadow.spaces(), m.cpu.shadow.len()),
            wall,
            phases,
        }
    }

    /// Each phase's share of the samples, in percent, in `PHASES` order.
    pub fn phase_shares(&self) -> Option<[f64; PHASES.len()]> {
        let n = self.phases?;
        let total = n.iter().sum::<u64>();
        (total > 0).then(|| n.map(|k| 100.0 * k as f64 / total as f64))
    }

    fn total_insns(&self) -> u64 {
        self.run.insns()
    }

    /// Guest instructions per second of wall time, in millions.
    pub fn mips(&self) -> f64 {
        self.total_insns() as f64 / self.wall.as_secs_f64().max(1e-9) / 1e6
    }

    /// Compile time per compiled guest instruction, in microseconds.
    pub fn us_per_compiled_insn(&self) -> f64 {
        if self.cache.insns_compiled == 0 {
            0.0
        } else {
            self.cache.compile_time.as_secs_f64() * 1e6 / self.cache.insns_compiled as f64
        }
    }

    /// A human-readable table.
    pub fn table(&self) -> String {
        let (r, c, p, sh) = (&self.run, &self.cache, &self.paging, &self.shadow);
        let exits = self.chained + r.jit_entries;
        let pct = |a: u64, b: u64| {
            if b == 0 {
                0.0
            } else {
                100.0 * a as f64 / b as f64
            }
        };
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let data_hits = self.jit_tlb_hits + p.data_hits;
        let rows = [
            (
                "guest instructions",
                format!(
                    "{} (interp {} and baseline code {} in {} block runs, {} of them \
                     chained; jit {})",
                    self.total_insns(),
                    r.insns_interp,
                    r.insns_baseline,
                    r.interp_runs,
                    r.interp_chained,
                    r.insns_jit
                ),
            ),
            (
                "wall time",
                format!("{:.3} s, {:.1} MIPS", self.wall.as_secs_f64(), self.mips()),
            ),
            ("vCPU thread by phase", self.phase_row()),
            (
                "interpreted, not compiled",
                format!(
                    "block runs (their instructions): {} ({}) not yet hot, {} ({}) waiting \
                     for the compiler, {} ({}) turned away by its full queue",
                    c.interp_cold.runs,
                    c.interp_cold.insns,
                    c.interp_waiting.runs,
                    c.interp_waiting.insns,
                    c.interp_refused.runs,
                    c.interp_refused.insns
                ),
            ),
            ("baseline code", baseline_row(&c.baseline)),
            (
                "blocks decoded",
                format!(
                    "{} ({:.3} ms decoding)",
                    c.blocks_decoded,
                    ms(c.decode_time)
                ),
            ),
            (
                "blocks compiled",
                format!(
                    "{} ({} guest insns, {:.3} ms, {:.2} us/guest insn; {} again optimised; \
                     {} regions)",
                    c.blocks_compiled,
                    c.insns_compiled,
                    ms(c.compile_time),
                    self.us_per_compiled_insn(),
                    c.recompiled,
                    c.regions
                ),
            ),
            ("compiles, unoptimised", tier_row(&c.unoptimised)),
            ("compiles, optimised", tier_row(&c.optimised)),
            (
                "cache lookups",
                format!(
                    "{} (after the same block {}, fast {}, map {}, miss {})",
                    c.lookups, c.successor_hits, c.fast_hits, c.map_hits, c.misses
                ),
            ),
            (
                "compiled block exits",
                format!(
                    "{} chained ({:.1}%), {} lookups, {} to the run loop, {} links ({} across \
                     pages)",
                    self.chained,
                    pct(self.chained, exits),
                    self.jump_lookups,
                    r.jit_entries,
                    c.links,
                    c.links_cross_page
                ),
            ),
            (
                "invalidations",
                format!(
                    "{} blocks by stores into code ({} pages; {} stores missed every block; {} stores handed back to the interpreter by compiled code), {} arena flushes",
                    c.invalidated_smc, r.smc_pages, c.smc_spared, r.smc_retries, c.flushes
                ),
            ),
            (
                "capacity flushes",
                format!(
                    "{} (cache full: {} blocks evicted)",
                    c.capacity_flushes, c.evicted
                ),
            ),
            (
                "code bytes",
                format!(
                    "{} ({} of them cold; {} blocks not cut)",
                    c.code_bytes, c.cold_bytes, c.uncut
                ),
            ),
            ("memory slow paths (JIT)", format!("{}", self.mem_slow)),
            (
                "address translation",
                format!(
                    "{} walks ({} page faults), {} TLB fills, {} victim-buffer hits, {} full \
                     flushes, {} INVLPG",
                    p.walks, p.page_faults, p.tlb_fills, p.tlb_victim_hits, p.tlb_flushes, p.invlpg
                ),
            ),
            (
                "data TLB",
                format!(
                    "{:.2}% hits ({} inline in compiled code, {} of them remembered by \
                     loops and {} grouped by base register, {} in the runtime, {} misses)",
                    pct(data_hits, data_hits + p.data_misses),
                    self.jit_tlb_hits,
                    self.jit_memo_hits,
                    self.jit_grouped_hits,
                    p.data_hits,
                    p.data_misses
                ),
            ),
            (
                "shadow page tables",
                format!(
                    "{} TLB misses served without a walk ({:.1}% of translations), {} fills, \
                     {} tracked writes dropping {} translations, {} flushes, {} spaces \
                     evicted, {} reused, {} dependency lists compacted; {} spaces and {} \
                     translations held",
                    sh.hits,
                    pct(sh.hits, sh.hits + p.walks),
                    sh.fills,
                    sh.tracked_writes,
                    sh.dropped,
                    sh.flushes,
                    sh.evictions,
                    sh.space_reuses,
                    sh.compactions,
                    self.shadow_held.0,
                    self.shadow_held.1
                ),
            ),
            (
                "block fetch TLB",
                format!(
                    "{:.1}% hits ({} hits, {} misses)",
                    pct(p.fetch_hits, p.fetch_hits + p.fetch_misses),
                    p.fetch_hits,
                    p.fetch_misses
                ),
            ),
            (
                "page-crossing blocks",
                format!(
                    "{} remapped, {} entries re-checked by the run loop",
                    c.invalidated_remap, r.second_page_rechecks
                ),
            ),
            ("exceptions delivered", format!("{}", r.exceptions)),
            ("interrupts delivered", format!("{} (external and NMI)", r.interrupts)),
        ];
        let mut s = String::from("crane86 statistics\n");
        for (k, v) in rows {
            s.push_str(&format!("  {k:<28} {v}\n"));
        }
        s
    }

    /// One JSON object.
    pub fn json(&self) -> String {
        let (r, c) = (&self.run, &self.cache);
        serde_json::json!({
            "insns": { "interp": r.insns_interp, "baseline": r.insns_baseline, "jit": r.insns_jit, "total": self.total_insns() },
            "interp_runs": { "total": r.interp_runs, "chained": r.interp_chained, "not_hot": interp_json(&c.interp_cold), "waiting": interp_json(&c.interp_waiting), "refused": interp_json(&c.interp_refused) },
            "wall_s": self.wall.as_secs_f64(),
            "phases_percent": self.phase_json(),
            "mips": self.mips(),
            "blocks": { "decoded": c.blocks_decoded, "compiled": c.blocks_compiled, "recompiled_optimised": c.recompiled, "insns_compiled": c.insns_compiled, "regions": c.regions },
            "compile": {
                "ms": c.compile_time.as_secs_f64() * 1e3,
                "us_per_guest_insn": self.us_per_compiled_insn(),
                "unoptimised": tier_json(&c.unoptimised),
                "optimised": tier_json(&c.optimised),
            },
            "baseline": baseline_json(&c.baseline),
            "decode_ms": c.decode_time.as_secs_f64() * 1e3,
            "lookups": { "total": c.lookups, "successor_hits": c.successor_hits, "fast_hits": c.fast_hits, "map_hits": c.map_hits, "misses": c.misses },
            "exits": { "chained": self.chained, "jump_lookups": self.jump_lookups, "dispatched": r.jit_entries, "links": c.links, "links_cross_page": c.links_cross_page },
            "invalidations": {
                "smc_blocks": c.invalidated_smc,
                "smc_pages": r.smc_pages,
                "smc_spared_stores": c.smc_spared,
                "smc_retried_stores": r.smc_retries,
                "flushes": c.flushes,
                "capacity": { "flushes": c.capacity_flushes, "evicted": c.evicted },
            },
            "code_bytes": c.code_bytes,
            "cold_code_bytes": c.cold_bytes,
            "uncut_blocks": c.uncut,
            "mem_slow_paths": self.mem_slow,
            "paging": {
                "walks": self.paging.walks,
                "page_faults": self.paging.page_faults,
                "tlb_fills": self.paging.tlb_fills,
                "tlb_victim_hits": self.paging.tlb_victim_hits,
                "tlb_flushes": self.paging.tlb_flushes,
                "invlpg": self.paging.invlpg,
                "fetch_hits": self.paging.fetch_hits,
                "fetch_misses": self.paging.fetch_misses,
                "data_hits_jit": self.jit_tlb_hits,
                "data_hits_jit_memo": self.jit_memo_hits,
                "data_hits_jit_grouped": self.jit_grouped_hits,
                "data_hits_runtime": self.paging.data_hits,
                "data_misses": self.paging.data_misses,
            },
            "shadow": {
                "hits": self.shadow.hits,
                "fills": self.shadow.fills,
                "tracked_writes": self.shadow.tracked_writes,
                "dropped": self.shadow.dropped,
                "flushes": self.shadow.flushes,
                "evictions": self.shadow.evictions,
                "space_reuses": self.shadow.space_reuses,
                "compactions": self.shadow.compactions,
                "spaces": self.shadow_held.0,
                "translations": self.shadow_held.1,
            },
            "invalidated_remap": c.invalidated_remap,
            "second_page_rechecks": r.second_page_rechecks,
            "exceptions": r.exceptions,
            "interrupts": r.interrupts,
        })
        .to_string()
    }
}

/// A `--stats` row for the compiles of one optimisation level: how many, their cost per
/// guest instruction and where their time went (see `crane86_translator::jit::timing`).
fn tier_row(t: &TierStats) -> String {
    let x = &t.times;
    let total = x.total.as_secs_f64().max(1e-12);
    let pct = |d: Duration| 100.0 * d.as_secs_f64() / total;
    format!(
        "{} ({} guest insns, {:.3} ms, {:.2} us/guest insn: building the IR {:.0}%, \
         optimiser {:.0}%, lowering {:.0}%, register allocation {:.0}%, emission {:.0}%, \
         rest of Cranelift {:.0}%)",
        t.blocks,
        t.insns,
        x.total.as_secs_f64() * 1e3,
        t.us_per_insn(),
        pct(x.build()),
        pct(x.optimise),
        pct(x.lower),
        pct(x.regalloc),
        pct(x.emit),
        pct(x.cranelift_other()),
    )
}

/// Interpreted runs for one reason, as JSON.
/// The baseline tier's row: what it translated, at what cost, what it ran and what it
/// declined (the commonest reasons first).
fn baseline_row(b: &BaselineStats) -> String {
    let mut declined: Vec<_> = b.declined.iter().collect();
    declined.sort_by(|x, y| y.1.cmp(x.1));
    let declined: Vec<String> = declined.iter().map(|(k, v)| format!("{k} {v}")).collect();
    format!(
        "{} blocks ({} guest insns, {} bytes, {:.3} ms, {:.2} us/block); entered {} times, \
         {} insns; {} links; declined: {}; no room: {}",
        b.blocks,
        b.insns,
        b.bytes,
        b.time.as_secs_f64() * 1e3,
        b.time.as_secs_f64() * 1e6 / b.blocks.max(1) as f64,
        b.runs.runs,
        b.runs.insns,
        b.links,
        if declined.is_empty() {
            "none".to_string()
        } else {
            declined.join(", ")
        },
        b.no_room
    )
}

fn baseline_json(b: &BaselineStats) -> serde_json::Value {
    serde_json::json!({
        "blocks": b.blocks,
        "insns": b.insns,
        "bytes": b.bytes,
        "ms": b.time.as_secs_f64() * 1e3,
        "runs": interp_json(&b.runs),
        "links": b.links,
        "declined": b.declined,
        "no_room": b.no_room,
    })
}

fn interp_json(r: &InterpRuns) -> serde_json::Value {
    serde_json::json!({ "runs": r.runs, "insns": r.insns })
}

/// The JSON object of [`tier_row`]'s figures, times in milliseconds.
fn tier_json(t: &TierStats) -> serde_json::Value {
    let x = &t.times;
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    serde_json::json!({
        "compiles": t.blocks,
        "insns": t.insns,
        "ms": ms(x.total),
        "us_per_guest_insn": t.us_per_insn(),
        "build_ms": ms(x.build()),
        "optimise_ms": ms(x.optimise),
        "lower_ms": ms(x.lower),
        "regalloc_ms": ms(x.regalloc),
        "emit_ms": ms(x.emit),
        "cranelift_other_ms": ms(x.cranelift_other()),
    })
}

impl Report {
    /// The `--stats` row of the vCPU thread's time per phase.
    fn phase_row(&self) -> String {
        let Some(shares) = self.phase_shares() else {
            return "not sampled".into();
        };
        let parts: Vec<String> = PHASES
            .iter()
            .zip(shares)
            .map(|(p, pct)| format!("{} {pct:.1}%", p.name()))
            .collect();
        let n: u64 = self.phases.map_or(0, |n| n.iter().sum());
        format!(
            "{} ({n} samples, one per {} ms)",
            parts.join(", "),
            PHASE_SAMPLE.as_millis()
        )
    }

    /// The phases' shares as a JSON object keyed by phase name (null when not sampled).
    fn phase_json(&self) -> serde_json::Value {
        match self.phase_shares() {
            Some(shares) => serde_json::Value::Object(
                PHASES
                    .iter()
                    .zip(shares)
                    .map(|(p, pct)| (p.name().replace(' ', "_"), serde_json::json!(pct)))
                    .collect(),
            ),
            None => serde_json::Value::Null,
        }
    }
}
