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
        Redis::start_with(port, &[])
    }

    /// A new, empty server on `port` with these options too.
    fn start_with(port: u16, options: &[&str]) -> Redis {
        let dir = tempfile::tempdir().unwrap();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .args(options)
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

// ------------------------------------------------------------------ a Redis Cluster of the test's own

/// Three masters (`redis-server --cluster-enabled yes`, no replicas) joined with
/// `redis-cli --cluster create`, on free loopback ports; killed when dropped.
struct Cluster {
    nodes: Vec<Redis>,
}

impl Cluster {
    fn start() -> Cluster {
        let mut nodes = Vec::new();
        for _ in 0..3 {
            let port = support::free_port();
            let bus = support::free_port();
            nodes.push(Redis::start_with(
                port,
                &[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-port",
                    &bus.to_string(),
                ],
            ));
        }
        let mut create = Command::new("redis-cli");
        create.arg("--cluster").arg("create");
        for n in &nodes {
            create.arg(format!("127.0.0.1:{}", n.port));
        }
        let out = create
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("redis-cli (Debian package redis-tools, with redis-server)");
        assert!(
            out.status.success(),
            "redis-cli --cluster create: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let c = Cluster { nodes };
        let end = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while !c.nodes.iter().all(|n| {
            n.query::<String>(redis::cmd("CLUSTER").arg("INFO"))
                .contains("cluster_state:ok")
        }) {
            assert!(
                std::time::Instant::now() < end,
                "the cluster never became ok"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        c
    }

    /// The seeds an agent is given: two of the three nodes (it learns the third).
    fn url(&self) -> String {
        format!("{},{}", self.nodes[0].url(), self.nodes[1].url())
    }

    fn slot(&self, key: &str) -> i64 {
        self.nodes[0].query(redis::cmd("CLUSTER").arg("KEYSLOT").arg(key))
    }

    fn id(&self, n: usize) -> String {
        self.nodes[n].query(redis::cmd("CLUSTER").arg("MYID"))
    }

    /// The node that serves `slot` now.
    fn owner(&self, slot: i64) -> usize {
        let shards: Vec<redis::Value> = self.nodes[0].query(redis::cmd("CLUSTER").arg("SLOTS"));
        for s in shards {
            let redis::Value::Array(s) = s else { continue };
            let from: i64 = redis::from_redis_value(&s[0]).unwrap();
            let to: i64 = redis::from_redis_value(&s[1]).unwrap();
            let redis::Value::Array(node) = &s[2] else {
                continue;
            };
            let port: i64 = redis::from_redis_value(&node[1]).unwrap();
            if (from..=to).contains(&slot) {
                return self
                    .nodes
                    .iter()
                    .position(|n| i64::from(n.port) == port)
                    .unwrap();
            }
        }
        panic!("no node serves slot {slot}");
    }

    /// Starts moving `slot` from its owner to another node, as `redis-cli --cluster reshard`
    /// does: IMPORTING on the target, MIGRATING on the source, then every key MIGRATEd. Until
    /// [`Cluster::finish`], the source answers ASK for the slot's keys. Returns (source, target).
    fn begin_move(&self, slot: i64) -> (usize, usize) {
        let from = self.owner(slot);
        let to = (from + 1) % 3;
        let _: () = self.nodes[to].query(
            redis::cmd("CLUSTER")
                .arg("SETSLOT")
                .arg(slot)
                .arg("IMPORTING")
                .arg(self.id(from)),
        );
        let _: () = self.nodes[from].query(
            redis::cmd("CLUSTER")
                .arg("SETSLOT")
                .arg(slot)
                .arg("MIGRATING")
                .arg(self.id(to)),
        );
        let keys: Vec<String> = self.nodes[from].query(
            redis::cmd("CLUSTER")
                .arg("GETKEYSINSLOT")
                .arg(slot)
                .arg(10_000),
        );
        assert!(!keys.is_empty(), "slot {slot} holds the fleet's keys");
        let _: () = self.nodes[from].query(
            redis::cmd("MIGRATE")
                .arg("127.0.0.1")
                .arg(self.nodes[to].port)
                .arg("")
                .arg(0)
                .arg(5_000)
                .arg("KEYS")
                .arg(&keys),
        );
        (from, to)
    }

    /// Ends the move: every node is told the target owns the slot, so the source (and any
    /// client's stale map) answers MOVED from now on.
    fn finish(&self, slot: i64, to: usize) {
        let id = self.id(to);
        for n in &self.nodes {
            let _: () = n.query(
                redis::cmd("CLUSTER")
                    .arg("SETSLOT")
                    .arg(slot)
                    .arg("NODE")
                    .arg(&id),
            );
        }
    }

    /// What `key` holds on node `n`, read there even while its slot is being imported.
    fn hgetall_on(&self, n: usize, key: &str) -> Vec<(String, i64)> {
        let client = redis::Client::open(self.nodes[n].url()).unwrap();
        let mut con = client.get_connection().unwrap();
        let _: () = redis::cmd("ASKING").query(&mut con).unwrap();
        redis::cmd("HGETALL").arg(key).query(&mut con).unwrap()
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

/// Three agents of fleet `name` on the Redis Cluster `cluster`.
async fn fleet_on_cluster(
    name: &str,
    cluster: &Cluster,
    configure: impl Fn(&mut scamguard::app::config::Config),
) -> Fleet {
    fleet_at(3, name, cluster.url(), |c| {
        c.fleet.cluster = true;
        configure(c);
    })
    .await
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
    fleet_at(n, name, redis.url(), configure).await
}

/// `n` agents of fleet `name` on the Redis at `url` (standalone or a cluster's seeds).
async fn fleet_at(
    n: usize,
    name: &str,
    url: String,
    configure: impl Fn(&mut scamguard::app::config::Config),
) -> Fleet {
    log_lines();
    let tokens = tempfile::tempdir().unwrap();
    write_tokens(&tokens.path().join("tokens"));
    let mut f = Fleet {
        agents: Vec::new(),
        name: name.into(),
        url,
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
            .chain((0..self.agents.len()).filter(|j| *j != i))
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
    send_invite_with(h, id, caller, callee, "").await
}

/// The INVITE `caller` sends agent `h` for `callee` (with `extra` headers), `id` its Call-ID,
/// branch and From tag.
fn caller_invite(h: &Harness, id: &str, caller: &str, callee: &str, extra: &str) -> String {
    invite(
        "UDP",
        h.sip(),
        h.up_port(),
        id,
        &format!("z9hG4bK{id}"),
        &format!("<sip:{caller}@127.0.0.1>;tag={id}"),
        callee,
        extra,
        "",
    )
}

/// As [`send_invite`], with `extra` header lines.
async fn send_invite_with(
    h: &Harness,
    id: &str,
    caller: &str,
    callee: &str,
    extra: &str,
) -> (String, Result<Msg, u16>) {
    let inv = caller_invite(h, id, caller, callee, extra);
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

/// A call carrying this `Identity` header, otherwise [`Unanswered`].
struct Signed(String);

impl AsyncCall for Signed {
    async fn place(&self, h: &Harness, id: &str, caller: &str, callee: &str) -> String {
        let extra = format!("Identity: {}\r\n", self.0);
        let (inv, f) = send_invite_with(h, id, caller, callee, &extra).await;
        let f = match f {
            Ok(f) => f,
            Err(status) => return status.to_string(),
        };
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

/// A call through an agent whose next hop is a SIPp callee that is never there: the final answer
/// the caller gets (`480` once forwarded, the agent's own `603` when blocked). What the agent
/// made of a forwarded call is in its decision log ([`actions`]).
struct Through;

impl AsyncCall for Through {
    async fn place(&self, h: &Harness, id: &str, caller: &str, callee: &str) -> String {
        let inv = caller_invite(h, id, caller, callee, "");
        h.send_up(&inv).await;
        let r = recv_final(&h.up).await;
        h.send_up(&ack_for(h.up_port(), &inv, &r)).await;
        r.status().unwrap().to_string()
    }
}

/// The action each logged call got, by call id.
fn actions(log: &[serde_json::Value], ids: &[String]) -> Vec<String> {
    ids.iter()
        .map(|id| {
            let l = log
                .iter()
                .find(|l| l["call_id"] == id.as_str())
                .unwrap_or_else(|| panic!("no decision for {id}"));
            l["action"].as_str().unwrap().to_string()
        })
        .collect()
}

/// Calls screened so far by the agents of `f`, whatever their verdict.
async fn screened(f: &Fleet) -> u64 {
    let mut n = 0;
    for i in 0..f.agents.len() {
        let m = metrics(f.agents[i].agent.api_addr).await;
        for a in ["pass", "warn", "challenge", "block"] {
            n += metric(&m, &format!("scamguard_calls_total{{action=\"{a}\"}}"));
        }
    }
    n
}

/// (6) Redis paused with SIGSTOP under SIPp load, then resumed, then restarted empty. Three SIPp
/// callers (one per agent, 40 calls a second each, every call from a caller of its own) and a
/// SIPp callee keep calls flowing before, during and after the pause, and every one of their
/// calls gets its normal answer (SIPp exits with success only if no call failed). Each agent's
/// breaker opens (`scamguard_fleet_up 0`, one log line) and closes again (`1`, one line); what
/// Redis holds never counts a call twice; and after the restart the fleet's counts converge
/// again: a new campaign is warned and blocked at the fleet's levels as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_paused_under_sipp_load_then_restarted_costs_no_call_and_the_fleet_converges_again() {
    let redis = Redis::start();
    let port = redis.port;
    let dir = tempfile::tempdir().unwrap();
    let uas_port = support::free_port();
    let uas = support::sipp::Sipp::uas(uas_port, "uas_unavailable.xml", dir.path());
    let f = fleet("outage", &redis, |c| {
        velocity_levels(c);
        // Every call comes from 127.0.0.1: its source key counts them all, fleet-wide, at a
        // level no test reaches. Prefixes are left out: the callers below share some.
        let v = &mut c.signals.velocity;
        v.source.per_minute = Level {
            warn: Some(1_000_000),
            block: None,
        };
        v.prefix = Default::default();
        c.sip.next_hop = Some(std::net::SocketAddr::from(([127, 0, 0, 1], uas_port)).into());
    })
    .await;
    let name = f.name.clone();
    // The test's own calls, each from a caller of its own: answered 480 by the SIPp callee.
    let mut placed = 0;
    let mut call = |i: usize| {
        placed += 1;
        let id = format!("z{placed}");
        let caller = format!("+1415555{placed:04}");
        let h = &f.agents[i];
        async move { Through.place(h, &id, &caller, "+16175560000").await }
    };
    for i in 0..3 {
        assert_eq!(call(i).await, "480");
        f.settle(i).await;
    }
    let load: Vec<_> = (0..3)
        .map(|i| {
            let csv = support::sipp::calls_csv(
                dir.path(),
                &format!("agent{i}.csv"),
                (0..5_000).map(|n| {
                    (
                        format!("+1312{}{n:06}", 2 + i),
                        format!("+1617{}{n:06}", 5 + i),
                    )
                }),
            );
            support::sipp::Sipp::uac(
                f.agents[i].sip(),
                "uac_unanswered.xml",
                &csv,
                40,
                dir.path(),
            )
        })
        .collect();
    let flowing = screened(&f).await;
    eventually("SIPp's calls flow", || async {
        screened(&f).await >= flowing + 60
    })
    .await;

    redis.signal("-STOP");
    let paused = screened(&f).await;
    for i in 0..3 {
        eventually("the breaker opens", || f.up(i, 0)).await;
    }
    // Calls keep flowing while Redis is paused: SIPp's, and the test's own.
    for k in 0..6 {
        assert_eq!(call(k % 3).await, "480");
    }
    eventually("SIPp's calls flow while Redis is paused", || async {
        screened(&f).await >= paused + 150
    })
    .await;
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
    let resumed = screened(&f).await;
    eventually("SIPp's calls flow after the pause", || async {
        screened(&f).await >= resumed + 60
    })
    .await;
    let mut sipp_calls = 0;
    for uac in load {
        let out = uac.finish().await;
        let (ok, failed) = support::sipp::calls_counted(&out);
        assert_eq!(failed, 0, "{out}");
        sipp_calls += ok;
    }
    println!("SIPp: {sipp_calls} calls, none failed, across the pause");
    for i in 0..3 {
        assert_eq!(call(i).await, "480");
        f.settle(i).await;
    }
    // Deltas of a flush that failed are dropped, never sent again: Redis holds calls counted
    // while it answered (of the last minute: the key's window), and may hold some of the pause's
    // (a pipeline Redis read only when it resumed), never more calls than were screened.
    let key = format!("sg:{name}:{{vs:127.0.0.1}}:h");
    let fields: Vec<(String, i64)> = redis.query(redis::cmd("HGETALL").arg(&key));
    let stored: i64 = fields
        .iter()
        .filter(|(k, _)| k.starts_with("c:"))
        .map(|(_, v)| v)
        .sum();
    let total = screened(&f).await as i64;
    assert!(
        (6..=total).contains(&stored),
        "{stored} calls stored of {total} screened: {fields:?}"
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
    let got = f.campaign("+13125550188", 9, "after", Through).await;
    assert_eq!(
        got,
        ["480", "480", "480", "480", "480", "480", "480", "480", "603"]
    );
    drop(redis);
    let log = f.stop().await;
    let ids: Vec<String> = (0..8).map(|k| format!("after{k}")).collect();
    assert_eq!(
        actions(&log, &ids),
        ["pass", "pass", "pass", "pass", "pass", "warn", "warn", "warn"]
    );
    drop(uas);
}

// ------------------------------------------------------------------ calls in progress

/// A call the callee leaves ringing (a `100 Trying`, nothing more): in progress until
/// [`Held::end`].
struct Held {
    inv: String,
    f: Msg,
    agent: usize,
}

impl Held {
    /// The callee turns the call down (486): the call ends on its agent.
    async fn end(self, f: &Fleet) {
        let h = &f.agents[self.agent];
        h.send_down(&reply(&self.f, 486, "Busy Here", "h", "", ""))
            .await;
        let r = recv_final(&h.up).await;
        assert_eq!(r.status(), Some(486));
        h.send_up(&ack_for(h.up_port(), &self.inv, &r)).await;
        callee_acked(h, "held").await;
    }
}

/// One call from `caller` through agent `i`, left in progress when forwarded: what it became,
/// and the call to end later.
async fn hold(f: &Fleet, i: usize, id: &str, caller: &str, callee: &str) -> (String, Option<Held>) {
    let h = &f.agents[i];
    let inv = caller_invite(h, id, caller, callee, "");
    h.send_up(&inv).await;
    loop {
        tokio::select! {
            r = recv_final(&h.up) => {
                h.send_up(&ack_for(h.up_port(), &inv, &r)).await;
                return (r.status().unwrap().to_string(), None);
            }
            m = recv(&h.down) => {
                let m = m.0;
                // Each forwarded INVITE gets its 100 Trying, which ends its retransmissions; one
                // of an earlier call (the machine may be slow to let our 100 in) is skipped.
                h.send_down(&reply(&m, 100, "Trying", "h", "", "")).await;
                if m.method() == "INVITE" && m.hdr("Call-ID") == Some(id) {
                    let verdict = shown(&m);
                    return (verdict, Some(Held { inv, f: m, agent: i }));
                }
            }
        }
    }
}

/// Concurrent calls per caller: only the concurrent level applies (6 warn, 9 block, taken at
/// face value while too few calls have an outcome).
fn concurrent_levels(c: &mut scamguard::app::config::Config) {
    let v = &mut c.signals.velocity;
    v.rate_alone_factor = 1.0;
    v.caller.per_second = Level::default();
    v.caller.per_minute = Level::default();
    v.caller.distinct_callees = Level::default();
    v.caller.concurrent = Level::new(6, 9);
    v.source = Default::default();
    v.prefix = Default::default();
}

/// Concurrent calls from one caller spread round-robin over the agents (each holds at most 3,
/// below its own warn level of 6) are warned at the fleet's 6th call in progress and blocked at
/// its 9th; a call to an emergency number from the same caller still goes through. An agent
/// that stops without a word (as a crash would: nothing is cleaned up) leaves its calls in Redis,
/// yet within seconds they no longer count on the others; and calls that end on one agent stop
/// counting on the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_calls_count_fleet_wide_and_a_dead_agent_leaks_none() {
    let redis = Redis::start();
    let mut f = fleet("concurrent", &redis, concurrent_levels).await;
    let caller = "+13125550961";
    let mut held: Vec<Held> = Vec::new();
    let mut got = Vec::new();
    for k in 0..9 {
        let i = k % 3;
        let (v, h) = hold(
            &f,
            i,
            &format!("cc{k}"),
            caller,
            &format!("+1617555{:04}", 6000 + k),
        )
        .await;
        got.push(v);
        held.extend(h);
        f.settle(i).await;
    }
    assert_eq!(
        got,
        ["pass", "pass", "pass", "pass", "pass", "warn", "warn", "warn", "603"]
    );
    // Emergency calls are never blocked or delayed, whatever the caller's count.
    assert_eq!(
        Unanswered
            .place(&f.agents[1], "cc-911", caller, "911")
            .await,
        "pass"
    );
    f.settle(1).await;

    // Agent 2 holds 2 of the 8 calls in progress; it stops and says nothing to Redis.
    let name = f.name.clone();
    let gone = f.agents.remove(2);
    let agent2 = format!("{name}-agent-2");
    let key = format!("sg:{name}:{{vc:{caller}}}:h");
    let left: Option<i64> = redis.query(redis::cmd("HGET").arg(&key).arg(format!("n:{agent2}")));
    assert_eq!(
        left.map(|v| v % 100_000),
        Some(2),
        "agent 2's state in Redis"
    );
    let (mut log, _dir) = gone.stop().await;
    let last: f64 = redis.query(
        redis::cmd("ZSCORE")
            .arg(format!("sg:{name}:agents"))
            .arg(&agent2),
    );
    eventually("agent 2 is no longer alive for the others", || async {
        let (secs, micros): (String, String) = redis.query(&mut redis::cmd("TIME"));
        let now = secs.parse::<f64>().unwrap() * 1000.0 + micros.parse::<f64>().unwrap() / 1000.0;
        now - last > 2_500.0
    })
    .await;
    let left: Option<i64> = redis.query(redis::cmd("HGET").arg(&key).arg(format!("n:{agent2}")));
    assert_eq!(
        left.map(|v| v % 100_000),
        Some(2),
        "still in Redis: the others ignore it"
    );
    for i in 0..2 {
        f.settle(i).await;
    }
    // 3 held on agent 0, 3 on agent 1, and this one: 7, a warning; agent 2's 2 would block it.
    let (v, h) = hold(&f, 0, "cc9", caller, "+16175556009").await;
    assert_eq!(v, "warn");
    held.extend(h);
    f.settle(0).await;

    // Agent 1's calls end: agent 0 alone holds 4; the next is its 5th, below the warn level.
    for h in held.into_iter().filter(|h| h.agent == 1) {
        h.end(&f).await;
    }
    for i in [1, 0] {
        f.settle(i).await;
    }
    let (v, _h) = hold(&f, 0, "cc10", caller, "+16175556010").await;
    assert_eq!(v, "pass");
    log.extend(f.stop().await);
    let r = reason(&log, "cc5", "velocity");
    assert!(r.contains("caller concurrent-calls 6 (warn)"), "{r}");
    assert!(r.ends_with("fleet: 6 calls at once across 3 agents"), "{r}");
    assert!(reason(&log, "cc8", "velocity").contains("concurrent-calls 9 (block)"));
    assert!(reason(&log, "cc9", "velocity").contains("fleet: 7 calls at once"));
}

// ------------------------------------------------------------------ a Redis Cluster

/// (7) On a 3-master Redis Cluster: a campaign round-robin over the agents is warned and blocked
/// at the fleet's levels, as on one Redis, while the slot holding the caller's keys is moved to
/// another master under it (first ASK while the keys sit on the new master and the old one still
/// owns the slot, then MOVED once the new one does), and so is the slot of the edit stream and
/// the lists: every call gets its answer, no flush is lost to the move, and after it the counts,
/// a list edit and the fleet's agents all still work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_moves_the_fleets_slots_under_load_and_nothing_fails() {
    let cluster = Cluster::start();
    let f = fleet_on_cluster("cluster", &cluster, velocity_levels).await;
    let caller = "+13125550177";
    let mut got = Vec::new();
    let mut k = 0;
    let mut step = |n: usize| {
        let range = k..k + n;
        k += n;
        range
    };
    let calls = |range: std::ops::Range<usize>| {
        let f = &f;
        async move {
            let mut out = Vec::new();
            for k in range {
                let i = k % 3;
                let callee = format!("+1617555{:04}", 5000 + k);
                out.push(
                    Unanswered
                        .place(&f.agents[i], &format!("cl{k}"), caller, &callee)
                        .await,
                );
                f.settle(i).await;
            }
            out
        }
    };
    got.extend(calls(step(4)).await);
    let failed_before: u64 = {
        let mut n = 0;
        for i in 0..3 {
            n += f
                .metric(i, "scamguard_fleet_flushes_total{result=\"failed\"}")
                .await;
        }
        n
    };
    let counts = format!("sg:cluster:{{vc:{caller}}}:h");
    let slot = cluster.slot(&counts);
    let (from, to) = cluster.begin_move(slot);
    // The keys now live on the new master, while the old one still owns the slot: every agent
    // reaches them through ASK.
    got.extend(calls(step(2)).await);
    let calls_on = |n: usize| -> i64 {
        cluster
            .hgetall_on(n, &counts)
            .iter()
            .filter(|(k, _)| k.starts_with("c:"))
            .map(|(_, v)| v)
            .sum()
    };
    assert_eq!(
        calls_on(to),
        6,
        "the calls placed so far, counted on the new master"
    );
    // The edit stream's slot moves too (its stream, snapshot and agents' table). An edit made
    // meanwhile is acknowledged and enforced on its agent; its MULTI cannot follow ASK, so it
    // waits in the outbox until the move ends.
    let lists = cluster.slot("sg:cluster:{lists}:stream");
    let (_, lists_to) = cluster.begin_move(lists);
    f.add(0, "main", "+13125550971", "block").await;
    assert_eq!(f.verdict(0, "+13125550971").await, "block");
    // The moves end: the old masters answer MOVED.
    cluster.finish(slot, to);
    cluster.finish(lists, lists_to);
    assert_eq!(cluster.owner(slot), to);
    assert_ne!(from, to);
    got.extend(calls(step(6)).await);
    f.enforced(&[1, 2], "+13125550971", "block", std::time::Instant::now())
        .await;
    assert_eq!(
        got,
        [
            "pass", "pass", "pass", "pass", "pass", "warn", "warn", "warn", "603", "603", "603",
            "603"
        ]
    );
    let mut failed = 0;
    for i in 0..3 {
        failed += f
            .metric(i, "scamguard_fleet_flushes_total{result=\"failed\"}")
            .await;
        assert_eq!(f.metric(i, "scamguard_fleet_up").await, 1);
        assert_eq!(f.metric(i, "scamguard_fleet_breaker_opens_total").await, 0);
    }
    assert_eq!(failed, failed_before, "no flush failed during the moves");
    // After the moves: counts, edits and the agents' table.
    f.remove(2, "main", "+13125550971").await;
    f.enforced(&[0, 1], "+13125550971", "pass", std::time::Instant::now())
        .await;
    eventually("the agents count each other", || async {
        let mut all = true;
        for i in 0..3 {
            all &= f.metric(i, "scamguard_fleet_agents").await == 3;
        }
        all
    })
    .await;
    f.stop().await;
}

// ------------------------------------------------------------------ STIR

/// A SHAKEN PKI of the test's own: a root (the agents' anchor), an STI-CA, and a service
/// provider's certificate whose chain an x5u URL serves, with its signing key.
struct Pki {
    root_pem: String,
    chain_pem: String,
    leaf_key: p256::ecdsa::SigningKey,
}

fn pki() -> Pki {
    use rcgen::{CertifiedIssuer, KeyPair, PKCS_ECDSA_P256_SHA256};
    use support::stir_pki::{ca, leaf, p256_of};
    let alg = &PKCS_ECDSA_P256_SHA256;
    let root = CertifiedIssuer::self_signed(ca("fleet root"), KeyPair::generate_for(alg).unwrap())
        .unwrap();
    let inter = CertifiedIssuer::signed_by(
        ca("fleet STI-CA"),
        KeyPair::generate_for(alg).unwrap(),
        &root,
    )
    .unwrap();
    let kp = KeyPair::generate_for(alg).unwrap();
    let cert = leaf("fleet SP").signed_by(&kp, &inter).unwrap();
    Pki {
        root_pem: root.pem(),
        chain_pem: format!("{}{}", cert.pem(), inter.pem()),
        leaf_key: p256_of(&kp),
    }
}

/// A fresh A-attested PASSporT from `caller` to `callee`, signed now.
fn passport(pki: &Pki, x5u: &str, caller: &str, callee: &str) -> String {
    let iat = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = format!(
        "{{\"attest\":\"A\",\"dest\":{{\"tn\":[\"{}\"]}},\"iat\":{iat},\"orig\":{{\"tn\":\"{}\"}},\"origid\":\"123e4567-e89b-12d3-a456-426655440000\"}}",
        &callee[1..],
        &caller[1..]
    );
    scamguard::screening::signals::stir::sign_identity(&pki.leaf_key, x5u, &claims, false)
}

/// The STIR certificate cache and PASSporT replays, fleet-wide. Agent A fetches the x5u chain;
/// B and C take it from the fleet's store and never fetch it, yet verify with it. A PASSporT
/// verified on A and presented again on B (another call) is known fleet-wide as a replay within
/// a flush: B counts it, and every later presentation on B (or A) is judged a replay at once,
/// its attestation not credited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fleet_shares_certificates_and_catches_a_passport_replayed_on_another_agent() {
    let pki = pki();
    let base = support::stir_pki::serve(std::collections::HashMap::from([(
        "/sp.pem",
        pki.chain_pem.clone(),
    )]))
    .await;
    let x5u = format!("{base}/sp.pem");
    let anchors = tempfile::tempdir().unwrap();
    std::fs::write(anchors.path().join("root.pem"), &pki.root_pem).unwrap();
    let dir = anchors.path().display().to_string();
    let redis = Redis::start();
    let f = fleet("stir", &redis, |c| {
        c.certs.anchors_dir = Some(dir.clone());
        c.signals.velocity.enabled = false;
    })
    .await;
    let (caller, callee) = ("+12027620143", "+12025550100");
    let fetched = |i: usize, result: &'static str| {
        let f = &f;
        async move {
            f.metric(
                i,
                &format!("scamguard_cert_fetches_total{{result=\"{result}\"}}"),
            )
            .await
        }
    };
    // A's cold cache: the call goes on unattested while A fetches the chain and offers it.
    let signed = Signed(passport(&pki, &x5u, caller, callee));
    assert_eq!(
        signed.place(&f.agents[0], "st0", caller, callee).await,
        "pass"
    );
    eventually("A fetched the chain", || async {
        fetched(0, "ok").await == 1
    })
    .await;
    eventually("the fleet holds it", || async {
        redis.query::<bool>(redis::cmd("HEXISTS").arg("sg:stir:{x5u}:chains").arg(&x5u))
    })
    .await;
    // B and C: their cold caches take it from the fleet, no fetch of their own.
    for (i, id) in [(1, "st1"), (2, "st2")] {
        let signed = Signed(passport(&pki, &x5u, caller, callee));
        assert_eq!(signed.place(&f.agents[i], id, caller, callee).await, "pass");
        eventually("the chain from the fleet", || async {
            f.metric(i, "scamguard_cert_from_fleet_total").await == 1
        })
        .await;
        assert_eq!(fetched(i, "ok").await, 0);
        assert_eq!(fetched(i, "error").await, 0);
    }
    // One PASSporT: verified on A, then presented on B on another call.
    let p = Signed(passport(&pki, &x5u, caller, callee));
    assert_eq!(p.place(&f.agents[0], "rp-a", caller, callee).await, "pass");
    f.settle(0).await;
    assert_eq!(p.place(&f.agents[1], "rp-b", caller, callee).await, "pass");
    f.settle(1).await;
    assert_eq!(
        f.metric(1, "scamguard_fleet_passport_replays_total").await,
        1
    );
    assert_eq!(
        f.metric(0, "scamguard_fleet_passport_replays_total").await,
        0
    );
    // From now on B judges it a replay at once, and so does A (it saw it first).
    assert_eq!(p.place(&f.agents[1], "rp-c", caller, callee).await, "pass");
    assert_eq!(p.place(&f.agents[0], "rp-d", caller, callee).await, "pass");
    // A fresh PASSporT still verifies everywhere.
    let fresh = Signed(passport(&pki, &x5u, caller, callee));
    assert_eq!(
        fresh.place(&f.agents[2], "st-fresh", caller, callee).await,
        "pass"
    );
    let log = f.stop().await;
    for (id, what) in [
        ("st1", "is being fetched"),
        ("st-fresh", "verified, attestation A"),
        ("rp-a", "verified, attestation A"),
        ("rp-b", "verified, attestation A"),
        ("rp-c", "replayed: this PASSporT (attestation A) was verified on another call on another agent of the fleet"),
        ("rp-d", "replayed: this PASSporT (attestation A) was verified on another call here"),
    ] {
        let r = reason(&log, id, "stir");
        assert!(r.contains(what), "{id}: {r}");
    }
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
