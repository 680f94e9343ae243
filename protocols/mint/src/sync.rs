//! Anti-entropy: comparing two books and fetching what one lacks.
//!
//! Items are spread over [`BUCKETS`] buckets by the first byte of their id. A [`Digest`] gives
//! per non-empty bucket the number of ids and the SHA-256 over the sorted ids, so two books that
//! agree send 256 × ~40 bytes at most and learn it in one round trip. A pull is:
//! `Digest` → [`differing_buckets`] → `Ids` of those buckets → `Items` the puller lacks (each
//! verified with [`crate::Item::decode`] before it reaches the book).
//!
//! Every message is canonical CBOR, capped at [`MAX_SYNC_MESSAGE`] before it is parsed, and its
//! lists are checked against their limits after; honest nodes never exceed them.

use std::collections::BTreeSet;

use leafnet_wire::cbor;
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use crate::{MintError, book::MAX_ITEM, sha256};

/// Buckets of the digest; the bucket of an item is `id[0]`.
pub const BUCKETS: usize = 256;
/// The most ids one `Items` request (and items one response) may carry.
pub const MAX_ITEMS_PER_REQUEST: usize = 256;
/// The most ids one `Ids` response may carry.
pub const MAX_IDS: usize = 65_536;
/// The largest sync message, in bytes.
pub const MAX_SYNC_MESSAGE: usize = 4 * 1024 * 1024;

/// A summary of a book's item ids: only non-empty buckets, sorted by bucket.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Digest {
    /// The non-empty buckets, in ascending order.
    pub buckets: Vec<BucketSum>,
}

/// One bucket of a [`Digest`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketSum {
    /// The bucket (the first byte of its ids).
    pub bucket: u8,
    /// Ids in the bucket (at least 1).
    pub count: u32,
    /// SHA-256 over the bucket's ids, sorted, concatenated.
    #[serde(with = "serde_bytes")]
    pub hash: [u8; 32],
}

impl Digest {
    /// Refuses unsorted, repeated or empty buckets: an honest digest has none.
    fn check(&self) -> Result<(), MintError> {
        if self.buckets.iter().any(|b| b.count == 0) {
            return Err(MintError::Malformed("digest lists an empty bucket".into()));
        }
        if self.buckets.windows(2).any(|w| w[0].bucket >= w[1].bucket) {
            return Err(MintError::Malformed(
                "digest buckets not strictly ascending".into(),
            ));
        }
        Ok(())
    }
}

/// The digest hash of one bucket's ids (given sorted).
pub(crate) fn bucket_hash(ids: &BTreeSet<[u8; 32]>) -> [u8; 32] {
    let parts: Vec<&[u8]> = ids.iter().map(|id| id.as_slice()).collect();
    sha256(&parts)
}

/// Buckets where `theirs` differs from `ours` (count or hash differ, or present on one side
/// only), ascending.
pub fn differing_buckets(ours: &Digest, theirs: &Digest) -> Vec<u8> {
    fn table(d: &Digest) -> [Option<(u32, [u8; 32])>; BUCKETS] {
        let mut t = [None; BUCKETS];
        for b in &d.buckets {
            t[usize::from(b.bucket)] = Some((b.count, b.hash));
        }
        t
    }
    let (o, t) = (table(ours), table(theirs));
    (0..=u8::MAX)
        .filter(|&b| o[usize::from(b)] != t[usize::from(b)])
        .collect()
}

/// A list of 32-byte ids, encoded as one byte string of their concatenation (compact, and one
/// CBOR header instead of one per id).
mod id_list {
    use serde::{Deserialize as _, Deserializer, Serializer, de::Error as _};
    use serde_bytes::ByteBuf;

    pub(super) fn serialize<S: Serializer>(ids: &[[u8; 32]], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(ids.concat().as_slice())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<[u8; 32]>, D::Error> {
        let b = ByteBuf::deserialize(d)?;
        let chunks = b.chunks_exact(32);
        if !chunks.remainder().is_empty() {
            return Err(D::Error::custom("id list length is not a multiple of 32"));
        }
        Ok(chunks
            .map(|c| {
                let mut id = [0; 32];
                id.copy_from_slice(c);
                id
            })
            .collect())
    }
}

/// A request of the sync protocol.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SyncRequest {
    /// "Here is my digest; send me yours."
    Digest(Digest),
    /// "Send me the ids in these buckets" (ascending, at most [`BUCKETS`]).
    Ids {
        /// The buckets.
        #[serde(with = "serde_bytes")]
        buckets: Vec<u8>,
    },
    /// "Send me these items" (at most [`MAX_ITEMS_PER_REQUEST`]).
    Items {
        /// The item ids.
        #[serde(with = "id_list")]
        ids: Vec<[u8; 32]>,
    },
}

/// A response of the sync protocol.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SyncResponse {
    /// The responder's digest.
    Digest(Digest),
    /// The ids in the buckets asked for (at most [`MAX_IDS`]).
    Ids(#[serde(with = "id_list")] Vec<[u8; 32]>),
    /// The items asked for that the responder holds, as [`crate::Item`] bytes (at most
    /// [`MAX_ITEMS_PER_REQUEST`], each at most [`MAX_ITEM`] bytes).
    Items(Vec<ByteBuf>),
}

fn decode<T: Serialize + serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, MintError> {
    if bytes.len() > MAX_SYNC_MESSAGE {
        return Err(MintError::TooLarge {
            what: "sync message",
            len: bytes.len(),
            max: MAX_SYNC_MESSAGE,
        });
    }
    Ok(cbor::decode(bytes, MAX_SYNC_MESSAGE)?)
}

impl SyncRequest {
    /// Canonical bytes.
    pub fn encode(&self) -> Vec<u8> {
        cbor::encode(self)
    }

    /// Decodes a request: size cap, canonical CBOR, list limits, digest shape.
    pub fn decode(bytes: &[u8]) -> Result<Self, MintError> {
        let r: Self = decode(bytes)?;
        match &r {
            SyncRequest::Digest(d) => d.check()?,
            SyncRequest::Ids { buckets } => {
                if buckets.len() > BUCKETS {
                    return Err(MintError::TooMany("buckets"));
                }
                if buckets.windows(2).any(|w| w[0] >= w[1]) {
                    return Err(MintError::Malformed(
                        "buckets not strictly ascending".into(),
                    ));
                }
            }
            SyncRequest::Items { ids } => {
                if ids.len() > MAX_ITEMS_PER_REQUEST {
                    return Err(MintError::TooMany("item ids"));
                }
            }
        }
        Ok(r)
    }
}

impl SyncResponse {
    /// Canonical bytes.
    pub fn encode(&self) -> Vec<u8> {
        cbor::encode(self)
    }

    /// Decodes a response: size cap, canonical CBOR, list limits, digest shape. Items are only
    /// size-checked here; [`crate::Item::decode`] verifies each.
    pub fn decode(bytes: &[u8]) -> Result<Self, MintError> {
        let r: Self = decode(bytes)?;
        match &r {
            SyncResponse::Digest(d) => d.check()?,
            SyncResponse::Ids(ids) => {
                if ids.len() > MAX_IDS {
                    return Err(MintError::TooMany("ids"));
                }
            }
            SyncResponse::Items(items) => {
                if items.len() > MAX_ITEMS_PER_REQUEST {
                    return Err(MintError::TooMany("items"));
                }
                if let Some(i) = items.iter().find(|i| i.len() > MAX_ITEM) {
                    return Err(MintError::TooLarge {
                        what: "item",
                        len: i.len(),
                        max: MAX_ITEM,
                    });
                }
            }
        }
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::{
        Book, BookLimits, Item,
        book::tests::obs,
        statement::tests::{key, signed},
    };

    /// Items of 8 statements × `observers` observers (seeds from `first`).
    fn items(first: u8, observers: u8) -> Vec<Item> {
        let sts: Vec<_> = (0..8).map(|s| signed(&key(1), s, b"f")).collect();
        let mut v = Vec::new();
        for o in first..first + observers {
            for st in &sts {
                v.push(obs(&key(o), st, 1));
            }
        }
        v
    }

    fn bucket_sets(b: &Book) -> Vec<Vec<[u8; 32]>> {
        (0..=u8::MAX).map(|i| b.ids_in(i)).collect()
    }

    /// Pulls the items of `buckets` from `from` into `to`, through encoded messages.
    fn pull(to: &mut Book, from: &Book, buckets: Vec<u8>) {
        let req = SyncRequest::decode(&SyncRequest::Ids { buckets }.encode()).unwrap();
        let SyncRequest::Ids { buckets } = req else {
            unreachable!()
        };
        let ids: Vec<_> = buckets.iter().flat_map(|b| from.ids_in(*b)).collect();
        let resp = SyncResponse::decode(&SyncResponse::Ids(ids).encode()).unwrap();
        let SyncResponse::Ids(ids) = resp else {
            unreachable!()
        };
        let wanted: Vec<_> = ids.into_iter().filter(|id| !to.contains(id)).collect();
        for chunk in wanted.chunks(MAX_ITEMS_PER_REQUEST) {
            let items = chunk
                .iter()
                .filter_map(|id| from.get(id))
                .map(|i| ByteBuf::from(i.to_bytes()))
                .collect();
            let resp = SyncResponse::decode(&SyncResponse::Items(items).encode()).unwrap();
            let SyncResponse::Items(items) = resp else {
                unreachable!()
            };
            for b in items {
                to.add(Item::decode(&b).unwrap());
            }
        }
    }

    #[test]
    fn reconciliation_converges() {
        // Shared items, items only in x, items only in y.
        let (shared, only_x, only_y) = (items(10, 6), items(20, 2), items(30, 1));
        let mut x = Book::new(BookLimits::default());
        let mut y = Book::new(BookLimits::default());
        for i in shared.iter().chain(&only_x) {
            x.add(i.clone());
        }
        for i in shared.iter().chain(&only_y) {
            y.add(i.clone());
        }
        let (dx, dy) = (x.digest(), y.digest());
        assert_ne!(dx, dy);
        let theirs = SyncResponse::decode(&SyncResponse::Digest(dy.clone()).encode()).unwrap();
        assert_eq!(theirs, SyncResponse::Digest(dy.clone()));
        let diff = differing_buckets(&dx, &dy);
        let expected: Vec<u8> = (0..=u8::MAX)
            .filter(|&b| x.ids_in(b) != y.ids_in(b))
            .collect();
        assert_eq!(diff, expected);
        assert!(!diff.is_empty() && diff.len() < BUCKETS);
        assert_eq!(differing_buckets(&dy, &dx), diff);
        pull(&mut x, &y, diff.clone());
        pull(&mut y, &x, diff);
        assert_eq!(x.digest(), y.digest());
        assert_eq!(bucket_sets(&x), bucket_sets(&y));
        assert_eq!(x.len(), shared.len() + only_x.len() + only_y.len());
        assert!(differing_buckets(&x.digest(), &y.digest()).is_empty());
        // Empty books.
        let e = Book::new(BookLimits::default());
        assert_eq!(e.digest(), Digest::default());
        assert_eq!(
            differing_buckets(&e.digest(), &x.digest()).len(),
            x.digest().buckets.len()
        );
    }

    #[test]
    fn messages_round_trip() {
        let d = Digest {
            buckets: vec![
                BucketSum {
                    bucket: 0,
                    count: 3,
                    hash: [1; 32],
                },
                BucketSum {
                    bucket: 255,
                    count: 1,
                    hash: [2; 32],
                },
            ],
        };
        for r in [
            SyncRequest::Digest(d.clone()),
            SyncRequest::Digest(Digest::default()),
            SyncRequest::Ids {
                buckets: vec![0, 7, 255],
            },
            SyncRequest::Items {
                ids: vec![[3; 32], [4; 32]],
            },
        ] {
            assert_eq!(SyncRequest::decode(&r.encode()).unwrap(), r);
        }
        for r in [
            SyncResponse::Digest(d),
            SyncResponse::Ids(vec![[5; 32]; 3]),
            SyncResponse::Ids(vec![]),
            SyncResponse::Items(vec![ByteBuf::from(vec![1, 2, 3])]),
        ] {
            assert_eq!(SyncResponse::decode(&r.encode()).unwrap(), r);
        }
        // Ids are one byte string: {"Ids": h'0505…'}.
        let mut want = vec![0xa1, 0x63, b'I', b'd', b's'];
        want.extend(cbor::encode(&serde_bytes::Bytes::new(&[5; 96])));
        assert_eq!(SyncResponse::Ids(vec![[5; 32]; 3]).encode(), want);
    }

    #[test]
    fn limits_and_shapes_are_enforced() {
        let too_big = vec![0u8; MAX_SYNC_MESSAGE + 1];
        assert!(matches!(
            SyncRequest::decode(&too_big),
            Err(MintError::TooLarge { .. })
        ));
        assert!(matches!(
            SyncResponse::decode(&too_big),
            Err(MintError::TooLarge { .. })
        ));
        let err = SyncRequest::decode(
            &SyncRequest::Items {
                ids: vec![[0; 32]; MAX_ITEMS_PER_REQUEST + 1],
            }
            .encode(),
        )
        .unwrap_err();
        assert_eq!(err, MintError::TooMany("item ids"));
        assert!(err.is_misbehaviour());
        assert_eq!(
            SyncResponse::decode(&SyncResponse::Ids(vec![[0; 32]; MAX_IDS + 1]).encode()),
            Err(MintError::TooMany("ids"))
        );
        assert_eq!(
            SyncResponse::decode(
                &SyncResponse::Items(vec![ByteBuf::new(); MAX_ITEMS_PER_REQUEST + 1]).encode()
            ),
            Err(MintError::TooMany("items"))
        );
        assert!(matches!(
            SyncResponse::decode(
                &SyncResponse::Items(vec![ByteBuf::from(vec![0; MAX_ITEM + 1])]).encode()
            ),
            Err(MintError::TooLarge { .. })
        ));
        for buckets in [vec![3, 3], vec![4, 3]] {
            assert!(matches!(
                SyncRequest::decode(&SyncRequest::Ids { buckets }.encode()),
                Err(MintError::Malformed(_))
            ));
        }
        let sum = |bucket, count| BucketSum {
            bucket,
            count,
            hash: [0; 32],
        };
        for buckets in [
            vec![sum(2, 1), sum(1, 1)],
            vec![sum(1, 1), sum(1, 1)],
            vec![sum(1, 0)],
        ] {
            assert!(matches!(
                SyncResponse::decode(&SyncResponse::Digest(Digest { buckets }).encode()),
                Err(MintError::Malformed(_))
            ));
        }
        // An id list of 33 bytes.
        let mut bad = vec![0xa1, 0x63, b'I', b'd', b's', 0x58, 33];
        bad.extend([7; 33]);
        assert!(matches!(
            SyncResponse::decode(&bad),
            Err(MintError::Decode(_))
        ));
        // Non-canonical: trailing byte.
        let mut b = SyncRequest::Ids { buckets: vec![1] }.encode();
        b.push(0);
        assert!(matches!(SyncRequest::decode(&b), Err(MintError::Decode(_))));
    }

    proptest! {
        #[test]
        fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = SyncRequest::decode(&bytes);
            let _ = SyncResponse::decode(&bytes);
            let _ = Item::decode(&bytes);
            let _ = crate::message_id(&bytes);
            // The same bytes one layer in, where the envelope and proof decoders see them.
            for item in [Item::raw_observation(&bytes), Item::raw_proof(&bytes)] {
                prop_assert!(Item::decode(&item).is_err());
                let _ = crate::message_id(&item);
            }
        }
    }
}
