//! The signals beyond lists through SIP (issue 5, "Integration tests through SIP"): the real agent
//! from `app::start` on 127.0.0.1:0, the test playing the caller and the callee (the next hop)
//! over real UDP with raw SIP text, and a config built here with low thresholds where a signal
//! needs many calls. Each case checks the SIP outcome on the wire (status and Reason, or the
//! forwarded INVITE's caller name and verdict header) and the reason in the decision log or in
//! `/v1/check`.
//!
//! STIR/SHAKEN certificates and keys are generated here (rcgen) and the chain is served by a
//! local HTTP server; the trust anchor folder is written by the test. Knows nothing of the
//! agent's insides: only the config, the wire and the HTTP answers.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::support::agent::*;
use crate::support::http::{enc, get, metric, metrics};
use crate::support::stir_pki::*;
use crate::support::{eventually, root};
use p256::ecdsa::SigningKey;
use rcgen::{CertifiedIssuer, KeyPair, PKCS_ECDSA_P256_SHA256};
use scamguard::app::config::Config;
use scamguard::screening::signals::stir::sign_identity;
use scamguard::screening::signals::velocity::Level;
use serde_json::Value;

const CALLEE: &str = "+12025550100";
const TOKEN: &str = "signals-sip-read-token-0123456789";

/// The decision log line of `call_id`; exactly one per call.
fn logged<'a>(log: &'a [Value], call_id: &str) -> &'a Value {
    let mine: Vec<&Value> = log.iter().filter(|l| l["call_id"] == call_id).collect();
    assert_eq!(mine.len(), 1, "one decision for {call_id}: {log:#?}");
    mine[0]
}

/// The reasons of a decision (or of a `/v1/check` answer) given by `list` (a list or a signal).
fn reasons_of<'a>(v: &'a Value, list: &str) -> Vec<&'a Value> {
    v["reasons"]
        .as_array()
        .unwrap_or_else(|| panic!("no reasons in {v}"))
        .iter()
        .filter(|r| r["list"] == list)
        .collect()
}

/// The one reason `list` gave, as text.
fn reason_text(v: &Value, list: &str) -> String {
    let r = reasons_of(v, list);
    assert_eq!(r.len(), 1, "one {list} reason in {v:#}");
    r[0]["reason"].as_str().unwrap().to_string()
}

fn assert_blocked_603(r: &Msg, what: &str) {
    assert_eq!(
        r.start_line(),
        "SIP/2.0 603 Network Blocked",
        "{what}:\n{}",
        r.text
    );
    assert_eq!(
        r.hdr("Reason"),
        Some("SIP;cause=603;text=\"v=analytics1;url=https://scamguard.invalid/redress\""),
        "{what}"
    );
}

fn assert_forwarded(f: &Msg, what: &str) {
    assert_eq!(
        f.method(),
        "INVITE",
        "{what} was not forwarded:\n{}",
        f.text
    );
}

fn temp_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// `/v1/check` for `caller` with an optional caller name, with the test's read token.
async fn check(h: &Harness, caller: &str, display: Option<&str>) -> Value {
    let mut path = format!("/v1/check?caller={}&callee={}", enc(caller), enc(CALLEE));
    if let Some(d) = display {
        path.push_str(&format!("&display={}", enc(d)));
    }
    let r = get(h.agent.api_addr, &path, Some(TOKEN)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.json()
}

/// Starts the agent with the shipped config and lists, the test's read token, and `configure`.
async fn start(configure: impl FnOnce(&mut Config, &Path)) -> Harness {
    let tokens_dir = tempfile::tempdir().unwrap();
    let tokens = temp_file(
        tokens_dir.path(),
        "tokens",
        &format!("tester read {TOKEN}\n"),
    );
    let h = Harness::start_with(&[], |c| {
        c.api.tokens_file = Some(tokens.clone());
        // A test places calls from one number faster than anyone dials (3 a second warns by
        // default): per-second velocity stays out of the other signals' way. The velocity
        // tests set their own levels.
        c.signals.velocity.caller.per_second = Level::default();
        configure(c, tokens_dir.path());
    })
    .await;
    // The agent read the files at start; keep the folder until then only.
    drop(tokens_dir);
    h
}

// ------------------------------------------------------------------ STIR/SHAKEN

struct Pki {
    root_pem: String,
    /// leaf + intermediate, as an x5u serves them
    chain_pem: String,
    leaf_key: SigningKey,
    /// a key the certificate does not hold
    rogue_key: SigningKey,
}

fn pki() -> Pki {
    let alg = &PKCS_ECDSA_P256_SHA256;
    let root =
        CertifiedIssuer::self_signed(ca("SHAKEN itest root"), KeyPair::generate_for(alg).unwrap())
            .unwrap();
    let inter = CertifiedIssuer::signed_by(
        ca("SHAKEN itest STI-CA"),
        KeyPair::generate_for(alg).unwrap(),
        &root,
    )
    .unwrap();
    let leaf_kp = KeyPair::generate_for(alg).unwrap();
    let leaf_cert = leaf("SHAKEN itest SP 1234")
        .signed_by(&leaf_kp, &inter)
        .unwrap();
    Pki {
        root_pem: root.pem(),
        chain_pem: format!("{}{}", leaf_cert.pem(), inter.pem()),
        leaf_key: p256_of(&leaf_kp),
        rogue_key: p256_of(&KeyPair::generate_for(alg).unwrap()),
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn claims(attest: &str, orig: &str, dest: &str) -> String {
    format!(
        "{{\"attest\":\"{attest}\",\"dest\":{{\"tn\":[\"{dest}\"]}},\"iat\":{},\"orig\":{{\"tn\":\"{orig}\"}},\"origid\":\"123e4567-e89b-12d3-a456-426655440000\"}}",
        unix_now()
    )
}

/// Waits until `/metrics` shows `n` successful certificate fetches: the background fetcher's
/// work, which no call waits for.
async fn fetched(h: &Harness, n: u64) {
    let api = h.agent.api_addr;
    eventually("the certificate is fetched", || async move {
        metric(
            &metrics(api).await,
            "scamguard_cert_fetches_total{result=\"ok\"}",
        ) >= n
    })
    .await;
}

/// A valid PASSporT, a forged one (signed with a key the certificate does not hold) and one with
/// tampered claims, through the agent. The certificate cache starts cold: the first call is not
/// held up for the fetch; it is screened without an attestation ("unknown: being fetched", score
/// 0, so it passes on its other merits) while the chain is fetched in the background.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passports_valid_forged_and_tampered() {
    let pki = pki();
    let base = serve(HashMap::from([("/sp.pem", pki.chain_pem.clone())])).await;
    let x5u = format!("{base}/sp.pem");
    let anchors = tempfile::tempdir().unwrap();
    temp_file(anchors.path(), "root.pem", &pki.root_pem);
    let anchors_dir = anchors.path().display().to_string();
    let h = start(|c, _| {
        c.certs.anchors_dir = Some(anchors_dir);
        c.certs.fetch_timeout_ms = 2_000;
    })
    .await;

    // Not the callee's NPA-NXX (that would be neighbour spoofing without A attestation).
    let caller = "+12027620143";
    let from = format!("\"Alice\" <sip:{caller}@127.0.0.1>;tag=s1");
    let identity = |key: &SigningKey, attest: &str| {
        sign_identity(
            key,
            &x5u,
            &claims(attest, &caller[1..], &CALLEE[1..]),
            false,
        )
    };

    // 1. Cold cache: passed at once, the fetch queued.
    let f = call(
        &h,
        "stir-cold",
        &from,
        CALLEE,
        &format!("Identity: {}\r\n", identity(&pki.leaf_key, "A")),
    )
    .await;
    assert_forwarded(&f, "the cold-cache call");
    assert_eq!(f.hdr("X-Scamguard-Verdict"), Some("pass"));
    assert_eq!(f.hdr("From"), Some(from.as_str()));
    fetched(&h, 1).await;

    // 2. Warm cache: a valid PASSporT verifies with attestation A and passes untouched.
    let valid = identity(&pki.leaf_key, "A");
    let f = call(
        &h,
        "stir-valid",
        &from,
        CALLEE,
        &format!("Identity: {valid}\r\n"),
    )
    .await;
    assert_forwarded(&f, "the valid PASSporT");
    assert_eq!(f.hdr("X-Scamguard-Verdict"), Some("pass"));
    assert_eq!(f.hdr("From"), Some(from.as_str()), "untouched");
    assert_eq!(
        f.hdr("Identity"),
        Some(valid.as_str()),
        "Identity passed on"
    );
    assert_eq!(
        f.hdr("Reason"),
        None,
        "a verified PASSporT carries no failure"
    );

    // 3. Forged: same x5u, signed by a key the certificate does not hold -> 438, warned.
    let f = call(
        &h,
        "stir-forged",
        &from,
        CALLEE,
        &format!("Identity: {}\r\n", identity(&pki.rogue_key, "A")),
    )
    .await;
    assert_forwarded(&f, "the forged PASSporT");
    assert_eq!(
        f.hdr("From"),
        Some(format!("\"SCAM? Alice\" <sip:{caller}@127.0.0.1>;tag=s1").as_str()),
        "{}",
        f.text
    );
    let forged_verdict = f.hdr("X-Scamguard-Verdict").unwrap().to_string();
    assert!(
        forged_verdict.starts_with("warn;category=stir;reason=\"(+60) 438 Invalid Identity Header"),
        "{forged_verdict}"
    );
    // RFC 9410: the next hop learns of the failure without verifying again.
    assert_eq!(
        f.hdr("Reason"),
        Some("STIR;cause=438;text=\"Invalid Identity Header\""),
        "{}",
        f.text
    );

    // 4. Tampered claims: a valid signature over other claims (orig.tn changed to the caller
    //    the attacker wants to show) -> 438 too.
    let other = "+12027620199";
    let genuine = sign_identity(
        &pki.leaf_key,
        &x5u,
        &claims("A", &caller[1..], &CALLEE[1..]),
        false,
    );
    let mut parts: Vec<String> = genuine.splitn(3, '.').map(str::to_string).collect();
    let forged_claims = sign_identity(
        &pki.leaf_key,
        &x5u,
        &claims("A", &other[1..], &CALLEE[1..]),
        false,
    );
    parts[1] = forged_claims.split('.').nth(1).unwrap().to_string();
    let tampered = parts.join(".");
    let f = call(
        &h,
        "stir-tampered",
        &format!("\"Alice\" <sip:{other}@127.0.0.1>;tag=s2"),
        CALLEE,
        &format!("Identity: {tampered}\r\n"),
    )
    .await;
    assert_forwarded(&f, "the tampered PASSporT");
    assert_eq!(
        f.hdr("From"),
        Some(format!("\"SCAM? Alice\" <sip:{other}@127.0.0.1>;tag=s2").as_str())
    );
    let v = f.hdr("X-Scamguard-Verdict").unwrap();
    assert!(
        v.starts_with("warn;category=stir;reason=\"(+60) 438 Invalid Identity Header"),
        "{v}"
    );

    let m = metrics(h.agent.api_addr).await;
    assert_eq!(
        metric(&m, "scamguard_cert_fetches_total{result=\"ok\"}"),
        1,
        "one fetch served every later call:\n{m}"
    );
    let (log, _d) = h.stop().await;
    let cold = logged(&log, "stir-cold");
    assert_eq!(cold["action"], "pass");
    assert_eq!(
        reason_text(cold, "stir"),
        format!("(+0) unknown: certificate {x5u} is being fetched")
    );
    let valid = logged(&log, "stir-valid");
    assert_eq!(valid["action"], "pass");
    assert_eq!(
        reason_text(valid, "stir"),
        format!("(+0) verified, attestation A for {caller}")
    );
    assert_eq!(reasons_of(valid, "stir")[0]["entry"], "attest=A");
    for id in ["stir-forged", "stir-tampered"] {
        let l = logged(&log, id);
        assert_eq!(l["action"], "warn", "{l}");
        let r = reasons_of(l, "stir");
        assert_eq!(r.len(), 1, "{l}");
        assert_eq!(r[0]["entry"], "438", "{l}");
        let text = r[0]["reason"].as_str().unwrap();
        assert!(
            text.starts_with("(+60) 438 Invalid Identity Header"),
            "{id}: {text}"
        );
    }
    assert!(
        forged_verdict.contains(
            reason_text(logged(&log, "stir-forged"), "stir")
                .split(": ")
                .next()
                .unwrap()
        ),
        "the header says what the log says"
    );
}

// ------------------------------------------------------------------ velocity

/// A burst of calls from one number that nobody answers: the first pass, then (once two calls
/// have come back unanswered, which makes its outcomes bad) the per-minute warn level warns and
/// the block level blocks (603 with the velocity reason, outcomes included, in the log).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_from_one_number_is_warned_then_blocked() {
    let h = start(|c, _| {
        // Per minute (per second is off): whether a burst straddles a second must not change
        // the answer. Two outcomes are enough to judge here (five by default).
        c.signals.velocity.min_outcomes = 2;
        let v = &mut c.signals.velocity.caller;
        v.per_minute = Level::new(3, 5);
    })
    .await;
    let caller = "+14155552671";
    let mut answers = Vec::new();
    for i in 0..6 {
        let id = format!("burst{i}");
        let r = call(
            &h,
            &id,
            &format!("\"Bob\" <sip:{caller}@127.0.0.1>;tag=b{i}"),
            &format!("+1617555{:04}", 1000 + i),
            "",
        )
        .await;
        if r.method() == "INVITE" {
            // The callee is not available: the call comes back unanswered.
            h.send_down(&reply(&r, 480, "Temporarily Unavailable", "u", "", ""))
                .await;
            assert_eq!(recv_final(&h.up).await.status(), Some(480));
            assert_eq!(recv(&h.down).await.0.method(), "ACK");
        }
        answers.push((id, r));
    }
    let shown: Vec<String> = answers
        .iter()
        .map(|(_, m)| match m.status() {
            Some(s) => s.to_string(),
            None => m
                .hdr("X-Scamguard-Verdict")
                .unwrap()
                .split(';')
                .next()
                .unwrap()
                .to_string(),
        })
        .collect();
    assert_eq!(shown, ["pass", "pass", "warn", "warn", "603", "603"]);
    let warned = &answers[2].1;
    assert_eq!(
        warned.hdr("From"),
        Some(format!("\"SCAM? Bob\" <sip:{caller}@127.0.0.1>;tag=b2").as_str())
    );
    assert_eq!(
        warned.hdr("X-Scamguard-Verdict"),
        Some(
            "warn;category=velocity;reason=\"(+50) caller calls-per-minute 3 (warn); of 2 recent calls with an outcome: 0 talked, 2 unanswered\""
        )
    );
    assert_blocked_603(&answers[4].1, "the fifth call");

    let (log, _d) = h.stop().await;
    // The blocked calls reached no callee: they add no outcome.
    for (i, want) in [
        (2, "(+50) caller calls-per-minute 3 (warn); of 2 recent calls with an outcome: 0 talked, 2 unanswered"),
        (3, "(+50) caller calls-per-minute 4 (warn); of 3 recent calls with an outcome: 0 talked, 3 unanswered"),
        (4, "(+100) caller calls-per-minute 5 (block); of 4 recent calls with an outcome: 0 talked, 4 unanswered"),
        (5, "(+100) caller calls-per-minute 6 (block); of 4 recent calls with an outcome: 0 talked, 4 unanswered"),
    ] {
        let l = logged(&log, &format!("burst{i}"));
        assert_eq!(reason_text(l, "velocity"), want, "{l}");
        assert_eq!(reasons_of(l, "velocity")[0]["entry"], caller);
    }
    for i in 0..2 {
        let l = logged(&log, &format!("burst{i}"));
        assert_eq!(l["action"], "pass");
        assert!(reasons_of(l, "velocity").is_empty(), "{l}");
    }
}

/// Concurrent calls count while they are in progress and stop counting when they end, including
/// the calls the agent itself blocked: once the burst is over the number calls normally again.
/// No call has an outcome while they ring, so the warn level (3) is doubled; the block level (4)
/// acts on rate alone, as flood protection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_calls_stop_counting_when_they_end() {
    let h = start(|c, _| {
        let v = &mut c.signals.velocity.caller;
        v.per_minute = Level::default();
        v.distinct_callees = Level::default();
        v.concurrent = Level::new(3, 4);
    })
    .await;
    let caller = "+14155552672";
    let from = |i: usize| format!("<sip:{caller}@127.0.0.1>;tag=c{i}");
    let mut ringing = Vec::new();
    let mut shown = Vec::new();
    for i in 0..6 {
        let r = call(&h, &format!("conc{i}"), &from(i), "+16175551000", "").await;
        match r.status() {
            Some(s) => shown.push(s.to_string()),
            None => {
                shown.push(
                    r.hdr("X-Scamguard-Verdict")
                        .unwrap()
                        .split(';')
                        .next()
                        .unwrap()
                        .to_string(),
                );
                ringing.push(r);
            }
        }
    }
    assert_eq!(shown, ["pass", "pass", "pass", "603", "603", "603"]);
    // The callee refuses the three forwarded calls: they end.
    for f in &ringing {
        h.send_down(&reply(f, 486, "Busy Here", "busy", "", ""))
            .await;
        assert_eq!(recv_final(&h.up).await.status(), Some(486));
        let (ack, _) = recv(&h.down).await;
        assert_eq!(ack.method(), "ACK");
    }
    // Nothing is in progress now: the next call is the only one.
    let f = call(&h, "conc-after", &from(9), "+16175551000", "").await;
    assert_forwarded(&f, "the call after the burst");
    assert_eq!(f.hdr("X-Scamguard-Verdict"), Some("pass"));
    let (log, _d) = h.stop().await;
    assert_eq!(
        reason_text(logged(&log, "conc3"), "velocity"),
        "(+100) caller concurrent-calls 4 (block)"
    );
    assert!(reasons_of(logged(&log, "conc-after"), "velocity").is_empty());
}

// ------------------------------------------------------------------ wangiri

/// One ring and cut: one number rings several callees and CANCELs each within seconds; its next
/// call is flagged, with the wangiri reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wangiri_one_ring_and_cut_flags_the_next_call() {
    let h = start(|c, _| {
        c.signals.wangiri.number = Level::new(3, 5);
    })
    .await;
    let port = h.up_port();
    // Comoros (+269), a classic one-ring origin.
    let caller = "+2693591000";
    for i in 0..3 {
        let callee = format!("+1617555{:04}", 2000 + i);
        let id = format!("wangiri{i}");
        let inv = invite(
            "UDP",
            h.sip(),
            port,
            &id,
            &format!("z9hG4bKw{i}"),
            &format!("<sip:{caller}@127.0.0.1>;tag=w{i}"),
            &callee,
            "",
            "",
        );
        h.send_up(&inv).await;
        let (f, _) = recv(&h.down).await;
        assert_forwarded(&f, &id);
        assert_eq!(f.hdr("X-Scamguard-Verdict"), Some("pass"), "{id}");
        h.send_down(&reply(&f, 180, "Ringing", "r", "", "")).await;
        assert_eq!(recv_final(&h.up).await.status(), Some(180));
        h.send_up(&cancel_for(&inv)).await;
        let ok = recv_final(&h.up).await;
        assert_eq!(ok.hdr("CSeq"), Some("1 CANCEL"));
        let (c, _) = recv(&h.down).await;
        assert_eq!(c.method(), "CANCEL");
        h.send_down(&reply(&c, 200, "OK", "r", "", "")).await;
        h.send_down(&reply(&f, 487, "Request Terminated", "r", "", ""))
            .await;
        let r = recv_final(&h.up).await;
        assert_eq!(r.status(), Some(487));
        let (ack, _) = recv(&h.down).await;
        assert_eq!(ack.method(), "ACK");
        h.send_up(&ack_for(port, &inv, &r)).await;
    }
    let f = call(
        &h,
        "wangiri-next",
        &format!("\"Win\" <sip:{caller}@127.0.0.1>;tag=wn"),
        "+16175552100",
        "",
    )
    .await;
    assert_forwarded(&f, "the next call");
    assert_eq!(
        f.hdr("From"),
        Some(format!("\"SCAM? Win\" <sip:{caller}@127.0.0.1>;tag=wn").as_str())
    );
    assert_eq!(
        f.hdr("X-Scamguard-Verdict"),
        Some(
            format!("warn;category=wangiri;reason=\"(+50) number {caller} rang 3 distinct callees and hung up within seconds (3 of its 3 recent calls)\"")
                .as_str()
        )
    );
    let m = metrics(h.agent.api_addr).await;
    assert_eq!(
        metric(&m, "scamguard_call_events_total{event=\"cancelled\"}"),
        3
    );
    // /v1/check reads the live calls' history (and asking counts as no call).
    let v = check(&h, caller, None).await;
    assert_eq!(v["action"], "warn", "{v}");
    let via_check = reason_text(&v, "wangiri");
    let (log, _d) = h.stop().await;
    for i in 0..3 {
        assert!(reasons_of(logged(&log, &format!("wangiri{i}")), "wangiri").is_empty());
    }
    let l = logged(&log, "wangiri-next");
    assert_eq!(l["action"], "warn");
    assert_eq!(
        reason_text(l, "wangiri"),
        format!("(+50) number {caller} rang 3 distinct callees and hung up within seconds (3 of its 3 recent calls)")
    );
    assert_eq!(
        via_check,
        reason_text(l, "wangiri"),
        "log and /v1/check agree"
    );
}

// ------------------------------------------------------------------ brands and DNO

/// A brands file: the shipped one, with Microsoft given a registered outbound number (the
/// shipped file registers none, as Microsoft states it does not call customers).
const MS_OUTBOUND: &str = "+14258828080";

fn brands_with_ms_outbound() -> String {
    let text = std::fs::read_to_string(root().join("config/brands.toml")).unwrap();
    let ms = text.find("name = \"Microsoft\"").unwrap();
    let at = ms + text[ms..].find("outbound = []").unwrap();
    format!(
        "{}outbound = [\"{MS_OUTBOUND}\"]{}",
        &text[..at],
        &text[at + "outbound = []".len()..]
    )
}

/// "Microsoft Support" from a number Microsoft does not call from is blocked (Microsoft's brand
/// action), a look-alike spelling too, an Amazon claim is warned; the same name from Microsoft's
/// registered number passes untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn brand_impersonation_flagged_unless_from_the_brands_number() {
    let h = start(|c, dir| {
        let p = temp_file(dir, "brands.toml", &brands_with_ms_outbound());
        c.signals.brands.file = p.display().to_string();
    })
    .await;

    let random = "+14155550123";
    let r = call(
        &h,
        "brand-ms",
        &format!("\"Microsoft Support\" <sip:{random}@127.0.0.1>;tag=m1"),
        CALLEE,
        "",
    )
    .await;
    assert_blocked_603(&r, "Microsoft Support from a random number");

    let r = call(
        &h,
        "brand-ms-lookalike",
        "\"M1cr0s0ft  Supp0rt\" <sip:+14155550124@127.0.0.1>;tag=m2",
        CALLEE,
        "",
    )
    .await;
    assert_blocked_603(&r, "a look-alike spelling");

    let f = call(
        &h,
        "brand-amazon",
        "\"Amazon Prime\" <sip:+14155550125@127.0.0.1>;tag=a1",
        CALLEE,
        "",
    )
    .await;
    assert_forwarded(&f, "an Amazon claim (warn)");
    assert_eq!(
        f.hdr("From"),
        Some("\"SCAM? Amazon Prime\" <sip:+14155550125@127.0.0.1>;tag=a1")
    );
    assert!(
        f.hdr("X-Scamguard-Verdict")
            .unwrap()
            .starts_with("warn;category=tech-support;reason=\"(+50) display name"),
        "{}",
        f.text
    );

    let from = format!("\"Microsoft Support\" <sip:{MS_OUTBOUND}@127.0.0.1>;tag=m3");
    let f = call(&h, "brand-ms-registered", &from, CALLEE, "").await;
    assert_forwarded(&f, "Microsoft from its registered number");
    assert_eq!(f.hdr("From"), Some(from.as_str()), "untouched");
    assert_eq!(f.hdr("X-Scamguard-Verdict"), Some("pass"));

    // /v1/check gives the same answers with the same reasons.
    let v = check(&h, random, Some("Microsoft Support")).await;
    assert_eq!(v["action"], "block", "{v}");
    let brand = reason_text(&v, "brand");
    let v = check(&h, MS_OUTBOUND, Some("Microsoft Support")).await;
    assert_eq!(v["action"], "pass", "{v}");
    assert!(reasons_of(&v, "brand").is_empty(), "{v}");

    let (log, _d) = h.stop().await;
    let l = logged(&log, "brand-ms");
    assert_eq!(l["action"], "block");
    assert_eq!(reason_text(l, "brand"), brand, "log and /v1/check agree");
    assert!(
        brand.starts_with(&format!(
            "(+100) display name \"Microsoft Support\" claims Microsoft from {random}, not a number it calls from; Microsoft does not make unsolicited phone calls"
        )),
        "{brand}"
    );
    assert!(
        brand.contains("https://support.microsoft.com/"),
        "the source: {brand}"
    );
    assert_eq!(reasons_of(l, "brand")[0]["entry"], "Microsoft");
    assert_eq!(reasons_of(l, "brand")[0]["category"], "tech-support");
    let l = logged(&log, "brand-ms-lookalike");
    assert_eq!(l["action"], "block");
    assert!(reason_text(l, "brand").contains("claims Microsoft"), "{l}");
    let l = logged(&log, "brand-amazon");
    assert_eq!(l["action"], "warn");
    assert!(reason_text(l, "brand").contains("claims Amazon"), "{l}");
    let l = logged(&log, "brand-ms-registered");
    assert_eq!(l["action"], "pass");
    assert_eq!(l["reasons"], serde_json::json!([]), "{l}");
}

/// Calls FROM inbound-only numbers are spoofed and blocked, with the brand or registry named: the
/// shipped Microsoft support line (brands.toml and blocklists/do-not-originate.csv) and a number
/// on the configured `[signals.dno]` list; a DNO hit blocks even when the caller name is harmless.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn do_not_originate_spoofs_are_blocked_with_their_source() {
    let configured = "+442079460999";
    let h = start(|c, _| {
        c.signals.dno.numbers = vec![configured.to_string()];
    })
    .await;
    let r = call(
        &h,
        "dno-ms",
        "\"Help Desk\" <sip:+18006427676@127.0.0.1>;tag=d1",
        CALLEE,
        "",
    )
    .await;
    assert_blocked_603(&r, "a call from Microsoft's support line");
    let r = call(
        &h,
        "dno-amazon",
        "<sip:+18882804331@127.0.0.1>;tag=d2",
        CALLEE,
        "",
    )
    .await;
    assert_blocked_603(&r, "a call from Amazon's customer-service line");
    let r = call(
        &h,
        "dno-configured",
        &format!("<sip:{configured}@127.0.0.1>;tag=d3"),
        CALLEE,
        "",
    )
    .await;
    assert_blocked_603(&r, "a call from a configured DNO number");

    let v = check(&h, "+18006427676", None).await;
    assert_eq!(v["action"], "block", "{v}");
    let via_check = reason_text(&v, "dno");

    let (log, _d) = h.stop().await;
    let l = logged(&log, "dno-ms");
    assert_eq!(l["action"], "block");
    let dno = reason_text(l, "dno");
    assert_eq!(dno, via_check, "log and /v1/check agree");
    assert_eq!(
        dno,
        "(+100) +18006427676 is an inbound-only number of Microsoft (brands.toml): a call from it is spoofed"
    );
    let listed = reasons_of(l, "do-not-originate");
    assert_eq!(listed.len(), 1, "{l}");
    assert_eq!(listed[0]["category"], "dno");
    assert!(
        listed[0]["reason"]
            .as_str()
            .unwrap()
            .contains("Microsoft support line"),
        "{l}"
    );
    let l = logged(&log, "dno-amazon");
    assert_eq!(
        reason_text(l, "dno"),
        "(+100) +18882804331 is an inbound-only number of Amazon (brands.toml): a call from it is spoofed"
    );
    let l = logged(&log, "dno-configured");
    assert_eq!(l["action"], "block");
    assert_eq!(
        reason_text(l, "dno"),
        format!("(+100) {configured} is on the configured Do-Not-Originate list: a call from it is spoofed")
    );
}
