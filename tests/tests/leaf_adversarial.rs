//! A raw rust-libp2p request-response client (no leafnet code but the wire types) speaks
//! `/leafnet/local/leaf/1` to a leafnet node: other parameters are answered `WrongParams`, a
//! non-member's cheque gets a signed refusal, and forged or malformed messages are refused
//! without anything written and scored until the sender is banned. The node keeps paying.

use std::time::Duration;

use futures::StreamExt as _;
use leafnet_leaf::{Body, Memo, Message, Record, SignedEntry};
use leafnet_node::leaf::{Request, Response};
use leafnet_tests::{shutdown_all, start_leaf_swarm, wait_until};
use libp2p::{Multiaddr, PeerId, Swarm, SwarmBuilder, request_response, swarm::SwarmEvent};
use serde_bytes::ByteBuf;

type LeafSwarm = Swarm<request_response::cbor::Behaviour<Request, Response>>;

fn client() -> LeafSwarm {
    SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_other_transport(leafnet_tests::raw_memory_transport)
        .unwrap()
        .with_behaviour(|_| {
            request_response::cbor::Behaviour::new(
                [(
                    libp2p::StreamProtocol::new("/leafnet/local/leaf/1"),
                    request_response::ProtocolSupport::Outbound,
                )],
                request_response::Config::default().with_request_timeout(Duration::from_secs(10)),
            )
        })
        .unwrap()
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(30)))
        .build()
}

async fn ask(a: &mut LeafSwarm, target: PeerId, addr: Multiaddr, req: Request) -> Option<Response> {
    use request_response::{Event, Message as M};
    let id = a
        .behaviour_mut()
        .send_request_with_addresses(&target, req, vec![addr]);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        match tokio::time::timeout_at(deadline, a.select_next_some()).await {
            Ok(SwarmEvent::Behaviour(Event::Message {
                message:
                    M::Response {
                        request_id,
                        response,
                    },
                ..
            })) if request_id == id => return Some(response),
            Ok(SwarmEvent::Behaviour(Event::OutboundFailure { request_id, .. }))
                if request_id == id =>
            {
                return None;
            }
            Ok(_) => {}
            Err(_) => return None,
        }
    }
}

fn cheque(key: &ed25519_dalek::SigningKey, account: [u8; 32], payee: [u8; 32]) -> Vec<u8> {
    SignedEntry::seal(
        key,
        Record {
            account,
            seq: 1,
            prev: [0; 32],
            body: Body::Cheque {
                payee,
                amount: 1000,
                deadline_ms: u64::MAX / 2,
                memo: Memo::None,
            },
        },
    )
    .map(|e| e.as_bytes().to_vec())
    .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_leaf_messages_are_refused_and_scored() -> anyhow::Result<()> {
    let nodes = start_leaf_swarm(2, 2, Duration::from_secs(30), |_| {}).await?;
    let victim = &nodes[0];
    let target = victim.node.peer_id;
    let addr = victim.node.listen_addrs[0].clone();
    let params = victim.node.leaf().leaf_params()?.params_hash();
    let me = victim.node.account_id();
    let chain_before = victim.node.leaf().leaf_chain().await?.entries_hex.len();
    let mut a = client();

    // Other parameters: said, nothing signed.
    let r = ask(
        &mut a,
        target,
        addr.clone(),
        Request::Hello {
            params: [7; 32],
            account: me,
        },
    )
    .await;
    assert_eq!(r, Some(Response::WrongParams { ours: params }));
    // The right parameters: the account is here and open.
    let r = ask(
        &mut a,
        target,
        addr.clone(),
        Request::Hello {
            params,
            account: me,
        },
    )
    .await;
    assert!(
        matches!(r, Some(Response::Hello { open: true, .. })),
        "{r:?}"
    );

    // A non-member's cheque: the payee signs a refusal (a record in its chain).
    let stranger = ed25519_dalek::SigningKey::from_bytes(&[42; 32]);
    let c = cheque(&stranger, stranger.verifying_key().to_bytes(), me);
    let msg = Message::Propose(ByteBuf::from(c)).to_bytes();
    let r = ask(
        &mut a,
        target,
        addr.clone(),
        Request::Message {
            params,
            message: ByteBuf::from(msg),
        },
    )
    .await;
    let Some(Response::Message(d)) = r else {
        panic!("no decision: {r:?}")
    };
    let Ok(Message::Decision(d)) = Message::decode(&d) else {
        panic!("not a decision")
    };
    let d = SignedEntry::open(&d)?;
    assert!(matches!(d.record().body, Body::Refusal { .. }), "{d:?}");
    let chain_after_refusal = victim.node.leaf().leaf_chain().await?.entries_hex.len();
    assert_eq!(chain_after_refusal, chain_before + 1);

    // Forged (a cheque of the other member signed by the stranger) and malformed messages:
    // refused, nothing written, and the sender is banned after a few.
    let other = nodes[1].node.account_id();
    let forged = cheque(&stranger, other, me);
    let bad: Vec<Vec<u8>> = vec![
        Message::Propose(ByteBuf::from(forged)).to_bytes(),
        vec![0xff; 64],
        Message::Propose(ByteBuf::from(vec![1, 2, 3])).to_bytes(),
        Message::Decision(ByteBuf::from(vec![0; 16])).to_bytes(),
        vec![0x80],
    ];
    for b in bad {
        let r = ask(
            &mut a,
            target,
            addr.clone(),
            Request::Message {
                params,
                message: ByteBuf::from(b),
            },
        )
        .await;
        assert!(
            r.is_none() || matches!(r, Some(Response::Refused(_))),
            "a bad message was answered {r:?}"
        );
    }
    wait_until(Duration::from_secs(10), "the sender is banned", || async {
        Ok(victim.node.status().await?.banned_peers == 1)
    })
    .await?;
    assert_eq!(
        victim.node.leaf().leaf_chain().await?.entries_hex.len(),
        chain_after_refusal,
        "a refused message wrote something"
    );
    // The node still pays and is paid.
    let p = nodes[1]
        .node
        .leaf()
        .leaf_pay(leafnet_node::model::PayRequest {
            payee: hex::encode(me),
            amount: "3".into(),
            memo: None,
            invoice_hex: None,
        })
        .await?;
    assert_eq!(p.status, "paid", "{p:?}");
    shutdown_all(nodes).await;
    Ok(())
}
