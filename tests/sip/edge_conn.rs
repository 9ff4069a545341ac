//! Issue 13, "Hold the edge", the connections, the calls' lifetime and the scanners, over real
//! sockets: the bare proxy (`support::hook::Server`) with TCP clients bound to several loopback
//! addresses (127.0.0.0/8 is all loopback, so each address is a source of its own), and the whole
//! agent (`support::agent`) scanned by the real SIPVicious `svwar` with a core behind it that
//! knows some extensions.
//!
//! Nothing is timed: each test waits with `eventually` or for a message, under `WAIT`.

use std::net::SocketAddr;
use std::process::Output;

use scamguard::sip::conn::Refusal;
use scamguard::sip::{Disposition, Transport};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream, UdpSocket};
use tokio::time::timeout;

use crate::support::agent::{invite, read_stream_msg, recv, recv_final, reply, Harness, Msg};
use crate::support::hook::{Server, TestHook};
use crate::support::http::{metric, metrics};
use crate::support::{eventually, WAIT};

const CALLER: &str = "<sip:+14155552671@127.0.0.1>;tag=a1";
const CALLEE: &str = "+16175551234";

/// A TCP connection to `to` from the loopback address `ip`.
async fn connect_from(ip: &str, to: SocketAddr) -> TcpStream {
    let s = TcpSocket::new_v4().unwrap();
    s.bind(SocketAddr::new(ip.parse().unwrap(), 0)).unwrap();
    s.connect(to).await.unwrap()
}

/// Whether the other end closes `s` (a read ends in EOF or a reset) within `WAIT`; what it
/// sends before that is skipped.
async fn closed(s: &mut (impl AsyncReadExt + Unpin)) -> bool {
    let mut b = [0u8; 1024];
    loop {
        match timeout(WAIT, s.read(&mut b)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => {}
            Err(_) => return false,
        }
    }
}

/// The next message on `s` that is not a 100 Trying.
async fn final_on(s: &mut TcpStream, buf: &mut Vec<u8>) -> Msg {
    loop {
        let m = read_stream_msg(s, buf).await;
        if m.status() != Some(100) {
            return m;
        }
    }
}

/// One source opening connections as fast as it can takes its share and no more: the other
/// sources, UDP and the path to the core are still served. The total here is exactly the
/// flood's share and one more, so the agent's own connection to the core is opened while every
/// other place is taken: only the core's budget lets it through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tcp_flood_from_one_source_stops_neither_udp_nor_other_sources_nor_the_core() {
    let core = TcpListener::bind("127.0.0.5:0").await.unwrap();
    let srv = Server::start(TestHook::passing(), |c| {
        c.next_hop = Some(core.local_addr().unwrap().into());
        c.next_hop_transport = Transport::Tcp;
        c.max_tcp_connections = 5;
        c.max_tcp_connections_per_source = 4;
        c.max_tcp_core_connections = 2;
    })
    .await;
    let stats = srv.proxy.stats().clone();
    let mut flood = Vec::new();
    for _ in 0..12 {
        flood.push(connect_from("127.0.0.1", srv.addr).await);
    }
    eventually("all but 4 of the flood refused", || async {
        stats.tcp_refused_count(Refusal::Source) == 8
    })
    .await;
    // Another source gets the last place of the total; a third finds it spent.
    let mut other = connect_from("127.0.0.2", srv.addr).await;
    let mut late = connect_from("127.0.0.7", srv.addr).await;
    assert!(closed(&mut late).await, "over the total: closed at once");
    assert_eq!(stats.tcp_refused_count(Refusal::Total), 1);

    // A caller over UDP: its INVITE reaches the core over a connection the agent opens now.
    let uac = UdpSocket::bind("127.0.0.3:0").await.unwrap();
    let port = uac.local_addr().unwrap().port();
    let inv = invite(
        "UDP",
        srv.addr,
        port,
        "flood-udp",
        "z9hG4bKfu1",
        CALLER,
        CALLEE,
        "",
        "",
    );
    uac.send_to(inv.as_bytes(), srv.addr).await.unwrap();
    let (mut to_core, _) = timeout(WAIT, core.accept()).await.unwrap().unwrap();
    let mut core_buf = Vec::new();
    let m = read_stream_msg(&mut to_core, &mut core_buf).await;
    assert_eq!(m.hdr("Call-ID"), Some("flood-udp"), "{}", m.text);

    // The other TCP source's call reaches the core too, and the core's answer comes back.
    let port = other.local_addr().unwrap().port();
    let inv = invite(
        "TCP",
        srv.addr,
        port,
        "flood-tcp",
        "z9hG4bKft1",
        CALLER,
        CALLEE,
        "",
        "",
    );
    other.write_all(inv.as_bytes()).await.unwrap();
    let m = loop {
        let m = read_stream_msg(&mut to_core, &mut core_buf).await;
        if m.hdr("Call-ID") == Some("flood-tcp") {
            break m;
        }
    };
    let busy = reply(&m, 486, "Busy Here", "core1", "", "");
    to_core.write_all(busy.as_bytes()).await.unwrap();
    let mut other_buf = Vec::new();
    assert_eq!(
        final_on(&mut other, &mut other_buf).await.status(),
        Some(486)
    );
    assert_eq!(stats.tcp_refused_count(Refusal::Core), 0);
    assert_eq!(
        stats.tcp_refused_count(Refusal::Source),
        8,
        "nothing else refused"
    );
    drop(flood);
}

/// A message that stays incomplete closes its connection after `tcp_read_timeout_secs`, counted
/// from its first byte, so that sending a byte now and then does not keep it open; a connection
/// that merely idles stays open for `tcp_idle_secs` and is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_sent_message_closes_its_connection_and_an_idle_one_stays() {
    let down = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let srv = Server::start(TestHook::passing(), |c| {
        c.next_hop = Some(down.local_addr().unwrap().into());
        c.tcp_read_timeout_secs = 1;
        c.tcp_idle_secs = 300;
    })
    .await;
    let mut idle = TcpStream::connect(srv.addr).await.unwrap();
    let slow = TcpStream::connect(srv.addr).await.unwrap();
    let (mut rd, mut wr) = slow.into_split();
    wr.write_all(
        b"OPTIONS sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:9;branch=z9hG4bKslow\r\n",
    )
    .await
    .unwrap();
    // One more header byte every 200 ms, until the agent closes the connection.
    let trickle = tokio::spawn(async move {
        let mut sent = 0u32;
        loop {
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            if wr.write_all(b"X").await.is_err() {
                return sent;
            }
            sent += 1;
        }
    });
    assert!(
        closed(&mut rd).await,
        "the half-sent message's connection is closed"
    );
    let stats = srv.proxy.stats().clone();
    eventually("the read timeout counted", || async {
        stats.tcp_read_timeouts.get() == 1
    })
    .await;
    let trickled = timeout(WAIT, trickle).await.unwrap().unwrap();
    assert!(
        trickled > 0,
        "bytes kept coming while the message stayed incomplete"
    );

    // The idle connection is still served.
    let port = idle.local_addr().unwrap().port();
    let opt = format!(
        "OPTIONS sip:{} SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:{port};branch=z9hG4bKidle\r\n\
         Max-Forwards: 70\r\nFrom: <sip:probe@127.0.0.1>;tag=i\r\nTo: <sip:{}>\r\n\
         Call-ID: idle@itest\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
        srv.addr, srv.addr
    );
    idle.write_all(opt.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    assert_eq!(final_on(&mut idle, &mut buf).await.status(), Some(200));
    assert_eq!(stats.tcp_read_timeouts.get(), 1);
}

/// A forward that stays in the dialog, so that the answered call is tracked.
fn staying() -> Disposition {
    Disposition::Forward {
        display_name: None,
        headers: Vec::new(),
        record_route: true,
        anchor_media: false,
        offer: None,
        tag: None,
    }
}

/// Call `call_id` from `uac` through `srv` to `down`, answer it 200 and ACK it; its BYE never
/// comes.
async fn answered_call(srv: &Server, uac: &UdpSocket, down: &UdpSocket, call_id: &str) {
    let port = uac.local_addr().unwrap().port();
    let branch = format!("z9hG4bK{call_id}");
    let inv = invite(
        "UDP", srv.addr, port, call_id, &branch, CALLER, CALLEE, "", "",
    );
    uac.send_to(inv.as_bytes(), srv.addr).await.unwrap();
    let (m, _) = recv(down).await;
    assert_eq!(m.hdr("Call-ID"), Some(call_id), "{}", m.text);
    let contact = format!("Contact: <sip:callee@{}>\r\n", down.local_addr().unwrap());
    let ok = reply(&m, 200, "OK", "callee1", &contact, "");
    down.send_to(ok.as_bytes(), srv.addr).await.unwrap();
    let r = recv_final(uac).await;
    assert_eq!(r.status(), Some(200), "{}", r.text);
    let ack = format!(
        "ACK sip:callee@{} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch={branch}ack\r\n\
         Route: <sip:{};lr>\r\nMax-Forwards: 70\r\nFrom: {CALLER}\r\nTo: {}\r\nCall-ID: {call_id}\r\n\
         CSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n",
        down.local_addr().unwrap(),
        srv.addr,
        r.hdr("To").unwrap()
    );
    uac.send_to(ack.as_bytes(), srv.addr).await.unwrap();
    loop {
        let (m, _) = recv(down).await;
        if m.method() == "ACK" {
            break;
        }
    }
}

/// With room for one call, an answered call whose BYE never comes no longer refuses the next
/// caller for hours: once it has idled past 64*T1 it is evicted, and the new call goes through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_call_table_evicts_an_answered_call_whose_bye_never_came() {
    let down = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let srv = Server::start(TestHook::answering(staying()), |c| {
        c.next_hop = Some(down.local_addr().unwrap().into());
        c.max_calls = 1;
        c.t1_ms = 20;
        c.t2_ms = 80;
        c.tick_ms = 10;
    })
    .await;
    let uac = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    answered_call(&srv, &uac, &down, "stale").await;
    let port = uac.local_addr().unwrap().port();
    let agent = srv.addr;
    let mut n = 0;
    // Refused 503 while the answered call is fresh; forwarded (100 Trying) once it may go.
    eventually("a new call forwarded past the stale one", || {
        n += 1;
        let inv = invite(
            "UDP",
            agent,
            port,
            &format!("next-{n}"),
            &format!("z9hG4bKnext{n}"),
            CALLER,
            CALLEE,
            "",
            "",
        );
        let uac = &uac;
        async move {
            uac.send_to(inv.as_bytes(), agent).await.unwrap();
            let (r, _) = recv(uac).await;
            assert!(matches!(r.status(), Some(100 | 503)), "{}", r.text);
            r.status() == Some(100)
        }
    })
    .await;
    let stats = srv.proxy.stats();
    assert_eq!(stats.calls_evicted.get(), 1);
    assert_eq!(srv.proxy.table_sizes().2, 1, "the new call in its place");
}

/// An answered call with no refresh is forgotten after `call_idle_secs`, and counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_answered_call_expires() {
    let down = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let srv = Server::start(TestHook::answering(staying()), |c| {
        c.next_hop = Some(down.local_addr().unwrap().into());
        c.t1_ms = 20;
        c.t2_ms = 80;
        c.tick_ms = 10;
        c.call_idle_secs = 2;
    })
    .await;
    let uac = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    answered_call(&srv, &uac, &down, "idle").await;
    let stats = srv.proxy.stats().clone();
    assert_eq!(stats.calls.get(), 1, "tracked once answered");
    eventually("the idle call expired", || async {
        stats.calls_expired.get() == 1
    })
    .await;
    assert_eq!(srv.proxy.table_sizes().2, 0);
    assert_eq!(stats.calls.get(), 0);
}

/// The extensions the core behind the agent has.
const KNOWN: [&str; 3] = ["101", "105", "110"];

/// A core that knows [`KNOWN`]: REGISTER and INVITE to one of them are challenged (401),
/// OPTIONS answered 200; anything else is 404. What svwar tells extensions apart by.
async fn core(sock: UdpSocket) {
    let mut buf = vec![0u8; 65536];
    loop {
        let Ok((n, from)) = sock.recv_from(&mut buf).await else {
            return;
        };
        let m = Msg::new(&buf[..n]);
        let method = m.method().to_string();
        if !["REGISTER", "OPTIONS", "INVITE"].contains(&method.as_str()) {
            continue;
        }
        let user = m
            .hdr("To")
            .and_then(|t| t.split("sip:").nth(1))
            .and_then(|t| t.split('@').next())
            .unwrap_or("");
        let (code, phrase, extra) = match (KNOWN.contains(&user), method.as_str()) {
            (true, "OPTIONS") => (200, "OK", String::new()),
            (true, _) => (
                401,
                "Unauthorized",
                "WWW-Authenticate: Digest realm=\"core\", nonce=\"n1\"\r\n".to_string(),
            ),
            (false, _) => (404, "Not Found", String::new()),
        };
        let r = reply(&m, code, phrase, "core1", &extra, "");
        let _ = sock.send_to(r.as_bytes(), from).await;
    }
}

/// svwar from the Debian package `sipvicious` (or pip's `sipvicious_svwar`). Missing is a
/// failure, not a skip: CI installs it.
fn svwar() -> &'static str {
    ["svwar", "sipvicious_svwar"]
        .into_iter()
        .find(|b| {
            std::process::Command::new(b)
                .arg("--version")
                .output()
                .is_ok()
        })
        .expect(
            "SIPVicious' svwar is missing: apt-get install sipvicious (or pip install sipvicious)",
        )
}

/// Scan extensions 100..=115 of `target` with `method`; the extensions svwar reports found.
async fn svwar_finds(target: SocketAddr, method: &str) -> Vec<String> {
    let run = tokio::process::Command::new(svwar())
        .args([
            "-e",
            "100-115",
            "-m",
            method,
            "-b",
            "127.0.0.1",
            "-x",
            "127.0.0.1",
        ])
        .args(["-p", &target.port().to_string(), &target.ip().to_string()])
        .kill_on_drop(true)
        .output();
    let out: Output = timeout(std::time::Duration::from_secs(60), run)
        .await
        .expect("svwar ends")
        .expect("svwar runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !text.contains("Traceback"),
        "svwar failed against {target}: {text}"
    );
    // Its result table: `| 101 | reqauth |`, one row per extension found.
    text.lines()
        .filter_map(|l| l.trim().strip_prefix('|')?.split('|').next())
        .map(str::trim)
        .filter(|c| !c.is_empty() && c.bytes().all(|b| b.is_ascii_digit()))
        .map(str::to_owned)
        .collect()
}

/// svwar with each of `methods` at once against `target`; each one's findings, sorted.
async fn scan_all(
    target: SocketAddr,
    methods: &[&'static str],
) -> Vec<(&'static str, Vec<String>)> {
    let runs: Vec<_> = methods
        .iter()
        .map(|&m| {
            tokio::spawn(async move {
                let mut found = svwar_finds(target, m).await;
                found.sort();
                (m, found)
            })
        })
        .collect();
    let mut all = Vec::new();
    for r in runs {
        all.push(r.await.unwrap());
    }
    all
}

/// SIPVicious' `svwar`, every method, learns no extension through the agent: the shipped
/// deny list drops it by its name, and without the list REGISTER (405) and OPTIONS (200,
/// answered by the agent) get one answer for every extension. Straight at the core the same
/// scans find every known extension, so the scans work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn svwar_learns_no_extension_through_the_agent() {
    let core_sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let core_addr = core_sock.local_addr().unwrap();
    tokio::spawn(core(core_sock));
    let all = ["REGISTER", "OPTIONS", "INVITE"];
    let known: Vec<String> = KNOWN.iter().map(|s| s.to_string()).collect();
    for (method, found) in scan_all(core_addr, &all).await {
        assert_eq!(found, known, "svwar -m {method} straight at the core");
    }

    let shipped = Harness::start_with(&[], |c| c.sip.next_hop = Some(core_addr.into())).await;
    for (method, found) in scan_all(shipped.sip(), &all).await {
        assert!(found.is_empty(), "svwar -m {method} learned {found:?}");
    }
    let text = metrics(shipped.agent.api_addr).await;
    assert!(
        metric(&text, "sip_scanners_dropped_total") >= 3,
        "dropped by name"
    );
    shipped.stop().await;

    let open = Harness::start_with(&[], |c| {
        c.sip.next_hop = Some(core_addr.into());
        c.sip.deny_user_agents.clear();
    })
    .await;
    for (method, found) in scan_all(open.sip(), &["REGISTER", "OPTIONS"]).await {
        assert!(found.is_empty(), "svwar -m {method} learned {found:?}");
    }
    let text = metrics(open.agent.api_addr).await;
    assert_eq!(metric(&text, "sip_scanners_dropped_total"), 0);
    assert!(
        metric(&text, "sip_register_refused_total") > 0,
        "REGISTERs answered"
    );
    assert!(
        metric(&text, "sip_options_answered_total") > 0,
        "OPTIONS answered"
    );
    open.stop().await;
}
