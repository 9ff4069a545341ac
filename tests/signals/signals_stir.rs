//! STIR/SHAKEN end to end: certificates generated here (rcgen), chains served by a local HTTP
//! or HTTPS server on 127.0.0.1:0, fetched by the certificate cache in the background, and
//! PASSporTs (valid, forged, stale, wrong caller, wrong chain, untrusted HTTPS server) checked
//! by the pure verifier.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::support::eventually;
use crate::support::stir_pki::*;

use p256::ecdsa::SigningKey;
use rcgen::{CertificateParams, CertifiedIssuer, KeyPair, PKCS_ECDSA_P256_SHA256};
use scamguard::certs::{load_anchors, CertCache, CertsConfig};
use scamguard::screening::signals::stir::{
    sign_identity, verify, Attest, CertLookup, CertState, StirConfig, StirInput,
};

struct Pki {
    root_pem: String,
    /// leaf + intermediate, as an x5u serves them
    chain_pem: String,
    leaf_key: SigningKey,
    /// a leaf whose chain ends in a root nobody trusts
    rogue_chain_pem: String,
    rogue_key: SigningKey,
}

fn pki() -> Pki {
    let alg = &PKCS_ECDSA_P256_SHA256;
    let root =
        CertifiedIssuer::self_signed(ca("SHAKEN test root"), KeyPair::generate_for(alg).unwrap())
            .unwrap();
    let inter = CertifiedIssuer::signed_by(
        ca("SHAKEN test STI-CA"),
        KeyPair::generate_for(alg).unwrap(),
        &root,
    )
    .unwrap();
    let leaf_kp = KeyPair::generate_for(alg).unwrap();
    let leaf_cert = leaf("SHAKEN test SP 1234")
        .signed_by(&leaf_kp, &inter)
        .unwrap();

    let rogue_root =
        CertifiedIssuer::self_signed(ca("SHAKEN test root"), KeyPair::generate_for(alg).unwrap())
            .unwrap();
    let rogue_kp = KeyPair::generate_for(alg).unwrap();
    let rogue_leaf = leaf("SHAKEN rogue SP")
        .signed_by(&rogue_kp, &rogue_root)
        .unwrap();
    Pki {
        root_pem: root.pem(),
        chain_pem: format!("{}{}", leaf_cert.pem(), inter.pem()),
        leaf_key: p256_of(&leaf_kp),
        rogue_chain_pem: rogue_leaf.pem(),
        rogue_key: p256_of(&rogue_kp),
    }
}

/// A web CA (not a STIR anchor) and a server certificate it signed for 127.0.0.1, written as
/// `web.crt` and `web.key` in `dir`; returns the CA's PEM.
fn web_server_files(dir: &Path, ca_name: &str) -> String {
    let alg = &PKCS_ECDSA_P256_SHA256;
    let ca =
        CertifiedIssuer::self_signed(ca(ca_name), KeyPair::generate_for(alg).unwrap()).unwrap();
    let key = KeyPair::generate_for(alg).unwrap();
    let cert = CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    std::fs::write(dir.join("web.crt"), cert.pem()).unwrap();
    std::fs::write(dir.join("web.key"), key.serialize_pem()).unwrap();
    ca.pem()
}

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "scamguard-{tag}-{}-{}",
        std::process::id(),
        fastrand::u64(..)
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn claims(attest: &str, orig: &str, dest: &str, iat: i64) -> String {
    format!(
        "{{\"attest\":\"{attest}\",\"dest\":{{\"tn\":[\"{dest}\"]}},\"iat\":{iat},\"orig\":{{\"tn\":\"{orig}\"}},\"origid\":\"123e4567-e89b-12d3-a456-426655440000\"}}"
    )
}

/// Waits for the background fetcher to settle `url`; bounded so a broken fetcher fails the test.
async fn settled(cache: &CertCache, url: &str) -> CertState {
    let mut state = CertState::Pending;
    eventually(&format!("{url} is settled"), || {
        state = cache.lookup(url);
        let settled = !matches!(state, CertState::Pending);
        async move { settled }
    })
    .await;
    state
}

#[tokio::test]
async fn passports_against_fetched_chains() {
    let pki = pki();
    let base = serve(HashMap::from([
        ("/sp.pem", pki.chain_pem.clone()),
        ("/rogue.pem", pki.rogue_chain_pem.clone()),
    ]))
    .await;
    let anchors_dir = temp_dir("anchors");
    std::fs::write(anchors_dir.join("root.pem"), &pki.root_pem).unwrap();
    let cfg = CertsConfig {
        fetch_timeout_ms: 500,
        ..CertsConfig::default()
    };
    let (cache, fetcher) = CertCache::new(cfg, load_anchors(&anchors_dir).unwrap());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let worker = tokio::spawn(fetcher.run(async move {
        let _ = stop_rx.await;
    }));

    let good = format!("{base}/sp.pem");
    let rogue = format!("{base}/rogue.pem");
    let t = now();
    let caller = "+12027620143";
    let callee = "+442071838750";
    let check = |identity: &str, caller: &str| {
        let input = StirInput {
            identity: Some(identity),
            caller: Some(caller),
            callee: Some(callee),
            ..Default::default()
        };
        verify(&input, cache.as_ref(), &StirConfig::default(), now())
    };

    // Cold cache: the first call is not held up; it comes back pending and queues the fetch.
    let valid = sign_identity(
        &pki.leaf_key,
        &good,
        &claims("A", "12027620143", "442071838750", t),
        false,
    );
    let first = check(&valid, caller);
    assert_eq!(first.code(), None, "{first}");
    assert!(
        matches!(
            first,
            scamguard::screening::signals::stir::StirOutcome::Pending { .. }
        ),
        "{first}"
    );
    assert!(matches!(settled(&cache, &good).await, CertState::Ready(_)));

    type Case = (
        &'static str,
        String,
        &'static str,
        Option<Attest>,
        Option<u16>,
    );
    let cases: Vec<Case> = vec![
        ("valid A", valid.clone(), caller, Some(Attest::A), None),
        (
            "valid B",
            sign_identity(
                &pki.leaf_key,
                &good,
                &claims("B", "12027620143", "442071838750", t),
                false,
            ),
            caller,
            Some(Attest::B),
            None,
        ),
        (
            "forged: signed by a key the certificate does not hold",
            sign_identity(
                &pki.rogue_key,
                &good,
                &claims("A", "12027620143", "442071838750", t),
                false,
            ),
            caller,
            None,
            Some(438),
        ),
        (
            "stale iat",
            sign_identity(
                &pki.leaf_key,
                &good,
                &claims("A", "12027620143", "442071838750", t - 120),
                false,
            ),
            caller,
            None,
            Some(403),
        ),
        (
            "wrong orig.tn",
            valid.clone(),
            "+12027620199",
            None,
            Some(438),
        ),
        (
            "wrong chain: the root is not an anchor",
            sign_identity(
                &pki.rogue_key,
                &rogue,
                &claims("A", "12027620143", "442071838750", t),
                false,
            ),
            caller,
            None,
            Some(436),
        ),
        (
            "x5u answers 404",
            sign_identity(
                &pki.leaf_key,
                &format!("{base}/gone.pem"),
                &claims("A", "12027620143", "442071838750", t),
                false,
            ),
            caller,
            None,
            Some(436),
        ),
        (
            "x5u hangs past the timeout",
            sign_identity(
                &pki.leaf_key,
                &format!("{base}/hang"),
                &claims("A", "12027620143", "442071838750", t),
                false,
            ),
            caller,
            None,
            Some(436),
        ),
        (
            "https x5u whose host does not resolve",
            sign_identity(
                &pki.leaf_key,
                "https://cert.example.invalid/sp.pem",
                &claims("A", "12027620143", "442071838750", t),
                false,
            ),
            caller,
            None,
            Some(436),
        ),
    ];
    for (name, identity, caller, attest, code) in &cases {
        // Let the background fetch of a new URL settle, then judge.
        if let Some(url) = identity
            .split("info=<")
            .nth(1)
            .and_then(|s| s.split('>').next())
        {
            let _ = cache.lookup(url);
            settled(&cache, url).await;
        }
        let o = check(identity, caller);
        assert_eq!(
            (o.attest(), o.code().map(|c| c.status())),
            (*attest, *code),
            "{name}: {o}"
        );
    }
    let stats = cache.stats();
    assert!(
        stats.hits.get() > 0 && stats.fetches.get() >= 5,
        "{stats:?}"
    );
    let _ = stop_tx.send(());
    worker.await.unwrap();
}

#[tokio::test]
async fn preloaded_chains_answer_without_network() {
    let pki = pki();
    let anchors_dir = temp_dir("anchors2");
    std::fs::write(anchors_dir.join("root.pem"), &pki.root_pem).unwrap();
    let preload_dir = temp_dir("preload");
    let url = "https://cert.example.invalid/sp.pem";
    std::fs::write(
        preload_dir.join("sp.pem"),
        format!("x5u: {url}\n{}", pki.chain_pem),
    )
    .unwrap();
    let cfg = CertsConfig {
        anchors_dir: Some(anchors_dir.display().to_string()),
        preload_dir: Some(preload_dir.display().to_string()),
        ..CertsConfig::default()
    };
    // No fetcher is running: the answer must come from the pre-loaded folder.
    let (cache, _fetcher) = CertCache::from_config(cfg).unwrap();
    let identity = sign_identity(
        &pki.leaf_key,
        url,
        &claims("A", "61291234567", "61412345678", now()),
        false,
    );
    let input = StirInput {
        identity: Some(&identity),
        caller: Some("+61291234567"),
        callee: Some("+61412345678"),
        ..Default::default()
    };
    let o = verify(&input, cache.as_ref(), &StirConfig::default(), now());
    assert_eq!(o.attest(), Some(Attest::A), "{o}");

    // A pre-loaded file without its URL line is refused with the file named.
    let bad_dir = temp_dir("preload-bad");
    std::fs::write(bad_dir.join("x.pem"), &pki.chain_pem).unwrap();
    let e = cache.preload_dir(&bad_dir).unwrap_err();
    assert!(e.contains("x.pem") && e.contains("x5u"), "{e}");
    // A chain that does not reach an anchor is refused too.
    assert!(cache
        .preload("http://rogue.invalid/x.pem", pki.rogue_chain_pem.as_bytes())
        .is_err());
}

#[tokio::test]
async fn an_expired_entry_keeps_answering_while_it_is_refreshed() {
    let pki = pki();
    let base = serve(HashMap::from([("/sp.pem", pki.chain_pem.clone())])).await;
    let anchors_dir = temp_dir("anchors3");
    std::fs::write(anchors_dir.join("root.pem"), &pki.root_pem).unwrap();
    // A zero TTL: every fetched chain is stale at once.
    let cfg = CertsConfig {
        ttl_secs: 0,
        fetch_timeout_ms: 500,
        ..CertsConfig::default()
    };
    let (cache, fetcher) = CertCache::new(cfg, load_anchors(&anchors_dir).unwrap());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let worker = tokio::spawn(fetcher.run(async move {
        let _ = stop_rx.await;
    }));
    let url = format!("{base}/sp.pem");
    assert!(matches!(cache.lookup(&url), CertState::Pending));
    assert!(matches!(settled(&cache, &url).await, CertState::Ready(_)));
    // Stale now: still answered from the cache, and a refresh is fetched in the background.
    assert!(matches!(cache.lookup(&url), CertState::Ready(_)));
    eventually("a refresh is fetched", || async {
        cache.stats().fetches.get() >= 2
    })
    .await;
    assert!(matches!(cache.lookup(&url), CertState::Ready(_)));
    let _ = stop_tx.send(());
    worker.await.unwrap();
}

#[tokio::test]
async fn https_x5u_is_fetched_from_a_server_the_roots_authenticate() {
    let pki = pki();
    let files = || HashMap::from([("/sp.pem", pki.chain_pem.clone())]);
    // Two HTTPS servers with the same chain: one certified by the configured web CA, one by a
    // CA nobody configured.
    let trusted_dir = temp_dir("web-trusted");
    let web_ca = web_server_files(&trusted_dir, "test web CA");
    let good = serve_tls(
        files(),
        &trusted_dir.join("web.crt"),
        &trusted_dir.join("web.key"),
    )
    .await;
    let rogue_dir = temp_dir("web-rogue");
    web_server_files(&rogue_dir, "test web CA");
    let rogue = serve_tls(
        files(),
        &rogue_dir.join("web.crt"),
        &rogue_dir.join("web.key"),
    )
    .await;
    let plain = serve(files()).await;

    let anchors_dir = temp_dir("anchors4");
    std::fs::write(anchors_dir.join("root.pem"), &pki.root_pem).unwrap();
    let roots_dir = temp_dir("https-roots");
    std::fs::write(roots_dir.join("web-ca.pem"), &web_ca).unwrap();
    let cfg = CertsConfig {
        anchors_dir: Some(anchors_dir.display().to_string()),
        https_roots: Some(roots_dir.display().to_string()),
        fetch_timeout_ms: 2_000,
        ..CertsConfig::default()
    };
    assert_eq!(cfg.validate(), Vec::<String>::new());
    let (cache, fetcher) = CertCache::from_config(cfg).unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let worker = tokio::spawn(fetcher.run(async move {
        let _ = stop_rx.await;
    }));
    let verdict = |url: &str| {
        let identity = sign_identity(
            &pki.leaf_key,
            url,
            &claims("A", "12027620143", "442071838750", now()),
            false,
        );
        let input = StirInput {
            identity: Some(&identity),
            caller: Some("+12027620143"),
            callee: Some("+442071838750"),
            ..Default::default()
        };
        let o = verify(&input, cache.as_ref(), &StirConfig::default(), now());
        (o.attest(), o.code().map(|c| c.status()))
    };
    // (server, the answer once the fetch settled)
    let cases = [
        (format!("{good}/sp.pem"), (Some(Attest::A), None)),
        (format!("{plain}/sp.pem"), (Some(Attest::A), None)),
        (format!("{rogue}/sp.pem"), (None, Some(436))),
    ];
    for (url, want) in &cases {
        let _ = cache.lookup(url);
        let state = settled(&cache, url).await;
        if let CertState::Failed(why) = &state {
            assert!(
                why.contains("TLS") && why.contains("certificate"),
                "{url}: {why}"
            );
        }
        assert_eq!(&verdict(url), want, "{url}");
    }
    let stats = cache.stats();
    assert_eq!(
        (stats.fetches.get(), stats.fetch_failures.get()),
        (3, 1),
        "{stats:?}"
    );
    let _ = stop_tx.send(());
    worker.await.unwrap();
}

#[test]
fn https_roots_folder_problems_are_config_errors() {
    let empty = temp_dir("roots-empty");
    let cfg = CertsConfig {
        https_roots: Some(empty.display().to_string()),
        ..CertsConfig::default()
    };
    let problems = cfg.validate();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].starts_with("certs.https_roots: ") && problems[0].contains("roots-empty"),
        "{problems:?}"
    );
    assert!(CertCache::from_config(cfg).is_err());
}
