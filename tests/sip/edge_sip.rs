//! Issue 13, "Hold the edge", the SIP items, over real sockets: the whole agent from
//! `app::start` with the shipped config and lists (`support::agent`), a UDP socket or a TCP
//! stream playing the caller, and a UDP socket playing the callee behind it. Each test sends
//! what an attacker or a careless peer would and checks what reaches the wire and the metrics.
//! The generated malformed corpus is also run through the sans-IO core, where every label must
//! hold.
//!
//! Knows nothing of the agent's insides beyond the SIP library's public face.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use scamguard::sip::framing::Framer;
use scamguard::sip::msg::{Limits, Message};
use scamguard::sip::{Peer, Proxy, SipConfig, SipStats, Transport};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpStream, UdpSocket};

use crate::malformed;
use crate::support::agent::*;
use crate::support::eventually;
use crate::support::hook::TestHook;
use crate::support::http::{metric, metrics};

const CLEAN: &str = "+14155552671";
const BLOCKED: &str = "+12025550143";
/// Listed `warn` in `blocklists/example.csv`.
const WARNED: &str = "+12025550161";
const CALLEE: &str = "+16175551234";

/// An INVITE from `caller` (display name `Alice`, From tag `a1`) on the harness's caller
/// socket.
fn call(h: &Harness, call_id: &str, branch: &str, caller: &str, extra: &str) -> String {
    invite(
        "UDP",
        h.sip(),
        h.up_port(),
        call_id,
        branch,
        &format!("\"Alice\" <sip:{caller}@127.0.0.1>;tag=a1"),
        CALLEE,
        extra,
        "",
    )
}

/// `req` with its method (request line and CSeq) renamed.
fn as_method(req: &str, method: &str) -> String {
    let (first, rest) = req.split_once(' ').unwrap();
    format!("{method} {rest}").replace(&format!("CSeq: 1 {first}"), &format!("CSeq: 1 {method}"))
}

/// One metric of the agent's `/metrics`.
async fn metric_now(h: &Harness, series: &str) -> u64 {
    metric(&metrics(h.agent.api_addr).await, series)
}

/// The callee receives `marker`'s INVITE next: whatever was sent before it did not reach the
/// callee. The stray is first seen taken in (the UDP counter), since the agent's receive
/// workers may take datagrams out of order. Retransmissions of earlier markers' INVITEs (no
/// callee answers them) are let by.
async fn next_at_callee_is(h: &Harness, received: u64, marker: &str, earlier: &str, what: &str) {
    let api = h.agent.api_addr;
    eventually("the agent took the stray in", || async move {
        udp_in(api).await >= received
    })
    .await;
    let branch = format!("z9hG4bK{}", marker.replace(['@', '.'], "-"));
    h.send_up(&call(h, marker, &branch, CLEAN, "")).await;
    loop {
        let (m, _) = recv(&h.down).await;
        let id = m.hdr("Call-ID").unwrap_or("");
        if m.method() == "INVITE" && id == marker {
            return;
        }
        assert!(
            m.method() == "INVITE" && id.starts_with(earlier),
            "{what} reached the callee:\n{}",
            m.text
        );
    }
}

/// A made-up To tag makes no request in-dialog: a blocked caller's INVITE with one is still
/// screened and refused; a clean one is screened and goes to the next hop only, not where its
/// Route and Request-URI point.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_made_up_to_tag_bypasses_no_screening() {
    let h = Harness::start(&[]).await;
    let elsewhere = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let tagged = |s: String| {
        s.replace(
            &format!("To: <sip:{CALLEE}@{}>", h.sip()),
            &format!("To: <sip:{CALLEE}@{}>;tag=fake", h.sip()),
        )
    };
    let inv = tagged(call(&h, "bypass1@itest", "z9hG4bKbyp1", BLOCKED, ""));
    assert!(inv.contains(";tag=fake"));
    h.send_up(&inv).await;
    let r = recv_final(&h.up).await;
    assert_eq!(r.start_line(), "SIP/2.0 603 Network Blocked");

    let other = elsewhere.local_addr().unwrap();
    let relay = tagged(call(
        &h,
        "bypass2@itest",
        "z9hG4bKbyp2",
        CLEAN,
        &format!("Route: <sip:{};lr>, <sip:{other};lr>\r\n", h.sip()),
    ))
    .replacen(
        &format!("@{} SIP/2.0", h.sip()),
        &format!("@{other} SIP/2.0"),
        1,
    );
    h.send_up(&relay).await;
    let (f, _) = recv(&h.down).await;
    assert_eq!(f.hdr("Call-ID"), Some("bypass2@itest"));
    assert_eq!(f.hdr("X-Scamguard-Verdict"), Some("pass"), "screened");
    assert_eq!(
        metric_now(&h, "sip_unknown_dialog_total").await,
        2,
        "both counted"
    );
    let (log, _d) = h.stop().await;
    let ids: Vec<&str> = log.iter().filter_map(|l| l["call_id"].as_str()).collect();
    assert_eq!(ids, ["bypass1@itest", "bypass2@itest"], "both decided");
}

/// An out-of-dialog MESSAGE is screened: from a blocked number refused, from a warned one
/// passed with the verdict header and nothing else changed. REGISTER gets one answer for
/// every user.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_is_screened_and_register_reveals_nothing() {
    let h = Harness::start(&[]).await;
    let blocked = as_method(
        &call(&h, "msg1@itest", "z9hG4bKmsg1", BLOCKED, ""),
        "MESSAGE",
    );
    h.send_up(&blocked).await;
    assert_eq!(
        recv_final(&h.up).await.start_line(),
        "SIP/2.0 603 Network Blocked"
    );
    let warned = as_method(
        &call(&h, "msg2@itest", "z9hG4bKmsg2", WARNED, ""),
        "MESSAGE",
    );
    h.send_up(&warned).await;
    let (f, _) = recv(&h.down).await;
    assert_eq!(f.method(), "MESSAGE");
    assert!(
        f.hdr("X-Scamguard-Verdict").unwrap().starts_with("warn;"),
        "{}",
        f.text
    );
    assert_eq!(
        f.hdr("From"),
        Some(format!("\"Alice\" <sip:{WARNED}@127.0.0.1>;tag=a1").as_str())
    );
    assert_eq!(f.hdr("Record-Route"), None);

    let mut answers = Vec::new();
    for (n, user) in ["100", "101", "9999", "admin"].iter().enumerate() {
        let reg = format!(
            "REGISTER sip:{sip} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bKreg{n}\r\n\
             Max-Forwards: 70\r\nFrom: <sip:{user}@{sip}>;tag=r{n}\r\nTo: <sip:{user}@{sip}>\r\n\
             Call-ID: reg{n}@itest\r\nCSeq: 1 REGISTER\r\nContact: <sip:{user}@127.0.0.1:{port}>\r\n\
             User-Agent: itest-phone/1.0\r\nContent-Length: 0\r\n\r\n",
            sip = h.sip(),
            port = h.up_port()
        );
        h.send_up(&reg).await;
        let r = recv_final(&h.up).await;
        answers.push((
            r.start_line().to_string(),
            r.hdr("Allow").map(str::to_string),
        ));
    }
    assert!(
        answers.iter().all(|a| *a == answers[0])
            && answers[0].0 == "SIP/2.0 405 Method Not Allowed",
        "{answers:?}"
    );
    assert_eq!(metric_now(&h, "sip_register_refused_total").await, 4);
    let (log, _d) = h.stop().await;
    let msgs: Vec<_> = log
        .iter()
        .filter(|l| l["call_id"].as_str().unwrap_or("").starts_with("msg"))
        .collect();
    assert_eq!(msgs.len(), 2, "{log:?}");
    assert_eq!(msgs[0]["action"], "block");
    assert_eq!(msgs[1]["action"], "warn");
}

/// Inside a dialog the agent Record-Routed, a Route naming another address is not followed:
/// the request goes back along the call. A 2xx retransmission whose second Via was forged
/// goes nowhere and is counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_open_relay_and_no_forged_response_route() {
    let h = Harness::start(&[]).await;
    let elsewhere = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let other = elsewhere.local_addr().unwrap();
    let inv = call(&h, "relay1@itest", "z9hG4bKrel1", CLEAN, "");
    h.send_up(&inv).await;
    let (f, _) = recv(&h.down).await;
    let ok = reply(
        &f,
        200,
        "OK",
        "callee1",
        "Contact: <sip:callee@127.0.0.1:1>\r\n",
        "",
    );
    h.send_down(&ok).await;
    let r = recv_final(&h.up).await;
    assert_eq!(r.status(), Some(200));
    let rr = r
        .hdr("Record-Route")
        .expect("the agent stays in the dialog");
    let info = format!(
        "INFO sip:callee@{other} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bKrel2\r\n\
         Route: {rr}, <sip:{other};lr>\r\nMax-Forwards: 70\r\n\
         From: \"Alice\" <sip:{CLEAN}@127.0.0.1>;tag=a1\r\nTo: {to}\r\nCall-ID: relay1@itest\r\n\
         CSeq: 2 INFO\r\nContent-Length: 0\r\n\r\n",
        port = h.up_port(),
        to = r.hdr("To").unwrap()
    );
    h.send_up(&info).await;
    let (m, _) = recv(&h.down).await;
    assert_eq!(
        (m.method(), m.hdr("Call-ID")),
        ("INFO", Some("relay1@itest")),
        "back along the call, not to {other}"
    );
    // The callee's 2xx again, with the caller's Via replaced by the other socket's.
    let forged = ok.replace(
        &format!("127.0.0.1:{};branch=z9hG4bKrel1", h.up_port()),
        &format!("{other};branch=z9hG4bKrel1"),
    );
    assert_ne!(forged, ok);
    h.send_down(&forged).await;
    let api = h.agent.api_addr;
    eventually("the forged response is counted", || async move {
        metric(&metrics(api).await, "sip_forged_responses_total") == 1
    })
    .await;
    // The true one still finds the caller.
    h.send_down(&ok).await;
    assert_eq!(recv_final(&h.up).await.status(), Some(200));
}

/// No amplification: a blocked INVITE that is never acknowledged gets one 603 per INVITE
/// sent, and its transaction is freed at Timer H with nothing resent (T1 is 10 ms here, so
/// RFC 3261's Timer G would have resent it many times by then).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unacknowledged_reject_is_sent_once_per_invite() {
    let h = Harness::start(&[
        ("t1_ms = 500", "t1_ms = 10"),
        ("tick_ms = 20", "tick_ms = 5"),
    ])
    .await;
    let api = h.agent.api_addr;
    let inv = call(&h, "amp1@itest", "z9hG4bKamp1", BLOCKED, "");
    let out_before = metric_now(&h, "sip_messages_total{dir=\"out\",transport=\"udp\"}").await;
    h.send_up(&inv).await;
    assert_eq!(recv_final(&h.up).await.status(), Some(603));
    eventually("freed at Timer H", || async move {
        metric(&metrics(api).await, "sip_transactions") == 0
    })
    .await;
    let out = metric_now(&h, "sip_messages_total{dir=\"out\",transport=\"udp\"}").await;
    assert_eq!(out - out_before, 1, "one response, never resent");
    assert_eq!(
        metric_now(&h, "sip_responses_sent_total{code=\"603\"}").await,
        1
    );
}

/// The caller of a warned call hears nothing of it: the 180 and 200 come back with its own
/// From and without the verdict header, even when the callee's side echoes it, and the
/// callee's BYE carries the caller's own From in its To.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_warning_never_reaches_the_caller() {
    let h = Harness::start(&[(
        "warn_alert_info = \"\"",
        "warn_alert_info = \"<urn:alert:service:normal>\"",
    )])
    .await;
    let inv = call(&h, "leak1@itest", "z9hG4bKleak1", WARNED, "");
    let from = format!("\"Alice\" <sip:{WARNED}@127.0.0.1>;tag=a1");
    h.send_up(&inv).await;
    let (f, _) = recv(&h.down).await;
    assert!(f.hdr("From").unwrap().starts_with("\"SCAM? "), "{}", f.text);
    // A B2BUA that copies the X- headers and Alert-Info of the INVITE into its responses.
    let echo = format!(
        "X-Scamguard-Verdict: {}\r\nAlert-Info: {}\r\nContact: <sip:callee@{}>\r\n",
        f.hdr("X-Scamguard-Verdict").unwrap(),
        f.hdr("Alert-Info").unwrap(),
        h.down.local_addr().unwrap()
    );
    for (code, phrase) in [(180, "Ringing"), (200, "OK")] {
        h.send_down(&reply(&f, code, phrase, "callee1", &echo, ""))
            .await;
        let r = recv_final(&h.up).await;
        assert_eq!(r.status(), Some(code));
        assert_eq!(r.hdr("From"), Some(from.as_str()), "{}", r.text);
        assert!(
            !r.text.contains("SCAM?")
                && r.hdr("X-Scamguard-Verdict").is_none()
                && r.hdr("Alert-Info").is_none(),
            "{}",
            r.text
        );
    }
    let bye = format!(
        "BYE sip:caller@127.0.0.1:{port} SIP/2.0\r\nVia: SIP/2.0/UDP {down};branch=z9hG4bKleak2\r\n\
         Route: {rr}\r\nMax-Forwards: 70\r\nFrom: {callee_to};tag=callee1\r\nTo: {scam_from}\r\n\
         Call-ID: leak1@itest\r\nCSeq: 9 BYE\r\nContent-Length: 0\r\n\r\n",
        port = h.up_port(),
        down = h.down.local_addr().unwrap(),
        rr = f.hdr("Record-Route").unwrap(),
        callee_to = f.hdr("To").unwrap(),
        scam_from = f.hdr("From").unwrap()
    );
    h.send_down(&bye).await;
    let (b, _) = recv(&h.up).await;
    assert_eq!(b.method(), "BYE");
    assert_eq!(b.hdr("To"), Some(from.as_str()), "{}", b.text);
}

/// The ACK of a 483 the agent answered itself (Max-Forwards 0) goes no further; nor does the
/// ACK of a 503 or of a 400 for a control byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_of_the_agents_own_answers_are_absorbed() {
    let h = Harness::start(&[]).await;
    let cases = [
        ("Max-Forwards: 70", "Max-Forwards: 0", 483),
        (
            "User-Agent: itest-phone/1.0",
            "User-Agent: itest\0phone",
            400,
        ),
    ];
    for (n, (from, to, code)) in cases.into_iter().enumerate() {
        let id = format!("ack{n}@itest");
        let clean = call(&h, &id, &format!("z9hG4bKack{n}"), CLEAN, "");
        h.send_up(&clean.replace(from, to)).await;
        let r = recv_final(&h.up).await;
        assert_eq!(r.status(), Some(code));
        let received = udp_in(h.agent.api_addr).await + 1;
        h.send_up(&ack_for(h.up_port(), &clean, &r)).await;
        let marker = format!("after-ack{n}@itest");
        next_at_callee_is(&h, received, &marker, "after-ack", "the ACK").await;
    }
    assert_eq!(metric_now(&h, "sip_acks_absorbed_total").await, 2);
}

/// `sip/2.0` is the version in any case: the call is screened and sent on in upper case.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lower_case_version_is_accepted() {
    let h = Harness::start(&[]).await;
    let inv =
        call(&h, "lc1@itest", "z9hG4bKlc1", CLEAN, "").replacen(" SIP/2.0\r\n", " sip/2.0\r\n", 1);
    assert!(inv.lines().next().unwrap().ends_with("sip/2.0"));
    h.send_up(&inv).await;
    let (f, _) = recv(&h.down).await;
    assert_eq!(f.hdr("Call-ID"), Some("lc1@itest"));
    assert!(f.start_line().ends_with(" SIP/2.0"), "{}", f.start_line());
}

/// A wrong Content-Length on a persistent TCP connection does not swallow the next request:
/// the first is refused 400, the second is screened and sent on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_content_length_does_not_swallow_the_next_request() {
    let h = Harness::start(&[]).await;
    let mut tcp = TcpStream::connect(h.sip()).await.unwrap();
    let port = tcp.local_addr().unwrap().port();
    let tcp_call = |id: &str, branch: &str| {
        invite(
            "TCP",
            h.sip(),
            port,
            id,
            branch,
            &format!("<sip:{CLEAN}@127.0.0.1>;tag=t1"),
            CALLEE,
            "",
            "",
        )
    };
    let first =
        tcp_call("cl1@itest", "z9hG4bKcl1").replace("Content-Length: 0", "Content-Length: 40");
    let second = tcp_call("cl2@itest", "z9hG4bKcl2");
    // Apart, as a peer would send them, then together in one segment.
    tcp.write_all(first.as_bytes()).await.unwrap();
    tcp.write_all(second.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let r = read_stream_msg(&mut tcp, &mut buf).await;
    assert_eq!(
        (r.status(), r.hdr("Call-ID")),
        (Some(400), Some("cl1@itest"))
    );
    let (f, _) = recv(&h.down).await;
    assert_eq!(
        f.hdr("Call-ID"),
        Some("cl2@itest"),
        "the next request was read"
    );
    let third =
        tcp_call("cl3@itest", "z9hG4bKcl3").replace("Content-Length: 0", "Content-Length: 7");
    let fourth = tcp_call("cl4@itest", "z9hG4bKcl4");
    tcp.write_all(format!("{third}{fourth}").as_bytes())
        .await
        .unwrap();
    // The 100 Trying of the calls sent on may come first.
    loop {
        let m = read_stream_msg(&mut tcp, &mut buf).await;
        if m.status() == Some(400) {
            assert_eq!(m.hdr("Call-ID"), Some("cl3@itest"));
            break;
        }
        assert_eq!(m.status(), Some(100), "{}", m.text);
    }
    let (f, _) = recv(&h.down).await;
    assert_eq!(f.hdr("Call-ID"), Some("cl4@itest"));
}

/// Every case of the generated corpus holds its label in the core, over UDP's rules and, framed,
/// over TCP's: the control bytes of issue 13 (NUL, bare CR, injected CRLF in Content-Type,
/// P-Asserted-Identity, User-Agent, X- headers or Call-ID; 68 of them were forwarded) and the
/// rest are answered 4xx or dropped, never sent on.
#[test]
fn the_generated_corpus_holds_its_labels_in_the_core() {
    let me: SocketAddr = "127.0.0.1:5060".parse().unwrap();
    let hop: SocketAddr = "127.0.0.1:5070".parse().unwrap();
    let local: SocketAddr = "127.0.0.1:5090".parse().unwrap();
    let t0 = Instant::now();
    let mut wrong = Vec::new();
    let mut refused = 0;
    for (transport, letter) in [(Transport::Udp, "UDP"), (Transport::Tcp, "TCP")] {
        let cfg = SipConfig {
            next_hop: Some(hop.into()),
            ..SipConfig::default()
        };
        let proxy = Proxy::new(cfg, me, TestHook::passing(), Arc::new(SipStats::default()));
        let cases = malformed::generate(malformed::Target {
            transport: letter,
            local,
        });
        for c in &cases {
            let peer = Peer {
                transport,
                addr: local,
                conn: (transport == Transport::Tcp).then_some(c.id as u64),
            };
            let outs = match transport {
                Transport::Udp => proxy.handle(Bytes::copy_from_slice(&c.data), peer, t0),
                Transport::Tcp | Transport::Tls => {
                    let mut f = Framer::new(65535);
                    f.push(&c.data);
                    let mut outs = Vec::new();
                    while let Ok(Some(m)) = f.next_message() {
                        outs.extend(proxy.handle(m, peer, t0));
                    }
                    outs
                }
            };
            let forwarded = outs.iter().any(|o| o.to.addr == hop);
            let codes: Vec<u16> = outs
                .iter()
                .filter_map(|o| Message::parse(o.data.clone(), &Limits::default(), true).ok())
                .filter_map(|m| m.status())
                .collect();
            let held = match c.label {
                malformed::Label::Refuse => {
                    refused += 1;
                    !forwarded && codes.iter().all(|&k| (400..500).contains(&k) || k == 505)
                }
                malformed::Label::Screen => forwarded && codes.iter().all(|&k| k < 300),
            };
            if !held {
                wrong.push(format!(
                    "{letter} {} {} {} {:?}: forwarded {forwarded}, answers {codes:?}",
                    c.family, c.place, c.variant, c.label
                ));
            }
        }
    }
    assert!(refused > 2000, "{refused} cases to refuse");
    assert!(
        wrong.is_empty(),
        "{} cases broke their label:\n{}",
        wrong.len(),
        wrong
            .iter()
            .take(40)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}
