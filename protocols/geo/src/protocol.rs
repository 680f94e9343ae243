//! `/leafnet/<network>/geo/1`: ask a host for the profiles it hosts inside a circle.
//!
//! Request and response are CBOR over libp2p request-response. Sizes are capped
//! ([`MAX_REQUEST`], [`MAX_RESPONSE`]); a host answers at most [`MAX_PAGE`] profiles per request,
//! nearest first, and says how many more match so the asker can page with `offset`.

use serde::{Deserialize, Serialize};

use crate::Location;

/// The largest request accepted, in bytes.
pub const MAX_REQUEST: u64 = 1024;
/// The largest response accepted, in bytes.
pub const MAX_RESPONSE: u64 = 2 * 1024 * 1024;
/// The most profiles in one response.
pub const MAX_PAGE: u32 = 256;

/// The protocol id for a network.
pub fn protocol_id(network: &str) -> String {
    format!("/leafnet/{network}/geo/1")
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

/// A query to one host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    pub centre: Location,
    pub radius_m: u32,
    pub filter: Filter,
    pub offset: u32,
    pub limit: u32,
}

/// A host's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    /// The host's own configured location, if any (for "nodes near").
    pub node_location: Option<Location>,
    /// Signed profile records (each a `SignedEnvelope`), nearest first.
    pub profiles: Vec<serde_bytes::ByteBuf>,
    /// How many matching profiles the host has in all.
    pub total: u32,
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
    req: &Request,
    node_location: Option<Location>,
) -> Response {
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
    Response {
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
        let mut req = Request {
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
