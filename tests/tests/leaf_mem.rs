//! leaf payments between in-process nodes over the memory transport.

use std::time::Duration;

use leafnet_node::model::PayRequest;
use leafnet_tests::{shutdown_all, start_leaf_swarm};

fn pay(to: [u8; 32], amount: &str) -> PayRequest {
    PayRequest {
        payee: hex::encode(to),
        amount: amount.into(),
        memo: Some("test".into()),
        invoice_hex: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_pay_each_other() -> anyhow::Result<()> {
    let nodes = start_leaf_swarm(3, 2, Duration::from_secs(30), |c| {
        c.leaf.max_balance = 100_000;
    })
    .await?;
    let (a, b) = (&nodes[0].node, &nodes[1].node);
    let p = a.leaf().leaf_pay(pay(b.account_id(), "12.5")).await?;
    assert_eq!(p.status, "paid", "{p:?}");
    assert_eq!(p.amount, 12_500);
    assert_eq!(p.payee_balance, Some(12_500));
    let back = b.leaf().leaf_pay(pay(a.account_id(), "2")).await?;
    assert_eq!(back.status, "paid", "{back:?}");
    let (sa, sb) = (
        a.leaf().leaf_account().await?,
        b.leaf().leaf_account().await?,
    );
    assert_eq!(sa.balance, -10_500);
    assert_eq!(sb.balance, 10_500);
    assert_eq!(sa.balance + sb.balance, 0);
    // The receipt of a paid transfer and the history agree.
    let r = a.leaf().leaf_receipt(&p.transfer_id).await?;
    assert!(r.receipt_hex.is_some());
    let h = b.leaf().leaf_history().await?;
    assert_eq!(h.last().map(|e| e.balance), Some(10_500));
    // Node 2 is not a genesis member: paying it, or it paying, is refused before anything is written.
    let c = &nodes[2].node;
    let err = a
        .leaf()
        .leaf_pay(pay(c.account_id(), "1"))
        .await
        .unwrap_err();
    assert!(format!("{err:#}").contains("not a member"), "{err:#}");
    let err = c
        .leaf()
        .leaf_pay(pay(a.account_id(), "1"))
        .await
        .unwrap_err();
    assert!(format!("{err:#}").contains("not a member"), "{err:#}");
    assert_eq!(a.leaf().leaf_account().await?.chain_length, sa.chain_length);
    shutdown_all(nodes).await;
    Ok(())
}
