//! A fleet of three agents on loopback sharing one real `redis-server` (`[fleet]`,
//! `docs/fleet.md`): a campaign spread round-robin over the agents, below each agent's own levels,
//! is warned and then blocked by every agent at the fleet's levels, for velocity and for wangiri;
//! and Redis paused with SIGSTOP, resumed, then restarted empty costs no call, opens and closes
//! the breaker, and the fleet's counts converge again without counting anything twice.
//!
//! Each test starts its own `redis-server` on a free loopback port, with no persistence, in a
//! temporary folder. A missing `redis-server` fails the tests (CI installs it): it is not a
//! reason to skip them.
//!
//! Calls are paced by the fleet's own progress, never by sleeps: after each call the test waits
//! until the agent that took it has flushed its counts and the others have read them back (the
//! `scamguard_fleet_flushes_total` counters). That is the campaign of a caller placing calls a
//! little slower than the flush interval; a faster one is caught a flush interval later.

#[path = "support/mod.rs"]
mod support;

use std::io::{Read, Write};
use std::net::TcpStream as StdTcp;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};

use scamguard::app::fleet::FleetConfig;
use scamguard::screening::signals::velocity::Level;

use support::agent::*;
use support::http::*;
use support::*;

// ------------------------------------------------------------------ a Redis of the test's own

/// A `redis-server` on a free loopback port, killed when dropped.
struct Redis {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Redis {
    fn start() -> Redis {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        Redis::start_on(port)
    }

    /// A new, empty server on `port`.
    fn start_on(port: u16) -> Redis {
        let dir = tempfile::tempdir().unwrap();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect(
                "the fleet tests need redis-server (Debian package redis-server; scripts/test \
                 and .ci/run install it)",
            );
        let r = Redis { child, port, dir };
        let end = std::time::Instant::now() + WAIT;
        while r.ping().as_deref() != Some("+PONG") {
            assert!(
                std::time::Instant::now() < end,
                "redis-server never answered PING"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        r
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn ping(&self) -> Option<String> {
        let mut s = StdTcp::connect(("127.0.0.1", self.port)).ok()?;
        s.set_read_timeout(Some(std::time::Duration::from_secs(1)))
            .ok()?;
        s.write_all(b"PING\r\n").ok()?;
        let mut b = [0u8; 16];
        let n = s.read(&mut b).ok()?;
        Some(String::from_utf8_lossy(&b[..n]).trim().to_string())
    }

    /// Sends `signal` (`-STOP`, `-CONT`) to this server, and to nothing else.
    fn signal(&self, signal: &str) {
        let ok = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {signal}");
    }

    /// A command's answer, for checking what the fleet stored.
    fn query<T: redis::FromRedisValue>(&self, cmd: &mut redis::Cmd) -> T {
        let client = redis::Client::open(self.url()).unwrap();
        let mut con = client.get_connection().unwrap();
        cmd.query(&mut con).unwrap()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = &self.dir;
    }
}

// ------------------------------------------------------------------ the log, as an operator reads it

/// Every diagnostic line the agents of this process wrote (the fleet logs its breaker there).
fn log_lines() -> Arc<Mutex<Vec<u8>>> {
    static LOG: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOG.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let b = buf.clone();
        let _ = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_env_filter("info")
            .with_writer(move || Capture(b.clone()))
            .try_init();
        buf
    })
    .clone()
}

struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn lines_with(needle: &str) -> usize {
    let text = String::from_utf8_lossy(&log_lines().lock().unwrap()).to_string();
    text.lines().filter(|l| l.contains(needle)).count()
}

// ------------------------------------------------------------------ three agents

struct Fleet {
    agents: Vec<Harness>,
    name: String,
    url: String,
    /// The API tokens every agent reads (`support::http::write_tokens`).
    tokens: tempfile::TempDir,
}

/// Three agents of fleet `name` on `redis`, each with `configure` applied to its config.
async fn fleet(
    name: &str,
    redis: &Redis,
    configure: impl Fn(&mut scamguard::app::config::Config),
) -> Fleet {
    fleet_of(3, name, redis, configure).await
}

/// `n` agents of fleet `name` on `redis`, each sharing counts before this returns.
async fn fleet_of(
    n: usize,
    name: &str,
    redis: &Redis,
    configure: impl Fn(&mut scamguard::app::config::Config),
) -> Fleet {
    log_lines();
    let tokens = tempfile::tempdir().unwrap();
    write_tokens(&tokens.path().join("tokens"));
    let mut f = Fleet {
        agents: Vec::new(),
        name: name.into(),
        url: redis.url(),
        tokens,
    };
    for _ in 0..n {
        f.join(&configure).await;
    }
    f
}

impl Fleet {
    /// One more agent, `<name>-agent-<i>`, sharing counts and following the edit stream before
    /// this returns.
    async fn join(&mut self, configure: &impl Fn(&mut scamguard::app::config::Config)) {
        let i = self.agents.len();
        let (name, url) = (self.name.clone(), self.url.clone());
        let tokens = self.tokens.path().join("tokens");
        let h = Harness::start_with(&[], |c| {
            c.fleet = FleetConfig {
                enabled: true,
                url,
                name: name.clone(),
                agent_id: format!("{name}-agent-{i}"),
                flush_ms: 50,
                timeout_ms: 100,
                breaker_failures: 2,
                breaker_probe_ms: 200,
                ..FleetConfig::default()
            };
            c.api.tokens_file = Some(tokens);
            configure(c);
        })
        .await;
        self.agents.push(h);
        eventually("the agent shares counts", || self.up(i, 1)).await;
        eventually("the agent follows the edit stream", || async {
            self.metric(i, "scamguard_fleet_edits_up").await == 1
        })
        .await;
    }

    async fn metric(&self, i: usize, series: &str) -> u64 {
        metric(&metrics(self.agents[i].agent.api_addr).await, series)
    }

    async fn up(&self, i: usize, want: u64) -> bool {
        self.metric(i, "scamguard_fleet_up").await == want
    }

    async fn flushes(&self, i: usize) -> u64 {
        self.metric(i, "scamguard_fleet_flushes_total{result=\"ok\"}")
            .await
    }

    /// Waits until agent `i` has flushed what it counted, then until the others have read the
    /// fleet's totals back after that: two flushes each, so that one began after the last event.
    async fn settle(&self, i: usize) {
        let order: Vec<usize> = std::iter::once(i)
            .chain((0..3).filter(|j| *j != i))
            .collect();
        for j in order {
            let before = self.flushes(j).await;
            eventually("a flush after the call", || async {
                self.flushes(j).await >= before + 2
            })
            .await;
        }
    }

    /// `n` calls from `caller` round-robin over the agents, each to a new callee, each placed
    /// once the last one's counts went round: what each became.
    async fn campaign(
        &self,
        caller: &str,
        n: usize,
        tag: &str,
        call: impl AsyncCall,
    ) -> Vec<String> {
        let mut out = Vec::new();
        for k in 0..n {
            let i = k % 3;
            let callee = format!("+1617555{:04}", 5000 + k);
            out.push(
                call.place(&self.agents[i], &format!("{tag}{k}"), caller, &callee)
                    .await,
            );
            self.settle(i).await;
        }
        out
    }

    /// What agent `i` answers for a call from `caller` now (`/v1/check`): pass, warn or block.
    async fn verdict(&self, i: usize, caller: &str) -> String {
        let r = get(
            self.agents[i].agent.api_addr,
            &format!("/v1/check?caller={}", enc(caller)),
            Some(READER),
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.text);
        r.json()["action"].as_str().unwrap().to_string()
    }

    /// Adds one entry of list `list` through agent `i`'s API; 201 means durable there.
    async fn add(&self, i: usize, list: &str, pattern: &str, action: &str) {
        let body = serde_json::json!({"pattern": pattern, "action": action, "category": "scam",
            "reason": "fleet test"});
        let r = request(
            self.agents[i].agent.api_addr,
            "POST",
            &format!("/v1/lists/{list}/entries"),
            Some(WRITER),
            body.to_string().as_bytes(),
        )
        .await;
        assert_eq!(r.status, 201, "{}", r.text);
    }

    async fn remove(&self, i: usize, list: &str, pattern: &str) {
        let r = request(
            self.agents[i].agent.api_addr,
            "DELETE",
            &format!("/v1/lists/{list}/entries/{}", enc(pattern)),
            Some(WRITER),
            b"",
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.text);
    }

    /// Waits until every agent in `on` answers `want` for `caller`; how long each took from
    /// `since` (shown, never asserted: no timing assertion in a test).
    async fn enforced(
        &self,
        on: &[usize],
        caller: &str,
        want: &str,
        since: std::time::Instant,
    ) -> Vec<std::time::Duration> {
        let mut took = Vec::new();
        for &i in on {
            eventually(
                &format!("agent {i} answers {want} for {caller}"),
                || async { self.verdict(i, caller).await == want },
            )
            .await;
            took.push(since.elapsed());
        }
        took
    }

    async fn stop(self) -> Vec<serde_json::Value> {
        let mut log = Vec::new();
        for h in self.agents {
            let (l, _d) = h.stop().await;
            log.extend(l);
        }
        log
    }
}

/// The reason a logged call's verdict cites from `list`.
fn reason(log: &[serde_json::Value], call_id: &str, list: &str) -> String {
    let l = log
        .iter()
        .find(|l| l["call_id"] == call_id)
        .unwrap_or_else(|| panic!("no decision for {call_id}"));
    l["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["list"] == list)
        .map(|r| r["reason"].as_str().unwrap().to_string())
        .unwrap_or_else(|| panic!("no {list} reason in {l}"))
}

// ------------------------------------------------------------------ calls

/// How a test's caller places one call through an agent.
trait AsyncCall {
    /// What the INVITE became: `pass` or `warn` (forwarded), or the agent's own status (`603`).
    async fn place(&self, h: &Harness, id: &str, caller: &str, callee: &str) -> String;
}

/// The INVITE of one call from `caller` to `callee`, sent to agent `h`; the forwarded INVITE
/// and its verdict, or the agent's own final status.
async fn send_invite(
    h: &Harness,
    id: &str,
    caller: &str,
    callee: &str,
) -> (String, Result<Msg, u16>) {
    let inv = invite(
        "UDP",
        h.sip(),
        h.up_port(),
        id,
        &format!("z9hG4bK{id}"),
        &format!("<sip:{caller}@127.0.0.1>;tag={id}"),
        callee,
        "",
        "",
    );
    h.send_up(&inv).await;
    let f = tokio::select! {
        r = recv_final(&h.up) => {
            // The agent's own answer (a block) is ACKed like any final answer.
            h.send_up(&ack_for(h.up_port(), &inv, &r)).await;
            return (inv, Err(r.status().unwrap()));
        }
        f = recv(&h.down) => f.0,
    };
    assert_eq!(f.method(), "INVITE", "{}", f.text);
    (inv, Ok(f))
}

fn shown(f: &Msg) -> String {
    let v = f.hdr("X-Scamguard-Verdict").unwrap();
    v.split(';').next().unwrap().to_string()
}

/// The callee's side ACKs a final answer; an INVITE retransmitted meanwhile (the machine may
/// be slow to answer within the 500 ms of SIP's first timer) is skipped.
async fn callee_acked(h: &Harness, id: &str) {
    loop {
        let (m, _) = recv(&h.down).await;
        if m.method() == "ACK" {
            return;
        }
        assert_eq!(m.method(), "INVITE", "{id}: {}", m.text);
    }
}

/// The callee is not there: 100, then 480; the caller ACKs it, as the agent ACKs the callee.
struct Unanswered;

impl AsyncCall for Unanswered {
    async fn place(&self, h: &Harness, id: &str, caller: &str, callee: &str) -> String {
        let (inv, f) = send_invite(h, id, caller, callee).await;
        let f = match f {
            Ok(f) => f,
            Err(status) => return status.to_string(),
        };
        h.send_down(&reply(&f, 100, "Trying", "u", "", "")).await;
        h.send_down(&reply(&f, 480, "Temporarily Unavailable", "u", "", ""))
            .await;
        let r = recv_final(&h.up).await;
        assert_eq!(r.status(), Some(480), "{id}");
        h.send_up(&ack_for(h.up_port(), &inv, &r)).await;
        callee_acked(h, id).await;
        shown(&f)
    }
}

/// One ring and cut: the callee rings, the caller cancels within a second.
struct OneRing;

impl AsyncCall for OneRing {
    async fn place(&self, h: &Harness, id: &str, caller: &str, callee: &str) -> String {
        let (inv, f) = send_invite(h, id, caller, callee).await;
        let f = match f {
            Ok(f) => f,
            Err(status) => return status.to_string(),
        };
        h.send_down(&reply(&f, 180, "Ringing", "r", "", "")).await;
        assert_eq!(recv_final(&h.up).await.status(), Some(180));
        h.send_up(&cancel_for(&inv)).await;
        assert_eq!(recv_final(&h.up).await.hdr("CSeq"), Some("1 CANCEL"));
        let (c, _) = recv(&h.down).await;
        assert_eq!(c.method(), "CANCEL");
        h.send_down(&reply(&c, 200, "OK", "r", "", "")).await;
        h.send_down(&reply(&f, 487, "Request Terminated", "r", "", ""))
            .await;
        let r = recv_final(&h.up).await;
        assert_eq!(r.status(), Some(487));
        h.send_up(&ack_for(h.up_port(), &inv, &r)).await;
        callee_acked(h, id).await;
        shown(&f)
    }
}

/// Velocity levels no agent reaches alone in these campaigns (each takes a third of the calls):
/// 6 distinct callees warn, 9 block, once 3 calls have an outcome. Calls per second and per
/// minute are left out, so the distinct callees decide.
fn velocity_levels(c: &mut scamguard::app::config::Config) {
    let v = &mut c.signals.velocity;
    v.min_outcomes = 3;
    v.caller.per_second = Level::default();
    v.caller.per_minute = Level::default();
    v.caller.distinct_callees = Level::new(6, 9);
}

// ------------------------------------------------------------------ the tests

/// (1) A robocaller whose unanswered calls go round-robin over three agents: each agent sees 4 of
/// its 12 calls, below its warn level of 6 distinct callees, yet the fleet warns the 6th call and
/// blocks from the 9th, on whichever agent takes it: within 0 calls of the fleet's levels.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_campaign_spread_over_the_fleet_is_warned_then_blocked_at_the_fleets_levels() {
    let redis = Redis::start();
    let f = fleet("velocity", &redis, velocity_levels).await;
    let caller = "+13125550177";
    let got = f.campaign(caller, 12, "rr", Unanswered).await;
    assert_eq!(
        got,
        [
            "pass", "pass", "pass", "pass", "pass", "warn", "warn", "warn", "603", "603", "603",
            "603"
        ]
    );
    let log = f.stop().await;
    assert_eq!(
        reason(&log, "rr5", "velocity"),
        "(+50) caller distinct-callees 6 (warn); of 5 recent calls with an outcome: 0 talked, 5 \
         unanswered; fleet: 6 distinct callees in 60 s, 5 calls with an outcome across 3 agents"
    );
    assert!(
        reason(&log, "rr8", "velocity").contains("fleet: 9 distinct callees in 60 s"),
        "{}",
        reason(&log, "rr8", "velocity")
    );
}

/// (2) Wangiri fan-out: one number rings and cuts callees round-robin over three agents. Each
/// agent sees at most 4 one-rings, below its warn level of 5; the fleet warns the 6th call (5
/// one-rings before it) and blocks from the 9th (8).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wangiri_fan_out_over_the_fleet_is_caught_at_the_fleets_levels() {
    let redis = Redis::start();
    let f = fleet("wangiri", &redis, |c| {
        c.signals.velocity.enabled = false;
        c.signals.wangiri.number = Level::new(5, 8);
    })
    .await;
    let caller = "+12027621401";
    let got = f.campaign(caller, 12, "wr", OneRing).await;
    let log = f.stop().await;
    assert_eq!(
        got,
        [
            "pass", "pass", "pass", "pass", "pass", "warn", "warn", "warn", "603", "603", "603",
            "603"
        ],
        "{log:#?}"
    );
    assert_eq!(
        reason(&log, "wr5", "wangiri"),
        format!(
            "(+50) number {caller} rang 5 distinct callees and hung up within seconds (5 of its 5 \
             recent calls); fleet: 5 distinct callees in 3600 s across 3 agents"
        )
    );
}

/// (6) Redis paused with SIGSTOP while calls flow, then resumed, then restarted empty. Every
/// call gets its normal answer throughout; each agent's breaker opens (`scamguard_fleet_up 0`,
/// one log line) and closes again (`1`, one line); what Redis holds never counts a call twice;
/// and after the restart the fleet's counts converge again: a new campaign is warned and blocked
/// at the fleet's levels as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_paused_then_restarted_costs_no_call_and_the_fleet_converges_again() {
    let redis = Redis::start();
    let port = redis.port;
    let f = fleet("outage", &redis, |c| {
        velocity_levels(c);
        // Every call comes from 127.0.0.1: its source key counts them all, fleet-wide, at a
        // level no test reaches. Prefixes are left out: the callers below share one.
        let v = &mut c.signals.velocity;
        v.source.per_minute = Level {
            warn: Some(1_000_000),
            block: None,
        };
        v.prefix = Default::default();
    })
    .await;
    let name = f.name.clone();
    // Each call from a caller of its own, answered 480 as usual, whatever Redis does.
    let mut placed = 0;
    let mut call = |i: usize| {
        placed += 1;
        let id = format!("z{placed}");
        let caller = format!("+1415555{placed:04}");
        let h = &f.agents[i];
        async move { Unanswered.place(h, &id, &caller, "+16175560000").await }
    };
    for i in 0..3 {
        assert_eq!(call(i).await, "pass");
        f.settle(i).await;
    }
    redis.signal("-STOP");
    // Calls keep flowing while each breaker opens, and after.
    let mut k = 0;
    for i in 0..3 {
        while !f.up(i, 0).await {
            assert_eq!(call(k % 3).await, "pass");
            k += 1;
            assert!(k < 100_000, "the breaker never opened");
        }
    }
    for _ in 0..6 {
        assert_eq!(call(k % 3).await, "pass");
        k += 1;
    }
    for i in 0..3 {
        assert_eq!(f.metric(i, "scamguard_fleet_breaker_opens_total").await, 1);
        let agent = format!("breaker open, agent {name}-agent-{i} ");
        assert_eq!(lines_with(&agent), 1, "one line for agent {i}");
    }
    redis.signal("-CONT");
    for i in 0..3 {
        eventually("the breaker closes", || f.up(i, 1)).await;
        let agent = format!("breaker closed, agent {name}-agent-{i} ");
        assert_eq!(lines_with(&agent), 1, "one line for agent {i}");
    }
    for i in 0..3 {
        assert_eq!(call(i).await, "pass");
        f.settle(i).await;
    }
    // Deltas of a flush that failed are dropped, never sent again: Redis holds every call
    // counted while it answered, and may hold some of the pause's (a pipeline Redis read only
    // when it resumed), never more calls than were placed.
    let key = format!("sg:{name}:{{vs:127.0.0.1}}:h");
    let fields: Vec<(String, i64)> = redis.query(redis::cmd("HGETALL").arg(&key));
    let stored: i64 = fields
        .iter()
        .filter(|(k, _)| k.starts_with("c:"))
        .map(|(_, v)| v)
        .sum();
    assert!(
        (6..=placed).contains(&stored),
        "{stored} calls stored of {placed} placed: {fields:?}"
    );

    // Restarted empty, on the same port: no FLUSHALL needed, nothing resent; the breakers may
    // open and close again, and the counts of a new campaign converge as on a fresh fleet.
    drop(redis);
    let redis = Redis::start_on(port);
    for i in 0..3 {
        eventually("the agents share counts again", || f.up(i, 1)).await;
    }
    for i in 0..3 {
        f.settle(i).await;
    }
    let got = f.campaign("+13125550188", 9, "after", Unanswered).await;
    assert_eq!(
        got,
        ["pass", "pass", "pass", "pass", "pass", "warn", "warn", "warn", "603"]
    );
    drop(redis);
    f.stop().await;
}

// ------------------------------------------------------------------ list edits

/// (4) An entry added through agent A's API is enforced on B and C, and so is its removal. The
/// delays are shown (never asserted): from A's 201 to each of B and C answering the new verdict.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_add_and_remove_on_one_agent_are_enforced_on_the_others() {
    let redis = Redis::start();
    let f = fleet("edits", &redis, |_| {}).await;
    let caller = "+13125550901";
    for i in 0..3 {
        assert_eq!(f.verdict(i, caller).await, "pass");
    }
    let mut delays = Vec::new();
    for round in 0..5 {
        let caller = format!("+1312555091{round}");
        let t = std::time::Instant::now();
        f.add(0, "main", &caller, "block").await;
        assert_eq!(
            f.verdict(0, &caller).await,
            "block",
            "enforced on A at once"
        );
        delays.extend(f.enforced(&[1, 2], &caller, "block", t).await);
        let t = std::time::Instant::now();
        f.remove(0, "main", &caller).await;
        assert_eq!(f.verdict(0, &caller).await, "pass");
        delays.extend(f.enforced(&[1, 2], &caller, "pass", t).await);
    }
    delays.sort();
    println!(
        "edit reached B and C after (ms, sorted, {} samples): {:?}",
        delays.len(),
        delays.iter().map(|d| d.as_millis()).collect::<Vec<_>>()
    );
    // Each agent's audit trail says where the change came from; none was sent back out.
    for i in 1..3 {
        // At least: a batch Redis took without answering in time is sent again, and applied
        // again (an add and its removal in one batch change the entry twice more).
        let applied = f.metric(i, "scamguard_fleet_edits_applied_total").await;
        assert!(
            applied >= 10,
            "agent {i} applied {applied} of 5 adds and 5 removals"
        );
        assert_eq!(
            f.metric(i, "scamguard_fleet_edits_published_total").await,
            0
        );
    }
    assert_eq!(
        f.metric(0, "scamguard_fleet_edits_published_total").await,
        10
    );
    let r = get(
        f.agents[1].agent.api_addr,
        "/v1/audit?since=0",
        Some(support::http::ADMIN),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let records = r.json();
    let first = &records["records"][0];
    assert_eq!(first["who"], "bot", "{records}");
    assert_eq!(first["source"], "fleet edits-agent-0", "{records}");
    f.stop().await;
}

/// (5) An agent started after edits were made catches up from the fleet's snapshot, then
/// follows the stream; its own entries that the fleet lacked reach the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_started_late_catches_up() {
    let redis = Redis::start();
    let mut f = fleet_of(2, "late", &redis, |_| {}).await;
    f.add(0, "main", "+13125550921", "block").await;
    f.add(1, "main", "+13125550922", "warn").await;
    f.add(0, "main", "+13125550923", "block").await;
    f.enforced(&[1], "+13125550923", "block", std::time::Instant::now())
        .await;
    f.remove(1, "main", "+13125550923").await;
    f.enforced(&[1], "+13125550921", "block", std::time::Instant::now())
        .await;
    f.enforced(&[0], "+13125550923", "pass", std::time::Instant::now())
        .await;
    f.join(&|_| {}).await;
    assert_eq!(f.verdict(2, "+13125550921").await, "block");
    assert_eq!(f.verdict(2, "+13125550922").await, "warn");
    assert_eq!(f.verdict(2, "+13125550923").await, "pass");
    assert_eq!(f.metric(2, "scamguard_fleet_snapshot_loads_total").await, 1);
    // It follows the stream from there, and its own edits go out.
    let t = std::time::Instant::now();
    f.add(0, "main", "+13125550924", "block").await;
    f.enforced(&[2], "+13125550924", "block", t).await;
    f.add(2, "main", "+13125550925", "block").await;
    f.enforced(&[0, 1], "+13125550925", "block", t).await;
    f.stop().await;
}

/// Edits made while Redis is paused are acknowledged (durable on their agent and enforced
/// there), kept in the outbox, and published once Redis answers again; then Redis restarted
/// empty: an edit made while it was down still reaches every agent, and what the agents held
/// stays enforced everywhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_made_while_redis_is_down_wait_in_the_outbox_and_go_out_after() {
    let redis = Redis::start();
    let port = redis.port;
    let f = fleet("outbox", &redis, |_| {}).await;
    f.add(0, "main", "+13125550931", "block").await;
    f.enforced(&[1, 2], "+13125550931", "block", std::time::Instant::now())
        .await;
    redis.signal("-STOP");
    eventually("A's edits wait", || async {
        f.metric(0, "scamguard_fleet_edits_up").await == 0
    })
    .await;
    f.add(0, "main", "+13125550932", "block").await;
    f.remove(0, "main", "+13125550931").await;
    assert_eq!(f.verdict(0, "+13125550932").await, "block");
    eventually("A's two changes wait in its outbox", || async {
        f.metric(0, "scamguard_fleet_outbox").await == 2
    })
    .await;
    assert_eq!(f.verdict(1, "+13125550932").await, "pass", "not there yet");
    let t = std::time::Instant::now();
    redis.signal("-CONT");
    f.enforced(&[1, 2], "+13125550932", "block", t).await;
    f.enforced(&[1, 2], "+13125550931", "pass", t).await;
    eventually("the outbox drains", || async {
        f.metric(0, "scamguard_fleet_outbox").await == 0
    })
    .await;

    // Restarted empty, with an edit made meanwhile on B.
    drop(redis);
    eventually("B's edits wait", || async {
        f.metric(1, "scamguard_fleet_edits_up").await == 0
    })
    .await;
    f.add(1, "main", "+13125550933", "warn").await;
    let redis = Redis::start_on(port);
    let t = std::time::Instant::now();
    f.enforced(&[0, 2], "+13125550933", "warn", t).await;
    for i in 0..3 {
        assert_eq!(f.verdict(i, "+13125550932").await, "block");
        assert_eq!(f.verdict(i, "+13125550931").await, "pass");
    }
    // The new Redis holds the fleet's lists again, for an agent that joins later.
    let held: Vec<String> = redis.query(redis::cmd("HKEYS").arg("sg:outbox:{lists}:l:main"));
    assert!(held.contains(&"+13125550932".to_string()), "{held:?}");
    assert!(held.contains(&"+13125550933".to_string()), "{held:?}");
    assert!(!held.contains(&"+13125550931".to_string()), "{held:?}");
    f.stop().await;
    drop(redis);
}

// ------------------------------------------------------------------ reports

/// The callee answers `607 Unwanted`: a report against the caller, by the callee.
struct Unwanted607;

impl AsyncCall for Unwanted607 {
    async fn place(&self, h: &Harness, id: &str, caller: &str, callee: &str) -> String {
        let (inv, f) = send_invite(h, id, caller, callee).await;
        let f = match f {
            Ok(f) => f,
            Err(status) => return status.to_string(),
        };
        h.send_down(&reply(&f, 607, "Unwanted", "u", "", "")).await;
        let r = recv_final(&h.up).await;
        assert_eq!(r.status(), Some(607), "{id}");
        h.send_up(&ack_for(h.up_port(), &inv, &r)).await;
        callee_acked(h, id).await;
        shown(&f)
    }
}

/// (3) 607s from three distinct callees, one on each agent, count together: no agent saw more
/// than one reporter (the warn level is 3), yet the caller is promoted once, by one agent, and
/// the entry is enforced on all three.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_on_different_agents_promote_exactly_one_entry() {
    let redis = Redis::start();
    let f = fleet("reports", &redis, |c| {
        c.signals.velocity.enabled = false;
    })
    .await;
    let caller = "+13125550941";
    let got = f.campaign(caller, 3, "rep", Unwanted607).await;
    assert_eq!(got, ["pass", "pass", "pass"]);
    let t = std::time::Instant::now();
    let took = f.enforced(&[0, 1, 2], caller, "warn", t).await;
    println!(
        "promotion enforced on the 3 agents after (ms): {:?}",
        took.iter().map(|d| d.as_millis()).collect::<Vec<_>>()
    );
    let mut promotions = 0;
    for i in 0..3 {
        promotions += f.metric(i, "scamguard_report_promotions_total").await;
        let r = get(
            f.agents[i].agent.api_addr,
            "/v1/lists/reports/entries",
            Some(READER),
        )
        .await;
        let entries = r.json()["entries"].clone();
        assert_eq!(entries.as_array().unwrap().len(), 1, "{entries}");
        assert_eq!(entries[0]["pattern"], caller);
        let reason = entries[0]["reason"].as_str().unwrap();
        assert!(
            reason.starts_with("reported by 3 distinct reporters across the fleet"),
            "{reason}"
        );
    }
    assert_eq!(promotions, 1, "exactly one agent wrote the promotion");
    let held: Option<String> =
        redis.query(redis::cmd("GET").arg(format!("sg:reports:{{rp:{caller}}}:p")));
    assert_eq!(held.as_deref(), Some("warn"));
    // Another 607 changes nothing: the fleet holds the level already.
    let got = f.campaign(caller, 1, "rep4-", Unwanted607).await;
    assert_eq!(got, ["warn"]);
    let mut promotions = 0;
    for i in 0..3 {
        promotions += f.metric(i, "scamguard_report_promotions_total").await;
    }
    assert_eq!(promotions, 1);
    f.stop().await;
}

/// `GET /v1/fleet` lists the agents with their versions, list versions and heartbeats.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fleet_lists_its_agents() {
    let redis = Redis::start();
    let f = fleet("view", &redis, |_| {}).await;
    let names = || async {
        let r = get(f.agents[2].agent.api_addr, "/v1/fleet", Some(READER)).await;
        assert_eq!(r.status, 200, "{}", r.text);
        r.json()
    };
    eventually("all three agents are listed", || async {
        names().await["agents"].as_array().unwrap().len() == 3
    })
    .await;
    let v = names().await;
    assert_eq!(v["fleet"], "view");
    assert_eq!(v["agent"], "view-agent-2");
    for (i, a) in v["agents"].as_array().unwrap().iter().enumerate() {
        assert_eq!(a["agent"], format!("view-agent-{i}"));
        assert_eq!(a["version"], env!("CARGO_PKG_VERSION"));
        assert!(a["heartbeat_ms"].as_u64().unwrap() > 0, "{a}");
    }
    let m = metrics(f.agents[2].agent.api_addr).await;
    for i in 0..3 {
        metric(
            &m,
            &format!("scamguard_fleet_list_version{{agent=\"view-agent-{i}\"}}"),
        );
    }
    let r = get(f.agents[0].agent.api_addr, "/v1/fleet", None).await;
    assert_eq!(r.status, 401, "{}", r.text);
    f.stop().await;
}
