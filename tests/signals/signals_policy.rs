//! The whole decision for one call through the engine the proxy uses (`Engine::decide`): real
//! list entries, every signal on with the shipped `config/brands.toml`, tenants and log-only
//! sources.

use std::sync::Arc;

use p256::ecdsa::SigningKey;
use scamguard::screening::signals::brands::Brands;
use scamguard::screening::signals::stir::{sign_identity, CertLookup, CertState, TrustedCert};
use scamguard::screening::signals::wangiri::CallEnd;
use scamguard::screening::signals::{PlausibilityConfig, SignalState, SignalsConfig};
use scamguard::screening::{
    Action, Engine, Entry, EntryAction, IndexBuilder, Pattern, PolicyConfig, RuleIndex, Scoring,
    ScreeningConfig, ScreeningPolicy, TenantConfig, Verdict,
};

const NOW: i64 = 1_790_000_000;
const X5U: &str = "http://cert.example.net/sp.pem";

struct Certs(Arc<TrustedCert>);
impl CertLookup for Certs {
    fn lookup(&self, x5u: &str) -> CertState {
        if x5u == X5U {
            CertState::Ready(self.0.clone())
        } else {
            CertState::Pending
        }
    }
}

fn key() -> SigningKey {
    SigningKey::from_bytes(&[5u8; 32].into()).unwrap()
}

fn rules() -> RuleIndex {
    let mut b = IndexBuilder::new();
    for (list, p, a, cat) in [
        ("scam", "+447911123456", "block", "scam"),
        ("scam", "+4479111234XX", "warn", "robocall"),
        ("allow", "+447700123456", "allow", "customer"),
        ("partner-feed", "+34612345678", "block", "scam"),
        ("do-not-originate", "+448001234567", "block", "dno"),
    ] {
        let entry = Entry {
            pattern: Pattern::parse(p).unwrap(),
            action: EntryAction::parse(a).unwrap(),
            category: cat.into(),
            reason: format!("{cat} entry"),
            source: "test".into(),
            expires: None,
        };
        b.add(list, &entry);
    }
    b.build()
}

struct World {
    rules: RuleIndex,
    engine: Engine,
}

const SOURCE: &str = "192.0.2.1";
const GATEWAY: &str = "192.0.2.99";

fn world() -> World {
    let brands_text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/brands.toml"))
            .unwrap();
    let brands = Arc::new(Brands::from_toml(&brands_text, "config/brands.toml").unwrap());
    let cert = TrustedCert {
        key: *key().verifying_key(),
        not_before: 0,
        not_after: i64::MAX,
        subject: "CN=SP".into(),
        anchor: "CN=root".into(),
    };
    let cfg = SignalsConfig {
        plausibility: PlausibilityConfig {
            home_countries: vec!["GB".into()],
            ..PlausibilityConfig::default()
        },
        ..SignalsConfig::default()
    };
    let scoring = Scoring::new(PolicyConfig {
        log_only: vec!["partner-feed".into()],
        tenants: vec![TenantConfig {
            name: "acme".into(),
            callee_prefixes: vec!["+4420794600".into()],
            never_block: true,
            ..TenantConfig::default()
        }],
        ..PolicyConfig::default()
    });
    World {
        rules: rules(),
        engine: Engine {
            screening: ScreeningPolicy::from_config(&ScreeningConfig {
                default_country: "GB".into(),
                ..ScreeningConfig::default()
            }),
            scoring,
            signals: SignalState::new(cfg, brands, Arc::new(Certs(Arc::new(cert)))),
            international_gateways: vec![GATEWAY.to_string()],
        },
    }
}

#[derive(Clone, Copy, Default)]
struct Call<'a> {
    id: &'a str,
    caller: &'a str,
    callee: &'a str,
    name: Option<&'a str>,
    identity: Option<&'a str>,
    gateway: bool,
}

fn decide(w: &World, c: Call<'_>, now_ms: u64) -> Verdict {
    let call = scamguard::screening::Call {
        id: c.id,
        caller: c.caller,
        callee: c.callee,
        display_name: c.name,
        source: Some(if c.gateway { GATEWAY } else { SOURCE }),
        identity: c.identity,
        live: true,
        ..Default::default()
    };
    w.engine.decide(&call, &w.rules, now_ms)
}

fn lists_of(v: &Verdict) -> Vec<&str> {
    let mut l: Vec<&str> = v.reasons.iter().map(|r| r.source.name()).collect();
    l.sort();
    l.dedup();
    l
}

#[test]
fn one_call_at_a_time() {
    let us_b = {
        let claims = format!(
            "{{\"attest\":\"B\",\"dest\":{{\"tn\":[\"12027629876\"]}},\"iat\":{NOW},\"orig\":{{\"tn\":\"12027620143\"}},\"origid\":\"0d8b5e2a-1111-4c4c-9a9a-123456789abc\"}}"
        );
        sign_identity(&key(), X5U, &claims, false)
    };
    let call = Call {
        id: "x",
        callee: "020 7183 8750",
        ..Call::default()
    };
    type Case<'a> = (&'a str, Call<'a>, Action, &'a [&'a str]);
    let cases: Vec<Case<'_>> = vec![
        (
            "clean national call",
            Call {
                caller: "07911 000111",
                ..call
            },
            Action::Pass,
            &[],
        ),
        (
            "listed scam number",
            Call {
                caller: "07911 123456",
                ..call
            },
            Action::Block,
            &["scam"],
        ),
        (
            "listed robocall range",
            Call {
                caller: "07911 123499",
                ..call
            },
            Action::Warn,
            &["scam"],
        ),
        (
            "Microsoft look-alike from a mobile",
            Call {
                caller: "07911 000111",
                name: Some("Micr0soft  Support"),
                ..call
            },
            Action::Block,
            &["brand"],
        ),
        (
            "Amazon claim warns",
            Call {
                caller: "07911 000111",
                name: Some("AMAZ0N Refunds"),
                ..call
            },
            Action::Warn,
            &["brand"],
        ),
        (
            "brand inbound-only number calling",
            Call {
                caller: "+1 800 642 7676",
                ..call
            },
            Action::Block,
            &["dno", "policy"],
        ),
        (
            "DNO list entry calling",
            Call {
                caller: "0800 123 4567",
                ..call
            },
            Action::Block,
            &["do-not-originate", "policy"],
        ),
        (
            "allow entry beats a brand claim",
            Call {
                caller: "07700 123456",
                name: Some("Windows Support"),
                ..call
            },
            Action::Pass,
            &["allow", "brand", "policy"],
        ),
        (
            "log-only feed: would have blocked",
            Call {
                caller: "+34 612 345 678",
                ..call
            },
            Action::Pass,
            &["partner-feed", "policy"],
        ),
        (
            "emergency callee is never blocked",
            Call {
                caller: "07911 123456",
                callee: "999",
                ..call
            },
            Action::Pass,
            &["policy", "scam"],
        ),
        (
            "tenant that never blocks",
            Call {
                caller: "07911 123456",
                callee: "020 7946 0012",
                ..call
            },
            Action::Warn,
            &["policy", "scam"],
        ),
        (
            "GB number from an international gateway",
            Call {
                caller: "020 7183 1234",
                callee: "07911 000222",
                gateway: true,
                ..call
            },
            Action::Block,
            &["gateway"],
        ),
        (
            // A fictional range alone scores below the warn level (25 < 50).
            "Ofcom drama number",
            Call {
                caller: "07700 900123",
                ..call
            },
            Action::Pass,
            &["plausibility"],
        ),
        (
            "neighbour with B attestation",
            Call {
                caller: "+12027620143",
                callee: "+12027629876",
                identity: Some(&us_b),
                ..call
            },
            Action::Warn,
            &["neighbour", "stir"],
        ),
        // Where calls are not signed a neighbour is weak evidence (a genuine neighbour looks
        // the same): it adds to the brand claim but does not lift it to a block.
        (
            "neighbour and a brand claim add up",
            Call {
                caller: "020 7183 8751",
                name: Some("Amazon"),
                ..call
            },
            Action::Warn,
            &["brand", "neighbour"],
        ),
    ];
    for (i, (name, c, action, lists)) in cases.iter().enumerate() {
        let w = world();
        let id = format!("call-{i}");
        let v = decide(&w, Call { id: &id, ..*c }, NOW as u64 * 1000);
        assert_eq!(
            (v.action, lists_of(&v)),
            (*action, lists.to_vec()),
            "{name}: {}",
            v.to_json()
        );
    }
}

#[test]
fn a_caller_spraying_calls_goes_from_pass_to_warn_to_block() {
    let w = world();
    let mut seen = Vec::new();
    for i in 0..40u64 {
        let id = format!("spray-{i}");
        let callee = format!("020 7183 {:04}", 1000 + i);
        let t = NOW as u64 * 1000 + i * 500;
        let v = decide(
            &w,
            Call {
                id: &id,
                caller: "+49 30 1234567",
                callee: &callee,
                ..Call::default()
            },
            t,
        );
        seen.push(v.action);
        w.engine
            .signals
            .call_ended(&id, CallEnd::Cancelled, t + 1_500);
    }
    let first_warn = seen
        .iter()
        .position(|a| *a == Action::Warn)
        .expect("warned");
    let first_block = seen
        .iter()
        .position(|a| *a == Action::Block)
        .expect("blocked");
    assert_eq!(seen[0], Action::Pass);
    assert!(first_warn < first_block, "{seen:?}");
    assert!(
        seen[first_block..].iter().all(|a| *a == Action::Block),
        "{seen:?}"
    );
}

/// A Do-Not-Originate entry that arrives through a partner's feed (category `dno`, trust
/// `block`) blocks like the shipped list's, layered with the operator's own lists, and beats the
/// operator's allow entry for a wider prefix; whatever the display name says. Under
/// `block-as-warn` the partner's block is softened to a warning, DNO or not.
#[test]
fn a_feed_sourced_dno_entry_blocks() {
    use scamguard::lists::feeds::{build_index, FeedEntry, Trust};
    use scamguard::lists::overlay::Layered;
    use scamguard::screening::Rules;

    let entry = FeedEntry {
        pattern: "+442071830777".into(),
        action: "block".into(),
        category: "dno".into(),
        reason: "partner's inbound-only support line".into(),
        source: "https://partner.example/dno".into(),
        first_seen: 0,
        last_seen: 0,
        expires: None,
    };
    let own = {
        let mut b = IndexBuilder::new();
        let allow = Entry {
            pattern: Pattern::parse("+44207183*").unwrap(),
            action: EntryAction::parse("allow").unwrap(),
            category: "customer".into(),
            reason: "a customer's range".into(),
            source: "test".into(),
            expires: None,
        };
        b.add("allow", &allow);
        b.build()
    };
    let w = world();
    let feed = build_index("partner-dno", Trust::Block, [&entry]);
    let sources: [&dyn Rules; 2] = [&own, &feed];
    let layered = Layered { sources: &sources };
    let call = |id| scamguard::screening::Call {
        id,
        caller: "020 7183 0777",
        callee: "07911 000222",
        display_name: Some("Help Desk"),
        source: Some(SOURCE),
        live: true,
        ..Default::default()
    };
    let v = w
        .engine
        .decide(&call("feed-dno"), &layered, NOW as u64 * 1000);
    assert_eq!(v.action, Action::Block, "{}", v.to_json());
    let dno: Vec<_> = v
        .reasons
        .iter()
        .filter(|r| r.source.name() == "partner-dno")
        .collect();
    assert_eq!(dno.len(), 1, "{}", v.to_json());
    assert_eq!(dno[0].category, "dno");
    assert!(
        v.reasons
            .iter()
            .any(|r| (r.source.name(), r.entry.as_str()) == ("policy", "dno")),
        "the DNO override is named: {}",
        v.to_json()
    );

    let softened = build_index("partner-dno", Trust::BlockAsWarn, [&entry]);
    let v = w
        .engine
        .decide(&call("feed-dno-warn"), &softened, NOW as u64 * 1000);
    assert_eq!(v.action, Action::Warn, "{}", v.to_json());
}
