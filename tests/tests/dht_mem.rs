//! In-process, memory transport: 10 full leafnet nodes bootstrap from one; each announces a
//! provider record; every node finds every other node's provider record, with its address.

use std::time::Duration;

use leafnet_tests::{shutdown_all, start_mem_swarm};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_nodes_find_every_provider_record() -> anyhow::Result<()> {
    let nodes = start_mem_swarm(10, Duration::from_secs(30)).await?;
    for (i, t) in nodes.iter().enumerate() {
        let r = t.node.provide(&format!("item-{i}")).await?;
        assert!(r.announced, "node {i} could not announce");
    }
    for (i, t) in nodes.iter().enumerate() {
        for (j, owner) in nodes.iter().enumerate() {
            if i == j {
                continue;
            }
            let r = t.node.providers(&format!("item-{j}"), 1).await?;
            let found = r
                .providers
                .iter()
                .find(|p| p.peer_id == owner.node.peer_id.to_string());
            let Some(p) = found else {
                anyhow::bail!("node {i} did not find node {j}'s provider record: {r:?}");
            };
            assert!(
                p.addrs.iter().any(|a| a.starts_with("/memory/")),
                "provider record of node {j} carries no address: {p:?}"
            );
        }
    }
    // Each node's own node record is in the DHT and verifies (nodes publish it about a second
    // after their first routing-table entry, so wait for it, bounded).
    let key = format!("/leafnet/node/{}", nodes[7].node.peer_id);
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let r = loop {
        match nodes[3].node.get_record(&key).await {
            Ok(r) => break r,
            Err(e) if std::time::Instant::now() < deadline => {
                tracing::debug!(%e, "node record not there yet");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => return Err(e),
        }
    };
    assert!(
        r.value["addrs"][0]
            .as_str()
            .unwrap_or("")
            .starts_with("/memory/"),
        "{r:?}"
    );
    shutdown_all(nodes).await;
    Ok(())
}
