//! The chain records, their signatures and the chain and ledger rules.
//!
//! Every record is a [`Record`] in canonical CBOR inside a [`SignedEnvelope`] over
//! [`ENTRY_DOMAIN`], signed by the record's account and nobody else. Record `n` carries the
//! SHA-256 of record `n − 1`'s signed bytes, record 0 is [`Body::Open`] naming the network's
//! [`Params::params_hash`], and nothing follows [`Body::Close`].

use std::collections::{BTreeMap, BTreeSet};

use ed25519_dalek::SigningKey;
use leafnet_wire::{
    DecodeError, SignedEnvelope, cbor,
    claim::{Claim, ClaimError},
};
use serde::{Deserialize, Serialize};

use crate::{LeafError, Params, sha256};

/// Domain tag of chain record signatures.
pub const ENTRY_DOMAIN: &[u8] = b"leafnet/leaf-entry/v1";
/// The largest signed record, in bytes. An acceptance embeds its cheque (≤ about 450 bytes with
/// the longest memo), so it is the largest kind, at about 700.
pub const MAX_ENTRY: usize = 2048;
/// The largest cheque inside an acceptance.
pub const MAX_CHEQUE: usize = 1024;
/// The longest text memo, in bytes.
pub const MAX_MEMO: usize = 140;

/// A transfer's id: the SHA-256 of its cheque's signed bytes. Every step of a payment is
/// idempotent by this id.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
pub struct TransferId(#[serde(with = "serde_bytes")] pub [u8; 32]);

/// What a cheque says it is for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Memo {
    /// Nothing.
    None,
    /// A short text of at most [`MAX_MEMO`] bytes.
    Text(String),
    /// The SHA-256 of an [`crate::Invoice`]'s signed bytes.
    Invoice(#[serde(with = "serde_bytes")] [u8; 32]),
}

/// Why a payee refused a cheque.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RefuseReason {
    /// Accepting would take the payee above +MAX.
    OverCeiling,
    /// The payer is not a member (or is a proven equivocator): see [`crate::Event::RefuseNonMember`].
    NotMember,
}

/// What a record says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Body {
    /// Sequence number 0: the account is registered (balance 0) on the network whose
    /// parameters hash to `params_hash`.
    Open {
        /// [`Params::params_hash`] of the network.
        #[serde(with = "serde_bytes")]
        params_hash: [u8; 32],
    },
    /// The payer's cheque: pay `amount` to `payee` if accepted before `deadline_ms`.
    Cheque {
        /// The payee's account.
        #[serde(with = "serde_bytes")]
        payee: [u8; 32],
        /// Minor units, > 0.
        amount: u64,
        /// The payee must not accept after this time (unix ms).
        deadline_ms: u64,
        /// Memo or invoice hash.
        memo: Memo,
    },
    /// The payee's acceptance: countersigns the embedded cheque (its signed bytes) and states
    /// the payee's balance after it.
    Acceptance {
        /// The cheque's signed bytes.
        #[serde(with = "serde_bytes")]
        cheque: Vec<u8>,
        /// The payee's balance after this acceptance.
        balance: i64,
    },
    /// The payee's signed refusal of a cheque.
    Refusal {
        /// The cheque refused.
        transfer: TransferId,
        /// Why.
        reason: RefuseReason,
    },
    /// The payee signs that it did not and will not accept the transfer (after its deadline or
    /// at the payer's request), so the payer can release the reservation.
    Abort {
        /// The transfer aborted.
        transfer: TransferId,
    },
    /// The account is closed (only at balance 0 with nothing in flight); nothing follows.
    Close,
}

/// One record of an account's chain, as signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The account (ed25519 public key); must be the signer.
    #[serde(with = "serde_bytes")]
    pub account: [u8; 32],
    /// Position in the account's chain, from 0.
    pub seq: u64,
    /// SHA-256 of the previous record's signed bytes (all zero for seq 0).
    #[serde(with = "serde_bytes")]
    pub prev: [u8; 32],
    /// What the record says.
    pub body: Body,
}

/// The cheque fields, as read from a cheque record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cheque {
    /// The transfer id (hash of the cheque's signed bytes).
    pub id: TransferId,
    /// The payer.
    #[serde(with = "serde_bytes")]
    pub payer: [u8; 32],
    /// The payer's sequence number of the cheque.
    pub seq: u64,
    /// The payee.
    #[serde(with = "serde_bytes")]
    pub payee: [u8; 32],
    /// The amount.
    pub amount: u64,
    /// The deadline.
    pub deadline_ms: u64,
}

impl Record {
    /// Field rules that need neither the chain nor the parameters: positive amounts that fit an
    /// `i64`, no cheque to oneself, short memos, an acceptance's embedded cheque valid and
    /// addressed to this account, seq 0 is `Open` and only seq 0 is.
    pub fn check(&self) -> Result<(), LeafError> {
        self.check_inner(true)
    }

    /// [`Record::check`]; with `verify_embedded` false an acceptance's embedded cheque is
    /// decoded and checked but its signature is not verified again (it was, by whoever holds
    /// it: the payee before it seals its acceptance, the payer who signed it).
    fn check_inner(&self, verify_embedded: bool) -> Result<(), LeafError> {
        match (&self.body, self.seq) {
            (Body::Open { .. }, 0) => {}
            (Body::Open { .. }, _) | (_, 0) => return Err(LeafError::BadOpen),
            _ => {}
        }
        if self.seq == 0 && self.prev != [0; 32] {
            return Err(LeafError::BrokenLink { seq: 0 });
        }
        match &self.body {
            Body::Cheque {
                payee,
                amount,
                memo,
                ..
            } => {
                check_amount(*amount, i64::MAX as u64)?;
                if payee == &self.account {
                    return Err(LeafError::SelfPayment);
                }
                if let Memo::Text(t) = memo
                    && t.len() > MAX_MEMO
                {
                    return Err(LeafError::MemoTooLong(t.len()));
                }
            }
            Body::Acceptance { cheque, .. } => {
                let c = if verify_embedded {
                    SignedEntry::open_cheque(cheque)?
                } else {
                    if cheque.len() > MAX_CHEQUE {
                        return Err(too_large(cheque.len(), MAX_CHEQUE));
                    }
                    SignedEntry::open_trusted(cheque)?
                        .cheque()
                        .ok_or(LeafError::Unexpected("not a cheque"))?
                };
                if c.payee != self.account {
                    return Err(LeafError::WrongPayee);
                }
            }
            _ => {}
        }
        Ok(())
    }
}

/// Refuses zero and amounts over `max`.
pub(crate) fn check_amount(amount: u64, max: u64) -> Result<(), LeafError> {
    if amount == 0 {
        return Err(LeafError::ZeroAmount);
    }
    if amount > max {
        return Err(LeafError::AmountTooLarge { amount, max });
    }
    Ok(())
}

/// A record with its account's signature, verified, with its exact bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedEntry {
    record: Record,
    bytes: Vec<u8>,
}

impl SignedEntry {
    /// Signs `record` with the account's key; refuses another key or a rule-breaking record, so
    /// nothing this returns fails [`SignedEntry::open`] — provided an acceptance embeds a
    /// cheque the caller verified (its signature is not checked again here: the wallet seals
    /// acceptances only of cheques it just opened).
    pub fn seal(key: &SigningKey, record: Record) -> Result<Self, LeafError> {
        if key.verifying_key().to_bytes() != record.account {
            return Err(LeafError::AuthorMismatch);
        }
        record.check_inner(false)?;
        let bytes = SignedEnvelope::seal(key, ENTRY_DOMAIN, cbor::encode(&record)).to_bytes();
        if bytes.len() > MAX_ENTRY {
            return Err(too_large(bytes.len(), MAX_ENTRY));
        }
        Ok(Self { record, bytes })
    }

    /// Opens signed bytes: size cap, strict signature, canonical payload, signer = account,
    /// field rules ([`Record::check`]).
    pub fn open(bytes: &[u8]) -> Result<Self, LeafError> {
        Self::open_capped(bytes, MAX_ENTRY)
    }

    fn open_capped(bytes: &[u8], max: usize) -> Result<Self, LeafError> {
        if bytes.len() > max {
            return Err(too_large(bytes.len(), max));
        }
        let env = SignedEnvelope::open(bytes, max, ENTRY_DOMAIN)?;
        let record: Record = cbor::decode(&env.payload, max)?;
        if record.account != env.signer {
            return Err(LeafError::AuthorMismatch);
        }
        record.check()?;
        Ok(Self {
            record,
            bytes: bytes.to_vec(),
        })
    }

    /// Opens a payee's decision for the payer that issued the cheque: the decision's signature
    /// is verified, an acceptance's embedded cheque only decoded. Sound only when the caller
    /// then matches the embedded cheque with one it signed itself (the wallet finds it by
    /// transfer id, the hash of those very bytes).
    pub fn open_decision_for_payer(bytes: &[u8]) -> Result<Self, LeafError> {
        if bytes.len() > MAX_ENTRY {
            return Err(too_large(bytes.len(), MAX_ENTRY));
        }
        let env = SignedEnvelope::open(bytes, MAX_ENTRY, ENTRY_DOMAIN)?;
        let record: Record = cbor::decode(&env.payload, MAX_ENTRY)?;
        if record.account != env.signer {
            return Err(LeafError::AuthorMismatch);
        }
        record.check_inner(false)?;
        Ok(Self {
            record,
            bytes: bytes.to_vec(),
        })
    }

    /// Decodes bytes that were verified before — this node's own persisted records, or a
    /// cheque embedded in an acceptance that was opened with [`SignedEntry::open`] — without
    /// checking the signature again (a verification costs ~50 µs, and a payment's bytes pass
    /// through several readers). Still size-capped, canonical and signer = account. **Never**
    /// for bytes from a peer: use [`SignedEntry::open`].
    pub fn open_trusted(bytes: &[u8]) -> Result<Self, LeafError> {
        if bytes.len() > MAX_ENTRY {
            return Err(too_large(bytes.len(), MAX_ENTRY));
        }
        let env: SignedEnvelope = cbor::decode(bytes, MAX_ENTRY)?;
        let record: Record = cbor::decode(&env.payload, MAX_ENTRY)?;
        if record.account != env.signer {
            return Err(LeafError::AuthorMismatch);
        }
        Ok(Self {
            record,
            bytes: bytes.to_vec(),
        })
    }

    /// Opens a cheque (capped at [`MAX_CHEQUE`], so an acceptance cannot nest acceptances).
    pub fn open_cheque(bytes: &[u8]) -> Result<Cheque, LeafError> {
        Self::open_capped(bytes, MAX_CHEQUE)?
            .cheque()
            .ok_or(LeafError::Unexpected("not a cheque"))
    }

    /// The record.
    pub fn record(&self) -> &Record {
        &self.record
    }

    /// The canonical signed bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// SHA-256 of the signed bytes: what the next record's `prev` names.
    pub fn hash(&self) -> [u8; 32] {
        sha256(&[&self.bytes])
    }

    /// The cheque fields if this is a cheque.
    pub fn cheque(&self) -> Option<Cheque> {
        match &self.record.body {
            Body::Cheque {
                payee,
                amount,
                deadline_ms,
                ..
            } => Some(Cheque {
                id: TransferId(self.hash()),
                payer: self.record.account,
                seq: self.record.seq,
                payee: *payee,
                amount: *amount,
                deadline_ms: *deadline_ms,
            }),
            _ => None,
        }
    }

    /// The transfer a payee's decision is about, and which decision, if this is one. An
    /// acceptance's embedded cheque was verified when the entry was opened.
    pub fn decision(&self) -> Option<(TransferId, Decision)> {
        match &self.record.body {
            Body::Acceptance { cheque, .. } => {
                Some((TransferId(sha256(&[cheque])), Decision::Accepted))
            }
            Body::Refusal { transfer, .. } => Some((*transfer, Decision::Refused)),
            Body::Abort { transfer } => Some((*transfer, Decision::Aborted)),
            _ => None,
        }
    }
}

fn too_large(len: usize, max: usize) -> LeafError {
    LeafError::TooLarge {
        what: "ledger record",
        len,
        max,
    }
}

/// Author = account, slot = canonical CBOR of the sequence number, content = the record's hash:
/// two different records of one account at one sequence number are an equivocation proof.
impl Claim for SignedEntry {
    fn open_claim(bytes: &[u8]) -> Result<Self, ClaimError> {
        SignedEntry::open(bytes).map_err(|e| match e {
            LeafError::Decode(d) => ClaimError::Decode(d),
            LeafError::Sign(s) => ClaimError::Sign(s),
            LeafError::TooLarge { len, max, .. } => {
                ClaimError::Decode(DecodeError::TooLarge { len, max })
            }
            e => ClaimError::Invalid(e.to_string()),
        })
    }

    fn author(&self) -> [u8; 32] {
        self.record.account
    }

    fn slot(&self) -> Vec<u8> {
        cbor::encode(&self.record.seq)
    }

    fn content(&self) -> [u8; 32] {
        self.hash()
    }

    fn claim_bytes(&self) -> Vec<u8> {
        self.bytes.clone()
    }
}

/// How a payee resolved a cheque.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Decision {
    /// Paid: the payee's acceptance.
    Accepted,
    /// The payee's signed refusal.
    Refused,
    /// The payee's signed abort.
    Aborted,
}

/// What one chain, verified from its start, says about its account.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ChainState {
    /// The account.
    pub account: [u8; 32],
    /// The sequence number of the next record.
    pub next_seq: u64,
    /// The hash of the last record (what the next record's `prev` must be).
    pub head: [u8; 32],
    /// The sum of the cheques this account accepted.
    pub received: u64,
    /// The cheques this account issued, by transfer id.
    pub issued: BTreeMap<TransferId, Cheque>,
    /// The sum of the cheques this account issued (accepted or not).
    pub issued_total: u64,
    /// This account's decisions as a payee, by transfer id.
    pub decisions: BTreeMap<TransferId, Decision>,
    /// The incoming cheques this account accepted.
    pub accepted: BTreeMap<TransferId, Cheque>,
    /// The balance the last acceptance claimed (0 before any).
    pub last_claimed_balance: i64,
    /// Whether the chain ends with `Close`.
    pub closed: bool,
}

/// Re-verifies one account's chain from the start: every signature (strictly), size cap,
/// canonical encoding, sequence number, hash link and field rule; `Open` with these `params`
/// first, nothing after `Close`; each payee decision at most once per transfer; cheque amounts
/// within `2 * MAX`; each acceptance's claimed balance within `[-MAX, MAX]` and within what
/// the chain allows (at most everything received, at least that minus everything issued).
///
/// Which cheques of this account were accepted is in the *payees'* chains: use
/// [`verify_ledger`] to get balances.
pub fn verify_chain(params: &Params, entries: &[Vec<u8>]) -> Result<ChainState, LeafError> {
    let mut st = ChainState::default();
    let max = params.max_balance;
    for (i, bytes) in entries.iter().enumerate() {
        let e = SignedEntry::open(bytes)?;
        let r = e.record();
        if r.seq != i as u64 {
            return Err(LeafError::BadSequence {
                expected: i as u64,
                got: r.seq,
            });
        }
        if i == 0 {
            st.account = r.account;
        } else {
            if r.account != st.account {
                return Err(LeafError::WrongAccount);
            }
            if r.prev != st.head {
                return Err(LeafError::BrokenLink { seq: r.seq });
            }
        }
        if st.closed {
            return Err(LeafError::AfterClose);
        }
        match &r.body {
            Body::Open { params_hash } => {
                if *params_hash != params.params_hash() {
                    return Err(LeafError::WrongParams);
                }
            }
            Body::Cheque { amount, .. } => {
                check_amount(*amount, params.max_amount())?;
                let c = e.cheque().ok_or(LeafError::Overflow)?;
                st.issued_total = st
                    .issued_total
                    .checked_add(*amount)
                    .ok_or(LeafError::Overflow)?;
                st.issued.insert(c.id, c);
            }
            Body::Acceptance { cheque, balance } => {
                let c = SignedEntry::open_cheque(cheque)?;
                check_amount(c.amount, params.max_amount())?;
                if st.decisions.insert(c.id, Decision::Accepted).is_some() {
                    return Err(LeafError::DuplicateDecision);
                }
                st.received = st
                    .received
                    .checked_add(c.amount)
                    .ok_or(LeafError::Overflow)?;
                let high = (st.received as i128).min(max as i128);
                let low = (st.received as i128 - st.issued_total as i128).max(-(max as i128));
                if !(low..=high).contains(&(*balance as i128)) {
                    return Err(LeafError::BadBalanceClaim {
                        claimed: *balance,
                        low,
                        high,
                    });
                }
                st.last_claimed_balance = *balance;
                st.accepted.insert(c.id, c);
            }
            Body::Refusal { transfer, .. } | Body::Abort { transfer } => {
                let d = e.decision().map(|d| d.1).ok_or(LeafError::Overflow)?;
                if st.decisions.insert(*transfer, d).is_some() {
                    return Err(LeafError::DuplicateDecision);
                }
            }
            Body::Close => st.closed = true,
        }
        st.head = e.hash();
        st.next_seq = r.seq + 1;
    }
    if entries.is_empty() {
        return Err(LeafError::BadOpen);
    }
    Ok(st)
}

/// Balances and states of a set of chains verified together.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Ledger {
    /// Each account's balance: accepted incoming minus accepted outgoing.
    pub balances: BTreeMap<[u8; 32], i64>,
    /// Every transfer accepted.
    pub settled: BTreeSet<TransferId>,
    /// Each chain's state.
    pub chains: BTreeMap<[u8; 32], ChainState>,
}

/// Verifies a set of chains together (keyed by account): each with [`verify_chain`]; every
/// accepted cheque whose payer's chain is held and long enough is exactly the payer's record at
/// that sequence number (else [`LeafError::Fork`]); balances (accepted incoming − accepted
/// outgoing) all within `[-MAX, MAX]`; a closed account at 0 with every cheque decided. The sum
/// of the balances is then 0 by construction: every acceptance moves one amount from one
/// account to another.
pub fn verify_ledger(
    params: &Params,
    chains: &BTreeMap<[u8; 32], Vec<Vec<u8>>>,
) -> Result<Ledger, LeafError> {
    let mut ledger = Ledger::default();
    for (account, entries) in chains {
        let st = verify_chain(params, entries)?;
        if &st.account != account {
            return Err(LeafError::WrongAccount);
        }
        ledger.balances.insert(*account, 0);
        ledger.chains.insert(*account, st);
    }
    let mut bal: BTreeMap<[u8; 32], i128> = BTreeMap::new();
    for (payee, st) in &ledger.chains {
        for c in st.accepted.values() {
            if let Some(payer) = ledger.chains.get(&c.payer)
                && c.seq < payer.next_seq
                && !payer.issued.contains_key(&c.id)
            {
                return Err(LeafError::Fork { seq: c.seq });
            }
            *bal.entry(*payee).or_default() += c.amount as i128;
            *bal.entry(c.payer).or_default() -= c.amount as i128;
            ledger.settled.insert(c.id);
        }
    }
    let max = params.max_balance as i128;
    for (account, b) in bal {
        if b > max {
            return Err(LeafError::PayeeAboveCeiling {
                would_be: b,
                max: params.max_balance,
            });
        }
        if b < -max {
            return Err(LeafError::PayerBelowFloor {
                would_be: b,
                min: -params.max_balance,
            });
        }
        ledger.balances.insert(account, b as i64);
    }
    for (account, st) in &ledger.chains {
        if st.closed {
            let balance = ledger.balances.get(account).copied().unwrap_or(0);
            let undecided: u64 = st
                .issued
                .values()
                .filter(|c| {
                    ledger
                        .chains
                        .get(&c.payee)
                        .is_some_and(|p| !p.decisions.contains_key(&c.id))
                })
                .fold(0u64, |sum, c| sum.saturating_add(c.amount));
            if balance != 0 || undecided != 0 {
                return Err(LeafError::CloseNotAtZero {
                    balance,
                    reserved: undecided,
                });
            }
        }
    }
    Ok(ledger)
}

#[cfg(test)]
pub(crate) mod tests {
    use leafnet_wire::{SignError, claim::Proof};
    use proptest::prelude::*;

    use super::*;
    use crate::params::tests::{key, params, pk};

    /// Builds a chain by hand, bypassing the wallet (so tests can build bad ones too).
    pub(crate) struct Chain {
        pub key: SigningKey,
        pub head: [u8; 32],
        pub entries: Vec<Vec<u8>>,
    }

    impl Chain {
        pub fn open(seed: u8, p: &Params) -> Self {
            let mut c = Chain {
                key: key(seed),
                head: [0; 32],
                entries: Vec::new(),
            };
            c.push(Body::Open {
                params_hash: p.params_hash(),
            });
            c
        }

        pub fn record(&self, body: Body) -> Record {
            Record {
                account: self.key.verifying_key().to_bytes(),
                seq: self.entries.len() as u64,
                prev: self.head,
                body,
            }
        }

        pub fn push(&mut self, body: Body) -> Vec<u8> {
            let e = SignedEntry::seal(&self.key, self.record(body)).unwrap();
            self.head = e.hash();
            self.entries.push(e.as_bytes().to_vec());
            e.as_bytes().to_vec()
        }

        pub fn cheque(&mut self, to: u8, amount: u64) -> Vec<u8> {
            self.push(Body::Cheque {
                payee: pk(to),
                amount,
                deadline_ms: 100,
                memo: Memo::None,
            })
        }

        /// Signs any payload as a record envelope, bypassing `seal`'s checks.
        pub fn raw(&self, payload: Vec<u8>) -> Vec<u8> {
            SignedEnvelope::seal(&self.key, ENTRY_DOMAIN, payload).to_bytes()
        }
    }

    fn ledger(chains: &[&Chain]) -> BTreeMap<[u8; 32], Vec<Vec<u8>>> {
        chains
            .iter()
            .map(|c| (c.key.verifying_key().to_bytes(), c.entries.clone()))
            .collect()
    }

    #[test]
    fn a_payment_verifies_and_conserves() {
        let p = params(1000, &[1, 2]);
        let (mut a, mut b) = (Chain::open(1, &p), Chain::open(2, &p));
        let cheque = a.cheque(2, 300);
        b.push(Body::Acceptance {
            cheque: cheque.clone(),
            balance: 300,
        });
        let st = verify_chain(&p, &b.entries).unwrap();
        assert_eq!(
            (st.received, st.next_seq, st.last_claimed_balance),
            (300, 2, 300)
        );
        let l = verify_ledger(&p, &ledger(&[&a, &b])).unwrap();
        assert_eq!(l.balances[&pk(1)], -300);
        assert_eq!(l.balances[&pk(2)], 300);
        let id = TransferId(sha256(&[&cheque]));
        assert!(l.settled.contains(&id));
        assert_eq!(l.chains[&pk(1)].issued[&id].amount, 300);
        let e = SignedEntry::open(&cheque).unwrap();
        assert_eq!(e.cheque().unwrap().id, id);
        assert_eq!(SignedEntry::open(e.as_bytes()).unwrap(), e);
    }

    #[test]
    fn forged_signature_is_refused() {
        let p = params(1000, &[1]);
        let mut a = Chain::open(1, &p);
        a.cheque(2, 5);
        let n = a.entries[1].len();
        a.entries[1][n - 1] ^= 1;
        assert_eq!(
            verify_chain(&p, &a.entries),
            Err(LeafError::Sign(SignError::BadSignature))
        );
        // Signed by another key than the account's.
        let a = Chain::open(1, &p);
        let forged = Chain::open(3, &p).raw(cbor::encode(&a.record(Body::Close)));
        assert_eq!(SignedEntry::open(&forged), Err(LeafError::AuthorMismatch));
        assert_eq!(
            SignedEntry::seal(&key(3), a.record(Body::Close)),
            Err(LeafError::AuthorMismatch)
        );
        // Another domain.
        let other = SignedEnvelope::seal(
            &a.key,
            b"leafnet/other/v1",
            cbor::encode(&a.record(Body::Close)),
        );
        assert_eq!(
            SignedEntry::open(&other.to_bytes()),
            Err(LeafError::Sign(SignError::BadSignature))
        );
    }

    #[test]
    fn broken_links_and_wrong_sequence_numbers_are_refused() {
        let p = params(1000, &[1]);
        let mut a = Chain::open(1, &p);
        a.head = [9; 32];
        a.cheque(2, 5);
        assert_eq!(
            verify_chain(&p, &a.entries),
            Err(LeafError::BrokenLink { seq: 1 })
        );
        let mut a = Chain::open(1, &p);
        a.cheque(2, 5);
        a.entries.remove(1);
        a.cheque(2, 6);
        assert_eq!(
            verify_chain(&p, &a.entries),
            Err(LeafError::BrokenLink { seq: 1 })
        );
        let mut a = Chain::open(1, &p);
        a.cheque(2, 5);
        a.entries.swap(0, 1);
        assert_eq!(
            verify_chain(&p, &a.entries),
            Err(LeafError::BadSequence {
                expected: 0,
                got: 1
            })
        );
        let mut a = Chain::open(1, &p);
        a.cheque(2, 5);
        let dup = a.entries[1].clone();
        a.entries.push(dup);
        assert_eq!(
            verify_chain(&p, &a.entries),
            Err(LeafError::BadSequence {
                expected: 2,
                got: 1
            })
        );
        // Someone else's record in my chain.
        let mut a = Chain::open(1, &p);
        let mut b = Chain::open(2, &p);
        b.head = a.head;
        b.entries = vec![vec![]];
        let e = b.cheque(3, 1);
        a.entries.push(e);
        assert_eq!(verify_chain(&p, &a.entries), Err(LeafError::WrongAccount));
    }

    #[test]
    fn open_rules() {
        let p = params(1000, &[1]);
        assert_eq!(verify_chain(&p, &[]), Err(LeafError::BadOpen));
        let a = Chain::open(1, &p);
        assert_eq!(
            verify_chain(&params(999, &[1]), &a.entries),
            Err(LeafError::WrongParams)
        );
        let mut b = Chain::open(1, &p);
        let r = b.record(Body::Open {
            params_hash: [0; 32],
        });
        assert_eq!(
            SignedEntry::seal(&b.key, r.clone()),
            Err(LeafError::BadOpen)
        );
        b.entries.push(b.raw(cbor::encode(&r)));
        assert_eq!(verify_chain(&p, &b.entries), Err(LeafError::BadOpen));
        // seq 0 that is not Open.
        let c = Chain {
            key: key(1),
            head: [0; 32],
            entries: vec![],
        };
        assert_eq!(
            SignedEntry::seal(&c.key, c.record(Body::Close)),
            Err(LeafError::BadOpen)
        );
    }

    #[test]
    fn zero_negative_and_oversized_amounts_are_refused() {
        let p = params(1000, &[1]);
        let mut a = Chain::open(1, &p);
        let zero = a.record(Body::Cheque {
            payee: pk(2),
            amount: 0,
            deadline_ms: 1,
            memo: Memo::None,
        });
        assert_eq!(
            SignedEntry::seal(&a.key, zero.clone()),
            Err(LeafError::ZeroAmount)
        );
        assert_eq!(
            SignedEntry::open(&a.raw(cbor::encode(&zero))),
            Err(LeafError::ZeroAmount)
        );
        // A negative amount cannot even be decoded as a record.
        #[derive(Serialize)]
        enum NegBody {
            Cheque {
                #[serde(with = "serde_bytes")]
                payee: [u8; 32],
                amount: i64,
                deadline_ms: u64,
                memo: Memo,
            },
        }
        #[derive(Serialize)]
        struct NegRecord {
            #[serde(with = "serde_bytes")]
            account: [u8; 32],
            seq: u64,
            #[serde(with = "serde_bytes")]
            prev: [u8; 32],
            body: NegBody,
        }
        let neg = NegRecord {
            account: pk(1),
            seq: 1,
            prev: a.head,
            body: NegBody::Cheque {
                payee: pk(2),
                amount: -5,
                deadline_ms: 1,
                memo: Memo::None,
            },
        };
        assert!(matches!(
            SignedEntry::open(&a.raw(cbor::encode(&neg))),
            Err(LeafError::Decode(_))
        ));
        // Over i64::MAX: refused by the record rules; over 2 * MAX: by the chain rules.
        let huge = a.record(Body::Cheque {
            payee: pk(2),
            amount: i64::MAX as u64 + 1,
            deadline_ms: 1,
            memo: Memo::None,
        });
        assert!(matches!(
            SignedEntry::seal(&a.key, huge),
            Err(LeafError::AmountTooLarge { .. })
        ));
        a.cheque(2, 2001);
        assert_eq!(
            verify_chain(&p, &a.entries),
            Err(LeafError::AmountTooLarge {
                amount: 2001,
                max: 2000
            })
        );
        // To oneself, and a long memo.
        let mut a = Chain::open(1, &p);
        let selfpay = a.record(Body::Cheque {
            payee: pk(1),
            amount: 1,
            deadline_ms: 1,
            memo: Memo::None,
        });
        assert_eq!(
            SignedEntry::seal(&a.key, selfpay),
            Err(LeafError::SelfPayment)
        );
        let long = a.record(Body::Cheque {
            payee: pk(2),
            amount: 1,
            deadline_ms: 1,
            memo: Memo::Text("x".repeat(MAX_MEMO + 1)),
        });
        assert_eq!(
            SignedEntry::seal(&a.key, long),
            Err(LeafError::MemoTooLong(MAX_MEMO + 1))
        );
        a.push(Body::Cheque {
            payee: pk(2),
            amount: 1,
            deadline_ms: 1,
            memo: Memo::Text("x".repeat(MAX_MEMO)),
        });
        verify_chain(&p, &a.entries).unwrap();
    }

    #[test]
    fn over_bound_balances_are_refused() {
        let p = params(1000, &[1, 2, 3]);
        let (mut a, mut b, mut c) = (Chain::open(1, &p), Chain::open(2, &p), Chain::open(3, &p));
        // 1 pays 2 600 twice: 1 would be at −1200.
        let x = a.cheque(2, 600);
        let y = a.cheque(2, 600);
        b.push(Body::Acceptance {
            cheque: x,
            balance: 600,
        });
        let mut b2 = Chain {
            key: b.key.clone(),
            head: b.head,
            entries: b.entries.clone(),
        };
        b.push(Body::Acceptance {
            cheque: y,
            balance: 1200,
        });
        // The payee's own claim is over MAX.
        assert!(matches!(
            verify_chain(&p, &b.entries),
            Err(LeafError::BadBalanceClaim { .. })
        ));
        // With c paying b enough to stay under the ceiling is impossible; instead check the
        // payer's floor: 2 pays 1's second cheque forward so 2 stays at 600.
        let z = b2.cheque(3, 600);
        c.push(Body::Acceptance {
            cheque: z,
            balance: 600,
        });
        let y2 = a.entries[2].clone();
        b2.push(Body::Acceptance {
            cheque: y2,
            balance: 600,
        });
        assert_eq!(
            verify_ledger(&p, &ledger(&[&a, &b2, &c])),
            Err(LeafError::PayerBelowFloor {
                would_be: -1200,
                min: -1000
            })
        );
        // A claim above what was received.
        let mut d = Chain::open(2, &p);
        let mut e = Chain::open(1, &p);
        let q = e.cheque(2, 10);
        d.push(Body::Acceptance {
            cheque: q,
            balance: 11,
        });
        assert_eq!(
            verify_chain(&p, &d.entries),
            Err(LeafError::BadBalanceClaim {
                claimed: 11,
                low: 10,
                high: 10
            })
        );
    }

    #[test]
    fn payee_above_ceiling_is_refused_by_the_ledger() {
        let p = params(1000, &[1, 2, 3]);
        let (mut a, mut b, mut c) = (Chain::open(1, &p), Chain::open(2, &p), Chain::open(3, &p));
        let x = a.cheque(3, 700);
        let y = b.cheque(3, 700);
        // 3 issued a cheque that was never accepted, and claims it was to pass the ceiling.
        let refused = c.cheque(1, 700);
        a.push(Body::Refusal {
            transfer: TransferId(sha256(&[&refused])),
            reason: RefuseReason::OverCeiling,
        });
        c.push(Body::Acceptance {
            cheque: x,
            balance: 700,
        });
        c.push(Body::Acceptance {
            cheque: y,
            balance: 700,
        });
        verify_chain(&p, &c.entries).unwrap();
        assert_eq!(
            verify_ledger(&p, &ledger(&[&a, &b, &c])),
            Err(LeafError::PayeeAboveCeiling {
                would_be: 1400,
                max: 1000
            })
        );
    }

    #[test]
    fn one_decision_per_transfer() {
        let p = params(1000, &[1, 2]);
        let (mut a, mut b) = (Chain::open(1, &p), Chain::open(2, &p));
        let x = a.cheque(2, 5);
        let id = TransferId(sha256(&[&x]));
        b.push(Body::Abort { transfer: id });
        b.push(Body::Acceptance {
            cheque: x,
            balance: 5,
        });
        assert_eq!(
            verify_chain(&p, &b.entries),
            Err(LeafError::DuplicateDecision)
        );
        // An acceptance of a cheque to someone else.
        let y = a.cheque(3, 5);
        let b = Chain::open(2, &p);
        let r = b.record(Body::Acceptance {
            cheque: y,
            balance: 5,
        });
        assert_eq!(SignedEntry::seal(&b.key, r), Err(LeafError::WrongPayee));
    }

    #[test]
    fn closing_only_at_zero_and_nothing_after() {
        let p = params(1000, &[1, 2]);
        let (mut a, mut b) = (Chain::open(1, &p), Chain::open(2, &p));
        let x = a.cheque(2, 5);
        a.push(Body::Close);
        b.push(Body::Acceptance {
            cheque: x,
            balance: 5,
        });
        assert_eq!(
            verify_ledger(&p, &ledger(&[&a, &b])),
            Err(LeafError::CloseNotAtZero {
                balance: -5,
                reserved: 0
            })
        );
        // Closed with an undecided cheque.
        let (mut a, b) = (Chain::open(1, &p), Chain::open(2, &p));
        a.cheque(2, 5);
        a.push(Body::Close);
        assert_eq!(
            verify_ledger(&p, &ledger(&[&a, &b])),
            Err(LeafError::CloseNotAtZero {
                balance: 0,
                reserved: 5
            })
        );
        // Closed at zero, then nothing may follow.
        let mut a = Chain::open(1, &p);
        a.push(Body::Close);
        verify_ledger(&p, &ledger(&[&a])).unwrap();
        a.cheque(2, 1);
        assert_eq!(verify_chain(&p, &a.entries), Err(LeafError::AfterClose));
    }

    #[test]
    fn two_records_at_one_seq_are_a_portable_proof() {
        let p = params(1000, &[1, 2]);
        let mut a = Chain::open(1, &p);
        let mut fork = Chain {
            key: a.key.clone(),
            head: a.head,
            entries: a.entries.clone(),
        };
        let x = a.cheque(2, 5);
        let y = fork.cheque(2, 6);
        let (ex, ey) = (
            SignedEntry::open(&x).unwrap(),
            SignedEntry::open(&y).unwrap(),
        );
        let proof = Proof::new(&ex, &ey).unwrap();
        let (pa, pb) = Proof::decode(&proof.to_bytes())
            .unwrap()
            .verify::<SignedEntry>()
            .unwrap();
        assert_eq!([pa.author(), pb.author()], [pk(1), pk(1)]);
        // Different seqs are no proof.
        let z = a.cheque(2, 7);
        assert!(Proof::new(&ex, &SignedEntry::open(&z).unwrap()).is_err());
        // The ledger sees the fork when the payee accepted the other branch.
        let mut b = Chain::open(2, &p);
        b.push(Body::Acceptance {
            cheque: y,
            balance: 6,
        });
        assert_eq!(
            verify_ledger(&p, &ledger(&[&a, &b])),
            Err(LeafError::Fork { seq: 1 })
        );
    }

    #[test]
    fn oversize_and_non_canonical_are_refused() {
        assert!(matches!(
            SignedEntry::open(&vec![0; MAX_ENTRY + 1]),
            Err(LeafError::TooLarge { .. })
        ));
        let p = params(1000, &[1]);
        let a = Chain::open(1, &p);
        let mut payload = cbor::encode(&a.record(Body::Close));
        payload.push(0);
        assert!(matches!(
            SignedEntry::open(&a.raw(payload)),
            Err(LeafError::Decode(_))
        ));
        let mut b = a.entries[0].clone();
        b.push(0);
        assert!(matches!(SignedEntry::open(&b), Err(LeafError::Decode(_))));
        // Claim errors keep their kind.
        assert!(matches!(
            SignedEntry::open_claim(&vec![0; MAX_ENTRY + 1]),
            Err(ClaimError::Decode(DecodeError::TooLarge { .. }))
        ));
    }

    proptest! {
        #[test]
        fn open_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..1500)) {
            let _ = SignedEntry::open(&bytes);
            let _ = SignedEntry::open_cheque(&bytes);
            let _ = Params::decode(&bytes);
            let _ = crate::SignedCertification::open(&bytes);
            let _ = crate::Message::decode(&bytes);
            let _ = crate::Wallet::decode_state(&bytes);
        }

        #[test]
        fn any_bit_flip_breaks_a_record(pos in any::<prop::sample::Index>(), bit in 0u8..8) {
            let p = params(1000, &[1]);
            let mut a = Chain::open(1, &p);
            let mut bytes = a.cheque(2, 5);
            let i = pos.index(bytes.len());
            bytes[i] ^= 1 << bit;
            prop_assert!(SignedEntry::open(&bytes).is_err());
        }
    }
}
