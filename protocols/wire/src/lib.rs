//! leafnet wire basics shared by every protocol crate.
//!
//! - [`cbor`]: canonical CBOR encoding and size-capped decoding with a canonicality check, so a
//!   signed byte string has exactly one decoding and one encoding;
//! - [`sign`]: signed envelopes over `domain-tag || bytes`, verified through the one
//!   [`sign::verify_strict`] function of the project;
//! - [`claim`]: equivocation proofs: two valid signed claims of one author at one slot with
//!   different contents, checkable offline by anyone (mint statements, ledger forks);
//! - [`key`]: the DHT key namespaces (`/leafnet/<namespace>/<rest>`) and the validator registry
//!   that refuses records and provider records of unknown namespaces.
//!
//! This crate depends on no other leafnet crate and on no networking crate. Its tests live next
//! to the code.

pub mod cbor;
pub mod claim;
pub mod key;
pub mod sign;

pub use cbor::DecodeError;
pub use key::{DhtKey, KeyError, Registry, Validated, Validator};
pub use sign::{SignError, SignedEnvelope};
