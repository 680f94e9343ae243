//! The two phases of `leafnet-bench-geo`: the leafnet swarm, then (or before) the bare
//! Kademlia swarm, each started, settled, loaded, measured and shut down on its own.

use std::{
    collections::{BTreeSet, HashMap},
    time::{Duration, Instant},
};

use anyhow::Context as _;
use ed25519_dalek::SigningKey;
use leafnet_config::Valid;
use leafnet_geo::{Location, protocol::Filter};
use leafnet_profile::{AccountId, Kind, Profile};
use leafnet_tests::{TestNode, mem_config, shutdown_all, start_mem_swarm_with};
use libp2p::kad::{Record, RecordKey};
use serde::Serialize;
use tokio::sync::oneshot;

use crate::{
    bare,
    work::{Op, PSpec},
};

/// The longest a single measured operation may take before it counts as failed.
const OP_TIMEOUT: Duration = Duration::from_secs(75);
/// The swarm counts as quiet below this much process CPU per second (10% of one core).
const QUIET_CPU_MS: f64 = 100.0;
/// The longest wait for a swarm to become quiet.
const SETTLE_MAX: Duration = Duration::from_secs(90);
/// Routing-table entries every node must have before the workload starts.
pub const MIN_RT: usize = 20;
/// Concurrent hosting (leafnet) or put (bare) operations while loading the swarm.
const LOAD_CONCURRENCY: usize = 25;
/// The most results a radius query asks for (leafnet's maximum).
const NEAR_LIMIT: usize = 1000;

/// Settings shared by both phases.
#[derive(Debug, Clone)]
pub struct Opts {
    pub nodes: usize,
    pub query_timeout: Duration,
    pub bootstrap_interval: Duration,
    pub gap: Duration,
    /// leafnet's `geo_provider_cache`.
    pub geo_cache: Duration,
    pub setup_timeout: Duration,
}

/// The config of every node of both swarms: `mem_config` (memory transport, network `local`,
/// production replication factor 20), with the query timeout and periodic bootstrap interval
/// of `opts`.
pub fn node_config(opts: &Opts, bootstrap: &[libp2p::Multiaddr]) -> Valid {
    let mut c = mem_config(bootstrap);
    tweak(opts, &mut c);
    c
}

fn tweak(opts: &Opts, c: &mut Valid) {
    c.kad.query_timeout = opts.query_timeout;
    c.kad.bootstrap_interval = opts.bootstrap_interval;
    c.geo_provider_cache = opts.geo_cache;
}

/// CPU time (user + system) this process used so far, in milliseconds (`/proc/self/stat`,
/// assuming the usual 100 clock ticks per second).
pub fn process_cpu_ms() -> f64 {
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

/// One get.
#[derive(Debug, Clone, Serialize)]
pub struct GetSample {
    pub from: usize,
    pub profile: usize,
    pub ms: f64,
    /// Process CPU (all threads, 10 ms ticks) during the operation.
    pub cpu_ms: f64,
    /// The right profile (leafnet: account, name, seq and host; bare: the exact bytes).
    pub ok: bool,
    /// Bare only: records found when the get answered, and Kademlia requests sent by then.
    pub found: Option<usize>,
    pub requests: Option<u32>,
    pub error: Option<String>,
}

/// One leafnet radius query.
#[derive(Debug, Clone, Serialize)]
pub struct NearSample {
    pub group: usize,
    pub from: usize,
    pub centre: [f64; 2],
    pub radius_m: u32,
    pub ms: f64,
    pub cpu_ms: f64,
    /// leafnet's own `elapsed_ms` (from the flow's start to the actor's answer).
    pub inner_ms: f64,
    pub cells: usize,
    /// Iterative Kademlia lookups, `Providers` requests and cached cells of the query.
    pub lookups: usize,
    pub provider_requests: usize,
    pub cells_cached: usize,
    pub precision: usize,
    pub contacted: usize,
    pub failed: usize,
    pub results: usize,
    /// Profiles a brute force over all hosted profiles finds.
    pub expected: usize,
    /// Same accounts in the same order as the brute force.
    pub exact: bool,
    /// Hosting nodes announcing any cell of the cover, and the most of one cell.
    pub cover_hosts: usize,
    pub max_cell_hosts: usize,
    pub error: Option<String>,
}

/// One bare cover lookup: the radius query's cells, `get_providers` in parallel, each to the
/// end of its query (as leafnet does); and the same lookups finished at the first non-empty
/// provider set of each cell (`early_*`, a what-if: how fast an early-finishing lookup is and
/// how many providers it still finds).
#[derive(Debug, Clone, Serialize)]
pub struct CoverSample {
    pub group: usize,
    pub from: usize,
    pub ms: f64,
    pub cpu_ms: f64,
    pub cells: usize,
    pub providers: usize,
    pub requests: u32,
    pub early_ms: f64,
    pub early_cpu_ms: f64,
    pub early_providers: usize,
    pub early_requests: u32,
    /// Hosting nodes announcing any cell of the cover.
    pub cover_hosts: usize,
    pub error: Option<String>,
}

/// What one phase produced.
#[derive(Debug, Default)]
pub struct PhaseOut {
    pub gets: Vec<GetSample>,
    pub nears: Vec<NearSample>,
    pub covers: Vec<CoverSample>,
    /// leafnet only: every hosted profile's signed bytes, by profile index.
    pub signed: Vec<Vec<u8>>,
    pub details: serde_json::Value,
}

enum Swarm {
    Leaf(Vec<TestNode>),
    Bare(Vec<bare::BareNode>),
}

impl Swarm {
    /// Per node: routing-table entries, connected peers, Kademlia queries in flight, geo
    /// announcements pending (leafnet only).
    async fn snapshot(&self) -> anyhow::Result<Vec<[usize; 4]>> {
        match self {
            Swarm::Leaf(nodes) => {
                let mut v = Vec::with_capacity(nodes.len());
                for t in nodes {
                    let s = t.node.status().await?;
                    v.push([
                        s.routing_table_size,
                        s.connected_peers,
                        s.kad_queries_in_flight,
                        s.announcements_pending,
                    ]);
                }
                Ok(v)
            }
            Swarm::Bare(nodes) => {
                let mut v = Vec::with_capacity(nodes.len());
                for i in 0..nodes.len() {
                    let [a, b, c] = bare_ask(nodes, i, bare::Cmd::Snapshot).await?;
                    v.push([a, b, c, 0]);
                }
                Ok(v)
            }
        }
    }

    async fn shutdown(self) {
        match self {
            Swarm::Leaf(nodes) => shutdown_all(nodes).await,
            Swarm::Bare(nodes) => {
                let mut tasks = Vec::new();
                for n in nodes {
                    drop(n.tx);
                    tasks.push(n.task);
                }
                futures::future::join_all(tasks).await;
            }
        }
    }
}

async fn bare_ask<T>(
    nodes: &[bare::BareNode],
    node: usize,
    make: impl FnOnce(oneshot::Sender<T>) -> bare::Cmd,
) -> anyhow::Result<T> {
    let (tx, rx) = oneshot::channel();
    nodes[node]
        .tx
        .send(make(tx))
        .await
        .context("bare node stopped")?;
    tokio::time::timeout(OP_TIMEOUT, rx)
        .await
        .context("timed out")?
        .context("bare node stopped")
}

fn stats_of(snap: &[[usize; 4]]) -> serde_json::Value {
    let rt: Vec<usize> = snap.iter().map(|s| s[0]).collect();
    serde_json::json!({
        "routing_table_min": rt.iter().min(),
        "routing_table_max": rt.iter().max(),
        "routing_table_mean": rt.iter().sum::<usize>() as f64 / rt.len().max(1) as f64,
        "connected_peers_mean": snap.iter().map(|s| s[1]).sum::<usize>() as f64 / snap.len().max(1) as f64,
        "kad_queries_in_flight_total": snap.iter().map(|s| s[2]).sum::<usize>(),
        "announcements_pending_total": snap.iter().map(|s| s[3]).sum::<usize>(),
    })
}

/// Waits until every routing table has at least [`MIN_RT`] entries (at most `timeout`).
async fn wait_routing(sw: &Swarm, timeout: Duration) -> anyhow::Result<serde_json::Value> {
    let t0 = Instant::now();
    loop {
        let snap = sw.snapshot().await?;
        let ok = snap.iter().all(|s| s[0] >= MIN_RT);
        if ok || t0.elapsed() >= timeout {
            if !ok {
                eprintln!("  routing tables still below {MIN_RT} entries after {timeout:?}");
            }
            let mut v = stats_of(&snap);
            v["reached"] = serde_json::json!(ok);
            v["secs"] = serde_json::json!(t0.elapsed().as_secs_f64());
            return Ok(v);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Waits until the swarm is quiet: no Kademlia query and no geo announcement in flight on any
/// node, the total routing-table size unchanged over the last second, and the process using
/// less than [`QUIET_CPU_MS`] of CPU in that second (at least 3 s, at most `max`).
async fn settle(sw: &Swarm, max: Duration) -> anyhow::Result<serde_json::Value> {
    let t0 = Instant::now();
    let mut last_total = usize::MAX;
    let mut last_cpu = process_cpu_ms();
    let mut last_t = Instant::now();
    let mut cpu_series = Vec::new();
    let mut busy_series = Vec::new();
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let cpu = process_cpu_ms();
        let used = (cpu - last_cpu) / last_t.elapsed().as_secs_f64();
        last_cpu = cpu;
        last_t = Instant::now();
        let snap = sw.snapshot().await?;
        let total: usize = snap.iter().map(|s| s[0]).sum();
        let busy: usize = snap.iter().map(|s| s[2] + s[3]).sum();
        cpu_series.push(used.round());
        busy_series.push(busy);
        let stable = total == last_total;
        last_total = total;
        let quiet = stable && busy == 0 && used < QUIET_CPU_MS;
        let waited = t0.elapsed();
        if (waited >= Duration::from_secs(3) && quiet) || waited >= max {
            if !quiet {
                eprintln!(
                    "  swarm not quiet after {max:?} (queries+announcements {busy}, cpu {used:.0} ms/s)"
                );
            }
            let mut v = stats_of(&snap);
            v["quiet"] = serde_json::json!(quiet);
            v["secs"] = serde_json::json!(waited.as_secs_f64());
            v["cpu_ms_per_s"] = serde_json::json!(cpu_series);
            v["queries_and_announcements_in_flight"] = serde_json::json!(busy_series);
            return Ok(v);
        }
    }
}

/// Process CPU per second over `secs` idle seconds (nobody polling the swarm): what the swarm
/// does in the background.
async fn idle_cpu(secs: u64) -> f64 {
    let c = process_cpu_ms();
    let t = Instant::now();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    (process_cpu_ms() - c) / t.elapsed().as_secs_f64()
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn account_of(s: &PSpec) -> [u8; 32] {
    SigningKey::from_bytes(&s.seed).verifying_key().to_bytes()
}

/// The profile key bytes of spec `s` (leafnet's `/leafnet/profile/<account hex>`).
fn profile_key(s: &PSpec) -> RecordKey {
    RecordKey::new(&AccountId(account_of(s)).profile_key())
}

/// The leafnet swarm: start, settle, host every profile, wait for the announcements, settle,
/// warm up, run `ops`, shut down.
pub async fn leafnet(
    opts: &Opts,
    specs: &[PSpec],
    warmup: &[Op],
    ops: &[Op],
) -> anyhow::Result<PhaseOut> {
    let born = Instant::now();
    eprintln!("leafnet: starting {} nodes", opts.nodes);
    let o = opts.clone();
    let nodes = start_mem_swarm_with(opts.nodes, opts.setup_timeout, move |c| tweak(&o, c))
        .await
        .context("starting the leafnet swarm")?;
    let started_secs = born.elapsed().as_secs_f64();
    let sw = Swarm::Leaf(nodes);
    let r = leafnet_inner(opts, &sw, specs, warmup, ops, started_secs).await;
    eprintln!("leafnet: shutting down");
    sw.shutdown().await;
    r
}

async fn leafnet_inner(
    opts: &Opts,
    sw: &Swarm,
    specs: &[PSpec],
    warmup: &[Op],
    ops: &[Op],
    started_secs: f64,
) -> anyhow::Result<PhaseOut> {
    let Swarm::Leaf(nodes) = sw else {
        anyhow::bail!("not a leafnet swarm");
    };
    let routing = wait_routing(sw, opts.setup_timeout).await?;
    eprintln!("leafnet: routing tables {routing}");
    let settled_before = settle(sw, SETTLE_MAX).await?;

    // Sign and host every profile on its node.
    let exp = now_ms() + 2 * 3_600_000;
    let kinds = [Kind::Person, Kind::Object, Kind::Service];
    let mut signed = Vec::with_capacity(specs.len());
    let mut profiles = Vec::with_capacity(specs.len());
    for (i, s) in specs.iter().enumerate() {
        let key = SigningKey::from_bytes(&s.seed);
        let host = &nodes[s.host].node;
        let p = Profile {
            account: key.verifying_key().to_bytes(),
            kind: kinds[i % kinds.len()],
            name: format!("bench-{i:04}"),
            location: Some(Location::from_degrees(s.lat, s.lon)?),
            services: vec!["chat".into()],
            extra: vec![],
            host: host.peer_id.to_bytes(),
            host_addrs: vec![serde_bytes::ByteBuf::from(host.listen_addrs[0].to_vec())],
            seq: 1,
            expires_at_ms: exp,
        };
        p.check(now_ms())?;
        signed.push(p.seal(&key));
        profiles.push(p);
    }
    eprintln!("leafnet: hosting {} profiles", specs.len());
    let t_host = Instant::now();
    let mut host_ms = Vec::new();
    let mut not_stored_remotely = 0;
    let idx: Vec<usize> = (0..specs.len()).collect();
    for chunk in idx.chunks(LOAD_CONCURRENCY) {
        let futs = chunk.iter().map(|&i| {
            let s = signed[i].clone();
            async move {
                let t = Instant::now();
                let r = nodes[specs[i].host].node.profiles().host(s).await;
                (t.elapsed().as_secs_f64() * 1000.0, r)
            }
        });
        for (ms, r) in futures::future::join_all(futs).await {
            let p = r.context("hosting a profile")?;
            host_ms.push(ms);
            if !p.stored_remotely {
                not_stored_remotely += 1;
            }
        }
    }
    let hosting_secs = t_host.elapsed().as_secs_f64();
    eprintln!("leafnet: hosted in {hosting_secs:.1} s; waiting for the announcements");
    let settled_after_hosting = settle(sw, Duration::from_secs(300)).await?;
    eprintln!("leafnet: settled {settled_after_hosting}");
    let announced_secs = t_host.elapsed().as_secs_f64();

    // Brute-force answers of every radius query of the schedule.
    let expected = |lat: f64, lon: f64, radius_m: u32| -> Vec<String> {
        let Ok(c) = Location::from_degrees(lat, lon) else {
            return Vec::new();
        };
        let mut v: Vec<(f64, [u8; 32])> = profiles
            .iter()
            .filter_map(|p| {
                leafnet_geo::protocol::matches(p, c, radius_m, &Filter::default())
                    .map(|d| (d, p.account))
            })
            .collect();
        v.sort_by(|a, b| leafnet_geo::protocol::order((a.0, &a.1), (b.0, &b.1)));
        v.iter().map(|(_, a)| hex::encode(a)).collect()
    };

    let hosts = crate::work::cell_hosts(specs);
    let run = async |ops: &[Op], out: &mut PhaseOut| {
        for op in ops {
            tokio::time::sleep(opts.gap).await;
            match *op {
                Op::Get { from, p } => {
                    let acct = hex::encode(account_of(&specs[p]));
                    let c0 = process_cpu_ms();
                    let t = Instant::now();
                    let r = tokio::time::timeout(
                        OP_TIMEOUT,
                        nodes[from].node.profiles().get_profile(&acct),
                    )
                    .await;
                    let ms = t.elapsed().as_secs_f64() * 1000.0;
                    let cpu_ms = process_cpu_ms() - c0;
                    let (ok, error) = match r {
                        Ok(Ok(got)) => {
                            let want = &profiles[p];
                            let ok = got.account_id == acct
                                && got.name == want.name
                                && got.seq == want.seq
                                && got.host_peer_id
                                    == nodes[specs[p].host].node.peer_id.to_string();
                            (ok, (!ok).then(|| format!("wrong profile: {got:?}")))
                        }
                        Ok(Err(e)) => (false, Some(format!("{e:#}"))),
                        Err(_) => (false, Some("timed out".into())),
                    };
                    out.gets.push(GetSample {
                        from,
                        profile: p,
                        ms,
                        cpu_ms,
                        ok,
                        found: None,
                        requests: None,
                        error,
                    });
                }
                Op::Near {
                    from,
                    group,
                    lat,
                    lon,
                    radius_m,
                } => {
                    let want = expected(lat, lon, radius_m);
                    let (cover_hosts, max_cell_hosts) =
                        crate::work::cover_hosts(&hosts, lat, lon, radius_m);
                    let c0 = process_cpu_ms();
                    let t = Instant::now();
                    let r = tokio::time::timeout(
                        OP_TIMEOUT,
                        nodes[from].node.profiles().profiles_near(
                            lat,
                            lon,
                            radius_m,
                            Filter::default(),
                            NEAR_LIMIT,
                        ),
                    )
                    .await;
                    let ms = t.elapsed().as_secs_f64() * 1000.0;
                    let cpu_ms = process_cpu_ms() - c0;
                    let mut s = NearSample {
                        group,
                        from,
                        centre: [lat, lon],
                        radius_m,
                        ms,
                        cpu_ms,
                        inner_ms: f64::NAN,
                        cells: 0,
                        lookups: 0,
                        provider_requests: 0,
                        cells_cached: 0,
                        precision: 0,
                        contacted: 0,
                        failed: 0,
                        results: 0,
                        expected: want.len(),
                        exact: false,
                        cover_hosts,
                        max_cell_hosts,
                        error: None,
                    };
                    match r {
                        Ok(Ok(n)) => {
                            let got: Vec<&str> = n
                                .results
                                .iter()
                                .map(|x| x.profile.account_id.as_str())
                                .collect();
                            s.inner_ms = n.elapsed_ms;
                            s.cells = n.cells;
                            s.lookups = n.cell_lookups;
                            s.provider_requests = n.provider_requests;
                            s.cells_cached = n.cells_cached;
                            s.precision = n.precision;
                            s.contacted = n.nodes_contacted;
                            s.failed = n.nodes_failed.len();
                            s.results = n.results.len();
                            s.exact = got == want.iter().map(String::as_str).collect::<Vec<_>>();
                        }
                        Ok(Err(e)) => s.error = Some(format!("{e:#}")),
                        Err(_) => s.error = Some("timed out".into()),
                    }
                    out.nears.push(s);
                }
            }
        }
    };

    eprintln!("leafnet: warm-up ({} operations)", warmup.len());
    let mut w = PhaseOut::default();
    run(warmup, &mut w).await;
    let settled_before_measure = settle(sw, SETTLE_MAX).await?;
    let idle = idle_cpu(3).await;
    eprintln!(
        "leafnet: idle CPU {idle:.0} ms/s; measuring {} operations",
        ops.len()
    );
    let mut out = PhaseOut::default();
    let load0 = crate::loadavg();
    let cpu0 = process_cpu_ms();
    let t0 = Instant::now();
    run(ops, &mut out).await;
    let measure_secs = t0.elapsed().as_secs_f64();
    let cpu = process_cpu_ms() - cpu0;
    let after = stats_of(&sw.snapshot().await?);
    let sizes: Vec<usize> = signed.iter().map(|s| s.bytes.len()).collect();
    let cells_hosted: usize = {
        let mut per_node: HashMap<usize, BTreeSet<String>> = HashMap::new();
        for (s, p) in specs.iter().zip(&profiles) {
            if let Some(l) = p.location {
                per_node
                    .entry(s.host)
                    .or_default()
                    .extend(leafnet_geo::cells(l));
            }
        }
        per_node.values().map(BTreeSet::len).sum()
    };
    out.details = serde_json::json!({
        "swarm_start_secs": started_secs,
        "routing_wait": routing,
        "settle_before_hosting": settled_before,
        "hosting": {
            "profiles": specs.len(),
            "concurrency": LOAD_CONCURRENCY,
            "secs": hosting_secs,
            "host_call_ms": crate::summarize(&host_ms),
            "not_stored_remotely": not_stored_remotely,
            "cell_announcements": cells_hosted,
            "secs_until_settled": announced_secs,
        },
        "settle_after_hosting": settled_after_hosting,
        "settle_before_measuring": settled_before_measure,
        "idle_process_cpu_ms_per_s": idle,
        "signed_profile_bytes": {
            "min": sizes.iter().min(), "max": sizes.iter().max(),
            "mean": sizes.iter().sum::<usize>() as f64 / sizes.len().max(1) as f64,
        },
        "warmup": { "gets": w.gets.len(), "gets_failed": w.gets.iter().filter(|g| !g.ok).count(),
                    "nears": w.nears.len(), "nears_failed": w.nears.iter().filter(|n| n.error.is_some()).count() },
        "measure": { "secs": measure_secs, "process_cpu_ms": cpu, "loadavg_before": load0,
                     "loadavg_after": crate::loadavg() },
        "after_measuring": after,
    });
    out.signed = signed.into_iter().map(|s| s.bytes).collect();
    Ok(out)
}

/// The bare swarm: start (all dial node 0), wait for the routing tables, settle, put every
/// profile's bytes from its host node and announce the same cells from the same nodes, settle,
/// warm up, run `ops` (gets as leafnet's; radius queries as their cover's provider lookups
/// only), shut down.
pub async fn bare(
    opts: &Opts,
    specs: &[PSpec],
    signed: &[Vec<u8>],
    warmup: &[Op],
    ops: &[Op],
) -> anyhow::Result<PhaseOut> {
    let born = Instant::now();
    eprintln!("bare: starting {} nodes", opts.nodes);
    let cfg = node_config(opts, &[]);
    let first = bare::start(&cfg, None).await?;
    let boot = (first.peer_id, first.addr.clone());
    let mut nodes = vec![first];
    for _ in 1..opts.nodes {
        match bare::start(&cfg, Some(&boot)).await {
            Ok(n) => nodes.push(n),
            Err(e) => {
                Swarm::Bare(nodes).shutdown().await;
                return Err(e);
            }
        }
    }
    let started_secs = born.elapsed().as_secs_f64();
    let sw = Swarm::Bare(nodes);
    let r = bare_inner(opts, &sw, specs, signed, warmup, ops, started_secs).await;
    eprintln!("bare: shutting down");
    sw.shutdown().await;
    r
}

async fn bare_inner(
    opts: &Opts,
    sw: &Swarm,
    specs: &[PSpec],
    signed: &[Vec<u8>],
    warmup: &[Op],
    ops: &[Op],
    started_secs: f64,
) -> anyhow::Result<PhaseOut> {
    let Swarm::Bare(nodes) = sw else {
        anyhow::bail!("not a bare swarm");
    };
    let routing = wait_routing(sw, opts.setup_timeout).await?;
    eprintln!("bare: routing tables {routing}");
    let settled_before = settle(sw, SETTLE_MAX).await?;

    eprintln!("bare: putting {} records", specs.len());
    let t_put = Instant::now();
    let mut put_failed = 0;
    let idx: Vec<usize> = (0..specs.len()).collect();
    for chunk in idx.chunks(LOAD_CONCURRENCY) {
        let futs = chunk.iter().map(|&i| {
            let mut rec = Record::new(profile_key(&specs[i]), signed[i].clone());
            rec.publisher = Some(nodes[specs[i].host].peer_id);
            rec.expires = Some(Instant::now() + Duration::from_secs(2 * 3600));
            bare_ask(nodes, specs[i].host, move |tx| bare::Cmd::Put(rec, tx))
        });
        for r in futures::future::join_all(futs).await {
            if !r.unwrap_or(false) {
                put_failed += 1;
            }
        }
    }
    // The same cells from the same nodes as leafnet announces (each node once per cell).
    let mut per_node: HashMap<usize, BTreeSet<String>> = HashMap::new();
    for s in specs {
        let l = Location::from_degrees(s.lat, s.lon)?;
        per_node
            .entry(s.host)
            .or_default()
            .extend(leafnet_geo::cells(l));
    }
    let provides: Vec<(usize, String)> = per_node
        .into_iter()
        .flat_map(|(n, cells)| cells.into_iter().map(move |c| (n, c)))
        .collect();
    let mut provide_failed = 0;
    for chunk in provides.chunks(LOAD_CONCURRENCY) {
        let futs = chunk.iter().map(|(n, c)| {
            let key = RecordKey::new(&format!("/leafnet/geo/{c}"));
            bare_ask(nodes, *n, move |tx| bare::Cmd::Provide(key, tx))
        });
        for r in futures::future::join_all(futs).await {
            if !r.unwrap_or(false) {
                provide_failed += 1;
            }
        }
    }
    let loading_secs = t_put.elapsed().as_secs_f64();
    eprintln!("bare: loaded in {loading_secs:.1} s; settling");
    let settled_after_loading = settle(sw, Duration::from_secs(300)).await?;

    let hosts = crate::work::cell_hosts(specs);
    let run = async |ops: &[Op], out: &mut PhaseOut| {
        for (k, op) in ops.iter().enumerate() {
            tokio::time::sleep(opts.gap).await;
            match *op {
                Op::Get { from, p } => {
                    let key = profile_key(&specs[p]);
                    let c0 = process_cpu_ms();
                    let t = Instant::now();
                    let r = bare_ask(nodes, from, |tx| bare::Cmd::Get(key, tx)).await;
                    let ms = t.elapsed().as_secs_f64() * 1000.0;
                    let cpu_ms = process_cpu_ms() - c0;
                    let s = match r {
                        Ok(g) => {
                            let ok = g.value.as_deref() == Some(signed[p].as_slice());
                            GetSample {
                                from,
                                profile: p,
                                ms,
                                cpu_ms,
                                ok,
                                found: Some(g.found),
                                requests: Some(g.requests),
                                error: (!ok)
                                    .then(|| format!("found {} records, none right", g.found)),
                            }
                        }
                        Err(e) => GetSample {
                            from,
                            profile: p,
                            ms,
                            cpu_ms,
                            ok: false,
                            found: None,
                            requests: None,
                            error: Some(format!("{e:#}")),
                        },
                    };
                    out.gets.push(s);
                }
                Op::Near {
                    from,
                    group,
                    lat,
                    lon,
                    radius_m,
                } => {
                    let Ok(c) = Location::from_degrees(lat, lon) else {
                        continue;
                    };
                    let (_, cells) = leafnet_geo::cover(c, f64::from(radius_m));
                    let n_cells = cells.len();
                    let keys: Vec<RecordKey> = cells
                        .iter()
                        .map(|c| RecordKey::new(&format!("/leafnet/geo/{c}")))
                        .collect();
                    // Both variants, in alternating order (the second finds warmer connections).
                    let mut full = None;
                    let mut early = None;
                    for variant in [k % 2, 1 - k % 2] {
                        if variant == 1 {
                            tokio::time::sleep(opts.gap).await;
                        }
                        let enough = (variant == 1).then_some(1);
                        let keys = keys.clone();
                        let c0 = process_cpu_ms();
                        let t = Instant::now();
                        let r =
                            bare_ask(nodes, from, |tx| bare::Cmd::Cover(keys, enough, tx)).await;
                        let ms = t.elapsed().as_secs_f64() * 1000.0;
                        let cpu_ms = process_cpu_ms() - c0;
                        let v = r.map(|c| (ms, cpu_ms, c.providers, c.requests));
                        if variant == 0 {
                            full = Some(v);
                        } else {
                            early = Some(v);
                        }
                    }
                    let (full, early) = (
                        full.unwrap_or_else(|| Err(anyhow::anyhow!("not run"))),
                        early.unwrap_or_else(|| Err(anyhow::anyhow!("not run"))),
                    );
                    let mut s = CoverSample {
                        group,
                        from,
                        ms: f64::NAN,
                        cpu_ms: f64::NAN,
                        cells: n_cells,
                        providers: 0,
                        requests: 0,
                        early_ms: f64::NAN,
                        early_cpu_ms: f64::NAN,
                        early_providers: 0,
                        early_requests: 0,
                        cover_hosts: crate::work::cover_hosts(&hosts, lat, lon, radius_m).0,
                        error: None,
                    };
                    match full {
                        Ok((ms, c, p, r)) => {
                            (s.ms, s.cpu_ms, s.providers, s.requests) = (ms, c, p, r);
                        }
                        Err(e) => s.error = Some(format!("{e:#}")),
                    }
                    match early {
                        Ok((ms, c, p, r)) => {
                            (
                                s.early_ms,
                                s.early_cpu_ms,
                                s.early_providers,
                                s.early_requests,
                            ) = (ms, c, p, r);
                        }
                        Err(e) => s.error = Some(format!("early: {e:#}")),
                    }
                    out.covers.push(s);
                }
            }
        }
    };

    eprintln!("bare: warm-up ({} operations)", warmup.len());
    let mut w = PhaseOut::default();
    run(warmup, &mut w).await;
    let settled_before_measure = settle(sw, SETTLE_MAX).await?;
    let idle = idle_cpu(3).await;
    eprintln!(
        "bare: idle CPU {idle:.0} ms/s; measuring {} operations",
        ops.len()
    );
    let mut out = PhaseOut::default();
    let load0 = crate::loadavg();
    let cpu0 = process_cpu_ms();
    let t0 = Instant::now();
    run(ops, &mut out).await;
    let measure_secs = t0.elapsed().as_secs_f64();
    let cpu = process_cpu_ms() - cpu0;
    let after = stats_of(&sw.snapshot().await?);
    out.details = serde_json::json!({
        "swarm_start_secs": started_secs,
        "routing_wait": routing,
        "settle_before_loading": settled_before,
        "loading": {
            "records": specs.len(),
            "concurrency": LOAD_CONCURRENCY,
            "put_failed": put_failed,
            "cell_announcements": provides.len(),
            "provide_failed": provide_failed,
            "secs": loading_secs,
        },
        "settle_after_loading": settled_after_loading,
        "settle_before_measuring": settled_before_measure,
        "idle_process_cpu_ms_per_s": idle,
        "warmup": { "gets": w.gets.len(), "gets_failed": w.gets.iter().filter(|g| !g.ok).count(),
                    "covers": w.covers.len() },
        "measure": { "secs": measure_secs, "process_cpu_ms": cpu, "loadavg_before": load0,
                     "loadavg_after": crate::loadavg() },
        "after_measuring": after,
    });
    Ok(out)
}
