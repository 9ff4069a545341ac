//! The signals beyond lists: whole decisions through the engine (`signals_policy`), STIR/SHAKEN
//! against fetched chains (`signals_stir`), velocity at scale and over SIP (`signals_velocity`),
//! every signal through the agent over SIP (`signals_sip`), and a callee's 607 as a report
//! (`reports_sip`). One test binary: its tests run in parallel threads of one process, each with
//! its own agent, servers and temp dirs.

#[path = "../support/mod.rs"]
mod support;

mod reports_sip;
mod signals_policy;
mod signals_sip;
mod signals_stir;
mod signals_velocity;
