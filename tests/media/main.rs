//! Media anchoring and the announcement: the media engine over real UDP (`media_relay`), nothing
//! left behind after hundreds of sessions (`media_leak`), the prompt heard through the whole
//! agent over SIP (`announce_sip`), the callback warning a protected subscriber hears before a
//! listed number rings (`callback`), and the digit a suspect caller must press (`challenge`).
//! One test binary: its tests run in parallel threads of one process, on port ranges kept apart
//! (fixed ones in `media_relay` and `media_leak`, the others from `support::free_port_range`);
//! the descriptor count of `media_leak` runs in a process of its own.

#[path = "../support/mod.rs"]
mod support;

mod announce_sip;
mod callback;
mod challenge;
mod media_leak;
mod media_relay;
