//! The profile record and its rules.

use ed25519_dalek::SigningKey;
use leafnet_wire::{SignedEnvelope, cbor};
use libp2p::{Multiaddr, PeerId};
use serde::{Deserialize, Serialize};

use crate::Location;

/// Domain tag of profile signatures.
pub const DOMAIN: &[u8] = b"leafnet/profile/v1";
/// The largest signed profile, in bytes.
pub const MAX_SIZE: usize = 4096;
/// The longest name, in bytes.
pub const MAX_NAME: usize = 64;
/// The most `key=value` bytes in all.
pub const MAX_EXTRA: usize = 512;
/// The most services, and the longest service name.
pub const MAX_SERVICES: usize = 16;
pub const MAX_SERVICE_LEN: usize = 32;
/// The most host addresses.
pub const MAX_ADDRS: usize = 8;
/// The longest a profile may claim to stay valid.
pub const MAX_LIFETIME_MS: u64 = 7 * 24 * 3600 * 1000;

/// An account id: the 32-byte ed25519 public key, shown as lowercase hex.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AccountId(pub [u8; 32]);

impl AccountId {
    /// Parses 64 lowercase (or uppercase) hex characters.
    pub fn parse(s: &str) -> Result<Self, ProfileError> {
        let mut b = [0u8; 32];
        hex::decode_to_slice(s, &mut b).map_err(|_| ProfileError::BadAccountId(s.to_owned()))?;
        Ok(Self(b))
    }

    /// The DHT key of this account's profile.
    pub fn profile_key(&self) -> String {
        format!("/leafnet/profile/{self}")
    }
}

impl std::fmt::Display for AccountId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

/// What a profile describes; fixed when the profile is first published.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Person,
    Object,
    Service,
}

impl Kind {
    pub fn parse(s: &str) -> Result<Self, ProfileError> {
        match s {
            "person" => Ok(Kind::Person),
            "object" => Ok(Kind::Object),
            "service" => Ok(Kind::Service),
            _ => Err(ProfileError::Invalid(format!(
                "kind '{s}' is not person, object or service"
            ))),
        }
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            Kind::Person => "person",
            Kind::Object => "object",
            Kind::Service => "service",
        }
    }
}

/// Why a profile was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
#[non_exhaustive]
pub enum ProfileError {
    #[error("'{0}' is not an account id (64 hex characters)")]
    BadAccountId(String),
    #[error("bad signature or envelope: {0}")]
    Signature(String),
    #[error("profile of {0} bytes is over the {MAX_SIZE}-byte limit")]
    TooLarge(usize),
    #[error("profile is signed by {signer}, not by account {account}")]
    WrongSigner { signer: String, account: String },
    #[error("invalid profile: {0}")]
    Invalid(String),
    #[error("profile expired")]
    Expired,
}

/// The signed content of a profile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    #[serde(with = "serde_bytes")]
    pub account: [u8; 32],
    pub kind: Kind,
    pub name: String,
    pub location: Option<Location>,
    pub services: Vec<String>,
    /// `key=value` pairs, sorted by key, keys unique.
    pub extra: Vec<(String, String)>,
    /// The peer id (bytes) of the node that hosts this profile.
    #[serde(with = "serde_bytes")]
    pub host: Vec<u8>,
    /// That node's addresses (multiaddr bytes).
    pub host_addrs: Vec<serde_bytes::ByteBuf>,
    /// Strictly increasing; a stored profile is replaced only by a higher one.
    pub seq: u64,
    pub expires_at_ms: u64,
}

impl Profile {
    pub fn account_id(&self) -> AccountId {
        AccountId(self.account)
    }

    pub fn host_peer(&self) -> Option<PeerId> {
        PeerId::from_bytes(&self.host).ok()
    }

    pub fn host_multiaddrs(&self) -> Vec<Multiaddr> {
        self.host_addrs
            .iter()
            .filter_map(|b| Multiaddr::try_from(b.to_vec()).ok())
            .collect()
    }

    /// Checks every field rule (not the signature) at wall-clock `now_ms`.
    pub fn check(&self, now_ms: u64) -> Result<(), ProfileError> {
        let bad = |m: &str| Err(ProfileError::Invalid(m.to_owned()));
        if self.name.is_empty()
            || self.name.len() > MAX_NAME
            || self.name.chars().any(char::is_control)
        {
            return bad("name must be 1 to 64 bytes without control characters");
        }
        if self.location.is_some_and(|l| !l.is_valid()) {
            return bad("location out of range");
        }
        if self.services.len() > MAX_SERVICES
            || self.services.iter().any(|s| {
                s.is_empty()
                    || s.len() > MAX_SERVICE_LEN
                    || !s
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            })
        {
            return bad("services: at most 16 names of 1 to 32 characters a-z 0-9 -");
        }
        let extra_len: usize = self.extra.iter().map(|(k, v)| k.len() + v.len()).sum();
        if extra_len > MAX_EXTRA {
            return bad("extra data over 512 bytes");
        }
        if self
            .extra
            .iter()
            .any(|(k, _)| k.is_empty() || k.contains('=') || k.chars().any(char::is_control))
            || self.extra.windows(2).any(|w| w[0].0 >= w[1].0)
        {
            return bad("extra keys must be non-empty, unique, sorted, without '='");
        }
        if self.host_peer().is_none() {
            return bad("host is not a peer id");
        }
        if self.host_addrs.len() > MAX_ADDRS
            || self
                .host_addrs
                .iter()
                .any(|a| Multiaddr::try_from(a.to_vec()).is_err())
        {
            return bad("host addresses: at most 8 valid multiaddrs");
        }
        if self.expires_at_ms <= now_ms {
            return Err(ProfileError::Expired);
        }
        if self.expires_at_ms - now_ms > MAX_LIFETIME_MS {
            return bad("expiry more than 7 days ahead");
        }
        Ok(())
    }

    /// Signs the profile with the account key (which must be the profile's account).
    pub fn seal(&self, key: &SigningKey) -> SignedProfile {
        let env = SignedEnvelope::seal(key, DOMAIN, cbor::encode(self));
        let bytes = env.to_bytes();
        SignedProfile {
            profile: self.clone(),
            bytes,
        }
    }
}

/// A profile whose signature and rules were checked, with its exact bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedProfile {
    pub profile: Profile,
    pub bytes: Vec<u8>,
}

impl SignedProfile {
    /// Opens signed bytes: size cap, strict signature, signer = account, canonical payload, rules.
    pub fn open(bytes: &[u8], now_ms: u64) -> Result<Self, ProfileError> {
        if bytes.len() > MAX_SIZE {
            return Err(ProfileError::TooLarge(bytes.len()));
        }
        let env = SignedEnvelope::open(bytes, MAX_SIZE, DOMAIN)
            .map_err(|e| ProfileError::Signature(e.to_string()))?;
        let profile: Profile = cbor::decode(&env.payload, MAX_SIZE)
            .map_err(|e| ProfileError::Invalid(e.to_string()))?;
        if profile.account != env.signer {
            return Err(ProfileError::WrongSigner {
                signer: hex::encode(env.signer),
                account: hex::encode(profile.account),
            });
        }
        profile.check(now_ms)?;
        Ok(Self {
            profile,
            bytes: bytes.to_vec(),
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn sample(key: &SigningKey, seq: u64, exp: u64) -> Profile {
        Profile {
            account: key.verifying_key().to_bytes(),
            kind: Kind::Person,
            name: "Alice".into(),
            location: Some(Location::from_degrees(52.52, 13.4).unwrap()),
            services: vec!["chat".into(), "leaf".into()],
            extra: vec![("lang".into(), "de".into())],
            host: PeerId::random().to_bytes(),
            host_addrs: vec![serde_bytes::ByteBuf::from(
                "/ip4/127.0.0.1/udp/7800/quic-v1"
                    .parse::<Multiaddr>()
                    .unwrap()
                    .to_vec(),
            )],
            seq,
            expires_at_ms: exp,
        }
    }

    #[test]
    fn seal_open_and_rules() {
        let k = SigningKey::from_bytes(&[7; 32]);
        let p = sample(&k, 1, 10_000);
        let s = p.seal(&k);
        assert_eq!(SignedProfile::open(&s.bytes, 5).unwrap().profile, p);
        assert_eq!(
            SignedProfile::open(&s.bytes, 20_000),
            Err(ProfileError::Expired)
        );
        // signed by another key
        let other = SigningKey::from_bytes(&[8; 32]);
        assert!(matches!(
            SignedProfile::open(&p.seal(&other).bytes, 5),
            Err(ProfileError::WrongSigner { .. })
        ));
        // rule violations
        let mut q = p.clone();
        q.name = "x".repeat(65);
        assert!(matches!(
            SignedProfile::open(&q.seal(&k).bytes, 5),
            Err(ProfileError::Invalid(_))
        ));
        let mut q = p.clone();
        q.extra = vec![("b".into(), "1".into()), ("a".into(), "2".into())];
        assert!(q.check(5).is_err());
        let mut q = p.clone();
        q.extra = vec![("k".into(), "v".repeat(600))];
        assert!(q.check(5).is_err());
        let mut q = p.clone();
        q.services = vec!["Chat".into()];
        assert!(q.check(5).is_err());
        let mut q = p.clone();
        q.expires_at_ms = 5 + MAX_LIFETIME_MS + 1;
        assert!(q.check(5).is_err());
        let mut q = p;
        q.location = Some(Location {
            lat_e6: 91_000_000,
            lon_e6: 0,
        });
        assert!(q.check(5).is_err());
        assert_eq!(
            SignedProfile::open(&[0; 5000], 5),
            Err(ProfileError::TooLarge(5000))
        );
    }

    #[test]
    fn account_ids() {
        let k = SigningKey::from_bytes(&[7; 32]);
        let id = AccountId(k.verifying_key().to_bytes());
        assert_eq!(AccountId::parse(&id.to_string()).unwrap(), id);
        assert!(AccountId::parse("abc").is_err());
        assert!(id.profile_key().starts_with("/leafnet/profile/"));
    }
}
