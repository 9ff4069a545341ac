//! The server transaction (RFC 3261 17.2, with RFC 6026's Accepted state): what we hold for a
//! request we received, so that its retransmissions are answered from memory instead of being
//! decided and forwarded again, and the ACK of a non-2xx final response is absorbed here.
//!
//! Timer G is not run. RFC 3261 17.2.1 resends a final response to an INVITE over UDP until
//! the ACK comes, 11 times in 32 s; sent to a packet's source address, which nothing has proved
//! real, that makes every spoofed INVITE an 11-fold reflection at a victim. Here a source gets
//! one response per request it sends: a caller that lost the response retransmits its INVITE
//! (Timer A, while it has no provisional response) and that retransmission, which is what shows
//! the address is real, gets the response again. A transaction left unacknowledged is freed at
//! Timer H (64*T1) with nothing more sent.
//!
//! Knows nothing of where the request went or what the hook decided: the core and the client
//! transaction do, and report the responses that go upstream through [`Proxy::final_upstream`]
//! and [`Proxy::send_on_server`].

use std::fmt::Write as _;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use dashmap::mapref::entry::Entry;

use super::super::msg::Message;
use super::super::response::build_response;
use super::super::Transport;
use super::{Output, Peer, Proxy};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SState {
    Proceeding,
    Completed,
    Confirmed,
}

pub(super) struct ServerTx {
    invite: bool,
    pub(super) state: SState,
    upstream: Peer,
    /// The last response sent upstream (resent on a retransmitted request, and only then).
    last: Option<Bytes>,
    pub(super) deadline: Instant,
    /// The key of the client transaction the request was forwarded on.
    pub(super) client: Option<String>,
    /// The received request, to build responses we originate later (408, 487).
    pub(super) request: Bytes,
    /// The source counted for this transaction by `sip::flood` (none for the core).
    pub(super) source: Option<IpAddr>,
}

impl Proxy {
    /// The transaction a request belongs to: its top Via branch when RFC 3261-compliant, else
    /// the RFC 2543 identity. An ACK matches the INVITE it acknowledges.
    pub(super) fn server_key(msg: &Message, method: &[u8]) -> Option<String> {
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

    fn accepted_hash(&self, key: &str) -> u64 {
        self.keys.hash_one((key, 0xacce_u32))
    }

    /// Replace the server transaction `key`, just answered 2xx, by its accepted record.
    fn accept(&self, key: &str, now: Instant) {
        if let Some((_, s)) = self.servers.remove(key) {
            self.stats.transactions.dec();
            self.closed_server(&s);
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

    /// A server transaction left the table: its source holds one fewer.
    pub(super) fn closed_server(&self, s: &ServerTx) {
        if let Some(k) = s.source {
            self.sources.closed(k);
        }
    }

    pub(super) fn is_accepted(&self, key: &str) -> bool {
        !self.accepted.is_empty() && self.accepted.contains(&self.accepted_hash(key))
    }

    /// A retransmission of a request we hold a transaction for: answered from the transaction
    /// (or, for an INVITE answered 2xx, dropped), never decided again. True when absorbed.
    pub(super) fn absorb_retransmission(
        &self,
        key: &str,
        method: &[u8],
        out: &mut Vec<Output>,
    ) -> bool {
        if let Some(tx) = self.servers.get(key) {
            if let Some(last) = &tx.last {
                out.push(Output {
                    to: tx.upstream,
                    data: last.clone(),
                });
            }
            return true;
        }
        // Answered 2xx already; the 2xx retransmissions are the callee's job.
        method == b"INVITE" && self.is_accepted(key)
    }

    /// Open the server transaction for a new request. False when another worker opened it
    /// first: that worker handles the request, and nothing is sent from here.
    pub(super) fn open_server(
        &self,
        key: &str,
        msg: &Message,
        from: Peer,
        now: Instant,
        initial: bool,
        out: &mut Vec<Output>,
    ) -> bool {
        let invite = msg.method() == b"INVITE";
        let mut tx = ServerTx {
            invite,
            state: SState::Proceeding,
            upstream: from,
            last: None,
            deadline: now + self.server_lifetime(invite),
            client: None,
            request: msg.buf.clone(),
            source: None,
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
        match self.servers.entry(key.to_owned()) {
            Entry::Occupied(_) => {
                out.clear();
                false
            }
            Entry::Vacant(v) => {
                tx.source = self.sources.opened(from.addr.ip());
                v.insert(tx);
                self.stats.transactions.inc();
                true
            }
        }
    }

    /// The 100 Trying for a new call the hook let through (held back until the decision, see
    /// [`Proxy::open_server`]).
    pub(super) fn send_trying(&self, key: &str, msg: &Message, to: Peer, out: &mut Vec<Output>) {
        let trying = build_response(msg, 100, "Trying", &[], None);
        self.stats.response_sent(100);
        if let Some(mut s) = self.servers.get_mut(key) {
            if s.last.is_none() {
                s.last = Some(trying.clone());
            }
        }
        out.push(Output { to, data: trying });
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
    pub(super) fn final_upstream(
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
        let accepted = self.complete_server(&mut s, data.clone(), code, now);
        out.push(Output {
            to: s.upstream,
            data,
        });
        drop(s);
        if accepted {
            self.accept(key, now);
        }
    }

    /// Record a relayed response on the server transaction `key`; where to send it, or `None`
    /// when the transaction is gone.
    pub(super) fn send_on_server(
        &self,
        key: &str,
        data: Bytes,
        code: u16,
        now: Instant,
    ) -> Option<Peer> {
        let mut s = self.servers.get_mut(key)?;
        let accepted = self.complete_server(&mut s, data, code, now);
        let up = s.upstream;
        drop(s);
        if accepted {
            self.accept(key, now);
        }
        Some(up)
    }

    /// Record a response sent on a server transaction. Returns true when an INVITE was
    /// answered 2xx: the caller then replaces the entry by [`Proxy::accept`].
    fn complete_server(&self, s: &mut ServerTx, data: Bytes, code: u16, now: Instant) -> bool {
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
        s.state = SState::Completed;
        s.last = Some(data);
        // Timer H (INVITE) or J (non-INVITE over UDP): absorb retransmissions and the ACK, then
        // free. No Timer G (see the module comment).
        s.deadline = if s.invite || udp {
            now + self.cfg.t1() * 64
        } else {
            now
        };
        false
    }

    /// The ACK of a non-2xx final response we sent: it ends Timer G and goes no further. True
    /// when the ACK belongs to a transaction of ours (absorbed); false for the ACK of a 2xx,
    /// which travels end to end.
    pub(super) fn ack_server(&self, key: &str, now: Instant) -> bool {
        let Some(mut s) = self.servers.get_mut(key) else {
            return false;
        };
        if s.state == SState::Completed {
            s.state = SState::Confirmed;
            let udp = s.upstream.transport == Transport::Udp;
            s.deadline = if udp { now + self.cfg.t4() } else { now };
        }
        true
    }

    /// The INVITE transaction a CANCEL names: its state, its client transaction and the
    /// received INVITE.
    pub(super) fn invite_server(&self, key: &str) -> Option<(SState, Option<String>, Bytes)> {
        self.servers
            .get(key)
            .filter(|s| s.invite)
            .map(|s| (s.state, s.client.clone(), s.request.clone()))
    }
}
