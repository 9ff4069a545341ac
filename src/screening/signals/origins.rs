//! Which origins sign their calls: for each source address, how many of its recent calls
//! carried an Identity header or a `verstat`. Neighbour spoofing is evidence only where a
//! genuine neighbour would have arrived attested, and that is a property of the path the call
//! took, not of the country: a STIR-capable core attests its own subscribers, while a legacy TDM
//! interconnect in the same country never can. Learning it from traffic needs no configuration
//! and follows an interconnect that gains STIR.
//!
//! Knows nothing of what a source is beyond its text, nor of how a call was verified.

use super::bounded::{Aging, BoundedMap};

/// Counts are halved past this many calls, so the share follows a change within hours.
const HALVE_AT: u32 = 1_000;
/// An origin silent this long is forgotten.
const IDLE_MS: u64 = 3_600_000;

struct Origin {
    calls: u32,
    signed: u32,
    idle_after_ms: u64,
}

impl Aging for Origin {
    fn idle_after_ms(&self) -> u64 {
        self.idle_after_ms
    }
}

/// A bounded table of origins and the share of their calls that came signed.
pub struct Origins {
    map: BoundedMap<Origin>,
    min_calls: u32,
}

impl Origins {
    /// `cap` origins at most; an origin signs once `min_calls` of its calls were seen and at
    /// least half of them were signed.
    pub fn new(cap: usize, min_calls: u32) -> Origins {
        Origins {
            map: BoundedMap::new(16, cap),
            min_calls: min_calls.max(1),
        }
    }

    /// Counts one live call from `source`.
    pub fn observe(&self, source: &str, signed: bool, now_ms: u64) {
        let init = || Origin {
            calls: 0,
            signed: 0,
            idle_after_ms: 0,
        };
        // What the map pushes out is only a count: nothing to undo.
        let _ = self.map.upsert(self.map.key(source), now_ms, init, |o| {
            if o.calls >= HALVE_AT {
                o.calls /= 2;
                o.signed /= 2;
            }
            o.calls += 1;
            o.signed += u32::from(signed);
            o.idle_after_ms = now_ms.saturating_add(IDLE_MS);
        });
    }

    /// Whether calls from `source` are normally signed.
    pub fn signs(&self, source: &str) -> bool {
        self.map
            .peek(self.map.key(source), |o| {
                o.calls >= self.min_calls && o.signed * 2 >= o.calls
            })
            .unwrap_or(false)
    }

    pub fn sweep(&self, now_ms: u64) {
        self.map.sweep(now_ms);
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_origin_signs_once_enough_of_its_calls_were_signed() {
        let o = Origins::new(100, 20);
        for i in 0..19 {
            o.observe("core", true, i);
        }
        assert!(!o.signs("core"), "19 calls are not yet enough to judge");
        o.observe("core", false, 19);
        assert!(o.signs("core"), "19 of 20 signed");
        for i in 0..30 {
            o.observe("tdm", i % 3 == 0, i);
        }
        assert!(!o.signs("tdm"), "a third signed is not a signing origin");
        assert!(!o.signs("never-seen"));
    }

    #[test]
    fn the_share_follows_a_change_and_idle_origins_go() {
        let o = Origins::new(100, 20);
        for i in 0..1_000 {
            o.observe("gw", false, i);
        }
        assert!(!o.signs("gw"));
        // The interconnect gains STIR: after halving, its new calls carry the share.
        for i in 0..1_200 {
            o.observe("gw", true, 1_000 + i);
        }
        assert!(o.signs("gw"));
        o.sweep(2_200 + IDLE_MS + 1);
        assert!(o.is_empty());
    }

    #[test]
    fn the_table_is_capped() {
        let o = Origins::new(32, 1);
        for i in 0..1_000u64 {
            o.observe(&format!("10.0.{}.{}", i / 256, i % 256), true, i);
        }
        assert!(o.len() <= 32, "{} origins kept", o.len());
    }
}
