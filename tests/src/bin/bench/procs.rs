//! `start` and `rss`: real `leafnet node run` processes on loopback.
//!
//! Every node listens on `/ip4/127.0.0.1/tcp/0` and `/ip4/127.0.0.1/udp/0/quic-v1`, serves its
//! API on `127.0.0.1:0`, network `local`, `--local true`, in a fresh data dir (so each start is
//! a first run: it creates the key, the database and the API token). The bench talks to a node
//! through `leafnet_node::client::Client` in this process (no CLI process per poll). Every
//! process is a `leafnet_tests::proc::NodeProc` (killed by PID on drop); every data dir is a
//! temp dir removed at the end.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::Context as _;
use leafnet_node::{client::Client, datadir::DataDir, model::Status};
use leafnet_tests::proc::NodeProc;

use crate::{Figure, Section, summarize};

/// How often a starting node is polled.
const POLL: Duration = Duration::from_millis(2);

fn node_args(bootstrap: Option<&str>) -> Vec<String> {
    let mut a: Vec<String> = [
        "--listen",
        "/ip4/127.0.0.1/tcp/0",
        "--listen",
        "/ip4/127.0.0.1/udp/0/quic-v1",
        "--api",
        "127.0.0.1:0",
        "--network",
        "local",
        "--local",
        "true",
    ]
    .map(str::to_owned)
    .to_vec();
    if let Some(b) = bootstrap {
        a.push("--bootstrap".into());
        a.push(b.into());
    }
    a
}

fn spawn(bin: &Path, dir: &Path, args: &[String]) -> anyhow::Result<NodeProc> {
    NodeProc::spawn_with(bin, dir, args)
}

/// Asks a node for its status through the control API, once its `api.addr` exists.
struct Poller {
    dd: DataDir,
    client: Option<Client>,
}

impl Poller {
    fn new(dir: &Path) -> Self {
        Self {
            dd: DataDir::new(dir),
            client: None,
        }
    }

    async fn status(&mut self) -> Option<Status> {
        if self.client.is_none() {
            // Only once the node wrote a parsable api.addr (else the client falls back to the
            // default API port, which is not this node's).
            let addr = std::fs::read_to_string(self.dd.api_addr()).ok()?;
            addr.trim().parse::<std::net::SocketAddr>().ok()?;
            self.client = Client::for_data_dir(&self.dd).ok();
        }
        let c = self.client.as_ref()?;
        tokio::time::timeout(Duration::from_secs(2), c.status())
            .await
            .ok()?
            .ok()
    }
}

/// Polls until the node answers with a non-empty `listen_addrs`; returns the status.
async fn wait_listening(p: &mut NodeProc, timeout: Duration) -> anyhow::Result<Status> {
    let deadline = Instant::now() + timeout;
    let mut poll = Poller::new(&p.dir);
    loop {
        if let Some(st) = p.child.try_wait()? {
            anyhow::bail!("node exited with {st}: {}", p.log());
        }
        if let Some(s) = poll.status().await
            && !s.listen_addrs.is_empty()
        {
            return Ok(s);
        }
        if Instant::now() >= deadline {
            anyhow::bail!("node not listening after {timeout:?}: {}", p.log());
        }
        tokio::time::sleep(POLL).await;
    }
}

/// `<listen addr>/p2p/<peer id>` of a running node: its first QUIC address (`tcp`: its first
/// TCP address), else its first listen address.
fn bootstrap_addr(s: &Status, tcp: bool) -> String {
    let a = s
        .listen_addrs
        .iter()
        .find(|a| {
            if tcp {
                a.contains("/tcp/") && !a.contains("/ws")
            } else {
                a.contains("/quic-v1")
            }
        })
        .unwrap_or(&s.listen_addrs[0]);
    format!("{a}/p2p/{}", s.peer_id)
}

fn stop(p: &mut NodeProc) -> f64 {
    let t = Instant::now();
    tokio::task::block_in_place(|| p.stop());
    t.elapsed().as_secs_f64() * 1000.0
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1000.0
}

/// Spawn-to-exit of `leafnet --version`.
async fn version_once(bin: &Path) -> anyhow::Result<f64> {
    let t = Instant::now();
    let st = tokio::process::Command::new(bin)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await?;
    let d = ms(t);
    anyhow::ensure!(st.success(), "leafnet --version failed: {st}");
    Ok(d)
}

/// One cold start to listening, then a warm start (same data dir) to listening; returns
/// (cold ms, ms to stop, warm ms).
async fn listen_once(bin: &Path, dir: &Path) -> anyhow::Result<(f64, f64, f64)> {
    let t = Instant::now();
    let mut p = spawn(bin, dir, &node_args(None))?;
    wait_listening(&mut p, Duration::from_secs(20)).await?;
    let cold = ms(t);
    let s = stop(&mut p);
    drop(p);
    let t = Instant::now();
    let mut p = spawn(bin, dir, &node_args(None))?;
    wait_listening(&mut p, Duration::from_secs(20)).await?;
    let warm = ms(t);
    stop(&mut p);
    Ok((cold, s, warm))
}

#[derive(Debug, Default, Clone, Copy)]
struct BootTimes {
    listening: f64,
    routing_table: f64,
    connected: f64,
    kad_bootstrapped: f64,
}

/// One cold start of a node bootstrapping from a fresh, already-running node 0.
async fn bootstrap_once(bin: &Path, dir: &Path, tcp: bool) -> anyhow::Result<BootTimes> {
    let mut n0 = spawn(bin, &dir.join("node0"), &node_args(None))?;
    let s0 = wait_listening(&mut n0, Duration::from_secs(20)).await?;
    let boot = bootstrap_addr(&s0, tcp);
    let nd = dir.join("node1");
    let t = Instant::now();
    let mut p = spawn(bin, &nd, &node_args(Some(&boot)))?;
    let mut poll = Poller::new(&nd);
    let mut bt = BootTimes {
        listening: f64::NAN,
        routing_table: f64::NAN,
        connected: f64::NAN,
        kad_bootstrapped: f64::NAN,
    };
    let deadline = t + Duration::from_secs(15);
    loop {
        if let Some(st) = p.child.try_wait()? {
            anyhow::bail!("node exited with {st}: {}", p.log());
        }
        if let Some(s) = poll.status().await {
            let now = ms(t);
            if bt.listening.is_nan() && !s.listen_addrs.is_empty() {
                bt.listening = now;
            }
            if bt.routing_table.is_nan() && s.routing_table_size >= 1 {
                bt.routing_table = now;
            }
            if bt.connected.is_nan() && s.routing_table_size >= 1 && s.connected_peers >= 1 {
                bt.connected = now;
            }
        }
        if bt.kad_bootstrapped.is_nan() && p.log().contains("bootstrapped") {
            bt.kad_bootstrapped = ms(t);
        }
        if !bt.connected.is_nan() && !bt.kad_bootstrapped.is_nan() {
            break;
        }
        if Instant::now() >= deadline {
            if bt.connected.is_nan() {
                anyhow::bail!("node not bootstrapped after 15 s: {}", p.log());
            }
            break; // connected, but no "bootstrapped" log line: reported as missing
        }
        tokio::time::sleep(POLL).await;
    }
    stop(&mut p);
    stop(&mut n0);
    Ok(bt)
}

pub async fn start(bin: &Path, reps: usize) -> anyhow::Result<Section> {
    anyhow::ensure!(bin.exists(), "no leafnet binary at {}", bin.display());
    let base = tempfile::tempdir()?;
    let version = String::from_utf8_lossy(&Command::new(bin).arg("--version").output()?.stdout)
        .trim()
        .to_owned();
    eprintln!("start: {version} at {}", bin.display());

    // Baseline: process start cost. One unmeasured run first (page cache).
    version_once(bin).await?;
    let mut ver = Vec::new();
    for _ in 0..reps {
        ver.push(version_once(bin).await?);
    }

    let mut listen = Vec::new();
    let mut stops = Vec::new();
    let mut warm = Vec::new();
    for i in 0..=reps {
        let (d, s, w) = listen_once(bin, &base.path().join(format!("listen-{i}"))).await?;
        if i > 0 {
            // run 0 is the warm-up
            listen.push(d);
            stops.push(s);
            warm.push(w);
        }
    }

    // Bootstrapping over QUIC (leafnet's preferred transport), then over TCP.
    let mut by_transport = Vec::new();
    for tcp in [false, true] {
        let name = if tcp { "tcp" } else { "quic" };
        let mut boots = Vec::new();
        for i in 0..=reps {
            let dir = base.path().join(format!("boot-{name}-{i}"));
            let b = bootstrap_once(bin, &dir, tcp).await?;
            eprintln!("start: bootstrap over {name}, run {i}: {b:?}");
            if i > 0 {
                boots.push(b);
            }
        }
        by_transport.push((name, boots));
    }
    let ver_s = summarize(&ver);
    let listen_s = summarize(&listen);
    let boot_details = |boots: &[BootTimes]| {
        let col = |f: fn(&BootTimes) -> f64| -> Vec<f64> {
            boots.iter().map(f).filter(|v| !v.is_nan()).collect()
        };
        serde_json::json!({
            "listening_ms": summarize(&col(|b| b.listening)),
            "routing_table_ge_1_ms": summarize(&col(|b| b.routing_table)),
            "routing_table_ge_1_and_connected_ms": summarize(&col(|b| b.connected)),
            "kad_bootstrapped_log_ms": summarize(&col(|b| b.kad_bootstrapped)),
            "kad_bootstrapped_missing": boots.iter().filter(|b| b.kad_bootstrapped.is_nan()).count(),
            "samples": boots.iter().map(|b| serde_json::json!({
                "listening": b.listening, "routing_table": b.routing_table,
                "connected": b.connected, "kad_bootstrapped": b.kad_bootstrapped,
            })).collect::<Vec<_>>(),
        })
    };
    let conn =
        |boots: &[BootTimes]| summarize(&boots.iter().map(|b| b.connected).collect::<Vec<_>>());
    let kad = |boots: &[BootTimes]| {
        summarize(
            &boots
                .iter()
                .map(|b| b.kad_bootstrapped)
                .filter(|v| !v.is_nan())
                .collect::<Vec<_>>(),
        )
    };
    let (quic_b, tcp_b) = (&by_transport[0].1, &by_transport[1].1);

    let sec = "start";
    let figures = vec![
        Figure::new(sec, "cold start -> listening p50", "ms", listen_s.p50)
            .baseline("`leafnet --version` p50", ver_s.p50),
        Figure::new(sec, "cold start -> listening p99", "ms", listen_s.p99)
            .baseline("`leafnet --version` p99", ver_s.p99),
        Figure::new(
            sec,
            "warm start (existing dir) -> listening p50",
            "ms",
            summarize(&warm).p50,
        )
        .baseline("`leafnet --version` p50", ver_s.p50),
        Figure::new(
            sec,
            "cold start -> bootstrapped (QUIC) p50",
            "ms",
            conn(quic_b).p50,
        )
        .baseline("`leafnet --version` p50", ver_s.p50),
        Figure::new(
            sec,
            "cold start -> bootstrapped (QUIC) p99",
            "ms",
            conn(quic_b).p99,
        )
        .baseline("`leafnet --version` p99", ver_s.p99),
        Figure::new(
            sec,
            "cold start -> bootstrapped (TCP) p50",
            "ms",
            conn(tcp_b).p50,
        )
        .baseline("`leafnet --version` p50", ver_s.p50),
        Figure::new(
            sec,
            "cold start -> bootstrapped (TCP) p99",
            "ms",
            conn(tcp_b).p99,
        )
        .baseline("`leafnet --version` p99", ver_s.p99),
        Figure::new(
            sec,
            "cold start -> kad bootstrap done (QUIC) p50",
            "ms",
            kad(quic_b).p50,
        )
        .baseline("`leafnet --version` p50", ver_s.p50),
    ];
    Ok(Section {
        figures,
        details: serde_json::json!({
            "binary": bin.display().to_string(),
            "binary_version": version,
            "reps": reps,
            "warmup_runs": 1,
            "poll_ms": POLL.as_secs_f64() * 1000.0,
            "version_spawn_to_exit_ms": ver_s,
            "version_samples_ms": ver,
            "listening_ms": listen_s,
            "listening_samples_ms": listen,
            "graceful_stop_ms": summarize(&stops),
            "warm_start_listening_ms": summarize(&warm),
            "warm_start_listening_samples_ms": warm,
            "bootstrap_runs": {
                "quic": boot_details(quic_b),
                "tcp": boot_details(tcp_b),
            },
            "definitions": {
                "listening": "spawn until the control API answers status with non-empty listen_addrs",
                "bootstrapped": "spawn until status shows routing_table_size >= 1 AND connected_peers >= 1 (node 0 is a fresh, already-running node; its QUIC or its TCP address is the only bootstrap address)",
                "routing_table_ge_1": "spawn until routing_table_size >= 1 alone (note: the node seeds its routing table with the bootstrap peer before connecting)",
                "kad_bootstrapped_log": "spawn until the node logs 'bootstrapped' (its first Kademlia bootstrap query finished), polled from its log file",
            },
        }),
    })
}

/// VmRSS and VmHWM of a process, in KiB.
fn rss_kib(pid: u32) -> Option<(u64, u64)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        s.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

const SINGLE_REPS: usize = 3;

pub async fn rss(bin: &Path, n: usize, tcp: bool) -> anyhow::Result<Section> {
    anyhow::ensure!(bin.exists(), "no leafnet binary at {}", bin.display());
    anyhow::ensure!(n >= 2, "need at least 2 nodes");
    let base = tempfile::tempdir()?;

    // One node alone, settled 3 s; three separate processes.
    let mut single = Vec::new();
    let mut single_hwm = Vec::new();
    for i in 0..SINGLE_REPS {
        let mut p = spawn(
            bin,
            &base.path().join(format!("single-{i}")),
            &node_args(None),
        )?;
        wait_listening(&mut p, Duration::from_secs(20)).await?;
        tokio::time::sleep(Duration::from_secs(3)).await;
        let (rss, hwm) = rss_kib(p.child.id()).context("cannot read /proc/PID/status")?;
        single.push(rss as f64 / 1024.0);
        single_hwm.push(hwm as f64 / 1024.0);
        stop(&mut p);
    }
    let single_s = summarize(&single);
    eprintln!("rss: single node {single:?} MiB");

    // node 0 + (n-1) bootstrapping from it.
    let mut procs: Vec<NodeProc> = Vec::with_capacity(n);
    let dirs: Vec<PathBuf> = (0..n)
        .map(|i| base.path().join(format!("swarm-{i}")))
        .collect();
    let t = Instant::now();
    let mut n0 = spawn(bin, &dirs[0], &node_args(None))?;
    let s0 = wait_listening(&mut n0, Duration::from_secs(20)).await?;
    let boot = bootstrap_addr(&s0, tcp);
    procs.push(n0);
    for d in &dirs[1..] {
        procs.push(spawn(bin, d, &node_args(Some(&boot)))?);
    }
    let mut polls: Vec<Poller> = dirs.iter().map(|d| Poller::new(d)).collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut all = true;
        for (i, p) in procs.iter_mut().enumerate() {
            if let Some(st) = p.child.try_wait()? {
                anyhow::bail!("swarm node {i} exited with {st}: {}", p.log());
            }
            let ok = polls[i]
                .status()
                .await
                .is_some_and(|s| s.routing_table_size >= 1 && s.connected_peers >= 1);
            all &= ok;
        }
        if all {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the {n}-node swarm did not bootstrap within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let up = ms(t);
    eprintln!("rss: {n}-node swarm bootstrapped in {up:.0} ms; settling 5 s");
    tokio::time::sleep(Duration::from_secs(5)).await;
    let mut rss = Vec::new();
    let mut hwm = Vec::new();
    let mut peers = Vec::new();
    let mut rts = Vec::new();
    for (i, p) in procs.iter().enumerate() {
        let (r, h) = rss_kib(p.child.id()).context("cannot read /proc/PID/status")?;
        rss.push(r as f64 / 1024.0);
        hwm.push(h as f64 / 1024.0);
        if let Some(s) = polls[i].status().await {
            peers.push(s.connected_peers);
            rts.push(s.routing_table_size);
        }
    }
    for p in &mut procs {
        let pid = p.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
    }
    for p in &mut procs {
        stop(p);
    }
    drop(procs);
    let swarm_s = summarize(&rss);
    let sec = "rss";
    let figures = vec![
        Figure::new(
            sec,
            "idle RSS, single node (median of 3)",
            "MiB",
            single_s.p50,
        ),
        Figure::new(
            sec,
            format!("RSS per node, {n}-node swarm, mean"),
            "MiB",
            swarm_s.mean,
        )
        .baseline("single node", single_s.p50),
        Figure::new(
            sec,
            format!("RSS per node, {n}-node swarm, max"),
            "MiB",
            swarm_s.max,
        )
        .baseline("single node", single_s.p50),
    ];
    Ok(Section {
        figures,
        details: serde_json::json!({
            "single_settle_secs": 3,
            "single_rss_mib": single,
            "single_hwm_mib": single_hwm,
            "swarm_nodes": n,
            "bootstrap_transport": if tcp { "tcp" } else { "quic" },
            "swarm_bootstrapped_ms": up,
            "swarm_settle_secs": 5,
            "swarm_rss_mib": swarm_s,
            "swarm_rss_samples_mib": rss,
            "swarm_hwm_mib": summarize(&hwm),
            "swarm_node0_rss_mib": rss.first(),
            "swarm_connected_peers": peers,
            "swarm_routing_table_sizes": rts,
        }),
    })
}
