//! The `[peers]` section, and the clock the app reads once per event for the signals' state.
//!
//! The signals themselves live in `screening`; their state sits in the engine, built by
//! [`super::engine::build`].

use std::net::IpAddr;
use std::time::SystemTime;

use serde::Deserialize;

/// The `[peers]` section: which source addresses are international gateways (a domestic caller
/// id arriving there is spoofed in the countries that enforce it).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PeersConfig {
    pub international_gateways: Vec<IpAddr>,
}

/// Unix time in milliseconds: the `now` handed to the engine and the signals' state.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
