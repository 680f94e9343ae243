//! Part 1: relay choice. One set of relay nodes (memory transport, no bootstrap, so they do not
//! know each other and a private node's candidates are exactly its bootstrap list); per run a
//! random subset of 4..=8 of them gets random true RTTs (log-uniform), and a fresh private node
//! (`relay.reachability = private`, default `pings_per_probe` = 3) bootstraps from that subset
//! with the RTTs injected on its memory transport (`transport::delay`).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use leafnet_node::transport::delay::Latency;
use leafnet_tests::{TestNode, mem_config, start_mem_node, start_mem_node_delayed};
use libp2p::{Multiaddr, identity::Keypair};
use serde::Serialize;

use crate::Rng;

type Table = leafnet_node::transport::delay::LatencyTable;

fn latency(table: &Table) -> Latency {
    Latency::table(table.clone())
}

/// One run of the private node.
#[derive(Debug, Clone, Serialize)]
pub struct Run {
    pub run: usize,
    /// True RTT of each candidate (ms), by relay index.
    pub candidates: Vec<(usize, f64)>,
    pub max_rtt_ms: f64,
    /// Relay indices of the two active reservations, best first (by true RTT).
    pub chosen: Vec<usize>,
    /// Best chosen true RTT / best candidate true RTT.
    pub ratio_best: f64,
    /// Second chosen true RTT / second-best candidate true RTT.
    pub ratio_second: f64,
    /// From the `Node::start` call until `leafnet relays` first lists a chosen relay (the
    /// selector's first choice; the reservation may still be in flight).
    pub chosen_ms: f64,
    /// ... until the first active reservation.
    pub first_active_ms: f64,
    /// ... until both reservations are active.
    pub both_active_ms: f64,
    /// The node's own probe medians (ms), by relay index, at the end of the run.
    pub probe_median_ms: Vec<(usize, Option<f64>)>,
    /// Candidates the node knew that were not in the run's subset (should be 0).
    pub foreign_candidates: usize,
    pub error: Option<String>,
}

pub struct Relays {
    pub nodes: Vec<TestNode>,
    table: Table,
}

pub async fn start(n: usize) -> anyhow::Result<Relays> {
    let mut nodes = Vec::new();
    for _ in 0..n {
        nodes.push(start_mem_node(&[]).await?);
    }
    Ok(Relays {
        nodes,
        table: Arc::new(Mutex::new(HashMap::new())),
    })
}

fn log_uniform(rng: &mut Rng, lo: f64, hi: f64) -> f64 {
    (lo.ln() + rng.unit() * (hi.ln() - lo.ln())).exp()
}

pub async fn run_one(
    relays: &Relays,
    run: usize,
    rng: &mut Rng,
    timeout: Duration,
) -> anyhow::Result<Run> {
    let total = relays.nodes.len();
    let n = 4 + rng.below(total.min(8) - 3);
    let mut idx: Vec<usize> = (0..total).collect();
    for i in (1..idx.len()).rev() {
        idx.swap(i, rng.below(i + 1));
    }
    idx.truncate(n);
    let candidates: Vec<(usize, f64)> = idx
        .iter()
        .map(|&i| {
            let ms = log_uniform(rng, 1.0, 200.0);
            (i, (ms * 1000.0).round() / 1000.0)
        })
        .collect();
    {
        let mut t = relays
            .table
            .lock()
            .map_err(|_| anyhow::anyhow!("poisoned"))?;
        t.clear();
        for &(i, ms) in &candidates {
            t.insert(
                relays.nodes[i].node.listen_addrs[0].clone(),
                Duration::from_secs_f64(ms / 2000.0),
            );
        }
    }
    let rtt_of: HashMap<String, (usize, f64)> = candidates
        .iter()
        .map(|&(i, ms)| (relays.nodes[i].node.peer_id.to_string(), (i, ms)))
        .collect();
    let max_rtt_ms = candidates.iter().map(|c| c.1).fold(0.0, f64::max);
    let boot: Vec<Multiaddr> = candidates
        .iter()
        .map(|&(i, _)| relays.nodes[i].addr())
        .collect();
    let mut c = mem_config(&boot);
    c.reachability = leafnet_config::Reachability::Private;

    let t0 = Instant::now();
    let p = start_mem_node_delayed(
        c,
        Keypair::generate_ed25519(),
        tempfile::tempdir()?,
        Some(latency(&relays.table)),
    )
    .await?;
    let (mut chosen_ms, mut first_ms, mut both_ms) = (None, None, None);
    let mut error = None;
    let r = loop {
        let r = p.node.relays().await?;
        let ms = t0.elapsed().as_secs_f64() * 1000.0;
        if chosen_ms.is_none() && r.candidates.iter().any(|c| c.chosen) {
            chosen_ms = Some(ms);
        }
        let active = r
            .candidates
            .iter()
            .filter(|c| c.chosen && c.state == "active")
            .count();
        if first_ms.is_none() && active >= 1 {
            first_ms = Some(ms);
        }
        if active >= 2 {
            both_ms = Some(ms);
            break r;
        }
        if t0.elapsed() > timeout {
            error = Some(format!(
                "no two active reservations after {timeout:?}: {r:?}"
            ));
            break r;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    p.node.shutdown().await;

    let mut chosen: Vec<(usize, f64)> = r
        .candidates
        .iter()
        .filter(|c| c.chosen && c.state == "active")
        .filter_map(|c| rtt_of.get(&c.peer_id).copied())
        .collect();
    chosen.sort_by(|a, b| a.1.total_cmp(&b.1));
    let mut sorted: Vec<f64> = candidates.iter().map(|c| c.1).collect();
    sorted.sort_by(f64::total_cmp);
    let ratio = |k: usize| match (chosen.get(k), sorted.get(k)) {
        (Some(c), Some(b)) => c.1 / b,
        _ => f64::NAN,
    };
    let foreign = r
        .candidates
        .iter()
        .filter(|c| !rtt_of.contains_key(&c.peer_id))
        .count();
    let probe_median_ms = r
        .candidates
        .iter()
        .filter_map(|c| rtt_of.get(&c.peer_id).map(|(i, _)| (*i, c.median_ms)))
        .collect();
    if error.is_none() && foreign > 0 {
        error = Some(format!("{foreign} candidates outside the run's subset"));
    }
    Ok(Run {
        run,
        candidates,
        max_rtt_ms,
        ratio_best: ratio(0),
        ratio_second: ratio(1),
        chosen: chosen.iter().map(|c| c.0).collect(),
        chosen_ms: chosen_ms.unwrap_or(f64::NAN),
        first_active_ms: first_ms.unwrap_or(f64::NAN),
        both_active_ms: both_ms.unwrap_or(f64::NAN),
        probe_median_ms,
        foreign_candidates: foreign,
        error,
    })
}
