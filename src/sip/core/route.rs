//! Where messages go: the next hop of a request (the configured hop, a target the operator
//! allows, or back along a call we Record-Routed), the way back for a response (the Via below
//! ours, when our branch vouches for it), the branch we stamp on what we forward, and the loop
//! check that branch makes possible.
//!
//! No open relay: a Route or Request-URI is followed only when it names the next hop or one of
//! `[sip] allowed_targets`; inside a known dialog anything else goes back along the call, and
//! outside one to the next hop. A response leaves by the Via below ours only when our branch
//! carries a keyed hash of that Via's address, so a forged second Via sends it nowhere.
//!
//! A target may be a host name: its answer is looked up in the proxy's table of names
//! (`names`), and when there is none yet the request waits for it there; no DNS is done here.
//! Knows nothing of transactions.

use std::hash::BuildHasher;
use std::net::SocketAddr;
use std::time::Instant;

use super::super::config::{is_host_name, Hop};
use super::super::forward::{ip_of, BRANCH_PREFIX};
use super::super::msg::{Hdr, Message, Via};
use super::super::uri::{NameAddr, Scheme, Uri};
use super::super::Transport;
use super::names::{Dest, Name, Routed};
use super::{Peer, Proxy};

/// What a Route or Request-URI names: an address, or a host name to resolve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Target {
    Addr(Peer),
    Name(Name),
}

impl Proxy {
    /// RFC 3261 16.11-style branch: a hash of the request's identity and the Via below ours,
    /// then a keyed hash of where that Via sends responses (`back`, see [`back_of`]), which
    /// [`Proxy::response_target`] checks when a response comes back without a transaction.
    pub(super) fn branch(
        &self,
        msg: &Message,
        below: Option<&Via<'_>>,
        back: Option<SocketAddr>,
    ) -> String {
        let from_tag = msg.from_tag().unwrap_or("");
        let to_tag = msg.to_tag().unwrap_or("");
        let ident = (
            msg.method(),
            msg.request_uri_str().unwrap_or(""),
            from_tag,
            to_tag,
            msg.call_id().unwrap_or(""),
            msg.cseq().map(|c| c.0).unwrap_or(0),
            below.map(|v| (v.host, v.port, v.branch)),
        );
        let b = self.keys.hash_one((&ident, 0x5a5a_u32));
        let a = self.keys.hash_one(ident);
        let c = self.back_mac(back);
        format!("{BRANCH_PREFIX}{a:016x}{b:016x}{c:016x}")
    }

    fn back_mac(&self, back: Option<SocketAddr>) -> u64 {
        self.keys.hash_one((back, 0xbac_u32))
    }

    /// Where a response with our top Via goes when no server transaction says: the Via below
    /// ours, if our branch was made for that address. Counted and `None` when it was not (a
    /// forged or altered second Via), or when there is no usable one.
    pub(super) fn response_target(&self, msg: &Message) -> Option<Peer> {
        let mut vias = msg.values_str(Hdr::Via).filter_map(|s| Via::parse(s).ok());
        let ours = vias.next()?;
        let below = vias.next();
        let back = below.as_ref().and_then(|v| back_of(v, None));
        let mac = ours
            .branch
            .and_then(|b| b.get(b.len().saturating_sub(16)..))
            .and_then(|h| u64::from_str_radix(h, 16).ok());
        if mac != Some(self.back_mac(back)) {
            self.stats.forged_responses.inc();
            return None;
        }
        below.as_ref().and_then(via_target)
    }

    /// The request has passed through us before with the same identity (RFC 3261 16.3 item 4).
    pub(super) fn is_loop(&self, msg: &Message) -> bool {
        let vias: Vec<Via<'_>> = msg
            .values_str(Hdr::Via)
            .filter_map(|s| Via::parse(s).ok())
            .collect();
        vias.iter().enumerate().any(|(i, v)| {
            let below = vias.get(i + 1);
            let back = below.and_then(|b| back_of(b, None));
            self.me.via_is_ours(v) && v.branch == Some(self.branch(msg, below, back).as_str())
        })
    }

    /// Where a request goes. Outside a dialog we Record-Routed (`dialog` false): the next hop,
    /// or without one a target the operator allows. Inside one: the target its Route or
    /// Request-URI names when that is the next hop or an allowed target, else back along the
    /// call (towards the callee side for the caller's requests, and the other way). A name is
    /// followed by the answer the table of names holds for it at `now`; without one the
    /// request is to wait ([`Routed::Wait`]).
    pub(super) fn route(&self, msg: &Message, dialog: bool, now: Instant) -> Option<Routed> {
        let hop = self
            .cfg
            .next_hop
            .as_ref()
            .map(|h| match (h, &self.hop_name) {
                (_, Some(name)) => self.lookup_name(name, now),
                (Hop::Addr(addr), None) => Routed::Go(Dest::from(Peer {
                    transport: self.cfg.next_hop_transport,
                    addr: *addr,
                    conn: None,
                })),
                (Hop::Name { .. }, None) => Routed::Fail(503),
            });
        if !dialog && hop.is_some() {
            return hop;
        }
        let named = self.named_target(msg).filter(|t| self.may_follow(t));
        match named {
            Some(Target::Addr(p)) => return Some(Routed::Go(p.into())),
            Some(Target::Name(n)) => return Some(self.lookup_name(&n, now)),
            None if !dialog => return None,
            None => {}
        }
        let call = msg.call_id().and_then(|id| self.calls.get(id))?;
        let ft = msg.from_tag().unwrap_or("");
        Some(Routed::Go(Dest::from(if ft == call.caller_tag {
            call.downstream
        } else {
            call.upstream
        })))
    }

    /// The operator lets requests go to `t`: it is the next hop or one of `allowed_targets`.
    /// Names are compared as names (a name and an address it resolves to are not the same
    /// target), with the port when the configured one has it.
    fn may_follow(&self, t: &Target) -> bool {
        let mut hops = self.cfg.next_hop.iter().chain(&self.cfg.allowed_targets);
        match t {
            Target::Addr(p) => hops.any(|h| *h == Hop::Addr(p.addr)),
            Target::Name(n) => hops.any(|h| match h {
                Hop::Name { host, port } => *host == n.host && (port.is_none() || *port == n.port),
                Hop::Addr(_) => false,
            }),
        }
    }

    /// The first Route not ours, else the Request-URI when it is not ours, as a target.
    fn named_target(&self, msg: &Message) -> Option<Target> {
        let mut routes = msg
            .values_str(Hdr::Route)
            .filter_map(|v| NameAddr::parse(v).ok());
        let mut first = routes.next();
        // Ours, once or twice (see `forward::request`).
        for _ in 0..2 {
            if first.as_ref().is_some_and(|r| self.me.uri_is_ours(&r.uri)) {
                first = routes.next();
            }
        }
        match &first {
            Some(r) => uri_target(&r.uri),
            None => msg
                .request_uri()
                .filter(|u| !self.me.uri_is_ours(u))
                .and_then(|u| uri_target(&u)),
        }
    }

    /// A `sips:` request (RFC 3261 26.2.2: TLS on every hop) that would leave over a hop that
    /// is not TLS: it is answered 480 instead, never sent in the clear.
    pub(super) fn insecure_for_sips(&self, msg: &Message, d: &Dest) -> bool {
        let sips = msg.request_uri().is_some_and(|u| u.scheme == Scheme::Sips);
        let insecure = sips && d.peer.transport != Transport::Tls;
        if insecure {
            self.stats.sips_refused.inc();
        }
        insecure
    }

    /// The host name whose certificate a TLS connection to `addr` must show (RFC 5922: the
    /// name of the URI or the configured hop that led there, not the SRV target): the next
    /// hop's name first, else any name resolved to it. `None`: `addr` was reached by an IP
    /// literal, and the certificate must carry that address.
    pub fn tls_server_name(&self, addr: SocketAddr) -> Option<String> {
        let at = |targets: &[Peer]| {
            targets
                .iter()
                .any(|p| p.addr == addr && p.transport == Transport::Tls)
        };
        if let Some(n) = &self.hop_name {
            if self.known_addrs(n).is_some_and(|t| at(&t)) {
                return Some(n.host.clone());
            }
        }
        self.names.iter().find_map(|e| match e.value() {
            super::names::NameState::Ready { targets, .. } if at(targets) => {
                Some(e.key().host.clone())
            }
            _ => None,
        })
    }

    /// The request is in a dialog we Record-Routed and still track: its Call-ID is a call
    /// that stays in the dialog, and one of its tags is the caller's.
    pub(super) fn known_dialog(&self, msg: &Message) -> bool {
        let Some(c) = msg.call_id().and_then(|id| self.calls.get(id)) else {
            return false;
        };
        c.dialog
            && (msg.from_tag() == Some(c.caller_tag.as_str())
                || msg.to_tag() == Some(c.caller_tag.as_str()))
    }
}

/// Where the responses to a request that arrived from `from` with this top Via go, as the Via
/// will read once we have marked it (`received`, `rport`; see `forward::mark_received`), or as
/// it reads in a response (`from` None).
pub(super) fn back_of(v: &Via<'_>, from: Option<SocketAddr>) -> Option<SocketAddr> {
    let host = ip_of(v.host);
    let received = v.received.and_then(ip_of);
    let ip = match from {
        Some(f) if v.received.is_none() && host != Some(f.ip()) => Some(f.ip()),
        _ => received.or(host),
    }?;
    let port = match (v.rport, from) {
        (Some(None), Some(f)) => Some(f.port()),
        (r, _) => r.flatten(),
    };
    Some(SocketAddr::new(ip, port.or(v.port).unwrap_or(5060)))
}

fn uri_target(u: &Uri<'_>) -> Option<Target> {
    if !u.is_sip() {
        return None;
    }
    let secure = u.scheme == Scheme::Sips;
    let param = u.param("transport").and_then(|t| {
        if t.eq_ignore_ascii_case("tcp") {
            Some(Transport::Tcp)
        } else if t.eq_ignore_ascii_case("udp") {
            Some(Transport::Udp)
        } else if t.eq_ignore_ascii_case("tls") {
            Some(Transport::Tls)
        } else {
            None
        }
    });
    let Some(ip) = ip_of(u.host) else {
        if !is_host_name(u.host) {
            return None;
        }
        return Some(Target::Name(Name {
            host: u.host.trim_end_matches('.').to_ascii_lowercase(),
            port: u.port,
            // sips: is TLS whatever the parameter says (RFC 3261 26.2.2); without one NAPTR
            // chooses among the SIPS services (RFC 3263 4.1).
            transport: if secure {
                param.map(|_| Transport::Tls)
            } else {
                param
            },
            secure,
        }));
    };
    let tls = secure || param == Some(Transport::Tls);
    let port = u.port.unwrap_or(if tls { 5061 } else { 5060 });
    let transport = match param {
        _ if tls => Transport::Tls,
        Some(Transport::Tcp) => Transport::Tcp,
        _ => Transport::Udp,
    };
    Some(Target::Addr(Peer {
        transport,
        addr: SocketAddr::new(ip, port),
        conn: None,
    }))
}

/// The name a configured next hop is resolved by: a name without a port is looked up by
/// NAPTR and SRV, which choose the transport (only the SIPS services when
/// `next_hop_transport` is `tls`); with a port, `next_hop_transport` holds.
pub(super) fn hop_name(hop: Option<&Hop>, transport: Transport) -> Option<Name> {
    match hop? {
        Hop::Addr(_) => None,
        Hop::Name { host, port } => Some(Name {
            host: host.clone(),
            port: *port,
            transport: port.map(|_| transport),
            secure: transport == Transport::Tls,
        }),
    }
}

fn via_target(v: &Via<'_>) -> Option<Peer> {
    let addr = back_of(v, None)?;
    let transport = if v.transport.eq_ignore_ascii_case("TCP") {
        Transport::Tcp
    } else if v.transport.eq_ignore_ascii_case("TLS") {
        Transport::Tls
    } else {
        Transport::Udp
    };
    Some(Peer {
        transport,
        addr,
        conn: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sips_and_transport_tls_are_tls_and_sips_names_ask_naptr() {
        let addr: SocketAddr = "192.0.2.7:5061".parse().unwrap();
        for (uri, t) in [
            ("sip:a@192.0.2.7:5061;transport=tls", Transport::Tls),
            ("sips:a@192.0.2.7:5061", Transport::Tls),
            ("sips:a@192.0.2.7:5061;transport=tcp", Transport::Tls),
            ("sip:a@192.0.2.7:5061;transport=tcp", Transport::Tcp),
            ("sip:a@192.0.2.7:5061", Transport::Udp),
        ] {
            let u = Uri::parse(uri).unwrap();
            match uri_target(&u) {
                Some(Target::Addr(p)) => assert_eq!((p.transport, p.addr), (t, addr), "{uri}"),
                other => panic!("{uri}: {other:?}"),
            }
        }
        let u = Uri::parse("sips:a@192.0.2.7").unwrap();
        assert!(matches!(uri_target(&u), Some(Target::Addr(p)) if p.addr.port() == 5061));
        // A sips: name without a transport leaves the choice to NAPTR (SIPS services only).
        let u = Uri::parse("sips:a@PBX.example.net").unwrap();
        match uri_target(&u) {
            Some(Target::Name(n)) => {
                assert_eq!(
                    (n.host.as_str(), n.transport, n.secure),
                    ("pbx.example.net", None, true)
                )
            }
            other => panic!("{other:?}"),
        }
        let hop = hop_name(Some(&"pbx.example.net".parse().unwrap()), Transport::Tls).unwrap();
        assert!(hop.secure && hop.transport.is_none());
    }

    /// IPv6 targets and the way back: a bracketed reference is an address (RFC 5118 4.4), and
    /// `received` and `rport` of an IPv6 source (bracketed or not) lead back to it.
    #[test]
    fn ipv6_targets_and_the_way_back() {
        for (uri, addr) in [
            ("sip:a@[2001:db8::7]:5070", "[2001:db8::7]:5070"),
            ("sip:[::1];transport=udp", "[::1]:5060"),
            ("sip:a@[2001:db8::10:5070]", "[2001:db8::10:5070]:5060"),
        ] {
            let u = Uri::parse(uri).unwrap();
            let want: SocketAddr = addr.parse().unwrap();
            match uri_target(&u) {
                Some(Target::Addr(p)) => assert_eq!(p.addr, want, "{uri}"),
                other => panic!("{uri}: {other:?}"),
            }
        }
        let from: SocketAddr = "[2001:db8::99]:40000".parse().unwrap();
        for (via, back) in [
            // The source differs from sent-by: the source, and its port for rport.
            (
                "SIP/2.0/UDP [2001:db8::9]:5062;rport;branch=z9hG4bK1",
                "[2001:db8::99]:40000",
            ),
            (
                "SIP/2.0/UDP [2001:db8::99]:5062;branch=z9hG4bK1",
                "[2001:db8::99]:5062",
            ),
        ] {
            let v = Via::parse(via).unwrap();
            assert_eq!(
                back_of(&v, Some(from)),
                Some(back.parse().unwrap()),
                "{via}"
            );
        }
        for via in [
            "SIP/2.0/UDP [2001:db8::9]:5062;received=2001:db8::99;rport=40000;branch=z9hG4bK1",
            "SIP/2.0/UDP [2001:db8::9]:5062;received=[2001:db8::99];rport=40000;branch=z9hG4bK1",
        ] {
            let v = Via::parse(via).unwrap();
            assert_eq!(back_of(&v, None), Some(from), "{via}");
        }
    }
}
