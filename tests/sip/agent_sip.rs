//! The whole agent end to end over real sockets (issue 2): `app::start` with the shipped config and
//! lists on 127.0.0.1:0, raw SIP bytes from a UDP socket and a TCP stream playing the caller, and a
//! UDP socket playing the callee behind it (the next hop). Each test checks the bytes that matter
//! on the wire, the decision log file and the admin API's `/metrics`.
//!
//! Knows nothing of the agent's insides: only the config text, the wire and the HTTP answers.

use crate::support::agent::*;
use crate::support::eventually;
use crate::support::http::{get, metric, metrics};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// Nothing but `marker`'s INVITE may reach the callee after the stray message just sent: once the
/// agent has taken in `received` UDP datagrams (the stray included), a second call is placed and
/// the first datagram the callee sees must be its INVITE.
async fn assert_nothing_forwarded(h: &Harness, received: u64, what: &str) {
    let api = h.agent.api_addr;
    eventually("the agent received the stray message", || async move {
        udp_in(api).await >= received
    })
    .await;
    let marker = invite(
        "UDP",
        h.sip(),
        h.up_port(),
        "marker@itest",
        "z9hG4bKmarker",
        "<sip:+14155552671@127.0.0.1>;tag=m",
        "+12025550100",
        "",
        "",
    );
    h.send_up(&marker).await;
    let (m, _) = recv(&h.down).await;
    assert_eq!(
        (m.method(), m.hdr("Call-ID")),
        ("INVITE", Some("marker@itest")),
        "{what} reached the callee:\n{}",
        m.text
    );
}

const CLEAN: &str = "+14155552671";
const BLOCKED: &str = "+12025550143";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocked_call_gets_603_once_and_its_ack_is_absorbed() {
    let h = Harness::start(&[]).await;
    let port = h.up_port();
    let inv = invite(
        "UDP",
        h.sip(),
        port,
        "block1@itest",
        "z9hG4bKblock1",
        "\"Bob\" <sip:+12025550143@127.0.0.1>;tag=from1",
        "+12025550100",
        "",
        "",
    );
    h.send_up(&inv).await;
    let r = recv_final(&h.up).await;
    assert_eq!(r.start_line(), "SIP/2.0 603 Network Blocked");
    assert_eq!(
        r.hdr("Reason"),
        Some("SIP;cause=603;text=\"v=analytics1;url=https://scamguard.invalid/redress\"")
    );
    assert_eq!(
        r.all("Via"),
        vec![format!("SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bKblock1")]
    );
    assert_eq!(
        r.hdr("From"),
        Some("\"Bob\" <sip:+12025550143@127.0.0.1>;tag=from1")
    );
    assert_eq!(r.hdr("Call-ID"), Some("block1@itest"));
    assert_eq!(r.hdr("CSeq"), Some("1 INVITE"));
    let to = r.hdr("To").unwrap();
    let prefix = format!("<sip:+12025550100@{}>;tag=", h.sip());
    assert!(
        to.starts_with(&prefix) && to.len() > prefix.len(),
        "To-tag: {to}"
    );

    // A retransmission is answered from the transaction: same answer, no second decision.
    h.send_up(&inv).await;
    let again = recv_final(&h.up).await;
    assert_eq!(again.text, r.text);

    let received = udp_in(h.agent.api_addr).await + 1;
    h.send_up(&ack_for(port, &inv, &r)).await;
    assert_nothing_forwarded(&h, received, "the ACK of a 603").await;

    let m = metrics(h.agent.api_addr).await;
    assert_eq!(metric(&m, "scamguard_calls_total{action=\"block\"}"), 1);
    assert_eq!(metric(&m, "scamguard_calls_total{action=\"pass\"}"), 1);
    assert_eq!(metric(&m, "scamguard_list_hits_total{list=\"example\"}"), 1);
    // Originated once; the retransmission is answered from the transaction.
    assert_eq!(metric(&m, "sip_responses_sent_total{code=\"603\"}"), 1);

    let (log, _dir) = h.stop().await;
    let mine: Vec<_> = log
        .iter()
        .filter(|l| l["call_id"] == "block1@itest")
        .collect();
    assert_eq!(mine.len(), 1, "one decision per call: {log:?}");
    let l = mine[0];
    assert_eq!(l["caller"], BLOCKED);
    assert_eq!(l["callee"], "+12025550100");
    assert_eq!(l["action"], "block");
    assert_eq!(l["reasons"][0]["list"], "example");
    assert_eq!(l["reasons"][0]["category"], "example");
    assert!(l["decision_us"].is_u64(), "{l}");
    let t = l["time"].as_str().unwrap();
    assert!(
        time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).is_ok(),
        "time {t}"
    );
    assert!(l.get("note").is_none(), "{l}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocked_call_over_tcp_with_608_config() {
    let h = Harness::start(&[("block_response = \"603\"", "block_response = \"608\"")]).await;
    let mut tcp = TcpStream::connect(h.sip()).await.unwrap();
    let port = tcp.local_addr().unwrap().port();
    let inv = invite(
        "TCP",
        h.sip(),
        port,
        "block608@itest",
        "z9hG4bK608",
        "<sip:+12025550185@127.0.0.1>;tag=t608",
        "+12025550100",
        "",
        "",
    );
    tcp.write_all(inv.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let r = loop {
        let m = read_stream_msg(&mut tcp, &mut buf).await;
        if m.status() != Some(100) {
            break m;
        }
    };
    assert_eq!(r.start_line(), "SIP/2.0 608 Rejected");
    assert_eq!(
        r.hdr("Call-Info"),
        Some("<https://scamguard.invalid/redress.jws>;purpose=jwscard")
    );
    assert_eq!(r.hdr("Reason"), None);
    assert_eq!(
        r.hdr("Via"),
        Some(format!("SIP/2.0/TCP 127.0.0.1:{port};branch=z9hG4bK608").as_str())
    );
    assert_eq!(r.hdr("Call-ID"), Some("block608@itest"));
    assert!(r.hdr("To").unwrap().contains(";tag="));
    let (log, _d) = h.stop().await;
    assert_eq!(log.len(), 1);
    assert_eq!(log[0]["action"], "block");
    assert_eq!(log[0]["caller"], "+12025550185");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_caller_is_refused_with_433_when_configured() {
    let h = Harness::start(&[("anonymous = \"pass\"", "anonymous = \"reject\"")]).await;
    let inv = invite(
        "UDP",
        h.sip(),
        h.up_port(),
        "anon@itest",
        "z9hG4bKanon",
        "\"Anonymous\" <sip:anonymous@anonymous.invalid>;tag=an",
        "+12025550100",
        "",
        "",
    );
    h.send_up(&inv).await;
    let r = recv_final(&h.up).await;
    assert_eq!(r.start_line(), "SIP/2.0 433 Anonymity Disallowed");
    assert_eq!(r.hdr("Call-ID"), Some("anon@itest"));
    let (log, _d) = h.stop().await;
    assert_eq!(log.len(), 1);
    assert_eq!(log[0]["action"], "block");
}

const SDP: &str = "v=0\r\no=alice 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
                   m=audio 40000 RTP/AVP 0 8\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warned_call_is_tagged_and_otherwise_forwarded_untouched() {
    let h = Harness::start(&[]).await;
    let port = h.up_port();
    let inv = invite(
        "UDP",
        h.sip(),
        port,
        "warn1@itest",
        "z9hG4bKwarn1",
        "\"Alice\" <sip:+12025550161@127.0.0.1>;tag=a1",
        "+16175551234", // not the caller's NPA-NXX: that would be neighbour spoofing
        "",
        SDP,
    );
    h.send_up(&inv).await;
    let (f, _) = recv(&h.down).await;
    let sent = Msg { text: inv.clone() };
    assert_eq!(f.start_line(), sent.start_line());
    assert_eq!(
        f.hdr("From"),
        Some("\"SCAM? Alice\" <sip:+12025550161@127.0.0.1>;tag=a1")
    );
    assert_eq!(
        f.hdr("X-Scamguard-Verdict"),
        Some(
            "warn;category=example;reason=\"(+50) Example X-pattern: warn for fictional numbers 555-0160 to 555-0169\""
        )
    );
    let vias = f.all("Via");
    assert_eq!(vias.len(), 2, "{}", f.text);
    assert!(
        vias[0].starts_with(&format!("SIP/2.0/UDP {};branch=z9hG4bK", h.sip())),
        "our Via on top: {}",
        vias[0]
    );
    assert_eq!(vias[1], sent.hdr("Via").unwrap());
    assert_eq!(f.hdr("Max-Forwards"), Some("69"));
    let rr = f.hdr("Record-Route").expect("Record-Route");
    assert!(
        rr.contains(&h.sip().to_string()) && rr.contains(";lr"),
        "{rr}"
    );
    // Everything else, byte for byte and in order.
    let changed = [
        "from",
        "max-forwards",
        "record-route",
        "x-scamguard-verdict",
    ];
    let keep = |lines: Vec<&str>, skip_top_via: bool| -> Vec<String> {
        let mut seen_via = !skip_top_via;
        lines
            .into_iter()
            .filter(|l| {
                let n = l.split(':').next().unwrap().trim().to_ascii_lowercase();
                if n == "via" && !seen_via {
                    seen_via = true;
                    return false;
                }
                !changed.contains(&n.as_str())
            })
            .map(str::to_string)
            .collect()
    };
    assert_eq!(keep(f.lines(), true), keep(sent.lines(), false));
    assert_eq!(f.body(), SDP);

    // The callee refuses; the refusal is relayed and its ACK stays hop by hop.
    h.send_down(&reply(&f, 486, "Busy Here", "callee1", "", ""))
        .await;
    let r = recv_final(&h.up).await;
    assert_eq!(r.status(), Some(486));
    assert_eq!(r.all("Via"), vec![sent.hdr("Via").unwrap()]);
    let (ack, _) = recv(&h.down).await;
    assert_eq!(ack.method(), "ACK", "the agent ACKs the callee's 486");
    let (log, _d) = h.stop().await;
    assert_eq!(log.len(), 1);
    assert_eq!(log[0]["action"], "warn");
    assert_eq!(log[0]["caller"], "+12025550161");
    assert_eq!(log[0]["reasons"][0]["category"], "example");
}

/// A passed call through to its end: the caller's ACK and BYE follow the Record-Route.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passed_call_full_dialog_through_record_route() {
    let h = Harness::start(&[]).await;
    let port = h.up_port();
    let down_port = h.down.local_addr().unwrap().port();
    let inv = invite(
        "UDP",
        h.sip(),
        port,
        "pass1@itest",
        "z9hG4bKpass1",
        "<sip:+14155552671@127.0.0.1>;tag=p1",
        "+12025550100",
        "",
        SDP,
    );
    h.send_up(&inv).await;
    let (trying, _) = recv(&h.up).await;
    assert_eq!(trying.start_line(), "SIP/2.0 100 Trying");
    assert_eq!(trying.hdr("Call-ID"), Some("pass1@itest"));
    let (f, _) = recv(&h.down).await;
    assert_eq!(f.hdr("X-Scamguard-Verdict"), Some("pass"));
    assert_eq!(f.hdr("From"), Some("<sip:+14155552671@127.0.0.1>;tag=p1"));
    assert_eq!(f.body(), SDP);
    let rr = f.hdr("Record-Route").expect("record_route_all").to_string();

    let contact = format!("Contact: <sip:callee@127.0.0.1:{down_port}>\r\n");
    h.send_down(&reply(&f, 180, "Ringing", "c1", &contact, ""))
        .await;
    let ringing = recv_final(&h.up).await;
    assert_eq!(ringing.start_line(), "SIP/2.0 180 Ringing");
    assert_eq!(ringing.all("Via").len(), 1);
    let answer_sdp = "v=0\r\no=bob 2 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40002 RTP/AVP 0\r\n";
    h.send_down(&reply(
        &f,
        200,
        "OK",
        "c1",
        &format!("{contact}Content-Type: application/sdp\r\n"),
        answer_sdp,
    ))
    .await;
    let ok = recv_final(&h.up).await;
    assert_eq!(ok.start_line(), "SIP/2.0 200 OK");
    assert_eq!(ok.hdr("Record-Route"), Some(rr.as_str()));
    assert_eq!(ok.body(), answer_sdp);
    let to = ok.hdr("To").unwrap().to_string();
    assert!(to.ends_with(";tag=c1"), "{to}");

    // In-dialog requests go to the agent (the Route) with the callee's Contact as target.
    let in_dialog = |method: &str, cseq: &str, branch: &str| {
        format!(
            "{method} sip:callee@127.0.0.1:{down_port} SIP/2.0\r\n\
             Via: SIP/2.0/UDP 127.0.0.1:{port};branch={branch}\r\nRoute: {rr}\r\nMax-Forwards: 70\r\n\
             From: <sip:+14155552671@127.0.0.1>;tag=p1\r\nTo: {to}\r\nCall-ID: pass1@itest\r\n\
             CSeq: {cseq}\r\nContent-Length: 0\r\n\r\n"
        )
    };
    h.send_up(&in_dialog("ACK", "1 ACK", "z9hG4bKack1")).await;
    let (ack, _) = recv(&h.down).await;
    assert_eq!(
        ack.start_line(),
        format!("ACK sip:callee@127.0.0.1:{down_port} SIP/2.0")
    );
    assert_eq!(ack.hdr("Route"), None, "our own Route entry is consumed");
    assert_eq!(ack.all("Via").len(), 2);

    h.send_up(&in_dialog("BYE", "2 BYE", "z9hG4bKbye1")).await;
    let (bye, _) = recv(&h.down).await;
    assert_eq!(bye.method(), "BYE");
    assert_eq!(bye.hdr("CSeq"), Some("2 BYE"));
    h.send_down(&reply(&bye, 200, "OK", "c1", "", "")).await;
    let bye_ok = recv_final(&h.up).await;
    assert_eq!(bye_ok.start_line(), "SIP/2.0 200 OK");
    assert_eq!(bye_ok.hdr("CSeq"), Some("2 BYE"));
    assert_eq!(
        bye_ok.all("Via"),
        vec![format!("SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bKbye1")]
    );

    let m = metrics(h.agent.api_addr).await;
    assert_eq!(metric(&m, "scamguard_calls_total{action=\"pass\"}"), 1);
    assert_eq!(
        metric(&m, "scamguard_call_events_total{event=\"answered\"}"),
        1
    );
    assert_eq!(
        metric(&m, "scamguard_call_events_total{event=\"ended\"}"),
        1
    );
    let (log, _d) = h.stop().await;
    assert_eq!(log.len(), 1);
    assert_eq!(log[0]["action"], "pass");
    assert_eq!(log[0]["reasons"], serde_json::json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_before_answer() {
    let h = Harness::start(&[]).await;
    let port = h.up_port();
    let inv = invite(
        "UDP",
        h.sip(),
        port,
        "cancel1@itest",
        "z9hG4bKcan1",
        "<sip:+14155552671@127.0.0.1>;tag=c1",
        "+12025550100",
        "",
        "",
    );
    h.send_up(&inv).await;
    let (f, _) = recv(&h.down).await;
    h.send_down(&reply(&f, 180, "Ringing", "cc", "", "")).await;
    assert_eq!(recv_final(&h.up).await.status(), Some(180));

    h.send_up(&cancel_for(&inv)).await;
    let ok = recv_final(&h.up).await;
    assert_eq!(ok.start_line(), "SIP/2.0 200 OK");
    assert_eq!(ok.hdr("CSeq"), Some("1 CANCEL"));
    let (c, _) = recv(&h.down).await;
    assert_eq!(c.method(), "CANCEL");
    assert_eq!(c.hdr("Via"), f.hdr("Via"), "CANCEL on the INVITE's branch");
    h.send_down(&reply(&c, 200, "OK", "cc", "", "")).await;
    h.send_down(&reply(&f, 487, "Request Terminated", "cc", "", ""))
        .await;
    let r = recv_final(&h.up).await;
    assert_eq!(r.start_line(), "SIP/2.0 487 Request Terminated");
    assert_eq!(r.hdr("CSeq"), Some("1 INVITE"));
    let (ack, _) = recv(&h.down).await;
    assert_eq!(ack.method(), "ACK", "the agent ACKs the 487 itself");
    let received = udp_in(h.agent.api_addr).await + 1;
    h.send_up(&ack_for(port, &inv, &r)).await;
    assert_nothing_forwarded(&h, received, "the caller's ACK of the 487").await;
    let m = metrics(h.agent.api_addr).await;
    assert_eq!(
        metric(&m, "scamguard_call_events_total{event=\"cancelled\"}"),
        1
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_caller_still_reaches_emergency_numbers() {
    let h = Harness::start(&[]).await;
    let inv = invite(
        "UDP",
        h.sip(),
        h.up_port(),
        "sos@itest",
        "z9hG4bKsos",
        "<sip:+12025550143@127.0.0.1>;tag=s",
        "911",
        "",
        "",
    );
    h.send_up(&inv).await;
    let (f, _) = recv(&h.down).await;
    assert_eq!(
        f.start_line(),
        format!("INVITE sip:911@{} SIP/2.0", h.sip())
    );
    assert_eq!(f.hdr("From"), Some("<sip:+12025550143@127.0.0.1>;tag=s"));
    let (log, _d) = h.stop().await;
    assert_eq!(log.len(), 1);
    assert_eq!(log[0]["action"], "pass");
    assert_eq!(f.hdr("X-Scamguard-Verdict"), Some("pass"));
}

async fn pai_call(h: &Harness, id: &str, from_user: &str, pai_user: &str) -> Msg {
    let inv = invite(
        "UDP",
        h.sip(),
        h.up_port(),
        id,
        &format!("z9hG4bK{id}"),
        &format!("<sip:{from_user}@127.0.0.1>;tag=x"),
        "+12025550100",
        &format!("P-Asserted-Identity: <sip:{pai_user}@127.0.0.1>\r\n"),
        "",
    );
    h.send_up(&inv).await;
    let r = tokio::select! {
        r = recv_final(&h.up) => r,
        f = recv(&h.down) => f.0,
    };
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asserted_identity_counts_only_from_trusted_peers() {
    let h = Harness::start(&[("trusted_peers = []", "trusted_peers = [\"127.0.0.1\"]")]).await;
    let r = pai_call(&h, "pai1", CLEAN, BLOCKED).await;
    assert_eq!(
        r.status(),
        Some(603),
        "blocked PAI, clean From:\n{}",
        r.text
    );
    let f = pai_call(&h, "pai2", BLOCKED, CLEAN).await;
    assert_eq!(f.method(), "INVITE", "clean PAI, blocked From:\n{}", f.text);
    assert_eq!(f.hdr("X-Scamguard-Verdict"), Some("pass"));
    let (log, _d) = h.stop().await;
    let by_id = |id: &str| log.iter().find(|l| l["call_id"] == id).unwrap().clone();
    assert_eq!(by_id("pai1")["caller"], BLOCKED);
    assert_eq!(by_id("pai2")["caller"], CLEAN);

    let h = Harness::start(&[]).await;
    let f = pai_call(&h, "pai3", CLEAN, BLOCKED).await;
    assert_eq!(f.method(), "INVITE", "untrusted PAI ignored:\n{}", f.text);
    assert_eq!(f.hdr("X-Scamguard-Verdict"), Some("pass"));
    let r = pai_call(&h, "pai4", BLOCKED, CLEAN).await;
    assert_eq!(r.status(), Some(603), "untrusted PAI ignored:\n{}", r.text);
    let (log, _d) = h.stop().await;
    assert_eq!(log[0]["caller"], CLEAN);
    assert_eq!(log[1]["caller"], BLOCKED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn options_malformed_and_admin_endpoints() {
    let h = Harness::start(&[]).await;
    let port = h.up_port();
    let options = format!(
        "OPTIONS sip:{} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bKopt\r\nMax-Forwards: 70\r\n\
         From: <sip:probe@127.0.0.1>;tag=o\r\nTo: <sip:{}>\r\nCall-ID: opt@itest\r\nCSeq: 7 OPTIONS\r\n\
         Content-Length: 0\r\n\r\n",
        h.sip(),
        h.sip()
    );
    h.send_up(&options).await;
    let (r, _) = recv(&h.up).await;
    assert_eq!(r.start_line(), "SIP/2.0 200 OK");
    assert_eq!(r.hdr("CSeq"), Some("7 OPTIONS"));
    assert!(r.hdr("Allow").unwrap().contains("INVITE"));

    let bad = format!(
        "INVITE sip:+12025550100@{} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bKbad\r\n\
         Max-Forwards: 70\r\nFrom: <sip:+14155552671@127.0.0.1>;tag=b\r\nTo: <sip:+12025550100@{}>\r\n\
         Call-ID: bad@itest\r\nCSeq: banana INVITE\r\nContent-Length: 0\r\n\r\n",
        h.sip(),
        h.sip()
    );
    h.send_up(&bad).await;
    let (r, _) = recv(&h.up).await;
    assert_eq!(r.start_line(), "SIP/2.0 400 Bad Request");
    assert_eq!(r.hdr("Call-ID"), Some("bad@itest"));

    let r = get(h.agent.api_addr, "/health", None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = get(h.agent.api_addr, "/ready", None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let m = metrics(h.agent.api_addr).await;
    assert_eq!(
        metric(&m, "sip_malformed_total{kind=\"bad_cseq\"}"),
        1,
        "{m}"
    );
    assert_eq!(
        metric(&m, "sip_malformed_outcome_total{outcome=\"answered\"}"),
        1
    );
    assert_eq!(metric(&m, "sip_responses_sent_total{code=\"400\"}"), 1);
    assert_eq!(
        metric(&m, "sip_hook_calls_total"),
        0,
        "no call was screened"
    );
    let (log, _d) = h.stop().await;
    assert!(log.is_empty(), "{log:?}");
}
