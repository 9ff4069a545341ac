//! # scamguard
//!
//! A scam-call screening agent for SIP networks. For every new inbound call it works out who is
//! really calling, checks that caller against shared blocklists and other signals, and then
//! blocks the call, warns the callee, or passes it through untouched.
//!
//! # Layout
//!
//! | module | what it is for | what it knows nothing of |
//! | --- | --- | --- |
//! | [`screening`] | pure decisions: numbers, the compiled rule index, signals, verdicts | sockets, SIP, files, tokio |
//! | [`lists`] | list entries: file formats, loading, reload; publishes rule snapshots | SIP, sockets |
//! | [`sip`] | the wire: framing, message scanning, transactions, forwarding, responses | blocklists, verdicts |
//! | [`media`] | RTP: SDP rewrite, relay, announcement playback | SIP transactions, blocklists |
//! | [`api`] | the admin HTTP server | SIP |
//! | [`certs`] | STIR certificates: x5u fetch with a timeout, trust anchors, cache | PASSporTs, SIP |
//! | [`tls`] | PEM files and folders into rustls server and client configs (`ring`) | HTTP, STIR, SIP |
//! | [`metrics`] | counters and their Prometheus rendering | everything else |
//! | [`config`] | the typed config file, assembled from each module's own section | behaviour |
//! | [`app`] | the composition root: the only module that knows every other one | |
//!
//! Arrows: `app -> sip, media, api, lists, screening, certs, metrics, config`; `api -> lists,
//! screening, metrics, tls`; `lists -> screening`; `certs -> screening, metrics, tls`; `screening ->
//! nothing`; `sip, media -> metrics`.

// Functions stay short enough to read in one screen (clippy.toml sets the threshold); table
// tests are exempt, being tables.
#![cfg_attr(not(test), warn(clippy::too_many_lines))]

pub mod api;
pub mod app;
pub mod certs;
pub mod lists;
pub mod media;
pub mod metrics;
pub mod screening;
pub mod sip;
pub mod tls;
