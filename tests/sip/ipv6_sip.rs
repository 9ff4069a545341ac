//! Issue 15, IPv6: the whole agent on real sockets of `::1` (and 127.0.0.1 beside it, one
//! `[sip] listen` list), with media anchored on dual-stack sockets (`bind_ip = "::"`).
//! - A v6 caller through the agent to a v6 callee: our Via and Record-Route name `[::1]`, both
//!   parties are given `c=IN IP6 ::1`, the callee hears the announcement, audio is relayed both
//!   ways, and BYE ends it all.
//! - A blocked v6 caller gets its 603 back over v6, at the address it really sent from, not
//!   the one its Via names (`rport`, RFC 3581).
//! - A warned subscriber on v6 gets the 183 with `c=IN IP6` and hears the warning from `::1`.
//! - A v4 caller to a v6 next hop: a Via and a Record-Route in each side's family, and media
//!   relayed across the families by the same two legs.
//! - A v6 next hop by name, its AAAA served by dnsmasq (as `dns_sip` does for A).
//!
//! `::1` must exist: a machine without it fails these tests, it does not skip them. Knows
//! nothing of the agent's insides: only the config, the wire and `/metrics`.

use std::net::SocketAddr;

use crate::support::agent::{recv, recv_final, Harness, Msg};
use crate::support::http::{metric, metrics};
use crate::support::rtp::{hear_prompt, recv_rtp, rtp_packet};
use crate::support::{eventually, free_port_range, root};
use scamguard::app::config::Config;
use scamguard::media::Codec;
use scamguard::sip::Hop;
use tokio::net::UdpSocket;

/// Warned with an announcement after the answer (the shipped `blocklists/example.csv`).
const WARNED: &str = "+12025550161";
const BLOCKED: &str = "+12025550143";

async fn v6_socket() -> UdpSocket {
    UdpSocket::bind("[::1]:0")
        .await
        .expect("this test needs IPv6 loopback (::1)")
}

/// The agent on 127.0.0.1 and ::1 (one port), its API on ::1, media on (dual-stack, its own
/// port range), next hop `hop`; `configure` sees the config last.
async fn start(hop: impl Into<Hop>, configure: impl FnOnce(&mut Config)) -> (Harness, (u16, u16)) {
    let hop = hop.into();
    let base = free_port_range(20);
    let range = (base, base + 19);
    let h = Harness::start_with(&[], |c| {
        c.sip.listen = scamguard::sip::config::Listen(vec![
            "127.0.0.1:0".parse().unwrap(),
            "[::1]:0".parse().unwrap(),
        ]);
        c.sip.next_hop = Some(hop);
        c.api.listen = "[::1]:0".into();
        c.media.enabled = true;
        c.media.prompts_dir = root().join("prompts").display().to_string();
        c.media.bind_ip = "::".parse().unwrap();
        c.media.advertise_ip = Some("127.0.0.1".parse().unwrap());
        c.media.advertise_ip6 = Some("::1".parse().unwrap());
        c.media.port_min = range.0;
        c.media.port_max = range.1;
        c.media.max_sessions = 2;
        configure(c);
    })
    .await;
    (h, range)
}

/// The agent's SIP address on ::1.
fn sip6(h: &Harness) -> SocketAddr {
    SocketAddr::new("::1".parse().unwrap(), h.sip().port())
}

/// `IP:PORT` as a SIP host and port (IPv6 in brackets), and the SDP family of the IP.
fn hostport(a: SocketAddr) -> String {
    a.to_string()
}

fn family(a: SocketAddr) -> &'static str {
    if a.is_ipv6() {
        "IP6"
    } else {
        "IP4"
    }
}

/// An SDP body of `user` listening on `at` (PCMU).
fn sdp(user: &str, at: SocketAddr) -> String {
    let (f, ip) = (family(at), at.ip());
    format!(
        "v=0\r\no={user} 1 1 IN {f} {ip}\r\ns=-\r\nc=IN {f} {ip}\r\nt=0 0\r\n\
         m=audio {} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n\
         a=fmtp:101 0-15\r\na=sendrecv\r\n",
        at.port()
    )
}

/// The `c=` line's family and address and the `m=audio` port of an SDP body.
fn media_addr(body: &str) -> (&str, SocketAddr) {
    let (f, ip) = body
        .lines()
        .find_map(|l| l.strip_prefix("c=IN "))
        .expect("c= line")
        .trim()
        .split_once(' ')
        .unwrap();
    let port: u16 = body
        .lines()
        .find_map(|l| l.strip_prefix("m=audio "))
        .expect("m=audio line")
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    (f, SocketAddr::new(ip.parse().unwrap(), port))
}

/// An INVITE from the caller at `me` (its Via and Contact) to `callee` through `agent`.
fn invite(
    agent: SocketAddr,
    me: SocketAddr,
    call_id: &str,
    caller: &str,
    callee: &str,
    body: &str,
) -> String {
    let me = hostport(me);
    let ctype = if body.is_empty() {
        ""
    } else {
        "Content-Type: application/sdp\r\n"
    };
    format!(
        "INVITE sip:{callee}@{agent} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {me};branch=z9hG4bK{call_id}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:{caller}@example.net>;tag=c6\r\n\
         To: <sip:{callee}@{agent}>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: <sip:caller@{me}>\r\n\
         {ctype}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// The callee's response to `req`, with Via, Record-Route, From, Call-ID and CSeq copied.
fn reply(req: &Msg, code: u16, me: SocketAddr, body: &str) -> String {
    crate::support::agent::reply(
        req,
        code,
        if code == 200 { "OK" } else { "Ringing" },
        "callee6",
        &format!(
            "Contact: <sip:callee@{}>\r\n{}",
            hostport(me),
            if body.is_empty() {
                ""
            } else {
                "Content-Type: application/sdp\r\n"
            }
        ),
        body,
    )
}

/// Where a Record-Route URI points: its host and port.
fn rr_host(rr: &str) -> &str {
    let s = rr.trim_start_matches('<').trim_start_matches("sip:");
    s.split([';', '>']).next().unwrap()
}

/// A warned call from `caller_at` (SIP) through the agent at `agent` to the callee at `callee`
/// (the next hop), each party with an RTP socket of its own family: answered, the callee hears
/// the announcement, audio goes both ways, BYE from the caller ends it and frees every port.
/// Returns the INVITE the callee got and the 200 the caller got.
async fn announced_call(
    h: &Harness,
    range: (u16, u16),
    agent: SocketAddr,
    (caller, callee): (&UdpSocket, &UdpSocket),
    call_id: &str,
) -> (Msg, Msg) {
    let (up, down) = (caller.local_addr().unwrap(), callee.local_addr().unwrap());
    let any = |a: SocketAddr| -> &'static str {
        if a.is_ipv6() {
            "[::1]:0"
        } else {
            "127.0.0.1:0"
        }
    };
    let caller_rtp = UdpSocket::bind(any(up)).await.unwrap();
    let callee_rtp = UdpSocket::bind(any(down)).await.unwrap();
    let offer = sdp("alice", caller_rtp.local_addr().unwrap());
    let inv = invite(agent, up, call_id, WARNED, "+16175551234", &offer);
    caller.send_to(inv.as_bytes(), agent).await.unwrap();

    let (f, from) = recv(callee).await;
    assert_eq!(f.method(), "INVITE", "{}", f.text);
    assert_eq!(
        from.ip(),
        down.ip(),
        "sent from our socket of the callee's family"
    );
    let (fam, leg_b) = media_addr(f.body());
    assert_eq!(
        fam,
        family(down),
        "the callee is given our address in its family: {}",
        f.body()
    );
    assert_eq!(leg_b.ip(), down.ip());
    assert!((range.0..=range.1).contains(&leg_b.port()), "{}", f.body());

    let answer = sdp("bob", callee_rtp.local_addr().unwrap());
    callee
        .send_to(reply(&f, 200, down, &answer).as_bytes(), from)
        .await
        .unwrap();
    let ok = recv_final(caller).await;
    assert_eq!(ok.status(), Some(200), "{}", ok.text);
    let (fam, leg_a) = media_addr(ok.body());
    assert_eq!(
        fam,
        family(up),
        "the caller is given our address in its family: {}",
        ok.body()
    );
    assert_eq!(leg_a.ip(), up.ip());
    assert!((range.0..=range.1).contains(&leg_a.port()));

    // The callee's first packet starts the announcement; it goes on to the caller.
    callee_rtp
        .send_to(&rtp_packet(0, 1000, 5000, 0xCA11EE, 0x55), leg_b)
        .await
        .unwrap();
    hear_prompt(&callee_rtp, leg_b, Codec::Pcmu, 0, "en").await;
    let (k, src) = recv_rtp(&caller_rtp).await;
    assert_eq!(src, leg_a);
    assert_eq!((k.seq, k.ssrc, k.payload[0]), (1000, 0xCA11EE, 0x55));
    // The caller's audio reaches the callee, and the callee's the caller.
    caller_rtp
        .send_to(&rtp_packet(0, 7, 900, 0xA11CE, 0x11), leg_a)
        .await
        .unwrap();
    let (c, src) = recv_rtp(&callee_rtp).await;
    assert_eq!(src, leg_b);
    assert!(c.payload.iter().all(|&b| b == 0x11), "the caller's audio");
    callee_rtp
        .send_to(&rtp_packet(0, 1001, 5160, 0xCA11EE, 0x66), leg_b)
        .await
        .unwrap();
    let (k2, src) = recv_rtp(&caller_rtp).await;
    assert_eq!((src, k2.seq, k2.payload[0]), (leg_a, 1001, 0x66));

    // ACK and BYE along the route the caller was given.
    let routes: Vec<String> = ok
        .all("Record-Route")
        .iter()
        .rev()
        .map(|s| s.to_string())
        .collect();
    let to = ok.hdr("To").unwrap().to_string();
    let route = routes.join(", ");
    let in_dialog = |method: &str, cseq: &str| {
        format!(
            "{method} sip:callee@{} SIP/2.0\r\nVia: SIP/2.0/UDP {};branch=z9hG4bK{call_id}{method}\r\n\
             Route: {route}\r\nMax-Forwards: 70\r\nFrom: <sip:{WARNED}@example.net>;tag=c6\r\n\
             To: {to}\r\nCall-ID: {call_id}\r\nCSeq: {cseq}\r\nContent-Length: 0\r\n\r\n",
            hostport(down),
            hostport(up)
        )
    };
    // The caller sends to the first Route: the agent in the caller's own family.
    let first = rr_host(&routes[0]).to_string();
    assert_eq!(
        first,
        hostport(agent),
        "the caller's route starts at us in its family"
    );
    caller
        .send_to(in_dialog("ACK", "1 ACK").as_bytes(), agent)
        .await
        .unwrap();
    assert_eq!(recv(callee).await.0.method(), "ACK");
    caller
        .send_to(in_dialog("BYE", "2 BYE").as_bytes(), agent)
        .await
        .unwrap();
    let (bye, from) = recv(callee).await;
    assert_eq!(bye.method(), "BYE", "{}", bye.text);
    callee
        .send_to(reply(&bye, 200, down, "").as_bytes(), from)
        .await
        .unwrap();
    assert_eq!(recv_final(caller).await.status(), Some(200));

    let api = h.agent.api_addr;
    eventually("the media session ends after BYE", || async move {
        metric(&metrics(api).await, "scamguard_media_sessions") == 0
    })
    .await;
    let m = metrics(api).await;
    assert_eq!(metric(&m, "scamguard_media_ports_in_use"), 0, "{m}");
    assert_eq!(
        metric(&m, "scamguard_media_prompts_total{outcome=\"played\"}"),
        1,
        "{m}"
    );
    (f, ok)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_v6_call_is_announced_relayed_and_ended_over_v6() {
    let (caller, callee) = (v6_socket().await, v6_socket().await);
    let (h, range) = start(callee.local_addr().unwrap(), |_| {}).await;
    assert_eq!(
        h.agent.api_addr.ip().to_string(),
        "::1",
        "the admin API on ::1"
    );
    let agent = sip6(&h);
    let (f, ok) = announced_call(&h, range, agent, (&caller, &callee), "v6call").await;
    let port = agent.port();
    let via = f.hdr("Via").unwrap();
    assert!(
        via.starts_with(&format!("SIP/2.0/UDP [::1]:{port};branch=z9hG4bK")),
        "our Via in brackets: {via}"
    );
    assert_eq!(
        f.all("Record-Route"),
        [format!("<sip:[::1]:{port};lr>")],
        "one Record-Route: both sides are IPv6"
    );
    assert_eq!(ok.all("Record-Route"), [format!("<sip:[::1]:{port};lr>")]);
    let up = caller.local_addr().unwrap();
    assert_eq!(
        ok.hdr("Via"),
        Some(format!("SIP/2.0/UDP {up};branch=z9hG4bKv6call").as_str())
    );
    let (log, _d) = h.stop().await;
    assert_eq!(log.len(), 1);
    assert_eq!(log[0]["action"], "warn");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_v6_caller_gets_603_where_it_really_is() {
    let (caller, callee) = (v6_socket().await, v6_socket().await);
    let (h, _) = start(callee.local_addr().unwrap(), |_| {}).await;
    let agent = sip6(&h);
    // A Via naming an address the caller is not at, asking for rport (RFC 3581): the answer
    // must go where the request came from.
    let claimed: SocketAddr = "[2001:db8::9]:5062".parse().unwrap();
    let inv = invite(agent, claimed, "v6block", BLOCKED, "+12025550100", "")
        .replace(";branch=", ";rport;branch=");
    caller.send_to(inv.as_bytes(), agent).await.unwrap();
    let r = recv_final(&caller).await;
    assert_eq!(r.start_line(), "SIP/2.0 603 Network Blocked", "{}", r.text);
    // It came back to the socket that sent the INVITE (not to the Via's sent-by), with the
    // Via as sent.
    assert_eq!(
        r.hdr("Via"),
        Some("SIP/2.0/UDP [2001:db8::9]:5062;rport;branch=z9hG4bKv6block")
    );
    assert_eq!(r.hdr("Call-ID"), Some("v6block"));
    let (log, _d) = h.stop().await;
    assert_eq!(log.len(), 1);
    assert_eq!(log[0]["action"], "block");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warned_v6_subscriber_hears_the_warning_from_v6() {
    let (caller, callee) = (v6_socket().await, v6_socket().await);
    let (h, range) = start(callee.local_addr().unwrap(), |c| {
        c.callback.enabled = true;
        c.callback.peers = vec!["::1".parse().unwrap()];
    })
    .await;
    let agent = sip6(&h);
    let rtp = v6_socket().await;
    let offer = sdp("sub", rtp.local_addr().unwrap());
    // Listed in the shipped blocklists/callback.csv as a warn.
    let inv = invite(
        agent,
        caller.local_addr().unwrap(),
        "v6warn",
        "+14155550100",
        "+12025550178",
        &offer,
    );
    caller.send_to(inv.as_bytes(), agent).await.unwrap();
    let (r, _) = recv(&caller).await;
    assert_eq!(r.status(), Some(183), "{}", r.text);
    let (fam, leg_a) = media_addr(r.body());
    assert_eq!(fam, "IP6", "{}", r.body());
    assert!(r.body().contains("\r\nc=IN IP6 ::1\r\n"), "{}", r.body());
    assert!(
        r.body().contains(" IN IP6 ::1\r\n"),
        "o= in IPv6 too: {}",
        r.body()
    );
    assert_eq!(leg_a.ip().to_string(), "::1");
    assert!((range.0..=range.1).contains(&leg_a.port()));
    hear_prompt(&rtp, leg_a, Codec::Pcmu, 0, "en-callback-warn").await;
    // Then the call goes on to the far end, offered our IPv6 address.
    let (f, _) = recv(&callee).await;
    assert_eq!(f.method(), "INVITE");
    let (fam, leg_b) = media_addr(f.body());
    assert_eq!(
        (fam, leg_b.ip().to_string().as_str()),
        ("IP6", "::1"),
        "{}",
        f.body()
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_v4_caller_reaches_a_v6_next_hop_and_media_crosses_families() {
    let caller = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let callee = v6_socket().await;
    let (h, range) = start(callee.local_addr().unwrap(), |_| {}).await;
    let agent = h.sip();
    assert!(agent.is_ipv4());
    let (f, ok) = announced_call(&h, range, agent, (&caller, &callee), "v4to6").await;
    let port = agent.port();
    // Towards the callee: our Via in IPv6; a Record-Route per side, each in its family (the
    // top one faces the callee).
    let via = f.hdr("Via").unwrap();
    assert!(
        via.starts_with(&format!("SIP/2.0/UDP [::1]:{port};branch=")),
        "{via}"
    );
    let rr = [
        format!("<sip:[::1]:{port};lr>"),
        format!("<sip:127.0.0.1:{port};lr>"),
    ];
    assert_eq!(f.all("Record-Route"), rr);
    assert_eq!(ok.all("Record-Route"), rr);
    // The caller's Via is as it sent it (its host is where it is: no received=).
    let up = caller.local_addr().unwrap();
    assert_eq!(
        f.all("Via")[1],
        format!("SIP/2.0/UDP {up};branch=z9hG4bKv4to6")
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_v6_next_hop_by_name_is_found_by_its_aaaa_record() {
    let callee = v6_socket().await;
    let port = callee.local_addr().unwrap().port();
    let dns = crate::dns_sip::Dns::start(&["--host-record=uas6.test,::1".into()]);
    let hop: Hop = format!("uas6.test:{port}").parse().unwrap();
    let (h, _) = start(hop, |c| {
        c.sip.dns = crate::dns_sip::dns_config(dns.addr);
    })
    .await;
    let caller = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let up = caller.local_addr().unwrap();
    // A clean caller: no media, the INVITE goes on as it came, once the name is resolved.
    let inv = invite(h.sip(), up, "v6name", "+14155552671", "+12025550100", "");
    caller.send_to(inv.as_bytes(), h.sip()).await.unwrap();
    let (f, from) = recv(&callee).await;
    assert_eq!(f.method(), "INVITE", "{}", f.text);
    assert_eq!(
        from,
        SocketAddr::new("::1".parse().unwrap(), h.sip().port())
    );
    let via = f.hdr("Via").unwrap();
    assert!(
        via.starts_with(&format!("SIP/2.0/UDP [::1]:{};branch=", h.sip().port())),
        "{via}"
    );
    callee
        .send_to(
            reply(&f, 200, callee.local_addr().unwrap(), "").as_bytes(),
            from,
        )
        .await
        .unwrap();
    assert_eq!(recv_final(&caller).await.status(), Some(200));
    h.stop().await;
}
