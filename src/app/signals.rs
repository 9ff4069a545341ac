//! The `[peers]` section, and the wall clock behind the instants the SIP layer hands in.
//!
//! The signals themselves live in `screening`; their state sits in the engine, built by
//! [`super::engine::build`].

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use arc_swap::ArcSwap;

use serde::Deserialize;

/// The `[peers]` section: which source addresses are international gateways (a domestic caller
/// id arriving there is spoofed in the countries that enforce it).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PeersConfig {
    pub international_gateways: Vec<IpAddr>,
}

impl PeersConfig {
    /// Every problem with the section, each naming the setting and what was expected.
    pub fn validate(&self) -> Vec<String> {
        self.international_gateways
            .iter()
            .filter(|ip| ip.is_unspecified())
            .map(|ip| {
                format!(
                    "peers.international_gateways: {ip} is not a peer's address; expected the source IP of a gateway"
                )
            })
            .collect()
    }
}

/// Unix time in milliseconds: the `now` handed to the engine and the signals' state.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Unix time for an [`Instant`] the SIP layer handed in, without reading the wall clock per
/// call: an anchor pair, taken again every few seconds by [`Clock::reanchor`] so that a step of
/// the system clock (NTP) is followed within that time.
pub struct Clock {
    anchor: ArcSwap<(Instant, u64)>,
}

impl Default for Clock {
    fn default() -> Self {
        Clock {
            anchor: ArcSwap::from_pointee((Instant::now(), now_ms())),
        }
    }
}

impl Clock {
    pub fn unix_ms(&self, at: Instant) -> u64 {
        let a = self.anchor.load();
        let (base, ms) = **a;
        if at >= base {
            ms.saturating_add(at.duration_since(base).as_millis() as u64)
        } else {
            ms.saturating_sub(base.duration_since(at).as_millis() as u64)
        }
    }

    pub fn reanchor(&self) {
        self.anchor.store(Arc::new((Instant::now(), now_ms())));
    }
}
