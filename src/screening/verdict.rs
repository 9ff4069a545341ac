//! The decision for one call: the facts that came in, the verdict that goes out, and [`screen`],
//! the single function the proxy, `scamguard check` and the admin API all call.
//!
//! Order of a decision:
//! 1. the caller number is looked up in the rules (compiled lists plus any live overlay);
//! 2. an anonymous caller gets the configured policy (pass, warn, or reject with 433);
//! 3. findings from other signals (brand impersonation, velocity, STIR/SHAKEN, computed
//!    elsewhere and passed in as [`Finding`]s) raise the action, never lower it;
//! 4. an allow entry overrides everything from lists and signals: the operator vouched for
//!    this caller;
//! 5. a call to an emergency number is never blocked or warned: it is downgraded to pass, and a
//!    reason says so.
//!
//! Pure: knows nothing of sockets, SIP, files or clocks (`now` is passed in).

use serde::Serialize;

use super::index::{Match, Rules};
use super::number::Number;
use super::policy::{AnonymousPolicy, Policy};
use super::{Action, Reason};

/// What is known about a call when it is screened. Borrowed from the request, so building one
/// costs nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct Facts<'a> {
    /// The caller in E.164 form, when it normalised.
    pub caller: Option<Number>,
    /// The caller as the network carried it (user part or tel number), before normalisation.
    pub caller_raw: &'a str,
    /// The caller's display name, screened separately for brand impersonation.
    pub display_name: Option<&'a str>,
    /// The callee in E.164 form, when it normalised.
    pub callee: Option<Number>,
    /// The callee as dialled.
    pub callee_raw: &'a str,
    /// The caller withheld their identity.
    pub anonymous: bool,
}

impl<'a> Facts<'a> {
    /// Facts from the raw strings, normalised with the policy's number plan.
    pub fn new(
        policy: &Policy,
        caller_raw: &'a str,
        callee_raw: &'a str,
        display_name: Option<&'a str>,
        anonymous: bool,
    ) -> Facts<'a> {
        Facts {
            caller: policy.plan.normalise(caller_raw),
            caller_raw,
            display_name,
            callee: policy.plan.normalise(callee_raw),
            callee_raw,
            anonymous,
        }
    }
}

/// How a blocked call is refused; the proxy maps it to a response code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Refusal {
    /// Blocked by a list entry or a signal: `603 Network Blocked` (or 608 per SIP config).
    #[default]
    Blocked,
    /// Anonymous caller refused by policy: `433 Anonymity Disallowed`.
    AnonymityDisallowed,
}

/// A result from another signal (brand impersonation, velocity, STIR/SHAKEN...), joined into
/// the verdict by [`screen_with`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub action: Action,
    pub reason: Reason,
}

/// The decision for one call. Serialises as
/// `{"action":"block","caller":"+12025550143","reasons":[{"list":..,"entry":..,"category":..,"reason":..}]}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    pub action: Action,
    /// The caller in E.164 form, or as carried when it did not normalise.
    pub caller: String,
    pub reasons: Vec<Reason>,
    /// How a block is to be answered; meaningless unless `action` is block.
    #[serde(skip)]
    pub refusal: Refusal,
}

impl Verdict {
    /// One JSON line, as printed by `scamguard check` and the decision log.
    pub fn to_json(&self) -> String {
        // Serialising plain strings and enums cannot fail.
        serde_json::to_string(self).unwrap_or_else(|_| String::from("{}"))
    }
}

/// The list name used in reasons that come from policy rather than from a list.
pub const POLICY_LIST: &str = "policy";

fn reason_of(m: &Match) -> Reason {
    Reason {
        list: m.meta.list.to_string(),
        entry: m.pattern.to_string(),
        category: m.meta.category.to_string(),
        reason: m.meta.reason.to_string(),
    }
}

/// Screen one call against the rules with no extra signals.
pub fn screen<R: Rules + ?Sized>(facts: &Facts, rules: &R, policy: &Policy, now: i64) -> Verdict {
    screen_with(facts, rules, policy, &[], now)
}

/// Screen one call, joining findings from other signals.
pub fn screen_with<R: Rules + ?Sized>(
    facts: &Facts,
    rules: &R,
    policy: &Policy,
    findings: &[Finding],
    now: i64,
) -> Verdict {
    let caller = match facts.caller {
        Some(n) => n.to_string(),
        None => facts.caller_raw.trim().to_string(),
    };
    let mut v = Verdict {
        action: Action::Pass,
        caller,
        reasons: Vec::new(),
        refusal: Refusal::Blocked,
    };

    let listed = facts.caller.and_then(|n| rules.lookup(n, now));
    if let Some(m) = &listed {
        if m.action == super::EntryAction::Allow {
            // An allow entry is the operator vouching for the caller: nothing else counts.
            v.reasons.push(reason_of(m));
            return v;
        }
        v.action = match m.action {
            super::EntryAction::Block => Action::Block,
            _ => Action::Warn,
        };
        v.reasons.push(reason_of(m));
    }

    if facts.anonymous && policy.anonymous != AnonymousPolicy::Pass {
        let (action, text) = match policy.anonymous {
            AnonymousPolicy::Reject => (Action::Block, "anonymous callers are refused (433)"),
            _ => (Action::Warn, "the caller withheld their identity"),
        };
        if action > v.action || (action == v.action && v.reasons.is_empty()) {
            v.action = action;
            if policy.anonymous == AnonymousPolicy::Reject {
                v.refusal = Refusal::AnonymityDisallowed;
            }
        }
        v.reasons.push(Reason {
            list: POLICY_LIST.into(),
            entry: "anonymous".into(),
            category: "anonymous".into(),
            reason: text.into(),
        });
    }

    for f in findings {
        if f.action > v.action {
            v.action = f.action;
            // A block raised by a signal is a block, not an anonymity refusal.
            v.refusal = Refusal::Blocked;
        }
        v.reasons.push(f.reason.clone());
    }

    if v.action != Action::Pass && policy.is_emergency(facts.callee_raw, facts.callee) {
        v.action = Action::Pass;
        v.refusal = Refusal::Blocked;
        v.reasons.push(Reason {
            list: POLICY_LIST.into(),
            entry: facts.callee_raw.trim().to_string(),
            category: "emergency".into(),
            reason: "calls to emergency numbers are never blocked or warned".into(),
        });
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::screening::entry::{Entry, EntryAction, Pattern};
    use crate::screening::index::{IndexBuilder, RuleIndex};
    use crate::screening::policy::ScreeningConfig;

    fn rules() -> RuleIndex {
        let mut b = IndexBuilder::new();
        for (list, p, a, cat) in [
            ("scam", "+12025550143", "block", "scam"),
            ("scam", "+120255501XX", "warn", "robocall"),
            ("ok", "+12025550150", "allow", "partner"),
            ("premium", "+1900*", "warn", "premium-rate"),
        ] {
            b.add(
                list,
                &Entry {
                    pattern: Pattern::parse(p).unwrap(),
                    action: EntryAction::parse(a).unwrap(),
                    category: cat.into(),
                    reason: format!("{cat} entry"),
                    source: "test".into(),
                    expires: None,
                },
            );
        }
        b.build()
    }

    fn policy(anonymous: AnonymousPolicy) -> Policy {
        Policy::from_config(&ScreeningConfig {
            anonymous,
            ..Default::default()
        })
        .unwrap()
    }

    #[test]
    fn verdict_table() {
        let idx = rules();
        let warn_sig = Finding {
            action: Action::Warn,
            reason: Reason {
                list: "signal".into(),
                entry: "brand".into(),
                category: "impersonation".into(),
                reason: "claims Microsoft".into(),
            },
        };
        let block_sig = Finding {
            action: Action::Block,
            ..warn_sig.clone()
        };
        // (caller, callee, anonymous, anonymous policy, findings, action, refusal, reason lists)
        type Case<'a> = (
            &'a str,
            &'a str,
            bool,
            AnonymousPolicy,
            Vec<Finding>,
            Action,
            Refusal,
            &'a [&'a str],
        );
        use AnonymousPolicy as A;
        let cases: Vec<Case> = vec![
            (
                "+12025550143",
                "2025550100",
                false,
                A::Pass,
                vec![],
                Action::Block,
                Refusal::Blocked,
                &["scam"],
            ),
            (
                "(202) 555-0143",
                "2025550100",
                false,
                A::Pass,
                vec![],
                Action::Block,
                Refusal::Blocked,
                &["scam"],
            ),
            (
                "+12025550177",
                "2025550100",
                false,
                A::Pass,
                vec![],
                Action::Warn,
                Refusal::Blocked,
                &["scam"],
            ),
            (
                "+19005550100",
                "2025550100",
                false,
                A::Pass,
                vec![],
                Action::Warn,
                Refusal::Blocked,
                &["premium"],
            ),
            (
                "+12025550199",
                "2025550100",
                false,
                A::Pass,
                vec![],
                Action::Warn,
                Refusal::Blocked,
                &["scam"],
            ),
            (
                "+14155550100",
                "2025550100",
                false,
                A::Pass,
                vec![],
                Action::Pass,
                Refusal::Blocked,
                &[],
            ),
            // allow beats the X-pattern and every signal
            (
                "+12025550150",
                "2025550100",
                false,
                A::Pass,
                vec![block_sig.clone()],
                Action::Pass,
                Refusal::Blocked,
                &["ok"],
            ),
            // signals raise, never lower
            (
                "+12025550143",
                "2025550100",
                false,
                A::Pass,
                vec![warn_sig.clone()],
                Action::Block,
                Refusal::Blocked,
                &["scam", "signal"],
            ),
            (
                "+14155550100",
                "2025550100",
                false,
                A::Pass,
                vec![block_sig.clone()],
                Action::Block,
                Refusal::Blocked,
                &["signal"],
            ),
            // anonymous policy
            (
                "anonymous",
                "2025550100",
                true,
                A::Pass,
                vec![],
                Action::Pass,
                Refusal::Blocked,
                &[],
            ),
            (
                "anonymous",
                "2025550100",
                true,
                A::Warn,
                vec![],
                Action::Warn,
                Refusal::Blocked,
                &["policy"],
            ),
            (
                "anonymous",
                "2025550100",
                true,
                A::Reject,
                vec![],
                Action::Block,
                Refusal::AnonymityDisallowed,
                &["policy"],
            ),
            (
                "anonymous",
                "2025550100",
                true,
                A::Reject,
                vec![block_sig.clone()],
                Action::Block,
                Refusal::AnonymityDisallowed,
                &["policy", "signal"],
            ),
            // emergency callees are never blocked or warned
            (
                "+12025550143",
                "911",
                false,
                A::Pass,
                vec![],
                Action::Pass,
                Refusal::Blocked,
                &["scam", "policy"],
            ),
            (
                "anonymous",
                "9-1-1",
                true,
                A::Reject,
                vec![],
                Action::Pass,
                Refusal::Blocked,
                &["policy", "policy"],
            ),
            (
                "+14155550100",
                "911",
                false,
                A::Pass,
                vec![],
                Action::Pass,
                Refusal::Blocked,
                &[],
            ),
        ];
        for (caller, callee, anon, ap, findings, action, refusal, lists) in cases {
            let p = policy(ap);
            let facts = Facts::new(&p, caller, callee, None, anon);
            let v = screen_with(&facts, &idx, &p, &findings, 0);
            let got: Vec<&str> = v.reasons.iter().map(|r| r.list.as_str()).collect();
            assert_eq!(
                (v.action, v.refusal, got.as_slice()),
                (action, refusal, lists),
                "{caller} -> {callee}"
            );
        }
    }

    #[test]
    fn serialises_exactly() {
        let idx = rules();
        let p = Policy::default();
        let v = screen(
            &Facts::new(&p, "+1 202 555 0143", "2025550100", None, false),
            &idx,
            &p,
            0,
        );
        assert_eq!(
            v.to_json(),
            r#"{"action":"block","caller":"+12025550143","reasons":[{"list":"scam","entry":"+12025550143","category":"scam","reason":"scam entry"}]}"#
        );
        let v = screen(
            &Facts::new(&p, "not a number", "", None, false),
            &idx,
            &p,
            0,
        );
        assert_eq!(
            v.to_json(),
            r#"{"action":"pass","caller":"not a number","reasons":[]}"#
        );
    }
}
