//! Issue 4 through SIP, end to end: the real agent with `[media] enabled = true`, a warned caller
//! whose INVITE carries SDP, a callee that answers with SDP, and RTP sockets for both parties.
//! The SDP each side sees must point at the agent's ports; the callee must hear the prompt the
//! agent loaded (decoded and compared sample by sample with `prompts/en.wav`, with a proper RTP
//! stream: sequence +1, timestamp +160, marker on the first packet only, one SSRC), then each
//! party's audio reaches the other; after BYE every port of the range is free again.
//!
//! Knows nothing of the engine's insides: only the wire, the WAV file and `/metrics`.

use std::net::{SocketAddr, UdpSocket as StdUdp};
use std::time::{Duration, Instant};

use crate::support::agent::*;
use crate::support::http::{metric, metrics};
use crate::support::rtp::{hear_prompt, media_addr, recv_rtp, rtp_packet, sdp};
use crate::support::{eventually, free_port_range};
use scamguard::media::Codec;
use tokio::net::UdpSocket;

/// An even port range of `n` ports none of which is bound now; tests run in parallel and each
/// gets its own range. A port taken between this check and the agent's bind shows up as a
/// refused session (the test fails loudly, it never passes by accident).
fn free_range(n: u16) -> (u16, u16) {
    let base = free_port_range(n);
    (base, base + n - 1)
}

async fn start(range: (u16, u16)) -> Harness {
    Harness::start_with(&[("enabled = false", "enabled = true")], |c| {
        c.media.port_min = range.0;
        c.media.port_max = range.1;
        c.media.max_sessions = 2;
    })
    .await
}

async fn announced_call(codec: Codec) {
    let range = free_range(20);
    let h = start(range).await;
    let in_range = |a: SocketAddr| {
        a.ip().to_string() == "127.0.0.1" && (range.0..=range.1).contains(&a.port())
    };
    let caller_rtp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let callee_rtp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let pt = codec.static_pt();
    let rtpmap = format!("a=rtpmap:{pt} {}/8000\r\n", codec.name());
    let offer = sdp(
        "alice",
        caller_rtp.local_addr().unwrap().port(),
        &pt.to_string(),
        &rtpmap,
    );
    let port = h.up_port();
    let call_id = format!("announce-{}@itest", codec.name());
    let inv = invite(
        "UDP",
        h.sip(),
        port,
        &call_id,
        "z9hG4bKann1",
        "\"Alice\" <sip:+12025550161@127.0.0.1>;tag=ann",
        "+16175551234",
        "",
        &offer,
    );
    h.send_up(&inv).await;
    let (f, _) = recv(&h.down).await;
    assert!(f
        .hdr("X-Scamguard-Verdict")
        .unwrap()
        .starts_with("warn;category=example;"));
    let leg_b = media_addr(f.body());
    assert!(in_range(leg_b), "callee sees the agent: {}", f.body());
    assert_ne!(f.body(), offer);
    assert_eq!(f.hdr("Content-Length").unwrap(), f.body().len().to_string());

    let answer = sdp(
        "bob",
        callee_rtp.local_addr().unwrap().port(),
        &pt.to_string(),
        &rtpmap,
    );
    let down_port = h.down.local_addr().unwrap().port();
    let contact = format!("Contact: <sip:callee@127.0.0.1:{down_port}>\r\n");
    h.send_down(&reply(
        &f,
        200,
        "OK",
        "bob1",
        &format!("{contact}Content-Type: application/sdp\r\n"),
        &answer,
    ))
    .await;
    let answered_at = Instant::now();
    let ok = recv_final(&h.up).await;
    assert_eq!(ok.status(), Some(200));
    let leg_a = media_addr(ok.body());
    assert!(in_range(leg_a), "caller sees the agent: {}", ok.body());
    assert_ne!(leg_a, leg_b);

    // The callee's first packet starts the prompt; it is relayed to the caller like any audio.
    let kick = rtp_packet(pt, 1000, 5000, 0xCA11EE, 0x55);
    callee_rtp.send_to(&kick, leg_b).await.unwrap();

    let heard = hear_prompt(&callee_rtp, leg_b, codec, pt, "en").await;
    let (first, frames, last_at, seq) = (&heard.first, heard.frames, heard.last_at, heard.seq);
    // Not faster than real time: frame i is not sent before i * 20 ms after the answer.
    assert!(
        last_at.duration_since(answered_at) >= Duration::from_millis(20 * (frames as u64 - 1)),
        "{frames} frames in {:?}",
        last_at.duration_since(answered_at)
    );

    // The kick went on to the caller, from the caller's leg.
    let (k, from) = recv_rtp(&caller_rtp).await;
    assert_eq!(from, leg_a);
    assert_eq!((k.seq, k.ssrc, k.payload[0]), (1000, 0xCA11EE, 0x55));

    // After the prompt: the caller's audio continues our stream to the callee.
    caller_rtp
        .send_to(&rtp_packet(pt, 7, 900, 0xA11CE, 0x11), leg_a)
        .await
        .unwrap();
    let (c, from) = recv_rtp(&callee_rtp).await;
    assert_eq!(from, leg_b);
    assert_eq!(
        c.ssrc, first.ssrc,
        "caller audio continues the prompt's SSRC"
    );
    assert_eq!(c.seq, seq.wrapping_add(1));
    assert!(c.payload.iter().all(|&b| b == 0x11) && c.payload.len() == 160);
    caller_rtp
        .send_to(&rtp_packet(pt, 8, 1060, 0xA11CE, 0x12), leg_a)
        .await
        .unwrap();
    let (c2, _) = recv_rtp(&callee_rtp).await;
    assert_eq!(
        (c2.seq, c2.ts, c2.marker),
        (c.seq.wrapping_add(1), c.ts.wrapping_add(160), false)
    );
    assert_eq!(c2.payload[0], 0x12);
    // And the callee's audio reaches the caller.
    callee_rtp
        .send_to(&rtp_packet(pt, 1001, 5160, 0xCA11EE, 0x66), leg_b)
        .await
        .unwrap();
    let (k2, from) = recv_rtp(&caller_rtp).await;
    assert_eq!(from, leg_a);
    assert_eq!((k2.seq, k2.payload[0]), (1001, 0x66));

    // BYE through the Route: the media session ends and every port is free again.
    let rr = ok.hdr("Record-Route").unwrap().to_string();
    let to = ok.hdr("To").unwrap().to_string();
    let in_dialog = |method: &str, cseq: &str, branch: &str| {
        format!(
            "{method} sip:callee@127.0.0.1:{down_port} SIP/2.0\r\n\
             Via: SIP/2.0/UDP 127.0.0.1:{port};branch={branch}\r\nRoute: {rr}\r\nMax-Forwards: 70\r\n\
             From: \"Alice\" <sip:+12025550161@127.0.0.1>;tag=ann\r\nTo: {to}\r\nCall-ID: {call_id}\r\n\
             CSeq: {cseq}\r\nContent-Length: 0\r\n\r\n"
        )
    };
    h.send_up(&in_dialog("ACK", "1 ACK", "z9hG4bKannack")).await;
    assert_eq!(recv(&h.down).await.0.method(), "ACK");
    h.send_up(&in_dialog("BYE", "2 BYE", "z9hG4bKannbye")).await;
    let (bye, _) = recv(&h.down).await;
    assert_eq!(bye.method(), "BYE");
    h.send_down(&reply(&bye, 200, "OK", "bob1", "", "")).await;
    assert_eq!(recv_final(&h.up).await.status(), Some(200));

    let api = h.agent.api_addr;
    eventually("the media session ends after BYE", || async move {
        metric(&metrics(api).await, "scamguard_media_sessions") == 0
    })
    .await;
    let m = metrics(api).await;
    assert_eq!(metric(&m, "scamguard_media_sessions"), 0, "{m}");
    assert_eq!(metric(&m, "scamguard_media_ports_in_use"), 0);
    assert_eq!(metric(&m, "scamguard_media_sessions_started_total"), 1);
    assert_eq!(
        metric(&m, "scamguard_media_prompts_total{outcome=\"played\"}"),
        1,
        "{m}"
    );
    for p in range.0..=range.1 {
        StdUdp::bind(("127.0.0.1", p))
            .unwrap_or_else(|e| panic!("port {p} still held after BYE: {e}"));
    }
    let (log, _d) = h.stop().await;
    assert_eq!(log.len(), 1);
    assert_eq!(log[0]["action"], "warn");
    assert!(log[0].get("note").is_none(), "{}", log[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warned_call_hears_the_prompt_in_pcmu() {
    announced_call(Codec::Pcmu).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warned_call_hears_the_prompt_in_pcma() {
    announced_call(Codec::Pcma).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warned_call_without_g711_is_forwarded_unanchored_and_logged_why() {
    let range = free_range(20);
    let h = start(range).await;
    let offer = sdp("alice", 40000, "9", "a=rtpmap:9 G722/8000\r\n");
    let inv = invite(
        "UDP",
        h.sip(),
        h.up_port(),
        "nog711@itest",
        "z9hG4bKnog711",
        "<sip:+12025550162@127.0.0.1>;tag=n",
        "+16175551234",
        "",
        &offer,
    );
    h.send_up(&inv).await;
    let (f, _) = recv(&h.down).await;
    assert!(f
        .hdr("X-Scamguard-Verdict")
        .unwrap()
        .starts_with("warn;category=example;"));
    assert_eq!(f.body(), offer, "SDP untouched");
    let m = metrics(h.agent.api_addr).await;
    assert_eq!(metric(&m, "scamguard_media_sessions_started_total"), 0);
    let (log, _d) = h.stop().await;
    assert_eq!(log.len(), 1);
    assert_eq!(log[0]["action"], "warn");
    assert_eq!(
        log[0]["note"],
        "announcement skipped: neither PCMU nor PCMA is offered"
    );
}

/// SRTP (RFC 4568 SDES keys, on RTP/SAVP or offered "best effort" on RTP/AVP) cannot carry a
/// cleartext prompt: the warned call goes on tagged, its SDP untouched, and the log says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warned_call_with_srtp_gets_no_announcement_and_is_logged_why() {
    let range = free_range(20);
    let h = start(range).await;
    let crypto =
        "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz\r\n";
    let savp = sdp("alice", 40000, "0", crypto).replace("RTP/AVP", "RTP/SAVP");
    let avp_keyed = sdp("alice", 40002, "0", crypto);
    for (i, offer) in [savp, avp_keyed].iter().enumerate() {
        let inv = invite(
            "UDP",
            h.sip(),
            h.up_port(),
            &format!("srtp{i}@itest"),
            &format!("z9hG4bKsrtp{i}"),
            "<sip:+12025550162@127.0.0.1>;tag=s",
            "+16175551234",
            "",
            offer,
        );
        h.send_up(&inv).await;
        let (f, _) = recv(&h.down).await;
        assert!(f
            .hdr("X-Scamguard-Verdict")
            .unwrap()
            .starts_with("warn;category=example;"));
        assert_eq!(f.body(), offer.as_str(), "SDP untouched: no cleartext leg");
    }
    let m = metrics(h.agent.api_addr).await;
    assert_eq!(metric(&m, "scamguard_media_sessions_started_total"), 0);
    let (log, _d) = h.stop().await;
    assert_eq!(log.len(), 2);
    for row in &log {
        assert_eq!(row["action"], "warn");
        assert_eq!(
            row["note"],
            "announcement skipped: the media is encrypted (SRTP/DTLS)"
        );
    }
}
