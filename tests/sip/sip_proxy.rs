//! The SIP proxy over real UDP and TCP sockets on 127.0.0.1: reject, forward with a display-name
//! rewrite, a whole dialog with Record-Route, CANCEL before answer, hop limits, loops, malformed
//! requests and OPTIONS probes.

use std::net::SocketAddr;
use std::sync::Arc;

use crate::support::hook::{Server, TestHook};
use crate::support::WAIT;
use bytes::Bytes;
use scamguard::sip::framing::Framer;
use scamguard::sip::msg::{Hdr, Limits, Message};
use scamguard::sip::Transport;
use scamguard::sip::{CallEvent, Disposition};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::time::timeout;

async fn start(hook: Arc<TestHook>, next_hop: SocketAddr) -> Server {
    start_with(hook, next_hop, Transport::Udp).await
}

async fn start_with(
    hook: Arc<TestHook>,
    next_hop: SocketAddr,
    next_hop_transport: Transport,
) -> Server {
    Server::start(hook, |c| {
        c.next_hop = Some(next_hop.into());
        c.next_hop_transport = next_hop_transport;
        c.udp_workers = 2;
    })
    .await
}

fn parse(b: &[u8]) -> Message {
    Message::parse(Bytes::copy_from_slice(b), &Limits::default(), true).unwrap()
}

async fn recv(sock: &UdpSocket) -> (Message, Vec<u8>, SocketAddr) {
    let mut buf = vec![0u8; 65536];
    let (n, from) = timeout(WAIT, sock.recv_from(&mut buf))
        .await
        .expect("message in time")
        .unwrap();
    buf.truncate(n);
    (parse(&buf), buf, from)
}

/// Next message that is not a `100 Trying`.
async fn recv_skip_100(sock: &UdpSocket) -> (Message, Vec<u8>) {
    loop {
        let (m, b, _) = recv(sock).await;
        if m.status() != Some(100) {
            return (m, b);
        }
    }
}

fn invite(call: &str, branch: &str, local: SocketAddr, target: &str, transport: &str) -> String {
    format!(
        "INVITE sip:+15550001111@{target} SIP/2.0\r\n\
Via: SIP/2.0/{transport} {local};branch={branch};rport\r\n\
Max-Forwards: 70\r\n\
From: \"Alice\" <sip:+15552223333@client.example.com>;tag=a1\r\n\
To: <sip:+15550001111@callee.example.com>\r\n\
Call-ID: {call}\r\n\
CSeq: 1 INVITE\r\n\
Contact: <sip:alice@{local}>\r\n\
P-Asserted-Identity: <tel:+15552223333>\r\n\
Content-Length: 0\r\n\
\r\n"
    )
}

/// Build a response to `req` as a UA would: every Via, From, To (+tag), Call-ID, CSeq.
fn respond(req: &Message, code: u16, extra: &str) -> String {
    let mut s = format!("SIP/2.0 {code} Whatever\r\n");
    for h in &req.headers {
        let line = String::from_utf8_lossy(req.bytes(h.line.clone())).to_string();
        match h.kind {
            Hdr::Via | Hdr::From | Hdr::CallId | Hdr::CSeq | Hdr::RecordRoute => s.push_str(&line),
            Hdr::To if !line.contains("tag=") => s.push_str(&line.replace("\r\n", ";tag=b2\r\n")),
            Hdr::To => s.push_str(&line),
            _ => {}
        }
    }
    s.push_str(extra);
    s.push_str("Content-Length: 0\r\n\r\n");
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reject_with_headers_absorbs_ack_and_retransmissions() {
    let down = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let hook = TestHook::answering(Disposition::Reject {
        code: 603,
        phrase: "Network Blocked".into(),
        headers: vec![
            "Reason: SIP;cause=603;text=\"v=analytics1;url=https://redress.example\"".into(),
        ],
    });
    let srv = start(hook.clone(), down.local_addr().unwrap()).await;
    let uac = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let me = uac.local_addr().unwrap();
    let inv = invite("rej-1", "z9hG4bKrej1", me, "callee.example.com", "UDP");
    uac.send_to(inv.as_bytes(), srv.addr).await.unwrap();
    let (m, raw) = recv_skip_100(&uac).await;
    assert_eq!(m.status(), Some(603));
    let text = String::from_utf8_lossy(&raw).to_string();
    assert!(text.starts_with("SIP/2.0 603 Network Blocked\r\n"));
    assert!(text.contains(
        "\r\nReason: SIP;cause=603;text=\"v=analytics1;url=https://redress.example\"\r\n"
    ));
    assert!(text.contains(&format!(
        "\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKrej1;rport\r\n"
    )));
    let tag = m.to().unwrap().tag().unwrap().to_string();
    // The retransmitted INVITE is answered again without a second decision.
    uac.send_to(inv.as_bytes(), srv.addr).await.unwrap();
    let (m2, _) = recv_skip_100(&uac).await;
    assert_eq!(m2.status(), Some(603));
    assert_eq!(m2.to().unwrap().tag(), Some(tag.as_str()));
    assert_eq!(hook.calls(), 1);
    let (call, user, pai) = hook.calls.lock().unwrap()[0].clone();
    assert_eq!(
        (call.as_str(), user.as_deref(), pai.as_deref()),
        ("rej-1", Some("+15552223333"), Some("tel:+15552223333"))
    );
    // ACK is hop-by-hop: absorbed, never reaches the downstream.
    let ack = inv
        .replacen("INVITE sip", "ACK sip", 1)
        .replace("CSeq: 1 INVITE", "CSeq: 1 ACK")
        .replace(
            "callee.example.com>\r\n",
            &format!("callee.example.com>;tag={tag}\r\n"),
        );
    uac.send_to(ack.as_bytes(), srv.addr).await.unwrap();
    // An INFO to the downstream's user proves ordering: it arrives, the ACK did not. (Not an
    // OPTIONS: the proxy answers those itself.)
    let info = format!(
        "INFO sip:bob@callee.example.com SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKinfo1\r\nMax-Forwards: 5\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:bob@callee.example.com>\r\nCall-ID: after-ack\r\nCSeq: 1 INFO\r\nContent-Length: 0\r\n\r\n"
    );
    uac.send_to(info.as_bytes(), srv.addr).await.unwrap();
    let (first_down, _, _) = recv(&down).await;
    assert!(
        first_down.method_is("INFO"),
        "the ACK must not be forwarded"
    );
    assert_eq!(srv.proxy.stats().hook_calls.get(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forward_dialog_end_to_end_with_record_route() {
    let down = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let down_addr = down.local_addr().unwrap();
    let hook = TestHook::answering(Disposition::Forward {
        display_name: Some("SCAM? \\ \"Bank\"".into()),
        headers: vec!["X-Scam-Verdict: warn; score=90".into()],
        record_route: true,
        anchor_media: false,
        offer: None,
        tag: None,
    });
    let srv = start(hook.clone(), down_addr).await;
    let uac = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let me = uac.local_addr().unwrap();
    let inv = invite("fwd-1", "z9hG4bKfwd1", me, "callee.example.com", "UDP");
    uac.send_to(inv.as_bytes(), srv.addr).await.unwrap();
    let (trying, _, _) = recv(&uac).await;
    assert_eq!(trying.status(), Some(100));
    let (fwd, raw, _) = recv(&down).await;
    // Byte-exact: only our Via, Record-Route, received/rport, Max-Forwards, display names
    // and the added header differ from what the caller sent.
    let branch = fwd.top_via().unwrap().branch.unwrap().to_string();
    let want = inv
        .replacen(
            "SIP/2.0\r\n",
            &format!(
                "SIP/2.0\r\nVia: SIP/2.0/UDP {0};branch={branch}\r\nRecord-Route: <sip:{0};lr>\r\n",
                srv.addr
            ),
            1,
        )
        .replace(";rport\r\n", &format!(";rport={}\r\n", me.port()))
        .replace("Max-Forwards: 70", "Max-Forwards: 69")
        .replace("From: \"Alice\"", "From: \"SCAM? \\\\ \\\"Bank\\\"\"")
        .replace(
            "P-Asserted-Identity: <tel:",
            "P-Asserted-Identity: \"SCAM? \\\\ \\\"Bank\\\"\" <tel:",
        )
        .replace(
            "Content-Length: 0\r\n",
            "Content-Length: 0\r\nX-Scam-Verdict: warn; score=90\r\n",
        );
    assert_eq!(String::from_utf8_lossy(&raw), want);
    assert_eq!(fwd.from().unwrap().tag(), Some("a1"));
    assert_eq!(
        fwd.from().unwrap().display().as_deref(),
        Some("SCAM? \\ \"Bank\"")
    );

    // 180 and 200 come back to the caller; the callee's Contact is the downstream socket.
    let contact = format!("Contact: <sip:bob@{down_addr}>\r\n");
    down.send_to(respond(&fwd, 180, "").as_bytes(), srv.addr)
        .await
        .unwrap();
    let (r180, _) = recv_skip_100(&uac).await;
    assert_eq!(r180.status(), Some(180));
    assert_eq!(r180.values(Hdr::Via).count(), 1, "our Via popped");
    down.send_to(respond(&fwd, 200, &contact).as_bytes(), srv.addr)
        .await
        .unwrap();
    let (r200, _) = recv_skip_100(&uac).await;
    assert_eq!(r200.status(), Some(200));
    let rr: Vec<String> = r200
        .values_str(Hdr::RecordRoute)
        .map(str::to_owned)
        .collect();
    assert_eq!(rr, vec![format!("<sip:{};lr>", srv.addr)]);

    // ACK and BYE follow the route set end to end.
    let in_dialog = |method: &str, cseq: u32, branch: &str| {
        format!(
            "{method} sip:bob@{down_addr} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch={branch}\r\nRoute: {}\r\nMax-Forwards: 70\r\nFrom: \"Alice\" <sip:+15552223333@client.example.com>;tag=a1\r\nTo: <sip:+15550001111@callee.example.com>;tag=b2\r\nCall-ID: fwd-1\r\nCSeq: {cseq} {method}\r\nContent-Length: 0\r\n\r\n",
            rr[0]
        )
    };
    uac.send_to(in_dialog("ACK", 1, "z9hG4bKack1").as_bytes(), srv.addr)
        .await
        .unwrap();
    let (ack, ack_raw, _) = recv(&down).await;
    assert!(ack.method_is("ACK"));
    assert!(
        !String::from_utf8_lossy(&ack_raw).contains("Route:"),
        "our Route popped"
    );
    uac.send_to(in_dialog("BYE", 2, "z9hG4bKbye1").as_bytes(), srv.addr)
        .await
        .unwrap();
    let (bye, _, _) = recv(&down).await;
    assert!(bye.method_is("BYE"));
    down.send_to(respond(&bye, 200, "").as_bytes(), srv.addr)
        .await
        .unwrap();
    let (bye_ok, _) = recv_skip_100(&uac).await;
    assert_eq!(bye_ok.status(), Some(200));
    assert_eq!(bye_ok.cseq().unwrap(), (2, "BYE"));
    let events = hook.events();
    assert_eq!(
        events,
        vec![
            ("fwd-1".into(), CallEvent::Answered),
            ("fwd-1".into(), CallEvent::Ended)
        ]
    );
}

/// The next message on a stream; `framer` keeps partial bytes between calls.
async fn tcp_read_msg(s: &mut TcpStream, framer: &mut Framer) -> Message {
    loop {
        if let Some(m) = framer.next_message().unwrap() {
            return Message::parse(m, &Limits::default(), false).unwrap();
        }
        let mut buf = [0u8; 4096];
        let n = timeout(WAIT, s.read(&mut buf))
            .await
            .expect("tcp data in time")
            .unwrap();
        assert!(n > 0, "connection closed");
        framer.push(&buf[..n]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_before_answer_over_tcp() {
    let down = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let hook = TestHook::passing();
    let srv = start(hook.clone(), down.local_addr().unwrap()).await;
    let mut uac = TcpStream::connect(srv.addr).await.unwrap();
    let me = uac.local_addr().unwrap();
    let mut pending = Framer::new(65535);
    let inv = invite("can-1", "z9hG4bKcan1", me, "callee.example.com", "TCP");
    uac.write_all(inv.as_bytes()).await.unwrap();
    assert_eq!(
        tcp_read_msg(&mut uac, &mut pending).await.status(),
        Some(100)
    );
    let (fwd, _, _) = recv(&down).await;
    down.send_to(respond(&fwd, 180, "").as_bytes(), srv.addr)
        .await
        .unwrap();
    assert_eq!(
        tcp_read_msg(&mut uac, &mut pending).await.status(),
        Some(180)
    );
    let cancel = inv
        .replacen("INVITE sip", "CANCEL sip", 1)
        .replace("CSeq: 1 INVITE", "CSeq: 1 CANCEL");
    uac.write_all(cancel.as_bytes()).await.unwrap();
    let ok = tcp_read_msg(&mut uac, &mut pending).await;
    assert_eq!((ok.status(), ok.cseq().unwrap().1), (Some(200), "CANCEL"));
    let (c, _, _) = recv(&down).await;
    assert!(c.method_is("CANCEL"));
    assert_eq!(c.top_via().unwrap().branch, fwd.top_via().unwrap().branch);
    down.send_to(respond(&c, 200, "").as_bytes(), srv.addr)
        .await
        .unwrap();
    down.send_to(respond(&fwd, 487, "").as_bytes(), srv.addr)
        .await
        .unwrap();
    let (ack, _, _) = recv(&down).await;
    assert!(ack.method_is("ACK"), "the proxy ACKs the 487 itself");
    let r487 = tcp_read_msg(&mut uac, &mut pending).await;
    assert_eq!(r487.status(), Some(487));
    let ack_up = inv
        .replacen("INVITE sip", "ACK sip", 1)
        .replace("CSeq: 1 INVITE", "CSeq: 1 ACK")
        .replace("callee.example.com>\r\n", "callee.example.com>;tag=b2\r\n");
    uac.write_all(ack_up.as_bytes()).await.unwrap();
    assert_eq!(hook.events(), vec![("can-1".into(), CallEvent::Cancelled)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hop_limit_loop_malformed_and_options() {
    let down = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let hook = TestHook::passing();
    let srv = start(hook.clone(), down.local_addr().unwrap()).await;
    let uac = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let me = uac.local_addr().unwrap();
    // Max-Forwards 0 -> 483.
    let mf0 = invite("mf-1", "z9hG4bKmf1", me, "callee.example.com", "UDP")
        .replace("Max-Forwards: 70", "Max-Forwards: 0");
    uac.send_to(mf0.as_bytes(), srv.addr).await.unwrap();
    assert_eq!(recv_skip_100(&uac).await.0.status(), Some(483));
    // OPTIONS probe with Max-Forwards 0 -> 200.
    let opt = format!("OPTIONS sip:{} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKp1\r\nMax-Forwards: 0\r\nFrom: <sip:probe@x>;tag=1\r\nTo: <sip:probe@x>\r\nCall-ID: probe-1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n", srv.addr);
    uac.send_to(opt.as_bytes(), srv.addr).await.unwrap();
    assert_eq!(recv(&uac).await.0.status(), Some(200));
    // Malformed (CSeq method mismatch) -> 400.
    uac.send_to(opt.replace("1 OPTIONS", "1 INVITE").as_bytes(), srv.addr)
        .await
        .unwrap();
    assert_eq!(recv(&uac).await.0.status(), Some(400));
    // Loop: the downstream sends our forwarded request straight back -> 482 to it.
    uac.send_to(
        invite("loop-1", "z9hG4bKloop1", me, "callee.example.com", "UDP").as_bytes(),
        srv.addr,
    )
    .await
    .unwrap();
    let (_, raw, _) = recv(&down).await;
    down.send_to(&raw, srv.addr).await.unwrap();
    let (m, _, _) = loop {
        let r = recv(&down).await;
        if r.0.status().is_some_and(|c| c != 100) {
            break r;
        }
    };
    assert_eq!(m.status(), Some(482));
    assert!(srv.proxy.stats().malformed_answered.get() >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn next_hop_over_tcp_shares_one_connection() {
    let down = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook = TestHook::passing();
    let srv = start_with(hook, down.local_addr().unwrap(), Transport::Tcp).await;
    let uac = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let me = uac.local_addr().unwrap();
    for i in 0..3 {
        let inv = invite(
            &format!("tcp-{i}"),
            &format!("z9hG4bKtcp{i}"),
            me,
            "callee.example.com",
            "UDP",
        );
        uac.send_to(inv.as_bytes(), srv.addr).await.unwrap();
    }
    let (mut conn, _) = timeout(WAIT, down.accept()).await.unwrap().unwrap();
    let mut pending = Framer::new(65535);
    let mut invites = Vec::new();
    for _ in 0..3 {
        let fwd = tcp_read_msg(&mut conn, &mut pending).await;
        assert!(fwd.method_is("INVITE"));
        assert_eq!(fwd.top_via().unwrap().transport, "TCP");
        invites.push(fwd);
    }
    for fwd in &invites {
        conn.write_all(respond(fwd, 486, "").as_bytes())
            .await
            .unwrap();
    }
    for _ in 0..3 {
        let ack = tcp_read_msg(&mut conn, &mut pending).await;
        assert!(
            ack.method_is("ACK"),
            "the 486 is ACKed on the same connection"
        );
    }
    let mut got = Vec::new();
    while got.len() < 3 {
        let (m, _) = recv_skip_100(&uac).await;
        assert_eq!(m.status(), Some(486));
        got.push(m.call_id().unwrap().to_string());
    }
    got.sort();
    assert_eq!(got, vec!["tcp-0", "tcp-1", "tcp-2"]);
}
