//! leafnet mint: comparing notes on mint files.
//!
//! An *issuer* publishes a mint file (what it will honour) and signs a [`Statement`]: "for
//! `asset`, series `series`, the mint file is the one with SHA-256 `mint_hash`, valid from … until
//! …". An honest issuer signs one hash per (asset, series); one that shows different files to
//! different people signs two, and those two signatures side by side are an equivocation proof
//! ([`leafnet_wire::claim::Proof`]) that anybody can check offline.
//!
//! Nodes that see a statement sign a [`SignedObservation`] ("I saw this statement") and gossip
//! it; every node keeps a bounded [`Book`] of the observations and proofs it holds (per series:
//! the hashes seen and by how many distinct observers). Two nodes compare their books with the
//! digest and messages of [`sync`] and fetch what they lack, so an issuer who splits the network
//! is caught as soon as one node holds both halves, and everybody learns it.
//!
//! - [`statement`]: [`Statement`], [`SignedStatement`] (the [`leafnet_wire::claim::Claim`] of
//!   this crate), [`SeriesKey`], [`mint_hash`];
//! - [`observation`]: an observer's [`SignedObservation`] of a statement;
//! - [`book`]: [`Item`] (what is gossiped, stored and synced; only made by full verification or
//!   by the node's own signing), [`VerifiedProof`], [`Book`], [`message_id`];
//! - [`sync`]: the set-reconciliation [`Digest`] and the request-response payloads;
//! - [`keyfile`]: issuer key files for the CLI.
//!
//! Sans-IO apart from [`keyfile`]: no networking, no clock (time is passed in).

use leafnet_wire::{DecodeError, SignError, claim::ClaimError};

pub mod book;
pub mod keyfile;
pub mod observation;
pub mod statement;
pub mod sync;

pub use book::{
    Added, Book, BookLimits, HashSeen, Item, MAX_ITEM, SeriesStatus, VerifiedProof, message_id,
};
pub use observation::SignedObservation;
pub use statement::{SeriesKey, SignedStatement, Statement, mint_hash};
pub use sync::{
    BUCKETS, BucketSum, Digest, MAX_IDS, MAX_ITEMS_PER_REQUEST, MAX_SYNC_MESSAGE, SyncRequest,
    SyncResponse, differing_buckets,
};

/// Why something of this crate was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum MintError {
    /// Over a size cap (checked before anything is parsed).
    #[error("{what} of {len} bytes is over the {max}-byte limit")]
    TooLarge {
        what: &'static str,
        len: usize,
        max: usize,
    },
    /// Not canonical CBOR of the expected shape.
    #[error(transparent)]
    Decode(DecodeError),
    /// A bad signature or key.
    #[error(transparent)]
    Sign(SignError),
    /// An equivocation proof that does not hold.
    #[error("equivocation proof: {0}")]
    Claim(ClaimError),
    /// The asset id is not 1 to 64 bytes of `A-Z a-z 0-9 . _ -`.
    #[error("asset '{0}' must be 1 to 64 characters of A-Z a-z 0-9 . _ -")]
    BadAsset(String),
    /// The validity window is empty or too long.
    #[error("bad validity window: {0}")]
    BadValidity(String),
    /// A statement signed by a key other than its issuer's.
    #[error("the statement is not signed by its issuer")]
    IssuerMismatch,
    /// A message decodes but breaks a structural rule (e.g. unsorted digest buckets).
    #[error("malformed message: {0}")]
    Malformed(String),
    /// A list longer than its limit.
    #[error("too many {0}")]
    TooMany(&'static str),
    /// A file could not be read or written.
    #[error("{0}")]
    Io(String),
    /// A key file that is not 64 hex characters.
    #[error("bad key file: {0}")]
    BadKeyFile(String),
}

impl MintError {
    /// True for what an honest peer can never send: honest nodes verify everything before they
    /// forward or serve it, so a bad signature, a malformed, non-canonical or oversized message,
    /// a rule-breaking statement or a forged proof means the sender is broken or hostile.
    /// False for local conditions (files, key files).
    pub fn is_misbehaviour(&self) -> bool {
        match self {
            MintError::TooLarge { .. }
            | MintError::Decode(_)
            | MintError::Sign(_)
            | MintError::Claim(_)
            | MintError::BadAsset(_)
            | MintError::BadValidity(_)
            | MintError::IssuerMismatch
            | MintError::Malformed(_)
            | MintError::TooMany(_) => true,
            MintError::Io(_) | MintError::BadKeyFile(_) => false,
        }
    }
}

impl From<DecodeError> for MintError {
    fn from(e: DecodeError) -> Self {
        MintError::Decode(e)
    }
}

impl From<SignError> for MintError {
    /// An envelope that fails to *decode* is a decoding problem, not a signature problem.
    fn from(e: SignError) -> Self {
        match e {
            SignError::Decode(d) => MintError::Decode(d),
            e => MintError::Sign(e),
        }
    }
}

impl From<ClaimError> for MintError {
    fn from(e: ClaimError) -> Self {
        MintError::Claim(e)
    }
}

/// SHA-256, the one hash of this crate.
pub(crate) fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    use sha2::Digest as _;
    let mut h = sha2::Sha256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}
