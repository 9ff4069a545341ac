//! Figures for the README, measured once (not a criterion loop: a million-row import is the
//! thing measured): store import time for 1,000,000 entries, compile time and resident memory
//! of the store rules with 1,000,000 and 10,000,000 entries, and the time from an API write to
//! its enforcement. Run: `cargo bench --bench store_figures` (`STORE_FIGURES_BIG=0` skips the
//! 10,000,000 step).

use std::sync::Arc;
use std::time::{Duration, Instant};

use scamguard::api::{self, ApiConfig, Checker, State};
use scamguard::lists::overlay::{Live, StoreRules};
use scamguard::lists::store::{Store, StoreConfig, StoredEntry};
use scamguard::screening::{EntryAction, Number, Rules};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn rss_mib() -> f64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|k| k.parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0)
}

fn entries(from: u64, n: u64) -> impl Iterator<Item = StoredEntry> {
    (from..from + n).map(|i| StoredEntry {
        list: String::new(),
        pattern: format!("+1{}", 2_000_000_000 + i),
        action: EntryAction::Block,
        category: "scam".into(),
        reason: "reported robocaller".into(),
        source: "bench".into(),
        expires: None,
        created: 0,
        updated: 0,
    })
}

struct NoCheck;
impl Checker for NoCheck {
    fn check(&self, _: &str, _: Option<&str>, _: Option<&str>) -> serde_json::Value {
        serde_json::Value::Null
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let big = std::env::var("STORE_FIGURES_BIG").map_or(true, |v| v != "0");
    let dir = tempfile::tempdir().unwrap();
    let cfg = StoreConfig {
        data_dir: dir.path().to_path_buf(),
        ..StoreConfig::default()
    };
    let store = Arc::new(Store::open(&cfg).unwrap());

    let t = Instant::now();
    store
        .import(
            "bench",
            "one",
            entries(0, 1_000_000),
            false,
            1,
            "bench",
            |_| {},
        )
        .unwrap();
    let import_1m = t.elapsed();
    println!(
        "store import, 1,000,000 entries, one transaction: {:.2} s ({:.0} entries/s)",
        import_1m.as_secs_f64(),
        1e6 / import_1m.as_secs_f64()
    );

    let t = Instant::now();
    drop(Store::open(&cfg).unwrap());
    println!(
        "open with quick_check, 1,000,000 entries: {:.2} s",
        t.elapsed().as_secs_f64()
    );

    let base = rss_mib();
    let t = Instant::now();
    let rules = Arc::new(StoreRules::load(&store).unwrap());
    println!(
        "compile store rules, 1,000,000 entries: {:.2} s, resident +{:.0} MiB (process {:.0} MiB)",
        t.elapsed().as_secs_f64(),
        rss_mib() - base,
        rss_mib()
    );
    let n = Number::parse_e164("+12000500000").unwrap();
    assert!(rules.lookup(n, 2).is_some());
    let t = Instant::now();
    let mut hits = 0u64;
    for i in 0..1_000_000u64 {
        let n = Number::parse_e164(&format!("+1{}", 2_000_000_000 + i * 7 % 2_000_000)).unwrap();
        hits += rules.lookup(n, 2).is_some() as u64;
    }
    println!(
        "lookup through store rules (half hits, number formatting included): {:.0} ns each ({hits} hits)",
        t.elapsed().as_nanos() as f64 / 1e6
    );

    // Time from an API write to enforcement.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let live = Arc::new(Live::new(store.clone(), rules.clone(), None));
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, "bench write bench-token-0123456789\n").unwrap();
    let state = Arc::new(
        State::new(
            ApiConfig {
                listen: "127.0.0.1:0".into(),
                tokens_file: Some(tokens),
                ..ApiConfig::default()
            },
            live.clone(),
            Arc::new(NoCheck),
            vec![],
        )
        .unwrap(),
    );
    let mut lat: Vec<Duration> = rt.block_on(async {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(api::run(l, state, std::future::pending()));
        let mut lat = Vec::new();
        for i in 0..200u64 {
            let p = format!("+44207946{i:04}");
            let body = format!(r#"{{"pattern":"{p}","action":"block","category":"scam","reason":"b"}}"#);
            let req = format!(
                "POST /v1/lists/live/entries HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer bench-token-0123456789\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            let num = Number::parse_e164(&p).unwrap();
            let t = Instant::now();
            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
            s.write_all(req.as_bytes()).await.unwrap();
            // Enforced = the hot-path lookup matches; poll it while the request is in flight.
            let rules = rules.clone();
            let seen = tokio::task::spawn_blocking(move || {
                let t2 = Instant::now();
                while rules.lookup(num, 2).is_none() {
                    if t2.elapsed() > Duration::from_secs(5) {
                        return None;
                    }
                    std::hint::spin_loop();
                }
                Some(Instant::now())
            });
            let mut resp = Vec::new();
            s.read_to_end(&mut resp).await.unwrap();
            assert!(resp.starts_with(b"HTTP/1.1 201"), "{}", String::from_utf8_lossy(&resp));
            let at = seen.await.unwrap().expect("write never enforced");
            lat.push(at - t);
        }
        lat
    });
    lat.sort();
    println!(
        "API write to enforcement (durable fsync included), 200 writes: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        lat[100].as_secs_f64() * 1e3,
        lat[197].as_secs_f64() * 1e3,
        lat[199].as_secs_f64() * 1e3
    );

    if big {
        let t = Instant::now();
        store
            .import(
                "bench",
                "ten",
                entries(1_000_000, 9_000_000),
                false,
                1,
                "bench",
                |_| {},
            )
            .unwrap();
        println!(
            "store import, 9,000,000 more entries: {:.1} s",
            t.elapsed().as_secs_f64()
        );
        drop(live);
        drop(rules);
        let t = Instant::now();
        drop(Store::open(&cfg).unwrap());
        println!(
            "open with quick_check, 10,000,000 entries: {:.1} s",
            t.elapsed().as_secs_f64()
        );
        let base = rss_mib();
        let t = Instant::now();
        let rules = StoreRules::load(&store).unwrap();
        println!(
            "compile store rules, 10,000,000 entries: {:.1} s, resident +{:.0} MiB (process {:.0} MiB)",
            t.elapsed().as_secs_f64(),
            rss_mib() - base,
            rss_mib()
        );
        assert!(rules
            .lookup(Number::parse_e164("+12009999999").unwrap(), 2)
            .is_some());
    }
}
