//! Network parameters, certifications and the membership rule.
//!
//! Membership is a web of trust: genesis members are members; a subject with at least `K`
//! valid, unexpired [`CertKind::Human`] certifications from distinct members is a member.
//! Objects (robots, vending machines) are certified by their human owner, are never members and
//! hold no balance: what is paid to them goes to the owner ([`Params::income_account`]).

use std::collections::{BTreeMap, BTreeSet};

use ed25519_dalek::SigningKey;
use leafnet_wire::{SignedEnvelope, cbor};
use serde::{Deserialize, Serialize};

use crate::{LeafError, sha256};

/// Domain tag of certification signatures.
pub const CERTIFICATION_DOMAIN: &[u8] = b"leafnet/leaf-certification/v1";
/// The largest signed certification, in bytes (a real one is about 250).
pub const MAX_CERTIFICATION: usize = 1024;
/// The largest encoded [`Params`] (a network of 1000 genesis members still fits).
pub const MAX_PARAMS: usize = 64 * 1024;
/// The most genesis members a network may have (keeps [`MAX_PARAMS`] honest).
pub const MAX_GENESIS: usize = 1000;

/// The parameters every node of one network shares; peers compare [`Params::params_hash`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Params {
    /// `MAX`: every balance stays within `[-MAX, +MAX]` (minor units).
    pub max_balance: i64,
    /// `K`: how many valid certifications from members make a member.
    pub certifications_needed: u32,
    /// The genesis members, sorted and without duplicates (so the hash is one per set).
    pub genesis: Vec<[u8; 32]>,
    /// The longest a certification may be valid for (ms).
    pub certification_validity_ms: u64,
}

impl Params {
    /// Checks that the parameters can work: `MAX > 0`, `K ≥ 1`, 1 to [`MAX_GENESIS`] genesis
    /// members in strictly ascending order, a positive certification validity.
    pub fn check(&self) -> Result<(), LeafError> {
        if self.max_balance <= 0 {
            return Err(LeafError::BadParams("max_balance must be positive"));
        }
        if self.certifications_needed == 0 {
            return Err(LeafError::BadParams(
                "certifications_needed must be at least 1",
            ));
        }
        if self.genesis.is_empty() || self.genesis.len() > MAX_GENESIS {
            return Err(LeafError::BadParams("1 to 1000 genesis members"));
        }
        if !self.genesis.windows(2).all(|w| w[0] < w[1]) {
            return Err(LeafError::BadParams(
                "genesis must be sorted without duplicates",
            ));
        }
        if self.certification_validity_ms == 0 {
            return Err(LeafError::BadParams(
                "certification validity must be positive",
            ));
        }
        Ok(())
    }

    /// SHA-256 of the canonical CBOR of the parameters: two nodes are on the same network only
    /// if their hashes agree, and every chain's `Open` record names it.
    pub fn params_hash(&self) -> [u8; 32] {
        sha256(&[&cbor::encode(self)])
    }

    /// Decodes parameters (size-capped, canonical) and checks them.
    pub fn decode(bytes: &[u8]) -> Result<Self, LeafError> {
        let p: Params = cbor::decode(bytes, MAX_PARAMS)?;
        p.check()?;
        Ok(p)
    }

    /// The largest amount a single cheque may carry: `2 * MAX` (from −MAX to +MAX would need
    /// both ends at their bounds), saturated to what an `i64` holds.
    pub fn max_amount(&self) -> u64 {
        (self.max_balance as u64)
            .saturating_mul(2)
            .min(i64::MAX as u64)
    }

    /// The members at `now_ms`: genesis plus, to a fixed point, every subject with at least `K`
    /// valid human certifications from distinct members. Certifications that do not verify
    /// against these parameters or are not valid at `now_ms` count for nothing.
    pub fn members(&self, certs: &[SignedCertification], now_ms: u64) -> BTreeSet<[u8; 32]> {
        let mut members: BTreeSet<[u8; 32]> = self.genesis.iter().copied().collect();
        let valid: Vec<&Certification> = certs
            .iter()
            .map(|c| &c.cert)
            .filter(|c| c.kind == CertKind::Human && c.is_valid_at(self, now_ms))
            .collect();
        loop {
            let mut by_subject: BTreeMap<[u8; 32], BTreeSet<[u8; 32]>> = BTreeMap::new();
            for c in &valid {
                if members.contains(&c.certifier) && !members.contains(&c.subject) {
                    by_subject.entry(c.subject).or_default().insert(c.certifier);
                }
            }
            let new: Vec<[u8; 32]> = by_subject
                .into_iter()
                .filter(|(_, by)| by.len() >= self.certifications_needed as usize)
                .map(|(s, _)| s)
                .collect();
            if new.is_empty() {
                return members;
            }
            members.extend(new);
        }
    }

    /// Whether `account` is a member at `now_ms` (see [`Params::members`]).
    pub fn is_member(
        &self,
        account: &[u8; 32],
        certs: &[SignedCertification],
        now_ms: u64,
    ) -> bool {
        self.members(certs, now_ms).contains(account)
    }

    /// Who holds the balance for payments to `payee`: the payee itself if it is a member, the
    /// owner if the payee is an object validly certified by a member owner, otherwise
    /// [`LeafError::NotMember`]. Objects hold no balance.
    pub fn income_account(
        &self,
        payee: &[u8; 32],
        certs: &[SignedCertification],
        now_ms: u64,
    ) -> Result<[u8; 32], LeafError> {
        let members = self.members(certs, now_ms);
        if members.contains(payee) {
            return Ok(*payee);
        }
        certs
            .iter()
            .map(|c| &c.cert)
            .filter(|c| &c.subject == payee && c.is_valid_at(self, now_ms))
            .find_map(|c| match c.kind {
                CertKind::Object { owner } if members.contains(&owner) => Some(owner),
                _ => None,
            })
            .ok_or(LeafError::NotMember)
    }
}

/// What a certification vouches for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CertKind {
    /// The subject is a human the certifier knows.
    Human,
    /// The subject is an object of `owner`, who must be the certifier.
    Object {
        /// The object's human owner, who receives its income.
        #[serde(with = "serde_bytes")]
        owner: [u8; 32],
    },
}

/// A member's statement about a subject, valid from `issued_ms` until `expires_ms`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Certification {
    /// Who certifies; must be the signer.
    #[serde(with = "serde_bytes")]
    pub certifier: [u8; 32],
    /// Who is certified.
    #[serde(with = "serde_bytes")]
    pub subject: [u8; 32],
    /// Human or object.
    pub kind: CertKind,
    /// Valid from (unix ms, inclusive).
    pub issued_ms: u64,
    /// Valid until (unix ms, exclusive).
    pub expires_ms: u64,
}

impl Certification {
    /// The field rules that need no clock: no self-certification, an object's certifier is its
    /// owner (and not itself), a non-empty validity window.
    pub fn check(&self) -> Result<(), LeafError> {
        if self.certifier == self.subject {
            return Err(LeafError::BadCertification("self-certification"));
        }
        if let CertKind::Object { owner } = self.kind
            && owner != self.certifier
        {
            return Err(LeafError::BadCertification(
                "an object is certified by its owner",
            ));
        }
        if self.issued_ms >= self.expires_ms {
            return Err(LeafError::BadCertification("empty validity window"));
        }
        Ok(())
    }

    /// Whether the certification counts at `now_ms` under `params`: its rules hold, `now_ms`
    /// is in its window, and the window is no longer than the network allows.
    pub fn is_valid_at(&self, params: &Params, now_ms: u64) -> bool {
        self.check().is_ok()
            && (self.issued_ms..self.expires_ms).contains(&now_ms)
            && self.expires_ms - self.issued_ms <= params.certification_validity_ms
    }
}

/// A certification with its certifier's signature, verified, with its exact bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedCertification {
    cert: Certification,
    bytes: Vec<u8>,
}

impl SignedCertification {
    /// Signs `cert` with the certifier's key; refuses another key or a rule-breaking cert.
    pub fn seal(key: &SigningKey, cert: Certification) -> Result<Self, LeafError> {
        if key.verifying_key().to_bytes() != cert.certifier {
            return Err(LeafError::AuthorMismatch);
        }
        cert.check()?;
        let bytes = SignedEnvelope::seal(key, CERTIFICATION_DOMAIN, cbor::encode(&cert)).to_bytes();
        Ok(Self { cert, bytes })
    }

    /// Opens signed bytes: size cap, strict signature, canonical payload, signer = certifier,
    /// field rules (not the clock: see [`Certification::is_valid_at`]).
    pub fn open(bytes: &[u8]) -> Result<Self, LeafError> {
        if bytes.len() > MAX_CERTIFICATION {
            return Err(LeafError::TooLarge {
                what: "certification",
                len: bytes.len(),
                max: MAX_CERTIFICATION,
            });
        }
        let env = SignedEnvelope::open(bytes, MAX_CERTIFICATION, CERTIFICATION_DOMAIN)?;
        let cert: Certification = cbor::decode(&env.payload, MAX_CERTIFICATION)?;
        if cert.certifier != env.signer {
            return Err(LeafError::AuthorMismatch);
        }
        cert.check()?;
        Ok(Self {
            cert,
            bytes: bytes.to_vec(),
        })
    }

    /// The certification.
    pub fn cert(&self) -> &Certification {
        &self.cert
    }

    /// The canonical signed bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    pub(crate) fn pk(seed: u8) -> [u8; 32] {
        key(seed).verifying_key().to_bytes()
    }

    pub(crate) fn params(max: i64, genesis: &[u8]) -> Params {
        let mut g: Vec<[u8; 32]> = genesis.iter().map(|s| pk(*s)).collect();
        g.sort();
        g.dedup();
        Params {
            max_balance: max,
            certifications_needed: 2,
            genesis: g,
            certification_validity_ms: 1_000_000,
        }
    }

    fn cert(by: u8, subject: [u8; 32], kind: CertKind, from: u64, to: u64) -> SignedCertification {
        SignedCertification::seal(
            &key(by),
            Certification {
                certifier: pk(by),
                subject,
                kind,
                issued_ms: from,
                expires_ms: to,
            },
        )
        .unwrap()
    }

    #[test]
    fn params_rules_and_hash() {
        let p = params(1000, &[1, 2, 3]);
        p.check().unwrap();
        assert_eq!(Params::decode(&cbor::encode(&p)).unwrap(), p);
        let mut q = p.clone();
        q.max_balance = 1001;
        assert_ne!(p.params_hash(), q.params_hash());
        for (f, bad) in [
            (|p: &mut Params| p.max_balance = 0) as fn(&mut Params),
            |p| p.certifications_needed = 0,
            |p| p.genesis.clear(),
            |p| p.genesis.reverse(),
            |p| p.certification_validity_ms = 0,
        ]
        .into_iter()
        .zip(0..)
        {
            let mut q = p.clone();
            f(&mut q);
            assert!(
                matches!(q.check(), Err(LeafError::BadParams(_))),
                "case {bad}"
            );
        }
        assert_eq!(params(i64::MAX, &[1]).max_amount(), i64::MAX as u64);
        assert_eq!(p.max_amount(), 2000);
    }

    #[test]
    fn membership_needs_k_valid_certs_from_members() {
        let p = params(1000, &[1, 2]);
        let s = pk(10);
        // One cert is not enough (K = 2).
        let one = vec![cert(1, s, CertKind::Human, 0, 100)];
        assert!(!p.is_member(&s, &one, 50));
        // Two from members are.
        let two = vec![
            cert(1, s, CertKind::Human, 0, 100),
            cert(2, s, CertKind::Human, 0, 100),
        ];
        assert!(p.is_member(&s, &two, 50));
        // Expired or not yet valid: not.
        assert!(!p.is_member(&s, &two, 100));
        // Two certs from the same member count once.
        let dup = vec![
            cert(1, s, CertKind::Human, 0, 100),
            cert(1, s, CertKind::Human, 1, 100),
        ];
        assert!(!p.is_member(&s, &dup, 50));
        // From non-members: not.
        let strangers = vec![
            cert(7, s, CertKind::Human, 0, 100),
            cert(8, s, CertKind::Human, 0, 100),
        ];
        assert!(!p.is_member(&s, &strangers, 50));
        // Transitively: 10 becomes a member, then 10 and 1 certify 11.
        let mut chain = two.clone();
        chain.push(cert(10, pk(11), CertKind::Human, 0, 100));
        chain.push(cert(1, pk(11), CertKind::Human, 0, 100));
        assert!(p.is_member(&pk(11), &chain, 50));
        // Longer than the network's validity: does not count.
        let long = vec![
            cert(1, s, CertKind::Human, 0, 2_000_000),
            cert(2, s, CertKind::Human, 0, 2_000_000),
        ];
        assert!(!p.is_member(&s, &long, 50));
        // Genesis members are members with no certs at all.
        assert!(p.is_member(&pk(1), &[], 0));
    }

    #[test]
    fn objects_hold_no_balance_income_goes_to_owner() {
        let p = params(1000, &[1, 2]);
        let robot = pk(20);
        let certs = vec![cert(1, robot, CertKind::Object { owner: pk(1) }, 0, 100)];
        assert_eq!(p.income_account(&robot, &certs, 50), Ok(pk(1)));
        assert!(!p.is_member(&robot, &certs, 50));
        assert_eq!(p.income_account(&pk(2), &certs, 50), Ok(pk(2)));
        assert_eq!(
            p.income_account(&robot, &certs, 100),
            Err(LeafError::NotMember)
        );
        // An owner who is not a member gets nothing.
        let c = vec![cert(9, robot, CertKind::Object { owner: pk(9) }, 0, 100)];
        assert_eq!(p.income_account(&robot, &c, 50), Err(LeafError::NotMember));
    }

    #[test]
    fn certification_rules_and_signatures() {
        let c = Certification {
            certifier: pk(1),
            subject: pk(1),
            kind: CertKind::Human,
            issued_ms: 0,
            expires_ms: 1,
        };
        assert!(matches!(c.check(), Err(LeafError::BadCertification(_))));
        let c = Certification {
            subject: pk(2),
            kind: CertKind::Object { owner: pk(3) },
            ..c
        };
        assert!(matches!(c.check(), Err(LeafError::BadCertification(_))));
        let c = Certification {
            kind: CertKind::Human,
            expires_ms: 0,
            ..c
        };
        assert!(matches!(c.check(), Err(LeafError::BadCertification(_))));
        let good = cert(1, pk(2), CertKind::Human, 0, 10);
        assert_eq!(SignedCertification::open(good.as_bytes()).unwrap(), good);
        assert_eq!(good.cert().subject, pk(2));
        // Signed by another key than the certifier's.
        let forged = SignedEnvelope::seal(&key(5), CERTIFICATION_DOMAIN, cbor::encode(good.cert()));
        assert_eq!(
            SignedCertification::open(&forged.to_bytes()),
            Err(LeafError::AuthorMismatch)
        );
        assert_eq!(
            SignedCertification::seal(&key(5), good.cert().clone()),
            Err(LeafError::AuthorMismatch)
        );
        let mut b = good.as_bytes().to_vec();
        let n = b.len();
        b[n - 1] ^= 1;
        assert!(matches!(
            SignedCertification::open(&b),
            Err(LeafError::Sign(_))
        ));
        assert!(matches!(
            SignedCertification::open(&vec![0; MAX_CERTIFICATION + 1]),
            Err(LeafError::TooLarge { .. })
        ));
    }
}
