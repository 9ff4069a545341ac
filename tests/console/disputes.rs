//! Issue 17's redress in the console: a blocked caller sends a dispute on the public redress
//! form (in the browser), an operator lifts it on the console's Disputes page, and the caller's
//! next call over SIP passes.

use crate::browser::{call, fill, log_in, wait_text, LISTED};
use crate::support::agent::Harness;
use crate::support::http::{write_tokens, WRITER};
use crate::support::webdriver::{Browser, Kind};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dispute_sent_on_the_form_is_lifted_in_the_console_in_chromium() {
    a_dispute_sent_on_the_form_is_lifted_in_the_console(Kind::Chromium).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dispute_sent_on_the_form_is_lifted_in_the_console_in_firefox() {
    a_dispute_sent_on_the_form_is_lifted_in_the_console(Kind::Firefox).await
}

/// The scenario, the same in each browser.
async fn a_dispute_sent_on_the_form_is_lifted_in_the_console(kind: Kind) {
    let keys = tempfile::tempdir().unwrap();
    let tokens = keys.path().join("tokens");
    write_tokens(&tokens);
    let h = Harness::start_with(&[], |c| {
        c.api.tokens_file = Some(tokens.clone());
        c.redress.enabled = true;
        c.redress.listen = "127.0.0.1:0".into();
    })
    .await;
    let base = format!("http://{}", h.agent.api_addr);
    let site = h.agent.redress_addr.expect("the redress listener");
    let b = Browser::start(kind).await;

    assert_eq!(call(&h, "disputed1", LISTED).await, Some(603));

    // The caller disputes the block on the public form.
    b.goto(&format!("http://{site}/redress")).await;
    fill(&b, "input[name=number]", LISTED).await;
    fill(&b, "input[name=contact]", "bakery@example.org").await;
    fill(
        &b,
        "textarea[name=statement]",
        "We are the \"Corner\" bakery & we only call customers back.",
    )
    .await;
    b.click(&b.one("button[type=submit]").await).await;
    let done = wait_text(&b, "p", "Your dispute is number").await;
    let id: i64 = done
        .split("number ")
        .nth(1)
        .and_then(|r| r.split('.').next())
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no dispute number in {done:?}"));
    b.screenshot("11-redress-form").await;

    // The operator sees it, escaped as text, and lifts it.
    log_in(&b, &base, WRITER).await;
    b.goto(&format!("{base}/console/disputes")).await;
    let row = wait_text(&b, &format!("#dispute-{id}"), LISTED).await;
    assert!(
        row.contains("bakery@example.org")
            && row.contains("We are the \"Corner\" bakery & we only call customers back."),
        "{row}"
    );
    b.screenshot("12-disputes").await;
    b.click(&b.one(&format!("#lift-{id}")).await).await;
    wait_text(&b, "#outcome", &format!("Dispute {id} lifted")).await;
    assert!(b.all(&format!("#dispute-{id}")).await.is_empty());
    b.screenshot("13-dispute-lifted").await;

    // The next call from that number passes.
    assert_eq!(call(&h, "disputed2", LISTED).await, None);
    drop(b);
    h.stop().await;
}
