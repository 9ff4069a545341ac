//! Parse and screen one INVITE: the hot path of a new call minus the sockets. A real agent is
//! started (`app::start`, shipped lists plus a 1,000,000-entry store list, every signal on) and
//! INVITEs are fed to its sans-IO proxy core, which scans the message, asks the screening hook,
//! builds the 603 or the forwarded INVITE, and returns the datagrams to send.
//!
//! Each iteration uses a fresh Call-ID and branch so that it is a new call, not a retransmission.

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};

use scamguard::app;
use scamguard::app::config::Config;
use scamguard::lists::store::StoredEntry;
use scamguard::screening::EntryAction;
use scamguard::sip::{Peer, Transport};

fn invite(n: u64, caller: &str) -> Bytes {
    Bytes::from(format!(
        "INVITE sip:+12025550100@127.0.0.1:5060 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bK-bench-{n}\r\n\
         From: \"Caller\" <sip:{caller}@127.0.0.1:5080>;tag=bench{n}\r\n\
         To: <sip:+12025550100@127.0.0.1:5060>\r\n\
         Call-ID: bench-{n}@127.0.0.1\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: <sip:caller@127.0.0.1:5080>\r\n\
         Max-Forwards: 70\r\n\
         Content-Type: application/sdp\r\n\
         Content-Length: 129\r\n\r\n\
         v=0\r\no=user1 53655765 2353687637 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\n\
         t=0 0\r\nm=audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
    ))
}

fn bench_invite(c: &mut Criterion) {
    let dir = std::env::temp_dir().join(format!("scamguard-bench-invite-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let root = env!("CARGO_MANIFEST_DIR");
    let text = format!(
        "[lists]\ndir = \"{root}/blocklists\"\n\
         [store]\ndata_dir = \"{d}\"\n\
         [log]\ndecisions = {{ file = \"{d}/decisions.jsonl\" }}\nlevel = \"warn\"\n\
         [sip]\nlisten = \"127.0.0.1:0\"\nnext_hop = \"127.0.0.1:9\"\nmax_transactions = 50000000\nmax_calls = 50000000\n\
         [api]\nlisten = \"127.0.0.1:0\"\n\
         [signals.brands]\nfile = \"{root}/config/brands.toml\"\n",
        d = dir.display()
    );
    let config = Config::parse("bench.toml", &text).expect("bench config");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let agent = rt.block_on(app::start(config)).expect("agent starts");
    // A million exact store entries, as a carrier would hold.
    let entries: Vec<StoredEntry> = (0..1_000_000u64)
        .map(|i| StoredEntry {
            list: "bench".into(),
            pattern: format!("+1303{i:07}"),
            action: EntryAction::Block,
            category: "scam".into(),
            reason: "bench".into(),
            source: String::new(),
            expires: None,
            created: 0,
            updated: 0,
        })
        .collect();
    agent
        .live
        .import(
            "bench",
            "bench",
            entries,
            true,
            0,
            "1,000,000 bench entries",
        )
        .expect("import");
    let proxy = agent.proxy.clone();
    let peer = Peer {
        transport: Transport::Udp,
        addr: "127.0.0.1:5080".parse().expect("addr"),
        conn: None,
    };
    let n = AtomicU64::new(0);
    let mut g = c.benchmark_group("invite");
    for (name, caller) in [
        ("blocked_603", "+12025550143"),
        ("store_blocked_603", "+13030012345"),
        ("passed_forward", "+14155552671"),
    ] {
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let msgs: Vec<Bytes> = (0..iters)
                    .map(|_| invite(n.fetch_add(1, Ordering::Relaxed), caller))
                    .collect();
                let start = Instant::now();
                for m in msgs {
                    black_box(proxy.handle(m, peer, Instant::now()));
                }
                start.elapsed()
            })
        });
    }
    g.finish();
    // The proxy holds the screener, and with it the decision log's sender: stop() waits for
    // the log writer, which ends only when every sender is gone.
    drop(proxy);
    rt.block_on(agent.stop());
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, bench_invite);
criterion_main!(benches);
