//! Table tests of `evaluate` with every signal on, over real number shapes.

use std::collections::HashMap;
use std::sync::Arc;

use p256::ecdsa::SigningKey;

use super::brands::Brands;
use super::stir::{sign_identity, CertLookup, CertState, TrustedCert};
use super::wangiri::CallEnd;
use super::*;

const BRANDS: &str = include_str!("../../../config/brands.toml");
const NOW_MS: u64 = 1_790_000_000_000;
const X5U: &str = "http://cert.example.net/sp.pem";

struct Certs(HashMap<String, CertState>);
impl CertLookup for Certs {
    fn lookup(&self, x5u: &str) -> CertState {
        self.0.get(x5u).cloned().unwrap_or(CertState::Pending)
    }
}

fn signer() -> SigningKey {
    SigningKey::from_bytes(&[3u8; 32].into()).unwrap()
}

fn state(cfg: SignalsConfig) -> SignalState {
    let brands = Arc::new(Brands::from_toml(BRANDS, "config/brands.toml").unwrap());
    let cert = TrustedCert {
        key: *signer().verifying_key(),
        not_before: 0,
        not_after: i64::MAX,
        subject: "CN=test SP".into(),
        anchor: "CN=test root".into(),
    };
    let certs = Certs(HashMap::from([(
        X5U.to_string(),
        CertState::Ready(Arc::new(cert)),
    )]));
    SignalState::new(cfg, brands, Arc::new(certs))
}

fn passport(attest: &str, orig: &str, dest: &str) -> String {
    let d = |s: &str| s.trim_start_matches('+').to_string();
    let claims = format!(
        "{{\"attest\":\"{attest}\",\"dest\":{{\"tn\":[\"{}\"]}},\"iat\":{},\"orig\":{{\"tn\":\"{}\"}},\"origid\":\"8f0c3a3e-5b7e-4a4e-9d55-0e2f3c1b7a10\"}}",
        d(dest),
        NOW_MS / 1000,
        d(orig)
    );
    sign_identity(&signer(), X5U, &claims, false)
}

fn signals_of(e: &Evaluation) -> Vec<(&'static str, String)> {
    let mut v: Vec<_> = e
        .hits
        .iter()
        .filter(|h| h.score != 0)
        .map(|h| {
            (
                h.signal_kind().map_or("?", Signal::name),
                h.reason.entry.clone(),
            )
        })
        .collect();
    v.sort();
    v
}

/// One call at a time against a fresh state: which signals fire, with which entry.
#[test]
fn single_calls_table() {
    let gb = SignalsConfig {
        plausibility: PlausibilityConfig {
            home_countries: vec!["GB".into(), "US".into()],
            ..PlausibilityConfig::default()
        },
        ..SignalsConfig::default()
    };
    let a_us = passport("A", "+12027620143", "+12027629876");
    let b_us = passport("B", "+12027620143", "+12027629876");
    type Case<'a> = (SignalInput<'a>, &'a [(&'a str, &'a str)]);
    let base = SignalInput {
        call_id: "c1",
        source: Some("192.0.2.10"),
        ..Default::default()
    };
    let cases: Vec<Case<'_>> = vec![
        (
            SignalInput {
                caller: Some("+442071838750"),
                callee: Some("+447911123456"),
                ..base
            },
            &[],
        ),
        // Brand impersonation, and Do-Not-Originate.
        (
            SignalInput {
                caller: Some("+447911123456"),
                callee: Some("+442071838750"),
                display_name: Some("Micr0soft Support"),
                ..base
            },
            &[("brand", "Microsoft")],
        ),
        (
            SignalInput {
                caller: Some("+61412345678"),
                callee: Some("+61291234567"),
                display_name: Some("AMAZ0N  refunds"),
                ..base
            },
            &[("brand", "Amazon")],
        ),
        (
            SignalInput {
                caller: Some("+18006427676"),
                callee: Some("+12125550000"),
                ..base
            },
            &[("dno", "+18006427676")],
        ),
        // Implausible caller ids, per country.
        (
            SignalInput {
                caller: Some("+12125550123"),
                callee: Some("+14165550000"),
                ..base
            },
            &[("plausibility", "+12125550123")],
        ),
        (
            SignalInput {
                caller: Some("+447700900123"),
                callee: Some("+442071838750"),
                ..base
            },
            &[("plausibility", "+447700900123")],
        ),
        (
            SignalInput {
                caller: Some("+34112345678"),
                callee: Some("+34912345678"),
                ..base
            },
            &[("plausibility", "+34112345678")],
        ),
        (
            SignalInput {
                caller: Some("+61255501234"),
                callee: Some("+61412345678"),
                ..base
            },
            &[("plausibility", "+61255501234")],
        ),
        (
            SignalInput {
                caller: Some("+49030123456"),
                callee: Some("+4930654321"),
                ..base
            },
            &[("plausibility", "+49030123456")],
        ),
        (
            SignalInput {
                caller: None,
                caller_raw: Some("12345678901234567890"),
                callee: Some("+4930654321"),
                ..base
            },
            &[("plausibility", "12345678901234567890")],
        ),
        // A GB number from an international gateway; a US one is left to STIR.
        (
            SignalInput {
                caller: Some("+442071838750"),
                callee: Some("+447911123456"),
                from_international_gateway: true,
                peer: Some("intl-gw"),
                ..base
            },
            &[("gateway", "+442071838750")],
        ),
        (
            SignalInput {
                caller: Some("+13129420143"),
                callee: Some("+447911123456"),
                from_international_gateway: true,
                ..base
            },
            &[],
        ),
        // Neighbour spoofing: unattested or B is flagged, A is not.
        (
            SignalInput {
                caller: Some("+12027620143"),
                callee: Some("+12027629876"),
                ..base
            },
            &[("neighbour", "+12027620143")],
        ),
        (
            SignalInput {
                caller: Some("+12027620143"),
                callee: Some("+12027629876"),
                identity: Some(&b_us),
                ..base
            },
            &[("neighbour", "+12027620143"), ("stir", "attest=B")],
        ),
        (
            SignalInput {
                caller: Some("+12027620143"),
                callee: Some("+12027629876"),
                identity: Some(&a_us),
                ..base
            },
            &[],
        ),
        // A forged PASSporT: the caller is not orig.tn.
        (
            SignalInput {
                caller: Some("+12027620199"),
                callee: Some("+12027629876"),
                identity: Some(&a_us),
                ..base
            },
            &[("neighbour", "+12027620199"), ("stir", "438")],
        ),
    ];
    for (i, (input, want)) in cases.iter().enumerate() {
        let s = state(gb.clone());
        let e = evaluate(input, &s, NOW_MS);
        let want: Vec<(&str, String)> = want.iter().map(|(a, b)| (*a, b.to_string())).collect();
        assert_eq!(signals_of(&e), want, "case {i}: {:#?}", e.hits);
    }
}

#[test]
fn velocity_wangiri_and_reports_build_up_over_calls() {
    let s = state(SignalsConfig::default());
    // A caller sprays 40 callees in 40 seconds, each cancelled after two seconds of ringing.
    let mut last = None;
    for i in 0..40u64 {
        let id = format!("spray-{i}");
        let callee = format!("+4930123{i:04}");
        let input = SignalInput {
            call_id: &id,
            caller: Some("+2693591000"),
            callee: Some(&callee),
            ..Default::default()
        };
        let t = NOW_MS + i * 1000;
        last = Some(evaluate(&input, &s, t));
        s.call_ended(&id, CallEnd::Cancelled, t + 2_000);
    }
    let e = last.unwrap();
    let by = |name: &str| {
        e.hits
            .iter()
            .find(|h| h.reason.source == name)
            .map(|h| h.score)
    };
    assert_eq!(by("velocity"), Some(100), "{:#?}", e.hits);
    assert_eq!(by("wangiri"), Some(100), "{:#?}", e.hits);
    assert_eq!(s.calls_tracked(), 0);

    // A question about the number sees its wangiri history and counts as no call, however
    // often it is asked.
    for i in 0..100u64 {
        let q = SignalInput {
            call_id: "check",
            caller: Some("+2693591000"),
            callee: Some("+493012300001"),
            question: true,
            ..Default::default()
        };
        let e = evaluate(&q, &s, NOW_MS + 41_000 + i);
        assert!(
            e.hits.iter().all(|h| h.reason.source != "velocity"),
            "{:#?}",
            e.hits
        );
        assert!(
            e.hits.iter().any(|h| h.reason.source == "wangiri"),
            "{:#?}",
            e.hits
        );
    }
    assert_eq!(s.calls_tracked(), 0);

    // Reports: one reporter is not enough, three distinct ones promote to warn. The promotion
    // is enforced as a store-list entry by the app, so it adds no signal hit of its own (that
    // would count the same evidence twice).
    let r = |reporter: &str| Report {
        caller: "+447911123456".into(),
        callee: Some(reporter.into()),
        category: "scam".into(),
        reporter: reporter.into(),
        at: (NOW_MS / 1000) as i64,
        source: report_book::ReportSource::Sip607,
    };
    let now = (NOW_MS / 1000) as i64;
    for _ in 0..5 {
        assert!(s.report(&r("+442071838751"), now).is_none());
    }
    assert!(s.report(&r("+442071838752"), now).is_none());
    let p = s.report(&r("+442071838753"), now).expect("promoted");
    assert_eq!(p.action, crate::screening::Action::Warn);
    assert!(
        p.evidence.contains("3 distinct reporters"),
        "{}",
        p.evidence
    );
    assert_eq!(s.reports().lookup("+447911123456", now), Some(p));
    let input = SignalInput {
        call_id: "r1",
        caller: Some("+447911123456"),
        callee: Some("+442071838750"),
        ..Default::default()
    };
    assert!(evaluate(&input, &s, NOW_MS)
        .hits
        .iter()
        .all(|h| h.reason.source != "reports"));
}

#[test]
fn concurrency_is_released_by_end_events_and_by_the_call_cap() {
    let cfg = SignalsConfig {
        max_calls: 64,
        ..SignalsConfig::default()
    };
    let s = state(cfg);
    for i in 0..10_000u64 {
        let id = format!("leak-{i}");
        let input = SignalInput {
            call_id: &id,
            caller: Some("+61291234567"),
            callee: Some("+61412345678"),
            ..Default::default()
        };
        evaluate(&input, &s, NOW_MS + i * 60_000);
    }
    // No end events at all: the call table stays capped and concurrency does not climb forever.
    assert!(s.calls_tracked() <= 64 + 16, "{}", s.calls_tracked());
    let input = SignalInput {
        call_id: "last",
        caller: Some("+61291234567"),
        callee: Some("+61412345678"),
        ..Default::default()
    };
    let e = evaluate(&input, &s, NOW_MS + 10_001 * 60_000);
    assert!(
        e.hits
            .iter()
            .all(|h| !h.reason.reason.contains("concurrent-calls 10")),
        "{:#?}",
        e.hits
    );
}

#[test]
fn config_sections_parse_and_refuse_unknown_fields() {
    let text = r#"
[signals]
max_calls = 1000
[signals.stir]
max_age_secs = 30
score_failed = 80
[signals.velocity]
prefix_digits = 6
[signals.velocity.caller]
per_second = [2, 5]
concurrent = [0, 40]
[signals.wangiri]
max_ring_secs = 4
number = [3, 9]
[signals.reports]
warn_reporters = 2
[signals.plausibility]
home_countries = ["GB"]
[signals.dno]
numbers = ["+442079460999"]

[policy]
warn_at = 40
log_only = ["wangiri"]
[[policy.tenant]]
name = "acme"
callee_prefixes = ["+4420794600"]
never_block = true
"#;
    #[derive(serde::Deserialize)]
    struct File {
        signals: SignalsConfig,
        policy: crate::screening::PolicyConfig,
    }
    let f: File = toml::from_str(text).unwrap();
    assert_eq!(f.signals.stir.max_age_secs, 30);
    assert_eq!(f.signals.stir.score_b, StirConfig::default().score_b);
    assert_eq!(
        f.signals.velocity.caller.per_second,
        velocity::Level::new(2, 5)
    );
    assert_eq!(
        f.signals.velocity.caller.concurrent,
        velocity::Level {
            warn: None,
            block: Some(40)
        }
    );
    // Measures and key kinds left out keep their own defaults.
    assert_eq!(
        f.signals.velocity.caller.per_minute,
        VelocityConfig::default().caller.per_minute
    );
    assert_eq!(f.signals.velocity.prefix, VelocityConfig::default().prefix);
    assert_eq!(
        (
            f.signals.wangiri.max_ring_secs,
            f.signals.reports.warn_reporters
        ),
        (4, 2)
    );
    assert_eq!(f.signals.wangiri.number, velocity::Level::new(3, 9));
    assert_eq!(
        f.policy.tenants[0].callee_prefixes,
        vec!["+4420794600".to_string()]
    );
    assert_eq!(f.policy.validate(), Vec::<String>::new());
    for bad in [
        "[signals]\nmax_callz = 1\n",
        "[signals.stir]\nmax_age = 1\n",
        "[policy]\nwarn = 1\n",
        "[signals.velocity.caller]\nper_hour = [1, 2]\n",
        "[signals.velocity]\nwindow = 1\n",
    ] {
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct Loose {
            #[serde(default)]
            signals: Option<SignalsConfig>,
            #[serde(default)]
            policy: Option<crate::screening::PolicyConfig>,
        }
        let e = toml::from_str::<Loose>(bad).unwrap_err();
        assert!(e.to_string().contains("unknown field"), "{bad}: {e}");
    }
}

fn neighbour_score(e: &Evaluation) -> Option<(i32, String)> {
    e.hits
        .iter()
        .find(|h| h.signal_kind() == Some(Signal::Neighbour))
        .map(|h| (h.score, h.reason.category.clone()))
}

/// Genuine neighbours in every country look like neighbour spoofing unless the path the call
/// took would have attested them: alone, the rule may only warn where the origin signs.
#[test]
fn neighbour_spoofing_counts_only_where_the_origin_signs() {
    let s = state(SignalsConfig::default());
    let cfg = PlausibilityConfig::default();
    // Genuine neighbours in each country, from an origin never seen to sign.
    for (caller, callee) in [
        ("+12027620143", "+12027629876"),
        ("+14165550199", "+14165551234"),
        ("+442071838750", "+442071831234"),
        ("+493012345678", "+493012341111"),
        ("+34912345678", "+34912341111"),
        ("+61298765432", "+61298761111"),
    ] {
        let input = SignalInput {
            call_id: caller,
            caller: Some(caller),
            callee: Some(callee),
            source: Some("10.0.0.9"),
            ..Default::default()
        };
        let e = evaluate(&input, &s, NOW_MS);
        assert_eq!(
            neighbour_score(&e),
            Some((cfg.score_neighbour_unsigned, "spoofed".into())),
            "{caller} -> {callee}"
        );
        assert!(cfg.score_neighbour_unsigned < crate::screening::PolicyConfig::default().warn_at);
    }

    // A core that signs its calls: after enough attested calls, an unattested neighbour from
    // it is evidence on its own.
    let verstat = Some("TN-Validation-Passed");
    for i in 0..cfg.signing_origin_min_calls {
        let id = format!("attested-{i}");
        let input = SignalInput {
            call_id: &id,
            caller: Some("+13125550100"),
            callee: Some("+12065550100"),
            source: Some("192.0.2.1"),
            verstat,
            from_trusted_peer: true,
            ..Default::default()
        };
        evaluate(&input, &s, NOW_MS + u64::from(i));
    }
    let spoof = SignalInput {
        call_id: "spoof",
        caller: Some("+12027620143"),
        callee: Some("+12027629876"),
        source: Some("192.0.2.1"),
        ..Default::default()
    };
    let e = evaluate(&spoof, &s, NOW_MS + 100);
    assert_eq!(
        neighbour_score(&e),
        Some((cfg.score_neighbour, "spoofed".into()))
    );
    // An A attestation from it: a genuine neighbour, nothing to say.
    let genuine = SignalInput {
        call_id: "genuine",
        verstat,
        from_trusted_peer: true,
        ..spoof
    };
    assert_eq!(neighbour_score(&evaluate(&genuine, &s, NOW_MS + 101)), None);

    // Questions teach nothing: a fresh origin asked about many times stays unknown.
    for i in 0..50 {
        let id = format!("q{i}");
        let q = SignalInput {
            call_id: &id,
            caller: Some("+13125550100"),
            callee: Some("+12065550100"),
            source: Some("192.0.2.77"),
            verstat,
            question: true,
            ..Default::default()
        };
        evaluate(&q, &s, NOW_MS);
    }
    let from_asked = SignalInput {
        source: Some("192.0.2.77"),
        call_id: "after-questions",
        ..spoof
    };
    assert_eq!(
        neighbour_score(&evaluate(&from_asked, &s, NOW_MS + 102)),
        Some((cfg.score_neighbour_unsigned, "spoofed".into()))
    );
}

#[test]
fn an_unsigned_call_weighs_only_from_an_origin_that_signs() {
    let s = state(SignalsConfig::default());
    let stir = SignalsConfig::default().stir;
    let stir_score = |e: &Evaluation| {
        e.hits
            .iter()
            .find(|h| h.signal_kind() == Some(Signal::Stir))
            .map(|h| h.score)
    };
    let call = |id: &'static str, source: &'static str| SignalInput {
        call_id: id,
        caller: Some("+13125550100"),
        callee: Some("+12065550100"),
        source: Some(source),
        ..Default::default()
    };
    // Never seen, or a TDM interconnect whose calls never carry STIR: no evidence either way.
    assert_eq!(
        stir_score(&evaluate(&call("first", "192.0.2.1"), &s, NOW_MS)),
        None
    );
    for i in 0..40 {
        let id = format!("tdm-{i}");
        evaluate(
            &SignalInput {
                call_id: &id,
                ..call("", "192.0.2.2")
            },
            &s,
            NOW_MS,
        );
    }
    assert_eq!(
        stir_score(&evaluate(&call("tdm", "192.0.2.2"), &s, NOW_MS)),
        None
    );
    // A core that attests its calls: an unsigned one from it is weak evidence, like a C.
    for i in 0..40 {
        let id = format!("core-{i}");
        let signed = SignalInput {
            call_id: &id,
            verstat: Some("TN-Validation-Passed"),
            from_trusted_peer: true,
            ..call("", "192.0.2.1")
        };
        evaluate(&signed, &s, NOW_MS);
    }
    let e = evaluate(&call("unsigned", "192.0.2.1"), &s, NOW_MS);
    assert_eq!(stir_score(&e), Some(stir.score_absent_signing_origin));
    assert_eq!(stir.score_absent_signing_origin, stir.score_c);
    assert!(stir.score_absent_signing_origin < crate::screening::PolicyConfig::default().warn_at);
}

#[test]
fn the_callees_own_number_as_caller_is_always_suspect() {
    let s = state(SignalsConfig::default());
    for n in [
        "+12027620143",
        "+447911123456",
        "+4915112345678",
        "+61412345678",
    ] {
        let input = SignalInput {
            call_id: n,
            caller: Some(n),
            callee: Some(n),
            source: Some("10.0.0.9"),
            ..Default::default()
        };
        let e = evaluate(&input, &s, NOW_MS);
        assert_eq!(
            neighbour_score(&e),
            Some((
                PlausibilityConfig::default().score_own_number,
                "own-number".into()
            )),
            "{n}"
        );
    }
}

/// An attested call vouches that the caller owns its number: a claim of a brand that does call
/// its customers only adds to other evidence then, while a brand that never calls keeps its
/// full weight.
#[test]
fn an_attested_claim_of_a_calling_brand_is_weak_evidence() {
    let s = state(SignalsConfig::default());
    let brand_score = |name: &'static str, id: &'static str, attested: bool| {
        let input = SignalInput {
            call_id: id,
            caller: Some("+13125550100"),
            callee: Some("+12065550100"),
            display_name: Some(name),
            source: Some("192.0.2.1"),
            from_trusted_peer: true,
            verstat: attested.then_some("TN-Validation-Passed"),
            ..Default::default()
        };
        evaluate(&input, &s, NOW_MS)
            .hits
            .iter()
            .find(|h| h.signal_kind() == Some(Signal::Brand))
            .map(|h| h.score)
    };
    let cfg = SignalsConfig::default();
    assert_eq!(
        brand_score("Chase Fraud Dept", "a", false),
        Some(cfg.levels.warn)
    );
    assert_eq!(
        brand_score("Chase Fraud Dept", "b", true),
        Some(cfg.brands.score_attested_claim)
    );
    assert!(cfg.brands.score_attested_claim < crate::screening::PolicyConfig::default().warn_at);
    assert_eq!(
        brand_score("Microsoft Support", "c", true),
        Some(cfg.levels.block)
    );
}

/// With sharing on: a call is counted among its keys' deltas, which a drain hands over once;
/// totals installed for the caller decide while in force and fresh, and say so in the reason;
/// out of force (the breaker open) the agent's own counts decide again.
#[test]
fn fleet_totals_decide_while_in_force_and_the_local_counts_otherwise() {
    use super::shared::{Family, Totals};
    let mut cfg = SignalsConfig::default();
    cfg.velocity.caller.per_second = velocity::Level::default();
    cfg.velocity.caller.per_minute = velocity::Level::default();
    cfg.velocity.min_outcomes = 3;
    let mut s = state(cfg);
    let sharing = s.share_with_fleet(100);
    let call = |s: &SignalState, id: &str, callee: &str, at: u64| {
        let input = SignalInput {
            call_id: id,
            caller: Some("+13125550177"),
            callee: Some(callee),
            ..Default::default()
        };
        let e = evaluate(&input, s, at);
        e.hits
            .into_iter()
            .find(|h| h.reason.source == "velocity")
            .map(|h| (h.score, h.reason.reason))
    };
    assert_eq!(call(&s, "a", "+16175550001", NOW_MS), None);
    let deltas = s.drain_shared();
    let caller = deltas
        .iter()
        .find(|d| d.family == Family::Caller)
        .expect("the caller's deltas");
    assert_eq!(&*caller.key, "+13125550177");
    assert_eq!(caller.pending.callees.len(), 1);
    assert!(s.drain_shared().is_empty(), "handed over once");
    // The fleet saw 9 distinct callees of this caller, 8 unanswered, on 3 agents.
    let totals = Totals {
        callees: 9,
        tally: velocity::Tally {
            unanswered: 8,
            ..Default::default()
        },
        agents: 3,
        read_ms: NOW_MS + 100,
        ..Totals::default()
    };
    assert!(s.install_shared(Family::Caller, caller.token, totals));
    sharing.set_in_force(true, 1_000);
    // 9 + this call's callee: 10, the caller's warn level.
    let (score, reason) = call(&s, "b", "+16175550002", NOW_MS + 200).unwrap();
    assert_eq!(score, 50);
    assert_eq!(
        reason,
        "caller distinct-callees 10 (warn); of 8 recent calls with an outcome: 0 talked, 8 \
         unanswered; fleet: 10 distinct callees in 60 s, 8 calls with an outcome across 3 agents"
    );
    // The breaker opens: the agent's own two callees decide, and they are nothing.
    sharing.set_in_force(false, 1_000);
    assert_eq!(call(&s, "c", "+16175550003", NOW_MS + 300), None);
    // In force again but the view is stale: the same.
    sharing.set_in_force(true, 1_000);
    assert_eq!(call(&s, "d", "+16175550004", NOW_MS + 2_000), None);
}
