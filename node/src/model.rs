//! What the control API returns and the CLI prints (JSON via serde).

use serde::{Deserialize, Serialize};

/// `GET /v1/status`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Status {
    pub version: String,
    /// The human's account id (hex of the account key).
    pub account_id: String,
    pub location: Option<[f64; 2]>,
    pub hosted_profiles: usize,
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
    /// Kademlia queries running now (lookups, announcements, republishing).
    pub kad_queries_in_flight: usize,
    /// Geo cell announcements running or waiting to be retried.
    pub announcements_pending: usize,
    pub banned_peers: usize,
    /// Peers subscribed to this network's mint gossip topic.
    pub mint_topic_peers: usize,
    /// Mint observations and proofs held.
    pub mint_items: usize,
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
    /// `direct`, or `relayed` when every connection goes through a relay.
    pub path: String,
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

/// A profile as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Profile {
    pub account_id: String,
    pub kind: String,
    pub name: String,
    /// `[lat, lon]` in degrees.
    pub location: Option<[f64; 2]>,
    pub services: Vec<String>,
    pub extra: std::collections::BTreeMap<String, String>,
    pub host_peer_id: String,
    pub host_addrs: Vec<String>,
    pub seq: u64,
    pub expires_at_ms: u64,
}

impl From<&leafnet_profile::Profile> for Profile {
    fn from(p: &leafnet_profile::Profile) -> Self {
        Self {
            account_id: p.account_id().to_string(),
            kind: p.kind.as_str().into(),
            name: p.name.clone(),
            location: p.location.map(|l| [l.lat(), l.lon()]),
            services: p.services.clone(),
            extra: p.extra.iter().cloned().collect(),
            host_peer_id: p.host_peer().map(|h| h.to_string()).unwrap_or_default(),
            host_addrs: p
                .host_multiaddrs()
                .iter()
                .map(ToString::to_string)
                .collect(),
            seq: p.seq,
            expires_at_ms: p.expires_at_ms,
        }
    }
}

/// `POST /v1/profile`: set this node's owner profile.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct SetProfile {
    pub name: String,
    /// `person` (default), `object` or `service`; fixed once published.
    pub kind: Option<String>,
    /// `"LAT,LON"` in degrees.
    pub location: Option<String>,
    pub services: Vec<String>,
    /// `key=value` strings.
    pub extra: Vec<String>,
}

/// `POST /v1/profiles/host`: host someone's signed profile (hex of its bytes).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HostProfile {
    pub signed_hex: String,
}

/// A profile published or hosted, and how far the DHT put got.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Published {
    pub profile: Profile,
    /// Whether at least one other node stored the record (false: stored here, and
    /// republished later).
    pub stored_remotely: bool,
    pub cells: usize,
    pub elapsed_ms: f64,
}

/// One result of `GET /v1/profiles/near`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NearProfile {
    pub distance_m: f64,
    pub profile: Profile,
}

/// Reply of `GET /v1/profiles/near`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Near {
    pub centre: [f64; 2],
    pub radius_m: u32,
    pub precision: usize,
    /// Cells whose providers were listed (the cover's, plus finer cells of crowded ones).
    pub cells: usize,
    /// Iterative Kademlia provider lookups run (only where asking the closest known peers
    /// directly was not enough).
    #[serde(default)]
    pub cell_lookups: usize,
    /// `Providers` requests sent to the peers holding cells' provider records.
    #[serde(default)]
    pub provider_requests: usize,
    /// Cells whose provider list came from the node's short-lived cache.
    #[serde(default)]
    pub cells_cached: usize,
    pub nodes_contacted: usize,
    /// Hosts that did not answer; their profiles are missing from `results`.
    pub nodes_failed: Vec<String>,
    /// Finest cells whose provider lists were full (256 providers stored per cell), or could
    /// only be read cut to k by Kademlia: hosts there may be missing from `results`.
    pub cells_saturated: Vec<String>,
    pub results: Vec<NearProfile>,
    pub elapsed_ms: f64,
}

/// One node of `GET /v1/nodes/near`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NearNode {
    pub peer_id: String,
    pub location: [f64; 2],
    pub distance_m: f64,
}

/// Reply of `GET /v1/nodes/near`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodesNear {
    pub centre: [f64; 2],
    /// The radius the search had to widen to.
    pub radius_m: u32,
    pub nodes_contacted: usize,
    pub results: Vec<NearNode>,
    pub elapsed_ms: f64,
}

/// `POST /v1/mint/observe`: a signed issuer statement, hex.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ObserveRequest {
    pub statement_hex: String,
}

/// What `mint observe` answers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Observed {
    pub statement_id: String,
    pub issuer: String,
    pub asset: String,
    pub series: u64,
    pub mint_hash: String,
    /// False when this node had observed the statement already.
    pub new: bool,
    /// The issuer is a proven equivocator (for any series).
    pub equivocation: bool,
}

/// `GET /v1/mint/status?issuer=`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MintStatus {
    /// Observations and proofs held.
    pub items: usize,
    pub series: Vec<leafnet_mint::SeriesStatus>,
}

/// `GET /v1/mint/proofs`: one equivocation proof.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MintProof {
    pub id: String,
    pub issuer: String,
    pub asset: String,
    pub series: u64,
    pub hashes: [String; 2],
    /// The portable proof (`leafnet mint verify-proof` checks it offline).
    pub proof_hex: String,
    /// When this node found or received it (unix µs); absent for proofs loaded at start.
    pub detected_at_us: Option<u64>,
}

/// `GET /v1/relays`: reachability and relay selection.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Relays {
    /// `public`, `private` or `unknown`.
    pub reachability: String,
    /// AutoNAT v2 probes of this node's addresses that succeeded / failed.
    pub autonat_confirmed: u32,
    pub autonat_failed: u32,
    /// This node serves as a relay now.
    pub relay_server: bool,
    /// This node's relayed (`/p2p-circuit`) addresses.
    pub circuit_addrs: Vec<String>,
    /// Relays reserved on (or being asked).
    pub chosen: Vec<String>,
    pub candidates: Vec<RelayCandidate>,
    pub hole_punches_ok: u64,
    pub hole_punches_failed: u64,
}

/// One relay candidate in [`Relays`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RelayCandidate {
    pub peer_id: String,
    /// provider, bootstrap, identify.
    pub sources: Vec<String>,
    /// Probe times kept, oldest first (one request-response exchange each).
    pub probe_ms: Vec<f64>,
    pub median_ms: Option<f64>,
    pub jitter_ms: Option<f64>,
    pub failures: u32,
    /// none, requested, active, failed.
    pub state: String,
    pub chosen: bool,
}

/// Minor units as leaf with three decimals ("-12.500").
pub fn fmt_leaf(minor: i128) -> String {
    let per = leafnet_leaf::MINOR_PER_LEAF as i128;
    let sign = if minor < 0 { "-" } else { "" };
    let m = minor.unsigned_abs();
    format!("{sign}{}.{:03}", m / per as u128, m % per as u128)
}

/// `POST /v1/leaf/pay`.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct PayRequest {
    /// The payee's account id (64 hex).
    pub payee: String,
    /// In leaf, at most three decimals ("12.5").
    pub amount: String,
    #[serde(default)]
    pub memo: Option<String>,
    /// A signed invoice (hex) this payment settles; its hash becomes the memo.
    #[serde(default)]
    pub invoice_hex: Option<String>,
}

/// One outgoing (or incoming) payment.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
pub struct Payment {
    pub transfer_id: String,
    pub payer: String,
    pub payee: String,
    /// Minor units.
    pub amount: u64,
    pub amount_leaf: String,
    /// pending, abort-requested, paid, refused, aborted (out); received, refused, aborted (in).
    pub status: String,
    /// Why it was refused.
    pub reason: Option<String>,
    pub memo: Option<String>,
    /// The payer's sequence number of the cheque.
    pub seq: u64,
    /// The payee's balance after accepting, as it signed it.
    pub payee_balance: Option<i64>,
    /// Time `pay` took, ms (0 elsewhere).
    pub elapsed_ms: f64,
}

/// `leafnet account`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LeafAccount {
    pub account_id: String,
    /// Minor units: received minus paid.
    pub balance: i64,
    pub balance_leaf: String,
    /// Held by payments in flight.
    pub reserved: u64,
    /// balance − reserved: what can still be spent down to −MAX.
    pub available: i64,
    pub max_balance: i64,
    pub membership: String,
    pub closed: bool,
    pub chain_length: u64,
    /// The network parameters' hash (peers must have the same).
    pub params_hash: String,
    /// Accounts this node holds an equivocation proof against.
    pub equivocators: Vec<String>,
}

/// One record of the account's chain.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct HistoryEntry {
    pub seq: u64,
    /// open, cheque, acceptance, refusal, abort, close.
    pub kind: String,
    pub transfer_id: String,
    pub counterparty: String,
    /// Minor units, negative for payments out.
    pub amount: i64,
    pub status: String,
    pub memo: Option<String>,
    /// The balance after the record (payments out count once paid).
    pub balance: i64,
}

/// `leafnet receipt <id>`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Receipt {
    pub payment: Payment,
    /// out (this account paid) or in (it was paid).
    pub direction: String,
    pub cheque_hex: String,
    pub decision_hex: Option<String>,
    /// For a paid transfer: the receipt an object checks (`leafnet_leaf::Receipt`, CBOR).
    pub receipt_hex: Option<String>,
}

/// `GET /v1/leaf/chain`: the account's signed records from seq 0.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Chain {
    pub account_id: String,
    pub params_hash: String,
    pub entries_hex: Vec<String>,
}

/// `POST /v1/leaf/seen` → what the record was to this node: new, known or fork.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Seen {
    pub verdict: String,
}

/// `POST /v1/leaf/seen` body.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SeenRequest {
    pub entry_hex: String,
}

/// A proven equivocator.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Equivocator {
    pub account_id: String,
    /// The proof (two records at one sequence number), `leafnet_wire::claim::Proof` bytes.
    pub proof_hex: String,
}

/// `POST /v1/leaf/certify`.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct CertifyRequest {
    /// The account certified (64 hex).
    pub subject: String,
    /// An object of this account (its income goes to this account), not a human.
    #[serde(default)]
    pub object: bool,
}

/// A certification made and published.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Certified {
    pub subject: String,
    pub certifier: String,
    /// human or object.
    pub kind: String,
    pub expires_ms: u64,
    /// Peers known to have stored the merged record (at least; a put succeeds at one).
    pub stored_on: usize,
}

/// `GET /v1/leaf/certs/{subject}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Certs {
    pub subject: String,
    pub member: bool,
    pub genesis: bool,
    /// Valid human certifications from members.
    pub certified_by: usize,
    /// K.
    pub needed: u32,
    /// For a certified object: its owner.
    pub owner: Option<String>,
    pub certifications: Vec<Cert>,
}

/// One certification.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Cert {
    pub certifier: String,
    pub kind: String,
    pub issued_ms: u64,
    pub expires_ms: u64,
    /// Valid now under the network's parameters (whether its certifier is a member aside).
    pub valid: bool,
}

/// `POST /v1/leaf/buy` `{"object": multiaddr}`: access bought from an object.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Bought {
    pub object: String,
    pub owner: String,
    pub resource: String,
    /// Access ends at this time (unix ms).
    pub until_ms: u64,
    pub amount: u64,
    pub amount_leaf: String,
    pub transfer_id: String,
    /// The invoice paid (hex).
    pub invoice_hex: String,
    /// The object's signed grant (hex).
    pub grant_hex: String,
    pub elapsed_ms: f64,
}

/// `POST /v1/leaf/buy`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BuyRequest {
    /// The object's multiaddr, ending in `/p2p/<peer id>`.
    pub object: String,
}
