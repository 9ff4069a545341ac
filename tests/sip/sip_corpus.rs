//! Robustness over the real server: every RFC 4475 torture message (in `tests/fixtures/rfc4475`)
//! and every case of the project's own malformed-message corpus (`tests/support/malformed.rs`)
//! is sent over UDP and over TCP. The server must still answer an OPTIONS probe afterwards
//! (probed every few cases and at the end), and each generated case must get what its label
//! says: refused (4xx or nothing, never at the next hop) or screened as usual (at the next hop).

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::malformed;
use crate::support::hook::{Server, TestHook};
use crate::support::WAIT;
use bytes::Bytes;
use scamguard::sip::framing::Framer;
use scamguard::sip::msg::{Limits, Message};
use scamguard::sip::{Disposition, Proxy, SipConfig, SipStats};
use scamguard::sip::{Peer, Transport};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::oneshot;
use tokio::time::timeout;

/// Forwards every call with its caller name rewritten, anchoring the media (every SDP body goes
/// through the hook, which changes nothing).
fn forward_all() -> Disposition {
    Disposition::Forward {
        display_name: Some("Checked \"ok\"".into()),
        headers: vec![],
        record_route: true,
        anchor_media: true,
        offer: None,
        tag: None,
    }
}

/// The RFC 4475 messages, in the repository: missing is a failure, never a skip.
fn rfc4475_dir() -> PathBuf {
    let dir = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/rfc4475"
    ));
    assert!(dir.is_dir(), "{} is missing", dir.display());
    dir
}

/// The `.sip` files of a directory, sorted.
fn sorted_files(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "sip"))
        .collect();
    v.sort();
    v
}

/// The server with its next hop (the returned socket), as `tune` sets it up.
async fn start(tune: impl FnOnce(&mut SipConfig)) -> (Server, UdpSocket) {
    let down = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let next_hop = down.local_addr().unwrap();
    let server = Server::start(TestHook::answering(forward_all()), |c| {
        c.next_hop = Some(next_hop.into());
        // One receive task: a panic in it would leave nobody to answer the probes.
        c.udp_workers = 1;
        c.tcp_idle_secs = 5;
        tune(c);
    })
    .await;
    (server, down)
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
        let n = timeout(WAIT, s.read(&mut buf))
            .await
            .expect("probe answer in time")
            .unwrap();
        assert!(n > 0, "probe connection closed");
        framer.push(&buf[..n]);
    }
}

/// Send one message on a fresh TCP connection and close our side (a broken frame cannot
/// poison the next case). Returns what the server answered before it closed or went quiet;
/// answers may be lost, since the server drops its writer when it reads our end.
async fn send_tcp_case(target: SocketAddr, data: &[u8]) -> Vec<u8> {
    let Ok(mut s) = TcpStream::connect(target).await else {
        return vec![];
    };
    let _ = s.write_all(data).await;
    let _ = s.shutdown().await;
    // Drain what the server answers until it closes or goes quiet, so its connection ends.
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(Ok(n)) = timeout(Duration::from_millis(200), s.read(&mut buf)).await {
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc4475_then_still_answers() {
    let (server, _down) = start(|_| {}).await;
    let (addr, proxy) = (server.addr, &server.proxy);
    let files = sorted_files(&rfc4475_dir());
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

/// What came back for the cases of one transport.
#[derive(Default)]
struct Seen {
    /// Case id: how many copies reached the next hop.
    forwarded: HashMap<usize, usize>,
    /// Case id: the problem of a forwarded copy our own scanner finds malformed.
    bad_forward: HashMap<usize, String>,
    /// Case id: status codes of the answers.
    codes: HashMap<usize, Vec<u16>>,
}

/// `Seen` for UDP (`[0]`, token letter `u`) and TCP (`[1]`, `t`).
type SeenBoth = Arc<Mutex<[Seen; 2]>>;

const END: &[u8] = b"END";

/// Read what reaches the next hop until `END` arrives.
async fn collect_forwards(down: UdpSocket, seen: SeenBoth, done: oneshot::Sender<usize>) {
    let mut buf = vec![0u8; 65536];
    let mut untraced = 0;
    loop {
        let (n, _) = down.recv_from(&mut buf).await.unwrap();
        let data = &buf[..n];
        if data == END {
            let _ = done.send(untraced);
            return;
        }
        let found = ['u', 't']
            .iter()
            .enumerate()
            .find_map(|(i, &l)| Some((i, malformed::find_token(data, l)?)));
        let Some((t, id)) = found else {
            untraced += 1;
            continue;
        };
        let problem = match Message::parse(Bytes::copy_from_slice(data), &Limits::default(), true) {
            Ok(m) => m.problem.map(|p| p.as_str().to_string()),
            Err(p) => Some(format!("unparsable: {}", p.as_str())),
        };
        let mut s = seen.lock().unwrap();
        *s[t].forwarded.entry(id).or_default() += 1;
        if let Some(p) = problem {
            s[t].bad_forward.insert(id, p);
        }
    }
}

/// Read the answers to the UDP cases until `END` arrives.
async fn collect_answers(sock: Arc<UdpSocket>, seen: SeenBoth, done: oneshot::Sender<usize>) {
    let mut buf = vec![0u8; 65536];
    let mut untraced = 0;
    loop {
        let (n, _) = sock.recv_from(&mut buf).await.unwrap();
        let data = &buf[..n];
        if data == END {
            let _ = done.send(untraced);
            return;
        }
        let code = Message::parse(Bytes::copy_from_slice(data), &Limits::default(), true)
            .ok()
            .and_then(|m| m.status());
        match (malformed::find_token(data, 'u'), code) {
            (Some(id), Some(code)) => seen.lock().unwrap()[0]
                .codes
                .entry(id)
                .or_default()
                .push(code),
            _ => untraced += 1,
        }
    }
}

/// The generated corpus over UDP and TCP: every label holds, the server keeps answering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_corpus_udp_and_tcp() {
    // A forwarded INVITE is never answered by the next hop here: a long T1 keeps its
    // retransmissions from flooding the next hop while the test runs.
    let (server, down) = start(|c| {
        c.t1_ms = 30_000;
        c.t2_ms = 30_000;
        // The probe connection idles between probes; on a busy machine that can take seconds.
        c.tcp_idle_secs = 300;
    })
    .await;
    let (addr, proxy) = (server.addr, &server.proxy);
    let down_addr = down.local_addr().unwrap();
    let cases_sock = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let prober = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut tcp_probe = TcpStream::connect(addr).await.unwrap();
    let mut framer = Framer::new(65535);
    let udp_cases = malformed::generate(malformed::Target {
        transport: "UDP",
        local: cases_sock.local_addr().unwrap(),
    });
    // Each TCP case comes from its own connection: Via and Contact name the probe's address.
    let tcp_cases = malformed::generate(malformed::Target {
        transport: "TCP",
        local: tcp_probe.local_addr().unwrap(),
    });

    let seen: SeenBoth = Arc::default();
    let (fwd_done, fwd_rx) = oneshot::channel();
    let (ans_done, ans_rx) = oneshot::channel();
    tokio::spawn(collect_forwards(down, seen.clone(), fwd_done));
    tokio::spawn(collect_answers(cases_sock.clone(), seen.clone(), ans_done));

    let (mut probes, mut unprobed, mut bytes) = (0usize, 0usize, 0usize);
    for i in 0..udp_cases.len().max(tcp_cases.len()) {
        if let Some(c) = udp_cases.get(i) {
            // Cases over 64 KiB are no datagram: the OS refuses them, which is fine.
            let _ = cases_sock.send_to(&c.data, addr).await;
            unprobed += 1;
            bytes += c.data.len();
        }
        // The server reads UDP in one task, in order: once a probe is answered, every case
        // before it was handled. Probing often keeps the socket buffers from overflowing.
        if unprobed >= 8 || bytes > 64 << 10 {
            probe_udp(&prober, addr, probes).await;
            probes += 1;
            (unprobed, bytes) = (0, 0);
        }
        if let Some(c) = tcp_cases.get(i) {
            let answer = send_tcp_case(addr, &c.data).await;
            let mut f = Framer::new(1 << 20);
            f.push(&answer);
            while let Ok(Some(m)) = f.next_message() {
                if let Some(code) = Message::parse(m, &Limits::default(), false)
                    .ok()
                    .and_then(|m| m.status())
                {
                    seen.lock().unwrap()[1]
                        .codes
                        .entry(c.id)
                        .or_default()
                        .push(code);
                }
            }
        }
        if i % 100 == 0 {
            probe_tcp(&mut tcp_probe, &mut framer, addr, probes).await;
            probes += 1;
        }
    }
    probe_udp(&prober, addr, probes).await;
    probe_tcp(&mut tcp_probe, &mut framer, addr, probes + 1).await;
    // Everything the server sent is queued before these markers.
    prober.send_to(END, down_addr).await.unwrap();
    prober
        .send_to(END, cases_sock.local_addr().unwrap())
        .await
        .unwrap();
    let untraced_fwd = timeout(WAIT, fwd_rx).await.unwrap().unwrap();
    let untraced_ans = timeout(WAIT, ans_rx).await.unwrap().unwrap();

    let seen = seen.lock().unwrap();
    let mut failures: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut counts: BTreeMap<(&str, malformed::Label), usize> = BTreeMap::new();
    for (t, cases) in [("UDP", &udp_cases), ("TCP", &tcp_cases)] {
        let s = &seen[usize::from(t == "TCP")];
        for c in cases.iter() {
            if t == "UDP" {
                *counts.entry((c.family, c.label)).or_default() += 1;
            }
            let fwd = s.forwarded.contains_key(&c.id);
            let codes = s.codes.get(&c.id).map(Vec::as_slice).unwrap_or(&[]);
            let wrong = match c.label {
                malformed::Label::Refuse if fwd => Some("forwarded".to_string()),
                malformed::Label::Refuse => codes
                    .iter()
                    .find(|&&k| !(400..500).contains(&k) && k != 505)
                    .map(|k| format!("answered {k}")),
                malformed::Label::Screen if !fwd => {
                    Some(format!("not forwarded, answers {codes:?}"))
                }
                malformed::Label::Screen => {
                    match (codes.iter().find(|&&k| k >= 300), s.bad_forward.get(&c.id)) {
                        (Some(k), _) => Some(format!("answered {k}")),
                        (None, Some(p)) => Some(format!("forwarded malformed ({p})")),
                        (None, None) => None,
                    }
                }
            };
            if let Some(w) = wrong {
                failures
                    .entry(format!("{t} {} {} {:?}: {w}", c.family, c.place, c.label))
                    .or_default()
                    .push(c.variant.clone());
            }
        }
    }
    eprintln!("generated cases per transport (family, label: count):");
    for ((f, l), n) in &counts {
        eprintln!("  {f:16} {l:?}: {n}");
    }
    let report: Vec<String> = failures
        .iter()
        .map(|(k, v)| {
            format!(
                "{k} ({} cases: {})",
                v.len(),
                v.iter().take(4).cloned().collect::<Vec<_>>().join(", ")
            )
        })
        .collect();
    assert!(udp_cases.len() >= 4000, "{} cases", udp_cases.len());
    assert_eq!(
        untraced_fwd, 0,
        "messages at the next hop that name no case"
    );
    assert_eq!(untraced_ans, 0, "UDP answers that name no case");
    assert!(report.is_empty(), "labels not held:\n{}", report.join("\n"));
    let s = proxy.stats();
    assert!(s.malformed_answered.get() + s.malformed_dropped.get() > 1000);
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
    let proxy = Proxy::new(
        cfg,
        me,
        TestHook::answering(forward_all()),
        Arc::new(SipStats::default()),
    );
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
    let mut inputs: Vec<Vec<u8>> = sorted_files(&rfc4475_dir())
        .iter()
        .map(|f| std::fs::read(f).unwrap())
        .collect();
    assert_eq!(inputs.len(), 49);
    let target = malformed::Target {
        transport: "UDP",
        local,
    };
    inputs.extend(malformed::generate(target).into_iter().map(|c| c.data));
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
