//! `leafnet`: the node binary. `leafnet node run` runs a node in the foreground; every other
//! command is a client of a running node's control API (see `client.rs`) and takes `--json`.
//!
//! Errors print as one line on stderr; the exit code is 1, or 2 when no node is running.

#![allow(clippy::print_stderr)]

/// `println!` that ends the program quietly when stdout is closed (`leafnet status | head`)
/// instead of panicking, as a Unix tool should.
macro_rules! outln {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let mut out = std::io::stdout().lock();
        if let Err(e) = writeln!(out, $($t)*) {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                std::process::exit(0);
            }
        }
    }};
}

mod leaf_cli;
mod mint_cli;
mod object_cli;

use std::{path::PathBuf, process::ExitCode};

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use leafnet_config::{Config, Overrides};
use leafnet_node::{ApiOptions, Node, NodeOptions, client::Client, datadir::DataDir, model};

#[derive(Parser, Debug)]
#[command(
    name = "leafnet",
    version,
    about = "leafnet: a peer-to-peer node for finding people, reaching devices and paying in leaf"
)]
struct Cli {
    /// Data directory (key, config, database, API token).
    #[arg(long, global = true, env = "LEAFNET_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run or manage the node itself.
    #[command(subcommand)]
    Node(NodeCmd),
    /// Show or write the configuration.
    #[command(subcommand)]
    Config(ConfigCmd),
    /// This node's identity, addresses, reachability, peers and storage.
    Status,
    /// Connected peers with address, transport, direction and round-trip time.
    Peers,
    /// Dial a peer by multiaddr.
    Dial { addr: String },
    /// Reachability and relays: candidates with probe times, the chosen ones, reservations.
    Relays,
    /// The DHT: provider records and records.
    #[command(subcommand)]
    Dht(DhtCmd),
    /// Profiles: publish this node's owner profile, look profiles up by key or by place.
    #[command(subcommand)]
    Profile(ProfileCmd),
    /// Nodes by place.
    #[command(subcommand)]
    Nodes(NodesCmd),
    /// Compare notes on mint files: sign and observe issuer statements, find equivocation.
    #[command(subcommand)]
    Mint(mint_cli::MintCmd),
    /// Your leaf account: id, balance, membership; `account id` works without a node;
    /// `account close` closes it at zero.
    Account {
        #[command(subcommand)]
        cmd: Option<leaf_cli::AccountCmd>,
    },
    /// Your leaf balance.
    Balance,
    /// Certify ACCOUNT as a human you know (you must be a member), or with --object as one of
    /// your objects (its income comes to you).
    Certify {
        account: String,
        #[arg(long)]
        object: bool,
    },
    /// The certifications of ACCOUNT and whether it is a member.
    Certs { account: String },
    /// Objects that sell access: run one, show its id, buy from one.
    #[command(subcommand)]
    Object(object_cli::ObjectCmd),
    /// Pay AMOUNT leaf (at most 3 decimals) to ACCOUNT.
    #[command(allow_negative_numbers = true)]
    Pay {
        /// The payee's account id (64 hex).
        account: String,
        /// In leaf: 12, 0.5, 1.250.
        amount: String,
        /// A short text for the payee (140 bytes).
        #[arg(long)]
        memo: Option<String>,
        /// Pay a signed invoice (from an object): its hash becomes the memo.
        #[arg(long)]
        invoice: Option<PathBuf>,
    },
    /// Your account's chain: payments out and in, with the balance after each.
    History,
    /// One transfer's cheque and decision; --out writes the receipt an object checks.
    Receipt {
        /// The transfer id (64 hex).
        id: String,
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
enum ProfileCmd {
    /// Publish or update this node's owner profile.
    Set {
        #[arg(long)]
        name: String,
        /// person, object or service (fixed once published).
        #[arg(long)]
        kind: Option<String>,
        /// LAT,LON in degrees.
        #[arg(long, allow_hyphen_values = true)]
        location: Option<String>,
        /// An application service offered (repeatable), e.g. chat, leaf.
        #[arg(long = "service")]
        services: Vec<String>,
        /// key=value data (repeatable; 512 bytes in all).
        #[arg(long = "extra")]
        extra: Vec<String>,
    },
    /// Fetch and verify the profile of an account id from the DHT.
    Get { account: String },
    /// Profiles inside a circle, nearest first, with their distance.
    #[command(allow_negative_numbers = true)]
    Near {
        lat: f64,
        lon: f64,
        /// Metres, or with a unit: 500m, 2km, 2.5km.
        #[arg(long)]
        radius: String,
        /// Glob over the name (* and ?), case-insensitive.
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        kind: Option<String>,
        #[arg(long)]
        service: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// Host someone else's signed profile (raw bytes in FILE) on this node.
    Host { file: PathBuf },
}

#[derive(Subcommand, Debug)]
enum NodesCmd {
    /// Nodes by distance of their configured location (--location / node.location).
    #[command(allow_negative_numbers = true)]
    Near {
        lat: f64,
        lon: f64,
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
}

/// Parses `500`, `500m`, `2km`, `2.5 km` into metres.
fn parse_radius(s: &str) -> anyhow::Result<u32> {
    let t = s.trim().to_lowercase();
    let (num, mult) = if let Some(n) = t.strip_suffix("km") {
        (n, 1000.0)
    } else if let Some(n) = t.strip_suffix('m') {
        (n, 1.0)
    } else {
        (t.as_str(), 1.0)
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| anyhow::anyhow!("--radius '{s}' is not a distance (e.g. 500m, 2km)"))?;
    let m = v * mult;
    if !m.is_finite() || m < 1.0 || m > f64::from(leafnet_geo::MAX_RADIUS_M) {
        anyhow::bail!(
            "--radius '{s}' must be 1 m to {} km",
            leafnet_geo::MAX_RADIUS_M / 1000
        );
    }
    Ok(m.round() as u32)
}

#[derive(Subcommand, Debug)]
enum NodeCmd {
    /// Run a node in the foreground until SIGINT or SIGTERM.
    Run(Flags),
}

#[derive(Subcommand, Debug)]
enum ConfigCmd {
    /// Print the effective configuration (file, then environment, then flags).
    Show(Flags),
    /// Write leafnet.toml with the defaults and the given flags.
    Init {
        #[command(flatten)]
        flags: Flags,
        /// Replace an existing leafnet.toml.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Subcommand, Debug)]
enum DhtCmd {
    /// Announce this node as a provider of KEY (a bare name means /leafnet/dht/NAME).
    Provide { key: String },
    /// Find the providers of KEY.
    Providers {
        key: String,
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// Get and verify the record under KEY (e.g. /leafnet/node/<peer id>).
    Get { key: String },
}

/// Settings that override leafnet.toml for this run.
#[derive(Args, Debug, Default)]
struct Flags {
    /// Network name (part of every protocol id).
    #[arg(long, env = "LEAFNET_NETWORK")]
    network: Option<String>,
    /// A local test network: loopback addresses count as external, Kademlia serves at once.
    #[arg(long, env = "LEAFNET_LOCAL")]
    local: Option<bool>,
    /// Listen multiaddr (repeatable; replaces p2p.listen).
    #[arg(long, env = "LEAFNET_LISTEN", value_delimiter = ',')]
    listen: Vec<String>,
    /// Bootstrap peer multiaddr ending in /p2p/<id> (repeatable; added to p2p.bootstrap).
    #[arg(long, env = "LEAFNET_BOOTSTRAP", value_delimiter = ',')]
    bootstrap: Vec<String>,
    /// External address to announce (repeatable; added to p2p.external).
    #[arg(long, env = "LEAFNET_EXTERNAL", value_delimiter = ',')]
    external: Vec<String>,
    /// Transport to enable: tcp, quic, websocket, memory (repeatable; replaces p2p.transports).
    #[arg(long = "transport", env = "LEAFNET_TRANSPORTS", value_delimiter = ',')]
    transports: Vec<String>,
    /// Control API address (port 0 picks a free port).
    #[arg(long, env = "LEAFNET_API")]
    api: Option<String>,
    /// Allow the control API on a non-loopback address.
    #[arg(long)]
    api_allow_non_loopback: bool,
    /// Kademlia mode: auto, server or client.
    #[arg(long, env = "LEAFNET_KAD_MODE")]
    kad_mode: Option<String>,
    /// This node's location, LAT,LON in degrees (for "nodes near").
    #[arg(long, env = "LEAFNET_LOCATION", allow_hyphen_values = true)]
    location: Option<String>,
    /// Reachability: auto (AutoNAT decides), public or private.
    #[arg(long, env = "LEAFNET_REACHABILITY")]
    reachability: Option<String>,
}

impl Flags {
    fn overrides(&self) -> Overrides {
        let mut o = Overrides::default();
        o.network.clone_from(&self.network);
        o.local = self.local;
        o.listen.clone_from(&self.listen);
        o.bootstrap.clone_from(&self.bootstrap);
        o.external.clone_from(&self.external);
        o.transports.clone_from(&self.transports);
        o.api.clone_from(&self.api);
        o.allow_non_loopback_api = self.api_allow_non_loopback.then_some(true);
        o.kad_mode.clone_from(&self.kad_mode);
        o.location.clone_from(&self.location);
        o.reachability.clone_from(&self.reachability);
        o
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_level = if matches!(cli.cmd, Cmd::Node(_)) {
        "info"
    } else {
        "warn"
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    use std::io::IsTerminal as _;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match rt.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let line = format!("{e:#}").replace('\n', " ");
            eprintln!("error: {line}");
            if e.downcast_ref::<leafnet_node::client::NoNode>().is_some() {
                ExitCode::from(2)
            } else {
                ExitCode::from(1)
            }
        }
    }
}

fn effective(dd: &DataDir, flags: &Flags) -> anyhow::Result<Config> {
    let mut cfg = if dd.config().exists() {
        Config::load(&dd.config())?
    } else {
        Config::default()
    };
    cfg.apply(&flags.overrides());
    Ok(cfg)
}

fn print_json<T: serde::Serialize>(v: &T) -> anyhow::Result<()> {
    outln!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let dd = DataDir::new(cli.data_dir.clone().unwrap_or_else(DataDir::default_root));
    match cli.cmd {
        Cmd::Node(NodeCmd::Run(flags)) => run_node(&dd, &flags).await,
        Cmd::Mint(cmd) => mint_cli::run(cmd, &dd, cli.json).await,
        Cmd::Account { cmd } => leaf_cli::account(cmd, &dd, cli.json).await,
        Cmd::Balance => leaf_cli::balance(&dd, cli.json).await,
        Cmd::Certify { account, object } => leaf_cli::certify(&dd, cli.json, account, object).await,
        Cmd::Certs { account } => leaf_cli::certs(&dd, cli.json, account).await,
        Cmd::Object(cmd) => object_cli::run(cmd, &dd, cli.json).await,
        Cmd::Pay {
            account,
            amount,
            memo,
            invoice,
        } => leaf_cli::pay(&dd, cli.json, account, amount, memo, invoice).await,
        Cmd::History => leaf_cli::history(&dd, cli.json).await,
        Cmd::Receipt { id, out } => leaf_cli::receipt(&dd, cli.json, id, out).await,
        Cmd::Config(ConfigCmd::Show(flags)) => {
            let cfg = effective(&dd, &flags)?;
            cfg.validate()?;
            if cli.json {
                print_json(&cfg)
            } else {
                outln!("{}", toml::to_string_pretty(&cfg)?.trim_end());
                Ok(())
            }
        }
        Cmd::Config(ConfigCmd::Init { flags, force }) => {
            dd.ensure()?;
            let mut cfg = Config::default();
            cfg.apply(&flags.overrides());
            cfg.validate()?;
            if dd.config().exists() && !force {
                anyhow::bail!(
                    "{} exists; pass --force to replace it",
                    dd.config().display()
                );
            }
            std::fs::write(dd.config(), cfg.to_toml())
                .with_context(|| format!("cannot write {}", dd.config().display()))?;
            if cli.json {
                print_json(&serde_json::json!({ "written": dd.config() }))
            } else {
                outln!("wrote {}", dd.config().display());
                Ok(())
            }
        }
        Cmd::Status => {
            let s = Client::for_data_dir(&dd)?.status().await?;
            if cli.json {
                print_json(&s)
            } else {
                print_status(&s)
            }
        }
        Cmd::Peers => {
            let p: Vec<model::Peer> = Client::for_data_dir(&dd)?.get("/v1/peers", &[]).await?;
            if cli.json {
                print_json(&p)
            } else {
                print_peers(&p)
            }
        }
        Cmd::Relays => {
            let r: model::Relays = Client::for_data_dir(&dd)?.get("/v1/relays", &[]).await?;
            if cli.json {
                return print_json(&r);
            }
            outln!(
                "reachability {} (autonat: {} confirmed, {} failed){}",
                r.reachability,
                r.autonat_confirmed,
                r.autonat_failed,
                if r.relay_server {
                    "; serving as a relay"
                } else {
                    ""
                }
            );
            for a in &r.circuit_addrs {
                outln!("circuit address {a}");
            }
            outln!(
                "hole punches: {} direct, {} failed",
                r.hole_punches_ok,
                r.hole_punches_failed
            );
            outln!(
                "{:<54} {:<10} {:>9} {:>9}  {:<6} samples (ms)",
                "candidate",
                "state",
                "median",
                "jitter",
                "chosen"
            );
            for c in &r.candidates {
                let f = |v: Option<f64>| v.map_or("-".into(), |x| format!("{x:.2}"));
                outln!(
                    "{:<54} {:<10} {:>9} {:>9}  {:<6} {:?}",
                    c.peer_id,
                    c.state,
                    f(c.median_ms),
                    f(c.jitter_ms),
                    if c.chosen { "yes" } else { "" },
                    c.probe_ms
                );
            }
            Ok(())
        }
        Cmd::Dial { addr } => {
            let _: serde_json::Value = Client::for_data_dir(&dd)?
                .post("/v1/dial", &serde_json::json!({ "addr": addr }))
                .await?;
            if cli.json {
                print_json(&serde_json::json!({ "dialed": addr }))
            } else {
                outln!("connected to {addr}");
                Ok(())
            }
        }
        Cmd::Dht(DhtCmd::Provide { key }) => {
            let r: model::Provided = Client::for_data_dir(&dd)?
                .post("/v1/dht/provide", &model::ProvideRequest { key })
                .await?;
            if cli.json {
                print_json(&r)
            } else {
                outln!(
                    "providing {} ({} in {:.1} ms)",
                    r.key,
                    if r.announced {
                        "announced"
                    } else {
                        "stored locally, announcement will be retried"
                    },
                    r.elapsed_ms
                );
                Ok(())
            }
        }
        Cmd::Dht(DhtCmd::Providers { key, limit }) => {
            let r: model::Providers = Client::for_data_dir(&dd)?
                .get(
                    "/v1/dht/providers",
                    &[("key", key), ("limit", limit.to_string())],
                )
                .await?;
            if cli.json {
                print_json(&r)
            } else {
                outln!(
                    "{} provider(s) of {} in {:.1} ms",
                    r.providers.len(),
                    r.key,
                    r.elapsed_ms
                );
                for p in &r.providers {
                    outln!("  {}  {}", p.peer_id, p.addrs.join(" "));
                }
                Ok(())
            }
        }
        Cmd::Profile(ProfileCmd::Set {
            name,
            kind,
            location,
            services,
            extra,
        }) => {
            let r: model::Published = Client::for_data_dir(&dd)?
                .post(
                    "/v1/profile",
                    &model::SetProfile {
                        name,
                        kind,
                        location,
                        services,
                        extra,
                    },
                )
                .await?;
            if cli.json {
                print_json(&r)
            } else {
                outln!(
                    "published profile of {} (seq {}){}",
                    r.profile.account_id,
                    r.profile.seq,
                    if r.stored_remotely {
                        ""
                    } else {
                        "; no peer stored it yet, it will be republished"
                    }
                );
                print_profile(&r.profile);
                Ok(())
            }
        }
        Cmd::Profile(ProfileCmd::Get { account }) => {
            let p: model::Profile = Client::for_data_dir(&dd)?
                .get(&format!("/v1/profile/{account}"), &[])
                .await?;
            if cli.json {
                print_json(&p)
            } else {
                print_profile(&p);
                Ok(())
            }
        }
        Cmd::Profile(ProfileCmd::Near {
            lat,
            lon,
            radius,
            name,
            kind,
            service,
            limit,
        }) => {
            let radius_m = parse_radius(&radius)?;
            let mut q = vec![
                ("lat", lat.to_string()),
                ("lon", lon.to_string()),
                ("radius_m", radius_m.to_string()),
                ("limit", limit.to_string()),
            ];
            q.extend(name.map(|v| ("name", v)));
            q.extend(kind.map(|v| ("kind", v)));
            q.extend(service.map(|v| ("service", v)));
            let r: model::Near = Client::for_data_dir(&dd)?
                .get("/v1/profiles/near", &q)
                .await?;
            if cli.json {
                print_json(&r)
            } else {
                outln!(
                    "{} profile(s) within {} m of {},{} ({} cells, {} nodes asked, {:.1} ms)",
                    r.results.len(),
                    r.radius_m,
                    r.centre[0],
                    r.centre[1],
                    r.cells,
                    r.nodes_contacted,
                    r.elapsed_ms
                );
                for x in &r.results {
                    outln!(
                        "  {:>12.1} m  {}  {} ({})",
                        x.distance_m,
                        x.profile.account_id,
                        x.profile.name,
                        x.profile.kind
                    );
                }
                Ok(())
            }
        }
        Cmd::Profile(ProfileCmd::Host { file }) => {
            let bytes =
                std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let r: model::Published = Client::for_data_dir(&dd)?
                .post(
                    "/v1/profiles/host",
                    &model::HostProfile {
                        signed_hex: hex::encode(bytes),
                    },
                )
                .await?;
            if cli.json {
                print_json(&r)
            } else {
                outln!(
                    "hosting the profile of {} (seq {})",
                    r.profile.account_id,
                    r.profile.seq
                );
                Ok(())
            }
        }
        Cmd::Nodes(NodesCmd::Near { lat, lon, limit }) => {
            let q = [
                ("lat", lat.to_string()),
                ("lon", lon.to_string()),
                ("limit", limit.to_string()),
            ];
            let r: model::NodesNear = Client::for_data_dir(&dd)?.get("/v1/nodes/near", &q).await?;
            if cli.json {
                print_json(&r)
            } else {
                outln!(
                    "{} node(s) within {} m ({} asked, {:.1} ms)",
                    r.results.len(),
                    r.radius_m,
                    r.nodes_contacted,
                    r.elapsed_ms
                );
                for n in &r.results {
                    outln!(
                        "  {:>12.1} m  {}  {:.6},{:.6}",
                        n.distance_m,
                        n.peer_id,
                        n.location[0],
                        n.location[1]
                    );
                }
                Ok(())
            }
        }
        Cmd::Dht(DhtCmd::Get { key }) => {
            let r: model::RecordReply = Client::for_data_dir(&dd)?
                .get("/v1/dht/record", &[("key", key)])
                .await?;
            if cli.json {
                print_json(&r)
            } else {
                outln!(
                    "{} seq {} ({:.1} ms)\n{}",
                    r.key,
                    r.seq,
                    r.elapsed_ms,
                    serde_json::to_string_pretty(&r.value)?
                );
                Ok(())
            }
        }
    }
}

async fn run_node(dd: &DataDir, flags: &Flags) -> anyhow::Result<()> {
    dd.ensure()?;
    if dd.ensure_config(&Config::default().to_toml())? {
        tracing::info!(path = %dd.config().display(), "wrote default configuration");
    }
    let cfg = effective(dd, flags)?.validate()?;
    let keypair = dd.load_or_create_key()?;
    let account = dd.load_or_create_account()?;
    let token = dd.load_or_create_token()?;
    let node = Node::start(NodeOptions {
        config: cfg,
        keypair,
        account,
        db_path: dd.db(),
        api: Some(ApiOptions {
            token,
            addr_file: Some(dd.api_addr()),
        }),
        latency: None,
    })
    .await?;
    tracing::info!(
        peer_id = %node.peer_id,
        listen = ?node.listen_addrs.iter().map(ToString::to_string).collect::<Vec<_>>(),
        api = ?node.api_addr,
        "node running; stop with Ctrl-C"
    );
    wait_for_signal().await;
    tracing::info!("stopping");
    node.shutdown().await;
    tracing::info!("stopped");
    Ok(())
}

pub(crate) async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn print_status(s: &model::Status) -> anyhow::Result<()> {
    outln!("peer id         {}", s.peer_id);
    outln!("account id      {}", s.account_id);
    if let Some([lat, lon]) = s.location {
        outln!("location        {lat:.6},{lon:.6}");
    }
    outln!("hosted profiles {}", s.hosted_profiles);
    outln!("network         {}", s.network);
    outln!("version         {}", s.version);
    outln!(
        "reachability    {} (kademlia {})",
        s.reachability,
        s.kad_mode
    );
    outln!("connected peers {}", s.connected_peers);
    outln!("routing table   {} peers", s.routing_table_size);
    outln!("banned peers    {}", s.banned_peers);
    outln!(
        "mint            {} item(s), {} topic peer(s)",
        s.mint_items,
        s.mint_topic_peers
    );
    outln!("uptime          {} s", s.uptime_secs);
    outln!(
        "listen          {}",
        s.listen_addrs.join("\n                ")
    );
    outln!(
        "external        {}",
        s.external_addrs.join("\n                ")
    );
    outln!(
        "storage         {} ({} bytes): {} records, {} provider keys, {} provided",
        s.storage.path,
        s.storage.file_bytes,
        s.storage.records,
        s.storage.provider_keys,
        s.storage.provided_keys
    );
    Ok(())
}

fn print_profile(p: &model::Profile) {
    outln!("account   {}", p.account_id);
    outln!("name      {} ({})", p.name, p.kind);
    if let Some([lat, lon]) = p.location {
        outln!("location  {lat:.6},{lon:.6}");
    }
    outln!("services  {}", p.services.join(", "));
    for (k, v) in &p.extra {
        outln!("extra     {k}={v}");
    }
    outln!("host      {} {}", p.host_peer_id, p.host_addrs.join(" "));
    outln!("seq       {} (expires at {} ms)", p.seq, p.expires_at_ms);
}

fn print_peers(p: &[model::Peer]) -> anyhow::Result<()> {
    outln!(
        "{:<54} {:<9} {:<8} {:<8} {:>9}  address",
        "peer",
        "transport",
        "path",
        "dir",
        "rtt ms"
    );
    for x in p {
        let rtt = x.rtt_ms.map_or("-".into(), |r| format!("{r:.2}"));
        outln!(
            "{:<54} {:<9} {:<8} {:<8} {:>9}  {}",
            x.peer_id,
            x.transport,
            x.path,
            x.direction,
            rtt,
            x.address
        );
    }
    Ok(())
}
