//! The composed `NetworkBehaviour` of a node and how it is built from the config.

use std::{num::NonZeroUsize, time::Duration};

use leafnet_config::Valid;
use leafnet_geo::protocol as geo;
use leafnet_storage::kad::Store;
use libp2p::{
    StreamProtocol, allow_block_list, autonat, connection_limits, dcutr, gossipsub, identify,
    identity::Keypair,
    kad, ping, relay, request_response,
    swarm::{NetworkBehaviour, behaviour::toggle::Toggle},
};
use serde_bytes::ByteBuf;

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
    pub gossipsub: gossipsub::Behaviour,
    pub mint_sync: request_response::cbor::Behaviour<ByteBuf, ByteBuf>,
    pub autonat: autonat::v2::client::Behaviour,
    pub autonat_server: autonat::v2::server::Behaviour,
    pub relay_server: Toggle<relay::Behaviour>,
    pub relay_client: relay::client::Behaviour,
    pub dcutr: dcutr::Behaviour,
    pub probe: request_response::cbor::Behaviour<u64, u64>,
    pub leaf: request_response::cbor::Behaviour<crate::leaf::Request, crate::leaf::Response>,
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

/// Invalid messages (`Reject`) after which a peer is graylisted on the mint topic: the P4 penalty
/// is `weight × count²`, and gossipsub's graylist threshold is −80, so with a weight of −10 the
/// third invalid message (−90) graylists. An honest node never forwards an invalid message (it
/// validates before forwarding), so three is not harsh.
pub const MINT_GRAYLIST_AFTER: u32 = 3;

/// Gossipsub for the mint topic: signed messages, `Strict` validation, every message held until
/// the node's own checks answer, ids from [`leafnet_mint::message_id`], a mesh of D = 6
/// (4..8) without flood publishing (fewer duplicate copies), and scoring for a quiet topic.
pub fn gossipsub(
    key: &Keypair,
    cfg: &Valid,
    registry: &mut prometheus_client::registry::Registry,
) -> Result<gossipsub::Behaviour, String> {
    let gcfg = gossipsub::ConfigBuilder::default()
        .validation_mode(gossipsub::ValidationMode::Strict)
        .validate_messages()
        .message_id_fn(|m: &gossipsub::Message| {
            gossipsub::MessageId::from(leafnet_mint::message_id(&m.data).to_vec())
        })
        .heartbeat_interval(cfg.mint.heartbeat)
        .heartbeat_initial_delay(cfg.mint.heartbeat.min(Duration::from_millis(500)))
        .mesh_outbound_min(2)
        .mesh_n_low(4)
        .mesh_n(6)
        .mesh_n_high(8)
        .flood_publish(false)
        .max_transmit_size(leafnet_mint::MAX_ITEM)
        .build()
        .map_err(|e| format!("gossipsub config: {e}"))?;
    let mut gs =
        gossipsub::Behaviour::new(gossipsub::MessageAuthenticity::Signed(key.clone()), gcfg)
            .map_err(|e| format!("gossipsub: {e}"))?
            // Copies received per message and more (`libp2p_gossipsub_*` in /metrics).
            .with_metrics(registry, gossipsub::MetricsConfig::default());
    let topic = crate::mint::topic(&cfg.network);
    let mut params = gossipsub::PeerScoreParams::default();
    if cfg.local {
        // Every node of a local network shares 127.0.0.1: no penalty for colocation there.
        params.ip_colocation_factor_weight = 0.0;
    }
    let t = gossipsub::TopicScoreParams {
        topic_weight: 1.0,
        // A quiet topic: do not punish mesh peers for not delivering messages nobody sent.
        mesh_message_deliveries_weight: 0.0,
        mesh_failure_penalty_weight: 0.0,
        // No positive topic score either (time in mesh, first deliveries), so that nothing
        // offsets P4 and the graylisting count stays exact.
        time_in_mesh_weight: 0.0,
        first_message_deliveries_weight: 0.0,
        invalid_message_deliveries_weight: -10.0,
        // Per decay interval (1 s): about 1% a second, so a strike fades over minutes.
        invalid_message_deliveries_decay: 0.99,
        ..Default::default()
    };
    params.topics.insert(topic.hash(), t.clone());
    // The leaf heads topic is as quiet and is scored the same way.
    params
        .topics
        .insert(crate::leaf_heads::topic(&cfg.network).hash(), t);
    gs.with_peer_score(params, gossipsub::PeerScoreThresholds::default())
        .map_err(|e| format!("gossipsub scoring: {e}"))?;
    gs.subscribe(&topic)
        .map_err(|e| format!("gossipsub subscribe: {e}"))?;
    Ok(gs)
}

/// Builds the behaviour.
pub fn build(
    key: &Keypair,
    cfg: &Valid,
    store: Store,
    registry: &mut prometheus_client::registry::Registry,
    relay_client: relay::client::Behaviour,
) -> Result<Behaviour, String> {
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
    let mint_codec = request_response::cbor::codec::Codec::default()
        .set_request_size_maximum(64 * 1024)
        .set_response_size_maximum(leafnet_mint::MAX_SYNC_MESSAGE as u64);
    let mint_proto = StreamProtocol::try_from_owned(crate::mint::sync_protocol(&cfg.network))
        .unwrap_or(StreamProtocol::new("/leafnet/main/mint-sync/1"));
    let mint_sync = request_response::Behaviour::with_codec(
        mint_codec,
        [(mint_proto, request_response::ProtocolSupport::Full)],
        request_response::Config::default()
            .with_request_timeout(Duration::from_secs(30))
            .with_max_concurrent_streams(64),
    );
    let autonat = autonat::v2::client::Behaviour::new(
        rand::make_rng::<rand::rngs::StdRng>(),
        autonat::v2::client::Config::default()
            .with_probe_interval(Duration::from_secs(if cfg.local { 5 } else { 30 })),
    );
    let relay_server = cfg.relay.server.then(|| {
        let mut rc = relay::Config {
            max_reservations: cfg.relay.max_reservations as usize,
            max_circuits: cfg.relay.max_circuits as usize,
            ..Default::default()
        };
        if cfg.local {
            // The default rate limits are per IP: every node of a local network is 127.0.0.1.
            rc.reservation_rate_limiters.clear();
            rc.circuit_src_rate_limiters.clear();
        }
        relay::Behaviour::new(key.public().to_peer_id(), rc)
    });
    let probe_proto = StreamProtocol::try_from_owned(crate::relays::probe_protocol(&cfg.network))
        .unwrap_or(StreamProtocol::new("/leafnet/main/probe/1"));
    let probe = request_response::Behaviour::with_codec(
        request_response::cbor::codec::Codec::default()
            .set_request_size_maximum(64)
            .set_response_size_maximum(64),
        [(probe_proto, request_response::ProtocolSupport::Full)],
        request_response::Config::default()
            .with_request_timeout(Duration::from_secs(2))
            .with_max_concurrent_streams(16),
    );
    let leaf_proto = StreamProtocol::try_from_owned(crate::leaf::protocol(&cfg.network))
        .unwrap_or(StreamProtocol::new("/leafnet/main/leaf/1"));
    let leaf = request_response::Behaviour::with_codec(
        request_response::cbor::codec::Codec::default()
            .set_request_size_maximum(crate::leaf::MAX_FRAME as u64)
            .set_response_size_maximum(crate::leaf::MAX_FRAME as u64),
        [(leaf_proto, request_response::ProtocolSupport::Full)],
        request_response::Config::default()
            .with_request_timeout(Duration::from_secs(20))
            .with_max_concurrent_streams(1024),
    );
    Ok(Behaviour {
        leaf,
        probe,
        autonat,
        autonat_server: autonat::v2::server::Behaviour::default(),
        relay_server: Toggle::from(relay_server),
        relay_client,
        dcutr: dcutr::Behaviour::new(key.public().to_peer_id()),
        gossipsub: gossipsub(key, cfg, registry)?,
        mint_sync,
        geo,
        blocked: Default::default(),
        limits: connection_limits::Behaviour::new(limits),
        identify,
        ping,
        kad,
    })
}
