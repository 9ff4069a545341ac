//! The challenge: a suspect inbound caller (verdict `challenge`, by the policy's `challenge_at`
//! score or an entry in category `challenge`) must press a digit before its call rings. The
//! agent answers the caller itself with early media (a 183 with our SDP: nothing is billed),
//! plays `challenge-press` ("press 5 to be connected") in the callee's language, and collects
//! the digit as RFC 4733 telephone-events (`super::held`, `crate::media::dtmf`):
//!
//! | the caller | the call |
//! | --- | --- |
//! | presses the digit after the prompt, within `timeout_secs` | forwarded untouched (no tag, no verdict header), its audio relayed both ways through the session that played the prompt |
//! | presses nothing, or another digit | refused as a block is (603+ with the redress URL), its ports freed at once, and the failure marks the caller for later calls (`signals.challenge`) |
//! | hangs up | 487 as ever; its ports are freed with the session |
//!
//! The call stays anchored, not handed back: the caller took the 183's SDP as the answer to its
//! offer and sends to our leg A; sending it elsewhere would need a re-INVITE or UPDATE towards
//! a caller that may support neither, while relaying costs two port pairs and a few
//! microseconds per packet.
//!
//! Bounded: at most `max_concurrent` challenges at once, each ended by its timeout (or by the
//! media engine's setup timer and the proxy's Timer C). A call that cannot be challenged (the
//! table full, media off, no telephone-events offered, no prompt) is warned instead, never
//! blocked: a false alarm costs more than a miss. Emergency callees never get here (the fold
//! passes them). Knows nothing of sockets or of how the verdict was reached.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;

use super::held::{self, Held, Queue};
use super::screener::{Screener, Tagged};
use crate::media::{dtmf, Gate, Heard, MediaConfig, MediaEngine, PromptSet, Release};
use crate::metrics::{Collect, Counter, Exposition};
use crate::screening::signals::wangiri::CallEnd;
use crate::screening::{PolicyConfig, Verdict};
use crate::sip::{CallTag, Disposition, NewCall};

/// The prompt: `<lang>-challenge-press.wav`.
pub const PROMPT: &str = "challenge-press";

/// The `[challenge]` section: how a challenged call is challenged (the policy says which are).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChallengeConfig {
    /// The digit the caller must press (the shipped prompts say 5: change both together).
    pub digit: String,
    /// How long after the prompt the digit may come.
    pub timeout_secs: u64,
    /// Challenges in progress at once; past it a challenged call is warned instead.
    pub max_concurrent: usize,
}

impl Default for ChallengeConfig {
    fn default() -> Self {
        ChallengeConfig {
            digit: "5".into(),
            timeout_secs: 10,
            max_concurrent: 50,
        }
    }
}

impl ChallengeConfig {
    /// Every problem, each naming the setting and what was expected.
    pub fn validate(&self) -> Vec<String> {
        let mut p = Vec::new();
        let mut chars = self.digit.chars();
        let one = chars.next().filter(|_| chars.next().is_none());
        if one.and_then(dtmf::event).is_none() {
            p.push(format!(
                "challenge.digit {:?}: expected one of 0-9, *, #",
                self.digit
            ));
        }
        if !(1..=60).contains(&self.timeout_secs) {
            p.push(format!(
                "challenge.timeout_secs {}: expected 1 to 60",
                self.timeout_secs
            ));
        }
        if self.max_concurrent == 0 {
            p.push("challenge.max_concurrent is 0; expected a positive number".into());
        }
        p
    }

    /// What challenging by score asks of media: with `policy.challenge_at` set and media on,
    /// the prompt in the default language. (Without media every challenge is a warning, which
    /// the decision log says per call.)
    pub fn validate_against(&self, policy: &PolicyConfig, media: &MediaConfig) -> Vec<String> {
        if policy.challenge_at == 0 || !media.enabled {
            return Vec::new();
        }
        // A broken prompt set is media's to report.
        let Ok(prompts) = PromptSet::load(media) else {
            return Vec::new();
        };
        if prompts
            .select_exact(&media.default_prompt, PROMPT)
            .is_some()
        {
            return Vec::new();
        }
        vec![format!(
            "policy.challenge_at: no prompt {}-{PROMPT}.wav in {}; expected one for the default language",
            media.default_prompt, media.prompts_dir
        )]
    }
}

/// Why a challenged call was warned instead.
#[derive(Debug, Clone, Copy)]
enum Unchallenged {
    Full,
    NoMedia,
    NoDigits,
    NoPrompt,
    MediaRefused,
}

/// Challenges by outcome, those in progress, and calls warned instead.
#[derive(Debug, Default)]
pub struct ChallengeStats {
    pub started: Counter,
    pub passed: Counter,
    pub failed: Counter,
    /// In progress: held, or decided and waiting for the proxy's tick.
    pub active: AtomicUsize,
    full: Counter,
    no_media: Counter,
    no_digits: Counter,
    no_prompt: Counter,
    media_refused: Counter,
}

impl ChallengeStats {
    fn unchallenged(&self, why: Unchallenged) -> &Counter {
        match why {
            Unchallenged::Full => &self.full,
            Unchallenged::NoMedia => &self.no_media,
            Unchallenged::NoDigits => &self.no_digits,
            Unchallenged::NoPrompt => &self.no_prompt,
            Unchallenged::MediaRefused => &self.media_refused,
        }
    }
}

impl Collect for ChallengeStats {
    fn collect(&self, out: &mut Exposition) {
        let h = "Challenges of suspect callers, by outcome (started counts every one held; the rest of started ended by a hang-up)";
        for (o, c) in [
            ("started", &self.started),
            ("passed", &self.passed),
            ("failed", &self.failed),
        ] {
            out.counter("scamguard_challenges_total", h, &[("outcome", o)], c.get());
        }
        out.gauge(
            "scamguard_challenges_active",
            "Challenges in progress (at most challenge.max_concurrent)",
            &[],
            self.active.load(Ordering::Relaxed) as i64,
        );
        let h = "Calls the verdict challenged that were warned instead, by why";
        for (why, c) in [
            ("full", &self.full),
            ("no_media", &self.no_media),
            ("no_telephone_events", &self.no_digits),
            ("no_prompt", &self.no_prompt),
            ("media_refused", &self.media_refused),
        ] {
            out.counter(
                "scamguard_challenges_unchallenged_total",
                h,
                &[("why", why)],
                c.get(),
            );
        }
    }
}

/// One challenge in progress: counted in `active` until dropped (resumed, or its session
/// released before the prompt ended).
struct Slot(Arc<ChallengeStats>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The `[challenge]` section compiled, and the challenges it holds.
pub struct Challenge {
    digit: char,
    wait: Duration,
    max: usize,
    decided: Arc<Queue<Slot>>,
    pub stats: Arc<ChallengeStats>,
}

impl Challenge {
    /// For a section that has passed validation.
    pub fn new(cfg: &ChallengeConfig) -> Challenge {
        Challenge {
            digit: cfg.digit.chars().next().unwrap_or('5'),
            wait: Duration::from_secs(cfg.timeout_secs),
            max: cfg.max_concurrent,
            decided: Arc::default(),
            stats: Arc::default(),
        }
    }

    /// A place in the table, or `None` when `max_concurrent` challenges are in progress.
    fn slot(&self) -> Option<Slot> {
        let before = self.stats.active.fetch_add(1, Ordering::AcqRel);
        let slot = Slot(self.stats.clone());
        (before < self.max).then_some(slot)
    }

    /// Hold `call` for its challenge; `Err` says why it is warned instead.
    fn hold(
        &self,
        media: Option<&MediaEngine>,
        call: &NewCall<'_>,
        callee: &str,
        tag: CallTag,
    ) -> Result<Disposition, (Unchallenged, &'static str)> {
        let media = media.ok_or((
            Unchallenged::NoMedia,
            "challenge skipped: media is disabled; warned instead",
        ))?;
        if !held::offer(call).is_some_and(held::offers_digits) {
            return Err((
                Unchallenged::NoDigits,
                "challenge skipped: the offer has no telephone-events for the digit; warned instead",
            ));
        }
        let prompt = media.prompts().select_exact(callee, PROMPT).ok_or((
            Unchallenged::NoPrompt,
            "challenge skipped: no challenge-press prompt; warned instead",
        ))?;
        let slot = self.slot().ok_or((
            Unchallenged::Full,
            "challenge skipped: challenge.max_concurrent challenges in progress; warned instead",
        ))?;
        let gate = Gate::Press {
            digit: self.digit,
            wait: self.wait,
        };
        let hold = self
            .decided
            .hold(media, call, (prompt, gate), slot, tag)
            .map_err(|why| (Unchallenged::MediaRefused, why))?;
        self.stats.started.inc();
        Ok(hold)
    }
}

impl Screener {
    /// A call the verdict challenges: held for its challenge, or `Err` with the note of why it
    /// is warned instead.
    pub(super) fn challenge(
        &self,
        call: &NewCall<'_>,
        v: &Verdict,
        callee: &str,
    ) -> Result<Disposition, &'static str> {
        let tag = CallTag::new(Tagged {
            caller: v.caller.clone(),
            callee: callee.to_string(),
            announce: None,
            outbound: false,
            early: true,
        });
        self.challenges
            .hold(self.media.as_deref(), call, callee, tag)
            .map_err(|(why, note)| {
                self.challenges.stats.unchallenged(why).inc();
                note
            })
    }

    /// Challenges decided since the last tick, with what becomes of their calls.
    pub(super) fn challenge_resumed(&self, now: Instant) -> Vec<(String, Disposition)> {
        let decided = self.challenges.decided.take();
        let Some(media) = self.media.as_deref().filter(|_| !decided.is_empty()) else {
            return Vec::new();
        };
        let now = self.clock.unix_ms(now);
        decided
            .into_iter()
            .map(|(held, heard)| {
                let d = self.settle(media, &held, heard, now);
                (held.call_id, d)
            })
            .collect()
    }

    /// The right digit came: the call goes on, anchored. None came: it is refused as a block
    /// is, its ports are freed now, and the failure counts against the caller.
    fn settle(
        &self,
        media: &MediaEngine,
        held: &Held<Slot>,
        heard: Heard,
        now_ms: u64,
    ) -> Disposition {
        let stats = &self.challenges.stats;
        if heard == Heard::Confirmed {
            stats.passed.inc();
            return held::anchored(media, held);
        }
        stats.failed.inc();
        let id = held.call_id.as_str();
        drop(media.release(id, Release::Failed));
        let signals = &self.engine.signals;
        // Refused here, so the proxy reports no end: end it for velocity and wangiri.
        signals.call_ended(id, CallEnd::Refused, now_ms);
        if let Some(t) = held
            .tag
            .get::<Tagged>()
            .filter(|t| t.caller.starts_with('+'))
        {
            signals.challenge_failed(&t.caller, now_ms);
        }
        tracing::info!(call_id = id, "challenge failed: no digit in time; refused");
        self.disposition.blocked()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_reads_defaults_and_names_each_problem() {
        let c: ChallengeConfig = toml::from_str("").unwrap();
        assert_eq!(c, ChallengeConfig::default());
        assert!(c.validate().is_empty());
        assert!(toml::from_str::<ChallengeConfig>("digits = \"5\"").is_err());
        let bad: ChallengeConfig =
            toml::from_str("digit = \"55\"\ntimeout_secs = 0\nmax_concurrent = 0\n").unwrap();
        assert_eq!(
            bad.validate(),
            [
                "challenge.digit \"55\": expected one of 0-9, *, #",
                "challenge.timeout_secs 0: expected 1 to 60",
                "challenge.max_concurrent is 0; expected a positive number",
            ]
        );
    }

    #[test]
    fn the_table_holds_at_most_max_concurrent_and_frees_on_drop() {
        let c = Challenge::new(&ChallengeConfig {
            max_concurrent: 2,
            ..ChallengeConfig::default()
        });
        let a = c.slot().unwrap();
        let b = c.slot().unwrap();
        assert!(c.slot().is_none(), "full");
        assert_eq!(c.stats.active.load(Ordering::Relaxed), 2);
        drop(a);
        let again = c.slot();
        assert!(again.is_some());
        drop((b, again));
        assert_eq!(c.stats.active.load(Ordering::Relaxed), 0);
    }
}
