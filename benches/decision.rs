//! The whole decision for one call with every signal on, through the engine the proxy uses
//! (`Engine::decide`): 100,000 list entries, STIR with a warm certificate cache, velocity,
//! wangiri, brands, DNO, plausibility, neighbour and reports, weighed by the scoring policy.
//!
//! Four figures: a call carrying a fresh SHAKEN PASSporT (dominated by one ES256 verification),
//! a call without an Identity header, the brand matcher alone over eight display names, and the
//! ES256 verification alone.
//! Run: `cargo bench --bench decision`.

use std::sync::Arc;

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use p256::pkcs8::DecodePrivateKey;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair,
    PKCS_ECDSA_P256_SHA256,
};
use scamguard::certs::{CertCache, CertsConfig};
use scamguard::screening::signals::brands::Brands;
use scamguard::screening::signals::certchain::Anchors;
use scamguard::screening::signals::stir::{self, sign_identity, StirConfig, StirInput};
use scamguard::screening::signals::wangiri::CallEnd;
use scamguard::screening::signals::{PlausibilityConfig, SignalState, SignalsConfig};
use scamguard::screening::{
    Call, Engine, Entry, EntryAction, IndexBuilder, Pattern, PolicyConfig, RuleIndex, Scoring,
    ScreeningConfig, ScreeningPolicy,
};

const X5U: &str = "http://cert.example.net/sp.pem";

fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

struct World {
    rules: RuleIndex,
    engine: Engine,
    cache: Arc<CertCache>,
    callers: Vec<String>,
    passports: Vec<String>,
    now: i64,
}

fn world() -> World {
    let alg = &PKCS_ECDSA_P256_SHA256;
    let mut root_p = CertificateParams::new(Vec::<String>::new()).unwrap();
    root_p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    root_p
        .distinguished_name
        .push(DnType::CommonName, "bench root");
    let root = CertifiedIssuer::self_signed(root_p, KeyPair::generate_for(alg).unwrap()).unwrap();
    let leaf_kp = KeyPair::generate_for(alg).unwrap();
    let mut leaf_p = CertificateParams::new(Vec::<String>::new()).unwrap();
    leaf_p
        .distinguished_name
        .push(DnType::CommonName, "bench SP");
    let leaf = leaf_p.signed_by(&leaf_kp, &root).unwrap();
    let mut anchors = Anchors::default();
    anchors.add_pem(root.pem().as_bytes(), "root").unwrap();
    let (cache, _fetcher) = CertCache::new(CertsConfig::default(), anchors);
    cache.preload(X5U, leaf.pem().as_bytes()).unwrap();
    let signer = p256::ecdsa::SigningKey::from_pkcs8_der(&leaf_kp.serialize_der()).unwrap();

    let mut rng = fastrand::Rng::with_seed(1);
    let mut b = IndexBuilder::new();
    for _ in 0..100_000 {
        let e = Entry {
            pattern: Pattern::parse(&format!("+447{:09}", rng.u32(0..1_000_000_000))).unwrap(),
            action: EntryAction::Block,
            category: "scam".into(),
            reason: "reported".into(),
            source: "bench".into(),
            expires: None,
        };
        b.add("scam", &e);
    }
    let brands_text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/brands.toml"))
            .unwrap();
    let brands = Arc::new(Brands::from_toml(&brands_text, "config/brands.toml").unwrap());
    let cfg = SignalsConfig {
        plausibility: PlausibilityConfig {
            home_countries: vec!["GB".into()],
            ..PlausibilityConfig::default()
        },
        ..SignalsConfig::default()
    };
    let now = now_unix();
    let callers: Vec<String> = (0..10_000)
        .map(|_| format!("+4479{:08}", rng.u32(0..100_000_000)))
        .collect();
    let passports = callers
        .iter()
        .take(1_000)
        .map(|c| {
            let claims = format!(
                "{{\"attest\":\"A\",\"dest\":{{\"tn\":[\"442071838750\"]}},\"iat\":{now},\"orig\":{{\"tn\":\"{}\"}},\"origid\":\"5c1f4a6e-0000-4000-8000-000000000001\"}}",
                &c[1..]
            );
            sign_identity(&signer, X5U, &claims, false)
        })
        .collect();
    World {
        rules: b.build(),
        engine: Engine {
            screening: ScreeningPolicy::from_config(&ScreeningConfig {
                default_country: "GB".into(),
                ..ScreeningConfig::default()
            }),
            scoring: Scoring::new(PolicyConfig::default()),
            signals: SignalState::new(cfg, brands, cache.clone()),
            international_gateways: Vec::new(),
        },
        cache,
        callers,
        passports,
        now,
    }
}

fn one_call(w: &World, i: usize, with_identity: bool) -> scamguard::screening::Action {
    let caller_s = &w.callers[i % if with_identity {
        w.passports.len()
    } else {
        w.callers.len()
    }];
    let id = format!("bench-{i}");
    let call = Call {
        id: &id,
        caller: caller_s,
        callee: "020 7183 8750",
        display_name: Some("Customer Services"),
        source: Some("192.0.2.44"),
        trusted: true,
        identity: with_identity.then(|| w.passports[i % w.passports.len()].as_str()),
        live: true,
        ..Call::default()
    };
    let now_ms = w.now as u64 * 1000 + (i as u64 % 50_000);
    let v = w.engine.decide(&call, &w.rules, now_ms);
    w.engine
        .signals
        .call_ended(&id, CallEnd::Answered { talk_ms: 60_000 }, now_ms);
    v.action
}

fn bench(c: &mut Criterion) {
    let w = world();
    let mut i = 0usize;
    c.bench_function(
        "decision/all signals, SHAKEN PASSporT verified (warm cert cache)",
        |b| {
            b.iter(|| {
                i += 1;
                black_box(one_call(&w, i, true))
            })
        },
    );
    c.bench_function("decision/all signals, no Identity header", |b| {
        b.iter(|| {
            i += 1;
            black_box(one_call(&w, i, false))
        })
    });
    let input = StirInput {
        identity: Some(&w.passports[0]),
        caller: Some(&w.callers[0]),
        callee: Some("+442071838750"),
        ..Default::default()
    };
    assert!(
        stir::verify(&input, w.cache.as_ref(), &StirConfig::default(), w.now)
            .attest()
            .is_some()
    );
    // The brand signal's own cost: one fold and one automaton pass per name, over the shipped
    // registry, for names that claim, names that nearly do, and names with no brand word.
    let brands_text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/brands.toml"))
            .unwrap();
    let brands = Brands::from_toml(&brands_text, "config/brands.toml").unwrap();
    let names = [
        "Customer Services",
        "Micr0s0ft Support",
        "Sarah Chase",
        "Chase Fraud Department",
        "Applebee's Grill",
        "HMRC Refunds",
        "Ｍｉｃｒｏｓｏｆｔ",
        "Polizei Betrugsdezernat",
    ];
    c.bench_function("brands/claimed alone, 8 names (shipped registry)", |b| {
        b.iter(|| {
            for n in names {
                black_box(brands.claimed(black_box(n)));
            }
        })
    });
    c.bench_function("stir/verify alone (ES256, warm cert cache)", |b| {
        b.iter(|| {
            black_box(stir::verify(
                &input,
                w.cache.as_ref(),
                &StirConfig::default(),
                w.now,
            ))
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
