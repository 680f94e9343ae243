//! The in-process memory transport (`/memory/N`), for tests and benchmarks.

use libp2p::{
    Transport as _, core::muxing::StreamMuxerBox, core::transport::MemoryTransport,
    core::upgrade::Version, identity::Keypair, noise, yamux,
};

use super::{BoxErr, BoxedTransport};

pub(super) fn build(key: &Keypair) -> Result<BoxedTransport, BoxErr> {
    Ok(MemoryTransport::default()
        .upgrade(Version::V1)
        .authenticate(noise::Config::new(key)?)
        .multiplex(yamux::Config::default())
        .map(|(p, c), _| (p, StreamMuxerBox::new(c)))
        .boxed())
}
