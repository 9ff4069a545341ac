//! How a key's recent calls went: talked through, hung up within seconds of the answer, cancelled
//! within seconds of ringing, unanswered, or refused with `607 Unwanted`; and what that says
//! about the key. A fixed ring of time slots per key, so a key costs the same whether it placed
//! ten calls or ten thousand.
//!
//! Knows nothing of clocks (slot numbers come in), SIP, or how the verdict is scored.

use serde::Serialize;

use super::VelocityConfig;

/// What became of one call, as velocity weighs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Answered and not hung up within `hang_up_secs`. Counted at the answer, so that a long
    /// conversation counts while it lasts instead of after the short failures around it.
    Talked,
    /// Answered, then ended within `hang_up_secs`: a callee hanging up on a recording.
    HungUp,
    /// Cancelled by the caller within `short_ring_secs` of ringing.
    QuickCancel,
    /// Not answered: rang out, busy, refused by the network, or cancelled after a normal ring.
    Unanswered,
    /// The callee answered `607 Unwanted` (RFC 8197).
    Unwanted,
}

const KINDS: usize = 5;
/// Slots per window: the window slides in tenths.
pub const SLOTS: usize = 10;

/// Calls with each outcome within the window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Tally {
    pub talked: u32,
    pub hung_up: u32,
    pub quick_cancel: u32,
    pub unanswered: u32,
    pub unwanted: u32,
}

impl Tally {
    /// Calls whose outcome is known.
    pub fn settled(&self) -> u32 {
        self.talked + self.hung_up + self.quick_cancel + self.unanswered + self.unwanted
    }

    /// What these outcomes say. A 607 counts from the first; the shares only once
    /// `min_outcomes` calls have an outcome, so that the first calls of a burst (when only the
    /// quick failures have come back) prove nothing either way.
    pub fn health(&self, cfg: &VelocityConfig) -> Health {
        if cfg.unwanted_calls > 0 && self.unwanted >= cfg.unwanted_calls {
            return Health::Bad;
        }
        let n = self.settled();
        if n == 0 || n < cfg.min_outcomes {
            return Health::TooFew;
        }
        let share = |k: u32| f64::from(k) / f64::from(n);
        if share(self.talked) < cfg.min_talked_ratio
            || share(self.hung_up + self.quick_cancel) >= cfg.max_hang_up_ratio
        {
            Health::Bad
        } else {
            Health::Healthy
        }
    }
}

/// What a key's outcomes say about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// Fewer calls with an outcome than the evidence needs, and no 607.
    TooFew,
    /// Enough calls, and they are answered and talked through.
    Healthy,
    /// Few calls talked through, many hung up or cancelled within seconds, or 607s.
    Bad,
}

/// Outcomes per slot of the window; a slot is reused once it has slid out.
pub struct Ring {
    stamps: [u32; SLOTS],
    counts: [[u16; KINDS]; SLOTS],
}

impl Default for Ring {
    fn default() -> Self {
        Ring {
            stamps: [u32::MAX; SLOTS],
            counts: [[0; KINDS]; SLOTS],
        }
    }
}

impl Ring {
    /// The counters of slot `n`, emptied first when they still hold an older slot's counts;
    /// `None` for a slot older than the window (a late event: it is dropped).
    fn slot(&mut self, n: u32) -> Option<&mut [u16; KINDS]> {
        let i = n as usize % SLOTS;
        if self.stamps[i] != n {
            if self.stamps[i] != u32::MAX && self.stamps[i] > n {
                return None;
            }
            self.stamps[i] = n;
            self.counts[i] = [0; KINDS];
        }
        Some(&mut self.counts[i])
    }

    /// Counts one outcome in slot `n`.
    pub fn add(&mut self, n: u32, o: Outcome) {
        if let Some(c) = self.slot(n) {
            c[o as usize] = c[o as usize].saturating_add(1);
        }
    }

    /// A call counted as talked at its answer (slot `answered`) turned out a hang-up; when that
    /// slot has slid out, the hang-up is counted in slot `now` instead.
    pub fn hung_up(&mut self, answered: u32, now: u32) {
        let i = answered as usize % SLOTS;
        let talked = Outcome::Talked as usize;
        if self.stamps[i] == answered && self.counts[i][talked] > 0 {
            self.counts[i][talked] -= 1;
            let h = &mut self.counts[i][Outcome::HungUp as usize];
            *h = h.saturating_add(1);
        } else {
            self.add(now, Outcome::HungUp);
        }
    }

    /// The outcomes of the window ending at slot `now`. A slot stamped after `now` (an end
    /// reported with a later time than the next start) counts as current.
    pub fn tally(&self, now: u32) -> Tally {
        let mut t = [0u32; KINDS];
        for (stamp, counts) in self.stamps.iter().zip(self.counts.iter()) {
            if *stamp != u32::MAX && now.saturating_sub(*stamp) < SLOTS as u32 {
                for (sum, c) in t.iter_mut().zip(counts) {
                    *sum += u32::from(*c);
                }
            }
        }
        Tally {
            talked: t[0],
            hung_up: t[1],
            quick_cancel: t[2],
            unanswered: t[3],
            unwanted: t[4],
        }
    }
}

/// The width in seconds of one slot of a window of `window_secs`.
pub fn slot_secs(window_secs: u64) -> u32 {
    (window_secs.clamp(1, 86_400).div_ceil(SLOTS as u64)) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_slides_and_late_events_are_dropped() {
        let mut r = Ring::default();
        r.add(100, Outcome::Talked);
        r.add(100, Outcome::Talked);
        r.add(105, Outcome::Unanswered);
        r.hung_up(100, 101);
        assert_eq!(
            r.tally(105),
            Tally {
                talked: 1,
                hung_up: 1,
                unanswered: 1,
                ..Tally::default()
            }
        );
        // Slot 100 slides out at 110; 105 stays until 115.
        assert_eq!(r.tally(110).settled(), 1);
        assert_eq!(r.tally(115).settled(), 0);
        // Slot 120 reuses 100's place; a late event for 100 must not empty it.
        r.add(120, Outcome::QuickCancel);
        r.add(100, Outcome::Talked);
        assert_eq!(r.tally(120).quick_cancel, 1);
        assert_eq!(r.tally(120).talked, 0);
        // A hang-up whose answer slot is gone is still counted, now.
        r.hung_up(100, 121);
        assert_eq!(r.tally(121).hung_up, 1);
    }

    #[test]
    fn health_needs_enough_outcomes_except_for_a_607() {
        let cfg = VelocityConfig::default();
        let t = |talked, hung_up, quick_cancel, unanswered, unwanted| Tally {
            talked,
            hung_up,
            quick_cancel,
            unanswered,
            unwanted,
        };
        let cases = [
            (t(0, 0, 0, 0, 0), Health::TooFew),
            (t(0, 2, 2, 0, 0), Health::TooFew),
            (t(0, 3, 2, 0, 0), Health::Bad),
            (t(1, 0, 0, 4, 0), Health::Healthy),
            (t(0, 0, 0, 5, 0), Health::Bad),
            (t(0, 0, 0, 0, 1), Health::Bad),
            (t(7, 1, 0, 2, 0), Health::Healthy),
            (t(2, 0, 0, 8, 0), Health::Healthy),
            (t(1, 0, 0, 9, 0), Health::Bad),
            (t(3, 3, 2, 2, 0), Health::Bad),
            (t(6, 2, 2, 0, 0), Health::Healthy),
            (t(60, 2, 2, 30, 1), Health::Bad),
        ];
        for (i, (tally, want)) in cases.iter().enumerate() {
            assert_eq!(tally.health(&cfg), *want, "case {i}: {tally:?}");
        }
        let off = VelocityConfig {
            unwanted_calls: 0,
            ..VelocityConfig::default()
        };
        assert_eq!(t(60, 2, 2, 30, 1).health(&off), Health::Healthy);
    }
}
