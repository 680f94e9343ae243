//! In-process, with injected latency: a private node with 4 relay candidates at 5, 20, 60 and
//! 150 ms RTT reserves on the two lowest-RTT relays, in each of 20 runs (a fresh private node
//! each run); when the latencies change it moves within a bounded time (30 s; measured about
//! 1.5 s with a 2 s probe interval); latencies wandering within ±10% cause no switch; a relay
//! that dies is replaced by the next best (30 s bound; measured well under 1 s).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use leafnet_node::transport::delay::Latency;
use leafnet_tests::{
    TestNode, mem_config, shutdown_all, start_mem_node, start_mem_node_delayed, wait_until,
};
use libp2p::identity::Keypair;

type Table = leafnet_node::transport::delay::LatencyTable;

fn latency(table: &Table) -> Latency {
    Latency::table(table.clone())
}

async fn private_node(relays: &[TestNode], table: &Table) -> anyhow::Result<TestNode> {
    let mut c = mem_config(&relays.iter().map(TestNode::addr).collect::<Vec<_>>());
    c.reachability = leafnet_config::Reachability::Private;
    c.relay.probe_interval = Duration::from_secs(2);
    start_mem_node_delayed(
        c,
        Keypair::generate_ed25519(),
        tempfile::tempdir()?,
        Some(latency(table)),
    )
    .await
}

/// The active reservations of `t`, by relay peer id.
async fn active(t: &TestNode) -> anyhow::Result<Vec<String>> {
    let r = t.node.relays().await?;
    let mut v: Vec<String> = r
        .candidates
        .iter()
        .filter(|c| c.chosen && c.state == "active")
        .map(|c| c.peer_id.clone())
        .collect();
    v.sort();
    Ok(v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_node_reserves_on_the_lowest_rtt_relays() -> anyhow::Result<()> {
    let mut relays = vec![start_mem_node(&[]).await?];
    for _ in 1..4 {
        relays.push(start_mem_node(&[relays[0].addr()]).await?);
    }
    let rtts = [5u64, 20, 60, 150];
    let table: Table = Arc::new(Mutex::new(HashMap::new()));
    for (r, ms) in relays.iter().zip(rtts) {
        table.lock().unwrap().insert(
            r.node.listen_addrs[0].clone(),
            Duration::from_millis(ms) / 2,
        );
    }
    let best: Vec<String> = {
        let mut v = vec![
            relays[0].node.peer_id.to_string(),
            relays[1].node.peer_id.to_string(),
        ];
        v.sort();
        v
    };
    for run in 0..20 {
        let p = private_node(&relays, &table).await?;
        wait_until(
            Duration::from_secs(20),
            "two active reservations",
            || async { Ok(active(&p).await?.len() == 2) },
        )
        .await?;
        let got = active(&p).await?;
        anyhow::ensure!(got == best, "run {run}: reserved on {got:?}, want {best:?}");
        let r = p.node.relays().await?;
        anyhow::ensure!(r.reachability == "private");
        anyhow::ensure!(r.circuit_addrs.len() == 2, "{r:?}");
        if run == 0 {
            // The owner's profile tells how to reach its host: through the relays.
            let published = p
                .node
                .profiles()
                .set_profile(leafnet_node::model::SetProfile {
                    name: "behind-nat".into(),
                    kind: None,
                    location: None,
                    services: vec![],
                    extra: vec![],
                })
                .await?;
            let addrs = &published.profile.host_addrs;
            anyhow::ensure!(
                addrs.iter().any(|a| a.contains("/p2p-circuit")),
                "no circuit address in the profile: {addrs:?}"
            );
        }
        p.node.shutdown().await;
    }

    // Latencies change: the 5 ms relay becomes 200 ms and the 150 ms one becomes 10 ms. The
    // node moves to the new best two within a bounded time.
    let p = private_node(&relays, &table).await?;
    wait_until(
        Duration::from_secs(20),
        "two active reservations",
        || async { Ok(active(&p).await?.len() == 2) },
    )
    .await?;
    {
        let mut t = table.lock().unwrap();
        t.insert(
            relays[0].node.listen_addrs[0].clone(),
            Duration::from_millis(100),
        );
        t.insert(
            relays[3].node.listen_addrs[0].clone(),
            Duration::from_millis(5),
        );
    }
    let moved = Instant::now();
    let want: Vec<String> = {
        let mut v = vec![
            relays[1].node.peer_id.to_string(),
            relays[3].node.peer_id.to_string(),
        ];
        v.sort();
        v
    };
    wait_until(
        Duration::from_secs(30),
        "moved to the new best relays",
        || async { Ok(active(&p).await? == want) },
    )
    .await?;
    let took = moved.elapsed();

    // Latencies that wander within the hysteresis band (±10%) for several probe rounds (2 s
    // each) cause no switch.
    let base_rtt = [100u64, 10, 30, 5];
    for step in 0..8u64 {
        {
            let mut t = table.lock().unwrap();
            for (i, r) in relays.iter().enumerate() {
                let f = if (step + i as u64).is_multiple_of(2) {
                    110
                } else {
                    90
                };
                let one_way = Duration::from_micros(base_rtt[i] * 1000 * f / 100);
                t.insert(r.node.listen_addrs[0].clone(), one_way);
            }
        }
        tokio::time::sleep(Duration::from_millis(1000)).await;
        let now = active(&p).await?;
        anyhow::ensure!(now == want, "flapped at step {step}: {now:?}");
    }

    // The relay it uses dies: it moves to the next best (relay 2 at 60 ms) in bounded time.
    let dead = relays.remove(3);
    dead.node.shutdown().await;
    let want: Vec<String> = {
        let mut v = vec![
            relays[1].node.peer_id.to_string(),
            relays[2].node.peer_id.to_string(),
        ];
        v.sort();
        v
    };
    let died = Instant::now();
    wait_until(
        Duration::from_secs(30),
        "replaced the dead relay",
        || async { Ok(active(&p).await? == want) },
    )
    .await?;
    #[allow(clippy::print_stderr)]
    {
        eprintln!(
            "relay selection: moved {took:?} after the latencies changed; replaced a dead relay in {:?}",
            died.elapsed()
        );
    }
    relays.push(p);
    shutdown_all(relays).await;
    Ok(())
}
