//! `POST /v1/reports` and `GET /v1/reports` against the real agent from `app::start` on
//! 127.0.0.1:0, with its SQLite store in a temp dir: distinct reporters promote a caller to warn
//! and then to block (an entry of the store list `reports` with an expiry and the evidence), one
//! reporter repeating promotes nothing, roles are enforced, bad requests change nothing, and a
//! restart keeps the reports so that a promotion begun before it completes after it.
//!
//! Knows nothing of the agent's insides: only the config, the HTTP answers and `/v1/check`.

use std::path::Path;

use crate::support::agent::Harness;
use crate::support::http::{enc, get, request, write_tokens, Resp, ADMIN, READER, WRITER};
use serde_json::{json, Value};

/// Reporters needed: three distinct for a warn entry, five for a block entry.
const REPORTS_CONFIG: (&str, &str) = ("block_reporters = 10", "block_reporters = 5");

async fn start(dir: &Path) -> Harness {
    let tokens = dir.join("tokens");
    write_tokens(&tokens);
    let data = dir.join("data");
    Harness::start_with(&[REPORTS_CONFIG], move |c| {
        c.api.tokens_file = Some(tokens);
        c.store.data_dir = data;
    })
    .await
}

async fn post(h: &Harness, token: Option<&str>, body: &Value) -> Resp {
    request(
        h.agent.api_addr,
        "POST",
        "/v1/reports",
        token,
        body.to_string().as_bytes(),
    )
    .await
}

fn report(caller: &str, reporter: &str, category: &str) -> Value {
    json!({"caller": caller, "callee": "+12025550100", "category": category, "reporter": reporter})
}

/// Report and expect 201; the promotions the answer names.
async fn reported(h: &Harness, body: Value) -> Vec<Value> {
    let r = post(h, Some(WRITER), &body).await;
    assert_eq!(r.status, 201, "{}", r.text);
    r.json()["promotions"].as_array().unwrap().clone()
}

async fn verdict(h: &Harness, caller: &str) -> Value {
    let r = get(
        h.agent.api_addr,
        &format!("/v1/check?caller={}&callee=%2B12025550100", enc(caller)),
        Some(READER),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.json()
}

async fn entry(h: &Harness, caller: &str) -> Option<Value> {
    let r = get(
        h.agent.api_addr,
        &format!("/v1/lists/reports/entries?prefix={}", enc(caller)),
        Some(READER),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.json()["entries"].as_array().unwrap().first().cloned()
}

async fn evidence(h: &Harness, caller: &str) -> Value {
    let r = get(
        h.agent.api_addr,
        &format!("/v1/reports?caller={}", enc(caller)),
        Some(READER),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.json()
}

const A: &str = "+14155552680";
const B: &str = "+14155552690";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distinct_reporters_promote_and_one_reporter_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let h = start(dir.path()).await;
    assert_eq!(verdict(&h, A).await["action"], "pass");

    // One reporter, however often, promotes nothing.
    for _ in 0..6 {
        assert!(reported(&h, report(A, "+13125550101", "scam"))
            .await
            .is_empty());
    }
    assert_eq!(verdict(&h, A).await["action"], "pass");
    assert!(entry(&h, A).await.is_none());
    let ev = evidence(&h, A).await;
    assert_eq!(ev["reports"].as_array().unwrap().len(), 6);
    assert_eq!(ev["promotion"], Value::Null);

    // A second and a third reporter (an array, one with its own time) reach the warn level.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let mut late = report(A, "carol-app-7", "robocall");
    late["time"] = json!(now - 3_600);
    let p = reported(&h, json!([report(A, "+1 (312) 555-0102", "scam"), late])).await;
    assert_eq!(p.len(), 1, "{p:?}");
    assert_eq!(
        (p[0]["caller"].as_str(), p[0]["action"].as_str()),
        (Some(A), Some("warn"))
    );
    let v = verdict(&h, A).await;
    assert_eq!(v["action"], "warn", "{v}");
    assert_eq!(v["reasons"][0]["list"], "reports", "{v}");
    let e = entry(&h, A).await.expect("a reports entry");
    assert_eq!(e["action"], "warn");
    assert!(e["expires"].as_i64().unwrap() > now, "{e}");
    let reason = e["reason"].as_str().unwrap();
    assert!(
        reason.contains("3 distinct reporters") && reason.contains("robocall x1, scam x2"),
        "{reason}"
    );
    // The number written with separators is the same reporter as its E.164 form.
    let ev = evidence(&h, A).await;
    assert_eq!(ev["promotion"]["action"], "warn");
    assert_eq!(ev["reports"][0]["reporter"], "+13125550102", "{ev}");
    assert_eq!(ev["reports"][0]["who"], "bot");

    // Two more reporters: block.
    reported(&h, report(A, "+13125550104", "scam")).await;
    let p = reported(&h, report(A, "+13125550105", "scam")).await;
    assert_eq!(p[0]["action"], "block");
    assert_eq!(verdict(&h, A).await["action"], "block");
    assert_eq!(entry(&h, A).await.unwrap()["action"], "block");

    // Every report is audited under the token's name.
    let r = request(
        h.agent.api_addr,
        "GET",
        "/v1/audit?limit=1000",
        Some(ADMIN),
        b"",
    )
    .await;
    let records = r.json()["records"].as_array().unwrap().clone();
    let reports = records
        .iter()
        .filter(|a| a["what"] == "report" && a["who"] == "bot" && a["pattern"] == A)
        .count();
    assert_eq!(reports, 10);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_and_bad_requests_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let h = start(dir.path()).await;
    let good = report(A, "+13125550101", "scam");
    for (token, want) in [
        (None, 401),
        (Some("not-a-known-token-at-all"), 401),
        (Some(READER), 403),
    ] {
        let r = post(&h, token, &good).await;
        assert_eq!(r.status, want, "{token:?}: {}", r.text);
        assert!(r.json()["error"].is_string(), "{}", r.text);
    }
    let r = request(
        h.agent.api_addr,
        "GET",
        "/v1/reports?caller=%2B14155552680",
        None,
        b"",
    )
    .await;
    assert_eq!(r.status, 401);

    let mut unknown = good.clone();
    unknown["weight"] = json!(10);
    let mut missing = good.clone();
    missing.as_object_mut().unwrap().remove("callee");
    let mut old = good.clone();
    old["time"] = json!("2020-01-01T00:00:00Z");
    let mut ahead = good.clone();
    ahead["time"] = json!(4_000_000_000i64);
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        ("not JSON", b"{caller:".to_vec(), 400, "not JSON"),
        ("empty array", b"[]".to_vec(), 400, "nothing to report"),
        (
            "unknown field",
            unknown.to_string().into_bytes(),
            422,
            "unknown field `weight`",
        ),
        (
            "missing field",
            missing.to_string().into_bytes(),
            422,
            "missing field `callee`",
        ),
        (
            "bad caller",
            report("call me maybe", "+13125550101", "scam")
                .to_string()
                .into_bytes(),
            422,
            "is not a phone number",
        ),
        (
            "bad category",
            report(A, "+13125550101", "a b").to_string().into_bytes(),
            422,
            "category",
        ),
        (
            "self report",
            report(A, A, "scam").to_string().into_bytes(),
            422,
            "cannot report itself",
        ),
        (
            "too old",
            old.to_string().into_bytes(),
            422,
            "older than the report window",
        ),
        (
            "ahead",
            ahead.to_string().into_bytes(),
            422,
            "ahead of this agent's clock",
        ),
        (
            "one bad in an array",
            json!([good, report(A, "", "scam")])
                .to_string()
                .into_bytes(),
            422,
            "report 2: reporter",
        ),
    ];
    for (what, body, want, says) in cases {
        let r = request(h.agent.api_addr, "POST", "/v1/reports", Some(WRITER), &body).await;
        assert_eq!(r.status, want, "{what}: {}", r.text);
        let j = r.json();
        assert!(j["error"].is_string(), "{what}: {}", r.text);
        let all = format!("{} {}", j["error"], j["details"]);
        assert!(all.contains(says), "{what}: {all}");
    }
    // Nothing was stored, counted or audited.
    assert_eq!(evidence(&h, A).await["reports"], json!([]));
    let r = request(h.agent.api_addr, "GET", "/v1/audit", Some(ADMIN), b"").await;
    assert_eq!(r.json()["records"], json!([]), "{}", r.text);
    assert_eq!(verdict(&h, A).await["action"], "pass");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_keeps_the_reports() {
    let dir = tempfile::tempdir().unwrap();
    let h = start(dir.path()).await;
    // A: four reporters, a warn entry. B: two reporters, nothing yet.
    for i in 1..=4 {
        reported(&h, report(A, &format!("+1312555020{i}"), "scam")).await;
    }
    for i in 1..=2 {
        reported(&h, report(B, &format!("+1312555030{i}"), "spoofed")).await;
    }
    assert_eq!(verdict(&h, A).await["action"], "warn");
    assert_eq!(verdict(&h, B).await["action"], "pass");
    h.stop().await;

    let h = start(dir.path()).await;
    assert_eq!(
        evidence(&h, A).await["reports"].as_array().unwrap().len(),
        4
    );
    assert_eq!(evidence(&h, B).await["promotion"], Value::Null);
    // Each needs the reporters counted before the restart to get over its threshold.
    let p = reported(&h, report(A, "+13125550205", "scam")).await;
    assert_eq!(p[0]["action"], "block", "{p:?}");
    assert!(p[0]["evidence"]
        .as_str()
        .unwrap()
        .contains("5 distinct reporters"));
    let p = reported(&h, report(B, "+13125550303", "spoofed")).await;
    assert_eq!(p[0]["action"], "warn", "{p:?}");
    assert_eq!(verdict(&h, A).await["action"], "block");
    assert_eq!(verdict(&h, B).await["action"], "warn");
    h.stop().await;
}
