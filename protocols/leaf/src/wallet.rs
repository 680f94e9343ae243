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
//! the node checks them (see [`crate::Params::income_account`]) and hands a proposal from a
//! non-member in as [`Event::RefuseNonMember`], which the wallet answers with a signed refusal.
//!
//! [`Action::Persist`] carries the [`Changes`] since the previous persist: the new chain
//! records, the transfers whose state changed and the totals. A store writes them in one
//! transaction (several wallets' changes may share one commit: group commit); applied in
//! order to the state of [`Wallet::create`] they give [`Wallet::state`] ([`WalletState::apply`]).
//! So a persist costs what changed, not the size of the history.

use std::collections::{BTreeMap, BTreeSet};

use ed25519_dalek::SigningKey;
use leafnet_wire::{SignedEnvelope, cbor};
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use crate::{
    LeafError, Params,
    entry::{
        Body, Decision, MAX_CHEQUE, MAX_ENTRY, MAX_MEMO, Memo, Record, RefuseReason, SignedEntry,
        TransferId, check_amount, verify_chain,
    },
};

/// Domain tag of the payer's abort requests.
pub const ABORT_REQUEST_DOMAIN: &[u8] = b"leafnet/leaf-abort-request/v1";
/// The largest [`Message`], in bytes.
pub const MAX_MESSAGE: usize = MAX_ENTRY + 256;
/// The largest signed abort request, in bytes (a real one is about 200).
pub const MAX_ABORT_REQUEST: usize = MAX_CHEQUE + 256;
/// The largest persisted [`WalletState`] [`Wallet::decode_state`] accepts (64 MiB).
pub const MAX_STATE: usize = 64 * 1024 * 1024;

/// What the payer signs after a cheque's deadline: "abort this transfer".
///
/// It carries the cheque itself, so the payee can check that the signer is the cheque's payer:
/// nobody else can make a payee abort somebody's cheque before it arrives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AbortRequest {
    /// The cheque's signed bytes; its payer must be the request's signer.
    pub cheque: ByteBuf,
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

/// What changed in a [`WalletState`] since the previous [`Action::Persist`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Changes {
    /// The sequence number of `entries[0]` (= the number of entries persisted before).
    pub first_seq: u64,
    /// New chain records, signed bytes, in order.
    pub entries: Vec<ByteBuf>,
    /// Payer-side transfers created or changed (their whole new state).
    pub outgoing: Vec<(TransferId, Outgoing)>,
    /// Payee-side decisions made: transfer → index of the decision record.
    pub incoming: Vec<(TransferId, u64)>,
    /// [`WalletState::received`] after the change.
    pub received: u64,
    /// [`WalletState::paid`] after the change.
    pub paid: u64,
    /// [`WalletState::reserved`] after the change.
    pub reserved: u64,
}

impl WalletState {
    /// The state of an account with no records yet (what [`Changes`] of a new wallet apply to).
    pub fn empty() -> Self {
        WalletState {
            entries: Vec::new(),
            received: 0,
            paid: 0,
            reserved: 0,
            outgoing: BTreeMap::new(),
            incoming: BTreeMap::new(),
        }
    }

    /// Applies persisted changes in order. Changes that do not continue this state's chain
    /// (`first_seq` ≠ its length) are refused: they belong to another history.
    pub fn apply(&mut self, c: &Changes) -> Result<(), LeafError> {
        if c.first_seq != self.entries.len() as u64 {
            return Err(LeafError::BadSequence {
                expected: self.entries.len() as u64,
                got: c.first_seq,
            });
        }
        self.entries.extend(c.entries.iter().cloned());
        for (id, o) in &c.outgoing {
            self.outgoing.insert(*id, o.clone());
        }
        for (id, i) in &c.incoming {
            self.incoming.insert(*id, *i);
        }
        self.received = c.received;
        self.paid = c.paid;
        self.reserved = c.reserved;
        Ok(())
    }
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
    /// A proposal (a [`Message`]'s bytes) arrived from a payer the node found not to be a
    /// member, or to be a proven equivocator: the wallet signs a refusal (or answers the
    /// decision it already made), like [`Event::Received`] in every other respect.
    RefuseNonMember(Vec<u8>),
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
    /// Durably store these changes (one redb commit, possibly shared with other changes)
    /// before doing the next action.
    Persist(Box<Changes>),
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
    /// Entries persisted so far (the next [`Changes::first_seq`]).
    saved: usize,
    /// Transfers changed since the last persist.
    dirty_out: BTreeSet<TransferId>,
    dirty_in: BTreeSet<TransferId>,
}

impl Wallet {
    /// Registers a new account: its `Open` record at seq 0. The returned actions persist it.
    pub fn create(key: SigningKey, params: Params) -> Result<(Self, Vec<Action>), LeafError> {
        params.check()?;
        let account = key.verifying_key().to_bytes();
        let mut w = Wallet {
            key,
            account,
            state: WalletState::empty(),
            head: [0; 32],
            closed: false,
            saved: 0,
            dirty_out: BTreeSet::new(),
            dirty_in: BTreeSet::new(),
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
            saved: state.entries.len(),
            state,
            head: chain.head,
            closed: chain.closed,
            dirty_out: BTreeSet::new(),
            dirty_in: BTreeSet::new(),
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
                Message::Propose(c) => self.on_propose(&c, now_ms, false),
                Message::Decision(d) => self.on_decision(&d),
                Message::AbortRequest(r) => self.on_abort_request(&r),
            },
            Event::RefuseNonMember(bytes) => match Message::decode(&bytes)? {
                Message::Propose(c) => self.on_propose(&c, now_ms, true),
                _ => Err(LeafError::Unexpected("only a proposal can be refused")),
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
        if let Memo::Text(t) = &memo
            && t.len() > MAX_MEMO
        {
            return Err(LeafError::MemoTooLong(t.len()));
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
        self.dirty_out.insert(id);
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

    fn on_propose(
        &mut self,
        cheque: &[u8],
        now_ms: u64,
        non_member: bool,
    ) -> Result<Vec<Action>, LeafError> {
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
        } else if non_member {
            (
                Body::Refusal {
                    transfer: c.id,
                    reason: RefuseReason::NotMember,
                },
                None,
            )
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
        self.dirty_in.insert(c.id);
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
        let c = SignedEntry::open_cheque(&req.cheque)?;
        if c.payer != env.signer {
            return Err(LeafError::AuthorMismatch);
        }
        if c.payee != self.account {
            return Err(LeafError::WrongPayee);
        }
        if let Some(answer) = self.stored_decision(c.id, c.payer) {
            return Ok(vec![answer]);
        }
        if self.closed {
            return Err(LeafError::AfterClose);
        }
        let entry = self.append(Body::Abort { transfer: c.id })?;
        self.state
            .incoming
            .insert(c.id, self.state.entries.len() as u64 - 1);
        self.dirty_in.insert(c.id);
        Ok(vec![
            self.persist(),
            Action::Send {
                to: c.payer,
                message: Message::Decision(ByteBuf::from(entry.as_bytes().to_vec())),
            },
        ])
    }

    fn on_decision(&mut self, bytes: &[u8]) -> Result<Vec<Action>, LeafError> {
        // The embedded cheque of an acceptance is this wallet's own: it is found below by its
        // hash (the transfer id), so its signature need not be verified again.
        let entry = SignedEntry::open_decision_for_payer(bytes)?;
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
        self.dirty_out.insert(id);
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
                self.dirty_out.insert(*id);
                sends.push(abort_request(&self.key, o));
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
            .values()
            .filter_map(|o| match o.state {
                OutState::Pending => Some(Action::Send {
                    to: o.payee,
                    message: Message::Propose(o.cheque.clone()),
                }),
                OutState::AbortRequested => Some(abort_request(&self.key, o)),
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

    /// The changes since the last persist, as an action; what they hold counts as persisted
    /// from now on (the driver executes the action before anything depending on it).
    fn persist(&mut self) -> Action {
        let entries = self
            .state
            .entries
            .get(self.saved..)
            .unwrap_or_default()
            .to_vec();
        let first_seq = self.saved as u64;
        self.saved = self.state.entries.len();
        let outgoing = std::mem::take(&mut self.dirty_out)
            .into_iter()
            .filter_map(|id| self.state.outgoing.get(&id).map(|o| (id, o.clone())))
            .collect();
        let incoming = std::mem::take(&mut self.dirty_in)
            .into_iter()
            .filter_map(|id| self.state.incoming.get(&id).map(|i| (id, *i)))
            .collect();
        Action::Persist(Box::new(Changes {
            first_seq,
            entries,
            outgoing,
            incoming,
            received: self.state.received,
            paid: self.state.paid,
            reserved: self.state.reserved,
        }))
    }
}

fn abort_request(key: &SigningKey, o: &Outgoing) -> Action {
    let req = AbortRequest {
        cheque: o.cheque.clone(),
    };
    let env = SignedEnvelope::seal(key, ABORT_REQUEST_DOMAIN, cbor::encode(&req));
    Action::Send {
        to: o.payee,
        message: Message::AbortRequest(ByteBuf::from(env.to_bytes())),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::params::tests::{key, params, pk};

    fn wallets(max: i64) -> (Wallet, Wallet) {
        let p = params(max, &[1, 2]);
        let (a, _) = Wallet::create(key(1), p.clone()).unwrap();
        let (b, _) = Wallet::create(key(2), p).unwrap();
        (a, b)
    }

    fn pay(amount: u64, deadline_ms: u64) -> Event {
        Event::Pay {
            payee: pk(2),
            amount,
            deadline_ms,
            memo: Memo::None,
        }
    }

    fn sent(actions: &[Action]) -> Vec<u8> {
        actions
            .iter()
            .find_map(|a| match a {
                Action::Send { message, .. } => Some(message.to_bytes()),
                _ => None,
            })
            .unwrap()
    }

    #[test]
    fn pay_persists_before_sending_and_acks_after() {
        let (mut a, mut b) = wallets(1000);
        let out = a.handle(pay(300, 50), 10).unwrap();
        assert!(matches!(out[0], Action::Persist(_)));
        assert!(matches!(out[1], Action::Send { to, .. } if to == pk(2)));
        let Action::Ack(Outcome::Issued(id)) = out[2] else {
            panic!("no ack")
        };
        assert_eq!((a.balance(), a.available()), (0, -300));
        let answer = b.handle(Event::Received(sent(&out)), 20).unwrap();
        assert!(matches!(answer[0], Action::Persist(_)));
        assert_eq!(answer[2], Action::Ack(Outcome::Received(id, 300)));
        assert_eq!(b.balance(), 300);
        let done = a.handle(Event::Received(sent(&answer)), 30).unwrap();
        assert!(matches!(done[0], Action::Persist(_)));
        assert_eq!(done[1], Action::Ack(Outcome::Paid(id)));
        assert_eq!((a.balance(), a.available()), (-300, -300));
        // Replays: the payee answers the same and signs nothing; the payer changes nothing.
        let again = b.handle(Event::Received(sent(&out)), 40).unwrap();
        assert_eq!(again, vec![answer[1].clone()]);
        assert_eq!(b.state().entries.len(), 2);
        assert!(
            a.handle(Event::Received(sent(&answer)), 40)
                .unwrap()
                .is_empty()
        );
        assert_eq!(a.state().paid, 300);
    }

    #[test]
    fn bounds_are_enforced_with_the_reason() {
        let (mut a, _) = wallets(1000);
        assert_eq!(
            a.handle(pay(1001, 50), 10),
            Err(LeafError::PayerBelowFloor {
                would_be: -1001,
                min: -1000
            })
        );
        // Reservations count: 600 in flight, 500 more would pass −MAX.
        a.handle(pay(600, 50), 10).unwrap();
        assert!(matches!(
            a.handle(pay(500, 50), 10),
            Err(LeafError::PayerBelowFloor {
                would_be: -1100,
                ..
            })
        ));
        assert_eq!(a.handle(pay(0, 50), 10), Err(LeafError::ZeroAmount));
        assert!(matches!(
            a.handle(pay(5000, 50), 10),
            Err(LeafError::AmountTooLarge { .. })
        ));
        assert_eq!(
            a.handle(pay(1, 10), 10),
            Err(LeafError::DeadlinePassed {
                deadline_ms: 10,
                now_ms: 10
            })
        );
        let to_self = Event::Pay {
            payee: pk(1),
            amount: 1,
            deadline_ms: 50,
            memo: Memo::None,
        };
        assert_eq!(a.handle(to_self, 10), Err(LeafError::SelfPayment));
        // The payee refuses, with its reason, what would take it above +MAX.
        let p = params(1000, &[1, 2, 3]);
        let (mut c, _) = Wallet::create(key(3), p).unwrap();
        let (mut a, _) = Wallet::create(key(1), params(1000, &[1, 2, 3])).unwrap();
        let x = a.handle(pay(900, 50), 10).unwrap();
        let y = c.handle(pay(200, 50), 10).unwrap();
        let mut b = Wallet::create(key(2), params(1000, &[1, 2, 3])).unwrap().0;
        b.handle(Event::Received(sent(&x)), 10).unwrap();
        let r = b.handle(Event::Received(sent(&y)), 10).unwrap();
        let Ok(Message::Decision(d)) = Message::decode(&sent(&r)) else {
            panic!("no decision")
        };
        assert!(matches!(
            SignedEntry::open(&d).unwrap().record().body,
            Body::Refusal {
                reason: RefuseReason::OverCeiling,
                ..
            }
        ));
        let done = c.handle(Event::Received(sent(&r)), 10).unwrap();
        assert!(matches!(done[1], Action::Ack(Outcome::Refused(_))));
        assert_eq!(c.available(), 0);
    }

    #[test]
    fn deadline_abort_releases_the_reservation() {
        let (mut a, mut b) = wallets(1000);
        let out = a.handle(pay(300, 50), 10).unwrap();
        assert!(a.handle(Event::Tick, 50).unwrap().is_empty());
        let tick = a.handle(Event::Tick, 51).unwrap();
        assert!(matches!(tick[0], Action::Persist(_)));
        let abort = b.handle(Event::Received(sent(&tick)), 60).unwrap();
        let done = a.handle(Event::Received(sent(&abort)), 60).unwrap();
        assert!(matches!(done[1], Action::Ack(Outcome::Aborted(_))));
        assert_eq!(a.available(), 0);
        // The late cheque gets the stored abort, never an acceptance.
        let late = b.handle(Event::Received(sent(&out)), 70).unwrap();
        assert_eq!(late, vec![abort[1].clone()]);
        assert_eq!(b.balance(), 0);
        // A cheque arriving after its deadline is aborted by the payee itself.
        let out = a.handle(pay(5, 80), 70).unwrap();
        let answer = b.handle(Event::Received(sent(&out)), 81).unwrap();
        let done = a.handle(Event::Received(sent(&answer)), 81).unwrap();
        assert!(matches!(done[1], Action::Ack(Outcome::Aborted(_))));
    }

    #[test]
    fn foreign_and_forged_messages_are_refused() {
        let (mut a, mut b) = wallets(1000);
        let out = a.handle(pay(300, 50), 10).unwrap();
        // A proposal for someone else.
        let (mut c, _) = Wallet::create(key(3), params(1000, &[1, 2])).unwrap();
        assert_eq!(
            c.handle(Event::Received(sent(&out)), 10),
            Err(LeafError::WrongPayee)
        );
        // A decision from someone other than the payee.
        let fake = SignedEntry::seal(
            &key(3),
            Record {
                account: pk(3),
                seq: 1,
                prev: SignedEntry::open(&c.state().entries[0]).unwrap().hash(),
                body: Body::Abort {
                    transfer: *a.state().outgoing.keys().next().unwrap(),
                },
            },
        )
        .unwrap();
        let msg = Message::Decision(ByteBuf::from(fake.as_bytes().to_vec())).to_bytes();
        assert_eq!(
            a.handle(Event::Received(msg), 10),
            Err(LeafError::WrongPayee)
        );
        // A decision about an unknown transfer.
        let unknown = SignedEntry::seal(
            &key(2),
            Record {
                account: pk(2),
                seq: 1,
                prev: SignedEntry::open(&b.state().entries[0]).unwrap().hash(),
                body: Body::Abort {
                    transfer: TransferId([7; 32]),
                },
            },
        )
        .unwrap();
        let msg = Message::Decision(ByteBuf::from(unknown.as_bytes().to_vec())).to_bytes();
        assert_eq!(
            a.handle(Event::Received(msg), 10),
            Err(LeafError::UnknownTransfer)
        );
        // An abort request signed by someone other than the cheque's payer.
        let req = AbortRequest {
            cheque: a.state().outgoing.values().next().unwrap().cheque.clone(),
        };
        let env = SignedEnvelope::seal(&key(3), ABORT_REQUEST_DOMAIN, cbor::encode(&req));
        let msg = Message::AbortRequest(ByteBuf::from(env.to_bytes())).to_bytes();
        assert_eq!(
            b.handle(Event::Received(msg), 10),
            Err(LeafError::AuthorMismatch)
        );
        // A forged cheque.
        let mut bytes = sent(&out);
        let n = bytes.len();
        bytes[n - 1] ^= 1;
        assert!(matches!(
            b.handle(Event::Received(bytes), 10),
            Err(LeafError::Sign(_))
        ));
        assert_eq!(b.state().entries.len(), 1, "nothing was signed");
    }

    #[test]
    fn non_members_are_refused_idempotently() {
        let (mut a, mut b) = wallets(1000);
        let out = a.handle(pay(300, 50), 10).unwrap();
        let r = b.handle(Event::RefuseNonMember(sent(&out)), 10).unwrap();
        let Ok(Message::Decision(d)) = Message::decode(&sent(&r)) else {
            panic!("no decision")
        };
        assert!(matches!(
            SignedEntry::open(&d).unwrap().record().body,
            Body::Refusal {
                reason: RefuseReason::NotMember,
                ..
            }
        ));
        // Delivered again as an ordinary proposal: the same refusal, nothing new signed.
        assert_eq!(
            b.handle(Event::Received(sent(&out)), 10).unwrap(),
            vec![r[1].clone()]
        );
        assert_eq!(b.state().entries.len(), 2);
        let done = a.handle(Event::Received(sent(&r)), 10).unwrap();
        assert!(matches!(done[1], Action::Ack(Outcome::Refused(_))));
        assert_eq!(
            b.handle(Event::RefuseNonMember(done_bytes()), 10),
            Err(LeafError::Unexpected("only a proposal can be refused"))
        );
    }

    fn done_bytes() -> Vec<u8> {
        Message::Decision(ByteBuf::from(vec![1])).to_bytes()
    }

    #[test]
    fn closing_only_at_zero() {
        let (mut a, mut b) = wallets(1000);
        let out = a.handle(pay(300, 50), 10).unwrap();
        assert_eq!(
            a.handle(Event::Close, 10),
            Err(LeafError::CloseNotAtZero {
                balance: 0,
                reserved: 300
            })
        );
        let answer = b.handle(Event::Received(sent(&out)), 10).unwrap();
        a.handle(Event::Received(sent(&answer)), 10).unwrap();
        assert_eq!(
            a.handle(Event::Close, 10),
            Err(LeafError::CloseNotAtZero {
                balance: -300,
                reserved: 0
            })
        );
        let back = b
            .handle(
                Event::Pay {
                    payee: pk(1),
                    amount: 300,
                    deadline_ms: 50,
                    memo: Memo::None,
                },
                10,
            )
            .unwrap();
        let answer = a.handle(Event::Received(sent(&back)), 10).unwrap();
        b.handle(Event::Received(sent(&answer)), 10).unwrap();
        assert_eq!(
            a.handle(Event::Close, 10).unwrap()[1],
            Action::Ack(Outcome::Closed)
        );
        assert!(a.is_closed());
        assert_eq!(a.handle(pay(1, 50), 10), Err(LeafError::AfterClose));
        assert_eq!(a.handle(Event::Close, 10), Err(LeafError::AfterClose));
        let (a2, _) = Wallet::restart(key(1), params(1000, &[1, 2]), a.state().clone()).unwrap();
        assert!(a2.is_closed());
    }

    #[test]
    fn restart_resends_and_refuses_tampered_state() {
        let (mut a, _) = wallets(1000);
        let out = a.handle(pay(300, 50), 10).unwrap();
        let Action::Persist(changes) = &out[0] else {
            panic!()
        };
        assert_eq!(changes.first_seq, 1, "only the cheque is new");
        let bytes = cbor::encode(a.state());
        let state = Wallet::decode_state(&bytes).unwrap();
        let (a2, again) = Wallet::restart(key(1), params(1000, &[1, 2]), state.clone()).unwrap();
        assert_eq!(
            again,
            vec![out[1].clone()],
            "the pending cheque is sent again"
        );
        assert_eq!(a2.available(), -300);
        // Another key, other params, a tampered total or a broken chain: refused.
        assert_eq!(
            Wallet::restart(key(2), params(1000, &[1, 2]), state.clone()).unwrap_err(),
            LeafError::WrongAccount
        );
        assert_eq!(
            Wallet::restart(key(1), params(999, &[1, 2]), state.clone()).unwrap_err(),
            LeafError::WrongParams
        );
        let mut t = state.clone();
        t.reserved = 0;
        assert!(matches!(
            Wallet::restart(key(1), params(1000, &[1, 2]), t),
            Err(LeafError::Unexpected(_))
        ));
        let mut t = state;
        t.entries.remove(0);
        assert!(Wallet::restart(key(1), params(1000, &[1, 2]), t).is_err());
    }

    proptest! {
        #[test]
        fn arbitrary_messages_never_panic_or_sign(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
            let (mut a, _) = wallets(1000);
            let _ = a.handle(Event::Received(bytes.clone()), 10);
            let wrapped = [
                Message::Propose(ByteBuf::from(bytes.clone())),
                Message::Decision(ByteBuf::from(bytes.clone())),
                Message::AbortRequest(ByteBuf::from(bytes)),
            ];
            for m in wrapped {
                prop_assert!(a.handle(Event::Received(m.to_bytes()), 10).is_err());
            }
            prop_assert_eq!(a.state().entries.len(), 1);
        }
    }
}
