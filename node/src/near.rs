//! Profiles and the location network, on the swarm actor.
//!
//! - Hosting: the actor keeps every hosted profile (the owner's and, up to
//!   `node.max_hosted_profiles`, other people's) in memory; the durable copy is in redb
//!   (`leafnet_storage::profiles`, written by [`crate::publish`] before the user gets an answer).
//!   Each hosted profile is put in the DHT under `/leafnet/profile/<account>` and its location's
//!   cells are announced as provider records `/leafnet/geo/<cell>` (reference-counted, so a cell
//!   is withdrawn when nothing hosted is there any more). The node's own location is announced
//!   the same way. Profiles are republished every [`REPUBLISH`]; the owner's is re-signed.
//! - Radius queries ([`NearQuery`]): for every cell of `leafnet_geo::cover(centre, radius)`, in
//!   parallel, the query lists the cell's providers (hosts), then asks each host over
//!   `/leafnet/<net>/geo/1` for its profiles inside the circle; every returned profile is
//!   verified again, filtered, deduplicated by account (highest `seq`) and sorted by distance.
//!   The query answers when every cell is listed and every host request ended.
//! - Listing a cell's providers. Kademlia (libp2p-kad 0.49) cuts every GET_PROVIDERS answer to
//!   k providers, while holders store up to [`GEO_PROVIDERS_PER_KEY`]. So a cell is listed, in
//!   this order:
//!   1. from the provider cache, if the cell was listed less than `Valid::geo_provider_cache`
//!      ago (30 s by default; a host that announced since is missed until then);
//!   2. otherwise from the local store, plus a `Providers` request to the [`HOLDERS_ASKED`]
//!      peers of the routing table closest to the cell key, no iterative lookup;
//!   3. if none of them answered, or none counts itself among the k closest to the key (the
//!      `closer` field of its answer), by an iterative GET_PROVIDERS lookup; if the lookup's
//!      answers reached k providers (so they may be cut), by `Providers` to the closest peers
//!      the lookup found.
//!
//!   A list at the cap is refined into the finer cells that meet the circle (every host
//!   announces all precisions); at the finest precision the cell is reported in
//!   `NearOutcome::saturated`, as is a cell whose full list could not be read. Hosts that do
//!   not answer are reported in `NearOutcome::failed`.

use std::{
    collections::{HashMap, HashSet},
    time::{Duration, Instant},
};

use leafnet_geo::{Location, protocol as geo};
use leafnet_profile::{AccountId, Profile, SignedProfile};
use libp2p::{
    Multiaddr, PeerId,
    kad::{self, QueryId, Record, RecordKey, store::RecordStore as _},
    request_response,
};
use tokio::sync::oneshot;

use crate::{
    model,
    peers::PeerAction,
    swarm::{Actor, now_ms},
};

/// Providers stored per geo cell key (instead of k), so a node knows every host of a coarse cell.
/// Kademlia still truncates each GET_PROVIDERS *answer* to k providers; a query therefore reads
/// the full list with `geo/1`'s `Providers` request (see the module docs and ARCHITECTURE.md).
pub const GEO_PROVIDERS_PER_KEY: usize = 256;
const _: () = assert!(GEO_PROVIDERS_PER_KEY == geo::MAX_PROVIDERS);
/// How long the owner's profile stays valid after each signing.
pub const PROFILE_TTL: Duration = Duration::from_secs(24 * 3600);
/// How often hosted profiles are put in the DHT again (and the owner's re-signed).
pub const REPUBLISH: Duration = Duration::from_secs(6 * 3600);

/// What a client needs to build the owner's profile.
#[derive(Debug, Clone)]
pub struct HostInfo {
    pub peer_id: PeerId,
    pub addrs: Vec<Multiaddr>,
    pub own: Option<SignedProfile>,
}

/// The raw outcome of a radius query.
#[derive(Debug, Default)]
pub struct NearOutcome {
    pub precision: usize,
    /// Cells whose providers were listed (the cover's, plus finer ones of crowded cells).
    pub cells: usize,
    /// Iterative Kademlia GET_PROVIDERS lookups run (the fallback, see the module docs).
    pub lookups: usize,
    /// `Providers` requests sent to record holders.
    pub provider_requests: usize,
    /// Cells answered from the provider cache.
    pub cache_hits: usize,
    pub contacted: usize,
    /// Finest-precision cells whose provider lists came back full (or could only be read cut
    /// short): hosts there may be missing.
    pub saturated: Vec<String>,
    /// Hosts whose answer never came (unreachable, timed out): their profiles are missing.
    pub failed: Vec<PeerId>,
    pub profiles: Vec<(f64, SignedProfile)>,
    pub nodes: Vec<(PeerId, Location, f64)>,
}

/// Record holders asked for a cell's providers at once (Kademlia's α).
pub const HOLDERS_ASKED: usize = 3;
/// Cells kept in the provider cache.
const CACHE_CELLS: usize = 1024;
/// The most distinct providers one cell of a query collects (the union of the holders' lists).
const CELL_PROVIDERS_MAX: usize = geo::MAX_PROVIDERS * (HOLDERS_ASKED + 1);

type ProviderList = Vec<(PeerId, Vec<Multiaddr>)>;

/// Cell → providers, as a radius query last listed them; entries live
/// `Valid::geo_provider_cache` (30 s by default). A host that announced a cell after the entry
/// was made is missed until it expires; a host that failed to answer drops every entry it is in.
#[derive(Debug, Default)]
pub(crate) struct ProviderCache {
    entries: HashMap<String, (Instant, ProviderList)>,
}

impl ProviderCache {
    fn get(&self, cell: &str, ttl: Duration, now: Instant) -> Option<&ProviderList> {
        self.entries
            .get(cell)
            .filter(|(t, _)| now.saturating_duration_since(*t) < ttl)
            .map(|(_, l)| l)
    }

    fn put(&mut self, cell: String, list: ProviderList, ttl: Duration, now: Instant) {
        if ttl.is_zero() {
            return;
        }
        if self.entries.len() >= CACHE_CELLS && !self.entries.contains_key(&cell) {
            self.entries
                .retain(|_, (t, _)| now.saturating_duration_since(*t) < ttl);
            if self.entries.len() >= CACHE_CELLS
                && let Some(oldest) = self
                    .entries
                    .iter()
                    .min_by_key(|(_, (t, _))| *t)
                    .map(|(c, _)| c.clone())
            {
                self.entries.remove(&oldest);
            }
        }
        self.entries.insert(cell, (now, list));
    }

    fn forget_peer(&mut self, peer: &PeerId) {
        self.entries
            .retain(|_, (_, l)| !l.iter().any(|(p, _)| p == peer));
    }
}

/// How far the listing of one cell got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// `Providers` asked of the closest peers of our own routing table.
    Direct,
    /// An iterative GET_PROVIDERS lookup is running.
    Lookup,
    /// The lookup's answers were cut at k: `Providers` asked of the closest peers it found.
    Holders,
    Done,
}

/// One cell of a radius query.
struct CellState {
    cell: String,
    phase: Phase,
    /// Distinct providers found so far (bounded by [`CELL_PROVIDERS_MAX`]).
    found: HashSet<PeerId>,
    /// Providers the iterative lookup returned.
    lookup_found: HashSet<PeerId>,
    /// Peers sent `Providers` for this cell.
    holders_asked: HashSet<PeerId>,
    /// `Providers` requests in flight.
    pending: usize,
    /// `Providers` answers received in the current phase.
    answered: usize,
    /// Some answer came from a peer that counts itself among the k closest to the key.
    authoritative: bool,
    /// Some list was at its cap, or the list could only be read cut short.
    full: bool,
}

impl CellState {
    fn new(cell: String) -> Self {
        Self {
            cell,
            phase: Phase::Direct,
            found: HashSet::new(),
            lookup_found: HashSet::new(),
            holders_asked: HashSet::new(),
            pending: 0,
            answered: 0,
            authoritative: false,
            full: false,
        }
    }
}

/// What an outbound `geo/1` request was for.
#[derive(Debug, Clone)]
pub(crate) enum Out {
    Profiles(geo::ProfilesRequest),
    /// The providers of cell number `.0` of the query.
    Providers(usize),
}

pub(crate) struct NearQuery {
    req: geo::ProfilesRequest,
    limit: usize,
    cells: Vec<CellState>,
    cells_pending: usize,
    requests_pending: usize,
    asked: HashSet<PeerId>,
    profiles: HashMap<[u8; 32], (f64, SignedProfile)>,
    nodes: HashMap<PeerId, Location>,
    outcome: NearOutcome,
    reply: oneshot::Sender<Result<NearOutcome, String>>,
}

impl NearQuery {
    fn accept(&mut self, peer: PeerId, resp: &geo::ProfilesResponse) {
        if let Some(l) = resp.node_location
            && l.is_valid()
            && leafnet_geo::distance_m(self.req.centre, l) <= f64::from(self.req.radius_m)
        {
            self.nodes.insert(peer, l);
        }
        let now = now_ms();
        for b in &resp.profiles {
            let Ok(s) = SignedProfile::open(b, now) else {
                continue;
            };
            let Some(d) = geo::matches(
                &s.profile,
                self.req.centre,
                self.req.radius_m,
                &self.req.filter,
            ) else {
                continue;
            };
            match self.profiles.get(&s.profile.account) {
                Some((_, old)) if old.profile.seq >= s.profile.seq => {}
                _ => {
                    self.profiles.insert(s.profile.account, (d, s));
                }
            }
        }
    }

    fn done(&self) -> bool {
        self.cells_pending == 0 && self.requests_pending == 0
    }

    fn finish(mut self) {
        let mut profiles: Vec<(f64, SignedProfile)> = self.profiles.into_values().collect();
        profiles
            .sort_by(|a, b| geo::order((a.0, &a.1.profile.account), (b.0, &b.1.profile.account)));
        profiles.truncate(self.limit);
        let mut nodes: Vec<(PeerId, Location, f64)> = self
            .nodes
            .into_iter()
            .map(|(p, l)| (p, l, leafnet_geo::distance_m(self.req.centre, l)))
            .collect();
        nodes.sort_by(|a, b| a.2.total_cmp(&b.2).then_with(|| a.0.cmp(&b.0)));
        nodes.truncate(self.limit);
        self.outcome.contacted = self.asked.len();
        self.outcome.profiles = profiles;
        self.outcome.nodes = nodes;
        let _ = self.reply.send(Ok(self.outcome));
    }
}

/// A `Host` command waiting for its DHT put.
pub(crate) struct PutWait {
    started: Instant,
    profile: Profile,
    cells: usize,
    reply: oneshot::Sender<Result<model::Published, String>>,
}

fn profile_key(account: &[u8; 32]) -> RecordKey {
    RecordKey::new(&AccountId(*account).profile_key())
}

fn geo_key(cell: &str) -> RecordKey {
    RecordKey::new(&format!("/leafnet/geo/{cell}"))
}

impl Actor {
    pub(crate) fn host_info(&self) -> HostInfo {
        HostInfo {
            peer_id: *self.swarm.local_peer_id(),
            // Direct addresses first, then the circuit addresses of a private node's relays
            // (so a profile tells how to reach its host behind NAT).
            addrs: {
                let relayed = |a: &Multiaddr| {
                    a.iter()
                        .any(|p| matches!(p, libp2p::multiaddr::Protocol::P2pCircuit))
                };
                let mut v: Vec<Multiaddr> = self
                    .swarm
                    .external_addresses()
                    .filter(|a| !relayed(a))
                    .cloned()
                    .collect();
                v.extend(
                    self.swarm
                        .external_addresses()
                        .filter(|a| relayed(a))
                        .cloned(),
                );
                v.truncate(leafnet_profile::record::MAX_ADDRS);
                v
            },
            own: self
                .hosted
                .get(&self.account.verifying_key().to_bytes())
                .cloned(),
        }
    }

    fn hosted_others(&self) -> usize {
        let me = self.account.verifying_key().to_bytes();
        self.hosted.keys().filter(|k| **k != me).count()
    }

    /// Announces one cell; a failed announcement is retried by [`Actor::retry_announcements`].
    fn announce_cell(&mut self, cell: &str, attempt: u32) {
        match self
            .swarm
            .behaviour_mut()
            .kad
            .start_providing(geo_key(cell))
        {
            Ok(qid) => {
                self.announce_q.insert(qid, (cell.to_owned(), attempt));
            }
            Err(e) => tracing::warn!(%cell, error = ?e, "cannot announce geo cell"),
        }
    }

    /// The outcome of a cell announcement: Kademlia gives up on a `start_providing` whose
    /// lookup timed out without telling any peer, and would only try again at the next
    /// provider republication (hours later), so the node retries with backoff.
    pub(crate) fn on_announce_result(&mut self, qid: QueryId, ok: bool) -> bool {
        let Some((cell, attempt)) = self.announce_q.remove(&qid) else {
            return false;
        };
        if !ok && self.cells.contains_key(&cell) {
            let backoff = Duration::from_secs(2u64.saturating_pow(attempt.min(5)));
            tracing::debug!(%cell, attempt, ?backoff, "geo cell announcement failed; retrying");
            self.announce_retry
                .push((Instant::now() + backoff, cell, attempt + 1));
        }
        true
    }

    /// Re-announces cells whose announcement failed, once their backoff passed.
    pub(crate) fn retry_announcements(&mut self, now: Instant) {
        let due: Vec<(String, u32)> = self
            .announce_retry
            .iter()
            .filter(|(t, _, _)| *t <= now)
            .map(|(_, c, a)| (c.clone(), *a))
            .collect();
        self.announce_retry.retain(|(t, _, _)| *t > now);
        for (cell, attempt) in due {
            if self.cells.contains_key(&cell) {
                self.announce_cell(&cell, attempt);
            }
        }
    }

    /// Cell announcements running or waiting for a retry.
    pub(crate) fn announcements_pending(&self) -> usize {
        self.announce_q.len() + self.announce_retry.len()
    }

    pub(crate) fn add_cells(&mut self, loc: Location) {
        for c in leafnet_geo::cells(loc) {
            let n = self.cells.entry(c.clone()).or_insert(0);
            *n += 1;
            if *n == 1 {
                self.announce_cell(&c, 0);
            }
        }
    }

    fn remove_cells(&mut self, loc: Location) {
        for c in leafnet_geo::cells(loc) {
            if let Some(n) = self.cells.get_mut(&c) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    self.cells.remove(&c);
                    self.swarm.behaviour_mut().kad.stop_providing(&geo_key(&c));
                }
            }
        }
    }

    /// Announces the node's own location (at start).
    pub(crate) fn announce_own_location(&mut self) {
        if let Some(l) = self.location {
            self.add_cells(l);
        }
    }

    /// Hosts (or updates) a verified profile: checks it may be hosted here, announces its cells
    /// and puts it in the DHT; answers when the put ended.
    pub(crate) fn host(
        &mut self,
        s: SignedProfile,
        reply: oneshot::Sender<Result<model::Published, String>>,
    ) {
        let me = *self.swarm.local_peer_id();
        if s.profile.host_peer() != Some(me) {
            let _ = reply.send(Err(format!(
                "the profile names host {}, not this node ({me})",
                s.profile
                    .host_peer()
                    .map(|p| p.to_string())
                    .unwrap_or_default()
            )));
            return;
        }
        let acct = s.profile.account;
        let own = acct == self.account.verifying_key().to_bytes();
        let old_loc = match self.hosted.get(&acct) {
            Some(old) if old.bytes == s.bytes => None,
            Some(old) if old.profile.seq >= s.profile.seq => {
                let _ = reply.send(Err(format!(
                    "a newer profile (seq {}) is hosted already; this one has seq {}",
                    old.profile.seq, s.profile.seq
                )));
                return;
            }
            Some(old) if old.profile.kind != s.profile.kind => {
                let _ = reply.send(Err(format!(
                    "the kind of a profile is fixed at creation ({})",
                    old.profile.kind.as_str()
                )));
                return;
            }
            Some(old) => old.profile.location,
            None if !own && self.hosted_others() >= self.max_hosted => {
                let _ = reply.send(Err(format!(
                    "this node hosts {} profiles of others already (node.max_hosted_profiles)",
                    self.max_hosted
                )));
                return;
            }
            None => None,
        };
        let same = self.hosted.get(&acct).is_some_and(|o| o.bytes == s.bytes);
        if !same {
            if let Some(l) = old_loc {
                self.remove_cells(l);
            }
            if let Some(l) = s.profile.location {
                self.add_cells(l);
            }
            self.hosted.insert(acct, s.clone());
        }
        let cells = if s.profile.location.is_some() {
            leafnet_geo::PRECISIONS.len()
        } else {
            0
        };
        match self.put_profile(&s) {
            Ok(qid) => {
                self.put_q.insert(
                    qid,
                    PutWait {
                        started: Instant::now(),
                        profile: s.profile,
                        cells,
                        reply,
                    },
                );
            }
            Err(e) => {
                let _ = reply.send(Err(e));
            }
        }
    }

    fn put_profile(&mut self, s: &SignedProfile) -> Result<QueryId, String> {
        let mut record = Record::new(profile_key(&s.profile.account), s.bytes.clone());
        record.publisher = Some(*self.swarm.local_peer_id());
        record.expires = Some(
            Instant::now()
                + Duration::from_millis(s.profile.expires_at_ms.saturating_sub(now_ms())),
        );
        self.swarm
            .behaviour_mut()
            .kad
            .put_record(record, kad::Quorum::One)
            .map_err(|e| format!("cannot store the profile record: {e:?}"))
    }

    pub(crate) fn on_put_result(&mut self, id: QueryId, ok: bool) {
        if let Some(w) = self.put_q.remove(&id) {
            let _ = w.reply.send(Ok(model::Published {
                profile: model::Profile::from(&w.profile),
                stored_remotely: ok,
                cells: w.cells,
                elapsed_ms: w.started.elapsed().as_secs_f64() * 1000.0,
            }));
        }
    }

    /// Puts every hosted profile in the DHT again, re-signing the owner's; drops expired ones.
    pub(crate) fn republish_profiles(&mut self) {
        self.profiles_due = Some(Instant::now() + REPUBLISH);
        let now = now_ms();
        let me = self.account.verifying_key().to_bytes();
        let expired: Vec<[u8; 32]> = self
            .hosted
            .iter()
            .filter(|(_, s)| s.profile.expires_at_ms <= now)
            .map(|(k, _)| *k)
            .collect();
        for k in expired {
            if let Some(s) = self.hosted.remove(&k) {
                if let Some(l) = s.profile.location {
                    self.remove_cells(l);
                }
                let db = self.db();
                tokio::task::spawn_blocking(move || leafnet_storage::profiles::remove(&db, &k));
            }
        }
        if let Some(own) = self.hosted.get(&me).cloned()
            && own.profile.expires_at_ms.saturating_sub(now)
                < (PROFILE_TTL - REPUBLISH).as_millis() as u64
        {
            let mut p = own.profile.clone();
            p.seq = now.max(p.seq.saturating_add(1));
            p.expires_at_ms = now.saturating_add(PROFILE_TTL.as_millis() as u64);
            let info = self.host_info();
            p.host_addrs = info
                .addrs
                .iter()
                .map(|a| serde_bytes::ByteBuf::from(a.to_vec()))
                .collect();
            let s = p.seal(&self.account);
            let db = self.db();
            let (acct, bytes) = (p.account, s.bytes.clone());
            tokio::task::spawn_blocking(move || leafnet_storage::profiles::put(&db, &acct, &bytes));
            self.hosted.insert(me, s);
        }
        let all: Vec<SignedProfile> = self.hosted.values().cloned().collect();
        for s in all {
            let _ = self.put_profile(&s);
        }
    }

    /// Starts a radius query.
    pub(crate) fn near(
        &mut self,
        centre: Location,
        radius_m: u32,
        filter: geo::Filter,
        limit: usize,
        reply: oneshot::Sender<Result<NearOutcome, String>>,
    ) {
        let (precision, cells) = leafnet_geo::cover(centre, f64::from(radius_m));
        let id = self.next_near;
        self.next_near += 1;
        let req = geo::ProfilesRequest {
            centre,
            radius_m,
            filter,
            offset: 0,
            limit: u32::try_from(limit).unwrap_or(u32::MAX).min(geo::MAX_PAGE),
        };
        let q = NearQuery {
            req,
            limit,
            cells: Vec::new(),
            cells_pending: 0,
            requests_pending: 0,
            asked: HashSet::new(),
            profiles: HashMap::new(),
            nodes: HashMap::new(),
            outcome: NearOutcome {
                precision,
                ..Default::default()
            },
            reply,
        };
        self.near_q.insert(id, q);
        for c in cells {
            self.start_cell(id, c);
        }
        self.maybe_finish(id);
    }

    /// Starts listing the providers of one cell: from the cache if fresh; otherwise from the
    /// local store and a `Providers` request to the [`HOLDERS_ASKED`] peers of the routing
    /// table closest to the cell key (an iterative lookup when there are none).
    fn start_cell(&mut self, id: u64, cell: String) {
        let ttl = self.cfg.geo_provider_cache;
        let now = Instant::now();
        let cached = self.geo_cache.get(&cell, ttl, now).cloned();
        let Some(q) = self.near_q.get_mut(&id) else {
            return;
        };
        let idx = q.cells.len();
        q.cells.push(CellState::new(cell.clone()));
        q.cells_pending += 1;
        q.outcome.cells += 1;
        if let Some(list) = cached {
            q.outcome.cache_hits += 1;
            for (p, a) in list {
                self.add_provider(id, idx, p, &a);
            }
            self.add_own(id, idx);
            self.complete_cell(id, idx, false);
            return;
        }
        let key = geo_key(&cell);
        let local: ProviderList = self
            .swarm
            .behaviour_mut()
            .kad
            .store_mut()
            .providers(&key)
            .into_iter()
            .filter(|r| !r.is_expired(now))
            .map(|r| (r.provider, r.addresses))
            .collect();
        for (p, a) in local {
            self.add_provider(id, idx, p, &a);
        }
        self.add_own(id, idx);
        let target = kad::KBucketKey::new(key);
        let n = if self.cfg.geo_direct {
            HOLDERS_ASKED
        } else {
            0
        };
        let holders: Vec<PeerId> = self
            .swarm
            .behaviour_mut()
            .kad
            .get_closest_local_peers(&target)
            .take(n)
            .map(kad::KBucketKey::into_preimage)
            .collect();
        if holders.is_empty() {
            self.start_lookup(id, idx);
        } else {
            for h in holders {
                self.send_providers(id, idx, h);
            }
        }
    }

    /// This node, when it announces the cell itself (always current, whatever the cache says).
    fn add_own(&mut self, id: u64, idx: usize) {
        let own = self
            .near_q
            .get(&id)
            .and_then(|q| q.cells.get(idx))
            .is_some_and(|c| self.cells.contains_key(&c.cell));
        if own {
            let me = *self.swarm.local_peer_id();
            self.add_provider(id, idx, me, &[]);
        }
    }

    /// A provider of a cell: remembered for the cell and asked for its profiles (once per query).
    fn add_provider(&mut self, id: u64, idx: usize, peer: PeerId, addrs: &[Multiaddr]) {
        let me = *self.swarm.local_peer_id();
        let Some(q) = self.near_q.get_mut(&id) else {
            return;
        };
        if let Some(c) = q.cells.get_mut(idx)
            && c.found.len() < CELL_PROVIDERS_MAX
        {
            c.found.insert(peer);
        }
        if !q.asked.insert(peer) {
            return;
        }
        let req = q.req.clone();
        if peer == me {
            let resp = geo::select(self.hosted.values(), &req, self.location);
            // paging is not needed locally: ask for everything at once
            let resp = if resp.total as usize > resp.profiles.len() {
                let all = geo::ProfilesRequest {
                    limit: u32::MAX,
                    ..req
                };
                let mut full = geo::select(self.hosted.values(), &all, self.location);
                full.profiles.truncate(q.limit);
                full
            } else {
                resp
            };
            q.accept(peer, &resp);
        } else {
            self.send_profiles(id, peer, req, addrs);
        }
    }

    fn start_lookup(&mut self, id: u64, idx: usize) {
        let Some(cell) = self
            .near_q
            .get(&id)
            .and_then(|q| q.cells.get(idx))
            .map(|c| c.cell.clone())
        else {
            return;
        };
        let qid = self.swarm.behaviour_mut().kad.get_providers(geo_key(&cell));
        self.cell_q.insert(qid, (id, idx));
        if let Some(q) = self.near_q.get_mut(&id) {
            q.outcome.lookups += 1;
            if let Some(c) = q.cells.get_mut(idx) {
                c.phase = Phase::Lookup;
                c.answered = 0;
            }
        }
    }

    fn send_providers(&mut self, id: u64, idx: usize, peer: PeerId) {
        let Some(q) = self.near_q.get_mut(&id) else {
            return;
        };
        let Some(c) = q.cells.get_mut(idx) else {
            return;
        };
        c.holders_asked.insert(peer);
        c.pending += 1;
        q.outcome.provider_requests += 1;
        let req = geo::Request::Providers {
            cell: c.cell.clone(),
        };
        let addrs = self.dial_addrs(self.addr_book.get(&peer).cloned().unwrap_or_default());
        let rid = self
            .swarm
            .behaviour_mut()
            .geo
            .send_request_with_addresses(&peer, req, addrs);
        self.geo_out.insert(rid, (id, peer, Out::Providers(idx)));
    }

    fn send_profiles(
        &mut self,
        id: u64,
        peer: PeerId,
        req: geo::ProfilesRequest,
        extra: &[Multiaddr],
    ) {
        let mut addrs = self.addr_book.get(&peer).cloned().unwrap_or_default();
        for a in extra {
            if addrs.len() >= 16 {
                break;
            }
            if !addrs.contains(a) {
                addrs.push(a.clone());
            }
        }
        let addrs = self.dial_addrs(addrs);
        let rid = self.swarm.behaviour_mut().geo.send_request_with_addresses(
            &peer,
            geo::Request::Profiles(req.clone()),
            addrs,
        );
        self.geo_out.insert(rid, (id, peer, Out::Profiles(req)));
        if let Some(q) = self.near_q.get_mut(&id) {
            q.requests_pending += 1;
        }
    }

    /// A holder's `Providers` answer (`None`: failed or refused).
    fn on_providers_answer(&mut self, id: u64, idx: usize, resp: Option<geo::ProvidersResponse>) {
        let k = self.cfg.kad.replication_factor as usize;
        let Some(c) = self.near_q.get_mut(&id).and_then(|q| q.cells.get_mut(idx)) else {
            return;
        };
        c.pending = c.pending.saturating_sub(1);
        let mut list = Vec::new();
        if let Some(r) = resp {
            c.answered += 1;
            if (r.closer as usize) < k {
                c.authoritative = true;
            }
            if r.providers.len() >= geo::MAX_PROVIDERS {
                c.full = true;
            }
            for e in r.providers {
                // `check` bounded every entry; unparseable ones are skipped
                let Ok(p) = PeerId::from_bytes(&e.peer) else {
                    continue;
                };
                let addrs: Vec<Multiaddr> = e
                    .addrs
                    .into_iter()
                    .filter_map(|a| Multiaddr::try_from(a.into_vec()).ok())
                    .collect();
                list.push((p, addrs));
            }
        }
        let settle = c.pending == 0;
        for (p, a) in list {
            self.add_provider(id, idx, p, &a);
        }
        if settle {
            self.settle_cell(id, idx);
        }
    }

    /// Every `Providers` request of a cell's current phase ended.
    fn settle_cell(&mut self, id: u64, idx: usize) {
        let Some(c) = self.near_q.get_mut(&id).and_then(|q| q.cells.get_mut(idx)) else {
            return;
        };
        match c.phase {
            Phase::Direct if c.answered == 0 || !c.authoritative => self.start_lookup(id, idx),
            Phase::Direct => self.complete_cell(id, idx, true),
            Phase::Holders => {
                if c.answered == 0 {
                    // only the lookup's truncated answers: hosts may be missing
                    c.full = true;
                }
                self.complete_cell(id, idx, true);
            }
            Phase::Lookup | Phase::Done => {}
        }
    }

    /// A cell's provider list is complete: cache it; a full list is refined into finer cells
    /// (every host announces all precisions) or, at the finest precision, reported.
    fn complete_cell(&mut self, id: u64, idx: usize, cache: bool) {
        let Some(q) = self.near_q.get_mut(&id) else {
            return;
        };
        let (centre, radius) = (q.req.centre, f64::from(q.req.radius_m));
        let Some(c) = q.cells.get_mut(idx) else {
            return;
        };
        if c.phase == Phase::Done {
            return;
        }
        c.phase = Phase::Done;
        let (cell, full) = (c.cell.clone(), c.full);
        let found: Vec<PeerId> = c.found.iter().copied().collect();
        let mut kids = Vec::new();
        if full {
            if cell.len() < *leafnet_geo::PRECISIONS.last().unwrap_or(&6) {
                kids = leafnet_geo::children_in(&cell, centre, radius);
            } else {
                q.outcome.saturated.push(cell.clone());
            }
        }
        if cache && !full {
            let list = found
                .into_iter()
                .map(|p| (p, self.addr_book.get(&p).cloned().unwrap_or_default()))
                .collect();
            self.geo_cache
                .put(cell, list, self.cfg.geo_provider_cache, Instant::now());
        }
        for k in kids {
            self.start_cell(id, k);
        }
        if let Some(q) = self.near_q.get_mut(&id) {
            q.cells_pending = q.cells_pending.saturating_sub(1);
        }
    }

    /// Providers of a cell lookup arrived (`last`: the lookup ended, with the closest peers it
    /// found).
    pub(crate) fn on_cell_providers(
        &mut self,
        qid: QueryId,
        providers: Vec<PeerId>,
        closest: Vec<PeerId>,
        last: bool,
    ) {
        let Some(&(id, idx)) = self.cell_q.get(&qid) else {
            return;
        };
        if last {
            self.cell_q.remove(&qid);
        }
        if let Some(c) = self.near_q.get_mut(&id).and_then(|q| q.cells.get_mut(idx)) {
            c.lookup_found
                .extend(providers.iter().copied().take(CELL_PROVIDERS_MAX));
        }
        for p in providers {
            self.add_provider(id, idx, p, &[]);
        }
        if last {
            let k = self.cfg.kad.replication_factor as usize;
            let me = *self.swarm.local_peer_id();
            let holders: Option<Vec<PeerId>> = self
                .near_q
                .get_mut(&id)
                .and_then(|q| q.cells.get_mut(idx))
                .map(|c| {
                    if c.lookup_found.len() < k {
                        return Vec::new();
                    }
                    // Kademlia answers at most k providers: ask the holders for the full list
                    c.phase = Phase::Holders;
                    c.answered = 0;
                    closest
                        .into_iter()
                        .filter(|p| *p != me && !c.holders_asked.contains(p))
                        .take(HOLDERS_ASKED)
                        .collect()
                });
            match holders {
                Some(h) if !h.is_empty() => {
                    for p in h {
                        self.send_providers(id, idx, p);
                    }
                }
                Some(_) => {
                    if let Some(c) = self.near_q.get_mut(&id).and_then(|q| q.cells.get_mut(idx))
                        && c.phase == Phase::Holders
                    {
                        c.full = true;
                    }
                    self.complete_cell(id, idx, true);
                }
                None => {}
            }
        }
        self.maybe_finish(id);
    }

    fn maybe_finish(&mut self, id: u64) {
        if self.near_q.get(&id).is_some_and(NearQuery::done)
            && let Some(q) = self.near_q.remove(&id)
        {
            q.finish();
        }
    }

    /// The providers this node stores for a cell, for a `Providers` request.
    fn providers_answer(&mut self, cell: &str) -> geo::ProvidersResponse {
        let key = geo_key(cell);
        let now = Instant::now();
        let me = *self.swarm.local_peer_id();
        let own: Vec<Multiaddr> = self
            .swarm
            .external_addresses()
            .take(geo::MAX_PROVIDER_ADDRS)
            .cloned()
            .collect();
        let records = self.swarm.behaviour_mut().kad.store_mut().providers(&key);
        let providers = records
            .into_iter()
            .filter(|r| !r.is_expired(now))
            .take(geo::MAX_PROVIDERS)
            .map(|r| {
                let addrs: Vec<Multiaddr> = if r.provider == me {
                    own.clone()
                } else if r.addresses.is_empty() {
                    self.addr_book.get(&r.provider).cloned().unwrap_or_default()
                } else {
                    r.addresses
                };
                geo::ProviderEntry {
                    peer: serde_bytes::ByteBuf::from(r.provider.to_bytes()),
                    addrs: addrs
                        .iter()
                        .map(|a| a.to_vec())
                        .filter(|a| !a.is_empty() && a.len() <= geo::MAX_ADDR_LEN)
                        .take(geo::MAX_PROVIDER_ADDRS)
                        .map(serde_bytes::ByteBuf::from)
                        .collect(),
                }
            })
            .collect();
        let target = kad::KBucketKey::new(key);
        let mine = kad::KBucketKey::from(me).distance(&target);
        let closer = self
            .swarm
            .behaviour_mut()
            .kad
            .get_closest_local_peers(&target)
            .take(255)
            .take_while(|p| p.distance(&target) < mine)
            .count();
        geo::ProvidersResponse {
            providers,
            closer: closer as u32,
        }
    }

    pub(crate) fn on_geo(&mut self, e: request_response::Event<geo::Request, geo::Response>) {
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
                if let Err(e) = request.check() {
                    let why = leafnet_wire::key::RecordError::Invalid(format!(
                        "malformed geo request: {e}"
                    ));
                    self.report(peer, PeerAction::LowTolerance, &why);
                    return;
                }
                let resp = match request {
                    geo::Request::Profiles(r) => geo::Response::Profiles(geo::select(
                        self.hosted.values(),
                        &r,
                        self.location,
                    )),
                    geo::Request::Providers { cell } => {
                        geo::Response::Providers(self.providers_answer(&cell))
                    }
                };
                let _ = self.swarm.behaviour_mut().geo.send_response(channel, resp);
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
                let Some((id, _, out)) = self.geo_out.remove(&request_id) else {
                    return;
                };
                match (out, response) {
                    (Out::Profiles(req), geo::Response::Profiles(response)) => {
                        self.on_profiles_answer(id, peer, req, &response);
                    }
                    (Out::Providers(idx), geo::Response::Providers(response)) => {
                        match response.check() {
                            Ok(()) => self.on_providers_answer(id, idx, Some(response)),
                            Err(e) => {
                                let why = leafnet_wire::key::RecordError::Invalid(format!(
                                    "malformed geo providers answer: {e}"
                                ));
                                self.report(peer, PeerAction::LowTolerance, &why);
                                self.on_providers_answer(id, idx, None);
                            }
                        }
                    }
                    (out, _) => {
                        let why = leafnet_wire::key::RecordError::Invalid(
                            "geo answer of the wrong kind".into(),
                        );
                        self.report(peer, PeerAction::LowTolerance, &why);
                        self.on_geo_failure(id, peer, out);
                    }
                }
                self.maybe_finish(id);
            }
            Event::OutboundFailure {
                request_id,
                peer,
                error,
                ..
            } => {
                tracing::debug!(%peer, %error, "geo request failed");
                if let Some((id, _, out)) = self.geo_out.remove(&request_id) {
                    self.on_geo_failure(id, peer, out);
                    self.maybe_finish(id);
                }
            }
            _ => {}
        }
    }

    fn on_profiles_answer(
        &mut self,
        id: u64,
        peer: PeerId,
        req: geo::ProfilesRequest,
        response: &geo::ProfilesResponse,
    ) {
        let mut next = None;
        if let Some(q) = self.near_q.get_mut(&id) {
            q.requests_pending = q.requests_pending.saturating_sub(1);
            q.accept(peer, response);
            let got = req.offset as usize + response.profiles.len();
            if !response.profiles.is_empty() && (response.total as usize) > got && got < q.limit {
                next = Some(geo::ProfilesRequest {
                    offset: got as u32,
                    ..req
                });
            }
        }
        if let Some(r) = next {
            self.send_profiles(id, peer, r, &[]);
        }
    }

    fn on_geo_failure(&mut self, id: u64, peer: PeerId, out: Out) {
        match out {
            Out::Profiles(_) => {
                // a host that does not answer: its cells are listed afresh next time
                self.geo_cache.forget_peer(&peer);
                if let Some(q) = self.near_q.get_mut(&id) {
                    q.requests_pending = q.requests_pending.saturating_sub(1);
                    if !q.outcome.failed.contains(&peer) {
                        q.outcome.failed.push(peer);
                    }
                }
            }
            Out::Providers(idx) => self.on_providers_answer(id, idx, None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_cache_expires_evicts_and_forgets() {
        let ttl = Duration::from_secs(30);
        let t0 = Instant::now();
        let (a, b) = (PeerId::random(), PeerId::random());
        let mut c = ProviderCache::default();
        c.put("u33".into(), vec![(a, vec![])], ttl, t0);
        c.put("u34".into(), vec![(b, vec![])], ttl, t0);
        assert!(c.get("u33", ttl, t0 + Duration::from_secs(29)).is_some());
        assert!(c.get("u33", ttl, t0 + ttl).is_none(), "expired");
        c.forget_peer(&a);
        assert!(
            c.get("u33", ttl, t0).is_none(),
            "a failed host drops its cells"
        );
        assert!(c.get("u34", ttl, t0).is_some());
        // ttl 0: off
        c.put("u35".into(), vec![], Duration::ZERO, t0);
        assert!(c.get("u35", ttl, t0).is_none());
        // bounded: the oldest entry goes
        let mut c = ProviderCache::default();
        for i in 0..CACHE_CELLS + 5 {
            c.put(
                format!("c{i}"),
                vec![],
                ttl,
                t0 + Duration::from_millis(i as u64),
            );
        }
        assert_eq!(c.entries.len(), CACHE_CELLS);
        assert!(c.get("c0", ttl, t0).is_none());
        assert!(c.get(&format!("c{}", CACHE_CELLS + 4), ttl, t0).is_some());
    }
}
