//! leaf payments on the node (DESIGN §4.5): the node's wallet (the human's account key), the
//! `/leafnet/<net>/leaf/1` protocol and group commit.
//!
//! **One task owns the wallet** ([`Service`]). It takes inputs (the user's payments, requests
//! from peers, answers to its own requests, ticks) in batches: everything queued is run through
//! the sans-IO [`Wallet`], every [`Action::Persist`] of the batch goes into **one** redb
//! transaction, and only after that commit returns are the batch's answers sent and its
//! outcomes acknowledged. While one batch commits the next one queues, so under load many
//! payments share one fsync (group commit), and nothing leaves the node before it is durable.
//!
//! Durability per side: the payer's cheque and the payee's decision are committed with
//! `Durability::Immediate` before they are sent. The payer's filing of a decision it received
//! is committed with `Durability::None` (made durable by the next durable commit or the
//! periodic flush): if it is lost in a crash, the restarted wallet sends the cheque again and
//! the payee answers its stored decision (idempotent by transfer id), so the payment is backed
//! by the payee's durable record. One fsync per payment per side.
//!
//! **Protocol.** Request-response, CBOR, at most [`MAX_FRAME`] bytes each way. Every request
//! carries the sender's [`Params::params_hash`]: a node on other parameters answers
//! [`Response::WrongParams`] and nothing is signed. `Hello` asks a node whether it holds an
//! account (the payer's pre-flight: unknown, closed or incompatible payees are refused before
//! anything is written); `Message` carries a wallet [`Message`] (a cheque or an abort request)
//! and is answered with the payee's decision record.
//!
//! The payee's node is found through the payee's signed profile (its host peer and
//! addresses), QUIC addresses first when this node has QUIC.

use std::{
    collections::{HashMap, HashSet},
    time::{Duration, Instant},
};

use anyhow::Context as _;
use ed25519_dalek::SigningKey;
use leafnet_leaf::{
    Action, Body, Changes, Decision, Event, LeafError, Memo, Message, OutState, Outcome, Params,
    SignedEntry, TransferId, Wallet,
};
use leafnet_storage::Database;
use libp2p::{Multiaddr, PeerId, request_response};
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;
use tokio::sync::{mpsc, oneshot};

use crate::{
    flows::{BadInput, NotFound},
    model,
    swarm::{Command, now_ms},
};

/// The largest request or response, in bytes.
pub const MAX_FRAME: usize = leafnet_leaf::wallet::MAX_MESSAGE + 256;
/// The most inputs handled (and committed) together.
const MAX_BATCH: usize = 1024;
/// How often pending cheques are checked against their deadline.
const TICK: Duration = Duration::from_secs(1);
/// How often unresolved transfers are sent again.
const RETRY_EVERY: Duration = Duration::from_secs(10);
/// Requests parked per payer while its membership is looked up (more are answered `Busy`).
const MAX_PARKED: usize = 64;
/// How long `pay` waits for the payee's decision before answering "pending".
pub const PAY_WAIT: Duration = Duration::from_secs(20);

/// `/leafnet/<network>/leaf/1`.
pub fn protocol(network: &str) -> String {
    format!("/leafnet/{network}/leaf/1")
}

/// A request of the leaf protocol.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// Does this node hold `account`, open? (The payer's pre-flight.)
    Hello {
        #[serde(with = "serde_bytes")]
        params: [u8; 32],
        #[serde(with = "serde_bytes")]
        account: [u8; 32],
    },
    /// A wallet [`Message`] (cheque or abort request), canonical CBOR.
    Message {
        #[serde(with = "serde_bytes")]
        params: [u8; 32],
        message: ByteBuf,
    },
}

/// A response of the leaf protocol.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// The account is held here; whether it is open and its balance.
    Hello { open: bool, balance: i64 },
    /// The payee's answer: a wallet [`Message::Decision`], canonical CBOR.
    Message(ByteBuf),
    /// This node runs other leaf parameters.
    WrongParams {
        #[serde(with = "serde_bytes")]
        ours: [u8; 32],
    },
    /// This node does not hold the account, or has payments off.
    NotHere,
    /// The request was refused (malformed, not addressed here, …).
    Refused(String),
    /// Too many requests queued: try again.
    Busy,
}

/// A parsed payment request from the user.
#[derive(Debug, Clone)]
pub struct PayRequest {
    pub payee: [u8; 32],
    pub amount: u64,
    pub memo: Memo,
}

/// What the service is asked.
pub(crate) enum Input {
    /// A payment, pre-flighted; `route` is the payee's node. `issued` is answered once the
    /// cheque is durable (or with why it was refused), `done` once the payee decided.
    Pay {
        req: PayRequest,
        route: Route,
        issued: oneshot::Sender<Result<TransferId, String>>,
        done: oneshot::Sender<model::Payment>,
    },
    /// A request from a peer; answer with [`Command::LeafRespond`] under `id`.
    Inbound {
        peer: PeerId,
        id: u64,
        request: Request,
    },
    /// The answer to a request this service sent to `to` (an account).
    Answer {
        to: [u8; 32],
        result: Result<Response, String>,
    },
    /// The payee's node was found (for a retry after a restart).
    Routed {
        account: [u8; 32],
        route: Route,
    },
    /// The payee's node was not found (the next retry looks again).
    Unrouted([u8; 32]),
    Close(oneshot::Sender<Result<(), String>>),
    Account(oneshot::Sender<AccountView>),
    /// Members learned elsewhere (resolution of certifications): cache them.
    Members(Vec<([u8; 32], bool)>),
    /// An equivocation proof against this account was verified: refuse it from now on.
    Equivocator([u8; 32]),
}

/// Where an account's node is.
#[derive(Debug, Clone)]
pub struct Route {
    pub peer: PeerId,
    pub addrs: Vec<Multiaddr>,
}

/// A snapshot of the wallet for the read-only commands.
#[derive(Debug, Clone)]
pub(crate) struct AccountView {
    pub account: [u8; 32],
    pub balance: i64,
    pub reserved: u64,
    pub closed: bool,
    pub state: leafnet_leaf::WalletState,
    pub params: Params,
    pub equivocators: Vec<[u8; 32]>,
}

/// The network parameters of a validated config, or `None` when payments are off (no genesis
/// members configured).
pub fn params(cfg: &leafnet_config::LeafValid) -> Option<Params> {
    if cfg.genesis.is_empty() {
        return None;
    }
    let p = Params {
        max_balance: cfg.max_balance,
        certifications_needed: cfg.certifications_needed,
        genesis: cfg.genesis.clone(),
        certification_validity_ms: u64::try_from(cfg.certification_validity.as_millis())
            .unwrap_or(u64::MAX),
    };
    p.check().ok().map(|()| p)
}

/// The handle the rest of the node uses.
#[derive(Clone, Debug)]
pub struct Handle {
    pub(crate) inputs: mpsc::Sender<Input>,
    pub(crate) params: Params,
    pub(crate) cache: std::sync::Arc<std::sync::Mutex<Cache>>,
}

/// What `pay` learned recently, so a stream of payments to one payee costs one DHT lookup:
/// payees' nodes and membership answers, each kept for [`CACHE_FOR`].
#[derive(Debug, Default)]
pub(crate) struct Cache {
    routes: HashMap<[u8; 32], (Instant, Route)>,
    members: HashMap<[u8; 32], (Instant, bool)>,
}

/// How long a cached route or membership answer is used.
const CACHE_FOR: Duration = Duration::from_secs(60);

impl Handle {
    pub(crate) fn new(inputs: mpsc::Sender<Input>, params: Params) -> Self {
        Handle {
            inputs,
            params,
            cache: Default::default(),
        }
    }

    fn cached_route(&self, a: &[u8; 32]) -> Option<Route> {
        let c = self.cache.lock().ok()?;
        c.routes
            .get(a)
            .filter(|(at, _)| at.elapsed() < CACHE_FOR)
            .map(|(_, r)| r.clone())
    }

    fn cached_member(&self, a: &[u8; 32]) -> Option<bool> {
        let c = self.cache.lock().ok()?;
        c.members
            .get(a)
            .filter(|(at, _)| at.elapsed() < CACHE_FOR)
            .map(|(_, m)| *m)
    }

    fn remember(&self, a: [u8; 32], route: Option<Route>, member: Option<bool>) {
        if let Ok(mut c) = self.cache.lock() {
            if c.routes.len() > 10_000 {
                c.routes.clear();
                c.members.clear();
            }
            if let Some(r) = route {
                c.routes.insert(a, (Instant::now(), r));
            }
            if let Some(m) = member {
                c.members.insert(a, (Instant::now(), m));
            }
        }
    }

    fn forget_route(&self, a: &[u8; 32]) {
        if let Ok(mut c) = self.cache.lock() {
            c.routes.remove(a);
        }
    }
}

/// What the service executes after a batch's commit, in order.
enum Effect {
    Respond { id: u64, response: Response },
    Send { to: [u8; 32], message: Message },
    Outcome(Outcome),
    Reply(Box<dyn FnOnce() + Send>),
}

/// The wallet task.
pub(crate) struct Service {
    wallet: Wallet,
    params: Params,
    params_hash: [u8; 32],
    db: Database,
    commands: mpsc::Sender<Command>,
    inputs_tx: mpsc::Sender<Input>,
    ctx: crate::flows::Ctx,
    routes: HashMap<[u8; 32], Route>,
    /// Routes being looked up, so one lookup per account runs at a time.
    routing: HashSet<[u8; 32]>,
    /// Requests from payers whose membership is being looked up.
    parked: HashMap<[u8; 32], Vec<(PeerId, u64, Request)>>,
    /// The users waiting for the payee's decision on a transfer.
    waiting: HashMap<TransferId, Vec<oneshot::Sender<model::Payment>>>,
    /// Membership answers (genesis members are always in); a "not a member" answer is looked
    /// up again after [`CACHE_FOR`], since certifications arrive.
    members: HashMap<[u8; 32], (Instant, bool)>,
    equivocators: HashSet<[u8; 32]>,
    metrics: Metrics,
    /// How long a payee has to accept.
    deadline_ms: u64,
}

/// Counters of the service (in `/metrics`).
#[derive(Clone, Debug)]
pub(crate) struct Metrics {
    pub durable_commits: prometheus_client::metrics::counter::Counter,
    pub lazy_commits: prometheus_client::metrics::counter::Counter,
    pub batch_inputs: prometheus_client::metrics::histogram::Histogram,
    pub payments: prometheus_client::metrics::family::Family<
        Vec<(String, String)>,
        prometheus_client::metrics::counter::Counter,
    >,
}

impl Metrics {
    pub(crate) fn new(r: &mut prometheus_client::registry::Registry) -> Self {
        let m = Metrics {
            durable_commits: Default::default(),
            lazy_commits: Default::default(),
            batch_inputs: prometheus_client::metrics::histogram::Histogram::new(
                prometheus_client::metrics::histogram::exponential_buckets(1.0, 2.0, 12),
            ),
            payments: Default::default(),
        };
        r.register(
            "leafnet_leaf_durable_commits",
            "Ledger commits with fsync (Durability::Immediate)",
            m.durable_commits.clone(),
        );
        r.register(
            "leafnet_leaf_lazy_commits",
            "Ledger commits made durable by a later one (filing a received decision)",
            m.lazy_commits.clone(),
        );
        r.register(
            "leafnet_leaf_batch_inputs",
            "Inputs handled per ledger batch (group commit)",
            m.batch_inputs.clone(),
        );
        r.register(
            "leafnet_leaf_outcomes",
            "Payment outcomes by kind (issued, paid, refused, aborted, received)",
            m.payments.clone(),
        );
        m
    }

    fn outcome(&self, kind: &str) {
        self.payments
            .get_or_create(&vec![("outcome".to_owned(), kind.to_owned())])
            .inc();
    }
}

/// Opens (or creates) the wallet of `key` and starts the service. Pending transfers are sent
/// again as soon as their payees' nodes are found.
pub(crate) async fn start(
    ctx: crate::flows::Ctx,
    params: Params,
    metrics: Metrics,
    deadline: Duration,
    inputs: (mpsc::Sender<Input>, mpsc::Receiver<Input>),
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let deadline_ms = u64::try_from(deadline.as_millis()).unwrap_or(u64::MAX);
    let key: SigningKey = ctx.account.clone();
    let db: Database = ctx.db.clone();
    let commands = ctx.commands.clone();
    let account = key.verifying_key().to_bytes();
    let db2 = db.clone();
    let stored = tokio::task::spawn_blocking(move || leafnet_storage::leaf::load(&db2, &account))
        .await
        .context("loading the ledger")??;
    let (wallet, actions) = match stored {
        Some(state) => Wallet::restart(key, params.clone(), state).map_err(|e| {
            anyhow::anyhow!(
                "the ledger of account {} does not verify ({e}); it was opened under other \
                 leaf parameters or is damaged",
                hex::encode(account)
            )
        })?,
        None => Wallet::create(key, params.clone()).context("creating the account")?,
    };
    let equivocators = leafnet_storage::leaf::equivocators(&db)?
        .into_iter()
        .map(|(a, _)| a)
        .collect();
    let members = params
        .genesis
        .iter()
        .map(|g| (*g, (Instant::now(), true)))
        .collect();
    let mut svc = Service {
        wallet,
        params_hash: params.params_hash(),
        params,
        db,
        commands,
        inputs_tx: inputs.0,
        ctx,
        routes: HashMap::new(),
        routing: HashSet::new(),
        waiting: HashMap::new(),
        parked: HashMap::new(),
        members,
        equivocators,
        metrics,
        deadline_ms,
    };
    // The Open record of a new account (or nothing), then the re-sends of a restart.
    let mut effects = Vec::new();
    let mut changes = Vec::new();
    svc.absorb(actions, &mut changes, &mut effects, true);
    svc.commit(changes, true).await?;
    let rx = inputs.1;
    let republisher = svc.ctx.clone();
    Ok(tokio::spawn(async move {
        svc.execute(effects).await;
        // The certifications this node issued are published again after start (once the
        // node had time to join) and every few hours, so they outlive the record TTL.
        let republish = async move {
            tokio::time::sleep(Duration::from_secs(30)).await;
            loop {
                match republisher.leaf_republish_certs().await {
                    Ok(n) if n > 0 => tracing::info!(subjects = n, "certifications republished"),
                    Ok(_) => {}
                    Err(e) => tracing::debug!(error = %e, "republishing certifications"),
                }
                tokio::time::sleep(crate::certs::REPUBLISH_EVERY).await;
            }
        };
        tokio::select! {
            () = svc.run(rx, shutdown) => {}
            () = republish => {}
        }
    }))
}

impl Service {
    /// Runs batches until shutdown. It stops between batches: whatever was acknowledged is
    /// committed, and the database is not held by a commit in flight.
    async fn run(
        mut self,
        mut rx: mpsc::Receiver<Input>,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_retry = Instant::now();
        loop {
            let mut batch = Vec::new();
            let mut ticked = false;
            tokio::select! {
                i = rx.recv() => match i {
                    Some(i) => batch.push(i),
                    None => return,
                },
                _ = tick.tick() => ticked = true,
                _ = shutdown.changed() => return,
            }
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(i) => batch.push(i),
                    Err(_) => break,
                }
            }
            self.metrics.batch_inputs.observe(batch.len() as f64);
            let mut changes = Vec::new();
            let mut effects = Vec::new();
            let mut durable = false;
            for input in batch {
                durable |= self.on_input(input, &mut changes, &mut effects);
            }
            if ticked {
                let now = now_ms();
                if let Ok(a) = self.wallet.handle(Event::Tick, now) {
                    durable |= self.absorb(a, &mut changes, &mut effects, true);
                }
                if last_retry.elapsed() >= RETRY_EVERY {
                    last_retry = Instant::now();
                    if let Ok(a) = self.wallet.handle(Event::Retry, now) {
                        self.absorb(a, &mut changes, &mut effects, false);
                    }
                }
            }
            if let Err(e) = self.commit(changes, durable).await {
                // Nothing of this batch was acknowledged or sent; the wallet's memory is ahead
                // of the disk, so stop rather than sign on top of records that may be lost.
                tracing::error!(error = %e, "ledger commit failed: payments stopped");
                drop(effects);
                return;
            }
            self.execute(effects).await;
        }
    }

    /// Handles one input; returns whether its changes need a durable commit.
    fn on_input(
        &mut self,
        input: Input,
        changes: &mut Vec<Changes>,
        effects: &mut Vec<Effect>,
    ) -> bool {
        let now = now_ms();
        match input {
            Input::Pay {
                req,
                route,
                issued,
                done,
            } => {
                if self.equivocators.contains(&req.payee) {
                    let _ = issued.send(Err("the payee is a proven equivocator".into()));
                    return false;
                }
                let ev = Event::Pay {
                    payee: req.payee,
                    amount: req.amount,
                    deadline_ms: now.saturating_add(self.deadline_ms),
                    memo: req.memo,
                };
                match self.wallet.handle(ev, now) {
                    Ok(actions) => {
                        let id = actions.iter().find_map(|a| match a {
                            Action::Ack(Outcome::Issued(id)) => Some(*id),
                            _ => None,
                        });
                        self.routes.insert(req.payee, route);
                        let durable = self.absorb(actions, changes, effects, true);
                        if let Some(id) = id {
                            self.waiting.entry(id).or_default().push(done);
                            effects.push(Effect::Reply(Box::new(move || {
                                let _ = issued.send(Ok(id));
                            })));
                        }
                        durable
                    }
                    Err(e) => {
                        let _ = issued.send(Err(pay_error(&e, &self.params)));
                        false
                    }
                }
            }
            Input::Inbound { peer, id, request } => {
                self.on_request(peer, id, request, changes, effects)
            }
            Input::Answer { to, result } => match result {
                Ok(Response::Message(bytes)) => {
                    let decision = match Message::decode(&bytes) {
                        Ok(Message::Decision(d)) => Some(d.into_vec()),
                        _ => None,
                    };
                    match self.wallet.handle(Event::Received(bytes.into_vec()), now) {
                        Ok(a) => {
                            // Verified by the wallet: the actor compares it with what it saw.
                            if let Some(entry) = decision {
                                let _ = self.commands.try_send(Command::LeafSeen {
                                    entry,
                                    publish: false,
                                    verified: true,
                                    reply: None,
                                });
                            }
                            self.absorb(a, changes, effects, false)
                        }
                        Err(e) => {
                            tracing::warn!(payee = %hex::encode(to), error = %e, "bad decision from payee");
                            false
                        }
                    }
                }
                Ok(Response::WrongParams { ours }) => {
                    tracing::warn!(
                        payee = %hex::encode(to),
                        theirs = %hex::encode(ours),
                        "the payee's node runs other leaf parameters; the cheque stays reserved until it is aborted"
                    );
                    false
                }
                Ok(other) => {
                    tracing::debug!(payee = %hex::encode(to), answer = ?other, "payee's node did not decide");
                    false
                }
                Err(e) => {
                    tracing::debug!(payee = %hex::encode(to), error = %e, "payee's node unreachable; will retry");
                    self.routes.remove(&to);
                    false
                }
            },
            Input::Routed { account, route } => {
                self.routing.remove(&account);
                self.routes.insert(account, route);
                // Send what waits for this account now rather than at the next retry.
                if let Ok(actions) = self.wallet.handle(Event::Retry, now) {
                    for a in actions {
                        if let Action::Send { to, message } = a
                            && to == account
                        {
                            effects.push(Effect::Send { to, message });
                        }
                    }
                }
                false
            }
            Input::Unrouted(account) => {
                self.routing.remove(&account);
                false
            }
            Input::Close(reply) => match self.wallet.handle(Event::Close, now) {
                Ok(a) => {
                    let durable = self.absorb(a, changes, effects, true);
                    effects.push(Effect::Reply(Box::new(move || {
                        let _ = reply.send(Ok(()));
                    })));
                    durable
                }
                Err(e) => {
                    let _ = reply.send(Err(match e {
                        LeafError::CloseNotAtZero { balance, reserved } => format!(
                            "cannot close the account: balance is {} and {} is reserved by payments in flight; an account closes only at zero",
                            model::fmt_leaf(balance as i128),
                            model::fmt_leaf(reserved as i128)
                        ),
                        LeafError::AfterClose => "the account is already closed".into(),
                        e => e.to_string(),
                    }));
                    false
                }
            },
            Input::Account(reply) => {
                let view = self.view();
                let _ = reply.send(view);
                false
            }
            Input::Equivocator(a) => {
                self.equivocators.insert(a);
                self.members.insert(a, (Instant::now(), false));
                false
            }
            Input::Members(list) => {
                let mut durable = false;
                for (a, m) in list {
                    if !self.params.genesis.contains(&a) {
                        self.members.insert(a, (Instant::now(), m));
                    }
                    for (peer, id, request) in self.parked.remove(&a).unwrap_or_default() {
                        durable |= self.on_request(peer, id, request, changes, effects);
                    }
                }
                durable
            }
        }
    }

    fn view(&self) -> AccountView {
        AccountView {
            account: self.wallet.account(),
            balance: self.wallet.balance(),
            reserved: self.wallet.state().reserved,
            closed: self.wallet.is_closed(),
            state: self.wallet.state().clone(),
            params: self.params.clone(),
            equivocators: self.equivocators.iter().copied().collect(),
        }
    }

    fn on_request(
        &mut self,
        peer: PeerId,
        id: u64,
        request: Request,
        changes: &mut Vec<Changes>,
        effects: &mut Vec<Effect>,
    ) -> bool {
        let respond =
            |effects: &mut Vec<Effect>, response| effects.push(Effect::Respond { id, response });
        let (params, message) = match request {
            Request::Hello { params, account } => {
                let response = if params != self.params_hash {
                    Response::WrongParams {
                        ours: self.params_hash,
                    }
                } else if account != self.wallet.account() {
                    Response::NotHere
                } else {
                    Response::Hello {
                        open: !self.wallet.is_closed(),
                        balance: self.wallet.balance(),
                    }
                };
                // A hello writes nothing and its balance is a hint: answer now rather than
                // after this batch's commit (another payment's fsync).
                if let Err(e) = self
                    .commands
                    .try_send(Command::LeafRespond { id, response })
                {
                    let response = match e.into_inner() {
                        Command::LeafRespond { response, .. } => response,
                        _ => Response::Busy,
                    };
                    respond(effects, response);
                }
                return false;
            }
            Request::Message { params, message } => (params, message),
        };
        if params != self.params_hash {
            respond(
                effects,
                Response::WrongParams {
                    ours: self.params_hash,
                },
            );
            return false;
        }
        let bytes = message.into_vec();
        // A cheque from a non-member or a proven equivocator gets a signed refusal.
        let mut refuse = false;
        // The payer is read without verifying the signature: the wallet verifies these very
        // bytes next (one verification per payment, not two). Only a lookup (below) waits for
        // a verified cheque, so forged ones cannot make the node search the DHT.
        if let Ok(Message::Propose(raw)) = Message::decode(&bytes)
            && let Some(c) = SignedEntry::open_trusted(&raw)
                .ok()
                .and_then(|e| e.cheque())
        {
            self.routes.entry(c.payer).or_insert(Route {
                peer,
                addrs: Vec::new(),
            });
            let known = self.members.get(&c.payer).and_then(|(at, m)| {
                (*m || at.elapsed() < CACHE_FOR || self.params.genesis.contains(&c.payer))
                    .then_some(*m)
            });
            refuse = self.equivocators.contains(&c.payer) || known != Some(true);
            if refuse && !self.equivocators.contains(&c.payer) && known.is_none() {
                if let Err(e) = SignedEntry::open_cheque(&raw) {
                    if e.is_misbehaviour() {
                        let _ = self.commands.try_send(Command::LeafMisbehaved {
                            peer,
                            why: e.to_string(),
                        });
                    }
                    respond(effects, Response::Refused(e.to_string()));
                    return false;
                }
                // Unknown: park the request while the payer's membership is looked up (its
                // certifications in the DHT); it is handled again when the answer arrives.
                if self.parked.get(&c.payer).is_none_or(|p| p.is_empty()) {
                    self.resolve_member(c.payer);
                }
                let parked = self.parked.entry(c.payer).or_default();
                if parked.len() < MAX_PARKED {
                    parked.push((
                        peer,
                        id,
                        Request::Message {
                            params,
                            message: ByteBuf::from(bytes),
                        },
                    ));
                } else {
                    respond(effects, Response::Busy);
                }
                return false;
            }
        }
        let ev = if refuse {
            Event::RefuseNonMember(bytes)
        } else {
            Event::Received(bytes)
        };
        match self.wallet.handle(ev, now_ms()) {
            Ok(actions) => {
                // The decision is this request's response, not a separate send.
                let mut durable = false;
                for a in actions {
                    match a {
                        Action::Send { message, .. } => respond(
                            effects,
                            Response::Message(ByteBuf::from(message.to_bytes())),
                        ),
                        a => durable |= self.absorb(vec![a], changes, effects, true),
                    }
                }
                durable
            }
            Err(e) => {
                if e.is_misbehaviour() {
                    let _ = self.commands.try_send(Command::LeafMisbehaved {
                        peer,
                        why: e.to_string(),
                    });
                }
                respond(effects, Response::Refused(e.to_string()));
                false
            }
        }
    }

    /// Looks up whether `account` is a member, in the background.
    fn resolve_member(&mut self, account: [u8; 32]) {
        let ctx = self.ctx.clone();
        let params = self.params.clone();
        let tx = self.inputs_tx.clone();
        tokio::spawn(async move {
            let member = is_member(&ctx, &params, account).await;
            let _ = tx.send(Input::Members(vec![(account, member)])).await;
        });
    }

    /// Sorts actions into changes to commit and effects for after the commit. Returns whether
    /// a durable commit is needed (`durable` for this kind of step).
    fn absorb(
        &mut self,
        actions: Vec<Action>,
        changes: &mut Vec<Changes>,
        effects: &mut Vec<Effect>,
        durable: bool,
    ) -> bool {
        let mut needs = false;
        for a in actions {
            match a {
                Action::Persist(c) => {
                    changes.push(*c);
                    needs = durable;
                }
                Action::Send { to, message } => effects.push(Effect::Send { to, message }),
                Action::Ack(o) => effects.push(Effect::Outcome(o)),
            }
        }
        needs
    }

    async fn commit(&mut self, changes: Vec<Changes>, durable: bool) -> anyhow::Result<()> {
        if changes.is_empty() {
            return Ok(());
        }
        let own: Vec<Vec<u8>> = changes
            .iter()
            .flat_map(|c| c.entries.iter().map(|e| e.to_vec()))
            .collect();
        let db = self.db.clone();
        let account = self.wallet.account();
        tokio::task::spawn_blocking(move || {
            let batch: Vec<_> = changes.iter().map(|c| (account, c)).collect();
            leafnet_storage::leaf::commit(&db, &batch, durable)
        })
        .await
        .context("ledger commit task")??;
        if durable {
            self.metrics.durable_commits.inc();
        } else {
            self.metrics.lazy_commits.inc();
        }
        if !own.is_empty() {
            // Committed: now they may be announced (chain heads, DESIGN §4.5).
            let _ = self.commands.try_send(Command::LeafOwnRecords(own));
        }
        Ok(())
    }

    async fn execute(&mut self, effects: Vec<Effect>) {
        for e in effects {
            match e {
                Effect::Respond { id, response } => {
                    let _ = self
                        .commands
                        .send(Command::LeafRespond { id, response })
                        .await;
                }
                Effect::Send { to, message } => self.send(to, message),
                Effect::Outcome(o) => self.on_outcome(o),
                Effect::Reply(f) => f(),
            }
        }
    }

    fn on_outcome(&mut self, o: Outcome) {
        match o {
            Outcome::Issued(_) => self.metrics.outcome("issued"),
            Outcome::Paid(id) | Outcome::Refused(id) | Outcome::Aborted(id) => {
                self.metrics.outcome(match o {
                    Outcome::Paid(_) => "paid",
                    Outcome::Refused(_) => "refused",
                    _ => "aborted",
                });
                if let Some(waiters) = self.waiting.remove(&id) {
                    let p = payment(&self.wallet, &id);
                    for w in waiters {
                        let _ = w.send(p.clone());
                    }
                }
            }
            Outcome::Received(..) => self.metrics.outcome("received"),
            Outcome::Closed => {}
        }
    }

    /// Sends a wallet message to `to`'s node, in the background; the answer comes back as an
    /// [`Input::Answer`]. Without a route, the node is looked up first (and the message is
    /// sent by the next retry).
    fn send(&mut self, to: [u8; 32], message: Message) {
        let Some(route) = self.routes.get(&to).cloned() else {
            if self.routing.insert(to) {
                let ctx = self.ctx.clone();
                let tx = self.inputs_tx.clone();
                tokio::spawn(async move {
                    match find_route(&ctx, &to).await {
                        Ok(route) => {
                            let _ = tx.send(Input::Routed { account: to, route }).await;
                        }
                        Err(e) => {
                            tracing::debug!(account = %hex::encode(to), error = %e, "cannot find the node of an account");
                            let _ = tx.send(Input::Unrouted(to)).await;
                        }
                    }
                });
            }
            return;
        };
        let request = Request::Message {
            params: self.params_hash,
            message: ByteBuf::from(message.to_bytes()),
        };
        let commands = self.commands.clone();
        let tx = self.inputs_tx.clone();
        tokio::spawn(async move {
            let result = self::request(&commands, route, request).await;
            let _ = tx.send(Input::Answer { to, result }).await;
        });
    }
}

/// Sends `request` to `route` through the swarm actor and waits for the answer.
pub(crate) async fn request(
    commands: &mpsc::Sender<Command>,
    route: Route,
    request: Request,
) -> Result<Response, String> {
    let (tx, rx) = oneshot::channel();
    commands
        .send(Command::LeafSend {
            route,
            request,
            reply: tx,
        })
        .await
        .map_err(|_| "node is shutting down".to_owned())?;
    match tokio::time::timeout(Duration::from_secs(30), rx).await {
        Ok(Ok(r)) => r,
        Ok(Err(_)) => Err("node is shutting down".into()),
        Err(_) => Err("timed out".into()),
    }
}

/// The node of `account`, from its signed profile.
pub(crate) async fn find_route(
    ctx: &crate::flows::Ctx,
    account: &[u8; 32],
) -> anyhow::Result<Route> {
    let p = ctx.get_profile(&hex::encode(account)).await.map_err(|_| {
        NotFound(format!(
            "unknown payee: no profile found for account {} (its owner publishes one with \
                 `leafnet profile set`)",
            hex::encode(account)
        ))
    })?;
    let peer: PeerId = p
        .host_peer_id
        .parse()
        .map_err(|_| NotFound("the payee's profile names no host node".into()))?;
    let addrs = p.host_addrs.iter().filter_map(|a| a.parse().ok()).collect();
    Ok(Route { peer, addrs })
}

/// Whether `account` is a member: genesis members are; others by their certifications (DHT).
pub(crate) async fn is_member(ctx: &crate::flows::Ctx, params: &Params, account: [u8; 32]) -> bool {
    if params.genesis.contains(&account) {
        return true;
    }
    match ctx.resolve_membership(params, account, now_ms()).await {
        Ok(m) => m.member,
        Err(e) => {
            tracing::debug!(account = %hex::encode(account), error = %e, "membership lookup failed");
            false
        }
    }
}

/// One clear line for a payment the wallet refused.
fn pay_error(e: &LeafError, params: &Params) -> String {
    match e {
        LeafError::PayerBelowFloor { would_be, min } => format!(
            "bound exceeded: this payment would take your available balance to {}, below the \
             floor {} (-MAX)",
            model::fmt_leaf(*would_be),
            model::fmt_leaf(*min as i128)
        ),
        LeafError::AmountTooLarge { amount, max } => format!(
            "amount {} is over the largest payment {} (2 × MAX)",
            model::fmt_leaf(*amount as i128),
            model::fmt_leaf(*max as i128)
        ),
        LeafError::ZeroAmount => "amount must be positive".into(),
        LeafError::SelfPayment => "you cannot pay yourself".into(),
        LeafError::AfterClose => "your account is closed".into(),
        LeafError::MemoTooLong(n) => format!(
            "memo of {n} bytes is over the limit of {} bytes",
            leafnet_leaf::entry::MAX_MEMO
        ),
        e => {
            let _ = params;
            e.to_string()
        }
    }
}

fn short_reason(r: leafnet_leaf::RefuseReason) -> &'static str {
    match r {
        leafnet_leaf::RefuseReason::OverCeiling => {
            "bound exceeded: the payee's balance would go above +MAX"
        }
        leafnet_leaf::RefuseReason::NotMember => {
            "the payee's node does not count you as a member (or holds an equivocation proof against you)"
        }
    }
}

/// The view of one outgoing transfer.
fn payment(wallet: &Wallet, id: &TransferId) -> model::Payment {
    payment_of(&wallet.account(), wallet.state(), id)
}

pub(crate) fn payment_of(
    account: &[u8; 32],
    state: &leafnet_leaf::WalletState,
    id: &TransferId,
) -> model::Payment {
    let mut p = model::Payment {
        transfer_id: hex::encode(id.0),
        payer: hex::encode(account),
        ..Default::default()
    };
    if let Some(o) = state.outgoing.get(id) {
        p.payee = hex::encode(o.payee);
        p.amount = o.amount;
        p.amount_leaf = model::fmt_leaf(o.amount as i128);
        p.status = match o.state {
            OutState::Pending => "pending",
            OutState::AbortRequested => "abort-requested",
            OutState::Resolved(Decision::Accepted) => "paid",
            OutState::Resolved(Decision::Refused) => "refused",
            OutState::Resolved(Decision::Aborted) => "aborted",
        }
        .into();
        if let Some(d) = o
            .decision
            .as_ref()
            .and_then(|d| SignedEntry::open_trusted(d).ok())
        {
            match &d.record().body {
                Body::Refusal { reason, .. } => p.reason = Some(short_reason(*reason).into()),
                Body::Acceptance { balance, .. } => p.payee_balance = Some(*balance),
                _ => {}
            }
        }
        if let Ok(c) = SignedEntry::open_trusted(&o.cheque)
            && let Body::Cheque { memo, .. } = &c.record().body
        {
            p.memo = memo_text(memo);
            p.seq = c.record().seq;
        }
    }
    p
}

fn memo_text(m: &Memo) -> Option<String> {
    match m {
        Memo::None => None,
        Memo::Text(t) => Some(t.clone()),
        Memo::Invoice(h) => Some(format!("invoice {}", hex::encode(h))),
    }
}

/// The node's chain as history rows, oldest first.
pub(crate) fn history(view: &AccountView) -> Vec<model::HistoryEntry> {
    let mut out = Vec::new();
    let mut balance: i128 = 0;
    for b in &view.state.entries {
        let Ok(e) = SignedEntry::open_trusted(b) else {
            continue;
        };
        let r = e.record();
        let mut h = model::HistoryEntry {
            seq: r.seq,
            ..Default::default()
        };
        match &r.body {
            Body::Open { .. } => h.kind = "open".into(),
            Body::Close => h.kind = "close".into(),
            Body::Cheque {
                payee,
                amount,
                memo,
                ..
            } => {
                let id = TransferId(e.hash());
                let p = payment_of(&view.account, &view.state, &id);
                if p.status == "paid" {
                    balance -= *amount as i128;
                }
                h.kind = "cheque".into();
                h.transfer_id = hex::encode(id.0);
                h.counterparty = hex::encode(payee);
                h.amount = -(*amount as i128) as i64;
                h.status = p.status;
                h.memo = memo_text(memo);
            }
            Body::Acceptance { cheque, .. } => {
                if let Ok(c) = SignedEntry::open_trusted(cheque)
                    && let Some(ch) = c.cheque()
                {
                    balance += ch.amount as i128;
                    h.kind = "acceptance".into();
                    h.transfer_id = hex::encode(ch.id.0);
                    h.counterparty = hex::encode(ch.payer);
                    h.amount = ch.amount as i64;
                    h.status = "received".into();
                    if let Body::Cheque { memo, .. } = &c.record().body {
                        h.memo = memo_text(memo);
                    }
                }
            }
            Body::Refusal { transfer, reason } => {
                h.kind = "refusal".into();
                h.transfer_id = hex::encode(transfer.0);
                h.status = short_reason(*reason).into();
            }
            Body::Abort { transfer } => {
                h.kind = "abort".into();
                h.transfer_id = hex::encode(transfer.0);
                h.status = "aborted".into();
            }
        }
        h.balance = balance as i64;
        out.push(h);
    }
    out
}

/// The proof of a transfer: the cheque and the decision, and for a paid one the receipt
/// (the payee's acceptance) an object checks.
pub(crate) fn receipt(view: &AccountView, id: &TransferId) -> Option<model::Receipt> {
    if let Some(o) = view.state.outgoing.get(id) {
        let p = payment_of(&view.account, &view.state, id);
        let acceptance = match o.state {
            OutState::Resolved(Decision::Accepted) => o.decision.clone(),
            _ => None,
        };
        return Some(model::Receipt {
            payment: p,
            direction: "out".into(),
            cheque_hex: hex::encode(&o.cheque),
            decision_hex: o.decision.as_ref().map(hex::encode),
            receipt_hex: acceptance
                .map(|a| hex::encode(leafnet_leaf::Receipt { acceptance: a }.to_bytes())),
        });
    }
    let i = *view.state.incoming.get(id)?;
    let d = view.state.entries.get(usize::try_from(i).ok()?)?;
    let e = SignedEntry::open_trusted(d).ok()?;
    let mut p = model::Payment {
        transfer_id: hex::encode(id.0),
        payee: hex::encode(view.account),
        ..Default::default()
    };
    let mut cheque_hex = String::new();
    let mut receipt_hex = None;
    match &e.record().body {
        Body::Acceptance { cheque, balance } => {
            if let Ok(c) = SignedEntry::open_trusted(cheque)
                && let Some(ch) = c.cheque()
            {
                p.payer = hex::encode(ch.payer);
                p.amount = ch.amount;
                p.amount_leaf = model::fmt_leaf(ch.amount as i128);
                p.seq = ch.seq;
                if let Body::Cheque { memo, .. } = &c.record().body {
                    p.memo = memo_text(memo);
                }
            }
            p.status = "received".into();
            p.payee_balance = Some(*balance);
            cheque_hex = hex::encode(cheque);
            receipt_hex = Some(hex::encode(
                leafnet_leaf::Receipt {
                    acceptance: ByteBuf::from(d.to_vec()),
                }
                .to_bytes(),
            ));
        }
        Body::Refusal { reason, .. } => {
            p.status = "refused".into();
            p.reason = Some(short_reason(*reason).into());
        }
        _ => p.status = "aborted".into(),
    }
    Some(model::Receipt {
        payment: p,
        direction: "in".into(),
        cheque_hex,
        decision_hex: Some(hex::encode(d)),
        receipt_hex,
    })
}

/// Parses an amount in leaf with at most three decimals ("12", "0.5", "1.250") into minor
/// units; zero, negative, malformed and overflowing amounts are refused with one clear line.
pub fn parse_amount(s: &str) -> Result<u64, String> {
    let t = s.trim();
    if t.starts_with('-') {
        return Err(format!(
            "amount '{s}' is negative: amounts must be positive"
        ));
    }
    let (whole, frac) = t.split_once('.').unwrap_or((t, ""));
    let digits = |x: &str| !x.is_empty() && x.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || (!frac.is_empty() && !digits(frac)) || t.ends_with('.') {
        return Err(format!(
            "amount '{s}' is not a number of leaf (like 12 or 0.5, at most 3 decimals)"
        ));
    }
    if frac.len() > 3 {
        return Err(format!(
            "amount '{s}' has more than 3 decimals (1 leaf = {} minor units)",
            leafnet_leaf::MINOR_PER_LEAF
        ));
    }
    let w: u64 = whole
        .parse()
        .map_err(|_| format!("amount '{s}' is too large"))?;
    let f: u64 = format!("{frac:0<3}").parse().unwrap_or(0);
    let minor = w
        .checked_mul(leafnet_leaf::MINOR_PER_LEAF)
        .and_then(|m| m.checked_add(f))
        .filter(|m| *m <= i64::MAX as u64)
        .ok_or_else(|| format!("amount '{s}' is too large"))?;
    if minor == 0 {
        return Err("amount must be positive".into());
    }
    Ok(minor)
}

impl crate::flows::Ctx {
    fn leaf(&self) -> anyhow::Result<&Handle> {
        self.leaf.as_ref().ok_or_else(|| {
            BadInput(
                "payments are off on this node: the network has no leaf genesis members \
                 ([leaf] genesis in leafnet.toml)"
                    .into(),
            )
            .into()
        })
    }

    async fn leaf_ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Input,
    ) -> anyhow::Result<T> {
        let h = self.leaf()?;
        let (tx, rx) = oneshot::channel();
        h.inputs
            .send(make(tx))
            .await
            .map_err(|_| anyhow::anyhow!("the ledger stopped"))?;
        rx.await.map_err(|_| anyhow::anyhow!("the ledger stopped"))
    }

    /// The network's leaf parameters (an error when payments are off).
    pub fn leaf_params(&self) -> anyhow::Result<Params> {
        Ok(self.leaf()?.params.clone())
    }

    pub(crate) async fn leaf_view(&self) -> anyhow::Result<AccountView> {
        self.leaf_ask(Input::Account).await
    }

    /// `leafnet account`: the account, its balance and membership.
    pub async fn leaf_account(&self) -> anyhow::Result<model::LeafAccount> {
        let v = self.leaf_view().await?;
        let membership = if v.params.genesis.contains(&v.account) {
            "genesis member".to_owned()
        } else {
            match self
                .resolve_membership(&v.params, v.account, now_ms())
                .await
            {
                Ok(m) if m.member => {
                    format!("member ({} of {} certifications)", m.certified_by, m.needed)
                }
                Ok(m) => format!(
                    "not a member ({} of {} certifications)",
                    m.certified_by, m.needed
                ),
                Err(e) => format!("unknown ({e})"),
            }
        };
        Ok(model::LeafAccount {
            account_id: hex::encode(v.account),
            balance: v.balance,
            balance_leaf: model::fmt_leaf(v.balance as i128),
            reserved: v.reserved,
            available: (v.balance as i128 - v.reserved as i128) as i64,
            max_balance: v.params.max_balance,
            membership,
            closed: v.closed,
            chain_length: v.state.entries.len() as u64,
            params_hash: hex::encode(v.params.params_hash()),
            equivocators: v.equivocators.iter().map(hex::encode).collect(),
        })
    }

    /// `leafnet account close`: only at balance zero with nothing in flight.
    pub async fn leaf_close(&self) -> anyhow::Result<model::LeafAccount> {
        self.leaf_ask(Input::Close)
            .await?
            .map_err(|e| anyhow::Error::new(BadInput(e)))?;
        self.leaf_account().await
    }

    /// The account's chain, signed records from seq 0, hex (anyone can re-verify it with
    /// `leafnet_leaf::verify_chain` / `verify_ledger`).
    pub async fn leaf_chain(&self) -> anyhow::Result<model::Chain> {
        let v = self.leaf_view().await?;
        Ok(model::Chain {
            account_id: hex::encode(v.account),
            params_hash: hex::encode(v.params.params_hash()),
            entries_hex: v.state.entries.iter().map(hex::encode).collect(),
        })
    }

    /// `POST /v1/leaf/seen`: a record seen elsewhere; the node checks it against what it saw
    /// at the same place (a fork becomes a proof, gossiped) and gossips it.
    pub async fn leaf_seen(&self, entry_hex: &str) -> anyhow::Result<model::Seen> {
        self.leaf()?;
        let entry =
            hex::decode(entry_hex.trim()).map_err(|_| BadInput("entry_hex is not hex".into()))?;
        let verdict = self
            .ask(|tx| Command::LeafSeen {
                entry,
                publish: true,
                verified: false,
                reply: Some(tx),
            })
            .await?
            .map_err(BadInput)?;
        Ok(model::Seen { verdict })
    }

    /// `GET /v1/leaf/equivocators`: proven equivocators and their proofs.
    pub async fn leaf_equivocators(&self) -> anyhow::Result<Vec<model::Equivocator>> {
        Ok(self
            .ask(Command::LeafEquivocators)
            .await?
            .into_iter()
            .map(|(a, p)| model::Equivocator {
                account_id: hex::encode(a),
                proof_hex: hex::encode(p),
            })
            .collect())
    }

    /// `leafnet history`.
    pub async fn leaf_history(&self) -> anyhow::Result<Vec<model::HistoryEntry>> {
        Ok(history(&self.leaf_view().await?))
    }

    /// `leafnet receipt <id>`.
    pub async fn leaf_receipt(&self, id: &str) -> anyhow::Result<model::Receipt> {
        let mut b = [0u8; 32];
        hex::decode_to_slice(id.trim(), &mut b)
            .map_err(|_| BadInput(format!("'{id}' is not a transfer id (64 hex characters)")))?;
        let v = self.leaf_view().await?;
        receipt(&v, &TransferId(b))
            .ok_or_else(|| NotFound(format!("no transfer {id} in this account's chain")).into())
    }

    /// `leafnet pay`: checks everything it can before writing anything (amount, payee,
    /// membership, the payee's node and its parameters), then issues the cheque and waits up
    /// to [`PAY_WAIT`] for the payee's decision.
    pub async fn leaf_pay(&self, req: model::PayRequest) -> anyhow::Result<model::Payment> {
        let started = Instant::now();
        let h = self.leaf()?.clone();
        let amount = parse_amount(&req.amount).map_err(BadInput)?;
        let mut payee = [0u8; 32];
        hex::decode_to_slice(req.payee.trim(), &mut payee).map_err(|_| {
            BadInput(format!(
                "'{}' is not an account id (64 hex characters)",
                req.payee
            ))
        })?;
        let me = self.account.verifying_key().to_bytes();
        if payee == me {
            return Err(BadInput("you cannot pay yourself".into()).into());
        }
        let memo = match (&req.memo, &req.invoice_hex) {
            (Some(_), Some(_)) => {
                return Err(BadInput("give a memo or an invoice, not both".into()).into());
            }
            (Some(t), None) => {
                if t.len() > leafnet_leaf::entry::MAX_MEMO {
                    return Err(BadInput(format!(
                        "memo of {} bytes is over the limit of {} bytes",
                        t.len(),
                        leafnet_leaf::entry::MAX_MEMO
                    ))
                    .into());
                }
                Memo::Text(t.clone())
            }
            (None, Some(hexed)) => {
                let bytes = hex::decode(hexed.trim())
                    .map_err(|_| BadInput("the invoice is not hex".into()))?;
                let inv = leafnet_leaf::SignedInvoice::open(&bytes)
                    .map_err(|e| BadInput(format!("the invoice does not verify: {e}")))?;
                let i = inv.invoice();
                if i.client != me {
                    return Err(
                        BadInput("the invoice is made out to another account".into()).into(),
                    );
                }
                if i.amount != amount {
                    return Err(BadInput(format!(
                        "the invoice asks {}, not {}",
                        model::fmt_leaf(i.amount as i128),
                        model::fmt_leaf(amount as i128)
                    ))
                    .into());
                }
                if i.expires_ms <= now_ms() {
                    return Err(BadInput("the invoice has expired".into()).into());
                }
                inv.memo()
            }
            (None, None) => Memo::None,
        };
        if amount > h.params.max_amount() {
            return Err(BadInput(format!(
                "amount {} is over the largest payment {} (2 × MAX)",
                model::fmt_leaf(amount as i128),
                model::fmt_leaf(h.params.max_amount() as i128)
            ))
            .into());
        }
        let member = |a: [u8; 32]| {
            let h = h.clone();
            async move {
                if let Some(m) = h.cached_member(&a) {
                    return m;
                }
                let m = is_member(self, &h.params, a).await;
                h.remember(a, None, Some(m));
                m
            }
        };
        if !member(me).await {
            return Err(BadInput(
                "you are not a member yet: a payment needs K certifications from members".into(),
            )
            .into());
        }
        if !member(payee).await {
            return Err(BadInput(format!(
                "the payee {} is not a member of this network",
                hex::encode(payee)
            ))
            .into());
        }
        let route = match h.cached_route(&payee) {
            Some(r) => r,
            None => {
                let r = find_route(self, &payee).await?;
                h.remember(payee, Some(r.clone()), None);
                r
            }
        };
        let hello = Request::Hello {
            params: h.params.params_hash(),
            account: payee,
        };
        match request(&self.commands, route.clone(), hello).await {
            Ok(Response::Hello {
                open: true,
                balance,
            }) => {
                if balance as i128 + amount as i128 > h.params.max_balance as i128 {
                    return Err(BadInput(format!(
                        "bound exceeded: the payee's balance would go above +MAX ({})",
                        model::fmt_leaf(h.params.max_balance as i128)
                    ))
                    .into());
                }
            }
            Ok(Response::Hello { open: false, .. }) => {
                return Err(BadInput("the payee's account is closed".into()).into());
            }
            Ok(Response::WrongParams { ours }) => {
                return Err(BadInput(format!(
                    "other network: the payee's node runs other leaf parameters (theirs {}, \
                     ours {}); no payment between them",
                    &hex::encode(ours)[..16],
                    &hex::encode(h.params.params_hash())[..16]
                ))
                .into());
            }
            Ok(Response::NotHere) => {
                return Err(NotFound(
                    "unknown payee: the node named in its profile does not hold the account".into(),
                )
                .into());
            }
            Ok(other) => {
                return Err(anyhow::anyhow!("the payee's node answered {other:?}"));
            }
            Err(e) => {
                h.forget_route(&payee);
                return Err(anyhow::anyhow!("cannot reach the payee's node: {e}"));
            }
        }
        let (issued_tx, issued_rx) = oneshot::channel();
        let (done_tx, done_rx) = oneshot::channel();
        h.inputs
            .send(Input::Pay {
                req: PayRequest {
                    payee,
                    amount,
                    memo,
                },
                route,
                issued: issued_tx,
                done: done_tx,
            })
            .await
            .map_err(|_| anyhow::anyhow!("the ledger stopped"))?;
        let id = issued_rx
            .await
            .map_err(|_| anyhow::anyhow!("the ledger stopped"))?
            .map_err(|e| anyhow::Error::new(BadInput(e)))?;
        let mut p = match tokio::time::timeout(PAY_WAIT, done_rx).await {
            Ok(Ok(p)) => p,
            _ => {
                let v = self.leaf_view().await?;
                payment_of(&v.account, &v.state, &id)
            }
        };
        p.elapsed_ms = started.elapsed().as_secs_f64() * 1e3;
        Ok(p)
    }
}

impl crate::swarm::Actor {
    pub(crate) fn on_leaf(&mut self, e: request_response::Event<Request, Response>) {
        use request_response::{Event, Message as M};
        match e {
            Event::Message {
                peer,
                message: M::Request {
                    request, channel, ..
                },
                ..
            } => {
                let Some(inputs) = self.leaf_inputs.clone() else {
                    let _ = self
                        .swarm
                        .behaviour_mut()
                        .leaf
                        .send_response(channel, Response::NotHere);
                    return;
                };
                self.leaf_next = self.leaf_next.wrapping_add(1);
                let id = self.leaf_next;
                match inputs.try_send(Input::Inbound { peer, id, request }) {
                    Ok(()) => {
                        self.leaf_channels.insert(id, channel);
                    }
                    Err(_) => {
                        let _ = self
                            .swarm
                            .behaviour_mut()
                            .leaf
                            .send_response(channel, Response::Busy);
                    }
                }
            }
            Event::Message {
                message:
                    M::Response {
                        request_id,
                        response,
                    },
                ..
            } => {
                if let Some(reply) = self.leaf_out.remove(&request_id) {
                    let _ = reply.send(Ok(response));
                }
            }
            Event::OutboundFailure {
                request_id, error, ..
            } => {
                if let Some(reply) = self.leaf_out.remove(&request_id) {
                    let _ = reply.send(Err(error.to_string()));
                }
            }
            Event::InboundFailure { error, peer, .. } => {
                tracing::debug!(%peer, %error, "leaf request failed");
            }
            Event::ResponseSent { .. } => {}
        }
    }

    /// Sends a leaf request, dialing the route's addresses first (QUIC first when this node has
    /// QUIC) when not connected.
    pub(crate) fn leaf_send(
        &mut self,
        route: Route,
        request: Request,
        reply: oneshot::Sender<Result<Response, String>>,
    ) {
        let Route { peer, mut addrs } = route;
        if peer == *self.swarm.local_peer_id() {
            let _ = reply.send(Err("the payee's node is this node".into()));
            return;
        }
        if !self.swarm.is_connected(&peer) && !addrs.is_empty() {
            addrs = self.dial_addrs(addrs);
            addrs.sort_by_key(|a| match leafnet_config::transport_of(a) {
                Some("quic") if self.cfg.quic => 0,
                _ => 1,
            });
            for a in &addrs {
                self.swarm.add_peer_address(peer, a.clone());
            }
            let opts = libp2p::swarm::dial_opts::DialOpts::peer_id(peer)
                .addresses(addrs)
                .extend_addresses_through_behaviour()
                .build();
            if let Err(e) = self.swarm.dial(opts) {
                tracing::debug!(%peer, error = %e, "leaf dial");
            }
        }
        let id = self.swarm.behaviour_mut().leaf.send_request(&peer, request);
        self.leaf_out.insert(id, reply);
    }

    pub(crate) fn leaf_respond(&mut self, id: u64, response: Response) {
        if let Some(ch) = self.leaf_channels.remove(&id) {
            let _ = self.swarm.behaviour_mut().leaf.send_response(ch, response);
        }
    }
}
