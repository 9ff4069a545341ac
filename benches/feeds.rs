//! Subscriber-side cost of feeds: checking (signature, JSON, validation) and applying
//! (SQLite persist + index rebuild) a 1,000,000-entry snapshot, then a 10,000-entry increment
//! on top of it. Prints the figures; `cargo bench --bench feeds`.

use std::time::Instant;

use base64::Engine;
use scamguard::lists::feeds::{
    check_answer, sign, FeedBody, FeedConfig, FeedEntry, FeedRules, SigningKeyHolder, Tombstone,
};

fn entry(i: u64) -> FeedEntry {
    FeedEntry {
        pattern: format!("+1{}", 2_000_000_000 + i),
        action: "block".into(),
        category: "scam".into(),
        reason: "reported by partner".into(),
        source: "honeypot".into(),
        first_seen: 1_700_000_000,
        last_seen: 1_700_000_000 + i as i64,
        expires: None,
    }
}

fn main() {
    let key = SigningKeyHolder(ed25519_key());
    let dir = tempfile::tempdir().unwrap();
    let cfg = FeedConfig {
        name: "partner".into(),
        url: "http://127.0.0.1:1/v1/feeds/partner".into(),
        public_key: base64::engine::general_purpose::STANDARD
            .encode(key.0.verifying_key().as_bytes()),
        max_entries: 2_000_000,
        ..FeedConfig::default()
    };
    let rules = FeedRules::open(dir.path(), std::slice::from_ref(&cfg)).unwrap();
    let pk = key.0.verifying_key();

    for (label, version, full, since, entries, removed) in [
        (
            "snapshot 1,000,000 entries",
            10u64,
            true,
            None,
            (0..1_000_000).map(entry).collect::<Vec<_>>(),
            vec![],
        ),
        (
            "increment 10,000 (5,000 puts, 5,000 tombstones)",
            11,
            false,
            Some(10),
            (1_000_000..1_005_000).map(entry).collect(),
            (0..5_000)
                .map(|i| Tombstone {
                    pattern: entry(i).pattern,
                    why: "remove".into(),
                })
                .collect(),
        ),
    ] {
        let body = serde_json::to_vec(&FeedBody {
            feed: "partner".into(),
            version,
            full,
            since,
            entries,
            removed,
        })
        .unwrap();
        let sig = sign(&key.0, version, &body);
        let have = rules.status()[0].version;
        let t0 = Instant::now();
        let checked = check_answer(
            &pk,
            have,
            Some(&version.to_string()),
            Some(&sig),
            &body,
            2_000_000,
        )
        .unwrap();
        let t1 = Instant::now();
        rules.apply("partner", checked, None).unwrap();
        let t2 = Instant::now();
        println!(
            "feeds/{label}: body {:.1} MB, check (verify + parse + validate) {:.3} s, apply (persist + rebuild) {:.3} s, total {:.3} s, entries now {}",
            body.len() as f64 / 1e6,
            (t1 - t0).as_secs_f64(),
            (t2 - t1).as_secs_f64(),
            (t2 - t0).as_secs_f64(),
            rules.status()[0].entries
        );
    }
}

fn ed25519_key() -> scamguard::lists::feeds::SigningKey {
    let dir = tempfile::tempdir().unwrap();
    scamguard::lists::feeds::keygen(dir.path()).unwrap();
    scamguard::lists::feeds::load_signing_key(&dir.path().join("feed.key")).unwrap()
}
