//! `leafnet-bench-nat`: reachability benchmarks (issue 4): which relay a private node picks
//! and how fast, and dial plus first request under an injected RTT.
//!
//! ```text
//! cargo build --release -p leafnet-tests --bin leafnet-bench-nat
//! target/release/leafnet-bench-nat [--json-out FILE]
//! ```
//!
//! 1. **Relay choice** (`bench_nat/relay.rs`): 8 relay nodes in process (memory transport),
//!    started once. Each of `--runs` runs draws 4..=8 of them as candidates with true RTTs
//!    log-uniform in 1..200 ms, injected by the private node's delaying memory transport, and
//!    starts a fresh private node (`relay.reachability = private`, defaults otherwise: 3 pings
//!    per candidate, 2 reservations) bootstrapping from them. It polls `relays()` every 2 ms
//!    until two reservations are active. Ratio = true RTT of the best chosen relay / best
//!    candidate's true RTT (and second chosen / second best). Times run from the `Node::start`
//!    call.
//! 2. **Dial + first request** (`bench_nat/dial.rs`): for r in {0, 20, 50, 100} ms, over TCP
//!    (leafnet's delaying transport wrapper on the dialer) and QUIC (a user-space UDP delay
//!    proxy), a fresh dialer per sample dials a target node and the time runs until the first
//!    ping on the new connection answered. The same for a bare rust-libp2p ping-only swarm on
//!    leafnet's transport stack, interleaved sample by sample.
//! 3. Hole punching is measured by the network-namespace lab (`tests/tests/nat_lab.rs`).
//!
//! The table goes to stdout, then the JSON (or to `--json-out`). Progress goes to stderr. Exit
//! code 1 when a run or sample failed, 2 when the bench could not run.

#![allow(clippy::print_stdout, clippy::print_stderr)]

#[path = "bench_nat/dial.rs"]
mod dial;
#[path = "bench_nat/relay.rs"]
mod relay;

use std::{path::PathBuf, time::Duration};

use clap::Parser;
use leafnet_tests::benchkit::{Summary, fmt_num, loadavg, machine, summarize, utc_now};
use serde::Serialize;

use crate::dial::Kind;

/// Relay choice and dial latency under injected RTT (see BENCHMARKS.md).
#[derive(Debug, Parser)]
#[command(name = "leafnet-bench-nat")]
struct Args {
    /// Write the JSON document to this file instead of stdout.
    #[arg(long)]
    json_out: Option<PathBuf>,
    /// Relay-choice runs.
    #[arg(long, default_value_t = 30)]
    runs: usize,
    /// Dial samples per transport, implementation and r.
    #[arg(long, default_value_t = 20)]
    samples: usize,
    /// Injected RTTs for the dial part, ms (0 is always measured too, as the baseline).
    #[arg(long, value_delimiter = ',', default_values_t = [20u64, 50, 100])]
    rtts: Vec<u64>,
    /// Skip the relay part.
    #[arg(long)]
    no_relay: bool,
    /// Skip the dial part.
    #[arg(long)]
    no_dial: bool,
    /// Seed of the relay subsets and RTTs.
    #[arg(long, default_value_t = 0x4a7_2026)]
    seed: u64,
}

/// xorshift64* (the bench needs a reproducible spread, nothing more).
#[derive(Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        let x = &mut self.0;
        *x ^= *x >> 12;
        *x ^= *x << 25;
        *x ^= *x >> 27;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Uniform in 0..n.
    pub fn below(&mut self, n: usize) -> usize {
        (self.unit() * n as f64) as usize
    }
}

/// One line of the result table.
#[derive(Debug, Clone, Serialize)]
struct Row {
    part: &'static str,
    figure: String,
    value: String,
    baseline: String,
    ratio: String,
    target: String,
    met: Option<bool>,
}

fn row(part: &'static str, figure: impl Into<String>, value: impl Into<String>) -> Row {
    Row {
        part,
        figure: figure.into(),
        value: value.into(),
        baseline: "-".into(),
        ratio: "-".into(),
        target: "-".into(),
        met: None,
    }
}

impl Row {
    fn base(mut self, b: impl Into<String>) -> Self {
        self.baseline = b.into();
        self
    }
    fn ratio(mut self, r: impl Into<String>) -> Self {
        self.ratio = r.into();
        self
    }
    fn target(mut self, t: impl Into<String>, met: bool) -> Self {
        self.target = t.into();
        self.met = Some(met);
        self
    }
}

fn print_rows(rows: &[Row]) {
    let header = [
        "part", "figure", "value", "baseline", "ratio", "target", "met",
    ];
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.part.to_owned(),
                r.figure.clone(),
                r.value.clone(),
                r.baseline.clone(),
                r.ratio.clone(),
                r.target.clone(),
                match r.met {
                    Some(true) => "yes".into(),
                    Some(false) => "NO".into(),
                    None => "-".into(),
                },
            ]
        })
        .collect();
    print!(
        "{}",
        leafnet_tests::benchkit::markdown_table(&header, &cells)
    );
}

fn frac(v: &[f64], ok: impl Fn(f64) -> bool) -> (usize, usize) {
    (v.iter().filter(|x| ok(**x)).count(), v.len())
}

fn p5099(s: &Summary) -> String {
    format!("{} / {}", fmt_num(s.p50), fmt_num(s.p99))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    leafnet_tests::benchkit::init_tracing();
    match bench(&args).await {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::from(1),
        Err(e) => {
            eprintln!("leafnet-bench-nat failed: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}

/// The relay part: runs, rows, JSON and how many runs failed.
async fn relay_part(
    args: &Args,
    rows: &mut Vec<Row>,
) -> anyhow::Result<(serde_json::Value, usize)> {
    let relays = relay::start(8).await?;
    let mut rng = Rng::new(args.seed);
    let mut runs = Vec::new();
    for i in 0..args.runs {
        let r = relay::run_one(&relays, i, &mut rng, Duration::from_secs(30)).await?;
        eprintln!(
            "relay run {i}: {} candidates, max RTT {:.1} ms, ratio {:.3} / {:.3}, chosen {:.0} ms, first active {:.0} ms, both {:.0} ms{}",
            r.candidates.len(),
            r.max_rtt_ms,
            r.ratio_best,
            r.ratio_second,
            r.chosen_ms,
            r.first_active_ms,
            r.both_active_ms,
            r.error
                .as_deref()
                .map(|e| format!(" ERROR {e}"))
                .unwrap_or_default()
        );
        runs.push(r);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    leafnet_tests::shutdown_all(relays.nodes).await;
    let ok: Vec<&relay::Run> = runs.iter().filter(|r| r.error.is_none()).collect();
    let failed = runs.len() - ok.len();
    let col = |f: fn(&relay::Run) -> f64| ok.iter().map(|r| f(r)).collect::<Vec<f64>>();
    let best = col(|r| r.ratio_best);
    let second = col(|r| r.ratio_second);
    let chosen = col(|r| r.chosen_ms);
    let first = col(|r| r.first_active_ms);
    let both = col(|r| r.both_active_ms);
    let maxrtt = col(|r| r.max_rtt_ms);
    let over = col(|r| r.first_active_ms - r.max_rtt_ms);
    let chosen_over = col(|r| r.chosen_ms - r.max_rtt_ms);
    let per_max = col(|r| r.first_active_ms / r.max_rtt_ms);
    // The node's probe time against the true RTT, over every measured candidate.
    let probe_ratio: Vec<f64> = ok
        .iter()
        .flat_map(|r| {
            r.probe_median_ms.iter().filter_map(|(i, m)| {
                let rtt = r.candidates.iter().find(|c| c.0 == *i)?.1;
                m.map(|m| m / rtt)
            })
        })
        .collect();
    let probe_excess: Vec<f64> = ok
        .iter()
        .flat_map(|r| {
            r.probe_median_ms.iter().filter_map(|(i, m)| {
                let rtt = r.candidates.iter().find(|c| c.0 == *i)?.1;
                m.map(|m| m - 2.0 * rtt)
            })
        })
        .collect();
    let (sb, sb_all) = (summarize(&best), summarize(&second));
    let (nb, n) = frac(&best, |x| x <= 1.2);
    let (ns, _) = frac(&second, |x| x <= 1.2);
    let (nt, _) = frac(&over, |x| x <= 50.0);
    let (nc, _) = frac(&chosen_over, |x| x <= 50.0);
    let sm = summarize(&maxrtt);
    let sf = summarize(&first);
    rows.push(
        row(
            "relay",
            "best chosen RTT / best candidate RTT, p50 / p99 / max",
            format!("{:.3} / {:.3} / {:.3}", sb.p50, sb.p99, sb.max),
        )
        .ratio(format!("{nb}/{n} runs <= 1.2"))
        .target("<= 1.2 (3 pings each)", nb == n && n > 0),
    );
    rows.push(
        row(
            "relay",
            "second chosen RTT / second-best candidate RTT, p50 / p99 / max",
            format!("{:.3} / {:.3} / {:.3}", sb_all.p50, sb_all.p99, sb_all.max),
        )
        .ratio(format!("{ns}/{n} runs <= 1.2"))
        .target("<= 1.2", ns == n && n > 0),
    );
    rows.push(
        row(
            "relay",
            "start -> first chosen (selection made), p50 / p99 ms",
            p5099(&summarize(&chosen)),
        )
        .base(format!("max candidate RTT p50 / p99 {}", p5099(&sm)))
        .ratio(format!(
            "excess over max RTT p50 / p99 {}",
            p5099(&summarize(&chosen_over))
        ))
        .target("<= max RTT + 50 ms", nc == n && n > 0),
    );
    rows.push(
        row(
            "relay",
            "start -> first active reservation, p50 / p99 ms",
            p5099(&sf),
        )
        .base(format!("max candidate RTT p50 / p99 {}", p5099(&sm)))
        .ratio(format!(
            "excess p50 / p99 {}; / max RTT p50 {:.1}x; {nt}/{n} within +50 ms",
            p5099(&summarize(&over)),
            summarize(&per_max).p50
        ))
        .target("<= max RTT + 50 ms", nt == n && n > 0),
    );
    rows.push(row(
        "relay",
        "start -> both reservations active, p50 / p99 ms",
        p5099(&summarize(&both)),
    ));
    rows.push(
        row(
            "relay",
            "node's probe median / true RTT, p50 / p99 (all candidates)",
            p5099(&summarize(&probe_ratio)),
        )
        .ratio(format!(
            "probe - 2 x RTT p50 / p99 {} ms",
            p5099(&summarize(&probe_excess))
        )),
    );
    rows.push(row(
        "relay",
        "failed runs",
        format!("{failed} of {}", runs.len()),
    ));
    let json = serde_json::json!({
        "relays": 8,
        "runs": runs,
        "failed": failed,
        "ratio_best": summarize(&best),
        "ratio_second": summarize(&second),
        "ratio_best_le_1_2": nb,
        "ratio_second_le_1_2": ns,
        "chosen_ms": summarize(&chosen),
        "first_active_ms": sf,
        "both_active_ms": summarize(&both),
        "max_rtt_ms": sm,
        "first_active_minus_max_rtt_ms": summarize(&over),
        "chosen_minus_max_rtt_ms": summarize(&chosen_over),
        "first_active_per_max_rtt": summarize(&per_max),
        "first_active_within_max_rtt_plus_50ms": nt,
        "chosen_within_max_rtt_plus_50ms": nc,
        "probe_median_per_true_rtt": summarize(&probe_ratio),
        "probe_median_minus_2rtt_ms": summarize(&probe_excess),
    });
    Ok((json, failed))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
enum Impl {
    Leafnet,
    /// A ping-only rust-libp2p swarm on leafnet's transport stack.
    Bare,
    /// The same with V1Lazy substream negotiation.
    BareLazy,
}

#[derive(Debug, Serialize)]
struct DialSeries {
    kind: Kind,
    imp: Impl,
    r_ms: u64,
    samples: Vec<dial::Sample>,
    errors: Vec<String>,
}

/// The dial part: every series, rows, JSON and how many samples failed.
async fn dial_part(args: &Args, rows: &mut Vec<Row>) -> anyhow::Result<(serde_json::Value, usize)> {
    let timeout = Duration::from_secs(10);
    let mut rs = vec![0u64];
    rs.extend(args.rtts.iter().copied().filter(|r| *r > 0));
    let mut all: Vec<DialSeries> = Vec::new();
    for kind in [Kind::Quic, Kind::Tcp] {
        let target = dial::start_node(kind, None).await?;
        let bare = dial::bare_target(kind).await?;
        for &r in &rs {
            let rd = Duration::from_millis(r);
            let lp =
                dial::path(kind, &target.node.listen_addrs[0], target.node.peer_id, rd).await?;
            let bp = dial::path(kind, &bare.addr, bare.peer_id, rd).await?;
            let mk = |imp: Impl| DialSeries {
                kind,
                imp,
                r_ms: r,
                samples: Vec::new(),
                errors: Vec::new(),
            };
            let (mut ls, mut bs, mut zs) = (mk(Impl::Leafnet), mk(Impl::Bare), mk(Impl::BareLazy));
            for _ in 0..args.samples {
                match dial::leaf_sample(kind, target.node.peer_id, &lp, timeout).await {
                    Ok(s) => ls.samples.push(s),
                    Err(e) => ls.errors.push(format!("{e:#}")),
                }
                for (lazy, series) in [(false, &mut bs), (true, &mut zs)] {
                    match dial::bare_sample(kind, lazy, bare.peer_id, &bp, timeout).await {
                        Ok(s) => series.samples.push(s),
                        Err(e) => series.errors.push(format!("{e:#}")),
                    }
                }
            }
            let med = |s: &DialSeries| {
                summarize(
                    &s.samples
                        .iter()
                        .map(|x| x.first_request_ms)
                        .collect::<Vec<_>>(),
                )
                .p50
            };
            eprintln!(
                "dial {} r={r} ms: leafnet p50 {:.1} ms, bare p50 {:.1} ms, bare lazy p50 {:.1} ms ({} errors)",
                kind.name(),
                med(&ls),
                med(&bs),
                med(&zs),
                ls.errors.len() + bs.errors.len() + zs.errors.len()
            );
            all.push(ls);
            all.push(bs);
            all.push(zs);
        }
        target.node.shutdown().await;
    }
    let failed: usize = all.iter().map(|s| s.errors.len()).sum();
    let mut summary = Vec::new();
    for kind in [Kind::Quic, Kind::Tcp] {
        let (target, name) = match kind {
            Kind::Quic => (2.1, "QUIC"),
            Kind::Tcp => (3.1, "TCP"),
        };
        for imp in [Impl::Leafnet, Impl::Bare, Impl::BareLazy] {
            let bare = imp != Impl::Leafnet;
            let series: Vec<&DialSeries> = all
                .iter()
                .filter(|s| s.kind == kind && s.imp == imp)
                .collect();
            let who = match imp {
                Impl::Leafnet => "leafnet",
                Impl::Bare => "bare ping swarm",
                Impl::BareLazy => "bare ping swarm, V1Lazy substreams",
            };
            let Some(base) = series.iter().find(|s| s.r_ms == 0) else {
                continue;
            };
            let t = |s: &DialSeries| -> Vec<f64> {
                s.samples.iter().map(|x| x.first_request_ms).collect()
            };
            let b50 = summarize(&t(base)).p50;
            rows.push(row(
                "dial",
                format!("{name} {who}: dial + first request, r = 0, p50 / p99 ms"),
                p5099(&summarize(&t(base))),
            ));
            for s in series.iter().filter(|s| s.r_ms > 0) {
                let r = s.r_ms as f64;
                let ts = t(s);
                // The TCP wrapper delays bytes, not the kernel's handshake: on a real path the
                // SYN / SYN-ACK adds one more r before the first byte can leave.
                let hs = if kind == Kind::Tcp { 1.0 } else { 0.0 };
                let per_r = summarize(&ts.iter().map(|x| x / r + hs).collect::<Vec<_>>());
                let excess = summarize(&ts.iter().map(|x| (x - b50) / r + hs).collect::<Vec<_>>());
                let conn = summarize(&s.samples.iter().map(|x| x.connected_ms).collect::<Vec<_>>());
                let ping = summarize(&s.samples.iter().map(|x| x.ping_rtt_ms).collect::<Vec<_>>());
                let st = summarize(&ts);
                let mut rw = row(
                    "dial",
                    format!(
                        "{name} {who}: dial + first request, r = {} ms, p50 / p99 ms",
                        s.r_ms
                    ),
                    p5099(&st),
                )
                .base(format!("r = 0 p50 {}", fmt_num(b50)))
                .ratio(format!(
                    "time/r {:.2} / {:.2}; (time - base)/r {:.2} / {:.2}{}",
                    per_r.p50,
                    per_r.p99,
                    excess.p50,
                    excess.p99,
                    if hs > 0.0 {
                        " (incl. +1 r TCP handshake)"
                    } else {
                        ""
                    }
                ));
                if !bare {
                    rw = rw.target(format!("<= {target} r (p50, time/r)"), per_r.p50 <= target);
                }
                rows.push(rw);
                summary.push(serde_json::json!({
                    "transport": kind, "impl": imp, "r_ms": s.r_ms,
                    "first_request_ms": st, "connected_ms": conn, "ping_rtt_ms": ping,
                    "baseline_r0_p50_ms": b50,
                    "tcp_handshake_r_added": hs,
                    "time_per_r": per_r, "excess_per_r": excess,
                    "target_per_r": if bare { None } else { Some(target) },
                    "met_p50": if bare { None } else { Some(per_r.p50 <= target) },
                }));
            }
        }
    }
    rows.push(row(
        "dial",
        "failed samples",
        format!(
            "{failed} of {}",
            all.iter()
                .map(|s| s.samples.len() + s.errors.len())
                .sum::<usize>()
        ),
    ));
    Ok((
        serde_json::json!({ "summary": summary, "series": all, "failed": failed }),
        failed,
    ))
}

async fn bench(args: &Args) -> anyhow::Result<bool> {
    let date = utc_now();
    let load_start = loadavg();
    eprintln!("leafnet-bench-nat {date}, load {load_start:?}");
    let started = std::time::Instant::now();
    let mut rows = Vec::new();
    let mut failed = 0;
    let mut relay_json = serde_json::Value::Null;
    let mut dial_json = serde_json::Value::Null;
    let mut load_after_relay = None;
    if !args.no_relay {
        let (j, f) = relay_part(args, &mut rows).await?;
        relay_json = j;
        failed += f;
        load_after_relay = Some(loadavg());
    }
    if !args.no_dial {
        let (j, f) = dial_part(args, &mut rows).await?;
        dial_json = j;
        failed += f;
    }
    rows.push(row(
        "holepunch",
        "DCUtR success over 20 attempts",
        "see nat_lab test (tests/tests/nat_lab.rs)",
    ));
    let load_end = loadavg();
    print_rows(&rows);
    let doc = serde_json::json!({
        "bench": "leafnet-bench-nat",
        "date": date,
        "machine": machine(),
        "load_start": load_start,
        "load_after_relay": load_after_relay,
        "load_end": load_end,
        "elapsed_s": started.elapsed().as_secs_f64(),
        "args": {
            "runs": args.runs, "samples": args.samples, "rtts": args.rtts, "seed": args.seed,
        },
        "rows": rows,
        "relay": relay_json,
        "dial": dial_json,
        "failed": failed,
    });
    let text = serde_json::to_string_pretty(&doc)?;
    match &args.json_out {
        Some(p) => std::fs::write(p, text + "\n")?,
        None => println!("{text}"),
    }
    eprintln!(
        "done in {:.0} s, load {load_end:?}, {failed} failures",
        started.elapsed().as_secs_f64()
    );
    Ok(failed == 0)
}
