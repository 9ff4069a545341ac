//! The engine over real list entries, with the signals off unless a case needs one: the list
//! precedence, anonymity, emergency callees, overrides and log-only sources, as one table.

use std::sync::Arc;

use super::*;
use crate::screening::entry::{Entry, EntryAction, Pattern};
use crate::screening::index::{IndexBuilder, RuleIndex};
use crate::screening::policy::ScreeningConfig;
use crate::screening::scoring::PolicyConfig;
use crate::screening::signals::brands::Brands;
use crate::screening::signals::stir::NoCertificates;
use crate::screening::signals::SignalsConfig;

const NOW_MS: u64 = 1_790_000_000_000;

fn rules() -> RuleIndex {
    index(&[
        ("scam", "+12025550143", "block", "scam"),
        ("scam", "+120255501XX", "warn", "robocall"),
        ("ok", "+12025550150", "allow", "partner"),
        ("premium", "+1900*", "warn", "premium-rate"),
        ("stir", "+13125550111", "warn", "robocall"),
    ])
}

/// An index of (list, pattern, action, category) entries.
fn index(entries: &[(&str, &str, &str, &str)]) -> RuleIndex {
    let mut b = IndexBuilder::new();
    for (list, p, a, cat) in entries {
        b.add(
            list,
            &Entry {
                pattern: Pattern::parse(p).unwrap(),
                action: EntryAction::parse(a).unwrap(),
                category: cat.to_string(),
                reason: format!("{cat} entry"),
                source: "test".into(),
                expires: None,
            },
        );
    }
    b.build()
}

/// Every signal off but DNO (with one configured number) and, when asked, STIR.
fn engine(anonymous: AnonymousPolicy, log_only: &[&str], stir: bool) -> Engine {
    let mut cfg = SignalsConfig::default();
    cfg.stir.enabled = stir;
    cfg.stir.score_absent = 0;
    cfg.velocity.enabled = false;
    cfg.wangiri.enabled = false;
    cfg.brands.enabled = false;
    cfg.plausibility.enabled = false;
    cfg.dno.numbers = vec!["+13125550100".into()];
    Engine {
        screening: ScreeningPolicy::from_config(&ScreeningConfig {
            anonymous,
            ..Default::default()
        }),
        scoring: Scoring::new(PolicyConfig {
            log_only: log_only.iter().map(|s| s.to_string()).collect(),
            ..PolicyConfig::default()
        }),
        signals: SignalState::new(
            cfg,
            Arc::new(Brands::from_toml("", "none").unwrap()),
            Arc::new(NoCertificates),
        ),
        international_gateways: Vec::new(),
    }
}

fn call<'a>(caller: &'a str, callee: &'a str, anonymous: bool) -> Call<'a> {
    Call {
        id: "t1",
        caller,
        callee,
        anonymous,
        ..Call::default()
    }
}

#[test]
fn verdict_table() {
    use AnonymousPolicy as A;
    use Refusal::*;
    // (caller, callee, anonymous, anonymous policy, action, refusal, reasons' sources)
    type Case<'a> = (
        &'a str,
        &'a str,
        bool,
        AnonymousPolicy,
        Action,
        Refusal,
        &'a [&'a str],
    );
    let cases: Vec<Case> = vec![
        (
            "+12025550143",
            "2025550100",
            false,
            A::Pass,
            Action::Block,
            Blocked,
            &["scam"],
        ),
        (
            "(202) 555-0143",
            "2025550100",
            false,
            A::Pass,
            Action::Block,
            Blocked,
            &["scam"],
        ),
        (
            "+12025550177",
            "2025550100",
            false,
            A::Pass,
            Action::Warn,
            Blocked,
            &["scam"],
        ),
        (
            "+19005550100",
            "2025550100",
            false,
            A::Pass,
            Action::Warn,
            Blocked,
            &["premium"],
        ),
        (
            "+12025550199",
            "2025550100",
            false,
            A::Pass,
            Action::Warn,
            Blocked,
            &["scam"],
        ),
        (
            "+14155550100",
            "2025550100",
            false,
            A::Pass,
            Action::Pass,
            Blocked,
            &[],
        ),
        // An allow entry beats the X-pattern, and says that it decided.
        (
            "+12025550150",
            "2025550100",
            false,
            A::Pass,
            Action::Pass,
            Blocked,
            &["ok", "policy"],
        ),
        // A Do-Not-Originate signal blocks whatever the score.
        (
            "+13125550100",
            "2025550100",
            false,
            A::Pass,
            Action::Block,
            Blocked,
            &["dno", "policy"],
        ),
        // Anonymity.
        (
            "anonymous",
            "2025550100",
            true,
            A::Pass,
            Action::Pass,
            Blocked,
            &[],
        ),
        (
            "anonymous",
            "2025550100",
            true,
            A::Warn,
            Action::Warn,
            Blocked,
            &["policy"],
        ),
        (
            "anonymous",
            "2025550100",
            true,
            A::Reject,
            Action::Block,
            AnonymityDisallowed,
            &["policy"],
        ),
        // Emergency callees are never blocked or warned: not by a list, not by the anonymity
        // rule, and not by a signal either.
        (
            "+12025550143",
            "911",
            false,
            A::Pass,
            Action::Pass,
            Blocked,
            &["scam", "policy", "policy"],
        ),
        (
            "anonymous",
            "9-1-1",
            true,
            A::Reject,
            Action::Pass,
            Blocked,
            &["policy", "policy", "policy"],
        ),
        (
            "+13125550100",
            "911",
            false,
            A::Pass,
            Action::Pass,
            Blocked,
            &["dno", "policy", "policy"],
        ),
        // Nothing to exempt: no reasons at all.
        (
            "+14155550100",
            "911",
            false,
            A::Pass,
            Action::Pass,
            Blocked,
            &[],
        ),
    ];
    let idx = rules();
    for (caller, callee, anon, ap, action, refusal, sources) in cases {
        let v = engine(ap, &[], false).decide(&call(caller, callee, anon), &idx, NOW_MS);
        let got: Vec<&str> = v.reasons.iter().map(|r| r.source.name()).collect();
        assert_eq!(
            (v.action, v.refusal, got.as_slice()),
            (action, refusal, sources),
            "{caller} -> {callee}: {v:?}"
        );
        if v.action == Action::Pass && !v.reasons.is_empty() {
            let last = v.reasons.last().unwrap();
            assert_eq!(
                (&last.source, last.category.as_str()),
                (&Source::Policy, "override"),
                "a pass with reasons says which override decided: {v:?}"
            );
        }
    }
}

#[test]
fn log_only_sources_are_shown_not_enforced() {
    let idx = rules();
    let v = engine(AnonymousPolicy::Pass, &["scam"], false).decide(
        &call("+12025550143", "2025550100", false),
        &idx,
        NOW_MS,
    );
    assert_eq!(v.action, Action::Pass, "{v:?}");
    assert!(v.reasons[0].reason.starts_with("(log-only +100) "), "{v:?}");
    assert_eq!(
        (v.reasons[1].category.as_str(), v.reasons[1].reason.as_str()),
        (
            "would-have",
            "log-only lists and signals would have made this call block"
        )
    );
}

#[test]
fn serialises_exactly() {
    let idx = rules();
    let e = engine(AnonymousPolicy::Pass, &[], false);
    let v = e.decide(&call("+1 202 555 0143", "2025550100", false), &idx, NOW_MS);
    assert_eq!(
        v.to_json(),
        r#"{"action":"block","caller":"+12025550143","reasons":[{"list":"scam","entry":"+12025550143","category":"scam","reason":"(+100) scam entry"}]}"#
    );
    let v = e.decide(&call("not a number", "", false), &idx, NOW_MS);
    assert_eq!(
        v.to_json(),
        r#"{"action":"pass","caller":"not a number","reasons":[]}"#
    );
}

/// Where a reason came from is a value: a list that happens to be called `stir` is a list, and
/// only the STIR signal's outcome reaches the verdict's `stir_failure`.
#[test]
fn sources_are_typed_and_the_stir_outcome_is_a_value() {
    let idx = rules();
    let e = engine(AnonymousPolicy::Pass, &[], true);
    let listed = e.decide(&call("+13125550111", "2025550100", false), &idx, NOW_MS);
    assert_eq!(listed.reasons[0].source, Source::list("stir"), "{listed:?}");
    assert_ne!(
        listed.reasons[0].source,
        Source::Signal(crate::screening::Signal::Stir)
    );
    assert_eq!(listed.stir_failure, None);

    let forged = Call {
        identity: Some("not-a-passport;info=<http://x.example/c.pem>;alg=ES256;ppt=shaken"),
        ..call("+14155550100", "2025550100", false)
    };
    let v = e.decide(&forged, &idx, NOW_MS);
    let stir = v
        .reasons
        .iter()
        .find(|r| r.source == Source::Signal(crate::screening::Signal::Stir))
        .expect("the STIR signal gives a reason");
    assert_eq!(
        v.stir_failure.map(StirCode::status).map(|s| s.to_string()),
        Some(stir.entry.clone()),
        "{v:?}"
    );
}

fn listed_index(numbers: &[(&str, &str)]) -> RuleIndex {
    let mut b = IndexBuilder::new();
    for (p, a) in numbers {
        b.add(
            "campaign",
            &Entry {
                pattern: Pattern::parse(p).unwrap(),
                action: EntryAction::parse(a).unwrap(),
                category: "scam".into(),
                reason: "campaign number".into(),
                source: "test".into(),
                expires: None,
            },
        );
    }
    b.build()
}

/// A number rotated inside a campaign's 100-block is warned for its listed neighbours; one next
/// to a single listed number passes, and so does a listed caller's own neighbour count.
#[test]
fn a_rotated_number_is_known_by_its_block() {
    let idx = listed_index(&[
        ("+14155550701", "block"),
        ("+14155550702", "block"),
        ("+14155550703", "warn"),
        ("+16175550701", "block"),
    ]);
    let e = engine(AnonymousPolicy::Pass, &[], false);
    let v = e.decide(&call("+14155550744", "2025550100", false), &idx, NOW_MS);
    assert_eq!(v.action, Action::Warn, "{v:?}");
    let r = &v.reasons[0];
    assert_eq!(
        (
            r.source.name(),
            r.entry.as_str(),
            r.category.as_str(),
            r.reason.as_str()
        ),
        (
            "blocks",
            "+141555507XX",
            "block-reputation",
            "(+50) 3 listed numbers in +1 415 555 07xx"
        )
    );
    let v = e.decide(&call("+16175550744", "2025550100", false), &idx, NOW_MS);
    assert_eq!((v.action, v.reasons.len()), (Action::Pass, 0), "{v:?}");
    // A listed number of the block is judged by its own entry alone.
    let v = e.decide(&call("+14155550703", "2025550100", false), &idx, NOW_MS);
    let got: Vec<&str> = v.reasons.iter().map(|r| r.source.name()).collect();
    assert_eq!(
        (v.action, got.as_slice()),
        (Action::Warn, &["campaign"][..])
    );
    // Log-only by its signal name.
    let e = engine(AnonymousPolicy::Pass, &["blocks"], false);
    let v = e.decide(&call("+14155550744", "2025550100", false), &idx, NOW_MS);
    assert_eq!(v.action, Action::Pass, "{v:?}");
    assert!(v.reasons[0].reason.starts_with("(log-only +50) 3 listed"));
}

/// Live calls the engine blocks for their numbers count against the block after the entries are
/// gone; questions and spoofed-number blocks never do.
#[test]
fn own_blocks_count_for_live_calls_only() {
    let campaign = listed_index(&[
        ("+14155550801", "block"),
        ("+14155550802", "block"),
        ("+14155550803", "block"),
        ("+13125550101", "block"),
    ]);
    let none = RuleIndex::empty();
    let e = engine(AnonymousPolicy::Pass, &[], false);
    let live = |caller: &'static str| Call {
        live: true,
        ..call(caller, "2025550100", false)
    };
    // Questions first: nothing is noted.
    for c in ["+14155550801", "+14155550802", "+14155550803"] {
        let v = e.decide(&call(c, "2025550100", false), &campaign, NOW_MS);
        assert_eq!(v.action, Action::Block);
    }
    let v = e.decide(&live("+14155550850"), &none, NOW_MS);
    assert_eq!(v.action, Action::Pass, "{v:?}");
    for c in ["+14155550801", "+14155550802", "+14155550803"] {
        assert_eq!(e.decide(&live(c), &campaign, NOW_MS).action, Action::Block);
    }
    let v = e.decide(&live("+14155550850"), &none, NOW_MS + 60_000);
    assert_eq!(v.action, Action::Warn, "{v:?}");
    assert_eq!(
        v.reasons[0].reason,
        "(+50) 3 numbers blocked here in +1 415 555 08xx"
    );
    // The configured DNO number +13125550100 is spoofed when it calls: blocking it (together
    // with a listed neighbour) says nothing of the block, so the block only holds the one
    // listed number blocked here.
    assert_eq!(
        e.decide(&live("+13125550100"), &none, NOW_MS).action,
        Action::Block
    );
    assert_eq!(
        e.decide(&live("+13125550101"), &campaign, NOW_MS).action,
        Action::Block
    );
    let v = e.decide(&live("+13125550150"), &none, NOW_MS);
    assert_eq!((v.action, v.reasons.len()), (Action::Pass, 0), "{v:?}");
}

/// The caller lists of [`rules`] plus callback entries: a listed tech-support line (block), a
/// refund range (warn) with one genuine number in it (allow), and a callback entry on the
/// emergency number's international form, which must never matter.
fn rules_with_callbacks() -> RuleIndex {
    index(&[
        ("scam", "+12025550143", "block", "scam"),
        (
            "callbacks",
            "+18005550199",
            "block",
            "callback-tech-support",
        ),
        ("callbacks", "+1888555*", "warn", "callback-refund"),
        ("callbacks", "+18885550100", "allow", "callback"),
        ("callbacks", "+1911*", "block", "callback"),
        ("callbacks", "+12025550143", "warn", "callback"),
    ])
}

fn outbound<'a>(caller: &'a str, callee: &'a str) -> Call<'a> {
    Call {
        outbound: true,
        live: true,
        source: Some("192.0.2.20"),
        ..call(caller, callee, false)
    }
}

#[test]
fn an_outbound_call_is_screened_by_its_callee_against_callback_entries() {
    let idx = rules_with_callbacks();
    let e = engine(AnonymousPolicy::Reject, &[], false);
    // (caller, callee, action, the entry named and its category)
    type Case<'a> = (&'a str, &'a str, Action, Option<(&'a str, &'a str)>);
    let cases: &[Case] = &[
        (
            "+14155550100",
            "+18005550199",
            Action::Block,
            Some(("+18005550199", "callback-tech-support")),
        ),
        (
            "+14155550100",
            "18005550199",
            Action::Block,
            Some(("+18005550199", "callback-tech-support")),
        ),
        (
            "+14155550100",
            "+18885550123",
            Action::Warn,
            Some(("+1888555*", "callback-refund")),
        ),
        // The genuine line inside the range is the operator's exception.
        (
            "+14155550100",
            "+18885550100",
            Action::Pass,
            Some(("+18885550100", "callback")),
        ),
        ("+14155550100", "+18005550100", Action::Pass, None),
        // Emergency numbers are never looked up, even with an entry on their E.164 form.
        ("+14155550100", "911", Action::Pass, None),
        ("+14155550100", "+1911", Action::Pass, None),
        // The caller is one of ours: its own listing and its anonymity count for nothing, and
        // an ordinary caller entry on the callee is not a callback entry.
        ("+12025550143", "+18005550100", Action::Pass, None),
        (
            "+14155550100",
            "+12025550143",
            Action::Warn,
            Some(("+12025550143", "callback")),
        ),
        (
            "",
            "+18885550123",
            Action::Warn,
            Some(("+1888555*", "callback-refund")),
        ),
    ];
    for (caller, callee, want, entry) in cases {
        let v = e.decide(&outbound(caller, callee), &idx, NOW_MS);
        assert_eq!(v.action, *want, "{caller} -> {callee}: {v:?}");
        let first = v
            .reasons
            .first()
            .map(|r| (r.entry.as_str(), r.category.as_str()));
        assert_eq!(first, *entry, "{caller} -> {callee}: {v:?}");
        if let Some(r) = v.reasons.first() {
            assert_eq!(
                r.source,
                Source::list("callbacks"),
                "typed: the list names it"
            );
        }
    }
    // The same numbers as an inbound call: the callback entries are not caller entries.
    let v = e.decide(&call("+18005550199", "+14155550100", false), &idx, NOW_MS);
    assert_eq!(v.action, Action::Pass, "{v:?}");
    let v = e.decide(&call("+12025550143", "+14155550100", false), &idx, NOW_MS);
    assert_eq!(
        (v.action, v.reasons[0].category.as_str()),
        (Action::Block, "scam")
    );
}

#[test]
fn a_log_only_callback_list_is_shown_not_enforced_and_counts_no_call() {
    let idx = rules_with_callbacks();
    let e = engine(AnonymousPolicy::Pass, &["callbacks"], false);
    let v = e.decide(&outbound("+14155550100", "+18005550199"), &idx, NOW_MS);
    assert_eq!(v.action, Action::Pass);
    assert!(v.reasons[0].reason.starts_with("(log-only +100)"), "{v:?}");
    assert!(
        v.reasons
            .iter()
            .any(|r| r.reason.contains("would have made this call block")),
        "{v:?}"
    );
}

#[test]
fn an_outbound_call_is_no_call_for_the_signals() {
    let idx = rules_with_callbacks();
    let mut e = engine(AnonymousPolicy::Pass, &[], false);
    let mut cfg = e.signals.config().clone();
    cfg.velocity.enabled = true;
    e.signals = SignalState::new(
        cfg,
        Arc::new(Brands::from_toml("", "none").unwrap()),
        Arc::new(NoCertificates),
    );
    e.decide(&outbound("+14155550100", "+18005550199"), &idx, NOW_MS);
    assert_eq!(e.signals.calls_tracked(), 0);
    let inbound = Call {
        live: true,
        ..call("+14155550100", "+18005550199", false)
    };
    e.decide(&inbound, &idx, NOW_MS);
    assert_eq!(
        e.signals.calls_tracked(),
        1,
        "the same call inbound is tracked"
    );
}

/// A caller's entry in category `challenge` challenges, a failed challenge weighs on the next
/// call, an emergency callee passes, and an outbound call is never challenged.
#[test]
fn challenge_entries_and_failed_challenges() {
    let rules = index(&[
        ("suspects", "+12025550171", "warn", "challenge"),
        ("suspects", "+12025550172", "block", "challenge"),
        ("callback", "+18005550199", "warn", "callback"),
        ("scam", "+12025550180", "warn", "robocall"),
    ]);
    let mut e = engine(AnonymousPolicy::Pass, &[], false);
    e.scoring = Scoring::new(PolicyConfig {
        challenge_at: 50,
        ..PolicyConfig::default()
    });
    let decide = |caller, callee| e.decide(&call(caller, callee, false), &rules, NOW_MS);
    assert_eq!(
        decide("+12025550171", "+12025550100").action,
        Action::Challenge
    );
    assert_eq!(
        decide("+12025550172", "+12025550100").action,
        Action::Challenge
    );
    assert_eq!(decide("+12025550171", "911").action, Action::Pass);
    // A warn entry scores challenge_at, but a subscriber dialling out is warned, not challenged.
    assert_eq!(
        decide("+12025550180", "+12025550100").action,
        Action::Challenge
    );
    let out = Call {
        outbound: true,
        ..call("+12025550100", "+18005550199", false)
    };
    assert_eq!(e.decide(&out, &rules, NOW_MS).action, Action::Warn);

    e.signals.challenge_failed("+12025550171", NOW_MS);
    let v = decide("+12025550171", "+12025550100");
    let failed = v
        .reasons
        .iter()
        .find(|r| r.source == Source::Signal(crate::screening::Signal::Challenge))
        .unwrap_or_else(|| panic!("{v:?}"));
    assert!(failed.reason.starts_with("(+25) "), "{}", failed.reason);
    assert_eq!(
        v.action,
        Action::Challenge,
        "75 with the entry: still challenged"
    );
}
