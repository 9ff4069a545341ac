//! Two whole agents (`app::start`) on loopback: A publishes a store list as a signed feed, B
//! subscribes through a small HTTP proxy that can tamper with answers or re-sign them with the
//! wrong key. Shows: A's additions and removals reach B's verdicts; forged answers are refused
//! whole while B keeps its last good state; a restarted B resumes from its persisted version.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use crate::support::eventually;
use crate::support::http::{
    enc, get, metric, metrics, request, write_tokens, Resp, READER, WRITER,
};
use scamguard::app::config::Config;
use scamguard::app::{self, Agent};
use scamguard::lists::feeds;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const FEED_TOKEN: &str = "feed-only-token-dddddddddd";

const PASS: u8 = 0;
const TAMPER: u8 = 1;
const WRONG_KEY: u8 = 2;

fn tokens(dir: &Path) -> std::path::PathBuf {
    let p = dir.join("tokens");
    write_tokens(&p);
    p
}

fn base_toml(dir: &Path) -> String {
    std::fs::create_dir_all(dir.join("lists")).unwrap();
    format!(
        r#"
[lists]
dir = "{lists}"
[store]
data_dir = "{data}"
[log]
decisions = {{ file = "{log}" }}
[sip]
listen = "127.0.0.1:0"
next_hop = "127.0.0.1:9"
[api]
listen = "127.0.0.1:0"
tokens_file = "{tokens}"
"#,
        lists = dir.join("lists").display(),
        data = dir.join("data").display(),
        log = dir.join("decisions.jsonl").display(),
        tokens = tokens(dir).display(),
    )
}

async fn start(text: &str) -> Agent {
    app::start(Config::parse("test.toml", text).unwrap())
        .await
        .unwrap()
}

async fn read(a: &Agent, path: &str) -> Resp {
    get(a.api_addr, path, Some(READER)).await
}

async fn action(a: &Agent, caller: &str) -> serde_json::Value {
    let r = read(a, &format!("/v1/check?caller={}", enc(caller))).await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.json()
}

/// A one-request-per-connection HTTP proxy in front of A that logs request lines and, by mode,
/// passes, flips one byte of the body, or replaces the signature with one by another key.
struct Proxy {
    addr: SocketAddr,
    mode: Arc<AtomicU8>,
    log: Arc<Mutex<Vec<String>>>,
}

async fn proxy(upstream: SocketAddr, wrong: Arc<feeds::SigningKeyHolder>) -> Proxy {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let mode = Arc::new(AtomicU8::new(PASS));
    let log = Arc::new(Mutex::new(Vec::new()));
    let (m, lg) = (mode.clone(), log.clone());
    tokio::spawn(async move {
        loop {
            let Ok((mut c, _)) = l.accept().await else {
                return;
            };
            let (m, lg, wrong) = (m.clone(), lg.clone(), wrong.clone());
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut b = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if c.read(&mut b).await.unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(b[0]);
                }
                let text = String::from_utf8_lossy(&head).to_string();
                lg.lock()
                    .unwrap()
                    .push(text.lines().next().unwrap_or("").to_string());
                let (first, rest) = text.split_once("\r\n").unwrap();
                let mut up = TcpStream::connect(upstream).await.unwrap();
                up.write_all(format!("{first}\r\nConnection: close\r\n{rest}").as_bytes())
                    .await
                    .unwrap();
                let mut resp = Vec::new();
                up.read_to_end(&mut resp).await.unwrap();
                let split = resp.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
                let (rh, body) = resp.split_at(split);
                let mut rh = String::from_utf8_lossy(rh).to_string();
                let mut body = body.to_vec();
                match m.load(Ordering::SeqCst) {
                    TAMPER => {
                        // Turn one digit of a number into another: same length, still valid.
                        if let Some(i) = body.windows(4).position(|w| w == b"+120") {
                            body[i + 3] = b'1';
                        }
                    }
                    WRONG_KEY => {
                        let version: u64 = rh
                            .lines()
                            .find_map(|l| l.strip_prefix("x-feed-version: "))
                            .and_then(|v| v.trim().parse().ok())
                            .unwrap_or(0);
                        let sig = feeds::sign(&wrong.0, version, &body);
                        rh = rh
                            .lines()
                            .map(|l| {
                                if l.starts_with("x-feed-signature: ") {
                                    format!("x-feed-signature: {sig}")
                                } else {
                                    l.to_string()
                                }
                            })
                            .collect::<Vec<_>>()
                            .join("\r\n")
                            + "\r\n";
                    }
                    _ => {}
                }
                let _ = c.write_all(rh.as_bytes()).await;
                let _ = c.write_all(&body).await;
                let _ = c.shutdown().await;
            });
        }
    });
    Proxy { addr, mode, log }
}

async fn add(a: &Agent, pattern: &str) {
    let e = json!({"pattern": pattern, "action": "block", "category": "scam", "reason": "partner saw it"});
    let r = request(
        a.api_addr,
        "POST",
        "/v1/lists/shared/entries",
        Some(WRITER),
        e.to_string().as_bytes(),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text);
}

/// B's count of answers of the partner's feed refused for `reason`.
async fn refused(b: &Agent, reason: &str) -> u64 {
    metric(
        &metrics(b.api_addr).await,
        &format!("scamguard_feed_refused_total{{feed=\"partner-a\",reason=\"{reason}\"}}"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_agents_share_a_signed_feed() {
    let root = tempfile::tempdir().unwrap();
    let (da, db) = (root.path().join("a"), root.path().join("b"));
    let (keys, wrong_keys) = (root.path().join("keys"), root.path().join("wrong"));
    feeds::keygen(&keys).unwrap();
    feeds::keygen(&wrong_keys).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(keys.join("feed.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let public = std::fs::read_to_string(keys.join("feed.pub")).unwrap();
    let wrong = Arc::new(feeds::SigningKeyHolder(
        feeds::load_signing_key(&wrong_keys.join("feed.key")).unwrap(),
    ));

    let a_toml = format!(
        "{}\n[publish]\nkey_file = \"{}\"\n[[publish.feeds]]\nname = \"partner\"\nlist = \"shared\"\ntokens = [\"{FEED_TOKEN}\"]\n",
        base_toml(&da),
        keys.join("feed.key").display()
    );
    let a = start(&a_toml).await;
    // Reading the feed needs a token; the feed's own token or a read token will do.
    assert_eq!(get(a.api_addr, "/v1/feeds/partner", None).await.status, 401);
    assert_eq!(read(&a, "/v1/feeds/partner").await.status, 200);
    assert_eq!(read(&a, "/v1/feeds/nope").await.status, 404);

    let px = proxy(a.api_addr, wrong).await;
    let b_toml = format!(
        "{}\n[[feeds]]\nname = \"partner-a\"\nurl = \"http://{}/v1/feeds/partner\"\npublic_key = \"{}\"\npoll_interval_secs = 1\ntoken = \"{FEED_TOKEN}\"\ntrust = \"block\"\ntimeout_secs = 5\n",
        base_toml(&db),
        px.addr,
        public.trim()
    );
    let b = start(&b_toml).await;

    // An addition on A is enforced on B, and the verdict names the partner's list.
    add(&a, "+12025550143").await;
    add(&a, "+12025550144").await;
    eventually("B blocks A's entries", || async {
        action(&b, "+12025550143").await["action"] == "block"
            && action(&b, "+12025550144").await["action"] == "block"
    })
    .await;
    let v = action(&b, "+12025550143").await;
    assert_eq!(v["reasons"][0]["list"], "partner-a", "{v}");
    let lists = read(&b, "/v1/lists").await.json();
    assert!(
        lists["lists"]
            .as_array()
            .unwrap()
            .contains(&json!({"name": "partner-a", "source": "feed", "entries": 2, "error": null})),
        "{lists}"
    );

    // A removal on A reaches B as a tombstone.
    let r = request(
        a.api_addr,
        "DELETE",
        &format!("/v1/lists/shared/entries/{}", enc("+12025550144")),
        Some(WRITER),
        b"",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    eventually("B drops the removed entry", || async {
        action(&b, "+12025550144").await["action"] == "pass"
    })
    .await;
    assert!(px.log.lock().unwrap().iter().any(|l| l.contains("since=")));

    // Tampered bodies and the wrong key are refused whole; the last good state stays.
    for (mode, reason) in [(TAMPER, "signature"), (WRONG_KEY, "signature")] {
        let before = refused(&b, reason).await;
        px.mode.store(mode, Ordering::SeqCst);
        add(&a, &format!("+1202555020{mode}")).await;
        eventually("B refuses the forged answer", || async {
            refused(&b, reason).await > before
        })
        .await;
        assert_eq!(action(&b, "+12025550143").await["action"], "block");
        assert_eq!(
            action(&b, &format!("+1202555020{mode}")).await["action"],
            "pass"
        );
        let lists = read(&b, "/v1/lists").await.json();
        let row = lists["lists"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["name"] == "partner-a")
            .unwrap()
            .clone();
        assert!(
            row["error"].as_str().unwrap().contains("signature"),
            "{row}"
        );
        assert_eq!(row["entries"], 1, "{row}");
    }
    px.mode.store(PASS, Ordering::SeqCst);
    eventually("B catches up once answers are genuine", || async {
        action(&b, "+12025550201").await["action"] == "block"
            && action(&b, "+12025550202").await["action"] == "block"
    })
    .await;

    // B restarts: its persisted state blocks at once and it resumes with `since=`.
    b.stop().await;
    let status = feeds::read_status(&db.join("data")).unwrap();
    assert_eq!(status.len(), 1);
    assert_eq!(status[0].entries, 3);
    assert!(status[0].version > 0);
    assert_eq!(status[0].last_error, None);
    let seen = px.log.lock().unwrap().len();
    let b = start(&b_toml).await;
    assert_eq!(action(&b, "+12025550143").await["action"], "block");
    eventually("restarted B polls", || async {
        px.log.lock().unwrap().len() > seen
    })
    .await;
    let first = px.log.lock().unwrap()[seen].clone();
    assert!(
        first.contains(&format!("since={}", status[0].version)),
        "restart should resume from the persisted version, sent {first:?}"
    );
    b.stop().await;
    a.stop().await;
}
