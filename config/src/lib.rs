//! leafnet's configuration file, `leafnet.toml` in the data directory.
//!
//! [`Config`] is the file format: every field has a documented default (`#[serde(default)]`), so
//! an empty file is a valid main-network node. The node layers it as *file, then `LEAFNET_*`
//! environment, then flags* (the last two through clap, see `node/src/cli.rs`), applies the
//! overrides with [`Config::apply`], and then calls [`Config::validate`], which turns the text
//! form into a [`Valid`] config of parsed multiaddrs and socket addresses or returns a
//! [`ConfigError`] that names the field and the problem.
//!
//! Tests are at the bottom of this file.

use std::{net::SocketAddr, path::Path, time::Duration};

use libp2p::Multiaddr;
use serde::{Deserialize, Serialize};

/// The default QUIC/TCP port: UDP 7800 is the leaf protocol's home, as in the IO protocol.
pub const DEFAULT_P2P_PORT: u16 = 7800;
/// The default WebSocket port.
pub const DEFAULT_WS_PORT: u16 = 7801;
/// The default control API address.
pub const DEFAULT_API: &str = "127.0.0.1:7880";
/// The transports a node can be built with.
pub const TRANSPORTS: [&str; 4] = ["tcp", "quic", "websocket", "memory"];

/// A problem in the effective configuration, naming the field.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// A field has a value that cannot be used.
    #[error("invalid config: {field}: {problem}")]
    Invalid { field: String, problem: String },
    /// The file is not valid TOML for this format.
    #[error("invalid config file {path}: {problem}")]
    Parse { path: String, problem: String },
    /// The file could not be read.
    #[error("cannot read config file {path}: {problem}")]
    Io { path: String, problem: String },
}

fn invalid(field: impl Into<String>, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field: field.into(),
        problem: problem.into(),
    }
}

/// The whole file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct Config {
    pub network: Network,
    pub node: NodeSection,
    pub p2p: P2p,
    pub api: Api,
    pub kad: Kad,
    pub mint: Mint,
    pub relay: Relay,
    pub leaf: Leaf,
}

/// The leaf money's network parameters (DESIGN §4.5). Every node of a network must have the
/// same; two nodes whose parameters differ refuse to transact and say so.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct Leaf {
    /// `MAX`: every balance stays within [-MAX, +MAX], in minor units (1 leaf = 1000).
    pub max_balance: i64,
    /// `K`: valid certifications from members that make a member.
    pub certifications_needed: u32,
    /// The longest a certification may be valid for.
    #[serde(with = "humantime_serde")]
    pub certification_validity: Duration,
    /// The genesis members' account ids (64 hex characters each). Empty: payments are off on
    /// this node (a network without genesis members has no members).
    pub genesis: Vec<String>,
    /// How long a payee has to accept a payment before the payer asks for an abort.
    #[serde(with = "humantime_serde")]
    pub payment_deadline: Duration,
}

impl Default for Leaf {
    fn default() -> Self {
        Self {
            max_balance: 1_000_000,
            certifications_needed: 3,
            certification_validity: Duration::from_secs(365 * 24 * 3600),
            genesis: Vec::new(),
            payment_deadline: Duration::from_secs(60),
        }
    }
}

/// [`Leaf`], checked: genesis parsed, sorted and without duplicates.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LeafValid {
    pub max_balance: i64,
    pub certifications_needed: u32,
    pub certification_validity: Duration,
    pub genesis: Vec<[u8; 32]>,
    pub payment_deadline: Duration,
}

impl Leaf {
    fn validate(&self) -> Result<LeafValid, ConfigError> {
        if self.max_balance <= 0 {
            return Err(invalid("leaf.max_balance", "must be positive"));
        }
        if self.certifications_needed == 0 {
            return Err(invalid("leaf.certifications_needed", "must be at least 1"));
        }
        if self.certification_validity < Duration::from_secs(1) {
            return Err(invalid(
                "leaf.certification_validity",
                "must be at least 1s",
            ));
        }
        if self.payment_deadline < Duration::from_secs(1)
            || self.payment_deadline > Duration::from_secs(24 * 3600)
        {
            return Err(invalid(
                "leaf.payment_deadline",
                "must be between 1s and 24h",
            ));
        }
        if self.genesis.len() > 1000 {
            return Err(invalid("leaf.genesis", "at most 1000 members"));
        }
        let mut genesis = Vec::with_capacity(self.genesis.len());
        for g in &self.genesis {
            let mut b = [0u8; 32];
            hex::decode_to_slice(g.trim(), &mut b).map_err(|_| {
                invalid(
                    "leaf.genesis",
                    format!("'{g}' is not an account id (64 hex characters)"),
                )
            })?;
            genesis.push(b);
        }
        genesis.sort_unstable();
        genesis.dedup();
        Ok(LeafValid {
            max_balance: self.max_balance,
            certifications_needed: self.certifications_needed,
            certification_validity: self.certification_validity,
            genesis,
            payment_deadline: self.payment_deadline,
        })
    }
}

/// Which network the node belongs to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct Network {
    /// The network's name; it is part of every protocol id, so networks never mix.
    pub name: String,
    /// A local test network: loopback and private addresses count as external, and Kademlia
    /// runs in server mode from the start.
    pub local: bool,
}

impl Default for Network {
    fn default() -> Self {
        Self {
            name: "main".into(),
            local: false,
        }
    }
}

/// This node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct NodeSection {
    /// Where this node is, as `"LAT,LON"` in degrees, for "nodes near"; empty: not announced.
    pub location: String,
    /// The most profiles of others this node hosts (the profile server role).
    pub max_hosted_profiles: u32,
}

impl Default for NodeSection {
    fn default() -> Self {
        Self {
            location: String::new(),
            max_hosted_profiles: 1000,
        }
    }
}

/// The peer-to-peer side.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct P2p {
    /// Transports to build, any of `tcp`, `quic`, `websocket`, `memory` (tests).
    pub transports: Vec<String>,
    /// Multiaddrs to listen on. Addresses of a transport that is not enabled are refused.
    pub listen: Vec<String>,
    /// Addresses to announce as this node's own, in addition to what is learned.
    pub external: Vec<String>,
    /// Multiaddrs of bootstrap peers, each ending in `/p2p/<peer id>`.
    pub bootstrap: Vec<String>,
    /// How long a connection with no protocol using it stays open.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// The most established connections in all.
    pub max_connections: u32,
    /// The most established connections to one peer.
    pub max_connections_per_peer: u32,
    /// The most connections being set up (each direction).
    pub max_pending: u32,
}

impl Default for P2p {
    fn default() -> Self {
        Self {
            transports: vec!["tcp".into(), "quic".into(), "websocket".into()],
            listen: vec![
                format!("/ip4/0.0.0.0/tcp/{DEFAULT_P2P_PORT}"),
                format!("/ip4/0.0.0.0/udp/{DEFAULT_P2P_PORT}/quic-v1"),
                format!("/ip4/0.0.0.0/tcp/{DEFAULT_WS_PORT}/ws"),
            ],
            external: Vec::new(),
            bootstrap: Vec::new(),
            idle_timeout: Duration::from_secs(60),
            max_connections: 256,
            max_connections_per_peer: 4,
            max_pending: 64,
        }
    }
}

/// The control API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct Api {
    /// Address of the HTTP control API; port 0 picks a free port (written to `api.addr`).
    pub listen: String,
    /// Allow `listen` on a non-loopback address. The API is guarded by the bearer token only.
    pub allow_non_loopback: bool,
}

impl Default for Api {
    fn default() -> Self {
        Self {
            listen: DEFAULT_API.into(),
            allow_non_loopback: false,
        }
    }
}

/// Kademlia.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct Kad {
    /// `auto` (server once reachable, or on a local network), `server` or `client`.
    pub mode: String,
    /// Replication factor k.
    pub replication_factor: u32,
    /// Query timeout.
    #[serde(with = "humantime_serde")]
    pub query_timeout: Duration,
    /// Time to live of records and provider records.
    #[serde(with = "humantime_serde")]
    pub record_ttl: Duration,
    /// How often this node re-announces the keys it provides.
    #[serde(with = "humantime_serde")]
    pub provider_publication_interval: Duration,
    /// How often the routing table is refreshed.
    #[serde(with = "humantime_serde")]
    pub bootstrap_interval: Duration,
    /// The most value records stored for others.
    pub max_records: u32,
    /// The most keys this node itself provides.
    pub max_provided_keys: u32,
    /// The most providers stored per key (extra ones are dropped, as in libp2p's MemoryStore).
    pub max_providers_per_key: u32,
}

impl Default for Kad {
    fn default() -> Self {
        Self {
            mode: "auto".into(),
            replication_factor: 20,
            query_timeout: Duration::from_secs(30),
            record_ttl: Duration::from_secs(48 * 3600),
            provider_publication_interval: Duration::from_secs(12 * 3600),
            bootstrap_interval: Duration::from_secs(300),
            max_records: 65_536,
            max_provided_keys: 4_096,
            max_providers_per_key: 20,
        }
    }
}

/// Reachability behind NAT: AutoNAT, circuit relays chosen by latency, hole punching.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct Relay {
    /// `auto` (AutoNAT v2 probes decide), `public` or `private` (assume it, e.g. behind a NAT
    /// you know of).
    pub reachability: String,
    /// Serve as a circuit relay (v2) while publicly reachable.
    pub server: bool,
    /// Relay server limits: reservations and circuits in all.
    pub max_reservations: u32,
    pub max_circuits: u32,
    /// How many relays a private node reserves on (k).
    pub reservations: u32,
    /// Pings per relay candidate in one probe round.
    pub pings_per_probe: u32,
    /// How often relay candidates are probed again.
    #[serde(with = "humantime_serde")]
    pub probe_interval: Duration,
}

impl Default for Relay {
    fn default() -> Self {
        Self {
            reachability: "auto".into(),
            server: true,
            max_reservations: 128,
            max_circuits: 16,
            reservations: 2,
            pings_per_probe: 3,
            probe_interval: Duration::from_secs(300),
        }
    }
}

/// What a node assumes about its reachability.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reachability {
    /// AutoNAT v2 decides (a local network counts as public).
    Auto,
    Public,
    Private,
}

/// Comparing notes on mint files: the gossip topic and anti-entropy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct Mint {
    /// Gossipsub heartbeat (mesh maintenance and gossip emission).
    #[serde(with = "humantime_serde")]
    pub heartbeat: Duration,
    /// How often the node reconciles its statements and proofs with one random peer (it also
    /// does on every new connection).
    #[serde(with = "humantime_serde")]
    pub sync_interval: Duration,
    /// The most statements, observations and proofs kept.
    pub max_items: u32,
}

impl Default for Mint {
    fn default() -> Self {
        Self {
            heartbeat: Duration::from_secs(1),
            sync_interval: Duration::from_secs(60),
            max_items: 1_000_000,
        }
    }
}

/// Values from flags and the environment that override the file.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct Overrides {
    pub network: Option<String>,
    pub local: Option<bool>,
    /// Replaces `p2p.listen` when not empty.
    pub listen: Vec<String>,
    /// Added to `p2p.bootstrap`.
    pub bootstrap: Vec<String>,
    /// Added to `p2p.external`.
    pub external: Vec<String>,
    /// Replaces `p2p.transports` when not empty.
    pub transports: Vec<String>,
    pub api: Option<String>,
    pub allow_non_loopback_api: Option<bool>,
    pub kad_mode: Option<String>,
    pub location: Option<String>,
    /// `relay.reachability`.
    pub reachability: Option<String>,
}

/// Kademlia's mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KadMode {
    Auto,
    Server,
    Client,
}

/// A validated configuration: every address parsed, every number in range.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Valid {
    pub network: String,
    pub local: bool,
    pub tcp: bool,
    pub quic: bool,
    pub websocket: bool,
    pub memory: bool,
    pub listen: Vec<Multiaddr>,
    pub external: Vec<Multiaddr>,
    pub bootstrap: Vec<Multiaddr>,
    pub idle_timeout: Duration,
    pub max_connections: u32,
    pub max_connections_per_peer: u32,
    pub max_pending: u32,
    pub api: SocketAddr,
    pub kad_mode: KadMode,
    pub kad: Kad,
    pub mint: Mint,
    pub relay: Relay,
    pub reachability: Reachability,
    /// The leaf money's parameters.
    pub leaf: LeafValid,
    /// The node's location in degrees (lat, lon).
    pub location: Option<(f64, f64)>,
    pub max_hosted_profiles: u32,
    /// How long a radius query reuses a cell's provider list (0: never). Not in the file: a
    /// knob for tests and benchmarks; the default is [`GEO_PROVIDER_CACHE`].
    pub geo_provider_cache: Duration,
    /// Whether a radius query first asks the closest peers of its routing table for a cell's
    /// providers (else it always runs an iterative lookup). Not in the file: a knob for tests
    /// and benchmarks; on by default.
    pub geo_direct: bool,
}

/// The default of [`Valid::geo_provider_cache`].
pub const GEO_PROVIDER_CACHE: Duration = Duration::from_secs(30);

impl Config {
    /// Reads a file; a missing file is an error (the node writes defaults on first run).
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Io {
            path: path.display().to_string(),
            problem: e.to_string(),
        })?;
        Self::parse(&text).map_err(|problem| ConfigError::Parse {
            path: path.display().to_string(),
            problem,
        })
    }

    /// Parses the TOML text of a config file.
    pub fn parse(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| e.message().to_owned() + &span_hint(text, e.span()))
    }

    /// The file's text, with a header.
    pub fn to_toml(&self) -> String {
        let body = toml::to_string_pretty(self).unwrap_or_default();
        format!(
            "# leafnet node configuration. Every field is optional; see README.md, \
             \"Configuration reference\".\n# Flags and LEAFNET_* environment variables override \
             this file for one run.\n\n{body}"
        )
    }

    /// Applies flag and environment overrides.
    pub fn apply(&mut self, o: &Overrides) {
        if let Some(n) = &o.network {
            self.network.name.clone_from(n);
        }
        if let Some(l) = o.local {
            self.network.local = l;
        }
        if !o.listen.is_empty() {
            self.p2p.listen.clone_from(&o.listen);
        }
        if !o.transports.is_empty() {
            self.p2p.transports.clone_from(&o.transports);
        }
        self.p2p.bootstrap.extend(o.bootstrap.iter().cloned());
        self.p2p.external.extend(o.external.iter().cloned());
        if let Some(a) = &o.api {
            self.api.listen.clone_from(a);
        }
        if let Some(a) = o.allow_non_loopback_api {
            self.api.allow_non_loopback = a;
        }
        if let Some(m) = &o.kad_mode {
            self.kad.mode.clone_from(m);
        }
        if let Some(l) = &o.location {
            self.node.location.clone_from(l);
        }
        if let Some(r) = &o.reachability {
            self.relay.reachability.clone_from(r);
        }
    }

    /// Checks every field and parses addresses.
    pub fn validate(&self) -> Result<Valid, ConfigError> {
        let name = &self.network.name;
        if name.is_empty()
            || name.len() > 32
            || !name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(invalid(
                "network.name",
                format!("'{name}' must be 1 to 32 characters of a-z, 0-9 and '-'"),
            ));
        }
        let mut enabled = [false; 4];
        if self.p2p.transports.is_empty() {
            return Err(invalid("p2p.transports", "no transport enabled"));
        }
        for (i, t) in self.p2p.transports.iter().enumerate() {
            let Some(pos) = TRANSPORTS.iter().position(|k| k == t) else {
                return Err(invalid(
                    format!("p2p.transports[{i}]"),
                    format!("unknown transport '{t}' (known: {})", TRANSPORTS.join(", ")),
                ));
            };
            enabled[pos] = true;
        }
        let [tcp, quic, websocket, memory] = enabled;
        let listen = parse_addrs("p2p.listen", &self.p2p.listen)?;
        for (i, a) in listen.iter().enumerate() {
            let t = transport_of(a);
            let on = match t {
                Some("tcp") => tcp,
                Some("quic") => quic,
                Some("websocket") => websocket,
                Some("memory") => memory,
                _ => {
                    return Err(invalid(
                        format!("p2p.listen[{i}]"),
                        format!("'{a}' is not a tcp, quic-v1, ws or memory address"),
                    ));
                }
            };
            if !on {
                return Err(invalid(
                    format!("p2p.listen[{i}]"),
                    format!(
                        "'{a}' needs transport '{}', which is not enabled",
                        t.unwrap_or("?")
                    ),
                ));
            }
        }
        let external = parse_addrs("p2p.external", &self.p2p.external)?;
        let bootstrap = parse_addrs("p2p.bootstrap", &self.p2p.bootstrap)?;
        for (i, a) in bootstrap.iter().enumerate() {
            if !matches!(a.iter().last(), Some(libp2p::multiaddr::Protocol::P2p(_))) {
                return Err(invalid(
                    format!("p2p.bootstrap[{i}]"),
                    format!("'{a}' must end with /p2p/<peer id>"),
                ));
            }
        }
        if self.p2p.idle_timeout < Duration::from_secs(1) {
            return Err(invalid("p2p.idle_timeout", "must be at least 1s"));
        }
        for (field, v) in [
            ("p2p.max_connections", self.p2p.max_connections),
            (
                "p2p.max_connections_per_peer",
                self.p2p.max_connections_per_peer,
            ),
            ("p2p.max_pending", self.p2p.max_pending),
            ("kad.replication_factor", self.kad.replication_factor),
            ("kad.max_records", self.kad.max_records),
            ("kad.max_provided_keys", self.kad.max_provided_keys),
            ("kad.max_providers_per_key", self.kad.max_providers_per_key),
            ("mint.max_items", self.mint.max_items),
            ("relay.max_reservations", self.relay.max_reservations),
            ("relay.max_circuits", self.relay.max_circuits),
            ("relay.reservations", self.relay.reservations),
            ("relay.pings_per_probe", self.relay.pings_per_probe),
        ] {
            if v == 0 {
                return Err(invalid(field, "must be at least 1"));
            }
        }
        for (field, d) in [
            ("kad.query_timeout", self.kad.query_timeout),
            ("kad.record_ttl", self.kad.record_ttl),
            (
                "kad.provider_publication_interval",
                self.kad.provider_publication_interval,
            ),
            ("kad.bootstrap_interval", self.kad.bootstrap_interval),
            ("mint.sync_interval", self.mint.sync_interval),
            ("relay.probe_interval", self.relay.probe_interval),
        ] {
            if d < Duration::from_secs(1) {
                return Err(invalid(field, "must be at least 1s"));
            }
        }
        if self.kad.provider_publication_interval >= self.kad.record_ttl {
            return Err(invalid(
                "kad.provider_publication_interval",
                "must be shorter than kad.record_ttl, or provider records lapse between announcements",
            ));
        }
        if self.mint.heartbeat < Duration::from_millis(50)
            || self.mint.heartbeat > Duration::from_secs(60)
        {
            return Err(invalid("mint.heartbeat", "must be between 50ms and 60s"));
        }
        let reachability = match self.relay.reachability.as_str() {
            "auto" => Reachability::Auto,
            "public" => Reachability::Public,
            "private" => Reachability::Private,
            r => {
                return Err(invalid(
                    "relay.reachability",
                    format!("'{r}' is not auto, public or private"),
                ));
            }
        };
        let api: SocketAddr = self.api.listen.parse().map_err(|_| {
            invalid(
                "api.listen",
                format!("'{}' is not an IP:port address", self.api.listen),
            )
        })?;
        if !api.ip().is_loopback() && !self.api.allow_non_loopback {
            return Err(invalid(
                "api.listen",
                format!(
                    "{api} is not a loopback address; set api.allow_non_loopback (flag \
                     --api-allow-non-loopback) to expose the control API"
                ),
            ));
        }
        let kad_mode = match self.kad.mode.as_str() {
            "auto" => KadMode::Auto,
            "server" => KadMode::Server,
            "client" => KadMode::Client,
            m => {
                return Err(invalid(
                    "kad.mode",
                    format!("'{m}' is not auto, server or client"),
                ));
            }
        };
        let location = match self.node.location.trim() {
            "" => None,
            l => Some(parse_location(l).ok_or_else(|| {
                invalid(
                    "node.location",
                    format!("'{l}' is not LAT,LON in degrees (-90..90, -180..180)"),
                )
            })?),
        };
        Ok(Valid {
            location,
            max_hosted_profiles: self.node.max_hosted_profiles,
            geo_provider_cache: GEO_PROVIDER_CACHE,
            geo_direct: true,
            network: name.clone(),
            local: self.network.local,
            tcp,
            quic,
            websocket,
            memory,
            listen,
            external,
            bootstrap,
            idle_timeout: self.p2p.idle_timeout,
            max_connections: self.p2p.max_connections,
            max_connections_per_peer: self.p2p.max_connections_per_peer,
            max_pending: self.p2p.max_pending,
            api,
            kad_mode,
            kad: self.kad.clone(),
            mint: self.mint.clone(),
            relay: self.relay.clone(),
            reachability,
            leaf: self.leaf.validate()?,
        })
    }
}

/// Which transport an address belongs to: `tcp`, `quic`, `websocket` or `memory`.
pub fn transport_of(addr: &Multiaddr) -> Option<&'static str> {
    use libp2p::multiaddr::Protocol as P;
    let mut kind = None;
    for p in addr.iter() {
        kind = match (kind, p) {
            (_, P::Memory(_)) => Some("memory"),
            (_, P::P2pCircuit) => return None,
            (None, P::Tcp(_)) => Some("tcp"),
            (Some("tcp"), P::Ws(_) | P::Wss(_)) => Some("websocket"),
            (None, P::QuicV1) => Some("quic"),
            (k, _) => k,
        };
    }
    kind
}

/// Parses `LAT,LON` in degrees, checking ranges.
pub fn parse_location(s: &str) -> Option<(f64, f64)> {
    let (a, b) = s.split_once(',')?;
    let lat: f64 = a.trim().parse().ok()?;
    let lon: f64 = b.trim().parse().ok()?;
    ((-90.0..=90.0).contains(&lat) && (-180.0..=180.0).contains(&lon)).then_some((lat, lon))
}

fn parse_addrs(field: &str, list: &[String]) -> Result<Vec<Multiaddr>, ConfigError> {
    list.iter()
        .enumerate()
        .map(|(i, s)| {
            s.parse::<Multiaddr>().map_err(|e| {
                invalid(
                    format!("{field}[{i}]"),
                    format!("'{s}' is not a multiaddr: {e}"),
                )
            })
        })
        .collect()
}

fn span_hint(text: &str, span: Option<std::ops::Range<usize>>) -> String {
    let Some(span) = span else {
        return String::new();
    };
    let line = text
        .get(..span.start)
        .map_or(0, |t| t.matches('\n').count())
        + 1;
    format!(" (line {line})")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_round_trip() {
        let c = Config::default();
        let v = c.validate().unwrap();
        assert!(v.tcp && v.quic && v.websocket && !v.memory);
        assert_eq!(v.api.port(), 7880);
        assert_eq!(Config::parse(&c.to_toml()).unwrap(), c);
        assert_eq!(Config::parse("").unwrap(), c);
    }

    #[test]
    fn errors_name_the_field() {
        let mut c = Config::default();
        c.p2p.transports = vec!["tcp".into(), "carrier-pigeon".into()];
        let e = c.validate().unwrap_err().to_string();
        assert!(
            e.contains("p2p.transports[1]") && e.contains("carrier-pigeon"),
            "{e}"
        );

        let mut c = Config::default();
        c.p2p.listen.push("/ip4/1.2.3.4/tcp/notaport".into());
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("p2p.listen[3]"), "{e}");

        let mut c = Config::default();
        c.p2p.transports = vec!["tcp".into()];
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("p2p.listen[1]") && e.contains("quic"), "{e}");

        let mut c = Config::default();
        c.p2p.bootstrap.push("/ip4/127.0.0.1/tcp/1".into());
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("/p2p/<peer id>")
        );

        let mut c = Config::default();
        c.api.listen = "0.0.0.0:7880".into();
        assert!(c.validate().unwrap_err().to_string().contains("api.listen"));
        c.api.allow_non_loopback = true;
        assert!(c.validate().is_ok());

        let mut c = Config::default();
        c.node.location = "95,1".into();
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("node.location")
        );
        c.node.location = "52.5,13.4".into();
        assert_eq!(c.validate().unwrap().location, Some((52.5, 13.4)));

        let mut c = Config::default();
        c.network.name = "Main Net".into();
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("network.name")
        );
    }

    #[test]
    fn unknown_fields_and_bad_types_are_refused() {
        let e = Config::parse("[p2p]\nlisten = 5\n").unwrap_err();
        assert!(e.contains("line 2"), "{e}");
        assert!(
            Config::parse("[p2p]\nlistne = []\n")
                .unwrap_err()
                .contains("listne")
        );
    }

    #[test]
    fn overrides() {
        let mut c = Config::default();
        c.apply(&Overrides {
            network: Some("local".into()),
            listen: vec!["/ip4/127.0.0.1/tcp/0".into()],
            bootstrap: vec![
                "/ip4/127.0.0.1/tcp/1/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN"
                    .into(),
            ],
            ..Default::default()
        });
        let v = c.validate().unwrap();
        assert_eq!(v.network, "local");
        assert_eq!(v.listen.len(), 1);
        assert_eq!(v.bootstrap.len(), 1);
    }

    #[test]
    fn transport_of_addresses() {
        let t = |s: &str| transport_of(&s.parse().unwrap());
        assert_eq!(t("/ip4/1.2.3.4/tcp/1"), Some("tcp"));
        assert_eq!(t("/ip4/1.2.3.4/tcp/1/ws"), Some("websocket"));
        assert_eq!(t("/ip6/::1/udp/1/quic-v1"), Some("quic"));
        assert_eq!(t("/memory/5"), Some("memory"));
        assert_eq!(t("/ip4/1.2.3.4/udp/1"), None);
        assert_eq!(
            t("/dns4/example.org/tcp/1/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN"),
            Some("tcp")
        );
    }
}
