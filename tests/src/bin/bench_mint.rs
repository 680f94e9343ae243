//! `leafnet-bench-mint`: mint notes, split-view detection (issue 5), in-process leafnet swarms of
//! 10, 30 and 100 nodes, next to bare rust-libp2p gossipsub swarms with the same parameters,
//! measured in the same run.
//!
//! ```text
//! cargo build --release -p leafnet-tests --bin leafnet-bench-mint
//! target/release/leafnet-bench-mint [--json-out FILE] [--sizes 10,30,100] [--rounds 20]
//! ```
//!
//! For each size N, the leafnet swarm, then the bare one (the first shut down before the second
//! starts), over the memory transport:
//!
//! - leafnet: `start_mem_swarm_with(N, ..)` with `mint.heartbeat` = `--heartbeat-ms` (production
//!   1 s) and the periodic Kademlia bootstrap at the production 300 s; wait until every node
//!   knows min(N − 1, 4) mint topic peers and the swarm is quiet; measure its idle CPU. Then
//!   `--rounds` rounds: a new issuer, series = round; a random half of the nodes observe
//!   statement A and the others statement B, all concurrently (`mint_observe`), t0 just before.
//!   A node's detection time is its proof's `detected_at_us` − t0. The bench polls every node
//!   not yet done (`mint_status` of the issuer) every `--poll-ms` until all hold the proof or
//!   `--round-timeout` passed, then waits until the round's gossip is over (no message received
//!   anywhere for 500 ms; rounds do not overlap), then pauses `--pause-ms`.
//! - bare: gossipsub only, leafnet's parameters (see `bench_mint/bare.rs`), connected so that
//!   the mean degree equals the leafnet swarm's measured mean connected peers (every node to
//!   node 0, plus random edges). The same rounds: the same nodes publish "A" or "B" messages of
//!   the size of a leafnet observation item; a node detects once it holds one A and one B.
//!
//! Copies per message = gossipsub's receive count before deduplication / after, summed over the
//! nodes, over the measured rounds. CPU per message per node = process CPU over the rounds /
//! (distinct gossip messages × N); leafnet sends N observations and one proof per round, bare N
//! messages.
//!
//! The table goes to stdout, followed by the JSON (or the JSON goes to `--json-out`). Progress
//! goes to stderr. Exit code 1 when a node missed a detection within the round timeout.

#![allow(clippy::print_stdout, clippy::print_stderr)]

#[path = "bench_mint/bare.rs"]
mod bare;
#[path = "bench_mint/run.rs"]
mod run;

use std::{path::PathBuf, time::Duration};

use clap::Parser;
use leafnet_tests::benchkit::{Summary, fmt_num, loadavg, machine, summarize, utc_now};

/// Split-view detection, leafnet against bare gossipsub (see BENCHMARKS.md).
#[derive(Debug, Parser)]
#[command(name = "leafnet-bench-mint")]
struct Args {
    /// Write the JSON document to this file instead of stdout.
    #[arg(long)]
    json_out: Option<PathBuf>,
    /// Swarm sizes.
    #[arg(long, value_delimiter = ',', default_values_t = vec![10, 30, 100])]
    sizes: Vec<usize>,
    /// Measured rounds per swarm.
    #[arg(long, default_value_t = 20)]
    rounds: usize,
    /// Gossipsub heartbeat in both swarms, milliseconds (production 1,000).
    #[arg(long, default_value_t = 1000)]
    heartbeat_ms: u64,
    /// Pause after each round, milliseconds.
    #[arg(long, default_value_t = 300)]
    pause_ms: u64,
    /// A round gives up on the nodes without a detection after this long, seconds.
    #[arg(long, default_value_t = 30)]
    round_timeout: u64,
    /// How often the bench asks the nodes not yet done, milliseconds.
    #[arg(long, default_value_t = 100)]
    poll_ms: u64,
    /// Longest wait for a quiet swarm before the rounds, seconds.
    #[arg(long, default_value_t = 45)]
    settle_max: u64,
    /// Seconds of idle CPU measured on the settled swarm.
    #[arg(long, default_value_t = 3)]
    idle_secs: u64,
    /// Kademlia periodic bootstrap interval of the leafnet nodes, seconds (production 300).
    #[arg(long, default_value_t = 300)]
    bootstrap_interval: u64,
    /// Seed of the A/B split, the issuers and the bare swarm's edges.
    #[arg(long, default_value_t = 0x5_2026)]
    seed: u64,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    leafnet_tests::benchkit::init_tracing();
    match bench(&args).await {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::from(1),
        Err(e) => {
            eprintln!("leafnet-bench-mint failed: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}

/// Pooled figures of one swarm.
#[derive(Debug, Clone, serde::Serialize)]
struct Pooled {
    detect_ms: Summary,
    detections: usize,
    missed: usize,
    /// Per round, the slowest node: when the last node detected.
    last_node_ms: Summary,
    copies_per_message: f64,
    cpu_ms_per_msg_node: f64,
    /// The same with the settled swarm's idle CPU over the phase taken out.
    cpu_ms_per_msg_node_net_of_idle: f64,
    msg_node_per_s: f64,
    /// Gossip publishes per round, summed over the nodes (leafnet: N observations, plus the
    /// proof from every node that derived it before it arrived by gossip).
    publishes_per_round: f64,
    /// From t0 until every observe/publish call answered.
    issue_ms: Summary,
    /// From t0 until the round's gossip went quiet.
    drained_ms: Summary,
}

fn pooled(s: &run::SwarmOut) -> Pooled {
    let all: Vec<f64> = s
        .rounds
        .iter()
        .flat_map(|r| r.detect_ms.iter().flatten().copied())
        .collect();
    let missed = s
        .rounds
        .iter()
        .map(|r| r.detect_ms.iter().filter(|d| d.is_none()).count())
        .sum();
    let last: Vec<f64> = s
        .rounds
        .iter()
        .filter(|r| r.detect_ms.iter().all(Option::is_some))
        .map(|r| {
            r.detect_ms
                .iter()
                .flatten()
                .copied()
                .fold(f64::MIN, f64::max)
        })
        .collect();
    let msg_node = (s.distinct_messages * s.nodes) as f64;
    Pooled {
        detect_ms: summarize(&all),
        detections: all.len(),
        missed,
        last_node_ms: summarize(&last),
        copies_per_message: s.gossip.recv_unfiltered / s.gossip.recv_unique,
        cpu_ms_per_msg_node: s.phase_cpu_ms / msg_node,
        cpu_ms_per_msg_node_net_of_idle: (s.phase_cpu_ms - s.idle_cpu_ms_per_s * s.phase_secs)
            / msg_node,
        msg_node_per_s: msg_node / s.phase_secs,
        publishes_per_round: s.gossip.published / s.rounds.len() as f64,
        issue_ms: summarize(&s.rounds.iter().map(|r| r.issue_ms).collect::<Vec<_>>()),
        drained_ms: summarize(&s.rounds.iter().map(|r| r.drained_ms).collect::<Vec<_>>()),
    }
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

/// One table line: figure, leafnet, bare, ratio.
fn row(n: usize, fig: &str, l: f64, b: f64, unit: &str) -> Vec<String> {
    vec![
        n.to_string(),
        fig.to_owned(),
        format!("{} {unit}", fmt_num(l)).trim().to_owned(),
        format!("{} {unit}", fmt_num(b)).trim().to_owned(),
        if b > 0.0 && b.is_finite() && l.is_finite() {
            format!("{:.2}x", l / b)
        } else {
            "-".into()
        },
    ]
}

fn print_rows(header: &[&str], rows: &[Vec<String>]) {
    print!("{}", leafnet_tests::benchkit::markdown_table(header, rows));
}

fn swarm_json(s: &run::SwarmOut, p: &Pooled) -> serde_json::Value {
    serde_json::json!({
        "pooled": p,
        "setup_secs": s.setup_secs,
        "settle_secs": s.settle_secs,
        "settled_quiet": s.settled_quiet,
        "settle_cpu_ms_per_s": s.settle_cpu_ms_per_s,
        "peers_before_rounds": s.peers_before,
        "peers_after_rounds": s.peers_after,
        "idle_cpu_ms_per_s": s.idle_cpu_ms_per_s,
        "phase_secs": s.phase_secs,
        "phase_cpu_ms": s.phase_cpu_ms,
        "distinct_messages": s.distinct_messages,
        "gossip_counters_in_phase": s.gossip,
        "drain_poll_ms": s.drain_poll_ms,
        "loadavg_before": s.loadavg_before,
        "loadavg_after": s.loadavg_after,
        "rounds": s.rounds.iter().map(|r| serde_json::json!({
            "issue_ms": round3(r.issue_ms),
            "all_done_ms": round3(r.all_done_ms),
            "drained_ms": round3(r.drained_ms),
            "detect_ms": r.detect_ms.iter().map(|d| d.map(round3)).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    })
}

async fn bench(args: &Args) -> anyhow::Result<bool> {
    anyhow::ensure!(args.rounds > 0, "need rounds");
    anyhow::ensure!(args.sizes.iter().all(|&n| n >= 2), "sizes must be >= 2");
    let date = utc_now();
    let load_start = loadavg();
    eprintln!("leafnet-bench-mint {date}, load {load_start:?}");
    let opts = run::Opts {
        rounds: args.rounds,
        heartbeat: Duration::from_millis(args.heartbeat_ms),
        pause: Duration::from_millis(args.pause_ms),
        round_timeout: Duration::from_secs(args.round_timeout),
        settle_max: Duration::from_secs(args.settle_max),
        idle_secs: args.idle_secs,
        poll: Duration::from_millis(args.poll_ms),
        bootstrap_interval: Duration::from_secs(args.bootstrap_interval),
        seed: args.seed,
    };
    let item_bytes = run::item_bytes()?;
    let proof_bytes = run::proof_bytes()?;
    eprintln!("observation item {item_bytes} B, proof item {proof_bytes} B");
    let mut rows = Vec::new();
    let mut sizes = Vec::new();
    let mut ok = true;
    for &n in &args.sizes {
        let plans = run::plan(n, opts.rounds, opts.seed);
        eprintln!("== {n} nodes: leafnet");
        let l = run::leafnet(&opts, n, &plans).await?;
        let degree = l.peers_before.connected_mean;
        eprintln!("== {n} nodes: bare (mean degree {degree:.1})");
        let b = run::bare(&opts, n, degree, item_bytes, &plans).await?;
        let (lp, bp) = (pooled(&l), pooled(&b));
        ok &= lp.missed == 0 && bp.missed == 0;
        eprintln!(
            "== {n} nodes: detection p50 {:.1}/{:.1} ms, p99 {:.1}/{:.1} ms (leafnet/bare)",
            lp.detect_ms.p50, bp.detect_ms.p50, lp.detect_ms.p99, bp.detect_ms.p99
        );
        rows.push(row(
            n,
            "detection p50",
            lp.detect_ms.p50,
            bp.detect_ms.p50,
            "ms",
        ));
        rows.push(row(
            n,
            "detection p99",
            lp.detect_ms.p99,
            bp.detect_ms.p99,
            "ms",
        ));
        rows.push(row(
            n,
            "detection max",
            lp.detect_ms.max,
            bp.detect_ms.max,
            "ms",
        ));
        rows.push(row(
            n,
            "last node of a round p50",
            lp.last_node_ms.p50,
            bp.last_node_ms.p50,
            "ms",
        ));
        rows.push(vec![
            n.to_string(),
            "detections / missed".into(),
            format!("{} / {}", lp.detections, lp.missed),
            format!("{} / {}", bp.detections, bp.missed),
            "-".into(),
        ]);
        rows.push(row(
            n,
            "all observe/publish calls answered p50",
            lp.issue_ms.p50,
            bp.issue_ms.p50,
            "ms",
        ));
        rows.push(row(
            n,
            "round's gossip quiet again p50 (250 ms polls)",
            lp.drained_ms.p50,
            bp.drained_ms.p50,
            "ms",
        ));
        rows.push(row(
            n,
            "gossip publishes per round",
            lp.publishes_per_round,
            bp.publishes_per_round,
            "",
        ));
        rows.push(row(
            n,
            "copies received per message",
            lp.copies_per_message,
            bp.copies_per_message,
            "",
        ));
        rows.push(row(
            n,
            "CPU per message per node",
            lp.cpu_ms_per_msg_node,
            bp.cpu_ms_per_msg_node,
            "ms",
        ));
        rows.push(row(
            n,
            "CPU per message per node, net of idle",
            lp.cpu_ms_per_msg_node_net_of_idle,
            bp.cpu_ms_per_msg_node_net_of_idle,
            "ms",
        ));
        rows.push(row(
            n,
            "idle CPU of the settled swarm",
            l.idle_cpu_ms_per_s,
            b.idle_cpu_ms_per_s,
            "ms/s",
        ));
        rows.push(row(
            n,
            "connected peers mean (before rounds)",
            l.peers_before.connected_mean,
            b.peers_before.connected_mean,
            "",
        ));
        rows.push(row(
            n,
            "mesh peers mean (before rounds)",
            l.peers_before.mesh_mean,
            b.peers_before.mesh_mean,
            "",
        ));
        sizes.push(serde_json::json!({
            "nodes": n,
            "leafnet": swarm_json(&l, &lp),
            "bare": swarm_json(&b, &bp),
            "ratios": {
                "detect_p50": lp.detect_ms.p50 / bp.detect_ms.p50,
                "detect_p99": lp.detect_ms.p99 / bp.detect_ms.p99,
                "copies_per_message": lp.copies_per_message / bp.copies_per_message,
                "cpu_ms_per_msg_node": lp.cpu_ms_per_msg_node / bp.cpu_ms_per_msg_node,
            },
        }));
    }
    let load_end = loadavg();
    println!(
        "leafnet-bench-mint {date}  load at start {:.2} {:.2} {:.2}, at end {:.2} {:.2} {:.2}",
        load_start[0], load_start[1], load_start[2], load_end[0], load_end[1], load_end[2],
    );
    println!(
        "{} rounds per swarm, heartbeat {} ms, observation item {item_bytes} B, proof item {proof_bytes} B",
        args.rounds, args.heartbeat_ms
    );
    print_rows(&["N", "figure", "leafnet", "bare", "ratio"], &rows);
    let doc = serde_json::json!({
        "bench": "leafnet-bench-mint",
        "version": env!("CARGO_PKG_VERSION"),
        "date_utc": date,
        "profile": if cfg!(debug_assertions) { "debug" } else { "release" },
        "command": std::env::args().collect::<Vec<_>>(),
        "machine": machine(),
        "loadavg_start": load_start,
        "loadavg_end": load_end,
        "params": {
            "sizes": args.sizes, "rounds": args.rounds, "heartbeat_ms": args.heartbeat_ms,
            "pause_ms": args.pause_ms, "round_timeout_s": args.round_timeout,
            "poll_ms": args.poll_ms, "settle_max_s": args.settle_max, "idle_secs": args.idle_secs,
            "bootstrap_interval_s": args.bootstrap_interval, "seed": args.seed,
            "quiet_cpu_ms_per_s": run::QUIET_CPU_MS,
            "observation_item_bytes": item_bytes, "proof_item_bytes": proof_bytes,
        },
        "sizes": sizes,
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
