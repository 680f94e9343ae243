//! leafnet leaf: the sans-IO core of leaf payments (DESIGN §4.5).
//!
//! Every account keeps an append-only, hash-chained log of records **it alone signs**, like a
//! cheque book. A payment is two records: the payer's [`Body::Cheque`] at the payer's next
//! sequence number and the payee's [`Body::Acceptance`] at the payee's next sequence number,
//! which embeds (countersigns) the cheque. The payee may instead sign a [`Body::Refusal`] or an
//! [`Body::Abort`] ("did not and will not accept"). Because every record has one author, an
//! honest node never signs two records at one sequence number whatever is lost or crashes, so
//! two of them are always fraud: [`SignedEntry`] implements [`leafnet_wire::claim::Claim`] and
//! two entries at one (account, seq) make a portable [`leafnet_wire::claim::Proof`].
//!
//! - [`params`]: network [`Params`], [`Certification`]s and the membership rule;
//! - [`entry`]: the chain records, [`SignedEntry`], [`verify_chain`] and [`verify_ledger`];
//! - [`wallet`]: the payer and payee state machines of one account ([`Wallet`]): events in,
//!   actions out, state serialisable so a crash between any two actions can be resumed;
//! - [`invoice`]: objects' [`Invoice`]s and the check of a [`Receipt`] against one.
//!
//! No networking, no storage, no clock (time is passed in), no randomness. Amounts are `u64`
//! minor units (1 leaf = [`MINOR_PER_LEAF`]), balances `i64`, arithmetic is checked, and no
//! input makes anything here panic.

use leafnet_wire::{DecodeError, SignError};
use sha2::{Digest as _, Sha256};

pub mod entry;
pub mod invoice;
pub mod params;
pub mod wallet;

#[cfg(test)]
mod model_tests;

pub use entry::{
    Body, ChainState, Cheque, Decision, Ledger, MAX_ENTRY, Memo, Record, RefuseReason, SignedEntry,
    TransferId, verify_chain, verify_ledger,
};
pub use invoice::{Invoice, Receipt, SignedInvoice};
pub use params::{CertKind, Certification, Params, SignedCertification};
pub use wallet::{
    AbortRequest, Action, Changes, Event, Message, OutState, Outcome, Outgoing, Wallet, WalletState,
};

/// Minor units per leaf: amounts are integers of thousandths of a leaf.
pub const MINOR_PER_LEAF: u64 = 1000;

/// SHA-256 over the concatenation of `parts`.
pub(crate) fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// Why a record, a chain, a message or a request was refused.
///
/// Each rule of DESIGN §4.5 has its own variant so callers (and tests) can tell *which* rule an
/// input broke, and peers can be scored by [`LeafError::is_misbehaviour`].
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum LeafError {
    /// Over a size cap (checked before anything is parsed).
    #[error("{what} of {len} bytes is over the {max}-byte limit")]
    TooLarge {
        /// What was too large.
        what: &'static str,
        /// Its length.
        len: usize,
        /// The cap.
        max: usize,
    },
    /// Not canonical CBOR of the expected shape.
    #[error(transparent)]
    Decode(DecodeError),
    /// A bad signature or key.
    #[error(transparent)]
    Sign(SignError),
    /// A record signed by a key other than its account's (or a certification, invoice or abort
    /// request by another key than its author's).
    #[error("signed by a key other than its author's")]
    AuthorMismatch,
    /// A record at the wrong place in its chain.
    #[error("expected sequence number {expected}, got {got}")]
    BadSequence {
        /// The sequence number the chain expects next.
        expected: u64,
        /// The one the record has.
        got: u64,
    },
    /// A record whose `prev` is not the hash of the record before it.
    #[error("record {seq} does not link to the hash of the record before it")]
    BrokenLink {
        /// The record's sequence number.
        seq: u64,
    },
    /// A chain entry from another account than the chain's.
    #[error("record of another account in this chain")]
    WrongAccount,
    /// Sequence number 0 must be `Open` and only it may be.
    #[error("a chain starts with exactly one Open record")]
    BadOpen,
    /// A chain opened under other network parameters.
    #[error("chain opened under other network parameters")]
    WrongParams,
    /// A record after the account was closed.
    #[error("record after the account was closed")]
    AfterClose,
    /// An amount of zero.
    #[error("amount must be positive")]
    ZeroAmount,
    /// An amount larger than any balance may move (`2 * MAX`) or than fits an `i64`.
    #[error("amount {amount} is over the limit {max}")]
    AmountTooLarge {
        /// The amount.
        amount: u64,
        /// The largest allowed.
        max: u64,
    },
    /// A payment that would take the payer's available balance (balance − reserved − amount)
    /// below −MAX.
    #[error("payer would go to {would_be} (balance − reserved − amount), below the floor {min}")]
    PayerBelowFloor {
        /// Available balance after the payment.
        would_be: i128,
        /// −MAX.
        min: i64,
    },
    /// A payment that would take the payee's balance above +MAX.
    #[error("payee would go to {would_be}, above the ceiling {max}")]
    PayeeAboveCeiling {
        /// Balance after the payment.
        would_be: i128,
        /// +MAX.
        max: i64,
    },
    /// A cheque to oneself.
    #[error("a cheque to oneself")]
    SelfPayment,
    /// A cheque, decision or abort request that is not addressed to this account.
    #[error("not addressed to this account")]
    WrongPayee,
    /// A deadline not after the time of the request, or a request after its deadline.
    #[error("deadline {deadline_ms} is not after now {now_ms}")]
    DeadlinePassed {
        /// The deadline.
        deadline_ms: u64,
        /// The time given.
        now_ms: u64,
    },
    /// A memo longer than [`entry::MAX_MEMO`].
    #[error("memo of {0} bytes is over the limit")]
    MemoTooLong(usize),
    /// Closing an account that is not at zero or still has cheques in flight.
    #[error("cannot close at balance {balance} with {reserved} reserved")]
    CloseNotAtZero {
        /// The balance.
        balance: i64,
        /// The amount reserved by cheques in flight.
        reserved: u64,
    },
    /// A payee that decided about one transfer twice.
    #[error("a second decision about one transfer")]
    DuplicateDecision,
    /// A decision, acceptance or receipt about a transfer that is not known.
    #[error("unknown transfer")]
    UnknownTransfer,
    /// An acceptance whose claimed resulting balance is impossible.
    #[error("acceptance claims balance {claimed}, outside [{low}, {high}]")]
    BadBalanceClaim {
        /// The claimed balance.
        claimed: i64,
        /// The lowest possible.
        low: i128,
        /// The highest possible.
        high: i128,
    },
    /// Totals that do not fit their integer type (cannot happen within the bounds; refused
    /// rather than wrapped).
    #[error("arithmetic overflow")]
    Overflow,
    /// Network parameters that cannot work (MAX ≤ 0, K = 0, no genesis member, …).
    #[error("bad parameters: {0}")]
    BadParams(&'static str),
    /// A certification that breaks a rule (self-certification, empty validity, …).
    #[error("bad certification: {0}")]
    BadCertification(&'static str),
    /// An account that is not a member (or an object, which holds no balance).
    #[error("not a member")]
    NotMember,
    /// A receipt that does not pay what an invoice asks.
    #[error("receipt does not match the invoice: {0}")]
    ReceiptMismatch(&'static str),
    /// An invoice past its expiry or whose nonce was already used.
    #[error("invoice expired or already used")]
    InvoiceSpent,
    /// Two different records of one account at one sequence number, found while verifying
    /// (make the portable evidence with [`leafnet_wire::claim::Proof::new`]).
    #[error("two different records of one account at sequence number {seq}")]
    Fork {
        /// The sequence number.
        seq: u64,
    },
    /// A message that does not fit the state it arrives in (e.g. a second, different cheque
    /// under one transfer id).
    #[error("unexpected message: {0}")]
    Unexpected(&'static str),
}

impl LeafError {
    /// True for what an honest peer can never send (bad signatures, malformed or oversized
    /// bytes, broken chains, forged balances); false for refusals an honest peer can meet
    /// (bounds, deadlines, membership, closing at non-zero).
    pub fn is_misbehaviour(&self) -> bool {
        matches!(
            self,
            LeafError::TooLarge { .. }
                | LeafError::Decode(_)
                | LeafError::Sign(_)
                | LeafError::AuthorMismatch
                | LeafError::BadSequence { .. }
                | LeafError::BrokenLink { .. }
                | LeafError::WrongAccount
                | LeafError::BadOpen
                | LeafError::AfterClose
                | LeafError::ZeroAmount
                | LeafError::AmountTooLarge { .. }
                | LeafError::SelfPayment
                | LeafError::MemoTooLong(_)
                | LeafError::DuplicateDecision
                | LeafError::Fork { .. }
                | LeafError::BadBalanceClaim { .. }
        )
    }
}

impl From<DecodeError> for LeafError {
    fn from(e: DecodeError) -> Self {
        LeafError::Decode(e)
    }
}

impl From<SignError> for LeafError {
    /// An envelope that fails to *decode* is a decoding problem, not a signature problem.
    fn from(e: SignError) -> Self {
        match e {
            SignError::Decode(d) => LeafError::Decode(d),
            e => LeafError::Sign(e),
        }
    }
}
