//! A node's signed "I saw this statement".
//!
//! Observations are what spreads: the observer's signature makes each one count once per
//! observer (a flood of copies is still one observer), and the statement inside is the issuer's
//! own signed bytes, so two observations of one series with different hashes are the
//! equivocation proof's two halves.

use ed25519_dalek::SigningKey;
use leafnet_wire::{SignedEnvelope, cbor};
use serde::{Deserialize, Serialize};

use crate::{MintError, SignedStatement, sha256};

/// Domain tag of observation signatures.
pub const OBSERVATION_DOMAIN: &[u8] = b"leafnet/mint-observation/v1";
/// The largest signed observation, in bytes (a statement of at most 1024 bytes plus ~150).
pub const MAX_OBSERVATION: usize = 2048;

/// What an observer signs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ObservationBody {
    /// The issuer's signed statement bytes, as seen.
    #[serde(with = "serde_bytes")]
    pub(crate) statement: Vec<u8>,
    /// When the observer saw it (unix ms, the observer's clock; informative only).
    pub(crate) observed_at_ms: u64,
}

/// An observer's signed note that it saw a statement, verified, with its exact bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedObservation {
    observer: [u8; 32],
    statement: SignedStatement,
    observed_at_ms: u64,
    bytes: Vec<u8>,
}

impl SignedObservation {
    /// Signs an observation of a verified statement.
    pub fn seal(observer: &SigningKey, st: &SignedStatement, observed_at_ms: u64) -> Self {
        let bytes = Self::seal_raw(observer, st.as_bytes(), observed_at_ms);
        Self {
            observer: observer.verifying_key().to_bytes(),
            statement: st.clone(),
            observed_at_ms,
            bytes,
        }
    }

    /// Signs an observation of *any* bytes, unchecked, and returns its signed bytes: for tests
    /// and tools that need a well-signed observation of a bad statement. [`Self::open`] refuses
    /// the result unless `statement` is a valid signed statement.
    pub fn seal_raw(observer: &SigningKey, statement: &[u8], observed_at_ms: u64) -> Vec<u8> {
        let body = ObservationBody {
            statement: statement.to_vec(),
            observed_at_ms,
        };
        SignedEnvelope::seal(observer, OBSERVATION_DOMAIN, cbor::encode(&body)).to_bytes()
    }

    /// Opens signed bytes: size cap, the observer's signature (strict), canonical payload, and
    /// the inner statement fully ([`SignedStatement::open`]).
    pub fn open(bytes: &[u8]) -> Result<Self, MintError> {
        Self::open_with(bytes, &|_| None)
    }

    /// [`SignedObservation::open`], but a statement whose id (the sha256 of its exact signed
    /// bytes) `known` returns was verified before and is not verified again: many observers of
    /// one statement cost one statement verification, not one each. The observer's own
    /// signature is always checked.
    pub fn open_with(
        bytes: &[u8],
        known: &dyn Fn(&[u8; 32]) -> Option<SignedStatement>,
    ) -> Result<Self, MintError> {
        if bytes.len() > MAX_OBSERVATION {
            return Err(MintError::TooLarge {
                what: "observation",
                len: bytes.len(),
                max: MAX_OBSERVATION,
            });
        }
        let env = SignedEnvelope::open(bytes, MAX_OBSERVATION, OBSERVATION_DOMAIN)?;
        let body: ObservationBody = cbor::decode(&env.payload, MAX_OBSERVATION)?;
        let id = sha256(&[&body.statement]);
        let statement = match known(&id) {
            Some(st) if st.as_bytes() == body.statement.as_slice() => st,
            _ => SignedStatement::open(&body.statement)?,
        };
        Ok(Self {
            observer: env.signer,
            statement,
            observed_at_ms: body.observed_at_ms,
            bytes: bytes.to_vec(),
        })
    }

    /// The observer's public key.
    pub fn observer(&self) -> [u8; 32] {
        self.observer
    }

    /// The statement observed.
    pub fn statement(&self) -> &SignedStatement {
        &self.statement
    }

    /// When the observer says it saw the statement (unix ms).
    pub fn observed_at_ms(&self) -> u64 {
        self.observed_at_ms
    }

    /// The canonical signed bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.bytes.clone()
    }

    /// The canonical signed bytes, borrowed.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// SHA-256 of the signed bytes. (The [`crate::Item`] id of an observation is different: it
    /// names only observer and statement, see [`crate::Item::id`].)
    pub fn id(&self) -> [u8; 32] {
        sha256(&[&self.bytes])
    }
}

#[cfg(test)]
mod tests {
    use leafnet_wire::SignError;

    use super::*;
    use crate::statement::tests::{key, signed};

    #[test]
    fn seal_open_round_trip() {
        let st = signed(&key(1), 3, b"file");
        let obs = SignedObservation::seal(&key(9), &st, 42);
        let o = SignedObservation::open(&obs.to_bytes()).unwrap();
        assert_eq!(o, obs);
        assert_eq!(o.observer(), key(9).verifying_key().to_bytes());
        assert_eq!(o.statement(), &st);
        assert_eq!(o.observed_at_ms(), 42);
        assert_eq!(o.id(), sha256(&[&obs.to_bytes()]));
        assert!(obs.to_bytes().len() < MAX_OBSERVATION / 2);
    }

    #[test]
    fn a_known_statement_is_not_verified_again_but_only_its_exact_bytes_count() {
        let st = signed(&key(1), 3, b"file");
        let obs = SignedObservation::seal(&key(9), &st, 42);
        let id = st.id();
        let cached = st.clone();
        let known = move |i: &[u8; 32]| (*i == id).then(|| cached.clone());
        assert_eq!(
            SignedObservation::open_with(&obs.to_bytes(), &known).unwrap(),
            obs
        );
        // A forged statement is verified (and refused) even when the cache answers with some
        // other statement for its id: only the exact bytes it vouched for are trusted.
        let mut forged = signed(&key(1), 3, b"other file").to_bytes();
        let n = forged.len();
        forged[n - 1] ^= 1;
        let bad = SignedObservation::seal_raw(&key(9), &forged, 42);
        let liar = |_: &[u8; 32]| Some(signed(&key(1), 3, b"file"));
        assert!(SignedObservation::open_with(&bad, &liar).is_err());
        assert!(SignedObservation::open(&bad).is_err());
    }

    #[test]
    fn forged_observer_signature_is_refused() {
        let st = signed(&key(1), 3, b"file");
        let mut b = SignedObservation::seal(&key(9), &st, 42).to_bytes();
        let n = b.len();
        b[n - 1] ^= 1;
        assert_eq!(
            SignedObservation::open(&b),
            Err(MintError::Sign(SignError::BadSignature))
        );
    }

    #[test]
    fn forged_inner_statement_is_refused() {
        let mut st = signed(&key(1), 3, b"file").to_bytes();
        let n = st.len();
        st[n - 1] ^= 1;
        let b = SignedObservation::seal_raw(&key(9), &st, 42);
        let err = SignedObservation::open(&b).unwrap_err();
        assert_eq!(err, MintError::Sign(SignError::BadSignature));
        assert!(err.is_misbehaviour());
        assert!(matches!(
            SignedObservation::open(&SignedObservation::seal_raw(&key(9), b"junk", 1)),
            Err(MintError::Decode(_))
        ));
        assert!(matches!(
            SignedObservation::open(&vec![0; MAX_OBSERVATION + 1]),
            Err(MintError::TooLarge { .. })
        ));
    }
}
