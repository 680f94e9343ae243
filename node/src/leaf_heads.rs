//! leaf chain heads and equivocation, on the swarm actor (DESIGN §4.5, "forks").
//!
//! - **Announce.** The wallet task hands the actor its new records after each commit; at most
//!   every [`ANNOUNCE_EVERY`] the actor publishes the newest of them (up to [`MAX_ENTRIES`]) on
//!   the gossipsub topic `/leafnet/<net>/leaf-heads/1`. An acceptance embeds the payer's cheque,
//!   so a payee's announcement also shows where the *payer's* chain stood.
//! - **Check.** Every record a node sees — in gossip, in a payment it takes part in, or handed in
//!   through `POST /v1/leaf/seen` — is compared with the record it saw at the same (account, seq)
//!   (a bounded in-memory map, oldest forgotten first). Two different records there are an
//!   equivocation proof ([`leafnet_wire::claim::Proof`] over [`SignedEntry`]), which the node
//!   stores durably (`leaf-equivocators-1`), gossips, and hands to the wallet task: a proven
//!   equivocator's cheques get a signed refusal and payments to it are refused. Honest nodes
//!   never sign two records at one sequence number, whatever crashes, so a proof is always fraud.
//! - **Validation.** A message that does not decode, or carries a record or proof whose
//!   signatures fail, is `Reject`ed: gossipsub's P4 penalty and a `LowTolerance` strike in
//!   [`crate::peers`]. A valid message is `Accept`ed (forwarded).

use std::collections::{HashMap, HashSet, VecDeque};

use leafnet_leaf::{Body, SignedEntry};
use leafnet_wire::claim::{Claim as _, Proof};
use libp2p::{PeerId, gossipsub};
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;
use tokio::sync::oneshot;

use crate::{
    peers::PeerAction,
    swarm::{Actor, Command},
};

/// How often at most a node announces its new records.
pub const ANNOUNCE_EVERY: std::time::Duration = std::time::Duration::from_millis(500);
/// The most records in one announcement.
pub const MAX_ENTRIES: usize = 12;
/// The largest message on the topic (under gossipsub's transmit limit).
pub const MAX_MESSAGE: usize = 18 * 1024;
/// Records remembered per (account, seq) for fork detection.
const SEEN_CAP: usize = 200_000;

/// The topic of a network.
pub fn topic(network: &str) -> gossipsub::IdentTopic {
    gossipsub::IdentTopic::new(format!("/leafnet/{network}/leaf-heads/1"))
}

/// A message on the topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum HeadMsg {
    /// Records of one or more accounts (signed entry bytes).
    LeafEntries(Vec<ByteBuf>),
    /// An equivocation proof (two records of one account at one seq).
    LeafProof(ByteBuf),
}

impl HeadMsg {
    fn decode(b: &[u8]) -> Result<Self, String> {
        leafnet_wire::cbor::decode(b, MAX_MESSAGE).map_err(|e| e.to_string())
    }
}

/// The actor's fork-detection state.
#[derive(Default)]
pub(crate) struct HeadsState {
    /// (account, seq) → the record's bytes, oldest evicted first.
    seen: HashMap<([u8; 32], u64), Vec<u8>>,
    order: VecDeque<([u8; 32], u64)>,
    /// Proven equivocators → proof bytes.
    pub(crate) proven: HashMap<[u8; 32], Vec<u8>>,
    /// Own records waiting for the next announcement.
    pending: Vec<Vec<u8>>,
    last_announce: Option<std::time::Instant>,
    /// Records already announced or forwarded (hash), so a record is published once.
    published: HashSet<[u8; 32]>,
}

/// What checking a record found.
#[derive(Debug, PartialEq, Eq)]
pub enum Seen {
    New,
    Known,
    /// A fork: the proof's bytes.
    Fork(Vec<u8>),
}

impl HeadsState {
    /// Loads the stored proofs.
    pub(crate) fn load(db: &leafnet_storage::Database) -> anyhow::Result<Self> {
        let mut s = HeadsState::default();
        for (a, p) in leafnet_storage::leaf::equivocators(db)? {
            s.proven.insert(a, p);
        }
        Ok(s)
    }

    /// Compares a verified record (and, for an acceptance, its embedded cheque) with what was
    /// seen at its place.
    /// `e` must have been verified ([`SignedEntry::open`] checks an acceptance's embedded
    /// cheque too, so it is only decoded here).
    pub(crate) fn check(&mut self, e: &SignedEntry) -> Vec<Seen> {
        let mut out = vec![self.check_one(e)];
        if let Body::Acceptance { cheque, .. } = &e.record().body
            && let Ok(c) = SignedEntry::open_trusted(cheque)
        {
            out.push(self.check_one(&c));
        }
        out
    }

    fn check_one(&mut self, e: &SignedEntry) -> Seen {
        let key = (e.record().account, e.record().seq);
        match self.seen.get(&key) {
            Some(b) if b.as_slice() == e.as_bytes() => Seen::Known,
            Some(b) => match SignedEntry::open_trusted(b)
                .ok()
                .and_then(|old| Proof::new(&old, e).ok())
            {
                Some(p) => Seen::Fork(p.to_bytes()),
                None => Seen::Known,
            },
            None => {
                if self.order.len() >= SEEN_CAP
                    && let Some(k) = self.order.pop_front()
                {
                    self.seen.remove(&k);
                }
                self.seen.insert(key, e.as_bytes().to_vec());
                self.order.push_back(key);
                Seen::New
            }
        }
    }
}

impl Actor {
    /// Subscribes to the heads topic (with the mint topic's scoring for invalid messages).
    pub(crate) fn heads_subscribe(&mut self) {
        let t = topic(&self.cfg.network);
        if let Err(e) = self.swarm.behaviour_mut().gossipsub.subscribe(&t) {
            tracing::warn!(error = %e, "cannot subscribe to the leaf heads topic");
        }
    }

    /// The wallet task committed these own records: announce them soon.
    pub(crate) fn heads_own(&mut self, entries: Vec<Vec<u8>>) {
        for b in entries {
            // Own committed records: signed and verified by this node.
            if let Ok(e) = SignedEntry::open_trusted(&b) {
                self.heads.check(&e);
            }
            self.heads.pending.push(b);
        }
        let keep = self.heads.pending.len().saturating_sub(MAX_ENTRIES);
        self.heads.pending.drain(..keep);
        self.heads_flush(false);
    }

    /// Publishes pending own records if [`ANNOUNCE_EVERY`] passed (or `force`).
    pub(crate) fn heads_flush(&mut self, force: bool) {
        if self.heads.pending.is_empty() {
            return;
        }
        let due = self
            .heads
            .last_announce
            .is_none_or(|t| t.elapsed() >= ANNOUNCE_EVERY);
        if !due && !force {
            return;
        }
        let mut entries: Vec<ByteBuf> = std::mem::take(&mut self.heads.pending)
            .into_iter()
            .map(ByteBuf::from)
            .collect();
        let mut msg = leafnet_wire::cbor::encode(&HeadMsg::LeafEntries(entries.clone()));
        while msg.len() > MAX_MESSAGE && entries.len() > 1 {
            entries.remove(0);
            msg = leafnet_wire::cbor::encode(&HeadMsg::LeafEntries(entries.clone()));
        }
        self.heads.last_announce = Some(std::time::Instant::now());
        self.heads_publish(msg);
    }

    fn heads_publish(&mut self, msg: Vec<u8>) {
        let t = topic(&self.cfg.network);
        match self.swarm.behaviour_mut().gossipsub.publish(t, msg) {
            Ok(_) | Err(gossipsub::PublishError::NoPeersSubscribedToTopic) => {}
            Err(gossipsub::PublishError::Duplicate) => {}
            Err(e) => tracing::debug!(error = %e, "leaf heads publish"),
        }
    }

    /// A record seen in a payment or handed in by the user: check it; with `publish`, also
    /// gossip it (so other nodes can compare). Answers whether it was new, known or a fork.
    pub(crate) fn heads_seen(
        &mut self,
        bytes: Vec<u8>,
        publish: bool,
        verified: bool,
        reply: Option<oneshot::Sender<Result<String, String>>>,
    ) {
        let opened = if verified {
            SignedEntry::open_trusted(&bytes)
        } else {
            SignedEntry::open(&bytes)
        };
        let e = match opened {
            Ok(e) => e,
            Err(err) => {
                if let Some(r) = reply {
                    let _ = r.send(Err(format!("the record does not verify: {err}")));
                }
                return;
            }
        };
        let mut verdict = "new";
        for s in self.heads.check(&e) {
            match s {
                Seen::Fork(p) => {
                    verdict = "fork";
                    self.heads_proof(p, None);
                }
                Seen::Known if verdict == "new" => verdict = "known",
                _ => {}
            }
        }
        if publish && self.heads.published.insert(e.hash()) {
            let msg = leafnet_wire::cbor::encode(&HeadMsg::LeafEntries(vec![ByteBuf::from(bytes)]));
            self.heads_publish(msg);
        }
        if let Some(r) = reply {
            let _ = r.send(Ok(verdict.to_owned()));
        }
    }

    /// A verified proof: store it, tell the wallet task and gossip it, once per account.
    fn heads_proof(&mut self, proof: Vec<u8>, from: Option<PeerId>) -> bool {
        let Ok((a, _)) = Proof::decode(&proof)
            .map_err(|e| e.to_string())
            .and_then(|p| p.verify::<SignedEntry>().map_err(|e| e.to_string()))
        else {
            return false;
        };
        let account = a.author();
        if self.heads.proven.contains_key(&account) {
            return true;
        }
        tracing::warn!(
            account = %hex::encode(account),
            seq = a.record().seq,
            from = ?from,
            "leaf equivocation: two records at one sequence number; this account is refused from now on"
        );
        self.heads.proven.insert(account, proof.clone());
        let db = self.db();
        let stored = proof.clone();
        tokio::task::spawn_blocking(move || {
            if let Err(e) = leafnet_storage::leaf::put_equivocator(&db, &account, &stored) {
                tracing::error!(error = %e, "cannot store an equivocation proof");
            }
        });
        if let Some(tx) = &self.leaf_inputs {
            let _ = tx.try_send(crate::leaf::Input::Equivocator(account));
        }
        let msg = leafnet_wire::cbor::encode(&HeadMsg::LeafProof(ByteBuf::from(proof)));
        self.heads_publish(msg);
        true
    }

    /// A gossip message on the heads topic; answers gossipsub's validation.
    pub(crate) fn on_heads_gossip(
        &mut self,
        source: PeerId,
        id: &gossipsub::MessageId,
        data: &[u8],
    ) {
        use gossipsub::MessageAcceptance as A;
        let verdict = match HeadMsg::decode(data) {
            Ok(HeadMsg::LeafEntries(list)) if !list.is_empty() && list.len() <= 64 => {
                let mut ok = true;
                let mut forks = Vec::new();
                for b in &list {
                    match SignedEntry::open(b) {
                        Ok(e) => {
                            self.heads.published.insert(e.hash());
                            for s in self.heads.check(&e) {
                                if let Seen::Fork(p) = s {
                                    forks.push(p);
                                }
                            }
                        }
                        Err(_) => ok = false,
                    }
                }
                for p in forks {
                    self.heads_proof(p, Some(source));
                }
                if ok { A::Accept } else { A::Reject }
            }
            Ok(HeadMsg::LeafProof(p)) => {
                let known = Proof::decode(&p)
                    .ok()
                    .and_then(|x| x.verify::<SignedEntry>().ok())
                    .map(|(a, _)| self.heads.proven.contains_key(&a.author()));
                match known {
                    Some(true) => A::Ignore,
                    Some(false) => {
                        if self.heads_proof(p.into_vec(), Some(source)) {
                            A::Accept
                        } else {
                            A::Reject
                        }
                    }
                    None => A::Reject,
                }
            }
            _ => A::Reject,
        };
        if verdict == A::Reject {
            let why = leafnet_wire::key::RecordError::Invalid("invalid leaf heads gossip".into());
            self.report(source, PeerAction::LowTolerance, &why);
        }
        self.swarm
            .behaviour_mut()
            .gossipsub
            .report_message_validation_result(id, &source, verdict);
    }

    pub(crate) fn on_heads_command(&mut self, cmd: Command) {
        match cmd {
            Command::LeafOwnRecords(entries) => self.heads_own(entries),
            Command::LeafSeen {
                entry,
                publish,
                verified,
                reply,
            } => self.heads_seen(entry, publish, verified, reply),
            Command::LeafEquivocators(reply) => {
                let _ = reply.send(
                    self.heads
                        .proven
                        .iter()
                        .map(|(a, p)| (*a, p.clone()))
                        .collect(),
                );
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::SigningKey;
    use leafnet_leaf::{Memo, Record};

    use super::*;

    fn cheque(key: &SigningKey, seq: u64, amount: u64) -> SignedEntry {
        SignedEntry::seal(
            key,
            Record {
                account: key.verifying_key().to_bytes(),
                seq,
                prev: [7; 32],
                body: Body::Cheque {
                    payee: [9; 32],
                    amount,
                    deadline_ms: 10,
                    memo: Memo::None,
                },
            },
        )
        .unwrap()
    }

    #[test]
    fn two_records_at_one_seq_make_a_proof() {
        let k = SigningKey::from_bytes(&[3; 32]);
        let mut s = HeadsState::default();
        assert_eq!(s.check(&cheque(&k, 5, 1)), vec![Seen::New]);
        assert_eq!(s.check(&cheque(&k, 5, 1)), vec![Seen::Known]);
        assert_eq!(s.check(&cheque(&k, 6, 1)), vec![Seen::New]);
        let mut found = s.check(&cheque(&k, 5, 2));
        let Some(Seen::Fork(p)) = found.pop() else {
            panic!("no fork")
        };
        assert!(found.is_empty());
        let (a, b) = Proof::decode(&p).unwrap().verify::<SignedEntry>().unwrap();
        assert_eq!(a.author(), k.verifying_key().to_bytes());
        assert_ne!(a.as_bytes(), b.as_bytes());
    }

    #[test]
    fn garbage_is_not_a_message() {
        assert!(HeadMsg::decode(&[0xff; 40]).is_err());
        let big = HeadMsg::LeafEntries(vec![ByteBuf::from(vec![0u8; MAX_MESSAGE])]);
        assert!(HeadMsg::decode(&leafnet_wire::cbor::encode(&big)).is_err());
    }
}
