//! Profiles: signed records of people, objects and services, indexed in Kademlia.
//!
//! - [`record`]: the [`Profile`] record, its rules as pure functions, sealing and opening
//!   ([`SignedProfile`]);
//! - [`validator`]: the `profile` DHT namespace's validator (signature with `verify_strict`, key
//!   matches the signer, size, expiry, anti-rollback, kind fixed at creation);
//! - [`Location`]: integer micro-degree coordinates, shared with the geo crate.
//!
//! A profile is signed by its owner's **account key** (the human's ed25519 key, shown as lowercase
//! hex: the account id), over `leafnet/profile/v1 || canonical CBOR`. Its DHT key is
//! `/leafnet/profile/<account id>`. Tests are next to the code.

mod location;
pub mod record;
pub mod validator;

pub use location::{E6, Location, LocationError};
pub use record::{AccountId, Kind, Profile, ProfileError, SignedProfile};
pub use validator::Validator;
