//! The bare rust-libp2p gossipsub swarm `leafnet-bench-mint` compares leafnet's mint notes with.
//!
//! Each node: memory transport + noise + yamux (as leafnet's memory transport) and gossipsub
//! only, with leafnet's gossipsub settings (`leafnet_node::behaviour::gossipsub`):
//! `MessageAuthenticity::Signed`, `ValidationMode::Strict`, `validate_messages()` (the node
//! accepts every message as soon as it arrives), D = 6 (4..8), `mesh_outbound_min` 2, no flood
//! publishing, the same heartbeat and initial delay, the same transmit cap and the same peer
//! score parameters; the message id is the SHA-256 of the data. It subscribes to the same topic.
//!
//! A [`DataTransform`](gossipsub::DataTransform) that passes data through counts every message
//! received before deduplication (gossipsub calls it exactly where it counts
//! `topic_msg_recv_counts_unfiltered`); `Event::Message` counts the unique ones
//! (`topic_msg_recv_counts`).
//!
//! A message's data is `[tag, round (4 bytes LE), node (4 bytes LE), filler...]`, tag 0 = A,
//! 1 = B. A node "detects" round r once it has published or received at least one A and one B of
//! round r, and remembers when (unix µs).

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use anyhow::Context as _;
use futures::StreamExt as _;
use leafnet_config::Valid;
use libp2p::{
    Multiaddr, PeerId, SwarmBuilder, Transport as _,
    core::{transport::MemoryTransport, upgrade::Version},
    gossipsub::{self, DataTransform, RawMessage, TopicHash},
    identity::Keypair,
    multiaddr::Protocol,
    noise,
    swarm::SwarmEvent,
    yamux,
};
use tokio::sync::{mpsc, oneshot};

/// Counters shared by one node's task and the bench.
#[derive(Debug, Default)]
pub struct Counters {
    /// Messages received before deduplication.
    pub recv_unfiltered: AtomicU64,
    /// Messages received, not duplicates (`Event::Message`).
    pub recv_unique: AtomicU64,
    /// Messages this node published.
    pub published: AtomicU64,
}

/// Passes data through unchanged (as `IdentityTransform`) and counts inbound messages.
struct Counting(Arc<Counters>);

impl DataTransform for Counting {
    fn inbound_transform(&self, raw: RawMessage) -> Result<gossipsub::Message, std::io::Error> {
        self.0.recv_unfiltered.fetch_add(1, Ordering::Relaxed);
        Ok(gossipsub::Message {
            source: raw.source,
            data: raw.data,
            sequence_number: raw.sequence_number,
            topic: raw.topic,
        })
    }

    fn outbound_transform(&self, _: &TopicHash, data: Vec<u8>) -> Result<Vec<u8>, std::io::Error> {
        Ok(data)
    }
}

type Gossip = gossipsub::Behaviour<Counting>;

/// A request to one bare node.
#[derive(Debug)]
pub enum Cmd {
    /// Publish `data` (round and tag are in its first bytes); answers whether it was sent.
    Publish(Vec<u8>, oneshot::Sender<bool>),
    /// When this node detected round r (unix µs), if it did.
    Detected(u32, oneshot::Sender<Option<u64>>),
    /// Connected peers, topic peers, mesh peers.
    Snapshot(oneshot::Sender<[usize; 3]>),
    /// Dial this address.
    Dial(Multiaddr),
}

/// A running bare node; dropping `tx` stops it.
#[derive(Debug)]
pub struct BareNode {
    pub peer_id: PeerId,
    pub addr: Multiaddr,
    pub tx: mpsc::Sender<Cmd>,
    pub counters: Arc<Counters>,
    pub task: tokio::task::JoinHandle<()>,
}

impl BareNode {
    /// The listen address with `/p2p/<id>`.
    pub fn p2p_addr(&self) -> Multiaddr {
        self.addr.clone().with(Protocol::P2p(self.peer_id))
    }
}

type BoxErr = Box<dyn std::error::Error + Send + Sync>;

fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// Gossipsub built as `leafnet_node::behaviour::gossipsub` builds it, but with the message id
/// SHA-256(data) and the counting transform.
fn gossip(key: &Keypair, cfg: &Valid, counters: Arc<Counters>) -> Result<Gossip, String> {
    let gcfg = gossipsub::ConfigBuilder::default()
        .validation_mode(gossipsub::ValidationMode::Strict)
        .validate_messages()
        .message_id_fn(|m: &gossipsub::Message| {
            gossipsub::MessageId::from(leafnet_mint::mint_hash(&m.data).to_vec())
        })
        .heartbeat_interval(cfg.mint.heartbeat)
        .heartbeat_initial_delay(cfg.mint.heartbeat.min(Duration::from_millis(500)))
        .mesh_outbound_min(2)
        .mesh_n_low(4)
        .mesh_n(6)
        .mesh_n_high(8)
        .flood_publish(false)
        .max_transmit_size(leafnet_mint::MAX_ITEM)
        .build()
        .map_err(|e| format!("gossipsub config: {e}"))?;
    let mut gs = Gossip::new_with_transform(
        gossipsub::MessageAuthenticity::Signed(key.clone()),
        gcfg,
        Counting(counters),
    )
    .map_err(|e| format!("gossipsub: {e}"))?;
    let topic = leafnet_node::mint::topic(&cfg.network);
    let mut params = gossipsub::PeerScoreParams::default();
    if cfg.local {
        params.ip_colocation_factor_weight = 0.0;
    }
    let t = gossipsub::TopicScoreParams {
        topic_weight: 1.0,
        mesh_message_deliveries_weight: 0.0,
        mesh_failure_penalty_weight: 0.0,
        time_in_mesh_weight: 0.0,
        first_message_deliveries_weight: 0.0,
        invalid_message_deliveries_weight: -10.0,
        invalid_message_deliveries_decay: 0.99,
        ..Default::default()
    };
    params.topics.insert(topic.hash(), t);
    gs.with_peer_score(params, gossipsub::PeerScoreThresholds::default())
        .map_err(|e| format!("gossipsub scoring: {e}"))?;
    gs.subscribe(&topic)
        .map_err(|e| format!("gossipsub subscribe: {e}"))?;
    Ok(gs)
}

/// Starts one bare node listening on the memory transport (it dials nobody yet).
pub async fn start(cfg: &Valid) -> anyhow::Result<BareNode> {
    let key = Keypair::generate_ed25519();
    let peer_id = key.public().to_peer_id();
    let counters = Arc::new(Counters::default());
    let c2 = counters.clone();
    let mut swarm = SwarmBuilder::with_existing_identity(key)
        .with_tokio()
        .with_other_transport(|key| -> Result<_, BoxErr> {
            Ok(MemoryTransport::default()
                .upgrade(Version::V1)
                .authenticate(noise::Config::new(key)?)
                .multiplex(yamux::Config::default()))
        })
        .map_err(|e| anyhow::anyhow!("transport: {e}"))?
        .with_behaviour(|key| gossip(key, cfg, c2).map_err(BoxErr::from))
        .map_err(|e| anyhow::anyhow!("behaviour: {e}"))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(cfg.idle_timeout))
        .with_connection_timeout(Duration::from_secs(10))
        .build();
    swarm.listen_on("/memory/0".parse()?)?;
    let addr = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let SwarmEvent::NewListenAddr { address, .. } = swarm.select_next_some().await {
                break address;
            }
        }
    })
    .await
    .context("bare node: no listen address")?;
    let (tx, rx) = mpsc::channel(256);
    let topic = leafnet_node::mint::topic(&cfg.network);
    let task = tokio::spawn(run(swarm, rx, topic, counters.clone()));
    Ok(BareNode {
        peer_id,
        addr,
        tx,
        counters,
        task,
    })
}

/// Per round: A seen, B seen, detected at (unix µs).
type Seen = HashMap<u32, (bool, bool, Option<u64>)>;

fn mark(seen: &mut Seen, data: &[u8]) {
    if data.len() < 5 {
        return;
    }
    let round = u32::from_le_bytes([data[1], data[2], data[3], data[4]]);
    let e = seen.entry(round).or_insert((false, false, None));
    if data[0] == 0 {
        e.0 = true;
    } else {
        e.1 = true;
    }
    if e.0 && e.1 && e.2.is_none() {
        e.2 = Some(now_us());
    }
}

async fn run(
    mut swarm: libp2p::Swarm<Gossip>,
    mut rx: mpsc::Receiver<Cmd>,
    topic: gossipsub::IdentTopic,
    counters: Arc<Counters>,
) {
    let mut seen = Seen::new();
    let hash = topic.hash();
    loop {
        tokio::select! {
            ev = swarm.select_next_some() => {
                if let SwarmEvent::Behaviour(gossipsub::Event::Message {
                    propagation_source,
                    message_id,
                    message,
                }) = ev
                {
                    counters.recv_unique.fetch_add(1, Ordering::Relaxed);
                    mark(&mut seen, &message.data);
                    swarm.behaviour_mut().report_message_validation_result(
                        &message_id,
                        &propagation_source,
                        gossipsub::MessageAcceptance::Accept,
                    );
                }
            }
            cmd = rx.recv() => match cmd {
                None => break,
                Some(Cmd::Publish(data, tx)) => {
                    mark(&mut seen, &data);
                    let ok = swarm.behaviour_mut().publish(topic.clone(), data).is_ok();
                    if ok {
                        counters.published.fetch_add(1, Ordering::Relaxed);
                    }
                    let _ = tx.send(ok);
                }
                Some(Cmd::Detected(r, tx)) => {
                    let _ = tx.send(seen.get(&r).and_then(|e| e.2));
                }
                Some(Cmd::Snapshot(tx)) => {
                    let g = swarm.behaviour();
                    let topic_peers = g.all_peers().filter(|(_, t)| t.contains(&&hash)).count();
                    let mesh = g.mesh_peers(&hash).count();
                    let _ = tx.send([swarm.connected_peers().count(), topic_peers, mesh]);
                }
                Some(Cmd::Dial(a)) => {
                    let _ = swarm.dial(a);
                }
            },
        }
    }
}

/// Sends `cmd` made with a fresh oneshot and waits for the answer (10 s at most).
pub async fn ask<T>(
    node: &BareNode,
    make: impl FnOnce(oneshot::Sender<T>) -> Cmd,
) -> anyhow::Result<T> {
    let (tx, rx) = oneshot::channel();
    node.tx
        .send(make(tx))
        .await
        .map_err(|_| anyhow::anyhow!("bare node stopped"))?;
    tokio::time::timeout(Duration::from_secs(10), rx)
        .await
        .context("bare node did not answer")?
        .context("bare node dropped the request")
}
