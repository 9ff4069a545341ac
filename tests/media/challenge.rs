//! Issue 17, the challenge, end to end over real UDP: a suspect caller (the shipped
//! `blocklists/example.csv` warns +1202555016X, a fictional range the plausibility signal scores
//! too: 75, between `policy.challenge_at` = 70 and the block level) is answered by the agent with
//! a 183 and the `prompts/en-challenge-press.wav` prompt, decoded sample by sample; then
//! - the right digit (RFC 4733) after the prompt connects the call, untouched, audio both ways;
//! - no digit: 603+ with the redress URL, nothing reaches the callee, every port is free again,
//!   and the caller's next call weighs the failure;
//! - a full table warns instead; a hang-up frees the challenge; an emergency call is never held.
//!
//! Knows nothing of the agent's insides: only the wire, the shipped files and `/metrics`.

use scamguard::app::config::Config;
use scamguard::media::Codec;

use crate::callback::{connected_both_ways, dial_from, early_answer, ports_free, with_media};
use crate::support::agent::*;
use crate::support::http::{metric, metrics};
use crate::support::rtp::{hear_prompt, press, rtp_packet};

const SUSPECT: &str = "+12025550161";
const OTHER_SUSPECT: &str = "+12025550162";
const CALLEE: &str = "+14155550100";

/// An agent with media on (its own port range) that challenges scores from 70 on.
async fn start(configure: impl FnOnce(&mut Config)) -> (Harness, (u16, u16)) {
    with_media(4, |c| {
        c.policy.challenge_at = 70;
        configure(c);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_right_digit_connects_the_challenged_caller_with_audio_both_ways() {
    let (h, range) = start(|_| {}).await;
    let (caller, _) = dial_from(&h, "ch-digit", SUSPECT, CALLEE).await;
    let (_, leg_a) = early_answer(&h, range).await;
    assert!(
        h.down.try_recv_from(&mut [0u8; 2048]).is_err(),
        "nothing rings before the digit"
    );
    caller
        .send_to(&rtp_packet(0, 1, 160, 0xC4, 0x7F), leg_a)
        .await
        .unwrap();
    let heard = hear_prompt(&caller, leg_a, Codec::Pcmu, 0, "en-challenge-press").await;
    let seq = press(&caller, leg_a, 101, '5', 2, 4000).await;

    let (f, _) = recv(&h.down).await;
    assert!(
        f.start_line().starts_with(&format!("INVITE sip:{CALLEE}@")),
        "{}",
        f.start_line()
    );
    assert!(
        !f.hdr("From").unwrap().contains("SCAM?"),
        "untouched: {}",
        f.text
    );
    assert_eq!(f.hdr("X-Scamguard-Verdict"), None, "untouched");
    connected_both_ways(&h, &f, (&caller, leg_a), &heard, seq).await;

    let m = metrics(h.agent.api_addr).await;
    for (series, want) in [
        ("scamguard_calls_total{action=\"challenge\"}", 1),
        ("scamguard_challenges_total{outcome=\"started\"}", 1),
        ("scamguard_challenges_total{outcome=\"passed\"}", 1),
        ("scamguard_challenges_total{outcome=\"failed\"}", 0),
        ("scamguard_challenges_active", 0),
        (
            "scamguard_media_confirmations_total{outcome=\"confirmed\"}",
            1,
        ),
    ] {
        assert_eq!(metric(&m, series), want, "{series}");
    }
    let (log, _d) = h.stop().await;
    assert_eq!(log.len(), 1, "{log:?}");
    assert_eq!(log[0]["action"], "challenge");
    assert_eq!(log[0]["caller"], SUSPECT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_caller_gets_603_plus_its_ports_freed_and_its_next_call_weighs_it() {
    let (h, range) = start(|c| c.challenge.timeout_secs = 1).await;
    let (_caller, inv) = dial_from(&h, "ch-silent", SUSPECT, CALLEE).await;
    let (r183, _) = early_answer(&h, range).await;
    // A robodialer sends nothing: the prompt plays to the offer's address, then the time runs out.
    let end = recv_final(&h.up).await;
    assert_eq!(end.status(), Some(603), "{}", end.text);
    assert_eq!(end.hdr("To"), r183.hdr("To"), "the 183's early dialog ends");
    assert_eq!(
        end.hdr("Reason"),
        Some("SIP;cause=603;text=\"v=analytics1;url=https://scamguard.invalid/redress\""),
        "603+ with the redress URL"
    );
    h.send_up(&ack_for(h.up_port(), &inv, &end)).await;
    assert!(
        h.down.try_recv_from(&mut [0u8; 2048]).is_err(),
        "nothing reached the callee"
    );
    ports_free(&h, range).await;
    let m = metrics(h.agent.api_addr).await;
    assert_eq!(
        metric(&m, "scamguard_challenges_total{outcome=\"failed\"}"),
        1
    );
    assert_eq!(metric(&m, "scamguard_challenges_active"), 0);

    // The failure is a signal for that caller: 75 + 25 reaches the block level now.
    let (_again, inv) = dial_from(&h, "ch-again", SUSPECT, CALLEE).await;
    let blocked = recv_final(&h.up).await;
    assert_eq!(blocked.status(), Some(603), "{}", blocked.text);
    h.send_up(&ack_for(h.up_port(), &inv, &blocked)).await;
    let (log, _d) = h.stop().await;
    assert_eq!(log.len(), 2, "{log:?}");
    assert_eq!(log[0]["action"], "challenge");
    assert_eq!(log[1]["action"], "block");
    let failed = log[1]["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["list"] == "challenge")
        .unwrap_or_else(|| panic!("no challenge reason: {}", log[1]));
    assert!(
        failed["reason"].as_str().unwrap().starts_with("(+25) "),
        "{failed}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_table_warns_a_hang_up_frees_and_emergency_calls_are_never_held() {
    let (h, range) = start(|c| c.challenge.max_concurrent = 1).await;
    let (_first, first_inv) = dial_from(&h, "ch-first", SUSPECT, CALLEE).await;
    early_answer(&h, range).await;
    // The table is full: the next suspect is warned, never blocked.
    let (_second, _) = dial_from(&h, "ch-second", OTHER_SUSPECT, CALLEE).await;
    let (f, _) = recv(&h.down).await;
    assert!(f.start_line().contains(CALLEE), "{}", f.start_line());
    assert!(f.hdr("From").unwrap().contains("SCAM?"), "{}", f.text);
    assert!(
        f.hdr("X-Scamguard-Verdict").unwrap().starts_with("warn;"),
        "{}",
        f.text
    );
    // An emergency call from a suspect goes straight through.
    let (_third, _) = dial_from(&h, "ch-911", OTHER_SUSPECT, "911").await;
    let (f, _) = recv(&h.down).await;
    assert!(
        f.start_line().starts_with("INVITE sip:911@"),
        "{}",
        f.start_line()
    );
    assert_eq!(f.hdr("X-Scamguard-Verdict"), Some("pass"));
    // The first caller hangs up during its challenge: 487, and its ports are freed.
    h.send_up(&cancel_for(&first_inv)).await;
    let mut statuses = Vec::new();
    while statuses.len() < 2 {
        statuses.push(recv_final(&h.up).await.status());
    }
    statuses.sort();
    assert_eq!(
        statuses,
        [Some(200), Some(487)],
        "CANCEL's 200 and the INVITE's 487"
    );
    let api = h.agent.api_addr;
    crate::support::eventually("the challenge is freed", || async move {
        metric(&metrics(api).await, "scamguard_challenges_active") == 0
    })
    .await;
    let m = metrics(api).await;
    assert_eq!(
        metric(&m, "scamguard_challenges_unchallenged_total{why=\"full\"}"),
        1
    );
    assert_eq!(
        metric(&m, "scamguard_challenges_total{outcome=\"started\"}"),
        1
    );
    let (log, _d) = h.stop().await;
    assert_eq!(log.len(), 3, "{log:?}");
    assert_eq!(log[1]["action"], "warn");
    assert!(
        log[1]["note"].as_str().unwrap().contains("max_concurrent"),
        "{}",
        log[1]
    );
    assert_eq!(log[2]["action"], "pass");
}
