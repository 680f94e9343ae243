//! Objects' invoices and the receipts that pay them (DESIGN §4.5, "Objects").
//!
//! An object (a robot) signs an [`Invoice`] for a client; the client pays the object's *owner*
//! (objects hold no balance) with the invoice hash as memo; the object, possibly offline,
//! checks the [`Receipt`] (the owner's acceptance embedding the cheque: both signatures, payee =
//! owner, amount, memo = this invoice, not expired, nonce unused) and grants access. Nonce
//! bookkeeping is the object's: it says whether the nonce was used.

use ed25519_dalek::SigningKey;
use leafnet_wire::{SignedEnvelope, cbor};
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use crate::{
    LeafError,
    entry::{Body, MAX_ENTRY, Memo, SignedEntry, TransferId},
    sha256,
};

/// Domain tag of invoice signatures.
pub const INVOICE_DOMAIN: &[u8] = b"leafnet/leaf-invoice/v1";
/// The largest signed invoice, in bytes.
pub const MAX_INVOICE: usize = 1024;
/// The longest resource name, in bytes.
pub const MAX_RESOURCE: usize = 128;
/// The largest encoded [`Receipt`].
pub const MAX_RECEIPT: usize = 2 * MAX_ENTRY + 64;

/// What an object asks a client to pay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invoice {
    /// The object; must be the signer.
    #[serde(with = "serde_bytes")]
    pub object: [u8; 32],
    /// The client who is to pay.
    #[serde(with = "serde_bytes")]
    pub client: [u8; 32],
    /// Minor units, > 0.
    pub amount: u64,
    /// What is sold (at most [`MAX_RESOURCE`] bytes).
    pub resource: String,
    /// For how long access is granted (ms).
    pub duration_ms: u64,
    /// Unique per invoice of this object: a receipt opens the door once.
    pub nonce: u64,
    /// The invoice cannot be redeemed from this time on (unix ms).
    pub expires_ms: u64,
}

/// An invoice with its object's signature, verified, with its exact bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedInvoice {
    invoice: Invoice,
    bytes: Vec<u8>,
}

impl SignedInvoice {
    /// Signs `invoice` with the object's key; refuses another key, a zero amount or a long
    /// resource name.
    pub fn seal(key: &SigningKey, invoice: Invoice) -> Result<Self, LeafError> {
        if key.verifying_key().to_bytes() != invoice.object {
            return Err(LeafError::AuthorMismatch);
        }
        check(&invoice)?;
        let bytes = SignedEnvelope::seal(key, INVOICE_DOMAIN, cbor::encode(&invoice)).to_bytes();
        Ok(Self { invoice, bytes })
    }

    /// Opens signed bytes: size cap, strict signature, canonical payload, signer = object,
    /// field rules.
    pub fn open(bytes: &[u8]) -> Result<Self, LeafError> {
        if bytes.len() > MAX_INVOICE {
            return Err(LeafError::TooLarge {
                what: "invoice",
                len: bytes.len(),
                max: MAX_INVOICE,
            });
        }
        let env = SignedEnvelope::open(bytes, MAX_INVOICE, INVOICE_DOMAIN)?;
        let invoice: Invoice = cbor::decode(&env.payload, MAX_INVOICE)?;
        if invoice.object != env.signer {
            return Err(LeafError::AuthorMismatch);
        }
        check(&invoice)?;
        Ok(Self {
            invoice,
            bytes: bytes.to_vec(),
        })
    }

    /// The invoice.
    pub fn invoice(&self) -> &Invoice {
        &self.invoice
    }

    /// The canonical signed bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// SHA-256 of the signed bytes: what the paying cheque's memo names.
    pub fn hash(&self) -> [u8; 32] {
        sha256(&[&self.bytes])
    }

    /// The memo a cheque paying this invoice carries.
    pub fn memo(&self) -> Memo {
        Memo::Invoice(self.hash())
    }
}

fn check(i: &Invoice) -> Result<(), LeafError> {
    if i.amount == 0 {
        return Err(LeafError::ZeroAmount);
    }
    if i.resource.len() > MAX_RESOURCE {
        return Err(LeafError::TooLarge {
            what: "invoice resource",
            len: i.resource.len(),
            max: MAX_RESOURCE,
        });
    }
    Ok(())
}

/// Proof of payment: the owner's acceptance record (which embeds the client's cheque).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    /// The payee's acceptance record, signed bytes.
    pub acceptance: ByteBuf,
}

impl Receipt {
    /// Decodes a receipt (size-capped, canonical; not yet verified).
    pub fn decode(bytes: &[u8]) -> Result<Self, LeafError> {
        Ok(cbor::decode(bytes, MAX_RECEIPT)?)
    }

    /// Canonical bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        cbor::encode(self)
    }

    /// Checks that this receipt pays `invoice` to the object's `owner` at `now_ms`: both
    /// signatures, the acceptance is the owner's, the cheque is the invoice's client's to the
    /// owner, for at least the amount, with the invoice's hash as memo, before the invoice
    /// expires, and `nonce_used` is false. Returns the transfer id (for the object's records).
    pub fn verify(
        &self,
        invoice: &SignedInvoice,
        owner: &[u8; 32],
        now_ms: u64,
        nonce_used: bool,
    ) -> Result<TransferId, LeafError> {
        let inv = invoice.invoice();
        if nonce_used || now_ms >= inv.expires_ms {
            return Err(LeafError::InvoiceSpent);
        }
        let acc = SignedEntry::open(&self.acceptance)?;
        let Body::Acceptance { cheque, .. } = &acc.record().body else {
            return Err(LeafError::ReceiptMismatch("not an acceptance"));
        };
        if &acc.record().account != owner {
            return Err(LeafError::ReceiptMismatch("not accepted by the owner"));
        }
        let entry = SignedEntry::open(cheque)?;
        let c = entry
            .cheque()
            .ok_or(LeafError::ReceiptMismatch("not a cheque"))?;
        if c.payer != inv.client {
            return Err(LeafError::ReceiptMismatch("not paid by the client"));
        }
        if c.amount < inv.amount {
            return Err(LeafError::ReceiptMismatch("amount too small"));
        }
        match &entry.record().body {
            Body::Cheque { memo, .. } if *memo == invoice.memo() => Ok(c.id),
            _ => Err(LeafError::ReceiptMismatch("memo is not this invoice")),
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::{
        Action, Event, Message, Wallet,
        params::tests::{key, params, pk},
    };

    fn invoice(client: u8, amount: u64, nonce: u64) -> SignedInvoice {
        SignedInvoice::seal(
            &key(9),
            Invoice {
                object: pk(9),
                client: pk(client),
                amount,
                resource: "door".into(),
                duration_ms: 60_000,
                nonce,
                expires_ms: 1_000,
            },
        )
        .unwrap()
    }

    /// Client 1 pays owner 2 `amount` with `memo`; returns the owner's acceptance.
    fn paid(amount: u64, memo: Memo) -> Receipt {
        let p = params(10_000, &[1, 2]);
        let (mut a, _) = Wallet::create(key(1), p.clone()).unwrap();
        let (mut b, _) = Wallet::create(key(2), p).unwrap();
        let sent = |acts: &[Action]| {
            acts.iter()
                .find_map(|a| match a {
                    Action::Send { message, .. } => Some(message.clone()),
                    _ => None,
                })
                .unwrap()
        };
        let ev = Event::Pay {
            payee: pk(2),
            amount,
            deadline_ms: 500,
            memo,
        };
        let out = a.handle(ev, 10).unwrap();
        let ans = b
            .handle(Event::Received(sent(&out).to_bytes()), 10)
            .unwrap();
        let Message::Decision(acc) = sent(&ans) else {
            panic!("no decision")
        };
        Receipt { acceptance: acc }
    }

    #[test]
    fn a_receipt_opens_the_door_once() {
        let inv = invoice(1, 100, 7);
        let r = paid(100, inv.memo());
        let r = Receipt::decode(&r.to_bytes()).unwrap();
        assert!(r.verify(&inv, &pk(2), 10, false).is_ok());
        assert_eq!(
            r.verify(&inv, &pk(2), 10, true),
            Err(LeafError::InvoiceSpent)
        );
        assert_eq!(
            r.verify(&inv, &pk(2), 1_000, false),
            Err(LeafError::InvoiceSpent)
        );
        assert!(matches!(
            r.verify(&inv, &pk(3), 10, false),
            Err(LeafError::ReceiptMismatch(_))
        ));
        // Another invoice (other nonce), a smaller amount, another client: refused.
        assert!(matches!(
            r.verify(&invoice(1, 100, 8), &pk(2), 10, false),
            Err(LeafError::ReceiptMismatch(_))
        ));
        let small = paid(99, invoice(1, 100, 7).memo());
        assert!(matches!(
            small.verify(&inv, &pk(2), 10, false),
            Err(LeafError::ReceiptMismatch(_))
        ));
        assert!(matches!(
            r.verify(&invoice(3, 100, 7), &pk(2), 10, false),
            Err(LeafError::ReceiptMismatch(_))
        ));
        // A tampered acceptance.
        let mut bad = r.clone();
        let n = bad.acceptance.len();
        bad.acceptance[n - 1] ^= 1;
        assert!(matches!(
            bad.verify(&inv, &pk(2), 10, false),
            Err(LeafError::Sign(_))
        ));
    }

    #[test]
    fn invoice_rules() {
        let inv = invoice(1, 100, 7);
        assert_eq!(SignedInvoice::open(inv.as_bytes()).unwrap(), inv);
        let mut i = inv.invoice().clone();
        assert_eq!(
            SignedInvoice::seal(&key(8), i.clone()),
            Err(LeafError::AuthorMismatch)
        );
        i.amount = 0;
        assert_eq!(
            SignedInvoice::seal(&key(9), i.clone()),
            Err(LeafError::ZeroAmount)
        );
        i.amount = 1;
        i.resource = "x".repeat(MAX_RESOURCE + 1);
        assert!(matches!(
            SignedInvoice::seal(&key(9), i),
            Err(LeafError::TooLarge { .. })
        ));
    }

    proptest! {
        #[test]
        fn decoders_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..1200)) {
            let _ = SignedInvoice::open(&bytes);
            if let Ok(r) = Receipt::decode(&bytes) {
                let _ = r.verify(&invoice(1, 1, 1), &pk(2), 0, false);
            }
        }
    }
}
