//! The DHT key namespaces this node knows, and their validators.
//!
//! - `node`: `/leafnet/node/<peer id>` → a [`NodeRecord`] signed by that peer's ed25519 identity
//!   key (domain `leafnet/node-record/v1`): its addresses and agent, `seq` (publication time in
//!   unix ms, strictly increasing) and `expires_at_ms`. The owner republishes it.
//! - `dht`: `/leafnet/dht/<name>`: provider records only, free names, for people to see the DHT
//!   work (`leafnet dht provide`); values are refused.
//! - `profile`: `/leafnet/profile/<account id>` → a signed profile (`leafnet_profile`).
//! - `geo`: `/leafnet/geo/<geohash>`: provider records only: the nodes hosting profiles there.
//! - `leaf-certs`: `/leafnet/leaf-certs/<account id>` → the certifications of that account,
//!   merged rather than replaced (`crate::certs`).
//!
//! Any other namespace is refused by the registry (see `leafnet_wire::key`).

use ed25519_dalek::SigningKey;
use leafnet_wire::{
    SignedEnvelope, Validated, Validator, cbor,
    key::{DhtKey, RecordError, Registry},
};
use libp2p::{Multiaddr, PeerId, identity};
use serde::{Deserialize, Serialize};

/// Domain tag of node record signatures.
pub const NODE_RECORD_DOMAIN: &[u8] = b"leafnet/node-record/v1";
/// The largest encoded node record.
pub const NODE_RECORD_MAX: usize = 2048;
const MAX_ADDRS: usize = 16;
const MAX_AGENT: usize = 64;

/// The registry of every namespace this build knows.
pub fn registry() -> Registry {
    let mut r = Registry::default();
    r.register(NodeNs)
        .register(DHT_NS)
        .register(leafnet_profile::Validator)
        .register(GEO_NS)
        .register(RELAY_NS)
        .register(crate::certs::CertsNs);
    r
}

/// Expands a user-given key: a bare name means `/leafnet/dht/<name>`.
pub fn user_key(s: &str) -> Result<DhtKey, leafnet_wire::KeyError> {
    if s.starts_with('/') {
        DhtKey::parse(s.as_bytes())
    } else {
        DhtKey::new("dht", s)
    }
}

/// The signed content of a node record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    pub seq: u64,
    pub expires_at_ms: u64,
    pub agent: String,
    pub addrs: Vec<serde_bytes::ByteBuf>,
}

impl NodeRecord {
    /// Signs this record with the node's identity key into a DHT value.
    pub fn seal(&self, key: &identity::Keypair) -> Option<Vec<u8>> {
        let sk = signing_key(key)?;
        Some(SignedEnvelope::seal(&sk, NODE_RECORD_DOMAIN, cbor::encode(self)).to_bytes())
    }

    /// The addresses, parsed.
    pub fn multiaddrs(&self) -> Vec<Multiaddr> {
        self.addrs
            .iter()
            .filter_map(|b| Multiaddr::try_from(b.to_vec()).ok())
            .collect()
    }

    /// Opens and checks a value for `peer`.
    pub fn open(peer: &str, value: &[u8]) -> Result<Self, RecordError> {
        let env = SignedEnvelope::open(value, NODE_RECORD_MAX, NODE_RECORD_DOMAIN)
            .map_err(|e| RecordError::Invalid(e.to_string()))?;
        let pk = identity::ed25519::PublicKey::try_from_bytes(&env.signer)
            .map_err(|_| RecordError::Invalid("bad signer key".into()))?;
        let signer = PeerId::from_public_key(&identity::PublicKey::from(pk));
        if signer.to_string() != peer {
            return Err(RecordError::Invalid(format!(
                "signed by {signer}, not by {peer}"
            )));
        }
        let rec: NodeRecord = cbor::decode(&env.payload, NODE_RECORD_MAX)
            .map_err(|e| RecordError::Invalid(e.to_string()))?;
        if rec.addrs.len() > MAX_ADDRS || rec.agent.len() > MAX_AGENT {
            return Err(RecordError::Invalid(
                "too many addresses or agent too long".into(),
            ));
        }
        if rec
            .addrs
            .iter()
            .any(|a| Multiaddr::try_from(a.to_vec()).is_err())
        {
            return Err(RecordError::Invalid("malformed address".into()));
        }
        Ok(rec)
    }
}

/// The ed25519 signing key inside a libp2p identity key.
pub fn signing_key(key: &identity::Keypair) -> Option<SigningKey> {
    let ed = key.clone().try_into_ed25519().ok()?;
    let secret: [u8; 32] = ed.secret().as_ref().try_into().ok()?;
    Some(SigningKey::from_bytes(&secret))
}

struct NodeNs;
impl Validator for NodeNs {
    fn namespace(&self) -> &'static str {
        "node"
    }
    fn accepts_records(&self) -> bool {
        true
    }
    fn accepts_providers(&self) -> bool {
        false
    }
    fn max_value_len(&self) -> usize {
        NODE_RECORD_MAX
    }
    fn validate(&self, rest: &str, value: &[u8], _now: u64) -> Result<Validated, RecordError> {
        let rec = NodeRecord::open(rest, value)?;
        Ok(Validated {
            seq: rec.seq,
            expires_at_ms: rec.expires_at_ms,
        })
    }
}

/// Whether `rest` is a geohash of 1 to 12 characters.
pub fn is_geohash(rest: &str) -> bool {
    (1..=12).contains(&rest.len())
        && rest
            .bytes()
            .all(|b| b"0123456789bcdefghjkmnpqrstuvwxyz".contains(&b))
}

/// A namespace of provider records only (values are refused), with a check of the key's rest.
struct ProvidersOnly {
    ns: &'static str,
    key_ok: fn(&str) -> bool,
    what: &'static str,
}

impl Validator for ProvidersOnly {
    fn namespace(&self) -> &'static str {
        self.ns
    }
    fn accepts_records(&self) -> bool {
        false
    }
    fn accepts_providers(&self) -> bool {
        true
    }
    fn max_value_len(&self) -> usize {
        0
    }
    fn validate(&self, _: &str, _: &[u8], _: u64) -> Result<Validated, RecordError> {
        Err(RecordError::RecordsNotAllowed(self.ns.into()))
    }
    fn check_provider_key(&self, rest: &str) -> Result<(), RecordError> {
        if (self.key_ok)(rest) {
            Ok(())
        } else {
            Err(RecordError::Invalid(format!(
                "'{rest}' is not {}",
                self.what
            )))
        }
    }
}

/// `/leafnet/dht/<name>`: free names (any rest the key rules allow).
const DHT_NS: ProvidersOnly = ProvidersOnly {
    ns: "dht",
    key_ok: |_| true,
    what: "a name",
};
/// `/leafnet/geo/<geohash>`: the nodes hosting profiles in that cell.
const GEO_NS: ProvidersOnly = ProvidersOnly {
    ns: "geo",
    key_ok: is_geohash,
    what: "a geohash",
};

/// `/leafnet/relay/v1`: publicly reachable nodes that serve as circuit relays.
const RELAY_NS: ProvidersOnly = ProvidersOnly {
    ns: "relay",
    key_ok: |k| k == "v1",
    what: "v1",
};

#[cfg(test)]
mod tests {
    use super::*;

    fn record(seq: u64, exp: u64) -> NodeRecord {
        NodeRecord {
            seq,
            expires_at_ms: exp,
            agent: "leafnet/test".into(),
            addrs: vec![serde_bytes::ByteBuf::from(
                "/ip4/127.0.0.1/tcp/7800"
                    .parse::<Multiaddr>()
                    .unwrap()
                    .to_vec(),
            )],
        }
    }

    #[test]
    fn node_record_rules() {
        let reg = registry();
        let kp = identity::Keypair::generate_ed25519();
        let other = identity::Keypair::generate_ed25519();
        let me = kp.public().to_peer_id();
        let key = DhtKey::new("node", &me.to_string()).unwrap().to_bytes();
        let v1 = record(1, 10_000).seal(&kp).unwrap();
        assert_eq!(reg.check_record(&key, &v1, None, 5).unwrap().seq, 1);
        // signed by someone else
        let forged = record(2, 10_000).seal(&other).unwrap();
        assert!(matches!(
            reg.check_record(&key, &forged, None, 5),
            Err(RecordError::Invalid(_))
        ));
        // tampered
        let mut t = v1.clone();
        let n = t.len() - 70;
        t[n] ^= 1;
        assert!(reg.check_record(&key, &t, None, 5).is_err());
        // rollback and expiry
        let v2 = record(2, 10_000).seal(&kp).unwrap();
        assert!(matches!(
            reg.check_record(&key, &v1, Some(&v2), 5),
            Err(RecordError::Rollback {
                stored: 2,
                offered: 1
            })
        ));
        assert!(matches!(
            reg.check_record(&key, &v2, None, 20_000),
            Err(RecordError::Expired)
        ));
        // oversized
        let big = vec![0u8; NODE_RECORD_MAX + 1];
        assert!(matches!(
            reg.check_record(&key, &big, None, 5),
            Err(RecordError::TooLarge { .. })
        ));
        // dht takes providers, not records; unknown namespaces nothing
        assert!(reg.check_provider(b"/leafnet/dht/hello").is_ok());
        assert!(
            reg.check_record(b"/leafnet/dht/hello", b"x", None, 5)
                .is_err()
        );
        assert!(matches!(
            reg.check_provider(b"/leafnet/bogus/x"),
            Err(RecordError::UnknownNamespace(_))
        ));
        assert!(reg.check_provider(&key).is_err());
        assert!(reg.check_provider(b"/leafnet/geo/u33db").is_ok());
        assert!(
            reg.check_provider(b"/leafnet/geo/aaaa").is_err(),
            "a is not a geohash digit"
        );
    }

    #[test]
    fn user_keys() {
        assert_eq!(user_key("hello").unwrap().to_string(), "/leafnet/dht/hello");
        assert_eq!(user_key("/leafnet/node/x").unwrap().namespace, "node");
        assert!(user_key("/other/x").is_err());
    }
}
