//! The in-process memory transport (`/memory/N`), for tests and benchmarks.

use libp2p::{core::transport::MemoryTransport, core::upgrade::Version, identity::Keypair};

use super::{BoxErr, BoxedTransport, delay::Latency};

pub(super) fn build(key: &Keypair, latency: Option<Latency>) -> Result<BoxedTransport, BoxErr> {
    // V1Lazy as for TCP: the dialer proposes noise and sends its first message at once.
    super::secure(MemoryTransport::default(), key, Version::V1Lazy, latency)
}
