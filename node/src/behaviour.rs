//! The composed `NetworkBehaviour` of a node and how it is built from the config.

use std::{num::NonZeroUsize, time::Duration};

use leafnet_config::Valid;
use leafnet_geo::protocol as geo;
use leafnet_storage::kad::Store;
use libp2p::{
    StreamProtocol, allow_block_list, connection_limits, identify, identity::Keypair, kad, ping,
    request_response, swarm::NetworkBehaviour,
};

/// Every protocol a node runs. The field order is the order events are polled in.
#[derive(NetworkBehaviour)]
#[allow(missing_debug_implementations)] // libp2p behaviours do not implement Debug
pub struct Behaviour {
    pub blocked: allow_block_list::Behaviour<allow_block_list::BlockedPeers>,
    pub limits: connection_limits::Behaviour,
    pub identify: identify::Behaviour,
    pub ping: ping::Behaviour,
    pub kad: kad::Behaviour<Store>,
    pub geo: request_response::cbor::Behaviour<geo::Request, geo::Response>,
}

/// `/leafnet/<network>/kad/1.0.0`.
pub fn kad_protocol(network: &str) -> StreamProtocol {
    StreamProtocol::try_from_owned(format!("/leafnet/{network}/kad/1.0.0"))
        .unwrap_or(StreamProtocol::new("/leafnet/main/kad/1.0.0"))
}

/// The identify protocol version string of a network.
pub fn identify_version(network: &str) -> String {
    format!("/leafnet/{network}/1.0.0")
}

/// The agent version this build announces.
pub fn agent() -> String {
    format!("leafnet/{}", env!("CARGO_PKG_VERSION"))
}

/// Kademlia settings from the config.
pub fn kad_config(cfg: &Valid) -> kad::Config {
    let mut k = kad::Config::new(kad_protocol(&cfg.network));
    k.set_record_filtering(kad::StoreInserts::FilterBoth)
        .set_query_timeout(cfg.kad.query_timeout)
        .set_replication_factor(
            NonZeroUsize::new(cfg.kad.replication_factor as usize).unwrap_or(kad::K_VALUE),
        )
        .set_record_ttl(Some(cfg.kad.record_ttl))
        .set_provider_record_ttl(Some(cfg.kad.record_ttl))
        .set_provider_publication_interval(Some(cfg.kad.provider_publication_interval))
        .set_publication_interval(None) // the owner re-signs and republishes its records itself
        .set_periodic_bootstrap_interval(Some(cfg.kad.bootstrap_interval))
        .set_max_packet_size(64 * 1024);
    k
}

/// Builds the behaviour.
pub fn build(key: &Keypair, cfg: &Valid, store: Store) -> Behaviour {
    let peer_id = key.public().to_peer_id();
    let limits = connection_limits::ConnectionLimits::default()
        .with_max_established(Some(cfg.max_connections))
        .with_max_established_per_peer(Some(cfg.max_connections_per_peer))
        .with_max_pending_incoming(Some(cfg.max_pending))
        .with_max_pending_outgoing(Some(cfg.max_pending));
    let identify = identify::Behaviour::new(
        identify::Config::new(identify_version(&cfg.network), key.public())
            .with_agent_version(agent())
            .with_interval(Duration::from_secs(300))
            .with_push_listen_addr_updates(true)
            .with_cache_size(256),
    );
    let ping = ping::Behaviour::new(
        ping::Config::new()
            .with_interval(Duration::from_secs(15))
            .with_timeout(Duration::from_secs(20)),
    );
    let kad = kad::Behaviour::with_config(peer_id, store, kad_config(cfg));
    let geo_codec = request_response::cbor::codec::Codec::default()
        .set_request_size_maximum(geo::MAX_REQUEST)
        .set_response_size_maximum(geo::MAX_RESPONSE);
    let geo_proto = StreamProtocol::try_from_owned(geo::protocol_id(&cfg.network))
        .unwrap_or(StreamProtocol::new("/leafnet/main/geo/1"));
    let geo = request_response::Behaviour::with_codec(
        geo_codec,
        [(geo_proto, request_response::ProtocolSupport::Full)],
        request_response::Config::default()
            .with_request_timeout(Duration::from_secs(10))
            .with_max_concurrent_streams(64),
    );
    Behaviour {
        geo,
        blocked: Default::default(),
        limits: connection_limits::Behaviour::new(limits),
        identify,
        ping,
        kad,
    }
}
