//! The sans-IO, transaction-stateful proxy (RFC 3261 sections 16 and 17): bytes and a source
//! in, messages to send out; timers advanced by [`Proxy::poll`]. No sockets, no clocks of its
//! own, so every behaviour is unit-testable.
//!
//! Knows nothing of why calls are blocked or warned: the [`Hook`] decides. Transaction and call
//! tables are dashmaps (no global lock on the hot path), each capped, every entry freed by a
//! timer.

use std::cmp::Reverse;
use std::collections::hash_map::RandomState;
use std::collections::BinaryHeap;
use std::fmt::Write as _;
use std::hash::BuildHasher;
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use dashmap::mapref::entry::Entry;
use dashmap::DashMap;

use super::config::SipConfig;
use super::edit::Splice;
use super::hook::{CallEvent, Decision, Hook, NewCall, SdpDirection, SdpKind};
use super::msg::{split_commas, Hdr, Limits, Message, Problem, Via};
use super::stats::SipStats;
use super::uri::{quote_display, NameAddr, Scheme, Uri};
use super::Transport;

/// Identifies one TCP connection of the transport layer.
pub type ConnId = u64;

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

/// Prefix of every branch we generate: the magic cookie plus our mark.
const BRANCH_PREFIX: &str = "z9hG4bKsg";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SState {
    Proceeding,
    Completed,
    Confirmed,
}

struct ServerTx {
    invite: bool,
    state: SState,
    upstream: Peer,
    /// The last response sent upstream (resent on a retransmitted request and by Timer G).
    last: Option<Bytes>,
    timer_g: Option<(Instant, Duration)>,
    deadline: Instant,
    client: Option<String>,
    /// The received request, to build responses we originate later (408, 487).
    request: Bytes,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CKind {
    Invite,
    NonInvite,
    Cancel,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CState {
    Calling,
    Proceeding,
    Completed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cancel {
    No,
    Pending,
    Sent,
}

struct ClientTx {
    kind: CKind,
    state: CState,
    server: Option<String>,
    dest: Peer,
    /// The forwarded request bytes (retransmissions, ACK and CANCEL are built from it).
    request: Bytes,
    retrans: Option<(Instant, Duration)>,
    deadline: Instant,
    cancel: Cancel,
    call_id: String,
    /// The initial INVITE of a call (events are reported for it).
    initial: bool,
    anchor: bool,
    /// Direction of the request; responses flow the other way.
    dir: SdpDirection,
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
}

/// A transaction whose retransmission timer runs.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Timed {
    Server(String),
    Client(String),
}

/// How often every entry is checked against its deadline. Deadlines are 5 s to hours long, and
/// a second late is harmless (Timer B/F answer 408 a little later, memory is freed a little
/// later); checking every entry on every tick cost more than the calls themselves at high rates.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// Per-request forwarding options.
#[derive(Default)]
struct Fwd<'a> {
    display: Option<&'a str>,
    headers: &'a [String],
    record_route: bool,
    body: Option<Vec<u8>>,
}

/// The proxy core. Share it as `Arc<Proxy>`; every method takes `&self`.
pub struct Proxy {
    cfg: SipConfig,
    limits: Limits,
    host: String,
    port: u16,
    ip: Option<IpAddr>,
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
}

fn off(buf: &[u8], s: &str) -> usize {
    s.as_ptr() as usize - buf.as_ptr() as usize
}

fn ip_of(host: &str) -> Option<IpAddr> {
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()
}

impl Proxy {
    /// `local` is the bound address; the advertised host defaults to its IP.
    pub fn new(
        cfg: SipConfig,
        local: SocketAddr,
        hook: Arc<dyn Hook>,
        stats: Arc<SipStats>,
    ) -> Result<Proxy, String> {
        let host = match &cfg.advertise {
            Some(h) => h.clone(),
            None if local.ip().is_unspecified() => {
                return Err(format!(
                    "sip: listening on {local}; set `advertise` to the address peers reach us at"
                ))
            }
            None => match local.ip() {
                IpAddr::V4(v4) => v4.to_string(),
                IpAddr::V6(v6) => format!("[{v6}]"),
            },
        };
        let ip = ip_of(&host).or(Some(local.ip()).filter(|i| !i.is_unspecified()));
        Ok(Proxy {
            limits: cfg.limits(),
            cfg,
            host,
            port: local.port(),
            ip,
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
        })
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

    fn accepted_hash(&self, key: &str) -> u64 {
        self.keys.hash_one((key, 0xacce_u32))
    }

    /// Replace the server transaction `key`, just answered 2xx, by its accepted record.
    fn accept(&self, key: &str, now: Instant) {
        if self.servers.remove(key).is_some() {
            self.stats.transactions.dec();
        }
        // Capped like the transactions: past the cap a retransmitted INVITE would be
        // forwarded again (and absorbed by the next hop's transaction), never lost.
        if self.accepted.len() >= self.cfg.max_transactions {
            return;
        }
        let h = self.accepted_hash(key);
        if self.accepted.insert(h) {
            self.accepted_order
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push_back((now + self.cfg.t1() * 64, h));
        }
    }

    fn is_accepted(&self, key: &str) -> bool {
        !self.accepted.is_empty() && self.accepted.contains(&self.accepted_hash(key))
    }

    /// Handle one received message (a datagram, or one framed stream message).
    pub fn handle(&self, data: Bytes, from: Peer, now: Instant) -> Vec<Output> {
        self.stats.received(from.transport);
        let mut out = Vec::new();
        self.handle_into(data, from, now, &mut out);
        for o in &out {
            self.stats.sent(o.to.transport);
        }
        out
    }

    fn handle_into(&self, data: Bytes, from: Peer, now: Instant, out: &mut Vec<Output>) {
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
            self.on_request(&msg, from, now, out);
        } else {
            self.on_response(&msg, now, out);
        }
    }

    fn tag_for(&self, seed: &str) -> String {
        format!("sg{:012x}", self.keys.hash_one(seed) & 0xffff_ffff_ffff)
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
        let seed = format!("{}{:?}", msg.call_id().unwrap_or(""), msg.top_via_range());
        let tag = self.tag_for(&seed);
        self.stats.response_sent(code);
        out.push(Output {
            to,
            data: build_response(msg, code, phrase, extra, Some(&tag)),
        });
    }

    fn is_ours_host(&self, host: &str, port: Option<u16>, sips: bool) -> bool {
        let default = if sips { 5061 } else { 5060 };
        if port.unwrap_or(default) != self.port {
            return false;
        }
        host.eq_ignore_ascii_case(&self.host) || (self.ip.is_some() && ip_of(host) == self.ip)
    }

    fn via_is_ours(&self, v: &Via<'_>) -> bool {
        v.branch.is_some_and(|b| b.starts_with(BRANCH_PREFIX))
            && self.is_ours_host(v.host, v.port, false)
    }

    fn uri_is_ours(&self, u: &Uri<'_>) -> bool {
        u.is_sip() && self.is_ours_host(u.host, u.port, u.scheme == Scheme::Sips)
    }

    /// RFC 3261 16.11-style branch: a hash of the request's identity and the Via below ours.
    fn branch(&self, msg: &Message, below: Option<&Via<'_>>) -> String {
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
    fn is_loop(&self, msg: &Message) -> bool {
        let vias: Vec<Via<'_>> = msg
            .values_str(Hdr::Via)
            .filter_map(|s| Via::parse(s).ok())
            .collect();
        vias.iter().enumerate().any(|(i, v)| {
            self.via_is_ours(v) && v.branch == Some(self.branch(msg, vias.get(i + 1)).as_str())
        })
    }

    fn server_key(msg: &Message, method: &[u8]) -> Option<String> {
        let method = if method == b"ACK" {
            b"INVITE".as_slice()
        } else {
            method
        };
        let method = std::str::from_utf8(method).ok()?;
        let via = msg.top_via()?;
        match via.branch {
            Some(b) if b.len() > 7 && b.starts_with("z9hG4bK") => {
                // One allocation: this runs for every request.
                let mut k = String::with_capacity(b.len() + via.host.len() + method.len() + 8);
                k.push_str(b);
                k.push('|');
                k.extend(via.host.chars().map(|c| c.to_ascii_lowercase()));
                let _ = write!(k, ":{}|{method}", via.port.unwrap_or(0));
                Some(k)
            }
            _ => {
                let ft = msg.from_tag().unwrap_or("");
                let vr = msg.top_via_range()?;
                Some(format!(
                    "2543|{}|{}|{ft}|{}|{method}",
                    msg.call_id()?,
                    msg.cseq()?.0,
                    msg.str(vr)?
                ))
            }
        }
    }

    fn in_flight(&self) -> usize {
        usize::try_from(self.stats.transactions.get()).unwrap_or(0)
    }

    fn add_server(&self, key: String, tx: ServerTx) -> bool {
        match self.servers.entry(key) {
            Entry::Occupied(_) => false,
            Entry::Vacant(v) => {
                v.insert(tx);
                self.stats.transactions.inc();
                true
            }
        }
    }

    fn add_client(&self, key: String, tx: ClientTx) {
        if let Some((at, _)) = tx.retrans {
            self.arm(at, Timed::Client(key.clone()));
        }
        if self.clients.insert(key, tx).is_none() {
            self.stats.transactions.inc();
        }
    }

    fn arm(&self, at: Instant, t: Timed) {
        self.timed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Reverse((at, t)));
    }

    fn remove_client(&self, key: &str) -> Option<ClientTx> {
        let c = self.clients.remove(key).map(|(_, c)| c);
        if c.is_some() {
            self.stats.transactions.dec();
        }
        c
    }

    fn event(&self, call_id: &str, ev: CallEvent, end: bool) {
        let known = if end {
            let gone = self.calls.remove(call_id).is_some();
            if gone {
                self.stats.calls.dec();
            }
            gone
        } else {
            self.calls.contains_key(call_id)
        };
        if known {
            self.hook.call_event(call_id, ev);
        }
    }

    fn on_request(&self, msg: &Message, from: Peer, now: Instant, out: &mut Vec<Output>) {
        let method = msg.method();
        if method == b"ACK" {
            return self.on_ack(msg, from, now, out);
        }
        let Some(key) = Self::server_key(msg, method) else {
            return;
        };
        // A retransmission: answer from the transaction, never ask the hook again.
        if let Some(tx) = self.servers.get(&key) {
            if let Some(last) = &tx.last {
                out.push(Output {
                    to: tx.upstream,
                    data: last.clone(),
                });
            }
            return;
        }
        if method == b"INVITE" && self.is_accepted(&key) {
            return; // answered 2xx already; the 2xx retransmissions are the callee's job
        }
        if method == b"CANCEL" {
            return self.on_cancel(msg, from, now, out);
        }
        let mf = msg.max_forwards();
        let ruri = msg.request_uri();
        let to_us = ruri
            .as_ref()
            .is_some_and(|u| u.is_sip() && u.user.is_none());
        if method == b"OPTIONS" && (mf == Some(0) || to_us) {
            let allow =
                ["Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE, INFO, PRACK".to_string()];
            return self.respond(msg, from, 200, "OK", &allow, out);
        }
        if mf == Some(0) {
            return self.respond(msg, from, 483, "Too Many Hops", &[], out);
        }
        if self.is_loop(msg) {
            return self.respond(msg, from, 482, "Loop Detected", &[], out);
        }
        if let Some(pr) = msg.value(Hdr::ProxyRequire) {
            let h = [format!("Unsupported: {pr}")];
            return self.respond(msg, from, 420, "Bad Extension", &h, out);
        }
        let invite = method == b"INVITE";
        let to_tag = msg.to_tag();
        let initial = invite && to_tag.is_none();
        let call_id = msg.call_id().unwrap_or("").to_string();
        if self.in_flight() >= self.cfg.max_transactions
            || (initial && self.calls.len() >= self.cfg.max_calls)
        {
            self.stats.overload.inc();
            let h = [format!("Retry-After: {}", self.cfg.retry_after_secs)];
            return self.respond(msg, from, 503, "Service Unavailable", &h, out);
        }
        let mut tx = ServerTx {
            invite,
            state: SState::Proceeding,
            upstream: from,
            last: None,
            timer_g: None,
            deadline: now + self.server_lifetime(invite),
            client: None,
            request: msg.buf.clone(),
        };
        // 100 Trying at once, except for a new call the hook is about to decide: it answers in
        // microseconds, and a final response stops retransmissions as well as a 100 does (RFC
        // 3261 17.2.1 only asks for a 100 when the final one takes over 200 ms). A rejected
        // call then costs one datagram each way instead of two.
        if invite && !initial {
            let trying = build_response(msg, 100, "Trying", &[], None);
            self.stats.response_sent(100);
            tx.last = Some(trying.clone());
            out.push(Output {
                to: from,
                data: trying,
            });
        }
        if !self.add_server(key.clone(), tx) {
            out.clear(); // another worker took this transaction first
            return;
        }

        // Decide.
        let mut fwd = Fwd::default();
        let decision;
        let (anchor, dir) = if initial {
            self.stats.hook_calls.inc();
            decision = self
                .hook
                .new_call(&NewCall::new(msg, from.addr, from.transport));
            match &decision {
                Decision::Reject {
                    code,
                    phrase,
                    headers,
                } => {
                    let code = if (300..700).contains(code) {
                        *code
                    } else {
                        500
                    };
                    self.final_upstream(&key, msg, code, phrase, headers, now, out);
                    return;
                }
                Decision::Forward {
                    display_name,
                    headers,
                    record_route,
                    anchor_media,
                } => {
                    let trying = build_response(msg, 100, "Trying", &[], None);
                    self.stats.response_sent(100);
                    if let Some(mut s) = self.servers.get_mut(&key) {
                        if s.last.is_none() {
                            s.last = Some(trying.clone());
                        }
                    }
                    out.push(Output {
                        to: from,
                        data: trying,
                    });
                    fwd.display = display_name.as_deref();
                    fwd.headers = headers;
                    fwd.record_route = *record_route || *anchor_media;
                    (*anchor_media, SdpDirection::FromCaller)
                }
            }
        } else {
            match self.calls.get(&call_id) {
                Some(c) => {
                    let ft = msg.from_tag().unwrap_or("");
                    let dir = if ft == c.caller_tag {
                        SdpDirection::FromCaller
                    } else {
                        SdpDirection::FromCallee
                    };
                    (c.anchor, dir)
                }
                None => (false, SdpDirection::FromCaller),
            }
        };
        if anchor && msg.body_is_sdp() {
            let kind = if msg.method_is("ACK") {
                SdpKind::Answer
            } else {
                SdpKind::Offer
            };
            fwd.body = self.hook.rewrite_sdp(&call_id, dir, kind, msg.body_bytes());
        }
        let Some(dest) = self.route(msg, to_tag.is_none()) else {
            self.final_upstream(&key, msg, 502, "Bad Gateway", &[], now, out);
            return;
        };
        let below = msg.top_via();
        let branch = self.branch(msg, below.as_ref());
        let data = self.forward_bytes(msg, from, dest.transport, &branch, &fwd);
        let kind = if invite {
            CKind::Invite
        } else {
            CKind::NonInvite
        };
        let ckey = format!("{branch}|{}", String::from_utf8_lossy(method));
        let t1 = self.cfg.t1();
        self.add_client(
            ckey.clone(),
            ClientTx {
                kind,
                state: CState::Calling,
                server: Some(key.clone()),
                dest,
                request: data.clone(),
                retrans: (dest.transport == Transport::Udp).then(|| (now + t1, t1)),
                deadline: now + t1 * 64,
                cancel: Cancel::No,
                call_id: call_id.clone(),
                initial,
                anchor,
                dir,
            },
        );
        if let Some(mut s) = self.servers.get_mut(&key) {
            s.client = Some(ckey);
        }
        if initial && !call_id.is_empty() {
            let ft = msg.from_tag().unwrap_or("").to_owned();
            let dialog = fwd.record_route || anchor;
            // Without Record-Route the entry only lives until the INVITE transaction ends.
            let life = if dialog {
                Duration::from_secs(self.cfg.max_call_secs)
            } else {
                Duration::from_secs(self.cfg.timer_c_secs) + t1 * 128
            };
            let c = Call {
                anchor,
                dialog,
                caller_tag: ft,
                upstream: from,
                downstream: dest,
                expires: now + life,
            };
            if self.calls.insert(call_id.clone(), c).is_none() {
                self.stats.calls.inc();
            }
        }
        if method == b"BYE" {
            self.event(&call_id, CallEvent::Ended, true);
        }
        out.push(Output { to: dest, data });
    }

    fn server_lifetime(&self, invite: bool) -> Duration {
        let t1 = self.cfg.t1();
        if invite {
            Duration::from_secs(self.cfg.timer_c_secs) + t1 * 130
        } else {
            t1 * 130
        }
    }

    /// Send a final response we originate on the server transaction `key`.
    #[allow(clippy::too_many_arguments)]
    fn final_upstream(
        &self,
        key: &str,
        req: &Message,
        code: u16,
        phrase: &str,
        extra: &[String],
        now: Instant,
        out: &mut Vec<Output>,
    ) {
        let Some(mut s) = self.servers.get_mut(key) else {
            return;
        };
        // Our To tag is a function of the transaction key: computed when a response is
        // originated, instead of for every request.
        let tag = self.tag_for(key);
        let data = build_response(req, code, phrase, extra, Some(&tag));
        self.stats.response_sent(code);
        let accepted = self.complete_server(key, &mut s, data.clone(), code, now);
        out.push(Output {
            to: s.upstream,
            data,
        });
        drop(s);
        if accepted {
            self.accept(key, now);
        }
    }

    /// Record a response sent on a server transaction. Returns true when an INVITE was
    /// answered 2xx: the caller then replaces the entry by [`Proxy::accept`].
    fn complete_server(
        &self,
        key: &str,
        s: &mut ServerTx,
        data: Bytes,
        code: u16,
        now: Instant,
    ) -> bool {
        let t1 = self.cfg.t1();
        let udp = s.upstream.transport == Transport::Udp;
        if code < 200 {
            // Ringing keeps the transaction (and its client side, by Timer C) alive.
            s.last = Some(data);
            s.deadline = s.deadline.max(now + self.server_lifetime(s.invite));
            return false;
        }
        if s.invite && code < 300 {
            return true;
        }
        // Past Proceeding the received request is never needed again (it only builds the 408
        // and 487 we may originate while proceeding).
        s.request = Bytes::new();
        s.client = None;
        {
            s.state = SState::Completed;
            s.last = Some(data);
            if s.invite && udp {
                s.timer_g = Some((now + t1, t1));
                self.arm(now + t1, Timed::Server(key.to_string()));
            }
            s.deadline = if s.invite || udp { now + t1 * 64 } else { now };
        }
        false
    }

    fn on_ack(&self, msg: &Message, _from: Peer, now: Instant, out: &mut Vec<Output>) {
        if let Some(key) = Self::server_key(msg, b"ACK") {
            if let Some(mut s) = self.servers.get_mut(&key) {
                match s.state {
                    SState::Completed => {
                        s.state = SState::Confirmed;
                        s.timer_g = None;
                        let udp = s.upstream.transport == Transport::Udp;
                        s.deadline = if udp { now + self.cfg.t4() } else { now };
                        return;
                    }
                    SState::Confirmed | SState::Proceeding => return,
                }
            }
        }
        // ACK for a 2xx: end to end, statelessly.
        if msg.max_forwards() == Some(0) || self.is_loop(msg) {
            return;
        }
        let mut fwd = Fwd::default();
        if let Some(c) = msg.call_id().and_then(|id| self.calls.get(id)) {
            if c.anchor && msg.body_is_sdp() {
                let ft = msg.from_tag().unwrap_or("");
                let dir = if ft == c.caller_tag {
                    SdpDirection::FromCaller
                } else {
                    SdpDirection::FromCallee
                };
                let id = msg.call_id().unwrap_or("").to_string();
                drop(c);
                fwd.body = self
                    .hook
                    .rewrite_sdp(&id, dir, SdpKind::Answer, msg.body_bytes());
            }
        }
        let has_tag = msg.to_tag().is_some();
        let Some(dest) = self.route(msg, !has_tag) else {
            return;
        };
        let below = msg.top_via();
        let branch = self.branch(msg, below.as_ref());
        let data = self.forward_bytes(msg, _from, dest.transport, &branch, &fwd);
        out.push(Output { to: dest, data });
    }

    fn on_cancel(&self, msg: &Message, from: Peer, now: Instant, out: &mut Vec<Output>) {
        let ikey = Self::server_key(msg, b"INVITE");
        let found = ikey.as_ref().and_then(|k| {
            self.servers
                .get(k)
                .filter(|s| s.invite)
                .map(|s| (s.state, s.client.clone(), s.request.clone()))
        });
        if found.is_none() && ikey.as_deref().is_some_and(|k| self.is_accepted(k)) {
            // Too late: the call was answered. The CANCEL is answered and goes no further.
            return self.respond(msg, from, 200, "OK", &[], out);
        }
        let Some((state, client, _req)) = found else {
            // No transaction to cancel: forward statelessly (RFC 3261 16.10).
            if msg.max_forwards() == Some(0) {
                return self.respond(msg, from, 483, "Too Many Hops", &[], out);
            }
            let has_tag = msg.to_tag().is_some();
            if let Some(dest) = self.route(msg, !has_tag) {
                let below = msg.top_via();
                let branch = self.branch(msg, below.as_ref());
                let data = self.forward_bytes(msg, from, dest.transport, &branch, &Fwd::default());
                out.push(Output { to: dest, data });
            }
            return;
        };
        self.respond(msg, from, 200, "OK", &[], out);
        if state != SState::Proceeding {
            return;
        }
        let call_id = msg.call_id().unwrap_or("").to_string();
        match client {
            Some(ck) => {
                let mut send = None;
                if let Some(mut c) = self.clients.get_mut(&ck) {
                    if c.cancel == Cancel::No {
                        if c.state == CState::Proceeding {
                            c.cancel = Cancel::Sent;
                            send = Some((c.request.clone(), c.dest));
                        } else {
                            c.cancel = Cancel::Pending;
                        }
                        self.event(&call_id, CallEvent::Cancelled, false);
                    }
                }
                if let Some((req, dest)) = send {
                    self.send_cancel(&req, dest, now, out);
                }
            }
            None => {
                if let (Some(k), Ok(inv)) = (ikey, Message::parse(_req, &self.limits, true)) {
                    self.final_upstream(&k, &inv, 487, "Request Terminated", &[], now, out);
                }
            }
        }
    }

    fn send_cancel(&self, fwd_invite: &Bytes, dest: Peer, now: Instant, out: &mut Vec<Output>) {
        let Ok(inv) = Message::parse(fwd_invite.clone(), &self.limits, true) else {
            return;
        };
        let Some(branch) = inv.top_via().and_then(|v| v.branch.map(str::to_owned)) else {
            return;
        };
        let data = build_in_tx_request(&inv, "CANCEL", None);
        let t1 = self.cfg.t1();
        self.add_client(
            format!("{branch}|CANCEL"),
            ClientTx {
                kind: CKind::Cancel,
                state: CState::Calling,
                server: None,
                dest,
                request: data.clone(),
                retrans: (dest.transport == Transport::Udp).then(|| (now + t1, t1)),
                deadline: now + t1 * 64,
                cancel: Cancel::No,
                call_id: String::new(),
                initial: false,
                anchor: false,
                dir: SdpDirection::FromCaller,
            },
        );
        out.push(Output { to: dest, data });
    }

    fn on_response(&self, msg: &Message, now: Instant, out: &mut Vec<Output>) {
        let (Some(via), Some(code), Some((_, cmethod))) = (msg.top_via(), msg.status(), msg.cseq())
        else {
            return;
        };
        if !self.via_is_ours(&via) {
            self.stats.stray_responses.inc();
            return;
        }
        let ckey = format!("{}|{cmethod}", via.branch.unwrap_or(""));
        enum Next {
            Relay {
                server: Option<String>,
                anchor: bool,
                dir: SdpDirection,
                call: String,
                initial: bool,
                first_final: bool,
            },
            Stateless,
            Done,
        }
        let mut ack = None;
        let mut cancel = None;
        let mut answered = false;
        let next = match self.clients.get_mut(&ckey) {
            None => Next::Stateless,
            Some(mut c) => {
                let relay = |c: &ClientTx, first_final: bool| Next::Relay {
                    server: c.server.clone(),
                    anchor: c.anchor,
                    dir: match c.dir {
                        SdpDirection::FromCaller => SdpDirection::FromCallee,
                        SdpDirection::FromCallee => SdpDirection::FromCaller,
                    },
                    call: c.call_id.clone(),
                    initial: c.initial,
                    first_final,
                };
                match c.kind {
                    CKind::Cancel => {
                        if code >= 200 && c.state != CState::Completed {
                            c.state = CState::Completed;
                            c.retrans = None;
                            c.deadline = now + self.cfg.t4();
                        }
                        Next::Done
                    }
                    CKind::Invite if code < 200 => {
                        if c.state == CState::Calling {
                            c.state = CState::Proceeding;
                            c.retrans = None;
                        }
                        if c.state == CState::Proceeding {
                            c.deadline = now + Duration::from_secs(self.cfg.timer_c_secs);
                            if c.cancel == Cancel::Pending {
                                c.cancel = Cancel::Sent;
                                cancel = Some((c.request.clone(), c.dest));
                            }
                        }
                        if code == 100 || c.state != CState::Proceeding {
                            Next::Done
                        } else {
                            relay(&c, false)
                        }
                    }
                    CKind::Invite if code < 300 => {
                        // Answered: the entry goes now. All that RFC 6026's Accepted state
                        // would do is pass 2xx retransmissions on, and a 2xx without an entry
                        // is relayed statelessly by its next Via just the same; keeping it
                        // 64*T1 cost an entry per call of the last 32 s.
                        answered = true;
                        c.retrans = None;
                        relay(&c, true)
                    }
                    CKind::Invite => {
                        ack = Some((c.request.clone(), c.dest));
                        if c.state == CState::Completed {
                            Next::Done
                        } else {
                            c.state = CState::Completed;
                            c.retrans = None;
                            let udp = c.dest.transport == Transport::Udp;
                            c.deadline = if udp {
                                now + Duration::from_secs(32)
                            } else {
                                now
                            };
                            relay(&c, true)
                        }
                    }
                    CKind::NonInvite => {
                        if c.state == CState::Completed {
                            Next::Done
                        } else if code < 200 {
                            c.state = CState::Proceeding;
                            if code == 100 {
                                Next::Done
                            } else {
                                relay(&c, false)
                            }
                        } else {
                            c.state = CState::Completed;
                            c.retrans = None;
                            let udp = c.dest.transport == Transport::Udp;
                            c.deadline = if udp { now + self.cfg.t4() } else { now };
                            relay(&c, true)
                        }
                    }
                }
            }
        };
        if answered {
            self.remove_client(&ckey);
        }
        if let Some((req, dest)) = ack {
            if let Ok(inv) = Message::parse(req, &self.limits, true) {
                let to_line = msg.header(Hdr::To).map(|h| msg.bytes(h.line.clone()));
                out.push(Output {
                    to: dest,
                    data: build_in_tx_request(&inv, "ACK", to_line),
                });
            }
        }
        if let Some((req, dest)) = cancel {
            self.send_cancel(&req, dest, now, out);
        }
        match next {
            Next::Done => {}
            Next::Stateless => {
                // Not ours to track (2xx retransmission, stateless request): route by the next Via.
                let Some(dest) = msg
                    .values_str(Hdr::Via)
                    .nth(1)
                    .and_then(|s| Via::parse(s).ok())
                    .and_then(|v| via_target(&v))
                else {
                    self.stats.stray_responses.inc();
                    return;
                };
                let data = self.relay_bytes(msg, None);
                out.push(Output { to: dest, data });
            }
            Next::Relay {
                server,
                anchor,
                dir,
                call,
                initial,
                first_final,
            } => {
                let body = if anchor && msg.body_is_sdp() {
                    self.hook
                        .rewrite_sdp(&call, dir, SdpKind::Answer, msg.body_bytes())
                } else {
                    None
                };
                let data = self.relay_bytes(msg, body);
                let upstream = match server
                    .as_ref()
                    .and_then(|k| Some((k, self.servers.get_mut(k)?)))
                {
                    Some((k, mut s)) => {
                        let accepted = self.complete_server(k, &mut s, data.clone(), code, now);
                        let up = s.upstream;
                        drop(s);
                        if accepted {
                            self.accept(k, now);
                        }
                        Some(up)
                    }
                    None => msg
                        .values_str(Hdr::Via)
                        .nth(1)
                        .and_then(|s| Via::parse(s).ok())
                        .and_then(|v| via_target(&v)),
                };
                if let Some(to) = upstream {
                    out.push(Output { to, data });
                }
                if initial && first_final {
                    match code {
                        200..=299 => self.event(&call, CallEvent::Answered, false),
                        607 => self.event(&call, CallEvent::Unwanted, true),
                        487 => {
                            let gone = self.calls.remove(&call).is_some();
                            if gone {
                                self.stats.calls.dec();
                            }
                        }
                        c if c >= 300 => self.event(&call, CallEvent::Failed(c), true),
                        _ => {}
                    }
                    if (200..300).contains(&code) {
                        // Calls forwarded without staying in the dialog need no entry after the answer.
                        let drop_it = self.calls.get(&call).is_some_and(|c| !c.dialog);
                        if drop_it && self.calls.remove(&call).is_some() {
                            self.stats.calls.dec();
                        }
                    }
                }
            }
        }
    }

    /// Where a request goes: the configured next hop for initial requests, else the first Route
    /// not ours, else the Request-URI. Only IP literals are used (no DNS); names fall back to the
    /// next hop.
    fn route(&self, msg: &Message, initial: bool) -> Option<Peer> {
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
        if first.as_ref().is_some_and(|r| self.uri_is_ours(&r.uri)) {
            first = routes.next();
        }
        let target = match &first {
            Some(r) => uri_target(&r.uri),
            None => msg.request_uri().and_then(|u| {
                if self.uri_is_ours(&u) {
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

    /// The received request with our edits spliced in.
    fn forward_bytes(
        &self,
        msg: &Message,
        from: Peer,
        out_t: Transport,
        branch: &str,
        fwd: &Fwd<'_>,
    ) -> Bytes {
        let b: &[u8] = &msg.buf;
        let mut sp = Splice::new();
        sp.insert(
            msg.head_start,
            format!(
                "Via: SIP/2.0/{} {}:{};branch={branch}\r\n",
                out_t.as_str(),
                self.host,
                self.port
            ),
        );
        if fwd.record_route {
            let t = if out_t == Transport::Tcp {
                ";transport=tcp"
            } else {
                ""
            };
            sp.insert(
                msg.head_start,
                format!("Record-Route: <sip:{}:{}{t};lr>\r\n", self.host, self.port),
            );
        }
        // RFC 3581 / 18.2.1 on the received top Via.
        if let Some(r) = msg.top_via_range() {
            if let Some(v) = msg.str(r.clone()).and_then(|s| Via::parse(s).ok()) {
                let mut add = String::new();
                if v.received.is_none() && ip_of(v.host) != Some(from.addr.ip()) {
                    let _ = write!(add, ";received={}", from.addr.ip());
                }
                if v.rport == Some(None) {
                    if let Some(pos) = find_flag(msg.str(r.clone()).unwrap_or(""), "rport") {
                        sp.insert(r.start + pos, format!("={}", from.addr.port()));
                    }
                }
                sp.insert(r.end, add);
            }
        }
        match msg.header(Hdr::MaxForwards) {
            Some(h) => {
                let mf = msg.max_forwards().unwrap_or(70).saturating_sub(1);
                sp.replace(h.value.clone(), mf.to_string());
            }
            None => sp.insert(msg.head_end, "Max-Forwards: 70\r\n"),
        }
        // Loose routing: pop a top Route that names us.
        if let Some((hi, vr)) = first_value(msg, Hdr::Route) {
            let ours = msg
                .str(vr.clone())
                .and_then(|s| NameAddr::parse(s).ok())
                .is_some_and(|n| self.uri_is_ours(&n.uri));
            if ours {
                remove_value(&mut sp, msg, hi, vr);
            }
        }
        if let Some(name) = fwd.display {
            let q = quote_display(name);
            let ranges = msg
                .values(Hdr::From)
                .take(1)
                .chain(msg.values(Hdr::PAssertedIdentity));
            for r in ranges {
                rewrite_display(&mut sp, msg, r, &q);
            }
        }
        for h in fwd.headers {
            let h = h.trim_end_matches(['\r', '\n']);
            if !h.is_empty() && !h.contains(['\r', '\n']) {
                sp.insert(msg.head_end, format!("{h}\r\n"));
            }
        }
        let body_len = match &fwd.body {
            Some(nb) => {
                sp.replace(msg.body.clone(), nb.clone());
                nb.len()
            }
            None => msg.body.len(),
        };
        fix_content_length(&mut sp, msg, body_len, fwd.body.is_some());
        sp.apply(b, msg.body.end)
    }

    /// A response with our Via popped (and an SDP replacement).
    fn relay_bytes(&self, msg: &Message, body: Option<Vec<u8>>) -> Bytes {
        let mut sp = Splice::new();
        if let Some((hi, vr)) = first_value(msg, Hdr::Via) {
            remove_value(&mut sp, msg, hi, vr);
        }
        let len = match &body {
            Some(nb) => {
                sp.replace(msg.body.clone(), nb.clone());
                nb.len()
            }
            None => msg.body.len(),
        };
        fix_content_length(&mut sp, msg, len, body.is_some());
        sp.apply(&msg.buf, msg.body.end)
    }

    /// Advance timers: retransmissions, timeouts, and freeing of finished entries.
    ///
    /// Every tick looks only at the retransmission timers that are due; every entry is checked
    /// against its deadline once a second.
    pub fn poll(&self, now: Instant) -> Vec<Output> {
        let mut out = Vec::new();
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
                Timed::Server(k) => self
                    .servers
                    .get_mut(k)
                    .and_then(|mut s| server_timer(&mut s, at, now, t2, &mut out)),
                Timed::Client(k) => self
                    .clients
                    .get_mut(k)
                    .and_then(|mut c| client_timer(&mut c, at, now, t2, &mut out)),
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
            let Some(c) = self.remove_client(&k) else {
                continue;
            };
            self.stats.timeouts.inc();
            if c.kind == CKind::Invite && c.state == CState::Proceeding && c.cancel == Cancel::No {
                // Timer C: give up on the branch.
                self.send_cancel(&c.request, c.dest, now, out);
            }
            let Some(sk) = c.server else { continue };
            let req = self
                .servers
                .get(&sk)
                .filter(|s| s.state == SState::Proceeding)
                .map(|s| s.request.clone());
            if let Some(req) = req {
                if let Ok(m) = Message::parse(req, &self.limits, true) {
                    if c.cancel == Cancel::No {
                        self.final_upstream(&sk, &m, 408, "Request Timeout", &[], now, out);
                    } else {
                        self.final_upstream(&sk, &m, 487, "Request Terminated", &[], now, out);
                    }
                }
            }
            if c.initial {
                if c.cancel == Cancel::No {
                    self.event(&c.call_id, CallEvent::TimedOut, true);
                } else if self.calls.remove(&c.call_id).is_some() {
                    self.stats.calls.dec();
                }
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
        self.calls.retain(|_, c| {
            let keep = now < c.expires;
            gone += usize::from(!keep);
            keep
        });
        for _ in 0..gone {
            self.stats.calls.dec();
        }
    }
}

/// Timer G of a server transaction, for the record armed at `armed`: fire it and return when
/// it fires next, or `None` when the record is stale (the timer stopped or was re-armed).
fn server_timer(
    s: &mut ServerTx,
    armed: Instant,
    now: Instant,
    t2: Duration,
    out: &mut Vec<Output>,
) -> Option<Instant> {
    let (SState::Completed, Some((at, iv))) = (s.state, s.timer_g) else {
        return None;
    };
    if at != armed {
        return None;
    }
    if let Some(last) = s.last.clone() {
        out.push(Output {
            to: s.upstream,
            data: last,
        });
    }
    let iv = (iv * 2).min(t2);
    s.timer_g = Some((now + iv, iv));
    Some(now + iv)
}

/// Timer A/E of a client transaction, like [`server_timer`].
fn client_timer(
    c: &mut ClientTx,
    armed: Instant,
    now: Instant,
    t2: Duration,
    out: &mut Vec<Output>,
) -> Option<Instant> {
    let (at, iv) = c.retrans?;
    if at != armed {
        return None;
    }
    out.push(Output {
        to: c.dest,
        data: c.request.clone(),
    });
    let iv = if c.kind == CKind::Invite {
        iv * 2
    } else {
        (iv * 2).min(t2)
    };
    c.retrans = Some((now + iv, iv));
    Some(now + iv)
}

fn can_answer(msg: &Message) -> bool {
    [Hdr::Via, Hdr::From, Hdr::To, Hdr::CallId, Hdr::CSeq]
        .iter()
        .all(|k| msg.header(*k).is_some())
}

/// Position just after a flag parameter `;name` (no value) inside a Via value.
fn find_flag(v: &str, name: &str) -> Option<usize> {
    let lower = v.to_ascii_lowercase();
    let mut from = 0;
    while let Some(p) = lower[from..].find(name) {
        let st = from + p;
        let en = st + name.len();
        let before = lower[..st].trim_end_matches(|c: char| c.is_ascii_whitespace());
        let after = lower[en..].trim_start_matches(|c: char| c.is_ascii_whitespace());
        if before.ends_with(';')
            && (after.is_empty() || after.starts_with(';') || after.starts_with(','))
        {
            return Some(en);
        }
        from = en;
    }
    None
}

fn first_value(msg: &Message, kind: Hdr) -> Option<(usize, Range<usize>)> {
    let hi = msg.headers.iter().position(|h| h.kind == kind)?;
    let v = split_commas(&msg.buf, msg.headers[hi].value.clone()).next()?;
    Some((hi, v))
}

/// Remove one value of a (possibly comma-joined) header; the whole line when it is the only one.
fn remove_value(sp: &mut Splice, msg: &Message, hi: usize, vr: Range<usize>) {
    let h = &msg.headers[hi];
    let vals: Vec<Range<usize>> = split_commas(&msg.buf, h.value.clone()).collect();
    let Some(i) = vals.iter().position(|v| *v == vr) else {
        return;
    };
    if vals.len() == 1 {
        sp.delete(h.line.clone());
    } else if i + 1 < vals.len() {
        sp.delete(vals[i].start..vals[i + 1].start);
    } else {
        sp.delete(vals[i - 1].end..vals[i].end);
    }
}

fn rewrite_display(sp: &mut Splice, msg: &Message, r: Range<usize>, quoted: &str) {
    let b: &[u8] = &msg.buf;
    let Some(na) = msg.str(r.clone()).and_then(|s| NameAddr::parse(s).ok()) else {
        return;
    };
    match (na.display_raw, na.bracketed) {
        (Some(d), _) => {
            let o = off(b, d);
            // Keep the separation from `<` that an unquoted token display may have relied on.
            sp.replace(o..o + d.len(), quoted);
        }
        (None, true) => {
            if let Some(lt) = b[r.clone()].iter().position(|&c| c == b'<') {
                sp.insert(r.start + lt, format!("{quoted} "));
            }
        }
        (None, false) => {
            let o = off(b, na.uri.raw);
            sp.insert(o, format!("{quoted} <"));
            sp.insert(o + na.uri.raw.len(), ">");
        }
    }
}

/// Make Content-Length right for a body of `len` bytes.
fn fix_content_length(sp: &mut Splice, msg: &Message, len: usize, changed: bool) {
    match msg.header(Hdr::ContentLength) {
        Some(h) if changed => sp.replace(h.value.clone(), len.to_string()),
        Some(_) => {}
        None => sp.insert(msg.head_end, format!("Content-Length: {len}\r\n")),
    }
    if msg.body.start == msg.head_end {
        // A datagram without the blank line: supply it.
        sp.insert(msg.head_end, "\r\n");
    }
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

fn put_line(out: &mut BytesMut, line: &[u8]) {
    out.put_slice(line);
    if !line.ends_with(b"\n") {
        out.put_slice(b"\r\n");
    }
}

/// A response built from a request: all Via in order, From, To (+ tag), Call-ID, CSeq.
pub(crate) fn build_response(
    req: &Message,
    code: u16,
    phrase: &str,
    extra: &[String],
    to_tag: Option<&str>,
) -> Bytes {
    let mut out = BytesMut::with_capacity(512);
    let _ = write!(Adapter(&mut out), "SIP/2.0 {code} {phrase}\r\n");
    let b: &[u8] = &req.buf;
    let mut seen = [false; 4];
    for h in &req.headers {
        // Singletons are copied once, even from a request that repeats them (RFC 4475 multi01).
        let slot = match h.kind {
            Hdr::From => Some(0),
            Hdr::To => Some(1),
            Hdr::CallId => Some(2),
            Hdr::CSeq => Some(3),
            _ => None,
        };
        if let Some(i) = slot {
            if std::mem::replace(&mut seen[i], true) {
                continue;
            }
        }
        match h.kind {
            Hdr::Via | Hdr::From | Hdr::CallId | Hdr::CSeq => {
                put_line(&mut out, &b[h.line.clone()])
            }
            Hdr::To => {
                // The tag was located while checking the message; parse only otherwise.
                let has_tag = req.to_tag().is_some()
                    || (req.problem.is_some() && req.to().is_some_and(|t| t.tag().is_some()));
                match to_tag {
                    Some(tag) if !has_tag && code > 100 => {
                        out.put_slice(&b[h.line.start..h.value.end]);
                        let _ = write!(Adapter(&mut out), ";tag={tag}");
                        put_line(&mut out, &b[h.value.end..h.line.end]);
                    }
                    _ => put_line(&mut out, &b[h.line.clone()]),
                }
            }
            _ => {}
        }
    }
    for e in extra {
        let e = e.trim_end_matches(['\r', '\n']);
        if !e.is_empty() && !e.contains(['\r', '\n']) {
            out.put_slice(e.as_bytes());
            out.put_slice(b"\r\n");
        }
    }
    out.put_slice(b"Content-Length: 0\r\n\r\n");
    out.freeze()
}

/// ACK (for a non-2xx) or CANCEL for a request we forwarded (RFC 3261 17.1.1.3, 9.1).
fn build_in_tx_request(fwd: &Message, method: &str, to_line: Option<&[u8]>) -> Bytes {
    let b: &[u8] = &fwd.buf;
    let mut out = BytesMut::with_capacity(512);
    let _ = write!(
        Adapter(&mut out),
        "{method} {} SIP/2.0\r\n",
        fwd.request_uri_str().unwrap_or("")
    );
    if let Some(h) = fwd.header(Hdr::Via) {
        put_line(&mut out, &b[h.line.clone()]);
    }
    for h in &fwd.headers {
        match h.kind {
            Hdr::Route | Hdr::From | Hdr::CallId => put_line(&mut out, &b[h.line.clone()]),
            Hdr::To => put_line(&mut out, to_line.unwrap_or(&b[h.line.clone()])),
            _ => {}
        }
    }
    let num = fwd.cseq().map(|c| c.0).unwrap_or(0);
    let _ = write!(
        Adapter(&mut out),
        "CSeq: {num} {method}\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    );
    out.freeze()
}

struct Adapter<'a>(&'a mut BytesMut);

impl std::fmt::Write for Adapter<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.put_slice(s.as_bytes());
        Ok(())
    }
}
