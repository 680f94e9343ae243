//! In-process: one cell with more hosts than Kademlia's k (which cuts every GET_PROVIDERS answer
//! to k providers). With the direct path off, a radius query must take the iterative lookup,
//! see its answers reach k, and read the full list from the record holders; with it on, the
//! closest known peers answer directly. Both must find every host.

use std::{
    sync::atomic::{AtomicUsize, Ordering},
    time::Duration,
};

use ed25519_dalek::SigningKey;
use leafnet_geo::{Location, protocol::Filter};
use leafnet_profile::{Kind, Profile};
use leafnet_tests::{settle_routing, shutdown_all, start_mem_swarm_with, wait_until};

const NODES: usize = 26;
const HOSTS: usize = 24;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crowded_cell_is_listed_in_full_by_either_path() -> anyhow::Result<()> {
    let made = AtomicUsize::new(0);
    let nodes = start_mem_swarm_with(NODES, Duration::from_secs(60), |c| {
        c.kad.query_timeout = Duration::from_secs(30);
        c.geo_provider_cache = Duration::ZERO;
        // every other node takes the lookup path, the others the direct one
        c.geo_direct = made.fetch_add(1, Ordering::Relaxed).is_multiple_of(2);
    })
    .await?;
    settle_routing(&nodes, Duration::from_secs(60)).await?;
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis() as u64
        + 3_600_000;
    // One profile per host, all within about 300 m of one point: every cell of the point has
    // HOSTS > k = 20 hosts.
    let mut futs = Vec::new();
    for (i, host) in nodes.iter().take(HOSTS).enumerate() {
        let mut seed = [7u8; 32];
        seed[..8].copy_from_slice(&(i as u64 + 1).to_le_bytes());
        let key = SigningKey::from_bytes(&seed);
        let p = Profile {
            account: key.verifying_key().to_bytes(),
            kind: Kind::Person,
            name: format!("h{i}"),
            location: Some(Location::from_degrees(
                52.52 + i as f64 * 0.0001,
                13.40 + i as f64 * 0.0001,
            )?),
            services: vec![],
            extra: vec![],
            host: host.node.peer_id.to_bytes(),
            host_addrs: vec![serde_bytes::ByteBuf::from(
                host.node.listen_addrs[0].to_vec(),
            )],
            seq: 1,
            expires_at_ms: exp,
        };
        futs.push(host.node.profiles().host(p.seal(&key)));
    }
    for r in futures::future::join_all(futs).await {
        r?;
    }
    wait_until(
        Duration::from_secs(120),
        "all geo announcements finished",
        || async {
            for t in &nodes {
                let s = t.node.status().await?;
                if s.kad_queries_in_flight > 0 || s.announcements_pending > 0 {
                    return Ok(false);
                }
            }
            Ok(true)
        },
    )
    .await?;
    let (mut lookups, mut direct) = (0, 0);
    for (i, from) in nodes.iter().enumerate() {
        let got = from
            .node
            .profiles()
            .profiles_near(52.521, 13.401, 2_000, Filter::default(), 1000)
            .await?;
        anyhow::ensure!(
            got.results.len() == HOSTS,
            "node {i}: {} of {HOSTS} profiles; {} cells, {} lookups, {} providers requests, \
             failed {:?}, saturated {:?}",
            got.results.len(),
            got.cells,
            got.cell_lookups,
            got.provider_requests,
            got.nodes_failed,
            got.cells_saturated
        );
        anyhow::ensure!(got.cells_saturated.is_empty() && got.nodes_failed.is_empty());
        if got.cell_lookups > 0 {
            lookups += 1;
            // the lookup's answers reached k: the holders were asked for the full list
            anyhow::ensure!(got.provider_requests > 0, "node {i}: holders not asked");
        } else {
            direct += 1;
        }
    }
    anyhow::ensure!(
        lookups > 0 && direct > 0,
        "both paths must be exercised: {lookups} lookup, {direct} direct"
    );
    shutdown_all(nodes).await;
    Ok(())
}
