//! Policy: folds list matches and signal hits into one action. Scores add up and meet the warn
//! and block thresholds; overrides come first: a call to an emergency number always passes (the
//! screening policy marks it), a Do-Not-Originate hit (a signal, or a list entry in category
//! `dno`) always blocks, then an allow entry always passes. A Do-Not-Originate number
//! never places calls, so allowing one is a contradiction that the block resolves; remove the
//! number from the DNO list to let it through.
//!
//! Tenants (chosen by the source peer, else by the callee's longest matching prefix) bring their
//! own thresholds, a "warn, never block" switch and their own log-only names. Every list, feed
//! or signal can run log-only: evaluated and shown as "would have", never enforced.
//! Knows nothing of SIP or of how lists are indexed.

use serde::{Deserialize, Serialize};

use super::SignalHit;
use crate::screening::verdict::POLICY_LIST;
use crate::screening::{Action, EntryAction, Reason, Refusal, Verdict};

/// `[policy]`
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PolicyConfig {
    pub warn_at: i32,
    pub block_at: i32,
    /// Scores of list entries by action.
    pub list_warn_score: i32,
    pub list_block_score: i32,
    /// Names of lists, feeds or signals (`stir`, `velocity`, `brand` ...) that run log-only.
    pub log_only: Vec<String>,
    #[serde(rename = "tenant")]
    pub tenants: Vec<TenantConfig>,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            warn_at: 50,
            block_at: 100,
            list_warn_score: 50,
            list_block_score: 100,
            log_only: Vec::new(),
            tenants: Vec::new(),
        }
    }
}

/// `[[policy.tenant]]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TenantConfig {
    pub name: String,
    /// E.164 prefixes of the tenant's callee numbers (`+4420794600`).
    pub callee_prefixes: Vec<String>,
    /// Source peers whose calls belong to the tenant.
    pub peers: Vec<String>,
    pub warn_at: Option<i32>,
    pub block_at: Option<i32>,
    /// Warn instead of blocking (an enterprise protecting its own DIDs).
    pub never_block: bool,
    pub log_only: Vec<String>,
}

/// A list entry that matched the caller, as the rule index reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListMatch {
    pub action: EntryAction,
    /// `reason.list` names the list or feed (matched against `log_only`).
    pub reason: Reason,
}

/// Where the call is going, for tenant selection.
#[derive(Debug, Clone, Copy, Default)]
pub struct PolicyContext<'a> {
    pub callee: Option<&'a str>,
    pub peer: Option<&'a str>,
}

/// One thing that counted (or would have counted) towards the verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Contribution {
    pub score: i32,
    /// False when its source runs log-only.
    pub enforced: bool,
    pub reason: Reason,
}

/// The policy's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    pub action: Action,
    /// Sum of enforced scores.
    pub score: i32,
    /// Enforced contributions' reasons, strongest first: what the verdict shows.
    pub reasons: Vec<Reason>,
    /// Every contribution, enforced or log-only, strongest first.
    pub contributions: Vec<Contribution>,
    /// What log-only sources would have made of the call, when that differs.
    pub would_have: Option<Action>,
    /// `emergency`, `dno`, `allow` or `never-block` when an override decided.
    pub overridden_by: Option<&'static str>,
    pub tenant: Option<String>,
}

/// The compiled policy.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    cfg: PolicyConfig,
}

impl Policy {
    /// Checks the config; errors name the setting and what was expected.
    pub fn new(cfg: PolicyConfig) -> Result<Policy, String> {
        if cfg.warn_at <= 0 || cfg.block_at < cfg.warn_at {
            return Err(format!(
                "policy: need 0 < warn_at <= block_at, got warn_at {} block_at {}",
                cfg.warn_at, cfg.block_at
            ));
        }
        for t in &cfg.tenants {
            if t.name.is_empty() {
                return Err("policy.tenant: name is required".into());
            }
            if t.callee_prefixes.is_empty() && t.peers.is_empty() {
                return Err(format!(
                    "policy.tenant {}: give callee_prefixes or peers",
                    t.name
                ));
            }
            if let Some(p) = t.callee_prefixes.iter().find(|p| {
                p.strip_prefix('+').map_or(true, |d| {
                    d.is_empty() || !d.bytes().all(|b| b.is_ascii_digit())
                })
            }) {
                return Err(format!(
                    "policy.tenant {}: callee prefix {p:?} is not + and digits",
                    t.name
                ));
            }
        }
        Ok(Policy { cfg })
    }

    fn tenant(&self, ctx: &PolicyContext<'_>) -> Option<&TenantConfig> {
        if let Some(peer) = ctx.peer {
            if let Some(t) = self
                .cfg
                .tenants
                .iter()
                .find(|t| t.peers.iter().any(|p| p == peer))
            {
                return Some(t);
            }
        }
        let callee = ctx.callee?;
        self.cfg
            .tenants
            .iter()
            .filter_map(|t| {
                t.callee_prefixes
                    .iter()
                    .filter(|p| callee.starts_with(p.as_str()))
                    .map(|p| p.len())
                    .max()
                    .map(|l| (l, t))
            })
            .max_by_key(|(l, _)| *l)
            .map(|(_, t)| t)
    }
}

/// One thing that may count, before the policy weighs it.
struct Item<'r> {
    score: i32,
    /// The list, feed or signal name, for `log_only`.
    name: &'r str,
    dno: bool,
    allow: bool,
    emergency: bool,
    reason: &'r Reason,
}

struct Tally {
    score: i32,
    dno: bool,
    allow: bool,
    emergency: bool,
}

fn tally(items: &[Item<'_>], enforced: &[bool], all: bool) -> Tally {
    let mut t = Tally {
        score: 0,
        dno: false,
        allow: false,
        emergency: false,
    };
    for (it, &enf) in items.iter().zip(enforced) {
        // Calls to emergency numbers are never held back, log-only or not.
        t.emergency |= it.emergency;
        if enf || all {
            t.score = t.score.saturating_add(it.score);
            t.dno |= it.dno;
            t.allow |= it.allow;
        }
    }
    t
}

/// Decides a call from its list matches and signal hits.
pub fn decide(
    lists: &[ListMatch],
    hits: &[SignalHit],
    ctx: &PolicyContext<'_>,
    policy: &Policy,
) -> Decision {
    let cfg = &policy.cfg;
    let mut items = Vec::with_capacity(lists.len() + hits.len());
    for m in lists {
        let (score, allow) = match m.action {
            EntryAction::Allow => (0, true),
            EntryAction::Warn => (cfg.list_warn_score, false),
            EntryAction::Block => (cfg.list_block_score, false),
        };
        let dno = m.reason.category.eq_ignore_ascii_case("dno") && m.action == EntryAction::Block;
        items.push(Item {
            score,
            name: &m.reason.list,
            dno,
            allow,
            emergency: false,
            reason: &m.reason,
        });
    }
    push_hits(&mut items, hits);
    decide_items(&items, ctx, policy)
}

fn push_hits<'r>(items: &mut Vec<Item<'r>>, hits: &'r [SignalHit]) {
    for h in hits {
        items.push(Item {
            score: h.score,
            name: h.signal,
            dno: h.dno,
            allow: false,
            emergency: false,
            reason: &h.reason,
        });
    }
}

/// Folds signal hits into the verdict `screen()` gave for the lists (anonymity and emergency
/// rules included) and returns the final verdict with the decision behind it.
///
/// The list verdict counts once, with the score of its action; a pass with a list reason is an
/// allow entry; an `emergency` reason from the screening policy always passes the call. Each
/// reason's text in the final verdict starts with its score (`(+50) ...`); log-only ones start
/// with `(log-only +50)`, and a `policy`/`would-have` reason says what they would have done.
pub fn decide_verdict(
    list: &Verdict,
    hits: &[SignalHit],
    ctx: &PolicyContext<'_>,
    policy: &Policy,
) -> (Verdict, Decision) {
    let cfg = &policy.cfg;
    let mut items = Vec::with_capacity(list.reasons.len() + hits.len());
    let mut scored = false;
    for r in &list.reasons {
        let from_policy = r.list == POLICY_LIST;
        if from_policy && r.category == "emergency" {
            items.push(Item {
                score: 0,
                name: &r.list,
                dno: false,
                allow: false,
                emergency: true,
                reason: r,
            });
            continue;
        }
        let (score, allow) = match list.action {
            Action::Block => (cfg.list_block_score, false),
            Action::Warn => (cfg.list_warn_score, false),
            Action::Pass => (0, !from_policy),
        };
        // screen() already folded its lists into one action: count it once.
        let score = if scored { 0 } else { score };
        scored |= score != 0;
        let dno = r.category.eq_ignore_ascii_case("dno") && list.action == Action::Block;
        items.push(Item {
            score,
            name: &r.list,
            dno,
            allow,
            emergency: false,
            reason: r,
        });
    }
    push_hits(&mut items, hits);
    let d = decide_items(&items, ctx, policy);
    let mut reasons: Vec<Reason> = d
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
    if let Some(w) = d.would_have {
        reasons.push(Reason {
            list: POLICY_LIST.into(),
            entry: "log-only".into(),
            category: "would-have".into(),
            reason: format!(
                "log-only lists and signals would have made this call {}",
                w.as_str()
            ),
        });
    }
    if let Some(o) = d.overridden_by {
        reasons.push(Reason {
            list: POLICY_LIST.into(),
            entry: o.into(),
            category: "override".into(),
            reason: format!("decided by the {o} override"),
        });
    }
    let refusal = if d.action == Action::Block && list.action == Action::Block {
        list.refusal
    } else {
        Refusal::Blocked
    };
    let v = Verdict {
        action: d.action,
        caller: list.caller.clone(),
        reasons,
        refusal,
    };
    (v, d)
}

fn decide_items(items: &[Item<'_>], ctx: &PolicyContext<'_>, policy: &Policy) -> Decision {
    let cfg = &policy.cfg;
    let tenant = policy.tenant(ctx);
    let log_only = |name: &str| {
        cfg.log_only.iter().any(|n| n == name)
            || tenant.is_some_and(|t| t.log_only.iter().any(|n| n == name))
    };
    let enforced: Vec<bool> = items.iter().map(|it| !log_only(it.name)).collect();
    let warn_at = tenant.and_then(|t| t.warn_at).unwrap_or(cfg.warn_at);
    let block_at = tenant.and_then(|t| t.block_at).unwrap_or(cfg.block_at);
    let never_block = tenant.is_some_and(|t| t.never_block);
    let act = |t: &Tally| -> (Action, Option<&'static str>) {
        let (a, why) = if t.emergency {
            (Action::Pass, Some("emergency"))
        } else if t.dno {
            (Action::Block, Some("dno"))
        } else if t.allow {
            (Action::Pass, Some("allow"))
        } else if t.score >= block_at {
            (Action::Block, None)
        } else if t.score >= warn_at {
            (Action::Warn, None)
        } else {
            (Action::Pass, None)
        };
        if a == Action::Block && never_block {
            (Action::Warn, Some("never-block"))
        } else {
            (a, why)
        }
    };
    let now = tally(items, &enforced, false);
    let everything = tally(items, &enforced, true);
    let (action, overridden_by) = act(&now);
    let (would, _) = act(&everything);
    let mut contributions: Vec<Contribution> = items
        .iter()
        .zip(&enforced)
        .map(|(it, enf)| Contribution {
            score: it.score,
            enforced: *enf,
            reason: it.reason.clone(),
        })
        .collect();
    contributions.sort_by(|a, b| b.enforced.cmp(&a.enforced).then(b.score.cmp(&a.score)));
    let reasons = contributions
        .iter()
        .filter(|c| c.enforced)
        .map(|c| c.reason.clone())
        .collect();
    Decision {
        action,
        score: now.score,
        reasons,
        contributions,
        would_have: (would != action).then_some(would),
        overridden_by,
        tenant: tenant.map(|t| t.name.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(list: &str, category: &str) -> Reason {
        Reason {
            list: list.into(),
            entry: "+12027620143".into(),
            category: category.into(),
            reason: "test".into(),
        }
    }

    fn lm(action: EntryAction, list: &str, category: &str) -> ListMatch {
        ListMatch {
            action,
            reason: reason(list, category),
        }
    }

    fn sh(signal: &'static str, score: i32, dno: bool) -> SignalHit {
        SignalHit {
            signal,
            score,
            dno,
            reason: reason(signal, signal),
        }
    }

    fn policy() -> Policy {
        Policy::new(PolicyConfig {
            log_only: vec!["partner-feed".into(), "wangiri".into()],
            tenants: vec![
                TenantConfig {
                    name: "acme".into(),
                    callee_prefixes: vec!["+4420794".into()],
                    never_block: true,
                    ..TenantConfig::default()
                },
                TenantConfig {
                    name: "acme-board".into(),
                    callee_prefixes: vec!["+44207946".into()],
                    warn_at: Some(20),
                    block_at: Some(40),
                    ..TenantConfig::default()
                },
                TenantConfig {
                    name: "pbx-trial".into(),
                    peers: vec!["pbx-b".into()],
                    log_only: vec!["velocity".into(), "blocklist".into()],
                    ..TenantConfig::default()
                },
            ],
            ..PolicyConfig::default()
        })
        .unwrap()
    }

    #[test]
    fn decisions_table() {
        use Action::*;
        use EntryAction as E;
        type Case = (
            Vec<ListMatch>,
            Vec<SignalHit>,
            Option<&'static str>,
            Option<&'static str>,
            Action,
            i32,
            Option<Action>,
            Option<&'static str>,
        );
        let cases: Vec<Case> = vec![
            (vec![], vec![], None, None, Pass, 0, None, None),
            (
                vec![lm(E::Block, "blocklist", "scam")],
                vec![],
                None,
                None,
                Block,
                100,
                None,
                None,
            ),
            (
                vec![lm(E::Warn, "blocklist", "robocall")],
                vec![],
                None,
                None,
                Warn,
                50,
                None,
                None,
            ),
            (
                vec![],
                vec![sh("stir", 20, false), sh("neighbour", 50, false)],
                None,
                None,
                Warn,
                70,
                None,
                None,
            ),
            (
                vec![],
                vec![sh("velocity", 50, false), sh("brand", 50, false)],
                None,
                None,
                Block,
                100,
                None,
                None,
            ),
            // Allow beats scores ...
            (
                vec![
                    lm(E::Allow, "allow", "customer"),
                    lm(E::Block, "blocklist", "scam"),
                ],
                vec![sh("velocity", 100, false)],
                None,
                None,
                Pass,
                200,
                None,
                Some("allow"),
            ),
            // ... but not a Do-Not-Originate hit, from a signal or from a dno list entry.
            (
                vec![lm(E::Allow, "allow", "customer")],
                vec![sh("dno", 100, true)],
                None,
                None,
                Block,
                100,
                None,
                Some("dno"),
            ),
            (
                vec![
                    lm(E::Block, "gov-dno", "dno"),
                    lm(E::Allow, "allow", "customer"),
                ],
                vec![],
                None,
                None,
                Block,
                100,
                None,
                Some("dno"),
            ),
            // Log-only sources are shown, not enforced.
            (
                vec![lm(E::Block, "partner-feed", "scam")],
                vec![],
                None,
                None,
                Pass,
                0,
                Some(Block),
                None,
            ),
            (
                vec![],
                vec![sh("wangiri", 100, false), sh("stir", 20, false)],
                None,
                None,
                Pass,
                20,
                Some(Block),
                None,
            ),
            // Tenants: never-block turns a block into a warning ...
            (
                vec![lm(E::Block, "blocklist", "scam")],
                vec![],
                Some("+442079450000"),
                None,
                Warn,
                100,
                None,
                Some("never-block"),
            ),
            // ... the longest prefix wins, with its own thresholds ...
            (
                vec![],
                vec![sh("stir", 20, false), sh("neighbour", 25, false)],
                Some("+442079460123"),
                None,
                Block,
                45,
                None,
                None,
            ),
            // ... and a peer's tenant has its own log-only names.
            (
                vec![lm(E::Block, "blocklist", "scam")],
                vec![sh("velocity", 50, false)],
                Some("+442079460123"),
                Some("pbx-b"),
                Pass,
                0,
                Some(Block),
                None,
            ),
        ];
        let p = policy();
        for (i, (lists, hits, callee, peer, action, score, would, over)) in cases.iter().enumerate()
        {
            let d = decide(
                lists,
                hits,
                &PolicyContext {
                    callee: *callee,
                    peer: *peer,
                },
                &p,
            );
            assert_eq!(
                (d.action, d.score, d.would_have, d.overridden_by),
                (*action, *score, *would, *over),
                "case {i}: {d:?}"
            );
            assert_eq!(d.contributions.len(), lists.len() + hits.len(), "case {i}");
            assert_eq!(
                d.reasons.len(),
                d.contributions.iter().filter(|c| c.enforced).count(),
                "case {i}"
            );
        }
    }

    #[test]
    fn folding_hits_into_a_list_verdict() {
        use crate::screening::Refusal;
        let verdict = |action: Action, reasons: &[(&str, &str)]| Verdict {
            action,
            caller: "+447911123456".into(),
            reasons: reasons.iter().map(|(l, c)| reason(l, c)).collect(),
            refusal: Refusal::Blocked,
        };
        type Case = (
            Verdict,
            Vec<SignalHit>,
            Action,
            Option<&'static str>,
            Option<Action>,
        );
        let cases: Vec<Case> = vec![
            (verdict(Action::Pass, &[]), vec![], Action::Pass, None, None),
            (
                verdict(Action::Pass, &[]),
                vec![sh("brand", 100, false)],
                Action::Block,
                None,
                None,
            ),
            (
                verdict(
                    Action::Warn,
                    &[("blocklist", "robocall"), (POLICY_LIST, "anonymous")],
                ),
                vec![],
                Action::Warn,
                None,
                None,
            ),
            (
                verdict(Action::Warn, &[("blocklist", "robocall")]),
                vec![sh("stir", 60, false)],
                Action::Block,
                None,
                None,
            ),
            // An allow entry: screen() passes with the list's reason.
            (
                verdict(Action::Pass, &[("allow", "customer")]),
                vec![sh("velocity", 100, false)],
                Action::Pass,
                Some("allow"),
                None,
            ),
            // Emergency beats even a Do-Not-Originate hit.
            (
                verdict(
                    Action::Pass,
                    &[("blocklist", "scam"), (POLICY_LIST, "emergency")],
                ),
                vec![sh("dno", 100, true)],
                Action::Pass,
                Some("emergency"),
                None,
            ),
            (
                verdict(Action::Block, &[("do-not-originate", "dno")]),
                vec![],
                Action::Block,
                Some("dno"),
                None,
            ),
            (
                verdict(Action::Block, &[("partner-feed", "scam")]),
                vec![],
                Action::Pass,
                None,
                Some(Action::Block),
            ),
        ];
        let p = policy();
        for (i, (list, hits, action, over, would)) in cases.iter().enumerate() {
            let (v, d) = decide_verdict(list, hits, &PolicyContext::default(), &p);
            assert_eq!(
                (v.action, d.overridden_by, d.would_have),
                (*action, *over, *would),
                "case {i}: {v:?}"
            );
            for h in hits {
                let shown = v
                    .reasons
                    .iter()
                    .find(|r| r.list == h.signal)
                    .expect("every hit is in the verdict");
                assert!(
                    shown.reason.starts_with(&format!("(+{}) ", h.score)),
                    "case {i}: {shown:?}"
                );
            }
            if would.is_some() {
                assert!(
                    v.reasons.iter().any(|r| r.category == "would-have"),
                    "case {i}: {v:?}"
                );
                assert!(
                    v.reasons
                        .iter()
                        .any(|r| r.reason.starts_with("(log-only +")),
                    "case {i}: {v:?}"
                );
            }
        }
    }

    #[test]
    fn tenant_selection() {
        let p = policy();
        let cases = [
            (Some("+442079460001"), None, Some("acme-board")),
            (Some("+442079400001"), None, Some("acme")),
            (Some("+442079400001"), Some("pbx-b"), Some("pbx-trial")),
            (Some("+12027620143"), Some("pbx-a"), None),
            (None, None, None),
        ];
        for (callee, peer, want) in cases {
            let d = decide(&[], &[], &PolicyContext { callee, peer }, &p);
            assert_eq!(d.tenant.as_deref(), want, "{callee:?} {peer:?}");
        }
    }

    #[test]
    fn bad_policies_are_refused() {
        let bad = [
            PolicyConfig {
                warn_at: 0,
                ..PolicyConfig::default()
            },
            PolicyConfig {
                warn_at: 100,
                block_at: 50,
                ..PolicyConfig::default()
            },
            PolicyConfig {
                tenants: vec![TenantConfig {
                    name: "x".into(),
                    ..TenantConfig::default()
                }],
                ..PolicyConfig::default()
            },
            PolicyConfig {
                tenants: vec![TenantConfig {
                    name: "x".into(),
                    callee_prefixes: vec!["4420".into()],
                    ..TenantConfig::default()
                }],
                ..PolicyConfig::default()
            },
        ];
        for (i, cfg) in bad.into_iter().enumerate() {
            assert!(Policy::new(cfg).is_err(), "case {i}");
        }
    }
}
