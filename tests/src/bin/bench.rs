//! `leafnet-bench`: the foundation benchmarks.
//!
//! ```text
//! cargo build --release -p leafnet-node --bin leafnet
//! cargo run --release -p leafnet-tests --bin leafnet-bench -- [all|dht|start|rss] [--json-out FILE]
//! ```
//!
//! - `dht` (in process, memory transport): provider announce and lookup latency in a 100-node
//!   leafnet swarm, next to a bare rust-libp2p Kademlia swarm (MemoryStore, leafnet's
//!   `kad_config`) measured in the same run, one swarm after the other; plus a store
//!   micro-benchmark (redb `Store` against `MemoryStore`) to explain the difference.
//! - `start` (real processes, loopback): cold start of the `leafnet` binary to listening and to
//!   bootstrapped, against the spawn-to-exit time of `leafnet --version`.
//! - `rss` (real processes, loopback): idle RSS of one node, and per node in a 20-node swarm.
//!
//! Every machine-dependent figure is printed with the baseline measured in the same run and the
//! ratio, and the load average (`/proc/loadavg`) is recorded next to every section. The human
//! table goes to stdout, followed by one JSON document (or the JSON goes to `--json-out`).
//! Progress goes to stderr.

#![allow(clippy::print_stdout, clippy::print_stderr)]

#[path = "bench/bare.rs"]
mod bare;
#[path = "bench/dht.rs"]
mod dht;
#[path = "bench/procs.rs"]
mod procs;

use leafnet_tests::benchkit::{fmt_num, loadavg, machine, summarize, utc_now};
use std::path::PathBuf;

use clap::{Parser, ValueEnum};
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Which {
    All,
    Dht,
    Start,
    Rss,
}

/// leafnet foundation benchmarks (see BENCHMARKS.md).
#[derive(Debug, Parser)]
#[command(name = "leafnet-bench")]
struct Args {
    /// Which benchmark to run.
    #[arg(value_enum, default_value = "all")]
    which: Which,
    /// Write the JSON document to this file instead of stdout.
    #[arg(long)]
    json_out: Option<PathBuf>,
    /// dht: nodes per swarm.
    #[arg(long, default_value_t = 100)]
    nodes: usize,
    /// dht: measured keys (each provided once and looked up once).
    #[arg(long, default_value_t = 100)]
    keys: usize,
    /// dht: Kademlia's periodic bootstrap interval in both swarms, seconds (leafnet's default
    /// is 300); 0 keeps the test helper's config (30 s) and starts leafnet with
    /// `start_mem_swarm` itself.
    #[arg(long, default_value_t = 300)]
    bootstrap_interval: u64,
    /// dht: give the bare nodes leafnet's ping behaviour too (diagnostic).
    #[arg(long)]
    bare_ping: bool,
    /// dht: pause between two measured operations, milliseconds.
    #[arg(long, default_value_t = 25)]
    gap_ms: u64,
    /// dht: warm-up keys per swarm, not measured.
    #[arg(long, default_value_t = 10)]
    warmup: usize,
    /// dht: seed of the choice of provider and looker nodes (the same for both swarms).
    #[arg(long, default_value_t = 0x1eaf_2024)]
    seed: u64,
    /// dht: run the bare swarm first in the first round.
    #[arg(long)]
    bare_first: bool,
    /// dht: run only this swarm (for profiling; no ratios then).
    #[arg(long, value_enum)]
    only_swarm: Option<dht::Only>,
    /// dht: after settling, sample the idle CPU for this many seconds (diagnostic).
    #[arg(long, default_value_t = 0)]
    idle_secs: u64,
    /// dht: rounds (each: both swarms one after the other; the order alternates per round).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// start: repetitions of each measurement.
    #[arg(long, default_value_t = 10)]
    reps: usize,
    /// rss: nodes in the local swarm.
    #[arg(long, default_value_t = 20)]
    swarm_nodes: usize,
    /// rss: bootstrap from node 0's TCP address instead of its QUIC address.
    #[arg(long)]
    boot_tcp: bool,
    /// The `leafnet` binary (default: $LEAFNET_BIN, else next to this executable).
    #[arg(long)]
    leafnet_bin: Option<PathBuf>,
}

/// One line of the result table.
#[derive(Debug, Clone, Serialize)]
struct Figure {
    section: &'static str,
    name: String,
    unit: &'static str,
    value: f64,
    /// The reference measured in the same run, and what it is.
    baseline: Option<f64>,
    baseline_of: Option<String>,
    /// value / baseline.
    ratio: Option<f64>,
    /// e.g. "ratio <= 1.5".
    target: Option<String>,
    met: Option<bool>,
    /// /proc/loadavg (1, 5, 15 min) when the section ended.
    loadavg: [f64; 3],
}

impl Figure {
    fn new(section: &'static str, name: impl Into<String>, unit: &'static str, value: f64) -> Self {
        Self {
            section,
            name: name.into(),
            unit,
            value,
            baseline: None,
            baseline_of: None,
            ratio: None,
            target: None,
            met: None,
            loadavg: [f64::NAN; 3],
        }
    }

    fn baseline(mut self, of: impl Into<String>, b: f64) -> Self {
        self.baseline = Some(b);
        self.baseline_of = Some(of.into());
        self.ratio = Some(self.value / b);
        self
    }

    /// Target: ratio at most `max`.
    fn ratio_at_most(mut self, max: f64) -> Self {
        self.target = Some(format!("ratio <= {max}"));
        self.met = self.ratio.map(|r| r <= max);
        self
    }
}

/// What one section produced.
#[derive(Debug, Default)]
struct Section {
    figures: Vec<Figure>,
    details: serde_json::Value,
}

fn print_table(figs: &[Figure]) {
    let header = [
        "section", "figure", "value", "baseline", "ratio", "target", "met", "load1",
    ];
    let rows: Vec<[String; 8]> = figs
        .iter()
        .map(|f| {
            [
                f.section.to_owned(),
                f.name.clone(),
                format!("{} {}", fmt_num(f.value), f.unit),
                match (&f.baseline, &f.baseline_of) {
                    (Some(b), Some(of)) => format!("{} ({of})", fmt_num(*b)),
                    _ => "-".into(),
                },
                f.ratio.map_or("-".into(), |r| format!("{r:.2}x")),
                f.target.clone().unwrap_or_else(|| "-".into()),
                match f.met {
                    Some(true) => "yes".into(),
                    Some(false) => "NO".into(),
                    None => "-".into(),
                },
                format!("{:.2}", f.loadavg[0]),
            ]
        })
        .collect();
    let rows: Vec<Vec<String>> = rows.into_iter().map(Vec::from).collect();
    print!(
        "{}",
        leafnet_tests::benchkit::markdown_table(&header, &rows)
    );
}

/// The `leafnet` binary: `--leafnet-bin`, `$LEAFNET_BIN`, next to this executable (bench bins
/// live in `target/<profile>/`, as does `leafnet`), else the test helper's guess.
fn leafnet_bin(args: &Args) -> PathBuf {
    if let Some(p) = &args.leafnet_bin {
        return p.clone();
    }
    if let Some(p) = std::env::var_os("LEAFNET_BIN") {
        return p.into();
    }
    if let Some(p) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(|d| d.join("leafnet")))
        .filter(|p| p.exists())
    {
        return p;
    }
    leafnet_tests::proc::leafnet_bin()
}

async fn run_section<F, Fut>(name: &'static str, f: F) -> (Section, serde_json::Value)
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = anyhow::Result<Section>>,
{
    let before = loadavg();
    let started = std::time::Instant::now();
    eprintln!("== {name} (load {before:?})");
    let r = f().await;
    let after = loadavg();
    let secs = started.elapsed().as_secs_f64();
    eprintln!("== {name} done in {secs:.1} s (load {after:?})");
    match r {
        Ok(mut s) => {
            for f in &mut s.figures {
                f.loadavg = after;
            }
            let meta = serde_json::json!({
                "ok": true, "loadavg_before": before, "loadavg_after": after, "seconds": secs,
                "details": s.details,
            });
            (s, meta)
        }
        Err(e) => {
            eprintln!("== {name} FAILED: {e:#}");
            let meta = serde_json::json!({
                "ok": false, "error": format!("{e:#}"), "loadavg_before": before,
                "loadavg_after": after, "seconds": secs,
            });
            (Section::default(), meta)
        }
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    leafnet_tests::benchkit::init_tracing();
    let date = utc_now();
    let load_start = loadavg();
    let bin = leafnet_bin(&args);
    let run_all = args.which == Which::All;
    let mut figures = Vec::new();
    let mut sections = serde_json::Map::new();
    let mut ok = true;

    if run_all || args.which == Which::Dht {
        let opts = dht::Opts {
            nodes: args.nodes,
            keys: args.keys,
            warmup: args.warmup,
            seed: args.seed,
            bare_first: args.bare_first,
            rounds: args.rounds,
            only: args.only_swarm,
            idle_secs: args.idle_secs,
            bootstrap_interval: (args.bootstrap_interval > 0)
                .then(|| std::time::Duration::from_secs(args.bootstrap_interval)),
            gap: std::time::Duration::from_millis(args.gap_ms),
            bare_ping: args.bare_ping,
        };
        let (s, meta) = run_section("dht", || dht::run(opts)).await;
        ok &= meta["ok"] == true;
        figures.extend(s.figures);
        sections.insert("dht".into(), meta);
    }
    if run_all || args.which == Which::Start {
        let (s, meta) = run_section("start", || procs::start(&bin, args.reps)).await;
        ok &= meta["ok"] == true;
        figures.extend(s.figures);
        sections.insert("start".into(), meta);
    }
    if run_all || args.which == Which::Rss {
        let (s, meta) =
            run_section("rss", || procs::rss(&bin, args.swarm_nodes, args.boot_tcp)).await;
        ok &= meta["ok"] == true;
        figures.extend(s.figures);
        sections.insert("rss".into(), meta);
    }

    let bin_meta = std::fs::metadata(&bin).ok();
    let doc = serde_json::json!({
        "bench": "leafnet-bench",
        "version": env!("CARGO_PKG_VERSION"),
        "date_utc": date,
        "profile": if cfg!(debug_assertions) { "debug" } else { "release" },
        "command": std::env::args().collect::<Vec<_>>(),
        "machine": machine(),
        "loadavg_start": load_start,
        "loadavg_end": loadavg(),
        "leafnet_bin": {
            "path": bin.display().to_string(),
            "bytes": bin_meta.as_ref().map(std::fs::Metadata::len),
            "modified_unix": bin_meta.and_then(|m| m.modified().ok())
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()).map(|d| d.as_secs()),
        },
        "params": {
            "which": format!("{:?}", args.which).to_lowercase(),
            "nodes": args.nodes, "keys": args.keys, "bootstrap_interval_s": args.bootstrap_interval, "gap_ms": args.gap_ms, "bare_ping": args.bare_ping, "warmup": args.warmup, "seed": args.seed,
            "bare_first": args.bare_first, "rounds": args.rounds, "reps": args.reps, "swarm_nodes": args.swarm_nodes, "boot_tcp": args.boot_tcp,
        },
        "figures": figures,
        "sections": sections,
        "ok": ok,
    });

    println!(
        "leafnet-bench {date}  load at start {:.2} {:.2} {:.2}, at end {:.2} {:.2} {:.2}",
        load_start[0],
        load_start[1],
        load_start[2],
        doc["loadavg_end"][0].as_f64().unwrap_or(f64::NAN),
        doc["loadavg_end"][1].as_f64().unwrap_or(f64::NAN),
        doc["loadavg_end"][2].as_f64().unwrap_or(f64::NAN),
    );
    print_table(&figures);
    let text = serde_json::to_string_pretty(&doc).unwrap_or_default();
    match &args.json_out {
        Some(p) => {
            if let Some(d) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
                let _ = std::fs::create_dir_all(d);
            }
            if let Err(e) = std::fs::write(p, text + "\n") {
                eprintln!("cannot write {}: {e}", p.display());
                return std::process::ExitCode::from(1);
            }
            println!("JSON written to {}", p.display());
        }
        None => println!("{text}"),
    }
    if ok {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::from(1)
    }
}
