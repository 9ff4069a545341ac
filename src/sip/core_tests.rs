//! Sans-IO tests of the proxy core: the RFC 4475 table and transaction behaviour, driven with
//! bytes and a virtual clock.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::core::{Output, Peer, Proxy};
use super::hook::{CallEvent, CallRef, CallTag, Disposition, Hook, NewCall, SdpDirection, SdpKind};
use super::msg::{Limits, Message};
use super::{SipConfig, SipStats, Transport};

/// Decides as told, rewrites every SDP body it sees (the initial offer with the decision, the
/// rest through `rewrite_sdp`), and tags each forwarded call with its Call-ID, so a test can
/// check that the proxy hands the tag back with every event.
#[derive(Default)]
pub(crate) struct TestHook {
    pub decision: Mutex<Option<Disposition>>,
    pub calls: Mutex<Vec<String>>,
    pub events: Mutex<Vec<(String, CallEvent)>>,
    /// Events that came without their call's tag.
    pub untagged: Mutex<Vec<String>>,
}

fn mark(body: &[u8], dir: SdpDirection) -> Vec<u8> {
    let mut b = body.to_vec();
    b.extend_from_slice(format!("a=x-{dir:?}\r\n").as_bytes());
    b
}

impl Hook for TestHook {
    /// The emergency numbers of the tests, as the app's screening would answer.
    fn urgent(&self, target: &str) -> bool {
        matches!(target, "911" | "112")
    }

    fn new_call(&self, call: &NewCall<'_>, _now: Instant) -> Disposition {
        self.calls.lock().unwrap().push(call.call_id.to_string());
        let d = self
            .decision
            .lock()
            .unwrap()
            .clone()
            .unwrap_or_else(Disposition::pass);
        let offer = match &d {
            Disposition::Forward {
                anchor_media: true, ..
            } => call.sdp().map(|b| mark(b, SdpDirection::FromCaller)),
            _ => None,
        };
        d.with_call(offer, CallTag::new(call.call_id.to_string()))
    }
    fn call_event(&self, call: &CallRef<'_>, event: CallEvent, _now: Instant) {
        if call.tag::<String>().map(String::as_str) != Some(call.call_id) {
            self.untagged.lock().unwrap().push(call.call_id.to_string());
        }
        self.events
            .lock()
            .unwrap()
            .push((call.call_id.to_string(), event));
    }
    fn rewrite_sdp(
        &self,
        _call: &CallRef<'_>,
        dir: SdpDirection,
        _kind: SdpKind,
        body: &[u8],
        _now: Instant,
    ) -> Option<Vec<u8>> {
        Some(mark(body, dir))
    }
}

const ME: &str = "127.0.0.1:5060";
const HOP: &str = "127.0.0.1:5070";
const UAC: &str = "127.0.0.1:5080";

fn proxy(hook: Arc<TestHook>) -> Proxy {
    proxy_with(hook, |_| {})
}

fn proxy_with(hook: Arc<TestHook>, tune: impl FnOnce(&mut SipConfig)) -> Proxy {
    let mut cfg = SipConfig {
        next_hop: Some(HOP.parse().unwrap()),
        ..SipConfig::default()
    };
    tune(&mut cfg);
    Proxy::new(
        cfg,
        ME.parse().unwrap(),
        hook,
        Arc::new(SipStats::default()),
    )
}

/// A hook that answers every new call with `d`.
fn deciding(d: Disposition) -> Arc<TestHook> {
    let hook = Arc::new(TestHook::default());
    *hook.decision.lock().unwrap() = Some(d);
    hook
}

/// The agent's default block.
fn blocked() -> Disposition {
    Disposition::Reject {
        code: 603,
        phrase: "Network Blocked".into(),
        headers: vec![],
    }
}

/// A forward that stays in the dialog, with a display name and headers for the callee.
fn staying(display: Option<&str>, headers: &[&str]) -> Disposition {
    Disposition::Forward {
        display_name: display.map(str::to_owned),
        headers: headers.iter().map(|h| h.to_string()).collect(),
        record_route: true,
        anchor_media: false,
        offer: None,
        tag: None,
    }
}

fn udp(addr: &str) -> Peer {
    Peer {
        transport: Transport::Udp,
        addr: addr.parse().unwrap(),
        conn: None,
    }
}

fn parse(o: &Output) -> Message {
    Message::parse(o.data.clone(), &Limits::default(), true).unwrap()
}

#[derive(Debug, PartialEq)]
enum Outcome {
    Forwarded,
    Answered(u16),
    Dropped,
}

fn outcome(outs: &[Output]) -> Outcome {
    let hop: SocketAddr = HOP.parse().unwrap();
    if outs.iter().any(|o| o.to.addr == hop) {
        return Outcome::Forwarded;
    }
    match outs
        .iter()
        .filter_map(|o| parse(o).status())
        .filter(|c| *c >= 200)
        .last()
    {
        Some(c) => Outcome::Answered(c),
        None => Outcome::Dropped,
    }
}

/// RFC 4475's messages, kept in the repository as fixtures (see their README). Missing is a
/// failure, never a skip.
pub(crate) fn corpus_dir() -> std::path::PathBuf {
    let dir = std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/rfc4475"
    ));
    assert!(dir.is_dir(), "{} is missing", dir.display());
    dir.to_path_buf()
}

/// RFC 4475: what a proxy (forwarding everything, REGISTER included) does with each torture
/// message.
#[test]
fn rfc4475_table() {
    use Outcome::*;
    let table: &[(&str, Outcome)] = &[
        // 3.1.1 valid messages: forwarded, or answered 200 when an OPTIONS outside a dialog
        // (the proxy answers those itself, so that they reveal nothing behind it).
        ("wsinv", Forwarded),
        ("intmeth", Forwarded),
        ("esc01", Forwarded),
        ("escnull", Forwarded),
        ("esc02", Forwarded),
        ("lwsdisp", Answered(200)),
        ("longreq", Forwarded),
        ("dblreq", Forwarded),
        ("semiuri", Answered(200)),
        ("transports", Answered(200)),
        ("mpart01", Forwarded),
        ("unreason", Dropped), // a response whose top Via is not ours
        ("noreason", Dropped),
        // 3.1.2 invalid messages: 400 when a response can be built, else dropped.
        ("badinv01", Answered(400)),
        ("clerr", Answered(400)),
        ("scalar02", Answered(400)),
        ("scalarlg", Dropped), // response
        ("quotbal", Answered(400)),
        ("ltgtruri", Answered(400)),
        ("lwsruri", Answered(400)),
        ("lwsstart", Answered(400)),
        ("trws", Answered(400)),
        ("escruri", Answered(400)),
        ("baddate", Forwarded), // 3.1.2.11: a proxy need not look at Date
        ("regbadct", Answered(400)),
        ("badaspec", Answered(400)),
        ("baddn", Answered(400)),
        ("badvers", Answered(505)),
        ("mismatch01", Answered(400)),
        ("mismatch02", Answered(400)),
        ("bigcode", Dropped),
        ("ncl", Answered(400)),
        // 3.2 transaction layer
        ("badbranch", Answered(200)),
        // 3.3 application layer
        ("insuf", Dropped), // no From/To/Call-ID: no response can be built
        ("unkscm", Answered(200)),
        ("novelsc", Answered(200)),
        ("unksm2", Forwarded),
        ("bext01", Answered(420)), // Proxy-Require we do not support
        ("invut", Forwarded),
        ("regaut01", Forwarded),
        ("multi01", Answered(400)),
        ("mcl01", Answered(400)),
        ("bcast", Dropped),
        ("zeromf", Answered(200)), // OPTIONS with Max-Forwards 0 is answered by us
        ("cparam01", Forwarded),
        ("cparam02", Forwarded),
        ("regescrt", Forwarded),
        ("sdp01", Forwarded),
        ("inv2543", Forwarded),
    ];
    let dir = corpus_dir();
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| {
            e.ok()?
                .file_name()
                .into_string()
                .ok()?
                .strip_suffix(".sip")
                .map(str::to_owned)
        })
        .collect();
    files.sort();
    let mut named: Vec<String> = table.iter().map(|(n, _)| n.to_string()).collect();
    named.sort();
    assert_eq!(files, named, "every corpus file has a row");
    let mut failures = Vec::new();
    for (name, want) in table {
        let hook = Arc::new(TestHook::default());
        let p = proxy_with(hook, |c| c.register = super::config::RegisterPolicy::Relay);
        let data = std::fs::read(dir.join(format!("{name}.sip"))).unwrap();
        let outs = p.handle(Bytes::from(data), udp(UAC), Instant::now());
        let got = outcome(&outs);
        if got != *want {
            failures.push(format!("{name}: want {want:?}, got {got:?}"));
        }
        // What we forward must itself be well formed.
        let hop: SocketAddr = HOP.parse().unwrap();
        for o in outs.iter().filter(|o| o.to.addr == hop) {
            let m = parse(o);
            if m.problem.is_some() {
                failures.push(format!(
                    "{name}: we sent a malformed message ({:?}): {}",
                    m.problem,
                    String::from_utf8_lossy(&o.data)
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn invite(call: &str, branch: &str) -> String {
    format!(
        "INVITE sip:+15550001111@callee.example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP client.example.com:5080;branch={branch};rport\r\n\
Max-Forwards: 70\r\n\
From: \"Alice\" <sip:+15552223333@client.example.com>;tag=a1\r\n\
To: <sip:+15550001111@callee.example.com>\r\n\
Call-ID: {call}\r\n\
CSeq: 1 INVITE\r\n\
Contact: <sip:alice@127.0.0.1:5080>\r\n\
P-Asserted-Identity: <sip:+15552223333@client.example.com>, \"Old\" <tel:+15552223333>\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 4\r\n\
\r\n\
v=0\n"
    )
}

fn feed(p: &Proxy, s: &str, from: &str, now: Instant) -> Vec<Output> {
    p.handle(Bytes::copy_from_slice(s.as_bytes()), udp(from), now)
}

fn codes(outs: &[Output]) -> Vec<u16> {
    outs.iter().filter_map(|o| parse(o).status()).collect()
}

fn to(outs: &[Output], addr: &str) -> Vec<Output> {
    let a: SocketAddr = addr.parse().unwrap();
    outs.iter().filter(|o| o.to.addr == a).cloned().collect()
}

/// A response from the downstream to what we forwarded.
fn answer(fwd: &Output, code: u16, extra: &[String]) -> Bytes {
    super::response::build_response(&parse(fwd), code, "X", extra, Some("callee1"))
}

#[test]
fn reject_answers_retransmissions_and_absorbs_ack() {
    let hook = Arc::new(TestHook::default());
    *hook.decision.lock().unwrap() = Some(Disposition::Reject {
        code: 603,
        phrase: "Network Blocked".into(),
        headers: vec!["Reason: SIP;cause=603;text=\"v=analytics1\"".into()],
    });
    let p = proxy(hook.clone());
    let t0 = Instant::now();
    let outs = feed(&p, &invite("c-rej", "z9hG4bKr1"), UAC, t0);
    // Decided at once: the final response is the only one (no 100 Trying before it).
    assert_eq!(codes(&outs), vec![603]);
    let resp = parse(&outs[0]);
    let text = String::from_utf8_lossy(&outs[0].data).to_string();
    assert!(text.starts_with("SIP/2.0 603 Network Blocked\r\nVia: SIP/2.0/UDP client.example.com:5080;branch=z9hG4bKr1;rport\r\n"), "{text}");
    assert!(text.contains("\r\nReason: SIP;cause=603;text=\"v=analytics1\"\r\n"));
    assert!(resp.to().unwrap().tag().is_some());
    assert_eq!(resp.call_id(), Some("c-rej"));
    // Retransmitted INVITE: answered from the transaction, hook not asked again.
    let again = feed(&p, &invite("c-rej", "z9hG4bKr1"), UAC, t0);
    assert_eq!(codes(&again), vec![603]);
    assert_eq!(hook.calls.lock().unwrap().len(), 1);
    // No Timer G: nothing is resent unasked (a spoofed source must not be an amplifier).
    let g = p.poll(t0 + Duration::from_millis(600));
    assert!(g.is_empty(), "no Timer G: {:?}", codes(&g));
    // ACK absorbed, then freed by Timer I.
    let tag = resp.to().unwrap().tag().unwrap().to_string();
    let ack = invite("c-rej", "z9hG4bKr1")
        .replacen("INVITE sip", "ACK sip", 1)
        .replace("CSeq: 1 INVITE", "CSeq: 1 ACK")
        .replace(
            "To: <sip:+15550001111@callee.example.com>",
            &format!("To: <sip:+15550001111@callee.example.com>;tag={tag}"),
        );
    assert!(feed(&p, &ack, UAC, t0).is_empty());
    assert!(p.poll(t0 + Duration::from_secs(2)).is_empty());
    assert_eq!(p.poll(t0 + Duration::from_secs(10)).len(), 0);
    assert_eq!(p.table_sizes(), (0, 0, 0));
    assert_eq!(p.stats().responses_sent(603), 1);
}

#[test]
fn forward_relays_and_reports() {
    let hook = Arc::new(TestHook::default());
    *hook.decision.lock().unwrap() = Some(Disposition::Forward {
        display_name: Some("SCAM? \"Bank\"".into()),
        headers: vec!["X-Verdict: warn".into()],
        record_route: true,
        anchor_media: false,
        offer: None,
        tag: None,
    });
    let p = proxy(hook.clone());
    let t0 = Instant::now();
    let inv = invite("c-fwd", "z9hG4bKf1");
    let outs = feed(&p, &inv, UAC, t0);
    assert_eq!(codes(&to(&outs, UAC)), vec![100]);
    let fwd = to(&outs, HOP);
    assert_eq!(fwd.len(), 1);
    let text = String::from_utf8_lossy(&fwd[0].data).to_string();
    let branch = parse(&fwd[0])
        .top_via()
        .unwrap()
        .branch
        .unwrap()
        .to_string();
    assert!(branch.starts_with("z9hG4bKsg"));
    // Exactly our edits, the rest byte-identical.
    let want = inv
        .replacen(
            "SIP/2.0\r\n",
            &format!("SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch={branch}\r\nRecord-Route: <sip:127.0.0.1:5060;lr>\r\n"),
            1,
        )
        .replace("branch=z9hG4bKf1;rport", "branch=z9hG4bKf1;rport=5080;received=127.0.0.1")
        .replace("Max-Forwards: 70", "Max-Forwards: 69")
        .replace("From: \"Alice\"", "From: \"SCAM? \\\"Bank\\\"\"")
        .replace(
            "P-Asserted-Identity: <sip:+15552223333@client.example.com>, \"Old\" <tel:",
            "P-Asserted-Identity: \"SCAM? \\\"Bank\\\"\" <sip:+15552223333@client.example.com>, \"SCAM? \\\"Bank\\\"\" <tel:",
        )
        .replace("Content-Length: 4\r\n", "Content-Length: 4\r\nX-Verdict: warn\r\n");
    assert_eq!(text, want);
    // 100 absorbed; 180 and 200 relayed with our Via popped.
    assert!(p.handle(answer(&fwd[0], 100, &[]), udp(HOP), t0).is_empty());
    let r180 = p.handle(answer(&fwd[0], 180, &[]), udp(HOP), t0);
    assert_eq!(codes(&to(&r180, UAC)), vec![180]);
    let relayed = String::from_utf8_lossy(&r180[0].data).to_string();
    assert!(relayed.contains("Via: SIP/2.0/UDP client.example.com:5080;branch=z9hG4bKf1;rport=5080;received=127.0.0.1\r\n"));
    assert!(!relayed.contains("z9hG4bKsg"));
    // A retransmitted INVITE now gets the 180 again.
    assert_eq!(codes(&feed(&p, &inv, UAC, t0)), vec![180]);
    let r200 = p.handle(answer(&fwd[0], 200, &[]), udp(HOP), t0);
    assert_eq!(codes(&to(&r200, UAC)), vec![200]);
    assert_eq!(
        hook.events.lock().unwrap().as_slice(),
        &[("c-fwd".to_string(), CallEvent::Answered)]
    );
    // 2xx retransmission after the client transaction is gone: stateless by Via.
    p.poll(t0 + Duration::from_secs(40));
    let again = p.handle(
        answer(&fwd[0], 200, &[]),
        udp(HOP),
        t0 + Duration::from_secs(40),
    );
    assert_eq!(codes(&to(&again, UAC)), vec![200]);
}

#[test]
fn cancel_before_answer() {
    let hook = Arc::new(TestHook::default());
    let p = proxy(hook.clone());
    let t0 = Instant::now();
    let inv = invite("c-can", "z9hG4bKc1");
    let fwd = to(&feed(&p, &inv, UAC, t0), HOP).remove(0);
    let cancel = inv
        .replacen("INVITE sip", "CANCEL sip", 1)
        .replace("CSeq: 1 INVITE", "CSeq: 1 CANCEL")
        .replace(
            "Content-Length: 4\r\n\r\nv=0\n",
            "Content-Length: 0\r\n\r\n",
        );
    // No provisional yet: 200 to the CANCEL, downstream CANCEL waits for one.
    let outs = feed(&p, &cancel, UAC, t0);
    assert_eq!(codes(&outs), vec![200]);
    let outs = p.handle(answer(&fwd, 180, &[]), udp(HOP), t0);
    let down = to(&outs, HOP);
    assert_eq!(down.len(), 1);
    let c = parse(&down[0]);
    assert!(c.method_is("CANCEL"));
    assert_eq!(
        c.top_via().unwrap().branch,
        parse(&fwd).top_via().unwrap().branch
    );
    assert_eq!(c.cseq().unwrap(), (1, "CANCEL"));
    // 487: ACKed by us downstream, relayed upstream; the caller's ACK is absorbed.
    let outs = p.handle(answer(&fwd, 487, &[]), udp(HOP), t0);
    let acks: Vec<Message> = to(&outs, HOP).iter().map(parse).collect();
    assert_eq!(acks.len(), 1);
    assert!(acks[0].method_is("ACK"));
    assert_eq!(acks[0].to().unwrap().tag(), Some("callee1"));
    assert_eq!(codes(&to(&outs, UAC)), vec![487]);
    let ack = inv
        .replacen("INVITE sip", "ACK sip", 1)
        .replace("CSeq: 1 INVITE", "CSeq: 1 ACK")
        .replace(
            "Content-Length: 4\r\n\r\nv=0\n",
            "Content-Length: 0\r\n\r\n",
        );
    assert!(feed(&p, &ack, UAC, t0).is_empty());
    assert_eq!(
        hook.events.lock().unwrap().as_slice(),
        &[("c-can".to_string(), CallEvent::Cancelled)]
    );
    p.poll(t0 + Duration::from_secs(400));
    assert_eq!(p.table_sizes(), (0, 0, 0));
}

#[test]
fn hop_limits_loops_and_overload() {
    let hook = Arc::new(TestHook::default());
    let p = proxy(hook.clone());
    let t0 = Instant::now();
    let mf0 = invite("c-mf", "z9hG4bKm1").replace("Max-Forwards: 70", "Max-Forwards: 0");
    assert_eq!(codes(&feed(&p, &mf0, UAC, t0)), vec![483]);
    // Our own forwarded request coming back unchanged is a loop.
    let fwd = to(&feed(&p, &invite("c-loop", "z9hG4bKl1"), UAC, t0), HOP).remove(0);
    let back = p.handle(fwd.data.clone(), udp(HOP), t0);
    assert_eq!(codes(&back), vec![482]);
    // Over the transaction cap: 503 with Retry-After.
    let cfg = SipConfig {
        next_hop: Some(HOP.parse().unwrap()),
        max_transactions: 2,
        ..SipConfig::default()
    };
    let small = Proxy::new(
        cfg,
        ME.parse().unwrap(),
        hook,
        Arc::new(SipStats::default()),
    );
    feed(&small, &invite("o1", "z9hG4bKo1"), UAC, t0);
    let outs = feed(&small, &invite("o2", "z9hG4bKo2"), UAC, t0);
    assert_eq!(codes(&outs), vec![503]);
    assert!(String::from_utf8_lossy(&outs[0].data).contains("\r\nRetry-After: 5\r\n"));
    assert_eq!(small.stats().overload.get(), 1);
}

#[test]
fn timeout_answers_408_and_frees() {
    let hook = Arc::new(TestHook::default());
    let p = proxy(hook.clone());
    let t0 = Instant::now();
    feed(&p, &invite("c-to", "z9hG4bKt1"), UAC, t0);
    let a = p.poll(t0 + Duration::from_millis(500));
    assert_eq!(to(&a, HOP).len(), 1, "Timer A retransmission");
    let b = p.poll(t0 + Duration::from_secs(33));
    assert_eq!(codes(&to(&b, UAC)), vec![408]);
    assert_eq!(
        hook.events.lock().unwrap().as_slice(),
        &[("c-to".to_string(), CallEvent::TimedOut)]
    );
    p.poll(t0 + Duration::from_secs(400));
    assert_eq!(p.table_sizes(), (0, 0, 0));
    assert_eq!(p.stats().transactions.get(), 0);
}

#[test]
fn anchored_dialog_rewrites_sdp_and_routes_bye() {
    let hook = Arc::new(TestHook::default());
    *hook.decision.lock().unwrap() = Some(Disposition::Forward {
        display_name: None,
        headers: vec![],
        record_route: true,
        anchor_media: true,
        offer: None,
        tag: None,
    });
    let p = proxy(hook.clone());
    let t0 = Instant::now();
    let fwd = to(&feed(&p, &invite("c-med", "z9hG4bKa1"), UAC, t0), HOP).remove(0);
    let fm = parse(&fwd);
    assert_eq!(fm.body_bytes(), b"v=0\na=x-FromCaller\r\n");
    assert_eq!(fm.value(super::msg::Hdr::ContentLength), Some("20"));
    let ok = {
        let r = answer(&fwd, 200, &["Content-Type: application/sdp".into()]);
        let s = String::from_utf8_lossy(&r).replace(
            "Content-Length: 0\r\n\r\n",
            "Content-Length: 4\r\n\r\nv=1\n",
        );
        Bytes::from(s)
    };
    let up = p.handle(ok, udp(HOP), t0);
    assert_eq!(parse(&up[0]).body_bytes(), b"v=1\na=x-FromCallee\r\n");
    // BYE from the callee: Route names us first, then the caller's contact is the target.
    let bye = "BYE sip:alice@127.0.0.1:5080 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKb1\r\nRoute: <sip:127.0.0.1:5060;lr>\r\nMax-Forwards: 70\r\nFrom: <sip:+15550001111@callee.example.com>;tag=callee1\r\nTo: \"Alice\" <sip:+15552223333@client.example.com>;tag=a1\r\nCall-ID: c-med\r\nCSeq: 9 BYE\r\nContent-Length: 0\r\n\r\n";
    let outs = feed(&p, bye, HOP, t0);
    let down = to(&outs, UAC);
    assert_eq!(down.len(), 1);
    let text = String::from_utf8_lossy(&down[0].data).to_string();
    assert!(!text.contains("Route:"), "our Route popped: {text}");
    let evs = hook.events.lock().unwrap().clone();
    assert_eq!(
        evs,
        vec![
            ("c-med".to_string(), CallEvent::Answered),
            ("c-med".to_string(), CallEvent::Ended)
        ]
    );
    assert!(
        hook.untagged.lock().unwrap().is_empty(),
        "every event carries its call's tag"
    );
}

#[test]
fn malformed_counts_and_options() {
    let p = proxy(Arc::new(TestHook::default()));
    let t0 = Instant::now();
    assert!(feed(&p, "garbage\r\n\r\n", UAC, t0).is_empty());
    let opt = "OPTIONS sip:127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bKo\r\nFrom: <sip:probe@x>;tag=1\r\nTo: <sip:127.0.0.1>\r\nCall-ID: o\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";
    assert_eq!(codes(&feed(&p, opt, UAC, t0)), vec![200]);
    let bad = opt.replace("CSeq: 1 OPTIONS", "CSeq: 1 INVITE");
    assert_eq!(codes(&feed(&p, &bad, UAC, t0)), vec![400]);
    assert_eq!(p.stats().malformed_answered.get(), 1);
    assert_eq!(p.stats().malformed_dropped.get(), 1);
}

#[test]
fn in_dialog_names_fall_back_to_the_call_path() {
    let hook = deciding(staying(None, &[]));
    let p = proxy(hook);
    let t0 = Instant::now();
    let fwd = to(&feed(&p, &invite("c-fb", "z9hG4bKfb1"), UAC, t0), HOP).remove(0);
    p.handle(answer(&fwd, 200, &[]), udp(HOP), t0);
    // The caller's Contact is a name: a BYE from the callee goes back to where the INVITE came from.
    let from_callee = "BYE sip:alice@client.example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKfb2\r\nRoute: <sip:127.0.0.1:5060;lr>\r\nFrom: <sip:+15550001111@callee.example.com>;tag=callee1\r\nTo: <sip:+15552223333@client.example.com>;tag=a1\r\nCall-ID: c-fb\r\nCSeq: 5 BYE\r\nContent-Length: 0\r\n\r\n";
    assert_eq!(to(&feed(&p, from_callee, HOP, t0), UAC).len(), 1);
    // And one from the caller with a named target goes towards the callee side.
    let from_caller = "INFO sip:bob@callee.example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bKfb3\r\nRoute: <sip:127.0.0.1:5060;lr>\r\nFrom: <sip:+15552223333@client.example.com>;tag=a1\r\nTo: <sip:+15550001111@callee.example.com>;tag=callee1\r\nCall-ID: c-fb\r\nCSeq: 2 INFO\r\nContent-Length: 0\r\n\r\n";
    let outs = feed(&p, from_caller, UAC, t0);
    assert_eq!(to(&outs, HOP).len(), 1);
    // Max-Forwards was absent: 70 inserted, minus nothing (we add it as the value to send).
    assert_eq!(parse(&to(&outs, HOP)[0]).max_forwards(), Some(70));
}

/// Cross-check with rsip where rsip is correct: for the RFC 4475 messages both accept, Call-ID
/// and the CSeq number agree.
#[test]
fn agrees_with_rsip_where_rsip_parses() {
    use rsip::prelude::*;
    let mut compared = 0;
    for f in std::fs::read_dir(corpus_dir()).unwrap() {
        let data = std::fs::read(f.unwrap().path()).unwrap();
        let ours = Message::parse(Bytes::from(data.clone()), &Limits::default(), true).ok();
        let Some(ours) = ours.filter(|m| m.problem.is_none()) else {
            continue;
        };
        let Ok(theirs) = rsip::SipMessage::try_from(data.as_slice()) else {
            continue;
        };
        let (Ok(cid), Ok(cseq)) = (theirs.call_id_header(), theirs.cseq_header()) else {
            continue;
        };
        let Ok(cseq) = cseq.typed() else { continue };
        assert_eq!(ours.call_id().map(str::trim), Some(cid.value().trim()));
        assert_eq!(ours.cseq().map(|c| c.0), Some(cseq.seq));
        compared += 1;
    }
    assert!(compared >= 10, "compared {compared}");
}

#[test]
fn display_name_rewrite_table() {
    // (From as received, From as forwarded)
    let rows = [
        (
            "From: \"Alice\" <sip:a@x>;tag=t1",
            "From: \"W\\\\a\\\"rn\" <sip:a@x>;tag=t1",
        ),
        (
            "From: Alice Smith <sip:a@x>;tag=t1",
            "From: \"W\\\\a\\\"rn\" <sip:a@x>;tag=t1",
        ),
        (
            "From: <sip:a@x>;tag=t1",
            "From: \"W\\\\a\\\"rn\" <sip:a@x>;tag=t1",
        ),
        (
            "From: sip:a@x;tag=t1",
            "From: \"W\\\\a\\\"rn\" <sip:a@x>;tag=t1",
        ),
        (
            "f: tel:+15551234567 ; tag = t1",
            "f: \"W\\\\a\\\"rn\" <tel:+15551234567> ; tag = t1",
        ),
    ];
    for (i, (from, want)) in rows.iter().enumerate() {
        let hook = Arc::new(TestHook::default());
        *hook.decision.lock().unwrap() = Some(Disposition::Forward {
            display_name: Some("W\\a\"rn".into()),
            headers: vec![],
            record_route: false,
            anchor_media: false,
            offer: None,
            tag: None,
        });
        let p = proxy(hook);
        let inv = invite(&format!("dn-{i}"), &format!("z9hG4bKdn{i}")).replace(
            "From: \"Alice\" <sip:+15552223333@client.example.com>;tag=a1",
            from,
        );
        let fwd = to(&feed(&p, &inv, UAC, Instant::now()), HOP).remove(0);
        let text = String::from_utf8_lossy(&fwd.data).to_string();
        assert!(text.contains(&format!("\r\n{want}\r\n")), "row {i}: {text}");
        assert_eq!(parse(&fwd).from_tag(), Some("t1"), "row {i}");
    }
}

/// RFC 3261 7.1: `sip/2.0` is read as the version, and sent on in upper case.
#[test]
fn lower_case_version_is_accepted_and_sent_upper_case() {
    let p = proxy(Arc::new(TestHook::default()));
    let t0 = Instant::now();
    let inv = invite("c-lc", "z9hG4bKlc1").replacen(" SIP/2.0\r\n", " sip/2.0\r\n", 1);
    assert!(inv.starts_with("INVITE sip:+15550001111@callee.example.com sip/2.0\r\n"));
    let outs = feed(&p, &inv, UAC, t0);
    let fwd = to(&outs, HOP);
    assert_eq!(fwd.len(), 1, "forwarded");
    let text = String::from_utf8_lossy(&fwd[0].data).to_string();
    assert!(
        text.starts_with("INVITE sip:+15550001111@callee.example.com SIP/2.0\r\n"),
        "{text}"
    );
    // A response in lower case is relayed in upper case too.
    let ok = String::from_utf8_lossy(&answer(&fwd[0], 180, &[])).replacen("SIP/2.0", "sip/2.0", 1);
    let up = p.handle(Bytes::from(ok), udp(HOP), t0);
    assert_eq!(codes(&to(&up, UAC)), vec![180]);
    assert!(up[0].data.starts_with(b"SIP/2.0 180 "));
}

/// Issue 13, no amplification: over UDP an INVITE that is never acknowledged gets its final
/// response once per INVITE received, never on a timer, and its transaction is freed at Timer
/// H. The same holds for a non-2xx relayed from downstream.
#[test]
fn unacknowledged_rejects_are_not_retransmitted() {
    let hook = deciding(blocked());
    let p = proxy(hook.clone());
    let t0 = Instant::now();
    let inv = invite("c-amp", "z9hG4bKamp1");
    assert_eq!(codes(&feed(&p, &inv, UAC, t0)), vec![603]);
    let mut sent = 1;
    for ms in (50..40_000).step_by(50) {
        let now = t0 + Duration::from_millis(ms);
        sent += p.poll(now).len();
        if ms == 1_000 {
            // The INVITE again: one response for it.
            sent += feed(&p, &inv, UAC, now).len();
        }
    }
    assert_eq!(sent, 2, "one response per INVITE received");
    assert_eq!(p.table_sizes(), (0, 0, 0), "freed at Timer H");
    assert_eq!(p.stats().responses_sent(603), 1, "the 603 was built once");

    // Forwarded, and refused downstream with 486: relayed once, not resent on a timer.
    *hook.decision.lock().unwrap() = None;
    let inv = invite("c-amp2", "z9hG4bKamp2");
    let fwd = to(&feed(&p, &inv, UAC, t0), HOP).remove(0);
    let busy = p.handle(answer(&fwd, 486, &[]), udp(HOP), t0);
    assert_eq!(codes(&to(&busy, UAC)), vec![486]);
    let mut later = Vec::new();
    for ms in (50..40_000).step_by(50) {
        later.extend(p.poll(t0 + Duration::from_millis(ms)));
    }
    assert!(
        to(&later, UAC).is_empty(),
        "nothing more upstream: {:?}",
        codes(&later)
    );
}

/// The ACK a UA sends for a non-2xx final response to `inv`: the INVITE's branch, the
/// response's To.
fn ack_of(inv: &str, resp: &Output) -> String {
    let to_line = parse(resp).value(super::msg::Hdr::To).unwrap().to_string();
    let m = Message::parse(
        Bytes::copy_from_slice(inv.as_bytes()),
        &Limits::default(),
        true,
    )
    .unwrap();
    let old_to = m.value(super::msg::Hdr::To).unwrap().to_string();
    inv.replacen("INVITE sip", "ACK sip", 1)
        .replace("CSeq: 1 INVITE", "CSeq: 1 ACK")
        .replace(&format!("To: {old_to}\r\n"), &format!("To: {to_line}\r\n"))
}

/// Issue 13: the ACK of every non-2xx we answer ourselves ends here, whether we kept a
/// transaction for it (a block) or not (483, 482, 420, 503, 400), and after that transaction
/// is gone (Timer H) too. It never reaches the next hop.
#[test]
fn acks_of_our_own_answers_are_absorbed() {
    let hook = Arc::new(TestHook::default());
    let t0 = Instant::now();
    let block = blocked();
    // (what, the INVITE, the proxy's config, the hook's answer, the code, when the ACK comes)
    type Case = (
        &'static str,
        String,
        fn(&mut SipConfig),
        Option<Disposition>,
        u16,
        u64,
    );
    let base = invite("c-ack", "z9hG4bKack1");
    let cases: Vec<Case> = vec![
        (
            "max-forwards 0",
            base.replace("Max-Forwards: 70", "Max-Forwards: 0"),
            |_| {},
            None,
            483,
            0,
        ),
        (
            "proxy-require",
            base.replace(
                "Max-Forwards: 70\r\n",
                "Max-Forwards: 70\r\nProxy-Require: x\r\n",
            ),
            |_| {},
            None,
            420,
            0,
        ),
        (
            "malformed",
            base.replace(
                "Max-Forwards: 70\r\n",
                "Max-Forwards: 70\r\nUser-Agent: a\0b\r\n",
            ),
            |_| {},
            None,
            400,
            0,
        ),
        ("overload", base.clone(), |c| c.max_calls = 0, None, 503, 0),
        ("block", base.clone(), |_| {}, Some(block.clone()), 603, 0),
        (
            "block, after Timer H",
            base.clone(),
            |_| {},
            Some(block),
            603,
            40,
        ),
    ];
    for (what, inv, tune, decision, code, later) in cases {
        *hook.decision.lock().unwrap() = decision;
        let p = proxy_with(hook.clone(), tune);
        let outs = feed(&p, &inv, UAC, t0);
        assert_eq!(codes(&outs), vec![code], "{what}");
        let at = t0 + Duration::from_secs(later);
        p.poll(at);
        // The UA's ACK is built from its clean INVITE (the malformed header aside).
        let clean = inv.replace("User-Agent: a\0b\r\n", "");
        let ack = ack_of(&clean, &outs[0]);
        let after = feed(&p, &ack, UAC, at);
        assert!(after.is_empty(), "{what}: the ACK went on: {after:?}");
    }
}

/// Issue 13, screening bypass: a To tag of no dialog we Record-Routed makes nothing
/// in-dialog. An INVITE or MESSAGE with one is screened as new; any request with one goes to
/// the next hop only, whatever its Route or Request-URI names; from the next hop itself it is
/// answered 481 (an ACK is dropped).
#[test]
fn a_made_up_to_tag_bypasses_nothing() {
    let hook = deciding(blocked());
    let p = proxy(hook.clone());
    let t0 = Instant::now();
    let fake = |inv: String| {
        inv.replace(
            "To: <sip:+15550001111@callee.example.com>",
            "To: <sip:+15550001111@callee.example.com>;tag=fake",
        )
    };
    let inv = fake(invite("c-bypass", "z9hG4bKby1"));
    assert_eq!(
        codes(&feed(&p, &inv, UAC, t0)),
        vec![603],
        "screened and blocked"
    );
    assert_eq!(hook.calls.lock().unwrap().as_slice(), ["c-bypass"]);
    let msg = inv
        .replacen("INVITE sip", "MESSAGE sip", 1)
        .replace("CSeq: 1 INVITE", "CSeq: 1 MESSAGE")
        .replace("z9hG4bKby1", "z9hG4bKby2");
    assert_eq!(codes(&feed(&p, &msg, UAC, t0)), vec![603], "a MESSAGE too");

    // Passed, it goes to the next hop and nowhere its Route or Request-URI names.
    *hook.decision.lock().unwrap() = None;
    let relay = fake(invite("c-bypass2", "z9hG4bKby3"))
        .replacen(
            "INVITE sip:+15550001111@callee.example.com",
            "INVITE sip:+15550001111@198.51.100.9:5060",
            1,
        )
        .replace(
            "Max-Forwards: 70\r\n",
            "Max-Forwards: 70\r\nRoute: <sip:127.0.0.1:5060;lr>, <sip:198.51.100.7:5060;lr>\r\n",
        );
    let outs = feed(&p, &relay, UAC, t0);
    assert_eq!(to(&outs, HOP).len(), 1, "to the next hop: {outs:?}");
    assert!(outs
        .iter()
        .all(|o| o.to.addr.ip().to_string() == "127.0.0.1"));
    assert_eq!(hook.calls.lock().unwrap().len(), 3);

    // Other methods are not screened but go to the next hop only.
    let bye = "BYE sip:x@198.51.100.9:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bKby4\r\nRoute: <sip:198.51.100.7:5060;lr>\r\nFrom: <sip:a@x>;tag=a9\r\nTo: <sip:b@y>;tag=fake\r\nCall-ID: c-none\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n";
    let outs = feed(&p, bye, UAC, t0);
    assert_eq!(outs.len(), 1);
    assert_eq!(to(&outs, HOP).len(), 1);
    // From the next hop there is nowhere to go back to.
    let from_hop = bye.replace("127.0.0.1:5080", HOP);
    assert_eq!(codes(&feed(&p, &from_hop, HOP, t0)), vec![481]);
    let ack = from_hop
        .replace("BYE sip", "ACK sip")
        .replace("CSeq: 2 BYE", "CSeq: 2 ACK");
    assert!(feed(&p, &ack, HOP, t0).is_empty());
    assert_eq!(
        hook.calls.lock().unwrap().len(),
        3,
        "none of these screened"
    );
    assert_eq!(p.stats().unknown_dialog.get(), 6);
}

/// Issue 13, no open relay: inside a dialog we Record-Routed, a Route or Request-URI naming
/// another address is not followed (the request goes back along the call) unless the operator
/// allows it; without a next hop, only allowed targets are reached.
#[test]
fn routes_and_request_uris_are_followed_only_to_allowed_targets() {
    let hook = deciding(staying(None, &[]));
    let t0 = Instant::now();
    let info = "INFO sip:bob@203.0.113.5:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bKrl2\r\nRoute: <sip:127.0.0.1:5060;lr>, <sip:203.0.113.6:5060;lr>\r\nFrom: <sip:+15552223333@client.example.com>;tag=a1\r\nTo: <sip:+15550001111@callee.example.com>;tag=callee1\r\nCall-ID: c-rl\r\nCSeq: 2 INFO\r\nContent-Length: 0\r\n\r\n";
    for (allowed, want) in [
        (vec![], HOP),
        (vec!["203.0.113.6:5060"], "203.0.113.6:5060"),
    ] {
        let p = proxy_with(hook.clone(), |c| {
            c.allowed_targets = allowed.iter().map(|a| a.parse().unwrap()).collect();
        });
        let fwd = to(&feed(&p, &invite("c-rl", "z9hG4bKrl1"), UAC, t0), HOP).remove(0);
        p.handle(answer(&fwd, 200, &[]), udp(HOP), t0);
        let outs = feed(&p, info, UAC, t0);
        assert_eq!(outs.len(), 1, "{allowed:?}");
        assert_eq!(
            outs[0].to.addr,
            want.parse::<SocketAddr>().unwrap(),
            "{allowed:?}"
        );
    }
    // Without a next hop: refused 403 unless the Request-URI is an allowed target.
    let target = "INVITE sip:+15550001111@203.0.113.5:5060";
    let inv = invite("c-nohop", "z9hG4bKrl3").replacen(
        "INVITE sip:+15550001111@callee.example.com",
        target,
        1,
    );
    for (allowed, want) in [(false, Outcome::Answered(403)), (true, Outcome::Dropped)] {
        let p = proxy_with(hook.clone(), |c| {
            c.next_hop = None;
            if allowed {
                c.allowed_targets = vec!["203.0.113.5:5060".parse().unwrap()];
            }
        });
        let outs = feed(&p, &inv, UAC, t0);
        assert_eq!(outcome(&outs), want, "allowed: {allowed}");
        assert_eq!(
            to(&outs, "203.0.113.5:5060").len(),
            usize::from(allowed),
            "allowed: {allowed}"
        );
        assert_eq!(p.stats().relay_refused.get(), u64::from(!allowed));
    }
}

/// Issue 13: a response goes only along Vias we wrote. With its transaction it follows where
/// the request came from, whatever its second Via says; without one (a 2xx retransmission) it
/// follows its second Via only when our branch vouches for that address.
#[test]
fn forged_second_vias_lead_nowhere() {
    let hook = Arc::new(TestHook::default());
    let p = proxy(hook);
    let t0 = Instant::now();
    let fwd = to(&feed(&p, &invite("c-via", "z9hG4bKv1"), UAC, t0), HOP).remove(0);
    let forge = |r: Bytes| {
        let s = String::from_utf8_lossy(&r).replace(
            "client.example.com:5080;branch=z9hG4bKv1;rport=5080;received=127.0.0.1",
            "192.0.2.66:5060;branch=z9hG4bKv1",
        );
        assert!(s.contains("192.0.2.66"));
        Bytes::from(s)
    };
    // With the transaction: to the caller, not to the forged Via.
    let r180 = p.handle(forge(answer(&fwd, 180, &[])), udp(HOP), t0);
    assert_eq!(r180.len(), 1);
    assert_eq!(r180[0].to.addr, UAC.parse::<SocketAddr>().unwrap());
    let r200 = p.handle(answer(&fwd, 200, &[]), udp(HOP), t0);
    assert_eq!(codes(&to(&r200, UAC)), vec![200]);
    // Without it: a true retransmission goes back, a forged one nowhere.
    assert_eq!(
        codes(&to(&p.handle(answer(&fwd, 200, &[]), udp(HOP), t0), UAC)),
        vec![200]
    );
    assert!(p
        .handle(forge(answer(&fwd, 200, &[])), udp(HOP), t0)
        .is_empty());
    assert_eq!(p.stats().forged_responses.get(), 1);
    // A response whose top Via is not ours is dropped and counted.
    let stray = String::from_utf8_lossy(&answer(&fwd, 200, &[])).replacen(
        "127.0.0.1:5060",
        "127.0.0.1:5999",
        1,
    );
    assert!(p.handle(Bytes::from(stray), udp(HOP), t0).is_empty());
    assert_eq!(p.stats().stray_responses.get(), 1);
}

/// Issue 13: an out-of-dialog MESSAGE is screened like an INVITE (answered here on a block,
/// sent on with the hook's headers otherwise, but never with Record-Route, a 100 or a call
/// entry); a REGISTER is answered 405 alike for every user, or relayed by policy.
#[test]
fn message_is_screened_and_register_follows_policy() {
    let hook = deciding(blocked());
    let p = proxy(hook.clone());
    let t0 = Instant::now();
    let msg = |call: &str| {
        invite(call, &format!("z9hG4bK{call}"))
            .replacen("INVITE sip", "MESSAGE sip", 1)
            .replace("CSeq: 1 INVITE", "CSeq: 1 MESSAGE")
            .replace("application/sdp", "text/plain")
    };
    assert_eq!(codes(&feed(&p, &msg("m1"), UAC, t0)), vec![603]);
    assert_eq!(hook.calls.lock().unwrap().as_slice(), ["m1"]);
    *hook.decision.lock().unwrap() = Some(Disposition::Forward {
        display_name: None,
        headers: vec!["X-Verdict: warn".into()],
        record_route: true,
        anchor_media: true,
        offer: None,
        tag: None,
    });
    let outs = feed(&p, &msg("m2"), UAC, t0);
    assert!(to(&outs, UAC).is_empty(), "no 100 for a MESSAGE");
    let fwd = to(&outs, HOP);
    assert_eq!(fwd.len(), 1);
    let text = String::from_utf8_lossy(&fwd[0].data).to_string();
    assert!(text.contains("\r\nX-Verdict: warn\r\n"), "{text}");
    assert!(!text.contains("Record-Route"), "{text}");
    assert_eq!(parse(&fwd[0]).body_bytes(), b"v=0\n", "the body as sent");
    assert_eq!(p.table_sizes().2, 0, "no call entry");
    let ok = p.handle(answer(&fwd[0], 200, &[]), udp(HOP), t0);
    assert_eq!(codes(&to(&ok, UAC)), vec![200]);
    assert!(hook.events.lock().unwrap().is_empty(), "no call events");

    let register = |user: &str, n: u32| {
        format!("REGISTER sip:127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bKreg{n}\r\nMax-Forwards: 70\r\nFrom: <sip:{user}@127.0.0.1>;tag=r{n}\r\nTo: <sip:{user}@127.0.0.1>\r\nCall-ID: reg-{n}\r\nCSeq: 1 REGISTER\r\nContact: <sip:{user}@127.0.0.1:5080>\r\nContent-Length: 0\r\n\r\n")
    };
    let answers: Vec<String> = ["100", "101", "admin"]
        .iter()
        .zip(1..)
        .map(|(u, n)| {
            let outs = feed(&p, &register(u, n), UAC, t0);
            assert_eq!(codes(&outs), vec![405]);
            let text = String::from_utf8_lossy(&outs[0].data).to_string();
            assert!(text.contains("\r\nAllow: "), "{text}");
            text.lines().next().unwrap().to_string()
        })
        .collect();
    assert!(answers
        .iter()
        .all(|a| a == "SIP/2.0 405 Method Not Allowed"));
    assert_eq!(p.stats().register_refused.get(), 3);
    let relay = proxy_with(hook.clone(), |c| {
        c.register = super::config::RegisterPolicy::Relay
    });
    assert_eq!(
        outcome(&feed(&relay, &register("100", 9), UAC, t0)),
        Outcome::Forwarded
    );
}

/// Issue 13: the caller of a warned call never learns it was flagged. Responses to its INVITE
/// come back with its own From (not the display name rewritten for the callee) and without the
/// headers added for the callee, even when the callee's side echoes them; the callee's own
/// requests reach the caller with the caller's From in their To.
#[test]
fn the_warning_never_goes_back_to_the_caller() {
    let hook = deciding(staying(
        Some("SCAM? Alice"),
        &[
            "X-Scamguard-Verdict: warn;category=x",
            "Alert-Info: <urn:alert:service:normal>",
        ],
    ));
    let p = proxy(hook);
    let t0 = Instant::now();
    let inv = invite("c-leak", "z9hG4bKleak1");
    let fwd = to(&feed(&p, &inv, UAC, t0), HOP).remove(0);
    assert!(String::from_utf8_lossy(&fwd.data).contains("From: \"SCAM? Alice\""));
    let from = "From: \"Alice\" <sip:+15552223333@client.example.com>;tag=a1\r\n";
    // A callee side that echoes our headers (a B2BUA copying X- headers), and one that adds
    // an Alert-Info of its own (kept: it is not ours).
    let echo = [
        "X-Scamguard-Verdict: warn;category=x".to_string(),
        "Alert-Info: <urn:alert:service:normal>".to_string(),
        "Alert-Info: <http://ring.example/tone>".to_string(),
    ];
    let mut up = Vec::new();
    for code in [180, 200] {
        up.extend(to(&p.handle(answer(&fwd, code, &echo), udp(HOP), t0), UAC));
    }
    // A 2xx retransmission after the client transaction is gone.
    up.extend(to(&p.handle(answer(&fwd, 200, &echo), udp(HOP), t0), UAC));
    assert_eq!(codes(&up), vec![180, 200, 200]);
    for o in &up {
        let text = String::from_utf8_lossy(&o.data).to_string();
        assert!(text.contains(&format!("\r\n{from}")), "{text}");
        assert!(!text.contains("SCAM?"), "{text}");
        assert!(!text.contains("X-Scamguard-Verdict"), "{text}");
        assert!(!text.contains("urn:alert"), "{text}");
        assert!(
            text.contains("Alert-Info: <http://ring.example/tone>"),
            "{text}"
        );
    }
    // The callee hangs up: its BYE's To is the From it saw.
    let bye = format!("BYE sip:alice@127.0.0.1:5080 SIP/2.0\r\nVia: SIP/2.0/UDP {HOP};branch=z9hG4bKleak2\r\nRoute: <sip:127.0.0.1:5060;lr>\r\nFrom: <sip:+15550001111@callee.example.com>;tag=callee1\r\nTo: \"SCAM? Alice\" <sip:+15552223333@client.example.com>;tag=a1\r\nCall-ID: c-leak\r\nCSeq: 7 BYE\r\nX-Scamguard-Verdict: warn;category=x\r\nContent-Length: 0\r\n\r\n");
    let down = to(&feed(&p, &bye, HOP, t0), UAC);
    assert_eq!(down.len(), 1);
    let text = String::from_utf8_lossy(&down[0].data).to_string();
    assert!(
        text.contains("\r\nTo: \"Alice\" <sip:+15552223333@client.example.com>;tag=a1\r\n"),
        "{text}"
    );
    assert!(
        !text.contains("SCAM?") && !text.contains("X-Scamguard"),
        "{text}"
    );
}

mod lifetime;

/// A UDP caller and a TLS next hop: our Via says TLS with `alias` and the TLS port, and we
/// Record-Route twice (RFC 5658), so that the caller reaches us over UDP and the callee over
/// TLS; either side's in-dialog request has both Routes popped.
#[test]
fn a_call_between_udp_and_tls_is_record_routed_once_per_side() {
    let hook = deciding(staying(None, &[]));
    let cfg = SipConfig {
        next_hop: Some(HOP.parse().unwrap()),
        next_hop_transport: Transport::Tls,
        ..SipConfig::default()
    };
    let p = Proxy::new(
        cfg,
        ME.parse().unwrap(),
        hook,
        Arc::new(SipStats::default()),
    )
    .with_tls_port(5061);
    let t0 = Instant::now();
    let outs = feed(&p, &invite("c-tls", "z9hG4bKt1"), UAC, t0);
    let fwd = to(&outs, HOP).remove(0);
    assert_eq!(fwd.to.transport, Transport::Tls);
    let m = parse(&fwd);
    let via = m
        .values_str(super::msg::Hdr::Via)
        .next()
        .unwrap()
        .to_string();
    assert!(
        via.starts_with("SIP/2.0/TLS 127.0.0.1:5061;branch=") && via.ends_with(";alias"),
        "{via}"
    );
    let rr: Vec<&str> = m.values_str(super::msg::Hdr::RecordRoute).collect();
    assert_eq!(
        rr,
        [
            "<sip:127.0.0.1:5061;transport=tls;lr>",
            "<sip:127.0.0.1:5060;lr>"
        ]
    );
    let up = p.handle(
        answer(&fwd, 200, &[]),
        Peer {
            transport: Transport::Tls,
            ..udp(HOP)
        },
        t0,
    );
    assert_eq!(codes(&up), [200]);
    // The caller's BYE carries the Record-Route reversed: both name us and both are popped.
    let bye = "BYE sip:uas@127.0.0.1:5070;transport=tls SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bKtb\r\nRoute: <sip:127.0.0.1:5060;lr>, <sip:127.0.0.1:5061;transport=tls;lr>\r\nMax-Forwards: 70\r\nFrom: \"Alice\" <sip:+15552223333@client.example.com>;tag=a1\r\nTo: <sip:+15550001111@callee.example.com>;tag=callee1\r\nCall-ID: c-tls\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n";
    let down = to(&feed(&p, bye, UAC, t0), HOP);
    assert_eq!(down.len(), 1);
    assert_eq!(down[0].to.transport, Transport::Tls);
    let text = String::from_utf8_lossy(&down[0].data).to_string();
    assert!(!text.contains("Route:"), "both our Routes popped: {text}");
}

#[test]
fn a_sips_request_never_leaves_in_the_clear() {
    let hook = deciding(staying(None, &[]));
    let p = proxy(hook);
    let t0 = Instant::now();
    // Outside a dialog a sips: request goes to the next hop, which is UDP here: refused 480.
    let sips = invite("c-sips", "z9hG4bKs1").replace(
        "INVITE sip:+15550001111@callee.example.com",
        "INVITE sips:+15550001111@callee.example.com",
    );
    let outs = feed(&p, &sips, UAC, t0);
    assert_eq!(codes(&outs), [480]);
    assert!(to(&outs, HOP).is_empty(), "nothing sent in the clear");
    assert_eq!(p.stats().sips_refused.get(), 1);
}

/// Listening on an IPv4 and an IPv6 address, a v4 caller and a v6 next hop: our Via towards
/// the hop is IPv6, and we Record-Route once per side, each in that side's family; the
/// caller's Via gets `rport` of its v4 source. The callee's BYE, routed by the v6 Route, pops
/// both Routes and goes back to the caller in v4.
#[test]
fn a_call_between_families_is_record_routed_once_per_side() {
    let hook = deciding(staying(None, &[]));
    let hop6 = "[2001:db8::70]:5070";
    let cfg = SipConfig {
        listen: super::config::Listen(vec![
            ME.parse().unwrap(),
            "[2001:db8::5]:5060".parse().unwrap(),
        ]),
        next_hop: Some(hop6.parse().unwrap()),
        ..SipConfig::default()
    };
    assert_eq!(cfg.validate(), Vec::<String>::new());
    let p = Proxy::new(
        cfg,
        ME.parse().unwrap(),
        hook,
        Arc::new(SipStats::default()),
    );
    let t0 = Instant::now();
    let outs = feed(&p, &invite("c-fam", "z9hG4bKf1"), UAC, t0);
    let fwd = to(&outs, hop6).remove(0);
    let m = parse(&fwd);
    let vias: Vec<&str> = m.values_str(super::msg::Hdr::Via).collect();
    assert!(
        vias[0].starts_with("SIP/2.0/UDP [2001:db8::5]:5060;branch=z9hG4bKsg"),
        "{vias:?}"
    );
    assert_eq!(
        vias[1],
        "SIP/2.0/UDP client.example.com:5080;branch=z9hG4bKf1;rport=5080;received=127.0.0.1"
    );
    let rr: Vec<&str> = m.values_str(super::msg::Hdr::RecordRoute).collect();
    assert_eq!(
        rr,
        ["<sip:[2001:db8::5]:5060;lr>", "<sip:127.0.0.1:5060;lr>"]
    );
    let up = p.handle(answer(&fwd, 200, &[]), udp(hop6), t0);
    assert_eq!(codes(&up), [200]);
    let bye = "BYE sip:alice@127.0.0.1:5080 SIP/2.0\r\nVia: SIP/2.0/UDP [2001:db8::70]:5070;branch=z9hG4bKfb\r\nRoute: <sip:[2001:db8::5]:5060;lr>, <sip:127.0.0.1:5060;lr>\r\nMax-Forwards: 70\r\nFrom: <sip:+15550001111@callee.example.com>;tag=callee1\r\nTo: \"Alice\" <sip:+15552223333@client.example.com>;tag=a1\r\nCall-ID: c-fam\r\nCSeq: 1 BYE\r\nContent-Length: 0\r\n\r\n";
    let back = to(&feed(&p, bye, hop6, t0), UAC);
    assert_eq!(back.len(), 1, "the BYE goes back to the caller");
    let text = String::from_utf8_lossy(&back[0].data).to_string();
    assert!(!text.contains("Route:"), "both our Routes popped: {text}");
    assert!(
        text.contains("Via: SIP/2.0/UDP 127.0.0.1:5060;branch="),
        "a v4 Via towards the caller: {text}"
    );
}

/// RFC 3261 18.2.1 and RFC 3581 for an IPv6 source (RFC 5118 4.5): `received` carries the
/// address without brackets and `rport` its port; the response goes back there.
#[test]
fn a_v6_source_is_marked_received_without_brackets() {
    let hook = deciding(staying(None, &[]));
    let p = proxy(hook);
    let t0 = Instant::now();
    let src = "[2001:db8::99]:40000";
    let outs = feed(&p, &invite("c-v6src", "z9hG4bKv6s"), src, t0);
    let fwd = to(&outs, HOP).remove(0);
    let m = parse(&fwd);
    let vias: Vec<&str> = m.values_str(super::msg::Hdr::Via).collect();
    assert_eq!(
        vias[1],
        "SIP/2.0/UDP client.example.com:5080;branch=z9hG4bKv6s;rport=40000;received=2001:db8::99"
    );
    let up = p.handle(answer(&fwd, 180, &[]), udp(HOP), t0);
    assert_eq!(
        to(&up, src).len(),
        1,
        "the 180 goes back to the real source"
    );
}
