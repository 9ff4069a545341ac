//! Host names through a real DNS server: each test starts its own `dnsmasq` on a free loopback
//! port (no daemon, its own config, `--no-resolv --no-hosts`, `.test` answered only from its
//! own NAPTR, SRV and A records) and points the proxy's `[dns] servers` at it. A next hop given
//! by name is found by NAPTR, SRV and A and the call is answered; a refused SRV target fails
//! over to the next; with the DNS server gone a call to the name is refused while a call to an
//! address goes on; an answer is asked again once its TTL is over.
//!
//! dnsmasq must be installed (`.ci/run` installs `dnsmasq-base`): without it these tests fail.
//! The server itself is `support::dns`, shared with `tls_sip` and the interop tests.

use std::net::SocketAddr;
use std::time::Duration;

pub(crate) use crate::support::dns::{dns_config, Dns};
use crate::support::hook::{Server, TestHook};
use crate::support::WAIT;
use bytes::Bytes;
use scamguard::sip::framing::Framer;
use scamguard::sip::msg::{Hdr, Limits, Message};
use scamguard::sip::DnsConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};
use tokio::time::timeout;

fn parse(b: &[u8]) -> Message {
    Message::parse(Bytes::copy_from_slice(b), &Limits::default(), true).unwrap()
}

fn invite(call: &str, local: SocketAddr, target: &str) -> String {
    format!(
        "INVITE sip:+15550001111@{target} SIP/2.0\r\n\
Via: SIP/2.0/UDP {local};branch=z9hG4bK-{call};rport\r\n\
Max-Forwards: 70\r\n\
From: <sip:+15552223333@client.example.com>;tag=a1\r\n\
To: <sip:+15550001111@callee.example.com>\r\n\
Call-ID: {call}\r\n\
CSeq: 1 INVITE\r\n\
Contact: <sip:alice@{local}>\r\n\
Content-Length: 0\r\n\
\r\n"
    )
}

/// A UAS's 200 OK to `req`: every Via, From, To with a tag, Call-ID, CSeq (each header's
/// line ends in its CRLF).
fn ok(req: &Message) -> String {
    let mut s = "SIP/2.0 200 OK\r\n".to_string();
    for h in &req.headers {
        let line = String::from_utf8_lossy(req.bytes(h.line.clone())).to_string();
        match h.kind {
            Hdr::Via | Hdr::From | Hdr::CallId | Hdr::CSeq => s.push_str(&line),
            Hdr::To => s.push_str(&line.replace("\r\n", ";tag=uas\r\n")),
            _ => {}
        }
    }
    s + "Contact: <sip:uas@127.0.0.1>\r\nContent-Length: 0\r\n\r\n"
}

/// A UDP UAS on `addr` answering every INVITE 200; returns the Call-IDs it answered.
pub(crate) async fn udp_uas(
    addr: &str,
) -> (SocketAddr, tokio::sync::mpsc::UnboundedReceiver<String>) {
    let sock = UdpSocket::bind(addr).await.unwrap();
    let local = sock.local_addr().unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65536];
        while let Ok((n, from)) = sock.recv_from(&mut buf).await {
            let m = parse(&buf[..n]);
            if m.method_is("INVITE") {
                let _ = tx.send(m.call_id().unwrap_or("").to_string());
                let _ = sock.send_to(ok(&m).as_bytes(), from).await;
            }
        }
    });
    (local, rx)
}

/// A TCP UAS answering every INVITE 200 on the connection it came on.
async fn tcp_uas() -> (SocketAddr, tokio::sync::mpsc::UnboundedReceiver<String>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let local = l.local_addr().unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut framer = Framer::new(65535);
                let mut buf = vec![0u8; 65536];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 {
                        return;
                    }
                    framer.push(&buf[..n]);
                    while let Ok(Some(b)) = framer.next_message() {
                        let m = Message::parse(b, &Limits::default(), false).unwrap();
                        if m.method_is("INVITE") {
                            let _ = tx.send(m.call_id().unwrap_or("").to_string());
                            let _ = s.write_all(ok(&m).as_bytes()).await;
                        }
                    }
                }
            });
        }
    });
    (local, rx)
}

/// Send an INVITE for `call` to `target` through `proxy`; the final status the caller gets.
pub(crate) async fn call(proxy: SocketAddr, call: &str, target: &str) -> u16 {
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let local = sock.local_addr().unwrap();
    sock.send_to(invite(call, local, target).as_bytes(), proxy)
        .await
        .unwrap();
    let mut buf = vec![0u8; 65536];
    loop {
        let (n, _) = timeout(WAIT, sock.recv_from(&mut buf))
            .await
            .expect("a final response in time")
            .unwrap();
        let m = parse(&buf[..n]);
        match m.status() {
            Some(c) if c >= 200 => return c,
            _ => {}
        }
    }
}

async fn reached(rx: &mut tokio::sync::mpsc::UnboundedReceiver<String>) -> String {
    timeout(WAIT, rx.recv()).await.unwrap().unwrap()
}

#[tokio::test]
async fn a_next_hop_given_by_name_is_found_by_naptr_srv_and_a() {
    let (uas, mut rx) = udp_uas("127.0.0.1:0").await;
    let dns = Dns::start(&[
        "--naptr-record=pbx.test,10,10,S,SIP+D2U,,_sip._udp.pbx.test".into(),
        format!(
            "--srv-host=_sip._udp.pbx.test,uas1.test,{},10,10",
            uas.port()
        ),
        "--host-record=uas1.test,127.0.0.1".into(),
    ]);
    let server = Server::start(TestHook::passing(), |c| {
        c.next_hop = Some("pbx.test".parse().unwrap());
        c.dns = dns_config(dns.addr);
    })
    .await;
    assert_eq!(call(server.addr, "dns-1", "pbx.test").await, 200);
    assert_eq!(reached(&mut rx).await, "dns-1");
    // The second call finds the answer in the proxy's table.
    assert_eq!(call(server.addr, "dns-2", "pbx.test").await, 200);
    assert_eq!(reached(&mut rx).await, "dns-2");
    assert_eq!(server.proxy.stats().dns_parked.get(), 1);
}

#[tokio::test]
async fn a_refused_srv_target_fails_over_to_the_next() {
    let (uas, mut rx) = tcp_uas().await;
    // Nothing listens on the first target's port: its connection is refused.
    let dead = crate::support::free_port();
    let dns = Dns::start(&[
        "--naptr-record=fo.test,10,10,S,SIP+D2T,,_sip._tcp.fo.test".into(),
        format!("--srv-host=_sip._tcp.fo.test,dead.test,{dead},10,10"),
        format!(
            "--srv-host=_sip._tcp.fo.test,live.test,{},20,10",
            uas.port()
        ),
        "--host-record=dead.test,127.0.0.1".into(),
        "--host-record=live.test,127.0.0.1".into(),
    ]);
    let server = Server::start(TestHook::passing(), |c| {
        c.next_hop = Some("fo.test".parse().unwrap());
        // Long enough that only the refusal, not silence, can move the call on.
        c.dns = DnsConfig {
            failover_ms: 60_000,
            ..dns_config(dns.addr)
        };
    })
    .await;
    assert_eq!(call(server.addr, "fo-1", "fo.test").await, 200);
    assert_eq!(reached(&mut rx).await, "fo-1");
    assert_eq!(server.proxy.stats().dns_failovers.get(), 1);
}

#[tokio::test]
async fn with_dns_down_a_named_target_is_refused_and_addresses_still_work() {
    let (uas, mut rx) = udp_uas("127.0.0.1:0").await;
    let mut dns = Dns::start(&["--host-record=down.test,127.0.0.1".to_string()]);
    let hook = TestHook::passing();
    // No next hop: each call goes where its Request-URI says, to a target the operator allows.
    let server = Server::start(hook, |c| {
        c.next_hop = None;
        c.allowed_targets = vec![
            format!("down.test:{}", uas.port()).parse().unwrap(),
            uas.into(),
        ];
        c.dns = dns_config(dns.addr);
    })
    .await;
    let named = format!("down.test:{}", uas.port());
    assert_eq!(call(server.addr, "up-1", &named).await, 200);
    assert_eq!(reached(&mut rx).await, "up-1");
    dns.stop();
    // Past the answer's TTL (1 s) it must be asked again, of a server that is gone.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let by_name = tokio::spawn({
        let (addr, named) = (server.addr, named.clone());
        async move { call(addr, "down-1", &named).await }
    });
    // Meanwhile a call to an address goes through.
    assert_eq!(call(server.addr, "ip-1", &uas.to_string()).await, 200);
    assert_eq!(reached(&mut rx).await, "ip-1");
    let code = by_name.await.unwrap();
    assert!(
        code == 503 || code == 504,
        "a name that cannot be resolved is refused 503 (504 when the server is silent), got {code}"
    );
    assert!(rx.try_recv().is_err(), "the named call reached nobody");
    assert_eq!(server.proxy.stats().dns_failed.get(), 1);
}

#[tokio::test]
async fn an_answer_is_asked_again_when_its_ttl_is_over() {
    // The same port on two loopback addresses: only DNS tells them apart.
    let (first, mut rx1) = udp_uas("127.0.0.2:0").await;
    let (second, mut rx2) = udp_uas(&format!("127.0.0.3:{}", first.port())).await;
    let port = crate::support::free_port();
    let mut dns = Dns::start_on(port, &["--host-record=ttl.test,127.0.0.2".into()]);
    let server = Server::start(TestHook::passing(), |c| {
        c.next_hop = Some(format!("ttl.test:{}", first.port()).parse().unwrap());
        c.dns = dns_config(dns.addr);
    })
    .await;
    assert_eq!(call(server.addr, "ttl-1", "ttl.test").await, 200);
    assert_eq!(reached(&mut rx1).await, "ttl-1");
    // The record changes; its TTL is 1 s.
    dns.stop();
    let _dns = Dns::start_on(port, &["--host-record=ttl.test,127.0.0.3".into()]);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(call(server.addr, "ttl-2", "ttl.test").await, 200);
    assert_eq!(reached(&mut rx2).await, "ttl-2");
    assert!(rx1.try_recv().is_err(), "the old address got nothing more");
    let _ = second;
}
