//! The issuer's statement about a mint file.

use ed25519_dalek::SigningKey;
use leafnet_wire::{
    DecodeError, SignedEnvelope, cbor,
    claim::{Claim, ClaimError},
};
use serde::{Deserialize, Serialize};

use crate::{MintError, sha256};

/// Domain tag of statement signatures.
pub const STATEMENT_DOMAIN: &[u8] = b"leafnet/mint-statement/v1";
/// The largest signed statement, in bytes (a real one is about 330).
pub const MAX_STATEMENT: usize = 1024;
/// The longest asset id, in bytes.
pub const MAX_ASSET: usize = 64;
/// The longest validity window a statement may claim: 400 days, so a yearly re-issue with some
/// overlap fits and a leaked old statement does not stay current forever.
pub const MAX_VALIDITY_MS: u64 = 400 * 24 * 3600 * 1000;

/// The SHA-256 of a mint file: what a statement vouches for.
pub fn mint_hash(file_bytes: &[u8]) -> [u8; 32] {
    sha256(&[file_bytes])
}

/// What an issuer signs: "for `asset`, series `series`, the mint file is `mint_hash`".
///
/// An honest issuer signs one `mint_hash` per (asset, series); re-signing the same hash (say,
/// with a new validity window) is fine, a second hash is an equivocation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Statement {
    /// The issuer's ed25519 public key; must be the signer.
    #[serde(with = "serde_bytes")]
    pub issuer: [u8; 32],
    /// The asset id: 1 to [`MAX_ASSET`] bytes of `A-Z a-z 0-9 . _ -`.
    pub asset: String,
    /// The series of the asset the mint file is for.
    pub series: u64,
    /// SHA-256 of the mint file ([`mint_hash`]).
    #[serde(with = "serde_bytes")]
    pub mint_hash: [u8; 32],
    /// Valid from this time on (unix ms, inclusive).
    pub valid_from_ms: u64,
    /// Valid until this time (unix ms, exclusive).
    pub valid_until_ms: u64,
}

impl Statement {
    /// Checks the field rules (not the signature, not the clock): asset charset and length,
    /// `valid_from_ms < valid_until_ms`, a window of at most [`MAX_VALIDITY_MS`].
    pub fn check(&self) -> Result<(), MintError> {
        let a = &self.asset;
        if a.is_empty()
            || a.len() > MAX_ASSET
            || !a
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        {
            return Err(MintError::BadAsset(a.chars().take(MAX_ASSET).collect()));
        }
        if self.valid_from_ms >= self.valid_until_ms {
            return Err(MintError::BadValidity(
                "valid_until_ms must be after valid_from_ms".into(),
            ));
        }
        if self.valid_until_ms - self.valid_from_ms > MAX_VALIDITY_MS {
            return Err(MintError::BadValidity("longer than 400 days".into()));
        }
        Ok(())
    }

    /// The series this statement is about.
    pub fn key(&self) -> SeriesKey {
        SeriesKey {
            issuer: self.issuer,
            asset: self.asset.clone(),
            series: self.series,
        }
    }
}

/// One series of one asset of one issuer: where an honest issuer has exactly one mint hash.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SeriesKey {
    /// The issuer's public key.
    #[serde(with = "serde_bytes")]
    pub issuer: [u8; 32],
    /// The asset id.
    pub asset: String,
    /// The series.
    pub series: u64,
}

/// A statement with its issuer's signature (a [`SignedEnvelope`] over [`STATEMENT_DOMAIN`] whose
/// signer is the statement's issuer), verified, with its exact bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedStatement {
    statement: Statement,
    bytes: Vec<u8>,
}

impl SignedStatement {
    /// Signs `st` with the issuer's key; refuses a key that is not `st.issuer` and a statement
    /// that breaks a rule, so nothing this returns fails [`SignedStatement::open`].
    pub fn seal(key: &SigningKey, st: Statement) -> Result<Self, MintError> {
        if key.verifying_key().to_bytes() != st.issuer {
            return Err(MintError::IssuerMismatch);
        }
        st.check()?;
        let bytes = SignedEnvelope::seal(key, STATEMENT_DOMAIN, cbor::encode(&st)).to_bytes();
        if bytes.len() > MAX_STATEMENT {
            // Unreachable with the field rules above (≤ ~400 bytes), kept as the cap's guard.
            return Err(too_large(bytes.len()));
        }
        Ok(Self {
            statement: st,
            bytes,
        })
    }

    /// Opens signed bytes: size cap, strict signature, canonical payload, signer = issuer, field
    /// rules. Does not look at the clock (see [`SignedStatement::is_valid_at`]): an expired
    /// statement still counts as evidence of what its issuer signed.
    pub fn open(bytes: &[u8]) -> Result<Self, MintError> {
        if bytes.len() > MAX_STATEMENT {
            return Err(too_large(bytes.len()));
        }
        let env = SignedEnvelope::open(bytes, MAX_STATEMENT, STATEMENT_DOMAIN)?;
        let statement: Statement = cbor::decode(&env.payload, MAX_STATEMENT)?;
        if statement.issuer != env.signer {
            return Err(MintError::IssuerMismatch);
        }
        statement.check()?;
        Ok(Self {
            statement,
            bytes: bytes.to_vec(),
        })
    }

    /// The signed statement.
    pub fn statement(&self) -> &Statement {
        &self.statement
    }

    /// The canonical signed bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.bytes.clone()
    }

    /// The canonical signed bytes, borrowed.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The statement's id: SHA-256 of its signed bytes.
    pub fn id(&self) -> [u8; 32] {
        sha256(&[&self.bytes])
    }

    /// The series the statement is about.
    pub fn key(&self) -> SeriesKey {
        self.statement.key()
    }

    /// Whether `now_ms` is inside the validity window (`valid_from_ms <= now < valid_until_ms`).
    pub fn is_valid_at(&self, now_ms: u64) -> bool {
        (self.statement.valid_from_ms..self.statement.valid_until_ms).contains(&now_ms)
    }
}

fn too_large(len: usize) -> MintError {
    MintError::TooLarge {
        what: "statement",
        len,
        max: MAX_STATEMENT,
    }
}

/// Author = issuer, slot = canonical CBOR of (asset, series), content = mint hash.
impl Claim for SignedStatement {
    fn open_claim(bytes: &[u8]) -> Result<Self, ClaimError> {
        SignedStatement::open(bytes).map_err(|e| match e {
            MintError::Decode(d) => ClaimError::Decode(d),
            MintError::Sign(s) => ClaimError::Sign(s),
            MintError::TooLarge { len, max, .. } => {
                ClaimError::Decode(DecodeError::TooLarge { len, max })
            }
            e => ClaimError::Invalid(e.to_string()),
        })
    }

    fn author(&self) -> [u8; 32] {
        self.statement.issuer
    }

    fn slot(&self) -> Vec<u8> {
        cbor::encode(&(&self.statement.asset, self.statement.series))
    }

    fn content(&self) -> [u8; 32] {
        self.statement.mint_hash
    }

    fn claim_bytes(&self) -> Vec<u8> {
        self.to_bytes()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use leafnet_wire::SignError;

    use super::*;

    pub(crate) fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    pub(crate) fn sample(issuer: &SigningKey, asset: &str, series: u64, file: &[u8]) -> Statement {
        Statement {
            issuer: issuer.verifying_key().to_bytes(),
            asset: asset.into(),
            series,
            mint_hash: mint_hash(file),
            valid_from_ms: 1_000,
            valid_until_ms: 1_000 + 3_600_000,
        }
    }

    pub(crate) fn signed(issuer: &SigningKey, series: u64, file: &[u8]) -> SignedStatement {
        SignedStatement::seal(issuer, sample(issuer, "GOLD", series, file)).unwrap()
    }

    /// Signs any payload as a statement envelope, bypassing `seal`'s checks.
    fn raw(key: &SigningKey, payload: Vec<u8>) -> Vec<u8> {
        SignedEnvelope::seal(key, STATEMENT_DOMAIN, payload).to_bytes()
    }

    #[test]
    fn seal_open_round_trip() {
        let k = key(1);
        let s = signed(&k, 7, b"file");
        let o = SignedStatement::open(&s.to_bytes()).unwrap();
        assert_eq!(o, s);
        assert_eq!(o.statement().series, 7);
        assert_eq!(o.id(), sha256(&[&s.to_bytes()]));
        assert_eq!(o.key(), o.statement().key());
        assert_eq!(o.content(), mint_hash(b"file"));
        assert_eq!(o.author(), k.verifying_key().to_bytes());
        assert!(s.to_bytes().len() < 400);
    }

    #[test]
    fn tampered_and_wrong_signer_are_refused() {
        let k = key(1);
        let mut b = signed(&k, 7, b"file").to_bytes();
        // Inside the payload: the asset's last letter.
        let i = b.windows(4).position(|w| w == b"GOLD").unwrap() + 3;
        b[i] = b'E';
        assert_eq!(
            SignedStatement::open(&b),
            Err(MintError::Sign(SignError::BadSignature))
        );
        // Signed by another key than the issuer's.
        let st = sample(&k, "GOLD", 7, b"file");
        assert_eq!(
            SignedStatement::seal(&key(2), st.clone()),
            Err(MintError::IssuerMismatch)
        );
        let b = raw(&key(2), cbor::encode(&st));
        assert_eq!(SignedStatement::open(&b), Err(MintError::IssuerMismatch));
    }

    #[test]
    fn rule_breaking_statements_are_refused() {
        let k = key(1);
        for asset in ["", "has space", "ünï", &"a".repeat(65)] {
            let st = sample(&k, asset, 1, b"f");
            assert!(matches!(
                SignedStatement::seal(&k, st.clone()),
                Err(MintError::BadAsset(_))
            ));
            assert!(matches!(
                SignedStatement::open(&raw(&k, cbor::encode(&st))),
                Err(MintError::BadAsset(_))
            ));
        }
        assert!(sample(&k, &"a".repeat(64), 1, b"f").check().is_ok());
        assert!(sample(&k, "EUR.note_2-b", 1, b"f").check().is_ok());
        let mut st = sample(&k, "GOLD", 1, b"f");
        st.valid_until_ms = st.valid_from_ms;
        assert!(matches!(st.check(), Err(MintError::BadValidity(_))));
        assert!(matches!(
            SignedStatement::open(&raw(&k, cbor::encode(&st))),
            Err(MintError::BadValidity(_))
        ));
        st.valid_until_ms = st.valid_from_ms + MAX_VALIDITY_MS;
        assert!(st.check().is_ok());
        st.valid_until_ms += 1;
        assert!(matches!(
            SignedStatement::seal(&k, st),
            Err(MintError::BadValidity(_))
        ));
    }

    #[test]
    fn oversize_and_non_canonical_are_refused() {
        let k = key(1);
        assert!(matches!(
            SignedStatement::open(&vec![0; MAX_STATEMENT + 1]),
            Err(MintError::TooLarge { .. })
        ));
        // A well-signed envelope over a payload with trailing garbage.
        let mut payload = cbor::encode(&sample(&k, "GOLD", 1, b"f"));
        payload.push(0);
        assert!(matches!(
            SignedStatement::open(&raw(&k, payload)),
            Err(MintError::Decode(_))
        ));
        // The envelope itself with a trailing byte.
        let mut b = signed(&k, 1, b"f").to_bytes();
        b.push(0);
        assert!(matches!(
            SignedStatement::open(&b),
            Err(MintError::Decode(_))
        ));
        // Another domain's envelope.
        let other = SignedEnvelope::seal(
            &k,
            b"leafnet/other/v1",
            cbor::encode(&sample(&k, "G", 1, b"")),
        );
        assert_eq!(
            SignedStatement::open(&other.to_bytes()),
            Err(MintError::Sign(SignError::BadSignature))
        );
    }

    #[test]
    fn validity_window() {
        let s = signed(&key(1), 1, b"f");
        assert!(!s.is_valid_at(999));
        assert!(s.is_valid_at(1_000));
        assert!(s.is_valid_at(1_000 + 3_599_999));
        assert!(!s.is_valid_at(1_000 + 3_600_000));
    }

    #[test]
    fn claim_errors_keep_their_kind() {
        assert!(matches!(
            SignedStatement::open_claim(&vec![0; MAX_STATEMENT + 1]),
            Err(ClaimError::Decode(DecodeError::TooLarge { .. }))
        ));
        let k = key(1);
        let st = sample(&k, "GOLD", 1, b"f");
        assert!(matches!(
            SignedStatement::open_claim(&raw(&key(2), cbor::encode(&st))),
            Err(ClaimError::Invalid(_))
        ));
    }
}
