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

/// The chains of every node, re-verified together from their first record.
async fn verify_all(nodes: &[leafnet_tests::TestNode]) -> anyhow::Result<leafnet_leaf::Ledger> {
    let mut chains = std::collections::BTreeMap::new();
    let mut params = None;
    for t in nodes {
        let c = t.node.leaf().leaf_chain().await?;
        chains.insert(
            t.node.account_id(),
            c.entries_hex
                .iter()
                .map(hex::decode)
                .collect::<Result<Vec<_>, _>>()?,
        );
        params = Some(t.node.leaf().leaf_params()?);
    }
    let params = params.expect("at least one node");
    Ok(leafnet_leaf::verify_ledger(&params, &chains)?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::print_stderr)] // the seed and the outcome counts, for the record
async fn twenty_nodes_two_thousand_concurrent_payments() -> anyhow::Result<()> {
    use rand::{RngExt as _, SeedableRng as _};
    const N: usize = 20;
    const PAYMENTS: usize = 2000;
    const MAX: i64 = 40_000; // 40 leaf: random amounts up to 25 leaf break the bound often
    let nodes = start_leaf_swarm(N, N, Duration::from_secs(60), |c| {
        c.leaf.max_balance = MAX;
    })
    .await?;
    let accounts: Vec<[u8; 32]> = nodes.iter().map(|t| t.node.account_id()).collect();
    let seed: u64 = rand::random();
    eprintln!("seed {seed}");
    let started = std::time::Instant::now();
    // Every node pays concurrently: N tasks, each a stream of payments to random payees, with
    // up to 4 of its own in flight at once.
    let mut tasks = Vec::new();
    for (i, t) in nodes.iter().enumerate() {
        let ctx = t.node.leaf().clone();
        let accounts = accounts.clone();
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ i as u64);
        let plan: Vec<([u8; 32], u64)> = (0..PAYMENTS / N)
            .map(|_| {
                let mut j = rng.random_range(0..N - 1);
                if j >= i {
                    j += 1;
                }
                (accounts[j], rng.random_range(1..25_000u64))
            })
            .collect();
        tasks.push(tokio::spawn(async move {
            use futures::StreamExt as _;
            futures::stream::iter(plan)
                .map(|(to, minor)| {
                    let ctx = ctx.clone();
                    async move {
                        let amount = format!("{}.{:03}", minor / 1000, minor % 1000);
                        (minor, ctx.leaf_pay(pay(to, &amount)).await)
                    }
                })
                .buffer_unordered(4)
                .collect::<Vec<_>>()
                .await
        }));
    }
    let (mut paid, mut refused_bound, mut other) = (0usize, 0usize, Vec::new());
    for t in tasks {
        for (_, r) in t.await? {
            match r {
                Ok(p) if p.status == "paid" => paid += 1,
                Ok(p) if p.status == "refused" => {
                    assert!(p.reason.as_deref().unwrap_or("").contains("bound"), "{p:?}");
                    refused_bound += 1;
                }
                Ok(p) => other.push(format!("{p:?}")),
                Err(e) if format!("{e:#}").contains("bound exceeded") => refused_bound += 1,
                Err(e) => other.push(format!("{e:#}")),
            }
        }
    }
    eprintln!(
        "{PAYMENTS} payments in {:.1} s: {paid} paid, {refused_bound} refused at a bound, {} other",
        started.elapsed().as_secs_f64(),
        other.len()
    );
    assert!(
        other.is_empty(),
        "unexpected outcomes: {:?}",
        &other[..other.len().min(5)]
    );
    assert_eq!(paid + refused_bound, PAYMENTS);
    assert!(paid > PAYMENTS / 4, "too few payments went through: {paid}");
    assert!(
        refused_bound > 0,
        "no payment hit a bound; the test does not test bounds"
    );
    // Every chain re-verifies from its start, together: signatures, links, bounds, Σ = 0.
    let ledger = verify_all(&nodes).await?;
    let sum: i128 = ledger.balances.values().map(|b| *b as i128).sum();
    assert_eq!(sum, 0);
    assert!(ledger.balances.values().all(|b| (-MAX..=MAX).contains(b)));
    for t in &nodes {
        let a = t.node.leaf().leaf_account().await?;
        assert_eq!(a.reserved, 0, "a payment is still in flight");
        assert_eq!(
            ledger.balances.get(&t.node.account_id()).copied(),
            Some(a.balance),
            "the node's balance and its verified chain disagree"
        );
    }
    shutdown_all(nodes).await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forked_chain_is_caught_by_every_node() -> anyhow::Result<()> {
    use leafnet_leaf::{Body, Memo, Record, SignedEntry};
    let nodes = start_leaf_swarm(5, 5, Duration::from_secs(30), |_| {}).await?;
    let forger = &nodes[0];
    // A first, honest payment, so that the network has seen the forger's chain move.
    let p = forger
        .node
        .leaf()
        .leaf_pay(pay(nodes[1].node.account_id(), "1"))
        .await?;
    assert_eq!(p.status, "paid");
    // The forger signs two different cheques at its next sequence number (its key is in its
    // data dir) and shows one to node 1, the other to node 3.
    let key = leafnet_node::datadir::DataDir::new(forger.dir.path()).load_or_create_account()?;
    let chain = forger.node.leaf().leaf_chain().await?;
    let last = SignedEntry::open(&hex::decode(chain.entries_hex.last().unwrap())?)?;
    let forge = |payee: [u8; 32]| {
        SignedEntry::seal(
            &key,
            Record {
                account: key.verifying_key().to_bytes(),
                seq: last.record().seq + 1,
                prev: last.hash(),
                body: Body::Cheque {
                    payee,
                    amount: 1000,
                    deadline_ms: u64::MAX / 2,
                    memo: Memo::None,
                },
            },
        )
    };
    let (c1, c2) = (
        forge(nodes[1].node.account_id())?,
        forge(nodes[2].node.account_id())?,
    );
    let v1 = nodes[1]
        .node
        .leaf()
        .leaf_seen(&hex::encode(c1.as_bytes()))
        .await?;
    let v2 = nodes[3]
        .node
        .leaf()
        .leaf_seen(&hex::encode(c2.as_bytes()))
        .await?;
    assert_eq!(v1.verdict, "new");
    assert!(v2.verdict == "new" || v2.verdict == "fork", "{v2:?}");
    let forger_id = hex::encode(forger.node.account_id());
    leafnet_tests::wait_until(
        Duration::from_secs(20),
        "every node proved the fork",
        || async {
            for t in &nodes[1..] {
                let e = t.node.leaf().leaf_equivocators().await?;
                if !e.iter().any(|x| x.account_id == forger_id) {
                    return Ok(false);
                }
            }
            Ok(true)
        },
    )
    .await?;
    // Members refuse the equivocator: its payment gets a signed refusal, and paying it is
    // refused before anything is signed.
    let p = forger
        .node
        .leaf()
        .leaf_pay(pay(nodes[2].node.account_id(), "1"))
        .await?;
    assert_eq!(p.status, "refused", "{p:?}");
    let err = nodes[2]
        .node
        .leaf()
        .leaf_pay(pay(forger.node.account_id(), "1"))
        .await
        .unwrap_err();
    assert!(format!("{err:#}").contains("equivocator"), "{err:#}");
    shutdown_all(nodes).await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn balances_and_chains_survive_a_restart() -> anyhow::Result<()> {
    let mut nodes = start_leaf_swarm(3, 3, Duration::from_secs(30), |_| {}).await?;
    let b_id = nodes[1].node.account_id();
    for _ in 0..5 {
        let p = nodes[0].node.leaf().leaf_pay(pay(b_id, "1.5")).await?;
        assert_eq!(p.status, "paid");
    }
    let genesis = nodes[0].node.leaf().leaf_params()?.genesis;
    let boot = nodes[2].addr();
    let before = nodes[1].node.leaf().leaf_chain().await?;
    // Stop node 1 and start it again from its data dir.
    let leafnet_tests::TestNode { node, keypair, dir } = nodes.remove(1);
    node.shutdown().await;
    let mut cfg = leafnet_tests::mem_config(&[boot]);
    cfg.leaf.genesis = genesis;
    let again = leafnet_tests::start_mem_node_with(cfg, keypair, dir).await?;
    let after = again.node.leaf().leaf_chain().await?;
    assert_eq!(
        before.entries_hex, after.entries_hex,
        "the chain changed across a restart"
    );
    assert_eq!(again.node.leaf().leaf_account().await?.balance, 7_500);
    nodes.insert(1, again);
    leafnet_tests::settle_routing(&nodes, Duration::from_secs(30)).await?;
    // It keeps paying and being paid on top of the reloaded chain.
    let p = nodes[1]
        .node
        .leaf()
        .leaf_pay(pay(nodes[0].node.account_id(), "0.5"))
        .await?;
    assert_eq!(p.status, "paid", "{p:?}");
    let ledger = verify_all(&nodes).await?;
    assert_eq!(ledger.balances.get(&b_id), Some(&7_000));
    shutdown_all(nodes).await;
    Ok(())
}
