//! Failed challenges: a caller that was asked to press a digit before its call rang and did not
//! (the app's challenge, `Action::Challenge`) is most likely a robodialer, so its later calls
//! weigh a little more. The mark is bounded and fades: each failure adds `score_per_failure`,
//! the sum is capped at `max_score` (by default below the block level, so failures alone never
//! block: a person who missed the prompt once must not be shut out), and it halves every
//! `half_life_secs`, forgotten after four half-lives. The table is capped by `max_numbers`.
//!
//! A caller id can be spoofed, so the mark says nothing of the number's block. Knows nothing
//! of media, digits or SIP: the app says that a challenge failed, and when.

use serde::Deserialize;

use super::bounded::{Aging, BoundedMap};
use crate::screening::evidence::{Evidence, Signal};

/// `[signals.challenge]`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChallengeSignalConfig {
    pub enabled: bool,
    /// What one failed challenge adds to the caller's later calls.
    pub score_per_failure: i32,
    /// The most that failures add, however many.
    pub max_score: i32,
    /// A failure's weight halves in this time.
    pub half_life_secs: u64,
    /// Callers remembered at once; the least recently failed go first.
    pub max_numbers: usize,
}

impl Default for ChallengeSignalConfig {
    fn default() -> Self {
        ChallengeSignalConfig {
            enabled: true,
            score_per_failure: 25,
            max_score: 75,
            half_life_secs: 3 * 3_600,
            max_numbers: 100_000,
        }
    }
}

impl ChallengeSignalConfig {
    /// Every problem, each naming the key and what was expected.
    pub fn validate(&self) -> Vec<String> {
        let mut p = Vec::new();
        if self.score_per_failure < 0 || self.max_score < 0 {
            p.push(format!(
                "signals.challenge: score_per_failure {} / max_score {}: expected 0 or more",
                self.score_per_failure, self.max_score
            ));
        }
        if self.half_life_secs == 0 || self.half_life_secs > 30 * 86_400 {
            p.push(format!(
                "signals.challenge.half_life_secs {}: expected 1 to 2592000 (30 days)",
                self.half_life_secs
            ));
        }
        if self.max_numbers == 0 {
            p.push("signals.challenge.max_numbers is 0; expected a positive number".into());
        }
        p
    }
}

/// Forgotten below 1/16 of a failure.
const FORGET_HALF_LIVES: u64 = 4;

struct Failures {
    /// Failures, each weighed by its age, as of `at_ms`.
    weight: f64,
    at_ms: u64,
    forget_ms: u64,
}

impl Aging for Failures {
    fn idle_after_ms(&self) -> u64 {
        self.forget_ms
    }
}

/// Failed challenges per caller, fading.
pub struct ChallengeBook {
    cfg: ChallengeSignalConfig,
    callers: BoundedMap<Failures>,
}

impl ChallengeBook {
    pub fn new(cfg: ChallengeSignalConfig) -> ChallengeBook {
        ChallengeBook {
            callers: BoundedMap::new(16, cfg.max_numbers),
            cfg,
        }
    }

    fn faded(&self, f: &Failures, now_ms: u64) -> f64 {
        let half = (self.cfg.half_life_secs.max(1) * 1000) as f64;
        f.weight * 0.5f64.powf(now_ms.saturating_sub(f.at_ms) as f64 / half)
    }

    /// `caller` (E.164) failed a challenge at `now_ms`.
    pub fn failed(&self, caller: &str, now_ms: u64) {
        let forget = now_ms.saturating_add(FORGET_HALF_LIVES * self.cfg.half_life_secs * 1000);
        let key = self.callers.key(caller);
        let fresh = || Failures {
            weight: 0.0,
            at_ms: now_ms,
            forget_ms: forget,
        };
        let (_, _gone) = self.callers.upsert(key, now_ms, fresh, |f| {
            f.weight = self.faded(f, now_ms) + 1.0;
            f.at_ms = now_ms;
            f.forget_ms = forget;
        });
    }

    /// The failures of `caller` as they weigh at `now_ms`: one failure is 1.0 when fresh.
    pub fn weight(&self, caller: &str, now_ms: u64) -> f64 {
        self.callers
            .peek(self.callers.key(caller), |f| self.faded(f, now_ms))
            .unwrap_or(0.0)
    }

    /// The evidence of `caller`'s failed challenges, if they still count.
    pub fn assess(&self, caller: &str, now_ms: u64) -> Option<Evidence> {
        let w = self.weight(caller, now_ms);
        let score = (f64::from(self.cfg.score_per_failure) * w).round() as i32;
        let score = score.min(self.cfg.max_score);
        if score <= 0 {
            return None;
        }
        Some(Evidence::signal(
            Signal::Challenge,
            score,
            caller,
            "challenge",
            format!(
                "{caller} failed challenges lately (no digit in time; {w:.1} after fading by half every {} s)",
                self.cfg.half_life_secs
            ),
        ))
    }

    /// Frees the callers whose failures have faded out.
    pub fn sweep(&self, now_ms: u64) {
        self.callers.sweep(now_ms);
    }

    /// Callers remembered.
    pub fn len(&self) -> usize {
        self.callers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.callers.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: u64 = 3_600_000;

    #[test]
    fn failures_add_up_to_the_cap_and_fade() {
        let book = ChallengeBook::new(ChallengeSignalConfig {
            half_life_secs: 3_600,
            ..ChallengeSignalConfig::default()
        });
        let t = 1_700_000_000_000;
        assert!(book.assess("+12025550143", t).is_none());
        book.failed("+12025550143", t);
        let one = book.assess("+12025550143", t).unwrap();
        assert_eq!((one.score, one.reason.category.as_str()), (25, "challenge"));
        assert_eq!(one.signal_kind(), Some(Signal::Challenge));
        book.failed("+12025550143", t + 1);
        assert_eq!(book.assess("+12025550143", t + 1).unwrap().score, 50);
        for i in 0..10 {
            book.failed("+12025550143", t + 2 + i);
        }
        assert_eq!(
            book.assess("+12025550143", t + 20).unwrap().score,
            75,
            "capped at max_score"
        );
        // Twelve failures halve every hour: 12 * 25 / 2^3 = 37.5.
        assert_eq!(book.assess("+12025550143", t + 3 * HOUR).unwrap().score, 38);
        assert!(book.assess("+12025550144", t).is_none(), "one caller only");
        // Four half-lives after the last failure the caller is forgotten.
        book.sweep(t + 20 + 4 * HOUR);
        assert!(book.is_empty());
    }

    #[test]
    fn the_table_is_capped() {
        let book = ChallengeBook::new(ChallengeSignalConfig {
            max_numbers: 32,
            ..ChallengeSignalConfig::default()
        });
        for i in 0..1000 {
            book.failed(&format!("+1202555{i:04}"), 1_000 + i);
        }
        assert!(book.len() <= 32, "{}", book.len());
    }

    #[test]
    fn validate_names_each_problem() {
        let c = ChallengeSignalConfig {
            score_per_failure: -1,
            half_life_secs: 0,
            max_numbers: 0,
            ..ChallengeSignalConfig::default()
        };
        let p = c.validate();
        assert_eq!(p.len(), 3, "{p:?}");
        assert!(p[0].starts_with("signals.challenge: score_per_failure -1"));
        assert!(ChallengeSignalConfig::default().validate().is_empty());
    }
}
