//! Callers' reports counted fleet-wide, with **exactly one** promotion per level: 607s and API
//! reports taken on different agents count together, and of all the agents that see the count
//! reach a level, one writes the promotion, which then reaches the others as a list edit.
//!
//! The report desk hands each stored report to the [`Relay`] (a bounded queue; the SIP path
//! never waits on it). The edit stream's task drains it every round and runs one script per
//! report, which in one atomic step adds the reporter (a hash of it) to the caller's sorted set
//! of reporters by time, forgets those outside the window, counts them, and, when the count
//! reaches a level the caller's promotion key does not hold yet, sets that key and answers
//! "promote". Only the agent that got that answer writes the entry. Adding a reporter again is
//! harmless, so reports of a round that failed are handed back and sent again.
//!
//! Knows nothing of SIP or of how an entry is written.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use redis::Value;

use crate::lists::report_desk::SharedReports;
use crate::metrics::Counter;
use crate::screening::signals::report_book::{Report, ReportsConfig};
use crate::screening::signals::shared::callee_hash;
use crate::screening::Action;

/// KEYS: the caller's reporters (a sorted set by time), the caller's promotion (`warn` or
/// `block`, expiring with it). ARGV: reporter, report time, now, window, warn and block
/// reporters, warn and block lifetimes (seconds). Returns the distinct reporters, the level
/// this agent is to write (empty: none) and the latest report's time.
pub const REPORT: &str = r"
local at, now, window = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
if at > now - window then
  local old = redis.call('ZSCORE', KEYS[1], ARGV[1])
  if not old or tonumber(old) < at then redis.call('ZADD', KEYS[1], at, ARGV[1]) end
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local n = redis.call('ZCARD', KEYS[1])
if n == 0 then return {0, '', 0} end
redis.call('EXPIRE', KEYS[1], window)
local top = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
local latest = tonumber(top[2])
local level, ttl = nil, 0
if n >= tonumber(ARGV[6]) then level = 'block'; ttl = tonumber(ARGV[8])
elseif n >= tonumber(ARGV[5]) then level = 'warn'; ttl = tonumber(ARGV[7]) end
if level == nil then return {n, '', latest} end
local held = redis.call('GET', KEYS[2])
if held == level or held == 'block' then return {n, '', latest} end
redis.call('SET', KEYS[2], level, 'EX', math.max(1, latest + ttl - now))
return {n, level, latest}
";

/// Reports waiting to be counted fleet-wide.
pub struct Relay {
    queue: Mutex<Vec<Report>>,
    cap: usize,
    in_force: AtomicBool,
    /// Reports not counted fleet-wide because the queue was full.
    pub dropped: Counter,
}

impl Relay {
    pub fn new(cap: usize) -> Relay {
        Relay {
            queue: Mutex::new(Vec::new()),
            cap: cap.max(1),
            in_force: AtomicBool::new(false),
            dropped: Counter::default(),
        }
    }

    pub fn set_in_force(&self, on: bool) {
        self.in_force.store(on, Ordering::Relaxed);
    }

    pub fn take(&self) -> Vec<Report> {
        std::mem::take(&mut *self.queue.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Reports a failed round did not count, back at the front.
    pub fn put_back(&self, mut reports: Vec<Report>) {
        let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        reports.append(&mut q);
        let over = reports.len().saturating_sub(self.cap);
        if over > 0 {
            reports.truncate(self.cap);
            self.dropped.add(over as u64);
        }
        *q = reports;
    }
}

impl SharedReports for Relay {
    fn in_force(&self) -> bool {
        self.in_force.load(Ordering::Relaxed)
    }

    fn relay(&self, reports: &[Report]) {
        let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        for r in reports {
            if q.len() >= self.cap {
                self.dropped.inc();
            } else {
                q.push(r.clone());
            }
        }
    }
}

/// One report's script call: both keys under the caller's hash tag (one cluster slot).
pub fn report_call(
    hash: &str,
    prefix: &str,
    r: &Report,
    cfg: &ReportsConfig,
    now: i64,
) -> redis::Cmd {
    let base = format!("{prefix}{{rp:{}}}", r.caller);
    let mut cmd = redis::cmd("EVALSHA");
    cmd.arg(hash)
        .arg(2)
        .arg(format!("{base}:z"))
        .arg(format!("{base}:p"))
        .arg(format!("{:016x}", callee_hash(&r.reporter)))
        .arg(r.at)
        .arg(now)
        .arg(cfg.window_secs.max(1))
        .arg(cfg.warn_reporters)
        .arg(cfg.block_reporters)
        .arg(cfg.warn_ttl_secs)
        .arg(cfg.block_ttl_secs);
    cmd
}

/// What the script answered: the promotion this agent is to write, if any, with the fleet's
/// distinct reporters and the latest report's time.
pub fn promotion(v: &Value) -> Option<(Action, u32, i64)> {
    let (n, level, latest): (u32, String, i64) = redis::from_redis_value(v).ok()?;
    let action = match level.as_str() {
        "block" => Action::Block,
        "warn" => Action::Warn,
        _ => return None,
    };
    Some((action, n, latest))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::screening::signals::report_book::ReportSource;

    fn report(n: u32) -> Report {
        Report {
            caller: "+12027620143".into(),
            callee: None,
            category: "scam".into(),
            reporter: format!("+1617555{n:04}"),
            at: 1,
            source: ReportSource::Sip607,
        }
    }

    #[test]
    fn the_relay_is_bounded_and_a_failed_round_goes_back_first() {
        let r = Relay::new(3);
        r.relay(&[report(1), report(2)]);
        let taken = r.take();
        r.relay(&[report(3), report(4)]);
        r.put_back(taken);
        let order: Vec<String> = r.take().into_iter().map(|x| x.reporter).collect();
        assert_eq!(order, ["+16175550001", "+16175550002", "+16175550003"]);
        assert_eq!(r.dropped.get(), 1);
        r.relay(&[report(5), report(6), report(7), report(8)]);
        assert_eq!(r.dropped.get(), 2);
    }

    #[test]
    fn only_a_level_to_write_is_a_promotion() {
        let v = |level: &str| {
            Value::Array(vec![
                Value::Int(3),
                Value::BulkString(level.as_bytes().to_vec()),
                Value::Int(1_800_000_000),
            ])
        };
        assert_eq!(
            promotion(&v("warn")),
            Some((Action::Warn, 3, 1_800_000_000))
        );
        assert_eq!(
            promotion(&v("block")),
            Some((Action::Block, 3, 1_800_000_000))
        );
        assert_eq!(promotion(&v("")), None);
        assert_eq!(promotion(&Value::Nil), None);
    }
}
