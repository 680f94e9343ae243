//! The payer and payee state machines of one account, sans-IO.
//!
//! Both roles share one chain (and so one sequence counter), so one [`Wallet`] per account holds
//! the per-transfer state of both: [`Outgoing`] (payer side: pending → abort requested → paid,
//! refused or aborted) and the payee's one decision per transfer. Inputs are [`Event`]s, outputs
//! [`Action`]s that the driver executes **in order**:
//!
//! - [`Action::Persist`] comes before any [`Action::Send`] or [`Action::Ack`] that depends on it,
//!   so nothing signed leaves the node and nothing is acknowledged before it is durable. A crash
//!   between any two actions loses at most records nobody has seen, which the restarted node
//!   may sign differently without equivocating.
//! - Every step is idempotent by [`TransferId`]: a replayed proposal or abort request gets the
//!   stored decision again, a replayed decision changes nothing; no replay makes a second
//!   record.
//! - A cheque has a deadline; after it the payer sends a signed [`AbortRequest`] and the payee
//!   answers with its [`Body::Abort`] record (or with the decision it already made), so no
//!   reservation stays locked by a payee that is still reachable. A payee that never answers
//!   keeps the amount reserved: retried, never silently voided.
//!
//! Membership and equivocator checks need certifications and proofs the wallet does not hold:
//! the node checks them (see [`crate::Params::income_account`]) before handing a proposal in.

use std::collections::BTreeMap;

use ed25519_dalek::SigningKey;
use leafnet_wire::{SignedEnvelope, cbor};
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use crate::{
    LeafError, Params,
    entry::{
        Body, Decision, MAX_ENTRY, MAX_MEMO, Memo, Record, RefuseReason, SignedEntry, TransferId,
        check_amount, verify_chain,
    },
};

/// Domain tag of the payer's abort requests.
pub const ABORT_REQUEST_DOMAIN: &[u8] = b"leafnet/leaf-abort-request/v1";
/// The largest [`Message`], in bytes.
pub const MAX_MESSAGE: usize = MAX_ENTRY + 256;
/// The largest signed abort request, in bytes (a real one is about 200).
pub const MAX_ABORT_REQUEST: usize = 512;
/// The largest persisted [`WalletState`] [`Wallet::decode_state`] accepts (64 MiB).
pub const MAX_STATE: usize = 64 * 1024 * 1024;

/// What the payer signs after a cheque's deadline: "abort this transfer".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AbortRequest {
    /// The payer; must be the signer.
    #[serde(with = "serde_bytes")]
    pub payer: [u8; 32],
    /// The payee asked to abort.
    #[serde(with = "serde_bytes")]
    pub payee: [u8; 32],
    /// The transfer.
    pub transfer: TransferId,
}

/// A message of the `/leafnet/<net>/leaf/1` protocol.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    /// Payer → payee: a signed cheque.
    Propose(ByteBuf),
    /// Payee → payer: the payee's signed decision record (acceptance, refusal or abort).
    Decision(ByteBuf),
    /// Payer → payee: a signed [`AbortRequest`] envelope.
    AbortRequest(ByteBuf),
}

impl Message {
    /// Canonical bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        cbor::encode(self)
    }

    /// Decodes at most [`MAX_MESSAGE`] bytes of canonical CBOR (contents not yet verified).
    pub fn decode(bytes: &[u8]) -> Result<Self, LeafError> {
        Ok(cbor::decode(bytes, MAX_MESSAGE)?)
    }
}

/// Where the payer side of one transfer stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum OutState {
    /// Cheque sent, no decision yet: the amount is reserved.
    Pending,
    /// Past the deadline, abort requested, no decision yet: still reserved.
    AbortRequested,
    /// Resolved by the payee's record.
    Resolved(Decision),
}

/// The payer side of one transfer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outgoing {
    /// The cheque's signed bytes.
    pub cheque: ByteBuf,
    /// The payee.
    #[serde(with = "serde_bytes")]
    pub payee: [u8; 32],
    /// The amount.
    pub amount: u64,
    /// The deadline.
    pub deadline_ms: u64,
    /// Where it stands.
    pub state: OutState,
    /// The payee's decision record, once received (the payer's receipt).
    pub decision: Option<ByteBuf>,
}

/// Everything a wallet must persist: its chain and the transfers' states. Serialisable, so a
/// node can resume from it after a crash ([`Wallet::restart`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WalletState {
    /// The account's own chain, signed bytes, from seq 0.
    pub entries: Vec<ByteBuf>,
    /// Sum of the cheques this account accepted.
    pub received: u64,
    /// Sum of this account's cheques it holds an acceptance for.
    pub paid: u64,
    /// Sum of this account's cheques still pending or abort-requested.
    pub reserved: u64,
    /// Payer side, by transfer id.
    pub outgoing: BTreeMap<TransferId, Outgoing>,
    /// Payee side: the index in `entries` of the decision about each transfer.
    pub incoming: BTreeMap<TransferId, u64>,
}

/// What the user asked, or what arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The user asks to pay `amount` to `payee` before `deadline_ms`.
    Pay {
        /// The payee.
        payee: [u8; 32],
        /// Minor units.
        amount: u64,
        /// The payee must accept before this.
        deadline_ms: u64,
        /// Memo or invoice hash.
        memo: Memo,
    },
    /// A [`Message`]'s bytes arrived.
    Received(Vec<u8>),
    /// Time passed: cheques past their deadline get an abort request.
    Tick,
    /// Send again everything not yet resolved (after a reconnect; [`Wallet::restart`] does it).
    Retry,
    /// The user asks to close the account.
    Close,
}

/// What the user is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A cheque is durably issued and sent.
    Issued(TransferId),
    /// The payee accepted: paid.
    Paid(TransferId),
    /// The payee refused.
    Refused(TransferId),
    /// The payee aborted.
    Aborted(TransferId),
    /// This account accepted an incoming cheque of `amount`.
    Received(TransferId, u64),
    /// The account is closed.
    Closed,
}

/// What the driver must do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Durably store this state (one redb commit) before doing the next action.
    Persist(Box<WalletState>),
    /// Send `message` to the account `to`.
    Send {
        /// The peer's account.
        to: [u8; 32],
        /// The message.
        message: Message,
    },
    /// Tell the user.
    Ack(Outcome),
}

/// One account's payer and payee state machines. See the [module](self) documentation.
#[derive(Debug)]
pub struct Wallet {
    key: SigningKey,
    account: [u8; 32],
    params: Params,
    state: WalletState,
    head: [u8; 32],
    closed: bool,
}

impl Wallet {
    /// Registers a new account: its `Open` record at seq 0. The returned actions persist it.
    pub fn create(key: SigningKey, params: Params) -> Result<(Self, Vec<Action>), LeafError> {
        params.check()?;
        let account = key.verifying_key().to_bytes();
        let mut w = Wallet {
            key,
            account,
            state: WalletState {
                entries: Vec::new(),
                received: 0,
                paid: 0,
                reserved: 0,
                outgoing: BTreeMap::new(),
                incoming: BTreeMap::new(),
            },
            head: [0; 32],
            closed: false,
            params,
        };
        let hash = w.params.params_hash();
        w.append(Body::Open { params_hash: hash })?;
        let persist = w.persist();
        Ok((w, vec![persist]))
    }

    /// Resumes from persisted state: re-verifies the chain from the start (signatures, links,
    /// this key, these parameters), checks the totals against it, then re-sends what is
    /// unresolved (as [`Event::Retry`]).
    pub fn restart(
        key: SigningKey,
        params: Params,
        state: WalletState,
    ) -> Result<(Self, Vec<Action>), LeafError> {
        params.check()?;
        let account = key.verifying_key().to_bytes();
        let entries: Vec<Vec<u8>> = state.entries.iter().map(|b| b.to_vec()).collect();
        let chain = verify_chain(&params, &entries)?;
        if chain.account != account {
            return Err(LeafError::WrongAccount);
        }
        let reserved = state
            .outgoing
            .values()
            .filter(|o| !matches!(o.state, OutState::Resolved(_)))
            .try_fold(0u64, |s, o| s.checked_add(o.amount))
            .ok_or(LeafError::Overflow)?;
        let paid = state
            .outgoing
            .values()
            .filter(|o| o.state == OutState::Resolved(Decision::Accepted))
            .try_fold(0u64, |s, o| s.checked_add(o.amount))
            .ok_or(LeafError::Overflow)?;
        let consistent = chain.received == state.received
            && reserved == state.reserved
            && paid == state.paid
            && chain.issued.len() == state.outgoing.len()
            && chain.issued.keys().all(|k| state.outgoing.contains_key(k))
            && chain.decisions.len() == state.incoming.len()
            && chain
                .decisions
                .keys()
                .all(|k| state.incoming.contains_key(k));
        if !consistent {
            return Err(LeafError::Unexpected(
                "persisted totals disagree with the chain",
            ));
        }
        let w = Wallet {
            key,
            account,
            params,
            state,
            head: chain.head,
            closed: chain.closed,
        };
        let actions = w.retry();
        Ok((w, actions))
    }

    /// Decodes persisted state (size-capped, canonical); [`Wallet::restart`] then verifies it.
    pub fn decode_state(bytes: &[u8]) -> Result<WalletState, LeafError> {
        Ok(cbor::decode(bytes, MAX_STATE)?)
    }

    /// The account.
    pub fn account(&self) -> [u8; 32] {
        self.account
    }

    /// The state to persist.
    pub fn state(&self) -> &WalletState {
        &self.state
    }

    /// The balance as this wallet knows it: accepted incoming minus outgoing it holds receipts
    /// for. The true balance is lower by any acceptance not yet received.
    pub fn balance(&self) -> i64 {
        (self.state.received as i128 - self.state.paid as i128) as i64
    }

    /// What may still be spent down to −MAX: `balance − reserved`.
    pub fn available(&self) -> i128 {
        self.balance() as i128 - self.state.reserved as i128
    }

    /// Whether the account is closed.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Handles one event at time `now_ms`. On `Err` nothing changed and nothing is to be done
    /// (the error says which rule the input broke).
    pub fn handle(&mut self, event: Event, now_ms: u64) -> Result<Vec<Action>, LeafError> {
        match event {
            Event::Pay {
                payee,
                amount,
                deadline_ms,
                memo,
            } => self.pay(payee, amount, deadline_ms, memo, now_ms),
            Event::Received(bytes) => match Message::decode(&bytes)? {
                Message::Propose(c) => self.on_propose(&c, now_ms),
                Message::Decision(d) => self.on_decision(&d),
                Message::AbortRequest(r) => self.on_abort_request(&r),
            },
            Event::Tick => Ok(self.tick(now_ms)),
            Event::Retry => Ok(self.retry()),
            Event::Close => self.close(),
        }
    }

    fn pay(
        &mut self,
        payee: [u8; 32],
        amount: u64,
        deadline_ms: u64,
        memo: Memo,
        now_ms: u64,
    ) -> Result<Vec<Action>, LeafError> {
        if self.closed {
            return Err(LeafError::AfterClose);
        }
        if payee == self.account {
            return Err(LeafError::SelfPayment);
        }
        check_amount(amount, self.params.max_amount())?;
        if let Memo::Text(t) = &memo {
            if t.len() > MAX_MEMO {
                return Err(LeafError::MemoTooLong(t.len()));
            }
        }
        if deadline_ms <= now_ms {
            return Err(LeafError::DeadlinePassed {
                deadline_ms,
                now_ms,
            });
        }
        let would_be = self.available() - amount as i128;
        if would_be < -(self.params.max_balance as i128) {
            return Err(LeafError::PayerBelowFloor {
                would_be,
                min: -self.params.max_balance,
            });
        }
        let reserved = self
            .state
            .reserved
            .checked_add(amount)
            .ok_or(LeafError::Overflow)?;
        let entry = self.append(Body::Cheque {
            payee,
            amount,
            deadline_ms,
            memo,
        })?;
        let id = TransferId(entry.hash());
        self.state.reserved = reserved;
        self.state.outgoing.insert(
            id,
            Outgoing {
                cheque: ByteBuf::from(entry.as_bytes().to_vec()),
                payee,
                amount,
                deadline_ms,
                state: OutState::Pending,
                decision: None,
            },
        );
        Ok(vec![
            self.persist(),
            Action::Send {
                to: payee,
                message: Message::Propose(ByteBuf::from(entry.as_bytes().to_vec())),
            },
            Action::Ack(Outcome::Issued(id)),
        ])
    }

    fn on_propose(&mut self, cheque: &[u8], now_ms: u64) -> Result<Vec<Action>, LeafError> {
        let c = SignedEntry::open_cheque(cheque)?;
        if c.payee != self.account {
            return Err(LeafError::WrongPayee);
        }
        check_amount(c.amount, self.params.max_amount())?;
        if let Some(answer) = self.stored_decision(c.id, c.payer) {
            return Ok(vec![answer]);
        }
        if self.closed {
            return Err(LeafError::AfterClose);
        }
        let would_be = self.balance() as i128 + c.amount as i128;
        let (body, received) = if now_ms > c.deadline_ms {
            (Body::Abort { transfer: c.id }, None)
        } else if would_be > self.params.max_balance as i128 {
            (
                Body::Refusal {
                    transfer: c.id,
                    reason: RefuseReason::OverCeiling,
                },
                None,
            )
        } else {
            let received = self
                .state
                .received
                .checked_add(c.amount)
                .ok_or(LeafError::Overflow)?;
            let body = Body::Acceptance {
                cheque: cheque.to_vec(),
                balance: would_be as i64,
            };
            (body, Some(received))
        };
        let entry = self.append(body)?;
        self.state
            .incoming
            .insert(c.id, self.state.entries.len() as u64 - 1);
        let mut actions = Vec::with_capacity(3);
        if let Some(r) = received {
            self.state.received = r;
        }
        actions.push(self.persist());
        actions.push(Action::Send {
            to: c.payer,
            message: Message::Decision(ByteBuf::from(entry.as_bytes().to_vec())),
        });
        if received.is_some() {
            actions.push(Action::Ack(Outcome::Received(c.id, c.amount)));
        }
        Ok(actions)
    }

    fn on_abort_request(&mut self, bytes: &[u8]) -> Result<Vec<Action>, LeafError> {
        let env = SignedEnvelope::open(bytes, MAX_ABORT_REQUEST, ABORT_REQUEST_DOMAIN)?;
        let req: AbortRequest = cbor::decode(&env.payload, MAX_ABORT_REQUEST)?;
        if req.payer != env.signer {
            return Err(LeafError::AuthorMismatch);
        }
        if req.payee != self.account {
            return Err(LeafError::WrongPayee);
        }
        if let Some(answer) = self.stored_decision(req.transfer, req.payer) {
            return Ok(vec![answer]);
        }
        if self.closed {
            return Err(LeafError::AfterClose);
        }
        let entry = self.append(Body::Abort {
            transfer: req.transfer,
        })?;
        self.state
            .incoming
            .insert(req.transfer, self.state.entries.len() as u64 - 1);
        Ok(vec![
            self.persist(),
            Action::Send {
                to: req.payer,
                message: Message::Decision(ByteBuf::from(entry.as_bytes().to_vec())),
            },
        ])
    }

    fn on_decision(&mut self, bytes: &[u8]) -> Result<Vec<Action>, LeafError> {
        let entry = SignedEntry::open(bytes)?;
        let (id, decision) = entry
            .decision()
            .ok_or(LeafError::Unexpected("not a decision"))?;
        let out = self
            .state
            .outgoing
            .get(&id)
            .ok_or(LeafError::UnknownTransfer)?;
        if entry.record().account != out.payee {
            return Err(LeafError::WrongPayee);
        }
        if let OutState::Resolved(_) = out.state {
            // A replay changes nothing; a second, different decision is the payee's fraud.
            return match &out.decision {
                Some(d) if d.as_slice() == bytes => Ok(Vec::new()),
                _ => Err(LeafError::DuplicateDecision),
            };
        }
        let amount = out.amount;
        let reserved = self
            .state
            .reserved
            .checked_sub(amount)
            .ok_or(LeafError::Overflow)?;
        let paid = match decision {
            Decision::Accepted => self
                .state
                .paid
                .checked_add(amount)
                .ok_or(LeafError::Overflow)?,
            _ => self.state.paid,
        };
        self.state.reserved = reserved;
        self.state.paid = paid;
        if let Some(o) = self.state.outgoing.get_mut(&id) {
            o.state = OutState::Resolved(decision);
            o.decision = Some(ByteBuf::from(bytes.to_vec()));
        }
        let outcome = match decision {
            Decision::Accepted => Outcome::Paid(id),
            Decision::Refused => Outcome::Refused(id),
            Decision::Aborted => Outcome::Aborted(id),
        };
        Ok(vec![self.persist(), Action::Ack(outcome)])
    }

    fn tick(&mut self, now_ms: u64) -> Vec<Action> {
        let mut sends = Vec::new();
        for (id, o) in self.state.outgoing.iter_mut() {
            if o.state == OutState::Pending && now_ms > o.deadline_ms {
                o.state = OutState::AbortRequested;
                sends.push(abort_request(&self.key, self.account, o.payee, *id));
            }
        }
        if sends.is_empty() {
            return sends;
        }
        let mut actions = vec![self.persist()];
        actions.extend(sends);
        actions
    }

    fn retry(&self) -> Vec<Action> {
        self.state
            .outgoing
            .iter()
            .filter_map(|(id, o)| match o.state {
                OutState::Pending => Some(Action::Send {
                    to: o.payee,
                    message: Message::Propose(o.cheque.clone()),
                }),
                OutState::AbortRequested => {
                    Some(abort_request(&self.key, self.account, o.payee, *id))
                }
                OutState::Resolved(_) => None,
            })
            .collect()
    }

    fn close(&mut self) -> Result<Vec<Action>, LeafError> {
        if self.closed {
            return Err(LeafError::AfterClose);
        }
        if self.balance() != 0 || self.state.reserved != 0 {
            return Err(LeafError::CloseNotAtZero {
                balance: self.balance(),
                reserved: self.state.reserved,
            });
        }
        self.append(Body::Close)?;
        self.closed = true;
        Ok(vec![self.persist(), Action::Ack(Outcome::Closed)])
    }

    /// The stored answer to a transfer already decided, addressed to `payer`.
    fn stored_decision(&self, id: TransferId, payer: [u8; 32]) -> Option<Action> {
        let i = *self.state.incoming.get(&id)?;
        let entry = self.state.entries.get(usize::try_from(i).ok()?)?;
        Some(Action::Send {
            to: payer,
            message: Message::Decision(entry.clone()),
        })
    }

    /// Signs `body` at the next sequence number and appends it (in memory).
    fn append(&mut self, body: Body) -> Result<SignedEntry, LeafError> {
        let seq = self.state.entries.len() as u64;
        let entry = SignedEntry::seal(
            &self.key,
            Record {
                account: self.account,
                seq,
                prev: self.head,
                body,
            },
        )?;
        self.head = entry.hash();
        self.state
            .entries
            .push(ByteBuf::from(entry.as_bytes().to_vec()));
        Ok(entry)
    }

    fn persist(&self) -> Action {
        Action::Persist(Box::new(self.state.clone()))
    }
}

fn abort_request(key: &SigningKey, payer: [u8; 32], payee: [u8; 32], id: TransferId) -> Action {
    let req = AbortRequest {
        payer,
        payee,
        transfer: id,
    };
    let env = SignedEnvelope::seal(key, ABORT_REQUEST_DOMAIN, cbor::encode(&req));
    Action::Send {
        to: payee,
        message: Message::AbortRequest(ByteBuf::from(env.to_bytes())),
    }
}
