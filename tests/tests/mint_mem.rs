//! In-process, 30 nodes: an issuer shows mint hash A to 15 nodes and hash B to the other 15.
//! Every node must hold the equivocation proof within [`DETECTION_BOUND`]; a node started
//! afterwards learns it by anti-entropy within [`LATE_JOINER_BOUND`]; 1,000 observations of one
//! honest statement by the 30 observers raise no alarm.

use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use leafnet_mint::{SignedStatement, Statement};
use leafnet_tests::{
    TestNode, mem_config, shutdown_all, start_mem_node_with, start_mem_swarm_with, wait_until,
};
use libp2p::identity::Keypair;

/// Every node holds the proof this long after the last observation, at most.
const DETECTION_BOUND: Duration = Duration::from_secs(20);
/// A node started afterwards holds it this long after it started, at most.
const LATE_JOINER_BOUND: Duration = Duration::from_secs(20);

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn statement(issuer: &SigningKey, asset: &str, series: u64, mint_file: &[u8]) -> Vec<u8> {
    let now = now_ms();
    SignedStatement::seal(
        issuer,
        Statement {
            issuer: issuer.verifying_key().to_bytes(),
            asset: asset.into(),
            series,
            mint_hash: leafnet_mint::mint_hash(mint_file),
            valid_from_ms: now,
            valid_until_ms: now + 24 * 3600 * 1000,
        },
    )
    .unwrap()
    .to_bytes()
}

async fn equivocation_seen(t: &TestNode, issuer: &str) -> anyhow::Result<bool> {
    let s = t.node.mint().mint_status(Some(issuer)).await?;
    Ok(s.series.iter().any(|x| x.equivocation) && !t.node.mint().mint_proofs().await?.is_empty())
}

#[allow(clippy::print_stderr)] // the two figures, for the record
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_view_is_detected_everywhere_and_late_joiners_learn_it() -> anyhow::Result<()> {
    let tweak = |c: &mut leafnet_config::Valid| {
        c.mint.heartbeat = Duration::from_millis(200);
    };
    let nodes = start_mem_swarm_with(30, Duration::from_secs(60), tweak).await?;
    // Gossip needs subscriptions exchanged; anti-entropy would cover a miss, but the bound is
    // about gossip, so start once every node sees topic peers.
    wait_until(
        Duration::from_secs(30),
        "mint topic peers known",
        || async {
            for t in &nodes {
                if t.node.status().await?.mint_topic_peers == 0 {
                    return Ok(false);
                }
            }
            Ok(true)
        },
    )
    .await?;

    // Honest issuer first: 1,000 observations of one statement by the 30 observers.
    let honest = SigningKey::from_bytes(&[7; 32]);
    let honest_hex = hex::encode(honest.verifying_key().to_bytes());
    let good = statement(&honest, "EUR.note", 1, b"honest mint file");
    for round in 0..1000usize {
        let t = &nodes[round % nodes.len()];
        t.node.mint().mint_observe(&good).await?;
    }
    // Every node counts 30 distinct observers and no alarm.
    wait_until(
        Duration::from_secs(30),
        "30 observers everywhere",
        || async {
            for t in &nodes {
                let s = t.node.mint().mint_status(Some(&honest_hex)).await?;
                let Some(series) = s.series.first() else {
                    return Ok(false);
                };
                anyhow::ensure!(!series.equivocation, "honest issuer marked as equivocator");
                anyhow::ensure!(series.hashes.len() == 1, "honest series shows two hashes");
                if series.hashes[0].observers < 30 {
                    return Ok(false);
                }
            }
            Ok(true)
        },
    )
    .await?;
    for t in &nodes {
        anyhow::ensure!(
            t.node.mint().mint_proofs().await?.is_empty(),
            "no proof may exist"
        );
    }

    // The split: hash A to nodes 0..15, hash B to nodes 15..30.
    let issuer = SigningKey::from_bytes(&[9; 32]);
    let issuer_hex = hex::encode(issuer.verifying_key().to_bytes());
    let a = statement(&issuer, "GOLD", 42, b"mint file shown to the first half");
    let b = statement(&issuer, "GOLD", 42, b"mint file shown to the second half");
    for (i, t) in nodes.iter().enumerate() {
        let r = t
            .node
            .mint()
            .mint_observe(if i < 15 { &a } else { &b })
            .await?;
        anyhow::ensure!(r.new);
    }
    let started = Instant::now();
    wait_until(DETECTION_BOUND, "every node holds the proof", || async {
        for t in &nodes {
            if !equivocation_seen(t, &issuer_hex).await? {
                return Ok(false);
            }
        }
        Ok(true)
    })
    .await?;
    let detected = started.elapsed();
    // The honest issuer is still clean everywhere.
    for t in &nodes {
        let s = t.node.mint().mint_status(Some(&honest_hex)).await?;
        anyhow::ensure!(s.series.iter().all(|x| !x.equivocation));
    }
    // The proof verifies offline.
    let proofs = nodes[0].node.mint().mint_proofs().await?;
    let bytes = hex::decode(&proofs[0].proof_hex)?;
    let v = leafnet_mint::VerifiedProof::from_bytes(&bytes)?;
    anyhow::ensure!(v.key().series == 42 && v.key().asset == "GOLD");

    // A node started now learns everything by anti-entropy.
    let late = start_mem_node_with(
        {
            let mut c = mem_config(&[nodes[3].addr()]);
            tweak(&mut c);
            c
        },
        Keypair::generate_ed25519(),
        tempfile::tempdir()?,
    )
    .await?;
    let joined = Instant::now();
    wait_until(
        LATE_JOINER_BOUND,
        "the late joiner holds the proof",
        || async { equivocation_seen(&late, &issuer_hex).await },
    )
    .await?;
    let learned = joined.elapsed();
    let s = late.node.mint().mint_status(Some(&honest_hex)).await?;
    anyhow::ensure!(s.series.len() == 1 && !s.series[0].equivocation);
    eprintln!(
        "mint split view: every node held the proof {detected:?} after the last observation; the late joiner {learned:?} after it started"
    );
    let mut all = nodes;
    all.push(late);
    shutdown_all(all).await;
    Ok(())
}
