//! Certifications in the DHT and membership: genesis members certify newcomers, K
//! certifications make a member (seen from every node), objects resolve to their owner, a
//! non-member's certification counts for nothing, and a new member can pay.

use std::time::Duration;

use leafnet_node::model::{CertifyRequest, PayRequest};
use leafnet_tests::{shutdown_all, start_leaf_swarm, wait_until};

fn certify(subject: [u8; 32], object: bool) -> CertifyRequest {
    CertifyRequest {
        subject: hex::encode(subject),
        object,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn k_certifications_from_members_make_a_member() -> anyhow::Result<()> {
    // Nodes 0-2 are genesis members; K = 2.
    let nodes = start_leaf_swarm(8, 3, Duration::from_secs(60), |c| {
        c.leaf.certifications_needed = 2;
    })
    .await?;
    let id = |i: usize| nodes[i].node.account_id();
    let params = nodes[0].node.leaf().leaf_params()?;
    let x = id(3);
    // One certification is not enough.
    let c = nodes[0].node.leaf().leaf_certify(certify(x, false)).await?;
    assert!(c.stored_on > 0, "{c:?}");
    let m = nodes[5]
        .node
        .leaf()
        .resolve_membership(&params, x, leafnet_tests::now_ms())
        .await?;
    assert!(!m.member);
    assert_eq!(m.certified_by, 1);
    // A second, from another genesis member and published from another node: both are kept
    // (the record merges), and every node now sees a member.
    nodes[1].node.leaf().leaf_certify(certify(x, false)).await?;
    wait_until(
        Duration::from_secs(20),
        "every node resolves X as a member",
        || async {
            for t in &nodes {
                let m = t
                    .node
                    .leaf()
                    .resolve_membership(&params, x, leafnet_tests::now_ms())
                    .await?;
                if !m.member || m.certified_by != 2 {
                    return Ok(false);
                }
            }
            Ok(true)
        },
    )
    .await?;
    // The new member pays a genesis member (whose node looks its membership up).
    let p = nodes[3]
        .node
        .leaf()
        .leaf_pay(PayRequest {
            payee: hex::encode(id(0)),
            amount: "4".into(),
            memo: None,
            invoice_hex: None,
        })
        .await?;
    assert_eq!(p.status, "paid", "{p:?}");
    // A non-member cannot certify: its certification would count for nothing.
    let err = nodes[4]
        .node
        .leaf()
        .leaf_certify(certify(id(5), false))
        .await
        .unwrap_err();
    assert!(format!("{err:#}").contains("not a member"), "{err:#}");
    // And a member's certification chain through a new member counts (X certifies node 4 with
    // genesis node 2: X is a member now, so node 4 has 2 of 2).
    nodes[3]
        .node
        .leaf()
        .leaf_certify(certify(id(4), false))
        .await?;
    nodes[2]
        .node
        .leaf()
        .leaf_certify(certify(id(4), false))
        .await?;
    wait_until(Duration::from_secs(20), "node 4 is a member", || async {
        let m = nodes[6]
            .node
            .leaf()
            .resolve_membership(&params, id(4), leafnet_tests::now_ms())
            .await?;
        Ok(m.member)
    })
    .await?;
    // An object certified by its owner resolves to the owner and is no member.
    nodes[0]
        .node
        .leaf()
        .leaf_certify(certify(id(6), true))
        .await?;
    wait_until(
        Duration::from_secs(20),
        "the object resolves to its owner",
        || async {
            let m = nodes[7]
                .node
                .leaf()
                .resolve_membership(&params, id(6), leafnet_tests::now_ms())
                .await?;
            Ok(!m.member && m.owner == Some(id(0)))
        },
    )
    .await?;
    let certs = nodes[7].node.leaf().leaf_certs(&hex::encode(x)).await?;
    assert_eq!(certs.certifications.len(), 2);
    shutdown_all(nodes).await;
    Ok(())
}

/// A raw Kademlia peer puts certification lists straight at a node: a forged one (signed by
/// someone other than its certifier) and garbage are refused and scored until the sender is
/// banned; nothing is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_certifications_are_refused_and_scored() -> anyhow::Result<()> {
    use ed25519_dalek::SigningKey;
    use futures::StreamExt as _;
    use leafnet_leaf::{CertKind, Certification, SignedCertification};
    use libp2p::{
        SwarmBuilder,
        kad::{self, Quorum, Record, RecordKey, store::MemoryStore},
        swarm::SwarmEvent,
    };
    let nodes = start_leaf_swarm(2, 2, Duration::from_secs(30), |_| {}).await?;
    let victim = &nodes[0];
    let subject = [5u8; 32];
    let key = format!("/leafnet/leaf-certs/{}", hex::encode(subject));
    let mut a = SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_other_transport(leafnet_tests::raw_memory_transport)
        .unwrap()
        .with_behaviour(|k| {
            let id = k.public().to_peer_id();
            let mut cfg = kad::Config::new(leafnet_node::behaviour::kad_protocol("local"));
            cfg.set_max_packet_size(1 << 20);
            let mut b = kad::Behaviour::with_config(id, MemoryStore::new(id), cfg);
            b.set_mode(Some(kad::Mode::Server));
            b
        })
        .unwrap()
        .build();
    a.behaviour_mut()
        .add_address(&victim.node.peer_id, victim.node.listen_addrs[0].clone());
    // A certification by a genesis member, signed with another key: the signature fails.
    let member = nodes[1].node.account_id();
    let mut forged = SignedCertification::seal(
        &SigningKey::from_bytes(&[7; 32]),
        Certification {
            certifier: SigningKey::from_bytes(&[7; 32]).verifying_key().to_bytes(),
            subject,
            kind: CertKind::Human,
            issued_ms: 1,
            expires_ms: u64::MAX / 2,
        },
    )?
    .as_bytes()
    .to_vec();
    // Swap the claimed certifier for the member's key (the signer no longer matches).
    let pos = forged
        .windows(32)
        .position(|w| w == SigningKey::from_bytes(&[7; 32]).verifying_key().to_bytes())
        .unwrap();
    forged[pos..pos + 32].copy_from_slice(&member);
    let forged_list = leafnet_wire::cbor::encode(&vec![serde_bytes::ByteBuf::from(forged)]);
    let values = [
        forged_list,
        vec![0xff; 30],
        vec![0x80],
        vec![1, 2, 3],
        vec![0xa0],
    ];
    for v in values {
        a.behaviour_mut().put_record_to(
            Record::new(RecordKey::new(&key), v),
            std::iter::once(victim.node.peer_id),
            Quorum::One,
        );
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            match tokio::time::timeout_at(deadline, a.select_next_some()).await {
                Ok(SwarmEvent::Behaviour(kad::Event::OutboundQueryProgressed {
                    result: kad::QueryResult::PutRecord(_),
                    ..
                }))
                | Err(_) => break,
                Ok(SwarmEvent::ConnectionClosed { .. }) => break,
                Ok(_) => {}
            }
        }
    }
    wait_until(Duration::from_secs(10), "the sender is banned", || async {
        Ok(victim.node.status().await?.banned_peers == 1)
    })
    .await?;
    assert!(
        victim.node.leaf().leaf_certs_of(subject).await?.is_empty(),
        "a forged certification was stored"
    );
    shutdown_all(nodes).await;
    Ok(())
}
