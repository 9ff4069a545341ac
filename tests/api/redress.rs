//! Issue 17, redress, against the real agent from `app::start`: a caller blocked by the shipped
//! example list (+12025550143) gets 603+ pointing at the dispute form; a dispute sent over HTTP
//! to the redress listener shows in `GET /v1/disputes`, an operator lifts it through the admin
//! API (an `allow` entry whose reason is the dispute's id), and the caller's next call passes.
//! The form's limits: no HTML, no control characters, bounded sizes, a number that reads, and a
//! rate limit per address that counts every submission.
//!
//! Knows nothing of the agent's insides: only the config, SIP and HTTP on the wire, `/metrics`.

use std::path::Path;

use crate::support::agent::*;
use crate::support::http::{
    enc, get, metric, metrics, request, write_tokens, ADMIN, READER, WRITER,
};

const BLOCKED: &str = "+12025550143";
const CALLEE: &str = "+14155550100";

async fn start(dir: &Path, per_address: u32) -> Harness {
    let tokens = dir.join("tokens");
    write_tokens(&tokens);
    Harness::start_with(&[], move |c| {
        c.api.tokens_file = Some(tokens);
        c.redress.enabled = true;
        c.redress.listen = "127.0.0.1:0".into();
        c.redress.max_per_address = per_address;
        c.disposition.redress_url = "https://carrier.example/redress".into();
    })
    .await
}

/// A call from `caller`: the agent's final answer (`Ok`), or the INVITE the callee got.
async fn dial(h: &Harness, id: &str, caller: &str) -> Result<Msg, Msg> {
    let m = call(
        h,
        id,
        &format!("<sip:{caller}@127.0.0.1>;tag={id}"),
        CALLEE,
        "",
    )
    .await;
    if m.method() == "INVITE" {
        Err(m)
    } else {
        Ok(m)
    }
}

fn form(number: &str, contact: &str, statement: &str) -> Vec<u8> {
    format!(
        "number={}&contact={}&statement={}",
        enc(number),
        enc(contact),
        enc(statement)
    )
    .into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lifted_dispute_lets_the_next_call_through() {
    let dir = tempfile::tempdir().unwrap();
    let h = start(dir.path(), 5).await;
    let site = h.agent.redress_addr.expect("the redress listener");
    let api = h.agent.api_addr;

    let refused = dial(&h, "rd-1", BLOCKED).await.expect("refused");
    assert_eq!(refused.status(), Some(603));
    assert_eq!(
        refused.hdr("Reason"),
        Some("SIP;cause=603;text=\"v=analytics1;url=https://carrier.example/redress\"")
    );

    let page = get(site, "/redress", None).await;
    assert_eq!(page.status, 200);
    assert!(page
        .headers
        .to_ascii_lowercase()
        .contains("content-type: text/html"));
    assert!(
        page.headers.contains("default-src 'none'"),
        "{}",
        page.headers
    );
    assert!(page.text.contains("<form method=\"post\""), "{}", page.text);

    let body = form(
        "(202) 555-0143",
        "ana@bakery.example",
        "We are a bakery.\r\nOur order calls are refused.",
    );
    let r = request(site, "POST", "/redress", None, &body).await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert!(r.text.contains("Your dispute is number 1."), "{}", r.text);

    assert_eq!(get(api, "/v1/disputes", None).await.status, 401);
    let list = get(api, "/v1/disputes?status=open", Some(READER)).await;
    assert_eq!(list.status, 200, "{}", list.text);
    let d = &list.json()["disputes"][0];
    assert_eq!(d["number"], BLOCKED, "read by the numbering plan");
    assert_eq!(
        d["statement"],
        "We are a bakery. Our order calls are refused."
    );
    assert_eq!(d["status"], "open");
    assert!(
        d["source"].as_str().unwrap().starts_with("127.0.0.1:"),
        "{d}"
    );

    let lift = |token| request(api, "POST", "/v1/disputes/1/lift", Some(token), b"");
    assert_eq!(lift(READER).await.status, 403);
    let lifted = lift(WRITER).await;
    assert_eq!(lifted.status, 200, "{}", lifted.text);
    let j = lifted.json();
    assert_eq!(j["dispute"]["status"], "lifted");
    assert_eq!(j["dispute"]["resolved_by"], "bot");
    assert_eq!(j["entry"]["action"], "allow");
    assert_eq!(j["entry"]["reason"], "dispute 1");
    assert_eq!(lift(WRITER).await.status, 409, "once only");
    let entries = get(api, "/v1/lists/disputes/entries", Some(READER)).await;
    assert_eq!(entries.json()["entries"][0]["pattern"], BLOCKED);

    let through = dial(&h, "rd-2", BLOCKED)
        .await
        .expect_err("the call passes");
    assert_eq!(through.method(), "INVITE");
    assert_eq!(through.hdr("X-Scamguard-Verdict"), Some("pass"));

    let m = metrics(api).await;
    for (series, want) in [
        ("scamguard_redress_disputes_total{outcome=\"opened\"}", 1),
        ("scamguard_redress_disputes_total{outcome=\"lifted\"}", 1),
        ("scamguard_redress_resolution_seconds_count", 1),
        (
            "scamguard_redress_resolution_seconds_bucket{le=\"+Inf\"}",
            1,
        ),
    ] {
        assert_eq!(metric(&m, series), want, "{series}");
    }
    let audit = get(api, "/v1/audit", Some(ADMIN)).await.json();
    let whats: Vec<&str> = audit["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["what"].as_str().unwrap())
        .collect();
    for want in ["dispute-open", "dispute-lift"] {
        assert!(whats.contains(&want), "{whats:?}");
    }
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_form_refuses_html_controls_and_floods() {
    let dir = tempfile::tempdir().unwrap();
    let h = start(dir.path(), 6).await;
    let site = h.agent.redress_addr.unwrap();
    let api = h.agent.api_addr;
    let post = |body: Vec<u8>| async move { request(site, "POST", "/", None, &body).await };

    // (body, status, what the answer says)
    let bad = [
        (
            form(BLOCKED, "ana@example.org", "<b>wrong</b>"),
            400,
            "may not hold &lt; or &gt;",
        ),
        (
            form(BLOCKED, "ana\u{0}@example.org", "wrong"),
            400,
            "control character (U+0000)",
        ),
        (
            form("hello", "ana@example.org", "wrong"),
            400,
            "is not a phone number",
        ),
        (
            form(BLOCKED, "ana@example.org", &"x".repeat(20_000)),
            413,
            "larger than",
        ),
    ];
    for (body, status, want) in bad {
        let r = post(body).await;
        assert_eq!(r.status, status, "{}", r.text);
        assert!(r.text.contains(want), "{want}: {}", r.text);
        assert!(!r.text.contains("<b>"), "nothing echoed unescaped");
    }
    for i in 0..2 {
        let r = post(form(BLOCKED, "ana@example.org", &format!("try {i}"))).await;
        assert_eq!(r.status, 201, "{}", r.text);
    }
    // Six submissions from this address in the window, good or bad: the seventh is refused.
    let r = post(form(BLOCKED, "ana@example.org", "again")).await;
    assert_eq!(r.status, 429, "{}", r.text);
    assert!(
        r.headers.to_ascii_lowercase().contains("retry-after:"),
        "{}",
        r.headers
    );

    let all = get(api, "/v1/disputes", Some(READER)).await.json();
    assert_eq!(all["disputes"].as_array().unwrap().len(), 2, "{all}");
    let upheld = request(api, "POST", "/v1/disputes/2/uphold", Some(WRITER), b"").await;
    assert_eq!(upheld.status, 200, "{}", upheld.text);
    assert_eq!(upheld.json()["dispute"]["status"], "upheld");
    assert_eq!(upheld.json()["entry"], serde_json::Value::Null);
    let open = get(api, "/v1/disputes?status=open", Some(READER))
        .await
        .json();
    assert_eq!(open["disputes"].as_array().unwrap().len(), 1);
    assert_eq!(
        get(api, "/v1/disputes?status=closed", Some(READER))
            .await
            .status,
        400
    );

    let m = metrics(api).await;
    for (series, want) in [
        ("scamguard_redress_refused_total{why=\"invalid\"}", 4),
        ("scamguard_redress_refused_total{why=\"rate_limited\"}", 1),
        ("scamguard_redress_disputes_total{outcome=\"opened\"}", 2),
        ("scamguard_redress_disputes_total{outcome=\"upheld\"}", 1),
    ] {
        assert_eq!(metric(&m, series), want, "{series}");
    }
    // The caller is still blocked: an upheld dispute changes nothing.
    let still = dial(&h, "rd-3", BLOCKED).await.expect("refused");
    assert_eq!(still.status(), Some(603));
    h.stop().await;
}
