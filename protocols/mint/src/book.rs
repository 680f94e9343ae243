//! The book: what a node has seen, per series, bounded.
//!
//! Sans-IO: the node decodes items with [`Item::decode`] (which verifies everything), adds them
//! with [`Book::add`] and acts on the answer ([`Added`]). The book itself never sees unverified
//! bytes: an [`Item`] is made only by full verification or by the node's own signing.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    sync::OnceLock,
};

use leafnet_wire::{
    SignedEnvelope, cbor,
    claim::{MAX_PROOF, Proof},
};
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use crate::{
    MintError, SeriesKey, SignedObservation, SignedStatement,
    observation::{MAX_OBSERVATION, ObservationBody},
    sha256,
    sync::{BUCKETS, BucketSum, Digest, bucket_hash},
};

/// The largest encoded [`Item`], in bytes (also the gossip message cap).
pub const MAX_ITEM: usize = 20 * 1024;
/// The most proofs kept per series: one proves the issuer dishonest; a few more let nodes that
/// made different ones converge without keeping every pair of an issuer's many statements.
pub const MAX_PROOFS_PER_SERIES: usize = 4;

/// Kind tags of item ids (and of [`message_id`]).
const TAG_OBSERVATION: u8 = 1;
const TAG_PROOF: u8 = 2;
const TAG_UNKNOWN: u8 = 0xff;

/// The encoding of an [`Item`]: the kind, then the item's own signed or proof bytes.
#[derive(Debug, Serialize, Deserialize)]
enum Wire {
    Observation(ByteBuf),
    Proof(ByteBuf),
}

/// The item id of an observation: observer and statement, not the time or the signature, so
/// one observer noting one statement twice is one item (and one gossip message), everywhere.
fn observation_id(observer: &[u8; 32], statement: &[u8]) -> [u8; 32] {
    sha256(&[&[TAG_OBSERVATION], observer, &sha256(&[statement])])
}

fn proof_item_id(proof: &[u8]) -> [u8; 32] {
    sha256(&[&[TAG_PROOF], proof])
}

/// The gossip message id of `data`, computed *without* verifying anything: equal to
/// [`Item::id`] for a valid item; for other bytes, a hash of the bytes.
///
/// A forged observation naming an honest (observer, statement) gets the honest message's id; it
/// is rejected (and its sender banned) wherever it arrives first, and anti-entropy still carries
/// the honest one, so that costs a delay at most.
pub fn message_id(data: &[u8]) -> [u8; 32] {
    match cbor::decode::<Wire>(data, MAX_ITEM) {
        Ok(Wire::Observation(b)) => {
            if let Ok(env) = cbor::decode::<SignedEnvelope>(&b, MAX_OBSERVATION)
                && let Ok(body) = cbor::decode::<ObservationBody>(&env.payload, MAX_OBSERVATION)
            {
                return observation_id(&env.signer, &body.statement);
            }
        }
        Ok(Wire::Proof(b)) => return proof_item_id(&b),
        Err(_) => {}
    }
    sha256(&[&[TAG_UNKNOWN], data])
}

/// An equivocation proof about a mint statement series, verified: only [`VerifiedProof::verify`]
/// (and the book, from two verified statements) make one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedProof(Box<Parts>);

/// Boxed: two statements make a proof ~400 bytes, which every [`Item`] and [`Added`] would
/// otherwise carry.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Parts {
    proof: Proof,
    key: SeriesKey,
    a: SignedStatement,
    b: SignedStatement,
}

impl VerifiedProof {
    /// Verifies a proof completely (both statements, their conflict, canonical order).
    pub fn verify(p: Proof) -> Result<Self, MintError> {
        let (a, b) = p.verify::<SignedStatement>()?;
        Ok(Self::from_parts(p, a, b))
    }

    fn from_parts(proof: Proof, a: SignedStatement, b: SignedStatement) -> Self {
        Self(Box::new(Parts {
            key: a.key(),
            proof,
            a,
            b,
        }))
    }

    /// Decodes (at most [`MAX_PROOF`] bytes) and verifies a proof.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, MintError> {
        if bytes.len() > MAX_PROOF {
            return Err(MintError::TooLarge {
                what: "proof",
                len: bytes.len(),
                max: MAX_PROOF,
            });
        }
        Self::verify(Proof::decode(bytes)?)
    }

    /// The proof from two already verified statements, if they conflict.
    fn from_statements(x: &SignedStatement, y: &SignedStatement) -> Option<Self> {
        let proof = Proof::new(x, y).ok()?;
        let (a, b) = if proof.a == x.as_bytes() {
            (x.clone(), y.clone())
        } else {
            (y.clone(), x.clone())
        };
        Some(Self::from_parts(proof, a, b))
    }

    /// The series the issuer equivocated on.
    pub fn key(&self) -> &SeriesKey {
        &self.0.key
    }

    /// The two mint hashes the issuer signed, in the proof's order.
    pub fn hashes(&self) -> ([u8; 32], [u8; 32]) {
        (
            self.0.a.statement().mint_hash,
            self.0.b.statement().mint_hash,
        )
    }

    /// The two statements, in the proof's order.
    pub fn statements(&self) -> (&SignedStatement, &SignedStatement) {
        (&self.0.a, &self.0.b)
    }

    /// The portable proof.
    pub fn proof(&self) -> &Proof {
        &self.0.proof
    }

    /// The proof's id ([`Proof::id`]: SHA-256 of its bytes).
    pub fn id(&self) -> [u8; 32] {
        self.0.proof.id()
    }
}

/// What is gossiped, stored and synced: an observation or an equivocation proof, verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// An observer saw a statement.
    Observation(SignedObservation),
    /// An issuer equivocated.
    Proof(VerifiedProof),
}

impl Item {
    /// The item's id, by which books deduplicate and reconcile.
    ///
    /// A proof: SHA-256 of `2 || proof bytes`. An observation: SHA-256 of
    /// `1 || observer || SHA-256(statement bytes)`; the observation time and signature are left
    /// out so that re-observing is idempotent and two books never hold two versions of one fact
    /// under different ids (which would never reconcile).
    pub fn id(&self) -> [u8; 32] {
        match self {
            Item::Observation(o) => observation_id(&o.observer(), o.statement().as_bytes()),
            Item::Proof(p) => proof_item_id(&p.proof().to_bytes()),
        }
    }

    /// Canonical bytes: CBOR of `{"Observation": signed bytes}` or `{"Proof": proof bytes}`.
    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            Item::Observation(o) => Self::raw_observation(o.as_bytes()),
            Item::Proof(p) => Self::raw_proof(&p.proof().to_bytes()),
        }
    }

    /// Decodes (at most [`MAX_ITEM`] bytes) and fully verifies an item.
    pub fn decode(bytes: &[u8]) -> Result<Item, MintError> {
        Self::decode_with(bytes, &|_| None)
    }

    /// [`Item::decode`], skipping the verification of statements `known` vouches for (see
    /// [`SignedObservation::open_with`]).
    pub fn decode_with(
        bytes: &[u8],
        known: &dyn Fn(&[u8; 32]) -> Option<SignedStatement>,
    ) -> Result<Item, MintError> {
        if bytes.len() > MAX_ITEM {
            return Err(MintError::TooLarge {
                what: "item",
                len: bytes.len(),
                max: MAX_ITEM,
            });
        }
        Ok(match cbor::decode::<Wire>(bytes, MAX_ITEM)? {
            Wire::Observation(b) => Item::Observation(SignedObservation::open_with(&b, known)?),
            Wire::Proof(b) => Item::Proof(VerifiedProof::from_bytes(&b)?),
        })
    }

    /// Item bytes around any observation bytes, unchecked (for tests and tools; see
    /// [`SignedObservation::seal_raw`]).
    pub fn raw_observation(observation: &[u8]) -> Vec<u8> {
        cbor::encode(&Wire::Observation(ByteBuf::from(observation)))
    }

    /// Item bytes around any proof bytes, unchecked (for tests and tools).
    pub fn raw_proof(proof: &[u8]) -> Vec<u8> {
        cbor::encode(&Wire::Proof(ByteBuf::from(proof)))
    }
}

/// The bounds of a [`Book`]; what goes beyond one is refused with [`Added::Full`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BookLimits {
    /// Items (observations and proofs) in all.
    pub max_items: usize,
    /// Distinct (issuer, asset, series).
    pub max_series: usize,
    /// Distinct mint hashes per series (two already prove an equivocation).
    pub max_hashes_per_series: usize,
    /// Distinct observers per mint hash.
    pub max_observers_per_hash: usize,
}

impl Default for BookLimits {
    fn default() -> Self {
        Self {
            max_items: 1_000_000,
            max_series: 100_000,
            max_hashes_per_series: 8,
            max_observers_per_hash: 10_000,
        }
    }
}

/// What [`Book::add`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Added {
    /// Stored.
    New,
    /// Already held (same item id); nothing changed.
    Duplicate,
    /// Stored, and it revealed an equivocation: the first proof for its series, either made
    /// here from two observations (and stored too) or the proof item itself.
    NewEquivocation(VerifiedProof),
    /// Valid, but a limit of the book refused it.
    Full,
}

/// One mint hash of a series.
#[derive(Debug)]
struct Seen {
    /// The first statement seen with this hash (the half of any proof made here).
    statement: SignedStatement,
    observers: BTreeSet<[u8; 32]>,
    first_observed_ms: Option<u64>,
}

/// One series.
#[derive(Debug, Default)]
struct Series {
    hashes: BTreeMap<[u8; 32], Seen>,
    /// Item ids of the proofs held, at most [`MAX_PROOFS_PER_SERIES`].
    proofs: Vec<[u8; 32]>,
}

/// What a node has seen: items by id, per series the hashes and their distinct observers, the
/// proofs, and the per-bucket id sets of the sync digest. Bounded by [`BookLimits`].
#[derive(Debug)]
pub struct Book {
    limits: BookLimits,
    items: HashMap<[u8; 32], Item>,
    series: BTreeMap<SeriesKey, Series>,
    equivocators: BTreeSet<[u8; 32]>,
    /// Item ids by bucket (`id[0]`), sorted.
    buckets: Vec<BTreeSet<[u8; 32]>>,
    /// Each bucket's digest hash, computed on demand and reset when the bucket changes.
    bucket_hashes: Vec<OnceLock<[u8; 32]>>,
}

/// Per series: the hashes seen and by how many observers, and whether the issuer equivocated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeriesStatus {
    /// The issuer's key, hex.
    pub issuer: String,
    /// The asset id.
    pub asset: String,
    /// The series.
    pub series: u64,
    /// The hashes seen, most observed first.
    pub hashes: Vec<HashSeen>,
    /// A proof of equivocation is held for this series.
    pub equivocation: bool,
    /// The id of that proof ([`VerifiedProof::id`], hex).
    pub proof_id: Option<String>,
}

/// One mint hash of a series.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HashSeen {
    /// The mint hash, hex.
    pub mint_hash: String,
    /// Distinct observers (observer keys) of statements with this hash; 0 when known only from
    /// a proof.
    pub observers: usize,
    /// The id of the first statement seen with this hash ([`SignedStatement::id`], hex).
    pub statement_id: String,
    /// The earliest time an observer says it saw this hash (unix ms, the observers' clocks).
    pub first_observed_ms: Option<u64>,
}

impl Book {
    /// An empty book.
    pub fn new(limits: BookLimits) -> Self {
        Self {
            limits,
            items: HashMap::new(),
            series: BTreeMap::new(),
            equivocators: BTreeSet::new(),
            buckets: vec![BTreeSet::new(); BUCKETS],
            bucket_hashes: (0..BUCKETS).map(|_| OnceLock::new()).collect(),
        }
    }

    /// Adds a verified item, idempotently by [`Item::id`].
    ///
    /// An observation whose statement's hash differs from one already seen for its series (and
    /// the series has no proof yet) makes a proof, stores it as an item too and returns
    /// [`Added::NewEquivocation`]; that needs room for both items. A proof item for a series with
    /// no proof yet is [`Added::NewEquivocation`] as well; with a proof already it is
    /// [`Added::New`] (up to [`MAX_PROOFS_PER_SERIES`]).
    pub fn add(&mut self, item: Item) -> Added {
        let id = item.id();
        if self.items.contains_key(&id) {
            return Added::Duplicate;
        }
        if self.items.len() >= self.limits.max_items {
            return Added::Full;
        }
        match item {
            Item::Observation(o) => self.add_observation(id, o),
            Item::Proof(p) => self.add_proof(id, p),
        }
    }

    fn add_observation(&mut self, id: [u8; 32], o: SignedObservation) -> Added {
        let st = o.statement();
        let key = st.key();
        let hash = st.statement().mint_hash;
        let observer = o.observer();
        // Check every limit before changing anything.
        let series = self.series.get(&key);
        if series.is_none() && self.series.len() >= self.limits.max_series {
            return Added::Full;
        }
        let seen = series.and_then(|s| s.hashes.get(&hash));
        let proof = match seen {
            Some(seen) => {
                if !seen.observers.contains(&observer)
                    && seen.observers.len() >= self.limits.max_observers_per_hash
                {
                    return Added::Full;
                }
                None
            }
            None => {
                let hashes = series.map_or(0, |s| s.hashes.len());
                if hashes >= self.limits.max_hashes_per_series {
                    return Added::Full;
                }
                series
                    .filter(|s| s.proofs.is_empty())
                    .and_then(|s| s.hashes.values().next())
                    .and_then(|other| VerifiedProof::from_statements(&other.statement, st))
            }
        };
        if proof.is_some() && self.items.len() + 2 > self.limits.max_items {
            return Added::Full;
        }

        let seen = self
            .series
            .entry(key)
            .or_default()
            .hashes
            .entry(hash)
            .or_insert_with(|| Seen {
                statement: st.clone(),
                observers: BTreeSet::new(),
                first_observed_ms: None,
            });
        seen.observers.insert(observer);
        let at = o.observed_at_ms();
        seen.first_observed_ms = Some(seen.first_observed_ms.map_or(at, |t| t.min(at)));
        self.insert(id, Item::Observation(o));
        match proof {
            Some(p) => {
                let pid = Item::Proof(p.clone()).id();
                self.record_proof(pid, &p);
                self.insert(pid, Item::Proof(p.clone()));
                Added::NewEquivocation(p)
            }
            None => Added::New,
        }
    }

    fn add_proof(&mut self, id: [u8; 32], p: VerifiedProof) -> Added {
        let series = self.series.get(p.key());
        if series.is_none() && self.series.len() >= self.limits.max_series {
            return Added::Full;
        }
        let before = series.map_or(0, |s| s.proofs.len());
        if before >= MAX_PROOFS_PER_SERIES {
            return Added::Full;
        }
        self.record_proof(id, &p);
        let max_hashes = self.limits.max_hashes_per_series;
        let series = self.series.entry(p.key().clone()).or_default();
        let (a, b) = p.statements();
        for st in [a, b] {
            let hash = st.statement().mint_hash;
            if !series.hashes.contains_key(&hash) && series.hashes.len() < max_hashes {
                series.hashes.insert(
                    hash,
                    Seen {
                        statement: st.clone(),
                        observers: BTreeSet::new(),
                        first_observed_ms: None,
                    },
                );
            }
        }
        self.insert(id, Item::Proof(p.clone()));
        if before == 0 {
            Added::NewEquivocation(p)
        } else {
            Added::New
        }
    }

    /// Notes a proof (item id `id`) on its series and its issuer.
    fn record_proof(&mut self, id: [u8; 32], p: &VerifiedProof) {
        self.series
            .entry(p.key().clone())
            .or_default()
            .proofs
            .push(id);
        self.equivocators.insert(p.key().issuer);
    }

    fn insert(&mut self, id: [u8; 32], item: Item) {
        let b = usize::from(id[0]);
        self.buckets[b].insert(id);
        self.bucket_hashes[b] = OnceLock::new();
        self.items.insert(id, item);
    }

    /// Whether an item with this id is held.
    pub fn contains(&self, id: &[u8; 32]) -> bool {
        self.items.contains_key(id)
    }

    /// The item with this id.
    pub fn get(&self, id: &[u8; 32]) -> Option<&Item> {
        self.items.get(id)
    }

    /// Items held.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether no item is held.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Per series (ordered by issuer, asset, series): hashes with their distinct observer
    /// counts, and the proof if any; only `issuer`'s series when given.
    pub fn status(&self, issuer: Option<&[u8; 32]>) -> Vec<SeriesStatus> {
        let range = match issuer {
            Some(i) => self.series.range(
                SeriesKey {
                    issuer: *i,
                    asset: String::new(),
                    series: 0,
                }..,
            ),
            None => self.series.range(..),
        };
        range
            .take_while(|(k, _)| issuer.is_none_or(|i| k.issuer == *i))
            .map(|(k, s)| {
                let mut hashes: Vec<HashSeen> = s
                    .hashes
                    .iter()
                    .map(|(h, seen)| HashSeen {
                        mint_hash: hex::encode(h),
                        observers: seen.observers.len(),
                        statement_id: hex::encode(seen.statement.id()),
                        first_observed_ms: seen.first_observed_ms,
                    })
                    .collect();
                hashes
                    .sort_by(|x, y| (y.observers, &x.mint_hash).cmp(&(x.observers, &y.mint_hash)));
                let proof_id = s.proofs.first().and_then(|id| match self.items.get(id) {
                    Some(Item::Proof(p)) => Some(hex::encode(p.id())),
                    _ => None,
                });
                SeriesStatus {
                    issuer: hex::encode(k.issuer),
                    asset: k.asset.clone(),
                    series: k.series,
                    hashes,
                    equivocation: !s.proofs.is_empty(),
                    proof_id,
                }
            })
            .collect()
    }

    /// Every proof held, by series.
    pub fn proofs(&self) -> impl Iterator<Item = &VerifiedProof> + '_ {
        self.series
            .values()
            .flat_map(|s| &s.proofs)
            .filter_map(|id| match self.items.get(id) {
                Some(Item::Proof(p)) => Some(p),
                _ => None,
            })
    }

    /// Whether a proof that `issuer` equivocated (on any series) is held.
    pub fn is_equivocator(&self, issuer: &[u8; 32]) -> bool {
        self.equivocators.contains(issuer)
    }

    /// The sync digest: per non-empty bucket, the count and hash of its ids.
    pub fn digest(&self) -> Digest {
        let buckets = self
            .buckets
            .iter()
            .zip(&self.bucket_hashes)
            .enumerate()
            .filter(|(_, (ids, _))| !ids.is_empty())
            .map(|(b, (ids, hash))| BucketSum {
                bucket: b as u8,
                count: u32::try_from(ids.len()).unwrap_or(u32::MAX),
                hash: *hash.get_or_init(|| bucket_hash(ids)),
            })
            .collect();
        Digest { buckets }
    }

    /// The ids of one bucket, sorted.
    pub fn ids_in(&self, bucket: u8) -> Vec<[u8; 32]> {
        self.buckets[usize::from(bucket)].iter().copied().collect()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use ed25519_dalek::SigningKey;
    use proptest::prelude::*;

    use super::*;
    use crate::statement::tests::{key, signed};

    pub(crate) fn obs(observer: &SigningKey, st: &SignedStatement, at: u64) -> Item {
        Item::Observation(SignedObservation::seal(observer, st, at))
    }

    /// Round trip through bytes, as items arrive from peers.
    fn wire(item: &Item) -> Item {
        Item::decode(&item.to_bytes()).unwrap()
    }

    #[test]
    fn items_round_trip_and_ids() {
        let st = signed(&key(1), 1, b"a");
        let o = obs(&key(50), &st, 7);
        assert_eq!(wire(&o), o);
        assert_eq!(message_id(&o.to_bytes()), o.id());
        // Same observer and statement at another time: same id.
        assert_eq!(obs(&key(50), &st, 8).id(), o.id());
        assert_ne!(obs(&key(51), &st, 7).id(), o.id());
        let p = VerifiedProof::from_statements(&st, &signed(&key(1), 1, b"b")).unwrap();
        let pi = Item::Proof(p.clone());
        assert_eq!(wire(&pi), pi);
        assert_eq!(message_id(&pi.to_bytes()), pi.id());
        assert_eq!(VerifiedProof::from_bytes(&p.proof().to_bytes()).unwrap(), p);
        assert_ne!(message_id(b"junk"), message_id(b"junk2"));
        assert!(matches!(
            Item::decode(&vec![0; MAX_ITEM + 1]),
            Err(MintError::TooLarge { .. })
        ));
    }

    #[test]
    fn thirty_observers_one_hash() {
        let mut book = Book::new(BookLimits::default());
        let st = signed(&key(1), 1, b"file");
        for o in 0..30u8 {
            assert_eq!(book.add(wire(&obs(&key(100 + o), &st, 5))), Added::New);
        }
        // Re-adding, even re-observed later, is a duplicate.
        assert_eq!(book.add(obs(&key(100), &st, 5)), Added::Duplicate);
        assert_eq!(book.add(obs(&key(100), &st, 9)), Added::Duplicate);
        assert_eq!(book.len(), 30);
        let s = book.status(None);
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].hashes.len(), 1);
        assert_eq!(s[0].hashes[0].observers, 30);
        assert_eq!(s[0].hashes[0].statement_id, hex::encode(st.id()));
        assert_eq!(s[0].hashes[0].first_observed_ms, Some(5));
        assert!(!s[0].equivocation && s[0].proof_id.is_none());
        assert!(!book.is_equivocator(&st.statement().issuer));
        assert_eq!(book.proofs().count(), 0);
    }

    #[test]
    fn two_hashes_make_exactly_one_proof() {
        let mut book = Book::new(BookLimits::default());
        let issuer = key(1);
        let id = issuer.verifying_key().to_bytes();
        let (a, b) = (signed(&issuer, 1, b"A"), signed(&issuer, 1, b"B"));
        let other_series = signed(&issuer, 2, b"A");
        assert_eq!(book.add(obs(&key(50), &other_series, 1)), Added::New);
        assert_eq!(book.add(obs(&key(50), &a, 1)), Added::New);
        assert_eq!(book.add(obs(&key(51), &a, 1)), Added::New);
        let Added::NewEquivocation(p) = book.add(obs(&key(52), &b, 1)) else {
            panic!("no equivocation");
        };
        // The proof verifies on its own and was stored as an item.
        let v = VerifiedProof::from_bytes(&p.proof().to_bytes()).unwrap();
        assert_eq!(v, p);
        assert_eq!(v.key(), &a.key());
        let (h1, h2) = v.hashes();
        assert_eq!(
            BTreeSet::from([h1, h2]),
            BTreeSet::from([a.statement().mint_hash, b.statement().mint_hash])
        );
        assert!(book.contains(&Item::Proof(p.clone()).id()));
        assert_eq!(book.add(Item::Proof(p.clone())), Added::Duplicate);
        assert_eq!(book.len(), 5);
        // More observations of either hash: no further proof.
        assert_eq!(book.add(obs(&key(53), &b, 1)), Added::New);
        assert_eq!(book.add(obs(&key(54), &a, 1)), Added::New);
        assert_eq!(book.proofs().count(), 1);
        assert!(book.is_equivocator(&id));
        let s = book.status(Some(&id));
        assert_eq!(s.len(), 2);
        let (s1, s2) = (&s[0], &s[1]);
        assert_eq!((s1.series, s2.series), (1, 2));
        assert!(s1.equivocation);
        assert_eq!(s1.proof_id, Some(hex::encode(p.id())));
        assert_eq!(
            s1.hashes.iter().map(|h| h.observers).collect::<Vec<_>>(),
            [3, 2]
        );
        // The other series of the same issuer is not affected.
        assert!(!s2.equivocation && s2.hashes.len() == 1);
        assert!(
            book.status(Some(&key(2).verifying_key().to_bytes()))
                .is_empty()
        );
    }

    #[test]
    fn a_proof_alone_marks_the_issuer() {
        let issuer = key(1);
        let (a, b) = (signed(&issuer, 1, b"A"), signed(&issuer, 1, b"B"));
        let p = VerifiedProof::from_statements(&a, &b).unwrap();
        let mut book = Book::new(BookLimits::default());
        let item = Item::decode(&Item::Proof(p.clone()).to_bytes()).unwrap();
        assert_eq!(book.add(item.clone()), Added::NewEquivocation(p.clone()));
        assert_eq!(book.add(item), Added::Duplicate);
        assert!(book.is_equivocator(&issuer.verifying_key().to_bytes()));
        let s = book.status(None);
        assert!(s[0].equivocation);
        assert_eq!(s[0].hashes.len(), 2);
        assert!(s[0].hashes.iter().all(|h| h.observers == 0));
        // Observing one of the hashes now adds an observer, no second proof.
        assert_eq!(book.add(obs(&key(50), &a, 1)), Added::New);
        assert_eq!(book.proofs().count(), 1);
        // Another proof for the series (a third hash) is kept as New, up to the cap.
        for (i, f) in [b"C", b"D", b"E"].iter().enumerate() {
            let c = signed(&issuer, 1, *f);
            assert_eq!(
                book.add(Item::Proof(VerifiedProof::from_statements(&a, &c).unwrap())),
                Added::New,
                "proof {i}"
            );
        }
        let f = signed(&issuer, 1, b"F");
        assert_eq!(
            book.add(Item::Proof(VerifiedProof::from_statements(&a, &f).unwrap())),
            Added::Full
        );
    }

    #[test]
    fn limits_are_enforced() {
        let issuer = key(1);
        let st = signed(&issuer, 1, b"A");
        let limits = BookLimits {
            max_items: 100,
            max_series: 2,
            max_hashes_per_series: 2,
            max_observers_per_hash: 3,
        };
        let mut book = Book::new(limits);
        for o in 0..3 {
            assert_eq!(book.add(obs(&key(50 + o), &st, 1)), Added::New);
        }
        assert_eq!(book.add(obs(&key(60), &st, 1)), Added::Full);
        assert_eq!(book.add(obs(&key(50), &st, 1)), Added::Duplicate);
        assert_eq!(
            book.add(obs(&key(50), &signed(&issuer, 2, b"A"), 1)),
            Added::New
        );
        assert_eq!(
            book.add(obs(&key(50), &signed(&issuer, 3, b"A"), 1)),
            Added::Full
        );
        assert!(matches!(
            book.add(obs(&key(50), &signed(&issuer, 1, b"B"), 1)),
            Added::NewEquivocation(_)
        ));
        assert_eq!(
            book.add(obs(&key(50), &signed(&issuer, 1, b"C"), 1)),
            Added::Full
        );
        // max_items, with room for the observation but not for its proof.
        let mut book = Book::new(BookLimits {
            max_items: 2,
            ..BookLimits::default()
        });
        assert_eq!(book.add(obs(&key(50), &st, 1)), Added::New);
        assert_eq!(
            book.add(obs(&key(50), &signed(&issuer, 1, b"B"), 1)),
            Added::Full
        );
        assert_eq!(book.add(obs(&key(51), &st, 1)), Added::New);
        assert_eq!(book.add(obs(&key(52), &st, 1)), Added::Full);
        assert_eq!(book.len(), 2);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// Any interleaving of observations of two hashes by any observers: an equivocation iff
        /// both hashes were seen, reported exactly once, and distinct-observer counts.
        #[test]
        fn equivocation_iff_both_hashes(
            events in proptest::collection::vec((0u8..6, any::<bool>(), 0u64..100), 1..24)
        ) {
            let issuer = key(1);
            let sts = [signed(&issuer, 1, b"A"), signed(&issuer, 1, b"B")];
            let mut book = Book::new(BookLimits::default());
            let mut observers = [BTreeSet::new(), BTreeSet::new()];
            let mut equivocations = 0;
            for (o, which, at) in events {
                let w = usize::from(which);
                observers[w].insert(o);
                if let Added::NewEquivocation(p) = book.add(obs(&key(100 + o), &sts[w], at)) {
                    prop_assert!(VerifiedProof::verify(p.proof().clone()).is_ok());
                    equivocations += 1;
                }
            }
            let both = observers.iter().all(|s| !s.is_empty());
            prop_assert_eq!(equivocations, usize::from(both));
            prop_assert_eq!(book.is_equivocator(&issuer.verifying_key().to_bytes()), both);
            let s = &book.status(None)[0];
            prop_assert_eq!(s.equivocation, both);
            for (w, st) in sts.iter().enumerate() {
                let want = observers[w].len();
                let got = s
                    .hashes
                    .iter()
                    .find(|h| h.mint_hash == hex::encode(st.statement().mint_hash))
                    .map_or(0, |h| h.observers);
                prop_assert_eq!(got, want);
            }
        }
    }
}
