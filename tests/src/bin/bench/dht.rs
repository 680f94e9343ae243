//! `dht`: provider announce and lookup latency, leafnet against a bare rust-libp2p Kademlia
//! swarm, in process over the memory transport.
//!
//! Method (identical for both swarms, one after the other, the first shut down before the
//! second starts; `rounds` times, alternating which swarm goes first):
//! 1. start `nodes` nodes with the test helper's `mem_config` (periodic Kademlia bootstrap every
//!    `bootstrap_interval`, leafnet's default 300 s, instead of the helper's 30 s: 100 nodes
//!    started together re-bootstrap together, a burst of about a full core for several
//!    seconds every 30 s, and the measurement then depends on where its window falls), node 0
//!    first, every other one bootstrapping from node 0; wait until every routing table is
//!    non-empty, then until the swarm is quiet (see [`settle`]);
//! 2. warm up: `warmup` keys provided by a random node and looked up from another;
//! 3. measure: keys `bench-<i>` (leafnet's user key `/leafnet/dht/bench-<i>`, the same bytes in
//!    both swarms), each provided by a random node (announce latency: from sending the command
//!    to the node's task until `StartProviding` finished), then each looked up with limit 1
//!    from a different random node (lookup latency: until the first non-empty
//!    `FoundProviders`). Operations run one at a time, `gap` apart; the node choices come from
//!    the same seeded generator for both swarms.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use leafnet_config::Valid;
use leafnet_node::records::user_key;
use leafnet_tests::{TestNode, mem_config, shutdown_all, start_mem_node_with, start_mem_swarm};
use libp2p::{
    Multiaddr, PeerId,
    kad::{ProviderRecord, RecordKey, store::MemoryStore, store::RecordStore},
};
use tokio::sync::oneshot;

use crate::{Figure, Section, bare, summarize};

/// Operation timeout, as leafnet's API (query timeout + 5 s).
const OP_TIMEOUT: Duration = Duration::from_secs(15);
/// The swarm counts as quiet below this much process CPU per second (10% of one core).
const QUIET_CPU_MS: f64 = 100.0;
/// The longest wait for a swarm to become quiet.
const SETTLE_MAX: Duration = Duration::from_secs(90);

#[derive(Debug, Clone, Copy)]
pub struct Opts {
    pub nodes: usize,
    pub keys: usize,
    pub warmup: usize,
    pub seed: u64,
    pub bare_first: bool,
    pub rounds: usize,
    pub only: Option<Only>,
    /// Seconds of idle CPU sampling after settling (diagnostic).
    pub idle_secs: u64,
    /// Kademlia's periodic bootstrap interval in both swarms; `None`: the test helper's
    /// (`mem_config`, 30 s), with the leafnet swarm started by `start_mem_swarm` itself.
    pub bootstrap_interval: Option<Duration>,
    /// Pause between two measured operations.
    pub gap: Duration,
    /// Add leafnet's ping behaviour to the bare nodes (diagnostic).
    pub bare_ping: bool,
}

/// The config of every node of both swarms: `mem_config`, with the periodic bootstrap
/// interval replaced when asked.
fn node_config(opts: &Opts, bootstrap: &[Multiaddr]) -> Valid {
    let mut c = mem_config(bootstrap);
    if let Some(i) = opts.bootstrap_interval {
        c.kad.bootstrap_interval = i;
    }
    c
}

/// `start_mem_swarm` with [`node_config`]: node 0 first, every other node bootstrapping from
/// it, until every routing table is non-empty.
async fn start_leafnet(opts: &Opts, timeout: Duration) -> anyhow::Result<Vec<TestNode>> {
    if opts.bootstrap_interval.is_none() {
        return start_mem_swarm(opts.nodes, timeout).await;
    }
    let start = |boot: &[Multiaddr]| {
        start_mem_node_with(
            node_config(opts, boot),
            libp2p::identity::Keypair::generate_ed25519(),
            tempfile::tempdir().expect("temp dir"),
        )
    };
    let first = start(&[]).await?;
    let boot = first.addr();
    let mut nodes = vec![first];
    for _ in 1..opts.nodes {
        nodes.push(start(std::slice::from_ref(&boot)).await?);
    }
    leafnet_tests::wait_until(timeout, "every routing table is non-empty", || async {
        for t in &nodes {
            if t.node.status().await?.routing_table_size == 0 {
                return Ok(false);
            }
        }
        Ok(true)
    })
    .await?;
    Ok(nodes)
}

/// Run one swarm only (profiling).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Only {
    Leafnet,
    Bare,
}

/// SplitMix64: a small deterministic generator (no `rand` dependency).
#[derive(Debug)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// The result of one operation.
#[derive(Debug)]
struct Outcome {
    ok: bool,
    /// The node's own measure of the operation, when it reports one (leafnet's `elapsed_ms`,
    /// from the command reaching the actor to the query result).
    inner_ms: Option<f64>,
}

/// A swarm the workload can drive.
trait Driver {
    fn len(&self) -> usize;
    async fn provide(&self, node: usize, key: &str) -> anyhow::Result<Outcome>;
    async fn lookup(&self, node: usize, key: &str) -> anyhow::Result<Outcome>;
    /// Per node: routing-table entries, connected peers, Kademlia queries in flight.
    async fn snapshot(&self) -> anyhow::Result<Vec<[usize; 3]>>;
}

struct Leafnet(Vec<TestNode>);

impl Driver for Leafnet {
    fn len(&self) -> usize {
        self.0.len()
    }

    async fn provide(&self, node: usize, key: &str) -> anyhow::Result<Outcome> {
        let r = self.0[node].node.provide(key).await?;
        Ok(Outcome {
            ok: r.announced,
            inner_ms: Some(r.elapsed_ms),
        })
    }

    async fn lookup(&self, node: usize, key: &str) -> anyhow::Result<Outcome> {
        let r = self.0[node].node.providers(key, 1).await?;
        Ok(Outcome {
            ok: !r.providers.is_empty(),
            inner_ms: Some(r.elapsed_ms),
        })
    }

    async fn snapshot(&self) -> anyhow::Result<Vec<[usize; 3]>> {
        let mut v = Vec::with_capacity(self.0.len());
        for t in &self.0 {
            let s = t.node.status().await?;
            // Read through JSON: `kad_queries_in_flight` is a recent field of the status.
            let q = serde_json::to_value(&s)?["kad_queries_in_flight"]
                .as_u64()
                .unwrap_or(0) as usize;
            v.push([s.routing_table_size, s.connected_peers, q]);
        }
        Ok(v)
    }
}

struct Bare(Vec<bare::BareNode>);

fn kad_key(key: &str) -> anyhow::Result<RecordKey> {
    Ok(RecordKey::new(&user_key(key)?.to_bytes()))
}

impl Bare {
    async fn ask<T>(
        &self,
        node: usize,
        make: impl FnOnce(oneshot::Sender<T>) -> bare::Cmd,
    ) -> anyhow::Result<T> {
        let (tx, rx) = oneshot::channel();
        self.0[node]
            .tx
            .send(make(tx))
            .await
            .context("bare node stopped")?;
        tokio::time::timeout(OP_TIMEOUT, rx)
            .await
            .context("timed out")?
            .context("bare node stopped")
    }

    async fn shutdown(self) {
        let mut tasks = Vec::new();
        for n in self.0 {
            drop(n.tx);
            tasks.push(n.task);
        }
        futures::future::join_all(tasks).await;
    }
}

impl Driver for Bare {
    fn len(&self) -> usize {
        self.0.len()
    }

    async fn provide(&self, node: usize, key: &str) -> anyhow::Result<Outcome> {
        let k = kad_key(key)?;
        let ok = self.ask(node, |tx| bare::Cmd::Provide(k, tx)).await?;
        Ok(Outcome { ok, inner_ms: None })
    }

    async fn lookup(&self, node: usize, key: &str) -> anyhow::Result<Outcome> {
        let k = kad_key(key)?;
        let n = self.ask(node, |tx| bare::Cmd::Providers(k, tx)).await?;
        Ok(Outcome {
            ok: n > 0,
            inner_ms: None,
        })
    }

    async fn snapshot(&self) -> anyhow::Result<Vec<[usize; 3]>> {
        let mut v = Vec::with_capacity(self.0.len());
        for i in 0..self.0.len() {
            v.push(self.ask(i, bare::Cmd::Snapshot).await?);
        }
        Ok(v)
    }
}

async fn start_bare(
    cfg: &Valid,
    n: usize,
    timeout: Duration,
    with_ping: bool,
) -> anyhow::Result<Bare> {
    let first = bare::start(cfg, None, with_ping).await?;
    let boot = (first.peer_id, first.addr.clone());
    let mut nodes = vec![first];
    for _ in 1..n {
        nodes.push(bare::start(cfg, Some(&boot), with_ping).await?);
    }
    let b = Bare(nodes);
    let deadline = Instant::now() + timeout;
    loop {
        if b.snapshot().await?.iter().all(|s| s[0] > 0) {
            return Ok(b);
        }
        if Instant::now() >= deadline {
            b.shutdown().await;
            anyhow::bail!("bare swarm: routing tables still empty after {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// CPU time (user + system) this process used so far, in milliseconds (`/proc/self/stat`,
/// assuming the usual 100 clock ticks per second).
pub fn process_cpu_ms() -> f64 {
    let s = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which is in parentheses and may contain spaces).
    let rest = s.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest[0] is field 3 (state); utime is field 14, stime field 15.
    let tick = |i: usize| {
        f.get(i - 3)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(f64::NAN)
    };
    (tick(14) + tick(15)) * 10.0
}

/// Profiling hook: with `LEAFNET_BENCH_PERF_CTL=<fifo>` (a `perf record --control
/// fifo:<fifo> -D -1` control fifo), the measured workload alone is recorded.
fn perf_ctl(cmd: &str) {
    use std::io::Write as _;
    if let Some(p) = std::env::var_os("LEAFNET_BENCH_PERF_CTL") {
        let r = std::fs::OpenOptions::new()
            .write(true)
            .open(&p)
            .and_then(|mut f| f.write_all(format!("{cmd}\n").as_bytes()));
        if let Err(e) = r {
            tracing::warn!(error = %e, "perf control fifo");
        }
    }
}

/// Waits until the swarm is quiet: the total routing-table size unchanged over the last second
/// and the process using less than [`QUIET_CPU_MS`] of CPU in that second (at least 3 s, at
/// most [`SETTLE_MAX`]). A fresh swarm runs a storm of automatic Kademlia bootstraps first.
async fn settle<D: Driver>(d: &D) -> anyhow::Result<serde_json::Value> {
    let t0 = Instant::now();
    let cpu0 = process_cpu_ms();
    let mut last_total = usize::MAX;
    let mut last_cpu = cpu0;
    let mut series = Vec::new();
    let mut cpu_series = Vec::new();
    let mut last_t = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let cpu = process_cpu_ms();
        // Per second of wall time since the previous sample (a poll of a busy swarm is slow).
        let used = (cpu - last_cpu) / last_t.elapsed().as_secs_f64();
        last_cpu = cpu;
        last_t = Instant::now();
        let snap = d.snapshot().await?;
        let rt: Vec<usize> = snap.iter().map(|s| s[0]).collect();
        let total: usize = rt.iter().sum();
        series.push(total);
        cpu_series.push(used);
        let stable = total == last_total;
        last_total = total;
        let waited = t0.elapsed();
        let quiet = stable && used < QUIET_CPU_MS;
        if (waited >= Duration::from_secs(3) && quiet) || waited >= SETTLE_MAX {
            let min = rt.iter().copied().min().unwrap_or(0);
            let max = rt.iter().copied().max().unwrap_or(0);
            // CPU over one idle second (nobody polling): the swarm's background work.
            let c = process_cpu_ms();
            tokio::time::sleep(Duration::from_secs(1)).await;
            let idle_cpu = process_cpu_ms() - c;
            return Ok(serde_json::json!({
                "settle_secs": waited.as_secs_f64(),
                "quiet": quiet,
                "routing_table_mean": total as f64 / rt.len().max(1) as f64,
                "routing_table_min": min,
                "routing_table_max": max,
                "connected_peers_mean": snap.iter().map(|s| s[1]).sum::<usize>() as f64 / snap.len().max(1) as f64,
                "kad_queries_in_flight_total": snap.iter().map(|s| s[2]).sum::<usize>(),
                "routing_table_total_per_s": series,
                "cpu_ms_per_s": cpu_series,
                "cpu_ms_during_settle": c - cpu0,
                "idle_cpu_ms_per_s_after_settle": idle_cpu,
            }));
        }
    }
}

#[derive(Debug, Default)]
struct Samples {
    announce: Vec<f64>,
    lookup: Vec<f64>,
    announce_inner: Vec<f64>,
    lookup_inner: Vec<f64>,
    announce_fail: usize,
    lookup_fail: usize,
    announce_cpu_ms: f64,
    lookup_cpu_ms: f64,
    announce_secs: f64,
    lookup_secs: f64,
    /// (seconds since the swarm was started, ms) of every measured operation, in order.
    announce_at: Vec<(f64, f64)>,
    lookup_at: Vec<(f64, f64)>,
}

/// Provides `keys` keys from random nodes, then looks each up from another random node.
async fn workload<D: Driver>(
    d: &D,
    prefix: &str,
    keys: usize,
    seed: u64,
    gap: Duration,
    born: Instant,
) -> Samples {
    let n = d.len();
    let mut rng = Rng(seed);
    let mut s = Samples::default();
    let mut providers = Vec::with_capacity(keys);
    let cpu0 = process_cpu_ms();
    let t0 = Instant::now();
    for i in 0..keys {
        let p = rng.below(n);
        providers.push(p);
        let key = format!("{prefix}-{i}");
        tokio::time::sleep(gap).await;
        let t = Instant::now();
        let r = d.provide(p, &key).await;
        let ms = t.elapsed().as_secs_f64() * 1000.0;
        s.announce_at.push(((t - born).as_secs_f64(), ms));
        match r {
            Ok(o) if o.ok => {
                s.announce.push(ms);
                s.announce_inner.extend(o.inner_ms);
            }
            Ok(_) => s.announce_fail += 1,
            Err(e) => {
                tracing::warn!(%key, error = %e, "provide failed");
                s.announce_fail += 1;
            }
        }
    }
    let cpu1 = process_cpu_ms();
    s.announce_cpu_ms = cpu1 - cpu0;
    s.announce_secs = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    for (i, &p) in providers.iter().enumerate() {
        let mut l = rng.below(n - 1);
        if l >= p {
            l += 1;
        }
        let key = format!("{prefix}-{i}");
        tokio::time::sleep(gap).await;
        let t = Instant::now();
        let r = d.lookup(l, &key).await;
        let ms = t.elapsed().as_secs_f64() * 1000.0;
        s.lookup_at.push(((t - born).as_secs_f64(), ms));
        match r {
            Ok(o) if o.ok => {
                s.lookup.push(ms);
                s.lookup_inner.extend(o.inner_ms);
            }
            Ok(_) => s.lookup_fail += 1,
            Err(e) => {
                tracing::warn!(%key, error = %e, "lookup failed");
                s.lookup_fail += 1;
            }
        }
    }
    s.lookup_cpu_ms = process_cpu_ms() - cpu1;
    s.lookup_secs = t1.elapsed().as_secs_f64();
    s
}

#[derive(Debug)]
struct SwarmResult {
    announce: Vec<f64>,
    lookup: Vec<f64>,
    details: serde_json::Value,
}

/// `born`: when the swarm's first node was started.
async fn measure<D: Driver>(
    d: &D,
    opts: Opts,
    setup_secs: f64,
    born: Instant,
) -> anyhow::Result<SwarmResult> {
    let mut settled = settle(d).await?;
    if opts.idle_secs > 0 {
        let mut series = Vec::new();
        for _ in 0..opts.idle_secs {
            let c = process_cpu_ms();
            tokio::time::sleep(Duration::from_secs(1)).await;
            series.push(process_cpu_ms() - c);
        }
        settled["idle_cpu_ms_per_s_series"] = serde_json::json!(series);
    }
    let w = workload(d, "warmup", opts.warmup, opts.seed ^ 0xffff, opts.gap, born).await;
    perf_ctl("enable");
    let s = workload(d, "bench", opts.keys, opts.seed, opts.gap, born).await;
    perf_ctl("disable");
    let after = d.snapshot().await?;
    let announce = summarize(&s.announce);
    let lookup = summarize(&s.lookup);
    let mut details = serde_json::json!({
        "setup_secs": setup_secs,
        "settle": settled,
        "warmup": { "announce": summarize(&w.announce), "lookup": summarize(&w.lookup),
                    "announce_fail": w.announce_fail, "lookup_fail": w.lookup_fail },
        "announce_ms": announce,
        "lookup_ms": lookup,
        "announce_fail": s.announce_fail,
        "lookup_fail": s.lookup_fail,
        "announce_samples_at_s_ms": s.announce_at,
        "lookup_samples_at_s_ms": s.lookup_at,
        "after_workload": {
            "connected_peers_mean": after.iter().map(|s| s[1]).sum::<usize>() as f64 / after.len().max(1) as f64,
            "kad_queries_in_flight_total": after.iter().map(|s| s[2]).sum::<usize>(),
        },
        // Process CPU time (all threads, background included) over each phase, per operation;
        // 10 ms tick resolution.
        "announce_phase_secs": s.announce_secs,
        "lookup_phase_secs": s.lookup_secs,
        "announce_cpu_ms_per_op": s.announce_cpu_ms / opts.keys.max(1) as f64,
        "lookup_cpu_ms_per_op": s.lookup_cpu_ms / opts.keys.max(1) as f64,
    });
    if !s.announce_inner.is_empty() {
        // leafnet's own `elapsed_ms` (actor-side); the difference to the bench's wall time is
        // the command channel, the actor's queueing and the reply.
        details["announce_actor_side_ms"] = serde_json::json!(summarize(&s.announce_inner));
        details["lookup_actor_side_ms"] = serde_json::json!(summarize(&s.lookup_inner));
    }
    Ok(SwarmResult {
        announce: s.announce,
        lookup: s.lookup,
        details,
    })
}

async fn run_leafnet(opts: Opts) -> anyhow::Result<SwarmResult> {
    eprintln!("dht: starting {} leafnet nodes", opts.nodes);
    let t = Instant::now();
    let nodes = start_leafnet(&opts, Duration::from_secs(120)).await?;
    let setup = t.elapsed().as_secs_f64();
    eprintln!("dht: leafnet swarm up in {setup:.1} s; measuring");
    let d = Leafnet(nodes);
    let r = measure(&d, opts, setup, t).await;
    eprintln!("dht: shutting the leafnet swarm down");
    shutdown_all(d.0).await;
    r
}

async fn run_bare(opts: Opts) -> anyhow::Result<SwarmResult> {
    eprintln!("dht: starting {} bare nodes", opts.nodes);
    let cfg = node_config(&opts, &[]);
    let t = Instant::now();
    let d = start_bare(&cfg, opts.nodes, Duration::from_secs(120), opts.bare_ping).await?;
    let setup = t.elapsed().as_secs_f64();
    eprintln!("dht: bare swarm up in {setup:.1} s; measuring");
    let r = measure(&d, opts, setup, t).await;
    eprintln!("dht: shutting the bare swarm down");
    d.shutdown().await;
    r
}

/// Per-operation cost of leafnet's redb `Store` against `MemoryStore`, on this task: `keys`
/// keys with 20 remote providers each (`add_provider`), then `providers()` of every key.
fn store_micro(keys: usize) -> anyhow::Result<serde_json::Value> {
    let dir = tempfile::tempdir()?;
    let local = PeerId::random();
    let db = leafnet_storage::Database::open(&dir.path().join("micro.redb"))?;
    let mut redb_store =
        leafnet_storage::kad::Store::new(db, local, leafnet_storage::kad::Config::default())?;
    let mut mem_store = MemoryStore::new(local);
    let peers: Vec<PeerId> = (0..20).map(|_| PeerId::random()).collect();
    let addr: Multiaddr = "/memory/1234".parse()?;
    let recs: Vec<ProviderRecord> = (0..keys)
        .flat_map(|i| {
            let k = kad_key(&format!("micro-{i}")).unwrap_or_else(|_| RecordKey::new(&[0u8]));
            let addr = addr.clone();
            peers.iter().map(move |p| ProviderRecord {
                key: k.clone(),
                provider: *p,
                expires: Some(Instant::now() + Duration::from_secs(3600)),
                addresses: vec![addr.clone()],
            })
        })
        .collect();
    fn time_adds<S: RecordStore>(s: &mut S, recs: &[ProviderRecord]) -> f64 {
        let t = Instant::now();
        for r in recs {
            let _ = s.add_provider(r.clone());
        }
        t.elapsed().as_secs_f64() * 1e6 / recs.len().max(1) as f64
    }
    fn time_reads<S: RecordStore>(s: &S, keys: &[RecordKey]) -> (f64, usize) {
        let t = Instant::now();
        let mut n = 0;
        for k in keys {
            n += s.providers(k).len();
        }
        (
            t.elapsed().as_secs_f64() * 1e6 / keys.len().max(1) as f64,
            n,
        )
    }
    let keys_v: Vec<RecordKey> = recs.iter().step_by(20).map(|r| r.key.clone()).collect();
    let redb_add = time_adds(&mut redb_store, &recs);
    let mem_add = time_adds(&mut mem_store, &recs);
    let (redb_read, redb_n) = time_reads(&redb_store, &keys_v);
    let (mem_read, mem_n) = time_reads(&mem_store, &keys_v);
    Ok(serde_json::json!({
        "adds": recs.len(), "reads": keys_v.len(),
        "redb_add_provider_us": redb_add, "memory_add_provider_us": mem_add,
        "redb_providers_us": redb_read, "memory_providers_us": mem_read,
        "redb_providers_found": redb_n, "memory_providers_found": mem_n,
    }))
}

pub async fn run(opts: Opts) -> anyhow::Result<Section> {
    anyhow::ensure!(opts.nodes >= 2, "need at least 2 nodes");
    if let Some(only) = opts.only {
        let r = match only {
            Only::Leafnet => run_leafnet(opts).await?,
            Only::Bare => run_bare(opts).await?,
        };
        let (a, l) = (summarize(&r.announce), summarize(&r.lookup));
        let sec = "dht";
        let name = if only == Only::Leafnet {
            "leafnet"
        } else {
            "bare"
        };
        return Ok(Section {
            figures: vec![
                Figure::new(sec, format!("{name} announce p50"), "ms", a.p50),
                Figure::new(sec, format!("{name} announce p99"), "ms", a.p99),
                Figure::new(sec, format!("{name} lookup p50"), "ms", l.p50),
                Figure::new(sec, format!("{name} lookup p99"), "ms", l.p99),
            ],
            details: serde_json::json!({ "only": name, name: r.details }),
        });
    }
    let mut leaf_a = Vec::new();
    let mut leaf_l = Vec::new();
    let mut bare_a = Vec::new();
    let mut bare_l = Vec::new();
    let mut rounds = Vec::new();
    for round in 0..opts.rounds.max(1) {
        // Same seed for both swarms of a round; alternate which one goes first.
        let o = Opts {
            seed: opts.seed.wrapping_add(round as u64),
            ..opts
        };
        let bare_first = opts.bare_first ^ (round % 2 == 1);
        eprintln!(
            "dht: round {} of {}, {} first",
            round + 1,
            opts.rounds.max(1),
            if bare_first { "bare" } else { "leafnet" }
        );
        let (leaf, bare) = if bare_first {
            let b = run_bare(o).await?;
            let l = run_leafnet(o).await?;
            (l, b)
        } else {
            let l = run_leafnet(o).await?;
            let b = run_bare(o).await?;
            (l, b)
        };
        let r = |x: &[f64], y: &[f64]| {
            let (x, y) = (summarize(x), summarize(y));
            serde_json::json!({ "p50": x.p50 / y.p50, "p99": x.p99 / y.p99 })
        };
        eprintln!(
            "dht: round {}: announce p50 {:.2}/{:.2} ms, lookup p50 {:.2}/{:.2} ms (leafnet/bare)",
            round + 1,
            summarize(&leaf.announce).p50,
            summarize(&bare.announce).p50,
            summarize(&leaf.lookup).p50,
            summarize(&bare.lookup).p50
        );
        rounds.push(serde_json::json!({
            "round": round + 1,
            "seed": o.seed,
            "order": if bare_first { "bare, then leafnet" } else { "leafnet, then bare" },
            "ratio_announce": r(&leaf.announce, &bare.announce),
            "ratio_lookup": r(&leaf.lookup, &bare.lookup),
            "leafnet": leaf.details,
            "bare": bare.details,
        }));
        leaf_a.extend(leaf.announce);
        leaf_l.extend(leaf.lookup);
        bare_a.extend(bare.announce);
        bare_l.extend(bare.lookup);
    }
    let leaf = (summarize(&leaf_a), summarize(&leaf_l));
    let bare = (summarize(&bare_a), summarize(&bare_l));
    let micro = tokio::task::spawn_blocking(|| store_micro(100)).await??;

    let sec = "dht";
    let what = format!("bare kad, {} nodes", opts.nodes);
    let figures = vec![
        Figure::new(sec, "announce p50", "ms", leaf.0.p50)
            .baseline(&what, bare.0.p50)
            .ratio_at_most(1.5),
        Figure::new(sec, "announce p99", "ms", leaf.0.p99)
            .baseline(&what, bare.0.p99)
            .ratio_at_most(1.5),
        Figure::new(sec, "lookup p50", "ms", leaf.1.p50)
            .baseline(&what, bare.1.p50)
            .ratio_at_most(1.5),
        Figure::new(sec, "lookup p99", "ms", leaf.1.p99)
            .baseline(&what, bare.1.p99)
            .ratio_at_most(1.5),
        Figure::new(
            sec,
            "store add_provider (redb)",
            "us",
            micro["redb_add_provider_us"].as_f64().unwrap_or(f64::NAN),
        )
        .baseline(
            "MemoryStore",
            micro["memory_add_provider_us"].as_f64().unwrap_or(f64::NAN),
        ),
        Figure::new(
            sec,
            "store providers() (redb)",
            "us",
            micro["redb_providers_us"].as_f64().unwrap_or(f64::NAN),
        )
        .baseline(
            "MemoryStore",
            micro["memory_providers_us"].as_f64().unwrap_or(f64::NAN),
        ),
    ];
    Ok(Section {
        figures,
        details: serde_json::json!({
            "nodes": opts.nodes, "keys": opts.keys, "warmup": opts.warmup, "seed": opts.seed,
            "rounds": rounds,
            "pooled": {
                "leafnet": { "announce_ms": leaf.0, "lookup_ms": leaf.1 },
                "bare": { "announce_ms": bare.0, "lookup_ms": bare.1 },
            },
            "store_micro": micro,
        }),
    })
}
