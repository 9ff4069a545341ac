//! The SIP wire: framing, message scanning, transactions, forwarding and responses.
//!
//! Knows nothing of blocklists or verdicts: it asks one [`Hook`] what to do with a new INVITE
//! and reports later facts about that call back through it.
//!
//! | file | what it is for |
//! | --- | --- |
//! | `msg` | zero-copy scanner: start line, header index, body, RFC 4475 judgement |
//! | `uri` | URIs and name-addr values |
//! | `framing` | TCP stream framing by Content-Length |
//! | `edit` | splicing edits into received bytes |
//! | `core` | the sans-IO transaction-stateful proxy ([`Proxy`]) |
//! | `hook` | the [`Hook`] trait the application implements |
//! | `transport` | UDP/TCP sockets and the timer task ([`run`]) |
//! | `config`, `stats` | the `[sip]` section and the counters |

pub mod config;
pub mod core;
pub mod edit;
pub mod framing;
pub mod hook;
pub mod msg;
pub mod stats;
pub mod transport;
pub mod uri;

pub use self::config::SipConfig;
pub use self::core::{ConnId, Output, Peer, Proxy};
pub use self::hook::{CallEvent, Decision, Hook, NewCall, SdpDirection};
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
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
        }
    }
}

#[cfg(test)]
mod core_tests;
