//! The wall clock behind the instants the SIP layer hands in, read once every few seconds
//! rather than once per call.
//!
//! Knows nothing of calls: it only turns an [`Instant`] into Unix milliseconds.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use arc_swap::ArcSwap;

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
