//! Host names, sans-IO: a request to a named next hop waits for the answer and goes on with it;
//! a failure answers 503, a wait too long 504; retransmissions are parked once; the bounds
//! hold; answers expire with their TTL; SRV targets fail over on silence and on refusal.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::super::super::hook::{
    CallEvent, CallRef, Disposition, Hook, NewCall, SdpDirection, SdpKind,
};
use super::super::super::msg::{Limits, Message};
use super::super::super::{SipConfig, SipStats, Transport};
use super::super::{Output, Peer, Proxy};
use super::{Name, Resolved};

const ME: &str = "127.0.0.1:5060";
const UAC: &str = "127.0.0.1:5080";
const A1: &str = "192.0.2.1:5060";
const A2: &str = "192.0.2.2:5060";

struct Pass;

impl Hook for Pass {
    fn new_call(&self, _: &NewCall<'_>, _: Instant) -> Disposition {
        Disposition::pass()
    }
    fn call_event(&self, _: &CallRef<'_>, _: CallEvent, _: Instant) {}
    fn rewrite_sdp(
        &self,
        _: &CallRef<'_>,
        _: SdpDirection,
        _: SdpKind,
        _: &[u8],
        _: Instant,
    ) -> Option<Vec<u8>> {
        None
    }
}

fn proxy(tune: impl FnOnce(&mut SipConfig)) -> Proxy {
    let mut cfg = SipConfig {
        next_hop: Some("pbx.example.net".parse().unwrap()),
        ..SipConfig::default()
    };
    tune(&mut cfg);
    Proxy::new(
        cfg,
        ME.parse().unwrap(),
        Arc::new(Pass),
        Arc::new(SipStats::default()),
    )
}

fn hop() -> Name {
    Name {
        host: "pbx.example.net".into(),
        port: None,
        transport: None,
        secure: false,
    }
}

fn invite(call: &str) -> String {
    format!(
        "INVITE sip:+18005550199@example.com SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bKn-{call}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:+14155550100@example.com>;tag=a1\r\n\
         To: <sip:+18005550199@example.com>\r\nCall-ID: {call}\r\nCSeq: 1 INVITE\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

fn feed(p: &Proxy, s: &str, now: Instant) -> Vec<Output> {
    let from = Peer {
        transport: Transport::Udp,
        addr: UAC.parse().unwrap(),
        conn: None,
    };
    p.handle(Bytes::copy_from_slice(s.as_bytes()), from, now)
}

fn parse(o: &Output) -> Message {
    Message::parse(o.data.clone(), &Limits::default(), true).unwrap()
}

/// The requests sent to `addr`, and the status codes of responses sent back to the caller.
fn split(outs: &[Output], addr: &str) -> (usize, Vec<u16>) {
    let a: SocketAddr = addr.parse().unwrap();
    let sent = outs
        .iter()
        .filter(|o| o.to.addr == a && parse(o).is_request())
        .count();
    let codes = outs
        .iter()
        .filter(|o| o.to.addr == UAC.parse().unwrap())
        .filter_map(|o| parse(o).status())
        .filter(|c| *c != 100)
        .collect();
    (sent, codes)
}

fn found(addrs: &[&str], ttl: u64) -> Resolved {
    Resolved::Found {
        targets: addrs
            .iter()
            .map(|a| (Transport::Udp, a.parse().unwrap()))
            .collect(),
        ttl: Duration::from_secs(ttl),
    }
}

#[test]
fn a_request_to_a_named_hop_waits_for_the_answer_then_goes_to_it() {
    let p = proxy(|_| {});
    let t0 = Instant::now();
    assert!(
        feed(&p, &invite("c1"), t0).is_empty(),
        "parked, nothing sent"
    );
    // Its retransmission, and another call, wait on the same single query.
    assert!(feed(&p, &invite("c1"), t0).is_empty());
    assert!(feed(&p, &invite("c2"), t0).is_empty());
    assert_eq!(p.take_queries(), vec![hop()]);
    assert!(p.take_queries().is_empty(), "asked once");
    let outs = p.resolved(&hop(), found(&[A1], 60), t0);
    assert_eq!(
        split(&outs, A1),
        (2, vec![]),
        "each call once, to the address"
    );
    assert_eq!(p.table_sizes().2, 2, "both calls tracked");
    // Within the TTL the next call goes at once; after it the name is asked again.
    let (sent, _) = split(&feed(&p, &invite("c3"), t0 + Duration::from_secs(30)), A1);
    assert_eq!(sent, 1);
    assert!(p.take_queries().is_empty());
    let later = t0 + Duration::from_secs(61);
    assert!(feed(&p, &invite("c4"), later).is_empty());
    assert_eq!(p.take_queries(), vec![hop()]);
    let outs = p.resolved(&hop(), found(&[A2], 60), later);
    assert_eq!(split(&outs, A2).0, 1, "the new answer is used");
}

#[test]
fn a_failed_name_answers_503_and_is_remembered_for_its_negative_ttl() {
    let p = proxy(|c| c.dns.negative_secs = 10);
    let t0 = Instant::now();
    feed(&p, &invite("c1"), t0);
    assert_eq!(p.take_queries(), vec![hop()]);
    let outs = p.resolved(
        &hop(),
        Resolved::Failed {
            ttl: Duration::from_secs(300),
            why: "NXDOMAIN".into(),
        },
        t0,
    );
    assert_eq!(split(&outs, A1).1, vec![503]);
    // Remembered (capped at negative_secs): answered at once, nothing asked.
    let outs = feed(&p, &invite("c2"), t0 + Duration::from_secs(9));
    assert_eq!(split(&outs, A1).1, vec![503]);
    assert!(p.take_queries().is_empty());
    assert!(feed(&p, &invite("c3"), t0 + Duration::from_secs(11)).is_empty());
    assert_eq!(p.take_queries(), vec![hop()]);
}

#[test]
fn a_timed_out_resolution_answers_504_and_so_does_a_wait_too_long() {
    let p = proxy(|c| c.dns.park_ms = 3000);
    let t0 = Instant::now();
    feed(&p, &invite("c1"), t0);
    let outs = p.resolved(&hop(), Resolved::TimedOut, t0);
    assert_eq!(split(&outs, A1).1, vec![504]);
    // No answer at all: the parked request is answered 504 once its wait is over.
    let t1 = t0 + Duration::from_secs(5);
    feed(&p, &invite("c2"), t1);
    p.take_queries();
    assert!(split(&p.poll(t1 + Duration::from_secs(2)), A1).1.is_empty());
    let outs = p.poll(t1 + Duration::from_secs(4));
    assert_eq!(split(&outs, A1).1, vec![504]);
    // A late answer finds nobody waiting and sends nothing.
    assert!(p
        .resolved(&hop(), found(&[A1], 60), t1 + Duration::from_secs(10))
        .is_empty());
}

#[test]
fn parked_requests_are_capped() {
    let p = proxy(|c| c.dns.max_parked = 2);
    let t0 = Instant::now();
    assert!(feed(&p, &invite("c1"), t0).is_empty());
    assert!(feed(&p, &invite("c2"), t0).is_empty());
    let outs = feed(&p, &invite("c3"), t0);
    assert_eq!(split(&outs, A1).1, vec![503], "over the cap");
    let outs = p.resolved(&hop(), found(&[A1], 60), t0);
    assert_eq!(split(&outs, A1).0, 2);
}

#[test]
fn a_silent_srv_target_fails_over_to_the_next() {
    let p = proxy(|c| c.dns.failover_ms = 2000);
    let t0 = Instant::now();
    feed(&p, &invite("c1"), t0);
    let outs = p.resolved(&hop(), found(&[A1, A2], 60), t0);
    assert_eq!(split(&outs, A1).0, 1);
    // Retransmitted to the first while its window lasts, then sent to the second.
    let mut to_second = 0;
    let mut t = t0;
    while t < t0 + Duration::from_secs(4) {
        t += Duration::from_millis(100);
        to_second += split(&p.poll(t), A2).0;
    }
    assert!(to_second >= 1, "went on to the second target");
    assert_eq!(p.stats().dns_failovers.get(), 1);
}

#[test]
fn a_refused_target_fails_over_at_once() {
    let p = proxy(|c| c.dns.failover_ms = 60_000);
    let t0 = Instant::now();
    feed(&p, &invite("c1"), t0);
    let outs = p.resolved(&hop(), found(&[A1, A2], 60), t0);
    let sent = outs.into_iter().find(|o| o.to.addr == A1.parse().unwrap());
    let again = p.unreachable(sent.unwrap().data, t0);
    assert_eq!(split(&again, A2).0, 1);
    // The last one refusing too leaves the request to its timers: nothing more to try.
    let last = again.into_iter().next().unwrap();
    assert!(p.unreachable(last.data, t0).is_empty());
}

#[test]
fn a_response_stops_failover() {
    let p = proxy(|c| c.dns.failover_ms = 1000);
    let t0 = Instant::now();
    feed(&p, &invite("c1"), t0);
    let outs = p.resolved(&hop(), found(&[A1, A2], 60), t0);
    let inv = outs
        .iter()
        .find(|o| o.to.addr == A1.parse().unwrap())
        .map(parse)
        .unwrap();
    let ringing =
        super::super::super::response::build_response(&inv, 180, "Ringing", &[], Some("b1"));
    let from = Peer {
        transport: Transport::Udp,
        addr: A1.parse().unwrap(),
        conn: None,
    };
    p.handle(ringing, from, t0);
    let mut t = t0;
    while t < t0 + Duration::from_secs(5) {
        t += Duration::from_millis(250);
        assert_eq!(split(&p.poll(t), A2).0, 0, "a ringing target is kept");
    }
}
