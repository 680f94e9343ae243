//! leafnet's storage: one redb file per node.
//!
//! - [`Database`]: opens (or creates) the file, checks the schema version, names every table;
//! - [`kad::Store`]: Kademlia's `RecordStore` on redb, so records and provider records survive a
//!   restart;
//! - [`Error`]: what can go wrong, one variant a cause.
//!
//! Table names carry a version (`kad-records-1`); `docs/storage.md` lists every table with its
//! key and value encoding. Tests are next to the code and in `tests/tests/restart.rs`.

#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

pub mod kad;
pub mod leaf;
pub mod mint;
pub mod profiles;

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use redb::{ReadableDatabase, ReadableTable, TableDefinition};

/// The schema this build reads and writes.
pub const SCHEMA_VERSION: u64 = 1;

/// `meta-1`: `"schema"` → schema version.
pub(crate) const META: TableDefinition<&str, u64> = TableDefinition::new("meta-1");

/// Storage errors.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Another process holds the database.
    #[error(
        "database {0} is in use by another process (is a node already running on this data dir?)"
    )]
    InUse(PathBuf),
    /// The file exists but is not a redb database this build can read.
    #[error("database {path} is corrupt or not a leafnet database: {problem}")]
    Corrupt { path: PathBuf, problem: String },
    /// The file was written by a different schema version.
    #[error("database {path} has schema version {found}, this build needs {expected}")]
    Schema {
        path: PathBuf,
        found: u64,
        expected: u64,
    },
    /// An I/O or redb error during operation.
    #[error("database error: {0}")]
    Db(#[from] redb::Error),
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for Error {
            fn from(e: $t) -> Self {
                Error::Db(e.into())
            }
        }
    )*};
}
from_redb!(
    redb::SetDurabilityError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::DatabaseError
);

/// The node's database.
#[derive(Clone)]
pub struct Database {
    inner: Arc<redb::Database>,
    path: PathBuf,
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database")
            .field("path", &self.path)
            .finish()
    }
}

impl Database {
    /// Opens the database at `path`, creating it if the file does not exist. An existing file
    /// that is not a readable leafnet database is never overwritten.
    pub fn open(path: &Path) -> Result<Self, Error> {
        let res = if path.exists() {
            redb::Database::open(path)
        } else {
            redb::Database::create(path)
        };
        let inner = res.map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => Error::InUse(path.to_owned()),
            redb::DatabaseError::Storage(redb::StorageError::Io(io)) => Error::Corrupt {
                path: path.to_owned(),
                problem: io.to_string(),
            },
            other => Error::Corrupt {
                path: path.to_owned(),
                problem: other.to_string(),
            },
        })?;
        let db = Self {
            inner: Arc::new(inner),
            path: path.to_owned(),
        };
        db.init()?;
        Ok(db)
    }

    fn init(&self) -> Result<(), Error> {
        let tx = self.inner.begin_write()?;
        {
            let mut meta = tx.open_table(META)?;
            let found = meta.get("schema")?.map(|v| v.value());
            match found {
                None => {
                    meta.insert("schema", SCHEMA_VERSION)?;
                }
                Some(v) if v == SCHEMA_VERSION => {}
                Some(found) => {
                    return Err(Error::Schema {
                        path: self.path.clone(),
                        found,
                        expected: SCHEMA_VERSION,
                    });
                }
            }
            kad::create_tables(&tx)?;
            profiles::create_tables(&tx)?;
            mint::create_tables(&tx)?;
            leaf::create_tables(&tx)?;
        }
        tx.commit()?;
        Ok(())
    }

    /// The redb handle, for crates that add their own tables.
    pub fn redb(&self) -> &redb::Database {
        &self.inner
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Makes every earlier `Durability::None` commit durable (one fsync).
    pub fn flush(&self) -> Result<(), Error> {
        let mut tx = self.inner.begin_write()?;
        tx.set_durability(redb::Durability::Immediate)
            .map_err(|e| Error::Db(e.into()))?;
        tx.commit()?;
        Ok(())
    }

    /// The schema version stored in the file.
    pub fn schema_version(&self) -> Result<u64, Error> {
        let tx = self.inner.begin_read()?;
        let meta = tx.open_table(META)?;
        Ok(meta.get("schema")?.map(|v| v.value()).unwrap_or(0))
    }

    /// Sets the stored schema version (tests of the version check use it).
    #[doc(hidden)]
    pub fn force_schema_version(&self, v: u64) -> Result<(), Error> {
        let tx = self.inner.begin_write()?;
        tx.open_table(META)?.insert("schema", v)?;
        tx.commit()?;
        Ok(())
    }

    /// Size of the file in bytes.
    pub fn file_size(&self) -> u64 {
        std::fs::metadata(&self.path).map(|m| m.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_version_is_checked() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.redb");
        let db = Database::open(&p).unwrap();
        assert_eq!(db.schema_version().unwrap(), SCHEMA_VERSION);
        db.force_schema_version(99).unwrap();
        drop(db);
        let err = Database::open(&p).unwrap_err();
        assert!(matches!(err, Error::Schema { found: 99, .. }), "{err}");
    }

    #[test]
    fn corrupt_file_is_refused_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.redb");
        let junk = vec![0x5au8; 8192];
        std::fs::write(&p, &junk).unwrap();
        let err = Database::open(&p).unwrap_err();
        assert!(matches!(err, Error::Corrupt { .. }), "{err}");
        assert_eq!(
            std::fs::read(&p).unwrap(),
            junk,
            "a corrupt file must not be touched"
        );
    }

    #[test]
    fn second_open_is_in_use() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.redb");
        let _db = Database::open(&p).unwrap();
        assert!(matches!(Database::open(&p), Err(Error::InUse(_))));
    }
}
