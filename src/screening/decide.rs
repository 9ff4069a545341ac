//! The one home of the decision for a call: [`Engine::decide`] takes the call's facts, the rules
//! in force and `now`, gathers typed evidence (the caller's list match, the anonymity and
//! emergency rules, every signal) and lets the scoring policy weigh it in a single fold. The
//! proxy, `scamguard check`, `/v1/check`, the tests and the benches all call it.
//!
//! An outbound call of a protected subscriber ([`Call::outbound`]) is decided apart
//! ([`Engine::decide`] hands it to `decide_outbound`): its callee is looked up among the callback
//! entries ([`Rules::lookup_callback`]) and nothing else counts, since the caller is one of ours.
//!
//! Knows nothing of SIP, sockets, files or clocks: `now` comes in, and the signals' live state
//! (velocity, wangiri, reports, own blocks) is the only thing a decision touches besides its
//! arguments. A live call that is blocked for what its number did is noted against the
//! number's block ([`super::signals::blocks`]); a question never is.

use super::evidence::{Effect, Evidence, Reason, Source};
use super::index::Rules;
use super::policy::{AnonymousPolicy, ScreeningPolicy};
use super::scoring::{Scoring, Tenancy, Weighing};
use super::signals::blocks::about_the_number;
use super::signals::stir::StirCode;
use super::signals::{evaluate, SignalInput, SignalState};
use super::verdict::{Refusal, Verdict};
use super::{Action, EntryAction};

/// The category of a caller's entry (warn or block) that asks for a challenge instead: the
/// caller must press a digit before the call rings (see [`super::scoring`]).
pub const CHALLENGE_CATEGORY: &str = "challenge";

/// The facts of one call, in domain words, as the network (or a person asking) gave them.
#[derive(Debug, Clone, Copy, Default)]
pub struct Call<'a> {
    /// Unique per call (the Call-ID); links the call's start to its answer and end.
    pub id: &'a str,
    /// The caller's number as carried, before normalisation.
    pub caller: &'a str,
    /// The callee's number as dialled.
    pub callee: &'a str,
    pub display_name: Option<&'a str>,
    /// The caller withheld their identity.
    pub anonymous: bool,
    /// The address the call came from, as text (`192.0.2.10`, `2001:db8::10`).
    pub source: Option<&'a str>,
    /// It came from a peer whose asserted identity and `verstat` are believed.
    pub trusted: bool,
    /// The `Identity` header (a PASSporT).
    pub identity: Option<&'a str>,
    /// `verstat` on the screened identity.
    pub verstat: Option<&'a str>,
    /// A real call, counted by velocity and wangiri; false for a question (`check`).
    pub live: bool,
    /// The caller is a protected subscriber of this network dialling out (the operator's
    /// `[callback]` section says which calls are): the callee is screened against the callback
    /// entries, the caller not at all, and no signal counts the call.
    pub outbound: bool,
}

impl<'a> Call<'a> {
    /// What `scamguard check` and `/v1/check` ask: the facts a person can type. It reads the
    /// live signal state and is never counted as a call.
    pub fn question(
        caller: &'a str,
        callee: &'a str,
        display_name: Option<&'a str>,
        anonymous: bool,
    ) -> Call<'a> {
        Call {
            id: "check",
            caller,
            callee,
            display_name,
            anonymous,
            ..Call::default()
        }
    }
}

/// Everything a decision needs besides the call and the rules: built once at start by the app,
/// for the proxy and `check` alike.
pub struct Engine {
    pub screening: ScreeningPolicy,
    pub scoring: Scoring,
    pub signals: SignalState,
    /// Addresses (as text, in the form `source` uses) of the peers where calls from abroad
    /// enter: a domestic caller id arriving there is spoofed.
    pub international_gateways: Vec<String>,
}

impl Engine {
    /// The verdict for one call. `now_ms` is Unix time in milliseconds.
    pub fn decide<R: Rules + ?Sized>(&self, call: &Call<'_>, rules: &R, now_ms: u64) -> Verdict {
        self.decide_scored(call, rules, now_ms, &self.scoring)
    }

    /// [`Engine::decide`] with the evidence weighed by `scoring` instead of the engine's own:
    /// the same evidence under other thresholds, for an operator's what-if preview.
    pub fn decide_scored<R: Rules + ?Sized>(
        &self,
        call: &Call<'_>,
        rules: &R,
        now_ms: u64,
        scoring: &Scoring,
    ) -> Verdict {
        if call.outbound {
            return self.decide_outbound(call, rules, now_ms);
        }
        let caller_n = self.screening.plan.normalise(call.caller);
        let callee_n = self.screening.plan.normalise(call.callee);
        let caller = caller_n.map(|n| n.to_string());
        let callee = callee_n.map(|n| n.to_string());
        let mut evidence = Vec::with_capacity(8);
        let refuses_anonymous = self.caller_evidence(call, caller_n, rules, now_ms, &mut evidence);
        if self.screening.is_emergency(call.callee, callee_n) {
            evidence.push(Evidence {
                score: 0,
                effect: Effect::EmergencyCallee,
                reason: policy_reason(
                    call.callee.trim(),
                    "emergency",
                    "calls to emergency numbers are never blocked or warned".into(),
                ),
            });
        }
        // A listed caller is the list's business: its block speaks only for unlisted neighbours.
        let caller_listed = evidence
            .iter()
            .any(|e| matches!(e.reason.source, Source::List(_)));
        let nearby = caller_n
            .filter(|_| !caller_listed)
            .and_then(|n| self.signals.listed_near(n, rules, (now_ms / 1000) as i64));
        let input = SignalInput {
            call_id: call.id,
            caller: caller.as_deref(),
            caller_raw: Some(call.caller).filter(|s| !s.is_empty()),
            callee: callee.as_deref(),
            display_name: call.display_name,
            source: call.source,
            peer: call.source,
            from_trusted_peer: call.trusted,
            from_international_gateway: call
                .source
                .is_some_and(|s| self.international_gateways.iter().any(|g| g == s)),
            identity: call.identity,
            date_unix: None,
            verstat: call.verstat.filter(|_| call.trusted),
            question: !call.live,
            nearby,
        };
        let eval = evaluate(&input, &self.signals, now_ms);
        evidence.extend(eval.hits);
        let tenancy = Tenancy {
            callee: callee.as_deref(),
            peer: call.source,
        };
        let weighing = scoring.weigh(&evidence, &tenancy);
        if call.live && weighing.action == Action::Block {
            if let (Some(n), Some(c)) = (caller_n, caller.as_deref()) {
                self.note_block(n, c, &evidence, &tenancy, now_ms);
            }
        }
        Verdict {
            refusal: if weighing.action == Action::Block && refuses_anonymous {
                Refusal::AnonymityDisallowed
            } else {
                Refusal::Blocked
            },
            action: weighing.action,
            caller: caller.unwrap_or_else(|| call.caller.trim().to_string()),
            reasons: explain(&weighing),
            stir_failure: eval.stir.code().filter(|c| *c != StirCode::NoIdentity),
        }
    }

    /// An outbound call of a protected subscriber: is the number dialled one that scammers ask
    /// their victims to call? A call to an emergency number is not looked up at all. The best
    /// callback entry for the callee is the only evidence, weighed by the same policy as any
    /// list entry (log-only names, thresholds, the tenant of the subscriber's number or peer).
    fn decide_outbound<R: Rules + ?Sized>(
        &self,
        call: &Call<'_>,
        rules: &R,
        now_ms: u64,
    ) -> Verdict {
        let caller = self.screening.plan.normalise(call.caller);
        let caller = caller.map_or_else(|| call.caller.trim().to_string(), |n| n.to_string());
        let callee = self.screening.plan.normalise(call.callee);
        let pass = |reasons| Verdict {
            action: Action::Pass,
            caller: caller.clone(),
            reasons,
            refusal: Refusal::Blocked,
            stir_failure: None,
        };
        if self.screening.is_emergency(call.callee, callee) {
            return pass(Vec::new());
        }
        let Some(m) = callee.and_then(|n| rules.lookup_callback(n, (now_ms / 1000) as i64)) else {
            return pass(Vec::new());
        };
        let cfg = self.scoring.config();
        let (score, effect) = match m.action {
            EntryAction::Allow => (0, Effect::Allows),
            EntryAction::Warn => (cfg.list_warn_score, Effect::Scores),
            EntryAction::Block => (cfg.list_block_score, Effect::Scores),
        };
        let evidence = [Evidence {
            score,
            effect,
            reason: list_reason(&m),
        }];
        // The tenant is the subscriber's: chosen by its peer, else by its own number.
        let tenancy = Tenancy {
            callee: Some(caller.as_str()).filter(|c| c.starts_with('+')),
            peer: call.source,
        };
        let weighing = self.scoring.weigh(&evidence, &tenancy);
        // A challenge is for strangers calling in; the subscriber dialling out is ours, and
        // its own confirmation is the callback section's warning.
        let action = match weighing.action {
            Action::Challenge => Action::Warn,
            a => a,
        };
        Verdict {
            action,
            reasons: explain(&weighing),
            ..pass(Vec::new())
        }
    }

    /// A live call from `n` (`caller` as text) was blocked: count it against the number's block
    /// when the block stands on what the number itself did, without its source, range, spoofing,
    /// anonymity or the block signal ([`about_the_number`]).
    fn note_block(
        &self,
        n: super::Number,
        caller: &str,
        evidence: &[Evidence],
        t: &Tenancy,
        now_ms: u64,
    ) {
        let about: Vec<Evidence> = evidence
            .iter()
            .filter(|e| about_the_number(e, caller))
            .cloned()
            .collect();
        if about.is_empty() {
            return;
        }
        if about.len() == evidence.len() || self.scoring.weigh(&about, t).action == Action::Block {
            self.signals.blocked(n, now_ms);
        }
    }

    /// The caller's list match and the anonymity rule. They count as one stage, scored once at
    /// the stronger of their actions, so an anonymous caller on a warn list is not warned twice
    /// over. Returns whether a block would be the anonymity refusal (433).
    fn caller_evidence<R: Rules + ?Sized>(
        &self,
        call: &Call<'_>,
        caller: Option<super::Number>,
        rules: &R,
        now_ms: u64,
        out: &mut Vec<Evidence>,
    ) -> bool {
        let cfg = self.scoring.config();
        let listed = caller.and_then(|n| rules.lookup(n, (now_ms / 1000) as i64));
        let list_action = match &listed {
            // An allow entry is the operator vouching for the caller: anonymity is moot.
            Some(m) if m.action == EntryAction::Allow => {
                out.push(Evidence {
                    score: 0,
                    effect: Effect::Allows,
                    reason: list_reason(m),
                });
                return false;
            }
            Some(m) if m.action == EntryAction::Block => Some(Action::Block),
            Some(_) => Some(Action::Warn),
            None => None,
        };
        let anonymous = match self.screening.anonymous {
            _ if !call.anonymous => None,
            AnonymousPolicy::Pass => None,
            AnonymousPolicy::Warn => Some(Action::Warn),
            AnonymousPolicy::Reject => Some(Action::Block),
        };
        let stage = list_action.max(anonymous).unwrap_or(Action::Pass);
        let mut score = match stage {
            Action::Block => cfg.list_block_score,
            // Neither stage says challenge (an entry's category does, below).
            Action::Warn | Action::Challenge => cfg.list_warn_score,
            Action::Pass => 0,
        };
        if let (Some(m), Some(_)) = (&listed, list_action) {
            let dno = stage == Action::Block && m.meta.category.eq_ignore_ascii_case("dno");
            let challenge = m.meta.category.eq_ignore_ascii_case(CHALLENGE_CATEGORY);
            out.push(Evidence {
                score: std::mem::take(&mut score),
                effect: if dno {
                    Effect::DoNotOriginate
                } else if challenge {
                    Effect::Challenges
                } else {
                    Effect::Scores
                },
                reason: list_reason(m),
            });
        }
        let refuses = anonymous == Some(Action::Block) && list_action != Some(Action::Block);
        if let Some(a) = anonymous {
            let text = if a == Action::Block {
                "anonymous callers are refused (433)"
            } else {
                "the caller withheld their identity"
            };
            out.push(Evidence {
                score,
                effect: if refuses {
                    Effect::RefusesAnonymous
                } else {
                    Effect::Scores
                },
                reason: policy_reason("anonymous", "anonymous", text.into()),
            });
        }
        refuses
    }
}

fn list_reason(m: &super::Match) -> Reason {
    Reason {
        source: Source::List(m.meta.list.clone()),
        entry: m.pattern.to_string(),
        category: m.meta.category.to_string(),
        reason: m.meta.reason.to_string(),
    }
}

fn policy_reason(entry: &str, category: &str, reason: String) -> Reason {
    Reason {
        source: Source::Policy,
        entry: entry.into(),
        category: category.into(),
        reason,
    }
}

/// The verdict's reasons: each contribution with its score (`(+50) ...`, or `(log-only +50)`),
/// then what log-only sources would have done and which override decided.
fn explain(w: &Weighing) -> Vec<Reason> {
    let mut reasons: Vec<Reason> = w
        .contributions
        .iter()
        .map(|c| {
            let mut r = c.reason.clone();
            r.reason = if c.enforced {
                format!("(+{}) {}", c.score, r.reason)
            } else {
                format!("(log-only +{}) {}", c.score, r.reason)
            };
            r
        })
        .collect();
    if let Some(a) = w.would_have {
        reasons.push(policy_reason(
            "log-only",
            "would-have",
            format!(
                "log-only lists and signals would have made this call {}",
                a.as_str()
            ),
        ));
    }
    if let Some(o) = w.overridden_by {
        reasons.push(policy_reason(
            o,
            "override",
            format!("decided by the {o} override"),
        ));
    }
    reasons
}

#[cfg(test)]
mod tests;
