//! An object sells access: the client's node gets an invoice, pays the object's owner with
//! it, and redeems the receipt for a signed grant; the object checks the receipt offline, and
//! a replay is refused.

use std::time::Duration;

use leafnet_node::{
    model::CertifyRequest,
    object::{ObjRequest, ObjResponse, ObjectConfig, Offer, ask_object, run_object},
};
use leafnet_tests::{shutdown_all, start_leaf_swarm};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_sells_access_once_per_payment() -> anyhow::Result<()> {
    let nodes = start_leaf_swarm(3, 3, Duration::from_secs(30), |_| {}).await?;
    let owner = &nodes[0].node;
    let client = &nodes[1].node;
    let dir = tempfile::tempdir()?;
    let key = ed25519_dalek::SigningKey::from_bytes(&[77; 32]);
    let object = run_object(ObjectConfig {
        key: key.clone(),
        offer: Offer {
            owner: owner.account_id(),
            price: 2_500,
            resource: "garage door".into(),
            duration: Duration::from_secs(3600),
        },
        network: "local".into(),
        listen: vec!["/memory/0".parse()?],
        db_path: dir.path().join("object.redb"),
    })
    .await?;
    let addr = object.addrs[0].to_string();
    // Not yet certified by its owner: the client refuses to pay.
    let err = client.leaf().leaf_buy(&addr).await.unwrap_err();
    assert!(format!("{err:#}").contains("not certified"), "{err:#}");
    owner
        .leaf()
        .leaf_certify(CertifyRequest {
            subject: hex::encode(object.account),
            object: true,
        })
        .await?;
    let before = owner.leaf().leaf_account().await?.balance;
    let bought = client.leaf().leaf_buy(&addr).await?;
    assert_eq!(bought.resource, "garage door");
    assert_eq!(bought.amount, 2_500);
    assert!(bought.until_ms > leafnet_tests::now_ms());
    assert_eq!(owner.leaf().leaf_account().await?.balance, before + 2_500);
    // The same invoice and receipt again: refused (the object remembers what it redeemed).
    let r = client.leaf().leaf_receipt(&bought.transfer_id).await?;
    let receipt = serde_bytes::ByteBuf::from(hex::decode(r.receipt_hex.unwrap())?);
    let invoice = serde_bytes::ByteBuf::from(hex::decode(&bought.invoice_hex)?);
    let replay = ask_object(
        "local",
        &object.addrs[0],
        ObjRequest::Redeem {
            invoice,
            receipt: receipt.clone(),
        },
    )
    .await?;
    assert!(
        matches!(&replay, ObjResponse::Refused(why) if why.contains("already redeemed")),
        "{replay:?}"
    );
    // The receipt with a fresh invoice: its memo names the other invoice.
    let ObjResponse::Invoice { invoice: fresh, .. } = ask_object(
        "local",
        &object.addrs[0],
        ObjRequest::Invoice {
            client: client.account_id(),
        },
    )
    .await?
    else {
        panic!("no invoice")
    };
    let other = ask_object(
        "local",
        &object.addrs[0],
        ObjRequest::Redeem {
            invoice: fresh,
            receipt,
        },
    )
    .await?;
    assert!(
        matches!(&other, ObjResponse::Refused(why) if why.contains("memo")),
        "{other:?}"
    );
    object.stop().await;
    shutdown_all(nodes).await;
    Ok(())
}
