//! WebSocket over TCP (`/tcp/7801/ws`), + noise + yamux: the "encapsulated under HTTP" path.

use libp2p::{
    Transport as _, core::muxing::StreamMuxerBox, core::upgrade::Version, identity::Keypair, noise,
    tcp, websocket, yamux,
};

use super::{BoxErr, BoxedTransport};

pub(super) fn build(key: &Keypair) -> Result<BoxedTransport, BoxErr> {
    let inner = tcp::tokio::Transport::new(tcp::Config::default().nodelay(true));
    Ok(websocket::Config::new(inner)
        .upgrade(Version::V1Lazy)
        .authenticate(noise::Config::new(key)?)
        .multiplex(yamux::Config::default())
        .map(|(p, c), _| (p, StreamMuxerBox::new(c)))
        .boxed())
}
