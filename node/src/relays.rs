//! Reachability behind NAT, on the swarm actor: AutoNAT v2, circuit relay v2 (server and
//! client), relays chosen by measured latency ([`leafnet_relay_select`]) and DCUtR.
//!
//! - **Reachability** ([`Actor::reachability`]): `relay.reachability = public|private` pins it;
//!   `auto` is public on a local network, public once AutoNAT v2 confirmed a global,
//!   non-relayed address, private once [`PRIVATE_AFTER`] probes failed and none succeeded, and
//!   unknown before. Confirmed loopback or private addresses are dropped on a non-local network
//!   (AutoNAT v2 confirms them too). Kademlia's mode follows (`swarm.rs` `update_kad_mode`); a
//!   relayed address never makes a node a server.
//! - **Relay server**: enabled by `relay.server`; it serves only while the node has a confirmed
//!   external address, and a public node announces itself as a provider of [`RELAY_KEY`].
//! - **Relay client**: a private node gathers candidates (providers of [`RELAY_KEY`], bootstrap
//!   peers, peers whose identify lists the HOP protocol), probes each with
//!   `/leafnet/<net>/probe/1` requests and reserves on the best `relay.reservations` as the
//!   selector decides. A probe is one request-response exchange on an open connection, so its
//!   time includes the stream's protocol negotiation (about two round trips on a fresh stream);
//!   every candidate pays the same, so the ranking is unaffected, and the figures are reported
//!   as probe times.
//! - **DCUtR** upgrades relayed connections to direct ones by itself; outcomes are logged and
//!   counted, and `leafnet peers` says which connections are relayed.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use leafnet_config::Reachability;
use leafnet_relay_select::{Action, Config as SelectConfig, ReservationEvent, Selector, Source};
use libp2p::{
    Multiaddr, PeerId, autonat, core::transport::ListenerId, dcutr, kad::RecordKey,
    multiaddr::Protocol, relay, request_response,
};

use crate::{model, swarm::Actor};

/// The provider key public relays announce.
pub const RELAY_KEY: &str = "/leafnet/relay/v1";
/// AutoNAT failures, with no success, after which a node counts itself private.
pub const PRIVATE_AFTER: u32 = 3;
/// How often a private node looks for relay providers again.
const FIND_RELAYS_EVERY: Duration = Duration::from_secs(300);
/// How often a public relay announces itself again.
const ANNOUNCE_EVERY: Duration = Duration::from_secs(3600);

/// The actor's relay state.
pub(crate) struct RelayState {
    pub(crate) selector: Selector<PeerId>,
    autonat_ok: u32,
    autonat_failed: u32,
    probes: HashMap<request_response::OutboundRequestId, (PeerId, Instant)>,
    listeners: HashMap<PeerId, ListenerId>,
    reserved: HashMap<PeerId, Multiaddr>,
    rng: u64,
    last_find: Option<Instant>,
    last_announce: Option<Instant>,
    pub(crate) dcutr_ok: u64,
    pub(crate) dcutr_failed: u64,
}

impl RelayState {
    pub(crate) fn new(cfg: &leafnet_config::Valid, seed: u64) -> Self {
        let sc = SelectConfig {
            k: cfg.relay.reservations as usize,
            samples: cfg.relay.pings_per_probe as usize,
            reprobe_interval: cfg.relay.probe_interval,
            ..SelectConfig::default()
        };
        Self {
            selector: Selector::new(sc),
            autonat_ok: 0,
            autonat_failed: 0,
            probes: HashMap::new(),
            listeners: HashMap::new(),
            reserved: HashMap::new(),
            rng: seed | 1,
            last_find: None,
            last_announce: None,
            dcutr_ok: 0,
            dcutr_failed: 0,
        }
    }
}

/// What a node knows about its own reachability.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    Public,
    Private,
    Unknown,
}

impl Reach {
    /// `public`, `private` or `unknown`, as status and `leafnet relays` show it.
    pub fn as_str(self) -> &'static str {
        match self {
            Reach::Public => "public",
            Reach::Private => "private",
            Reach::Unknown => "unknown",
        }
    }
}

/// The probe protocol id of a network.
pub fn probe_protocol(network: &str) -> String {
    format!("/leafnet/{network}/probe/1")
}

fn relayed(a: &Multiaddr) -> bool {
    a.iter().any(|p| matches!(p, Protocol::P2pCircuit))
}

/// A public-internet address: not loopback, private, link-local, unspecified or shared.
pub fn is_global(a: &Multiaddr) -> bool {
    a.iter().all(|p| match p {
        Protocol::Ip4(ip) => {
            !(ip.is_loopback()
                || ip.is_private()
                || ip.is_link_local()
                || ip.is_unspecified()
                || ip.is_broadcast()
                || ip.is_documentation()
                || (ip.octets()[0] == 100 && (ip.octets()[1] & 0xc0) == 64))
        }
        Protocol::Ip6(ip) => {
            !(ip.is_loopback()
                || ip.is_unspecified()
                || (ip.segments()[0] & 0xfe00) == 0xfc00
                || (ip.segments()[0] & 0xffc0) == 0xfe80)
        }
        _ => true,
    })
}

/// The relay a `/p2p-circuit` address goes through (the peer id just before `/p2p-circuit`).
fn relay_of(a: &Multiaddr) -> Option<PeerId> {
    let mut last = None;
    for p in a.iter() {
        match p {
            Protocol::P2p(id) => last = Some(id),
            Protocol::P2pCircuit => return last,
            _ => {}
        }
    }
    None
}

/// Every direct address, and of the relayed ones only those through the relay with the lowest
/// `rtt` from here ([`leafnet_relay_select::best_relay`]; a relay of unknown RTT sorts last):
/// a dialer holding several relay addresses for a peer uses the closest relay.
pub fn prefer_best_relay(
    addrs: Vec<Multiaddr>,
    rtt: impl Fn(&PeerId) -> Option<Duration>,
) -> Vec<Multiaddr> {
    let relays: Vec<PeerId> = addrs.iter().filter_map(relay_of).collect();
    let best = leafnet_relay_select::best_relay(relays.iter(), rtt).copied();
    addrs
        .into_iter()
        .filter(|a| relay_of(a).is_none_or(|r| Some(r) == best))
        .collect()
}

impl Actor {
    /// This node's reachability now (see the module docs).
    pub(crate) fn reachability_now(&self) -> Reach {
        match self.cfg.reachability {
            Reachability::Public => Reach::Public,
            Reachability::Private => Reach::Private,
            Reachability::Auto => {
                if self.cfg.local
                    || self
                        .swarm
                        .external_addresses()
                        .any(|a| !relayed(a) && is_global(a))
                {
                    Reach::Public
                } else if self.relay.autonat_ok == 0 && self.relay.autonat_failed >= PRIVATE_AFTER {
                    Reach::Private
                } else {
                    Reach::Unknown
                }
            }
        }
    }

    /// The relay server serves only while this node is public. Left to itself, libp2p's relay
    /// server turns on with *any* confirmed external address, including the relayed address a
    /// private node gets from its own reservation: private nodes would then advertise HOP and
    /// attract reservations they cannot carry (found by the NAT lab test).
    pub(crate) fn update_relay_server(&mut self) {
        let public = self.reachability_now() == Reach::Public;
        if let Some(r) = self.swarm.behaviour_mut().relay_server.as_mut() {
            r.set_status(Some(if public {
                relay::Status::Enable
            } else {
                relay::Status::Disable
            }));
        }
    }

    /// A confirmed external address: kept only if it may be dialled from where our peers are
    /// (for a relayed address: if the relay's own address may be).
    pub(crate) fn on_external_confirmed(&mut self, address: &Multiaddr) -> bool {
        let base: Multiaddr = address
            .iter()
            .take_while(|p| !matches!(p, Protocol::P2pCircuit))
            .collect();
        let chained = address
            .iter()
            .filter(|p| matches!(p, Protocol::P2pCircuit))
            .count()
            > 1;
        if chained || (!self.cfg.local && !is_global(&base)) {
            tracing::debug!(%address, "dropping a confirmed non-global address");
            self.swarm.remove_external_address(address);
            return false;
        }
        self.update_relay_server();
        true
    }

    pub(crate) fn on_autonat(&mut self, e: autonat::v2::client::Event) {
        match e.result {
            Ok(()) if self.cfg.local || is_global(&e.tested_addr) => {
                self.relay.autonat_ok += 1;
                tracing::info!(addr = %e.tested_addr, server = %e.server, "autonat: reachable");
            }
            Ok(()) => {}
            Err(err) => {
                self.relay.autonat_failed = self.relay.autonat_failed.saturating_add(1);
                tracing::debug!(addr = %e.tested_addr, server = %e.server, error = %err, "autonat: not reachable");
            }
        }
        self.update_kad_mode();
        self.update_relay_server();
    }

    pub(crate) fn on_relay_server(&mut self, e: relay::Event) {
        match e {
            relay::Event::ReservationReqAccepted { src_peer_id, .. } => {
                tracing::debug!(peer = %src_peer_id, "relay: reservation accepted");
            }
            relay::Event::CircuitReqAccepted {
                src_peer_id,
                dst_peer_id,
            } => {
                tracing::debug!(src = %src_peer_id, dst = %dst_peer_id, "relay: circuit");
            }
            other => tracing::trace!(?other, "relay server"),
        }
    }

    pub(crate) fn on_relay_client(&mut self, e: relay::client::Event) {
        if let relay::client::Event::ReservationReqAccepted { relay_peer_id, .. } = e {
            tracing::info!(relay = %relay_peer_id, "relay reservation accepted");
            self.relay.selector.on_reservation(
                &relay_peer_id,
                ReservationEvent::Accepted { expires: None },
                Instant::now(),
            );
        }
    }

    pub(crate) fn on_dcutr(&mut self, e: dcutr::Event) {
        match e.result {
            Ok(_) => {
                self.relay.dcutr_ok += 1;
                tracing::info!(peer = %e.remote_peer_id, "hole punch: direct connection");
            }
            Err(err) => {
                self.relay.dcutr_failed += 1;
                tracing::info!(peer = %e.remote_peer_id, error = %err, "hole punch failed");
            }
        }
    }

    pub(crate) fn on_probe(&mut self, e: request_response::Event<u64, u64>) {
        use request_response::{Event, Message};
        match e {
            Event::Message {
                message:
                    Message::Request {
                        request, channel, ..
                    },
                ..
            } => {
                let _ = self
                    .swarm
                    .behaviour_mut()
                    .probe
                    .send_response(channel, request);
            }
            Event::Message {
                peer,
                message: Message::Response { request_id, .. },
                ..
            } => {
                if let Some((p, at)) = self.relay.probes.remove(&request_id) {
                    debug_assert_eq!(p, peer);
                    self.relay.selector.on_rtt(&p, at.elapsed(), Instant::now());
                    self.relays_poll();
                }
            }
            Event::OutboundFailure { request_id, .. } => {
                if let Some((p, _)) = self.relay.probes.remove(&request_id) {
                    self.relay.selector.on_failure(&p, Instant::now());
                }
            }
            _ => {}
        }
    }

    /// A relay circuit listener closed: its reservation is gone.
    pub(crate) fn on_listener_closed(&mut self, id: ListenerId) {
        let Some(relay) = self
            .relay
            .listeners
            .iter()
            .find(|(_, l)| **l == id)
            .map(|(p, _)| *p)
        else {
            return;
        };
        self.relay.listeners.remove(&relay);
        self.relay.reserved.remove(&relay);
        self.relay
            .selector
            .on_reservation(&relay, ReservationEvent::Closed, Instant::now());
    }

    /// A peer whose identify lists the HOP protocol: a relay candidate.
    pub(crate) fn on_hop_peer(&mut self, peer: PeerId) {
        self.relay
            .selector
            .add_candidate(peer, Source::Identify, Instant::now());
    }

    /// Periodic relay work: public relays announce themselves; private nodes find candidates
    /// and run the selector.
    pub(crate) fn relays_tick(&mut self, now: Instant) {
        self.update_relay_server();
        let reach = self.reachability_now();
        if reach == Reach::Public
            && self.cfg.relay.server
            && self
                .relay
                .last_announce
                .is_none_or(|t| now.duration_since(t) >= ANNOUNCE_EVERY)
            && self.swarm.external_addresses().next().is_some()
        {
            self.relay.last_announce = Some(now);
            let _ = self
                .swarm
                .behaviour_mut()
                .kad
                .start_providing(RecordKey::new(&RELAY_KEY));
        }
        if reach != Reach::Private {
            return;
        }
        if self
            .relay
            .last_find
            .is_none_or(|t| now.duration_since(t) >= FIND_RELAYS_EVERY)
        {
            self.relay.last_find = Some(now);
            for addr in self.cfg.bootstrap.clone() {
                if let Some(Protocol::P2p(p)) = addr.iter().last() {
                    self.relay.selector.add_candidate(p, Source::Bootstrap, now);
                }
            }
            let id = self
                .swarm
                .behaviour_mut()
                .kad
                .get_providers(RecordKey::new(&RELAY_KEY));
            self.relay_find_q.insert(id);
        }
        self.relays_poll();
    }

    /// Providers of [`RELAY_KEY`] found.
    pub(crate) fn on_relay_providers(&mut self, providers: impl IntoIterator<Item = PeerId>) {
        let me = *self.swarm.local_peer_id();
        for p in providers {
            if p != me {
                self.relay
                    .selector
                    .add_candidate(p, Source::Provider, Instant::now());
            }
        }
    }

    fn next_rand(&mut self) -> u64 {
        // xorshift64*: the selector only needs a spread, seeded per node.
        let x = &mut self.relay.rng;
        *x ^= *x >> 12;
        *x ^= *x << 25;
        *x ^= *x >> 27;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Runs the selector and carries out its actions.
    pub(crate) fn relays_poll(&mut self) {
        if self.reachability_now() != Reach::Private {
            return;
        }
        let mut seed = self.next_rand();
        let actions = self.relay.selector.poll(Instant::now(), &mut || {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            seed >> 11
        });
        for a in actions {
            match a {
                Action::Probe(p) => {
                    let addrs = self.addrs_of(&p);
                    let id = self
                        .swarm
                        .behaviour_mut()
                        .probe
                        .send_request_with_addresses(&p, 0, addrs);
                    self.relay.probes.insert(id, (p, Instant::now()));
                }
                Action::Reserve(p) => self.reserve(p),
                Action::Release(p) => {
                    if let Some(l) = self.relay.listeners.remove(&p) {
                        self.swarm.remove_listener(l);
                    }
                    self.relay.reserved.remove(&p);
                    tracing::info!(relay = %p, "relay released");
                }
            }
        }
    }

    fn addrs_of(&self, p: &PeerId) -> Vec<Multiaddr> {
        let mut v: Vec<Multiaddr> = self.addr_book.get(p).cloned().unwrap_or_default();
        for b in &self.cfg.bootstrap {
            if b.iter().last() == Some(Protocol::P2p(*p)) {
                let mut a = b.clone();
                a.pop();
                v.push(a);
            }
        }
        if let Some(conns) = self.conns.get(p) {
            v.extend(conns.iter().filter(|c| !c.inbound).map(|c| c.addr.clone()));
        }
        // Never a relayed address (no chains of relays), and off a local network only global
        // ones: identify also lists loopback and LAN addresses.
        let local = self.cfg.local;
        let mut seen = std::collections::HashSet::new();
        v.retain(|a| !relayed(a) && (local || is_global(a)) && seen.insert(a.clone()));
        v
    }

    fn reserve(&mut self, p: PeerId) {
        let Some(base) = self.addrs_of(&p).into_iter().next() else {
            self.relay
                .selector
                .on_reservation(&p, ReservationEvent::Failed, Instant::now());
            return;
        };
        let mut addr: Multiaddr = base
            .iter()
            .take_while(|x| !matches!(x, Protocol::P2p(_)))
            .collect();
        addr.push(Protocol::P2p(p));
        addr.push(Protocol::P2pCircuit);
        match self.swarm.listen_on(addr.clone()) {
            Ok(id) => {
                tracing::info!(relay = %p, %addr, "requesting a relay reservation");
                self.relay.listeners.insert(p, id);
                self.relay.reserved.insert(p, addr);
            }
            Err(e) => {
                tracing::warn!(relay = %p, error = %e, "cannot listen via relay");
                self.relay
                    .selector
                    .on_reservation(&p, ReservationEvent::Failed, Instant::now());
            }
        }
    }

    /// The addresses to dial a peer on: see [`prefer_best_relay`], with the RTTs this node
    /// measured (the lowest over its connections to each relay).
    pub(crate) fn dial_addrs(&self, addrs: Vec<Multiaddr>) -> Vec<Multiaddr> {
        prefer_best_relay(addrs, |p| {
            self.conns
                .get(p)?
                .iter()
                .filter_map(|c| self.rtts.get(&(*p, c.id)).copied())
                .min()
        })
    }

    /// `leafnet relays`.
    pub(crate) fn relays(&self) -> model::Relays {
        let circuit_addrs = self
            .swarm
            .listeners()
            .filter(|a| relayed(a))
            .map(ToString::to_string)
            .collect();
        model::Relays {
            reachability: self.reachability_now().as_str().into(),
            autonat_confirmed: self.relay.autonat_ok,
            autonat_failed: self.relay.autonat_failed,
            relay_server: self.cfg.relay.server && self.reachability_now() == Reach::Public,
            circuit_addrs,
            chosen: self
                .relay
                .selector
                .chosen()
                .iter()
                .map(ToString::to_string)
                .collect(),
            candidates: self
                .relay
                .selector
                .snapshot()
                .into_iter()
                .map(|c| model::RelayCandidate {
                    peer_id: c.peer.to_string(),
                    sources: c
                        .sources
                        .iter()
                        .map(|s| format!("{s:?}").to_lowercase())
                        .collect(),
                    probe_ms: c.samples_ms,
                    median_ms: c.median_ms,
                    jitter_ms: c.jitter_ms,
                    failures: c.failures,
                    state: c.state.into(),
                    chosen: c.chosen,
                })
                .collect(),
            hole_punches_ok: self.relay.dcutr_ok,
            hole_punches_failed: self.relay.dcutr_failed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dialer_keeps_direct_addresses_and_the_closest_relay() {
        let (near, far, target) = (PeerId::random(), PeerId::random(), PeerId::random());
        let direct: Multiaddr = "/ip4/198.18.0.12/tcp/7800".parse().unwrap();
        let via = |r: PeerId| -> Multiaddr {
            format!("/ip4/198.18.0.1/tcp/7800/p2p/{r}/p2p-circuit/p2p/{target}")
                .parse()
                .unwrap()
        };
        let rtt = |p: &PeerId| {
            if *p == near {
                Some(Duration::from_millis(5))
            } else if *p == far {
                Some(Duration::from_millis(80))
            } else {
                None
            }
        };
        let got = prefer_best_relay(vec![via(far), direct.clone(), via(near)], rtt);
        assert_eq!(got, vec![direct, via(near)]);
        // Unknown RTTs sort last: a measured relay wins over an unmeasured one.
        let other = PeerId::random();
        assert_eq!(
            prefer_best_relay(vec![via(other), via(far)], rtt),
            vec![via(far)]
        );
    }
}
