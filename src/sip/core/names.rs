//! Host names the proxy sends to (a named `next_hop`, a Route or Request-URI naming a host),
//! without any I/O: the core asks for a [`Name`] ([`Proxy::take_queries`]), the transport
//! resolves it (`sip::dns`) and hands the answer back with `now` ([`Proxy::resolved`]).
//!
//! Meanwhile a request to that name is parked, alone: its bytes and source are kept, and it is
//! handled again from the start when the answer comes (so it is screened once, after routing
//! is known). Everything else flows on. Parked requests are capped over all names
//! (`[dns] max_parked`) and wait at most `park_ms`, then are answered 504; a failed resolution
//! answers them 503, and is remembered for its negative TTL. Answers are kept for their TTL,
//! names at most `max_names`.
//!
//! Knows nothing of DNS records or sockets: a name out, addresses in the order to try them in.

use std::hash::BuildHasher;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::super::msg::Message;
use super::super::Transport;
use super::{CertNames, Output, Peer, Proxy};

/// A host name to resolve, with what RFC 3263 needs to do it: the URI's port, its `transport`
/// parameter and whether it is `sips:`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Name {
    /// Lower case, without a trailing dot.
    pub host: String,
    pub port: Option<u16>,
    pub transport: Option<Transport>,
    pub secure: bool,
}

impl std::fmt::Display for Name {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.host)?;
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        if let Some(t) = self.transport {
            write!(f, ";transport={}", t.as_str())?;
        }
        Ok(())
    }
}

/// What the resolver found for a [`Name`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolved {
    /// Addresses in the order to try them (RFC 3263: NAPTR order, SRV priority and weight),
    /// and how long the answer holds (the shortest TTL behind it).
    Found {
        targets: Vec<(Transport, SocketAddr)>,
        ttl: Duration,
    },
    /// No usable record, or the servers refused: requests to the name are answered 503 for
    /// `ttl`.
    Failed { ttl: Duration, why: String },
    /// No server answered in time: 504.
    TimedOut,
}

/// Where a request goes: a peer, and when it came from a name, every address the name has
/// (the first is `peer`), to fail over to in turn.
#[derive(Debug, Clone)]
pub(super) struct Dest {
    pub(super) peer: Peer,
    pub(super) alt: Option<Arc<[Peer]>>,
}

impl From<Peer> for Dest {
    fn from(peer: Peer) -> Dest {
        Dest { peer, alt: None }
    }
}

/// The outcome of routing a request.
pub(super) enum Routed {
    Go(Dest),
    /// Its target is a name without an answer yet: park it.
    Wait(Name),
    /// Its target's name could not be resolved: answer this.
    Fail(u16),
}

pub(super) enum NameState {
    Pending {
        parked: Vec<Parked>,
        since: Instant,
    },
    Ready {
        targets: Arc<[Peer]>,
        expires: Instant,
    },
    Failed {
        code: u16,
        expires: Instant,
    },
}

pub(super) struct Parked {
    data: Bytes,
    from: Peer,
    /// What its TLS client's certificate proved, for when it is handled again.
    names: Option<CertNames>,
    /// A hash of the request's transaction key: its retransmissions are not parked twice.
    key: u64,
    deadline: Instant,
}

/// Shortest time an answer is kept: a request handled again on an answer with TTL 0 must find
/// it there, not park once more.
const MIN_TTL: Duration = Duration::from_secs(1);

fn phrase(code: u16) -> &'static str {
    if code == 504 {
        "Server Time-out"
    } else {
        "Service Unavailable"
    }
}

impl Proxy {
    /// The addresses of `name` as known at `now`.
    pub(super) fn lookup_name(&self, name: &Name, now: Instant) -> Routed {
        match self.names.get(name).as_deref() {
            Some(NameState::Ready { targets, expires }) if now < *expires => {
                match targets.first() {
                    Some(p) => Routed::Go(Dest {
                        peer: *p,
                        alt: (targets.len() > 1).then(|| targets.clone()),
                    }),
                    None => Routed::Fail(503),
                }
            }
            Some(NameState::Failed { code, expires }) if now < *expires => Routed::Fail(*code),
            _ => Routed::Wait(name.clone()),
        }
    }

    /// Park `msg` (received from `from`) until `name` is resolved, asking for it if nobody has
    /// yet. Over the bounds it is answered 503 at once.
    pub(super) fn park(
        &self,
        name: Name,
        msg: &Message,
        (from, names): (Peer, Option<CertNames>),
        now: Instant,
        out: &mut Vec<Output>,
    ) {
        let dns = &self.cfg.dns;
        let seed = Self::server_key(msg, msg.method()).unwrap_or_default();
        let key = self.keys.hash_one((&seed, 0xd45_u32));
        let full = self.parked.load(Ordering::Relaxed) >= dns.max_parked;
        let known = self.names.contains_key(&name);
        if full || (!known && self.names.len() >= dns.max_names) {
            self.stats.dns_refused.inc();
            return self.answer_unrouted(msg, from, 503, out);
        }
        let mut ask = false;
        let mut entry = self.names.entry(name.clone()).or_insert_with(|| {
            ask = true;
            NameState::Pending {
                parked: Vec::new(),
                since: now,
            }
        });
        if !matches!(*entry, NameState::Pending { .. }) {
            // An answer that has expired: ask again.
            *entry = NameState::Pending {
                parked: Vec::new(),
                since: now,
            };
            ask = true;
        }
        if let NameState::Pending { parked, .. } = &mut *entry {
            if parked.iter().any(|p| p.key == key && !seed.is_empty()) {
                return; // a retransmission of a request already waiting
            }
            parked.push(Parked {
                data: msg.buf.clone(),
                from,
                names,
                key,
                deadline: now + Duration::from_millis(dns.park_ms),
            });
            self.parked.fetch_add(1, Ordering::Relaxed);
            self.stats.dns_parked.inc();
        }
        drop(entry);
        if ask {
            self.queries
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(name);
            self.has_queries.store(true, Ordering::Release);
        }
    }

    /// Names to resolve, asked since the last call. Cheap when there are none: the transport
    /// calls it after every message.
    pub fn take_queries(&self) -> Vec<Name> {
        if !self.has_queries.swap(false, Ordering::AcqRel) {
            return Vec::new();
        }
        std::mem::take(&mut *self.queries.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// The resolver's answer for `name`, at `now`: the requests parked on it are handled again
    /// (and go on, or are answered 503/504). An answer nobody waits for any more is dropped.
    pub fn resolved(&self, name: &Name, answer: Resolved, now: Instant) -> Vec<Output> {
        let negative = Duration::from_secs(self.cfg.dns.negative_secs);
        let state = match answer {
            Resolved::Found { targets, ttl } if !targets.is_empty() => {
                let targets: Arc<[Peer]> = targets
                    .into_iter()
                    .map(|(transport, addr)| Peer {
                        transport,
                        addr,
                        conn: None,
                    })
                    .collect();
                NameState::Ready {
                    targets,
                    expires: now + ttl.max(MIN_TTL),
                }
            }
            Resolved::Found { .. } => NameState::Failed {
                code: 503,
                expires: now + negative.max(MIN_TTL),
            },
            Resolved::Failed { ttl, .. } => NameState::Failed {
                code: 503,
                expires: now + ttl.min(negative).max(MIN_TTL),
            },
            Resolved::TimedOut => NameState::Failed {
                code: 504,
                expires: now + MIN_TTL,
            },
        };
        let parked = match self.names.get_mut(name) {
            Some(mut e) => match &mut *e {
                NameState::Pending { parked, .. } => {
                    let p = std::mem::take(parked);
                    *e = state;
                    p
                }
                _ => return Vec::new(),
            },
            None => return Vec::new(),
        };
        self.parked.fetch_sub(parked.len(), Ordering::Relaxed);
        let mut out = Vec::new();
        for p in parked {
            self.handle_into(p.data, p.from, p.names.as_ref(), now, &mut out);
        }
        for o in &out {
            self.stats.sent(o.to.transport);
        }
        out
    }

    /// Answer a request that cannot be routed (not an ACK, which has no answer).
    pub(super) fn answer_unrouted(
        &self,
        msg: &Message,
        from: Peer,
        code: u16,
        out: &mut Vec<Output>,
    ) {
        self.stats.dns_failed.inc();
        if !msg.method_is("ACK") {
            self.respond(msg, from, code, phrase(code), &[], out);
        }
    }

    /// Parked requests past their wait are answered 504; answers past their TTL are forgotten,
    /// and so is a wait nobody is parked on any more (a late answer is then dropped).
    pub(super) fn sweep_names(&self, now: Instant, out: &mut Vec<Output>) {
        let park = Duration::from_millis(self.cfg.dns.park_ms);
        let mut late = Vec::new();
        self.names.retain(|_, s| match s {
            NameState::Pending { parked, since } => {
                let (gone, kept): (Vec<_>, Vec<_>) = std::mem::take(parked)
                    .into_iter()
                    .partition(|p| now >= p.deadline);
                *parked = kept;
                late.extend(gone);
                !parked.is_empty() || now < *since + park
            }
            NameState::Ready { expires, .. } | NameState::Failed { expires, .. } => now < *expires,
        });
        self.parked.fetch_sub(late.len(), Ordering::Relaxed);
        for p in late {
            let udp = p.from.transport == Transport::Udp;
            if let Ok(msg) = Message::parse(p.data, &self.limits, udp) {
                self.answer_unrouted(&msg, p.from, 504, out);
            }
        }
    }

    /// The addresses a named next hop had when last resolved (to know a request came from it).
    pub(super) fn known_addrs(&self, name: &Name) -> Option<Arc<[Peer]>> {
        match self.names.get(name).as_deref() {
            Some(NameState::Ready { targets, .. }) => Some(targets.clone()),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests;
