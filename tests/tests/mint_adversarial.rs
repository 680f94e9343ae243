//! A raw rust-libp2p gossipsub peer (no leafnet node code) joins the mint topic and publishes
//! forged items: an observation whose issuer signature is forged, and an equivocation proof
//! that accuses an honest issuer with one forged half. The node rejects both, bans the sender at
//! once (an honest node verifies before it forwards, so one forged item is enough) and never
//! marks the accused issuer.

use std::time::Duration;

use ed25519_dalek::SigningKey;
use futures::StreamExt as _;
use leafnet_mint::{Item, SignedObservation, SignedStatement, Statement};
use leafnet_tests::{TestNode, start_mem_node, wait_until};
use libp2p::{Multiaddr, Swarm, SwarmBuilder, gossipsub, swarm::SwarmEvent};

fn attacker() -> Swarm<gossipsub::Behaviour> {
    SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_other_transport(leafnet_tests::raw_memory_transport)
        .unwrap()
        .with_behaviour(|key| {
            let cfg = gossipsub::ConfigBuilder::default()
                .heartbeat_initial_delay(Duration::from_millis(100))
                .heartbeat_interval(Duration::from_millis(200))
                .build()
                .unwrap();
            let mut gs =
                gossipsub::Behaviour::new(gossipsub::MessageAuthenticity::Signed(key.clone()), cfg)
                    .unwrap();
            gs.subscribe(&gossipsub::IdentTopic::new("/leafnet/local/mint/1"))
                .unwrap();
            gs
        })
        .unwrap()
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build()
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn signed(issuer: &SigningKey, series: u64, file: &[u8]) -> SignedStatement {
    let now = now_ms();
    SignedStatement::seal(
        issuer,
        Statement {
            issuer: issuer.verifying_key().to_bytes(),
            asset: "GOLD".into(),
            series,
            mint_hash: leafnet_mint::mint_hash(file),
            valid_from_ms: now,
            valid_until_ms: now + 3_600_000,
        },
    )
    .unwrap()
}

/// Connects the attacker to `victim`, waits until it sees the victim on the topic, publishes
/// `data` and waits until the victim bans it (or fails).
async fn publish_and_expect_ban(
    victim: &TestNode,
    data: Vec<u8>,
    bans: usize,
) -> anyhow::Result<()> {
    let mut a = attacker();
    let addr: Multiaddr = victim.node.listen_addrs[0].clone();
    a.dial(addr)?;
    let topic = gossipsub::IdentTopic::new("/leafnet/local/mint/1");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        match tokio::time::timeout_at(deadline, a.select_next_some()).await {
            Ok(SwarmEvent::Behaviour(gossipsub::Event::Subscribed { peer_id, .. }))
                if peer_id == victim.node.peer_id =>
            {
                break;
            }
            Ok(_) => {}
            Err(_) => anyhow::bail!("the victim never subscribed"),
        }
    }
    a.behaviour_mut()
        .publish(topic, data)
        .map_err(|e| anyhow::anyhow!("publish: {e}"))?;
    // Drive the attacker until the victim cuts it off.
    let cut = loop {
        match tokio::time::timeout_at(deadline, a.select_next_some()).await {
            Ok(SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                ..
            }) if peer_id == victim.node.peer_id => break true,
            Ok(_) => {}
            Err(_) => break false,
        }
    };
    anyhow::ensure!(cut, "the forger was not disconnected");
    wait_until(Duration::from_secs(5), "the forger is banned", || async {
        Ok(victim.node.status().await?.banned_peers == bans)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_statements_and_proofs_are_rejected_and_their_senders_banned() -> anyhow::Result<()>
{
    let victim = start_mem_node(&[]).await?;
    let honest = SigningKey::from_bytes(&[3; 32]);
    let honest_hex = hex::encode(honest.verifying_key().to_bytes());
    // The victim knows the honest statement.
    let good = signed(&honest, 1, b"the real mint file");
    victim.node.mint().mint_observe(&good.to_bytes()).await?;

    // 1. A forged proof: the honest statement next to a second "statement" for the same series
    // whose issuer signature is forged.
    let other = signed(&honest, 1, b"a mint file the issuer never signed");
    let mut forged = other.to_bytes();
    let n = forged.len();
    forged[n - 1] ^= 0x40; // the envelope's signature is its last field
    anyhow::ensure!(SignedStatement::open(&forged).is_err());
    let proof = leafnet_wire::claim::Proof {
        a: good.to_bytes().min(forged.clone()),
        b: good.to_bytes().max(forged.clone()),
    };
    let data = Item::raw_proof(&proof.to_bytes());
    anyhow::ensure!(
        Item::decode(&data).is_err(),
        "the forged proof must not verify"
    );
    publish_and_expect_ban(&victim, data, 1).await?;

    // 2. A forged statement inside an otherwise well-signed observation.
    let observer = SigningKey::from_bytes(&[5; 32]);
    let obs = SignedObservation::seal_raw(&observer, &forged, now_ms());
    anyhow::ensure!(Item::decode(&Item::raw_observation(&obs)).is_err());
    publish_and_expect_ban(&victim, Item::raw_observation(&obs), 2).await?;

    // The accused issuer is not marked; nothing forged was stored.
    let s = victim.node.mint().mint_status(Some(&honest_hex)).await?;
    anyhow::ensure!(s.series.len() == 1, "{s:?}");
    anyhow::ensure!(!s.series[0].equivocation, "the accused issuer was marked");
    anyhow::ensure!(s.series[0].hashes.len() == 1);
    anyhow::ensure!(victim.node.mint().mint_proofs().await?.is_empty());
    anyhow::ensure!(victim.node.status().await?.mint_items == 1);
    leafnet_tests::shutdown_all(vec![victim]).await;
    Ok(())
}
