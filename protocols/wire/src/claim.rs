//! Equivocation: one author, one slot, two contents.
//!
//! A [`Claim`] is a signed statement "`author` says that at `slot` the content is `content`".
//! An honest author makes at most one claim per slot (a mint issuer one mint hash per asset
//! series, an account one ledger entry per sequence number). Two valid claims of one author at
//! one slot with different contents are therefore a [`Proof`] of misbehaviour that anybody can
//! check offline, with nothing but the two signed byte strings: no clock, no network, no trust in
//! whoever handed the proof over.
//!
//! The proof carries the two claims' canonical bytes in byte order (`a < b`), so one pair of
//! claims has exactly one proof encoding and one [`Proof::id`].

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::{DecodeError, SignError, cbor};

/// The largest encoded [`Proof`], in bytes.
pub const MAX_PROOF: usize = 16 * 1024;

/// A signed statement by `author` that at `slot` the content is `content`.
///
/// Implementations must be canonical: [`Claim::open_claim`] accepts only bytes that
/// [`Claim::claim_bytes`] gives back unchanged (canonical CBOR in a [`crate::SignedEnvelope`]
/// does that), so a pair of claims has one proof.
pub trait Claim: Sized {
    /// Decodes and fully verifies (signature with `verify_strict`, rules) one signed claim from
    /// its canonical bytes.
    fn open_claim(bytes: &[u8]) -> Result<Self, ClaimError>;
    /// The author's ed25519 public key.
    fn author(&self) -> [u8; 32];
    /// Canonical bytes naming the slot (e.g. CBOR of (asset, series), or an account's sequence
    /// number).
    fn slot(&self) -> Vec<u8>;
    /// Hash of what the claim says at that slot.
    fn content(&self) -> [u8; 32];
    /// The claim's canonical signed bytes.
    fn claim_bytes(&self) -> Vec<u8>;
}

/// Why a claim or a proof was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClaimError {
    /// A claim decoded and verified, but breaks a rule of its kind.
    #[error("invalid claim: {0}")]
    Invalid(String),
    /// A proof or a claim is not canonical CBOR of the expected shape, or too large.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// A claim's signature or key is bad.
    #[error(transparent)]
    Sign(SignError),
    /// The two claims do not contradict each other: same content, different authors or
    /// different slots.
    #[error("the claims do not conflict: {0}")]
    NotConflicting(&'static str),
    /// The proof's halves are equal or not in canonical (bytewise ascending) order.
    #[error("proof halves are not in strictly ascending byte order")]
    Unordered,
}

impl From<SignError> for ClaimError {
    /// An envelope that fails to *decode* is a decoding problem, not a signature problem.
    fn from(e: SignError) -> Self {
        match e {
            SignError::Decode(d) => ClaimError::Decode(d),
            e => ClaimError::Sign(e),
        }
    }
}

/// Two valid claims by one author at one slot with different contents: portable, verifiable
/// offline by anyone.
///
/// A `Proof` as such is only bytes; [`Proof::verify`] is what makes it evidence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proof {
    /// The bytewise smaller claim.
    #[serde(with = "serde_bytes")]
    pub a: Vec<u8>,
    /// The bytewise larger claim.
    #[serde(with = "serde_bytes")]
    pub b: Vec<u8>,
}

/// Checks that `x` and `y` contradict each other.
fn conflict<C: Claim>(x: &C, y: &C) -> Result<(), ClaimError> {
    if x.author() != y.author() {
        return Err(ClaimError::NotConflicting("different authors"));
    }
    if x.slot() != y.slot() {
        return Err(ClaimError::NotConflicting("different slots"));
    }
    if x.content() == y.content() {
        return Err(ClaimError::NotConflicting("same content"));
    }
    Ok(())
}

impl Proof {
    /// Makes the proof that `x` and `y` contradict each other (same author, same slot, different
    /// content), in canonical order.
    pub fn new<C: Claim>(x: &C, y: &C) -> Result<Proof, ClaimError> {
        conflict(x, y)?;
        let (x, y) = (x.claim_bytes(), y.claim_bytes());
        match x.cmp(&y) {
            std::cmp::Ordering::Less => Ok(Proof { a: x, b: y }),
            std::cmp::Ordering::Greater => Ok(Proof { a: y, b: x }),
            // Unreachable for a sound `Claim` (different content, different bytes); refuse
            // rather than make a proof that `verify` refuses.
            std::cmp::Ordering::Equal => Err(ClaimError::NotConflicting("same claim")),
        }
    }

    /// Verifies the proof completely: canonical order, both claims open (signatures, rules) and
    /// are canonical, and they conflict. Returns the two claims, `a` first.
    pub fn verify<C: Claim>(&self) -> Result<(C, C), ClaimError> {
        if self.a >= self.b {
            return Err(ClaimError::Unordered);
        }
        let x = C::open_claim(&self.a)?;
        let y = C::open_claim(&self.b)?;
        // Guards against a lax `Claim` implementation: a non-canonical half would let one pair
        // of claims have many proofs (and many ids).
        if x.claim_bytes() != self.a || y.claim_bytes() != self.b {
            return Err(ClaimError::Decode(DecodeError::NotCanonical));
        }
        conflict(&x, &y)?;
        Ok((x, y))
    }

    /// Decodes a proof of at most [`MAX_PROOF`] bytes of canonical CBOR (not yet verified).
    pub fn decode(bytes: &[u8]) -> Result<Proof, ClaimError> {
        Ok(cbor::decode(bytes, MAX_PROOF)?)
    }

    /// The canonical bytes of the proof.
    pub fn to_bytes(&self) -> Vec<u8> {
        cbor::encode(self)
    }

    /// The proof's id: SHA-256 of its canonical bytes.
    pub fn id(&self) -> [u8; 32] {
        Sha256::digest(self.to_bytes()).into()
    }
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::SigningKey;
    use proptest::prelude::*;

    use super::*;
    use crate::SignedEnvelope;

    const DOMAIN: &[u8] = b"leafnet/test-claim/v1";

    #[derive(Debug, Serialize, Deserialize, PartialEq, Eq, Clone)]
    struct Body {
        #[serde(with = "serde_bytes")]
        author: [u8; 32],
        slot: u64,
        #[serde(with = "serde_bytes")]
        content: [u8; 32],
        /// Not part of the content: two claims may say the same with different bytes.
        note: u8,
    }

    #[derive(Debug, PartialEq, Eq, Clone)]
    struct TestClaim {
        body: Body,
        bytes: Vec<u8>,
    }

    impl TestClaim {
        fn new(key: &SigningKey, slot: u64, content: u8) -> Self {
            Self::with_note(key, slot, content, 0)
        }

        fn with_note(key: &SigningKey, slot: u64, content: u8, note: u8) -> Self {
            let body = Body {
                author: key.verifying_key().to_bytes(),
                slot,
                content: [content; 32],
                note,
            };
            let bytes = SignedEnvelope::seal(key, DOMAIN, cbor::encode(&body)).to_bytes();
            Self { body, bytes }
        }
    }

    impl Claim for TestClaim {
        fn open_claim(bytes: &[u8]) -> Result<Self, ClaimError> {
            let env = SignedEnvelope::open(bytes, 1024, DOMAIN)?;
            let body: Body = cbor::decode(&env.payload, 1024)?;
            if body.author != env.signer {
                return Err(ClaimError::Invalid("signer is not the author".into()));
            }
            Ok(Self {
                body,
                bytes: bytes.to_vec(),
            })
        }
        fn author(&self) -> [u8; 32] {
            self.body.author
        }
        fn slot(&self) -> Vec<u8> {
            cbor::encode(&self.body.slot)
        }
        fn content(&self) -> [u8; 32] {
            self.body.content
        }
        fn claim_bytes(&self) -> Vec<u8> {
            self.bytes.clone()
        }
    }

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    /// Flips a bit of the envelope's signature (its last field).
    fn forge(bytes: &[u8]) -> Vec<u8> {
        let mut b = bytes.to_vec();
        let n = b.len();
        b[n - 1] ^= 0x01;
        b
    }

    fn ordered(x: Vec<u8>, y: Vec<u8>) -> Proof {
        Proof {
            a: x.clone().min(y.clone()),
            b: x.max(y),
        }
    }

    #[test]
    fn valid_proof_verifies_and_round_trips() {
        let (x, y) = (TestClaim::new(&key(1), 5, 1), TestClaim::new(&key(1), 5, 2));
        let p = Proof::new(&x, &y).unwrap();
        assert_eq!(
            p,
            Proof::new(&y, &x).unwrap(),
            "order of arguments does not matter"
        );
        assert!(p.a < p.b);
        let (a, b) = p.verify::<TestClaim>().unwrap();
        assert_eq!(
            [a.content(), b.content()]
                .iter()
                .filter(|c| **c == [1; 32])
                .count(),
            1
        );
        let bytes = p.to_bytes();
        let q = Proof::decode(&bytes).unwrap();
        assert_eq!(q, p);
        assert_eq!(q.id(), p.id());
        assert!(q.verify::<TestClaim>().is_ok());
    }

    #[test]
    fn non_conflicting_claims_are_refused() {
        let x = TestClaim::new(&key(1), 5, 1);
        let other_author = TestClaim::new(&key(2), 5, 2);
        let other_slot = TestClaim::new(&key(1), 6, 2);
        assert_eq!(
            Proof::new(&x, &other_author),
            Err(ClaimError::NotConflicting("different authors"))
        );
        assert_eq!(
            Proof::new(&x, &other_slot),
            Err(ClaimError::NotConflicting("different slots"))
        );
        // The same, handed over as a ready-made proof.
        for y in [&other_author, &other_slot] {
            let p = ordered(x.bytes.clone(), y.bytes.clone());
            assert!(matches!(
                p.verify::<TestClaim>(),
                Err(ClaimError::NotConflicting(_))
            ));
        }
    }

    #[test]
    fn same_content_is_refused() {
        let x = TestClaim::new(&key(1), 5, 1);
        let y = TestClaim::with_note(&key(1), 5, 1, 9);
        assert_ne!(x.bytes, y.bytes);
        assert_eq!(
            Proof::new(&x, &y),
            Err(ClaimError::NotConflicting("same content"))
        );
        assert_eq!(
            ordered(x.bytes.clone(), y.bytes.clone()).verify::<TestClaim>(),
            Err(ClaimError::NotConflicting("same content"))
        );
        assert!(Proof::new(&x, &x).is_err());
    }

    #[test]
    fn a_forged_half_is_refused() {
        let (x, y) = (TestClaim::new(&key(1), 5, 1), TestClaim::new(&key(1), 5, 2));
        let p = Proof::new(&x, &y).unwrap();
        for forged in [
            ordered(forge(&p.a), p.b.clone()),
            ordered(p.a.clone(), forge(&p.b)),
        ] {
            assert_eq!(
                forged.verify::<TestClaim>().unwrap_err(),
                ClaimError::Sign(SignError::BadSignature)
            );
        }
    }

    #[test]
    fn wrong_order_and_equal_halves_are_refused() {
        let (x, y) = (TestClaim::new(&key(1), 5, 1), TestClaim::new(&key(1), 5, 2));
        let p = Proof::new(&x, &y).unwrap();
        let swapped = Proof {
            a: p.b.clone(),
            b: p.a.clone(),
        };
        assert_eq!(swapped.verify::<TestClaim>(), Err(ClaimError::Unordered));
        let equal = Proof {
            a: p.a.clone(),
            b: p.a.clone(),
        };
        assert_eq!(equal.verify::<TestClaim>(), Err(ClaimError::Unordered));
    }

    #[test]
    fn oversize_and_non_canonical_are_refused() {
        let big = Proof {
            a: vec![1; MAX_PROOF],
            b: vec![2; 1],
        };
        assert!(matches!(
            Proof::decode(&big.to_bytes()),
            Err(ClaimError::Decode(DecodeError::TooLarge { .. }))
        ));
        let (x, y) = (TestClaim::new(&key(1), 5, 1), TestClaim::new(&key(1), 5, 2));
        let mut bytes = Proof::new(&x, &y).unwrap().to_bytes();
        bytes.push(0);
        assert!(matches!(Proof::decode(&bytes), Err(ClaimError::Decode(_))));
    }

    proptest! {
        #[test]
        fn any_bit_flip_breaks_a_valid_proof(pos in any::<prop::sample::Index>(), bit in 0u8..8) {
            let (x, y) = (TestClaim::new(&key(1), 5, 1), TestClaim::new(&key(1), 5, 2));
            let mut bytes = Proof::new(&x, &y).unwrap().to_bytes();
            let i = pos.index(bytes.len());
            bytes[i] ^= 1 << bit;
            prop_assert!(Proof::decode(&bytes).and_then(|p| p.verify::<TestClaim>()).is_err());
        }

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            if let Ok(p) = Proof::decode(&bytes) {
                let _ = p.verify::<TestClaim>();
            }
        }

        #[test]
        fn random_halves_never_verify(
            a in proptest::collection::vec(any::<u8>(), 0..300),
            b in proptest::collection::vec(any::<u8>(), 0..300),
        ) {
            let p = Proof { a, b };
            prop_assert!(p.verify::<TestClaim>().is_err());
            let q = Proof::decode(&p.to_bytes()).unwrap();
            prop_assert_eq!(q, p);
        }
    }
}
