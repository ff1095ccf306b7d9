//! The `--stats` report: translation-cache and run counters, as a table or JSON.

use std::time::Duration;

use crane86_machine::Machine;

/// Everything `--stats` reports, gathered from one machine after a run.
#[derive(Debug, Clone)]
pub struct Report {
    /// Guest instructions retired by the interpreter.
    pub insns_interp: u64,
    /// Guest instructions retired by compiled code.
    pub insns_jit: u64,
    /// Wall time of the run.
    pub wall: Duration,
    /// Blocks decoded.
    pub blocks_decoded: u64,
    /// Blocks compiled by the JIT.
    pub blocks_compiled: u64,
    /// Guest instructions in compiled blocks.
    pub insns_compiled: u64,
    /// Time spent in Cranelift.
    pub compile_time: Duration,
    /// Time spent decoding.
    pub decode_time: Duration,
    /// Cache lookups from the run loop.
    pub lookups: u64,
    /// ... answered by the direct-mapped table.
    pub fast_hits: u64,
    /// ... answered by the hash map.
    pub map_hits: u64,
    /// ... that translated.
    pub misses: u64,
    /// Block exits linked for chaining.
    pub links: u64,
    /// Chained transfers taken inside generated code.
    pub chained: u64,
    /// Returns from generated code to the run loop.
    pub dispatched: u64,
    /// Blocks invalidated by stores into code.
    pub invalidated_smc: u64,
    /// Whole-arena flushes.
    pub flushes: u64,
    /// Host code bytes produced.
    pub code_bytes: u64,
    /// Guest memory accesses of compiled code that took the slow path (TLB miss, page
    /// crossing, store into code, non-RAM).
    pub mem_slow: u64,
}

impl Report {
    /// Collects the counters of `m` after a run that took `wall`.
    pub fn new(m: &Machine, wall: Duration) -> Report {
        let c = &m.cache.stats;
        Report {
            insns_interp: m.stats.insns_interp,
            insns_jit: m.stats.insns_jit,
            wall,
            blocks_decoded: c.blocks_decoded,
            blocks_compiled: c.blocks_compiled,
            insns_compiled: c.insns_compiled,
            compile_time: c.compile_time,
            decode_time: c.decode_time,
            lookups: c.lookups,
            fast_hits: c.fast_hits,
            map_hits: c.map_hits,
            misses: c.misses,
            links: c.links,
            chained: m.cpu.chained,
            dispatched: m.stats.jit_entries,
            invalidated_smc: c.invalidated_smc,
            flushes: c.flushes,
            code_bytes: c.code_bytes,
            mem_slow: m.cpu.mem_slow,
        }
    }

    fn total_insns(&self) -> u64 {
        self.insns_interp + self.insns_jit
    }

    /// Guest instructions per second of wall time, in millions.
    pub fn mips(&self) -> f64 {
        self.total_insns() as f64 / self.wall.as_secs_f64().max(1e-9) / 1e6
    }

    /// Compile time per compiled guest instruction, in microseconds.
    pub fn us_per_compiled_insn(&self) -> f64 {
        if self.insns_compiled == 0 {
            0.0
        } else {
            self.compile_time.as_secs_f64() * 1e6 / self.insns_compiled as f64
        }
    }

    /// A human-readable table.
    pub fn table(&self) -> String {
        let exits = self.chained + self.dispatched;
        let pct = |a: u64, b: u64| {
            if b == 0 {
                0.0
            } else {
                100.0 * a as f64 / b as f64
            }
        };
        let mut s = String::new();
        let mut row = |k: &str, v: String| s.push_str(&format!("  {k:<28} {v}\n"));
        row(
            "guest instructions",
            format!(
                "{} (interp {}, jit {})",
                self.total_insns(),
                self.insns_interp,
                self.insns_jit
            ),
        );
        row(
            "wall time",
            format!("{:.3} s, {:.1} MIPS", self.wall.as_secs_f64(), self.mips()),
        );
        row(
            "blocks decoded",
            format!(
                "{} ({:.3} ms decoding)",
                self.blocks_decoded,
                self.decode_time.as_secs_f64() * 1e3
            ),
        );
        row(
            "blocks compiled",
            format!(
                "{} ({} guest insns, {:.3} ms, {:.2} us/guest insn)",
                self.blocks_compiled,
                self.insns_compiled,
                self.compile_time.as_secs_f64() * 1e3,
                self.us_per_compiled_insn()
            ),
        );
        row(
            "cache lookups",
            format!(
                "{} (fast {}, map {}, miss {})",
                self.lookups, self.fast_hits, self.map_hits, self.misses
            ),
        );
        row(
            "compiled block exits",
            format!(
                "{} chained ({:.1}%), {} to the run loop, {} links",
                self.chained,
                pct(self.chained, exits),
                self.dispatched,
                self.links
            ),
        );
        row(
            "invalidations",
            format!(
                "{} by stores into code, {} arena flushes",
                self.invalidated_smc, self.flushes
            ),
        );
        row("code bytes", format!("{}", self.code_bytes));
        row("memory slow paths (JIT)", format!("{}", self.mem_slow));
        format!("crane86 statistics\n{s}")
    }

    /// One JSON object.
    pub fn json(&self) -> String {
        serde_json::json!({
            "insns": { "interp": self.insns_interp, "jit": self.insns_jit, "total": self.total_insns() },
            "wall_s": self.wall.as_secs_f64(),
            "mips": self.mips(),
            "blocks": { "decoded": self.blocks_decoded, "compiled": self.blocks_compiled, "insns_compiled": self.insns_compiled },
            "compile": { "ms": self.compile_time.as_secs_f64() * 1e3, "us_per_guest_insn": self.us_per_compiled_insn() },
            "decode_ms": self.decode_time.as_secs_f64() * 1e3,
            "lookups": { "total": self.lookups, "fast_hits": self.fast_hits, "map_hits": self.map_hits, "misses": self.misses },
            "exits": { "chained": self.chained, "dispatched": self.dispatched, "links": self.links },
            "invalidations": { "smc": self.invalidated_smc, "flushes": self.flushes },
            "code_bytes": self.code_bytes,
            "mem_slow_paths": self.mem_slow,
        })
        .to_string()
    }
}
