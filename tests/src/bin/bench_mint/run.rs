//! One swarm of one size, leafnet or bare: start, settle, then the measured rounds.

use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use leafnet_mint::{Item, SignedObservation, SignedStatement, Statement};
use leafnet_tests::{TestNode, shutdown_all, start_mem_swarm_with, wait_until};
use serde::Serialize;

use crate::bare;

/// A swarm counts as quiet below this much process CPU per second (and after at least 3 s).
pub const QUIET_CPU_MS: f64 = 150.0;

/// What every run of every swarm shares.
#[derive(Debug, Clone)]
pub struct Opts {
    pub rounds: usize,
    pub heartbeat: Duration,
    pub pause: Duration,
    pub round_timeout: Duration,
    pub settle_max: Duration,
    pub idle_secs: u64,
    pub poll: Duration,
    pub bootstrap_interval: Duration,
    pub seed: u64,
}

/// splitmix64.
#[derive(Debug, Clone)]
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    pub fn bytes32(&mut self) -> [u8; 32] {
        let mut b = [0u8; 32];
        for c in b.chunks_mut(8) {
            c.copy_from_slice(&self.next().to_le_bytes());
        }
        b
    }
}

/// One round: the issuer's key seed and which nodes see statement A (the others see B).
#[derive(Debug, Clone)]
pub struct RoundPlan {
    pub issuer_seed: [u8; 32],
    pub sees_a: Vec<bool>,
}

/// The rounds of one size: for each, a random half of the nodes sees A.
pub fn plan(n: usize, rounds: usize, seed: u64) -> Vec<RoundPlan> {
    let mut rng = Rng(seed ^ (n as u64).wrapping_mul(0x1000_0001));
    (0..rounds)
        .map(|_| {
            let mut idx: Vec<usize> = (0..n).collect();
            for i in (1..n).rev() {
                idx.swap(i, rng.below(i + 1));
            }
            let mut sees_a = vec![false; n];
            for &i in &idx[..n / 2] {
                sees_a[i] = true;
            }
            RoundPlan {
                issuer_seed: rng.bytes32(),
                sees_a,
            }
        })
        .collect()
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

pub fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

fn now_ms() -> u64 {
    now_us() / 1000
}

/// A signed statement of `issuer` for ("BENCH", `series`) with the hash of `file`.
pub fn statement(issuer: &SigningKey, series: u64, file: &[u8]) -> anyhow::Result<SignedStatement> {
    let now = now_ms();
    Ok(SignedStatement::seal(
        issuer,
        Statement {
            issuer: issuer.verifying_key().to_bytes(),
            asset: "BENCH".into(),
            series,
            mint_hash: leafnet_mint::mint_hash(file),
            valid_from_ms: now,
            valid_until_ms: now + 24 * 3600 * 1000,
        },
    )?)
}

/// The size of one gossiped observation item, as the rounds make them.
pub fn item_bytes() -> anyhow::Result<usize> {
    let issuer = SigningKey::from_bytes(&[1; 32]);
    let observer = SigningKey::from_bytes(&[2; 32]);
    let st = statement(&issuer, 1_000, b"mint file A of round 1000")?;
    Ok(
        Item::Observation(SignedObservation::seal(&observer, &st, now_ms()))
            .to_bytes()
            .len(),
    )
}

/// The size of one equivocation proof item, as the rounds make them.
pub fn proof_bytes() -> anyhow::Result<usize> {
    let issuer = SigningKey::from_bytes(&[1; 32]);
    let (o1, o2) = (
        SigningKey::from_bytes(&[2; 32]),
        SigningKey::from_bytes(&[3; 32]),
    );
    let a = statement(&issuer, 1_000, b"mint file A of round 1000")?;
    let b = statement(&issuer, 1_000, b"mint file B of round 1000")?;
    let mut book = leafnet_mint::Book::new(leafnet_mint::BookLimits::default());
    book.add(Item::Observation(SignedObservation::seal(
        &o1,
        &a,
        now_ms(),
    )));
    match book.add(Item::Observation(SignedObservation::seal(
        &o2,
        &b,
        now_ms(),
    ))) {
        leafnet_mint::Added::NewEquivocation(p) => Ok(Item::Proof(p).to_bytes().len()),
        other => anyhow::bail!("no proof from two statements: {other:?}"),
    }
}

/// One measured round.
#[derive(Debug, Clone, Serialize)]
pub struct RoundOut {
    /// Per node: detection time since t0, ms (None: not within the round timeout).
    pub detect_ms: Vec<Option<f64>>,
    /// From t0 until every observe/publish call answered, ms.
    pub issue_ms: f64,
    /// From t0 until the bench saw every node done (or gave up), ms.
    pub all_done_ms: f64,
    /// From t0 until gossip went quiet (no message received anywhere for 300 ms), ms.
    pub drained_ms: f64,
}

/// Waits until `count` (messages received, summed over the nodes) has not changed for 500 ms
/// (checked every 250 ms), at most `max`; returns when it last changed, and the wall time spent
/// in `count` (ms; the bench's own cost, on one thread).
async fn drain<F: FnMut() -> f64>(max: Duration, mut count: F) -> (Instant, f64) {
    let deadline = Instant::now() + max;
    let mut spent = 0.0;
    let mut timed = |spent: &mut f64| {
        let t = Instant::now();
        let c = count();
        *spent += t.elapsed().as_secs_f64() * 1e3;
        c
    };
    let mut last = timed(&mut spent);
    let mut changed = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let c = timed(&mut spent);
        if c != last {
            last = c;
            changed = Instant::now();
        } else if changed.elapsed() >= Duration::from_millis(500) || Instant::now() >= deadline {
            return (changed, spent);
        }
    }
}

/// Gossipsub counters summed over the nodes.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Gs {
    pub recv_unfiltered: f64,
    pub recv_unique: f64,
    pub published: f64,
}

impl std::ops::Sub for Gs {
    type Output = Gs;
    fn sub(self, o: Gs) -> Gs {
        Gs {
            recv_unfiltered: self.recv_unfiltered - o.recv_unfiltered,
            recv_unique: self.recv_unique - o.recv_unique,
            published: self.published - o.published,
        }
    }
}

/// Peers per node at one moment: connected, mint-topic peers, mesh peers.
#[derive(Debug, Clone, Serialize)]
pub struct Peers {
    pub connected_mean: f64,
    pub connected_min: usize,
    pub connected_max: usize,
    pub topic_mean: f64,
    pub topic_min: usize,
    pub mesh_mean: f64,
    pub mesh_min: usize,
    pub mesh_max: usize,
}

fn peers_of(v: &[[usize; 3]]) -> Peers {
    let n = v.len().max(1) as f64;
    let col = |i: usize| v.iter().map(move |x| x[i]);
    Peers {
        connected_mean: col(0).sum::<usize>() as f64 / n,
        connected_min: col(0).min().unwrap_or(0),
        connected_max: col(0).max().unwrap_or(0),
        topic_mean: col(1).sum::<usize>() as f64 / n,
        topic_min: col(1).min().unwrap_or(0),
        mesh_mean: col(2).sum::<usize>() as f64 / n,
        mesh_min: col(2).min().unwrap_or(0),
        mesh_max: col(2).max().unwrap_or(0),
    }
}

/// Everything one swarm of one size produced.
#[derive(Debug, Clone, Serialize)]
pub struct SwarmOut {
    pub kind: &'static str,
    pub nodes: usize,
    pub setup_secs: f64,
    pub settle_secs: f64,
    pub settled_quiet: bool,
    pub settle_cpu_ms_per_s: Vec<f64>,
    pub peers_before: Peers,
    pub peers_after: Peers,
    /// Process CPU per second of the settled swarm, nobody polling it.
    pub idle_cpu_ms_per_s: f64,
    pub phase_secs: f64,
    pub phase_cpu_ms: f64,
    /// Gossip messages with distinct ids in the phase (leafnet: N observations + 1 proof a round).
    pub distinct_messages: usize,
    pub gossip: Gs,
    /// Wall time the bench spent reading the gossip counters to see a round end (ms).
    pub drain_poll_ms: f64,
    pub rounds: Vec<RoundOut>,
    pub loadavg_before: [f64; 3],
    pub loadavg_after: [f64; 3],
}

/// Polls `done` for every node not yet done, every `poll`, until all are or `timeout`.
async fn wait_all<F, Fut>(n: usize, timeout: Duration, poll: Duration, mut done: F) -> Instant
where
    F: FnMut(usize) -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    let mut pending: Vec<usize> = (0..n).collect();
    loop {
        let res = futures::future::join_all(pending.iter().map(|&i| done(i))).await;
        pending = pending
            .iter()
            .zip(res)
            .filter(|(_, d)| !d)
            .map(|(i, _)| *i)
            .collect();
        if pending.is_empty() || Instant::now() >= deadline {
            return Instant::now();
        }
        tokio::time::sleep(poll).await;
    }
}

/// Waits until `snapshot` shows every node with enough topic peers, then until the process is
/// quiet (and `busy` is 0) for a second, at least 3 s, at most `max`.
async fn settle<S, SFut>(max: Duration, mut busy: S) -> anyhow::Result<(f64, bool, Vec<f64>)>
where
    S: FnMut() -> SFut,
    SFut: Future<Output = anyhow::Result<usize>>,
{
    let t0 = Instant::now();
    let mut last_cpu = process_cpu_ms();
    let mut last_t = Instant::now();
    let mut series = Vec::new();
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let cpu = process_cpu_ms();
        let used = (cpu - last_cpu) / last_t.elapsed().as_secs_f64();
        last_cpu = cpu;
        last_t = Instant::now();
        series.push(used.round());
        let b = busy().await?;
        let quiet = b == 0 && used < QUIET_CPU_MS;
        let waited = t0.elapsed();
        if (waited >= Duration::from_secs(3) && quiet) || waited >= max {
            if !quiet {
                eprintln!("  not quiet after {max:?} (busy {b}, cpu {used:.0} ms/s)");
            }
            return Ok((waited.as_secs_f64(), quiet, series));
        }
    }
}

async fn idle_cpu(secs: u64) -> f64 {
    let c = process_cpu_ms();
    let t = Instant::now();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    (process_cpu_ms() - c) / t.elapsed().as_secs_f64()
}

/// The gossipsub counters of a leafnet node, from its Prometheus text.
pub fn leaf_gs(text: &str) -> (Gs, usize) {
    let mut g = Gs::default();
    let mut mesh = 0.0;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let name = line.split(['{', ' ']).next().unwrap_or("");
        let Some(v) = line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) else {
            continue;
        };
        if name.ends_with("topic_msg_recv_counts_unfiltered_total") {
            g.recv_unfiltered += v;
        } else if name.ends_with("topic_msg_recv_counts_total") {
            g.recv_unique += v;
        } else if name.ends_with("topic_msg_published_total") {
            g.published += v;
        } else if name.ends_with("mesh_peer_counts") {
            mesh += v;
        }
    }
    (g, mesh as usize)
}

fn leaf_gs_sum(nodes: &[TestNode]) -> Gs {
    nodes.iter().fold(Gs::default(), |a, t| {
        let (g, _) = leaf_gs(&t.node.metrics_text());
        Gs {
            recv_unfiltered: a.recv_unfiltered + g.recv_unfiltered,
            recv_unique: a.recv_unique + g.recv_unique,
            published: a.published + g.published,
        }
    })
}

async fn leaf_peers(nodes: &[TestNode]) -> anyhow::Result<Vec<[usize; 3]>> {
    let mut v = Vec::with_capacity(nodes.len());
    for t in nodes {
        let s = t.node.status().await?;
        let (_, mesh) = leaf_gs(&t.node.metrics_text());
        v.push([s.connected_peers, s.mint_topic_peers, mesh]);
    }
    Ok(v)
}

/// The leafnet swarm of `n` nodes.
pub async fn leafnet(opts: &Opts, n: usize, plans: &[RoundPlan]) -> anyhow::Result<SwarmOut> {
    let loadavg_before = leafnet_tests::benchkit::loadavg();
    let t_setup = Instant::now();
    let (hb, bi) = (opts.heartbeat, opts.bootstrap_interval);
    let nodes = start_mem_swarm_with(n, Duration::from_secs(180), move |c| {
        c.mint.heartbeat = hb;
        c.kad.bootstrap_interval = bi;
    })
    .await?;
    let want = (n - 1).min(4);
    wait_until(
        Duration::from_secs(90),
        "every node knows enough mint topic peers",
        || async {
            for t in &nodes {
                if t.node.status().await?.mint_topic_peers < want {
                    return Ok(false);
                }
            }
            Ok(true)
        },
    )
    .await?;
    let setup_secs = t_setup.elapsed().as_secs_f64();
    eprintln!("  leafnet {n}: set up in {setup_secs:.1} s; settling");
    let (settle_secs, settled_quiet, settle_cpu) = settle(opts.settle_max, || async {
        let mut q = 0;
        for t in &nodes {
            q += t.node.status().await?.kad_queries_in_flight;
        }
        Ok(q)
    })
    .await?;
    let peers_before = peers_of(&leaf_peers(&nodes).await?);
    let idle = idle_cpu(opts.idle_secs).await;
    eprintln!(
        "  leafnet {n}: settled in {settle_secs:.1} s, connected mean {:.1}, mesh mean {:.1}, idle {idle:.0} ms/s",
        peers_before.connected_mean, peers_before.mesh_mean
    );

    let gs0 = leaf_gs_sum(&nodes);
    let cpu0 = process_cpu_ms();
    let t_phase = Instant::now();
    let mut rounds = Vec::new();
    let mut drain_poll_ms = 0.0;
    for (r, p) in plans.iter().enumerate() {
        let issuer = SigningKey::from_bytes(&p.issuer_seed);
        let issuer_hex = hex::encode(issuer.verifying_key().to_bytes());
        let series = r as u64 + 1;
        let a = statement(
            &issuer,
            series,
            format!("mint file A of round {r}").as_bytes(),
        )?
        .to_bytes();
        let b = statement(
            &issuer,
            series,
            format!("mint file B of round {r}").as_bytes(),
        )?
        .to_bytes();
        let t0_us = now_us();
        let t0 = Instant::now();
        let res = futures::future::join_all(nodes.iter().enumerate().map(|(i, t)| {
            let s = if p.sees_a[i] { &a } else { &b };
            t.node.mint().mint_observe(s)
        }))
        .await;
        let issue_ms = t0.elapsed().as_secs_f64() * 1e3;
        for r in res {
            anyhow::ensure!(r?.new, "an observation was not new");
        }
        let done_at = wait_all(n, opts.round_timeout, opts.poll, |i| {
            let (t, h) = (&nodes[i], &issuer_hex);
            async move {
                t.node
                    .mint()
                    .mint_status(Some(h))
                    .await
                    .is_ok_and(|s| s.series.iter().any(|x| x.equivocation))
            }
        })
        .await;
        let all_done_ms = done_at.duration_since(t0).as_secs_f64() * 1e3;
        let mut detect_ms = Vec::with_capacity(n);
        for t in &nodes {
            let proofs = t.node.mint().mint_proofs().await?;
            detect_ms.push(
                proofs
                    .iter()
                    .find(|x| x.issuer == issuer_hex && x.series == series)
                    .and_then(|x| x.detected_at_us)
                    .map(|d| (d as f64 - t0_us as f64) / 1e3),
            );
        }
        let (quiet_at, spent) =
            drain(opts.round_timeout, || leaf_gs_sum(&nodes).recv_unfiltered).await;
        drain_poll_ms += spent;
        let drained_ms = quiet_at.duration_since(t0).as_secs_f64() * 1e3;
        let missing = detect_ms.iter().filter(|d| d.is_none()).count();
        if missing > 0 || r % 5 == 4 {
            eprintln!(
                "  leafnet {n}: round {} detected everywhere in {all_done_ms:.0} ms, gossip quiet after {drained_ms:.0} ms, {missing} missing",
                r + 1
            );
        }
        rounds.push(RoundOut {
            detect_ms,
            issue_ms,
            all_done_ms,
            drained_ms,
        });
        tokio::time::sleep(opts.pause).await;
    }
    let phase_secs = t_phase.elapsed().as_secs_f64();
    let phase_cpu_ms = process_cpu_ms() - cpu0;
    let gossip = leaf_gs_sum(&nodes) - gs0;
    if std::env::var_os("LEAFNET_BENCH_DUMP_METRICS").is_some() {
        let text = nodes[0].node.metrics_text();
        for l in text
            .lines()
            .filter(|l| l.contains("topic_msg") || l.contains("mesh_peer"))
        {
            eprintln!("  metrics of node 0: {l}");
        }
    }
    let peers_after = peers_of(&leaf_peers(&nodes).await?);
    shutdown_all(nodes).await;
    Ok(SwarmOut {
        kind: "leafnet",
        nodes: n,
        setup_secs,
        settle_secs,
        settled_quiet,
        settle_cpu_ms_per_s: settle_cpu,
        peers_before,
        peers_after,
        idle_cpu_ms_per_s: idle,
        phase_secs,
        phase_cpu_ms,
        distinct_messages: plans.len() * (n + 1),
        gossip,
        drain_poll_ms,
        rounds,
        loadavg_before,
        loadavg_after: leafnet_tests::benchkit::loadavg(),
    })
}

fn bare_gs_sum(nodes: &[bare::BareNode]) -> Gs {
    use std::sync::atomic::Ordering::Relaxed;
    nodes.iter().fold(Gs::default(), |a, b| Gs {
        recv_unfiltered: a.recv_unfiltered + b.counters.recv_unfiltered.load(Relaxed) as f64,
        recv_unique: a.recv_unique + b.counters.recv_unique.load(Relaxed) as f64,
        published: a.published + b.counters.published.load(Relaxed) as f64,
    })
}

async fn bare_peers(nodes: &[bare::BareNode]) -> anyhow::Result<Vec<[usize; 3]>> {
    let mut v = Vec::with_capacity(nodes.len());
    for b in nodes {
        v.push(bare::ask(b, bare::Cmd::Snapshot).await?);
    }
    Ok(v)
}

/// The edges of the bare swarm: every node to node 0, plus random edges until the mean degree
/// is `degree` (each edge is dialed by its lower-index end).
pub fn bare_edges(n: usize, degree: f64, seed: u64) -> Vec<(usize, usize)> {
    let max_edges = n * (n - 1) / 2;
    let want = ((n as f64 * degree / 2.0).round() as usize).clamp(n - 1, max_edges);
    let mut set = std::collections::BTreeSet::new();
    for i in 1..n {
        set.insert((0, i));
    }
    if want * 2 > max_edges {
        // Dense: list every edge and shuffle.
        let mut all: Vec<(usize, usize)> = (1..n)
            .flat_map(|i| (i + 1..n).map(move |j| (i, j)))
            .collect();
        let mut rng = Rng(seed);
        for i in (1..all.len()).rev() {
            all.swap(i, rng.below(i + 1));
        }
        for e in all {
            if set.len() >= want {
                break;
            }
            set.insert(e);
        }
    } else {
        let mut rng = Rng(seed);
        while set.len() < want {
            let (a, b) = (rng.below(n), rng.below(n));
            if a != b {
                set.insert((a.min(b), a.max(b)));
            }
        }
    }
    set.into_iter().collect()
}

/// The bare swarm of `n` nodes with mean degree `degree`.
pub async fn bare(
    opts: &Opts,
    n: usize,
    degree: f64,
    item_bytes: usize,
    plans: &[RoundPlan],
) -> anyhow::Result<SwarmOut> {
    let loadavg_before = leafnet_tests::benchkit::loadavg();
    let t_setup = Instant::now();
    let mut cfg = leafnet_tests::mem_config(&[]);
    cfg.mint.heartbeat = opts.heartbeat;
    let mut nodes = Vec::with_capacity(n);
    for _ in 0..n {
        nodes.push(bare::start(&cfg).await?);
    }
    let edges = bare_edges(n, degree, opts.seed ^ n as u64);
    let mut planned = vec![0usize; n];
    for &(a, b) in &edges {
        planned[a] += 1;
        planned[b] += 1;
        let _ = nodes[a].tx.send(bare::Cmd::Dial(nodes[b].p2p_addr())).await;
    }
    let want = (n - 1).min(4);
    wait_until(
        Duration::from_secs(90),
        "every bare node is connected and knows enough topic peers",
        || async {
            for (i, b) in nodes.iter().enumerate() {
                let [c, t, _] = bare::ask(b, bare::Cmd::Snapshot).await?;
                if c < planned[i] || t < want {
                    return Ok(false);
                }
            }
            Ok(true)
        },
    )
    .await?;
    let setup_secs = t_setup.elapsed().as_secs_f64();
    eprintln!(
        "  bare {n}: set up in {setup_secs:.1} s ({} edges); settling",
        edges.len()
    );
    let (settle_secs, settled_quiet, settle_cpu) =
        settle(opts.settle_max, || async { Ok(0) }).await?;
    let peers_before = peers_of(&bare_peers(&nodes).await?);
    let idle = idle_cpu(opts.idle_secs).await;
    eprintln!(
        "  bare {n}: settled in {settle_secs:.1} s, connected mean {:.1}, mesh mean {:.1}, idle {idle:.0} ms/s",
        peers_before.connected_mean, peers_before.mesh_mean
    );

    let mut rng = Rng(opts.seed ^ 0xba5e);
    let gs0 = bare_gs_sum(&nodes);
    let cpu0 = process_cpu_ms();
    let t_phase = Instant::now();
    let mut rounds = Vec::new();
    let mut drain_poll_ms = 0.0;
    for (r, p) in plans.iter().enumerate() {
        let round = r as u32;
        let msgs: Vec<Vec<u8>> = (0..n)
            .map(|i| {
                let mut d = Vec::with_capacity(item_bytes);
                d.push(u8::from(!p.sees_a[i]));
                d.extend_from_slice(&round.to_le_bytes());
                d.extend_from_slice(&(i as u32).to_le_bytes());
                while d.len() < item_bytes {
                    d.extend_from_slice(&rng.next().to_le_bytes());
                }
                d.truncate(item_bytes);
                d
            })
            .collect();
        let t0_us = now_us();
        let t0 = Instant::now();
        let res = futures::future::join_all(
            nodes
                .iter()
                .zip(msgs)
                .map(|(b, m)| bare::ask(b, move |tx| bare::Cmd::Publish(m, tx))),
        )
        .await;
        let issue_ms = t0.elapsed().as_secs_f64() * 1e3;
        let unsent = res.into_iter().filter(|r| !matches!(r, Ok(true))).count();
        if unsent > 0 {
            eprintln!("  bare {n}: round {}: {unsent} publishes failed", r + 1);
        }
        let done_at = wait_all(n, opts.round_timeout, opts.poll, |i| {
            let b = &nodes[i];
            async move {
                matches!(
                    bare::ask(b, |tx| bare::Cmd::Detected(round, tx)).await,
                    Ok(Some(_))
                )
            }
        })
        .await;
        let all_done_ms = done_at.duration_since(t0).as_secs_f64() * 1e3;
        let mut detect_ms = Vec::with_capacity(n);
        for b in &nodes {
            let d = bare::ask(b, |tx| bare::Cmd::Detected(round, tx)).await?;
            detect_ms.push(d.map(|d| (d as f64 - t0_us as f64) / 1e3));
        }
        let (quiet_at, spent) =
            drain(opts.round_timeout, || bare_gs_sum(&nodes).recv_unfiltered).await;
        drain_poll_ms += spent;
        let drained_ms = quiet_at.duration_since(t0).as_secs_f64() * 1e3;
        let missing = detect_ms.iter().filter(|d| d.is_none()).count();
        if missing > 0 || r % 5 == 4 {
            eprintln!(
                "  bare {n}: round {} detected everywhere in {all_done_ms:.0} ms, gossip quiet after {drained_ms:.0} ms, {missing} missing",
                r + 1
            );
        }
        rounds.push(RoundOut {
            detect_ms,
            issue_ms,
            all_done_ms,
            drained_ms,
        });
        tokio::time::sleep(opts.pause).await;
    }
    let phase_secs = t_phase.elapsed().as_secs_f64();
    let phase_cpu_ms = process_cpu_ms() - cpu0;
    let gossip = bare_gs_sum(&nodes) - gs0;
    let peers_after = peers_of(&bare_peers(&nodes).await?);
    for b in nodes {
        drop(b.tx);
        let _ = b.task.await;
    }
    Ok(SwarmOut {
        kind: "bare",
        nodes: n,
        setup_secs,
        settle_secs,
        settled_quiet,
        settle_cpu_ms_per_s: settle_cpu,
        peers_before,
        peers_after,
        idle_cpu_ms_per_s: idle,
        phase_secs,
        phase_cpu_ms,
        distinct_messages: plans.len() * n,
        gossip,
        drain_poll_ms,
        rounds,
        loadavg_before,
        loadavg_after: leafnet_tests::benchkit::loadavg(),
    })
}
