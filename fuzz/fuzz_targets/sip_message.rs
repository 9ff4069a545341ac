//! SIP messages (`sip::msg`) and the sans-IO proxy core behind them (`sip::Proxy`): the
//! scanner with every accessor, then the same bytes handed to a proxy as a datagram or a framed
//! TCP message from a caller, the next hop or a trusted peer, with the application answering
//! forward (anchored, warn-tagged), reject, pass or hold, on a virtual clock that moves on
//! between inputs so timers fire and tables are swept.
//!
//! The first byte chooses: bit 0 datagram or stream, bits 1-2 the peer, bits 3-4 the decision,
//! bits 5-7 how many seconds pass before the message. Nothing may panic, and every message the
//! proxy sends must scan again: a proxy that writes what it would refuse breaks its peers.

#![no_main]

mod common;

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use scamguard::media::sdp::Sdp;
use scamguard::screening::number::NumberPlan;
use scamguard::sip::hook::{CallEvent, CallRef, CallTag};
use scamguard::sip::msg::{Hdr, Limits, Message};
use scamguard::sip::{
    Disposition, Hook, NewCall, Output, Peer, Proxy, SdpDirection, SdpKind, SipConfig, SipStats,
    Transport,
};

const ME: &str = "192.0.2.1:5060";
const HOP: &str = "192.0.2.2:5060";
const TRUSTED: &str = "192.0.2.3:5060";
const CALLER: &str = "198.51.100.7:5080";
const MEDIA: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));

/// The application as the proxy sees it: decides as the input's selector says, and does with
/// the call what the real one does (parties, numbers, SDP).
struct FuzzHook {
    decision: AtomicU8,
    held: Mutex<Vec<String>>,
    plan: NumberPlan,
}

impl Hook for FuzzHook {
    fn new_call(&self, call: &NewCall<'_>, _now: Instant) -> Disposition {
        let p = call.parties();
        let _ = (
            self.plan.normalise(&p.caller),
            self.plan.normalise(&p.callee),
        );
        let offer = call.sdp().and_then(|b| Sdp::parse(b).ok());
        let tag = CallTag::new(call.call_id.to_string());
        match self.decision.load(Ordering::Relaxed) {
            0 => Disposition::Forward {
                display_name: Some(format!("SCAM? {}", p.display_name.unwrap_or_default())),
                headers: vec!["X-Scamguard-Verdict: warn; score=70".into()],
                record_route: true,
                anchor_media: true,
                offer: offer.map(|s| s.rewrite(MEDIA, 40000)),
                tag: Some(tag),
            },
            1 => Disposition::Reject {
                code: 603,
                phrase: "Network Blocked".into(),
                headers: vec!["Reason: SIP;cause=603;text=\"listed\"".into()],
            },
            2 => Disposition::pass().with_call(None, tag),
            _ => match offer.and_then(|s| s.answer(1, MEDIA, 40002)) {
                Some(sdp) => {
                    self.held.lock().unwrap().push(call.call_id.to_string());
                    Disposition::Hold {
                        code: 183,
                        phrase: "Session Progress".into(),
                        headers: vec![],
                        sdp,
                        tag: Some(tag),
                    }
                }
                None => Disposition::Divert {
                    user: "+15550100".into(),
                    then: Box::new(Disposition::pass()),
                },
            },
        }
    }

    fn call_event(&self, _call: &CallRef<'_>, _event: CallEvent, _now: Instant) {}

    fn rewrite_sdp(
        &self,
        _call: &CallRef<'_>,
        _dir: SdpDirection,
        _kind: SdpKind,
        body: &[u8],
        _now: Instant,
    ) -> Option<Vec<u8>> {
        Sdp::parse(body).ok().map(|s| s.rewrite(MEDIA, 40004))
    }

    fn resumed(&self, _now: Instant) -> Vec<(String, Disposition)> {
        let held = std::mem::take(&mut *self.held.lock().unwrap());
        held.into_iter()
            .map(|id| (id, Disposition::pass()))
            .collect()
    }

    fn urgent(&self, target: &str) -> bool {
        matches!(target, "911" | "112")
    }
}

struct World {
    proxy: Proxy,
    hook: Arc<FuzzHook>,
    clock: Mutex<Instant>,
}

fn world() -> &'static World {
    static W: OnceLock<World> = OnceLock::new();
    W.get_or_init(|| {
        let mut cfg = SipConfig {
            next_hop: Some(HOP.parse().expect("a literal hop")),
            trusted_peers: vec![TRUSTED.parse::<SocketAddr>().expect("literal").ip()],
            ..SipConfig::default()
        };
        // Bans would soon drop every input unparsed, and bans are not what is fuzzed here.
        cfg.flood.enabled = false;
        let hook = Arc::new(FuzzHook {
            decision: AtomicU8::new(0),
            held: Mutex::new(Vec::new()),
            plan: NumberPlan::for_country("US").expect("a known country"),
        });
        let proxy = Proxy::new(
            cfg,
            ME.parse().expect("literal"),
            hook.clone(),
            Arc::new(SipStats::default()),
        );
        World {
            proxy,
            hook,
            clock: Mutex::new(Instant::now()),
        }
    })
}

/// Every accessor the proxy, the hook and the caller-id code use.
fn read_all(m: &Message) {
    let _ = (m.is_request(), m.method(), m.status(), m.request_uri_str());
    let _ = (m.request_uri(), m.from(), m.to(), m.from_tag(), m.to_tag());
    let _ = (m.call_id(), m.cseq(), m.max_forwards(), m.top_via());
    let _ = (m.top_via_range(), m.body_bytes(), m.body_is_sdp());
    let _ = (m.header_by_name("Privacy"), m.header_by_name("User-Agent"));
    for h in [
        Hdr::Via,
        Hdr::Route,
        Hdr::RecordRoute,
        Hdr::PAssertedIdentity,
    ] {
        let _ = m.values_str(h).count();
    }
}

fn must_scan(o: &Output) {
    let roomy = Limits {
        max_size: 1 << 20,
        max_headers: 1024,
        max_line: 1 << 20,
    };
    let datagram = o.to.transport == Transport::Udp;
    if let Err(p) = Message::parse(o.data.clone(), &roomy, datagram) {
        panic!(
            "the proxy sent what it would refuse ({p:?}) to {:?}: {:?}",
            o.to,
            String::from_utf8_lossy(&o.data)
        );
    }
}

fn seeds() -> Vec<Vec<u8>> {
    common::with_selectors(common::messages())
}

fuzz_target!(
    init: common::write_seeds(seeds),
    |data: &[u8]| {
        let Some((&sel, msg)) = data.split_first() else {
            return;
        };
        let bytes = Bytes::copy_from_slice(msg);
        let datagram = sel & 1 == 0;
        if let Ok(m) = Message::parse(bytes.clone(), &Limits::default(), datagram) {
            read_all(&m);
        }
        let w = world();
        let (transport, conn) = if datagram {
            (Transport::Udp, None)
        } else {
            (Transport::Tcp, Some(1))
        };
        let addr = match (sel >> 1) & 3 {
            0 | 1 => CALLER,
            2 => HOP,
            _ => TRUSTED,
        };
        let from = Peer {
            transport,
            addr: addr.parse().expect("literal"),
            conn,
        };
        w.hook.decision.store((sel >> 3) & 3, Ordering::Relaxed);
        let now = {
            let mut c = w.clock.lock().unwrap();
            *c += Duration::from_secs(u64::from(sel >> 5));
            *c
        };
        for o in w.proxy.handle(bytes, from, now) {
            must_scan(&o);
        }
        for o in w.proxy.poll(now) {
            must_scan(&o);
        }
    }
);
