//! `/leafnet/<network>/geo/1`: the location network's request-response protocol.
//!
//! Two requests, CBOR over libp2p request-response:
//!
//! - [`Request::Profiles`]: ask a *host* for the profiles it hosts inside a circle. A host answers
//!   at most [`MAX_PAGE`] profiles per request, nearest first, and says how many more match so
//!   the asker can page with `offset`.
//! - [`Request::Providers`]: ask a *record holder* (one of the Kademlia peers closest to the key
//!   `/leafnet/geo/<cell>`) for every provider it stores for that cell, up to [`MAX_PROVIDERS`],
//!   with their addresses. Kademlia's own GET_PROVIDERS answer is cut to k providers by
//!   libp2p-kad 0.49; this one is not. The holder also says how many peers of its routing table
//!   are closer to the key than itself (`closer`), so the asker can tell whether it asked a peer
//!   that should hold the record at all.
//!
//! Sizes are capped ([`MAX_REQUEST`], [`MAX_RESPONSE`]) by the codec, and every decoded message
//! is checked again ([`Request::check`], [`ProvidersResponse::check`]) before use: list lengths,
//! string lengths, the cell's alphabet and precision.

use serde::{Deserialize, Serialize};

use crate::Location;

/// The largest request accepted, in bytes.
pub const MAX_REQUEST: u64 = 1024;
/// The largest response accepted, in bytes.
pub const MAX_RESPONSE: u64 = 2 * 1024 * 1024;
/// The most profiles in one response.
pub const MAX_PAGE: u32 = 256;
/// The most providers in one [`ProvidersResponse`] (the store's cap per geo cell key).
pub const MAX_PROVIDERS: usize = 256;
/// The most addresses per provider in a [`ProvidersResponse`].
pub const MAX_PROVIDER_ADDRS: usize = 8;
/// The longest address (bytes of a multiaddr) in a [`ProvidersResponse`].
pub const MAX_ADDR_LEN: usize = 256;
/// The longest peer id (bytes of a multihash) in a [`ProvidersResponse`].
pub const MAX_PEER_ID_LEN: usize = 64;
/// The geohash alphabet.
const GEOHASH_ALPHABET: &[u8] = b"0123456789bcdefghjkmnpqrstuvwxyz";

/// The protocol id for a network.
pub fn protocol_id(network: &str) -> String {
    format!("/leafnet/{network}/geo/1")
}

/// Why a decoded message is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    #[error("invalid cell {0:?}: not a geohash of an announced precision")]
    Cell(String),
    #[error("invalid circle: centre out of range or radius above the maximum")]
    Circle,
    #[error("filter field {0} too long")]
    Filter(&'static str),
    #[error("too many providers: {0}")]
    TooManyProviders(usize),
    #[error("provider {index}: {problem}")]
    Provider { index: usize, problem: &'static str },
}

/// Whether `cell` is a geohash of one of [`crate::PRECISIONS`].
pub fn check_cell(cell: &str) -> Result<(), ProtocolError> {
    let ok = crate::PRECISIONS.contains(&cell.len())
        && cell.bytes().all(|b| GEOHASH_ALPHABET.contains(&b));
    if ok {
        Ok(())
    } else {
        // never echo more than a short prefix of what a peer sent
        Err(ProtocolError::Cell(cell.chars().take(16).collect()))
    }
}

/// Filters a host applies (and the asker checks again).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Filter {
    /// A glob over the profile name (`*` and `?`), case-insensitive.
    pub name: Option<String>,
    /// `person`, `object` or `service`.
    pub kind: Option<String>,
    /// An application service the profile offers.
    pub service: Option<String>,
}

/// A query to one host: its profiles inside a circle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProfilesRequest {
    pub centre: Location,
    pub radius_m: u32,
    pub filter: Filter,
    pub offset: u32,
    pub limit: u32,
}

/// A request of `/leafnet/<net>/geo/1`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// To a host: its profiles inside a circle.
    Profiles(ProfilesRequest),
    /// To a record holder: every provider it stores for `/leafnet/geo/<cell>`.
    Providers { cell: String },
}

impl Request {
    /// Checks a decoded request before the node acts on it.
    pub fn check(&self) -> Result<(), ProtocolError> {
        match self {
            Request::Profiles(r) => {
                if !r.centre.is_valid() || r.radius_m > crate::MAX_RADIUS_M {
                    return Err(ProtocolError::Circle);
                }
                let f = &r.filter;
                if f.name.as_ref().is_some_and(|n| n.len() > 64) {
                    return Err(ProtocolError::Filter("name"));
                }
                if f.kind.as_ref().is_some_and(|k| k.len() > 16) {
                    return Err(ProtocolError::Filter("kind"));
                }
                if f.service.as_ref().is_some_and(|s| s.len() > 32) {
                    return Err(ProtocolError::Filter("service"));
                }
                Ok(())
            }
            Request::Providers { cell } => check_cell(cell),
        }
    }
}

/// A host's answer to [`Request::Profiles`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProfilesResponse {
    /// The host's own configured location, if any (for "nodes near").
    pub node_location: Option<Location>,
    /// Signed profile records (each a `SignedEnvelope`), nearest first.
    pub profiles: Vec<serde_bytes::ByteBuf>,
    /// How many matching profiles the host has in all.
    pub total: u32,
}

/// One stored provider record, as raw bytes (this crate does not depend on libp2p; the node
/// parses them as a `PeerId` and `Multiaddr`s).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderEntry {
    pub peer: serde_bytes::ByteBuf,
    pub addrs: Vec<serde_bytes::ByteBuf>,
}

/// A record holder's answer to [`Request::Providers`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProvidersResponse {
    /// The unexpired providers the holder stores for the cell, at most [`MAX_PROVIDERS`].
    pub providers: Vec<ProviderEntry>,
    /// How many peers of the holder's routing table are closer to the cell key than the holder
    /// (counted up to 255). Kademlia stores a provider record at the k peers closest to the key,
    /// so a holder with `closer >= k` is probably not one of them.
    pub closer: u32,
}

impl ProvidersResponse {
    /// Checks a decoded answer: list lengths and the size of every entry.
    pub fn check(&self) -> Result<(), ProtocolError> {
        if self.providers.len() > MAX_PROVIDERS {
            return Err(ProtocolError::TooManyProviders(self.providers.len()));
        }
        for (index, p) in self.providers.iter().enumerate() {
            let problem = if p.peer.is_empty() || p.peer.len() > MAX_PEER_ID_LEN {
                "peer id length"
            } else if p.addrs.len() > MAX_PROVIDER_ADDRS {
                "too many addresses"
            } else if p
                .addrs
                .iter()
                .any(|a| a.is_empty() || a.len() > MAX_ADDR_LEN)
            {
                "address length"
            } else {
                continue;
            };
            return Err(ProtocolError::Provider { index, problem });
        }
        Ok(())
    }
}

/// A response of `/leafnet/<net>/geo/1` (the variant matches the request's).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    Profiles(ProfilesResponse),
    Providers(ProvidersResponse),
}

/// Case-insensitive glob match with `*` (any run) and `?` (one character).
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.to_lowercase().chars().collect();
    let t: Vec<char> = text.to_lowercase().chars().collect();
    // Iterative matcher with backtracking to the last star: O(|p|·|t|) worst case.
    let (mut pi, mut ti) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, ti));
                pi += 1;
            }
            Some(c) if *c == '?' || *c == t[ti] => {
                pi += 1;
                ti += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    pi = sp + 1;
                    ti = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match("a*", "Alice"));
        assert!(glob_match("*ice", "alice"));
        assert!(glob_match("a?ice", "alice"));
        assert!(glob_match("*", ""));
        assert!(!glob_match("a?", "a"));
        assert!(!glob_match("bob", "alice"));
        assert!(glob_match("*l*c*", "alice"));
        assert!(glob_match("taxi*", "Taxi 42"));
    }
}

/// Whether `p` matches a query, and at what distance (metres).
pub fn matches(
    p: &leafnet_profile::Profile,
    centre: Location,
    radius_m: u32,
    f: &Filter,
) -> Option<f64> {
    let loc = p.location?;
    let d = crate::distance_m(centre, loc);
    if d > f64::from(radius_m) {
        return None;
    }
    if f.kind.as_deref().is_some_and(|k| k != p.kind.as_str()) {
        return None;
    }
    if f.service.as_ref().is_some_and(|s| !p.services.contains(s)) {
        return None;
    }
    if f.name.as_ref().is_some_and(|g| !glob_match(g, &p.name)) {
        return None;
    }
    Some(d)
}

/// Orders matches nearest first; equal distances by account id, so every node sorts alike.
pub fn order(a: (f64, &[u8; 32]), b: (f64, &[u8; 32])) -> std::cmp::Ordering {
    a.0.total_cmp(&b.0).then_with(|| a.1.cmp(b.1))
}

/// The host's side: the matching hosted profiles, nearest first, one page of them.
pub fn select<'a>(
    hosted: impl Iterator<Item = &'a leafnet_profile::SignedProfile>,
    req: &ProfilesRequest,
    node_location: Option<Location>,
) -> ProfilesResponse {
    let mut hits: Vec<(f64, &leafnet_profile::SignedProfile)> = hosted
        .filter_map(|s| matches(&s.profile, req.centre, req.radius_m, &req.filter).map(|d| (d, s)))
        .collect();
    hits.sort_by(|a, b| order((a.0, &a.1.profile.account), (b.0, &b.1.profile.account)));
    let total = u32::try_from(hits.len()).unwrap_or(u32::MAX);
    let limit = req.limit.min(MAX_PAGE) as usize;
    let profiles = hits
        .into_iter()
        .skip(req.offset as usize)
        .take(limit)
        .map(|(_, s)| serde_bytes::ByteBuf::from(s.bytes.clone()))
        .collect();
    ProfilesResponse {
        node_location,
        profiles,
        total,
    }
}

#[cfg(test)]
mod select_tests {
    use super::*;
    use ed25519_dalek::SigningKey;
    use leafnet_profile::{Kind, Profile, SignedProfile};

    fn prof(seed: u8, lat: f64, lon: f64, name: &str) -> SignedProfile {
        let k = SigningKey::from_bytes(&[seed; 32]);
        Profile {
            account: k.verifying_key().to_bytes(),
            kind: Kind::Person,
            name: name.into(),
            location: Some(Location::from_degrees(lat, lon).unwrap()),
            services: vec!["chat".into()],
            extra: vec![],
            host: libp2p_peer_bytes(),
            host_addrs: vec![],
            seq: 1,
            expires_at_ms: u64::MAX / 2,
        }
        .seal(&k)
    }

    fn libp2p_peer_bytes() -> Vec<u8> {
        // identity multihash of an ed25519 key: a valid peer id without pulling libp2p here
        let mut v = vec![0x00, 0x24, 0x08, 0x01, 0x12, 0x20];
        v.extend_from_slice(&[9; 32]);
        v
    }

    #[test]
    fn select_filters_sorts_and_pages() {
        let c = Location::from_degrees(0.0, 0.0).unwrap();
        let ps = [
            prof(1, 0.0, 0.02, "Bob"),
            prof(2, 0.0, 0.01, "Alice"),
            prof(3, 0.0, 1.0, "Far"),
        ];
        let mut req = ProfilesRequest {
            centre: c,
            radius_m: 5_000,
            filter: Filter::default(),
            offset: 0,
            limit: 10,
        };
        let r = select(ps.iter(), &req, None);
        assert_eq!(r.total, 2);
        assert_eq!(
            r.profiles[0].as_ref(),
            ps[1].bytes.as_slice(),
            "nearest first"
        );
        req.limit = 1;
        req.offset = 1;
        let r = select(ps.iter(), &req, None);
        assert_eq!((r.total, r.profiles.len()), (2, 1));
        assert_eq!(r.profiles[0].as_ref(), ps[0].bytes.as_slice());
        req.offset = 0;
        req.limit = 10;
        req.filter.name = Some("al*".into());
        assert_eq!(select(ps.iter(), &req, None).total, 1);
        req.filter = Filter {
            kind: Some("object".into()),
            ..Filter::default()
        };
        assert_eq!(select(ps.iter(), &req, None).total, 0);
    }
}

#[cfg(test)]
mod check_tests {
    use super::*;

    #[test]
    fn cells_are_checked() {
        assert!(check_cell("u33db").is_ok());
        assert!(check_cell("u").is_ok());
        assert!(check_cell("u33dbcq").is_err(), "finer than precision 6");
        assert!(check_cell("").is_err());
        assert!(check_cell("u33a").is_err(), "a is not in the alphabet");
        assert!(check_cell("U33").is_err(), "upper case");
        assert!(
            Request::Providers {
                cell: "/leafnet".into()
            }
            .check()
            .is_err()
        );
        let long = "x".repeat(500);
        match check_cell(&long) {
            Err(ProtocolError::Cell(c)) => assert_eq!(c.len(), 16),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn providers_responses_are_checked() {
        let entry = |peer: usize, addrs: usize, len: usize| ProviderEntry {
            peer: serde_bytes::ByteBuf::from(vec![1; peer]),
            addrs: vec![serde_bytes::ByteBuf::from(vec![4; len]); addrs],
        };
        let ok = ProvidersResponse {
            providers: vec![entry(38, 2, 20); MAX_PROVIDERS],
            closer: 0,
        };
        assert!(ok.check().is_ok());
        let mut r = ok.clone();
        r.providers.push(entry(38, 1, 20));
        assert!(matches!(r.check(), Err(ProtocolError::TooManyProviders(_))));
        for bad in [
            entry(0, 1, 20),
            entry(65, 1, 20),
            entry(38, MAX_PROVIDER_ADDRS + 1, 20),
            entry(38, 1, MAX_ADDR_LEN + 1),
            entry(38, 1, 0),
        ] {
            let r = ProvidersResponse {
                providers: vec![entry(38, 1, 20), bad],
                closer: 0,
            };
            assert!(
                matches!(r.check(), Err(ProtocolError::Provider { index: 1, .. })),
                "{r:?}"
            );
        }
    }

    #[test]
    fn profile_requests_are_checked() {
        let ok = ProfilesRequest {
            centre: Location::from_degrees(1.0, 2.0).unwrap(),
            radius_m: 1000,
            filter: Filter::default(),
            offset: 0,
            limit: 10,
        };
        assert!(Request::Profiles(ok.clone()).check().is_ok());
        let mut r = ok.clone();
        r.radius_m = crate::MAX_RADIUS_M + 1;
        assert_eq!(Request::Profiles(r).check(), Err(ProtocolError::Circle));
        let mut r = ok;
        r.filter.name = Some("n".repeat(65));
        assert_eq!(
            Request::Profiles(r).check(),
            Err(ProtocolError::Filter("name"))
        );
    }
}
