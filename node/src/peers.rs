//! The one peer-misbehaviour ledger.
//!
//! Protocol code reports what a peer did as a [`PeerAction`]; this module keeps a score per peer
//! (starting at 0, decaying back toward 0 with a half-life) and says when a peer crosses the ban
//! threshold. The swarm actor then blocks it (libp2p `allow_block_list`: existing connections are
//! closed and new ones refused) for [`BAN_FOR`]. Timeouts and I/O errors are not reported here.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use libp2p::PeerId;

/// Score at or below which a peer is banned.
pub const BAN_THRESHOLD: f64 = -100.0;
/// How long a ban lasts.
pub const BAN_FOR: Duration = Duration::from_secs(3600);
/// Half-life of a negative score.
pub const HALF_LIFE: Duration = Duration::from_secs(600);
const MAX_TRACKED: usize = 10_000;

/// How bad one thing a peer did is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerAction {
    /// Banned at once.
    Fatal,
    /// About 4 of these in a short time: banned. Forged or malformed data, unknown namespaces.
    LowTolerance,
    /// About 10: banned. Stale (rolled back) records.
    MidTolerance,
    /// About 100: banned.
    HighTolerance,
}

impl PeerAction {
    fn penalty(self) -> f64 {
        match self {
            PeerAction::Fatal => 1000.0,
            PeerAction::LowTolerance => 26.0,
            PeerAction::MidTolerance => 10.5,
            PeerAction::HighTolerance => 1.01,
        }
    }
}

#[derive(Debug)]
struct Entry {
    score: f64,
    at: Instant,
    banned_until: Option<Instant>,
}

/// Scores of all peers that misbehaved recently.
#[derive(Debug, Default)]
pub struct PeerScores {
    peers: HashMap<PeerId, Entry>,
}

impl PeerScores {
    /// Records `action` by `peer` at `now`; returns true when the peer is to be banned now.
    pub fn report(&mut self, peer: PeerId, action: PeerAction, now: Instant) -> bool {
        if self.peers.len() >= MAX_TRACKED && !self.peers.contains_key(&peer) {
            self.prune(now);
        }
        let e = self.peers.entry(peer).or_insert(Entry {
            score: 0.0,
            at: now,
            banned_until: None,
        });
        e.score = decay(e.score, now.saturating_duration_since(e.at)) - action.penalty();
        e.at = now;
        if e.score <= BAN_THRESHOLD && e.banned_until.is_none_or(|t| t <= now) {
            e.banned_until = Some(now + BAN_FOR);
            return true;
        }
        false
    }

    /// The current score of `peer` (0 when unknown).
    pub fn score(&self, peer: &PeerId, now: Instant) -> f64 {
        self.peers
            .get(peer)
            .map_or(0.0, |e| decay(e.score, now.saturating_duration_since(e.at)))
    }

    /// Peers whose ban ended by `now`; they are forgotten.
    pub fn expired_bans(&mut self, now: Instant) -> Vec<PeerId> {
        let done: Vec<PeerId> = self
            .peers
            .iter()
            .filter(|(_, e)| e.banned_until.is_some_and(|t| t <= now))
            .map(|(p, _)| *p)
            .collect();
        for p in &done {
            self.peers.remove(p);
        }
        done
    }

    /// How many peers are banned at `now`.
    pub fn banned(&self, now: Instant) -> usize {
        self.peers
            .values()
            .filter(|e| e.banned_until.is_some_and(|t| t > now))
            .count()
    }

    fn prune(&mut self, now: Instant) {
        self.peers.retain(|_, e| {
            e.banned_until.is_some_and(|t| t > now)
                || decay(e.score, now.saturating_duration_since(e.at)) < -1.0
        });
    }
}

fn decay(score: f64, elapsed: Duration) -> f64 {
    score * 0.5f64.powf(elapsed.as_secs_f64() / HALF_LIFE.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn four_low_tolerance_strikes_ban() {
        let mut s = PeerScores::default();
        let p = PeerId::random();
        let t = Instant::now();
        assert!(!s.report(p, PeerAction::LowTolerance, t));
        assert!(!s.report(p, PeerAction::LowTolerance, t));
        assert!(!s.report(p, PeerAction::LowTolerance, t));
        assert!(s.report(p, PeerAction::LowTolerance, t));
        assert!(
            !s.report(p, PeerAction::LowTolerance, t),
            "banned once, not twice"
        );
        assert_eq!(s.banned(t), 1);
        assert_eq!(s.expired_bans(t + BAN_FOR), vec![p]);
        assert_eq!(s.score(&p, t), 0.0);
    }

    #[test]
    fn scores_decay() {
        let mut s = PeerScores::default();
        let p = PeerId::random();
        let t = Instant::now();
        s.report(p, PeerAction::LowTolerance, t);
        let later = s.score(&p, t + HALF_LIFE);
        assert!((later + 13.0).abs() < 0.01, "{later}");
        assert!(s.report(p, PeerAction::Fatal, t));
    }
}
