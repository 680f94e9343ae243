//! The leaf ledger (DESIGN §4.5): each local account's chain and transfer states, proven
//! equivocators and objects' used invoices.
//!
//! | table | key | value |
//! |---|---|---|
//! | `leaf-entries-1` | account (32) ‖ seq (u64 BE) | signed entry bytes |
//! | `leaf-outgoing-1` | account (32) ‖ transfer id (32) | CBOR `leafnet_leaf::Outgoing` |
//! | `leaf-incoming-1` | account (32) ‖ transfer id (32) | index of the decision entry |
//! | `leaf-totals-1` | account (32) | CBOR `Totals` |
//! | `leaf-equivocators-1` | account (32) | equivocation proof bytes |
//! | `leaf-nonces-1` | invoice hash (32) | the invoice's expiry (unix ms) |
//! | `leaf-issued-certs-1` | subject (32) ‖ certifier (32) | a certification this node signed |
//!
//! [`commit`] writes the changes of any number of wallets in **one** transaction with
//! `Durability::Immediate`: group commit, one fsync for many payments, and each of them is
//! acknowledged only after it. [`load`] rebuilds a `WalletState` that `Wallet::restart`
//! re-verifies from the first record, so a damaged row is an error at start, never trusted.

use leafnet_leaf::{Changes, Outgoing, TransferId, WalletState};
use redb::{ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};

use crate::{Database, Error};

const ENTRIES: TableDefinition<&[u8; 40], &[u8]> = TableDefinition::new("leaf-entries-1");
const OUTGOING: TableDefinition<&[u8; 64], &[u8]> = TableDefinition::new("leaf-outgoing-1");
const INCOMING: TableDefinition<&[u8; 64], u64> = TableDefinition::new("leaf-incoming-1");
const TOTALS: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("leaf-totals-1");
const EQUIVOCATORS: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("leaf-equivocators-1");
const NONCES: TableDefinition<&[u8; 32], u64> = TableDefinition::new("leaf-nonces-1");
const ISSUED: TableDefinition<&[u8; 64], &[u8]> = TableDefinition::new("leaf-issued-certs-1");

/// The largest stored value the loaders accept (an entry is at most 2 KiB).
const MAX_VALUE: usize = 64 * 1024;

#[derive(Debug, Serialize, Deserialize)]
struct Totals {
    received: u64,
    paid: u64,
    reserved: u64,
}

pub(crate) fn create_tables(tx: &WriteTransaction) -> Result<(), Error> {
    tx.open_table(ENTRIES)?;
    tx.open_table(OUTGOING)?;
    tx.open_table(INCOMING)?;
    tx.open_table(TOTALS)?;
    tx.open_table(EQUIVOCATORS)?;
    tx.open_table(NONCES)?;
    tx.open_table(ISSUED)?;
    Ok(())
}

fn seq_key(account: &[u8; 32], seq: u64) -> [u8; 40] {
    let mut k = [0u8; 40];
    k[..32].copy_from_slice(account);
    k[32..].copy_from_slice(&seq.to_be_bytes());
    k
}

fn pair_key(account: &[u8; 32], id: &[u8; 32]) -> [u8; 64] {
    let mut k = [0u8; 64];
    k[..32].copy_from_slice(account);
    k[32..].copy_from_slice(id);
    k
}

fn transfer_of(k: &[u8; 64]) -> TransferId {
    let mut id = [0u8; 32];
    for (d, s) in id.iter_mut().zip(k.iter().skip(32)) {
        *d = *s;
    }
    TransferId(id)
}

fn corrupt(db: &Database, problem: impl Into<String>) -> Error {
    Error::Corrupt {
        path: db.path().to_owned(),
        problem: problem.into(),
    }
}

/// Writes the changes of several wallets (account, changes), in order, in one transaction.
/// With `durable`, when this returns `Ok` every one of them (and every earlier commit)
/// survives a crash; without, they become durable with the next durable commit or flush.
pub fn commit(db: &Database, batch: &[([u8; 32], &Changes)], durable: bool) -> Result<(), Error> {
    if batch.is_empty() {
        return Ok(());
    }
    let mut tx = db.redb().begin_write()?;
    tx.set_durability(if durable {
        redb::Durability::Immediate
    } else {
        redb::Durability::None
    })?;
    {
        let mut entries = tx.open_table(ENTRIES)?;
        let mut outgoing = tx.open_table(OUTGOING)?;
        let mut incoming = tx.open_table(INCOMING)?;
        let mut totals = tx.open_table(TOTALS)?;
        for (account, c) in batch {
            for (i, e) in c.entries.iter().enumerate() {
                let seq = c.first_seq.saturating_add(i as u64);
                entries.insert(&seq_key(account, seq), e.as_slice())?;
            }
            for (id, o) in &c.outgoing {
                let v = leafnet_wire::cbor::encode(o);
                outgoing.insert(&pair_key(account, &id.0), v.as_slice())?;
            }
            for (id, i) in &c.incoming {
                incoming.insert(&pair_key(account, &id.0), *i)?;
            }
            let t = leafnet_wire::cbor::encode(&Totals {
                received: c.received,
                paid: c.paid,
                reserved: c.reserved,
            });
            totals.insert(account, t.as_slice())?;
        }
    }
    tx.commit()?;
    Ok(())
}

/// The stored state of `account`, or `None` if it has no chain here.
pub fn load(db: &Database, account: &[u8; 32]) -> Result<Option<WalletState>, Error> {
    let tx = db.redb().begin_read()?;
    let totals = tx.open_table(TOTALS)?;
    let Some(t) = totals.get(account)? else {
        return Ok(None);
    };
    let t: Totals = leafnet_wire::cbor::decode(t.value(), MAX_VALUE)
        .map_err(|e| corrupt(db, format!("leaf totals: {e}")))?;
    let mut state = WalletState::empty();
    state.received = t.received;
    state.paid = t.paid;
    state.reserved = t.reserved;
    let entries = tx.open_table(ENTRIES)?;
    let (first, last) = (seq_key(account, 0), seq_key(account, u64::MAX));
    for (n, row) in entries.range::<&[u8; 40]>(&first..=&last)?.enumerate() {
        let (k, v) = row?;
        if k.value().get(32..) != Some((n as u64).to_be_bytes().as_slice()) {
            return Err(corrupt(db, "leaf entries: a gap in an account's chain"));
        }
        state
            .entries
            .push(serde_bytes::ByteBuf::from(v.value().to_vec()));
    }
    let lo = pair_key(account, &[0; 32]);
    let hi = pair_key(account, &[0xff; 32]);
    let outgoing = tx.open_table(OUTGOING)?;
    for row in outgoing.range::<&[u8; 64]>(&lo..=&hi)? {
        let (k, v) = row?;
        let id = transfer_of(k.value());
        let o: Outgoing = leafnet_wire::cbor::decode(v.value(), MAX_VALUE)
            .map_err(|e| corrupt(db, format!("leaf outgoing: {e}")))?;
        state.outgoing.insert(id, o);
    }
    let incoming = tx.open_table(INCOMING)?;
    for row in incoming.range::<&[u8; 64]>(&lo..=&hi)? {
        let (k, v) = row?;
        state.incoming.insert(transfer_of(k.value()), v.value());
    }
    Ok(Some(state))
}

/// The local accounts with a chain in this database.
pub fn accounts(db: &Database) -> Result<Vec<[u8; 32]>, Error> {
    let tx = db.redb().begin_read()?;
    let totals = tx.open_table(TOTALS)?;
    let mut out = Vec::new();
    for row in totals.iter()? {
        out.push(*row?.0.value());
    }
    Ok(out)
}

/// Stores an equivocation proof against `account` (durably).
pub fn put_equivocator(db: &Database, account: &[u8; 32], proof: &[u8]) -> Result<(), Error> {
    let tx = db.redb().begin_write()?;
    tx.open_table(EQUIVOCATORS)?.insert(account, proof)?;
    tx.commit()?;
    Ok(())
}

/// An account and the equivocation proof against it.
pub type Equivocator = ([u8; 32], Vec<u8>);

/// Every stored equivocation proof.
pub fn equivocators(db: &Database) -> Result<Vec<Equivocator>, Error> {
    let tx = db.redb().begin_read()?;
    let t = tx.open_table(EQUIVOCATORS)?;
    let mut out = Vec::new();
    for row in t.iter()? {
        let (k, v) = row?;
        out.push((*k.value(), v.value().to_vec()));
    }
    Ok(out)
}

/// Keeps a certification this node signed (durably), replacing an older one of the same
/// (subject, certifier).
pub fn put_issued_cert(
    db: &Database,
    subject: &[u8; 32],
    certifier: &[u8; 32],
    bytes: &[u8],
) -> Result<(), Error> {
    let tx = db.redb().begin_write()?;
    tx.open_table(ISSUED)?
        .insert(&pair_key(subject, certifier), bytes)?;
    tx.commit()?;
    Ok(())
}

/// Every certification this node signed (the node republishes them).
pub fn issued_certs(db: &Database) -> Result<Vec<Vec<u8>>, Error> {
    let tx = db.redb().begin_read()?;
    let t = tx.open_table(ISSUED)?;
    let mut out = Vec::new();
    for row in t.iter()? {
        out.push(row?.1.value().to_vec());
    }
    Ok(out)
}

/// Marks an invoice as used, durably. `false` if it already was (a replayed receipt).
/// Expired rows are swept on the way.
pub fn use_invoice(
    db: &Database,
    hash: &[u8; 32],
    expires_ms: u64,
    now_ms: u64,
) -> Result<bool, Error> {
    let tx = db.redb().begin_write()?;
    let fresh = {
        let mut t = tx.open_table(NONCES)?;
        if t.get(hash)?.is_some() {
            false
        } else {
            t.retain(|_, exp| exp > now_ms)?;
            t.insert(hash, expires_ms)?;
            true
        }
    };
    tx.commit()?;
    Ok(fresh)
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::SigningKey;
    use leafnet_leaf::{Action, Event, Memo, Params, Wallet};

    use super::*;

    fn params(genesis: &[[u8; 32]]) -> Params {
        let mut g = genesis.to_vec();
        g.sort();
        Params {
            max_balance: 1000,
            certifications_needed: 1,
            genesis: g,
            certification_validity_ms: 1_000_000,
        }
    }

    fn persist_all(db: &Database, account: [u8; 32], actions: &[Action]) {
        let changes: Vec<_> = actions
            .iter()
            .filter_map(|a| match a {
                Action::Persist(c) => Some((account, &**c)),
                _ => None,
            })
            .collect();
        commit(db, &changes, true).unwrap();
    }

    #[test]
    fn committed_changes_load_back_to_the_live_state() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::open(&dir.path().join("x.redb")).unwrap();
        let (ka, kb) = (
            SigningKey::from_bytes(&[1; 32]),
            SigningKey::from_bytes(&[2; 32]),
        );
        let (a, b) = (ka.verifying_key().to_bytes(), kb.verifying_key().to_bytes());
        let p = params(&[a, b]);
        let (mut wa, acts) = Wallet::create(ka.clone(), p.clone()).unwrap();
        persist_all(&db, a, &acts);
        let (mut wb, acts) = Wallet::create(kb, p.clone()).unwrap();
        persist_all(&db, b, &acts);
        for n in 0..5u64 {
            let acts = wa
                .handle(
                    Event::Pay {
                        payee: b,
                        amount: 10 + n,
                        deadline_ms: 1000,
                        memo: Memo::Text(format!("{n}")),
                    },
                    1,
                )
                .unwrap();
            persist_all(&db, a, &acts);
            let Some(Action::Send { message, .. }) = acts.get(1) else {
                panic!("no send")
            };
            let acts = wb.handle(Event::Received(message.to_bytes()), 2).unwrap();
            persist_all(&db, b, &acts);
            if n < 4 {
                let Some(Action::Send { message, .. }) = acts.get(1) else {
                    panic!("no decision")
                };
                let acts = wa.handle(Event::Received(message.to_bytes()), 3).unwrap();
                persist_all(&db, a, &acts);
            }
        }
        assert_eq!(load(&db, &a).unwrap().as_ref(), Some(wa.state()));
        assert_eq!(load(&db, &b).unwrap().as_ref(), Some(wb.state()));
        let mut accts = accounts(&db).unwrap();
        accts.sort();
        let mut want = vec![a, b];
        want.sort();
        assert_eq!(accts, want);
        // The stored state restarts (the chain re-verifies); one cheque is still pending.
        let (w, retry) = Wallet::restart(ka, p, load(&db, &a).unwrap().unwrap()).unwrap();
        assert_eq!(w.balance(), -(10 + 11 + 12 + 13));
        assert_eq!(retry.len(), 1);
        assert_eq!(load(&db, &[9; 32]).unwrap(), None);
    }

    #[test]
    fn an_invoice_is_used_once() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::open(&dir.path().join("x.redb")).unwrap();
        assert!(use_invoice(&db, &[1; 32], 100, 10).unwrap());
        assert!(!use_invoice(&db, &[1; 32], 100, 10).unwrap());
        assert!(use_invoice(&db, &[2; 32], 100, 200).unwrap());
        // The first expired and was swept while the second was written.
        assert!(use_invoice(&db, &[1; 32], 300, 200).unwrap());
    }
}
