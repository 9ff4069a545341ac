//! Many agents, one view of every caller: velocity and wangiri counts shared through Redis (or
//! Valkey) when `[fleet]` is on. `docs/fleet.md` has the design; this is its wiring.
//!
//! The hot path never waits on Redis. Calls are counted locally, in the signals' own tables
//! ([`crate::screening::signals::shared`]); this module's task wakes every `flush_ms`, drains the
//! deltas counted since, and sends them in **one pipeline**: one script call per key, which adds
//! the key's deltas, forgets what slid out of its windows, caps it, sets its expiry and returns
//! its totals. The same pipeline reads back the keys worth watching (those whose fleet totals are
//! at least half a level), so the view of a campaign stays fresh on every agent that has seen it.
//! The totals are installed in the signals' tables, where the next decision takes the larger of
//! the local count and the fleet's total plus the local part not yet sent.
//!
//! Every Redis round trip runs under a hard timeout of our own (`timeout_ms`), the connection
//! included. A failed or timed-out flush is not retried: its deltas are dropped (counted in
//! `scamguard_fleet_keys_dropped_total`), because a timeout does not say whether Redis applied
//! them, and sending counters twice would count calls twice. After `breaker_failures` failures
//! in a row the breaker opens: one log line, `scamguard_fleet_up 0`, and decisions fall back to
//! the agent's own counts until a probe (every `breaker_probe_ms`) succeeds, which closes it
//! with one more line.
//!
//! List edits travel on their own task and connection ([`edits`]): the fleet's edit stream, its
//! snapshot and each agent's outbox. STIR certificate chains are shared by the certificate
//! fetcher through [`CertStore`]. PASSporTs verified here are claimed fleet-wide in the same
//! flush as the counts (`SET NX` with their freshness window), so that one presented again on
//! another agent is known there as a replay.
//!
//! With `cluster = true` the same keys go to a Redis Cluster: every key a script or a `MULTI`
//! touches shares one hash tag (one slot), a flush sends its commands each to its slot's master
//! at once instead of one pipeline, and moved slots (MOVED, ASK) are followed within the timeout.
//!
//! Knows nothing of SIP or of how a decision is made: it moves deltas out and totals in.

mod certs;
mod edits;
mod reports;

pub use certs::CertStore;
pub use edits::{AgentRow, EditRunner, EditStats};
pub use reports::Relay;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;
use redis::{AsyncConnectionConfig, Client, Cmd, RedisFuture, RedisResult, Script, Value};
use serde::Deserialize;
use tokio::time::timeout;

use super::clock::now_ms;
use crate::metrics::{Collect, Counter, Exposition, Gauge};
use crate::screening::signals::replay::Claim;
use crate::screening::signals::shared::{
    concurrent_field, Delta, Family, Pending, Sharing, AGENT_LETTER, CONCURRENT_LETTER,
    CONCURRENT_REFRESH_MS,
};
use crate::screening::signals::SignalState;

/// `[fleet]`: share velocity and wangiri counts with the other agents through Redis. Off by
/// default: one agent, as before, with no Redis.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FleetConfig {
    pub enabled: bool,
    /// `redis://host:port/db` (a standalone Redis or Valkey); with `cluster`, one or more nodes
    /// of the cluster, separated by commas (the others are learnt from them).
    pub url: String,
    /// The Redis is a Redis Cluster: keys are spread over its masters by hash slot, and moved
    /// slots (MOVED, ASK) are followed within the same timeout.
    pub cluster: bool,
    /// The fleet's name: the prefix of every key, so that fleets can share one Redis.
    pub name: String,
    /// This agent's id in the fleet; empty: the host name and the SIP port.
    pub agent_id: String,
    /// How often deltas are sent and totals read back.
    pub flush_ms: u64,
    /// The hard bound on one Redis round trip (connecting included).
    pub timeout_ms: u64,
    /// Failed or timed-out round trips in a row that open the breaker.
    pub breaker_failures: u32,
    /// While the breaker is open, how often Redis is tried again.
    pub breaker_probe_ms: u64,
    /// Keys sent per flush at most (deltas and keys read back); the deltas of the rest are
    /// dropped and counted.
    pub max_keys_per_flush: usize,
    /// Keys read back every flush at most, because their fleet totals are high.
    pub max_watched: usize,
    /// How often list edits are published to the fleet's edit stream and read from it.
    pub edit_poll_ms: u64,
    /// Edits the stream keeps (about); an agent away for longer loads the snapshot instead.
    pub stream_max_len: u64,
}

impl Default for FleetConfig {
    fn default() -> Self {
        FleetConfig {
            enabled: false,
            url: "redis://127.0.0.1:6379".into(),
            cluster: false,
            name: "scamguard".into(),
            agent_id: String::new(),
            flush_ms: 200,
            timeout_ms: 100,
            breaker_failures: 3,
            breaker_probe_ms: 1_000,
            max_keys_per_flush: 20_000,
            max_watched: 10_000,
            edit_poll_ms: 100,
            stream_max_len: 100_000,
        }
    }
}

impl FleetConfig {
    /// The URLs in `url`: one, or a cluster's nodes separated by commas.
    fn urls(&self) -> impl Iterator<Item = &str> {
        self.url.split(',').map(str::trim).filter(|u| !u.is_empty())
    }

    /// The client for the configured Redis; `None` when the URL is invalid (`validate` says so).
    /// A cluster client follows MOVED and ASK at once, retries at most twice after a short
    /// wait, and bounds connecting and answering by `timeout_ms`: the redis crate's own
    /// defaults (six retries with waits of up to seconds) would outlast every timeout here.
    fn target(&self) -> Option<Target> {
        if !self.cluster {
            return Client::open(self.url.as_str()).ok().map(Target::Single);
        }
        let t = Duration::from_millis(self.timeout_ms);
        ClusterClientBuilder::new(self.urls().collect::<Vec<_>>())
            .retries(3)
            .min_retry_wait(1)
            .max_retry_wait((self.timeout_ms / 4).max(2))
            .connection_timeout(t)
            .response_timeout(t)
            .build()
            .ok()
            .map(|c| Target::Cluster(Box::new(c)))
    }

    /// Every problem with the section, each naming the key and what was expected.
    pub fn validate(&self) -> Vec<String> {
        let mut p = Vec::new();
        if !self.enabled {
            return p;
        }
        let urls: Vec<&str> = self.urls().collect();
        let one = urls.len() == 1 || self.cluster;
        if !one
            || urls.is_empty()
            || urls
                .iter()
                .any(|u| !u.starts_with("redis://") || Client::open(*u).is_err())
        {
            p.push(format!(
                "fleet.url {:?} is not a Redis URL; expected redis://HOST:PORT such as \"redis://127.0.0.1:6379\" (with cluster = true, one or more separated by commas)",
                self.url
            ));
        }
        let plain = |s: &str| {
            !s.is_empty()
                && s.len() <= 64
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
        };
        if !plain(&self.name) {
            p.push(format!(
                "fleet.name {:?} is not a name; expected 1 to 64 letters, digits, '-', '_', '.' or ':'",
                self.name
            ));
        }
        if !self.agent_id.is_empty() && !plain(&self.agent_id) {
            p.push(format!(
                "fleet.agent_id {:?} is not an id; expected 1 to 64 letters, digits, '-', '_', '.' or ':' (or empty for host:port)",
                self.agent_id
            ));
        }
        for (k, v, lo, hi) in [
            ("flush_ms", self.flush_ms, 10, 10_000),
            ("timeout_ms", self.timeout_ms, 1, 10_000),
            ("breaker_probe_ms", self.breaker_probe_ms, 10, 600_000),
            ("edit_poll_ms", self.edit_poll_ms, 10, 1_000),
        ] {
            if !(lo..=hi).contains(&v) {
                p.push(format!(
                    "fleet.{k} is {v}; expected {lo} to {hi} milliseconds"
                ));
            }
        }
        if self.breaker_failures == 0 {
            p.push("fleet.breaker_failures is 0; expected at least 1 failure".into());
        }
        if self.stream_max_len < 1_000 {
            p.push(format!(
                "fleet.stream_max_len is {}; expected at least 1000 edits",
                self.stream_max_len
            ));
        }
        if self.max_keys_per_flush == 0 || self.max_watched == 0 {
            p.push("fleet.max_keys_per_flush and max_watched must be at least 1".into());
        }
        p
    }
}

/// What `/metrics` shows of the fleet.
#[derive(Default)]
pub struct FleetStats {
    /// 1 while Redis answers (the breaker is closed), 0 otherwise.
    pub up: Gauge,
    pub flushes_ok: Counter,
    pub flushes_failed: Counter,
    /// Keys whose deltas were sent.
    pub keys_sent: Counter,
    /// Keys whose deltas were dropped: a failed flush, the breaker open, or over the cap.
    pub keys_dropped: Counter,
    pub breaker_opens: Counter,
    pub watched: Gauge,
    /// Agents that flushed within the last minute, this one included.
    pub agents: Gauge,
    /// PASSporTs verified here that the fleet had already seen on another call.
    pub replays: Counter,
    /// Unix ms of the last flush that read totals back.
    last_ok_ms: AtomicU64,
    sharing: Option<Arc<Sharing>>,
}

impl Collect for FleetStats {
    fn collect(&self, out: &mut Exposition) {
        out.gauge(
            "scamguard_fleet_up",
            "1 while the fleet's Redis answers and counts are shared; 0 while the breaker is open.",
            &[],
            self.up.get(),
        );
        let help = "Flushes of counts to the fleet's Redis, by result.";
        for (r, c) in [("ok", &self.flushes_ok), ("failed", &self.flushes_failed)] {
            out.counter(
                "scamguard_fleet_flushes_total",
                help,
                &[("result", r)],
                c.get(),
            );
        }
        out.counter(
            "scamguard_fleet_keys_sent_total",
            "Keys whose deltas reached the fleet's Redis.",
            &[],
            self.keys_sent.get(),
        );
        out.counter(
            "scamguard_fleet_keys_dropped_total",
            "Keys whose deltas were dropped (failed flush, breaker open, over the cap); never sent twice.",
            &[],
            self.keys_dropped.get(),
        );
        out.counter(
            "scamguard_fleet_breaker_opens_total",
            "Times the breaker opened because Redis failed or timed out.",
            &[],
            self.breaker_opens.get(),
        );
        out.gauge(
            "scamguard_fleet_watched_keys",
            "Keys read back every flush because their fleet totals are high.",
            &[],
            self.watched.get(),
        );
        out.counter(
            "scamguard_fleet_passport_replays_total",
            "PASSporTs verified here that another call in the fleet had already presented (replays).",
            &[],
            self.replays.get(),
        );
        out.gauge(
            "scamguard_fleet_agents",
            "Agents of the fleet that flushed within the last minute, this one included.",
            &[],
            self.agents.get(),
        );
        let last = self.last_ok_ms.load(Ordering::Relaxed);
        let lag = if last == 0 {
            -1
        } else {
            now_ms().saturating_sub(last) as i64
        };
        out.gauge(
            "scamguard_fleet_flush_lag_ms",
            "Milliseconds since totals were last read back from the fleet (-1: never).",
            &[],
            lag,
        );
        if let Some(s) = &self.sharing {
            out.counter(
                "scamguard_fleet_keys_unlisted_total",
                "Keys whose deltas waited a flush because too many keys had deltas.",
                &[],
                s.unlisted.load(Ordering::Relaxed),
            );
        }
    }
}

/// Sharing turned on in the signals, with the stats `/metrics` renders; the task is made by
/// [`Shared::runner`] once the agent's SIP port is known.
pub struct Shared {
    pub sharing: Arc<Sharing>,
    pub stats: Arc<FleetStats>,
    /// The edit stream's, which `GET /v1/fleet` reads too.
    pub edits: Arc<EditStats>,
}

impl Shared {
    /// Turns sharing on in `signals` (before the engine is shared with the SIP side).
    pub fn enable(cfg: &FleetConfig, signals: &mut SignalState) -> Shared {
        let sharing = signals.share_with_fleet(cfg.max_keys_per_flush);
        let stats = Arc::new(FleetStats {
            sharing: Some(sharing.clone()),
            ..FleetStats::default()
        });
        let edits = Arc::new(EditStats::new(&cfg.name));
        Shared {
            sharing,
            stats,
            edits,
        }
    }

    /// The edit stream's task for the agent listening for SIP on `sip_port`.
    pub fn edit_runner(
        &self,
        cfg: &FleetConfig,
        sip_port: u16,
        live: Arc<crate::lists::overlay::Live>,
    ) -> EditRunner {
        let agent = agent_id(cfg, sip_port);
        let _ = self.edits.agent.set(agent.clone());
        EditRunner::new(cfg, agent, live, self.edits.clone())
    }

    /// The flush task for the agent listening for SIP on `sip_port`.
    pub fn runner(&self, cfg: &FleetConfig, sip_port: u16) -> Runner {
        let agent = agent_id(cfg, sip_port);
        Runner {
            client: cfg.target(),
            con: None,
            script: Script::new(SCRIPT),
            prefix: format!("sg:{}:", cfg.name),
            agent_field: format!("{AGENT_LETTER}:{agent}"),
            concurrent_field: format!("{CONCURRENT_LETTER}:{agent}"),
            agent,
            watched: HashMap::new(),
            stated: HashMap::new(),
            alive: std::collections::HashSet::new(),
            failures: 0,
            open: false,
            next_probe_ms: 0,
            sharing: self.sharing.clone(),
            stats: self.stats.clone(),
            cfg: cfg.clone(),
        }
    }
}

/// Where the fleet's Redis is: one server, or a cluster.
pub(crate) enum Target {
    Single(Client),
    Cluster(Box<ClusterClient>),
}

/// A connection to the fleet's Redis, multiplexed either way (clones share it).
#[derive(Clone)]
pub(crate) enum Con {
    Single(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl redis::aio::ConnectionLike for Con {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Con::Single(c) => c.req_packed_command(cmd),
            Con::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Con::Single(c) => c.req_packed_commands(cmd, offset, count),
            Con::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Con::Single(c) => c.get_db(),
            Con::Cluster(c) => c.get_db(),
        }
    }
}

impl Con {
    /// The answers to `cmds`, in order. A standalone Redis takes them as one pipeline; a
    /// cluster takes each on its own, all sent at once, since a cluster pipeline must stay
    /// within one hash slot and these are spread over many.
    async fn send_all(&mut self, cmds: Vec<Cmd>) -> RedisResult<Vec<Value>> {
        match self {
            Con::Single(c) => {
                let mut pipe = redis::pipe();
                for cmd in cmds {
                    pipe.add_command(cmd);
                }
                pipe.query_async(c).await
            }
            Con::Cluster(c) => {
                futures_util::future::try_join_all(cmds.iter().map(|cmd| {
                    let mut c = c.clone();
                    async move { cmd.query_async::<Value>(&mut c).await }
                }))
                .await
            }
        }
    }
}

/// An agent that has not flushed for this long is no longer counted in the fleet.
const AGENT_TTL_MS: u64 = 60_000;

/// Keys whose calls in progress this agent restates, at most (beyond it a state is left to
/// age out of Redis, within `CONCURRENT_KEEP_SECS`).
const MAX_STATED: usize = 100_000;

/// This agent's id in the fleet: the configured one, else `host:sip-port`.
fn agent_id(cfg: &FleetConfig, sip_port: u16) -> String {
    if cfg.agent_id.is_empty() {
        format!("{}:{sip_port}", host_name())
    } else {
        cfg.agent_id.clone()
    }
}

/// The host's name, for the default agent id.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "scamguard".into())
}

/// Per key: add the callees (ZADD: idempotent) and counters (HINCRBY), forget what slid out of
/// the windows, cap the callees, refresh the expiry when something was written, and return the
/// distinct callees and the counters left. KEYS: the callees' sorted set and the counters' hash.
/// ARGV: callee horizon (ms), callee cap, ttl (ms), agent field, agent second, this agent's calls
/// in progress field and its state (`-`: unchanged, `0`: none, else the stated value), then
/// three counted lists: callees (score, member), counters (field, change), oldest slots
/// (letter, slot). A state of calls in progress is kept by its second (`n` in the oldest).
const SCRIPT: &str = r"
local horizon, cap, ttl = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local wrote = false
if ARGV[7] == '0' then
  redis.call('HDEL', KEYS[2], ARGV[6]); wrote = true
elseif ARGV[7] ~= '-' then
  redis.call('HSET', KEYS[2], ARGV[6], ARGV[7]); wrote = true
end
local i = 8
local n = tonumber(ARGV[i]); i = i + 1
wrote = wrote or n > 0
if n > 0 then
  local args = {}
  for j = 1, n do args[#args + 1] = ARGV[i]; args[#args + 1] = ARGV[i + 1]; i = i + 2 end
  redis.call('ZADD', KEYS[1], unpack(args))
end
n = tonumber(ARGV[i]); i = i + 1
for j = 1, n do
  redis.call('HINCRBY', KEYS[2], ARGV[i], ARGV[i + 1]); i = i + 2; wrote = true
end
if wrote then redis.call('HSET', KEYS[2], ARGV[4], ARGV[5]) end
n = tonumber(ARGV[i]); i = i + 1
local oldest = {}
for j = 1, n do oldest[ARGV[i]] = tonumber(ARGV[i + 1]); i = i + 2 end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', horizon)
local z = redis.call('ZCARD', KEYS[1])
if z > cap then redis.call('ZREMRANGEBYRANK', KEYS[1], 0, z - cap - 1); z = cap end
local flat = redis.call('HGETALL', KEYS[2])
local keep = {}
for j = 1, #flat, 2 do
  local f, v = flat[j], flat[j + 1]
  local letter = string.sub(f, 1, 1)
  local slot
  if letter == 'a' then
    slot = tonumber(v)
  elseif letter == 'n' then
    slot = tonumber(v); if slot ~= nil then slot = math.floor(slot / 100000) end
  else
    slot = tonumber(string.sub(f, 3))
  end
  local min = oldest[letter]
  if min ~= nil and slot ~= nil and slot < min then
    redis.call('HDEL', KEYS[2], f)
  else
    keep[#keep + 1] = f; keep[#keep + 1] = v
  end
end
if wrote then
  redis.call('PEXPIRE', KEYS[1], ttl)
  redis.call('PEXPIRE', KEYS[2], ttl)
end
return {z, keep}
";

/// The flush task's state: the connection, the breaker and the keys read back every flush.
pub struct Runner {
    cfg: FleetConfig,
    client: Option<Target>,
    con: Option<Con>,
    script: Script,
    prefix: String,
    agent: String,
    agent_field: String,
    concurrent_field: String,
    /// Keys worth reading back every flush, with their slot in the local table.
    watched: HashMap<(Family, Box<str>), u64>,
    /// Keys whose calls in progress this agent has stated (or must state again, `0`): their
    /// slot in the local table and when the state last reached Redis.
    stated: HashMap<(Family, Box<str>), (u64, u64)>,
    /// The agents that flushed lately (within [`Runner::alive_ms`]): only their calls in
    /// progress count.
    alive: std::collections::HashSet<String>,
    failures: u32,
    open: bool,
    next_probe_ms: u64,
    sharing: Arc<Sharing>,
    stats: Arc<FleetStats>,
}

/// One key in a flush: its deltas, if any, and where its totals go.
struct Item {
    family: Family,
    key: Box<str>,
    token: u64,
    delta: Option<Delta>,
}

impl Runner {
    /// Flush every `flush_ms` until stopped. The first round connects; a Redis that is not
    /// there opens the breaker at once, and the agent screens on its own counts meanwhile.
    pub async fn run(mut self, signals: Arc<super::Screener>, stop: impl std::future::Future) {
        tokio::pin!(stop);
        let mut tick = tokio::time::interval(Duration::from_millis(self.cfg.flush_ms));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        if self.connect().await.is_ok() {
            tracing::info!(
                "fleet {:?}: sharing counts through {} as agent {}",
                self.cfg.name,
                self.cfg.url,
                self.agent
            );
            self.closed();
        } else {
            self.failures = self.cfg.breaker_failures.saturating_sub(1);
            self.failed("cannot connect");
        }
        loop {
            tokio::select! {
                _ = tick.tick() => self.flush(&signals.engine.signals).await,
                _ = &mut stop => break,
            }
        }
    }

    fn stale_ms(&self) -> u64 {
        self.cfg
            .flush_ms
            .saturating_mul(5)
            .saturating_add(self.cfg.timeout_ms)
    }

    fn closed(&mut self) {
        self.failures = 0;
        self.open = false;
        self.stats.up.set(1);
        self.sharing.set_in_force(true, self.stale_ms());
    }

    /// A round trip failed: after `breaker_failures` in a row the breaker opens (one line).
    fn failed(&mut self, why: &str) {
        self.con = None;
        self.stats.flushes_failed.inc();
        self.failures = self.failures.saturating_add(1);
        if !self.open && self.failures >= self.cfg.breaker_failures {
            self.open = true;
            self.stats.up.set(0);
            self.stats.breaker_opens.inc();
            self.sharing.set_in_force(false, self.stale_ms());
            self.next_probe_ms = now_ms().saturating_add(self.cfg.breaker_probe_ms);
            tracing::warn!(
                "fleet {:?}: Redis at {} {why}; breaker open, agent {} screens on its own counts until it answers",
                self.cfg.name,
                self.cfg.url,
                self.agent
            );
        }
    }

    /// A connection with the script loaded, within the timeout.
    async fn connect(&mut self) -> Result<(), &'static str> {
        let client = self.client.as_ref().ok_or("has an invalid URL")?;
        let t = Duration::from_millis(self.cfg.timeout_ms);
        self.con = Some(connect_with(client, t, &[&self.script]).await?);
        Ok(())
    }

    /// How recently an agent must have flushed for its calls in progress to count: ten flush
    /// intervals, at least 2 s (an agent that died, or whose breaker opened, stops counting
    /// within this).
    fn alive_ms(&self) -> u64 {
        self.cfg.flush_ms.saturating_mul(10).clamp(2_000, 60_000)
    }

    async fn flush(&mut self, signals: &SignalState) {
        let now = now_ms();
        let deltas = signals.drain_shared();
        if self.open {
            self.stats.keys_dropped.add(deltas.len() as u64);
            self.restate_later(
                deltas
                    .iter()
                    .map(|d| (d.family, &d.key, d.token, &d.pending)),
            );
            if now >= self.next_probe_ms {
                self.next_probe_ms = now.saturating_add(self.cfg.breaker_probe_ms);
                if self.connect().await.is_ok() {
                    tracing::info!(
                        "fleet {:?}: Redis at {} answers again; breaker closed, agent {} shares counts again",
                        self.cfg.name,
                        self.cfg.url,
                        self.agent
                    );
                    self.closed();
                }
            }
            return;
        }
        if self.con.is_none() {
            if let Err(why) = self.connect().await {
                self.stats.keys_dropped.add(deltas.len() as u64);
                self.restate_later(
                    deltas
                        .iter()
                        .map(|d| (d.family, &d.key, d.token, &d.pending)),
                );
                self.failed(why);
                return;
            }
        }
        let mut items = self.items(deltas, signals, now);
        items.retain(|it| signals.shared_windows(it.family).is_some());
        let claims = signals.drain_passports();
        let cmds = self.commands(signals, &claims, &items, now);
        let Some(con) = self.con.as_mut() else { return };
        let sent = items.iter().filter(|i| i.delta.is_some()).count() as u64;
        let t = Duration::from_millis(self.cfg.timeout_ms);
        match timeout(t, con.send_all(cmds)).await {
            Ok(Ok(values)) => self.flushed(signals, claims, items, values, now),
            Ok(Err(e)) => {
                self.stats.keys_dropped.add(sent);
                self.restate_items_later(&items);
                tracing::debug!("fleet flush failed: {e}");
                self.failed("failed a flush");
            }
            Err(_) => {
                self.stats.keys_dropped.add(sent);
                self.restate_items_later(&items);
                self.failed("did not answer in time");
            }
        }
    }

    /// A flush's commands: the heartbeat, the PASSporT claims, then one script call per key.
    fn commands(
        &self,
        signals: &SignalState,
        claims: &[Claim],
        items: &[Item],
        now: u64,
    ) -> Vec<Cmd> {
        // Every flush says this agent is alive, even with nothing to send: the fleet's agents are
        // counted from it, calls in progress count only for agents alive, and a Redis that
        // stopped answering is noticed without traffic.
        let agents = format!("{}agents", self.prefix);
        let mut cmds = vec![
            redis::cmd("ZADD")
                .arg(&agents)
                .arg(now)
                .arg(&self.agent)
                .clone(),
            redis::cmd("ZREMRANGEBYSCORE")
                .arg(&agents)
                .arg("-inf")
                .arg(now.saturating_sub(AGENT_TTL_MS))
                .clone(),
            redis::cmd("PEXPIRE").arg(&agents).arg(AGENT_TTL_MS).clone(),
            redis::cmd("ZCARD").arg(&agents).clone(),
            redis::cmd("ZRANGEBYSCORE")
                .arg(&agents)
                .arg(now.saturating_sub(self.alive_ms()))
                .arg("+inf")
                .clone(),
        ];
        // Each PASSporT verified since the last flush is claimed for its freshness window; the
        // answer is the call that holds it (`GET`), this one's when it was free.
        for c in claims {
            cmds.push(
                redis::cmd("SET")
                    .arg(format!("{}{{pp:{:016x}}}", self.prefix, c.passport))
                    .arg(format!("{:016x}", c.call))
                    .arg("NX")
                    .arg("GET")
                    .arg("PX")
                    .arg(c.ttl_ms.max(1))
                    .clone(),
            );
        }
        for it in items {
            if let Some(c) = self.call(signals, it, now) {
                cmds.push(c);
            }
        }
        cmds
    }

    /// A flush Redis answered: the agents alive, the PASSporT claims held elsewhere, the states
    /// of calls in progress taken, and the totals into the signals' tables.
    fn flushed(
        &mut self,
        signals: &SignalState,
        claims: Vec<Claim>,
        items: Vec<Item>,
        values: Vec<Value>,
        now: u64,
    ) {
        let sent = items.iter().filter(|i| i.delta.is_some()).count() as u64;
        self.failures = 0;
        self.stats.flushes_ok.inc();
        self.stats.keys_sent.add(sent);
        self.stats.last_ok_ms.store(now_ms(), Ordering::Relaxed);
        let mut values = values.into_iter().skip(3);
        if let Some(n) = values.next() {
            let n = redis::from_redis_value::<i64>(&n).unwrap_or(0);
            self.stats.agents.set(n);
        }
        if let Some(a) = values.next() {
            let a = redis::from_redis_value::<Vec<String>>(&a).unwrap_or_default();
            self.alive = a.into_iter().collect();
        }
        for c in claims {
            let held = values
                .next()
                .and_then(|v| redis::from_redis_value::<Option<String>>(&v).ok())
                .flatten()
                .and_then(|h| u64::from_str_radix(&h, 16).ok());
            if let Some(h) = held {
                if signals.passport_held(c, h, now) {
                    self.stats.replays.inc();
                }
            }
        }
        self.stated_now(&items, now);
        self.install(signals, items, values, now);
    }

    /// States of calls in progress that did not reach Redis: stated again at the next flush
    /// that can (the current count then, which is the truth whatever was lost). A state is a
    /// value, not a change, so stating it twice counts nothing twice.
    fn restate_later<'a>(
        &mut self,
        keys: impl Iterator<Item = (Family, &'a Box<str>, u64, &'a Pending)>,
    ) {
        for (family, key, token, p) in keys {
            if p.concurrent.is_none() {
                continue;
            }
            let k = (family, key.clone());
            if self.stated.len() < MAX_STATED || self.stated.contains_key(&k) {
                self.stated.insert(k, (token, 0));
            }
        }
    }

    fn restate_items_later(&mut self, items: &[Item]) {
        self.restate_later(
            items
                .iter()
                .filter_map(|it| Some((it.family, &it.key, it.token, &it.delta.as_ref()?.pending))),
        );
    }

    /// The states of calls in progress Redis took: a key with calls in progress is stated again
    /// every `CONCURRENT_REFRESH_MS`; one with none is forgotten.
    fn stated_now(&mut self, items: &[Item], now: u64) {
        for it in items {
            let Some(n) = it.delta.as_ref().and_then(|d| d.pending.concurrent) else {
                continue;
            };
            let k = (it.family, it.key.clone());
            if n == 0 {
                self.stated.remove(&k);
            } else if self.stated.len() < MAX_STATED || self.stated.contains_key(&k) {
                self.stated.insert(k, (it.token, now));
            }
        }
    }

    /// The keys of one flush: every key with deltas, the keys whose calls in progress are due
    /// to be stated again, then the watched keys without any, up to the cap; the deltas beyond
    /// it are dropped and counted.
    fn items(&mut self, deltas: Vec<Delta>, signals: &SignalState, now: u64) -> Vec<Item> {
        let cap = self.cfg.max_keys_per_flush;
        let mut items: Vec<Item> = Vec::with_capacity(deltas.len().min(cap));
        let mut dropped = 0u64;
        let mut sent: std::collections::HashSet<(Family, Box<str>)> = Default::default();
        for d in deltas {
            if items.len() >= cap {
                dropped += 1;
                continue;
            }
            sent.insert((d.family, d.key.clone()));
            items.push(Item {
                family: d.family,
                key: d.key.clone(),
                token: d.token,
                delta: Some(d),
            });
        }
        self.stats.keys_dropped.add(dropped);
        let mut settled = Vec::new();
        for ((family, key), (token, at)) in &self.stated {
            if items.len() >= cap {
                break;
            }
            let k = (*family, key.clone());
            if now.saturating_sub(*at) < CONCURRENT_REFRESH_MS || sent.contains(&k) {
                continue;
            }
            let n = signals.concurrent_now(*family, *token, key);
            // A state that failed to reach Redis is always sent again. One that did is kept
            // alive only where it can matter: two calls or more here, or a key whose fleet
            // totals are watched. A lone call's state is left to age out of Redis
            // (`CONCURRENT_KEEP_SECS`), which can only make the fleet's count lower, never higher.
            if *at != 0 && n < 2 && !self.watched.contains_key(&k) {
                settled.push(k);
                continue;
            }
            sent.insert(k);
            items.push(Item {
                family: *family,
                key: key.clone(),
                token: *token,
                delta: Some(Delta {
                    family: *family,
                    key: key.clone(),
                    token: *token,
                    pending: Pending {
                        concurrent: Some(n),
                        ..Pending::default()
                    },
                }),
            });
        }
        for k in settled {
            self.stated.remove(&k);
        }
        for ((family, key), token) in &self.watched {
            if items.len() >= cap {
                break;
            }
            if !sent.contains(&(*family, key.clone())) {
                items.push(Item {
                    family: *family,
                    key: key.clone(),
                    token: *token,
                    delta: None,
                });
            }
        }
        items
    }

    /// One key's script call (EVALSHA: the script was loaded when the connection was made).
    fn call(&self, signals: &SignalState, it: &Item, now: u64) -> Option<Cmd> {
        let w = signals.shared_windows(it.family)?;
        // One hash tag per key, so that both of its Redis keys share a cluster slot.
        let base = format!("{}{{{}:{}}}", self.prefix, it.family.as_str(), it.key);
        let empty = Pending::default();
        let p = it.delta.as_ref().map_or(&empty, |d| &d.pending);
        let state = match p.concurrent {
            None => "-".to_string(),
            Some(0) => "0".to_string(),
            Some(n) => concurrent_field(n, now).to_string(),
        };
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(self.script.get_hash())
            .arg(2)
            .arg(format!("{base}:z"))
            .arg(format!("{base}:h"))
            .arg(now.saturating_sub(w.callee_ms))
            .arg(w.callee_cap)
            .arg(w.ttl_ms)
            .arg(&self.agent_field)
            .arg(now / 1000)
            .arg(&self.concurrent_field)
            .arg(state);
        cmd.arg(p.callees.len());
        for (hash, ms) in &p.callees {
            cmd.arg(*ms).arg(format!("{hash:016x}"));
        }
        cmd.arg(p.counters.len());
        for (c, slot, change) in &p.counters {
            cmd.arg(format!("{}:{slot}", c.letter())).arg(*change);
        }
        let oldest = w.oldest(now);
        cmd.arg(oldest.len());
        for (letter, slot) in oldest {
            cmd.arg(letter.to_string()).arg(slot);
        }
        Some(cmd)
    }

    /// Totals back into the signals' tables; keys worth it stay watched.
    fn install(
        &mut self,
        signals: &SignalState,
        items: Vec<Item>,
        values: impl Iterator<Item = Value>,
        now: u64,
    ) {
        let alive = &self.alive;
        let is_alive = |a: &str| alive.contains(a);
        let mut watch = Vec::new();
        for (it, v) in items.into_iter().zip(values) {
            let Some(w) = signals.shared_windows(it.family) else {
                continue;
            };
            let Ok((callees, flat)) = redis::from_redis_value::<(u32, Vec<String>)>(&v) else {
                continue;
            };
            let fields: Vec<(String, i64)> = flat
                .chunks_exact(2)
                .filter_map(|c| Some((c[0].clone(), c[1].parse().ok()?)))
                .collect();
            let totals = w.totals(callees, &fields, now, &self.agent, &is_alive);
            let worth = signals.install_shared(it.family, it.token, totals);
            watch.push(((it.family, it.key), it.token, worth));
        }
        for (k, token, worth) in watch {
            if worth && (self.watched.len() < self.cfg.max_watched || self.watched.contains_key(&k))
            {
                self.watched.insert(k, token);
            } else {
                self.watched.remove(&k);
            }
        }
        self.stats.watched.set(self.watched.len() as i64);
    }
}

/// A connection with `scripts` loaded, every step within `t`: the one way the shared counts and
/// the edit stream reach Redis, so neither can wait longer than its timeout. On a cluster the
/// scripts are loaded on every master.
async fn connect_with(
    target: &Target,
    t: Duration,
    scripts: &[&Script],
) -> Result<Con, &'static str> {
    let attempt = async {
        let mut con = match target {
            Target::Single(client) => {
                let config = AsyncConnectionConfig::new()
                    .set_connection_timeout(t)
                    .set_response_timeout(t);
                Con::Single(
                    client
                        .get_multiplexed_async_connection_with_config(&config)
                        .await?,
                )
            }
            Target::Cluster(client) => Con::Cluster(client.get_async_connection().await?),
        };
        for s in scripts {
            s.load_async(&mut con).await?;
        }
        Ok::<_, redis::RedisError>(con)
    };
    match timeout(t, attempt).await {
        Ok(Ok(con)) => Ok(con),
        Ok(Err(e)) => {
            tracing::debug!("fleet: connecting failed: {e}");
            Err("refused the connection")
        }
        Err(_) => Err("did not answer in time"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_section_is_off_by_default_and_every_bad_key_is_named() {
        let c = crate::app::config::Config::parse("c.toml", "").unwrap();
        assert!(!c.fleet.enabled);
        assert!(c.fleet.validate().is_empty());
        let c = crate::app::config::Config::parse(
            "c.toml",
            "[fleet]\nenabled = true\nurl = \"http://x\"\nname = \"a b\"\nagent_id = \"{x}\"\n\
             flush_ms = 0\ntimeout_ms = 0\nbreaker_failures = 0\n",
        )
        .unwrap();
        let p = c.fleet.validate();
        assert_eq!(p.len(), 6, "{p:#?}");
        for (i, start) in [
            "fleet.url \"http://x\" is not a Redis URL",
            "fleet.name \"a b\" is not a name",
            "fleet.agent_id \"{x}\" is not an id",
            "fleet.flush_ms is 0; expected 10 to 10000",
            "fleet.timeout_ms is 0; expected 1 to 10000",
            "fleet.breaker_failures is 0",
        ]
        .iter()
        .enumerate()
        {
            assert!(p[i].starts_with(start), "{i}: {}", p[i]);
        }
        let e = crate::app::config::Config::parse("c.toml", "[fleet]\nurls = \"x\"\n").unwrap_err();
        assert_eq!(e.line, 2, "{e}");
    }
}
