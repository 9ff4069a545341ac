//! Whether the next hop is alive, as the agent can tell from its calls: the `[health]` config
//! section and the watch behind `/ready` and a rate-limited log line.
//!
//! A forwarded call whose INVITE got no final answer in time (the caller got 408) is one the
//! next hop did not answer; a final answer of any kind (an answer, a busy, a 607) shows it
//! alive. After `next_hop_timeouts` timed-out calls in a row `/ready` turns false, and stays so
//! until the next hop answers a call again, or until no call has timed out for
//! `next_hop_hold_secs`: with no calls sent (a balancer listening to `/ready`), the agent cannot
//! tell, so it offers itself again and the next timeout takes it out at once. A call the caller
//! cancelled says nothing either way.
//!
//! Fed by the hook's call events, not by the SIP layer's counters: those count every
//! transaction, towards callers too, and no answers at all. Knows nothing of SIP messages.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Deserialize;

/// The `[health]` section.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HealthConfig {
    /// Forwarded calls in a row that got no final answer from the next hop before `/ready`
    /// turns false; 0 never does.
    pub next_hop_timeouts: u32,
    /// Seconds after the last such call that `/ready` stays false if the next hop answers
    /// nothing meanwhile.
    pub next_hop_hold_secs: u64,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            next_hop_timeouts: 5,
            next_hop_hold_secs: 120,
        }
    }
}

impl HealthConfig {
    pub fn validate(&self) -> Vec<String> {
        if self.next_hop_timeouts > 0 && self.next_hop_hold_secs == 0 {
            return vec![
                "health.next_hop_hold_secs is 0; expected the seconds /ready stays false after the next hop went silent"
                    .into(),
            ];
        }
        Vec::new()
    }
}

/// Log "still silent" at most this often.
const LOG_EVERY: Duration = Duration::from_secs(60);

#[derive(Debug, Default)]
struct Seen {
    /// Calls in a row that timed out, with no final answer between them.
    in_a_row: u32,
    last_timeout: Option<Instant>,
    last_log: Option<Instant>,
}

/// The watch over the next hop: told of each forwarded call's end, asked by `/ready`.
#[derive(Debug)]
pub struct NextHopWatch {
    cfg: HealthConfig,
    /// Named in messages; `None` when the config has none (`scamguard check`).
    hop: Option<String>,
    seen: Mutex<Seen>,
}

impl NextHopWatch {
    pub fn new(cfg: HealthConfig, hop: Option<String>) -> NextHopWatch {
        NextHopWatch {
            cfg,
            hop,
            seen: Mutex::new(Seen::default()),
        }
    }

    fn hop(&self) -> String {
        self.hop
            .as_ref()
            .map_or_else(|| "the next hop".into(), |h| format!("next hop {h}"))
    }

    /// Silent at `now` by what `s` has seen.
    fn silent(&self, s: &Seen, now: Instant) -> bool {
        let hold = Duration::from_secs(self.cfg.next_hop_hold_secs);
        self.cfg.next_hop_timeouts > 0
            && s.in_a_row >= self.cfg.next_hop_timeouts
            && s.last_timeout
                .is_some_and(|t| now.saturating_duration_since(t) < hold)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A forwarded call got no final answer in time.
    pub fn timed_out(&self, now: Instant) {
        let mut s = self.lock();
        let before = self.silent(&s, now);
        s.in_a_row = s.in_a_row.saturating_add(1);
        s.last_timeout = Some(now);
        if !self.silent(&s, now) {
            return;
        }
        let due = s
            .last_log
            .map_or(true, |t| now.saturating_duration_since(t) >= LOG_EVERY);
        if !before || due {
            s.last_log = Some(now);
            tracing::warn!(
                "{} answers nothing: the last {} calls forwarded to it got no final answer and timed out; /ready is false",
                self.hop(),
                s.in_a_row
            );
        }
    }

    /// A forwarded call got a final answer (an answer or a refusal): the next hop is alive.
    pub fn answered(&self, now: Instant) {
        let mut s = self.lock();
        if self.silent(&s, now) {
            tracing::info!(
                "{} answers again, after {} calls in a row timed out; /ready is true",
                self.hop(),
                s.in_a_row
            );
        }
        *s = Seen::default();
    }

    /// Why `/ready` should be false at `now`, if it should.
    pub fn not_ready_at(&self, now: Instant) -> Option<String> {
        let s = self.lock();
        self.silent(&s, now).then(|| {
            format!(
                "{} answers nothing: the last {} calls forwarded to it timed out without a final answer",
                self.hop(),
                s.in_a_row
            )
        })
    }
}

impl crate::api::Ready for NextHopWatch {
    fn not_ready(&self) -> Option<String> {
        self.not_ready_at(Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn watch(n: u32) -> (NextHopWatch, Instant) {
        let cfg = HealthConfig {
            next_hop_timeouts: n,
            next_hop_hold_secs: 120,
        };
        let hop = "192.0.2.5:5060".parse().ok();
        (NextHopWatch::new(cfg, hop), Instant::now())
    }

    #[test]
    fn timeouts_in_a_row_make_it_not_ready_until_an_answer() {
        let (w, t0) = watch(3);
        let s = |n: u64| t0 + Duration::from_secs(n);
        w.timed_out(s(1));
        w.timed_out(s(2));
        assert_eq!(w.not_ready_at(s(2)), None, "two are not yet a dead hop");
        w.timed_out(s(3));
        let why = w.not_ready_at(s(3)).expect("three in a row");
        assert!(
            why.starts_with("next hop 192.0.2.5:5060 answers nothing: the last 3 calls"),
            "{why}"
        );
        w.answered(s(4));
        assert_eq!(w.not_ready_at(s(4)), None);
        // The count starts again: an answer in between breaks the row.
        w.timed_out(s(5));
        w.timed_out(s(6));
        w.answered(s(7));
        w.timed_out(s(8));
        w.timed_out(s(9));
        assert_eq!(w.not_ready_at(s(9)), None);
    }

    #[test]
    fn without_calls_it_offers_itself_again_after_the_hold() {
        let (w, t0) = watch(2);
        let s = |n: u64| t0 + Duration::from_secs(n);
        w.timed_out(s(0));
        w.timed_out(s(10));
        assert!(w.not_ready_at(s(129)).is_some());
        assert_eq!(
            w.not_ready_at(s(130)),
            None,
            "held for 120 s after the last"
        );
        // Still no answer in between: the next timeout takes it out at once.
        w.timed_out(s(200));
        assert!(w.not_ready_at(s(200)).is_some());
    }

    /// The log lines the watch writes while `f` runs.
    fn logged(f: impl FnOnce()) -> Vec<String> {
        #[derive(Clone, Default)]
        struct Buf(std::sync::Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Buf {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buf = Buf::default();
        let out = buf.clone();
        let sub = tracing_subscriber::fmt()
            .with_writer(move || out.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(sub, f);
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        text.lines().map(str::to_string).collect()
    }

    #[test]
    fn it_logs_when_the_hop_goes_silent_and_then_once_a_minute() {
        let (w, t0) = watch(3);
        let s = |n: u64| t0 + Duration::from_secs(n);
        let lines = logged(|| {
            for i in 0..40 {
                // One timed-out call every 2 s for 80 s: silent from the third (at 4 s), and
                // said again a minute later, at the 33rd (at 64 s).
                w.timed_out(s(2 * i));
            }
            w.answered(s(81));
        });
        let silent: Vec<&String> = lines
            .iter()
            .filter(|l| l.contains("answers nothing"))
            .collect();
        assert_eq!(silent.len(), 2, "{lines:#?}");
        assert!(
            silent[0].contains("WARN") && silent[0].contains("the last 3 calls"),
            "{}",
            silent[0]
        );
        assert!(silent[1].contains("the last 33 calls"), "{}", silent[1]);
        let back: Vec<&String> = lines
            .iter()
            .filter(|l| l.contains("answers again"))
            .collect();
        assert_eq!(back.len(), 1, "{lines:#?}");
        assert!(back[0].contains("after 40 calls"), "{}", back[0]);
    }

    #[test]
    fn zero_turns_the_watch_off() {
        let (w, t0) = watch(0);
        for i in 0..100 {
            w.timed_out(t0 + Duration::from_secs(i));
        }
        assert_eq!(w.not_ready_at(t0 + Duration::from_secs(100)), None);
        assert!(HealthConfig::default().validate().is_empty());
        let bad = HealthConfig {
            next_hop_hold_secs: 0,
            ..HealthConfig::default()
        };
        assert!(bad.validate()[0].starts_with("health.next_hop_hold_secs"));
    }
}
