//! Prometheus metrics: libp2p's own (`libp2p_*`) plus the node's counters (`leafnet_*`).

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct Reason {
    reason: &'static str,
}

/// Handles to every metric the swarm actor updates.
pub(crate) struct Metrics {
    pub libp2p: libp2p::metrics::Metrics,
    pub records_accepted: Counter,
    pub records_rejected: Family<Reason, Counter>,
    pub peers_banned: Counter,
    pub connected_peers: Gauge,
    pub mint_items: Counter,
    pub mint_equivocations: Counter,
    pub mint_rejected: Counter,
}

impl Metrics {
    /// Registers everything in `registry`.
    pub fn new(registry: &mut Registry) -> Self {
        let libp2p = libp2p::metrics::Metrics::new(registry);
        let sub = registry.sub_registry_with_prefix("leafnet");
        let m = Self {
            libp2p,
            records_accepted: Counter::default(),
            records_rejected: Family::default(),
            peers_banned: Counter::default(),
            connected_peers: Gauge::default(),
            mint_items: Counter::default(),
            mint_equivocations: Counter::default(),
            mint_rejected: Counter::default(),
        };
        sub.register(
            "dht_records_accepted",
            "Inbound DHT records that passed validation and were stored",
            m.records_accepted.clone(),
        );
        sub.register(
            "dht_records_rejected",
            "Inbound DHT records and provider records refused, by reason",
            m.records_rejected.clone(),
        );
        sub.register(
            "peers_banned",
            "Peers banned for misbehaviour",
            m.peers_banned.clone(),
        );
        sub.register(
            "connected_peers",
            "Peers with at least one connection",
            m.connected_peers.clone(),
        );
        sub.register(
            "mint_items",
            "Mint observations and proofs learned (gossip, anti-entropy or observed here)",
            m.mint_items.clone(),
        );
        sub.register(
            "mint_equivocations",
            "Mint issuers found equivocating (new proofs, one per series)",
            m.mint_equivocations.clone(),
        );
        sub.register(
            "mint_rejected",
            "Invalid mint gossip messages and sync items refused",
            m.mint_rejected.clone(),
        );
        m
    }

    pub fn rejected(&self, reason: &'static str) {
        self.records_rejected
            .get_or_create(&Reason { reason })
            .inc();
    }
}
