//! Counters of the SIP layer (messages, malformed input by kind, responses we sent by code,
//! transactions in flight, overload), rendered through [`crate::metrics::Collect`].
//!
//! Knows nothing of calls' verdicts.

use crate::metrics::{Collect, Counter, Exposition, Gauge, Histogram};

use super::conn::Refusal;
use super::flood::FloodStats;
use super::msg::Problem;
use super::Transport;

/// The methods counted by name in `sip_requests_total`; any other is `other`, so the label's
/// values stay a fixed, small set whatever a peer sends.
const METHODS: [&str; 9] = [
    "INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "REGISTER", "MESSAGE", "UPDATE", "other",
];

#[derive(Debug)]
pub struct SipStats {
    pub rx_udp: Counter,
    /// Parsed requests received, by [`METHODS`].
    requests: [Counter; METHODS.len()],
    pub rx_tcp: Counter,
    pub tx_udp: Counter,
    pub tx_tcp: Counter,
    pub rx_tls: Counter,
    pub tx_tls: Counter,
    /// TLS connections closed because the handshake did not finish within
    /// `tls_handshake_secs`, or failed (a bad or untrusted certificate, a non-TLS client).
    pub tls_handshake_failures: Counter,
    /// `sips:` requests answered 480 because their next hop is not TLS.
    pub sips_refused: Counter,
    malformed: [Counter; Problem::ALL.len()],
    /// Malformed requests answered with 400/505 and those dropped for lack of headers.
    pub malformed_answered: Counter,
    pub malformed_dropped: Counter,
    /// Responses we originated, by status code (index `code - 100`).
    responses: Vec<Counter>,
    pub transactions: Gauge,
    pub calls: Gauge,
    pub overload: Counter,
    pub hook_calls: Counter,
    /// Out-of-dialog INVITEs received, retransmissions not counted: each should end as a
    /// verdict, whatever becomes of it on the way (refused, parked, overloaded).
    pub new_invites: Counter,
    pub stray_responses: Counter,
    /// ACKs of final responses we originated, absorbed by their To tag (no transaction left).
    pub acks_absorbed: Counter,
    /// Requests with a To tag of no dialog we Record-Routed (screened as new or sent to the
    /// next hop only, or answered 481 when they came from it).
    pub unknown_dialog: Counter,
    /// Requests refused 403 because nothing they name is a target we may send to.
    pub relay_refused: Counter,
    /// REGISTERs answered 405 by `[sip] register = "refuse"`.
    pub register_refused: Counter,
    /// Responses with our Via whose second Via our branch does not vouch for: dropped.
    pub forged_responses: Counter,
    pub timeouts: Counter,
    pub tcp_connections: Gauge,
    /// Connections refused by `sip::conn`'s budgets, by [`Refusal`].
    tcp_refused: [Counter; Refusal::ALL.len()],
    /// Connections closed because a message stayed incomplete past `tcp_read_timeout_secs`.
    pub tcp_read_timeouts: Counter,
    pub send_errors: Counter,
    /// Per-source fairness (`sip::flood`).
    pub flood: FloodStats,
    /// Answered calls forgotten when a new call found the table full (the idlest first).
    pub calls_evicted: Counter,
    /// Calls forgotten at their deadline: idle, past their session interval, or never ended.
    pub calls_expired: Counter,
    /// Requests dropped for a User-Agent of `[sip] deny_user_agents`.
    pub scanners_dropped: Counter,
    /// Out-of-dialog OPTIONS answered here (never relayed, so they reveal nothing behind us).
    pub options_answered: Counter,
    /// Requests parked while their target's host name was resolved.
    pub dns_parked: Counter,
    /// Requests answered 503 at once because the bounds on names or parked requests were full.
    pub dns_refused: Counter,
    /// Requests answered 503/504 because their target's name could not be resolved in time.
    pub dns_failed: Counter,
    /// Requests sent on to the next address of their target's name (RFC 3263 4.3).
    pub dns_failovers: Counter,
    /// Time from a UDP datagram read to everything it caused sent (parse, screen, forward):
    /// the tail of this is the proxy's own share of a call's post-dial delay.
    pub udp_handle: Histogram,
    /// Time one timer tick of the core took: due retransmissions and, once a second, the
    /// sweep of expired transactions and calls, which shares the tables with the receive path.
    pub timer_tick: Histogram,
}

/// Upper bounds of the handling-time histograms, in seconds: a datagram takes tens of
/// microseconds; a stall (a lock held by the sweep, a page fault, a preempted thread) shows as
/// the milliseconds beyond.
const HANDLE_BOUNDS: &[f64] = &[
    0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1,
];

impl Default for SipStats {
    fn default() -> Self {
        SipStats {
            rx_udp: Counter::default(),
            requests: Default::default(),
            rx_tcp: Counter::default(),
            tx_udp: Counter::default(),
            tx_tcp: Counter::default(),
            rx_tls: Counter::default(),
            tx_tls: Counter::default(),
            tls_handshake_failures: Counter::default(),
            sips_refused: Counter::default(),
            malformed: Default::default(),
            malformed_answered: Counter::default(),
            malformed_dropped: Counter::default(),
            responses: (100..700).map(|_| Counter::default()).collect(),
            transactions: Gauge::default(),
            calls: Gauge::default(),
            overload: Counter::default(),
            hook_calls: Counter::default(),
            new_invites: Counter::default(),
            stray_responses: Counter::default(),
            acks_absorbed: Counter::default(),
            unknown_dialog: Counter::default(),
            relay_refused: Counter::default(),
            register_refused: Counter::default(),
            forged_responses: Counter::default(),
            timeouts: Counter::default(),
            tcp_connections: Gauge::default(),
            tcp_refused: Default::default(),
            tcp_read_timeouts: Counter::default(),
            send_errors: Counter::default(),
            flood: FloodStats::default(),
            calls_evicted: Counter::default(),
            calls_expired: Counter::default(),
            scanners_dropped: Counter::default(),
            options_answered: Counter::default(),
            dns_parked: Counter::default(),
            dns_refused: Counter::default(),
            dns_failed: Counter::default(),
            dns_failovers: Counter::default(),
            udp_handle: Histogram::new(HANDLE_BOUNDS),
            timer_tick: Histogram::new(HANDLE_BOUNDS),
        }
    }
}

impl SipStats {
    /// What the edge refused or dropped (issue 13).
    fn collect_edge(&self, out: &mut Exposition) {
        for (name, help, c) in [
            (
                "sip_acks_absorbed_total",
                "ACKs of final responses the proxy originated, absorbed by their To tag",
                &self.acks_absorbed,
            ),
            (
                "sip_unknown_dialog_total",
                "Requests with a To tag of no dialog the proxy Record-Routed",
                &self.unknown_dialog,
            ),
            (
                "sip_relay_refused_total",
                "Requests refused because they name no target the proxy may send to",
                &self.relay_refused,
            ),
            (
                "sip_register_refused_total",
                "REGISTER requests refused by policy",
                &self.register_refused,
            ),
            (
                "sip_forged_responses_total",
                "Responses dropped: their second Via is not where the request came from",
                &self.forged_responses,
            ),
            (
                "sip_tls_handshake_failures_total",
                "TLS connections closed in the handshake: failed, or not done in time",
                &self.tls_handshake_failures,
            ),
            (
                "sip_sips_refused_total",
                "sips: requests answered 480: their next hop is not TLS",
                &self.sips_refused,
            ),
            (
                "sip_tcp_read_timeouts_total",
                "TCP connections closed: a message stayed incomplete past tcp_read_timeout_secs",
                &self.tcp_read_timeouts,
            ),
            (
                "sip_calls_evicted_total",
                "Answered calls forgotten to make room for a new call, the idlest first",
                &self.calls_evicted,
            ),
            (
                "sip_calls_expired_total",
                "Calls forgotten at their deadline: idle, past their session interval, or unanswered",
                &self.calls_expired,
            ),
            (
                "sip_scanners_dropped_total",
                "Requests dropped for a User-Agent on the deny list",
                &self.scanners_dropped,
            ),
            (
                "sip_options_answered_total",
                "Out-of-dialog OPTIONS answered by the agent itself",
                &self.options_answered,
            ),
            (
                "sip_dns_parked_total",
                "Requests that waited for their target's host name to be resolved",
                &self.dns_parked,
            ),
            (
                "sip_dns_refused_total",
                "Requests answered 503 because too many names or waiting requests were held",
                &self.dns_refused,
            ),
            (
                "sip_dns_failed_total",
                "Requests answered 503 or 504 because their target's name did not resolve",
                &self.dns_failed,
            ),
            (
                "sip_dns_failovers_total",
                "Requests sent on to the next address of their target's name",
                &self.dns_failovers,
            ),
        ] {
            out.counter(name, help, &[], c.get());
        }
        for why in Refusal::ALL {
            out.counter(
                "sip_tcp_refused_total",
                "TCP connections refused: over the total, over the source's share, or over the core's budget",
                &[("reason", why.as_str())],
                self.tcp_refused[why as usize].get(),
            );
        }
    }

    /// What arrived: requests by method, malformed messages by kind and what became of them.
    fn collect_inbound(&self, out: &mut Exposition) {
        for (m, c) in METHODS.iter().zip(&self.requests) {
            out.counter(
                "sip_requests_total",
                "SIP requests received and parsed, by method",
                &[("method", m)],
                c.get(),
            );
        }
        for p in Problem::ALL {
            out.counter(
                "sip_malformed_total",
                "Malformed SIP messages by kind",
                &[("kind", p.as_str())],
                self.malformed_count(p),
            );
        }
        let h = "Malformed requests by outcome";
        out.counter(
            "sip_malformed_outcome_total",
            h,
            &[("outcome", "answered")],
            self.malformed_answered.get(),
        );
        out.counter(
            "sip_malformed_outcome_total",
            h,
            &[("outcome", "dropped")],
            self.malformed_dropped.get(),
        );
    }

    pub fn tcp_refused(&self, why: Refusal) {
        self.tcp_refused[why as usize].inc();
    }
    pub fn tcp_refused_count(&self, why: Refusal) -> u64 {
        self.tcp_refused[why as usize].get()
    }

    /// A request received and parsed (malformed ones too: what a peer sent, whatever became of
    /// it), counted by method.
    pub fn request(&self, method: &[u8]) {
        let i = METHODS
            .iter()
            .position(|m| m.as_bytes() == method)
            .unwrap_or(METHODS.len() - 1);
        self.requests[i].inc();
    }

    pub fn malformed(&self, p: Problem) {
        self.malformed[p.index()].inc();
    }
    pub fn malformed_count(&self, p: Problem) -> u64 {
        self.malformed[p.index()].get()
    }
    pub fn response_sent(&self, code: u16) {
        if let Some(c) = self.responses.get(usize::from(code).wrapping_sub(100)) {
            c.inc();
        }
    }
    pub fn responses_sent(&self, code: u16) -> u64 {
        self.responses
            .get(usize::from(code).wrapping_sub(100))
            .map_or(0, Counter::get)
    }
    pub fn received(&self, t: Transport) {
        match t {
            Transport::Udp => self.rx_udp.inc(),
            Transport::Tcp => self.rx_tcp.inc(),
            Transport::Tls => self.rx_tls.inc(),
        }
    }
    pub fn sent(&self, t: Transport) {
        match t {
            Transport::Udp => self.tx_udp.inc(),
            Transport::Tcp => self.tx_tcp.inc(),
            Transport::Tls => self.tx_tls.inc(),
        }
    }
}

impl Collect for SipStats {
    fn collect(&self, out: &mut Exposition) {
        let messages = [
            ("in", "udp", &self.rx_udp),
            ("in", "tcp", &self.rx_tcp),
            ("out", "udp", &self.tx_udp),
            ("out", "tcp", &self.tx_tcp),
            ("in", "tls", &self.rx_tls),
            ("out", "tls", &self.tx_tls),
        ];
        for (dir, transport, c) in messages {
            out.counter(
                "sip_messages_total",
                "SIP messages by direction and transport",
                &[("dir", dir), ("transport", transport)],
                c.get(),
            );
        }
        self.collect_inbound(out);
        for (i, c) in self.responses.iter().enumerate() {
            let v = c.get();
            if v > 0 {
                let code = (i + 100).to_string();
                out.counter(
                    "sip_responses_sent_total",
                    "Responses originated by the proxy, by code",
                    &[("code", &code)],
                    v,
                );
            }
        }
        out.gauge(
            "sip_transactions",
            "SIP transactions in flight",
            &[],
            self.transactions.get(),
        );
        out.gauge("sip_calls", "Calls tracked", &[], self.calls.get());
        out.histogram(
            "sip_udp_handle_seconds",
            "Time from a UDP datagram read to everything it caused sent",
            &self.udp_handle,
        );
        out.histogram(
            "sip_timer_tick_seconds",
            "Time a timer tick of the SIP core took (retransmissions, and the sweep once a second)",
            &self.timer_tick,
        );
        out.counter(
            "sip_overload_total",
            "Requests refused with 503 or dropped over a table cap",
            &[],
            self.overload.get(),
        );
        out.counter(
            "sip_hook_calls_total",
            "New calls handed to the decision hook",
            &[],
            self.hook_calls.get(),
        );
        out.counter(
            "sip_new_invites_total",
            "Out-of-dialog INVITEs received, retransmissions not counted",
            &[],
            self.new_invites.get(),
        );
        out.counter(
            "sip_stray_responses_total",
            "Responses dropped: not ours, no route back",
            &[],
            self.stray_responses.get(),
        );
        self.collect_edge(out);
        self.flood.collect(out);
        out.counter(
            "sip_timeouts_total",
            "Client transactions that timed out",
            &[],
            self.timeouts.get(),
        );
        out.gauge(
            "sip_tcp_connections",
            "Open SIP TCP connections",
            &[],
            self.tcp_connections.get(),
        );
        out.counter(
            "sip_send_errors_total",
            "Messages that could not be sent",
            &[],
            self.send_errors.get(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_labelled_counters() {
        let s = SipStats::default();
        s.received(Transport::Udp);
        s.request(b"INVITE");
        s.request(b"PUBLISH");
        s.request(b"invite");
        s.malformed(Problem::BadCSeq);
        s.response_sent(603);
        s.response_sent(42); // out of range: ignored, not a panic
        let text = crate::metrics::render(&[&s]);
        assert!(text.contains("sip_messages_total{dir=\"in\",transport=\"udp\"} 1\n"));
        assert!(text.contains("sip_malformed_total{kind=\"bad_cseq\"} 1\n"));
        // Methods are case-sensitive (RFC 3261 7.1): a lower-case one is another, unknown one.
        assert!(text.contains("sip_requests_total{method=\"INVITE\"} 1\n"));
        assert!(text.contains("sip_requests_total{method=\"other\"} 2\n"));
        assert!(text.contains("sip_requests_total{method=\"BYE\"} 0\n"));
        assert!(text.contains("sip_responses_sent_total{code=\"603\"} 1\n"));
        assert!(!text.contains("code=\"42\""));
    }
}
