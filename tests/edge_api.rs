//! The admin API's edge and the operator's tools, held against abuse and a careless hand
//! (issue 13) over real sockets and the built binary: refused requests audited with their
//! address, wrong tokens refused with 429 per address, idle, slow and greedy connections closed,
//! control characters refused in every stored text, `/metrics` valid Prometheus text, `/ready`
//! false while the next hop answers nothing, `validate` refusing the tokens file `run` refuses,
//! and `feeds status` pointed at the agent's data directory.

#[path = "support/mod.rs"]
mod support;

use std::net::SocketAddr;
use std::process::{Command, Output, Stdio};

use serde_json::{json, Value};
use support::agent::{self, Harness};
use support::api::{tempdir, Agent};
use support::http::{self, enc, request, request_on, Resp, ADMIN, READER, WRITER};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// A connection to the agent from `from` (any 127.0.0.0/8 address is this host on Linux), so
/// that one test can be two clients.
async fn connect_from(from: &str, to: SocketAddr) -> TcpStream {
    let s = TcpSocket::new_v4().unwrap();
    s.bind(format!("{from}:0").parse().unwrap()).unwrap();
    s.connect(to).await.unwrap()
}

async fn req_from(a: &Agent, from: &str, method: &str, path: &str, token: Option<&str>) -> Resp {
    request_on(connect_from(from, a.addr).await, method, path, token, b"").await
}

/// Every audit record the admin token can read.
async fn audit(a: &Agent) -> Vec<Value> {
    let r = a.get("/v1/audit?limit=1000&kind=all", ADMIN).await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.json()["records"].as_array().unwrap().clone()
}

fn refusals(records: &[Value]) -> Vec<&Value> {
    records.iter().filter(|r| r["what"] == "refused").collect()
}

#[tokio::test]
async fn refused_requests_are_audited_with_their_address() {
    let dir = tempdir();
    let a = Agent::start(dir.path()).await;
    let entry = json!({"pattern": "+12025550143", "action": "block", "reason": "r"}).to_string();
    let none = a
        .req("POST", "/v1/lists/ops/entries", None, entry.as_bytes())
        .await;
    assert_eq!(none.status, 401);
    let wrong = req_from(
        &a,
        "127.0.0.3",
        "GET",
        "/v1/lists",
        Some("no-such-token-xxxxxxxx"),
    )
    .await;
    assert_eq!(wrong.status, 401);
    let low = a.req("POST", "/v1/reload", Some(WRITER), b"").await;
    assert_eq!(low.status, 403);
    let ok = a
        .req(
            "POST",
            "/v1/lists/ops/entries",
            Some(WRITER),
            entry.as_bytes(),
        )
        .await;
    assert_eq!(ok.status, 201, "{}", ok.text);

    let records = audit(&a).await;
    let refused = refusals(&records);
    assert_eq!(refused.len(), 3, "{records:#?}");
    let addr = |r: &Value| r["source"].as_str().unwrap().parse::<SocketAddr>().unwrap();
    let (r0, r1, r2) = (refused[0], refused[1], refused[2]);
    assert_eq!(
        (
            &r0["who"],
            &r0["after"]["why"],
            &r0["after"]["status"],
            &r0["after"]["method"]
        ),
        (
            &json!(""),
            &json!("missing token"),
            &json!(401),
            &json!("POST")
        )
    );
    assert_eq!(r0["after"]["path"], "/v1/lists/ops/entries");
    assert_eq!(addr(r0).ip().to_string(), "127.0.0.1");
    assert_eq!(r1["after"]["why"], "unknown token");
    assert_eq!(addr(r1).ip().to_string(), "127.0.0.3");
    assert_eq!(
        (&r2["who"], &r2["after"]["why"]),
        (&json!("bot"), &json!("role admin needed"))
    );
    // A refusal is no change of any list: it names none, and the entry's own record follows.
    assert!(refused
        .iter()
        .all(|r| r["list"] == "" && r["pattern"].is_null()));
    let add = records.iter().find(|r| r["what"] == "add").unwrap();
    assert_eq!((&add["who"], &add["list"]), (&json!("bot"), &json!("ops")));
    assert_eq!(addr(add).ip().to_string(), "127.0.0.1", "{add}");
    // The history of the lists is the changes alone; the refusals are asked for by kind.
    let changes = a.get("/v1/audit", ADMIN).await.json()["records"].clone();
    assert_eq!(changes.as_array().unwrap().len(), 1, "{changes}");
    let only = a.get("/v1/audit?kind=refused", ADMIN).await.json()["records"].clone();
    assert_eq!(only.as_array().unwrap().len(), 3, "{only}");
    assert_eq!(a.get("/v1/audit?kind=some", ADMIN).await.status, 400);
    a.stop().await;
}

#[tokio::test]
async fn wrong_tokens_get_an_address_refused_with_429_and_no_one_else() {
    let dir = tempdir();
    let a = Agent::start_with(dir.path(), |c| {
        c.max_auth_failures = 3;
        c.auth_ban_secs = 600;
    })
    .await;
    let guess = |i: usize| format!("guess-number-{i:012}");
    for i in 0..4 {
        let r = a.req("GET", "/v1/lists", Some(&guess(i)), b"").await;
        assert_eq!(r.status, 401, "guess {i}: {}", r.text);
    }
    // The fifth attempt is not even looked at, and neither is a good token from there.
    for token in [guess(4).as_str(), ADMIN] {
        let r = a.req("GET", "/v1/lists", Some(token), b"").await;
        assert_eq!(r.status, 429, "{}", r.text);
        let err = r.json()["error"].as_str().unwrap().to_string();
        assert!(err.starts_with("too many wrong or missing tokens"), "{err}");
        let retry = r
            .headers
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("retry-after: ")
                    .map(str::to_string)
            })
            .expect("Retry-After");
        assert!(
            (1..=600).contains(&retry.trim().parse::<u64>().unwrap()),
            "{retry}"
        );
    }
    // A feed's own token is no way around it.
    assert_eq!(
        a.req("GET", "/v1/feeds/x", Some(ADMIN), b"").await.status,
        429
    );
    // Monitoring still answers, and another address is untouched.
    assert_eq!(a.req("GET", "/health", None, b"").await.status, 200);
    let other = req_from(&a, "127.0.0.2", "GET", "/v1/lists", Some(READER)).await;
    assert_eq!(other.status, 200, "{}", other.text);
    let m = a.req("GET", "/metrics", None, b"").await.text;
    let rate_limited = "scamguard_api_requests_total{outcome=\"rate_limited\"}";
    assert_eq!(http::metric(&m, rate_limited), 3);
    assert_eq!(http::metric(&m, "scamguard_api_refused_sources"), 1);
    // The attempt that crossed the limit is on record, with how long the address is refused.
    let records = audit_from(&a, "127.0.0.2").await;
    let refused = refusals(&records);
    assert_eq!(refused.len(), 4, "{records:#?}");
    assert_eq!(refused[3]["after"]["refused_for_secs"], 600);
    a.stop().await;
}

/// The audit trail read from another address (the usual one may be refused).
async fn audit_from(a: &Agent, from: &str) -> Vec<Value> {
    let r = req_from(
        a,
        from,
        "GET",
        "/v1/audit?limit=1000&kind=refused",
        Some(ADMIN),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.json()["records"].as_array().unwrap().clone()
}

/// What the server sent on `s` until it closed the connection: nothing, for a connection it
/// refused or dropped (a reset counts as nothing).
async fn until_closed(mut s: TcpStream) -> String {
    let mut raw = Vec::new();
    let read = tokio::time::timeout(support::WAIT, s.read_to_end(&mut raw)).await;
    assert!(read.is_ok(), "the server never closed the connection");
    String::from_utf8_lossy(&raw).into_owned()
}

#[tokio::test]
async fn one_address_cannot_take_every_connection() {
    let dir = tempdir();
    let a = Agent::start_with(dir.path(), |c| {
        c.max_connections = 4;
        c.max_connections_per_source = 2;
    })
    .await;
    // Two idle connections from one address: its share.
    let idle = [
        connect_from("127.0.0.1", a.addr).await,
        connect_from("127.0.0.1", a.addr).await,
    ];
    let mut third = connect_from("127.0.0.1", a.addr).await;
    let _ = third
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await;
    let got = until_closed(third).await;
    assert!(
        !got.contains("HTTP/1.1"),
        "the third connection was served: {got:?}"
    );
    // Another address is served meanwhile.
    assert_eq!(
        req_from(&a, "127.0.0.2", "GET", "/health", None)
            .await
            .status,
        200
    );
    let m = req_from(&a, "127.0.0.2", "GET", "/metrics", None)
        .await
        .text;
    assert_eq!(
        http::metric(&m, "scamguard_api_connections_refused_total"),
        1
    );
    // Once the idle ones go, the address is served again.
    drop(idle);
    let addr = a.addr;
    support::eventually("the address is served again", || async move {
        let mut s = connect_from("127.0.0.1", addr).await;
        let _ = s
            .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await;
        until_closed(s).await.starts_with("HTTP/1.1 200")
    })
    .await;
    a.stop().await;
}

#[tokio::test]
async fn idle_and_half_sent_requests_are_closed_and_slow_bodies_get_408() {
    let dir = tempdir();
    let a = Agent::start_with(dir.path(), |c| {
        c.header_timeout_secs = 1;
        c.body_timeout_secs = 1;
    })
    .await;
    // Nothing sent at all, and headers never finished: both closed without an answer.
    let idle = TcpStream::connect(a.addr).await.unwrap();
    let mut half = TcpStream::connect(a.addr).await.unwrap();
    half.write_all(b"GET /v1/lists HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    assert_eq!(until_closed(idle).await, "");
    assert_eq!(until_closed(half).await, "");
    // A body that stops short: 408, and the connection closes (the rest is never a request).
    let mut slow = TcpStream::connect(a.addr).await.unwrap();
    slow.write_all(
        format!(
            "POST /v1/lists/ops/entries HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {WRITER}\r\n\
             Content-Length: 100\r\n\r\n{{\"pattern\":"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let got = until_closed(slow).await;
    assert!(got.starts_with("HTTP/1.1 408"), "{got}");
    assert!(
        got.to_ascii_lowercase().contains("connection: close"),
        "{got}"
    );
    assert!(
        got.contains("the request body did not arrive within 1 s"),
        "{got}"
    );
    let m = a.req("GET", "/metrics", None, b"").await.text;
    let timeouts = |part: &str| {
        http::metric(
            &m,
            &format!("scamguard_api_read_timeouts_total{{part=\"{part}\"}}"),
        )
    };
    assert_eq!((timeouts("header"), timeouts("body")), (2, 1));
    // Nothing was written.
    let page = a.get("/v1/lists/ops/entries", READER).await;
    assert_eq!(page.json()["entries"], json!([]));
    a.stop().await;
}

#[tokio::test]
async fn control_characters_are_refused_in_every_stored_text() {
    let dir = tempdir();
    let a = Agent::start(dir.path()).await;
    let post = |path: &'static str, body: String| {
        let a = &a;
        async move { a.req("POST", path, Some(WRITER), body.as_bytes()).await }
    };
    // (path, body, what the error must say)
    let cases = [
        (
            "/v1/lists/ops/entries",
            json!({"pattern": "+12025550143", "action": "block", "reason": "a\u{0}b"}).to_string(),
            "entry 1: reason holds a control character (U+0000)",
        ),
        (
            "/v1/lists/ops/entries",
            json!([
                {"pattern": "+12025550143", "action": "block"},
                {"pattern": "+12025550144", "action": "block", "source": "x\r\nVia: y"},
            ])
            .to_string(),
            "entry 2: source holds a control character (U+000D)",
        ),
    ];
    for (path, body, want) in cases {
        let r = post(path, body).await;
        assert_eq!(r.status, 400, "{path}: {}", r.text);
        let err = r.json()["error"].as_str().unwrap().to_string();
        assert!(err.starts_with(want), "{err}");
    }
    // An import's defaults come from the query; its lines from the body.
    let r = a
        .req(
            "POST",
            &format!(
                "/v1/lists/ops/import?format=plain&reason={}",
                enc("bad\u{0}")
            ),
            Some(WRITER),
            b"+12025550143\n",
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(r.json()["error"]
        .as_str()
        .unwrap()
        .starts_with("query parameter reason holds"));
    let csv = "pattern,action,category,reason\n+12025550143,block,scam,\"tab\there\"\n";
    let r = a
        .req(
            "POST",
            "/v1/lists/ops/import?format=csv",
            Some(WRITER),
            csv.as_bytes(),
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.text);
    assert_eq!(
        r.json()["details"][0],
        "import.csv:2: reason holds a control character (U+0009); expected printable text"
    );
    // Nothing of it was stored.
    let page = a.get("/v1/lists/ops/entries", READER).await;
    assert_eq!(page.json()["entries"], json!([]), "{}", page.text);
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_characters_are_refused_in_reports() {
    let dir = tempdir();
    let tokens = dir.path().join("tokens");
    std::fs::write(
        &tokens,
        format!("bot write {WRITER}\nviewer read {READER}\n"),
    )
    .unwrap();
    let h = Harness::start_with(&[], move |c| c.api.tokens_file = Some(tokens)).await;
    let report = json!([
        {"caller": "+12025550143", "callee": "+12025550100", "category": "scam", "reporter": "a"},
        {"caller": "+12025550143", "callee": "+12025550100", "category": "scam",
         "reporter": "app\u{1b}[1m"},
    ]);
    let api = h.agent.api_addr;
    let body = report.to_string();
    let r = request(api, "POST", "/v1/reports", Some(WRITER), body.as_bytes()).await;
    assert_eq!(r.status, 400, "{}", r.text);
    let err = r.json()["error"].as_str().unwrap().to_string();
    assert!(
        err.starts_with("report 2: reporter holds a control character (U+001B)"),
        "{err}"
    );
    let r = request(
        api,
        "GET",
        "/v1/reports?caller=%2B12025550143",
        Some(READER),
        b"",
    )
    .await;
    assert_eq!(r.json()["reports"], json!([]), "{}", r.text);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_valid_prometheus_text() {
    // The whole agent, with media on, so every collector it has is rendered.
    let h = Harness::start(&[(
        "[media]\n# Anchor the media of warned calls and speak a warning to the callee when they answer.\nenabled = false",
        "[media]\nenabled = true",
    )])
    .await;
    // Some traffic first, so labelled series (lists hit, refusals) exist too.
    let inv = agent::invite(
        "UDP",
        h.sip(),
        h.up_port(),
        "metrics@itest",
        "z9hG4bKmetrics",
        "<sip:+12025550143@127.0.0.1>;tag=m",
        "+12025550100",
        "",
        "",
    );
    h.send_up(&inv).await;
    let r = agent::recv_final(&h.up).await;
    assert_eq!(r.status(), Some(603));
    let _ = request(h.agent.api_addr, "GET", "/v1/lists", Some("nope"), b"").await;
    let r = http::get(h.agent.api_addr, "/metrics", None).await;
    let (code, text) = (r.status, r.text);
    assert_eq!(code, 200);
    let problems = scamguard::metrics::problems(&text);
    assert!(problems.is_empty(), "{problems:#?}\n{text}");
    assert!(text.contains("scamguard_store_rule_entries "), "{text}");
    assert!(text.contains("scamguard_list_hits_total{list="), "{text}");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_is_false_while_the_next_hop_answers_nothing() {
    let h = Harness::start_with(&[], |c| {
        // Timer B at 64 T1: a silent next hop times a call out in about a second.
        c.sip.t1_ms = 20;
        c.sip.tick_ms = 5;
        c.health.next_hop_timeouts = 2;
    })
    .await;
    let api = h.agent.api_addr;
    let call = |n: usize| {
        agent::invite(
            "UDP",
            h.sip(),
            h.up_port(),
            &format!("dead{n}@itest"),
            &format!("z9hG4bKdead{n}"),
            &format!("<sip:+14155552671@127.0.0.1>;tag=d{n}"),
            "+12025550100",
            "",
            "",
        )
    };
    // The caller's final answer to call `n` (not a retransmission of an earlier one), ACKed.
    let final_of = |n: usize| {
        let h = &h;
        async move {
            loop {
                let r = agent::recv_final(&h.up).await;
                if r.hdr("Call-ID") == Some(format!("dead{n}@itest").as_str()) {
                    let ack = agent::ack_for(h.up_port(), &call(n), &r);
                    h.send_up(&ack).await;
                    return r;
                }
            }
        }
    };
    assert_eq!(http::get(api, "/ready", None).await.status, 200);
    for n in 0..2 {
        h.send_up(&call(n)).await;
        let r = final_of(n).await;
        assert_eq!(r.status(), Some(408), "{}", r.text);
    }
    let r = http::get(api, "/ready", None).await;
    assert_eq!(r.status, 503, "{}", r.text);
    let v = r.json();
    assert_eq!(v["ready"], false);
    let why = v["reasons"][0].as_str().unwrap();
    let hop = h.down.local_addr().unwrap();
    assert!(
        why.starts_with(&format!("next hop {hop} answers nothing: the last 2 calls")),
        "{why}"
    );
    // The next hop answers a call (busy is an answer): ready again.
    h.send_up(&call(2)).await;
    let inv = loop {
        let (m, _) = agent::recv(&h.down).await;
        if m.hdr("Call-ID") == Some("dead2@itest") {
            break m;
        }
    };
    h.send_down(&agent::reply(&inv, 486, "Busy Here", "b", "", ""))
        .await;
    assert_eq!(final_of(2).await.status(), Some(486));
    support::eventually("ready again", || async move {
        http::get(api, "/ready", None).await.status == 200
    })
    .await;
    h.stop().await;
}

// -------------------------------------------------------------------------------------------
// The binary

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_scamguard"))
}

/// Run the binary to its end; one that is still running after the harness's bound is killed
/// and fails the test (an agent that started when it should have refused).
fn run_to_end(args: &[&str]) -> Output {
    let mut child = bin()
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let end = std::time::Instant::now() + support::WAIT;
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > end {
            let _ = child.kill();
            panic!("scamguard {args:?} did not end");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn validate_refuses_the_tokens_file_that_run_refuses() {
    let dir = tempdir();
    let lists = dir.path().join("lists");
    std::fs::create_dir_all(&lists).unwrap();
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, "# ops\nops root aaaaaaaaaaaaaaaaaaaa\n").unwrap();
    let missing = dir.path().join("no-tokens");
    let config = |tokens: &std::path::Path| {
        let c = dir.path().join("scamguard.toml");
        std::fs::write(
            &c,
            format!(
                "[screening]\ndefault_country = \"US\"\n[lists]\ndir = \"{}\"\n[store]\n\
                 data_dir = \"{}\"\n[sip]\nlisten = \"127.0.0.1:0\"\nnext_hop = \"127.0.0.1:9\"\n\
                 [api]\nlisten = \"127.0.0.1:0\"\ntokens_file = \"{}\"\n",
                lists.display(),
                dir.path().join("data").display(),
                tokens.display()
            ),
        )
        .unwrap();
        c.display().to_string()
    };
    for (file, want) in [
        (
            &tokens,
            format!("{}:2: role \"root\" unknown", tokens.display()),
        ),
        (
            &missing,
            format!("api.tokens_file: {}: ", missing.display()),
        ),
    ] {
        let c = config(file);
        for cmd in ["validate", "run"] {
            let o = run_to_end(&[cmd, "--config", &c]);
            assert!(!o.status.success(), "{cmd} passed: {}", text(&o));
            assert!(text(&o).contains(&want), "{cmd}: {}", text(&o));
        }
    }
}

#[test]
fn feeds_status_reads_the_data_directory_it_is_pointed_at() {
    let dir = tempdir();
    let data = dir.path().join("agent-data");
    let db = scamguard::lists::store::FeedsDb::open(&data).unwrap();
    db.record_error(
        "partner",
        "http://127.0.0.1:9/v1/feeds/x",
        "refused",
        1_700_000_000,
    )
    .unwrap();
    drop(db);
    // A config naming another directory: --data (or --data-dir) wins, as it does for `run`.
    let config = dir.path().join("scamguard.toml");
    std::fs::write(&config, "[store]\ndata_dir = \"/nonexistent/elsewhere\"\n").unwrap();
    let config = config.display().to_string();
    let data_s = data.display().to_string();
    for args in [
        vec!["feeds", "status", "--data", &data_s],
        vec!["feeds", "status", "--data-dir", &data_s],
        vec!["feeds", "status", "--config", &config, "--data", &data_s],
    ] {
        let o = run_to_end(&args);
        assert!(o.status.success(), "{args:?}: {}", text(&o));
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(
            out.starts_with("partner  http://127.0.0.1:9/v1/feeds/x\n"),
            "{out}"
        );
        assert!(
            out.contains("  last error    2023-11-14T22:13:20Z (refused)"),
            "{out}"
        );
    }
    // A directory with no feeds database is named, and left as it was.
    let wrong = dir.path().join("wrong");
    let o = run_to_end(&["feeds", "status", "--data", &wrong.display().to_string()]);
    assert!(!o.status.success());
    assert!(
        text(&o).contains(&format!(
            "{}: no such file",
            wrong.join("feeds.db").display()
        )),
        "{}",
        text(&o)
    );
    assert!(!wrong.exists());
    // Neither flag: clap says what is missing.
    let o = run_to_end(&["feeds", "status"]);
    assert!(!o.status.success());
    assert!(text(&o).contains("--config"), "{}", text(&o));
}
