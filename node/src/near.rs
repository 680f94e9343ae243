//! Profiles and the location network, on the swarm actor.
//!
//! - Hosting: the actor keeps every hosted profile (the owner's and, up to
//!   `node.max_hosted_profiles`, other people's) in memory; the durable copy is in redb
//!   (`leafnet_storage::profiles`, written by [`crate::publish`] before the user gets an answer).
//!   Each hosted profile is put in the DHT under `/leafnet/profile/<account>` and its location's
//!   cells are announced as provider records `/leafnet/geo/<cell>` (reference-counted, so a cell
//!   is withdrawn when nothing hosted is there any more). The node's own location is announced
//!   the same way. Profiles are republished every [`REPUBLISH`]; the owner's is re-signed.
//! - Radius queries ([`NearQuery`]): the providers of every cell of
//!   `leafnet_geo::cover(centre, radius)` are asked over `/leafnet/<net>/geo/1`, in parallel;
//!   every returned profile is verified again, filtered, deduplicated by account (highest `seq`)
//!   and sorted by distance. The query answers when every cell lookup and every request ended.

use std::{
    collections::{HashMap, HashSet},
    time::{Duration, Instant},
};

use leafnet_geo::{Location, protocol as geo};
use leafnet_profile::{AccountId, Profile, SignedProfile};
use libp2p::{
    Multiaddr, PeerId,
    kad::{self, QueryId, Record, RecordKey},
    request_response,
};
use tokio::sync::oneshot;

use crate::{
    model,
    peers::PeerAction,
    swarm::{Actor, now_ms},
};

/// Providers stored per geo cell key (instead of k), so a node knows every host of a coarse cell.
/// Kademlia still truncates each GET_PROVIDERS *answer* to k providers; a query therefore
/// treats a cell whose lookup returned k or more providers as saturated and descends into its
/// finer cells (every host announces all precisions). See ARCHITECTURE.md.
pub const GEO_PROVIDERS_PER_KEY: usize = 256;
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
    pub cells: usize,
    pub contacted: usize,
    /// Finest-precision cells whose provider lists came back full: hosts there may be missing.
    pub saturated: Vec<String>,
    /// Hosts whose answer never came (unreachable, timed out): their profiles are missing.
    pub failed: Vec<PeerId>,
    pub profiles: Vec<(f64, SignedProfile)>,
    pub nodes: Vec<(PeerId, Location, f64)>,
}

pub(crate) struct NearQuery {
    req: geo::Request,
    limit: usize,
    cells_pending: usize,
    requests_pending: usize,
    asked: HashSet<PeerId>,
    profiles: HashMap<[u8; 32], (f64, SignedProfile)>,
    nodes: HashMap<PeerId, Location>,
    outcome: NearOutcome,
    reply: oneshot::Sender<Result<NearOutcome, String>>,
}

impl NearQuery {
    fn accept(&mut self, peer: PeerId, resp: &geo::Response) {
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
            addrs: self
                .swarm
                .external_addresses()
                .filter(|a| {
                    !a.iter()
                        .any(|p| matches!(p, libp2p::multiaddr::Protocol::P2pCircuit))
                })
                .take(leafnet_profile::record::MAX_ADDRS)
                .cloned()
                .collect(),
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
        let req = geo::Request {
            centre,
            radius_m,
            filter,
            offset: 0,
            limit: u32::try_from(limit).unwrap_or(u32::MAX).min(geo::MAX_PAGE),
        };
        for c in &cells {
            let qid = self.swarm.behaviour_mut().kad.get_providers(geo_key(c));
            self.cell_q.insert(qid, (id, c.clone(), HashSet::new()));
        }
        let q = NearQuery {
            req,
            limit,
            cells_pending: cells.len(),
            requests_pending: 0,
            asked: HashSet::new(),
            profiles: HashMap::new(),
            nodes: HashMap::new(),
            outcome: NearOutcome {
                precision,
                cells: cells.len(),
                ..Default::default()
            },
            reply,
        };
        self.near_q.insert(id, q);
    }

    /// Providers of one cell of a near query arrived (`last`: that lookup ended).
    pub(crate) fn on_cell_providers(&mut self, qid: QueryId, providers: Vec<PeerId>, last: bool) {
        let Some((id, _, seen)) = self.cell_q.get_mut(&qid) else {
            return;
        };
        let id = *id;
        seen.extend(providers.iter().copied());
        let mut refine = None;
        if last && let Some((_, cell, seen)) = self.cell_q.remove(&qid) {
            // Kademlia answers at most k providers: a full list may be cut short.
            if seen.len() >= self.cfg.kad.replication_factor as usize {
                refine = Some(cell);
            }
        }
        if let (Some(cell), Some(q)) = (refine, self.near_q.get(&id)) {
            let (centre, radius) = (q.req.centre, f64::from(q.req.radius_m));
            if cell.len() < *leafnet_geo::PRECISIONS.last().unwrap_or(&6) {
                let kids = leafnet_geo::children_in(&cell, centre, radius);
                for k in kids {
                    let cq = self.swarm.behaviour_mut().kad.get_providers(geo_key(&k));
                    self.cell_q.insert(cq, (id, k, HashSet::new()));
                    if let Some(q) = self.near_q.get_mut(&id) {
                        q.cells_pending += 1;
                        q.outcome.cells += 1;
                    }
                }
            } else if let Some(q) = self.near_q.get_mut(&id) {
                q.outcome.saturated.push(cell);
            }
        }
        let me = *self.swarm.local_peer_id();
        let Some(q) = self.near_q.get_mut(&id) else {
            return;
        };
        let mut to_ask = Vec::new();
        for p in providers {
            if q.asked.insert(p) {
                to_ask.push(p);
            }
        }
        if last {
            q.cells_pending = q.cells_pending.saturating_sub(1);
        }
        let req = q.req.clone();
        for p in to_ask {
            if p == me {
                let resp = geo::select(self.hosted.values(), &req, self.location);
                if let Some(q) = self.near_q.get_mut(&id) {
                    q.accept(p, &resp);
                    // paging is not needed locally: ask for everything at once
                    if resp.total as usize > resp.profiles.len() {
                        let all = geo::Request {
                            limit: u32::MAX,
                            ..req.clone()
                        };
                        let mut full = geo::select(self.hosted.values(), &all, self.location);
                        full.profiles.truncate(q.limit);
                        q.accept(p, &full);
                    }
                }
            } else {
                self.send_geo(id, p, req.clone());
            }
        }
        self.maybe_finish(id);
    }

    fn send_geo(&mut self, id: u64, peer: PeerId, req: geo::Request) {
        let addrs = self.addr_book.get(&peer).cloned().unwrap_or_default();
        let rid =
            self.swarm
                .behaviour_mut()
                .geo
                .send_request_with_addresses(&peer, req.clone(), addrs);
        self.geo_out.insert(rid, (id, peer, req));
        if let Some(q) = self.near_q.get_mut(&id) {
            q.requests_pending += 1;
        }
    }

    fn maybe_finish(&mut self, id: u64) {
        if self.near_q.get(&id).is_some_and(NearQuery::done)
            && let Some(q) = self.near_q.remove(&id)
        {
            q.finish();
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
                let f = &request.filter;
                let sane = request.centre.is_valid()
                    && request.radius_m <= leafnet_geo::MAX_RADIUS_M
                    && f.name.as_ref().is_none_or(|n| n.len() <= 64)
                    && f.kind.as_ref().is_none_or(|k| k.len() <= 16)
                    && f.service.as_ref().is_none_or(|s| s.len() <= 32);
                if !sane {
                    let why =
                        leafnet_wire::key::RecordError::Invalid("malformed geo request".into());
                    self.report(peer, PeerAction::LowTolerance, &why);
                    return;
                }
                let resp = geo::select(self.hosted.values(), &request, self.location);
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
                let Some((id, _, req)) = self.geo_out.remove(&request_id) else {
                    return;
                };
                let mut next = None;
                if let Some(q) = self.near_q.get_mut(&id) {
                    q.requests_pending = q.requests_pending.saturating_sub(1);
                    q.accept(peer, &response);
                    let got = req.offset as usize + response.profiles.len();
                    if !response.profiles.is_empty()
                        && (response.total as usize) > got
                        && got < q.limit
                    {
                        next = Some(geo::Request {
                            offset: got as u32,
                            ..req
                        });
                    }
                }
                if let Some(r) = next {
                    self.send_geo(id, peer, r);
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
                if let Some((id, _, _)) = self.geo_out.remove(&request_id) {
                    if let Some(q) = self.near_q.get_mut(&id) {
                        q.requests_pending = q.requests_pending.saturating_sub(1);
                    }
                    self.maybe_finish(id);
                }
            }
            _ => {}
        }
    }
}
