//! The delaying transport wrapper on real in-process nodes: a node whose memory transport
//! delays its bytes by 25 ms each way measures a ping RTT of about 50 ms to its peer, and a
//! different latency per remote address gives a different RTT per peer.

use std::time::Duration;

use leafnet_node::transport::delay::Latency;
use leafnet_tests::{mem_config, shutdown_all, start_mem_node, start_mem_node_delayed, wait_until};
use libp2p::identity::Keypair;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_rtt_follows_the_injected_latency_per_address() -> anyhow::Result<()> {
    let near = start_mem_node(&[]).await?;
    let far = start_mem_node(&[]).await?;
    let table: leafnet_node::transport::delay::LatencyTable = Default::default();
    {
        let mut t = table.lock().unwrap();
        t.insert(near.node.listen_addrs[0].clone(), Duration::from_millis(5));
        t.insert(far.node.listen_addrs[0].clone(), Duration::from_millis(25));
    }
    let lat = Latency::table(table);
    let me = start_mem_node_delayed(
        mem_config(&[near.addr(), far.addr()]),
        Keypair::generate_ed25519(),
        tempfile::tempdir()?,
        Some(lat),
    )
    .await?;
    let rtt_of = |peers: &[leafnet_node::model::Peer], id: &str| {
        peers
            .iter()
            .find(|p| p.peer_id == id)
            .and_then(|p| p.rtt_ms)
    };
    let (near_id, far_id) = (near.node.peer_id.to_string(), far.node.peer_id.to_string());
    wait_until(Duration::from_secs(20), "both RTTs measured", || async {
        let p = me.node.peers().await?;
        Ok(rtt_of(&p, &near_id).is_some() && rtt_of(&p, &far_id).is_some())
    })
    .await?;
    let p = me.node.peers().await?;
    let (n, f) = (rtt_of(&p, &near_id).unwrap(), rtt_of(&p, &far_id).unwrap());
    assert!((10.0..40.0).contains(&n), "near RTT {n} ms, injected 10 ms");
    assert!((50.0..100.0).contains(&f), "far RTT {f} ms, injected 50 ms");
    shutdown_all(vec![me, near, far]).await;
    Ok(())
}
