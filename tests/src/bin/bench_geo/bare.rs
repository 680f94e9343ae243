//! The bare rust-libp2p Kademlia swarm `leafnet-bench-geo` compares leafnet's profile get with.
//!
//! Each node: memory transport + noise + yamux (as leafnet's memory transport), identify and
//! Kademlia with `kad::store::MemoryStore` and exactly leafnet's `kad::Config`
//! (`leafnet_node::behaviour::kad_config` of the same config, so `StoreInserts::FilterBoth`, the
//! same replication factor and query timeout), server mode, its listen address added as an
//! external address (as a leafnet node on a local network does), bootstrap by `add_address` +
//! dial of node 0 (as leafnet's actor does), identify's listen addresses added to Kademlia (as
//! leafnet does). Inbound records and provider records are stored as they come, without
//! validation.
//!
//! A get finishes as leafnet's `GetRecord` does (`node/src/swarm.rs`, `GET_ENOUGH`): it answers
//! once 3 records were found (then `query_mut(id).finish()`), or at the query's last event.
//!
//! Each node runs on its own tokio task and takes [`Cmd`]s over a bounded channel, answering on
//! a oneshot, as leafnet's actor does.

use std::{
    collections::{HashMap, HashSet},
    time::Duration,
};

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
        self, QueryId, QueryResult, Record, RecordKey,
        store::{MemoryStore, MemoryStoreConfig, RecordStore as _},
    },
    multiaddr::Protocol,
    noise,
    swarm::{NetworkBehaviour, SwarmEvent},
    yamux,
};
use tokio::sync::{mpsc, oneshot};

/// Records found before a get answers early: leafnet's `GET_ENOUGH`.
pub const GET_ENOUGH: usize = 3;

#[derive(NetworkBehaviour)]
struct Bare {
    identify: identify::Behaviour,
    kad: kad::Behaviour<MemoryStore>,
}

/// What a get found.
#[derive(Debug)]
pub struct GetOut {
    /// Records found (the local one included).
    pub found: usize,
    /// The first record's value.
    pub value: Option<Vec<u8>>,
    /// Kademlia requests sent by the query when it answered.
    pub requests: u32,
}

/// What the parallel provider lookups of a cover found.
#[derive(Debug)]
pub struct CoverOut {
    /// Distinct providers over all cells.
    pub providers: usize,
    /// Kademlia requests sent by all the lookups.
    pub requests: u32,
}

/// A request to one bare node.
#[derive(Debug)]
pub enum Cmd {
    /// `put_record` with `Quorum::One` (as leafnet hosts a profile); answers whether it succeeded.
    Put(Record, oneshot::Sender<bool>),
    /// `start_providing`; answers whether it succeeded.
    Provide(RecordKey, oneshot::Sender<bool>),
    /// `get_record`, finished as leafnet does.
    Get(RecordKey, oneshot::Sender<GetOut>),
    /// `get_providers` of every key in parallel, each to the end of its query (`None`, as
    /// leafnet's radius query runs its cell lookups) or finished once `Some(n)` non-empty
    /// provider sets arrived for it; answers when the last lookup ended.
    Cover(Vec<RecordKey>, Option<usize>, oneshot::Sender<CoverOut>),
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
pub async fn start(cfg: &Valid, boot: Option<&(PeerId, Multiaddr)>) -> anyhow::Result<BareNode> {
    let key = Keypair::generate_ed25519();
    let peer_id = key.public().to_peer_id();
    let kcfg = kad_config(cfg);
    let network = cfg.network.clone();
    // leafnet's redb store keeps 256 providers per geo cell key; the cover lookups here use the
    // same cap so they find the same hosts. Records: leafnet's limits.
    let store_cfg = MemoryStoreConfig {
        max_records: cfg.kad.max_records as usize,
        max_value_bytes: 65 * 1024,
        max_providers_per_key: leafnet_node::near::GEO_PROVIDERS_PER_KEY,
        max_provided_keys: cfg.kad.max_provided_keys as usize,
    };
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
            let mut kad = kad::Behaviour::with_config(
                peer_id,
                MemoryStore::with_config(peer_id, store_cfg),
                kcfg,
            );
            kad.set_mode(Some(kad::Mode::Server));
            Bare {
                identify: identify::Behaviour::new(
                    identify::Config::new(identify_version(&network), key.public())
                        .with_agent_version("bare-kad-bench-geo".into())
                        .with_interval(Duration::from_secs(300))
                        .with_push_listen_addr_updates(true)
                        .with_cache_size(256),
                ),
                kad,
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

struct GetQ {
    found: usize,
    value: Option<Vec<u8>>,
    reply: oneshot::Sender<GetOut>,
}

struct CoverQ {
    enough: Option<usize>,
    pending: usize,
    providers: HashSet<PeerId>,
    requests: u32,
    reply: oneshot::Sender<CoverOut>,
}

#[derive(Default)]
struct State {
    put_q: HashMap<QueryId, oneshot::Sender<bool>>,
    provide_q: HashMap<QueryId, oneshot::Sender<bool>>,
    get_q: HashMap<QueryId, GetQ>,
    /// Lookup → (cover, non-empty provider sets so far).
    cover_of: HashMap<QueryId, (u64, usize)>,
    covers: HashMap<u64, CoverQ>,
    next_cover: u64,
}

async fn run(
    mut swarm: libp2p::Swarm<Bare>,
    mut rx: mpsc::Receiver<Cmd>,
    kad_proto: libp2p::StreamProtocol,
) {
    let mut st = State::default();
    loop {
        tokio::select! {
            ev = swarm.select_next_some() => on_event(&mut swarm, ev, &kad_proto, &mut st),
            cmd = rx.recv() => match cmd {
                None => break,
                Some(cmd) => on_cmd(&mut swarm, cmd, &mut st),
            },
        }
    }
}

fn on_cmd(swarm: &mut libp2p::Swarm<Bare>, cmd: Cmd, st: &mut State) {
    let kad = &mut swarm.behaviour_mut().kad;
    match cmd {
        Cmd::Put(rec, tx) => match kad.put_record(rec, kad::Quorum::One) {
            Ok(id) => {
                st.put_q.insert(id, tx);
            }
            Err(_) => {
                let _ = tx.send(false);
            }
        },
        Cmd::Provide(key, tx) => match kad.start_providing(key) {
            Ok(id) => {
                st.provide_q.insert(id, tx);
            }
            Err(_) => {
                let _ = tx.send(false);
            }
        },
        Cmd::Get(key, tx) => {
            let id = kad.get_record(key);
            st.get_q.insert(
                id,
                GetQ {
                    found: 0,
                    value: None,
                    reply: tx,
                },
            );
        }
        Cmd::Cover(keys, enough, tx) => {
            if keys.is_empty() {
                let _ = tx.send(CoverOut {
                    providers: 0,
                    requests: 0,
                });
                return;
            }
            let c = st.next_cover;
            st.next_cover += 1;
            st.covers.insert(
                c,
                CoverQ {
                    enough,
                    pending: keys.len(),
                    providers: HashSet::new(),
                    requests: 0,
                    reply: tx,
                },
            );
            for k in keys {
                let id = kad.get_providers(k);
                st.cover_of.insert(id, (c, 0));
            }
        }
        Cmd::Snapshot(tx) => {
            let rt = kad.kbuckets().map(|b| b.num_entries()).sum();
            let queries = kad.iter_queries().count();
            let _ = tx.send([rt, swarm.connected_peers().count(), queries]);
        }
    }
}

fn on_event(
    swarm: &mut libp2p::Swarm<Bare>,
    ev: SwarmEvent<BareEvent>,
    kad_proto: &libp2p::StreamProtocol,
    st: &mut State,
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
            stats,
        })) => on_query(swarm, st, id, result, step.last, stats.num_requests()),
        _ => {}
    }
}

fn on_query(
    swarm: &mut libp2p::Swarm<Bare>,
    st: &mut State,
    id: QueryId,
    result: QueryResult,
    last: bool,
    requests: u32,
) {
    match result {
        QueryResult::PutRecord(r) => {
            if let Some(tx) = st.put_q.remove(&id) {
                let _ = tx.send(r.is_ok());
            }
        }
        QueryResult::StartProviding(r) => {
            if let Some(tx) = st.provide_q.remove(&id) {
                let _ = tx.send(r.is_ok());
            }
        }
        QueryResult::GetRecord(r) => {
            let Some(q) = st.get_q.get_mut(&id) else {
                return;
            };
            if let Ok(kad::GetRecordOk::FoundRecord(pr)) = r {
                q.found += 1;
                if q.value.is_none() {
                    q.value = Some(pr.record.value);
                }
            }
            if (last || q.found >= GET_ENOUGH)
                && let Some(q) = st.get_q.remove(&id)
            {
                if !last && let Some(mut qm) = swarm.behaviour_mut().kad.query_mut(&id) {
                    qm.finish();
                }
                let _ = q.reply.send(GetOut {
                    found: q.found,
                    value: q.value,
                    requests,
                });
            }
        }
        QueryResult::GetProviders(r) => {
            let Some((c, nonempty)) = st.cover_of.get_mut(&id) else {
                return;
            };
            let c = *c;
            let Some(q) = st.covers.get_mut(&c) else {
                return;
            };
            if let Ok(kad::GetProvidersOk::FoundProviders { providers, .. }) = r
                && !providers.is_empty()
            {
                *nonempty += 1;
                q.providers.extend(providers);
            }
            let early = q.enough.is_some_and(|e| *nonempty >= e);
            if last || early {
                st.cover_of.remove(&id);
                if !last && let Some(mut qm) = swarm.behaviour_mut().kad.query_mut(&id) {
                    qm.finish();
                }
                q.pending = q.pending.saturating_sub(1);
                q.requests += requests;
                if q.pending == 0
                    && let Some(q) = st.covers.remove(&c)
                {
                    let _ = q.reply.send(CoverOut {
                        providers: q.providers.len(),
                        requests: q.requests,
                    });
                }
            }
        }
        _ => {}
    }
}
