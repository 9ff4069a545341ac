//! Finding where a SIP URI's host name is (RFC 3263): NAPTR, then SRV in priority and weight
//! order, then A/AAAA, with hickory-resolver, on the runtime, never on a message's path. The
//! core asks for a [`Name`] (see `core::names`) and is handed back a [`Resolved`]; this module
//! is the transport side that answers it, and holds the `[dns]` config section.
//!
//! hickory keeps the cache: size-bounded (`cache_size`), honouring each record's TTL and
//! negative answers (the SOA's minimum). The core keeps the answer it was given for the TTL
//! this module reports, so a request to a name resolved once goes on without waiting.
//!
//! Knows nothing of transactions or calls: a name in, addresses in the order to try them out.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hickory_resolver::config::{NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::rr::{RData, RecordType};
use hickory_resolver::proto::xfer::Protocol;
use hickory_resolver::proto::ProtoErrorKind;
use hickory_resolver::{ResolveError, TokioResolver};
use serde::Deserialize;

use super::core::{Name, Resolved};
use super::Transport;

/// The `[dns]` section: which servers answer, and the bounds on waiting for them.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DnsConfig {
    /// Servers to ask (`IP:PORT`, UDP then TCP). Empty: the system's (`/etc/resolv.conf`).
    pub servers: Vec<SocketAddr>,
    /// How long one query waits for an answer before asking again or giving up.
    pub timeout_ms: u64,
    /// Queries of one record before giving up on it.
    pub attempts: usize,
    /// Records the resolver caches (hickory's LRU; each for its TTL).
    pub cache_size: usize,
    /// Names the proxy holds an answer (or a wait) for at once; a request to a new name past it
    /// is answered 503.
    pub max_names: usize,
    /// Requests parked while their target's name is resolved, over all names; past it a
    /// request to an unresolved name is answered 503.
    pub max_parked: usize,
    /// How long a parked request waits for its name before it is answered 504.
    pub park_ms: u64,
    /// Longest time a failed resolution is remembered (a shorter SOA minimum wins): requests
    /// to that name are answered 503 meanwhile without asking again.
    pub negative_secs: u64,
    /// How long a request sent to one of several SRV targets waits for any response before it
    /// goes to the next (RFC 3263 4.3); a refused TCP connection moves on at once.
    pub failover_ms: u64,
}

impl Default for DnsConfig {
    fn default() -> Self {
        DnsConfig {
            servers: Vec::new(),
            timeout_ms: 2000,
            attempts: 2,
            cache_size: 1024,
            max_names: 4096,
            max_parked: 2000,
            park_ms: 5000,
            negative_secs: 30,
            failover_ms: 4000,
        }
    }
}

impl DnsConfig {
    /// Every problem serde cannot catch, each naming the setting and what was expected.
    pub fn validate(&self) -> Vec<String> {
        let mut p = Vec::new();
        for (key, v) in [
            ("timeout_ms", self.timeout_ms),
            ("park_ms", self.park_ms),
            ("failover_ms", self.failover_ms),
        ] {
            if v == 0 {
                p.push(format!("dns.{key}: must be at least 1, got 0"));
            }
        }
        for (key, v) in [
            ("attempts", self.attempts),
            ("cache_size", self.cache_size),
            ("max_names", self.max_names),
            ("max_parked", self.max_parked),
        ] {
            if v == 0 {
                p.push(format!("dns.{key}: must be at least 1, got 0"));
            }
        }
        if let Some(s) = self.servers.iter().find(|s| s.port() == 0) {
            p.push(format!(
                "dns.servers: {s} has port 0; expected IP:PORT such as 127.0.0.1:53"
            ));
        }
        p
    }
}

/// The resolver the transport runs for the core.
pub struct Resolver {
    inner: Option<TokioResolver>,
    /// Why there is none (the system's config could not be read): every answer says so.
    broken: Option<String>,
    negative: Duration,
}

/// The NAPTR services we can use (RFC 3263 4.1): for a `sips:` URI only SIPS+D2T (TLS).
fn naptr_transport(service: &[u8], secure: bool) -> Option<Transport> {
    let s = service.to_ascii_uppercase();
    match (s.as_slice(), secure) {
        (b"SIP+D2U", false) => Some(Transport::Udp),
        (b"SIP+D2T", false) => Some(Transport::Tcp),
        (b"SIPS+D2T", _) => Some(Transport::Tls),
        _ => None,
    }
}

/// How one step of a resolution ended without addresses.
enum Miss {
    /// No such name or no records of the type: try the next step.
    Empty(Option<u32>),
    /// The server did not answer in time.
    Timeout,
    /// Anything else (refused, unreachable, malformed).
    Failed(String),
}

fn miss(e: &ResolveError) -> Miss {
    match e.proto().map(|p| p.kind()) {
        Some(ProtoErrorKind::NoRecordsFound { negative_ttl, .. }) => Miss::Empty(*negative_ttl),
        Some(ProtoErrorKind::Timeout) => Miss::Timeout,
        _ => Miss::Failed(e.to_string()),
    }
}

impl Resolver {
    pub fn new(cfg: &DnsConfig) -> Resolver {
        let provider = TokioConnectionProvider::default();
        let builder = if cfg.servers.is_empty() {
            match TokioResolver::builder(provider) {
                Ok(b) => Ok(b),
                Err(e) => Err(format!("the system's DNS configuration: {e}")),
            }
        } else {
            let mut c = ResolverConfig::new();
            for s in &cfg.servers {
                c.add_name_server(NameServerConfig::new(*s, Protocol::Udp));
                c.add_name_server(NameServerConfig::new(*s, Protocol::Tcp));
            }
            Ok(TokioResolver::builder_with_config(c, provider))
        };
        let negative = Duration::from_secs(cfg.negative_secs);
        match builder {
            Ok(mut b) => {
                let o: &mut ResolverOpts = b.options_mut();
                o.timeout = Duration::from_millis(cfg.timeout_ms.max(1));
                o.attempts = cfg.attempts.max(1);
                o.cache_size = cfg.cache_size.max(1);
                o.negative_max_ttl = Some(negative);
                Resolver {
                    inner: Some(b.build()),
                    broken: None,
                    negative,
                }
            }
            Err(why) => {
                tracing::warn!(
                    "DNS: no resolver ({why}); requests to host names will be answered 503"
                );
                Resolver {
                    inner: None,
                    broken: Some(why),
                    negative,
                }
            }
        }
    }

    /// RFC 3263 section 4 for `name`: the addresses to try, in order, and for how long the
    /// answer holds.
    pub async fn resolve(&self, name: &Name) -> Resolved {
        let Some(r) = &self.inner else {
            return Resolved::Failed {
                ttl: self.negative,
                why: self.broken.clone().unwrap_or_default(),
            };
        };
        let mut found = Found::new(Instant::now());
        let host = format!("{}.", name.host);
        let outcome = if let Some(port) = name.port {
            // A port given: A/AAAA only (4.2), over the transport asked or the scheme's.
            let t = name.transport.unwrap_or(if name.secure {
                Transport::Tls
            } else {
                Transport::Udp
            });
            found.addresses(r, &host, port, t).await
        } else {
            self.by_service(r, name, &host, &mut found).await
        };
        match outcome {
            Ok(()) if !found.targets.is_empty() => Resolved::Found {
                ttl: found.ttl(),
                targets: found.targets,
            },
            Ok(()) => Resolved::Failed {
                ttl: self.negative,
                why: "no NAPTR, SRV, A or AAAA records".into(),
            },
            Err(Miss::Empty(neg)) => Resolved::Failed {
                ttl: neg
                    .map(|s| Duration::from_secs(u64::from(s)))
                    .unwrap_or(self.negative)
                    .min(self.negative),
                why: "no such name (or no records)".into(),
            },
            Err(Miss::Timeout) => Resolved::TimedOut,
            Err(Miss::Failed(why)) => Resolved::Failed {
                ttl: Duration::from_secs(1).min(self.negative),
                why,
            },
        }
    }

    /// No port: NAPTR (4.1), else SRV for each transport, else A/AAAA on the default port.
    async fn by_service(
        &self,
        r: &TokioResolver,
        name: &Name,
        host: &str,
        found: &mut Found,
    ) -> Result<(), Miss> {
        if name.transport.is_none() {
            match r.lookup(host, RecordType::NAPTR).await {
                Ok(l) => {
                    found.seen(l.valid_until());
                    let mut recs: Vec<_> = l
                        .iter()
                        .filter_map(|d| match d {
                            RData::NAPTR(n) => Some(n.clone()),
                            _ => None,
                        })
                        .filter(|n| n.flags().eq_ignore_ascii_case(b"s"))
                        .filter_map(|n| Some((naptr_transport(n.services(), name.secure)?, n)))
                        .collect();
                    recs.sort_by_key(|(_, n)| (n.order(), n.preference()));
                    for (t, n) in recs {
                        let srv = n.replacement().to_ascii();
                        match found.srv(r, &srv, t).await {
                            Ok(()) if !found.targets.is_empty() => return Ok(()),
                            Ok(()) | Err(Miss::Empty(_)) => {}
                            Err(e) => return Err(e),
                        }
                    }
                    // NAPTR records, none usable: RFC 3263 4.1 goes on as without them.
                }
                Err(e) => match miss(&e) {
                    Miss::Empty(_) => {}
                    m => return Err(m),
                },
            }
        }
        let tries: &[(&str, Transport)] = match (name.transport, name.secure) {
            (_, true) | (Some(Transport::Tls), _) => &[("_sips._tcp", Transport::Tls)],
            (Some(Transport::Udp), false) => &[("_sip._udp", Transport::Udp)],
            (Some(Transport::Tcp), false) => &[("_sip._tcp", Transport::Tcp)],
            (None, false) => &[("_sip._udp", Transport::Udp), ("_sip._tcp", Transport::Tcp)],
        };
        let mut last = Miss::Empty(None);
        for (prefix, t) in tries {
            match found.srv(r, &format!("{prefix}.{host}"), *t).await {
                Ok(()) if !found.targets.is_empty() => return Ok(()),
                Ok(()) => {}
                Err(e) => last = e,
            }
        }
        if let Miss::Timeout | Miss::Failed(_) = last {
            return Err(last);
        }
        // No SRV either (4.2): the host's addresses on the scheme's default port.
        let (port, t) = if name.secure || name.transport == Some(Transport::Tls) {
            (5061, Transport::Tls)
        } else {
            (5060, name.transport.unwrap_or(Transport::Udp))
        };
        found.addresses(r, host, port, t).await
    }
}

/// Addresses gathered so far, and when the first of the records behind them expires.
struct Found {
    targets: Vec<(Transport, SocketAddr)>,
    until: Option<Instant>,
    start: Instant,
}

impl Found {
    fn new(start: Instant) -> Found {
        Found {
            targets: Vec::new(),
            until: None,
            start,
        }
    }

    fn seen(&mut self, until: Instant) {
        self.until = Some(self.until.map_or(until, |u| u.min(until)));
    }

    fn ttl(&self) -> Duration {
        self.until
            .map_or(Duration::ZERO, |u| u.saturating_duration_since(self.start))
    }

    async fn addresses(
        &mut self,
        r: &TokioResolver,
        host: &str,
        port: u16,
        t: Transport,
    ) -> Result<(), Miss> {
        let ips = r.lookup_ip(host).await.map_err(|e| miss(&e))?;
        self.seen(ips.valid_until());
        for ip in ips.iter() {
            let a = (t, SocketAddr::new(ip, port));
            if !self.targets.contains(&a) {
                self.targets.push(a);
            }
        }
        Ok(())
    }

    /// The SRV records of `owner` in RFC 2782 order (priority, then a weighted draw), each
    /// target's addresses in turn. A target whose addresses cannot be found is skipped.
    async fn srv(&mut self, r: &TokioResolver, owner: &str, t: Transport) -> Result<(), Miss> {
        let l = r
            .lookup(owner, RecordType::SRV)
            .await
            .map_err(|e| miss(&e))?;
        self.seen(l.valid_until());
        let mut recs: Vec<(u16, u16, u16, String)> = l
            .iter()
            .filter_map(|d| match d {
                RData::SRV(s) => Some(s),
                _ => None,
            })
            .filter(|s| !s.target().is_root())
            .map(|s| (s.priority(), s.weight(), s.port(), s.target().to_ascii()))
            .collect();
        recs.sort_by_key(|r| r.0);
        let mut ordered = Vec::with_capacity(recs.len());
        while !recs.is_empty() {
            let prio = recs[0].0;
            let n = recs.iter().take_while(|r| r.0 == prio).count();
            let mut group: Vec<_> = recs.drain(..n).collect();
            while !group.is_empty() {
                let total: u32 = group.iter().map(|r| u32::from(r.1)).sum();
                let i = if total == 0 {
                    0
                } else {
                    let mut pick = fastrand::u32(0..total);
                    group
                        .iter()
                        .position(|r| {
                            let w = u32::from(r.1);
                            if pick < w {
                                true
                            } else {
                                pick -= w;
                                false
                            }
                        })
                        .unwrap_or(0)
                };
                ordered.push(group.remove(i));
            }
        }
        for (_, _, port, target) in ordered {
            match self.addresses(r, &target, port, t).await {
                Ok(()) | Err(Miss::Empty(_)) => {}
                Err(e) if self.targets.is_empty() => return Err(e),
                Err(_) => {}
            }
        }
        Ok(())
    }
}
