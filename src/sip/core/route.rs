//! Where messages go: the next hop of a request (configured hop, Route, Request-URI, or back
//! along the call), the way back for a response (the Via below ours), the branch we stamp on
//! what we forward, and the loop check that branch makes possible.
//!
//! Only IP literals are used: no DNS on the hot path. Knows nothing of transactions.

use std::hash::BuildHasher;
use std::net::SocketAddr;

use super::super::forward::{ip_of, BRANCH_PREFIX};
use super::super::msg::{Hdr, Message, Via};
use super::super::uri::{NameAddr, Scheme, Uri};
use super::super::Transport;
use super::{Peer, Proxy};

impl Proxy {
    /// RFC 3261 16.11-style branch: a hash of the request's identity and the Via below ours.
    pub(super) fn branch(&self, msg: &Message, below: Option<&Via<'_>>) -> String {
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
        format!("{BRANCH_PREFIX}{a:016x}{b:016x}")
    }

    /// The request has passed through us before with the same identity (RFC 3261 16.3 item 4).
    pub(super) fn is_loop(&self, msg: &Message) -> bool {
        let vias: Vec<Via<'_>> = msg
            .values_str(Hdr::Via)
            .filter_map(|s| Via::parse(s).ok())
            .collect();
        vias.iter().enumerate().any(|(i, v)| {
            self.me.via_is_ours(v) && v.branch == Some(self.branch(msg, vias.get(i + 1)).as_str())
        })
    }

    /// Where a request goes: the configured next hop for initial requests, else the first Route
    /// not ours, else the Request-URI. Only IP literals are used (no DNS); names fall back to the
    /// next hop.
    pub(super) fn route(&self, msg: &Message, initial: bool) -> Option<Peer> {
        let hop = self.cfg.next_hop.map(|addr| Peer {
            transport: self.cfg.next_hop_transport,
            addr,
            conn: None,
        });
        if initial && hop.is_some() {
            return hop;
        }
        let mut routes = msg
            .values_str(Hdr::Route)
            .filter_map(|v| NameAddr::parse(v).ok());
        let mut first = routes.next();
        if first.as_ref().is_some_and(|r| self.me.uri_is_ours(&r.uri)) {
            first = routes.next();
        }
        let target = match &first {
            Some(r) => uri_target(&r.uri),
            None => msg.request_uri().and_then(|u| {
                if self.me.uri_is_ours(&u) {
                    None
                } else {
                    uri_target(&u)
                }
            }),
        };
        if target.is_some() || initial {
            return target.or(hop);
        }
        // A name we will not resolve on the hot path: send it back the way the call came.
        let call = msg.call_id().and_then(|id| self.calls.get(id));
        match call {
            Some(c) => {
                let ft = msg.from_tag().unwrap_or("");
                Some(if ft == c.caller_tag {
                    c.downstream
                } else {
                    c.upstream
                })
            }
            None => hop,
        }
    }
}

/// Where a response goes when no transaction says: the Via below ours.
pub(super) fn next_via_target(msg: &Message) -> Option<Peer> {
    msg.values_str(Hdr::Via)
        .nth(1)
        .and_then(|s| Via::parse(s).ok())
        .and_then(|v| via_target(&v))
}

fn uri_target(u: &Uri<'_>) -> Option<Peer> {
    if !u.is_sip() {
        return None;
    }
    let ip = ip_of(u.host)?;
    let port = u
        .port
        .unwrap_or(if u.scheme == Scheme::Sips { 5061 } else { 5060 });
    let tcp = u
        .param("transport")
        .is_some_and(|t| t.eq_ignore_ascii_case("tcp"))
        || u.scheme == Scheme::Sips;
    let transport = if tcp { Transport::Tcp } else { Transport::Udp };
    Some(Peer {
        transport,
        addr: SocketAddr::new(ip, port),
        conn: None,
    })
}

fn via_target(v: &Via<'_>) -> Option<Peer> {
    let ip = ip_of(v.received.unwrap_or(v.host)).or_else(|| ip_of(v.host))?;
    let port = v.rport.flatten().or(v.port).unwrap_or(5060);
    let transport = if v.transport.eq_ignore_ascii_case("TCP") {
        Transport::Tcp
    } else {
        Transport::Udp
    };
    Some(Peer {
        transport,
        addr: SocketAddr::new(ip, port),
        conn: None,
    })
}
