//! DHT key namespaces and the validator registry.
//!
//! Every Kademlia key leafnet stores is `/leafnet/<namespace>/<rest>`. A namespace has one
//! [`Validator`], registered by the node at start. With Kademlia's `StoreInserts::FilterBoth` the
//! node hands every inbound record and provider record to [`Registry::check_record`] /
//! [`Registry::check_provider`] before storing it: a key of an unknown namespace is refused, a
//! record is stored only after its namespace's checks (signature, key match, size, expiry) and
//! the anti-rollback rule (a stored record is replaced only by one with a higher `seq`).

use std::collections::BTreeMap;

/// The prefix of every leafnet DHT key.
pub const PREFIX: &str = "/leafnet/";
/// The longest key accepted, in bytes.
pub const MAX_KEY_LEN: usize = 256;

/// Why a key could not be parsed.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
#[non_exhaustive]
pub enum KeyError {
    #[error("key of {0} bytes is over the {MAX_KEY_LEN}-byte limit")]
    TooLong(usize),
    #[error("key is not utf-8")]
    NotUtf8,
    #[error("key does not start with {PREFIX}")]
    NotLeafnet,
    #[error("key has an empty or malformed namespace")]
    BadNamespace,
    #[error("key has an empty remainder or one with control characters")]
    BadRest,
}

/// A parsed leafnet DHT key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DhtKey {
    pub namespace: String,
    pub rest: String,
}

impl DhtKey {
    /// Builds a key from its parts, checking them as [`DhtKey::parse`] would.
    pub fn new(namespace: &str, rest: &str) -> Result<Self, KeyError> {
        Self::parse(format!("{PREFIX}{namespace}/{rest}").as_bytes())
    }

    /// Parses raw key bytes.
    pub fn parse(bytes: &[u8]) -> Result<Self, KeyError> {
        if bytes.len() > MAX_KEY_LEN {
            return Err(KeyError::TooLong(bytes.len()));
        }
        let s = std::str::from_utf8(bytes).map_err(|_| KeyError::NotUtf8)?;
        let tail = s.strip_prefix(PREFIX).ok_or(KeyError::NotLeafnet)?;
        let (ns, rest) = tail.split_once('/').ok_or(KeyError::BadNamespace)?;
        if ns.is_empty()
            || !ns
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(KeyError::BadNamespace);
        }
        if rest.is_empty() || rest.chars().any(char::is_control) {
            return Err(KeyError::BadRest);
        }
        Ok(Self {
            namespace: ns.to_owned(),
            rest: rest.to_owned(),
        })
    }

    /// The raw key bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.to_string().into_bytes()
    }
}

impl std::fmt::Display for DhtKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{PREFIX}{}/{}", self.namespace, self.rest)
    }
}

/// What a validator learned from a valid record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validated {
    /// Strictly increasing per key; a stored record is replaced only by a higher one.
    pub seq: u64,
    /// Unix milliseconds after which the record is void.
    pub expires_at_ms: u64,
}

/// Why a record or provider record was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
#[non_exhaustive]
pub enum RecordError {
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("unknown key namespace '{0}'")]
    UnknownNamespace(String),
    #[error("namespace '{0}' takes no records")]
    RecordsNotAllowed(String),
    #[error("namespace '{0}' takes no provider records")]
    ProvidersNotAllowed(String),
    #[error("value of {len} bytes is over the {max}-byte limit of its namespace")]
    TooLarge { len: usize, max: usize },
    #[error("record expired")]
    Expired,
    #[error("invalid record: {0}")]
    Invalid(String),
    #[error("rollback: stored seq {stored}, offered seq {offered}")]
    Rollback { stored: u64, offered: u64 },
    #[error("record is identical to the stored one")]
    Duplicate,
}

impl RecordError {
    /// Whether sending this is misbehaviour to be scored against the sender. A duplicate (the
    /// normal Kademlia re-replication) and a record that merely expired in flight are not.
    pub fn is_misbehaviour(&self) -> bool {
        !matches!(self, RecordError::Duplicate | RecordError::Expired)
    }
}

/// The checks of one key namespace.
pub trait Validator: Send + Sync + 'static {
    /// The namespace this validator owns (`node`, `profile`, …).
    fn namespace(&self) -> &'static str;
    /// Whether value records may be stored under this namespace.
    fn accepts_records(&self) -> bool;
    /// Whether provider records may be stored under this namespace.
    fn accepts_providers(&self) -> bool;
    /// The largest value accepted, in bytes.
    fn max_value_len(&self) -> usize;
    /// Checks a value for the key remainder `rest` at wall-clock `now_ms`.
    fn validate(&self, rest: &str, value: &[u8], now_ms: u64) -> Result<Validated, RecordError>;
    /// Checks the key remainder of a provider record (e.g. that it is a geohash).
    fn check_provider_key(&self, _rest: &str) -> Result<(), RecordError> {
        Ok(())
    }
    /// Checks a valid update against the valid stored record (beyond the higher `seq`), e.g.
    /// fields fixed at creation. Both were validated before.
    fn check_update(
        &self,
        _rest: &str,
        _old: &[u8],
        _new: &[u8],
        _now_ms: u64,
    ) -> Result<(), RecordError> {
        Ok(())
    }
}

/// The validators of all known namespaces.
#[derive(Default)]
pub struct Registry {
    validators: BTreeMap<&'static str, Box<dyn Validator>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("namespaces", &self.namespaces())
            .finish()
    }
}

impl Registry {
    /// Adds (or replaces) the validator of its namespace.
    pub fn register(&mut self, v: impl Validator) -> &mut Self {
        self.validators.insert(v.namespace(), Box::new(v));
        self
    }

    /// The known namespaces, sorted.
    pub fn namespaces(&self) -> Vec<&'static str> {
        self.validators.keys().copied().collect()
    }

    fn lookup(&self, key: &[u8]) -> Result<(&dyn Validator, DhtKey), RecordError> {
        let key = DhtKey::parse(key)?;
        let v = self
            .validators
            .get(key.namespace.as_str())
            .ok_or_else(|| RecordError::UnknownNamespace(key.namespace.clone()))?;
        Ok((v.as_ref(), key))
    }

    /// Checks that provider records may be stored under `key`.
    pub fn check_provider(&self, key: &[u8]) -> Result<DhtKey, RecordError> {
        let (v, key) = self.lookup(key)?;
        if !v.accepts_providers() {
            return Err(RecordError::ProvidersNotAllowed(key.namespace));
        }
        v.check_provider_key(&key.rest)?;
        Ok(key)
    }

    /// Checks a value record alone (as read back from the DHT).
    pub fn validate(
        &self,
        key: &[u8],
        value: &[u8],
        now_ms: u64,
    ) -> Result<Validated, RecordError> {
        let (v, key) = self.lookup(key)?;
        if !v.accepts_records() {
            return Err(RecordError::RecordsNotAllowed(key.namespace));
        }
        if value.len() > v.max_value_len() {
            return Err(RecordError::TooLarge {
                len: value.len(),
                max: v.max_value_len(),
            });
        }
        let ok = v.validate(&key.rest, value, now_ms)?;
        if ok.expires_at_ms <= now_ms {
            return Err(RecordError::Expired);
        }
        Ok(ok)
    }

    /// Checks an offered record against the one stored under the same key, if any: the offered
    /// record must be valid and, when the stored one is still valid, have a higher `seq`.
    pub fn check_record(
        &self,
        key: &[u8],
        value: &[u8],
        stored: Option<&[u8]>,
        now_ms: u64,
    ) -> Result<Validated, RecordError> {
        let offered = self.validate(key, value, now_ms)?;
        if let Some(stored) = stored {
            if stored == value {
                return Err(RecordError::Duplicate);
            }
            if let Ok(old) = self.validate(key, stored, now_ms) {
                if offered.seq <= old.seq {
                    return Err(RecordError::Rollback {
                        stored: old.seq,
                        offered: offered.seq,
                    });
                }
                let (v, k) = self.lookup(key)?;
                v.check_update(&k.rest, stored, value, now_ms)?;
            }
        }
        Ok(offered)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Test validator: value = 8-byte big-endian seq, then 8-byte expiry; rest must be "ok".
    struct Toy;
    impl Validator for Toy {
        fn namespace(&self) -> &'static str {
            "toy"
        }
        fn accepts_records(&self) -> bool {
            true
        }
        fn accepts_providers(&self) -> bool {
            false
        }
        fn max_value_len(&self) -> usize {
            16
        }
        fn validate(&self, rest: &str, value: &[u8], _now: u64) -> Result<Validated, RecordError> {
            if rest != "ok" || value.len() != 16 {
                return Err(RecordError::Invalid("toy".into()));
            }
            let seq = u64::from_be_bytes(value[..8].try_into().unwrap());
            let exp = u64::from_be_bytes(value[8..].try_into().unwrap());
            Ok(Validated {
                seq,
                expires_at_ms: exp,
            })
        }
    }

    fn val(seq: u64, exp: u64) -> Vec<u8> {
        [seq.to_be_bytes(), exp.to_be_bytes()].concat()
    }

    #[test]
    fn parse_keys() {
        let k = DhtKey::parse(b"/leafnet/node/abc/def").unwrap();
        assert_eq!((k.namespace.as_str(), k.rest.as_str()), ("node", "abc/def"));
        assert_eq!(k.to_string(), "/leafnet/node/abc/def");
        assert_eq!(DhtKey::parse(b"/ipfs/x/y"), Err(KeyError::NotLeafnet));
        assert_eq!(DhtKey::parse(b"/leafnet/x"), Err(KeyError::BadNamespace));
        assert_eq!(DhtKey::parse(b"/leafnet/X/y"), Err(KeyError::BadNamespace));
        assert_eq!(DhtKey::parse(b"/leafnet/x/"), Err(KeyError::BadRest));
        assert_eq!(DhtKey::parse(&[0xff]), Err(KeyError::NotUtf8));
        assert!(matches!(
            DhtKey::parse(&[b'a'; 300]),
            Err(KeyError::TooLong(300))
        ));
    }

    #[test]
    fn registry_rules() {
        let mut r = Registry::default();
        r.register(Toy);
        let k = b"/leafnet/toy/ok";
        assert_eq!(r.check_record(k, &val(1, 100), None, 10).unwrap().seq, 1);
        assert_eq!(
            r.check_record(b"/leafnet/zzz/ok", &val(1, 100), None, 10),
            Err(RecordError::UnknownNamespace("zzz".into()))
        );
        assert_eq!(
            r.check_record(k, &val(1, 5), None, 10),
            Err(RecordError::Expired)
        );
        assert_eq!(
            r.check_record(k, &val(1, 100), Some(&val(2, 100)), 10),
            Err(RecordError::Rollback {
                stored: 2,
                offered: 1
            })
        );
        assert_eq!(
            r.check_record(k, &val(2, 100), Some(&val(2, 100)), 10),
            Err(RecordError::Duplicate)
        );
        assert_eq!(
            r.check_record(k, &val(3, 100), Some(&val(2, 100)), 10)
                .unwrap()
                .seq,
            3
        );
        // A stored record that has expired no longer blocks a lower seq.
        assert!(
            r.check_record(k, &val(1, 100), Some(&val(2, 5)), 10)
                .is_ok()
        );
        assert!(matches!(
            r.check_record(k, &[0; 17], None, 10),
            Err(RecordError::TooLarge { .. })
        ));
        assert_eq!(
            r.check_provider(k),
            Err(RecordError::ProvidersNotAllowed("toy".into()))
        );
        assert!(!RecordError::Duplicate.is_misbehaviour());
        assert!(RecordError::Invalid(String::new()).is_misbehaviour());
    }
}
