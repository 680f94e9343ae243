//! Transports, chosen at run time from the config and built into one boxed transport: the
//! "swappable transport". Each transport is one module with one `build` function; adding one
//! touches only this file's [`build`] and the config's list of names. DNS resolution wraps the
//! combination once (see [`build`]); a transport module must not add its own.

pub mod delay;
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
#[derive(Clone, Default)]
pub struct Selection {
    pub tcp: bool,
    pub quic: bool,
    pub websocket: bool,
    pub memory: bool,
    /// Tests and benchmarks: delay the memory and TCP transports' bytes by this one-way latency
    /// per remote address ([`delay`]).
    pub latency: Option<delay::Latency>,
}

impl std::fmt::Debug for Selection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Selection")
            .field("tcp", &self.tcp)
            .field("quic", &self.quic)
            .field("websocket", &self.websocket)
            .field("memory", &self.memory)
            .field("latency", &self.latency)
            .finish()
    }
}

/// noise + yamux over a stream transport, optionally delayed ([`delay`]).
pub(crate) fn secure<T>(
    raw: T,
    key: &Keypair,
    version: libp2p::core::upgrade::Version,
    latency: Option<delay::Latency>,
) -> Result<BoxedTransport, BoxErr>
where
    T: libp2p::Transport + Send + Unpin + 'static,
    T::Output: futures::AsyncRead + futures::AsyncWrite + Send + Unpin + 'static,
    T::Error: Send + Sync + 'static,
    T::Dial: Send,
    T::ListenerUpgrade: Send,
{
    fn finish<S>(
        t: Boxed<S>,
        key: &Keypair,
        version: libp2p::core::upgrade::Version,
    ) -> Result<BoxedTransport, BoxErr>
    where
        S: futures::AsyncRead + futures::AsyncWrite + Send + Unpin + 'static,
    {
        Ok(t.upgrade(version)
            .authenticate(libp2p::noise::Config::new(key)?)
            .multiplex(libp2p::yamux::Config::default())
            .map(|(p, c), _| (p, StreamMuxerBox::new(c)))
            .boxed())
    }
    match latency {
        None => finish(raw.boxed(), key, version),
        Some(l) => finish(
            raw.map(move |c, cp| {
                let (l, addr) = (l.clone(), delay::remote(&cp).clone());
                delay::Delayed::with(c, std::sync::Arc::new(move || l.of(&addr)))
            })
            .boxed(),
            key,
            version,
        ),
    }
}

/// Builds the enabled transports into one.
pub fn build(key: &Keypair, sel: Selection) -> Result<BoxedTransport, BoxErr> {
    let mut parts = Vec::new();
    if sel.quic {
        parts.push(quic::build(key)?);
    }
    if sel.tcp {
        parts.push(tcp::build(key, sel.latency.clone())?);
    }
    if sel.websocket {
        parts.push(websocket::build(key)?);
    }
    if sel.memory {
        parts.push(memory::build(key, sel.latency.clone())?);
    }
    let combined = parts
        .into_iter()
        .reduce(|a, b| a.or_transport(b).map(|e, _| e.into_inner()).boxed())
        .ok_or("no transport enabled")?;
    // One DNS layer over all of them. A DNS layer claims every address it is given (and fails
    // only later), so one per transport would let the first transport take every dial.
    Ok(dns::tokio::Transport::system(combined)?.boxed())
}
