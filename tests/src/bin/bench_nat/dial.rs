//! Part 2: dial plus first request with an injected RTT r, over TCP (leafnet's delaying
//! transport wrapper on the dialer) and QUIC (a user-space UDP delay proxy, since QUIC owns its
//! socket). The request is libp2p ping, which every leafnet connection sends at once on a new
//! connection: the time runs from `Node::dial` until `leafnet peers` shows the target's first
//! ping RTT. The bare anchor is a rust-libp2p swarm with leafnet's own transport stack
//! (`leafnet_node::transport::build`) and only the ping behaviour, over the same path.

use std::{
    collections::{HashMap, hash_map::Entry},
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use futures::StreamExt as _;
use leafnet_config::{Config, Overrides, Valid};
use leafnet_node::{Node, NodeOptions, transport::delay::Latency};
use libp2p::{
    Multiaddr, PeerId, Swarm, SwarmBuilder, identity::Keypair, multiaddr::Protocol, ping,
    swarm::SwarmEvent,
};
use serde::Serialize;
use tokio::{net::UdpSocket, sync::mpsc, task::JoinSet};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Tcp,
    Quic,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Tcp => "tcp",
            Kind::Quic => "quic",
        }
    }

    fn listen(self) -> Multiaddr {
        match self {
            Kind::Tcp => "/ip4/127.0.0.1/tcp/0",
            Kind::Quic => "/ip4/127.0.0.1/udp/0/quic-v1",
        }
        .parse()
        .expect("valid multiaddr")
    }
}

/// A config for a loopback node on one transport, network `local`, no bootstrap.
fn config(kind: Kind) -> Valid {
    let mut c = Config::default();
    let mut o = Overrides::default();
    o.network = Some("local".into());
    o.local = Some(true);
    o.transports = vec![kind.name().into()];
    o.listen = vec![kind.listen().to_string()];
    o.api = Some("127.0.0.1:0".into());
    c.apply(&o);
    c.validate().expect("bench config is valid")
}

/// A leafnet node and its temp dir.
pub struct LeafNode {
    pub node: Node,
    _dir: tempfile::TempDir,
}

pub async fn start_node(kind: Kind, latency: Option<Latency>) -> anyhow::Result<LeafNode> {
    let dir = tempfile::tempdir()?;
    let account = leafnet_node::datadir::DataDir::new(dir.path()).load_or_create_account()?;
    let node = Node::start(NodeOptions {
        config: config(kind),
        keypair: Keypair::generate_ed25519(),
        account,
        db_path: dir.path().join("leafnet.redb"),
        api: None,
        latency,
    })
    .await?;
    Ok(LeafNode { node, _dir: dir })
}

/// One dial sample (milliseconds from the dial call).
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    /// Connection established (the dial call answered).
    pub connected_ms: f64,
    /// The first ping answered.
    pub first_request_ms: f64,
    /// The RTT the first ping reported itself.
    pub ping_rtt_ms: f64,
}

/// Where the dialer should dial to reach `target_addr` with RTT `r`: the address itself (TCP;
/// the delay sits in the dialer's transport) or a UDP delay proxy (QUIC).
pub struct Path {
    pub addr: Multiaddr,
    pub latency: Option<Latency>,
    _proxy: Option<UdpProxy>,
}

pub async fn path(
    kind: Kind,
    target: &Multiaddr,
    peer: PeerId,
    r: Duration,
) -> anyhow::Result<Path> {
    match kind {
        Kind::Tcp => Ok(Path {
            addr: target.clone().with(Protocol::P2p(peer)),
            latency: Some(Latency::fixed(r / 2)),
            _proxy: None,
        }),
        Kind::Quic => {
            let mut it = target.iter();
            let (Some(Protocol::Ip4(ip)), Some(Protocol::Udp(port))) = (it.next(), it.next())
            else {
                anyhow::bail!("not a QUIC address: {target}");
            };
            let proxy = UdpProxy::start(SocketAddr::from((ip, port)), r / 2).await?;
            let addr: Multiaddr = format!("/ip4/127.0.0.1/udp/{}/quic-v1", proxy.addr.port())
                .parse::<Multiaddr>()?
                .with(Protocol::P2p(peer));
            Ok(Path {
                addr,
                latency: None,
                _proxy: Some(proxy),
            })
        }
    }
}

/// One leafnet sample: a fresh dialer node, then `dial` and poll `peers` until the target has
/// a ping RTT.
pub async fn leaf_sample(
    kind: Kind,
    target: PeerId,
    path: &Path,
    timeout: Duration,
) -> anyhow::Result<Sample> {
    let d = start_node(kind, path.latency.clone()).await?;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let want = target.to_string();
    let t0 = Instant::now();
    let res = async {
        d.node.dial(path.addr.clone()).await?;
        let connected_ms = t0.elapsed().as_secs_f64() * 1000.0;
        loop {
            let peers = d.node.peers().await?;
            if let Some(rtt) = peers
                .iter()
                .find(|p| p.peer_id == want)
                .and_then(|p| p.rtt_ms)
            {
                return Ok(Sample {
                    connected_ms,
                    first_request_ms: t0.elapsed().as_secs_f64() * 1000.0,
                    ping_rtt_ms: rtt,
                });
            }
            anyhow::ensure!(t0.elapsed() < timeout, "no ping answer within {timeout:?}");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    .await;
    d.node.shutdown().await;
    res
}

/// A ping-only swarm on leafnet's transport stack; `lazy`: outbound substreams negotiate with
/// multistream-select V1Lazy (the protocol id and the first request leave together) instead of
/// the swarm's default V1 (one round trip for the protocol confirmation first).
fn bare_swarm(
    kind: Kind,
    latency: Option<Latency>,
    lazy: bool,
) -> anyhow::Result<Swarm<ping::Behaviour>> {
    let sel = leafnet_node::transport::Selection {
        tcp: kind == Kind::Tcp,
        quic: kind == Kind::Quic,
        websocket: false,
        memory: false,
        latency,
    };
    Ok(SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_other_transport(|key| leafnet_node::transport::build(key, sel.clone()))
        .map_err(|e| anyhow::anyhow!("transport: {e}"))?
        .with_behaviour(|_| ping::Behaviour::new(ping::Config::new()))
        .map_err(|e| anyhow::anyhow!("behaviour: {e}"))?
        .with_swarm_config(|c| {
            let c = c.with_idle_connection_timeout(Duration::from_secs(60));
            if lazy {
                c.with_substream_upgrade_protocol_override(libp2p::core::upgrade::Version::V1Lazy)
            } else {
                c
            }
        })
        .build())
}

/// A bare ping-only swarm listening on loopback, driven by its own task.
pub struct BareTarget {
    pub peer_id: PeerId,
    pub addr: Multiaddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for BareTarget {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub async fn bare_target(kind: Kind) -> anyhow::Result<BareTarget> {
    let mut s = bare_swarm(kind, None, false)?;
    s.listen_on(kind.listen())?;
    let addr = loop {
        if let SwarmEvent::NewListenAddr { address, .. } = s.select_next_some().await {
            break address;
        }
    };
    let peer_id = *s.local_peer_id();
    let task = tokio::spawn(async move {
        loop {
            s.select_next_some().await;
        }
    });
    Ok(BareTarget {
        peer_id,
        addr,
        task,
    })
}

/// One bare sample: a fresh ping-only dialer swarm; from `dial` to the first ping result.
pub async fn bare_sample(
    kind: Kind,
    lazy: bool,
    target: PeerId,
    path: &Path,
    timeout: Duration,
) -> anyhow::Result<Sample> {
    let mut s = bare_swarm(kind, path.latency.clone(), lazy)?;
    if kind == Kind::Quic {
        // As the leafnet dialer: a QUIC listener, whose socket the dial reuses.
        s.listen_on(kind.listen())?;
        loop {
            if let SwarmEvent::NewListenAddr { .. } = s.select_next_some().await {
                break;
            }
        }
    }
    let t0 = Instant::now();
    s.dial(path.addr.clone())?;
    let mut connected_ms = f64::NAN;
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let ev = tokio::time::timeout_at(deadline, s.select_next_some())
            .await
            .map_err(|_| anyhow::anyhow!("no ping answer within {timeout:?}"))?;
        match ev {
            SwarmEvent::ConnectionEstablished { peer_id, .. } if peer_id == target => {
                connected_ms = t0.elapsed().as_secs_f64() * 1000.0;
            }
            SwarmEvent::Behaviour(ping::Event {
                peer,
                result: Ok(rtt),
                ..
            }) if peer == target => {
                return Ok(Sample {
                    connected_ms,
                    first_request_ms: t0.elapsed().as_secs_f64() * 1000.0,
                    ping_rtt_ms: rtt.as_secs_f64() * 1000.0,
                });
            }
            SwarmEvent::OutgoingConnectionError { error, .. } => {
                anyhow::bail!("dial failed: {error}")
            }
            _ => {}
        }
    }
}

/// A user-space UDP delay proxy on 127.0.0.1: every datagram from a client is forwarded to the
/// target `one_way` after it arrived, from a socket of its own per client, and every answer goes
/// back `one_way` after it arrived. Order is kept per direction (constant delay, one sender).
pub struct UdpProxy {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for UdpProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Sends each queued datagram when it is due.
fn sender(
    sock: Arc<UdpSocket>,
    to: Option<SocketAddr>,
) -> (
    mpsc::Sender<(tokio::time::Instant, Vec<u8>)>,
    impl Future<Output = ()>,
) {
    // A full queue drops the datagram, as a router would.
    let (tx, mut rx) = mpsc::channel::<(tokio::time::Instant, Vec<u8>)>(4096);
    let fut = async move {
        while let Some((due, bytes)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            let _ = match to {
                Some(to) => sock.send_to(&bytes, to).await,
                None => sock.send(&bytes).await,
            };
        }
    };
    (tx, fut)
}

impl UdpProxy {
    pub async fn start(target: SocketAddr, one_way: Duration) -> anyhow::Result<Self> {
        let front = Arc::new(UdpSocket::bind("127.0.0.1:0").await?);
        let addr = front.local_addr()?;
        let task = tokio::spawn(async move {
            let mut tasks = JoinSet::new();
            let mut clients: HashMap<SocketAddr, mpsc::Sender<_>> = HashMap::new();
            let mut buf = vec![0u8; 65_536];
            loop {
                let Ok((n, from)) = front.recv_from(&mut buf).await else {
                    return;
                };
                let due = tokio::time::Instant::now() + one_way;
                let tx = match clients.entry(from) {
                    Entry::Occupied(e) => e.into_mut(),
                    Entry::Vacant(v) => {
                        let Ok(up) = UdpSocket::bind("127.0.0.1:0").await else {
                            continue;
                        };
                        if up.connect(target).await.is_err() {
                            continue;
                        }
                        let up = Arc::new(up);
                        let (to_target, fwd) = sender(up.clone(), None);
                        tasks.spawn(fwd);
                        let (to_client, back) = sender(front.clone(), Some(from));
                        tasks.spawn(back);
                        tasks.spawn(async move {
                            let mut buf = vec![0u8; 65_536];
                            while let Ok(n) = up.recv(&mut buf).await {
                                let due = tokio::time::Instant::now() + one_way;
                                if let Err(mpsc::error::TrySendError::Closed(_)) =
                                    to_client.try_send((due, buf[..n].to_vec()))
                                {
                                    return;
                                }
                            }
                        });
                        v.insert(to_target)
                    }
                };
                let _ = tx.try_send((due, buf[..n].to_vec()));
            }
        });
        Ok(Self { addr, task })
    }
}
