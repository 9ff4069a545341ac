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
        (
            "neighbour and a brand claim add up",
            Call {
                caller: "020 7183 8751",
                name: Some("Amazon"),
                ..call
            },
            Action::Block,
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
