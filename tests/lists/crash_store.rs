//! Durability under `kill -9`: a child process (this test binary re-run as `crash_child`) writes
//! to a real store and prints an ack line after each write returned; the parent SIGKILLs it at a
//! random moment, reopens the store and checks that every acknowledged write is there, that an
//! interrupted import is wholly absent (and a finished one wholly present), and that the store
//! still opens (quick_check passes).

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::support::test_name;
use scamguard::lists::store::{Store, StoreConfig, StoredEntry};
use scamguard::screening::EntryAction;

const IMPORT_SIZE: u64 = 1_000_000;
const ENV_MODE: &str = "SCAMGUARD_CRASH_MODE";
const ENV_DIR: &str = "SCAMGUARD_CRASH_DIR";

fn cfg(dir: &Path) -> StoreConfig {
    StoreConfig {
        data_dir: dir.to_path_buf(),
        ..StoreConfig::default()
    }
}

fn entry(pattern: String, reason: &str) -> StoredEntry {
    StoredEntry {
        list: String::new(),
        pattern,
        action: EntryAction::Block,
        category: "scam".into(),
        reason: reason.into(),
        source: "crash-test".into(),
        expires: None,
        created: 0,
        updated: 0,
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// The child side. Not a test of its own: run only by the parent with the environment set.
#[test]
#[ignore = "child process of crash_store_rounds"]
fn crash_child() {
    let (Ok(mode), Ok(dir)) = (std::env::var(ENV_MODE), std::env::var(ENV_DIR)) else {
        return;
    };
    let store = Store::open(&cfg(Path::new(&dir))).expect("child opens the store");
    let mut out = std::io::stdout().lock();
    let mut ack = |line: String| {
        // The test harness prints its own text on the same line: mark ours.
        writeln!(out, "\nACK {line}").unwrap();
        out.flush().unwrap();
    };
    ack("start".into());
    if let Some(list) = mode.strip_prefix("import:") {
        let entries = (0..IMPORT_SIZE).map(|i| entry(format!("+1777{i:07}"), list));
        store
            .import("crash", list, entries, false, now(), "crash test", |_| {})
            .expect("import");
        ack("done".into());
    } else {
        let start: u64 = mode.strip_prefix("singles:").unwrap().parse().unwrap();
        for i in start.. {
            store
                .upsert(
                    "crash",
                    "singles",
                    &[entry(format!("+1555{i:07}"), "single")],
                    now(),
                )
                .expect("upsert");
            ack(format!("add {i}"));
            // Remove only what this child added, so an unacknowledged removal is always one
            // the parent knows may have happened.
            if i % 7 == 3 && i - 3 >= start {
                let gone = store
                    .remove("crash", "singles", &format!("+1555{:07}", i - 3), now())
                    .expect("remove");
                if gone.is_some() {
                    ack(format!("del {}", i - 3));
                }
            }
        }
    }
}

fn spawn(mode: &str, dir: &Path) -> (Child, mpsc::Receiver<String>) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            &test_name(module_path!(), "crash_child"),
            "--nocapture",
            "--test-threads=1",
        ])
        .env(ENV_MODE, mode)
        .env(ENV_DIR, dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let Some(ack) = line.split_once("ACK ").map(|(_, a)| a.to_string()) else {
                continue;
            };
            if tx.send(ack).is_err() {
                break;
            }
        }
    });
    (child, rx)
}

fn wait_for(rx: &mpsc::Receiver<String>, want: &str, limit: Duration) -> Vec<String> {
    let end = Instant::now() + limit;
    let mut seen = Vec::new();
    while let Ok(l) = rx.recv_timeout(end.saturating_duration_since(Instant::now())) {
        let done = l == want;
        seen.push(l);
        if done {
            return seen;
        }
    }
    panic!("child never printed {want:?}; saw {seen:?}");
}

/// Kill with SIGKILL and collect every line the child printed before it died.
fn kill(mut child: Child, rx: mpsc::Receiver<String>) -> Vec<String> {
    child.kill().unwrap(); // SIGKILL on Unix
    child.wait().unwrap();
    rx.iter().collect()
}

#[test]
fn crash_store_rounds() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let started = Instant::now();

    // One uninterrupted import first: it must be whole, and its time bounds the kill moments.
    let d0 = d.join("full");
    let (child, rx) = spawn("import:bulk0", &d0);
    wait_for(&rx, "start", Duration::from_secs(60));
    let t0 = Instant::now();
    wait_for(&rx, "done", Duration::from_secs(300));
    let import_time = t0.elapsed();
    kill(child, rx);
    eprintln!("import of {IMPORT_SIZE} entries took {import_time:?}");
    {
        let s = Store::open(&cfg(&d0)).unwrap();
        assert_eq!(count(&s, "bulk0"), IMPORT_SIZE);
    }

    let mut rounds = 1;
    let mut interrupted = 0;
    let mut finished = 1;
    // Killed imports, at random moments within the import's duration (and a little past). Each
    // round has its own store (opening runs quick_check, which reads the whole file) holding
    // entries written before that must survive.
    for r in 1..=5 {
        let rd = d.join(format!("import{r}"));
        {
            let s = Store::open(&cfg(&rd)).unwrap();
            let keep: Vec<_> = (0..100)
                .map(|i| entry(format!("+1666{i:07}"), "keep"))
                .collect();
            s.upsert("parent", "keep", &keep, now()).unwrap();
        }
        let (child, rx) = spawn("import:bulk", &rd);
        wait_for(&rx, "start", Duration::from_secs(60));
        let at = import_time.mul_f64(fastrand::f64() * 1.1);
        // The wait is the scenario (the kill lands at this moment), not a synchronisation.
        std::thread::sleep(at);
        let lines = kill(child, rx);
        let s = Store::open(&cfg(&rd)).expect("store opens after kill -9");
        assert_eq!(count(&s, "keep"), 100, "round {r}: earlier entries lost");
        let n = count(&s, "bulk");
        if lines.iter().any(|l| l == "done") {
            assert_eq!(n, IMPORT_SIZE, "round {r}: acknowledged import incomplete");
            finished += 1;
        } else {
            assert!(
                n == 0 || n == IMPORT_SIZE,
                "round {r}: half an import: {n} entries"
            );
            if n == 0 {
                interrupted += 1;
            }
        }
        rounds += 1;
    }

    // Killed single writes, at random moments.
    let d = &d.join("singles");
    let mut next = 0u64;
    let mut acked_add = std::collections::BTreeSet::new();
    let mut acked_del = std::collections::BTreeSet::new();
    let mut maybe_del = std::collections::BTreeSet::new();
    for _ in 0..14 {
        let (child, rx) = spawn(&format!("singles:{next}"), d);
        wait_for(&rx, "start", Duration::from_secs(60));
        // The scenario again: the kill lands at a random moment of the writes.
        std::thread::sleep(Duration::from_millis(fastrand::u64(20..400)));
        let lines = kill(child, rx);
        for l in &lines {
            if let Some(i) = l.strip_prefix("add ") {
                let i = i.parse::<u64>().unwrap();
                acked_add.insert(i);
                // The removal that follows this add may have committed without its ack.
                if i % 7 == 3 && i >= next + 3 {
                    maybe_del.insert(i - 3);
                }
            } else if let Some(i) = l.strip_prefix("del ") {
                acked_del.insert(i.parse::<u64>().unwrap());
            }
        }
        // The next child starts past anything this one may have written unacknowledged.
        next = acked_add.last().map_or(next, |l| l + 1) + 10;
        let s = Store::open(&cfg(d)).expect("store opens after kill -9");
        for i in &acked_add {
            let present = s.get("singles", &format!("+1555{i:07}")).unwrap().is_some();
            if acked_del.contains(i) {
                assert!(!present, "entry {i}: acknowledged removal undone");
            } else if !maybe_del.contains(i) {
                assert!(present, "entry {i}: acknowledged write lost");
            }
        }
        rounds += 1;
    }
    assert!(rounds >= 20);
    assert!(
        !acked_add.is_empty(),
        "no single write was acknowledged in any round"
    );
    eprintln!(
        "{rounds} rounds in {:?}: {} single writes acknowledged, {} removals; imports: {finished} finished, {interrupted} interrupted (absent)",
        started.elapsed(),
        acked_add.len(),
        acked_del.len()
    );
}

fn count(s: &Store, list: &str) -> u64 {
    s.lists()
        .unwrap()
        .into_iter()
        .find(|(n, _)| n == list)
        .map_or(0, |(_, c)| c)
}
