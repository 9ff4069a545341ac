//! Velocity at scale and over SIP.
//!
//! Bounded memory under a flood: a million calls from random caller numbers (and random source
//! addresses), each cancelled after a second, plus a flood of reports from random reporters. Every
//! table stays within its cap, and a caller seen again after the flood is still counted.
//!
//! Over SIP, with the real agent from `app::start`: an appointment-reminder line whose calls are
//! answered passes at a rate where a caller whose calls go unanswered is warned, then blocked.

use std::sync::Arc;

use scamguard::screening::signals::brands::Brands;
use scamguard::screening::signals::report_book::{Report, ReportSource, ReportsConfig};
use scamguard::screening::signals::stir::{CertLookup, CertState};
use scamguard::screening::signals::velocity::{Level, Thresholds, VelocityConfig};
use scamguard::screening::signals::wangiri::{CallEnd, WangiriConfig};
use scamguard::screening::signals::{evaluate, SignalInput, SignalState, SignalsConfig};

use crate::support::agent::*;
use crate::support::http::get;

struct NoCerts;
impl CertLookup for NoCerts {
    fn lookup(&self, _: &str) -> CertState {
        CertState::Pending
    }
}

const CAP: usize = 20_000;

#[test]
fn a_million_random_callers_stay_within_the_caps() {
    let cfg = SignalsConfig {
        velocity: VelocityConfig {
            max_keys: CAP,
            source: Thresholds {
                per_minute: Level::new(1_000, 5_000),
                ..Thresholds::default()
            },
            ..VelocityConfig::default()
        },
        wangiri: WangiriConfig {
            max_keys: CAP,
            ..WangiriConfig::default()
        },
        reports: ReportsConfig {
            max_callers: CAP,
            ..ReportsConfig::default()
        },
        max_calls: CAP,
        ..SignalsConfig::default()
    };
    let state = SignalState::new(cfg, Arc::new(Brands::default()), Arc::new(NoCerts));
    let mut rng = fastrand::Rng::with_seed(7);
    let t0: u64 = 1_790_000_000_000;
    let mut id = String::new();
    let mut caller = String::new();
    let mut callee = String::new();
    let mut source = String::new();
    for i in 0..1_000_000u64 {
        use std::fmt::Write;
        id.clear();
        caller.clear();
        callee.clear();
        source.clear();
        let _ = write!(id, "flood-{i}");
        let _ = write!(
            caller,
            "+1{}{:09}",
            rng.u32(2..10),
            rng.u32(0..1_000_000_000)
        );
        let _ = write!(
            callee,
            "+44{}",
            7_000_000_000u64 + rng.u64(0..1_000_000_000)
        );
        let _ = write!(source, "198.51.{}.{}", rng.u8(..), rng.u8(..));
        let now = t0 + i; // a thousand calls a second
        let input = SignalInput {
            call_id: &id,
            caller: Some(&caller),
            callee: Some(&callee),
            source: Some(&source),
            ..Default::default()
        };
        evaluate(&input, &state, now);
        // Most calls end (cancelled within a second: each one a wangiri candidate); some never
        // send an end event at all, as lost calls do.
        if i % 10 != 0 {
            state.call_ended(&id, CallEnd::Cancelled, now + 1_000);
        }
        if i % 5 == 0 {
            let r = Report {
                caller: caller.clone(),
                callee: None,
                category: "scam".into(),
                reporter: format!("reporter-{}", rng.u32(..)),
                at: (now / 1000) as i64,
                source: ReportSource::Api,
            };
            state.report(&r, (now / 1000) as i64);
        }
    }
    let (callers, sources, prefixes) = state.velocity().sizes();
    let (numbers, ranges) = state.wangiri().sizes();
    let cap = state.velocity().capacity();
    assert!((CAP..CAP + 64).contains(&cap), "{cap}");
    for (name, n) in [
        ("velocity callers", callers),
        ("velocity sources", sources),
        ("velocity prefixes", prefixes),
        ("wangiri numbers", numbers),
        ("wangiri ranges", ranges),
        ("reports", state.reports().len()),
        ("calls in progress", state.calls_tracked()),
    ] {
        assert!(n <= cap, "{name}: {n} slots, cap {cap}");
        assert!(n > 0, "{name}: nothing tracked, the flood was not counted");
    }

    // After the flood, a burst from one caller is still seen: recent keys are kept.
    let t1 = t0 + 1_000_000;
    let mut last = None;
    for i in 0..12u64 {
        let id = format!("burst-{i}");
        let callee = format!("+4420718387{i:02}");
        let input = SignalInput {
            call_id: &id,
            caller: Some("+12027620143"),
            callee: Some(&callee),
            ..Default::default()
        };
        last = Some(evaluate(&input, &state, t1 + i * 50));
    }
    let hits = last.unwrap().hits;
    assert!(
        hits.iter()
            .any(|h| h.reason.source == "velocity" && h.score >= 100),
        "{hits:#?}"
    );

    // And an idle period frees everything without any new call.
    state.sweep(t1 + 10 * 86_400_000 + 1);
    let (callers, sources, prefixes) = state.velocity().sizes();
    assert_eq!(
        (
            callers,
            sources,
            prefixes,
            state.calls_tracked(),
            state.reports().len()
        ),
        (0, 0, 0, 0, 0)
    );
}

// ------------------------------------------------------------------ over SIP

/// One call from `caller` to `callee` through the agent; the callee answers it (200, and the
/// caller ACKs through the agent) or refuses it with 480. Returns what the caller's INVITE
/// became: `pass` or `warn` (forwarded) or the agent's final status (`603`).
async fn sip_call(h: &Harness, id: &str, caller: &str, callee: &str, answer: bool) -> String {
    let port = h.up_port();
    let from = format!("<sip:{caller}@127.0.0.1>;tag={id}");
    let inv = invite(
        "UDP",
        h.sip(),
        port,
        id,
        &format!("z9hG4bK{id}"),
        &from,
        callee,
        "",
        "",
    );
    h.send_up(&inv).await;
    let f = tokio::select! {
        r = recv_final(&h.up) => return r.status().unwrap().to_string(),
        f = recv(&h.down) => f.0,
    };
    assert_eq!(f.method(), "INVITE", "{}", f.text);
    let verdict = f.hdr("X-Scamguard-Verdict").unwrap();
    let shown = verdict.split(';').next().unwrap().to_string();
    if !answer {
        h.send_down(&reply(&f, 480, "Temporarily Unavailable", "u", "", ""))
            .await;
        assert_eq!(recv_final(&h.up).await.status(), Some(480));
        assert_eq!(recv(&h.down).await.0.method(), "ACK");
        return shown;
    }
    let down_port = h.down.local_addr().unwrap().port();
    let contact = format!("Contact: <sip:callee@127.0.0.1:{down_port}>\r\n");
    h.send_down(&reply(&f, 200, "OK", "a", &contact, "")).await;
    let ok = recv_final(&h.up).await;
    assert_eq!(ok.status(), Some(200), "{}", ok.text);
    // The ACK goes through the agent, as the Record-Route asks; the call stays up, talking.
    let ack = format!(
        "ACK sip:callee@127.0.0.1:{down_port} SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK{id}ack\r\nRoute: {}\r\n\
         Max-Forwards: 70\r\nFrom: {from}\r\nTo: {}\r\nCall-ID: {id}\r\nCSeq: 1 ACK\r\n\
         Content-Length: 0\r\n\r\n",
        ok.hdr("Record-Route").unwrap(),
        ok.hdr("To").unwrap()
    );
    h.send_up(&ack).await;
    assert_eq!(recv(&h.down).await.0.method(), "ACK");
    shown
}

/// The case: a reminder line calling a dozen patients, most of whom answer and talk,
/// passes every call, although twelve distinct callees is three times the warn level set here.
/// A caller at the same rate whose calls all go unanswered is warned once four have come back,
/// and blocked at the block level. The suggested thresholds count the reminder line's minute
/// and leave the other's out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reminder_line_passes_over_sip_where_unanswered_calls_are_flagged() {
    const TOKEN: &str = "velocity-sip-read-token-0123456789";
    let tokens = tempfile::tempdir().unwrap();
    let tokens_file = tokens.path().join("tokens");
    std::fs::write(&tokens_file, format!("tester read {TOKEN}\n")).unwrap();
    let h = Harness::start_with(&[], |c| {
        c.api.tokens_file = Some(tokens_file.clone());
        let v = &mut c.signals.velocity;
        // The test dials faster than any line does: per second is off, and four outcomes are
        // enough to judge (five by default).
        v.min_outcomes = 4;
        v.caller.per_second = Level::default();
        v.caller.per_minute = Level::new(4, 8);
        v.caller.distinct_callees = Level::new(4, 8);
    })
    .await;
    drop(tokens);

    let mut reminder = Vec::new();
    for i in 0..12 {
        // Three patients in four pick up.
        let answer = i % 4 != 3;
        let callee = format!("+1617555{:04}", 3000 + i);
        reminder.push(sip_call(&h, &format!("rem{i}"), "+14155552143", &callee, answer).await);
    }
    assert_eq!(reminder, ["pass"; 12]);

    let mut unanswered = Vec::new();
    for i in 0..12 {
        let callee = format!("+1617555{:04}", 4000 + i);
        unanswered.push(sip_call(&h, &format!("rob{i}"), "+13125552177", &callee, false).await);
    }
    assert_eq!(
        unanswered,
        [
            "pass", "pass", "pass", "pass", "warn", "warn", "warn", "603", "603", "603", "603",
            "603"
        ]
    );

    let r = get(
        h.agent.api_addr,
        "/v1/signals/velocity/suggest",
        Some(TOKEN),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let v = r.json();
    assert!(v["caller_minutes"].as_u64().unwrap() >= 1, "{v}");
    assert!(v["excluded_minutes"].as_u64().unwrap() >= 1, "{v}");

    let (log, _d) = h.stop().await;
    let of = |id: &str| {
        log.iter()
            .find(|l| l["call_id"] == id)
            .unwrap_or_else(|| panic!("no decision for {id}"))
    };
    for i in 0..12 {
        let l = of(&format!("rem{i}"));
        assert_eq!(l["action"], "pass", "{l}");
        assert_eq!(l["reasons"], serde_json::json!([]), "{l}");
    }
    let warned = of("rob4");
    let velocity: Vec<&serde_json::Value> = warned["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["list"] == "velocity")
        .collect();
    assert_eq!(velocity.len(), 1, "{warned}");
    assert_eq!(warned["reasons"].as_array().unwrap().len(), 1, "{warned}");
    assert_eq!(
        velocity[0]["reason"],
        "(+50) caller calls-per-minute 5 (warn), distinct-callees 5 (warn); of 4 recent calls with an outcome: 0 talked, 4 unanswered",
        "{warned}"
    );
}
