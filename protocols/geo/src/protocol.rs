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
