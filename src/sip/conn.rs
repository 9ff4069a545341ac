//! Who may hold a stream connection (TCP today, TLS later: the rules are the transport's, not
//! the socket's): a budget of its own for the peers the agent serves (the next hop,
//! `[sip] allowed_targets` and `trusted_peers`), a total for everyone else, and a cap per source
//! address within that total. One address that opens connections as fast as it can therefore takes at most its own
//! share; it never takes the last connection another source, or the path to the core, needs.
//!
//! A source is an IPv4 address or an IPv6 /64: one host is usually given a whole /64, and
//! counting its addresses apart would give it 2^64 shares.
//!
//! A connection holds a [`Slot`] for as long as it lives; dropping the slot gives it back. The
//! counts sit behind one mutex, taken once when a connection opens and once when it closes,
//! never per message.
//!
//! Knows nothing of sockets, SIP messages or time: the transport asks and keeps the slot.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// Why a connection was refused (the label of `sip_tcp_refused_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Every connection for other peers is taken.
    Total,
    /// This source already holds its share.
    Source,
    /// The core's own budget is spent.
    Core,
}

impl Refusal {
    pub const ALL: [Refusal; 3] = [Refusal::Total, Refusal::Source, Refusal::Core];

    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Total => "total",
            Refusal::Source => "source",
            Refusal::Core => "core",
        }
    }
}

/// The caps, from `[sip]`.
#[derive(Debug, Clone)]
pub struct Caps {
    /// Addresses whose connections draw on the core's budget, in either direction.
    pub core: Vec<IpAddr>,
    pub max_core: usize,
    pub max_total: usize,
    pub max_per_source: usize,
}

#[derive(Debug, Default)]
struct Counts {
    core: usize,
    total: usize,
    by_source: HashMap<IpAddr, usize>,
}

/// The connection budgets of one listener and its outbound connections.
#[derive(Debug)]
pub struct Budgets {
    caps: Caps,
    counts: Mutex<Counts>,
}

/// One connection's place in its budget, given back when dropped.
#[derive(Debug)]
pub struct Slot {
    budgets: Arc<Budgets>,
    ip: IpAddr,
    core: bool,
}

impl Budgets {
    pub fn new(caps: Caps) -> Arc<Budgets> {
        Arc::new(Budgets {
            caps,
            counts: Mutex::new(Counts::default()),
        })
    }

    /// A place for a connection with `ip` (its source, or where we connect to).
    pub fn take(self: &Arc<Self>, ip: IpAddr) -> Result<Slot, Refusal> {
        let core = self.caps.core.contains(&ip);
        let mut c = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        if core {
            if c.core >= self.caps.max_core {
                return Err(Refusal::Core);
            }
            c.core += 1;
        } else {
            if c.total >= self.caps.max_total {
                return Err(Refusal::Total);
            }
            let mine = c.by_source.entry(source(ip)).or_insert(0);
            if *mine >= self.caps.max_per_source {
                return Err(Refusal::Source);
            }
            *mine += 1;
            c.total += 1;
        }
        Ok(Slot {
            budgets: self.clone(),
            ip,
            core,
        })
    }

    /// Connections held: the core's and everyone else's.
    pub fn held(&self) -> (usize, usize) {
        let c = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        (c.core, c.total)
    }

    fn give_back(&self, ip: IpAddr, core: bool) {
        let mut c = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        if core {
            c.core = c.core.saturating_sub(1);
            return;
        }
        c.total = c.total.saturating_sub(1);
        // The map holds only sources with a connection open: bounded by the total.
        let src = source(ip);
        if let Some(n) = c.by_source.get_mut(&src) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                c.by_source.remove(&src);
            }
        }
    }
}

/// The source an address counts as: itself for IPv4, its /64 for IPv6.
fn source(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & (!0u128 << 64)).into()),
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.budgets.give_back(self.ip, self.core);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budgets() -> Arc<Budgets> {
        Budgets::new(Caps {
            core: vec!["10.0.0.5".parse().unwrap()],
            max_core: 2,
            max_total: 3,
            max_per_source: 2,
        })
    }

    #[test]
    fn one_source_takes_its_share_and_no_more() {
        let b = budgets();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let s1 = b.take(a).unwrap();
        let _s2 = b.take(a).unwrap();
        assert_eq!(b.take(a).unwrap_err(), Refusal::Source);
        // Another source still gets the last place of the total.
        let other = b.take("192.0.2.2".parse().unwrap()).unwrap();
        assert_eq!(
            b.take("192.0.2.3".parse().unwrap()).unwrap_err(),
            Refusal::Total
        );
        drop(s1);
        assert!(
            b.take(a).is_ok(),
            "a closed connection gives its place back"
        );
        drop(other);
    }

    #[test]
    fn an_ipv6_source_is_its_64() {
        let b = budgets();
        let _s1 = b.take("2001:db8:1:2::1".parse().unwrap()).unwrap();
        let _s2 = b.take("2001:db8:1:2::ffff".parse().unwrap()).unwrap();
        assert_eq!(
            b.take("2001:db8:1:2:abcd::9".parse().unwrap()).unwrap_err(),
            Refusal::Source
        );
        assert!(b.take("2001:db8:1:3::1".parse().unwrap()).is_ok());
    }

    #[test]
    fn the_core_has_a_budget_of_its_own() {
        let b = budgets();
        let held: Vec<Slot> = (1..=3)
            .map(|i| b.take(IpAddr::from([192, 0, 2, i])).unwrap())
            .collect();
        let core: IpAddr = "10.0.0.5".parse().unwrap();
        let c1 = b.take(core).unwrap();
        let _c2 = b.take(core).unwrap();
        assert_eq!(b.take(core).unwrap_err(), Refusal::Core);
        assert_eq!(b.held(), (2, 3));
        drop(c1);
        drop(held);
        assert_eq!(b.held(), (1, 0));
        let c = b.counts.lock().unwrap();
        assert!(
            c.by_source.is_empty(),
            "no source is remembered without a connection"
        );
    }
}
