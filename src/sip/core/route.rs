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
//! Only IP literals are used: no DNS on the hot path. Knows nothing of transactions.

use std::hash::BuildHasher;
use std::net::SocketAddr;

use super::super::forward::{ip_of, BRANCH_PREFIX};
use super::super::msg::{Hdr, Message, Via};
use super::super::uri::{NameAddr, Scheme, Uri};
use super::super::Transport;
use super::{Peer, Proxy};

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
    /// call (towards the callee side for the caller's requests, and the other way). Only IP
    /// literals are used (no DNS); anything else is never followed.
    pub(super) fn route(&self, msg: &Message, dialog: bool) -> Option<Peer> {
        let hop = self.cfg.next_hop.map(|addr| Peer {
            transport: self.cfg.next_hop_transport,
            addr,
            conn: None,
        });
        if !dialog && hop.is_some() {
            return hop;
        }
        let named = self.named_target(msg).filter(|p| {
            self.cfg.allowed_targets.contains(&p.addr) || hop.is_some_and(|h| h.addr == p.addr)
        });
        if named.is_some() || !dialog {
            return named;
        }
        let call = msg.call_id().and_then(|id| self.calls.get(id))?;
        let ft = msg.from_tag().unwrap_or("");
        Some(if ft == call.caller_tag {
            call.downstream
        } else {
            call.upstream
        })
    }

    /// The first Route not ours, else the Request-URI when it is not ours, as an address.
    fn named_target(&self, msg: &Message) -> Option<Peer> {
        let mut routes = msg
            .values_str(Hdr::Route)
            .filter_map(|v| NameAddr::parse(v).ok());
        let mut first = routes.next();
        if first.as_ref().is_some_and(|r| self.me.uri_is_ours(&r.uri)) {
            first = routes.next();
        }
        match &first {
            Some(r) => uri_target(&r.uri),
            None => msg
                .request_uri()
                .filter(|u| !self.me.uri_is_ours(u))
                .and_then(|u| uri_target(&u)),
        }
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
    let addr = back_of(v, None)?;
    let transport = if v.transport.eq_ignore_ascii_case("TCP") {
        Transport::Tcp
    } else {
        Transport::Udp
    };
    Some(Peer {
        transport,
        addr,
        conn: None,
    })
}
