//! The fleet's edit stream: every store-list change made on any agent (an API write, an
//! import, a removal, a promotion, an expiry) reaches every other agent, through one Redis
//! Stream, within a poll interval and a round trip.
//!
//! Each change is durable on its own agent before it is acknowledged, as without a fleet; its
//! audit record is the outbox ([`crate::lists::edits`]). This task, every `edit_poll_ms`:
//! 1. **publishes** the outbox: each change as one [`Edit`] appended to the stream by a script
//!    that also keeps the fleet's **snapshot** (one hash per list) in step, all of one batch in a
//!    `MULTI`; the published mark moves in the store only once Redis has answered, so edits made
//!    while Redis is down or slow wait in the outbox and go later. A batch Redis may or may not
//!    have taken (a timeout) is sent again: applying is idempotent, so twice costs nothing;
//! 2. **reads** the stream after the last id it applied, and applies the other agents' edits
//!    through [`Live`] (durable, audited as `fleet <agent>`, enforced on the next call), then
//!    keeps the new position in the store.
//!
//! Concurrent edits of one entry on two agents end the same everywhere: the one later in the
//! stream wins. An agent skips another's edit of an entry while its own later edit of that entry
//! is on its way, and applies its own edits as they come back only when something else was
//! applied meanwhile.
//!
//! **Joining.** The fleet has an epoch (a random id in Redis). An agent that has not seen this
//! epoch (a new agent, or Redis restarted empty) first adds the entries the fleet lacks
//! (`HSETNX` into the snapshot; each one it adds also goes on the stream), then loads the
//! snapshot, replacing each list that differs, and reads the stream from where the snapshot was
//! taken. An agent whose position was trimmed out of the stream (down too long) loads the
//! snapshot the same way.
//!
//! Every Redis round trip runs under `timeout_ms`. Knows nothing of SIP or of how a decision is
//! made; the hot path never waits on this task.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::{FromRedisValue, Script, Value};
use tokio::time::timeout;

use super::super::clock::now_ms;
use super::reports::{promotion, report_call, Relay, REPORT};
use super::FleetConfig;
use crate::lists::edits::Edit;
use crate::lists::overlay::Live;
use crate::lists::report_desk::ReportDesk;
use crate::lists::store::{valid_list_name, StoredEntry};
use crate::metrics::{Collect, Counter, Exposition, Gauge};

/// Appends one edit to the stream and keeps the list's snapshot hash in step. KEYS: the stream,
/// the set of list names, the list's hash. ARGV: stream length, agent, the edit, the list's name,
/// `1` to empty the hash first (a whole list's first part), the number of entries put, then
/// each put as (pattern, entry), then the patterns removed.
const PUBLISH: &str = r"
if ARGV[5] == '1' then redis.call('DEL', KEYS[3]) end
local n = tonumber(ARGV[6])
local i = 7
for j = 1, n do redis.call('HSET', KEYS[3], ARGV[i], ARGV[i + 1]); i = i + 2 end
while i <= #ARGV do redis.call('HDEL', KEYS[3], ARGV[i]); i = i + 1 end
redis.call('SADD', KEYS[2], ARGV[4])
return redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'a', ARGV[2], 'e', ARGV[3])
";

/// Adds the entries a list's snapshot lacks, each one added also going on the stream; the
/// fleet's version wins where both hold an entry. KEYS as [`PUBLISH`]. ARGV: stream length,
/// agent, the list's name, then (pattern, entry, edit) per entry. Returns how many were added.
const SEED: &str = r"
local added = 0
local i = 4
while i <= #ARGV do
  if redis.call('HSETNX', KEYS[3], ARGV[i], ARGV[i + 1]) == 1 then
    redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'a', ARGV[2], 'e', ARGV[i + 2])
    added = added + 1
  end
  i = i + 3
end
redis.call('SADD', KEYS[2], ARGV[3])
return added
";

/// Outbox records read per batch, batches per round, and stream entries read per round.
const OUTBOX_BATCH: usize = 256;
const OUTBOX_ROUNDS: usize = 4;
const READ_COUNT: usize = 512;
/// Entries per seeding script call, and per `HSCAN` step of a snapshot load.
const SEED_BATCH: usize = 500;
const SCAN_COUNT: usize = 1_000;
/// An agent whose row has not been refreshed for this long is left out of `GET /v1/fleet`.
const AGENT_ROW_MS: u64 = 60_000;
/// Own edits remembered until they come back; past this (they were trimmed away unread) the
/// memory is cleared and the snapshot loaded again.
const MAX_MINE: usize = 100_000;

/// One agent as `GET /v1/fleet` shows it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AgentRow {
    pub agent: String,
    /// The scamguard version it runs.
    pub version: String,
    /// The id of the last edit it applied from the stream (its list version).
    pub list_version: String,
    /// Its changes not yet published.
    pub outbox: i64,
    /// Unix ms of its last heartbeat.
    pub heartbeat_ms: u64,
}

/// What `/metrics` and `GET /v1/fleet` show of the edit stream.
#[derive(Default)]
pub struct EditStats {
    /// 1 while the edit stream reaches Redis.
    pub up: Gauge,
    pub published: Counter,
    pub applied: Counter,
    /// Edits from the fleet refused (malformed, or entries that do not validate).
    pub refused: Counter,
    /// Snapshot loads (joining, Redis restarted empty, a position trimmed away).
    pub loads: Counter,
    /// Own changes not yet published.
    pub outbox: Gauge,
    /// Ms from an edit's arrival in Redis to its application here: the last and the highest.
    pub lag_ms: Gauge,
    pub lag_max_ms: Gauge,
    /// The ms part of the last stream id applied: this agent's list version.
    pub position_ms: AtomicU64,
    agents: Mutex<Vec<AgentRow>>,
    pub fleet_name: String,
    /// This agent's id, once its SIP port is known.
    pub agent: std::sync::OnceLock<String>,
}

impl EditStats {
    pub fn new(fleet_name: &str) -> EditStats {
        EditStats {
            fleet_name: fleet_name.to_string(),
            ..EditStats::default()
        }
    }

    /// The fleet's agents as last read, for `GET /v1/fleet`.
    pub fn agents(&self) -> Vec<AgentRow> {
        self.agents
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl crate::api::FleetView for EditStats {
    fn view(&self) -> serde_json::Value {
        serde_json::json!({
            "fleet": self.fleet_name,
            "agent": self.agent.get(),
            "edits_up": self.up.get() == 1,
            "agents": self.agents(),
        })
    }
}

impl Collect for EditStats {
    fn collect(&self, out: &mut Exposition) {
        out.gauge(
            "scamguard_fleet_edits_up",
            "1 while list edits reach the fleet's Redis; 0 while they wait in the outbox.",
            &[],
            self.up.get(),
        );
        for (name, help, c) in [
            (
                "scamguard_fleet_edits_published_total",
                "List edits of this agent published to the fleet's edit stream.",
                &self.published,
            ),
            (
                "scamguard_fleet_edits_applied_total",
                "List edits of other agents applied here from the edit stream.",
                &self.applied,
            ),
            (
                "scamguard_fleet_edits_refused_total",
                "Edits read from the stream that were malformed or did not validate (nothing changed).",
                &self.refused,
            ),
            (
                "scamguard_fleet_snapshot_loads_total",
                "Loads of the fleet's list snapshot (joining, Redis restarted empty, stream trimmed).",
                &self.loads,
            ),
        ] {
            out.counter(name, help, &[], c.get());
        }
        out.gauge(
            "scamguard_fleet_outbox",
            "Changes of this agent's lists not yet published to the fleet.",
            &[],
            self.outbox.get(),
        );
        out.gauge(
            "scamguard_fleet_edit_lag_ms",
            "Ms from the last applied edit's arrival in Redis to its application here.",
            &[],
            self.lag_ms.get(),
        );
        out.gauge(
            "scamguard_fleet_edit_lag_max_ms",
            "The highest edit lag seen since start.",
            &[],
            self.lag_max_ms.get(),
        );
        let help =
            "List version (ms part of the last edit-stream id applied) per agent of the fleet.";
        let me = self.agent.get().map_or("", |a| a.as_str());
        let own = self.position_ms.load(Ordering::Relaxed);
        out.gauge(
            "scamguard_fleet_list_version",
            help,
            &[("agent", me)],
            own as i64,
        );
        for a in self.agents() {
            if a.agent != me {
                out.gauge(
                    "scamguard_fleet_list_version",
                    help,
                    &[("agent", &a.agent)],
                    id_ms(&a.list_version) as i64,
                );
            }
        }
    }
}

/// The ms part of a stream id (`1733372000123-0`).
fn id_ms(id: &str) -> u64 {
    id.split('-')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or(0)
}

/// Stream ids in order.
fn id_key(id: &str) -> (u64, u64) {
    let mut it = id.split('-');
    let ms = it.next().and_then(|m| m.parse().ok()).unwrap_or(0);
    let seq = it.next().and_then(|m| m.parse().ok()).unwrap_or(0);
    (ms, seq)
}

/// Redis keys of the edit stream: one hash tag, so a cluster keeps them in one slot.
struct Keys {
    stream: String,
    names: String,
    epoch: String,
    agents: String,
    list_prefix: String,
}

impl Keys {
    fn new(fleet: &str) -> Keys {
        let base = format!("sg:{fleet}:{{lists}}:");
        Keys {
            stream: format!("{base}stream"),
            names: format!("{base}names"),
            epoch: format!("{base}epoch"),
            agents: format!("{base}agents"),
            list_prefix: format!("{base}l:"),
        }
    }

    fn list(&self, name: &str) -> String {
        format!("{}{name}", self.list_prefix)
    }
}

/// A whole list arriving in parts.
struct Assembly {
    agent: String,
    who: String,
    list: String,
    id: i64,
    next: u32,
    parts: u32,
    entries: Vec<StoredEntry>,
}

/// What one read of the stream asks of the store.
enum Todo {
    One(String, Edit),
    List(Assembly),
}

type Fail = &'static str;

/// The edit stream's task.
pub struct EditRunner {
    cfg: FleetConfig,
    client: Option<super::Target>,
    con: Option<super::Con>,
    publish: Script,
    seed: Script,
    keys: Keys,
    agent: String,
    live: Arc<Live>,
    stats: Arc<EditStats>,
    /// Own edits sent and not yet read back, by entry: the audit id of the latest.
    mine: HashMap<(String, String), i64>,
    assembling: Option<Assembly>,
    joined: bool,
    last_id: String,
    published: i64,
    down: bool,
    next_try_ms: u64,
    next_agents_ms: u64,
    /// Callers' reports counted fleet-wide, when reports are on.
    reports: Option<(Arc<Relay>, Arc<ReportDesk>)>,
    report_script: Script,
}

fn unix_now() -> i64 {
    (now_ms() / 1000) as i64
}

impl EditRunner {
    pub fn new(cfg: &FleetConfig, agent: String, live: Arc<Live>, stats: Arc<EditStats>) -> Self {
        EditRunner {
            client: cfg.target(),
            con: None,
            publish: Script::new(PUBLISH),
            seed: Script::new(SEED),
            keys: Keys::new(&cfg.name),
            agent,
            live,
            stats,
            mine: HashMap::new(),
            assembling: None,
            joined: false,
            last_id: "0-0".into(),
            published: 0,
            down: false,
            next_try_ms: 0,
            next_agents_ms: 0,
            reports: None,
            report_script: Script::new(REPORT),
            cfg: cfg.clone(),
        }
    }

    /// Counts the reports `desk` hands to `relay` fleet-wide, and writes the promotions the
    /// fleet picks this agent for.
    pub fn with_reports(mut self, relay: Arc<Relay>, desk: Arc<ReportDesk>) -> Self {
        self.reports = Some((relay, desk));
        self
    }

    /// Publish and apply every `edit_poll_ms` until stopped.
    pub async fn run(mut self, stop: impl std::future::Future) {
        tokio::pin!(stop);
        let mut tick = tokio::time::interval(Duration::from_millis(self.cfg.edit_poll_ms));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let live = self.live.clone();
        let published = tokio::task::spawn_blocking(move || live.store.fleet_get("published"))
            .await
            .ok()
            .and_then(|r| r.ok())
            .flatten();
        self.published = published.and_then(|p| p.parse().ok()).unwrap_or(0);
        loop {
            tokio::select! {
                _ = tick.tick() => self.round().await,
                _ = &mut stop => break,
            }
        }
    }

    async fn round(&mut self) {
        let now = now_ms();
        if self.con.is_none() && now < self.next_try_ms {
            self.count_outbox().await;
            return;
        }
        let result = self.try_round().await;
        if let Some((relay, _)) = &self.reports {
            relay.set_in_force(result.is_ok());
        }
        match result {
            Ok(()) => {
                if self.down || self.stats.up.get() == 0 {
                    if self.down {
                        tracing::info!(
                            "fleet {:?}: list edits reach Redis at {} again; agent {} publishes its outbox",
                            self.cfg.name,
                            self.cfg.url,
                            self.agent
                        );
                    }
                    self.down = false;
                    self.stats.up.set(1);
                }
            }
            Err(why) => {
                self.con = None;
                self.joined = false;
                self.next_try_ms = now.saturating_add(self.cfg.breaker_probe_ms);
                self.stats.up.set(0);
                if !self.down {
                    self.down = true;
                    tracing::warn!(
                        "fleet {:?}: list edits cannot reach Redis at {} ({why}); agent {} keeps its edits in the outbox until it answers",
                        self.cfg.name,
                        self.cfg.url,
                        self.agent
                    );
                }
            }
        }
        self.count_outbox().await;
    }

    async fn count_outbox(&self) {
        let live = self.live.clone();
        if let Ok(Ok((_, last))) =
            tokio::task::spawn_blocking(move || live.store.audit_span()).await
        {
            self.stats
                .outbox
                .set(last.saturating_sub(self.published).max(0));
        }
    }

    async fn try_round(&mut self) -> Result<(), Fail> {
        if self.con.is_none() {
            self.connect().await?;
        }
        if !self.joined {
            self.join().await?;
            self.joined = true;
        }
        self.publish_outbox().await?;
        self.read().await?;
        self.count_reports().await
    }

    /// Counts the reports relayed since the last round; writes the promotions that fall to
    /// this agent. A round that fails hands its reports back for the next.
    async fn count_reports(&mut self) -> Result<(), Fail> {
        let Some((relay, desk)) = self.reports.clone() else {
            return Ok(());
        };
        let batch = relay.take();
        if batch.is_empty() {
            return Ok(());
        }
        let cfg = desk.config().clone();
        let now = unix_now();
        let prefix = format!("sg:{}:", self.cfg.name);
        let cmds = batch
            .iter()
            .map(|r| report_call(self.report_script.get_hash(), &prefix, r, &cfg, now))
            .collect();
        // One caller's keys per call, so on a cluster each goes to its own slot's master.
        let values: Vec<Value> = match self.send_all(cmds).await {
            Ok(v) => v,
            Err(e) => {
                relay.put_back(batch);
                return Err(e);
            }
        };
        let promos: Vec<_> = batch
            .into_iter()
            .zip(values)
            .filter_map(|(r, v)| promotion(&v).map(|p| (r, p)))
            .collect();
        if !promos.is_empty() {
            self.store(move |_| {
                for (r, (action, n, latest)) in promos {
                    desk.promote_for_fleet(&r.caller, action, n, latest, r.source, unix_now());
                }
                Ok(())
            })
            .await;
        }
        Ok(())
    }

    fn t(&self) -> Duration {
        Duration::from_millis(self.cfg.timeout_ms)
    }

    async fn connect(&mut self) -> Result<(), Fail> {
        let client = self.client.as_ref().ok_or("has an invalid URL")?;
        let scripts = [&self.publish, &self.seed, &self.report_script];
        self.con = Some(super::connect_with(client, self.t(), &scripts).await?);
        Ok(())
    }

    /// One command's answer, under the timeout.
    async fn query<T: FromRedisValue>(&mut self, cmd: &redis::Cmd) -> Result<T, Fail> {
        let t = self.t();
        let con = self.con.as_mut().ok_or("is not connected")?;
        match timeout(t, cmd.query_async::<T>(con)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                tracing::debug!("fleet edit stream: {e}");
                Err("failed a command")
            }
            Err(_) => Err("did not answer in time"),
        }
    }

    /// Commands on keys of many slots, each answered (see [`super::Con::send_all`]), under the
    /// timeout.
    async fn send_all(&mut self, cmds: Vec<redis::Cmd>) -> Result<Vec<Value>, Fail> {
        let t = self.t();
        let con = self.con.as_mut().ok_or("is not connected")?;
        match timeout(t, con.send_all(cmds)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                tracing::debug!("fleet edit stream: {e}");
                Err("failed a command")
            }
            Err(_) => Err("did not answer in time"),
        }
    }

    async fn pipeline<T: FromRedisValue>(&mut self, pipe: &redis::Pipeline) -> Result<T, Fail> {
        let t = self.t();
        let con = self.con.as_mut().ok_or("is not connected")?;
        match timeout(t, pipe.query_async::<T>(con)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                tracing::debug!("fleet edit stream: {e}");
                Err("failed a command")
            }
            Err(_) => Err("did not answer in time"),
        }
    }

    /// Runs `f` on the store on a blocking thread; a failure is logged and is not Redis's.
    async fn store<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Live) -> Result<T, String> + Send + 'static,
    ) -> Option<T> {
        let live = self.live.clone();
        match tokio::task::spawn_blocking(move || f(&live)).await {
            Ok(Ok(v)) => Some(v),
            Ok(Err(e)) => {
                tracing::error!("fleet edit stream: the store: {e}");
                None
            }
            Err(e) => {
                tracing::error!("fleet edit stream: store task failed: {e}");
                None
            }
        }
    }

    /// Joins the fleet's current epoch: seeds and loads the snapshot when this agent has not
    /// seen the epoch, loads it when its position was trimmed away, else goes on from its
    /// position.
    async fn join(&mut self) -> Result<(), Fail> {
        let epoch = self.epoch().await?;
        let local = self
            .store(|l| {
                let get = |k| l.store.fleet_get(k).map_err(|e| e.to_string());
                Ok((get("epoch")?, get("stream")?))
            })
            .await
            .ok_or("cannot be joined while the store fails")?;
        let (local_epoch, local_pos) = local;
        let pos = local_pos.unwrap_or_else(|| "0-0".into());
        let known = local_epoch.as_deref() == Some(epoch.as_str());
        if known && !self.trimmed_past(&pos).await? {
            self.last_id = pos;
            self.stats
                .position_ms
                .store(id_ms(&self.last_id), Ordering::Relaxed);
            return Ok(());
        }
        if local_epoch.is_some() {
            // Changes made while away go first, so that the snapshot already holds them.
            self.publish_outbox().await?;
        }
        if !known {
            let (_, last) = self
                .store(|l| l.store.audit_span().map_err(|e| e.to_string()))
                .await
                .ok_or("cannot be seeded while the store fails")?;
            self.seed_lists().await?;
            if local_epoch.is_none() {
                // A first join: the seed carried this agent's lists, not its history.
                self.published = last;
            }
        }
        self.load().await?;
        let (e, p, publ) = (epoch, self.last_id.clone(), self.published.to_string());
        self.store(move |l| {
            l.store
                .fleet_set(&[
                    ("epoch", e.as_str()),
                    ("stream", p.as_str()),
                    ("published", publ.as_str()),
                ])
                .map_err(|e| e.to_string())
        })
        .await;
        Ok(())
    }

    /// The fleet's epoch, made if Redis has none (new, or restarted empty).
    async fn epoch(&mut self) -> Result<String, Fail> {
        let key = self.keys.epoch.clone();
        if let Some(e) = self
            .query::<Option<String>>(redis::cmd("GET").arg(&key))
            .await?
        {
            return Ok(e);
        }
        let mine = format!("{:016x}", fastrand::u64(..));
        let _: Value = self
            .query(redis::cmd("SET").arg(&key).arg(&mine).arg("NX"))
            .await?;
        self.query::<Option<String>>(redis::cmd("GET").arg(&key))
            .await?
            .ok_or("lost the fleet's epoch")
    }

    /// Whether the stream was trimmed past `pos` (entries this agent never read are gone).
    async fn trimmed_past(&mut self, pos: &str) -> Result<bool, Fail> {
        let stream = self.keys.stream.clone();
        let exists: i64 = self.query(redis::cmd("EXISTS").arg(&stream)).await?;
        if exists == 0 {
            return Ok(false);
        }
        let info: Vec<Value> = self
            .query(redis::cmd("XINFO").arg("STREAM").arg(&stream))
            .await?;
        let mut it = info.iter();
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            if String::from_redis_value(k).ok().as_deref() == Some("max-deleted-entry-id") {
                let deleted = String::from_redis_value(v).unwrap_or_default();
                return Ok(id_key(&deleted) > id_key(pos));
            }
        }
        Ok(false)
    }

    /// Adds this agent's entries that the fleet's snapshot lacks (each also to the stream).
    async fn seed_lists(&mut self) -> Result<(), Fail> {
        let lists = self
            .store(|l| {
                let mut all: Vec<StoredEntry> = Vec::new();
                l.store
                    .for_each(None, |e| {
                        all.push(e);
                        true
                    })
                    .map_err(|e| e.to_string())?;
                Ok(all)
            })
            .await
            .ok_or("cannot be seeded while the store fails")?;
        let mut added = 0i64;
        for chunk in lists.chunk_by(|a, b| a.list == b.list) {
            for part in chunk.chunks(SEED_BATCH) {
                let list = &part[0].list;
                let mut cmd = redis::cmd("EVALSHA");
                cmd.arg(self.seed.get_hash())
                    .arg(3)
                    .arg(&self.keys.stream)
                    .arg(&self.keys.names)
                    .arg(self.keys.list(list))
                    .arg(self.cfg.stream_max_len)
                    .arg(&self.agent)
                    .arg(list);
                for e in part {
                    let put = Edit::Put {
                        entry: e.clone(),
                        who: "fleet".into(),
                        id: 0,
                    };
                    cmd.arg(&e.pattern)
                        .arg(serde_json::to_string(e).unwrap_or_default())
                        .arg(serde_json::to_string(&put).unwrap_or_default());
                }
                added += self.query::<i64>(&cmd).await?;
            }
        }
        if added > 0 {
            tracing::info!(
                "fleet {:?}: agent {} added {added} entries the fleet's lists lacked",
                self.cfg.name,
                self.agent
            );
        }
        Ok(())
    }

    /// Loads the fleet's snapshot: each list that differs here is replaced; reading goes on
    /// from the stream's last id before the load.
    async fn load(&mut self) -> Result<(), Fail> {
        let stream = self.keys.stream.clone();
        let last: Vec<(String, Vec<String>)> = self
            .query(
                redis::cmd("XREVRANGE")
                    .arg(&stream)
                    .arg("+")
                    .arg("-")
                    .arg("COUNT")
                    .arg(1),
            )
            .await?;
        let v0 = last
            .first()
            .map_or_else(|| "0-0".to_string(), |l| l.0.clone());
        let names: Vec<String> = self
            .query(redis::cmd("SMEMBERS").arg(&self.keys.names))
            .await?;
        let mut replaced = 0;
        for name in names {
            if valid_list_name(&name).is_err() {
                self.stats.refused.inc();
                continue;
            }
            let key = self.keys.list(&name);
            let mut entries = Vec::new();
            let mut cursor = "0".to_string();
            loop {
                let (next, flat): (String, Vec<String>) = self
                    .query(
                        redis::cmd("HSCAN")
                            .arg(&key)
                            .arg(&cursor)
                            .arg("COUNT")
                            .arg(SCAN_COUNT),
                    )
                    .await?;
                for pair in flat.chunks_exact(2) {
                    match serde_json::from_str::<StoredEntry>(&pair[1]) {
                        Ok(e) => entries.push(e),
                        Err(_) => self.stats.refused.inc(),
                    }
                }
                if next == "0" {
                    break;
                }
                cursor = next;
            }
            let agent = self.agent.clone();
            let changed = self
                .store(move |l| {
                    l.apply_list(&agent, "fleet", &name, entries, unix_now())
                        .map_err(|e| e.to_string())
                })
                .await;
            if changed == Some(true) {
                replaced += 1;
            }
        }
        self.last_id = v0;
        self.stats
            .position_ms
            .store(id_ms(&self.last_id), Ordering::Relaxed);
        self.stats.loads.inc();
        tracing::info!(
            "fleet {:?}: agent {} loaded the fleet's lists ({replaced} replaced) and follows the edit stream from {}",
            self.cfg.name,
            self.agent,
            self.last_id
        );
        Ok(())
    }

    /// Publishes the outbox, a few batches per round; the mark moves once Redis answered.
    async fn publish_outbox(&mut self) -> Result<(), Fail> {
        for _ in 0..OUTBOX_ROUNDS {
            let after = self.published;
            let Some(out) = self
                .store(move |l| l.outbox(after, OUTBOX_BATCH).map_err(|e| e.to_string()))
                .await
            else {
                return Ok(());
            };
            if out.upto == after {
                return Ok(());
            }
            if !out.edits.is_empty() {
                let mut pipe = redis::pipe();
                pipe.atomic();
                for e in &out.edits {
                    self.publish_call(&mut pipe, e);
                }
                let _: Value = self.pipeline(&pipe).await?;
                self.stats.published.add(out.edits.len() as u64);
                if self.mine.len() > MAX_MINE {
                    self.mine.clear();
                }
                for e in &out.edits {
                    if let Some(k) = e.key() {
                        self.mine.insert(k, e.id());
                    }
                }
            }
            self.published = out.upto;
            let mark = out.upto.to_string();
            self.store(move |l| {
                l.store
                    .fleet_set(&[("published", mark.as_str())])
                    .map_err(|e| e.to_string())
            })
            .await;
        }
        Ok(())
    }

    fn publish_call(&self, pipe: &mut redis::Pipeline, e: &Edit) {
        let body = serde_json::to_string(e).unwrap_or_default();
        let json = |x: &StoredEntry| serde_json::to_string(x).unwrap_or_default();
        let (clear, puts, dels): (bool, Vec<(String, String)>, Vec<String>) = match e {
            Edit::Put { entry, .. } => (false, vec![(entry.pattern.clone(), json(entry))], vec![]),
            Edit::Remove { pattern, .. } => (false, vec![], vec![pattern.clone()]),
            Edit::List { part, entries, .. } => (
                *part == 0,
                entries
                    .iter()
                    .map(|x| (x.pattern.clone(), json(x)))
                    .collect(),
                vec![],
            ),
        };
        let cmd = pipe
            .cmd("EVALSHA")
            .arg(self.publish.get_hash())
            .arg(3)
            .arg(&self.keys.stream)
            .arg(&self.keys.names)
            .arg(self.keys.list(e.list()))
            .arg(self.cfg.stream_max_len)
            .arg(&self.agent)
            .arg(body)
            .arg(e.list())
            .arg(if clear { "1" } else { "0" })
            .arg(puts.len());
        for (p, j) in puts {
            cmd.arg(p).arg(j);
        }
        for p in dels {
            cmd.arg(p);
        }
        cmd.ignore();
    }

    /// Reads the stream after the last id applied, applies what it brings, and beats the
    /// agent's heart (its row in the fleet's table of agents).
    async fn read(&mut self) -> Result<(), Fail> {
        let now = now_ms();
        let row = AgentRow {
            agent: self.agent.clone(),
            version: env!("CARGO_PKG_VERSION").into(),
            list_version: self.last_id.clone(),
            outbox: self.stats.outbox.get(),
            heartbeat_ms: now,
        };
        let mut pipe = redis::pipe();
        pipe.cmd("XREAD")
            .arg("COUNT")
            .arg(READ_COUNT)
            .arg("STREAMS")
            .arg(&self.keys.stream)
            .arg(&self.last_id)
            .cmd("HSET")
            .arg(&self.keys.agents)
            .arg(&self.agent)
            .arg(serde_json::to_string(&row).unwrap_or_default())
            .ignore();
        let want_agents = now >= self.next_agents_ms;
        if want_agents {
            self.next_agents_ms = now + 1_000;
            pipe.cmd("HGETALL").arg(&self.keys.agents);
        }
        let mut values: Vec<Value> = self.pipeline(&pipe).await?;
        if want_agents {
            if let Some(v) = values.pop() {
                self.agents_read(v).await?;
            }
        }
        let read = values.pop().unwrap_or(Value::Nil);
        type Reply = Option<Vec<(String, Vec<(String, Vec<String>)>)>>;
        let Ok(Some(streams)) = Reply::from_redis_value(&read) else {
            return Ok(());
        };
        let msgs: Vec<(String, Vec<String>)> = streams.into_iter().flat_map(|s| s.1).collect();
        if msgs.is_empty() {
            return Ok(());
        }
        self.apply(msgs).await;
        Ok(())
    }

    /// Keeps the rows of agents heard from within the last minute, and forgets the rest in
    /// Redis too.
    async fn agents_read(&mut self, v: Value) -> Result<(), Fail> {
        let flat = Vec::<String>::from_redis_value(&v).unwrap_or_default();
        let now = now_ms();
        let mut rows = Vec::new();
        let mut stale = Vec::new();
        for pair in flat.chunks_exact(2) {
            match serde_json::from_str::<AgentRow>(&pair[1]) {
                Ok(r) if now.saturating_sub(r.heartbeat_ms) <= AGENT_ROW_MS => rows.push(r),
                _ => stale.push(pair[0].clone()),
            }
        }
        rows.sort_by(|a, b| a.agent.cmp(&b.agent));
        *self.stats.agents.lock().unwrap_or_else(|p| p.into_inner()) = rows;
        if !stale.is_empty() {
            let _: Value = self
                .query(redis::cmd("HDEL").arg(&self.keys.agents).arg(stale))
                .await?;
        }
        Ok(())
    }

    /// Applies what one read brought, then keeps the position.
    async fn apply(&mut self, msgs: Vec<(String, Vec<String>)>) {
        let now = now_ms();
        let mut todo = Vec::new();
        for (id, fields) in msgs {
            self.last_id.clone_from(&id);
            let field = |name: &str| {
                fields
                    .chunks_exact(2)
                    .find(|f| f[0] == name)
                    .map(|f| f[1].clone())
            };
            let (Some(agent), Some(body)) = (field("a"), field("e")) else {
                self.stats.refused.inc();
                continue;
            };
            let Ok(edit) = serde_json::from_str::<Edit>(&body) else {
                self.stats.refused.inc();
                continue;
            };
            let lag = now.saturating_sub(id_ms(&id)) as i64;
            self.stats.lag_ms.set(lag);
            if lag > self.stats.lag_max_ms.get() {
                self.stats.lag_max_ms.set(lag);
            }
            if let Some(t) = self.sort(agent, edit) {
                todo.push(t);
            }
        }
        let pos = self.last_id.clone();
        let stats = self.stats.clone();
        self.store(move |l| {
            let now = unix_now();
            for t in todo {
                let r = match t {
                    Todo::One(agent, e) => l.apply_edit(&agent, &e, now),
                    Todo::List(a) => l.apply_list(&a.agent, &a.who, &a.list, a.entries, now),
                };
                match r {
                    Ok(true) => stats.applied.inc(),
                    Ok(false) => {}
                    Err(e) => {
                        stats.refused.inc();
                        tracing::warn!("fleet edit refused: {e}");
                    }
                }
            }
            l.store
                .fleet_set(&[("stream", pos.as_str())])
                .map_err(|e| e.to_string())
        })
        .await;
        self.stats
            .position_ms
            .store(id_ms(&self.last_id), Ordering::Relaxed);
    }

    /// What to do with one edit read from the stream: apply it, keep it for a whole list, or
    /// skip it (an own edit already superseded, or another agent's edit of an entry this agent
    /// changed since).
    fn sort(&mut self, agent: String, edit: Edit) -> Option<Todo> {
        let own = agent == self.agent;
        if let Edit::List {
            list,
            who,
            id,
            part,
            parts,
            entries,
        } = edit
        {
            if own {
                return None;
            }
            if part == 0 {
                self.assembling = Some(Assembly {
                    agent,
                    who,
                    list: list.clone(),
                    id,
                    next: 0,
                    parts,
                    entries: Vec::new(),
                });
            }
            let a = self.assembling.as_mut()?;
            if a.id != id || a.list != list || a.next != part || a.parts != parts {
                self.stats.refused.inc();
                self.assembling = None;
                return None;
            }
            a.entries.extend(entries);
            a.next += 1;
            if a.next == a.parts {
                return self.assembling.take().map(Todo::List);
            }
            return None;
        }
        let key = edit.key()?;
        let id = edit.id();
        match (own, self.mine.get(&key).copied()) {
            (true, Some(m)) if m > id => None,
            (true, Some(m)) if m == id => {
                self.mine.remove(&key);
                Some(Todo::One(agent, edit))
            }
            (false, Some(_)) => None,
            _ => Some(Todo::One(agent, edit)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_ids_order_by_time_then_sequence() {
        assert!(id_key("1700000000000-1") > id_key("1700000000000-0"));
        assert!(id_key("1700000000001-0") > id_key("1700000000000-9"));
        assert!(id_key("0-0") < id_key("1-0"));
        assert_eq!(id_ms("1733372000123-4"), 1_733_372_000_123);
        assert_eq!(id_ms("junk"), 0);
    }
}
