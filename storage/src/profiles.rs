//! Hosted profiles: `profiles-hosted-1`: account id (32 bytes) → signed profile bytes.
//!
//! Written with `Durability::Immediate`: hosting is acknowledged to the user (or to the profile's
//! owner) only after this commit.

use redb::{ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};

use crate::{Database, Error};

const HOSTED: TableDefinition<&[u8], &[u8]> = TableDefinition::new("profiles-hosted-1");

pub(crate) fn create_tables(tx: &WriteTransaction) -> Result<(), Error> {
    tx.open_table(HOSTED)?;
    Ok(())
}

/// Stores (or replaces) a hosted profile durably.
pub fn put(db: &Database, account: &[u8; 32], signed: &[u8]) -> Result<(), Error> {
    let tx = db.redb().begin_write()?;
    tx.open_table(HOSTED)?.insert(account.as_slice(), signed)?;
    tx.commit()?;
    Ok(())
}

/// Removes a hosted profile durably.
pub fn remove(db: &Database, account: &[u8; 32]) -> Result<(), Error> {
    let tx = db.redb().begin_write()?;
    tx.open_table(HOSTED)?.remove(account.as_slice())?;
    tx.commit()?;
    Ok(())
}

/// Every hosted profile's signed bytes.
pub fn all(db: &Database) -> Result<Vec<Vec<u8>>, Error> {
    let tx = db.redb().begin_read()?;
    let t = tx.open_table(HOSTED)?;
    let mut out = Vec::new();
    for e in t.iter()? {
        let (_, v) = e?;
        out.push(v.value().to_vec());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_remove_all_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("db");
        {
            let db = Database::open(&p).unwrap();
            put(&db, &[1; 32], b"one").unwrap();
            put(&db, &[2; 32], b"two").unwrap();
            put(&db, &[1; 32], b"uno").unwrap();
            remove(&db, &[2; 32]).unwrap();
        }
        let db = Database::open(&p).unwrap();
        assert_eq!(all(&db).unwrap(), vec![b"uno".to_vec()]);
    }
}
