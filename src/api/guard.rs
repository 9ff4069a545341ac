//! The API's edge against abuse, by client address: wrong or missing tokens counted until the
//! address is refused (429) for a while, connections counted under a per-address cap, and a
//! budget for the audit records of refused requests, so that a flood of refusals can neither
//! fill the disk nor push real changes out of the audit trail.
//!
//! Every table is bounded: failure counts by `max_sources` (idle addresses are forgotten first),
//! connection counts by the connections open. IPv6 clients are counted by their /64, which one
//! host can fill with addresses. Knows nothing of HTTP, tokens or the store: it counts addresses
//! at the instants it is handed.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Refused requests recorded in the audit trail per minute, over all addresses; past it they
/// are counted, and the next record says how many went unrecorded.
pub const REFUSALS_RECORDED_PER_MINUTE: u32 = 60;

/// What the guard allows, from the `[api]` section.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Wrong or missing tokens from one address within `ban` before it is refused; 0: never.
    pub max_failures: u32,
    /// How long failures count, and how long an address is then refused.
    pub ban: Duration,
    /// Addresses whose failures are remembered at once.
    pub max_sources: usize,
    /// Connections one address may hold open at once.
    pub max_connections: usize,
}

/// The address a client is counted under: itself, or its /64 for IPv6.
fn key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
        },
    }
}

/// One address's failures.
#[derive(Debug, Clone, Copy)]
struct Slot {
    since: Instant,
    failures: u32,
    refused_until: Option<Instant>,
}

impl Slot {
    /// Nothing left to remember: the failures no longer count and no refusal runs.
    fn idle(&self, now: Instant, ban: Duration) -> bool {
        now.duration_since(self.since) >= ban && self.refused_until.map_or(true, |u| u <= now)
    }
}

#[derive(Debug)]
struct Budget {
    tokens: f64,
    at: Instant,
    unrecorded: u64,
}

/// The per-address state of the API. Cheap to consult: one short lock each.
#[derive(Debug)]
pub struct Guard {
    limits: Limits,
    failures: Mutex<HashMap<IpAddr, Slot>>,
    connections: Mutex<HashMap<IpAddr, usize>>,
    budget: Mutex<Budget>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A connection counted against its address until dropped.
#[derive(Debug)]
pub struct Connection {
    guard: Arc<Guard>,
    key: IpAddr,
}

impl Drop for Connection {
    fn drop(&mut self) {
        let mut c = lock(&self.guard.connections);
        if let Some(n) = c.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                c.remove(&self.key);
            }
        }
    }
}

impl Guard {
    pub fn new(limits: Limits, now: Instant) -> Guard {
        Guard {
            limits,
            failures: Mutex::new(HashMap::new()),
            connections: Mutex::new(HashMap::new()),
            budget: Mutex::new(Budget {
                tokens: f64::from(REFUSALS_RECORDED_PER_MINUTE),
                at: now,
                unrecorded: 0,
            }),
        }
    }

    /// Count a new connection from `ip`, or `None` when the address already holds its share.
    pub fn connect(self: &Arc<Self>, ip: IpAddr) -> Option<Connection> {
        let key = key(ip);
        let mut c = lock(&self.connections);
        let n = c.entry(key).or_insert(0);
        if *n >= self.limits.max_connections {
            return None;
        }
        *n += 1;
        Some(Connection {
            guard: self.clone(),
            key,
        })
    }

    /// How much longer `ip` is refused, if it is.
    pub fn refused(&self, ip: IpAddr, now: Instant) -> Option<Duration> {
        let until = lock(&self.failures).get(&key(ip))?.refused_until?;
        (until > now).then(|| until - now)
    }

    /// Count a wrong or missing token from `ip`. `Some(how long)` when this failure is the one
    /// that gets the address refused.
    pub fn failed(&self, ip: IpAddr, now: Instant) -> Option<Duration> {
        let Limits {
            max_failures, ban, ..
        } = self.limits;
        if max_failures == 0 {
            return None;
        }
        let key = key(ip);
        let mut t = lock(&self.failures);
        if !t.contains_key(&key) && t.len() >= self.limits.max_sources {
            make_room(&mut t, now, ban, self.limits.max_sources);
        }
        let s = t.entry(key).or_insert(Slot {
            since: now,
            failures: 0,
            refused_until: None,
        });
        if now.duration_since(s.since) >= ban {
            s.since = now;
            s.failures = 0;
        }
        s.failures = s.failures.saturating_add(1);
        let refusing = s.refused_until.is_some_and(|u| u > now);
        if s.failures > max_failures && !refusing {
            s.refused_until = Some(now + ban);
            return Some(ban);
        }
        None
    }

    /// May a refused request be recorded now? `Ok(n)`: yes, and `n` refusals went unrecorded
    /// since the last record; `Err(())`: no, it is counted instead.
    pub fn may_record(&self, now: Instant) -> Result<u64, ()> {
        let mut b = lock(&self.budget);
        let per_sec = f64::from(REFUSALS_RECORDED_PER_MINUTE) / 60.0;
        let cap = f64::from(REFUSALS_RECORDED_PER_MINUTE);
        b.tokens = (b.tokens + now.duration_since(b.at).as_secs_f64() * per_sec).min(cap);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(std::mem::take(&mut b.unrecorded))
        } else {
            b.unrecorded += 1;
            Err(())
        }
    }

    /// Addresses refused at `now`, and addresses whose failures are remembered.
    pub fn sizes(&self, now: Instant) -> (usize, usize) {
        let t = lock(&self.failures);
        let refused = t
            .values()
            .filter(|s| s.refused_until.is_some_and(|u| u > now))
            .count();
        (refused, t.len())
    }
}

/// The table is full: forget the idle addresses, and if none is idle, the one counting longest
/// among those not refused (a refused one only when every one is, so that a flood of new
/// addresses cannot free a refused one).
fn make_room(t: &mut HashMap<IpAddr, Slot>, now: Instant, ban: Duration, max: usize) {
    t.retain(|_, s| !s.idle(now, ban));
    if t.len() < max {
        return;
    }
    let victim = t
        .iter()
        .min_by_key(|(_, s)| (s.refused_until.is_some_and(|u| u > now), s.since))
        .map(|(k, _)| *k);
    if let Some(k) = victim {
        t.remove(&k);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(max_failures: u32, max_sources: usize) -> (Arc<Guard>, Instant) {
        let t0 = Instant::now();
        let limits = Limits {
            max_failures,
            ban: Duration::from_secs(300),
            max_sources,
            max_connections: 2,
        };
        (Arc::new(Guard::new(limits, t0)), t0)
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn failures_past_the_limit_refuse_the_address_for_the_ban() {
        let (g, t0) = guard(3, 100);
        let a = ip("192.0.2.1");
        for _ in 0..3 {
            assert_eq!(g.failed(a, t0), None);
        }
        assert_eq!(g.refused(a, t0), None, "at the limit, still answered");
        assert_eq!(g.failed(a, t0), Some(Duration::from_secs(300)));
        assert_eq!(g.refused(a, t0), Some(Duration::from_secs(300)));
        // Another address is not touched, nor is the /64's neighbour of an IPv4 address.
        assert_eq!(g.refused(ip("192.0.2.2"), t0), None);
        let later = t0 + Duration::from_secs(100);
        assert_eq!(g.refused(a, later), Some(Duration::from_secs(200)));
        // More failures while refused do not start the ban again.
        assert_eq!(g.failed(a, later), None);
        let after = t0 + Duration::from_secs(300);
        assert_eq!(g.refused(a, after), None);
        // The count started again with the new window.
        assert_eq!(g.failed(a, after + Duration::from_secs(1)), None);
        assert_eq!(g.refused(a, after + Duration::from_secs(1)), None);
    }

    #[test]
    fn failures_spread_over_windows_never_refuse() {
        let (g, t0) = guard(3, 100);
        let a = ip("192.0.2.1");
        for w in 0..10u64 {
            let t = t0 + Duration::from_secs(300 * w);
            for _ in 0..3 {
                assert_eq!(g.failed(a, t), None, "window {w}");
            }
        }
        // 0 turns the limit off.
        let (off, t0) = guard(0, 100);
        for _ in 0..100 {
            assert_eq!(off.failed(a, t0), None);
        }
        assert_eq!(off.sizes(t0), (0, 0));
    }

    #[test]
    fn ipv6_is_counted_by_its_64() {
        let (g, t0) = guard(1, 100);
        g.failed(ip("2001:db8:1:2::1"), t0);
        assert!(g.failed(ip("2001:db8:1:2:ffff::9"), t0).is_some());
        assert!(g.refused(ip("2001:db8:1:2::77"), t0).is_some());
        assert!(g.refused(ip("2001:db8:1:3::1"), t0).is_none());
        // An IPv4-mapped address is its IPv4 address.
        g.failed(ip("198.51.100.7"), t0);
        assert!(g.failed(ip("::ffff:198.51.100.7"), t0).is_some());
        assert!(g.refused(ip("198.51.100.7"), t0).is_some());
    }

    #[test]
    fn the_table_is_bounded_and_keeps_refused_addresses_longest() {
        let (g, t0) = guard(1, 4);
        let bad = ip("192.0.2.66");
        g.failed(bad, t0);
        g.failed(bad, t0);
        assert!(g.refused(bad, t0).is_some());
        for i in 0..1000u32 {
            let t = t0 + Duration::from_millis(u64::from(i));
            g.failed(IpAddr::V4(i.into()), t);
            assert!(g.sizes(t).1 <= 4);
        }
        assert!(
            g.refused(bad, t0 + Duration::from_secs(1)).is_some(),
            "a flood of new addresses evicted a refused one"
        );
        // Once everything is idle, a new address finds room by forgetting them all.
        let idle = t0 + Duration::from_secs(301);
        g.failed(ip("192.0.2.9"), idle);
        assert_eq!(g.sizes(idle), (0, 1));
    }

    #[test]
    fn connections_are_capped_per_address_and_freed_on_drop() {
        let (g, _) = guard(1, 4);
        let a = ip("192.0.2.1");
        let c1 = g.connect(a).unwrap();
        let c2 = g.connect(a).unwrap();
        assert!(g.connect(a).is_none());
        let other = g.connect(ip("192.0.2.2"));
        assert!(other.is_some());
        drop(c1);
        let c3 = g.connect(a).unwrap();
        drop((c2, c3, other));
        assert!(lock(&g.connections).is_empty(), "no address left behind");
    }

    #[test]
    fn the_record_budget_refills_and_counts_what_it_skipped() {
        let (g, t0) = guard(1, 4);
        for _ in 0..REFUSALS_RECORDED_PER_MINUTE {
            assert_eq!(g.may_record(t0), Ok(0));
        }
        for _ in 0..5 {
            assert_eq!(g.may_record(t0), Err(()));
        }
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(g.may_record(t1), Ok(5));
        assert_eq!(g.may_record(t1), Err(()));
    }
}
