//! A callee's `607 Unwanted` as a report, end to end over real sockets: the real agent from
//! `app::start` on 127.0.0.1:0, raw SIP over UDP with the test playing the caller and the callee
//! behind the agent (its next hop). Two other reporters report the caller through the API first;
//! the callee's 607 is the third distinct reporter, so the caller's next INVITE is warned; two
//! more 607s from other callees make it five, and the next INVITE is blocked with a 603.
//!
//! Knows nothing of the agent's insides: only the config, the wire and the HTTP answers.

use crate::support::agent::*;
use crate::support::eventually;
use crate::support::http::{enc, get, metric, metrics, request, write_tokens, READER, WRITER};
use serde_json::json;

const CALLER: &str = "+14155552680";

async fn start(dir: &std::path::Path) -> Harness {
    let tokens = dir.join("tokens");
    write_tokens(&tokens);
    Harness::start_with(
        &[("block_reporters = 10", "block_reporters = 5")],
        move |c| {
            c.api.tokens_file = Some(tokens);
            // The test's caller dials faster than anyone does (3 calls a second warns by
            // default): per-second velocity stays out of the reports' way.
            c.signals.velocity.caller.per_second =
                scamguard::screening::signals::velocity::Level::default();
        },
    )
    .await
}

/// The caller calls `callee`; the INVITE the callee receives (or the caller's final answer when
/// the agent refused the call itself).
async fn call(h: &Harness, n: u32, callee: &str) -> (String, Result<Msg, Msg>) {
    let inv = invite(
        "UDP",
        h.sip(),
        h.up_port(),
        &format!("rep{n}@itest"),
        &format!("z9hG4bKrep{n}"),
        &format!("\"Caller\" <sip:{CALLER}@127.0.0.1>;tag=c{n}"),
        callee,
        "",
        "",
    );
    h.send_up(&inv).await;
    loop {
        tokio::select! {
            (m, _) = recv(&h.down) => return (inv, Ok(m)),
            (m, _) = recv(&h.up) => {
                if m.status() != Some(100) {
                    return (inv, Err(m));
                }
            }
        }
    }
}

/// The callee answers the forwarded INVITE with `607 Unwanted`; the caller sees it and ACKs.
async fn unwanted(h: &Harness, inv: &str, forwarded: &Msg, n: u32) {
    h.send_down(&reply(
        forwarded,
        607,
        "Unwanted",
        &format!("callee{n}"),
        "",
        "",
    ))
    .await;
    let r = recv_final(&h.up).await;
    assert_eq!(r.status(), Some(607), "{}", r.text);
    h.send_up(&ack_for(h.up_port(), inv, &r)).await;
    let (ack, _) = recv(&h.down).await;
    assert_eq!(ack.method(), "ACK", "the agent ACKs the callee's 607");
}

/// The caller's reports and promotion once the promotion is `action`: 607s are stored off the
/// SIP path.
async fn promoted(h: &Harness, action: &str) -> serde_json::Value {
    let api = h.agent.api_addr;
    let evidence = || async {
        let r = get(
            api,
            &format!("/v1/reports?caller={}", enc(CALLER)),
            Some(READER),
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.text);
        r.json()
    };
    // The report book counts a promotion a moment before its list entry is written; the next
    // call sees the entry, so wait for that too.
    let check = format!("/v1/check?caller={}", enc(CALLER));
    eventually(&format!("the caller is promoted to {action}"), || async {
        evidence().await["promotion"]["action"] == action
            && get(api, &check, Some(READER)).await.json()["action"] == action
    })
    .await;
    evidence().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_607_with_other_reporters_promotes_the_caller() {
    let dir = tempfile::tempdir().unwrap();
    let h = start(dir.path()).await;
    // Two subscribers reported the caller through the API already.
    let body = json!([
        {"caller": CALLER, "callee": "+16175550101", "category": "scam", "reporter": "+16175550101"},
        {"caller": CALLER, "callee": "+16175550102", "category": "scam", "reporter": "+16175550102"},
    ]);
    let r = request(
        h.agent.api_addr,
        "POST",
        "/v1/reports",
        Some(WRITER),
        body.to_string().as_bytes(),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.json()["promotions"], json!([]));

    // The caller is not promoted yet: its call reaches the callee untagged, who answers 607.
    let (inv, f) = call(&h, 1, "+12125550103").await;
    let f = f.unwrap_or_else(|m| panic!("the first call was refused: {}", m.text));
    assert_eq!(f.hdr("X-Scamguard-Verdict"), Some("pass"), "{}", f.text);
    unwanted(&h, &inv, &f, 1).await;
    let v = promoted(&h, "warn").await;
    let reports = v["reports"].as_array().unwrap();
    assert_eq!(reports.len(), 3, "{v}");
    assert_eq!(reports[0]["source"], "sip607");
    assert_eq!(reports[0]["reporter"], "+12125550103");
    assert_eq!(reports[0]["who"], "607");

    // The next call is warned, with the reports entry as its reason.
    let (inv, f) = call(&h, 2, "+12125550104").await;
    let f = f.unwrap_or_else(|m| panic!("a warned call was refused: {}", m.text));
    assert_eq!(
        f.hdr("From"),
        Some(format!("\"SCAM? Caller\" <sip:{CALLER}@127.0.0.1>;tag=c2").as_str()),
        "{}",
        f.text
    );
    let verdict = f.hdr("X-Scamguard-Verdict").expect("a verdict header");
    assert!(
        verdict.starts_with("warn;category=reported") && verdict.contains("3 distinct reporters"),
        "{verdict}"
    );
    // Two more callees answer 607: five distinct reporters, a block entry.
    unwanted(&h, &inv, &f, 2).await;
    let (inv, f) = call(&h, 3, "+12125550105").await;
    let f = f.unwrap_or_else(|m| panic!("a warned call was refused: {}", m.text));
    unwanted(&h, &inv, &f, 3).await;
    let v = promoted(&h, "block").await;
    assert_eq!(v["promotion"]["reporters"], 5, "{v}");
    let (_, r) = call(&h, 4, "+12125550106").await;
    let r = r.expect_err("the blocked caller reached the callee");
    assert_eq!(r.status(), Some(603), "{}", r.text);

    let m = metrics(h.agent.api_addr).await;
    assert_eq!(metric(&m, "scamguard_reports_total{outcome=\"stored\"}"), 5);
    assert_eq!(
        metric(&m, "scamguard_reports_total{outcome=\"dropped\"}"),
        0
    );
    let (log, _d) = h.stop().await;
    let actions: Vec<&str> = log.iter().map(|l| l["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["pass", "warn", "warn", "block"]);
}
