//! Restart: records and provider records a node stored are still served after it restarts
//! (same key, same redb file), and the keys a node provides survive its own restart.

use std::time::Duration;

use leafnet_tests::{mem_config, shutdown_all, start_mem_node, start_mem_node_with, wait_until};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_and_providers_survive_restart() -> anyhow::Result<()> {
    // a (bootstrap) and b; b provides a key and publishes its node record, both land on a.
    let a = start_mem_node(&[]).await?;
    let b = start_mem_node(&[a.addr()]).await?;
    let b_id = b.node.peer_id;
    wait_until(
        Duration::from_secs(20),
        "a and b know each other",
        || async {
            Ok(a.node.status().await?.routing_table_size > 0
                && b.node.status().await?.routing_table_size > 0)
        },
    )
    .await?;
    assert!(b.node.provide("kept").await?.announced);
    wait_until(
        Duration::from_secs(20),
        "a stores b's node record and provider record",
        || async {
            let s = a.node.status().await?.storage;
            Ok(s.records >= 2 && s.provider_keys >= 1)
        },
    )
    .await?;

    // b's own restart keeps what it provides.
    let (b_key, b_dir) = (b.keypair.clone(), b.dir);
    b.node.shutdown().await;
    let b = start_mem_node_with(mem_config(&[a.addr()]), b_key, b_dir).await?;
    assert_eq!(
        b.node.status().await?.storage.provided_keys,
        1,
        "provided key lost on restart"
    );
    b.node.shutdown().await; // b is gone for good now

    // a restarts on its own database; a new node c only knows a.
    let before = a.node.status().await?.storage;
    let (a_key, a_dir) = (a.keypair.clone(), a.dir);
    a.node.shutdown().await;
    let a = start_mem_node_with(mem_config(&[]), a_key, a_dir).await?;
    let after = a.node.status().await?.storage;
    assert_eq!(
        (after.records, after.provider_keys),
        (before.records, before.provider_keys)
    );
    let c = start_mem_node(&[a.addr()]).await?;
    wait_until(Duration::from_secs(20), "c knows a", || async {
        Ok(c.node.status().await?.routing_table_size > 0)
    })
    .await?;
    let p = c.node.providers("kept", 1).await?;
    assert!(
        p.providers.iter().any(|x| x.peer_id == b_id.to_string()),
        "a no longer serves b's provider record: {p:?}"
    );
    let r = c.node.get_record(&format!("/leafnet/node/{b_id}")).await?;
    assert!(r.seq > 0);
    shutdown_all(vec![a, c]).await;
    Ok(())
}
