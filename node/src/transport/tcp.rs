//! TCP + noise + yamux.

use libp2p::{
    Transport as _, core::muxing::StreamMuxerBox, core::upgrade::Version, identity::Keypair, noise,
    tcp, yamux,
};

use super::{BoxErr, BoxedTransport};

pub(super) fn build(key: &Keypair) -> Result<BoxedTransport, BoxErr> {
    let t = tcp::tokio::Transport::new(tcp::Config::default().nodelay(true));
    Ok(t.upgrade(Version::V1Lazy)
        .authenticate(noise::Config::new(key)?)
        .multiplex(yamux::Config::default())
        .map(|(p, c), _| (p, StreamMuxerBox::new(c)))
        .boxed())
}
