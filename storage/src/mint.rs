//! Mint notes: `mint-items-1`: item id (32 bytes, sha256) → item bytes (a signed observation or
//! an equivocation proof, as `leafnet_mint::Item` encodes it).
//!
//! Items are self-verifying: a node re-verifies every one when it rebuilds its book at start, so
//! a damaged row is dropped, never trusted. Items learned from peers are written with
//! `Durability::None` and made durable by the node's periodic flush (a lost tail is learned again
//! by anti-entropy); the owner's own observations are written with `Durability::Immediate`
//! before the API answers.

use redb::{ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};

use crate::{Database, Error};

/// A stored item: its id and its bytes.
pub type Row = ([u8; 32], Vec<u8>);

const ITEMS: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("mint-items-1");

pub(crate) fn create_tables(tx: &WriteTransaction) -> Result<(), Error> {
    tx.open_table(ITEMS)?;
    Ok(())
}

/// Stores items in one transaction; `durable` chooses an fsync now or at the next flush.
pub fn put_many(db: &Database, items: &[Row], durable: bool) -> Result<(), Error> {
    if items.is_empty() {
        return Ok(());
    }
    let mut tx = db.redb().begin_write()?;
    if !durable {
        tx.set_durability(redb::Durability::None)
            .map_err(|e| Error::Db(e.into()))?;
    }
    {
        let mut t = tx.open_table(ITEMS)?;
        for (id, bytes) in items {
            t.insert(id, bytes.as_slice())?;
        }
    }
    tx.commit()?;
    Ok(())
}

/// Every stored item, in id order.
pub fn all(db: &Database) -> Result<Vec<Row>, Error> {
    let tx = db.redb().begin_read()?;
    let t = tx.open_table(ITEMS)?;
    let mut out = Vec::new();
    for e in t.iter()? {
        let (k, v) = e?;
        out.push((*k.value(), v.value().to_vec()));
    }
    Ok(out)
}

/// Removes items (a row that no longer verifies, for instance).
pub fn remove(db: &Database, ids: &[[u8; 32]]) -> Result<(), Error> {
    let tx = db.redb().begin_write()?;
    {
        let mut t = tx.open_table(ITEMS)?;
        for id in ids {
            t.remove(id)?;
        }
    }
    tx.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_survive_reopen_after_flush() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("db");
        {
            let db = Database::open(&p).unwrap();
            put_many(&db, &[([1; 32], b"one".to_vec())], true).unwrap();
            put_many(
                &db,
                &[([2; 32], b"two".to_vec()), ([3; 32], b"x".to_vec())],
                false,
            )
            .unwrap();
            db.flush().unwrap();
            remove(&db, &[[3; 32]]).unwrap();
        }
        let db = Database::open(&p).unwrap();
        assert_eq!(
            all(&db).unwrap(),
            vec![([1; 32], b"one".to_vec()), ([2; 32], b"two".to_vec())]
        );
    }
}
