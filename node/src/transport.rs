//! Transports, chosen at run time from the config and built into one boxed transport: the
//! "swappable transport". Each transport is one module with one `build` function; adding one
//! touches only this file's [`build`] and the config's list of names. DNS resolution wraps the
//! combination once (see [`build`]); a transport module must not add its own.

mod memory;
mod quic;
mod tcp;
mod websocket;

use libp2p::{
    PeerId,
    core::{muxing::StreamMuxerBox, transport::Boxed},
    dns,
    identity::Keypair,
};

use libp2p::Transport as _;

/// What every transport module returns.
pub type BoxedTransport = Boxed<(PeerId, StreamMuxerBox)>;
pub(crate) type BoxErr = Box<dyn std::error::Error + Send + Sync>;

/// Which transports to build.
#[derive(Debug, Clone, Copy, Default)]
pub struct Selection {
    pub tcp: bool,
    pub quic: bool,
    pub websocket: bool,
    pub memory: bool,
}

/// Builds the enabled transports into one.
pub fn build(key: &Keypair, sel: Selection) -> Result<BoxedTransport, BoxErr> {
    let mut parts = Vec::new();
    if sel.quic {
        parts.push(quic::build(key)?);
    }
    if sel.tcp {
        parts.push(tcp::build(key)?);
    }
    if sel.websocket {
        parts.push(websocket::build(key)?);
    }
    if sel.memory {
        parts.push(memory::build(key)?);
    }
    let combined = parts
        .into_iter()
        .reduce(|a, b| a.or_transport(b).map(|e, _| e.into_inner()).boxed())
        .ok_or("no transport enabled")?;
    // One DNS layer over all of them. A DNS layer claims every address it is given (and fails
    // only later), so one per transport would let the first transport take every dial.
    Ok(dns::tokio::Transport::system(combined)?.boxed())
}
