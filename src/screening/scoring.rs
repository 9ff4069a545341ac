//! Scoring: the `[policy]` section, and the one fold that weighs a call's evidence into an
//! action. Scores add up and meet the warn and block thresholds; overrides come first: a call to
//! an emergency number always passes, a Do-Not-Originate hit (a signal, or a list entry in
//! category `dno`) always blocks, then an allow entry always passes. A Do-Not-Originate number
//! never places calls, so allowing one is a contradiction that the block resolves; remove the
//! number from the DNO list to let it through.
//!
//! A third threshold, `challenge_at` (off at 0), sits between them: a call scoring there is
//! challenged (the caller must press a digit before it rings), and so is a call whose caller has
//! an entry in category `challenge`, unless the rest of the evidence reaches the block level on
//! its own. A tenant that never blocks never challenges either: a challenge can end in a refusal.
//!
//! Tenants (chosen by the source peer, else by the callee's longest matching prefix) bring their
//! own thresholds, a "warn, never block" switch and their own log-only names. Every list, feed
//! or signal can run log-only: evaluated and shown as "would have", never enforced.
//! Knows nothing of SIP, of how lists are indexed or of how evidence is found.

use serde::{Deserialize, Serialize};

use super::evidence::{Effect, Evidence, Reason};
use super::Action;

/// `[policy]`
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PolicyConfig {
    pub warn_at: i32,
    pub block_at: i32,
    /// Scores from this up to `block_at` challenge the caller instead of warning; 0: never by
    /// score (entries in category `challenge` still do).
    pub challenge_at: i32,
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
            challenge_at: 0,
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

/// Where the call is going, for tenant selection.
#[derive(Debug, Clone, Copy, Default)]
pub struct Tenancy<'a> {
    /// The callee, E.164.
    pub callee: Option<&'a str>,
    /// The source peer.
    pub peer: Option<&'a str>,
}

/// One piece of evidence as it counted (or would have counted) towards the verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Contribution {
    pub score: i32,
    /// False when its source runs log-only.
    pub enforced: bool,
    pub reason: Reason,
}

/// What the fold made of a call's evidence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Weighing {
    pub action: Action,
    /// Sum of enforced scores.
    pub score: i32,
    /// Every contribution, enforced first, then strongest first. An emergency callee's evidence
    /// is here only when it overrode something.
    pub contributions: Vec<Contribution>,
    /// What log-only sources would have made of the call, when that differs.
    pub would_have: Option<Action>,
    /// `emergency`, `dno`, `allow` or `never-block` when an override decided.
    pub overridden_by: Option<&'static str>,
    pub tenant: Option<String>,
}

impl Weighing {
    /// The enforced contributions' reasons: what the verdict shows before its notes.
    pub fn enforced(&self) -> impl Iterator<Item = &Reason> {
        self.contributions
            .iter()
            .filter(|c| c.enforced)
            .map(|c| &c.reason)
    }
}

/// The compiled `[policy]` section.
#[derive(Debug, Clone, Default)]
pub struct Scoring {
    cfg: PolicyConfig,
}

impl PolicyConfig {
    /// Every problem with the section, each naming the setting and what was expected.
    pub fn validate(&self) -> Vec<String> {
        let mut p = Vec::new();
        if self.warn_at <= 0 || self.block_at < self.warn_at {
            p.push(format!(
                "policy: need 0 < warn_at <= block_at, got warn_at {} block_at {}",
                self.warn_at, self.block_at
            ));
        }
        if self.challenge_at != 0 && !(self.warn_at..=self.block_at).contains(&self.challenge_at) {
            p.push(format!(
                "policy.challenge_at {}: expected 0 (off) or warn_at <= challenge_at <= block_at ({} to {})",
                self.challenge_at, self.warn_at, self.block_at
            ));
        }
        for t in &self.tenants {
            if t.name.is_empty() {
                p.push("policy.tenant: name is required".into());
            }
            if t.callee_prefixes.is_empty() && t.peers.is_empty() {
                p.push(format!(
                    "policy.tenant {}: give callee_prefixes or peers",
                    t.name
                ));
            }
            for bad in t.callee_prefixes.iter().filter(|p| {
                p.strip_prefix('+').map_or(true, |d| {
                    d.is_empty() || !d.bytes().all(|b| b.is_ascii_digit())
                })
            }) {
                p.push(format!(
                    "policy.tenant {}: callee prefix {bad:?} is not + and digits",
                    t.name
                ));
            }
        }
        p
    }
}

impl Scoring {
    /// The fold over a section that has passed [`PolicyConfig::validate`].
    pub fn new(cfg: PolicyConfig) -> Scoring {
        Scoring { cfg }
    }

    pub fn config(&self) -> &PolicyConfig {
        &self.cfg
    }

    fn tenant(&self, ctx: &Tenancy<'_>) -> Option<&TenantConfig> {
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

#[derive(Default)]
struct Tally {
    score: i32,
    /// The score without the `challenge` entries' own: what the rest of the evidence says.
    rest: i32,
    dno: bool,
    allow: bool,
    challenge: bool,
}

impl Scoring {
    /// The fold: weighs every piece of evidence once, with the tenant's thresholds and log-only
    /// names, and applies the overrides.
    pub fn weigh(&self, evidence: &[Evidence], ctx: &Tenancy<'_>) -> Weighing {
        let cfg = &self.cfg;
        let tenant = self.tenant(ctx);
        let log_only = |name: &str| {
            cfg.log_only.iter().any(|n| n == name)
                || tenant.is_some_and(|t| t.log_only.iter().any(|n| n == name))
        };
        let warn_at = tenant.and_then(|t| t.warn_at).unwrap_or(cfg.warn_at);
        let block_at = tenant.and_then(|t| t.block_at).unwrap_or(cfg.block_at);
        let never_block = tenant.is_some_and(|t| t.never_block);
        let challenge_at = cfg.challenge_at;
        // Calls to emergency numbers are never held back, log-only or not.
        let enforced: Vec<bool> = evidence
            .iter()
            .map(|e| e.effect == Effect::EmergencyCallee || !log_only(e.reason.source.name()))
            .collect();
        let tally = |all: bool| {
            let mut t = Tally::default();
            for (e, &enf) in evidence.iter().zip(&enforced) {
                if enf || all {
                    t.score = t.score.saturating_add(e.score);
                    t.dno |= e.effect == Effect::DoNotOriginate;
                    t.allow |= e.effect == Effect::Allows;
                    t.challenge |= e.effect == Effect::Challenges;
                    if e.effect != Effect::Challenges {
                        t.rest = t.rest.saturating_add(e.score);
                    }
                }
            }
            t
        };
        let act = |t: &Tally| -> (Action, Option<&'static str>) {
            let (a, why) = if t.dno {
                (Action::Block, Some("dno"))
            } else if t.allow {
                (Action::Pass, Some("allow"))
            } else if t.challenge && t.rest < block_at {
                (Action::Challenge, None)
            } else if t.score >= block_at {
                (Action::Block, None)
            } else if challenge_at > 0 && t.score >= challenge_at {
                (Action::Challenge, None)
            } else if t.score >= warn_at {
                (Action::Warn, None)
            } else {
                (Action::Pass, None)
            };
            if matches!(a, Action::Block | Action::Challenge) && never_block {
                (Action::Warn, Some("never-block"))
            } else {
                (a, why)
            }
        };
        let now = tally(false);
        let (mut action, mut overridden_by) = act(&now);
        let (mut would, _) = act(&tally(true));
        // The emergency exemption speaks only when it changes something: a call to 911 that
        // nothing flagged carries no reasons.
        let emergency = evidence.iter().any(|e| e.effect == Effect::EmergencyCallee)
            && (action != Action::Pass || would != Action::Pass);
        if emergency {
            (action, overridden_by, would) = (Action::Pass, Some("emergency"), Action::Pass);
        }
        let mut contributions: Vec<Contribution> = evidence
            .iter()
            .zip(&enforced)
            .filter(|(e, _)| emergency || e.effect != Effect::EmergencyCallee)
            .map(|(e, enf)| Contribution {
                score: e.score,
                enforced: *enf,
                reason: e.reason.clone(),
            })
            .collect();
        contributions.sort_by(|a, b| b.enforced.cmp(&a.enforced).then(b.score.cmp(&a.score)));
        Weighing {
            action,
            score: now.score,
            contributions,
            would_have: (would != action).then_some(would),
            overridden_by,
            tenant: tenant.map(|t| t.name.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::screening::evidence::{Signal, Source};
    use crate::screening::EntryAction;

    fn reason(source: Source, category: &str) -> Reason {
        Reason {
            source,
            entry: "+12027620143".into(),
            category: category.into(),
            reason: "test".into(),
        }
    }

    /// A list match as the engine turns it into evidence.
    fn lm(action: EntryAction, list: &str, category: &str) -> Evidence {
        let (score, effect) = match action {
            EntryAction::Allow => (0, Effect::Allows),
            EntryAction::Warn => (50, Effect::Scores),
            EntryAction::Block if category == "dno" => (100, Effect::DoNotOriginate),
            EntryAction::Block => (100, Effect::Scores),
        };
        Evidence {
            score,
            effect,
            reason: reason(Source::list(list), category),
        }
    }

    fn sh(signal: Signal, score: i32, dno: bool) -> Evidence {
        Evidence {
            score,
            effect: if dno {
                Effect::DoNotOriginate
            } else {
                Effect::Scores
            },
            reason: reason(Source::Signal(signal), signal.name()),
        }
    }

    fn policy() -> Scoring {
        Scoring::new(PolicyConfig {
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
    }

    #[test]
    fn decisions_table() {
        use Action::*;
        use EntryAction as E;
        type Case = (
            Vec<Evidence>,
            Vec<Evidence>,
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
                vec![
                    sh(Signal::Stir, 20, false),
                    sh(Signal::Neighbour, 50, false),
                ],
                None,
                None,
                Warn,
                70,
                None,
                None,
            ),
            (
                vec![],
                vec![
                    sh(Signal::Velocity, 50, false),
                    sh(Signal::Brand, 50, false),
                ],
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
                vec![sh(Signal::Velocity, 100, false)],
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
                vec![sh(Signal::Dno, 100, true)],
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
                vec![sh(Signal::Wangiri, 100, false), sh(Signal::Stir, 20, false)],
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
                vec![
                    sh(Signal::Stir, 20, false),
                    sh(Signal::Neighbour, 25, false),
                ],
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
                vec![sh(Signal::Velocity, 50, false)],
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
            let evidence: Vec<Evidence> = lists.iter().chain(hits).cloned().collect();
            let d = p.weigh(
                &evidence,
                &Tenancy {
                    callee: *callee,
                    peer: *peer,
                },
            );
            assert_eq!(
                (d.action, d.score, d.would_have, d.overridden_by),
                (*action, *score, *would, *over),
                "case {i}: {d:?}"
            );
            assert_eq!(d.contributions.len(), lists.len() + hits.len(), "case {i}");
            assert_eq!(
                d.enforced().count(),
                d.contributions.iter().filter(|c| c.enforced).count(),
                "case {i}"
            );
        }
    }

    #[test]
    fn challenge_sits_between_warn_and_block() {
        use Action::*;
        let p = Scoring::new(PolicyConfig {
            challenge_at: 70,
            tenants: vec![TenantConfig {
                name: "acme".into(),
                callee_prefixes: vec!["+4420794".into()],
                never_block: true,
                ..TenantConfig::default()
            }],
            ..PolicyConfig::default()
        });
        let challenge_entry = |action: EntryAction| Evidence {
            effect: Effect::Challenges,
            ..lm(action, "suspects", "challenge")
        };
        // (evidence, callee, action, overridden by)
        type Case = (
            Vec<Evidence>,
            Option<&'static str>,
            Action,
            Option<&'static str>,
        );
        let cases: Vec<Case> = vec![
            (vec![sh(Signal::Stir, 60, false)], None, Warn, None),
            (vec![sh(Signal::Stir, 70, false)], None, Challenge, None),
            (vec![sh(Signal::Stir, 99, false)], None, Challenge, None),
            (vec![sh(Signal::Stir, 100, false)], None, Block, None),
            // An entry in category `challenge` challenges at any action ...
            (
                vec![challenge_entry(EntryAction::Warn)],
                None,
                Challenge,
                None,
            ),
            (
                vec![challenge_entry(EntryAction::Block)],
                None,
                Challenge,
                None,
            ),
            (
                vec![
                    challenge_entry(EntryAction::Block),
                    sh(Signal::Velocity, 50, false),
                ],
                None,
                Challenge,
                None,
            ),
            // ... unless the rest blocks on its own, or an allow or DNO decides.
            (
                vec![
                    challenge_entry(EntryAction::Warn),
                    sh(Signal::Velocity, 100, false),
                ],
                None,
                Block,
                None,
            ),
            (
                vec![
                    challenge_entry(EntryAction::Warn),
                    lm(EntryAction::Allow, "allow", "customer"),
                ],
                None,
                Pass,
                Some("allow"),
            ),
            (
                vec![
                    challenge_entry(EntryAction::Warn),
                    sh(Signal::Dno, 100, true),
                ],
                None,
                Block,
                Some("dno"),
            ),
            // A tenant that never blocks never challenges.
            (
                vec![challenge_entry(EntryAction::Warn)],
                Some("+442079450000"),
                Warn,
                Some("never-block"),
            ),
        ];
        for (i, (evidence, callee, action, over)) in cases.iter().enumerate() {
            let d = p.weigh(
                evidence,
                &Tenancy {
                    callee: *callee,
                    peer: None,
                },
            );
            assert_eq!(
                (d.action, d.overridden_by),
                (*action, *over),
                "case {i}: {d:?}"
            );
        }
        // Off by default: the same score warns.
        let off = Scoring::new(PolicyConfig::default());
        let d = off.weigh(&[sh(Signal::Stir, 70, false)], &Tenancy::default());
        assert_eq!(d.action, Warn);
        let bad = PolicyConfig {
            challenge_at: 120,
            ..PolicyConfig::default()
        };
        assert_eq!(
            bad.validate(),
            ["policy.challenge_at 120: expected 0 (off) or warn_at <= challenge_at <= block_at (50 to 100)"]
        );
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
            let d = p.weigh(&[], &Tenancy { callee, peer });
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
            assert_eq!(cfg.validate().len(), 1, "case {i}");
        }
        assert_eq!(PolicyConfig::default().validate(), Vec::<String>::new());
    }
}
