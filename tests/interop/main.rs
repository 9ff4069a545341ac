//! scamguard among real SIP software on loopback, every peer a Debian package the test starts
//! itself and stops by its PID: a `dnsmasq` of its own serving the test domain's NAPTR, SRV and
//! A records (`support::dns`), Kamailio as the enterprise's registrar and proxy behind the agent
//! (`kamailio`), and baresip as the user agents (`baresip`). The whole agent (`app::start`, the
//! shipped config with a test list) sits in front of Kamailio, its next hop given by name and
//! found by DNS, and speaks SIP over TLS to the callers with a certificate of a test CA
//! (`support::pki`) their CA file trusts.
//!
//! What it shows (`interop_tls`): two real user agents register with Kamailio by name, one of
//! them through the agent over TLS; a call over TLS through the agent reaches the registered
//! callee, is answered, carries audio both ways, and ends by a BYE from either side (the
//! callee's reaches the caller on the caller's own TLS connection); a listed caller gets its 603
//! over TLS and never rings the callee.
//!
//! Needs `kamailio`, `baresip-core` and `dnsmasq-base` (`.ci/run` and `scripts/test` install
//! them): without one the test fails, it never skips. Nothing is timed: every step waits for an
//! event it can observe (a registration in Kamailio's table, a baresip event) with a deadline.

#[path = "../support/mod.rs"]
mod support;

mod baresip;
mod interop_tls;
mod kamailio;
