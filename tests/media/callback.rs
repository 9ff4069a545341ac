//! Issue 17, callback protection, end to end over real UDP: a protected subscriber (the test's
//! caller, from a protected peer) dials a number of the shipped `blocklists/callback.csv`. The
//! agent answers 183 with its own SDP and plays the callback prompt as early media, which the
//! subscriber decodes sample by sample as `prompts/en-callback-*.wav`; then
//! - with the confirm digit pressed (RFC 4733) after the prompt, the call reaches the far end,
//!   anchored, and audio flows both ways;
//! - without it (a digit pressed during the prompt and a wrong one after do not count) the call
//!   ends 603, nothing reaches the far end, and every RTP port is free again;
//! - with `block = "redirect"` the far end that answers is the safe line.
//!
//! Knows nothing of the agent's insides: only the wire, the shipped files and `/metrics`.

use std::net::{SocketAddr, UdpSocket as StdUdp};

use crate::support::agent::*;
use crate::support::http::{metric, metrics};
use crate::support::rtp::{hear_prompt, media_addr, press, recv_rtp, rtp_packet, sdp};
use crate::support::{eventually, free_port_range, root};
use scamguard::app::config::Config;
use scamguard::app::{BlockAs, CallbackConfig};
use scamguard::media::Codec;
use tokio::net::UdpSocket;

/// The subscriber's number (US: English prompts) and the listed destinations.
const SUBSCRIBER: &str = "+14155550100";
const WARNED: &str = "+12025550178";
const BLOCKED: &str = "+12025550177";
const SAFE_LINE: &str = "159";

/// An agent with media on (its own port range), protecting calls from 127.0.0.1 (the test's
/// caller), with `callback` applied to the section.
async fn start(callback: impl FnOnce(&mut CallbackConfig)) -> (Harness, (u16, u16)) {
    with_media(2, |c| {
        c.callback.enabled = true;
        c.callback.peers = vec!["127.0.0.1".parse().unwrap()];
        callback(&mut c.callback);
    })
    .await
}

/// An agent with media on, `sessions` at most, on a port range of its own; `configure` sees the
/// config last.
pub(crate) async fn with_media(
    sessions: usize,
    configure: impl FnOnce(&mut Config),
) -> (Harness, (u16, u16)) {
    let base = free_port_range(20);
    let range = (base, base + 19);
    let h = Harness::start_with(&[], |c| {
        c.media.enabled = true;
        c.media.prompts_dir = root().join("prompts").display().to_string();
        c.media.port_min = range.0;
        c.media.port_max = range.1;
        c.media.max_sessions = sessions;
        configure(c);
    })
    .await;
    (h, range)
}

/// The subscriber: its RTP socket and its INVITE (PCMU and telephone-event 101) to `callee`.
async fn dial(h: &Harness, call_id: &str, callee: &str) -> (UdpSocket, String) {
    dial_from(h, call_id, SUBSCRIBER, callee).await
}

/// A caller `caller`: its RTP socket and its INVITE (PCMU and telephone-event 101) to `callee`.
pub(crate) async fn dial_from(
    h: &Harness,
    call_id: &str,
    caller: &str,
    callee: &str,
) -> (UdpSocket, String) {
    let rtp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let offer = sdp(
        "sub",
        rtp.local_addr().unwrap().port(),
        "0 101",
        "a=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\n",
    );
    let inv = invite(
        "UDP",
        h.sip(),
        h.up_port(),
        call_id,
        &format!("z9hG4bK{call_id}"),
        &format!("<sip:{caller}@127.0.0.1>;tag=sub"),
        callee,
        "",
        &offer,
    );
    h.send_up(&inv).await;
    (rtp, inv)
}

/// The agent's 183: its SDP answers the offer from a port of the range, PCMU and
/// telephone-events; returns where the subscriber's media goes (leg A).
pub(crate) async fn early_answer(h: &Harness, range: (u16, u16)) -> (Msg, SocketAddr) {
    let (r, _) = recv(&h.up).await;
    assert_eq!(r.status(), Some(183), "{}", r.text);
    assert_eq!(r.hdr("Content-Type"), Some("application/sdp"));
    assert!(r.hdr("To").unwrap().contains(";tag="), "an early dialog");
    let leg_a = media_addr(r.body());
    assert!((range.0..=range.1).contains(&leg_a.port()), "{}", r.body());
    assert!(
        r.body().contains("m=audio") && r.body().contains(" 0 101\r\n"),
        "{}",
        r.body()
    );
    assert!(r.body().contains("a=rtpmap:101 telephone-event/8000"));
    (r, leg_a)
}

/// The far end answers the forwarded INVITE `f` with SDP; the subscriber gets the 200. Returns
/// the far end's RTP socket, leg B (where it sends) and the 200.
async fn far_end_answers(h: &Harness, f: &Msg) -> (UdpSocket, SocketAddr, Msg) {
    let rtp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let leg_b = media_addr(f.body());
    let down_port = h.down.local_addr().unwrap().port();
    let answer = sdp(
        "far",
        rtp.local_addr().unwrap().port(),
        "0",
        "a=rtpmap:0 PCMU/8000\r\n",
    );
    let extra =
        format!("Contact: <sip:far@127.0.0.1:{down_port}>\r\nContent-Type: application/sdp\r\n");
    h.send_down(&reply(f, 200, "OK", "far1", &extra, &answer))
        .await;
    let ok = recv_final(&h.up).await;
    assert_eq!(ok.status(), Some(200));
    (rtp, leg_b, ok)
}

/// The far end answers the forwarded INVITE `f` and the call is anchored through the session
/// that played the caller's prompt (`heard` from leg A, the caller's next RTP sequence `seq`):
/// the caller's media stays where the 183 pointed it, the far end's audio reaches the caller
/// restamped into the prompt's stream, and the caller's reaches the far end.
pub(crate) async fn connected_both_ways(
    h: &Harness,
    f: &Msg,
    (caller, leg_a): (&UdpSocket, SocketAddr),
    heard: &crate::support::rtp::Heard,
    seq: u16,
) {
    let (far, leg_b, ok) = far_end_answers(h, f).await;
    assert_ne!(leg_b, leg_a);
    assert_eq!(
        media_addr(ok.body()),
        leg_a,
        "the caller's media stays where the 183 pointed it: relayed, not handed back"
    );
    far.send_to(&rtp_packet(0, 900, 7000, 0xFA2, 0x44), leg_b)
        .await
        .unwrap();
    let (a, from) = recv_rtp(caller).await;
    assert_eq!(from, leg_a);
    assert_eq!(
        (a.ssrc, a.seq),
        (heard.first.ssrc, heard.seq.wrapping_add(1))
    );
    assert!(a.payload.iter().all(|&b| b == 0x44));
    caller
        .send_to(&rtp_packet(0, seq, 9000, 0x5B, 0x22), leg_a)
        .await
        .unwrap();
    let (b, from) = recv_rtp(&far).await;
    assert_eq!(from, leg_b);
    assert!(b.payload.iter().all(|&x| x == 0x22));
}

/// Every port of the range can be bound again: nothing of the call holds one.
pub(crate) async fn ports_free(h: &Harness, range: (u16, u16)) {
    let api = h.agent.api_addr;
    eventually(
        "the media session ends and frees its ports",
        || async move {
            let m = metrics(api).await;
            metric(&m, "scamguard_media_sessions") == 0
                && metric(&m, "scamguard_media_ports_in_use") == 0
        },
    )
    .await;
    for p in range.0..=range.1 {
        StdUdp::bind(("127.0.0.1", p)).unwrap_or_else(|e| panic!("port {p} still held: {e}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_confirm_digit_after_the_warning_connects_the_call_anchored() {
    let (h, range) = start(|c| c.confirm = true).await;
    let (sub, _) = dial(&h, "cb-confirm", WARNED).await;
    let (_, leg_a) = early_answer(&h, range).await;
    // The subscriber's first packet opens the path; the warning follows from leg A.
    sub.send_to(&rtp_packet(0, 1, 160, 0x5B, 0x7F), leg_a)
        .await
        .unwrap();
    let heard = hear_prompt(&sub, leg_a, Codec::Pcmu, 0, "en-callback-confirm").await;
    let seq = press(&sub, leg_a, 101, '1', 2, 4000).await;

    let (f, _) = recv(&h.down).await;
    assert_eq!(f.method(), "INVITE");
    assert!(
        f.start_line().starts_with(&format!("INVITE sip:{WARNED}@")),
        "{}",
        f.start_line()
    );
    assert_eq!(
        f.hdr("X-Scamguard-Verdict"),
        None,
        "no verdict towards the listed number"
    );
    assert!(f.hdr("Record-Route").is_some());
    connected_both_ways(&h, &f, (&sub, leg_a), &heard, seq).await;

    let m = metrics(h.agent.api_addr).await;
    assert_eq!(
        metric(
            &m,
            "scamguard_media_confirmations_total{outcome=\"confirmed\"}"
        ),
        1
    );
    assert_eq!(
        metric(&m, "scamguard_callback_calls_total{action=\"warn\"}"),
        1
    );
    assert_eq!(
        metric(
            &m,
            "scamguard_callback_outcomes_total{outcome=\"continued\"}"
        ),
        1
    );
    let (log, _d) = h.stop().await;
    assert_eq!(log.len(), 1, "{log:?}");
    let l = &log[0];
    assert_eq!(
        (l["action"].as_str(), l["outbound"].as_bool()),
        (Some("warn"), Some(true))
    );
    assert_eq!(l["reasons"][0]["list"], "callback");
    assert_eq!(l["reasons"][0]["category"], "callback-refund");
    assert_eq!(l["caller"], SUBSCRIBER);
    let shown = l["callee"].as_str().unwrap();
    assert!(
        shown.starts_with("hmac-sha256:") && !shown.contains("2025550178"),
        "{shown}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_digit_the_call_ends_603_and_its_ports_are_freed() {
    let (h, range) = start(|c| {
        c.confirm = true;
        c.confirm_timeout_secs = 1;
    })
    .await;
    let (sub, inv) = dial(&h, "cb-silent", WARNED).await;
    let (r183, leg_a) = early_answer(&h, range).await;
    sub.send_to(&rtp_packet(0, 1, 160, 0x5B, 0x7F), leg_a)
        .await
        .unwrap();
    // The right digit during the warning does not count: it must be heard in full.
    let (_, _) = recv_rtp(&sub).await;
    let seq = press(&sub, leg_a, 101, '1', 2, 4000).await;
    hear_prompt_rest(&sub, leg_a).await;
    // Nor does a wrong digit after it.
    press(&sub, leg_a, 101, '2', seq, 8000).await;
    let end = recv_final(&h.up).await;
    assert_eq!(end.status(), Some(603), "{}", end.text);
    assert_eq!(end.hdr("To"), r183.hdr("To"), "the 183's early dialog ends");
    assert!(
        end.hdr("Reason").unwrap().contains("did not confirm"),
        "{}",
        end.text
    );
    h.send_up(&ack_for(h.up_port(), &inv, &end)).await;
    assert!(
        h.down.try_recv_from(&mut [0u8; 2048]).is_err(),
        "nothing reached the far end"
    );
    ports_free(&h, range).await;
    let m = metrics(h.agent.api_addr).await;
    assert_eq!(
        metric(
            &m,
            "scamguard_media_confirmations_total{outcome=\"timed_out\"}"
        ),
        1
    );
    assert_eq!(
        metric(
            &m,
            "scamguard_callback_outcomes_total{outcome=\"unconfirmed\"}"
        ),
        1
    );
    assert_eq!(
        metric(&m, "scamguard_media_prompts_total{outcome=\"played\"}"),
        1
    );
    h.stop().await;
}

/// The rest of a prompt whose first packet was read already: packets until a pause.
async fn hear_prompt_rest(sock: &UdpSocket, leg: SocketAddr) {
    let frames = crate::support::rtp::prompt_samples("en-callback-confirm").len() / 160;
    for _ in 1..frames {
        let (_, from) = recv_rtp(sock).await;
        assert_eq!(from, leg);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_destination_with_redirect_reaches_the_safe_line() {
    let (h, range) = start(|c| {
        c.block = BlockAs::Redirect;
        c.redirect_to = SAFE_LINE.into();
    })
    .await;
    let (sub, _) = dial(&h, "cb-redirect", BLOCKED).await;
    let (_, leg_a) = early_answer(&h, range).await;
    sub.send_to(&rtp_packet(0, 1, 160, 0x5B, 0x7F), leg_a)
        .await
        .unwrap();
    hear_prompt(&sub, leg_a, Codec::Pcmu, 0, "en-callback-redirect").await;
    let (f, _) = recv(&h.down).await;
    assert!(
        f.start_line()
            .starts_with(&format!("INVITE sip:{SAFE_LINE}@")),
        "diverted: {}",
        f.start_line()
    );
    assert!(
        f.hdr("To").unwrap().contains(BLOCKED),
        "the To is what was dialled"
    );
    let (safe, leg_b, _) = far_end_answers(&h, &f).await;
    safe.send_to(&rtp_packet(0, 5, 800, 0x5AFE, 0x31), leg_b)
        .await
        .unwrap();
    let (a, from) = recv_rtp(&sub).await;
    assert_eq!(
        (from, a.payload[0]),
        (leg_a, 0x31),
        "the safe line is heard"
    );
    let m = metrics(h.agent.api_addr).await;
    assert_eq!(
        metric(&m, "scamguard_callback_calls_total{action=\"redirect\"}"),
        1
    );
    let (log, _d) = h.stop().await;
    assert_eq!(log[0]["action"], "block");
    assert_eq!(log[0]["reasons"][0]["category"], "callback-tech-support");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_destinations_and_other_callers_are_not_held() {
    let (h, _range) = start(|c| c.subscriber_prefixes = vec!["+1415".into()]).await;
    // An unlisted destination: forwarded at once, without media or verdict header.
    let (_, _) = dial(&h, "cb-clean", "+12025550100").await;
    let (f, _) = recv(&h.down).await;
    assert_eq!(f.method(), "INVITE");
    assert!(f.start_line().contains("+12025550100"));
    assert_eq!(f.hdr("X-Scamguard-Verdict"), None);
    // A caller that is no protected subscriber dialling a listed number: an inbound call as
    // ever, screened by its caller, the callback entry not looked at.
    let inv = invite(
        "UDP",
        h.sip(),
        h.up_port(),
        "cb-inbound",
        "z9hG4bKcbin",
        "<sip:+16175550100@127.0.0.1>;tag=x",
        WARNED,
        "",
        "",
    );
    h.send_up(&inv).await;
    let (f, _) = recv(&h.down).await;
    assert_eq!(f.hdr("X-Scamguard-Verdict"), Some("pass"));
    // A MESSAGE of a protected subscriber to a listed number: no call, so the inbound way.
    let msg = invite(
        "UDP",
        h.sip(),
        h.up_port(),
        "cb-message",
        "z9hG4bKcbmsg",
        &format!("<sip:{SUBSCRIBER}@127.0.0.1>;tag=m"),
        WARNED,
        "",
        "",
    )
    .replacen("INVITE sip", "MESSAGE sip", 1)
    .replacen("CSeq: 1 INVITE", "CSeq: 1 MESSAGE", 1);
    h.send_up(&msg).await;
    let (f, _) = recv(&h.down).await;
    assert_eq!(f.method(), "MESSAGE");
    assert_eq!(f.hdr("X-Scamguard-Verdict"), Some("pass"));
    let m = metrics(h.agent.api_addr).await;
    assert_eq!(metric(&m, "scamguard_media_sessions_started_total"), 0);
    assert_eq!(
        metric(&m, "scamguard_callback_calls_total{action=\"pass\"}"),
        1
    );
    let (log, _d) = h.stop().await;
    assert_eq!(log.len(), 3);
    assert_eq!(log[0]["outbound"], true);
    for l in &log[1..] {
        assert!(l.get("outbound").is_none(), "{l}");
    }
}

/// Every line of every file beside the log named after it (the agent's periods, logrotate's
/// copies), by file name.
fn log_files(dir: &std::path::Path) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let name = e.ok()?.file_name().to_string_lossy().into_owned();
            name.starts_with("decisions.jsonl")
                .then(|| Some((name.clone(), std::fs::read_to_string(dir.join(&name)).ok()?)))
                .flatten()
        })
        .collect();
    v.sort();
    v
}

/// The line of `call_id`, as written, in `text`.
fn line_of<'a>(text: &'a str, call_id: &str) -> Option<&'a str> {
    let key = format!("\"call_id\":\"{call_id}\"");
    text.lines().find(|l| l.contains(&key))
}

/// Issue 17's retention, with `destination_retention = "3s"`: a protected subscriber's
/// destination is in the decision log at first (unhashed here, so that its absence shows), then
/// in no file beside it, the agent's own periods and a copy as logrotate's `copytruncate` makes
/// one alike, while an inbound call's line stays byte for byte. The console's history holds the
/// inbound call and never the destination.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destinations_are_redacted_after_the_retention_and_inbound_lines_stay() {
    let h = Harness::start_with(&[], |c| {
        c.callback.enabled = true;
        c.callback.peers = vec!["127.0.0.1".parse().unwrap()];
        c.callback.subscriber_prefixes = vec!["+1415".into()];
        c.callback.hash_destinations = false;
        c.callback.destination_retention = "3s".into();
    })
    .await;
    let (_rtp, _) = dial(&h, "ret-out", BLOCKED).await;
    assert_eq!(recv_final(&h.up).await.status(), Some(603));
    // An inbound call of a listed caller, from a caller that is no protected subscriber.
    let inv = invite(
        "UDP",
        h.sip(),
        h.up_port(),
        "ret-in",
        "z9hG4bKretin",
        "<sip:+12025550143@127.0.0.1>;tag=x",
        "+12025550100",
        "",
        "",
    );
    h.send_up(&inv).await;
    assert_eq!(recv_final(&h.up).await.status(), Some(603));

    let dir = h.dir.path().to_path_buf();
    let mut inbound = String::new();
    eventually("both calls logged, the destination as dialled", || {
        let files = log_files(&dir);
        let all: String = files.iter().map(|(_, t)| t.as_str()).collect();
        let out = line_of(&all, "ret-out").map(str::to_string);
        if let Some(l) = line_of(&all, "ret-in") {
            inbound = l.to_string();
        }
        let both = !inbound.is_empty();
        async move { both && out.is_some_and(|l| l.contains(&format!("\"callee\":\"{BLOCKED}\""))) }
    })
    .await;
    assert!(!inbound.is_empty());
    // A logrotate copy of whichever file holds the destination now.
    let (_, text) = log_files(&dir)
        .into_iter()
        .find(|(_, t)| t.contains(BLOCKED))
        .expect("a file names the destination");
    std::fs::write(dir.join("decisions.jsonl.1"), &text).unwrap();

    eventually("the destination gone from every file", || {
        let files = log_files(&dir);
        let gone = files.iter().all(|(_, t)| !t.contains(BLOCKED));
        async move { gone }
    })
    .await;
    let files = log_files(&dir);
    assert!(
        files.len() >= 3,
        "the live file, a period of the agent's and the copy: {files:?}"
    );
    for name in ["decisions.jsonl.1", "the agent's period"] {
        let text = match name {
            "decisions.jsonl.1" => &files.iter().find(|(n, _)| n == name).unwrap().1,
            _ => {
                &files
                    .iter()
                    .find(|(n, t)| n != "decisions.jsonl.1" && t.contains("ret-out"))
                    .expect("a period of the agent's holds the outbound line")
                    .1
            }
        };
        let out: serde_json::Value =
            serde_json::from_str(line_of(text, "ret-out").unwrap()).unwrap();
        assert_eq!(out["callee"], "redacted", "{name}: {out}");
        assert_eq!(out["reasons"][0]["entry"], "redacted", "{name}: {out}");
        assert_eq!(
            out["caller"], SUBSCRIBER,
            "{name}: only the destination goes"
        );
        assert_eq!(out["reasons"][0]["category"], "callback-tech-support");
        assert_eq!(out["action"], "block");
        assert_eq!(line_of(text, "ret-in"), Some(inbound.as_str()), "{name}");
    }
    // Counted once each file is replaced: the period's line and the copy's.
    let api = h.agent.api_addr;
    eventually("both redactions counted", || async move {
        metric(&metrics(api).await, "scamguard_decision_log_redacted_total") == 2
    })
    .await;
    let recent = h.agent.screener.recent.as_ref().expect("the console is on");
    let rows = recent.newest_first();
    assert!(rows.iter().any(|r| r.call_id == "ret-in"));
    assert!(rows
        .iter()
        .all(|r| r.callee != BLOCKED && r.facts.callee_raw != BLOCKED && r.call_id != "ret-out"));
    h.stop().await;
}
