//! Held calls ([`Disposition::Hold`]): the INVITE answered with the application's provisional
//! response and early-media SDP, tracked while the application decides, then forwarded,
//! diverted or refused on its word ([`Hook::resumed`], asked on every tick), or refused 408 when
//! no word comes within Timer C. A CANCEL meanwhile is answered 487 like any other (see
//! `on_cancel`) and reported to the application.
//!
//! Knows nothing of why a call is held: the hook decides, this keeps the transaction waiting.

use std::time::{Duration, Instant};

use super::super::hook::{CallEvent, CallRef, CallTag, Disposition};
use super::super::msg::Message;
use super::super::response::build_response_with_body;
use super::server_tx::SState;
use super::{Call, Output, Peer, Proxy};

impl Proxy {
    /// Answer a new INVITE with the hold's provisional response and track the call as held.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn hold(
        &self,
        key: &str,
        msg: &Message,
        from: Peer,
        (code, phrase, headers, sdp): (u16, &str, &[String], &[u8]),
        tag: Option<CallTag>,
        now: Instant,
        out: &mut Vec<Output>,
    ) {
        let code = if (180..200).contains(&code) {
            code
        } else {
            183
        };
        let call_id = msg.call_id().unwrap_or("");
        // The To tag any final answer of ours on this transaction carries too: one early dialog.
        let to_tag = self.tag_for(key);
        let mut extra = headers.to_vec();
        let host = self.me.host_for(from.addr.ip());
        extra.push(format!("Contact: <sip:{host}:{}>", self.me.port));
        extra.push("Content-Type: application/sdp".into());
        let data = build_response_with_body(msg, code, phrase, &extra, Some(&to_tag), sdp);
        self.stats.response_sent(code);
        if let Some(up) = self.send_on_server(key, data.clone(), code, now) {
            out.push(Output { to: up, data });
        }
        if call_id.is_empty() {
            return;
        }
        let c = Call {
            anchor: false,
            dialog: false,
            caller_tag: msg.from_tag().unwrap_or("").to_owned(),
            upstream: from,
            // Nothing went downstream yet; a request in our early dialog goes where the INVITE
            // will: the next hop (or an allowed target), never a target it merely names.
            downstream: match self.route(msg, false, now) {
                Some(super::names::Routed::Go(d)) => d.peer,
                _ => from,
            },
            expires: now + Duration::from_secs(self.cfg.timer_c_secs),
            born: now,
            refreshed: None,
            session: None,
            min_se: 0,
            tag,
            restore: None,
            held: Some(key.to_owned()),
        };
        if self.calls.insert(call_id.to_owned(), c).is_none() {
            self.stats.calls.inc();
        }
    }

    /// What the hook says of held calls now.
    pub(super) fn resume_held(&self, now: Instant, out: &mut Vec<Output>) {
        for (call_id, d) in self.hook.resumed(now) {
            self.resume(&call_id, d, now, out);
        }
    }

    /// Act on the disposition of a held call: its INVITE, still waiting in its server
    /// transaction, is forwarded, diverted or answered now.
    fn resume(&self, call_id: &str, d: Disposition, now: Instant, out: &mut Vec<Output>) {
        let Some((key, upstream, downstream, tag)) = self
            .calls
            .get(call_id)
            .and_then(|c| Some((c.held.clone()?, c.upstream, c.downstream, c.tag.clone())))
        else {
            return;
        };
        let waiting = self
            .invite_server(&key)
            .filter(|(state, client, _)| *state == SState::Proceeding && client.is_none());
        let Some(msg) =
            waiting.and_then(|(_, _, req)| Message::parse(req, &self.limits, true).ok())
        else {
            self.forget_call(call_id);
            return;
        };
        let d = match d {
            Disposition::Hold { .. } => Disposition::Reject {
                code: 500,
                phrase: "Server Internal Error".into(),
                headers: Vec::new(),
            },
            d => d,
        };
        match self.apply_disposition(&key, &msg, upstream, &d, now, out) {
            Some(mut onward) => {
                onward.tag = onward.tag.or(tag);
                let path = (upstream, downstream.into());
                self.forward_request(&key, &msg, path, onward, now, out);
            }
            // Refused by the application, which knows it: nothing to report.
            None => self.forget_call(call_id),
        }
    }

    /// Calls still held at their deadline (taken out of the table by the sweep): answered 408,
    /// reported as timed out.
    pub(super) fn held_expired(
        &self,
        gone: Vec<(String, String, Option<CallTag>)>,
        now: Instant,
        out: &mut Vec<Output>,
    ) {
        for (call_id, key, tag) in gone {
            let waiting = self
                .invite_server(&key)
                .filter(|(state, client, _)| *state == SState::Proceeding && client.is_none());
            if let Some(Ok(msg)) =
                waiting.map(|(_, _, req)| Message::parse(req, &self.limits, true))
            {
                self.final_upstream(&key, &msg, 408, "Request Timeout", &[], now, out);
            }
            let call = CallRef {
                call_id: &call_id,
                tag: tag.as_ref(),
            };
            self.hook.call_event(&call, CallEvent::TimedOut, now);
        }
    }
}

#[cfg(test)]
mod tests;
