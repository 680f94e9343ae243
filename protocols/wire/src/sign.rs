//! Signatures.
//!
//! Everything leafnet signs is signed over `domain || payload`, where `domain` names the purpose
//! (`leafnet/node-record/v1`, `leafnet/profile/v1`, …), so a signature made for one purpose is
//! never valid for another. Verification goes through [`verify_strict`] and nowhere else: it uses
//! ed25519-dalek's `verify_strict`, which refuses small-order keys and non-canonical signatures.

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::cbor;

/// Why a signature or an envelope was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum SignError {
    /// The 32 bytes are not a valid ed25519 public key.
    #[error("invalid ed25519 public key")]
    BadKey,
    /// The signature does not verify under `verify_strict`.
    #[error("bad signature")]
    BadSignature,
    /// The envelope itself could not be decoded.
    #[error(transparent)]
    Decode(#[from] cbor::DecodeError),
}

/// Verifies `signature` by `public_key` over `domain || payload`, strictly.
pub fn verify_strict(
    public_key: &[u8; 32],
    domain: &[u8],
    payload: &[u8],
    signature: &[u8; 64],
) -> Result<(), SignError> {
    let key = VerifyingKey::from_bytes(public_key).map_err(|_| SignError::BadKey)?;
    let sig = Signature::from_bytes(signature);
    let mut msg = Vec::with_capacity(domain.len() + payload.len());
    msg.extend_from_slice(domain);
    msg.extend_from_slice(payload);
    key.verify_strict(&msg, &sig)
        .map_err(|_| SignError::BadSignature)
}

/// Signs `domain || payload`.
pub fn sign(key: &SigningKey, domain: &[u8], payload: &[u8]) -> [u8; 64] {
    let mut msg = Vec::with_capacity(domain.len() + payload.len());
    msg.extend_from_slice(domain);
    msg.extend_from_slice(payload);
    key.sign(&msg).to_bytes()
}

/// A payload (canonical CBOR bytes), its signer and the signature, as carried on the wire.
///
/// The signature covers the payload *bytes*; the payload is decoded only after it verified.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedEnvelope {
    #[serde(with = "serde_bytes")]
    pub signer: [u8; 32],
    #[serde(with = "serde_bytes")]
    pub payload: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub signature: [u8; 64],
}

impl SignedEnvelope {
    /// Signs `payload` for `domain` with `key`.
    pub fn seal(key: &SigningKey, domain: &[u8], payload: Vec<u8>) -> Self {
        let signature = sign(key, domain, &payload);
        Self {
            signer: key.verifying_key().to_bytes(),
            payload,
            signature,
        }
    }

    /// Decodes an envelope of at most `max` bytes and verifies it for `domain`.
    pub fn open(bytes: &[u8], max: usize, domain: &[u8]) -> Result<Self, SignError> {
        let env: Self = cbor::decode(bytes, max)?;
        verify_strict(&env.signer, domain, &env.payload, &env.signature)?;
        Ok(env)
    }

    /// Canonical bytes of the envelope.
    pub fn to_bytes(&self) -> Vec<u8> {
        cbor::encode(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    #[test]
    fn seal_open() {
        let env = SignedEnvelope::seal(&key(1), b"leafnet/test/v1", b"hello".to_vec());
        let bytes = env.to_bytes();
        assert_eq!(
            SignedEnvelope::open(&bytes, 1024, b"leafnet/test/v1").unwrap(),
            env
        );
    }

    #[test]
    fn other_domain_is_refused() {
        let env = SignedEnvelope::seal(&key(1), b"leafnet/test/v1", b"hello".to_vec());
        let err = SignedEnvelope::open(&env.to_bytes(), 1024, b"leafnet/other/v1").unwrap_err();
        assert_eq!(err, SignError::BadSignature);
    }

    #[test]
    fn tampered_payload_or_signer_is_refused() {
        let mut env = SignedEnvelope::seal(&key(1), b"d", b"hello".to_vec());
        env.payload[0] ^= 1;
        assert!(SignedEnvelope::open(&env.to_bytes(), 1024, b"d").is_err());
        let mut env = SignedEnvelope::seal(&key(1), b"d", b"hello".to_vec());
        env.signer = key(2).verifying_key().to_bytes();
        assert!(SignedEnvelope::open(&env.to_bytes(), 1024, b"d").is_err());
    }

    #[test]
    fn small_order_key_with_identity_signature_is_refused() {
        // The identity point (a small-order key) with an all-zero-ish signature: accepted by
        // lax verification of some libraries, refused by verify_strict.
        let mut pk = [0u8; 32];
        pk[0] = 1;
        let mut sig = [0u8; 64];
        sig[0] = 1;
        assert!(verify_strict(&pk, b"d", b"m", &sig).is_err());
    }
}
