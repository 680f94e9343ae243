//! The relay [`Selector`] state machine.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt::Debug;
use std::time::{Duration, Instant};

/// Tuning of a [`Selector`]. The defaults are the values DESIGN §4.3 was written against.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Reservations wanted (default 2): more than one so a node stays reachable while one relay
    /// is replaced, few because each costs the relay a slot.
    pub k: usize,
    /// Pings per candidate per probe round (default 3); the ranking uses the median of the latest
    /// `samples` results, so one outlier cannot move it.
    pub samples: usize,
    /// Candidates whose median is within this fraction of the best one's count as equal
    /// (default 0.10) and are drawn from at random, spreading clients over equally good relays.
    pub near_equal: f64,
    /// Hysteresis: a chosen relay is replaced by a candidate only if the candidate's median is
    /// below `current * (1 - switch_factor)` (default 0.25: 25 % better)...
    pub switch_factor: f64,
    /// ...and at least this much lower in absolute terms (default 2 ms), so sub-millisecond
    /// LAN relays do not trade places over noise.
    pub min_gain: Duration,
    /// How often every candidate is probed again (default 5 min).
    pub reprobe_interval: Duration,
    /// A ping slower than this, or unanswered this long, counts as a failure (default 2 s). It
    /// also bounds how long the first choice waits for slow candidates.
    pub probe_timeout: Duration,
    /// Most candidates kept (default 32); a new one evicts the worst non-chosen one.
    pub max_candidates: usize,
    /// Consecutive failures after which a candidate is dropped (default 3).
    pub max_failures: u32,
    /// A requested reservation with no answer after this long counts as failed (default 30 s).
    /// Not in the original spec: without it a relay that never answers would hold a slot forever.
    pub reserve_timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            k: 2,
            samples: 3,
            near_equal: 0.10,
            switch_factor: 0.25,
            min_gain: Duration::from_millis(2),
            reprobe_interval: Duration::from_secs(5 * 60),
            probe_timeout: Duration::from_secs(2),
            max_candidates: 32,
            max_failures: 3,
            reserve_timeout: Duration::from_secs(30),
        }
    }
}

/// Where a candidate was learned from (kept for `leafnet relays`; every source counts the same).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Source {
    /// A provider of the well-known relay key: a public node that announced relaying.
    Provider,
    /// A configured bootstrap node.
    Bootstrap,
    /// A peer whose identify lists the circuit relay v2 HOP protocol.
    Identify,
}

/// Why a reservation ended without the selector asking for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailReason {
    /// The relay refused (policy, not capacity).
    Refused,
    /// The relay refused because it has no room (`RESERVATION_REFUSED` / resource limit).
    Full,
    /// An active reservation was closed (connection lost, relay shut down).
    Closed,
    /// The request failed (dial or protocol error).
    Error,
    /// An active reservation passed its expiry without being renewed.
    Expired,
    /// The request got no answer within [`Config::reserve_timeout`].
    NoAnswer,
}

/// The selector's view of its reservation on one candidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReservationState {
    /// No reservation, none wanted.
    None,
    /// [`Action::Reserve`] was emitted at `since`; the answer is pending.
    Requested {
        /// When the reservation was requested.
        since: Instant,
    },
    /// The relay accepted. libp2p's relay client renews on its own while the listener is open;
    /// each renewal should be reported as another [`ReservationEvent::Accepted`].
    Active {
        /// When the reservation was first accepted.
        since: Instant,
        /// When it lapses unless renewed (as told by the relay).
        expires: Option<Instant>,
    },
    /// The reservation failed or ended; the candidate is not chosen again before the next probe
    /// round, so a relay that keeps refusing is retried every `reprobe_interval`, not every poll.
    Failed {
        /// When it failed.
        at: Instant,
        /// Why.
        reason: FailReason,
    },
}

impl ReservationState {
    /// Whether the candidate is chosen: a reservation is requested or active.
    pub fn is_chosen(&self) -> bool {
        matches!(self, Self::Requested { .. } | Self::Active { .. })
    }

    /// A short name for displays: `none`, `requested`, `active` or `failed`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Requested { .. } => "requested",
            Self::Active { .. } => "active",
            Self::Failed { .. } => "failed",
        }
    }
}

/// What happened to a reservation, as reported by the node's relay client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReservationEvent {
    /// Accepted or renewed.
    Accepted {
        /// When it lapses unless renewed.
        expires: Option<Instant>,
    },
    /// Refused; `full` when the relay said it has no room (its per-relay cap).
    Refused {
        /// The relay is at capacity.
        full: bool,
    },
    /// An active reservation (or its listener) closed.
    Closed,
    /// The request failed (dial or protocol error).
    Failed,
}

/// What the node should do, as returned by [`Selector::poll`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action<P> {
    /// Send one ping and report it with [`Selector::on_rtt`] or [`Selector::on_failure`]. At most
    /// one probe per candidate is outstanding; `poll` asks again until the candidate has
    /// `samples` fresh results this round or used its attempts (`samples + max_failures`).
    Probe(P),
    /// Request a reservation (listen on `<relay>/p2p-circuit`) and report the outcome with
    /// [`Selector::on_reservation`].
    Reserve(P),
    /// Drop the reservation (remove the circuit listener). Emitted exactly once each time a
    /// chosen relay stops being chosen — switched away from, dead, removed, refused, closed —
    /// and never for a relay that was not chosen, so the node may treat it as idempotent cleanup.
    Release(P),
}

/// One relay candidate and what is known about it.
#[derive(Debug, Clone)]
pub struct Candidate<P> {
    /// The relay's peer id.
    pub peer: P,
    /// Where it was learned from.
    pub sources: BTreeSet<Source>,
    /// The latest RTT results, oldest first; at most `2 * samples`.
    pub samples: VecDeque<Duration>,
    /// Consecutive failures (reset by a successful ping).
    pub failures: u32,
    /// The reservation on it.
    pub reservation: ReservationState,
    /// The relay refused for lack of room; skipped until the next probe round.
    pub full: bool,
    /// When it was first added (the oldest unmeasured candidate is evicted first).
    pub added: Instant,
    round_samples: usize,
    round_attempts: usize,
    in_flight: Option<Instant>,
}

impl<P> Candidate<P> {
    fn recent(&self, n: usize) -> Vec<Duration> {
        let skip = self.samples.len().saturating_sub(n);
        let mut v: Vec<Duration> = self.samples.iter().skip(skip).copied().collect();
        v.sort_unstable();
        v
    }

    fn median(&self, n: usize) -> Option<Duration> {
        let v = self.recent(n);
        match v.len() {
            0 => None,
            len if len % 2 == 1 => Some(v[len / 2]),
            len => Some((v[len / 2 - 1] + v[len / 2]) / 2),
        }
    }

    fn jitter(&self, n: usize) -> Option<Duration> {
        let v = self.recent(n);
        Some(*v.last()? - *v.first()?)
    }
}

/// A measured candidate in ranking order, as returned by [`Selector::ranking`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ranked<P> {
    /// The relay.
    pub peer: P,
    /// Median of its latest `samples` RTTs.
    pub median: Duration,
    /// Max − min of the same samples.
    pub jitter: Duration,
    /// Whether it is chosen (reservation requested or active).
    pub chosen: bool,
}

/// One candidate for displays (`leafnet relays --json`); times in milliseconds.
#[derive(Debug, Clone, PartialEq)]
pub struct CandidateView<P> {
    /// The relay.
    pub peer: P,
    /// Where it was learned from.
    pub sources: Vec<Source>,
    /// The kept RTT samples, oldest first, in ms.
    pub samples_ms: Vec<f64>,
    /// Median of the latest `samples` RTTs, in ms.
    pub median_ms: Option<f64>,
    /// Max − min of the same samples, in ms.
    pub jitter_ms: Option<f64>,
    /// Consecutive failures.
    pub failures: u32,
    /// Refused for lack of room this round.
    pub full: bool,
    /// [`ReservationState::name`].
    pub state: &'static str,
    /// Why the last reservation failed, when `state` is `failed`.
    pub failure: Option<FailReason>,
    /// Whether it is chosen.
    pub chosen: bool,
}

/// Relay selection state: candidates, their RTT samples and the reservations.
///
/// Drive it with the `on_*` methods as events arrive and call [`Selector::poll`] after each batch
/// of events and on a timer (a second is plenty); `poll` is where every decision is made.
#[derive(Debug)]
pub struct Selector<P> {
    cfg: Config,
    candidates: BTreeMap<P, Candidate<P>>,
    next_round: Option<Instant>,
    first_deadline: Option<Instant>,
    first_choice_done: bool,
    queued: Vec<Action<P>>,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

impl<P: Clone + Ord + Debug> Selector<P> {
    /// A selector with no candidates. `samples` and `max_candidates` below 1 are raised to 1.
    pub fn new(mut cfg: Config) -> Self {
        cfg.samples = cfg.samples.max(1);
        cfg.max_candidates = cfg.max_candidates.max(1);
        cfg.max_failures = cfg.max_failures.max(1);
        Self {
            cfg,
            candidates: BTreeMap::new(),
            next_round: None,
            first_deadline: None,
            first_choice_done: false,
            queued: Vec::new(),
        }
    }

    /// The configuration in use.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Number of candidates.
    pub fn len(&self) -> usize {
        self.candidates.len()
    }

    /// Whether there are no candidates.
    pub fn is_empty(&self) -> bool {
        self.candidates.is_empty()
    }

    /// One candidate's state.
    pub fn candidate(&self, peer: &P) -> Option<&Candidate<P>> {
        self.candidates.get(peer)
    }

    /// Adds a candidate, or records another source for a known one. A new candidate is probed at
    /// the next `poll`. At [`Config::max_candidates`] the worst non-chosen candidate is evicted
    /// (most failures first, then the slowest measured one, then the oldest unmeasured one) — a
    /// chosen relay is never evicted; if every candidate is chosen, the new one is ignored.
    pub fn add_candidate(&mut self, peer: P, source: Source, now: Instant) {
        if let Some(c) = self.candidates.get_mut(&peer) {
            c.sources.insert(source);
            return;
        }
        if self.candidates.len() >= self.cfg.max_candidates {
            let n = self.cfg.samples;
            let worst = self
                .candidates
                .values()
                .filter(|c| !c.reservation.is_chosen())
                .max_by_key(|c| {
                    (
                        c.failures,
                        c.median(n).is_some(),
                        c.median(n),
                        std::cmp::Reverse(c.added),
                    )
                })
                .map(|c| c.peer.clone());
            match worst {
                Some(w) => {
                    self.candidates.remove(&w);
                }
                None => return,
            }
        }
        self.first_deadline
            .get_or_insert(now + self.cfg.probe_timeout);
        self.candidates.insert(
            peer.clone(),
            Candidate {
                peer,
                sources: BTreeSet::from([source]),
                samples: VecDeque::with_capacity(2 * self.cfg.samples),
                failures: 0,
                reservation: ReservationState::None,
                full: false,
                added: now,
                round_samples: 0,
                round_attempts: 0,
                in_flight: None,
            },
        );
    }

    /// Forgets a candidate (disconnected for good, banned). If it was chosen, the next `poll`
    /// emits its [`Action::Release`] and reserves a replacement.
    pub fn remove_candidate(&mut self, peer: &P) {
        if let Some(c) = self.candidates.remove(peer)
            && c.reservation.is_chosen()
        {
            self.queued.push(Action::Release(c.peer));
        }
    }

    /// A ping result. Results for unknown peers are ignored; unsolicited ones (the connection's
    /// own keep-alive pings) count like probe answers. An RTT above [`Config::probe_timeout`]
    /// counts as a failure.
    pub fn on_rtt(&mut self, peer: &P, rtt: Duration, now: Instant) {
        if rtt > self.cfg.probe_timeout {
            self.on_failure(peer, now);
            return;
        }
        let keep = 2 * self.cfg.samples;
        if let Some(c) = self.candidates.get_mut(peer) {
            c.samples.push_back(rtt);
            while c.samples.len() > keep {
                c.samples.pop_front();
            }
            c.failures = 0;
            c.round_samples += 1;
            c.in_flight = None;
        }
    }

    /// A ping timed out or the relay could not be dialed. After [`Config::max_failures`]
    /// consecutive failures the candidate is dropped (and, if chosen, released and replaced at
    /// the next `poll`).
    pub fn on_failure(&mut self, peer: &P, _now: Instant) {
        let Some(c) = self.candidates.get_mut(peer) else {
            return;
        };
        c.failures += 1;
        c.in_flight = None;
        if c.failures >= self.cfg.max_failures {
            self.remove_candidate(peer);
        }
    }

    /// A reservation outcome. Anything but `Accepted` on a chosen relay makes it unchosen
    /// ([`Action::Release`] and a replacement at the next `poll`) and keeps it from being chosen
    /// again until the next probe round. Events for relays that are not chosen are ignored, except
    /// that `Refused { full: true }` still marks the relay full.
    pub fn on_reservation(&mut self, peer: &P, event: ReservationEvent, now: Instant) {
        let Some(c) = self.candidates.get_mut(peer) else {
            return;
        };
        let chosen = c.reservation.is_chosen();
        let reason = match event {
            ReservationEvent::Accepted { expires } => {
                match c.reservation {
                    ReservationState::Requested { .. } => {
                        c.reservation = ReservationState::Active {
                            since: now,
                            expires,
                        };
                    }
                    ReservationState::Active { since, .. } => {
                        c.reservation = ReservationState::Active { since, expires };
                    }
                    _ => {}
                }
                return;
            }
            ReservationEvent::Refused { full } => {
                c.full |= full;
                if full {
                    FailReason::Full
                } else {
                    FailReason::Refused
                }
            }
            ReservationEvent::Closed => FailReason::Closed,
            ReservationEvent::Failed => FailReason::Error,
        };
        if chosen {
            c.reservation = ReservationState::Failed { at: now, reason };
            self.queued.push(Action::Release(c.peer.clone()));
        }
    }

    /// Median of the candidate's latest `samples` RTTs (fewer if it has fewer).
    pub fn median(&self, peer: &P) -> Option<Duration> {
        self.candidates.get(peer)?.median(self.cfg.samples)
    }

    /// Max − min of the candidate's latest `samples` RTTs: the tie-breaker, lower is steadier.
    pub fn jitter(&self, peer: &P) -> Option<Duration> {
        self.candidates.get(peer)?.jitter(self.cfg.samples)
    }

    /// Candidates with at least `samples` results, best first: by median, then jitter, then peer
    /// id (a total order, so equal measurements give the same ranking everywhere).
    pub fn ranking(&self) -> Vec<Ranked<P>> {
        let n = self.cfg.samples;
        let mut v: Vec<Ranked<P>> = self
            .candidates
            .values()
            .filter(|c| c.samples.len() >= n)
            .filter_map(|c| {
                Some(Ranked {
                    peer: c.peer.clone(),
                    median: c.median(n)?,
                    jitter: c.jitter(n)?,
                    chosen: c.reservation.is_chosen(),
                })
            })
            .collect();
        v.sort_by(|a, b| (a.median, a.jitter, &a.peer).cmp(&(b.median, b.jitter, &b.peer)));
        v
    }

    /// The chosen relays (reservation requested or active), in peer order.
    pub fn chosen(&self) -> Vec<P> {
        self.candidates
            .values()
            .filter(|c| c.reservation.is_chosen())
            .map(|c| c.peer.clone())
            .collect()
    }

    /// Every candidate, in peer order, for displays.
    pub fn snapshot(&self) -> Vec<CandidateView<P>> {
        let n = self.cfg.samples;
        self.candidates
            .values()
            .map(|c| CandidateView {
                peer: c.peer.clone(),
                sources: c.sources.iter().copied().collect(),
                samples_ms: c.samples.iter().copied().map(ms).collect(),
                median_ms: c.median(n).map(ms),
                jitter_ms: c.jitter(n).map(ms),
                failures: c.failures,
                full: c.full,
                state: c.reservation.name(),
                failure: match c.reservation {
                    ReservationState::Failed { reason, .. } => Some(reason),
                    _ => None,
                },
                chosen: c.reservation.is_chosen(),
            })
            .collect()
    }

    /// Decides what to do now: releases owed, probes to send, reservations to request.
    ///
    /// In order: start a probe round if due (every `reprobe_interval`; it also forgets `full`
    /// marks and failed reservations); count probes unanswered for `probe_timeout` as failures;
    /// fail reservations unanswered for `reserve_timeout` or expired; emit owed releases; emit
    /// probes; then, once the first choice is allowed (every candidate measured or out of
    /// attempts, or `probe_timeout` after the first candidate arrived), replace chosen relays that
    /// a candidate clearly beats (hysteresis) and fill free slots.
    pub fn poll(&mut self, now: Instant, rand: &mut impl FnMut() -> u64) -> Vec<Action<P>> {
        if self.next_round.is_none_or(|t| now >= t) {
            self.start_round(now);
        }
        self.check_timeouts(now);
        let mut out = std::mem::take(&mut self.queued);

        let (n, attempts) = (
            self.cfg.samples,
            self.cfg.samples + self.cfg.max_failures as usize,
        );
        for c in self.candidates.values_mut() {
            if c.in_flight.is_none() && c.round_samples < n && c.round_attempts < attempts {
                c.in_flight = Some(now);
                c.round_attempts += 1;
                out.push(Action::Probe(c.peer.clone()));
            }
        }

        if !self.first_choice_done && !self.candidates.is_empty() {
            let settled = self.candidates.values().all(|c| {
                c.round_samples >= n || (c.round_attempts >= attempts && c.in_flight.is_none())
            });
            if settled
                || self.out_of_contention(now, n, attempts)
                || self.first_deadline.is_some_and(|d| now >= d)
            {
                self.first_choice_done = true;
            }
        }
        if self.first_choice_done {
            self.switch(now, rand, &mut out);
            self.fill(now, rand, &mut out);
        }
        out
    }

    /// The first choice need not wait for slow candidates: once `k` candidates are measured,
    /// a candidate still being probed cannot be near-equal to the `k`-th best if its probe has
    /// been out longer than that bound, or if most of its `samples` already exceed it. (Without
    /// this, one 200 ms candidate held back reachability by three of its probes; a wrong early
    /// call is corrected by the next round's hysteresis.)
    fn out_of_contention(&self, now: Instant, n: usize, attempts: usize) -> bool {
        let k = self.cfg.k.max(1);
        let mut meds: Vec<Duration> = self
            .candidates
            .values()
            .filter(|c| c.round_samples >= n)
            .filter_map(|c| c.median(n))
            .collect();
        if meds.len() < k {
            return false;
        }
        meds.sort();
        let bound = meds[k - 1].mul_f64(1.0 + self.cfg.near_equal);
        self.candidates.values().all(|c| {
            c.round_samples >= n
                || (c.round_attempts >= attempts && c.in_flight.is_none())
                || c.in_flight.is_some_and(|t| now.duration_since(t) > bound)
                || c.samples
                    .iter()
                    .rev()
                    .take(c.round_samples)
                    .filter(|x| **x > bound)
                    .count()
                    > n / 2
        })
    }

    fn start_round(&mut self, now: Instant) {
        self.next_round = Some(now + self.cfg.reprobe_interval);
        for c in self.candidates.values_mut() {
            c.round_samples = 0;
            c.round_attempts = 0;
            c.in_flight = None;
            c.full = false;
            if matches!(c.reservation, ReservationState::Failed { .. }) {
                c.reservation = ReservationState::None;
            }
        }
    }

    fn check_timeouts(&mut self, now: Instant) {
        let timed_out: Vec<P> = self
            .candidates
            .values()
            .filter(|c| {
                c.in_flight
                    .is_some_and(|t| now >= t + self.cfg.probe_timeout)
            })
            .map(|c| c.peer.clone())
            .collect();
        for p in timed_out {
            self.on_failure(&p, now);
        }
        for c in self.candidates.values_mut() {
            let reason = match c.reservation {
                ReservationState::Requested { since }
                    if now >= since + self.cfg.reserve_timeout =>
                {
                    FailReason::NoAnswer
                }
                ReservationState::Active {
                    expires: Some(e), ..
                } if now >= e => FailReason::Expired,
                _ => continue,
            };
            c.reservation = ReservationState::Failed { at: now, reason };
            self.queued.push(Action::Release(c.peer.clone()));
        }
    }

    /// Measured candidates that may be newly chosen, best first.
    fn pool(&self) -> Vec<Ranked<P>> {
        self.ranking()
            .into_iter()
            .filter(|r| {
                let c = &self.candidates[&r.peer];
                !r.chosen
                    && !c.full
                    && c.failures == 0
                    && !matches!(c.reservation, ReservationState::Failed { .. })
            })
            .collect()
    }

    fn reserve(&mut self, peer: &P, now: Instant, out: &mut Vec<Action<P>>) {
        if let Some(c) = self.candidates.get_mut(peer) {
            c.reservation = ReservationState::Requested { since: now };
            out.push(Action::Reserve(peer.clone()));
        }
    }

    /// Index of a random member of the near-equal group at the head of `pool` (which must not be
    /// empty): every entry whose median is within `near_equal` of the first one's.
    fn pick_near_equal(&self, pool: &[Ranked<P>], rand: &mut impl FnMut() -> u64) -> usize {
        let limit = pool[0].median.mul_f64(1.0 + self.cfg.near_equal);
        let group = pool.iter().take_while(|r| r.median <= limit).count();
        (rand() % group as u64) as usize
    }

    fn fill(&mut self, now: Instant, rand: &mut impl FnMut() -> u64, out: &mut Vec<Action<P>>) {
        let chosen = self
            .candidates
            .values()
            .filter(|c| c.reservation.is_chosen())
            .count();
        let mut need = self.cfg.k.saturating_sub(chosen);
        if need == 0 {
            return;
        }
        let mut pool = self.pool();
        if pool.is_empty() {
            return;
        }
        // The near-equal group is fixed by the best of the pool; draw from it without
        // replacement, then take the rest of the ranking in order.
        let limit = pool[0].median.mul_f64(1.0 + self.cfg.near_equal);
        let mut group = pool.iter().take_while(|r| r.median <= limit).count();
        while need > 0 && !pool.is_empty() {
            let i = if group > 0 {
                group -= 1;
                (rand() % (group as u64 + 1)) as usize
            } else {
                0
            };
            let r = pool.remove(i);
            self.reserve(&r.peer, now, out);
            need -= 1;
        }
    }

    fn switch(&mut self, now: Instant, rand: &mut impl FnMut() -> u64, out: &mut Vec<Action<P>>) {
        let n = self.cfg.samples;
        for _ in 0..self.cfg.k {
            let worst = self
                .candidates
                .values()
                .filter(|c| c.reservation.is_chosen())
                .filter_map(|c| Some((c.median(n)?, c.peer.clone())))
                .max();
            let Some((current, worst)) = worst else {
                return;
            };
            let threshold = current.mul_f64(1.0 - self.cfg.switch_factor);
            let better: Vec<Ranked<P>> = self
                .pool()
                .into_iter()
                .filter(|r| r.median < threshold && current - r.median >= self.cfg.min_gain)
                .collect();
            if better.is_empty() {
                return;
            }
            let pick = better[self.pick_near_equal(&better, rand)].peer.clone();
            self.reserve(&pick, now, out);
            if let Some(c) = self.candidates.get_mut(&worst) {
                c.reservation = ReservationState::None;
            }
            out.push(Action::Release(worst));
        }
    }
}
