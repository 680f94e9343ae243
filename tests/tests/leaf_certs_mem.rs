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
