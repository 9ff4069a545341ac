//! How long a call stays in the call table, and who leaves it when the table is full.
//!
//! - **Before the answer** a call lives as long as its INVITE may ring: Timer C plus the time a
//!   final response takes, counted again from every provisional response (Timer C is too).
//! - **Once answered** it lives while it shows life: each in-dialog request (either way) and
//!   each 2xx to an INVITE or UPDATE refreshes it. With a session timer (RFC 4028: the
//!   `Session-Expires` of the last 2xx to an INVITE or UPDATE, at least the `Min-SE` its request
//!   asked for and at least 90 s, at most `max_call_secs`) it expires one interval plus 64*T1
//!   after the last refresh, by when both ends have given up on it (RFC 4028 section 10);
//!   without one, after `call_idle_secs`; and whatever its refreshes, `max_call_secs` after its
//!   INVITE. The agent sends no refresh of its own.
//! - **When the table is full** a new call first evicts the answered calls idle longest (in a
//!   batch, so one scan of the table serves many calls); a call answered or refreshed within
//!   the last 64*T1 is never evicted, nor one still ringing or held. Only when nothing may go
//!   is the new call refused 503.
//!
//! An expired or evicted call is only forgotten: a later request of its dialog is handled as
//! one of a dialog the proxy does not know (`Proxy::unknown_dialog`), which never ends a call.
//!
//! Knows nothing of what the application keeps for a call, or of media.

use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

use super::super::msg::{Hdr, Message};
use super::Proxy;

/// RFC 4028 section 4: no session interval is shorter.
const MIN_SE_FLOOR: u64 = 90;

/// One eviction scan frees at least this share of `max_calls` (1/256), so a full table is
/// scanned once per that many new calls, not once per call.
const EVICT_SHARE: usize = 256;

/// After a scan that found nothing to evict, the next waits this long: a full table of live
/// calls must not cost a scan per refused INVITE.
const RESCAN_AFTER: Duration = Duration::from_secs(1);

/// The value of a delta-seconds header (`Session-Expires: 1800;refresher=uac`, `Min-SE: 90`).
fn delta_secs(v: &str) -> Option<u64> {
    let n = v.split(';').next()?.trim();
    (!n.is_empty() && n.len() <= 10 && n.bytes().all(|b| b.is_ascii_digit()))
        .then(|| n.parse().ok())
        .flatten()
}

impl Proxy {
    /// What a call lives before its answer, from its INVITE or latest provisional response.
    pub(super) fn ringing_life(&self) -> Duration {
        Duration::from_secs(self.cfg.timer_c_secs) + self.cfg.t1() * 128
    }

    /// When an answered call refreshed `now` expires: after its idle life, and never past
    /// `max_call_secs` from its INVITE.
    fn expiry(&self, born: Instant, session: Option<Duration>, now: Instant) -> Instant {
        let idle = match session {
            Some(s) => s + self.cfg.t1() * 64,
            None => Duration::from_secs(self.cfg.call_idle_secs),
        };
        (now + idle).min(born + Duration::from_secs(self.cfg.max_call_secs))
    }

    /// A provisional response to a call's INVITE: it rings on.
    pub(super) fn call_ringing(&self, call_id: &str, now: Instant) {
        let life = self.ringing_life();
        if let Some(mut c) = self.calls.get_mut(call_id) {
            if c.refreshed.is_none() && c.held.is_none() {
                c.expires = c.expires.max(now + life);
            }
        }
    }

    /// A 2xx to an INVITE (the answer, or a re-INVITE) or an UPDATE of the call: it is
    /// answered, refreshed, and its session interval is what this 2xx says (none when it says
    /// nothing: RFC 4028 7.2, no session expiration).
    pub(super) fn call_refreshed(&self, call_id: &str, ok: &Message, now: Instant) {
        let Some((_, method)) = ok.cseq() else { return };
        if method != "INVITE" && method != "UPDATE" {
            return;
        }
        let se = ok.value(Hdr::SessionExpires).and_then(delta_secs);
        let cap = self.cfg.max_call_secs.max(MIN_SE_FLOOR);
        if let Some(mut c) = self.calls.get_mut(call_id) {
            c.session = se.map(|s| Duration::from_secs(s.max(c.min_se).max(MIN_SE_FLOOR).min(cap)));
            c.refreshed = Some(now);
            c.expires = self.expiry(c.born, c.session, now);
        }
    }

    /// An in-dialog request of a call we track (either way): it shows life; a `Min-SE` in it
    /// raises the floor of the session interval to come.
    pub(super) fn call_touched(&self, msg: &Message, now: Instant) {
        let Some(id) = msg.call_id() else { return };
        let min_se = msg.header_by_name("Min-SE").and_then(delta_secs);
        if let Some(mut c) = self.calls.get_mut(id) {
            if let Some(m) = min_se {
                c.min_se = c.min_se.max(m);
            }
            if c.refreshed.is_some() {
                c.refreshed = Some(now);
                c.expires = self.expiry(c.born, c.session, now);
            }
        }
    }

    /// The table is full and a new call comes: forget the answered calls idle longest, at
    /// least one and at most a batch. Nothing is evicted that was answered or refreshed within
    /// 64*T1 (its ACK and first re-INVITE are still due), or that rings or is held.
    pub(super) fn make_room(&self, now: Instant) {
        {
            let last = self.fruitless.lock().unwrap_or_else(|e| e.into_inner());
            if last.is_some_and(|t| now.saturating_duration_since(t) < RESCAN_AFTER) {
                return;
            }
        }
        let over = (self.calls.len() + 1).saturating_sub(self.cfg.max_calls);
        let want = over.max(self.cfg.max_calls / EVICT_SHARE).max(1);
        let settled = self.cfg.t1() * 64;
        // The `want` idlest candidates: a max-heap on the last refresh, its top the least idle.
        let mut idlest: BinaryHeap<(Instant, String)> = BinaryHeap::with_capacity(want + 1);
        for c in self.calls.iter() {
            let Some(at) = c.refreshed else { continue };
            if c.held.is_some() || now.saturating_duration_since(at) < settled {
                continue;
            }
            if idlest.len() < want || idlest.peek().is_some_and(|(top, _)| at < *top) {
                idlest.push((at, c.key().clone()));
                if idlest.len() > want {
                    idlest.pop();
                }
            }
        }
        *self.fruitless.lock().unwrap_or_else(|e| e.into_inner()) =
            idlest.is_empty().then_some(now);
        for (at, id) in idlest {
            // Refreshed since the scan: it stays.
            if self
                .calls
                .remove_if(&id, |_, c| c.refreshed == Some(at))
                .is_some()
            {
                self.stats.calls.dec();
                self.stats.calls_evicted.inc();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::delta_secs;

    #[test]
    fn reads_delta_seconds_with_parameters() {
        assert_eq!(delta_secs("1800;refresher=uac"), Some(1800));
        assert_eq!(delta_secs(" 90 "), Some(90));
        assert_eq!(delta_secs("90;x"), Some(90));
        for bad in [
            "",
            "abc",
            "-5",
            "1e3",
            "99999999999999999999",
            ";refresher=uas",
        ] {
            assert_eq!(delta_secs(bad), None, "{bad:?}");
        }
    }
}
