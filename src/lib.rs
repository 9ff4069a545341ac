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
//! | [`screening`] | pure decisions: numbers, the compiled rule index, signals, typed evidence, the scoring fold, [`screening::Engine::decide`] | sockets, SIP, files, clocks, tokio, every other module |
//! | [`lists`] | list entries: file formats, the SQLite store (with disputes of blocked callers), the live overlay, reload, callers' reports (the report desk), signed feeds (it owns the feeds' HTTP client), list edits as a fleet shares them (`lists::edits`) | SIP, media, the API |
//! | [`sip`] | the wire: framing, scanning, transactions, forwarding, responses, behind one [`sip::Hook`] | lists, verdicts, media |
//! | [`media`] | RTP: SDP rewrite, relay, announcement playback, early media, RFC 4733 digits | SIP transactions, lists, verdicts |
//! | [`api`] | the admin HTTP server with its web console (`api::console`), and the public redress form on a listener of its own; [`api::route`] answers a request without a socket | SIP, media |
//! | [`certs`] | STIR certificates: x5u fetch with a timeout, trust anchors, cache, and a fleet's shared store of chains behind a trait (`certs::SharedCerts`) | PASSporTs, SIP, Redis |
//! | [`tls`] | PEM files and folders into rustls server and client configs (`ring`) | HTTP, STIR, SIP |
//! | [`metrics`] | counters and their Prometheus rendering | everything else |
//! | [`app`] | wiring: the config, start and stop, the engine builder, the `Hook` adapter, verdict to SIP answer (calls held for an early prompt: callback warnings, challenges), the decision log (and how long it keeps outbound destinations, `app::retention`), the fleet's Redis tasks (`app::fleet`: shared counts and calls in progress, PASSporT claims, the list edit stream, reports, the certificate store; standalone or Redis Cluster) | |
//!
//! Arrows: `main -> app -> sip, media, api, lists, screening, certs, metrics, tls`; `api -> lists,
//! screening, metrics, tls`; `lists -> screening, metrics`; `certs -> screening, metrics, tls`; `sip, media
//! -> metrics`; `screening -> nothing`. `.ci/arrows` checks them; `docs/design.md` walks one
//! INVITE through them.

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
