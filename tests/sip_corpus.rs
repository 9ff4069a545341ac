//! Robustness against the public corpora, over the real server: every RFC 4475 torture message
//! and every PROTOS c07-sip case is sent over UDP and over TCP, and the server must still answer
//! an OPTIONS probe afterwards (probed every few cases and at the end).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use scamguard::sip::framing::Framer;
use scamguard::sip::msg::{Limits, Message};
use scamguard::sip::{
    run, CallEvent, CallRef, Decision, Hook, NewCall, Proxy, SdpDirection, SdpKind, SipConfig,
    SipStats,
};
use scamguard::sip::{Peer, Transport};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::watch;
use tokio::time::timeout;

/// Forwards every call and rewrites nothing.
struct PassHook;

impl Hook for PassHook {
    fn new_call(&self, call: &NewCall<'_>, _: Instant) -> Decision {
        Decision::Forward {
            display_name: Some("Checked \"ok\"".into()),
            headers: vec![],
            record_route: true,
            anchor_media: true,
            offer: call.sdp().map(<[u8]>::to_vec),
            tag: None,
        }
    }
    fn call_event(&self, _: &CallRef<'_>, _: CallEvent, _: Instant) {}
    fn rewrite_sdp(
        &self,
        _: &CallRef<'_>,
        _: SdpDirection,
        _: SdpKind,
        body: &[u8],
        _: Instant,
    ) -> Option<Vec<u8>> {
        Some(body.to_vec())
    }
}

/// `../shared/corpus/<sub>` beside the crate (worktrees one level deeper look further up).
fn corpus(sub: &str) -> PathBuf {
    let root = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/corpus")).join(sub);
    if root.is_dir() {
        return root;
    }
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .map(|a| a.join("shared/corpus").join(sub))
        .find(|p| p.is_dir())
        .unwrap_or(root)
}

fn sorted_files(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

async fn start() -> (SocketAddr, Arc<Proxy>, UdpSocket, watch::Sender<bool>) {
    let down = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let (udp, tcp) = loop {
        let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        if let Ok(tcp) = TcpListener::bind(udp.local_addr().unwrap()).await {
            break (udp, tcp);
        }
    };
    let addr = udp.local_addr().unwrap();
    let cfg = SipConfig {
        listen: addr,
        next_hop: Some(down.local_addr().unwrap()),
        // One receive task: a panic in it would leave nobody to answer the probes.
        udp_workers: 1,
        tcp_idle_secs: 5,
        ..SipConfig::default()
    };
    let proxy =
        Arc::new(Proxy::new(cfg, addr, Arc::new(PassHook), Arc::new(SipStats::default())).unwrap());
    let (stop, rx) = watch::channel(false);
    tokio::spawn(run(udp, tcp, proxy.clone(), rx));
    (addr, proxy, down, stop)
}

fn options(target: SocketAddr, local: SocketAddr, transport: &str, n: usize) -> String {
    format!(
        "OPTIONS sip:{target} SIP/2.0\r\nVia: SIP/2.0/{transport} {local};branch=z9hG4bKprobe{n}\r\nMax-Forwards: 0\r\nFrom: <sip:probe@127.0.0.1>;tag=p{n}\r\nTo: <sip:probe@127.0.0.1>\r\nCall-ID: probe-{n}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    )
}

/// Send an OPTIONS over UDP until its 200 arrives (datagrams may be lost under load).
async fn probe_udp(sock: &UdpSocket, target: SocketAddr, n: usize) {
    let local = sock.local_addr().unwrap();
    let want = format!("probe-{n}");
    for _ in 0..5 {
        sock.send_to(options(target, local, "UDP", n).as_bytes(), target)
            .await
            .unwrap();
        let mut buf = vec![0u8; 65536];
        while let Ok(Ok((len, _))) = timeout(Duration::from_secs(2), sock.recv_from(&mut buf)).await
        {
            let m = Message::parse(
                Bytes::copy_from_slice(&buf[..len]),
                &Limits::default(),
                true,
            )
            .unwrap();
            if m.call_id() == Some(want.as_str()) && m.status() == Some(200) {
                return;
            }
        }
    }
    panic!("no answer to UDP probe {n}");
}

async fn probe_tcp(s: &mut TcpStream, framer: &mut Framer, target: SocketAddr, n: usize) {
    let local = s.local_addr().unwrap();
    s.write_all(options(target, local, "TCP", n).as_bytes())
        .await
        .unwrap();
    let want = format!("probe-{n}");
    loop {
        while let Some(m) = framer.next_message().unwrap() {
            let m = Message::parse(m, &Limits::default(), false).unwrap();
            if m.call_id() == Some(want.as_str()) && m.status() == Some(200) {
                return;
            }
        }
        let mut buf = [0u8; 8192];
        let n = timeout(Duration::from_secs(10), s.read(&mut buf))
            .await
            .expect("probe answer in time")
            .unwrap();
        assert!(n > 0, "probe connection closed");
        framer.push(&buf[..n]);
    }
}

/// Send one message on a fresh TCP connection and close our side (a broken frame cannot
/// poison the next case).
async fn send_tcp_case(target: SocketAddr, data: &[u8]) {
    let Ok(mut s) = TcpStream::connect(target).await else {
        return;
    };
    let _ = s.write_all(data).await;
    let _ = s.shutdown().await;
    // Drain what the server answers until it closes or goes quiet, so its connection ends.
    let mut buf = [0u8; 4096];
    while let Ok(Ok(n)) = timeout(Duration::from_millis(200), s.read(&mut buf)).await {
        if n == 0 {
            break;
        }
    }
}

/// A PROTOS case file: `<len> <template>` repeated (the INVITE, then the teardown request).
fn protos_messages(raw: &[u8], n: usize, local: SocketAddr) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut rest = raw;
    loop {
        while let [b' ' | b'\r' | b'\n', tail @ ..] = rest {
            rest = tail;
        }
        let Some(sp) = rest.iter().position(|&c| c == b' ') else {
            break;
        };
        let Some(len) = std::str::from_utf8(&rest[..sp])
            .ok()
            .and_then(|s| s.parse::<usize>().ok())
        else {
            break;
        };
        let start = sp + 1;
        let end = (start + len).min(rest.len());
        out.push(substitute(&rest[start..end], n, local));
        rest = &rest[end..];
    }
    out
}

/// Replace every `<Placeholder>` in one pass (cases reach 128 KiB; debug builds are slow).
fn fill(t: &[u8], subs: &[(&str, String)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(t.len() + 64);
    let mut i = 0;
    while i < t.len() {
        if t[i] == b'<' {
            if let Some((k, v)) = subs.iter().find(|(k, _)| t[i..].starts_with(k.as_bytes())) {
                out.extend_from_slice(v.as_bytes());
                i += k.len();
                continue;
            }
        }
        out.push(t[i]);
        i += 1;
    }
    out
}

fn substitute(t: &[u8], n: usize, local: SocketAddr) -> Vec<u8> {
    let subs: [(&str, String); 9] = [
        ("<To>", "bob@127.0.0.1".into()),
        ("<From>", "alice@127.0.0.1".into()),
        ("<From-Address>", "127.0.0.1".into()),
        ("<From-IP>", "127.0.0.1".into()),
        ("<Local-Port>", local.port().to_string()),
        ("<Call-ID>", format!("protos{n}")),
        ("<CSeq>", "1".into()),
        ("<Branch-ID>", format!("{n:07}")),
        ("<Teardown-Method>", "CANCEL".into()),
    ];
    let m = fill(t, &subs);
    let body_len = find_body(&m).map_or(0, |b| m.len() - b);
    fill(&m, &[("<Content-Length>", body_len.to_string())])
}

fn find_body(m: &[u8]) -> Option<usize> {
    let crlf = m.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4);
    let lf = m.windows(2).position(|w| w == b"\n\n").map(|p| p + 2);
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

const PROBE_EVERY: usize = 100;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc4475_then_still_answers() {
    let (addr, proxy, _down, _stop) = start().await;
    let files = sorted_files(&corpus("rfc4475"));
    assert_eq!(files.len(), 49);
    let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut tcp_probe = TcpStream::connect(addr).await.unwrap();
    let mut framer = Framer::new(65535);
    for (i, f) in files.iter().enumerate() {
        let data = std::fs::read(f).unwrap();
        client.send_to(&data, addr).await.unwrap();
        probe_udp(&client, addr, i).await;
        send_tcp_case(addr, &data).await;
        probe_tcp(&mut tcp_probe, &mut framer, addr, 1000 + i).await;
    }
    let s = proxy.stats();
    // 18 invalid requests get 400/505 over UDP; over TCP four of them cannot be framed at all
    // (clerr, baddn wait for bytes that never come; ncl, mcl01 break the stream) and are closed.
    assert_eq!(s.malformed_answered.get(), 18 + 14);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protos_udp_and_tcp_then_still_answers() {
    let (addr, proxy, _down, _stop) = start().await;
    let files = sorted_files(&corpus("protos-sip/cases"));
    assert_eq!(files.len(), 4527);
    let cases = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let local = cases.local_addr().unwrap();
    let prober = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut tcp_probe = TcpStream::connect(addr).await.unwrap();
    let mut framer = Framer::new(65535);
    for (n, f) in files.iter().enumerate() {
        let raw = std::fs::read(f).unwrap();
        let msgs = protos_messages(&raw, n, local);
        assert!(!msgs.is_empty(), "{}: no template", f.display());
        for m in &msgs {
            // Some cases exceed a datagram; the OS refuses those and that is fine.
            let _ = cases.send_to(m, addr).await;
        }
        send_tcp_case(addr, &msgs.concat()).await;
        if n % PROBE_EVERY == 0 {
            probe_udp(&prober, addr, n).await;
            probe_tcp(&mut tcp_probe, &mut framer, addr, n).await;
        }
    }
    probe_udp(&prober, addr, 99_999).await;
    probe_tcp(&mut tcp_probe, &mut framer, addr, 99_999).await;
    let s = proxy.stats();
    assert!(s.rx_udp.get() > 4527 && s.rx_tcp.get() > 4527);
    assert!(
        s.malformed_answered.get() + s.malformed_dropped.get() > 1000,
        "the malformed cases were seen as such"
    );
}

/// Every corpus message straight through the sans-IO core, over both transport rules; then the
/// timers must free every transaction and call entry.
#[test]
fn corpora_through_the_core_leave_nothing_behind() {
    let local: SocketAddr = "127.0.0.1:5090".parse().unwrap();
    let me: SocketAddr = "127.0.0.1:5060".parse().unwrap();
    let cfg = SipConfig {
        next_hop: Some("127.0.0.1:5070".parse().unwrap()),
        ..SipConfig::default()
    };
    let proxy = Proxy::new(cfg, me, Arc::new(PassHook), Arc::new(SipStats::default())).unwrap();
    let t0 = Instant::now();
    let udp = Peer {
        transport: Transport::Udp,
        addr: local,
        conn: None,
    };
    let tcp = Peer {
        transport: Transport::Tcp,
        addr: local,
        conn: Some(7),
    };
    let mut inputs: Vec<Vec<u8>> = sorted_files(&corpus("rfc4475"))
        .iter()
        .map(|f| std::fs::read(f).unwrap())
        .collect();
    for (n, f) in sorted_files(&corpus("protos-sip/cases")).iter().enumerate() {
        inputs.extend(protos_messages(&std::fs::read(f).unwrap(), n, local));
    }
    let mut sent = 0;
    for data in &inputs {
        sent += proxy.handle(Bytes::copy_from_slice(data), udp, t0).len();
        let mut framer = Framer::new(65535);
        framer.push(data);
        while let Ok(Some(m)) = framer.next_message() {
            sent += proxy.handle(m, tcp, t0).len();
        }
    }
    assert!(
        sent > inputs.len(),
        "the corpus produced answers and forwards"
    );
    let (servers, clients, _) = proxy.table_sizes();
    assert!(servers > 0 && clients > 0);
    // Timers: retransmissions and timeouts run, then every entry is gone.
    for s in (1..=20).map(|i| i * i) {
        proxy.poll(t0 + Duration::from_secs(s));
    }
    assert_eq!(proxy.table_sizes(), (0, 0, 0));
    assert_eq!(proxy.stats().transactions.get(), 0);
    assert_eq!(proxy.stats().calls.get(), 0);
}
