//! Objects that sell access (DESIGN §4.5, "objects"; the IO protocol's robots).
//!
//! An object is a small, separate libp2p swarm with its own key (the object's account; its
//! libp2p identity is the same ed25519 key, so its address `/…/p2p/<id>` names the object),
//! certified by its human owner (`leafnet certify <object id> --object`). It holds no balance:
//! clients pay its **owner**. It speaks one protocol, `/leafnet/<net>/object/1`
//! (request-response, CBOR, [`MAX_FRAME`] bytes at most each way):
//!
//! 1. `Invoice { client }` → the object signs an [`Invoice`] (its price, resource, duration, a
//!    fresh random nonce, a short expiry) made out to `client`, and names its owner.
//! 2. The client pays the owner through its own node with the invoice (`leafnet pay --invoice`:
//!    the cheque's memo is the invoice's hash) and gets the owner's acceptance as a receipt.
//! 3. `Redeem { invoice, receipt }` → the object verifies, **offline**, that it signed the
//!    invoice, that the receipt is the owner's acceptance of the client's cheque carrying this
//!    invoice's hash for at least its amount, not expired, and that the invoice was not redeemed
//!    before (`leaf-nonces-1`, durable before the answer). Then it signs a [`Grant`] (resource,
//!    client, until). Anything else is a typed refusal with the reason.
//!
//! The object needs no network access beyond the link to its client: no DHT, no bootstrap.

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use ed25519_dalek::SigningKey;
use futures::StreamExt as _;
use leafnet_leaf::{Invoice, LeafError, Receipt, SignedInvoice};
use leafnet_storage::Database;
use leafnet_wire::{SignedEnvelope, cbor};
use libp2p::{
    Multiaddr, PeerId, StreamProtocol, SwarmBuilder, identity::Keypair, request_response,
    swarm::SwarmEvent,
};
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;
use tokio::sync::watch;

use crate::swarm::now_ms;

/// The largest request or response.
pub const MAX_FRAME: usize = 8 * 1024;
/// Domain tag of grants.
pub const GRANT_DOMAIN: &[u8] = b"leafnet/leaf-grant/v1";
/// How long an invoice can be paid and redeemed.
pub const INVOICE_TTL: Duration = Duration::from_secs(600);

/// `/leafnet/<network>/object/1`.
pub fn protocol(network: &str) -> String {
    format!("/leafnet/{network}/object/1")
}

/// A client's request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ObjRequest {
    /// An invoice made out to `client` (its account).
    Invoice {
        #[serde(with = "serde_bytes")]
        client: [u8; 32],
    },
    /// The invoice and the receipt of its payment: access, please.
    Redeem { invoice: ByteBuf, receipt: ByteBuf },
}

/// The object's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ObjResponse {
    /// A signed invoice; pay `owner`.
    Invoice {
        invoice: ByteBuf,
        #[serde(with = "serde_bytes")]
        owner: [u8; 32],
    },
    /// A signed [`Grant`].
    Granted(ByteBuf),
    /// Why not.
    Refused(String),
}

/// Access granted: signed by the object (domain [`GRANT_DOMAIN`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    #[serde(with = "serde_bytes")]
    pub object: [u8; 32],
    #[serde(with = "serde_bytes")]
    pub client: [u8; 32],
    pub resource: String,
    /// Access ends at this time (unix ms).
    pub until_ms: u64,
    /// The payment's transfer id.
    #[serde(with = "serde_bytes")]
    pub transfer: [u8; 32],
}

impl Grant {
    /// Opens a signed grant (any object's; check `object` yourself).
    pub fn open(bytes: &[u8]) -> anyhow::Result<Self> {
        let env = SignedEnvelope::open(bytes, MAX_FRAME, GRANT_DOMAIN)?;
        let g: Grant = cbor::decode(&env.payload, MAX_FRAME)?;
        anyhow::ensure!(g.object == env.signer, "a grant signed by another key");
        Ok(g)
    }
}

/// What an object sells.
#[derive(Debug, Clone)]
pub struct Offer {
    /// Who is paid (the human owner's account).
    pub owner: [u8; 32],
    /// Minor units.
    pub price: u64,
    pub resource: String,
    pub duration: Duration,
}

/// The object's logic, without the network: invoices out, receipts in, grants out.
#[derive(Debug)]
pub struct Shop {
    key: SigningKey,
    offer: Offer,
    db: Database,
}

impl Shop {
    /// An object with `key`, selling `offer`, remembering used invoices in `db`.
    pub fn new(key: SigningKey, offer: Offer, db: Database) -> anyhow::Result<Self> {
        anyhow::ensure!(offer.price > 0, "the price must be positive");
        anyhow::ensure!(
            offer.resource.len() <= leafnet_leaf::invoice::MAX_RESOURCE
                && !offer.resource.is_empty(),
            "the resource name must be 1 to {} bytes",
            leafnet_leaf::invoice::MAX_RESOURCE
        );
        anyhow::ensure!(
            offer.owner != key.verifying_key().to_bytes(),
            "an object is not its own owner"
        );
        Ok(Shop { key, offer, db })
    }

    /// The object's account id.
    pub fn account(&self) -> [u8; 32] {
        self.key.verifying_key().to_bytes()
    }

    /// A fresh invoice for `client`.
    pub fn invoice(&self, client: [u8; 32], now_ms: u64) -> Result<SignedInvoice, LeafError> {
        let mut nonce = [0u8; 8];
        getrandom::fill(&mut nonce).map_err(|_| LeafError::Unexpected("no randomness"))?;
        SignedInvoice::seal(
            &self.key,
            Invoice {
                object: self.account(),
                client,
                amount: self.offer.price,
                resource: self.offer.resource.clone(),
                duration_ms: u64::try_from(self.offer.duration.as_millis()).unwrap_or(u64::MAX),
                nonce: u64::from_le_bytes(nonce),
                expires_ms: now_ms.saturating_add(INVOICE_TTL.as_millis() as u64),
            },
        )
    }

    /// Checks a receipt against an invoice this object signed and grants access, once.
    pub fn redeem(&self, invoice: &[u8], receipt: &[u8], now_ms: u64) -> Result<Vec<u8>, String> {
        let inv = SignedInvoice::open(invoice).map_err(|e| format!("invoice: {e}"))?;
        if inv.invoice().object != self.account() {
            return Err("this object did not sign the invoice".into());
        }
        let r = Receipt::decode(receipt).map_err(|e| format!("receipt: {e}"))?;
        let transfer = r
            .verify(&inv, &self.offer.owner, now_ms, false)
            .map_err(|e| format!("receipt: {e}"))?;
        let fresh = leafnet_storage::leaf::use_invoice(
            &self.db,
            &inv.hash(),
            inv.invoice().expires_ms,
            now_ms,
        )
        .map_err(|e| format!("cannot record the invoice: {e}"))?;
        if !fresh {
            return Err("this invoice was already redeemed".into());
        }
        let i = inv.invoice();
        let grant = Grant {
            object: self.account(),
            client: i.client,
            resource: i.resource.clone(),
            until_ms: now_ms.saturating_add(i.duration_ms),
            transfer: transfer.0,
        };
        Ok(SignedEnvelope::seal(&self.key, GRANT_DOMAIN, cbor::encode(&grant)).to_bytes())
    }

    fn answer(&self, req: ObjRequest) -> ObjResponse {
        let now = now_ms();
        match req {
            ObjRequest::Invoice { client } => match self.invoice(client, now) {
                Ok(inv) => ObjResponse::Invoice {
                    invoice: ByteBuf::from(inv.as_bytes().to_vec()),
                    owner: self.offer.owner,
                },
                Err(e) => ObjResponse::Refused(e.to_string()),
            },
            ObjRequest::Redeem { invoice, receipt } => match self.redeem(&invoice, &receipt, now) {
                Ok(g) => ObjResponse::Granted(ByteBuf::from(g)),
                Err(e) => ObjResponse::Refused(e),
            },
        }
    }
}

type ObjBehaviour = request_response::cbor::Behaviour<ObjRequest, ObjResponse>;

fn behaviour(network: &str, support: request_response::ProtocolSupport) -> ObjBehaviour {
    let proto = StreamProtocol::try_from_owned(protocol(network))
        .unwrap_or(StreamProtocol::new("/leafnet/main/object/1"));
    request_response::Behaviour::with_codec(
        request_response::cbor::codec::Codec::default()
            .set_request_size_maximum(MAX_FRAME as u64)
            .set_response_size_maximum(MAX_FRAME as u64),
        [(proto, support)],
        request_response::Config::default()
            .with_request_timeout(Duration::from_secs(20))
            .with_max_concurrent_streams(64),
    )
}

fn transports(listen: &[Multiaddr]) -> crate::transport::Selection {
    let has = |t: &str| {
        listen
            .iter()
            .any(|a| leafnet_config::transport_of(a) == Some(t))
    };
    crate::transport::Selection {
        tcp: has("tcp") || listen.is_empty(),
        quic: has("quic") || listen.is_empty(),
        websocket: false,
        memory: has("memory"),
        latency: None,
    }
}

/// How to run an object.
#[derive(Debug, Clone)]
pub struct ObjectConfig {
    pub key: SigningKey,
    pub offer: Offer,
    pub network: String,
    pub listen: Vec<Multiaddr>,
    /// The object's own redb file (used invoices).
    pub db_path: PathBuf,
}

/// A running object.
#[derive(Debug)]
pub struct ObjectHandle {
    pub peer_id: PeerId,
    pub account: [u8; 32],
    /// Listen addresses with `/p2p/<id>`: what clients dial.
    pub addrs: Vec<Multiaddr>,
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl ObjectHandle {
    /// Stops the object.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
    }
}

fn identity(key: &SigningKey) -> anyhow::Result<Keypair> {
    let mut secret = key.to_bytes();
    Keypair::ed25519_from_bytes(&mut secret).context("object key")
}

/// Starts an object: binds every listen address (an address that cannot be bound is an error)
/// and serves until [`ObjectHandle::stop`].
pub async fn run_object(cfg: ObjectConfig) -> anyhow::Result<ObjectHandle> {
    let db = Database::open(&cfg.db_path)?;
    let shop = std::sync::Arc::new(Shop::new(cfg.key.clone(), cfg.offer.clone(), db)?);
    let kp = identity(&cfg.key)?;
    let sel = transports(&cfg.listen);
    let mut swarm = SwarmBuilder::with_existing_identity(kp)
        .with_tokio()
        .with_other_transport(|k| crate::transport::build(k, sel.clone()))
        .map_err(|e| anyhow::anyhow!("cannot build transports: {e}"))?
        .with_behaviour(|_| behaviour(&cfg.network, request_response::ProtocolSupport::Inbound))
        .map_err(|e| anyhow::anyhow!("cannot build behaviour: {e}"))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build();
    let peer_id = *swarm.local_peer_id();
    let mut ids = Vec::new();
    for a in &cfg.listen {
        ids.push(
            swarm
                .listen_on(a.clone())
                .map_err(|e| anyhow::anyhow!("cannot listen on {a}: {e}"))?,
        );
    }
    let mut addrs = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while addrs.len() < ids.len() {
        match tokio::time::timeout_at(deadline, swarm.select_next_some())
            .await
            .context("timed out waiting for the object's listeners")?
        {
            SwarmEvent::NewListenAddr { address, .. } => {
                addrs.push(address.with(libp2p::multiaddr::Protocol::P2p(peer_id)));
            }
            SwarmEvent::ListenerClosed {
                reason: Err(e),
                addresses,
                ..
            } => anyhow::bail!("cannot listen on {addresses:?}: {e}"),
            SwarmEvent::ListenerError { error, .. } => anyhow::bail!("listener failed: {error}"),
            _ => {}
        }
    }
    let (sd_tx, mut sd_rx) = watch::channel(false);
    let account = shop.account();
    let task = tokio::spawn(async move {
        loop {
            tokio::select! {
                ev = swarm.select_next_some() => {
                    if let SwarmEvent::Behaviour(request_response::Event::Message {
                        peer,
                        message: request_response::Message::Request { request, channel, .. },
                        ..
                    }) = ev
                    {
                        let kind = match &request {
                            ObjRequest::Invoice { .. } => "invoice",
                            ObjRequest::Redeem { .. } => "redeem",
                        };
                        // Redeeming writes one durable row: on a blocking thread.
                        let s = shop.clone();
                        let answer = tokio::task::spawn_blocking(move || s.answer(request))
                            .await
                            .unwrap_or_else(|e| ObjResponse::Refused(format!("internal error: {e}")));
                        match &answer {
                            ObjResponse::Granted(_) => tracing::info!(%peer, "access granted"),
                            ObjResponse::Refused(why) => tracing::info!(%peer, kind, %why, "refused"),
                            ObjResponse::Invoice { .. } => tracing::debug!(%peer, "invoice"),
                        }
                        let _ = swarm.behaviour_mut().send_response(channel, answer);
                    }
                }
                _ = sd_rx.changed() => break,
            }
        }
    });
    Ok(ObjectHandle {
        peer_id,
        account,
        addrs,
        shutdown: sd_tx,
        task,
    })
}

/// One request to an object at `addr` (ending in `/p2p/<id>`), from a throwaway client swarm.
pub async fn ask_object(
    network: &str,
    addr: &Multiaddr,
    req: ObjRequest,
) -> anyhow::Result<ObjResponse> {
    let Some(libp2p::multiaddr::Protocol::P2p(peer)) = addr.iter().last() else {
        anyhow::bail!("the object address {addr} does not end in /p2p/<peer id>");
    };
    let sel = transports(std::slice::from_ref(addr));
    let mut swarm = SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_other_transport(|k| crate::transport::build(k, sel.clone()))
        .map_err(|e| anyhow::anyhow!("cannot build transports: {e}"))?
        .with_behaviour(|_| behaviour(network, request_response::ProtocolSupport::Outbound))
        .map_err(|e| anyhow::anyhow!("cannot build behaviour: {e}"))?
        .build();
    let mut base = addr.clone();
    base.pop();
    let id = swarm
        .behaviour_mut()
        .send_request_with_addresses(&peer, req, vec![base]);
    let started = Instant::now();
    loop {
        let ev = tokio::time::timeout(Duration::from_secs(30), swarm.select_next_some())
            .await
            .with_context(|| format!("the object at {addr} did not answer in 30 s"))?;
        match ev {
            SwarmEvent::Behaviour(request_response::Event::Message {
                message:
                    request_response::Message::Response {
                        request_id,
                        response,
                    },
                ..
            }) if request_id == id => {
                tracing::debug!(ms = started.elapsed().as_millis() as u64, "object answered");
                return Ok(response);
            }
            SwarmEvent::Behaviour(request_response::Event::OutboundFailure {
                request_id,
                error,
                ..
            }) if request_id == id => {
                anyhow::bail!("cannot reach the object at {addr}: {error}");
            }
            _ => {}
        }
    }
}

/// The account id (ed25519 key) a peer id names, if it is an inline ed25519 key.
pub fn account_of(peer: &PeerId) -> Option<[u8; 32]> {
    let mh = peer.as_ref();
    if mh.code() != 0 {
        return None; // not an identity multihash: the key is not inline
    }
    let pk = libp2p::identity::PublicKey::try_decode_protobuf(mh.digest()).ok()?;
    Some(pk.try_into_ed25519().ok()?.to_bytes())
}

impl crate::flows::Ctx {
    /// `leafnet object buy`: asks the object at `addr` for an invoice made out to this node's
    /// account, checks it (signed by the object the address names, the object certified by
    /// the owner it names), pays the owner with it, and redeems the receipt for a grant.
    pub async fn leaf_buy(&self, addr: &str) -> anyhow::Result<crate::model::Bought> {
        use crate::flows::BadInput;
        let started = Instant::now();
        let params = self.leaf_params()?;
        let network = self.network.clone();
        let addr: Multiaddr = addr
            .trim()
            .parse()
            .map_err(|e| BadInput(format!("'{addr}' is not a multiaddr: {e}")))?;
        let Some(libp2p::multiaddr::Protocol::P2p(peer)) = addr.iter().last() else {
            return Err(BadInput(format!(
                "the object address {addr} must end in /p2p/<peer id>"
            ))
            .into());
        };
        let object = account_of(&peer)
            .ok_or_else(|| BadInput("the object's peer id does not name an ed25519 key".into()))?;
        let me = self.account.verifying_key().to_bytes();
        let (inv_bytes, owner) =
            match ask_object(&network, &addr, ObjRequest::Invoice { client: me }).await? {
                ObjResponse::Invoice { invoice, owner } => (invoice.into_vec(), owner),
                ObjResponse::Refused(why) => anyhow::bail!("the object refused an invoice: {why}"),
                other => anyhow::bail!("the object answered {other:?}"),
            };
        let inv = SignedInvoice::open(&inv_bytes)
            .map_err(|e| anyhow::anyhow!("the object's invoice does not verify: {e}"))?;
        anyhow::ensure!(
            inv.invoice().object == object,
            "the invoice is signed by another key than the object's"
        );
        anyhow::ensure!(
            inv.invoice().client == me,
            "the invoice is made out to another account"
        );
        let m = self.resolve_membership(&params, object, now_ms()).await?;
        if m.owner != Some(owner) {
            return Err(BadInput(format!(
                "the object is not certified by the owner it names ({}): its owner must run \
                 `leafnet certify {} --object`",
                hex::encode(owner),
                hex::encode(object)
            ))
            .into());
        }
        let amount = inv.invoice().amount;
        let p = self
            .leaf_pay(crate::model::PayRequest {
                payee: hex::encode(owner),
                amount: crate::model::fmt_leaf(amount as i128),
                memo: None,
                invoice_hex: Some(hex::encode(&inv_bytes)),
            })
            .await?;
        anyhow::ensure!(
            p.status == "paid",
            "the payment to the owner is {} ({}); no access yet",
            p.status,
            p.reason.as_deref().unwrap_or("no reason given")
        );
        let r = self.leaf_receipt(&p.transfer_id).await?;
        let receipt = hex::decode(r.receipt_hex.as_deref().unwrap_or_default())?;
        let invoice_hex = hex::encode(&inv_bytes);
        let (grant, grant_hex) = match ask_object(
            &network,
            &addr,
            ObjRequest::Redeem {
                invoice: ByteBuf::from(inv_bytes),
                receipt: ByteBuf::from(receipt),
            },
        )
        .await?
        {
            ObjResponse::Granted(g) => (Grant::open(&g)?, hex::encode(&g)),
            ObjResponse::Refused(why) => anyhow::bail!(
                "paid (transfer {}) but the object refused access: {why}",
                p.transfer_id
            ),
            other => anyhow::bail!("the object answered {other:?}"),
        };
        anyhow::ensure!(
            grant.object == object && grant.client == me,
            "a grant for someone else"
        );
        Ok(crate::model::Bought {
            object: hex::encode(object),
            owner: hex::encode(owner),
            resource: grant.resource,
            until_ms: grant.until_ms,
            amount,
            amount_leaf: crate::model::fmt_leaf(amount as i128),
            transfer_id: p.transfer_id,
            invoice_hex,
            grant_hex,
            elapsed_ms: started.elapsed().as_secs_f64() * 1e3,
        })
    }
}

#[cfg(test)]
mod tests {
    use leafnet_leaf::{Action, Event, Memo, Message, Params, Wallet};

    use super::*;

    struct World {
        shop: Shop,
        owner: Wallet,
        client: Wallet,
        client_key: SigningKey,
        _dir: tempfile::TempDir,
    }

    fn world(price: u64) -> World {
        let dir = tempfile::tempdir().unwrap();
        let owner_key = SigningKey::from_bytes(&[1; 32]);
        let client_key = SigningKey::from_bytes(&[2; 32]);
        let mut genesis = vec![
            owner_key.verifying_key().to_bytes(),
            client_key.verifying_key().to_bytes(),
        ];
        genesis.sort();
        let params = Params {
            max_balance: 1_000_000,
            certifications_needed: 1,
            genesis,
            certification_validity_ms: 1_000_000,
        };
        let db = Database::open(&dir.path().join("o.redb")).unwrap();
        let shop = Shop::new(
            SigningKey::from_bytes(&[3; 32]),
            Offer {
                owner: owner_key.verifying_key().to_bytes(),
                price,
                resource: "door".into(),
                duration: Duration::from_secs(60),
            },
            db,
        )
        .unwrap();
        World {
            shop,
            owner: Wallet::create(owner_key, params.clone()).unwrap().0,
            client: Wallet::create(client_key.clone(), params).unwrap().0,
            client_key,
            _dir: dir,
        }
    }

    /// The client pays `to` `amount` with the invoice's memo; the receipt (the acceptance).
    fn pay(w: &mut World, to_owner: bool, amount: u64, memo: Memo) -> Vec<u8> {
        let now = now_ms();
        let payee = if to_owner {
            w.owner.account()
        } else {
            w.shop.account()
        };
        let out = w
            .client
            .handle(
                Event::Pay {
                    payee,
                    amount,
                    deadline_ms: now + 60_000,
                    memo,
                },
                now,
            )
            .unwrap();
        let Some(Action::Send { message, .. }) = out.get(1) else {
            panic!()
        };
        let back = w.owner.handle(Event::Received(message.to_bytes()), now);
        let Ok(back) = back else {
            return Vec::new();
        };
        let Some(Action::Send {
            message: Message::Decision(d),
            ..
        }) = back.get(1)
        else {
            panic!()
        };
        Receipt {
            acceptance: d.clone(),
        }
        .to_bytes()
    }

    #[test]
    fn a_paid_invoice_grants_access_once() {
        let mut w = world(500);
        let now = now_ms();
        let inv = w.shop.invoice(w.client.account(), now).unwrap();
        let receipt = pay(&mut w, true, 500, inv.memo());
        let g = w.shop.redeem(inv.as_bytes(), &receipt, now).unwrap();
        let g = Grant::open(&g).unwrap();
        assert_eq!(g.client, w.client.account());
        assert_eq!(g.resource, "door");
        assert_eq!(g.until_ms, now + 60_000);
        // A replay of the same receipt is refused.
        let e = w.shop.redeem(inv.as_bytes(), &receipt, now).unwrap_err();
        assert!(e.contains("already redeemed"), "{e}");
    }

    #[test]
    fn bad_receipts_are_refused() {
        let mut w = world(500);
        let now = now_ms();
        let inv = w.shop.invoice(w.client.account(), now).unwrap();
        // Too little.
        let small = pay(&mut w, true, 499, inv.memo());
        assert!(
            w.shop
                .redeem(inv.as_bytes(), &small, now)
                .unwrap_err()
                .contains("amount")
        );
        // Another memo.
        let other = pay(&mut w, true, 500, Memo::Text("hi".into()));
        assert!(
            w.shop
                .redeem(inv.as_bytes(), &other, now)
                .unwrap_err()
                .contains("memo")
        );
        // Expired invoice.
        let good = pay(&mut w, true, 500, inv.memo());
        let late = now + INVOICE_TTL.as_millis() as u64 + 1;
        assert!(w.shop.redeem(inv.as_bytes(), &good, late).is_err());
        // Made out to another client: the receipt's cheque is not from it.
        let inv2 = w.shop.invoice([9; 32], now).unwrap();
        assert!(
            w.shop
                .redeem(inv2.as_bytes(), &good, now)
                .unwrap_err()
                .contains("client")
        );
        // An invoice another object signed.
        let stranger = SignedInvoice::seal(
            &SigningKey::from_bytes(&[4; 32]),
            Invoice {
                object: SigningKey::from_bytes(&[4; 32]).verifying_key().to_bytes(),
                ..inv.invoice().clone()
            },
        )
        .unwrap();
        assert!(
            w.shop
                .redeem(stranger.as_bytes(), &good, now)
                .unwrap_err()
                .contains("did not sign")
        );
        // Garbage.
        assert!(w.shop.redeem(&[0xff; 10], &good, now).is_err());
        assert!(w.shop.redeem(inv.as_bytes(), &[0xff; 10], now).is_err());
        // The good one still works, once.
        assert!(w.shop.redeem(inv.as_bytes(), &good, now).is_ok());
        let _ = &w.client_key;
    }

    #[test]
    fn a_receipt_accepted_by_someone_else_than_the_owner_is_refused() {
        let mut w = world(500);
        let now = now_ms();
        let inv = w.shop.invoice(w.client.account(), now).unwrap();
        // The owner wallet accepts; pretend the shop's owner is someone else.
        let receipt = pay(&mut w, true, 500, inv.memo());
        let other = Shop::new(
            SigningKey::from_bytes(&[3; 32]),
            Offer {
                owner: [8; 32],
                price: 500,
                resource: "door".into(),
                duration: Duration::from_secs(60),
            },
            Database::open(&w._dir.path().join("p.redb")).unwrap(),
        )
        .unwrap();
        assert!(
            other
                .redeem(inv.as_bytes(), &receipt, now)
                .unwrap_err()
                .contains("owner")
        );
    }
}
