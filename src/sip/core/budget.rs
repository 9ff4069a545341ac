//! The edge's budgets in the flow of a message (issue 13, per-source fairness): a banned
//! source's messages are dropped before they are parsed, except those of an urgent call; a new
//! request finds room only within its source's transactions and, outside the core, within the
//! share of the table the core's reserve leaves. The counting is `sip::flood`'s.
//!
//! An urgent call is one the hook says must be carried (an emergency call). From a source that is
//! not flooding nothing here stops it: a ban is per source, and an urgent INVITE is held only to
//! the whole table. From a banned source it still goes through, with the rest of its call, but
//! only `sip::flood::URGENT_PER_WINDOW` messages a window: a source that floods an emergency number is
//! attacking the emergency service, and is passed on no faster than a genuine caller needs.
//!
//! Knows nothing of why a call is urgent: the hook says.

use std::borrow::Cow;
use std::net::IpAddr;
use std::time::Instant;

use bytes::Bytes;

use super::super::caller::user_of;
use super::super::flood::Arrival;
use super::super::msg::Message;
use super::super::uri::Uri;
use super::{Peer, Proxy};

impl Proxy {
    /// Count a message and say whether it goes on to be parsed: false for a banned source's,
    /// unless it starts or belongs to an urgent call. Counts what it drops.
    pub(super) fn admit(&self, data: &Bytes, from: Peer, now: Instant) -> bool {
        let ip = from.addr.ip();
        match self.sources.arrive(ip, now, &self.stats.flood) {
            Arrival::Core | Arrival::Open | Arrival::Untracked => true,
            Arrival::Banned => {
                let urgent = self.through_ban(data, ip);
                if urgent {
                    self.stats.flood.urgent.inc();
                } else {
                    self.stats.flood.dropped.inc();
                }
                urgent
            }
        }
    }

    /// A banned source's message that starts an urgent call (an INVITE whose Request-URI the
    /// hook calls urgent, read from the first line alone) or carries the Call-ID of one.
    /// Everything else costs a prefix test and, for a source with urgent calls, a byte search.
    fn through_ban(&self, data: &Bytes, ip: IpAddr) -> bool {
        if invite_target(data).is_some_and(|t| self.hook.urgent(&t)) {
            if !self.sources.has_urgent_room(ip) {
                return false;
            }
            let Ok(msg) = Message::parse(data.clone(), &self.limits, true) else {
                return false;
            };
            return msg
                .call_id()
                .is_some_and(|id| self.sources.let_urgent(ip, Some(id), |_| false));
        }
        self.sources.has_urgent_calls(ip)
            && self.sources.let_urgent(ip, None, |ids| {
                ids.iter().any(|id| contains(data, id.as_bytes()))
            })
    }

    /// Whether a new request from `from` finds no room: the whole table (or, for an initial
    /// INVITE, the call table) is full, or, for a source outside the core, its own transactions
    /// are at their cap or the other sources' share is full. An urgent INVITE is held to the
    /// whole tables only. Counts a refusal by a source budget.
    pub(super) fn over_budget(&self, msg: &Message, from: Peer, initial: bool) -> bool {
        let in_flight = self.in_flight();
        if in_flight >= self.cfg.max_transactions
            || (initial && self.calls.len() >= self.cfg.max_calls)
        {
            return true;
        }
        let ip = from.addr.ip();
        let f = self.sources.config();
        if !f.enabled || self.sources.is_core(ip) {
            return false;
        }
        let reserve = self
            .cfg
            .max_transactions
            .saturating_mul(usize::from(f.core_reserve_percent))
            / 100;
        let shared = self.cfg.max_transactions - reserve;
        let counter = if self.sources.transactions(ip) >= f.max_transactions_per_source {
            &self.stats.flood.refused_source
        } else if in_flight >= shared {
            &self.stats.flood.refused_shared
        } else {
            return false;
        };
        if msg.method() == b"INVITE" && self.is_urgent(msg) {
            return false;
        }
        counter.inc();
        true
    }

    pub(super) fn is_urgent(&self, msg: &Message) -> bool {
        let target = msg
            .request_uri()
            .and_then(|u| user_of(&u).map(Cow::into_owned));
        target.is_some_and(|t| self.hook.urgent(&t))
    }
}

/// The unescaped user part of an INVITE's Request-URI, read from the first line without parsing
/// the rest.
fn invite_target(data: &[u8]) -> Option<Cow<'_, str>> {
    let rest = data.strip_prefix(b"INVITE ")?;
    let end = rest
        .iter()
        .take(1024)
        .position(|&c| matches!(c, b' ' | b'\r' | b'\n'))?;
    let uri = std::str::from_utf8(&rest[..end]).ok()?;
    user_of(&Uri::parse(uri).ok()?)
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_target_of_an_invite_from_its_first_line() {
        let t = |s: &str| invite_target(s.as_bytes()).map(Cow::into_owned);
        assert_eq!(
            t("INVITE sip:911@192.0.2.1 SIP/2.0\r\nVia: x\r\n").as_deref(),
            Some("911")
        );
        assert_eq!(
            t("INVITE sip:%2B44999@192.0.2.1 SIP/2.0\r\n").as_deref(),
            Some("+44999")
        );
        assert_eq!(t("BYE sip:911@192.0.2.1 SIP/2.0\r\n"), None);
        assert_eq!(t("INVITE sip:192.0.2.1 SIP/2.0\r\n"), None);
        assert_eq!(t("INVITE \u{0}\r\n"), None);
        assert!(contains(b"Call-ID: abc@x\r\n", b"abc@x"));
        assert!(!contains(b"Call-ID: abc@x\r\n", b""));
        assert!(!contains(b"ab", b"abc"));
    }
}
