//! What the web console ([`crate::api::console`]) asks of the running agent: each screened call
//! as a row of the recent-calls ring (with the answer sent and the STIR result in words), and
//! the decisions it cannot make alone: what-if previews decided again by the engine, the entry
//! in force for a caller, hit counters and the feeds' status.
//!
//! A what-if decides each recent call as a question (nothing is counted), at the time the call
//! came, twice: with the rules in force, and with the change (one more entry layered over them,
//! or other thresholds for the scoring fold). Comparing the two, rather than the logged verdict,
//! keeps the change's own effect apart from what the signals' state has learnt since.

use std::sync::Arc;

use super::screener::{verdict_in_force_with, Screener};
use crate::api::console::{Change, Changed, Desk, Facts, Recent, Row};
use crate::screening::{Call, Entry, IndexBuilder, Rules, Scoring, Verdict};
use crate::sip::Disposition;

/// The answer sent, in words: the response line and its headers, or the forward and what was
/// added to it.
pub(super) fn answer_text(d: &Disposition) -> String {
    match d {
        Disposition::Reject {
            code,
            phrase,
            headers,
        } => {
            let mut s = format!("{code} {phrase}");
            for h in headers {
                s.push_str(" | ");
                s.push_str(h);
            }
            s
        }
        Disposition::Forward {
            display_name,
            headers,
            anchor_media,
            ..
        } => {
            let mut s = "forwarded to the next hop".to_string();
            if let Some(n) = display_name {
                s.push_str(&format!(" | display name {n:?}"));
            }
            for h in headers {
                s.push_str(" | ");
                s.push_str(h);
            }
            if *anchor_media {
                s.push_str(" | media anchored for the spoken warning");
            }
            s
        }
        Disposition::Hold { code, phrase, .. } => {
            format!("{code} {phrase}, held with early media")
        }
        Disposition::Divert { user, then } => {
            format!("diverted to {user}: {}", answer_text(then))
        }
    }
}

/// The STIR/SHAKEN result in words, from the verdict's STIR reason or failure.
pub(super) fn stir_text(v: &Verdict, identity: bool) -> String {
    if let Some(r) = v.reasons.iter().find(|r| r.source.name() == "stir") {
        return format!("{} ({})", r.reason, r.entry);
    }
    match v.stir_failure {
        Some(c) => format!("failed: {} {}", c.status(), c.phrase()),
        None if identity => "Identity header present; nothing to add to the score".into(),
        None => "no Identity header".into(),
    }
}

/// The facts a row keeps to decide its call again.
pub(super) fn facts(call: &Call<'_>, message: bool) -> Facts {
    Facts {
        caller_raw: call.caller.to_string(),
        callee_raw: call.callee.to_string(),
        source_ip: call.source.unwrap_or("").to_string(),
        trusted: call.trusted,
        identity: call.identity.map(str::to_string),
        verstat: call.verstat.map(str::to_string),
        message,
    }
}

/// The console's view of the agent.
pub struct ConsoleDesk {
    pub screener: Arc<Screener>,
    pub recent: Arc<Recent>,
    pub feeds: Option<Arc<crate::lists::feeds::FeedRules>>,
}

impl ConsoleDesk {
    /// One recent call decided as a question with `extra` rules layered on and `scoring`.
    fn redecide(&self, r: &Row, extra: Option<&dyn Rules>, scoring: &Scoring) -> Verdict {
        let f = &r.facts;
        let call = Call {
            id: "what-if",
            caller: &f.caller_raw,
            callee: &f.callee_raw,
            display_name: r.display_name.as_deref(),
            anonymous: r.anonymous,
            source: Some(f.source_ip.as_str()).filter(|s| !s.is_empty()),
            trusted: f.trusted,
            identity: f.identity.as_deref(),
            verstat: f.verstat.as_deref(),
            live: false,
            outbound: false,
        };
        verdict_in_force_with(&self.screener, &call, extra, scoring, r.time_ms)
    }
}

impl Desk for ConsoleDesk {
    fn recent(&self) -> Arc<Recent> {
        self.recent.clone()
    }

    fn what_if(&self, rows: &[Arc<Row>], change: &Change) -> Vec<Changed> {
        let scoring = &self.screener.engine.scoring;
        let (index, changed_scoring) = match change {
            Change::Entry(e) => {
                let mut b = IndexBuilder::new();
                b.add("what-if", e);
                (Some(b.build()), None)
            }
            Change::Thresholds { warn_at, block_at } => {
                let mut cfg = scoring.config().clone();
                cfg.warn_at = *warn_at;
                cfg.block_at = *block_at;
                (None, Some(Scoring::new(cfg)))
            }
        };
        let extra = index.as_ref().map(|i| i as &dyn Rules);
        let with = changed_scoring.as_ref().unwrap_or(scoring);
        rows.iter()
            .filter_map(|r| {
                let before = self.redecide(r, None, scoring).action;
                let after = self.redecide(r, extra, with).action;
                (before != after).then(|| Changed {
                    row: r.clone(),
                    before,
                    after,
                })
            })
            .collect()
    }

    fn entry(&self, caller: &str) -> Option<(String, Entry)> {
        let s = &self.screener;
        let n = s.engine.screening.plan.normalise(caller)?;
        let now = (super::now_ms() / 1000) as i64;
        let files = s.lists.current();
        let m = match &s.feeds {
            Some(f) => crate::lists::overlay::Layered {
                sources: &[&**files, &*s.store, &**f],
            }
            .lookup(n, now),
            None => crate::lists::overlay::Layered {
                sources: &[&**files, &*s.store],
            }
            .lookup(n, now),
        }?;
        Some((m.meta.list.to_string(), m.to_entry()))
    }

    fn hits(&self) -> Vec<(String, u64)> {
        let mut v: Vec<(String, u64)> = self
            .screener
            .stats
            .hits
            .iter()
            .map(|e| (e.key().clone(), e.value().get()))
            .collect();
        v.sort();
        v
    }

    fn thresholds(&self) -> (i32, i32) {
        let c = self.screener.engine.scoring.config();
        (c.warn_at, c.block_at)
    }

    fn subscriptions(&self) -> Vec<crate::lists::feeds::FeedStatus> {
        self.feeds.as_ref().map(|f| f.status()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_in_words() {
        let reject = Disposition::Reject {
            code: 603,
            phrase: "Decline".into(),
            headers: vec!["Reason: SIP;cause=603;text=\"scam\"".into()],
        };
        assert_eq!(
            answer_text(&reject),
            "603 Decline | Reason: SIP;cause=603;text=\"scam\""
        );
        let fwd = Disposition::Forward {
            display_name: Some("SCAM? Bank".into()),
            headers: vec!["X-Scam-Verdict: warn".into()],
            record_route: false,
            anchor_media: false,
            offer: None,
            tag: None,
        };
        assert_eq!(
            answer_text(&fwd),
            "forwarded to the next hop | display name \"SCAM? Bank\" | X-Scam-Verdict: warn"
        );
        let divert = Disposition::Divert {
            user: "+18005550100".into(),
            then: Box::new(Disposition::pass()),
        };
        assert!(answer_text(&divert).starts_with("diverted to +18005550100: forwarded"));
    }
}
