//! `leafnet-bench-leaf`: leaf payments (issue 6) between two real leafnet nodes on loopback
//! QUIC, next to baselines measured in the same run.
//!
//! ```text
//! cargo run --release -p leafnet-tests --bin leafnet-bench-leaf -- \
//!     [--payments 1000] [--concurrency 16,64,256] [--concurrent-payments 3000] [--json-out FILE]
//! ```
//!
//! Baselines (same process, same run):
//! - **raw redb**: a loop of single-insert transactions with `Durability::Immediate` (one small
//!   insert each) on a temp file in the same filesystem as the nodes' databases; commits/s and
//!   commit latency. Measured twice, before the nodes start and after they stopped; the pooled
//!   samples are the baseline.
//! - **signature ceiling**: 2 ed25519 signs + 2 `verify_strict` (ed25519-dalek, decompressed
//!   keys) per payment, over messages of the size of a real cheque and acceptance.
//! - **in-process payment simulation**: two `leafnet_leaf::Wallet`s driven directly, each
//!   `Persist` written with `leafnet_storage::leaf::commit` into its own redb (cheque durable,
//!   decision durable, the payer's filing of the decision lazy), one payment at a time: the
//!   protocol's own floor without network, actor or wallet task. Also the same without storage
//!   (the wallets' CPU per payment).
//!
//! The nodes: two in-process `leafnet_node::Node`s, QUIC only on 127.0.0.1, network `local`,
//! both genesis members, `max_balance` 10^12, each with its own temp dir and redb. After the
//! routing settled and both published their profiles, node A pays node B:
//! 1. warm-up (`--warmup`), then `--payments` payments one at a time (serial);
//! 2. `--preflight` payments refused by the payee's pre-flight (an amount over its ceiling):
//!    the cost of `pay`'s checks and the `hello` round trip alone;
//! 3. for each `--concurrency` c: `--concurrent-payments` payments with c in flight.
//!
//! Per run: payments/s (payments / wall time), latency as the caller sees it, process CPU per
//! payment (`/proc/self/stat`, both nodes live in this process), and the deltas of each node's
//! leaf metrics (durable and lazy commits, batch sizes, outcomes). At the end the balances are
//! checked (payer + payee = 0, payee = the sum paid) and both chains are re-verified together
//! (`verify_ledger`).
//!
//! The table goes to stdout, followed by the JSON (or the JSON goes to `--json-out`). Progress
//! goes to stderr. Exit code 1 when a payment failed or the ledger does not add up.

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::{
    collections::{BTreeMap, HashMap},
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::Context as _;
use clap::Parser;
use ed25519_dalek::{Signer as _, SigningKey};
use leafnet_config::{Config, Overrides, Valid};
use leafnet_leaf::{Action, Event, Memo, Params, Wallet};
use leafnet_node::{Node, NodeOptions, model::PayRequest};
use leafnet_tests::{
    TestNode,
    benchkit::{Summary, fmt_num, loadavg, machine, markdown_table, summarize, utc_now},
};
use libp2p::identity::Keypair;
use serde::Serialize;

/// Leaf payments between two nodes over QUIC, with their baselines (see BENCHMARKS.md).
#[derive(Debug, Parser)]
#[command(name = "leafnet-bench-leaf")]
struct Args {
    /// Write the JSON document to this file instead of stdout.
    #[arg(long)]
    json_out: Option<PathBuf>,
    /// Serial payments measured (one at a time).
    #[arg(long, default_value_t = 1000)]
    payments: usize,
    /// Serial payments before the measured ones.
    #[arg(long, default_value_t = 50)]
    warmup: usize,
    /// Payments in flight in the concurrent runs, one run per value.
    #[arg(long, value_delimiter = ',', default_values_t = vec![16, 64, 256])]
    concurrency: Vec<usize>,
    /// Payments per concurrent run.
    #[arg(long, default_value_t = 3000)]
    concurrent_payments: usize,
    /// Payments refused at the pre-flight (hello only), one at a time.
    #[arg(long, default_value_t = 200)]
    preflight: usize,
    /// Raw redb commits per pass (two passes: before and after the nodes).
    #[arg(long, default_value_t = 1000)]
    raw_commits: usize,
    /// Repetitions of the signature ceiling (2 signs + 2 verifies each).
    #[arg(long, default_value_t = 3000)]
    sig_reps: usize,
    /// Payments of the in-process simulation (with and without storage).
    #[arg(long, default_value_t = 1000)]
    sim_payments: usize,
    /// Amount of every payment, in leaf.
    #[arg(long, default_value = "1.5")]
    amount: String,
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    leafnet_tests::benchkit::init_tracing();
    match bench(&args).await {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::from(1),
        Err(e) => {
            eprintln!("leafnet-bench-leaf failed: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}

/// The network's maximum balance in the bench (minor units): never a limit here.
const MAX_BALANCE: i64 = 1_000_000_000_000;

/// CPU time (user + system) this process used so far, in milliseconds (`/proc/self/stat`,
/// assuming the usual 100 clock ticks per second).
fn process_cpu_ms() -> f64 {
    let s = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let rest = s.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| {
        f.get(i - 3)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(f64::NAN)
    };
    (tick(14) + tick(15)) * 10.0
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

// ---------------------------------------------------------------------------------------------
// Baselines
// ---------------------------------------------------------------------------------------------

/// The raw redb single-insert durable commit loop.
#[derive(Debug, Clone, Serialize)]
struct RawCommits {
    commits: usize,
    secs: f64,
    commits_per_s: f64,
    latency_ms: Summary,
}

const RAW: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("bench");

fn raw_redb(n: usize) -> anyhow::Result<(Vec<f64>, f64)> {
    let dir = tempfile::tempdir()?;
    let db = redb::Database::create(dir.path().join("raw.redb"))?;
    {
        let tx = db.begin_write()?;
        tx.open_table(RAW)?;
        tx.commit()?;
    }
    let value = [7u8; 32];
    let mut lat = Vec::with_capacity(n);
    let start = Instant::now();
    for i in 0..n as u64 {
        let t = Instant::now();
        let mut tx = db.begin_write()?;
        tx.set_durability(redb::Durability::Immediate)?;
        {
            let mut table = tx.open_table(RAW)?;
            table.insert(i, value.as_slice())?;
        }
        tx.commit()?;
        lat.push(ms(t.elapsed()));
    }
    Ok((lat, start.elapsed().as_secs_f64()))
}

fn raw_summary(lat: &[f64], secs: f64) -> RawCommits {
    RawCommits {
        commits: lat.len(),
        secs,
        commits_per_s: lat.len() as f64 / secs,
        latency_ms: summarize(lat),
    }
}

/// 2 signs + 2 strict verifies per payment, over messages of the real records' sizes.
#[derive(Debug, Clone, Serialize)]
struct SigCeiling {
    reps: usize,
    cheque_bytes: usize,
    acceptance_bytes: usize,
    us_per_payment: f64,
    sign_us: f64,
    verify_us: f64,
    /// On every core of the machine: cores × 1 / `us_per_payment`.
    payments_per_s_all_cores: f64,
    cores: usize,
}

fn sig_ceiling(reps: usize, cheque: usize, acceptance: usize) -> SigCeiling {
    let ka = SigningKey::from_bytes(&rand::random::<[u8; 32]>());
    let kb = SigningKey::from_bytes(&rand::random::<[u8; 32]>());
    let (va, vb) = (ka.verifying_key(), kb.verifying_key());
    let mut m1 = vec![1u8; cheque];
    let mut m2 = vec![2u8; acceptance];
    let mut ok = true;
    let (mut sign_t, mut verify_t) = (Duration::ZERO, Duration::ZERO);
    let start = Instant::now();
    for i in 0..reps {
        m1[..8].copy_from_slice(&(i as u64).to_le_bytes());
        m2[..8].copy_from_slice(&(i as u64).to_le_bytes());
        let t = Instant::now();
        let s1 = ka.sign(&m1);
        let t1 = Instant::now();
        ok &= va.verify_strict(&m1, &s1).is_ok();
        let t2 = Instant::now();
        let s2 = kb.sign(&m2);
        let t3 = Instant::now();
        ok &= vb.verify_strict(&m2, &s2).is_ok();
        let t4 = Instant::now();
        sign_t += (t1 - t) + (t3 - t2);
        verify_t += (t2 - t1) + (t4 - t3);
    }
    let total = start.elapsed();
    assert!(ok, "a signature did not verify");
    let us = total.as_secs_f64() * 1e6 / reps as f64;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    SigCeiling {
        reps,
        cheque_bytes: cheque,
        acceptance_bytes: acceptance,
        us_per_payment: us,
        sign_us: sign_t.as_secs_f64() * 1e6 / (2 * reps) as f64,
        verify_us: verify_t.as_secs_f64() * 1e6 / (2 * reps) as f64,
        payments_per_s_all_cores: cores as f64 * 1e6 / us,
        cores,
    }
}

/// The in-process payment simulation: two wallets, optionally each with its own redb.
#[derive(Debug, Clone, Serialize)]
struct Sim {
    payments: usize,
    with_storage: bool,
    secs: f64,
    payments_per_s: f64,
    latency_ms: Summary,
    /// The payer issues the cheque (sign, durable commit).
    issue_ms: Summary,
    /// The payee decides (verify, sign, durable commit).
    decide_ms: Summary,
    /// The payer files the decision (verify, lazy commit).
    file_ms: Summary,
    cheque_bytes: usize,
    acceptance_bytes: usize,
}

fn sim_params(a: &SigningKey, b: &SigningKey) -> Params {
    let mut genesis = vec![a.verifying_key().to_bytes(), b.verifying_key().to_bytes()];
    genesis.sort_unstable();
    Params {
        max_balance: MAX_BALANCE,
        certifications_needed: 2,
        genesis,
        certification_validity_ms: 365 * 86_400_000,
    }
}

fn persists(actions: &[Action]) -> Vec<&leafnet_leaf::Changes> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Persist(c) => Some(&**c),
            _ => None,
        })
        .collect()
}

fn sent(actions: &[Action]) -> anyhow::Result<Vec<u8>> {
    actions
        .iter()
        .find_map(|a| match a {
            Action::Send { message, .. } => Some(message.to_bytes()),
            _ => None,
        })
        .context("the wallet sent nothing")
}

fn simulate(n: usize, with_storage: bool, amount: u64) -> anyhow::Result<Sim> {
    let ka = SigningKey::from_bytes(&rand::random::<[u8; 32]>());
    let kb = SigningKey::from_bytes(&rand::random::<[u8; 32]>());
    let params = sim_params(&ka, &kb);
    let (acc_a, acc_b) = (ka.verifying_key().to_bytes(), kb.verifying_key().to_bytes());
    let dir = tempfile::tempdir()?;
    let dbs = if with_storage {
        Some((
            leafnet_storage::Database::open(&dir.path().join("a.redb"))?,
            leafnet_storage::Database::open(&dir.path().join("b.redb"))?,
        ))
    } else {
        None
    };
    let write = |side: usize, actions: &[Action], durable: bool| -> anyhow::Result<()> {
        if let Some((da, db)) = &dbs {
            let (db, acc) = if side == 0 { (da, acc_a) } else { (db, acc_b) };
            let batch: Vec<_> = persists(actions).into_iter().map(|c| (acc, c)).collect();
            leafnet_storage::leaf::commit(db, &batch, durable)?;
        }
        Ok(())
    };
    let (mut a, open_a) = Wallet::create(ka, params.clone())?;
    let (mut b, open_b) = Wallet::create(kb, params)?;
    write(0, &open_a, true)?;
    write(1, &open_b, true)?;
    let (mut cheque_bytes, mut acceptance_bytes) = (0, 0);
    let mut lat = Vec::with_capacity(n);
    let (mut issue, mut decide, mut file) = (Vec::new(), Vec::new(), Vec::new());
    let start = Instant::now();
    for i in 0..n as u64 {
        let now = 1_000 + i;
        let t = Instant::now();
        let issued = a.handle(
            Event::Pay {
                payee: acc_b,
                amount,
                deadline_ms: u64::MAX / 2,
                memo: Memo::None,
            },
            now,
        )?;
        write(0, &issued, true)?;
        let t1 = Instant::now();
        let cheque = sent(&issued)?;
        let decided = b.handle(Event::Received(cheque.clone()), now)?;
        write(1, &decided, true)?;
        let t2 = Instant::now();
        let decision = sent(&decided)?;
        let filed = a.handle(Event::Received(decision.clone()), now)?;
        write(0, &filed, false)?;
        let t3 = Instant::now();
        lat.push(ms(t3 - t));
        issue.push(ms(t1 - t));
        decide.push(ms(t2 - t1));
        file.push(ms(t3 - t2));
        (cheque_bytes, acceptance_bytes) = (cheque.len(), decision.len());
    }
    let secs = start.elapsed().as_secs_f64();
    anyhow::ensure!(
        a.balance() == -(n as i64 * amount as i64) && b.balance() == -a.balance(),
        "simulation balances do not add up"
    );
    Ok(Sim {
        payments: n,
        with_storage,
        secs,
        payments_per_s: n as f64 / secs,
        latency_ms: summarize(&lat),
        issue_ms: summarize(&issue),
        decide_ms: summarize(&decide),
        file_ms: summarize(&file),
        cheque_bytes,
        acceptance_bytes,
    })
}

// ---------------------------------------------------------------------------------------------
// The nodes
// ---------------------------------------------------------------------------------------------

/// A loopback QUIC node's config, network `local`, both accounts genesis members.
fn node_config(genesis: &[[u8; 32]]) -> anyhow::Result<Valid> {
    let mut c = Config::default();
    let mut o = Overrides::default();
    o.network = Some("local".into());
    o.local = Some(true);
    o.transports = vec!["quic".into()];
    o.listen = vec!["/ip4/127.0.0.1/udp/0/quic-v1".into()];
    o.api = Some("127.0.0.1:0".into());
    c.apply(&o);
    let mut v = c.validate().context("bench config")?;
    v.leaf.genesis = genesis.to_vec();
    v.leaf.max_balance = MAX_BALANCE;
    Ok(v)
}

async fn start_pair() -> anyhow::Result<Vec<TestNode>> {
    let mut dirs = Vec::new();
    let mut genesis = Vec::new();
    for _ in 0..2 {
        let d = tempfile::tempdir()?;
        let a = leafnet_node::datadir::DataDir::new(d.path()).load_or_create_account()?;
        genesis.push(a.verifying_key().to_bytes());
        dirs.push(d);
    }
    genesis.sort_unstable();
    let mut nodes = Vec::new();
    for dir in dirs {
        let keypair = Keypair::generate_ed25519();
        let account = leafnet_node::datadir::DataDir::new(dir.path()).load_or_create_account()?;
        let node = Node::start(NodeOptions {
            config: node_config(&genesis)?,
            keypair: keypair.clone(),
            account,
            db_path: dir.path().join("leafnet.redb"),
            api: None,
            latency: None,
        })
        .await?;
        nodes.push(TestNode { node, keypair, dir });
    }
    leafnet_tests::settle_routing(&nodes, Duration::from_secs(30)).await?;
    for (i, t) in nodes.iter().enumerate() {
        t.node
            .profiles()
            .set_profile(leafnet_node::model::SetProfile {
                name: format!("bench{i}"),
                kind: None,
                location: None,
                services: vec!["leaf".into()],
                extra: Vec::new(),
            })
            .await
            .with_context(|| format!("node {i} publishes its profile"))?;
    }
    Ok(nodes)
}

/// A node's metrics, Prometheus text parsed into "name{labels}" → value.
fn metrics(node: &Node) -> HashMap<String, f64> {
    node.metrics_text()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_owned(), v.parse().ok()?))
        })
        .collect()
}

/// What one node's leaf metrics did over a run.
#[derive(Debug, Clone, Serialize)]
struct SideDelta {
    durable_commits: f64,
    lazy_commits: f64,
    batches: f64,
    batch_inputs: f64,
    mean_batch_inputs: f64,
    /// Batches per histogram bucket, in order: (upper bound "le", batches in this bucket, not
    /// cumulative); empty buckets left out.
    batch_histogram: Vec<(String, f64)>,
    outcomes: BTreeMap<String, f64>,
    durable_commits_per_payment: f64,
    lazy_commits_per_payment: f64,
    payments_per_durable_commit: f64,
    durable_commits_per_s: f64,
}

fn delta(
    before: &HashMap<String, f64>,
    after: &HashMap<String, f64>,
    payments: usize,
    secs: f64,
) -> SideDelta {
    let d = |k: &str| after.get(k).copied().unwrap_or(0.0) - before.get(k).copied().unwrap_or(0.0);
    let durable = d("leafnet_leaf_durable_commits_total");
    let lazy = d("leafnet_leaf_lazy_commits_total");
    let batches = d("leafnet_leaf_batch_inputs_count");
    let inputs = d("leafnet_leaf_batch_inputs_sum");
    let mut buckets: Vec<(f64, String, f64)> = after
        .keys()
        .filter_map(|k| {
            let le = k
                .strip_prefix("leafnet_leaf_batch_inputs_bucket{le=\"")?
                .strip_suffix("\"}")?;
            let bound = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((bound, le.to_owned(), d(k)))
        })
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut hist = Vec::new();
    let mut below = 0.0;
    for (_, le, cum) in buckets {
        if cum - below > 0.0 {
            hist.push((le, cum - below));
        }
        below = cum;
    }
    let outcomes = after
        .keys()
        .filter_map(|k| {
            let o = k
                .strip_prefix("leafnet_leaf_outcomes_total{outcome=\"")?
                .strip_suffix("\"}")?;
            Some((o.to_owned(), d(k)))
        })
        .collect();
    let p = payments.max(1) as f64;
    SideDelta {
        durable_commits: durable,
        lazy_commits: lazy,
        batches,
        batch_inputs: inputs,
        mean_batch_inputs: inputs / batches,
        batch_histogram: hist,
        outcomes,
        durable_commits_per_payment: durable / p,
        lazy_commits_per_payment: lazy / p,
        payments_per_durable_commit: p / durable,
        durable_commits_per_s: durable / secs,
    }
}

fn pay_request(to: [u8; 32], amount: &str) -> PayRequest {
    PayRequest {
        payee: hex::encode(to),
        amount: amount.into(),
        memo: None,
        invoice_hex: None,
    }
}

/// One measured run of payments from A to B.
#[derive(Debug, Clone, Serialize)]
struct Run {
    label: String,
    in_flight: usize,
    payments: usize,
    paid: usize,
    failed: usize,
    statuses: BTreeMap<String, usize>,
    first_errors: Vec<String>,
    secs: f64,
    payments_per_s: f64,
    /// As the caller saw it (around `leaf_pay`).
    latency_ms: Summary,
    /// `Payment::elapsed_ms`, the node's own figure.
    node_elapsed_ms: Summary,
    cpu_ms: f64,
    cpu_us_per_payment: f64,
    /// Process CPU over wall time (1.0 = one core busy).
    cpu_cores_busy: f64,
    payer: SideDelta,
    payee: SideDelta,
    loadavg_after: [f64; 3],
}

/// Pays `n` times from `a` to `b` with `in_flight` payments at once.
async fn run(
    label: &str,
    a: &Node,
    b: &Node,
    n: usize,
    in_flight: usize,
    amount: &str,
) -> anyhow::Result<Run> {
    let (ma, mb) = (metrics(a), metrics(b));
    let cpu0 = process_cpu_ms();
    let next = Arc::new(AtomicUsize::new(0));
    let payee = b.account_id();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..in_flight.max(1) {
        let ctx = a.leaf().clone();
        let next = next.clone();
        let amount = amount.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            while next.fetch_add(1, Ordering::Relaxed) < n {
                let t = Instant::now();
                let r = Box::pin(ctx.leaf_pay(pay_request(payee, &amount))).await;
                out.push((ms(t.elapsed()), r.map_err(|e| format!("{e:#}"))));
            }
            out
        }));
    }
    let mut results = Vec::new();
    for t in tasks {
        results.extend(t.await?);
    }
    let secs = start.elapsed().as_secs_f64();
    let cpu = process_cpu_ms() - cpu0;
    let (ma2, mb2) = (metrics(a), metrics(b));
    let mut statuses = BTreeMap::new();
    let mut first_errors = Vec::new();
    let (mut lat, mut node_lat) = (Vec::new(), Vec::new());
    let mut paid = 0;
    for (l, r) in &results {
        lat.push(*l);
        match r {
            Ok(p) => {
                node_lat.push(p.elapsed_ms);
                *statuses.entry(p.status.clone()).or_insert(0) += 1;
                paid += usize::from(p.status == "paid");
            }
            Err(e) => {
                *statuses.entry("error".into()).or_insert(0) += 1;
                if first_errors.len() < 5 {
                    first_errors.push(e.clone());
                }
            }
        }
    }
    let out = Run {
        label: label.to_owned(),
        in_flight,
        payments: n,
        paid,
        failed: n - paid,
        statuses,
        first_errors,
        secs,
        payments_per_s: n as f64 / secs,
        latency_ms: summarize(&lat),
        node_elapsed_ms: summarize(&node_lat),
        cpu_ms: cpu,
        cpu_us_per_payment: cpu * 1e3 / n as f64,
        cpu_cores_busy: cpu / 1e3 / secs,
        payer: delta(&ma, &ma2, n, secs),
        payee: delta(&mb, &mb2, n, secs),
        loadavg_after: loadavg(),
    };
    eprintln!(
        "{label}: {n} payments, {} in flight: {:.0}/s, p50 {:.2} ms, p99 {:.2} ms, {:.0} µs CPU each, \
         durable commits per payment {:.3} / {:.3}, mean batch {:.1} / {:.1}, {} not paid",
        in_flight,
        out.payments_per_s,
        out.latency_ms.p50,
        out.latency_ms.p99,
        out.cpu_us_per_payment,
        out.payer.durable_commits_per_payment,
        out.payee.durable_commits_per_payment,
        out.payer.mean_batch_inputs,
        out.payee.mean_batch_inputs,
        out.failed
    );
    Ok(out)
}

/// Payments the payee's pre-flight refuses (over its ceiling): `pay`'s checks and one `hello`
/// round trip, nothing written.
async fn preflight(a: &Node, b: &Node, n: usize) -> anyhow::Result<(Summary, usize)> {
    let over = MAX_BALANCE as u64; // the payee's balance is positive: MAX more is over +MAX
    let amount = format!("{}.{:03}", over / 1000, over % 1000);
    let mut lat = Vec::new();
    let mut unexpected = 0;
    for _ in 0..n {
        let t = Instant::now();
        let r = Box::pin(a.leaf().leaf_pay(pay_request(b.account_id(), &amount))).await;
        lat.push(ms(t.elapsed()));
        match r {
            Err(e) if format!("{e:#}").contains("bound exceeded") => {}
            _ => unexpected += 1,
        }
    }
    Ok((summarize(&lat), unexpected))
}

/// The QUIC ping round trip A measured to B (libp2p ping, every 15 s), ms.
async fn ping_rtt(a: &Node) -> Option<f64> {
    a.peers().await.ok()?.into_iter().find_map(|p| p.rtt_ms)
}

#[derive(Debug, Clone, Serialize)]
struct Check {
    payer_balance: i64,
    payee_balance: i64,
    paid_by_bench: usize,
    expected_payee_balance: i64,
    sum_zero: bool,
    matches_sum_paid: bool,
    ledger_verified: bool,
    ledger_error: Option<String>,
    payer_chain_length: u64,
    payee_chain_length: u64,
    verify_ledger_secs: f64,
}

async fn check(a: &Node, b: &Node, paid: usize, amount_minor: u64) -> anyhow::Result<Check> {
    let (sa, sb) = (
        a.leaf().leaf_account().await?,
        b.leaf().leaf_account().await?,
    );
    let expected = (paid as u64 * amount_minor) as i64;
    let t = Instant::now();
    let mut chains = BTreeMap::new();
    for n in [a, b] {
        let c = n.leaf().leaf_chain().await?;
        chains.insert(
            n.account_id(),
            c.entries_hex
                .iter()
                .map(hex::decode)
                .collect::<Result<Vec<_>, _>>()?,
        );
    }
    let ledger = leafnet_leaf::verify_ledger(&a.leaf().leaf_params()?, &chains);
    let secs = t.elapsed().as_secs_f64();
    let ledger_ok = ledger.as_ref().is_ok_and(|l| {
        l.balances.get(&a.account_id()) == Some(&sa.balance)
            && l.balances.get(&b.account_id()) == Some(&sb.balance)
    });
    Ok(Check {
        payer_balance: sa.balance,
        payee_balance: sb.balance,
        paid_by_bench: paid,
        expected_payee_balance: expected,
        sum_zero: sa.balance + sb.balance == 0,
        matches_sum_paid: sb.balance == expected && sa.balance == -expected,
        ledger_verified: ledger_ok,
        ledger_error: ledger.err().map(|e| e.to_string()),
        payer_chain_length: sa.chain_length,
        payee_chain_length: sb.chain_length,
        verify_ledger_secs: secs,
    })
}

// ---------------------------------------------------------------------------------------------
// The program
// ---------------------------------------------------------------------------------------------

fn fmt_ratio(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.2}x")
    } else {
        "-".into()
    }
}

fn yes_no(ok: bool) -> String {
    if ok { "yes".into() } else { "**no**".into() }
}

fn amount_minor(s: &str) -> anyhow::Result<u64> {
    let (w, f) = s.trim().split_once('.').unwrap_or((s.trim(), ""));
    anyhow::ensure!(f.len() <= 3, "--amount: at most 3 decimals");
    let w: u64 = w.parse().context("--amount")?;
    let f: u64 = format!("{f:0<3}").parse().context("--amount")?;
    Ok(w * 1000 + f)
}

async fn bench(args: &Args) -> anyhow::Result<bool> {
    let amount = amount_minor(&args.amount)?;
    let started = utc_now();
    let load_start = loadavg();
    let cpu_start = process_cpu_ms();
    let wall = Instant::now();

    eprintln!("raw redb commits, pass 1 ({})", args.raw_commits);
    let n = args.raw_commits;
    let (raw_a, raw_a_secs) = tokio::task::spawn_blocking(move || raw_redb(n)).await??;
    let raw_before = raw_summary(&raw_a, raw_a_secs);

    eprintln!("in-process payment simulation");
    let (sp, amt) = (args.sim_payments, amount);
    let sim_cpu = tokio::task::spawn_blocking(move || simulate(sp, false, amt)).await??;
    let sim = tokio::task::spawn_blocking(move || simulate(sp, true, amt)).await??;
    let (reps, cb, ab) = (args.sig_reps, sim.cheque_bytes, sim.acceptance_bytes);
    let sig = tokio::task::spawn_blocking(move || sig_ceiling(reps, cb, ab)).await?;
    eprintln!(
        "raw {:.0} commits/s (p50 {:.3} ms); signatures {:.1} µs/payment; simulation {:.0}/s \
         (p50 {:.3} ms), wallets alone {:.1} µs/payment",
        raw_before.commits_per_s,
        raw_before.latency_ms.p50,
        sig.us_per_payment,
        sim.payments_per_s,
        sim.latency_ms.p50,
        sim_cpu.latency_ms.mean * 1e3
    );

    eprintln!("starting two nodes (QUIC on loopback)");
    let t = Instant::now();
    let nodes = start_pair().await?;
    let setup_secs = t.elapsed().as_secs_f64();
    let (a, b) = (&nodes[0].node, &nodes[1].node);
    let load_nodes_started = loadavg();

    let warm = run("warm-up", a, b, args.warmup, 1, &args.amount).await?;
    let serial = run("serial", a, b, args.payments, 1, &args.amount).await?;
    let (pre, pre_unexpected) = preflight(a, b, args.preflight).await?;
    eprintln!(
        "pre-flight only: p50 {:.3} ms, p99 {:.3} ms",
        pre.p50, pre.p99
    );
    let mut concurrent = Vec::new();
    for &c in &args.concurrency {
        concurrent.push(
            run(
                &format!("concurrent-{c}"),
                a,
                b,
                args.concurrent_payments,
                c,
                &args.amount,
            )
            .await?,
        );
    }
    let rtt = ping_rtt(a).await;
    let paid_total: usize = std::iter::once(&warm)
        .chain(std::iter::once(&serial))
        .chain(&concurrent)
        .map(|r| r.paid)
        .sum();
    let chk = check(a, b, paid_total, amount).await?;
    eprintln!("check: {chk:?}");
    let db_sizes: Vec<u64> = nodes
        .iter()
        .map(|t| std::fs::metadata(t.dir.path().join("leafnet.redb")).map_or(0, |m| m.len()))
        .collect();
    leafnet_tests::shutdown_all(nodes).await;

    eprintln!("raw redb commits, pass 2");
    let (raw_b, raw_b_secs) = tokio::task::spawn_blocking(move || raw_redb(n)).await??;
    let raw_after = raw_summary(&raw_b, raw_b_secs);
    let pooled: Vec<f64> = raw_a.iter().chain(&raw_b).copied().collect();
    let raw = raw_summary(&pooled, raw_a_secs + raw_b_secs);

    // ----- targets -----
    let serial_ratio = serial.payments_per_s / raw.commits_per_s;
    let one_per_side = (serial.payer.durable_commits_per_payment - 1.0).abs() < 0.005
        && (serial.payee.durable_commits_per_payment - 1.0).abs() < 0.005;
    let failures: usize = std::iter::once(&serial)
        .chain(&concurrent)
        .map(|r| r.failed)
        .sum();
    let correct = chk.sum_zero && chk.matches_sum_paid && chk.ledger_verified;

    // ----- table -----
    let header = [
        "figure",
        "leafnet",
        "baseline (same run)",
        "ratio",
        "target",
        "met",
    ];
    let mut rows: Vec<Vec<String>> = Vec::new();
    let row = |fig: &str, v: String, base: String, ratio: String, target: &str, met: String| {
        vec![fig.to_owned(), v, base, ratio, target.to_owned(), met]
    };
    let dash = || "-".to_owned();
    rows.push(row(
        "raw redb 1-insert durable commit",
        dash(),
        format!(
            "{} commits/s, p50 {} / p99 {} ms",
            fmt_num(raw.commits_per_s),
            fmt_num(raw.latency_ms.p50),
            fmt_num(raw.latency_ms.p99)
        ),
        dash(),
        "-",
        dash(),
    ));
    rows.push(row(
        "signature ceiling (2 sign + 2 verify_strict)",
        dash(),
        format!(
            "{} µs/payment = {} payments/s on {} cores",
            fmt_num(sig.us_per_payment),
            fmt_num(sig.payments_per_s_all_cores),
            sig.cores
        ),
        dash(),
        "-",
        dash(),
    ));
    rows.push(row(
        "in-process payment simulation (2 wallets, 2 durable + 1 lazy commit), serial",
        dash(),
        format!(
            "{}/s, p50 {} / p99 {} ms",
            fmt_num(sim.payments_per_s),
            fmt_num(sim.latency_ms.p50),
            fmt_num(sim.latency_ms.p99)
        ),
        fmt_ratio(sim.payments_per_s / raw.commits_per_s),
        "-",
        dash(),
    ));
    rows.push(row(
        "simulation steps p50: payer issues / payee decides / payer files",
        dash(),
        format!(
            "{} / {} / {} ms",
            fmt_num(sim.issue_ms.p50),
            fmt_num(sim.decide_ms.p50),
            fmt_num(sim.file_ms.p50)
        ),
        dash(),
        "-",
        dash(),
    ));
    rows.push(row(
        "the two wallets alone (no storage, no network): CPU per payment",
        dash(),
        format!(
            "{} µs = {} signature ceilings",
            fmt_num(sim_cpu.latency_ms.mean * 1e3),
            fmt_num(sim_cpu.latency_ms.mean * 1e3 / sig.us_per_payment)
        ),
        dash(),
        "-",
        dash(),
    ));
    for (side, d) in [("payer", &serial.payer), ("payee", &serial.payee)] {
        rows.push(row(
            &format!("durable commits per payment, {side} (serial)"),
            format!("{:.3}", d.durable_commits_per_payment),
            dash(),
            dash(),
            "exactly 1",
            yes_no((d.durable_commits_per_payment - 1.0).abs() < 0.005),
        ));
    }
    rows.push(row(
        "lazy commits (no fsync) per payment, payer (serial)",
        format!("{:.3}", serial.payer.lazy_commits_per_payment),
        dash(),
        dash(),
        "-",
        dash(),
    ));
    rows.push(row(
        "serial payments/s",
        fmt_num(serial.payments_per_s),
        format!("{} raw commits/s", fmt_num(raw.commits_per_s)),
        fmt_ratio(serial_ratio),
        "≥ 0.45x",
        yes_no(serial_ratio >= 0.45),
    ));
    rows.push(row(
        "serial latency p50",
        format!("{} ms", fmt_num(serial.latency_ms.p50)),
        format!("{} ms simulation p50", fmt_num(sim.latency_ms.p50)),
        fmt_ratio(serial.latency_ms.p50 / sim.latency_ms.p50),
        "≤ 2x (perf notes)",
        yes_no(serial.latency_ms.p50 <= 2.0 * sim.latency_ms.p50),
    ));
    rows.push(row(
        "serial latency p99",
        format!("{} ms", fmt_num(serial.latency_ms.p99)),
        format!("{} ms simulation p99", fmt_num(sim.latency_ms.p99)),
        fmt_ratio(serial.latency_ms.p99 / sim.latency_ms.p99),
        "≤ 3x (perf notes)",
        yes_no(serial.latency_ms.p99 <= 3.0 * sim.latency_ms.p99),
    ));
    rows.push(row(
        "serial latency p50 in raw commit p50s",
        format!("{} ms", fmt_num(serial.latency_ms.p50)),
        format!("{} ms raw commit p50", fmt_num(raw.latency_ms.p50)),
        fmt_ratio(serial.latency_ms.p50 / raw.latency_ms.p50),
        "-",
        dash(),
    ));
    rows.push(row(
        "pre-flight alone (checks + hello round trip) p50 / p99",
        format!("{} / {} ms", fmt_num(pre.p50), fmt_num(pre.p99)),
        format!(
            "{} ms QUIC ping RTT",
            rtt.map_or_else(|| "-".to_owned(), fmt_num)
        ),
        fmt_ratio(pre.p50 / serial.latency_ms.p50),
        "-",
        dash(),
    ));
    rows.push(row(
        "CPU per payment, serial (both nodes)",
        format!("{} µs", fmt_num(serial.cpu_us_per_payment)),
        format!("{} µs signature ceiling", fmt_num(sig.us_per_payment)),
        fmt_ratio(serial.cpu_us_per_payment / sig.us_per_payment),
        "-",
        dash(),
    ));
    for r in &concurrent {
        let c = r.in_flight;
        let ratio = r.payments_per_s / raw.commits_per_s;
        rows.push(row(
            &format!("{c} in flight: payments/s"),
            fmt_num(r.payments_per_s),
            format!("{} raw commits/s", fmt_num(raw.commits_per_s)),
            fmt_ratio(ratio),
            "≥ 2x",
            yes_no(ratio >= 2.0),
        ));
        rows.push(row(
            &format!("{c} in flight: latency p50 / p99"),
            format!(
                "{} / {} ms",
                fmt_num(r.latency_ms.p50),
                fmt_num(r.latency_ms.p99)
            ),
            dash(),
            dash(),
            "p99 ≤ 50 ms",
            yes_no(r.latency_ms.p99 <= 50.0),
        ));
        rows.push(row(
            &format!("{c} in flight: mean inputs per batch, payer / payee"),
            format!(
                "{} / {}",
                fmt_num(r.payer.mean_batch_inputs),
                fmt_num(r.payee.mean_batch_inputs)
            ),
            dash(),
            dash(),
            "-",
            dash(),
        ));
        rows.push(row(
            &format!("{c} in flight: payments per durable commit, payer / payee"),
            format!(
                "{} / {}",
                fmt_num(r.payer.payments_per_durable_commit),
                fmt_num(r.payee.payments_per_durable_commit)
            ),
            dash(),
            dash(),
            "≥ 2 (perf notes)",
            yes_no(
                r.payer.payments_per_durable_commit >= 2.0
                    && r.payee.payments_per_durable_commit >= 2.0,
            ),
        ));
        rows.push(row(
            &format!("{c} in flight: durable commits/s, payer / payee"),
            format!(
                "{} / {}",
                fmt_num(r.payer.durable_commits_per_s),
                fmt_num(r.payee.durable_commits_per_s)
            ),
            format!("{} raw commits/s", fmt_num(raw.commits_per_s)),
            format!(
                "{} / {}",
                fmt_ratio(r.payer.durable_commits_per_s / raw.commits_per_s),
                fmt_ratio(r.payee.durable_commits_per_s / raw.commits_per_s)
            ),
            "-",
            dash(),
        ));
        let eff = sig.us_per_payment / r.cpu_us_per_payment;
        rows.push(row(
            &format!("{c} in flight: CPU per payment (both nodes)"),
            format!(
                "{} µs ({} cores busy)",
                fmt_num(r.cpu_us_per_payment),
                fmt_num(r.cpu_cores_busy)
            ),
            format!("{} µs signature ceiling", fmt_num(sig.us_per_payment)),
            format!("{:.0}% of ceiling", eff * 100.0),
            "≥ 40% (perf notes)",
            yes_no(eff >= 0.40),
        ));
    }
    rows.push(row(
        "correctness: payer + payee = 0, payee = sum paid, verify_ledger",
        format!(
            "{} + {} (sum paid {})",
            chk.payer_balance, chk.payee_balance, chk.expected_payee_balance
        ),
        dash(),
        dash(),
        "all hold, 0 failed payments",
        yes_no(correct && failures == 0),
    ));
    let table = markdown_table(&header, &rows);

    let doc = serde_json::json!({
        "bench": "leafnet-bench-leaf",
        "started": started,
        "finished": utc_now(),
        "machine": machine(),
        "args": {
            "payments": args.payments,
            "warmup": args.warmup,
            "concurrency": args.concurrency,
            "concurrent_payments": args.concurrent_payments,
            "preflight": args.preflight,
            "raw_commits": args.raw_commits,
            "sig_reps": args.sig_reps,
            "sim_payments": args.sim_payments,
            "amount": args.amount,
        },
        "loadavg": {
            "start": load_start,
            "nodes_started": load_nodes_started,
            "end": loadavg(),
        },
        "baseline": {
            "raw_redb_pooled": raw,
            "raw_redb_before_nodes": raw_before,
            "raw_redb_after_nodes": raw_after,
            "signature_ceiling": sig,
            "simulation_with_storage": sim,
            "simulation_wallets_only": sim_cpu,
        },
        "nodes": {
            "transport": "quic, 127.0.0.1",
            "setup_secs": round3(setup_secs),
            "quic_ping_rtt_ms": rtt,
            "db_bytes": db_sizes,
        },
        "warmup": warm,
        "serial": serial,
        "preflight": {
            "latency_ms": pre,
            "unexpected_outcomes": pre_unexpected,
        },
        "concurrent": concurrent,
        "check": chk,
        "targets": {
            "durable_commits_per_payment_per_side_exactly_1": one_per_side,
            "serial_payments_per_s_over_raw_commits_per_s": round3(serial_ratio),
            "serial_met_0_45": serial_ratio >= 0.45,
            "concurrent": concurrent.iter().map(|r| serde_json::json!({
                "in_flight": r.in_flight,
                "over_raw_commits_per_s": round3(r.payments_per_s / raw.commits_per_s),
                "met_2x": r.payments_per_s / raw.commits_per_s >= 2.0,
                "p99_ms": r.latency_ms.p99,
                "met_p99_50ms": r.latency_ms.p99 <= 50.0,
                "cpu_efficiency_vs_signature_ceiling": round3(sig.us_per_payment / r.cpu_us_per_payment),
            })).collect::<Vec<_>>(),
            "correct": correct,
            "failed_payments": failures,
        },
        "process_cpu_ms_total": process_cpu_ms() - cpu_start,
        "wall_secs": round3(wall.elapsed().as_secs_f64()),
        "table_markdown": table,
    });
    print!("{table}");
    let json = serde_json::to_string_pretty(&doc)?;
    match &args.json_out {
        Some(p) => {
            std::fs::write(p, json + "\n").with_context(|| format!("writing {}", p.display()))?;
            eprintln!("JSON written to {}", p.display());
        }
        None => println!("{json}"),
    }
    Ok(correct && failures == 0 && pre_unexpected == 0)
}
