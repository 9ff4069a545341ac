//! The sans-IO, transaction-stateful proxy (RFC 3261 sections 16 and 17): bytes and a source
//! in, messages to send out; timers advanced by [`Proxy::poll`]. No sockets, no clocks of its
//! own, so every behaviour is unit-testable.
//!
//! Knows nothing of why calls are blocked or warned: the [`Hook`] decides. Transaction and call
//! tables are dashmaps (no global lock on the hot path), each capped, every entry freed by a
//! timer.
//!
//! This file holds the tables and the flow of a message through them; the transaction state
//! machines are in `server_tx` and `client_tx`, calls held for the application in `hold`, how
//! long calls live and which leave a full table in `lifetime`, the per-source budgets in
//! `budget` (counted by `sip::flood`), next hops and branches in `route`, host names and the
//! requests waiting for them in `names`, the bytes we change in `sip::forward` and the responses
//! we write in `sip::response`.

mod budget;
mod client_tx;
mod hold;
mod lifetime;
mod names;
mod route;
mod server_tx;

use std::cmp::Reverse;
use std::collections::hash_map::RandomState;
use std::collections::BinaryHeap;
use std::hash::BuildHasher;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use dashmap::DashMap;

use self::client_tx::{CKind, CState, ClientTx, Next, Relay};
use self::names::{Dest, NameState, Routed};
pub use self::names::{Name, Resolved};
use self::route::back_of;
use self::server_tx::{SState, ServerTx};
use super::config::{RegisterPolicy, SipConfig};
use super::flood::{shrink, Sources};
use super::forward::{self, ip_of, Fwd, Local, Restore};
use super::hook::{CallEvent, CallRef, CallTag, Disposition, Hook, NewCall, SdpDirection, SdpKind};
use super::msg::{Hdr, Limits, Message, Problem};
use super::response::{build_response, can_answer};
use super::scanners::DenyList;
use super::stats::SipStats;
use super::Transport;

/// Identifies one TCP or TLS connection of the transport layer.
pub type ConnId = u64;

/// The names a TLS client proved with its certificate (checked by the transport against
/// `[sip] tls_client_roots`; see `sip::tls::cert_names`), handed in with its messages.
pub type CertNames = Arc<[String]>;

/// Where a message came from or goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    pub transport: Transport,
    pub addr: SocketAddr,
    /// The TCP connection to use when known (responses go back on the request's connection).
    pub conn: Option<ConnId>,
}

/// A message to send.
#[derive(Debug, Clone)]
pub struct Output {
    pub to: Peer,
    pub data: Bytes,
}

struct Call {
    anchor: bool,
    /// Stay tracked after the answer (Record-Route was added).
    dialog: bool,
    caller_tag: String,
    /// Where the caller's INVITE came from and where it went: the fallback targets of in-dialog
    /// requests whose Route/Request-URI is not an IP literal.
    upstream: Peer,
    downstream: Peer,
    expires: Instant,
    /// When its INVITE came: no refresh keeps it past `max_call_secs` from then.
    born: Instant,
    /// When the call was answered or last showed life since (None: not answered yet).
    refreshed: Option<Instant>,
    /// The session interval of its last 2xx (RFC 4028), when it has one.
    session: Option<Duration>,
    /// The largest `Min-SE` its requests asked for, seconds.
    min_se: u64,
    /// The application's value for this call, handed back with every event.
    tag: Option<CallTag>,
    /// What to undo on the way back to the caller, when its INVITE was changed.
    restore: Option<Arc<Restore>>,
    /// The server transaction of an INVITE held for the application ([`Disposition::Hold`]).
    held: Option<String>,
}

/// A transaction whose retransmission timer runs: only client transactions have one (Timers
/// A and E; the server side runs no Timer G, see `server_tx`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Timed {
    Client(String),
}

/// How often every entry is checked against its deadline. Deadlines are 5 s to hours long, and
/// a second late is harmless (Timer B/F answer 408 a little later, memory is freed a little
/// later); checking every entry on every tick cost more than the calls themselves at high rates.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// What we answer OPTIONS and a refused REGISTER with.
const ALLOW: &str = "Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE, INFO, PRACK, MESSAGE";

/// The bits of a keyed hash in the To tags we give (12 hex digits).
const TAG_MASK: u64 = 0xffff_ffff_ffff;

/// A request on its way downstream, once it is known to go there: how to edit it and which
/// call (and SDP direction) it belongs to.
struct Onward<'a> {
    fwd: Fwd<'a>,
    /// The application's value for a new call.
    tag: Option<CallTag>,
    anchor: bool,
    dir: SdpDirection,
    /// The INVITE that starts a call.
    initial: bool,
    /// A request from the callee in a call whose INVITE we changed.
    restore: Option<Arc<Restore>>,
}

/// The proxy core. Share it as `Arc<Proxy>`; every method takes `&self`.
pub struct Proxy {
    cfg: SipConfig,
    limits: Limits,
    me: Local,
    hook: Arc<dyn Hook>,
    stats: Arc<SipStats>,
    servers: DashMap<String, ServerTx>,
    clients: DashMap<String, ClientTx>,
    calls: DashMap<String, Call>,
    keys: RandomState,
    /// When the tables were last swept for deadlines (see [`Proxy::poll`]).
    swept: std::sync::Mutex<Option<Instant>>,
    /// When retransmission timers (A/E/G) fire, earliest first: a tick looks only at what is
    /// due. A record whose transaction has moved on (answered, re-armed, gone) is dropped when
    /// it comes up; at most one round trip's worth of them is held.
    timed: std::sync::Mutex<BinaryHeap<Reverse<(Instant, Timed)>>>,
    /// INVITE server transactions answered 2xx (RFC 6026 "Accepted"): all they still do for
    /// 64*T1 is absorb retransmissions of the INVITE, so they are held as a hash of their key
    /// (16 bytes instead of a whole transaction) and expire in arrival order.
    accepted: dashmap::DashSet<u64>,
    accepted_order: std::sync::Mutex<std::collections::VecDeque<(Instant, u64)>>,
    /// Messages and server transactions per source, and bans (`sip::flood`).
    sources: Sources,
    /// `[sip] deny_user_agents`.
    deny: DenyList,
    /// When a full call table last had nothing to evict (see `lifetime`).
    fruitless: std::sync::Mutex<Option<Instant>>,
    /// Host names: answers for their TTL, and requests waiting for one (`names`).
    names: DashMap<Name, NameState>,
    /// Requests parked in `names`, over all names.
    parked: std::sync::atomic::AtomicUsize,
    /// Names to resolve, for the transport ([`Proxy::take_queries`]).
    queries: std::sync::Mutex<Vec<Name>>,
    has_queries: std::sync::atomic::AtomicBool,
    /// The configured next hop's name, when it is one.
    hop_name: Option<Name>,
}

impl Proxy {
    /// `local` is the bound address; the advertised host defaults to its IP. `cfg` has passed
    /// [`SipConfig::validate`], which asks for `advertise` whenever the listen address is
    /// unspecified, so the host written in Via and Record-Route is always one peers can reach.
    pub fn new(
        cfg: SipConfig,
        local: SocketAddr,
        hook: Arc<dyn Hook>,
        stats: Arc<SipStats>,
    ) -> Proxy {
        let bound = |ip: IpAddr| match ip {
            IpAddr::V4(v4) => v4.to_string(),
            IpAddr::V6(v6) => format!("[{v6}]"),
        };
        // The bound family first: a caller that passes only the address it bound (not the
        // whole `listen` list) still gets its own host.
        let (v4, v6) = (cfg.host_for_family(false), cfg.host_for_family(true));
        let (host, host6) = match (v4, v6) {
            (Some(h4), Some(h6)) if h4 != h6 => (h4, Some(h6)),
            (Some(h), _) | (None, Some(h)) => (h, None),
            (None, None) => (bound(local.ip()), None),
        };
        let ips = [Some(&host), host6.as_ref()]
            .into_iter()
            .flatten()
            .filter_map(|h| ip_of(h))
            .chain(cfg.listen.0.iter().map(|a| a.ip()))
            .chain(Some(local.ip()))
            .filter(|i| !i.is_unspecified())
            .collect();
        // A hop written as a name has no fixed address to reserve for; its traffic shares the
        // budgets of everyone else (list it in trusted_peers by address to reserve for it).
        let core = (cfg.next_hop.iter().chain(&cfg.allowed_targets))
            .filter_map(|h| h.addr().map(|a| a.ip()))
            .chain(cfg.trusted_peers.iter().copied());
        let sources = Sources::new(cfg.flood.clone(), core.collect::<Vec<_>>());
        let deny = DenyList::new(&cfg.deny_user_agents);
        let hop_name = route::hop_name(cfg.next_hop.as_ref(), cfg.next_hop_transport);
        Proxy {
            limits: cfg.limits(),
            cfg,
            me: Local {
                host,
                host6,
                port: local.port(),
                ips,
                tls_port: None,
            },
            hook,
            stats,
            servers: DashMap::new(),
            clients: DashMap::new(),
            calls: DashMap::new(),
            keys: RandomState::new(),
            swept: std::sync::Mutex::new(None),
            timed: std::sync::Mutex::new(BinaryHeap::new()),
            accepted: dashmap::DashSet::new(),
            accepted_order: std::sync::Mutex::new(std::collections::VecDeque::new()),
            sources,
            deny,
            fruitless: std::sync::Mutex::new(None),
            names: DashMap::new(),
            parked: std::sync::atomic::AtomicUsize::new(0),
            queries: std::sync::Mutex::new(Vec::new()),
            has_queries: std::sync::atomic::AtomicBool::new(false),
            hop_name,
        }
    }

    /// The port the TLS listener is bound to (written in our Via and Record-Route over TLS,
    /// and recognised as ours when it comes back).
    pub fn with_tls_port(mut self, port: u16) -> Proxy {
        self.me.tls_port = Some(port);
        self
    }

    pub fn stats(&self) -> &Arc<SipStats> {
        &self.stats
    }

    pub fn config(&self) -> &SipConfig {
        &self.cfg
    }

    /// Transactions and calls currently held (for tests and diagnostics).
    pub fn table_sizes(&self) -> (usize, usize, usize) {
        (
            self.servers.len() + self.accepted.len(),
            self.clients.len(),
            self.calls.len(),
        )
    }

    /// Handle one received message (a datagram, or one framed stream message).
    pub fn handle(&self, data: Bytes, from: Peer, now: Instant) -> Vec<Output> {
        self.handle_verified(data, from, None, now)
    }

    /// [`Proxy::handle`] for a message from a TLS client that proved `names` with its
    /// certificate: one of `[sip] trusted_peer_names` among them makes it a trusted peer.
    pub fn handle_verified(
        &self,
        data: Bytes,
        from: Peer,
        names: Option<&CertNames>,
        now: Instant,
    ) -> Vec<Output> {
        self.stats.received(from.transport);
        let mut out = Vec::new();
        self.handle_into(data, from, names, now, &mut out);
        for o in &out {
            self.stats.sent(o.to.transport);
        }
        out
    }

    /// One of `names` is a `trusted_peer_names` entry (`*.example.net` covering one label).
    fn vouched(&self, names: Option<&CertNames>) -> bool {
        let Some(names) = names else {
            return false;
        };
        self.cfg.trusted_peer_names.iter().any(|t| {
            names
                .iter()
                .any(|n| super::tls::name_covers(t, n) || n.eq_ignore_ascii_case(t))
        })
    }

    fn handle_into(
        &self,
        data: Bytes,
        from: Peer,
        names: Option<&CertNames>,
        now: Instant,
        out: &mut Vec<Output>,
    ) {
        if !self.admit(&data, from, now) {
            return; // a banned source's: dropped unparsed
        }
        if data.iter().all(|c| c.is_ascii_whitespace()) {
            return; // a keep-alive, not a message
        }
        let msg = match Message::parse(data, &self.limits, from.transport == Transport::Udp) {
            Ok(m) => m,
            Err(p) => {
                self.stats.malformed(p);
                self.stats.malformed_dropped.inc();
                return;
            }
        };
        if msg.is_request() {
            self.stats.request(msg.method());
            if self.is_scanner(&msg) {
                return;
            }
        }
        if let Some(p) = msg.problem {
            self.stats.malformed(p);
            if msg.is_request() && !msg.method_is("ACK") && can_answer(&msg) {
                let (code, phrase) = if p == Problem::BadVersion {
                    (505, "Version Not Supported")
                } else {
                    (400, "Bad Request")
                };
                self.stats.malformed_answered.inc();
                self.respond(&msg, from, code, phrase, &[], out);
            } else {
                self.stats.malformed_dropped.inc();
            }
            return;
        }
        if msg.is_request() {
            self.on_request(&msg, (from, names), now, out);
        } else {
            self.on_response(&msg, now, out);
        }
    }

    /// A request from a tool on `[sip] deny_user_agents`: dropped unanswered, and counted.
    fn is_scanner(&self, msg: &Message) -> bool {
        // A call to an emergency number is never dropped, whatever software places it: a
        // softphone may share a scanner's name, and a missed 911 costs more than a scan.
        let denied = msg
            .header_by_name("User-Agent")
            .is_some_and(|ua| self.deny.denies(ua))
            && !(msg.method() == b"INVITE" && self.is_urgent(msg));
        if denied {
            self.stats.scanners_dropped.inc();
        }
        denied
    }

    /// The To tag of a response we originate for the transaction `key`: a keyed hash, so the
    /// ACK of that response can be told ours without any state ([`Proxy::is_our_tag`]).
    fn tag_for(&self, key: &str) -> String {
        format!("sg{:012x}", self.keys.hash_one(key) & TAG_MASK)
    }

    fn is_our_tag(&self, tag: &str, key: &str) -> bool {
        tag.len() == 14
            && tag.starts_with("sg")
            && u64::from_str_radix(&tag[2..], 16)
                .is_ok_and(|t| t == self.keys.hash_one(key) & TAG_MASK)
    }

    /// Answer `msg` statelessly (no transaction).
    fn respond(
        &self,
        msg: &Message,
        to: Peer,
        code: u16,
        phrase: &str,
        extra: &[String],
        out: &mut Vec<Output>,
    ) {
        // The transaction's key, as a transaction we keep would have it: the ACK of this
        // response finds the tag ours (see `on_ack`). A request too broken for a key still
        // gets a tag of its own.
        let seed = Self::server_key(msg, msg.method())
            .unwrap_or_else(|| format!("{}{:?}", msg.call_id().unwrap_or(""), msg.top_via_range()));
        let tag = self.tag_for(&seed);
        self.stats.response_sent(code);
        out.push(Output {
            to,
            data: build_response(msg, code, phrase, extra, Some(&tag)),
        });
    }

    fn in_flight(&self) -> usize {
        usize::try_from(self.stats.transactions.get()).unwrap_or(0)
    }

    fn arm(&self, at: Instant, t: Timed) {
        self.timed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Reverse((at, t)));
    }

    /// Report `ev` to the hook if the call is tracked; `end` forgets the call.
    fn event(&self, call_id: &str, ev: CallEvent, end: bool, now: Instant) {
        let known = if end {
            let gone = self.calls.remove(call_id).map(|(_, c)| c.tag);
            if gone.is_some() {
                self.stats.calls.dec();
            }
            gone
        } else {
            self.calls.get(call_id).map(|c| c.tag.clone())
        };
        if let Some(tag) = known {
            let call = CallRef {
                call_id,
                tag: tag.as_ref(),
            };
            self.hook.call_event(&call, ev, now);
        }
    }

    /// Hand an SDP body of an anchored call to the hook for rewriting.
    fn rewrite(
        &self,
        call_id: &str,
        dir: SdpDirection,
        kind: SdpKind,
        body: &[u8],
        now: Instant,
    ) -> Option<Vec<u8>> {
        let tag = self.calls.get(call_id).and_then(|c| c.tag.clone());
        let call = CallRef {
            call_id,
            tag: tag.as_ref(),
        };
        self.hook.rewrite_sdp(&call, dir, kind, body, now)
    }

    fn forget_call(&self, call_id: &str) {
        if self.calls.remove(call_id).is_some() {
            self.stats.calls.dec();
        }
    }

    fn on_request(
        &self,
        msg: &Message,
        (from, names): (Peer, Option<&CertNames>),
        now: Instant,
        out: &mut Vec<Output>,
    ) {
        let method = msg.method();
        if method == b"ACK" {
            return self.on_ack(msg, from, now, out);
        }
        let Some(key) = Self::server_key(msg, method) else {
            return;
        };
        if self.absorb_retransmission(&key, method, out) {
            return;
        }
        if method == b"CANCEL" {
            return self.on_cancel(msg, from, now, out);
        }
        let dialog = msg.to_tag().is_some() && self.known_dialog(msg);
        // Screened: a new INVITE, and an out-of-dialog MESSAGE. A To tag of no dialog we know
        // makes neither in-dialog: see `unknown_dialog`.
        let screened = !dialog && (method == b"INVITE" || method == b"MESSAGE");
        let initial = screened && method == b"INVITE";
        let stranded = msg.to_tag().is_some() && !dialog && self.unknown_dialog(from);
        if initial {
            self.stats.new_invites.inc();
        }
        if dialog {
            self.call_touched(msg, now);
        }
        if initial && self.calls.len() >= self.cfg.max_calls {
            self.make_room(now);
        }
        if self.refuse_early(msg, from, stranded, out)
            || self.answer_here(msg, from, (initial, dialog), out)
        {
            return;
        }
        let dest = match self.route(msg, dialog, now) {
            Some(Routed::Go(d)) if self.insecure_for_sips(msg, &d) => {
                return self.respond(msg, from, 480, "Temporarily Unavailable", &[], out);
            }
            Some(Routed::Go(d)) => d,
            Some(Routed::Wait(name)) => {
                return self.park(name, msg, (from, names.cloned()), now, out)
            }
            Some(Routed::Fail(code)) => return self.answer_unrouted(msg, from, code, out),
            None => {
                // Nowhere we may send it (no next hop, and not a target the operator allows).
                self.stats.relay_refused.inc();
                return self.respond(msg, from, 403, "Forbidden", &[], out);
            }
        };
        if !self.open_server(&key, msg, from, now, initial, out) {
            return;
        }
        let disposition = screened.then(|| {
            self.stats.hook_calls.inc();
            let trusted = self.cfg.trusted_peers.contains(&from.addr.ip()) || self.vouched(names);
            self.hook
                .new_call(&NewCall::new(msg, from.addr, from.transport, trusted), now)
        });
        let onward = match &disposition {
            Some(d) => match self.apply_disposition(&key, msg, from, d, now, out) {
                Some(onward) => onward,
                None => return,
            },
            None => {
                let (anchor, dir, restore) = self.dialog_side(msg);
                Onward {
                    fwd: Fwd::default(),
                    tag: None,
                    anchor,
                    dir,
                    initial: false,
                    restore,
                }
            }
        };
        self.forward_request(&key, msg, (from, dest), onward, now, out);
    }

    /// Requests refused before anything else; true when answered.
    ///
    /// - REGISTER, unless `[sip] register = "relay"`: one answer for every user, so that no
    ///   scanner learns which extensions exist.
    /// - A request `stranded` by [`Proxy::unknown_dialog`]: 481.
    fn refuse_early(
        &self,
        msg: &Message,
        from: Peer,
        stranded: bool,
        out: &mut Vec<Output>,
    ) -> bool {
        if msg.method() == b"REGISTER" && self.cfg.register == RegisterPolicy::Refuse {
            self.stats.register_refused.inc();
            self.respond(
                msg,
                from,
                405,
                "Method Not Allowed",
                &[ALLOW.to_string()],
                out,
            );
            return true;
        }
        if stranded {
            self.respond(msg, from, 481, "Call/Transaction Does Not Exist", &[], out);
        }
        stranded
    }

    /// A request with a To tag that matches no dialog we Record-Routed and still track: a
    /// dialog we never saw, or one we forgot (a restart, an idle or evicted call). A proxy keeps no
    /// dialog state by RFC 3261, so it cannot tell those apart, and a 481 makes a UA end the
    /// call (12.2.1.2): an emergency call must not end because the agent restarted. So it is
    /// taken as outside any dialog: an INVITE or MESSAGE is screened as new (so a made-up To
    /// tag bypasses nothing) and everything goes to the next hop only, never where its Route
    /// or Request-URI points, as Kamailio's and OpenSIPS's sample configs only loose-route
    /// what carries their own Route. What comes from the next hop itself has nowhere to go
    /// back to: 481 (an ACK is dropped). Counts the request; true when it is answered so.
    fn unknown_dialog(&self, from: Peer) -> bool {
        self.stats.unknown_dialog.inc();
        self.is_next_hop(from)
    }

    /// The source is the next hop (over TCP its connections come from any port).
    fn is_next_hop(&self, from: Peer) -> bool {
        let is = |h: SocketAddr| {
            h == from.addr || (from.transport.is_stream() && h.ip() == from.addr.ip())
        };
        match (&self.cfg.next_hop, &self.hop_name) {
            (_, Some(name)) => self
                .known_addrs(name)
                .is_some_and(|t| t.iter().any(|p| is(p.addr))),
            (Some(super::config::Hop::Addr(a)), None) => is(*a),
            _ => false,
        }
    }

    /// Requests answered here instead of forwarded (RFC 3261 16.3): OPTIONS outside a dialog,
    /// no hops left, loops, extensions we must refuse, overload. True when answered.
    ///
    /// An OPTIONS outside a dialog gets our 200 whoever it names: relayed, the core's 200 for
    /// a user it has and 404 for one it has not would tell a scanner which extensions exist.
    fn answer_here(
        &self,
        msg: &Message,
        from: Peer,
        (initial, dialog): (bool, bool),
        out: &mut Vec<Output>,
    ) -> bool {
        let mf = msg.max_forwards();
        let options = msg.method() == b"OPTIONS";
        let to_us = || {
            msg.request_uri()
                .as_ref()
                .is_some_and(|u| u.is_sip() && u.user.is_none())
        };
        let (code, phrase, extra) = if options && (mf == Some(0) || to_us()) {
            self.stats.options_answered.inc();
            (200, "OK", vec![ALLOW.to_string()])
        } else if mf == Some(0) {
            (483, "Too Many Hops", Vec::new())
        } else if self.is_loop(msg) {
            (482, "Loop Detected", Vec::new())
        } else if let Some(pr) = msg.value(Hdr::ProxyRequire) {
            (420, "Bad Extension", vec![format!("Unsupported: {pr}")])
        } else if options && !dialog {
            self.stats.options_answered.inc();
            (200, "OK", vec![ALLOW.to_string()])
        } else if self.over_budget(msg, from, initial) {
            self.stats.overload.inc();
            let retry = format!("Retry-After: {}", self.cfg.retry_after_secs);
            (503, "Service Unavailable", vec![retry])
        } else {
            return false;
        };
        self.respond(msg, from, code, phrase, &extra, out);
        true
    }

    /// Act on the hook's disposition of a new call: answer it on its server transaction, or say
    /// how to forward it.
    fn apply_disposition<'d>(
        &self,
        key: &str,
        msg: &Message,
        from: Peer,
        disposition: &'d Disposition,
        now: Instant,
        out: &mut Vec<Output>,
    ) -> Option<Onward<'d>> {
        match disposition {
            Disposition::Reject {
                code,
                phrase,
                headers,
            } => {
                let code = if (300..700).contains(code) {
                    *code
                } else {
                    500
                };
                self.final_upstream(key, msg, code, phrase, headers, now, out);
                None
            }
            Disposition::Forward {
                display_name,
                headers,
                record_route,
                anchor_media,
                offer,
                tag,
            } => {
                // A MESSAGE starts no call: no 100 (RFC 4320), no dialog, no media, no events.
                let call = msg.method() == b"INVITE";
                if call {
                    self.send_trying(key, msg, from, out);
                }
                let anchor = call && *anchor_media;
                let fwd = Fwd {
                    display: display_name.as_deref(),
                    headers,
                    record_route: call && (*record_route || anchor),
                    // The initial offer was rewritten with the disposition: one hook call.
                    body: offer.clone().filter(|_| anchor),
                    restore: None,
                    user: None,
                };
                Some(Onward {
                    fwd,
                    tag: tag.clone().filter(|_| call),
                    anchor,
                    dir: SdpDirection::FromCaller,
                    initial: call,
                    restore: None,
                })
            }
            Disposition::Hold {
                code,
                phrase,
                headers,
                sdp,
                tag,
            } => {
                let provisional = (*code, phrase.as_str(), headers.as_slice(), sdp.as_slice());
                self.hold(key, msg, from, provisional, tag.clone(), now, out);
                None
            }
            Disposition::Divert { user, then } => {
                let mut onward = self.apply_disposition(key, msg, from, then, now, out)?;
                onward.fwd.user = Some(user);
                Some(onward)
            }
        }
    }

    /// Whether the call of an in-dialog request has its media anchored, and which way the
    /// request flows in it (from the caller or the callee).
    /// What is to be undone on a request from the callee is returned with it.
    fn dialog_side(&self, msg: &Message) -> (bool, SdpDirection, Option<Arc<Restore>>) {
        match msg.call_id().and_then(|id| self.calls.get(id)) {
            Some(c) => {
                let ft = msg.from_tag().unwrap_or("");
                if ft == c.caller_tag {
                    (c.anchor, SdpDirection::FromCaller, None)
                } else {
                    (c.anchor, SdpDirection::FromCallee, c.restore.clone())
                }
            }
            None => (false, SdpDirection::FromCaller, None),
        }
    }

    /// What to undo on a response on its way to the caller of a call we changed (its From
    /// tag is the caller's).
    fn restore_for_caller(&self, msg: &Message) -> Option<Arc<Restore>> {
        let c = msg.call_id().and_then(|id| self.calls.get(id))?;
        let r = c.restore.as_ref()?;
        (msg.from_tag() == Some(c.caller_tag.as_str())).then(|| r.clone())
    }

    /// Send a request on downstream on a new client transaction linked to the server
    /// transaction `key`, tracking the call it starts.
    fn forward_request(
        &self,
        key: &str,
        msg: &Message,
        path: (Peer, Dest),
        onward: Onward<'_>,
        now: Instant,
        out: &mut Vec<Output>,
    ) {
        let (from, Dest { peer: dest, alt }) = path;
        let Onward {
            mut fwd,
            tag,
            anchor,
            dir,
            initial,
            restore,
        } = onward;
        fwd.restore = restore.as_deref();
        let method = msg.method();
        let call_id = msg.call_id().unwrap_or("");
        if anchor && !initial && msg.body_is_sdp() {
            let kind = if msg.method_is("ACK") {
                SdpKind::Answer
            } else {
                SdpKind::Offer
            };
            fwd.body = self.rewrite(call_id, dir, kind, msg.body_bytes(), now);
        }
        if anchor && initial {
            let call = CallRef {
                call_id,
                tag: tag.as_ref(),
            };
            let body = fwd.body.as_deref();
            if let Some(b) = body.and_then(|b| self.hook.sdp_toward(&call, dest.addr.ip(), b)) {
                fwd.body = Some(b);
            }
        }
        let branch = self.branch_for(msg, from);
        let data = forward::request(
            &self.me,
            msg,
            (from.addr, from.transport),
            (dest.addr, dest.transport),
            &branch,
            &fwd,
        );
        let kind = if method == b"INVITE" {
            CKind::Invite
        } else {
            CKind::NonInvite
        };
        let ckey = format!("{branch}|{}", String::from_utf8_lossy(method));
        let tx = ClientTx {
            server: Some(key.to_owned()),
            call_id: call_id.to_owned(),
            initial,
            anchor,
            dir,
            ..ClientTx::new(kind, dest, data.clone(), now, self.cfg.t1())
        }
        .with_alternatives(alt, now, self.cfg.dns.failover_ms);
        self.add_client(ckey.clone(), tx);
        if let Some(mut s) = self.servers.get_mut(key) {
            s.client = Some(ckey);
        }
        if initial && !call_id.is_empty() {
            let dialog = fwd.record_route || anchor;
            let restore = Restore::of(msg, &fwd).map(Arc::new);
            self.track_call(msg, (from, dest), (dialog, anchor), (tag, restore), now);
        }
        if method == b"BYE" {
            self.event(call_id, CallEvent::Ended, true, now);
        }
        out.push(Output { to: dest, data });
    }

    /// Start tracking the call a forwarded initial INVITE begins, which went `path.0` to
    /// `path.1`.
    fn track_call(
        &self,
        msg: &Message,
        path: (Peer, Peer),
        (dialog, anchor): (bool, bool),
        (tag, restore): (Option<CallTag>, Option<Arc<Restore>>),
        now: Instant,
    ) {
        let (from, dest) = path;
        // Until the answer (see `lifetime`); without Record-Route the entry goes at the answer.
        let life = self.ringing_life();
        let c = Call {
            anchor,
            dialog,
            caller_tag: msg.from_tag().unwrap_or("").to_owned(),
            upstream: from,
            downstream: dest,
            expires: now + life,
            born: now,
            refreshed: None,
            session: None,
            min_se: 0,
            tag,
            restore,
            held: None,
        };
        let call_id = msg.call_id().unwrap_or("").to_owned();
        if self.calls.insert(call_id, c).is_none() {
            self.stats.calls.inc();
        }
    }

    /// Forward a request without a transaction (the ACK of a 2xx, a CANCEL we hold nothing
    /// for): the next hop's retransmissions or the sender's are the only reliability it gets.
    fn forward_stateless(
        &self,
        msg: &Message,
        from: Peer,
        fwd: &Fwd<'_>,
        now: Instant,
        out: &mut Vec<Output>,
    ) {
        let dialog = msg.to_tag().is_some() && self.known_dialog(msg);
        let dest = match self.route(msg, dialog, now) {
            Some(Routed::Go(d)) if self.insecure_for_sips(msg, &d) => return,
            Some(Routed::Go(d)) => d.peer,
            Some(Routed::Wait(name)) => return self.park(name, msg, (from, None), now, out),
            Some(Routed::Fail(code)) => return self.answer_unrouted(msg, from, code, out),
            None => {
                self.stats.relay_refused.inc();
                return;
            }
        };
        let branch = self.branch_for(msg, from);
        let data = forward::request(
            &self.me,
            msg,
            (from.addr, from.transport),
            (dest.addr, dest.transport),
            &branch,
            fwd,
        );
        out.push(Output { to: dest, data });
    }

    /// The branch of our Via on `msg`, received from `from`.
    fn branch_for(&self, msg: &Message, from: Peer) -> String {
        let below = msg.top_via();
        let back = below.as_ref().and_then(|v| back_of(v, Some(from.addr)));
        self.branch(msg, below.as_ref(), back)
    }

    fn on_ack(&self, msg: &Message, from: Peer, now: Instant, out: &mut Vec<Output>) {
        let Some(key) = Self::server_key(msg, b"ACK") else {
            return;
        };
        if self.ack_server(&key, now) {
            return;
        }
        // The ACK of a non-2xx we originated without a transaction (483, 482, 420, 503, 400)
        // or whose transaction has ended: it carries the To tag we gave, and ends here.
        if msg.to_tag().is_some_and(|t| self.is_our_tag(t, &key)) {
            self.stats.acks_absorbed.inc();
            return;
        }
        // ACK for a 2xx: end to end, statelessly; of a dialog we do not know, to the next hop
        // only (see `unknown_dialog`).
        if msg.max_forwards() == Some(0) || self.is_loop(msg) {
            return;
        }
        if self.known_dialog(msg) {
            self.call_touched(msg, now);
        } else if self.unknown_dialog(from) {
            return;
        }
        let mut fwd = Fwd::default();
        let (anchor, dir, _) = self.dialog_side(msg);
        if anchor && msg.body_is_sdp() {
            let id = msg.call_id().unwrap_or("");
            fwd.body = self.rewrite(id, dir, SdpKind::Answer, msg.body_bytes(), now);
        }
        self.forward_stateless(msg, from, &fwd, now, out);
    }

    fn on_cancel(&self, msg: &Message, from: Peer, now: Instant, out: &mut Vec<Output>) {
        let ikey = Self::server_key(msg, b"INVITE");
        let found = ikey.as_deref().and_then(|k| self.invite_server(k));
        if found.is_none() && ikey.as_deref().is_some_and(|k| self.is_accepted(k)) {
            // Too late: the call was answered. The CANCEL is answered and goes no further.
            return self.respond(msg, from, 200, "OK", &[], out);
        }
        let Some((state, client, req)) = found else {
            // No transaction to cancel: forward statelessly (RFC 3261 16.10).
            if msg.max_forwards() == Some(0) {
                return self.respond(msg, from, 483, "Too Many Hops", &[], out);
            }
            return self.forward_stateless(msg, from, &Fwd::default(), now, out);
        };
        self.respond(msg, from, 200, "OK", &[], out);
        if state != SState::Proceeding {
            return;
        }
        match client {
            Some(ck) => self.cancel_client(&ck, msg.call_id().unwrap_or(""), now, out),
            None => {
                if let (Some(k), Ok(inv)) = (ikey, Message::parse(req, &self.limits, true)) {
                    self.final_upstream(&k, &inv, 487, "Request Terminated", &[], now, out);
                }
                // A call held for the application ends here: it must learn of it.
                self.event(msg.call_id().unwrap_or(""), CallEvent::Cancelled, true, now);
            }
        }
    }

    fn on_response(&self, msg: &Message, now: Instant, out: &mut Vec<Output>) {
        let (Some(via), Some(code), Some((_, cmethod))) = (msg.top_via(), msg.status(), msg.cseq())
        else {
            return;
        };
        if !self.me.via_is_ours(&via) {
            self.stats.stray_responses.inc();
            return;
        }
        let ckey = format!("{}|{cmethod}", via.branch.unwrap_or(""));
        match self.client_response(&ckey, msg, code, now, out) {
            Next::Done => {}
            // Not ours to track (2xx retransmission, stateless request): route by the next Via.
            Next::Stateless => {
                if let Some(dest) = self.response_target(msg) {
                    let restore = self.restore_for_caller(msg);
                    out.push(Output {
                        to: dest,
                        data: forward::response(msg, None, restore.as_deref()),
                    });
                }
            }
            Next::Relay(r) => self.relay(msg, code, &r, now, out),
        }
    }

    /// Pass a response upstream on its server transaction (or by its next Via when that is
    /// gone), and tell the hook what a first final response means for the call.
    fn relay(&self, msg: &Message, code: u16, r: &Relay, now: Instant, out: &mut Vec<Output>) {
        let body = if r.anchor && msg.body_is_sdp() {
            self.rewrite(&r.call, r.dir, SdpKind::Answer, msg.body_bytes(), now)
        } else {
            None
        };
        let restore = match r.dir {
            SdpDirection::FromCallee => self.restore_for_caller(msg),
            SdpDirection::FromCaller => None,
        };
        let data = forward::response(msg, body, restore.as_deref());
        let upstream = r
            .server
            .as_deref()
            .and_then(|k| self.send_on_server(k, data.clone(), code, now))
            .or_else(|| self.response_target(msg));
        if let Some(to) = upstream {
            out.push(Output { to, data });
        }
        if (200..300).contains(&code) {
            self.call_refreshed(&r.call, msg, now);
        } else if r.initial && code < 200 {
            self.call_ringing(&r.call, now);
        }
        if r.initial && r.first_final {
            self.call_outcome(&r.call, code, now);
        }
    }

    /// The first final response to a call's INVITE.
    fn call_outcome(&self, call: &str, code: u16, now: Instant) {
        match code {
            200..=299 => self.event(call, CallEvent::Answered, false, now),
            607 => self.event(call, CallEvent::Unwanted, true, now),
            // The caller cancelled: reported when the CANCEL came.
            487 => self.forget_call(call),
            c if c >= 300 => self.event(call, CallEvent::Failed(c), true, now),
            _ => {}
        }
        if (200..300).contains(&code) {
            // Calls forwarded without staying in the dialog need no entry after the answer.
            let drop_it = self.calls.get(call).is_some_and(|c| !c.dialog);
            if drop_it {
                self.forget_call(call);
            }
        }
    }

    /// Advance timers: retransmissions, timeouts, and freeing of finished entries.
    ///
    /// Every tick looks only at the retransmission timers that are due; every entry is checked
    /// against its deadline once a second.
    pub fn poll(&self, now: Instant) -> Vec<Output> {
        let mut out = Vec::new();
        self.resume_held(now, &mut out);
        let t2 = self.cfg.t2();
        let due: Vec<(Instant, Timed)> = {
            let mut heap = self.timed.lock().unwrap_or_else(|e| e.into_inner());
            let mut due = Vec::new();
            while heap.peek().is_some_and(|Reverse((at, _))| *at <= now) {
                if let Some(Reverse(x)) = heap.pop() {
                    due.push(x);
                }
            }
            due
        };
        let mut again = Vec::new();
        for (at, t) in due {
            let next = match &t {
                Timed::Client(k) => self
                    .clients
                    .get_mut(k)
                    .and_then(|mut c| c.on_timer(at, now, t2, &mut out)),
            };
            if let Some(next) = next {
                again.push(Reverse((next, t)));
            }
        }
        if !again.is_empty() {
            self.timed
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend(again);
        }
        let sweep = {
            let mut last = self.swept.lock().unwrap_or_else(|e| e.into_inner());
            let due = last.map_or(true, |t| now.saturating_duration_since(t) >= SWEEP_EVERY);
            if due {
                *last = Some(now);
            }
            due
        };
        if sweep {
            self.sweep(now, &mut out);
        }
        for o in &out {
            self.stats.sent(o.to.transport);
        }
        out
    }

    /// Deadlines of every entry: timeouts and freeing.
    fn sweep(&self, now: Instant, out: &mut Vec<Output>) {
        self.servers.retain(|_, s| {
            let keep = now < s.deadline;
            if !keep {
                self.stats.transactions.dec();
                self.closed_server(s);
            }
            keep
        });
        let mut dead = Vec::new();
        let mut timed_out = Vec::new();
        for c in self.clients.iter() {
            if now >= c.deadline {
                if matches!(c.state, CState::Calling | CState::Proceeding)
                    && c.kind != CKind::Cancel
                {
                    timed_out.push(c.key().clone());
                } else {
                    dead.push(c.key().clone());
                }
            }
        }
        for k in dead {
            self.remove_client(&k);
        }
        for k in timed_out {
            if self.fail_over(&k, now, out) {
                continue;
            }
            if let Some(c) = self.remove_client(&k) {
                self.client_timed_out(c, now, out);
            }
        }
        {
            let mut order = self
                .accepted_order
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            while order.front().is_some_and(|(at, _)| *at <= now) {
                if let Some((_, h)) = order.pop_front() {
                    self.accepted.remove(&h);
                }
            }
        }
        let mut gone = 0;
        let mut held = Vec::new();
        self.calls.retain(|id, c| {
            let keep = now < c.expires;
            gone += usize::from(!keep);
            if let (false, Some(key)) = (keep, &c.held) {
                held.push((id.clone(), key.clone(), c.tag.clone()));
            }
            keep
        });
        for _ in 0..gone {
            self.stats.calls.dec();
            self.stats.calls_expired.inc();
        }
        self.held_expired(held, now, out);
        self.sources.sweep(now, &self.stats.flood);
        // A burst's entries are gone; give back the room they took.
        shrink(&self.servers);
        shrink(&self.clients);
        shrink(&self.calls);
        if self.accepted.capacity() > 4096 && self.accepted.capacity() > 4 * self.accepted.len() {
            self.accepted.shrink_to_fit();
        }
        let mut order = self
            .accepted_order
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if order.capacity() > 4096 && order.capacity() > 4 * order.len() {
            order.shrink_to_fit();
        }
        drop(order);
        let mut timed = self.timed.lock().unwrap_or_else(|e| e.into_inner());
        if timed.capacity() > 4096 && timed.capacity() > 4 * timed.len() {
            timed.shrink_to_fit();
        }
        self.sweep_names(now, out);
    }
}
