//! What operators are shipped in `deploy/`, against real peers: a real Prometheus (Debian
//! `prometheus`, which brings `promtool`) scrapes a real agent while SIPp places calls through
//! it, with a partner feed, a fleet's Redis and the media relay configured, as in production.
//!
//! Shows:
//! - `promtool check rules` accepts `deploy/prometheus/alerts.yml` and `promtool test rules` passes
//!   its unit tests (`deploy/prometheus/alerts_test.yml`);
//! - every PromQL expression of the Grafana dashboard (`deploy/grafana/scamguard.json`), with
//!   Grafana's variables put in, returns at least one series from that Prometheus: no panel reads
//!   a series the agent does not export;
//! - stopping the feed publisher the agent subscribes to makes the shipped `ScamguardFeedStale`
//!   fire for that agent (and `ScamguardDown` for the publisher, which is scraped too), as seen
//!   in Prometheus's `/api/v1/alerts`, while no other alert so much as pends for the healthy
//!   agent: the rules are loaded as shipped, nothing is tuned for the test but the agent's own
//!   poll interval.
//!
//! A missing `prometheus`, `promtool`, `sipp` or `redis-server` fails the test (scripts/test and
//! .ci/run install them): it is not a reason to skip it.

#[path = "support/mod.rs"]
mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use scamguard::app::config::Config;
use scamguard::app::fleet::FleetConfig;
use scamguard::app::{self, Agent};
use scamguard::lists::feeds::{self, FeedConfig, Trust};
use serde_json::Value;
use tokio::process::{Child, Command};

use support::agent::Harness;
use support::http::{enc, get, request, write_tokens, WRITER};
use support::{free_port, free_port_range, root, WAIT};

const FEED_TOKEN: &str = "feed-only-token-eeeeeeeeee";

/// How long the alert may take: its condition holds three poll intervals (9 s here) after the
/// publisher stops, then the rule's own `for: 1m`. Only a guard against a hang.
const ALERT_PATIENCE: Duration = Duration::from_secs(240);

/// A child process of the test, killed when dropped, its output in `log`.
fn spawn(program: &str, args: &[String], log: &Path, need: &str) -> Child {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::from(std::fs::File::create(log).unwrap()))
        .stderr(Stdio::from(
            std::fs::File::create(log.with_extension("err")).unwrap(),
        ))
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| {
            panic!("{program} is needed ({e}): apt-get install {need} (scripts/test does it)")
        })
}

/// Runs `promtool` with `args` in `dir`; it must succeed.
async fn promtool(dir: &Path, args: &[&str]) {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(dir)
        .output()
        .await
        .unwrap_or_else(|e| {
            panic!("promtool is needed ({e}): apt-get install prometheus (scripts/test does it)")
        });
    assert!(
        out.status.success(),
        "promtool {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Until `f` holds, asking again every 200 ms; fails naming `what` after `limit`.
async fn until<F, Fut>(what: &str, limit: Duration, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let end = Instant::now() + limit;
    while !f().await {
        assert!(Instant::now() < end, "never happened: {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A `redis-server` of the test's own on a free loopback port, without persistence.
struct Redis {
    _child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

async fn redis() -> Redis {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let args: Vec<String> = vec![
        "--port".into(),
        port.to_string(),
        "--bind".into(),
        "127.0.0.1".into(),
        "--save".into(),
        String::new(),
        "--appendonly".into(),
        "no".into(),
        "--dir".into(),
        dir.path().display().to_string(),
    ];
    let child = spawn(
        "redis-server",
        &args,
        &dir.path().join("redis.log"),
        "redis-server",
    );
    until("redis-server accepts connections", WAIT, || async {
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
    })
    .await;
    Redis {
        _child: child,
        port,
        _dir: dir,
    }
}

/// The publisher: an agent serving its store list `shared` as the signed feed `partner`, with
/// one entry in it. Returns it and the feed's public key.
async fn publisher(dir: &Path) -> (Agent, String) {
    std::fs::create_dir_all(dir.join("lists")).unwrap();
    feeds::keygen(&dir.join("keys")).unwrap();
    let tokens = dir.join("tokens");
    write_tokens(&tokens);
    let text = format!(
        "[lists]\ndir = \"{lists}\"\n[store]\ndata_dir = \"{data}\"\n\
         [log]\ndecisions = {{ file = \"{log}\" }}\n\
         [sip]\nlisten = \"127.0.0.1:0\"\nnext_hop = \"127.0.0.1:9\"\n\
         [api]\nlisten = \"127.0.0.1:0\"\ntokens_file = \"{tokens}\"\n\
         [publish]\nkey_file = \"{key}\"\n\
         [[publish.feeds]]\nname = \"partner\"\nlist = \"shared\"\ntokens = [\"{FEED_TOKEN}\"]\n",
        lists = dir.join("lists").display(),
        data = dir.join("data").display(),
        log = dir.join("decisions.jsonl").display(),
        tokens = tokens.display(),
        key = dir.join("keys/feed.key").display(),
    );
    let a = app::start(Config::parse("publisher.toml", &text).unwrap())
        .await
        .unwrap();
    let entry = serde_json::json!({"pattern": "+12025550177", "action": "block",
        "category": "scam", "reason": "the partner saw it"});
    let r = request(
        a.api_addr,
        "POST",
        "/v1/lists/shared/entries",
        Some(WRITER),
        entry.to_string().as_bytes(),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let public = std::fs::read_to_string(dir.join("keys/feed.pub")).unwrap();
    (a, public.trim().to_string())
}

/// The agent under watch: the shipped config and lists, its next hop a SIPp callee on
/// `next_hop`, subscribed to the publisher's feed every 3 s, in a fleet on `redis`, with
/// the media relay on a range of free ports.
async fn subject(next_hop: u16, publisher: SocketAddr, key: String, redis: &Redis) -> Harness {
    let url = format!("redis://127.0.0.1:{}", redis.port);
    let media = free_port_range(20);
    Harness::start_with(&[], |c| {
        c.sip.next_hop = Some(SocketAddr::from(([127, 0, 0, 1], next_hop)).into());
        c.feeds = vec![FeedConfig {
            name: "partner-a".into(),
            url: format!("http://{publisher}/v1/feeds/partner"),
            public_key: key,
            poll_interval_secs: 3,
            token: Some(FEED_TOKEN.into()),
            trust: Trust::Block,
            timeout_secs: 5,
            ..FeedConfig::default()
        }];
        c.fleet = FleetConfig {
            enabled: true,
            url,
            name: "ops".into(),
            agent_id: "ops-agent".into(),
            ..FleetConfig::default()
        };
        c.media.enabled = true;
        c.media.port_min = media;
        c.media.port_max = media + 19;
        c.media.max_sessions = 4;
        c.media.prompts_dir = root().join("prompts").display().to_string();
    })
    .await
}

/// A Prometheus of the test's own: its config, rule file and storage in `dir`, scraping
/// `targets` every second under `job: scamguard` and evaluating the shipped rules every second.
async fn prometheus(dir: &Path, targets: &[SocketAddr]) -> (Child, SocketAddr) {
    let rules = root().join("deploy/prometheus/alerts.yml");
    let targets: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
    let config = format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
         rule_files:\n  - '{}'\n\
         scrape_configs:\n  - job_name: scamguard\n    static_configs:\n      - targets: [{}]\n",
        rules.display(),
        targets.join(", ")
    );
    std::fs::write(dir.join("prometheus.yml"), config).unwrap();
    let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let args = vec![
        format!("--config.file={}", dir.join("prometheus.yml").display()),
        format!("--storage.tsdb.path={}", dir.join("data").display()),
        format!("--web.listen-address={addr}"),
    ];
    let child = spawn(
        "prometheus",
        &args,
        &dir.join("prometheus.log"),
        "prometheus",
    );
    let err = dir.join("prometheus.err");
    until(
        &format!("Prometheus is ready; see {}", err.display()),
        Duration::from_secs(60),
        || async {
            match tokio::net::TcpStream::connect(addr).await {
                Ok(_) => get(addr, "/-/ready", None).await.status == 200,
                Err(_) => false,
            }
        },
    )
    .await;
    (child, addr)
}

/// The result of an instant query; the query must be accepted.
async fn query(prom: SocketAddr, q: &str) -> Vec<Value> {
    let r = get(prom, &format!("/api/v1/query?query={}", enc(q)), None).await;
    assert_eq!(r.status, 200, "query {q}: {}", r.text);
    let v = r.json();
    assert_eq!(v["status"], "success", "query {q}: {v}");
    v["data"]["result"].as_array().cloned().unwrap_or_default()
}

/// The alerts Prometheus holds now, pending or firing.
async fn alerts(prom: SocketAddr) -> Vec<Value> {
    let v = get(prom, "/api/v1/alerts", None).await.json();
    assert_eq!(v["status"], "success", "{v}");
    v["data"]["alerts"].as_array().cloned().unwrap_or_default()
}

/// SIPp placing `calls` calls of `scenario` from the callers of `rows` to the agent at `target`.
fn sipp_caller(dir: &Path, name: &str, rows: &[(String, &str)], target: SocketAddr) -> Child {
    let csv = dir.join(format!("{name}.csv"));
    let mut text = String::from("SEQUENTIAL\n");
    for (caller, callee) in rows {
        text.push_str(&format!("{caller};{callee};\n"));
    }
    std::fs::write(&csv, text).unwrap();
    let scenario = root().join(format!("tests/sipp/{name}.xml"));
    let args: Vec<String> = vec![
        "-sf".into(),
        scenario.display().to_string(),
        "-inf".into(),
        csv.display().to_string(),
        "-i".into(),
        "127.0.0.1".into(),
        "-p".into(),
        free_port().to_string(),
        "-m".into(),
        rows.len().to_string(),
        "-r".into(),
        "10".into(),
        "-nostdin".into(),
        "-trace_err".into(),
        "-error_file".into(),
        dir.join(format!("{name}_errors.log")).display().to_string(),
        target.to_string(),
    ];
    spawn(
        "sipp",
        &args,
        &dir.join(format!("{name}.log")),
        "sip-tester",
    )
}

/// Until `child` exits, which it must do with success.
async fn finished(mut child: Child, what: &str, log: &Path) {
    let status = tokio::time::timeout(Duration::from_secs(120), child.wait())
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish; see {}", log.display()))
        .unwrap();
    let text = std::fs::read_to_string(log).unwrap_or_default();
    assert!(status.success(), "{what} failed ({status}):\n{text}");
}

/// Every PromQL expression of the dashboard, with the panel's title, Grafana's variables put
/// in as Grafana would for job `scamguard` and every agent.
fn dashboard_queries(path: &Path) -> Vec<(String, String)> {
    let d: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap())
        .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()));
    assert!(
        d["__inputs"]
            .as_array()
            .is_some_and(|i| i.iter().any(|i| i["name"] == "DS_PROMETHEUS")),
        "the dashboard asks for no DS_PROMETHEUS datasource on import"
    );
    let mut out = Vec::new();
    let mut panels: Vec<Value> = d["panels"].as_array().unwrap().clone();
    while let Some(p) = panels.pop() {
        if let Some(inner) = p["panels"].as_array() {
            panels.extend(inner.iter().cloned());
        }
        for t in p["targets"].as_array().into_iter().flatten() {
            let expr = t["expr"].as_str().unwrap_or_else(|| panic!("{t}"));
            let e = expr
                .replace("$__rate_interval", "1m")
                .replace("$__interval", "5s")
                .replace("$__range", "5m")
                .replace("${job}", "scamguard")
                .replace("$job", "scamguard")
                .replace("${instance}", ".*")
                .replace("$instance", ".*");
            assert!(!e.contains('$'), "a variable left in {expr:?}");
            out.push((p["title"].as_str().unwrap_or("").to_string(), e));
        }
    }
    out
}

/// `alertname` for `instance` (and `feed`, when given) is firing.
fn firing(alerts: &[Value], alertname: &str, instance: &str, feed: Option<&str>) -> bool {
    alerts.iter().any(|a| {
        a["state"] == "firing"
            && a["labels"]["alertname"] == alertname
            && a["labels"]["instance"] == instance
            && feed.map_or(true, |f| a["labels"]["feed"] == f)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn prometheus_scrapes_the_agent_the_dashboard_reads_it_and_a_stale_feed_fires() {
    let deploy = root().join("deploy/prometheus");
    promtool(&deploy, &["check", "rules", "alerts.yml"]).await;
    promtool(&deploy, &["test", "rules", "alerts_test.yml"]).await;

    let dir = tempfile::tempdir().unwrap();
    let redis = redis().await;
    let (a, key) = publisher(&dir.path().join("publisher")).await;

    // The callee of passed calls: SIPp checks each forwarded INVITE's verdict header.
    let uas_port = free_port();
    let uas_log = dir.path().join("uas.log");
    let uas_args: Vec<String> = vec![
        "-sf".into(),
        root().join("tests/sipp/uas_pass.xml").display().to_string(),
        "-i".into(),
        "127.0.0.1".into(),
        "-p".into(),
        uas_port.to_string(),
        "-m".into(),
        "20".into(),
        "-nostdin".into(),
        "-trace_err".into(),
        "-error_file".into(),
        dir.path().join("uas_errors.log").display().to_string(),
    ];
    let uas = spawn("sipp", &uas_args, &uas_log, "sip-tester");

    let b = subject(uas_port, a.api_addr, key, &redis).await;
    let (b_api, a_api) = (b.agent.api_addr, a.api_addr);
    let (b_inst, a_inst) = (b_api.to_string(), a_api.to_string());
    let (_prom, prom) = prometheus(dir.path(), &[b_api, a_api]).await;
    until(
        "Prometheus scrapes both agents",
        Duration::from_secs(60),
        || async {
            let up = query(prom, "up{job=\"scamguard\"} == 1").await;
            up.len() == 2
        },
    )
    .await;
    until(
        "the agent applies the partner's feed",
        Duration::from_secs(60),
        || async {
            let q =
                format!("scamguard_feed_entries{{instance=\"{b_inst}\",feed=\"partner-a\"}} == 1");
            !query(prom, &q).await.is_empty()
        },
    )
    .await;

    // Load: 20 calls from a listed caller (603 from the agent) and 20 passed calls answered by
    // the SIPp callee, at ten a second.
    let sip = b.sip();
    let blocked: Vec<(String, &str)> = (0..20)
        .map(|_| ("+12025550143".to_string(), "+12025550100"))
        .collect();
    let passed: Vec<(String, &str)> = (0..20)
        .map(|i| (format!("+1415555{:04}", 2600 + i), "+12025550100"))
        .collect();
    let block_uac = sipp_caller(dir.path(), "uac_block", &blocked, sip);
    let pass_uac = sipp_caller(dir.path(), "uac_call", &passed, sip);
    finished(
        block_uac,
        "SIPp's blocked calls",
        &dir.path().join("uac_block.log"),
    )
    .await;
    finished(
        pass_uac,
        "SIPp's passed calls",
        &dir.path().join("uac_call.log"),
    )
    .await;
    finished(uas, "the SIPp callee", &uas_log).await;
    until(
        "Prometheus sees the 40 calls",
        Duration::from_secs(60),
        || async {
            let q = format!("sum(scamguard_calls_total{{instance=\"{b_inst}\"}}) >= 40");
            !query(prom, &q).await.is_empty()
        },
    )
    .await;

    // With feeds, fleet and media on, every collector renders: all of it must be text a
    // Prometheus takes (it scraped it, but a duplicate series would only be dropped).
    let text = support::http::metrics(b_api).await;
    let problems = scamguard::metrics::problems(&text);
    assert!(problems.is_empty(), "{problems:#?}\n{text}");

    // Every expression of the dashboard returns a series. Each is asked until it does: a rate
    // needs two scrapes of its counter.
    let queries = dashboard_queries(&root().join("deploy/grafana/scamguard.json"));
    assert!(queries.len() >= 20, "{queries:?}");
    for (panel, q) in &queries {
        until(
            &format!("panel {panel:?}: {q} returns a series"),
            Duration::from_secs(30),
            || async { !query(prom, q).await.is_empty() },
        )
        .await;
    }

    // A healthy agent under load: no alert pends or fires for it.
    let now = alerts(prom).await;
    let b_alerts: Vec<&Value> = now
        .iter()
        .filter(|a| a["labels"]["instance"] == b_inst.as_str())
        .collect();
    assert!(b_alerts.is_empty(), "{b_alerts:#?}");

    // The publisher stops: the agent's polls fail, its feed goes stale and the alert fires; the
    // publisher, scraped too, is down.
    a.stop().await;
    until(
        "ScamguardFeedStale fires for the agent's feed and ScamguardDown for the publisher",
        ALERT_PATIENCE,
        || async {
            let now = alerts(prom).await;
            firing(&now, "ScamguardFeedStale", &b_inst, Some("partner-a"))
                && firing(&now, "ScamguardDown", &a_inst, None)
        },
    )
    .await;
    let now = alerts(prom).await;
    let others: Vec<&Value> = now
        .iter()
        .filter(|a| {
            a["labels"]["instance"] == b_inst.as_str()
                && a["labels"]["alertname"] != "ScamguardFeedStale"
        })
        .collect();
    assert!(others.is_empty(), "{others:#?}");
    let stale = now
        .iter()
        .find(|a| a["labels"]["alertname"] == "ScamguardFeedStale")
        .unwrap();
    assert!(
        stale["annotations"]["summary"]
            .as_str()
            .is_some_and(|s| s.contains("partner-a")),
        "{stale}"
    );
    b.stop().await;
}
