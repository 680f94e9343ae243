//! The leafnet node as a library: [`Node::start`] builds the swarm from a validated config,
//! listens, optionally serves the control API, and runs the swarm actor until
//! [`Node::shutdown`]. `main.rs` is a thin CLI over this and over [`client`].
//!
//! Modules:
//! - [`datadir`]: the data directory and its files;
//! - [`transport`]: one module per transport, built into one boxed transport at run time;
//! - [`behaviour`]: the composed `NetworkBehaviour` and Kademlia's settings;
//! - [`swarm`]: the actor that owns the `Swarm` and answers [`swarm::Command`]s;
//! - [`records`]: the DHT key namespaces and their validators;
//! - [`peers`]: the misbehaviour scores and bans;
//! - [`api`] and [`model`]: the HTTP control API and its JSON types; [`client`]: its client;
//! - [`metrics`]: Prometheus counters.
//!
//! Multi-node tests live in the `leafnet-tests` crate (`tests/`).

pub mod api;
pub mod behaviour;
pub mod certs;
pub mod client;
pub mod datadir;
pub mod flows;
pub mod leaf;
pub mod leaf_heads;
pub(crate) mod metrics;
pub mod mint;
pub mod model;
pub mod near;
pub mod object;
pub mod peers;
pub mod records;
pub mod relays;
pub mod swarm;
pub mod transport;

use std::{net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use anyhow::Context as _;
use leafnet_config::Valid;
use leafnet_storage::{Database, kad::Store};
use libp2p::{Multiaddr, PeerId, SwarmBuilder, identity::Keypair, swarm::SwarmEvent};
use tokio::sync::{mpsc, oneshot, watch};

use crate::swarm::Command;

/// The control API of a node started with [`Node::start`].
#[derive(Debug, Clone)]
pub struct ApiOptions {
    pub token: String,
    /// Where to write the bound address (`api.addr` in the data dir).
    pub addr_file: Option<PathBuf>,
}

/// Everything [`Node::start`] needs.
#[derive(Debug)]
pub struct NodeOptions {
    pub config: Valid,
    pub keypair: Keypair,
    /// The human's account key (profiles are signed with it).
    pub account: ed25519_dalek::SigningKey,
    pub db_path: PathBuf,
    pub api: Option<ApiOptions>,
    /// Tests and benchmarks only: one-way latency injected per remote address on the memory
    /// and TCP transports (`transport::delay`).
    pub latency: Option<transport::delay::Latency>,
}

/// A running node.
#[derive(Debug)]
pub struct Node {
    pub peer_id: PeerId,
    pub listen_addrs: Vec<Multiaddr>,
    pub api_addr: Option<SocketAddr>,
    commands: mpsc::Sender<Command>,
    ctx: flows::Ctx,
    shutdown: watch::Sender<bool>,
    actor: tokio::task::JoinHandle<()>,
    api: Option<tokio::task::JoinHandle<()>>,
    addr_file: Option<PathBuf>,
    timeout: Duration,
    registry: Arc<prometheus_client::registry::Registry>,
    leaf: Option<tokio::task::JoinHandle<()>>,
}

fn listen_error(addr: &Multiaddr, e: libp2p::TransportError<std::io::Error>) -> anyhow::Error {
    match e {
        libp2p::TransportError::MultiaddrNotSupported(_) => {
            anyhow::anyhow!("cannot listen on {addr}: no enabled transport supports it")
        }
        libp2p::TransportError::Other(e) => anyhow::anyhow!("cannot listen on {addr}: {e}"),
    }
}

impl Node {
    /// Opens the database, builds the swarm, listens on every configured address (an address
    /// that cannot be bound is an error), binds the API and starts the actor.
    pub async fn start(opts: NodeOptions) -> anyhow::Result<Node> {
        // The swarm lives across the awaits below; boxing keeps callers' futures small.
        Box::pin(Self::start_inner(opts)).await
    }

    async fn start_inner(opts: NodeOptions) -> anyhow::Result<Node> {
        let NodeOptions {
            config: cfg,
            keypair,
            account,
            db_path,
            api,
            latency,
        } = opts;
        let peer_id = keypair.public().to_peer_id();
        let db = Database::open(&db_path)?;
        let now = swarm::now_ms();
        let hosted: Vec<leafnet_profile::SignedProfile> = leafnet_storage::profiles::all(&db)?
            .iter()
            .filter_map(|b| leafnet_profile::SignedProfile::open(b, now).ok())
            .filter(|s| s.profile.host_peer() == Some(peer_id))
            .collect();
        let db_handle = db.clone();
        let observer = records::signing_key(&keypair)
            .context("the node key is not an ed25519 key (needed to sign mint observations)")?;
        let mint = mint::MintState::load(&db, &cfg.network, observer, cfg.mint.max_items as usize)?;
        let mut store_cfg = leafnet_storage::kad::Config::default();
        store_cfg.max_records = cfg.kad.max_records as usize;
        store_cfg.max_provider_keys = cfg.kad.max_records as usize;
        store_cfg.max_providers_per_key = cfg.kad.max_providers_per_key as usize;
        store_cfg.max_provided_keys = cfg.kad.max_provided_keys as usize;
        // A coarse geo cell (precision 1 is 5,000 km wide) has many hosting nodes; libp2p's
        // default of k providers per key would silently drop some of them from queries.
        store_cfg.provider_caps = vec![(b"/leafnet/geo/".to_vec(), near::GEO_PROVIDERS_PER_KEY)];
        let store = Store::new(db, peer_id, store_cfg)?;
        let mut registry = prometheus_client::registry::Registry::default();
        let sel = transport::Selection {
            tcp: cfg.tcp,
            quic: cfg.quic,
            websocket: cfg.websocket,
            memory: cfg.memory,
            latency,
        };
        let mut swarm = SwarmBuilder::with_existing_identity(keypair.clone())
            .with_tokio()
            .with_other_transport(|key| transport::build(key, sel.clone()))
            .map_err(|e| anyhow::anyhow!("cannot build transports: {e}"))?
            .with_relay_client(libp2p::noise::Config::new, libp2p::yamux::Config::default)
            .map_err(|e| anyhow::anyhow!("cannot build the relay client: {e}"))?
            .with_bandwidth_metrics(&mut registry)
            .with_behaviour(|key, relay_client| {
                behaviour::build(key, &cfg, store, &mut registry, relay_client)
                    .map_err(Box::<dyn std::error::Error + Send + Sync>::from)
            })
            .map_err(|e| anyhow::anyhow!("cannot build behaviour: {e}"))?
            .with_swarm_config(|c| {
                c.with_idle_connection_timeout(cfg.idle_timeout)
                    // Optimistic protocol negotiation on new streams: the first request goes out
                    // with the protocol proposal instead of a round trip later (dial plus first
                    // request was 3 RTT over QUIC with V1, 2 RTT with V1Lazy; BENCHMARKS.md).
                    .with_substream_upgrade_protocol_override(
                        libp2p::core::upgrade::Version::V1Lazy,
                    )
            })
            .with_connection_timeout(Duration::from_secs(10))
            .build();
        let metrics = metrics::Metrics::new(&mut registry);

        let mut listeners = Vec::new();
        for addr in &cfg.listen {
            let id = swarm
                .listen_on(addr.clone())
                .map_err(|e| listen_error(addr, e))?;
            listeners.push(id);
        }
        // Wait until each listener reported an address or failed.
        let mut listen_addrs = Vec::new();
        let mut waiting: std::collections::HashSet<_> = listeners.into_iter().collect();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let mut early = Vec::new();
        while !waiting.is_empty() {
            use futures::StreamExt as _;
            let ev = tokio::time::timeout_at(deadline, swarm.select_next_some())
                .await
                .context("timed out waiting for listeners")?;
            match ev {
                SwarmEvent::NewListenAddr {
                    listener_id,
                    address,
                } => {
                    waiting.remove(&listener_id);
                    listen_addrs.push(address.clone());
                    early.push(SwarmEvent::NewListenAddr {
                        listener_id,
                        address,
                    });
                }
                SwarmEvent::ListenerClosed {
                    listener_id,
                    reason: Err(e),
                    addresses,
                } => {
                    waiting.remove(&listener_id);
                    anyhow::bail!("listener on {addresses:?} failed: {e}");
                }
                SwarmEvent::ListenerError { error, .. } => {
                    anyhow::bail!("listener failed: {error}")
                }
                _ => {}
            }
        }

        let (cmd_tx, cmd_rx) = mpsc::channel(256);
        let (sd_tx, sd_rx) = watch::channel(false);
        let timeout = cfg.kad.query_timeout + Duration::from_secs(5);
        let leaf_params = leaf::params(&cfg.leaf);
        let leaf_chan = mpsc::channel(4096);
        let ctx = flows::Ctx {
            commands: cmd_tx.clone(),
            db: db_handle.clone(),
            account: account.clone(),
            timeout: timeout * 2,
            leaf: leaf_params
                .clone()
                .map(|params| leaf::Handle::new(leaf_chan.0.clone(), params)),
            network: cfg.network.clone(),
        };
        let leaf_metrics = leaf::Metrics::new(&mut registry);
        let leaf_inputs = leaf_params.as_ref().map(|_| leaf_chan.0.clone());

        let registry = Arc::new(registry);
        let (api_addr, api_task, addr_file) = match api {
            None => (None, None, None),
            Some(a) => {
                let listener = tokio::net::TcpListener::bind(cfg.api)
                    .await
                    .with_context(|| format!("cannot bind control API on {}", cfg.api))?;
                let bound = listener.local_addr()?;
                if let Some(f) = &a.addr_file {
                    std::fs::write(f, bound.to_string())
                        .with_context(|| format!("cannot write {}", f.display()))?;
                }
                let state = api::ApiState {
                    ctx: ctx.clone(),
                    commands: cmd_tx.clone(),
                    token: a.token.into(),
                    registry: registry.clone(),
                    timeout,
                };
                let mut sd = sd_rx.clone();
                let task = tokio::spawn(async move {
                    let r = axum::serve(listener, api::router(state))
                        .with_graceful_shutdown(async move {
                            let _ = sd.changed().await;
                        })
                        .await;
                    if let Err(e) = r {
                        tracing::error!(error = %e, "control API stopped");
                    }
                });
                tracing::info!(addr = %bound, "control API");
                (Some(bound), Some(task), a.addr_file)
            }
        };

        let cfg_leaf_deadline = cfg.leaf.payment_deadline;
        let sd_rx_leaf = sd_rx.clone();
        let mut actor = swarm::Actor::new(
            swarm,
            cfg,
            keypair,
            account.clone(),
            hosted,
            mint,
            metrics,
            cmd_rx,
            sd_rx,
        );
        if leaf_inputs.is_some() {
            actor.heads = leaf_heads::HeadsState::load(&db_handle)?;
            actor.heads_subscribe();
        }
        actor.leaf_inputs = leaf_inputs;
        actor.bootstrap();
        let span = tracing::info_span!("node", id = %short(&peer_id));
        let task = tokio::spawn(tracing::Instrument::instrument(
            async move {
                // Replay the listen events consumed above so the actor sees them.
                for ev in early {
                    actor.on_event_public(ev);
                }
                Box::pin(actor.run()).await;
            },
            span,
        ));
        let leaf_task = match leaf_params {
            Some(params) => Some(
                leaf::start(
                    ctx.clone(),
                    params,
                    leaf_metrics,
                    cfg_leaf_deadline,
                    leaf_chan,
                    sd_rx_leaf,
                )
                .await?,
            ),
            None => None,
        };
        Ok(Node {
            leaf: leaf_task,
            peer_id,
            listen_addrs,
            api_addr,
            commands: cmd_tx,
            ctx,
            shutdown: sd_tx,
            actor: task,
            api: api_task,
            addr_file,
            timeout,
            registry,
        })
    }

    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Command) -> anyhow::Result<T> {
        let (tx, rx) = oneshot::channel();
        self.commands.send(make(tx)).await.context("node stopped")?;
        tokio::time::timeout(self.timeout, rx)
            .await
            .context("timed out")?
            .context("node stopped")
    }

    pub async fn status(&self) -> anyhow::Result<model::Status> {
        self.ask(Command::Status).await
    }

    pub async fn relays(&self) -> anyhow::Result<model::Relays> {
        self.ask(Command::Relays).await
    }

    pub async fn peers(&self) -> anyhow::Result<Vec<model::Peer>> {
        self.ask(Command::Peers).await
    }

    pub async fn provide(&self, key: &str) -> anyhow::Result<model::Provided> {
        let key = records::user_key(key)?;
        self.ask(|reply| Command::Provide { key, reply })
            .await?
            .map_err(anyhow::Error::msg)
    }

    pub async fn providers(&self, key: &str, limit: usize) -> anyhow::Result<model::Providers> {
        let key = records::user_key(key)?;
        self.ask(|reply| Command::Providers { key, limit, reply })
            .await?
            .map_err(anyhow::Error::msg)
    }

    pub async fn get_record(&self, key: &str) -> anyhow::Result<model::RecordReply> {
        let key = records::user_key(key)?;
        self.ask(|reply| Command::GetRecord { key, reply })
            .await?
            .map_err(anyhow::Error::msg)
    }

    pub async fn dial(&self, addr: Multiaddr) -> anyhow::Result<()> {
        self.ask(|reply| Command::Dial { addr, reply })
            .await?
            .map_err(anyhow::Error::msg)
    }

    /// The node's metrics in Prometheus text, as `/metrics` serves them.
    pub fn metrics_text(&self) -> String {
        let mut buf = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut buf, &self.registry);
        buf
    }

    /// Mint notes: observe a statement, status, proofs (see [`flows::Ctx`]).
    pub fn mint(&self) -> &flows::Ctx {
        &self.ctx
    }

    /// Leaf payments: account, pay, history, receipt (see [`flows::Ctx`]).
    pub fn leaf(&self) -> &flows::Ctx {
        &self.ctx
    }

    /// The human's account id (the ed25519 public key of the account key).
    pub fn account_id(&self) -> [u8; 32] {
        self.ctx.account.verifying_key().to_bytes()
    }

    /// Profile and location operations (see [`flows::Ctx`]).
    pub fn profiles(&self) -> &flows::Ctx {
        &self.ctx
    }

    /// Stops the node: the actor flushes the database, the API stops, `api.addr` is removed.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.actor.await;
        if let Some(l) = self.leaf {
            // It stops between batches (see `leaf::Service::run`).
            let _ = l.await;
        }
        if let Some(a) = self.api {
            let _ = a.await;
        }
        if let Some(f) = self.addr_file {
            let _ = std::fs::remove_file(f);
        }
    }
}

/// The last 8 characters of a peer id, for log spans.
pub fn short(p: &PeerId) -> String {
    let s = p.to_string();
    s.get(s.len().saturating_sub(8)..).unwrap_or(&s).to_owned()
}
