//! PASSporT replay: a signed PASSporT verified on one call and presented again on another call
//! while it is still fresh. A signature proves who signed the claims, not that this call is the
//! one they were signed for, so a captured PASSporT replayed within its freshness window would
//! pass as the signer's attestation again.
//!
//! Each verified PASSporT is remembered (a stable 64-bit hash of its signature) with the call it
//! came on, until its freshness window is over. The same PASSporT on the same call (a
//! retransmission, a proxy's failover of that request, which keeps its Call-ID) is no replay.
//!
//! With a fleet, each PASSporT verified here is also handed to whoever talks to the fleet
//! ([`Replays::drain_shared`]), which claims it fleet-wide; a claim another agent's call already
//! holds comes back through [`Replays::held_elsewhere`], so that every later presentation on this
//! agent is a replay at decision time. Nothing waits for the fleet: the first presentation on an
//! agent that did not know the PASSporT yet is judged on what the agent knew.
//!
//! Pure: no clocks (times come in), no sockets, nothing of Redis or SIP.

use std::sync::Mutex;

use super::bounded::{Aging, BoundedMap};
use super::shared::callee_hash as stable_hash;

/// Where the earlier call with the same PASSporT was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replay {
    /// On this agent.
    Here,
    /// On another agent of the fleet.
    Fleet,
}

/// A PASSporT verified here, for the fleet to claim: hashes that every agent computes alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claim {
    pub passport: u64,
    pub call: u64,
    /// How long the claim must last (the freshness window, in ms).
    pub ttl_ms: u64,
    /// Its slot in this agent's table.
    pub token: u64,
}

struct Seen {
    passport: u64,
    call: u64,
    elsewhere: bool,
    until_ms: u64,
}

impl Aging for Seen {
    fn idle_after_ms(&self) -> u64 {
        self.until_ms
    }
}

/// Claims waiting for the fleet at most; beyond it the oldest wait is dropped (the replay is
/// then caught only on this agent).
const MAX_PENDING: usize = 10_000;

/// The PASSporTs verified within their freshness window, bounded.
pub struct Replays {
    seen: BoundedMap<Seen>,
    /// Present when a fleet shares them.
    pending: Option<Mutex<Vec<Claim>>>,
}

impl Replays {
    pub fn new(cap: usize) -> Replays {
        Replays {
            seen: BoundedMap::new(16, cap.max(1)),
            pending: None,
        }
    }

    /// From now on each PASSporT verified is also kept for [`Replays::drain_shared`].
    pub fn share(&mut self) {
        self.pending = Some(Mutex::new(Vec::new()));
    }

    /// Notes PASSporT `signature`, verified on call `call_id` at `now_ms` and fresh for
    /// `window_ms` more; where it was seen on another call before, if it was.
    pub fn note(
        &self,
        signature: &str,
        call_id: &str,
        now_ms: u64,
        window_ms: u64,
    ) -> Option<Replay> {
        let passport = stable_hash(signature);
        let call = stable_hash(call_id);
        let until_ms = now_ms.saturating_add(window_ms);
        let token = self.seen.key(signature);
        // Whether this PASSporT is new here: only then is it claimed from the fleet.
        let new = std::cell::Cell::new(false);
        let (earlier, gone) = self.seen.upsert(
            token,
            now_ms,
            || {
                new.set(true);
                Seen {
                    passport,
                    call,
                    elsewhere: false,
                    until_ms,
                }
            },
            |s| {
                if s.passport != passport || s.until_ms <= now_ms {
                    // Another PASSporT in this slot, or this one gone stale: start again.
                    *s = Seen {
                        passport,
                        call,
                        elsewhere: false,
                        until_ms,
                    };
                    new.set(true);
                    return None;
                }
                (s.call != call).then_some(if s.elsewhere {
                    Replay::Fleet
                } else {
                    Replay::Here
                })
            },
        );
        drop(gone);
        if new.get() {
            if let Some(p) = &self.pending {
                let mut p = p.lock().unwrap_or_else(|e| e.into_inner());
                if p.len() < MAX_PENDING {
                    p.push(Claim {
                        passport,
                        call,
                        ttl_ms: window_ms,
                        token,
                    });
                }
            }
        }
        earlier
    }

    /// The PASSporTs verified since the last drain, for the fleet to claim.
    pub fn drain_shared(&self) -> Vec<Claim> {
        self.pending.as_ref().map_or_else(Vec::new, |p| {
            std::mem::take(&mut *p.lock().unwrap_or_else(|e| e.into_inner()))
        })
    }

    /// The fleet says `claim`'s PASSporT was first seen on call `holder` (a stable hash):
    /// when that is another call, every later presentation here is a replay.
    pub fn held_elsewhere(&self, claim: Claim, holder: u64, now_ms: u64) -> bool {
        if holder == claim.call {
            return false;
        }
        self.seen.update(claim.token, |s| {
            if s.passport == claim.passport && s.until_ms > now_ms {
                s.call = holder;
                s.elsewhere = true;
            }
        });
        true
    }

    pub fn sweep(&self, now_ms: u64) {
        drop(self.seen.sweep(now_ms));
    }

    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_790_000_000_000;

    #[test]
    fn the_same_passport_on_another_call_is_a_replay_until_it_goes_stale() {
        let r = Replays::new(100);
        assert_eq!(r.note("sig-1", "call-a", T0, 120_000), None);
        // The same call again (a retransmission, a failover of the same request): no replay.
        assert_eq!(r.note("sig-1", "call-a", T0 + 10, 120_000), None);
        assert_eq!(
            r.note("sig-1", "call-b", T0 + 20, 120_000),
            Some(Replay::Here)
        );
        assert_eq!(r.note("sig-2", "call-b", T0 + 20, 120_000), None);
        // Past its window the PASSporT is stale anyway (verification refuses it); a slot reused.
        assert_eq!(r.note("sig-1", "call-c", T0 + 120_001, 120_000), None);
        assert_eq!(r.drain_shared(), [], "no fleet, nothing kept for it");
    }

    #[test]
    fn a_claim_held_by_another_agents_call_makes_every_later_presentation_a_replay() {
        let mut r = Replays::new(100);
        r.share();
        assert_eq!(r.note("sig-1", "call-a", T0, 120_000), None);
        assert_eq!(r.note("sig-1", "call-a", T0 + 5, 120_000), None);
        let claims = r.drain_shared();
        assert_eq!(claims.len(), 1, "one claim per PASSporT");
        assert!(r.drain_shared().is_empty());
        let c = claims[0];
        assert_eq!(
            (c.passport, c.call),
            (stable_hash("sig-1"), stable_hash("call-a"))
        );
        // The fleet: held by this very call, nothing changes.
        assert!(!r.held_elsewhere(c, c.call, T0 + 10));
        assert_eq!(r.note("sig-1", "call-a", T0 + 20, 120_000), None);
        // Held by a call on another agent: even this agent's own call is now the replay.
        assert!(r.held_elsewhere(c, stable_hash("call-on-b"), T0 + 30));
        assert_eq!(
            r.note("sig-1", "call-a", T0 + 40, 120_000),
            Some(Replay::Fleet)
        );
        assert_eq!(
            r.note("sig-1", "call-z", T0 + 50, 120_000),
            Some(Replay::Fleet)
        );
    }

    #[test]
    fn the_table_stays_within_its_cap() {
        let mut r = Replays::new(64);
        r.share();
        for i in 0..10_000u64 {
            let _ = r.note(&format!("sig-{i}"), &format!("call-{i}"), T0 + i, 120_000);
        }
        assert!(r.len() <= 64 + 16, "{}", r.len());
        assert_eq!(r.drain_shared().len(), MAX_PENDING);
    }
}
