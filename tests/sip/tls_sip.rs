//! SIP over TLS through the bare proxy, on real sockets: certificates for a test CA, the proxy,
//! a user agent server and clients are made here (rcgen), and every peer speaks TLS with
//! rustls. A call over TLS reaches a TLS server found by name (NAPTR `SIPS+D2T`, `_sips._tcp`
//! SRV and A from a `dnsmasq` of the test's own, as in `dns_sip`) whose certificate is checked
//! against that name, and a BYE from either side reaches the other on the connections the call
//! opened; a blocked call gets its 603 over TLS; a `sips:` request with nowhere secure to go is
//! refused; with client certificates required a client the CA did not certify is refused; a
//! certified peer's P-Asserted-Identity is believed and a plain client's is not; and a flood of
//! half-open handshakes does not stop UDP calls.
//!
//! dnsmasq must be installed (`.ci/run` installs `dnsmasq-base`): without it the DNS test fails.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use scamguard::sip::conn::Refusal;
use scamguard::sip::framing::Framer;
use scamguard::sip::msg::{Hdr, Limits, Message};
use scamguard::sip::{Disposition, Transport};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use tokio::time::timeout;

use crate::support::hook::{Server, TestHook};
use crate::support::pki::{Leaf, Pki};
use crate::support::{eventually, WAIT};

fn certs(p: &Path) -> Vec<CertificateDer<'static>> {
    scamguard::tls::read_certs(p).unwrap()
}

fn key(p: &Path) -> PrivateKeyDer<'static> {
    scamguard::tls::read_key(p).unwrap()
}

/// A TLS client of the proxy that trusts `pki`'s CA, showing `me` when given.
async fn connect(
    addr: SocketAddr,
    name: &str,
    pki: &Pki,
    me: Option<&Leaf>,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    tls_over(TcpStream::connect(addr).await?, name, pki, me).await
}

/// [`connect`] over a TCP connection already made.
async fn tls_over(
    tcp: TcpStream,
    name: &str,
    pki: &Pki,
    me: Option<&Leaf>,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let (roots, _) = scamguard::tls::read_roots(&pki.roots()).unwrap();
    let b = rustls::ClientConfig::builder_with_provider(scamguard::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let cfg = match me {
        Some(l) => b
            .with_client_auth_cert(certs(&l.cert), key(&l.key))
            .unwrap(),
        None => b.with_no_client_auth(),
    };
    let name = ServerName::try_from(name.to_string()).unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(name, tcp)
        .await
}

/// One SIP stream connection: framed messages in, bytes out, each side a task of its own.
struct Conn {
    rx: UnboundedReceiver<Message>,
    tx: UnboundedSender<Vec<u8>>,
}

impl Conn {
    fn new<S: AsyncRead + AsyncWrite + Send + 'static>(s: S) -> Conn {
        let (mut rd, mut wr) = tokio::io::split(s);
        let (in_tx, rx) = unbounded_channel();
        let (tx, mut out_rx) = unbounded_channel::<Vec<u8>>();
        tokio::spawn(async move {
            let mut framer = Framer::new(65535);
            let mut buf = vec![0u8; 65536];
            while let Ok(n) = rd.read(&mut buf).await {
                if n == 0 {
                    return;
                }
                framer.push(&buf[..n]);
                while let Ok(Some(b)) = framer.next_message() {
                    if let Ok(m) = Message::parse(b, &Limits::default(), false) {
                        let _ = in_tx.send(m);
                    }
                }
            }
        });
        tokio::spawn(async move {
            while let Some(b) = out_rx.recv().await {
                if wr.write_all(&b).await.is_err() {
                    return;
                }
            }
        });
        Conn { rx, tx }
    }

    fn send(&self, text: &str) {
        self.tx.send(text.as_bytes().to_vec()).unwrap();
    }

    /// The next message, skipping provisional responses.
    async fn next(&mut self) -> Message {
        loop {
            let m = timeout(WAIT, self.rx.recv())
                .await
                .expect("a message in time")
                .expect("the connection stays open");
            if m.status().is_some_and(|c| c < 200) {
                continue;
            }
            return m;
        }
    }

    /// Whether the peer closed the connection (or never finished opening it) in time.
    async fn closed(&mut self) -> bool {
        matches!(timeout(WAIT, self.rx.recv()).await, Ok(None))
    }
}

/// A TLS user agent server on 127.0.0.1 with a certificate for `names`: each connection it
/// accepts is handed to the test.
async fn tls_uas(pki: &Pki, names: &[&str]) -> (SocketAddr, UnboundedReceiver<Conn>) {
    let leaf = pki.issue("uas", names);
    let cfg = rustls::ServerConfig::builder_with_provider(scamguard::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs(&leaf.cert), key(&leaf.key))
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let (tx, rx) = unbounded_channel();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            if let Ok(tls) = acceptor.accept(s).await {
                let _ = tx.send(Conn::new(tls));
            }
        }
    });
    (addr, rx)
}

fn header(m: &Message, kind: Hdr) -> Vec<String> {
    m.values_str(kind).map(str::to_string).collect()
}

/// A response to `req`: its Vias, From, To (with `tag` when it has none), Call-ID and CSeq,
/// and its Record-Route on a 2xx to an INVITE (RFC 3261 12.1.1).
fn reply(req: &Message, code: u16, phrase: &str, tag: &str, contact: &str) -> String {
    let mut s = format!("SIP/2.0 {code} {phrase}\r\n");
    for h in &req.headers {
        let line = String::from_utf8_lossy(req.bytes(h.line.clone())).to_string();
        match h.kind {
            Hdr::Via | Hdr::From | Hdr::CallId | Hdr::CSeq => s.push_str(&line),
            Hdr::RecordRoute if req.method_is("INVITE") => s.push_str(&line),
            Hdr::To if req.to_tag().is_none() => {
                s.push_str(&line.replace("\r\n", &format!(";tag={tag}\r\n")))
            }
            Hdr::To => s.push_str(&line),
            _ => {}
        }
    }
    if !contact.is_empty() {
        s.push_str(&format!("Contact: <{contact}>\r\n"));
    }
    s + "Content-Length: 0\r\n\r\n"
}

fn invite(call: &str, ruri: &str, contact: &str, extra: &str) -> String {
    format!(
        "INVITE {ruri} SIP/2.0\r\n\
Via: SIP/2.0/TLS caller.invalid;branch=z9hG4bK-{call}\r\n\
Max-Forwards: 70\r\n\
From: <sip:+15552223333@client.example.com>;tag=caller\r\n\
To: <sip:+15550001111@callee.example.com>\r\n\
Call-ID: {call}\r\n\
CSeq: 1 INVITE\r\n\
Contact: <{contact}>\r\n\
{extra}Content-Length: 0\r\n\
\r\n"
    )
}

/// An in-dialog request along `route` (the caller's route set: the Record-Route reversed).
fn in_dialog(
    method: &str,
    target: &str,
    route: &[String],
    call: &str,
    cseq: u32,
    from: &str,
    to: &str,
) -> String {
    let routes: String = route.iter().map(|r| format!("Route: {r}\r\n")).collect();
    format!(
        "{method} {target} SIP/2.0\r\n\
Via: SIP/2.0/TLS side.invalid;branch=z9hG4bK-{call}-{method}-{cseq}\r\n\
Max-Forwards: 70\r\n\
{routes}From: {from}\r\n\
To: {to}\r\n\
Call-ID: {call}\r\n\
CSeq: {cseq} {method}\r\n\
Content-Length: 0\r\n\
\r\n"
    )
}

fn record(routes: &[String]) -> Vec<String> {
    routes
        .iter()
        .flat_map(|r| r.split(','))
        .map(|r| r.trim().to_string())
        .collect()
}

fn passing_in_dialog() -> Arc<TestHook> {
    TestHook::answering(Disposition::Forward {
        display_name: None,
        headers: Vec::new(),
        record_route: true,
        anchor_media: false,
        offer: None,
        tag: None,
    })
}

#[tokio::test]
async fn a_call_over_tls_reaches_a_tls_callee_by_name_and_bye_goes_both_ways() {
    let pki = Pki::new("call");
    let agent = pki.issue("agent", &["sbc.test"]);
    // The callee's certificate is for the SIP domain, not the SRV target (RFC 5922 4).
    let (uas, mut accepted) = tls_uas(&pki, &["pbx.test"]).await;
    let dns = crate::support::dns::Dns::start(&[
        "--naptr-record=pbx.test,10,10,S,SIPS+D2T,,_sips._tcp.pbx.test".into(),
        format!(
            "--srv-host=_sips._tcp.pbx.test,uas1.test,{},10,10",
            uas.port()
        ),
        "--host-record=uas1.test,127.0.0.1".into(),
    ]);
    let hook = passing_in_dialog();
    let server = Server::start_tls(hook.clone(), |c| {
        c.next_hop = Some("pbx.test".parse().unwrap());
        c.next_hop_transport = Transport::Tls;
        c.tls_cert = Some(agent.cert.clone());
        c.tls_key = Some(agent.key.clone());
        c.tls_roots = Some(pki.roots());
        c.dns = crate::support::dns::dns_config(dns.addr);
    })
    .await;
    let tls_addr = server.tls_addr.unwrap();
    let caller_contact = "sip:alice@127.0.0.1:5999;transport=tls";
    let callee_contact = format!("sip:uas@127.0.0.1:{};transport=tls", uas.port());
    let mut caller = Conn::new(connect(tls_addr, "sbc.test", &pki, None).await.unwrap());

    let mut callee: Option<Conn> = None;
    for (n, bye_from_caller) in [(1, true), (2, false)] {
        let call = format!("tls-call-{n}");
        caller.send(&invite(
            &call,
            "sip:+15550001111@pbx.test",
            caller_contact,
            "",
        ));
        // The first call opens the connection to the callee; the second reuses it.
        if callee.is_none() {
            callee = Some(timeout(WAIT, accepted.recv()).await.unwrap().unwrap());
        }
        let callee = callee.as_mut().unwrap();
        let inv = callee.next().await;
        assert!(inv.method_is("INVITE"), "{:?}", inv.buf);
        let via = header(&inv, Hdr::Via);
        assert!(
            via[0].starts_with("SIP/2.0/TLS 127.0.0.1:") && via[0].contains(";alias"),
            "{via:?}"
        );
        assert!(via[0].contains(&format!(":{}", tls_addr.port())), "{via:?}");
        let rr = record(&header(&inv, Hdr::RecordRoute));
        assert_eq!(
            rr,
            [format!(
                "<sip:127.0.0.1:{};transport=tls;lr>",
                tls_addr.port()
            )]
        );
        callee.send(&reply(&inv, 200, "OK", "callee", &callee_contact));
        let ok = caller.next().await;
        assert_eq!(ok.status(), Some(200));
        let route: Vec<String> = record(&header(&ok, Hdr::RecordRoute))
            .into_iter()
            .rev()
            .collect();
        let from = "<sip:+15552223333@client.example.com>;tag=caller";
        let to = "<sip:+15550001111@callee.example.com>;tag=callee";
        if bye_from_caller {
            caller.send(&in_dialog(
                "BYE",
                &callee_contact,
                &route,
                &call,
                2,
                from,
                to,
            ));
            let bye = callee.next().await;
            assert!(bye.method_is("BYE"), "the callee gets the caller's BYE");
            callee.send(&reply(&bye, 200, "OK", "callee", ""));
            assert_eq!(caller.next().await.status(), Some(200));
        } else {
            let back: Vec<String> = route.iter().rev().cloned().collect();
            callee.send(&in_dialog("BYE", caller_contact, &back, &call, 1, to, from));
            let bye = caller.next().await;
            assert!(bye.method_is("BYE"), "the caller gets the callee's BYE");
            caller.send(&reply(&bye, 200, "OK", "caller", ""));
            assert_eq!(callee.next().await.status(), Some(200));
        }
    }
    assert!(
        accepted.try_recv().is_err(),
        "one connection to the callee, reused"
    );
    assert_eq!(hook.calls(), 2);
    assert_eq!(server.proxy.stats().tls_handshake_failures.get(), 0);
}

/// The proxy with a TLS listener showing `agent`, its next hop a UDP server answering 200.
async fn tls_server(
    pki: &Pki,
    hook: Arc<TestHook>,
    configure: impl FnOnce(&mut scamguard::sip::SipConfig),
) -> Server {
    let agent = pki.issue("agent", &["sbc.test"]);
    let (uas, _reached) = crate::dns_sip::udp_uas("127.0.0.1:0").await;
    // The answering server must outlive the test's calls: its receiver is leaked with it.
    std::mem::forget(_reached);
    Server::start_tls(hook, |c| {
        c.next_hop = Some(uas.into());
        c.tls_cert = Some(agent.cert.clone());
        c.tls_key = Some(agent.key.clone());
        c.tls_roots = Some(pki.roots());
        configure(c);
    })
    .await
}

#[tokio::test]
async fn a_blocked_call_gets_its_603_over_tls() {
    let pki = Pki::new("block");
    let hook = TestHook::answering(Disposition::Reject {
        code: 603,
        phrase: "Decline".into(),
        headers: Vec::new(),
    });
    let server = tls_server(&pki, hook.clone(), |_| {}).await;
    let tls = connect(server.tls_addr.unwrap(), "sbc.test", &pki, None).await;
    let mut caller = Conn::new(tls.unwrap());
    caller.send(&invite(
        "tls-blocked",
        "sip:+15550001111@127.0.0.1",
        "sip:a@127.0.0.1;transport=tls",
        "",
    ));
    let answer = caller.next().await;
    assert_eq!(answer.status(), Some(603));
    assert_eq!(answer.call_id(), Some("tls-blocked"));
    assert_eq!(hook.calls(), 1);
}

#[tokio::test]
async fn a_sips_request_with_no_tls_next_hop_is_refused_not_sent_in_the_clear() {
    let pki = Pki::new("sips");
    let hook = TestHook::passing();
    // The next hop is UDP.
    let server = tls_server(&pki, hook.clone(), |_| {}).await;
    let tls = connect(server.tls_addr.unwrap(), "sbc.test", &pki, None).await;
    let mut caller = Conn::new(tls.unwrap());
    caller.send(&invite(
        "tls-sips",
        "sips:+15550001111@example.com",
        "sips:a@127.0.0.1",
        "",
    ));
    assert_eq!(caller.next().await.status(), Some(480));
    assert_eq!(hook.calls(), 0, "refused before the application is asked");
    assert_eq!(server.proxy.stats().sips_refused.get(), 1);
}

#[tokio::test]
async fn with_client_certificates_required_an_uncertified_client_is_refused() {
    let pki = Pki::new("mtls");
    let stranger = Pki::new("stranger");
    let hook = TestHook::passing();
    let server = tls_server(&pki, hook.clone(), |c| {
        c.tls_client_roots = Some(pki.roots());
        c.tls_require_client_cert = true;
    })
    .await;
    let addr = server.tls_addr.unwrap();
    let options = |id: &str| {
        format!(
            "OPTIONS sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TLS c.invalid;branch=z9hG4bK-{id}\r\nMax-Forwards: 70\r\nFrom: <sip:c@example.com>;tag=1\r\nTo: <sip:127.0.0.1>\r\nCall-ID: {id}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
        )
    };
    // A certificate from a CA the proxy does not trust, and none at all: with TLS 1.3 the
    // client's side of the handshake may finish before the server refuses, so the refusal is
    // seen as a connection closed without an answer.
    let forged = stranger.issue("forged", &["core.test"]);
    for (what, me) in [
        ("a stranger's certificate", Some(&forged)),
        ("no certificate", None),
    ] {
        if let Ok(tls) = connect(addr, "sbc.test", &pki, me).await {
            let mut c = Conn::new(tls);
            c.send(&options(what.split(' ').next().unwrap()));
            assert!(c.closed().await, "{what}: refused");
        }
    }
    eventually("both handshakes counted as failed", || async {
        server.proxy.stats().tls_handshake_failures.get() >= 2
    })
    .await;
    // The same request with a certificate the CA issued is answered.
    let good = pki.issue("client", &["core.test"]);
    let mut c = Conn::new(connect(addr, "sbc.test", &pki, Some(&good)).await.unwrap());
    c.send(&options("good"));
    assert_eq!(c.next().await.status(), Some(200));
    assert_eq!(hook.calls(), 0);
}

#[tokio::test]
async fn a_certified_peer_is_trusted_for_its_asserted_identity_and_a_plain_client_is_not() {
    let pki = Pki::new("pai");
    let hook = TestHook::passing();
    let server = tls_server(&pki, hook.clone(), |c| {
        c.tls_client_roots = Some(pki.roots());
        c.trusted_peer_names = vec!["core.test".into()];
    })
    .await;
    let addr = server.tls_addr.unwrap();
    let core = pki.issue("core", &["core.test"]);
    let other = pki.issue("other", &["other.test"]);
    let pai = "P-Asserted-Identity: <sip:+15557778888@core.test>\r\n";
    for (call, me) in [
        ("pai-core", Some(&core)),
        ("pai-other", Some(&other)),
        ("pai-plain", None),
    ] {
        let mut c = Conn::new(connect(addr, "sbc.test", &pki, me).await.unwrap());
        c.send(&invite(
            call,
            "sip:+15550001111@127.0.0.1",
            "sip:a@127.0.0.1;transport=tls",
            pai,
        ));
        assert_eq!(c.next().await.status(), Some(200), "{call}");
    }
    let trusted = hook.trusted.lock().unwrap().clone();
    assert_eq!(
        trusted,
        [
            ("pai-core".to_string(), true),
            ("pai-other".to_string(), false),
            ("pai-plain".to_string(), false),
        ]
    );
}

#[tokio::test]
async fn a_flood_of_half_open_handshakes_does_not_stop_udp_calls() {
    let pki = Pki::new("flood");
    let hook = TestHook::passing();
    let server = tls_server(&pki, hook.clone(), |c| {
        c.tls_handshake_secs = 2;
        c.max_tcp_connections_per_source = 8;
    })
    .await;
    let addr = server.tls_addr.unwrap();
    // From 127.0.0.2, a source of its own (127.0.0.1 is the next hop's, with the core's
    // budget): connections that open and never say a word, then some that send half a
    // ClientHello and stall.
    let mut held = Vec::new();
    for i in 0..40 {
        let s = TcpSocket::new_v4().unwrap();
        s.bind("127.0.0.2:0".parse().unwrap()).unwrap();
        let Ok(mut c) = s.connect(addr).await else {
            continue;
        };
        if i % 2 == 0 {
            let _ = c.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01]).await;
        }
        held.push(c);
    }
    for i in 0..5 {
        let id = format!("flood-udp-{i}");
        assert_eq!(
            crate::dns_sip::call(server.addr, &id, "127.0.0.1").await,
            200,
            "{id}"
        );
    }
    let stats = server.proxy.stats();
    assert!(
        stats.tcp_refused_count(Refusal::Source) > 0,
        "the source's share is capped"
    );
    eventually("the stalled handshakes are closed", || async {
        stats.tls_handshake_failures.get() >= 8
    })
    .await;
    // Their places are given back: a real client from the same source gets in.
    let s = TcpSocket::new_v4().unwrap();
    s.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let tcp = s.connect(addr).await.unwrap();
    let mut c = Conn::new(tls_over(tcp, "sbc.test", &pki, None).await.unwrap());
    c.send(&invite(
        "after-flood",
        "sip:+15550001111@127.0.0.1",
        "sip:a@127.0.0.1;transport=tls",
        "",
    ));
    assert_eq!(c.next().await.status(), Some(200));
    drop(held);
}
