//! `leafnet-bench-geo`: profile gets and radius queries (issue 3) in a 100-node in-process
//! leafnet swarm, next to a bare rust-libp2p Kademlia swarm measured in the same run.
//!
//! ```text
//! cargo run --release -p leafnet-tests --bin leafnet-bench-geo -- [--json-out FILE]
//! ```
//!
//! Each round runs both swarms one after the other (the first shut down before the second
//! starts; the order alternates per round), over the memory transport:
//!
//! - leafnet: `start_mem_swarm_with(nodes, ..)` (full nodes, redb and all; production
//!   replication factor 20), wait until every routing table has at least 20 entries and the
//!   swarm is quiet; host `profiles` signed profiles, clustered around 4 cities, each on a random
//!   node; wait until every put and cell announcement ended; then a shuffled schedule of `gets`
//!   profile gets (random account, from a random node other than its host; each checked) and
//!   `queries` radius queries per group (1 km, 50 km, 1,000 km, and radii picked so the cover
//!   has exactly 9 cells; centres within 300 m of a cluster centre, from random nodes; each
//!   checked against a brute force over all profiles).
//! - bare: the same number of bare Kademlia nodes (see `bench_geo/bare.rs`), the same bootstrap
//!   topology and settling; the same signed profile bytes put under the same keys from the same
//!   node indices, the same cells announced from the same node indices; then the same schedule:
//!   gets finished as leafnet finishes them (3 records or the end of the query), and for each
//!   radius query its cover's provider lookups in parallel, each to its end (what leafnet's
//!   radius query does before it asks the hosts).
//!
//! The human tables go to stdout, followed by one JSON document (or the JSON goes to
//! `--json-out`). Progress goes to stderr.

#![allow(clippy::print_stdout, clippy::print_stderr)]

#[path = "bench_geo/bare.rs"]
mod bare;
#[path = "bench_geo/micro.rs"]
mod micro;
#[path = "bench_geo/run.rs"]
mod run;
#[path = "bench_geo/work.rs"]
mod work;

use leafnet_tests::benchkit::{fmt_num, loadavg, machine, summarize, utc_now};
use std::{collections::BTreeMap, path::PathBuf, time::Duration};

use clap::Parser;
use serde::Serialize;

/// Profile gets and radius queries, leafnet against bare Kademlia (see BENCHMARKS.md).
#[derive(Debug, Parser)]
#[command(name = "leafnet-bench-geo")]
struct Args {
    /// Write the JSON document to this file instead of stdout.
    #[arg(long)]
    json_out: Option<PathBuf>,
    /// Nodes per swarm.
    #[arg(long, default_value_t = 100)]
    nodes: usize,
    /// Profiles hosted (leafnet) / records put (bare).
    #[arg(long, default_value_t = 300)]
    profiles: usize,
    /// Measured gets per round.
    #[arg(long, default_value_t = 200)]
    gets: usize,
    /// Measured radius queries per group per round.
    #[arg(long, default_value_t = 50)]
    queries: usize,
    /// Rounds; each runs both swarms one after the other, leafnet first in odd rounds.
    #[arg(long, default_value_t = 2)]
    rounds: usize,
    /// Kademlia query timeout in both swarms, seconds (production default 30).
    #[arg(long, default_value_t = 30)]
    query_timeout: u64,
    /// Kademlia periodic bootstrap interval in both swarms, seconds (production default 300).
    #[arg(long, default_value_t = 300)]
    bootstrap_interval: u64,
    /// How long a leafnet node reuses a cell's provider list in radius queries, seconds
    /// (production default 30; 0 turns the cache off).
    #[arg(long, default_value_t = 30)]
    geo_cache_secs: u64,
    /// Pause before each operation, milliseconds.
    #[arg(long, default_value_t = 20)]
    gap_ms: u64,
    /// Warm-up gets (and a quarter as many radius queries per group) per swarm, not measured.
    #[arg(long, default_value_t = 12)]
    warmup: usize,
    /// Seed of the profile placement and of the schedules.
    #[arg(long, default_value_t = 0x6e0_2026)]
    seed: u64,
}

/// One line of the result table.
#[derive(Debug, Clone, Serialize)]
struct Figure {
    name: String,
    unit: &'static str,
    value: f64,
    baseline: Option<f64>,
    baseline_of: Option<String>,
    /// value / baseline.
    ratio: Option<f64>,
    target: Option<String>,
    met: Option<bool>,
}

impl Figure {
    fn new(name: impl Into<String>, value: f64) -> Self {
        Self {
            name: name.into(),
            unit: "ms",
            value,
            baseline: None,
            baseline_of: None,
            ratio: None,
            target: None,
            met: None,
        }
    }

    fn vs(mut self, of: impl Into<String>, b: f64) -> Self {
        self.baseline = Some(b);
        self.baseline_of = Some(of.into());
        self.ratio = Some(self.value / b);
        self
    }

    fn unit(mut self, unit: &'static str) -> Self {
        self.unit = unit;
        self
    }

    fn at_most(mut self, max: f64) -> Self {
        self.target = Some(format!("<= {max}x"));
        self.met = self.ratio.map(|r| r <= max);
        self
    }
}

fn print_rows(header: &[&str], rows: &[Vec<String>]) {
    print!("{}", leafnet_tests::benchkit::markdown_table(header, rows));
}

fn print_figures(figs: &[Figure]) {
    let rows: Vec<Vec<String>> = figs
        .iter()
        .map(|f| {
            vec![
                f.name.clone(),
                format!("{} {}", fmt_num(f.value), f.unit),
                match (&f.baseline, &f.baseline_of) {
                    (Some(b), Some(of)) => format!("{} {} ({of})", fmt_num(*b), f.unit),
                    _ => "-".into(),
                },
                f.ratio.map_or("-".into(), |r| format!("{r:.2}x")),
                f.target.clone().unwrap_or_else(|| "-".into()),
                match f.met {
                    Some(true) => "yes".into(),
                    Some(false) => "NO".into(),
                    None => "-".into(),
                },
            ]
        })
        .collect();
    print_rows(
        &["figure", "leafnet", "baseline", "ratio", "target", "met"],
        &rows,
    );
}

fn dist(v: impl Iterator<Item = usize>) -> BTreeMap<usize, usize> {
    let mut m = BTreeMap::new();
    for x in v {
        *m.entry(x).or_insert(0) += 1;
    }
    m
}

fn fmt_dist(m: &BTreeMap<usize, usize>) -> String {
    m.iter()
        .map(|(k, n)| format!("{k}:{n}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn mean(v: impl Iterator<Item = f64>) -> f64 {
    let (s, n) = v.fold((0.0, 0usize), |(s, n), x| (s + x, n + 1));
    if n == 0 { f64::NAN } else { s / n as f64 }
}

/// Pooled summary of one group of leafnet radius queries and of the bare cover lookups of the
/// same group.
fn group_summary(nears: &[&run::NearSample], covers: &[&run::CoverSample]) -> serde_json::Value {
    let ok: Vec<&&run::NearSample> = nears.iter().filter(|n| n.error.is_none()).collect();
    let ms: Vec<f64> = ok.iter().map(|n| n.ms).collect();
    let cov_ok: Vec<&&run::CoverSample> = covers.iter().filter(|c| c.error.is_none()).collect();
    serde_json::json!({
        "n": nears.len(),
        "errors": nears.len() - ok.len(),
        "latency_ms": summarize(&ms),
        "actor_side_ms": summarize(&ok.iter().map(|n| n.inner_ms).collect::<Vec<_>>()),
        "process_cpu_ms_mean": mean(ok.iter().map(|n| n.cpu_ms)),
        "cells": dist(ok.iter().map(|n| n.cells)),
        "precision": dist(ok.iter().map(|n| n.precision)),
        "radius_m": dist(nears.iter().map(|n| n.radius_m as usize)),
        "nodes_contacted_mean": mean(ok.iter().map(|n| n.contacted as f64)),
        "cell_lookups": dist(ok.iter().map(|n| n.lookups)),
        "cell_lookups_mean": mean(ok.iter().map(|n| n.lookups as f64)),
        "provider_requests_mean": mean(ok.iter().map(|n| n.provider_requests as f64)),
        "cells_cached_mean": mean(ok.iter().map(|n| n.cells_cached as f64)),
        "nodes_contacted_max": ok.iter().map(|n| n.contacted).max(),
        "nodes_failed_total": ok.iter().map(|n| n.failed).sum::<usize>(),
        "results_mean": mean(ok.iter().map(|n| n.results as f64)),
        "results_min": ok.iter().map(|n| n.results).min(),
        "results_max": ok.iter().map(|n| n.results).max(),
        "expected_mean": mean(nears.iter().map(|n| n.expected as f64)),
        "exact_match": ok.iter().filter(|n| n.exact).count(),
        "cover_hosts_mean": mean(nears.iter().map(|n| n.cover_hosts as f64)),
        "max_cell_hosts_max": nears.iter().map(|n| n.max_cell_hosts).max(),
        "hosts_contacted_share": ok.iter().map(|n| n.contacted).sum::<usize>() as f64
            / ok.iter().map(|n| n.cover_hosts).sum::<usize>().max(1) as f64,
        "exact_when_max_cell_hosts_le_20": format!("{}/{}",
            ok.iter().filter(|n| n.max_cell_hosts <= 20 && n.exact).count(),
            ok.iter().filter(|n| n.max_cell_hosts <= 20).count()),
        "exact_when_max_cell_hosts_gt_20": format!("{}/{}",
            ok.iter().filter(|n| n.max_cell_hosts > 20 && n.exact).count(),
            ok.iter().filter(|n| n.max_cell_hosts > 20).count()),
        "bare_cover_lookup": {
            "n": covers.len(),
            "errors": covers.len() - cov_ok.len(),
            "latency_ms": summarize(&cov_ok.iter().map(|c| c.ms).collect::<Vec<_>>()),
            "providers_mean": mean(cov_ok.iter().map(|c| c.providers as f64)),
            "providers_found_share": cov_ok.iter().map(|c| c.providers).sum::<usize>() as f64
                / cov_ok.iter().map(|c| c.cover_hosts).sum::<usize>().max(1) as f64,
            "kad_requests_mean": mean(cov_ok.iter().map(|c| f64::from(c.requests))),
            "process_cpu_ms_mean": mean(cov_ok.iter().map(|c| c.cpu_ms)),
        },
        "bare_cover_lookup_first_answer": {
            "latency_ms": summarize(&cov_ok.iter().map(|c| c.early_ms).collect::<Vec<_>>()),
            "providers_mean": mean(cov_ok.iter().map(|c| c.early_providers as f64)),
            "providers_found_share": cov_ok.iter().map(|c| c.early_providers).sum::<usize>() as f64
                / cov_ok.iter().map(|c| c.providers).sum::<usize>().max(1) as f64,
            "kad_requests_mean": mean(cov_ok.iter().map(|c| f64::from(c.early_requests))),
            "process_cpu_ms_mean": mean(cov_ok.iter().map(|c| c.early_cpu_ms)),
        },
    })
}

fn f(v: &serde_json::Value) -> f64 {
    v.as_f64().unwrap_or(f64::NAN)
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    leafnet_tests::benchkit::init_tracing();
    match bench(&args).await {
        Ok(ok) if ok => std::process::ExitCode::SUCCESS,
        Ok(_) => std::process::ExitCode::from(1),
        Err(e) => {
            eprintln!("leafnet-bench-geo failed: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}

async fn bench(args: &Args) -> anyhow::Result<bool> {
    anyhow::ensure!(
        args.nodes > run::MIN_RT,
        "need more than {} nodes",
        run::MIN_RT
    );
    anyhow::ensure!(args.profiles > 0, "need profiles");
    let date = utc_now();
    let load_start = loadavg();
    eprintln!("leafnet-bench-geo {date}, load {load_start:?}");
    let opts = run::Opts {
        nodes: args.nodes,
        query_timeout: Duration::from_secs(args.query_timeout),
        bootstrap_interval: Duration::from_secs(args.bootstrap_interval),
        gap: Duration::from_millis(args.gap_ms),
        geo_cache: Duration::from_secs(args.geo_cache_secs),
        setup_timeout: Duration::from_secs(180),
    };
    let specs = work::profiles(args.profiles, args.nodes, args.seed);
    let mut signed: Vec<Vec<u8>> = Vec::new();
    let mut leaf_gets = Vec::new();
    let mut bare_gets = Vec::new();
    let mut leaf_nears = Vec::new();
    let mut bare_covers = Vec::new();
    let mut rounds = Vec::new();
    for round in 0..args.rounds.max(1) {
        let seed = args.seed.wrapping_add(1 + round as u64);
        let ops = work::schedule(&specs, args.nodes, args.gets, args.queries, seed);
        let warm = work::schedule(
            &specs,
            args.nodes,
            args.warmup,
            args.warmup.div_ceil(4),
            seed ^ 0xdead_beef,
        );
        // leafnet first in the first round: the bare swarm puts leafnet's signed bytes.
        let leaf_first = round % 2 == 0 || signed.is_empty();
        eprintln!(
            "== round {} of {}: {} first ({} operations)",
            round + 1,
            args.rounds.max(1),
            if leaf_first { "leafnet" } else { "bare" },
            ops.len()
        );
        let load_before = loadavg();
        let (l, b) = if leaf_first {
            let l = run::leafnet(&opts, &specs, &warm, &ops).await?;
            signed.clone_from(&l.signed);
            let b = run::bare(&opts, &specs, &signed, &warm, &ops).await?;
            (l, b)
        } else {
            let b = run::bare(&opts, &specs, &signed, &warm, &ops).await?;
            let l = run::leafnet(&opts, &specs, &warm, &ops).await?;
            (l, b)
        };
        let lg: Vec<f64> = l.gets.iter().filter(|g| g.ok).map(|g| g.ms).collect();
        let bg: Vec<f64> = b.gets.iter().filter(|g| g.ok).map(|g| g.ms).collect();
        let (ls, bs) = (summarize(&lg), summarize(&bg));
        eprintln!(
            "== round {}: get p50 {:.2}/{:.2} ms, p99 {:.2}/{:.2} ms (leafnet/bare)",
            round + 1,
            ls.p50,
            bs.p50,
            ls.p99,
            bs.p99
        );
        let groups: Vec<serde_json::Value> = (0..work::GROUPS.len())
            .map(|g| {
                let n: Vec<&run::NearSample> = l.nears.iter().filter(|n| n.group == g).collect();
                let c: Vec<&run::CoverSample> = b.covers.iter().filter(|c| c.group == g).collect();
                let mut v = group_summary(&n, &c);
                v["group"] = serde_json::json!(work::GROUPS[g]);
                v
            })
            .collect();
        rounds.push(serde_json::json!({
            "round": round + 1,
            "seed": seed,
            "order": if leaf_first { "leafnet, then bare" } else { "bare, then leafnet" },
            "loadavg_before": load_before,
            "loadavg_after": loadavg(),
            "leafnet": {
                "get_ms": ls,
                "get_process_cpu_ms_mean": mean(l.gets.iter().map(|g| g.cpu_ms)),
                "get_failed": l.gets.iter().filter(|g| !g.ok).count(),
                "get_errors": l.gets.iter().filter_map(|g| g.error.clone()).take(5).collect::<Vec<_>>(),
                "radius": groups,
                "details": l.details,
                "get_samples_ms": l.gets.iter().map(|g| (g.ms * 1000.0).round() / 1000.0).collect::<Vec<_>>(),
                "near_samples_columns": ["group", "ms", "actor_ms", "radius_m", "cells", "lookups", "provider_requests", "cells_cached", "precision", "contacted", "failed", "results", "expected", "exact", "cover_hosts", "max_cell_hosts"],
                "near_samples": l.nears.iter().map(|n| serde_json::json!([
                    n.group, (n.ms * 1000.0).round() / 1000.0, (n.inner_ms * 1000.0).round() / 1000.0,
                    n.radius_m, n.cells, n.lookups, n.provider_requests, n.cells_cached, n.precision, n.contacted, n.failed, n.results, n.expected, n.exact,
                    n.cover_hosts, n.max_cell_hosts,
                ])).collect::<Vec<_>>(),
                "near_errors": l.nears.iter().filter_map(|n| n.error.clone()).take(5).collect::<Vec<_>>(),
            },
            "bare": {
                "get_ms": bs,
                "get_process_cpu_ms_mean": mean(b.gets.iter().map(|g| g.cpu_ms)),
                "get_failed": b.gets.iter().filter(|g| !g.ok).count(),
                "get_errors": b.gets.iter().filter_map(|g| g.error.clone()).take(5).collect::<Vec<_>>(),
                "get_records_found": dist(b.gets.iter().filter_map(|g| g.found)),
                "get_kad_requests_mean": mean(b.gets.iter().filter_map(|g| g.requests.map(f64::from))),
                "details": b.details,
                "get_samples_ms": b.gets.iter().map(|g| (g.ms * 1000.0).round() / 1000.0).collect::<Vec<_>>(),
                "cover_samples_columns": ["group", "ms", "cells", "providers", "kad_requests",
                    "first_answer_ms", "first_answer_providers", "first_answer_kad_requests", "cover_hosts"],
                "cover_samples": b.covers.iter().map(|c| serde_json::json!([
                    c.group, (c.ms * 1000.0).round() / 1000.0, c.cells, c.providers, c.requests,
                    (c.early_ms * 1000.0).round() / 1000.0, c.early_providers, c.early_requests, c.cover_hosts,
                ])).collect::<Vec<_>>(),
            },
        }));
        leaf_gets.extend(l.gets);
        bare_gets.extend(b.gets);
        leaf_nears.extend(l.nears);
        bare_covers.extend(b.covers);
    }

    // Pooled over rounds.
    let lg: Vec<f64> = leaf_gets.iter().filter(|g| g.ok).map(|g| g.ms).collect();
    let bg: Vec<f64> = bare_gets.iter().filter(|g| g.ok).map(|g| g.ms).collect();
    let (ls, bs) = (summarize(&lg), summarize(&bg));
    let leaf_get_failed = leaf_gets.iter().filter(|g| !g.ok).count();
    let bare_get_failed = bare_gets.iter().filter(|g| !g.ok).count();
    let bare_what = format!("bare kad get, {} nodes", args.nodes);
    let mut figures = vec![
        Figure::new("profile get p50", ls.p50)
            .vs(&bare_what, bs.p50)
            .at_most(1.5),
        Figure::new("profile get p99", ls.p99)
            .vs(&bare_what, bs.p99)
            .at_most(1.5),
    ];
    let mut groups = Vec::new();
    for (g, name) in work::GROUPS.iter().enumerate() {
        let n: Vec<&run::NearSample> = leaf_nears.iter().filter(|n| n.group == g).collect();
        let c: Vec<&run::CoverSample> = bare_covers.iter().filter(|c| c.group == g).collect();
        let mut v = group_summary(&n, &c);
        v["group"] = serde_json::json!(name);
        let (p50, p99) = (f(&v["latency_ms"]["p50"]), f(&v["latency_ms"]["p99"]));
        let cover_p99 = f(&v["bare_cover_lookup"]["latency_ms"]["p99"]);
        let target = g == 3;
        let fig = |x: Figure| if target { x.at_most(1.5) } else { x };
        figures.push(Figure::new(format!("radius {name} p50"), p50).vs("bare get p50", bs.p50));
        figures.push(fig(
            Figure::new(format!("radius {name} p99"), p99).vs("bare get p99", bs.p99)
        ));
        figures.push(fig(
            Figure::new(format!("radius {name} p99"), p99).vs("leafnet get p99", ls.p99)
        ));
        figures.push(
            Figure::new(format!("radius {name} p99"), p99)
                .vs("bare cover lookups p99, same queries", cover_p99),
        );
        groups.push(v);
    }
    // Fixed-radius queries whose cover happened to have exactly 9 cells.
    let nine_fixed: Vec<&run::NearSample> = leaf_nears
        .iter()
        .filter(|n| n.group < 3 && n.cells == 9 && n.error.is_none())
        .collect();
    let nine_fixed_ms: Vec<f64> = nine_fixed.iter().map(|n| n.ms).collect();
    let nine_fixed_s = summarize(&nine_fixed_ms);
    if !nine_fixed.is_empty() {
        figures.push(
            Figure::new(
                format!(
                    "fixed-radius queries with 9 cells (n={}) p99",
                    nine_fixed.len()
                ),
                nine_fixed_s.p99,
            )
            .vs("bare get p99", bs.p99)
            .at_most(1.5),
        );
    }

    eprintln!("micro-benchmarks");
    let micro = {
        let (specs, signed) = (specs.clone(), signed.clone());
        tokio::task::spawn_blocking(move || micro::run(&specs, &signed)).await??
    };
    figures.push(
        Figure::new(
            "reader-side validate (per record)",
            f(&micro["validate_us"]),
        )
        .unit("us")
        .vs("SignedProfile::open", f(&micro["signed_profile_open_us"])),
    );
    figures.push(
        Figure::new("store get (redb Store)", f(&micro["redb_get_us"]))
            .unit("us")
            .vs("MemoryStore", f(&micro["memory_get_us"])),
    );
    figures.push(
        Figure::new(
            "store providers(), all cells (redb)",
            f(&micro["redb_providers_us"]),
        )
        .unit("us")
        .vs("MemoryStore", f(&micro["memory_providers_us"])),
    );
    figures.push(
        Figure::new(
            "store providers(), precision 1-2 cells (redb)",
            f(&micro["redb_providers_coarse_us"]),
        )
        .unit("us")
        .vs("MemoryStore", f(&micro["memory_providers_coarse_us"])),
    );

    let load_end = loadavg();
    println!(
        "leafnet-bench-geo {date}  load at start {:.2} {:.2} {:.2}, at end {:.2} {:.2} {:.2}",
        load_start[0], load_start[1], load_start[2], load_end[0], load_end[1], load_end[2],
    );
    println!(
        "{} nodes, {} profiles, {} rounds; gets: leafnet n={} ({} failed), bare n={} ({} failed)",
        args.nodes,
        args.profiles,
        args.rounds.max(1),
        ls.n,
        leaf_get_failed,
        bs.n,
        bare_get_failed
    );
    print_figures(&figures);
    println!();
    let rows: Vec<Vec<String>> = groups
        .iter()
        .map(|v| {
            vec![
                v["group"].as_str().unwrap_or("").to_owned(),
                format!("{} ({} err)", v["n"], v["errors"]),
                format!(
                    "{} / {} / {}",
                    fmt_num(f(&v["latency_ms"]["p50"])),
                    fmt_num(f(&v["latency_ms"]["p99"])),
                    fmt_num(f(&v["latency_ms"]["max"]))
                ),
                fmt_dist(&serde_json::from_value(v["cells"].clone()).unwrap_or_default()),
                fmt_dist(&serde_json::from_value(v["precision"].clone()).unwrap_or_default()),
                format!(
                    "{} / {} / {}",
                    fmt_num(f(&v["cell_lookups_mean"])),
                    fmt_num(f(&v["provider_requests_mean"])),
                    fmt_num(f(&v["cells_cached_mean"]))
                ),
                format!(
                    "{} of {} (max {})",
                    fmt_num(f(&v["nodes_contacted_mean"])),
                    fmt_num(f(&v["cover_hosts_mean"])),
                    v["nodes_contacted_max"]
                ),
                format!(
                    "{} ({}-{})",
                    fmt_num(f(&v["results_mean"])),
                    v["results_min"],
                    v["results_max"]
                ),
                format!(
                    "{}/{} (<=20 hosts/cell {}, >20 {})",
                    v["exact_match"],
                    v["n"],
                    v["exact_when_max_cell_hosts_le_20"].as_str().unwrap_or(""),
                    v["exact_when_max_cell_hosts_gt_20"].as_str().unwrap_or("")
                ),
                format!(
                    "{} / {} ({:.0}%)",
                    fmt_num(f(&v["bare_cover_lookup"]["latency_ms"]["p50"])),
                    fmt_num(f(&v["bare_cover_lookup"]["latency_ms"]["p99"])),
                    100.0 * f(&v["bare_cover_lookup"]["providers_found_share"])
                ),
                fmt_num(f(&v["bare_cover_lookup"]["kad_requests_mean"])),
                format!(
                    "{} / {} ({:.0}%)",
                    fmt_num(f(&v["bare_cover_lookup_first_answer"]["latency_ms"]["p50"])),
                    fmt_num(f(&v["bare_cover_lookup_first_answer"]["latency_ms"]["p99"])),
                    100.0 * f(&v["bare_cover_lookup_first_answer"]["providers_found_share"])
                ),
                format!(
                    "{} / {}",
                    fmt_num(f(&v["process_cpu_ms_mean"])),
                    fmt_num(f(&v["bare_cover_lookup"]["process_cpu_ms_mean"]))
                ),
            ]
        })
        .collect();
    print_rows(
        &[
            "radius",
            "n",
            "ms p50 / p99 / max",
            "cells (count:n)",
            "precision (p:n)",
            "leafnet per query: kad lookups / providers requests / cells from cache (means)",
            "hosts asked, mean of hosts in cover",
            "results mean (min-max)",
            "exact vs brute force",
            "bare cover lookups ms p50 / p99 (providers found)",
            "bare kad requests per cover",
            "bare first-answer lookups ms p50 / p99 (providers found)",
            "process CPU ms per query (leafnet / bare cover)",
        ],
        &rows,
    );
    println!(
        "process CPU per get (mean, all threads, 10 ms ticks): leafnet {:.2} ms, bare {:.2} ms",
        mean(leaf_gets.iter().map(|g| g.cpu_ms)),
        mean(bare_gets.iter().map(|g| g.cpu_ms)),
    );

    let ok = leaf_get_failed == 0
        && bare_get_failed == 0
        && leaf_nears.iter().all(|n| n.error.is_none() && n.exact);
    let doc = serde_json::json!({
        "bench": "leafnet-bench-geo",
        "version": env!("CARGO_PKG_VERSION"),
        "date_utc": date,
        "profile": if cfg!(debug_assertions) { "debug" } else { "release" },
        "command": std::env::args().collect::<Vec<_>>(),
        "machine": machine(),
        "loadavg_start": load_start,
        "loadavg_end": load_end,
        "params": {
            "nodes": args.nodes, "profiles": args.profiles, "gets": args.gets,
            "queries_per_group": args.queries, "rounds": args.rounds.max(1),
            "query_timeout_s": args.query_timeout, "geo_cache_s": args.geo_cache_secs, "bootstrap_interval_s": args.bootstrap_interval,
            "replication_factor": run::node_config(&opts, &[]).kad.replication_factor,
            "gap_ms": args.gap_ms, "warmup": args.warmup, "seed": args.seed,
            "groups": work::GROUPS, "clusters": work::CLUSTERS.iter().map(|c| c.2).collect::<Vec<_>>(),
            "tiers_km": work::TIERS_KM,
            "profiles_per_cluster": dist(specs.iter().map(|s| s.cluster)),
            "profiles_per_tier": dist(specs.iter().map(|s| s.tier)),
        },
        "figures": figures,
        "pooled": {
            "leafnet_get_ms": ls, "leafnet_get_failed": leaf_get_failed,
            "leafnet_get_process_cpu_ms_mean": mean(leaf_gets.iter().map(|g| g.cpu_ms)),
            "bare_get_ms": bs, "bare_get_failed": bare_get_failed,
            "bare_get_process_cpu_ms_mean": mean(bare_gets.iter().map(|g| g.cpu_ms)),
            "radius": groups,
            "fixed_radius_with_9_cells_ms": nine_fixed_s,
        },
        "micro": micro,
        "rounds": rounds,
        "ok": ok,
    });
    let text = serde_json::to_string_pretty(&doc)?;
    match &args.json_out {
        Some(p) => {
            if let Some(d) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(d)?;
            }
            std::fs::write(p, text + "\n")?;
            println!("JSON written to {}", p.display());
        }
        None => println!("{text}"),
    }
    Ok(ok)
}
