//! The client transaction (RFC 3261 17.1): what we hold for a request we forwarded, so that
//! it is retransmitted over UDP (Timers A and E), given up on (Timers B, F and C), cancelled
//! when the caller cancels, and its responses are matched, filtered (100 Trying and
//! retransmissions stop here) and told apart as provisional or first final. The ACK of a non-2xx
//! final response and the CANCEL are built here from the request we sent. A request to a name
//! with several addresses (SRV targets) moves to the next one when the one tried is refused or
//! says nothing at all (RFC 3263 4.3).
//!
//! Knows nothing of what the response means for the call or where it goes upstream: it says
//! what to relay ([`Next`]) and the core does the rest.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use super::super::hook::{CallEvent, SdpDirection};
use super::super::msg::{Hdr, Message};
use super::super::response::{put_line, Adapter};
use super::super::Transport;
use super::server_tx::SState;
use super::{Output, Peer, Proxy, Timed};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CKind {
    Invite,
    NonInvite,
    Cancel,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CState {
    Calling,
    Proceeding,
    Completed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Cancel {
    No,
    /// The caller cancelled before the callee's first provisional response: RFC 3261 9.1
    /// forbids the CANCEL until then.
    Pending,
    Sent,
}

pub(super) struct ClientTx {
    pub(super) kind: CKind,
    pub(super) state: CState,
    /// The server transaction the request came in on (none for a CANCEL we originate).
    pub(super) server: Option<String>,
    pub(super) dest: Peer,
    /// The forwarded request bytes (retransmissions, ACK and CANCEL are built from it).
    pub(super) request: Bytes,
    pub(super) retrans: Option<(Instant, Duration)>,
    pub(super) deadline: Instant,
    pub(super) cancel: Cancel,
    pub(super) call_id: String,
    /// The initial INVITE of a call (events are reported for it).
    pub(super) initial: bool,
    pub(super) anchor: bool,
    /// Direction of the request; responses flow the other way.
    pub(super) dir: SdpDirection,
    /// Every address of the name the request went to, `dest` among them, and how many of
    /// them have been tried.
    pub(super) alt: Option<Arc<[Peer]>>,
    pub(super) tried: usize,
    /// Timer B/F's deadline, when a shorter one waits for a first response to fail over.
    pub(super) giveup: Instant,
}

/// What to do with a response once its client transaction has seen it.
pub(super) enum Next {
    /// Pass it upstream.
    Relay(Relay),
    /// No transaction of ours (a 2xx retransmission, a stateless request's response): route it
    /// by the next Via.
    Stateless,
    /// Absorbed here (100 Trying, a retransmitted final response, a CANCEL's response).
    Done,
}

/// A response to relay, and what the core needs to know to do it.
pub(super) struct Relay {
    pub(super) server: Option<String>,
    pub(super) anchor: bool,
    /// The response's direction (the opposite of the request's).
    pub(super) dir: SdpDirection,
    pub(super) call: String,
    pub(super) initial: bool,
    /// The transaction's first final response (later ones are retransmissions or forks).
    pub(super) first_final: bool,
}

/// Requests to send because of a response, taken out while the transaction is locked and
/// sent after.
#[derive(Default)]
struct Effects {
    /// ACK a non-2xx final response to this INVITE, sent to this peer.
    ack: Option<(Bytes, Peer)>,
    /// Send the CANCEL held back until the first provisional response.
    cancel: Option<(Bytes, Peer)>,
    /// A 2xx ended the transaction: remove it.
    answered: bool,
}

impl ClientTx {
    /// A transaction for `request`, about to be sent to `dest`: retransmissions armed over UDP,
    /// the 64*T1 deadline of Timers B and F.
    pub(super) fn new(
        kind: CKind,
        dest: Peer,
        request: Bytes,
        now: Instant,
        t1: Duration,
    ) -> ClientTx {
        ClientTx {
            kind,
            state: CState::Calling,
            server: None,
            dest,
            request,
            retrans: (dest.transport == Transport::Udp).then(|| (now + t1, t1)),
            deadline: now + t1 * 64,
            cancel: Cancel::No,
            call_id: String::new(),
            initial: false,
            anchor: false,
            dir: SdpDirection::FromCaller,
            alt: None,
            tried: 1,
            giveup: now + t1 * 64,
        }
    }

    /// The addresses to fail over to (all of the name's, the first being `dest`): until the
    /// first response, wait at most `failover_ms` before trying the next.
    pub(super) fn with_alternatives(
        mut self,
        alt: Option<Arc<[Peer]>>,
        now: Instant,
        failover_ms: u64,
    ) -> ClientTx {
        if alt.as_ref().is_some_and(|a| a.len() > 1) {
            self.deadline = self
                .deadline
                .min(now + Duration::from_millis(failover_ms.max(1)));
            self.alt = alt;
        }
        self
    }

    /// Move to the next address, when there is one and nothing has answered yet: the request
    /// is sent there afresh (same bytes: the addresses of one SRV set share a transport).
    fn next_target(&mut self, now: Instant, t1: Duration, failover_ms: u64) -> Option<Peer> {
        if self.state != CState::Calling || self.kind == CKind::Cancel {
            return None;
        }
        let next = *self.alt.as_ref()?.get(self.tried)?;
        self.tried += 1;
        self.dest = next;
        self.retrans = (next.transport == Transport::Udp).then(|| (now + t1, t1));
        self.giveup = now + t1 * 64;
        let last = self.alt.as_ref().is_some_and(|a| self.tried >= a.len());
        self.deadline = if last {
            self.giveup
        } else {
            self.giveup
                .min(now + Duration::from_millis(failover_ms.max(1)))
        };
        Some(next)
    }

    /// Timer A/E, like [`super::server_tx::ServerTx::on_timer`].
    pub(super) fn on_timer(
        &mut self,
        armed: Instant,
        now: Instant,
        t2: Duration,
        out: &mut Vec<Output>,
    ) -> Option<Instant> {
        let (at, iv) = self.retrans?;
        if at != armed {
            return None;
        }
        out.push(Output {
            to: self.dest,
            data: self.request.clone(),
        });
        let iv = if self.kind == CKind::Invite {
            iv * 2
        } else {
            (iv * 2).min(t2)
        };
        self.retrans = Some((now + iv, iv));
        Some(now + iv)
    }

    fn relay(&self, first_final: bool) -> Next {
        Next::Relay(Relay {
            server: self.server.clone(),
            anchor: self.anchor,
            dir: match self.dir {
                SdpDirection::FromCaller => SdpDirection::FromCallee,
                SdpDirection::FromCallee => SdpDirection::FromCaller,
            },
            call: self.call_id.clone(),
            initial: self.initial,
            first_final,
        })
    }

    /// Advance the state machine by a response with status `code`.
    fn receive(
        &mut self,
        code: u16,
        now: Instant,
        t4: Duration,
        timer_c: Duration,
    ) -> (Next, Effects) {
        let mut fx = Effects::default();
        let next = match self.kind {
            CKind::Cancel => {
                if code >= 200 && self.state != CState::Completed {
                    self.state = CState::Completed;
                    self.retrans = None;
                    self.deadline = now + t4;
                }
                Next::Done
            }
            CKind::Invite if code < 200 => self.invite_provisional(code, now, timer_c, &mut fx),
            CKind::Invite if code < 300 => {
                // Answered: the entry goes now. All that RFC 6026's Accepted state would do is
                // pass 2xx retransmissions on, and a 2xx without an entry is relayed
                // statelessly by its next Via just the same; keeping it 64*T1 cost an entry
                // per call of the last 32 s.
                fx.answered = true;
                self.retrans = None;
                self.relay(true)
            }
            CKind::Invite => {
                fx.ack = Some((self.request.clone(), self.dest));
                self.invite_failed(now)
            }
            CKind::NonInvite => self.non_invite_response(code, now, t4),
        };
        (next, fx)
    }

    fn invite_provisional(
        &mut self,
        code: u16,
        now: Instant,
        timer_c: Duration,
        fx: &mut Effects,
    ) -> Next {
        if self.state == CState::Calling {
            self.state = CState::Proceeding;
            self.retrans = None;
        }
        if self.state == CState::Proceeding {
            self.deadline = now + timer_c;
            if self.cancel == Cancel::Pending {
                self.cancel = Cancel::Sent;
                fx.cancel = Some((self.request.clone(), self.dest));
            }
        }
        if code == 100 || self.state != CState::Proceeding {
            Next::Done
        } else {
            self.relay(false)
        }
    }

    /// A non-2xx final response to an INVITE (ACKed by the caller of this, every time).
    fn invite_failed(&mut self, now: Instant) -> Next {
        if self.state == CState::Completed {
            return Next::Done;
        }
        self.state = CState::Completed;
        self.retrans = None;
        let udp = self.dest.transport == Transport::Udp;
        // Timer D: absorb retransmissions of the final response for 32 s over UDP.
        self.deadline = if udp {
            now + Duration::from_secs(32)
        } else {
            now
        };
        self.relay(true)
    }

    fn non_invite_response(&mut self, code: u16, now: Instant, t4: Duration) -> Next {
        if self.state == CState::Completed {
            Next::Done
        } else if code < 200 {
            self.state = CState::Proceeding;
            // Answered: no failover any more, Timer F's full time.
            self.deadline = self.giveup;
            if code == 100 {
                Next::Done
            } else {
                self.relay(false)
            }
        } else {
            self.state = CState::Completed;
            self.retrans = None;
            let udp = self.dest.transport == Transport::Udp;
            self.deadline = if udp { now + t4 } else { now };
            self.relay(true)
        }
    }
}

impl Proxy {
    pub(super) fn add_client(&self, key: String, tx: ClientTx) {
        if let Some((at, _)) = tx.retrans {
            self.arm(at, Timed::Client(key.clone()));
        }
        if self.clients.insert(key, tx).is_none() {
            self.stats.transactions.inc();
        }
    }

    /// Send the request of `ckey` to its next address (RFC 3263 4.3); false when it has none
    /// or has had a response.
    pub(super) fn fail_over(&self, ckey: &str, now: Instant, out: &mut Vec<Output>) -> bool {
        let t1 = self.cfg.t1();
        let Some((next, data, retrans, initial, call)) =
            self.clients.get_mut(ckey).and_then(|mut c| {
                let next = c.next_target(now, t1, self.cfg.dns.failover_ms)?;
                Some((
                    next,
                    c.request.clone(),
                    c.retrans,
                    c.initial,
                    c.call_id.clone(),
                ))
            })
        else {
            return false;
        };
        self.stats.dns_failovers.inc();
        if let Some((at, _)) = retrans {
            self.arm(at, Timed::Client(ckey.to_owned()));
        }
        if initial {
            if let Some(mut c) = self.calls.get_mut(&call) {
                c.downstream = next;
            }
        }
        out.push(Output { to: next, data });
        true
    }

    /// The transport could not deliver `data` (a refused or failed TCP connection): the request
    /// it was goes to its next address, if it has one. Anything else is left to its timers.
    pub fn unreachable(&self, data: Bytes, now: Instant) -> Vec<Output> {
        let mut out = Vec::new();
        let Ok(msg) = Message::parse(data, &self.limits, false) else {
            return out;
        };
        let (Some(via), Ok(method)) = (msg.top_via(), std::str::from_utf8(msg.method())) else {
            return out;
        };
        if !msg.is_request() || !self.me.via_is_ours(&via) {
            return out;
        }
        let ckey = format!("{}|{method}", via.branch.unwrap_or(""));
        self.fail_over(&ckey, now, &mut out);
        for o in &out {
            self.stats.sent(o.to.transport);
        }
        out
    }

    pub(super) fn remove_client(&self, key: &str) -> Option<ClientTx> {
        let c = self.clients.remove(key).map(|(_, c)| c);
        if c.is_some() {
            self.stats.transactions.dec();
        }
        c
    }

    /// Feed a response to the client transaction `ckey`: sends what it calls for (ACK, a
    /// held-back CANCEL) and says what to do with the response itself.
    pub(super) fn client_response(
        &self,
        ckey: &str,
        msg: &Message,
        code: u16,
        now: Instant,
        out: &mut Vec<Output>,
    ) -> Next {
        let timer_c = Duration::from_secs(self.cfg.timer_c_secs);
        let (next, fx) = match self.clients.get_mut(ckey) {
            None => return Next::Stateless,
            Some(mut c) => c.receive(code, now, self.cfg.t4(), timer_c),
        };
        if fx.answered {
            self.remove_client(ckey);
        }
        if let Some((req, dest)) = fx.ack {
            if let Ok(inv) = Message::parse(req, &self.limits, true) {
                let to_line = msg.header(Hdr::To).map(|h| msg.bytes(h.line.clone()));
                out.push(Output {
                    to: dest,
                    data: build_in_tx_request(&inv, "ACK", to_line),
                });
            }
        }
        if let Some((req, dest)) = fx.cancel {
            self.send_cancel(&req, dest, now, out);
        }
        next
    }

    /// The caller cancelled the INVITE forwarded on `ckey`: CANCEL it downstream now, or once
    /// the callee has sent a provisional response.
    pub(super) fn cancel_client(
        &self,
        ckey: &str,
        call_id: &str,
        now: Instant,
        out: &mut Vec<Output>,
    ) {
        let mut send = None;
        if let Some(mut c) = self.clients.get_mut(ckey) {
            if c.cancel == Cancel::No {
                if c.state == CState::Proceeding {
                    c.cancel = Cancel::Sent;
                    send = Some((c.request.clone(), c.dest));
                } else {
                    c.cancel = Cancel::Pending;
                }
                self.event(call_id, CallEvent::Cancelled, false, now);
            }
        }
        if let Some((req, dest)) = send {
            self.send_cancel(&req, dest, now, out);
        }
    }

    /// CANCEL the INVITE we forwarded as `fwd_invite`, on a client transaction of its own.
    pub(super) fn send_cancel(
        &self,
        fwd_invite: &Bytes,
        dest: Peer,
        now: Instant,
        out: &mut Vec<Output>,
    ) {
        let Ok(inv) = Message::parse(fwd_invite.clone(), &self.limits, true) else {
            return;
        };
        let Some(branch) = inv.top_via().and_then(|v| v.branch.map(str::to_owned)) else {
            return;
        };
        let data = build_in_tx_request(&inv, "CANCEL", None);
        let tx = ClientTx::new(CKind::Cancel, dest, data.clone(), now, self.cfg.t1());
        self.add_client(format!("{branch}|CANCEL"), tx);
        out.push(Output { to: dest, data });
    }

    /// A client transaction past its deadline while still waiting for a final response (Timer
    /// B, F or C): give up on the branch and answer upstream in its place.
    pub(super) fn client_timed_out(&self, c: ClientTx, now: Instant, out: &mut Vec<Output>) {
        self.stats.timeouts.inc();
        if c.kind == CKind::Invite && c.state == CState::Proceeding && c.cancel == Cancel::No {
            // Timer C: give up on the branch.
            self.send_cancel(&c.request, c.dest, now, out);
        }
        let Some(sk) = c.server else { return };
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
                self.event(&c.call_id, CallEvent::TimedOut, true, now);
            } else {
                // Cancelled: reported when the CANCEL came.
                self.forget_call(&c.call_id);
            }
        }
    }
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
