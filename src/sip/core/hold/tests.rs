//! Held calls, sans-IO: the 183 with the application's SDP, then each way a hold ends (forwarded,
//! diverted, refused, cancelled, timed out), with a virtual clock.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::super::super::hook::{
    CallEvent, CallRef, CallTag, Disposition, Hook, NewCall, SdpDirection, SdpKind,
};
use super::super::super::msg::{Limits, Message};
use super::super::super::{SipConfig, SipStats, Transport};
use super::super::{Output, Peer, Proxy};

const ME: &str = "127.0.0.1:5060";
const HOP: &str = "127.0.0.1:5070";
const UAC: &str = "127.0.0.1:5080";
const SDP: &str = "v=0\r\no=scamguard 1 1 IN IP4 127.0.0.1\r\n";

/// Answers every new call with `first`, and hands out `later` when the proxy asks for resumed
/// calls; records every event with the tag it came with.
#[derive(Default)]
struct HoldHook {
    first: Mutex<Option<Disposition>>,
    later: Mutex<Vec<(String, Disposition)>>,
    events: Mutex<Vec<(String, CallEvent, Option<String>)>>,
}

impl Hook for HoldHook {
    fn new_call(&self, _: &NewCall<'_>, _: Instant) -> Disposition {
        self.first.lock().unwrap().clone().unwrap()
    }
    fn call_event(&self, call: &CallRef<'_>, event: CallEvent, _: Instant) {
        let tag = call.tag::<&str>().map(|t| t.to_string());
        self.events
            .lock()
            .unwrap()
            .push((call.call_id.to_string(), event, tag));
    }
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
    fn resumed(&self, _: Instant) -> Vec<(String, Disposition)> {
        std::mem::take(&mut *self.later.lock().unwrap())
    }
}

fn held(first: Disposition) -> (Arc<HoldHook>, Proxy) {
    let hook = Arc::new(HoldHook::default());
    *hook.first.lock().unwrap() = Some(first);
    let cfg = SipConfig {
        next_hop: Some(HOP.parse().unwrap()),
        ..SipConfig::default()
    };
    let p = Proxy::new(
        cfg,
        ME.parse().unwrap(),
        hook.clone(),
        Arc::new(SipStats::default()),
    );
    (hook, p)
}

fn hold() -> Disposition {
    Disposition::Hold {
        code: 183,
        phrase: "Session Progress".into(),
        headers: vec!["X-Why: callback".into()],
        sdp: SDP.as_bytes().to_vec(),
        tag: Some(CallTag::new("t1")),
    }
}

fn forward() -> Disposition {
    Disposition::Forward {
        display_name: None,
        headers: Vec::new(),
        record_route: true,
        anchor_media: false,
        offer: None,
        tag: None,
    }
}

fn request(method: &str, call: &str) -> String {
    let body = if method == "INVITE" { "v=0\n" } else { "" };
    format!(
        "{method} sip:+18005550199@example.com SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bKh-{call}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:+14155550100@example.com>;tag=a1\r\n\
         To: <sip:+18005550199@example.com>\r\nCall-ID: {call}\r\nCSeq: 1 {method}\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
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

fn to(outs: &[Output], addr: &str) -> Vec<Message> {
    let a: SocketAddr = addr.parse().unwrap();
    outs.iter().filter(|o| o.to.addr == a).map(parse).collect()
}

fn codes(outs: &[Output]) -> Vec<u16> {
    to(outs, UAC).iter().filter_map(Message::status).collect()
}

/// The 183 of a held call, and nothing downstream.
fn held_183(p: &Proxy, call: &str, now: Instant) -> Message {
    let outs = feed(p, &request("INVITE", call), now);
    assert!(
        to(&outs, HOP).is_empty(),
        "nothing goes downstream while held"
    );
    let up = to(&outs, UAC);
    assert_eq!(up.len(), 1);
    up.into_iter().next().unwrap()
}

#[test]
fn held_call_hears_the_183_then_goes_on_when_resumed() {
    let (hook, p) = held(hold());
    let t0 = Instant::now();
    let r = held_183(&p, "c1", t0);
    assert_eq!(r.status(), Some(183));
    assert_eq!(
        r.value(super::super::super::msg::Hdr::ContentType),
        Some("application/sdp")
    );
    assert_eq!(r.body_bytes(), SDP.as_bytes());
    assert_eq!(r.header_by_name("X-Why"), Some("callback"));
    assert_eq!(r.header_by_name("Contact"), Some("<sip:127.0.0.1:5060>"));
    let to_tag = r.to().unwrap().tag().unwrap().to_string();
    // A retransmitted INVITE gets the 183 again; the hook is not asked again.
    assert_eq!(codes(&feed(&p, &request("INVITE", "c1"), t0)), vec![183]);
    // Nothing resumed: a tick sends nothing.
    assert!(p.poll(t0 + Duration::from_millis(50)).is_empty());
    hook.later.lock().unwrap().push(("c1".into(), forward()));
    let outs = p.poll(t0 + Duration::from_millis(100));
    let down = to(&outs, HOP);
    assert_eq!(down.len(), 1);
    assert!(down[0].method_is("INVITE"));
    assert_eq!(
        down[0].request_uri_str(),
        Some("sip:+18005550199@example.com")
    );
    // The callee answers: relayed upstream, reported with the hold's tag.
    let answer =
        super::super::super::response::build_response(&down[0], 200, "OK", &[], Some("far"));
    let outs = p.handle(
        answer,
        Peer {
            transport: Transport::Udp,
            addr: HOP.parse().unwrap(),
            conn: None,
        },
        t0,
    );
    let up = to(&outs, UAC);
    assert_eq!(up[0].status(), Some(200));
    assert_ne!(
        up[0].to().unwrap().tag(),
        Some(to_tag.as_str()),
        "the callee's own dialog"
    );
    assert_eq!(
        hook.events.lock().unwrap().as_slice(),
        &[(
            "c1".to_string(),
            CallEvent::Answered,
            Some("t1".to_string())
        )]
    );
}

#[test]
fn held_call_refused_on_the_applications_word_shares_the_183s_dialog() {
    let (hook, p) = held(hold());
    let t0 = Instant::now();
    let r = held_183(&p, "c2", t0);
    let reject = Disposition::Reject {
        code: 603,
        phrase: "Decline".into(),
        headers: vec!["Reason: SIP;cause=603;text=\"not confirmed\"".into()],
    };
    hook.later.lock().unwrap().push(("c2".into(), reject));
    // A word about a call never held is ignored.
    hook.later
        .lock()
        .unwrap()
        .push(("nobody".into(), forward()));
    let outs = p.poll(t0 + Duration::from_secs(1));
    assert!(to(&outs, HOP).is_empty());
    let up = to(&outs, UAC);
    assert_eq!(up.len(), 1);
    assert_eq!(up[0].status(), Some(603));
    assert_eq!(up[0].to().unwrap().tag(), r.to().unwrap().tag());
    assert_eq!(
        up[0].header_by_name("Reason"),
        Some("SIP;cause=603;text=\"not confirmed\"")
    );
    assert!(
        hook.events.lock().unwrap().is_empty(),
        "the application knows it refused"
    );
    // Retransmitted final answer by Timer G; the call is no longer held.
    assert_eq!(p.table_sizes().2, 0);
    hook.later.lock().unwrap().push(("c2".into(), forward()));
    assert!(to(&p.poll(t0 + Duration::from_secs(2)), HOP).is_empty());
}

#[test]
fn cancelled_while_held_is_reported_and_a_late_word_ignored() {
    let (hook, p) = held(hold());
    let t0 = Instant::now();
    held_183(&p, "c3", t0);
    let cancel = request("CANCEL", "c3");
    assert_eq!(codes(&feed(&p, &cancel, t0)), vec![200, 487]);
    assert_eq!(
        hook.events.lock().unwrap().as_slice(),
        &[(
            "c3".to_string(),
            CallEvent::Cancelled,
            Some("t1".to_string())
        )]
    );
    hook.later.lock().unwrap().push(("c3".into(), forward()));
    let outs = p.poll(t0 + Duration::from_secs(1));
    assert!(
        to(&outs, HOP).is_empty(),
        "a cancelled call is not forwarded"
    );
    p.poll(t0 + Duration::from_secs(400));
    assert_eq!(p.table_sizes(), (0, 0, 0));
}

#[test]
fn held_without_word_until_timer_c_is_refused_408() {
    let (hook, p) = held(hold());
    let t0 = Instant::now();
    held_183(&p, "c4", t0);
    assert!(codes(&p.poll(t0 + Duration::from_secs(179))).is_empty());
    let outs = p.poll(t0 + Duration::from_secs(181));
    assert_eq!(codes(&outs), vec![408]);
    assert_eq!(
        hook.events.lock().unwrap().as_slice(),
        &[(
            "c4".to_string(),
            CallEvent::TimedOut,
            Some("t1".to_string())
        )]
    );
    p.poll(t0 + Duration::from_secs(600));
    assert_eq!(p.table_sizes(), (0, 0, 0));
}

#[test]
fn divert_rewrites_the_request_uri_user_only() {
    let divert = |user: &str| Disposition::Divert {
        user: user.into(),
        then: Box::new(forward()),
    };
    // At once, from the new call's disposition.
    let (_, p) = held(divert("159"));
    let t0 = Instant::now();
    let down = to(&feed(&p, &request("INVITE", "c5"), t0), HOP);
    assert_eq!(down[0].request_uri_str(), Some("sip:159@example.com"));
    assert_eq!(
        down[0].header_by_name("To"),
        Some("<sip:+18005550199@example.com>"),
        "the To is the caller's, untouched"
    );
    // After a hold.
    let (hook, p) = held(hold());
    held_183(&p, "c6", t0);
    hook.later
        .lock()
        .unwrap()
        .push(("c6".into(), divert("+442079460000")));
    let down = to(&p.poll(t0 + Duration::from_millis(50)), HOP);
    assert_eq!(
        down[0].request_uri_str(),
        Some("sip:+442079460000@example.com")
    );
    // A user that is no plain user part is not written.
    let (_, p) = held(divert("159@evil.example;x"));
    let down = to(&feed(&p, &request("INVITE", "c7"), t0), HOP);
    assert_eq!(
        down[0].request_uri_str(),
        Some("sip:+18005550199@example.com")
    );
}
