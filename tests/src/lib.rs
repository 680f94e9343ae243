//! Test and benchmark helpers: in-process nodes over the memory transport, and real `leafnet`
//! processes on loopback.
//!
//! - [`mem_config`] / [`start_mem_node`] / [`start_mem_swarm`]: full leafnet nodes (the real
//!   `leafnet_node::Node`, redb store and all) in this process, each with its own temp dir;
//! - [`proc`]: spawning the `leafnet` binary, talking to it through its CLI, killing it by PID.
//!
//! The tests themselves are in `tests/tests/*.rs`; the benchmark program in `src/bin/bench.rs`.

pub mod benchkit;
pub mod proc;

use std::time::{Duration, Instant};

use anyhow::Context as _;
use leafnet_config::{Config, Overrides, Valid};
use leafnet_node::{Node, NodeOptions};
use libp2p::{Multiaddr, identity::Keypair, multiaddr::Protocol};

/// A validated config for an in-process node on the memory transport, network `local`, with
/// Kademlia settings for small, fast test networks.
pub fn mem_config(bootstrap: &[Multiaddr]) -> Valid {
    let mut c = Config::default();
    let mut o = Overrides::default();
    o.network = Some("local".into());
    o.local = Some(true);
    o.transports = vec!["memory".into()];
    o.listen = vec!["/memory/0".into()];
    o.bootstrap = bootstrap.iter().map(ToString::to_string).collect();
    o.api = Some("127.0.0.1:0".into());
    c.apply(&o);
    c.kad.query_timeout = Duration::from_secs(10);
    c.kad.bootstrap_interval = Duration::from_secs(30);
    c.p2p.max_connections = 1024;
    c.validate().expect("test config is valid")
}

/// An in-process node and the temp dir holding its database.
#[derive(Debug)]
pub struct TestNode {
    pub node: Node,
    pub keypair: Keypair,
    pub dir: tempfile::TempDir,
}

impl TestNode {
    /// This node's first listen address with `/p2p/<id>` appended.
    pub fn addr(&self) -> Multiaddr {
        self.node.listen_addrs[0]
            .clone()
            .with(Protocol::P2p(self.node.peer_id))
    }
}

/// Starts one in-process node with its own temp dir; `keypair` and `dir` allow a restart.
pub async fn start_mem_node_with(
    config: Valid,
    keypair: Keypair,
    dir: tempfile::TempDir,
) -> anyhow::Result<TestNode> {
    start_mem_node_delayed(config, keypair, dir, None).await
}

/// [`start_mem_node_with`] whose memory transport delays every byte by `latency`'s one-way
/// delay for the remote address (see `leafnet_node::transport::delay`).
pub async fn start_mem_node_delayed(
    config: Valid,
    keypair: Keypair,
    dir: tempfile::TempDir,
    latency: Option<leafnet_node::transport::delay::Latency>,
) -> anyhow::Result<TestNode> {
    // The account key lives in the temp dir, as in a real data dir, so a restart keeps it.
    let account = leafnet_node::datadir::DataDir::new(dir.path()).load_or_create_account()?;
    let node = Node::start(NodeOptions {
        config,
        keypair: keypair.clone(),
        account,
        db_path: dir.path().join("leafnet.redb"),
        api: None,
        latency,
    })
    .await?;
    Ok(TestNode { node, keypair, dir })
}

/// Starts one in-process node bootstrapping from `bootstrap`.
pub async fn start_mem_node(bootstrap: &[Multiaddr]) -> anyhow::Result<TestNode> {
    start_mem_node_with(
        mem_config(bootstrap),
        Keypair::generate_ed25519(),
        tempfile::tempdir()?,
    )
    .await
}

/// Starts `n` nodes: node 0 first, every other one bootstrapping from it. Returns once every
/// node has a non-empty routing table, or fails after `timeout`.
pub async fn start_mem_swarm(n: usize, timeout: Duration) -> anyhow::Result<Vec<TestNode>> {
    start_mem_swarm_with(n, timeout, |_| {}).await
}

/// [`start_mem_swarm`] with every node's config adjusted by `tweak` (e.g. a smaller Kademlia
/// replication factor, as rust-libp2p's own Kademlia tests use for small networks).
pub async fn start_mem_swarm_with(
    n: usize,
    timeout: Duration,
    tweak: impl Fn(&mut Valid),
) -> anyhow::Result<Vec<TestNode>> {
    let cfg = |boot: &[Multiaddr]| {
        let mut c = mem_config(boot);
        tweak(&mut c);
        c
    };
    let first =
        start_mem_node_with(cfg(&[]), Keypair::generate_ed25519(), tempfile::tempdir()?).await?;
    let boot = first.addr();
    let mut nodes = vec![first];
    for _ in 1..n {
        let c = cfg(std::slice::from_ref(&boot));
        nodes
            .push(start_mem_node_with(c, Keypair::generate_ed25519(), tempfile::tempdir()?).await?);
    }
    // A node lists its bootstrap peer in its routing table before it connected, so wait for a
    // connection as well.
    wait_until(
        timeout,
        "every node is connected with a non-empty routing table",
        || async {
            for t in &nodes {
                let s = t.node.status().await?;
                if s.routing_table_size == 0 || s.connected_peers == 0 {
                    return Ok(false);
                }
            }
            Ok(true)
        },
    )
    .await?;
    Ok(nodes)
}

/// How many entries `me`'s Kademlia routing table can hold when every node of `all` is known:
/// each k-bucket (peers at the same XOR distance class) is capped at 20 entries, so in a small
/// network one node may legitimately know fewer than all others.
pub fn full_routing_table(me: &libp2p::PeerId, all: &[libp2p::PeerId]) -> usize {
    use libp2p::kad::KBucketKey;
    let me = KBucketKey::from(*me);
    let mut per_bucket = std::collections::BTreeMap::<u32, usize>::new();
    for p in all {
        if let Some(i) = me.distance(&KBucketKey::from(*p)).ilog2() {
            *per_bucket.entry(i).or_default() += 1;
        }
    }
    per_bucket.values().map(|n| (*n).min(20)).sum()
}

/// Starts `n` in-process nodes whose accounts are the leaf genesis members of their network
/// (`genesis` of them; the others are plain accounts), with `tweak` applied to every config;
/// every node publishes its profile (so payers find it) and the routing tables are settled.
pub async fn start_leaf_swarm(
    n: usize,
    genesis: usize,
    timeout: Duration,
    tweak: impl Fn(&mut Valid),
) -> anyhow::Result<Vec<TestNode>> {
    let mut dirs = Vec::new();
    let mut accounts = Vec::new();
    for _ in 0..n {
        let d = tempfile::tempdir()?;
        let a = leafnet_node::datadir::DataDir::new(d.path()).load_or_create_account()?;
        accounts.push(a.verifying_key().to_bytes());
        dirs.push(d);
    }
    let mut g: Vec<[u8; 32]> = accounts.iter().take(genesis).copied().collect();
    g.sort_unstable();
    let cfg = |boot: &[Multiaddr]| {
        let mut c = mem_config(boot);
        c.leaf.genesis = g.clone();
        tweak(&mut c);
        c
    };
    let mut nodes: Vec<TestNode> = Vec::new();
    for d in dirs {
        let boot: Vec<Multiaddr> = nodes.first().map(|f| f.addr()).into_iter().collect();
        nodes.push(start_mem_node_with(cfg(&boot), Keypair::generate_ed25519(), d).await?);
    }
    settle_routing(&nodes, timeout).await?;
    for (i, t) in nodes.iter().enumerate() {
        t.node
            .profiles()
            .set_profile(leafnet_node::model::SetProfile {
                name: format!("node{i}"),
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

/// Makes every node of `nodes` dial every other one, then waits until each routing table holds
/// every peer it has room for ([`full_routing_table`]): the state of a settled network, reached
/// at once instead of after several bootstrap rounds (which a slow CI machine may not finish).
pub async fn settle_routing(nodes: &[TestNode], timeout: Duration) -> anyhow::Result<()> {
    let ids: Vec<_> = nodes.iter().map(|t| t.node.peer_id).collect();
    for (i, a) in nodes.iter().enumerate() {
        for b in &nodes[i + 1..] {
            // Already connected is fine (the dial condition refuses it); the wait below is
            // what checks the outcome.
            let _ = a.node.dial(b.addr()).await;
        }
    }
    wait_until(timeout, "routing tables complete", || async {
        for t in nodes {
            let want = full_routing_table(&t.node.peer_id, &ids);
            if t.node.status().await?.routing_table_size < want {
                return Ok(false);
            }
        }
        Ok(true)
    })
    .await
}

/// Polls `cond` every 50 ms until it holds, failing with `what` after `timeout`.
pub async fn wait_until<F, Fut>(timeout: Duration, what: &str, mut cond: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<bool>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if cond().await.context(what.to_owned())? {
            return Ok(());
        }
        if Instant::now() >= deadline {
            anyhow::bail!("timed out after {timeout:?} waiting until {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Shuts every node down (flushing their databases).
pub async fn shutdown_all(nodes: Vec<TestNode>) {
    futures::future::join_all(nodes.into_iter().map(|t| t.node.shutdown())).await;
}

/// Percentile (0–100) of sorted samples, nearest-rank.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// A bare rust-libp2p memory transport (noise + yamux, no leafnet code): what the adversarial
/// tests' raw peers speak.
pub fn raw_memory_transport(
    key: &Keypair,
) -> Result<
    libp2p::core::transport::Boxed<(libp2p::PeerId, libp2p::core::muxing::StreamMuxerBox)>,
    Box<dyn std::error::Error + Send + Sync>,
> {
    use libp2p::Transport as _;
    Ok(libp2p::core::transport::MemoryTransport::default()
        .upgrade(libp2p::core::upgrade::Version::V1)
        .authenticate(libp2p::noise::Config::new(key)?)
        .multiplex(libp2p::yamux::Config::default())
        .map(|(p, c), _| (p, libp2p::core::muxing::StreamMuxerBox::new(c)))
        .boxed())
}

/// Wall-clock unix milliseconds.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
