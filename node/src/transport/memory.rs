//! The in-process memory transport (`/memory/N`), for tests and benchmarks.

use libp2p::{core::transport::MemoryTransport, core::upgrade::Version, identity::Keypair};

use super::{BoxErr, BoxedTransport, delay::Latency};

pub(super) fn build(key: &Keypair, latency: Option<Latency>) -> Result<BoxedTransport, BoxErr> {
    super::secure(MemoryTransport::default(), key, Version::V1, latency)
}
