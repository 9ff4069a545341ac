//! The SIP wire: framing, message scanning, transactions, forwarding and responses.
//!
//! Knows nothing of blocklists or verdicts: it asks one [`Hook`] what to do with a new INVITE
//! and reports later facts about that call back through it.
//!
//! | file | what it is for |
//! | --- | --- |
//! | `grammar` | RFC 3261 character classes, tokens, quoted strings, hosts (below `msg` and `uri`) |
//! | `msg` | zero-copy scanner: start line, header index, body, RFC 4475 judgement |
//! | `uri` | URIs and name-addr values |
//! | `framing` | TCP stream framing by Content-Length |
//! | `edit` | splicing edits into received bytes |
//! | `forward` | the edits a forwarded request or relayed response gets (Via, Record-Route...) |
//! | `response` | responses we originate, built from the request they answer |
//! | `core` | the sans-IO transaction-stateful proxy ([`Proxy`]); `core::server_tx`, `core::client_tx` hold the transaction state machines, `core::route` the next hops |
//! | `hook` | the [`Hook`] trait the application implements |
//! | `scanners` | the User-Agent deny list: scanning tools dropped unanswered |
//! | `conn` | the stream connections' budgets: the core's own, a total, a share per source |
//! | `transport` | UDP/TCP/TLS sockets and the timer task ([`run`]) |
//! | `tls` | the `[sip]` TLS settings read into rustls configs, and the names a peer's certificate proves |
//! | `flood` | per-source fairness: messages per source per window, bans, transaction budgets (`[sip.flood]`) |
//! | `capture` | HEP3 copies of every message for a Homer collector (`[hep]`): a bounded queue and a sender thread |
//! | `dns` | RFC 3263 resolution of host names for the core (NAPTR, SRV, A/AAAA), and `[dns]` |
//! | `config`, `stats` | the `[sip]` section and the counters |
//!
//! Wiring (what the composition root does):
//!
//! ```no_run
//! # use std::sync::Arc;
//! # use std::time::Instant;
//! # use scamguard::sip::{self, CallEvent, CallRef, Disposition, Hook, NewCall, SdpDirection, SdpKind};
//! # struct App;
//! # impl Hook for App {
//! #     fn new_call(&self, _: &NewCall<'_>, _: Instant) -> Disposition { Disposition::pass() }
//! #     fn call_event(&self, _: &CallRef<'_>, _: CallEvent, _: Instant) {}
//! #     fn rewrite_sdp(&self, _: &CallRef<'_>, _: SdpDirection, _: SdpKind, _: &[u8], _: Instant)
//! #         -> Option<Vec<u8>> { None }
//! # }
//! # async fn wire(cfg: sip::SipConfig) -> Result<(), Box<dyn std::error::Error>> {
//! // Once, when the config is loaded; nothing below checks it again.
//! let problems = cfg.validate();
//! if !problems.is_empty() {
//!     return Err(problems.join("; ").into());
//! }
//! let udp = tokio::net::UdpSocket::bind(cfg.listen.first()).await?;
//! let tcp = tokio::net::TcpListener::bind(udp.local_addr()?).await?;
//! let stats = Arc::new(sip::SipStats::default()); // also register it with the metrics endpoint
//! let proxy = Arc::new(sip::Proxy::new(cfg, udp.local_addr()?, Arc::new(App), stats));
//! let (stop, stopped) = tokio::sync::watch::channel(false);
//! tokio::spawn(sip::run(udp, tcp, proxy, None, stopped));
//! // ... later: stop.send(true) ends every task.
//! # drop(stop); Ok(()) }
//! ```

pub mod caller;
pub mod capture;
pub mod config;
pub mod conn;
pub mod core;
pub mod dns;
pub mod edit;
pub mod flood;
mod forward;
pub mod framing;
mod grammar;
pub mod hook;
pub mod msg;
mod response;
pub mod scanners;
pub mod stats;
pub mod tls;
pub mod transport;
pub mod uri;

pub use self::capture::{Capture, HepConfig};
pub use self::config::{Hop, SipConfig};
pub use self::core::{ConnId, Name, Output, Peer, Proxy, Resolved};
pub use self::dns::DnsConfig;
pub use self::hook::{
    CallEvent, CallRef, CallTag, Disposition, Hook, NewCall, SdpDirection, SdpKind,
};
pub use self::stats::SipStats;
pub use self::transport::run;

use serde::Deserialize;

/// The transport a message arrived on or leaves by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    #[default]
    Udp,
    Tcp,
    /// TLS over TCP (RFC 3261 26.2, `sips:` and `transport=tls`).
    Tls,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
            Transport::Tls => "TLS",
        }
    }

    /// A stream (TCP or TLS): framed by Content-Length, reliable, on a connection.
    pub fn is_stream(self) -> bool {
        self != Transport::Udp
    }
}

#[cfg(test)]
mod core_tests;
