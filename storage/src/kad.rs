//! Kademlia's record store on redb.
//!
//! Tables (keys and values are bytes; values are canonical CBOR of the structs below):
//! - `kad-records-1`: record key → [`StoredRecord`];
//! - `kad-providers-1`: `u16_be(len(key)) || key || peer id bytes` → [`StoredProvider`], so the
//!   providers of one key are one prefix range;
//! - `kad-provider-keys-1`: record key → number of providers stored for it (bounds the number
//!   of distinct keys in O(1));
//! - `kad-provided-1`: record key → `()`, the keys this node provides itself.
//!
//! The store runs on the swarm task, synchronously, so writes commit with
//! `Durability::None` (no fsync) and the node calls [`crate::Database::flush`] off the task every
//! few seconds and at shutdown. A crash loses at most the DHT writes of that window, which
//! Kademlia's republishing restores; nothing acknowledged to a user depends on it.
//!
//! `Record::expires` is a monotonic `Instant`; it is stored as unix milliseconds and converted
//! back on read, so expiry survives a restart. Expired entries are swept at open.
//!
//! Policy as libp2p's `MemoryStore`: `put` refuses values over `max_value_bytes` and new keys
//! over `max_records`; `add_provider` refuses new keys over `max_provider_keys`, updates an
//! existing provider in place and silently drops a new one when the key has
//! `max_providers_per_key` already (Sybil mitigation), except this node itself, which is bounded
//! by `max_provided_keys`. The trait has no I/O error; redb errors are logged and reported as
//! `MaxRecords` / `MaxProvidedKeys`.

use std::{
    borrow::Cow,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use libp2p::{
    Multiaddr, PeerId,
    kad::{
        ProviderRecord, Record, RecordKey,
        store::{self, RecordStore},
    },
};
use redb::{
    ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition, WriteTransaction,
};
use serde::{Deserialize, Serialize};

use crate::{Database, Error};

const RECORDS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("kad-records-1");
const PROVIDERS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("kad-providers-1");
const PROVIDER_KEYS: TableDefinition<&[u8], u32> = TableDefinition::new("kad-provider-keys-1");
const PROVIDED: TableDefinition<&[u8], ()> = TableDefinition::new("kad-provided-1");

/// The largest stored value or address list decoded back, a guard against a damaged file.
const MAX_STORED: usize = 1 << 20;

pub(crate) fn create_tables(tx: &WriteTransaction) -> Result<(), Error> {
    tx.open_table(RECORDS)?;
    tx.open_table(PROVIDERS)?;
    tx.open_table(PROVIDER_KEYS)?;
    tx.open_table(PROVIDED)?;
    Ok(())
}

/// Limits of the store.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    pub max_records: usize,
    pub max_value_bytes: usize,
    pub max_provider_keys: usize,
    pub max_providers_per_key: usize,
    pub max_provided_keys: usize,
    /// Per-prefix overrides of `max_providers_per_key` (first match wins), for namespaces whose
    /// keys are meant to have many providers (coarse geo cells).
    pub provider_caps: Vec<(Vec<u8>, usize)>,
}

impl Config {
    fn providers_cap(&self, key: &[u8]) -> usize {
        self.provider_caps
            .iter()
            .find(|(p, _)| key.starts_with(p))
            .map_or(self.max_providers_per_key, |(_, n)| *n)
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_records: 65_536,
            max_value_bytes: 65 * 1024,
            max_provider_keys: 65_536,
            max_providers_per_key: libp2p::kad::K_VALUE.get(),
            max_provided_keys: 4_096,
            provider_caps: Vec::new(),
        }
    }
}

#[derive(Serialize, Deserialize)]
struct StoredRecord {
    #[serde(with = "serde_bytes")]
    value: Vec<u8>,
    #[serde(with = "serde_bytes")]
    publisher: Option<Vec<u8>>,
    expires_ms: Option<u64>,
}

#[derive(Serialize, Deserialize)]
struct StoredProvider {
    expires_ms: Option<u64>,
    addrs: Vec<serde_bytes::ByteBuf>,
}

fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    cbor4ii::serde::to_vec(Vec::new(), v).unwrap_or_default()
}

fn decode<T: for<'de> Deserialize<'de>>(b: &[u8]) -> Option<T> {
    if b.len() > MAX_STORED {
        return None;
    }
    cbor4ii::serde::from_slice(b).ok()
}

fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Converts a monotonic deadline to unix milliseconds.
fn instant_to_unix(t: Instant) -> u64 {
    let now = Instant::now();
    let unix = now_unix_ms();
    if t >= now {
        unix.saturating_add(t.duration_since(now).as_millis() as u64)
    } else {
        unix.saturating_sub(now.duration_since(t).as_millis() as u64)
    }
}

/// Converts unix milliseconds back to a monotonic deadline (clamped to now when past).
fn unix_to_instant(ms: u64) -> Instant {
    let unix = now_unix_ms();
    let now = Instant::now();
    now.checked_add(Duration::from_millis(ms.saturating_sub(unix)))
        .unwrap_or(now)
}

fn provider_key(key: &[u8], peer: &PeerId) -> Vec<u8> {
    let len = u16::try_from(key.len()).unwrap_or(u16::MAX);
    let mut k = Vec::with_capacity(2 + key.len() + 38);
    k.extend_from_slice(&len.to_be_bytes());
    k.extend_from_slice(key);
    k.extend_from_slice(&peer.to_bytes());
    k
}

fn provider_prefix(key: &[u8]) -> Vec<u8> {
    let len = u16::try_from(key.len()).unwrap_or(u16::MAX);
    let mut k = Vec::with_capacity(2 + key.len());
    k.extend_from_slice(&len.to_be_bytes());
    k.extend_from_slice(key);
    k
}

/// Counters of what the store holds, for `leafnet status`.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Stats {
    pub records: u64,
    pub provider_keys: u64,
    pub provided_keys: u64,
}

/// The redb-backed Kademlia store of one node.
#[derive(Debug)]
pub struct Store {
    db: Database,
    local: PeerId,
    config: Config,
    dirty: std::sync::atomic::AtomicBool,
}

impl Store {
    /// Opens the store for `local` and sweeps what expired while the node was down.
    pub fn new(db: Database, local: PeerId, config: Config) -> Result<Self, Error> {
        let s = Self {
            db,
            local,
            config,
            dirty: Default::default(),
        };
        s.sweep_expired()?;
        Ok(s)
    }

    /// The database this store lives in.
    pub fn database(&self) -> &Database {
        &self.db
    }

    /// Whether anything was written since the last call (the node then flushes).
    pub fn take_dirty(&self) -> bool {
        self.dirty.swap(false, std::sync::atomic::Ordering::Relaxed)
    }

    /// Removes every expired record and provider record; returns how many.
    pub fn sweep_expired(&self) -> Result<usize, Error> {
        let now = now_unix_ms();
        let mut tx = self.db.redb().begin_write()?;
        let mut n = 0;
        {
            let mut records = tx.open_table(RECORDS)?;
            let dead: Vec<Vec<u8>> = records
                .iter()?
                .filter_map(Result::ok)
                .filter(|(_, v)| {
                    decode::<StoredRecord>(v.value())
                        .is_none_or(|r| r.expires_ms.is_some_and(|e| e <= now))
                })
                .map(|(k, _)| k.value().to_vec())
                .collect();
            for k in &dead {
                records.remove(k.as_slice())?;
            }
            n += dead.len();
            let providers = tx.open_table(PROVIDERS)?;
            let dead: Vec<Vec<u8>> = providers
                .iter()?
                .filter_map(Result::ok)
                .filter(|(_, v)| {
                    decode::<StoredProvider>(v.value())
                        .is_none_or(|r| r.expires_ms.is_some_and(|e| e <= now))
                })
                .map(|(k, _)| k.value().to_vec())
                .collect();
            drop(providers);
            for k in &dead {
                if let Some((key, peer)) = split_provider_key(k) {
                    remove_provider_tx(&tx, &key, &peer, self.local)?;
                }
            }
            n += dead.len();
        }
        tx.set_durability(redb::Durability::None)
            .map_err(|e| Error::Db(e.into()))?;
        tx.commit()?;
        Ok(n)
    }

    /// What the store holds.
    pub fn stats(&self) -> Result<Stats, Error> {
        let tx = self.db.redb().begin_read()?;
        Ok(Stats {
            records: tx.open_table(RECORDS)?.len()?,
            provider_keys: tx.open_table(PROVIDER_KEYS)?.len()?,
            provided_keys: tx.open_table(PROVIDED)?.len()?,
        })
    }

    fn write(&self, f: impl FnOnce(&WriteTransaction) -> Result<(), Error>) -> Result<(), Error> {
        let mut tx = self.db.redb().begin_write()?;
        tx.set_durability(redb::Durability::None)
            .map_err(|e| Error::Db(e.into()))?;
        f(&tx)?;
        tx.commit()?;
        self.dirty.store(true, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    fn try_get(&self, k: &RecordKey) -> Result<Option<Record>, Error> {
        let tx = self.db.redb().begin_read()?;
        let t = tx.open_table(RECORDS)?;
        let Some(v) = t.get(k.as_ref())? else {
            return Ok(None);
        };
        Ok(decode::<StoredRecord>(v.value()).map(|r| to_record(k.clone(), r)))
    }

    fn try_put(&self, r: Record) -> Result<store::Result<()>, Error> {
        if r.value.len() >= self.config.max_value_bytes {
            return Ok(Err(store::Error::ValueTooLarge));
        }
        let mut outcome = Ok(());
        self.write(|tx| {
            let mut t = tx.open_table(RECORDS)?;
            let exists = t.get(r.key.as_ref())?.is_some();
            if !exists && t.len()? as usize >= self.config.max_records {
                outcome = Err(store::Error::MaxRecords);
                return Ok(());
            }
            let stored = StoredRecord {
                value: r.value.clone(),
                publisher: r.publisher.map(|p| p.to_bytes()),
                expires_ms: r.expires.map(instant_to_unix),
            };
            t.insert(r.key.as_ref(), encode(&stored).as_slice())?;
            Ok(())
        })?;
        Ok(outcome)
    }

    fn try_records(&self) -> Result<Vec<Record>, Error> {
        let tx = self.db.redb().begin_read()?;
        let t = tx.open_table(RECORDS)?;
        let mut out = Vec::new();
        for e in t.iter()? {
            let (k, v) = e?;
            if let Some(r) = decode::<StoredRecord>(v.value()) {
                out.push(to_record(RecordKey::new(&k.value()), r));
            }
        }
        Ok(out)
    }

    fn try_add_provider(&self, rec: ProviderRecord) -> Result<store::Result<()>, Error> {
        let key = rec.key.to_vec();
        let is_local = rec.provider == self.local;
        let mut outcome = Ok(());
        self.write(|tx| {
            let mut counts = tx.open_table(PROVIDER_KEYS)?;
            let count = counts.get(key.as_slice())?.map(|v| v.value()).unwrap_or(0);
            let pk = provider_key(&key, &rec.provider);
            let mut providers = tx.open_table(PROVIDERS)?;
            let existing = providers.get(pk.as_slice())?.is_some();
            if !existing {
                if count == 0 && counts.len()? as usize >= self.config.max_provider_keys {
                    outcome = Err(store::Error::MaxProvidedKeys);
                    return Ok(());
                }
                if is_local {
                    let provided = tx.open_table(PROVIDED)?;
                    if provided.len()? as usize >= self.config.max_provided_keys {
                        outcome = Err(store::Error::MaxProvidedKeys);
                        return Ok(());
                    }
                } else if count as usize >= self.config.providers_cap(&key) {
                    // Full: drop silently, as MemoryStore does.
                    return Ok(());
                }
                counts.insert(key.as_slice(), count.saturating_add(1))?;
            }
            let stored = StoredProvider {
                expires_ms: rec.expires.map(instant_to_unix),
                addrs: rec
                    .addresses
                    .iter()
                    .map(|a| serde_bytes::ByteBuf::from(a.to_vec()))
                    .collect(),
            };
            providers.insert(pk.as_slice(), encode(&stored).as_slice())?;
            if is_local {
                tx.open_table(PROVIDED)?.insert(key.as_slice(), ())?;
            }
            Ok(())
        })?;
        Ok(outcome)
    }

    fn try_providers(&self, key: &RecordKey) -> Result<Vec<ProviderRecord>, Error> {
        let tx = self.db.redb().begin_read()?;
        let t = tx.open_table(PROVIDERS)?;
        let prefix = provider_prefix(key.as_ref());
        let mut out = Vec::new();
        for e in t.range(prefix.as_slice()..)? {
            let (k, v) = e?;
            let k = k.value();
            if !k.starts_with(&prefix) {
                break;
            }
            let Some(peer) = k
                .get(prefix.len()..)
                .and_then(|b| PeerId::from_bytes(b).ok())
            else {
                continue;
            };
            if let Some(p) = decode::<StoredProvider>(v.value()) {
                out.push(to_provider(key.clone(), peer, p));
            }
        }
        Ok(out)
    }

    fn try_provided(&self) -> Result<Vec<ProviderRecord>, Error> {
        let keys: Vec<Vec<u8>> = {
            let tx = self.db.redb().begin_read()?;
            let t = tx.open_table(PROVIDED)?;
            t.iter()?
                .filter_map(Result::ok)
                .map(|(k, _)| k.value().to_vec())
                .collect()
        };
        let mut out = Vec::with_capacity(keys.len());
        for k in keys {
            let key = RecordKey::new(&k);
            out.extend(
                self.try_providers(&key)?
                    .into_iter()
                    .filter(|p| p.provider == self.local),
            );
        }
        Ok(out)
    }
}

fn split_provider_key(k: &[u8]) -> Option<(Vec<u8>, PeerId)> {
    let len = u16::from_be_bytes([*k.first()?, *k.get(1)?]) as usize;
    let key = k.get(2..2 + len)?.to_vec();
    let peer = PeerId::from_bytes(k.get(2 + len..)?).ok()?;
    Some((key, peer))
}

fn remove_provider_tx(
    tx: &WriteTransaction,
    key: &[u8],
    peer: &PeerId,
    local: PeerId,
) -> Result<(), Error> {
    let removed = tx
        .open_table(PROVIDERS)?
        .remove(provider_key(key, peer).as_slice())?
        .is_some();
    if removed {
        let mut counts = tx.open_table(PROVIDER_KEYS)?;
        let c = counts.get(key)?.map(|v| v.value()).unwrap_or(0);
        if c <= 1 {
            counts.remove(key)?;
        } else {
            counts.insert(key, c - 1)?;
        }
    }
    if *peer == local {
        tx.open_table(PROVIDED)?.remove(key)?;
    }
    Ok(())
}

fn to_record(key: RecordKey, r: StoredRecord) -> Record {
    Record {
        key,
        value: r.value,
        publisher: r.publisher.and_then(|p| PeerId::from_bytes(&p).ok()),
        expires: r.expires_ms.map(unix_to_instant),
    }
}

fn to_provider(key: RecordKey, provider: PeerId, p: StoredProvider) -> ProviderRecord {
    ProviderRecord {
        key,
        provider,
        expires: p.expires_ms.map(unix_to_instant),
        addresses: p
            .addrs
            .into_iter()
            .filter_map(|b| Multiaddr::try_from(b.into_vec()).ok())
            .collect(),
    }
}

fn log_err<T>(op: &str, r: Result<T, Error>) -> Option<T> {
    r.map_err(|e| tracing::error!(op, error = %e, "kad store"))
        .ok()
}

impl RecordStore for Store {
    type RecordsIter<'a> = std::vec::IntoIter<Cow<'a, Record>>;
    type ProvidedIter<'a> = std::vec::IntoIter<Cow<'a, ProviderRecord>>;

    fn get(&self, k: &RecordKey) -> Option<Cow<'_, Record>> {
        let r = log_err("get", self.try_get(k)).flatten()?;
        if r.is_expired(Instant::now()) {
            return None;
        }
        Some(Cow::Owned(r))
    }

    fn put(&mut self, r: Record) -> store::Result<()> {
        log_err("put", self.try_put(r)).unwrap_or(Err(store::Error::MaxRecords))
    }

    fn remove(&mut self, k: &RecordKey) {
        log_err(
            "remove",
            self.write(|tx| {
                tx.open_table(RECORDS)?.remove(k.as_ref())?;
                Ok(())
            }),
        );
    }

    fn records(&self) -> Self::RecordsIter<'_> {
        log_err("records", self.try_records())
            .unwrap_or_default()
            .into_iter()
            .map(Cow::Owned)
            .collect::<Vec<_>>()
            .into_iter()
    }

    fn add_provider(&mut self, record: ProviderRecord) -> store::Result<()> {
        log_err("add_provider", self.try_add_provider(record))
            .unwrap_or(Err(store::Error::MaxProvidedKeys))
    }

    fn providers(&self, key: &RecordKey) -> Vec<ProviderRecord> {
        let now = Instant::now();
        log_err("providers", self.try_providers(key))
            .unwrap_or_default()
            .into_iter()
            .filter(|p| !p.is_expired(now))
            .collect()
    }

    fn provided(&self) -> Self::ProvidedIter<'_> {
        log_err("provided", self.try_provided())
            .unwrap_or_default()
            .into_iter()
            .map(Cow::Owned)
            .collect::<Vec<_>>()
            .into_iter()
    }

    fn remove_provider(&mut self, k: &RecordKey, p: &PeerId) {
        let local = self.local;
        log_err(
            "remove_provider",
            self.write(|tx| remove_provider_tx(tx, k.as_ref(), p, local)),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(dir: &tempfile::TempDir, local: PeerId, cfg: Config) -> Store {
        let db = Database::open(&dir.path().join("db.redb")).unwrap();
        Store::new(db, local, cfg).unwrap()
    }

    fn rec(key: &str, val: &[u8], ttl: Option<Duration>) -> Record {
        Record {
            key: RecordKey::new(&key),
            value: val.to_vec(),
            publisher: Some(PeerId::random()),
            expires: ttl.map(|t| Instant::now() + t),
        }
    }

    #[test]
    fn records_persist_across_reopen_with_expiry() {
        let dir = tempfile::tempdir().unwrap();
        let local = PeerId::random();
        let r = rec("/k1", b"v1", Some(Duration::from_secs(3600)));
        {
            let mut s = store(&dir, local, Config::default());
            s.put(r.clone()).unwrap();
            s.put(rec("/dead", b"x", Some(Duration::from_millis(1))))
                .unwrap();
            s.database().flush().unwrap();
        }
        std::thread::sleep(Duration::from_millis(5));
        let s = store(&dir, local, Config::default());
        let got = s.get(&r.key).unwrap().into_owned();
        assert_eq!(got.value, r.value);
        assert_eq!(got.publisher, r.publisher);
        let exp = got.expires.unwrap();
        let want = r.expires.unwrap();
        let diff = if exp > want { exp - want } else { want - exp };
        assert!(diff < Duration::from_secs(2), "expiry drifted by {diff:?}");
        assert!(s.get(&RecordKey::new(&"/dead")).is_none());
        assert_eq!(
            s.stats().unwrap().records,
            1,
            "expired record swept at open"
        );
        assert_eq!(s.records().count(), 1);
    }

    #[test]
    fn record_limits() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = Config {
            max_records: 2,
            max_value_bytes: 10,
            ..Config::default()
        };
        let mut s = store(&dir, PeerId::random(), cfg);
        assert!(matches!(
            s.put(rec("/a", &[0; 10], None)),
            Err(store::Error::ValueTooLarge)
        ));
        s.put(rec("/a", b"1", None)).unwrap();
        s.put(rec("/b", b"1", None)).unwrap();
        assert!(matches!(
            s.put(rec("/c", b"1", None)),
            Err(store::Error::MaxRecords)
        ));
        s.put(rec("/a", b"2", None)).unwrap(); // replacing is fine at the cap
        s.remove(&RecordKey::new(&"/a"));
        s.put(rec("/c", b"1", None)).unwrap();
    }

    #[test]
    fn providers_bounded_updated_and_persisted() {
        let dir = tempfile::tempdir().unwrap();
        let local = PeerId::random();
        let key = RecordKey::new(&"/leafnet/dht/x");
        let addr: Multiaddr = "/ip4/127.0.0.1/tcp/7800".parse().unwrap();
        let cfg = Config {
            max_providers_per_key: 2,
            provider_caps: vec![(b"/wide/".to_vec(), 3)],
            ..Config::default()
        };
        let others: Vec<PeerId> = (0..3).map(|_| PeerId::random()).collect();
        {
            let mut s = store(&dir, local, cfg.clone());
            for p in &others {
                s.add_provider(ProviderRecord::new(key.clone(), *p, vec![addr.clone()]))
                    .unwrap();
            }
            assert_eq!(s.providers(&key).len(), 2, "third provider dropped");
            // the node itself is always stored
            s.add_provider(ProviderRecord::new(key.clone(), local, vec![addr.clone()]))
                .unwrap();
            assert_eq!(s.providers(&key).len(), 3);
            // update in place
            let a2: Multiaddr = "/ip4/127.0.0.1/tcp/9".parse().unwrap();
            s.add_provider(ProviderRecord::new(
                key.clone(),
                others[0],
                vec![a2.clone()],
            ))
            .unwrap();
            let ps = s.providers(&key);
            assert_eq!(ps.len(), 3);
            assert!(
                ps.iter()
                    .any(|p| p.provider == others[0] && p.addresses == vec![a2.clone()])
            );
            s.database().flush().unwrap();
        }
        let mut s = store(&dir, local, cfg);
        assert_eq!(s.providers(&key).len(), 3);
        let provided: Vec<_> = s.provided().collect();
        assert_eq!(provided.len(), 1);
        assert_eq!(provided[0].provider, local);
        assert_eq!(
            s.stats().unwrap(),
            Stats {
                records: 0,
                provider_keys: 1,
                provided_keys: 1
            }
        );
        s.remove_provider(&key, &local);
        assert_eq!(s.provided().count(), 0);
        s.remove_provider(&key, &others[0]);
        s.remove_provider(&key, &others[1]);
        assert_eq!(s.stats().unwrap().provider_keys, 0);
        // a prefix with its own cap
        let wide = RecordKey::new(&"/wide/x");
        for _ in 0..5 {
            s.add_provider(ProviderRecord::new(wide.clone(), PeerId::random(), vec![]))
                .unwrap();
        }
        assert_eq!(s.providers(&wide).len(), 3);
    }

    #[test]
    fn provider_key_roundtrip() {
        let p = PeerId::random();
        let k = provider_key(b"abc", &p);
        assert_eq!(split_provider_key(&k), Some((b"abc".to_vec(), p)));
        assert_eq!(split_provider_key(&[0, 9, 1]), None);
    }
}
