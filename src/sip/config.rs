//! The `[sip]` config section: addresses, caps and timers of the SIP layer.
//!
//! Knows nothing of screening policy (whether to Record-Route is the hook's decision).

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;

use super::dns::DnsConfig;
use super::flood::FloodConfig;

use super::msg::Limits;
use super::Transport;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SipConfig {
    /// UDP and TCP listen address (both on the same port), or a list of them (such as one IPv4
    /// and one IPv6 address). IPv6 in brackets: `[2001:db8::1]:5060`; `[::]:5060` is dual-stack
    /// (IPv4 peers reach it too, as `IPV6_V6ONLY` is switched off).
    pub listen: Listen,
    /// Host written in our Via and Record-Route, or one per address family (such as
    /// `["192.0.2.10", "2001:db8::10"]`): towards a peer of either family we write the host of
    /// its family (a name serves both). Default: the listen IP of that family (must be set
    /// when listening on an unspecified address such as 0.0.0.0 or `[::]`).
    #[serde(deserialize_with = "one_or_many")]
    pub advertise: Vec<String>,
    /// Where initial requests go (the core or PBX behind us): `IP:PORT`, or a host name that
    /// is resolved by RFC 3263 (`host` alone: NAPTR, SRV, then A/AAAA; `host:port`: A/AAAA).
    pub next_hop: Option<Hop>,
    /// Transport towards `next_hop` when it is an address or a name with a port (a name
    /// without one gets its transport from NAPTR and SRV, unless this is `tls`, which asks
    /// for `_sips._tcp`): `udp`, `tcp` or `tls`.
    pub next_hop_transport: Transport,
    /// SIP over TLS listen address (such as `0.0.0.0:5061`); unset: no TLS listener. Needs
    /// `tls_cert` and `tls_key`.
    pub tls_listen: Option<SocketAddr>,
    /// PEM certificate chain (ours first) the TLS listener shows, and shows as a client to a
    /// TLS peer that asks for one.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// Folder of CA certificates (`*.pem`, `*.crt`) that TLS next hops and targets are verified
    /// against, with the host name from the URI or DNS; unset: the system's (`/etc/ssl/certs`).
    pub tls_roots: Option<PathBuf>,
    /// Folder of CA certificates that TLS clients' certificates are checked against (mutual
    /// TLS); unset: no client certificate is asked for.
    pub tls_client_roots: Option<PathBuf>,
    /// Refuse a TLS client that shows no certificate from `tls_client_roots`.
    pub tls_require_client_cert: bool,
    /// Names a TLS client's certificate (checked against `tls_client_roots`) may prove to be
    /// trusted like `trusted_peers` (its P-Asserted-Identity and `verstat` believed).
    /// `*.example.net` covers one label.
    pub trusted_peer_names: Vec<String>,
    /// A TLS connection whose handshake is not done this long after the TCP accept or connect
    /// is closed (it holds a connection slot, never a worker, meanwhile).
    pub tls_handshake_secs: u64,
    /// Addresses or host names besides `next_hop` that a Route or Request-URI may name and be
    /// followed to. Anything else is never a destination: requests outside a dialog go to
    /// `next_hop`, those inside one back along the call (no open relay).
    pub allowed_targets: Vec<Hop>,
    /// What to do with REGISTER: refuse it (405, the same answer for every user, so that it
    /// cannot be used to find which extensions exist), or relay it to `next_hop`.
    pub register: RegisterPolicy,
    /// Peers whose P-Asserted-Identity (and `verstat`) is believed; from anyone else only the
    /// From counts.
    pub trusted_peers: Vec<std::net::IpAddr>,
    pub max_message_size: usize,
    pub max_headers: usize,
    pub max_line_length: usize,
    /// Server plus client transactions in flight; over it new requests get 503.
    pub max_transactions: usize,
    /// Calls tracked for events and media anchoring. When it is reached, the answered calls
    /// idle longest are forgotten to make room before a new call is refused.
    pub max_calls: usize,
    /// An answered call with no session timer is forgotten after this long without an
    /// in-dialog request (with one, after its Session-Expires without a refresh).
    pub call_idle_secs: u64,
    /// TCP and TLS connections with everyone but the next hop, `allowed_targets` and
    /// `trusted_peers`, either direction.
    pub max_tcp_connections: usize,
    /// Of those, connections with one IP address.
    pub max_tcp_connections_per_source: usize,
    /// TCP connections with the next hop, `allowed_targets` and `trusted_peers` (either side
    /// connecting): a budget of their own, so that no flood from elsewhere takes the path to
    /// the core or the peers it serves.
    pub max_tcp_core_connections: usize,
    /// A TCP or TLS connection without a message for this long is closed.
    pub tcp_idle_secs: u64,
    /// A message that stays incomplete this long after its first byte closes its connection,
    /// as does a peer that takes nothing we write for this long.
    pub tcp_read_timeout_secs: u64,
    /// Requests whose User-Agent holds one of these names (case-insensitive, as a whole word)
    /// are dropped unanswered and counted: scanners, not phones.
    pub deny_user_agents: Vec<String>,
    /// UDP receive tasks (0: one per CPU).
    pub udp_workers: usize,
    /// SO_RCVBUF of the UDP socket, bytes (0: the system default). A burst of datagrams that
    /// arrives while every worker is busy waits here; the kernel's default (~208 KiB) overflowed
    /// at a few thousand calls per second. Linux caps it at net.core.rmem_max.
    pub udp_recv_buffer_bytes: usize,
    pub t1_ms: u64,
    pub t2_ms: u64,
    pub t4_ms: u64,
    /// Timer C: how long a proxied INVITE may ring.
    pub timer_c_secs: u64,
    /// How long a call entry lives at most, refreshed or not (the dialog of a long call simply
    /// stops being tracked); also the longest session interval a call's peers may set.
    pub max_call_secs: u64,
    pub retry_after_secs: u32,
    /// Period of the timer task.
    pub tick_ms: u64,
    /// `[sip.flood]`: per-source rate, bans and transaction budgets (see `sip::flood`).
    pub flood: FloodConfig,
    /// The `[dns]` section (a section of its own in the file, copied here by the app's config
    /// loader, since the core parks requests by its bounds).
    #[serde(skip)]
    pub dns: DnsConfig,
}

impl Default for SipConfig {
    fn default() -> Self {
        SipConfig {
            // Loopback until the operator says otherwise: an open SIP port is an invitation to scanners.
            listen: "127.0.0.1:5060".parse().expect("literal address"),
            advertise: Vec::new(),
            next_hop: None,
            trusted_peers: Vec::new(),
            next_hop_transport: Transport::Udp,
            tls_listen: None,
            tls_cert: None,
            tls_key: None,
            tls_roots: None,
            tls_client_roots: None,
            tls_require_client_cert: false,
            trusted_peer_names: Vec::new(),
            tls_handshake_secs: 10,
            allowed_targets: Vec::new(),
            register: RegisterPolicy::Refuse,
            max_message_size: 65535,
            max_headers: 128,
            max_line_length: 8192,
            max_transactions: 200_000,
            max_calls: 200_000,
            call_idle_secs: 3600,
            max_tcp_connections: 1024,
            max_tcp_connections_per_source: 32,
            max_tcp_core_connections: 64,
            tcp_idle_secs: 120,
            tcp_read_timeout_secs: 20,
            deny_user_agents: super::scanners::DEFAULT_DENY
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
            udp_workers: 0,
            udp_recv_buffer_bytes: 4 << 20,
            t1_ms: 500,
            t2_ms: 4000,
            t4_ms: 5000,
            timer_c_secs: 180,
            max_call_secs: 4 * 3600,
            retry_after_secs: 5,
            tick_ms: 50,
            flood: FloodConfig::default(),
            dns: DnsConfig::default(),
        }
    }
}

/// A destination as the operator writes it: an IP address and port, or a host name with an
/// optional port that is resolved off the hot path (see `sip::dns`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hop {
    Addr(SocketAddr),
    /// Lower case, without a trailing dot.
    Name {
        host: String,
        port: Option<u16>,
    },
}

impl Hop {
    /// The address, when the operator wrote one rather than a name.
    pub fn addr(&self) -> Option<SocketAddr> {
        match self {
            Hop::Addr(a) => Some(*a),
            Hop::Name { .. } => None,
        }
    }
}

impl From<SocketAddr> for Hop {
    fn from(a: SocketAddr) -> Hop {
        Hop::Addr(a)
    }
}

impl FromStr for Hop {
    type Err = String;
    fn from_str(s: &str) -> Result<Hop, String> {
        if let Ok(a) = s.parse::<SocketAddr>() {
            return Ok(Hop::Addr(a));
        }
        let bad = || {
            format!("{s:?} is neither IP:PORT nor a host name with an optional :PORT (such as pbx.example.net or pbx.example.net:5060)")
        };
        let (host, port) = match s.rsplit_once(':') {
            Some((h, p)) => (
                h,
                Some(p.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(bad)?),
            ),
            None => (s, None),
        };
        // An IP without a port is not a name: 5060 is not assumed for it.
        if host.parse::<std::net::IpAddr>().is_ok() || !is_host_name(host) {
            return Err(bad());
        }
        Ok(Hop::Name {
            host: host.trim_end_matches('.').to_ascii_lowercase(),
            port,
        })
    }
}

impl fmt::Display for Hop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Hop::Addr(a) => write!(f, "{a}"),
            Hop::Name { host, port: None } => write!(f, "{host}"),
            Hop::Name {
                host,
                port: Some(p),
            } => write!(f, "{host}:{p}"),
        }
    }
}

impl<'de> Deserialize<'de> for Hop {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Hop, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// `[sip] listen`: one address or several (the same port on each), as `"IP:PORT"` or a list of
/// them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listen(pub Vec<SocketAddr>);

impl Listen {
    /// The first address: the one a single-address caller binds.
    pub fn first(&self) -> SocketAddr {
        self.0
            .first()
            .copied()
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 5060)))
    }

    /// Whether peers of the family (`v6`) can reach one of the addresses: `[::]` serves both
    /// (we bind it dual-stack).
    pub fn serves(&self, v6: bool) -> bool {
        self.0.iter().any(|a| {
            a.is_ipv6() == v6
                || (!v6 && a.ip() == std::net::IpAddr::from(std::net::Ipv6Addr::UNSPECIFIED))
        })
    }
}

impl From<SocketAddr> for Listen {
    fn from(a: SocketAddr) -> Listen {
        Listen(vec![a])
    }
}

impl FromStr for Listen {
    type Err = String;
    fn from_str(s: &str) -> Result<Listen, String> {
        socket_addr(s).map(Listen::from)
    }
}

impl fmt::Display for Listen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, a) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{a}")?;
        }
        Ok(())
    }
}

impl<'de> Deserialize<'de> for Listen {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Listen, D::Error> {
        let all = one_or_many(d)?;
        let addrs = all
            .iter()
            .map(|s| socket_addr(s.as_str()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(serde::de::Error::custom)?;
        Ok(Listen(addrs))
    }
}

/// `IP:PORT`, IPv6 in brackets, with an answer that says so.
pub fn socket_addr(s: &str) -> Result<SocketAddr, String> {
    s.trim().parse().map_err(|_| {
        format!("{s:?} is not an IP:PORT address (IPv4 such as 192.0.2.1:5060, IPv6 in brackets such as [2001:db8::1]:5060)")
    })
}

/// A string, or a list of strings.
pub fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
    })
}

/// An IP literal, IPv6 with or without brackets.
fn ip_of(h: &str) -> Option<std::net::IpAddr> {
    h.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(h)
        .parse()
        .ok()
}

/// A DNS host name (RFC 1123): dot-separated labels of letters, digits and inner hyphens, at
/// most 63 bytes each and 253 in all, and not all digits (which would be a mistyped address).
pub fn is_host_name(h: &str) -> bool {
    let h = h.strip_suffix('.').unwrap_or(h);
    !h.is_empty()
        && h.len() <= 253
        && !h.bytes().all(|c| c.is_ascii_digit() || c == b'.')
        && h.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes()
                    .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        })
}

/// `[sip] register`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum RegisterPolicy {
    /// Answer `405 Method Not Allowed`.
    #[default]
    Refuse,
    /// Forward to `next_hop` like any request outside a dialog.
    Relay,
}

impl SipConfig {
    pub fn limits(&self) -> Limits {
        Limits {
            max_size: self.max_message_size,
            max_headers: self.max_headers,
            max_line: self.max_line_length,
        }
    }
    pub fn t1(&self) -> Duration {
        Duration::from_millis(self.t1_ms.max(1))
    }
    pub fn t2(&self) -> Duration {
        Duration::from_millis(self.t2_ms.max(1))
    }
    pub fn t4(&self) -> Duration {
        Duration::from_millis(self.t4_ms)
    }
}

impl SipConfig {
    /// Every problem serde cannot catch, each naming the setting and what was expected.
    pub fn validate(&self) -> Vec<String> {
        let mut p = Vec::new();
        self.validate_addresses(&mut p);
        if !(1024..=65535).contains(&self.max_message_size) {
            p.push(format!(
                "sip.max_message_size: expected 1024..=65535, got {}",
                self.max_message_size
            ));
        }
        if self.max_headers == 0 {
            p.push("sip.max_headers: must be at least 1, got 0".into());
        }
        if self.max_line_length < 256 {
            p.push(format!(
                "sip.max_line_length: must be at least 256, got {}",
                self.max_line_length
            ));
        }
        // Zero would answer every new request 503: a cap, never an off switch.
        for (key, v) in [
            ("max_transactions", self.max_transactions),
            ("max_calls", self.max_calls),
        ] {
            if v == 0 {
                p.push(format!("sip.{key}: must be at least 1, got 0"));
            }
        }
        self.validate_edge(&mut p);
        if self.t1_ms == 0 || self.t2_ms < self.t1_ms {
            p.push(format!(
                "sip.t1_ms/t2_ms: expected 0 < t1 <= t2, got {}/{}",
                self.t1_ms, self.t2_ms
            ));
        }
        if self.tick_ms == 0 || self.tick_ms > self.t1_ms {
            p.push(format!(
                "sip.tick_ms: expected 1..=t1_ms, got {}",
                self.tick_ms
            ));
        }
        p.extend(self.flood.validate());
        p.extend(self.dns.validate());
        super::tls::validate(self, &mut p);
        p
    }

    /// `listen` and `advertise`: every family we listen on has a host to write in Via and
    /// Record-Route that peers of that family can reach.
    fn validate_addresses(&self, p: &mut Vec<String>) {
        let l = &self.listen.0;
        if l.is_empty() {
            p.push("sip.listen: expected at least one IP:PORT address, got none".into());
        }
        for (i, a) in l.iter().enumerate() {
            if l[..i].iter().any(|b| b.ip() == a.ip()) {
                p.push(format!("sip.listen: {} is listed twice", a.ip()));
            }
            if a.port() != l[0].port() {
                p.push(format!(
                    "sip.listen: every address must have the same port (the one written in Via), got {} and {}",
                    l[0], a
                ));
            }
        }
        for (i, h) in self.advertise.iter().enumerate() {
            if ip_of(h).is_none() && !is_host_name(h) {
                p.push(format!(
                    "sip.advertise[{i}]: expected an IP address or a host name (IPv6 may be in brackets), got {h:?}"
                ));
            }
        }
        for (v6, family) in [(false, "IPv4"), (true, "IPv6")] {
            if self.listen.serves(v6) && self.host_for_family(v6).is_none() {
                p.push(format!(
                    "sip.advertise: required with an {family} host (or a name) when sip.listen is {} (the host {family} peers reach us at)",
                    self.listen
                ));
            }
        }
    }

    /// The host we write in Via and Record-Route towards a peer of the family (`v6`): from
    /// `advertise` an IP of that family or a name, else a listen IP of that family (IPv6 in
    /// brackets). `None`: we have none (and do not listen in that family, once validated).
    pub fn host_for_family(&self, v6: bool) -> Option<String> {
        let adv = self.advertise.iter().find(|h| match ip_of(h) {
            Some(ip) => ip.is_ipv6() == v6,
            None => is_host_name(h),
        });
        if let Some(h) = adv {
            return Some(match ip_of(h) {
                Some(std::net::IpAddr::V6(ip)) => format!("[{ip}]"),
                Some(ip) => ip.to_string(),
                None => h.clone(),
            });
        }
        let ip = self
            .listen
            .0
            .iter()
            .map(|a| a.ip())
            .find(|ip| ip.is_ipv6() == v6 && !ip.is_unspecified())?;
        Some(match ip {
            std::net::IpAddr::V6(ip) => format!("[{ip}]"),
            ip => ip.to_string(),
        })
    }

    /// The connection caps, the timers that reclaim connections and calls, and the scanners'
    /// names.
    fn validate_edge(&self, p: &mut Vec<String>) {
        for (key, v) in [
            ("max_tcp_connections", self.max_tcp_connections),
            ("max_tcp_core_connections", self.max_tcp_core_connections),
            ("tcp_idle_secs", self.tcp_idle_secs as usize),
            ("tcp_read_timeout_secs", self.tcp_read_timeout_secs as usize),
        ] {
            if v == 0 {
                p.push(format!("sip.{key}: must be at least 1, got 0"));
            }
        }
        if !(1..=self.max_tcp_connections.max(1)).contains(&self.max_tcp_connections_per_source) {
            p.push(format!(
                "sip.max_tcp_connections_per_source: expected 1..=max_tcp_connections ({}), got {}",
                self.max_tcp_connections, self.max_tcp_connections_per_source
            ));
        }
        // Shorter than Timer H would forget a call before its ACK and first re-INVITE are done.
        let floor = (self.t1_ms.saturating_mul(64)).div_ceil(1000).max(1);
        if !(floor..=self.max_call_secs.max(floor)).contains(&self.call_idle_secs) {
            p.push(format!(
                "sip.call_idle_secs: expected {floor}..=max_call_secs ({}), got {}",
                self.max_call_secs, self.call_idle_secs
            ));
        }
        for (i, name) in self.deny_user_agents.iter().enumerate() {
            if name.trim().is_empty() || name.chars().any(char::is_control) {
                p.push(format!(
                    "sip.deny_user_agents[{i}]: expected a non-empty name without control characters, got {name:?}"
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_toml_and_rejects_unknown_fields() {
        let c: SipConfig = toml::from_str(
            "listen = \"0.0.0.0:5060\"\nadvertise = \"sbc.example.net\"\nnext_hop = \"10.0.0.5:5060\"\nnext_hop_transport = \"tcp\"\nt1_ms = 250\n",
        )
        .unwrap();
        assert_eq!(c.next_hop_transport, Transport::Tcp);
        assert_eq!(c.register, RegisterPolicy::Refuse);
        assert!(c.allowed_targets.is_empty());
        let relay: SipConfig = toml::from_str(
            "register = \"relay\"\nallowed_targets = [\"192.0.2.7:5060\", \"[2001:db8::7]:5070\"]\n",
        )
        .unwrap();
        assert_eq!(relay.register, RegisterPolicy::Relay);
        assert_eq!(relay.allowed_targets.len(), 2);
        assert!(toml::from_str::<SipConfig>("register = \"answer\"").is_err());
        assert_eq!(c.t1(), Duration::from_millis(250));
        assert_eq!(c.max_headers, 128);
        assert_eq!(c.validate(), Vec::<String>::new());
        assert!(toml::from_str::<SipConfig>("listne = \"1.2.3.4:5\"").is_err());
        assert_eq!(SipConfig::default().validate(), Vec::<String>::new());
        let bad = SipConfig {
            listen: "0.0.0.0:5060".parse().unwrap(),
            ..SipConfig::default()
        };
        let p = bad.validate();
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].starts_with("sip.advertise"), "{p:?}");
    }

    #[test]
    fn listens_and_advertises_per_family() {
        let c: SipConfig = toml::from_str("listen = \"[::1]:5070\"\n").unwrap();
        assert_eq!(c.listen.0, ["[::1]:5070".parse::<SocketAddr>().unwrap()]);
        assert_eq!(c.validate(), Vec::<String>::new());
        assert_eq!(c.host_for_family(true).as_deref(), Some("[::1]"));
        assert_eq!(c.host_for_family(false), None);
        let both: SipConfig = toml::from_str(
            "listen = [\"127.0.0.1:5070\", \"[::1]:5070\"]\nadvertise = [\"192.0.2.10\", \"2001:db8::10\"]\n",
        )
        .unwrap();
        assert_eq!(both.listen.0.len(), 2);
        assert_eq!(both.validate(), Vec::<String>::new());
        assert_eq!(both.host_for_family(false).as_deref(), Some("192.0.2.10"));
        assert_eq!(
            both.host_for_family(true).as_deref(),
            Some("[2001:db8::10]")
        );
        // Dual-stack: both families need a host; a name serves both.
        let dual: SipConfig =
            toml::from_str("listen = \"[::]:5060\"\nadvertise = \"[2001:db8::10]\"\n").unwrap();
        let p = dual.validate();
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(
            p[0].starts_with("sip.advertise: required with an IPv4 host"),
            "{p:?}"
        );
        let named: SipConfig =
            toml::from_str("listen = \"[::]:5060\"\nadvertise = \"sbc.example.net\"\n").unwrap();
        assert_eq!(named.validate(), Vec::<String>::new());
        assert_eq!(
            named.host_for_family(true).as_deref(),
            Some("sbc.example.net")
        );
        // A bad address is named with what was expected.
        let e = toml::from_str::<SipConfig>("listen = \"::1:5060\"\n").unwrap_err();
        assert!(
            e.to_string()
                .contains("\"::1:5060\" is not an IP:PORT address"),
            "{e}"
        );
        assert!(e.to_string().contains("IPv6 in brackets"), "{e}");
        let e = toml::from_str::<SipConfig>("listen = [\"127.0.0.1:5060\", \"[::1:5060\"]\n")
            .unwrap_err();
        assert!(e.to_string().contains("[::1:5060"), "{e}");
        let mixed: SipConfig = toml::from_str(
            "listen = [\"127.0.0.1:5060\", \"[::1]:5070\", \"127.0.0.1:5060\"]\nadvertise = [\"bad host!\"]\n",
        )
        .unwrap();
        assert_eq!(
            mixed.validate(),
            [
                "sip.listen: every address must have the same port (the one written in Via), got 127.0.0.1:5060 and [::1]:5070",
                "sip.listen: 127.0.0.1 is listed twice",
                "sip.advertise[0]: expected an IP address or a host name (IPv6 may be in brackets), got \"bad host!\"",
            ]
        );
    }

    #[test]
    fn validate_checks_the_edge_caps_and_timers() {
        let bad = SipConfig {
            max_tcp_connections: 8,
            max_tcp_connections_per_source: 9,
            max_tcp_core_connections: 0,
            tcp_read_timeout_secs: 0,
            call_idle_secs: 10,
            deny_user_agents: vec!["sipcli".into(), " ".into(), "bad\nname".into()],
            ..SipConfig::default()
        };
        assert_eq!(
            bad.validate(),
            [
                "sip.max_tcp_core_connections: must be at least 1, got 0",
                "sip.tcp_read_timeout_secs: must be at least 1, got 0",
                "sip.max_tcp_connections_per_source: expected 1..=max_tcp_connections (8), got 9",
                "sip.call_idle_secs: expected 32..=max_call_secs (14400), got 10",
                "sip.deny_user_agents[1]: expected a non-empty name without control characters, got \" \"",
                "sip.deny_user_agents[2]: expected a non-empty name without control characters, got \"bad\\nname\"",
            ]
        );
        let shipped: SipConfig =
            toml::from_str("deny_user_agents = []\ncall_idle_secs = 32\n").unwrap();
        assert_eq!(shipped.validate(), Vec::<String>::new());
    }

    #[test]
    fn validate_reports_every_problem() {
        let bad = SipConfig {
            max_calls: 0,
            max_headers: 0,
            t1_ms: 0,
            ..SipConfig::default()
        };
        assert_eq!(
            bad.validate(),
            [
                "sip.max_headers: must be at least 1, got 0",
                "sip.max_calls: must be at least 1, got 0",
                "sip.t1_ms/t2_ms: expected 0 < t1 <= t2, got 0/4000",
                "sip.tick_ms: expected 1..=t1_ms, got 50",
            ]
        );
    }
}
