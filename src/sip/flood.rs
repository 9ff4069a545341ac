//! Per-source fairness at the edge, after Kamailio's `pike` and `ipban` modules: messages per
//! source address per window, a ban that expires for a source over the rate (its messages are
//! dropped before parsing), and a count of the server transactions each source holds, so that
//! the core can cap them. The core (the next hop, `allowed_targets`, `trusted_peers` and
//! `[sip.flood] core_peers`) is never counted, limited or banned: it has a budget of its own in
//! the transaction table (`core_reserve_percent`).
//!
//! A source is an IPv4 address, or an IPv6 /64 (one host holds a whole /64 and could rotate
//! through it). The table is capped (`max_sources`) and swept with the proxy's tables; a source
//! that arrives while it is full is let through untracked and counted, since refusing it would
//! let a flood of spoofed sources lock everyone else out.
//!
//! Knows nothing of SIP messages or the transaction table: the core tells it of arrivals and of
//! transactions opened and closed, with the instant they happened (no clock of its own).

use std::collections::HashSet;
use std::net::{IpAddr, Ipv6Addr};
use std::time::{Duration, Instant};

use dashmap::DashMap;
use serde::Deserialize;

use crate::metrics::{Counter, Exposition, Gauge};

/// Messages a banned source may still have carried in one window when they start or belong to
/// an urgent call (an emergency call, as the hook judges it): an INVITE, its retransmissions, the
/// ACK, a BYE, a re-INVITE or two. More in a window is a flood of urgent calls, itself an attack
/// on an emergency service, and is dropped like the rest.
pub const URGENT_PER_WINDOW: u32 = 20;

/// Urgent calls remembered per banned source (the oldest is forgotten first).
const URGENT_CALLS: usize = 4;

/// `[sip.flood]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FloodConfig {
    /// Off: no source is counted, limited or banned (the global caps still hold).
    pub enabled: bool,
    /// The window messages are counted over (pike's sampling time unit).
    pub window_secs: u64,
    /// Messages (requests and responses, well formed or not) one source may send in a window;
    /// past it the source is banned.
    pub max_messages: u32,
    /// How long a ban lasts after the last window the source went over the rate in.
    pub ban_secs: u64,
    /// Server transactions one source may hold at once; past it its new requests get 503.
    pub max_transactions_per_source: usize,
    /// Share of `sip.max_transactions` kept for the core: other sources together get 503 past
    /// the rest.
    pub core_reserve_percent: u8,
    /// Sources tracked at once.
    pub max_sources: usize,
    /// Peers treated as the core besides `next_hop`, `allowed_targets` and `trusted_peers`.
    pub core_peers: Vec<IpAddr>,
}

impl Default for FloodConfig {
    fn default() -> Self {
        FloodConfig {
            enabled: true,
            window_secs: 2,
            max_messages: 1000,
            ban_secs: 120,
            max_transactions_per_source: 5000,
            core_reserve_percent: 20,
            max_sources: 65536,
            core_peers: Vec::new(),
        }
    }
}

impl FloodConfig {
    /// Every problem serde cannot catch, each naming the setting and what was expected.
    pub fn validate(&self) -> Vec<String> {
        let mut p = Vec::new();
        for (key, v) in [
            ("window_secs", self.window_secs),
            ("ban_secs", self.ban_secs),
            ("max_messages", u64::from(self.max_messages)),
            (
                "max_transactions_per_source",
                self.max_transactions_per_source as u64,
            ),
            ("max_sources", self.max_sources as u64),
        ] {
            // Zero would drop or refuse everything: `enabled = false` is the off switch.
            if v == 0 {
                p.push(format!("sip.flood.{key}: must be at least 1, got 0"));
            }
        }
        if self.window_secs > 3600 {
            p.push(format!(
                "sip.flood.window_secs: expected 1..=3600, got {}",
                self.window_secs
            ));
        }
        if self.core_reserve_percent > 90 {
            p.push(format!(
                "sip.flood.core_reserve_percent: expected 0..=90, got {}",
                self.core_reserve_percent
            ));
        }
        p
    }

    fn window(&self) -> Duration {
        Duration::from_secs(self.window_secs.max(1))
    }
}

/// What [`Sources::arrive`] says of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// From the core, or counting is off: no limit applies.
    Core,
    /// Counted and under the rate.
    Open,
    /// Not counted: the table is full.
    Untracked,
    /// The source is banned: drop the message unless it is urgent.
    Banned,
}

struct Source {
    window: Instant,
    count: u32,
    banned_until: Option<Instant>,
    /// Server transactions open for this source.
    transactions: usize,
    /// Messages let through the ban in this window as urgent.
    urgent: u32,
    /// Call-IDs of urgent calls let through the ban, oldest first.
    urgent_calls: Vec<Box<str>>,
    seen: Instant,
}

impl Source {
    fn new(now: Instant) -> Source {
        Source {
            window: now,
            count: 0,
            banned_until: None,
            transactions: 0,
            urgent: 0,
            urgent_calls: Vec::new(),
            seen: now,
        }
    }

    fn banned(&self, now: Instant) -> bool {
        self.banned_until.is_some_and(|t| now < t)
    }
}

/// The counters of flood protection, rendered with the SIP layer's.
#[derive(Debug, Default)]
pub struct FloodStats {
    /// Messages from banned sources dropped before parsing.
    pub dropped: Counter,
    /// Bans started (a ban renewed while the source keeps flooding is not counted again).
    pub bans: Counter,
    /// Sources banned now (as of the last sweep, once a second).
    pub banned: Gauge,
    /// Sources tracked now (as of the last sweep).
    pub sources: Gauge,
    /// Messages from sources not tracked because the table was full.
    pub untracked: Counter,
    /// New requests refused 503: the source's own transactions were at its cap.
    pub refused_source: Counter,
    /// New requests refused 503: other sources' share of the table (all but the core's
    /// reserve) was full.
    pub refused_shared: Counter,
    /// Messages let through a ban as part of an urgent call.
    pub urgent: Counter,
}

impl FloodStats {
    pub(super) fn collect(&self, out: &mut Exposition) {
        out.counter(
            "sip_flood_dropped_total",
            "Messages from banned sources, dropped before parsing",
            &[],
            self.dropped.get(),
        );
        out.counter(
            "sip_flood_bans_total",
            "Sources banned for sending over the rate",
            &[],
            self.bans.get(),
        );
        out.gauge(
            "sip_flood_banned_sources",
            "Sources banned now",
            &[],
            self.banned.get(),
        );
        out.gauge(
            "sip_flood_sources",
            "Sources tracked for flood protection",
            &[],
            self.sources.get(),
        );
        out.counter(
            "sip_flood_untracked_total",
            "Messages from sources not tracked because the table was full",
            &[],
            self.untracked.get(),
        );
        for (cap, c) in [
            ("source", &self.refused_source),
            ("shared", &self.refused_shared),
        ] {
            out.counter(
                "sip_flood_refused_total",
                "New requests refused 503 by a transaction budget",
                &[("budget", cap)],
                c.get(),
            );
        }
        out.counter(
            "sip_flood_urgent_total",
            "Messages of urgent calls let through a ban",
            &[],
            self.urgent.get(),
        );
    }
}

/// The per-source table. Share it inside the proxy; every method takes `&self`.
pub struct Sources {
    cfg: FloodConfig,
    core: HashSet<IpAddr>,
    table: DashMap<IpAddr, Source>,
}

/// The key of a source: an IPv4 address (an IPv4-mapped IPv6 address is one), or an IPv6 /64.
fn key_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from(
                u128::from(v6) & 0xffff_ffff_ffff_ffff_0000_0000_0000_0000,
            )),
        },
    }
}

impl Sources {
    /// `core` is every address of the core (the next hop, allowed targets, trusted peers and
    /// `cfg.core_peers`).
    pub fn new(cfg: FloodConfig, core: impl IntoIterator<Item = IpAddr>) -> Sources {
        let core = core.into_iter().chain(cfg.core_peers.clone()).collect();
        Sources {
            cfg,
            core,
            table: DashMap::new(),
        }
    }

    pub fn config(&self) -> &FloodConfig {
        &self.cfg
    }

    /// The address is the core's: never counted, limited or banned.
    pub fn is_core(&self, ip: IpAddr) -> bool {
        self.core.contains(&ip)
            || matches!(ip, IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some_and(|v4| self.core.contains(&IpAddr::V4(v4))))
    }

    /// Count one message from `ip` and say whether it may go on.
    pub fn arrive(&self, ip: IpAddr, now: Instant, stats: &FloodStats) -> Arrival {
        if !self.cfg.enabled || self.is_core(ip) {
            return Arrival::Core;
        }
        let key = key_of(ip);
        let mut s = match self.table.get_mut(&key) {
            Some(s) => s,
            None if self.table.len() >= self.cfg.max_sources => {
                stats.untracked.inc();
                return Arrival::Untracked;
            }
            None => self.table.entry(key).or_insert_with(|| Source::new(now)),
        };
        s.seen = now;
        // A ban that ran out starts the count afresh, instead of banning again at once for the
        // window it ended in.
        let ban_over = s.banned_until.is_some_and(|t| now >= t);
        if ban_over {
            s.banned_until = None;
            s.urgent_calls = Vec::new();
        }
        if ban_over || now.saturating_duration_since(s.window) >= self.cfg.window() {
            s.window = now;
            s.count = 0;
            s.urgent = 0;
        }
        s.count = s.count.saturating_add(1);
        if s.count > self.cfg.max_messages {
            // Renewed while the source keeps going over the rate: the ban ends `ban_secs`
            // after the flood does.
            if !s.banned(now) {
                stats.bans.inc();
                tracing::warn!(source = %key, "SIP source banned for flooding");
            }
            s.banned_until = Some(now + Duration::from_secs(self.cfg.ban_secs));
        }
        if s.banned(now) {
            Arrival::Banned
        } else {
            Arrival::Open
        }
    }

    /// A banned source's message that starts an urgent call (`urgent_call` is its Call-ID) or
    /// belongs to one (`belongs` asks whether the message carries a remembered Call-ID): true
    /// when it may go on, within [`URGENT_PER_WINDOW`].
    pub fn let_urgent(
        &self,
        ip: IpAddr,
        urgent_call: Option<&str>,
        belongs: impl FnOnce(&[Box<str>]) -> bool,
    ) -> bool {
        let Some(mut s) = self.table.get_mut(&key_of(ip)) else {
            return false;
        };
        if s.urgent >= URGENT_PER_WINDOW {
            return false;
        }
        match urgent_call {
            Some(id) if !s.urgent_calls.iter().any(|c| &**c == id) => {
                if s.urgent_calls.len() >= URGENT_CALLS {
                    s.urgent_calls.remove(0);
                }
                s.urgent_calls.push(id.into());
            }
            Some(_) => {}
            None if s.urgent_calls.is_empty() || !belongs(&s.urgent_calls) => return false,
            None => {}
        }
        s.urgent += 1;
        true
    }

    /// The source may still have an urgent message carried in this window.
    pub fn has_urgent_room(&self, ip: IpAddr) -> bool {
        self.table
            .get(&key_of(ip))
            .is_some_and(|s| s.urgent < URGENT_PER_WINDOW)
    }

    /// The source has urgent calls remembered (only then is a banned source's non-INVITE worth
    /// a look).
    pub fn has_urgent_calls(&self, ip: IpAddr) -> bool {
        self.table
            .get(&key_of(ip))
            .is_some_and(|s| !s.urgent_calls.is_empty())
    }

    /// Server transactions `ip` holds (0 for the core and untracked sources).
    pub fn transactions(&self, ip: IpAddr) -> usize {
        self.table.get(&key_of(ip)).map_or(0, |s| s.transactions)
    }

    /// A server transaction opened for `ip`; returns the key to hand back to
    /// [`Sources::closed`] when it ends, or `None` when the source is not counted.
    pub fn opened(&self, ip: IpAddr) -> Option<IpAddr> {
        if !self.cfg.enabled || self.is_core(ip) {
            return None;
        }
        let key = key_of(ip);
        let mut s = self.table.get_mut(&key)?;
        s.transactions += 1;
        Some(key)
    }

    /// A server transaction counted by [`Sources::opened`] ended.
    pub fn closed(&self, key: IpAddr) {
        if let Some(mut s) = self.table.get_mut(&key) {
            s.transactions = s.transactions.saturating_sub(1);
        }
    }

    /// Whether `ip` is banned now (for tests and diagnostics).
    pub fn is_banned(&self, ip: IpAddr, now: Instant) -> bool {
        self.table.get(&key_of(ip)).is_some_and(|s| s.banned(now))
    }

    /// Forget sources that hold nothing: no transaction, no ban, quiet for a window. Then give
    /// back the table's memory when a burst of sources has gone.
    pub fn sweep(&self, now: Instant, stats: &FloodStats) {
        let window = self.cfg.window();
        let mut banned = 0i64;
        self.table.retain(|_, s| {
            let is_banned = s.banned(now);
            banned += i64::from(is_banned);
            if !is_banned && s.banned_until.take().is_some() {
                s.window = now;
                s.count = 0;
                s.urgent = 0;
                s.urgent_calls = Vec::new();
            }
            is_banned || s.transactions > 0 || now.saturating_duration_since(s.seen) < window
        });
        stats.banned.set(banned);
        stats
            .sources
            .set(i64::try_from(self.table.len()).unwrap_or(i64::MAX));
        shrink(&self.table);
    }
}

/// Give a swept table's memory back when it holds far fewer entries than it has room for (a
/// hash table never shrinks by itself, so a burst would keep its peak for good).
pub(super) fn shrink<K: Eq + std::hash::Hash, V>(m: &DashMap<K, V>) {
    let cap = m.capacity();
    if cap > 4096 && cap > 4 * m.len() {
        m.shrink_to_fit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> FloodConfig {
        FloodConfig {
            max_messages: 3,
            window_secs: 2,
            ban_secs: 10,
            max_sources: 2,
            ..FloodConfig::default()
        }
    }

    #[test]
    fn a_source_over_the_rate_is_banned_until_the_ban_expires() {
        let core: IpAddr = "10.0.0.5".parse().unwrap();
        let s = Sources::new(small(), [core]);
        let st = FloodStats::default();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(s.arrive(a, t0, &st), Arrival::Open);
        }
        assert_eq!(s.arrive(a, t0, &st), Arrival::Banned);
        assert_eq!(s.arrive(a, t0, &st), Arrival::Banned);
        assert_eq!(st.bans.get(), 1);
        // The core is never counted.
        for _ in 0..10 {
            assert_eq!(s.arrive(core, t0, &st), Arrival::Core);
        }
        // Quiet: the ban runs out ban_secs after the last message over the rate.
        let later = t0 + Duration::from_secs(10);
        assert!(!s.is_banned(a, later));
        assert_eq!(s.arrive(a, later, &st), Arrival::Open);
        s.sweep(later + Duration::from_secs(3), &st);
        assert_eq!(st.sources.get(), 0);
    }

    #[test]
    fn a_source_that_keeps_flooding_stays_banned() {
        let s = Sources::new(small(), []);
        let st = FloodStats::default();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let t0 = Instant::now();
        for i in 0..30u64 {
            let now = t0 + Duration::from_secs(i);
            for _ in 0..5 {
                s.arrive(a, now, &st);
            }
        }
        assert!(s.is_banned(a, t0 + Duration::from_secs(35)));
        assert_eq!(st.bans.get(), 1);
    }

    #[test]
    fn ipv6_sources_are_counted_per_64_and_the_table_is_capped() {
        let s = Sources::new(small(), []);
        let st = FloodStats::default();
        let t0 = Instant::now();
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        for _ in 0..2 {
            s.arrive(a, t0, &st);
            s.arrive(b, t0, &st);
        }
        assert!(s.is_banned(b, t0));
        // Two sources tracked; a third is let through, untracked and counted.
        let c: IpAddr = "192.0.2.3".parse().unwrap();
        s.arrive(c, t0, &st);
        let d: IpAddr = "192.0.2.4".parse().unwrap();
        assert_eq!(s.arrive(d, t0, &st), Arrival::Untracked);
        assert_eq!(st.untracked.get(), 1);
        // A v4-mapped address is its IPv4 source.
        let mapped: IpAddr = "::ffff:192.0.2.3".parse().unwrap();
        assert_eq!(s.arrive(mapped, t0, &st), Arrival::Open);
    }

    #[test]
    fn transactions_keep_a_source_and_are_counted() {
        let s = Sources::new(small(), []);
        let st = FloodStats::default();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let t0 = Instant::now();
        s.arrive(a, t0, &st);
        let k = s.opened(a).unwrap();
        assert_eq!(s.transactions(a), 1);
        s.sweep(t0 + Duration::from_secs(60), &st);
        assert_eq!(s.transactions(a), 1, "a source with a transaction stays");
        s.closed(k);
        s.sweep(t0 + Duration::from_secs(60), &st);
        assert_eq!(st.sources.get(), 0);
    }

    #[test]
    fn urgent_calls_pass_a_ban_within_their_allowance() {
        let s = Sources::new(small(), []);
        let st = FloodStats::default();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let t0 = Instant::now();
        for _ in 0..5 {
            s.arrive(a, t0, &st);
        }
        assert!(!s.let_urgent(a, None, |_| true), "no urgent call yet");
        assert!(s.let_urgent(a, Some("sos@x"), |_| false));
        assert!(s.has_urgent_calls(a));
        assert!(s.let_urgent(a, None, |ids| ids.iter().any(|i| &**i == "sos@x")));
        assert!(!s.let_urgent(a, None, |_| false), "not of the urgent call");
        let mut passed = 2;
        while s.let_urgent(a, None, |_| true) {
            passed += 1;
        }
        assert_eq!(passed, URGENT_PER_WINDOW);
    }

    #[test]
    fn validate_names_each_problem() {
        assert_eq!(FloodConfig::default().validate(), Vec::<String>::new());
        let bad = FloodConfig {
            max_messages: 0,
            core_reserve_percent: 95,
            ..FloodConfig::default()
        };
        assert_eq!(
            bad.validate(),
            [
                "sip.flood.max_messages: must be at least 1, got 0",
                "sip.flood.core_reserve_percent: expected 0..=90, got 95",
            ]
        );
    }
}
