//! The hook the SIP layer calls for every new call: it works out the parties, screens them with
//! the rules in force, maps the verdict to an answer, counts it and logs it.
//!
//! This is the one place where SIP facts and screening meet; it holds no state of its own beyond
//! counters, so the same [`Screener::verdict`] also answers `scamguard check` and `/v1/check`.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use dashmap::DashMap;

use super::caller::parties;
use super::decision_log::{DecisionLog, Record};
use super::disposition::{CallView, DispositionConfig};
use crate::lists::ListSet;
use crate::metrics::{Collect, Counter, Exposition};
use crate::screening::{screen, Action, Facts, Policy, Verdict};
use crate::sip::{CallEvent, Decision, Hook, NewCall, SdpDirection};

/// Calls by action, hits by list, and what happened to forwarded calls.
#[derive(Default)]
pub struct CallStats {
    pub pass: Counter,
    pub warn: Counter,
    pub block: Counter,
    /// Hits by list name; bounded by the number of lists the operator configured.
    pub hits: DashMap<String, Counter>,
    pub answered: Counter,
    pub cancelled: Counter,
    pub failed: Counter,
    pub unwanted: Counter,
    pub ended: Counter,
    pub timed_out: Counter,
}

impl Collect for CallStats {
    fn collect(&self, out: &mut Exposition) {
        let help = "Screened calls by action.";
        for (a, c) in [
            ("pass", &self.pass),
            ("warn", &self.warn),
            ("block", &self.block),
        ] {
            out.counter("scamguard_calls_total", help, &[("action", a)], c.get());
        }
        let mut hits: Vec<(String, u64)> = self
            .hits
            .iter()
            .map(|e| (e.key().clone(), e.value().get()))
            .collect();
        hits.sort();
        for (list, n) in hits {
            out.counter(
                "scamguard_list_hits_total",
                "Calls whose verdict cites an entry of this list.",
                &[("list", &list)],
                n,
            );
        }
        let help = "Forwarded calls by what happened next.";
        for (e, c) in [
            ("answered", &self.answered),
            ("cancelled", &self.cancelled),
            ("failed", &self.failed),
            ("unwanted_607", &self.unwanted),
            ("ended", &self.ended),
            ("timed_out", &self.timed_out),
        ] {
            out.counter(
                "scamguard_call_events_total",
                help,
                &[("event", e)],
                c.get(),
            );
        }
    }
}

pub struct Screener {
    pub lists: Arc<ListSet>,
    pub policy: Policy,
    pub disposition: DispositionConfig,
    pub log: DecisionLog,
    pub stats: Arc<CallStats>,
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

impl Screener {
    /// The decision for one call given as strings: what `scamguard check` and `/v1/check` ask.
    pub fn verdict(
        &self,
        caller: &str,
        callee: &str,
        display: Option<&str>,
        anonymous: bool,
    ) -> Verdict {
        let facts = Facts::new(&self.policy, caller, callee, display, anonymous);
        let rules = self.lists.current();
        screen(&facts, &**rules, &self.policy, unix_now())
    }

    fn trusted(&self, ip: IpAddr) -> bool {
        self.disposition.trusted_peers.contains(&ip)
    }

    fn count(&self, v: &Verdict) {
        match v.action {
            Action::Pass => self.stats.pass.inc(),
            Action::Warn => self.stats.warn.inc(),
            Action::Block => self.stats.block.inc(),
        }
        for r in &v.reasons {
            if let Some(c) = self.stats.hits.get(&r.list) {
                c.inc();
                continue;
            }
            self.stats.hits.entry(r.list.clone()).or_default().inc();
        }
    }
}

impl Hook for Screener {
    fn new_call(&self, call: &NewCall<'_>) -> Decision {
        let started = Instant::now();
        let p = parties(call, self.trusted(call.source.ip()));
        // As `verdict`, keeping the facts: the callee is normalised once, for the screen and
        // the log, and the clock is read once.
        let facts = Facts::new(
            &self.policy,
            &p.caller,
            &p.callee,
            p.display_name.as_deref(),
            p.anonymous,
        );
        let time = SystemTime::now();
        let now = time
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let v = screen(&facts, &**self.lists.current(), &self.policy, now);
        let decision = self.disposition.decide(
            &v,
            &CallView {
                display_name: p.display_name.as_deref(),
                announce: false,
            },
        );
        let decision_us = started.elapsed().as_micros() as u64;
        self.count(&v);
        let callee = facts
            .callee
            .map_or_else(|| p.callee.to_string(), |n| n.to_string());
        self.log.write(Record {
            time,
            call_id: call.call_id.to_string(),
            caller: v.caller,
            callee,
            action: v.action,
            reasons: v.reasons,
            decision_us,
            source: call.source.to_string(),
        });
        decision
    }

    fn call_event(&self, _call_id: &str, event: CallEvent) {
        match event {
            CallEvent::Answered => self.stats.answered.inc(),
            CallEvent::Cancelled => self.stats.cancelled.inc(),
            CallEvent::Failed(_) => self.stats.failed.inc(),
            CallEvent::Unwanted => self.stats.unwanted.inc(),
            CallEvent::Ended => self.stats.ended.inc(),
            CallEvent::TimedOut => self.stats.timed_out.inc(),
        }
    }

    fn rewrite_sdp(&self, _call_id: &str, _dir: SdpDirection, _body: &[u8]) -> Option<Vec<u8>> {
        None
    }
}
