//! One operator's session in the browser, step by step, each step checked on the page and,
//! where it changes screening, on the wire.

use serde_json::json;

use crate::support::agent::{invite, recv, Harness, Msg};
use crate::support::eventually;
use crate::support::http::{request, write_tokens, ADMIN, READER};
use crate::support::webdriver::{Browser, El, Kind};

pub(crate) const CALLEE: &str = "+14155550100";
/// On the shipped example blocklist.
pub(crate) const LISTED: &str = "+12025550143";
/// Clean callers: one for the what-if and the added entry, one to be reported.
const NEW_ENTRY: &str = "+14155552672";
const REPORTED: &str = "+14155552673";

/// Send an INVITE from `caller` and return the final answer's status, or `None` when the call
/// was forwarded to the next hop instead. Messages of earlier calls (a retransmission, a late
/// timeout) are told apart by their Call-ID.
pub(crate) async fn call(h: &Harness, id: &str, caller: &str) -> Option<u16> {
    let call_id = format!("{id}@console-itest");
    let inv = invite(
        "UDP",
        h.sip(),
        h.up_port(),
        &call_id,
        &format!("z9hG4bK{id}"),
        &format!("<sip:{caller}@127.0.0.1>;tag={id}"),
        CALLEE,
        "",
        "",
    );
    h.send_up(&inv).await;
    let ours = |m: &Msg| m.hdr("Call-ID") == Some(call_id.as_str());
    loop {
        tokio::select! {
            (m, _) = recv(&h.up) => {
                if ours(&m) && m.status().is_some_and(|s| s >= 200) {
                    return m.status();
                }
            }
            (m, _) = recv(&h.down) => {
                if ours(&m) && m.method() == "INVITE" {
                    return None;
                }
            }
        }
    }
}

pub(crate) async fn log_in(b: &Browser, base: &str, token: &str) {
    b.goto(&format!("{base}/console/login")).await;
    let t = b.one("#token").await;
    b.type_in(&t, token).await;
    b.click(&b.one("#login").await).await;
    let end = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let url = b.url().await;
        if url.ends_with("/console/live") {
            return;
        }
        if std::time::Instant::now() > end {
            b.screenshot("failed-login").await;
            panic!("no live tail after login: at {url}:\n{}", b.source().await);
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// The text of the first element matching `css` once it contains `want` (asked again every
/// few milliseconds for as long as `eventually` would wait: a guard, not a measure). An element
/// the page replaced between finding and reading it (a polled fragment) is looked up again.
pub(crate) async fn wait_text(b: &Browser, css: &str, want: &str) -> String {
    let end = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        for e in b.all(css).await {
            let Some(t) = b.text_unless_replaced(&e).await else {
                continue;
            };
            if t.contains(want) {
                return t;
            }
        }
        assert!(
            std::time::Instant::now() < end,
            "never happened: {css} shows {want:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

pub(crate) async fn fill(b: &Browser, css: &str, text: &str) -> El {
    let e = b.one(css).await;
    b.clear(&e).await;
    b.type_in(&e, text).await;
    e
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_watches_checks_and_steers_in_chromium() {
    an_operator_watches_checks_and_steers(Kind::Chromium).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_watches_checks_and_steers_in_firefox() {
    an_operator_watches_checks_and_steers(Kind::Firefox).await
}

/// The scenario, the same in each browser.
async fn an_operator_watches_checks_and_steers(kind: Kind) {
    let keys = tempfile::tempdir().unwrap();
    let tokens = keys.path().join("tokens");
    write_tokens(&tokens);
    let h = Harness::start_with(&[], |c| c.api.tokens_file = Some(tokens.clone())).await;
    let api = h.agent.api_addr;
    let base = format!("http://{api}");
    let b = Browser::start(kind).await;

    // Log in.
    b.goto(&format!("{base}/console/login")).await;
    b.screenshot("01-login").await;
    log_in(&b, &base, ADMIN).await;

    // A blocked call appears in the open live tail, without a reload.
    assert_eq!(call(&h, "listed1", LISTED).await, Some(603));
    let row = wait_text(&b, "#rows tr", LISTED).await;
    assert!(row.to_ascii_lowercase().contains("block"), "{row}");
    b.screenshot("02-live").await;

    // Its detail: the reasons with their scores, the entry, the STIR result, the answer sent.
    b.click(&b.one("#rows a").await).await;
    let answer = wait_text(&b, "#answer", "603").await;
    assert!(answer.contains("Reason: SIP;cause=603"), "{answer}");
    let reasons = b.text(&b.one("#reasons").await).await;
    assert!(
        reasons.contains("example") && reasons.contains("+"),
        "{reasons}"
    );
    let entry = b.text(&b.one("#entry").await).await;
    assert!(
        entry.contains("example") && entry.contains(LISTED),
        "{entry}"
    );
    assert!(!b.text(&b.one("#stir").await).await.is_empty());
    b.screenshot("03-detail").await;

    // What if: a clean caller's call passed; an entry for it would turn that call.
    assert_eq!(call(&h, "clean1", NEW_ENTRY).await, None);
    b.goto(&format!("{base}/console/check")).await;
    fill(&b, "#whatif-pattern", NEW_ENTRY).await;
    b.click(&b.one("#whatif-entry").await).await;
    let result = wait_text(&b, "#whatif-result", "would change").await;
    assert!(result.contains(NEW_ENTRY), "{result}");
    assert_eq!(b.text(&b.one("#whatif-count").await).await, "1", "{result}");
    b.screenshot("04-whatif").await;

    // Add the entry; the next call from that caller is blocked.
    b.goto(&format!("{base}/console/lists/console-test")).await;
    fill(&b, "#add-pattern", NEW_ENTRY).await;
    b.click(&b.one("#add").await).await;
    wait_text(&b, "#outcome", "Added").await;
    wait_text(&b, "#entries", NEW_ENTRY).await;
    assert_eq!(call(&h, "clean2", NEW_ENTRY).await, Some(603));

    // Promote a reported caller: its next call is blocked.
    let report =
        json!([{"caller": REPORTED, "callee": CALLEE, "category": "scam", "reporter": "sub-1"}]);
    let r = request(
        api,
        "POST",
        "/v1/reports",
        Some(ADMIN),
        report.to_string().as_bytes(),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(call(&h, "reported1", REPORTED).await, None);
    b.goto(&format!("{base}/console/reports")).await;
    wait_text(&b, "#reports", REPORTED).await;
    b.click(
        &b.one("form[action='/console/reports/promote'] button")
            .await,
    )
    .await;
    wait_text(&b, "#outcome", "is now blocked").await;
    b.screenshot("05-reports").await;
    assert_eq!(call(&h, "reported2", REPORTED).await, Some(603));

    b.goto(&format!("{base}/console/overview")).await;
    wait_text(&b, "#top-blocked", LISTED).await;
    b.screenshot("06-overview").await;
    b.resize(390, 844).await;
    b.goto(&format!("{base}/console/live")).await;
    // Firefox keeps a window at least 500 px wide: narrower than the console's phone layout
    // (console.css, below 640 px) all the same, which is what this step shows.
    let width = b
        .run_async("arguments[arguments.length - 1](window.innerWidth)")
        .await;
    assert!(
        width.as_u64().is_some_and(|w| w < 640),
        "{}: {width} px is no phone width",
        kind.name()
    );
    b.screenshot("07-live-phone").await;
    b.resize(1280, 900).await;

    // A read operator sees no write control and is refused a forged write.
    b.click(&b.one("header form button").await).await;
    eventually("the login form after logout", || async {
        b.url().await.ends_with("/console/login")
    })
    .await;
    log_in(&b, &base, READER).await;
    b.goto(&format!("{base}/console/lists/console-test")).await;
    wait_text(&b, "#entries", NEW_ENTRY).await;
    assert!(b.all("#add-form").await.is_empty());
    assert!(b.all("form[action$='/remove']").await.is_empty());
    assert!(b.all("form[action$='/import']").await.is_empty());
    b.goto(&format!("{base}/console/reports")).await;
    wait_text(&b, "#reports", REPORTED).await;
    assert!(b.all("form[action^='/console/reports/']").await.is_empty());
    assert!(b.all("a[href='/console/audit']").await.is_empty());
    let forged = "const done = arguments[arguments.length - 1];\
        const csrf = document.querySelector('input[name=csrf]').value;\
        fetch('/console/lists/console-test/add', {method: 'POST',\
          headers: {'content-type': 'application/x-www-form-urlencoded'},\
          body: 'pattern=%2B14155552674&action=block&csrf=' + csrf})\
        .then(r => done(r.status), e => done(String(e)));";
    assert_eq!(b.run_async(forged).await, json!(403));
    let r = request(
        api,
        "GET",
        "/v1/lists/console-test/entries",
        Some(READER),
        b"",
    )
    .await;
    assert!(!r.text.contains("+14155552674"), "{}", r.text);
    drop(b);
    h.stop().await;
}
