//! The fleet's shared store of STIR certificate chains: a chain one agent fetched from an `x5u`
//! URL serves every other agent until the certificate cache's TTL runs out, so a fleet fetches
//! each URL about once per TTL instead of once per agent.
//!
//! In Redis, under one hash tag (`{x5u}`, one cluster slot): a hash URL → PEM chain and a sorted
//! set URL → expiry (unix ms). Each offer is one script that adds the chain, forgets the expired
//! ones and, beyond `certs.max_entries`, those closest to expiry: **bounded** to
//! `max_entries × certs.max_body_bytes`. Keyed by the URL itself, never a hash of it, so no
//! crafted URL can stand in for another's chain; and every agent checks a chain from here
//! against its own anchors, as if it had fetched it.
//!
//! Only the certificate fetcher calls this, never a call's decision. Every round trip is bounded
//! by `timeout_ms`; after a failure the store is left alone for `breaker_probe_ms` and the
//! fetcher fetches URLs itself, as a lone agent would. Knows nothing of PASSporTs or SIP.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use redis::Script;
use tokio::time::timeout;

use super::super::clock::now_ms;
use super::{connect_with, Con, FleetConfig, Target};
use crate::certs::{Shared, SharedCerts};

/// KEYS: the chains' hash, the expiries' sorted set. ARGV: URL, chain, expiry (ms), now (ms),
/// entries kept at most, the keys' own expiry (ms).
const OFFER: &str = r"
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
local old = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[4])
for _, u in ipairs(old) do redis.call('HDEL', KEYS[1], u) end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[4])
local over = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[5])
if over > 0 then
  local gone = redis.call('ZPOPMIN', KEYS[2], over)
  for i = 1, #gone, 2 do redis.call('HDEL', KEYS[1], gone[i]) end
end
redis.call('PEXPIRE', KEYS[1], ARGV[6])
redis.call('PEXPIRE', KEYS[2], ARGV[6])
return 1
";

/// The shared chains, reached through a connection of their own.
pub struct CertStore {
    target: Option<Target>,
    con: Mutex<Option<Con>>,
    offer: Script,
    chains: String,
    expiries: String,
    max_entries: usize,
    max_bytes: usize,
    timeout: Duration,
    probe_ms: u64,
    /// Unix ms before which the store is not tried again (after a failure).
    resting_until: AtomicU64,
}

impl CertStore {
    pub fn new(cfg: &FleetConfig, certs: &crate::certs::CertsConfig) -> CertStore {
        let base = format!("sg:{}:{{x5u}}:", cfg.name);
        CertStore {
            target: cfg.target(),
            con: Mutex::new(None),
            offer: Script::new(OFFER),
            chains: format!("{base}chains"),
            expiries: format!("{base}expiries"),
            max_entries: certs.max_entries.max(1),
            max_bytes: certs.max_body_bytes,
            timeout: Duration::from_millis(cfg.timeout_ms),
            probe_ms: cfg.breaker_probe_ms,
            resting_until: AtomicU64::new(0),
        }
    }

    /// A connection, made within the timeout when there is none; `None` while resting.
    async fn con(&self) -> Option<Con> {
        if now_ms() < self.resting_until.load(Ordering::Relaxed) {
            return None;
        }
        if let Some(c) = self.con.lock().unwrap_or_else(|e| e.into_inner()).clone() {
            return Some(c);
        }
        match connect_with(self.target.as_ref()?, self.timeout, &[&self.offer]).await {
            Ok(c) => {
                *self.con.lock().unwrap_or_else(|e| e.into_inner()) = Some(c.clone());
                Some(c)
            }
            Err(_) => {
                self.rest();
                None
            }
        }
    }

    /// A round trip failed: drop the connection and leave the store alone for a while.
    fn rest(&self) {
        *self.con.lock().unwrap_or_else(|e| e.into_inner()) = None;
        self.resting_until
            .store(now_ms().saturating_add(self.probe_ms), Ordering::Relaxed);
    }

    async fn lookup(&self, url: &str) -> Option<(Vec<u8>, u64)> {
        let mut con = self.con().await?;
        let mut pipe = redis::pipe();
        pipe.cmd("HGET")
            .arg(&self.chains)
            .arg(url)
            .cmd("ZSCORE")
            .arg(&self.expiries)
            .arg(url);
        let answer = timeout(
            self.timeout,
            pipe.query_async::<(Option<Vec<u8>>, Option<f64>)>(&mut con),
        )
        .await;
        let Ok(Ok((pem, until))) = answer else {
            self.rest();
            return None;
        };
        let left = (until? as u64).checked_sub(now_ms()).filter(|l| *l > 0)?;
        Some((pem?, left))
    }

    async fn offer(&self, url: &str, pem: &[u8], ttl_ms: u64) {
        if pem.len() > self.max_bytes || ttl_ms == 0 {
            return;
        }
        let Some(mut con) = self.con().await else {
            return;
        };
        let now = now_ms();
        let mut inv = self.offer.prepare_invoke();
        inv.key(&self.chains)
            .key(&self.expiries)
            .arg(url)
            .arg(pem)
            .arg(now.saturating_add(ttl_ms))
            .arg(now)
            .arg(self.max_entries)
            .arg(ttl_ms);
        match timeout(self.timeout, inv.invoke_async::<i64>(&mut con)).await {
            Ok(Ok(_)) => {}
            _ => self.rest(),
        }
    }
}

impl SharedCerts for CertStore {
    fn get<'a>(&'a self, url: &'a str) -> Shared<'a, Option<(Vec<u8>, u64)>> {
        Box::pin(self.lookup(url))
    }

    fn put<'a>(&'a self, url: &'a str, pem: &'a [u8], ttl_ms: u64) -> Shared<'a, ()> {
        Box::pin(self.offer(url, pem, ttl_ms))
    }
}
