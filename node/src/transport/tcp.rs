//! TCP + noise + yamux.

use libp2p::{core::upgrade::Version, identity::Keypair, tcp};

use super::{BoxErr, BoxedTransport, delay::Latency};

pub(super) fn build(key: &Keypair, latency: Option<Latency>) -> Result<BoxedTransport, BoxErr> {
    let t = tcp::tokio::Transport::new(tcp::Config::default().nodelay(true));
    super::secure(t, key, Version::V1Lazy, latency)
}
