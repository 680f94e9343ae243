//! Comparing notes on mint files, on the swarm actor.
//!
//! - **Gossip.** One gossipsub topic per network, `/leafnet/<net>/mint/1`. A message is one
//!   [`Item`]: an observation (an issuer's signed statement plus the observer's signature) or an
//!   equivocation proof. Gossipsub runs in `Strict` mode (messages signed by their publisher) and
//!   holds every message until [`Actor::on_gossip`] reports `Accept` (valid, forwarded),
//!   `Reject` (an honest node never sends it: bad signature, malformed, forged proof; the
//!   propagation source takes gossipsub's P4 penalty, which graylists it after
//!   [`crate::behaviour::MINT_GRAYLIST_AFTER`] messages, and is banned at once by
//!   [`crate::peers`], since honest nodes verify before they forward) or `Ignore`
//!   (valid but unwanted: the book is full). The message id is [`leafnet_mint::message_id`]:
//!   observer and statement for an observation, so many observers of one statement are all
//!   counted, while one observer repeating itself is one message.
//! - **Book.** Every item is kept in a [`Book`] (in memory) and in redb (`mint-items-1`). When two
//!   statements of one issuer for one (asset, series) carry different hashes, the book makes the
//!   proof; the node logs it at warn, counts it, stores it and gossips it.
//! - **Anti-entropy.** `/leafnet/<net>/mint-sync/1` (request-response): on every new connection
//!   and every `mint.sync_interval` with one peer, the node compares digests (256 buckets of item
//!   ids), lists the ids of the buckets that differ and fetches the items it lacks, verifying each.
//!   Each side pulls, so two nodes that connect end up with the union.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    time::Instant,
};

use ed25519_dalek::SigningKey;
use leafnet_mint::{
    Added, Book, BookLimits, Item, SignedObservation, SignedStatement, SyncRequest, SyncResponse,
};
use libp2p::{
    PeerId, gossipsub,
    request_response::{self, OutboundRequestId},
};
use serde_bytes::ByteBuf;
use tokio::sync::oneshot;

use crate::{
    model,
    peers::PeerAction,
    swarm::{Actor, now_ms},
};

/// Ids asked for in one `Items` request.
const ITEMS_PER_REQUEST: usize = 64;
/// `Items` requests in flight per sync.
const ITEM_REQUESTS_IN_FLIGHT: usize = 4;
/// The most ids one sync fetches (the rest waits for the next sync).
const MAX_WANTED: usize = 65_536;
/// Syncs in flight at once (new connections beyond it wait for the periodic sync).
const MAX_SYNCS: usize = 32;

fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// The gossip topic of a network.
pub fn topic(network: &str) -> gossipsub::IdentTopic {
    gossipsub::IdentTopic::new(format!("/leafnet/{network}/mint/1"))
}

/// The anti-entropy protocol id of a network.
pub fn sync_protocol(network: &str) -> String {
    format!("/leafnet/{network}/mint-sync/1")
}

/// One pull from one peer.
struct Sync {
    peer: PeerId,
    wanted: VecDeque<[u8; 32]>,
    in_flight: usize,
}

/// The actor's mint state.
pub(crate) struct MintState {
    pub(crate) book: Book,
    topic: gossipsub::IdentTopic,
    observer: SigningKey,
    /// Items learned from peers and not yet written (written at the next tick, one transaction).
    unwritten: Vec<([u8; 32], Vec<u8>)>,
    /// Written without fsync since the last flush.
    pub(crate) dirty: bool,
    syncs: HashMap<u64, Sync>,
    sync_out: HashMap<OutboundRequestId, u64>,
    next_sync: u64,
    last_periodic: Instant,
    periodic_cursor: usize,
    /// When this node first held a proof for a series (unix µs): time to detection.
    detected_us: HashMap<leafnet_mint::SeriesKey, u64>,
    /// Statements verified lately, by id: an observation of one of them verifies only the
    /// observer's signature (bounded; cleared when full).
    verified: HashMap<[u8; 32], SignedStatement>,
}

/// Statements kept in [`MintState::verified`].
const VERIFIED_CACHE: usize = 4096;

impl MintState {
    /// Rebuilds the book from the stored items, verifying every one; rows that no longer verify
    /// are dropped from the database.
    pub(crate) fn load(
        db: &leafnet_storage::Database,
        network: &str,
        observer: SigningKey,
        max_items: usize,
    ) -> anyhow::Result<Self> {
        let limits = BookLimits {
            max_items,
            ..BookLimits::default()
        };
        let mut book = Book::new(limits);
        let mut bad = Vec::new();
        for (id, bytes) in leafnet_storage::mint::all(db)? {
            match Item::decode(&bytes) {
                Ok(item) if item.id() == id => {
                    book.add(item);
                }
                _ => bad.push(id),
            }
        }
        if !bad.is_empty() {
            tracing::warn!(
                rows = bad.len(),
                "dropping stored mint items that no longer verify"
            );
            leafnet_storage::mint::remove(db, &bad)?;
        }
        Ok(Self {
            book,
            topic: topic(network),
            observer,
            unwritten: Vec::new(),
            dirty: false,
            syncs: HashMap::new(),
            sync_out: HashMap::new(),
            next_sync: 0,
            last_periodic: Instant::now(),
            periodic_cursor: 0,
            detected_us: HashMap::new(),
            verified: HashMap::new(),
        })
    }
}

impl Actor {
    /// Adds a verified item to the book; what is new is queued for storage, and a new
    /// equivocation is logged, counted and gossiped.
    fn mint_add(&mut self, item: Item, from: Option<PeerId>) -> Added {
        let id = item.id();
        let bytes = item.to_bytes();
        let added = self.mint.book.add(item);
        match &added {
            Added::New => {
                self.mint.unwritten.push((id, bytes));
                self.metrics.mint_items.inc();
            }
            Added::NewEquivocation(proof) => {
                self.mint.unwritten.push((id, bytes));
                self.metrics.mint_items.inc();
                self.metrics.mint_equivocations.inc();
                let key = proof.key();
                self.mint
                    .detected_us
                    .entry(key.clone())
                    .or_insert_with(now_us);
                let (a, b) = proof.hashes();
                tracing::warn!(
                    issuer = %hex::encode(key.issuer),
                    asset = %key.asset,
                    series = key.series,
                    hash_a = %hex::encode(a),
                    hash_b = %hex::encode(b),
                    from = ?from,
                    "mint issuer equivocated: two signed statements for one series"
                );
                let proof_item = Item::Proof(proof.clone());
                let pid = proof_item.id();
                let pbytes = proof_item.to_bytes();
                drop(proof_item);
                if pid != id {
                    // The book made the proof from two observations (and holds it already):
                    // store and spread it too.
                    self.mint.unwritten.push((pid, pbytes.clone()));
                    self.mint_publish(pbytes);
                }
            }
            Added::Duplicate | Added::Full => {}
        }
        added
    }

    fn mint_publish(&mut self, bytes: Vec<u8>) {
        let topic = self.mint.topic.clone();
        match self.swarm.behaviour_mut().gossipsub.publish(topic, bytes) {
            Ok(_) | Err(gossipsub::PublishError::Duplicate) => {}
            // Anti-entropy carries it to peers that join later.
            Err(gossipsub::PublishError::NoPeersSubscribedToTopic) => {}
            Err(e) => tracing::warn!(error = %e, "cannot publish mint item"),
        }
    }

    /// Writes what was learned since the last tick (one non-durable transaction).
    pub(crate) fn mint_write(&mut self) {
        if self.mint.unwritten.is_empty() {
            return;
        }
        let items = std::mem::take(&mut self.mint.unwritten);
        let db = self.db();
        match leafnet_storage::mint::put_many(&db, &items, false) {
            Ok(()) => self.mint.dirty = true,
            Err(e) => tracing::error!(error = %e, "cannot store mint items"),
        }
    }

    /// This node observed a statement: sign, store durably, gossip.
    pub(crate) fn mint_observe(
        &mut self,
        statement: SignedStatement,
        reply: oneshot::Sender<Result<model::Observed, String>>,
    ) {
        let obs = SignedObservation::seal(&self.mint.observer, &statement, now_ms());
        let item = Item::Observation(obs);
        let id = item.id();
        let bytes = item.to_bytes();
        let added = self.mint_add(item, None);
        if matches!(added, Added::Full) {
            let _ = reply.send(Err("the mint book is full (mint.max_items)".into()));
            return;
        }
        // This one is written below, durably, instead of with the next batch.
        self.mint.unwritten.retain(|(i, _)| *i != id);
        let new = !matches!(added, Added::Duplicate);
        let st = statement.statement();
        let observed = model::Observed {
            statement_id: hex::encode(statement.id()),
            issuer: hex::encode(st.issuer),
            asset: st.asset.clone(),
            series: st.series,
            mint_hash: hex::encode(st.mint_hash),
            new,
            equivocation: self.mint.book.is_equivocator(&st.issuer),
        };
        if !new {
            let _ = reply.send(Ok(observed));
            return;
        }
        // Gossip at once; answer the user only after the durable commit, made off the swarm
        // task so an fsync never stalls the event loop. (A crash in between loses nothing the
        // user was told: the observation is signed and comes back by anti-entropy.)
        self.mint_publish(bytes.clone());
        let db = self.db();
        tokio::task::spawn_blocking(move || {
            let r = leafnet_storage::mint::put_many(&db, &[(id, bytes)], true)
                .map(|()| observed)
                .map_err(|e| format!("cannot store the observation: {e}"));
            let _ = reply.send(r);
        });
    }

    fn mint_remember(&mut self, st: SignedStatement) {
        if self.mint.verified.len() >= VERIFIED_CACHE {
            self.mint.verified.clear();
        }
        self.mint.verified.insert(st.id(), st);
    }

    /// Peers known to be subscribed to the mint topic.
    pub(crate) fn mint_topic_peers(&self) -> usize {
        let hash = self.mint.topic.hash();
        self.swarm
            .behaviour()
            .gossipsub
            .all_peers()
            .filter(|(_, topics)| topics.contains(&&hash))
            .count()
    }

    pub(crate) fn mint_status(&self, issuer: Option<[u8; 32]>) -> model::MintStatus {
        model::MintStatus {
            items: self.mint.book.len(),
            series: self.mint.book.status(issuer.as_ref()),
        }
    }

    pub(crate) fn mint_proofs(&self) -> Vec<model::MintProof> {
        self.mint
            .book
            .proofs()
            .map(|p| {
                let k = p.key();
                let (a, b) = p.hashes();
                model::MintProof {
                    id: hex::encode(p.id()),
                    issuer: hex::encode(k.issuer),
                    asset: k.asset.clone(),
                    series: k.series,
                    hashes: [hex::encode(a), hex::encode(b)],
                    proof_hex: hex::encode(p.proof().to_bytes()),
                    detected_at_us: self.mint.detected_us.get(k).copied(),
                }
            })
            .collect()
    }

    pub(crate) fn on_gossip(&mut self, e: gossipsub::Event) {
        let gossipsub::Event::Message {
            propagation_source,
            message_id,
            message,
        } = e
        else {
            return;
        };
        if message.topic == crate::leaf_heads::topic(&self.cfg.network).hash() {
            self.on_heads_gossip(propagation_source, &message_id, &message.data);
            return;
        }
        use gossipsub::MessageAcceptance as A;
        let cache = &self.mint.verified;
        let decoded = Item::decode_with(&message.data, &|id| cache.get(id).cloned());
        if let Ok(Item::Observation(o)) = &decoded {
            self.mint_remember(o.statement().clone());
        }
        let acceptance = match decoded {
            Ok(item) => match self.mint_add(item, Some(propagation_source)) {
                Added::Full => A::Ignore,
                _ => A::Accept,
            },
            Err(e) if e.is_misbehaviour() => {
                self.metrics.mint_rejected.inc();
                tracing::debug!(peer = %propagation_source, error = %e, "invalid mint gossip");
                let why = leafnet_wire::key::RecordError::Invalid(format!("mint gossip: {e}"));
                self.report(propagation_source, PeerAction::Fatal, &why);
                A::Reject
            }
            Err(_) => A::Ignore,
        };
        self.swarm
            .behaviour_mut()
            .gossipsub
            .report_message_validation_result(&message_id, &propagation_source, acceptance);
    }

    /// Starts a pull from `peer` unless one is running with it already.
    pub(crate) fn mint_sync_with(&mut self, peer: PeerId) {
        if self.mint.syncs.len() >= MAX_SYNCS || self.mint.syncs.values().any(|s| s.peer == peer) {
            return;
        }
        let id = self.mint.next_sync;
        self.mint.next_sync += 1;
        self.mint.syncs.insert(
            id,
            Sync {
                peer,
                wanted: VecDeque::new(),
                in_flight: 0,
            },
        );
        let req = SyncRequest::Digest(self.mint.book.digest());
        self.mint_send(id, peer, &req);
    }

    fn mint_send(&mut self, sync: u64, peer: PeerId, req: &SyncRequest) {
        let rid = self
            .swarm
            .behaviour_mut()
            .mint_sync
            .send_request(&peer, ByteBuf::from(req.encode()));
        self.mint.sync_out.insert(rid, sync);
        if let Some(s) = self.mint.syncs.get_mut(&sync) {
            s.in_flight += 1;
        }
    }

    /// Periodic work: write pending items; every `mint.sync_interval` pull from the next
    /// connected peer.
    pub(crate) fn mint_tick(&mut self, now: Instant) {
        self.mint_write();
        if now.duration_since(self.mint.last_periodic) < self.cfg.mint.sync_interval {
            return;
        }
        self.mint.last_periodic = now;
        let mut peers: Vec<PeerId> = self.conns.keys().copied().collect();
        if peers.is_empty() {
            return;
        }
        peers.sort();
        let p = peers[self.mint.periodic_cursor % peers.len()];
        self.mint.periodic_cursor = self.mint.periodic_cursor.wrapping_add(1);
        self.mint_sync_with(p);
    }

    /// One request of `sync` ended: send the next ones, or end the sync when nothing is left.
    fn mint_sync_step_done(&mut self, sync: u64) {
        if let Some(s) = self.mint.syncs.get_mut(&sync) {
            s.in_flight = s.in_flight.saturating_sub(1);
        }
        self.mint_continue(sync);
    }

    /// Keeps up to [`ITEM_REQUESTS_IN_FLIGHT`] item requests going.
    fn mint_continue(&mut self, sync: u64) {
        loop {
            let Some(s) = self.mint.syncs.get_mut(&sync) else {
                return;
            };
            if s.in_flight >= ITEM_REQUESTS_IN_FLIGHT || s.wanted.is_empty() {
                if s.in_flight == 0 {
                    self.mint.syncs.remove(&sync);
                }
                return;
            }
            let peer = s.peer;
            let n = s.wanted.len().min(ITEMS_PER_REQUEST);
            let ids: Vec<[u8; 32]> = s.wanted.drain(..n).collect();
            self.mint_send(sync, peer, &SyncRequest::Items { ids });
        }
    }

    /// A forged signature, a forged proof or a malformed message: an honest node never sends
    /// one (it verifies before it forwards or serves), so one is enough for a ban
    /// (`notes/reliability.md`, "misbehaving peers are banned").
    fn mint_misbehaved(&mut self, peer: PeerId, what: String) {
        self.metrics.mint_rejected.inc();
        let why = leafnet_wire::key::RecordError::Invalid(what);
        self.report(peer, PeerAction::Fatal, &why);
    }

    pub(crate) fn on_mint_sync(&mut self, e: request_response::Event<ByteBuf, ByteBuf>) {
        use request_response::{Event, Message};
        match e {
            Event::Message {
                peer,
                message:
                    Message::Request {
                        request, channel, ..
                    },
                ..
            } => {
                let resp = match SyncRequest::decode(&request) {
                    Ok(SyncRequest::Digest(_)) => SyncResponse::Digest(self.mint.book.digest()),
                    Ok(SyncRequest::Ids { buckets }) => {
                        let mut ids = Vec::new();
                        for b in buckets {
                            ids.extend(self.mint.book.ids_in(b));
                        }
                        ids.truncate(leafnet_mint::MAX_IDS);
                        SyncResponse::Ids(ids)
                    }
                    Ok(SyncRequest::Items { ids }) => SyncResponse::Items(
                        ids.iter()
                            .filter_map(|id| self.mint.book.get(id))
                            .map(|i| ByteBuf::from(i.to_bytes()))
                            .collect(),
                    ),
                    Err(e) => {
                        self.mint_misbehaved(peer, format!("mint sync request: {e}"));
                        return;
                    }
                };
                let _ = self
                    .swarm
                    .behaviour_mut()
                    .mint_sync
                    .send_response(channel, ByteBuf::from(resp.encode()));
            }
            Event::Message {
                peer,
                message:
                    Message::Response {
                        request_id,
                        response,
                    },
                ..
            } => {
                let Some(sync) = self.mint.sync_out.remove(&request_id) else {
                    return;
                };
                match SyncResponse::decode(&response) {
                    Ok(SyncResponse::Digest(theirs)) => {
                        let ours = self.mint.book.digest();
                        let buckets = leafnet_mint::differing_buckets(&ours, &theirs);
                        if !buckets.is_empty() {
                            self.mint_send(sync, peer, &SyncRequest::Ids { buckets });
                        }
                    }
                    Ok(SyncResponse::Ids(ids)) => {
                        let mut seen = HashSet::new();
                        let wanted: VecDeque<[u8; 32]> = ids
                            .into_iter()
                            .filter(|id| !self.mint.book.contains(id) && seen.insert(*id))
                            .take(MAX_WANTED)
                            .collect();
                        if let Some(s) = self.mint.syncs.get_mut(&sync) {
                            s.wanted = wanted;
                        }
                    }
                    Ok(SyncResponse::Items(items)) => {
                        for b in items {
                            let cache = &self.mint.verified;
                            let decoded = Item::decode_with(&b, &|id| cache.get(id).cloned());
                            if let Ok(Item::Observation(o)) = &decoded {
                                self.mint_remember(o.statement().clone());
                            }
                            match decoded {
                                Ok(item) => {
                                    self.mint_add(item, Some(peer));
                                }
                                Err(e) if e.is_misbehaviour() => {
                                    self.mint_misbehaved(peer, format!("mint sync item: {e}"));
                                    break;
                                }
                                Err(_) => {}
                            }
                        }
                    }
                    Err(e) => self.mint_misbehaved(peer, format!("mint sync response: {e}")),
                }
                self.mint_sync_step_done(sync);
            }
            Event::OutboundFailure { request_id, .. } => {
                if let Some(sync) = self.mint.sync_out.remove(&request_id) {
                    // The peer does not speak the protocol, went away or timed out: drop the
                    // pull; the periodic sync tries again later.
                    if let Some(s) = self.mint.syncs.get_mut(&sync) {
                        s.wanted.clear();
                    }
                    self.mint_sync_step_done(sync);
                }
            }
            _ => {}
        }
    }
}
