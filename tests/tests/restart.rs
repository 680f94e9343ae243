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

    // b's own restart keeps what it provides ("kept", and the relay key a public node with a
    // relay server announces).
    let provided = b.node.status().await?.storage.provided_keys;
    assert!(provided >= 1);
    let (b_key, b_dir) = (b.keypair.clone(), b.dir);
    b.node.shutdown().await;
    let b = start_mem_node_with(mem_config(&[a.addr()]), b_key, b_dir).await?;
    assert!(
        b.node.status().await?.storage.provided_keys >= provided,
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

/// Mint notes survive a restart: the node's own observation (written durably before the API
/// answered) and what it learned from a peer (written at the next tick, flushed at shutdown),
/// including the equivocation proof.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mint_notes_survive_restart() -> anyhow::Result<()> {
    use ed25519_dalek::SigningKey;
    use leafnet_mint::{SignedStatement, Statement};
    let issuer = SigningKey::from_bytes(&[11; 32]);
    let issuer_hex = hex::encode(issuer.verifying_key().to_bytes());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis() as u64;
    let st = |file: &[u8]| {
        SignedStatement::seal(
            &issuer,
            Statement {
                issuer: issuer.verifying_key().to_bytes(),
                asset: "EUR".into(),
                series: 3,
                mint_hash: leafnet_mint::mint_hash(file),
                valid_from_ms: now,
                valid_until_ms: now + 3_600_000,
            },
        )
        .unwrap()
        .to_bytes()
    };
    let a = start_mem_node(&[]).await?;
    let b = start_mem_node(&[a.addr()]).await?;
    a.node.mint().mint_observe(&st(b"one")).await?;
    b.node.mint().mint_observe(&st(b"two")).await?;
    wait_until(Duration::from_secs(20), "a holds the proof", || async {
        Ok(!a.node.mint().mint_proofs().await?.is_empty())
    })
    .await?;
    let before = a.node.mint().mint_status(Some(&issuer_hex)).await?;
    let (a_key, a_dir) = (a.keypair.clone(), a.dir);
    a.node.shutdown().await;
    b.node.shutdown().await;
    // Alone after the restart: everything comes from its own database.
    let a = start_mem_node_with(mem_config(&[]), a_key, a_dir).await?;
    let after = a.node.mint().mint_status(Some(&issuer_hex)).await?;
    assert_eq!(after.items, before.items);
    assert!(after.series[0].equivocation, "{after:?}");
    assert_eq!(after.series[0].hashes.len(), 2);
    assert_eq!(a.node.mint().mint_proofs().await?.len(), 1);
    a.node.shutdown().await;
    Ok(())
}
