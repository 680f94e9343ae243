//! What the control API returns and the CLI prints (JSON via serde).

use serde::{Deserialize, Serialize};

/// `GET /v1/status`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Status {
    pub version: String,
    pub network: String,
    pub peer_id: String,
    pub listen_addrs: Vec<String>,
    pub external_addrs: Vec<String>,
    /// `public`, `private` or `unknown`.
    pub reachability: String,
    /// `server` or `client`.
    pub kad_mode: String,
    pub connected_peers: usize,
    pub routing_table_size: usize,
    pub banned_peers: usize,
    pub storage: Storage,
    pub uptime_secs: u64,
}

/// Storage figures inside [`Status`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Storage {
    pub path: String,
    pub file_bytes: u64,
    pub records: u64,
    pub provider_keys: u64,
    pub provided_keys: u64,
}

/// One connected peer in `GET /v1/peers`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Peer {
    pub peer_id: String,
    pub address: String,
    /// `tcp`, `quic`, `websocket`, `memory` or `relay`.
    pub transport: String,
    /// `inbound` or `outbound`.
    pub direction: String,
    /// Last ping round trip, in milliseconds.
    pub rtt_ms: Option<f64>,
    pub agent: Option<String>,
    pub connections: usize,
}

/// `POST /v1/dht/provide`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProvideRequest {
    pub key: String,
}

/// Reply to [`ProvideRequest`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Provided {
    pub key: String,
    /// Whether the announcement reached the k closest peers (false: stored locally and retried
    /// by Kademlia's republishing).
    pub announced: bool,
    pub elapsed_ms: f64,
}

/// One provider in `GET /v1/dht/providers`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Provider {
    pub peer_id: String,
    pub addrs: Vec<String>,
}

/// Reply of `GET /v1/dht/providers`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Providers {
    pub key: String,
    pub providers: Vec<Provider>,
    pub elapsed_ms: f64,
}

/// Reply of `GET /v1/dht/record`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RecordReply {
    pub key: String,
    pub seq: u64,
    pub expires_at_ms: u64,
    /// The record, decoded per namespace.
    pub value: serde_json::Value,
    pub elapsed_ms: f64,
}

/// An error body.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApiError {
    pub error: String,
}
