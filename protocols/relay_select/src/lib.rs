//! Relay selection by measured latency, sans IO (DESIGN §4.3).
//!
//! A node that is not publicly reachable needs circuit relay v2 reservations to be dialable. Which
//! relays it picks decides the latency of every relayed connection to it, so it picks by measured
//! round-trip time rather than by whoever answered first:
//!
//! 1. **Candidates** come from the relay provider key, the bootstrap list and peers whose identify
//!    lists the HOP protocol ([`Source`]); at most [`Config::max_candidates`] are kept.
//! 2. **Probing**: each candidate gets [`Config::samples`] pings per probe round
//!    ([`Action::Probe`]); the last `2 * samples` results are kept per candidate.
//! 3. **Ranking** by median RTT of the latest `samples` results (one slow ping does not disqualify
//!    a relay), jitter (max − min) breaking ties, then the peer id so the order is total.
//! 4. **Choice**: reservations on the best [`Config::k`], drawn at random among the candidates
//!    within [`Config::near_equal`] of the best, so clients that see the same relays at the same
//!    latency spread over them instead of all crowding the single fastest one. Relays that
//!    refused for lack of room (the relay's own per-relay cap) are skipped.
//! 5. **Hysteresis**: a chosen relay is only replaced when it dies or a candidate is clearly
//!    better ([`Config::switch_factor`] *and* [`Config::min_gain`]), so latency noise never makes
//!    a node flap between relays (each switch tears down a reservation and changes the node's
//!    advertised addresses).
//! 6. **Re-probing** every [`Config::reprobe_interval`] keeps rankings current; pinging the chosen
//!    relays also keeps their connections (and so the reservations) alive.
//!
//! The crate knows nothing of libp2p: [`Selector`] is generic over the peer id type, time is passed
//! in, and randomness comes from the caller, so every decision is reproducible in tests. The node
//! turns [`Action`]s into pings, `listen_on(<relay>/p2p-circuit)` and `remove_listener`, and feeds
//! the outcomes back.
//!
//! A dialer holding several relayed addresses for one peer uses [`best_relay`].
//!
//! Tests are in `tests.rs` (unit and property tests, all with deterministic randomness).

mod selector;
#[cfg(test)]
mod tests;

pub use selector::{
    Action, Candidate, CandidateView, Config, FailReason, Ranked, ReservationEvent,
    ReservationState, Selector, Source,
};

use std::time::Duration;

/// Of several relays through which one target can be reached, the one with the lowest RTT from
/// here.
///
/// The relayed path is dialer → relay → target; the dialer cannot measure the second leg, but it
/// knows (or can cheaply learn) the first, so it picks the relay closest to itself. Relays whose
/// RTT is unknown sort after every measured one (a known-good path beats a guess); ties, and the
/// order among unknown ones, are broken by the peer id so the answer is deterministic.
pub fn best_relay<'a, P: Ord + 'a>(
    relays: impl IntoIterator<Item = &'a P>,
    rtt: impl Fn(&P) -> Option<Duration>,
) -> Option<&'a P> {
    relays.into_iter().min_by(|a, b| {
        let (ra, rb) = (rtt(a), rtt(b));
        (ra.is_none(), ra, *a).cmp(&(rb.is_none(), rb, *b))
    })
}
