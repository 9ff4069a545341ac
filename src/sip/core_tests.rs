//! Sans-IO tests of the proxy core: the RFC 4475 table and transaction behaviour, driven with
//! bytes and a virtual clock.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::core::{Output, Peer, Proxy};
use super::hook::{CallEvent, Decision, Hook, NewCall, SdpDirection};
use super::msg::{Limits, Message};
use super::{SipConfig, SipStats, Transport};

#[derive(Default)]
pub(crate) struct TestHook {
    pub decision: Mutex<Option<Decision>>,
    pub calls: Mutex<Vec<String>>,
    pub events: Mutex<Vec<(String, CallEvent)>>,
}

impl Hook for TestHook {
    fn new_call(&self, call: &NewCall<'_>) -> Decision {
        self.calls.lock().unwrap().push(call.call_id.to_string());
        self.decision
            .lock()
            .unwrap()
            .clone()
            .unwrap_or_else(Decision::pass)
    }
    fn call_event(&self, call_id: &str, event: CallEvent) {
        self.events
            .lock()
            .unwrap()
            .push((call_id.to_string(), event));
    }
    fn rewrite_sdp(&self, _call_id: &str, dir: SdpDirection, body: &[u8]) -> Option<Vec<u8>> {
        let mut b = body.to_vec();
        b.extend_from_slice(format!("a=x-{dir:?}\r\n").as_bytes());
        Some(b)
    }
}

const ME: &str = "127.0.0.1:5060";
const HOP: &str = "127.0.0.1:5070";
const UAC: &str = "127.0.0.1:5080";

fn proxy(hook: Arc<TestHook>) -> Proxy {
    let cfg = SipConfig {
        next_hop: Some(HOP.parse().unwrap()),
        ..SipConfig::default()
    };
    Proxy::new(
        cfg,
        ME.parse().unwrap(),
        hook,
        Arc::new(SipStats::default()),
    )
    .unwrap()
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

/// `../shared/corpus/rfc4475` beside the crate; worktrees one level deeper look further up.
pub(crate) fn corpus_dir() -> std::path::PathBuf {
    let root = std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/corpus/rfc4475"
    ));
    if root.is_dir() {
        return root.to_path_buf();
    }
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .map(|a| a.join("shared/corpus/rfc4475"))
        .find(|p| p.is_dir())
        .unwrap_or_else(|| root.to_path_buf())
}

/// RFC 4475: what a proxy (forwarding everything) does with each torture message.
#[test]
fn rfc4475_table() {
    use Outcome::*;
    let table: &[(&str, Outcome)] = &[
        // 3.1.1 valid messages: forwarded (or answered when addressed to us).
        ("wsinv", Forwarded),
        ("intmeth", Forwarded),
        ("esc01", Forwarded),
        ("escnull", Forwarded),
        ("esc02", Forwarded),
        ("lwsdisp", Forwarded),
        ("longreq", Forwarded),
        ("dblreq", Forwarded),
        ("semiuri", Forwarded),
        ("transports", Forwarded),
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
        ("badbranch", Forwarded),
        // 3.3 application layer
        ("insuf", Dropped), // no From/To/Call-ID: no response can be built
        ("unkscm", Forwarded),
        ("novelsc", Forwarded),
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
        let p = proxy(hook);
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
