//! The swarm actor: one task owns the `Swarm`; everything else sends it a [`Command`] over a
//! bounded channel and awaits a oneshot reply.
//!
//! Kademlia runs with `StoreInserts::FilterBoth`: Kademlia acknowledges inbound puts before we see
//! them (a remote's put "success" means nothing), and we store a record or provider record only
//! after the namespace registry accepted it. A refused record is scored against its sender in
//! [`crate::peers`]; a peer over the threshold is blocked.
//!
//! The redb store writes without fsync on this task; [`Actor::housekeeping`] flushes it on a
//! blocking thread every [`FLUSH_EVERY`], and the actor flushes once more on shutdown.

use std::{
    collections::{HashMap, HashSet},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use futures::StreamExt as _;
use leafnet_config::{KadMode, Valid, transport_of};
use leafnet_wire::key::{DhtKey, RecordError, Registry};
use libp2p::metrics::Recorder as _;
use libp2p::{
    Multiaddr, PeerId, Swarm,
    core::ConnectedPoint,
    identify,
    identity::Keypair,
    kad::{self, QueryId, QueryResult, Record, RecordKey, store::RecordStore as _},
    multiaddr::Protocol,
    ping,
    swarm::{ConnectionId, SwarmEvent},
};
use tokio::sync::{mpsc, oneshot, watch};

use crate::{
    behaviour::{self, Behaviour, BehaviourEvent},
    metrics::Metrics,
    model,
    peers::{PeerAction, PeerScores},
    records::NodeRecord,
};

/// How often pending DHT writes are made durable.
pub const FLUSH_EVERY: Duration = Duration::from_secs(2);
/// Valid records collected by a `get` before it answers early.
const GET_ENOUGH: usize = 3;
/// The most peers remembered in the provider address book.
const ADDR_BOOK_MAX: usize = 4096;

/// A request to the actor.
#[derive(Debug)]
pub enum Command {
    HostInfo(oneshot::Sender<crate::near::HostInfo>),
    Host {
        signed: leafnet_profile::SignedProfile,
        reply: oneshot::Sender<Result<model::Published, String>>,
    },
    Near {
        centre: leafnet_geo::Location,
        radius_m: u32,
        filter: leafnet_geo::protocol::Filter,
        limit: usize,
        reply: oneshot::Sender<Result<crate::near::NearOutcome, String>>,
    },
    Status(oneshot::Sender<model::Status>),
    Peers(oneshot::Sender<Vec<model::Peer>>),
    Provide {
        key: DhtKey,
        reply: oneshot::Sender<Result<model::Provided, String>>,
    },
    Providers {
        key: DhtKey,
        limit: usize,
        reply: oneshot::Sender<Result<model::Providers, String>>,
    },
    GetRecord {
        key: DhtKey,
        reply: oneshot::Sender<Result<model::RecordReply, String>>,
    },
    Dial {
        addr: Multiaddr,
        reply: oneshot::Sender<Result<(), String>>,
    },
    MintObserve {
        statement: leafnet_mint::SignedStatement,
        reply: oneshot::Sender<Result<model::Observed, String>>,
    },
    MintStatus {
        issuer: Option<[u8; 32]>,
        reply: oneshot::Sender<model::MintStatus>,
    },
    MintProofs(oneshot::Sender<Vec<model::MintProof>>),
    Relays(oneshot::Sender<model::Relays>),
    /// Send a leaf request to an account's node.
    LeafSend {
        route: crate::leaf::Route,
        request: crate::leaf::Request,
        reply: oneshot::Sender<Result<crate::leaf::Response, String>>,
    },
    /// Answer a leaf request received earlier.
    LeafRespond {
        id: u64,
        response: crate::leaf::Response,
    },
    /// A peer sent a leaf message an honest peer never sends.
    LeafMisbehaved {
        peer: PeerId,
        why: String,
    },
    /// The wallet task committed these own records (announce them).
    LeafOwnRecords(Vec<Vec<u8>>),
    /// A record seen elsewhere: check it for a fork; `publish` gossips it too.
    LeafSeen {
        entry: Vec<u8>,
        publish: bool,
        /// Verified already by this node (its wallet): not checked again.
        verified: bool,
        reply: Option<oneshot::Sender<Result<String, String>>>,
    },
    /// The proven equivocators and their proofs.
    LeafEquivocators(oneshot::Sender<Vec<([u8; 32], Vec<u8>)>>),
    /// The certifications of a subject in the DHT, merged.
    GetCerts {
        subject: [u8; 32],
        reply: oneshot::Sender<Result<Vec<leafnet_leaf::SignedCertification>, String>>,
    },
    /// Put a (merged) certifications value; answers on how many peers it was stored.
    PutCerts {
        subject: [u8; 32],
        value: Vec<u8>,
        reply: oneshot::Sender<Result<usize, String>>,
    },
}

type ProvideReply = oneshot::Sender<Result<model::Provided, String>>;

pub(crate) struct Conn {
    pub(crate) id: ConnectionId,
    pub(crate) addr: Multiaddr,
    pub(crate) inbound: bool,
}

pub(crate) struct ProvidersQuery {
    started: Instant,
    key: DhtKey,
    limit: usize,
    found: Vec<PeerId>,
    reply: oneshot::Sender<Result<model::Providers, String>>,
}

pub(crate) struct GetQuery {
    started: Instant,
    key: DhtKey,
    valid: usize,
    best: Option<(leafnet_wire::Validated, Vec<u8>)>,
    reply: oneshot::Sender<Result<model::RecordReply, String>>,
}

pub(crate) struct CertsQuery {
    subject: [u8; 32],
    found: Vec<leafnet_leaf::SignedCertification>,
    answers: usize,
    reply: oneshot::Sender<Result<Vec<leafnet_leaf::SignedCertification>, String>>,
}

pub(crate) struct Actor {
    pub(crate) swarm: Swarm<Behaviour>,
    pub(crate) cfg: Valid,
    pub(crate) key: Keypair,
    pub(crate) registry: Registry,
    pub(crate) metrics: Metrics,
    pub(crate) commands: mpsc::Receiver<Command>,
    pub(crate) shutdown: watch::Receiver<bool>,
    pub(crate) started: Instant,
    pub(crate) scores: PeerScores,
    pub(crate) conns: HashMap<PeerId, Vec<Conn>>,
    pub(crate) rtts: HashMap<(PeerId, ConnectionId), Duration>,
    pub(crate) agents: HashMap<PeerId, String>,
    pub(crate) addr_book: HashMap<PeerId, Vec<Multiaddr>>,
    pub(crate) provide_q: HashMap<QueryId, (Instant, DhtKey, ProvideReply)>,
    pub(crate) providers_q: HashMap<QueryId, ProvidersQuery>,
    pub(crate) get_q: HashMap<QueryId, GetQuery>,
    pub(crate) dial_q: HashMap<ConnectionId, oneshot::Sender<Result<(), String>>>,
    pub(crate) bootstrapped: bool,
    pub(crate) node_record_seq: u64,
    pub(crate) node_record_due: Option<Instant>,
    pub(crate) flushing: Option<tokio::task::JoinHandle<()>>,
    pub(crate) account: ed25519_dalek::SigningKey,
    pub(crate) location: Option<leafnet_geo::Location>,
    pub(crate) max_hosted: usize,
    pub(crate) hosted: HashMap<[u8; 32], leafnet_profile::SignedProfile>,
    pub(crate) cells: HashMap<String, usize>,
    pub(crate) near_q: HashMap<u64, crate::near::NearQuery>,
    /// Cell lookups of near queries: query → (near query, index of the cell in it).
    pub(crate) cell_q: HashMap<QueryId, (u64, usize)>,
    pub(crate) geo_out:
        HashMap<libp2p::request_response::OutboundRequestId, (u64, PeerId, crate::near::Out)>,
    /// Cell → providers, reused by radius queries for `cfg.geo_provider_cache`.
    pub(crate) geo_cache: crate::near::ProviderCache,
    pub(crate) put_q: HashMap<QueryId, crate::near::PutWait>,
    pub(crate) next_near: u64,
    /// Cell announcements in flight: query → (cell, attempt).
    pub(crate) announce_q: HashMap<QueryId, (String, u32)>,
    /// Failed cell announcements waiting for their retry.
    pub(crate) announce_retry: Vec<(Instant, String, u32)>,
    pub(crate) profiles_due: Option<Instant>,
    pub(crate) mint: crate::mint::MintState,
    pub(crate) relay: crate::relays::RelayState,
    /// Lookups of relay providers.
    pub(crate) relay_find_q: HashSet<QueryId>,
    /// The leaf service's inbox (`None`: payments off).
    pub(crate) leaf_inputs: Option<mpsc::Sender<crate::leaf::Input>>,
    /// Inbound leaf requests waiting for the service's answer.
    pub(crate) leaf_channels:
        HashMap<u64, libp2p::request_response::ResponseChannel<crate::leaf::Response>>,
    pub(crate) leaf_next: u64,
    /// Certification lookups: query → (subject, values read, reply).
    pub(crate) certs_get_q: HashMap<QueryId, CertsQuery>,
    /// Certification puts in flight.
    pub(crate) certs_put_q: HashMap<QueryId, oneshot::Sender<Result<usize, String>>>,
    /// Fork detection over leaf records.
    pub(crate) heads: crate::leaf_heads::HeadsState,
    /// Outbound leaf requests waiting for their answer.
    pub(crate) leaf_out: HashMap<
        libp2p::request_response::OutboundRequestId,
        oneshot::Sender<Result<crate::leaf::Response, String>>,
    >,
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn is_relayed(a: &Multiaddr) -> bool {
    a.iter().any(|p| matches!(p, Protocol::P2pCircuit))
}

fn is_loopback_or_unspecified(a: &Multiaddr) -> bool {
    a.iter().any(|p| match p {
        Protocol::Ip4(ip) => ip.is_loopback() || ip.is_unspecified(),
        Protocol::Ip6(ip) => ip.is_loopback() || ip.is_unspecified(),
        _ => false,
    })
}

fn is_unspecified(a: &Multiaddr) -> bool {
    a.iter().any(|p| match p {
        Protocol::Ip4(ip) => ip.is_unspecified(),
        Protocol::Ip6(ip) => ip.is_unspecified(),
        _ => false,
    })
}

fn action_for(e: &RecordError) -> PeerAction {
    match e {
        RecordError::Rollback { .. } => PeerAction::MidTolerance,
        _ => PeerAction::LowTolerance,
    }
}

fn reason_label(e: &RecordError) -> &'static str {
    match e {
        RecordError::Key(_) => "bad_key",
        RecordError::UnknownNamespace(_) => "unknown_namespace",
        RecordError::RecordsNotAllowed(_) | RecordError::ProvidersNotAllowed(_) => "not_allowed",
        RecordError::TooLarge { .. } => "too_large",
        RecordError::Expired => "expired",
        RecordError::Invalid(_) => "invalid",
        RecordError::Rollback { .. } => "rollback",
        RecordError::Duplicate => "duplicate",
        _ => "other",
    }
}

impl Actor {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        swarm: Swarm<Behaviour>,
        cfg: Valid,
        key: Keypair,
        account: ed25519_dalek::SigningKey,
        hosted: Vec<leafnet_profile::SignedProfile>,
        mint: crate::mint::MintState,
        metrics: Metrics,
        commands: mpsc::Receiver<Command>,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        let location = cfg
            .location
            .and_then(|(lat, lon)| leafnet_geo::Location::from_degrees(lat, lon).ok());
        let max_hosted = cfg.max_hosted_profiles as usize;
        let seed = u64::from_le_bytes(
            key.public().to_peer_id().to_bytes()[2..10]
                .try_into()
                .unwrap_or([7; 8]),
        ) ^ now_ms();
        let mut a = Self {
            relay: crate::relays::RelayState::new(&cfg, seed),
            relay_find_q: HashSet::new(),
            leaf_inputs: None,
            leaf_channels: HashMap::new(),
            leaf_next: 0,
            heads: Default::default(),
            certs_get_q: HashMap::new(),
            certs_put_q: HashMap::new(),
            leaf_out: HashMap::new(),
            mint,
            account,
            location,
            max_hosted,
            hosted: hosted.into_iter().map(|s| (s.profile.account, s)).collect(),
            cells: HashMap::new(),
            near_q: HashMap::new(),
            cell_q: HashMap::new(),
            geo_out: HashMap::new(),
            geo_cache: Default::default(),
            put_q: HashMap::new(),
            next_near: 0,
            announce_q: HashMap::new(),
            announce_retry: Vec::new(),
            profiles_due: None,
            swarm,
            cfg,
            key,
            registry: crate::records::registry(),
            metrics,
            commands,
            shutdown,
            started: Instant::now(),
            scores: PeerScores::default(),
            conns: HashMap::new(),
            rtts: HashMap::new(),
            agents: HashMap::new(),
            addr_book: HashMap::new(),
            provide_q: HashMap::new(),
            providers_q: HashMap::new(),
            get_q: HashMap::new(),
            dial_q: HashMap::new(),
            bootstrapped: false,
            node_record_seq: 0,
            node_record_due: None,
            flushing: None,
        };
        for a_ in a.cfg.external.clone() {
            a.swarm.add_external_address(a_);
        }
        a.update_kad_mode();
        a.announce_own_location();
        let locs: Vec<_> = a
            .hosted
            .values()
            .filter_map(|s| s.profile.location)
            .collect();
        for l in locs {
            a.add_cells(l);
        }
        a
    }

    /// Dials the bootstrap peers and seeds the routing table with them.
    pub(crate) fn bootstrap(&mut self) {
        for addr in self.cfg.bootstrap.clone() {
            let Some(Protocol::P2p(peer)) = addr.iter().last() else {
                continue;
            };
            if peer == *self.swarm.local_peer_id() {
                continue;
            }
            let mut base = addr.clone();
            base.pop();
            self.swarm.behaviour_mut().kad.add_address(&peer, base);
            if let Err(e) = self.swarm.dial(addr.clone()) {
                tracing::warn!(%addr, error = %e, "cannot dial bootstrap peer");
            }
        }
    }

    /// Runs until shutdown; flushes the store before returning.
    pub(crate) async fn run(mut self) {
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_flush = Instant::now();
        let mut last_redial = Instant::now();
        loop {
            tokio::select! {
                ev = self.swarm.select_next_some() => self.on_event(ev),
                Some(cmd) = self.commands.recv() => self.on_command(cmd),
                _ = tick.tick() => {
                    let now = Instant::now();
                    if now.duration_since(last_flush) >= FLUSH_EVERY {
                        last_flush = now;
                        self.flush_in_background();
                    }
                    if self.conns.is_empty() && now.duration_since(last_redial) >= Duration::from_secs(30) {
                        last_redial = now;
                        self.bootstrap();
                    }
                    self.housekeeping(now);
                }
                _ = self.shutdown.changed() => break,
            }
        }
        tracing::info!("shutting down: flushing the database");
        self.mint_write();
        if let Some(h) = self.flushing.take() {
            let _ = h.await;
        }
        let db = self.db();
        match tokio::task::spawn_blocking(move || db.flush()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "final flush failed"),
            Err(e) => tracing::error!(error = %e, "final flush panicked"),
        }
    }

    /// The node's database (the handle is cheap to clone).
    pub(crate) fn db(&mut self) -> leafnet_storage::Database {
        self.swarm
            .behaviour_mut()
            .kad
            .store_mut()
            .database()
            .clone()
    }

    fn flush_in_background(&mut self) {
        if self.flushing.as_ref().is_some_and(|h| !h.is_finished()) {
            return;
        }
        let mint_dirty = std::mem::take(&mut self.mint.dirty);
        let store = self.swarm.behaviour_mut().kad.store_mut();
        if !store.take_dirty() && !mint_dirty {
            return;
        }
        let db = store.database().clone();
        self.flushing = Some(tokio::task::spawn_blocking(move || {
            if let Err(e) = db.flush() {
                tracing::error!(error = %e, "flushing the database failed");
            }
        }));
    }

    fn housekeeping(&mut self, now: Instant) {
        self.heads_flush(false);
        for p in self.scores.expired_bans(now) {
            self.swarm.behaviour_mut().blocked.unblock_peer(p);
            tracing::info!(peer = %p, "ban expired");
        }
        if self.node_record_due.is_some_and(|t| t <= now) {
            self.publish_node_record();
        }
        self.retry_announcements(now);
        self.mint_tick(now);
        self.relays_tick(now);
        if self.profiles_due.is_some_and(|t| t <= now) {
            self.republish_profiles();
        }
    }

    pub(crate) fn update_kad_mode(&mut self) {
        let mode = match self.cfg.kad_mode {
            KadMode::Server => kad::Mode::Server,
            KadMode::Client => kad::Mode::Client,
            KadMode::Auto => {
                if self.reachable() {
                    kad::Mode::Server
                } else {
                    kad::Mode::Client
                }
            }
        };
        if self.swarm.behaviour().kad.mode() != mode {
            tracing::info!(?mode, "kademlia mode");
        }
        // Always explicit: automatic mode would turn to server on a relayed address.
        self.swarm.behaviour_mut().kad.set_mode(Some(mode));
    }

    /// Publicly reachable (see [`crate::relays`]): a relayed address never counts.
    fn reachable(&self) -> bool {
        self.reachability_now() == crate::relays::Reach::Public
    }

    fn publish_node_record(&mut self) {
        self.node_record_due = Some(Instant::now() + self.cfg.kad.record_ttl / 4);
        let addrs: Vec<Multiaddr> = self
            .swarm
            .external_addresses()
            .filter(|a| !is_relayed(a))
            .take(16)
            .cloned()
            .collect();
        if addrs.is_empty() {
            return;
        }
        let now = now_ms();
        self.node_record_seq = now.max(self.node_record_seq.saturating_add(1));
        let rec = NodeRecord {
            seq: self.node_record_seq,
            expires_at_ms: now.saturating_add(self.cfg.kad.record_ttl.as_millis() as u64),
            agent: behaviour::agent(),
            addrs: addrs
                .iter()
                .map(|a| serde_bytes::ByteBuf::from(a.to_vec()))
                .collect(),
        };
        let Some(value) = rec.seal(&self.key) else {
            return;
        };
        let Ok(key) = DhtKey::new("node", &self.swarm.local_peer_id().to_string()) else {
            return;
        };
        let mut record = Record::new(RecordKey::new(&key.to_bytes()), value);
        record.publisher = Some(*self.swarm.local_peer_id());
        record.expires = Some(Instant::now() + self.cfg.kad.record_ttl);
        if let Err(e) = self
            .swarm
            .behaviour_mut()
            .kad
            .put_record(record, kad::Quorum::One)
        {
            tracing::warn!(error = ?e, "cannot store own node record");
        }
    }

    fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Status(reply) => {
                let _ = reply.send(self.status());
            }
            Command::Peers(reply) => {
                let _ = reply.send(self.peers());
            }
            Command::Provide { key, reply } => {
                match self
                    .swarm
                    .behaviour_mut()
                    .kad
                    .start_providing(RecordKey::new(&key.to_bytes()))
                {
                    Ok(id) => {
                        self.provide_q.insert(id, (Instant::now(), key, reply));
                    }
                    Err(e) => {
                        let _ = reply.send(Err(format!("cannot provide {key}: {e:?}")));
                    }
                }
            }
            Command::Providers { key, limit, reply } => {
                let id = self
                    .swarm
                    .behaviour_mut()
                    .kad
                    .get_providers(RecordKey::new(&key.to_bytes()));
                self.providers_q.insert(
                    id,
                    ProvidersQuery {
                        started: Instant::now(),
                        key,
                        limit,
                        found: Vec::new(),
                        reply,
                    },
                );
            }
            Command::GetRecord { key, reply } => {
                let id = self
                    .swarm
                    .behaviour_mut()
                    .kad
                    .get_record(RecordKey::new(&key.to_bytes()));
                self.get_q.insert(
                    id,
                    GetQuery {
                        started: Instant::now(),
                        key,
                        valid: 0,
                        best: None,
                        reply,
                    },
                );
            }
            Command::HostInfo(reply) => {
                let _ = reply.send(self.host_info());
            }
            Command::Host { signed, reply } => self.host(signed, reply),
            Command::Near {
                centre,
                radius_m,
                filter,
                limit,
                reply,
            } => self.near(centre, radius_m, filter, limit, reply),
            Command::MintObserve { statement, reply } => self.mint_observe(statement, reply),
            Command::MintStatus { issuer, reply } => {
                let _ = reply.send(self.mint_status(issuer));
            }
            Command::Relays(reply) => {
                let _ = reply.send(self.relays());
            }
            Command::MintProofs(reply) => {
                let _ = reply.send(self.mint_proofs());
            }
            Command::LeafSend {
                route,
                request,
                reply,
            } => self.leaf_send(route, request, reply),
            Command::LeafRespond { id, response } => self.leaf_respond(id, response),
            Command::LeafMisbehaved { peer, why } => {
                self.report(peer, PeerAction::LowTolerance, &RecordError::Invalid(why));
            }
            Command::GetCerts { subject, reply } => {
                let id = self
                    .swarm
                    .behaviour_mut()
                    .kad
                    .get_record(RecordKey::new(&crate::certs::record_key(&subject)));
                self.certs_get_q.insert(
                    id,
                    CertsQuery {
                        subject,
                        found: Vec::new(),
                        answers: 0,
                        reply,
                    },
                );
            }
            Command::PutCerts {
                subject,
                value,
                reply,
            } => {
                let mut rec =
                    Record::new(RecordKey::new(&crate::certs::record_key(&subject)), value);
                rec.publisher = Some(*self.swarm.local_peer_id());
                match self
                    .swarm
                    .behaviour_mut()
                    .kad
                    .put_record(rec, kad::Quorum::One)
                {
                    Ok(id) => {
                        self.certs_put_q.insert(id, reply);
                    }
                    Err(e) => {
                        let _ = reply.send(Err(format!("cannot store the record: {e:?}")));
                    }
                }
            }
            c @ (Command::LeafOwnRecords(_)
            | Command::LeafSeen { .. }
            | Command::LeafEquivocators(_)) => self.on_heads_command(c),
            Command::Dial { addr, reply } => {
                let opts = libp2p::swarm::dial_opts::DialOpts::from(addr.clone());
                let id = opts.connection_id();
                match self.swarm.dial(opts) {
                    Ok(()) => {
                        self.dial_q.insert(id, reply);
                    }
                    Err(e) => {
                        let _ = reply.send(Err(format!("cannot dial {addr}: {e}")));
                    }
                }
            }
        }
    }

    fn status(&mut self) -> model::Status {
        let store = self.swarm.behaviour_mut().kad.store_mut();
        let stats = store.stats().unwrap_or_default();
        let db = store.database();
        let storage = model::Storage {
            path: db.path().display().to_string(),
            file_bytes: db.file_size(),
            records: stats.records,
            provider_keys: stats.provider_keys,
            provided_keys: stats.provided_keys,
        };
        let routing_table_size = self
            .swarm
            .behaviour_mut()
            .kad
            .kbuckets()
            .map(|b| b.num_entries())
            .sum();
        model::Status {
            account_id: hex::encode(self.account.verifying_key().to_bytes()),
            location: self.location.map(|l| [l.lat(), l.lon()]),
            hosted_profiles: self.hosted.len(),
            version: env!("CARGO_PKG_VERSION").into(),
            network: self.cfg.network.clone(),
            peer_id: self.swarm.local_peer_id().to_string(),
            listen_addrs: self.swarm.listeners().map(ToString::to_string).collect(),
            external_addrs: self
                .swarm
                .external_addresses()
                .map(ToString::to_string)
                .collect(),
            reachability: self.reachability_now().as_str().into(),
            kad_mode: match self.swarm.behaviour().kad.mode() {
                kad::Mode::Server => "server".into(),
                kad::Mode::Client => "client".into(),
            },
            connected_peers: self.swarm.connected_peers().count(),
            routing_table_size,
            kad_queries_in_flight: self.swarm.behaviour_mut().kad.iter_queries().count(),
            announcements_pending: self.announcements_pending(),
            banned_peers: self.scores.banned(Instant::now()),
            mint_topic_peers: self.mint_topic_peers(),
            mint_items: self.mint.book.len(),
            storage,
            uptime_secs: self.started.elapsed().as_secs(),
        }
    }

    fn peers(&self) -> Vec<model::Peer> {
        let mut out: Vec<model::Peer> = self
            .conns
            .iter()
            .filter_map(|(peer, conns)| {
                // Describe a direct connection when there is one (DCUtR keeps the relayed one
                // open for a moment after the upgrade).
                let c = conns
                    .iter()
                    .find(|c| !is_relayed(&c.addr))
                    .or_else(|| conns.first())?;
                let rtt = conns
                    .iter()
                    .filter_map(|c| self.rtts.get(&(*peer, c.id)))
                    .min();
                let transport = if is_relayed(&c.addr) {
                    "relay"
                } else {
                    transport_of(&c.addr).unwrap_or("unknown")
                };
                Some(model::Peer {
                    path: if conns.iter().any(|c| !is_relayed(&c.addr)) {
                        "direct"
                    } else {
                        "relayed"
                    }
                    .into(),
                    peer_id: peer.to_string(),
                    address: c.addr.to_string(),
                    transport: transport.into(),
                    direction: if c.inbound { "inbound" } else { "outbound" }.into(),
                    rtt_ms: rtt.map(|d| d.as_secs_f64() * 1000.0),
                    agent: self.agents.get(peer).cloned(),
                    connections: conns.len(),
                })
            })
            .collect();
        out.sort_by(|a, b| a.peer_id.cmp(&b.peer_id));
        out
    }

    pub(crate) fn report(&mut self, peer: PeerId, action: PeerAction, why: &RecordError) {
        tracing::debug!(%peer, ?action, reason = %why, "peer misbehaved");
        if self.scores.report(peer, action, Instant::now()) {
            tracing::warn!(%peer, reason = %why, "banning peer");
            self.metrics.peers_banned.inc();
            self.swarm.behaviour_mut().blocked.block_peer(peer);
        }
    }

    pub(crate) fn on_event_public(&mut self, ev: SwarmEvent<BehaviourEvent>) {
        self.on_event(ev);
    }

    fn on_event(&mut self, ev: SwarmEvent<BehaviourEvent>) {
        self.metrics.libp2p.record(&ev);
        match ev {
            SwarmEvent::Behaviour(BehaviourEvent::Kad(e)) => {
                self.metrics.libp2p.record(&e);
                self.on_kad(e);
            }
            SwarmEvent::Behaviour(BehaviourEvent::Identify(e)) => {
                self.metrics.libp2p.record(&e);
                self.on_identify(e);
            }
            SwarmEvent::Behaviour(BehaviourEvent::Geo(e)) => self.on_geo(e),
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(e)) => {
                self.metrics.libp2p.record(&e);
                self.on_gossip(e);
            }
            SwarmEvent::Behaviour(BehaviourEvent::MintSync(e)) => self.on_mint_sync(e),
            SwarmEvent::Behaviour(BehaviourEvent::Autonat(e)) => self.on_autonat(e),
            SwarmEvent::Behaviour(BehaviourEvent::AutonatServer(_)) => {}
            SwarmEvent::Behaviour(BehaviourEvent::RelayServer(e)) => {
                self.metrics.libp2p.record(&e);
                self.on_relay_server(e);
            }
            SwarmEvent::Behaviour(BehaviourEvent::RelayClient(e)) => self.on_relay_client(e),
            SwarmEvent::Behaviour(BehaviourEvent::Dcutr(e)) => {
                self.metrics.libp2p.record(&e);
                self.on_dcutr(e);
            }
            SwarmEvent::Behaviour(BehaviourEvent::Probe(e)) => self.on_probe(e),
            SwarmEvent::Behaviour(BehaviourEvent::Leaf(e)) => self.on_leaf(e),
            SwarmEvent::Behaviour(BehaviourEvent::Ping(e)) => {
                self.metrics.libp2p.record(&e);
                let ping::Event {
                    peer,
                    connection,
                    result,
                } = e;
                if let Ok(rtt) = result {
                    self.rtts.insert((peer, connection), rtt);
                }
            }
            SwarmEvent::NewListenAddr { address, .. } => {
                tracing::info!(%address, "listening");
                if self.cfg.local && !is_unspecified(&address) {
                    self.swarm.add_external_address(address);
                    self.node_record_due = Some(Instant::now() + Duration::from_secs(1));
                }
            }
            SwarmEvent::ExternalAddrConfirmed { address } => {
                if !self.on_external_confirmed(&address) {
                    return;
                }
                tracing::info!(%address, "external address");
                self.update_kad_mode();
                self.node_record_due = Some(Instant::now() + Duration::from_secs(1));
            }
            SwarmEvent::ExternalAddrExpired { .. } => self.update_kad_mode(),
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                endpoint,
                ..
            } => {
                let (addr, inbound) = match endpoint {
                    ConnectedPoint::Dialer { address, .. } => (address, false),
                    ConnectedPoint::Listener { send_back_addr, .. } => (send_back_addr, true),
                };
                let first = !self.conns.contains_key(&peer_id);
                self.conns.entry(peer_id).or_default().push(Conn {
                    id: connection_id,
                    addr,
                    inbound,
                });
                if first {
                    // Anti-entropy on connect: pull what this peer has and we lack.
                    self.mint_sync_with(peer_id);
                }
                self.metrics.connected_peers.set(self.conns.len() as i64);
                if let Some(r) = self.dial_q.remove(&connection_id) {
                    let _ = r.send(Ok(()));
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                connection_id,
                ..
            } => {
                if let Some(v) = self.conns.get_mut(&peer_id) {
                    v.retain(|c| c.id != connection_id);
                    if v.is_empty() {
                        self.conns.remove(&peer_id);
                    }
                }
                self.rtts.remove(&(peer_id, connection_id));
                self.metrics.connected_peers.set(self.conns.len() as i64);
            }
            SwarmEvent::OutgoingConnectionError {
                connection_id,
                error,
                ..
            } => {
                if let Some(r) = self.dial_q.remove(&connection_id) {
                    let _ = r.send(Err(error.to_string()));
                }
            }
            SwarmEvent::NewExternalAddrOfPeer { peer_id, address }
                if (self.addr_book.len() < ADDR_BOOK_MAX
                    || self.addr_book.contains_key(&peer_id)) =>
            {
                let v = self.addr_book.entry(peer_id).or_default();
                if !v.contains(&address) && v.len() < 16 {
                    v.push(address);
                }
            }
            SwarmEvent::ListenerError { error, .. } => tracing::warn!(%error, "listener error"),
            SwarmEvent::ListenerClosed {
                listener_id,
                addresses,
                reason,
            } => {
                tracing::info!(?addresses, ?reason, "listener closed");
                self.on_listener_closed(listener_id);
            }
            _ => {}
        }
    }

    fn on_identify(&mut self, e: identify::Event) {
        let identify::Event::Received { peer_id, info, .. } = e else {
            return;
        };
        self.agents.insert(peer_id, info.agent_version.clone());
        if info.protocol_version != behaviour::identify_version(&self.cfg.network) {
            tracing::debug!(%peer_id, version = %info.protocol_version, "peer of another network");
            return;
        }
        if info.protocols.contains(&libp2p::relay::HOP_PROTOCOL_NAME) {
            self.on_hop_peer(peer_id);
        }
        let kad_proto = behaviour::kad_protocol(&self.cfg.network);
        if !info.protocols.contains(&kad_proto) {
            return;
        }
        for a in info.listen_addrs {
            if is_unspecified(&a) || (!self.cfg.local && is_loopback_or_unspecified(&a)) {
                continue;
            }
            self.swarm.behaviour_mut().kad.add_address(&peer_id, a);
        }
    }

    fn on_kad(&mut self, e: kad::Event) {
        match e {
            kad::Event::InboundRequest { request } => self.on_kad_inbound(request),
            kad::Event::OutboundQueryProgressed {
                id, result, step, ..
            } => self.on_query(id, result, step.last),
            kad::Event::RoutingUpdated {
                is_new_peer: true, ..
            } if self.node_record_seq == 0 => {
                // First peer: publish our node record soon (after the automatic bootstrap).
                self.node_record_due
                    .get_or_insert(Instant::now() + Duration::from_secs(1));
            }
            _ => {}
        }
    }

    fn on_kad_inbound(&mut self, req: kad::InboundRequest) {
        match req {
            kad::InboundRequest::PutRecord {
                source,
                record: Some(record),
                ..
            } if crate::certs::is_certs_key(record.key.as_ref()).is_some() => {
                self.on_certs_put(source, record);
            }
            kad::InboundRequest::PutRecord {
                source,
                record: Some(mut record),
                ..
            } => {
                let store = self.swarm.behaviour_mut().kad.store_mut();
                let stored = store.get(&record.key).map(|r| r.value.clone());
                match self.registry.check_record(
                    record.key.as_ref(),
                    &record.value,
                    stored.as_deref(),
                    now_ms(),
                ) {
                    Ok(v) => {
                        // Never keep a record past the expiry its owner signed.
                        let signed = Instant::now()
                            + Duration::from_millis(v.expires_at_ms.saturating_sub(now_ms()));
                        record.expires = Some(record.expires.map_or(signed, |e| e.min(signed)));
                        match self.swarm.behaviour_mut().kad.store_mut().put(record) {
                            Ok(()) => {
                                self.metrics.records_accepted.inc();
                            }
                            Err(e) => tracing::debug!(error = ?e, "store refused record"),
                        }
                    }
                    Err(e) => {
                        self.metrics.rejected(reason_label(&e));
                        if e.is_misbehaviour() {
                            self.report(source, action_for(&e), &e);
                        }
                    }
                }
            }
            kad::InboundRequest::AddProvider { record: Some(rec) } => {
                match self.registry.check_provider(rec.key.as_ref()) {
                    Ok(_) => {
                        if let Err(e) = self.swarm.behaviour_mut().kad.store_mut().add_provider(rec)
                        {
                            tracing::debug!(error = ?e, "store refused provider record");
                        }
                    }
                    Err(e) => {
                        self.metrics.rejected(reason_label(&e));
                        self.report(rec.provider, action_for(&e), &e);
                    }
                }
            }
            _ => {}
        }
    }

    fn on_query(&mut self, id: QueryId, result: QueryResult, last: bool) {
        match result {
            QueryResult::Bootstrap(Ok(_)) if last => {
                if !self.bootstrapped {
                    tracing::info!("bootstrapped");
                }
                self.bootstrapped = true;
            }
            QueryResult::StartProviding(r) if self.announce_q.contains_key(&id) => {
                self.on_announce_result(id, r.is_ok());
            }
            QueryResult::StartProviding(r) => {
                if let Some((t, key, reply)) = self.provide_q.remove(&id) {
                    let _ = reply.send(Ok(model::Provided {
                        key: key.to_string(),
                        announced: r.is_ok(),
                        elapsed_ms: t.elapsed().as_secs_f64() * 1000.0,
                    }));
                }
            }
            QueryResult::GetProviders(r) if self.cell_q.contains_key(&id) => {
                let (found, closest) = match r {
                    Ok(kad::GetProvidersOk::FoundProviders { providers, .. }) => {
                        (providers.into_iter().collect(), Vec::new())
                    }
                    Ok(kad::GetProvidersOk::FinishedWithNoAdditionalRecord { closest_peers })
                    | Err(kad::GetProvidersError::Timeout { closest_peers, .. }) => {
                        (Vec::new(), closest_peers)
                    }
                };
                self.on_cell_providers(id, found, closest, last);
            }
            QueryResult::PutRecord(r) if self.certs_put_q.contains_key(&id) => {
                if let Some(reply) = self.certs_put_q.remove(&id) {
                    let _ = reply.send(match r {
                        // Quorum one reached: at least one peer holds it (Kademlia does not
                        // say how many more).
                        Ok(_) => Ok(1),
                        Err(kad::PutRecordError::QuorumFailed { success, .. })
                            if success.is_empty() =>
                        {
                            Err("no peer stored the certification (is the node connected?)".into())
                        }
                        Err(kad::PutRecordError::QuorumFailed { success, .. }) => Ok(success.len()),
                        Err(e) => Err(format!("{e:?}")),
                    });
                }
            }
            QueryResult::PutRecord(r) => self.on_put_result(id, r.is_ok()),
            QueryResult::GetRecord(r) if self.certs_get_q.contains_key(&id) => {
                self.on_certs_found(id, r, last);
            }
            QueryResult::GetProviders(r) if self.relay_find_q.contains(&id) => {
                if let Ok(kad::GetProvidersOk::FoundProviders { providers, .. }) = r {
                    self.on_relay_providers(providers);
                }
                if last {
                    self.relay_find_q.remove(&id);
                }
            }
            QueryResult::GetProviders(r) => {
                let Some(q) = self.providers_q.get_mut(&id) else {
                    return;
                };
                if let Ok(kad::GetProvidersOk::FoundProviders { providers, .. }) = r {
                    for p in providers {
                        if !q.found.contains(&p) {
                            q.found.push(p);
                        }
                    }
                }
                if (last || q.found.len() >= q.limit)
                    && let Some(q) = self.providers_q.remove(&id)
                {
                    self.finish_providers(id, q, last);
                }
            }
            QueryResult::GetRecord(r) => {
                let Some(q) = self.get_q.get_mut(&id) else {
                    return;
                };
                if let Ok(kad::GetRecordOk::FoundRecord(pr)) = r {
                    match self
                        .registry
                        .validate(pr.record.key.as_ref(), &pr.record.value, now_ms())
                    {
                        Ok(v) => {
                            q.valid += 1;
                            if q.best.as_ref().is_none_or(|(b, _)| v.seq > b.seq) {
                                q.best = Some((v, pr.record.value));
                            }
                        }
                        Err(e) => {
                            tracing::debug!(peer = ?pr.peer, error = %e, "invalid record read back");
                            if let (Some(peer), true) = (pr.peer, e.is_misbehaviour()) {
                                self.report(peer, action_for(&e), &e);
                            }
                        }
                    }
                }
                let Some(q) = self.get_q.get(&id) else { return };
                if (last || q.valid >= GET_ENOUGH)
                    && let Some(q) = self.get_q.remove(&id)
                {
                    if !last && let Some(mut qm) = self.swarm.behaviour_mut().kad.query_mut(&id) {
                        qm.finish();
                    }
                    let _ = q.reply.send(record_reply(q.key, q.best, q.started));
                }
            }
            _ => {}
        }
    }

    /// An inbound put of certifications: validated, then merged with what is stored.
    fn on_certs_put(&mut self, source: PeerId, mut record: Record) {
        let Some(subject) = crate::certs::is_certs_key(record.key.as_ref()) else {
            return;
        };
        let now = now_ms();
        if let Err(e) = self
            .registry
            .validate(record.key.as_ref(), &record.value, now)
        {
            self.metrics.rejected(reason_label(&e));
            if e.is_misbehaviour() {
                self.report(source, action_for(&e), &e);
            }
            return;
        }
        let store = self.swarm.behaviour_mut().kad.store_mut();
        let stored = store.get(&record.key).map(|r| r.value.clone());
        match crate::certs::merged_value(&subject, stored.as_deref(), &record.value, now) {
            Ok(Some(value)) => {
                let v = self
                    .registry
                    .validate(record.key.as_ref(), &value, now)
                    .map(|v| v.expires_at_ms)
                    .unwrap_or(now);
                record.value = value;
                let signed = Instant::now() + Duration::from_millis(v.saturating_sub(now));
                record.expires = Some(record.expires.map_or(signed, |e| e.min(signed)));
                match self.swarm.behaviour_mut().kad.store_mut().put(record) {
                    Ok(()) => {
                        self.metrics.records_accepted.inc();
                    }
                    Err(e) => tracing::debug!(error = ?e, "store refused certifications"),
                }
            }
            Ok(None) => self.metrics.rejected(reason_label(&RecordError::Duplicate)),
            Err(e) => {
                self.metrics.rejected(reason_label(&e));
                self.report(source, action_for(&e), &e);
            }
        }
    }

    /// A certifications lookup progressed: merge what is valid; answer after a few answers or
    /// at the end.
    fn on_certs_found(&mut self, id: QueryId, r: kad::GetRecordResult, last: bool) {
        let now = now_ms();
        let mut bad = None;
        if let Some(q) = self.certs_get_q.get_mut(&id)
            && let Ok(kad::GetRecordOk::FoundRecord(pr)) = r
        {
            match crate::certs::open_strict(&q.subject, &pr.record.value, now) {
                Ok(list) => {
                    q.answers += 1;
                    let merged = crate::certs::merge(q.found.iter().chain(list.iter()), now);
                    q.found = merged;
                }
                Err(e) => bad = pr.peer.map(|p| (p, e)),
            }
        }
        if let Some((peer, e)) = bad {
            self.report(peer, action_for(&e), &e);
        }
        let done = self
            .certs_get_q
            .get(&id)
            .is_some_and(|q| last || q.answers >= GET_ENOUGH);
        if done && let Some(q) = self.certs_get_q.remove(&id) {
            if !last && let Some(mut qm) = self.swarm.behaviour_mut().kad.query_mut(&id) {
                qm.finish();
            }
            // What this node stores itself counts too (a lookup may not return it).
            let mut found = q.found;
            if let Some(local) = self
                .swarm
                .behaviour_mut()
                .kad
                .store_mut()
                .get(&RecordKey::new(&crate::certs::record_key(&q.subject)))
                && let Ok(list) = crate::certs::open_strict(&q.subject, &local.value, now)
            {
                found = crate::certs::merge(found.iter().chain(list.iter()), now);
            }
            let _ = q.reply.send(Ok(found));
        }
    }

    fn finish_providers(&mut self, id: QueryId, q: ProvidersQuery, last: bool) {
        if !last && let Some(mut qm) = self.swarm.behaviour_mut().kad.query_mut(&id) {
            qm.finish();
        }
        let me = *self.swarm.local_peer_id();
        let own: HashSet<Multiaddr> = self.swarm.external_addresses().cloned().collect();
        let providers = q
            .found
            .iter()
            .map(|p| model::Provider {
                peer_id: p.to_string(),
                addrs: if *p == me {
                    own.iter().map(ToString::to_string).collect()
                } else {
                    self.addr_book
                        .get(p)
                        .into_iter()
                        .flatten()
                        .map(ToString::to_string)
                        .collect()
                },
            })
            .collect();
        let _ = q.reply.send(Ok(model::Providers {
            key: q.key.to_string(),
            providers,
            elapsed_ms: q.started.elapsed().as_secs_f64() * 1000.0,
        }));
    }
}

fn record_reply(
    key: DhtKey,
    best: Option<(leafnet_wire::Validated, Vec<u8>)>,
    started: Instant,
) -> Result<model::RecordReply, String> {
    let Some((v, bytes)) = best else {
        return Err(format!("no valid record found for {key}"));
    };
    let value = match key.namespace.as_str() {
        "node" => match NodeRecord::open(&key.rest, &bytes) {
            Ok(r) => serde_json::json!({
                "agent": r.agent,
                "addrs": r.multiaddrs().iter().map(ToString::to_string).collect::<Vec<_>>(),
            }),
            Err(e) => return Err(e.to_string()),
        },
        "profile" => match leafnet_profile::SignedProfile::open(&bytes, now_ms()) {
            Ok(p) => serde_json::to_value(model::Profile::from(&p.profile)).unwrap_or_default(),
            Err(e) => return Err(e.to_string()),
        },
        _ => serde_json::json!({ "bytes": hex::encode(&bytes) }),
    };
    Ok(model::RecordReply {
        key: key.to_string(),
        seq: v.seq,
        expires_at_ms: v.expires_at_ms,
        value,
        elapsed_ms: started.elapsed().as_secs_f64() * 1000.0,
    })
}
