//! The bare rust-libp2p Kademlia swarm the DHT benchmark compares leafnet against.
//!
//! Each node: memory transport + noise + yamux (as leafnet's memory transport), identify and
//! Kademlia with `kad::store::MemoryStore` and exactly leafnet's `kad::Config`
//! (`leafnet_node::behaviour::kad_config`, so `StoreInserts::FilterBoth`), server mode, the
//! listen address added as external address (as a leafnet node on a local network does),
//! bootstrap by `add_address` + dial of node 0 (as leafnet's actor does), identify's listen
//! addresses added to Kademlia (as leafnet does). Inbound provider records and records are
//! stored as they come, without validation: the only differences left are leafnet's
//! validation, its redb store, its actor bookkeeping and its extra behaviours (ping, connection
//! limits, block list) and node-record publishing.
//!
//! Each swarm runs on its own tokio task and takes [`Cmd`]s over a bounded channel.

use std::{collections::HashMap, time::Duration};

use anyhow::Context as _;
use futures::StreamExt as _;
use leafnet_config::Valid;
use leafnet_node::behaviour::{identify_version, kad_config, kad_protocol};
use libp2p::{
    Multiaddr, PeerId, SwarmBuilder, Transport as _,
    core::{transport::MemoryTransport, upgrade::Version},
    identify,
    identity::Keypair,
    kad::{
        self, QueryId, QueryResult, RecordKey,
        store::{MemoryStore, RecordStore as _},
    },
    multiaddr::Protocol,
    noise,
    swarm::{NetworkBehaviour, SwarmEvent},
    yamux,
};
use tokio::sync::{mpsc, oneshot};

#[derive(NetworkBehaviour)]
struct Bare {
    identify: identify::Behaviour,
    kad: kad::Behaviour<MemoryStore>,
    /// Off unless asked for (diagnostic: leafnet's ping settings, to attribute its idle CPU).
    ping: libp2p::swarm::behaviour::toggle::Toggle<libp2p::ping::Behaviour>,
}

/// A request to one bare node.
#[derive(Debug)]
pub enum Cmd {
    /// `start_providing`; answers whether the announcement succeeded.
    Provide(RecordKey, oneshot::Sender<bool>),
    /// `get_providers`, finished at the first non-empty `FoundProviders`; answers how many
    /// providers were found.
    Providers(RecordKey, oneshot::Sender<usize>),
    /// Routing-table entries, connected peers, Kademlia queries in flight.
    Snapshot(oneshot::Sender<[usize; 3]>),
}

/// A running bare node; dropping `tx` stops it.
#[derive(Debug)]
pub struct BareNode {
    pub peer_id: PeerId,
    pub addr: Multiaddr,
    pub tx: mpsc::Sender<Cmd>,
    pub task: tokio::task::JoinHandle<()>,
}

type BoxErr = Box<dyn std::error::Error + Send + Sync>;

/// Starts one bare node; `boot` is node 0's peer id and address (without `/p2p`).
pub async fn start(
    cfg: &Valid,
    boot: Option<&(PeerId, Multiaddr)>,
    with_ping: bool,
) -> anyhow::Result<BareNode> {
    let key = Keypair::generate_ed25519();
    let peer_id = key.public().to_peer_id();
    let kcfg = kad_config(cfg);
    let network = cfg.network.clone();
    let mut swarm = SwarmBuilder::with_existing_identity(key)
        .with_tokio()
        .with_other_transport(|key| -> Result<_, BoxErr> {
            Ok(MemoryTransport::default()
                .upgrade(Version::V1)
                .authenticate(noise::Config::new(key)?)
                .multiplex(yamux::Config::default()))
        })
        .map_err(|e| anyhow::anyhow!("transport: {e}"))?
        .with_behaviour(|key| {
            let mut kad = kad::Behaviour::with_config(peer_id, MemoryStore::new(peer_id), kcfg);
            kad.set_mode(Some(kad::Mode::Server));
            Bare {
                identify: identify::Behaviour::new(
                    identify::Config::new(identify_version(&network), key.public())
                        .with_agent_version("bare-kad-bench".into())
                        .with_interval(Duration::from_secs(300))
                        .with_push_listen_addr_updates(true)
                        .with_cache_size(256),
                ),
                kad,
                ping: with_ping
                    .then(|| {
                        libp2p::ping::Behaviour::new(
                            libp2p::ping::Config::new()
                                .with_interval(Duration::from_secs(15))
                                .with_timeout(Duration::from_secs(20)),
                        )
                    })
                    .into(),
            }
        })
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
    swarm.add_external_address(addr.clone());
    if let Some((p, a)) = boot {
        swarm.behaviour_mut().kad.add_address(p, a.clone());
        swarm.dial(a.clone().with(Protocol::P2p(*p)))?;
    }
    let (tx, rx) = mpsc::channel(256);
    let kad_proto = kad_protocol(&cfg.network);
    let task = tokio::spawn(run(swarm, rx, kad_proto));
    Ok(BareNode {
        peer_id,
        addr,
        tx,
        task,
    })
}

async fn run(
    mut swarm: libp2p::Swarm<Bare>,
    mut rx: mpsc::Receiver<Cmd>,
    kad_proto: libp2p::StreamProtocol,
) {
    let mut provide_q: HashMap<QueryId, oneshot::Sender<bool>> = HashMap::new();
    let mut providers_q: HashMap<QueryId, oneshot::Sender<usize>> = HashMap::new();
    loop {
        tokio::select! {
            ev = swarm.select_next_some() => {
                on_event(&mut swarm, ev, &kad_proto, &mut provide_q, &mut providers_q);
            }
            cmd = rx.recv() => match cmd {
                None => break,
                Some(Cmd::Provide(key, tx)) => {
                    match swarm.behaviour_mut().kad.start_providing(key) {
                        Ok(id) => {
                            provide_q.insert(id, tx);
                        }
                        Err(_) => {
                            let _ = tx.send(false);
                        }
                    }
                }
                Some(Cmd::Providers(key, tx)) => {
                    let id = swarm.behaviour_mut().kad.get_providers(key);
                    providers_q.insert(id, tx);
                }
                Some(Cmd::Snapshot(tx)) => {
                    let kad = &mut swarm.behaviour_mut().kad;
                    let rt = kad.kbuckets().map(|b| b.num_entries()).sum();
                    let queries = kad.iter_queries().count();
                    let _ = tx.send([rt, swarm.connected_peers().count(), queries]);
                }
            },
        }
    }
}

fn on_event(
    swarm: &mut libp2p::Swarm<Bare>,
    ev: SwarmEvent<BareEvent>,
    kad_proto: &libp2p::StreamProtocol,
    provide_q: &mut HashMap<QueryId, oneshot::Sender<bool>>,
    providers_q: &mut HashMap<QueryId, oneshot::Sender<usize>>,
) {
    match ev {
        SwarmEvent::Behaviour(BareEvent::Identify(identify::Event::Received {
            peer_id,
            info,
            ..
        })) if info.protocols.contains(kad_proto) => {
            for a in info.listen_addrs {
                swarm.behaviour_mut().kad.add_address(&peer_id, a);
            }
        }
        SwarmEvent::Behaviour(BareEvent::Kad(kad::Event::InboundRequest { request })) => {
            // FilterBoth: store what comes in, without validation.
            match request {
                kad::InboundRequest::AddProvider { record: Some(rec) } => {
                    let _ = swarm.behaviour_mut().kad.store_mut().add_provider(rec);
                }
                kad::InboundRequest::PutRecord {
                    record: Some(rec), ..
                } => {
                    let _ = swarm.behaviour_mut().kad.store_mut().put(rec);
                }
                _ => {}
            }
        }
        SwarmEvent::Behaviour(BareEvent::Kad(kad::Event::OutboundQueryProgressed {
            id,
            result,
            step,
            ..
        })) => match result {
            QueryResult::StartProviding(r) => {
                if let Some(tx) = provide_q.remove(&id) {
                    let _ = tx.send(r.is_ok());
                }
            }
            QueryResult::GetProviders(r) => {
                let n = match &r {
                    Ok(kad::GetProvidersOk::FoundProviders { providers, .. }) => providers.len(),
                    _ => 0,
                };
                // As leafnet with limit 1: answer at the first non-empty result and finish.
                if (n > 0 || step.last)
                    && let Some(tx) = providers_q.remove(&id)
                {
                    if !step.last
                        && let Some(mut q) = swarm.behaviour_mut().kad.query_mut(&id)
                    {
                        q.finish();
                    }
                    let _ = tx.send(n);
                }
            }
            _ => {}
        },
        _ => {}
    }
}
