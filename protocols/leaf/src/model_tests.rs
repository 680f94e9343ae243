//! Property test of the wallets against a reference model (DESIGN §6, reliability notes):
//! random sequences over 3 to 6 accounts of pay, deliver, replay (deliver twice), drop, time
//! passing (deadlines, aborts), crash (possibly between any two actions of a step: only what was
//! persisted survives), restart and retry. After every step:
//!
//! 1. conservation: the persisted chains verify together and their balances sum to 0;
//! 2. bounds: every balance is within `[-MAX, MAX]`, every live wallet's `available ≥ −MAX`;
//! 3. the balances equal a reference model's (the sum of the payments the users asked for that
//!    the payee accepted);
//! 4. every acknowledged payment (payer told `Paid`, payee told `Received`) is on both chains;
//! 5. no equivocation: no two different records were ever persisted or sent at one
//!    (account, seq);
//! 6. idempotence: a replayed message persists nothing, changes no state and answers what the
//!    first delivery answered;
//! 7. a live wallet's memory equals what it persisted (nothing unpersisted is ever visible).
//!
//! Finally the network heals (restart all, retry, deliver everything, pass every deadline) and
//! every transfer must be resolved, nothing reserved, and every wallet's balance exact.

use std::collections::{BTreeMap, BTreeSet};

use ed25519_dalek::SigningKey;
use leafnet_wire::claim::{Claim, Proof};
use proptest::prelude::*;

use crate::{
    Action, Event, Memo, Message, OutState, Outcome, Params, SignedEntry, TransferId, Wallet,
    WalletState, entry::Decision, verify_ledger,
};

const MAX: i64 = 5_000;

#[derive(Debug, Clone)]
enum Op {
    Pay {
        from: usize,
        to: usize,
        amount: u64,
        ttl: u64,
        crash: Option<usize>,
    },
    Deliver {
        msg: prop::sample::Index,
        crash: Option<usize>,
    },
    Replay {
        msg: prop::sample::Index,
    },
    Drop {
        msg: prop::sample::Index,
    },
    Advance {
        dt: u64,
    },
    Crash {
        node: usize,
    },
    Restart {
        node: usize,
    },
    Retry {
        node: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let crash = prop::option::weighted(0.15, 0usize..4);
    prop_oneof![
        4 => (0usize..6, 0usize..6, 1u64..4_000, 1u64..400, crash.clone())
            .prop_map(|(from, to, amount, ttl, crash)| Op::Pay { from, to, amount, ttl, crash }),
        6 => (any::<prop::sample::Index>(), crash)
            .prop_map(|(msg, crash)| Op::Deliver { msg, crash }),
        2 => any::<prop::sample::Index>().prop_map(|msg| Op::Replay { msg }),
        1 => any::<prop::sample::Index>().prop_map(|msg| Op::Drop { msg }),
        2 => (1u64..300).prop_map(|dt| Op::Advance { dt }),
        1 => (0usize..6).prop_map(|node| Op::Crash { node }),
        1 => (0usize..6).prop_map(|node| Op::Restart { node }),
        1 => (0usize..6).prop_map(|node| Op::Retry { node }),
    ]
}

struct Node {
    key: SigningKey,
    wallet: Option<Wallet>,
    persisted: WalletState,
}

struct World {
    params: Params,
    now: u64,
    nodes: Vec<Node>,
    index: BTreeMap<[u8; 32], usize>,
    /// In flight: (recipient node, message bytes).
    net: Vec<(usize, Vec<u8>)>,
    /// Every record ever persisted or sent, by (account, seq).
    slots: BTreeMap<([u8; 32], u64), Vec<u8>>,
    /// What the users asked: transfer → (payer, payee, amount).
    asked: BTreeMap<TransferId, (usize, usize, u64)>,
    acked_paid: BTreeSet<TransferId>,
    acked_received: BTreeSet<TransferId>,
    /// Every state each node persisted, oldest first (stale backups for the fork test).
    history: Vec<Vec<WalletState>>,
}

impl World {
    fn new(n: usize) -> Self {
        let keys: Vec<SigningKey> = (0..n)
            .map(|i| SigningKey::from_bytes(&[i as u8 + 1; 32]))
            .collect();
        let mut genesis: Vec<[u8; 32]> =
            keys.iter().map(|k| k.verifying_key().to_bytes()).collect();
        genesis.sort();
        let params = Params {
            max_balance: MAX,
            certifications_needed: 1,
            genesis,
            certification_validity_ms: 1_000,
        };
        let mut w = World {
            params: params.clone(),
            now: 1_000,
            nodes: Vec::new(),
            index: BTreeMap::new(),
            net: Vec::new(),
            slots: BTreeMap::new(),
            asked: BTreeMap::new(),
            acked_paid: BTreeSet::new(),
            acked_received: BTreeSet::new(),
            history: vec![Vec::new(); n],
        };
        for (i, key) in keys.into_iter().enumerate() {
            let (wallet, actions) = Wallet::create(key.clone(), params.clone()).unwrap();
            w.index.insert(wallet.account(), i);
            let persisted = WalletState::empty();
            w.nodes.push(Node {
                key,
                wallet: Some(wallet),
                persisted,
            });
            w.run(i, actions, None);
        }
        w
    }

    /// The proof of equivocation `bytes` makes with a record seen before at its slot, if any.
    fn conflict(&self, bytes: &[u8]) -> Option<Proof> {
        let e = SignedEntry::open(bytes).expect("a node emitted an invalid record");
        let old = self.slots.get(&(e.record().account, e.record().seq))?;
        (old.as_slice() != bytes).then(|| {
            let proof = Proof::new(&SignedEntry::open(old).unwrap(), &e).unwrap();
            proof.verify::<SignedEntry>().unwrap();
            proof
        })
    }

    /// Records a record seen leaving a node (persisted or sent); fails on a fork.
    fn note(&mut self, bytes: &[u8]) {
        assert!(self.conflict(bytes).is_none(), "equivocation");
        let e = SignedEntry::open(bytes).unwrap();
        self.slots
            .entry((e.record().account, e.record().seq))
            .or_insert_with(|| bytes.to_vec());
    }

    /// Executes `actions` of node `i` in order; with `crash = Some(k)` the node dies before
    /// action `k` (only what was persisted by then survives). Returns the messages sent.
    fn run(&mut self, i: usize, actions: Vec<Action>, crash: Option<usize>) -> Vec<Message> {
        let mut sent = Vec::new();
        for (k, a) in actions.into_iter().enumerate() {
            if crash == Some(k) {
                self.nodes[i].wallet = None;
                return sent;
            }
            match a {
                Action::Persist(c) => {
                    for b in &c.entries {
                        self.note(b);
                    }
                    self.nodes[i]
                        .persisted
                        .apply(&c)
                        .expect("changes continue the chain");
                    self.history[i].push(self.nodes[i].persisted.clone());
                }
                Action::Send { to, message } => {
                    match &message {
                        Message::Propose(b) | Message::Decision(b) => self.note(b),
                        Message::AbortRequest(_) => {}
                    }
                    let to = self.index[&to];
                    self.net.push((to, message.to_bytes()));
                    sent.push(message);
                }
                Action::Ack(Outcome::Paid(id)) => {
                    self.acked_paid.insert(id);
                }
                Action::Ack(Outcome::Received(id, _)) => {
                    self.acked_received.insert(id);
                }
                Action::Ack(_) => {}
            }
        }
        sent
    }

    fn deliver(&mut self, to: usize, bytes: Vec<u8>, crash: Option<usize>) {
        let now = self.now;
        let Some(w) = self.nodes[to].wallet.as_mut() else {
            return; // a dead node loses what arrives
        };
        let actions = w
            .handle(Event::Received(bytes), now)
            .expect("an honest peer's message is refused");
        self.run(to, actions, crash);
    }

    fn restart(&mut self, i: usize) {
        if self.nodes[i].wallet.is_some() {
            return;
        }
        let n = &self.nodes[i];
        let (w, actions) =
            Wallet::restart(n.key.clone(), self.params.clone(), n.persisted.clone()).unwrap();
        self.nodes[i].wallet = Some(w);
        self.run(i, actions, None);
    }

    fn step(&mut self, op: Op) {
        let n = self.nodes.len();
        match op {
            Op::Pay {
                from,
                to,
                amount,
                ttl,
                crash,
            } => {
                let (from, to) = (from % n, to % n);
                let payee = self.nodes[to].key.verifying_key().to_bytes();
                let now = self.now;
                let Some(w) = self.nodes[from].wallet.as_mut() else {
                    return;
                };
                let available = w.available();
                let ev = Event::Pay {
                    payee,
                    amount,
                    deadline_ms: now + ttl,
                    memo: Memo::None,
                };
                match w.handle(ev, now) {
                    Ok(actions) => {
                        assert_ne!(from, to);
                        assert!(available - amount as i128 >= -(MAX as i128));
                        for a in &actions {
                            if let Action::Ack(Outcome::Issued(id)) = a {
                                self.asked.insert(*id, (from, to, amount));
                            }
                        }
                        self.run(from, actions, crash);
                    }
                    Err(crate::LeafError::SelfPayment) => assert_eq!(from, to),
                    Err(crate::LeafError::PayerBelowFloor { .. }) => {
                        assert!(available - (amount as i128) < -(MAX as i128))
                    }
                    Err(e) => panic!("unexpected refusal {e}"),
                }
            }
            Op::Deliver { msg, crash } => {
                if self.net.is_empty() {
                    return;
                }
                let (to, bytes) = self.net.remove(msg.index(self.net.len()));
                self.deliver(to, bytes, crash);
            }
            Op::Replay { msg } => {
                if self.net.is_empty() {
                    return;
                }
                let (to, bytes) = self.net.remove(msg.index(self.net.len()));
                let now = self.now;
                let Some(w) = self.nodes[to].wallet.as_mut() else {
                    return;
                };
                let first = w.handle(Event::Received(bytes.clone()), now).unwrap();
                let first_sent = self.run(to, first, None);
                let before = self.nodes[to].persisted.clone();
                let w = self.nodes[to].wallet.as_mut().unwrap();
                let again = w.handle(Event::Received(bytes), now).unwrap();
                assert!(
                    !again
                        .iter()
                        .any(|a| matches!(a, Action::Persist(_) | Action::Ack(_))),
                    "a replay persisted or acknowledged something"
                );
                assert_eq!(w.state(), &before, "a replay changed the state");
                let again_sent = self.run(to, again, None);
                for m in &again_sent {
                    assert!(first_sent.contains(m), "a replay got another answer");
                }
            }
            Op::Drop { msg } => {
                if !self.net.is_empty() {
                    self.net.remove(msg.index(self.net.len()));
                }
            }
            Op::Advance { dt } => {
                self.now += dt;
                for i in 0..n {
                    let now = self.now;
                    if let Some(w) = self.nodes[i].wallet.as_mut() {
                        let actions = w.handle(Event::Tick, now).unwrap();
                        self.run(i, actions, None);
                    }
                }
            }
            Op::Crash { node } => self.nodes[node % n].wallet = None,
            Op::Restart { node } => self.restart(node % n),
            Op::Retry { node } => {
                let now = self.now;
                if let Some(w) = self.nodes[node % n].wallet.as_mut() {
                    let actions = w.handle(Event::Retry, now).unwrap();
                    self.run(node % n, actions, None);
                }
            }
        }
    }

    fn check(&self) -> crate::Ledger {
        let chains: BTreeMap<[u8; 32], Vec<Vec<u8>>> = self
            .nodes
            .iter()
            .map(|n| {
                let entries = n.persisted.entries.iter().map(|b| b.to_vec()).collect();
                (n.key.verifying_key().to_bytes(), entries)
            })
            .collect();
        let ledger = verify_ledger(&self.params, &chains).expect("persisted chains do not verify");
        // 1, 2: conservation and bounds.
        let sum: i128 = ledger.balances.values().map(|b| *b as i128).sum();
        assert_eq!(sum, 0, "balances do not sum to zero");
        assert!(ledger.balances.values().all(|b| (-MAX..=MAX).contains(b)));
        // 3: the reference model.
        let mut model = vec![0i64; self.nodes.len()];
        for id in &ledger.settled {
            let (from, to, amount) = self.asked[id];
            model[from] -= amount as i64;
            model[to] += amount as i64;
        }
        for (i, n) in self.nodes.iter().enumerate() {
            let account = n.key.verifying_key().to_bytes();
            assert_eq!(
                ledger.balances[&account], model[i],
                "balance differs from the model"
            );
            // 7: memory = persisted; the wallet's view is never above the truth.
            if let Some(w) = &n.wallet {
                assert_eq!(w.state(), &n.persisted, "unpersisted state is visible");
                assert!(w.balance() >= ledger.balances[&account]);
                assert!(w.available() >= -(MAX as i128));
            }
        }
        // 4: acknowledged payments are on both chains.
        for id in self.acked_paid.iter().chain(&self.acked_received) {
            assert!(
                ledger.settled.contains(id),
                "an acknowledged payment is missing"
            );
            let (from, _, _) = self.asked[id];
            let chain = &ledger.chains[&self.nodes[from].key.verifying_key().to_bytes()];
            assert!(
                chain.issued.contains_key(id),
                "an acknowledged cheque is missing"
            );
        }
        for id in &self.acked_paid {
            let (from, _, _) = self.asked[id];
            assert_eq!(
                self.nodes[from].persisted.outgoing[id].state,
                OutState::Resolved(Decision::Accepted)
            );
        }
        ledger
    }

    /// Heals everything and checks that every transfer resolved.
    fn heal(&mut self) {
        for round in 0..3 {
            for i in 0..self.nodes.len() {
                self.restart(i);
                let now = self.now;
                let actions = self.nodes[i]
                    .wallet
                    .as_mut()
                    .unwrap()
                    .handle(Event::Retry, now);
                self.run(i, actions.unwrap(), None);
            }
            let mut budget = 100_000;
            while !self.net.is_empty() && budget > 0 {
                let (to, bytes) = self.net.remove(0);
                self.deliver(to, bytes, None);
                budget -= 1;
            }
            assert!(self.net.is_empty(), "messages never stop");
            if round == 0 {
                self.step(Op::Advance { dt: 1_000_000 });
            }
            self.check();
        }
        let ledger = self.check();
        for n in &self.nodes {
            let w = n.wallet.as_ref().unwrap();
            assert_eq!(w.state().reserved, 0, "a reservation stayed locked");
            assert!(
                w.state()
                    .outgoing
                    .values()
                    .all(|o| matches!(o.state, OutState::Resolved(_)))
            );
            assert_eq!(
                w.balance(),
                ledger.balances[&w.account()],
                "healed balance differs"
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// A node restored from a stale backup that signs again forks its chain: the two records at
    /// one sequence number make a portable proof that verifies, and the ledger (holding the
    /// payee's acceptance of the other branch, if any) or the chain comparison detects it.
    #[test]
    fn a_stale_backup_fork_makes_a_valid_proof(
        n in 3usize..=5,
        ops in prop::collection::vec(op(), 1..60),
        pick in any::<prop::sample::Index>(),
    ) {
        let mut world = World::new(n);
        for op in ops {
            world.step(op);
        }
        // Find a node whose chain grew after some persisted snapshot.
        let candidates: Vec<(usize, usize)> = (0..n)
            .flat_map(|i| {
                let latest = world.nodes[i].persisted.entries.len();
                let h = &world.history[i];
                (0..h.len()).filter(move |k| h[*k].entries.len() < latest).map(move |k| (i, k))
            })
            .collect();
        prop_assume!(!candidates.is_empty());
        let (i, k) = candidates[pick.index(candidates.len())];
        let stale = world.history[i][k].clone();
        let seq = stale.entries.len();
        let (mut w, _) =
            Wallet::restart(world.nodes[i].key.clone(), world.params.clone(), stale).unwrap();
        let payee = world.nodes[(i + 1) % n].key.verifying_key().to_bytes();
        let ev = Event::Pay { payee, amount: 1, deadline_ms: u64::MAX, memo: Memo::Text("fork".into()) };
        let Ok(actions) = w.handle(ev, world.now) else {
            return Ok(()); // at the floor in the stale state: nothing signed, no fork
        };
        let Some(Action::Persist(forked)) = actions.first() else { panic!("no persist") };
        prop_assert_eq!(forked.first_seq as usize, seq);
        let new = SignedEntry::open(&forked.entries[0]).unwrap();
        let old = SignedEntry::open(&world.nodes[i].persisted.entries[seq]).unwrap();
        prop_assert_ne!(new.as_bytes(), old.as_bytes());
        let proof = Proof::new(&old, &new).unwrap();
        let (a, b) = Proof::decode(&proof.to_bytes()).unwrap().verify::<SignedEntry>().unwrap();
        prop_assert_eq!(a.author(), b.author());
        prop_assert_eq!(a.slot(), b.slot());
        // The test's bookkeeping of everything that left the nodes notices it too.
        prop_assert_eq!(world.conflict(new.as_bytes()), Some(proof));
    }

    #[test]
    fn wallets_match_the_reference_model(
        n in 3usize..=6,
        ops in prop::collection::vec(op(), 1..80),
    ) {
        let mut world = World::new(n);
        world.check();
        for op in ops {
            world.step(op);
            world.check();
        }
        world.heal();
    }
}
