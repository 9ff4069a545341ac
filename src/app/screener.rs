//! The hook the SIP layer calls for every new call: it works out the parties, screens them with
//! the rules in force, maps the verdict to an answer, counts it and logs it.
//!
//! This is the one place where SIP facts and screening meet; it holds no state of its own beyond
//! counters, so the same [`Screener::verdict`] also answers `scamguard check` and `/v1/check`.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use dashmap::DashMap;

use super::clock::{now_ms, Clock};
use super::decision_log::{DecisionLog, Record};
use super::disposition::{CallView, DispositionConfig};
use super::health::NextHopWatch;
use crate::api::console::Row;
use crate::lists::overlay::{Layered, StoreRules};
use crate::lists::report_desk::ReportDesk;
use crate::lists::store::{StoreError, StoredReport};
use crate::lists::ListSet;
use crate::media::{MediaEngine, MediaError, Release, Side};
use crate::metrics::{Collect, Counter, Exposition, Histogram};
use crate::screening::signals::report_book::{Promotion, Report, ReportSource};
use crate::screening::signals::wangiri::CallEnd;
use crate::screening::{Action, Call, Engine, Signal, Source, Verdict};
use crate::sip::caller::Parties;
use crate::sip::{CallEvent, CallRef, CallTag, Disposition, Hook, NewCall, SdpDirection, SdpKind};

/// Calls by action, hits by list and by signal, decision time, and what happened to forwarded
/// calls.
pub struct CallStats {
    pub pass: Counter,
    pub warn: Counter,
    pub challenge: Counter,
    pub block: Counter,
    /// Hits by list name; bounded by the number of lists the operator configured.
    pub hits: DashMap<String, Counter>,
    /// Calls whose verdict cites a signal, by [`Signal::ALL`]'s order.
    pub signal_hits: [Counter; Signal::ALL.len()],
    /// Calls whose verdict cites the policy itself (anonymity, emergency callees, overrides).
    pub policy_hits: Counter,
    /// From the INVITE handed in to the verdict counted: the screening's own time, which is
    /// what a carrier's post-dial delay budget asks about.
    pub decision: Histogram,
    pub answered: Counter,
    pub cancelled: Counter,
    pub failed: Counter,
    pub unwanted: Counter,
    pub ended: Counter,
    pub timed_out: Counter,
}

/// Upper bounds of the decision-time histogram, in seconds: a decision takes tens of
/// microseconds, a lookup past a cold cache or a busy core milliseconds; past 100 ms a carrier's
/// post-dial delay notices.
const DECISION_BOUNDS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
];

impl Default for CallStats {
    fn default() -> Self {
        CallStats {
            pass: Counter::default(),
            warn: Counter::default(),
            challenge: Counter::default(),
            block: Counter::default(),
            hits: DashMap::new(),
            signal_hits: Default::default(),
            policy_hits: Counter::default(),
            decision: Histogram::new(DECISION_BOUNDS),
            answered: Counter::default(),
            cancelled: Counter::default(),
            failed: Counter::default(),
            unwanted: Counter::default(),
            ended: Counter::default(),
            timed_out: Counter::default(),
        }
    }
}

impl Collect for CallStats {
    fn collect(&self, out: &mut Exposition) {
        let help = "Screened calls by action.";
        for (a, c) in [
            ("pass", &self.pass),
            ("warn", &self.warn),
            ("challenge", &self.challenge),
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
        // Every signal, hit or not: a panel or an alert reads 0, not a missing series.
        for (s, c) in Signal::ALL.iter().zip(&self.signal_hits) {
            out.counter(
                "scamguard_signal_hits_total",
                "Calls whose verdict cites this signal.",
                &[("signal", s.name())],
                c.get(),
            );
        }
        out.counter(
            "scamguard_policy_hits_total",
            "Calls whose verdict cites the screening policy itself.",
            &[],
            self.policy_hits.get(),
        );
        out.histogram(
            "scamguard_decision_seconds",
            "Time from a new call handed to the screener to its verdict counted.",
            &self.decision,
        );
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

impl CallStats {
    /// Count one verdict: its action, and each reason under its list, signal or the policy.
    pub fn count(&self, v: &Verdict) {
        match v.action {
            Action::Pass => self.pass.inc(),
            Action::Warn => self.warn.inc(),
            Action::Challenge => self.challenge.inc(),
            Action::Block => self.block.inc(),
        }
        for r in &v.reasons {
            let list = match &r.source {
                Source::List(list) => list,
                Source::Signal(s) => {
                    if let Some(c) = self.signal_hits.get(*s as usize) {
                        c.inc();
                    }
                    continue;
                }
                Source::Policy => {
                    self.policy_hits.inc();
                    continue;
                }
            };
            if let Some(c) = self.hits.get(&**list) {
                c.inc();
                continue;
            }
            self.hits.entry(list.to_string()).or_default().inc();
        }
    }
}

pub struct Screener {
    /// File lists (and, later, feeds): a snapshot swapped whole on reload.
    pub lists: Arc<ListSet>,
    /// Store lists: compiled per list plus the overlay of live edits.
    pub store: Arc<StoreRules>,
    /// Subscribed partner feeds, when any are configured.
    pub feeds: Option<Arc<crate::lists::feeds::FeedRules>>,
    /// Numbers, anonymity, emergency callees, signals and scoring: the decision itself.
    pub engine: Engine,
    pub disposition: DispositionConfig,
    pub log: DecisionLog,
    pub stats: Arc<CallStats>,
    /// Present when announcements are enabled.
    pub media: Option<Arc<MediaEngine>>,
    /// Wall-clock time for the instants the SIP layer hands in.
    pub clock: Clock,
    /// Where 607 reports go (queued: the SIP path never waits for the disk).
    pub reports: Arc<ReportDesk>,
    /// Whether the next hop answers the calls forwarded to it, for `/ready`.
    pub next_hop: Arc<NextHopWatch>,
    /// Callback protection of outbound calls, when `[callback]` is enabled.
    pub callback: Option<Arc<super::callback::Callback>>,
    /// The challenges of suspect callers (`[challenge]`), in progress and counted.
    pub challenges: Arc<super::challenge::Challenge>,
    /// The console's ring of recent calls, when the console is on.
    pub recent: Option<Arc<crate::api::console::Recent>>,
}

/// What the app keeps with a forwarded call; the proxy hands it back with each event, so the
/// app holds no table of calls of its own.
#[derive(Debug, Clone)]
pub struct Tagged {
    /// E.164 when it normalised: a 607 is a report against it.
    pub caller: String,
    /// E.164 when it normalised: the reporter of a 607, and the country of a prompt.
    pub callee: String,
    /// Present when the callee will hear the spoken warning.
    pub announce: Option<Announcement>,
    /// An outbound call of a protected subscriber (`super::callback`): its callee's 607 is
    /// no report.
    pub outbound: bool,
    /// Held for an early prompt to the caller (`super::held`: a callback warning, a
    /// challenge): its media, when anchored, went through that prompt's session, and the callee
    /// hears no prompt of its own.
    pub early: bool,
}

/// What the prompt of an announced call depends on.
#[derive(Debug, Clone)]
pub struct Announcement {
    /// The warning's category: a prompt may exist for it (`en-tech-support.wav`).
    pub category: Option<String>,
}

/// Why a warned call gets no spoken warning, for the decision log.
pub(super) fn skipped(e: &MediaError) -> &'static str {
    match e {
        MediaError::Sdp(_) => "announcement skipped: the SDP offer does not parse",
        MediaError::NotPlainRtp(_) => "announcement skipped: the media is encrypted (SRTP/DTLS)",
        MediaError::NoG711 => "announcement skipped: neither PCMU nor PCMA is offered",
        MediaError::Full(_) | MediaError::NoPorts => {
            "announcement skipped: too many announced calls in progress"
        }
        _ => "announcement skipped: the media engine could not take the call",
    }
}

fn side(dir: SdpDirection) -> Side {
    match dir {
        SdpDirection::FromCaller => Side::Caller,
        SdpDirection::FromCallee => Side::Callee,
    }
}

impl Screener {
    /// The decision for one call given as strings: what `scamguard check` and `/v1/check` ask.
    /// A question reads the live signal state but is never counted as a call.
    pub fn verdict(
        &self,
        caller: &str,
        callee: &str,
        display: Option<&str>,
        anonymous: bool,
    ) -> Verdict {
        self.screen(
            &Call::question(caller, callee, display, anonymous),
            now_ms(),
        )
    }

    /// The engine over the rules in force now: file lists, store lists and feeds.
    pub(super) fn screen(&self, call: &Call<'_>, now_ms: u64) -> Verdict {
        verdict_in_force(
            &self.engine,
            &self.lists,
            &self.store,
            self.feeds.as_deref(),
            call,
            now_ms,
        )
    }

    /// For a warned call whose callee will hear the spoken warning: the offer rewritten to the
    /// agent's ports (one SDP parse, in the media engine). `Err` says why not, for the log.
    fn plan_announcement(
        &self,
        call: &NewCall<'_>,
        v: &Verdict,
    ) -> Result<Option<(Vec<u8>, Announcement)>, &'static str> {
        let Some(media) = &self.media else {
            return Ok(None);
        };
        if v.action != Action::Warn {
            return Ok(None);
        }
        let offer = call
            .sdp()
            .filter(|b| !b.is_empty())
            .ok_or("announcement skipped: the INVITE carries no SDP offer")?;
        let body = media
            .offer(call.call_id, Side::Caller, offer)
            .map_err(|e| skipped(&e))?;
        // A verdict often has several reasons; the one with its own prompt (a brand's
        // `tech-support`, say) says more to the callee than the generic warning.
        let warned = || v.reasons.iter().filter(|r| r.category != "allow");
        let category = warned()
            .find(|r| media.prompts().has_category(&r.category))
            .or_else(|| warned().next())
            .map(|r| r.category.clone());
        Ok(Some((body, Announcement { category })))
    }

    /// Count an inbound call's verdict, write its decision-log line and show it to the console.
    fn finish(
        &self,
        call: &NewCall<'_>,
        v: Verdict,
        callee: String,
        (started, unix_ms): (Instant, u64),
        note: Option<&'static str>,
        (answer, p, facts): (&Disposition, &Parties<'_>, &Call<'_>),
    ) {
        let took = started.elapsed();
        let decision_us = took.as_micros() as u64;
        self.count(&v);
        self.stats.decision.observe(took.as_secs_f64());
        if let Some(recent) = &self.recent {
            recent.push(Row {
                seq: 0,
                time_ms: unix_ms,
                call_id: call.call_id.to_string(),
                caller: v.caller.clone(),
                callee: callee.clone(),
                display_name: p.display_name.clone(),
                anonymous: p.anonymous,
                source: call.source.to_string(),
                action: v.action,
                reasons: v.reasons.clone(),
                answer: super::console::answer_text(answer),
                stir: super::console::stir_text(&v, call.identity.is_some()),
                note: note.map(str::to_string),
                decision_us,
                facts: super::console::facts(facts, call.message),
            });
        }
        self.log.write(Record {
            time: SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(unix_ms),
            call_id: call.call_id.to_string(),
            caller: v.caller,
            callee,
            action: v.action,
            reasons: v.reasons,
            decision_us,
            source: call.source.to_string(),
            note,
            outbound: false,
        });
    }

    pub(super) fn count(&self, v: &Verdict) {
        self.stats.count(v);
    }
}

/// The engine over the file lists, store lists and feeds as they are now: shared by the hook,
/// `scamguard check` and `/v1/check`.
pub fn verdict_in_force(
    engine: &Engine,
    lists: &ListSet,
    store: &StoreRules,
    feeds: Option<&crate::lists::feeds::FeedRules>,
    call: &Call<'_>,
    now_ms: u64,
) -> Verdict {
    let files = lists.current();
    let rules = match feeds {
        Some(feeds) => Layered {
            sources: &[&**files, store, feeds],
        },
        None => Layered {
            sources: &[&**files, store],
        },
    };
    engine.decide(call, &rules, now_ms)
}

/// [`verdict_in_force`] for the console's what-if: `extra` rules layered over those in force
/// and the evidence weighed by `scoring`. A question: nothing is counted.
pub(super) fn verdict_in_force_with(
    s: &Screener,
    call: &Call<'_>,
    extra: Option<&dyn crate::screening::Rules>,
    scoring: &crate::screening::Scoring,
    now_ms: u64,
) -> Verdict {
    let files = s.lists.current();
    let mut sources: Vec<&dyn crate::screening::Rules> = vec![&**files, &*s.store];
    if let Some(f) = &s.feeds {
        sources.push(&**f);
    }
    if let Some(x) = extra {
        sources.push(x);
    }
    let rules = Layered { sources: &sources };
    s.engine.decide_scored(call, &rules, now_ms, scoring)
}

impl Hook for Screener {
    fn new_call(&self, call: &NewCall<'_>, now: Instant) -> Disposition {
        let started = Instant::now();
        let unix_ms = self.clock.unix_ms(now);
        let trusted = call.trusted;
        let p = call.parties();
        // Callback protection is for calls: a MESSAGE dials nobody back and can hear no
        // warning, so it goes the inbound way.
        let outbound = (!call.message)
            .then(|| self.outbound(call, &p, now))
            .flatten();
        if let Some(outbound) = outbound {
            return outbound;
        }
        let source = call.source.ip().to_string();
        // A real call, not a question: its own Call-ID (velocity and wangiri link its end to
        // it), its source, its Identity and the live signal state.
        let facts = Call {
            id: call.call_id,
            caller: &p.caller,
            callee: &p.callee,
            display_name: p.display_name.as_deref(),
            anonymous: p.anonymous,
            source: Some(&source),
            trusted,
            identity: call.identity,
            verstat: p.verstat,
            // A MESSAGE is judged as its sender's call would be, but it is no call: it starts
            // nothing in the signals' state, which would wait for an end that never comes.
            live: !call.message,
            outbound: false,
        };
        let mut v = self.screen(&facts, unix_ms);
        let callee = self
            .engine
            .screening
            .plan
            .normalise(&p.callee)
            .map_or_else(|| p.callee.to_string(), |n| n.to_string());
        // A challenged call is held for its digit; one that cannot be (a MESSAGE dials no one
        // who could press it) is warned instead, never blocked.
        let mut unchallenged = None;
        if v.action == Action::Challenge {
            match (!call.message).then(|| self.challenge(call, &v, &callee)) {
                Some(Ok(hold)) => {
                    self.finish(
                        call,
                        v,
                        callee,
                        (started, unix_ms),
                        None,
                        (&hold, &p, &facts),
                    );
                    return hold;
                }
                Some(Err(why)) => unchallenged = Some(why),
                None => {}
            }
            v.action = Action::Warn;
        }
        let (offer, announce, note) = match self.plan_announcement(call, &v) {
            _ if call.message => (None, None, Some("MESSAGE: judged, not counted as a call")),
            Ok(Some((body, a))) => (Some(body), Some(a), unchallenged),
            Ok(None) => (None, None, unchallenged),
            Err(why) => (None, None, unchallenged.or(Some(why))),
        };
        let answer = self.disposition.answer(
            &v,
            &CallView {
                display_name: p.display_name.as_deref(),
                announce: announce.is_some(),
                message: call.message,
            },
        );
        let answer = match answer {
            Disposition::Forward { .. } => answer.with_call(
                offer,
                CallTag::new(Tagged {
                    caller: v.caller.clone(),
                    callee: callee.clone(),
                    announce,
                    outbound: false,
                    early: false,
                }),
            ),
            Disposition::Reject { .. } if call.message => answer,
            _ => {
                // The SIP layer reports no end for a call it refused itself: end it here, or
                // it would count as a concurrent call until the signals' call timeout. No callee
                // saw it, so it is no outcome for velocity or wangiri.
                self.engine
                    .signals
                    .call_ended(call.call_id, CallEnd::Refused, unix_ms);
                answer
            }
        };
        self.finish(
            call,
            v,
            callee,
            (started, unix_ms),
            note,
            (&answer, &p, &facts),
        );
        answer
    }

    fn call_event(&self, call: &CallRef<'_>, event: CallEvent, now: Instant) {
        match event {
            CallEvent::TimedOut => self.next_hop.timed_out(now),
            CallEvent::Answered | CallEvent::Failed(_) | CallEvent::Unwanted => {
                self.next_hop.answered(now)
            }
            // A caller's CANCEL or BYE says nothing of whether the next hop answers.
            CallEvent::Cancelled | CallEvent::Ended => {}
        }
        let now = self.clock.unix_ms(now);
        let signals = &self.engine.signals;
        let id = call.call_id;
        match event {
            CallEvent::Answered => signals.call_answered(id, now),
            CallEvent::Cancelled => signals.call_ended(id, CallEnd::Cancelled, now),
            CallEvent::Ended => signals.call_ended(id, CallEnd::Answered { talk_ms: 0 }, now),
            CallEvent::Unwanted => signals.call_ended(id, CallEnd::Unwanted, now),
            CallEvent::Failed(_) | CallEvent::TimedOut => {
                signals.call_ended(id, CallEnd::Rejected, now)
            }
        }
        let tagged = call.tag::<Tagged>();
        // A 607 from the callee is a report against the caller (RFC 8197): a signal, not proof,
        // since the caller id may be spoofed; the report book needs several reporters.
        if let (CallEvent::Unwanted, Some(t)) = (event, tagged) {
            if t.caller.starts_with('+') && !t.outbound {
                self.reports.submit(Report {
                    caller: t.caller.clone(),
                    callee: Some(t.callee.clone()),
                    category: "unwanted".into(),
                    reporter: t.callee.clone(),
                    at: (now / 1000) as i64,
                    source: ReportSource::Sip607,
                });
            }
        }
        let release = match event {
            CallEvent::Answered => {
                self.stats.answered.inc();
                None
            }
            CallEvent::Cancelled => {
                self.stats.cancelled.inc();
                Some(Release::Cancel)
            }
            CallEvent::Failed(_) => {
                self.stats.failed.inc();
                Some(Release::Failed)
            }
            CallEvent::Unwanted => {
                self.stats.unwanted.inc();
                Some(Release::Failed)
            }
            CallEvent::Ended => {
                self.stats.ended.inc();
                Some(Release::Bye)
            }
            CallEvent::TimedOut => {
                self.stats.timed_out.inc();
                Some(Release::Failed)
            }
        };
        let (Some(media), Some(t)) = (&self.media, tagged) else {
            return;
        };
        if t.early {
            // No prompt for the callee: an answer only starts the call's idle timer.
            match release {
                None => drop(media.answered(id)),
                Some(why) => drop(media.release(id, why)),
            }
            return;
        }
        let Some(a) = &t.announce else { return };
        match release {
            None => {
                if let Err(e) = media.connected(id, &t.callee, a.category.as_deref()) {
                    tracing::info!(call_id = id, "no announcement after answer: {e}");
                }
            }
            // The ports are freed by the session's task; nobody needs to wait for it.
            Some(why) => drop(media.release(id, why)),
        }
    }

    fn rewrite_sdp(
        &self,
        call: &CallRef<'_>,
        dir: SdpDirection,
        kind: SdpKind,
        body: &[u8],
        _now: Instant,
    ) -> Option<Vec<u8>> {
        let media = self.media.as_ref()?;
        let t = call.tag::<Tagged>()?;
        if t.announce.is_none() && !t.early {
            return None;
        }
        let r = match kind {
            SdpKind::Offer => media.offer(call.call_id, side(dir), body),
            SdpKind::Answer => media.answer(call.call_id, side(dir), body),
        };
        match r {
            Ok(b) => Some(b),
            Err(e) => {
                // The body goes on untouched: the call still connects, end to end.
                tracing::info!(call_id = call.call_id, "SDP not anchored: {e}");
                None
            }
        }
    }

    fn sdp_toward(&self, call: &CallRef<'_>, to: std::net::IpAddr, body: &[u8]) -> Option<Vec<u8>> {
        let media = self.media.as_ref()?;
        let t = call.tag::<Tagged>()?;
        if t.announce.is_none() && !t.early {
            return None;
        }
        media.toward(call.call_id, crate::media::Side::Callee, to, body)
    }

    fn resumed(&self, now: Instant) -> Vec<(String, Disposition)> {
        let mut v = self.callback_resumed();
        v.extend(self.challenge_resumed(now));
        v
    }

    /// An emergency number, as the decision itself judges the callee: such a call gets through
    /// the SIP edge's source budgets and bans (see `sip::core::budget`).
    fn urgent(&self, target: &str) -> bool {
        let s = &self.engine.screening;
        s.is_emergency(target, s.plan.normalise(target))
    }
}

impl crate::api::Checker for Screener {
    fn check(
        &self,
        caller: &str,
        callee: Option<&str>,
        display: Option<&str>,
    ) -> serde_json::Value {
        let v = self.verdict(caller, callee.unwrap_or(""), display, false);
        serde_json::to_value(&v).unwrap_or(serde_json::Value::Null)
    }

    fn velocity_suggestion(&self) -> Option<serde_json::Value> {
        let s = self.engine.signals.velocity().suggested_thresholds();
        serde_json::to_value(&s).ok()
    }
}

impl crate::api::Reporter for Screener {
    fn number(&self, text: &str) -> Option<String> {
        self.engine
            .screening
            .plan
            .normalise(text)
            .map(|n| n.to_string())
    }

    fn limits(&self) -> Option<crate::api::reports::Limits> {
        let c = self.reports.config();
        c.enabled.then_some(crate::api::reports::Limits {
            window: c.window_secs.max(1),
            ahead: c.max_future_secs.max(0),
        })
    }

    fn report(
        &self,
        who: crate::lists::store::Who<'_>,
        reports: &[Report],
        now: i64,
    ) -> Result<Vec<(String, Promotion)>, StoreError> {
        Ok(self
            .reports
            .take(who, reports, now)?
            .into_iter()
            .map(|p| (p.caller, p.promotion))
            .collect())
    }

    fn evidence(
        &self,
        caller: &str,
        limit: usize,
        now: i64,
    ) -> Result<(Vec<StoredReport>, Option<Promotion>), StoreError> {
        self.reports.evidence(caller, limit, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::screening::{Reason, Refusal};

    fn reason(source: Source) -> Reason {
        Reason {
            source,
            entry: "+12025550143".into(),
            category: "scam".into(),
            reason: "test".into(),
        }
    }

    #[test]
    fn reasons_count_under_their_list_signal_or_the_policy() {
        let s = CallStats::default();
        s.count(&Verdict {
            action: Action::Block,
            caller: "+12025550143".into(),
            reasons: vec![
                reason(Source::list("example")),
                reason(Source::Signal(Signal::Velocity)),
                reason(Source::Policy),
            ],
            refusal: Refusal::Blocked,
            stir_failure: None,
        });
        s.decision.observe(0.0002);
        let text = crate::metrics::render(&[&s]);
        for line in [
            "scamguard_calls_total{action=\"block\"} 1\n",
            "scamguard_list_hits_total{list=\"example\"} 1\n",
            "scamguard_signal_hits_total{signal=\"velocity\"} 1\n",
            "scamguard_signal_hits_total{signal=\"wangiri\"} 0\n",
            "scamguard_policy_hits_total 1\n",
            "scamguard_decision_seconds_bucket{le=\"0.00025\"} 1\n",
            "scamguard_decision_seconds_count 1\n",
        ] {
            assert!(text.contains(line), "{line}{text}");
        }
        // A signal is no list: the lists' family names lists only.
        assert!(
            !text.contains("list=\"velocity\"") && !text.contains("list=\"policy\""),
            "{text}"
        );
        assert_eq!(crate::metrics::problems(&text), Vec::<String>::new());
    }
}
