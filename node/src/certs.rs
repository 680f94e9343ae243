//! leaf certifications in the DHT, and membership resolution (DESIGN §4.5, "membership").
//!
//! **Records.** `/leafnet/leaf-certs/<subject account id>` → canonical CBOR list of signed
//! certifications about that subject (at most [`MAX_CERTS`], one per certifier). A Kademlia
//! record holds one value per key while many members certify one subject, so this namespace
//! **merges** instead of replacing: a node that stores an offered list keeps the union of what
//! it held and what it was offered (one certification per certifier, the latest-expiring; the
//! [`MAX_CERTS`] latest-expiring overall), and a read merges every valid answer. Every
//! certification is verified (`verify_strict`) and must be about the key's subject, well-formed
//! and unexpired; a list with a forged one is refused whole and its sender scored. Merging
//! never needs the lists' authors to agree: each certification carries its own signature.
//!
//! **Membership.** [`crate::flows::Ctx::resolve_membership`] fetches the subject's
//! certifications, then those of their certifiers that are not genesis members, breadth-first
//! (at most [`MAX_FETCHES`] lookups, depth [`MAX_DEPTH`]), and evaluates
//! `Params::members` / `income_account` on everything collected.
//!
//! The certifier's node keeps what it issued (`leaf-issued-certs-1`) and publishes it again
//! every [`REPUBLISH_EVERY`], so certifications outlive the record TTL.

use std::collections::{BTreeMap, HashSet, VecDeque};

use leafnet_leaf::{CertKind, Certification, Params, SignedCertification};
use leafnet_wire::{
    Validated, Validator, cbor,
    key::{DhtKey, RecordError},
};
use serde_bytes::ByteBuf;

use crate::{
    flows::BadInput,
    model,
    swarm::{Command, now_ms},
};

/// The namespace.
pub const NS: &str = "leaf-certs";
/// The most certifications one record holds.
pub const MAX_CERTS: usize = 32;
/// The largest value.
pub const MAX_VALUE: usize = MAX_CERTS * (leafnet_leaf::params::MAX_CERTIFICATION + 8) + 16;
/// Lookups one membership resolution may make.
pub const MAX_FETCHES: usize = 64;
/// How far from the subject a resolution follows certifiers.
pub const MAX_DEPTH: usize = 8;
/// How often a node publishes the certifications it issued again.
pub const REPUBLISH_EVERY: std::time::Duration = std::time::Duration::from_secs(6 * 3600);

/// The DHT key of a subject's certifications.
pub fn key(subject: &[u8; 32]) -> DhtKey {
    DhtKey {
        namespace: NS.into(),
        rest: hex::encode(subject),
    }
}

/// The raw record key of a subject's certifications.
pub fn record_key(subject: &[u8; 32]) -> Vec<u8> {
    key(subject).to_bytes()
}

fn parse_subject(rest: &str) -> Result<[u8; 32], RecordError> {
    let mut s = [0u8; 32];
    hex::decode_to_slice(rest, &mut s)
        .map_err(|_| RecordError::Invalid("key is not an account id".into()))?;
    Ok(s)
}

/// Opens a value strictly: every certification valid, about `subject`, unexpired at `now_ms`,
/// one per certifier.
pub fn open_strict(
    subject: &[u8; 32],
    value: &[u8],
    now_ms: u64,
) -> Result<Vec<SignedCertification>, RecordError> {
    let list: Vec<ByteBuf> =
        cbor::decode(value, MAX_VALUE).map_err(|e| RecordError::Invalid(e.to_string()))?;
    if list.is_empty() || list.len() > MAX_CERTS {
        return Err(RecordError::Invalid(format!(
            "{} certifications (1 to {MAX_CERTS})",
            list.len()
        )));
    }
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(list.len());
    for b in &list {
        let c = SignedCertification::open(b)
            .map_err(|e| RecordError::Invalid(format!("certification: {e}")))?;
        let cert = c.cert();
        if &cert.subject != subject {
            return Err(RecordError::Invalid(
                "a certification about another subject".into(),
            ));
        }
        if cert.expires_ms <= now_ms {
            return Err(RecordError::Invalid("an expired certification".into()));
        }
        if !seen.insert(cert.certifier) {
            return Err(RecordError::Invalid(
                "two certifications by one certifier".into(),
            ));
        }
        out.push(c);
    }
    Ok(out)
}

/// Merges lists of certifications: one per certifier (the latest-expiring), unexpired, the
/// [`MAX_CERTS`] latest-expiring, in certifier order. `None` when nothing is left.
pub fn merge<'a>(
    lists: impl IntoIterator<Item = &'a SignedCertification>,
    now_ms: u64,
) -> Vec<SignedCertification> {
    let mut by: BTreeMap<[u8; 32], &SignedCertification> = BTreeMap::new();
    for c in lists {
        if c.cert().expires_ms <= now_ms {
            continue;
        }
        let e = by.entry(c.cert().certifier).or_insert(c);
        if c.cert().expires_ms > e.cert().expires_ms {
            *e = c;
        }
    }
    let mut all: Vec<&SignedCertification> = by.into_values().collect();
    if all.len() > MAX_CERTS {
        all.sort_by_key(|c| std::cmp::Reverse(c.cert().expires_ms));
        all.truncate(MAX_CERTS);
        all.sort_by_key(|c| c.cert().certifier);
    }
    all.into_iter().cloned().collect()
}

/// The canonical value of a list.
pub fn encode(list: &[SignedCertification]) -> Vec<u8> {
    let v: Vec<ByteBuf> = list
        .iter()
        .map(|c| ByteBuf::from(c.as_bytes().to_vec()))
        .collect();
    cbor::encode(&v)
}

/// The value to store when `offered` (valid) arrives where `stored` is: the merge, or `None`
/// when it adds nothing (a duplicate).
pub fn merged_value(
    subject: &[u8; 32],
    stored: Option<&[u8]>,
    offered: &[u8],
    now_ms: u64,
) -> Result<Option<Vec<u8>>, RecordError> {
    let new = open_strict(subject, offered, now_ms)?;
    let old = stored
        .and_then(|s| open_strict(subject, s, now_ms).ok())
        .unwrap_or_default();
    let merged = merge(old.iter().chain(new.iter()), now_ms);
    let value = encode(&merged);
    if stored == Some(value.as_slice()) {
        return Ok(None);
    }
    Ok(Some(value))
}

/// Whether a record key belongs to this namespace.
pub fn is_certs_key(key: &[u8]) -> Option<[u8; 32]> {
    let k = DhtKey::parse(key).ok()?;
    (k.namespace == NS).then(|| parse_subject(&k.rest).ok())?
}

/// The validator of the namespace.
#[derive(Debug)]
pub struct CertsNs;

impl Validator for CertsNs {
    fn namespace(&self) -> &'static str {
        NS
    }
    fn accepts_records(&self) -> bool {
        true
    }
    fn accepts_providers(&self) -> bool {
        false
    }
    fn max_value_len(&self) -> usize {
        MAX_VALUE
    }
    fn validate(&self, rest: &str, value: &[u8], now_ms: u64) -> Result<Validated, RecordError> {
        let subject = parse_subject(rest)?;
        let list = open_strict(&subject, value, now_ms)?;
        Ok(Validated {
            // Merged, never replaced by seq (see the module documentation).
            seq: list.len() as u64,
            expires_at_ms: list.iter().map(|c| c.cert().expires_ms).max().unwrap_or(0),
        })
    }
}

/// What [`crate::flows::Ctx::resolve_membership`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    /// A member (genesis, or K valid certifications from members).
    pub member: bool,
    /// Valid human certifications of the subject by members.
    pub certified_by: usize,
    /// K.
    pub needed: u32,
    /// For a certified object: its owner (who receives its income).
    pub owner: Option<[u8; 32]>,
    /// Certifications collected (the subject's and its certifiers').
    pub collected: usize,
}

impl crate::flows::Ctx {
    /// The certifications of `subject` the DHT holds (merged answers, verified).
    pub async fn leaf_certs_of(
        &self,
        subject: [u8; 32],
    ) -> anyhow::Result<Vec<SignedCertification>> {
        self.ask(|reply| Command::GetCerts { subject, reply })
            .await?
            .map_err(anyhow::Error::msg)
    }

    /// Resolves whether `subject` is a member (see the module documentation).
    pub async fn resolve_membership(
        &self,
        params: &Params,
        subject: [u8; 32],
        now_ms: u64,
    ) -> anyhow::Result<Membership> {
        let genesis: HashSet<[u8; 32]> = params.genesis.iter().copied().collect();
        if genesis.contains(&subject) {
            return Ok(Membership {
                member: true,
                certified_by: 0,
                needed: params.certifications_needed,
                owner: None,
                collected: 0,
            });
        }
        let mut all = Vec::new();
        let mut fetched = HashSet::new();
        let mut queue = VecDeque::from([(subject, 0usize)]);
        while let Some((s, depth)) = queue.pop_front() {
            if fetched.len() >= MAX_FETCHES {
                break;
            }
            if genesis.contains(&s) || !fetched.insert(s) {
                continue;
            }
            let certs = self.leaf_certs_of(s).await?;
            for c in certs {
                let cert = c.cert();
                if cert.is_valid_at(params, now_ms) && depth < MAX_DEPTH {
                    queue.push_back((cert.certifier, depth + 1));
                }
                all.push(c);
            }
        }
        let members = params.members(&all, now_ms);
        let certified_by = all
            .iter()
            .map(SignedCertification::cert)
            .filter(|c| {
                c.subject == subject
                    && c.kind == CertKind::Human
                    && c.is_valid_at(params, now_ms)
                    && members.contains(&c.certifier)
            })
            .count();
        let member = members.contains(&subject);
        let owner = if member {
            None
        } else {
            params.income_account(&subject, &all, now_ms).ok()
        };
        Ok(Membership {
            member,
            certified_by,
            needed: params.certifications_needed,
            owner,
            collected: all.len(),
        })
    }

    /// `leafnet certify`: signs a certification of `subject` (a human, or with `object` one of
    /// this account's objects), keeps it and publishes it merged into the subject's record.
    pub async fn leaf_certify(
        &self,
        req: model::CertifyRequest,
    ) -> anyhow::Result<model::Certified> {
        let params = self.leaf_params()?;
        let mut subject = [0u8; 32];
        hex::decode_to_slice(req.subject.trim(), &mut subject).map_err(|_| {
            BadInput(format!(
                "'{}' is not an account id (64 hex characters)",
                req.subject
            ))
        })?;
        let me = self.account.verifying_key().to_bytes();
        if subject == me {
            return Err(BadInput("you cannot certify yourself".into()).into());
        }
        let now = now_ms();
        if !self.resolve_membership(&params, me, now).await?.member {
            return Err(BadInput(
                "you are not a member: only members' certifications count".into(),
            )
            .into());
        }
        let kind = if req.object {
            CertKind::Object { owner: me }
        } else {
            CertKind::Human
        };
        let expires_ms = now.saturating_add(params.certification_validity_ms);
        let signed = SignedCertification::seal(
            &self.account,
            Certification {
                certifier: me,
                subject,
                kind,
                issued_ms: now,
                expires_ms,
            },
        )?;
        let db = self.db.clone();
        let bytes = signed.as_bytes().to_vec();
        tokio::task::spawn_blocking(move || {
            leafnet_storage::leaf::put_issued_cert(&db, &subject, &me, &bytes)
        })
        .await??;
        let stored_on = self.leaf_publish_certs(subject, vec![signed]).await?;
        Ok(model::Certified {
            subject: hex::encode(subject),
            certifier: hex::encode(me),
            kind: if req.object { "object" } else { "human" }.into(),
            expires_ms,
            stored_on,
        })
    }

    /// Merges `new` into the DHT's certifications of `subject` and puts the result. Returns on
    /// how many peers it was stored.
    pub(crate) async fn leaf_publish_certs(
        &self,
        subject: [u8; 32],
        new: Vec<SignedCertification>,
    ) -> anyhow::Result<usize> {
        let now = now_ms();
        let current = self.leaf_certs_of(subject).await.unwrap_or_default();
        let merged = merge(current.iter().chain(new.iter()), now);
        if merged.is_empty() {
            return Ok(0);
        }
        let value = encode(&merged);
        self.ask(|reply| Command::PutCerts {
            subject,
            value,
            reply,
        })
        .await?
        .map_err(anyhow::Error::msg)
    }

    /// Publishes every unexpired certification this node issued again (merged).
    pub(crate) async fn leaf_republish_certs(&self) -> anyhow::Result<usize> {
        let db = self.db.clone();
        let issued =
            tokio::task::spawn_blocking(move || leafnet_storage::leaf::issued_certs(&db)).await??;
        let now = now_ms();
        let mut by: BTreeMap<[u8; 32], Vec<SignedCertification>> = BTreeMap::new();
        for b in issued {
            if let Ok(c) = SignedCertification::open(&b)
                && c.cert().expires_ms > now
            {
                by.entry(c.cert().subject).or_default().push(c);
            }
        }
        let mut n = 0;
        for (subject, certs) in by {
            if self.leaf_publish_certs(subject, certs).await.is_ok() {
                n += 1;
            }
        }
        Ok(n)
    }

    /// `GET /v1/leaf/certs/{subject}`: its certifications and membership.
    pub async fn leaf_certs(&self, subject: &str) -> anyhow::Result<model::Certs> {
        let params = self.leaf_params()?;
        let mut s = [0u8; 32];
        hex::decode_to_slice(subject.trim(), &mut s).map_err(|_| {
            BadInput(format!(
                "'{subject}' is not an account id (64 hex characters)"
            ))
        })?;
        let now = now_ms();
        let certs = self.leaf_certs_of(s).await?;
        let m = self.resolve_membership(&params, s, now).await?;
        Ok(model::Certs {
            subject: hex::encode(s),
            member: m.member,
            genesis: params.genesis.contains(&s),
            certified_by: m.certified_by,
            needed: m.needed,
            owner: m.owner.map(hex::encode),
            certifications: certs
                .iter()
                .map(|c| {
                    let c = c.cert();
                    model::Cert {
                        certifier: hex::encode(c.certifier),
                        kind: match c.kind {
                            CertKind::Human => "human".into(),
                            CertKind::Object { .. } => "object".into(),
                        },
                        issued_ms: c.issued_ms,
                        expires_ms: c.expires_ms,
                        valid: c.is_valid_at(&params, now),
                    }
                })
                .collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::SigningKey;

    use super::*;

    fn cert(by: u8, subject: [u8; 32], expires_ms: u64) -> SignedCertification {
        let k = SigningKey::from_bytes(&[by; 32]);
        SignedCertification::seal(
            &k,
            Certification {
                certifier: k.verifying_key().to_bytes(),
                subject,
                kind: CertKind::Human,
                issued_ms: 1,
                expires_ms,
            },
        )
        .unwrap()
    }

    #[test]
    fn merging_keeps_one_per_certifier_and_drops_expired() {
        let s = [9; 32];
        let (a1, a2, b, old) = (
            cert(1, s, 100),
            cert(1, s, 200),
            cert(2, s, 150),
            cert(3, s, 5),
        );
        let m = merge([&a1, &b, &a2, &old], 10);
        assert_eq!(m.len(), 2);
        assert!(m.iter().any(|c| c == &a2), "the later expiry wins");
        assert!(!m.contains(&old));
        // Merging what a record holds with part of it adds nothing.
        let v = encode(&m);
        assert_eq!(
            merged_value(&s, Some(&v), &encode(std::slice::from_ref(&b)), 10),
            Ok(None)
        );
        // A new certifier is added.
        let c = cert(4, s, 300);
        let more = merged_value(&s, Some(&v), &encode(&[c]), 10)
            .unwrap()
            .unwrap();
        assert_eq!(open_strict(&s, &more, 10).unwrap().len(), 3);
    }

    #[test]
    fn lists_with_a_bad_certification_are_refused() {
        let s = [9; 32];
        let v = CertsNs;
        let good = encode(&[cert(1, s, 100)]);
        assert!(v.validate(&hex::encode(s), &good, 10).is_ok());
        // About another subject, expired, duplicated certifier, garbage, empty.
        assert!(v.validate(&hex::encode([8; 32]), &good, 10).is_err());
        assert!(v.validate(&hex::encode(s), &good, 100).is_err());
        let dup = encode(&[cert(1, s, 100), cert(1, s, 120)]);
        assert!(v.validate(&hex::encode(s), &dup, 10).is_err());
        assert!(v.validate(&hex::encode(s), &[0xff; 20], 10).is_err());
        assert!(v.validate(&hex::encode(s), &encode(&[]), 10).is_err());
        // A forged signature.
        let mut bytes = cert(1, s, 100).as_bytes().to_vec();
        let n = bytes.len();
        bytes[n - 3] ^= 1;
        let forged = cbor::encode(&vec![ByteBuf::from(bytes)]);
        assert!(v.validate(&hex::encode(s), &forged, 10).is_err());
    }
}
