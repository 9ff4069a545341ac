//! The SIP hot path minus sockets: scanning one typical INVITE, and the whole sans-IO handling
//! of one new INVITE (scan, transaction, the real screening hook with a loaded blocklist, the
//! reply or the forwarded bytes).
//!
//! The INVITE is the one the peer harness's SIPp caller sends (P-Asserted-Identity, SDP body).
//! Every iteration of the proxy benches carries a fresh Call-ID and branch, so each one is a new
//! call and not a retransmission; the tables are emptied outside the timed part.
//!
//! Run: `cargo bench --bench sip_scan`. Knows nothing of the load harness.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};

use scamguard::app::{CallStats, DecisionLog, DispositionConfig, Screener};
use scamguard::config::LogTarget;
use scamguard::lists::{ListSet, ListsConfig};
use scamguard::screening::{BareDigits, Policy, ScreeningConfig};
use scamguard::sip::msg::{Limits, Message};
use scamguard::sip::{Peer, Proxy, SipConfig, SipStats, Transport};

const BLOCKED: &str = "+4930123456789";
const CLEAN: &str = "+4930999999999";

fn invite(caller: &str, n: u64) -> Bytes {
    let body =
        "v=0\r\no=user1 53655765 2353687637 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\n\
                t=0 0\r\nm=audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";
    Bytes::from(format!(
        "INVITE sip:service@127.0.0.1:5060 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bK-4242-{n}-0\r\n\
         From: <sip:anonymous@127.0.0.1>;tag=4242SIPpTag00{n}\r\n\
         To: <sip:service@127.0.0.1:5060>\r\n\
         Call-ID: {n}-4242@127.0.0.1\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: <sip:sipp@127.0.0.1:5080>\r\n\
         Max-Forwards: 70\r\n\
         P-Asserted-Identity: <sip:{caller}@carrier.example>\r\n\
         X-Bench-Expect: block 4930123456789\r\n\
         Subject: screening benchmark\r\n\
         Content-Type: application/sdp\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    ))
}

/// A lists directory with 100,000 exact numbers and a few prefixes (the lookup cost hardly
/// depends on the list size; `benches/lookup.rs` measures that).
fn lists_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sg-sip-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let mut text = String::from("pattern,action,category,reason\n");
    text.push_str(&format!("{BLOCKED},block,scam,bench\n"));
    for i in 0..100_000u64 {
        text.push_str(&format!("+44{},block,scam,bench\n", 7_700_000_000 + i * 7));
    }
    for p in ["+4990", "+44909", "+1900", "+2348"] {
        text.push_str(&format!("{p}*,block,premium,bench\n"));
    }
    std::fs::write(dir.join("bench.csv"), text).expect("write list");
    dir
}

fn proxy() -> (Arc<Proxy>, PathBuf) {
    let dir = lists_dir();
    let (lists, errors) = ListSet::open(ListsConfig {
        dir: dir.clone(),
        ..ListsConfig::default()
    });
    assert!(errors.is_empty(), "{errors:?}");
    let policy = Policy::from_config(&ScreeningConfig {
        default_country: "DE".into(),
        bare_digits: BareDigits::International,
        ..ScreeningConfig::default()
    })
    .expect("policy");
    // The decision log is part of the hot path's cost (a record built and queued per call);
    // its writer thread serialises to /dev/null.
    let (log, _writer) = DecisionLog::start(&LogTarget::File("/dev/null".into())).expect("log");
    let screener = Arc::new(Screener {
        lists: Arc::new(lists),
        policy,
        disposition: DispositionConfig {
            trusted_peers: vec!["127.0.0.1".parse().expect("ip")],
            ..DispositionConfig::default()
        },
        log,
        stats: Arc::new(CallStats::default()),
    });
    let cfg = SipConfig {
        listen: "127.0.0.1:5060".parse().expect("addr"),
        next_hop: Some("127.0.0.1:5070".parse().expect("addr")),
        ..SipConfig::default()
    };
    let local: SocketAddr = cfg.listen;
    let p = Proxy::new(cfg, local, screener, Arc::new(SipStats::default())).expect("proxy");
    (Arc::new(p), dir)
}

fn bench_scan(c: &mut Criterion) {
    let msg = invite(BLOCKED, 1);
    let limits = Limits::default();
    let mut g = c.benchmark_group("scan");
    g.throughput(Throughput::Bytes(msg.len() as u64));
    g.bench_function("invite", |b| {
        b.iter(|| Message::parse(black_box(msg.clone()), &limits, true).map(|m| m.headers.len()))
    });
    g.finish();
}

fn bench_proxy(c: &mut Criterion) {
    let (proxy, dir) = proxy();
    let from = Peer {
        transport: Transport::Udp,
        addr: "127.0.0.1:5080".parse().expect("addr"),
        conn: None,
    };
    let mut g = c.benchmark_group("proxy");
    g.throughput(Throughput::Elements(1));
    let mut serial = 0u64;
    for (name, caller) in [("invite_block", BLOCKED), ("invite_forward", CLEAN)] {
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut spent = Duration::ZERO;
                let mut left = iters;
                while left > 0 {
                    let n = left.min(4096);
                    left -= n;
                    let msgs: Vec<Bytes> = (0..n)
                        .map(|_| {
                            serial += 1;
                            invite(caller, serial)
                        })
                        .collect();
                    let now = Instant::now();
                    let t0 = Instant::now();
                    for m in msgs {
                        black_box(proxy.handle(m, from, now));
                    }
                    spent += t0.elapsed();
                    // Expire everything (untimed) so the tables stay at their usual size.
                    let _ = proxy.poll(now + Duration::from_secs(24 * 3600));
                }
                spent
            })
        });
    }
    g.finish();
    let _ = std::fs::remove_dir_all(dir);
}

criterion_group!(benches, bench_scan, bench_proxy);
criterion_main!(benches);
